//! The Prometheus face: remote write (1.0 and 2.0) and the HTTP query API,
//! every route also served under `/prometheus`.
//!
//! # Divergences from Prometheus (chosen on purpose)
//! - Remote write also accepts `gzip`, `zstd` and `identity` bodies for 1.0
//!   (Fluent Bit, Vector), where Prometheus answers 415; 2.0 bodies must be
//!   snappy (415 otherwise, as the 2.0 spec and its compliance suite want).
//! - A body without `Content-Encoding` is tried as snappy, then as plain
//!   protobuf (Fluent Bit with `compression none` sends no header).
//! - Several snappy blocks concatenated in one body are decoded in turn.
//! - `GET` on the write URLs answers 200 (Vector's health check); Prometheus
//!   answers 405.
//! - Native histograms are refused with a 400 naming the series (the rest of
//!   the request is still written); Prometheus stores them.
//! - Labels must arrive sorted by name and unique (400), and series over the
//!   configured label count or length limits are refused (400); Prometheus
//!   accepts unsorted labels.
//! - Samples further than `limits.creation_grace_period` in the future are
//!   refused (400).
//! - Remote write 2.0 created timestamps are accepted but not stored (as
//!   Prometheus without `created-timestamp-zero-ingestion`).
//! - A tenant over its ingestion rate gets 429; storage refusing writes gets
//!   503; a body over `limits.max_request_body_bytes` or a decompressed body
//!   over `limits.max_decompressed_bytes` gets 413 (Prometheus has no limits).
//! - `/api/v1/status/flags` answers 404 (so Grafana does not take Strata for
//!   Thanos); `/api/v1/status/buildinfo` reports Prometheus 2.53.0 with
//!   `revision` `strata-<version>`.
//! - `stats=all` returns the timings and sample counts the engine measures;
//!   the per-step sample counts are not returned.
//! - Error messages follow Prometheus 3.x wording (`invalid time value for
//!   'time'`, lowercase; 2.42 writes `Invalid`). `match[]` values that are
//!   not plain selectors get `expected a metric selector` instead of the
//!   parser's `unexpected "("`.
//! - `/api/v1/metadata?limit=N` returns the first N metrics by name;
//!   Prometheus returns N in Go map order (arbitrary).
//! - `POST /api/v1/admin/tsdb/flush` is Strata's own: it writes the head into
//!   blocks (used by benchmarks).

pub mod decode_v1;
pub mod json;
mod meta;
pub mod params;
pub mod proto;
mod query;
pub mod snappy;
pub mod write;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderMap};
use axum::routing::{get, post};
use axum::Router;

use super::AppState;
use crate::ingest::Ingester;

pub use meta::PROMETHEUS_VERSION;
pub use query::{QueryLimiter, QUERY_DURATION_SECONDS};

/// State of the Prometheus routes: the shared state plus the ingestion path
/// and the per-tenant query limiter.
#[derive(Clone)]
pub struct PromState {
    /// Shared state.
    pub app: AppState,
    /// Metrics ingestion (validation, rate limits, store).
    pub ingester: Arc<Ingester>,
    /// Concurrent queries per tenant.
    pub queries: Arc<QueryLimiter>,
}

impl PromState {
    /// Builds the Prometheus state over the shared state.
    pub fn new(app: AppState) -> PromState {
        let limits = app.config.limits.clone();
        PromState {
            ingester: Arc::new(Ingester::new(limits.clone(), app.metrics_writer.clone())),
            queries: Arc::new(QueryLimiter::new(limits.max_concurrent_queries_per_tenant)),
            app,
        }
    }
}

/// Reads a whole body of at most `limit` bytes.
pub(crate) async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<bytes::Bytes, String> {
    let too_big =
        || format!("request body is larger than {limit} bytes (limits.max_request_body_bytes)");
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_big());
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_big())
}

/// Prometheus routes, also served under `/prometheus`.
pub fn routes(app: AppState) -> Router {
    let state = PromState::new(app);
    let write = get(write::write_get)
        .post(write::write_post)
        .layer(DefaultBodyLimit::disable());
    let r: Router<PromState> = Router::new()
        .route("/-/ready", get(|| async { "Strata is Ready.\n" }))
        .route("/-/healthy", get(|| async { "Strata is Healthy.\n" }))
        .route("/api/v1/write", write.clone())
        .route("/api/v1/push", write)
        .route("/api/v1/query", get(query::instant).post(query::instant))
        .route("/api/v1/query_range", get(query::range).post(query::range))
        .route(
            "/api/v1/query_exemplars",
            get(meta::exemplars).post(meta::exemplars),
        )
        .route("/api/v1/series", get(meta::series).post(meta::series))
        .route("/api/v1/labels", get(meta::labels).post(meta::labels))
        .route("/api/v1/label/{name}/values", get(meta::label_values))
        .route("/api/v1/metadata", get(meta::metadata))
        .route("/api/v1/status/buildinfo", get(meta::buildinfo))
        .route("/api/v1/status/flags", get(meta::flags))
        .route(
            "/api/v1/admin/tsdb/flush",
            post(meta::flush).put(meta::flush),
        );
    Router::new()
        .merge(r.clone())
        .nest("/prometheus", r)
        .with_state(state)
}
