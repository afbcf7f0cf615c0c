//! `strata test rules`: promtool's rule unit-test files (`input_series`,
//! `alert_rule_test`, `promql_expr_test`), evaluated the way
//! `promtool test rules` does, with its exit codes (0 all passed, 1 not).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::file::{expand_globs, load_rule_file, Lang};
use super::group::{AlertState, EvalContext, Group};
use super::PromqlQuerier;
use crate::model::{
    assign_tsdb_hints, expand_test_histogram, parse_duration, split_test_values,
    test_histogram_equal, FloatHistogram, HistogramSample, Labels, Sample, Tenant, STALE_NAN_BITS,
};
use crate::query::promql::{Engine, EngineOptions, QueryParams, Value as PromValue};
use crate::storage::mem::MemMetrics;
use crate::storage::{MetricsWriter, SeriesWrite, WriteBatch};

/// Options of a run.
#[derive(Debug, Clone, Default)]
pub struct TestOptions {
    /// Only groups whose name matches one of these regexes.
    pub run: Vec<String>,
    /// Accept unknown fields in rule files.
    pub ignore_unknown_fields: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    rule_files: Vec<String>,
    evaluation_interval: Option<YamlDuration>,
    #[serde(default)]
    group_eval_order: Vec<String>,
    #[serde(default)]
    fuzzy_compare: bool,
    #[serde(default)]
    tests: Vec<TestGroup>,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum YamlDuration {
    Str(String),
    Int(i64),
}

impl YamlDuration {
    fn ms(&self) -> Result<i64, String> {
        match self {
            YamlDuration::Str(s) => parse_duration(s).map_err(|e| e.to_string()),
            YamlDuration::Int(0) => Ok(0),
            YamlDuration::Int(i) => Err(format!("not a valid duration string: \"{i}\"")),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StartTime {
    Secs(f64),
    Str(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestGroup {
    #[serde(default)]
    name: String,
    interval: Option<YamlDuration>,
    #[serde(default)]
    input_series: Vec<InputSeries>,
    start_timestamp: Option<StartTime>,
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
    #[serde(default)]
    external_url: String,
    #[serde(default)]
    alert_rule_test: Vec<AlertTest>,
    #[serde(default)]
    promql_expr_test: Vec<ExprTest>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSeries {
    series: String,
    /// Read as the scalar's text (`0x10` is not hex here).
    #[serde(default)]
    values: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertTest {
    eval_time: YamlDuration,
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<ExpAlert>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpAlert {
    #[serde(default)]
    exp_labels: BTreeMap<String, String>,
    #[serde(default)]
    exp_annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExprTest {
    expr: String,
    eval_time: YamlDuration,
    #[serde(default)]
    exp_samples: Vec<ExpSample>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpSample {
    #[serde(default)]
    labels: String,
    #[serde(default)]
    value: Option<f64>,
    histogram: Option<String>,
}

/// Parses a series descriptor such as `up{job="x"}` into labels.
pub fn parse_series_descriptor(s: &str) -> Result<Labels, String> {
    use promql_parser::label::MatchOp;
    use promql_parser::parser::Expr;
    if s.trim().is_empty() {
        return Ok(Labels::empty());
    }
    match promql_parser::parser::parse(s)? {
        Expr::VectorSelector(vs) => {
            let mut pairs: Vec<(String, String)> = Vec::new();
            if let Some(n) = vs.name {
                pairs.push(("__name__".into(), n));
            }
            for m in vs.matchers.matchers {
                if m.op != MatchOp::Equal {
                    return Err(format!("invalid series descriptor {s:?}: only = matchers"));
                }
                pairs.push((m.name, m.value));
            }
            Ok(Labels::from_pairs(pairs))
        }
        _ => Err(format!("invalid series descriptor {s:?}")),
    }
}

/// One input value: a float or a native histogram.
#[derive(Clone, Debug, PartialEq)]
pub enum TestValue {
    /// A float sample.
    Float(f64),
    /// A native histogram sample.
    Histogram(FloatHistogram),
}

/// Expands promqltest's value notation (`1+2x3 _ stale 5x2 _x3`, and
/// histograms `{{..}}`, `{{a}}xN`, `{{a}}+{{b}}xN`) into values (None = no
/// sample at that step).
pub fn expand_values(s: &str) -> Result<Vec<Option<TestValue>>, String> {
    let mut out = Vec::new();
    for tok in split_test_values(s) {
        if tok.starts_with("{{") {
            out.extend(
                expand_test_histogram(tok)?
                    .into_iter()
                    .map(|(h, _)| Some(TestValue::Histogram(h))),
            );
            continue;
        }
        if tok == "_" {
            out.push(None);
            continue;
        }
        if tok == "stale" {
            out.push(Some(TestValue::Float(f64::from_bits(STALE_NAN_BITS))));
            continue;
        }
        let num = |x: &str| -> Result<f64, String> {
            crate::template::parse_go_float(x).map_err(|_| format!("invalid value {x:?} in {s:?}"))
        };
        if let Some((head, n)) = tok.rsplit_once('x') {
            let n: usize = n
                .parse()
                .map_err(|_| format!("invalid repetition in {tok:?}"))?;
            if head == "_" {
                out.extend(std::iter::repeat_n(None, n));
                continue;
            }
            // `a+b`, `a-b` or `a` (a may itself be signed or an exponent).
            let split = head
                .char_indices()
                .skip(1)
                .find(|&(i, c)| {
                    (c == '+' || c == '-') && !matches!(head.as_bytes()[i - 1], b'e' | b'E')
                })
                .map(|(i, _)| i);
            let (start, step) = match split {
                Some(i) => (num(&head[..i])?, num(&head[i..])?),
                None => (num(head)?, 0.0),
            };
            for k in 0..=n {
                out.push(Some(TestValue::Float(start + step * k as f64)));
            }
            continue;
        }
        out.push(Some(TestValue::Float(num(tok)?)));
    }
    Ok(out)
}

fn fmt_duration(ms: i64) -> String {
    crate::model::format_duration(ms)
}

/// Result of one file: messages printed and whether it passed.
pub struct FileResult {
    /// What to print (promtool's format).
    pub output: String,
    /// True when every selected group passed.
    pub passed: bool,
}

/// Runs one unit-test file.
pub fn run_file(path: &Path, opts: &TestOptions) -> FileResult {
    let mut output = format!("Unit Testing:  {}\n", path.display());
    match run_file_inner(path, opts) {
        Ok(errs) if errs.is_empty() => {
            output.push_str("  SUCCESS\n");
            FileResult {
                output,
                passed: true,
            }
        }
        Ok(errs) => {
            output.push_str("  FAILED:\n");
            for e in errs {
                output.push_str(&e);
                output.push('\n');
            }
            FileResult {
                output,
                passed: false,
            }
        }
        Err(e) => {
            output.push_str(&format!("  FAILED:\n{e}\n"));
            FileResult {
                output,
                passed: false,
            }
        }
    }
}

fn run_file_inner(path: &Path, opts: &TestOptions) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let tf: TestFile = serde_yaml::from_str(&text).map_err(|e| e.to_string())?;
    let base = path.parent().unwrap_or(Path::new("."));
    let eval_interval = tf
        .evaluation_interval
        .as_ref()
        .map(|d| d.ms())
        .transpose()?
        .unwrap_or(60_000);
    let mut seen = std::collections::HashSet::new();
    for g in &tf.group_eval_order {
        if !seen.insert(g) {
            return Err(format!("group name repeated in evaluation order: {g}"));
        }
    }
    let files: Vec<PathBuf> = expand_globs(&tf.rule_files, base);
    let mut specs = Vec::new();
    for f in &files {
        let rf = load_rule_file(f, Lang::PromQL, opts.ignore_unknown_fields)
            .map_err(|errs| format!("    {}", errs.join("\n    ")))?;
        for g in rf.groups {
            specs.push((f.display().to_string(), g));
        }
    }
    let run_res: Vec<regex::Regex> = opts
        .run
        .iter()
        .map(|r| regex::Regex::new(r).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let mut errs = Vec::new();
    for tg in &tf.tests {
        if !run_res.is_empty() && !run_res.iter().any(|r| r.is_match(&tg.name)) {
            continue;
        }
        if let Err(e) = run_group(tg, &specs, eval_interval, &tf, &mut errs) {
            errs.push(e);
        }
    }
    Ok(errs)
}

fn float_eq(a: f64, b: f64, fuzzy: bool) -> bool {
    if a == b {
        return true;
    }
    if !fuzzy || a.is_nan() || b.is_nan() {
        return false;
    }
    let (x, y) = (a.to_bits() as i64, b.to_bits() as i64);
    (a.is_sign_negative() == b.is_sign_negative()) && (x - y).abs() <= 1
}

fn run_group(
    tg: &TestGroup,
    specs: &[(String, super::file::GroupSpec)],
    eval_interval: i64,
    tf: &TestFile,
    errs: &mut Vec<String>,
) -> Result<(), String> {
    let interval = tg
        .interval
        .as_ref()
        .map(|d| d.ms())
        .transpose()?
        .unwrap_or(eval_interval);
    let start = match &tg.start_timestamp {
        None => 0,
        Some(StartTime::Secs(s)) => (s * 1000.0) as i64,
        Some(StartTime::Str(s)) => match s.parse::<f64>() {
            Ok(v) => (v * 1000.0) as i64,
            Err(_) => chrono::DateTime::parse_from_rfc3339(s)
                .map_err(|e| format!("invalid start_timestamp {s:?}: {e}"))?
                .timestamp_millis(),
        },
    };
    let prefix = if tg.name.is_empty() {
        String::new()
    } else {
        format!("    name: {},\n", tg.name)
    };
    // Input series, loaded lazily up to each evaluation time.
    let mut input: Vec<(Labels, Vec<Sample>)> = Vec::new();
    let mut input_hists: Vec<Vec<HistogramSample>> = Vec::new();
    for s in &tg.input_series {
        let labels = parse_series_descriptor(&s.series).map_err(|e| format!("{prefix}    {e}"))?;
        let vals = expand_values(&s.values).map_err(|e| format!("{prefix}    {e}"))?;
        let (mut samples, mut hists, mut run_start) = (Vec::new(), Vec::new(), 0);
        for (i, v) in vals.into_iter().enumerate() {
            let t = start + i as i64 * interval;
            match v {
                None => {}
                Some(TestValue::Float(v)) => {
                    // A float cuts the histogram chunk, as in Prometheus's TSDB.
                    assign_tsdb_hints(&mut hists[run_start..]);
                    run_start = hists.len();
                    samples.push(Sample::new(t, v));
                }
                Some(TestValue::Histogram(h)) => hists.push(HistogramSample { t, h: Arc::new(h) }),
            }
        }
        assign_tsdb_hints(&mut hists[run_start..]);
        input.push((labels, samples));
        input_hists.push(hists);
    }
    let mut loaded_hists: Vec<usize> = vec![0; input_hists.len()];
    let store = Arc::new(MemMetrics::new());
    let engine = Engine::new(
        store.clone(),
        EngineOptions {
            lookback_delta_ms: 5 * 60_000,
            max_samples: 50_000_000,
            timeout: std::time::Duration::from_secs(120),
            enable_experimental_functions: false,
        },
    );
    let tenant = Tenant::anonymous();
    let external_labels = Labels::from_pairs(tg.external_labels.clone());
    let mut groups: Vec<Group> = specs
        .iter()
        .map(|(f, g)| Group::new(g.clone(), f, interval, true))
        .collect();
    let order = |g: &Group| {
        tf.group_eval_order
            .iter()
            .position(|n| *n == g.spec.name)
            .unwrap_or(usize::MAX)
    };
    groups.sort_by_key(order);
    let mut alert_times: Vec<i64> = tg
        .alert_rule_test
        .iter()
        .map(|a| a.eval_time.ms())
        .collect::<Result<_, _>>()?;
    alert_times.sort();
    alert_times.dedup();
    let expr_max = tg
        .promql_expr_test
        .iter()
        .map(|e| e.eval_time.ms())
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .max()
        .unwrap_or(0);
    let max_t = alert_times.last().copied().unwrap_or(0).max(expr_max);
    let querier = PromqlQuerier(&engine);
    let ctx = EvalContext {
        querier: &querier,
        writer: store.as_ref(),
        reader: store.as_ref(),
        tenant: &tenant,
        external_labels: &external_labels,
        external_url: &tg.external_url,
    };
    let mut loaded: Vec<usize> = vec![0; input.len()];
    let mut next_alert = 0;
    let mut ts = start;
    let mut group_failed = false;
    while ts <= start + max_t {
        let mut batch = WriteBatch::default();
        for (i, (l, samples)) in input.iter().enumerate() {
            let upto = samples[loaded[i]..].partition_point(|s| s.t <= ts) + loaded[i];
            if upto > loaded[i] {
                batch.series.push(SeriesWrite {
                    labels: l.clone(),
                    samples: samples[loaded[i]..upto].to_vec(),
                    exemplars: vec![],
                });
                loaded[i] = upto;
            }
        }
        for (i, hists) in input_hists.iter().enumerate() {
            let upto = hists[loaded_hists[i]..].partition_point(|h| h.t <= ts) + loaded_hists[i];
            if upto > loaded_hists[i] {
                store.append_histograms(
                    &tenant,
                    &input[i].0,
                    hists[loaded_hists[i]..upto].to_vec(),
                );
                loaded_hists[i] = upto;
            }
        }
        if !batch.series.is_empty() {
            store
                .append(&tenant, batch)
                .map_err(|e| format!("{prefix}    loading input: {e}"))?;
        }
        for g in &mut groups {
            let (_, err) = g.eval(ts, &ctx, 60_000);
            if err.is_some() {
                for r in &g.rules {
                    if let Some(e) = &r.health.last_error {
                        errs.push(format!(
                            "{prefix}    rule: {}, time: {}, err: {e}",
                            r.spec.name(),
                            fmt_duration(ts)
                        ));
                        group_failed = true;
                    }
                }
            }
        }
        if group_failed {
            return Ok(());
        }
        while next_alert < alert_times.len()
            && ts - start <= alert_times[next_alert]
            && alert_times[next_alert] < ts + eval_interval - start
        {
            let t = alert_times[next_alert];
            for at in tg
                .alert_rule_test
                .iter()
                .filter(|a| a.eval_time.ms() == Ok(t))
            {
                check_alerts(at, &groups, t, &prefix, errs);
            }
            next_alert += 1;
        }
        if eval_interval <= 0 {
            break;
        }
        ts += eval_interval;
    }
    for et in &tg.promql_expr_test {
        let t = et.eval_time.ms()?;
        check_expr(
            et,
            &engine,
            &tenant,
            start + t,
            tf.fuzzy_compare,
            &prefix,
            errs,
        );
    }
    Ok(())
}

type LabelsAndAnnotations = (Vec<(String, String)>, Vec<(String, String)>);

fn show(alerts: &[LabelsAndAnnotations]) -> String {
    let items: Vec<String> = alerts
        .iter()
        .enumerate()
        .map(|(i, (l, a))| {
            let l: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            let a: Vec<String> = a.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            format!(
                "\n            {i}:\n              Labels:{{{}}}\n              Annotations:{{{}}}",
                l.join(", "),
                a.join(", ")
            )
        })
        .collect();
    format!("[{}\n            ]", items.concat())
}

fn check_alerts(at: &AlertTest, groups: &[Group], t: i64, prefix: &str, errs: &mut Vec<String>) {
    let mut got: Vec<LabelsAndAnnotations> = Vec::new();
    for g in groups {
        for r in &g.rules {
            if r.spec.name() != at.alertname {
                continue;
            }
            for a in r.active.values() {
                if a.state == AlertState::Firing {
                    got.push((
                        a.labels
                            .iter()
                            .map(|l| (l.name.clone(), l.value.clone()))
                            .collect(),
                        a.annotations.clone().into_iter().collect(),
                    ));
                }
            }
        }
    }
    let mut exp: Vec<LabelsAndAnnotations> = at
        .exp_alerts
        .iter()
        .map(|e| {
            let mut l = e.exp_labels.clone();
            l.insert("alertname".into(), at.alertname.clone());
            (
                l.into_iter().collect(),
                e.exp_annotations.clone().into_iter().collect(),
            )
        })
        .collect();
    got.sort();
    exp.sort();
    if got != exp {
        errs.push(format!(
            "{prefix}    alertname: {}, time: {}, \n        exp:{}, \n        got:{}",
            at.alertname,
            fmt_duration(t),
            show(&exp),
            show(&got)
        ));
    }
}

fn check_expr(
    et: &ExprTest,
    engine: &Engine,
    tenant: &Tenant,
    t: i64,
    fuzzy: bool,
    prefix: &str,
    errs: &mut Vec<String>,
) {
    let fail = |errs: &mut Vec<String>, msg: String| {
        errs.push(format!(
            "{prefix}    expr: {:?}, time: {},\n        {msg}",
            et.expr,
            fmt_duration(t)
        ))
    };
    type Got = (Labels, f64, Option<FloatHistogram>);
    let got = match engine.instant(tenant, &et.expr, t, &QueryParams::default()) {
        Ok(out) => match out.value {
            PromValue::Vector(v) => v
                .into_iter()
                .map(|s| (s.labels, s.v, s.h.map(|h| (*h).clone())))
                .collect::<Vec<Got>>(),
            PromValue::Scalar { v, .. } => vec![(Labels::empty(), v, None)],
            _ => return fail(errs, "err: rule result is not a vector or scalar".into()),
        },
        Err(e) => return fail(errs, format!("err: {e}")),
    };
    let mut exp: Vec<Got> = Vec::new();
    for s in &et.exp_samples {
        let l = match parse_series_descriptor(&s.labels) {
            Ok(l) => l,
            Err(e) => return fail(errs, format!("err: {e}")),
        };
        let h = match s.histogram.as_deref().map(expand_test_histogram) {
            None => None,
            Some(Ok(mut v)) if !v.is_empty() => Some(v.swap_remove(0).0),
            Some(Ok(_)) => return fail(errs, "err: empty histogram".into()),
            Some(Err(e)) => return fail(errs, format!("err: {e}")),
        };
        exp.push((l, s.value.unwrap_or(0.0), h));
    }
    let mut got = got;
    got.sort_by(|a, b| a.0.cmp(&b.0));
    exp.sort_by(|a, b| a.0.cmp(&b.0));
    let feq = |a: f64, b: f64| float_eq(a, b, fuzzy);
    let same = got.len() == exp.len()
        && got.iter().zip(&exp).all(|(g, e)| {
            g.0 == e.0
                && match (&g.2, &e.2) {
                    (None, None) => feq(g.1, e.1),
                    (Some(gh), Some(eh)) => test_histogram_equal(eh, gh, true, feq),
                    _ => false,
                }
        });
    if !same {
        let show = |v: &[Got]| {
            let items: Vec<String> = v
                .iter()
                .map(|(l, x, h)| match h {
                    Some(h) => format!("{l} {h}"),
                    None => format!("{l} {}", crate::template::format_float_g(*x, None)),
                })
                .collect();
            format!("[{}]", items.join(" "))
        };
        fail(
            errs,
            format!("\n        exp: {}\n        got: {}", show(&exp), show(&got)),
        );
    }
}

/// Runs files; prints results; returns the process exit code.
pub fn run(files: &[PathBuf], opts: &TestOptions) -> i32 {
    let mut ok = true;
    for f in files {
        let r = run_file(f, opts);
        print!("{}", r.output);
        println!();
        ok &= r.passed;
    }
    if ok {
        0
    } else {
        1
    }
}
