//! The Drain log-template miner as Loki's pattern ingester runs it
//! (`pkg/pattern/drain`): lines are split by the punctuation tokenizer,
//! routed down a prefix tree by token count and leading tokens, and joined
//! to the most similar cluster (similarity at least 0.3) whose differing
//! tokens become `<_>`; otherwise they start a cluster. Each cluster counts
//! its lines in 10-second buckets. At most `MAX_CLUSTERS` clusters per
//! miner, the least recently matched evicted first.
//!
//! Divergences from Loki: one tokenizer for every line (Loki switches to
//! logfmt/JSON tokenizers by detected format), no eviction-rate limiter.

use std::collections::HashMap;

/// The placeholder of a variable token.
pub const PARAM: &str = "<_>";
/// Sample resolution in milliseconds (Loki's `TimeResolution`).
pub const RESOLUTION_MS: i64 = 10_000;

const LOG_CLUSTER_DEPTH: usize = 30;
const MAX_NODE_DEPTH: usize = LOG_CLUSTER_DEPTH - 2;
const SIM_TH: f64 = 0.3;
const MAX_CHILDREN: usize = 15;
/// Clusters per miner (Loki's `MaxClusters`).
pub const MAX_CLUSTERS: usize = 300;
const MAX_LINE_LENGTH: usize = 3000;
const MIN_TOKENS: usize = 4;
const MAX_TOKENS: usize = 80;
const TOKEN_LIMIT: usize = 127;

/// A line split into tokens, with the indexes of tokens followed by a
/// space (-1: a leading space).
#[derive(Debug, Default)]
pub struct Tokens<'a> {
    tokens: Vec<&'a str>,
    spaces_after: Vec<isize>,
}

/// Go's `unicode.IsPunct` for ASCII (categories P*, not symbols).
fn ascii_punct(c: char) -> bool {
    matches!(
        c,
        '!' | '"'
            | '#'
            | '%'
            | '&'
            | '\''
            | '('
            | ')'
            | '*'
            | ','
            | '-'
            | '.'
            | '/'
            | ':'
            | ';'
            | '?'
            | '@'
            | '['
            | '\\'
            | ']'
            | '_'
            | '{'
            | '}'
    )
}

/// Loki's punctuation tokenizer: spaces separate tokens, punctuation (and
/// `=`) is a token of its own, except `_ - . : /` which stay inside words.
/// None for lines too long to mine.
pub fn tokenize(line: &str) -> Option<Tokens<'_>> {
    if line.len() >= MAX_LINE_LENGTH {
        return None;
    }
    let mut t = Tokens::default();
    let mut start = 0;
    for (i, c) in line.char_indices() {
        if t.tokens.len() >= TOKEN_LIMIT {
            break;
        }
        if c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/') {
            continue;
        }
        if c == ' ' || c == '=' || ascii_punct(c) {
            if i > start {
                t.tokens.push(&line[start..i]);
            }
            if c == ' ' {
                t.spaces_after.push(t.tokens.len() as isize - 1);
            } else {
                t.tokens.push(&line[i..i + c.len_utf8()]);
            }
            start = i + c.len_utf8();
        }
    }
    if start < line.len() {
        t.tokens.push(&line[start..]);
    }
    Some(t)
}

/// One mined pattern.
#[derive(Debug, Clone)]
pub struct Cluster {
    tokens: Vec<String>,
    spaces_after: Vec<isize>,
    /// `(bucket start ms, lines)`, ascending.
    pub samples: Vec<(i64, i64)>,
    last_used: u64,
}

impl Cluster {
    /// The pattern text: tokens joined with their spaces, runs of `<_>`
    /// collapsed into one.
    pub fn pattern(&self) -> String {
        let mut out = String::new();
        let mut sp = self.spaces_after.iter().peekable();
        while sp.next_if(|&&i| i < 0).is_some() {}
        let mut prev_param = false;
        for (i, t) in self.tokens.iter().enumerate() {
            let is_param = t == PARAM;
            if !(is_param && prev_param) {
                out.push_str(t);
            }
            prev_param = is_param;
            while sp.next_if(|&&s| s == i as isize).is_some() {
                out.push(' ');
                prev_param = false;
            }
        }
        out
    }

    fn add(&mut self, ts_ms: i64) {
        let b = ts_ms - ts_ms.rem_euclid(RESOLUTION_MS);
        match self.samples.last_mut() {
            Some((last, n)) if *last == b => *n += 1,
            // Loki drops samples older than the newest bucket.
            Some((last, _)) if b < *last => {}
            _ => self.samples.push((b, 1)),
        }
    }

    /// Drops buckets before `cutoff_ms`.
    fn prune(&mut self, cutoff_ms: i64) {
        let keep = self.samples.partition_point(|(t, _)| *t < cutoff_ms);
        self.samples.drain(..keep);
    }

    /// Approximate heap bytes.
    fn bytes(&self) -> usize {
        self.tokens.iter().map(|t| t.len() + 24).sum::<usize>()
            + self.spaces_after.len() * 8
            + self.samples.capacity() * 16
            + 96
    }
}

