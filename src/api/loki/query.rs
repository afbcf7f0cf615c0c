//! `query` and `query_range`: Loki's parameters (ns, float-second and
//! RFC3339 times, `Nms` or float steps, `direction`, `limit`), evaluation on
//! a blocking thread through a [`Metered`] reader (bytes budget, deadline,
//! stats), results in Loki's JSON.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::json::{self, Data, QueryStats};
use super::{request, run_query, LokiError, LokiState};
use crate::api::prom::json::json_response;
use crate::api::prom::params::Form;
use crate::config::LokiConfig;
use crate::logs::{LineHint, LineNeed, LogReadError, LogReader, LogSelect, Stream};
use crate::model::Tenant;
use crate::query::logql::eval::{EngineLimits, Partial, ReadPlan};
use crate::query::logql::{
    Direction, Engine, EvalError, Expr, LogParams, QueryResult, RangeParams,
};

/// Loki's default `limit`.
const DEFAULT_LIMIT: usize = 100;
/// Loki's default look-back when `start` is absent.
const DEFAULT_SINCE_NS: i64 = 3_600_000_000_000;
/// Loki's cap on points per series.
const MAX_POINTS: i64 = 11_000;

/// A [`LogReader`] layer for one query: counts what it reads (for `stats`),
/// enforces `loki.max_query_bytes_read` and stops reading past the deadline.
/// Index methods go to the wrapped store's own (indexed) implementations.
pub struct Metered {
    inner: Arc<dyn LogReader>,
    deadline: Option<Instant>,
    max_bytes: u64,
    bytes: AtomicU64,
    lines: AtomicU64,
}

impl Metered {
    /// Wraps `inner` for one query; reads past `deadline` (when given)
    /// fail with Loki's timeout. The LogQL engine keeps its own deadline
    /// (it returns partial results), so its reader has none.
    pub fn new(inner: Arc<dyn LogReader>, deadline: Option<Instant>, max_bytes: usize) -> Metered {
        Metered {
            inner,
            deadline,
            max_bytes: max_bytes as u64,
            bytes: AtomicU64::new(0),
            lines: AtomicU64::new(0),
        }
    }

    /// The wrapped reader.
    pub fn inner(&self) -> Arc<dyn LogReader> {
        self.inner.clone()
    }

    /// When reading stops.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    fn check_deadline(&self) -> Result<(), LogReadError> {
        if self.deadline.is_some_and(|d| Instant::now() > d) {
            return Err(LogReadError::LimitExceeded(super::TIMED_OUT.into()));
        }
        Ok(())
    }
}

impl LogReader for Metered {
    fn select(&self, tenant: &Tenant, sel: &LogSelect<'_>) -> Result<Vec<Stream>, LogReadError> {
        self.check_deadline()?;
        // The bytes read are counted from the lines: their lengths at least.
        let hint;
        let out = match sel.hint.need {
            LineNeed::Nothing => {
                hint = LineHint {
                    need: LineNeed::Length,
                    ..sel.hint.clone()
                };
                let sel = LogSelect {
                    hint: &hint,
                    ..*sel
                };
                self.inner.select(tenant, &sel)?
            }
            _ => self.inner.select(tenant, sel)?,
        };
        let bytes: u64 = out
            .iter()
            .flat_map(|s| s.entries.iter())
            .map(|e| e.line.len() as u64)
            .sum();
        let lines: u64 = out.iter().map(|s| s.entries.len() as u64).sum();
        let total = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.lines.fetch_add(lines, Ordering::Relaxed);
        if self.max_bytes > 0 && total > self.max_bytes {
            return Err(LogReadError::LimitExceeded(too_many_bytes(
                total,
                self.max_bytes,
            )));
        }
        Ok(out)
    }

    fn streams(
        &self,
        tenant: &Tenant,
        matchers: &[crate::model::Matcher],
        start: i64,
        end: i64,
    ) -> Result<Vec<crate::model::Labels>, LogReadError> {
        self.check_deadline()?;
        self.inner.streams(tenant, matchers, start, end)
    }

