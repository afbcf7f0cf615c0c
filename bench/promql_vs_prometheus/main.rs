//! PromQL side by side: the same node-exporter-like data (default 10,000
//! series over 24 h at a 15 s scrape interval) is remote-written to Strata
//! (this crate's release build) and to Prometheus 2.42
//! (`--web.enable-remote-write-receiver`, 30 d retention), then every panel
//! query of the stock "Node Exporter Full" Grafana dashboard
//! (`../shared/ecosystem/dashboards/prometheus/rfmoz__node-exporter-full.json`)
//! runs as `query_range` over the whole range at a Grafana-like step against
//! both, N times each (alternating which goes first). Prints p50 and p99
//! per query and their ratio, whether the two answers agree, and the peak
//! RSS of both processes.
//!
//! Timing: from writing the request on a kept-alive connection to the last
//! byte of the answer (`client.rs`); the answer is decoded and compared
//! after the clock stops. The measure of runs before 2026-12-02 05:00 UTC
//! (reqwest's blocking client, the JSON decoded inside the timed span) is
//! taken too, right after, and printed as the `old` column and summary.
//!
//! Loading: the data ends a minute before now and is sent in time order,
//! every series advancing together: each request carries `CHUNK`
//! consecutive scrapes of `BATCH` series, so both receivers append in
//! order (Prometheus's head accepts it; it compacts 2 h blocks as the head
//! grows past 3 h, as it would have over a real day). Nothing is
//! backfilled with promtool.
//!
//! `cargo bench --bench promql_vs_prometheus`. Env (defaults in brackets):
//! `STRATA_BENCH_SERIES` [10000], `STRATA_BENCH_HOURS` [24],
//! `STRATA_BENCH_INTERVAL` [15 s], `STRATA_BENCH_STEP` [60 s, what Grafana
//! picks for 24 h on a wide panel], `STRATA_BENCH_REPS` [10],
//! `STRATA_BENCH_CHUNK` [120 scrapes per series per request],
//! `STRATA_BENCH_BATCH` [500 series per request], `STRATA_BENCH_QUERIES`
//! [only queries whose text contains this], `STRATA_BENCH_DATA` [unset: a
//! fresh temporary directory; set: keep both data directories there and,
//! when they were loaded before with the same series/hours/interval, skip
//! loading and query the kept data (for profiling iterations; the
//! published figures come from fresh loads)], `STRATA_BENCH_STRATA_ONLY`
//! [unset; `1`: no Prometheus, Strata answers both columns (memory and
//! profiling iterations on Strata alone)], `STRATA_BENCH_STRATA_BIN` [the
//! `strata` binary to run; default: the one this build made (A/B runs of
//! two builds on the same kept data)]. The expanded queries and the
//! window are written to `queries.tsv` in the work directory.

mod client;
#[path = "../../compat/common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "../../compat/prometheus/grafana.rs"]
mod grafana;
#[allow(dead_code)]
#[path = "../remote_write/load.rs"]
mod load;
#[allow(dead_code)]
#[path = "../remote_write/targets.rs"]
mod targets;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::compare::{compare, parse_matrix};
use common::procs::{cpu_seconds, find_binary, peak_rss_bytes};
use common::scrape::{get_json, query_range};
use load::Rng;
use strata::api::prom::proto::v1::{Sample, TimeSeries, WriteRequest};

