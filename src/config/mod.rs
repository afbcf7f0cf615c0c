//! Configuration: a YAML file (every field optional, defaults embedded) with
//! command-line flags applied on top. `deploy/strata.example.yaml` documents
//! every option with its default; a test keeps the two in step.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::{format_duration, parse_duration};

/// A duration in milliseconds, written in YAML as a Prometheus duration (`15d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DurationMs(pub i64);

impl DurationMs {
    /// As a std duration (negative values clamp to zero).
    pub fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0.max(0) as u64)
    }
}

impl<'de> Deserialize<'de> for DurationMs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(DurationMs)
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for DurationMs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(self.0))
    }
}

/// Configuration errors.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// File path.
        path: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The YAML is invalid or has unknown fields.
    #[error("invalid config file {path}: {reason}")]
    Parse {
        /// File path.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// A value is out of its allowed range.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Addresses to listen on; every listener serves every protocol.
    pub listen: Vec<String>,
    /// Where all data lives.
    pub data_dir: PathBuf,
    /// Longest a graceful shutdown waits for in-flight requests.
    pub shutdown_timeout: DurationMs,
    /// Ingestion and query limits (per tenant where it says so).
    pub limits: Limits,
    /// Write-ahead log.
    pub wal: WalConfig,
    /// Metrics storage.
    pub tsdb: TsdbConfig,
    /// Query engine.
    pub query: QueryConfig,
    /// Recording and alerting rules, and where alerts go.
    pub rules: RulesConfig,
    /// LogQL engine limits.
    pub logql: LogqlConfig,
    /// Log storage.
    pub logs: LogsConfig,
    /// Loki API: push validation and query limits.
    pub loki: LokiConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec!["0.0.0.0:9090".into()],
            data_dir: PathBuf::from("./data"),
            shutdown_timeout: DurationMs(30_000),
            limits: Limits::default(),
            wal: WalConfig::default(),
            tsdb: TsdbConfig::default(),
            query: QueryConfig::default(),
            rules: RulesConfig::default(),
            logql: LogqlConfig::default(),
            logs: LogsConfig::default(),
            loki: LokiConfig::default(),
        }
    }
}

/// Limits. Zero means unlimited where noted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest accepted request body, compressed, in bytes (413 beyond).
    pub max_request_body_bytes: usize,
    /// Largest accepted body after decompression, in bytes (413 beyond).
    pub max_decompressed_bytes: usize,
    /// Series per tenant in the head (0 = unlimited).
    pub max_series_per_tenant: usize,
    /// Labels per series, `__name__` included.
    pub max_labels_per_series: usize,
    /// Label name length in bytes.
    pub max_label_name_length: usize,
    /// Label value length in bytes.
    pub max_label_value_length: usize,
    /// Sustained samples per second per tenant (0 = unlimited); 429 beyond.
    pub ingestion_rate_samples_per_second: f64,
    /// Burst allowance for the ingestion rate, in samples.
    pub ingestion_burst_samples: usize,
    /// Samples more than this far in the future are rejected.
    pub creation_grace_period: DurationMs,
    /// Samples one query may load into memory (Prometheus's `--query.max-samples`).
    pub max_samples_per_query: usize,
    /// Concurrent queries per tenant (0 = unlimited); further queries wait.
    pub max_concurrent_queries_per_tenant: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_body_bytes: 64 << 20,
            max_decompressed_bytes: 256 << 20,
            max_series_per_tenant: 5_000_000,
            max_labels_per_series: 64,
            max_label_name_length: 1024,
            max_label_value_length: 4096,
            ingestion_rate_samples_per_second: 0.0,
            ingestion_burst_samples: 0,
            creation_grace_period: DurationMs(10 * 60_000),
            max_samples_per_query: 50_000_000,
            max_concurrent_queries_per_tenant: 20,
        }
    }
}

