//! Block store tests: round trips against the in-memory reference store,
//! matchers, compaction, retention, corruption and the fixtures of every
//! format version.

use std::path::{Path, PathBuf};

use super::*;
use crate::model::{MatchOp, Sample};
use crate::storage::mem::MemMetrics;
use crate::storage::{MetricsWriter, SeriesWrite, WriteBatch};

const H: i64 = 3_600_000;
const T0: i64 = 1_700_000_000_000 / (6 * H) * (6 * H);

fn opts() -> BlockStoreOptions {
    BlockStoreOptions {
        retention_ms: 15 * 24 * H,
        block_duration_ms: 2 * H,
        max_block_duration_ms: 36 * H,
    }
}

fn tenant() -> Tenant {
    Tenant::new("team-a").unwrap()
}

/// Deterministic xorshift.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Node-exporter-like series over `[from, to)` every 15s: CPU seconds
/// counters (2 decimals), integer byte counters, gauges with few values,
/// and a float gauge that needs XOR.
fn node_series(instances: usize, from: i64, to: i64, seed: u64) -> Vec<SeriesSamples> {
    let mut rng = Rng(seed | 1);
    let mut out = Vec::new();
    for inst in 0..instances {
        let instance = format!("host-{inst:03}:9100");
        let mut push = |name: &str, extra: &[(&str, &str)], kind: u8, rng: &mut Rng| {
            let mut pairs = vec![
                ("__name__", name.to_string()),
                ("instance", instance.clone()),
                ("job", "node".to_string()),
            ];
            pairs.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
            let labels = Labels::from_pairs(pairs);
            let mut v = (rng.next() % 100_000) as f64;
            let mut samples = Vec::new();
            let mut t = from;
            while t < to {
                v = match kind {
                    0 => ((v * 100.0).round() + (1400 + rng.next() % 100) as f64) / 100.0,
                    1 => v + (rng.next() % 50_000) as f64,
                    2 => [0.0, 1.0, 4.0][(rng.next() % 97 / 95) as usize],
                    _ => (rng.next() % 1_000_000) as f64 / 7.0,
                };
                samples.push(Sample::new(t, v));
                t += 15_000;
            }
            out.push(SeriesSamples {
                labels,
                samples,
                histograms: vec![],
            });
        };
        for cpu in 0..2 {
            for mode in ["idle", "system", "user"] {
                push(
                    "node_cpu_seconds_total",
                    &[("cpu", &cpu.to_string()), ("mode", mode)],
                    0,
                    &mut rng,
                );
            }
        }
        for dev in ["eth0", "lo"] {
            push(
                "node_network_receive_bytes_total",
                &[("device", dev)],
                1,
                &mut rng,
            );
        }
        push("node_procs_running", &[], 2, &mut rng);
        push("node_load1", &[], 3, &mut rng);
    }
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    out
}

fn reference(series: &[SeriesSamples]) -> MemMetrics {
    let mem = MemMetrics::new();
    let batch = WriteBatch {
        series: series
            .iter()
            .map(|s| SeriesWrite {
                labels: s.labels.clone(),
                samples: s.samples.clone(),
                exemplars: vec![],
            })
            .collect(),
        metadata: vec![],
    };
    mem.append(&tenant(), batch).unwrap();
    mem
}

fn write(store: &BlockStore, series: &[SeriesSamples], min_t: i64, max_t: i64) -> BlockMeta {
    store
        .write_block(&tenant(), min_t, max_t, &mut series.iter().cloned())
        .unwrap()
        .unwrap()
}

/// Writes `n` consecutive 2h blocks from `T0` of `instances` hosts each;
/// returns everything written.
fn write_2h_blocks(store: &BlockStore, n: i64, instances: usize, seed: u64) -> Vec<SeriesSamples> {
    let mut all = Vec::new();
    for i in 0..n {
        let (a, b) = (T0 + i * 2 * H, T0 + (i + 1) * 2 * H);
        let data = node_series(instances, a, b, seed + i as u64);
        write(store, &data, a, b);
        all.extend(data);
    }
    all
}

fn m(op: MatchOp, name: &str, value: &str) -> Matcher {
    Matcher::new(op, name, value).unwrap()
}

