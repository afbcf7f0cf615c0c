//! The Loki ruler end to end on a virtual clock: per-tenant LogQL rule files
//! (`<dir>/<tenant>/<namespace>.yaml`) evaluated over logs pushed through
//! `LogWriter::push`; a LogQL alert fires and resolves at a receiver, a
//! recording rule's series is queryable through PromQL in the tenant's
//! metrics, tenants do not see each other's logs, rules or results, and the
//! ruler API Grafana's Loki data source calls answers per tenant.

#[path = "rules_harness/mod.rs"]
mod harness;

use harness::{Harness, Received};
use strata::config::{DurationMs, LokiRulesConfig, RulesConfig};
use strata::logs::{LogEntry, LogWriter, PushStream};
use strata::model::{Labels, Tenant};

const MIN: i64 = 60_000;
/// A minute boundary, so the test's times read as minutes.
const T0: i64 = 1_767_225_600_000;

const TEAM_A: &str = r#"
groups:
  - name: web-errors
    rules:
      - record: app:errors:count1m
        expr: sum by (app) (count_over_time({app="web"} |= "error" [1m]))
      - alert: WebErrors
        expr: sum by (app) (count_over_time({app="web"} |= "error" [1m])) > 2
        for: 2m
        labels:
          severity: page
        annotations:
          summary: "{{ $labels.app }} logged {{ $value }} errors in a minute"
"#;

const TEAM_B: &str = r#"
groups:
  - name: web-errors-b
    interval: 30s
    rules:
      - record: app:errors:count1m
        expr: sum by (app) (count_over_time({app="web"} |= "error" [1m]))
      - alert: WebErrors
        expr: sum by (app) (count_over_time({app="web"} |= "error" [1m])) > 2
"#;

fn push(h: &Harness, tenant: &str, from: i64, to: i64, every: i64, line: &str) {
    let entries = (0..)
        .map(|i| from + i * every)
        .take_while(|t| *t < to)
        .map(|t| LogEntry::new(t * 1_000_000, line))
        .collect();
    let out = LogWriter::push(
        h.logs.as_ref(),
        &Tenant::new(tenant).unwrap(),
        vec![PushStream {
            labels: Labels::from_pairs([("app", "web"), ("env", "prod")]),
            entries,
        }],
    )
    .unwrap();
    assert!(out.rejected.is_empty());
}

fn setup() -> (tempfile::TempDir, Harness) {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("loki-rules");
    for (tenant, text) in [("team-a", TEAM_A), ("team-b", TEAM_B)] {
        std::fs::create_dir_all(rules.join(tenant)).unwrap();
        std::fs::write(rules.join(tenant).join("web.yaml"), text).unwrap();
    }
    let cfg = RulesConfig {
        loki: LokiRulesConfig {
            directory: "loki-rules".into(),
            evaluation_interval: DurationMs(MIN),
        },
        external_url: "http://strata.test".into(),
        ..RulesConfig::default()
    };
    let h = Harness::start(cfg, dir.path());
    (dir, h)
}

fn instant(h: &Harness, tenant: &str, query: &str, t: i64) -> serde_json::Value {
    let q: String = serde_urlencoded::to_string([
        ("query", query.to_string()),
        ("time", format!("{}", t as f64 / 1000.0)),
    ])
    .unwrap();
    let (st, v) = h.get_json(&format!("/api/v1/query?{q}"), Some(tenant));
    assert_eq!(st, 200, "{v}");
    v["data"]["result"].clone()
}

