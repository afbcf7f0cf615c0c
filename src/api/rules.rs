//! `/api/v1/rules`, `/api/v1/alerts` and `POST /-/reload` in Prometheus's
//! shapes for the Prometheus rule files; the same under `/prometheus` for the
//! Loki ruler's groups of the tenant in `X-Scope-OrgID` (what Grafana's Loki
//! data source calls), and Loki's ruler configuration API
//! (`/loki/api/v1/rules[/{namespace}[/{group}]]`, YAML, read-only).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::{tenant_from_headers, AppState};
use crate::model::Tenant;
use crate::rules::file::{Lang, RuleKind};
use crate::rules::group::{Alert, AlertState, Group};
use crate::template::format_float_e;

/// Rule routes: Prometheus's, the Loki ruler's under `/prometheus`, and
/// Loki's ruler configuration API.
pub fn routes() -> Router<AppState> {
    let loki_config = get(loki_rules).post(loki_read_only).delete(loki_read_only);
    Router::new()
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/alerts", get(alerts))
        .route("/-/reload", post(reload).put(reload))
        .route("/prometheus/api/v1/rules", get(loki_rules_json))
        .route("/prometheus/api/v1/alerts", get(loki_alerts))
        .route("/prometheus/-/reload", post(reload).put(reload))
        .route("/loki/api/v1/rules", loki_config.clone())
        .route("/loki/api/v1/rules/{namespace}", loki_config.clone())
        .route("/loki/api/v1/rules/{namespace}/{group}", loki_config)
}

/// Which groups a request sees.
#[derive(Clone, Copy)]
enum Scope<'a> {
    /// The Prometheus rule files.
    Prometheus,
    /// The Loki ruler's groups of one tenant.
    Loki(&'a Tenant),
}

fn scoped_groups(state: &AppState, scope: Scope<'_>) -> Vec<Arc<parking_lot::Mutex<Group>>> {
    let Some(m) = &state.rules else {
        return Vec::new();
    };
    m.groups()
        .into_iter()
        .filter(|g| {
            let g = g.lock();
            match scope {
                Scope::Prometheus => g.lang == Lang::PromQL,
                Scope::Loki(t) => g.lang == Lang::LogQL && g.tenant.as_ref() == Some(t),
            }
        })
        .collect()
}

fn ts(ms: Option<i64>) -> String {
    let ms = ms.unwrap_or(-62_135_596_800_000);
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_default()
}

fn alert_json(a: &Alert) -> Value {
    json!({
        "labels": a.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect::<BTreeMap<_, _>>(),
        "annotations": a.annotations,
        "state": a.state.as_str(),
        "activeAt": ts(Some(a.active_at)),
        "value": format_float_e(a.value),
    })
}

fn live_alerts(active: &std::collections::HashMap<crate::model::Labels, Alert>) -> Vec<&Alert> {
    let mut v: Vec<&Alert> = active
        .values()
        .filter(|a| a.state != AlertState::Inactive)
        .collect();
    v.sort_by(|a, b| a.labels.cmp(&b.labels));
    v
}

#[derive(Default)]
struct RuleFilter {
    kind: Option<String>,
    rule_names: Vec<String>,
    groups: Vec<String>,
    files: Vec<String>,
    exclude_alerts: bool,
}

fn parse_filter(q: Option<String>) -> Result<RuleFilter, String> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(q.as_deref().unwrap_or("")).map_err(|e| e.to_string())?;
    let mut f = RuleFilter::default();
    for (k, v) in pairs {
        match k.as_str() {
            "type" => {
                if v != "alert" && v != "record" {
                    return Err(format!("unsupported type {v:?}"));
                }
                f.kind = Some(v)
            }
            "rule_name[]" => f.rule_names.push(v),
            "rule_group[]" => f.groups.push(v),
            "file[]" => f.files.push(v),
            "exclude_alerts" => f.exclude_alerts = v == "true",
            _ => {}
        }
    }
    Ok(f)
}