/// WAL settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WalConfig {
    /// Segment size in bytes.
    pub segment_size_bytes: u64,
    /// fsync before acknowledging writes. Turning this off breaks the
    /// durability promise; only for benchmarks of other parts.
    pub fsync: bool,
    /// Longest a writer waits for others to share its group commit (0 =
    /// none: groups still form while an fsync is in flight).
    pub max_group_delay: DurationMs,
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig {
            segment_size_bytes: 128 << 20,
            fsync: true,
            max_group_delay: DurationMs(0),
        }
    }
}

/// Metrics storage settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TsdbConfig {
    /// Time range of one block flushed from the head.
    pub block_duration: DurationMs,
    /// Blocks older than this are deleted whole.
    pub retention: DurationMs,
    /// Samples this much older than a series' newest sample are still accepted.
    pub out_of_order_window: DurationMs,
    /// Largest block range compaction builds.
    pub max_block_duration: DurationMs,
    /// Exemplars kept per tenant in the head (a ring; the oldest go first).
    pub max_exemplars_per_tenant: usize,
    /// How often the head is checked for flushing, and blocks for
    /// compaction and retention.
    pub maintenance_interval: DurationMs,
}

impl Default for TsdbConfig {
    fn default() -> Self {
        TsdbConfig {
            block_duration: DurationMs(2 * 3_600_000),
            retention: DurationMs(15 * 86_400_000),
            out_of_order_window: DurationMs(3_600_000),
            max_block_duration: DurationMs(36 * 3_600_000),
            max_exemplars_per_tenant: 100_000,
            maintenance_interval: DurationMs(60_000),
        }
    }
}

/// Query engine settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct QueryConfig {
    /// How far back an instant selector looks for a sample.
    pub lookback_delta: DurationMs,
    /// Longest a query may run unless the request asks for less.
    pub timeout: DurationMs,
    /// Enables experimental PromQL functions (as Prometheus's feature flag).
    pub enable_experimental_functions: bool,
    /// Parsed queries kept for reuse (0 disables the cache).
    pub parse_cache_entries: usize,
    /// A query whose last evaluation (same text, step and span) took less
    /// than this is evaluated on the HTTP worker itself, without handing
    /// the worker's other work to another thread first (0 disables).
    pub inline_eval_below: DurationMs,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            lookback_delta: DurationMs(5 * 60_000),
            timeout: DurationMs(2 * 60_000),
            enable_experimental_functions: false,
            parse_cache_entries: crate::query::promql::DEFAULT_PARSE_CACHE_ENTRIES,
            inline_eval_below: DurationMs(1),
        }
    }
}

/// Rules and notification settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    /// Prometheus rule files (globs allowed), relative to the config file's
    /// directory or the working directory.
    pub files: Vec<String>,
    /// Tenant the rule files are evaluated in.
    pub tenant: String,
    /// Interval of groups that set none.
    pub evaluation_interval: DurationMs,
    /// Alertmanager base URLs alerts are sent to (API v2).
    pub alertmanagers: Vec<String>,
    /// Labels added to alerts sent and available to templates.
    pub external_labels: std::collections::BTreeMap<String, String>,
    /// URL Strata is reached at (for generatorURL and templates).
    pub external_url: String,
    /// Firing alerts are re-sent this often.
    pub resend_delay: DurationMs,
    /// Alerts queued for sending at most; the oldest are dropped beyond it.
    pub notification_queue_capacity: usize,
    /// Timeout of one request to an Alertmanager.
    pub notification_timeout: DurationMs,
    /// The Loki ruler: LogQL rule files per tenant.
    pub loki: LokiRulesConfig,
}

/// The Loki ruler's local rule storage: `<directory>/<tenant>/<namespace>.yaml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LokiRulesConfig {
    /// Directory holding one folder of LogQL rule files per tenant (empty:
    /// the Loki ruler is off).
    pub directory: String,
    /// Interval of LogQL rule groups that set none.
    pub evaluation_interval: DurationMs,
}

