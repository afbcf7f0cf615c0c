//! A hand-written protobuf wire reader shared by the push decoders (remote
//! write 1.0 in `prom::decode_v1`, Loki's `logproto.PushRequest` in
//! `loki::decode`): fields are walked in place over the body so decoded
//! strings can borrow it. Errors name the place, as prost's do.

/// Protobuf wire types.
pub(crate) const VARINT: u8 = 0;
pub(crate) const FIXED64: u8 = 1;
pub(crate) const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;

/// Nested groups deeper than this are refused (prost's recursion limit).
const MAX_DEPTH: u32 = 100;

/// Why a body is not valid protobuf for its message; the message names the place.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(String);

pub(crate) fn err(what: impl Into<String>) -> DecodeError {
    DecodeError(what.into())
}

/// A cursor over protobuf bytes (shared with the Loki push decoder).
pub(crate) struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Cursor<'a> {
        Cursor { b, pos: 0 }
    }

    pub(crate) fn done(&self) -> bool {
        self.pos >= self.b.len()
    }

    pub(crate) fn varint(&mut self) -> Result<u64, DecodeError> {
        // Keys and short lengths are one byte.
        if let Some(&byte) = self.b.get(self.pos).filter(|&&b| b < 0x80) {
            self.pos += 1;
            return Ok(byte as u64);
        }
        let mut v = 0u64;
        for i in 0..10 {
            let byte = *self
                .b
                .get(self.pos)
                .ok_or_else(|| err("truncated varint"))?;
            self.pos += 1;
            if i == 9 && byte > 1 {
                return Err(err("varint overflows 64 bits"));
            }
            v |= ((byte & 0x7f) as u64) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(err("varint longer than 10 bytes"))
    }

    /// A field key: (field number, wire type).
    pub(crate) fn key(&mut self) -> Result<(u64, u8), DecodeError> {
        let k = self.varint()?;
        let (field, wire) = (k >> 3, (k & 7) as u8);
        if field == 0 || field > u32::MAX as u64 {
            return Err(err(format!("invalid field number {field}")));
        }
        Ok((field, wire))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| err("field runs past the end of its message"))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.varint()?;
        self.take(usize::try_from(n).map_err(|_| err("length out of range"))?)
    }

    pub(crate) fn fixed64(&mut self) -> Result<u64, DecodeError> {
        let s = self.take(8)?;
        Ok(u64::from_le_bytes(s.try_into().expect("8 bytes")))
    }

    /// Skips the value of a field of wire type `wire` (groups included).
    pub(crate) fn skip(&mut self, field: u64, wire: u8, depth: u32) -> Result<(), DecodeError> {
        match wire {
            VARINT => self.varint().map(drop),
            FIXED64 => self.take(8).map(drop),
            LEN => self.bytes().map(drop),
            FIXED32 => self.take(4).map(drop),
            START_GROUP => {
                if depth >= MAX_DEPTH {
                    return Err(err("groups nested too deeply"));
                }
                loop {
                    if self.done() {
                        return Err(err("unterminated group"));
                    }
                    let (f, w) = self.key()?;
                    if w == END_GROUP {
                        return if f == field {
                            Ok(())
                        } else {
                            Err(err("mismatched end of group"))
                        };
                    }
                    self.skip(f, w, depth + 1)?;
                }
            }
            _ => Err(err(format!("invalid wire type {wire}"))),
        }
    }
}

/// Checks that a known field has the wire type its declaration implies.
pub(crate) fn expect(wire: u8, want: u8, what: &str) -> Result<(), DecodeError> {
    if wire == want {
        Ok(())
    } else {
        Err(err(format!(
            "{what}: invalid wire type {wire} (expected {want})"
        )))
    }
}
