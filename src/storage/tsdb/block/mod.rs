//! Immutable blocks: the head flushed into self-describing directories per
//! tenant and time range (symbols, series, postings with a term dictionary,
//! XOR chunks; magic, version and checksum), compacted into larger ranges and
//! deleted whole by retention.
//!
//! INTERFACE CONTRACT (the bodies are being written; signatures are fixed):
//! `BlockStore` owns `<data_dir>/tsdb/blocks/<tenant>/<block id>/`. A block
//! becomes visible atomically (written to a temporary directory, fsynced,
//! renamed). `BlockStore` implements [`MetricsReader`] over all of a tenant's
//! blocks; `metadata` and `exemplars` answer empty (the head keeps those).

mod chunks;
mod compact;
pub(crate) mod dir;
pub(crate) mod format;
mod index;
mod query;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::model::{Exemplar, Labels, Matcher, MetricMetadata, Sample, Tenant};
use crate::storage::{
    merge_label_names, merge_label_values, MetricsReader, SeriesSamples, StorageError,
};

use dir::{write_block_dir, Block, BlockReader, BlockSpec, TMP_PREFIX};
use index::SeriesCursor;

pub use dir::FORMAT_VERSION;

/// Gauge: blocks currently loaded (all tenants).
pub const BLOCKS_LOADED: &str = "strata_blocks_loaded";
/// Counter: blocks written by compaction.
pub const COMPACTIONS_TOTAL: &str = "strata_compactions_total";
/// Gauge: bytes on disk of the loaded blocks.
pub const BLOCK_BYTES: &str = "strata_block_bytes";

/// Settings for the block store.
#[derive(Debug, Clone)]
pub struct BlockStoreOptions {
    /// Blocks whose newest sample is older than `now - retention` are deleted
    /// (0 or less keeps blocks forever).
    pub retention_ms: i64,
    /// Range of blocks flushed from the head (the first compaction level).
    pub block_duration_ms: i64,
    /// Largest range compaction builds.
    pub max_block_duration_ms: i64,
}

/// What a block holds (stored in its `meta.json`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BlockMeta {
    /// Unique, time-sortable id (also the directory name).
    pub id: String,
    /// Owning tenant.
    pub tenant: String,
    /// First timestamp covered, ms, inclusive.
    pub min_t: i64,
    /// End of the covered range, ms, exclusive.
    pub max_t: i64,
    /// Series in the block.
    pub num_series: u64,
    /// Samples in the block.
    pub num_samples: u64,
    /// Chunks in the block.
    pub num_chunks: u64,
    /// Compaction level: 1 for a head flush, +1 per compaction.
    pub level: u32,
    /// Ids of the level-1 blocks this one was built from.
    pub sources: Vec<String>,
    /// Format version of the block's files.
    pub version: u32,
}

/// All blocks of all tenants under one directory.
pub struct BlockStore {
    dir: PathBuf,
    opts: BlockStoreOptions,
    /// Per tenant, blocks sorted by `(min_t, id)`.
    blocks: RwLock<BTreeMap<Tenant, Vec<Arc<Block>>>>,
    /// Serialises compaction and retention (writers of the block lists).
    maintenance: Mutex<()>,
}

fn sort_blocks(v: &mut [Arc<Block>]) {
    v.sort_by(|a, b| (a.meta.min_t, &a.meta.id).cmp(&(b.meta.min_t, &b.meta.id)));
}

fn remove_dir(dir: &Path) {
    if let Err(e) = fs::remove_dir_all(dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "could not remove block directory");
    }
}

