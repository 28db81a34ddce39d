//! From a stored e-mail to a case: every message fetched from the mailbox is first stored whole
//! ([`store`]), then processed once ([`process_pending`]) under a lease, so several server
//! processes reading the same mailbox, a restart in the middle, or the same message fetched twice
//! file it once.
//!
//! A reply to one of our e-mails (its `In-Reply-To`/`References` name one of our `Message-ID`s, or
//! its subject names a radicado and it comes from that case's own address) becomes the customer's
//! message on the case, resuming the clocks when the case waited on them. Anything else files a
//! new `peticion` (the quality director reclassifies it) for the customer the address belongs to,
//! or for an unverified contact known by it. Attachments of accepted types become blobs; the rest
//! are named on the case and the customer is told which types are accepted. What a machine wrote
//! (auto-replies, bounces, lists, our own messages) is kept and ignored.

use std::time::Duration;

use atiende_core::blobs::{self, BlobId, MAX_ATTACHMENTS};
use atiende_core::cases::{self, Actor, Filed, NewCase};
use atiende_core::contacts;
use atiende_core::error::{Error, Result};
use atiende_core::input::{self, Field};
use atiende_core::notifications::{self, Kind, NewNotification, Recipient};
use atiende_core::terms;
use atiende_core::types::{CaseType, Channel, PushUrgency};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::parse::{self, Incoming};

/// A message as fetched from the mailbox.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// `user@host/folder`.
    pub mailbox: String,
    pub uid_validity: u32,
    pub uid: u32,
    /// The whole message, or only its header when it was over the size limit.
    pub raw: Vec<u8>,
    /// Its size in the mailbox.
    pub size: u64,
    pub body_skipped: bool,
    /// When the mailbox received it (IMAP `INTERNALDATE`): the legal term runs from then.
    pub arrived_at: Option<DateTime<Utc>>,
}

/// What processing is bounded by.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest attachment kept, in bytes (the blob limit).
    pub attachment_bytes: usize,
    /// The largest message read whole; a larger one is read by its header only.
    pub message_bytes: usize,
}

/// Tries of a message that keeps failing before it is left as `failed` for staff.
pub const MAX_ATTEMPTS: i32 = 5;

/// The key a message is stored once by: its `Message-ID`, else the digest of its bytes.
pub fn message_key(message_id: Option<&str>, raw: &[u8]) -> String {
    match message_id {
        Some(id) => id.to_owned(),
        None => format!("sha256:{:x}", Sha256::digest(raw)),
    }
}

/// Stores a fetched message unless a message with its key is stored already, and moves the
/// folder's cursor past its UID. Returns whether it was new.
pub async fn store(db: &PgPool, m: &Fetched) -> Result<bool> {
    let key = message_key(parse::message_id(&m.raw).as_deref(), &m.raw);
    let mut tx = db.begin().await?;
    let inserted = sqlx::query_scalar!(
        "insert into inbound_mail (message_key, mailbox, uid_validity, uid, raw, size, body_skipped, arrived_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8)
         on conflict do nothing
         returning id",
        key,
        m.mailbox,
        i64::from(m.uid_validity),
        i64::from(m.uid),
        m.raw,
        i64::try_from(m.size).unwrap_or(i64::MAX),
        m.body_skipped,
        m.arrived_at,
    )
    .fetch_optional(&mut *tx)
    .await?;
    advance_cursor(&mut tx, &m.mailbox, m.uid_validity, m.uid).await?;
    tx.commit().await?;
    Ok(inserted.is_some())
}

