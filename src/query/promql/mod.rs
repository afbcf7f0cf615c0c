//! The PromQL engine: `promql-parser`'s AST evaluated over a
//! [`MetricsReader`] with Prometheus 3.x semantics.
//!
//! INTERFACE CONTRACT (the evaluator is being written; signatures are fixed):
//! `Engine::instant` and `Engine::range` are blocking and are called from a
//! blocking thread by the HTTP layer and the rule evaluator.

pub mod parse;

use std::sync::Arc;
use std::time::Duration;

use crate::model::{Labels, Tenant};
use crate::storage::{MetricsReader, SeriesSamples, StorageError};

/// Engine settings (from `query` and `limits` in the config).
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Lookback of instant selectors, ms.
    pub lookback_delta_ms: i64,
    /// Samples one query may hold in memory.
    pub max_samples: usize,
    /// Default timeout.
    pub timeout: Duration,
    /// Allow experimental functions.
    pub enable_experimental_functions: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta_ms: 5 * 60_000,
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
            enable_experimental_functions: false,
        }
    }
}

/// Per-query options from the request.
#[derive(Debug, Clone, Default)]
pub struct QueryParams {
    /// `timeout=`; the smaller of this and the engine default applies.
    pub timeout: Option<Duration>,
    /// `lookback_delta=` override, ms.
    pub lookback_delta_ms: Option<i64>,
    /// Collect statistics (`stats=all`).
    pub stats: bool,
}

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorSample {
    /// Labels.
    pub labels: Labels,
    /// Timestamp, ms.
    pub t: i64,
    /// Value.
    pub v: f64,
}

/// A query result.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A scalar at a time.
    Scalar {
        /// Timestamp, ms.
        t: i64,
        /// Value.
        v: f64,
    },
    /// A string at a time.
    String {
        /// Timestamp, ms.
        t: i64,
        /// Value.
        s: String,
    },
    /// An instant vector.
    Vector(Vec<VectorSample>),
    /// A range vector / range-query result, series sorted by labels.
    Matrix(Vec<SeriesSamples>),
}

/// Query statistics in the shape of Prometheus's `stats=all`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryStats {
    /// Wall time spent evaluating, seconds.
    pub exec_seconds: f64,
    /// Samples loaded from storage.
    pub total_queryable_samples: u64,
    /// Peak samples held at once.
    pub peak_samples: u64,
}

/// A successful evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryOutput {
    /// The value.
    pub value: Value,
    /// Warnings Prometheus would return.
    pub warnings: Vec<String>,
    /// Infos Prometheus would return.
    pub infos: Vec<String>,
    /// Statistics (filled when requested).
    pub stats: QueryStats,
}

/// Query failures, each mapping to one Prometheus `errorType`.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The query does not parse or is semantically invalid (`bad_data`, 400).
    #[error("{0}")]
    BadData(String),
    /// Evaluation failed (`execution`, 422).
    #[error("{0}")]
    Execution(String),
    /// The query ran past its timeout (`timeout`, 503).
    #[error("query timed out in {0}")]
    Timeout(String),
    /// The query was canceled (`canceled`, 503).
    #[error("query was canceled in {0}")]
    Canceled(String),
    /// The sample limit was hit (`execution`, 422).
    #[error("query processing would load too many samples into memory in {0}")]
    TooManySamples(String),
    /// Storage failed (`internal`, 500).
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl QueryError {
    /// Prometheus's `errorType` for this error.
    pub fn error_type(&self) -> &'static str {
        match self {
            QueryError::BadData(_) => "bad_data",
            QueryError::Execution(_) | QueryError::TooManySamples(_) => "execution",
            QueryError::Timeout(_) => "timeout",
            QueryError::Canceled(_) => "canceled",
            QueryError::Storage(_) => "internal",
        }
    }
}

/// The PromQL engine.
pub struct Engine {
    #[allow(dead_code)]
    reader: Arc<dyn MetricsReader>,
    opts: EngineOptions,
}

impl Engine {
    /// An engine reading from `reader`.
    pub fn new(reader: Arc<dyn MetricsReader>, opts: EngineOptions) -> Engine {
        Engine { reader, opts }
    }

    /// The engine's settings.
    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Evaluates `query` at `t` (ms).
    pub fn instant(
        &self,
        tenant: &Tenant,
        query: &str,
        t: i64,
        params: &QueryParams,
    ) -> Result<QueryOutput, QueryError> {
        let _ = (tenant, query, t, params);
        todo!("query/promql: instant")
    }

    /// Evaluates `query` from `start` to `end` (ms, inclusive) every `step` ms.
    /// The result is always a matrix.
    pub fn range(
        &self,
        tenant: &Tenant,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
        params: &QueryParams,
    ) -> Result<QueryOutput, QueryError> {
        let _ = (tenant, query, start, end, step, params);
        todo!("query/promql: range")
    }
}