    fn label_names(
        &self,
        tenant: &Tenant,
        matchers: &[crate::model::Matcher],
        start: i64,
        end: i64,
    ) -> Result<Vec<String>, LogReadError> {
        self.check_deadline()?;
        self.inner.label_names(tenant, matchers, start, end)
    }

    fn label_values(
        &self,
        tenant: &Tenant,
        name: &str,
        matchers: &[crate::model::Matcher],
        start: i64,
        end: i64,
    ) -> Result<Vec<String>, LogReadError> {
        self.check_deadline()?;
        self.inner.label_values(tenant, name, matchers, start, end)
    }

    fn stats(
        &self,
        tenant: &Tenant,
        matchers: &[crate::model::Matcher],
        start: i64,
        end: i64,
    ) -> Result<crate::logs::LogStats, LogReadError> {
        self.check_deadline()?;
        self.inner.stats(tenant, matchers, start, end)
    }
}

/// Loki's message for `max_query_bytes_read` (sizes as go-humanize's
/// `IBytes`).
fn too_many_bytes(query: u64, limit: u64) -> String {
    format!(
        "the query would read too many bytes (query: {}, limit: {}); consider adding more specific stream selectors or reduce the time range of the query",
        ibytes(query),
        ibytes(limit)
    )
}

/// go-humanize's `IBytes`: `512 B`, `1.5 KiB`, `49 MiB`.
pub fn ibytes(n: u64) -> String {
    if n < 1024 {
        return format!("{n} B");
    }
    let units = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let e = ((n as f64).ln() / 1024f64.ln()).floor() as usize;
    let e = e.clamp(1, units.len());
    let val = (n as f64 / 1024f64.powi(e as i32) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{val:.1} {}", units[e - 1])
    } else {
        format!("{val:.0} {}", units[e - 1])
    }
}