fn matcher_table() -> Vec<Vec<Matcher>> {
    use MatchOp::*;
    vec![
        vec![],
        vec![m(Equal, "__name__", "node_load1")],
        vec![
            m(Equal, "__name__", "node_cpu_seconds_total"),
            m(Equal, "mode", "idle"),
        ],
        vec![m(Regex, "mode", "idle|user")],
        vec![m(Regex, "__name__", "node_.*"), m(NotEqual, "mode", "idle")],
        vec![m(Regex, "__name__", "node_n.+")],
        vec![m(Regex, "instance", ".*-00[13]:.*")],
        vec![m(NotRegex, "mode", "idle|system"), m(Equal, "job", "node")],
        vec![m(Equal, "device", "")],
        vec![m(NotEqual, "device", "")],
        vec![m(Regex, "device", "")],
        vec![m(NotRegex, "cpu", ".+")],
        vec![m(Equal, "__name__", "does_not_exist")],
        vec![m(Equal, "nolabel", "x")],
        vec![m(NotEqual, "nolabel", "x"), m(Equal, "cpu", "1")],
        vec![m(Regex, "mode", "(?i)IDLE")],
    ]
}

/// Every answer of the block store equals the reference store's.
fn assert_same_answers(store: &BlockStore, mem: &MemMetrics, ranges: &[(i64, i64)]) {
    let t = tenant();
    for ms in matcher_table() {
        for &(a, b) in ranges {
            let ctx = format!("{ms:?} [{a}, {b}]");
            assert_eq!(
                store.select(&t, &ms, a, b).unwrap(),
                mem.select(&t, &ms, a, b).unwrap(),
                "select {ctx}"
            );
            assert_eq!(
                store.series(&t, &ms, a, b).unwrap(),
                mem.series(&t, &ms, a, b).unwrap(),
                "series {ctx}"
            );
            if !ms.is_empty() {
                assert_eq!(
                    store.label_names(&t, &ms, a, b).unwrap(),
                    mem.label_names(&t, &ms, a, b).unwrap(),
                    "names {ctx}"
                );
                assert_eq!(
                    store.label_values(&t, "mode", &ms, a, b).unwrap(),
                    mem.label_values(&t, "mode", &ms, a, b).unwrap(),
                    "values {ctx}"
                );
            }
        }
    }
}

#[test]
fn round_trip_and_matchers_agree_with_reference() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlockStore::open(dir.path(), opts()).unwrap();
    let data = node_series(4, T0, T0 + 2 * H, 7);
    let meta = write(&store, &data, T0, T0 + 2 * H);
    assert_eq!(
        (meta.min_t, meta.max_t, meta.level, meta.version),
        (T0, T0 + 2 * H, 1, FORMAT_VERSION)
    );
    assert_eq!(meta.num_series, data.len() as u64);
    assert_eq!(
        meta.num_samples,
        data.iter().map(|s| s.samples.len() as u64).sum::<u64>()
    );
    assert_eq!(meta.sources, vec![meta.id.clone()]);
    let mem = reference(&data);
    let ranges = [
        (i64::MIN, i64::MAX),
        (T0 + 7_000, T0 + 45 * 60_000),
        (T0 + H + 1, T0 + H + 2),
        (T0 - 10, T0),
    ];
    assert_same_answers(&store, &mem, &ranges);
    let all = store.select(&tenant(), &[], i64::MIN, i64::MAX).unwrap();
    assert_eq!(all, data);
    // No matchers: dictionary answers.
    let names = store.label_names(&tenant(), &[], T0, T0 + 1).unwrap();
    assert_eq!(
        names,
        vec!["__name__", "cpu", "device", "instance", "job", "mode"]
    );
    assert_eq!(
        store.label_values(&tenant(), "mode", &[], T0, T0).unwrap(),
        vec!["idle", "system", "user"]
    );
    assert!(store
        .label_values(&tenant(), "mode", &[], T0 + 2 * H, T0 + 3 * H)
        .unwrap()
        .is_empty());
    // Other tenants see nothing.
    let other = Tenant::new("other").unwrap();
    assert!(store
        .select(&other, &[], i64::MIN, i64::MAX)
        .unwrap()
        .is_empty());

    // Reopening finds the same block and answers.
    drop(store);
    let store = BlockStore::open(dir.path(), opts()).unwrap();
    assert_eq!(store.blocks(&tenant()), vec![meta]);
    assert_eq!(store.tenants(), vec![tenant()]);
    assert_same_answers(&store, &mem, &ranges);
    assert!(store.disk_bytes() > 0);
}

#[test]
fn empty_input_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlockStore::open(dir.path(), opts()).unwrap();
    let empty = SeriesSamples {
        labels: Labels::from_pairs([("a", "b")]),
        samples: vec![],
        histograms: vec![],
    };
    assert!(store
        .write_block(&tenant(), 0, 10, &mut [empty].into_iter())
        .unwrap()
        .is_none());
    assert!(store.blocks(&tenant()).is_empty());
    assert_eq!(
        std::fs::read_dir(dir.path().join("team-a"))
            .unwrap()
            .count(),
        0,
        "no leftovers"
    );
}

