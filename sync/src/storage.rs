//! Sync documents in PostgreSQL: which documents exist, who may read or write each, and their
//! content as a snapshot plus incremental change rows (see `migrations/*_sync.sql`).
//!
//! Everything here is a plain function over a connection or pool, so the rest of the system can
//! create documents and grant access inside its own transactions. The live side (telling
//! connected peers) is [`crate::SyncState`].

use std::collections::HashMap;
use std::time::Duration;

use atiende_core::documents::{self, DocumentError};
pub use atiende_core::documents::{DocumentKind, Mode};
use automerge::{AutoCommit, LoadOptions, OnPartialLoad};
use sqlx::{Acquire, PgExecutor, PgPool, Postgres};
use uuid::Uuid;

use crate::DocumentId;
use crate::doc_id::RandomError;

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
    #[error("{0}")]
    Other(String),
}

impl From<DocumentError> for StorageError {
    fn from(e: DocumentError) -> Self {
        match e {
            DocumentError::Database(e) => StorageError::Database(e),
            DocumentError::Initial(e) => StorageError::Initial(e),
            DocumentError::Random(e) => StorageError::Random(e),
            DocumentError::NoSuchDocument(id) => StorageError::NoSuchDocument(id),
            DocumentError::NoSuchUser(id) => StorageError::NoSuchUser(id),
            // `DocumentError` is non-exhaustive: a future variant is still an error.
            other => StorageError::Other(other.to_string()),
        }
    }
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
    /// The stored content `doc` was built from, so that what is stored later can be told apart.
    pub seen: Seen,
    /// Bytes stored: the snapshot and the change rows.
    pub stored_bytes: u64,
}

/// Which stored content a copy of a document in memory holds: the snapshot's version and the
/// change rows applied on top of it. Other processes append and compact at any time; this is
/// what [`read_unseen`] compares against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// `sync_snapshots.updated_at` in microseconds; `None` when unknown (the snapshot is read again).
    pub snapshot: Option<i64>,
    /// `sync_changes.seq` of the rows applied. Seqs are allocated at insert and rows commit in
    /// any order, so this is a set, never a "highest seen".
    pub rows: Vec<i64>,
}

/// Stored content a copy in memory does not have yet (see [`read_unseen`]).
#[derive(Debug, Default)]
pub struct Unseen {
    /// The snapshot, when its version is not the one seen (a compaction replaced it).
    pub snapshot: Option<Vec<u8>>,
    /// Change rows not seen, in seq order.
    pub rows: Vec<Vec<u8>>,
    /// What is stored now: seen once `snapshot` and `rows` are applied.
    pub now: Seen,
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

/// The snapshot (if any, with its version) and the change rows after it, read in one statement
/// so that a compaction committing in between cannot hide rows it folded.
async fn read_content(db: impl PgExecutor<'_>, id: &str) -> Result<Content> {
    let rows = sqlx::query!(
        r#"select 0::bigint as "seq!", data as "data!",
                  (extract(epoch from updated_at) * 1000000)::bigint as version
           from sync_snapshots where document_id = $1
           union all
           select seq, data, null from sync_changes where document_id = $1
           order by 1"#,
        id,
    )
    .fetch_all(db)
    .await?;
    let mut content = Content::default();
    for r in rows {
        if r.seq == 0 {
            content.snapshot = Some(r.data);
            content.version = r.version;
        } else {
            content.changes.push((r.seq, r.data));
        }
    }
    Ok(content)
}

#[derive(Default)]
struct Content {
    snapshot: Option<Vec<u8>>,
    version: Option<i64>,
    changes: Vec<(i64, Vec<u8>)>,
}

impl Content {
    fn seen(&self) -> Seen {
        Seen {
            snapshot: self.version,
            rows: self.changes.iter().map(|(seq, _)| *seq).collect(),
        }
    }
}

/// What is stored for a document beyond `seen`: the snapshot if a compaction replaced it, and
/// the change rows not in `seen.rows` (committed by anyone, in any order). One statement, so a
/// compaction that folded rows and deleted them is seen either as the rows or as the snapshot.
pub async fn read_unseen(db: impl PgExecutor<'_>, id: DocumentId, seen: &Seen) -> Result<Unseen> {
    let rows = sqlx::query!(
        r#"select 0::bigint as "seq!", s.version,
                  case when s.version is distinct from $3 then s.data end as data
           from (select data, (extract(epoch from updated_at) * 1000000)::bigint as version
                 from sync_snapshots where document_id = $1) s
           union all
           select seq, null, case when seq <> all($2) then data end
           from sync_changes where document_id = $1
           order by 1"#,
        id.to_string(),
        &seen.rows,
        seen.snapshot,
    )
    .fetch_all(db)
    .await?;
    let mut unseen = Unseen::default();
    for r in rows {
        if r.seq == 0 {
            unseen.snapshot = r.data;
            unseen.now.snapshot = r.version;
        } else {
            unseen.now.rows.push(r.seq);
            unseen.rows.extend(r.data);
        }
    }
    Ok(unseen)
}

/// What is stored of each document, as a copy in memory records it in [`Seen`]: the snapshot's
/// version and how many change rows there are. Rows are only ever added, or folded into a new
/// snapshot, so a copy whose snapshot version and row count match has seen everything. Documents
/// that no longer exist are left out.
pub async fn stored_versions(
    db: impl PgExecutor<'_>,
    ids: &[DocumentId],
) -> Result<HashMap<DocumentId, (Option<i64>, usize)>> {
    let texts: Vec<String> = ids.iter().map(ToString::to_string).collect();
    let rows = sqlx::query!(
        r#"select d.document_id as "id!",
                  (select (extract(epoch from s.updated_at) * 1000000)::bigint
                   from sync_snapshots s where s.document_id = d.document_id) as snapshot,
                  (select count(*) from sync_changes c where c.document_id = d.document_id) as "rows!"
           from sync_documents d where d.document_id = any($1)"#,
        &texts,
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let id = DocumentId::parse(&r.id).ok()?;
            Some((
                id,
                (r.snapshot, usize::try_from(r.rows).unwrap_or(usize::MAX)),
            ))
        })
        .collect())
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
    let content = read_content(db, &key).await?;
    let doc = assemble(id, content.snapshot.as_deref(), &content.changes)?;
    let stored_bytes = content.snapshot.as_ref().map_or(0, Vec::len)
        + content.changes.iter().map(|(_, c)| c.len()).sum::<usize>();
    Ok(Some(StoredDocument {
        stored_bytes: stored_bytes as u64,
        kind: kind_from_db(kind)?,
        doc,
        incremental_rows: content.changes.len(),
        seen: content.seen(),
    }))
}

