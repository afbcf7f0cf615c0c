//! Evaluation of one rule group with Prometheus's semantics: one timestamp
//! per run, recording rules written back with staleness markers, alerting
//! rules moving through pending, firing and resolved, `ALERTS` and
//! `ALERTS_FOR_STATE` series, and for-state restoration after a restart.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::model::{Labels, LabelsBuilder, Matcher, Sample, Tenant, METRIC_NAME, STALE_NAN_BITS};
use crate::storage::{MetricsReader, MetricsWriter, SeriesWrite, WriteBatch};
use crate::template::{funcs::prometheus_funcs, FuncMap, Template, Value};

use super::file::{GroupSpec, Lang, RuleKind, RuleSpec};

/// Alerts resolved longer ago than this are forgotten (Prometheus: 15m).
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60_000;

/// Runs instant queries for rules (PromQL or LogQL).
pub trait RuleQuerier: Send + Sync {
    /// The result of `expr` at `t_ms` as a vector (a scalar becomes one
    /// sample without labels).
    fn query(&self, tenant: &Tenant, expr: &str, t_ms: i64) -> Result<Vec<(Labels, f64)>, String>;
}

/// What group evaluation needs from the rest of the process.
pub struct EvalContext<'a> {
    /// Runs the rules' queries.
    pub querier: &'a dyn RuleQuerier,
    /// Where recorded series and `ALERTS` go.
    pub writer: &'a dyn MetricsWriter,
    /// Reads `ALERTS_FOR_STATE` back when restoring.
    pub reader: &'a dyn MetricsReader,
    /// The tenant the group belongs to.
    pub tenant: &'a Tenant,
    /// External labels (templates and notifications).
    pub external_labels: &'a Labels,
    /// External URL (templates and `generatorURL`).
    pub external_url: &'a str,
}

/// Alert state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertState {
    /// Condition cleared (kept a while so the resolution is sent).
    Inactive,
    /// Condition true for less than `for`.
    Pending,
    /// Condition true for at least `for`.
    Firing,
}

impl AlertState {
    /// Prometheus's name for the state.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One active (or recently resolved) alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Full label set (sample labels without `__name__`, rule labels,
    /// `alertname`).
    pub labels: Labels,
    /// Expanded annotations.
    pub annotations: BTreeMap<String, String>,
    /// State.
    pub state: AlertState,
    /// Last value of the expression.
    pub value: f64,
    /// When the condition became true, ms.
    pub active_at: i64,
    /// When it started firing, ms.
    pub fired_at: Option<i64>,
    /// When it resolved, ms.
    pub resolved_at: Option<i64>,
    /// When it was last sent, ms.
    pub last_sent_at: Option<i64>,
    /// `endsAt` sent for a firing alert, ms.
    pub valid_until: i64,
    /// Since when it is kept firing by `keep_firing_for`, ms.
    pub keep_firing_since: Option<i64>,
}

/// An alert as sent to Alertmanager.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingAlert {
    /// Labels (external labels added by the notifier).
    pub labels: Labels,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// `startsAt`, ms.
    pub starts_at: i64,
    /// `endsAt`, ms.
    pub ends_at: i64,
    /// Link back to the expression.
    pub generator_url: String,
}

/// Health of a rule after its last evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleHealth {
    /// "ok", "err" or "unknown".
    pub health: &'static str,
    /// Last error message.
    pub last_error: Option<String>,
    /// Last evaluation time, ms.
    pub last_evaluation: Option<i64>,
    /// Seconds the last evaluation took.
    pub evaluation_seconds: f64,
}

impl Default for RuleHealth {
    fn default() -> Self {
        RuleHealth {
            health: "unknown",
            last_error: None,
            last_evaluation: None,
            evaluation_seconds: 0.0,
        }
    }
}

/// A rule with its evaluation state.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The definition.
    pub spec: RuleSpec,
    /// Health of the last evaluation.
    pub health: RuleHealth,
    /// Active alerts by label set (alerting rules).
    pub active: HashMap<Labels, Alert>,
    /// Series written by the last evaluation (for staleness markers).
    written: HashSet<Labels>,
    /// Whether for-state restoration has run.
    restored: bool,
}