#[test]
fn compaction_merges_levels_and_keeps_answers() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlockStore::open(dir.path(), opts()).unwrap();
    let mut all = Vec::new();
    let mut ids = Vec::new();
    for i in 0..4 {
        let (a, b) = (T0 + i * 2 * H, T0 + (i + 1) * 2 * H);
        // Series come and go between blocks.
        let data = node_series(2 + i as usize % 2, a, b, 11 + i as u64);
        ids.push(write(&store, &data, a, b).id);
        all.extend(data);
    }
    let mem = reference(&all);
    let ranges = [
        (i64::MIN, i64::MAX),
        (T0 + H, T0 + 5 * H),
        (T0 + 6 * H - 15_000, T0 + 6 * H),
    ];
    assert_same_answers(&store, &mem, &ranges);

    // Keep copies of the sources to simulate a crash after the compacted
    // block became visible but before the sources were deleted.
    let saved = tempfile::tempdir().unwrap();
    for id in &ids[..3] {
        copy_dir(&dir.path().join("team-a").join(id), &saved.path().join(id));
    }
    assert_eq!(store.compact().unwrap(), 1);
    let blocks = store.blocks(&tenant());
    assert_eq!(blocks.len(), 2, "{blocks:?}");
    assert_eq!(
        (blocks[0].min_t, blocks[0].max_t, blocks[0].level),
        (T0, T0 + 6 * H, 2)
    );
    let mut want_sources = ids[..3].to_vec();
    want_sources.sort();
    assert_eq!(blocks[0].sources, want_sources);
    assert_eq!(blocks[1].id, ids[3]);
    assert_same_answers(&store, &mem, &ranges);
    let on_disk = std::fs::read_dir(dir.path().join("team-a"))
        .unwrap()
        .count();
    assert_eq!(on_disk, 2, "sources deleted");
    assert_eq!(
        store.compact().unwrap(),
        0,
        "nothing more until the range is complete"
    );

    // Survives a restart, and a crash that left the sources behind: they
    // are recognised as superseded and removed.
    drop(store);
    for id in &ids[..3] {
        copy_dir(&saved.path().join(id), &dir.path().join("team-a").join(id));
    }
    let store = BlockStore::open(dir.path(), opts()).unwrap();
    assert_eq!(store.blocks(&tenant()), blocks);
    assert_same_answers(&store, &mem, &ranges);
    let on_disk = std::fs::read_dir(dir.path().join("team-a"))
        .unwrap()
        .count();
    assert_eq!(on_disk, 2, "superseded sources deleted at open");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in std::fs::read_dir(from).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
    }
}

#[test]
fn compaction_reaches_the_configured_maximum() {
    let dir = tempfile::tempdir().unwrap();
    let o = BlockStoreOptions {
        max_block_duration_ms: 18 * H,
        ..opts()
    };
    let store = BlockStore::open(dir.path(), o).unwrap();
    let all = write_2h_blocks(&store, 10, 1, 3);
    store.compact().unwrap();
    let spans: Vec<(i64, u32)> = store
        .blocks(&tenant())
        .iter()
        .map(|b| ((b.max_t - b.min_t) / H, b.level))
        .collect();
    // 18h (9 x 2h via 3 x 6h) and the last 2h block waiting for its range.
    let aligned = T0 % (18 * H) == 0;
    if aligned {
        assert_eq!(spans, vec![(18, 3), (2, 1)]);
    }
    assert!(spans.iter().all(|&(h, _)| h <= 18));
    let mem = reference(&all);
    assert_same_answers(
        &store,
        &mem,
        &[(i64::MIN, i64::MAX), (T0 + 17 * H, T0 + 19 * H)],
    );
}

#[test]
fn overlapping_blocks_are_deduplicated_and_merged_vertically() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlockStore::open(dir.path(), opts()).unwrap();
    let a = node_series(2, T0, T0 + 2 * H, 5);
    // Same series, overlapping time, same values at the shared timestamps,
    // plus one series only in the second block.
    let b: Vec<SeriesSamples> = a
        .iter()
        .map(|s| SeriesSamples {
            labels: s.labels.clone(),
            samples: s.samples[200..].to_vec(),
            histograms: vec![],
        })
        .chain(
            node_series(1, T0 + H, T0 + 3 * H, 99)
                .into_iter()
                .take(1)
                .map(|mut s| {
                    s.labels = Labels::from_pairs([("__name__", "late"), ("x", "1")]);
                    s
                }),
        )
        .collect();
    write(&store, &a, T0, T0 + 2 * H);
    write(&store, &b, T0 + 200 * 15_000, T0 + 3 * H);
    let mut combined = a.clone();
    combined.extend(b.iter().cloned());
    let mem = reference(&combined);
    let ranges = [(i64::MIN, i64::MAX), (T0 + H, T0 + 2 * H)];
    assert_same_answers(&store, &mem, &ranges);
    assert_eq!(store.compact().unwrap(), 1);
    let blocks = store.blocks(&tenant());
    assert_eq!(blocks.len(), 1);
    assert_eq!((blocks[0].min_t, blocks[0].max_t), (T0, T0 + 3 * H));
    assert_eq!(
        blocks[0].num_samples,
        mem.select(&tenant(), &[], i64::MIN, i64::MAX)
            .unwrap()
            .iter()
            .map(|s| s.samples.len() as u64)
            .sum::<u64>()
    );
    assert_same_answers(&store, &mem, &ranges);
}

