//! conformance/alert_generator: the Prometheus alert-generator compliance
//! specification (`../shared/conformance/compliance/alert_generator`)
//! checked against Strata's real rule manager, PromQL engine, notifier and
//! HTTP API. Its `rules.yaml` is loaded as is; input series shaped like the
//! compliance tester's cases are written to the metrics store, and a
//! receiver owned by this test (the tester's role) records every alert the
//! notifier POSTs to `/api/v2/alerts`.
//!
//! Time is virtual (see `tests/rules_harness`), so the spec's real timings
//! (30s groups, `for` of minutes, 15m of resolved notifications) run in
//! seconds and every expectation is exact rather than within a tolerance.
//! `ALERT_GEN_INTERVAL` (group interval, default the file's 30s) scales
//! every duration of the rules and the data; `ALERT_GEN_RESEND_DELAY`
//! (default 1m, scaled likewise) sets the resend delay.
//!
//! Checked, per the specification: the rules load; alerts carry the query
//! result's labels with rule labels overriding and `alertname` set;
//! templated annotations (`$value`, `.Value`, `$labels`, `.Labels`, the
//! humanize family, string functions, `query`, `define`/`template`/`args`)
//! are expanded per alert and updated while pending/firing; `pending` for a
//! non-zero `for`, `firing` once `for` elapsed (a `for` shorter than the
//! interval fires at the next evaluation), zero `for` fires at once;
//! `inactive` when the result disappears and a new alert afterwards;
//! pending alerts are never sent; alerts are sent only right after an
//! evaluation of their group; firing alerts are sent when they start firing
//! and re-sent after the resend delay; resolved alerts are sent when they
//! resolve and re-sent until 15 minutes after or until a new alert with the
//! same labels; `startsAt` is `FiredAt`, `endsAt` is `ResolvedAt` or
//! `now + 4 * max(resend delay, interval)`; `generatorURL` links to the
//! expression; later rules of a group see the `ALERTS` series earlier
//! rules wrote in the same evaluation; `ALERTS` series have exactly the
//! spec's labels; `/api/v1/rules` and `/api/v1/alerts` report states,
//! `activeAt`, values, health and the group's interval and last evaluation.
//!
//! Known divergence (Prometheus's behaviour, which the compliance tester's
//! one-interval tolerance accepts): a resend happens when
//! `lastSentAt + resendDelay < now`, strictly, so with a 30s interval and a
//! 1m delay resends are 90s apart where the spec's prose says "the first
//! multiple of the interval >= the delay" (60s); and resolved alerts are
//! still sent at exactly 15 minutes after resolution. See README.md.

#[path = "../../tests/rules_harness/mod.rs"]
mod harness;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use harness::{rfc3339_ms, Harness, Received};
use strata::config::{DurationMs, RulesConfig};
use strata::model::{format_duration, parse_duration, Labels, Sample, Tenant};
use strata::query::promql::{QueryParams, Value as PromValue};
use strata::rules::file::{load_rule_file, Lang, RuleKind};
use strata::storage::{MetricsWriter, SeriesWrite, WriteBatch};

const MIN: i64 = 60_000;
/// How long resolved alerts keep being sent (spec and Prometheus).
const RESOLVED_RETENTION: i64 = 15 * MIN;
/// Virtual zero time of the data (a round minute).
const ZERO: i64 = 1_767_225_600_000;
const METRIC: &str = "alert_generator_test_suite";
const EXTERNAL_URL: &str = "http://strata.example:9090";

const PFR: &str = "PendingAndFiringAndResolved";
const ZFSF: &str = "ZeroFor_SmallFor";
const NAOC: &str = "NewAlerts_OrderCheck";
const PRAI: &str = "PendingAndResolved_AlwaysInactive";

