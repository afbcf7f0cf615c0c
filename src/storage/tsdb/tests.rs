//! Tsdb against the reference `MemMetrics`, across restarts, and its edge
//! cases (out-of-order window, duplicates, limits, WAL damage).

use std::path::Path;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::model::{MatchOp, MetricType, Sample, STALE_NAN_BITS};
use crate::storage::mem::MemMetrics;
use crate::storage::{RejectReason, SeriesWrite};

const HOUR: i64 = 3_600_000;

fn opts() -> TsdbOptions {
    let mut o = TsdbOptions::default();
    o.wal.fsync = false;
    o
}

fn open(dir: &Path, o: &TsdbOptions) -> Tsdb {
    Tsdb::open(dir, o.clone()).expect("open tsdb")
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

fn batch(l: &Labels, samples: &[(i64, f64)]) -> WriteBatch {
    WriteBatch {
        series: vec![SeriesWrite {
            labels: l.clone(),
            samples: samples.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
            exemplars: vec![],
        }],
        metadata: vec![],
    }
}

fn all(db: &dyn MetricsReader, t: &Tenant) -> Vec<SeriesSamples> {
    db.select(t, &[], i64::MIN, i64::MAX).unwrap()
}

/// A random workload: a few hundred series over a small label vocabulary,
/// samples mostly in order with some out-of-order ones inside the window,
/// identical and conflicting re-sends, stale markers, and two tenants.
fn random_batches(seed: u64, n: usize) -> Vec<(Tenant, WriteBatch)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let tenants = [Tenant::anonymous(), Tenant::new("team-b").unwrap()];
    let names = ["up", "http_requests_total", "node_cpu", "node_mem"];
    let jobs = ["api", "web", "node-1", "node-2", ""];
    let mut clock = 1_000_000i64;
    (0..n)
        .map(|_| {
            clock += rng.random_range(1_000..20_000);
            let tenant = tenants[rng.random_range(0..2)].clone();
            let series = (0..rng.random_range(1..20))
                .map(|_| {
                    let l = Labels::from_pairs([
                        ("__name__", names[rng.random_range(0..names.len())]),
                        ("job", jobs[rng.random_range(0..jobs.len())]),
                        (
                            "instance",
                            &format!("i{}", rng.random_range(0..8)).to_string()[..],
                        ),
                    ]);
                    let samples = (0..rng.random_range(0..6))
                        .map(|_| {
                            let back = if rng.random_bool(0.1) {
                                rng.random_range(0..30 * 60_000)
                            } else {
                                0
                            };
                            let t = clock - back - rng.random_range(0..3) * 15_000;
                            let v = match rng.random_range(0..20) {
                                0 => f64::from_bits(STALE_NAN_BITS),
                                1 => 1.0,
                                _ => rng.random_range(0..4) as f64,
                            };
                            Sample::new(t, v)
                        })
                        .collect();
                    SeriesWrite {
                        labels: l,
                        samples,
                        exemplars: vec![],
                    }
                })
                .collect();
            (
                tenant,
                WriteBatch {
                    series,
                    metadata: vec![],
                },
            )
        })
        .collect()
}

fn matcher_cases() -> Vec<Vec<Matcher>> {
    let m = |op, n: &str, v: &str| Matcher::new(op, n, v).unwrap();
    use MatchOp::*;
    vec![
        vec![],
        vec![m(Equal, "__name__", "up")],
        vec![m(Regex, "__name__", "node.*")],
        vec![m(Regex, "job", "api|web")],
        vec![m(NotEqual, "job", "")],
        vec![m(Equal, "job", "")],
        vec![
            m(NotRegex, "job", "node-.*"),
            m(Regex, "instance", "i[0-3]"),
        ],
        vec![
            m(Equal, "__name__", "node_mem"),
            m(NotEqual, "instance", "i1"),
        ],
        vec![m(Regex, "instance", ".+")],
        vec![m(Equal, "nope", "x")],
    ]
}

