//! LogQL evaluation over a [`LogReader`]: log queries (streams, direction,
//! limit) and metric queries (instant and range) with Loki's step semantics.
//!
//! Each range aggregation reads its streams once for the whole query range;
//! the pipeline turns entries into samples per output series, and each step
//! then looks at the window `(t - offset - range, t - offset]`.

use super::ast::*;
use super::pipeline::{line_hint, Pipeline, ERROR_DETAILS_LABEL, ERROR_LABEL};
use super::vector::{self, Sample, Vector};
use super::{parse, ParseError};
use crate::logs::{LineNeed, LogEntry, LogReadError, LogReader, LogSelect, Stream};
use crate::model::{Labels, MatchOp, Matcher, Tenant};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// Query failures, each mapped by the HTTP layer to Loki's status codes.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The query does not parse (400).
    #[error("{0}")]
    Parse(#[from] ParseError),
    /// The query is valid but cannot run with these parameters (400).
    #[error("{0}")]
    BadRequest(String),
    /// A sample still carries `__error__` (400, as Loki).
    #[error("{0}")]
    Pipeline(String),
    /// A limit was hit (400/429 per the caller).
    #[error("{0}")]
    Limit(String),
    /// The store failed (500).
    #[error("{0}")]
    Read(#[from] LogReadError),
}

/// Order of log entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Oldest first.
    Forward,
    /// Newest first (Loki's default).
    Backward,
}

/// Parameters of a log query.
#[derive(Debug, Clone, Copy)]
pub struct LogParams {
    /// Inclusive start, Unix ns.
    pub start: i64,
    /// Exclusive end, Unix ns.
    pub end: i64,
    /// Maximum entries returned.
    pub limit: usize,
    /// Entry order.
    pub direction: Direction,
}

/// Parameters of a metric query: steps `start, start+step, ..., <= end` (ns).
/// An instant query has `start == end`.
#[derive(Debug, Clone, Copy)]
pub struct RangeParams {
    /// First evaluation time, Unix ns.
    pub start: i64,
    /// Last evaluation time, Unix ns.
    pub end: i64,
    /// Step in ns (ignored for instant queries).
    pub step: i64,
}

/// One output series of a range query.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Labels.
    pub labels: Labels,
    /// `(ns, value)` points, oldest first.
    pub points: Vec<(i64, f64)>,
}

/// A query result in Loki's result types.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryResult {
    /// Log streams (entries in the requested direction).
    Streams(Vec<Stream>),
    /// Instant vector at the given time (ns).
    Vector(i64, Vector),
    /// Range result.
    Matrix(Vec<Series>),
    /// Instant scalar at the given time (ns).
    Scalar(i64, f64),
}

/// A log-query entry with its labels split into Loki's categories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategorizedEntry {
    /// Timestamp, Unix ns.
    pub ts: i64,
    /// The line after the pipeline.
    pub line: String,
    /// Stream labels (as the pipeline left them).
    pub stream: Labels,
    /// Structured metadata.
    pub metadata: Labels,
    /// Labels extracted by parsers and formatting stages.
    pub parsed: Labels,
}

impl CategorizedEntry {
    /// Sorts the pipeline's labels into stream labels (unchanged stream
    /// pairs), structured metadata (unchanged metadata pairs) and parsed.
    fn split(ts: i64, out: super::pipeline::Processed, stream: &Labels, meta: &Labels) -> Self {
        let (mut s, mut m, mut p) = (Vec::new(), Vec::new(), Vec::new());
        for (k, v) in out.labels {
            let l = crate::model::Label::new(k, v);
            if stream.get(&l.name) == Some(l.value.as_str()) {
                s.push(l);
            } else if meta.get(&l.name) == Some(l.value.as_str()) {
                m.push(l);
            } else {
                p.push(l);
            }
        }
        CategorizedEntry {
            ts,
            line: out.line,
            stream: Labels::from_sorted(s),
            metadata: Labels::from_sorted(m),
            parsed: Labels::from_sorted(p),
        }
    }
}

/// Limits the engine enforces.
#[derive(Debug, Clone, Copy)]
pub struct EngineLimits {
    /// Maximum series in a metric result.
    pub max_series: usize,
    /// Maximum evaluation steps of a range query.
    pub max_points: usize,
    /// Maximum entries of a log query.
    pub max_entries: usize,
}

impl From<&crate::config::LogqlConfig> for EngineLimits {
    fn from(c: &crate::config::LogqlConfig) -> Self {
        EngineLimits {
            max_series: c.max_query_series,
            max_points: c.max_query_points,
            max_entries: c.max_entries_limit_per_query,
        }
    }
}

impl Default for EngineLimits {
    fn default() -> Self {
        (&crate::config::LogqlConfig::default()).into()
    }
}

/// How the engine cuts and bounds its reads: Loki's
/// `split_queries_by_interval` and the query timeout. Each selector's
/// range is read in time slices aligned to `split` (newest first for
/// backward log queries), so a log query stops once its limit is filled
/// and a query that reaches its deadline returns what the slices read so
/// far gave, flagged in [`Engine::partial`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadPlan {
    /// Width of a slice in ns; 0 reads each range at once.
    pub split: i64,
    /// No slice is started after this instant (at least one is read).
    pub deadline: Option<Instant>,
}

