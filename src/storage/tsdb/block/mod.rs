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

use std::path::Path;

use crate::model::{Exemplar, Labels, Matcher, MetricMetadata, Tenant};
use crate::storage::{MetricsReader, SeriesSamples, StorageError};

/// Settings for the block store.
#[derive(Debug, Clone)]
pub struct BlockStoreOptions {
    /// Blocks whose newest sample is older than `now - retention` are deleted.
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
pub struct BlockStore {}

impl BlockStore {
    /// Opens `dir` (`<data_dir>/tsdb/blocks`), creating it if needed, and
    /// loads every complete block; leftovers of interrupted writes are removed.
    pub fn open(dir: &Path, opts: BlockStoreOptions) -> Result<BlockStore, StorageError> {
        let _ = (dir, opts);
        todo!("storage/tsdb/block: open")
    }

    /// Writes one block for `tenant` covering `[min_t, max_t)` from series
    /// sorted by labels (samples sorted, all inside the range). Returns `None`
    /// when `series` is empty. The block is visible to readers on return.
    pub fn write_block(
        &self,
        tenant: &Tenant,
        min_t: i64,
        max_t: i64,
        series: &mut dyn Iterator<Item = SeriesSamples>,
    ) -> Result<Option<BlockMeta>, StorageError> {
        let _ = (tenant, min_t, max_t, series);
        todo!("storage/tsdb/block: write_block")
    }

    /// Metas of a tenant's blocks, oldest first.
    pub fn blocks(&self, tenant: &Tenant) -> Vec<BlockMeta> {
        let _ = tenant;
        todo!("storage/tsdb/block: blocks")
    }

    /// Tenants that have blocks.
    pub fn tenants(&self) -> Vec<Tenant> {
        todo!("storage/tsdb/block: tenants")
    }

    /// Runs one round of compaction for every tenant; returns blocks written.
    pub fn compact(&self) -> Result<usize, StorageError> {
        todo!("storage/tsdb/block: compact")
    }

    /// Deletes whole blocks entirely older than `now_ms - retention`; returns
    /// how many were deleted.
    pub fn apply_retention(&self, now_ms: i64) -> Result<usize, StorageError> {
        let _ = now_ms;
        todo!("storage/tsdb/block: apply_retention")
    }

    /// Bytes on disk of all blocks.
    pub fn disk_bytes(&self) -> u64 {
        todo!("storage/tsdb/block: disk_bytes")
    }
}

impl MetricsReader for BlockStore {
    fn select(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        let _ = (tenant, matchers, mint, maxt);
        todo!("storage/tsdb/block: select")
    }

    fn series(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, StorageError> {
        let _ = (tenant, matchers, mint, maxt);
        todo!("storage/tsdb/block: series")
    }

    fn label_names(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        let _ = (tenant, matchers, mint, maxt);
        todo!("storage/tsdb/block: label_names")
    }

    fn label_values(
        &self,
        tenant: &Tenant,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        let _ = (tenant, name, matchers, mint, maxt);
        todo!("storage/tsdb/block: label_values")
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