fn assert_same(db: &dyn MetricsReader, mem: &MemMetrics, tenants: &[Tenant], what: &str) {
    let ranges = [
        (i64::MIN, i64::MAX),
        (1_000_000, 1_500_000),
        (2_000_000, 4_000_000),
        (6_000_000, 6_000_000),
    ];
    for t in tenants {
        for ms in matcher_cases() {
            for &(lo, hi) in &ranges {
                let ctx = format!("{what}: tenant {t} {ms:?} [{lo}, {hi}]");
                let (a, b) = (
                    db.select(t, &ms, lo, hi).unwrap(),
                    mem.select(t, &ms, lo, hi).unwrap(),
                );
                assert_eq!(a.len(), b.len(), "{ctx}");
                for (x, y) in a.iter().zip(&b) {
                    assert_eq!(x.labels, y.labels, "{ctx}");
                    assert_eq!(bits(&x.samples), bits(&y.samples), "{ctx} {}", x.labels);
                }
                assert_eq!(
                    db.series(t, &ms, lo, hi).unwrap(),
                    mem.series(t, &ms, lo, hi).unwrap(),
                    "{ctx}"
                );
                assert_eq!(
                    db.label_names(t, &ms, lo, hi).unwrap(),
                    mem.label_names(t, &ms, lo, hi).unwrap(),
                    "{ctx}"
                );
                for name in ["job", "instance", "__name__", "nope"] {
                    assert_eq!(
                        db.label_values(t, name, &ms, lo, hi).unwrap(),
                        mem.label_values(t, name, &ms, lo, hi).unwrap(),
                        "{ctx} {name}"
                    );
                }
            }
        }
    }
}

#[test]
fn random_workloads_match_the_reference_before_and_after_restart() {
    let tenants = [Tenant::anonymous(), Tenant::new("team-b").unwrap()];
    for seed in [1, 2, 3] {
        let dir = tempfile::tempdir().unwrap();
        let o = opts();
        let mem = MemMetrics::new();
        let db = open(dir.path(), &o);
        for (t, b) in random_batches(seed, 150) {
            let got = db.append(&t, b.clone()).unwrap();
            let want = mem.append(&t, b).unwrap();
            assert_eq!(got.samples_written, want.samples_written, "seed {seed}");
            assert_eq!(got.rejected_count(), want.rejected_count(), "seed {seed}");
        }
        assert_same(&db, &mem, &tenants, &format!("seed {seed} live"));
        db.close().unwrap();
        drop(db);
        let db = open(dir.path(), &o);
        assert!(db.replay_figures().samples > 0);
        assert_same(&db, &mem, &tenants, &format!("seed {seed} replayed"));
    }
}

#[test]
fn out_of_order_window_and_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), &opts());
    let t = Tenant::anonymous();
    let l = labels(&[("__name__", "up")]);
    let out = db.append(&t, batch(&l, &[(10 * HOUR, 1.0)])).unwrap();
    assert_eq!(out.samples_written, 1);
    // Within the 1h window: accepted and merged on read.
    let out = db
        .append(&t, batch(&l, &[(10 * HOUR - 30 * 60_000, 2.0)]))
        .unwrap();
    assert_eq!((out.samples_written, out.rejected_count()), (1, 0));
    // Beyond it: refused as out of order.
    let out = db
        .append(&t, batch(&l, &[(10 * HOUR - HOUR - 1, 3.0)]))
        .unwrap();
    assert_eq!(out.samples_written, 0);
    assert_eq!(out.rejected[0].0, RejectReason::OutOfOrder);
    // Same timestamp and value: accepted silently; another value: refused.
    let out = db
        .append(
            &t,
            batch(&l, &[(10 * HOUR, 1.0), (10 * HOUR - 30 * 60_000, 2.0)]),
        )
        .unwrap();
    assert_eq!((out.samples_written, out.rejected_count()), (2, 0));
    let out = db.append(&t, batch(&l, &[(10 * HOUR, 5.0)])).unwrap();
    assert_eq!(
        out.rejected,
        vec![(RejectReason::DuplicateTimestamp, 1, l.clone())]
    );
    // Stale markers are stored bit for bit.
    db.append(
        &t,
        batch(&l, &[(10 * HOUR + 1, f64::from_bits(STALE_NAN_BITS))]),
    )
    .unwrap();
    let got = all(&db, &t);
    let ts: Vec<i64> = got[0].samples.iter().map(|s| s.t).collect();
    assert_eq!(ts, vec![10 * HOUR - 30 * 60_000, 10 * HOUR, 10 * HOUR + 1]);
    assert_eq!(got[0].samples[2].v.to_bits(), STALE_NAN_BITS);
    db.close().unwrap();
    drop(db);
    let db = open(dir.path(), &opts());
    let again = all(&db, &t);
    assert_eq!(bits(&again[0].samples), bits(&got[0].samples));
}

