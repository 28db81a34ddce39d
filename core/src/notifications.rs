//! The notification outbox and Web Push subscriptions. A notification is written in the same
//! transaction as the event that causes it, with one delivery per subscription of its recipient;
//! a worker (in the server) claims due deliveries, sends them and records the outcome here.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::push_endpoint::{PushEndpoint, Reach};

/// Deliveries are given up after this many attempts.
pub const MAX_ATTEMPTS: i32 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Acknowledgement,
    Extension,
    Answer,
    DeadlineWarning,
    DeadlineBreach,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Acknowledgement => "acknowledgement",
            Kind::Extension => "extension",
            Kind::Answer => "answer",
            Kind::DeadlineWarning => "deadline_warning",
            Kind::DeadlineBreach => "deadline_breach",
        }
    }
}

/// One notification to one user.
pub struct NewNotification {
    /// Names the cause; the same key never notifies twice.
    pub dedupe_key: String,
    pub case_id: Option<Uuid>,
    pub user_id: Uuid,
    pub kind: Kind,
    /// Web Push urgency: `very-low`, `low`, `normal` or `high`.
    pub urgency: &'static str,
    pub ttl: Duration,
    pub data: serde_json::Value,
}

/// Records the notification and one pending delivery per subscription of the recipient. Returns
/// false when a notification with the same key exists already.
pub async fn notify(conn: &mut PgConnection, n: NewNotification) -> Result<bool> {
    let id = sqlx::query_scalar!(
        "insert into notifications (dedupe_key, case_id, user_id, kind, urgency, ttl_secs, data)
         values ($1, $2, $3, $4, $5, $6, $7)
         on conflict (dedupe_key) do nothing
         returning id",
        n.dedupe_key,
        n.case_id,
        n.user_id,
        n.kind.as_str(),
        n.urgency,
        i32::try_from(n.ttl.as_secs()).unwrap_or(i32::MAX),
        n.data,
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some(id) = id else { return Ok(false) };
    sqlx::query!(
        "insert into push_deliveries (notification_id, subscription_id, endpoint)
         select $1, s.id, s.endpoint from push_subscriptions s where s.user_id = $2",
        id,
        n.user_id
    )
    .execute(conn)
    .await?;
    Ok(true)
}

/// Notifies every active user of the customer who filed the case (the app they filed from).
pub async fn notify_customer(
    conn: &mut PgConnection,
    case_id: Uuid,
    kind: Kind,
    urgency: &'static str,
    ttl: Duration,
    data: serde_json::Value,
) -> Result<()> {
    let users = sqlx::query_scalar!(
        "select u.id from cases c join users u on u.customer_id = c.customer_id where c.id = $1 and u.active",
        case_id
    )
    .fetch_all(&mut *conn)
    .await?;
    for user_id in users {
        let dedupe_key = format!("{}:{case_id}:{user_id}", kind.as_str());
        let n = NewNotification {
            dedupe_key,
            case_id: Some(case_id),
            user_id,
            kind,
            urgency,
            ttl,
            data: data.clone(),
        };
        notify(&mut *conn, n).await?;
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct Subscription {
    pub id: Uuid,
    pub endpoint: String,
}

fn decode_key(raw: &str, len: usize, code: &'static str, what: &str) -> Result<Vec<u8>> {
    let trimmed = raw.trim().trim_end_matches('=');
    let bytes = URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| URL_SAFE.decode(raw.trim()))
        .map_err(|_| Error::invalid(code, format!("{what} is not base64url")))?;
    if bytes.len() != len {
        return Err(Error::invalid(code, format!("{what} must be {len} bytes")));
    }
    Ok(bytes)
}

/// Stores a browser's PushSubscription for `user_id`, bound to the session that registers it
/// (logging that session out removes it). The same endpoint again from the same user updates it
/// and moves it to this session; an endpoint another user registered stays theirs (409). Returns
/// whether it is new.
pub async fn subscribe(
    conn: &mut PgConnection,
    user_id: Uuid,
    session_token: &str,
    endpoint: &str,
    reach: Reach,
    p256dh: &str,
    auth: &str,
) -> Result<(Subscription, bool)> {
    let endpoint = PushEndpoint::parse(endpoint, reach)?;
    let key = decode_key(p256dh, 65, "invalid_p256dh", "keys.p256dh")?;
    if key.first() != Some(&4) {
        return Err(Error::invalid(
            "invalid_p256dh",
            "keys.p256dh must be an uncompressed P-256 point",
        ));
    }
    decode_key(auth, 16, "invalid_auth", "keys.auth")?;
    // A browser whose previous user's session expired without a logout belongs to whoever
    // subscribes from it now; the old subscription goes (with its pending deliveries), exactly as
    // that session's logout would have removed it.
    sqlx::query!(
        "delete from push_subscriptions p using sessions o
         where p.endpoint = $1 and p.user_id <> $2 and o.token_hash = p.session_hash
           and o.expires_at <= now()",
        endpoint.as_str(),
        user_id
    )
    .execute(&mut *conn)
    .await?;
    // The session row is share-locked so that a logout racing this insert either waits for it
    // (and its trigger then removes the subscription) or wins and leaves nothing to insert.
    let row = sqlx::query!(
        r#"insert into push_subscriptions (id, user_id, endpoint, p256dh, auth, session_hash)
           select $1, s.user_id, $3, $4, $5, s.token_hash from sessions s
           where s.token_hash = $6 and s.user_id = $2 and s.revoked_at is null
           for share
           on conflict (endpoint) do update
               set p256dh = excluded.p256dh, auth = excluded.auth, session_hash = excluded.session_hash
               where push_subscriptions.user_id = excluded.user_id
           returning id, (xmax = 0) as "created!""#,
        Uuid::new_v4(),
        user_id,
        endpoint.as_str(),
        p256dh.trim(),
        auth.trim(),
        crate::auth::token_digest(session_token),
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        let taken = sqlx::query_scalar!(
            "select exists (select 1 from push_subscriptions where endpoint = $1) as \"taken!\"",
            endpoint.as_str()
        )
        .fetch_one(&mut *conn)
        .await?;
        return Err(if taken {
            Error::conflict(
                "push_endpoint_taken",
                "this push endpoint is registered to another account",
            )
        } else {
            // The session ended while the request was on its way.
            Error::Unauthenticated
        });
    };
    Ok((
        Subscription {
            id: row.id,
            endpoint: endpoint.as_str().to_owned(),
        },
        row.created,
    ))
}

pub async fn unsubscribe(db: impl PgExecutor<'_>, user_id: Uuid, id: Uuid) -> Result<()> {
    let done = sqlx::query!(
        "delete from push_subscriptions where id = $1 and user_id = $2",
        id,
        user_id
    )
    .execute(db)
    .await?;
    if done.rows_affected() == 0 {
        return Err(Error::not_found("subscription_not_found", "subscription"));
    }
    Ok(())
}

/// A delivery a worker has claimed: everything needed to send it.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    pub endpoint: String,
    pub p256dh: Option<String>,
    pub auth: Option<String>,
    pub attempts: i32,
    pub kind: String,
    pub urgency: String,
    pub ttl_secs: i32,
    pub data: serde_json::Value,
    pub case_id: Option<Uuid>,
    pub language: String,
}

/// Claims up to `limit` due deliveries for `lease`. Several workers (in several processes) never
/// claim the same delivery; one whose worker died is claimed again when the lease lapses.
pub async fn claim_due(
    db: impl PgExecutor<'_>,
    limit: i64,
    lease: Duration,
) -> Result<Vec<Claimed>> {
    let lease = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    Ok(sqlx::query_as!(
        Claimed,
        r#"with due as (
               select id from push_deliveries
               where state = 'pending' and next_attempt_at <= now() and (locked_until is null or locked_until < now())
               order by next_attempt_at
               limit $1
               for update skip locked
           ), claimed as (
               update push_deliveries d set locked_until = now() + make_interval(secs => $2::bigint / 1000.0), attempts = d.attempts + 1
               from due where d.id = due.id
               returning d.id, d.notification_id, d.subscription_id, d.endpoint, d.attempts
           )
           select c.id, c.endpoint, s.p256dh as "p256dh?", s.auth as "auth?", c.attempts, n.kind, n.urgency, n.ttl_secs,
                  n.data, n.case_id, u.language
           from claimed c
           join notifications n on n.id = c.notification_id
           join users u on u.id = n.user_id
           left join push_subscriptions s on s.id = c.subscription_id"#,
        limit,
        lease,
    )
    .fetch_all(db)
    .await?)
}

