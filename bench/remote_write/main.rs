//! Remote-write ingestion benchmark: the same pre-encoded node-exporter-like
//! load is sent by several concurrent clients to Strata (this crate's
//! release build), Prometheus 2.42 (`--web.enable-remote-write-receiver`)
//! and VictoriaMetrics, one after the other in the same run. For each it
//! prints samples/s, CPU-seconds per million samples (utime+stime of the
//! receiver from /proc), peak RSS (VmHWM) and bytes per sample on disk
//! after a flush, then Strata's ratios.
//!
//! `cargo bench --bench remote_write`. Env (defaults in brackets):
//! `STRATA_BENCH_SERIES` [100000], `STRATA_BENCH_SAMPLES` [10000000, total],
//! `STRATA_BENCH_BATCH` [2000 series per request], `STRATA_BENCH_CLIENTS` [4],
//! `STRATA_BENCH_KEEP_DATA` [unset: set, the
//! data directories are kept and their paths printed], `STRATA_BENCH_REPEATS` [3: the whole comparison is run that many
//! times, receivers interleaved, and medians are printed], `STRATA_BENCH_TARGETS`
//! [strata,prometheus,victoriametrics].

#[path = "../../compat/common/mod.rs"]
mod common;
mod load;
mod targets;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::procs::{cpu_seconds, find_binary, peak_rss_bytes};
use targets::Kind;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// One run against one receiver.
#[derive(Clone, Debug)]
struct RunResult {
    samples_per_s: f64,
    cpu_s_per_million: f64,
    peak_rss: u64,
    bytes_per_sample: f64,
    bytes_per_sample_alloc: f64,
    disk_method: String,
    /// Bytes per sample and file count per on-disk component.
    disk_parts: BTreeMap<String, (f64, u64)>,
    failed_requests: u64,
    retries: u64,
    /// `count(node_cpu_seconds_total)` at the last scrape, as the receiver
    /// answers it (`None` when the query failed).
    cpu_series_seen: Option<f64>,
}

