//! Projections between documents and rows, so the rest of the system never parses CRDTs:
//! - field reports and customer outboxes are read after every stored change (queued by a trigger
//!   on `sync_changes`) and handed to `atiende_core` as JSON: reports become rows, drafts become
//!   cases, ratings rate them;
//! - every case whose state changed (queued by a trigger on `case_events`) is written into its
//!   customer's inbox, together with what became of each draft.
//!
//! Each queue row is claimed with SKIP LOCKED and deleted in the transaction that handles it, so
//! several processes share the work, a crash leaves the row for the next try, and work that
//! fails is tried again after a pause.

use std::future::Future;
use std::time::Duration;

use atiende_core::customer_documents::{self, DraftOutcome, OutboxResult, RatingOutcome};
use atiende_core::field_reports::{self, Projected};
use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjId, ObjType, ROOT, ReadDoc, ScalarValue};
use serde_json::Value;
use uuid::Uuid;

use crate::DocumentId;
use crate::docs::ChangeError;
use crate::server::SyncState;
use crate::storage::{self, DocumentKind, StorageError};

/// How often the queues are looked at when they were empty.
const POLL: Duration = Duration::from_millis(200);
/// How long work that failed waits before it is tried again.
const RETRY_AFTER_SECS: f64 = 30.0;

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
        tokio::pin!(shutdown);
        loop {
            let mut busy = false;
            match self.project_next().await {
                Ok(done) => busy |= done,
                Err(e) => tracing::error!(error = %e, "projecting a sync document"),
            }
            match self.write_next_inbox_entry().await {
                Ok(done) => busy |= done,
                Err(e) => tracing::error!(error = %e, "writing a customer inbox"),
            }
            if busy {
                // Let shutdown in between items of a long queue.
                tokio::select! {
                    () = &mut shutdown => return,
                    () = tokio::task::yield_now() => {}
                }
                continue;
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Projects one queued document. Returns whether there was one.
    pub async fn project_next(&self) -> Result<bool, ProjectionError> {
        let db = self.db();
        let mut tx = db.begin().await?;
        let Some(key) = sqlx::query_scalar!(
            "select document_id from sync_projection_queue where queued_at <= now()
             order by queued_at limit 1 for update skip locked"
        )
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(false);
        };
        let outcome = match DocumentId::parse(&key) {
            Ok(id) => self.project(&mut tx, id).await,
            // The column's check constraint makes this unreachable; drop the row if it happens.
            Err(_) => Ok(()),
        };
        match outcome {
            Ok(()) => {
                sqlx::query!(
                    "delete from sync_projection_queue where document_id = $1",
                    key
                )
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(true)
            }
            Err(e) => {
                tx.rollback().await?;
                sqlx::query!(
                    "update sync_projection_queue set queued_at = now() + make_interval(secs => $2)
                     where document_id = $1",
                    key,
                    RETRY_AFTER_SECS
                )
                .execute(db)
                .await?;
                Err(e)
            }
        }
    }

    async fn project(
        &self,
        tx: &mut sqlx::PgConnection,
        id: DocumentId,
    ) -> Result<(), ProjectionError> {
        let Some(mut stored) = storage::load(self.db(), id).await? else {
            return Ok(());
        };
        let heads: Vec<String> = stored
            .doc
            .get_heads()
            .iter()
            .map(ToString::to_string)
            .collect();
        let content = serde_json::to_value(automerge::AutoSerde::from(&stored.doc))?;
        match stored.kind {
            DocumentKind::FieldReport => {
                match field_reports::project(tx, id, &heads, &content).await? {
                    Projected::Invalid(reason) => {
                        tracing::info!(document = %id, %reason, "field report not projected");
                    }
                    Projected::Updated | Projected::Unchanged | Projected::Orphan => {}
                }
            }
            DocumentKind::CustomerOutbox => {
                let Some(customer) = customer_documents::outbox_owner(&mut *tx, id).await? else {
                    return Ok(());
                };
                let result =
                    customer_documents::process_outbox(self.db(), customer, &content).await?;
                self.write_outbox_outcomes(customer, result).await?;
            }
            DocumentKind::CustomerInbox => {}
        }
        Ok(())
    }

    /// Tells the customer, in their inbox, what became of their drafts and ratings.
    async fn write_outbox_outcomes(
        &self,
        customer: Uuid,
        result: OutboxResult,
    ) -> Result<(), ProjectionError> {
        if result.drafts.is_empty() && result.ratings.is_empty() {
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
        let ratings: Vec<(String, Value)> = result
            .ratings
            .iter()
            .map(|(id, o): &(Uuid, RatingOutcome)| Ok((id.to_string(), serde_json::to_value(o)?)))
            .collect::<Result<_, serde_json::Error>>()?;
        self.change_document(docs.inbox, |doc| {
            for (key, value) in &drafts {
                put_entry(doc, "drafts", key, value)?;
            }
            for (key, value) in &ratings {
                put_entry(doc, "ratings", key, value)?;
            }
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// Writes one queued case into its customer's inbox. Returns whether there was one.
    pub async fn write_next_inbox_entry(&self) -> Result<bool, ProjectionError> {
        let db = self.db();
        let mut tx = db.begin().await?;
        let Some(case_id) = sqlx::query_scalar!(
            "select case_id from sync_inbox_queue where queued_at <= now()
             order by queued_at limit 1 for update skip locked"
        )
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(false);
        };
        let written = self.write_inbox_entry(case_id).await;
        match written {
            Ok(()) => {
                sqlx::query!("delete from sync_inbox_queue where case_id = $1", case_id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(true)
            }
            Err(e) => {
                tx.rollback().await?;
                sqlx::query!(
                    "update sync_inbox_queue set queued_at = now() + make_interval(secs => $2)
                     where case_id = $1",
                    case_id,
                    RETRY_AFTER_SECS
                )
                .execute(db)
                .await?;
                Err(e)
            }
        }
    }

    async fn write_inbox_entry(&self, case_id: Uuid) -> Result<(), ProjectionError> {
        let Some((inbox, entry)) = customer_documents::inbox_entry(self.db(), case_id).await?
        else {
            return Ok(());
        };
        let value = serde_json::to_value(&entry)?;
        let key = case_id.to_string();
        self.change_document(inbox, |doc| put_entry(doc, "cases", &key, &value))
            .await?;
        Ok(())
    }
}

/// Sets `root[section][key]` to the flat object `value`, touching only the fields that differ,
/// so writing the same state again adds no change to the document's history.
fn put_entry(
    doc: &mut AutoCommit,
    section: &str,
    key: &str,
    value: &Value,
) -> Result<(), automerge::AutomergeError> {
    let section = map_at(doc, &ROOT, section)?;
    let entry = map_at(doc, &section, key)?;
    let Value::Object(fields) = value else {
        return Ok(());
    };
    for (field, v) in fields {
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
        // Entries are flat; a nested value is written as its JSON text.
        other => ScalarValue::Str(other.to_string().into()),
    }
}
