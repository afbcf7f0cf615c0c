//! Where the bench pushes and queries: the log store in this process, or a
//! spawned `strata serve` over the Loki HTTP API.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use serde_json::Value;

use strata::api::loki::proto::{EntryAdapter, PushRequest, StreamAdapter, Timestamp};
use strata::config::LokiConfig;
use strata::logs::level::LevelDetector;
use strata::logs::{LogReader, LogWriter, PushStream};
use strata::model::Tenant;
use strata::query::logql::{Direction, Engine, LogParams, QueryResult, RangeParams};
use strata::storage::logs::{LogStore, LogStoreOptions};

/// A log query's answer: entries returned, and the warning of a partial
/// result if any.
pub struct LogAnswer {
    pub entries: usize,
    pub warning: Option<String>,
}

/// One target of the bench.
pub trait Sink {
    /// What is measured, for the header line.
    fn describe(&self) -> String;
    /// Pushes the batches on `threads` threads and returns the wall time
    /// from the first push to the last acknowledgement.
    fn push(&self, batches: Vec<Vec<PushStream>>, threads: usize) -> Duration;
    /// After each round (the in-process store runs its maintenance here;
    /// the server has its own thread).
    fn after_round(&self, now_ns: i64);
    /// CPU seconds the ingesting process has used.
    fn cpu_seconds(&self) -> f64;
    /// True when ingest CPU is counted over the whole ingest phase (a
    /// server works in the background between rounds), false when only
    /// over the push windows (this process also generates the data).
    fn cpu_over_whole_phase(&self) -> bool;
    /// Writes every head into segments.
    fn flush(&self);
    /// Bytes on disk (WAL, segments and index).
    fn disk_bytes(&self) -> u64;
    /// A backward log query over `[start, end)`.
    fn query_logs(&self, query: &str, start: i64, end: i64, limit: usize) -> LogAnswer;
    /// A range metric query: `(level label, sum of the points)` per series.
    fn metric_sums(&self, query: &str, start: i64, end: i64, step: i64) -> Vec<(String, f64)>;
    /// Segment blocks decompressed so far.
    fn blocks_read(&self) -> u64;
    /// CPU seconds spent writing segments so far (cut heads: blocks, token
    /// filters, full-text index), the rest of ingest CPU being the push
    /// path: the maintenance thread's, plus the final flush's.
    fn segment_write_cpu_seconds(&self) -> f64;
    /// CPU seconds of `detected_level` discovery, when this sink runs it
    /// on its own (in process: the ingester's step before the store).
    fn level_detection_cpu_seconds(&self) -> Option<f64> {
        None
    }
    /// Index stats of `{env="prod"}`: streams, chunks, entries.
    fn index_stats(&self, start: i64, end: i64) -> (u64, u64, u64);
    /// Stops (the server, gracefully) and opens the store for inspection.
    fn close(self: Box<Self>) -> Arc<LogStore>;
}

/// `LogWriter::push` and the LogQL engine on a store in this process.
pub struct InProcess {
    store: Arc<LogStore>,
    tenant: Tenant,
    opts: LogStoreOptions,
    /// CPU time of maintenance and flushes (segment writing).
    writing: std::sync::Mutex<f64>,
    /// `detected_level` discovery as the Loki ingester runs it
    /// (`STRATA_BENCH_LEVELS`, on unless 0), and its CPU time.
    levels: Option<LevelDetector>,
    level_cpu: std::sync::Mutex<f64>,
}

