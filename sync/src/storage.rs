//! Sync documents in PostgreSQL: which documents exist, who may read or write each, and their
//! content as a snapshot plus incremental change rows (see `migrations/*_sync.sql`).
//!
//! Everything here is a plain function over a connection or pool, so the rest of the system can
//! create documents and grant access inside its own transactions. The live side (telling
//! connected peers) is [`crate::SyncState`].

use std::time::Duration;

use automerge::transaction::CommitOptions;
use automerge::{AutoCommit, LoadOptions, OnPartialLoad};
use sqlx::{Acquire, PgExecutor, PgPool, Postgres};
use uuid::Uuid;

use crate::DocumentId;
use crate::doc_id::RandomError;

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
pub enum StorageError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored document {document_id} does not load: {source}")]
    Corrupt {
        document_id: DocumentId,
        source: Box<automerge::AutomergeError>,
    },
    #[error("stored {column} {value:?} is not a known value")]
    UnknownValue { column: &'static str, value: String },
    #[error("building the initial document: {0}")]
    Initial(Box<automerge::AutomergeError>),
    #[error(transparent)]
    Random(#[from] RandomError),
    #[error("document {0} does not exist")]
    NoSuchDocument(DocumentId),
    #[error("user {0} does not exist")]
    NoSuchUser(Uuid),
}

impl StorageError {
    /// Whether trying again may succeed: the database was unreachable, busy or restarting,
    /// rather than refusing the data.
    pub fn is_transient(&self) -> bool {
        let StorageError::Database(e) = self else {
            return false;
        };
        match e {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Protocol(_) => true,
            sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                // connection exceptions, serialization failure, deadlock, admin shutdown,
                // crash shutdown, cannot connect now
                code.starts_with("08")
                    || matches!(
                        code.as_ref(),
                        "40001" | "40P01" | "57P01" | "57P02" | "57P03"
                    )
            }),
            _ => false,
        }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// A document as stored, ready to sync.
pub struct StoredDocument {
    pub kind: DocumentKind,
    pub doc: AutoCommit,
    /// Change rows on top of the snapshot: what the next compaction would fold.
    pub incremental_rows: usize,
}

fn kind_from_db(value: String) -> Result<DocumentKind> {
    DocumentKind::parse(&value).ok_or(StorageError::UnknownValue {
        column: "sync_documents.kind",
        value,
    })
}

fn mode_from_db(value: String) -> Result<Mode> {
    Mode::parse(&value).ok_or(StorageError::UnknownValue {
        column: "sync_document_access.mode",
        value,
    })
}

/// Whether the document exists, and what the user may do with it (`None`: nothing).
pub async fn access(
    db: impl PgExecutor<'_>,
    id: DocumentId,
    user_id: Uuid,
) -> Result<Option<(DocumentKind, Option<Mode>)>> {
    let row = sqlx::query!(
        r#"select d.kind, a.mode as "mode?"
           from sync_documents d
           left join sync_document_access a on a.document_id = d.document_id and a.user_id = $2
           where d.document_id = $1"#,
        id.to_string(),
        user_id,
    )
    .fetch_optional(db)
    .await?;
    row.map(|r| Ok((kind_from_db(r.kind)?, r.mode.map(mode_from_db).transpose()?)))
        .transpose()
}

/// The documents a user may access, with their kind and mode.
pub async fn documents_of_user(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
) -> Result<Vec<(DocumentId, DocumentKind, Mode)>> {
    let rows = sqlx::query!(
        "select d.document_id, d.kind, a.mode
         from sync_document_access a join sync_documents d on d.document_id = a.document_id
         where a.user_id = $1
         order by d.created_at, d.document_id",
        user_id,
    )
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|r| {
            let id = DocumentId::parse(&r.document_id).map_err(|_| StorageError::UnknownValue {
                column: "sync_documents.document_id",
                value: r.document_id,
            })?;
            Ok((id, kind_from_db(r.kind)?, mode_from_db(r.mode)?))
        })
        .collect()
}

/// The snapshot (if any) and the change rows after it, read in one statement so that a
/// compaction committing in between cannot hide rows it folded.
async fn read_content(
    db: impl PgExecutor<'_>,
    id: &str,
) -> Result<(Option<Vec<u8>>, Vec<(i64, Vec<u8>)>)> {
    let rows = sqlx::query!(
        r#"select 0::bigint as "seq!", data as "data!" from sync_snapshots where document_id = $1
           union all
           select seq, data from sync_changes where document_id = $1
           order by 1"#,
        id,
    )
    .fetch_all(db)
    .await?;
    let mut snapshot = None;
    let mut changes = Vec::with_capacity(rows.len());
    for r in rows {
        if r.seq == 0 {
            snapshot = Some(r.data);
        } else {
            changes.push((r.seq, r.data));
        }
    }
    Ok((snapshot, changes))
}

/// The snapshot with the change rows after it, loaded strictly: Automerge's incremental load
/// skips what it cannot parse, and a stored document must never lose content silently.
fn assemble(
    document_id: DocumentId,
    snapshot: Option<&[u8]>,
    changes: &[(i64, Vec<u8>)],
) -> Result<AutoCommit> {
    let size =
        snapshot.map_or(0, <[u8]>::len) + changes.iter().map(|(_, c)| c.len()).sum::<usize>();
    let mut all = Vec::with_capacity(size);
    all.extend_from_slice(snapshot.unwrap_or_default());
    for (_, bytes) in changes {
        all.extend_from_slice(bytes);
    }
    AutoCommit::load_with_options(
        &all,
        LoadOptions::new().on_partial_load(OnPartialLoad::Error),
    )
    .map_err(|source| StorageError::Corrupt {
        document_id,
        source: Box::new(source),
    })
}

