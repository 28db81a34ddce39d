//! The `atiende` binary killed with SIGKILL in the middle of a stream of sync changes keeps every
//! change it acknowledged: after a restart on the same database, a device syncing again gets all
//! of them, and they are in `sync_changes`/`sync_snapshots`.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use atiende_sync::{DocumentId, DocumentKind, Message, Mode, PROTOCOL_V1, decode, encode, storage};
use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{AutoCommit, ChangeHash, ReadDoc};
use common::{Atiende, PATIENCE};
use futures_util::{SinkExt, StreamExt};
use sqlx::PgPool;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Changes the device sends at most, one per message: below the server's burst allowance
/// (2,000 frames), so the stream is never cut for flooding.
const CHANGES: usize = 1_500;
/// The server is killed once it has acknowledged this many.
const KILL_AFTER: usize = 200;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A device with its own copy of one document, talking the automerge-repo protocol.
struct Device {
    socket: Socket,
    peer_id: String,
    server_id: String,
    id: DocumentId,
    doc: AutoCommit,
    state: sync::State,
}

impl Device {
    /// Joins and syncs the document until the device has what the server has.
    async fn open(url: &str, id: DocumentId) -> Device {
        let (mut socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect");
        let peer_id = format!("phone-{}", uuid::Uuid::new_v4());
        let join = Message::Join {
            sender_id: peer_id.clone(),
            supported_protocol_versions: vec![PROTOCOL_V1.to_owned()],
            peer_metadata: None,
        };
        socket
            .send(WsMessage::Binary(encode(&join).into()))
            .await
            .expect("send join");
        let server_id = match next_message(&mut socket).await {
            Some(Message::Peer { sender_id, .. }) => sender_id,
            other => panic!("expected `peer`, got {other:?}"),
        };
        let mut device = Device {
            socket,
            peer_id,
            server_id,
            id,
            doc: AutoCommit::new(),
            state: sync::State::new(),
        };
        let data = device.next_sync_data().expect("first sync message");
        let request = Message::Request {
            sender_id: device.peer_id.clone(),
            target_id: device.server_id.clone(),
            document_id: id.to_string(),
            data,
        };
        device.send(&request).await;
        // Synced once the server's heads are ours and nothing is left to say.
        while let Some(message) = next_message(&mut device.socket).await {
            let Message::Sync { data, .. } = message else {
                panic!("expected `sync`, got {message:?}");
            };
            let message = sync::Message::decode(&data).expect("sync message");
            device
                .doc
                .sync()
                .receive_sync_message(&mut device.state, message)
                .expect("apply");
            if let Some(data) = device.next_sync_data() {
                device.send_sync(data).await;
            }
            let ours = device.doc.get_heads();
            if !ours.is_empty() && device.state.their_heads.as_ref() == Some(&ours) {
                return device;
            }
        }
        panic!("the document never arrived");
    }

    fn next_sync_data(&mut self) -> Option<Vec<u8>> {
        self.doc
            .sync()
            .generate_sync_message(&mut self.state)
            .map(|m| m.encode())
    }

    async fn send(&mut self, message: &Message) {
        self.socket
            .send(WsMessage::Binary(encode(message).into()))
            .await
            .expect("send");
    }

    async fn send_sync(&mut self, data: Vec<u8>) {
        let message = self.sync_message(data);
        self.send(&message).await;
    }

    fn sync_message(&self, data: Vec<u8>) -> Message {
        Message::Sync {
            sender_id: self.peer_id.clone(),
            target_id: self.server_id.clone(),
            document_id: self.id.to_string(),
            data,
        }
    }
}

/// The next protocol message, skipping pings; `None` when the socket ends or nothing comes.
async fn next_message(socket: &mut Socket) -> Option<Message> {
    loop {
        match tokio::time::timeout(PATIENCE, socket.next()).await {
            Ok(Some(Ok(WsMessage::Binary(bytes)))) => {
                return Some(decode(&bytes).expect("server frames decode"));
            }
            Ok(Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_)))) => {}
            _ => return None,
        }
    }
}

