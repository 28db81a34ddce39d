//! The documents in memory: one handle per open document id, registered by whoever opens it
//! first and dropped when the document is unloaded or fails. What a document does (apply,
//! store, tell its peers) is in `docs.rs`; this is what it is.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use automerge::AutoCommit;
use automerge::sync;

use crate::peers::PeerLink;
use crate::storage::{self, DocumentKind, Mode};
use crate::{DocumentId, lock};

pub(crate) struct Subscriber {
    pub link: PeerLink,
    pub mode: Mode,
    pub sync: sync::State,
}

pub(crate) struct DocHandle {
    // In an `Arc` so a caller can hold the guard together with the handle it came from.
    pub slot: Arc<tokio::sync::Mutex<Slot>>,
}

pub(crate) enum Slot {
    /// Just registered; the first locker checks access and loads it.
    Unloaded,
    Loaded(Box<LoadedDoc>),
    /// Unloaded or failed: whoever finds this takes a fresh handle from the registry.
    Gone,
}

impl LoadedDoc {
    /// A document just read from storage, with nobody subscribed yet.
    pub fn slot(stored: storage::StoredDocument, compact_at: usize) -> Slot {
        Slot::Loaded(Box::new(LoadedDoc {
            doc: stored.doc,
            kind: stored.kind,
            subscribers: HashMap::new(),
            incremental_rows: stored.incremental_rows,
            seen: stored.seen,
            stored_bytes: stored.stored_bytes,
            compact_at,
            last_used: Instant::now(),
        }))
    }
}

pub(crate) struct LoadedDoc {
    pub doc: AutoCommit,
    /// Read by the projector, which projects from this copy when it is held.
    pub kind: DocumentKind,
    pub subscribers: HashMap<u64, Subscriber>,
    pub incremental_rows: usize,
    /// The stored content `doc` holds; what other processes store beyond it is read on `NOTIFY`.
    pub seen: storage::Seen,
    /// Bytes stored for it (snapshot and change rows), for the size quota.
    pub stored_bytes: u64,
    /// Compaction is tried again at this many rows after a failure, not on every message.
    pub compact_at: usize,
    pub last_used: Instant,
}

/// The documents in memory, by id.
#[derive(Default)]
pub(crate) struct Registry(Mutex<HashMap<DocumentId, Arc<DocHandle>>>);

impl Registry {
    /// The document's handle, registering a fresh one (to be loaded by its first locker).
    pub fn handle(&self, id: DocumentId) -> Arc<DocHandle> {
        lock(&self.0)
            .entry(id)
            .or_insert_with(|| {
                Arc::new(DocHandle {
                    slot: Arc::new(tokio::sync::Mutex::new(Slot::Unloaded)),
                })
            })
            .clone()
    }

    pub fn get(&self, id: DocumentId) -> Option<Arc<DocHandle>> {
        lock(&self.0).get(&id).cloned()
    }

    /// Whether the document is in memory (or being loaded).
    pub fn contains(&self, id: DocumentId) -> bool {
        lock(&self.0).contains_key(&id)
    }

    /// Drops the handle, unless it was replaced already.
    pub fn forget(&self, id: DocumentId, handle: &Arc<DocHandle>) {
        let mut docs = lock(&self.0);
        if docs.get(&id).is_some_and(|h| Arc::ptr_eq(h, handle)) {
            docs.remove(&id);
        }
    }

    pub fn len(&self) -> usize {
        lock(&self.0).len()
    }

    /// Every handle, to visit without holding the registry.
    pub fn all(&self) -> Vec<(DocumentId, Arc<DocHandle>)> {
        lock(&self.0)
            .iter()
            .map(|(id, h)| (*id, h.clone()))
            .collect()
    }

    /// A burst of documents must not keep its table allocated once they are gone.
    pub fn shrink(&self) {
        let mut docs = lock(&self.0);
        if docs.capacity() > 4 * docs.len() + 64 {
            docs.shrink_to_fit();
        }
    }
}
