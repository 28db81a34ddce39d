//! The documents in memory: one handle per open document id, registered by whoever opens it
//! first and dropped when the document is unloaded or fails. What a document does (apply,
//! store, tell its peers) is in `docs.rs`; this is what it is.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use automerge::sync;
use automerge::{
    ActorId, AutoCommit, AutomergeError, LoadOptions, OnPartialLoad, VerificationMode,
};

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
            doc: Held::Awake(Box::new(stored.doc)),
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

/// A document in memory, awake or asleep. Most documents peers have open are idle (a technician's
/// report between visits, a customer's drafts): asleep, a document is kept in its saved form, a
/// small fraction of the memory its working structures take, and woken by whoever next uses it.
pub(crate) enum Held {
    /// Boxed: the working structures are over 4 kB even before any content, and a sleeping
    /// document should not carry that space.
    Awake(Box<AutoCommit>),
    /// What `save` gave, and the actor the document's own changes are made with.
    Asleep { saved: Vec<u8>, actor: ActorId },
}

impl Held {
    /// The document, woken first if it was asleep. Waking loads what this process saved itself,
    /// so an error means memory can no longer be trusted: the caller drops the document.
    pub fn awake(&mut self) -> Result<&mut AutoCommit, AutomergeError> {
        match self {
            Held::Awake(doc) => Ok(doc.as_mut()),
            Held::Asleep { saved, actor } => {
                // Its own save: the hashes were checked when the changes first came in.
                let mut doc = AutoCommit::load_with_options(
                    saved,
                    LoadOptions::new()
                        .on_partial_load(OnPartialLoad::Error)
                        .verification_mode(VerificationMode::DontCheck),
                )?;
                doc.set_actor(actor.clone());
                *self = Held::Awake(Box::new(doc));
                self.awake()
            }
        }
    }

    /// Puts the document to sleep; returns whether it was awake.
    pub fn sleep(&mut self) -> bool {
        let Held::Awake(doc) = self else {
            return false;
        };
        let actor = doc.get_actor().clone();
        let saved = doc.save();
        *self = Held::Asleep { saved, actor };
        true
    }

    /// The document if it is awake (callers that woke it before).
    pub fn live(&mut self) -> Option<&mut AutoCommit> {
        match self {
            Held::Awake(doc) => Some(doc.as_mut()),
            Held::Asleep { .. } => None,
        }
    }

    pub fn is_asleep(&self) -> bool {
        matches!(self, Held::Asleep { .. })
    }
}

pub(crate) struct LoadedDoc {
    pub doc: Held,
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
