//! The automerge-repo network protocol: the CBOR messages that `@automerge/automerge-repo` peers
//! exchange over a WebSocket (one message per binary frame).
//!
//! The specification is the "Wire Protocol" section of the README of
//! `@automerge/automerge-repo-network-websocket`; where the JavaScript implementation (2.5.6)
//! differs from that text, this module follows what the JavaScript sends and reads:
//!
//! - `join` and `peer` carry their metadata as `peerMetadata` (the README's CDDL says
//!   `metadata`): both are accepted, `peerMetadata` is written.
//! - `error` also carries `senderId` and `targetId`.
//! - A property whose value is JavaScript `undefined` is still sent, as CBOR `undefined`
//!   (for example `storageId` of a client without storage, or the unused one of `add`/`remove`
//!   in `remote-subscription-change`): `undefined` and `null` are read as absent.
//! - Numbers above 2^32 - 1, such as the `timestamp`s of `remote-heads-changed`, are sent as
//!   float64, and a 64-bit CBOR integer is read back by cbor-x as a `BigInt`: such numbers are
//!   accepted in either form and written as float64, like cbor-x does.
//! - Heads in `remote-heads-changed` are bs58check strings, not base64.
//! - Byte strings may carry CBOR tag 64 (`Uint8Array`, as cbor-x writes them by default); it is
//!   accepted and never written.
//!
//! [`decode`] faces untrusted input: it never panics, refuses frames above
//! [`Limits::max_frame`], nesting deeper than [`Limits::max_depth`] and more than
//! [`Limits::max_items`] list or map elements, allocates nothing for a length that the frame
//! does not hold, and reports a [`DecodeError`] whose text is short and safe to send back to the
//! peer (it never quotes the input).

use std::collections::BTreeMap;

pub use crate::cbor::{DecodeError, Limits, MAX_DEPTH, MAX_FRAME, MAX_ITEMS};
use crate::cbor::{Reader, Writer};

/// The only protocol version there is.
pub const PROTOCOL_V1: &str = "1";

/// What a peer says about itself in `join` and `peer`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerMetadata {
    /// The id of the peer's persistent storage (a UUID string in automerge-repo); absent for a
    /// peer without storage.
    pub storage_id: Option<String>,
    /// Whether the peer will not come back with this storage id.
    pub is_ephemeral: Option<bool>,
}

/// The heads a storage id advertised for a document, in `remote-heads-changed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteHeads {
    /// The heads, each the bs58check encoding of a change hash.
    pub heads: Vec<String>,
    /// When the heads were first seen, in milliseconds since the Unix epoch.
    pub timestamp: u64,
}

/// One message of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// First message of the connecting peer.
    Join {
        sender_id: String,
        /// `["1"]` from every current client.
        supported_protocol_versions: Vec<String>,
        /// Sent as `peerMetadata`; the README's CDDL calls it `metadata`.
        peer_metadata: Option<PeerMetadata>,
    },
    /// The answer to `join`.
    Peer {
        sender_id: String,
        target_id: String,
        selected_protocol_version: String,
        peer_metadata: Option<PeerMetadata>,
    },
    /// Advisory: the sender is about to disconnect (no JavaScript peer sends it).
    Leave { sender_id: String },
    /// A protocol error; the sender closes the connection after it.
    Error {
        message: String,
        sender_id: Option<String>,
        target_id: Option<String>,
    },
    /// Like `sync`, but the sender wants `doc-unavailable` if the target does not have the
    /// document.
    Request {
        sender_id: String,
        target_id: String,
        document_id: String,
        /// An Automerge sync message.
        data: Vec<u8>,
    },
    /// An Automerge sync message for one document.
    Sync {
        sender_id: String,
        target_id: String,
        document_id: String,
        /// An Automerge sync message.
        data: Vec<u8>,
    },
    /// The sender does not have the document, nor do its other peers.
    DocUnavailable {
        sender_id: String,
        target_id: String,
        document_id: String,
    },
    /// Application data about a document that is relayed but never stored.
    Ephemeral {
        sender_id: String,
        target_id: String,
        /// Sequence number within `session_id`.
        count: u64,
        session_id: String,
        document_id: String,
        /// Arbitrary bytes (automerge-repo puts CBOR in them).
        data: Vec<u8>,
    },
    /// Heads of a document at storage ids that the target subscribed to.
    RemoteHeadsChanged {
        sender_id: String,
        target_id: String,
        document_id: String,
        /// Storage id → its heads.
        new_heads: BTreeMap<String, RemoteHeads>,
    },
    /// Changes the set of storage ids whose heads the sender wants to hear about.
    RemoteSubscriptionChange {
        sender_id: String,
        target_id: String,
        add: Option<Vec<String>>,
        remove: Option<Vec<String>>,
    },
    /// A well-formed message of a type this codec does not know; the server ignores it.
    /// (`type_name` is never one of the known types.)
    Unknown { type_name: String },
}

