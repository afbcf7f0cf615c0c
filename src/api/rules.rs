//! `/api/v1/rules`, `/api/v1/alerts` and `POST /-/reload` in Prometheus's
//! shapes (also under `/prometheus`, which Grafana's Loki data source calls).

use std::collections::BTreeMap;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::AppState;
use crate::rules::file::RuleKind;
use crate::rules::group::{Alert, AlertState, Group};
use crate::template::format_float_e;

/// Rule routes, also under `/prometheus`.
pub fn routes() -> Router<AppState> {
    let r = Router::new()
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/alerts", get(alerts))
        .route("/-/reload", post(reload).put(reload));
    Router::new().merge(r.clone()).nest("/prometheus", r)
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
    let filter = match parse_filter(q) {
        Ok(f) => f,
        Err(e) => return bad_data(e),
    };
    let groups: Vec<Value> = state
        .rules
        .iter()
        .flat_map(|m| m.groups())
        .filter_map(|g| group_json(&g.lock(), &filter))
        .collect();
    Json(json!({"status": "success", "data": {"groups": groups}})).into_response()
}

async fn alerts(State(state): State<AppState>) -> Response {
    let mut out = Vec::new();
    for g in state.rules.iter().flat_map(|m| m.groups()) {
        let g = g.lock();
        for r in &g.rules {
            out.extend(live_alerts(&r.active).into_iter().map(alert_json));
        }
    }
    Json(json!({"status": "success", "data": {"alerts": out}})).into_response()
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
