//! Measures what an incoming Automerge sync message holds before Automerge sees it.
//!
//! Automerge inflates deflated content without a bound: a compressed change chunk, and the
//! deflated columns of a document or bundle chunk. A frame of a few KiB can claim gigabytes.
//! Compressed chunks are normal traffic (Automerge deflates changes above a few hundred bytes and
//! may send a whole document), so they are not refused: they are inflated here into a sink that
//! only counts, never past a cap, and a message above it is refused before Automerge reads it.
//!
//! The framing follows automerge 0.12: a sync message is a type byte (`0x42`, or `0x43` for v2),
//! heads, need, have (last sync heads and a bloom filter each), a list of length-prefixed change
//! entries and optional flags. The entries are concatenated and read as chunks: magic bytes,
//! checksum, chunk type (0 document, 1 change, 2 compressed change, 3 bundle), LEB128 length,
//! data. Every length is LEB128; hashes are 32 bytes.

use std::borrow::Cow;
use std::io::{self, Read};

const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
const SYNC_V1: u8 = 0x42;
const SYNC_V2: u8 = 0x43;
const HASH: u64 = 32;
/// The bit of a column specification that says its data is deflated.
const DEFLATE: u64 = 0b1000;

/// What a sync message carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Measured {
    /// Bytes of change content once inflated: what Automerge would hold while applying it.
    pub bytes: u64,
    /// Deflated pieces inflated to measure them (compressed chunks and deflated columns).
    pub compressed: u64,
    /// Whether the message carries any change entry.
    pub has_changes: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChunkError {
    /// Not an Automerge sync message (or a chunk that Automerge would not load).
    Malformed,
    /// The content inflates to more than the cap; counting stopped there.
    OverCap,
}

/// Walks the message and its chunks, inflating deflated content into a counting sink; stops as
/// soon as the total passes `cap`.
pub(crate) fn measure(message: &[u8], cap: u64) -> Result<Measured, ChunkError> {
    let entries = change_entries(message)?;
    // Automerge concatenates the entries and loads the result as one stream of chunks.
    let stream: Cow<'_, [u8]> = match entries.as_slice() {
        [one] => Cow::Borrowed(one),
        many => Cow::Owned(many.concat()),
    };
    let mut measured = Measured {
        has_changes: !entries.is_empty(),
        ..Measured::default()
    };
    let mut r = Cursor(&stream);
    while !r.0.is_empty() {
        if r.take(4)? != MAGIC {
            return Err(ChunkError::Malformed);
        }
        r.take(4)?; // checksum
        let kind = r.byte()?;
        let data = r.prefixed()?;
        let len = data.len() as u64;
        let extra = match kind {
            0 => columns_of_document(data, &mut measured, cap)?,
            1 => 0,
            2 => {
                measured.compressed += 1;
                // The inflated change replaces the compressed bytes.
                inflate(data, remaining(&measured, cap))?.saturating_sub(len)
            }
            3 => columns_of_bundle(data, &mut measured, cap)?,
            _ => return Err(ChunkError::Malformed),
        };
        measured.bytes = measured.bytes.saturating_add(len).saturating_add(extra);
        if measured.bytes > cap {
            return Err(ChunkError::OverCap);
        }
    }
    Ok(measured)
}

/// Whether the message carries change entries, reading only its framing (nothing is inflated).
pub(crate) fn carries_changes(message: &[u8]) -> Result<bool, ChunkError> {
    Ok(!change_entries(message)?.is_empty())
}

/// The change entries of a sync message, once its framing is checked.
fn change_entries(message: &[u8]) -> Result<Vec<&[u8]>, ChunkError> {
    let mut r = Cursor(message);
    if !matches!(r.byte()?, SYNC_V1 | SYNC_V2) {
        return Err(ChunkError::Malformed);
    }
    r.hashes()?; // heads
    r.hashes()?; // need
    for _ in 0..r.uleb()? {
        r.hashes()?; // last sync
        r.prefixed()?; // bloom filter
    }
    let mut entries = Vec::new();
    for _ in 0..r.uleb()? {
        entries.push(r.prefixed()?);
    }
    if !r.0.is_empty() {
        r.prefixed()?; // flags; Automerge ignores what follows them
    }
    Ok(entries)
}

fn remaining(measured: &Measured, cap: u64) -> u64 {
    cap.saturating_sub(measured.bytes)
}

/// Document chunk: actors, heads, change and op column metadata, then change and op column data.
/// Returns the bytes its deflated columns add once inflated.
fn columns_of_document(data: &[u8], m: &mut Measured, cap: u64) -> Result<u64, ChunkError> {
    let mut r = Cursor(data);
    for _ in 0..r.uleb()? {
        r.prefixed()?; // actor id
    }
    r.hashes()?; // heads
    let change_columns = r.columns()?;
    let op_columns = r.columns()?;
    let mut extra = 0;
    inflate_columns(&mut r, &change_columns, m, cap, &mut extra)?;
    inflate_columns(&mut r, &op_columns, m, cap, &mut extra)?;
    Ok(extra)
}

