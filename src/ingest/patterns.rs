//! Loki's pattern ingester (`pattern_ingester.enabled`, off by default as in
//! Loki): the lines of acknowledged pushes are mined into patterns by
//! [`Drain`], one miner per stream and `detected_level`, on a thread of
//! its own, off the acknowledgement path. A push the thread cannot keep up
//! with is dropped (counted), never waited for.
//!
//! Memory is bounded per tenant: at most 300 clusters per stream and level
//! (Loki's), at most `loki.pattern_max_clusters_per_tenant` in all (lines
//! that would start one more are counted and skipped), and samples older
//! than `loki.pattern_retain_for` are pruned with the clusters left empty.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::logs::drain::{samples_for_range, Drain};
use crate::logs::level::DETECTED_LEVEL;
use crate::logs::PushStream;
use crate::model::{Labels, Matcher, Tenant};

/// Lines the pattern miner saw, by `outcome` (matched, created, skipped,
/// refused at the tenant's cluster limit, dropped when the miner lagged).
pub const PATTERN_LINES_TOTAL: &str = "strata_loki_pattern_lines_total";
/// Patterns held, all tenants.
pub const PATTERN_CLUSTERS: &str = "strata_loki_pattern_clusters";

/// Pushes waiting for the miner; further ones are dropped.
const QUEUE_PUSHES: usize = 256;
/// How often old samples are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// One push, copied for the miner: per stream, `(ts ns, line, level)`.
type Job = (Tenant, Vec<(Labels, Vec<(i64, String, String)>)>);

#[derive(Default)]
struct TenantPatterns {
    drains: HashMap<(Labels, String), Drain>,
    clusters: usize,
}

type State = Arc<Mutex<HashMap<Tenant, TenantPatterns>>>;

/// One pattern of a query's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternSeries {
    /// The pattern, `<_>` for variable parts.
    pub pattern: String,
    /// The `detected_level` of its lines (`unknown` when none).
    pub level: String,
    /// `(step start, Unix ms; lines)`, ascending.
    pub samples: Vec<(i64, i64)>,
}

/// The pattern miner of all tenants.
pub struct PatternMiner {
    tx: SyncSender<Job>,
    state: State,
}

impl PatternMiner {
    /// Starts the mining thread.
    pub fn start(max_clusters_per_tenant: usize, retain_for_ms: i64) -> PatternMiner {
        let (tx, rx) = sync_channel(QUEUE_PUSHES);
        let state: State = Arc::default();
        let st = state.clone();
        std::thread::Builder::new()
            .name("strata-patterns".into())
            .spawn(move || mine(rx, st, max_clusters_per_tenant, retain_for_ms))
            .expect("spawn the pattern miner");
        PatternMiner { tx, state }
    }

    /// Hands a stored push to the miner without waiting.
    pub fn offer(&self, tenant: &Tenant, streams: Vec<PushStream>) {
        let copy: Vec<_> = streams
            .into_iter()
            .map(|s| {
                let entries = s
                    .entries
                    .into_iter()
                    .map(|e| {
                        let level = e.metadata.get(DETECTED_LEVEL).unwrap_or("unknown");
                        (e.ts, level.to_string(), e.line)
                    })
                    .map(|(ts, level, line)| (ts, line, level))
                    .collect();
                (s.labels, entries)
            })
            .collect();
        if let Err(TrySendError::Full((_, lost)) | TrySendError::Disconnected((_, lost))) =
            self.tx.try_send((tenant.clone(), copy))
        {
            let n: usize = lost.iter().map(|(_, e)| e.len()).sum();
            metrics::counter!(PATTERN_LINES_TOTAL, "outcome" => "dropped").increment(n as u64);
        }
    }

    /// The patterns of the streams matching `matchers` with lines in
    /// `[start_ns, end_ns)`, samples by `step_ns` (at least 10 s), the
    /// same pattern and level of several streams summed; most lines first.
    pub fn query(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        (start_ns, end_ns): (i64, i64),
        step_ns: i64,
    ) -> Vec<PatternSeries> {
        let ms = |ns: i64| ns.div_euclid(1_000_000);
        let res = crate::logs::drain::RESOLUTION_MS;
        let step = (ms(step_ns).max(res) / res) * res;
        let mut merged: BTreeMap<(String, String), BTreeMap<i64, i64>> = BTreeMap::new();
        let g = self.state.lock();
        let Some(t) = g.get(tenant) else {
            return Vec::new();
        };
        for ((labels, level), d) in &t.drains {
            if !crate::storage::matches_all(labels, matchers) {
                continue;
            }
            for c in d.clusters() {
                let s = samples_for_range(&c.samples, ms(start_ns), ms(end_ns), step);
                if s.is_empty() {
                    continue;
                }
                let m = merged.entry((c.pattern(), level.clone())).or_default();
                for (at, n) in s {
                    *m.entry(at).or_default() += n;
                }
            }
        }
        drop(g);
        let mut out: Vec<(i64, PatternSeries)> = merged
            .into_iter()
            .map(|((pattern, level), s)| {
                let samples: Vec<(i64, i64)> = s.into_iter().collect();
                let total = samples.iter().map(|x| x.1).sum();
                (
                    total,
                    PatternSeries {
                        pattern,
                        level,
                        samples,
                    },
                )
            })
            .collect();
        out.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.pattern.cmp(&b.1.pattern)));
        out.into_iter().map(|(_, p)| p).collect()
    }
}