/// A group with its rules' state.
pub struct Group {
    /// The definition.
    pub spec: GroupSpec,
    /// File it came from (for LogQL groups: the namespace).
    pub file: String,
    /// Query language of its expressions.
    pub lang: Lang,
    /// Tenant it evaluates in (None: the manager's Prometheus tenant).
    pub tenant: Option<Tenant>,
    /// Evaluation interval, ms.
    pub interval_ms: i64,
    /// Its rules.
    pub rules: Vec<Rule>,
    /// Last run's timestamp, ms.
    pub last_evaluation: Option<i64>,
    /// Seconds the last run took.
    pub evaluation_seconds: f64,
    /// Runs done.
    pub evaluations: u64,
    /// Runs with at least one failed rule.
    pub failures: u64,
    /// Iterations skipped because a run took longer than the interval.
    pub missed: u64,
}

fn stale() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

fn labels_value(l: &Labels) -> Value {
    Value::string_map(l.iter().map(|x| (x.name.as_str(), x.value.as_str())))
}

impl Group {
    /// A group from its definition. `restored` marks alerting rules as
    /// already restored (promtool's unit tests do this).
    pub fn new(spec: GroupSpec, file: &str, default_interval_ms: i64, restored: bool) -> Group {
        let rules = spec
            .rules
            .iter()
            .map(|r| Rule {
                spec: r.clone(),
                health: RuleHealth::default(),
                active: HashMap::new(),
                written: HashSet::new(),
                restored,
            })
            .collect();
        Group {
            interval_ms: spec.interval_ms.unwrap_or(default_interval_ms),
            spec,
            file: file.to_string(),
            lang: Lang::PromQL,
            tenant: None,
            rules,
            last_evaluation: None,
            evaluation_seconds: 0.0,
            evaluations: 0,
            failures: 0,
            missed: 0,
        }
    }

    /// Carries the state of rules with the same definition over from `old`
    /// (after a reload), as Prometheus does.
    pub fn copy_state_from(&mut self, old: &Group) {
        for r in &mut self.rules {
            if let Some(o) = old.rules.iter().find(|o| o.spec == r.spec) {
                r.active = o.active.clone();
                r.written = o.written.clone();
                r.restored = o.restored;
                r.health = o.health.clone();
            }
        }
        self.last_evaluation = old.last_evaluation;
    }

    /// Evaluates every rule at `ts` (ms). Returns the alerts to send now
    /// and the first rule error (all rules are evaluated regardless).
    pub fn eval(
        &mut self,
        ts: i64,
        ctx: &EvalContext<'_>,
        resend_delay_ms: i64,
    ) -> (Vec<OutgoingAlert>, Option<String>) {
        let started = std::time::Instant::now();
        let query_ts = ts - self.spec.query_offset_ms.unwrap_or(0);
        let mut out = Vec::new();
        let mut first_err = None;
        let group_labels = self.spec.labels.clone();
        let limit = self.spec.limit;
        for i in 0..self.rules.len() {
            let rule_started = std::time::Instant::now();
            let res = {
                let rule = &mut self.rules[i];
                eval_rule(rule, query_ts, ctx, &group_labels, limit)
            };
            let rule = &mut self.rules[i];
            // A failed rule writes nothing (no samples, no staleness
            // markers) and sends nothing this round, as in Prometheus and
            // the alert-generator spec (step 4).
            let series = match res {
                Ok(series) => {
                    rule.health.health = "ok";
                    rule.health.last_error = None;
                    Some(series)
                }
                Err(e) => {
                    rule.health.health = "err";
                    rule.health.last_error = Some(e.clone());
                    first_err.get_or_insert(format!("rule {:?}: {e}", rule.spec.name()));
                    None
                }
            };
            rule.health.last_evaluation = Some(ts);
            rule.health.evaluation_seconds = rule_started.elapsed().as_secs_f64();
            let ok = series.is_some();
            if let Some(series) = series {
                if let Err(e) = write_with_staleness(rule, series, query_ts, ctx) {
                    first_err.get_or_insert(e);
                }
            }
            if let RuleKind::Alert { .. } = rule.spec.kind {
                if !rule.restored {
                    restore_for_state(rule, query_ts, ctx);
                    rule.restored = true;
                }
                if ok {
                    out.extend(alerts_to_send(
                        rule,
                        query_ts,
                        resend_delay_ms,
                        self.interval_ms,
                        ctx.external_url,
                    ));
                }
            }
        }
        self.evaluations += 1;
        if first_err.is_some() {
            self.failures += 1;
        }
        self.last_evaluation = Some(ts);
        self.evaluation_seconds = started.elapsed().as_secs_f64();
        (out, first_err)
    }
}

