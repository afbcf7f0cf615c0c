//! Moving head data into blocks and shrinking the WAL afterwards.
//!
//! The periodic flush writes the oldest block-aligned range of a tenant once
//! its head spans more than 1.5 block durations; the admin flush writes every
//! range. Both then checkpoint: cut the WAL, rewrite what the head still holds
//! (series, samples, exemplars, metadata) into the new segments and delete the
//! older ones. Both run with the append gate held exclusively, so no
//! acknowledged sample can be missing from both the blocks and the new segments.
//!
//! Once a range's block is durable, a truncation record goes into the WAL
//! before anything else happens: a crash anywhere between the flush and the
//! deletion of the old segments replays those segments, and the record drops
//! what the block holds at the point where the head dropped it (samples
//! appended after it, out-of-order ones into the flushed range included, stay).
//! Only a crash between the block's rename and that record's fsync replays
//! the range again (its next flush writes an overlapping block that
//! compaction merges: duplicated work, nothing lost). The checkpoint starts
//! with the head's lower bound for in-order samples, so a restart keeps
//! refusing samples older than the flushed ranges as a running head does.

use std::time::Instant;

use super::block::BlockStore;
use super::head::TenantHead;
use super::series::align_down;
use super::{wal_error, Tsdb};
use crate::storage::wal::Wal;
use crate::storage::StorageError;

/// WAL records (of up to 1 MiB each) handed to one `Wal::append` during a
/// checkpoint. A group is held three times while it is written (the
/// records, their framed copy, the WAL's pending buffer, which keeps its
/// capacity for the next group), so it stays small: 4 MiB groups, a few
/// more fsyncs per checkpoint.
const CHECKPOINT_APPEND_RECORDS: usize = 4;

impl Tsdb {
    /// Flushes due ranges of every tenant, then checkpoints the WAL when
    /// anything was flushed. Returns the number of ranges flushed.
    pub(crate) fn flush_due(&self) -> Result<usize, StorageError> {
        let blocks = &self.blocks;
        let bd = self.opts.block_duration_ms;
        let due = |h: &TenantHead| h.time_bounds().is_some_and(|(lo, hi)| hi - lo > bd * 3 / 2);
        if !self.all_heads().iter().any(|h| due(h)) {
            return Ok(0);
        }
        let gate = self.gate.write();
        let wal = gate.as_ref().ok_or_else(Tsdb::closed)?;
        let mut flushed = 0;
        for h in self.all_heads() {
            while let Some((lo, _)) = h.time_bounds().filter(|_| due(&h)) {
                let start = align_down(lo, bd);
                write_range(blocks, &h, start, start + bd)?;
                h.truncate_before(start + bd, true);
                self.log_truncation(wal, &h, start + bd)?;
                flushed += 1;
            }
        }
        if flushed > 0 {
            self.checkpoint(wal)?;
        }
        Ok(flushed)
    }

    /// Writes everything in the head into blocks (one per block-aligned
    /// range), empties the head and checkpoints the WAL.
    pub(crate) fn flush_all(&self) -> Result<(), StorageError> {
        let blocks = &self.blocks;
        let bd = self.opts.block_duration_ms;
        let gate = self.gate.write();
        let wal = gate.as_ref().ok_or_else(Tsdb::closed)?;
        for h in self.all_heads() {
            let Some((lo, hi)) = h.time_bounds() else {
                continue;
            };
            let mut start = align_down(lo, bd);
            while start <= hi {
                write_range(blocks, &h, start, start.saturating_add(bd))?;
                start = start.saturating_add(bd);
            }
            h.truncate_before(hi.saturating_add(1), false);
            self.log_truncation(wal, &h, hi.saturating_add(1))?;
        }
        self.checkpoint(wal)
    }

    /// Logs that `h` dropped what it held before `t` into blocks now durable.
    fn log_truncation(&self, wal: &Wal, h: &TenantHead, t: i64) -> Result<(), StorageError> {
        crash_point(CrashPoint::BeforeTruncationRecord)?;
        wal.append(&[&h.truncation_record(t)])
            .map_err(|e| wal_error(&self.dir.join("wal"), e))?;
        crash_point(CrashPoint::AfterTruncationRecord)
    }

    /// Cuts the WAL, rewrites the heads into the new segment and deletes the
    /// segments before it. The caller holds the append gate exclusively.
    fn checkpoint(&self, wal: &Wal) -> Result<(), StorageError> {
        let start = Instant::now();
        let wal_dir = self.dir.join("wal");
        let first = wal.cut().map_err(|e| wal_error(&wal_dir, e))?;
        crash_point(CrashPoint::AfterCut)?;
        let mut pending: Vec<Vec<u8>> = Vec::new();
        let mut records = 0usize;
        let mut append = |pending: &mut Vec<Vec<u8>>| -> Result<(), StorageError> {
            if pending.is_empty() {
                return Ok(());
            }
            let refs: Vec<&[u8]> = pending.iter().map(Vec::as_slice).collect();
            wal.append(&refs).map_err(|e| wal_error(&wal_dir, e))?;
            records += pending.len();
            pending.clear();
            Ok(())
        };
        for h in self.all_heads() {
            h.checkpoint_records(&mut |rec| {
                pending.push(rec);
                if pending.len() >= CHECKPOINT_APPEND_RECORDS {
                    append(&mut pending)?;
                }
                Ok(())
            })?;
        }
        append(&mut pending)?;
        crash_point(CrashPoint::BeforeWalTruncation)?;
        wal.truncate_before(first)
            .map_err(|e| wal_error(&wal_dir, e))?;
        tracing::info!(
            segment = first,
            records,
            duration_ms = start.elapsed().as_millis() as u64,
            "wal checkpointed"
        );
        Ok(())
    }
}

/// Points of a flush where tests make it stop as a crash would (what
/// follows never runs; the test then drops the store without closing it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CrashPoint {
    /// A range's block is durable, its truncation record not yet logged.
    BeforeTruncationRecord,
    /// The truncation record is durable, the checkpoint not started.
    AfterTruncationRecord,
    /// The WAL was cut, nothing rewritten yet.
    AfterCut,
    /// The checkpoint is written, the old segments not yet deleted.
    BeforeWalTruncation,
}

#[cfg(test)]
thread_local! {
    /// Where flushes on this thread stop (tests only).
    pub(crate) static CRASH_AT: std::cell::Cell<Option<CrashPoint>> =
        const { std::cell::Cell::new(None) };
}

/// Fails as a crash at `p` would when a test asked for it; nothing otherwise.
fn crash_point(p: CrashPoint) -> Result<(), StorageError> {
    #[cfg(test)]
    if CRASH_AT.get() == Some(p) {
        return Err(StorageError::Unavailable(format!("simulated crash {p:?}")));
    }
    let _ = p;
    Ok(())
}

/// Writes one block of `[lo, hi)` from a tenant's head, if it has samples there.
fn write_range(blocks: &BlockStore, h: &TenantHead, lo: i64, hi: i64) -> Result<(), StorageError> {
    let start = Instant::now();
    let mut series = h.range_iter(lo, hi);
    let n = series.remaining();
    if n == 0 {
        return Ok(());
    }
    let meta = blocks.write_block(&h.tenant, lo, hi, &mut series)?;
    tracing::info!(
        tenant = %h.tenant,
        min_t = lo,
        max_t = hi,
        series = n,
        block = meta.as_ref().map(|m| m.id.as_str()).unwrap_or(""),
        duration_ms = start.elapsed().as_millis() as u64,
        "head range flushed into a block"
    );
    Ok(())
}
