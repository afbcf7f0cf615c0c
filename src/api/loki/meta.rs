//! Metadata endpoints: `labels`, `label/<name>/values`, `series`,
//! `index/stats`, `index/volume`, `index/volume_range`, `detected_labels`,
//! `detected_fields`, `detected_field/<name>/values`, `format_query` and
//! `status/buildinfo`, in Loki's shapes (enveloped or not, as Loki does).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::query::{bounds, eval_error, step_param, Metered};
use super::{request, run_query, LokiError, LokiState};
use crate::api::prom::json::{json_response, write_labels, write_str, write_str_array};
use crate::api::prom::params::Form;
use crate::logs::volume::VolumeGrouping;
use crate::logs::{LineHint, LogReader, LogSelect, Stream};
use crate::model::{Labels, Matcher, Tenant};
use crate::query::logql::detected::{detect_fields, DetectedField};
use crate::query::logql::eval::EngineLimits;
use crate::query::logql::{Engine, Expr};

use crate::logs::detected::HIDDEN_LABELS;

/// The matchers of a stream selector (a pipeline is allowed and ignored).
fn selector(q: &str) -> Result<Vec<Matcher>, LokiError> {
    match crate::query::logql::parse(q).map_err(|e| LokiError::bad(e.to_string()))? {
        Expr::Log(l) => Ok(l.matchers),
        _ => Err(LokiError::bad(format!(
            "only log selectors are accepted: {q}"
        ))),
    }
}

fn optional_selector(form: &Form) -> Result<Vec<Matcher>, LokiError> {
    match form.get("query") {
        "" => Ok(Vec::new()),
        q => selector(q),
    }
}

