//! Documents in memory: one Automerge document per open document id, with one sync state per
//! connected peer that has it open. All work on a document happens under its lock, in this
//! order: apply the peer's message, commit new changes to PostgreSQL, then generate messages for
//! every peer — so nobody hears of a change before it is durable.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use automerge::AutoCommit;
use automerge::sync::{self, SyncDoc};
use uuid::Uuid;

use crate::lock;
use crate::peers::{CloseReason, PeerLink};
use crate::registry::{DocHandle, LoadedDoc, Slot, Subscriber};
use crate::state::SyncState;
use crate::storage::{self, DocumentKind, Mode, StorageError};
use crate::{DocumentId, Message};

/// What ends a connection from inside document work.
#[derive(Debug)]
pub(crate) enum Fatal {
    /// Storing or loading failed (after retries); the detail is logged, not sent.
    Storage(StorageError),
    /// The peer's sync message could not be applied.
    BadSyncMessage,
}

/// Whether a `request`/`sync` opened the document for the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opened {
    Yes,
    Unavailable,
}

impl SyncState {
    fn handle(&self, id: DocumentId) -> Arc<DocHandle> {
        self.inner.docs.handle(id)
    }

    /// The document's handle, locked; never one that was unloaded meanwhile.
    async fn lock_document(
        &self,
        id: DocumentId,
    ) -> (Arc<DocHandle>, tokio::sync::OwnedMutexGuard<Slot>) {
        loop {
            let handle = self.handle(id);
            let slot = handle.slot.clone().lock_owned().await;
            if !matches!(*slot, Slot::Gone) {
                return (handle, slot);
            }
        }
    }

    fn existing_handle(&self, id: DocumentId) -> Option<Arc<DocHandle>> {
        self.inner.docs.get(id)
    }

    /// Whether the document is in memory (or being loaded).
    pub(crate) fn is_loaded(&self, id: DocumentId) -> bool {
        self.inner.docs.contains(id)
    }

    /// Drops the handle from the registry, unless it was replaced already.
    fn forget(&self, id: DocumentId, handle: &Arc<DocHandle>) {
        self.inner.docs.forget(id, handle);
    }

    pub(crate) fn loaded_documents(&self) -> usize {
        self.inner.docs.len()
    }

    pub(crate) fn unload_idle_older_than(&self, idle: Duration) -> usize {
        let handles = self.inner.docs.all();
        let mut unloaded = 0;
        for (id, handle) in handles {
            // A busy document is in use, so not idle.
            let Ok(mut slot) = handle.slot.try_lock() else {
                continue;
            };
            let idle = match &*slot {
                Slot::Loaded(d) => d.subscribers.is_empty() && d.last_used.elapsed() >= idle,
                Slot::Unloaded | Slot::Gone => true,
            };
            if idle {
                *slot = Slot::Gone;
                self.forget(id, &handle);
                unloaded += 1;
            }
        }
        if unloaded > 0 {
            self.inner.docs.shrink();
        }
        unloaded
    }

    /// Puts to sleep the documents awake beyond [`SyncSettings::awake_documents`], those
    /// unused longest first, and only those idle for [`SyncSettings::sleep_after`]. Returns how
    /// many it put to sleep.
    ///
    /// [`SyncSettings::awake_documents`]: crate::SyncSettings::awake_documents
    /// [`SyncSettings::sleep_after`]: crate::SyncSettings::sleep_after
    pub(crate) async fn sleep_idle(&self) -> usize {
        let settings = &self.inner.settings;
        let mut awake: Vec<(Instant, Arc<DocHandle>)> = Vec::new();
        for (_, handle) in self.inner.docs.all() {
            let Ok(slot) = handle.slot.try_lock() else {
                continue;
            };
            if let Slot::Loaded(d) = &*slot
                && !d.doc.is_asleep()
            {
                let last_used = d.last_used;
                drop(slot);
                awake.push((last_used, handle));
            }
        }
        let Some(excess) = awake.len().checked_sub(settings.awake_documents) else {
            return 0;
        };
        awake.sort_unstable_by_key(|(last_used, _)| *last_used);
        let mut slept = 0;
        for (n, (_, handle)) in awake.into_iter().take(excess).enumerate() {
            // Saving takes a little CPU per document: other tasks get their turn.
            if n % 32 == 31 {
                tokio::task::yield_now().await;
            }
            let Ok(mut slot) = handle.slot.try_lock() else {
                continue;
            };
            if let Slot::Loaded(d) = &mut *slot
                && d.last_used.elapsed() >= settings.sleep_after
                && d.doc.sleep()
            {
                slept += 1;
            }
        }
        self.inner
            .counters
            .documents_slept
            .fetch_add(slept as u64, Ordering::Relaxed);
        slept
    }