fn eval_rule(
    rule: &mut Rule,
    ts: i64,
    ctx: &EvalContext<'_>,
    group_labels: &BTreeMap<String, String>,
    limit: usize,
) -> Result<Vec<(Labels, f64)>, String> {
    let res = ctx.querier.query(ctx.tenant, &rule.spec.expr, ts)?;
    match rule.spec.kind.clone() {
        RuleKind::Record(name) => {
            let mut seen = HashSet::new();
            let mut out = Vec::with_capacity(res.len());
            for (l, v) in res {
                let mut b = LabelsBuilder::new(&l);
                b.set(METRIC_NAME, name.clone());
                for (k, v) in group_labels.iter().chain(rule.spec.labels.iter()) {
                    if v.is_empty() {
                        b.del(k);
                    } else {
                        b.set(k.clone(), v.clone());
                    }
                }
                let l = b.labels();
                if !seen.insert(l.clone()) {
                    return Err(
                        "vector contains metrics with the same labelset after applying rule labels"
                            .into(),
                    );
                }
                out.push((l, v));
            }
            if limit > 0 && out.len() > limit {
                return Err(format!(
                    "exceeded limit of {limit} with {} series",
                    out.len()
                ));
            }
            Ok(out)
        }
        RuleKind::Alert {
            name,
            for_ms,
            keep_firing_for_ms,
        } => eval_alert(
            rule,
            &name,
            for_ms,
            keep_firing_for_ms,
            res,
            ts,
            ctx,
            group_labels,
            limit,
        ),
    }
}

/// Functions for alert templates, with `query` bound to this context.
fn template_funcs(ctx: &EvalContext<'_>, ts: i64) -> FuncMap {
    let mut funcs = prometheus_funcs();
    // Templates run synchronously inside the evaluation, so `query` runs
    // its result eagerly through a snapshot of the querier's answer.
    let url = ctx.external_url.to_string();
    funcs.insert("externalURL", move |_| Ok(Value::Str(url.clone())));
    let prefix = ctx
        .external_url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_string()))
        .unwrap_or_default();
    funcs.insert("pathPrefix", move |_| Ok(Value::Str(prefix.clone())));
    let _ = ts;
    funcs
}

