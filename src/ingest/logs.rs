//! Log ingestion (Loki push): stream label parsing and validation, entry
//! checks and the per-tenant byte rate, with the wording of Loki's
//! distributor (`pkg/validation`), then [`LogWriter::push`].
//!
//! As in Loki, a bad stream or entry is dropped and named in the error while
//! the rest of the request is written (the protocol then answers 400); the
//! rate limit refuses the whole request (429).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;

use chrono::{DateTime, SecondsFormat, Utc};

use super::patterns::PatternMiner;
use crate::config::LokiConfig;
use crate::logs::level::LevelDetector;
use crate::logs::{LogEntry, LogWriteError, LogWriter, PushOutcome, PushStream};
use crate::model::{Label, Labels, MatchOp, Tenant};

use super::RateLimiter;

/// Log entries stored.
pub const LOG_ENTRIES_INGESTED_TOTAL: &str = "strata_log_entries_ingested_total";
/// Log line bytes stored.
pub const LOG_BYTES_INGESTED_TOTAL: &str = "strata_log_bytes_ingested_total";
/// Log entries refused, by `reason` (Loki's discard reasons).
pub const LOG_ENTRIES_REJECTED_TOTAL: &str = "strata_log_entries_rejected_total";

/// Stream labels as they arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamLabels {
    /// A selector string (protobuf push): `{app="a", env="prod"}`.
    Text(String),
    /// Name/value pairs (JSON push).
    Pairs(Vec<Label>),
}

impl StreamLabels {
    /// How Loki names the stream in messages: the string as sent, or the
    /// pairs in Prometheus's `{a="b", c="d"}` form.
    fn describe(&self) -> String {
        match self {
            StreamLabels::Text(s) => s.clone(),
            StreamLabels::Pairs(p) => {
                let mut p = p.clone();
                p.sort_by(|a, b| a.name.cmp(&b.name));
                let body: Vec<String> = p
                    .iter()
                    .map(|l| format!("{}={:?}", l.name, l.value))
                    .collect();
                format!("{{{}}}", body.join(", "))
            }
        }
    }
}

/// One stream of a push, decoded but not validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingLogStream {
    /// Stream labels as sent.
    pub labels: StreamLabels,
    /// Entries as sent (timestamps in Unix ns).
    pub entries: Vec<LogEntry>,
}

/// What a push stored, and the validation errors of what it refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogPushReport {
    /// The store's account.
    pub outcome: PushOutcome,
    /// Loki's messages for refused streams and entries, one per line.
    pub errors: Vec<String>,
}

/// Why a whole push was refused.
#[derive(Debug, thiserror::Error)]
pub enum LogIngestError {
    /// The tenant's byte rate applies (429).
    #[error("{0}")]
    RateLimited(String),
    /// The store refused (429 for limits, 503 otherwise).
    #[error(transparent)]
    Store(#[from] LogWriteError),
}

/// The log ingestion path: validation, rate limit, then the store.
pub struct LogIngester {
    cfg: LokiConfig,
    writer: Arc<dyn LogWriter>,
    rate: RateLimiter,
    /// `detected_level` discovery, when on.
    levels: Option<LevelDetector>,
    /// The pattern miner, when on.
    patterns: Option<PatternMiner>,
    /// Validated labels by the selector string they arrived as (protobuf
    /// pushes resend the same strings): parsed once, not once per push.
    parsed: RwLock<HashMap<String, Labels>>,
}

/// Selector strings [`LogIngester`] keeps parsed; the cache starts over
/// when full.
const PARSED_LABELS_CACHE: usize = 65_536;

fn rfc3339(ns: i64) -> String {
    DateTime::<Utc>::from_timestamp(ns.div_euclid(1_000_000_000), 0)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| ns.to_string())
}