    fn sync_message(&self, id: DocumentId, to: &PeerLink, data: Vec<u8>) -> Message {
        Message::Sync {
            sender_id: self.inner.peer_id.clone(),
            target_id: to.peer_id.clone(),
            document_id: id.to_string(),
            data,
        }
    }

    /// `doc-unavailable` for a document that does not exist and for one the peer may not see
    /// alike: same message, same path.
    pub(crate) fn doc_unavailable(&self, to: &PeerLink, document_id: &str) -> Message {
        Message::DocUnavailable {
            sender_id: self.inner.peer_id.clone(),
            target_id: to.peer_id.clone(),
            document_id: document_id.to_owned(),
        }
    }

    /// Handles a `request` or `sync` from a peer: opens the document for it if it may see it,
    /// applies the message (if it may write), stores new changes, then answers it and forwards
    /// new changes to every other peer that has the document open.
    pub(crate) async fn sync_from_peer(
        &self,
        link: &PeerLink,
        id: DocumentId,
        document_id: &str,
        message: sync::Message,
        incoming: u64,
    ) -> Result<Opened, Fatal> {
        let (handle, mut slot) = self.lock_document(id).await;
        let subscribed =
            matches!(&*slot, Slot::Loaded(d) if d.subscribers.contains_key(&link.conn));
        if !subscribed {
            // Checked under the document lock, so a revocation either precedes this check or
            // finds the subscription and removes it.
            let mode = match storage::access(&self.inner.db, id, link.user_id).await {
                Ok(found) => found.and_then(|(_, mode)| mode),
                Err(e) => {
                    self.release_placeholder(id, &handle, &mut slot);
                    return Err(Fatal::Storage(e));
                }
            };
            let Some(mode) = mode else {
                self.release_placeholder(id, &handle, &mut slot);
                drop(slot);
                link.send(&self.doc_unavailable(link, document_id));
                return Ok(Opened::Unavailable);
            };
            if matches!(*slot, Slot::Unloaded) {
                match storage::load(&self.inner.db, id).await {
                    Ok(Some(stored)) => {
                        *slot = LoadedDoc::slot(stored, self.inner.settings.compact_after);
                    }
                    Ok(None) => {
                        self.release_placeholder(id, &handle, &mut slot);
                        drop(slot);
                        link.send(&self.doc_unavailable(link, document_id));
                        return Ok(Opened::Unavailable);
                    }
                    Err(e) => {
                        self.release_placeholder(id, &handle, &mut slot);
                        return Err(Fatal::Storage(e));
                    }
                }
            }
            if let Slot::Loaded(d) = &mut *slot {
                d.subscribers.insert(
                    link.conn,
                    Subscriber {
                        link: link.clone(),
                        mode,
                        sync: new_sync_state(mode),
                    },
                );
            }
        }
        let max = self.inner.settings.max_document_bytes;
        let over_quota = matches!(&*slot, Slot::Loaded(d)
            if incoming > 0 && d.stored_bytes.saturating_add(incoming) > max);
        {
            if over_quota {
                drop(slot);
                self.inner
                    .counters
                    .limit_refusals
                    .fetch_add(1, Ordering::Relaxed);
                link.send(&Message::Error {
                    message: format!(
                        "document {id} would exceed its size quota of {max} bytes: \
                         the changes were not stored"
                    ),
                    sender_id: Some(self.inner.peer_id.clone()),
                    target_id: Some(link.peer_id.clone()),
                });
                return Ok(Opened::Yes);
            }
        }
        self.apply_from_peer(id, &handle, &mut slot, link.conn, message)
            .await?;
        Ok(Opened::Yes)
    }

