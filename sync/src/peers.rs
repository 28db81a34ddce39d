//! The peers connected to this process: each connection's link to the documents it has open
//! (its send queue and its close control), the peer id each connection owns, and the session it
//! was opened with. The documents and the connections both hold these; they import nothing else.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::{Notify, mpsc};
use uuid::Uuid;

use crate::{Message, encode, lock};

/// Why the server closes a connection on its own initiative.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// A newer connection joined with the same peer id.
    Retired,
    /// The peer did not read what we sent fast enough.
    TooSlow,
    /// A document the peer had open could not be stored and was dropped from memory.
    DocumentFailed,
    /// The session the connection was opened with ended: logout, expiry or deactivation.
    SessionEnded,
}

/// Lets anyone holding a peer's link ask its connection task to close.
#[derive(Default)]
pub(crate) struct Control {
    notify: Notify,
    reason: Mutex<Option<CloseReason>>,
}

impl Control {
    pub fn close(&self, reason: CloseReason) {
        lock(&self.reason).get_or_insert(reason);
        self.notify.notify_one();
    }

    pub async fn closed(&self) -> CloseReason {
        loop {
            if let Some(reason) = *lock(&self.reason) {
                return reason;
            }
            self.notify.notified().await;
        }
    }
}

/// How a document reaches one connection.
#[derive(Clone)]
pub(crate) struct PeerLink {
    pub conn: u64,
    pub peer_id: String,
    pub user_id: Uuid,
    pub tx: mpsc::Sender<Bytes>,
    /// Bytes in `tx`; the connection subtracts what it writes.
    pub queued: Arc<AtomicUsize>,
    pub max_queued: usize,
    pub control: Arc<Control>,
}

impl PeerLink {
    /// Queues a frame without waiting: a full queue (in frames or bytes) means the peer is not
    /// reading, and it is dropped rather than allowed to stall a document that other peers
    /// share. An empty queue takes any frame, so a big document still reaches a slow peer.
    pub fn send(&self, message: &Message) {
        let frame = Bytes::from(encode(message));
        let len = frame.len();
        let before = self.queued.fetch_add(len, Ordering::Relaxed);
        if before > 0 && before.saturating_add(len) > self.max_queued {
            self.queued.fetch_sub(len, Ordering::Relaxed);
            self.control.close(CloseReason::TooSlow);
            return;
        }
        match self.tx.try_send(frame) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.queued.fetch_sub(len, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.queued.fetch_sub(len, Ordering::Relaxed);
                self.control.close(CloseReason::TooSlow);
            }
        }
    }
}

/// The connection that currently owns a peer id.
pub(crate) struct PeerEntry {
    pub conn: u64,
    pub user_id: Uuid,
    pub control: Arc<Control>,
}

/// Every peer id in use here, and the connection that owns it.
#[derive(Default)]
pub(crate) struct Peers(Mutex<HashMap<String, PeerEntry>>);

impl Peers {
    pub fn lock(&self) -> MutexGuard<'_, HashMap<String, PeerEntry>> {
        lock(&self.0)
    }
}

/// An open connection, by the session that opened it.
pub(crate) struct Live {
    pub user_id: Uuid,
    pub session: Vec<u8>,
    pub expires_at: DateTime<Utc>,
    pub control: Arc<Control>,
}