/// The part of a selector's range a query read before its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partial {
    /// The range the query asked for, `[start, end)` in ns.
    pub wanted: (i64, i64),
    /// The range it read, `[start, end)` in ns.
    pub read: (i64, i64),
}

/// The LogQL engine.
pub struct Engine {
    reader: Arc<dyn LogReader>,
    limits: EngineLimits,
    plan: ReadPlan,
    partial: Mutex<Vec<Partial>>,
}

/// Samples of one series produced by a range aggregation's pipeline.
struct SeriesData {
    labels: Labels,
    /// `(ts, value)` sorted by ts.
    samples: Vec<(i64, f64)>,
}

struct RangeData {
    series: Vec<SeriesData>,
    /// Steps before this time (ns) saw every sample of their window; later
    /// ones are incomplete (the read stopped at the deadline).
    exact_before: i64,
}

impl Engine {
    /// An engine over a log store.
    pub fn new(reader: Arc<dyn LogReader>, limits: EngineLimits) -> Engine {
        Engine {
            reader,
            limits,
            plan: ReadPlan::default(),
            partial: Mutex::new(Vec::new()),
        }
    }

    /// The same engine reading by `plan`.
    pub fn with_plan(mut self, plan: ReadPlan) -> Engine {
        self.plan = plan;
        self
    }

    /// The selectors whose range was cut short by the deadline in the
    /// queries run so far (empty when every result is complete).
    pub fn partial(&self) -> Vec<Partial> {
        self.partial.lock().clone()
    }

    /// Reads `[start, end)` slice by slice (see [`ReadPlan`]), handing each
    /// slice's streams to `each`, which answers true once it needs no
    /// further slice. Stops after the slice during which the deadline
    /// passed and returns the range read.
    #[allow(clippy::too_many_arguments)]
    fn read_sliced(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        hint: &crate::logs::LineHint,
        (start, end): (i64, i64),
        newest_first: bool,
        mut each: impl FnMut(Vec<Stream>) -> Result<bool, EvalError>,
    ) -> Result<(i64, i64), EvalError> {
        let slices = slices(start, end, self.plan.split, newest_first);
        let mut read = if newest_first {
            (end, end)
        } else {
            (start, start)
        };
        for (i, &(lo, hi)) in slices.iter().enumerate() {
            let streams = self.reader.select(
                tenant,
                &LogSelect {
                    matchers,
                    start: lo,
                    end: hi,
                    hint,
                },
            )?;
            if newest_first {
                read.0 = lo;
            } else {
                read.1 = hi;
            }
            if each(streams)? {
                return Ok((start, end));
            }
            let late = self.plan.deadline.is_some_and(|d| Instant::now() > d);
            if late && i + 1 < slices.len() {
                self.partial.lock().push(Partial {
                    wanted: (start, end),
                    read,
                });
                return Ok(read);
            }
        }
        Ok((start, end))
    }

    /// Runs a log query (must parse to a log expression).
    pub fn query_logs(
        &self,
        tenant: &Tenant,
        query: &str,
        p: LogParams,
    ) -> Result<QueryResult, EvalError> {
        let t0 = Instant::now();
        let expr = parse(query)?;
        let log = match strip_parens(&expr) {
            Expr::Log(l) => l,
            _ => return Err(EvalError::BadRequest("expected a log query".into())),
        };
        let r = self.eval_logs(tenant, log, p);
        observe("logs", t0);
        r
    }

    /// Runs any query: log queries need a range (`instant == false`).
    pub fn query(
        &self,
        tenant: &Tenant,
        query: &str,
        rp: RangeParams,
        instant: bool,
        log: (usize, Direction),
    ) -> Result<QueryResult, EvalError> {
        let expr = parse(query)?;
        if let Expr::Log(_) = strip_parens(&expr) {
            if instant {
                return Err(EvalError::BadRequest(
                    "log queries are not supported as an instant query type, please change your query to a range query type".into(),
                ));
            }
            return self.query_logs(
                tenant,
                query,
                LogParams {
                    start: rp.start,
                    end: rp.end,
                    limit: log.0,
                    direction: log.1,
                },
            );
        }
        self.eval_metric(tenant, &expr, rp, instant)
    }

    /// Line bytes the store's index counts for every selector of `query`
    /// over the range each one reads (Loki's up-front check of
    /// `max_query_bytes_read`). Evaluation times as [`Engine::query`].
    pub fn bytes_estimate(
        &self,
        tenant: &Tenant,
        query: &str,
        rp: RangeParams,
    ) -> Result<u64, EvalError> {
        fn walk<'a>(e: &'a Expr, out: &mut Vec<(&'a [Matcher], i64, i64)>) {
            match e {
                Expr::Log(l) => out.push((&l.matchers, 0, 0)),
                Expr::RangeAgg(r) => {
                    out.push((&r.range.log.matchers, r.range.range, r.range.offset))
                }
                Expr::VectorAgg(v) => walk(&v.expr, out),
                Expr::Binary(b) => {
                    walk(&b.lhs, out);
                    walk(&b.rhs, out);
                }
                Expr::LabelReplace(l) => walk(&l.expr, out),
                Expr::Paren(e) => walk(e, out),
                Expr::Literal(_) | Expr::Vector(_) => {}
            }
        }
        let expr = parse(query)?;
        let mut sels = Vec::new();
        walk(&expr, &mut sels);
        let mut total = 0u64;
        for (matchers, range, offset) in sels {
            let (start, end) = (rp.start - offset - range, rp.end - offset + 1);
            total += self.reader.stats(tenant, matchers, start, end)?.bytes;
        }
        Ok(total)
    }