/// The mining thread: trains on every job, prunes once a minute; ends when
/// the miner is dropped.
fn mine(rx: Receiver<Job>, state: State, max_clusters: usize, retain_for_ms: i64) {
    let mut pruned = Instant::now();
    loop {
        match rx.recv_timeout(PRUNE_EVERY) {
            Ok((tenant, streams)) => {
                let mut g = state.lock();
                let t = g.entry(tenant).or_default();
                let mut counts = [0u64; 4];
                for (labels, entries) in streams {
                    for (ts, line, level) in entries {
                        let d = t.drains.entry((labels.clone(), level)).or_default();
                        let before = d.len();
                        let r = d.train(&line, ts.div_euclid(1_000_000), t.clusters < max_clusters);
                        t.clusters = t.clusters + d.len() - before;
                        counts[r as usize] += 1;
                    }
                }
                drop(g);
                for (outcome, n) in ["matched", "created", "skipped", "refused"]
                    .into_iter()
                    .zip(counts)
                {
                    if n > 0 {
                        metrics::counter!(PATTERN_LINES_TOTAL, "outcome" => outcome).increment(n);
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if pruned.elapsed() >= PRUNE_EVERY {
            pruned = Instant::now();
            let cutoff = chrono::Utc::now().timestamp_millis() - retain_for_ms;
            let mut g = state.lock();
            let mut total = 0;
            for t in g.values_mut() {
                t.drains.retain(|_, d| {
                    d.prune(cutoff);
                    !d.is_empty()
                });
                t.clusters = t.drains.values().map(Drain::len).sum();
                total += t.clusters;
            }
            g.retain(|_, t| !t.drains.is_empty());
            metrics::gauge!(PATTERN_CLUSTERS).set(total as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::LogEntry;
    use crate::model::MatchOp;

    #[test]
    fn mines_off_thread_merges_streams_and_limits_clusters() {
        let m = PatternMiner::start(3, 3_600_000);
        let t = Tenant::new("t").unwrap();
        let s = 1_000_000_000i64;
        let stream = |app: &str, lines: &[(i64, &str)]| PushStream {
            labels: Labels::from_pairs([("app", app)]),
            entries: lines
                .iter()
                .map(|(ts, l)| {
                    let mut e = LogEntry::new(*ts, *l);
                    e.metadata = Labels::from_pairs([(DETECTED_LEVEL, "info")]);
                    e
                })
                .collect(),
        };
        m.offer(
            &t,
            vec![
                stream(
                    "a",
                    &[(s, "user 1 logged in ok"), (25 * s, "user 2 logged in ok")],
                ),
                stream(
                    "b",
                    &[
                        (2 * s, "user 3 logged in ok"),
                        (3 * s, "user 4 logged in ok"),
                    ],
                ),
                stream("c", &[(3 * s, "disk sda1 is 91 percent full")]),
                // The tenant's fourth cluster: refused.
                stream("c", &[(4 * s, "completely other words appear here")]),
            ],
        );
        let all = [Matcher::new(MatchOp::Regex, "app", ".+").unwrap()];
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut got = Vec::new();
        while got.len() < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            got = m.query(&t, &all, (0, 60 * s), 20 * s);
        }
        assert_eq!(
            got,
            [
                PatternSeries {
                    pattern: "user <_> logged in ok".into(),
                    level: "info".into(),
                    samples: vec![(0, 3), (20_000, 1)],
                },
                PatternSeries {
                    pattern: "disk sda1 is 91 percent full".into(),
                    level: "info".into(),
                    samples: vec![(0, 1)],
                },
            ]
        );
        let only_b = [Matcher::new(MatchOp::Equal, "app", "b").unwrap()];
        assert_eq!(m.query(&t, &only_b, (0, 60 * s), 0)[0].samples, [(0, 2)]);
        assert!(m
            .query(&Tenant::new("u").unwrap(), &all, (0, 60 * s), 0)
            .is_empty());
    }
}
