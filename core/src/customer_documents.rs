//! Each customer's two sync documents. The **outbox** is theirs to write: PQRS drafted offline
//! (`drafts`, keyed by the device's UUID), ratings of answers (`ratings`, keyed by case id) and
//! survey answers (`surveys`, see [`crate::survey_documents`]). The **inbox** only the server
//! writes: every case with its radicado, status, due date, answer and rating prompt (`cases`),
//! every survey invitation with its questions (`surveys`), and what became of each draft, rating
//! and survey answer (`drafts`, `ratings`, `survey_answers`).
//!
//! A draft is filed through [`cases::file`] with its UUID as the case id, so syncing it again, or
//! also posting it over REST, files it once.

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ROOT};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use crate::auth::User;
use crate::blobs;
use crate::cases::{self, Filed, NewCase};
use crate::doc_id::DocumentId;
use crate::documents::{self, DocumentKind, Mode};
use crate::error::{Error, Result};
use crate::types::{CaseStatus, CaseType, Channel, Role};

/// At most this many drafts or ratings are looked at in one outbox.
pub const MAX_OUTBOX_ENTRIES: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CustomerDocuments {
    pub outbox: DocumentId,
    pub inbox: DocumentId,
}

fn parse_id(raw: &str) -> Result<DocumentId> {
    DocumentId::parse(raw).map_err(|e| Error::Internal(format!("stored document id: {e}")))
}

fn empty_maps(doc: &mut AutoCommit, keys: &[&str]) -> Result<(), automerge::AutomergeError> {
    for key in keys {
        doc.put_object(ROOT, *key, ObjType::Map)?;
    }
    Ok(())
}

pub async fn find(db: impl PgExecutor<'_>, customer_id: Uuid) -> Result<Option<CustomerDocuments>> {
    let row = sqlx::query!(
        "select outbox_document_id, inbox_document_id from customer_documents where customer_id = $1",
        customer_id
    )
    .fetch_optional(db)
    .await?;
    row.map(|r| {
        Ok(CustomerDocuments {
            outbox: parse_id(&r.outbox_document_id)?,
            inbox: parse_id(&r.inbox_document_id)?,
        })
    })
    .transpose()
}

/// The customer's outbox and inbox, created on first use (every user of the customer may write
/// the outbox and read the inbox). Every existing case is queued for the new inbox.
pub async fn ensure(pool: &PgPool, customer_id: Uuid) -> Result<CustomerDocuments> {
    if let Some(found) = find(pool, customer_id).await? {
        return Ok(found);
    }
    let mut tx = pool.begin().await?;
    // Serialises two first uses of one customer (two devices logging in at once).
    sqlx::query!(
        "select id from customers where id = $1 for update",
        customer_id
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(Error::not_found("customer_not_found", "customer"))?;
    if let Some(found) = find(&mut *tx, customer_id).await? {
        return Ok(found);
    }
    let users = sqlx::query_scalar!("select id from users where customer_id = $1", customer_id)
        .fetch_all(&mut *tx)
        .await?;
    let writers: Vec<(Uuid, Mode)> = users.iter().map(|u| (*u, Mode::Write)).collect();
    let readers: Vec<(Uuid, Mode)> = users.iter().map(|u| (*u, Mode::Read)).collect();
    let outbox = documents::create(&mut *tx, DocumentKind::CustomerOutbox, &writers, |doc| {
        empty_maps(doc, &["drafts", "ratings", "surveys"])
    })
    .await?;
    let inbox = documents::create(&mut *tx, DocumentKind::CustomerInbox, &readers, |doc| {
        empty_maps(
            doc,
            &["cases", "drafts", "ratings", "surveys", "survey_answers"],
        )
    })
    .await?;
    sqlx::query!(
        "insert into customer_documents (customer_id, outbox_document_id, inbox_document_id)
         values ($1, $2, $3)",
        customer_id,
        outbox.to_string(),
        inbox.to_string()
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "insert into sync_inbox_queue (case_id) select id from cases where customer_id = $1
         on conflict do nothing",
        customer_id
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "insert into sync_survey_queue (invitation_id)
         select id from survey_invitations where customer_id = $1
         on conflict do nothing",
        customer_id
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(CustomerDocuments { outbox, inbox })
}

/// The customer whose outbox this document is.
pub async fn outbox_owner(db: impl PgExecutor<'_>, doc: DocumentId) -> Result<Option<Uuid>> {
    Ok(sqlx::query_scalar!(
        "select customer_id from customer_documents where outbox_document_id = $1",
        doc.to_string()
    )
    .fetch_optional(db)
    .await?)
}

/// What the inbox says about a draft.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum DraftOutcome {
    Filed {
        case_id: Uuid,
        radicado: String,
        /// Attachments not uploaded yet; attached when they arrive.
        missing_attachments: Vec<String>,
    },
    Rejected {
        code: String,
        reason: String,
    },
}

/// What the inbox says about a rating (or a survey's answers) written to the outbox.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RatingOutcome {
    Accepted,
    Rejected { code: String, reason: String },
}