impl Message {
    /// The message's `type` on the wire.
    pub fn type_name(&self) -> &str {
        match self {
            Message::Join { .. } => "join",
            Message::Peer { .. } => "peer",
            Message::Leave { .. } => "leave",
            Message::Error { .. } => "error",
            Message::Request { .. } => "request",
            Message::Sync { .. } => "sync",
            Message::DocUnavailable { .. } => "doc-unavailable",
            Message::Ephemeral { .. } => "ephemeral",
            Message::RemoteHeadsChanged { .. } => "remote-heads-changed",
            Message::RemoteSubscriptionChange { .. } => "remote-subscription-change",
            Message::Unknown { type_name } => type_name,
        }
    }

    /// The `senderId`, if the message has one.
    pub fn sender_id(&self) -> Option<&str> {
        match self {
            Message::Join { sender_id, .. }
            | Message::Peer { sender_id, .. }
            | Message::Leave { sender_id }
            | Message::Request { sender_id, .. }
            | Message::Sync { sender_id, .. }
            | Message::DocUnavailable { sender_id, .. }
            | Message::Ephemeral { sender_id, .. }
            | Message::RemoteHeadsChanged { sender_id, .. }
            | Message::RemoteSubscriptionChange { sender_id, .. } => Some(sender_id),
            Message::Error { sender_id, .. } => sender_id.as_deref(),
            Message::Unknown { .. } => None,
        }
    }

    /// The `targetId`, if the message has one.
    pub fn target_id(&self) -> Option<&str> {
        match self {
            Message::Peer { target_id, .. }
            | Message::Request { target_id, .. }
            | Message::Sync { target_id, .. }
            | Message::DocUnavailable { target_id, .. }
            | Message::Ephemeral { target_id, .. }
            | Message::RemoteHeadsChanged { target_id, .. }
            | Message::RemoteSubscriptionChange { target_id, .. } => Some(target_id),
            Message::Error { target_id, .. } => target_id.as_deref(),
            Message::Join { .. } | Message::Leave { .. } | Message::Unknown { .. } => None,
        }
    }

    /// The `documentId`, if the message is about a document.
    pub fn document_id(&self) -> Option<&str> {
        match self {
            Message::Request { document_id, .. }
            | Message::Sync { document_id, .. }
            | Message::DocUnavailable { document_id, .. }
            | Message::Ephemeral { document_id, .. }
            | Message::RemoteHeadsChanged { document_id, .. } => Some(document_id),
            _ => None,
        }
    }
}

// ----------------------------------------------------------------------------------- decoding

/// The top-level keys that some known message type uses.
#[derive(Debug, Clone, Copy)]
enum Field {
    Type,
    SenderId,
    TargetId,
    DocumentId,
    Data,
    PeerMetadata,
    Metadata,
    SupportedProtocolVersions,
    SelectedProtocolVersion,
    Count,
    SessionId,
    Message,
    NewHeads,
    Add,
    Remove,
}

const FIELDS: [(&str, Field); 15] = [
    ("type", Field::Type),
    ("senderId", Field::SenderId),
    ("targetId", Field::TargetId),
    ("documentId", Field::DocumentId),
    ("data", Field::Data),
    ("peerMetadata", Field::PeerMetadata),
    ("metadata", Field::Metadata),
    (
        "supportedProtocolVersions",
        Field::SupportedProtocolVersions,
    ),
    ("selectedProtocolVersion", Field::SelectedProtocolVersion),
    ("count", Field::Count),
    ("sessionId", Field::SessionId),
    ("message", Field::Message),
    ("newHeads", Field::NewHeads),
    ("add", Field::Add),
    ("remove", Field::Remove),
];

