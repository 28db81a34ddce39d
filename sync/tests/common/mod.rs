//! A sync server started in-process on port 0, users with sync tickets, and a protocol client
//! built from our own codec and the `automerge` crate, talking over tokio-tungstenite.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use atiende_core::auth::{self, Hashing, NewUser, Password, Registration, User};
use atiende_core::types::{DocumentType, Role};
use atiende_sync::{DocumentId, Message, PROTOCOL_V1, SyncSettings, SyncState, decode, encode};
use automerge::sync::{self, SyncDoc};
use automerge::{AutoCommit, ReadDoc};
use futures_util::{SinkExt, StreamExt};
use sqlx::PgPool;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A field report document created by the server with `status: scheduled`.
pub async fn report(server: &Server, access: &[(uuid::Uuid, atiende_sync::Mode)]) -> DocumentId {
    server
        .state
        .create_document(atiende_sync::DocumentKind::FieldReport, access, |doc| {
            automerge::transaction::Transactable::put(doc, automerge::ROOT, "status", "scheduled")?;
            Ok(())
        })
        .await
        .expect("create document")
}

/// A text field of the document as stored in PostgreSQL.
pub async fn stored_str(pool: &PgPool, id: DocumentId, key: &str) -> Option<String> {
    let stored = atiende_sync::storage::load(pool, id)
        .await
        .expect("load")
        .expect("document exists");
    get_str(&stored.doc, key)
}

/// How long a test waits for something that should happen promptly: a deadline, never a
/// duration the test relies on, so it is generous enough for a loaded 2-core machine running
/// the whole suite (tests that pass return as soon as their condition holds).
pub const PATIENCE: Duration = Duration::from_secs(30);

pub struct Server {
    pub addr: SocketAddr,
    pub state: SyncState,
    task: JoinHandle<()>,
}

impl Server {
    pub async fn start(pool: PgPool) -> Server {
        Server::start_with(pool, SyncSettings::default()).await
    }

    pub async fn start_with(pool: PgPool, settings: SyncSettings) -> Server {
        let state = SyncState::new(pool, settings).await.expect("sync state");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let app = atiende_sync::router(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Server { addr, state, task }
    }

    /// The sync URL with a ticket, as `POST /api/v1/sync/ticket` gives it.
    pub fn url(&self, ticket: &str) -> String {
        format!("ws://{}/api/v1/sync?ticket={ticket}", self.addr)
    }

    /// Closes every connection, then stops accepting.
    pub async fn stop(self) {
        self.state.shutdown(Duration::from_secs(5)).await;
        self.task.abort();
        let _ = self.task.await;
    }
}

/// A new session of the user: its bearer token and a sync ticket for it.
pub async fn session_for(pool: &PgPool, user: &User) -> (String, String) {
    let token = auth::start_session(pool, user.id, Duration::from_secs(3600))
        .await
        .expect("session")
        .token;
    let ticket = atiende_core::sync_tickets::issue(pool, &token, Duration::from_secs(3600))
        .await
        .expect("sync ticket")
        .ticket;
    (token, ticket)
}

/// A sync ticket of a new session of the user: what opens a socket.
pub async fn token_for(pool: &PgPool, user: &User) -> String {
    session_for(pool, user).await.1
}

pub async fn staff(pool: &PgPool, email: &str, role: Role) -> (User, String) {
    let user = auth::create_user(
        pool,
        &Hashing::default(),
        NewUser {
            email: email.to_owned(),
            name: email.split('@').next().unwrap_or("x").to_owned(),
            role,
            password: Password::parse("correct horse battery".to_owned()).expect("password"),
            customer_id: None,
            language: "es".to_owned(),
        },
    )
    .await
    .expect("user");
    let token = token_for(pool, &user).await;
    (user, token)
}

pub async fn technician(pool: &PgPool, email: &str) -> (User, String) {
    staff(pool, email, Role::Technician).await
}

pub async fn customer(pool: &PgPool, email: &str, document_number: &str) -> (User, String) {
    let user = auth::register_customer(
        pool,
        &Hashing::default(),
        Registration {
            email: email.to_owned(),
            password: Password::parse("correct horse battery".to_owned()).expect("password"),
            name: "Cliente".to_owned(),
            phone: None,
            document_type: DocumentType::Cc,
            document_number: document_number.to_owned(),
            accept_data_policy: true,
            language: "es".to_owned(),
        },
        "app",
    )
    .await
    .expect("customer");
    let token = token_for(pool, &user).await;
    (user, token)
}

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What arrived on a socket.
#[derive(Debug)]
pub enum Received {
    Message(Message),
    Closed(Option<CloseFrame>),
    Nothing,
}

pub async fn connect_raw(url: &str) -> Socket {
    let (socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    socket
}

pub async fn receive(socket: &mut Socket, within: Duration) -> Received {
    // One deadline for the call: the server's keepalive pings must not extend it.
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let next = tokio::time::timeout_at(deadline, socket.next()).await;
        match next {
            Err(_) => return Received::Nothing,
            Ok(None) => return Received::Closed(None),
            Ok(Some(Err(_))) => return Received::Closed(None),
            Ok(Some(Ok(WsMessage::Binary(bytes)))) => {
                return Received::Message(decode(&bytes).expect("server frames decode"));
            }
            Ok(Some(Ok(WsMessage::Close(frame)))) => return Received::Closed(frame),
            Ok(Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_)))) => {}
            Ok(Some(Ok(other))) => panic!("unexpected frame {other:?}"),
        }
    }
}