/// Sends every body; returns (wall seconds, failed requests, retries).
fn send_all(url: &str, load: &load::Load) -> (f64, u64, u64) {
    let failed = AtomicU64::new(0);
    let retries = AtomicU64::new(0);
    let first_error = std::sync::Mutex::new(None::<String>);
    let write_url = format!("{url}/api/v1/write");
    let start = Instant::now();
    std::thread::scope(|s| {
        for bodies in &load.per_client {
            let (failed, retries, first_error, write_url) =
                (&failed, &retries, &first_error, &write_url);
            s.spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(120))
                    .build()
                    .expect("http client");
                for body in bodies {
                    let mut backoff = Duration::from_millis(50);
                    loop {
                        let r = client
                            .post(write_url.as_str())
                            .header("Content-Encoding", "snappy")
                            .header("Content-Type", "application/x-protobuf")
                            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                            .header("User-Agent", "strata-bench/remote_write")
                            .body(body.clone())
                            .send();
                        let (retry, err) = match r {
                            Ok(r) if r.status().is_success() => (false, None),
                            Ok(r) => {
                                let st = r.status();
                                let text = r.text().unwrap_or_default();
                                let retryable = st.as_u16() == 429 || st.is_server_error();
                                (retryable, Some(format!("HTTP {st}: {}", text.trim())))
                            }
                            Err(e) => (false, Some(e.to_string())),
                        };
                        if retry && backoff < Duration::from_secs(10) {
                            retries.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(backoff);
                            backoff *= 2;
                            continue;
                        }
                        if let Some(e) = err {
                            failed.fetch_add(1, Ordering::Relaxed);
                            first_error.lock().unwrap().get_or_insert(e);
                        }
                        break;
                    }
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    if let Some(e) = first_error.into_inner().unwrap() {
        eprintln!(
            "  first failed request: {}",
            e.chars().take(300).collect::<String>()
        );
    }
    (secs, failed.into_inner(), retries.into_inner())
}

/// The single value of an instant query at `at_ms`, if the receiver
/// answers one.
fn count_query(url: &str, query: &str, at_ms: i64) -> Option<f64> {
    let params = serde_urlencoded::to_string([
        ("query", query.to_string()),
        ("time", format!("{:.3}", at_ms as f64 / 1000.0)),
    ])
    .ok()?;
    let body: serde_json::Value = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .ok()?
        .get(format!("{url}/api/v1/query?{params}"))
        .send()
        .ok()?
        .json()
        .ok()?;
    body["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

fn run_once(kind: Kind, bin: &Path, load: &load::Load) -> RunResult {
    let work = tempfile::Builder::new()
        .prefix("strata-bench-")
        .tempdir()
        .expect("tempdir");
    let mut t = targets::start(kind, bin, work.path());
    let pid = t.proc.pid();
    let cpu0 = cpu_seconds(pid);
    let (secs, failed, retries) = send_all(&t.url, load);
    let cpu = cpu_seconds(pid) - cpu0;
    let peak_rss = peak_rss_bytes(pid);
    t.proc.assert_running();
    // VictoriaMetrics makes new data searchable a second or so after the
    // write is acknowledged: poll briefly.
    let mut cpu_series_seen = None;
    for _ in 0..10 {
        cpu_series_seen = count_query(&t.url, "count(node_cpu_seconds_total)", load.last_ms + 5000);
        if cpu_series_seen == Some(load.cpu_series as f64) {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let disk = t.flush_and_measure();
    if std::env::var_os("STRATA_BENCH_KEEP_DATA").is_some() {
        t.proc.stop(Duration::from_secs(120));
        eprintln!("  kept {}", work.keep().display());
    }
    let samples = load.samples as f64;
    let r = RunResult {
        samples_per_s: samples / secs,
        cpu_s_per_million: cpu / (samples / 1e6),
        peak_rss,
        bytes_per_sample: disk.usage.apparent as f64 / samples,
        bytes_per_sample_alloc: disk.usage.allocated as f64 / samples,
        disk_method: disk.method,
        disk_parts: disk
            .parts
            .iter()
            .map(|(k, (b, n))| (k.clone(), (*b as f64 / samples, *n)))
            .collect(),
        failed_requests: failed,
        retries,
        cpu_series_seen,
    };
    eprintln!(
        "  {:<16} {:>10.0} samples/s  {:>6.2} cpu-s/M  {:>7.1} MiB peak RSS  {:.3} B/sample ({} failed requests, {} retries) {:?}",
        kind.name(),
        r.samples_per_s,
        r.cpu_s_per_million,
        r.peak_rss as f64 / 1048576.0,
        r.bytes_per_sample,
        r.failed_requests,
        r.retries,
        r.disk_parts
    );
    r
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Medians over repeats.
fn summarize(runs: &[RunResult]) -> RunResult {
    let m = |f: fn(&RunResult) -> f64| median(runs.iter().map(f).collect());
    RunResult {
        samples_per_s: m(|r| r.samples_per_s),
        cpu_s_per_million: m(|r| r.cpu_s_per_million),
        peak_rss: m(|r| r.peak_rss as f64) as u64,
        bytes_per_sample: m(|r| r.bytes_per_sample),
        bytes_per_sample_alloc: m(|r| r.bytes_per_sample_alloc),
        disk_method: runs[0].disk_method.clone(),
        disk_parts: runs[0]
            .disk_parts
            .iter()
            .map(|(k, (_, n))| {
                let b = median(
                    runs.iter()
                        .map(|r| r.disk_parts.get(k).map_or(0.0, |p| p.0))
                        .collect(),
                );
                (k.clone(), (b, *n))
            })
            .collect(),
        failed_requests: runs.iter().map(|r| r.failed_requests).sum(),
        retries: runs.iter().map(|r| r.retries).sum(),
        cpu_series_seen: runs
            .iter()
            .map(|r| r.cpu_series_seen)
            .min_by(|a, b| a.unwrap_or(-1.0).total_cmp(&b.unwrap_or(-1.0)))
            .flatten(),
    }
}

/// Finds (or, for VictoriaMetrics, tries to apt-get install) a peer binary.
fn peer_binary(kind: Kind) -> Option<PathBuf> {
    let (candidates, package): (&[&str], &str) = match kind {
        Kind::Strata => return Some(PathBuf::from(env!("CARGO_BIN_EXE_strata"))),
        Kind::Prometheus => (&["/usr/bin/prometheus", "prometheus"], "prometheus"),
        Kind::VictoriaMetrics => (
            &["/usr/bin/victoria-metrics", "victoria-metrics"],
            "victoria-metrics",
        ),
    };
    if let Some(p) = find_binary(candidates) {
        return Some(p);
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root && find_binary(&["apt-get"]).is_some() {
        eprintln!("installing {package} with apt-get");
        let _ = std::process::Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
    }
    let found = find_binary(candidates);
    if found.is_none() {
        eprintln!("SKIPPED {}: {package} is not installed", kind.name());
    }
    found
}

fn main() {
    // `cargo bench` passes `--bench`; there is nothing to filter.
    let series = env_usize("STRATA_BENCH_SERIES", 100_000);
    let total = env_usize("STRATA_BENCH_SAMPLES", 10_000_000);
    let spec = load::LoadSpec {
        series,
        samples_per_series: (total / series.max(1)).max(1),
        batch: env_usize("STRATA_BENCH_BATCH", 2000).max(1),
        clients: env_usize("STRATA_BENCH_CLIENTS", 4).max(1),
        interval_ms: 15_000,
    };
    let repeats = env_usize("STRATA_BENCH_REPEATS", 3).max(1);
    let wanted = std::env::var("STRATA_BENCH_TARGETS")
        .unwrap_or_else(|_| "strata,prometheus,victoriametrics".into());
    let kinds: Vec<Kind> = [Kind::Strata, Kind::Prometheus, Kind::VictoriaMetrics]
        .into_iter()
        .filter(|k| wanted.split(',').any(|w| w.trim() == k.name()))
        .collect();

    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    let t = Instant::now();
    let load = load::generate(spec, now_ms);
    let requests: usize = load.per_client.iter().map(Vec::len).sum();
    println!(
        "load: {} series x {} samples = {} samples in {requests} requests of {} series, {} clients; {:.1} MB snappy ({:.1} MB protobuf), generated in {:.1}s",
        load.series,
        spec.samples_per_series,
        load.samples,
        spec.batch,
        spec.clients,
        load.wire_bytes as f64 / 1e6,
        load.raw_bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let block = load.first_ms.div_euclid(load::BLOCK_MS);
    println!(
        "window: {:.0} s to {:.0} s (Unix), {} the 2 h block starting at {:.0} s{}",
        load.first_ms as f64 / 1000.0,
        load.last_ms as f64 / 1000.0,
        if load.last_ms.div_euclid(load::BLOCK_MS) == block {
            "inside"
        } else {
            "straddling"
        },
        (block * load::BLOCK_MS) as f64 / 1000.0,
        if load.moved {
            " (moved earlier so as not to straddle a block boundary)"
        } else {
            ""
        }
    );

    let peers: Vec<(Kind, PathBuf)> = kinds
        .into_iter()
        .filter_map(|k| peer_binary(k).map(|b| (k, b)))
        .collect();
    // Whole comparisons, one after the other, so that a noisy stretch of
    // the machine hits every receiver alike.
    let mut runs: Vec<Vec<RunResult>> = vec![Vec::new(); peers.len()];
    for i in 0..repeats {
        for (p, (kind, bin)) in peers.iter().enumerate() {
            eprintln!("{} run {}/{repeats}", kind.name(), i + 1);
            runs[p].push(run_once(*kind, bin, &load));
        }
    }
    let results: Vec<(Kind, RunResult)> = peers
        .iter()
        .zip(&runs)
        .map(|((k, _), r)| (*k, summarize(r)))
        .collect();

    println!(
        "\n{:<16} {:>12} {:>14} {:>13} {:>13} {:>9} {:>12}",
        "receiver",
        "samples/s",
        "cpu-s/M smpl",
        "peak RSS MiB",
        "bytes/sample",
        "failed",
        "cpu series"
    );
    for (kind, r) in &results {
        println!(
            "{:<16} {:>12.0} {:>14.3} {:>13.1} {:>13.3} {:>9} {:>12}",
            kind.name(),
            r.samples_per_s,
            r.cpu_s_per_million,
            r.peak_rss as f64 / 1048576.0,
            r.bytes_per_sample,
            r.failed_requests,
            r.cpu_series_seen
                .map(|v| format!("{v}/{}", load.cpu_series))
                .unwrap_or_else(|| "n/a".into())
        );
    }
    println!("\ndisk measured as:");
    for (kind, r) in &results {
        println!(
            "  {:<16} {} (apparent size; allocated blocks: {:.3} B/sample)",
            kind.name(),
            r.disk_method,
            r.bytes_per_sample_alloc
        );
        let parts: Vec<String> = r
            .disk_parts
            .iter()
            .map(|(k, (b, n))| format!("{k} {b:.3} ({n} files)"))
            .collect();
        println!("  {:<16} B/sample by component: {}", "", parts.join(", "));
    }
    println!(
        "(medians over {repeats} run(s); peak RSS is VmHWM at the end of ingestion, before the flush; \
         `cpu series` is count(node_cpu_seconds_total) at the last scrape as each receiver answers it, \
         a check that everything sent was ingested)"
    );
    for (kind, r) in results.iter().filter(|(_, r)| r.failed_requests > 0) {
        println!(
            "INVALID: {} failed {} request(s) (see the first error above); its figures and ratios do not count",
            kind.name(),
            r.failed_requests
        );
    }
    let Some((_, s)) = results
        .iter()
        .find(|(k, r)| *k == Kind::Strata && r.failed_requests == 0)
    else {
        return;
    };
    for (kind, r) in results
        .iter()
        .filter(|(k, r)| *k != Kind::Strata && r.failed_requests == 0)
    {
        let cpu_ratio = r.cpu_s_per_million / s.cpu_s_per_million;
        let rss_ratio = s.peak_rss as f64 / r.peak_rss as f64;
        println!(
            "strata vs {:<16} samples per CPU-second {:.2}x, samples/s {:.2}x, peak RSS {:.2}x, bytes/sample {:.2}x",
            kind.name(),
            cpu_ratio,
            s.samples_per_s / r.samples_per_s,
            rss_ratio,
            s.bytes_per_sample / r.bytes_per_sample
        );
        if *kind == Kind::Prometheus {
            let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
            println!(
                "targets: >= 2x Prometheus samples per CPU-second: {} ({cpu_ratio:.2}x); <= 1.0 byte/sample: {} ({:.3}); peak RSS <= 0.5x Prometheus: {} ({rss_ratio:.2}x)",
                verdict(cpu_ratio >= 2.0),
                if s.bytes_per_sample == 0.0 {
                    "NOT MEASURED (nothing on disk: is the store in-memory?)"
                } else {
                    verdict(s.bytes_per_sample <= 1.0)
                },
                s.bytes_per_sample,
                verdict(rss_ratio <= 0.5)
            );
        }
    }
}
