//! The WAL-backed log store: per-tenant heads of per-stream buffers,
//! readable as soon as a push is acknowledged.
//!
//! Write path ([`LogStore`]'s [`LogWriter::push`]): the push is validated
//! against the tenant's newest timestamp per stream (out-of-order window,
//! Loki's "entry too far behind"), the accepted entries go into the WAL as
//! one record through the group-committed, fsynced `append`, and only then
//! are they applied to the head (identical entries dropped) and offered to
//! live-tail subscribers. `open` replays the WAL into the heads.

mod codec;
mod head;
mod options;
mod record;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};
use tokio::sync::broadcast;

use self::head::Head;
use super::wal::{self, Wal};
use super::StorageError;
use crate::logs::{
    LogEntry, LogReadError, LogReader, LogSelect, LogWriteError, LogWriter, PushOutcome,
    PushStream, Stream,
};
use crate::model::{Labels, Tenant};

pub use options::LogStoreOptions;

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

/// Capacity of a tenant's live-tail feed, in pushes.
const FEED_CAPACITY: usize = 1024;

/// A tenant's data in memory.
#[derive(Default)]
struct TenantLogs {
    /// The live head.
    head: Head,
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
}

fn wal_error(dir: &Path, e: wal::WalError) -> StorageError {
    crate::storage::tsdb::wal_error(dir, e)
}

impl LogStore {
    /// Opens the store in `dir` (`<data_dir>/logs`), replaying the WAL in
    /// `dir/wal` into the heads.
    pub fn open(dir: &Path, opts: LogStoreOptions) -> Result<LogStore, StorageError> {
        let wal_dir = dir.join("wal");
        std::fs::create_dir_all(&wal_dir)
            .map_err(|e| StorageError::io(format!("create {}", wal_dir.display()), e))?;
        let tenants = Tenants::default();
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
                let t = tenant_for(&tenants, &tenant);
                let mut g = t.write();
                for s in streams {
                    apply_stream(&mut g, s);
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

    fn update_gauges(&self) {
        let bytes: usize = self
            .tenants
            .read()
            .values()
            .map(|t| t.read().head.bytes)
            .sum();
        metrics::gauge!(HEAD_BYTES).set(bytes as f64);
    }

    /// Refuses further pushes, waits for those in flight and fsyncs the
    /// WAL. Later calls do nothing.
    pub fn close(&self) -> Result<(), StorageError> {
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

/// Applies one stream of a push (or of a replayed record) to the head.
fn apply_stream(t: &mut TenantLogs, s: Stream) -> Option<Stream> {
    let max = s.entries.iter().map(|e| e.ts).max()?;
    let newest = t.newest.entry(s.labels.clone()).or_insert(max);
    *newest = (*newest).max(max);
    let entries = t.head.apply(&s.labels, s.entries);
    (!entries.is_empty()).then_some(Stream {
        labels: s.labels,
        entries,
    })
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
        let stored: Vec<Stream> = {
            let mut g = t.write();
            accepted
                .into_iter()
                .filter_map(|s| apply_stream(&mut g, s))
                .collect()
        };
        for s in &stored {
            out.entries_written += s.entries.len();
            out.bytes_written += s.entries.iter().map(|e| e.line.len()).sum::<usize>();
        }
        metrics::counter!(ENTRIES_INGESTED_TOTAL, "tenant" => label.clone())
            .increment(out.entries_written as u64);
        metrics::counter!(BYTES_INGESTED_TOTAL, "tenant" => label)
            .increment(out.bytes_written as u64);
        if !stored.is_empty() {
            // No receiver is not an error: nobody is tailing.
            let _ = self.feed(tenant).send(Arc::new(stored));
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

impl LogReader for LogStore {
    fn select(&self, tenant: &Tenant, sel: &LogSelect<'_>) -> Result<Vec<Stream>, LogReadError> {
        let Some(t) = self.tenant(tenant) else {
            return Ok(Vec::new());
        };
        let head = t
            .read()
            .head
            .select(sel.matchers, sel.start, sel.end, sel.hint);
        Ok(merge_streams(vec![head]))
    }
}
