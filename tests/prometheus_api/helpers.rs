//! An in-process Strata server on 127.0.0.1:0 with a temporary data
//! directory, and helpers to build remote-write bodies and read JSON.

use std::time::Duration;

use prost::Message;
use reqwest::blocking::{Client, Response};
use strata::api::prom::proto::{v1, v2};
use strata::config::Config;

/// A running server; stopped (gracefully) on drop.
pub struct Server {
    pub base: String,
    pub client: Client,
    rt: tokio::runtime::Runtime,
    running: Option<strata::server::Running>,
    _dir: tempfile::TempDir,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(|_| {})
    }

    pub fn start_with(edit: impl FnOnce(&mut Config)) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config {
            listen: vec!["127.0.0.1:0".into()],
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        edit(&mut cfg);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let running = rt.block_on(strata::server::start(cfg)).unwrap();
        let base = format!("http://{}", running.addrs[0]);
        let client = Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Server {
            base,
            client,
            rt,
            running: Some(running),
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// POSTs a remote-write body with the given headers.
    pub fn write(&self, path: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> Response {
        let mut req = self.client.post(self.url(path)).body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().unwrap()
    }

    /// A v1 snappy write to /api/v1/write, as Prometheus sends it.
    pub fn write_v1(&self, req: &v1::WriteRequest, tenant: Option<&str>) -> Response {
        let mut h = vec![
            ("Content-Encoding", "snappy"),
            ("Content-Type", "application/x-protobuf"),
            ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ];
        if let Some(t) = tenant {
            h.push(("X-Scope-OrgID", t));
        }
        self.write("/api/v1/write", snappy(&req.encode_to_vec()), &h)
    }

    /// GET with query parameters; returns status and parsed JSON.
    pub fn get_json(
        &self,
        path: &str,
        params: &[(&str, &str)],
        tenant: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut req = self.client.get(self.url(path)).query(params);
        if let Some(t) = tenant {
            req = req.header("X-Scope-OrgID", t);
        }
        let resp = req.send().unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().unwrap();
        let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        (status, v)
    }

    /// Raw GET body text.
    pub fn get_text(&self, path: &str, params: &[(&str, &str)]) -> (u16, String) {
        let resp = self
            .client
            .get(self.url(path))
            .query(params)
            .send()
            .unwrap();
        (resp.status().as_u16(), resp.text().unwrap())
    }

    /// Series matching `selector` for `tenant` (label maps).
    pub fn series(&self, selector: &str, tenant: Option<&str>) -> Vec<serde_json::Value> {
        let (status, v) = self.get_json("/api/v1/series", &[("match[]", selector)], tenant);
        assert_eq!(status, 200, "{v}");
        v["data"].as_array().unwrap().clone()
    }

    /// `[t, value]` pairs of `metric` over all time via query_range with a
    /// 1 s step and a raw range selector evaluated at `at` (ms).
    pub fn samples(
        &self,
        selector: &str,
        at_ms: i64,
        window: &str,
        tenant: Option<&str>,
    ) -> Vec<(i64, String)> {
        let q = format!("{selector}[{window}]");
        let t = format!("{}", at_ms as f64 / 1000.0);
        let (status, v) = self.get_json("/api/v1/query", &[("query", &q), ("time", &t)], tenant);
        assert_eq!(status, 200, "{v}");
        let mut out = vec![];
        for s in v["data"]["result"].as_array().unwrap() {
            for p in s["values"].as_array().unwrap() {
                let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                out.push((t, p[1].as_str().unwrap().to_string()));
            }
        }
        out.sort();
        out
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            self.rt
                .block_on(async {
                    tokio::time::timeout(Duration::from_secs(10), r.shutdown()).await
                })
                .ok();
        }
    }
}

pub fn snappy(b: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(b).unwrap()
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A v1 series from label pairs (sent as given) and samples.
pub fn ts(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> v1::TimeSeries {
    v1::TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| v1::Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|&(t, v)| v1::Sample {
                value: v,
                timestamp: t,
            })
            .collect(),
        ..Default::default()
    }
}

pub fn req(series: Vec<v1::TimeSeries>) -> v1::WriteRequest {
    v1::WriteRequest {
        timeseries: series,
        metadata: vec![],
    }
}

/// Builds a v2 request, interning strings into the symbols table.
#[derive(Default)]
pub struct V2Builder {
    pub req: v2::Request,
}

impl V2Builder {
    pub fn new() -> V2Builder {
        V2Builder {
            req: v2::Request {
                symbols: vec![String::new()],
                timeseries: vec![],
            },
        }
    }

    pub fn sym(&mut self, s: &str) -> u32 {
        if let Some(i) = self.req.symbols.iter().position(|x| x == s) {
            return i as u32;
        }
        self.req.symbols.push(s.to_string());
        (self.req.symbols.len() - 1) as u32
    }

    pub fn refs(&mut self, labels: &[(&str, &str)]) -> Vec<u32> {
        labels
            .iter()
            .flat_map(|(n, v)| [self.sym(n), self.sym(v)])
            .collect()
    }

    pub fn body(&self) -> Vec<u8> {
        snappy(&self.req.encode_to_vec())
    }
}

pub const V2_CT: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

pub fn v2_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        ("Content-Encoding", "snappy"),
        ("Content-Type", V2_CT),
        ("X-Prometheus-Remote-Write-Version", "2.0.0"),
    ]
}

pub fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

/// A Prometheus process scraping itself every second and remote-writing to
/// a Strata server; killed on drop.
pub struct PrometheusPeer {
    pub url: String,
    pub strata: Server,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl PrometheusPeer {
    /// None (after saying why) when no `prometheus` binary is installed.
    pub fn start_writing_to(strata: Server) -> Option<PrometheusPeer> {
        let bin = std::env::var("PROMETHEUS_BIN").unwrap_or_else(|_| "prometheus".into());
        if std::process::Command::new(&bin)
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!(
                "skipping: no {bin} binary (apt-get install prometheus, or set PROMETHEUS_BIN)"
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let cfg = format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\nremote_write:\n  - url: {}/api/v1/write\n    queue_config:\n      batch_send_deadline: 1s\n    metadata_config:\n      send_interval: 1s\n",
            strata.base
        );
        std::fs::write(dir.path().join("prometheus.yml"), cfg).unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = std::process::Command::new(&bin)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Some(PrometheusPeer {
            url: format!("http://127.0.0.1:{port}"),
            strata,
            child,
            _dir: dir,
        })
    }
}

impl Drop for PrometheusPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
