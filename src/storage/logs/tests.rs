use std::sync::Arc;

use super::*;
use crate::logs::{LineHint, LogEntry, LogReader, LogSelect, LogWriter, PushStream};
use crate::model::{Labels, MatchOp, Matcher, Tenant};

pub(super) fn opts() -> LogStoreOptions {
    let mut o = LogStoreOptions::default();
    o.wal.fsync = false;
    o
}

pub(super) fn tenant(s: &str) -> Tenant {
    Tenant::new(s).unwrap()
}

pub(super) fn stream(app: &str, entries: &[(i64, &str)]) -> PushStream {
    PushStream {
        labels: Labels::from_pairs([("app", app), ("env", "prod")]),
        entries: entries.iter().map(|&(t, l)| LogEntry::new(t, l)).collect(),
    }
}

/// Every (app, ts, line) the store returns for `matchers` and `hint`.
pub(super) fn read(
    s: &dyn LogReader,
    t: &Tenant,
    matchers: &[Matcher],
    hint: &[&str],
) -> Vec<(String, i64, String)> {
    let hint = LineHint {
        must_contain: hint.iter().map(|h| h.to_string()).collect(),
        ..LineHint::default()
    };
    s.select(
        t,
        &LogSelect {
            matchers,
            start: i64::MIN,
            end: i64::MAX,
            hint: &hint,
        },
    )
    .unwrap()
    .into_iter()
    .flat_map(|st| {
        let app = st.labels.get("app").unwrap_or("").to_owned();
        st.entries
            .into_iter()
            .map(move |e| (app.clone(), e.ts, e.line))
    })
    .collect()
}

fn app(v: &str) -> Matcher {
    Matcher::new(MatchOp::Equal, "app", v).unwrap()
}

#[test]
fn push_then_select_by_matchers_range_and_hint() {
    let dir = tempfile::tempdir().unwrap();
    let s = LogStore::open(dir.path(), opts()).unwrap();
    let t = tenant("t");
    let mut rx = s.subscribe(&t);
    let out = s
        .push(
            &t,
            vec![
                stream("api", &[(3, "GET /a 200"), (1, "GET /b 500")]),
                stream("db", &[(2, "slow query")]),
            ],
        )
        .unwrap();
    assert_eq!((out.entries_written, out.bytes_written), (3, 30));
    assert!(out.rejected.is_empty());
    assert_eq!(rx.try_recv().unwrap().len(), 2);
    assert_eq!(
        read(&s, &t, &[app("api")], &[]),
        [
            ("api".into(), 1, "GET /b 500".into()),
            ("api".into(), 3, "GET /a 200".into())
        ]
    );
    assert_eq!(read(&s, &t, &[], &["500"]).len(), 1);
    let hint = LineHint::default();
    let got = s
        .select(
            &t,
            &LogSelect {
                matchers: &[],
                start: 2,
                end: 3,
                hint: &hint,
            },
        )
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].entries[0].line, "slow query");
}

#[test]
fn restart_replays_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let t = tenant("t");
    {
        let s = LogStore::open(dir.path(), opts()).unwrap();
        s.push(&t, vec![stream("api", &[(1, "one"), (2, "two")])])
            .unwrap();
        s.push(&t, vec![stream("api", &[(3, "three")])]).unwrap();
        s.close().unwrap();
        assert!(s.push(&t, vec![stream("api", &[(4, "x")])]).is_err());
    }
    let s = LogStore::open(dir.path(), opts()).unwrap();
    let got: Vec<i64> = read(&s, &t, &[], &[]).iter().map(|r| r.1).collect();
    assert_eq!(got, [1, 2, 3]);
    // The window survives the restart: newest is 3, window 1h.
    let old = -2 * 3_600_000_000_000;
    let out = s.push(&t, vec![stream("api", &[(old, "old")])]).unwrap();
    assert_eq!(out.rejected.len(), 1);
}