const DASHBOARD: &str = "dashboards/prometheus/rfmoz__node-exporter-full.json";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Generates the load chunk by chunk and hands every snappy body to every
/// sender; returns the seconds each sender was busy, the number of
/// samples sent and the first scrape's time (ms).
fn load_both(
    urls: &[&str],
    series: usize,
    scrapes: usize,
    interval_ms: i64,
    chunk: usize,
    batch: usize,
) -> (Vec<f64>, u64, i64) {
    use prost::Message;
    let mut rng = Rng::new(0x5742_a7a5);
    let mut all = Vec::with_capacity(series + 300);
    let mut host = 0;
    while all.len() < series {
        all.extend(load::host_series(host, &mut rng));
        host += 1;
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    let first_ms = (now_ms - interval_ms * scrapes as i64 - 60_000) / interval_ms * interval_ms;
    let mut senders = Vec::new();
    let mut handles = Vec::new();
    for &url in urls {
        let (tx, rx) = mpsc::sync_channel::<bytes::Bytes>(8);
        senders.push(tx);
        let url = format!("{url}/api/v1/write");
        handles.push(std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(300))
                .build()
                .expect("http client");
            let mut busy = Duration::ZERO;
            for body in rx {
                let t = Instant::now();
                let mut backoff = Duration::from_millis(100);
                loop {
                    let r = client
                        .post(&url)
                        .header("Content-Encoding", "snappy")
                        .header("Content-Type", "application/x-protobuf")
                        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                        .body(body.clone())
                        .send();
                    match r {
                        Ok(r) if r.status().is_success() => break,
                        Ok(r)
                            if (r.status().as_u16() == 429 || r.status().is_server_error())
                                && backoff < Duration::from_secs(30) =>
                        {
                            std::thread::sleep(backoff);
                            backoff *= 2;
                        }
                        Ok(r) => {
                            let st = r.status();
                            panic!("{url}: HTTP {st}: {}", r.text().unwrap_or_default());
                        }
                        Err(e) => panic!("{url}: {e}"),
                    }
                }
                busy += t.elapsed();
            }
            busy.as_secs_f64()
        }));
    }
    let mut encoder = snap::raw::Encoder::new();
    let mut buf = Vec::new();
    let mut samples = 0u64;
    let mut done = 0;
    while done < scrapes {
        let n = chunk.min(scrapes - done);
        for block in all.chunks_mut(batch) {
            let mut req = WriteRequest::default();
            for gen in block.iter_mut() {
                let mut ts = TimeSeries {
                    labels: gen.labels.clone(),
                    ..Default::default()
                };
                for k in done..done + n {
                    // One timestamp per host and scrape: each host has its
                    // own phase in the interval (as Prometheus spreads
                    // targets), plus a few ms of jitter. Never on a whole
                    // second, so no range boundary of a step-aligned query
                    // falls on a sample (Prometheus 2.x ranges are closed,
                    // 3.x ones left-open).
                    let phase = 1000
                        + Rng::new(gen.host as u64)
                            .below((interval_ms as u64).saturating_sub(2000).max(1))
                            as i64
                            / 1000
                            * 1000
                        + 137;
                    let t = first_ms
                        + phase
                        + k as i64 * interval_ms
                        + Rng::new((gen.host as u64) << 32 | k as u64).below(5) as i64;
                    let v = gen.advance(&mut rng, interval_ms as f64 / 1000.0, t);
                    ts.samples.push(Sample {
                        value: v,
                        timestamp: t,
                    });
                }
                samples += n as u64;
                req.timeseries.push(ts);
            }
            buf.clear();
            req.encode(&mut buf)
                .expect("encoding into a Vec cannot fail");
            let body = bytes::Bytes::from(encoder.compress_vec(&buf).expect("snappy"));
            for tx in &senders {
                tx.send(body.clone()).expect("sender thread alive");
            }
        }
        done += n;
    }
    drop(senders);
    let secs: Vec<f64> = handles
        .into_iter()
        .map(|h| h.join().expect("sender thread"))
        .collect();
    (secs, samples, first_ms)
}

