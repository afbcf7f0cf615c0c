//! `/api/v1/query` and `/api/v1/query_range`: parameters checked in
//! Prometheus's order with its messages, evaluation on a blocking thread
//! under the per-tenant concurrency limit and the query timeout, results
//! rendered in Prometheus's JSON.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::json::{self, ApiError, ErrorType};
use super::params::{self, Form};
use super::PromState;
use crate::model::Tenant;
use crate::query::promql::{QueryError, QueryOutput, QueryParams, Value};
use crate::storage::MetricsReader;

/// Query latency by endpoint (`query`, `query_range`).
pub const QUERY_DURATION_SECONDS: &str = "strata_query_duration_seconds";

/// Prometheus's cap on points per series in a range query.
const MAX_POINTS_PER_SERIES: i64 = 11_000;

/// Per-tenant limit on queries running at once; further queries wait.
pub struct QueryLimiter {
    per_tenant: usize,
    sems: Mutex<HashMap<Tenant, Arc<Semaphore>>>,
}

impl QueryLimiter {
    /// At most `per_tenant` concurrent queries per tenant (0 = unlimited).
    pub fn new(per_tenant: usize) -> QueryLimiter {
        QueryLimiter {
            per_tenant,
            sems: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for a slot (None when unlimited).
    pub async fn acquire(&self, tenant: &Tenant) -> Option<OwnedSemaphorePermit> {
        if self.per_tenant == 0 {
            return None;
        }
        let sem = self
            .sems
            .lock()
            .entry(tenant.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_tenant)))
            .clone();
        sem.acquire_owned().await.ok()
    }
}

/// Maps engine errors to Prometheus's error types; parse errors read
/// `invalid parameter "query": ...` as in Prometheus.
fn query_error(e: QueryError) -> ApiError {
    let kind = ErrorType::parse(e.error_type());
    let message = match (&e, kind) {
        (QueryError::BadData(m), _) if !m.starts_with("invalid parameter") => {
            format!("invalid parameter \"query\": {m}")
        }
        _ => e.to_string(),
    };
    ApiError { kind, message }
}

/// Runs `f` on a blocking thread under the tenant's concurrency limit and
/// `timeout`; a panic inside (an unfinished engine) becomes a 500.
pub async fn run_limited<T: Send + 'static>(
    st: &PromState,
    tenant: &Tenant,
    timeout: Duration,
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let deadline = Instant::now() + timeout;
    let permit = tokio::time::timeout(timeout, st.queries.acquire(tenant))
        .await
        .map_err(|_| query_error(QueryError::Timeout("query queue".into())))?;
    let left = deadline.saturating_duration_since(Instant::now());
    let job = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        f()
    });
    match tokio::time::timeout(left, job).await {
        Err(_) => Err(query_error(QueryError::Timeout(
            "expression evaluation".into(),
        ))),
        Ok(Err(join)) => Err(panicked(join)),
        Ok(Ok(r)) => r,
    }
}

fn panicked(what: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %what, "query evaluation failed");
    ApiError::internal(format!("query evaluation failed unexpectedly: {what}"))
}

/// [`run_limited`] for PromQL evaluations, which keep their own deadline:
/// on the multi-threaded runtime the evaluation runs on the request's own
/// thread (`block_in_place` hands the worker's other tasks to another
/// thread) instead of going to a blocking thread and back, two context
/// switches that cost more than a cheap query itself. With `inline` (the
/// engine saw this query run in under `query.inline_eval_below`) it runs
/// right here without the hand-off either: it blocks this worker no longer
/// than rendering a mid-size answer does.
async fn run_query<T: Send + 'static>(
    st: &PromState,
    tenant: &Tenant,
    timeout: Duration,
    inline: bool,
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let multi = Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread;
    if !multi && !inline {
        return run_limited(st, tenant, timeout, f).await;
    }
    let _permit = tokio::time::timeout(timeout, st.queries.acquire(tenant))
        .await
        .map_err(|_| query_error(QueryError::Timeout("query queue".into())))?;
    let call = || std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    let r = if inline {
        call()
    } else {
        tokio::task::block_in_place(call)
    };
    r.unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(panicked(format!("panic: {msg}")))
    })
}

/// What every query-API endpoint reads first: the tenant, the merged form
/// (URL query and form body) and the engine's default timeout.
pub(super) struct ApiRequest {
    /// From `X-Scope-OrgID`.
    pub tenant: Tenant,
    /// Merged parameters.
    pub form: Form,
    /// The engine's timeout (a `timeout` parameter may lower it).
    pub timeout: Duration,
}