/// Stores a batch of new changes (bytes from `save_after`), committed when this returns (or when
/// the caller's transaction commits), and tells every sync server through `NOTIFY`. Returns the
/// row's seq. For writers other than a sync server, which batches its notifications instead.
pub async fn append(db: &PgPool, id: DocumentId, changes: &[u8]) -> Result<i64> {
    let seq = append_from(db, id, changes).await?;
    notify_stored(db, &[id], None).await?;
    Ok(seq)
}

/// Stores a batch of new changes without telling anyone: the sync server that calls this sends
/// [`notify_stored`] for many documents at once, because PostgreSQL serialises the commits of
/// all transactions that notify.
pub async fn append_from(db: impl PgExecutor<'_>, id: DocumentId, changes: &[u8]) -> Result<i64> {
    sqlx::query_scalar!(
        "insert into sync_changes (document_id, data) values ($1, $2) returning seq",
        id.to_string(),
        changes,
    )
    .fetch_one(db)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(d) if d.constraint() == Some("sync_changes_document_id_fkey") => {
            StorageError::NoSuchDocument(id)
        }
        _ => StorageError::Database(e),
    })
}

/// [`append_from`] for many changes at once, of one document or several, in one statement;
/// returns their seqs in the order given. One that cannot be stored fails them all.
pub async fn append_many(
    db: impl PgExecutor<'_>,
    ids: &[String],
    data: &[&[u8]],
) -> Result<Vec<i64>> {
    // The seqs are drawn in `rows`, which is computed once, so each input row's seq is known
    // without relying on the order `returning` gives rows back in.
    sqlx::query_scalar!(
        r#"with rows as (
               select nextval(pg_get_serial_sequence('sync_changes', 'seq')) as seq, u.d, u.x, u.n
               from unnest($1::text[], $2::bytea[]) with ordinality as u (d, x, n)
           ), stored as (
               insert into sync_changes (seq, document_id, data) overriding system value
               select seq, d, x from rows
           )
           select seq as "seq!" from rows order by n"#,
        ids,
        data as &[&[u8]],
    )
    .fetch_all(db)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(d) if d.constraint() == Some("sync_changes_document_id_fkey") => {
            StorageError::Other("a document of the batch does not exist".into())
        }
        _ => StorageError::Database(e),
    })
}

/// Tells every sync server that these documents have new stored changes; `origin` is the peer
/// id of the server that stored them, which then does not read back what it already has.
pub async fn notify_stored(
    db: impl PgExecutor<'_>,
    ids: &[DocumentId],
    origin: Option<&str>,
) -> Result<()> {
    let keys: Vec<String> = ids.iter().map(ToString::to_string).collect();
    // `pg_notify` returns `void`, which cannot be decoded: select from it instead.
    sqlx::query_scalar!(
        r#"select count(*) as "n!"
           from unnest($1::text[]) as d (id),
                pg_notify($2, json_build_object('doc', d.id, 'origin', $3::text)::text)"#,
        &keys,
        documents::SYNC_CHANNEL,
        origin,
    )
    .fetch_one(db)
    .await?;
    Ok(())
}

