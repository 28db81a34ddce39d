//! The sync server's shared state: its settings, its pool, the documents in memory and the
//! connected peers, the counters, the write budgets; its janitor and its shutdown.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atiende_core::worker::{self, Round};
use automerge::AutoCommit;
use sqlx::PgPool;
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use crate::peers::{Live, Peers};
use crate::registry::Registry;
use crate::storage::{self, DocumentKind, Mode, StorageError};
use crate::writer::Writer;
use crate::{DocumentId, lock};

/// How the sync server behaves; `Default` is what production uses.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// A document nobody has open is dropped from memory after this long unused.
    pub idle_unload: Duration,
    /// Documents peers have open that are kept awake (ready to use); beyond this many, those
    /// unused longest are kept asleep in their saved form (a fraction of the memory) and woken
    /// when next used. Many connected devices with idle reports then cost little memory.
    pub awake_documents: usize,
    /// A document is put to sleep only after this long unused.
    pub sleep_after: Duration,
    /// Largest protocol frame accepted; a bigger one gets `error` and a closed connection.
    pub max_frame: usize,
    /// Change rows on top of a document's snapshot that trigger a compaction.
    pub compact_after: usize,
    /// Sustained frames per second one connection may send.
    pub messages_per_second: u32,
    /// Frames one connection may send in a burst above the sustained rate.
    pub message_burst: u32,
    /// Frames waiting to be written to one peer; a peer that falls further behind is dropped.
    pub outbound_queue: usize,
    /// Bytes waiting to be written to one peer; a peer that falls further behind is dropped
    /// (one frame is always accepted into an empty queue, however big).
    pub max_queued_bytes: usize,
    /// Largest `data` of an `ephemeral` message; a bigger one is refused and not relayed.
    pub max_ephemeral_bytes: usize,
    /// Connections (joined peers) one user may have open at once; the next one is refused.
    pub max_connections_per_user: usize,
    /// A document's size quota: stored bytes (snapshot and change rows) plus what a message
    /// would add once inflated. Also the most a message's compressed chunks are inflated to.
    pub max_document_bytes: u64,
    /// Sustained bytes of changes (inflated) one user may send per minute, all connections.
    pub write_bytes_per_minute: u64,
    /// Bytes of changes one user may send at once above the sustained rate.
    pub write_burst_bytes: u64,
    /// Longest wait for one frame to be written to a peer before it is dropped.
    pub send_timeout: Duration,
    /// Time a new connection has to send `join`.
    pub handshake_timeout: Duration,
    /// A silent peer is pinged this often, and dropped after three intervals without a frame:
    /// phones vanish without closing their sockets.
    pub keepalive: Duration,
    /// Stored changes are announced to the other processes in batches gathered for this long
    /// (zero: as soon as the batch before is sent). A longer window costs fewer `NOTIFY`s under
    /// load and delays what peers on other processes see.
    pub announce_window: Duration,
    /// How often the documents with subscribers are compared with storage, to catch changes
    /// another process stored and was killed before announcing.
    pub catch_up: Duration,
    /// When a survey the app answers opens a follow-up.
    pub survey_low_score: atiende_core::surveys::LowScore,
}

impl Default for SyncSettings {
    fn default() -> Self {
        Self {
            idle_unload: Duration::from_secs(300),
            awake_documents: 1_000,
            sleep_after: Duration::from_secs(1),
            max_frame: crate::MAX_FRAME,
            compact_after: 100,
            messages_per_second: 200,
            message_burst: 2_000,
            outbound_queue: 1_024,
            max_queued_bytes: 8 * 1024 * 1024,
            max_ephemeral_bytes: 64 * 1024,
            max_connections_per_user: 10,
            max_document_bytes: 64 * 1024 * 1024,
            // A technician's day offline is at most a few MiB of changes (a field report with
            // hundreds of edits is well under 1 MiB): the burst takes it whole.
            write_bytes_per_minute: 16 * 1024 * 1024,
            write_burst_bytes: 64 * 1024 * 1024,
            send_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(30),
            keepalive: Duration::from_secs(30),
            announce_window: Duration::ZERO,
            catch_up: Duration::from_secs(30),
            survey_low_score: atiende_core::surveys::LowScore::default(),
        }
    }
}