impl ApiRequest {
    /// Reads the tenant and the body (within the body limit) and merges
    /// the parameters.
    pub(super) async fn read(
        st: &PromState,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<ApiRequest, ApiError> {
        let tenant = crate::api::tenant_from_headers(headers).map_err(ApiError::bad_data)?;
        let body = super::read_body(body, headers, st.app.config.limits.max_request_body_bytes)
            .await
            .map_err(ApiError::bad_data)?;
        Ok(ApiRequest {
            tenant,
            form: Form::parse(method, uri, headers, &body),
            timeout: st.app.promql.options().timeout,
        })
    }

    /// Runs `f` with the metrics reader and the tenant on a blocking
    /// thread, under the tenant's query limit and the request's timeout.
    pub(super) async fn read_metrics<T: Send + 'static>(
        &self,
        st: &PromState,
        f: impl FnOnce(&dyn MetricsReader, &Tenant) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let reader = st.app.metrics_reader.clone();
        let tenant = self.tenant.clone();
        run_limited(st, &self.tenant, self.timeout, move || f(&*reader, &tenant)).await
    }
}

/// `query.inline_eval_below`.
fn inline_below(st: &PromState) -> Duration {
    st.app.config.query.inline_eval_below.to_std()
}

/// `timeout`, `lookback_delta` and `stats`.
fn options(st: &PromState, form: &Form) -> Result<(QueryParams, Duration), ApiError> {
    let engine_timeout = st.app.promql.options().timeout;
    let mut timeout = engine_timeout;
    let mut p = QueryParams::default();
    let v = form.get("timeout");
    if !v.is_empty() {
        let ms = params::parse_duration(v).map_err(|e| ApiError::invalid_param("timeout", e))?;
        timeout = timeout.min(Duration::from_millis(ms.max(0) as u64));
        p.timeout = Some(timeout);
    }
    let lb = form.get("lookback_delta");
    if !lb.is_empty() {
        let ms = params::parse_duration(lb).map_err(|e| {
            ApiError::bad_data(format!("error parsing lookback delta duration: {e}"))
        })?;
        p.lookback_delta_ms = Some(ms);
    }
    p.stats = !form.get("stats").is_empty();
    Ok((p, timeout))
}

/// `GET|POST /api/v1/query`.
pub async fn instant(
    State(st): State<PromState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let r = async {
        let r = ApiRequest::read(&st, &method, &uri, &headers, body).await?;
        let limit = params::limit_param(&r.form)?;
        let now = chrono::Utc::now().timestamp_millis();
        let t = params::time_param(&r.form, "time", now)?;
        let (params, timeout) = options(&st, &r.form)?;
        let engine = st.app.promql.clone();
        let query = r.form.get("query").to_string();
        let (tenant, p2) = (r.tenant.clone(), params.clone());
        let inline = engine.ran_faster_than(&query, 0, 0, inline_below(&st));
        let out = run_query(&st, &r.tenant, timeout, inline, move || {
            engine.instant(&tenant, &query, t, &p2).map_err(query_error)
        })
        .await?;
        Ok::<_, ApiError>(render(out, limit, params.stats))
    }
    .await;
    finish("query", started, r)
}

/// `GET|POST /api/v1/query_range`.
pub async fn range(
    State(st): State<PromState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let r = async {
        let ApiRequest { tenant, form, .. } =
            ApiRequest::read(&st, &method, &uri, &headers, body).await?;
        let limit = params::limit_param(&form)?;
        let start = params::parse_time(form.get("start"))
            .map_err(|e| ApiError::invalid_param("start", e))?;
        let end =
            params::parse_time(form.get("end")).map_err(|e| ApiError::invalid_param("end", e))?;
        if end < start {
            return Err(ApiError::bad_data(
                "end timestamp must not be before start time",
            ));
        }
        let step = params::parse_duration(form.get("step"))
            .map_err(|e| ApiError::invalid_param("step", e))?;
        if step <= 0 {
            return Err(ApiError::bad_data(
                "zero or negative query resolution step widths are not accepted. Try a positive integer",
            ));
        }
        if (end - start) / step > MAX_POINTS_PER_SERIES {
            return Err(ApiError::bad_data(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
            ));
        }
        let (params, timeout) = options(&st, &form)?;
        let engine = st.app.promql.clone();
        let query = form.get("query").to_string();
        let (t2, p2) = (tenant.clone(), params.clone());
        let inline = engine.ran_faster_than(&query, step, end - start, inline_below(&st));
        let out = run_query(&st, &tenant, timeout, inline, move || {
            engine
                .range(&t2, &query, start, end, step, &p2)
                .map_err(query_error)
        })
        .await?;
        Ok(render(out, limit, params.stats))
    }
    .await;
    finish("query_range", started, r)
}

