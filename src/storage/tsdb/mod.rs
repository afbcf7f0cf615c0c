//! The metrics time-series database: an in-memory head of compressed chunks
//! backed by the WAL, flushed into immutable blocks per time range that are
//! compacted into larger ones and deleted whole by retention.
//!
//! Write path ([`Tsdb::append`]): the tenant's head assigns series ids and
//! validates samples, the records go into the WAL in one group-committed
//! `append`, and only then does the head apply them and the write get
//! acknowledged. Read path: head and blocks are queried and merged per series
//! (the head wins on equal timestamps). `open` replays the WAL; the
//! maintenance thread flushes old head ranges into blocks, checkpoints the WAL
//! so old segments can go, compacts blocks and applies retention.

pub mod block;
pub mod chunk;
mod flush;
mod head;
mod options;
mod postings;
mod record;
mod replay;
mod series;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use self::block::{BlockStore, BlockStoreOptions};
/// A hash map for integer and pre-hashed keys (shared with the log store).
use self::head::{HeadLimits, TenantHead};
use super::wal::{Wal, WalError};
use super::{
    AppendOutcome, BatchRef, MetricsReader, MetricsWriter, SeriesSamples, StorageError, StoreAdmin,
    WriteBatch,
};
use crate::model::{Exemplar, Labels, Matcher, MetricMetadata, Tenant};

pub use options::TsdbOptions;
pub use replay::ReplayFigures;

/// Series in the head, per tenant.
pub const HEAD_SERIES: &str = "strata_head_series";
/// Chunks in the head (open ones included), per tenant.
pub const HEAD_CHUNKS: &str = "strata_head_chunks";
/// Samples appended to the head, per tenant.
pub const SAMPLES_APPENDED_TOTAL: &str = "strata_samples_appended_total";
/// Samples accepted out of order, per tenant.
pub const OUT_OF_ORDER_SAMPLES_TOTAL: &str = "strata_out_of_order_samples_total";
/// Duration of the WAL replay at the last start.
pub const WAL_REPLAY_DURATION_SECONDS: &str = "strata_wal_replay_duration_seconds";

type Heads = RwLock<HashMap<Tenant, Arc<TenantHead>>>;

/// The WAL-backed metrics store.
pub struct Tsdb {
    dir: PathBuf,
    opts: TsdbOptions,
    blocks: BlockStore,
    heads: Heads,
    /// Appends hold it shared from validation to commit; flush and checkpoint
    /// hold it exclusively so no acknowledged sample falls between the head
    /// snapshot and the WAL truncation.
    /// The WAL, `None` once closed (dropping it releases its directory lock).
    gate: RwLock<Option<Wal>>,
    maintenance: super::periodic::Periodic,
    /// Set when an append woke the maintenance thread because a head grew
    /// past the flush span; cleared once a flush round succeeded.
    flush_woken: AtomicBool,
    replay: ReplayFigures,
}

pub(crate) fn wal_error(dir: &Path, e: WalError) -> StorageError {
    match e {
        WalError::Io { context, source } => {
            StorageError::io(format!("wal {context} in {}", dir.display()), source)
        }
        WalError::Corrupt {
            segment,
            offset,
            reason,
        } => StorageError::Corrupt {
            path: format!("{} segment {segment}", dir.display()),
            reason: format!("offset {offset}: {reason}"),
        },
        WalError::Failed(m) => StorageError::Unavailable(format!("wal failed: {m}")),
    }
}

fn head_for(heads: &Heads, tenant: &Tenant) -> Arc<TenantHead> {
    if let Some(h) = heads.read().get(tenant) {
        return h.clone();
    }
    heads
        .write()
        .entry(tenant.clone())
        .or_insert_with(|| Arc::new(TenantHead::new(tenant.clone())))
        .clone()
}

