//! compat/loki: real Loki client libraries push to a running `strata`
//! binary and the HTTP API must return exactly what they sent.
//!
//! - npm `winston-loki` 6.1.7 (protobuf + snappy through the `snappy` native
//!   binding; the script refuses to run without it, and the test checks the
//!   server counted protobuf pushes),
//! - pip `python-logging-loki` 0.3.1, JSON, with emitter version 1
//!   (`/loki/api/v1/push`, `streams`/`values`) and 0 (`/api/prom/push`,
//!   legacy `labels`/`entries` with RFC3339 timestamps).
//!
//! Each client prints what it posted; `query_range` must return the same
//! lines, labels (plus Loki's discovered `service_name` and `detected_level`
//! structured metadata) and timestamps, in
//! order. A WebSocket tail client and an SSE tail client must both see a
//! new line within 2 s of its acknowledgement.
//!
//! The packages are installed into `<target>/tmp/compat_loki` (npm install
//! --prefix, pip install --target) on first use. Without node/npm or
//! python3/pip, or when the registry is unreachable, the test skips with a
//! message unless `STRATA_COMPAT_REQUIRE=1`.

#[path = "../common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::procs::{find_binary, free_port, peers_required, wait_ready, Proc};
use futures_util::StreamExt;
use serde_json::{json, Value};

/// A stream's labels and its `(ns, line)` entries.
type StreamEntries = (BTreeMap<String, String>, Vec<(i64, String)>);

const NPM_PACKAGES: &[&str] = &["winston@3.19.0", "winston-loki@6.1.7", "snappy@7.4.3"];
const PIP_PACKAGE: &str = "python-logging-loki==0.3.1";

/// Skips (or fails when required) with a reason.
fn skip(msg: &str) {
    if peers_required() {
        panic!("compat/loki: {msg}; STRATA_COMPAT_REQUIRE=1 makes this a failure");
    }
    eprintln!("SKIPPED compat/loki: {msg}");
}

fn run(cmd: &mut Command, what: &str) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Installs the client libraries once into `dir`.
fn install(dir: &Path) -> Result<(), String> {
    let node_mark = dir.join("node/.installed");
    if !node_mark.exists() {
        let mut c = Command::new("npm");
        c.args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(dir.join("node"))
            .args(NPM_PACKAGES);
        run(&mut c, "npm install")?;
        std::fs::write(&node_mark, NPM_PACKAGES.join("\n")).unwrap();
    }
    let py_mark = dir.join("py/.installed");
    if !py_mark.exists() {
        let mut c = Command::new("python3");
        c.args(["-m", "pip", "install", "--quiet", "--target"])
            .arg(dir.join("py"))
            .arg(PIP_PACKAGE);
        run(&mut c, "pip install")?;
        std::fs::write(&py_mark, PIP_PACKAGE).unwrap();
    }
    Ok(())
}

struct Strata {
    base: String,
    client: reqwest::blocking::Client,
    _proc: Proc,
}

impl Strata {
    fn start(dir: &Path) -> Strata {
        let port = free_port();
        let cfg = dir.join("strata.yml");
        std::fs::write(
            &cfg,
            format!(
                "listen: [127.0.0.1:{port}]\ndata_dir: {}\n",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let mut proc = Proc::spawn(
            "strata",
            Path::new(env!("CARGO_BIN_EXE_strata")),
            &["serve".into(), format!("--config={}", cfg.display())],
            dir,
        );
        let base = format!("http://127.0.0.1:{port}");
        wait_ready(&mut proc, &format!("{base}/ready"), Duration::from_secs(60));
        Strata {
            base,
            client: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            _proc: proc,
        }
    }

    /// Every stream of `selector` over the last hour, oldest entry first:
    /// `(labels, [(ns, line)])`.
    fn streams(&self, selector: &str) -> Vec<StreamEntries> {
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
        let r = self
            .client
            .get(format!("{}/loki/api/v1/query_range", self.base))
            .query(&[
                ("query", selector),
                ("start", &(now - 3_600_000_000_000).to_string()),
                ("end", &(now + 60_000_000_000).to_string()),
                ("direction", "forward"),
                ("limit", "1000"),
            ])
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let v: Value = r.json().unwrap();
        assert_eq!(v["data"]["resultType"], "streams", "{v}");
        let mut out: Vec<_> = v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let labels = serde_json::from_value(s["stream"].clone()).unwrap();
                let entries = s["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| {
                        (
                            p[0].as_str().unwrap().parse::<i64>().unwrap(),
                            p[1].as_str().unwrap().to_string(),
                        )
                    })
                    .collect();
                (labels, entries)
            })
            .collect();
        out.sort();
        out
    }
}