    /// Runs a metric expression at one time (`instant`) or over steps.
    pub fn eval_metric(
        &self,
        tenant: &Tenant,
        expr: &Expr,
        rp: RangeParams,
        instant: bool,
    ) -> Result<QueryResult, EvalError> {
        let t0 = Instant::now();
        let steps: Vec<i64> = if instant {
            vec![rp.end]
        } else {
            if rp.step <= 0 {
                return Err(EvalError::BadRequest(
                    "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
                ));
            }
            if rp.end < rp.start {
                return Err(EvalError::BadRequest(
                    "end timestamp must not be before start time".into(),
                ));
            }
            let n = (rp.end - rp.start) / rp.step + 1;
            if n as usize > self.limits.max_points {
                return Err(EvalError::BadRequest(format!(
                    "exceeded maximum resolution of {} points per time series. Try increasing the value of the step parameter",
                    self.limits.max_points
                )));
            }
            (0..n).map(|i| rp.start + i * rp.step).collect()
        };
        let (first, last) = (steps[0], *steps.last().unwrap_or(&steps[0]));
        let mut data = HashMap::new();
        self.load(tenant, expr, first, last, &mut data)?;
        // A read cut short by the deadline leaves the last windows
        // incomplete: a range query keeps only the steps it saw whole (an
        // instant query keeps its one step; the caller flags both).
        let steps = match data.values().map(|d| d.exact_before).min() {
            Some(exact) if !instant => steps.into_iter().filter(|&t| t < exact).collect(),
            _ => steps,
        };
        let mut out: HashMap<Labels, Vec<(i64, f64)>> = HashMap::new();
        let mut scalar_out = None;
        for &t in &steps {
            match self.eval_at(expr, t, &data)? {
                Val::Scalar(v) => {
                    scalar_out = Some(v);
                    out.entry(Labels::empty()).or_default().push((t, v));
                }
                Val::Vector(v) => {
                    if instant {
                        let v = if keeps_order(expr) {
                            v
                        } else {
                            let mut v = v;
                            v.sort_by(|a, b| a.labels.cmp(&b.labels));
                            v
                        };
                        if v.len() > self.limits.max_series {
                            return Err(self.series_limit());
                        }
                        observe("metric", t0);
                        return Ok(QueryResult::Vector(t, v));
                    }
                    for s in v {
                        out.entry(s.labels).or_default().push((t, s.value));
                    }
                    if out.len() > self.limits.max_series {
                        return Err(self.series_limit());
                    }
                }
            }
        }
        observe("metric", t0);
        if instant {
            return Ok(QueryResult::Scalar(
                steps[0],
                scalar_out.unwrap_or(f64::NAN),
            ));
        }
        let mut series: Vec<Series> = out
            .into_iter()
            .map(|(labels, points)| Series { labels, points })
            .collect();
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(QueryResult::Matrix(series))
    }

    fn series_limit(&self) -> EvalError {
        EvalError::Limit(format!(
            "maximum of series ({}) reached for a single query",
            self.limits.max_series
        ))
    }

    fn eval_logs(
        &self,
        tenant: &Tenant,
        log: &LogExpr,
        p: LogParams,
    ) -> Result<QueryResult, EvalError> {
        let mut by: HashMap<Labels, Vec<LogEntry>> = HashMap::new();
        for e in self.log_entries(tenant, log, p)? {
            let all = Labels::from_pairs(
                e.stream
                    .iter()
                    .chain(e.metadata.iter())
                    .chain(e.parsed.iter())
                    .map(|l| (l.name.as_str(), l.value.as_str())),
            );
            by.entry(all).or_default().push(LogEntry::new(e.ts, e.line));
        }
        let mut out: Vec<Stream> = by
            .into_iter()
            .map(|(labels, entries)| Stream { labels, entries })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(QueryResult::Streams(out))
    }

    /// Runs a log query keeping Loki's label categories apart (the
    /// `categorize-labels` response form): entries grouped by their stream
    /// labels, each with its structured metadata and parsed labels.
    pub fn query_logs_categorized(
        &self,
        tenant: &Tenant,
        query: &str,
        p: LogParams,
    ) -> Result<Vec<(Labels, Vec<CategorizedEntry>)>, EvalError> {
        let t0 = Instant::now();
        let expr = parse(query)?;
        let Expr::Log(log) = strip_parens(&expr) else {
            return Err(EvalError::BadRequest("expected a log query".into()));
        };
        let mut by: HashMap<Labels, Vec<CategorizedEntry>> = HashMap::new();
        for e in self.log_entries(tenant, log, p)? {
            by.entry(e.stream.clone()).or_default().push(e);
        }
        let mut out: Vec<_> = by.into_iter().collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        observe("logs", t0);
        Ok(out)
    }