impl Field {
    fn name(self) -> &'static str {
        FIELDS[self as usize].0
    }

    fn from_key(key: &str) -> Option<Field> {
        FIELDS
            .iter()
            .find(|(name, _)| *name == key)
            .map(|&(_, f)| f)
    }
}

/// Depth of the values of the top-level map.
const FIELD_DEPTH: usize = 2;

/// Decodes one frame with the default [`Limits`].
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    decode_with(bytes, &Limits::default())
}

/// Decodes one frame.
///
/// A frame of an unknown `type` decodes to [`Message::Unknown`] if it is well-formed CBOR
/// within the limits; a frame of a known type must have every field the protocol requires, with
/// the right CBOR type. Keys that the type does not use are skipped.
pub fn decode_with(bytes: &[u8], limits: &Limits) -> Result<Message, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    if bytes.len() > limits.max_frame {
        return Err(DecodeError::FrameTooLarge {
            len: bytes.len(),
            max: limits.max_frame,
        });
    }
    let mut r = Reader::new(bytes, *limits);

    // Pass 1: check the whole frame and note where the value of each known key starts. The
    // values are read only once the type is known, so that an unknown type may use a known key
    // for something else.
    let mut top = r.map_start(1)?.ok_or(DecodeError::NotAMap)?;
    let mut slots: [Option<usize>; FIELDS.len()] = [None; FIELDS.len()];
    while r.has_next(&mut top)? {
        if r.is_text()? {
            let key = r.text("key")?;
            if let Some(field) = Field::from_key(&key) {
                let slot = &mut slots[field as usize];
                if slot.is_some() {
                    return Err(DecodeError::DuplicateField {
                        field: field.name(),
                    });
                }
                *slot = Some(r.position());
            }
        } else {
            r.skip(FIELD_DEPTH)?;
        }
        r.skip(FIELD_DEPTH)?;
    }
    if !r.at_end() {
        return Err(DecodeError::TrailingBytes);
    }

    // Pass 2: read the fields the type needs.
    let mut f = Fields {
        r,
        slots,
        message_type: "",
    };
    let type_name = f.opt_text(Field::Type)?.ok_or(DecodeError::MissingType)?;
    f.message_type = match type_name.as_str() {
        "join" => "join",
        "peer" => "peer",
        "leave" => "leave",
        "error" => "error",
        "request" => "request",
        "sync" => "sync",
        "doc-unavailable" => "doc-unavailable",
        "ephemeral" => "ephemeral",
        "remote-heads-changed" => "remote-heads-changed",
        "remote-subscription-change" => "remote-subscription-change",
        _ => return Ok(Message::Unknown { type_name }),
    };
    let message = match f.message_type {
        "join" => Message::Join {
            sender_id: f.text(Field::SenderId)?,
            supported_protocol_versions: f
                .text_list(Field::SupportedProtocolVersions)?
                .ok_or_else(|| f.missing(Field::SupportedProtocolVersions))?,
            peer_metadata: f.any_peer_metadata()?,
        },
        "peer" => Message::Peer {
            sender_id: f.text(Field::SenderId)?,
            target_id: f.text(Field::TargetId)?,
            selected_protocol_version: f.text(Field::SelectedProtocolVersion)?,
            peer_metadata: f.any_peer_metadata()?,
        },
        "leave" => Message::Leave {
            sender_id: f.text(Field::SenderId)?,
        },
        "error" => Message::Error {
            message: f.text(Field::Message)?,
            sender_id: f.opt_text(Field::SenderId)?,
            target_id: f.opt_text(Field::TargetId)?,
        },
        "request" => Message::Request {
            sender_id: f.text(Field::SenderId)?,
            target_id: f.text(Field::TargetId)?,
            document_id: f.text(Field::DocumentId)?,
            data: f.bytes(Field::Data)?,
        },
        "sync" => Message::Sync {
            sender_id: f.text(Field::SenderId)?,
            target_id: f.text(Field::TargetId)?,
            document_id: f.text(Field::DocumentId)?,
            data: f.bytes(Field::Data)?,
        },
        "doc-unavailable" => Message::DocUnavailable {
            sender_id: f.text(Field::SenderId)?,
            target_id: f.text(Field::TargetId)?,
            document_id: f.text(Field::DocumentId)?,
        },
        "ephemeral" => Message::Ephemeral {
            sender_id: f.text(Field::SenderId)?,
            target_id: f.text(Field::TargetId)?,
            count: f.js_uint(Field::Count)?,
            session_id: f.text(Field::SessionId)?,
            document_id: f.text(Field::DocumentId)?,
            data: f.bytes(Field::Data)?,
        },
        "remote-heads-changed" => Message::RemoteHeadsChanged {
            sender_id: f.text(Field::SenderId)?,
            target_id: f.text(Field::TargetId)?,
            document_id: f.text(Field::DocumentId)?,
            new_heads: f.new_heads()?,
        },
        _ => Message::RemoteSubscriptionChange {
            sender_id: f.text(Field::SenderId)?,
            target_id: f.text(Field::TargetId)?,
            add: f.text_list(Field::Add)?,
            remove: f.text_list(Field::Remove)?,
        },
    };
    Ok(message)
}