fn bits(s: &[Sample]) -> Vec<(i64, u64)> {
    s.iter().map(|s| (s.t, s.v.to_bits())).collect()
}

#[test]
fn series_limit_refuses_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts();
    o.max_series_per_tenant = 2;
    let db = open(dir.path(), &o);
    let t = Tenant::anonymous();
    let (a, b, c) = (
        labels(&[("__name__", "a")]),
        labels(&[("__name__", "b")]),
        labels(&[("__name__", "c")]),
    );
    db.append(&t, batch(&a, &[(1, 1.0)])).unwrap();
    let mut two = batch(&b, &[(1, 1.0)]);
    two.series.extend(batch(&c, &[(1, 1.0)]).series);
    let err = db.append(&t, two).unwrap_err();
    assert!(matches!(err, StorageError::LimitExceeded(_)));
    assert!(err.to_string().contains("max_series_per_tenant"), "{err}");
    assert_eq!(
        all(&db, &t).len(),
        1,
        "nothing of the refused batch is stored"
    );
    // Existing series still take samples, one more series fits, and other
    // tenants have their own budget.
    db.append(&t, batch(&a, &[(2, 1.0)])).unwrap();
    db.append(&t, batch(&b, &[(2, 1.0)])).unwrap();
    db.append(&Tenant::new("other").unwrap(), batch(&c, &[(2, 1.0)]))
        .unwrap();
}

#[test]
fn exemplars_and_metadata_survive_restart_and_the_ring_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts();
    o.max_exemplars_per_tenant = 3;
    let db = open(dir.path(), &o);
    let t = Tenant::anonymous();
    let l = labels(&[("__name__", "req_total")]);
    for i in 0..5 {
        let mut b = batch(&l, &[(i, 1.0)]);
        b.series[0].exemplars.push(Exemplar {
            labels: labels(&[("trace_id", &format!("t{i}"))]),
            value: i as f64,
            t: i,
        });
        b.metadata.push(MetricMetadata {
            metric: "req_total".into(),
            kind: MetricType::Counter,
            help: format!("help {i}"),
            unit: String::new(),
        });
        assert_eq!(db.append(&t, b).unwrap().exemplars_written, 1);
    }
    let ex = db.exemplars(&t, &[], 0, 100).unwrap();
    assert_eq!(ex.len(), 1);
    let ts: Vec<i64> = ex[0].1.iter().map(|e| e.t).collect();
    assert_eq!(ts, vec![2, 3, 4]);
    assert_eq!(
        db.metadata(&t, Some("req_total")).unwrap()[0].help,
        "help 4"
    );
    db.close().unwrap();
    drop(db);
    let db = open(dir.path(), &o);
    assert_eq!(db.exemplars(&t, &[], 0, 100).unwrap(), ex);
    assert_eq!(db.metadata(&t, None).unwrap()[0].help, "help 4");
}