pub fn join(peer_id: &str) -> Message {
    Message::Join {
        sender_id: peer_id.to_owned(),
        supported_protocol_versions: vec![PROTOCOL_V1.to_owned()],
        peer_metadata: None,
    }
}

pub fn new_peer_id() -> String {
    format!("test-{}", uuid::Uuid::new_v4())
}

/// A protocol client holding its own copies of the documents it opened.
pub struct Client {
    pub socket: Socket,
    pub peer_id: String,
    pub server_id: String,
    pub docs: HashMap<DocumentId, (AutoCommit, sync::State)>,
    /// Messages other than `sync` that arrived while syncing, oldest first.
    pub inbox: VecDeque<Message>,
    pub closed: Option<Option<CloseFrame>>,
}

impl Client {
    pub async fn connect(server: &Server, token: &str) -> Client {
        Client::connect_as(server, token, &new_peer_id()).await
    }

    pub async fn connect_as(server: &Server, token: &str, peer_id: &str) -> Client {
        let mut socket = connect_raw(&server.url(token)).await;
        send(&mut socket, &join(peer_id)).await;
        let Received::Message(Message::Peer { sender_id, .. }) =
            receive(&mut socket, PATIENCE).await
        else {
            panic!("no `peer` answer");
        };
        Client {
            socket,
            peer_id: peer_id.to_owned(),
            server_id: sender_id,
            docs: HashMap::new(),
            inbox: VecDeque::new(),
            closed: None,
        }
    }

    pub async fn send(&mut self, message: &Message) {
        send(&mut self.socket, message).await;
    }

    /// Starts syncing a document we do not have, as automerge-repo's `find` does.
    pub async fn request(&mut self, id: DocumentId) {
        let mut doc = AutoCommit::new();
        let mut state = sync::State::new();
        let data = doc
            .sync()
            .generate_sync_message(&mut state)
            .expect("first sync message")
            .encode();
        self.docs.insert(id, (doc, state));
        let message = Message::Request {
            sender_id: self.peer_id.clone(),
            target_id: self.server_id.clone(),
            document_id: id.to_string(),
            data,
        };
        self.send(&message).await;
    }

    /// Sends our next sync message for the document, if there is one.
    pub async fn push(&mut self, id: DocumentId) {
        let (doc, state) = self.docs.get_mut(&id).expect("document opened");
        let next = doc.sync().generate_sync_message(state);
        if let Some(message) = next {
            let message = Message::Sync {
                sender_id: self.peer_id.clone(),
                target_id: self.server_id.clone(),
                document_id: id.to_string(),
                data: message.encode(),
            };
            self.send(&message).await;
        }
    }

    /// Edits our copy and sends the change.
    pub async fn change(&mut self, id: DocumentId, edit: impl FnOnce(&mut AutoCommit)) {
        let (doc, _) = self.docs.get_mut(&id).expect("document opened");
        edit(doc);
        doc.commit();
        self.push(id).await;
    }

