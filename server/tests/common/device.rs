//! A device talking the automerge-repo sync protocol to the `atiende` binary: joins, keeps its own
//! copy of one document, and answers the server as a phone does.

use atiende_sync::{DocumentId, Message, PROTOCOL_V1, decode, encode};
use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{AutoCommit, ReadDoc};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::PATIENCE;

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One joined peer with its copy of the document.
pub struct Device {
    pub socket: Socket,
    pub peer_id: String,
    pub server_id: String,
    pub id: DocumentId,
    pub doc: AutoCommit,
    pub state: sync::State,
}

impl Device {
    /// Joins at `url` (the sync URL with its ticket) and syncs the document until the device has
    /// what the server has.
    pub async fn open(url: &str, id: DocumentId) -> Device {
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
            .sync_until(|doc| doc.length(automerge::ROOT) > 0)
            .await;
        device
    }

    /// Answers the server until `done` holds and the server has our heads.
    pub async fn sync_until(&mut self, done: impl Fn(&AutoCommit) -> bool) {
        while let Some(message) = self.next().await {
            if self.apply(message).await && done(&self.doc) {
                return;
            }
        }
        panic!("the document never reached the expected state");
    }

    /// Takes what the server sends, answering as a device does, until `key` reads `value`.
    /// False if that takes longer than [`PATIENCE`] or the socket ends first.
    pub async fn receive_until(&mut self, key: &str, value: &str) -> bool {
        let until = async {
            while text(&self.doc, key).as_deref() != Some(value) {
                let Some(message) = self.next().await else {
                    return false;
                };
                self.apply(message).await;
            }
            true
        };
        tokio::time::timeout(PATIENCE, until).await.unwrap_or(false)
    }

    /// Applies a `sync` message and answers it. True when afterwards the server has our heads.
    async fn apply(&mut self, message: Message) -> bool {
        let Message::Sync { data, .. } = message else {
            return false;
        };
        let message = sync::Message::decode(&data).expect("sync message");
        self.doc
            .sync()
            .receive_sync_message(&mut self.state, message)
            .expect("apply");
        if let Some(data) = self.sync_data() {
            self.send(&self.sync(data)).await;
        }
        self.state.their_heads.as_ref() == Some(&self.doc.get_heads())
    }

    /// Makes a change and sends it; returns once the server's answer shows it has it.
    pub async fn write_acknowledged(&mut self, key: &str, value: &str) {
        self.doc.put(automerge::ROOT, key, value).expect("put");
        self.doc.commit();
        let data = self.sync_data().expect("sync message");
        self.send(&self.sync(data)).await;
        let ours = self.doc.get_heads();
        loop {
            match self.next().await {
                Some(Message::Sync { data, .. }) => {
                    let message = sync::Message::decode(&data).expect("sync message");
                    if message.heads == ours {
                        return;
                    }
                }
                Some(_) => {}
                None => panic!("the server never acknowledged the change"),
            }
        }
    }

    pub fn sync_data(&mut self) -> Option<Vec<u8>> {
        self.doc
            .sync()
            .generate_sync_message(&mut self.state)
            .map(|m| m.encode())
    }

    /// A `sync` message to the server with `data`.
    pub fn sync(&self, data: Vec<u8>) -> Message {
        Message::Sync {
            sender_id: self.peer_id.clone(),
            target_id: self.server_id.clone(),
            document_id: self.id.to_string(),
            data,
        }
    }

    pub async fn send(&mut self, message: &Message) {
        self.socket
            .send(WsMessage::Binary(encode(message).into()))
            .await
            .expect("send");
    }

    /// The next protocol message, skipping pings; `None` when the socket ends or stays silent
    /// for [`PATIENCE`].
    pub async fn next(&mut self) -> Option<Message> {
        next_message(&mut self.socket).await
    }
}

/// The next protocol message on a socket, skipping pings; `None` when it ends or stays silent.
pub async fn next_message(socket: &mut Socket) -> Option<Message> {
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

/// A text value at the document's root.
pub fn text(doc: &AutoCommit, key: &str) -> Option<String> {
    doc.get(automerge::ROOT, key)
        .ok()
        .flatten()
        .and_then(|(v, _)| v.into_string().ok())
}
