//! A tenant's in-memory head: per-stream buffers of entries sorted by
//! timestamp, plus the push validation (out-of-order window, duplicates)
//! that runs before anything reaches the WAL.

use std::collections::HashMap;
use std::time::Instant;

use crate::logs::{LineHint, LogEntry, LogStats, PushStream, RejectedEntries, Stream};
use crate::model::{Labels, Matcher};

/// Loki's wording for an entry older than the out-of-order window allows.
pub(crate) const TOO_FAR_BEHIND: &str = "entry too far behind";

/// Per-stream buffers of one tenant, readable as soon as a push is applied.
#[derive(Default)]
pub(crate) struct Head {
    /// Entries per stream, sorted by timestamp (equal timestamps keep
    /// arrival order).
    pub streams: HashMap<Labels, Vec<LogEntry>>,
    /// Line and metadata bytes held.
    pub bytes: usize,
    /// Entries held.
    pub entries: usize,
    /// When the first entry of this head arrived (cut by age).
    pub since: Option<Instant>,
}

/// Bytes an entry accounts for in the head.
pub(crate) fn entry_bytes(e: &LogEntry) -> usize {
    e.line.len()
        + e.metadata
            .iter()
            .map(|l| l.name.len() + l.value.len())
            .sum::<usize>()
}

impl Head {
    /// Inserts entries into a stream, keeping it sorted and dropping an entry
    /// identical (timestamp, line, metadata) to one already held. Returns
    /// how many entries and line bytes were inserted, and copies of the
    /// inserted entries when `copy` (for live tail).
    ///
    /// The entries are merged in one pass: appended when they are all newer
    /// than the stream's newest, else merged with the held entries from the
    /// first one they precede (concurrent pushers' batches interleave, and
    /// inserting one entry at a time moved the stream's tail per entry).
    pub fn apply(
        &mut self,
        labels: &Labels,
        mut entries: Vec<LogEntry>,
        copy: bool,
    ) -> (usize, usize, Vec<LogEntry>) {
        if entries.is_empty() {
            return (0, 0, entries);
        }
        if !entries.is_sorted_by_key(|e| e.ts) {
            // Stable: equal timestamps keep arrival order.
            entries.sort_by_key(|e| e.ts);
        }
        let buf = match self.streams.get_mut(labels) {
            Some(b) => b,
            None => self.streams.entry(labels.clone()).or_default(),
        };
        let first = entries[0].ts;
        let at = if buf.last().is_none_or(|l| l.ts < first) {
            buf.len()
        } else {
            buf.partition_point(|x| x.ts < first)
        };
        // Held entries from `at` on are merged back behind the new ones
        // (held first on equal timestamps).
        let mut tail = buf.split_off(at).into_iter().peekable();
        buf.reserve(entries.len() + tail.len());
        let (mut n, mut line_bytes) = (0, 0);
        let mut inserted = Vec::with_capacity(if copy { entries.len() } else { 0 });
        for e in entries {
            while let Some(x) = tail.next_if(|x| x.ts <= e.ts) {
                buf.push(x);
            }
            // Entries before `at` are older than `first`: only the run of
            // equal timestamps at the end can hold a duplicate.
            if buf
                .iter()
                .rev()
                .take_while(|x| x.ts == e.ts)
                .any(|x| x == &e)
            {
                continue;
            }
            self.bytes += entry_bytes(&e);
            self.entries += 1;
            n += 1;
            line_bytes += e.line.len();
            if copy {
                inserted.push(e.clone());
            }
            buf.push(e);
        }
        buf.extend(tail);
        if self.since.is_none() {
            self.since = Some(Instant::now());
        }
        (n, line_bytes, inserted)
    }

    /// Labels of streams matching the matchers with entries in `[start, end)`.
    pub fn stream_refs<'a>(
        &'a self,
        matchers: &'a [Matcher],
        start: i64,
        end: i64,
    ) -> impl Iterator<Item = (&'a Labels, &'a [LogEntry])> + 'a {
        self.streams
            .iter()
            .filter(move |(l, _)| crate::storage::matches_all(l, matchers))
            .filter_map(move |(l, es)| {
                let lo = es.partition_point(|e| e.ts < start);
                let hi = es.partition_point(|e| e.ts < end);
                (lo < hi).then(|| (l, &es[lo..hi]))
            })
    }

    /// Adds the index statistics of matching streams in the range.
    pub fn add_stats(&self, matchers: &[Matcher], start: i64, end: i64, st: &mut LogStats) {
        for (_, es) in self.stream_refs(matchers, start, end) {
            st.streams += 1;
            st.chunks += 1;
            st.entries += es.len() as u64;
            st.bytes += es.iter().map(|e| e.line.len() as u64).sum::<u64>();
        }
    }

    /// Streams matching the matchers with their entries in `[start, end)`
    /// that pass the hint (empty streams left out), unsorted.
    pub fn select(
        &self,
        matchers: &[Matcher],
        start: i64,
        end: i64,
        hint: &LineHint,
    ) -> Vec<Stream> {
        self.stream_refs(matchers, start, end)
            .filter_map(|(l, es)| {
                let entries: Vec<LogEntry> = es
                    .iter()
                    .filter(|e| hint.accepts(&e.line))
                    .cloned()
                    .collect();
                (!entries.is_empty()).then(|| Stream {
                    labels: l.clone(),
                    entries,
                })
            })
            .collect()
    }
}