/// Go's `time.Duration.String` of `ns`: `171h0m0s`, `1.5s`, `250ms`.
pub fn go_duration(ns: i64) -> String {
    let neg = if ns < 0 { "-" } else { "" };
    let u = ns.unsigned_abs();
    let frac = |v: u64, div: u64| {
        let s = format!("{}.{:0w$}", v / div, v % div, w = div.ilog10() as usize);
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    if u == 0 {
        return "0s".into();
    }
    if u < 1_000 {
        return format!("{neg}{u}ns");
    }
    if u < 1_000_000 {
        return format!("{neg}{}µs", frac(u, 1_000));
    }
    if u < 1_000_000_000 {
        return format!("{neg}{}ms", frac(u, 1_000_000));
    }
    let (h, rest) = (u / 3_600_000_000_000, u % 3_600_000_000_000);
    let (m, rest) = (rest / 60_000_000_000, rest % 60_000_000_000);
    let secs = frac(rest, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{neg}{secs}s"),
        (0, m) => format!("{neg}{m}m{secs}s"),
        (h, m) => format!("{neg}{h}h{m}m{secs}s"),
    }
}

/// Parses a Loki time: float seconds when it has a dot, integer seconds up
/// to 10 digits, integer nanoseconds beyond, else RFC3339 (Loki's
/// `ParseTimestamp`). In ns.
pub fn parse_time(v: &str) -> Result<i64, String> {
    if v.contains('.') {
        if let Ok(f) = v.parse::<f64>() {
            let secs = f.trunc();
            let ms = ((f - secs) * 1000.0).round();
            return Ok((secs as i64).saturating_mul(1_000_000_000) + (ms as i64) * 1_000_000);
        }
    }
    match v.parse::<i64>() {
        Ok(n) if v.trim_start_matches('-').len() <= 10 => Ok(n.saturating_mul(1_000_000_000)),
        Ok(n) => Ok(n),
        Err(_) => chrono::DateTime::parse_from_rfc3339(v)
            .ok()
            .and_then(|t| t.timestamp_nanos_opt())
            .ok_or_else(|| format!("cannot parse \"{v}\" to a valid timestamp")),
    }
}

/// A time parameter with a default.
pub fn time_param(form: &Form, name: &str, default: i64) -> Result<i64, LokiError> {
    match form.get(name) {
        "" => Ok(default),
        v => parse_time(v).map_err(LokiError::bad),
    }
}

/// Parses a step: float seconds or a duration (`15000ms`, `1m`). In ns.
pub fn parse_step(v: &str) -> Result<i64, String> {
    if let Ok(f) = v.parse::<f64>() {
        if f.is_finite() {
            return Ok((f * 1e9).round() as i64);
        }
    }
    crate::model::parse_duration(v)
        .map(|ms| ms.saturating_mul(1_000_000))
        .map_err(|_| format!("cannot parse \"{v}\" to a valid duration"))
}

pub(crate) fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// `start`/`end` with Loki's defaults (`end` now, `start` an hour before).
pub fn bounds(form: &Form) -> Result<(i64, i64), LokiError> {
    let now = now_ns();
    let end = time_param(form, "end", now)?;
    let start = time_param(form, "start", end - DEFAULT_SINCE_NS)?;
    if end < start {
        return Err(LokiError::bad(
            "end timestamp must not be before or equal to start time",
        ));
    }
    Ok((start, end))
}

fn limit_param(form: &Form, cfg: &crate::config::LogqlConfig) -> Result<usize, LokiError> {
    let limit = match form.get("limit") {
        "" => DEFAULT_LIMIT as i64,
        v => v.parse::<i64>().map_err(|_| {
            LokiError::bad(format!(
                "strconv.ParseUint: parsing \"{v}\": invalid syntax"
            ))
        })?,
    };
    if limit <= 0 {
        return Err(LokiError::bad("limit must be a positive value"));
    }
    let max = cfg.max_entries_limit_per_query;
    if max > 0 && limit as usize > max {
        return Err(LokiError::bad(format!(
            "max entries limit per query exceeded, limit > max_entries_limit_per_query ({limit} > {max})"
        )));
    }
    Ok(limit as usize)
}

fn direction_param(form: &Form) -> Result<Direction, LokiError> {
    match form.get("direction").to_ascii_lowercase().as_str() {
        "" | "backward" => Ok(Direction::Backward),
        "forward" => Ok(Direction::Forward),
        v => Err(LokiError::bad(format!("invalid direction '{v}'"))),
    }
}

fn check_length(cfg: &LokiConfig, start: i64, end: i64) -> Result<(), LokiError> {
    let max = cfg.max_query_length.0.saturating_mul(1_000_000);
    if max > 0 && end - start > max {
        return Err(LokiError::bad(format!(
            "the query time range exceeds the limit (query length: {}, limit: {})",
            go_duration(end - start),
            crate::model::format_duration(max / 1_000_000)
        )));
    }
    Ok(())
}

/// Maps engine errors to Loki's status codes.
pub fn eval_error(e: EvalError) -> LokiError {
    match e {
        EvalError::Read(LogReadError::Store(m)) => {
            LokiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("log store: {m}"))
        }
        EvalError::Read(LogReadError::LimitExceeded(m)) if m == super::TIMED_OUT => {
            LokiError::new(StatusCode::GATEWAY_TIMEOUT, m)
        }
        e => LokiError::bad(e.to_string()),
    }
}

fn categorize(headers: &HeaderMap) -> bool {
    headers
        .get_all("x-loki-response-encoding-flags")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|f| f.trim() == "categorize-labels")
}

struct Job {
    tenant: Tenant,
    query: String,
    rp: RangeParams,
    instant: bool,
    limit: usize,
    direction: Direction,
    categorize: bool,
}

