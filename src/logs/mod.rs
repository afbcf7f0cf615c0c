//! The log data model and the seam between the log store and LogQL.
//!
//! A log *stream* is a label set (its indexed labels) and entries sorted by
//! timestamp; an entry carries a nanosecond timestamp, the line and optional
//! structured metadata. The query engine reads streams through the
//! [`LogReader`] trait; [`MemLogs`] is the in-memory reference implementation
//! that later stores (head buffers, segments, tiers) are tested against.

pub mod detected;
pub mod drain;
pub mod level;
pub mod volume;

use crate::model::{Labels, Matcher, Tenant};
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::Arc;

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Timestamp in Unix nanoseconds.
    pub ts: i64,
    /// The line as pushed.
    pub line: String,
    /// Structured metadata (not indexed; visible to label filters and templates).
    pub metadata: Labels,
}

impl LogEntry {
    /// An entry without structured metadata.
    pub fn new(ts: i64, line: impl Into<String>) -> LogEntry {
        LogEntry {
            ts,
            line: line.into(),
            metadata: Labels::empty(),
        }
    }
}

/// A stream: its labels and entries sorted by timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    /// Stream (indexed) labels.
    pub labels: Labels,
    /// Entries in timestamp order.
    pub entries: Vec<LogEntry>,
}

/// Terms the query requires in every line, which a store may use to skip
/// entries through its full-text index. A hint only: the engine still applies
/// every filter, so a store may return a superset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineHint {
    /// Case-sensitive substrings every returned line must contain.
    pub must_contain: Vec<String>,
    /// What the query reads of each line.
    pub need: LineNeed,
}

/// What a query reads of each line, so a store may skip rebuilding lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LineNeed {
    /// The text (every query that filters, parses or returns lines).
    #[default]
    Text,
    /// Only its length in bytes (`bytes_over_time` with no stages): a store
    /// may return any line of that length.
    Length,
    /// Neither (`count_over_time` with no stages): a store may return
    /// empty lines.
    Nothing,
}

impl LineHint {
    /// True when `line` satisfies the hint.
    pub fn accepts(&self, line: &str) -> bool {
        self.must_contain.iter().all(|t| line.contains(t.as_str()))
    }
}

/// What to read: streams matching all matchers, entries with
/// `start <= ts < end` (nanoseconds).
#[derive(Debug, Clone)]
pub struct LogSelect<'a> {
    /// Stream matchers (all must match).
    pub matchers: &'a [Matcher],
    /// Inclusive start, Unix ns.
    pub start: i64,
    /// Exclusive end, Unix ns.
    pub end: i64,
    /// Pushed-down plain-term filter.
    pub hint: &'a LineHint,
}

/// Errors from a log store read.
#[derive(Debug, thiserror::Error)]
pub enum LogReadError {
    /// A limit was hit while reading (streams, bytes).
    #[error("{0}")]
    LimitExceeded(String),
    /// The store failed.
    #[error("log store: {0}")]
    Store(String),
}

