//! compat/prometheus: Debian's Prometheus 2.42 scrapes node-exporter and
//! itself every second and remote-writes to Strata; after 90 s,
//! a fixed list of PromQL queries is run as `query_range` against both over
//! the same window and step, and the answers must agree (same label sets,
//! values within 1e-6 relative). Skips when the peers are not installed,
//! unless `STRATA_COMPAT_REQUIRE=1`.
//!
//! Env: `STRATA_COMPAT_WAIT_SECONDS` (default 90) sets how long data is
//! collected before querying; `STRATA_COMPAT_CONTROL=1` puts a second
//! Prometheus (remote-write receiver) in Strata's place, to check the
//! harness itself.

#[path = "../common/mod.rs"]
mod common;
mod compare;
mod queries;

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::procs::{free_port, require_peers, wait_ready, Proc};
use compare::{compare, parse_matrix, Matrix};

/// Node-exporter collectors enabled (the others are off: fewer series, and
/// no collectors that need systemd or hardware this machine may not have).
const NODE_COLLECTORS: &[&str] = &[
    "cpu",
    "meminfo",
    "loadavg",
    "netdev",
    "diskstats",
    "filesystem",
    "stat",
    "vmstat",
    "uname",
];

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http client")
}

/// `GET base/api/v1/query_range` and the parsed answer (or the error text).
fn query_range(
    client: &reqwest::blocking::Client,
    base: &str,
    query: &str,
    start: f64,
    end: f64,
    step: f64,
) -> Result<Matrix, String> {
    let params = serde_urlencoded::to_string([
        ("query", query.to_string()),
        ("start", start.to_string()),
        ("end", end.to_string()),
        ("step", step.to_string()),
    ])
    .expect("encoding parameters");
    let url = format!("{base}/api/v1/query_range?{params}");
    let resp = client.get(&url).send().map_err(|e| format!("{e}"))?;
    let status = resp.status();
    let text = resp.text().map_err(|e| format!("{e}"))?;
    let body: serde_json::Value = serde_json::from_str(&text).map_err(|_| {
        format!(
            "HTTP {status}, not JSON: {}",
            text.chars().take(200).collect::<String>()
        )
    })?;
    parse_matrix(&body)
}

/// The earliest timestamp of any `up` point that `base` returns in
/// `[from, to]`, or `None` while it has no data.
fn first_up(client: &reqwest::blocking::Client, base: &str, from: f64, to: f64) -> Option<f64> {
    let m = query_range(client, base, "up", from, to, 1.0).ok()?;
    m.values()
        .filter_map(|points| points.first().map(|p| p.0))
        .min_by(f64::total_cmp)
}

/// The raw `up` sample times (seconds) of the last 30 s at `base`, per series.
fn raw_up(client: &reqwest::blocking::Client, base: &str) -> Vec<Vec<f64>> {
    let url = format!("{base}/api/v1/query?query=up%5B30s%5D&time={}", now_secs());
    let Ok(body) = client
        .get(&url)
        .send()
        .and_then(|r| r.json::<serde_json::Value>())
    else {
        return Vec::new();
    };
    body["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            s["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p[0].as_f64())
                .collect()
        })
        .collect()
}

/// The oldest of the newest raw `up` sample times of each series at `base`.
fn newest_raw_up(client: &reqwest::blocking::Client, base: &str) -> Option<f64> {
    raw_up(client, base)
        .iter()
        .map(|ts| ts.last().copied().unwrap_or(f64::NEG_INFINITY))
        .min_by(f64::total_cmp)
}

/// The fraction of a second (0..1) farthest from the millisecond phase of
/// every raw `up` sample Prometheus holds (1 s scrapes keep their phase).
fn eval_phase(client: &reqwest::blocking::Client, base: &str) -> f64 {
    let phases: Vec<i64> = raw_up(client, base)
        .into_iter()
        .flatten()
        .map(|t| ((t * 1000.0).round() as i64).rem_euclid(1000))
        .collect();
    assert!(!phases.is_empty(), "no raw `up` samples from prometheus");
    let distance = |f: i64| {
        phases
            .iter()
            .map(|p| {
                let d = (f - p).rem_euclid(1000);
                d.min(1000 - d)
            })
            .min()
            .unwrap_or(500)
    };
    let best = (0..1000).max_by_key(|f| distance(*f)).unwrap_or(500);
    best as f64 / 1000.0
}