/// Counters for metrics and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Open WebSocket connections.
    pub connections: usize,
    /// Documents held in memory.
    pub loaded_documents: usize,
    /// Well-formed messages of a type we do not know, ignored.
    pub unknown_messages: u64,
    /// Connections closed with an `error` for a bad frame, a protocol violation or a flood.
    pub refused_connections: u64,
    /// Batches of changes committed to PostgreSQL.
    pub stored_change_batches: u64,
    /// Sync messages whose changes were dropped because the peer may only read.
    pub read_only_rejections: u64,
    /// Compressed chunks and deflated columns of incoming sync messages, inflated under the cap.
    pub compressed_chunks: u64,
    /// Messages or connections refused by a limit (size quota, write budget, ephemeral size,
    /// connections per user).
    pub limit_refusals: u64,
    /// Documents put to sleep, and woken again (see [`SyncSettings::awake_documents`]).
    pub documents_slept: u64,
    pub documents_woken: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub unknown_messages: AtomicU64,
    pub refused_connections: AtomicU64,
    pub stored_change_batches: AtomicU64,
    pub read_only_rejections: AtomicU64,
    pub compressed_chunks: AtomicU64,
    pub limit_refusals: AtomicU64,
    pub documents_slept: AtomicU64,
    pub documents_woken: AtomicU64,
}

/// The sync server: database pool, settings, the documents in memory and the connected peers.
/// Cheap to clone; every clone is the same server.
#[derive(Clone)]
pub struct SyncState {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub db: PgPool,
    pub settings: SyncSettings,
    /// Our `senderId`, fresh per process: peers key nothing durable by it.
    pub peer_id: String,
    pub storage_id: String,
    pub docs: Registry,
    pub peers: Peers,
    pub next_conn: AtomicU64,
    pub connections: watch::Sender<usize>,
    pub shutdown: watch::Sender<bool>,
    pub counters: Counters,
    /// Documents with stored changes that other processes have not been told of yet; the
    /// listener's notifier sends them in batches (see `listen.rs`).
    pub unannounced: Mutex<HashSet<DocumentId>>,
    pub announce: Notify,
    /// Every open connection and the session it belongs to (see `sessions.rs`).
    pub live: Mutex<HashMap<u64, Live>>,
    /// Each user's write budget, in bytes, shared by their connections.
    pub write_budgets: Mutex<HashMap<Uuid, WriteBudget>>,
    /// Stores the changes peers send.
    pub writer: Writer,
}

/// A token bucket of bytes that may go into debt: a message is refused only once the budget is
/// spent, so one message is never refused for its size alone (the size quota bounds that).
pub(crate) struct WriteBudget {
    tokens: f64,
    last: std::time::Instant,
}

impl SyncState {
    /// Reads the storage id from the database; the pool must be migrated.
    pub async fn new(db: PgPool, settings: SyncSettings) -> Result<SyncState, StorageError> {
        let storage_id = storage::storage_id(&db).await?;
        Ok(SyncState {
            inner: Arc::new(Inner {
                writer: Writer::start(db.clone()),
                db,
                settings,
                peer_id: format!("atiende-{}", Uuid::new_v4()),
                storage_id: storage_id.to_string(),
                docs: Registry::default(),
                peers: Peers::default(),
                next_conn: AtomicU64::new(1),
                connections: watch::Sender::new(0),
                shutdown: watch::Sender::new(false),
                counters: Counters::default(),
                unannounced: Mutex::new(HashSet::new()),
                announce: Notify::new(),
                write_budgets: Mutex::new(HashMap::new()),
                live: Mutex::new(HashMap::new()),
            }),
        })
    }

    pub fn db(&self) -> &PgPool {
        &self.inner.db
    }

    pub fn settings(&self) -> &SyncSettings {
        &self.inner.settings
    }

    /// Our peer id, as sent in `peer` and every message after it.
    pub fn peer_id(&self) -> &str {
        &self.inner.peer_id
    }

    pub fn stats(&self) -> SyncStats {
        let c = &self.inner.counters;
        SyncStats {
            connections: *self.inner.connections.borrow(),
            loaded_documents: self.loaded_documents(),
            unknown_messages: c.unknown_messages.load(Ordering::Relaxed),
            refused_connections: c.refused_connections.load(Ordering::Relaxed),
            stored_change_batches: c.stored_change_batches.load(Ordering::Relaxed),
            read_only_rejections: c.read_only_rejections.load(Ordering::Relaxed),
            compressed_chunks: c.compressed_chunks.load(Ordering::Relaxed),
            limit_refusals: c.limit_refusals.load(Ordering::Relaxed),
            documents_slept: c.documents_slept.load(Ordering::Relaxed),
            documents_woken: c.documents_woken.load(Ordering::Relaxed),
        }
    }

    /// The user's write budget after refilling it: whether any is left.
    pub(crate) fn may_write(&self, user_id: Uuid) -> bool {
        self.write_budget(user_id, 0)
    }

    /// Spends `bytes` of the user's write budget (possibly into debt).
    pub(crate) fn spend_writes(&self, user_id: Uuid, bytes: u64) {
        self.write_budget(user_id, bytes);
    }