/// Splits a push into what may be stored and what is refused: per stream,
/// in push order, an entry older than the stream's newest timestamp (held
/// or earlier in the push) minus `window_ns` is refused as Loki does. Also
/// drops entries repeated within the push.
pub(crate) fn validate(
    newest: &HashMap<Labels, i64>,
    streams: Vec<PushStream>,
    window_ns: i64,
) -> (Vec<Stream>, Vec<RejectedEntries>) {
    let mut ok = Vec::with_capacity(streams.len());
    let mut rejected = Vec::new();
    for s in streams {
        let mut top = newest.get(&s.labels).copied().unwrap_or(i64::MIN);
        let mut keep = Vec::with_capacity(s.entries.len());
        let mut refused = 0usize;
        let mut oldest_ok = i64::MIN;
        for e in s.entries {
            let floor = top.saturating_sub(window_ns);
            if e.ts < floor {
                refused += 1;
                oldest_ok = floor;
                continue;
            }
            top = top.max(e.ts);
            keep.push(e);
        }
        if refused > 0 {
            rejected.push(RejectedEntries {
                labels: s.labels.clone(),
                count: refused,
                reason: format!(
                    "{TOO_FAR_BEHIND}, oldest acceptable timestamp is: {}",
                    rfc3339_ns(oldest_ok)
                ),
            });
        }
        if !keep.is_empty() {
            keep.sort_by_key(|e| e.ts);
            keep.dedup();
            ok.push(Stream {
                labels: s.labels,
                entries: keep,
            });
        }
    }
    (ok, rejected)
}

/// A Unix-nanosecond timestamp as RFC 3339, as Loki prints them.
fn rfc3339_ns(ts: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ts).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(labels: &Labels, ts: &[i64]) -> PushStream {
        PushStream {
            labels: labels.clone(),
            entries: ts
                .iter()
                .map(|&t| LogEntry::new(t, format!("l{t}")))
                .collect(),
        }
    }

    #[test]
    fn window_refuses_per_stream_and_counts() {
        let a = Labels::from_pairs([("app", "a")]);
        let b = Labels::from_pairs([("app", "b")]);
        let newest = HashMap::from([(a.clone(), 100)]);
        // Window 10: for a, 90 is the floor; 95 passes, 80 is refused; the
        // push raises the floor to 190 after 200, so 150 is refused too.
        let (ok, rej) = validate(
            &newest,
            vec![push(&a, &[95, 80, 200, 150, 195]), push(&b, &[5, 1])],
            10,
        );
        let ts: Vec<Vec<i64>> = ok
            .iter()
            .map(|s| s.entries.iter().map(|e| e.ts).collect())
            .collect();
        assert_eq!(ts, [vec![95, 195, 200], vec![1, 5]]);
        assert_eq!(rej.len(), 1);
        assert_eq!(rej[0].labels, a);
        assert_eq!(rej[0].count, 2);
        assert!(rej[0].reason.starts_with("entry too far behind"));
    }

    #[test]
    fn apply_keeps_order_and_drops_identical_entries() {
        let a = Labels::from_pairs([("app", "a")]);
        let mut h = Head::default();
        let got = h.apply(&a, vec![LogEntry::new(5, "x"), LogEntry::new(3, "y")], true);
        assert_eq!(got.2.len(), 2);
        let got = h.apply(
            &a,
            vec![
                LogEntry::new(5, "x"),
                LogEntry::new(5, "z"),
                LogEntry::new(4, "w"),
            ],
            false,
        );
        assert_eq!((got.0, got.1, got.2.len()), (2, 2, 0));
        let lines: Vec<&str> = h.streams[&a].iter().map(|e| e.line.as_str()).collect();
        assert_eq!(lines, ["y", "w", "x", "z"]);
        assert_eq!((h.entries, h.bytes), (4, 4));
    }

    /// The merge agrees with inserting entry by entry (sorted position,
    /// after equal timestamps, identical entries dropped) on interleaved
    /// and repeated pushes.
    #[test]
    fn apply_merges_like_entry_by_entry_insertion() {
        let a = Labels::from_pairs([("app", "a")]);
        let mut h = Head::default();
        let mut want: Vec<LogEntry> = Vec::new();
        let mut seed = 7u64;
        let mut next = |m: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % m
        };
        for _ in 0..200 {
            let base = next(400) as i64;
            let mut push: Vec<LogEntry> = (0..next(12))
                .map(|_| LogEntry::new(base + next(30) as i64, format!("l{}", next(3))))
                .collect();
            push.sort_by_key(|e| e.ts);
            let (mut n, mut bytes) = (0, 0);
            for e in push.clone() {
                let lo = want.partition_point(|x| x.ts < e.ts);
                let hi = want.partition_point(|x| x.ts <= e.ts);
                if !want[lo..hi].contains(&e) {
                    (n, bytes) = (n + 1, bytes + e.line.len());
                    want.insert(hi, e);
                }
            }
            let got = h.apply(&a, push, true);
            assert_eq!((got.0, got.1, got.2.len()), (n, bytes, n));
            assert_eq!(h.streams.get(&a).map_or(&[][..], |v| v), &want[..]);
        }
        assert_eq!(h.entries, want.len());
    }
}
