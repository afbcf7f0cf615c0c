//! HTTP adapters, one module per protocol. Handlers decode, call one core
//! function and encode (STYLE.md rule 3); no storage or query logic here.

pub mod loki;
pub mod prom;
mod protowire;
mod rules;
mod tenant;

use std::sync::Arc;

use axum::routing::get;
use axum::Router;

use crate::config::Config;
use crate::query::promql::Engine;
use crate::storage::{MetricsReader, MetricsWriter, StoreAdmin};

pub use tenant::{tenant_from_headers, TenantId};

/// Everything the handlers need, shared by all requests.
#[derive(Clone)]
pub struct AppState {
    /// The configuration in force.
    pub config: Arc<Config>,
    /// Metrics read access.
    pub metrics_reader: Arc<dyn MetricsReader>,
    /// Metrics write access.
    pub metrics_writer: Arc<dyn MetricsWriter>,
    /// The PromQL engine.
    pub promql: Arc<Engine>,
    /// Flush and disk usage of the metrics store.
    pub metrics_admin: Arc<dyn StoreAdmin>,
    /// Log read access (LogQL, the Loki API, the Loki ruler).
    pub logs_reader: Arc<dyn crate::logs::LogReader>,
    /// Log write access (Loki push) and the live-tail feed.
    pub logs_writer: Arc<dyn crate::logs::LogWriter>,
    /// Flush and disk usage of the log store (Loki's `POST /flush`; None
    /// for in-memory stores).
    pub logs_admin: Option<Arc<dyn StoreAdmin>>,
    /// Recording and alerting rules (None in states built without them).
    pub rules: Option<Arc<crate::rules::manager::RuleManager>>,
    /// Turns true when the server shuts down (ends live tails and other
    /// endless responses so graceful shutdown does not wait for them).
    pub shutdown: Arc<tokio::sync::watch::Sender<bool>>,
}

/// The router serving every protocol on one listener.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(|| async { crate::telemetry::render() }))
        .merge(rules::routes())
        .with_state(state.clone())
        .merge(loki::routes(state.clone()))
        .merge(prom::routes(state))
        .layer(axum::middleware::from_fn(crate::telemetry::track_http))
}