    /// The entries of a log query after the pipeline, in the requested
    /// direction and within the limit.
    fn log_entries(
        &self,
        tenant: &Tenant,
        log: &LogExpr,
        p: LogParams,
    ) -> Result<Vec<CategorizedEntry>, EvalError> {
        let pipeline = Pipeline::new(log, None).map_err(EvalError::BadRequest)?;
        let hint = line_hint(log);
        let limit = p.limit.min(self.limits.max_entries);
        let mut all: Vec<CategorizedEntry> = Vec::new();
        // Slices come in the query's direction, so once a whole slice has
        // filled the limit no later slice can contribute.
        self.read_sliced(
            tenant,
            &log.matchers,
            &hint,
            (p.start, p.end),
            p.direction == Direction::Backward,
            |streams| {
                for s in &streams {
                    for e in &s.entries {
                        if let Some(out) = pipeline.process(e.ts, &e.line, &s.labels, &e.metadata) {
                            all.push(CategorizedEntry::split(e.ts, out, &s.labels, &e.metadata));
                        }
                    }
                }
                Ok(all.len() >= limit)
            },
        )?;
        let key = |e: &CategorizedEntry| {
            Labels::from_pairs(
                e.stream
                    .iter()
                    .chain(e.metadata.iter())
                    .chain(e.parsed.iter())
                    .map(|l| (l.name.as_str(), l.value.as_str())),
            )
        };
        match p.direction {
            Direction::Forward => all.sort_by_cached_key(|e| (e.ts, key(e))),
            Direction::Backward => all.sort_by_cached_key(|e| (std::cmp::Reverse(e.ts), key(e))),
        }
        all.truncate(limit);
        Ok(all)
    }

    /// Reads and processes the data of every range aggregation once.
    fn load(
        &self,
        tenant: &Tenant,
        expr: &Expr,
        first: i64,
        last: i64,
        data: &mut HashMap<*const RangeAgg, RangeData>,
    ) -> Result<(), EvalError> {
        match expr {
            Expr::RangeAgg(r) => {
                let lr = &r.range;
                let pipeline =
                    Pipeline::new(&lr.log, lr.unwrap.as_ref()).map_err(EvalError::BadRequest)?;
                let mut hint = line_hint(&lr.log);
                // With no stages, counts need no line and byte counts only
                // its length: the store need not rebuild lines.
                if lr.log.stages.is_empty() && lr.unwrap.is_none() {
                    hint.need = match r.op {
                        RangeOp::CountOverTime | RangeOp::Rate | RangeOp::AbsentOverTime => {
                            LineNeed::Nothing
                        }
                        RangeOp::BytesOverTime | RangeOp::BytesRate => LineNeed::Length,
                        _ => LineNeed::Text,
                    };
                }
                let start = first - lr.offset - lr.range + 1;
                let end = last - lr.offset + 1;
                let mut series: HashMap<Labels, Vec<(i64, f64)>> = HashMap::new();
                let fast = pipeline.line_only();
                let bytes = matches!(r.op, RangeOp::BytesOverTime | RangeOp::BytesRate);
                let (_, read_end) = self.read_sliced(
                    tenant,
                    &lr.log.matchers,
                    &hint,
                    (start, end),
                    false,
                    |streams| {
                    for s in &streams {
                        // Line-only pipelines keep the stream's labels and
                        // structured metadata: one key per stream and distinct
                        // metadata (runs of equal metadata share one lookup)
                        // instead of a label map per entry.
                        let mut by_meta: HashMap<&Labels, Vec<(i64, f64)>> = HashMap::new();
                        let mut run: Option<(&Labels, Vec<(i64, f64)>)> = None;
                        for e in &s.entries {
                            if fast {
                                if let Some(line) = pipeline.filter_line(&e.line) {
                                    let sample = (e.ts, if bytes { line.len() as f64 } else { 1.0 });
                                    match &mut run {
                                        Some((m, v)) if **m == e.metadata => v.push(sample),
                                        _ => {
                                            if let Some((m, v)) = run.take() {
                                                by_meta.entry(m).or_default().extend(v);
                                            }
                                            run = Some((&e.metadata, vec![sample]));
                                        }
                                    }
                                }
                                continue;
                            }
                            let Some(out) = pipeline.process(e.ts, &e.line, &s.labels, &e.metadata)
                            else {
                                continue;
                            };
                            if let Some(err) = out.labels.get(ERROR_LABEL) {
                                let mut l = out.labels.clone();
                                l.remove(ERROR_DETAILS_LABEL);
                                return Err(EvalError::Pipeline(format!(
                                    "pipeline error: '{err}' for series: '{}'.\nUse a label filter to intercept this error.",
                                    map_labels(&l)
                                )));
                            }
                            let mut labels = map_labels(&out.labels);
                            if let Some(g) = &r.grouping {
                                labels = vector::group_labels(&labels, g);
                            }
                            let v = if bytes {
                                out.line.len() as f64
                            } else {
                                out.value.unwrap_or(1.0)
                            };
                            series.entry(labels).or_default().push((e.ts, v));
                        }
                        if let Some((m, v)) = run.take() {
                            by_meta.entry(m).or_default().extend(v);
                        }
                        for (meta, samples) in by_meta {
                            let merged;
                            let labels = if meta.is_empty() {
                                &s.labels
                            } else {
                                merged = with_metadata(&s.labels, meta);
                                &merged
                            };
                            let key = match &r.grouping {
                                Some(g) => vector::group_labels(labels, g),
                                None => labels.clone(),
                            };
                            series.entry(key).or_default().extend(samples);
                        }
                    }
                        Ok(false)
                    },
                )?;
                let mut series: Vec<SeriesData> = series
                    .into_iter()
                    .map(|(labels, mut samples)| {
                        samples.sort_by_key(|s| s.0);
                        SeriesData { labels, samples }
                    })
                    .collect();
                series.sort_by(|a, b| a.labels.cmp(&b.labels));
                data.insert(
                    r as *const RangeAgg,
                    RangeData {
                        series,
                        exact_before: read_end.saturating_add(lr.offset),
                    },
                );
                Ok(())
            }
            Expr::VectorAgg(v) => self.load(tenant, &v.expr, first, last, data),
            Expr::Binary(b) => {
                self.load(tenant, &b.lhs, first, last, data)?;
                self.load(tenant, &b.rhs, first, last, data)
            }
            Expr::LabelReplace(l) => self.load(tenant, &l.expr, first, last, data),
            Expr::Paren(e) => self.load(tenant, e, first, last, data),
            Expr::Log(_) => Err(EvalError::BadRequest(
                "a log query cannot be used inside a metric expression".into(),
            )),
            Expr::Literal(_) | Expr::Vector(_) => Ok(()),
        }
    }