/// What the push service answered, as the worker tells it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Sent {
        status: u16,
    },
    /// 404/410: the subscription is gone; it is deleted.
    Gone {
        status: u16,
    },
    /// 429, 5xx or a network failure: try again after the wait.
    Retry {
        status: Option<u16>,
        error: String,
        after: Duration,
    },
    /// Any other refusal: retrying would not help.
    Failed {
        status: Option<u16>,
        error: String,
    },
}

pub async fn record_outcome(conn: &mut PgConnection, id: i64, outcome: &Outcome) -> Result<()> {
    match outcome {
        Outcome::Sent { status } => {
            sqlx::query!(
                "update push_deliveries set state = 'sent', sent_at = now(), last_status = $2, locked_until = null, last_error = null where id = $1",
                id,
                i32::from(*status)
            )
            .execute(&mut *conn)
            .await?;
        }
        Outcome::Gone { status } => {
            let sub = sqlx::query_scalar!(
                "update push_deliveries set state = 'gone', last_status = $2, locked_until = null where id = $1 returning subscription_id",
                id,
                i32::from(*status)
            )
            .fetch_one(&mut *conn)
            .await?;
            if let Some(sub) = sub {
                sqlx::query!("delete from push_subscriptions where id = $1", sub)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        Outcome::Retry {
            status,
            error,
            after,
        } => {
            let millis = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
            sqlx::query!(
                "update push_deliveries
                 set state = case when attempts >= $5 then 'failed' else 'pending' end,
                     next_attempt_at = now() + make_interval(secs => $4::bigint / 1000.0),
                     last_status = $2, last_error = $3, locked_until = null
                 where id = $1",
                id,
                status.map(i32::from),
                error,
                millis,
                MAX_ATTEMPTS,
            )
            .execute(&mut *conn)
            .await?;
        }
        Outcome::Failed { status, error } => {
            sqlx::query!(
                "update push_deliveries set state = 'failed', last_status = $2, last_error = $3, locked_until = null where id = $1",
                id,
                status.map(i32::from),
                error
            )
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryView {
    pub state: String,
    pub attempts: i32,
    pub last_status: Option<i32>,
    pub next_attempt_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NotificationView {
    pub id: i64,
    pub kind: String,
    pub user_id: Uuid,
    pub urgency: String,
    pub created_at: DateTime<Utc>,
    pub deliveries: Vec<DeliveryView>,
}

/// A case's notifications and where each delivery stands, for staff: the latest `limit` before
/// the notification `before`, oldest first, and the cursor of the older ones if there are any
/// (the oldest id returned).
pub async fn for_case(
    conn: &mut PgConnection,
    case_id: Uuid,
    before: Option<i64>,
    limit: u32,
) -> Result<(Vec<NotificationView>, Option<i64>)> {
    let mut notes = sqlx::query!(
        "select id, kind, user_id, urgency, created_at from notifications
         where case_id = $1 and ($2::bigint is null or id < $2)
         order by id desc
         limit $3",
        case_id,
        before,
        i64::from(limit) + 1,
    )
    .fetch_all(&mut *conn)
    .await?;
    let older = notes.len() > limit as usize;
    notes.truncate(limit as usize);
    notes.reverse();
    let next = notes.first().filter(|_| older).map(|n| n.id);
    let ids: Vec<i64> = notes.iter().map(|n| n.id).collect();
    let deliveries = sqlx::query!(
        "select d.notification_id, d.state, d.attempts, d.last_status, d.next_attempt_at, d.sent_at
         from push_deliveries d where d.notification_id = any($1) order by d.id",
        &ids
    )
    .fetch_all(&mut *conn)
    .await?;
    let views = notes
        .into_iter()
        .map(|n| NotificationView {
            deliveries: deliveries
                .iter()
                .filter(|d| d.notification_id == n.id)
                .map(|d| DeliveryView {
                    state: d.state.clone(),
                    attempts: d.attempts,
                    last_status: d.last_status,
                    next_attempt_at: d.next_attempt_at,
                    sent_at: d.sent_at,
                })
                .collect(),
            id: n.id,
            kind: n.kind,
            user_id: n.user_id,
            urgency: n.urgency,
            created_at: n.created_at,
        })
        .collect();
    Ok((views, next))
}