#[test]
fn concurrent_writers_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(open(dir.path(), &opts()));
    let t = Tenant::anonymous();
    std::thread::scope(|s| {
        for w in 0..4 {
            let (db, t) = (db.clone(), t.clone());
            s.spawn(move || {
                for i in 0..50 {
                    let l = labels(&[
                        ("__name__", "x"),
                        ("w", &w.to_string()),
                        ("i", &(i % 5).to_string()),
                    ]);
                    db.append(&t, batch(&l, &[(i, 1.0)])).unwrap();
                }
            });
        }
    });
    let count = |db: &Tsdb| all(db, &t).iter().map(|s| s.samples.len()).sum::<usize>();
    assert_eq!(count(&db), 200);
    db.close().unwrap();
    assert!(db
        .append(&t, batch(&labels(&[("a", "b")]), &[(1, 1.0)]))
        .is_err());
    drop(db);
    let db = open(dir.path(), &opts());
    assert_eq!(count(&db), 200);
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && std::fs::metadata(p).is_ok_and(|m| m.len() > 0))
        .collect();
    v.sort();
    v
}

#[test]
fn torn_tail_is_tolerated_and_mid_wal_corruption_names_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    let t = Tenant::anonymous();
    let l = labels(&[("__name__", "up")]);
    let db = open(dir.path(), &opts());
    db.append(&t, batch(&l, &[(1, 1.0)])).unwrap();
    db.close().unwrap();
    drop(db);
    let db = open(dir.path(), &opts());
    db.append(&t, batch(&l, &[(2, 1.0)])).unwrap();
    db.close().unwrap();
    drop(db);
    // A torn record at the end of the last segment.
    let segs = segments(dir.path());
    assert!(segs.len() >= 2, "{segs:?}");
    let last = segs.last().unwrap();
    let mut bytes = std::fs::read(last).unwrap();
    bytes.extend_from_slice(&[0x55; 7]);
    std::fs::write(last, &bytes).unwrap();
    let db = open(dir.path(), &opts());
    assert_eq!(all(&db, &t)[0].samples.len(), 2);
    db.close().unwrap();
    drop(db);
    // A damaged record in an earlier segment is an error naming it.
    let first = &segments(dir.path())[0];
    let mut bytes = std::fs::read(first).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0xff;
    std::fs::write(first, &bytes).unwrap();
    let err = Tsdb::open(dir.path(), opts())
        .err()
        .expect("corruption detected");
    assert!(err.to_string().contains("segment"), "{err}");
}

/// Head append and WAL replay throughput (run with
/// `cargo test --release --lib storage::tsdb::tests::figures -- --ignored --nocapture`).
#[test]
#[ignore]
fn figures() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts();
    let db = open(dir.path(), &o);
    let t = Tenant::anonymous();
    let (series, rounds) = (10_000, 120);
    let ls: Vec<Labels> = (0..series)
        .map(|i| {
            labels(&[
                ("__name__", "bench"),
                ("instance", &format!("i{}", i % 100)),
                ("id", &i.to_string()),
            ])
        })
        .collect();
    let start = std::time::Instant::now();
    for r in 0..rounds {
        let b = WriteBatch {
            series: ls
                .iter()
                .map(|l| SeriesWrite {
                    labels: l.clone(),
                    samples: vec![Sample::new(r * 15_000, r as f64)],
                    exemplars: vec![],
                })
                .collect(),
            metadata: vec![],
        };
        db.append(&t, b).unwrap();
    }
    let n = (series * rounds as usize) as f64;
    let el = start.elapsed().as_secs_f64();
    println!(
        "head append: {n} samples in {el:.2}s = {:.0} samples/s (fsync off)",
        n / el
    );
    db.close().unwrap();
    drop(db);
    let start = std::time::Instant::now();
    let db = open(dir.path(), &o);
    let el = start.elapsed().as_secs_f64();
    println!(
        "replay: {} samples in {el:.2}s = {:.0} samples/s",
        db.replay_figures().samples,
        db.replay_figures().samples as f64 / el
    );
}