    fn release_placeholder(&self, id: DocumentId, handle: &Arc<DocHandle>, slot: &mut Slot) {
        if matches!(slot, Slot::Unloaded) {
            *slot = Slot::Gone;
            self.forget(id, handle);
        }
    }

    /// Wakes the document in `slot` if it sleeps. Waking loads what this process saved, so a
    /// failure means memory cannot be trusted: the document is dropped and its peers (but
    /// `except`) disconnected, and they sync again from storage.
    fn wake(
        &self,
        id: DocumentId,
        handle: &Arc<DocHandle>,
        slot: &mut Slot,
        except: Option<u64>,
    ) -> Result<(), StorageError> {
        let Slot::Loaded(d) = slot else {
            return Ok(());
        };
        if !d.doc.is_asleep() {
            return Ok(());
        }
        self.inner
            .counters
            .documents_woken
            .fetch_add(1, Ordering::Relaxed);
        if let Err(e) = d.doc.awake().map(drop) {
            self.poison(id, handle, slot, except);
            return Err(StorageError::Other(format!(
                "waking the sleeping copy of {id}: {e}"
            )));
        }
        Ok(())
    }

    async fn apply_from_peer(
        &self,
        id: DocumentId,
        handle: &Arc<DocHandle>,
        slot: &mut Slot,
        conn: u64,
        message: sync::Message,
    ) -> Result<(), Fatal> {
        self.wake(id, handle, slot, Some(conn))
            .map_err(Fatal::Storage)?;
        let Slot::Loaded(d) = &mut *slot else {
            return Ok(());
        };
        let Some(mode) = d.subscribers.get(&conn).map(|s| s.mode) else {
            return Ok(());
        };
        if mode == Mode::Read {
            let outcome = self.read_only_exchange(id, d, conn, message);
            if let Err(Panicked) = outcome {
                self.poison(id, handle, slot, Some(conn));
            }
            return outcome.map_err(|_| Fatal::BadSyncMessage);
        }

        let LoadedDoc {
            doc, subscribers, ..
        } = &mut **d;
        let Some(doc) = doc.live() else {
            return Ok(());
        };
        let before = doc.get_heads();
        let applied = match subscribers.get_mut(&conn) {
            Some(sub) => catch_unwind(AssertUnwindSafe(|| {
                doc.sync().receive_sync_message(&mut sub.sync, message)
            })),
            None => return Ok(()),
        };
        let Ok(applied) = applied else {
            // Automerge panicked half-way: what is in memory can no longer be trusted.
            self.poison(id, handle, slot, Some(conn));
            return Err(Fatal::BadSyncMessage);
        };
        let changed = self
            .store_new_changes(id, handle, slot, &before)
            .await
            .map_err(Fatal::Storage)?;
        if applied.is_err() {
            // Whatever valid changes came before the bad part are stored; the peer is dropped.
            return Err(Fatal::BadSyncMessage);
        }
        self.fan_out(id, slot, conn, changed).await;
        Ok(())
    }

