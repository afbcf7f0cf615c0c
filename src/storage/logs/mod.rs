//! The WAL-backed log store: per-tenant heads of per-stream buffers,
//! readable as soon as a push is acknowledged.
//!
//! Write path ([`LogStore`]'s [`LogWriter::push`]): the push is validated
//! against the tenant's newest timestamp per stream (out-of-order window,
//! Loki's "entry too far behind"), the accepted entries go into the WAL as
//! one record through the group-committed, fsynced `append`, and only then
//! are they applied to the head (identical entries dropped) and offered to
//! live-tail subscribers. `open` loads the segments and replays the WAL
//! into the heads (skipping records a segment already holds).
//!
//! The maintenance thread (`cut.rs`) cuts the heads once they are large or
//! old enough: under the exclusive gate the WAL is cut and every head is
//! frozen (still readable); each frozen head is then written as an
//! immutable segment (`segment.rs`) and, once all are durable, the WAL
//! segments before the cut are deleted. Retention deletes whole segments.
//! Reads merge segments, frozen heads and the live head.

mod block;
mod codec;
mod cut;
mod filters;
mod fulltext;
#[cfg(test)]
mod fulltext_tests;
mod fuse;
mod head;
mod needle;
mod options;
mod record;
mod segment;
#[cfg(test)]
mod tests;
mod tokens;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};
use tokio::sync::broadcast;

use self::head::Head;
use self::segment::Segment;
use super::wal::{self, Wal};
use super::StorageError;
use crate::logs::{
    LogEntry, LogReadError, LogReader, LogSelect, LogStats, LogWriteError, LogWriter, PushOutcome,
    PushStream, Stream,
};
use crate::model::{Labels, Matcher, Tenant};

pub use options::LogStoreOptions;
pub use segment::DiskBreakdown;

/// Log entries stored, per tenant.
pub const ENTRIES_INGESTED_TOTAL: &str = "strata_logs_entries_ingested_total";
/// Line bytes stored, per tenant.
pub const BYTES_INGESTED_TOTAL: &str = "strata_logs_bytes_ingested_total";
/// Entries refused (out-of-order window), per tenant.
pub const ENTRIES_REFUSED_TOTAL: &str = "strata_logs_entries_refused_total";
/// Bytes held in the heads.
pub const HEAD_BYTES: &str = "strata_logs_head_bytes";
/// Duration of the log WAL replay at the last start.
pub const WAL_REPLAY_DURATION_SECONDS: &str = "strata_logs_wal_replay_duration_seconds";
/// Segments on disk.
pub const SEGMENTS: &str = "strata_logs_segments";
/// Bytes of segments on disk.
pub const SEGMENT_BYTES: &str = "strata_logs_segment_bytes";
/// Time to write one segment.
pub const SEGMENT_WRITE_DURATION_SECONDS: &str = "strata_logs_segment_write_duration_seconds";
/// Bytes of the full-text indexes of hot segments.
pub const FULLTEXT_BYTES: &str = "strata_logs_fulltext_bytes";
/// Segments moved to the warm tier (full-text index dropped).
pub const FULLTEXT_SEGMENTS_DEMOTED_TOTAL: &str = "strata_logs_fulltext_segments_demoted_total";
/// Segment blocks decompressed by reads.
pub const BLOCKS_READ_TOTAL: &str = "strata_logs_blocks_read_total";

/// Capacity of a tenant's live-tail feed, in pushes.
const FEED_CAPACITY: usize = 1024;

/// A head cut from the live one, readable until its segment is durable.
#[derive(Clone)]
struct Frozen {
    head: Arc<Head>,
    /// The WAL segment the cut started; every record of this head is before it.
    wal_upto: u64,
}

/// A tenant's data.
#[derive(Default)]
struct TenantLogs {
    /// The live head.
    head: Head,
    /// Cut heads, oldest first, waiting to be written.
    frozen: Vec<Frozen>,
    /// Segments, oldest first.
    segments: Vec<Arc<Segment>>,
    /// Newest timestamp per stream, kept across head cuts (the
    /// out-of-order window is relative to it).
    newest: HashMap<Labels, i64>,
}

type Tenants = RwLock<HashMap<Tenant, Arc<RwLock<TenantLogs>>>>;

