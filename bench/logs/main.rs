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
//! `STRATA_BENCH_BARE_TERMS` [100] bare-id needles (token-bounded: 100),
//! `STRATA_BENCH_LEVELS` [1] in process: the Loki ingester's
//! `detected_level` discovery runs on every entry before the store and its
//! CPU is reported (0: off),
//! `STRATA_BENCH_GEN` [requests] the generator: `requests` (each request's
//! id on the 1-16 lines it logs across 1-4 services, skewed users and
//! paths, log-normal durations) or `uniform` (every field of every line
//! independent and uniform, the generator before 2026-12-02: a worst case
//! for compression).

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

/// Which generator writes the lines (`STRATA_BENCH_GEN`).
#[derive(Clone, Copy, PartialEq)]
enum GenKind {
    /// `requests` (default): lines come from requests. Each request has a
    /// random 64-bit id and passes through 1-4 services (a gateway, then
    /// others), each logging 1-4 lines carrying the id; requests overlap,
    /// so their lines interleave across streams. User ids are skewed
    /// (a few users make most requests), paths are weighted, durations
    /// log-normal (median 40 ms), status and level follow the outcome.
    Requests,
    /// `uniform`: every field of every line drawn independently and
    /// uniformly (a fresh request id per line, users uniform over 200k,
    /// durations uniform 1-3000 ms): an entropy worst case.
    Uniform,
}

/// A request in flight: what its remaining lines share.
struct Request {
    id: String,
    user: u32,
    path: usize,
    status: u16,
    /// The services still to log, in order (the first is a gateway).
    hops: Vec<usize>,
    /// Lines left for the current hop (the first hop's count included).
    left: u8,
    /// Whether the current hop has logged its first line.
    started: bool,
    /// Whether a line with `request_id=<id> ` (token-bounded) was written.
    bounded: bool,
}

struct Gen {
    rng: SmallRng,
    ts: i64,
    rare: Vec<String>,
    per_level: [u64; 4],
    kind: GenKind,
    inflight: Vec<Request>,
}

/// Requests in flight at once (their lines interleave).
const INFLIGHT: usize = 64;
/// Services 0..GATEWAYS receive requests first.
const GATEWAYS: usize = 4;

impl Gen {
    fn new(ts: i64, kind: GenKind) -> Gen {
        Gen {
            rng: SmallRng::seed_from_u64(42),
            ts,
            rare: Vec::new(),
            per_level: [0; 4],
            kind,
            inflight: Vec::new(),
        }
    }

    /// One line: its service, level index and body.
    fn line(&mut self) -> (usize, usize, String) {
        match self.kind {
            GenKind::Uniform => {
                let service = self.rng.random_range(0..SERVICES);
                let (level, body) = self.uniform_line(service);
                (service, level, body)
            }
            GenKind::Requests => self.request_line(),
        }
    }

