//! Acknowledged = durable, end to end: the real binary takes continuous
//! remote writes from several threads and is SIGKILLed at random moments;
//! after every restart every sample of every request that got a 2xx must be
//! queryable with its exact value.
//!
//! Bounded to about two minutes. Knobs: STRATA_DURABILITY_KILLS (default 22,
//! at least 20 are required by the issue), STRATA_DURABILITY_SEED.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message;
use rand::{Rng, SeedableRng};
use strata::api::prom::proto::v1::{Label, Sample, TimeSeries, WriteRequest};

const METRIC: &str = "strata_durability_test";
const WRITERS: usize = 4;
const SERIES_PER_WRITER: usize = 5;
const TIME_BUDGET: Duration = Duration::from_secs(150);

/// The server process; SIGKILLed and reaped when dropped, so a failing
/// assertion never leaves it running.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(data_dir: &Path, log: &Path) -> Server {
        let port = free_port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open server log");
        let child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("start strata");
        let mut server = Server { child, port };
        server.wait_ready();
        server
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn wait_ready(&mut self) {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("poll child") {
                panic!("strata exited before it was ready: {status}");
            }
            if let Ok(r) = client.get(self.url("/-/ready")).send() {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "strata not ready within 60s");
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        // SAFETY: sending a signal to our own child, which has not been reaped.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// One acknowledged sample.
#[derive(Clone, Copy)]
struct Acked {
    writer: usize,
    series: usize,
    ts: i64,
    value: f64,
}

/// What the writers share with the test thread.
struct Shared {
    /// Where writers send; changes at each restart.
    url: Mutex<String>,
    acked: Mutex<Vec<Acked>>,
    acked_requests: AtomicU64,
    failed_requests: AtomicU64,
    stop: AtomicBool,
}

/// Sets `stop` when dropped so writer threads end even if the test panics.
struct StopOnDrop(Arc<Shared>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::SeqCst);
    }
}

fn labels(writer: usize, series: usize) -> Vec<Label> {
    let l = |n: &str, v: String| Label {
        name: n.to_owned(),
        value: v,
    };
    vec![
        l("__name__", METRIC.to_owned()),
        l("series", series.to_string()),
        l("writer", writer.to_string()),
    ]
}