fn expand(
    text: &str,
    name: &str,
    labels: &Labels,
    value: f64,
    ctx: &EvalContext<'_>,
    ts: i64,
) -> String {
    if !text.contains("{{") {
        return text.to_string();
    }
    let mut funcs = template_funcs(ctx, ts);
    // `query` needs the querier; it is called synchronously here.
    let tenant = ctx.tenant.clone();
    let results = std::sync::Arc::new(parking_lot::Mutex::new(Vec::<(String, Value)>::new()));
    // Pre-run queries that appear literally so the template function can
    // answer them without borrowing the context.
    for q in literal_queries(text) {
        let v = match ctx.querier.query(&tenant, &q, ts) {
            Ok(samples) => Value::List(
                samples
                    .into_iter()
                    .map(|(l, v)| {
                        Value::Map(
                            [
                                ("Labels".to_string(), labels_value(&l)),
                                ("Value".to_string(), Value::Float(v)),
                            ]
                            .into_iter()
                            .collect(),
                        )
                    })
                    .collect(),
            ),
            Err(e) => Value::Str(format!("error executing query: {e}")),
        };
        results.lock().push((q, v));
    }
    let r = results.clone();
    funcs.insert("query", move |a| {
        let q = a.first().map(Value::to_go_string).unwrap_or_default();
        match r.lock().iter().find(|(k, _)| *k == q) {
            Some((_, Value::Str(e))) => Err(e.clone()),
            Some((_, v)) => Ok(v.clone()),
            None => Err(format!("query {q:?} is not a literal string")),
        }
    });
    let preamble_vars = [
        ("labels", labels_value(&labels.without_metric_name())),
        ("value", Value::Float(value)),
        ("externalLabels", labels_value(ctx.external_labels)),
        ("externalURL", Value::Str(ctx.external_url.to_string())),
    ];
    let dot = Value::Map(
        [
            ("Labels".to_string(), preamble_vars[0].1.clone()),
            ("Value".to_string(), Value::Float(value)),
            ("ExternalLabels".to_string(), preamble_vars[2].1.clone()),
            ("ExternalURL".to_string(), preamble_vars[3].1.clone()),
        ]
        .into_iter()
        .collect(),
    );
    match Template::parse(name, text, &funcs).and_then(|t| t.execute(&dot, &preamble_vars, &funcs))
    {
        Ok(s) => s,
        Err(e) => format!("<error expanding template: {e}>"),
    }
}