    fn eval_at(
        &self,
        expr: &Expr,
        t: i64,
        data: &HashMap<*const RangeAgg, RangeData>,
    ) -> Result<Val, EvalError> {
        Ok(match expr {
            Expr::Literal(v) => Val::Scalar(*v),
            Expr::Vector(v) => Val::Vector(vec![Sample {
                labels: Labels::empty(),
                value: *v,
            }]),
            Expr::Paren(e) => self.eval_at(e, t, data)?,
            Expr::RangeAgg(r) => {
                let d = data
                    .get(&(r as *const RangeAgg))
                    .ok_or_else(|| EvalError::BadRequest("range data missing".into()))?;
                Val::Vector(range_at(r, d, t))
            }
            Expr::VectorAgg(v) => {
                let inner = match self.eval_at(&v.expr, t, data)? {
                    Val::Vector(x) => x,
                    Val::Scalar(_) => {
                        return Err(EvalError::BadRequest(format!(
                            "expected a vector argument for {}",
                            v.op.name()
                        )))
                    }
                };
                Val::Vector(vector::aggregate(v.op, v.param, v.grouping.as_ref(), inner))
            }
            Expr::Binary(b) => {
                let l = self.eval_at(&b.lhs, t, data)?;
                let r = self.eval_at(&b.rhs, t, data)?;
                match (l, r) {
                    (Val::Scalar(a), Val::Scalar(c)) => {
                        Val::Scalar(vector::scalar_op(b.op, a, c).unwrap_or(f64::NAN))
                    }
                    (Val::Vector(v), Val::Scalar(s)) => {
                        Val::Vector(vector::vector_scalar(b.op, v, s, false, b.return_bool))
                    }
                    (Val::Scalar(s), Val::Vector(v)) => {
                        Val::Vector(vector::vector_scalar(b.op, v, s, true, b.return_bool))
                    }
                    (Val::Vector(l), Val::Vector(r)) => Val::Vector(
                        vector::vector_vector(b.op, l, r, b.matching.as_ref(), b.return_bool)
                            .map_err(EvalError::BadRequest)?,
                    ),
                }
            }
            Expr::LabelReplace(l) => match self.eval_at(&l.expr, t, data)? {
                Val::Vector(v) => Val::Vector(
                    vector::label_replace(v, &l.dst, &l.replacement, &l.src, &l.regex)
                        .map_err(EvalError::BadRequest)?,
                ),
                Val::Scalar(_) => {
                    return Err(EvalError::BadRequest(
                        "label_replace expects a vector".into(),
                    ))
                }
            },
            Expr::Log(_) => {
                return Err(EvalError::BadRequest(
                    "a log query cannot be used inside a metric expression".into(),
                ))
            }
        })
    }
}

enum Val {
    Scalar(f64),
    Vector(Vector),
}

/// `[start, end)` cut at multiples of `split` (one piece when `split` is
/// 0), oldest first or newest first.
fn slices(start: i64, end: i64, split: i64, newest_first: bool) -> Vec<(i64, i64)> {
    if split <= 0 || end <= start {
        return vec![(start, end)];
    }
    let mut out = Vec::new();
    let mut lo = start;
    while lo < end {
        let hi = (lo.div_euclid(split) + 1).saturating_mul(split).min(end);
        out.push((lo, hi));
        lo = hi;
    }
    if newest_first {
        out.reverse();
    }
    out
}