/// `append`, trying again after transient database errors (three attempts in about a second),
/// so a blip does not fail the peer's connection.
pub(crate) async fn with_retry<F, Fut>(id: DocumentId, mut append: F) -> Result<i64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<i64>>,
{
    let mut delay = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        match append().await {
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compaction {
    /// Change rows folded into the snapshot and deleted.
    pub folded_rows: usize,
    /// Size of the new snapshot in bytes.
    pub snapshot_bytes: usize,
    /// What is stored now, when the snapshot was saved from the copy in memory (see
    /// [`compact_held`]): that copy holds exactly this.
    pub seen: Option<Seen>,
}

/// Folds every change row of the document into a new snapshot, deleting the rows in the same
/// transaction. Rows appended meanwhile (by this or another process) are left for next time.
pub async fn compact(db: &PgPool, id: DocumentId) -> Result<Compaction> {
    compact_with(db, id, None).await
}

/// The same, for a process that holds the document in memory having seen `seen`: when what is
/// stored is exactly that, the snapshot is saved from `doc` rather than assembled again from the
/// stored rows, which costs reading them back and loading them.
pub async fn compact_held(
    db: &PgPool,
    id: DocumentId,
    seen: &Seen,
    doc: &mut AutoCommit,
) -> Result<Compaction> {
    compact_with(db, id, Some((seen, doc))).await
}

async fn compact_with(
    db: &PgPool,
    id: DocumentId,
    held: Option<(&Seen, &mut AutoCommit)>,
) -> Result<Compaction> {
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
    let stored = sqlx::query!(
        r#"select s.version, s.bytes,
                  array(select seq from sync_changes where document_id = $1 order by seq) as "seqs!"
           from (select) as one
           left join (select (extract(epoch from updated_at) * 1000000)::bigint as version,
                             octet_length(data) as bytes
                      from sync_snapshots where document_id = $1) as s on true"#,
        key
    )
    .fetch_one(&mut *tx)
    .await?;
    if stored.seqs.is_empty() {
        return Ok(Compaction {
            folded_rows: 0,
            snapshot_bytes: usize::try_from(stored.bytes.unwrap_or(0)).unwrap_or(0),
            seen: None,
        });
    }
    let holds_all = |seen: &Seen| {
        let mut rows = seen.rows.clone();
        rows.sort_unstable();
        rows.dedup();
        seen.snapshot == stored.version && rows == stored.seqs
    };
    let (bytes, seqs, from_memory) = match held {
        Some((seen, doc)) if holds_all(seen) => (doc.save(), stored.seqs, true),
        _ => {
            let Content {
                snapshot, changes, ..
            } = read_content(&mut *tx, &key).await?;
            let mut doc = assemble(id, snapshot.as_deref(), &changes)?;
            let seqs: Vec<i64> = changes.iter().map(|(seq, _)| *seq).collect();
            (doc.save(), seqs, false)
        }
    };
    // `updated_at` is the snapshot's version for other processes (`Seen::snapshot`): the clock,
    // not the transaction start, so two compactions never share one.
    let version = sqlx::query_scalar!(
        r#"insert into sync_snapshots (document_id, data) values ($1, $2)
           on conflict (document_id) do update set data = excluded.data, updated_at = clock_timestamp()
           returning (extract(epoch from updated_at) * 1000000)::bigint as "version!""#,
        key,
        bytes,
    )
    .fetch_one(&mut *tx)
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
        seen: from_memory.then(|| Seen {
            snapshot: Some(version),
            rows: Vec::new(),
        }),
    })
}

/// Creates a document (see [`documents::create`]).
pub async fn create_document<'a>(
    db: impl Acquire<'a, Database = Postgres>,
    kind: DocumentKind,
    access: &[(Uuid, Mode)],
    initial: impl FnOnce(&mut AutoCommit) -> Result<(), automerge::AutomergeError>,
) -> Result<DocumentId> {
    Ok(documents::create(db, kind, access, initial).await?)
}

/// Lets a user read or write a document (see [`documents::grant`]).
pub async fn grant(
    db: impl PgExecutor<'_>,
    id: DocumentId,
    user_id: Uuid,
    mode: Mode,
) -> Result<()> {
    Ok(documents::grant(db, id, user_id, mode).await?)
}

/// Takes a user's access to a document away (see [`documents::revoke`]).
pub async fn revoke(db: impl PgExecutor<'_>, id: DocumentId, user_id: Uuid) -> Result<bool> {
    Ok(documents::revoke(db, id, user_id).await?)
}

/// The storage id this database advertises to peers.
pub async fn storage_id(db: impl PgExecutor<'_>) -> Result<Uuid> {
    Ok(
        sqlx::query_scalar!("select storage_id from sync_storage where singleton")
            .fetch_one(db)
            .await?,
    )
}