/// Loki's selector-string labels (`{a="b",c="d"}`) as a map.
fn parse_selector(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let body = s.trim().trim_start_matches('{').trim_end_matches('}');
    let mut rest = body;
    while let Some((name, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(n);
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(
            name.trim().trim_start_matches(',').trim().to_string(),
            value,
        );
        rest = &after[end..];
    }
    out
}

/// Groups `(labels, ns, line)` as the API returns them.
/// Loki's `detected_level` for these clients' streams: the value of their
/// `level` (winston-loki) or `severity` (python-logging-loki) label.
fn detected_level(l: &mut BTreeMap<String, String>) {
    let v = l
        .get("level")
        .or_else(|| l.get("severity"))
        .expect("the client sends a level label")
        .clone();
    l.insert("detected_level".into(), v);
}

fn expected(mut entries: Vec<(BTreeMap<String, String>, i64, String)>) -> Vec<StreamEntries> {
    entries.sort_by_key(|e| e.1);
    let mut by: BTreeMap<BTreeMap<String, String>, Vec<(i64, String)>> = BTreeMap::new();
    for (l, ts, line) in entries {
        by.entry(l).or_default().push((ts, line));
    }
    by.into_iter().collect()
}

fn winston(s: &Strata, dir: &Path) {
    let job = "compat-winston";
    let out = run(
        Command::new("node")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("compat/loki/winston.js"))
            .arg(&s.base)
            .arg(job)
            .env("NODE_PATH", dir.join("node/node_modules")),
        "winston-loki",
    )
    .unwrap();
    let sent: Vec<Value> = serde_json::from_str(out.trim()).unwrap();
    let mut want = Vec::new();
    for st in &sent {
        let mut l: BTreeMap<String, String> = serde_json::from_value(st["labels"].clone()).unwrap();
        l.insert("service_name".into(), job.into());
        detected_level(&mut l);
        for e in st["entries"].as_array().unwrap() {
            want.push((
                l.clone(),
                e[0].as_i64().unwrap() * 1_000_000,
                e[1].as_str().unwrap().to_string(),
            ));
        }
    }
    assert_eq!(want.len(), 4);
    let got = s.streams(&format!("{{job=\"{job}\"}}"));
    assert_eq!(
        got,
        expected(want),
        "winston-loki: what was pushed comes back"
    );
    let metrics = s
        .client
        .get(format!("{}/metrics", s.base))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let protobuf = metrics
        .lines()
        .find(|l| l.starts_with("strata_loki_pushes_total{format=\"protobuf\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(
        protobuf >= 1.0,
        "winston-loki must have pushed protobuf:\n{metrics}"
    );
    println!(
        "compat/loki: winston-loki (protobuf+snappy): {} entries match",
        4
    );
}

fn python(s: &Strata, dir: &Path) {
    let job = "compat-python";
    let out = run(
        Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("compat/loki/python_loki.py"))
            .arg(&s.base)
            .arg(job)
            .env("PYTHONPATH", dir.join("py")),
        "python-logging-loki",
    )
    .unwrap();
    let sent: Vec<Value> = serde_json::from_str(out.trim().lines().last().unwrap()).unwrap();
    assert_eq!(sent.len(), 6, "{out}");
    let mut want = Vec::new();
    for p in &sent {
        for st in p["payload"]["streams"].as_array().unwrap() {
            if let Some(m) = st["stream"].as_object() {
                let mut l: BTreeMap<String, String> = m
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect();
                l.insert("service_name".into(), job.into());
                detected_level(&mut l);
                for v in st["values"].as_array().unwrap() {
                    want.push((
                        l.clone(),
                        v[0].as_str().unwrap().parse().unwrap(),
                        v[1].as_str().unwrap().to_string(),
                    ));
                }
            } else {
                let mut l = parse_selector(st["labels"].as_str().unwrap());
                l.insert("service_name".into(), job.into());
                detected_level(&mut l);
                for e in st["entries"].as_array().unwrap() {
                    let ts = chrono::DateTime::parse_from_rfc3339(e["ts"].as_str().unwrap())
                        .unwrap()
                        .timestamp_nanos_opt()
                        .unwrap();
                    want.push((l.clone(), ts, e["line"].as_str().unwrap().to_string()));
                }
            }
        }
    }
    assert!(want
        .iter()
        .any(|w| w.0.get("request_id").map(String::as_str) == Some("r-17")));
    let got = s.streams(&format!("{{job=\"{job}\"}}"));
    assert_eq!(
        got,
        expected(want),
        "python-logging-loki: what was pushed comes back"
    );
    println!("compat/loki: python-logging-loki (JSON, emitters v1 and v0): 6 entries match");
}