fn observe(kind: &'static str, t0: Instant) {
    metrics::counter!("strata_logql_queries_total", "type" => kind).increment(1);
    metrics::histogram!("strata_logql_query_duration_seconds", "type" => kind)
        .record(t0.elapsed().as_secs_f64());
}

fn strip_parens(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(i) => strip_parens(i),
        other => other,
    }
}

/// Instant results of sort/sort_desc/topk/bottomk keep the engine's order.
fn keeps_order(e: &Expr) -> bool {
    matches!(strip_parens(e), Expr::VectorAgg(v) if matches!(v.op, VecOp::Sort | VecOp::SortDesc | VecOp::Topk | VecOp::Bottomk))
}

/// A stream's labels with an entry's structured metadata (metadata wins,
/// as in [`Pipeline::process`]).
fn with_metadata(stream: &Labels, metadata: &Labels) -> Labels {
    Labels::from_pairs(
        stream
            .iter()
            .chain(metadata.iter())
            .map(|l| (l.name.as_str(), l.value.as_str())),
    )
}

fn map_labels(m: &super::pipeline::LabelMap) -> Labels {
    Labels::from_pairs(m.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// One range aggregation at time `t`.
fn range_at(r: &RangeAgg, d: &RangeData, t: i64) -> Vector {
    let hi = t - r.range.offset;
    let lo = hi - r.range.range;
    let secs = r.range.range as f64 / 1e9;
    let mut out = Vec::new();
    let mut any = false;
    for s in &d.series {
        let a = s.samples.partition_point(|x| x.0 <= lo);
        let b = s.samples.partition_point(|x| x.0 <= hi);
        let w = &s.samples[a..b];
        if w.is_empty() {
            continue;
        }
        any = true;
        let vals = || w.iter().map(|x| x.1);
        let n = w.len() as f64;
        let value = match r.op {
            RangeOp::CountOverTime => n,
            RangeOp::Rate => {
                if r.range.unwrap.is_some() {
                    vals().sum::<f64>() / secs
                } else {
                    n / secs
                }
            }
            RangeOp::BytesOverTime | RangeOp::SumOverTime => vals().sum(),
            RangeOp::BytesRate => vals().sum::<f64>() / secs,
            RangeOp::AvgOverTime => vals().sum::<f64>() / n,
            RangeOp::MinOverTime => vals().fold(f64::INFINITY, f64::min),
            RangeOp::MaxOverTime => vals().fold(f64::NEG_INFINITY, f64::max),
            RangeOp::StdvarOverTime | RangeOp::StddevOverTime => {
                let v = vector::variance(vals());
                if r.op == RangeOp::StddevOverTime {
                    v.sqrt()
                } else {
                    v
                }
            }
            RangeOp::QuantileOverTime => {
                vector::quantile(r.param.unwrap_or(f64::NAN), vals().collect())
            }
            RangeOp::FirstOverTime => w[0].1,
            RangeOp::LastOverTime => w[w.len() - 1].1,
            RangeOp::RateCounter => extrapolated_rate(w, lo, hi),
            RangeOp::AbsentOverTime => continue,
        };
        out.push(Sample {
            labels: s.labels.clone(),
            value,
        });
    }
    if r.op == RangeOp::AbsentOverTime {
        if any {
            return Vec::new();
        }
        let mut seen = Vec::new();
        let mut pairs = Vec::new();
        for m in &r.range.log.matchers {
            if m.op == MatchOp::Equal && !seen.contains(&m.name) {
                seen.push(m.name.clone());
                pairs.push((m.name.clone(), m.value.clone()));
            } else if seen.contains(&m.name) {
                pairs.retain(|p| p.0 != m.name);
            }
        }
        return vec![Sample {
            labels: Labels::from_pairs(pairs),
            value: 1.0,
        }];
    }
    out
}

/// Prometheus's extrapolated counter rate over a window `(lo, hi]` (ns).
fn extrapolated_rate(w: &[(i64, f64)], lo: i64, hi: i64) -> f64 {
    if w.len() < 2 {
        return 0.0;
    }
    let first = w[0];
    let last = w[w.len() - 1];
    let mut delta = last.1 - first.1;
    let mut prev = first.1;
    for x in &w[1..] {
        if x.1 < prev {
            delta += prev;
        }
        prev = x.1;
    }
    let range_secs = (hi - lo) as f64 / 1e9;
    let sampled = (last.0 - first.0) as f64 / 1e9;
    let avg_step = sampled / (w.len() - 1) as f64;
    let mut to_start = (first.0 - lo) as f64 / 1e9;
    let to_end = (hi - last.0) as f64 / 1e9;
    if delta > 0.0 && first.1 >= 0.0 {
        let to_zero = sampled * (first.1 / delta);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = avg_step * 1.1;
    let mut extrap = sampled;
    extrap += if to_start < threshold {
        to_start
    } else {
        avg_step / 2.0
    };
    extrap += if to_end < threshold {
        to_end
    } else {
        avg_step / 2.0
    };
    delta * (extrap / sampled) / range_secs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::MemLogs;

    fn engine() -> (Engine, Tenant) {
        let m = MemLogs::new();
        let t = Tenant::new("t").unwrap();
        let s = 1_000_000_000;
        m.push(
            &t,
            Labels::from_pairs([("app", "api")]),
            vec![
                LogEntry::new(s, "level=info msg=ok dur=10ms"),
                LogEntry::new(2 * s, "level=error msg=bad dur=30ms"),
                LogEntry::new(3 * s, "level=info msg=ok dur=20ms"),
            ],
        );
        (Engine::new(Arc::new(m), EngineLimits::default()), t)
    }

    #[test]
    fn log_query_direction_and_limit() {
        let (e, t) = engine();
        let p = LogParams {
            start: 0,
            end: 10_000_000_000,
            limit: 1,
            direction: Direction::Backward,
        };
        let QueryResult::Streams(s) = e
            .query_logs(&t, r#"{app="api"} | logfmt | level="info""#, p)
            .unwrap()
        else {
            panic!("not streams")
        };
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].entries[0].ts, 3_000_000_000);
        assert_eq!(s[0].labels.get("msg"), Some("ok"));
    }

    /// Line-only metric pipelines group by stream and structured metadata
    /// without a label map per entry; they must agree with the general path
    /// (`| drop` of an absent label takes it).
    #[test]
    fn line_only_metrics_keep_structured_metadata() {
        let m = MemLogs::new();
        let t = Tenant::new("t").unwrap();
        let s = 1_000_000_000;
        let meta = |pairs: &[(&str, &str)]| Labels::from_pairs(pairs.iter().copied());
        let entry = |i: i64, line: &str, md: Labels| LogEntry {
            ts: i * s,
            line: line.into(),
            metadata: md,
        };
        m.push(
            &t,
            Labels::from_pairs([("app", "api"), ("level", "x")]),
            vec![
                entry(1, "a", meta(&[("detected_level", "info")])),
                entry(2, "b", meta(&[("detected_level", "info")])),
                entry(
                    3,
                    "c",
                    meta(&[("detected_level", "error"), ("trace", "t1")]),
                ),
                entry(4, "d", Labels::empty()),
                entry(5, "e", meta(&[("detected_level", "info")])),
                entry(6, "f", meta(&[("level", "override")])),
            ],
        );
        let e = Engine::new(Arc::new(m), EngineLimits::default());
        let rp = RangeParams {
            start: 2 * s,
            end: 8 * s,
            step: s,
        };
        let run = |q: &str| {
            let QueryResult::Matrix(m) = e
                .query(&t, q, rp, false, (100, Direction::Backward))
                .unwrap()
            else {
                panic!("not a matrix")
            };
            m
        };
        for (fast, general) in [
            (
                r#"count_over_time({app="api"}[3s])"#,
                r#"count_over_time({app="api"} | drop nothing [3s])"#,
            ),
            (
                r#"sum by (detected_level, level) (bytes_over_time({app="api"} |= "" [3s]))"#,
                r#"sum by (detected_level, level) (bytes_over_time({app="api"} | drop nothing [3s]))"#,
            ),
        ] {
            let got = run(fast);
            assert_eq!(got, run(general), "{fast}");
            assert!(got.len() >= 4, "{got:?}");
        }
    }

    #[test]
    fn metric_windows_are_left_open() {
        let (e, t) = engine();
        let s = 1_000_000_000;
        let rp = RangeParams {
            start: s,
            end: 3 * s,
            step: s,
        };
        let QueryResult::Matrix(m) = e
            .query(
                &t,
                r#"count_over_time({app="api"}[1s])"#,
                rp,
                false,
                (100, Direction::Backward),
            )
            .unwrap()
        else {
            panic!("not a matrix")
        };
        assert_eq!(m[0].points, vec![(s, 1.0), (2 * s, 1.0), (3 * s, 1.0)]);
        let err = e
            .query(
                &t,
                r#"sum(sum_over_time({app="api"} | logfmt | unwrap msg [5s]))"#,
                rp,
                true,
                (100, Direction::Backward),
            )
            .unwrap_err();
        assert!(err.to_string().contains("SampleExtractionErr"), "{err}");
    }

    #[test]
    fn limits_apply() {
        let (e, t) = engine();
        let e = Engine::new(
            e.reader,
            EngineLimits {
                max_series: 1,
                max_points: 3,
                max_entries: 2,
            },
        );
        let p = LogParams {
            start: 0,
            end: 10_000_000_000,
            limit: 100,
            direction: Direction::Forward,
        };
        let QueryResult::Streams(s) = e.query_logs(&t, r#"{app="api"}"#, p).unwrap() else {
            panic!("not streams")
        };
        assert_eq!(s[0].entries.len(), 2);
        let s = 1_000_000_000;
        let rp = RangeParams {
            start: 0,
            end: 5 * s,
            step: s,
        };
        let err = e
            .query(
                &t,
                r#"count_over_time({app="api"}[1s])"#,
                rp,
                false,
                (10, Direction::Forward),
            )
            .unwrap_err();
        assert!(
            err.to_string().contains("maximum resolution of 3 points"),
            "{err}"
        );
        let rp = RangeParams {
            start: 3 * s,
            end: 3 * s,
            step: s,
        };
        let err = e
            .query(
                &t,
                r#"count_over_time({app="api"} | logfmt [5s])"#,
                rp,
                true,
                (10, Direction::Forward),
            )
            .unwrap_err();
        assert!(err.to_string().contains("maximum of series (1)"), "{err}");
    }

    /// A reader that counts selects and takes `delay` over each.
    struct Slow {
        inner: MemLogs,
        delay: std::time::Duration,
        selects: std::sync::atomic::AtomicUsize,
    }

    impl LogReader for Slow {
        fn select(&self, t: &Tenant, sel: &LogSelect<'_>) -> Result<Vec<Stream>, LogReadError> {
            self.selects
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            std::thread::sleep(self.delay);
            self.inner.select(t, sel)
        }
    }

    /// One entry per second over 100 s, read in 10 s slices.
    fn slow(delay_ms: u64) -> (Arc<Slow>, Tenant) {
        let m = MemLogs::new();
        let t = Tenant::new("t").unwrap();
        let s = 1_000_000_000;
        m.push(
            &t,
            Labels::from_pairs([("app", "api")]),
            (0..100)
                .map(|i| LogEntry::new(i * s, format!("n={i}")))
                .collect(),
        );
        let r = Slow {
            inner: m,
            delay: std::time::Duration::from_millis(delay_ms),
            selects: Default::default(),
        };
        (Arc::new(r), t)
    }

    #[test]
    fn slices_align_to_split() {
        assert_eq!(slices(5, 25, 10, false), [(5, 10), (10, 20), (20, 25)]);
        assert_eq!(slices(5, 25, 10, true), [(20, 25), (10, 20), (5, 10)]);
        assert_eq!(slices(-5, 5, 10, false), [(-5, 0), (0, 5)]);
        assert_eq!(slices(5, 25, 0, false), [(5, 25)]);
    }

    #[test]
    fn backward_log_query_stops_once_the_limit_is_filled() {
        let (r, t) = slow(0);
        let s = 1_000_000_000;
        let e = Engine::new(r.clone(), EngineLimits::default()).with_plan(ReadPlan {
            split: 10 * s,
            deadline: None,
        });
        let p = LogParams {
            start: 0,
            end: 100 * s,
            limit: 15,
            direction: Direction::Backward,
        };
        let QueryResult::Streams(got) = e.query_logs(&t, r#"{app="api"}"#, p).unwrap() else {
            panic!("not streams")
        };
        let ts: Vec<i64> = got[0].entries.iter().map(|e| e.ts / s).collect();
        assert_eq!(ts, (85..100).rev().collect::<Vec<_>>());
        assert_eq!(r.selects.load(std::sync::atomic::Ordering::Relaxed), 2);
        assert!(e.partial().is_empty());
    }

    #[test]
    fn deadline_returns_the_slices_read_flagged_partial() {
        // Each slice takes 30 ms and the deadline is 45 ms away: the read
        // stops after the second slice (or the first on a slow machine).
        let (r, t) = slow(30);
        let s = 1_000_000_000;
        let plan = |ms| ReadPlan {
            split: 10 * s,
            deadline: Some(Instant::now() + std::time::Duration::from_millis(ms)),
        };
        let e = Engine::new(r.clone(), EngineLimits::default()).with_plan(plan(45));
        let p = LogParams {
            start: 0,
            end: 100 * s,
            limit: 1000,
            direction: Direction::Forward,
        };
        let QueryResult::Streams(got) = e.query_logs(&t, r#"{app="api"}"#, p).unwrap() else {
            panic!("not streams")
        };
        let n = got[0].entries.len() as i64;
        assert!(n % 10 == 0 && n < 100, "{n} entries");
        assert_eq!(
            e.partial(),
            [Partial {
                wanted: (0, 100 * s),
                read: (0, n * s)
            }]
        );
        // A range query keeps only the steps whose window was read whole.
        let points = |e: &Engine| {
            let rp = RangeParams {
                start: 10 * s,
                end: 99 * s,
                step: 10 * s,
            };
            let q = r#"count_over_time({app="api"}[10s])"#;
            match e.query(&t, q, rp, false, (100, Direction::Forward)) {
                Ok(QueryResult::Matrix(m)) => m.first().map(|m| m.points.clone()),
                other => panic!("not a matrix: {other:?}"),
            }
            .unwrap_or_default()
        };
        let e = Engine::new(r.clone(), EngineLimits::default()).with_plan(plan(45));
        let got = points(&e);
        let part = e.partial();
        assert_eq!(part.len(), 1);
        let read_end = part[0].read.1;
        assert!(read_end < 100 * s, "{part:?}");
        let whole: Vec<(i64, f64)> = (1..10).map(|i| (i * 10 * s, 10.0)).collect();
        let read: Vec<(i64, f64)> = whole.iter().copied().filter(|p| p.0 < read_end).collect();
        assert_eq!(got, read, "read up to {read_end}");
        // Without a deadline the same query is whole.
        let e = Engine::new(r, EngineLimits::default()).with_plan(ReadPlan {
            split: 10 * s,
            deadline: None,
        });
        assert_eq!(points(&e), whole);
        assert!(e.partial().is_empty());
    }
}