#[test]
fn retention_deletes_whole_old_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlockStore::open(
        dir.path(),
        BlockStoreOptions {
            retention_ms: 4 * H,
            ..opts()
        },
    )
    .unwrap();
    write_2h_blocks(&store, 3, 1, 1);
    let before = store.disk_bytes();
    assert_eq!(store.apply_retention(T0 + 6 * H).unwrap(), 1);
    assert_eq!(store.blocks(&tenant())[0].min_t, T0 + 2 * H);
    assert!(store.disk_bytes() < before);
    assert!(store
        .select(&tenant(), &[], T0, T0 + 2 * H - 1)
        .unwrap()
        .is_empty());
    assert_eq!(store.apply_retention(T0 + 6 * H).unwrap(), 0);
    assert_eq!(store.apply_retention(T0 + 10 * H).unwrap(), 2);
    assert!(store.tenants().is_empty());
    assert_eq!(
        std::fs::read_dir(dir.path().join("team-a"))
            .unwrap()
            .count(),
        0
    );
}

fn only_block_dir(root: &Path) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("team-a"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1);
    dirs.pop().unwrap()
}

#[test]
fn every_flipped_index_byte_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlockStore::open(dir.path(), opts()).unwrap();
    write(
        &store,
        &node_series(1, T0, T0 + 10 * 60_000, 2),
        T0,
        T0 + 2 * H,
    );
    drop(store);
    let bdir = only_block_dir(dir.path());
    let index = bdir.join("index");
    let good = std::fs::read(&index).unwrap();
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x10;
        std::fs::write(&index, &bad).unwrap();
        match dir::Block::open(&bdir) {
            Err(StorageError::Corrupt { path, .. }) => assert!(path.ends_with("index"), "{path}"),
            Err(e) => panic!("byte {i}: unexpected error {e}"),
            Ok(_) => panic!("byte {i}: flip not detected"),
        }
    }
    // Truncation too, and the store skips the block instead of failing.
    std::fs::write(&index, &good[..good.len() / 2]).unwrap();
    let store = BlockStore::open(dir.path(), opts()).unwrap();
    assert!(store.blocks(&tenant()).is_empty());
    std::fs::write(&index, &good).unwrap();
    std::fs::write(bdir.join("meta.json"), b"{not json").unwrap();
    assert!(BlockStore::open(dir.path(), opts())
        .unwrap()
        .blocks(&tenant())
        .is_empty());
}

#[test]
fn flipped_chunk_byte_is_a_corrupt_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlockStore::open(dir.path(), opts()).unwrap();
    write(
        &store,
        &node_series(1, T0, T0 + 20 * 60_000, 2),
        T0,
        T0 + 2 * H,
    );
    drop(store);
    let chunks = only_block_dir(dir.path()).join("chunks");
    let good = std::fs::read(&chunks).unwrap();
    for i in 5..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x01;
        std::fs::write(&chunks, &bad).unwrap();
        let store = BlockStore::open(dir.path(), opts()).unwrap();
        match store.select(&tenant(), &[], i64::MIN, i64::MAX) {
            Err(StorageError::Corrupt { path, reason }) => {
                assert!(path.ends_with("chunks"), "{path}: {reason}")
            }
            Err(e) => panic!("byte {i}: unexpected error {e}"),
            Ok(_) => panic!("byte {i}: flip not detected"),
        }
    }
}

#[test]
fn unfinished_writes_are_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("team-a").join(".tmp-01ABC");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join("chunks"), b"partial").unwrap();
    let store = BlockStore::open(dir.path(), opts()).unwrap();
    assert!(!tmp.exists());
    assert!(store.tenants().is_empty());
}