fn valid_label_name(n: &str) -> bool {
    let mut cs = n.chars();
    matches!(cs.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && cs.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Parses a stream selector string into pairs (Loki's `ParseLabels`): only
/// `=` matchers, no pipeline.
pub fn parse_stream_labels(s: &str) -> Result<Vec<Label>, String> {
    if s.trim() == "{}" {
        return Ok(Vec::new());
    }
    let expr = crate::query::logql::parse(s).map_err(|e| e.to_string())?;
    let crate::query::logql::Expr::Log(log) = expr else {
        return Err("expected a stream selector".into());
    };
    if !log.stages.is_empty() {
        return Err("expected a stream selector without a pipeline".into());
    }
    log.matchers
        .iter()
        .map(|m| match m.op {
            MatchOp::Equal => Ok(Label::new(m.name.clone(), m.value.clone())),
            _ => Err(format!(
                "unexpected matcher {m} in stream labels, expected ="
            )),
        })
        .collect()
}

impl LogIngester {
    /// An ingester writing to `writer` under `cfg`.
    pub fn new(cfg: LokiConfig, writer: Arc<dyn LogWriter>) -> LogIngester {
        let rate = RateLimiter::new(
            cfg.ingestion_rate_bytes as f64,
            cfg.ingestion_burst_size_bytes,
        );
        let levels = cfg
            .discover_log_levels
            .then(|| LevelDetector::new(&cfg.log_level_fields));
        let patterns = cfg.pattern_ingester_enabled.then(|| {
            PatternMiner::start(
                cfg.pattern_max_clusters_per_tenant,
                cfg.pattern_retain_for.0,
            )
        });
        LogIngester {
            cfg,
            writer,
            rate,
            levels,
            patterns,
            parsed: RwLock::new(HashMap::new()),
        }
    }

    /// The pattern miner, when `loki.pattern_ingester_enabled`.
    pub fn patterns(&self) -> Option<&PatternMiner> {
        self.patterns.as_ref()
    }

    /// [`LogIngester::stream_labels`], from the cache for selector strings
    /// seen before (only valid ones are kept: the checks depend on nothing
    /// but the string and the configuration).
    fn stream_labels_cached(&self, l: &StreamLabels) -> Result<Labels, (&'static str, String)> {
        let StreamLabels::Text(text) = l else {
            return self.stream_labels(l);
        };
        if let Some(labels) = self.parsed.read().get(text) {
            return Ok(labels.clone());
        }
        let labels = self.stream_labels(l)?;
        let mut cache = self.parsed.write();
        if cache.len() >= PARSED_LABELS_CACHE {
            cache.clear();
        }
        cache.insert(text.clone(), labels.clone());
        Ok(labels)
    }

    /// Validates a stream's labels (Loki's `validateLabels`), adding
    /// `service_name` when configured.
    fn stream_labels(&self, l: &StreamLabels) -> Result<Labels, (&'static str, String)> {
        let shown = l.describe();
        let mut pairs = match l {
            StreamLabels::Text(s) => parse_stream_labels(s).map_err(|e| {
                (
                    "invalid_labels",
                    format!("Error parsing labels '{s}' with error: {e}"),
                )
            })?,
            StreamLabels::Pairs(p) => p.clone(),
        };
        pairs.retain(|p| !p.value.is_empty());
        if pairs.is_empty() {
            return Err((
                "missing_labels",
                "error at least one label pair is required per stream".into(),
            ));
        }
        pairs.sort_by(|a, b| a.name.cmp(&b.name));
        let c = &self.cfg;
        if c.max_label_names_per_series > 0 && pairs.len() > c.max_label_names_per_series {
            return Err((
                "max_label_names_per_series",
                format!(
                    "entry for stream '{shown}' has {} label names; limit {}",
                    pairs.len(),
                    c.max_label_names_per_series
                ),
            ));
        }
        for (i, p) in pairs.iter().enumerate() {
            if !valid_label_name(&p.name) {
                return Err((
                    "invalid_labels",
                    format!(
                        "Error parsing labels '{shown}' with error: invalid label name {:?}",
                        p.name
                    ),
                ));
            }
            if c.max_label_name_length > 0 && p.name.len() > c.max_label_name_length {
                return Err((
                    "label_name_too_long",
                    format!("stream '{shown}' has label name too long: '{}'", p.name),
                ));
            }
            if c.max_label_value_length > 0 && p.value.len() > c.max_label_value_length {
                return Err((
                    "label_value_too_long",
                    format!("stream '{shown}' has label value too long: '{}'", p.value),
                ));
            }
            if i > 0 && pairs[i - 1].name == p.name {
                return Err((
                    "duplicate_label_names",
                    format!("stream '{shown}' has duplicate label name: '{}'", p.name),
                ));
            }
        }
        let mut labels = Labels::from_sorted(pairs);
        if !c.discover_service_name.is_empty() && labels.get("service_name").is_none() {
            let found = c
                .discover_service_name
                .iter()
                .find_map(|n| labels.get(n))
                .unwrap_or("unknown_service")
                .to_string();
            labels = crate::model::LabelsBuilder::new(&labels)
                .set("service_name", found)
                .labels();
        }
        Ok(labels)
    }

    /// Loki's `validateEntry`: age, future, line size, structured metadata.
    fn check_entry(
        &self,
        e: &LogEntry,
        stream: &StreamLabels,
        now_ns: i64,
    ) -> Result<(), (&'static str, String)> {
        let c = &self.cfg;
        let shown = || stream.describe();
        if c.reject_old_samples {
            let oldest =
                now_ns.saturating_sub(c.reject_old_samples_max_age.0.saturating_mul(1_000_000));
            if e.ts < oldest {
                return Err((
                    "greater_than_max_sample_age",
                    format!(
                        "entry for stream '{}' has timestamp too old: {}, oldest acceptable timestamp is: {}",
                        shown(),
                        rfc3339(e.ts),
                        rfc3339(oldest)
                    ),
                ));
            }
        }
        if e.ts > now_ns.saturating_add(c.creation_grace_period.0.saturating_mul(1_000_000)) {
            return Err((
                "too_far_in_future",
                format!(
                    "entry for stream '{}' has timestamp too new: {}",
                    shown(),
                    rfc3339(e.ts)
                ),
            ));
        }
        if c.max_line_size > 0 && e.line.len() > c.max_line_size {
            return Err((
                "line_too_long",
                format!(
                    "Max entry size '{}' bytes exceeded for stream '{}' while adding an entry with length '{}' bytes",
                    c.max_line_size,
                    shown(),
                    e.line.len()
                ),
            ));
        }
        let n = e.metadata.len();
        if c.max_structured_metadata_entries_count > 0
            && n > c.max_structured_metadata_entries_count
        {
            return Err((
                "structured_metadata_too_many",
                format!(
                    "stream '{}' has too many structured metadata labels: '{n}', limit: '{}'. Please see limits_config.max_structured_metadata_entries_count or contact your Loki administrator to increase it.",
                    shown(),
                    c.max_structured_metadata_entries_count
                ),
            ));
        }
        let size: usize = e
            .metadata
            .iter()
            .map(|l| l.name.len() + l.value.len())
            .sum();
        if c.max_structured_metadata_size > 0 && size > c.max_structured_metadata_size {
            return Err((
                "structured_metadata_too_large",
                format!(
                    "stream '{}' has structured metadata too large: '{size}' bytes, limit: '{}' bytes. Please see limits_config.max_structured_metadata_size or contact your Loki administrator to increase it.",
                    shown(),
                    c.max_structured_metadata_size
                ),
            ));
        }
        Ok(())
    }

    /// Validates and stores one push for `tenant` at `now_ns`. Blocking (the
    /// store fsyncs): call from a blocking thread.
    pub fn push(
        &self,
        tenant: &Tenant,
        streams: Vec<IncomingLogStream>,
        now_ns: i64,
    ) -> Result<LogPushReport, LogIngestError> {
        let mut report = LogPushReport::default();
        let mut valid: Vec<PushStream> = Vec::with_capacity(streams.len());
        let mut lines = 0usize;
        let mut bytes = 0usize;
        let reject = |reason: &'static str, n: usize, msg: String, errors: &mut Vec<String>| {
            metrics::counter!(LOG_ENTRIES_REJECTED_TOTAL, "reason" => reason).increment(n as u64);
            errors.push(msg);
        };
        // Index of each stream's labels in `valid` (several pushed streams
        // may name the same labels).
        let mut index: HashMap<Labels, usize> = HashMap::with_capacity(streams.len());
        for s in streams {
            let labels = match self.stream_labels_cached(&s.labels) {
                Ok(l) => l,
                Err((reason, msg)) => {
                    reject(reason, s.entries.len(), msg, &mut report.errors);
                    continue;
                }
            };
            let mut entries = Vec::with_capacity(s.entries.len());
            for e in s.entries {
                match self.check_entry(&e, &s.labels, now_ns) {
                    Ok(()) => {
                        lines += 1;
                        bytes += e.line.len()
                            + e.metadata
                                .iter()
                                .map(|l| l.name.len() + l.value.len())
                                .sum::<usize>();
                        entries.push(e);
                    }
                    Err((reason, msg)) => reject(reason, 1, msg, &mut report.errors),
                }
            }
            // After the byte count of the rate limit: the client did not
            // send it.
            if let Some(d) = &self.levels {
                d.annotate(&labels, &mut entries);
            }
            if !entries.is_empty() {
                match index.get(&labels) {
                    Some(&i) => valid[i].entries.extend(entries),
                    None => {
                        index.insert(labels.clone(), valid.len());
                        valid.push(PushStream { labels, entries });
                    }
                }
            }
        }
        if !self.rate.try_take(tenant, bytes, Instant::now()) {
            metrics::counter!(LOG_ENTRIES_REJECTED_TOTAL, "reason" => "rate_limited")
                .increment(lines as u64);
            return Err(LogIngestError::RateLimited(format!(
                "Ingestion rate limit exceeded for user {tenant} (limit: {} bytes/sec) while attempting to ingest '{lines}' lines totaling '{bytes}' bytes, reduce log volume or contact your Loki administrator to see if the limit can be increased",
                self.rate.rate() as u64
            )));
        }
        if !valid.is_empty() {
            // The miner gets a copy once the push is stored.
            let mined = self.patterns.as_ref().map(|m| (m, valid.clone()));
            report.outcome = self.writer.push(tenant, valid)?;
            if let Some((m, streams)) = mined {
                m.offer(tenant, streams);
            }
        }
        metrics::counter!(LOG_ENTRIES_INGESTED_TOTAL)
            .increment(report.outcome.entries_written as u64);
        metrics::counter!(LOG_BYTES_INGESTED_TOTAL).increment(report.outcome.bytes_written as u64);
        for r in &report.outcome.rejected {
            metrics::counter!(LOG_ENTRIES_REJECTED_TOTAL, "reason" => "store")
                .increment(r.count as u64);
            report.errors.push(format!(
                "{}, {} entries for stream '{}' were not stored",
                r.reason, r.count, r.labels
            ));
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::{LineHint, LogReader, LogSelect, MemLogs};

    const NOW: i64 = 1_700_000_000_000_000_000;

    fn setup(cfg: LokiConfig) -> (LogIngester, Arc<MemLogs>, Tenant) {
        let m = Arc::new(MemLogs::new());
        (
            LogIngester::new(cfg, m.clone()),
            m,
            Tenant::new("t").unwrap(),
        )
    }

    fn text(l: &str, entries: &[(i64, &str)]) -> IncomingLogStream {
        IncomingLogStream {
            labels: StreamLabels::Text(l.into()),
            entries: entries.iter().map(|(t, s)| LogEntry::new(*t, *s)).collect(),
        }
    }

    fn stored(m: &MemLogs, t: &Tenant) -> Vec<(String, Vec<String>)> {
        let hint = LineHint::default();
        m.select(
            t,
            &LogSelect {
                matchers: &[],
                start: 0,
                end: i64::MAX,
                hint: &hint,
            },
        )
        .unwrap()
        .into_iter()
        .map(|s| {
            (
                s.labels.to_string(),
                s.entries.into_iter().map(|e| e.line).collect(),
            )
        })
        .collect()
    }

    #[test]
    fn bad_streams_and_entries_are_named_and_the_rest_written() {
        let cfg = LokiConfig {
            max_line_size: 10,
            ..LokiConfig::default()
        };
        let (ing, m, t) = setup(cfg);
        let r = ing
            .push(
                &t,
                vec![
                    text(
                        r#"{app="a"}"#,
                        &[(NOW, "ok"), (NOW + 1, "far too long a line")],
                    ),
                    text(r#"{app="b""#, &[(NOW, "x")]),
                    text(
                        r#"{app="c"}"#,
                        &[
                            (NOW - 8 * 86_400_000_000_000, "old"),
                            (NOW + 3_600_000_000_000, "new"),
                        ],
                    ),
                    text("{}", &[(NOW, "x")]),
                ],
                NOW,
            )
            .unwrap();
        assert_eq!(r.outcome.entries_written, 1);
        assert_eq!(r.errors.len(), 5, "{:?}", r.errors);
        assert_eq!(
            r.errors[0],
            "Max entry size '10' bytes exceeded for stream '{app=\"a\"}' while adding an entry with length '19' bytes"
        );
        assert!(
            r.errors[1].starts_with("Error parsing labels '{app=\"b\"' with error: parse error"),
            "{}",
            r.errors[1]
        );
        assert_eq!(
            r.errors[2],
            "entry for stream '{app=\"c\"}' has timestamp too old: 2023-11-06T22:13:20Z, oldest acceptable timestamp is: 2023-11-07T22:13:20Z"
        );
        assert_eq!(
            r.errors[3],
            "entry for stream '{app=\"c\"}' has timestamp too new: 2023-11-14T23:13:20Z"
        );
        assert_eq!(
            r.errors[4],
            "error at least one label pair is required per stream"
        );
        assert_eq!(
            stored(&m, &t),
            [(
                "{app=\"a\", service_name=\"a\"}".to_string(),
                vec!["ok".to_string()]
            )]
        );
    }

    #[test]
    fn label_limits_and_service_name() {
        let cfg = LokiConfig {
            max_label_names_per_series: 2,
            max_label_value_length: 3,
            ..LokiConfig::default()
        };
        let (ing, m, t) = setup(cfg);
        let pairs = |ps: &[(&str, &str)]| IncomingLogStream {
            labels: StreamLabels::Pairs(ps.iter().map(|(a, b)| Label::new(*a, *b)).collect()),
            entries: vec![LogEntry::new(NOW, "l")],
        };
        let r = ing
            .push(
                &t,
                vec![
                    pairs(&[("b", "1"), ("a", "2"), ("c", "3")]),
                    pairs(&[("a", "long")]),
                    pairs(&[("a", "1"), ("a", "2")]),
                    pairs(&[("1a", "x")]),
                    pairs(&[("env", "dev")]),
                ],
                NOW,
            )
            .unwrap();
        assert_eq!(
            r.errors,
            [
                "entry for stream '{a=\"2\", b=\"1\", c=\"3\"}' has 3 label names; limit 2",
                "stream '{a=\"long\"}' has label value too long: 'long'",
                "stream '{a=\"1\", a=\"2\"}' has duplicate label name: 'a'",
                "Error parsing labels '{1a=\"x\"}' with error: invalid label name \"1a\"",
            ]
        );
        assert_eq!(
            stored(&m, &t)[0].0,
            "{env=\"dev\", service_name=\"unknown_service\"}"
        );
    }

    #[test]
    fn rate_limit_refuses_the_whole_push() {
        let cfg = LokiConfig {
            ingestion_rate_bytes: 10,
            ingestion_burst_size_bytes: 10,
            ..LokiConfig::default()
        };
        let (ing, m, t) = setup(cfg);
        ing.push(&t, vec![text(r#"{app="a"}"#, &[(NOW, "0123456789")])], NOW)
            .unwrap();
        let e = ing
            .push(&t, vec![text(r#"{app="a"}"#, &[(NOW, "abc")])], NOW)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Ingestion rate limit exceeded for user t (limit: 10 bytes/sec) while attempting to ingest '1' lines totaling '3' bytes, reduce log volume or contact your Loki administrator to see if the limit can be increased"
        );
        assert_eq!(stored(&m, &t)[0].1, ["0123456789"]);
    }
}
