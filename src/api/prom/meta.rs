//! The metadata endpoints: series, label names and values, metric
//! metadata, exemplars, build information, and Strata's flush endpoint.

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::json::{self, ApiError};
use super::params::{self, Form, MAX_TIME_MS, MIN_TIME_MS};
use super::query::ApiRequest;
use super::PromState;
use crate::model::{Labels, Matcher, Tenant};
use crate::query::promql::parse::parse_expr;
use crate::storage::{MetricsReader, StorageError};

/// The Prometheus version Strata reports (Grafana needs at least 2.24 to
/// use the labels `match[]` API).
pub const PROMETHEUS_VERSION: &str = "2.53.0";

fn storage_error(e: StorageError) -> ApiError {
    match e {
        StorageError::Unavailable(_) => ApiError {
            kind: json::ErrorType::Unavailable,
            message: e.to_string(),
        },
        e => ApiError::internal(e.to_string()),
    }
}

/// Runs `each` for every matcher set and collects the union of the answers.
async fn over_sets<C, I>(
    st: &PromState,
    r: &ApiRequest,
    sets: Vec<Vec<Matcher>>,
    each: impl Fn(&dyn MetricsReader, &Tenant, &[Matcher]) -> Result<I, StorageError> + Send + 'static,
) -> Result<C, ApiError>
where
    C: Default + Extend<I::Item> + Send + 'static,
    I: IntoIterator,
{
    r.read_metrics(st, move |reader, tenant| {
        let mut all = C::default();
        for set in &sets {
            all.extend(each(reader, tenant, set).map_err(storage_error)?);
        }
        Ok(all)
    })
    .await
}

fn respond(r: Result<Response, ApiError>) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

/// Truncates to `limit` (0: no limit), adding Prometheus's warning.
fn truncated<T>(mut v: Vec<T>, limit: usize, warnings: &mut Vec<String>) -> Vec<T> {
    if limit > 0 && v.len() > limit {
        v.truncate(limit);
        warnings.push("results truncated due to limit".into());
    }
    v
}

fn range(form: &Form) -> Result<(i64, i64), ApiError> {
    Ok((
        params::time_param(form, "start", MIN_TIME_MS)?,
        params::time_param(form, "end", MAX_TIME_MS)?,
    ))
}

/// `GET|POST /api/v1/series`.
pub async fn series(
    State(st): State<PromState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(
        async {
            let r = ApiRequest::read(&st, &method, &uri, &headers, body).await?;
            let matches = r.form.all("match[]");
            if matches.is_empty() {
                return Err(ApiError::bad_data("no match[] parameter provided"));
            }
            let limit = params::limit_param(&r.form)?;
            let (start, end) = range(&r.form)?;
            let sets = params::matchers_param(&matches)?;
            let all: BTreeSet<Labels> = over_sets(&st, &r, sets, move |reader, tenant, set| {
                reader.series(tenant, set, start, end)
            })
            .await?;
            let mut warnings = vec![];
            let all = truncated(all.into_iter().collect(), limit, &mut warnings);
            let mut data = String::from("[");
            for (i, l) in all.iter().enumerate() {
                if i > 0 {
                    data.push(',');
                }
                json::write_labels(&mut data, l);
            }
            data.push(']');
            Ok(json::success(&data, &warnings, &[]))
        }
        .await,
    )
}

/// Names or values of labels over the optional `match[]` sets.
async fn label_query(
    st: &PromState,
    r: ApiRequest,
    name: Option<String>,
) -> Result<Response, ApiError> {
    let limit = params::limit_param(&r.form)?;
    let (start, end) = range(&r.form)?;
    let matches = r.form.all("match[]");
    let sets: Vec<Vec<Matcher>> = if matches.is_empty() {
        vec![vec![]]
    } else {
        params::matchers_param(&matches)?
    };
    let all: BTreeSet<String> = over_sets(st, &r, sets, move |reader, tenant, set| match &name {
        None => reader.label_names(tenant, set, start, end),
        Some(n) => reader.label_values(tenant, n, set, start, end),
    })
    .await?;
    let mut warnings = vec![];
    let all = truncated(all.into_iter().collect(), limit, &mut warnings);
    let mut data = String::new();
    json::write_str_array(&mut data, &all);
    Ok(json::success(&data, &warnings, &[]))
}

/// `GET|POST /api/v1/labels`.
pub async fn labels(
    State(st): State<PromState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(
        async {
            let r = ApiRequest::read(&st, &method, &uri, &headers, body).await?;
            label_query(&st, r, None).await
        }
        .await,
    )
}

/// `GET /api/v1/label/{name}/values`; `U__`-escaped names are unescaped.
pub async fn label_values(
    State(st): State<PromState>,
    Path(name): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(
        async {
            let r = ApiRequest::read(&st, &method, &uri, &headers, body).await?;
            let name = params::unescape_label_name(&name);
            if name.is_empty() {
                return Err(ApiError::bad_data(format!("invalid label name: {name:?}")));
            }
            label_query(&st, r, Some(name)).await
        }
        .await,
    )
}

