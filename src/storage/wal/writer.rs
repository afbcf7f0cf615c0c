//! Appending with group commit.
//!
//! Each `append` encodes its records, queues them under the mutex and takes a
//! sequence number. If nobody is writing, the caller becomes the *leader*: it
//! takes everything queued so far (its own records and those of every caller
//! that arrived while the previous group was being fsynced), writes it with one
//! `write` and one `fdatasync` outside the lock, publishes the highest sequence
//! now durable and wakes the others. Callers whose records went out in that
//! group return; the rest elect the next leader. Under load, one fsync thus
//! serves many writers without any timer; `max_group_delay` optionally makes
//! the leader wait for more company first.
//!
//! A failed write or fsync leaves the file in an unknown state (and after a
//! failed fsync the kernel may have dropped the dirty pages), so the WAL turns
//! Failed and refuses every later write instead of retrying.

use std::path::{Path, PathBuf};
use std::time::Instant;

use parking_lot::{Condvar, Mutex, MutexGuard};

use super::format::{encode_record, HEADER_LEN};
use super::segment::{io_err, list, sync_data, sync_dir, DirLock, Segment};
use super::{
    reader, RecordSink, ReplayStats, WalError, WalOptions, BYTES_WRITTEN_TOTAL, RECORDS_TOTAL,
    SEGMENTS,
};

/// Shared state behind the mutex.
struct State {
    /// Encoded records waiting for the next group.
    pending: Vec<u8>,
    pending_records: u64,
    /// Sequence number of the last queued `append` call.
    queued_seq: u64,
    /// Every `append` with a sequence number up to this one is durable.
    durable_seq: u64,
    /// A leader, `cut` or `close` owns `segment` and does I/O unlocked.
    busy: bool,
    /// The segment being appended to (taken out while `busy`).
    segment: Option<Segment>,
    /// Its index (readable while `busy`; a rollover in flight only raises it).
    current: u64,
    /// Why the WAL failed, once it has.
    failed: Option<String>,
    closed: bool,
    /// Groups committed and records in them (for figures and tests).
    groups: u64,
    grouped_records: u64,
}

impl State {
    fn check_writable(&self) -> Result<(), WalError> {
        if let Some(why) = &self.failed {
            return Err(WalError::Failed(why.clone()));
        }
        if self.closed {
            return Err(WalError::Failed("the wal was closed".to_owned()));
        }
        Ok(())
    }
}

/// The appending side of an open WAL.
pub(crate) struct Writer {
    dir: PathBuf,
    opts: WalOptions,
    state: Mutex<State>,
    cond: Condvar,
    /// Held until `close` (or drop), so a closed WAL can be reopened at once.
    lock: Mutex<Option<DirLock>>,
    /// Makes the next sync fail (tests of the Failed state).
    #[cfg(test)]
    pub(super) fail_next_sync: std::sync::atomic::AtomicBool,
}

impl Writer {
    /// Opens for appending; with a `sink`, first replays every record into
    /// it (which also repairs the tail), so each segment is read once.
    pub fn open(
        dir: &Path,
        opts: WalOptions,
        sink: Option<&mut RecordSink<'_>>,
    ) -> Result<(Writer, ReplayStats), WalError> {
        std::fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
        let lock = DirLock::acquire(dir)?;
        let indexes = list(dir)?;
        let stats = match sink {
            Some(f) => reader::replay(dir, f)?,
            None => ReplayStats {
                torn_tail_bytes: reader::repair_tail(dir, &indexes)?,
                ..ReplayStats::default()
            },
        };
        let next = indexes.last().map_or(0, |i| i + 1);
        let segment = Segment::create(dir, next, opts.fsync)?;
        publish_segment_count(dir);
        let writer = Writer {
            dir: dir.to_owned(),
            opts,
            state: Mutex::new(State {
                pending: Vec::new(),
                pending_records: 0,
                queued_seq: 0,
                durable_seq: 0,
                busy: false,
                current: segment.index,
                segment: Some(segment),
                failed: None,
                closed: false,
                groups: 0,
                grouped_records: 0,
            }),
            cond: Condvar::new(),
            lock: Mutex::new(Some(lock)),
            #[cfg(test)]
            fail_next_sync: std::sync::atomic::AtomicBool::new(false),
        };
        Ok((writer, stats))
    }

    pub fn append(&self, records: &[&[u8]]) -> Result<(), WalError> {
        if records.is_empty() {
            return Ok(());
        }
        let size: usize = records.iter().map(|r| r.len() + 8).sum();
        let mut buf = Vec::with_capacity(size);
        for r in records {
            if r.len() > super::format::MAX_RECORD_LEN {
                return Err(WalError::Io {
                    context: format!(
                        "append a record of {} bytes (limit {})",
                        r.len(),
                        super::format::MAX_RECORD_LEN
                    ),
                    source: std::io::ErrorKind::InvalidInput.into(),
                });
            }
            encode_record(&mut buf, r);
        }
        let mut st = self.state.lock();
        st.check_writable()?;
        st.pending.extend_from_slice(&buf);
        st.pending_records += records.len() as u64;
        st.queued_seq += 1;
        let mine = st.queued_seq;
        loop {
            if st.durable_seq >= mine {
                return Ok(());
            }
            if let Some(why) = &st.failed {
                return Err(WalError::Failed(why.clone()));
            }
            if st.busy {
                self.cond.wait(&mut st);
            } else {
                self.lead(&mut st);
            }
        }
    }

