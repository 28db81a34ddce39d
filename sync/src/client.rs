//! A Rust peer of our own sync protocol, built from [`crate::protocol`] and the `automerge`
//! crate: what the tests and the `bench-sync` benchmark use to play phones and tablets against
//! the server (feature `client`).
//!
//! - [`Connection`]: the socket, protocol messages in and out, raw frames for hostile peers,
//!   and [`Connection::split`] for a device that reads while another task writes.
//! - [`Peer`]: the documents and their Automerge sync states, without the socket; it only
//!   builds the messages to send and applies those that arrive.
//! - [`Client`]: both together, for tests: connect and join, request a document, change it,
//!   wait for a state. It panics with what it saw instead of returning errors, so that a test
//!   that fails says why.

mod connection;
mod peer;

use std::collections::VecDeque;
use std::fmt::Display;
use std::time::Duration;

use automerge::sync;
use automerge::{AutoCommit, ReadDoc};

pub use connection::{Connection, Received, Receiver, Sender};
pub use peer::{Peer, Replica};
pub use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use crate::DocumentId;
use crate::protocol::{Message, PROTOCOL_V1};

/// How long a [`Client`] waits for something that should happen promptly: a deadline, never a
/// duration anything relies on, so it is generous enough for a loaded 2-core machine running a
/// whole test suite (a wait whose condition holds returns at once).
pub const PATIENCE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    WebSocket(#[from] tungstenite::Error),
    #[error("no `peer` answer to `join`: {0}")]
    NotJoined(String),
    #[error("document {0} is not open")]
    NotOpen(DocumentId),
    #[error("sync data: {0}")]
    SyncData(sync::ReadMessageError),
    #[error("applying sync data: {0}")]
    Apply(automerge::AutomergeError),
}

/// The sync URL of the server at `addr` with a ticket, as `POST /api/v1/sync/ticket` gives it.
pub fn sync_url(addr: impl Display, ticket: &str) -> String {
    format!("ws://{addr}/api/v1/sync?ticket={ticket}")
}

/// The first message of a peer.
pub fn join(peer_id: &str) -> Message {
    Message::Join {
        sender_id: peer_id.to_owned(),
        supported_protocol_versions: vec![PROTOCOL_V1.to_owned()],
        peer_metadata: None,
    }
}

pub fn new_peer_id() -> String {
    format!("peer-{}", uuid::Uuid::new_v4())
}

/// A string field at the document's root, whether a plain string (as Rust writes them) or a
/// text object (as JavaScript's Automerge 3 writes them).
pub fn get_str(doc: &AutoCommit, key: &str) -> Option<String> {
    match doc.get(automerge::ROOT, key) {
        Ok(Some((automerge::Value::Object(automerge::ObjType::Text), obj))) => doc.text(&obj).ok(),
        Ok(Some((value, _))) => value.as_str().map(str::to_owned),
        _ => None,
    }
}

/// A joined peer on its connection, for tests: it answers the server's sync messages as it
/// reads them, keeps the other messages in [`Self::inbox`] and panics on anything it cannot
/// go on from.
pub struct Client {
    pub connection: Connection,
    pub peer: Peer,
    /// Messages other than `sync` that arrived while syncing, oldest first.
    pub inbox: VecDeque<Message>,
    /// Set when the connection ended: the server's close frame, if it sent one.
    pub closed: Option<Option<CloseFrame>>,
}

impl Client {
    /// Connects to `url` (the sync URL with its ticket) and joins as a new peer.
    pub async fn connect(url: &str) -> Client {
        Client::connect_as(url, &new_peer_id()).await
    }

    pub async fn connect_as(url: &str, peer_id: &str) -> Client {
        let mut connection = Connection::connect(url).await.expect("connect");
        let server_id = connection
            .join(peer_id, PATIENCE)
            .await
            .expect("a `peer` answer");
        let mut peer = Peer::new(peer_id);
        peer.joined(server_id);
        Client {
            connection,
            peer,
            inbox: VecDeque::new(),
            closed: None,
        }
    }

    pub fn peer_id(&self) -> &str {
        self.peer.id()
    }

    pub fn server_id(&self) -> &str {
        self.peer.server_id().unwrap_or_default()
    }

    pub async fn send(&mut self, message: &Message) {
        let sent = self.connection.send(message).await;
        sent.expect("send");
    }

    /// Starts syncing a document we do not have, as automerge-repo's `find` does.
    pub async fn request(&mut self, id: DocumentId) {
        let message = self.peer.open(id, AutoCommit::new());
        self.send(&message.expect("a first sync message")).await;
    }

    /// Sends our next sync message for the document, if there is one.
    pub async fn push(&mut self, id: DocumentId) {
        assert!(self.peer.replica(id).is_some(), "document {id} not open");
        if let Some(message) = self.peer.sync_message(id) {
            self.send(&message).await;
        }
    }

    /// Edits our copy and sends the change.
    pub async fn change(&mut self, id: DocumentId, edit: impl FnOnce(&mut AutoCommit)) {
        let doc = self.doc(id);
        edit(doc);
        doc.commit();
        self.push(id).await;
    }

