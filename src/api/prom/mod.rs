//! The Prometheus face: remote write (1.0 and 2.0) and the HTTP query API.

pub mod proto;

use axum::routing::get;
use axum::Router;

use super::AppState;

/// Prometheus routes, also served under `/prometheus`.
pub fn routes() -> Router<AppState> {
    let r = Router::new()
        .route("/-/ready", get(|| async { "Strata is Ready.\n" }))
        .route("/-/healthy", get(|| async { "Strata is Healthy.\n" }));
    Router::new().merge(r.clone()).nest("/prometheus", r)
}