fn shared_rules() -> Option<PathBuf> {
    let shared = std::env::var_os("STRATA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    let p = shared.join("conformance/compliance/alert_generator/rules.yaml");
    if p.is_file() {
        Some(p)
    } else {
        eprintln!(
            "SKIP alert_generator: {} not found (set STRATA_SHARED to the shared directory)",
            p.display()
        );
        None
    }
}

/// The timings of one run, ms.
#[derive(Debug, Clone, Copy)]
struct Timing {
    /// Group interval (the file says 30s).
    interval: i64,
    /// Resend delay (spec default 1m).
    resend: i64,
    /// Multiplier applied to the file's durations and the data's spacing.
    scale_num: i64,
    scale_den: i64,
}

impl Timing {
    fn new(interval: i64, resend: i64) -> Timing {
        Timing {
            interval,
            resend,
            scale_num: interval,
            scale_den: 30_000,
        }
    }

    fn from_env() -> Timing {
        let get = |k: &str, d: i64| {
            std::env::var(k)
                .ok()
                .map(|v| parse_duration(&v).unwrap_or_else(|e| panic!("{k}: {e}")))
                .unwrap_or(d)
        };
        let interval = get("ALERT_GEN_INTERVAL", 30_000);
        let mut t = Timing::new(interval, 0);
        t.resend = get("ALERT_GEN_RESEND_DELAY", t.scale(MIN));
        t
    }

    fn scale(&self, ms: i64) -> i64 {
        ms * self.scale_num / self.scale_den
    }

    /// The spacing of the input samples (the tester's 15s).
    fn step(&self) -> i64 {
        self.scale(15_000)
    }
}

/// Rewrites the rule file's durations for `t` (unchanged at 30s).
fn scaled_rules(text: &str, t: Timing) -> String {
    let mut v: serde_yaml::Value = serde_yaml::from_str(text).unwrap();
    let scale = |d: &serde_yaml::Value| -> serde_yaml::Value {
        let ms = parse_duration(d.as_str().unwrap()).unwrap();
        format_duration(t.scale(ms)).into()
    };
    for g in v["groups"].as_sequence_mut().unwrap() {
        let i = scale(&g["interval"]);
        g["interval"] = i;
        for r in g["rules"].as_sequence_mut().unwrap() {
            if r.get("for").is_some() {
                let f = scale(&r["for"]);
                r["for"] = f;
            }
        }
    }
    serde_yaml::to_string(&v).unwrap()
}

/// Piecewise-constant input: `(from step, value)`, a sample every step.
struct Input {
    labels: Labels,
    segments: Vec<(i64, f64)>,
}

impl Input {
    fn value_at_step(&self, step: i64) -> f64 {
        self.segments
            .iter()
            .rev()
            .find(|(from, _)| *from <= step)
            .map(|s| s.1)
            .unwrap_or(f64::NAN)
    }
}

fn source(alertname: &str, group: &str, extra: &[(&str, &str)]) -> Labels {
    let mut pairs = vec![
        ("__name__", METRIC),
        ("alertname", alertname),
        ("rulegroup", group),
    ];
    pairs.extend_from_slice(extra);
    Labels::from_pairs(pairs)
}

fn inputs() -> Vec<Input> {
    let mut v = vec![
        // Pending at 8, annotation change while pending at 21, firing at
        // 8+24, value change while firing at 53, resolved at 69 (resolved
        // notifications for 20 steps), pending again at 89 while the
        // resolved alert is still being sent, firing again, resolved at 134.
        Input {
            labels: source(&format!("{PFR}_SimpleAlert"), PFR, &[]),
            segments: vec![
                (0, 3.0),
                (8, 11.0),
                (21, 15.0),
                (53, 19.0),
                (69, 9.0),
                (89, 15.0),
                (134, 8.0),
            ],
        },
        // Zero `for` fires at once, the small `for` at the next evaluation;
        // resolved at 21 for 72 steps (18m: resolved notifications stop at
        // 15m), the zero-`for` alert fires again at 93, resolves at 106.
        Input {
            labels: source(&format!("{ZFSF}_ZeroFor"), ZFSF, &[]),
            segments: vec![(0, 3.0), (8, 15.0), (21, 9.0), (93, 11.0), (106, 9.0)],
        },
        Input {
            labels: source(&format!("{ZFSF}_SmallFor"), ZFSF, &[]),
            segments: vec![(0, 3.0), (8, 15.0), (21, 9.0), (93, 11.0), (106, 9.0)],
        },
        // Rule1 variant one pending at 8, variant two at 32 while one fires;
        // Rule2 fires on both variants' ALERTS in the same evaluation.
        Input {
            labels: source(&format!("{NAOC}_Rule1"), NAOC, &[("variant", "one")]),
            segments: vec![(0, 1.0), (8, 11.0), (73, 9.0)],
        },
        Input {
            labels: source(&format!("{NAOC}_Rule1"), NAOC, &[("variant", "two")]),
            segments: vec![(0, 1.0), (32, 11.0), (65, 9.0)],
        },
        // Pending for 10 steps (< for): never fires, never sent.
        Input {
            labels: source(&format!("{PRAI}_PendingAlert"), PRAI, &[]),
            segments: vec![(0, 3.0), (8, 11.0), (18, 5.0)],
        },
        Input {
            labels: source(&format!("{PRAI}_InactiveAlert"), PRAI, &[]),
            segments: vec![(0, 50.0)],
        },
    ];
    // Series the `query` template function reads.
    for i in 1..=3 {
        v.push(Input {
            labels: Labels::from_pairs([
                ("__name__", METRIC.to_string()),
                ("rulegroup", ZFSF.to_string()),
                ("for", "template".to_string()),
                ("id", format!("{}", 100 + i)),
                ("__value__", format!("val{i}")),
            ]),
            segments: vec![(0, i as f64), (28, 2.0 * i as f64)],
        });
    }
    v
}

/// The data runs for this many steps.
const STEPS: i64 = 240;

fn write_inputs(h: &Harness, t: Timing, inputs: &[Input]) {
    let batch = WriteBatch {
        series: inputs
            .iter()
            .map(|i| SeriesWrite {
                labels: i.labels.clone(),
                samples: (0..STEPS)
                    .map(|s| Sample::new(ZERO + s * t.step(), i.value_at_step(s)))
                    .collect(),
                exemplars: vec![],
            })
            .collect(),
        metadata: vec![],
    };
    h.metrics.append(&Tenant::anonymous(), batch).unwrap();
}

/// Everything observed during a run.
struct Run {
    t: Timing,
    /// Evaluation times per group.
    evals: HashMap<String, Vec<i64>>,
    /// Alerts received, each with the evaluation time that sent it.
    sent: Vec<Received>,
}

impl Run {
    /// The first evaluation of `group` at or after `at`.
    fn eval_at_or_after(&self, group: &str, at: i64) -> i64 {
        *self.evals[group]
            .iter()
            .find(|e| **e >= at)
            .unwrap_or_else(|| panic!("{group} was not evaluated at or after {at}"))
    }

    fn step_time(&self, step: i64) -> i64 {
        ZERO + step * self.t.step()
    }

    /// Sends received for the alert with these labels, in order.
    fn sent_for(&self, labels: &BTreeMap<String, String>) -> Vec<&Received> {
        self.sent
            .iter()
            .filter(|r| &label_map(&r.alert["labels"]) == labels)
            .collect()
    }
}

fn label_map(v: &serde_json::Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// One activity period of an alert: it fired at `fired` (an evaluation
/// time) and resolved at `resolved`; `next_active` is when an alert with
/// the same labels became active again (ending resolved notifications).
struct Episode {
    fired: i64,
    resolved: i64,
    next_active: Option<i64>,
}

/// The notifications the spec (with Prometheus's strict resend comparison)
/// requires for `episodes`, as `(evaluation time, resolved)`.
fn expected_sends(run: &Run, group: &str, episodes: &[Episode]) -> Vec<(i64, bool)> {
    let mut out = Vec::new();
    for ep in episodes {
        let mut last: Option<i64> = None;
        for &e in run.evals[group].iter().filter(|e| **e >= ep.fired) {
            if ep.next_active.is_some_and(|n| e >= n) {
                break;
            }
            let due = last.is_none_or(|l| l + run.t.resend < e);
            if e < ep.resolved {
                if due {
                    out.push((e, false));
                    last = Some(e);
                }
            } else if e == ep.resolved || (e - ep.resolved <= RESOLVED_RETENTION && due) {
                out.push((e, true));
                last = Some(e);
            }
        }
    }
    out
}

/// Checks every notification of one alert: when, and its payload.
fn check_alert(
    run: &Run,
    group: &str,
    labels: &BTreeMap<String, String>,
    expr: &str,
    episodes: &[Episode],
    annotations: &dyn Fn(i64) -> BTreeMap<String, String>,
) {
    let got = run.sent_for(labels);
    let want = expected_sends(run, group, episodes);
    let got_times: Vec<(i64, bool)> = got.iter().map(|r| (r.at, r.resolved())).collect();
    let rel = |v: &[(i64, bool)]| -> Vec<String> {
        v.iter()
            .map(|(t, r)| format!("{}s{}", (t - ZERO) / 1000, if *r { "R" } else { "" }))
            .collect()
    };
    assert_eq!(
        rel(&got_times),
        rel(&want),
        "notification times of {labels:?} (seconds after zero; R = resolved)"
    );
    let end_delta = 4 * run.t.resend.max(run.t.interval);
    for r in got {
        let ep = episodes
            .iter()
            .rev()
            .find(|e| e.fired <= r.at)
            .expect("episode");
        assert_eq!(
            r.starts_at(),
            ep.fired,
            "startsAt is FiredAt: {:?}",
            r.alert
        );
        if r.at >= ep.resolved {
            assert_eq!(
                r.ends_at(),
                ep.resolved,
                "endsAt is ResolvedAt: {:?}",
                r.alert
            );
        } else {
            assert_eq!(
                r.ends_at(),
                r.at + end_delta,
                "endsAt of a firing alert: {:?}",
                r.alert
            );
        }
        // Annotations as of the last evaluation that saw the alert active.
        let seen = if r.at >= ep.resolved {
            run.evals[group]
                .iter()
                .rev()
                .find(|e| **e < ep.resolved)
                .copied()
                .unwrap()
        } else {
            r.at
        };
        assert_eq!(
            label_map(&r.alert["annotations"]),
            annotations(seen),
            "annotations at {}s",
            (r.at - ZERO) / 1000
        );
        let url = r.alert["generatorURL"].as_str().unwrap();
        let query = url
            .strip_prefix(&format!("{EXTERNAL_URL}/graph?"))
            .unwrap_or_else(|| panic!("generatorURL {url}"));
        let params: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
        assert!(
            params.contains(&("g0.expr".to_string(), expr.to_string())),
            "generatorURL {url} links to {expr}"
        );
    }
}

/// The rule's expression from the file.
fn expr_of(rules: &strata::rules::file::RuleFile, alert: &str) -> String {
    rules
        .groups
        .iter()
        .flat_map(|g| &g.rules)
        .find(|r| r.name() == alert)
        .map(|r| r.expr.clone())
        .unwrap()
}

fn api_rule<'a>(groups: &'a serde_json::Value, group: &str, rule: &str) -> &'a serde_json::Value {
    let g = groups
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == group)
        .unwrap_or_else(|| panic!("group {group} in {groups}"));
    g["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == rule)
        .unwrap_or_else(|| panic!("rule {rule} in {g}"))
}

