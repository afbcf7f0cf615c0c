//! Log store benchmark: generates realistic logs (20 services, four levels;
//! plain, JSON and logfmt bodies with request and user ids), pushes them
//! and prints ingest MB/s and lines/s per core, bytes on disk per raw byte
//! beside `zstd -3` of the raw file, time from acknowledgement to
//! searchable, needle latency over 100 rare terms beside `grep -F` over the
//! raw file, and `sum by (level) (count_over_time({env="prod"}[1m]))` over
//! the whole range.
//!
//! Two modes (`STRATA_BENCH_MODE`):
//! - `http` (default): a `strata serve` release binary is spawned on
//!   127.0.0.1 with its data in the bench directory; concurrent pushers send
//!   snappy protobuf `PushRequest`s to `/loki/api/v1/push`, `POST /flush`
//!   writes the last head, and every query goes through
//!   `/loki/api/v1/query_range`. CPU is the server process's own
//!   (`/proc/<pid>/stat`), from the first push to the end of the flush;
//!   blocks read come from its `/metrics`. Timestamps end two days ago (the
//!   server refuses entries older than a week).
//! - `inprocess`: `LogWriter::push` on a `LogStore` in this process (fsync
//!   on) and the LogQL engine called directly; CPU is this process's.
//!
//! `cargo bench --bench logs`. Env: `STRATA_BENCH_BYTES` [2147483648] raw
//! bytes to generate, `STRATA_BENCH_DIR` [a temporary directory],
//! `STRATA_BENCH_THREADS` [4 over HTTP, 2 in process] pushing threads,
//! `STRATA_BENCH_BARE_TERMS` [100] bare-id needles (token-bounded: 100).

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use strata::logs::{LogEntry, PushStream};
use strata::model::Labels;

mod sink;
use sink::{HttpSink, InProcess, Sink};

const SERVICES: usize = 20;
const LEVELS: [&str; 4] = ["debug", "info", "warn", "error"];
const PATHS: [&str; 6] = [
    "/api/v1/users",
    "/api/v1/orders",
    "/checkout",
    "/login",
    "/healthz",
    "/api/v2/search",
];
const WORDS: [&str; 10] = [
    "connection",
    "timeout",
    "retrying",
    "cache",
    "miss",
    "upstream",
    "payload",
    "validated",
    "scheduled",
    "flushed",
];
/// Lines per generated batch (one push).
const BATCH_LINES: usize = 4000;
/// Nanoseconds between consecutive lines.
const STEP_NS: i64 = 2_000_000;
/// First timestamp of the in-process mode (2025-12-01).
const BASE_NS: i64 = 1_764_547_200_000_000_000;
const MINUTE: i64 = 60_000_000_000;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

struct Gen {
    rng: SmallRng,
    ts: i64,
    rare: Vec<String>,
    per_level: [u64; 4],
}

impl Gen {
    /// One line of a service: its level index and body.
    fn line(&mut self, service: usize) -> (usize, String) {
        let r = &mut self.rng;
        let level = match r.random_range(0..100) {
            0..=14 => 0,
            15..=84 => 1,
            85..=96 => 2,
            _ => 3,
        };
        let req: u64 = r.random();
        let req = format!("{req:016x}");
        let user = r.random_range(0..200_000);
        let path = PATHS[r.random_range(0..PATHS.len())];
        let ms = r.random_range(1..3000);
        let status = [200, 200, 200, 201, 404, 500][r.random_range(0..6)];
        let w1 = WORDS[r.random_range(0..WORDS.len())];
        let w2 = WORDS[r.random_range(0..WORDS.len())];
        let body = match service % 3 {
            0 => format!(
                "{{\"level\":\"{}\",\"msg\":\"{w1} {w2}\",\"request_id\":\"{req}\",\"user_id\":\"u{user}\",\"path\":\"{path}\",\"status\":{status},\"duration_ms\":{ms}}}",
                LEVELS[level]
            ),
            1 => format!(
                "level={} msg=\"{w1} {w2}\" request_id={req} user_id=u{user} method=GET path={path} status={status} duration={ms}ms",
                LEVELS[level]
            ),
            _ => format!(
                "{} [{}] {w1} {w2} for user u{user} on {path} status {status} request_id={req} in {ms}ms",
                LEVELS[level].to_uppercase(),
                service
            ),
        };
        // Rare terms come from the logfmt and plain bodies, where the id is
        // written `request_id=<id> ` (the token-bounded query form below).
        if service % 3 != 0 && r.random_range(0..20_000) == 0 && self.rare.len() < 1000 {
            self.rare.push(req);
        }
        (level, body)
    }