/// Read access to log streams, per tenant.
///
/// INTERFACE CONTRACT: implementations return each matching stream at most
/// once, entries sorted by timestamp, and may omit entries that fail
/// `hint` (never entries that pass it). Time bounds are `[start, end)` in
/// Unix nanoseconds. The index methods have correct but slow defaults built
/// on `select`; a store overrides them with its stream index.
pub trait LogReader: Send + Sync {
    /// Streams matching `sel`, with their entries in the time range.
    fn select(&self, tenant: &Tenant, sel: &LogSelect<'_>) -> Result<Vec<Stream>, LogReadError>;

    /// Label sets of streams matching the matchers (all streams when empty)
    /// with entries in `[start, end)`. Sorted, unique.
    fn streams(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Result<Vec<Labels>, LogReadError> {
        let hint = LineHint::default();
        let sel = LogSelect {
            matchers,
            start,
            end,
            hint: &hint,
        };
        let mut out: Vec<Labels> = self
            .select(tenant, &sel)?
            .into_iter()
            .map(|s| s.labels)
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Stream label names (sorted, unique) over streams matching the
    /// matchers in the range.
    fn label_names(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Result<Vec<String>, LogReadError> {
        let streams = self.streams(tenant, matchers, start, end)?;
        Ok(crate::storage::merge_label_names(streams.iter()))
    }

    /// Values (sorted, unique) of stream label `name` over streams matching
    /// the matchers in the range.
    fn label_values(
        &self,
        tenant: &Tenant,
        name: &str,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Result<Vec<String>, LogReadError> {
        let streams = self.streams(tenant, matchers, start, end)?;
        Ok(crate::storage::merge_label_values(streams.iter(), name))
    }

    /// Index statistics (Loki's `index/stats`) over streams matching the
    /// matchers in the range.
    fn stats(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Result<LogStats, LogReadError> {
        let hint = LineHint::default();
        let sel = LogSelect {
            matchers,
            start,
            end,
            hint: &hint,
        };
        let mut st = LogStats::default();
        for s in self.select(tenant, &sel)? {
            st.streams += 1;
            st.chunks += 1;
            st.entries += s.entries.len() as u64;
            st.bytes += s.entries.iter().map(|e| e.line.len() as u64).sum::<u64>();
        }
        Ok(st)
    }
}

/// Loki's index statistics for a selector and range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Matching streams.
    pub streams: u64,
    /// Storage chunks (blocks) touched.
    pub chunks: u64,
    /// Entries.
    pub entries: u64,
    /// Line bytes.
    pub bytes: u64,
}

/// One stream of a push request, after decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushStream {
    /// Validated, sorted stream labels.
    pub labels: Labels,
    /// Entries in push order (not necessarily sorted).
    pub entries: Vec<LogEntry>,
}

/// Why an entry was not stored (Loki answers 400 and names the stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedEntries {
    /// The stream concerned.
    pub labels: Labels,
    /// How many of its entries were refused.
    pub count: usize,
    /// Loki's wording of the reason (for example "entry too far behind").
    pub reason: String,
}

/// What a push stored and what it refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushOutcome {
    /// Entries stored.
    pub entries_written: usize,
    /// Line bytes stored.
    pub bytes_written: usize,
    /// Refused entries, per stream and reason.
    pub rejected: Vec<RejectedEntries>,
}

/// Errors from a log store write: nothing of the push is acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum LogWriteError {
    /// A per-tenant limit was hit (streams and the like); retryable (429).
    #[error("{0}")]
    LimitExceeded(String),
    /// The store is shutting down or failed and refuses writes (503).
    #[error("log store unavailable: {0}")]
    Unavailable(String),
}

/// Write access to log streams.
///
/// INTERFACE CONTRACT: `push` is blocking (call it from a blocking thread)
/// and returns only once the stored entries are durable (in the fsynced WAL
/// for persistent stores). Entries it refuses are reported in the outcome,
/// not as an error. Stored entries are offered to [`LogWriter::subscribe`]rs
/// right after they become durable, before any indexing delay.
pub trait LogWriter: Send + Sync {
    /// Stores the streams for `tenant`.
    fn push(&self, tenant: &Tenant, streams: Vec<PushStream>)
        -> Result<PushOutcome, LogWriteError>;

    /// A live feed of every stored push of `tenant` (for live tail). A slow
    /// receiver sees `RecvError::Lagged` rather than slowing ingestion.
    fn subscribe(&self, tenant: &Tenant) -> tokio::sync::broadcast::Receiver<Arc<Vec<Stream>>>;
}

/// In-memory log store for tests and as the reference implementation.
#[derive(Default)]
pub struct MemLogs {
    tenants: RwLock<HashMap<Tenant, HashMap<Labels, Vec<LogEntry>>>>,
    feeds: Mutex<HashMap<Tenant, tokio::sync::broadcast::Sender<Arc<Vec<Stream>>>>>,
}

/// Capacity of a tenant's live-tail feed, in pushes.
const FEED_CAPACITY: usize = 1024;

impl MemLogs {
    /// An empty store.
    pub fn new() -> MemLogs {
        MemLogs::default()
    }

    /// Appends entries to a stream (kept sorted by timestamp; equal
    /// timestamps keep push order).
    pub fn push(&self, tenant: &Tenant, labels: Labels, entries: Vec<LogEntry>) {
        let mut g = self.tenants.write();
        let s = g
            .entry(tenant.clone())
            .or_default()
            .entry(labels)
            .or_default();
        s.extend(entries);
        s.sort_by_key(|e| e.ts);
    }

    fn feed(&self, tenant: &Tenant) -> tokio::sync::broadcast::Sender<Arc<Vec<Stream>>> {
        self.feeds
            .lock()
            .entry(tenant.clone())
            .or_insert_with(|| tokio::sync::broadcast::channel(FEED_CAPACITY).0)
            .clone()
    }
}

impl LogWriter for MemLogs {
    fn push(
        &self,
        tenant: &Tenant,
        streams: Vec<PushStream>,
    ) -> Result<PushOutcome, LogWriteError> {
        let mut out = PushOutcome::default();
        let mut fed = Vec::with_capacity(streams.len());
        for s in streams {
            out.entries_written += s.entries.len();
            out.bytes_written += s.entries.iter().map(|e| e.line.len()).sum::<usize>();
            fed.push(Stream {
                labels: s.labels.clone(),
                entries: s.entries.clone(),
            });
            MemLogs::push(self, tenant, s.labels, s.entries);
        }
        // No receiver is not an error: nobody is tailing.
        let _ = self.feed(tenant).send(Arc::new(fed));
        Ok(out)
    }

