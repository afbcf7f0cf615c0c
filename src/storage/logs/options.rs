//! Settings of the log store, built from the configuration.

use std::time::Duration;

use crate::config::Config;
use crate::storage::wal::WalOptions;

/// Settings of a [`super::LogStore`].
#[derive(Debug, Clone)]
pub struct LogStoreOptions {
    /// WAL settings (shared with the metrics store's).
    pub wal: WalOptions,
    /// Entries this much older than their stream's newest are accepted, ns.
    pub out_of_order_window_ns: i64,
    /// The head is cut into a segment past this many bytes.
    pub head_max_bytes: usize,
    /// ... or once its first entry is this old.
    pub head_max_age: Duration,
    /// Raw line bytes per compressed block.
    pub block_bytes: usize,
    /// zstd level of block columns.
    pub block_zstd_level: i32,
    /// Segments whose newest entry is older than this are deleted, ns (0 = never).
    pub retention_ns: i64,
    /// How often the maintenance thread runs.
    pub maintenance_interval: Duration,
    /// Segments keep their full-text index for this long after they are
    /// written, ns (0 = no full-text index).
    pub fulltext_hot_window_ns: i64,
    /// Tokens no longer than this ...
    pub fulltext_rare_token_max_len: usize,
    /// ... and found in at most this many blocks of the segment.
    pub fulltext_rare_token_max_blocks: u32,
    /// Fingerprint bits kept with each block of a rare token.
    pub fulltext_fingerprint_bits: u32,
}

impl Default for LogStoreOptions {
    fn default() -> Self {
        LogStoreOptions::from_config(&Config::default())
    }
}

impl LogStoreOptions {
    /// The options the configuration asks for.
    pub fn from_config(c: &Config) -> LogStoreOptions {
        LogStoreOptions {
            wal: crate::storage::tsdb::TsdbOptions::from_config(c).wal,
            out_of_order_window_ns: c.logs.out_of_order_window.0.saturating_mul(1_000_000),
            head_max_bytes: c.logs.head_max_bytes,
            head_max_age: c.logs.head_max_age.to_std(),
            block_bytes: c.logs.block_bytes,
            block_zstd_level: c.logs.block_zstd_level,
            retention_ns: c.logs.retention.0.saturating_mul(1_000_000),
            maintenance_interval: c.logs.maintenance_interval.to_std(),
            fulltext_hot_window_ns: c.logs.fulltext_hot_window.0.saturating_mul(1_000_000),
            fulltext_rare_token_max_len: c.logs.fulltext_rare_token_max_len,
            fulltext_rare_token_max_blocks: c.logs.fulltext_rare_token_max_blocks,
            fulltext_fingerprint_bits: c.logs.fulltext_fingerprint_bits,
        }
    }

    /// What segment writing is given for the full-text index, `None` when
    /// no index is built.
    pub(crate) fn fulltext(&self) -> Option<super::fulltext::Settings> {
        (self.fulltext_hot_window_ns > 0).then_some(super::fulltext::Settings {
            rare_max_len: self.fulltext_rare_token_max_len,
            rare_max_blocks: self.fulltext_rare_token_max_blocks,
            fingerprint_bits: self.fulltext_fingerprint_bits,
        })
    }
}
