//! The Loki face: push (protobuf and JSON), the query API Grafana reads
//! (`query`, `query_range`, labels, series, index stats and volume,
//! detected labels and fields, `format_query`) and live tail over WebSocket
//! or Server-Sent Events. Every route is also served under the legacy
//! `/api/prom` prefix where Grafana and old clients use it.
//!
//! # Divergences from Loki (chosen on purpose)
//! - Errors are plain text as Loki writes them; messages of our own (limits)
//!   name the config option.
//! - `stats` carries the bytes and lines this query read and its execution
//!   time; the chunk and cache counters Loki has no equivalent for are 0.
//! - `query` and `query_range` read their range in
//!   `loki.split_queries_by_interval` slices; at `loki.query_timeout` they
//!   stop and answer 200 with what they read and a `warnings` entry naming
//!   the range read (Loki fails with 504). A range query keeps only the
//!   steps whose windows were read whole. Metadata queries past the
//!   timeout, and reads still running a quarter of it later, get Loki's 504.
//! - Limit messages are Loki's words; `max_query_bytes_read` is checked up
//!   front from the index (as Loki) and again while reading.
//! - `index/volume` and `detected_*` are computed from the streams the
//!   selector matches in the range (no separate volume index).
//! - Live tail reports `dropped_entries` only as a count of pushes missed
//!   by a lagging reader (Loki names each dropped entry).

mod decode;
mod json;
mod meta;
pub mod proto;
mod push;
mod query;
mod tail;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use super::prom::params::Form;
use super::prom::QueryLimiter;
use super::AppState;
use crate::ingest::logs::LogIngester;
use crate::model::Tenant;

/// Loki requests by endpoint (`push`, `query`, `query_range`, ...) and outcome.
pub const LOKI_REQUESTS_TOTAL: &str = "strata_loki_requests_total";
/// Loki query latency by endpoint.
pub const LOKI_QUERY_DURATION_SECONDS: &str = "strata_loki_query_duration_seconds";
/// Live-tail connections open.
pub const LOKI_TAIL_CONNECTIONS: &str = "strata_loki_tail_connections";
/// Queries answered with partial results (cut short at their timeout).
pub const LOKI_PARTIAL_RESULTS_TOTAL: &str = "strata_loki_partial_results_total";

/// Loki's message when a query runs out of time (504).
pub(crate) const TIMED_OUT: &str = "Request timed out, decrease the duration of the request or add more label matchers (prefer exact match over regex match) to reduce the amount of data processed.";

/// State of the Loki routes.
#[derive(Clone)]
pub struct LokiState {
    /// Shared state.
    pub app: AppState,
    /// Push validation, limits and the store.
    pub ingester: Arc<LogIngester>,
    /// Concurrent queries per tenant.
    pub queries: Arc<QueryLimiter>,
    /// Open live tails per tenant.
    pub tails: Arc<tail::TailCounter>,
}

impl LokiState {
    /// Builds the Loki state over the shared state.
    pub fn new(app: AppState) -> LokiState {
        let cfg = app.config.loki.clone();
        LokiState {
            ingester: Arc::new(LogIngester::new(cfg.clone(), app.logs_writer.clone())),
            queries: Arc::new(QueryLimiter::new(cfg.max_concurrent_queries_per_tenant)),
            tails: Arc::new(tail::TailCounter::new(cfg.max_concurrent_tail_requests)),
            app,
        }
    }
}

/// A Loki error: status and plain-text message, as Loki writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LokiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Message (the body).
    pub message: String,
}

