//! Query-level tests of the full-text index: LogQL needles return exactly
//! the lines a substring scan (grep -F) finds, from hot segments, after a
//! restart, and from warm segments (index dropped), and the hot tier reads
//! few blocks for them.

use std::sync::Arc;

use rand::{Rng, SeedableRng};

use super::tests::{opts, tenant};
use super::*;
use crate::logs::{LogEntry, PushStream};
use crate::query::logql::{Direction, Engine, LogParams, QueryResult};

const SERVICES: [&str; 3] = ["api", "db", "web"];

/// Pushes generated lines (ids, users, words, a few long tokens, JSON and
/// logfmt) with structured metadata; returns every line pushed.
fn fill(s: &LogStore, t: &Tenant) -> Vec<String> {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(9);
    let words = ["timeout", "retrying", "cache", "miss", "flushed"];
    let mut all = Vec::new();
    let mut ts = 1_000_000_000i64;
    for _ in 0..6 {
        let mut streams = Vec::new();
        for svc in SERVICES {
            let mut entries = Vec::new();
            for i in 0..250 {
                ts += 1000;
                let id: u64 = rng.random();
                let user = rng.random_range(0..400);
                let w = words[rng.random_range(0..words.len())];
                let line = match i % 3 {
                    0 => format!("level=info msg=\"{w}\" request_id={id:016x} user=u{user}"),
                    1 => format!(
                        "{{\"msg\":\"{w}\",\"request_id\":\"{id:016x}\",\"user\":\"u{user}\"}}"
                    ),
                    _ => format!("WARN {w} for u{user} sha={id:016x}{id:016x}"),
                };
                let mut e = LogEntry::new(ts, line.clone());
                e.metadata = Labels::from_pairs([("trace", format!("tr{user:04}"))]);
                entries.push(e);
                all.push(line);
            }
            streams.push(PushStream {
                labels: Labels::from_pairs([("env", "prod"), ("service", svc)]),
                entries,
            });
        }
        s.push(t, streams).unwrap();
    }
    all
}

/// Lines returned for `{env="prod"} |= `needle``, sorted.
fn query(s: &Arc<LogStore>, t: &Tenant, needle: &str) -> Vec<String> {
    let engine = Engine::new(s.clone(), Default::default());
    let q = format!("{{env=\"prod\"}} |= `{needle}`");
    let p = LogParams {
        start: 0,
        end: i64::MAX,
        limit: 5000,
        direction: Direction::Forward,
    };
    let Ok(QueryResult::Streams(streams)) = engine.query_logs(t, &q, p) else {
        panic!("{q} failed");
    };
    let mut out: Vec<String> = streams
        .into_iter()
        .flat_map(|s| s.entries.into_iter().map(|e| e.line))
        .collect();
    out.sort();
    out
}

/// Needles of every shape: whole ids, bounded ids, id prefixes, suffixes
/// and middles, words, JSON fragments, tokens of long ones, absent ones.
fn needles(lines: &[String]) -> Vec<String> {
    let mut out: Vec<String> = [
        "timeout",
        "imeou",
        "u17",
        "=u17",
        "u17\"",
        "user=u3",
        "\"msg\":\"cache\"",
        "WARN flushed",
        "nothere",
        "request_id=",
    ]
    .map(String::from)
    .to_vec();
    for l in lines.iter().step_by(211) {
        let Some(at) = l.find("request_id").map(|i| i + "request_id".len()) else {
            continue;
        };
        let id = l[at..].trim_start_matches(['"', ':', '='])[..16].to_string();
        out.push(format!("={id} "));
        out.push(id[..10].to_string());
        out.push(id[4..].to_string());
        out.push(id[3..12].to_string());
        out.push(id.clone());
    }
    for l in lines.iter().skip(2).step_by(301) {
        if let Some(at) = l.find("sha=") {
            out.push(l[at + 4..at + 4 + 32].to_string());
            out.push(l[at + 10..at + 30].to_string());
        }
    }
    out
}

fn expected(lines: &[String], needle: &str) -> Vec<String> {
    let mut v: Vec<String> = lines
        .iter()
        .filter(|l| l.contains(needle))
        .cloned()
        .collect();
    v.sort();
    v
}

#[test]
fn needles_return_exactly_the_grep_lines_hot_restarted_and_warm() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts();
    o.block_bytes = 2048;
    // The generated entries are from 1970: retention would delete them.
    o.retention_ns = 0;
    let t = tenant("t");
    let s = Arc::new(LogStore::open(dir.path(), o.clone()).unwrap());
    let lines = fill(&s, &t);
    s.flush().unwrap();
    let needles = needles(&lines);
    assert!(needles.len() > 30);
    let blocks = s.stats(&t, &[], i64::MIN, i64::MAX).unwrap().chunks;
    assert!(blocks > 100, "{blocks} blocks");
    let check = |s: &Arc<LogStore>, tier: &str| -> u64 {
        let before = s.blocks_read();
        for n in &needles {
            let (got, want) = (query(s, &t, n), expected(&lines, n));
            assert!(
                got == want,
                "{tier}: needle {n:?}: {} lines, grep finds {}",
                got.len(),
                want.len()
            );
        }
        // A whole 16-hex id (bare or bounded) reads a few blocks at most.
        let ids: Vec<&String> = needles.iter().filter(|n| n.len() == 16).collect();
        let b0 = s.blocks_read();
        for id in &ids {
            assert_eq!(query(s, &t, id).len(), 1, "{tier}: {id}");
        }
        let per_id = (s.blocks_read() - b0) as f64 / ids.len() as f64;
        eprintln!("{tier}: {per_id:.1} of {blocks} blocks read per bare id");
        if tier != "warm" {
            assert!(per_id < 1.5, "{tier}: {per_id} blocks per bare id");
        } else {
            assert!(per_id > blocks as f64 / 2.0, "warm: {per_id}");
        }
        s.blocks_read() - before
    };
    let hot = check(&s, "hot");
    s.close().unwrap();
    drop(s);
    let s = Arc::new(LogStore::open(dir.path(), o).unwrap());
    assert_eq!(check(&s, "restarted"), hot);
    // The entries are decades old but the segments were just written: they
    // stay hot. Two days later they are past the hot window: the index is
    // dropped, answers are the same.
    let segs = s.tenant(&t).unwrap().read().segments.clone();
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    s.maintain(now).unwrap();
    assert!(segs.iter().all(|g| g.dir.join(fulltext::FILE).exists()));
    s.maintain(now + 2 * 86_400 * 1_000_000_000).unwrap();
    assert_eq!(s.tenant(&t).unwrap().read().segments.len(), segs.len());
    assert!(segs.iter().all(|g| !g.dir.join(fulltext::FILE).exists()));
    let warm = check(&s, "warm");
    assert!(warm > hot, "warm read {warm} blocks, hot {hot}");
}

#[test]
fn no_index_is_built_without_a_hot_window() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts();
    o.fulltext_hot_window_ns = 0;
    let t = tenant("t");
    let s = Arc::new(LogStore::open(dir.path(), o).unwrap());
    let lines = fill(&s, &t);
    s.flush().unwrap();
    let segs = s.tenant(&t).unwrap().read().segments.clone();
    assert!(segs.iter().all(|g| !g.dir.join(fulltext::FILE).exists()));
    for n in needles(&lines).iter().take(15) {
        assert_eq!(query(&s, &t, n), expected(&lines, n), "needle {n:?}");
    }
}