    /// Handles one incoming message (answering sync messages); false when nothing came within
    /// `within` or the connection ended.
    pub async fn step(&mut self, within: Duration) -> bool {
        match self.connection.receive(within).await {
            Received::Message(Message::Sync {
                document_id, data, ..
            }) => {
                let id = DocumentId::parse(&document_id).expect("document id");
                let answer = self.peer.receive_sync(id, &data);
                if let Some(answer) = answer.expect("apply the server's sync message") {
                    self.send(&answer).await;
                }
                true
            }
            Received::Message(other) => {
                self.inbox.push_back(other);
                true
            }
            Received::Undecodable(e) => panic!("{}: undecodable frame: {e}", self.peer_id()),
            Received::Text(text) => panic!("{}: unexpected text frame {text:?}", self.peer_id()),
            Received::Closed(frame) => {
                self.closed.get_or_insert(frame);
                false
            }
            Received::Lost(_) => {
                self.closed.get_or_insert(None);
                false
            }
            Received::Nothing => false,
        }
    }

    /// Syncs until nothing arrives for `quiet`.
    pub async fn settle(&mut self, quiet: Duration) {
        while self.step(quiet).await {}
    }

    /// Syncs until our copy of the document satisfies `done` (true), [`PATIENCE`] runs out or
    /// the connection ends (false).
    pub async fn reaches(&mut self, id: DocumentId, done: impl Fn(&AutoCommit) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if self.peer.replica(id).is_some_and(|r| done(&r.doc)) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            if !self.step(Duration::from_millis(200)).await && self.closed.is_some() {
                return false;
            }
        }
    }

    /// [`Self::reaches`], or a panic that shows what we have.
    pub async fn wait_until(&mut self, id: DocumentId, done: impl Fn(&AutoCommit) -> bool) {
        if self.reaches(id, done).await {
            return;
        }
        let replica = self.peer.replica(id).expect("document opened");
        let keys: Vec<String> = replica.doc.keys(automerge::ROOT).collect();
        panic!(
            "{}: document never reached the expected state; closed {:?}, keys {keys:?}, \
             inbox {:?}, sync state {:?}",
            self.peer_id(),
            self.closed,
            self.inbox,
            replica.state
        );
    }

    /// [`Self::wait_until`] while `other` keeps answering the server too, as a real client
    /// does: when a bloom filter false positive makes the server miss a change, it asks the
    /// sender for it, and a sender that is not listening would stall the wait.
    pub async fn wait_until_with(
        &mut self,
        other: &mut Client,
        id: DocumentId,
        done: impl Fn(&AutoCommit) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if self.peer.replica(id).is_some_and(|r| done(&r.doc)) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: document never reached the expected state",
                self.peer_id()
            );
            self.step(Duration::from_millis(20)).await;
            other.step(Duration::from_millis(20)).await;
            assert!(
                self.closed.is_none(),
                "connection closed: {:?}",
                self.closed
            );
        }
    }

    /// Syncs until the server's heads for the document are ours: it has stored every change
    /// we made.
    pub async fn wait_acknowledged(&mut self, id: DocumentId) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !self.peer.in_sync(id) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: the server never acknowledged our changes",
                self.peer_id()
            );
            if !self.step(Duration::from_millis(200)).await {
                assert!(
                    self.closed.is_none(),
                    "connection closed: {:?}",
                    self.closed
                );
            }
        }
    }

    /// Waits for a message other than `sync`.
    pub async fn next_other(&mut self) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.inbox.is_empty() && tokio::time::Instant::now() < deadline {
            if !self.step(Duration::from_millis(200)).await && self.closed.is_some() {
                break;
            }
        }
        self.inbox.pop_front()
    }

    /// Waits for an `error` message and returns its text: steps (answering sync messages) until
    /// one arrives, however long a busy machine takes, up to [`PATIENCE`].
    pub async fn next_error(&mut self) -> String {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(at) = self
                .inbox
                .iter()
                .position(|m| matches!(m, Message::Error { .. }))
                && let Some(Message::Error { message, .. }) = self.inbox.remove(at)
            {
                return message;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: no `error` message; inbox {:?}, closed {:?}",
                self.peer_id(),
                self.inbox,
                self.closed
            );
            if !self.step(Duration::from_millis(200)).await && self.closed.is_some() {
                // The error comes before the close frame: it is in the inbox or never came.
                assert!(
                    self.inbox
                        .iter()
                        .any(|m| matches!(m, Message::Error { .. })),
                    "{}: closed without an `error`: {:?}",
                    self.peer_id(),
                    self.closed
                );
            }
        }
    }

    /// Our copy of the document.
    pub fn doc(&mut self, id: DocumentId) -> &mut AutoCommit {
        &mut self.replica(id).doc
    }

    /// What we know of the server's copy of the document.
    pub fn sync_state(&mut self, id: DocumentId) -> &mut sync::State {
        &mut self.replica(id).state
    }

    fn replica(&mut self, id: DocumentId) -> &mut Replica {
        let replica = self.peer.replica_mut(id);
        replica.unwrap_or_else(|| panic!("document {id} not open"))
    }
}