/// Records that everything up to `uid` in the folder is stored.
pub async fn advance_cursor(
    conn: &mut PgConnection,
    mailbox: &str,
    uid_validity: u32,
    uid: u32,
) -> Result<()> {
    sqlx::query!(
        "insert into imap_cursors (mailbox, uid_validity, last_uid) values ($1, $2, $3)
         on conflict (mailbox, uid_validity)
         do update set last_uid = greatest(imap_cursors.last_uid, excluded.last_uid)",
        mailbox,
        i64::from(uid_validity),
        i64::from(uid),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The highest UID stored from the folder under this UIDVALIDITY (0 when none).
pub async fn cursor(db: &PgPool, mailbox: &str, uid_validity: u32) -> Result<u32> {
    let last = sqlx::query_scalar!(
        "select last_uid from imap_cursors where mailbox = $1 and uid_validity = $2",
        mailbox,
        i64::from(uid_validity)
    )
    .fetch_optional(db)
    .await?;
    Ok(last.and_then(|l| u32::try_from(l).ok()).unwrap_or(0))
}

/// Whether the message with this UID is stored already (and may be marked seen).
pub async fn is_stored(db: &PgPool, mailbox: &str, uid_validity: u32, uid: u32) -> Result<bool> {
    Ok(sqlx::query_scalar!(
        r#"select exists (select 1 from inbound_mail
                          where mailbox = $1 and uid_validity = $2 and uid = $3) as "stored!""#,
        mailbox,
        i64::from(uid_validity),
        i64::from(uid),
    )
    .fetch_one(db)
    .await?)
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Filed {
        case_id: Uuid,
    },
    Replied {
        case_id: Uuid,
    },
    Ignored {
        reason: String,
    },
    /// Another process processed it meanwhile (this one's lease had lapsed): nothing was done.
    Taken,
}

/// How long a process holds a message it is processing before another may take it.
pub const LEASE: Duration = Duration::from_secs(300);

/// Processes the stored messages nobody has processed yet, a few at a time, each under a lease so
/// that two processes (or two lanes) never work one message at once (a crashed process's message
/// is taken up after its lease), until none is left or `limit` were handled. Returns how many were
/// handled. No connection is held while a message is worked on: the case is filed, and the message
/// marked processed, in transactions of their own.
pub async fn process_pending(db: &PgPool, limits: Limits, limit: usize) -> Result<usize> {
    // Each message's work is mostly waiting on commits: a few at once keep the database busy.
    let handled = std::sync::atomic::AtomicUsize::new(0);
    let lanes = (0..LANES).map(|_| lane(db, limits, limit, &handled));
    for r in futures_util::future::join_all(lanes).await {
        r?;
    }
    Ok(handled.into_inner())
}

/// Messages processed at once by one process.
const LANES: usize = 4;

/// One lane of [`process_pending`]: takes messages one after another until none is left, the
/// lanes together handled `limit`, or one failed (it is tried again in a later round).
async fn lane(
    db: &PgPool,
    limits: Limits,
    limit: usize,
    handled: &std::sync::atomic::AtomicUsize,
) -> Result<()> {
    use std::sync::atomic::Ordering;
    while handled.load(Ordering::Relaxed) < limit {
        let Some(row) = sqlx::query!(
            "update inbound_mail set locked_until = now() + make_interval(secs => $1)
             where id = (select id from inbound_mail
                         where state = 'pending' and (locked_until is null or locked_until < now())
                         order by id
                         limit 1
                         for update skip locked)
             returning id, raw, size, body_skipped, arrived_at, filing_id, attempts",
            LEASE.as_secs_f64()
        )
        .fetch_optional(db)
        .await?
        else {
            break;
        };
        let stored = Stored {
            id: row.id,
            size: u64::try_from(row.size).unwrap_or_default(),
            body_skipped: row.body_skipped,
            arrived_at: row.arrived_at,
            filing_id: row.filing_id,
        };
        match process(db, &stored, &parse::parse(&row.raw), limits).await {
            Ok(outcome) => {
                tracing::info!(inbound_mail = row.id, ?outcome, "e-mail processed");
            }
            Err(e) => {
                let attempts = row.attempts + 1;
                let state = if attempts >= MAX_ATTEMPTS {
                    "failed"
                } else {
                    "pending"
                };
                tracing::error!(inbound_mail = row.id, attempts, error = %e, "processing an e-mail");
                sqlx::query!(
                    "update inbound_mail set attempts = $2, state = $3, reason = $4, locked_until = null
                     where id = $1 and state = 'pending'",
                    row.id,
                    attempts,
                    state,
                    e.to_string(),
                )
                .execute(db)
                .await?;
                if state == "pending" {
                    // Tried again in a later round, after the others.
                    break;
                }
            }
        }
        handled.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

struct Stored {
    id: i64,
    size: u64,
    body_skipped: bool,
    arrived_at: Option<DateTime<Utc>>,
    /// The case id a new case from this message gets, so a retry files the same case.
    filing_id: Uuid,
}

/// Marks a message processed within `tx`, first thing, so that its row is locked until the work
/// that goes with it commits; false when another process got there first (its lease lapsed).
async fn mark(
    tx: &mut PgConnection,
    id: i64,
    state: &str,
    customer_id: Uuid,
    case_id: Uuid,
) -> Result<bool> {
    let marked = sqlx::query!(
        "update inbound_mail set state = $2, processed_at = now(), customer_id = $3, case_id = $4,
                attempts = attempts + 1, reason = null, locked_until = null
         where id = $1 and state = 'pending'",
        id,
        state,
        customer_id,
        case_id,
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(marked == 1)
}

async fn process(db: &PgPool, stored: &Stored, m: &Incoming, limits: Limits) -> Result<Outcome> {
    if let Some(id) = &m.message_id
        && ours(db, id).await?
    {
        return ignore(db, stored.id, "one of Atiende's own e-mails".into()).await;
    }
    if let Some(sign) = m.automatic {
        return ignore(db, stored.id, format!("written by a machine ({sign})")).await;
    }
    let Some(from) = m.from.as_deref() else {
        return ignore(db, stored.id, "no sender address".into()).await;
    };
    let reply_to = replied_case(db, m, from).await?;
    let customer_id = match reply_to {
        Some((_, customer_id)) => customer_id,
        None => {
            let mut tx = db.begin().await?;
            let sender = if m.unauthenticated {
                contacts::email_contact(&mut tx, from, m.from_name.as_deref()).await?
            } else {
                contacts::email_sender(&mut tx, from, m.from_name.as_deref()).await?
            };
            tx.commit().await?;
            sender.customer_id()
        }
    };
    let (hashes, refused) = keep_attachments(db, customer_id, m, limits).await?;
    let notes = Notes {
        refused: &refused,
        skipped: stored
            .body_skipped
            .then_some((stored.size, limits.message_bytes)),
    };
    if let Some((case_id, customer_id)) = reply_to {
        let body = bounded::<input::Message>(&parse::reply_text(&m.text), &notes);
        let terms = terms::current(db).await?;
        let mut tx = db.begin().await?;
        if !mark(&mut tx, stored.id, "replied", customer_id, case_id).await? {
            return Ok(Outcome::Taken);
        }
        match cases::add_message(
            &mut *tx,
            &terms,
            Actor::Customer(customer_id),
            case_id,
            &body,
            &hashes,
        )
        .await
        {
            Ok((message, _)) => {
                sqlx::query!(
                    "update inbound_mail set case_message_id = $2 where id = $1",
                    stored.id,
                    message.id,
                )
                .execute(&mut *tx)
                .await?;
                tell_refused(&mut tx, stored.id, case_id, customer_id, &refused, limits).await?;
                tx.commit().await?;
                return Ok(Outcome::Replied { case_id });
            }
            // A case closed as withdrawn takes no more messages: the e-mail is a new request.
            Err(Error::Conflict {
                code: "case_withdrawn",
                ..
            }) => drop(tx),
            Err(e) => return Err(e),
        }
    }
    let subject = match m.subject.trim() {
        "" => text("no_subject"),
        s => s.chars().take(input::Subject::MAX).collect(),
    };
    let description = bounded::<input::Description>(&m.text, &notes);
    let new = NewCase {
        id: stored.filing_id,
        case_type: CaseType::Peticion,
        subject,
        description,
        channel: Channel::Email,
        chat_id: None,
        work_order_id: None,
    };
    let case = match cases::file_received(db, customer_id, None, new, stored.arrived_at).await? {
        Filed::Created(c) | Filed::Existing(c) => c,
    };
    let mut tx = db.begin().await?;
    if !mark(&mut tx, stored.id, "filed", customer_id, case.id).await? {
        return Ok(Outcome::Taken);
    }
    if !hashes.is_empty() {
        blobs::attach_customer_blobs(&mut tx, case.id, None, &hashes, customer_id).await?;
    }
    tell_refused(&mut tx, stored.id, case.id, customer_id, &refused, limits).await?;
    tx.commit().await?;
    Ok(Outcome::Filed { case_id: case.id })
}

async fn ignore(db: &PgPool, id: i64, reason: String) -> Result<Outcome> {
    sqlx::query!(
        "update inbound_mail set state = 'ignored', processed_at = now(), reason = $2,
                attempts = attempts + 1, locked_until = null
         where id = $1 and state = 'pending'",
        id,
        reason
    )
    .execute(db)
    .await?;
    Ok(Outcome::Ignored { reason })
}

/// Whether a `Message-ID` is one Atiende gave an e-mail it sent (the copy of an answer to the
/// service mailbox, or a message that came back).
async fn ours(db: &PgPool, message_id: &str) -> Result<bool> {
    Ok(sqlx::query_scalar!(
        r#"select exists (select 1 from deliveries
                          where channel = 'email' and external_message_id = $1) as "ours!""#,
        message_id
    )
    .fetch_one(db)
    .await?)
}

/// The case (and its customer) a message answers: one of our e-mails it names in its thread, or
/// the radicado in its subject when it comes from the case's own address.
async fn replied_case(db: &PgPool, m: &Incoming, from: &str) -> Result<Option<(Uuid, Uuid)>> {
    if !m.answers.is_empty() {
        let by_thread = sqlx::query!(
            r#"select c.id, c.customer_id
               from unnest($1::text[]) with ordinality as t (message_id, ord)
               join deliveries d on d.channel = 'email' and d.external_message_id = t.message_id
               join notifications n on n.id = d.notification_id
               join cases c on c.id = n.case_id
               order by t.ord
               limit 1"#,
            &m.answers
        )
        .fetch_optional(db)
        .await?;
        if let Some(c) = by_thread {
            return Ok(Some((c.id, c.customer_id)));
        }
    }
    let Some(radicado) = parse::radicado_in(&m.subject) else {
        return Ok(None);
    };
    if m.unauthenticated {
        return Ok(None);
    }
    let by_subject = sqlx::query!(
        r#"select c.id, c.customer_id from cases c join customers cu on cu.id = c.customer_id
           where c.radicado = $1
             and (lower(cu.email) = $2
                  or exists (select 1 from users u
                             where u.customer_id = c.customer_id and u.active and lower(u.email) = $2))"#,
        radicado,
        from
    )
    .fetch_optional(db)
    .await?;
    Ok(by_subject.map(|c| (c.id, c.customer_id)))
}

/// Stores the attachments of accepted types and sizes as the customer's blobs; returns their
/// hashes and the names of the others.
async fn keep_attachments(
    db: &PgPool,
    customer_id: Uuid,
    m: &Incoming,
    limits: Limits,
) -> Result<(Vec<String>, Vec<String>)> {
    let mut hashes = Vec::new();
    let mut refused = Vec::new();
    for a in &m.attachments {
        let id = BlobId::of(&a.bytes);
        let verified = (a.bytes.len() <= limits.attachment_bytes
            && hashes.len() < MAX_ATTACHMENTS
            && !a.bytes.is_empty())
        .then(|| blobs::verify(&id, Some(&a.content_type), &a.bytes).ok())
        .flatten();
        match verified {
            Some(v) => {
                let info = blobs::store_for_customer(db, customer_id, v).await?;
                if !hashes.contains(&info.sha256) {
                    hashes.push(info.sha256);
                }
            }
            None => refused.push(a.name.clone()),
        }
    }
    Ok((hashes, refused))
}

/// What is added to the text of the message or the case.
struct Notes<'a> {
    refused: &'a [String],
    /// The message's size and the limit, when only its header was read.
    skipped: Option<(u64, usize)>,
}

/// The text kept on the case, within `F`'s length, with the notes after it: readable characters
/// only (PostgreSQL text takes no NUL), never empty.
fn bounded<F: Field>(body: &str, notes: &Notes<'_>) -> String {
    let body: String = body
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .collect();
    let mut tail = Vec::new();
    if let Some((size, limit)) = notes.skipped {
        tail.push(text_with(
            "body_skipped",
            &[
                ("size", &megabytes(size)),
                ("limit", &megabytes(limit as u64)),
            ],
        ));
    }
    if !notes.refused.is_empty() {
        tail.push(text_with(
            "refused",
            &[("names", &notes.refused.join(", "))],
        ));
    }
    let tail = tail.join("\n");
    let room = F::MAX.saturating_sub(tail.chars().count() + 2);
    let mut out = if body.trim().is_empty() {
        text("no_text")
    } else if body.trim().chars().count() > room {
        let cut = text("truncated");
        let keep = room.saturating_sub(cut.chars().count() + 2);
        let mut b: String = body.trim().chars().take(keep).collect();
        b.push_str("\n\n");
        b.push_str(&cut);
        b
    } else {
        body.trim().to_owned()
    };
    if !tail.is_empty() {
        out.push_str("\n\n");
        out.push_str(&tail);
    }
    out
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

/// Texts written on a case, in the company's language.
fn text(key: &str) -> String {
    text_with(key, &[])
}

fn text_with(key: &str, vars: &[(&str, &str)]) -> String {
    crate::render::text("es", &format!("inbound.{key}"), vars)
}

/// Tells the customer which attachments were not kept and which types are accepted.
async fn tell_refused(
    conn: &mut PgConnection,
    inbound_id: i64,
    case_id: Uuid,
    customer_id: Uuid,
    refused: &[String],
    limits: Limits,
) -> Result<()> {
    if refused.is_empty() {
        return Ok(());
    }
    let case = sqlx::query!(
        r#"select radicado, type as "case_type: CaseType" from cases where id = $1"#,
        case_id
    )
    .fetch_one(&mut *conn)
    .await?;
    notifications::notify(
        conn,
        NewNotification {
            dedupe_key: format!("attachments_refused:{inbound_id}"),
            case_id: Some(case_id),
            recipient: Recipient::Customer(customer_id),
            kind: Kind::AttachmentsRefused,
            urgency: PushUrgency::Normal,
            ttl: notifications::NOTICE_TTL,
            data: serde_json::json!({
                "radicado": case.radicado,
                "type": case.case_type.as_str(),
                "names": refused.join(", "),
                "max_mb": megabytes(limits.attachment_bytes as u64),
            }),
            delay: Duration::ZERO,
        },
    )
    .await?;
    Ok(())
}