impl Default for LokiRulesConfig {
    fn default() -> Self {
        LokiRulesConfig {
            directory: String::new(),
            evaluation_interval: DurationMs(60_000),
        }
    }
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            files: vec![],
            tenant: "anonymous".into(),
            evaluation_interval: DurationMs(60_000),
            alertmanagers: vec![],
            external_labels: Default::default(),
            external_url: "http://localhost:9090".into(),
            resend_delay: DurationMs(60_000),
            notification_queue_capacity: 10_000,
            notification_timeout: DurationMs(10_000),
            loki: LokiRulesConfig::default(),
        }
    }
}

impl Config {
    /// Reads a YAML file; fields left out keep their defaults.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::from_yaml(&text).map_err(|e| match e {
            ConfigError::Parse { reason, .. } => ConfigError::Parse {
                path: path.display().to_string(),
                reason,
            },
            other => other,
        })
    }

    /// Parses YAML text; fields left out keep their defaults.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            serde_yaml::from_str(text).map_err(|e| ConfigError::Parse {
                path: "<yaml>".into(),
                reason: e.to_string(),
            })?
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks values that the types alone do not constrain.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.is_empty() {
            return Err(ConfigError::Invalid(
                "listen needs at least one address".into(),
            ));
        }
        if self.tsdb.block_duration.0 < 60_000 {
            return Err(ConfigError::Invalid(format!(
                "tsdb.block_duration is {}, the minimum is 1m",
                format_duration(self.tsdb.block_duration.0)
            )));
        }
        if self.tsdb.max_block_duration.0 < self.tsdb.block_duration.0 {
            return Err(ConfigError::Invalid(
                "tsdb.max_block_duration must be at least tsdb.block_duration".into(),
            ));
        }
        if self.tsdb.maintenance_interval.0 < 1_000 {
            return Err(ConfigError::Invalid(format!(
                "tsdb.maintenance_interval is {}, the minimum is 1s",
                format_duration(self.tsdb.maintenance_interval.0)
            )));
        }
        if self.logs.maintenance_interval.0 < 1_000 || self.logs.block_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "logs.maintenance_interval must be at least 1s and logs.block_bytes at least 1024"
                    .into(),
            ));
        }
        if !(1..=22).contains(&self.logs.block_zstd_level) {
            return Err(ConfigError::Invalid(format!(
                "logs.block_zstd_level is {}, it must be in 1..=22",
                self.logs.block_zstd_level
            )));
        }
        if self.logs.fulltext_rare_token_max_len > 255 || self.logs.fulltext_hot_window.0 < 0 {
            return Err(ConfigError::Invalid(format!(
                "logs.fulltext_rare_token_max_len is {}, the maximum is 255 (and logs.fulltext_hot_window must not be negative)",
                self.logs.fulltext_rare_token_max_len
            )));
        }
        let (blocks, bits) = (
            self.logs.fulltext_rare_token_max_blocks,
            self.logs.fulltext_fingerprint_bits,
        );
        if !(1..=255).contains(&blocks) || bits > 24 {
            return Err(ConfigError::Invalid(format!(
                "logs.fulltext_rare_token_max_blocks is {blocks} (1..=255) and logs.fulltext_fingerprint_bits {bits} (at most 24)"
            )));
        }
        if self.query.lookback_delta.0 <= 0 {
            return Err(ConfigError::Invalid(
                "query.lookback_delta must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// Log storage settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogsConfig {
    /// Entries this much older than their stream's newest entry are still
    /// accepted; older ones are refused ("entry too far behind").
    pub out_of_order_window: DurationMs,
    /// The in-memory head is cut into a segment once it holds this many
    /// bytes of lines and metadata.
    pub head_max_bytes: usize,
    /// ... or once its first entry arrived this long ago.
    pub head_max_age: DurationMs,
    /// Raw bytes of lines per compressed block in a segment.
    pub block_bytes: usize,
    /// zstd level of the columns of segment blocks (1..=22; compression
    /// runs when a head is cut and counts toward ingest CPU).
    pub block_zstd_level: i32,
    /// Segments whose newest entry is older than this are deleted whole
    /// (0s keeps everything).
    pub retention: DurationMs,
    /// How often the head is checked for cutting and segments for retention.
    pub maintenance_interval: DurationMs,
    /// Segments written less than this long ago keep a full-text index (the
    /// hot tier, judged by the segment's age, not its entries'); older ones
    /// keep only the per-block token filters (warm). 0s builds no full-text
    /// index.
    pub fulltext_hot_window: DurationMs,
    /// Tokens at most this long (random ids) and found in at most
    /// `fulltext_rare_token_max_blocks` blocks of a segment stay out of the
    /// full-text dictionary, in its rare-token function only; needles at
    /// least this long are still answered from the index.
    pub fulltext_rare_token_max_len: usize,
    /// See `fulltext_rare_token_max_len` (1..=255).
    pub fulltext_rare_token_max_blocks: u32,
    /// Fingerprint bits the rare-token function keeps per token and block
    /// (0..=24): a needle outside the dictionary reads a wrong block in a
    /// segment with probability 2^-bits.
    pub fulltext_fingerprint_bits: u32,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            out_of_order_window: DurationMs(3_600_000),
            head_max_bytes: 256 << 20,
            head_max_age: DurationMs(30 * 60_000),
            block_bytes: 1 << 20,
            block_zstd_level: 3,
            retention: DurationMs(31 * 86_400_000),
            maintenance_interval: DurationMs(10_000),
            fulltext_hot_window: DurationMs(86_400_000),
            fulltext_rare_token_max_len: 16,
            fulltext_rare_token_max_blocks: 8,
            fulltext_fingerprint_bits: 8,
        }
    }
}

