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
use crate::query::logql::eval::EngineLimits;
use crate::query::logql::lexer::{parse_bytes, parse_go_duration};
use crate::query::logql::pipeline::Pipeline;
use crate::query::logql::{Direction, Engine, Expr, LogParams};

/// Labels Loki never reports as detected (internal).
const HIDDEN_LABELS: &[&str] = &["__stream_shard__", "__aggregated_metric__", "__tenant_id__"];
/// Labels `detected_labels` always reports, whatever their cardinality.
const STATIC_LABELS: &[&str] = &["cluster", "namespace", "instance", "pod"];

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
        let mut values: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for l in r.streams(t, &ms, start, end).map_err(read_err)? {
            for p in l.iter() {
                values
                    .entry(p.name.clone())
                    .or_default()
                    .insert(p.value.clone());
            }
        }
        let mut out = String::from(r#"{"detectedLabels":["#);
        let mut first = true;
        for (name, vs) in &values {
            let n = vs.len();
            let keep = STATIC_LABELS.contains(&name.as_str()) || (n > 1 && n <= 50);
            if !keep || HIDDEN_LABELS.contains(&name.as_str()) {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(r#"{"label":"#);
            write_str(&mut out, name);
            let _ = write!(out, r#","cardinality":{n}}}"#);
        }
        out.push_str("]}");
        Ok(json_response(StatusCode::OK, out))
    })
    .await
}

/// A detected field: its parser (None for structured metadata), values.
struct Field {
    parser: Option<&'static str>,
    values: BTreeSet<String>,
}

/// Loki's `determineType`.
fn field_type(values: &BTreeSet<String>) -> &'static str {
    let all = |f: &dyn Fn(&str) -> bool| values.iter().all(|v| f(v));
    if all(&|v| v.parse::<i64>().is_ok()) {
        "int"
    } else if all(&|v| v.parse::<f64>().is_ok()) {
        "float"
    } else if all(&|v| {
        matches!(
            v,
            "true"
                | "false"
                | "TRUE"
                | "FALSE"
                | "True"
                | "False"
                | "t"
                | "f"
                | "T"
                | "F"
                | "1"
                | "0"
        )
    }) {
        "boolean"
    } else if all(&|v| parse_go_duration(v).is_some()) {
        "duration"
    } else if all(&|v| parse_bytes(v).is_some()) {
        "bytes"
    } else {
        "string"
    }
}

/// A pipeline with just one parser stage.
fn parser_only(stage: &str) -> Result<Pipeline, LokiError> {
    let internal = |e: String| LokiError::new(StatusCode::INTERNAL_SERVER_ERROR, e);
    match crate::query::logql::parse(&format!("{{x=\"y\"}} | {stage}")) {
        Ok(Expr::Log(l)) => Pipeline::new(&l, None).map_err(internal),
        other => Err(internal(format!("{stage} pipeline: {other:?}"))),
    }
}

/// Fields of the lines a query returns: parsed with `json` when the line
/// is a JSON object, else `logfmt`, plus structured metadata.
fn detect_fields(
    r: Arc<Metered>,
    t: &Tenant,
    form: &Form,
) -> Result<BTreeMap<String, Field>, LokiError> {
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
    let engine = Engine::new(
        r,
        EngineLimits {
            max_entries: line_limit,
            ..EngineLimits::default()
        },
    );
    let streams = engine
        .query_logs_categorized(
            t,
            q,
            LogParams {
                start,
                end,
                limit: line_limit,
                direction: Direction::Backward,
            },
        )
        .map_err(eval_error)?;
    let parsers = [
        ("json", parser_only("json")?),
        ("logfmt", parser_only("logfmt")?),
    ];
    let mut fields: BTreeMap<String, Field> = BTreeMap::new();
    for (_, entries) in &streams {
        for e in entries {
            for m in e.metadata.iter() {
                fields
                    .entry(m.name.clone())
                    .or_insert(Field {
                        parser: None,
                        values: BTreeSet::new(),
                    })
                    .values
                    .insert(m.value.clone());
            }
            let (name, p) = if e.line.trim_start().starts_with('{') {
                &parsers[0]
            } else {
                &parsers[1]
            };
            let Some(out) = p.process(e.ts, &e.line, &Labels::empty(), &Labels::empty()) else {
                continue;
            };
            if out.labels.contains_key("__error__") {
                continue;
            }
            for (k, v) in out.labels {
                fields
                    .entry(k)
                    .or_insert(Field {
                        parser: Some(name),
                        values: BTreeSet::new(),
                    })
                    .values
                    .insert(v);
            }
        }
    }
    Ok(fields)
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
        let r = Arc::new(Metered::new(r.inner(), r.deadline(), 0));
        let fields = detect_fields(r, t, form)?;
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
                field_type(&f.values),
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
        let r = Arc::new(Metered::new(r.inner(), r.deadline(), 0));
        let fields = detect_fields(r, t, form)?;
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