#[test]
fn block_ids_sort_by_creation_time() {
    let a = dir::new_block_id();
    std::thread::sleep(std::time::Duration::from_millis(2));
    let b = dir::new_block_id();
    assert_eq!(a.len(), 26);
    assert!(a < b, "{a} {b}");
}

/// Fixture blocks written by format version `v`.
fn fixture_dir(v: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("testdata/blocks/v{v}"))
}

/// The fixture's content: small, with a counter, a gauge, a stale marker and
/// a label value with non-ASCII characters.
fn fixture_series() -> Vec<SeriesSamples> {
    let t = 1_600_000_000_000i64;
    let mut v = vec![
        SeriesSamples {
            labels: Labels::from_pairs([
                ("__name__", "http_requests_total"),
                ("code", "200"),
                ("path", "/ä"),
            ]),
            samples: (0..300)
                .map(|i| Sample::new(t + i * 15_000, (i * 7) as f64))
                .collect(),
            histograms: vec![],
        },
        SeriesSamples {
            histograms: vec![],
            labels: Labels::from_pairs([("__name__", "temperature"), ("room", "kitchen")]),
            samples: (0..10)
                .map(|i| {
                    Sample::new(
                        t + i * 60_000 + i % 3,
                        if i == 9 {
                            f64::from_bits(crate::model::STALE_NAN_BITS)
                        } else {
                            20.5 + i as f64 / 3.0
                        },
                    )
                })
                .collect(),
        },
    ];
    v.sort_by(|a, b| a.labels.cmp(&b.labels));
    v
}

#[test]
#[ignore = "writes testdata/blocks/v<FORMAT_VERSION>; run only for a new format version"]
fn regenerate_fixture() {
    if std::env::var_os("STRATA_REGENERATE_FIXTURES").is_none() {
        println!("set STRATA_REGENERATE_FIXTURES=1 to write testdata/blocks/v{FORMAT_VERSION}");
        return;
    }
    let root = fixture_dir(FORMAT_VERSION);
    let _ = std::fs::remove_dir_all(&root);
    let store = BlockStore::open(&root, opts()).unwrap();
    let t = 1_600_000_000_000i64;
    write(&store, &fixture_series(), t, t + 2 * H);
}

#[test]
fn fixtures_of_every_version_still_read() {
    for v in 1..=FORMAT_VERSION {
        fixture_reads(v);
    }
}

fn fixture_reads(version: u32) {
    // Open a copy: opening may clean up the directory.
    let dir = tempfile::tempdir().unwrap();
    let src = fixture_dir(version).join("team-a");
    let dst = dir.path().join("team-a");
    for b in std::fs::read_dir(&src).unwrap() {
        let b = b.unwrap();
        copy_dir(&b.path(), &dst.join(b.file_name()));
    }
    let store = BlockStore::open(dir.path(), opts()).unwrap();
    let blocks = store.blocks(&tenant());
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].version, version);
    assert_eq!((blocks[0].num_series, blocks[0].num_samples), (2, 310));
    let got = store.select(&tenant(), &[], i64::MIN, i64::MAX).unwrap();
    let want = fixture_series();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.labels, w.labels);
        let bits = |s: &[Sample]| s.iter().map(|s| (s.t, s.v.to_bits())).collect::<Vec<_>>();
        assert_eq!(bits(&g.samples), bits(&w.samples));
    }
    let sel = store
        .select(
            &tenant(),
            &[m(MatchOp::Regex, "path", "/.*")],
            i64::MIN,
            i64::MAX,
        )
        .unwrap();
    assert_eq!(sel.len(), 1);
}