/// What processing an outbox did, for the inbox.
#[derive(Debug, Default)]
pub struct OutboxResult {
    pub drafts: Vec<(Uuid, DraftOutcome)>,
    pub ratings: Vec<(Uuid, RatingOutcome)>,
    /// By invitation id.
    pub surveys: Vec<(Uuid, RatingOutcome)>,
}

struct Draft {
    case_type: String,
    subject: String,
    description: String,
    attachments: Vec<String>,
}

fn draft_hash(d: &Draft) -> Vec<u8> {
    let mut h = Sha256::new();
    for part in [&d.case_type, &d.subject, &d.description] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    for a in &d.attachments {
        h.update((a.len() as u64).to_be_bytes());
        h.update(a.as_bytes());
    }
    h.finalize().to_vec()
}

fn as_text(v: Option<&Value>) -> String {
    v.and_then(Value::as_str).unwrap_or_default().to_owned()
}

fn draft(v: &Value) -> Draft {
    Draft {
        case_type: as_text(v.get("type")),
        subject: as_text(v.get("subject")),
        description: as_text(v.get("description")),
        attachments: v
            .get("attachments")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

pub(crate) fn rejection(e: &Error) -> Option<(String, String)> {
    match e {
        Error::Invalid { code, message } | Error::Conflict { code, message } => {
            Some(((*code).to_owned(), message.clone()))
        }
        Error::Forbidden { code, message } => Some(((*code).to_owned(), message.clone())),
        Error::NotFound { code, what } => Some(((*code).to_owned(), format!("{what} not found"))),
        _ => None,
    }
}

/// The user a customer's outbox acts as: the customer's first active user.
async fn acting_user(db: impl PgExecutor<'_>, customer_id: Uuid) -> Result<Option<User>> {
    let row = sqlx::query!(
        "select id, email, name, language from users
         where customer_id = $1 and active order by created_at, id limit 1",
        customer_id
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| User {
        id: r.id,
        email: r.email,
        name: r.name,
        role: Role::Customer,
        customer_id: Some(customer_id),
        language: r.language,
    }))
}

/// Files the outbox's new or corrected drafts and applies its ratings and survey answers.
/// Refusals (bad content, an id already used for other content) are returned for the inbox;
/// database failures are errors, and processing the same outbox again after one does no harm.
pub async fn process_outbox(
    pool: &PgPool,
    customer_id: Uuid,
    content: &Value,
    low: &crate::surveys::LowScore,
) -> Result<OutboxResult> {
    let mut result = OutboxResult::default();
    let Some(user) = acting_user(pool, customer_id).await? else {
        return Ok(result);
    };
    let empty = serde_json::Map::new();
    let drafts = content
        .get("drafts")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    for (key, value) in drafts.iter().take(MAX_OUTBOX_ENTRIES) {
        let Ok(id) = Uuid::parse_str(key) else {
            continue;
        };
        let d = draft(value);
        let mut hash = draft_hash(&d);
        let seen = sqlx::query_scalar!(
            "select content_hash from outbox_drafts where id = $1 and customer_id = $2",
            id,
            customer_id
        )
        .fetch_optional(pool)
        .await?;
        if seen.as_deref() == Some(hash.as_slice()) {
            continue;
        }
        let outcome = file_draft(pool, &user, id, &d).await?;
        let (case_id, code, reason) = match &outcome {
            DraftOutcome::Filed {
                case_id,
                missing_attachments,
                ..
            } => {
                if !missing_attachments.is_empty() {
                    // Not the hash of what was handled: the draft is looked at again next time.
                    hash.clear();
                }
                (Some(*case_id), None, None)
            }
            DraftOutcome::Rejected { code, reason } => {
                (None, Some(code.clone()), Some(reason.clone()))
            }
        };
        sqlx::query!(
            "insert into outbox_drafts (id, customer_id, case_id, error_code, error, content_hash)
             values ($1, $2, $3, $4, $5, $6)
             on conflict (id) do update set case_id = excluded.case_id, error_code = excluded.error_code,
                 error = excluded.error, content_hash = excluded.content_hash, processed_at = now()
             where outbox_drafts.customer_id = excluded.customer_id",
            id,
            customer_id,
            case_id,
            code,
            reason,
            hash
        )
        .execute(pool)
        .await?;
        result.drafts.push((id, outcome));
    }
    let ratings = content
        .get("ratings")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    for (key, value) in ratings.iter().take(MAX_OUTBOX_ENTRIES) {
        let Ok(case_id) = Uuid::parse_str(key) else {
            continue;
        };
        if let Some(outcome) = apply_rating(pool, &user, case_id, value).await? {
            result.ratings.push((case_id, outcome));
        }
    }
    result.surveys =
        crate::survey_documents::apply_answers(pool, customer_id, content, low).await?;
    Ok(result)
}

async fn file_draft(pool: &PgPool, user: &User, id: Uuid, d: &Draft) -> Result<DraftOutcome> {
    let case_type = match d.case_type.parse::<CaseType>() {
        Ok(t) => t,
        Err(_) => {
            return Ok(DraftOutcome::Rejected {
                code: "invalid_type".into(),
                reason: format!("{:?} is not a PQRS type", d.case_type),
            });
        }
    };
    let customer_id = user.customer_id.unwrap_or_default();
    let new = NewCase {
        id,
        case_type,
        subject: d.subject.clone(),
        description: d.description.clone(),
        channel: Channel::App,
        chat_id: None,
        work_order_id: None,
    };
    let case = match cases::file(pool, customer_id, Some(user), new).await {
        Ok(Filed::Created(case) | Filed::Existing(case)) => case,
        Err(e) => {
            return match rejection(&e) {
                Some((code, reason)) => Ok(DraftOutcome::Rejected { code, reason }),
                None => Err(e),
            };
        }
    };
    // The PQRS is filed even while a photo is still uploading: the legal term must not wait for
    // it. What is missing is attached when it arrives (its upload queues the outbox again).
    let mut missing_attachments = Vec::new();
    let mut conn = pool.acquire().await?;
    for hash in d.attachments.iter().take(blobs::MAX_ATTACHMENTS) {
        match blobs::attach_to_case(&mut conn, case.id, None, std::slice::from_ref(hash), user)
            .await
        {
            Ok(_) => {}
            Err(Error::Invalid { .. }) => missing_attachments.push(hash.clone()),
            Err(e) => return Err(e),
        }
    }
    Ok(DraftOutcome::Filed {
        case_id: case.id,
        radicado: case.radicado,
        missing_attachments,
    })
}

async fn apply_rating(
    pool: &PgPool,
    user: &User,
    case_id: Uuid,
    value: &Value,
) -> Result<Option<RatingOutcome>> {
    let Ok(case) =
        cases::get_for_customer(pool, case_id, user.customer_id.unwrap_or_default()).await
    else {
        return Ok(Some(RatingOutcome::Rejected {
            code: "case_not_found".into(),
            reason: "case not found".into(),
        }));
    };
    match case.status {
        CaseStatus::Rated => return Ok(None),
        CaseStatus::Answered => {}
        // Not answered yet: the app asks for a rating only once the inbox shows the answer.
        _ => return Ok(None),
    }
    let Some(score) = value.get("score").and_then(Value::as_i64) else {
        return Ok(Some(RatingOutcome::Rejected {
            code: "invalid_score".into(),
            reason: "the score must be a whole number from 1 to 5".into(),
        }));
    };
    let comment = value.get("comment").and_then(Value::as_str);
    match cases::rate(pool, user, case_id, score, comment).await {
        Ok(_) => Ok(Some(RatingOutcome::Accepted)),
        Err(e) => match rejection(&e) {
            Some((code, reason)) => Ok(Some(RatingOutcome::Rejected { code, reason })),
            None => Err(e),
        },
    }
}

/// One case as the customer's inbox shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InboxCase {
    pub radicado: String,
    #[serde(rename = "type")]
    pub case_type: String,
    pub subject: String,
    pub status: String,
    pub legal_due_date: NaiveDate,
    pub filed_at: DateTime<Utc>,
    pub answer: Option<String>,
    /// Set once the answer is sent and until the customer rates it.
    pub rating_requested: bool,
    /// What the app shows to ask for the rating, in the customer's language.
    pub rating_prompt: Option<String>,
    pub rating: Option<i16>,
}