impl LokiError {
    /// A 400.
    pub fn bad(message: impl Into<String>) -> LokiError {
        LokiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// Any status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> LokiError {
        LokiError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for LokiError {
    fn into_response(self) -> Response {
        (
            self.status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            self.message,
        )
            .into_response()
    }
}

/// The request's tenant and merged form (URL query plus form body).
pub(crate) async fn request(st: &LokiState, req: Request) -> Result<(Tenant, Form), LokiError> {
    let (parts, body) = req.into_parts();
    let tenant = super::tenant_from_headers(&parts.headers).map_err(LokiError::bad)?;
    let body = super::prom::read_body(
        body,
        &parts.headers,
        st.app.config.limits.max_request_body_bytes,
    )
    .await
    .map_err(|m| LokiError::new(StatusCode::PAYLOAD_TOO_LARGE, m))?;
    Ok((
        tenant,
        Form::parse(&parts.method, &parts.uri, &parts.headers, &body),
    ))
}

/// Runs `f` on a blocking thread under the tenant's concurrency limit,
/// recording latency and outcome for `endpoint`. `f` gets the deadline,
/// `loki.query_timeout` after the request came (queueing included), to stop
/// reading by; one still running a quarter of the timeout (at least 1 s)
/// later is answered with Loki's 504 and left to finish alone.
pub(crate) async fn run_query<T: Send + 'static>(
    st: &LokiState,
    tenant: &Tenant,
    endpoint: &'static str,
    f: impl FnOnce(Instant) -> Result<T, LokiError> + Send + 'static,
) -> Result<T, LokiError> {
    let t0 = Instant::now();
    let timeout = st.app.config.loki.query_timeout.to_std();
    let deadline = t0 + timeout;
    let hard = deadline + (timeout / 4).max(Duration::from_secs(1));
    let timed_out = || LokiError::new(StatusCode::GATEWAY_TIMEOUT, TIMED_OUT);
    let r = async {
        let permit = tokio::time::timeout(timeout, st.queries.acquire(tenant))
            .await
            .map_err(|_| timed_out())?;
        let job = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f(deadline)
        });
        match tokio::time::timeout(hard.saturating_duration_since(Instant::now()), job).await {
            Err(_) => Err(timed_out()),
            Ok(Err(join)) => Err(LokiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("query failed unexpectedly: {join}"),
            )),
            Ok(Ok(r)) => r,
        }
    }
    .await;
    metrics::histogram!(LOKI_QUERY_DURATION_SECONDS, "endpoint" => endpoint)
        .record(t0.elapsed().as_secs_f64());
    count(endpoint, r.as_ref().err().map(|e| e.status));
    r
}

/// Counts a request by endpoint and status class.
pub(crate) fn count(endpoint: &'static str, err: Option<StatusCode>) {
    let outcome = match err {
        None => "success",
        Some(s) if s.is_client_error() => "client_error",
        Some(_) => "server_error",
    };
    metrics::counter!(LOKI_REQUESTS_TOTAL, "endpoint" => endpoint, "outcome" => outcome)
        .increment(1);
}

/// `POST /flush` (Loki's ingester endpoint): writes the log store's heads
/// into segments now; 204 once done.
async fn flush(State(st): State<LokiState>) -> Response {
    let Some(admin) = st.app.logs_admin.clone() else {
        return LokiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "this log store keeps no segments to flush",
        )
        .into_response();
    };
    let r = match tokio::task::spawn_blocking(move || admin.flush()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(LokiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("flush failed: {e}"),
        )),
        Err(e) => Err(LokiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("flush failed unexpectedly: {e}"),
        )),
    };
    count("flush", r.as_ref().err().map(|e| e.status));
    match r {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

/// How long to wait between SSE heartbeats.
pub(crate) const SSE_HEARTBEAT: Duration = Duration::from_secs(15);

/// Loki routes, the query ones also under `/api/prom` (legacy paths).
pub fn routes(app: AppState) -> Router {
    let state = LokiState::new(app);
    let push_route = post(push::push).layer(DefaultBodyLimit::disable());
    let q: Router<LokiState> = Router::new()
        .route("/query", get(query::instant).post(query::instant))
        .route("/query_range", get(query::range).post(query::range))
        .route("/labels", get(meta::labels).post(meta::labels))
        .route("/label", get(meta::labels).post(meta::labels))
        .route("/label/{name}/values", get(meta::label_values))
        .route("/series", get(meta::series).post(meta::series))
        .route(
            "/index/stats",
            get(meta::index_stats).post(meta::index_stats),
        )
        .route("/index/volume", get(meta::volume).post(meta::volume))
        .route(
            "/index/volume_range",
            get(meta::volume_range).post(meta::volume_range),
        )
        .route("/detected_labels", get(meta::detected_labels))
        .route("/detected_fields", get(meta::detected_fields))
        .route(
            "/detected_field/{name}/values",
            get(meta::detected_field_values),
        )
        .route(
            "/format_query",
            get(meta::format_query).post(meta::format_query),
        )
        .route("/status/buildinfo", get(meta::buildinfo))
        .route("/patterns", get(meta::patterns))
        .route("/tail", get(tail::tail));
    Router::new()
        .route("/loki/api/v1/push", push_route.clone())
        .route("/api/prom/push", push_route)
        .route("/ready", get(|| async { "ready\n" }))
        .route("/flush", post(flush))
        .nest("/loki/api/v1", q.clone())
        .nest("/api/prom", q)
        .with_state(state)
}