#[test]
fn logql_alert_fires_and_resolves_and_recording_rule_is_queryable() {
    let (_dir, h) = setup();
    // team-a: an error line every 10s for 6 minutes, then quiet; also info
    // lines that the filter drops. team-b: only info lines.
    push(
        &h,
        "team-a",
        T0,
        T0 + 6 * MIN,
        10_000,
        "level=error msg=boom",
    );
    push(&h, "team-a", T0, T0 + 12 * MIN, 5_000, "level=info msg=ok");
    push(&h, "team-b", T0, T0 + 12 * MIN, 5_000, "level=info msg=ok");

    h.run(T0, T0 + 2 * MIN, 5_000);
    assert!(
        h.take_received().is_empty(),
        "a pending alert is not sent before `for` elapsed"
    );
    let (_, alerts) = h.get_json("/prometheus/api/v1/alerts", Some("team-a"));
    let alerts = alerts["data"]["alerts"].as_array().unwrap().clone();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["state"], "pending");
    assert_eq!(alerts[0]["value"], "6e+00", "formatted as Prometheus does");

    h.run(T0 + 2 * MIN, T0 + 5 * MIN, 5_000);
    let got = h.take_received();
    let firing: Vec<&Received> = got.iter().filter(|r| !r.resolved()).collect();
    assert!(!firing.is_empty(), "the alert fired: {got:?}");
    let a = firing[0];
    assert_eq!(a.label("alertname"), "WebErrors");
    assert_eq!(a.label("app"), "web");
    assert_eq!(a.label("severity"), "page");
    assert_eq!(a.annotation("summary"), "web logged 6 errors in a minute");
    assert!(a.alert["generatorURL"]
        .as_str()
        .unwrap()
        .starts_with("http://strata.test/graph?g0.expr="));
    assert!(
        (2 * MIN..3 * MIN + 1).contains(&(a.starts_at() - T0)),
        "fires about `for` after the first errors: {}",
        a.starts_at() - T0
    );

    // The recording rule's series, through PromQL in team-a's metrics only.
    let v = instant(&h, "team-a", "app:errors:count1m", T0 + 4 * MIN);
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v[0]["metric"]["app"], "web");
    assert_eq!(v[0]["value"][1], "6");
    let v = instant(&h, "team-b", "app:errors:count1m", T0 + 4 * MIN);
    assert_eq!(v, serde_json::json!([]), "team-b logged no errors");
    let v = instant(&h, "anonymous", "app:errors:count1m", T0 + 4 * MIN);
    assert_eq!(v, serde_json::json!([]));
    let v = instant(
        &h,
        "team-a",
        "ALERTS{alertname=\"WebErrors\"}",
        T0 + 4 * MIN,
    );
    assert_eq!(v[0]["metric"]["alertstate"], "firing", "{v}");

    // Errors stop at 6m; the 1m window empties by 7m: resolved.
    h.run(T0 + 5 * MIN, T0 + 9 * MIN, 5_000);
    let got = h.take_received();
    let resolved: Vec<&Received> = got.iter().filter(|r| r.resolved()).collect();
    assert!(!resolved.is_empty(), "the alert resolved: {got:?}");
    let r = resolved[0];
    assert_eq!(r.label("alertname"), "WebErrors");
    assert!(
        (6 * MIN..8 * MIN).contains(&(r.ends_at() - T0)),
        "resolved when the errors stopped: {}",
        r.ends_at() - T0
    );
    assert!(got.iter().all(|r| r.label("alertname") == "WebErrors"));
    let (_, alerts) = h.get_json("/prometheus/api/v1/alerts", Some("team-a"));
    assert_eq!(alerts["data"]["alerts"], serde_json::json!([]));
}

#[test]
fn tenants_are_isolated() {
    let (_dir, h) = setup();
    // Only team-b logs errors; team-a's identical rule must not see them.
    push(
        &h,
        "team-b",
        T0,
        T0 + 3 * MIN,
        10_000,
        "level=error msg=boom",
    );
    h.run(T0, T0 + 2 * MIN, 5_000);
    let got = h.take_received();
    assert!(!got.is_empty(), "team-b's for: 0 alert fires at once");
    assert!(
        got.iter().all(|r| r.label("severity").is_empty()),
        "{got:?}"
    );
    let (_, a) = h.get_json("/prometheus/api/v1/alerts", Some("team-a"));
    assert_eq!(a["data"]["alerts"], serde_json::json!([]));
    let (_, b) = h.get_json("/prometheus/api/v1/alerts", Some("team-b"));
    assert_eq!(b["data"]["alerts"][0]["state"], "firing", "{b}");
    let v = instant(&h, "team-a", "app:errors:count1m", T0 + MIN + 30_000);
    assert_eq!(v, serde_json::json!([]));
    let v = instant(&h, "team-b", "app:errors:count1m", T0 + MIN + 30_000);
    assert_eq!(v[0]["value"][1], "6", "{v}");
}

