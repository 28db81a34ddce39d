//! Projections between documents and rows, so the rest of the system never parses CRDTs:
//! - field reports and customer outboxes are read after every stored change (queued by a trigger
//!   on `sync_changes`) and handed to `atiende_core` as JSON: reports become rows, drafts become
//!   cases, ratings rate them;
//! - every case whose state changed (queued by a trigger on `case_events`) is written into its
//!   customer's inbox, together with what became of each draft; so is every survey invitation
//!   sent or answered (queued by a trigger on `survey_invitations`), with its questions.
//!
//! Each queue row is leased (SKIP LOCKED) and deleted once its work is done, unless a new change
//! queued it again meanwhile: several processes share the work, a crash leaves the row for
//! another worker once the lease lapses, and work that fails is tried again after a pause.

use std::future::Future;
use std::time::Duration;

use atiende_core::customer_documents::{self, DraftOutcome, OutboxResult, RatingOutcome};
use atiende_core::field_reports::{self, Projected};
use atiende_core::survey_documents;
use atiende_core::worker::{self, Round};
use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjId, ObjType, ROOT, ReadDoc, ScalarValue};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::DocumentId;
use crate::docs::ChangeError;
use crate::state::SyncState;
use crate::storage::{self, DocumentKind, StorageError};

/// How often the queues are looked at when they were empty.
const POLL: Duration = Duration::from_millis(200);
/// How long work that failed waits before it is tried again.
const RETRY_AFTER_SECS: f64 = 30.0;
/// A worker that died mid-work holds its row this long.
const LEASE_SECS: f64 = 60.0;
/// Work waits this long after it is first queued, so a burst of changes to one document (a
/// technician typing) is projected once.
const SETTLE_SECS: f64 = 0.2;

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Core(#[from] atiende_core::Error),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Change(#[from] ChangeError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("document content: {0}")]
    Content(#[from] serde_json::Error),
}

impl SyncState {
    /// Projects queued documents and writes queued cases into inboxes until `shutdown`
    /// completes. Every process runs one.
    pub async fn run_projector(&self, shutdown: impl Future<Output = ()>) {
        worker::run("sync projector", POLL, shutdown, || async {
            // One queue's failure does not hold the other up.
            let projected = self.project_next().await;
            let written = match self.write_next_inbox_entry().await {
                Ok(false) => self.work_next(Queue::Survey).await,
                other => other,
            };
            match (projected, written) {
                (Ok(a), Ok(b)) => Ok(if a || b { Round::More } else { Round::Idle }),
                (Err(e), Ok(_)) | (Ok(_), Err(e)) => Err(e),
                (Err(e), Err(inbox)) => {
                    tracing::error!(error = %inbox, "writing a customer inbox");
                    Err(e)
                }
            }
        })
        .await;
    }

    /// Projects one queued document. Returns whether there was one.
    pub async fn project_next(&self) -> Result<bool, ProjectionError> {
        self.work_next(Queue::Projection).await
    }

    /// Leases the oldest row of `queue`, does its work, then deletes the row unless a new change
    /// queued it again meanwhile; work that fails keeps its row, leased for a while.
    async fn work_next(&self, queue: Queue) -> Result<bool, ProjectionError> {
        let db = self.db();
        let Some((key, queued_at)) = queue.lease(db).await? else {
            return Ok(false);
        };
        let outcome = match queue {
            Queue::Projection => match DocumentId::parse(&key) {
                Ok(id) => self.project(id).await,
                // The column's check constraint makes this unreachable; drop the row if it happens.
                Err(_) => Ok(()),
            },
            Queue::Inbox => match Uuid::parse_str(&key) {
                Ok(case_id) => self.write_inbox_entry(case_id).await,
                Err(_) => Ok(()),
            },
            Queue::Survey => match Uuid::parse_str(&key) {
                Ok(invitation_id) => self.write_survey_entry(invitation_id).await,
                Err(_) => Ok(()),
            },
        };
        match outcome {
            Ok(()) => {
                queue.finish(db, &key, queued_at).await?;
                Ok(true)
            }
            Err(e) => {
                queue.postpone(db, &key).await?;
                Err(e)
            }
        }
    }

    async fn project(&self, id: DocumentId) -> Result<(), ProjectionError> {
        // From the copy in memory when one is held (the document is being synced), which spares
        // reading and loading it again; from storage otherwise.
        let (kind, heads, content) = match self.read_held(id, view).await? {
            Some(view) => view?,
            None => match storage::load(self.db(), id).await? {
                Some(mut stored) => view(stored.kind, &mut stored.doc)?,
                None => return Ok(()),
            },
        };
        match kind {
            DocumentKind::FieldReport => {
                let mut tx = self.db().begin().await?;
                let projected = field_reports::project(&mut tx, id, &heads, &content).await?;
                tx.commit().await?;
                match projected {
                    Projected::Invalid(reason) => {
                        tracing::info!(document = %id, %reason, "field report not projected");
                    }
                    Projected::Updated | Projected::Unchanged | Projected::Orphan => {}
                }
            }
            DocumentKind::CustomerOutbox => {
                let Some(customer) = customer_documents::outbox_owner(self.db(), id).await? else {
                    return Ok(());
                };
                let low = &self.settings().survey_low_score;
                let result =
                    customer_documents::process_outbox(self.db(), customer, &content, low).await?;
                self.write_outbox_outcomes(customer, result).await?;
            }
            DocumentKind::CustomerInbox => {}
        }
        Ok(())
    }

    /// Tells the customer, in their inbox, what became of their drafts, ratings and survey
    /// answers.
    async fn write_outbox_outcomes(
        &self,
        customer: Uuid,
        result: OutboxResult,
    ) -> Result<(), ProjectionError> {
        if result.drafts.is_empty() && result.ratings.is_empty() && result.surveys.is_empty() {
            return Ok(());
        }
        let Some(docs) = customer_documents::find(self.db(), customer).await? else {
            return Ok(());
        };
        let drafts: Vec<(String, Value)> = result
            .drafts
            .iter()
            .map(|(id, o): &(Uuid, DraftOutcome)| Ok((id.to_string(), serde_json::to_value(o)?)))
            .collect::<Result<_, serde_json::Error>>()?;
        let outcomes = |list: &[(Uuid, RatingOutcome)]| {
            list.iter()
                .map(|(id, o)| Ok((id.to_string(), serde_json::to_value(o)?)))
                .collect::<Result<Vec<(String, Value)>, serde_json::Error>>()
        };
        let ratings = outcomes(&result.ratings)?;
        let surveys = outcomes(&result.surveys)?;
        self.change_document(docs.inbox, |doc| {
            for (key, value) in &drafts {
                put_entry(doc, "drafts", key, value, &[])?;
            }
            for (key, value) in &ratings {
                put_entry(doc, "ratings", key, value, &[])?;
            }
            for (key, value) in &surveys {
                put_entry(doc, "survey_answers", key, value, &[])?;
            }
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// Writes one queued case into its customer's inbox. Returns whether there was one.
    pub async fn write_next_inbox_entry(&self) -> Result<bool, ProjectionError> {
        self.work_next(Queue::Inbox).await
    }

    async fn write_inbox_entry(&self, case_id: Uuid) -> Result<(), ProjectionError> {
        let Some((inbox, entry)) = customer_documents::inbox_entry(self.db(), case_id).await?
        else {
            return Ok(());
        };
        let value = serde_json::to_value(&entry)?;
        let key = case_id.to_string();
        self.change_document(inbox, |doc| put_entry(doc, "cases", &key, &value, &[]))
            .await?;
        Ok(())
    }
}

impl SyncState {
    /// Writes one survey invitation into its customer's inbox: its state each time, its questions
    /// (frozen with its version) the first time.
    async fn write_survey_entry(&self, invitation_id: Uuid) -> Result<(), ProjectionError> {
        let Some((inbox, mut entry)) =
            survey_documents::inbox_entry(self.db(), invitation_id).await?
        else {
            return Ok(());
        };
        let questions = serde_json::to_value(std::mem::take(&mut entry.questions))?;
        let value = serde_json::to_value(&entry)?;
        let key = invitation_id.to_string();
        self.change_document(inbox, |doc| {
            let fields = match &value {
                Value::Object(fields) => fields
                    .iter()
                    .filter(|(k, _)| *k != "questions")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                _ => serde_json::Map::new(),
            };
            put_entry(doc, "surveys", &key, &Value::Object(fields), &["questions"])?;
            let section = map_at(doc, &ROOT, "surveys")?;
            let entry = map_at(doc, &section, &key)?;
            if doc.get(&entry, "questions")?.is_none() {
                put_value(doc, &entry, At::Key("questions"), &questions)?;
            }
            Ok(())
        })
        .await?;
        Ok(())
    }
}

/// What a projection reads of a document: its kind, its heads and its content as JSON.
fn view(
    kind: DocumentKind,
    doc: &mut AutoCommit,
) -> Result<(DocumentKind, Vec<String>, Value), serde_json::Error> {
    let heads = doc.get_heads().iter().map(ToString::to_string).collect();
    let content = serde_json::to_value(automerge::AutoSerde::from(&*doc))?;
    Ok((kind, heads, content))
}

/// The two queues the projector works; keys are their primary keys as text.
#[derive(Debug, Clone, Copy)]
enum Queue {
    Projection,
    Inbox,
    Survey,
}

impl Queue {
    /// Leases the oldest row nobody holds: a short statement of its own, so the triggers that
    /// queue work never wait for the work.
    async fn lease(self, db: &PgPool) -> Result<Option<(String, DateTime<Utc>)>, sqlx::Error> {
        let row = match self {
            Queue::Projection => sqlx::query!(
                r#"update sync_projection_queue set leased_until = now() + make_interval(secs => $1)
                   where document_id = (
                       select document_id from sync_projection_queue
                       where (leased_until is null or leased_until <= now())
                         and since <= clock_timestamp() - make_interval(secs => $2)
                       order by since limit 1 for update skip locked)
                   returning document_id as "key!", queued_at"#,
                LEASE_SECS,
                SETTLE_SECS
            )
            .fetch_optional(db)
            .await?
            .map(|r| (r.key, r.queued_at)),
            Queue::Inbox => sqlx::query!(
                r#"update sync_inbox_queue set leased_until = now() + make_interval(secs => $1)
                   where case_id = (
                       select case_id from sync_inbox_queue
                       where (leased_until is null or leased_until <= now())
                         and since <= clock_timestamp() - make_interval(secs => $2)
                       order by since limit 1 for update skip locked)
                   returning case_id::text as "key!", queued_at"#,
                LEASE_SECS,
                SETTLE_SECS
            )
            .fetch_optional(db)
            .await?
            .map(|r| (r.key, r.queued_at)),
            Queue::Survey => sqlx::query!(
                r#"update sync_survey_queue set leased_until = now() + make_interval(secs => $1)
                   where invitation_id = (
                       select invitation_id from sync_survey_queue
                       where (leased_until is null or leased_until <= now())
                         and since <= clock_timestamp() - make_interval(secs => $2)
                       order by since limit 1 for update skip locked)
                   returning invitation_id::text as "key!", queued_at"#,
                LEASE_SECS,
                SETTLE_SECS
            )
            .fetch_optional(db)
            .await?
            .map(|r| (r.key, r.queued_at)),
        };
        Ok(row)
    }

    /// Deletes the row if nothing queued it again since it was leased; otherwise the new changes
    /// wait to settle before the next round.
    async fn finish(
        self,
        db: &PgPool,
        key: &str,
        queued_at: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        match self {
            Queue::Projection => {
                sqlx::query!(
                    "with gone as (
                         delete from sync_projection_queue where document_id = $1 and queued_at = $2
                         returning document_id
                     )
                     update sync_projection_queue set since = clock_timestamp()
                     where document_id = $1 and not exists (select 1 from gone)",
                    key,
                    queued_at
                )
                .execute(db)
                .await?
            }
            Queue::Inbox => {
                sqlx::query!(
                    "with gone as (
                         delete from sync_inbox_queue where case_id = $1::text::uuid and queued_at = $2
                         returning case_id
                     )
                     update sync_inbox_queue set since = clock_timestamp()
                     where case_id = $1::text::uuid and not exists (select 1 from gone)",
                    key,
                    queued_at
                )
                .execute(db)
                .await?
            }
            Queue::Survey => {
                sqlx::query!(
                    "with gone as (
                         delete from sync_survey_queue where invitation_id = $1::text::uuid and queued_at = $2
                         returning invitation_id
                     )
                     update sync_survey_queue set since = clock_timestamp()
                     where invitation_id = $1::text::uuid and not exists (select 1 from gone)",
                    key,
                    queued_at
                )
                .execute(db)
                .await?
            }
        };
        Ok(())
    }

    /// Keeps failed work away for a while; a new change queues it again at once.
    async fn postpone(self, db: &PgPool, key: &str) -> Result<(), sqlx::Error> {
        match self {
            Queue::Projection => {
                sqlx::query!(
                "update sync_projection_queue set leased_until = now() + make_interval(secs => $2)
                     where document_id = $1",
                key,
                RETRY_AFTER_SECS
            )
                .execute(db)
                .await?
            }
            Queue::Inbox => {
                sqlx::query!(
                    "update sync_inbox_queue set leased_until = now() + make_interval(secs => $2)
                     where case_id = $1::text::uuid",
                    key,
                    RETRY_AFTER_SECS
                )
                .execute(db)
                .await?
            }
            Queue::Survey => {
                sqlx::query!(
                    "update sync_survey_queue set leased_until = now() + make_interval(secs => $2)
                     where invitation_id = $1::text::uuid",
                    key,
                    RETRY_AFTER_SECS
                )
                .execute(db)
                .await?
            }
        };
        Ok(())
    }
}

/// Sets `root[section][key]` to the flat object `value`, touching only the fields that differ,
/// so writing the same state again adds no change to the document's history. Fields `value` no
/// longer has are removed (a refusal's `code` once the answer is accepted), except those `kept`.
fn put_entry(
    doc: &mut AutoCommit,
    section: &str,
    key: &str,
    value: &Value,
    kept: &[&str],
) -> Result<(), automerge::AutomergeError> {
    let section = map_at(doc, &ROOT, section)?;
    let entry = map_at(doc, &section, key)?;
    let Value::Object(fields) = value else {
        return Ok(());
    };
    let stale: Vec<String> = doc
        .keys(&entry)
        .filter(|k| !fields.contains_key(k) && !kept.contains(&k.as_str()))
        .collect();
    for k in stale {
        doc.delete(&entry, k.as_str())?;
    }
    for (field, v) in fields {
        if let Value::Array(items) = v {
            put_list(doc, &entry, field, items)?;
            continue;
        }
        let wanted = scalar(v);
        let current = match doc.get(&entry, field.as_str())? {
            Some((automerge::Value::Scalar(s), _)) => Some(s.into_owned()),
            _ => None,
        };
        if current.as_ref() != Some(&wanted) {
            doc.put(&entry, field.as_str(), wanted)?;
        }
    }
    Ok(())
}

/// Sets `obj[field]` to a list of these scalars, replacing the list only when it differs.
fn put_list(
    doc: &mut AutoCommit,
    obj: &ObjId,
    field: &str,
    items: &[Value],
) -> Result<(), automerge::AutomergeError> {
    let wanted: Vec<ScalarValue> = items.iter().map(scalar).collect();
    if let Some((automerge::Value::Object(ObjType::List), list)) = doc.get(obj, field)? {
        let mut current = Vec::with_capacity(wanted.len());
        for i in 0..doc.length(&list) {
            if let Some((automerge::Value::Scalar(s), _)) = doc.get(&list, i)? {
                current.push(s.into_owned());
            }
        }
        if current == wanted {
            return Ok(());
        }
    }
    let list = doc.put_object(obj, field, ObjType::List)?;
    for (i, item) in wanted.into_iter().enumerate() {
        doc.insert(&list, i, item)?;
    }
    Ok(())
}

/// Where [`put_value`] writes: a map's key, or a list's position (inserted there).
enum At<'a> {
    Key(&'a str),
    Index(usize),
}

/// Writes `value` at `at` in `obj`, nested maps and lists included (a survey's questions, with
/// their options).
fn put_value(
    doc: &mut AutoCommit,
    obj: &ObjId,
    at: At<'_>,
    value: &Value,
) -> Result<(), automerge::AutomergeError> {
    let kind = match value {
        Value::Object(_) => ObjType::Map,
        Value::Array(_) => ObjType::List,
        other => {
            return match at {
                At::Key(k) => doc.put(obj, k, scalar(other)),
                At::Index(i) => doc.insert(obj, i, scalar(other)),
            };
        }
    };
    let child = match at {
        At::Key(k) => doc.put_object(obj, k, kind)?,
        At::Index(i) => doc.insert_object(obj, i, kind)?,
    };
    match value {
        Value::Object(fields) => {
            for (k, v) in fields {
                put_value(doc, &child, At::Key(k), v)?;
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                put_value(doc, &child, At::Index(i), v)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The map at `parent[key]`, created if missing.
fn map_at(
    doc: &mut AutoCommit,
    parent: &ObjId,
    key: &str,
) -> Result<ObjId, automerge::AutomergeError> {
    match doc.get(parent, key)? {
        Some((automerge::Value::Object(ObjType::Map), id)) => Ok(id),
        _ => doc.put_object(parent, key, ObjType::Map),
    }
}

fn scalar(v: &Value) -> ScalarValue {
    match v {
        Value::Null => ScalarValue::Null,
        Value::Bool(b) => ScalarValue::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => ScalarValue::Int(i),
            (None, Some(f)) => ScalarValue::F64(f),
            _ => ScalarValue::Null,
        },
        Value::String(s) => ScalarValue::Str(s.as_str().into()),
        // Entries are flat (lists are written by `put_list`); anything deeper is written as its
        // JSON text.
        other => ScalarValue::Str(other.to_string().into()),
    }
}