/// The WAL-backed log store.
pub struct LogStore {
    dir: PathBuf,
    opts: LogStoreOptions,
    tenants: Tenants,
    /// The WAL, `None` once closed. Pushes hold it shared from validation
    /// to apply; cuts and checkpoints hold it exclusively.
    gate: RwLock<Option<Wal>>,
    feeds: Mutex<HashMap<Tenant, broadcast::Sender<Arc<Vec<Stream>>>>>,
    /// Serialises segment writing (maintenance and explicit flushes).
    writing: Mutex<()>,
    maintenance: super::periodic::Periodic,
    blocks_read: AtomicU64,
}

fn wal_error(dir: &Path, e: wal::WalError) -> StorageError {
    crate::storage::tsdb::wal_error(dir, e)
}

impl LogStore {
    /// Opens the store in `dir` (`<data_dir>/logs`): loads the segments in
    /// `dir/segments` and replays the WAL in `dir/wal` into the heads.
    pub fn open(dir: &Path, opts: LogStoreOptions) -> Result<LogStore, StorageError> {
        let wal_dir = dir.join("wal");
        std::fs::create_dir_all(&wal_dir)
            .map_err(|e| StorageError::io(format!("create {}", wal_dir.display()), e))?;
        let tenants = cut::load_segments(&dir.join("segments"))?;
        let skip = cut::replay_skip(&tenants);
        let started = Instant::now();
        let mut records = 0u64;
        let (wal, stats) =
            Wal::open_replaying(&wal_dir, opts.wal.clone(), &mut |segment, payload| {
                let (tenant, streams) =
                    record::decode(payload).map_err(|reason| wal::WalError::Corrupt {
                        segment,
                        offset: 0,
                        reason,
                    })?;
                if skip.get(&tenant).is_some_and(|&upto| segment < upto) {
                    return Ok(());
                }
                let t = tenant_for(&tenants, &tenant);
                let mut g = t.write();
                for s in streams {
                    apply_stream(&mut g, s, &mut PushOutcome::default(), None);
                }
                records += 1;
                Ok(())
            })
            .map_err(|e| wal_error(&wal_dir, e))?;
        let took = started.elapsed();
        metrics::gauge!(WAL_REPLAY_DURATION_SECONDS).set(took.as_secs_f64());
        tracing::info!(
            records,
            segments = stats.segments,
            bytes = stats.bytes,
            duration_ms = took.as_millis() as u64,
            "log wal replayed"
        );
        let store = LogStore {
            dir: dir.to_path_buf(),
            opts,
            tenants,
            gate: RwLock::new(Some(wal)),
            feeds: Mutex::new(HashMap::new()),
            writing: Mutex::new(()),
            maintenance: Default::default(),
            blocks_read: AtomicU64::new(0),
        };
        store.update_gauges();
        Ok(store)
    }

    fn tenant(&self, tenant: &Tenant) -> Option<Arc<RwLock<TenantLogs>>> {
        self.tenants.read().get(tenant).cloned()
    }

    fn feed(&self, tenant: &Tenant) -> broadcast::Sender<Arc<Vec<Stream>>> {
        self.feeds
            .lock()
            .entry(tenant.clone())
            .or_insert_with(|| broadcast::channel(FEED_CAPACITY).0)
            .clone()
    }

    fn all_tenants(&self) -> Vec<(Tenant, Arc<RwLock<TenantLogs>>)> {
        self.tenants
            .read()
            .iter()
            .map(|(t, l)| (t.clone(), l.clone()))
            .collect()
    }

    fn update_gauges(&self) {
        let (mut head, mut segs, mut seg_bytes) = (0usize, 0usize, 0u64);
        for (_, t) in self.all_tenants() {
            let g = t.read();
            head += g.head.bytes + g.frozen.iter().map(|f| f.head.bytes).sum::<usize>();
            segs += g.segments.len();
            seg_bytes += g.segments.iter().map(|s| s.stored_bytes()).sum::<u64>();
        }
        metrics::gauge!(HEAD_BYTES).set(head as f64);
        metrics::gauge!(SEGMENTS).set(segs as f64);
        metrics::gauge!(SEGMENT_BYTES).set(seg_bytes as f64);
    }

    /// Segment blocks decompressed by reads since open.
    pub fn blocks_read(&self) -> u64 {
        self.blocks_read.load(Ordering::Relaxed)
    }