/// LogQL engine limits (Loki's names and defaults).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogqlConfig {
    /// Most series a metric query may return.
    pub max_query_series: usize,
    /// Most evaluation steps of a range query.
    pub max_query_points: usize,
    /// Most log entries a log query returns, whatever `limit` asks.
    pub max_entries_limit_per_query: usize,
}

impl Default for LogqlConfig {
    fn default() -> Self {
        LogqlConfig {
            max_query_series: 500,
            max_query_points: 11_000,
            max_entries_limit_per_query: 5000,
        }
    }
}

/// Loki push validation and query limits (Loki's `limits_config` names;
/// byte sizes in bytes, rates per tenant). Zero means unlimited where noted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LokiConfig {
    /// Longest accepted log line in bytes (0 = unlimited); 400 beyond.
    pub max_line_size: usize,
    /// Label names per stream (400 beyond).
    pub max_label_names_per_series: usize,
    /// Label name length in bytes (400 beyond).
    pub max_label_name_length: usize,
    /// Label value length in bytes (400 beyond).
    pub max_label_value_length: usize,
    /// Refuse entries older than `reject_old_samples_max_age`.
    pub reject_old_samples: bool,
    /// Oldest accepted entry age when `reject_old_samples` is on.
    pub reject_old_samples_max_age: DurationMs,
    /// Entries further than this in the future are refused (400).
    pub creation_grace_period: DurationMs,
    /// Sustained ingestion per tenant in bytes per second (0 = unlimited); 429 beyond.
    pub ingestion_rate_bytes: usize,
    /// Burst of the ingestion rate in bytes (0 = one second's worth).
    pub ingestion_burst_size_bytes: usize,
    /// Structured metadata bytes per entry (0 = unlimited).
    pub max_structured_metadata_size: usize,
    /// Structured metadata pairs per entry (0 = unlimited).
    pub max_structured_metadata_entries_count: usize,
    /// Labels `service_name` is taken from when a stream has none (the
    /// first present wins, else `unknown_service`); empty turns it off.
    pub discover_service_name: Vec<String>,
    /// Add Loki's `detected_level` structured metadata to every entry
    /// (from a level label, metadata, a JSON/logfmt field or keywords).
    pub discover_log_levels: bool,
    /// The label and field names a level is read from, in order of
    /// preference (Loki's `log_level_fields`).
    pub log_level_fields: Vec<String>,
    /// Mine patterns from pushed lines for `/loki/api/v1/patterns` (Loki's
    /// `pattern_ingester.enabled`, off by default as in Loki).
    pub pattern_ingester_enabled: bool,
    /// Patterns kept per tenant in all (at most 300 per stream and level);
    /// lines that would start one more are not mined.
    pub pattern_max_clusters_per_tenant: usize,
    /// Pattern samples older than this are dropped, and patterns left empty.
    pub pattern_retain_for: DurationMs,
    /// Longest time range of a query (0 = unlimited); 400 beyond.
    pub max_query_length: DurationMs,
    /// Line bytes one query may read from the store (0 = unlimited).
    pub max_query_bytes_read: usize,
    /// Longest a Loki query reads (queueing included). `query` and
    /// `query_range` then return what they read, flagged partial in
    /// `warnings`; a read still running a quarter of this later (at least
    /// 1 s) fails with 504, as do metadata queries past it.
    pub query_timeout: DurationMs,
    /// Queries read their range in slices this wide (Loki's
    /// `split_queries_by_interval`; 0 = one piece): a log query stops once
    /// its limit is filled, a timed-out query keeps the slices it read.
    pub split_queries_by_interval: DurationMs,
    /// Loki queries running at once per tenant (0 = unlimited); further ones wait.
    pub max_concurrent_queries_per_tenant: usize,
    /// Live-tail connections per tenant (0 = unlimited); 429 beyond.
    pub max_concurrent_tail_requests: usize,
}