fn group_json(g: &Group, f: &RuleFilter) -> Option<Value> {
    if !f.groups.is_empty() && !f.groups.contains(&g.spec.name) {
        return None;
    }
    if !f.files.is_empty() && !f.files.contains(&g.file) {
        return None;
    }
    let mut rules = Vec::new();
    for r in &g.rules {
        if !f.rule_names.is_empty() && !f.rule_names.iter().any(|n| n == r.spec.name()) {
            continue;
        }
        let labels = &r.spec.labels;
        let common = |o: &mut serde_json::Map<String, Value>| {
            o.insert("health".into(), r.health.health.into());
            if let Some(e) = &r.health.last_error {
                o.insert("lastError".into(), e.clone().into());
            }
            o.insert("evaluationTime".into(), r.health.evaluation_seconds.into());
            o.insert("lastEvaluation".into(), ts(r.health.last_evaluation).into());
        };
        match &r.spec.kind {
            RuleKind::Alert {
                name,
                for_ms,
                keep_firing_for_ms,
            } => {
                if f.kind.as_deref() == Some("record") {
                    continue;
                }
                let alerts = live_alerts(&r.active);
                let state = if alerts.iter().any(|a| a.state == AlertState::Firing) {
                    "firing"
                } else if alerts.is_empty() {
                    "inactive"
                } else {
                    "pending"
                };
                let mut o = serde_json::Map::new();
                o.insert("state".into(), state.into());
                o.insert("name".into(), name.clone().into());
                o.insert("query".into(), r.spec.expr.clone().into());
                o.insert("duration".into(), (*for_ms as f64 / 1000.0).into());
                o.insert(
                    "keepFiringFor".into(),
                    (*keep_firing_for_ms as f64 / 1000.0).into(),
                );
                o.insert("labels".into(), json!(labels));
                o.insert("annotations".into(), json!(r.spec.annotations));
                if !f.exclude_alerts {
                    o.insert(
                        "alerts".into(),
                        Value::Array(alerts.into_iter().map(alert_json).collect()),
                    );
                }
                common(&mut o);
                o.insert("type".into(), "alerting".into());
                rules.push(Value::Object(o));
            }
            RuleKind::Record(name) => {
                if f.kind.as_deref() == Some("alert") {
                    continue;
                }
                let mut o = serde_json::Map::new();
                o.insert("name".into(), name.clone().into());
                o.insert("query".into(), r.spec.expr.clone().into());
                o.insert("labels".into(), json!(labels));
                common(&mut o);
                o.insert("type".into(), "recording".into());
                rules.push(Value::Object(o));
            }
        }
    }
    if rules.is_empty() && (f.kind.is_some() || !f.rule_names.is_empty()) {
        return None;
    }
    Some(json!({
        "name": g.spec.name,
        "file": g.file,
        "rules": rules,
        "interval": g.interval_ms as f64 / 1000.0,
        "limit": g.spec.limit,
        "evaluationTime": g.evaluation_seconds,
        "lastEvaluation": ts(g.last_evaluation),
    }))
}

fn bad_data(msg: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"status": "error", "errorType": "bad_data", "error": msg})),
    )
        .into_response()
}

async fn rules(State(state): State<AppState>, RawQuery(q): RawQuery) -> Response {
    rules_json(&state, Scope::Prometheus, q)
}

async fn loki_rules_json(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    match tenant_from_headers(&headers) {
        Ok(t) => rules_json(&state, Scope::Loki(&t), q),
        Err(e) => bad_data(e),
    }
}

fn rules_json(state: &AppState, scope: Scope<'_>, q: Option<String>) -> Response {
    let filter = match parse_filter(q) {
        Ok(f) => f,
        Err(e) => return bad_data(e),
    };
    let groups: Vec<Value> = scoped_groups(state, scope)
        .iter()
        .filter_map(|g| group_json(&g.lock(), &filter))
        .collect();
    Json(json!({"status": "success", "data": {"groups": groups}})).into_response()
}

async fn alerts(State(state): State<AppState>) -> Response {
    alerts_json(&state, Scope::Prometheus)
}

async fn loki_alerts(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match tenant_from_headers(&headers) {
        Ok(t) => alerts_json(&state, Scope::Loki(&t)),
        Err(e) => bad_data(e),
    }
}

fn alerts_json(state: &AppState, scope: Scope<'_>) -> Response {
    let mut out = Vec::new();
    for g in scoped_groups(state, scope) {
        let g = g.lock();
        for r in &g.rules {
            out.extend(live_alerts(&r.active).into_iter().map(alert_json));
        }
    }
    Json(json!({"status": "success", "data": {"alerts": out}})).into_response()
}

/// Loki's `GET /loki/api/v1/rules[/{namespace}[/{group}]]`: the tenant's
/// groups as YAML, by namespace (a single group: the group itself).
async fn loki_rules(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(path): Path<BTreeMap<String, String>>,
) -> Response {
    let tenant = match tenant_from_headers(&headers) {
        Ok(t) => t,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    let namespace = path.get("namespace");
    let group = path.get("group");
    let mut by_ns: BTreeMap<String, Vec<serde_yaml::Value>> = BTreeMap::new();
    for g in scoped_groups(&state, Scope::Loki(&tenant)) {
        let g = g.lock();
        if namespace.is_some_and(|n| *n != g.file) || group.is_some_and(|n| *n != g.spec.name) {
            continue;
        }
        by_ns
            .entry(g.file.clone())
            .or_default()
            .push(crate::rules::loki::group_yaml(&g.spec));
    }
    let body = if group.is_some() {
        match by_ns.into_values().flatten().next() {
            Some(g) => serde_yaml::to_string(&g),
            None => return (StatusCode::NOT_FOUND, "group does not exist\n").into_response(),
        }
    } else if by_ns.is_empty() {
        return (StatusCode::NOT_FOUND, "no rule groups found\n").into_response();
    } else {
        serde_yaml::to_string(&by_ns)
    };
    match body {
        Ok(b) => ([(header::CONTENT_TYPE, "application/yaml")], b).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
/// Rules come from `rules.loki.directory`; the API does not change them.
async fn loki_read_only() -> Response {
    (
        StatusCode::NOT_IMPLEMENTED,
        "rule groups are read from rules.loki.directory; edit the files there and reload\n",
    )
        .into_response()
}

async fn reload(State(state): State<AppState>) -> Response {
    let Some(m) = state.rules.clone() else {
        return (StatusCode::OK, "").into_response();
    };
    match tokio::task::spawn_blocking(move || m.reload()).await {
        Ok(Ok(_)) => (StatusCode::OK, "").into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {e}\n"),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