#[test]
fn ruler_api_per_tenant_and_reload() {
    let (dir, h) = setup();
    h.tick(T0);
    // Prometheus-shaped rules of the tenant, as Grafana's Loki data source reads them.
    let (st, v) = h.get_json("/prometheus/api/v1/rules", Some("team-a"));
    assert_eq!(st, 200);
    let groups = v["data"]["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{v}");
    assert_eq!(groups[0]["name"], "web-errors");
    assert_eq!(groups[0]["file"], "web.yaml");
    assert_eq!(groups[0]["interval"], 60.0);
    assert_eq!(groups[0]["rules"][0]["type"], "recording");
    assert_eq!(groups[0]["rules"][1]["type"], "alerting");
    assert_eq!(groups[0]["rules"][1]["duration"], 120.0);
    assert_eq!(groups[0]["rules"][1]["health"], "ok");
    let (_, v) = h.get_json("/prometheus/api/v1/rules?type=record", Some("team-b"));
    assert_eq!(v["data"]["groups"][0]["name"], "web-errors-b");
    assert_eq!(v["data"]["groups"][0]["interval"], 30.0);
    assert_eq!(v["data"]["groups"][0]["rules"].as_array().unwrap().len(), 1);
    // No Loki groups for others, nor among Prometheus's rules.
    let (_, v) = h.get_json("/prometheus/api/v1/rules", Some("nobody"));
    assert_eq!(v["data"]["groups"], serde_json::json!([]));
    let (_, v) = h.get_json("/api/v1/rules", Some("team-a"));
    assert_eq!(v["data"]["groups"], serde_json::json!([]));
    let (st, v) = h.get_json("/prometheus/api/v1/rules", Some("bad|tenant"));
    assert_eq!(st, 400, "{v}");

    // Loki's ruler configuration API: YAML by namespace.
    let (st, y) = h.get_text("/loki/api/v1/rules", Some("team-a"));
    assert_eq!(st, 200, "{y}");
    let parsed: serde_yaml::Value = serde_yaml::from_str(&y).unwrap();
    let ns = parsed["web.yaml"].as_sequence().unwrap();
    assert_eq!(ns[0]["name"].as_str(), Some("web-errors"));
    assert_eq!(ns[0]["rules"][1]["alert"].as_str(), Some("WebErrors"));
    assert_eq!(ns[0]["rules"][1]["for"].as_str(), Some("2m"));
    let (st, y) = h.get_text("/loki/api/v1/rules/web.yaml/web-errors", Some("team-a"));
    assert_eq!(st, 200);
    let g: serde_yaml::Value = serde_yaml::from_str(&y).unwrap();
    assert_eq!(g["name"].as_str(), Some("web-errors"));
    let (st, y) = h.get_text("/loki/api/v1/rules/web.yaml", Some("team-b"));
    assert_eq!(st, 200);
    assert!(
        y.contains("web-errors-b") && !y.contains("name: web-errors\n"),
        "{y}"
    );
    assert_eq!(
        h.get_text("/loki/api/v1/rules/web.yaml/nope", Some("team-a")),
        (404, "group does not exist\n".into())
    );
    assert_eq!(
        h.get_text("/loki/api/v1/rules", Some("nobody")),
        (404, "no rule groups found\n".into())
    );
    let resp = h
        .client
        .post(format!("{}/loki/api/v1/rules/web.yaml", h.base))
        .header("X-Scope-OrgID", "team-a")
        .body("name: x\nrules: []\n")
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 501);

    // Reload picks up a new tenant; a broken file keeps the old rules.
    let rules = dir.path().join("loki-rules");
    std::fs::create_dir_all(rules.join("team-c")).unwrap();
    std::fs::write(
        rules.join("team-c").join("c.yaml"),
        "groups:\n  - name: c\n    rules:\n      - record: c:lines\n        expr: sum(count_over_time({app=\"web\"}[1m]))\n",
    )
    .unwrap();
    assert_eq!(h.post("/-/reload").0, 200);
    let (_, v) = h.get_json("/prometheus/api/v1/rules", Some("team-c"));
    assert_eq!(v["data"]["groups"][0]["name"], "c");
    std::fs::write(
        rules.join("team-c").join("bad.yaml"),
        "groups:\n  - name: bad\n    rules:\n      - alert: Lines\n        expr: '{app=\"web\"}'\n",
    )
    .unwrap();
    let (st, body) = h.post("/-/reload");
    assert_eq!(st, 500);
    assert!(
        body.contains("bad.yaml") && body.contains("only metric queries"),
        "{body}"
    );
    let (_, v) = h.get_json("/prometheus/api/v1/rules", Some("team-c"));
    assert_eq!(v["data"]["groups"].as_array().unwrap().len(), 1);
}
