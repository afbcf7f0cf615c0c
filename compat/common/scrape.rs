//! The compat setup shared by the Prometheus comparisons: Debian's
//! Prometheus 2.42 scrapes node-exporter and itself every second and
//! remote-writes to Strata (or, for a control run, to a second Prometheus
//! acting as remote-write receiver), then both answer the same
//! `query_range` over a window inside what both hold.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::compare::{parse_matrix, Matrix};
use super::procs::{free_port, require_peers, wait_ready, Proc};

/// Node-exporter collectors enabled (the others are off: fewer series, and
/// no collectors that need systemd or hardware this machine may not have).
pub const NODE_COLLECTORS: &[&str] = &[
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

/// Seconds since the epoch, now.
pub fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// A blocking HTTP client with a 20 s timeout.
pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http client")
}

/// `GET base/path?params` parsed as JSON, or the transport or decode error.
pub fn get_json(
    client: &reqwest::blocking::Client,
    base: &str,
    path: &str,
    params: &[(&str, String)],
) -> Result<serde_json::Value, String> {
    let params = serde_urlencoded::to_string(params).expect("encoding parameters");
    let url = format!("{base}{path}?{params}");
    let resp = client.get(&url).send().map_err(|e| format!("{e}"))?;
    let status = resp.status();
    let text = resp.text().map_err(|e| format!("{e}"))?;
    serde_json::from_str(&text).map_err(|_| {
        format!(
            "HTTP {status}, not JSON: {}",
            text.chars().take(200).collect::<String>()
        )
    })
}

/// `GET base/api/v1/query_range` and the parsed answer (or the error text).
pub fn query_range(
    client: &reqwest::blocking::Client,
    base: &str,
    query: &str,
    start: f64,
    end: f64,
    step: f64,
) -> Result<Matrix, String> {
    let body = get_json(
        client,
        base,
        "/api/v1/query_range",
        &[
            ("query", query.to_string()),
            ("start", start.to_string()),
            ("end", end.to_string()),
            ("step", step.to_string()),
        ],
    )?;
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
    let Ok(body) = get_json(
        client,
        base,
        "/api/v1/query",
        &[
            ("query", "up[30s]".into()),
            ("time", now_secs().to_string()),
        ],
    ) else {
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

/// The query window both sides hold.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    /// First evaluation time (seconds).
    pub start: f64,
    /// Last evaluation time (seconds).
    pub end: f64,
    /// Step (seconds).
    pub step: f64,
}

/// Prometheus 2.42 scraping node-exporter and itself, remote-writing to the
/// system under test. Every process stops when this is dropped.
pub struct ScrapePair {
    /// Strata, or the control receiver.
    pub strata: Proc,
    /// node-exporter.
    pub node: Proc,
    /// The scraping Prometheus (the reference).
    pub prom: Proc,
    /// Base URL of the system under test.
    pub strata_url: String,
    /// Base URL of the reference Prometheus.
    pub prom_url: String,
    /// True when a second Prometheus stands in for Strata.
    pub control: bool,
    started: f64,
    first_strata: f64,
    // Declared last: dropped after the processes stop.
    _tmp: tempfile::TempDir,
}

impl ScrapePair {
    /// Starts the three processes and waits until Strata holds data, or
    /// returns `None` (after printing why) when the peers are missing.
    /// `strata_bin` is `env!("CARGO_BIN_EXE_strata")`;
    /// `STRATA_COMPAT_CONTROL=1` puts a second Prometheus in its place.
    pub fn start(what: &str, strata_bin: &Path) -> Option<ScrapePair> {
        let bins = require_peers(
            what,
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
        )?;
        let (prom_bin, node_bin) = (&bins[0], &bins[1]);
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let client = http();

        // The system under test: Strata, or (control run) a second
        // Prometheus acting as remote-write receiver, which shows the
        // harness itself (window, lag, comparison) yields no false
        // mismatches.
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
        let sut_bin: PathBuf = if control {
            prom_bin.clone()
        } else {
            strata_bin.to_path_buf()
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

        // Data must start arriving in Strata within 45 s (first scrape
        // comes about 5 s after start, remote write batches every second).
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
        Some(ScrapePair {
            strata,
            node,
            prom,
            strata_url,
            prom_url,
            control,
            started,
            first_strata,
            _tmp: tmp,
        })
    }

    /// Waits until `wait_secs` after Prometheus started (and long enough
    /// for a 20 s window after `lookback_secs`), then returns a 1 s-step
    /// window inside what both hold: it starts after the first sample
    /// either side has plus `lookback_secs` (the longest range the queries
    /// use, so no range window holds a series start), and ends 10 s before
    /// now; waits until Strata holds every `up` series past the end.
    /// Evaluation times are put as far as possible from every scrape's
    /// millisecond phase, so no range boundary falls on a sample
    /// (Prometheus 3 ranges are left-open, 2.x ones closed: see
    /// compat/prometheus.md).
    pub fn window(&mut self, wait_secs: f64, lookback_secs: f64) -> Window {
        let client = http();
        let ready_at =
            (self.started + wait_secs).max(self.first_strata + lookback_secs + 1.0 + 30.0 + 12.0);
        let remaining = ready_at - now_secs();
        if remaining > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(remaining));
        }
        self.assert_running();
        let first_prom = first_up(&client, &self.prom_url, self.started - 10.0, now_secs())
            .expect("prometheus has no `up`");
        let phase = eval_phase(&client, &self.prom_url);
        let start = first_prom.max(self.first_strata).ceil() + lookback_secs + 1.0 + phase;
        let step = 1.0;
        let end = start + ((now_secs() - 10.0 - start) / step).floor() * step;
        assert!(
            end - start >= 20.0,
            "window too short: {start}..{end} (first up: prometheus {first_prom}, strata {})",
            self.first_strata
        );
        // Remote write may lag on a busy machine: wait until Strata holds
        // every `up` series past the window's end.
        let caught_up = Instant::now() + Duration::from_secs(60);
        loop {
            let newest = newest_raw_up(&client, &self.strata_url);
            if newest.is_some_and(|t| t >= end) {
                break;
            }
            assert!(
                Instant::now() < caught_up,
                "strata's newest `up` sample ({newest:?}) is still before the window end {end} after 60 s"
            );
            std::thread::sleep(Duration::from_secs(1));
        }
        Window { start, end, step }
    }

    /// Panics with a log tail if any of the three processes has exited.
    pub fn assert_running(&mut self) {
        self.strata.assert_running();
        self.prom.assert_running();
        self.node.assert_running();
    }

    /// What the system under test is, for report headers.
    pub fn sut_description(&self) -> &'static str {
        if self.control {
            "a second Prometheus (control run)"
        } else {
            "Strata"
        }
    }
}