/// The second pass: reads top-level values by field, from where pass 1 found them.
struct Fields<'b> {
    r: Reader<'b>,
    slots: [Option<usize>; FIELDS.len()],
    message_type: &'static str,
}

impl Fields<'_> {
    /// Positions the reader at the field's value; `false` if it is absent, `null` or
    /// `undefined`.
    fn seek(&mut self, field: Field) -> Result<bool, DecodeError> {
        match self.slots[field as usize] {
            None => Ok(false),
            Some(pos) => {
                self.r.set_position(pos);
                Ok(!self.r.is_absent()?)
            }
        }
    }

    fn missing(&self, field: Field) -> DecodeError {
        DecodeError::MissingField {
            message_type: self.message_type,
            field: field.name(),
        }
    }

    fn opt_text(&mut self, field: Field) -> Result<Option<String>, DecodeError> {
        if !self.seek(field)? {
            return Ok(None);
        }
        Ok(Some(self.r.text(field.name())?.into_owned()))
    }

    fn text(&mut self, field: Field) -> Result<String, DecodeError> {
        self.opt_text(field)?.ok_or_else(|| self.missing(field))
    }

    fn bytes(&mut self, field: Field) -> Result<Vec<u8>, DecodeError> {
        if !self.seek(field)? {
            return Err(self.missing(field));
        }
        self.r.bytes(field.name())
    }

    fn js_uint(&mut self, field: Field) -> Result<u64, DecodeError> {
        if !self.seek(field)? {
            return Err(self.missing(field));
        }
        self.r.js_uint(field.name())
    }

    fn text_list(&mut self, field: Field) -> Result<Option<Vec<String>>, DecodeError> {
        if !self.seek(field)? {
            return Ok(None);
        }
        read_text_list(&mut self.r, field.name(), FIELD_DEPTH).map(Some)
    }

    /// `peerMetadata`, or else the CDDL's `metadata`.
    fn any_peer_metadata(&mut self) -> Result<Option<PeerMetadata>, DecodeError> {
        for field in [Field::PeerMetadata, Field::Metadata] {
            if self.seek(field)? {
                return read_peer_metadata(&mut self.r, field.name()).map(Some);
            }
        }
        Ok(None)
    }

    fn new_heads(&mut self) -> Result<BTreeMap<String, RemoteHeads>, DecodeError> {
        let field = Field::NewHeads;
        if !self.seek(field)? {
            return Err(self.missing(field));
        }
        let r = &mut self.r;
        let mut map = r.map_start(FIELD_DEPTH)?.ok_or(DecodeError::WrongType {
            field: "newHeads",
            expected: "a map",
        })?;
        let mut new_heads = BTreeMap::new();
        while r.has_next(&mut map)? {
            r.count_item()?;
            let storage_id = r.text("newHeads")?.into_owned();
            if new_heads.contains_key(&storage_id) {
                return Err(DecodeError::DuplicateField { field: "newHeads" });
            }
            let heads = read_remote_heads(r, FIELD_DEPTH + 1)?;
            new_heads.insert(storage_id, heads);
        }
        Ok(new_heads)
    }
}

