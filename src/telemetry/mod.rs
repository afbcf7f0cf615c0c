//! Self-monitoring: the process-wide metrics recorder rendered at `/metrics`
//! in Prometheus text format, and the HTTP request metrics layer.
//!
//! Metrics are declared once per module (STYLE.md rule 10) as `const` names
//! next to the code that records them; this module only owns the recorder.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher as BucketMatcher, PrometheusBuilder, PrometheusHandle};

/// Requests served, by route pattern, method and status code (`status`).
pub const HTTP_REQUESTS_TOTAL: &str = "strata_http_requests_total";
/// Request latency, by route pattern and method.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "strata_http_request_duration_seconds";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Latency buckets in seconds, for every `_seconds` histogram.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Installs the global recorder once and returns its handle. Later calls
/// (tests start several servers in one process) return the same handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(BucketMatcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .expect("bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed by an embedding
            // program; then ours still renders whatever is recorded through it.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Renders every metric in Prometheus text format.
pub fn render() -> String {
    install().render()
}

/// Axum middleware counting requests by route pattern (never the raw path,
/// which would explode cardinality), method and status.
pub async fn track_http(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!(HTTP_REQUESTS_TOTAL, "route" => route.clone(), "method" => method.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(HTTP_REQUEST_DURATION_SECONDS, "route" => route, "method" => method)
        .record(start.elapsed().as_secs_f64());
    resp
}