fn prometheus_config(node_port: u16, prom_port: u16, strata_port: u16) -> String {
    format!(
        r#"global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: node
    static_configs: [{{targets: ['127.0.0.1:{node_port}']}}]
  - job_name: prometheus
    static_configs: [{{targets: ['127.0.0.1:{prom_port}']}}]
remote_write:
  - url: http://127.0.0.1:{strata_port}/api/v1/write
    remote_timeout: 5s
    queue_config: {{batch_send_deadline: 1s, max_samples_per_send: 500, capacity: 2500,
                   min_shards: 1, max_shards: 4, min_backoff: 100ms, max_backoff: 1s}}
    metadata_config: {{send: true, send_interval: 5s}}
"#
    )
}

#[test]
fn strata_answers_like_prometheus_2_42() {
    let Some(bins) = require_peers(
        "compat_prometheus",
        &[
            ("prometheus", &["/usr/bin/prometheus", "prometheus"]),
            (
                "prometheus-node-exporter",
                &[
                    "/usr/bin/prometheus-node-exporter",
                    "prometheus-node-exporter",
                    "node_exporter",
                ],
            ),
        ],
    ) else {
        return;
    };
    let (prom_bin, node_bin) = (&bins[0], &bins[1]);
    let wait_secs: f64 = std::env::var("STRATA_COMPAT_WAIT_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(90.0);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let client = http();

    // The system under test: Strata, or (control run) a second Prometheus
    // acting as remote-write receiver, which shows the harness itself
    // (window, lag, comparison) yields no false mismatches.
    let control = std::env::var("STRATA_COMPAT_CONTROL").is_ok_and(|v| v == "1");
    let strata_port = free_port();
    let strata_args: Vec<String> = if control {
        let cfg = dir.join("receiver.yml");
        std::fs::write(&cfg, "global: {}\n").expect("writing receiver config");
        vec![
            format!("--config.file={}", cfg.display()),
            format!("--web.listen-address=127.0.0.1:{strata_port}"),
            format!("--storage.tsdb.path={}", dir.join("receiver").display()),
            "--web.enable-remote-write-receiver".into(),
        ]
    } else {
        vec![
            "serve".into(),
            "--listen".into(),
            format!("127.0.0.1:{strata_port}"),
            "--data-dir".into(),
            dir.join("strata").display().to_string(),
        ]
    };
    let sut_bin = if control {
        prom_bin.clone()
    } else {
        Path::new(env!("CARGO_BIN_EXE_strata")).to_path_buf()
    };
    let sut_name = if control { "receiver" } else { "strata" };
    let mut strata = Proc::spawn(sut_name, &sut_bin, &strata_args, dir);
    let strata_url = format!("http://127.0.0.1:{strata_port}");
    wait_ready(
        &mut strata,
        &format!("{strata_url}/-/ready"),
        Duration::from_secs(30),
    );

    let node_port = free_port();
    let mut node_args = vec![
        format!("--web.listen-address=127.0.0.1:{node_port}"),
        "--collector.disable-defaults".into(),
    ];
    node_args.extend(NODE_COLLECTORS.iter().map(|c| format!("--collector.{c}")));
    let mut node = Proc::spawn("node-exporter", node_bin, &node_args, dir);
    wait_ready(
        &mut node,
        &format!("http://127.0.0.1:{node_port}/metrics"),
        Duration::from_secs(30),
    );

    let prom_port = free_port();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        prometheus_config(node_port, prom_port, strata_port),
    )
    .expect("writing prometheus.yml");
    let started = now_secs();
    let mut prom = Proc::spawn(
        "prometheus",
        prom_bin,
        &[
            format!("--config.file={}", config.display()),
            format!("--web.listen-address=127.0.0.1:{prom_port}"),
            format!("--storage.tsdb.path={}", dir.join("prom").display()),
        ],
        dir,
    );
    let prom_url = format!("http://127.0.0.1:{prom_port}");
    wait_ready(
        &mut prom,
        &format!("{prom_url}/-/ready"),
        Duration::from_secs(60),
    );

    // Data must start arriving in Strata within 45 s (first scrape comes
    // about 5 s after start, remote write batches every second).
    let deadline = Instant::now() + Duration::from_secs(45);
    let first_strata = loop {
        strata.assert_running();
        prom.assert_running();
        if let Some(t) = first_up(&client, &strata_url, started - 10.0, now_secs()) {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "no `up` samples queryable in Strata 45 s after Prometheus started; strata log:\n{}\nprometheus log:\n{}",
            strata.log_tail(30),
            prom.log_tail(30)
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    // Wait the configured time, and at least long enough after the first
    // sample for a 30 s window (a slow start on a busy machine must not
    // shrink it).
    let ready_at = (started + wait_secs)
        .max(first_strata + queries::LONGEST_LOOKBACK_SECS + 1.0 + 30.0 + 12.0);
    let remaining = ready_at - now_secs();
    if remaining > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(remaining));
    }
    strata.assert_running();
    prom.assert_running();
    node.assert_running();

    let first_prom =
        first_up(&client, &prom_url, started - 10.0, now_secs()).expect("prometheus has no `up`");
    // The window lies inside what both hold: it starts after the first
    // sample either side has plus the longest range any query uses (see
    // LONGEST_LOOKBACK_SECS), and ends 10 s before now so that samples
    // still queued in remote write do not matter. Evaluation times are put
    // as far as possible from every scrape's millisecond phase, so no range
    // boundary falls on a sample (Prometheus 3 ranges are left-open, 2.x
    // ones closed: see compat/prometheus.md).
    let phase = eval_phase(&client, &prom_url);
    let start = first_prom.max(first_strata).ceil() + queries::LONGEST_LOOKBACK_SECS + 1.0 + phase;
    let step = 1.0;
    let end = start + ((now_secs() - 10.0 - start) / step).floor() * step;
    assert!(
        end - start >= 20.0,
        "window too short: {start}..{end} (first up: prometheus {first_prom}, strata {first_strata})"
    );

    // Remote write may lag on a busy machine: wait until Strata holds every
    // `up` series past the window's end.
    let caught_up = Instant::now() + Duration::from_secs(60);
    loop {
        let newest = newest_raw_up(&client, &strata_url);
        if newest.is_some_and(|t| t >= end) {
            break;
        }
        assert!(
            Instant::now() < caught_up,
            "strata's newest `up` sample ({newest:?}) is still before the window end {end} after 60 s"
        );
        std::thread::sleep(Duration::from_secs(1));
    }

    let mut report = String::new();
    let _ = writeln!(
        report,
        "compat/prometheus: Prometheus 2.42 vs {}, query_range start={start} end={end} step={step}s ({} s window)",
        if control { "a second Prometheus (control run)" } else { "Strata" },
        end - start
    );
    let _ = writeln!(
        report,
        "{:<20} {:>7} {:>7}  result",
        "query", "series", "points"
    );
    let mut failures = Vec::new();
    // The whole test stays bounded even if Strata answers slowly.
    let query_deadline = Instant::now() + Duration::from_secs(90);
    for (name, q) in queries::QUERIES {
        if Instant::now() > query_deadline {
            failures.push(format!("{name}: {q}\n    not run: query phase over 90 s"));
            let _ = writeln!(
                report,
                "{name:<20} {:>7} {:>7}  FAIL not run (time budget)",
                0, 0
            );
            continue;
        }
        let expected = query_range(&client, &prom_url, q, start, end, step);
        let got = query_range(&client, &strata_url, q, start, end, step);
        let (series, points, verdict) = match (&expected, &got) {
            (Err(e), _) => (
                0,
                0,
                format!("FAIL prometheus error (bad query list?): {e}"),
            ),
            (Ok(exp), _) if exp.is_empty() => (
                0,
                0,
                "FAIL prometheus returned no series (bad query list?)".to_string(),
            ),
            (Ok(_), Err(e)) => (0, 0, format!("FAIL strata error: {e}")),
            (Ok(exp), Ok(got)) => match compare(exp, got) {
                Ok((s, p)) => (s, p, "match".to_string()),
                Err(e) => (exp.len(), 0, format!("FAIL {e}")),
            },
        };
        if verdict != "match" {
            failures.push(format!("{name}: {q}\n    {verdict}"));
        }
        let _ = writeln!(report, "{name:<20} {series:>7} {points:>7}  {verdict}");
    }
    let total = queries::QUERIES.len();
    let _ = writeln!(
        report,
        "{} of {total} queries match",
        total - failures.len()
    );
    println!("{report}");
    // Kept for .ci/run's summary.
    let _ = std::fs::write(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("compat_prometheus.txt"),
        &report,
    );
    assert!(
        failures.is_empty(),
        "{} of {total} queries differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
