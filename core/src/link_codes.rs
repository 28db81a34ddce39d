//! Linking a web filing to the customer record its document number names, once the contact on
//! file confirms it. A filing made with a customer's document number is stored under an
//! unverified contact ([`crate::contacts::register`]); whoever holds the case's secret link may
//! ask for a six-digit code, which goes to that customer's e-mail, app and chats, and the right
//! code merges the contact into the customer ([`crate::customers::merge_in`]).
//!
//! Asking reads and costs the same whether or not the number is a customer's: a code is made
//! and its digest stored either way, and only a code that was sent can ever be right.

use std::time::Duration;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use crate::auth::token_digest;
use crate::customers::{self, MergedBy};
use crate::error::Result;
use crate::notifications::{self, Kind, NewNotification, Recipient};
use crate::types::PushUrgency;

/// Wrong tries after which a code is dead.
pub const MAX_ATTEMPTS: i32 = 5;

/// Codes one filing may ask for in [`REQUEST_WINDOW`].
pub const MAX_REQUESTS: i32 = 5;

/// The window [`MAX_REQUESTS`] counts in.
pub const REQUEST_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// How long a code lives unless the settings say otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15 * 60);

/// What asking for a code did, as the asker may be told: never whether it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requested {
    /// A new code replaced any earlier one; it expires in this many minutes.
    Made { minutes: u64 },
    /// This filing asked for too many codes: asking again works from then.
    TooMany { until: DateTime<Utc> },
    /// The filing is linked already.
    Linked,
}

/// What a typed code did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmed {
    /// The case is the customer's now.
    Linked,
    /// Not the code: this many tries are left (none: the code is dead).
    Wrong { tries_left: i32 },
    /// The code expired, was tried too often, or none was asked for: ask for a new one.
    Expired,
    /// Not six digits: nothing was counted.
    Malformed,
    /// The code was used already: the filing is linked.
    Used,
}

fn digest(case_id: Uuid, code: &str) -> Vec<u8> {
    token_digest(&format!("link_code:{case_id}:{code}"))
}

/// Six uniformly drawn digits.
fn new_code() -> String {
    // The largest multiple of 1,000,000 below 2^32: draws above it would favour low codes.
    const LIMIT: u32 = 4_294_000_000;
    loop {
        let n = OsRng.next_u32();
        if n < LIMIT {
            return format!("{:06}", n % 1_000_000);
        }
    }
}

/// Whether this case was linked to a customer by a code.
pub async fn linked(db: impl PgExecutor<'_>, case_id: Uuid) -> Result<bool> {
    Ok(sqlx::query_scalar!(
        r#"select exists (select 1 from link_codes where case_id = $1 and used_at is not null) as "linked!""#,
        case_id
    )
    .fetch_one(db)
    .await?)
}