impl Tsdb {
    /// Opens the store in `dir` (`<data_dir>/tsdb`): replays the WAL in
    /// `dir/wal` into the head and opens the blocks in `dir/blocks`.
    pub fn open(dir: &Path, opts: TsdbOptions) -> Result<Tsdb, StorageError> {
        let wal_dir = dir.join("wal");
        std::fs::create_dir_all(&wal_dir)
            .map_err(|e| StorageError::io(format!("create {}", wal_dir.display()), e))?;
        let blocks = BlockStore::open(
            &dir.join("blocks"),
            BlockStoreOptions {
                retention_ms: opts.retention_ms,
                block_duration_ms: opts.block_duration_ms,
                max_block_duration_ms: opts.max_block_duration_ms,
            },
        )?;
        let heads = Heads::default();
        let (wal, replay) = replay::replay_and_open(&wal_dir, &heads, &opts)?;
        let db = Tsdb {
            dir: dir.to_path_buf(),
            opts,
            blocks,
            heads,
            gate: RwLock::new(Some(wal)),
            maintenance: Default::default(),
            flush_woken: AtomicBool::new(false),
            replay,
        };
        db.update_gauges();
        Ok(db)
    }

    /// Figures of the WAL replay done by `open`.
    pub fn replay_figures(&self) -> &ReplayFigures {
        &self.replay
    }

    fn limits(&self) -> HeadLimits {
        HeadLimits {
            out_of_order_window_ms: self.opts.out_of_order_window_ms,
            chunk_range_ms: self.opts.block_duration_ms,
            max_series: self.opts.max_series_per_tenant,
            max_exemplars: self.opts.max_exemplars_per_tenant,
        }
    }

    fn head(&self, tenant: &Tenant) -> Option<Arc<TenantHead>> {
        self.heads.read().get(tenant).cloned()
    }

    fn all_heads(&self) -> Vec<Arc<TenantHead>> {
        self.heads.read().values().cloned().collect()
    }

    fn closed() -> StorageError {
        StorageError::Unavailable("the metrics store is closed".into())
    }

    /// Sets the head gauges of every tenant.
    fn update_gauges(&self) {
        for h in self.all_heads() {
            let st = h.stats();
            let t = h.tenant.to_string();
            metrics::gauge!(HEAD_SERIES, "tenant" => t.clone()).set(st.series as f64);
            metrics::gauge!(HEAD_CHUNKS, "tenant" => t).set(st.chunks as f64);
        }
    }

    /// Starts the maintenance thread (flush, compaction, retention, WAL
    /// truncation every `maintenance_interval`); [`Tsdb::close`] stops it.
    pub fn start_maintenance(self: &Arc<Self>) {
        let interval = self.opts.maintenance_interval;
        self.maintenance
            .start("tsdb-maintenance", interval, self, |db: &Tsdb| {
                if let Err(e) = db.maintain(now_ms()) {
                    tracing::error!(error = %e, "tsdb maintenance failed");
                }
            });
    }

    /// One maintenance round: flush due head ranges (and checkpoint the
    /// WAL), compact blocks and apply retention.
    pub fn maintain(&self, now_ms: i64) -> Result<(), StorageError> {
        let flushed = self.flush_due()?;
        if self.flush_woken.swap(false, Ordering::Relaxed) {
            // What woke it may have been refused samples: the exact span
            // keeps appends from waking it again for nothing.
            for h in self.all_heads() {
                h.refresh_span();
            }
        }
        let written = self.blocks.compact()?;
        let deleted = self.blocks.apply_retention(now_ms)?;
        if written > 0 || deleted > 0 {
            tracing::info!(written, deleted, "blocks compacted and retention applied");
        }
        if flushed + written + deleted > 0 {
            // The flushed chunks and the merge buffers are free now.
            super::heap::release_free_memory();
        }
        self.update_gauges();
        Ok(())
    }

    /// Stops maintenance, refuses further writes, waits for appends in
    /// flight and fsyncs the WAL. Later calls do nothing.
    pub fn close(&self) -> Result<(), StorageError> {
        self.maintenance.stop();
        // Waits for in-flight appends; later ones find no WAL and are refused.
        let Some(wal) = self.gate.write().take() else {
            return Ok(());
        };
        let res = wal.close().map_err(|e| wal_error(&self.dir.join("wal"), e));
        drop(wal);
        res
    }
}

impl Tsdb {
    /// Wakes the maintenance thread as soon as `head` spans more than a
    /// flush needs, instead of letting it grow until the next tick (a fast
    /// backfill appends hours of data per minute, and the head holds samples
    /// at several times their size in blocks).
    fn wake_flush_when_due(&self, head: &TenantHead, batch: &BatchRef<'_>) {
        let mut span: Option<(i64, i64)> = None;
        for s in batch.series.iter().flat_map(|s| s.samples) {
            span = Some(span.map_or((s.t, s.t), |(lo, hi)| (lo.min(s.t), hi.max(s.t))));
        }
        let Some((lo, hi)) = span else {
            return;
        };
        head.note_span(lo, hi);
        if head.span_ms() > self.opts.block_duration_ms * 3 / 2
            && !self.flush_woken.swap(true, Ordering::Relaxed)
        {
            self.maintenance.wake();
        }
    }
}