    /// Bytes on disk: WAL and segments.
    pub fn disk_bytes(&self) -> u64 {
        let wal: u64 = std::fs::read_dir(self.dir.join("wal"))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        let segs: u64 = self
            .all_tenants()
            .iter()
            .flat_map(|(_, t)| {
                t.read()
                    .segments
                    .iter()
                    .map(|s| s.stored_bytes())
                    .collect::<Vec<_>>()
            })
            .sum();
        wal + segs
    }

    /// Where the bytes of every tenant's segments go, per data column and
    /// index part, with the token filters' fill and false-positive rate
    /// (reads every block header: for reports and benchmarks).
    pub fn disk_breakdown(&self) -> Result<DiskBreakdown, StorageError> {
        let mut out = DiskBreakdown::default();
        for (_, t) in self.all_tenants() {
            let segs = t.read().segments.clone();
            for s in segs {
                s.breakdown(&mut out)?;
            }
        }
        Ok(out)
    }

    /// Refuses further pushes, waits for those in flight and fsyncs the
    /// WAL. Later calls do nothing.
    pub fn close(&self) -> Result<(), StorageError> {
        self.stop_maintenance();
        let Some(wal) = self.gate.write().take() else {
            return Ok(());
        };
        let res = wal.close().map_err(|e| wal_error(&self.dir.join("wal"), e));
        drop(wal);
        res
    }
}

fn tenant_for(tenants: &Tenants, tenant: &Tenant) -> Arc<RwLock<TenantLogs>> {
    if let Some(t) = tenants.read().get(tenant) {
        return t.clone();
    }
    tenants.write().entry(tenant.clone()).or_default().clone()
}

/// Applies one stream of a push (or of a replayed record) to the head;
/// adds what was stored to `out` and, when `tail`, a copy to `fed`.
fn apply_stream(
    t: &mut TenantLogs,
    s: Stream,
    out: &mut PushOutcome,
    fed: Option<&mut Vec<Stream>>,
) {
    let Some(max) = s.entries.iter().map(|e| e.ts).max() else {
        return;
    };
    match t.newest.get_mut(&s.labels) {
        Some(newest) => *newest = (*newest).max(max),
        None => {
            t.newest.insert(s.labels.clone(), max);
        }
    }
    let (n, bytes, copies) = t.head.apply(&s.labels, s.entries, fed.is_some());
    out.entries_written += n;
    out.bytes_written += bytes;
    if let Some(fed) = fed.filter(|_| !copies.is_empty()) {
        fed.push(Stream {
            labels: s.labels,
            entries: copies,
        });
    }
}

impl LogWriter for LogStore {
    fn push(
        &self,
        tenant: &Tenant,
        streams: Vec<PushStream>,
    ) -> Result<PushOutcome, LogWriteError> {
        let gate = self.gate.read();
        let wal = gate
            .as_ref()
            .ok_or_else(|| LogWriteError::Unavailable("the log store is closed".into()))?;
        let t = tenant_for(&self.tenants, tenant);
        let (accepted, rejected) = {
            let g = t.read();
            head::validate(&g.newest, streams, self.opts.out_of_order_window_ns)
        };
        let mut out = PushOutcome {
            rejected,
            ..PushOutcome::default()
        };
        let label = tenant.to_string();
        let refused: usize = out.rejected.iter().map(|r| r.count).sum();
        if refused > 0 {
            metrics::counter!(ENTRIES_REFUSED_TOTAL, "tenant" => label.clone())
                .increment(refused as u64);
        }
        if accepted.is_empty() {
            return Ok(out);
        }
        let rec = record::encode(tenant, &accepted);
        wal.append(&[&rec]).map_err(|e| {
            LogWriteError::Unavailable(wal_error(&self.dir.join("wal"), e).to_string())
        })?;
        let feed = self.feed(tenant);
        // Copies for live tail only while someone tails.
        let mut fed = (feed.receiver_count() > 0).then(Vec::new);
        {
            let mut g = t.write();
            for s in accepted {
                apply_stream(&mut g, s, &mut out, fed.as_mut());
            }
        }
        metrics::counter!(ENTRIES_INGESTED_TOTAL, "tenant" => label.clone())
            .increment(out.entries_written as u64);
        metrics::counter!(BYTES_INGESTED_TOTAL, "tenant" => label)
            .increment(out.bytes_written as u64);
        if let Some(fed) = fed.filter(|f| !f.is_empty()) {
            // Receivers gone since is not an error.
            let _ = feed.send(Arc::new(fed));
        }
        Ok(out)
    }

