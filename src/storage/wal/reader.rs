//! Reading segments back: replay, and the tail repair `Wal::open` runs.
//!
//! Only a crash can leave a record half-written, and only in the segment that
//! was being appended to. So the *tail* — the last segment holding records,
//! plus any header-only or half-created segments after it — may end in a torn
//! record, which is cut off (the writer never acknowledged it). Anywhere else a
//! bad record is corruption and is reported with its segment and offset.
//!
//! Within the tail, a bad record counts as torn only when it looks like one:
//! the file ends inside it, it is the file's last record, or everything from it
//! to the end is zeros (blocks allocated but never written). A checksum failure
//! with good-looking data after it is reported as corruption there too.

use std::fs::{self, OpenOptions};
use std::path::Path;

use super::format::{
    check_header, decode_record, segment_path, Decoded, HEADER_LEN, RECORD_HEADER_LEN,
};
use super::segment::{io_err, list, sync_dir};
use super::{RecordSink, ReplayStats, WalError};

/// What scanning one segment found.
#[derive(Debug, Default)]
struct SegmentScan {
    records: u64,
    bytes: u64,
    /// Offset where a torn tail starts, if any.
    torn_at: Option<u64>,
    len: u64,
}

/// Calls `f(segment, payload)` for every record in `dir`, in order, cutting
/// off a torn tail. A missing directory replays nothing.
pub(crate) fn replay(dir: &Path, f: &mut RecordSink<'_>) -> Result<ReplayStats, WalError> {
    if !dir.exists() {
        return Ok(ReplayStats::default());
    }
    let indexes = list(dir)?;
    let tail_from = tail_start(dir, &indexes)?;
    let mut stats = ReplayStats::default();
    for (i, &index) in indexes.iter().enumerate() {
        let in_tail = i >= tail_from;
        let scan = scan_file(dir, index, in_tail, Some(&mut *f))?;
        stats.segments += 1;
        stats.records += scan.records;
        stats.bytes += scan.bytes;
        stats.torn_tail_bytes += cut_torn(dir, index, &scan)?;
    }
    Ok(stats)
}

/// Repairs the tail segments (see the module doc) without delivering
/// records; returns the torn bytes removed. Run by `Wal::open` before it starts
/// a new segment, so a torn record never ends up in the middle of the log.
pub(crate) fn repair_tail(dir: &Path, indexes: &[u64]) -> Result<u64, WalError> {
    let tail_from = tail_start(dir, indexes)?;
    let mut torn = 0;
    for &index in &indexes[tail_from..] {
        let scan = scan_file(dir, index, true, None)?;
        torn += cut_torn(dir, index, &scan)?;
    }
    Ok(torn)
}

/// Position in `indexes` of the last segment holding records (or 0): it and
/// the segments after it form the tail.
fn tail_start(dir: &Path, indexes: &[u64]) -> Result<usize, WalError> {
    for (i, &index) in indexes.iter().enumerate().rev() {
        let path = segment_path(dir, index);
        let meta = fs::metadata(&path).map_err(io_err(format!("stat {}", path.display())))?;
        if meta.len() > HEADER_LEN as u64 {
            return Ok(i);
        }
    }
    Ok(0)
}

fn scan_file(
    dir: &Path,
    index: u64,
    in_tail: bool,
    sink: Option<&mut RecordSink<'_>>,
) -> Result<SegmentScan, WalError> {
    let path = segment_path(dir, index);
    let data = fs::read(&path).map_err(io_err(format!("read {}", path.display())))?;
    scan(index, &data, in_tail, sink)
}

/// Walks the records of segment `index` held in `data`.
fn scan(
    index: u64,
    data: &[u8],
    in_tail: bool,
    mut sink: Option<&mut RecordSink<'_>>,
) -> Result<SegmentScan, WalError> {
    let mut out = SegmentScan {
        len: data.len() as u64,
        ..SegmentScan::default()
    };
    let corrupt = |offset: usize, reason: String| WalError::Corrupt {
        segment: index,
        offset: offset as u64,
        reason,
    };
    if let Err(reason) = check_header(data, index) {
        // A crash while creating the segment leaves a short or unwritten header.
        if in_tail && (data.len() < HEADER_LEN || all_zero(data)) {
            out.torn_at = Some(0);
            return Ok(out);
        }
        return Err(corrupt(0, reason));
    }
    let mut offset = HEADER_LEN;
    while offset < data.len() {
        let rest = &data[offset..];
        match decode_record(rest) {
            Decoded::Record(payload, n) => {
                if let Some(f) = sink.as_deref_mut() {
                    f(index, payload)?;
                }
                out.records += 1;
                out.bytes += payload.len() as u64;
                offset += n;
            }
            Decoded::Truncated if in_tail => {
                out.torn_at = Some(offset as u64);
                return Ok(out);
            }
            Decoded::Truncated => {
                return Err(corrupt(
                    offset,
                    format!(
                        "record cut short by the end of the segment ({} bytes left)",
                        rest.len()
                    ),
                ))
            }
            Decoded::Bad(reason) => {
                if in_tail && (is_last_record(rest) || all_zero(rest)) {
                    out.torn_at = Some(offset as u64);
                    return Ok(out);
                }
                return Err(corrupt(offset, reason));
            }
        }
    }
    Ok(out)
}

/// Whether the record at the start of `rest` claims to end exactly at the end.
fn is_last_record(rest: &[u8]) -> bool {
    let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
    RECORD_HEADER_LEN.checked_add(len) == Some(rest.len())
}

fn all_zero(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

/// Cuts a torn tail off segment `index` (a segment torn inside its header is
/// removed); returns the bytes dropped.
fn cut_torn(dir: &Path, index: u64, scan: &SegmentScan) -> Result<u64, WalError> {
    let Some(at) = scan.torn_at else {
        return Ok(0);
    };
    let path = segment_path(dir, index);
    if at == 0 {
        fs::remove_file(&path).map_err(io_err(format!("remove {}", path.display())))?;
        sync_dir(dir)?;
    } else {
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(io_err(format!("open {}", path.display())))?;
        file.set_len(at)
            .map_err(io_err(format!("truncate {}", path.display())))?;
        file.sync_all()
            .map_err(io_err(format!("fsync {}", path.display())))?;
    }
    tracing::warn!(
        segment = index,
        offset = at,
        dropped_bytes = scan.len - at,
        "wal: cut off a torn tail left by a crash"
    );
    Ok(scan.len - at)
}
