//! A sync frame of a couple of MiB whose compressed change chunk inflates to gigabytes, sent to the
//! real `atiende` binary by a writer and by a read-only peer: each is answered with an `error`,
//! and the process's peak resident memory (VmHWM in /proc, which no allocator can hide) does not
//! move, because the chunk is measured under the document size quota before Automerge sees it.

mod common;

use std::io::Write;

use atiende_sync::{DocumentId, DocumentKind, Message, Mode, PROTOCOL_V1, decode, encode, storage};
use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{AutoCommit, ReadDoc};
use common::{Atiende, PATIENCE, technician_with_ticket};
use futures_util::{SinkExt, StreamExt};
use sqlx::PgPool;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// What the bomb claims to inflate to.
const BOMB: usize = 2 << 30;
/// How much the server's peak memory may grow while refusing it: generous, and far below the
/// bomb (or the 64 MiB quota it would be inflated to without a sink).
const PEAK_GROWTH: u64 = 48 << 20;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One joined peer with its copy of the document.
struct Device {
    socket: Socket,
    peer_id: String,
    server_id: String,
    id: DocumentId,
    doc: AutoCommit,
    state: sync::State,
}

impl Device {
    async fn open(addr: &str, token: &str, id: DocumentId) -> Device {
        let url = format!("ws://{addr}/api/v1/sync?ticket={token}");
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect");
        let mut device = Device {
            socket,
            peer_id: format!("phone-{}", uuid::Uuid::new_v4()),
            server_id: String::new(),
            id,
            doc: AutoCommit::new(),
            state: sync::State::new(),
        };
        device
            .send(&Message::Join {
                sender_id: device.peer_id.clone(),
                supported_protocol_versions: vec![PROTOCOL_V1.to_owned()],
                peer_metadata: None,
            })
            .await;
        device.server_id = match device.next().await {
            Some(Message::Peer { sender_id, .. }) => sender_id,
            other => panic!("expected `peer`, got {other:?}"),
        };
        let data = device.sync_data().expect("first sync message");
        device
            .send(&Message::Request {
                sender_id: device.peer_id.clone(),
                target_id: device.server_id.clone(),
                document_id: id.to_string(),
                data,
            })
            .await;
        device
            .sync_until(|d| d.get(automerge::ROOT, "status").ok().flatten().is_some())
            .await;
        device
    }

    /// Answers the server until `done` holds and the server has our heads.
    async fn sync_until(&mut self, done: impl Fn(&AutoCommit) -> bool) {
        while let Some(message) = self.next().await {
            let Message::Sync { data, .. } = message else {
                continue;
            };
            let message = sync::Message::decode(&data).expect("sync message");
            self.doc
                .sync()
                .receive_sync_message(&mut self.state, message)
                .expect("apply");
            if let Some(data) = self.sync_data() {
                self.send(&self.sync(data)).await;
            }
            let ours = self.doc.get_heads();
            if done(&self.doc) && self.state.their_heads.as_ref() == Some(&ours) {
                return;
            }
        }
        panic!("the document never reached the expected state");
    }

    fn sync_data(&mut self) -> Option<Vec<u8>> {
        self.doc
            .sync()
            .generate_sync_message(&mut self.state)
            .map(|m| m.encode())
    }

    fn sync(&self, data: Vec<u8>) -> Message {
        Message::Sync {
            sender_id: self.peer_id.clone(),
            target_id: self.server_id.clone(),
            document_id: self.id.to_string(),
            data,
        }
    }

    async fn send(&mut self, message: &Message) {
        self.socket
            .send(WsMessage::Binary(encode(message).into()))
            .await
            .expect("send");
    }

    async fn next(&mut self) -> Option<Message> {
        loop {
            match tokio::time::timeout(PATIENCE, self.socket.next()).await {
                Ok(Some(Ok(WsMessage::Binary(bytes)))) => {
                    return Some(decode(&bytes).expect("server frames decode"));
                }
                Ok(Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_)))) => {}
                _ => return None,
            }
        }
    }
}

/// A sync message whose one change is a compressed change chunk of `inflated` zero bytes.
fn bomb(inflated: usize) -> Vec<u8> {
    let mut deflate = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    let block = vec![0u8; 1 << 20];
    for _ in 0..inflated / block.len() {
        deflate.write_all(&block).expect("deflate");
    }
    let data = deflate.finish().expect("deflate");
    let mut chunk = vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3, 4, 2];
    leb(&mut chunk, data.len());
    chunk.extend_from_slice(&data);
    // Type, no heads, no need, no have, one change entry.
    let mut message = vec![0x42, 0, 0, 0, 1];
    leb(&mut message, chunk.len());
    message.extend_from_slice(&chunk);
    message
}

fn leb(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_deflate_bomb_is_refused_and_memory_does_not_move(pool: PgPool) {
    let (writer, writer_token) = technician_with_ticket(&pool, "ana@example.com").await;
    let (reader, reader_token) = technician_with_ticket(&pool, "luis@example.com").await;
    let id = storage::create_document(
        &pool,
        DocumentKind::FieldReport,
        &[(writer.id, Mode::Write), (reader.id, Mode::Read)],
        |doc| {
            doc.put(automerge::ROOT, "status", "in_progress")?;
            Ok(())
        },
    )
    .await
    .expect("document");
    let frame = bomb(BOMB);
    assert!(
        frame.len() < 4 << 20,
        "a small frame: {} bytes",
        frame.len()
    );

    let dir = std::env::temp_dir().join(format!("atiende-bomb-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let server = Atiende::start(&pool, &dir.join("atiende.log"));

    for token in [&writer_token, &reader_token] {
        let mut device = Device::open(&server.addr, token, id).await;
        let before = server.peak_memory();
        let message = device.sync(frame.clone());
        device.send(&message).await;
        let text = loop {
            match device.next().await {
                Some(Message::Error { message, .. }) => break message,
                Some(_) => {}
                None => panic!("no `error` for the bomb"),
            }
        };
        assert!(text.contains("size quota"), "{text}");
        let after = server.peak_memory();
        eprintln!(
            "frame {} bytes claiming {BOMB}: peak memory {before} -> {after} bytes (+{})",
            frame.len(),
            after.saturating_sub(before)
        );
        assert!(
            after.saturating_sub(before) < PEAK_GROWTH,
            "peak memory grew from {before} to {after} bytes"
        );
    }

    // The server is alive and the writer's changes are stored as before.
    let mut device = Device::open(&server.addr, &writer_token, id).await;
    device
        .doc
        .put(automerge::ROOT, "status", "completed")
        .expect("put");
    device.doc.commit();
    let data = device.sync_data().expect("sync message");
    device.send(&device.sync(data)).await;
    device
        .sync_until(|d| {
            d.get(automerge::ROOT, "status")
                .ok()
                .flatten()
                .and_then(|(v, _)| v.into_string().ok())
                .as_deref()
                == Some("completed")
        })
        .await;
    let stored = storage::load(&pool, id)
        .await
        .expect("load")
        .expect("document");
    let status = stored.doc.get(automerge::ROOT, "status").expect("get");
    assert_eq!(
        status.and_then(|(v, _)| v.into_string().ok()).as_deref(),
        Some("completed")
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
