//! Sends alerts to Alertmanager's API v2 (`POST /api/v2/alerts`): a bounded
//! queue (drops counted), batches, every configured Alertmanager, retries
//! with backoff, external labels added.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::group::OutgoingAlert;
use crate::model::Labels;

/// Notifier settings.
#[derive(Debug, Clone)]
pub struct NotifierOptions {
    /// Base URLs of the Alertmanagers (e.g. `http://127.0.0.1:9093`).
    pub alertmanagers: Vec<String>,
    /// Alerts queued at most; the oldest are dropped beyond it.
    pub queue_capacity: usize,
    /// Alerts per request.
    pub max_batch: usize,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Attempts per batch and Alertmanager.
    pub max_attempts: u32,
    /// Labels added to every alert that lacks them.
    pub external_labels: Labels,
}

/// The notification queue and its sender task.
pub struct Notifier {
    opts: NotifierOptions,
    queue: Mutex<VecDeque<OutgoingAlert>>,
    /// Alerts taken off the queue and not yet delivered (or given up);
    /// changed under the queue's lock so [`Notifier::is_idle`] is exact.
    in_flight: AtomicUsize,
    wake: Notify,
    client: reqwest::Client,
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// The JSON body Alertmanager's API v2 takes.
pub fn alerts_json(alerts: &[OutgoingAlert], external: &Labels) -> serde_json::Value {
    serde_json::Value::Array(
        alerts
            .iter()
            .map(|a| {
                let mut labels = serde_json::Map::new();
                for l in external.iter() {
                    labels.insert(l.name.clone(), l.value.clone().into());
                }
                for l in a.labels.iter() {
                    labels.insert(l.name.clone(), l.value.clone().into());
                }
                serde_json::json!({
                    "labels": labels,
                    "annotations": a.annotations,
                    "startsAt": rfc3339(a.starts_at),
                    "endsAt": rfc3339(a.ends_at),
                    "generatorURL": a.generator_url,
                })
            })
            .collect(),
    )
}

impl Notifier {
    /// A notifier; call [`Notifier::run`] on a runtime to send.
    pub fn new(opts: NotifierOptions) -> Arc<Notifier> {
        let client = reqwest::Client::builder()
            .timeout(opts.timeout)
            .build()
            .unwrap_or_default();
        Arc::new(Notifier {
            opts,
            queue: Mutex::new(VecDeque::new()),
            in_flight: AtomicUsize::new(0),
            wake: Notify::new(),
            client,
        })
    }

    /// Queues alerts; drops the oldest beyond the capacity.
    pub fn send(&self, alerts: Vec<OutgoingAlert>) {
        if alerts.is_empty() || self.opts.alertmanagers.is_empty() {
            return;
        }
        let mut q = self.queue.lock();
        q.extend(alerts);
        let over = q.len().saturating_sub(self.opts.queue_capacity);
        if over > 0 {
            q.drain(..over);
            metrics::counter!("strata_notifications_dropped_total").increment(over as u64);
        }
        metrics::gauge!("strata_notifications_queue_length").set(q.len() as f64);
        drop(q);
        self.wake.notify_one();
    }

    /// Alerts waiting to be sent.
    pub fn queue_len(&self) -> usize {
        self.queue.lock().len()
    }

    /// True when no alert is queued or being sent (every alert handed to
    /// [`Notifier::send`] so far was delivered or given up).
    pub fn is_idle(&self) -> bool {
        let q = self.queue.lock();
        q.is_empty() && self.in_flight.load(Ordering::SeqCst) == 0
    }

    /// Sends queued alerts until `stop` resolves.
    pub async fn run(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = self.wake.notified() => {}
            }
            loop {
                let batch: Vec<OutgoingAlert> = {
                    let mut q = self.queue.lock();
                    let n = q.len().min(self.opts.max_batch);
                    self.in_flight.fetch_add(n, Ordering::SeqCst);
                    q.drain(..n).collect()
                };
                if batch.is_empty() {
                    break;
                }
                metrics::gauge!("strata_notifications_queue_length").set(self.queue_len() as f64);
                let body = alerts_json(&batch, &self.opts.external_labels);
                for am in &self.opts.alertmanagers {
                    self.post(am, &body, batch.len()).await;
                }
                let q = self.queue.lock();
                self.in_flight.fetch_sub(batch.len(), Ordering::SeqCst);
                drop(q);
            }
        }
    }

    async fn post(&self, am: &str, body: &serde_json::Value, n: usize) {
        let url = format!("{}/api/v2/alerts", am.trim_end_matches('/'));
        let mut backoff = Duration::from_millis(100);
        for attempt in 1..=self.opts.max_attempts.max(1) {
            match self.client.post(&url).json(body).send().await {
                Ok(r) if r.status().is_success() => {
                    metrics::counter!("strata_notifications_sent_total").increment(n as u64);
                    return;
                }
                Ok(r) => {
                    tracing::warn!(url, status = %r.status(), attempt, "alertmanager refused alerts")
                }
                Err(e) => tracing::warn!(url, error = %e, attempt, "sending alerts failed"),
            }
            metrics::counter!("strata_notifications_errors_total").increment(1);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        metrics::counter!("strata_notifications_dropped_total").increment(n as u64);
    }
}