// ---- flush into blocks ----

/// Writes the same batches to both stores, checking the outcomes agree.
fn write_both(db: &Tsdb, mem: &MemMetrics, batches: Vec<(Tenant, WriteBatch)>) {
    for (t, b) in batches {
        let got = db.append(&t, b.clone()).unwrap();
        let want = mem.append(&t, b).unwrap();
        assert_eq!(got.samples_written, want.samples_written);
        assert_eq!(got.rejected_count(), want.rejected_count());
    }
}

fn head_samples(db: &Tsdb) -> usize {
    db.all_heads()
        .iter()
        .map(|h| {
            h.select(&[], i64::MIN, i64::MAX)
                .iter()
                .map(|s| s.samples.len())
                .sum::<usize>()
        })
        .sum()
}

#[test]
fn admin_flush_moves_everything_into_blocks_and_reads_merge_overlaps() {
    let tenants = [Tenant::anonymous(), Tenant::new("team-b").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts();
    o.block_duration_ms = 10 * 60_000;
    let mem = MemMetrics::new();
    let db = open(dir.path(), &o);
    let batches = random_batches(7, 200);
    let (first, second) = batches.split_at(120);
    write_both(&db, &mem, first.to_vec());
    db.flush().unwrap();
    assert_eq!(head_samples(&db), 0, "the admin flush empties the head");
    assert!(!db.blocks.blocks(&tenants[0]).is_empty());
    assert_same(&db, &mem, &tenants, "after flush");
    // Later writes overlap the flushed ranges (re-sends, out-of-order
    // samples): reads merge head and overlapping blocks.
    write_both(&db, &mem, second.to_vec());
    write_both(&db, &mem, first[100..].to_vec());
    assert_same(&db, &mem, &tenants, "head over blocks");
    db.flush().unwrap();
    assert_same(&db, &mem, &tenants, "overlapping blocks");
    let wal_before = dir_bytes(&dir.path().join("wal"));
    db.close().unwrap();
    drop(db);
    // Restart: nothing replayed twice, nothing lost.
    let db = open(dir.path(), &o);
    assert_eq!(head_samples(&db), 0);
    assert_same(&db, &mem, &tenants, "after restart");
    assert!(
        wal_before < 64 << 10,
        "the checkpoint truncated the wal: {wal_before} bytes"
    );
}

#[test]
fn periodic_flush_writes_the_oldest_range_and_restart_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts();
    let db = open(dir.path(), &o);
    let t = Tenant::anonymous();
    let mem = MemMetrics::new();
    let ls: Vec<Labels> = (0..20)
        .map(|i| labels(&[("__name__", "m"), ("i", &i.to_string())]))
        .collect();
    // 5h of samples every minute: the head spans more than 1.5 blocks.
    for minute in 0..300 {
        let b = WriteBatch {
            series: ls
                .iter()
                .map(|l| SeriesWrite {
                    labels: l.clone(),
                    samples: vec![Sample::new(minute * 60_000, minute as f64)],
                    exemplars: vec![],
                })
                .collect(),
            metadata: vec![],
        };
        write_both(&db, &mem, vec![(t.clone(), b)]);
    }
    assert_eq!(db.flush_due().unwrap(), 1);
    let metas = db.blocks.blocks(&t);
    assert_eq!((metas[0].min_t, metas[0].max_t), (0, 2 * HOUR));
    assert_eq!(head_samples(&db), 20 * 180);
    assert_same(&db, &mem, std::slice::from_ref(&t), "after periodic flush");
    // A new series before the flushed range is refused as too old.
    let out = db
        .append(&t, batch(&labels(&[("__name__", "late")]), &[(HOUR, 1.0)]))
        .unwrap();
    assert_eq!(out.rejected[0].0, RejectReason::TooOld);
    db.close().unwrap();
    drop(db);
    let db = open(dir.path(), &o);
    assert_eq!(
        head_samples(&db),
        20 * 180,
        "the checkpoint kept the unflushed samples only"
    );
    assert_same(&db, &mem, std::slice::from_ref(&t), "after restart");
    // Maintenance past the retention deletes the block; the head stays.
    db.maintain(2 * HOUR + o.retention_ms + 1).unwrap();
    assert!(db.blocks.blocks(&t).is_empty());
    assert!(db.select(&t, &[], 0, 2 * HOUR - 1).unwrap().is_empty());
    assert_eq!(head_samples(&db), 20 * 180);
}

