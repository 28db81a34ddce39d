//! Notifications and Web Push subscriptions. A notification is written in the same transaction as
//! the event that causes it, to one recipient: a user (staff, or a customer's app user) or a
//! customer, with or without app users. Writing it fans it out, in the database, into one delivery
//! per channel target (the `notifications_fan_out` trigger, the one place that decides who hears
//! where); [`crate::outbox`] delivers them.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::push_endpoint::{PushEndpoint, Reach};
use crate::types::PushUrgency;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Acknowledgement,
    Extension,
    Answer,
    DeadlineWarning,
    DeadlineBreach,
    /// Staff asked the customer for missing information; the case waits on the reply.
    InformationRequest,
    /// Staff wrote to the customer on the case.
    StaffMessage,
    /// The case was answered: how satisfied is the customer, 1 to 5?
    RatingPrompt,
    /// The case is of another type than it was filed as, and its legal due date moved.
    Reclassification,
    /// The customer has not answered a request for information yet.
    InformationReminder,
    /// Closed because the customer did not answer a request for information within a month.
    Withdrawn,
    /// The one-time code that links a web filing to the customer record it names.
    LinkCode,
    /// The single-use link with which a company-created app user sets the first password.
    AccountSetup,
    /// An e-mail came with attachments that were not kept: which, and which types are accepted.
    AttachmentsRefused,
    /// A contract ends soon: the commercial process offers its renewal (PRO-008 §5.5).
    ContractRenewal,
    /// The customer is asked to answer a satisfaction survey, with the link to its page.
    SurveyInvitation,
    /// The one reminder of a campaign's invitation still unanswered.
    SurveyReminder,
    /// A low survey score opened a follow-up for the process.
    FollowUpOpened,
}

impl Kind {
    /// Every kind, in the order the schema lists them.
    pub const ALL: [Kind; 18] = [
        Kind::Acknowledgement,
        Kind::Extension,
        Kind::Answer,
        Kind::DeadlineWarning,
        Kind::DeadlineBreach,
        Kind::InformationRequest,
        Kind::StaffMessage,
        Kind::RatingPrompt,
        Kind::Reclassification,
        Kind::InformationReminder,
        Kind::Withdrawn,
        Kind::LinkCode,
        Kind::AccountSetup,
        Kind::AttachmentsRefused,
        Kind::ContractRenewal,
        Kind::SurveyInvitation,
        Kind::SurveyReminder,
        Kind::FollowUpOpened,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Acknowledgement => "acknowledgement",
            Kind::Extension => "extension",
            Kind::Answer => "answer",
            Kind::DeadlineWarning => "deadline_warning",
            Kind::DeadlineBreach => "deadline_breach",
            Kind::InformationRequest => "information_request",
            Kind::StaffMessage => "staff_message",
            Kind::RatingPrompt => "rating_prompt",
            Kind::Reclassification => "reclassification",
            Kind::InformationReminder => "information_reminder",
            Kind::Withdrawn => "withdrawn",
            Kind::LinkCode => "link_code",
            Kind::AccountSetup => "account_setup",
            Kind::AttachmentsRefused => "attachments_refused",
            Kind::ContractRenewal => "contract_renewal",
            Kind::SurveyInvitation => "survey_invitation",
            Kind::SurveyReminder => "survey_reminder",
            Kind::FollowUpOpened => "follow_up_opened",
        }
    }
}

/// Who a notification is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipient {
    /// A user: staff hear on their Web Push subscriptions.
    User(Uuid),
    /// A customer: on their app users' subscriptions and on their chats.
    Customer(Uuid),
}

/// One notification to one recipient.
pub struct NewNotification {
    /// Names the cause; the same key never notifies twice.
    pub dedupe_key: String,
    pub case_id: Option<Uuid>,
    pub recipient: Recipient,
    pub kind: Kind,
    pub urgency: PushUrgency,
    pub ttl: Duration,
    pub data: serde_json::Value,
    /// How long its deliveries wait before they may leave.
    pub delay: Duration,
}