    fn subscribe(&self, tenant: &Tenant) -> broadcast::Receiver<Arc<Vec<Stream>>> {
        self.feed(tenant).subscribe()
    }
}

/// Merges per-source stream lists into one list sorted by labels, each
/// stream's entries sorted by timestamp (sources earlier in the list first
/// on equal timestamps).
fn merge_streams(sources: Vec<Vec<Stream>>) -> Vec<Stream> {
    let mut by: BTreeMap<Labels, Vec<LogEntry>> = BTreeMap::new();
    for src in sources {
        for s in src {
            by.entry(s.labels).or_default().extend(s.entries);
        }
    }
    by.into_iter()
        .map(|(labels, mut entries)| {
            if !entries.is_sorted_by_key(|e| e.ts) {
                entries.sort_by_key(|e| e.ts);
            }
            Stream { labels, entries }
        })
        .collect()
}

/// What a read sees of a tenant: its segments, frozen heads, and what the
/// live head yielded under the lock.
struct Snapshot<T> {
    segments: Vec<Arc<Segment>>,
    frozen: Vec<Frozen>,
    head: T,
}

impl LogStore {
    fn snapshot<T>(&self, tenant: &Tenant, f: impl FnOnce(&Head) -> T) -> Option<Snapshot<T>> {
        let t = self.tenant(tenant)?;
        let g = t.read();
        Some(Snapshot {
            segments: g.segments.clone(),
            frozen: g.frozen.clone(),
            head: f(&g.head),
        })
    }
}

fn read_error(e: StorageError) -> LogReadError {
    LogReadError::Store(e.to_string())
}

impl super::StoreAdmin for LogStore {
    fn flush(&self) -> Result<(), StorageError> {
        LogStore::flush(self)
    }

    fn disk_bytes(&self) -> u64 {
        LogStore::disk_bytes(self)
    }
}

impl LogReader for LogStore {
    fn select(&self, tenant: &Tenant, sel: &LogSelect<'_>) -> Result<Vec<Stream>, LogReadError> {
        let (m, start, end, hint) = (sel.matchers, sel.start, sel.end, sel.hint);
        let Some(snap) = self.snapshot(tenant, |h| h.select(m, start, end, hint)) else {
            return Ok(Vec::new());
        };
        let mut sources = Vec::with_capacity(snap.segments.len() + snap.frozen.len() + 1);
        let mut blocks = 0u64;
        for seg in snap
            .segments
            .iter()
            .filter(|s| s.max_ts >= start && s.min_ts < end)
        {
            let res = seg.select(m, start, end, hint, &mut blocks);
            self.blocks_read.fetch_add(blocks, Ordering::Relaxed);
            metrics::counter!(BLOCKS_READ_TOTAL).increment(blocks);
            blocks = 0;
            sources.push(res.map_err(read_error)?);
        }
        for f in &snap.frozen {
            sources.push(f.head.select(m, start, end, hint));
        }
        sources.push(snap.head);
        Ok(merge_streams(sources))
    }

    fn streams(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Result<Vec<Labels>, LogReadError> {
        let labels = |h: &Head| -> Vec<Labels> {
            h.stream_refs(matchers, start, end)
                .map(|(l, _)| l.clone())
                .collect()
        };
        let Some(snap) = self.snapshot(tenant, labels) else {
            return Ok(Vec::new());
        };
        let mut out: std::collections::BTreeSet<Labels> = snap.head.into_iter().collect();
        for f in &snap.frozen {
            out.extend(labels(&f.head));
        }
        for seg in &snap.segments {
            out.extend(
                seg.stream_refs(matchers, start, end)
                    .map(|s| s.labels.clone()),
            );
        }
        Ok(out.into_iter().collect())
    }

    fn stats(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Result<LogStats, LogReadError> {
        let mut st = LogStats::default();
        let Some(snap) = self.snapshot(tenant, |h| h.add_stats(matchers, start, end, &mut st))
        else {
            return Ok(st);
        };
        for f in &snap.frozen {
            f.head.add_stats(matchers, start, end, &mut st);
        }
        for seg in &snap.segments {
            seg.add_stats(matchers, start, end, &mut st);
        }
        // A stream in several sources counts once.
        st.streams = self.streams(tenant, matchers, start, end)?.len() as u64;
        Ok(st)
    }
}
