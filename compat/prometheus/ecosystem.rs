//! The stock dashboards and rules comparison: every PromQL panel target and
//! template-variable query of every stock Grafana dashboard under
//! `../shared/ecosystem/dashboards` that uses a Prometheus data source, and
//! every rule `expr` under `../shared/ecosystem/rules`, run against
//! Prometheus 2.42 and Strata on the same scraped data (see
//! [`crate::common::scrape`]). Grafana variables are expanded
//! (`$__rate_interval` to 1m, `$__interval` to the step, `$__range` to the
//! window, dashboard variables to the first value Prometheus's label API
//! gives, else `.*`). Answers must be the same series and values within
//! 1e-6 relative, or both errors. Mismatches listed in
//! `known_mismatches.txt` (with their reason) are reported but do not fail
//! the test; any other does.
//!
//! Env: `STRATA_COMPAT_ECOSYSTEM_WAIT_SECONDS` (default 100) sets how long
//! data is collected before querying.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::compare::compare;
use crate::common::scrape::{get_json, http, query_range, ScrapePair, Window};
use crate::grafana::{self, Builtins, Kind, VarQuery};

/// `$__rate_interval` is expanded to this (seconds); the window starts this
/// long (plus a second) after the first sample, so no `[$__rate_interval]`
/// range holds a series start.
const RATE_INTERVAL_SECS: f64 = 60.0;

/// The query phase stops after this long (what is left counts as failed).
const QUERY_BUDGET: Duration = Duration::from_secs(120);

/// The result of comparing one expression.
#[derive(Clone, Debug)]
enum Outcome {
    /// Same non-empty answer.
    Match,
    /// Both answered with no series.
    BothEmpty,
    /// Both refused the query.
    BothError,
    /// The answers differ.
    Mismatch(String),
}

type Client = reqwest::blocking::Client;

fn label_api(client: &Client, base: &str, q: &VarQuery, w: &Window) -> Result<Vec<String>, String> {
    let mut params = vec![("start", w.start.to_string()), ("end", w.end.to_string())];
    let (path, filter) = match q {
        VarQuery::LabelNames(sel) => {
            if let Some(s) = sel {
                params.push(("match[]", s.clone()));
            }
            ("/api/v1/labels".to_string(), None)
        }
        VarQuery::LabelValues(sel, label) => {
            if let Some(s) = sel {
                params.push(("match[]", s.clone()));
            }
            (format!("/api/v1/label/{label}/values"), None)
        }
        VarQuery::Metrics(re) => (
            "/api/v1/label/__name__/values".to_string(),
            Some(regex::Regex::new(re).map_err(|e| format!("bad metrics() regex: {e}"))?),
        ),
        VarQuery::QueryResult(_) => unreachable!("query_result runs as a query"),
    };
    let body = get_json(client, base, &path, &params)?;
    if body["status"] != "success" {
        return Err(format!(
            "{}: {}",
            body["errorType"].as_str().unwrap_or("?"),
            body["error"].as_str().unwrap_or("?")
        ));
    }
    let mut values: Vec<String> = body["data"]
        .as_array()
        .ok_or("data is not an array")?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .filter(|v| filter.as_ref().is_none_or(|re| re.is_match(v)))
        .collect();
    values.sort();
    values.dedup();
    Ok(values)
}

fn compare_ranges(
    client: &Client,
    pair: &ScrapePair,
    query: &str,
    start: f64,
    end: f64,
    step: f64,
) -> Outcome {
    let expected = query_range(client, &pair.prom_url, query, start, end, step);
    let got = query_range(client, &pair.strata_url, query, start, end, step);
    match (&expected, &got) {
        (Err(_), Err(_)) => Outcome::BothError,
        (Err(e), Ok(_)) => Outcome::Mismatch(format!("prometheus error only: {e}")),
        (Ok(_), Err(e)) => Outcome::Mismatch(format!("strata error only: {e}")),
        (Ok(exp), Ok(got)) => match compare(exp, got) {
            Ok(_) if exp.is_empty() => Outcome::BothEmpty,
            Ok(_) => Outcome::Match,
            Err(e) => Outcome::Mismatch(e),
        },
    }
}

