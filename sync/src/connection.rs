//! One WebSocket connection: `join`/`peer`, then a loop that writes what documents queued for the
//! peer and handles each frame it sends. Anything that breaks the protocol ends the connection
//! with an `error` message and a close frame; nothing a peer sends can panic the server.

use std::collections::HashSet;
use std::panic::catch_unwind;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use atiende_core::auth::{SessionInfo, User};
use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, close_code};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};
use tracing::Instrument;
use uuid::Uuid;

use crate::chunks::{self, ChunkError};
use crate::docs::{Fatal, Opened};
use crate::peers::{CloseReason, Control, PeerEntry, PeerLink};
use crate::protocol::{DecodeError, Limits, Message, PROTOCOL_V1, PeerMetadata, decode_with};
use crate::state::SyncState;
use crate::{DocumentId, encode};

/// Longest peer id we keep (automerge-repo's are UUIDs or short names).
const MAX_PEER_ID: usize = 256;
/// Longest document id we read: a bs58check id is at most 28 characters, a URL 38.
const MAX_DOCUMENT_ID: usize = 64;
/// How long a closing connection waits for the peer's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// The close code when the session behind a connection ended (an application code, after HTTP's
/// 401): reconnecting needs a new login and a new ticket.
pub const SESSION_ENDED: u16 = 4401;

/// How a connection ends.
enum End {
    /// The peer closed or the socket failed: there is nobody to tell.
    Gone,
    /// A close frame without an error: the peer left, was replaced, or we are shutting down.
    Close(u16, &'static str),
    /// An `error` message with this text, then a close frame with this code.
    Error(String, u16),
}

fn protocol_error(text: &str) -> End {
    End::Error(text.to_owned(), close_code::PROTOCOL)
}

/// Keeps the count of open connections right however the task ends.
struct Counted(SyncState);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0
            .inner
            .connections
            .send_modify(|n| *n = n.saturating_sub(1));
    }
}

pub(crate) async fn serve(
    state: SyncState,
    user: User,
    session: SessionInfo,
    mut socket: WebSocket,
) {
    state.inner.connections.send_modify(|n| *n += 1);
    let _counted = Counted(state.clone());
    let conn = state.inner.next_conn.fetch_add(1, Ordering::Relaxed);
    let control = Arc::new(Control::default());
    let _live = state.track_session(conn, user.id, session, control.clone());
    let span = tracing::info_span!(
        "sync_connection",
        conn,
        user = %user.id,
        peer = tracing::field::Empty
    );
    async move {
        let settings = state.settings();
        let (tx, mut rx) = mpsc::channel(settings.outbound_queue.max(1));
        let mut connection = Connection {
            limits: Limits {
                max_frame: settings.max_frame,
                ..Limits::default()
            },
            bucket: Bucket::new(settings.messages_per_second, settings.message_burst),
            state: state.clone(),
            conn,
            user_id: user.id,
            tx,
            queued: Arc::new(AtomicUsize::new(0)),
            control,
            peer_id: None,
            open: HashSet::new(),
        };
        tracing::debug!("sync connection open");
        let end = if state.is_shutting_down() {
            End::Close(close_code::AWAY, "server shutting down")
        } else {
            connection.run(&mut socket, &mut rx).await
        };
        Box::pin(connection.cleanup()).await;
        connection.finish(&mut socket, end).await;
        tracing::debug!("sync connection closed");
    }
    .instrument(span)
    .await;
}

struct Connection {
    state: SyncState,
    limits: Limits,
    bucket: Bucket,
    conn: u64,
    user_id: Uuid,
    tx: mpsc::Sender<Bytes>,
    /// Bytes in `tx`, bounded by `max_queued_bytes`.
    queued: Arc<AtomicUsize>,
    control: Arc<Control>,
    /// Set by `join`.
    peer_id: Option<String>,
    /// Documents this connection opened (a superset: a revocation removes the subscription only).
    open: HashSet<DocumentId>,
}

impl Connection {
    fn link(&self) -> PeerLink {
        PeerLink {
            conn: self.conn,
            peer_id: self.peer_id.clone().unwrap_or_default(),
            user_id: self.user_id,
            tx: self.tx.clone(),
            queued: self.queued.clone(),
            max_queued: self.state.settings().max_queued_bytes,
            control: self.control.clone(),
        }
    }