/// Bundle chunk: dependencies, actors, then change column metadata and data, op column metadata
/// and data.
fn columns_of_bundle(data: &[u8], m: &mut Measured, cap: u64) -> Result<u64, ChunkError> {
    let mut r = Cursor(data);
    r.hashes()?; // dependencies
    for _ in 0..r.uleb()? {
        r.prefixed()?; // actor id
    }
    let mut extra = 0;
    let change_columns = r.columns()?;
    inflate_columns(&mut r, &change_columns, m, cap, &mut extra)?;
    let op_columns = r.columns()?;
    inflate_columns(&mut r, &op_columns, m, cap, &mut extra)?;
    Ok(extra)
}

/// Reads the data of `columns` and inflates the deflated ones, adding to `extra` what
/// inflating adds.
fn inflate_columns(
    r: &mut Cursor<'_>,
    columns: &[(bool, u64)],
    m: &mut Measured,
    cap: u64,
    extra: &mut u64,
) -> Result<(), ChunkError> {
    for &(deflated, len) in columns {
        let data = r.take(len)?;
        if deflated {
            m.compressed += 1;
            let budget = remaining(m, cap).saturating_sub(*extra);
            *extra = extra.saturating_add(inflate(data, budget)?.saturating_sub(len));
        }
    }
    Ok(())
}

/// Inflates raw deflate data into a counting sink; never produces more than `cap + 1` bytes.
fn inflate(data: &[u8], cap: u64) -> Result<u64, ChunkError> {
    let mut inflater = flate2::bufread::DeflateDecoder::new(data).take(cap.saturating_add(1));
    let n = io::copy(&mut inflater, &mut io::sink()).map_err(|_| ChunkError::Malformed)?;
    if n > cap {
        return Err(ChunkError::OverCap);
    }
    Ok(n)
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> Result<u8, ChunkError> {
        Ok(self.take(1)?[0])
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], ChunkError> {
        let n = usize::try_from(n).map_err(|_| ChunkError::Malformed)?;
        if n > self.0.len() {
            return Err(ChunkError::Malformed);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    /// An unsigned LEB128 number of at most 64 bits.
    fn uleb(&mut self) -> Result<u64, ChunkError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(ChunkError::Malformed);
            }
            value |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ChunkError::Malformed)
    }

    fn prefixed(&mut self) -> Result<&'a [u8], ChunkError> {
        let n = self.uleb()?;
        self.take(n)
    }

    /// A length-prefixed list of change hashes.
    fn hashes(&mut self) -> Result<(), ChunkError> {
        let n = self.uleb()?;
        self.take(n.checked_mul(HASH).ok_or(ChunkError::Malformed)?)?;
        Ok(())
    }

    /// Column metadata: a count, then a specification and a data length per column.
    fn columns(&mut self) -> Result<Vec<(bool, u64)>, ChunkError> {
        let mut columns = Vec::new();
        for _ in 0..self.uleb()? {
            let spec = self.uleb()?;
            if spec > u64::from(u32::MAX) {
                return Err(ChunkError::Malformed);
            }
            columns.push((spec & DEFLATE != 0, self.uleb()?));
        }
        Ok(columns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::sync::SyncDoc;
    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ROOT};

    fn message_with(doc: &mut AutoCommit) -> Vec<u8> {
        let mut state = automerge::sync::State::new();
        doc.sync()
            .generate_sync_message(&mut state)
            .expect("message")
            .encode()
    }

    #[test]
    fn measures_plain_and_compressed_changes() {
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "a", "x".repeat(10_000)).expect("put");
        doc.commit();
        let mut peer = AutoCommit::new();
        let (mut ours, mut theirs) = (automerge::sync::State::new(), automerge::sync::State::new());
        // A round trip so the next message carries changes.
        let first = doc.sync().generate_sync_message(&mut ours).expect("first");
        peer.sync()
            .receive_sync_message(&mut theirs, first)
            .expect("receive");
        let reply = peer
            .sync()
            .generate_sync_message(&mut theirs)
            .expect("reply");
        doc.sync()
            .receive_sync_message(&mut ours, reply)
            .expect("receive");
        let with_changes = doc
            .sync()
            .generate_sync_message(&mut ours)
            .expect("changes")
            .encode();
        let measured = measure(&with_changes, 1 << 20).expect("measured");
        assert!(measured.has_changes);
        assert!(measured.bytes >= 10_000, "{measured:?}");
        assert!(measured.compressed >= 1, "{measured:?}");
        assert_eq!(
            measure(&with_changes, 5_000),
            Err(ChunkError::OverCap),
            "the cap holds"
        );
        let empty = message_with(&mut AutoCommit::new());
        assert!(!measure(&empty, 0).expect("empty").has_changes);
        assert_eq!(measure(&[0x42, 0xff], 10), Err(ChunkError::Malformed));
        assert_eq!(measure(b"hello", 10), Err(ChunkError::Malformed));
    }
}
