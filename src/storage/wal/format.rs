//! The on-disk format, in one place.
//!
//! A segment file is named by its zero-padded index (`00000000000000000042.wal`)
//! and starts with a 24-byte header:
//!
//! ```text
//! magic "STRATWAL" (8) | version u32 LE | reserved u32 (0) | segment index u64 LE
//! ```
//!
//! followed by records:
//!
//! ```text
//! payload length u32 LE | CRC32C(length bytes ++ payload) u32 LE | payload
//! ```
//!
//! The checksum covers the length so a flipped length bit is caught rather
//! than misframing everything after it.

use std::path::{Path, PathBuf};

/// First bytes of every segment.
pub const MAGIC: &[u8; 8] = b"STRATWAL";
/// Current format version.
pub const VERSION: u32 = 1;
/// Size of the segment header.
pub const HEADER_LEN: usize = 24;
/// Size of a record's length + checksum prefix.
pub const RECORD_HEADER_LEN: usize = 8;
/// Largest payload one record may carry (the length field is a u32; we keep
/// well below it so a garbage length is recognised as such).
pub const MAX_RECORD_LEN: usize = 1 << 30;
/// Segment file name suffix.
const SUFFIX: &str = ".wal";

/// Encodes the header of segment `index`.
pub fn encode_header(index: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&index.to_le_bytes());
    h
}

/// Checks a segment header; `Err` says what is wrong.
pub fn check_header(buf: &[u8], index: u64) -> Result<(), String> {
    if buf.len() < HEADER_LEN {
        return Err(format!(
            "segment header is {} bytes, want {HEADER_LEN}",
            buf.len()
        ));
    }
    if &buf[..8] != MAGIC {
        return Err("bad magic".to_owned());
    }
    let version = u32::from_le_bytes(buf[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(format!("unsupported version {version}, want {VERSION}"));
    }
    let stored = u64::from_le_bytes(buf[16..24].try_into().expect("8 bytes"));
    if stored != index {
        return Err(format!(
            "header names segment {stored}, file name says {index}"
        ));
    }
    Ok(())
}

/// Appends one framed record to `out`.
pub fn encode_record(out: &mut Vec<u8>, payload: &[u8]) {
    let len = (payload.len() as u32).to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len), payload);
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
}

/// Outcome of decoding the record at the start of a buffer.
#[derive(Debug, PartialEq)]
pub enum Decoded<'a> {
    /// A good record and the total bytes it occupies.
    Record(&'a [u8], usize),
    /// The buffer ends inside the record (a write cut short).
    Truncated,
    /// The record is complete but wrong.
    Bad(String),
}

/// Decodes the record at the start of `buf` (which is not empty).
pub fn decode_record(buf: &[u8]) -> Decoded<'_> {
    if buf.len() < RECORD_HEADER_LEN {
        return Decoded::Truncated;
    }
    let len_bytes: [u8; 4] = buf[..4].try_into().expect("4 bytes");
    let len = u32::from_le_bytes(len_bytes) as usize;
    let want = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    if len > MAX_RECORD_LEN {
        return Decoded::Bad(format!(
            "record length {len} over the limit {MAX_RECORD_LEN}"
        ));
    }
    let end = RECORD_HEADER_LEN + len;
    if buf.len() < end {
        return Decoded::Truncated;
    }
    let payload = &buf[RECORD_HEADER_LEN..end];
    let got = crc32c::crc32c_append(crc32c::crc32c(&len_bytes), payload);
    if got != want {
        return Decoded::Bad(format!(
            "checksum mismatch (stored {want:#010x}, computed {got:#010x})"
        ));
    }
    Decoded::Record(payload, end)
}

/// Path of segment `index` in `dir`.
pub fn segment_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("{index:020}{SUFFIX}"))
}

/// Parses a segment file name back to its index.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}