/// Parses the request, then runs `f(reader, tenant, form)` as a query.
async fn meta<F>(st: LokiState, endpoint: &'static str, req: Request, f: F) -> Response
where
    F: FnOnce(&Metered, &Tenant, &Form) -> Result<Response, LokiError> + Send + 'static,
{
    let (tenant, form) = match request(&st, req).await {
        Ok(r) => r,
        Err(e) => {
            super::count(endpoint, Some(e.status));
            return e.into_response();
        }
    };
    let inner = st.app.logs_reader.clone();
    let max_bytes = st.app.config.loki.max_query_bytes_read;
    let t = tenant.clone();
    match run_query(&st, &tenant, endpoint, move |deadline| {
        let reader = Metered::new(inner, Some(deadline), max_bytes);
        f(&reader, &t, &form)
    })
    .await
    {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn read_err(e: crate::logs::LogReadError) -> LokiError {
    eval_error(e.into())
}

fn success_strings(items: &[String]) -> Response {
    let mut out = String::from(r#"{"status":"success","data":"#);
    write_str_array(&mut out, items);
    out.push('}');
    json_response(StatusCode::OK, out)
}

/// `GET /loki/api/v1/labels`.
pub async fn labels(State(st): State<LokiState>, req: Request) -> Response {
    meta(st, "labels", req, |r, t, form| {
        let (start, end) = bounds(form)?;
        let ms = optional_selector(form)?;
        let mut names = r.label_names(t, &ms, start, end).map_err(read_err)?;
        names.retain(|n| !HIDDEN_LABELS.contains(&n.as_str()));
        Ok(success_strings(&names))
    })
    .await
}

/// `GET /loki/api/v1/label/<name>/values`.
pub async fn label_values(
    State(st): State<LokiState>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    meta(st, "label_values", req, move |r, t, form| {
        let (start, end) = bounds(form)?;
        let ms = optional_selector(form)?;
        let values = r
            .label_values(t, &name, &ms, start, end)
            .map_err(read_err)?;
        Ok(success_strings(&values))
    })
    .await
}

/// `GET|POST /loki/api/v1/series` (`match[]`, several selectors unioned).
pub async fn series(State(st): State<LokiState>, req: Request) -> Response {
    meta(st, "series", req, |r, t, form| {
        let (start, end) = bounds(form)?;
        let mut sels: Vec<&str> = form.all("match[]");
        sels.extend(form.all("match"));
        if sels.is_empty() {
            sels.push("{}");
        }
        let mut all: BTreeSet<Labels> = BTreeSet::new();
        for s in sels {
            let ms = if s.trim() == "{}" {
                Vec::new()
            } else {
                selector(s)?
            };
            all.extend(r.streams(t, &ms, start, end).map_err(read_err)?);
        }
        let mut out = String::from(r#"{"status":"success","data":["#);
        for (i, l) in all.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_labels(&mut out, l);
        }
        out.push_str("]}");
        Ok(json_response(StatusCode::OK, out))
    })
    .await
}

/// `GET /loki/api/v1/index/stats`: un-enveloped.
pub async fn index_stats(State(st): State<LokiState>, req: Request) -> Response {
    meta(st, "index_stats", req, |r, t, form| {
        let (start, end) = bounds(form)?;
        let ms = optional_selector(form)?;
        let s = r.stats(t, &ms, start, end).map_err(read_err)?;
        Ok(json_response(
            StatusCode::OK,
            format!(
                r#"{{"streams":{},"chunks":{},"bytes":{},"entries":{}}}"#,
                s.streams, s.chunks, s.bytes, s.entries
            ),
        ))
    })
    .await
}

/// The streams of a selector with every entry in the range.
fn read_all(
    r: &Metered,
    t: &Tenant,
    ms: &[Matcher],
    start: i64,
    end: i64,
) -> Result<Vec<Stream>, LokiError> {
    let hint = LineHint::default();
    r.select(
        t,
        &LogSelect {
            matchers: ms,
            start,
            end,
            hint: &hint,
        },
    )
    .map_err(read_err)
}

/// The parameters of `index/volume`: grouping by `targetLabels` when given,
/// else the selector's label names; `aggregateBy=labels` reports each label
/// alone.
struct VolumeSpec {
    matchers: Vec<Matcher>,
    grouping: VolumeGrouping,
    limit: usize,
}

impl VolumeSpec {
    fn parse(form: &Form) -> Result<VolumeSpec, LokiError> {
        let matchers = selector(form.get("query"))?;
        let targets: Vec<String> = match form.get("targetLabels") {
            "" => matchers.iter().map(|m| m.name.clone()).collect(),
            v => v
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        };
        let by_label = match form.get("aggregateBy") {
            "" | "series" => false,
            "labels" => true,
            v => {
                return Err(LokiError::bad(format!(
                    "invalid aggregation option {v:?}, expected series or labels"
                )))
            }
        };
        let limit = match form.get("limit") {
            "" => 100,
            v => v
                .parse::<usize>()
                .map_err(|_| LokiError::bad(format!("invalid limit {v:?}")))?,
        };
        Ok(VolumeSpec {
            matchers,
            grouping: VolumeGrouping { targets, by_label },
            limit,
        })
    }
}

/// `GET /loki/api/v1/index/volume`: line bytes per group, largest first.
pub async fn volume(State(st): State<LokiState>, req: Request) -> Response {
    meta(st, "volume", req, |r, t, form| {
        let (start, end) = bounds(form)?;
        let spec = VolumeSpec::parse(form)?;
        let streams = read_all(r, t, &spec.matchers, start, end)?;
        let mut out =
            String::from(r#"{"status":"success","data":{"resultType":"vector","result":["#);
        let groups = crate::logs::volume::volume(&streams, &spec.grouping, spec.limit);
        for (i, (l, v)) in groups.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(r#"{"metric":"#);
            write_labels(&mut out, l);
            let _ = write!(out, r#","value":[{},"{v}"]}}"#, end / 1_000_000_000);
        }
        out.push_str("]}}");
        Ok(json_response(StatusCode::OK, out))
    })
    .await
}

/// `GET /loki/api/v1/index/volume_range`: line bytes per group and step
/// (entries in `(t - step, t]`).
pub async fn volume_range(State(st): State<LokiState>, req: Request) -> Response {
    meta(st, "volume_range", req, |r, t, form| {
        let (start, end) = bounds(form)?;
        let step = step_param(form, start, end)?;
        let spec = VolumeSpec::parse(form)?;
        let streams = read_all(r, t, &spec.matchers, start - step, end + 1)?;
        let groups = crate::logs::volume::volume_range(
            &streams,
            &spec.grouping,
            start,
            end,
            step,
            spec.limit,
        );
        let mut out =
            String::from(r#"{"status":"success","data":{"resultType":"matrix","result":["#);
        for (i, (l, steps)) in groups.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(r#"{"metric":"#);
            write_labels(&mut out, l);
            out.push_str(r#","values":["#);
            for (j, (at, v)) in steps.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                let _ = write!(out, r#"[{},"{v}"]"#, *at as f64 / 1e9);
            }
            out.push_str("]}");
        }
        out.push_str("]}}");
        Ok(json_response(StatusCode::OK, out))
    })
    .await
}

/// `GET /loki/api/v1/detected_labels`: stream labels with their
/// cardinality, without single-valued or very high-cardinality ones except
/// Loki's static labels. Un-enveloped, as Loki.
pub async fn detected_labels(State(st): State<LokiState>, req: Request) -> Response {
    meta(st, "detected_labels", req, |r, t, form| {
        let (start, end) = bounds(form)?;
        let ms = optional_selector(form)?;
        let streams = r.streams(t, &ms, start, end).map_err(read_err)?;
        let mut out = String::from(r#"{"detectedLabels":["#);
        for (i, (name, n)) in crate::logs::detected::detected_labels(&streams)
            .iter()
            .enumerate()
        {
            if i > 0 {
                out.push(',');
            }
            out.push_str(r#"{"label":"#);
            write_str(&mut out, name);
            let _ = write!(out, r#","cardinality":{n}}}"#);
        }
        out.push_str("]}");
        Ok(json_response(StatusCode::OK, out))
    })
    .await
}

/// The detected fields of the request's query (`line_limit` lines, 1000
/// by default), read through a reader without a bytes budget.
fn detected(
    r: &Metered,
    t: &Tenant,
    form: &Form,
) -> Result<BTreeMap<String, DetectedField>, LokiError> {
    let (start, end) = bounds(form)?;
    let q = form.get("query");
    if q.is_empty() {
        return Err(LokiError::bad("query parameter is required"));
    }
    let line_limit = match form.get("line_limit") {
        "" => 1000,
        v => v
            .parse::<usize>()
            .map_err(|_| LokiError::bad(format!("invalid line_limit {v:?}")))?,
    };
    let reader = Arc::new(Metered::new(r.inner(), r.deadline(), 0));
    let limits = EngineLimits {
        max_entries: line_limit,
        ..EngineLimits::default()
    };
    let engine = Engine::new(reader, limits);
    detect_fields(&engine, t, q, (start, end), line_limit).map_err(eval_error)
}

/// `GET /loki/api/v1/detected_fields`.
pub async fn detected_fields(State(st): State<LokiState>, req: Request) -> Response {
    meta(st, "detected_fields", req, |r, t, form| {
        let limit = match form.get("limit") {
            "" => 1000,
            v => v
                .parse::<usize>()
                .map_err(|_| LokiError::bad(format!("invalid limit {v:?}")))?,
        };
        let fields = detected(r, t, form)?;
        let mut out = String::from(r#"{"fields":["#);
        for (i, (name, f)) in fields.iter().take(limit).enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(r#"{"label":"#);
            write_str(&mut out, name);
            let _ = write!(
                out,
                r#","type":"{}","cardinality":{},"parsers":"#,
                f.kind(),
                f.values.len()
            );
            match f.parser {
                Some(p) => {
                    let _ = write!(out, r#"["{p}"]"#);
                }
                None => out.push_str("null"),
            }
            out.push('}');
        }
        let _ = write!(out, r#"],"limit":{limit}}}"#);
        Ok(json_response(StatusCode::OK, out))
    })
    .await
}

/// `GET /loki/api/v1/detected_field/<name>/values`.
pub async fn detected_field_values(
    State(st): State<LokiState>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    meta(st, "detected_field_values", req, move |r, t, form| {
        let limit = match form.get("limit") {
            "" => 1000,
            v => v
                .parse::<usize>()
                .map_err(|_| LokiError::bad(format!("invalid limit {v:?}")))?,
        };
        let fields = detected(r, t, form)?;
        let values: Vec<String> = fields
            .get(&name)
            .map(|f| f.values.iter().take(limit).cloned().collect())
            .unwrap_or_default();
        let mut out = String::from(r#"{"values":"#);
        write_str_array(&mut out, &values);
        let _ = write!(out, r#","limit":{limit}}}"#);
        Ok(json_response(StatusCode::OK, out))
    })
    .await
}

/// `GET /loki/api/v1/patterns` (Logs Drilldown's Patterns tab): the
/// patterns the miner found in the streams of `query` over the range, with
/// line counts per `step` (at least 10 s; timestamps in seconds), in Loki's
/// shape. Without `loki.pattern_ingester_enabled` the list is empty, as
/// from a Loki without a pattern ingester.
pub async fn patterns(State(st): State<LokiState>, req: Request) -> Response {
    let ingester = st.ingester.clone();
    meta(st, "patterns", req, move |_, t, form| {
        let (start, end) = bounds(form)?;
        let matchers = selector(form.get("query"))?;
        let step = step_param(form, start, end)?;
        let found = ingester
            .patterns()
            .map(|m| m.query(t, &matchers, (start, end), step))
            .unwrap_or_default();
        let mut out = String::from(r#"{"status":"success","data":["#);
        for (i, p) in found.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(r#"{"pattern":"#);
            write_str(&mut out, &p.pattern);
            out.push_str(r#","level":"#);
            write_str(&mut out, &p.level);
            out.push_str(r#","samples":["#);
            for (j, (at, n)) in p.samples.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                let _ = write!(out, "[{},{n}]", at.div_euclid(1000));
            }
            out.push_str("]}");
        }
        out.push_str("]}");
        Ok(json_response(StatusCode::OK, out))
    })
    .await
}

/// `GET|POST /loki/api/v1/format_query`.
pub async fn format_query(State(st): State<LokiState>, req: Request) -> Response {
    let r = async {
        let (_, form) = request(&st, req).await?;
        crate::query::logql::format_query(form.get("query"))
            .map_err(|e| LokiError::bad(e.to_string()))
    }
    .await;
    super::count("format_query", r.as_ref().err().map(|e| e.status));
    match r {
        Ok(q) => {
            let mut out = String::from(r#"{"status":"success","data":"#);
            write_str(&mut out, &q);
            out.push('}');
            json_response(StatusCode::OK, out)
        }
        Err(e) => e.into_response(),
    }
}

/// `GET /loki/api/v1/status/buildinfo`.
pub async fn buildinfo() -> Response {
    json_response(
        StatusCode::OK,
        format!(
            r#"{{"version":"3.4.0","revision":"strata-{}","branch":"","buildUser":"","buildDate":"","goVersion":""}}"#,
            env!("CARGO_PKG_VERSION")
        ),
    )
}
