//! The three receivers, each started fresh per run: how to start one, when
//! it is ready, and how to make it persist what it received so its disk use
//! can be measured.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::procs::{dir_usage, free_port, wait_ready, DirUsage, Proc};

/// Which receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// This crate's release binary.
    Strata,
    /// Debian's Prometheus 2.42 with `--web.enable-remote-write-receiver`.
    Prometheus,
    /// Debian's VictoriaMetrics single-node.
    VictoriaMetrics,
}

impl Kind {
    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Strata => "strata",
            Kind::Prometheus => "prometheus",
            Kind::VictoriaMetrics => "victoriametrics",
        }
    }
}

/// A running receiver.
pub struct Target {
    /// Which one.
    pub kind: Kind,
    /// The process.
    pub proc: Proc,
    /// Base URL.
    pub url: String,
    /// Its data directory.
    pub data: PathBuf,
}

/// Starts `kind` (binary `bin`) with a fresh data dir under `work`.
pub fn start(kind: Kind, bin: &Path, work: &Path) -> Target {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let data = work.join(format!("{}-data", kind.name()));
    std::fs::create_dir_all(&data).expect("creating data dir");
    let (args, ready): (Vec<String>, &str) = match kind {
        Kind::Strata => (
            vec![
                "serve".into(),
                "--listen".into(),
                addr.clone(),
                "--data-dir".into(),
                data.display().to_string(),
            ],
            "/-/ready",
        ),
        Kind::Prometheus => {
            let cfg = work.join("prometheus-empty.yml");
            std::fs::write(&cfg, "global: {}\n").expect("writing prometheus config");
            (
                vec![
                    format!("--config.file={}", cfg.display()),
                    format!("--web.listen-address={addr}"),
                    format!("--storage.tsdb.path={}", data.display()),
                    "--web.enable-remote-write-receiver".into(),
                    "--web.enable-admin-api".into(),
                    "--storage.tsdb.retention.time=30d".into(),
                    "--log.level=warn".into(),
                ],
                "/-/ready",
            )
        }
        Kind::VictoriaMetrics => (
            vec![
                format!("-httpListenAddr={addr}"),
                format!("-storageDataPath={}", data.display()),
                "-retentionPeriod=1y".into(),
                "-loggerLevel=WARN".into(),
            ],
            "/health",
        ),
    };
    let mut proc = Proc::spawn(kind.name(), bin, &args, work);
    let url = format!("http://{addr}");
    wait_ready(&mut proc, &format!("{url}{ready}"), Duration::from_secs(60));
    Target {
        kind,
        proc,
        url,
        data,
    }
}

/// What was measured on disk, and how.
pub struct Disk {
    /// Bytes attributed to the samples.
    pub usage: DirUsage,
    /// How they were obtained (printed with the results).
    pub method: String,
    /// Per component (index, chunks, WAL, ...) of the measured directory:
    /// apparent bytes and number of files.
    pub parts: BTreeMap<String, (u64, u64)>,
}

/// Apparent bytes of the files under `dir`, grouped by `component`
/// (given the path relative to `dir`).
fn breakdown(dir: &Path, component: fn(&[String]) -> String) -> BTreeMap<String, (u64, u64)> {
    fn walk(
        dir: &Path,
        rel: &mut Vec<String>,
        component: fn(&[String]) -> String,
        out: &mut BTreeMap<String, (u64, u64)>,
    ) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            rel.push(e.file_name().to_string_lossy().into_owned());
            if meta.is_dir() {
                walk(&e.path(), rel, component, out);
            } else if meta.is_file() {
                let e = out.entry(component(rel)).or_default();
                e.0 += meta.len();
                e.1 += 1;
            }
            rel.pop();
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, &mut Vec::new(), component, &mut out);
    out
}

/// Strata: `tsdb/wal/<segment>`, `tsdb/blocks/<tenant>/<block>/<file>`.
fn strata_component(rel: &[String]) -> String {
    match rel {
        [_, w, ..] if w == "wal" => "wal".into(),
        [_, b, _, _, file] if b == "blocks" => file.clone(),
        _ => "other".into(),
    }
}