    /// Handles one incoming message (answering sync messages); false when nothing came within
    /// `within` or the socket closed.
    pub async fn step(&mut self, within: Duration) -> bool {
        match receive(&mut self.socket, within).await {
            Received::Message(Message::Sync {
                document_id, data, ..
            }) => {
                let id = DocumentId::parse(&document_id).expect("document id");
                let (doc, state) = self.docs.get_mut(&id).expect("document opened");
                let message = sync::Message::decode(&data).expect("sync message");
                doc.sync()
                    .receive_sync_message(state, message)
                    .expect("apply sync message");
                self.push(id).await;
                true
            }
            Received::Message(other) => {
                self.inbox.push_back(other);
                true
            }
            Received::Closed(frame) => {
                self.closed = Some(frame);
                false
            }
            Received::Nothing => false,
        }
    }

    /// Syncs until nothing arrives for `quiet`.
    pub async fn settle(&mut self, quiet: Duration) {
        while self.step(quiet).await {}
    }

    /// [`Self::wait_until`] while `other` keeps answering the server too, as a real client
    /// does: when a bloom filter false positive makes the server miss a change, it asks the
    /// sender for it, and a sender that is not listening would stall the test.
    pub async fn wait_until_with(
        &mut self,
        other: &mut Client,
        id: DocumentId,
        done: impl Fn(&AutoCommit) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some((doc, _)) = self.docs.get(&id)
                && done(doc)
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: document never reached the expected state",
                self.peer_id
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

    /// Syncs until our copy of the document satisfies `done`.
    pub async fn wait_until(&mut self, id: DocumentId, done: impl Fn(&AutoCommit) -> bool) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some((doc, _)) = self.docs.get(&id)
                && done(doc)
            {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                let (doc, state) = self.docs.get(&id).expect("document opened");
                let keys: Vec<String> = doc.keys(automerge::ROOT).collect();
                panic!(
                    "{}: document never reached the expected state; keys {keys:?}, inbox {:?}, \
                     sync state {state:?}",
                    self.peer_id, self.inbox
                );
            }
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
                self.peer_id,
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
                    self.peer_id,
                    self.closed
                );
            }
        }
    }

    /// Forgets that the server said it is read-only for us, as a client built on an older
    /// Automerge (automerge-repo 2.x ships one) does: such a client sends its changes anyway.
    ///
    /// It also forgets which changes the server said it has, so that our next message carries
    /// every change for certain: otherwise a bloom filter false positive (Automerge accepts
    /// about 1%) makes us send only our heads, and a read-only server never asks for the
    /// missing change, so the test would wait for an `error` that never comes.
    pub fn ignore_read_only_flag(&mut self, id: DocumentId) {
        let state = &mut self.docs.get_mut(&id).expect("document opened").1;
        state.peer_read_only = false;
        state.their_have = Some(vec![sync::Have {
            last_sync: Vec::new(),
            bloom: sync::BloomFilter::default(),
        }]);
        state.sent_hashes.clear();
    }

    pub fn doc(&mut self, id: DocumentId) -> &mut AutoCommit {
        &mut self.docs.get_mut(&id).expect("document opened").0
    }
}

pub async fn send(socket: &mut Socket, message: &Message) {
    send_bytes(socket, encode(message)).await;
}

pub async fn send_bytes(socket: &mut Socket, bytes: Vec<u8>) {
    socket
        .send(WsMessage::Binary(bytes.into()))
        .await
        .expect("send");
}

/// Reads frames until an `error` message and a close frame arrive (in that order).
pub async fn expect_error_and_close(socket: &mut Socket) -> String {
    let text = match receive(socket, PATIENCE).await {
        Received::Message(Message::Error { message, .. }) => message,
        other => panic!("expected an `error` message, got {other:?}"),
    };
    match receive(socket, PATIENCE).await {
        Received::Closed(_) => {}
        other => panic!("expected the connection to close, got {other:?}"),
    }
    text
}