    /// Writes and syncs everything queued as one group. Called with the lock
    /// held and `busy` clear; returns with the lock held, `busy` clear and
    /// either `durable_seq` advanced or `failed` set.
    fn lead(&self, st: &mut MutexGuard<'_, State>) {
        st.busy = true;
        if !self.opts.max_group_delay.is_zero() {
            let deadline = Instant::now() + self.opts.max_group_delay;
            while Instant::now() < deadline {
                self.cond.wait_until(st, deadline);
            }
        }
        let buf = std::mem::take(&mut st.pending);
        let records = std::mem::take(&mut st.pending_records);
        let upto = st.queued_seq;
        let mut seg = st.segment.take().expect("segment present when not busy");
        let res = MutexGuard::unlocked(st, || self.write_group(&mut seg, &buf));
        st.current = seg.index;
        st.segment = Some(seg);
        match res {
            Ok(()) => {
                st.durable_seq = upto;
                st.groups += 1;
                st.grouped_records += records;
                metrics::counter!(RECORDS_TOTAL).increment(records);
                metrics::counter!(BYTES_WRITTEN_TOTAL).increment(buf.len() as u64);
            }
            Err(e) => {
                tracing::error!(error = %e, "wal: write failed; refusing further writes");
                st.failed = Some(e.to_string());
            }
        }
        // Hand the (now empty) buffer back to reuse its allocation.
        if st.pending.is_empty() {
            let mut buf = buf;
            buf.clear();
            st.pending = buf;
        }
        st.busy = false;
        self.cond.notify_all();
    }

    /// Rolls over if the group would overflow the segment, then writes and
    /// syncs it.
    fn write_group(&self, seg: &mut Segment, buf: &[u8]) -> Result<(), WalError> {
        use std::io::Write;
        if seg.size > HEADER_LEN as u64 && seg.size + buf.len() as u64 > self.opts.segment_size {
            *seg = Segment::create(&self.dir, seg.index + 1, self.opts.fsync)?;
            publish_segment_count(&self.dir);
        }
        let what = super::format::segment_path(&self.dir, seg.index);
        seg.file
            .write_all(buf)
            .map_err(io_err(format!("write {}", what.display())))?;
        seg.size += buf.len() as u64;
        #[cfg(test)]
        if self
            .fail_next_sync
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(WalError::Io {
                context: format!("fsync {} (injected)", what.display()),
                source: std::io::Error::from_raw_os_error(libc::EIO),
            });
        }
        sync_data(&seg.file, self.opts.fsync, &what.display().to_string())
    }

    /// Waits until no I/O is in flight, flushing queued records first, and
    /// returns the lock with `busy` set so the caller owns the segment.
    fn quiesce(&self) -> Result<MutexGuard<'_, State>, WalError> {
        let mut st = self.state.lock();
        loop {
            st.check_writable()?;
            if st.busy {
                self.cond.wait(&mut st);
            } else if !st.pending.is_empty() {
                self.lead(&mut st);
            } else {
                st.busy = true;
                return Ok(st);
            }
        }
    }

    fn release(&self, mut st: MutexGuard<'_, State>) {
        st.busy = false;
        self.cond.notify_all();
    }

    pub fn cut(&self) -> Result<u64, WalError> {
        let mut st = self.quiesce()?;
        let index = st.current + 1;
        let res = MutexGuard::unlocked(&mut st, || {
            Segment::create(&self.dir, index, self.opts.fsync)
        });
        // Every group was synced when written: the old file is durable, and
        // on failure the old segment stays current.
        let out = res.map(|seg| {
            st.segment = Some(seg);
            st.current = index;
            index
        });
        self.release(st);
        publish_segment_count(&self.dir);
        out
    }

    pub fn truncate_before(&self, segment: u64) -> Result<(), WalError> {
        // Never the segment being appended to.
        let limit = segment.min(self.state.lock().current);
        let mut removed = false;
        for index in list(&self.dir)? {
            if index >= limit {
                break;
            }
            let path = super::format::segment_path(&self.dir, index);
            std::fs::remove_file(&path).map_err(io_err(format!("remove {}", path.display())))?;
            removed = true;
        }
        if removed {
            if self.opts.fsync {
                sync_dir(&self.dir)?;
            }
            publish_segment_count(&self.dir);
        }
        Ok(())
    }

    pub fn close(&self) -> Result<(), WalError> {
        let mut st = match self.quiesce() {
            Ok(st) => st,
            Err(WalError::Failed(_)) if self.state.lock().closed => return Ok(()),
            Err(e) => return Err(e),
        };
        st.closed = true;
        let seg = st.segment.take();
        let res = match &seg {
            Some(s) => sync_data(&s.file, true, "segment on close"),
            None => Ok(()),
        };
        drop(seg);
        self.lock.lock().take();
        self.release(st);
        res
    }

    /// Index of the segment being appended to.
    #[cfg(test)]
    pub(super) fn current_segment(&self) -> u64 {
        self.state.lock().current
    }

    /// Groups committed and records written in them.
    #[cfg(test)]
    pub(super) fn group_stats(&self) -> (u64, u64) {
        let st = self.state.lock();
        (st.groups, st.grouped_records)
    }
}

/// Sets the segments gauge from the directory (best effort: it is a figure).
fn publish_segment_count(dir: &Path) {
    if let Ok(list) = list(dir) {
        metrics::gauge!(SEGMENTS).set(list.len() as f64);
    }
}