/// A node-exporter-like host over `[from, to)` every 15s, 100 series in
/// the proportions of a real `/metrics` page: 30 constants (sizes, info,
/// error counters at 0), 25 slow integer counters (0-20 per scrape, mostly
/// 0), 15 CPU-seconds counters (2 decimals, USER_HZ; idle near 15 s per
/// scrape, other modes random small), 10 busy byte counters (uniformly
/// 0-100000 per scrape), 10 memory gauges (4 KiB pages, changing in a third
/// of the scrapes), 5 load-like gauges (2 decimals, random walk), 5 random
/// collector durations (0-50 ms in nanoseconds / 1e9, as Go computes them).
fn realistic_host(host: usize, from: i64, to: i64, rng: &mut Rng) -> Vec<SeriesSamples> {
    let mut out = Vec::new();
    for k in 0..100usize {
        let labels = Labels::from_pairs([
            ("__name__", format!("node_metric_{k:03}")),
            ("instance", format!("host-{host:04}:9100")),
            ("job", "node".to_string()),
        ]);
        let mut v: f64 = match k {
            0..=29 => (rng.next() % 1_000_000_000) as f64,
            _ => (rng.next() % 1_000_000) as f64,
        };
        let mut samples = Vec::new();
        let mut t = from;
        while t < to {
            v = match k {
                0..=29 => v,
                30..=54 => {
                    v + if rng.next() % 4 == 0 {
                        (rng.next() % 21) as f64
                    } else {
                        0.0
                    }
                }
                // Idle ticks near 1500 per 15 s, other modes a few.
                55..=69 if k % 5 == 0 => {
                    ((v * 100.0).round() + (1450 + rng.next() % 50) as f64) / 100.0
                }
                55..=69 => {
                    ((v * 100.0).round() + (rng.next() % (k as u64 % 5 * 40)) as f64) / 100.0
                }
                70..=79 => v + (rng.next() % 100_000) as f64,
                80..=89 => {
                    if rng.next() % 3 == 0 {
                        (v + ((rng.next() % 201) as f64 - 100.0) * 4096.0).max(0.0)
                    } else {
                        v
                    }
                }
                90..=94 => ((v * 100.0).round() + (rng.next() % 11) as f64 - 5.0).max(0.0) / 100.0,
                // Go's Duration.Seconds(): nanoseconds / 1e9.
                _ => (rng.next() % 50_000_000) as f64 / 1.0e9,
            };
            samples.push(Sample::new(t, v));
            t += 15_000;
        }
        out.push(SeriesSamples {
            labels,
            samples,
            histograms: vec![],
        });
    }
    out
}

/// Bytes per sample (all block files) for realistic mixes.
#[test]
#[ignore = "size report; run with --ignored --nocapture"]
fn size_report() {
    let mut rng = Rng(42);
    let mut hosts = |n: usize, hours: i64| -> Vec<SeriesSamples> {
        let mut v: Vec<SeriesSamples> = (0..n)
            .flat_map(|h| realistic_host(h, T0, T0 + hours * H, &mut rng))
            .collect();
        v.sort_by(|a, b| a.labels.cmp(&b.labels));
        v
    };
    let mut mixes: Vec<(&str, Vec<SeriesSamples>)> = vec![
        ("realistic hosts, 2h", hosts(20, 2)),
        ("realistic hosts, 6h", hosts(10, 6)),
    ];
    let realistic = hosts(10, 2);
    let kinds: [(&str, std::ops::RangeInclusive<usize>); 7] = [
        ("  constants", 0..=29),
        ("  slow integer counters", 30..=54),
        ("  cpu seconds", 55..=69),
        ("  busy byte counters", 70..=79),
        ("  memory pages", 80..=89),
        ("  load-like", 90..=94),
        ("  random durations", 95..=99),
    ];
    for (name, ks) in kinds {
        let part = realistic
            .iter()
            .filter(|s| {
                let k = s
                    .labels
                    .metric_name()
                    .and_then(|n| n.get(12..))
                    .and_then(|k| k.parse().ok());
                k.is_some_and(|k| ks.contains(&k))
            })
            .cloned()
            .collect();
        mixes.push((name, part));
    }
    let busy = |metric: &str, seed| {
        node_series(50, T0, T0 + 2 * H, seed)
            .into_iter()
            .filter(|s| s.labels.metric_name() == Some(metric))
            .collect::<Vec<_>>()
    };
    mixes.push(("busy test mix, 2h", node_series(50, T0, T0 + 2 * H, 1)));
    mixes.push((
        "  random byte counters",
        busy("node_network_receive_bytes_total", 3),
    ));
    mixes.push(("  random cpu seconds", busy("node_cpu_seconds_total", 4)));
    mixes.push(("  few-valued gauges", busy("node_procs_running", 5)));
    mixes.push(("  random float gauges", busy("node_load1", 6)));
    for (name, data) in mixes {
        // For comparison: the same samples as Gorilla XOR chunks of 120
        // samples (Prometheus's layout), chunk bytes only.
        let xor_bytes: usize = data
            .iter()
            .flat_map(|s| s.samples.chunks(120))
            .map(|c| {
                let mut x = crate::storage::tsdb::chunk::XorChunk::new();
                c.iter().for_each(|s| assert!(x.append(s.t, s.v)));
                x.byte_len()
            })
            .sum();
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open(dir.path(), opts()).unwrap();
        let meta = store
            .write_block(&tenant(), T0, T0 + 6 * H, &mut data.into_iter())
            .unwrap()
            .unwrap();
        let bytes = store.disk_bytes();
        println!(
            "{name:<26} series={:<5} samples={:<8} bytes={:<8} bytes/sample={:.3} (gorilla chunks alone {:.3})",
            meta.num_series,
            meta.num_samples,
            bytes,
            bytes as f64 / meta.num_samples as f64,
            xor_bytes as f64 / meta.num_samples as f64
        );
    }
}