impl Default for LokiConfig {
    fn default() -> Self {
        LokiConfig {
            max_line_size: 256 << 10,
            max_label_names_per_series: 15,
            max_label_name_length: 1024,
            max_label_value_length: 2048,
            reject_old_samples: true,
            reject_old_samples_max_age: DurationMs(7 * 86_400_000),
            creation_grace_period: DurationMs(10 * 60_000),
            ingestion_rate_bytes: 0,
            ingestion_burst_size_bytes: 0,
            max_structured_metadata_size: 64 << 10,
            max_structured_metadata_entries_count: 128,
            discover_service_name: [
                "service_name",
                "service",
                "app",
                "application",
                "name",
                "app_kubernetes_io_name",
                "container",
                "container_name",
                "k8s_container_name",
                "component",
                "workload",
                "job",
            ]
            .map(String::from)
            .to_vec(),
            discover_log_levels: true,
            log_level_fields: [
                "level", "LEVEL", "Level", "severity", "SEVERITY", "Severity", "lvl", "LVL", "Lvl",
            ]
            .map(String::from)
            .to_vec(),
            pattern_ingester_enabled: false,
            pattern_max_clusters_per_tenant: 3000,
            pattern_retain_for: DurationMs(3 * 3_600_000),
            max_query_length: DurationMs(721 * 3_600_000),
            max_query_bytes_read: 0,
            query_timeout: DurationMs(60_000),
            split_queries_by_interval: DurationMs(3_600_000),
            max_concurrent_queries_per_tenant: 16,
            max_concurrent_tail_requests: 10,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_yaml_gives_defaults() {
        assert_eq!(Config::from_yaml("").unwrap(), Config::default());
    }

    #[test]
    fn partial_yaml_overrides() {
        let c =
            Config::from_yaml("tsdb:\n  retention: 30d\nlimits:\n  max_labels_per_series: 10\n")
                .unwrap();
        assert_eq!(c.tsdb.retention, DurationMs(30 * 86_400_000));
        assert_eq!(c.limits.max_labels_per_series, 10);
        assert_eq!(c.tsdb.block_duration, DurationMs(7_200_000));
    }

    #[test]
    fn unknown_fields_and_bad_durations_are_errors() {
        assert!(Config::from_yaml("nope: 1\n").is_err());
        assert!(Config::from_yaml("tsdb:\n  retention: 15 days\n").is_err());
    }

    #[test]
    fn example_file_matches_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/strata.example.yaml");
        let c = Config::from_file(&path).unwrap();
        assert_eq!(
            c,
            Config::default(),
            "deploy/strata.example.yaml must list every default"
        );
    }
}