/// `GET /api/v1/metadata` (`limit`, `limit_per_metric`, `metric`).
pub async fn metadata(
    State(st): State<PromState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(
        async {
            let r = ApiRequest::read(&st, &method, &uri, &headers, body).await?;
            let num = |name: &str| -> Result<i64, ApiError> {
                let v = r.form.get(name);
                if v.is_empty() {
                    return Ok(-1);
                }
                v.parse::<i64>()
                    .map_err(|_| ApiError::bad_data(format!("{name} must be a number")))
            };
            let limit = num("limit")?;
            let per_metric = num("limit_per_metric")?;
            let metric = r.form.get("metric").to_string();
            let all = r
                .read_metrics(&st, move |reader, tenant| {
                    reader
                        .metadata(tenant, (!metric.is_empty()).then_some(metric.as_str()))
                        .map_err(storage_error)
                })
                .await?;
            let mut by_metric: BTreeMap<String, Vec<_>> = BTreeMap::new();
            for m in all {
                by_metric.entry(m.metric.clone()).or_default().push(m);
            }
            let mut data = String::from("{");
            for (n, (metric, ms)) in by_metric.iter().enumerate() {
                if limit >= 0 && n as i64 >= limit {
                    break;
                }
                if n > 0 {
                    data.push(',');
                }
                json::write_str(&mut data, metric);
                data.push_str(":[");
                for (i, m) in ms.iter().enumerate() {
                    if per_metric >= 0 && i as i64 >= per_metric {
                        break;
                    }
                    if i > 0 {
                        data.push(',');
                    }
                    data.push_str(r#"{"type":"#);
                    json::write_str(&mut data, m.kind.as_str());
                    data.push_str(r#","help":"#);
                    json::write_str(&mut data, &m.help);
                    data.push_str(r#","unit":"#);
                    json::write_str(&mut data, &m.unit);
                    data.push('}');
                }
                data.push(']');
            }
            data.push('}');
            Ok(json::success(&data, &[], &[]))
        }
        .await,
    )
}

/// `GET|POST /api/v1/query_exemplars`.
pub async fn exemplars(
    State(st): State<PromState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(
        async {
            let r = ApiRequest::read(&st, &method, &uri, &headers, body).await?;
            let (start, end) = range(&r.form)?;
            let expr =
                parse_expr(r.form.get("query")).map_err(|e| ApiError::invalid_param("query", e))?;
            let sets = params::extract_selectors(&expr)
                .map_err(|e| ApiError::invalid_param("query", e))?;
            let all: BTreeMap<_, _> = over_sets(&st, &r, sets, move |reader, tenant, set| {
                reader.exemplars(tenant, set, start, end)
            })
            .await?;
            let mut data = String::from("[");
            for (i, (l, ex)) in all.iter().enumerate() {
                if i > 0 {
                    data.push(',');
                }
                data.push_str(r#"{"seriesLabels":"#);
                json::write_labels(&mut data, l);
                data.push_str(r#","exemplars":["#);
                for (j, e) in ex.iter().enumerate() {
                    if j > 0 {
                        data.push(',');
                    }
                    data.push_str(r#"{"labels":"#);
                    json::write_labels(&mut data, &e.labels);
                    data.push_str(r#","value":"#);
                    json::write_value(&mut data, e.value);
                    data.push_str(r#","timestamp":"#);
                    json::write_ts(&mut data, e.t);
                    data.push('}');
                }
                data.push_str("]}");
            }
            data.push(']');
            Ok(json::success(&data, &[], &[]))
        }
        .await,
    )
}

/// `GET /api/v1/status/buildinfo`: a Prometheus version, no `features`.
pub async fn buildinfo() -> Response {
    let data = format!(
        r#"{{"version":"{PROMETHEUS_VERSION}","revision":"strata-{}","branch":"","buildUser":"","buildDate":"","goVersion":""}}"#,
        env!("CARGO_PKG_VERSION")
    );
    json::success(&data, &[], &[])
}

/// `GET /api/v1/status/flags`: 404, so Grafana does not take Strata for Thanos.
pub async fn flags() -> Response {
    ApiError {
        kind: json::ErrorType::NotFound,
        message: "flags are not served by Strata".into(),
    }
    .into_response()
}

/// `POST /api/v1/admin/tsdb/flush`: writes the head into blocks (204).
pub async fn flush(State(st): State<PromState>) -> Response {
    let admin = st.app.metrics_admin.clone();
    match tokio::task::spawn_blocking(move || admin.flush()).await {
        Ok(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(e)) => storage_error(e).into_response(),
        Err(e) => ApiError::internal(format!("flush failed unexpectedly: {e}")).into_response(),
    }
}