/// Runs a variable query on both sides; returns the outcome and the value
/// the variable takes (the first value Prometheus lists, else `.*`).
fn variable(client: &Client, pair: &ScrapePair, q: &VarQuery, w: &Window) -> (Outcome, String) {
    if let VarQuery::QueryResult(expr) = q {
        let o = compare_ranges(client, pair, expr, w.end, w.end, w.step);
        return (o, ".*".into());
    }
    let expected = label_api(client, &pair.prom_url, q, w);
    let got = label_api(client, &pair.strata_url, q, w);
    let value = expected
        .as_ref()
        .ok()
        .and_then(|v| v.first().cloned())
        .unwrap_or_else(|| ".*".into());
    let outcome = match (&expected, &got) {
        (Err(_), Err(_)) => Outcome::BothError,
        (Err(e), Ok(_)) => Outcome::Mismatch(format!("prometheus error only: {e}")),
        (Ok(_), Err(e)) => Outcome::Mismatch(format!("strata error only: {e}")),
        (Ok(a), Ok(b)) if a == b && a.is_empty() => Outcome::BothEmpty,
        (Ok(a), Ok(b)) if a == b => Outcome::Match,
        (Ok(a), Ok(b)) => {
            let (a, b): (BTreeSet<&String>, BTreeSet<&String>) =
                (a.iter().collect(), b.iter().collect());
            Outcome::Mismatch(format!(
                "values differ: missing {:?}, extra {:?}",
                a.difference(&b).take(3).collect::<Vec<_>>(),
                b.difference(&a).take(3).collect::<Vec<_>>()
            ))
        }
    };
    (outcome, value)
}

/// The value a non-query variable takes.
fn static_value(var_type: &str, query: &str) -> String {
    let first = query.split(',').next().unwrap_or("").trim().to_string();
    match var_type {
        "custom" | "interval" if !first.is_empty() => first,
        "constant" | "textbox" if !query.trim().is_empty() => query.trim().to_string(),
        _ => ".*".into(),
    }
}

/// `id -> reason` from the checked-in list.
fn known_mismatches() -> BTreeMap<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("compat/prometheus/known_mismatches.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once('\t') {
            Some((id, reason)) => (id.trim().to_string(), reason.trim().to_string()),
            None => (l.trim().to_string(), String::new()),
        })
        .collect()
}

