//! The log data model and the seam between the log store and LogQL.
//!
//! A log *stream* is a label set (its indexed labels) and entries sorted by
//! timestamp; an entry carries a nanosecond timestamp, the line and optional
//! structured metadata. The query engine reads streams through the
//! [`LogReader`] trait; [`MemLogs`] is the in-memory reference implementation
//! that later stores (head buffers, segments, tiers) are tested against.

use crate::model::{Labels, Matcher, Tenant};
use parking_lot::RwLock;
use std::collections::HashMap;

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
/// `hint` (never entries that pass it).
pub trait LogReader: Send + Sync {
    /// Streams matching `sel`, with their entries in the time range.
    fn select(&self, tenant: &Tenant, sel: &LogSelect<'_>) -> Result<Vec<Stream>, LogReadError>;
}

/// In-memory log store for tests and as the reference implementation.
#[derive(Default)]
pub struct MemLogs {
    tenants: RwLock<HashMap<Tenant, HashMap<Labels, Vec<LogEntry>>>>,
}

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
}
