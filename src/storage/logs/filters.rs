//! The warm tier's token filters for segments written with a full-text
//! index: while hot, such a segment keeps no per-block filter (the index
//! answers whole tokens: dictionary postings, and the rare-token function
//! with fingerprints). When it leaves the hot window its blocks are read
//! back and re-tokenized off the ingest path, and their Bloom filters are
//! written here before the index is deleted, so the warm tier still skips
//! blocks by whole tokens.
//!
//! File `filters` in the segment directory: `STRLOGBF | version u32 |
//! body | CRC32C(body)`; body: block count, then per block its filter's
//! bytes (length-prefixed). Written to `filters.tmp`, fsynced, renamed and
//! the directory fsynced: a crash leaves the old state (index kept, the
//! conversion runs again) or the new one. A damaged file is ignored and
//! rebuilt on the next tiering pass.

use std::fs;
use std::io::Write;
use std::path::Path;

use super::codec::{put_bytes, put_uvarint, Reader};
use super::fulltext::block_filter;
use super::segment::Segment;
use super::tokens::TokenFilter;
use crate::logs::LineHint;
use crate::storage::tsdb::block::dir::{fsync_dir, io};
use crate::storage::StorageError;

const MAGIC: &[u8; 8] = b"STRLOGBF";
const VERSION: u32 = 1;
/// The file in a segment directory.
pub(crate) const FILE: &str = "filters";

/// Token filters of every block of a segment, by block number.
#[derive(Debug)]
pub(crate) struct WarmFilters {
    pub filters: Vec<TokenFilter>,
    /// Size of the file.
    pub file_bytes: u64,
}

/// Reads `dir/filters` for a segment of `blocks` blocks; `None` when
/// there is none or it is damaged (reported).
pub(crate) fn open(dir: &Path, blocks: u32) -> Option<std::sync::Arc<WarmFilters>> {
    let buf = match fs::read(dir.join(FILE)) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(segment = %dir.display(), error = %e, "warm token filters unreadable");
            return None;
        }
    };
    match parse(&buf, blocks) {
        Ok(filters) => Some(std::sync::Arc::new(WarmFilters {
            filters,
            file_bytes: buf.len() as u64,
        })),
        Err(reason) => {
            tracing::warn!(segment = %dir.display(), %reason, "warm token filters damaged; rebuilt when the segment is next tiered");
            None
        }
    }
}

fn parse(buf: &[u8], blocks: u32) -> Result<Vec<TokenFilter>, String> {
    if buf.len() < 16 || &buf[..8] != MAGIC {
        return Err("bad magic".into());
    }
    let v = u32::from_le_bytes(buf[8..12].try_into().expect("4 bytes"));
    if v != VERSION {
        return Err(format!("unsupported format version {v}"));
    }
    let (body, crc) = buf[12..].split_at(buf.len() - 16);
    if crc32c::crc32c(body).to_le_bytes() != crc {
        return Err("checksum mismatch".into());
    }
    let mut r = Reader::new(body);
    let n = r.len("block count")?;
    if n != blocks as usize {
        return Err(format!("{n} filters, the segment has {blocks} blocks"));
    }
    let filters = (0..n)
        .map(|_| TokenFilter::from_bytes(r.bytes("token filter")?))
        .collect::<Result<Vec<_>, _>>()?;
    if !r.is_empty() {
        return Err("trailing bytes".into());
    }
    Ok(filters)
}

/// Re-reads every block of `seg`, builds its token filter and writes the
/// file durably.
pub(crate) fn build(seg: &Segment) -> Result<WarmFilters, StorageError> {
    let all = LineHint::default();
    let mut filters = Vec::new();
    for b in seg.streams.iter().flat_map(|s| &s.blocks) {
        let entries = seg.read_block(b, &all)?;
        filters.push(block_filter(&entries));
    }
    let mut body = Vec::new();
    put_uvarint(&mut body, filters.len() as u64);
    for f in &filters {
        put_bytes(&mut body, &f.to_bytes());
    }
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    let tmp = seg.dir.join(format!("{FILE}.tmp"));
    let mut f = fs::File::create(&tmp).map_err(io(format!("create {}", tmp.display())))?;
    f.write_all(&out)
        .and_then(|_| f.sync_all())
        .map_err(io(format!("write {}", tmp.display())))?;
    let path = seg.dir.join(FILE);
    fs::rename(&tmp, &path).map_err(io(format!("rename {}", tmp.display())))?;
    fsync_dir(&seg.dir)?;
    Ok(WarmFilters {
        filters,
        file_bytes: out.len() as u64,
    })
}