fn read_text_list(
    r: &mut Reader<'_>,
    field: &'static str,
    depth: usize,
) -> Result<Vec<String>, DecodeError> {
    let mut list = r.array_start(depth)?.ok_or(DecodeError::WrongType {
        field,
        expected: "a list of text strings",
    })?;
    let mut items = Vec::new();
    while r.has_next(&mut list)? {
        r.count_item()?;
        items.push(r.text(field)?.into_owned());
    }
    Ok(items)
}

fn read_peer_metadata(
    r: &mut Reader<'_>,
    field: &'static str,
) -> Result<PeerMetadata, DecodeError> {
    let mut map = r.map_start(FIELD_DEPTH)?.ok_or(DecodeError::WrongType {
        field,
        expected: "a map",
    })?;
    let mut meta = PeerMetadata::default();
    let (mut seen_storage_id, mut seen_is_ephemeral) = (false, false);
    while r.has_next(&mut map)? {
        if !r.is_text()? {
            r.skip(FIELD_DEPTH + 1)?;
            r.skip(FIELD_DEPTH + 1)?;
            continue;
        }
        let key = r.text(field)?;
        let (seen, name) = match key.as_ref() {
            "storageId" => (&mut seen_storage_id, "storageId"),
            "isEphemeral" => (&mut seen_is_ephemeral, "isEphemeral"),
            _ => {
                r.skip(FIELD_DEPTH + 1)?;
                continue;
            }
        };
        if std::mem::replace(seen, true) {
            return Err(DecodeError::DuplicateField { field: name });
        }
        if r.is_absent()? {
            r.skip(FIELD_DEPTH + 1)?;
        } else if name == "storageId" {
            meta.storage_id = Some(r.text(name)?.into_owned());
        } else {
            meta.is_ephemeral = Some(r.bool(name)?);
        }
    }
    Ok(meta)
}

fn read_remote_heads(r: &mut Reader<'_>, depth: usize) -> Result<RemoteHeads, DecodeError> {
    let mut map = r.map_start(depth)?.ok_or(DecodeError::WrongType {
        field: "newHeads",
        expected: "a map of storage ids to maps",
    })?;
    let (mut heads, mut timestamp) = (None, None);
    while r.has_next(&mut map)? {
        if !r.is_text()? {
            r.skip(depth + 1)?;
            r.skip(depth + 1)?;
            continue;
        }
        match r.text("newHeads")?.as_ref() {
            "heads" => {
                if heads.is_some() {
                    return Err(DecodeError::DuplicateField { field: "heads" });
                }
                heads = Some(read_text_list(r, "heads", depth + 1)?);
            }
            "timestamp" => {
                if timestamp.is_some() {
                    return Err(DecodeError::DuplicateField { field: "timestamp" });
                }
                timestamp = Some(r.js_uint("timestamp")?);
            }
            _ => r.skip(depth + 1)?,
        }
    }
    let missing = |field| DecodeError::MissingField {
        message_type: "remote-heads-changed",
        field,
    };
    Ok(RemoteHeads {
        heads: heads.ok_or_else(|| missing("heads"))?,
        timestamp: timestamp.ok_or_else(|| missing("timestamp"))?,
    })
}

// ----------------------------------------------------------------------------------- encoding