/// Now in Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl MetricsWriter for Tsdb {
    fn append(&self, tenant: &Tenant, batch: WriteBatch) -> Result<AppendOutcome, StorageError> {
        self.append_ref(tenant, &BatchRef::of(&batch))
    }

    fn append_ref(
        &self,
        tenant: &Tenant,
        batch: &BatchRef<'_>,
    ) -> Result<AppendOutcome, StorageError> {
        let gate = self.gate.read();
        let wal = gate.as_ref().ok_or_else(Tsdb::closed)?;
        let head = head_for(&self.heads, tenant);
        let lim = self.limits();
        let prepared = head.prepare(batch, &lim)?;
        if !prepared.records.is_empty() {
            let refs: Vec<&[u8]> = prepared.records.iter().map(Vec::as_slice).collect();
            wal.append(&refs)
                .map_err(|e| wal_error(&self.dir.join("wal"), e))?;
        }
        let (outcome, ooo, series) = head.commit(prepared, &lim);
        self.wake_flush_when_due(&head, batch);
        let t = tenant.to_string();
        metrics::counter!(SAMPLES_APPENDED_TOTAL, "tenant" => t.clone())
            .increment(outcome.samples_written as u64);
        if ooo > 0 {
            metrics::counter!(OUT_OF_ORDER_SAMPLES_TOTAL, "tenant" => t.clone())
                .increment(ooo as u64);
        }
        metrics::gauge!(HEAD_SERIES, "tenant" => t).set(series as f64);
        Ok(outcome)
    }
}

/// Sorted union of the head's and the blocks' names or values.
fn union(mut head: BTreeSet<String>, blocks: Vec<String>) -> Vec<String> {
    head.extend(blocks);
    head.into_iter().collect()
}

impl MetricsReader for Tsdb {
    fn select(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        // Blocks first, then the head's samples appended to the same
        // vectors (the head wins on equal timestamps).
        let mut out = self.blocks.select(tenant, matchers, mint, maxt)?;
        if let Some(h) = self.head(tenant) {
            h.append_selected(matchers, mint, maxt, &mut out);
        }
        Ok(out)
    }

    fn series(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, StorageError> {
        let mut out: BTreeSet<Labels> = self
            .head(tenant)
            .map(|h| h.series(matchers, mint, maxt))
            .unwrap_or_default()
            .into_iter()
            .collect();
        out.extend(self.blocks.series(tenant, matchers, mint, maxt)?);
        Ok(out.into_iter().collect())
    }

    fn label_names(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        let head = self
            .head(tenant)
            .map(|h| h.label_names(matchers, mint, maxt))
            .unwrap_or_default();
        Ok(union(
            head,
            self.blocks.label_names(tenant, matchers, mint, maxt)?,
        ))
    }

    fn label_values(
        &self,
        tenant: &Tenant,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        let head = self
            .head(tenant)
            .map(|h| h.label_values(name, matchers, mint, maxt))
            .unwrap_or_default();
        Ok(union(
            head,
            self.blocks
                .label_values(tenant, name, matchers, mint, maxt)?,
        ))
    }

    fn metadata(
        &self,
        tenant: &Tenant,
        metric: Option<&str>,
    ) -> Result<Vec<MetricMetadata>, StorageError> {
        Ok(self
            .head(tenant)
            .map(|h| h.metadata(metric))
            .unwrap_or_default())
    }

    fn exemplars(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<(Labels, Vec<Exemplar>)>, StorageError> {
        Ok(self
            .head(tenant)
            .map(|h| h.exemplars(matchers, mint, maxt))
            .unwrap_or_default())
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

impl StoreAdmin for Tsdb {
    fn flush(&self) -> Result<(), StorageError> {
        self.flush_all()?;
        self.update_gauges();
        Ok(())
    }

    fn disk_bytes(&self) -> u64 {
        dir_bytes(&self.dir.join("wal")) + self.blocks.disk_bytes()
    }
}