#[test]
fn a_head_grown_past_the_flush_span_wakes_maintenance_before_its_interval() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts();
    o.maintenance_interval = std::time::Duration::from_secs(3600);
    // Samples near 1970: retention would delete their block at once.
    o.retention_ms = 0;
    let db = Arc::new(open(dir.path(), &o));
    db.start_maintenance();
    let t = Tenant::anonymous();
    let l = labels(&[("__name__", "m")]);
    // 4 h at one sample a minute, in one go: more than 1.5 blocks.
    let samples: Vec<(i64, f64)> = (0..240).map(|m| (m * 60_000, m as f64)).collect();
    db.append(&t, batch(&l, &samples)).unwrap();
    let start = std::time::Instant::now();
    while db.blocks.blocks(&t).is_empty() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "no flush although the head spans 4 h"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let metas = db.blocks.blocks(&t);
    assert_eq!((metas[0].min_t, metas[0].max_t), (0, 2 * HOUR));
    assert_eq!(all(&*db, &t)[0].samples.len(), 240);
    // A refused sample (older than the flushed range) widens the known span
    // past the flush span; the woken maintenance flushes nothing and shrinks
    // the span back to what the head holds, so appends stop waking it.
    let out = db
        .append(&t, batch(&l, &[(10 * 60_000, 0.5), (240 * 60_000, 240.0)]))
        .unwrap();
    assert_eq!(out.rejected[0].0, RejectReason::OutOfOrder);
    let head = db.head(&t).unwrap();
    let start = std::time::Instant::now();
    while head.span_ms() != 120 * 60_000 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "span stays {} ms",
            head.span_ms()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(db.blocks.blocks(&t).len(), 1);
    db.close().unwrap();
}

/// 20 series at one sample a minute over 5 h, and one (`short`) that stops
/// at 2.5 h, written to both stores: the head spans more than 1.5 blocks.
fn write_five_hours(db: &Tsdb, mem: &MemMetrics, t: &Tenant) {
    let short = labels(&[("__name__", "short")]);
    for minute in 0..300 {
        let mut series: Vec<SeriesWrite> = (0..20)
            .map(|i| SeriesWrite {
                labels: labels(&[("__name__", "m"), ("i", &i.to_string())]),
                samples: vec![Sample::new(minute * 60_000, minute as f64)],
                exemplars: vec![],
            })
            .collect();
        if minute < 150 {
            series.push(SeriesWrite {
                labels: short.clone(),
                samples: vec![Sample::new(minute * 60_000, 1.0)],
                exemplars: vec![],
            });
        }
        let b = WriteBatch {
            series,
            metadata: vec![],
        };
        write_both(db, mem, vec![(t.clone(), b)]);
    }
}

fn assert_no_overlapping_blocks(db: &Tsdb, t: &Tenant) {
    let metas = db.blocks.blocks(t);
    for (i, a) in metas.iter().enumerate() {
        for b in &metas[i + 1..] {
            assert!(
                a.max_t <= b.min_t || b.max_t <= a.min_t,
                "blocks overlap: [{}, {}) and [{}, {})",
                a.min_t,
                a.max_t,
                b.min_t,
                b.max_t
            );
        }
    }
}

