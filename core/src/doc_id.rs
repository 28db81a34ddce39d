//! Automerge document ids: 16 bytes, written as bs58check (`4NMNnkMhL8jXrdJ9jamS58PAVdXu`) or as
//! an Automerge URL (`automerge:4NMNnkMhL8jXrdJ9jamS58PAVdXu`).
//!
//! bs58check is base58 (Bitcoin alphabet) of the payload followed by the first 4 bytes of
//! SHA-256(SHA-256(payload)).

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// The scheme of an Automerge URL.
pub const URL_PREFIX: &str = "automerge:";

/// Longer strings are refused before decoding: the bs58check text of 20 bytes has at most 28
/// characters, and base58 decoding costs time quadratic in the length.
const MAX_TEXT_LEN: usize = 64;

const CHECKSUM_LEN: usize = 4;

/// The id of an Automerge document.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocumentId([u8; 16]);

/// Why a string is not a document id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DocumentIdError {
    #[error("document id is empty")]
    Empty,
    #[error("document id is too long")]
    TooLong,
    #[error("document id is not base58")]
    NotBase58,
    #[error("document id has a bad checksum")]
    BadChecksum,
    #[error("document id has {len} bytes, not 16")]
    WrongLength { len: usize },
    #[error("Automerge URL with heads does not name just a document")]
    HasHeads,
}

/// The system's random source failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no random bytes for a document id: {0}")]
pub struct RandomError(String);

impl DocumentId {
    /// The document id with these bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The 16 bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// A new random id, shaped like the ones `Repo.create()` makes (a version 4 UUID).
    pub fn generate() -> Result<Self, RandomError> {
        let mut bytes = [0u8; 16];
        getrandom::getrandom(&mut bytes).map_err(|e| RandomError(e.to_string()))?;
        Ok(Self::from_random_bytes(bytes))
    }

    /// Makes an id from 16 random bytes, setting the UUID version (4) and variant bits as
    /// automerge-repo's `generateAutomergeUrl()` does.
    pub fn from_random_bytes(mut bytes: [u8; 16]) -> Self {
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        Self(bytes)
    }

    /// Parses a bare bs58check id or an `automerge:` URL without heads.
    pub fn parse(s: &str) -> Result<Self, DocumentIdError> {
        let id = s.strip_prefix(URL_PREFIX).unwrap_or(s);
        if id.contains('#') {
            return Err(DocumentIdError::HasHeads);
        }
        if id.is_empty() {
            return Err(DocumentIdError::Empty);
        }
        if id.len() > MAX_TEXT_LEN {
            return Err(DocumentIdError::TooLong);
        }
        let raw = bs58::decode(id)
            .into_vec()
            .map_err(|_| DocumentIdError::NotBase58)?;
        let Some(split) = raw.len().checked_sub(CHECKSUM_LEN) else {
            return Err(DocumentIdError::BadChecksum);
        };
        let (payload, checksum) = raw.split_at(split);
        if checksum != &double_sha256(payload)[..CHECKSUM_LEN] {
            return Err(DocumentIdError::BadChecksum);
        }
        let bytes: [u8; 16] = payload
            .try_into()
            .map_err(|_| DocumentIdError::WrongLength { len: payload.len() })?;
        Ok(Self(bytes))
    }

    /// The Automerge URL: `automerge:<id>`.
    pub fn url(&self) -> String {
        format!("{URL_PREFIX}{self}")
    }
}

fn double_sha256(payload: &[u8]) -> [u8; 32] {
    Sha256::digest(Sha256::digest(payload)).into()
}

impl fmt::Display for DocumentId {
    /// The bs58check form, as automerge-repo writes `documentId`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = [0u8; 16 + CHECKSUM_LEN];
        raw[..16].copy_from_slice(&self.0);
        raw[16..].copy_from_slice(&double_sha256(&self.0)[..CHECKSUM_LEN]);
        f.write_str(&bs58::encode(raw).into_string())
    }
}

impl fmt::Debug for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocumentId({self})")
    }
}

impl FromStr for DocumentId {
    type Err = DocumentIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl From<[u8; 16]> for DocumentId {
    fn from(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }
}

impl From<DocumentId> for [u8; 16] {
    fn from(id: DocumentId) -> Self {
        id.0
    }
}
