//! Atiende's offline sync: the server side of the automerge-repo network protocol, so that an
//! unmodified `@automerge/automerge-repo` client with its WebSocket adapter syncs with us.
//!
//! - [`protocol`] and [`doc_id`]: the wire codec and document ids.
//! - [`storage`]: documents, access and durable content in PostgreSQL; [`create_document`],
//!   [`grant`] and [`revoke`] for the rest of the system.
//! - [`SyncState`] and [`router`]: the WebSocket endpoint `GET /api/v1/sync?ticket=…`, which
//!   commits every change before any peer hears of it.
//! - [`SyncState::run_listener`]: several processes on one database, through PostgreSQL
//!   `LISTEN/NOTIFY`.
//! - `client` (feature `client`): a Rust peer of the same protocol, for tests and benchmarks.

mod cbor;
mod chunks;
#[cfg(feature = "client")]
pub mod client;
mod connection;
pub mod doc_id;
mod docs;
mod listen;
mod peers;
mod projector;
pub mod protocol;
mod registry;
mod server;
mod sessions;
mod state;
pub mod storage;
mod writer;

pub use doc_id::{DocumentId, DocumentIdError};
pub use docs::ChangeError;
pub use projector::ProjectionError;
pub use protocol::{
    DecodeError, Limits, MAX_DEPTH, MAX_FRAME, MAX_ITEMS, Message, PROTOCOL_V1, PeerMetadata,
    RemoteHeads, decode, decode_with, encode,
};
pub use server::router;
pub use state::{SyncSettings, SyncState, SyncStats};
pub use storage::{DocumentKind, Mode, StorageError, create_document, grant, revoke};

/// A std mutex guard, whatever a panicking holder left behind: every critical section here
/// leaves the maps consistent at each step.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