#[test]
fn compaction_plans() {
    assert_eq!(
        compact::ranges(2 * H, 36 * H),
        vec![2 * H, 6 * H, 18 * H, 36 * H]
    );
    assert_eq!(compact::ranges(2 * H, 2 * H), vec![2 * H]);
    assert_eq!(compact::ranges(2 * H, 744 * H).last(), Some(&(744 * H)));
    let meta = |a: i64, b: i64| BlockMeta {
        id: format!("{a}-{b}"),
        tenant: "t".into(),
        min_t: a * H,
        max_t: b * H,
        num_series: 1,
        num_samples: 1,
        num_chunks: 1,
        level: 1,
        sources: vec![],
        version: 1,
    };
    let r = compact::ranges(2 * H, 36 * H);
    // (blocks sorted by min_t, expected pick)
    let table: Vec<(Vec<BlockMeta>, Option<Vec<usize>>)> = vec![
        (vec![], None),
        (vec![meta(0, 2)], None),
        (vec![meta(0, 2), meta(2, 4)], None),
        (
            vec![meta(0, 2), meta(2, 4), meta(4, 6)],
            Some(vec![0, 1, 2]),
        ),
        (vec![meta(0, 2), meta(2, 4), meta(6, 8)], Some(vec![0, 1])),
        (vec![meta(0, 2), meta(1, 3), meta(6, 8)], Some(vec![0, 1])),
        (vec![meta(0, 6), meta(4, 6), meta(6, 8)], Some(vec![0, 1])),
        (vec![meta(0, 6), meta(6, 12), meta(12, 14)], None),
        (
            vec![meta(0, 6), meta(6, 12), meta(12, 18)],
            Some(vec![0, 1, 2]),
        ),
        (vec![meta(0, 18), meta(18, 36)], Some(vec![0, 1])),
        (vec![meta(0, 36), meta(36, 72)], None),
        (
            vec![meta(-4, -2), meta(-2, 0), meta(0, 2)],
            Some(vec![0, 1]),
        ),
    ];
    for (metas, want) in table {
        assert_eq!(compact::plan(&metas, &r), want, "{metas:?}");
    }
}

#[test]
fn reads_stay_correct_during_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(BlockStore::open(dir.path(), opts()).unwrap());
    let all = write_2h_blocks(&store, 6, 2, 21);
    let mem = reference(&all);
    let want = mem.select(&tenant(), &[], T0, T0 + 12 * H).unwrap();
    let want_after = want.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || n == 0 {
                assert_eq!(store.select(&tenant(), &[], T0, T0 + 12 * H).unwrap(), want);
                n += 1;
            }
            n
        })
    };
    // Two 6h blocks, merged further when the 18h/36h grid allows it.
    assert!(store.compact().unwrap() >= 2);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    assert!(store.blocks(&tenant()).len() <= 2);
    assert_eq!(
        store.select(&tenant(), &[], T0, T0 + 12 * H).unwrap(),
        want_after
    );
}

#[test]
fn a_corrupt_block_stops_only_its_tenants_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlockStore::open(dir.path(), opts()).unwrap();
    let other = Tenant::new("other").unwrap();
    for i in 0..3 {
        let (a, b) = (T0 + i * 2 * H, T0 + (i + 1) * 2 * H);
        for t in [tenant(), other.clone()] {
            store
                .write_block(&t, a, b, &mut node_series(1, a, b, 5).into_iter())
                .unwrap();
        }
    }
    drop(store);
    let victim = std::fs::read_dir(dir.path().join("team-a"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let chunks = victim.join("chunks");
    let mut bytes = std::fs::read(&chunks).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&chunks, &bytes).unwrap();
    let store = BlockStore::open(dir.path(), opts()).unwrap();
    match store.compact() {
        Err(StorageError::Corrupt { path, .. }) => assert!(path.ends_with("chunks"), "{path}"),
        other => panic!("expected a corrupt chunk error, got {other:?}"),
    }
    assert_eq!(store.blocks(&tenant()).len(), 3, "nothing replaced");
    assert_eq!(store.blocks(&other).len(), 1, "the other tenant compacted");
    let leftovers = std::fs::read_dir(dir.path().join("team-a"))
        .unwrap()
        .count();
    assert_eq!(leftovers, 3, "no temporary directory left behind");
}

/// The block the size reports read (`$STRATA_BLOCK_DIR`).
fn report_block_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("STRATA_BLOCK_DIR").map(PathBuf::from);
    if dir.is_none() {
        eprintln!("STRATA_BLOCK_DIR is not set");
    }
    dir
}