/// A string field, whether a plain string (as Rust writes them) or a text object (as
/// JavaScript's Automerge 3 writes them).
pub fn get_str(doc: &AutoCommit, key: &str) -> Option<String> {
    match doc.get(automerge::ROOT, key) {
        Ok(Some((automerge::Value::Object(automerge::ObjType::Text), obj))) => doc.text(&obj).ok(),
        Ok(Some((value, _))) => value.as_str().map(str::to_owned),
        _ => None,
    }
}

pub fn put(doc: &mut AutoCommit, key: &str, value: &str) {
    use automerge::transaction::Transactable;
    doc.put(automerge::ROOT, key, value).expect("put");
}

pub fn is_close_error(e: &tungstenite::Error) -> bool {
    matches!(
        e,
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed
    )
}

/// The next binary frame, undecoded.
pub async fn receive_frame(socket: &mut Socket) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(WsMessage::Binary(bytes)))) => return bytes.to_vec(),
            Ok(Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_)))) => {}
            other => panic!("expected a binary frame, got {other:?}"),
        }
    }
}

/// A joined socket and the server's peer id.
pub async fn joined(server: &Server, token: &str, peer_id: &str) -> (Socket, String) {
    let mut socket = connect_raw(&server.url(token)).await;
    send(&mut socket, &join(peer_id)).await;
    match receive(&mut socket, PATIENCE).await {
        Received::Message(Message::Peer { sender_id, .. }) => (socket, sender_id),
        other => panic!("no `peer` answer: {other:?}"),
    }
}

/// What `read` gives once `done` holds for it (or what it gives after [`PATIENCE`]): the server
/// stores a change on its own time, which a busy machine stretches.
async fn once<T, F: std::future::Future<Output = T>>(
    mut read: impl FnMut() -> F,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let value = read().await;
        if done(&value) || tokio::time::Instant::now() >= deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The stored document's text at `key` once it reads `expected`.
pub async fn stored_once(
    pool: &PgPool,
    id: DocumentId,
    key: &str,
    expected: &str,
) -> Option<String> {
    once(
        || stored_str(pool, id, key),
        |v| v.as_deref() == Some(expected),
    )
    .await
}

/// The document's change rows once there are at least `expected`.
pub async fn rows_once_stored(pool: &PgPool, id: DocumentId, expected: i64) -> i64 {
    once(|| change_rows(pool, id), |&rows| rows >= expected).await
}

pub async fn change_rows(pool: &PgPool, id: DocumentId) -> i64 {
    sqlx::query_scalar!(
        r#"select count(*) as "n!" from sync_changes where document_id = $1"#,
        id.to_string()
    )
    .fetch_one(pool)
    .await
    .expect("count change rows")
}

/// A server's background job (the listener, the janitor) running until stopped.
pub struct Job {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Job {
    /// Asks the job to stop and waits until it has.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.expect("job ended cleanly");
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn spawn_job<F>(run: impl FnOnce(tokio::sync::oneshot::Receiver<()>) -> F) -> Job
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    Job {
        stop: Some(stop),
        task: tokio::spawn(run(stopped)),
    }
}

/// [`SyncState::run_listener`], as the server process runs it.
pub fn spawn_listener(state: &SyncState) -> Job {
    let state = state.clone();
    spawn_job(|stopped| async move {
        state
            .run_listener(async {
                let _ = stopped.await;
            })
            .await;
    })
}

/// [`SyncState::run_janitor`], as the server process runs it.
pub fn spawn_janitor(state: &SyncState) -> Job {
    let state = state.clone();
    spawn_job(|stopped| async move {
        state
            .run_janitor(async {
                let _ = stopped.await;
            })
            .await;
    })
}

/// The close code a client sees when its session ends.
pub const SESSION_ENDED: u16 = 4401;

pub fn closed_for_session(client: &Client) -> bool {
    matches!(&client.closed, Some(Some(frame)) if u16::from(frame.code) == SESSION_ENDED)
}

/// Steps the client until the server closes it with 4401, or fails after the patience.
pub async fn wait_for_session_close(client: &mut Client) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while client.closed.is_none() && tokio::time::Instant::now() < deadline {
        client.step(Duration::from_millis(100)).await;
    }
    assert!(
        closed_for_session(client),
        "expected a 4401 close, got {:?}",
        client.closed
    );
}