fn finish(endpoint: &'static str, started: Instant, r: Result<Response, ApiError>) -> Response {
    metrics::histogram!(QUERY_DURATION_SECONDS, "endpoint" => endpoint)
        .record(started.elapsed().as_secs_f64());
    match r {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

/// Renders a result as Prometheus's `data` object, truncated to `limit`
/// series when asked.
fn render(out: QueryOutput, limit: usize, stats: bool) -> Response {
    let QueryOutput {
        value,
        mut warnings,
        infos,
        stats: st,
    } = out;
    // Sized for the whole body (a point takes ~25 bytes), so it is not
    // regrown and copied as it fills.
    let points: usize = match &value {
        Value::Matrix(m) => m.iter().map(|s| s.samples.len() + 4).sum(),
        Value::Vector(v) => v.len() * 2,
        _ => 0,
    };
    let mut data = String::with_capacity(256 + points * 28);
    data.push_str(json::SUCCESS_PREFIX);
    data.push_str(r#"{"resultType":"#);
    let truncate = |n: usize| limit > 0 && n > limit;
    match value {
        Value::Scalar { t, v } => {
            data.push_str(r#""scalar","result":["#);
            json::write_float_ts(&mut data, t);
            data.push(',');
            json::write_scalar_value(&mut data, v);
            data.push(']');
        }
        Value::String { t, s } => {
            data.push_str(r#""string","result":["#);
            json::write_float_ts(&mut data, t);
            data.push(',');
            json::write_str(&mut data, &s);
            data.push(']');
        }
        Value::Vector(mut v) => {
            if truncate(v.len()) {
                v.truncate(limit);
                warnings.push("results truncated due to limit".into());
            }
            data.push_str(r#""vector","result":["#);
            for (i, s) in v.iter().enumerate() {
                if i > 0 {
                    data.push(',');
                }
                data.push_str(r#"{"metric":"#);
                json::write_labels(&mut data, &s.labels);
                match &s.h {
                    Some(h) => {
                        data.push_str(r#","histogram":"#);
                        json::write_histogram_point(&mut data, s.t, h);
                    }
                    None => {
                        data.push_str(r#","value":"#);
                        json::write_point(&mut data, s.t, s.v);
                    }
                }
                data.push('}');
            }
            data.push(']');
        }
        Value::Matrix(mut m) => {
            if truncate(m.len()) {
                m.truncate(limit);
                warnings.push("results truncated due to limit".into());
            }
            data.push_str(r#""matrix","result":["#);
            let mut ts = json::TsWriter::default();
            for (i, s) in m.iter().enumerate() {
                if i > 0 {
                    data.push(',');
                }
                data.push_str(r#"{"metric":"#);
                json::write_labels(&mut data, &s.labels);
                if !s.samples.is_empty() || s.histograms.is_empty() {
                    data.push_str(r#","values":["#);
                    for (j, p) in s.samples.iter().enumerate() {
                        if j > 0 {
                            data.push(',');
                        }
                        ts.write_point(&mut data, p.t, p.v);
                    }
                    data.push(']');
                }
                if !s.histograms.is_empty() {
                    data.push_str(r#","histograms":["#);
                    for (j, p) in s.histograms.iter().enumerate() {
                        if j > 0 {
                            data.push(',');
                        }
                        json::write_histogram_point(&mut data, p.t, &p.h);
                    }
                    data.push(']');
                }
                data.push('}');
            }
            data.push(']');
        }
    }
    if stats {
        let t = st.exec_seconds;
        data.push_str(&format!(
            r#","stats":{{"timings":{{"evalTotalTime":{t},"resultSortTime":0,"queryPreparationTime":0,"innerEvalTime":{t},"execQueueTime":0,"execTotalTime":{t}}},"samples":{{"totalQueryableSamples":{},"peakSamples":{}}}}}"#,
            st.total_queryable_samples, st.peak_samples
        ));
    }
    data.push('}');
    json::success_from(data, &warnings, &infos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Labels, Sample};
    use crate::query::promql::{QueryStats, VectorSample};
    use crate::storage::SeriesSamples;

    async fn body(r: Response) -> String {
        let b = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        String::from_utf8(b.to_vec()).unwrap()
    }

    fn out(value: Value) -> QueryOutput {
        QueryOutput {
            value,
            warnings: vec![],
            infos: vec![],
            stats: QueryStats::default(),
        }
    }

    #[tokio::test]
    async fn shapes_are_prometheus_bytes() {
        let l = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        let cases = [
            (
                Value::Scalar { t: 1500, v: 1e-9 },
                r#"{"status":"success","data":{"resultType":"scalar","result":[1.5,"0.000000001"]}}"#,
            ),
            (
                Value::String {
                    t: 1000,
                    s: "x".into(),
                },
                r#"{"status":"success","data":{"resultType":"string","result":[1,"x"]}}"#,
            ),
            (
                // {{schema:0 count:3 sum:5 z_bucket:1 z_bucket_w:0.5 buckets:[2] n_buckets:[0]}}
                Value::Vector(vec![VectorSample {
                    labels: Labels::empty(),
                    t: 2000,
                    v: 0.0,
                    h: Some(std::sync::Arc::new(crate::model::FloatHistogram {
                        count: 3.0,
                        sum: 5.0,
                        zero_count: 1.0,
                        zero_threshold: 0.5,
                        positive: vec![(0, 2.0)],
                        negative: vec![(0, 0.0)],
                        ..Default::default()
                    })),
                }]),
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"histogram":[2,{"count":"3","sum":"5","buckets":[[3,"-0.5","0.5","1"],[0,"0.5","1","2"]]}]}]}}"#,
            ),
            (
                Value::Vector(vec![VectorSample {
                    labels: l.clone(),
                    t: 1000,
                    v: f64::NAN,
                    h: None,
                }]),
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a"},"value":[1,"NaN"]}]}}"#,
            ),
            (
                Value::Matrix(vec![SeriesSamples {
                    labels: l,
                    samples: vec![Sample::new(1000, 1.0), Sample::new(2000, f64::INFINITY)],
                    histograms: vec![],
                }]),
                r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"a"},"values":[[1,"1"],[2,"+Inf"]]}]}}"#,
            ),
            (
                Value::Vector(vec![]),
                r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
            ),
        ];
        for (v, want) in cases {
            assert_eq!(body(render(out(v), 0, false)).await, want);
        }
    }

    fn state(per_tenant: usize) -> (PromState, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = crate::config::Config {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        cfg.limits.max_concurrent_queries_per_tenant = per_tenant;
        let app = crate::server::build_state(cfg).unwrap();
        (PromState::new(app), dir)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn panics_become_500_and_slow_queries_time_out() {
        let (st, _dir) = state(1);
        let t = Tenant::anonymous();
        let long = Duration::from_secs(5);
        let r: Result<(), _> = run_limited(&st, &t, long, || panic!("unfinished engine")).await;
        assert_eq!(r.unwrap_err().kind, ErrorType::Internal);
        for inline in [false, true] {
            let r: Result<(), _> =
                run_query(&st, &t, long, inline, || panic!("unfinished engine")).await;
            assert_eq!(r.unwrap_err().kind, ErrorType::Internal);
            assert!(run_query(&st, &t, long, inline, || Ok(())).await.is_ok());
        }
        // A deadline far shorter than the work, yet long enough that a
        // loaded machine still admits the query before it passes.
        let r: Result<(), _> = run_limited(&st, &t, Duration::from_millis(300), || {
            std::thread::sleep(Duration::from_millis(1500));
            Ok(())
        })
        .await;
        let e = r.unwrap_err();
        assert_eq!(
            (e.kind, e.message.as_str()),
            (
                ErrorType::Timeout,
                "query timed out in expression evaluation"
            )
        );
        // The one slot of the tenant is held: the next query waits in the
        // queue and times out there; another tenant is not held up.
        let held = st.queries.acquire(&t).await;
        let r: Result<(), _> = run_limited(&st, &t, Duration::from_millis(50), || Ok(())).await;
        assert_eq!(r.unwrap_err().message, "query timed out in query queue");
        let other = Tenant::new("other").unwrap();
        assert!(run_limited(&st, &other, long, || Ok(())).await.is_ok());
        drop(held);
        assert!(run_limited(&st, &t, long, || Ok(())).await.is_ok());
    }

    #[tokio::test]
    async fn limit_truncates_with_a_warning() {
        let v = Value::Vector(
            (0..3)
                .map(|i| VectorSample {
                    labels: Labels::from_pairs([("i", i.to_string())]),
                    t: 0,
                    v: 0.0,
                    h: None,
                })
                .collect(),
        );
        let b = body(render(out(v), 2, false)).await;
        assert!(
            b.ends_with(r#"]},"warnings":["results truncated due to limit"]}"#),
            "{b}"
        );
    }
}
