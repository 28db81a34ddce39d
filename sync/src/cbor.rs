//! CBOR plumbing for the wire codec: a writer for the few kinds of item the protocol uses, and a
//! reader on top of minicbor's slice decoder that enforces the nesting and item limits and turns
//! every failure into a [`DecodeError`].

use std::borrow::Cow;

use minicbor::Decoder;
use minicbor::data::Type;

/// Default largest frame [`decode`](crate::decode) accepts, in bytes.
pub const MAX_FRAME: usize = 8 * 1024 * 1024;

/// Default deepest nesting [`decode`](crate::decode) accepts (the top-level map is level 1; the deepest
/// structure of a known message, the heads in `remote-heads-changed`, is level 4).
pub const MAX_DEPTH: usize = 32;

/// Default largest number of list and map elements that a decoded message may hold in total.
pub const MAX_ITEMS: usize = 65_536;

/// Bounds on what [`decode_with`](crate::decode_with) accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame, in bytes.
    pub max_frame: usize,
    /// Deepest nesting of maps and arrays, the message itself being level 1.
    pub max_depth: usize,
    /// Most list and map elements kept in the decoded message, all fields together.
    pub max_items: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame: MAX_FRAME,
            max_depth: MAX_DEPTH,
            max_items: MAX_ITEMS,
        }
    }
}