    /// A peer that may only read: its changes are neither applied nor stored, and it is told so
    /// with an `error` (the connection stays open so it keeps receiving the document).
    fn read_only_exchange(
        &self,
        id: DocumentId,
        d: &mut LoadedDoc,
        conn: u64,
        message: sync::Message,
    ) -> Result<(), ReadOnlyFailure> {
        let LoadedDoc {
            doc, subscribers, ..
        } = d;
        let Some(doc) = doc.live() else {
            return Ok(());
        };
        let Some(sub) = subscribers.get_mut(&conn) else {
            return Ok(());
        };
        let rejected = !message.changes.is_empty() && brings_changes(doc, &message)?;
        let before = doc.get_heads();
        // A read-only sync state ignores the changes but still learns the peer's heads.
        let applied = catch_unwind(AssertUnwindSafe(|| {
            doc.sync().receive_sync_message(&mut sub.sync, message)
        }))
        .map_err(|_| Panicked)?;
        if doc.get_heads() != before {
            return Err(Panicked);
        }
        applied.map_err(|_| ReadOnlyFailure::BadMessage)?;
        if rejected {
            self.inner
                .counters
                .read_only_rejections
                .fetch_add(1, Ordering::Relaxed);
            sub.link.send(&Message::Error {
                message: format!(
                    "document {id} is read-only for this user: its changes were not stored"
                ),
                sender_id: Some(self.inner.peer_id.clone()),
                target_id: Some(sub.link.peer_id.clone()),
            });
        }
        if let Some(reply) = doc.sync().generate_sync_message(&mut sub.sync) {
            sub.link
                .send(&self.sync_message(id, &sub.link, reply.encode()));
        }
        d.last_used = Instant::now();
        Ok(())
    }

    /// Commits the changes made since `before`, if any. On failure the document is dropped from
    /// memory and every peer that had it open is disconnected, so nobody is ever sent a change
    /// that is not stored; they reconnect and sync again from what is.
    async fn store_new_changes(
        &self,
        id: DocumentId,
        handle: &Arc<DocHandle>,
        slot: &mut Slot,
        before: &[automerge::ChangeHash],
    ) -> Result<bool, StorageError> {
        let Slot::Loaded(d) = slot else {
            return Ok(false);
        };
        let Some(doc) = d.doc.live() else {
            return Ok(false);
        };
        if doc.get_heads() == before {
            return Ok(false);
        }
        let bytes = doc.save_after(before);
        let stored = storage::with_retry(id, || self.inner.writer.append(id, bytes.clone())).await;
        match stored {
            Ok(seq) => {
                d.incremental_rows += 1;
                d.stored_bytes += bytes.len() as u64;
                d.seen.rows.push(seq);
                lock(&self.inner.unannounced).insert(id);
                self.inner.announce.notify_one();
                self.inner
                    .counters
                    .stored_change_batches
                    .fetch_add(1, Ordering::Relaxed);
                Ok(true)
            }
            Err(e) => {
                self.poison(id, handle, slot, None);
                Err(e)
            }
        }
    }

    /// Sends each peer what it lacks: the one whose message we handled always gets an answer,
    /// the others only when the document changed.
    async fn fan_out(&self, id: DocumentId, slot: &mut Slot, from: u64, changed: bool) {
        let Slot::Loaded(d) = slot else {
            return;
        };
        let LoadedDoc {
            doc, subscribers, ..
        } = &mut **d;
        // Every caller woke it to apply or change it.
        let Some(doc) = doc.live() else {
            return;
        };
        for (conn, sub) in subscribers.iter_mut() {
            if *conn != from && !changed {
                continue;
            }
            if let Some(message) = doc.sync().generate_sync_message(&mut sub.sync) {
                sub.link
                    .send(&self.sync_message(id, &sub.link, message.encode()));
            }
        }
        d.last_used = Instant::now();
        if changed
            && d.incremental_rows >= d.compact_at
            && let Some(doc) = d.doc.live()
        {
            match storage::compact_held(&self.inner.db, id, &d.seen, doc).await {
                Ok(done) => {
                    d.incremental_rows = d.incremental_rows.saturating_sub(done.folded_rows);
                    d.stored_bytes = done.snapshot_bytes as u64;
                    // Saved from this copy, the snapshot is what it holds; otherwise it may also
                    // hold rows another process stored that we have not read yet, so the next
                    // refresh reads it.
                    d.seen = done.seen.unwrap_or_default();
                    d.compact_at = self.inner.settings.compact_after;
                    tracing::debug!(document = %id, folded = done.folded_rows, bytes = done.snapshot_bytes, "compacted");
                }
                Err(e) => {
                    // Nothing is lost: the rows stay until a later compaction succeeds.
                    d.compact_at = d.incremental_rows + self.inner.settings.compact_after;
                    tracing::error!(document = %id, error = %e, "compacting a sync document");
                }
            }
        }
    }

