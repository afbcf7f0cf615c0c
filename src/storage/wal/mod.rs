//! The write-ahead log: append-only segment files of length-prefixed,
//! CRC32C-checked records, with group commit so concurrent writers share one
//! fsync. Payloads are opaque bytes; the metrics head and the log store each
//! define their own record encodings on top.
//!
//! INTERFACE CONTRACT (the bodies are being written; signatures are fixed):
//! - `Wal::open(dir, opts)` creates `dir` if needed and opens a fresh segment
//!   for appending after the existing ones (it never appends to a segment that
//!   may have a torn tail).
//! - `Wal::append(&[payload])` writes the records in order and returns only
//!   after they are fsynced (group commit). Blocking. Thread-safe.
//! - `replay(dir, f)` calls `f` with every record of every segment in order.
//!   A torn record at the end of the *last* segment is tolerated (truncated
//!   away and reported in the stats); a bad record anywhere else is an error
//!   naming the segment and offset.
//! - `Wal::cut()` starts a new segment and returns its index; records appended
//!   afterwards go to segments `>=` that index.
//! - `Wal::truncate_before(n)` deletes segments with index `< n`.
//!
//! Layout: [`format`] is the byte format, `segment` the files and the `LOCK`,
//! `writer` the group commit, `reader` replay and torn-tail repair.

pub mod format;
mod reader;
mod segment;
#[cfg(test)]
mod tests;
mod writer;

use std::path::Path;
use std::time::Duration;

/// fdatasync latency of segment writes.
pub const FSYNC_DURATION_SECONDS: &str = "strata_wal_fsync_duration_seconds";
/// Records appended (acknowledged).
pub const RECORDS_TOTAL: &str = "strata_wal_records_total";
/// Bytes written to segments, framing included.
pub const BYTES_WRITTEN_TOTAL: &str = "strata_wal_bytes_written_total";
/// fdatasync calls on segments.
pub const FSYNCS_TOTAL: &str = "strata_wal_fsyncs_total";
/// Segment files in the WAL directory.
pub const SEGMENTS: &str = "strata_wal_segments";

/// WAL errors.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// I/O failure.
    #[error("wal {context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A record failed its checksum or length check before the tail.
    #[error("wal corrupt record in segment {segment} at offset {offset}: {reason}")]
    Corrupt {
        /// Segment index.
        segment: u64,
        /// Byte offset of the bad record.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// The WAL failed an fsync earlier and refuses further writes.
    #[error("wal is failed after an earlier write error: {0}")]
    Failed(String),
}

/// WAL settings.
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// A segment is closed and a new one started past this size.
    pub segment_size: u64,
    /// fsync before acknowledging (turn off only in benchmarks of other parts).
    pub fsync: bool,
    /// Longest a writer waits for others to join its group commit.
    pub max_group_delay: Duration,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size: 128 << 20,
            fsync: true,
            max_group_delay: Duration::from_millis(0),
        }
    }
}

/// Figures from a replay.
#[derive(Debug, Clone, Default)]
pub struct ReplayStats {
    /// Segments read.
    pub segments: u64,
    /// Records delivered.
    pub records: u64,
    /// Bytes of payload delivered.
    pub bytes: u64,
    /// Bytes of a torn tail that were dropped (0 when the tail was clean).
    pub torn_tail_bytes: u64,
}

/// An open write-ahead log. Share it between threads behind an `Arc`;
/// dropping it releases the directory lock (call [`Wal::close`] first to
/// learn about a failing final fsync).
pub struct Wal {
    writer: writer::Writer,
}

impl Wal {
    /// Opens (creating if needed) the WAL in `dir` for appending: takes the
    /// directory lock, cuts a torn tail a crash left, and starts a new segment.
    pub fn open(dir: &Path, opts: WalOptions) -> Result<Wal, WalError> {
        let (writer, _) = writer::Writer::open(dir, opts, None)?;
        Ok(Wal { writer })
    }

    /// [`replay`] then [`Wal::open`] in one pass: under the directory lock,
    /// calls `f(segment, payload)` for every record (cutting a torn tail as
    /// replay does), then starts a new segment. Each segment is read once.
    pub fn open_replaying(
        dir: &Path,
        opts: WalOptions,
        f: &mut RecordSink<'_>,
    ) -> Result<(Wal, ReplayStats), WalError> {
        let (writer, stats) = writer::Writer::open(dir, opts, Some(f))?;
        Ok((Wal { writer }, stats))
    }

    /// Appends records; returns after they are durable.
    pub fn append(&self, records: &[&[u8]]) -> Result<(), WalError> {
        self.writer.append(records)
    }

    /// Starts a new segment; returns its index.
    pub fn cut(&self) -> Result<u64, WalError> {
        self.writer.cut()
    }

    /// Deletes segments whose index is below `segment` (never the one being
    /// appended to).
    pub fn truncate_before(&self, segment: u64) -> Result<(), WalError> {
        self.writer.truncate_before(segment)
    }

    /// Writes what is queued, fsyncs and closes the current segment and
    /// releases the directory lock; later appends fail. Closing twice is
    /// harmless.
    pub fn close(&self) -> Result<(), WalError> {
        self.writer.close()
    }
}

/// Receives `(segment, payload)` for each record during [`replay`].
pub type RecordSink<'a> = dyn FnMut(u64, &[u8]) -> Result<(), WalError> + 'a;

/// Calls `f(segment, payload)` for every record in `dir`, in order.
/// A torn tail is cut off the files (see the module doc); a missing `dir`
/// replays nothing.
pub fn replay(dir: &Path, f: &mut RecordSink<'_>) -> Result<ReplayStats, WalError> {
    reader::replay(dir, f)
}