#[test]
fn tenants_are_isolated() {
    let dir = tempfile::tempdir().unwrap();
    let s = LogStore::open(dir.path(), opts()).unwrap();
    let (a, b) = (tenant("a"), tenant("b"));
    let mut rx_b = s.subscribe(&b);
    s.push(&a, vec![stream("api", &[(1, "secret of a")])])
        .unwrap();
    assert!(read(&s, &b, &[], &[]).is_empty());
    assert!(s.streams(&b, &[], i64::MIN, i64::MAX).unwrap().is_empty());
    assert!(rx_b.try_recv().is_err());
    assert_eq!(read(&s, &a, &[], &[]).len(), 1);
}

#[test]
fn out_of_order_window_and_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let s = LogStore::open(dir.path(), opts()).unwrap();
    let t = tenant("t");
    let hour = 3_600_000_000_000i64;
    let base = 10 * hour;
    s.push(&t, vec![stream("api", &[(base, "newest")])])
        .unwrap();
    let out = s
        .push(
            &t,
            vec![
                stream(
                    "api",
                    &[
                        (base - hour / 2, "late but fine"),
                        (base - 2 * hour, "too old"),
                        (base, "newest"),
                    ],
                ),
                // Another stream has its own newest timestamp.
                stream("db", &[(base - 5 * hour, "first of db")]),
            ],
        )
        .unwrap();
    assert_eq!(out.entries_written, 2, "{out:?}");
    assert_eq!(out.rejected.len(), 1);
    assert_eq!(out.rejected[0].count, 1);
    assert!(out.rejected[0].reason.contains("entry too far behind"));
    assert_eq!(
        out.rejected[0].labels,
        Labels::from_pairs([("app", "api"), ("env", "prod")])
    );
    let lines: Vec<String> = read(&s, &t, &[app("api")], &[])
        .into_iter()
        .map(|r| r.2)
        .collect();
    assert_eq!(lines, ["late but fine", "newest"]);
}

