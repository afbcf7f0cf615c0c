//! Rules on a virtual clock: Strata's real rule manager, PromQL and LogQL
//! engines, notifier and HTTP API over in-memory stores, with an Alertmanager
//! API v2 receiver that belongs to the test (it is the test's observer, like
//! the compliance tester's). Each [`Harness::tick`] evaluates the groups due
//! at a virtual time and waits until the notifier delivered what they sent,
//! so the spec's real timings (minutes) run in milliseconds.

#![allow(dead_code)]

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::Json;
use reqwest::blocking::Client;
use strata::api::AppState;
use strata::config::{Config, RulesConfig};
use strata::logs::MemLogs;
use strata::model::Labels;
use strata::query::promql::{Engine, EngineOptions};
use strata::rules::manager::RuleManager;
use strata::rules::notifier::{Notifier, NotifierOptions};
use strata::storage::mem::MemMetrics;

/// One alert as the receiver got it.
#[derive(Debug, Clone)]
pub struct Received {
    /// Virtual time (ms) of the evaluation that sent it.
    pub at: i64,
    /// The alert's JSON (labels, annotations, startsAt, endsAt, generatorURL).
    pub alert: serde_json::Value,
}

impl Received {
    /// A label's value ("" when absent).
    pub fn label(&self, name: &str) -> &str {
        self.alert["labels"][name].as_str().unwrap_or("")
    }

    /// An annotation's value ("" when absent).
    pub fn annotation(&self, name: &str) -> &str {
        self.alert["annotations"][name].as_str().unwrap_or("")
    }

    /// `startsAt` in ms.
    pub fn starts_at(&self) -> i64 {
        rfc3339_ms(&self.alert["startsAt"])
    }

    /// `endsAt` in ms.
    pub fn ends_at(&self) -> i64 {
        rfc3339_ms(&self.alert["endsAt"])
    }

    /// True when `endsAt` is not after the evaluation that sent it.
    pub fn resolved(&self) -> bool {
        self.ends_at() <= self.at
    }
}

/// Parses an RFC 3339 JSON string to ms (panics on anything else: the
/// payload is what is under test).
pub fn rfc3339_ms(v: &serde_json::Value) -> i64 {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("not a time string: {v}"));
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("bad RFC 3339 time {s:?}: {e}"))
        .timestamp_millis()
}

/// The rules stack on a virtual clock.
pub struct Harness {
    /// Metrics store (recorded series, `ALERTS`).
    pub metrics: Arc<MemMetrics>,
    /// Log store the LogQL rules read.
    pub logs: Arc<MemLogs>,
    /// The PromQL engine over `metrics`.
    pub promql: Arc<Engine>,
    /// The rule manager under test.
    pub manager: Arc<RuleManager>,
    /// Its notifier.
    pub notifier: Arc<Notifier>,
    /// Base URL of Strata's HTTP API.
    pub base: String,
    /// HTTP client for the API.
    pub client: Client,
    received: Arc<Mutex<Vec<Received>>>,
    now: Arc<AtomicI64>,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    rt: tokio::runtime::Runtime,
}

impl Harness {
    /// Starts the stack with `rules` (file paths relative to `base_dir`).
    pub fn start(mut rules: RulesConfig, base_dir: &Path) -> Harness {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let now = Arc::new(AtomicI64::new(0));
        let (stop, stop_rx) = tokio::sync::watch::channel(false);

        // The Alertmanager API v2 receiver.
        let sink = received.clone();
        let clock = now.clone();
        let receiver = axum::Router::new().route(
            "/api/v2/alerts",
            post(move |Json(body): Json<Vec<serde_json::Value>>| {
                let sink = sink.clone();
                let at = clock.load(Ordering::SeqCst);
                async move {
                    sink.lock()
                        .unwrap()
                        .extend(body.into_iter().map(|alert| Received { at, alert }));
                    ""
                }
            }),
        );
        let am = serve(&rt, receiver, stop_rx.clone());
        rules.alertmanagers = vec![am];

        let metrics = Arc::new(MemMetrics::new());
        let logs = Arc::new(MemLogs::new());
        let config = Config {
            rules: rules.clone(),
            ..Config::default()
        };
        let promql = Arc::new(Engine::new(metrics.clone(), EngineOptions::default()));
        let notifier = Notifier::new(NotifierOptions {
            alertmanagers: rules.alertmanagers.clone(),
            queue_capacity: rules.notification_queue_capacity,
            max_batch: 64,
            timeout: Duration::from_secs(5),
            max_attempts: 3,
            external_labels: Labels::from_pairs(rules.external_labels.clone()),
        });
        let logql = Arc::new(strata::query::logql::Engine::new(
            logs.clone(),
            (&config.logql).into(),
        ));
        let manager = RuleManager::new(
            rules,
            base_dir,
            promql.clone(),
            Some(logql),
            metrics.clone(),
            metrics.clone(),
            notifier.clone(),
        );
        manager.reload().expect("rules load");
        let mut rx = stop_rx.clone();
        rt.spawn(notifier.clone().run(async move {
            let _ = rx.wait_for(|s| *s).await;
        }));
        let state = AppState {
            config: Arc::new(config),
            metrics_reader: metrics.clone(),
            metrics_writer: metrics.clone(),
            metrics_admin: metrics.clone(),
            promql: promql.clone(),
            logs_reader: logs.clone(),
            logs_writer: logs.clone(),
            logs_admin: None,
            rules: Some(manager.clone()),
            shutdown: Arc::new(tokio::sync::watch::channel(false).0),
        };
        let base = serve(&rt, strata::api::router(state), stop_rx);
        Harness {
            metrics,
            logs,
            promql,
            manager,
            notifier,
            base,
            client: Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            received,
            now,
            stop: Some(stop),
            rt,
        }
    }

    /// Evaluates the groups due at virtual time `t` (ms) and waits until
    /// the notifier delivered every alert they sent.
    pub fn tick(&self, t: i64) {
        self.now.store(t, Ordering::SeqCst);
        self.manager.tick(t);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.notifier.is_idle() {
            assert!(Instant::now() < deadline, "notifier did not deliver in 10s");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Ticks every `step` ms from `from` (inclusive) to `to` (exclusive).
    pub fn run(&self, from: i64, to: i64, step: i64) {
        let mut t = from;
        while t < to {
            self.tick(t);
            t += step;
        }
    }

    /// Alerts received so far (and forgets them).
    pub fn take_received(&self) -> Vec<Received> {
        std::mem::take(&mut *self.received.lock().unwrap())
    }

    /// GET returning status and body text.
    pub fn get_text(&self, path: &str, tenant: Option<&str>) -> (u16, String) {
        let mut r = self.client.get(format!("{}{path}", self.base));
        if let Some(t) = tenant {
            r = r.header("X-Scope-OrgID", t);
        }
        let resp = r.send().unwrap();
        (resp.status().as_u16(), resp.text().unwrap())
    }

    /// GET returning status and JSON body.
    pub fn get_json(&self, path: &str, tenant: Option<&str>) -> (u16, serde_json::Value) {
        let (st, body) = self.get_text(path, tenant);
        let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        (st, v)
    }

    /// POST without a body, returning status and body text.
    pub fn post(&self, path: &str) -> (u16, String) {
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .send()
            .unwrap();
        (resp.status().as_u16(), resp.text().unwrap())
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(true);
        }
    }
}

/// Serves `app` on 127.0.0.1:0 until `stop`; returns its base URL.
fn serve(
    rt: &tokio::runtime::Runtime,
    app: axum::Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> String {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
    });
    format!("http://{addr}")
}
