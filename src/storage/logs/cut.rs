//! Cutting heads into segments, WAL truncation, retention and the
//! maintenance thread, and loading segments at open.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;

use super::segment::{self, Segment};
use super::{wal_error, Frozen, LogStore, TenantLogs, Tenants, SEGMENT_WRITE_DURATION_SECONDS};
use crate::model::Tenant;
use crate::storage::tsdb::block::dir::{io, TMP_PREFIX};
use crate::storage::StorageError;

/// Opens every segment under `root` (`<root>/<tenant>/<id>`), removing
/// directories a crash left half-written.
pub(super) fn load_segments(root: &Path) -> Result<Tenants, StorageError> {
    let tenants = Tenants::default();
    if !root.exists() {
        return Ok(tenants);
    }
    let rd = std::fs::read_dir(root).map_err(io(format!("list {}", root.display())))?;
    for ent in rd.flatten() {
        let name = ent.file_name().to_string_lossy().into_owned();
        let Ok(tenant) = Tenant::new(&name) else {
            tracing::warn!(dir = %ent.path().display(), "not a tenant directory; ignored");
            continue;
        };
        let mut ids: Vec<String> = std::fs::read_dir(ent.path())
            .map_err(io(format!("list {}", ent.path().display())))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        ids.sort();
        let mut logs = TenantLogs::default();
        for id in ids {
            let path = ent.path().join(&id);
            if id.starts_with(TMP_PREFIX) {
                std::fs::remove_dir_all(&path).map_err(io(format!("remove {}", path.display())))?;
                continue;
            }
            let seg = Segment::open(&path)?;
            for s in &seg.streams {
                let n = logs.newest.entry(s.labels.clone()).or_insert(s.max_ts);
                *n = (*n).max(s.max_ts);
            }
            logs.segments.push(Arc::new(seg));
        }
        tenants.write().insert(tenant, Arc::new(RwLock::new(logs)));
    }
    Ok(tenants)
}

/// Now in Unix nanoseconds.
fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

impl LogStore {
    /// Starts the maintenance thread (cut, segment writing, retention every
    /// `maintenance_interval`); [`LogStore::close`] stops it.
    pub fn start_maintenance(self: &Arc<Self>) {
        let interval = self.opts.maintenance_interval;
        self.maintenance
            .start("logs-maintenance", interval, self, |store: &LogStore| {
                if let Err(e) = store.maintain(now_ns()) {
                    tracing::error!(error = %e, "log store maintenance failed");
                }
            });
    }

    pub(super) fn stop_maintenance(&self) {
        self.maintenance.stop();
    }

    /// One maintenance round: cut the heads when due, write frozen heads
    /// into segments, apply retention at `now_ns`.
    pub fn maintain(&self, now_ns: i64) -> Result<(), StorageError> {
        if self.cut_due() {
            self.cut_heads()?;
        }
        self.write_frozen()?;
        self.apply_retention(now_ns)?;
        self.apply_tiering(now_ns)?;
        self.update_gauges();
        Ok(())
    }

    /// Cuts every head and writes it into segments now (tests, benchmarks,
    /// admin).
    pub fn flush(&self) -> Result<(), StorageError> {
        self.cut_heads()?;
        self.write_frozen()?;
        self.update_gauges();
        Ok(())
    }

