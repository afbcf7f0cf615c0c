//! Strata: one binary that Prometheus, Loki and Elasticsearch clients talk to
//! unchanged. See ARCHITECTURE.md for the map of modules.
#![warn(missing_docs)]

pub mod api;
pub mod config;
pub mod ingest;
pub mod logs;
pub mod model;
pub mod query;
pub mod rules;
pub mod server;
pub mod storage;
pub mod telemetry;
pub mod template;