    /// Drops a document from memory and disconnects every peer that had it open (but `except`,
    /// which the caller ends itself).
    fn poison(
        &self,
        id: DocumentId,
        handle: &Arc<DocHandle>,
        slot: &mut Slot,
        except: Option<u64>,
    ) {
        tracing::error!(document = %id, "dropping a sync document from memory after a failure");
        if let Slot::Loaded(d) = std::mem::replace(slot, Slot::Gone) {
            for (conn, sub) in d.subscribers {
                if Some(conn) != except {
                    sub.link.control.close(CloseReason::DocumentFailed);
                }
            }
        }
        self.forget(id, handle);
    }

    /// Brings in what other processes stored for a document held in memory, then sends it to
    /// every peer here that has it open; called when a `NOTIFY` says something was stored, and
    /// for every document after notifications may have been lost. A document nobody here has
    /// open is dropped from memory instead: it is read whole when next opened. Returns whether
    /// peers were sent new content.
    pub(crate) async fn refresh_document(&self, id: DocumentId) -> Result<bool, StorageError> {
        let Some(handle) = self.existing_handle(id) else {
            return Ok(false);
        };
        let mut slot = handle.slot.lock().await;
        let Slot::Loaded(d) = &mut *slot else {
            return Ok(false);
        };
        if d.subscribers.is_empty() {
            *slot = Slot::Gone;
            self.forget(id, &handle);
            return Ok(false);
        }
        let unseen = storage::read_unseen(&self.inner.db, id, &d.seen).await?;
        if unseen.snapshot.is_none() && unseen.rows.is_empty() {
            // Nothing new: a sleeping copy sleeps on.
            d.incremental_rows = unseen.now.rows.len();
            d.seen = unseen.now;
            return Ok(false);
        }
        self.wake(id, &handle, &mut slot, None)?;
        let Slot::Loaded(d) = &mut *slot else {
            return Ok(false);
        };
        let Some(doc) = d.doc.live() else {
            return Ok(false);
        };
        let before = doc.get_heads();
        // Automerge skips changes it already has, so overlapping rows and a snapshot that
        // folds rows we applied are harmless.
        let applied = catch_unwind(AssertUnwindSafe(|| {
            unseen
                .snapshot
                .iter()
                .chain(&unseen.rows)
                .try_for_each(|bytes| doc.load_incremental(bytes).map(drop))
        }));
        let failure = match applied {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(StorageError::Corrupt {
                document_id: id,
                source: Box::new(e),
            }),
            Err(_) => Some(StorageError::Other(format!(
                "Automerge panicked loading stored changes of {id}"
            ))),
        };
        if let Some(e) = failure {
            // What is in memory may be half-applied: peers reload from storage.
            self.poison(id, &handle, &mut slot, None);
            return Err(e);
        }
        let rows: u64 = unseen.rows.iter().map(|r| r.len() as u64).sum();
        d.stored_bytes = match &unseen.snapshot {
            // A compaction elsewhere replaced the snapshot and folded the rows we had counted.
            Some(snapshot) => snapshot.len() as u64 + rows,
            None => d.stored_bytes + rows,
        };
        d.incremental_rows = unseen.now.rows.len();
        d.seen = unseen.now;
        if d.doc.live().is_some_and(|doc| doc.get_heads() == before) {
            return Ok(false);
        }
        self.fan_out(id, &mut slot, 0, true).await;
        Ok(true)
    }

    /// Runs `read` on the document's copy in memory, first brought up to date with what other
    /// processes stored, so it holds at least everything committed before the call. `None` when
    /// no copy is held here (or nobody has it open, so it was dropped): read it from storage.
    pub(crate) async fn read_held<T>(
        &self,
        id: DocumentId,
        read: impl FnOnce(DocumentKind, &mut AutoCommit) -> T,
    ) -> Result<Option<T>, StorageError> {
        if !self.is_loaded(id) {
            return Ok(None);
        }
        self.refresh_document(id).await?;
        let Some(handle) = self.existing_handle(id) else {
            return Ok(None);
        };
        let mut slot = handle.slot.lock().await;
        // A copy that cannot be woken is dropped; the caller reads storage instead.
        if self.wake(id, &handle, &mut slot, None).is_err() {
            return Ok(None);
        }
        Ok(match &mut *slot {
            Slot::Loaded(d) => d.doc.live().map(|doc| read(d.kind, doc)),
            Slot::Unloaded | Slot::Gone => None,
        })
    }