    fn write_budget(&self, user_id: Uuid, spend: u64) -> bool {
        let s = &self.inner.settings;
        let burst = s.write_burst_bytes as f64;
        let per_second = s.write_bytes_per_minute as f64 / 60.0;
        let now = std::time::Instant::now();
        let mut budgets = lock(&self.inner.write_budgets);
        if budgets.len() > 10_000 {
            // Users whose budget refilled need no entry: a fresh one is full.
            budgets.retain(|_, b| {
                b.tokens + now.duration_since(b.last).as_secs_f64() * per_second < burst
            });
        }
        let budget = budgets.entry(user_id).or_insert(WriteBudget {
            tokens: burst,
            last: now,
        });
        let elapsed = now.duration_since(budget.last).as_secs_f64();
        budget.tokens = (budget.tokens + elapsed * per_second).min(burst);
        budget.last = now;
        budget.tokens -= spend as f64;
        budget.tokens > 0.0
    }

    /// Creates a document (see [`storage::create_document`]) on this server's pool.
    pub async fn create_document(
        &self,
        kind: DocumentKind,
        access: &[(Uuid, Mode)],
        initial: impl FnOnce(&mut AutoCommit) -> Result<(), automerge::AutomergeError>,
    ) -> Result<DocumentId, StorageError> {
        storage::create_document(&self.inner.db, kind, access, initial).await
    }

    /// Grants access in the database, then applies the new mode to the user's live
    /// subscriptions (a downgrade to read stops their changes being accepted at once).
    pub async fn grant(
        &self,
        id: DocumentId,
        user_id: Uuid,
        mode: Mode,
    ) -> Result<(), StorageError> {
        storage::grant(&self.inner.db, id, user_id, mode).await?;
        self.apply_access(id, user_id, Some(mode)).await;
        Ok(())
    }

    /// Revokes access in the database, then drops the user's live subscriptions to the document
    /// and tells their peers `doc-unavailable`. Returns whether the user had access.
    pub async fn revoke(&self, id: DocumentId, user_id: Uuid) -> Result<bool, StorageError> {
        let had = storage::revoke(&self.inner.db, id, user_id).await?;
        self.apply_access(id, user_id, None).await;
        Ok(had)
    }

    /// Makes connected peers follow an access change that someone else committed (for example
    /// [`storage::revoke`] inside a larger transaction): `None` drops the user's subscriptions.
    /// The listener ([`Self::run_listener`]) calls this for every change committed anywhere.
    pub async fn access_changed(&self, id: DocumentId, user_id: Uuid) -> Result<(), StorageError> {
        if !self.is_loaded(id) {
            // Nobody here has it open; whoever opens it next is checked then.
            return Ok(());
        }
        let mode = storage::access(&self.inner.db, id, user_id)
            .await?
            .and_then(|(_, mode)| mode);
        self.apply_access(id, user_id, mode).await;
        Ok(())
    }

    /// Unloads documents that nobody has open and nobody used for the idle time. Returns how
    /// many were unloaded.
    pub fn unload_idle(&self) -> usize {
        self.unload_idle_older_than(self.inner.settings.idle_unload)
    }

    /// Calls [`Self::unload_idle`], puts idle documents to sleep beyond
    /// [`SyncSettings::awake_documents`] and calls [`Self::close_expired_sessions`] periodically until
    /// `shutdown` completes. The owner of the process runs this.
    pub async fn run_janitor(&self, shutdown: impl Future<Output = ()>) {
        let settings = &self.inner.settings;
        let period = (settings.idle_unload / 4)
            .min(settings.sleep_after)
            .clamp(Duration::from_millis(10), Duration::from_secs(30));
        worker::run("sync janitor", period, shutdown, || async {
            let unloaded = self.unload_idle();
            if unloaded > 0 {
                tracing::debug!(unloaded, "unloaded idle sync documents");
            }
            let slept = self.sleep_idle().await;
            if slept > 0 {
                tracing::debug!(slept, "put idle sync documents to sleep");
            }
            let expired = self.close_expired_sessions();
            if expired > 0 {
                tracing::debug!(expired, "closed sync connections of expired sessions");
            }
            Ok::<_, std::convert::Infallible>(Round::Idle)
        })
        .await;
    }

    /// Refuses new connections, closes the open ones (code 1001, so clients reconnect elsewhere)
    /// and waits up to `grace` for them to finish. Every change a peer was told about is already
    /// committed, so there is nothing to flush.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.shutdown.send_replace(true);
        let mut connections = self.inner.connections.subscribe();
        let drained = tokio::time::timeout(grace, connections.wait_for(|n| *n == 0)).await;
        if drained.is_err() {
            tracing::warn!(
                open = *self.inner.connections.borrow(),
                "sync connections still open after the grace period"
            );
        }
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        *self.inner.shutdown.borrow()
    }
}
