//! The registry of sync documents: which Automerge documents exist, what each holds, and who may
//! read or write it. The rest of the system creates documents and changes access here, inside its
//! own transactions; `atiende-sync` serves their content and follows access changes live, told
//! through PostgreSQL `NOTIFY` on [`SYNC_CHANNEL`] when the transaction commits.

use automerge::AutoCommit;
use automerge::transaction::CommitOptions;
use sqlx::{Acquire, PgExecutor, Postgres};
use uuid::Uuid;

use crate::doc_id::{DocumentId, RandomError};

/// The `NOTIFY` channel every sync server listens on. Payloads are JSON objects:
/// `{"access": "<user uuid>", "doc": "<id>"}` when a user's access to a document changed, and
/// `{"doc": "<id>", "origin": "<server peer id>"}` when a server stored new changes,
/// `{"session_ended": "<hex SHA-256 of the bearer token>"}` when a session was revoked (logout),
/// and `{"user_deactivated": "<user uuid>"}` when a user was deactivated: servers then close the
/// sync connections of that session or user.
pub const SYNC_CHANNEL: &str = "atiende_sync";

/// What a document holds, which decides who the rest of the system lets at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocumentKind {
    /// One per work order visit, edited by its technicians.
    FieldReport,
    /// A customer's PQRS drafts, written by the customer.
    CustomerOutbox,
    /// What the server tells a customer; only the server writes it.
    CustomerInbox,
}

impl DocumentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentKind::FieldReport => "field_report",
            DocumentKind::CustomerOutbox => "customer_outbox",
            DocumentKind::CustomerInbox => "customer_inbox",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "field_report" => Some(DocumentKind::FieldReport),
            "customer_outbox" => Some(DocumentKind::CustomerOutbox),
            "customer_inbox" => Some(DocumentKind::CustomerInbox),
            _ => None,
        }
    }
}

/// What a user may do with a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Receives the document; its changes are neither applied nor stored.
    Read,
    /// Receives the document and its changes are merged and stored.
    Write,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Read => "read",
            Mode::Write => "write",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(Mode::Read),
            "write" => Some(Mode::Write),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DocumentError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("building the initial document: {0}")]
    Initial(Box<automerge::AutomergeError>),
    #[error(transparent)]
    Random(#[from] RandomError),
    #[error("document {0} does not exist")]
    NoSuchDocument(DocumentId),
    #[error("user {0} does not exist")]
    NoSuchUser(Uuid),
}

impl From<DocumentError> for crate::Error {
    fn from(e: DocumentError) -> Self {
        match e {
            DocumentError::Database(e) => crate::Error::Database(e),
            other => crate::Error::Internal(other.to_string()),
        }
    }
}

/// Creates a document with its initial content and access list, in one transaction (a savepoint
/// when `db` is already a transaction). Only the server creates documents: a client that
/// announces one of its own gets `doc-unavailable`.
///
/// `initial` fills the document; if it makes no change an empty change is committed, because an
/// automerge-repo client treats a document without heads as one nobody has.
pub async fn create<'a>(
    db: impl Acquire<'a, Database = Postgres>,
    kind: DocumentKind,
    access: &[(Uuid, Mode)],
    initial: impl FnOnce(&mut AutoCommit) -> Result<(), automerge::AutomergeError>,
) -> Result<DocumentId, DocumentError> {
    let mut doc = AutoCommit::new();
    initial(&mut doc).map_err(|e| DocumentError::Initial(Box::new(e)))?;
    doc.commit();
    if doc.get_heads().is_empty() {
        doc.empty_change(CommitOptions::default());
    }
    let bytes = doc.save();
    let id = DocumentId::generate()?;
    let key = id.to_string();

    let mut tx = db.begin().await?;
    sqlx::query!(
        "insert into sync_documents (document_id, kind) values ($1, $2)",
        key,
        kind.as_str(),
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "insert into sync_snapshots (document_id, data) values ($1, $2)",
        key,
        bytes,
    )
    .execute(&mut *tx)
    .await?;
    for &(user_id, mode) in access {
        grant(&mut *tx, id, user_id, mode).await?;
    }
    tx.commit().await?;
    Ok(id)
}

/// Lets a user read or write a document (replacing what they had). Connected sync peers follow
/// once the transaction commits.
pub async fn grant(
    db: impl PgExecutor<'_>,
    id: DocumentId,
    user_id: Uuid,
    mode: Mode,
) -> Result<(), DocumentError> {
    sqlx::query!(
        "with granted as (
             insert into sync_document_access (document_id, user_id, mode) values ($1, $2, $3)
             on conflict (document_id, user_id) do update set mode = excluded.mode, granted_at = now()
             returning document_id, user_id
         )
         select count(*) as \"n!\"
         from granted, pg_notify($4, json_build_object('doc', document_id, 'access', user_id)::text)",
        id.to_string(),
        user_id,
        mode.as_str(),
        SYNC_CHANNEL,
    )
    .fetch_one(db)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(d)
            if d.constraint() == Some("sync_document_access_document_id_fkey") =>
        {
            DocumentError::NoSuchDocument(id)
        }
        sqlx::Error::Database(d) if d.constraint() == Some("sync_document_access_user_id_fkey") => {
            DocumentError::NoSuchUser(user_id)
        }
        _ => DocumentError::Database(e),
    })?;
    Ok(())
}

/// Takes a user's access to a document away. Returns whether they had any. Their connected peers
/// stop receiving the document once the transaction commits.
pub async fn revoke(
    db: impl PgExecutor<'_>,
    id: DocumentId,
    user_id: Uuid,
) -> Result<bool, DocumentError> {
    let revoked = sqlx::query_scalar!(
        r#"with revoked as (
               delete from sync_document_access where document_id = $1 and user_id = $2
               returning document_id, user_id
           )
           select count(*) as "n!"
           from revoked, pg_notify($3, json_build_object('doc', document_id, 'access', user_id)::text)"#,
        id.to_string(),
        user_id,
        SYNC_CHANNEL,
    )
    .fetch_one(db)
    .await?;
    Ok(revoked > 0)
}