/// A Prometheus block: `index`, `chunks/<n>`, `meta.json`, `tombstones`.
fn prometheus_component(rel: &[String]) -> String {
    match rel {
        [.., c, _] if c == "chunks" => "chunks".into(),
        [.., file] => file.clone(),
        [] => "other".into(),
    }
}

/// VictoriaMetrics: `data/{small,big}/...` (samples), `indexdb/...`.
fn victoriametrics_component(rel: &[String]) -> String {
    match rel {
        [d, kind, ..] if d == "data" => format!("data/{kind}"),
        [first, ..] => first.clone(),
        [] => "other".into(),
    }
}

impl Target {
    /// Fallback when the receiver cannot be asked to persist: a graceful
    /// stop (SIGTERM), then the whole data dir (WAL included).
    fn stop_and_measure(&mut self, why: &str) -> Disk {
        self.proc.stop(Duration::from_secs(120));
        self.measure(
            &self.data.clone(),
            format!("whole data dir after graceful stop ({why})"),
        )
    }

    /// Measures `dir` with this receiver's component breakdown.
    fn measure(&self, dir: &Path, method: String) -> Disk {
        let component = match self.kind {
            Kind::Strata => strata_component,
            Kind::Prometheus => prometheus_component,
            Kind::VictoriaMetrics => victoriametrics_component,
        };
        Disk {
            usage: dir_usage(dir),
            method,
            parts: breakdown(dir, component),
        }
    }

    /// Makes the receiver persist what it holds, and measures it. Strata:
    /// `POST /api/v1/admin/tsdb/flush` then the data dir (falls back to a
    /// graceful stop when the endpoint is missing). Prometheus: a TSDB
    /// snapshot including the head (`POST /api/v1/admin/tsdb/snapshot`),
    /// i.e. the compacted block it would write, without the WAL.
    /// VictoriaMetrics: `/internal/force_flush` then the data dir.
    pub fn flush_and_measure(&mut self) -> Disk {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(600))
            .build()
            .expect("http client");
        match self.kind {
            Kind::Strata => {
                let r = client
                    .post(format!("{}/api/v1/admin/tsdb/flush", self.url))
                    .send();
                match r {
                    Ok(r) if r.status().is_success() => self.measure(
                        &self.data.clone(),
                        "data dir after POST /api/v1/admin/tsdb/flush".into(),
                    ),
                    Ok(r) => self.stop_and_measure(&format!("flush endpoint: HTTP {}", r.status())),
                    Err(e) => self.stop_and_measure(&format!("flush endpoint: {e}")),
                }
            }
            Kind::Prometheus => {
                let r = client
                    .post(format!(
                        "{}/api/v1/admin/tsdb/snapshot?skip_head=false",
                        self.url
                    ))
                    .send()
                    .and_then(|r| r.json::<serde_json::Value>());
                match r {
                    Ok(v) if v["data"]["name"].is_string() => {
                        let name = v["data"]["name"].as_str().unwrap_or_default();
                        self.measure(
                            &self.data.join("snapshots").join(name),
                            "TSDB snapshot incl. head (block: chunks+index, no WAL)".into(),
                        )
                    }
                    Ok(v) => self.stop_and_measure(&format!("snapshot failed: {v}")),
                    Err(e) => self.stop_and_measure(&format!("snapshot failed: {e}")),
                }
            }
            Kind::VictoriaMetrics => {
                let ok = client
                    .get(format!("{}/internal/force_flush", self.url))
                    .send()
                    .map(|r| r.status().is_success())
                    .unwrap_or(false);
                // Let in-flight part merges settle.
                std::thread::sleep(Duration::from_secs(2));
                let method = if ok {
                    "data dir after /internal/force_flush"
                } else {
                    "data dir (force_flush failed)"
                };
                self.measure(&self.data.clone(), method.into())
            }
        }
    }
}
