//! Several atiende processes on one database. Stored changes are announced with `NOTIFY` on
//! [`SYNC_CHANNEL`] naming the document and the server that stored it (batched, right after
//! storing), and every access change with one naming the document and the user; each server
//! listens, so a change made through one process reaches the peers connected to another, and a
//! revocation stops them, at once. Ended sessions and deactivated users are announced there too,
//! and close their connections on every server. A process killed after storing a change and before
//! announcing it leaves that change unheard: every server also compares its open documents with
//! storage now and then ([`SyncSettings::catch_up`](crate::SyncSettings::catch_up)) and reads
//! what they lack.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use atiende_core::documents::SYNC_CHANNEL;
use atiende_core::worker::{self, Ended, Round};
use serde::Deserialize;
use sqlx::PgConnection;
use sqlx::postgres::PgListener;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::state::SyncState;
use crate::writer;
use crate::{DocumentId, lock, storage};

/// Wait before reconnecting after the database went away: from the first, doubling while it
/// stays away, up to the second.
const RETRY: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));
/// Notifications read ahead of the work they cause. When full, reading waits and PostgreSQL
/// keeps the rest queued.
const QUEUE: usize = 1024;
/// Notifications handled together: many for one document cost one read.
const BATCH: usize = 256;
/// Documents announced in one statement.
const ANNOUNCE_BATCH: usize = 1_000;

/// `{"doc": …, "origin": …}` (changes stored), `{"doc": …, "access": …}` (access changed),
/// `{"session_ended": …}` or `{"user_deactivated": …}`.
#[derive(Deserialize)]
struct Payload {
    #[serde(default)]
    doc: Option<String>,
    #[serde(default)]
    session_ended: Option<String>,
    #[serde(default)]
    user_deactivated: Option<Uuid>,
    #[serde(default)]
    origin: Option<String>,
    #[serde(default)]
    access: Option<Uuid>,
}

enum Event {
    SessionEnded(Vec<u8>),
    UserDeactivated(Uuid),
    Stored(DocumentId),
    Access(DocumentId, Uuid),
    /// The connection was lost and re-established: whatever was sent meanwhile went unheard.
    Reconnected,
}