#[test]
fn stock_dashboards_and_rules_answer_like_prometheus_2_42() {
    let Some(shared) = grafana::shared_dir() else {
        // The shared suites are not part of the repository: where they are
        // absent this test says so and skips, even when peers are required.
        eprintln!(
            "SKIPPED compat_prometheus ecosystem: no ../shared/ecosystem (set STRATA_SHARED)"
        );
        return;
    };
    let ex = grafana::extract(&shared.join("ecosystem"));
    assert!(
        ex.exprs.iter().any(|e| e.kind == Kind::Panel)
            && ex.exprs.iter().any(|e| e.kind == Kind::Rule),
        "no panels or rules extracted from {}",
        shared.display()
    );
    let Some(mut pair) = ScrapePair::start(
        "compat_prometheus ecosystem",
        Path::new(env!("CARGO_BIN_EXE_strata")),
    ) else {
        return;
    };
    let wait_secs: f64 = std::env::var("STRATA_COMPAT_ECOSYSTEM_WAIT_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100.0);
    let w = pair.window(wait_secs, RATE_INTERVAL_SECS);
    let builtins = Builtins {
        start: w.start,
        end: w.end,
        step: w.step,
        rate_interval: RATE_INTERVAL_SECS,
    };
    let client = http();
    let known = known_mismatches();

    // kind -> outcome name -> count
    let mut counts: BTreeMap<Kind, BTreeMap<&str, usize>> = BTreeMap::new();
    let mut skipped = ex.skipped.clone();
    let mut mismatches: Vec<(String, String, String)> = Vec::new(); // id, expr, why
    let mut cache: HashMap<String, Outcome> = HashMap::new();
    let mut vars: HashMap<String, HashMap<String, String>> = HashMap::new();
    let deadline = Instant::now() + QUERY_BUDGET;
    let mut not_run = 0;
    for e in &ex.exprs {
        let dash_vars = vars
            .entry(e.dashboard.clone().unwrap_or_default())
            .or_default();
        let expanded = grafana::expand(&e.text, dash_vars, &builtins);
        let outcome = match (&e.var, e.kind) {
            (Some(v), _) if !v.prometheus => {
                let value = static_value(&v.var_type, &expanded);
                dash_vars.insert(v.name.clone(), value);
                *skipped
                    .entry(format!("{} variable (no Prometheus query)", v.var_type))
                    .or_default() += 1;
                continue;
            }
            (Some(v), _) => match grafana::parse_var_query(&expanded) {
                Err(why) => {
                    dash_vars.insert(v.name.clone(), ".*".into());
                    *skipped.entry(why).or_default() += 1;
                    continue;
                }
                Ok(q) => {
                    if Instant::now() > deadline {
                        not_run += 1;
                        continue;
                    }
                    let (o, value) = variable(&client, &pair, &q, &w);
                    dash_vars.insert(v.name.clone(), value);
                    o
                }
            },
            _ => {
                if Instant::now() > deadline {
                    not_run += 1;
                    continue;
                }
                cache
                    .entry(expanded.clone())
                    .or_insert_with(|| {
                        compare_ranges(&client, &pair, &expanded, w.start, w.end, w.step)
                    })
                    .clone()
            }
        };
        let name = match &outcome {
            Outcome::Match => "match",
            Outcome::BothEmpty => "both empty",
            Outcome::BothError => "both error",
            Outcome::Mismatch(why) => {
                mismatches.push((e.id.clone(), expanded.clone(), why.clone()));
                "mismatch"
            }
        };
        *counts.entry(e.kind).or_default().entry(name).or_default() += 1;
    }
    pair.assert_running();

    let mut report = String::new();
    let _ = writeln!(
        report,
        "compat/prometheus ecosystem: Prometheus 2.42 vs {}, query_range start={} end={} step={}s ({} s window); {} dashboards with PromQL, {} rule files",
        pair.sut_description(),
        w.start,
        w.end,
        w.step,
        w.end - w.start,
        ex.dashboards,
        ex.rule_files
    );
    let _ = writeln!(
        report,
        "{:<9} {:>6} {:>6} {:>10} {:>10} {:>9}",
        "kind", "total", "match", "both empty", "both error", "mismatch"
    );
    let (mut total, mut agreed) = (0, 0);
    for (kind, c) in &counts {
        let get = |k: &str| c.get(k).copied().unwrap_or(0);
        let t: usize = c.values().sum();
        total += t;
        agreed += t - get("mismatch");
        let _ = writeln!(
            report,
            "{:<9} {:>6} {:>6} {:>10} {:>10} {:>9}",
            kind.name(),
            t,
            get("match"),
            get("both empty"),
            get("both error"),
            get("mismatch")
        );
    }
    let _ = writeln!(
        report,
        "{agreed} of {total} expressions agree ({:.1}%); {} mismatches ({} listed as known); {not_run} not run (time budget)",
        100.0 * agreed as f64 / total.max(1) as f64,
        mismatches.len(),
        mismatches.iter().filter(|m| known.contains_key(&m.0)).count()
    );
    let _ = writeln!(report, "not compared:");
    for (why, n) in &skipped {
        let _ = writeln!(report, "  {n:>5}  {why}");
    }
    let mut new = Vec::new();
    if !mismatches.is_empty() {
        let _ = writeln!(report, "mismatches:");
    }
    for (id, expr, why) in &mismatches {
        let status = match known.get(id) {
            Some(reason) => format!("known ({reason})"),
            None => {
                new.push(id.clone());
                "NEW".to_string()
            }
        };
        let one_line: String = expr.split_whitespace().collect::<Vec<_>>().join(" ");
        let _ = writeln!(
            report,
            "  [{status}] {id}\n      {}\n      {why}",
            one_line.chars().take(300).collect::<String>()
        );
    }
    let mismatched: BTreeSet<&String> = mismatches.iter().map(|m| &m.0).collect();
    let fixed: Vec<&String> = known.keys().filter(|k| !mismatched.contains(k)).collect();
    if !fixed.is_empty() {
        let _ = writeln!(
            report,
            "{} known mismatches agreed this run (remove them from known_mismatches.txt if they stay fixed):",
            fixed.len()
        );
        for id in fixed {
            let _ = writeln!(report, "  {id}");
        }
    }
    println!("{report}");
    let _ = std::fs::write(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("compat_prometheus_ecosystem.txt"),
        &report,
    );
    assert!(
        not_run == 0,
        "{not_run} expressions not run within {QUERY_BUDGET:?}"
    );
    assert!(
        new.is_empty(),
        "{} mismatches not in compat/prometheus/known_mismatches.txt:\n{}",
        new.len(),
        new.join("\n")
    );
}
