//! Where the changes peers send are stored: one task holds a connection of its own and writes
//! every append that is waiting in one statement. Appends from many documents at once (a busy
//! hour) cost one round trip and one commit together, and none pays for taking a connection from
//! the pool and the check the pool makes when it is given back.

use sqlx::PgPool;
use sqlx::pool::PoolConnection;
use tokio::sync::{mpsc, oneshot};

use crate::DocumentId;
use crate::storage::{self, StorageError};

/// Appends written by one statement at most.
const BATCH: usize = 256;

/// Pools smaller than this (a test's) lend their connections out rather than have them held.
const HOLD_FROM: u32 = 8;

/// Whether a task may keep a connection of `pool` for itself: only when the pool has room for
/// it beside the listeners and the requests.
pub(crate) fn may_hold(pool: &PgPool) -> bool {
    pool.options().get_max_connections() >= HOLD_FROM
}

struct Append {
    id: DocumentId,
    data: Vec<u8>,
    stored: oneshot::Sender<Result<i64, StorageError>>,
}

/// Hands appends to the writing task.
pub(crate) struct Writer {
    db: PgPool,
    tx: mpsc::Sender<Append>,
}

impl Writer {
    /// Starts the writing task; it ends when the `Writer` is dropped.
    pub fn start(db: PgPool) -> Writer {
        let (tx, rx) = mpsc::channel(4 * BATCH);
        tokio::spawn(write_all(db.clone(), rx));
        Writer { db, tx }
    }

    /// Stores `data` as a change row of document `id` (see [`storage::append_from`]); returns
    /// the row's seq once it is committed.
    pub async fn append(&self, id: DocumentId, data: Vec<u8>) -> Result<i64, StorageError> {
        let (stored, result) = oneshot::channel();
        match self.tx.send(Append { id, data, stored }).await {
            Ok(()) => match result.await {
                Ok(result) => result,
                Err(_) => Err(StorageError::Other(
                    "the change writer stopped before answering".into(),
                )),
            },
            // The task is gone (the runtime is shutting down): store it directly.
            Err(mpsc::error::SendError(append)) => {
                storage::append_from(&self.db, append.id, &append.data).await
            }
        }
    }
}

async fn write_all(db: PgPool, mut rx: mpsc::Receiver<Append>) {
    let mut conn: Option<PoolConnection<sqlx::Postgres>> = None;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(append) => batch.push(append),
                Err(_) => break,
            }
        }
        let written = write_batch(&db, &mut conn, &batch).await;
        if !may_hold(&db) {
            conn = None;
        }
        match written {
            Ok(seqs) => {
                for (append, seq) in batch.into_iter().zip(seqs) {
                    let _ = append.stored.send(Ok(seq));
                }
            }
            Err(_) => {
                // The connection may be what failed: the next batch takes a fresh one. Each
                // append is tried on its own and gets its own answer, so one the database
                // refuses (its document was deleted) does not fail the others, and a transient
                // failure reaches each caller as such (see `storage::with_retry`).
                conn = None;
                for append in batch {
                    let result = storage::append_from(&db, append.id, &append.data).await;
                    let _ = append.stored.send(result);
                }
            }
        }
    }
}

async fn write_batch(
    db: &PgPool,
    conn: &mut Option<PoolConnection<sqlx::Postgres>>,
    batch: &[Append],
) -> Result<Vec<i64>, StorageError> {
    let conn = match conn {
        Some(conn) => conn,
        None => conn.insert(db.acquire().await?),
    };
    let ids: Vec<String> = batch.iter().map(|a| a.id.to_string()).collect();
    let data: Vec<&[u8]> = batch.iter().map(|a| a.data.as_slice()).collect();
    let seqs = storage::append_many(&mut **conn, &ids, &data).await?;
    if seqs.len() == batch.len() {
        Ok(seqs)
    } else {
        Err(StorageError::Other(format!(
            "{} changes stored for {} appends",
            seqs.len(),
            batch.len()
        )))
    }
}