/// Why a frame was refused. The text is short, fixed and never quotes the input, so it can be
/// sent back to the peer in an `error` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("empty frame")]
    Empty,
    #[error("frame of {len} bytes is over the limit of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    #[error("truncated frame")]
    Truncated,
    #[error("malformed CBOR at byte {offset}: {reason}")]
    Malformed { offset: usize, reason: &'static str },
    #[error("nested deeper than {max} levels")]
    TooDeep { max: usize },
    #[error("more than {max} list or map elements")]
    TooManyItems { max: usize },
    #[error("bytes after the end of the message")]
    TrailingBytes,
    #[error("message is not a CBOR map")]
    NotAMap,
    #[error("message has no `type`")]
    MissingType,
    #[error("`{message_type}` message has no `{field}`")]
    MissingField {
        message_type: &'static str,
        field: &'static str,
    },
    #[error("`{field}` must be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("`{field}` is {reason}")]
    InvalidValue {
        field: &'static str,
        reason: &'static str,
    },
    #[error("`{field}` appears twice")]
    DuplicateField { field: &'static str },
}

/// 2^53: the largest integer up to which every integer is an exact JavaScript number.
pub(crate) const MAX_SAFE_INTEGER: u64 = 1 << 53;

/// The CBOR tag cbor-x puts on a `Uint8Array` when `tagUint8Array` is on (automerge-repo turns it
/// off, older clients did not).
const TAG_UINT8_ARRAY: u64 = 64;

// ------------------------------------------------------------------------------------- writing

/// Appends CBOR items to a buffer, always in their shortest form and with definite lengths.
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn new() -> Self {
        Self {
            buf: Vec::with_capacity(64),
        }
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    fn head(&mut self, major: u8, n: u64) {
        let m = major << 5;
        match n {
            0..=23 => self.buf.push(m | n as u8),
            24..=0xff => self.buf.extend_from_slice(&[m | 24, n as u8]),
            0x100..=0xffff => {
                self.buf.push(m | 25);
                self.buf.extend_from_slice(&(n as u16).to_be_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                self.buf.push(m | 26);
                self.buf.extend_from_slice(&(n as u32).to_be_bytes());
            }
            _ => {
                self.buf.push(m | 27);
                self.buf.extend_from_slice(&n.to_be_bytes());
            }
        }
    }

    fn len(&mut self, major: u8, n: usize) {
        self.head(major, u64::try_from(n).unwrap_or(u64::MAX));
    }

    pub(crate) fn map(&mut self, entries: usize) {
        self.len(5, entries);
    }

    pub(crate) fn array(&mut self, items: usize) {
        self.len(4, items);
    }

    pub(crate) fn text(&mut self, s: &str) {
        self.len(3, s.len());
        self.buf.extend_from_slice(s.as_bytes());
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.len(2, b.len());
        self.buf.extend_from_slice(b);
    }

    pub(crate) fn bool(&mut self, b: bool) {
        self.buf.push(if b { 0xf5 } else { 0xf4 });
    }

    pub(crate) fn text_array(&mut self, items: &[String]) {
        self.array(items.len());
        for s in items {
            self.text(s);
        }
    }

    /// Writes an integer the way cbor-x writes a JavaScript number: as a CBOR unsigned integer up
    /// to 2^32 - 1 and as a float64 above that, because cbor-x decodes a 64-bit CBOR integer to a
    /// `BigInt`, which the JavaScript code does not expect. Values above 2^53 have no exact
    /// JavaScript number and are written as 64-bit integers.
    pub(crate) fn js_uint(&mut self, n: u64) {
        if n <= u64::from(u32::MAX) || n > MAX_SAFE_INTEGER {
            self.head(0, n);
        } else {
            self.buf.push(0xfb);
            self.buf.extend_from_slice(&(n as f64).to_be_bytes());
        }
    }
}

// ------------------------------------------------------------------------------------- reading

/// A map or array being read: how many items are left, or `None` if it has indefinite length.
pub(crate) struct Container {
    remaining: Option<u64>,
}

/// What a minicbor error becomes: running off the end is a truncated frame, anything else is
/// malformed CBOR, reported with a fixed reason and the byte offset.
fn cbor_error(
    e: &minicbor::decode::Error,
    fallback_pos: usize,
    reason: &'static str,
) -> DecodeError {
    if e.is_end_of_input() {
        DecodeError::Truncated
    } else {
        DecodeError::Malformed {
            offset: e.position().unwrap_or(fallback_pos),
            reason,
        }
    }
}

pub(crate) struct Reader<'b> {
    d: Decoder<'b>,
    limits: Limits,
    items: usize,
}

impl<'b> Reader<'b> {
    pub(crate) fn new(bytes: &'b [u8], limits: Limits) -> Self {
        Self {
            d: Decoder::new(bytes),
            limits,
            items: 0,
        }
    }

    pub(crate) fn position(&self) -> usize {
        self.d.position()
    }

    pub(crate) fn set_position(&mut self, pos: usize) {
        self.d.set_position(pos);
    }

    pub(crate) fn at_end(&self) -> bool {
        self.d.position() >= self.d.input().len()
    }

    pub(crate) fn datatype(&self) -> Result<Type, DecodeError> {
        self.d
            .datatype()
            .map_err(|e| cbor_error(&e, self.d.position(), "invalid initial byte"))
    }

    /// `null` and `undefined` (what cbor-x writes for a property whose value is `undefined`)
    /// both mean "absent".
    pub(crate) fn is_absent(&self) -> Result<bool, DecodeError> {
        Ok(matches!(self.datatype()?, Type::Null | Type::Undefined))
    }

    /// Fails if a container at `depth` (the top-level map being depth 1) would be too deep.
    pub(crate) fn check_depth(&self, depth: usize) -> Result<(), DecodeError> {
        if depth > self.limits.max_depth {
            Err(DecodeError::TooDeep {
                max: self.limits.max_depth,
            })
        } else {
            Ok(())
        }
    }

    /// Counts one more element kept in the decoded message against [`Limits::max_items`].
    pub(crate) fn count_item(&mut self) -> Result<(), DecodeError> {
        self.items += 1;
        if self.items > self.limits.max_items {
            Err(DecodeError::TooManyItems {
                max: self.limits.max_items,
            })
        } else {
            Ok(())
        }
    }

    /// Starts reading a map at `depth`; `Ok(None)` if the item is not a map.
    pub(crate) fn map_start(&mut self, depth: usize) -> Result<Option<Container>, DecodeError> {
        if !matches!(self.datatype()?, Type::Map | Type::MapIndef) {
            return Ok(None);
        }
        self.check_depth(depth)?;
        let pos = self.d.position();
        let remaining = self
            .d
            .map()
            .map_err(|e| cbor_error(&e, pos, "invalid map header"))?;
        Ok(Some(Container { remaining }))
    }

    /// Starts reading an array at `depth`; `Ok(None)` if the item is not an array.
    pub(crate) fn array_start(&mut self, depth: usize) -> Result<Option<Container>, DecodeError> {
        if !matches!(self.datatype()?, Type::Array | Type::ArrayIndef) {
            return Ok(None);
        }
        self.check_depth(depth)?;
        let pos = self.d.position();
        let remaining = self
            .d
            .array()
            .map_err(|e| cbor_error(&e, pos, "invalid array header"))?;
        Ok(Some(Container { remaining }))
    }

    /// Whether the container has another element (for a map: another key/value pair); consumes
    /// the break that ends an indefinite-length container.
    pub(crate) fn has_next(&mut self, c: &mut Container) -> Result<bool, DecodeError> {
        match &mut c.remaining {
            Some(0) => Ok(false),
            Some(n) => {
                *n -= 1;
                Ok(true)
            }
            None => {
                if self.datatype()? == Type::Break {
                    self.d.set_position(self.d.position() + 1);
                    Ok(false)
                } else {
                    Ok(true)
                }
            }
        }
    }

    /// Whether the next item is a text string.
    pub(crate) fn is_text(&self) -> Result<bool, DecodeError> {
        Ok(matches!(self.datatype()?, Type::String | Type::StringIndef))
    }

    /// Reads a text string (definite or indefinite length), borrowing from the frame if it can.
    pub(crate) fn text(&mut self, field: &'static str) -> Result<Cow<'b, str>, DecodeError> {
        let pos = self.d.position();
        match self.datatype()? {
            Type::String => self
                .d
                .str()
                .map(Cow::Borrowed)
                .map_err(|e| cbor_error(&e, pos, "invalid text string")),
            Type::StringIndef => {
                let mut s = String::new();
                let chunks = self
                    .d
                    .str_iter()
                    .map_err(|e| cbor_error(&e, pos, "invalid text string"))?;
                for chunk in chunks {
                    s.push_str(chunk.map_err(|e| cbor_error(&e, pos, "invalid text string"))?);
                }
                Ok(Cow::Owned(s))
            }
            _ => Err(DecodeError::WrongType {
                field,
                expected: "a text string",
            }),
        }
    }

    /// Reads a byte string (definite or indefinite length), optionally tagged as a `Uint8Array`.
    pub(crate) fn bytes(&mut self, field: &'static str) -> Result<Vec<u8>, DecodeError> {
        let wrong = DecodeError::WrongType {
            field,
            expected: "a byte string",
        };
        let pos = self.d.position();
        if self.datatype()? == Type::Tag {
            let tag = self
                .d
                .tag()
                .map_err(|e| cbor_error(&e, pos, "invalid tag"))?;
            if tag.as_u64() != TAG_UINT8_ARRAY {
                return Err(wrong);
            }
        }
        let pos = self.d.position();
        match self.datatype()? {
            Type::Bytes => self
                .d
                .bytes()
                .map(<[u8]>::to_vec)
                .map_err(|e| cbor_error(&e, pos, "invalid byte string")),
            Type::BytesIndef => {
                let mut v = Vec::new();
                let chunks = self
                    .d
                    .bytes_iter()
                    .map_err(|e| cbor_error(&e, pos, "invalid byte string"))?;
                for chunk in chunks {
                    v.extend_from_slice(
                        chunk.map_err(|e| cbor_error(&e, pos, "invalid byte string"))?,
                    );
                }
                Ok(v)
            }
            _ => Err(wrong),
        }
    }

    pub(crate) fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        let pos = self.d.position();
        match self.datatype()? {
            Type::Bool => self
                .d
                .bool()
                .map_err(|e| cbor_error(&e, pos, "invalid boolean")),
            _ => Err(DecodeError::WrongType {
                field,
                expected: "a boolean",
            }),
        }
    }

    /// Reads a non-negative integer that JavaScript sent as a number: a CBOR unsigned integer, or
    /// a float holding an exact integer (cbor-x writes numbers above 2^32 - 1 as float64).
    pub(crate) fn js_uint(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        let pos = self.d.position();
        let float = match self.datatype()? {
            Type::U8 | Type::U16 | Type::U32 | Type::U64 => {
                return self
                    .d
                    .u64()
                    .map_err(|e| cbor_error(&e, pos, "invalid integer"));
            }
            Type::F16 => {
                let raw = self
                    .d
                    .input()
                    .get(pos + 1..pos + 3)
                    .ok_or(DecodeError::Truncated)?;
                self.d.set_position(pos + 3);
                f16_to_f64(u16::from_be_bytes([raw[0], raw[1]]))
            }
            Type::F32 | Type::F64 => self
                .d
                .f64()
                .map_err(|e| cbor_error(&e, pos, "invalid float"))?,
            _ => {
                return Err(DecodeError::WrongType {
                    field,
                    expected: "a non-negative integer",
                });
            }
        };
        if float.is_finite()
            && float >= 0.0
            && float.fract() == 0.0
            && float <= MAX_SAFE_INTEGER as f64
        {
            Ok(float as u64)
        } else {
            Err(DecodeError::InvalidValue {
                field,
                reason: "not a non-negative integer",
            })
        }
    }

    /// Skips one item of any kind, at nesting `depth`, without recursion and without allocating
    /// more than a stack of at most `max_depth` counters.
    pub(crate) fn skip(&mut self, depth: usize) -> Result<(), DecodeError> {
        // Items left in each open container, innermost last; `None` = indefinite length.
        let mut open: Vec<Option<u64>> = Vec::new();
        // A tag was read and the item it applies to has not been yet.
        let mut tagged = false;
        loop {
            let pos = self.d.position();
            let complete = match self.datatype()? {
                Type::Array | Type::ArrayIndef | Type::Map | Type::MapIndef => {
                    tagged = false;
                    let is_map = matches!(self.datatype()?, Type::Map | Type::MapIndef);
                    self.check_depth(depth + open.len())?;
                    let len = if is_map {
                        self.d
                            .map()
                            .map_err(|e| cbor_error(&e, pos, "invalid map header"))?
                            .map(|n| n.saturating_mul(2))
                    } else {
                        self.d
                            .array()
                            .map_err(|e| cbor_error(&e, pos, "invalid array header"))?
                    };
                    if len == Some(0) {
                        true
                    } else {
                        open.push(len);
                        false
                    }
                }
                Type::Tag => {
                    self.d
                        .tag()
                        .map_err(|e| cbor_error(&e, pos, "invalid tag"))?;
                    tagged = true;
                    false
                }
                Type::Break => {
                    if tagged || open.last() != Some(&None) {
                        return Err(DecodeError::Malformed {
                            offset: pos,
                            reason: "unexpected break",
                        });
                    }
                    self.d.set_position(pos + 1);
                    open.pop();
                    true
                }
                Type::Unknown(_) => {
                    return Err(DecodeError::Malformed {
                        offset: pos,
                        reason: "reserved initial byte",
                    });
                }
                // Scalars, byte and text strings: minicbor skips exactly this one item.
                _ => {
                    tagged = false;
                    self.d
                        .skip()
                        .map_err(|e| cbor_error(&e, pos, "invalid item"))?;
                    true
                }
            };
            if complete {
                // One item finished: count it against the innermost open container, closing
                // every definite container that it fills.
                loop {
                    match open.last_mut() {
                        None => return Ok(()),
                        Some(None) => break,
                        Some(Some(n)) => {
                            *n -= 1;
                            if *n == 0 {
                                open.pop();
                            } else {
                                break;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// IEEE 754 half precision to double (minicbor only decodes it with its `half` feature).
fn f16_to_f64(bits: u16) -> f64 {
    let sign = if bits & 0x8000 == 0 { 1.0 } else { -1.0 };
    let exponent = i32::from((bits >> 10) & 0x1f);
    let mantissa = f64::from(bits & 0x3ff);
    match exponent {
        0 => sign * mantissa * 2f64.powi(-24),
        31 if mantissa == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        e => sign * (1.0 + mantissa / 1024.0) * 2f64.powi(e - 15),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_floats() {
        assert_eq!(f16_to_f64(0x3c00), 1.0);
        assert_eq!(f16_to_f64(0x0000), 0.0);
        assert_eq!(f16_to_f64(0x7bff), 65504.0);
        assert_eq!(f16_to_f64(0x0001), 2f64.powi(-24));
        assert!(f16_to_f64(0x7e00).is_nan());
        assert_eq!(f16_to_f64(0xfc00), f64::NEG_INFINITY);
    }

    #[test]
    fn writer_uses_shortest_heads() {
        let mut w = Writer::new();
        for n in [
            0,
            23,
            24,
            255,
            256,
            65535,
            65536,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            w.head(0, n);
        }
        assert_eq!(
            w.into_bytes(),
            [
                &[
                    0x00, 0x17, 0x18, 0x18, 0x18, 0xff, 0x19, 0x01, 0x00, 0x19, 0xff, 0xff
                ][..],
                &[0x1a, 0x00, 0x01, 0x00, 0x00, 0x1a, 0xff, 0xff, 0xff, 0xff],
                &[0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            ]
            .concat()
        );
    }

    #[test]
    fn js_numbers_like_cbor_x() {
        let mut w = Writer::new();
        w.js_uint(7);
        w.js_uint(1_774_075_005_696);
        w.js_uint(MAX_SAFE_INTEGER + 1);
        let bytes = w.into_bytes();
        // 1774075005696 as cbor-x writes it (captured from cbor-x 1.6.9)
        assert_eq!(
            bytes,
            [
                &[0x07, 0xfb, 0x42, 0x79, 0xd0, 0xf1, 0xc4, 0xb0, 0x00, 0x00][..],
                &[0x1b, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01],
            ]
            .concat()
        );
        let mut r = Reader::new(&bytes, Limits::default());
        assert_eq!(r.js_uint("n"), Ok(7));
        assert_eq!(r.js_uint("n"), Ok(1_774_075_005_696));
        assert_eq!(r.js_uint("n"), Ok(MAX_SAFE_INTEGER + 1));
        assert!(r.at_end());
    }
}