/// Runs a query through the engine over a metered reader, reading in
/// `loki.split_queries_by_interval` slices until `deadline`: a query cut
/// short answers with what it read and a warning saying so.
fn execute(st: &LokiState, job: Job, deadline: Instant) -> Result<String, LokiError> {
    let t0 = Instant::now();
    let cfg = &st.app.config;
    let max_bytes = cfg.loki.max_query_bytes_read;
    let reader = Arc::new(Metered::new(st.app.logs_reader.clone(), None, max_bytes));
    let engine = Engine::new(reader.clone(), EngineLimits::from(&cfg.logql)).with_plan(ReadPlan {
        split: cfg
            .loki
            .split_queries_by_interval
            .0
            .saturating_mul(1_000_000),
        deadline: Some(deadline),
    });
    if max_bytes > 0 {
        // Loki refuses before reading, from the index's byte counts.
        let estimate = engine
            .bytes_estimate(&job.tenant, &job.query, job.rp)
            .map_err(eval_error)?;
        if estimate > max_bytes as u64 {
            return Err(LokiError::bad(too_many_bytes(estimate, max_bytes as u64)));
        }
    }
    let is_log = matches!(crate::query::logql::parse(&job.query), Ok(Expr::Log(_)));
    let data = if is_log && job.categorize && !job.instant {
        let p = LogParams {
            start: job.rp.start,
            end: job.rp.end,
            limit: job.limit,
            direction: job.direction,
        };
        Data::Categorized(
            engine
                .query_logs_categorized(&job.tenant, &job.query, p)
                .map_err(eval_error)?,
        )
    } else {
        match engine
            .query(
                &job.tenant,
                &job.query,
                job.rp,
                job.instant,
                (job.limit, job.direction),
            )
            .map_err(eval_error)?
        {
            QueryResult::Streams(s) => Data::Streams(s),
            QueryResult::Matrix(m) => Data::Matrix(m),
            QueryResult::Vector(t, v) => Data::Vector(t, v),
            QueryResult::Scalar(t, v) => Data::Scalar(t, v),
        }
    };
    let returned = match &data {
        Data::Streams(s) => s.iter().map(|s| s.entries.len() as u64).sum(),
        Data::Categorized(s) => s.iter().map(|s| s.1.len() as u64).sum(),
        _ => 0,
    };
    let stats = QueryStats {
        bytes: reader.bytes.load(Ordering::Relaxed),
        lines: reader.lines.load(Ordering::Relaxed),
        returned,
        exec_seconds: t0.elapsed().as_secs_f64(),
    };
    let timeout = cfg.loki.query_timeout.0;
    let warnings: Vec<String> = engine
        .partial()
        .iter()
        .map(|p| partial_warning(p, timeout))
        .collect();
    if !warnings.is_empty() {
        metrics::counter!(super::LOKI_PARTIAL_RESULTS_TOTAL).increment(1);
    }
    Ok(json::result(&data, Some(&stats), &warnings))
}

/// The warning of a result cut short at the deadline.
fn partial_warning(p: &Partial, timeout_ms: i64) -> String {
    let t = |ns: i64| {
        chrono::DateTime::from_timestamp_nanos(ns)
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    };
    format!(
        "partial result: the query reached its timeout ({}, loki.query_timeout) after reading {} to {} of {} to {}; narrow the time range or the selector for a complete result",
        crate::model::format_duration(timeout_ms),
        t(p.read.0),
        t(p.read.1),
        t(p.wanted.0),
        t(p.wanted.1)
    )
}

async fn respond(st: LokiState, endpoint: &'static str, tenant: Tenant, job: Job) -> Response {
    let st2 = st.clone();
    match run_query(&st, &tenant, endpoint, move |deadline| {
        execute(&st2, job, deadline)
    })
    .await
    {
        Ok(body) => json_response(StatusCode::OK, body),
        Err(e) => e.into_response(),
    }
}

fn query_param(form: &Form) -> Result<String, LokiError> {
    match form.get("query") {
        "" => Err(LokiError::bad("query parameter is required")),
        q => Ok(q.to_string()),
    }
}