#[derive(Debug, Default)]
struct Node {
    children: HashMap<String, usize>,
    clusters: Vec<u64>,
}

/// A Drain miner (one per stream and level).
#[derive(Debug)]
pub struct Drain {
    nodes: Vec<Node>,
    clusters: HashMap<u64, Cluster>,
    next_id: u64,
    clock: u64,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            nodes: vec![Node::default()],
            clusters: HashMap::new(),
            next_id: 1,
            clock: 0,
        }
    }
}

/// What training did with a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trained {
    /// Joined an existing cluster.
    Matched,
    /// Started a cluster.
    Created,
    /// Too long, too few or too many tokens.
    Skipped,
    /// Would start a cluster, but `allow_new` was false.
    Refused,
}

impl Drain {
    /// A miner without clusters.
    pub fn new() -> Drain {
        Drain::default()
    }

    /// The clusters.
    pub fn clusters(&self) -> impl Iterator<Item = &Cluster> {
        self.clusters.values()
    }

    /// Number of clusters.
    pub fn len(&self) -> usize {
        self.clusters.len()
    }

    /// True without clusters.
    pub fn is_empty(&self) -> bool {
        self.clusters.is_empty()
    }

    /// Approximate heap bytes.
    pub fn bytes(&self) -> usize {
        self.clusters.values().map(Cluster::bytes).sum::<usize>()
            + self
                .nodes
                .iter()
                .map(|n| n.children.keys().map(|k| k.len() + 40).sum::<usize>() + 64)
                .sum::<usize>()
    }

