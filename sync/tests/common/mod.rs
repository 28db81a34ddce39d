//! A sync server started in-process on port 0, users with sync tickets, the crate's own client
//! (`atiende_sync::client`) and what the tests check with it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use atiende_core::auth::{self, Hashing, NewUser, Password, Registration, User};
use atiende_core::types::{DocumentType, Role};
// The client as the tests use it; each test binary uses part of it.
#[allow(unused_imports)]
pub use atiende_sync::client::{
    Client, Connection, PATIENCE, Peer, Received, get_str, join, new_peer_id,
};
use atiende_sync::{DocumentId, Message, SyncSettings, SyncState};
use automerge::AutoCommit;
use automerge::sync;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

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
        atiende_sync::client::sync_url(self.addr, ticket)
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

/// A connection that has joined as `peer_id`, and the server's peer id.
pub async fn joined(server: &Server, token: &str, peer_id: &str) -> (Connection, String) {
    let mut socket = Connection::connect(server.url(token))
        .await
        .expect("connect");
    let server_id = socket.join(peer_id, PATIENCE).await.expect("peer");
    (socket, server_id)
}

/// Reads frames until an `error` message and the end of the connection arrive (in that order).
pub async fn expect_error_and_close(socket: &mut Connection) -> String {
    let text = match socket.receive(PATIENCE).await {
        Received::Message(Message::Error { message, .. }) => message,
        other => panic!("expected an `error` message, got {other:?}"),
    };
    match socket.receive(PATIENCE).await {
        Received::Closed(_) | Received::Lost(_) => {}
        other => panic!("expected the connection to close, got {other:?}"),
    }
    text
}

pub fn put(doc: &mut AutoCommit, key: &str, value: &str) {
    use automerge::transaction::Transactable;
    doc.put(automerge::ROOT, key, value).expect("put");
}

/// Forgets that the server said it is read-only for us, as a client built on an older
/// Automerge (automerge-repo 2.x ships one) does: such a client sends its changes anyway.
///
/// It also forgets which changes the server said it has, so that our next message carries
/// every change for certain: otherwise a bloom filter false positive (Automerge accepts
/// about 1%) makes us send only our heads, and a read-only server never asks for the
/// missing change, so the test would wait for an `error` that never comes.
pub fn ignore_read_only_flag(client: &mut Client, id: DocumentId) {
    let state = client.sync_state(id);
    state.peer_read_only = false;
    state.their_have = Some(vec![sync::Have {
        last_sync: Vec::new(),
        bloom: sync::BloomFilter::default(),
    }]);
    state.sent_hashes.clear();
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
