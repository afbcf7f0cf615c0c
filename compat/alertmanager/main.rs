//! compat/alertmanager: the same alerting rules run in Strata and in Debian's
//! Prometheus 2.42 side by side, on the same samples remote-written to both,
//! and both notify one real Alertmanager (Debian's
//! `prometheus-alertmanager`) whose webhook receiver is this test. Each
//! alert must reach the webhook from both with the same labels and
//! annotations, firing and then resolved, and Strata's notifications must
//! arrive within one evaluation interval (plus delivery slack) of
//! Prometheus's. Skips when the peers are missing unless
//! `STRATA_COMPAT_REQUIRE=1`.

#[path = "../common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::procs::{free_port, require_peers, wait_ready, Proc};
use prost::Message;
use strata::api::prom::proto::v1;

/// Group interval of the rules (seconds) and the allowed difference.
const INTERVAL_S: f64 = 2.0;
/// Alertmanager batches and HTTP add some delivery jitter on top.
const SLACK_S: f64 = 1.5;

const RULES: &str = r#"
groups:
  - name: compat
    interval: 2s
    rules:
      - alert: DemoDown
        expr: demo_up == 0
        for: 4s
        labels:
          severity: page
        annotations:
          summary: "{{ $labels.instance }} of {{ $labels.job }} is down"
          value: "{{ $value }}"
      - alert: DemoHighLoad
        expr: demo_load > 5
        labels:
          severity: warn
          instance: "{{ $labels.instance }}-load"
        annotations:
          summary: 'load is {{ $value | humanize }} ({{ printf "%.1f" $value }})'
"#;

#[derive(Debug, Clone)]
struct Notification {
    /// Seconds since the test started.
    at: f64,
    /// `strata` or `prometheus` (the webhook path).
    source: String,
    alert: serde_json::Value,
}

/// A webhook receiver: records every alert Alertmanager posts.
fn webhook(started: Instant) -> (u16, Arc<Mutex<Vec<Notification>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind webhook");
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let at = started.elapsed().as_secs_f64();
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                for a in v["alerts"].as_array().cloned().unwrap_or_default() {
                    sink.lock().unwrap().push(Notification {
                        at,
                        source: path.trim_start_matches('/').to_string(),
                        alert: a,
                    });
                }
            }
        }
    });
    (port, got)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn series(name: &str, instance: &str, v: f64, t: i64) -> v1::TimeSeries {
    let mut labels = vec![
        v1::Label {
            name: "__name__".into(),
            value: name.into(),
        },
        v1::Label {
            name: "instance".into(),
            value: instance.into(),
        },
        v1::Label {
            name: "job".into(),
            value: "demo".into(),
        },
    ];
    labels.sort_by(|a, b| a.name.cmp(&b.name));
    v1::TimeSeries {
        labels,
        samples: vec![v1::Sample {
            value: v,
            timestamp: t,
        }],
        ..Default::default()
    }
}

fn push(client: &reqwest::blocking::Client, url: &str, body: &[u8]) {
    let r = client
        .post(url)
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body.to_vec())
        .send()
        .unwrap_or_else(|e| panic!("remote write to {url}: {e}"));
    assert!(
        r.status().is_success(),
        "remote write to {url}: {}",
        r.status()
    );
}

/// (first firing arrival, first resolved arrival, labels, annotations) of
/// one alert from one source.
type Seen = (
    Option<f64>,
    Option<f64>,
    BTreeMap<String, String>,
    BTreeMap<String, String>,
);

fn summarize(got: &[Notification], source: &str, alertname: &str) -> Option<Seen> {
    let mut out: Option<Seen> = None;
    for n in got.iter().filter(|n| n.source == source) {
        if n.alert["labels"]["alertname"] != alertname {
            continue;
        }
        let mut labels: BTreeMap<String, String> =
            serde_json::from_value(n.alert["labels"].clone()).unwrap_or_default();
        labels.remove("source");
        let annotations: BTreeMap<String, String> =
            serde_json::from_value(n.alert["annotations"].clone()).unwrap_or_default();
        let e = out.get_or_insert((None, None, labels, annotations));
        match n.alert["status"].as_str() {
            Some("firing") => {
                e.0.get_or_insert(n.at);
            }
            Some("resolved") => {
                e.1.get_or_insert(n.at);
            }
            _ => {}
        }
    }
    out
}