    /// Refuses one message with an `error`; the connection stays open.
    fn refuse(&self, text: String) {
        self.state
            .inner
            .counters
            .limit_refusals
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(error = %text, "refusing a sync message");
        let link = self.link();
        link.send(&Message::Error {
            message: text,
            sender_id: Some(self.state.peer_id().to_owned()),
            target_id: Some(link.peer_id.clone()),
        });
    }

    async fn run(&mut self, socket: &mut WebSocket, rx: &mut mpsc::Receiver<Bytes>) -> End {
        let mut shutdown = self.state.inner.shutdown.subscribe();
        let join_deadline = Instant::now() + self.state.settings().handshake_timeout;
        let control = self.control.clone();
        let keepalive = self
            .state
            .settings()
            .keepalive
            .max(Duration::from_millis(10));
        let mut ping = tokio::time::interval_at(Instant::now() + keepalive, keepalive);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        loop {
            // Outgoing frames go before the next incoming one, so a peer's own answers never
            // pile up behind its requests.
            tokio::select! {
                biased;
                reason = control.closed() => return match reason {
                    CloseReason::Retired => End::Close(
                        close_code::NORMAL,
                        "replaced by a newer connection of the same peer",
                    ),
                    CloseReason::TooSlow => End::Error(
                        "the peer is not reading fast enough; reconnect".to_owned(),
                        close_code::POLICY,
                    ),
                    CloseReason::DocumentFailed => End::Error(
                        "the server could not store a document; reconnect".to_owned(),
                        close_code::ERROR,
                    ),
                    CloseReason::SessionEnded => End::Close(
                        SESSION_ENDED,
                        "session ended: log in again",
                    ),
                },
                () = async { let _ = shutdown.wait_for(|down| *down).await; } => {
                    return End::Close(close_code::AWAY, "server shutting down");
                }
                Some(frame) = rx.recv() => {
                    self.queued.fetch_sub(frame.len(), Ordering::Relaxed);
                    if let Err(end) = self.write(socket, WsMessage::Binary(frame)).await {
                        return end;
                    }
                }
                () = tokio::time::sleep_until(join_deadline), if self.peer_id.is_none() => {
                    return protocol_error("no `join` message in time");
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() >= keepalive * 3 {
                        tracing::info!("peer silent for three keepalive intervals; dropping it");
                        return End::Gone;
                    }
                    if let Err(end) = self.write(socket, WsMessage::Ping(Bytes::new())).await {
                        return end;
                    }
                }
                incoming = socket.recv() => {
                    last_heard = Instant::now();
                    match incoming {
                    None | Some(Ok(WsMessage::Close(_))) => return End::Gone,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "reading a WebSocket frame");
                        return End::Error(
                            "unreadable WebSocket frame (too large or malformed)".to_owned(),
                            close_code::SIZE,
                        );
                    }
                    Some(Ok(WsMessage::Binary(bytes))) => {
                        // Boxed: handling a message goes deep (access, loading, storing), and
                        // inline that state would be part of every idle connection's task.
                        if let Err(end) = Box::pin(self.frame(&bytes)).await {
                            return end;
                        }
                    }
                    Some(Ok(WsMessage::Text(_))) => {
                        return End::Error(
                            "text frames are not part of the protocol".to_owned(),
                            close_code::UNSUPPORTED,
                        );
                    }
                    Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
                    }
                }
            }
        }
    }

    async fn write(&self, socket: &mut WebSocket, message: WsMessage) -> Result<(), End> {
        match timeout(self.state.settings().send_timeout, socket.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "writing a WebSocket frame");
                Err(End::Gone)
            }
            Err(_) => {
                tracing::info!("peer did not read a frame in time; dropping it");
                Err(End::Gone)
            }
        }
    }

    async fn frame(&mut self, bytes: &[u8]) -> Result<(), End> {
        if !self.bucket.take() {
            return Err(End::Error(
                "too many messages; slow down".to_owned(),
                close_code::POLICY,
            ));
        }
        let message = decode_with(bytes, &self.limits).map_err(|e| {
            let code = match e {
                DecodeError::FrameTooLarge { .. } => close_code::SIZE,
                _ => close_code::PROTOCOL,
            };
            End::Error(e.to_string(), code)
        })?;
        self.handle(message).await
    }

    async fn handle(&mut self, message: Message) -> Result<(), End> {
        if self.peer_id.is_none() && !matches!(message, Message::Join { .. }) {
            return Err(protocol_error("the first message must be `join`"));
        }
        match message {
            Message::Join {
                sender_id,
                supported_protocol_versions,
                ..
            } => self.join(sender_id, &supported_protocol_versions),
            Message::Leave { sender_id } => {
                self.check_sender(&sender_id)?;
                Err(End::Close(close_code::NORMAL, "goodbye"))
            }
            Message::Request {
                sender_id,
                document_id,
                data,
                ..
            }
            | Message::Sync {
                sender_id,
                document_id,
                data,
                ..
            } => {
                self.check_sender(&sender_id)?;
                self.sync(document_id, &data).await
            }
            message @ Message::Ephemeral { .. } => {
                self.check_sender(message.sender_id().unwrap_or_default())?;
                let max = self.state.settings().max_ephemeral_bytes;
                if let Message::Ephemeral { data, .. } = &message
                    && data.len() > max
                {
                    // Relayed to every other peer of the document, so it is kept small.
                    self.refuse(format!(
                        "ephemeral message of {} bytes is over the limit of {max} bytes: \
                         it was not relayed",
                        data.len()
                    ));
                    return Ok(());
                }
                let id = message.document_id().map(DocumentId::parse);
                if let Some(Ok(id)) = id
                    && self.open.contains(&id)
                {
                    self.state.relay_ephemeral(&self.link(), id, &message).await;
                }
                Ok(())
            }
            Message::Error { message, .. } => {
                let message: String = message.chars().take(200).collect();
                tracing::info!(%message, "peer reported an error");
                Err(End::Close(close_code::NORMAL, "error received"))
            }
            Message::Unknown { type_name } => {
                self.state
                    .inner
                    .counters
                    .unknown_messages
                    .fetch_add(1, Ordering::Relaxed);
                let type_name: String = type_name.chars().take(40).collect();
                tracing::debug!(%type_name, "ignoring a message of an unknown type");
                Ok(())
            }
            // Remote-heads gossip is optional and we do not take part; a peer that says it lacks
            // a document, or sends `peer` to us, needs no answer.
            Message::RemoteHeadsChanged { .. }
            | Message::RemoteSubscriptionChange { .. }
            | Message::DocUnavailable { .. }
            | Message::Peer { .. } => Ok(()),
        }
    }

    fn check_sender(&self, sender_id: &str) -> Result<(), End> {
        if self.peer_id.as_deref() == Some(sender_id) {
            Ok(())
        } else {
            Err(protocol_error("`senderId` is not the peer that joined"))
        }
    }

    fn join(&mut self, sender_id: String, versions: &[String]) -> Result<(), End> {
        if let Some(current) = &self.peer_id {
            // The JavaScript client may repeat `join` on an open socket; answer it again.
            if *current != sender_id {
                return Err(protocol_error("a connection cannot change its peer id"));
            }
            self.send_peer();
            return Ok(());
        }
        if !versions.iter().any(|v| v == PROTOCOL_V1) {
            return Err(protocol_error(
                "unsupported protocol version: this server speaks \"1\"",
            ));
        }
        if sender_id.is_empty() || sender_id.len() > MAX_PEER_ID {
            return Err(protocol_error("`senderId` must have 1 to 256 bytes"));
        }
        {
            let mut peers = self.state.inner.peers.lock();
            if let Some(existing) = peers.get(&sender_id) {
                // Peer ids are chosen by clients: only the same user may take one over.
                if existing.user_id != self.user_id {
                    return Err(End::Error(
                        "that peer id is in use".to_owned(),
                        close_code::POLICY,
                    ));
                }
                existing.control.close(CloseReason::Retired);
            }
            // A new peer id of a user at the cap is refused; one that replaces its own older
            // connection is not a new connection.
            let max = self.state.settings().max_connections_per_user;
            let others = peers
                .iter()
                .filter(|(peer, e)| e.user_id == self.user_id && **peer != sender_id)
                .count();
            if !peers.contains_key(&sender_id) && others >= max {
                self.state
                    .inner
                    .counters
                    .limit_refusals
                    .fetch_add(1, Ordering::Relaxed);
                return Err(End::Error(
                    format!(
                        "too many sync connections for this user (limit {max}): \
                         close one before opening another"
                    ),
                    close_code::POLICY,
                ));
            }
            peers.insert(
                sender_id.clone(),
                PeerEntry {
                    conn: self.conn,
                    user_id: self.user_id,
                    control: self.control.clone(),
                },
            );
        }
        tracing::Span::current().record("peer", sender_id.as_str());
        self.peer_id = Some(sender_id);
        self.send_peer();
        Ok(())
    }

    fn send_peer(&self) {
        let link = self.link();
        link.send(&Message::Peer {
            sender_id: self.state.peer_id().to_owned(),
            target_id: link.peer_id.clone(),
            selected_protocol_version: PROTOCOL_V1.to_owned(),
            peer_metadata: Some(PeerMetadata {
                storage_id: Some(self.state.inner.storage_id.clone()),
                is_ephemeral: Some(false),
            }),
        });
    }

    async fn sync(&mut self, document_id: String, data: &[u8]) -> Result<(), End> {
        if document_id.len() > MAX_DOCUMENT_ID {
            return Err(protocol_error("`documentId` is too long"));
        }
        let link = self.link();
        let Ok(id) = DocumentId::parse(&document_id) else {
            // Not an id we could have issued: the same answer as any document we do not show.
            link.send(&self.state.doc_unavailable(&link, &document_id));
            return Ok(());
        };
        // Only the framing first: a user past the write budget may still read.
        let carries_changes = chunks::carries_changes(data)
            .map_err(|_| protocol_error("`data` is not an Automerge sync message"))?;
        if carries_changes && !self.state.may_write(self.user_id) {
            self.state
                .inner
                .counters
                .limit_refusals
                .fetch_add(1, Ordering::Relaxed);
            return Err(End::Error(
                "this user's write budget is spent: slow down and reconnect in a minute".to_owned(),
                close_code::POLICY,
            ));
        }
        let max = self.state.settings().max_document_bytes;
        let measured = match chunks::measure(data, max) {
            Ok(measured) => measured,
            Err(ChunkError::Malformed) => {
                return Err(protocol_error("`data` is not an Automerge sync message"));
            }
            Err(ChunkError::OverCap) => {
                self.state.spend_writes(self.user_id, max);
                self.refuse(format!(
                    "the sync message for document {id} holds more than the document \
                     size quota of {max} bytes: its changes were not stored"
                ));
                return Ok(());
            }
        };
        self.state
            .inner
            .counters
            .compressed_chunks
            .fetch_add(measured.compressed, Ordering::Relaxed);
        if measured.has_changes {
            self.state.spend_writes(self.user_id, measured.bytes);
        }
        let message = match catch_unwind(|| automerge::sync::Message::decode(data)) {
            Ok(Ok(message)) => message,
            _ => return Err(protocol_error("`data` is not an Automerge sync message")),
        };
        match self
            .state
            .sync_from_peer(&link, id, &document_id, message, measured.bytes)
            .await
        {
            Ok(Opened::Yes) => {
                self.open.insert(id);
                Ok(())
            }
            Ok(Opened::Unavailable) => Ok(()),
            Err(Fatal::Storage(e)) => {
                tracing::error!(document = %id, error = %e, "sync storage failed");
                Err(End::Error(
                    "the server could not load or store the document; try again later".to_owned(),
                    close_code::ERROR,
                ))
            }
            Err(Fatal::BadSyncMessage) => Err(protocol_error(
                "the Automerge sync message could not be applied",
            )),
        }
    }

    async fn cleanup(&mut self) {
        self.state.unsubscribe(self.conn, self.open.drain()).await;
        if let Some(peer_id) = &self.peer_id {
            let mut peers = self.state.inner.peers.lock();
            if peers.get(peer_id).is_some_and(|e| e.conn == self.conn) {
                peers.remove(peer_id);
            }
        }
    }

    /// Says why (an `error` message and/or a close frame), then waits briefly for the peer's
    /// close so that what we sent is not lost to a reset.
    async fn finish(&self, socket: &mut WebSocket, end: End) {
        let (code, reason) = match end {
            End::Gone => return,
            End::Close(code, reason) => (code, reason),
            End::Error(text, code) => {
                self.state
                    .inner
                    .counters
                    .refused_connections
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(error = %text, "closing a sync connection with an error");
                let error = Message::Error {
                    message: text,
                    sender_id: Some(self.state.peer_id().to_owned()),
                    target_id: self.peer_id.clone(),
                };
                let frame = WsMessage::Binary(Bytes::from(encode(&error)));
                if self.write(socket, frame).await.is_err() {
                    return;
                }
                (code, "protocol error")
            }
        };
        let close = WsMessage::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }));
        if self.write(socket, close).await.is_err() {
            return;
        }
        let _ = timeout(CLOSE_WAIT, async {
            while let Some(Ok(_)) = socket.recv().await {}
        })
        .await;
    }
}

/// A token bucket: `burst` frames at once, refilled at `rate` per second.
struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            tokens: burst,
            rate: f64::from(rate),
            burst,
            last: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