#[test]
fn restart_after_a_flush_replays_only_the_head_and_keeps_refusing_older_samples() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts();
    let t = Tenant::anonymous();
    let mem = MemMetrics::new();
    let db = open(dir.path(), &o);
    write_five_hours(&db, &mem, &t);
    assert_eq!(db.flush_due().unwrap(), 1);
    db.close().unwrap();
    drop(db);
    let db = open(dir.path(), &o);
    let held = 20 * 180 + 30;
    assert_eq!(db.replay_figures().samples, held as u64);
    assert_eq!(head_samples(&db), held);
    assert_same(&db, &mem, std::slice::from_ref(&t), "after restart");
    // A late sample before the flushed range (a new series, so in order):
    // refused before the restart, refused after it too, so no later flush
    // writes a second block over [0, 2h).
    let out = db
        .append(&t, batch(&labels(&[("__name__", "late")]), &[(HOUR, 1.0)]))
        .unwrap();
    assert_eq!(
        out.rejected.first().map(|r| r.0),
        Some(RejectReason::TooOld)
    );
    db.flush().unwrap();
    assert_no_overlapping_blocks(&db, &t);
    assert_same(
        &db,
        &mem,
        std::slice::from_ref(&t),
        "after the second flush",
    );
}

#[test]
fn a_crash_between_flush_and_wal_truncation_replays_only_what_blocks_lack() {
    use super::flush::{CrashPoint, CRASH_AT};
    let t = Tenant::anonymous();
    let o = opts();
    for point in [
        CrashPoint::BeforeTruncationRecord,
        CrashPoint::AfterTruncationRecord,
        CrashPoint::AfterCut,
        CrashPoint::BeforeWalTruncation,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mem = MemMetrics::new();
        let db = open(dir.path(), &o);
        write_five_hours(&db, &mem, &t);
        CRASH_AT.set(Some(point));
        let crashed = db.flush_due();
        CRASH_AT.set(None);
        assert!(crashed.is_err(), "{point:?}: {crashed:?}");
        assert_eq!(db.blocks.blocks(&t).len(), 1, "{point:?}");
        drop(db); // a crash: no close
        let db = open(dir.path(), &o);
        let what = format!("{point:?}: after the crash");
        assert_same(&db, &mem, std::slice::from_ref(&t), &what);
        let head_lo = db.head(&t).and_then(|h| h.time_bounds()).unwrap().0;
        if point == CrashPoint::BeforeTruncationRecord {
            // The one window left: the range is replayed and flushed again.
            assert_eq!(head_lo, 0, "{point:?}");
        } else {
            assert_eq!(head_lo, 2 * HOUR, "{point:?}: the flushed range came back");
            // Refused as before the crash.
            let late = batch(&labels(&[("__name__", "late")]), &[(HOUR, 1.0)]);
            let out = db.append(&t, late).unwrap();
            assert_eq!(
                out.rejected.first().map(|r| r.0),
                Some(RejectReason::TooOld)
            );
        }
        // An out-of-order sample into the flushed range, acknowledged after
        // the restart, survives another crash (it follows the truncation).
        let ooo = batch(
            &labels(&[("__name__", "short")]),
            &[(105 * 60_000 + 30_000, 2.0)],
        );
        write_both(&db, &mem, vec![(t.clone(), ooo)]);
        drop(db);
        let db = open(dir.path(), &o);
        let what = format!("{point:?}: after the second crash");
        assert_same(&db, &mem, std::slice::from_ref(&t), &what);
        db.close().unwrap();
    }
}