/// String literals passed to `query` in a template.
fn literal_queries(text: &str) -> Vec<String> {
    let re =
        regex::Regex::new(r#"query\s+(?:"((?:[^"\\]|\\.)*)"|`([^`]*)`)"#).expect("valid regex");
    re.captures_iter(text)
        .filter_map(|c| {
            c.get(1)
                .map(|m| m.as_str().replace("\\\"", "\"").replace("\\\\", "\\"))
                .or_else(|| c.get(2).map(|m| m.as_str().to_string()))
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn eval_alert(
    rule: &mut Rule,
    name: &str,
    for_ms: i64,
    keep_firing_for_ms: i64,
    res: Vec<(Labels, f64)>,
    ts: i64,
    ctx: &EvalContext<'_>,
    group_labels: &BTreeMap<String, String>,
    limit: usize,
) -> Result<Vec<(Labels, f64)>, String> {
    let mut current: HashMap<Labels, Alert> = HashMap::new();
    for (l, v) in res {
        let mut b = LabelsBuilder::new(&l);
        b.del(METRIC_NAME);
        for (k, text) in group_labels.iter().chain(rule.spec.labels.iter()) {
            let val = expand(text, k, &l, v, ctx, ts);
            if val.is_empty() {
                b.del(k);
            } else {
                b.set(k.clone(), val);
            }
        }
        b.set("alertname", name.to_string());
        let labels = b.labels();
        let annotations = rule
            .spec
            .annotations
            .iter()
            .map(|(k, text)| (k.clone(), expand(text, k, &l, v, ctx, ts)))
            .collect();
        if current.contains_key(&labels) {
            return Err(
                "vector contains metrics with the same labelset after applying alert labels".into(),
            );
        }
        current.insert(
            labels.clone(),
            Alert {
                labels,
                annotations,
                state: AlertState::Pending,
                value: v,
                active_at: ts,
                fired_at: None,
                resolved_at: None,
                last_sent_at: None,
                valid_until: 0,
                keep_firing_since: None,
            },
        );
    }
    let present: HashSet<Labels> = current.keys().cloned().collect();
    for (k, a) in current {
        match rule.active.get_mut(&k) {
            Some(existing) if existing.state != AlertState::Inactive => {
                existing.value = a.value;
                existing.annotations = a.annotations;
            }
            _ => {
                rule.active.insert(k, a);
            }
        }
    }
    let mut series = Vec::new();
    let mut active_pending = 0;
    let keys: Vec<Labels> = rule.active.keys().cloned().collect();
    for k in keys {
        let a = rule.active.get_mut(&k).expect("key from map");
        if !present.contains(&k) {
            let mut keep_firing = false;
            if a.state == AlertState::Firing && keep_firing_for_ms > 0 {
                let since = *a.keep_firing_since.get_or_insert(ts);
                keep_firing = ts - since < keep_firing_for_ms;
            }
            if a.state == AlertState::Pending
                || a.resolved_at
                    .is_some_and(|r| ts - r > RESOLVED_RETENTION_MS)
            {
                rule.active.remove(&k);
                continue;
            }
            if a.state != AlertState::Inactive && !keep_firing {
                a.state = AlertState::Inactive;
                a.resolved_at = Some(ts);
            }
            if !keep_firing {
                continue;
            }
        } else if a.state == AlertState::Firing {
            a.keep_firing_since = None;
        }
        active_pending += 1;
        if a.state == AlertState::Pending && ts - a.active_at >= for_ms {
            a.state = AlertState::Firing;
            a.fired_at = Some(ts);
        }
        if rule.restored {
            let mut b = LabelsBuilder::new(&a.labels);
            b.set(METRIC_NAME, "ALERTS");
            b.set("alertstate", a.state.as_str());
            series.push((b.labels(), 1.0));
            let mut b = LabelsBuilder::new(&a.labels);
            b.set(METRIC_NAME, "ALERTS_FOR_STATE");
            series.push((b.labels(), (a.active_at / 1000) as f64));
        }
    }
    if limit > 0 && active_pending > limit {
        rule.active.clear();
        return Err(format!(
            "exceeded limit of {limit} with {active_pending} alerts"
        ));
    }
    Ok(series)
}

/// Writes `series` at `ts` and stale markers for series written last time
/// but not now.
fn write_with_staleness(
    rule: &mut Rule,
    series: Vec<(Labels, f64)>,
    ts: i64,
    ctx: &EvalContext<'_>,
) -> Result<(), String> {
    let now: HashSet<Labels> = series.iter().map(|(l, _)| l.clone()).collect();
    let mut batch = WriteBatch::default();
    for (l, v) in series {
        batch.series.push(SeriesWrite {
            labels: l,
            samples: vec![Sample::new(ts, v)],
            exemplars: vec![],
        });
    }
    for gone in rule.written.difference(&now) {
        batch.series.push(SeriesWrite {
            labels: gone.clone(),
            samples: vec![Sample::new(ts, stale())],
            exemplars: vec![],
        });
    }
    rule.written = now;
    if batch.series.is_empty() {
        return Ok(());
    }
    ctx.writer
        .append(ctx.tenant, batch)
        .map(|_| ())
        .map_err(|e| format!("writing rule results: {e}"))
}

/// Restores `active_at` of pending alerts from `ALERTS_FOR_STATE` after a
/// restart (outage tolerance 1h, grace period 10m, as Prometheus defaults).
fn restore_for_state(rule: &mut Rule, ts: i64, ctx: &EvalContext<'_>) {
    const OUTAGE_TOLERANCE_MS: i64 = 3_600_000;
    const GRACE_MS: i64 = 600_000;
    let RuleKind::Alert { name, for_ms, .. } = &rule.spec.kind else {
        return;
    };
    if *for_ms == 0 {
        return;
    }
    for a in rule.active.values_mut() {
        let mut matchers = vec![Matcher::equal(METRIC_NAME, "ALERTS_FOR_STATE")];
        for l in a.labels.iter() {
            matchers.push(Matcher::equal(l.name.clone(), l.value.clone()));
        }
        let Ok(found) = ctx
            .reader
            .select(ctx.tenant, &matchers, ts - OUTAGE_TOLERANCE_MS, ts - 1)
        else {
            continue;
        };
        let Some(last) = found
            .iter()
            .filter(|s| s.labels.get("alertname") == Some(name.as_str()))
            .filter_map(|s| s.samples.iter().rev().find(|x| !x.v.is_nan()))
            .max_by_key(|s| s.t)
        else {
            continue;
        };
        let down_at = last.t;
        let mut restored = (last.v * 1000.0) as i64;
        let remaining = for_ms - (down_at - restored);
        if remaining <= 0 {
        } else if remaining < GRACE_MS {
            restored = ts + GRACE_MS - for_ms;
        } else {
            restored += ts - down_at;
        }
        a.active_at = restored;
    }
}

fn alerts_to_send(
    rule: &mut Rule,
    ts: i64,
    resend_delay_ms: i64,
    interval_ms: i64,
    external_url: &str,
) -> Vec<OutgoingAlert> {
    let url = format!(
        "{}/graph?g0.expr={}&g0.tab=1",
        external_url.trim_end_matches('/'),
        url_escape(&rule.spec.expr)
    );
    let mut out = Vec::new();
    for a in rule.active.values_mut() {
        let needs = match a.state {
            AlertState::Pending => false,
            _ if a.resolved_at.is_some() && a.last_sent_at < a.resolved_at => true,
            _ => a.last_sent_at.is_none_or(|s| s + resend_delay_ms < ts),
        };
        if !needs {
            continue;
        }
        a.last_sent_at = Some(ts);
        a.valid_until = ts + 4 * resend_delay_ms.max(interval_ms);
        out.push(OutgoingAlert {
            labels: a.labels.clone(),
            annotations: a.annotations.clone(),
            starts_at: a.fired_at.unwrap_or(a.active_at),
            ends_at: a.resolved_at.unwrap_or(a.valid_until),
            generator_url: url.clone(),
        });
    }
    out
}

fn url_escape(s: &str) -> String {
    serde_urlencoded::to_string([("", s)])
        .map(|e| e.trim_start_matches('=').to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::file::parse_rule_file;
    use crate::storage::mem::MemMetrics;

    /// Answers every query from a script: time -> samples. Stands in for
    /// the engine so the state machine is tested on its own; the engine
    /// path is covered by the promtool suite.
    type ScriptFn = dyn Fn(&str, i64) -> Vec<(Labels, f64)> + Send + Sync;
    struct Script(Box<ScriptFn>);

    impl RuleQuerier for Script {
        fn query(&self, _: &Tenant, expr: &str, t: i64) -> Result<Vec<(Labels, f64)>, String> {
            Ok((self.0)(expr, t))
        }
    }

    fn group(yaml: &str) -> Group {
        let f = parse_rule_file(std::path::Path::new("t.yml"), yaml, Lang::PromQL, false).unwrap();
        Group::new(f.groups[0].clone(), "t.yml", 60_000, false)
    }

    fn up(instance: &str) -> Labels {
        Labels::from_pairs([("__name__", "up"), ("instance", instance), ("job", "node")])
    }

    const MIN: i64 = 60_000;

    fn run(g: &mut Group, q: &Script, store: &MemMetrics, t: i64) -> Vec<OutgoingAlert> {
        let tenant = Tenant::anonymous();
        let ext = Labels::from_pairs([("cluster", "c1")]);
        let ctx = EvalContext {
            querier: q,
            writer: store,
            reader: store,
            tenant: &tenant,
            external_labels: &ext,
            external_url: "http://strata:9090",
        };
        let (out, err) = g.eval(t, &ctx, MIN);
        assert_eq!(err, None);
        out
    }

    /// A context without external labels or URL.
    fn bare_ctx<'a>(
        q: &'a Script,
        store: &'a MemMetrics,
        tenant: &'a Tenant,
        ext: &'a Labels,
    ) -> EvalContext<'a> {
        EvalContext {
            querier: q,
            writer: store,
            reader: store,
            tenant,
            external_labels: ext,
            external_url: "",
        }
    }

    fn series(store: &MemMetrics, name: &str) -> Vec<crate::storage::SeriesSamples> {
        store
            .select(
                &Tenant::anonymous(),
                &[Matcher::equal(METRIC_NAME, name)],
                i64::MIN,
                i64::MAX,
            )
            .unwrap()
    }

    #[test]
    fn alert_goes_pending_firing_resolved() {
        let mut g = group(
            r#"
groups:
- name: g
  rules:
  - alert: Down
    expr: up == 0
    for: 5m
    labels: {severity: page}
    annotations:
      summary: "{{ $labels.instance }} down ({{ $value }}) in {{ $externalLabels.cluster }}"
"#,
        );
        // Down from 0 to 10m, up afterwards.
        let q = Script(Box::new(|_, t| {
            if t <= 10 * MIN {
                vec![(up("a"), 0.0)]
            } else {
                vec![]
            }
        }));
        let store = MemMetrics::new();
        for m in 0..5 {
            assert!(
                run(&mut g, &q, &store, m * MIN).is_empty(),
                "pending alerts are not sent"
            );
        }
        let a = g.rules[0].active.values().next().unwrap().clone();
        assert_eq!(a.state, AlertState::Pending);
        assert_eq!(a.annotations["summary"], "a down (0) in c1");
        assert_eq!(
            a.labels,
            Labels::from_pairs([
                ("alertname", "Down"),
                ("instance", "a"),
                ("job", "node"),
                ("severity", "page")
            ])
        );
        let sent = run(&mut g, &q, &store, 5 * MIN);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].starts_at, 5 * MIN);
        assert_eq!(sent[0].ends_at, 5 * MIN + 4 * MIN);
        assert!(sent[0]
            .generator_url
            .starts_with("http://strata:9090/graph?g0.expr=up+%3D%3D+0"));
        // Re-sent only after the resend delay.
        assert!(run(&mut g, &q, &store, 5 * MIN + 30_000).is_empty());
        assert_eq!(run(&mut g, &q, &store, 6 * MIN + 30_000).len(), 1);
        // Resolution is sent once with endsAt = resolution time.
        let sent = run(&mut g, &q, &store, 11 * MIN);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].ends_at, 11 * MIN);
        assert_eq!(
            g.rules[0].active.values().next().unwrap().state,
            AlertState::Inactive
        );
        // Forgotten after the retention.
        run(&mut g, &q, &store, 27 * MIN);
        assert!(g.rules[0].active.is_empty());
        // ALERTS: none at the first evaluation (restoration runs after it,
        // as in Prometheus), pending from 1m, firing from 5m, stale at 11m.
        let alerts = series(&store, "ALERTS");
        assert_eq!(alerts.len(), 2);
        let pending = alerts
            .iter()
            .find(|s| s.labels.get("alertstate") == Some("pending"))
            .unwrap();
        assert_eq!(pending.samples.first().unwrap().t, MIN);
        assert!(crate::model::is_stale_nan(
            pending.samples.last().unwrap().v
        ));
        assert_eq!(pending.samples.last().unwrap().t, 5 * MIN);
        let firing = alerts
            .iter()
            .find(|s| s.labels.get("alertstate") == Some("firing"))
            .unwrap();
        assert_eq!(firing.samples.first().unwrap().t, 5 * MIN);
        assert!(crate::model::is_stale_nan(firing.samples.last().unwrap().v));
        let for_state = series(&store, "ALERTS_FOR_STATE");
        assert_eq!(for_state[0].samples[0].v, 0.0);
    }

    #[test]
    fn keep_firing_for_holds_the_alert() {
        let mut g = group(
            r#"
groups:
- name: g
  rules:
  - alert: Flap
    expr: up == 0
    keep_firing_for: 3m
"#,
        );
        let q = Script(Box::new(
            |_, t| if t == 0 { vec![(up("a"), 0.0)] } else { vec![] },
        ));
        let store = MemMetrics::new();
        assert_eq!(run(&mut g, &q, &store, 0).len(), 1, "for: 0 fires at once");
        for m in 1..=3 {
            run(&mut g, &q, &store, m * MIN);
            let state = g.rules[0].active.values().next().unwrap().state;
            assert_eq!(state, AlertState::Firing, "kept firing at {m}m");
        }
        run(&mut g, &q, &store, 4 * MIN);
        assert_eq!(
            g.rules[0].active.values().next().unwrap().state,
            AlertState::Inactive
        );
    }

    #[test]
    fn recording_rule_writes_and_marks_stale() {
        let mut g = group(
            r#"
groups:
- name: g
  rules:
  - record: job:up:sum
    expr: sum by (job) (up)
    labels: {source: rule}
"#,
        );
        let q = Script(Box::new(|_, t| {
            if t < 2 * MIN {
                vec![(Labels::from_pairs([("job", "node")]), 3.0)]
            } else {
                vec![]
            }
        }));
        let store = MemMetrics::new();
        for m in 0..3 {
            run(&mut g, &q, &store, m * MIN);
        }
        let s = series(&store, "job:up:sum");
        assert_eq!(s.len(), 1);
        assert_eq!(
            s[0].labels,
            Labels::from_pairs([
                ("__name__", "job:up:sum"),
                ("job", "node"),
                ("source", "rule")
            ])
        );
        assert_eq!(s[0].samples.len(), 3);
        assert_eq!(s[0].samples[1], Sample::new(MIN, 3.0));
        assert!(crate::model::is_stale_nan(s[0].samples[2].v));
    }

    #[test]
    fn duplicate_labelsets_are_an_error() {
        let mut g = group(
            r#"
groups:
- name: g
  rules:
  - record: x
    expr: up
    labels: {instance: same}
"#,
        );
        let q = Script(Box::new(|_, _| vec![(up("a"), 1.0), (up("b"), 1.0)]));
        let store = MemMetrics::new();
        let (tenant, ext) = (Tenant::anonymous(), Labels::empty());
        let ctx = bare_ctx(&q, &store, &tenant, &ext);
        let (_, err) = g.eval(0, &ctx, MIN);
        assert!(err.unwrap().contains("same labelset"));
        assert_eq!(g.rules[0].health.health, "err");
    }

    #[test]
    fn for_state_is_restored_after_restart() {
        let yaml = r#"
groups:
- name: g
  rules:
  - alert: Slow
    expr: up == 0
    for: 30m
"#;
        let q = Script(Box::new(|_, _| vec![(up("a"), 0.0)]));
        let store = MemMetrics::new();
        let mut g = group(yaml);
        g.rules[0].restored = true;
        for m in 0..=20 {
            run(&mut g, &q, &store, m * MIN);
        }
        // Restart 2 minutes later: a new group restores activeAt from
        // ALERTS_FOR_STATE, shifted by the downtime.
        let mut g2 = group(yaml);
        run(&mut g2, &q, &store, 22 * MIN);
        let a = g2.rules[0].active.values().next().unwrap();
        assert_eq!(
            a.active_at,
            2 * MIN,
            "20m pending before the outage are kept"
        );
        assert_eq!(a.state, AlertState::Pending);
    }

    /// Spec step 4: an alerting rule whose labels collide errors out and
    /// neither sends (not even a due resend) nor writes `ALERTS`.
    #[test]
    fn failed_alert_rule_sends_and_writes_nothing() {
        let mut g = group(
            r#"
groups:
- name: g
  rules:
  - alert: Down
    expr: up == 0
    labels: {instance: same}
"#,
        );
        let q = Script(Box::new(|_, t| {
            if t < 2 * MIN {
                vec![(up("a"), 0.0)]
            } else {
                vec![(up("a"), 0.0), (up("b"), 0.0)]
            }
        }));
        let store = MemMetrics::new();
        let (tenant, ext) = (Tenant::anonymous(), Labels::empty());
        let ctx = bare_ctx(&q, &store, &tenant, &ext);
        assert_eq!(g.eval(0, &ctx, MIN).0.len(), 1, "fires at once");
        assert!(g.eval(MIN, &ctx, MIN).0.is_empty(), "not due yet");
        let (sent, err) = g.eval(2 * MIN + MIN / 2, &ctx, MIN);
        assert!(err.unwrap().contains("same labelset"));
        assert!(sent.is_empty(), "a resend was due, but the rule failed");
        let alerts = series(&store, "ALERTS");
        assert_eq!(alerts.len(), 1);
        assert_eq!(
            alerts[0].samples.last().unwrap().t,
            MIN,
            "no sample nor staleness marker at the failed evaluation"
        );
        assert!(!crate::model::is_stale_nan(
            alerts[0].samples.last().unwrap().v
        ));
    }
}
