//! The peer's side of the protocol without the socket: its copies of the documents, each with
//! Automerge's sync state for the server, and the messages that keep them in sync.

use std::collections::HashMap;

use automerge::AutoCommit;
use automerge::sync::{self, SyncDoc};

use super::ClientError;
use crate::DocumentId;
use crate::protocol::Message;

/// Our copy of one document and what we know the server has of it.
pub struct Replica {
    pub doc: AutoCommit,
    pub state: sync::State,
}

/// One peer: its id, the server's once joined, and its documents.
pub struct Peer {
    id: String,
    server_id: Option<String>,
    replicas: HashMap<DocumentId, Replica>,
}

impl Peer {
    pub fn new(id: impl Into<String>) -> Peer {
        Peer {
            id: id.into(),
            server_id: None,
            replicas: HashMap::new(),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The server's peer id from its `peer` answer; `None` before.
    pub fn server_id(&self) -> Option<&str> {
        self.server_id.as_deref()
    }

    pub fn joined(&mut self, server_id: String) {
        self.server_id = Some(server_id);
    }

    /// Starts syncing `doc` as the document `id`, replacing any copy we had: a `request` when it
    /// is empty (as automerge-repo's `find` does), a `sync` announcing it otherwise (as
    /// automerge-repo does for a document it creates).
    pub fn open(&mut self, id: DocumentId, doc: AutoCommit) -> Option<Message> {
        let mut replica = Replica {
            doc,
            state: sync::State::new(),
        };
        let data = replica
            .doc
            .sync()
            .generate_sync_message(&mut replica.state)
            .map(|m| m.encode());
        let empty = replica.doc.get_heads().is_empty();
        self.replicas.insert(id, replica);
        let data = data?;
        Some(if empty {
            self.request_carrying(id, data)
        } else {
            self.sync_carrying(id, data)
        })
    }

    /// Our next sync message for the document, if Automerge has one to send.
    pub fn sync_message(&mut self, id: DocumentId) -> Option<Message> {
        let replica = self.replicas.get_mut(&id)?;
        let data = replica
            .doc
            .sync()
            .generate_sync_message(&mut replica.state)?
            .encode();
        Some(self.sync_carrying(id, data))
    }

    /// A `sync` message for the document carrying `data` as it is, Automerge's or not.
    pub fn sync_carrying(&self, id: DocumentId, data: Vec<u8>) -> Message {
        let (sender_id, target_id, document_id) = self.addresses(id);
        Message::Sync {
            sender_id,
            target_id,
            document_id,
            data,
        }
    }

    /// A `request` for the document carrying `data` as it is, Automerge's or not.
    pub fn request_carrying(&self, id: DocumentId, data: Vec<u8>) -> Message {
        let (sender_id, target_id, document_id) = self.addresses(id);
        Message::Request {
            sender_id,
            target_id,
            document_id,
            data,
        }
    }

    /// Applies the server's sync `data` for the document and returns our answer, if any.
    pub fn receive_sync(
        &mut self,
        id: DocumentId,
        data: &[u8],
    ) -> Result<Option<Message>, ClientError> {
        let replica = self.replicas.get_mut(&id).ok_or(ClientError::NotOpen(id))?;
        let message = sync::Message::decode(data).map_err(ClientError::SyncData)?;
        replica
            .doc
            .sync()
            .receive_sync_message(&mut replica.state, message)
            .map_err(ClientError::Apply)?;
        Ok(self.sync_message(id))
    }

    /// Whether the server's last heads for the document are ours, and we have some: it has
    /// every change we made.
    pub fn in_sync(&mut self, id: DocumentId) -> bool {
        self.replicas.get_mut(&id).is_some_and(|r| {
            let heads = r.doc.get_heads();
            !heads.is_empty() && r.state.their_heads.as_ref() == Some(&heads)
        })
    }

    pub fn replica(&self, id: DocumentId) -> Option<&Replica> {
        self.replicas.get(&id)
    }

    pub fn replica_mut(&mut self, id: DocumentId) -> Option<&mut Replica> {
        self.replicas.get_mut(&id)
    }

    fn addresses(&self, id: DocumentId) -> (String, String, String) {
        (
            self.id.clone(),
            self.server_id.clone().unwrap_or_default(),
            id.to_string(),
        )
    }
}
