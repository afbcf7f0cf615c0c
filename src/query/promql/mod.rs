//! The PromQL engine: `promql-parser`'s AST evaluated over a
//! [`MetricsReader`] with Prometheus 3.x semantics.
//!
//! INTERFACE CONTRACT (signatures are fixed):
//! `Engine::instant` and `Engine::range` are blocking and are called from a
//! blocking thread by the HTTP layer and the rule evaluator.
//!
//! Layout: `eval` (steps, selectors, subqueries), `functions`, `aggregate`,
//! `binary`, `histogram` (classic `le` buckets). Every node is evaluated once
//! over all steps of the query with one storage `select` per selector.

mod aggregate;
mod binary;
mod eval;
mod extended;
mod functions;
mod histogram;
mod info;
mod native;
mod output;
pub mod parse;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use promql_parser::parser::Expr;

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
    /// Value (0 when `h` is set).
    pub v: f64,
    /// The native histogram, when the sample is one.
    pub h: Option<std::sync::Arc<crate::model::FloatHistogram>>,
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
    reader: Arc<dyn MetricsReader>,
    opts: EngineOptions,
    parsed: ParseCache,
}

/// A cached parse and what evaluating it cost last time.
struct Parsed {
    expr: Expr,
    /// Microseconds the last evaluation took; `u64::MAX` before the first.
    last_us: AtomicU64,
}

/// Parsed queries by text and the range-query context their durations
/// may depend on (`step()`, `range()`): dashboards re-run the same text
/// every refresh, and parsing is a large part of a cheap query. Bounded:
/// emptied when full. Keyed by text first so a lookup borrows the query.
struct ParseCache {
    cap: usize,
    map: parking_lot::Mutex<HashMap<String, ByContext>>,
}

/// The parses of one query text, by [`ContextKey`].
type ByContext = Vec<(ContextKey, Arc<Parsed>)>;

/// `(step_ms, range_ms)` of a [`parse::DurationContext`].
type ContextKey = (i64, i64);

fn context_key(ctx: &parse::DurationContext) -> ContextKey {
    (ctx.step_ms, ctx.range_ms)
}

impl ParseCache {
    fn lookup(&self, query: &str, key: ContextKey) -> Option<Arc<Parsed>> {
        let map = self.map.lock();
        let entries = map.get(query)?;
        entries
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, p)| p.clone())
    }

    fn get(&self, query: &str, ctx: &parse::DurationContext) -> Result<Arc<Parsed>, QueryError> {
        let key = context_key(ctx);
        if let Some(p) = self.lookup(query, key) {
            return Ok(p);
        }
        let parsed = Arc::new(Parsed {
            expr: parse::parse_expr_with(query, ctx).map_err(QueryError::BadData)?,
            last_us: AtomicU64::new(u64::MAX),
        });
        if self.cap > 0 {
            let mut map = self.map.lock();
            if map.len() >= self.cap {
                map.clear();
            }
            let entries = map.entry(query.to_string()).or_default();
            entries.retain(|(k, _)| *k != key);
            entries.push((key, parsed.clone()));
        }
        Ok(parsed)
    }
}

/// Remembers how long evaluating `parsed` took (also when it failed).
fn record_cost(parsed: &Parsed, began: Instant) {
    let us = began.elapsed().as_micros().min(u128::from(u64::MAX - 1)) as u64;
    parsed.last_us.store(us, Ordering::Relaxed);
}

/// Parsed queries an engine keeps unless told otherwise.
pub const DEFAULT_PARSE_CACHE_ENTRIES: usize = 1000;

impl Engine {
    /// An engine reading from `reader`.
    pub fn new(reader: Arc<dyn MetricsReader>, opts: EngineOptions) -> Engine {
        Engine {
            reader,
            opts,
            parsed: ParseCache {
                cap: DEFAULT_PARSE_CACHE_ENTRIES,
                map: Default::default(),
            },
        }
    }