    /// One push: BATCH_LINES lines over all services, grouped per stream.
    fn batch(&mut self, raw: &mut Vec<u8>) -> Vec<PushStream> {
        let mut streams: Vec<Vec<LogEntry>> = vec![Vec::new(); SERVICES * LEVELS.len()];
        for _ in 0..BATCH_LINES {
            let service = self.rng.random_range(0..SERVICES);
            let (level, body) = self.line(service);
            self.per_level[level] += 1;
            raw.extend_from_slice(body.as_bytes());
            raw.push(b'\n');
            self.ts += STEP_NS;
            streams[service * LEVELS.len() + level].push(LogEntry::new(self.ts, body));
        }
        streams
            .into_iter()
            .enumerate()
            .filter(|(_, e)| !e.is_empty())
            .map(|(i, entries)| PushStream {
                labels: Labels::from_pairs([
                    ("env", "prod".to_string()),
                    ("level", LEVELS[i % LEVELS.len()].to_string()),
                    ("service", format!("svc-{:02}", i / LEVELS.len())),
                ]),
                entries,
            })
            .collect()
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let http = match std::env::var("STRATA_BENCH_MODE").as_deref() {
        Err(_) | Ok("http") => true,
        Ok("inprocess") => false,
        Ok(other) => panic!("STRATA_BENCH_MODE={other}: expected http or inprocess"),
    };
    let target = env_u64("STRATA_BENCH_BYTES", 2 << 30);
    let threads = env_u64("STRATA_BENCH_THREADS", if http { 4 } else { 2 }) as usize;
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = std::env::var("STRATA_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| tmp.path().to_path_buf());
    std::fs::create_dir_all(&root).unwrap();
    let raw_path = root.join("raw.log");
    let store_dir = root.join("store");
    let _ = std::fs::remove_dir_all(&store_dir);
    // Over HTTP the data must be younger than the server's
    // reject_old_samples_max_age (7d): it ends about two days ago.
    let base = if http {
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
        (now - 2 * 86_400_000_000_000) / MINUTE * MINUTE - (target as i64 / 100) * STEP_NS
    } else {
        BASE_NS
    };
    let sink: Box<dyn Sink> = if http {
        Box::new(HttpSink::start(&root))
    } else {
        Box::new(InProcess::open(&store_dir))
    };
    let mut raw_file = std::io::BufWriter::new(std::fs::File::create(&raw_path).unwrap());
    let mut gen = Gen {
        rng: SmallRng::seed_from_u64(42),
        ts: base,
        rare: Vec::new(),
        per_level: [0; 4],
    };
    println!(
        "logs bench: {} MB raw, {threads} pushing threads, {}",
        target >> 20,
        sink.describe()
    );
    let (mut raw_bytes, mut lines) = (0u64, 0u64);
    let (mut push_wall, mut push_cpu, mut client_cpu) = (0f64, 0f64, 0f64);
    let phase_cpu0 = sink.cpu_seconds();
    let writing0 = sink.segment_write_cpu_seconds();
    while raw_bytes < target {
        // Generate a round of batches (not timed), then push them in parallel.
        let mut raw = Vec::with_capacity(64 << 20);
        let round: Vec<Vec<PushStream>> = (0..threads * 8).map(|_| gen.batch(&mut raw)).collect();
        raw_file.write_all(&raw).unwrap();
        raw_bytes += raw.len() as u64;
        lines += (round.len() * BATCH_LINES) as u64;
        let (c0, own0) = (sink.cpu_seconds(), sink::own_cpu_seconds());
        push_wall += sink.push(round, threads).as_secs_f64();
        client_cpu += sink::own_cpu_seconds() - own0;
        let w1 = Instant::now();
        sink.after_round(gen.ts);
        push_wall += w1.elapsed().as_secs_f64();
        push_cpu += sink.cpu_seconds() - c0;
    }
    raw_file.flush().unwrap();
    drop(raw_file);
    let (c0, w0) = (sink.cpu_seconds(), Instant::now());
    sink.flush();
    let flush_wall = w0.elapsed().as_secs_f64();
    push_wall += flush_wall;
    push_cpu += sink.cpu_seconds() - c0;
    if sink.cpu_over_whole_phase() {
        push_cpu = sink.cpu_seconds() - phase_cpu0;
    }
    let mb = raw_bytes as f64 / 1e6;
    println!("raw: {mb:.0} MB, {lines} lines");
    println!(
        "ingest (push + segment writing, final flush {flush_wall:.1} s): {:.1} MB/s wall, {:.1} MB/s per core ({:.0} lines/s per core; {push_cpu:.1} CPU-s over {push_wall:.1} s{})",
        mb / push_wall,
        mb / push_cpu,
        lines as f64 / push_cpu,
        if sink.cpu_over_whole_phase() {
            "; server CPU over the whole ingest phase"
        } else {
            ""
        }
    );
    let writing = sink.segment_write_cpu_seconds() - writing0;
    println!(
        "ingest breakdown: segment writing (blocks, token filters, full-text index) {writing:.1} CPU-s = {:.1} MB/s per core, push path the other {:.1} CPU-s = {:.1} MB/s per core{}",
        mb / writing,
        push_cpu - writing,
        mb / (push_cpu - writing),
        if sink.cpu_over_whole_phase() {
            format!(
                "; bench pushers (encoding bodies, HTTP clients) {client_cpu:.1} CPU-s of this process"
            )
        } else {
            String::new()
        }
    );

    let disk = sink.disk_bytes();
    let t = Instant::now();
    let zstd_out = Command::new("sh")
        .arg("-c")
        .arg(format!("zstd -3 -T1 -c {} | wc -c", raw_path.display()))
        .output()
        .expect("zstd");
    let zstd_bytes: u64 = String::from_utf8_lossy(&zstd_out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    println!(
        "disk: {:.1} MB = {:.3} bytes per raw byte ({:.1}:1); zstd -3: {:.1} MB = {:.3} ({:.1}:1, {:.1} s)",
        disk as f64 / 1e6,
        disk as f64 / raw_bytes as f64,
        raw_bytes as f64 / disk as f64,
        zstd_bytes as f64 / 1e6,
        zstd_bytes as f64 / raw_bytes as f64,
        raw_bytes as f64 / zstd_bytes.max(1) as f64,
        t.elapsed().as_secs_f64()
    );

    // Acknowledgement to searchable: a fresh unique line, read back at once.
    let end = gen.ts + 1_000_000_000;
    let mut ack = Vec::new();
    for i in 0..20 {
        let needle = format!("fresh{i}needle");
        gen.ts += STEP_NS;
        sink.push(
            vec![vec![PushStream {
                labels: Labels::from_pairs([
                    ("env", "prod"),
                    ("level", "info"),
                    ("service", "svc-00"),
                ]),
                entries: vec![LogEntry::new(gen.ts, format!("level=info msg={needle}"))],
            }]],
            1,
        );
        let t = Instant::now();
        let q = format!("{{service=\"svc-00\"}} |= \"{needle}\"");
        while sink.query_logs(&q, gen.ts - MINUTE, end, 10).entries == 0 {
            assert!(t.elapsed() < Duration::from_secs(30), "not searchable");
        }
        ack.push(t.elapsed());
    }
    ack.sort();
    println!(
        "ack to searchable: p50 {:?}, max {:?} (20 fresh lines)",
        pct(&ack, 0.5),
        pct(&ack, 1.0)
    );

    // Needles: 100 rare request ids.
    let mut rng = SmallRng::seed_from_u64(7);
    let picks: Vec<String> = (0..100)
        .map(|_| gen.rare[rng.random_range(0..gen.rare.len())].clone())
        .collect();
    let mut needle_p = Vec::new();
    for (label, bounded) in [
        ("bare id, |= \"<id>\"", false),
        ("token-bounded, |= \"=<id> \"", true),
    ] {
        let blocks0 = sink.blocks_read();
        let mut lat = Vec::new();
        // A bare id may scan every block: fewer terms unless asked.
        let n = if bounded {
            picks.len()
        } else {
            env_u64("STRATA_BENCH_BARE_TERMS", 100).min(picks.len() as u64) as usize
        };
        for id in &picks[..n] {
            // Bounded on both sides by separators, the id is a whole token
            // the block filters can rule out.
            let q = if bounded {
                format!("{{env=\"prod\"}} |= \"={id} \"")
            } else {
                format!("{{env=\"prod\"}} |= \"{id}\"")
            };
            let t = Instant::now();
            let a = sink.query_logs(&q, base, end, 100);
            lat.push(t.elapsed());
            assert!(a.entries > 0, "needle {id} not found");
            if let Some(w) = a.warning {
                println!("  (needle {id}: {w})");
            }
        }
        let mut slow: Vec<(usize, Duration)> = lat.iter().copied().enumerate().collect();
        slow.sort_by_key(|s| std::cmp::Reverse(s.1));
        println!(
            "  slowest needles (query number, latency): {:?}",
            &slow[..3.min(n)]
        );
        lat.sort();
        println!(
            "needle ({label}, {n} terms): p50 {:?}, p99 {:?}, {:.2} blocks read per query",
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            (sink.blocks_read() - blocks0) as f64 / n as f64
        );
        needle_p.push((label, pct(&lat, 0.5), pct(&lat, 0.99)));
    }
    let mut grep = Vec::new();
    for id in picks.iter().take(5) {
        let t = Instant::now();
        let st = Command::new("grep")
            .arg("-F")
            .arg("-c")
            .arg(id)
            .arg(&raw_path)
            .output()
            .expect("grep");
        assert!(st.status.success());
        grep.push(t.elapsed());
    }
    grep.sort();
    let g = pct(&grep, 0.5);
    println!("grep -F over the raw file: p50 {g:?} (5 of the same ids)");
    for (label, p50, p99) in needle_p {
        println!(
            "  needle {label}: {:.1}x faster than grep -F at p50, {:.1}x at p99",
            g.as_secs_f64() / p50.as_secs_f64(),
            g.as_secs_f64() / p99.as_secs_f64()
        );
    }

    let t = Instant::now();
    let q = "sum by (level) (count_over_time({env=\"prod\"}[1m]))";
    let sums = sink.metric_sums(
        q,
        base + MINUTE,
        base + (gen.ts - base + MINUTE - 1) / MINUTE * MINUTE,
        MINUTE,
    );
    let took = t.elapsed();
    let mut totals: Vec<String> = sums.iter().map(|(l, v)| format!("{l}={v}")).collect();
    totals.sort();
    println!(
        "{q} over {:.1} h at 1m steps: {took:?}; per-level sums of the steps {} (generated {:?}, plus 20 fresh info lines)",
        (gen.ts - base) as f64 / 3.6e12,
        totals.join(" "),
        gen.per_level
    );
    let (streams, chunks, entries) = sink.index_stats(base - 1, end);
    println!("index stats: {streams} streams, {chunks} blocks, {entries} entries");

    let store = sink.close();
    let b = store.disk_breakdown().expect("disk breakdown");
    println!(
        "disk breakdown ({} segments, {} blocks, {} entries; MB, bytes per raw byte, bytes per line):",
        b.segments, b.blocks, b.entries
    );
    for (part, n) in &b.parts {
        println!(
            "  {part:<36} {:>9.1} {:>7.4} {:>7.2}",
            *n as f64 / 1e6,
            *n as f64 / raw_bytes as f64,
            *n as f64 / lines as f64
        );
    }
    println!(
        "  token filters: {:.1} bits per distinct token (~{:.2} tokens per line), {:.2}% false positives over {} absent-token probes",
        b.filter_bits as f64 / b.filter_tokens.max(1.0),
        b.filter_tokens / lines as f64,
        100.0 * b.filter_false_positives as f64 / b.filter_probes.max(1) as f64,
        b.filter_probes
    );
    if b.rare_tokens > 0 {
        let f = b
            .parts
            .get("full-text (hot): rare-token function")
            .copied()
            .unwrap_or(0);
        println!(
            "  rare-token function: {:.1} bits per rare token ({:.2} rare tokens per line)",
            f as f64 * 8.0 / b.rare_tokens as f64,
            b.rare_tokens as f64 / lines as f64
        );
    }
    store.close().unwrap();
}
