//! The delivery half of the notification outbox, the same for every channel. A notification fans
//! out into deliveries, one per channel target (see [`crate::notifications`]); a worker per
//! channel claims due deliveries with a lease, hands each to its [`Sender`], and records what the
//! sender says happened: sent, try again later, the target is gone, or failed for good. Retries,
//! leases, giving up and the staff-visible reason live here once; a channel only sends.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use crate::error::Result;
use crate::types::PushUrgency;
use crate::worker::{self, Round};

/// Deliveries are given up after this many attempts.
pub const MAX_ATTEMPTS: i32 = 10;
/// How long a claimed delivery stays with its worker before another may take it.
pub const LEASE: Duration = Duration::from_secs(60);
/// Deliveries one call of [`deliver_due`] handles at most.
pub const BATCH: i64 = 256;

/// Where a delivery goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Web Push to one subscription; the target is its endpoint.
    Push,
    /// A Telegram chat; the target is its chat id.
    Telegram,
    /// A WhatsApp number.
    Whatsapp,
    Email,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Push => "push",
            Channel::Telegram => "telegram",
            Channel::Whatsapp => "whatsapp",
            Channel::Email => "email",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A delivery a worker has claimed: everything needed to send it.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    /// The endpoint, chat id or address the channel sends to.
    pub target: String,
    /// The push subscription's keys (push only; none when the subscription has gone).
    pub p256dh: Option<String>,
    pub auth: Option<String>,
    /// The chat the delivery goes to (chat channels, once the chat's customer is known).
    pub chat_id: Option<Uuid>,
    /// This one included.
    pub attempts: i32,
    /// The notification's kind, or `reply` for a conversation's own reply.
    pub kind: String,
    pub urgency: PushUrgency,
    pub ttl_secs: i32,
    /// The notification's data, or the reply itself.
    pub data: serde_json::Value,
    pub case_id: Option<Uuid>,
    /// The language the recipient reads on this target.
    pub language: String,
    /// Parts of a long message already sent by earlier attempts.
    pub progress: i32,
    /// The recipient's last message in the chat (chat channels): WhatsApp lets a business write
    /// freely only for 24 hours after it.
    pub last_inbound_at: Option<DateTime<Utc>>,
}

/// The kind of a delivery that carries a conversation's reply rather than a notification.
pub const REPLY: &str = "reply";

/// Claims up to `limit` due deliveries of `channel` for `lease`. Several workers (in several
/// processes) never claim the same delivery; one whose worker died is claimed again when the
/// lease lapses.
pub async fn claim_due(
    db: impl PgExecutor<'_>,
    channel: Channel,
    limit: i64,
    lease: Duration,
) -> Result<Vec<Claimed>> {
    let lease = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    // A chat reads its messages in the order they were written: only the first pending delivery
    // of each chat may leave, and not while another worker holds it or while it waits to be
    // retried, nor behind one that waits for the recipient to write first. A delivery held
    // back on purpose (a rating prompt an hour after the answer) that was never tried does not
    // hold the chat.
    let ordered = matches!(channel, Channel::Telegram | Channel::Whatsapp);
    Ok(sqlx::query_as!(
        Claimed,
        r#"with heads as (
               select distinct on (target) id, next_attempt_at, locked_until
               from deliveries
               where channel = $1 and state in ('pending', 'waiting') and $4
                 and (attempts > 0 or next_attempt_at <= now())
               order by target, id
           ), due as (
               select d.id from deliveries d
               where d.channel = $1 and d.state = 'pending' and d.next_attempt_at <= now()
                 and (d.locked_until is null or d.locked_until < now())
                 and (not $4 or d.id in (select id from heads))
               order by d.next_attempt_at
               limit $2
               for update skip locked
           ), claimed as (
               update deliveries d set locked_until = now() + make_interval(secs => $3::bigint / 1000.0), attempts = d.attempts + 1
               from due where d.id = due.id
               returning d.id, d.notification_id, d.subscription_id, d.chat_id, d.target, d.attempts,
                         d.payload, d.progress, d.channel
           )
           select c.id, c.target, s.p256dh as "p256dh?", s.auth as "auth?", c.chat_id, c.attempts,
                  coalesce(n.kind, 'reply') as "kind!", coalesce(n.urgency, 'normal') as "urgency!: PushUrgency",
                  coalesce(n.ttl_secs, 0) as "ttl_secs!", coalesce(c.payload, n.data) as "data!",
                  n.case_id as "case_id?",
                  coalesce(su.language, ch.language, bc.language, nu.language, 'es') as "language!",
                  c.progress, bc.last_inbound_at
           from claimed c
           left join notifications n on n.id = c.notification_id
           left join push_subscriptions s on s.id = c.subscription_id
           left join users su on su.id = s.user_id
           left join customer_chats ch on ch.id = c.chat_id
           left join bot_conversations bc on bc.channel = c.channel and bc.chat_key = c.target
           left join users nu on nu.id = n.user_id
           order by c.id"#,
        channel.as_str(),
        limit,
        lease,
        ordered,
    )
    .fetch_all(db)
    .await?)
}