/// Sends requests until told to stop; records the samples of every 2xx.
fn writer(shared: Arc<Shared>, writer: usize, seed: u64) {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut last_ts = 0i64;
    while !shared.stop.load(Ordering::SeqCst) {
        // Strictly increasing timestamps per writer, so every sample is new.
        let ts = now_ms().max(last_ts + 1);
        last_ts = ts;
        let samples: Vec<Acked> = (0..SERIES_PER_WRITER)
            .map(|series| Acked {
                writer,
                series,
                ts,
                // Values with full 53-bit mantissas catch any lossy path.
                value: rng.random::<f64>() * 1e6 - 5e5,
            })
            .collect();
        let req = WriteRequest {
            timeseries: samples
                .iter()
                .map(|s| TimeSeries {
                    labels: labels(s.writer, s.series),
                    samples: vec![Sample {
                        value: s.value,
                        timestamp: s.ts,
                    }],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .expect("snappy");
        let url = shared.url.lock().unwrap().clone();
        let res = client
            .post(format!("{url}/api/v1/write"))
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body)
            .send();
        match res {
            Ok(r) if r.status().is_success() => {
                shared.acked.lock().unwrap().extend(samples);
                shared.acked_requests.fetch_add(1, Ordering::SeqCst);
            }
            Ok(r) if r.status().is_client_error() => {
                panic!(
                    "writer {writer}: server rejected a valid request: {} {}",
                    r.status(),
                    r.text().unwrap_or_default()
                );
            }
            _ => {
                // Killed, restarting or overloaded: not acknowledged, so
                // nothing is promised about these samples.
                shared.failed_requests.fetch_add(1, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Queries every series of the test back; returns `(writer, series) -> ts -> value`.
fn query_all(server: &Server, window_s: u64) -> HashMap<(usize, usize), HashMap<i64, f64>> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let at = (now_ms() + 1000) as f64 / 1000.0;
    let resp = client
        .get(server.url("/api/v1/query"))
        .query(&[
            ("query", format!("{METRIC}[{window_s}s]")),
            ("time", format!("{at:.3}")),
        ])
        .send()
        .expect("query");
    let status = resp.status();
    let body: serde_json::Value = resp.json().expect("query answer is JSON");
    assert!(status.is_success(), "query failed: {status} {body}");
    assert_eq!(body["data"]["resultType"], "matrix", "{body}");
    let mut out = HashMap::new();
    for series in body["data"]["result"].as_array().expect("result array") {
        let metric = &series["metric"];
        let key = |n: &str| -> usize {
            metric[n]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("label {n} missing in {metric}"))
        };
        let points: &mut HashMap<i64, f64> = out.entry((key("writer"), key("series"))).or_default();
        for pair in series["values"].as_array().expect("values") {
            let ts = (pair[0].as_f64().expect("timestamp") * 1000.0).round() as i64;
            let v: f64 = pair[1]
                .as_str()
                .expect("value string")
                .parse()
                .expect("value parses");
            points.insert(ts, v);
        }
    }
    out
}

/// Checks every sample acknowledged before the call is queryable, exactly.
fn verify(server: &Server, shared: &Shared, started_ms: i64) -> usize {
    let acked = shared.acked.lock().unwrap().clone();
    let window_s = ((now_ms() - started_ms) / 1000 + 120) as u64;
    let got = query_all(server, window_s);
    let mut bad = Vec::new();
    for a in &acked {
        let found = got.get(&(a.writer, a.series)).and_then(|p| p.get(&a.ts));
        if found.map(|v| v.to_bits()) != Some(a.value.to_bits()) {
            bad.push(format!(
                "writer={} series={} ts={} want {} got {:?}",
                a.writer, a.series, a.ts, a.value, found
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} acknowledged samples lost or wrong, e.g.:\n{}",
        bad.len(),
        acked.len(),
        bad[..bad.len().min(10)].join("\n")
    );
    acked.len()
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let kills: usize = std::env::var("STRATA_DURABILITY_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(22);
    let seed: u64 = std::env::var("STRATA_DURABILITY_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| now_ms() as u64);
    println!("durability: seed {seed} (STRATA_DURABILITY_SEED to repeat)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let log = tmp.path().join("strata.log");
    let started_ms = now_ms();
    let test_start = Instant::now();

    let mut server = Server::start(&data, &log);
    let shared = Arc::new(Shared {
        url: Mutex::new(server.url("")),
        acked: Mutex::new(Vec::new()),
        acked_requests: AtomicU64::new(0),
        failed_requests: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let _stop = StopOnDrop(shared.clone());
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let shared = shared.clone();
            let seed = seed.wrapping_add(w as u64 + 1);
            thread::spawn(move || writer(shared, w, seed))
        })
        .collect();

    let mut done = 0;
    let mut verified = 0;
    while done < kills {
        // Let the writers run a random while, then kill mid-stream.
        thread::sleep(Duration::from_millis(rng.random_range(150..1200)));
        assert!(
            writers.iter().all(|w| !w.is_finished()),
            "a writer thread died (see its panic above)"
        );
        server.kill();
        done += 1;
        drop(server);
        server = Server::start(&data, &log);
        *shared.url.lock().unwrap() = server.url("");
        verified = verify(&server, &shared, started_ms);
        println!(
            "durability: kill {done}/{kills}: {} acked requests, {verified} acked samples all present",
            shared.acked_requests.load(Ordering::SeqCst)
        );
        if test_start.elapsed() > TIME_BUDGET && done >= 20 {
            println!("durability: time budget reached after {done} kills");
            break;
        }
    }
    shared.stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().expect("writer thread panicked");
    }
    // A last check once nothing is in flight.
    verified = verified.max(verify(&server, &shared, started_ms));
    println!(
        "durability: {done} SIGKILLs, {} acknowledged requests, {verified} acknowledged samples \
         verified exactly, {} requests failed while the server was down, {:.1}s",
        shared.acked_requests.load(Ordering::SeqCst),
        shared.failed_requests.load(Ordering::SeqCst),
        test_start.elapsed().as_secs_f64()
    );
    assert!(
        done >= kills.min(20),
        "only {done} kills fit in the time budget"
    );
    assert!(
        shared.acked_requests.load(Ordering::SeqCst) > 0,
        "no request was ever acknowledged"
    );
}
