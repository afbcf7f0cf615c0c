//! Settings of the metrics store, built from the configuration.

use std::time::Duration;

use crate::config::Config;
use crate::storage::wal::WalOptions;

/// Settings of a [`super::Tsdb`].
#[derive(Debug, Clone)]
pub struct TsdbOptions {
    /// WAL settings.
    pub wal: WalOptions,
    /// Range of a block flushed from the head, ms.
    pub block_duration_ms: i64,
    /// Largest block range compaction builds, ms.
    pub max_block_duration_ms: i64,
    /// Blocks older than this are deleted, ms.
    pub retention_ms: i64,
    /// Samples this much older than their series' newest are still accepted, ms.
    pub out_of_order_window_ms: i64,
    /// Series per tenant in the head (0 = unlimited).
    pub max_series_per_tenant: usize,
    /// Exemplars kept per tenant (a ring; the oldest are dropped).
    pub max_exemplars_per_tenant: usize,
    /// How often the maintenance thread checks for flush, compaction and retention.
    pub maintenance_interval: Duration,
}

impl Default for TsdbOptions {
    fn default() -> Self {
        TsdbOptions::from_config(&Config::default())
    }
}

impl TsdbOptions {
    /// The options the configuration asks for.
    pub fn from_config(c: &Config) -> TsdbOptions {
        TsdbOptions {
            wal: WalOptions {
                segment_size: c.wal.segment_size_bytes,
                fsync: c.wal.fsync,
                max_group_delay: c.wal.max_group_delay.to_std(),
            },
            block_duration_ms: c.tsdb.block_duration.0,
            max_block_duration_ms: c.tsdb.max_block_duration.0,
            retention_ms: c.tsdb.retention.0,
            out_of_order_window_ms: c.tsdb.out_of_order_window.0,
            max_series_per_tenant: c.limits.max_series_per_tenant,
            max_exemplars_per_tenant: c.tsdb.max_exemplars_per_tenant,
            maintenance_interval: c.tsdb.maintenance_interval.to_std(),
        }
    }
}