/// Where a case goes in its customer's inbox and what it says there; `None` when the customer has
/// no inbox yet (it is filled when they first sync).
pub async fn inbox_entry(pool: &PgPool, case_id: Uuid) -> Result<Option<(DocumentId, InboxCase)>> {
    let case = cases::get(pool, case_id).await?;
    let Some(docs) = find(pool, case.customer_id).await? else {
        return Ok(None);
    };
    let language = sqlx::query_scalar!(
        "select language from users where customer_id = $1 order by created_at, id limit 1",
        case.customer_id
    )
    .fetch_optional(pool)
    .await?
    .unwrap_or_else(|| "es".into());
    let answered = case.status == CaseStatus::Answered;
    let (visible_answer, rating_prompt) = match case.status {
        CaseStatus::Answered | CaseStatus::Rated => (
            case.answer.clone(),
            answered.then(|| crate::texts::rating_prompt(&language, &case.radicado)),
        ),
        _ => (None, None),
    };
    Ok(Some((
        docs.inbox,
        InboxCase {
            radicado: case.radicado,
            case_type: case.case_type.as_str().to_owned(),
            subject: case.subject,
            status: case.status.as_str().to_owned(),
            legal_due_date: case.legal_due_date,
            filed_at: case.created_at,
            answer: visible_answer,
            rating_requested: answered,
            rating_prompt,
            rating: case.rating_score,
        },
    )))
}