fn key(n: usize) -> String {
    format!("reading-{n:04}")
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn every_acknowledged_change_survives_kill_9(pool: PgPool) {
    let (user, token) = common::technician_with_ticket(&pool, "tecnico@example.com").await;
    let id = storage::create_document(
        &pool,
        DocumentKind::FieldReport,
        &[(user.id, Mode::Write)],
        |doc| {
            doc.put(automerge::ROOT, "status", "in_progress")?;
            Ok(())
        },
    )
    .await
    .expect("document");
    let dir = std::env::temp_dir().join(format!(
        "atiende-sync-durability-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let log = |name: &str| -> PathBuf { dir.join(name) };

    let mut server = Atiende::start(&pool, &log("first.log"));
    let Device {
        socket,
        peer_id,
        server_id,
        mut doc,
        mut state,
        ..
    } = Device::open(&server.sync_url(&token), id).await;
    let (mut sink, mut stream) = socket.split();

    // Which change each hash is; the server acknowledges a change when the heads in its answer
    // are that change (one writer, so every change follows the one before).
    let numbered: Arc<Mutex<HashMap<ChangeHash, usize>>> = Arc::default();
    let acknowledged = Arc::new(Mutex::new(0usize));
    let reader = {
        let (numbered, acknowledged) = (numbered.clone(), acknowledged.clone());
        tokio::spawn(async move {
            // Until the socket dies with the server, frames already sent before the kill included.
            // No time limit here: a reader that gave up while the device still sends would stop
            // draining the socket, and the sends below would wait for ever behind it.
            while let Some(Ok(frame)) = stream.next().await {
                let WsMessage::Binary(bytes) = frame else {
                    continue;
                };
                let Ok(Message::Sync { data, .. }) = decode(&bytes) else {
                    continue;
                };
                let heads = sync::Message::decode(&data).expect("sync message").heads;
                let numbered = numbered.lock().expect("lock");
                let mut acknowledged = acknowledged.lock().expect("lock");
                for head in heads {
                    if let Some(&n) = numbered.get(&head) {
                        *acknowledged = (*acknowledged).max(n + 1);
                    }
                }
            }
        })
    };

    let mut sent = 0;
    for n in 0..CHANGES {
        doc.put(automerge::ROOT, key(n), n as i64).expect("put");
        doc.commit();
        let head = doc.get_heads()[0];
        numbered.lock().expect("lock").insert(head, n);
        let data = doc
            .sync()
            .generate_sync_message(&mut state)
            .expect("a message for the new change")
            .encode();
        let message = Message::Sync {
            sender_id: peer_id.clone(),
            target_id: server_id.clone(),
            document_id: id.to_string(),
            data,
        };
        let frame = WsMessage::Binary(encode(&message).into());
        match tokio::time::timeout(PATIENCE, sink.send(frame)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break,
            Err(_) => panic!("the server stopped reading after {sent} changes"),
        }
        sent = n + 1;
        if *acknowledged.lock().expect("lock") >= KILL_AFTER {
            break;
        }
        // Let the reader and the socket keep up; the server is still behind.
        tokio::task::yield_now().await;
    }
    // Sending may finish first on a slow machine: the server is still working through them.
    let deadline = Instant::now() + PATIENCE;
    while *acknowledged.lock().expect("lock") < KILL_AFTER.min(sent) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill_9();
    reader.await.expect("reader");
    let acknowledged = *acknowledged.lock().expect("lock");
    assert!(
        acknowledged >= KILL_AFTER.min(sent),
        "only {acknowledged} of {sent} changes acknowledged before the kill"
    );
    eprintln!("killed after {sent} changes sent, {acknowledged} acknowledged");

    // In the database, as stored: snapshot and change rows.
    let stored = storage::load(&pool, id)
        .await
        .expect("load")
        .expect("document");
    for n in 0..acknowledged {
        assert!(
            stored
                .doc
                .get(automerge::ROOT, key(n))
                .expect("get")
                .is_some(),
            "acknowledged change {n} is not stored"
        );
    }

    // And as a device sees it after a restart on the same database.
    let mut server = Atiende::start(&pool, &log("second.log"));
    let mut device = Device::open(&server.sync_url(&token), id).await;
    for n in 0..acknowledged {
        let value = device.doc.get(automerge::ROOT, key(n)).expect("get");
        assert_eq!(
            value.and_then(|(v, _)| v.as_i64()),
            Some(n as i64),
            "acknowledged change {n} is missing after the restart"
        );
    }
    // The restarted server takes new changes as before.
    device
        .doc
        .put(automerge::ROOT, "status", "completed")
        .expect("put");
    device.doc.commit();
    let data = device.next_sync_data().expect("sync message");
    device.send_sync(data).await;
    let ours = device.doc.get_heads();
    loop {
        match next_message(&mut device.socket).await {
            Some(Message::Sync { data, .. }) => {
                let message = sync::Message::decode(&data).expect("sync message");
                if message.heads == ours {
                    break;
                }
            }
            Some(_) => {}
            None => panic!("the restarted server never acknowledged the new change"),
        }
    }
    drop(device);
    server.terminate();
    let _ = std::fs::remove_dir_all(&dir);
}