/// What became of one attempt, as the channel tells it. `status` is the platform's answer (an
/// HTTP status) when there was one; `error` is the reason staff read on the case.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Sent {
        status: u16,
        /// The platform's id for the message, when it reports the message's fate later.
        external_id: Option<String>,
    },
    /// The target no longer exists (an expired push subscription, a chat that blocked us); a
    /// push subscription is deleted.
    Gone { status: u16, error: String },
    /// A busy or unreachable platform: try again after the wait, until [`MAX_ATTEMPTS`].
    Retry {
        status: Option<u16>,
        error: String,
        after: Duration,
        /// Parts of a long message sent so far, which the next attempt does not send again.
        progress: Option<i32>,
    },
    /// Refused for a reason retrying would not change.
    Failed { status: Option<u16>, error: String },
    /// The platform takes the message only once the recipient writes (WhatsApp's 24-hour
    /// window): what could be sent meanwhile (a template inviting a reply, `external_id`) went,
    /// and the delivery waits, holding the chat's later ones, until the recipient writes
    /// ([`release_waiting`]).
    Waiting {
        status: Option<u16>,
        note: String,
        external_id: Option<String>,
    },
}

async fn record_outcome(conn: &mut PgConnection, id: i64, outcome: &Outcome) -> Result<()> {
    match outcome {
        Outcome::Sent {
            status,
            external_id,
        } => {
            mark_sent(
                conn,
                &[id],
                &[i32::from(*status)],
                std::slice::from_ref(external_id),
            )
            .await?;
        }
        Outcome::Gone { status, error } => {
            let sub = sqlx::query_scalar!(
                "update deliveries set state = 'gone', last_status = $2, last_error = $3, locked_until = null where id = $1 returning subscription_id",
                id,
                i32::from(*status),
                error
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
            progress,
        } => {
            let millis = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
            sqlx::query!(
                "update deliveries
                 set state = case when attempts >= $5 then 'failed' else 'pending' end,
                     next_attempt_at = now() + make_interval(secs => $4::bigint / 1000.0),
                     last_status = $2, last_error = $3, locked_until = null,
                     progress = coalesce($6, progress)
                 where id = $1",
                id,
                status.map(i32::from),
                error,
                millis,
                MAX_ATTEMPTS,
                *progress,
            )
            .execute(&mut *conn)
            .await?;
        }
        Outcome::Failed { status, error } => {
            sqlx::query!(
                "update deliveries set state = 'failed', last_status = $2, last_error = $3, locked_until = null where id = $1",
                id,
                status.map(i32::from),
                error
            )
            .execute(&mut *conn)
            .await?;
        }
        Outcome::Waiting {
            status,
            note,
            external_id,
        } => {
            sqlx::query!(
                "update deliveries set state = 'waiting', last_status = $2, last_error = $3, locked_until = null,
                        external_message_id = coalesce($4, external_message_id)
                 where id = $1",
                id,
                status.map(i32::from),
                note,
                external_id.as_deref(),
            )
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// The recipient wrote in the chat `target`: the deliveries that waited for it leave now, in
/// order. Returns how many.
pub async fn release_waiting(
    db: impl PgExecutor<'_>,
    channel: Channel,
    target: &str,
) -> Result<u64> {
    let done = sqlx::query!(
        "update deliveries set state = 'pending', next_attempt_at = now()
         where channel = $1 and target = $2 and state = 'waiting'",
        channel.as_str(),
        target
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// What a platform reported later of a message it had accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The platform's id for the message (the one [`Outcome::Sent`] named).
    pub external_id: String,
    /// `sent`, `delivered`, `read` or `failed`.
    pub status: String,
    /// The platform's reason, for `failed`.
    pub error: Option<String>,
    pub at: DateTime<Utc>,
}

/// Records receipts; one reported twice is kept once. Receipts of a status this does not know
/// are passed over.
pub async fn record_receipts(
    db: impl PgExecutor<'_>,
    channel: Channel,
    receipts: &[Receipt],
) -> Result<u64> {
    let known: Vec<&Receipt> = receipts
        .iter()
        .filter(|r| matches!(r.status.as_str(), "sent" | "delivered" | "read" | "failed"))
        .filter(|r| (1..=200).contains(&r.external_id.len()))
        .collect();
    if known.is_empty() {
        return Ok(0);
    }
    let ids: Vec<&str> = known.iter().map(|r| r.external_id.as_str()).collect();
    let statuses: Vec<&str> = known.iter().map(|r| r.status.as_str()).collect();
    let errors: Vec<Option<String>> = known
        .iter()
        .map(|r| r.error.as_ref().map(|e| e.chars().take(1000).collect()))
        .collect();
    let at: Vec<DateTime<Utc>> = known.iter().map(|r| r.at).collect();
    let done = sqlx::query!(
        "insert into delivery_receipts (channel, external_message_id, status, error, reported_at)
         select $1, i, s, e, a
         from unnest($2::text[], $3::text[], $4::text[], $5::timestamptz[]) as x (i, s, e, a)
         on conflict do nothing",
        channel.as_str(),
        &ids as &[&str],
        &statuses as &[&str],
        &errors as &[Option<String>],
        &at,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// Exponential from 2 s, at most an hour: the wait before attempt `attempts + 1` when the
/// platform named none.
pub fn backoff(attempts: i32) -> Duration {
    let exp = u32::try_from(attempts.clamp(1, 12)).unwrap_or(1);
    Duration::from_secs(2u64.pow(exp)).min(Duration::from_secs(3600))
}

/// A channel: sends one claimed delivery and says what happened. It never touches the outbox.
pub trait Sender: Send + Sync {
    fn channel(&self) -> Channel;
    fn send(&self, delivery: &Claimed) -> impl Future<Output = Outcome> + Send;
}

/// Sends one worker has in flight at once. A chat channel's claim holds at most one delivery per
/// chat, so sending concurrently never reorders one chat's messages.
pub const CONCURRENT_SENDS: usize = 16;
/// Outcomes being recorded at once by one worker, while its sends go on.
const CONCURRENT_RECORDS: usize = 4;

/// Claims `sender`'s due deliveries, sends them, records each outcome; up to [`BATCH`] in one
/// call, so a worker sees its stop signal between calls. Deliveries are claimed a few at a time
/// as sends finish, keeping [`CONCURRENT_SENDS`] in flight: a claimed delivery waits at most
/// for one send to finish, well within its lease, and no send waits for a whole batch. Outcomes
/// that are ready together are recorded together (the sent ones in one statement) while the
/// sends go on. Returns how many it handled.
pub async fn deliver_due<S: Sender>(pool: &PgPool, sender: &S) -> Result<usize> {
    let channel = sender.channel();
    // The claim and record futures own a handle on the pool: borrowing it from these closures
    // leaves the compiler unable to prove the whole future `Send`, which a spawned worker needs.
    let claiming = pool.clone();
    let recording = pool.clone();
    let recorded: Vec<Result<usize>> = futures_util::stream::unfold((0, false), move |state| {
        claim_slice(claiming.clone(), channel, state)
    })
    .flat_map(|claimed| match claimed {
        Ok(batch) => futures_util::stream::iter(batch.into_iter().map(Ok)).left_stream(),
        Err(e) => futures_util::stream::iter(vec![Err(e)]).right_stream(),
    })
    .map(|claimed| send_one(sender, claimed))
    .buffer_unordered(CONCURRENT_SENDS)
    .ready_chunks(CONCURRENT_SENDS)
    .map(move |done| record_chunk(recording.clone(), done))
    .buffer_unordered(CONCURRENT_RECORDS)
    .collect()
    .await;
    // A delivery whose outcome could not be recorded is claimed again when its lease lapses.
    let mut handled = 0;
    for r in recorded {
        handled += r?;
    }
    Ok(handled)
}

/// The next few due deliveries of one [`deliver_due`] call. `state` is how many it claimed so
/// far and whether the last claim came back short (nothing more is due).
async fn claim_slice(
    pool: PgPool,
    channel: Channel,
    (count, done): (i64, bool),
) -> Option<(Result<Vec<Claimed>>, (i64, bool))> {
    let want = i64::try_from(CONCURRENT_SENDS)
        .unwrap_or(16)
        .min(BATCH - count);
    if done || want <= 0 {
        return None;
    }
    match claim_due(&pool, channel, want, LEASE).await {
        Ok(batch) if batch.is_empty() => None,
        Ok(batch) => {
            let n = i64::try_from(batch.len()).unwrap_or(want);
            let state = (count + n, n < want);
            Some((with_survey_links(&pool, channel, batch).await, state))
        }
        Err(e) => Some((Err(e), (count, true))),
    }
}

/// Survey notices carry the link to the survey's page, whose single-use token is made now for
/// this delivery (see [`crate::surveys::issue_link`]) and never stored in clear. A survey answered
/// or expired since the notice was written is not sent. In a chat the notice also asks the first
/// question (`first_question`, of `question_count`), which the conversation then goes on with.
async fn with_survey_links(
    pool: &PgPool,
    channel: Channel,
    batch: Vec<Claimed>,
) -> Result<Vec<Claimed>> {
    let mut kept = Vec::with_capacity(batch.len());
    for mut d in batch {
        if d.kind != "survey_invitation" && d.kind != "survey_reminder" {
            kept.push(d);
            continue;
        }
        let invitation = crate::texts::data_text(&d.data, "invitation_id")
            .parse::<Uuid>()
            .ok();
        let token = match invitation {
            Some(id) => crate::surveys::issue_link(pool, id, d.id).await?,
            None => None,
        };
        match token {
            Some(token) => {
                let link = format!(
                    "{}{token}?lang={}",
                    crate::texts::data_text(&d.data, "page"),
                    d.language
                );
                let mut asked = serde_json::Map::new();
                if let (Some(id), Channel::Telegram | Channel::Whatsapp) = (invitation, channel) {
                    let mut conn = pool.acquire().await?;
                    let inv = crate::surveys::invitation(&mut conn, id).await?;
                    asked.insert("question_count".into(), inv.questions.len().into());
                    if let Some(first) = inv.questions.into_iter().next() {
                        let first = serde_json::to_value(first).map_err(|e| {
                            crate::Error::Internal(format!("a survey question: {e}"))
                        })?;
                        asked.insert("first_question".into(), first);
                    }
                }
                if let Some(fields) = d.data.as_object_mut() {
                    fields.insert("link".into(), link.into());
                    fields.extend(asked);
                }
                kept.push(d);
            }
            None => {
                let mut conn = pool.acquire().await?;
                let outcome = Outcome::Failed {
                    status: None,
                    error: "the survey was answered or expired before this message could leave"
                        .into(),
                };
                record_outcome(&mut conn, d.id, &outcome).await?;
            }
        }
    }
    Ok(kept)
}

async fn send_one<S: Sender>(sender: &S, claimed: Result<Claimed>) -> Result<(i64, Outcome)> {
    let delivery = claimed?;
    let outcome = sender.send(&delivery).await;
    log_outcome(sender.channel(), delivery.id, &outcome);
    Ok((delivery.id, outcome))
}

/// Records the outcomes that finished together. If the database refuses the set, each is
/// recorded on its own: one outcome it cannot take (a platform's error text it will not store)
/// must not leave the others unrecorded, to be sent again when their leases lapse.
async fn record_chunk(pool: PgPool, done: Vec<Result<(i64, Outcome)>>) -> Result<usize> {
    let outcomes = done.into_iter().collect::<Result<Vec<_>>>()?;
    match record_outcomes(&pool, &outcomes).await {
        Ok(()) => Ok(outcomes.len()),
        Err(e) if outcomes.len() == 1 => Err(e),
        Err(_) => {
            let mut first_error = None;
            for one in &outcomes {
                if let Err(e) = record_outcomes(&pool, std::slice::from_ref(one)).await {
                    first_error.get_or_insert(e);
                }
            }
            first_error.map_or(Ok(outcomes.len()), Err)
        }
    }
}

/// Records several outcomes in one transaction: the sent deliveries in one statement, the rest
/// one by one.
async fn record_outcomes(pool: &PgPool, outcomes: &[(i64, Outcome)]) -> Result<()> {
    let mut tx = pool.begin().await?;
    let (mut ids, mut statuses, mut external) = (Vec::new(), Vec::new(), Vec::new());
    for (id, outcome) in outcomes {
        match outcome {
            Outcome::Sent {
                status,
                external_id,
            } => {
                ids.push(*id);
                statuses.push(i32::from(*status));
                external.push(external_id.clone());
            }
            other => record_outcome(&mut tx, *id, other).await?,
        }
    }
    if !ids.is_empty() {
        mark_sent(&mut tx, &ids, &statuses, &external).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Marks deliveries sent, with the status and the platform's message id of each.
async fn mark_sent(
    conn: &mut PgConnection,
    ids: &[i64],
    statuses: &[i32],
    external_ids: &[Option<String>],
) -> Result<()> {
    sqlx::query!(
        "update deliveries d
         set state = 'sent', sent_at = now(), last_status = x.status, locked_until = null,
             last_error = null, external_message_id = x.external_id
         from unnest($1::bigint[], $2::int[], $3::text[]) as x (id, status, external_id)
         where d.id = x.id",
        ids,
        statuses,
        external_ids as &[Option<String>],
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn log_outcome(channel: Channel, id: i64, outcome: &Outcome) {
    match outcome {
        Outcome::Sent { .. } => tracing::debug!(delivery = id, "{channel} delivery sent"),
        Outcome::Gone { status, error } => {
            tracing::info!(delivery = id, status, error, "{channel} target gone")
        }
        Outcome::Retry {
            status,
            error,
            after,
            ..
        } => tracing::warn!(
            delivery = id,
            ?status,
            error,
            retry_in_secs = after.as_secs(),
            "{channel} delivery will be retried"
        ),
        Outcome::Failed { status, error } => {
            tracing::warn!(delivery = id, ?status, error, "{channel} delivery failed")
        }
        Outcome::Waiting { note, .. } => {
            tracing::info!(
                delivery = id,
                note,
                "{channel} delivery waits for the recipient"
            )
        }
    }
}

/// Delivers `sender`'s channel until `stop` completes, looking every `interval` when idle.
pub async fn run<S: Sender>(
    pool: PgPool,
    sender: &S,
    interval: Duration,
    stop: impl Future<Output = ()>,
) {
    let name = match sender.channel() {
        Channel::Push => "push deliveries",
        Channel::Telegram => "telegram deliveries",
        Channel::Whatsapp => "whatsapp deliveries",
        Channel::Email => "email deliveries",
    };
    worker::run(name, interval, stop, || async {
        deliver_due(&pool, sender)
            .await
            .map(|n| Round::after(n, BATCH))
    })
    .await;
}