/// Loads a document: its snapshot with every change row applied. `None` if it does not exist.
pub async fn load(db: &PgPool, id: DocumentId) -> Result<Option<StoredDocument>> {
    let key = id.to_string();
    let Some(kind) = sqlx::query_scalar!(
        "select kind from sync_documents where document_id = $1",
        key
    )
    .fetch_optional(db)
    .await?
    else {
        return Ok(None);
    };
    let (snapshot, changes) = read_content(db, &key).await?;
    let doc = assemble(id, snapshot.as_deref(), &changes)?;
    Ok(Some(StoredDocument {
        kind: kind_from_db(kind)?,
        doc,
        incremental_rows: changes.len(),
    }))
}

/// Stores a batch of new changes (bytes from `save_after`), committed when this returns.
pub async fn append(db: impl PgExecutor<'_>, id: DocumentId, changes: &[u8]) -> Result<()> {
    sqlx::query!(
        "insert into sync_changes (document_id, data) values ($1, $2)",
        id.to_string(),
        changes,
    )
    .execute(db)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(d) if d.constraint() == Some("sync_changes_document_id_fkey") => {
            StorageError::NoSuchDocument(id)
        }
        _ => StorageError::Database(e),
    })?;
    Ok(())
}

/// [`append`], trying again after transient database errors (three attempts in about a
/// second), so a blip does not fail the peer's connection.
pub async fn append_with_retry(db: &PgPool, id: DocumentId, changes: &[u8]) -> Result<()> {
    let mut delay = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        match append(db, id, changes).await {
            Err(e) if e.is_transient() && attempt < 3 => {
                tracing::warn!(document = %id, attempt, error = %e, "storing changes; retrying");
                tokio::time::sleep(delay).await;
                delay *= 4;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// What a compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compaction {
    /// Change rows folded into the snapshot and deleted.
    pub folded_rows: usize,
    /// Size of the new snapshot in bytes.
    pub snapshot_bytes: usize,
}

/// Folds every change row of the document into a new snapshot, deleting the rows in the same
/// transaction. Rows appended meanwhile (by this or another process) are left for next time.
pub async fn compact(db: &PgPool, id: DocumentId) -> Result<Compaction> {
    let key = id.to_string();
    let mut tx = db.begin().await?;
    // Serialises compactions of one document; `no key update` does not block appends, whose
    // foreign key takes only a key-share lock.
    let exists = sqlx::query_scalar!(
        "select 1 as \"one!\" from sync_documents where document_id = $1 for no key update",
        key
    )
    .fetch_optional(&mut *tx)
    .await?;
    if exists.is_none() {
        return Err(StorageError::NoSuchDocument(id));
    }
    let (snapshot, changes) = read_content(&mut *tx, &key).await?;
    if changes.is_empty() {
        return Ok(Compaction {
            folded_rows: 0,
            snapshot_bytes: snapshot.map_or(0, |s| s.len()),
        });
    }
    let mut doc = assemble(id, snapshot.as_deref(), &changes)?;
    let bytes = doc.save();
    let seqs: Vec<i64> = changes.iter().map(|(seq, _)| *seq).collect();
    sqlx::query!(
        "insert into sync_snapshots (document_id, data) values ($1, $2)
         on conflict (document_id) do update set data = excluded.data, updated_at = now()",
        key,
        bytes,
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "delete from sync_changes where document_id = $1 and seq = any($2)",
        key,
        &seqs,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Compaction {
        folded_rows: seqs.len(),
        snapshot_bytes: bytes.len(),
    })
}

/// Creates a document with its initial content and access list, in one transaction (a savepoint
/// when `db` is already a transaction). Only the server creates documents: a client that
/// announces one of its own gets `doc-unavailable`.
///
/// `initial` fills the document; if it makes no change an empty change is committed, because an
/// automerge-repo client treats a document without heads as one nobody has.
pub async fn create_document<'a>(
    db: impl Acquire<'a, Database = Postgres>,
    kind: DocumentKind,
    access: &[(Uuid, Mode)],
    initial: impl FnOnce(&mut AutoCommit) -> Result<(), automerge::AutomergeError>,
) -> Result<DocumentId> {
    let mut doc = AutoCommit::new();
    initial(&mut doc).map_err(|e| StorageError::Initial(Box::new(e)))?;
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

/// Lets a user read or write a document (replacing what they had).
pub async fn grant(
    db: impl PgExecutor<'_>,
    id: DocumentId,
    user_id: Uuid,
    mode: Mode,
) -> Result<()> {
    sqlx::query!(
        "insert into sync_document_access (document_id, user_id, mode) values ($1, $2, $3)
         on conflict (document_id, user_id) do update set mode = excluded.mode, granted_at = now()",
        id.to_string(),
        user_id,
        mode.as_str(),
    )
    .execute(db)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(d)
            if d.constraint() == Some("sync_document_access_document_id_fkey") =>
        {
            StorageError::NoSuchDocument(id)
        }
        sqlx::Error::Database(d) if d.constraint() == Some("sync_document_access_user_id_fkey") => {
            StorageError::NoSuchUser(user_id)
        }
        _ => StorageError::Database(e),
    })?;
    Ok(())
}

/// Takes a user's access to a document away. Returns whether they had any.
pub async fn revoke(db: impl PgExecutor<'_>, id: DocumentId, user_id: Uuid) -> Result<bool> {
    let done = sqlx::query!(
        "delete from sync_document_access where document_id = $1 and user_id = $2",
        id.to_string(),
        user_id,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// The storage id this database advertises to peers.
pub async fn storage_id(db: impl PgExecutor<'_>) -> Result<Uuid> {
    Ok(
        sqlx::query_scalar!("select storage_id from sync_storage where singleton")
            .fetch_one(db)
            .await?,
    )
}