/// CPU seconds of the calling thread, to the nanosecond.
fn thread_cpu_seconds() -> f64 {
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: clock_gettime fills the struct it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

impl InProcess {
    pub fn open(dir: &Path) -> InProcess {
        let opts = LogStoreOptions::default();
        InProcess::over(Arc::new(
            LogStore::open(dir, opts.clone()).expect("open store"),
        ))
    }

    /// Queries (and pushes) through a store already open.
    pub fn over(store: Arc<LogStore>) -> InProcess {
        InProcess {
            store,
            tenant: Tenant::new("bench").unwrap(),
            opts: LogStoreOptions::default(),
            writing: std::sync::Mutex::new(0.0),
            levels: (std::env::var("STRATA_BENCH_LEVELS").as_deref() != Ok("0"))
                .then(|| LevelDetector::new(&LokiConfig::default().log_level_fields)),
            level_cpu: std::sync::Mutex::new(0.0),
        }
    }

    fn engine(&self) -> Engine {
        Engine::new(self.store.clone(), Default::default())
    }
}

/// CPU seconds of this process.
pub fn own_cpu_seconds() -> f64 {
    rusage_cpu(libc::RUSAGE_SELF)
}

/// CPU seconds of this process or thread (`RUSAGE_SELF`, `RUSAGE_THREAD`).
fn rusage_cpu(who: libc::c_int) -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given.
    unsafe { libc::getrusage(who, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

impl InProcess {
    /// Runs `f` on this thread, adding its CPU time to `writing`.
    fn writing<T>(&self, f: impl FnOnce() -> T) -> T {
        let c0 = rusage_cpu(libc::RUSAGE_THREAD);
        let out = f();
        *self.writing.lock().unwrap() += rusage_cpu(libc::RUSAGE_THREAD) - c0;
        out
    }
}

impl Sink for InProcess {
    fn describe(&self) -> String {
        format!(
            "LogWriter::push on LogStore in process (fsync on), head cut at {} MB",
            self.opts.head_max_bytes >> 20
        )
    }

    fn push(&self, batches: Vec<Vec<PushStream>>, threads: usize) -> Duration {
        let t = Instant::now();
        let per = batches.len().div_ceil(threads);
        let mut it = batches.into_iter();
        std::thread::scope(|s| {
            for _ in 0..threads {
                let part: Vec<_> = it.by_ref().take(per).collect();
                s.spawn(move || {
                    for mut b in part {
                        if let Some(d) = &self.levels {
                            let c0 = thread_cpu_seconds();
                            for st in &mut b {
                                d.annotate(&st.labels, &mut st.entries);
                            }
                            *self.level_cpu.lock().unwrap() += thread_cpu_seconds() - c0;
                        }
                        let out = self.store.push(&self.tenant, b).expect("push");
                        assert!(out.rejected.is_empty());
                    }
                });
            }
        });
        t.elapsed()
    }

    fn after_round(&self, now_ns: i64) {
        self.writing(|| self.store.maintain(now_ns).expect("maintain"));
    }

    fn cpu_seconds(&self) -> f64 {
        own_cpu_seconds()
    }

    fn cpu_over_whole_phase(&self) -> bool {
        false
    }

    fn level_detection_cpu_seconds(&self) -> Option<f64> {
        self.levels
            .as_ref()
            .map(|_| *self.level_cpu.lock().unwrap())
    }

    fn flush(&self) {
        self.writing(|| self.store.flush().expect("flush"));
    }

    fn disk_bytes(&self) -> u64 {
        self.store.disk_bytes()
    }

    fn query_logs(&self, query: &str, start: i64, end: i64, limit: usize) -> LogAnswer {
        let p = LogParams {
            start,
            end,
            limit,
            direction: Direction::Backward,
        };
        match self.engine().query_logs(&self.tenant, query, p) {
            Ok(QueryResult::Streams(s)) => LogAnswer {
                entries: s.iter().map(|s| s.entries.len()).sum(),
                warning: None,
            },
            other => panic!("log query {query} failed: {other:?}"),
        }
    }

    fn metric_sums(&self, query: &str, start: i64, end: i64, step: i64) -> Vec<(String, f64)> {
        let rp = RangeParams { start, end, step };
        match self
            .engine()
            .query(&self.tenant, query, rp, false, (100, Direction::Backward))
        {
            Ok(QueryResult::Matrix(series)) => series
                .iter()
                .map(|s| {
                    (
                        s.labels.get("level").unwrap_or("?").to_string(),
                        s.points.iter().map(|p| p.1).sum(),
                    )
                })
                .collect(),
            other => panic!("metric query failed: {other:?}"),
        }
    }

    fn blocks_read(&self) -> u64 {
        self.store.blocks_read()
    }

    fn segment_write_cpu_seconds(&self) -> f64 {
        *self.writing.lock().unwrap()
    }

    fn index_stats(&self, start: i64, end: i64) -> (u64, u64, u64) {
        let st = self.store.stats(&self.tenant, &[], start, end).unwrap();
        (st.streams, st.chunks, st.entries)
    }

    fn close(self: Box<Self>) -> Arc<LogStore> {
        self.store
    }
}

/// A `strata serve` child process and an HTTP client to it.
pub struct HttpSink {
    child: Child,
    base: String,
    data_dir: PathBuf,
    client: reqwest::blocking::Client,
    /// Server CPU during `POST /flush` (nothing else runs then).
    flush_cpu: std::sync::Mutex<f64>,
}

/// Server configuration: everything default except where it listens, where
/// it keeps its data, and a query timeout long enough for the whole-range
/// queries (so none is cut short into a partial result).
fn server_config(addr: &str, data_dir: &Path) -> String {
    format!(
        "listen: [\"{addr}\"]\ndata_dir: {}\nloki:\n  query_timeout: 30m\n",
        data_dir.display()
    )
}

impl HttpSink {
    /// CPU seconds of the server's log-store maintenance thread (it cuts
    /// heads into segments).
    fn maintenance_cpu_seconds(&self) -> f64 {
        let task = format!("/proc/{}/task", self.child.id());
        std::fs::read_dir(&task)
            .expect("server tasks")
            .flatten()
            .filter(|t| {
                // The thread's name, cut to 15 bytes by the kernel.
                std::fs::read_to_string(t.path().join("comm"))
                    .is_ok_and(|c| "logs-maintenance".starts_with(c.trim()))
            })
            .map(|t| stat_cpu(&t.path().join("stat")))
            .sum()
    }

    /// Starts the release `strata` binary with its data under `root`.
    pub fn start(root: &Path) -> HttpSink {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let data_dir = root.join("store");
        std::fs::create_dir_all(&data_dir).unwrap();
        let cfg = root.join("strata.yaml");
        std::fs::write(&cfg, server_config(&addr, &data_dir)).unwrap();
        let log = std::fs::File::create(root.join("strata.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("serve")
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn strata serve");
        let sink = HttpSink {
            child,
            base: format!("http://{addr}"),
            data_dir,
            flush_cpu: std::sync::Mutex::new(0.0),
            client: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(3600))
                .build()
                .unwrap(),
        };
        let t = Instant::now();
        while sink
            .client
            .get(format!("{}/ready", sink.base))
            .send()
            .map(|r| !r.status().is_success())
            .unwrap_or(true)
        {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "strata did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        sink
    }

    /// A sample without labels from the server's `/metrics` (0 when absent).
    fn metric(&self, name: &str) -> f64 {
        let text = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .and_then(|r| r.text())
            .expect("metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    }

    fn get(&self, path: &str, params: &[(&str, String)]) -> Value {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .header("X-Scope-OrgID", "bench")
            .query(params)
            .send()
            .expect("query");
        let status = r.status();
        let text = r.text().unwrap();
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).expect("JSON answer")
    }
}

/// The snappy-compressed protobuf body of one push.
fn push_body(batch: &[PushStream]) -> Vec<u8> {
    let req = PushRequest {
        streams: batch
            .iter()
            .map(|s| StreamAdapter {
                labels: format!(
                    "{{{}}}",
                    s.labels
                        .iter()
                        .map(|l| format!("{}={:?}", l.name, l.value))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                entries: s
                    .entries
                    .iter()
                    .map(|e| EntryAdapter {
                        timestamp: Some(Timestamp {
                            seconds: e.ts.div_euclid(1_000_000_000),
                            nanos: e.ts.rem_euclid(1_000_000_000) as i32,
                        }),
                        line: e.line.clone(),
                        structured_metadata: Vec::new(),
                        parsed: Vec::new(),
                    })
                    .collect(),
                hash: 0,
            })
            .collect(),
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy")
}

/// CPU seconds in a `/proc/<pid>/stat` or `/proc/<pid>/task/<tid>/stat`
/// file (0 when the thread is gone).
fn stat_cpu(path: &Path) -> f64 {
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // Fields after the command name: state is the first, utime the 12th
    // and stime the 13th (stat(5) fields 14 and 15).
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// Sizes of every file under `dir`.
fn du(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => du(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

impl Sink for HttpSink {
    fn describe(&self) -> String {
        format!(
            "snappy protobuf POST /loki/api/v1/push to a spawned `strata serve` (pid {}, {} build, default config but query_timeout 30m), queries through /loki/api/v1/query_range",
            self.child.id(),
            if cfg!(debug_assertions) { "debug" } else { "release" }
        )
    }

    fn push(&self, batches: Vec<Vec<PushStream>>, threads: usize) -> Duration {
        let bodies: Vec<Vec<u8>> = batches.iter().map(|b| push_body(b)).collect();
        drop(batches);
        let per = bodies.len().div_ceil(threads);
        let mut it = bodies.into_iter();
        let url = format!("{}/loki/api/v1/push", self.base);
        let t = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..threads {
                let part: Vec<_> = it.by_ref().take(per).collect();
                let (client, url) = (&self.client, &url);
                s.spawn(move || {
                    for body in part {
                        let r = client
                            .post(url)
                            .header("Content-Type", "application/x-protobuf")
                            .header("X-Scope-OrgID", "bench")
                            .body(body)
                            .send()
                            .expect("push");
                        let status = r.status().as_u16();
                        assert_eq!(status, 204, "push: {}", r.text().unwrap_or_default());
                    }
                });
            }
        });
        t.elapsed()
    }

    fn after_round(&self, _now_ns: i64) {}

    fn cpu_seconds(&self) -> f64 {
        stat_cpu(Path::new(&format!("/proc/{}/stat", self.child.id())))
    }

    fn cpu_over_whole_phase(&self) -> bool {
        true
    }

    fn flush(&self) {
        // The flush may wait for a segment the maintenance thread is
        // writing: that thread's CPU is counted with it already, so only the
        // rest of the server's CPU over the flush is added here.
        let (c0, m0) = (self.cpu_seconds(), self.maintenance_cpu_seconds());
        let r = self
            .client
            .post(format!("{}/flush", self.base))
            .send()
            .expect("flush");
        let (c1, m1) = (self.cpu_seconds(), self.maintenance_cpu_seconds());
        *self.flush_cpu.lock().unwrap() += (c1 - c0) - (m1 - m0);
        assert_eq!(r.status().as_u16(), 204, "flush: {}", r.text().unwrap());
    }

    fn disk_bytes(&self) -> u64 {
        du(&self.data_dir.join("logs"))
    }

    fn query_logs(&self, query: &str, start: i64, end: i64, limit: usize) -> LogAnswer {
        let v = self.get(
            "/loki/api/v1/query_range",
            &[
                ("query", query.to_string()),
                ("start", start.to_string()),
                ("end", end.to_string()),
                ("limit", limit.to_string()),
                ("direction", "backward".into()),
            ],
        );
        let entries = v["data"]["result"]
            .as_array()
            .map(|r| {
                r.iter()
                    .map(|s| s["values"].as_array().map_or(0, |v| v.len()))
                    .sum()
            })
            .unwrap_or(0);
        LogAnswer {
            entries,
            warning: v["warnings"][0].as_str().map(String::from),
        }
    }

    fn metric_sums(&self, query: &str, start: i64, end: i64, step: i64) -> Vec<(String, f64)> {
        let v = self.get(
            "/loki/api/v1/query_range",
            &[
                ("query", query.to_string()),
                ("start", start.to_string()),
                ("end", end.to_string()),
                ("step", format!("{}ms", step / 1_000_000)),
            ],
        );
        if let Some(w) = v["warnings"][0].as_str() {
            println!("  (metric query warning: {w})");
        }
        v["data"]["result"]
            .as_array()
            .expect("a matrix")
            .iter()
            .map(|s| {
                let sum = s["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p[1].as_str().unwrap().parse::<f64>().unwrap())
                    .sum();
                (
                    s["metric"]["level"].as_str().unwrap_or("?").to_string(),
                    sum,
                )
            })
            .collect()
    }

    fn blocks_read(&self) -> u64 {
        self.metric("strata_logs_blocks_read_total") as u64
    }

    fn segment_write_cpu_seconds(&self) -> f64 {
        self.maintenance_cpu_seconds() + *self.flush_cpu.lock().unwrap()
    }

    fn index_stats(&self, start: i64, end: i64) -> (u64, u64, u64) {
        let v = self.get(
            "/loki/api/v1/index/stats",
            &[
                ("query", "{env=\"prod\"}".into()),
                ("start", start.to_string()),
                ("end", end.to_string()),
            ],
        );
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        (n("streams"), n("chunks"), n("entries"))
    }

    fn close(mut self: Box<Self>) -> Arc<LogStore> {
        // SAFETY: kill with a pid this process spawned and still owns.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let t = Instant::now();
        while self.child.try_wait().ok().flatten().is_none() {
            if t.elapsed() > Duration::from_secs(120) {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.wait();
        Arc::new(
            LogStore::open(&self.data_dir.join("logs"), LogStoreOptions::default())
                .expect("open the server's store"),
        )
    }
}

impl Drop for HttpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