    fn subscribe(&self, tenant: &Tenant) -> tokio::sync::broadcast::Receiver<Arc<Vec<Stream>>> {
        self.feed(tenant).subscribe()
    }
}

impl LogReader for MemLogs {
    fn select(&self, tenant: &Tenant, sel: &LogSelect<'_>) -> Result<Vec<Stream>, LogReadError> {
        let g = self.tenants.read();
        let Some(streams) = g.get(tenant) else {
            return Ok(Vec::new());
        };
        let mut out: Vec<Stream> = streams
            .iter()
            .filter(|(l, _)| crate::storage::matches_all(l, sel.matchers))
            .map(|(l, es)| {
                let lo = es.partition_point(|e| e.ts < sel.start);
                let hi = es.partition_point(|e| e.ts < sel.end);
                Stream {
                    labels: l.clone(),
                    entries: es[lo..hi]
                        .iter()
                        .filter(|e| sel.hint.accepts(&e.line))
                        .cloned()
                        .collect(),
                }
            })
            .filter(|s| !s.entries.is_empty())
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MatchOp;

    #[test]
    fn select_by_matchers_range_and_hint() {
        let m = MemLogs::new();
        let t = Tenant::new("t").unwrap();
        m.push(
            &t,
            Labels::from_pairs([("app", "a")]),
            vec![
                LogEntry::new(3, "gamma"),
                LogEntry::new(1, "alpha"),
                LogEntry::new(2, "beta"),
            ],
        );
        m.push(
            &t,
            Labels::from_pairs([("app", "b")]),
            vec![LogEntry::new(1, "x")],
        );
        let ms = [Matcher::new(MatchOp::Regex, "app", "a").unwrap()];
        let hint = LineHint::default();
        let got = m
            .select(
                &t,
                &LogSelect {
                    matchers: &ms,
                    start: 1,
                    end: 3,
                    hint: &hint,
                },
            )
            .unwrap();
        assert_eq!(got.len(), 1);
        let lines: Vec<&str> = got[0].entries.iter().map(|e| e.line.as_str()).collect();
        assert_eq!(lines, ["alpha", "beta"]);
        let hint = LineHint {
            must_contain: vec!["et".into()],
            ..LineHint::default()
        };
        let got = m
            .select(
                &t,
                &LogSelect {
                    matchers: &ms,
                    start: 0,
                    end: 10,
                    hint: &hint,
                },
            )
            .unwrap();
        assert_eq!(got[0].entries.len(), 1);
        let other = Tenant::new("u").unwrap();
        let got = m
            .select(
                &other,
                &LogSelect {
                    matchers: &ms,
                    start: 0,
                    end: 10,
                    hint: &hint,
                },
            )
            .unwrap();
        assert!(got.is_empty());
    }

    #[test]
    fn writer_feeds_subscribers_and_index_defaults() {
        let m = MemLogs::new();
        let t = Tenant::new("t").unwrap();
        let mut rx = LogWriter::subscribe(&m, &t);
        let out = LogWriter::push(
            &m,
            &t,
            vec![
                PushStream {
                    labels: Labels::from_pairs([("app", "a"), ("env", "prod")]),
                    entries: vec![LogEntry::new(5, "hello"), LogEntry::new(4, "hi")],
                },
                PushStream {
                    labels: Labels::from_pairs([("app", "b")]),
                    entries: vec![LogEntry::new(6, "x")],
                },
            ],
        )
        .unwrap();
        assert_eq!(out.entries_written, 3);
        assert_eq!(out.bytes_written, 8);
        let fed = rx.try_recv().unwrap();
        assert_eq!(fed.len(), 2);
        assert_eq!(fed[0].entries[0].line, "hello");
        assert_eq!(m.label_names(&t, &[], 0, 10).unwrap(), ["app", "env"]);
        assert_eq!(m.label_values(&t, "app", &[], 0, 10).unwrap(), ["a", "b"]);
        assert_eq!(m.label_values(&t, "app", &[], 5, 6).unwrap(), ["a"]);
        let st = m.stats(&t, &[], 0, 10).unwrap();
        assert_eq!((st.streams, st.entries, st.bytes), (2, 3, 8));
        let other = Tenant::new("u").unwrap();
        assert!(m.streams(&other, &[], 0, 10).unwrap().is_empty());
    }
}