impl BlockStore {
    /// Opens `dir` (`<data_dir>/tsdb/blocks`), creating it if needed, and
    /// loads every complete block; leftovers of interrupted writes are removed.
    /// A block that fails verification is logged and skipped (left on disk
    /// for inspection); a block superseded by a compacted one whose write
    /// finished before the sources were deleted is removed.
    pub fn open(dir: &Path, opts: BlockStoreOptions) -> Result<BlockStore, StorageError> {
        fs::create_dir_all(dir)
            .map_err(|e| StorageError::io(format!("create {}", dir.display()), e))?;
        let mut all = BTreeMap::new();
        let read = |d: &Path| {
            fs::read_dir(d).map_err(|e| StorageError::io(format!("list {}", d.display()), e))
        };
        for entry in read(dir)? {
            let entry =
                entry.map_err(|e| StorageError::io(format!("list {}", dir.display()), e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            let tenant = match Tenant::new(&name) {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(dir = %path.display(), error = %e, "skipping directory that is not a tenant");
                    continue;
                }
            };
            let mut blocks: Vec<Arc<Block>> = Vec::new();
            for b in read(&path)? {
                let b = b.map_err(|e| StorageError::io(format!("list {}", path.display()), e))?;
                let bname = b.file_name().to_string_lossy().into_owned();
                let bpath = b.path();
                if bname.starts_with(TMP_PREFIX) {
                    tracing::info!(dir = %bpath.display(), "removing unfinished block");
                    remove_dir(&bpath);
                    continue;
                }
                if !bpath.is_dir() {
                    continue;
                }
                match Block::open(&bpath) {
                    Ok(block) => blocks.push(Arc::new(block)),
                    Err(e) => {
                        tracing::error!(dir = %bpath.display(), error = %e, "skipping unreadable block")
                    }
                }
            }
            let superseded: Vec<usize> = (0..blocks.len())
                .filter(|&i| {
                    let a = &blocks[i].meta;
                    blocks.iter().any(|b| {
                        let b = &b.meta;
                        b.id != a.id
                            && a.sources.iter().all(|s| b.sources.contains(s))
                            && (b.sources.len() > a.sources.len() || b.id > a.id)
                    })
                })
                .collect();
            for &i in superseded.iter().rev() {
                let b = blocks.remove(i);
                tracing::info!(dir = %b.dir.display(), "removing block superseded by compaction");
                remove_dir(&b.dir);
            }
            sort_blocks(&mut blocks);
            if !blocks.is_empty() {
                all.insert(tenant, blocks);
            }
        }
        let store = BlockStore {
            dir: dir.to_path_buf(),
            opts,
            blocks: RwLock::new(all),
            maintenance: Mutex::new(()),
        };
        store.update_gauges();
        Ok(store)
    }

    fn update_gauges(&self) {
        let blocks = self.blocks.read();
        let n: usize = blocks.values().map(Vec::len).sum();
        metrics::gauge!(BLOCKS_LOADED).set(n as f64);
        drop(blocks);
        metrics::gauge!(BLOCK_BYTES).set(self.disk_bytes() as f64);
    }

    fn tenant_dir(&self, tenant: &Tenant) -> PathBuf {
        self.dir.join(tenant.as_str())
    }

    /// Writes, opens and publishes a block.
    fn write(
        &self,
        tenant: &Tenant,
        spec: (i64, i64, u32, Vec<String>),
        series: &mut dyn Iterator<Item = Result<SeriesSamples, StorageError>>,
    ) -> Result<Option<Arc<Block>>, StorageError> {
        let tenant_dir = self.tenant_dir(tenant);
        let (min_t, max_t, level, sources) = spec;
        let spec = BlockSpec {
            tenant_dir: &tenant_dir,
            tenant: tenant.as_str(),
            min_t,
            max_t,
            level,
            sources,
        };
        let Some((_, dir)) = write_block_dir(spec, series)? else {
            return Ok(None);
        };
        Ok(Some(Arc::new(Block::open(&dir)?)))
    }

    /// Writes one block for `tenant` covering `[min_t, max_t)` from series
    /// sorted by labels (samples sorted, all inside the range). Returns `None`
    /// when `series` is empty. The block is visible to readers on return.
    /// (Unsorted series or samples are sorted; samples outside the range widen
    /// the block's range rather than being lost.)
    pub fn write_block(
        &self,
        tenant: &Tenant,
        min_t: i64,
        max_t: i64,
        series: &mut dyn Iterator<Item = SeriesSamples>,
    ) -> Result<Option<BlockMeta>, StorageError> {
        let mut ok = series.map(Ok);
        let Some(block) = self.write(tenant, (min_t, max_t, 1, vec![]), &mut ok)? else {
            return Ok(None);
        };
        let meta = block.meta.clone();
        let mut blocks = self.blocks.write();
        let list = blocks.entry(tenant.clone()).or_default();
        list.push(block);
        sort_blocks(list);
        drop(blocks);
        self.update_gauges();
        Ok(Some(meta))
    }

    /// Metas of a tenant's blocks, oldest first.
    pub fn blocks(&self, tenant: &Tenant) -> Vec<BlockMeta> {
        self.snapshot(tenant)
            .iter()
            .map(|b| b.meta.clone())
            .collect()
    }

    fn snapshot(&self, tenant: &Tenant) -> Vec<Arc<Block>> {
        self.blocks.read().get(tenant).cloned().unwrap_or_default()
    }

    /// Tenants that have blocks.
    pub fn tenants(&self) -> Vec<Tenant> {
        self.blocks
            .read()
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// Replaces `old` blocks of `tenant` by `new` in the published list,
    /// then deletes the old directories.
    fn replace(&self, tenant: &Tenant, old: &[Arc<Block>], new: Option<Arc<Block>>) {
        let mut blocks = self.blocks.write();
        let list = blocks.entry(tenant.clone()).or_default();
        list.retain(|b| !old.iter().any(|o| o.meta.id == b.meta.id));
        list.extend(new);
        sort_blocks(list);
        if list.is_empty() {
            blocks.remove(tenant);
        }
        drop(blocks);
        for b in old {
            remove_dir(&b.dir);
        }
        self.update_gauges();
    }

    /// Runs one round of compaction for every tenant; returns blocks written,
    /// or the first error after every tenant was tried.
    /// Overlapping blocks are merged first (samples deduplicated by
    /// timestamp), then adjacent blocks inside one aligned range
    /// (`block_duration * 3^k`, capped at `max_block_duration`).
    pub fn compact(&self) -> Result<usize, StorageError> {
        let _guard = self.maintenance.lock();
        let ranges = compact::ranges(self.opts.block_duration_ms, self.opts.max_block_duration_ms);
        let mut written = 0;
        let mut first_err = None;
        for tenant in self.tenants() {
            // Each step replaces two or more blocks by one, so this ends.
            loop {
                let current = self.snapshot(&tenant);
                let metas: Vec<BlockMeta> = current.iter().map(|b| b.meta.clone()).collect();
                let Some(pick) = compact::plan(&metas, &ranges) else {
                    break;
                };
                let chosen: Vec<Arc<Block>> = pick.iter().map(|&i| current[i].clone()).collect();
                let min_t = chosen.iter().map(|b| b.meta.min_t).min().unwrap_or(0);
                let max_t = chosen.iter().map(|b| b.meta.max_t).max().unwrap_or(0);
                let level = chosen.iter().map(|b| b.meta.level).max().unwrap_or(0) + 1;
                let sources: BTreeSet<String> = chosen
                    .iter()
                    .flat_map(|b| b.meta.sources.iter().cloned())
                    .collect();
                let mut merged = compact::MergeIter::new(&chosen);
                let spec = (min_t, max_t, level, sources.into_iter().collect());
                let new = match self.write(&tenant, spec, &mut merged) {
                    Ok(new) => new,
                    Err(e) => {
                        // A corrupt source stops this tenant's compaction
                        // (its blocks stay readable where intact); other
                        // tenants still compact.
                        tracing::error!(tenant = tenant.as_str(), error = %e, "compaction failed");
                        first_err.get_or_insert(e);
                        break;
                    }
                };
                tracing::info!(
                    tenant = tenant.as_str(),
                    sources = chosen.len(),
                    min_t,
                    max_t,
                    level,
                    "compacted blocks"
                );
                written += usize::from(new.is_some());
                self.replace(&tenant, &chosen, new);
                metrics::counter!(COMPACTIONS_TOTAL).increment(1);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(written),
        }
    }

    /// Deletes whole blocks entirely older than `now_ms - retention`; returns
    /// how many were deleted.
    pub fn apply_retention(&self, now_ms: i64) -> Result<usize, StorageError> {
        if self.opts.retention_ms <= 0 {
            return Ok(0);
        }
        let _guard = self.maintenance.lock();
        let cutoff = now_ms.saturating_sub(self.opts.retention_ms);
        let mut deleted = 0;
        for tenant in self.tenants() {
            let old: Vec<Arc<Block>> = self
                .snapshot(&tenant)
                .into_iter()
                .filter(|b| b.meta.max_t <= cutoff)
                .collect();
            if !old.is_empty() {
                deleted += old.len();
                tracing::info!(
                    tenant = tenant.as_str(),
                    blocks = old.len(),
                    cutoff,
                    "retention deleted blocks"
                );
                self.replace(&tenant, &old, None);
            }
        }
        Ok(deleted)
    }

    /// Bytes on disk of all blocks.
    pub fn disk_bytes(&self) -> u64 {
        self.blocks.read().values().flatten().map(|b| b.bytes).sum()
    }

    /// Calls `f` with each block overlapping the range and a cursor standing
    /// on each of its series matching `matchers` that has a chunk
    /// overlapping the range, in id (label) order.
    fn each_match(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        f: &mut dyn FnMut(&Block, &SeriesCursor<'_>) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        for b in self
            .snapshot(tenant)
            .iter()
            .filter(|b| b.overlaps(mint, maxt))
        {
            let mut cursor = b.index.cursor();
            for id in &query::matching_series(b, matchers)? {
                cursor.seek(id).map_err(|r| b.corrupt_index(r))?;
                if cursor
                    .chunks()
                    .iter()
                    .any(|c| c.max_t >= mint && c.min_t <= maxt)
                {
                    f(b, &cursor)?;
                }
            }
        }
        Ok(())
    }

    /// Label sets of matching series with samples in the range.
    fn matching_labels(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<BTreeSet<Labels>, StorageError> {
        let mut out = BTreeSet::new();
        self.each_match(tenant, matchers, mint, maxt, &mut |b, c| {
            let labels = c.labels().map_err(|r| b.corrupt_index(r))?;
            if !out.contains(&labels) && b.has_samples(c.chunks(), mint, maxt)? {
                out.insert(labels);
            }
            Ok(())
        })?;
        Ok(out)
    }
}

/// One series' samples gathered from the blocks, oldest block first.
#[derive(Default)]
struct Gathered {
    samples: Vec<Sample>,
    /// A block's samples did not all follow the previous blocks' ones.
    overlap: bool,
}

/// Grows a series' first part (from its oldest block) once, to hold the
/// rest of the range at the part's sampling rate (the later blocks' and
/// the head's samples), when the series runs to the end of its block.
fn reserve_rest(samples: &mut Vec<Sample>, block_end: i64, maxt: i64) {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return;
    };
    let n = samples.len() as i128;
    let span = i128::from(last.t) - i128::from(first.t);
    if n < 2 || span <= 0 {
        return;
    }
    let interval = span / (n - 1);
    let rest = i128::from(maxt) - i128::from(last.t);
    if i128::from(block_end) - i128::from(last.t) > 2 * interval || rest <= 0 {
        return;
    }
    samples.reserve((rest / interval.max(1)).min(n * 64) as usize);
}

impl MetricsReader for BlockStore {
    /// Decodes every block's chunks straight into one sample vector per
    /// series (blocks are time-ordered, so their parts usually just follow
    /// each other), each block's timestamp columns once per select.
    fn select(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        let mut found: BTreeMap<Labels, Gathered> = BTreeMap::new();
        let snapshot = self.snapshot(tenant);
        for b in snapshot.iter().filter(|b| b.overlaps(mint, maxt)) {
            let mut rd = BlockReader::new(b);
            let mut cursor = b.index.cursor();
            for id in &query::matching_series(b, matchers)? {
                cursor.seek(id).map_err(|r| b.corrupt_index(r))?;
                let chunks = cursor.chunks();
                if !chunks.iter().any(|c| c.max_t >= mint && c.min_t <= maxt) {
                    continue;
                }
                let labels = cursor.labels().map_err(|r| b.corrupt_index(r))?;
                let g = found.entry(labels).or_default();
                let start = g.samples.len();
                rd.append(chunks, mint, maxt, &mut g.samples)?;
                if start == 0 {
                    reserve_rest(&mut g.samples, b.meta.max_t, maxt);
                }
                if start > 0
                    && g.samples.len() > start
                    && g.samples[start - 1].t >= g.samples[start].t
                {
                    g.overlap = true;
                }
            }
        }
        Ok(found
            .into_iter()
            .filter(|(_, g)| !g.samples.is_empty())
            .map(|(labels, mut g)| {
                if g.overlap {
                    query::keep_last_per_timestamp(&mut g.samples);
                }
                SeriesSamples {
                    labels,
                    samples: g.samples,
                    histograms: vec![],
                }
            })
            .collect())
    }

    fn series(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, StorageError> {
        Ok(self
            .matching_labels(tenant, matchers, mint, maxt)?
            .into_iter()
            .collect())
    }

    /// Without matchers this answers from the dictionaries of the blocks
    /// overlapping the range (block granularity, as Prometheus does).
    fn label_names(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        if !matchers.is_empty() {
            let sets = self.matching_labels(tenant, matchers, mint, maxt)?;
            return Ok(merge_label_names(&sets));
        }
        let mut out = BTreeSet::new();
        for b in self
            .snapshot(tenant)
            .iter()
            .filter(|b| b.overlaps(mint, maxt))
        {
            out.extend(b.index.label_names().map_err(|r| b.corrupt_index(r))?);
        }
        Ok(out.into_iter().collect())
    }

    /// Without matchers this answers from the dictionaries of the blocks
    /// overlapping the range (block granularity, as Prometheus does).
    fn label_values(
        &self,
        tenant: &Tenant,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        if !matchers.is_empty() {
            let sets = self.matching_labels(tenant, matchers, mint, maxt)?;
            return Ok(merge_label_values(&sets, name));
        }
        let mut out = BTreeSet::new();
        for b in self
            .snapshot(tenant)
            .iter()
            .filter(|b| b.overlaps(mint, maxt))
        {
            for t in b.index.terms_of(name) {
                let value = b.index.symbol(t.value).map_err(|r| b.corrupt_index(r))?;
                out.insert(value.to_string());
            }
        }
        Ok(out.into_iter().collect())
    }

    fn metadata(
        &self,
        _tenant: &Tenant,
        _metric: Option<&str>,
    ) -> Result<Vec<MetricMetadata>, StorageError> {
        Ok(vec![])
    }

    fn exemplars(
        &self,
        _tenant: &Tenant,
        _matchers: &[Matcher],
        _mint: i64,
        _maxt: i64,
    ) -> Result<Vec<(Labels, Vec<Exemplar>)>, StorageError> {
        Ok(vec![])
    }
}