/// `ALERTS` series of an alert name at `t`, as label maps with their value.
fn alerts_series(h: &Harness, alertname: &str, t: i64) -> Vec<(BTreeMap<String, String>, f64)> {
    let out = h
        .promql
        .instant(
            &Tenant::anonymous(),
            &format!("ALERTS{{alertname=\"{alertname}\"}}"),
            t,
            &QueryParams::default(),
        )
        .unwrap();
    let PromValue::Vector(v) = out.value else {
        panic!("not a vector")
    };
    v.into_iter()
        .map(|s| {
            (
                s.labels
                    .iter()
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .collect(),
                s.v,
            )
        })
        .collect()
}

/// Checks the API and `ALERTS` at a step of the data (the state after the
/// last evaluation at or before it).
type Checkpoint = (i64, Box<dyn Fn(&Harness, &Run, i64)>);

/// The `for` of an alerting rule, ms.
fn for_ms(file: &strata::rules::file::RuleFile, alert: &str) -> i64 {
    file.groups
        .iter()
        .flat_map(|g| &g.rules)
        .find_map(|r| match &r.kind {
            RuleKind::Alert { name, for_ms, .. } if name == alert => Some(*for_ms),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no alert {alert}"))
}

fn run_scenario(t: Timing) {
    let Some(path) = shared_rules() else { return };
    let text = std::fs::read_to_string(&path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rules_path = dir.path().join("rules.yaml");
    std::fs::write(&rules_path, scaled_rules(&text, t)).unwrap();
    let file = load_rule_file(&rules_path, Lang::PromQL, false).unwrap();
    let cfg = RulesConfig {
        files: vec!["rules.yaml".into()],
        resend_delay: DurationMs(t.resend),
        external_url: EXTERNAL_URL.into(),
        ..RulesConfig::default()
    };
    let h = Harness::start(cfg, dir.path());
    write_inputs(&h, t, &inputs());

    let mut run = Run {
        t,
        evals: HashMap::new(),
        sent: Vec::new(),
    };
    let checkpoints = checkpoints(&file);
    let mut next_check = 0;
    let tick = (t.interval / 10).max(1);
    let end = ZERO + STEPS * t.step() + RESOLVED_RETENTION + 2 * t.interval;
    let mut now = ZERO;
    while now < end {
        h.tick(now);
        let mut evaluated_now = Vec::new();
        for g in h.manager.groups() {
            let g = g.lock();
            if let Some(e) = g.last_evaluation {
                let list = run.evals.entry(g.spec.name.clone()).or_default();
                if list.last() != Some(&e) {
                    // The first run takes the latest slot at or before the
                    // start; later ones happen at their slot.
                    assert!(
                        list.is_empty() || (e <= now && e > now - tick),
                        "evaluated at its slot"
                    );
                    list.push(e);
                    evaluated_now.push(g.spec.name.clone());
                }
            }
        }
        for mut r in h.take_received() {
            let group = r.label("rulegroup").to_string();
            assert!(
                evaluated_now.contains(&group),
                "alerts are sent only right after an evaluation of their group: {:?}",
                r.alert
            );
            r.at = *run.evals[&group].last().unwrap();
            run.sent.push(r);
        }
        while next_check < checkpoints.len() && ZERO + checkpoints[next_check].0 * t.step() <= now {
            (checkpoints[next_check].1)(&h, &run, now);
            next_check += 1;
        }
        now += tick;
    }
    assert_eq!(next_check, checkpoints.len(), "every checkpoint ran");
    let evals: usize = run.evals.values().map(Vec::len).sum();
    eprintln!(
        "alert_generator {t:?}: {evals} group evaluations, {} notifications received",
        run.sent.len()
    );
    check_notifications(&run, &file);
}

/// Scales a step count of the data to ms after zero, given the run's timing
/// (checkpoints are built before the run; they get the timing from `run`).
fn at_step(run: &Run, step: i64) -> i64 {
    run.step_time(step)
}

fn check_notifications(run: &Run, file: &strata::rules::file::RuleFile) {
    let inputs = inputs();
    let value_at = |i: usize, t: i64| inputs[i].value_at_step((t - ZERO) / run.t.step());
    let eval = |g: &str, step: i64| run.eval_at_or_after(g, at_step(run, step));
    let for_of = |alert: &str| for_ms(file, alert);

    // PendingAndFiringAndResolved.
    let a1 = eval(PFR, 8);
    let a2 = eval(PFR, 89);
    let name = format!("{PFR}_SimpleAlert");
    let episodes = [
        Episode {
            fired: run.eval_at_or_after(PFR, a1 + for_of(&name)),
            resolved: eval(PFR, 69),
            next_active: Some(a2),
        },
        Episode {
            fired: run.eval_at_or_after(PFR, a2 + for_of(&name)),
            resolved: eval(PFR, 134),
            next_active: None,
        },
    ];
    check_alert(
        run,
        PFR,
        &map(&[("alertname", &name), ("foo", "bar"), ("rulegroup", PFR)]),
        &expr_of(file, &name),
        &episodes,
        &|t| {
            let v = value_at(0, t);
            map(&[
                ("description", "SimpleAlert is firing"),
                ("summary", &format!("The value is {v} {v}")),
            ])
        },
    );

    // ZeroFor_SmallFor.
    let zf = format!("{ZFSF}_ZeroFor");
    let sf = format!("{ZFSF}_SmallFor");
    let zf1 = eval(ZFSF, 8);
    let zf2 = eval(ZFSF, 93);
    let zf_annotations = |t: i64| {
        let k = if (t - ZERO) / run.t.step() >= 28 {
            2
        } else {
            1
        };
        map(&[
            ("description", "This should immediately fire"),
            (
                "template_query_test",
                &format!(
                    "Args are: foo bar 99. first_id:101,101:{},102:{},103:{},",
                    k,
                    2 * k,
                    3 * k
                ),
            ),
            (
                "template_test",
                "1.049M 1Mi 2m 15s 95.9% 2022-01-25 12:36:43 +0000 UTC",
            ),
        ])
    };
    check_alert(
        run,
        ZFSF,
        &map(&[("alertname", &zf), ("foo", "bar"), ("rulegroup", ZFSF)]),
        &expr_of(file, &zf),
        &[
            Episode {
                fired: zf1,
                resolved: eval(ZFSF, 21),
                next_active: Some(zf2),
            },
            Episode {
                fired: zf2,
                resolved: eval(ZFSF, 106),
                next_active: None,
            },
        ],
        &zf_annotations,
    );
    if run.t.step() == 15_000 {
        assert!(
            zf2 - eval(ZFSF, 21) > RESOLVED_RETENTION,
            "the data leaves a gap longer than the resolved retention"
        );
    }
    let sf_fired = run.eval_at_or_after(ZFSF, zf1 + for_of(&sf));
    assert!(for_of(&sf) < run.t.interval);
    assert_eq!(
        sf_fired,
        zf1 + run.t.interval,
        "a `for` shorter than the interval fires at the next evaluation"
    );
    check_alert(
        run,
        ZFSF,
        &map(&[("alertname", &sf), ("ba_dum", "tss"), ("rulegroup", ZFSF)]),
        &expr_of(file, &sf),
        &[Episode {
            fired: sf_fired,
            resolved: eval(ZFSF, 21),
            next_active: None,
        }],
        &|_| {
            map(&[
                ("description", "This should fire after an interval"),
                (
                    "template_test",
                    "This Part IS TESTING the strings. ::1 127.0.0.1. 7815. replaced text. .",
                ),
            ])
        },
    );

    // NewAlerts_OrderCheck.
    let r1 = format!("{NAOC}_Rule1");
    let r2 = format!("{NAOC}_Rule2");
    let v1_fired = run.eval_at_or_after(NAOC, eval(NAOC, 8) + for_of(&r1));
    let v2_fired = run.eval_at_or_after(NAOC, eval(NAOC, 32) + for_of(&r1));
    let r1_annotations = |_| map(&[("description", "This should produce more alerts later")]);
    for (variant, fired, resolved) in [
        ("one", v1_fired, eval(NAOC, 73)),
        ("two", v2_fired, eval(NAOC, 65)),
    ] {
        check_alert(
            run,
            NAOC,
            &map(&[
                ("alertname", &r1),
                ("foo", "bar"),
                ("rulegroup", NAOC),
                ("variant", variant),
            ]),
            &expr_of(file, &r1),
            &[Episode {
                fired,
                resolved,
                next_active: None,
            }],
            &r1_annotations,
        );
    }
    // Rule2 reads Rule1's ALERTS written earlier in the same evaluation:
    // it fires (zero `for`) in the evaluation where variant two fires, and
    // resolves in the one where variant two resolves (stale ALERTS).
    check_alert(
        run,
        NAOC,
        &map(&[
            ("alertname", &r2),
            ("alertstate", "firing"),
            ("ba_dum", "tss"),
            ("foo", "baz"),
            ("rulegroup", NAOC),
        ]),
        &expr_of(file, &r2),
        &[Episode {
            fired: v2_fired,
            resolved: eval(NAOC, 65),
            next_active: None,
        }],
        &|_| {
            map(&[(
                "description",
                &format!("Based on ALERTS. Old alertname was {r1}. foo was bar."),
            )])
        },
    );

    // PendingAndResolved_AlwaysInactive: pending alerts are never sent.
    assert!(
        run.sent.iter().all(|r| r.label("rulegroup") != PRAI),
        "pending-only and never-active alerts are not sent"
    );
    // Nothing else was sent.
    let known = [PFR, ZFSF, NAOC];
    assert!(run
        .sent
        .iter()
        .all(|r| known.contains(&r.label("rulegroup"))));
    // Resends respect the delay, and stay within the spec's period plus
    // the compliance tester's one-interval tolerance.
    let spec_period = (run.t.resend + run.t.interval - 1) / run.t.interval * run.t.interval;
    let mut by_alert: BTreeMap<String, Vec<&Received>> = BTreeMap::new();
    for r in &run.sent {
        by_alert
            .entry(format!("{:?}", label_map(&r.alert["labels"])))
            .or_default()
            .push(r);
    }
    for (k, rs) in by_alert {
        for w in rs.windows(2) {
            if w[0].resolved() == w[1].resolved() && w[0].starts_at() == w[1].starts_at() {
                let gap = w[1].at - w[0].at;
                assert!(
                    gap > run.t.resend && gap <= spec_period + run.t.interval,
                    "{k}: resend after {gap}ms (delay {}, interval {})",
                    run.t.resend,
                    run.t.interval
                );
            }
        }
    }
}

fn checkpoints(file: &strata::rules::file::RuleFile) -> Vec<Checkpoint> {
    let pfr_expr = expr_of(file, &format!("{PFR}_SimpleAlert"));
    let pfr_for = for_ms(file, &format!("{PFR}_SimpleAlert"));
    // Offsets are in steps of the data; converted with the run's timing.
    vec![
        (
            // PendingAndResolved_AlwaysInactive: pending, ALERTS pending.
            12,
            Box::new(move |h: &Harness, run: &Run, now: i64| {
                let (_, v) = h.get_json("/api/v1/rules", None);
                let r = api_rule(&v["data"]["groups"], PRAI, &format!("{PRAI}_PendingAlert"));
                assert_eq!(r["state"], "pending", "{r}");
                assert_eq!(r["alerts"][0]["state"], "pending");
                let r = api_rule(&v["data"]["groups"], PRAI, &format!("{PRAI}_InactiveAlert"));
                assert_eq!(r["state"], "inactive");
                assert_eq!(r["alerts"], serde_json::json!([]));
                let last = *run.evals[PRAI].last().unwrap();
                assert!(last <= now);
                let s = alerts_series(h, &format!("{PRAI}_PendingAlert"), last);
                assert_eq!(
                    s,
                    vec![(
                        map(&[
                            ("__name__", "ALERTS"),
                            ("alertname", &format!("{PRAI}_PendingAlert")),
                            ("alertstate", "pending"),
                            ("foo", "bar"),
                            ("rulegroup", PRAI),
                        ]),
                        1.0
                    )]
                );
            }),
        ),
        (
            // PendingAndFiringAndResolved pending with updated annotations.
            26,
            Box::new(move |h: &Harness, run: &Run, _now: i64| {
                let (st, v) = h.get_json("/api/v1/rules", None);
                assert_eq!(st, 200);
                assert_eq!(v["status"], "success");
                let g = v["data"]["groups"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|g| g["name"] == PFR)
                    .unwrap();
                assert_eq!(g["interval"], run.t.interval as f64 / 1000.0);
                let last = *run.evals[PFR].last().unwrap();
                assert_eq!(rfc3339_ms(&g["lastEvaluation"]), last);
                let r = &g["rules"][0];
                assert_eq!(r["type"], "alerting");
                assert_eq!(r["query"], pfr_expr.as_str());
                assert_eq!(r["duration"], pfr_for as f64 / 1000.0);
                assert_eq!(r["health"], "ok");
                assert!(r.get("lastError").is_none_or(|e| e == ""));
                assert_eq!(r["state"], "pending");
                assert_eq!(
                    r["annotations"]["summary"], "The value is {{$value}} {{.Value}}",
                    "the rule's own templates"
                );
                assert_eq!(rfc3339_ms(&r["lastEvaluation"]), last);
                let a = &r["alerts"][0];
                assert_eq!(a["state"], "pending");
                assert_eq!(
                    rfc3339_ms(&a["activeAt"]),
                    run.eval_at_or_after(PFR, at_step(run, 8))
                );
                assert_eq!(a["value"].as_str().unwrap().parse::<f64>().unwrap(), 15.0);
                assert_eq!(a["annotations"]["summary"], "The value is 15 15");
                // /api/v1/alerts is the union of the rules' alerts.
                let (_, al) = h.get_json("/api/v1/alerts", None);
                let all: Vec<&serde_json::Value> = v["data"]["groups"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|g| g["rules"].as_array().unwrap())
                    .flat_map(|r| r["alerts"].as_array().unwrap())
                    .collect();
                assert_eq!(al["data"]["alerts"].as_array().unwrap().len(), all.len());
                for a in all {
                    assert!(al["data"]["alerts"].as_array().unwrap().contains(a));
                }
            }),
        ),
        (
            // NewAlerts_OrderCheck: all three firing, ALERTS as the spec says.
            50,
            Box::new(move |h: &Harness, run: &Run, _now: i64| {
                let (_, v) = h.get_json("/api/v1/rules", None);
                let r1 = api_rule(&v["data"]["groups"], NAOC, &format!("{NAOC}_Rule1"));
                assert_eq!(r1["state"], "firing");
                assert_eq!(r1["alerts"].as_array().unwrap().len(), 2);
                let r2 = api_rule(&v["data"]["groups"], NAOC, &format!("{NAOC}_Rule2"));
                assert_eq!(r2["state"], "firing");
                assert_eq!(
                    r2["alerts"][0]["value"]
                        .as_str()
                        .unwrap()
                        .parse::<f64>()
                        .unwrap(),
                    2.0
                );
                let last = *run.evals[NAOC].last().unwrap();
                let s = alerts_series(h, &format!("{NAOC}_Rule2"), last);
                assert_eq!(
                    s,
                    vec![(
                        map(&[
                            ("__name__", "ALERTS"),
                            ("alertname", &format!("{NAOC}_Rule2")),
                            ("alertstate", "firing"),
                            ("ba_dum", "tss"),
                            ("foo", "baz"),
                            ("rulegroup", NAOC),
                        ]),
                        1.0
                    )],
                    "__name__ and alertstate override the alert's own alertstate"
                );
                let s = alerts_series(h, &format!("{NAOC}_Rule1"), last);
                assert_eq!(s.len(), 2);
                assert!(s.iter().all(|(l, _)| l["alertstate"] == "firing"));
            }),
        ),
        (
            // PendingAndFiringAndResolved resolved: no ALERTS, not listed.
            80,
            Box::new(move |h: &Harness, run: &Run, _now: i64| {
                let (_, v) = h.get_json("/api/v1/rules", None);
                let r = api_rule(&v["data"]["groups"], PFR, &format!("{PFR}_SimpleAlert"));
                assert_eq!(r["state"], "inactive");
                assert_eq!(r["alerts"], serde_json::json!([]));
                let last = *run.evals[PFR].last().unwrap();
                assert!(alerts_series(h, &format!("{PFR}_SimpleAlert"), last).is_empty());
            }),
        ),
    ]
}

#[test]
fn rules_file_loads_unchanged() {
    let Some(path) = shared_rules() else { return };
    let f = load_rule_file(&path, Lang::PromQL, false).unwrap();
    let names: Vec<&str> = f.groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, [NAOC, PFR, PRAI, ZFSF]);
    assert_eq!(f.groups.iter().map(|g| g.rules.len()).sum::<usize>(), 7);
    assert!(f.groups.iter().all(|g| g.interval_ms == Some(30_000)));
}

/// The spec's own timings (or those of ALERT_GEN_INTERVAL and
/// ALERT_GEN_RESEND_DELAY).
#[test]
fn spec_timings() {
    run_scenario(Timing::from_env());
}

/// Short intervals: a 1s group interval with everything scaled alike.
#[test]
fn short_timings() {
    run_scenario(Timing::new(1_000, 2_000));
}

/// A resend delay that is not a multiple of the interval.
#[test]
fn resend_delay_longer_than_interval() {
    run_scenario(Timing::new(30_000, 100_000));
}