/// The `step` parameter in ns: Loki's default (the range over 250 points,
/// at least 1 s) when absent; zero or negative steps are refused.
pub fn step_param(form: &Form, start: i64, end: i64) -> Result<i64, LokiError> {
    let step = match form.get("step") {
        "" => ((end - start) / 250 / 1_000_000_000).max(1) * 1_000_000_000,
        v => parse_step(v).map_err(LokiError::bad)?,
    };
    if step <= 0 {
        return Err(LokiError::bad(
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    Ok(step)
}

/// The evaluation times of a range query: `start`, `end`, `step` with
/// Loki's defaults and checks.
fn range_params(form: &Form, cfg: &LokiConfig) -> Result<RangeParams, LokiError> {
    let (start, end) = bounds(form)?;
    check_length(cfg, start, end)?;
    let step = step_param(form, start, end)?;
    if (end - start) / step > MAX_POINTS {
        return Err(LokiError::bad(
            "exceeded maximum resolution of 11,000 points per timeseries. Try increasing the value of the step parameter",
        ));
    }
    Ok(RangeParams { start, end, step })
}

async fn handle(st: LokiState, req: Request, endpoint: &'static str) -> Response {
    let categorize = categorize(req.headers());
    let parsed = async {
        let (tenant, form) = request(&st, req).await?;
        let query = query_param(&form)?;
        let instant = endpoint == "query";
        let rp = if instant {
            let t = time_param(&form, "time", now_ns())?;
            RangeParams {
                start: t,
                end: t,
                step: 0,
            }
        } else {
            range_params(&form, &st.app.config.loki)?
        };
        let job = Job {
            tenant: tenant.clone(),
            query,
            rp,
            instant,
            limit: limit_param(&form, &st.app.config.logql)?,
            direction: direction_param(&form)?,
            categorize,
        };
        Ok::<_, LokiError>((tenant, job))
    }
    .await;
    match parsed {
        Ok((tenant, job)) => respond(st, endpoint, tenant, job).await,
        Err(e) => {
            super::count(endpoint, Some(e.status));
            e.into_response()
        }
    }
}

/// `GET|POST /loki/api/v1/query`.
pub async fn instant(State(st): State<LokiState>, req: Request) -> Response {
    handle(st, req, "query").await
}

/// `GET|POST /loki/api/v1/query_range`.
pub async fn range(State(st): State<LokiState>, req: Request) -> Response {
    handle(st, req, "query_range").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_steps() {
        assert_eq!(parse_time("1700000000").unwrap(), 1_700_000_000_000_000_000);
        assert_eq!(
            parse_time("1700000000000000123").unwrap(),
            1_700_000_000_000_000_123
        );
        assert_eq!(
            parse_time("1700000000.5").unwrap(),
            1_700_000_000_500_000_000
        );
        assert_eq!(
            parse_time("2023-11-14T22:13:20.25Z").unwrap(),
            1_700_000_000_250_000_000
        );
        assert_eq!(
            parse_time("x").unwrap_err(),
            "cannot parse \"x\" to a valid timestamp"
        );
        assert_eq!(parse_step("15000ms").unwrap(), 15_000_000_000);
        assert_eq!(parse_step("1.5").unwrap(), 1_500_000_000);
        assert_eq!(parse_step("1m").unwrap(), 60_000_000_000);
        assert!(parse_step("abc").is_err());
    }

    #[test]
    fn go_formats() {
        for (ns, want) in [
            (0, "0s"),
            (1_500_000_000, "1.5s"),
            (250_000_000, "250ms"),
            (1_500, "1.5µs"),
            (171 * 3_600_000_000_000, "171h0m0s"),
            (61_000_000_000, "1m1s"),
            (-2_000_000_000, "-2s"),
        ] {
            assert_eq!(go_duration(ns), want, "{ns}");
        }
        for (n, want) in [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (1536, "1.5 KiB"),
            (49 << 20, "49 MiB"),
            (5 << 30, "5.0 GiB"),
        ] {
            assert_eq!(ibytes(n), want, "{n}");
        }
    }
}