#[test]
fn concurrent_pushes_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(LogStore::open(dir.path(), opts()).unwrap());
    let t = tenant("t");
    std::thread::scope(|sc| {
        for w in 0..4 {
            let (s, t) = (s.clone(), t.clone());
            sc.spawn(move || {
                for i in 0..50 {
                    let line = format!("w{w} i{i}");
                    s.push(&t, vec![stream("api", &[(i, line.as_str())])])
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(read(&*s, &t, &[], &[]).len(), 200);
}

fn opts_small_blocks() -> LogStoreOptions {
    LogStoreOptions {
        block_bytes: 4096,
        ..opts()
    }
}

/// Lines of a stream: mostly common words, one rare request id per line.
fn lines(n: usize) -> Vec<(i64, String)> {
    (0..n)
        .map(|i| {
            (
                i as i64 * 1000,
                format!("level=info msg=\"request done\" req_id=r{i:06}x status=200"),
            )
        })
        .collect()
}

fn push_lines(s: &LogStore, t: &Tenant, app: &str, ls: &[(i64, String)]) {
    let entries: Vec<(i64, &str)> = ls.iter().map(|(t, l)| (*t, l.as_str())).collect();
    s.push(t, vec![stream(app, &entries)]).unwrap();
}

#[test]
fn segments_answer_like_the_head_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let t = tenant("t");
    let ls = lines(2000);
    let expect_all;
    let expect_hint;
    {
        let s = LogStore::open(dir.path(), opts_small_blocks()).unwrap();
        push_lines(&s, &t, "api", &ls[..1000]);
        push_lines(&s, &t, "db", &ls[..10]);
        expect_all = read(&s, &t, &[], &[]);
        expect_hint = read(&s, &t, &[], &["r000500x"]);
        assert_eq!(expect_hint.len(), 1);
        let stats_head = s.stats(&t, &[], i64::MIN, i64::MAX).unwrap();
        s.flush().unwrap();
        assert!(dir.path().join("segments/t").read_dir().unwrap().count() == 1);
        assert_eq!(read(&s, &t, &[], &[]), expect_all);
        assert_eq!(read(&s, &t, &[], &["r000500x"]), expect_hint);
        let st = s.stats(&t, &[], i64::MIN, i64::MAX).unwrap();
        assert_eq!(
            (st.streams, st.entries, st.bytes),
            (2, 1010, stats_head.bytes)
        );
        assert_eq!(
            s.label_values(&t, "app", &[app("db")], i64::MIN, i64::MAX)
                .unwrap(),
            ["db"]
        );
        // Half in a segment, half in the head: reads merge both.
        push_lines(&s, &t, "api", &ls[1000..]);
        assert_eq!(read(&s, &t, &[app("api")], &[]).len(), 2000);
        s.close().unwrap();
    }
    let s = LogStore::open(dir.path(), opts_small_blocks()).unwrap();
    assert_eq!(read(&s, &t, &[app("api")], &[]).len(), 2000);
    assert_eq!(read(&s, &t, &[], &["r001500x"]).len(), 1);
    // Old entries are still refused after a restart: the window comes from
    // segments too.
    let out = s
        .push(&t, vec![stream("db", &[(-10 * 3_600_000_000_000, "x")])])
        .unwrap();
    assert_eq!(out.rejected.len(), 1);
}

#[test]
fn crash_between_segment_and_wal_truncation_does_not_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let t = tenant("t");
    let saved = tempfile::tempdir().unwrap();
    {
        let s = LogStore::open(dir.path(), opts()).unwrap();
        push_lines(&s, &t, "api", &lines(50));
        for e in std::fs::read_dir(dir.path().join("wal")).unwrap().flatten() {
            if e.file_name() != "LOCK" {
                std::fs::copy(e.path(), saved.path().join(e.file_name())).unwrap();
            }
        }
        s.flush().unwrap();
        // Acknowledged after the segment: in the WAL only.
        push_lines(&s, &t, "api", &lines(60)[50..]);
        s.close().unwrap();
    }
    // Put back the WAL segments the flush deleted, as if it crashed first.
    for e in std::fs::read_dir(saved.path()).unwrap().flatten() {
        std::fs::copy(e.path(), dir.path().join("wal").join(e.file_name())).unwrap();
    }
    let s = LogStore::open(dir.path(), opts()).unwrap();
    assert_eq!(read(&s, &t, &[], &[]).len(), 60);
    // Replay skipped what the segment holds (reads would hide duplicates).
    let head_entries = s.tenants.read()[&t].read().head.entries;
    assert_eq!(head_entries, 10);
}

#[test]
fn token_filters_skip_blocks_for_a_needle() {
    let dir = tempfile::tempdir().unwrap();
    let s = LogStore::open(dir.path(), opts_small_blocks()).unwrap();
    let t = tenant("t");
    push_lines(&s, &t, "api", &lines(5000));
    s.flush().unwrap();
    let before = s.blocks_read();
    assert_eq!(read(&s, &t, &[], &[]).len(), 5000);
    let all = s.blocks_read() - before;
    assert!(all > 50, "{all} blocks");
    // " r004321x " proves the whole token r004321x: few blocks are read.
    let before = s.blocks_read();
    assert_eq!(read(&s, &t, &[], &["=r004321x "]).len(), 1);
    let needle = s.blocks_read() - before;
    assert!(needle <= 3, "{needle} of {all} blocks read");
    // A substring that is not a whole token still finds its line.
    assert_eq!(read(&s, &t, &[], &["004321"]).len(), 1);
}

#[test]
fn retention_deletes_whole_segments() {
    let dir = tempfile::tempdir().unwrap();
    let s = LogStore::open(
        dir.path(),
        LogStoreOptions {
            retention_ns: 1_000,
            ..opts()
        },
    )
    .unwrap();
    let t = tenant("t");
    s.push(&t, vec![stream("api", &[(10, "old")])]).unwrap();
    s.flush().unwrap();
    s.push(&t, vec![stream("api", &[(5_000, "new")])]).unwrap();
    s.flush().unwrap();
    s.maintain(5_500).unwrap();
    let got: Vec<String> = read(&s, &t, &[], &[]).into_iter().map(|r| r.2).collect();
    assert_eq!(got, ["new"]);
    assert_eq!(dir.path().join("segments/t").read_dir().unwrap().count(), 1);
}

#[test]
fn corrupt_segment_files_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let t = tenant("t");
    let seg_dir;
    {
        let s = LogStore::open(dir.path(), opts()).unwrap();
        push_lines(&s, &t, "api", &lines(100));
        s.flush().unwrap();
        s.close().unwrap();
        seg_dir = only_segment(dir.path());
    }
    let flip = |name: &str, at: usize| {
        let p = seg_dir.join(name);
        let mut b = std::fs::read(&p).unwrap();
        let at = at.min(b.len() - 1);
        b[at] ^= 0x55;
        std::fs::write(&p, b).unwrap();
    };
    flip("data", 40);
    let s = LogStore::open(dir.path(), opts()).unwrap();
    let hint = LineHint::default();
    let err = s
        .select(
            &t,
            &LogSelect {
                matchers: &[],
                start: i64::MIN,
                end: i64::MAX,
                hint: &hint,
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    s.close().unwrap();
    drop(s);
    flip("index", 30);
    let err = LogStore::open(dir.path(), opts()).err().unwrap();
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
}

/// The streams of the segment format fixtures: metadata, non-ASCII, empty
/// and long lines, ids and numbers, over several blocks of 4 KiB.
fn fixture_streams() -> Vec<PushStream> {
    let mut out = Vec::new();
    for (app, n) in [("api", 300usize), ("db", 7), ("edge", 1)] {
        let entries = (0..n)
            .map(|i| {
                let line = match i % 7 {
                    0 => String::new(),
                    1 => format!("héllo wörld {i} \u{1}ctl\u{3}"),
                    2 => "x".repeat(5000 + i),
                    3 => format!(
                        "{{\"request_id\":\"{:016x}\",\"n\":{},\"neg\":-{i},\"z\":007}}",
                        (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                        u64::MAX - i as u64
                    ),
                    _ => format!(
                        "level=info msg=\"done {i}\" user=u{} took={}ms",
                        i * 37,
                        i % 13
                    ),
                };
                let mut e = LogEntry::new(1_700_000_000_000_000_000 + i as i64 * 1_000_003, line);
                if i % 5 == 0 {
                    e.metadata = Labels::from_pairs([("trace_id", format!("t{i}"))]);
                }
                e
            })
            .collect();
        out.push(PushStream {
            labels: Labels::from_pairs([("app", app), ("env", "prod")]),
            entries,
        });
    }
    out
}

/// The first segment directory of tenant `t` under a store directory.
fn only_segment(dir: &Path) -> std::path::PathBuf {
    let mut it = dir.join("segments/t").read_dir().unwrap();
    it.next().unwrap().unwrap().path()
}

fn select_all(s: &LogStore, t: &Tenant) -> Vec<Stream> {
    let hint = LineHint::default();
    let mut got = s
        .select(
            t,
            &LogSelect {
                matchers: &[],
                start: i64::MIN,
                end: i64::MAX,
                hint: &hint,
            },
        )
        .unwrap();
    got.sort_by(|a, b| a.labels.cmp(&b.labels));
    got
}

fn fixture_expected() -> Vec<Stream> {
    let mut want: Vec<Stream> = fixture_streams()
        .into_iter()
        .map(|p| Stream {
            labels: p.labels,
            entries: p.entries,
        })
        .collect();
    want.sort_by(|a, b| a.labels.cmp(&b.labels));
    want
}

/// A store in `dir` holding the fixture streams in one segment written in
/// the current format.
fn fixture_store(dir: &Path) -> (LogStore, Tenant) {
    let t = tenant("t");
    let s = LogStore::open(dir, opts_small_blocks()).unwrap();
    s.push(&t, fixture_streams()).unwrap();
    s.flush().unwrap();
    assert_eq!(select_all(&s, &t), fixture_expected());
    (s, t)
}

/// Writes the fixture segment with the current format into
/// `$STRATA_WRITE_FIXTURE` (run by hand when the format version changes).
#[test]
#[ignore = "writes a format fixture by hand"]
fn write_segment_fixture() {
    let out = std::path::PathBuf::from(std::env::var("STRATA_WRITE_FIXTURE").unwrap());
    let dir = tempfile::tempdir().unwrap();
    let _store = fixture_store(dir.path());
    let seg = only_segment(dir.path());
    std::fs::create_dir_all(&out).unwrap();
    for f in ["data", "index", "fulltext"] {
        if seg.join(f).exists() {
            std::fs::copy(seg.join(f), out.join(f)).unwrap();
        }
    }
}

/// Segments written by older formats stay readable: `testdata/segment-v<N>`
/// were written by `write_segment_fixture` at format N.
#[test]
fn reads_older_format_segments() {
    for version in [1u32, 2, 3, 4] {
        let dir = tempfile::tempdir().unwrap();
        let seg = dir.path().join("segments/t/01JAAAAAAAAAAAAAAAAAAAAAAA");
        std::fs::create_dir_all(&seg).unwrap();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("src/storage/logs/testdata/segment-v{version}"));
        for f in ["data", "index"] {
            std::fs::copy(fixture.join(f), seg.join(f)).unwrap();
        }
        let data = std::fs::read(seg.join("data")).unwrap();
        assert_eq!(&data[8..12], &version.to_le_bytes());
        let t = tenant("t");
        let s = LogStore::open(dir.path(), opts_small_blocks()).unwrap();
        assert_eq!(select_all(&s, &t), fixture_expected(), "format {version}");
        assert_eq!(read(&s, &t, &[app("db")], &["user=u148 "]).len(), 1);
        assert_eq!(read(&s, &t, &[app("db")], &["user=u148x"]).len(), 0);
        // New segments beside it are written in the current format.
        s.push(
            &t,
            vec![stream("api", &[(1_800_000_000_000_000_000, "new 1")])],
        )
        .unwrap();
        s.flush().unwrap();
        assert_eq!(read(&s, &t, &[app("api")], &[]).len(), 301);
        let b = s.disk_breakdown().unwrap();
        assert_eq!(b.segments, 2);
        if version == 1 {
            assert!(b.parts["data: format 1 blocks"] > 0);
        }
        assert!(b.parts["data: template ids"] > 0);
        // The new segment's one template, and formats 3 and 4's shared ones.
        assert_eq!(b.templates, if version >= 3 { 48 } else { 1 });
    }
}

/// A hot segment of index format 5 (blocks without token filters) with
/// its version 3 full-text index (`testdata/segment-v4-index5`) reads
/// through the index, turns warm (token filters written from its blocks,
/// the index deleted) with the same answers, and reopens warm.
#[test]
fn reads_the_hot_fixture_then_turns_it_warm() {
    let dir = tempfile::tempdir().unwrap();
    let seg = dir.path().join("segments/t/01JAAAAAAAAAAAAAAAAAAAAAAA");
    std::fs::create_dir_all(&seg).unwrap();
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/storage/logs/testdata/segment-v4-index5");
    for f in ["data", "index", "fulltext"] {
        std::fs::copy(fixture.join(f), seg.join(f)).unwrap();
    }
    let t = tenant("t");
    let check = |s: &LogStore| {
        assert_eq!(select_all(s, &t), fixture_expected());
        assert_eq!(read(s, &t, &[app("db")], &["user=u148 "]).len(), 1);
        assert_eq!(read(s, &t, &[app("db")], &["user=u148x"]).len(), 0);
    };
    let s = LogStore::open(dir.path(), opts_small_blocks()).unwrap();
    let only = || s.tenant(&t).unwrap().read().segments[0].clone();
    assert!(only().fulltext.read().is_some() && only().lacks_filters());
    check(&s);
    let before = s.blocks_read();
    assert_eq!(read(&s, &t, &[], &["user=u148 "]).len(), 2);
    let hot = s.blocks_read() - before;
    // Written in 2024: past the hot window now.
    s.apply_tiering(chrono::Utc::now().timestamp_nanos_opt().unwrap())
        .unwrap();
    assert!(!seg.join(super::fulltext::FILE).exists());
    assert!(seg.join(super::filters::FILE).exists());
    check(&s);
    let before = s.blocks_read();
    assert_eq!(read(&s, &t, &[], &["user=u148 "]).len(), 2);
    let warm = s.blocks_read() - before;
    assert!(hot <= warm, "hot read {hot} blocks, warm {warm}");
    s.close().unwrap();
    drop(s);
    let s = LogStore::open(dir.path(), opts_small_blocks()).unwrap();
    let only = s.tenant(&t).unwrap().read().segments[0].clone();
    assert!(only.fulltext.read().is_none() && only.warm_filters.read().is_some());
    check(&s);
    let before = s.blocks_read();
    assert_eq!(read(&s, &t, &[], &["user=u148 "]).len(), 2);
    assert_eq!(s.blocks_read() - before, warm);
    let blocks = s.stats(&t, &[], i64::MIN, i64::MAX).unwrap().chunks;
    assert!(warm < blocks, "warm read {warm} of {blocks} blocks");
}

/// Every format fixture decodes the same as the streams it was written
/// from after a round trip through the current format.
#[test]
fn current_format_round_trips_the_fixture_streams() {
    let dir = tempfile::tempdir().unwrap();
    let (s, t) = fixture_store(dir.path());
    s.close().unwrap();
    drop(s);
    let s = LogStore::open(dir.path(), opts_small_blocks()).unwrap();
    assert_eq!(select_all(&s, &t), fixture_expected());
    let b = s.disk_breakdown().unwrap();
    assert_eq!(b.entries, 308);
    let on_disk: u64 = b.parts.values().sum();
    assert_eq!(on_disk, s.disk_bytes() - wal_bytes(dir.path()));
    // Hot: the full-text index answers, the blocks have no token filters.
    assert!(b.parts["full-text (hot): dictionary, postings"] > 0);
    assert_eq!((b.filter_tokens, b.filter_probes), (0.0, 0));
    // Warm: the filters are written from the blocks, the index goes.
    let later = chrono::Utc::now().timestamp_nanos_opt().unwrap() + 2 * 86_400_000_000_000;
    s.apply_tiering(later).unwrap();
    assert_eq!(select_all(&s, &t), fixture_expected());
    let b = s.disk_breakdown().unwrap();
    let on_disk: u64 = b.parts.values().sum();
    assert_eq!(on_disk, s.disk_bytes() - wal_bytes(dir.path()));
    assert!(b.filter_tokens > 0.0 && b.filter_probes > 0);
    assert!(b.parts["filters (warm): token filters"] > 0);
    assert!(!b
        .parts
        .contains_key("full-text (hot): dictionary, postings"));
}

fn wal_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// Time ranges over a segment of many blocks (some sharing a timestamp
/// across their boundary) return exactly the entries in range.
#[test]
fn segment_ranges_cut_at_any_block() {
    let dir = tempfile::tempdir().unwrap();
    let t = tenant("t");
    let s = LogStore::open(dir.path(), opts_small_blocks()).unwrap();
    // Timestamps repeat in pairs: block boundaries fall between equal ones.
    let ls: Vec<(i64, String)> = lines(3000)
        .into_iter()
        .map(|(ts, l)| (ts / 2000 * 1000, l))
        .collect();
    push_lines(&s, &t, "api", &ls);
    s.flush().unwrap();
    assert!(s.stats(&t, &[], i64::MIN, i64::MAX).unwrap().chunks > 20);
    let hint = LineHint::default();
    for (start, end) in [
        (0, 1),
        (-5, 0),
        (1000, 1001),
        (123_000, 456_000),
        (456_000, 123_000),
        (1_499_000, i64::MAX),
        (i64::MIN, 7000),
        (700_000, 700_000),
    ] {
        let sel = LogSelect {
            matchers: &[],
            start,
            end,
            hint: &hint,
        };
        let got: Vec<i64> = s
            .select(&t, &sel)
            .unwrap()
            .into_iter()
            .flat_map(|st| st.entries.into_iter().map(|e| e.ts))
            .collect();
        let want: Vec<i64> = ls
            .iter()
            .map(|l| l.0)
            .filter(|&ts| ts >= start && ts < end)
            .collect();
        assert_eq!(got, want, "[{start}, {end})");
    }
}

/// LogQL over segments (late materialization, lines rebuilt only where
/// needed) answers as over the in-memory reference store, for needles on
/// hex ids, numbers and template text and for counts that read no line.
#[test]
fn queries_over_segments_answer_like_the_reference() {
    use crate::logs::MemLogs;
    use crate::query::logql::eval::{Direction, Engine, EngineLimits, RangeParams};
    let dir = tempfile::tempdir().unwrap();
    let t = tenant("t");
    let s = Arc::new(LogStore::open(dir.path(), opts_small_blocks()).unwrap());
    let mem = Arc::new(MemLogs::new());
    let mut batches = Vec::new();
    for (n, app) in ["api", "db"].iter().enumerate() {
        let entries: Vec<LogEntry> = (0..1500u64)
            .map(|i| {
                let id = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (n * 3);
                let line = match i % 3 {
                    0 => format!("level=info req={id:016x} took={}ms", i % 97),
                    1 => format!("{{\"id\":\"{id:x}\",\"status\":{}}}", 200 + i % 5),
                    _ => format!("GET /api/{i} é {id:x}{id:x}"),
                };
                let mut e = LogEntry::new(i as i64 * 1_000_000_000 + n as i64, line);
                if i % 7 == 0 {
                    e.metadata = Labels::from_pairs([("trace", format!("t{}", i % 3))]);
                }
                e
            })
            .collect();
        batches.push(PushStream {
            labels: Labels::from_pairs([("app", *app), ("env", "prod")]),
            entries,
        });
    }
    for b in &batches {
        s.push(&t, vec![b.clone()]).unwrap();
        LogWriter::push(&*mem, &t, vec![b.clone()]).unwrap();
    }
    s.flush().unwrap();
    let id = 99u64.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let queries = [
        format!("{{env=\"prod\"}} |= \"{id:016x}\""),
        format!("{{env=\"prod\"}} |= \"={id:016x} \""),
        format!("{{env=\"prod\"}} |= \"{}\"", &format!("{id:016x}")[3..14]),
        "{env=\"prod\"} |= \"took=9ms\"".to_string(),
        "{env=\"prod\"} |= \"status\\\":203\" |= \"id\"".to_string(),
        "{env=\"prod\"} |= \"zzz\"".to_string(),
        "{env=\"prod\"} |~ \"GET /api/1[0-9]+ \"".to_string(),
        "sum by (app) (count_over_time({env=\"prod\"}[1m]))".to_string(),
        "sum by (trace) (rate({env=\"prod\"}[5m]))".to_string(),
        "sum by (app) (bytes_over_time({env=\"prod\"}[2m]))".to_string(),
        "bytes_rate({app=\"db\"}[1m])".to_string(),
        "count_over_time({env=\"prod\"} |= \"level=info\" [1m])".to_string(),
    ];
    let a = Engine::new(s.clone(), EngineLimits::default());
    let b = Engine::new(mem.clone(), EngineLimits::default());
    let rp = RangeParams {
        start: 60_000_000_000,
        end: 1_500_000_000_000,
        step: 60_000_000_000,
    };
    let run = |e: &Engine, q: &str| {
        e.query(&t, q, rp, false, (5000, Direction::Forward))
            .unwrap()
    };
    let empty = format!("{:?}", run(&a, &queries[5])).len();
    for q in &queries {
        let (got, want) = (run(&a, q), run(&b, q));
        assert_eq!(got, want, "{q}");
        assert!(
            q.contains("zzz") || format!("{got:?}").len() > empty,
            "{q}: nothing"
        );
    }
    s.close().unwrap();
}