    /// Keeps at most `entries` parsed queries (0: parse every time).
    pub fn with_parse_cache(mut self, entries: usize) -> Engine {
        self.parsed.cap = entries;
        self
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
        let parsed = self.parsed.get(query, &parse::DurationContext::default())?;
        let began = Instant::now();
        let out = self.run(tenant, &parsed.expr, query, t, t, 1, true, params);
        record_cost(&parsed, began);
        out
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
        let ctx = parse::DurationContext::range_query(start, end, step);
        let parsed = self.parsed.get(query, &ctx)?;
        let began = Instant::now();
        let out = self.range_checked(tenant, &parsed.expr, query, start, end, step, params);
        record_cost(&parsed, began);
        out
    }

    /// True when `query` was evaluated before over a range of the same
    /// shape (`step` and `end - start`, ms; both 0 for an instant query)
    /// and took less than `below`: such a query may run on the caller's
    /// async thread instead of being handed to a blocking one, a hand-off
    /// that costs more than the query itself. Dashboards re-run the same
    /// queries over the same spans, so the last run predicts the next.
    pub fn ran_faster_than(&self, query: &str, step: i64, span: i64, below: Duration) -> bool {
        self.parsed
            .lookup(query, (step, span))
            .is_some_and(|p| p.last_us.load(Ordering::Relaxed) < below.as_micros() as u64)
    }

    /// [`Engine::instant`] over an already parsed expression.
    pub fn instant_expr(
        &self,
        tenant: &Tenant,
        expr: &Expr,
        t: i64,
        params: &QueryParams,
    ) -> Result<QueryOutput, QueryError> {
        self.run(tenant, expr, "", t, t, 1, true, params)
    }

    /// [`Engine::range`] over an already parsed expression.
    pub fn range_expr(
        &self,
        tenant: &Tenant,
        expr: &Expr,
        start: i64,
        end: i64,
        step: i64,
        params: &QueryParams,
    ) -> Result<QueryOutput, QueryError> {
        self.range_checked(tenant, expr, "", start, end, step, params)
    }

    /// [`Engine::range_expr`] with the query's text when known (for
    /// positions in messages; printed from `expr` when empty).
    #[allow(clippy::too_many_arguments)]
    fn range_checked(
        &self,
        tenant: &Tenant,
        expr: &Expr,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
        params: &QueryParams,
    ) -> Result<QueryOutput, QueryError> {
        if step <= 0 {
            return Err(QueryError::BadData(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if end < start {
            return Err(QueryError::BadData(
                "end timestamp must not be before start time".into(),
            ));
        }
        use promql_parser::parser::value::ValueType;
        let vt = expr.value_type();
        if !matches!(vt, ValueType::Scalar | ValueType::Vector) {
            let name = match vt {
                ValueType::String => "string",
                _ => "range vector",
            };
            return Err(QueryError::BadData(format!(
                "invalid expression type \"{name}\" for range query, must be Scalar or instant Vector"
            )));
        }
        self.run(tenant, expr, query, start, end, step, false, params)
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        tenant: &Tenant,
        expr: &Expr,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
        instant: bool,
        params: &QueryParams,
    ) -> Result<QueryOutput, QueryError> {
        let began = Instant::now();
        let timeout = params
            .timeout
            .map_or(self.opts.timeout, |t| t.min(self.opts.timeout));
        let text = if query.is_empty() {
            parse::to_promql(expr)
        } else {
            query.to_string()
        };
        let mut ev = eval::Evaluator {
            reader: self.reader.as_ref(),
            tenant,
            query: &text,
            lookback: params
                .lookback_delta_ms
                .filter(|l| *l > 0)
                .unwrap_or(self.opts.lookback_delta_ms),
            qstart: start,
            qend: end,
            qstep: if instant { 0 } else { step },
            deadline: began + timeout,
            max_samples: self.opts.max_samples,
            experimental: self.opts.enable_experimental_functions,
            subquery_step: 60_000,
            stats: QueryStats::default(),
            warnings: vec![],
            infos: vec![],
            cur_samples: 0,
            hist_stats: false,
        };
        let steps = eval::Steps { start, end, step };
        let val = ev.eval(expr, &steps)?;
        let value = output::finish(val, &steps, instant)?;
        let mut stats = ev.stats.clone();
        stats.exec_seconds = began.elapsed().as_secs_f64();
        metrics::histogram!("strata_promql_query_duration_seconds").record(stats.exec_seconds);
        Ok(QueryOutput {
            value,
            warnings: ev.warnings,
            infos: ev.infos,
            stats,
        })
    }
}