/// Waits until a process uses under 2% of a core over 3 s (compaction and
/// head flushes done), at most `limit`.
fn wait_quiet(pid: u32, limit: Duration) {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        let c0 = cpu_seconds(pid);
        std::thread::sleep(Duration::from_secs(3));
        if cpu_seconds(pid) - c0 < 0.06 {
            return;
        }
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn main() {
    let series = env_usize("STRATA_BENCH_SERIES", 10_000);
    let hours = env_usize("STRATA_BENCH_HOURS", 24);
    let interval_s = env_usize("STRATA_BENCH_INTERVAL", 15).max(1);
    let step = env_usize("STRATA_BENCH_STEP", 60).max(1) as f64;
    let reps = env_usize("STRATA_BENCH_REPS", 10).max(1);
    let chunk = env_usize("STRATA_BENCH_CHUNK", 120).max(1);
    let batch = env_usize("STRATA_BENCH_BATCH", 500).max(1);
    let filter = std::env::var("STRATA_BENCH_QUERIES").unwrap_or_default();
    let strata_only = std::env::var("STRATA_BENCH_STRATA_ONLY").is_ok_and(|v| v == "1");

    let Some(prom_bin) = find_binary(&["/usr/bin/prometheus", "prometheus"]) else {
        eprintln!(
            "SKIPPED promql_vs_prometheus: prometheus not installed (apt-get install prometheus)"
        );
        return;
    };
    let Some(shared) = grafana::shared_dir() else {
        eprintln!("SKIPPED promql_vs_prometheus: no ../shared/ecosystem (set STRATA_SHARED)");
        return;
    };
    let ex = grafana::extract(&shared.join("ecosystem"));
    let strata_bin = std::env::var_os("STRATA_BENCH_STRATA_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_strata")),
        PathBuf::from,
    );

    let tmp;
    let work: PathBuf = match std::env::var("STRATA_BENCH_DATA") {
        Ok(dir) if !dir.is_empty() => {
            std::fs::create_dir_all(&dir).expect("creating STRATA_BENCH_DATA");
            PathBuf::from(dir)
        }
        _ => {
            tmp = tempfile::Builder::new()
                .prefix("strata-bench-promql-")
                .tempdir()
                .expect("tempdir");
            tmp.path().to_path_buf()
        }
    };
    let scrapes = hours * 3600 / interval_s;
    let marker = work.join("loaded.txt");
    let shape = format!("{series} {hours} {interval_s}");
    // `<shape> <first_ms>` when this directory holds a finished load.
    let kept_first_ms = std::fs::read_to_string(&marker).ok().and_then(|m| {
        let (have, first) = m.trim().rsplit_once(' ')?;
        (have == shape).then(|| first.parse::<i64>().ok()).flatten()
    });
    let mut strata = targets::start(targets::Kind::Strata, &strata_bin, &work);
    // Strata alone (memory iterations): the peer column is Strata again.
    let mut prom =
        (!strata_only).then(|| targets::start(targets::Kind::Prometheus, &prom_bin, &work));
    let peer_url = prom.as_ref().map_or(&strata.url, |p| &p.url).clone();
    let pids = [
        strata.proc.pid(),
        prom.as_ref().map_or(strata.proc.pid(), |p| p.proc.pid()),
    ];
    let load_urls: Vec<&str> = if strata_only {
        vec![&strata.url]
    } else {
        vec![&strata.url, &peer_url]
    };

    let first_ms = match kept_first_ms {
        Some(first_ms) => {
            println!("load: reusing the data loaded before in {}", work.display());
            first_ms
        }
        None => {
            let t0 = Instant::now();
            let (secs, samples, first_ms) = load_both(
                &load_urls,
                series,
                scrapes,
                interval_s as i64 * 1000,
                chunk,
                batch,
            );
            println!(
                "load: {series}+ series x {scrapes} scrapes ({hours} h at {interval_s} s) = {samples} samples, {chunk} scrapes x {batch} series per request; {:.0} s wall; busy sending: strata {:.0} s, prometheus {:.0} s",
                t0.elapsed().as_secs_f64(),
                secs[0],
                secs.get(1).copied().unwrap_or(f64::NAN)
            );
            std::fs::write(&marker, format!("{shape} {first_ms}\n")).expect("writing marker");
            first_ms
        }
    };
    let load_rss = [peak_rss_bytes(pids[0]), peak_rss_bytes(pids[1])];
    for pid in pids {
        wait_quiet(pid, Duration::from_secs(300));
    }
    strata.proc.assert_running();
    if let Some(p) = prom.as_mut() {
        p.proc.assert_running();
    }

    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .expect("http client");
    // The window: the loaded range, aligned to the step as Grafana aligns
    // it, less its first 5 minutes, so that no range holds a series start
    // (where 2.x and 3.x extrapolate `rate` differently).
    let now = match kept_first_ms {
        // Kept data: the window ends where it did when it was loaded.
        Some(f) => (f + scrapes as i64 * interval_s as i64 * 1000 + 60_000) as f64 / 1000.0,
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64(),
    };
    let end = (now / step).floor() * step;
    let start = ((first_ms as f64 / 1000.0 + 300.0) / step).ceil() * step;
    let instance = get_json(&client, &peer_url, "/api/v1/label/instance/values", &[])
        .ok()
        .and_then(|b| b["data"][0].as_str().map(str::to_string))
        .expect("prometheus lists no instance");
    let mut vars = HashMap::new();
    vars.insert("job".to_string(), "node".to_string());
    vars.insert("node".to_string(), instance.clone());
    // Grafana: $__rate_interval = max($__interval + scrape interval, 4 x scrape interval).
    let builtins = grafana::Builtins {
        start,
        end,
        step,
        rate_interval: (step + interval_s as f64).max(4.0 * interval_s as f64),
    };
    let mut queries: Vec<(String, String)> = Vec::new();
    for e in ex
        .exprs
        .iter()
        .filter(|e| e.kind == grafana::Kind::Panel && e.id.starts_with(DASHBOARD))
    {
        let q = grafana::expand(&e.text, &vars, &builtins);
        if q.contains(&filter) && !queries.iter().any(|(_, have)| *have == q) {
            let name =
                e.id.trim_start_matches(DASHBOARD)
                    .trim_start_matches(" :: panel ")
                    .to_string();
            queries.push((name, q));
        }
    }
    // The expanded queries and the window, for profiling one server by hand
    // (`start end step` on the first line, then `name<TAB>query` lines).
    let listing: String = queries
        .iter()
        .map(|(name, q)| format!("{name}\t{q}\n"))
        .collect();
    std::fs::write(
        work.join("queries.tsv"),
        format!("{start} {end} {step}\n{listing}"),
    )
    .expect("writing queries.tsv");
    println!(
        "queries: {} distinct panel queries of {DASHBOARD}, instance={instance}, range {:.2} h, step {step} s, $__rate_interval {} s, {reps} runs each",
        queries.len(),
        (end - start) / 3600.0,
        builtins.rate_interval
    );
    println!(
        "{:<48} {:>6} {:>9} {:>9} {:>9} {:>9} {:>6} {:>6}  answers",
        "panel", "series", "S p50 ms", "P p50 ms", "S p99 ms", "P p99 ms", "S/P", "old"
    );
    let urls = [strata.url.clone(), peer_url.clone()];
    // The timing connections (see client.rs); reqwest with the answer
    // decoded inside the span is the measure of earlier runs, kept beside.
    let mut conns = [client::Conn::new(&urls[0]), client::Conn::new(&urls[1])];
    let mut ratios = Vec::new();
    let mut ratios_data = Vec::new();
    let mut ratios_empty = Vec::new();
    let mut old_ratios = [Vec::new(), Vec::new(), Vec::new()];
    let mut sum_p50 = [0.0f64; 2];
    let mut old_sum_p50 = [0.0f64; 2];
    let mut agree = 0;
    for (name, q) in &queries {
        let path = client::query_range_path(q, start, end, step);
        let mut times = [Vec::new(), Vec::new()];
        let mut old_times = [Vec::new(), Vec::new()];
        let mut answers = [None, None];
        for r in 0..reps {
            let order = if r % 2 == 0 { [0, 1] } else { [1, 0] };
            for i in order {
                let t = Instant::now();
                let got = conns[i].get(&path);
                times[i].push(t.elapsed().as_secs_f64() * 1000.0);
                answers[i].get_or_insert_with(|| {
                    let (status, body) = got.map_err(|e| format!("{e}"))?;
                    serde_json::from_slice::<serde_json::Value>(&body)
                        .map_err(|_| format!("HTTP {status}, not JSON"))
                        .and_then(|b| parse_matrix(&b))
                });
                let t = Instant::now();
                let _ = query_range(&client, &urls[i], q, start, end, step);
                old_times[i].push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
        for t in times.iter_mut().chain(old_times.iter_mut()) {
            t.sort_by(f64::total_cmp);
        }
        let p50 = [percentile(&times[0], 0.5), percentile(&times[1], 0.5)];
        let p99 = [percentile(&times[0], 0.99), percentile(&times[1], 0.99)];
        let ratio = p50[0] / p50[1];
        sum_p50[0] += p50[0];
        sum_p50[1] += p50[1];
        ratios.push(ratio);
        let old_p50 = [
            percentile(&old_times[0], 0.5),
            percentile(&old_times[1], 0.5),
        ];
        let old_ratio = old_p50[0] / old_p50[1];
        old_sum_p50[0] += old_p50[0];
        old_sum_p50[1] += old_p50[1];
        let (n_series, verdict) = match (&answers[0], &answers[1]) {
            (Some(Ok(s)), Some(Ok(p))) => match compare(p, s) {
                Ok(_) => {
                    agree += 1;
                    (p.len(), "same".to_string())
                }
                Err(e) => (
                    p.len(),
                    format!("DIFFER: {}", e.chars().take(120).collect::<String>()),
                ),
            },
            (Some(Err(_)), Some(Err(_))) => {
                agree += 1;
                (0, "both error".to_string())
            }
            (s, p) => (
                0,
                format!(
                    "DIFFER: strata {:?} / prometheus {:?}",
                    s.as_ref().map(|r| r.is_ok()),
                    p.as_ref().map(|r| r.is_ok())
                ),
            ),
        };
        old_ratios[0].push(old_ratio);
        if n_series > 0 {
            ratios_data.push(ratio);
            old_ratios[1].push(old_ratio);
        } else {
            ratios_empty.push(ratio);
            old_ratios[2].push(old_ratio);
        }
        println!(
            "{:<48} {:>6} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>6.2} {:>6.2}  {verdict}",
            name.chars().take(48).collect::<String>(),
            n_series,
            p50[0],
            p50[1],
            p99[0],
            p99[1],
            ratio,
            old_ratio
        );
    }
    let end_rss = [peak_rss_bytes(pids[0]), peak_rss_bytes(pids[1])];
    strata.proc.assert_running();
    if let Some(p) = prom.as_mut() {
        p.proc.assert_running();
    }
    println!(
        "summary: median of per-query p50 ratios (Strata/Prometheus) {:.2} over {} queries, {:.2} over the {} that return series, {:.2} over the {} empty ones; sum of p50s {:.1} ms vs {:.1} ms ({:.2}); answers agree on {agree} of {}",
        median(ratios),
        queries.len(),
        median(ratios_data.clone()),
        ratios_data.len(),
        median(ratios_empty.clone()),
        ratios_empty.len(),
        sum_p50[0],
        sum_p50[1],
        sum_p50[0] / sum_p50[1],
        queries.len()
    );
    let [old_all, old_data, old_empty] = old_ratios;
    println!(
        "summary, old measure (reqwest blocking client, JSON decoded inside the span): median {:.2} over {} queries, {:.2} returning, {:.2} empty; sum of p50s {:.1} ms vs {:.1} ms ({:.2})",
        median(old_all.clone()),
        old_all.len(),
        median(old_data),
        median(old_empty),
        old_sum_p50[0],
        old_sum_p50[1],
        old_sum_p50[0] / old_sum_p50[1],
    );
    println!(
        "peak RSS (VmHWM) after loading: strata {:.0} MiB, prometheus {:.0} MiB; at the end (loading + queries): strata {:.0} MiB, prometheus {:.0} MiB ({:.2}x)",
        mib(load_rss[0]),
        mib(load_rss[1]),
        mib(end_rss[0]),
        mib(end_rss[1]),
        end_rss[0] as f64 / end_rss[1].max(1) as f64
    );
    println!(
        "RSS now (anonymous + file-backed): strata {}; prometheus {}",
        rss_parts(pids[0]),
        rss_parts(pids[1])
    );
}

/// `RssAnon` and `RssFile` of a process (file-backed: mapped block files).
fn rss_parts(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(f64::NAN, |kb| kb as f64 / 1024.0)
    };
    format!("{:.0} + {:.0} MiB", field("RssAnon:"), field("RssFile:"))
}