/// Scrape-like data (hosts whose series share jittered timestamps, so
/// blocks write shared timestamp columns; decimal counters and gauges plus
/// high-entropy floats) spread over compacted blocks, a level-1 block and
/// the head, with re-sent samples overlapping a flushed range: every select
/// (ranges straddling chunk, block and head bounds) answers like the
/// reference, bit for bit.
#[test]
fn scrape_like_reads_across_blocks_and_head_match_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts();
    o.retention_ms = 0;
    let db = open(dir.path(), &o);
    let mem = MemMetrics::new();
    let t = Tenant::anonymous();
    let mut rng = StdRng::seed_from_u64(11);
    let series: Vec<(usize, Labels)> = (0..5)
        .flat_map(|host| {
            (0..8).map(move |k| {
                let name = ["node_cpu", "node_mem", "node_load"][k % 3];
                let l = labels(&[
                    ("__name__", name),
                    ("instance", &format!("h{host}")),
                    ("k", &k.to_string()),
                ]);
                (host, l)
            })
        })
        .collect();
    let mut counters = vec![0.0f64; series.len()];
    let minutes = 10 * 60;
    for m in (0..minutes).step_by(30) {
        let mut b = WriteBatch::default();
        for (i, (host, l)) in series.iter().enumerate() {
            let samples = (m..m + 30)
                .map(|m| {
                    // One jitter per host and scrape: the host's series share it.
                    let jitter = (*host as i64 * 31 + m as i64 * 17) % 5;
                    let ts = m as i64 * 60_000 + *host as i64 * 7_000 + jitter;
                    counters[i] += rng.random_range(0..500) as f64;
                    let v = match i % 4 {
                        3 => (ts as f64).sqrt().sin(),
                        2 => counters[i] / 100.0,
                        _ => counters[i],
                    };
                    Sample::new(ts, v)
                })
                .collect();
            b.series.push(SeriesWrite {
                labels: l.clone(),
                samples,
                exemplars: vec![],
            });
        }
        write_both(&db, &mem, vec![(t.clone(), b)]);
        while db.flush_due().unwrap() > 0 {}
        db.blocks.compact().unwrap();
    }
    assert!(
        db.blocks.blocks(&t).len() >= 2,
        "{:?}",
        db.blocks.blocks(&t)
    );
    assert!(head_samples(&db) > 0);
    // Re-sent samples of a flushed range land in the head over blocks.
    let resend: Vec<(Tenant, WriteBatch)> = mem
        .select(&t, &[], 3 * HOUR, 3 * HOUR + 20 * 60_000)
        .unwrap()
        .into_iter()
        .map(|s| {
            let b = WriteBatch {
                series: vec![SeriesWrite {
                    labels: s.labels,
                    samples: s.samples,
                    exemplars: vec![],
                }],
                metadata: vec![],
            };
            (t.clone(), b)
        })
        .collect();
    for (t, b) in resend {
        db.append(&t, b).unwrap();
    }
    let m = |op, n: &str, v: &str| Matcher::new(op, n, v).unwrap();
    let cases = [
        vec![],
        vec![m(MatchOp::Equal, "instance", "h2")],
        vec![
            m(MatchOp::Equal, "__name__", "node_cpu"),
            m(MatchOp::Regex, "instance", "h[13]"),
        ],
        vec![m(MatchOp::NotEqual, "k", "3")],
    ];
    let ranges = [
        (i64::MIN, i64::MAX),
        (0, 2 * HOUR - 1),
        (HOUR + 1_234, 7 * HOUR + 56_789),
        (3 * HOUR - 30_000, 3 * HOUR + 30_000),
        (9 * HOUR, 10 * HOUR),
        (5 * HOUR + 10, 5 * HOUR + 11),
    ];
    for ms in &cases {
        for &(lo, hi) in &ranges {
            let (a, b) = (
                db.select(&t, ms, lo, hi).unwrap(),
                mem.select(&t, ms, lo, hi).unwrap(),
            );
            let ctx = format!("{ms:?} [{lo}, {hi}]");
            assert_eq!(a.len(), b.len(), "{ctx}");
            for (x, y) in a.iter().zip(&b) {
                assert_eq!(x.labels, y.labels, "{ctx}");
                assert_eq!(bits(&x.samples), bits(&y.samples), "{ctx} {}", x.labels);
            }
        }
    }
}