/// Section sizes of the index of the block in `$STRATA_BLOCK_DIR`.
#[test]
#[ignore = "size report of an existing block; set STRATA_BLOCK_DIR"]
fn index_section_report() {
    let Some(dir) = report_block_dir() else {
        return;
    };
    let index = fs::read(dir.join("index")).unwrap();
    let chunks = fs::metadata(dir.join("chunks")).unwrap().len();
    let toc = &index[index.len() - 88..];
    let meta: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("meta.json")).unwrap()).unwrap();
    let samples = meta["stats"]["numSamples"]
        .as_f64()
        .or(meta["num_samples"].as_f64())
        .unwrap_or(f64::NAN);
    println!("meta: {meta}");
    for (i, name) in ["symbols", "series", "terms", "postings"]
        .iter()
        .enumerate()
    {
        let len = u64::from_be_bytes(toc[i * 20 + 8..i * 20 + 16].try_into().unwrap());
        println!(
            "{name:<10} {len:>10} bytes {:.4} B/sample",
            len as f64 / samples
        );
    }
    println!(
        "chunks     {chunks:>10} bytes {:.4} B/sample",
        chunks as f64 / samples
    );
}

/// Chunk bytes per sample by metric name for the block in `$STRATA_BLOCK_DIR`
/// re-encoded by this build (timestamp columns are charged to the series
/// that writes them first).
#[test]
#[ignore = "size report of an existing block; set STRATA_BLOCK_DIR"]
fn chunk_report() {
    let Some(dir) = report_block_dir() else {
        return;
    };
    let b = dir::Block::open(&dir).unwrap();
    let mut w = chunks::ChunkWriter::new(b"STCK\x06");
    // metric -> (series, samples, bytes, chunks per first encoding byte)
    let mut by: BTreeMap<String, (usize, usize, usize, BTreeMap<u8, usize>)> = BTreeMap::new();
    let mut added = Vec::new();
    for r in b.all_series() {
        let (labels, samples) = r.unwrap();
        let name = labels.metric_name().unwrap_or("").to_string();
        let before = w.buffered();
        added.push((name.clone(), w.add(&samples)));
        let row = by.entry(name).or_default();
        row.0 += 1;
        row.1 += samples.len();
        row.2 += w.buffered() - before;
    }
    let file = w.take();
    println!(
        "page framing {} bytes",
        file.len() - by.values().map(|r| r.2).sum::<usize>()
    );
    for (name, a) in added {
        let kind = chunks::read_paged(&file, a.r).unwrap()[0];
        *by.get_mut(&name).unwrap().3.entry(kind).or_default() += 1;
    }
    let mut rows: Vec<_> = by.into_iter().collect();
    rows.sort_by_key(|(_, r)| std::cmp::Reverse(r.2));
    let total: usize = rows.iter().map(|(_, r)| r.1).sum();
    let bytes: usize = rows.iter().map(|(_, r)| r.2).sum();
    println!("total {:.4} B/sample", bytes as f64 / total as f64);
    for (name, r) in rows {
        println!(
            "{name:<45} series={:<6} B/sample={:.3} share={:.3} encodings {:?}",
            r.0,
            r.2 as f64 / r.1 as f64,
            r.2 as f64 / total as f64,
            r.3
        );
    }
}

/// Rewrites the block in `$STRATA_BLOCK_DIR` with this build's format and
/// prints both sizes.
#[test]
#[ignore = "size report of an existing block; set STRATA_BLOCK_DIR"]
fn rewrite_report() {
    let Some(dir) = report_block_dir() else {
        return;
    };
    let b = dir::Block::open(&dir).unwrap();
    let series: Vec<SeriesSamples> = b
        .all_series()
        .map(|r| {
            let (labels, samples) = r.unwrap();
            SeriesSamples {
                labels,
                samples,
                histograms: vec![],
            }
        })
        .collect();
    let out = tempfile::tempdir().unwrap();
    let store = BlockStore::open(out.path(), opts()).unwrap();
    let meta = store
        .write_block(
            &tenant(),
            b.meta.min_t,
            b.meta.max_t,
            &mut series.into_iter(),
        )
        .unwrap()
        .unwrap();
    let nb = store
        .blocks
        .read()
        .values()
        .flatten()
        .next()
        .unwrap()
        .dir
        .clone();
    for (name, d) in [("before", dir), ("after", nb)] {
        let size =
            |f: &str| fs::metadata(d.join(f)).unwrap().len() as f64 / meta.num_samples as f64;
        println!(
            "{name:<7} index {:.4} B/sample, chunks {:.4} B/sample",
            size("index"),
            size("chunks")
        );
    }
}