/// A WebSocket and an SSE tail client each see a new line within 2 s of
/// the push (measured from sending it, so acknowledgement is included).
fn tails(s: &Strata) {
    let q = "{job=\"compat-tail\"}";
    let url =
        reqwest::Url::parse_with_params(&format!("{}/loki/api/v1/tail", s.base), &[("query", q)])
            .unwrap();
    let (tx, rx) = mpsc::channel::<(&'static str, String, Instant)>();
    let ws_url = url.as_str().replacen("http", "ws", 1);
    let wtx = tx.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (mut ws, _) = rt
        .block_on(tokio_tungstenite::connect_async(ws_url))
        .expect("websocket tail");
    let ws_thread = std::thread::spawn(move || {
        rt.block_on(async {
            while let Ok(Some(Ok(m))) =
                tokio::time::timeout(Duration::from_secs(10), ws.next()).await
            {
                if let Ok(t) = m.to_text() {
                    let _ = wtx.send(("websocket", t.to_string(), Instant::now()));
                }
            }
        })
    });
    let sse_url = url.to_string();
    std::thread::spawn(move || {
        let resp = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
            .get(sse_url)
            .header("Accept", "text/event-stream")
            .send()
            .unwrap();
        for line in BufReader::new(resp).lines() {
            let Ok(line) = line else { break };
            if let Some(d) = line.strip_prefix("data:") {
                if tx
                    .send(("sse", d.trim().to_string(), Instant::now()))
                    .is_err()
                {
                    break;
                }
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let ns = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let body =
        json!({"streams":[{"stream":{"job":"compat-tail"},"values":[[ns.to_string(),"tail me"]]}]});
    let sent = Instant::now();
    let r = s
        .client
        .post(format!("{}/loki/api/v1/push", s.base))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap();
    let acked = Instant::now();
    assert_eq!(r.status().as_u16(), 204);
    println!(
        "compat/loki: push acknowledged {:?} after sending",
        acked - sent
    );
    let mut seen: BTreeMap<&str, Duration> = BTreeMap::new();
    while seen.len() < 2 {
        let Ok((who, frame, at)) = rx.recv_timeout(Duration::from_secs(3)) else {
            break;
        };
        let v: Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(
            v["streams"][0]["values"],
            json!([[ns.to_string(), "tail me"]]),
            "{who}: {frame}"
        );
        assert_eq!(v["dropped_entries"], Value::Null);
        seen.insert(who, at.saturating_duration_since(sent));
    }
    for who in ["websocket", "sse"] {
        let d = seen
            .get(who)
            .unwrap_or_else(|| panic!("{who} tail saw nothing within 3 s"));
        assert!(*d < Duration::from_secs(2), "{who} tail took {d:?}");
        println!("compat/loki: {who} tail saw the line {d:?} after the push was sent");
    }
    drop(ws_thread);
}

#[test]
fn real_clients_push_and_read_back() {
    let tools = [("node", "node"), ("npm", "npm"), ("python3", "python3")];
    for (name, bin) in tools {
        if find_binary(&[bin]).is_none() {
            return skip(&format!("{name} is not installed"));
        }
    }
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("compat_loki");
    std::fs::create_dir_all(&cache).unwrap();
    if let Err(e) = install(&cache) {
        return skip(&format!("installing the client libraries failed: {e}"));
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Strata::start(dir.path());
    tails(&s);
    winston(&s, &cache);
    python(&s, &cache);
}