/// Makes a new code for the case (replacing any earlier one) and sends it, when, and only when,
/// the case is a web filing of an unverified contact and the verified customer with that
/// document has a contact on file: an e-mail address, an app user or a chat.
pub async fn request(pool: &PgPool, case_id: Uuid, ttl: Duration) -> Result<Requested> {
    let code = new_code();
    let minutes = ttl.as_secs().div_ceil(60).max(1);
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let window_ms = i64::try_from(REQUEST_WINDOW.as_millis()).unwrap_or(i64::MAX);
    let mut tx = pool.begin().await?;
    // The case's row locked first, so two requests for it take turns.
    let case = sqlx::query!(
        r#"select k.radicado, k.customer_id,
                  (select v.id from customers c join customers v
                     on v.verified and v.document_type = c.document_type
                    and v.document_number = c.document_number
                   where c.id = k.customer_id and not c.verified and c.merged_into is null
                     and k.channel = 'web'
                     and (btrim(v.email) like '_%@_%'
                          or exists (select 1 from users u where u.customer_id = v.id and u.active)
                          or exists (select 1 from customer_chats ch
                                     where ch.customer_id = v.id and ch.opted_out_at is null))) as sent_to
           from cases k where k.id = $1 for update of k"#,
        case_id
    )
    .fetch_one(&mut *tx)
    .await?;
    let previous = sqlx::query!(
        "select used_at, requests, window_start, notification_id from link_codes where case_id = $1",
        case_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    let now = Utc::now();
    let window = chrono::Duration::from_std(REQUEST_WINDOW).unwrap_or(chrono::Duration::MAX);
    if let Some(p) = &previous {
        if p.used_at.is_some() {
            return Ok(Requested::Linked);
        }
        if p.window_start + window > now && p.requests >= MAX_REQUESTS {
            return Ok(Requested::TooMany {
                until: p.window_start + window,
            });
        }
    }
    let notification_id = match case.sent_to {
        Some(customer) => {
            let dedupe_key = format!("link_code:{case_id}:{}", Uuid::new_v4());
            notifications::notify(
                &mut tx,
                NewNotification {
                    dedupe_key: dedupe_key.clone(),
                    // No case: the code goes to the customer on file, who must not get the
                    // filer's case link with it.
                    case_id: None,
                    recipient: Recipient::Customer(customer),
                    kind: Kind::LinkCode,
                    urgency: PushUrgency::High,
                    ttl,
                    data: json!({"radicado": case.radicado, "code": code, "minutes": minutes.to_string()}),
                    delay: Duration::ZERO,
                },
            )
            .await?;
            sqlx::query_scalar!(
                "select id from notifications where dedupe_key = $1",
                dedupe_key
            )
            .fetch_optional(&mut *tx)
            .await?
        }
        None => None,
    };
    sqlx::query!(
        "insert into link_codes as l (case_id, contact_id, sent_to, code_digest, expires_at, requests,
                                     window_start, notification_id)
         values ($1, $2, $3, $4, now() + make_interval(secs => $5::bigint / 1000.0), 1, now(), $6)
         on conflict (case_id) do update set
             contact_id = excluded.contact_id, sent_to = excluded.sent_to,
             code_digest = excluded.code_digest, expires_at = excluded.expires_at,
             failed_attempts = 0, notification_id = excluded.notification_id, updated_at = now(),
             requests = case when l.window_start + make_interval(secs => $7::bigint / 1000.0) > now()
                             then l.requests + 1 else 1 end,
             window_start = case when l.window_start + make_interval(secs => $7::bigint / 1000.0) > now()
                                 then l.window_start else now() end",
        case_id,
        case.customer_id,
        case.sent_to,
        digest(case_id, &code),
        ttl_ms,
        notification_id,
        window_ms,
    )
    .execute(&mut *tx)
    .await?;
    if let Some(old) = previous.and_then(|p| p.notification_id) {
        forget_code(&mut tx, old).await?;
    }
    tx.commit().await?;
    Ok(Requested::Made { minutes })
}

/// Blanks the code in the notification that carried it, once it can no longer be used.
async fn forget_code(conn: &mut sqlx::PgConnection, notification_id: i64) -> Result<()> {
    sqlx::query!(
        "update notifications set data = data - 'code' where id = $1",
        notification_id
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Checks a typed code: the right one, in time, moves the case (with everything of the contact
/// it was filed under) to the customer the code went to, in one transaction; a wrong one is
/// counted and nothing else is written.
pub async fn confirm(pool: &PgPool, case_id: Uuid, typed: &str) -> Result<Confirmed> {
    let typed = typed.trim();
    if typed.len() != 6 || !typed.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(Confirmed::Malformed);
    }
    let mut tx = pool.begin().await?;
    let Some(row) = sqlx::query!(
        r#"select contact_id, sent_to, code_digest, failed_attempts, used_at, notification_id,
                  expires_at <= now() as "expired!"
           from link_codes where case_id = $1 for update"#,
        case_id
    )
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(Confirmed::Expired);
    };
    if row.used_at.is_some() {
        return Ok(Confirmed::Used);
    }
    if row.expired || row.failed_attempts >= MAX_ATTEMPTS {
        return Ok(Confirmed::Expired);
    }
    // A code that was not sent is never right, whatever was typed.
    let right = row
        .sent_to
        .filter(|_| digest(case_id, typed) == row.code_digest);
    let Some(customer_id) = right else {
        let attempts = sqlx::query_scalar!(
            "update link_codes set failed_attempts = failed_attempts + 1, updated_at = now()
             where case_id = $1 returning failed_attempts",
            case_id
        )
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        return Ok(Confirmed::Wrong {
            tries_left: (MAX_ATTEMPTS - attempts).max(0),
        });
    };
    sqlx::query!(
        "update link_codes set used_at = now(), updated_at = now() where case_id = $1",
        case_id
    )
    .execute(&mut *tx)
    .await?;
    // Staff may have merged the contact into this customer since the code was sent.
    let merged_into = sqlx::query_scalar!(
        "select merged_into from customers where id = $1",
        row.contact_id
    )
    .fetch_one(&mut *tx)
    .await?;
    if merged_into != Some(customer_id) {
        customers::merge_in(&mut tx, MergedBy::CustomerCode, customer_id, row.contact_id).await?;
    }
    if let Some(n) = row.notification_id {
        forget_code(&mut tx, n).await?;
    }
    tx.commit().await?;
    Ok(Confirmed::Linked)
}