    /// One line of a service with every field drawn uniformly.
    fn uniform_line(&mut self, service: usize) -> (usize, String) {
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

    fn new_request(&mut self) -> Request {
        let r = &mut self.rng;
        let id = format!("{:016x}", r.random::<u64>());
        // Skewed users: the cube of a uniform draw puts half the requests
        // on the first eighth of the users.
        let u: f64 = r.random();
        let user = (u * u * u * 200_000.0) as u32;
        let path = match r.random_range(0..100) {
            0..=39 => 0,
            40..=59 => 1,
            60..=74 => 5,
            75..=84 => 2,
            85..=94 => 3,
            _ => 4,
        };
        let status = match r.random_range(0..1000) {
            0..=869 => 200,
            870..=919 => 201,
            920..=959 => 404,
            960..=979 => 401,
            980..=994 => 500,
            _ => 503,
        };
        let mut hops = vec![r.random_range(0..GATEWAYS)];
        for _ in 0..r.random_range(0..4) {
            hops.push(r.random_range(GATEWAYS..SERVICES));
        }
        let left = r.random_range(1..=4);
        Request {
            id,
            user,
            path,
            status,
            hops,
            left,
            started: false,
            bounded: false,
        }
    }

    /// The next line of a random request in flight.
    fn request_line(&mut self) -> (usize, usize, String) {
        while self.inflight.len() < INFLIGHT {
            let req = self.new_request();
            self.inflight.push(req);
        }
        let i = self.rng.random_range(0..self.inflight.len());
        let r = &mut self.rng;
        let q = &mut self.inflight[i];
        let service = q.hops[0];
        let path = PATHS[q.path];
        let user = format!("u{}", q.user);
        q.left -= 1;
        let last = q.left == 0;
        let first = !q.started;
        q.started = true;
        let (level, msg, extra): (usize, String, Option<(&str, u64)>) = if last {
            let level = match q.status {
                500.. => 3,
                400.. => 2,
                _ => 1,
            };
            (level, "request completed".into(), None)
        } else if first {
            let msg = if service < GATEWAYS {
                "request received"
            } else {
                "handling request"
            };
            (1, msg.to_string(), None)
        } else {
            match r.random_range(0..10) {
                0..=4 => (
                    0,
                    format!(
                        "cache {} for key user:{}",
                        ["hit", "miss"][r.random_range(0..2)],
                        q.user
                    ),
                    None,
                ),
                5..=8 => (
                    0,
                    "db query done".into(),
                    Some(("rows", r.random_range(0..50))),
                ),
                _ => (
                    2,
                    "upstream timeout, retrying".into(),
                    Some(("attempt", r.random_range(1..4))),
                ),
            }
        };
        let mut fields: Vec<(&str, Field)> = vec![
            ("request_id", Field::Str(&q.id)),
            ("user_id", Field::Str(&user)),
            ("path", Field::Str(path)),
        ];
        if let Some((k, v)) = extra {
            fields.push((k, Field::Num(v)));
        }
        if last {
            // Log-normal duration, median 40 ms (Box-Muller normal draw).
            let (a, b): (f64, f64) = (r.random(), r.random());
            let z = (-2.0 * (1.0 - a).ln()).sqrt() * (std::f64::consts::TAU * b).cos();
            let ms = (40f64.ln() + z).exp().ceil() as u64;
            fields.push(("status", Field::Num(q.status as u64)));
            fields.push(("duration_ms", Field::Num(ms)));
        }
        let body = render(service, level, &msg, &fields);
        if service % 3 != 0 {
            q.bounded = true;
        }
        if last {
            q.hops.remove(0);
            q.started = false;
            q.left = r.random_range(1..=4);
            if q.hops.is_empty() {
                let done = self.inflight.swap_remove(i);
                if done.bounded && self.rng.random_range(0..6_000) == 0 && self.rare.len() < 1000 {
                    self.rare.push(done.id);
                }
            }
        }
        (service, level, body)
    }

    /// One push: BATCH_LINES lines over all services, grouped per stream.
    fn batch(&mut self, raw: &mut Vec<u8>) -> Vec<PushStream> {
        let mut streams: Vec<Vec<LogEntry>> = vec![Vec::new(); SERVICES * LEVELS.len()];
        for _ in 0..BATCH_LINES {
            let (service, level, body) = self.line();
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
    let kind = match std::env::var("STRATA_BENCH_GEN").as_deref() {
        Err(_) | Ok("requests") => GenKind::Requests,
        Ok("uniform") => GenKind::Uniform,
        Ok(other) => panic!("STRATA_BENCH_GEN={other}: expected requests or uniform"),
    };
    let mut gen = Gen::new(base, kind);
    println!(
        "logs bench: {} MB raw, {threads} pushing threads, {}, generator {}",
        target >> 20,
        sink.describe(),
        match kind {
            GenKind::Requests => "requests (ids shared by each request's lines)",
            GenKind::Uniform => "uniform (every field independent)",
        }
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
    if let Some(c) = sink.level_detection_cpu_seconds() {
        println!(
            "detected_level discovery (in the push threads, before the store): {c:.2} CPU-s = {:.0} ns per line, {:.1}% of ingest CPU (STRATA_BENCH_LEVELS=0 turns it off)",
            c * 1e9 / lines as f64,
            100.0 * c / push_cpu
        );
    }
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
    let bare = env_u64("STRATA_BENCH_BARE_TERMS", 100) as usize;
    let needle_p = needles(sink.as_ref(), &picks, bare, base, end);
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
    let hot_disk = store.disk_bytes();
    print_breakdown(&store, "hot, as written", raw_bytes, lines);

    // The warm tier: what the maintenance thread does once a segment
    // leaves the hot window (token filters written from the blocks read
    // back, full-text index deleted), forced now, in this process.
    let (t, c) = (Instant::now(), sink::own_cpu_seconds());
    let later = chrono::Utc::now().timestamp_nanos_opt().unwrap() + 30 * 86_400_000_000_000;
    store.apply_tiering(later).expect("warm conversion");
    let (took, cpu) = (t.elapsed().as_secs_f64(), sink::own_cpu_seconds() - c);
    println!(
        "warm conversion: {took:.1} s, {cpu:.1} CPU-s ({:.1} MB/s per core of raw logs)",
        mb / cpu
    );
    let warm_disk = store.disk_bytes();
    print_breakdown(&store, "warm", raw_bytes, lines);
    for (tier, d) in [("hot (as written)", hot_disk), ("warm", warm_disk)] {
        println!(
            "disk {tier}, index included: {:.1} MB = {:.3} bytes per raw byte ({:.2}:1), {:.2} bytes per line; zstd -3: {:.3} ({:.2}:1)",
            d as f64 / 1e6,
            d as f64 / raw_bytes as f64,
            raw_bytes as f64 / d as f64,
            d as f64 / lines as f64,
            zstd_bytes as f64 / raw_bytes as f64,
            raw_bytes as f64 / zstd_bytes.max(1) as f64,
        );
    }
    println!("warm needles (in process):");
    let warm = sink::InProcess::over(store.clone());
    let bare = env_u64("STRATA_BENCH_WARM_BARE_TERMS", 3) as usize;
    for (label, p50, p99) in needles(&warm, &picks, bare, base, end) {
        println!(
            "  warm needle {label}: {:.1}x faster than grep -F at p50, {:.1}x at p99",
            g.as_secs_f64() / p50.as_secs_f64(),
            g.as_secs_f64() / p99.as_secs_f64()
        );
    }
    store.close().unwrap();
}

/// Prints where the store's bytes go.
fn print_breakdown(
    store: &strata::storage::logs::LogStore,
    tier: &str,
    raw_bytes: u64,
    lines: u64,
) {
    let b = store.disk_breakdown().expect("disk breakdown");
    println!(
    "disk breakdown, {tier} ({} segments, {} blocks, {} entries; MB, bytes per raw byte, bytes per line):",
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
}

/// Latency of needle queries for `picks` (bare: the first `bare` of them;
/// token-bounded: all): prints p50, p99 and blocks read per query, returns
/// `(label, p50, p99)` per shape.
fn needles(
    sink: &dyn Sink,
    picks: &[String],
    bare: usize,
    base: i64,
    end: i64,
) -> Vec<(&'static str, Duration, Duration)> {
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
            bare.min(picks.len())
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
    needle_p
}

/// A field value of a generated line.
enum Field<'a> {
    Str(&'a str),
    Num(u64),
}

/// A line of `service` in its body format: JSON (service % 3 == 0),
/// logfmt (1) or plain text (2). In logfmt and plain lines the request id
/// is written `request_id=<id> ` (followed by more fields).
fn render(service: usize, level: usize, msg: &str, fields: &[(&str, Field)]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(160);
    match service % 3 {
        0 => {
            write!(out, "{{\"level\":\"{}\",\"msg\":\"{msg}\"", LEVELS[level]).unwrap();
            for (k, v) in fields {
                match v {
                    Field::Str(s) => write!(out, ",\"{k}\":\"{s}\""),
                    Field::Num(n) => write!(out, ",\"{k}\":{n}"),
                }
                .unwrap();
            }
            out.push('}');
        }
        1 => {
            write!(out, "level={} msg=\"{msg}\"", LEVELS[level]).unwrap();
            for (k, v) in fields {
                match v {
                    Field::Str(s) => write!(out, " {k}={s}"),
                    Field::Num(n) if *k == "duration_ms" => write!(out, " duration={n}ms"),
                    Field::Num(n) => write!(out, " {k}={n}"),
                }
                .unwrap();
            }
        }
        _ => {
            write!(out, "{} [{service}] {msg}", LEVELS[level].to_uppercase()).unwrap();
            for (k, v) in fields {
                match v {
                    Field::Str(s) if *k == "user_id" => write!(out, " for user {s}"),
                    Field::Str(s) if *k == "path" => write!(out, " on {s}"),
                    Field::Str(s) => write!(out, " {k}={s}"),
                    Field::Num(n) if *k == "duration_ms" => write!(out, " in {n}ms"),
                    Field::Num(n) => write!(out, " {k} {n}"),
                }
                .unwrap();
            }
        }
    }
    out
}