impl SyncState {
    /// Follows what other processes on the same database do until `shutdown` completes: changes
    /// they store reach the peers connected here that have the document open, and access changed
    /// anywhere (even in a plain transaction, through `atiende_core::documents`) applies to them
    /// live. After (re)connecting it reads again every document in memory, as notifications sent
    /// meanwhile are lost. Errors are logged and the connection retried; it never gives up until
    /// the pool is closed. The owner of the process runs this.
    ///
    /// It also announces, in batches, the changes this process stores.
    pub async fn run_listener(&self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|stopped| *stopped).await;
            }
        };
        let stop = async {
            tokio::select! {
                () = shutdown => {}
                () = stopped() => {}
            }
            let _ = stop_tx.send(true);
        };
        // A closed pool ends the listener for good, and the other two with it.
        let listener = async {
            worker::session("sync listener", RETRY, stopped(), || self.listen_session()).await;
            let _ = stop_tx.send(true);
        };
        let announcer = worker::session("sync announcer", RETRY, stopped(), || {
            self.announce_session()
        });
        let catch_up = worker::run(
            "sync catch-up",
            self.inner.settings.catch_up,
            stopped(),
            || async {
                let behind = self.catch_up().await?;
                if behind > 0 {
                    tracing::info!(
                        documents = behind,
                        "read changes stored elsewhere that were never announced"
                    );
                }
                Ok::<_, storage::StorageError>(Round::Idle)
            },
        );
        tokio::join!(stop, listener, announcer, catch_up);
        let announced = match self.inner.db.acquire().await {
            Ok(mut conn) => self.announce_stored(&mut conn).await,
            Err(_) => lock(&self.inner.unannounced).is_empty(),
        };
        if !announced {
            tracing::warn!(
                "stopping with stored changes not announced: other processes see them with the next change to those documents"
            );
        }
    }

    /// Tells other processes which documents got stored changes. One `NOTIFY` per change in the
    /// storing transaction would serialise every commit on PostgreSQL's notification lock; one
    /// statement per batch, sent while the next batch gathers, costs that lock once. Returns
    /// when the database is away; what was not announced waits in the set for the next session.
    /// The session keeps its connection when the pool has room for it (see
    /// `writer::may_hold`), sparing each announcement a round trip through the pool.
    async fn announce_session(&self) -> Result<Ended, String> {
        let window = self.inner.settings.announce_window;
        let mut held = None;
        loop {
            self.inner.announce.notified().await;
            if !window.is_zero() {
                tokio::time::sleep(window).await;
            }
            let mut conn = match held.take() {
                Some(conn) => conn,
                None => match self.inner.db.acquire().await {
                    Err(sqlx::Error::PoolClosed) => {
                        return Ok(Ended::Finished("the database pool was closed"));
                    }
                    acquired => acquired.map_err(|e| format!("taking a connection: {e}"))?,
                },
            };
            if !self.announce_stored(&mut conn).await {
                self.inner.announce.notify_one();
                return Err("announcing failed; the connection is taken again".into());
            }
            if writer::may_hold(&self.inner.db) {
                held = Some(conn);
            }
        }
    }

    /// One listening connection, until it fails; a closed pool finishes the listener.
    async fn listen_session(&self) -> Result<Ended, sqlx::Error> {
        match self.listen().await {
            sqlx::Error::PoolClosed => Ok(Ended::Finished("the database pool was closed")),
            e => Err(e),
        }
    }

    /// One comparison of every document with subscribers here against storage. Returns how
    /// many were behind and read again.
    pub async fn catch_up(&self) -> Result<usize, storage::StorageError> {
        let seen = self.seen_by_subscribed().await;
        let mut behind = 0;
        for chunk in seen.chunks(ANNOUNCE_BATCH) {
            let ids: Vec<DocumentId> = chunk.iter().map(|(id, ..)| *id).collect();
            let stored = storage::stored_versions(&self.inner.db, &ids).await?;
            for (id, snapshot, rows) in chunk {
                let Some(&now) = stored.get(id) else {
                    continue;
                };
                if now == (*snapshot, *rows) {
                    continue;
                }
                behind += 1;
                if let Err(e) = self.refresh_document(*id).await {
                    tracing::error!(document = %id, error = %e, "reading changes stored elsewhere");
                }
            }
        }
        Ok(behind)
    }

    /// Announces what is waiting, on `conn`. Returns false if some of it could not be sent (it
    /// is kept).
    async fn announce_stored(&self, conn: &mut PgConnection) -> bool {
        let ids: Vec<DocumentId> = std::mem::take(&mut *lock(&self.inner.unannounced))
            .into_iter()
            .collect();
        for (i, batch) in ids.chunks(ANNOUNCE_BATCH).enumerate() {
            if let Err(e) =
                storage::notify_stored(&mut *conn, batch, Some(&self.inner.peer_id)).await
            {
                tracing::warn!(error = %e, documents = batch.len(), "announcing stored changes; retrying");
                lock(&self.inner.unannounced).extend(&ids[i * ANNOUNCE_BATCH..]);
                return false;
            }
        }
        true
    }

    /// Listens until the connection fails for good, and returns why.
    async fn listen(&self) -> sqlx::Error {
        let mut listener = match PgListener::connect_with(&self.inner.db).await {
            Ok(listener) => listener,
            Err(e) => return e,
        };
        if let Err(e) = listener.listen(SYNC_CHANNEL).await {
            return e;
        }
        tracing::debug!("sync listener connected");
        // Anything stored, and any session ended, before LISTEN took effect was not heard.
        if let Err(e) = self.recheck_sessions().await {
            tracing::error!(error = %e, "checking the sessions of open sync connections");
        }
        self.refresh_all().await;

        // Reading and handling run side by side, so a document that is slow to lock does not
        // leave notifications unread on the socket.
        let (tx, mut rx) = mpsc::channel(QUEUE);
        let read = async move {
            loop {
                let event = match listener.try_recv().await {
                    Ok(Some(notification)) => match self.event(notification.payload()) {
                        Some(event) => event,
                        None => continue,
                    },
                    // sqlx reconnected on its own.
                    Ok(None) => Event::Reconnected,
                    Err(e) => return e,
                };
                if tx.send(event).await.is_err() {
                    return sqlx::Error::WorkerCrashed;
                }
            }
        };
        let work = async {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(event) => batch.push(event),
                        Err(_) => break,
                    }
                }
                self.handle_notifications(batch).await;
            }
        };
        // `read` drops the sender when it ends, so `work` finishes what was queued.
        let (error, ()) = tokio::join!(read, work);
        error
    }

    fn event(&self, payload: &str) -> Option<Event> {
        let parsed: Payload = match serde_json::from_str(payload) {
            Ok(parsed) => parsed,
            Err(e) => {
                tracing::warn!(%payload, error = %e, "ignoring an unreadable sync notification");
                return None;
            }
        };
        if let Some(user) = parsed.user_deactivated {
            return Some(Event::UserDeactivated(user));
        }
        if let Some(hex) = parsed.session_ended {
            return match decode_hex(&hex) {
                Some(digest) => Some(Event::SessionEnded(digest)),
                None => {
                    tracing::warn!(%payload, "ignoring a session notification without a digest");
                    None
                }
            };
        }
        let Ok(id) = DocumentId::parse(parsed.doc.as_deref().unwrap_or_default()) else {
            tracing::warn!(%payload, "ignoring a sync notification for an unknown document id");
            return None;
        };
        if let Some(user) = parsed.access {
            return Some(Event::Access(id, user));
        }
        // What we stored ourselves is in memory already.
        if parsed.origin.as_deref() == Some(self.peer_id()) {
            return None;
        }
        Some(Event::Stored(id))
    }

    async fn handle_notifications(&self, batch: Vec<Event>) {
        let mut everything = false;
        let (mut access, mut access_seen) = (Vec::new(), HashSet::new());
        let (mut stored, mut stored_seen) = (Vec::new(), HashSet::new());
        for event in batch {
            match event {
                Event::SessionEnded(digest) => {
                    self.end_session(&digest);
                }
                Event::UserDeactivated(user) => {
                    self.end_user(user);
                }
                Event::Reconnected => everything = true,
                Event::Access(id, user) => {
                    if access_seen.insert((id, user)) {
                        access.push((id, user));
                    }
                }
                Event::Stored(id) => {
                    if stored_seen.insert(id) {
                        stored.push(id);
                    }
                }
            }
        }
        // Access first: a revoked user is not sent changes stored after the revocation.
        for (id, user) in access {
            if let Err(e) = self.access_changed(id, user).await {
                tracing::error!(document = %id, %user, error = %e, "following an access change");
            }
        }
        if everything {
            if let Err(e) = self.recheck_sessions().await {
                tracing::error!(error = %e, "checking the sessions of open sync connections");
            }
            self.refresh_all().await;
            return;
        }
        for id in stored {
            if let Err(e) = self.refresh_document(id).await {
                tracing::error!(document = %id, error = %e, "reading changes stored elsewhere");
            }
        }
    }
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) || !hex.is_ascii() {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}