#[test]
fn alerts_match_prometheus_through_a_real_alertmanager() {
    let Some(bins) = require_peers(
        "compat/alertmanager",
        &[
            ("prometheus", &["/usr/bin/prometheus", "prometheus"]),
            (
                "prometheus-alertmanager",
                &["/usr/bin/prometheus-alertmanager", "alertmanager"],
            ),
        ],
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let started = Instant::now();
    let (hook_port, got) = webhook(started);

    // Alertmanager: one route per source, every alert in its own group.
    let am_port = free_port();
    std::fs::write(
        dir.join("am.yml"),
        format!(
            r#"
route:
  receiver: strata
  group_by: ['...']
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
  routes:
    - matchers: ['source="prometheus"']
      receiver: prometheus
receivers:
  - name: strata
    webhook_configs: [{{url: 'http://127.0.0.1:{hook_port}/strata', send_resolved: true}}]
  - name: prometheus
    webhook_configs: [{{url: 'http://127.0.0.1:{hook_port}/prometheus', send_resolved: true}}]
"#
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("am-data")).unwrap();
    let mut am = Proc::spawn(
        "alertmanager",
        &bins[1],
        &[
            format!("--config.file={}", dir.join("am.yml").display()),
            format!("--storage.path={}", dir.join("am-data").display()),
            format!("--web.listen-address=127.0.0.1:{am_port}"),
            "--cluster.listen-address=".into(),
        ],
        dir,
    );
    wait_ready(
        &mut am,
        &format!("http://127.0.0.1:{am_port}/-/ready"),
        Duration::from_secs(30),
    );

    std::fs::write(dir.join("rules.yml"), RULES).unwrap();
    // Prometheus 2.42 with the same rules, fed by remote write.
    let prom_port = free_port();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            r#"
global:
  evaluation_interval: 2s
  external_labels: {{source: prometheus}}
rule_files: ['{rules}']
alerting:
  alertmanagers:
    - static_configs: [{{targets: ['127.0.0.1:{am_port}']}}]
"#,
            rules = dir.join("rules.yml").display()
        ),
    )
    .unwrap();
    let mut prom = Proc::spawn(
        "prometheus",
        &bins[0],
        &[
            format!("--config.file={}", dir.join("prometheus.yml").display()),
            format!("--storage.tsdb.path={}", dir.join("prom-data").display()),
            format!("--web.listen-address=127.0.0.1:{prom_port}"),
            "--web.enable-remote-write-receiver".into(),
        ],
        dir,
    );
    // Strata with the same rules.
    let strata_port = free_port();
    std::fs::write(
        dir.join("strata.yml"),
        format!(
            r#"
listen: ["127.0.0.1:{strata_port}"]
data_dir: {data}
rules:
  files: ['{rules}']
  evaluation_interval: 2s
  alertmanagers: ["http://127.0.0.1:{am_port}"]
  external_labels: {{source: strata}}
  external_url: http://127.0.0.1:{strata_port}
"#,
            data = dir.join("strata-data").display(),
            rules = dir.join("rules.yml").display()
        ),
    )
    .unwrap();
    let mut strata = Proc::spawn(
        "strata",
        std::path::Path::new(env!("CARGO_BIN_EXE_strata")),
        &[
            "serve".into(),
            format!("--config={}", dir.join("strata.yml").display()),
        ],
        dir,
    );
    wait_ready(
        &mut prom,
        &format!("http://127.0.0.1:{prom_port}/-/ready"),
        Duration::from_secs(60),
    );
    wait_ready(
        &mut strata,
        &format!("http://127.0.0.1:{strata_port}/-/ready"),
        Duration::from_secs(60),
    );

    // Timeline (seconds): demo_up{instance="a"} is 0 during [6, 20);
    // demo_load{instance="b"} is 10 during [8, 16). Samples every 500 ms.
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let t0 = Instant::now();
    let total = 36.0;
    while t0.elapsed().as_secs_f64() < total {
        let s = t0.elapsed().as_secs_f64();
        let now = now_ms();
        let req = v1::WriteRequest {
            timeseries: vec![
                series(
                    "demo_up",
                    "a",
                    if (6.0..20.0).contains(&s) { 0.0 } else { 1.0 },
                    now,
                ),
                series(
                    "demo_load",
                    "b",
                    if (8.0..16.0).contains(&s) { 10.0 } else { 1.0 },
                    now,
                ),
            ],
            metadata: vec![],
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .unwrap();
        push(
            &client,
            &format!("http://127.0.0.1:{strata_port}/api/v1/write"),
            &body,
        );
        push(
            &client,
            &format!("http://127.0.0.1:{prom_port}/api/v1/write"),
            &body,
        );
        am.assert_running();
        std::thread::sleep(Duration::from_millis(500));
    }
    // Both expose the rules API in the same shape.
    for (who, port) in [("strata", strata_port), ("prometheus", prom_port)] {
        let v: serde_json::Value = client
            .get(format!("http://127.0.0.1:{port}/api/v1/rules"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let rules = &v["data"]["groups"][0]["rules"];
        assert_eq!(rules.as_array().map(|r| r.len()), Some(2), "{who}: {v}");
        assert_eq!(rules[0]["health"], "ok", "{who}: {v}");
        assert_eq!(rules[0]["type"], "alerting", "{who}: {v}");
        assert_eq!(rules[0]["duration"], 4.0, "{who}: {v}");
    }

    let got = got.lock().unwrap().clone();
    let mut report = String::new();
    let mut failures = Vec::new();
    for alert in ["DemoDown", "DemoHighLoad"] {
        let s = summarize(&got, "strata", alert);
        let p = summarize(&got, "prometheus", alert);
        report.push_str(&format!(
            "{alert}:\n  strata     {s:?}\n  prometheus {p:?}\n"
        ));
        let (Some(s), Some(p)) = (s, p) else {
            failures.push(format!("{alert}: not received from both"));
            continue;
        };
        if s.2 != p.2 {
            failures.push(format!("{alert}: labels differ"));
        }
        if s.3 != p.3 {
            failures.push(format!("{alert}: annotations differ"));
        }
        for (what, a, b) in [("firing", s.0, p.0), ("resolved", s.1, p.1)] {
            match (a, b) {
                (Some(a), Some(b)) if (a - b).abs() <= INTERVAL_S + SLACK_S => {}
                (a, b) => failures.push(format!(
                    "{alert} {what}: strata at {a:?}s, prometheus at {b:?}s (allowed {INTERVAL_S}s + {SLACK_S}s)"
                )),
            }
        }
    }
    println!("{report}");
    prom.stop(Duration::from_secs(10));
    strata.stop(Duration::from_secs(10));
    am.stop(Duration::from_secs(10));
    assert!(failures.is_empty(), "{}\n{report}", failures.join("\n"));
}