    /// [`Self::refresh_document`] for every document in memory.
    /// What each document with subscribers here has seen of storage: its snapshot's version and
    /// how many change rows it holds (see [`storage::stored_versions`]).
    pub(crate) async fn seen_by_subscribed(&self) -> Vec<(DocumentId, Option<i64>, usize)> {
        let handles = self.inner.docs.all();
        let mut seen = Vec::with_capacity(handles.len());
        for (id, handle) in handles {
            let slot = handle.slot.lock().await;
            if let Slot::Loaded(d) = &*slot
                && !d.subscribers.is_empty()
            {
                seen.push((id, d.seen.snapshot, d.seen.rows.len()));
            }
        }
        seen
    }

    pub(crate) async fn refresh_all(&self) {
        for (id, _) in self.inner.docs.all() {
            if let Err(e) = self.refresh_document(id).await {
                tracing::error!(document = %id, error = %e, "reading changes stored elsewhere");
            }
        }
    }

    /// Relays an `ephemeral` message to the other peers that have the document open, if the
    /// sender has it open too. Returns whether it was relayed.
    pub(crate) async fn relay_ephemeral(
        &self,
        link: &PeerLink,
        id: DocumentId,
        message: &Message,
    ) -> bool {
        let Message::Ephemeral {
            sender_id,
            count,
            session_id,
            document_id,
            data,
            ..
        } = message
        else {
            return false;
        };
        let Some(handle) = self.existing_handle(id) else {
            return false;
        };
        let slot = handle.slot.lock().await;
        let Slot::Loaded(d) = &*slot else {
            return false;
        };
        if !d.subscribers.contains_key(&link.conn) {
            return false;
        }
        for (conn, sub) in &d.subscribers {
            if *conn == link.conn || sub.link.peer_id == link.peer_id {
                continue;
            }
            sub.link.send(&Message::Ephemeral {
                sender_id: sender_id.clone(),
                target_id: sub.link.peer_id.clone(),
                count: *count,
                session_id: session_id.clone(),
                document_id: document_id.clone(),
                data: data.clone(),
            });
        }
        true
    }

    /// Removes a closed connection's subscriptions.
    pub(crate) async fn unsubscribe(&self, conn: u64, ids: impl IntoIterator<Item = DocumentId>) {
        for id in ids {
            let Some(handle) = self.existing_handle(id) else {
                continue;
            };
            let mut slot = handle.slot.lock().await;
            if let Slot::Loaded(d) = &mut *slot
                && d.subscribers.remove(&conn).is_some()
            {
                d.last_used = Instant::now();
            }
        }
    }

    /// Brings a user's live subscriptions in line with their access: `None` drops them with
    /// `doc-unavailable`; a mode switches their sync states between read-only and read-write.
    pub(crate) async fn apply_access(&self, id: DocumentId, user_id: Uuid, mode: Option<Mode>) {
        let Some(handle) = self.existing_handle(id) else {
            return;
        };
        let mut slot = handle.slot.lock().await;
        // A new mode is answered with a sync message, which needs the document awake; a copy
        // that cannot be woken is dropped with its peers, who resync from storage.
        let switches = matches!(&*slot, Slot::Loaded(d) if mode.is_some_and(|m| {
            d.subscribers.values().any(|s| s.link.user_id == user_id && s.mode != m)
        }));
        if switches && self.wake(id, &handle, &mut slot, None).is_err() {
            return;
        }
        let Slot::Loaded(d) = &mut *slot else {
            return;
        };
        let LoadedDoc {
            doc, subscribers, ..
        } = &mut **d;
        let conns: Vec<u64> = subscribers
            .iter()
            .filter(|(_, s)| s.link.user_id == user_id)
            .map(|(c, _)| *c)
            .collect();
        for conn in conns {
            match mode {
                None => {
                    if let Some(sub) = subscribers.remove(&conn) {
                        sub.link
                            .send(&self.doc_unavailable(&sub.link, &id.to_string()));
                    }
                }
                Some(mode) => {
                    let Some(sub) = subscribers.get_mut(&conn) else {
                        continue;
                    };
                    if sub.mode != mode {
                        sub.mode = mode;
                        sub.sync.set_read_only(mode == Mode::Read);
                        if let Some(doc) = doc.live()
                            && let Some(message) = doc.sync().generate_sync_message(&mut sub.sync)
                        {
                            sub.link
                                .send(&self.sync_message(id, &sub.link, message.encode()));
                        }
                    }
                }
            }
        }
    }