    fn cut_due(&self) -> bool {
        let (mut bytes, mut oldest) = (0usize, None::<Instant>);
        for (_, t) in self.all_tenants() {
            let g = t.read();
            bytes += g.head.bytes;
            oldest = match (oldest, g.head.since) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        bytes >= self.opts.head_max_bytes
            || oldest.is_some_and(|o| o.elapsed() >= self.opts.head_max_age)
    }

    /// Under the exclusive gate: cuts the WAL and freezes every non-empty
    /// head, so the records of frozen heads are all before the cut. Never
    /// while frozen heads are being written: that writer deletes the WAL
    /// before the newest position it wrote, which must not pass a head
    /// frozen behind its back (an admin flush's cut while the maintenance
    /// thread writes) and only in memory until its own segment is written.
    fn cut_heads(&self) -> Result<(), StorageError> {
        let _writing = self.writing.lock();
        let gate = self.gate.write();
        let wal = gate
            .as_ref()
            .ok_or_else(|| StorageError::Unavailable("the log store is closed".into()))?;
        let tenants = self.all_tenants();
        if tenants.iter().all(|(_, t)| t.read().head.entries == 0) {
            return Ok(());
        }
        let upto = wal.cut().map_err(|e| wal_error(&self.dir.join("wal"), e))?;
        for (_, t) in tenants {
            let mut g = t.write();
            if g.head.entries > 0 {
                let head = std::mem::take(&mut g.head);
                g.frozen.push(Frozen {
                    head: Arc::new(head),
                    wal_upto: upto,
                });
            }
        }
        Ok(())
    }

    /// Writes frozen heads (oldest first) into segments; once none is left
    /// deletes the WAL segments they came from.
    fn write_frozen(&self) -> Result<(), StorageError> {
        let _one = self.writing.lock();
        let mut upto = None;
        for (tenant, t) in self.all_tenants() {
            let tenant_dir = self.dir.join("segments").join(tenant.as_str());
            loop {
                let Some(f) = t.read().frozen.first().cloned() else {
                    break;
                };
                let started = Instant::now();
                let seg = segment::write(
                    &tenant_dir,
                    &f.head,
                    f.wal_upto,
                    self.opts.block_bytes,
                    self.opts.block_zstd_level,
                    self.opts.fulltext(),
                )?;
                let took = started.elapsed();
                metrics::histogram!(SEGMENT_WRITE_DURATION_SECONDS).record(took.as_secs_f64());
                if let Some(seg) = &seg {
                    tracing::info!(
                        tenant = %tenant,
                        segment = %seg.dir.display(),
                        entries = f.head.entries,
                        bytes = f.head.bytes,
                        disk_bytes = seg.disk_bytes,
                        duration_ms = took.as_millis() as u64,
                        "log head written as a segment"
                    );
                }
                let mut g = t.write();
                g.segments.extend(seg.map(Arc::new));
                g.frozen.remove(0);
                upto = upto.max(Some(f.wal_upto));
            }
        }
        if let Some(upto) = upto {
            let gate = self.gate.read();
            if let Some(wal) = gate.as_ref() {
                wal.truncate_before(upto)
                    .map_err(|e| wal_error(&self.dir.join("wal"), e))?;
            }
        }
        Ok(())
    }

    /// Deletes segments whose newest entry is older than the retention.
    fn apply_retention(&self, now_ns: i64) -> Result<(), StorageError> {
        if self.opts.retention_ns <= 0 {
            return Ok(());
        }
        let cutoff = now_ns.saturating_sub(self.opts.retention_ns);
        for (tenant, t) in self.all_tenants() {
            let expired: Vec<Arc<Segment>> = {
                let mut g = t.write();
                let (gone, keep): (Vec<_>, Vec<_>) =
                    g.segments.drain(..).partition(|s| s.max_ts < cutoff);
                g.segments = keep;
                gone
            };
            for s in expired {
                std::fs::remove_dir_all(&s.dir)
                    .map_err(io(format!("remove {}", s.dir.display())))?;
                tracing::info!(tenant = %tenant, segment = %s.dir.display(), "log segment deleted by retention");
            }
        }
        Ok(())
    }
}

/// Per-tenant skip positions: replay ignores WAL records of a tenant in
/// segments before the newest `wal_upto` of its segments.
pub(super) fn replay_skip(tenants: &Tenants) -> HashMap<Tenant, u64> {
    tenants
        .read()
        .iter()
        .map(|(t, l)| {
            let upto = l.read().segments.iter().map(|s| s.wal_upto).max();
            (t.clone(), upto.unwrap_or(0))
        })
        .collect()
}
