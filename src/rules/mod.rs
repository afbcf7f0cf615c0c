//! Rules: Prometheus and Loki rule files, recording and alerting with
//! Prometheus's semantics, notifications to Alertmanager, and promtool-style
//! rule unit tests (`strata test rules`).
//!
//! - [`file`]: parsing and `promtool check rules` validation.
//! - [`group`]: evaluation of a group at one timestamp (state machine,
//!   `ALERTS`/`ALERTS_FOR_STATE`, staleness, for-state restoration).
//! - [`loki`]: the Loki ruler's per-tenant LogQL rule files.
//! - [`notifier`]: the Alertmanager API v2 client with a bounded queue.
//! - [`unittest`]: `strata test rules`.

pub mod file;
pub mod group;
pub mod loki;
pub mod manager;
pub mod notifier;
pub mod unittest;

use crate::model::{Labels, Tenant};
use crate::query::promql::{Engine, QueryParams, Value};

pub use group::RuleQuerier;

/// Rules' queries through the PromQL engine.
pub struct PromqlQuerier<'a>(pub &'a Engine);

impl RuleQuerier for PromqlQuerier<'_> {
    fn query(&self, tenant: &Tenant, expr: &str, t_ms: i64) -> Result<Vec<(Labels, f64)>, String> {
        let out = self
            .0
            .instant(tenant, expr, t_ms, &QueryParams::default())
            .map_err(|e| e.to_string())?;
        match out.value {
            // Histogram results cannot be recorded yet: they are skipped.
            Value::Vector(v) => Ok(v
                .into_iter()
                .filter(|s| s.h.is_none())
                .map(|s| (s.labels, s.v))
                .collect()),
            Value::Scalar { v, .. } => Ok(vec![(Labels::empty(), v)]),
            Value::String { .. } | Value::Matrix(_) => {
                Err("rule result is not a vector or scalar".into())
            }
        }
    }
}