    /// Learns one line at `ts_ms`; a new cluster only when `allow_new`.
    pub fn train(&mut self, line: &str, ts_ms: i64, allow_new: bool) -> Trained {
        let Some(t) = tokenize(line) else {
            return Trained::Skipped;
        };
        if t.tokens.len() < MIN_TOKENS || t.tokens.len() > MAX_TOKENS {
            return Trained::Skipped;
        }
        self.clock += 1;
        if let Some(id) = self.tree_search(&t.tokens) {
            let c = self.clusters.get_mut(&id).expect("searched cluster exists");
            for (ct, t) in c.tokens.iter_mut().zip(&t.tokens) {
                if ct != t {
                    *ct = PARAM.to_string();
                }
            }
            c.add(ts_ms);
            c.last_used = self.clock;
            return Trained::Matched;
        }
        if !allow_new {
            return Trained::Refused;
        }
        if self.clusters.len() >= MAX_CLUSTERS {
            if let Some(&lru) = self
                .clusters
                .iter()
                .min_by_key(|(_, c)| c.last_used)
                .map(|(id, _)| id)
            {
                self.clusters.remove(&lru);
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let mut c = Cluster {
            tokens: t.tokens.iter().map(|s| s.to_string()).collect(),
            spaces_after: t.spaces_after,
            samples: Vec::new(),
            last_used: self.clock,
        };
        c.add(ts_ms);
        self.add_to_tree(id, &c.tokens);
        self.clusters.insert(id, c);
        Trained::Created
    }

    fn tree_search(&self, tokens: &[&str]) -> Option<u64> {
        let n = tokens.len();
        let mut cur = *self.nodes[0].children.get(&n.to_string())?;
        for (depth, t) in (1..).zip(tokens) {
            if depth >= MAX_NODE_DEPTH || depth == n {
                break;
            }
            let ch = &self.nodes[cur].children;
            cur = *ch.get(*t).or_else(|| ch.get(PARAM))?;
        }
        // The best match: most equal tokens, then most parameters.
        let mut best: Option<(f64, usize, u64)> = None;
        for id in &self.nodes[cur].clusters {
            let Some(c) = self.clusters.get(id) else {
                continue;
            };
            let (mut same, mut params) = (0, 0);
            for (a, b) in c.tokens.iter().zip(tokens) {
                if a == PARAM {
                    params += 1;
                } else if a == b {
                    same += 1;
                }
            }
            let sim = same as f64 / n as f64;
            if best.is_none_or(|(s, p, _)| sim > s || (sim == s && params > p)) {
                best = Some((sim, params, *id));
            }
        }
        best.filter(|(s, _, _)| *s >= SIM_TH).map(|(_, _, id)| id)
    }

    fn child(&mut self, node: usize, key: &str) -> usize {
        if let Some(&c) = self.nodes[node].children.get(key) {
            return c;
        }
        let c = self.nodes.len();
        self.nodes.push(Node::default());
        self.nodes[node].children.insert(key.to_string(), c);
        c
    }

    fn add_to_tree(&mut self, id: u64, tokens: &[String]) {
        let n = tokens.len();
        let mut cur = self.child(0, &n.to_string());
        for (depth, t) in (1..).zip(tokens) {
            if depth >= MAX_NODE_DEPTH || depth >= n {
                let live: Vec<u64> = self.nodes[cur]
                    .clusters
                    .iter()
                    .copied()
                    .filter(|c| self.clusters.contains_key(c))
                    .collect();
                self.nodes[cur].clusters = live;
                self.nodes[cur].clusters.push(id);
                return;
            }
            let ch = &self.nodes[cur].children;
            cur = if ch.contains_key(t.as_str()) {
                ch[t.as_str()]
            } else if !t.chars().any(char::is_numeric) {
                let (len, has_param) = (ch.len(), ch.contains_key(PARAM));
                if has_param {
                    if len < MAX_CHILDREN {
                        self.child(cur, t)
                    } else {
                        self.child(cur, PARAM)
                    }
                } else if len + 1 < MAX_CHILDREN {
                    self.child(cur, t)
                } else {
                    self.child(cur, PARAM)
                }
            } else {
                self.child(cur, PARAM)
            };
        }
    }

    /// Drops samples before `cutoff_ms` and clusters left without any;
    /// returns how many clusters went.
    pub fn prune(&mut self, cutoff_ms: i64) -> usize {
        let before = self.clusters.len();
        self.clusters.retain(|_, c| {
            c.prune(cutoff_ms);
            !c.samples.is_empty()
        });
        before - self.clusters.len()
    }
}

/// Samples in `[start_ms, end_ms)` re-bucketed by `step_ms` (a multiple of
/// the resolution), empty steps between filled with 0, as Loki's
/// `Chunk.ForRange`.
pub fn samples_for_range(
    samples: &[(i64, i64)],
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
) -> Vec<(i64, i64)> {
    let lo = samples.partition_point(|(t, _)| *t < start_ms);
    let hi = samples.partition_point(|(t, _)| *t < end_ms);
    let s = &samples[lo..hi];
    if s.is_empty() {
        return Vec::new();
    }
    if step_ms == RESOLUTION_MS {
        return s.to_vec();
    }
    let trunc = |t: i64| t - t.rem_euclid(step_ms);
    let mut cur = trunc(s[0].0);
    let mut out = vec![(cur, 0)];
    for &(t, n) in s {
        if t >= cur + step_ms {
            let at = trunc(t);
            let mut i = cur + step_ms;
            while i <= at {
                out.push((i, 0));
                i += step_ms;
            }
            cur = at;
        }
        out.last_mut().expect("one bucket at least").1 += n;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_splits_like_lokis_punctuation_tokenizer() {
        let t = tokenize("GET /api/v1/users?id=42 took 12.5ms (ok)").unwrap();
        assert_eq!(
            t.tokens,
            [
                "GET",
                "/api/v1/users",
                "?",
                "id",
                "=",
                "42",
                "took",
                "12.5ms",
                "(",
                "ok",
                ")"
            ]
        );
        assert_eq!(t.spaces_after, [0, 5, 6, 7]);
        assert!(tokenize(&"x".repeat(3000)).is_none());
    }

    #[test]
    fn lines_become_patterns_with_placeholders() {
        let mut d = Drain::new();
        let lines = [
            "user 17 logged in from 10.0.0.1",
            "user 23 logged in from 10.0.0.7",
            "user 99 logged in from 192.168.1.1",
            "payment failed for order 7 reason=timeout",
            "payment failed for order 8 reason=declined",
        ];
        for (i, l) in lines.iter().enumerate() {
            d.train(l, i as i64 * 1000, true);
        }
        let mut got: Vec<(String, i64)> = d
            .clusters()
            .map(|c| (c.pattern(), c.samples.iter().map(|s| s.1).sum()))
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                ("payment failed for order <_> reason=<_>".to_string(), 2),
                ("user <_> logged in from <_>".to_string(), 3),
            ]
        );
        assert_eq!(d.train("too few", 0, true), Trained::Skipped);
        assert_eq!(
            d.train("something entirely different here now", 0, false),
            Trained::Refused
        );
    }

    #[test]
    fn clusters_are_bounded_and_pruned() {
        let mut d = Drain::new();
        for i in 0..(MAX_CLUSTERS + 50) {
            // No token in common with any other line: one cluster each.
            let line = format!("a{i}x b{i}y c{i}z d{i}w");
            assert_eq!(d.train(&line, i as i64 * 20_000, true), Trained::Created);
        }
        assert!(d.len() <= MAX_CLUSTERS, "{}", d.len());
        let n = d.len();
        assert_eq!(d.prune(i64::MAX), n);
        assert!(d.is_empty());
    }

    #[test]
    fn range_rebuckets_and_fills_gaps() {
        let s = [(0, 1), (10_000, 2), (50_000, 3), (60_000, 4)];
        assert_eq!(samples_for_range(&s, 0, 60_000, RESOLUTION_MS), s[..3]);
        assert_eq!(
            samples_for_range(&s, 0, 100_000, 20_000),
            [(0, 3), (20_000, 0), (40_000, 3), (60_000, 4)]
        );
        assert!(samples_for_range(&s, 70_000, 90_000, 20_000).is_empty());
    }
}