/// Encodes a message as one frame: a CBOR map with `type` first, shortest-form heads and
/// definite lengths, absent optional fields left out, metadata as `peerMetadata` and numbers
/// as cbor-x writes them, so that the JavaScript client reads back exactly the [`Message`].
pub fn encode(message: &Message) -> Vec<u8> {
    let mut w = Writer::new();
    let n = usize::from;
    match message {
        Message::Join {
            sender_id,
            supported_protocol_versions,
            peer_metadata,
        } => {
            w.map(3 + n(peer_metadata.is_some()));
            header(&mut w, message, sender_id);
            if let Some(meta) = peer_metadata {
                write_peer_metadata(&mut w, meta);
            }
            w.text("supportedProtocolVersions");
            w.text_array(supported_protocol_versions);
        }
        Message::Peer {
            sender_id,
            target_id,
            selected_protocol_version,
            peer_metadata,
        } => {
            w.map(4 + n(peer_metadata.is_some()));
            header(&mut w, message, sender_id);
            if let Some(meta) = peer_metadata {
                write_peer_metadata(&mut w, meta);
            }
            w.text("selectedProtocolVersion");
            w.text(selected_protocol_version);
            w.text("targetId");
            w.text(target_id);
        }
        Message::Leave { sender_id } => {
            w.map(2);
            header(&mut w, message, sender_id);
        }
        Message::Error {
            message: text,
            sender_id,
            target_id,
        } => {
            w.map(2 + n(sender_id.is_some()) + n(target_id.is_some()));
            w.text("type");
            w.text(message.type_name());
            if let Some(sender_id) = sender_id {
                w.text("senderId");
                w.text(sender_id);
            }
            w.text("message");
            w.text(text);
            if let Some(target_id) = target_id {
                w.text("targetId");
                w.text(target_id);
            }
        }
        Message::Request {
            sender_id,
            target_id,
            document_id,
            data,
        }
        | Message::Sync {
            sender_id,
            target_id,
            document_id,
            data,
        } => {
            w.map(5);
            header(&mut w, message, sender_id);
            to_document(&mut w, target_id, document_id);
            w.text("data");
            w.bytes(data);
        }
        Message::DocUnavailable {
            sender_id,
            target_id,
            document_id,
        } => {
            w.map(4);
            header(&mut w, message, sender_id);
            to_document(&mut w, target_id, document_id);
        }
        Message::Ephemeral {
            sender_id,
            target_id,
            count,
            session_id,
            document_id,
            data,
        } => {
            w.map(7);
            header(&mut w, message, sender_id);
            to_document(&mut w, target_id, document_id);
            w.text("count");
            w.js_uint(*count);
            w.text("sessionId");
            w.text(session_id);
            w.text("data");
            w.bytes(data);
        }
        Message::RemoteHeadsChanged {
            sender_id,
            target_id,
            document_id,
            new_heads,
        } => {
            w.map(5);
            header(&mut w, message, sender_id);
            to_document(&mut w, target_id, document_id);
            w.text("newHeads");
            w.map(new_heads.len());
            for (storage_id, remote) in new_heads {
                w.text(storage_id);
                w.map(2);
                w.text("heads");
                w.text_array(&remote.heads);
                w.text("timestamp");
                w.js_uint(remote.timestamp);
            }
        }
        Message::RemoteSubscriptionChange {
            sender_id,
            target_id,
            add,
            remove,
        } => {
            w.map(3 + n(add.is_some()) + n(remove.is_some()));
            header(&mut w, message, sender_id);
            w.text("targetId");
            w.text(target_id);
            if let Some(add) = add {
                w.text("add");
                w.text_array(add);
            }
            if let Some(remove) = remove {
                w.text("remove");
                w.text_array(remove);
            }
        }
        Message::Unknown { type_name } => {
            w.map(1);
            w.text("type");
            w.text(type_name);
        }
    }
    w.into_bytes()
}

fn header(w: &mut Writer, message: &Message, sender_id: &str) {
    w.text("type");
    w.text(message.type_name());
    w.text("senderId");
    w.text(sender_id);
}

fn to_document(w: &mut Writer, target_id: &str, document_id: &str) {
    w.text("targetId");
    w.text(target_id);
    w.text("documentId");
    w.text(document_id);
}

fn write_peer_metadata(w: &mut Writer, meta: &PeerMetadata) {
    w.text("peerMetadata");
    w.map(usize::from(meta.storage_id.is_some()) + usize::from(meta.is_ephemeral.is_some()));
    if let Some(storage_id) = &meta.storage_id {
        w.text("storageId");
        w.text(storage_id);
    }
    if let Some(is_ephemeral) = meta.is_ephemeral {
        w.text("isEphemeral");
        w.bool(is_ephemeral);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_table_matches_the_enum() {
        for (name, field) in FIELDS {
            assert_eq!(field.name(), name);
            assert!(matches!(Field::from_key(name), Some(f) if f as usize == field as usize));
        }
        assert!(Field::from_key("Type").is_none());
    }
}
