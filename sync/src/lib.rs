//! Atiende's offline sync: the server side of the automerge-repo network protocol, so that an
//! unmodified `@automerge/automerge-repo` client with its WebSocket adapter syncs with us.
//!
//! This crate so far holds the wire codec ([`protocol`]) and document ids ([`doc_id`]).

mod cbor;
pub mod doc_id;
pub mod protocol;

pub use doc_id::{DocumentId, DocumentIdError};
pub use protocol::{
    DecodeError, Limits, MAX_DEPTH, MAX_FRAME, MAX_ITEMS, Message, PROTOCOL_V1, PeerMetadata,
    RemoteHeads, decode, decode_with, encode,
};