    /// Changes a document on the server's behalf (for example to write a customer's inbox):
    /// `change` edits it, the new changes are committed, then every peer that has it open gets
    /// them. Returns the document's heads afterwards.
    pub async fn change_document(
        &self,
        id: DocumentId,
        change: impl FnOnce(&mut AutoCommit) -> Result<(), automerge::AutomergeError>,
    ) -> Result<Vec<automerge::ChangeHash>, ChangeError> {
        let (handle, mut slot) = self.lock_document(id).await;
        if matches!(*slot, Slot::Unloaded) {
            match storage::load(&self.inner.db, id).await {
                Ok(Some(stored)) => {
                    *slot = LoadedDoc::slot(stored, self.inner.settings.compact_after);
                }
                Ok(None) => {
                    self.release_placeholder(id, &handle, &mut slot);
                    return Err(ChangeError::Storage(StorageError::NoSuchDocument(id)));
                }
                Err(e) => {
                    self.release_placeholder(id, &handle, &mut slot);
                    return Err(ChangeError::Storage(e));
                }
            }
        }
        self.wake(id, &handle, &mut slot, None)?;
        let Some(doc) = (match &mut *slot {
            Slot::Loaded(d) => d.doc.live(),
            _ => None,
        }) else {
            return Err(ChangeError::Storage(StorageError::NoSuchDocument(id)));
        };
        let before = doc.get_heads();
        if let Err(e) = change(doc) {
            doc.rollback();
            return Err(ChangeError::Change(Box::new(e)));
        }
        doc.commit();
        let changed = self
            .store_new_changes(id, &handle, &mut slot, &before)
            .await?;
        self.fan_out(id, &mut slot, 0, changed).await;
        match &mut *slot {
            Slot::Loaded(d) => Ok(d.doc.live().map(|doc| doc.get_heads()).unwrap_or_default()),
            _ => Ok(Vec::new()),
        }
    }
}

/// Why [`SyncState::change_document`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("changing the document: {0}")]
    Change(Box<automerge::AutomergeError>),
}

fn new_sync_state(mode: Mode) -> sync::State {
    match mode {
        Mode::Read => sync::State::new_read_only(),
        Mode::Write => sync::State::new(),
    }
}

/// Why a read-only peer's message failed.
#[derive(Debug)]
enum ReadOnlyFailure {
    /// Automerge rejected the message; the document is untouched.
    BadMessage,
    /// Automerge panicked or changed the document: it can no longer be trusted.
    Panicked,
}
use ReadOnlyFailure::Panicked;

/// Whether the message carries changes the document does not have, found by applying it to a
/// throwaway fork (the message may hold a whole saved document rather than single changes).
fn brings_changes(doc: &mut AutoCommit, message: &sync::Message) -> Result<bool, ReadOnlyFailure> {
    let before = doc.get_heads();
    let mut fork = doc.fork();
    let mut probe = sync::State::new();
    let applied = catch_unwind(AssertUnwindSafe(|| {
        let received = fork
            .sync()
            .receive_sync_message(&mut probe, message.clone());
        received.map(|()| fork.get_heads())
    }));
    match applied {
        Ok(Ok(after)) => Ok(after != before),
        _ => Err(ReadOnlyFailure::BadMessage),
    }
}