/// Records the notification; the database fans it out into its deliveries. Returns false when a
/// notification with the same key exists already.
pub async fn notify(conn: &mut PgConnection, n: NewNotification) -> Result<bool> {
    let (user_id, customer_id) = match n.recipient {
        Recipient::User(id) => (Some(id), None),
        Recipient::Customer(id) => (None, Some(id)),
    };
    let inserted = sqlx::query_scalar!(
        "insert into notifications (dedupe_key, case_id, user_id, customer_id, kind, urgency, ttl_secs, data, not_before)
         values ($1, $2, $3, $4, $5, $6, $7, $8,
                 case when $9::bigint > 0 then now() + make_interval(secs => $9::bigint / 1000.0) end)
         on conflict (dedupe_key) do nothing
         returning id",
        n.dedupe_key,
        n.case_id,
        user_id,
        customer_id,
        n.kind.as_str(),
        n.urgency.as_str(),
        i32::try_from(n.ttl.as_secs()).unwrap_or(i32::MAX),
        n.data,
        i64::try_from(n.delay.as_millis()).unwrap_or(i64::MAX),
    )
    .fetch_optional(conn)
    .await?;
    Ok(inserted.is_some())
}

/// What a case tells its customer.
pub struct CustomerNotice {
    pub kind: Kind,
    /// The case itself, or the message that caused the notice: the customer hears of it once.
    pub cause: Uuid,
    pub data: serde_json::Value,
    pub delay: Duration,
}

/// How long a push service keeps a customer notice for a phone that is offline.
pub const NOTICE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Notifies the customer of the case.
pub async fn notify_customer(
    conn: &mut PgConnection,
    case_id: Uuid,
    notice: CustomerNotice,
) -> Result<()> {
    let customer_id = sqlx::query_scalar!("select customer_id from cases where id = $1", case_id)
        .fetch_one(&mut *conn)
        .await?;
    let n = NewNotification {
        dedupe_key: format!("{}:{}", notice.kind.as_str(), notice.cause),
        case_id: Some(case_id),
        recipient: Recipient::Customer(customer_id),
        kind: notice.kind,
        urgency: PushUrgency::Normal,
        ttl: NOTICE_TTL,
        data: notice.data,
        delay: notice.delay,
    };
    notify(conn, n).await?;
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

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryView {
    /// `push`, `telegram`, `whatsapp` or `email`.
    pub channel: String,
    /// `pending`, `waiting` (WhatsApp: outside the 24-hour window a template invited the
    /// customer to write; the message leaves when they do), `sent`, `gone` (the target no longer
    /// exists), `failed` (given up, or the platform reported it undelivered) or `cancelled` (no
    /// longer worth sending).
    pub state: String,
    /// What the platform reported later of a sent message (WhatsApp): `sent`, `delivered`,
    /// `read` or `failed`.
    pub receipt: Option<String>,
    pub attempts: i32,
    pub last_status: Option<i32>,
    /// Why the last attempt did not succeed, as the channel said.
    pub last_error: Option<String>,
    pub next_attempt_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NotificationView {
    pub id: i64,
    pub kind: String,
    /// The recipient: a user, or a customer (who may have no app user).
    pub user_id: Option<Uuid>,
    pub customer_id: Option<Uuid>,
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
        "select id, kind, user_id, customer_id, urgency, created_at from notifications
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
        r#"select d.notification_id, d.channel,
                case when r.status = 'failed' then 'failed' else d.state end as "state!",
                r.status as "receipt?",
                d.attempts, d.last_status, coalesce(r.error, d.last_error) as last_error,
                d.next_attempt_at, d.sent_at
         from deliveries d
         left join lateral (
             select status, error from delivery_receipts r
             where r.channel = d.channel and r.external_message_id = d.external_message_id
             order by case status when 'failed' then 4 when 'read' then 3 when 'delivered' then 2 else 1 end desc
             limit 1
         ) r on true
         where d.notification_id = any($1) order by d.id"#,
        &ids
    )
    .fetch_all(&mut *conn)
    .await?;
    let views = notes
        .into_iter()
        .map(|n| NotificationView {
            deliveries: deliveries
                .iter()
                .filter(|d| d.notification_id == Some(n.id))
                .map(|d| DeliveryView {
                    channel: d.channel.clone(),
                    state: d.state.clone(),
                    receipt: d.receipt.clone(),
                    attempts: d.attempts,
                    last_status: d.last_status,
                    last_error: d.last_error.clone(),
                    next_attempt_at: d.next_attempt_at,
                    sent_at: d.sent_at,
                })
                .collect(),
            id: n.id,
            kind: n.kind,
            user_id: n.user_id,
            customer_id: n.customer_id,
            urgency: n.urgency,
            created_at: n.created_at,
        })
        .collect();
    Ok((views, next))
}
