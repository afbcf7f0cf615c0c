//! Parsing and running one promqltest `.test` file (FORMAT.md beside the
//! test data describes the format).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use promql_parser::parser::{AtModifier, Expr};
use strata::model::{
    assign_tsdb_hints, expand_test_histogram, parse_duration, parse_test_float, split_test_values,
    test_histogram_equal, FloatHistogram, HistogramSample, Labels, Sample, Tenant,
    CUSTOM_BUCKETS_SCHEMA, STALE_NAN_BITS,
};
use strata::query::promql::{parse, Engine, EngineOptions, QueryOutput, QueryParams, Value};
use strata::storage::mem::MemMetrics;
use strata::storage::{MetricsWriter, SeriesSamples, SeriesWrite, WriteBatch};

/// A float or a native histogram (with whether the text gave its
/// counter-reset hint explicitly).
#[derive(Clone, Debug)]
enum V {
    F(f64),
    H(Box<FloatHistogram>, bool),
}

/// One expected element: labels and a sequence of optional values.
struct ExpSeries {
    labels: Labels,
    vals: Vec<Option<V>>,
}

#[derive(Default)]
struct Expect {
    fail: bool,
    fail_msg: Option<String>,
    fail_regex: Option<String>,
    warns: Vec<Option<Matcher>>,
    infos: Vec<Option<Matcher>>,
    no_warn: bool,
    no_info: bool,
    any_annotation: bool,
    ordered: bool,
    range_vector: Option<(i64, i64, i64)>,
    string: Option<String>,
    scalar: Option<f64>,
    series: Vec<ExpSeries>,
}

enum Matcher {
    Msg(String),
    Re(regex::Regex),
}

impl Matcher {
    fn matches(&self, s: &str) -> bool {
        match self {
            Matcher::Msg(m) => m == s,
            Matcher::Re(r) => r.is_match(s),
        }
    }
}

enum Cmd {
    Clear,
    Load {
        step: i64,
        nhcb: bool,
        lines: Vec<String>,
    },
    Eval {
        line: usize,
        instant: Option<i64>,
        range: (i64, i64, i64),
        query: String,
        expect: Box<Result<Expect, String>>,
    },
}

fn dur(s: &str) -> Result<i64, String> {
    parse_duration(s).map_err(|_| format!("bad duration {s:?}"))
}

/// Go's `strconv.ParseFloat` for the forms used in test files.
pub fn parse_number(s: &str) -> Option<f64> {
    parse_test_float(s, true)
}

/// Splits `a`, `a+bxN`, `a-bxN`, `axN` into their parts.
fn parse_num_nohex(s: &str) -> Option<f64> {
    parse_test_float(s, false)
}

fn expand_item(tok: &str, out: &mut Vec<Option<V>>) -> Result<(), String> {
    let bad = || format!("bad series item {tok:?}");
    if tok == "_" {
        out.push(None);
        return Ok(());
    }
    if tok == "stale" {
        out.push(Some(V::F(f64::from_bits(STALE_NAN_BITS))));
        return Ok(());
    }
    if let Some(n) = tok.strip_prefix("_x") {
        let n: usize = n.parse().map_err(|_| bad())?;
        out.extend(std::iter::repeat_n(None, n));
        return Ok(());
    }
    if tok.starts_with("{{") {
        out.extend(
            expand_test_histogram(tok)?
                .into_iter()
                .map(|(h, e)| Some(V::H(Box::new(h), e))),
        );
        return Ok(());
    }
    if let Some(v) = parse_num_nohex(tok) {
        out.push(Some(V::F(v)));
        return Ok(());
    }
    // Split off "xN".
    let xi = tok.rfind('x').ok_or_else(bad)?;
    let times: usize = tok[xi + 1..].parse().map_err(|_| bad())?;
    let head = &tok[..xi];
    if let Some(v) = parse_num_nohex(head) {
        out.extend(std::iter::repeat_n(Some(V::F(v)), times + 1));
        return Ok(());
    }
    // head = a(+|-)b; the operator is a sign not at 0 and not after 'e'.
    let b = head.as_bytes();
    let mut split = None;
    for i in 1..b.len() {
        if (b[i] == b'+' || b[i] == b'-') && !matches!(b[i - 1], b'e' | b'E' | b'x' | b'X') {
            split = Some(i);
            break;
        }
    }
    let i = split.ok_or_else(bad)?;
    let a = parse_num_nohex(&head[..i]).ok_or_else(bad)?;
    let mut d = parse_num_nohex(&head[i + 1..]).ok_or_else(bad)?;
    if b[i] == b'-' {
        d = -d;
    }
    let mut cur = a;
    for _ in 0..=times {
        out.push(Some(V::F(cur)));
        cur += d;
    }
    Ok(())
}

/// Parses a label set written as a selector (`name{a="b"}`, `{}`).
fn parse_labels(s: &str) -> Result<Labels, String> {
    let t = s.trim();
    if t == "{}" {
        return Ok(Labels::empty());
    }
    let e = promql_parser::parser::parse(t).map_err(|e| format!("bad labels {t:?}: {e}"))?;
    let Expr::VectorSelector(vs) = e else {
        return Err(format!("bad labels {t:?}"));
    };
    let mut pairs: Vec<(String, String)> = vec![];
    if let Some(n) = vs.name {
        pairs.push(("__name__".into(), n));
    }
    for m in vs.matchers.matchers {
        pairs.push((m.name, m.value));
    }
    Ok(Labels::from_pairs(pairs))
}

/// Splits a series line into its label part and its values part.
fn split_series(line: &str) -> Result<(&str, &str), String> {
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() && b[i] != b'{' && !b[i].is_ascii_whitespace() {
        i += 1;
    }
    if i < b.len() && b[i] == b'{' {
        let mut in_str: Option<u8> = None;
        while i < b.len() {
            match (in_str, b[i]) {
                (Some(_), b'\\') => i += 1,
                (Some(q), c) if c == q => in_str = None,
                (None, b'"') | (None, b'\'') | (None, b'`') => in_str = Some(b[i]),
                (None, b'}') => {
                    i += 1;
                    break;
                }
                _ => {}
            }
            i += 1;
        }
    }
    Ok((&line[..i], line[i..].trim()))
}

fn expand_values(vals: &str) -> Result<Vec<Option<V>>, String> {
    let mut out = vec![];
    for tok in split_test_values(vals) {
        expand_item(tok, &mut out)?;
    }
    Ok(out)
}

fn parse_series(line: &str) -> Result<ExpSeries, String> {
    let (l, v) = split_series(line)?;
    Ok(ExpSeries {
        labels: parse_labels(l)?,
        vals: expand_values(v)?,
    })
}

fn matcher(rest: &str) -> Result<Option<Matcher>, String> {
    let rest = rest.trim();
    if rest.is_empty() {
        return Ok(None);
    }
    if let Some(m) = rest.strip_prefix("msg:") {
        return Ok(Some(Matcher::Msg(m.trim().to_string())));
    }
    if let Some(r) = rest.strip_prefix("regex:") {
        return regex::Regex::new(r.trim())
            .map(|r| Some(Matcher::Re(r)))
            .map_err(|e| e.to_string());
    }
    Err(format!("bad expectation {rest:?}"))
}

fn unquote(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.len() >= 2 && s.starts_with('`') && s.ends_with('`') {
        return Ok(s[1..s.len() - 1].to_string());
    }
    if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        return serde_json::from_str::<String>(s).map_err(|e| e.to_string());
    }
    Err(format!("bad string {s:?}"))
}

fn parse_expect(header_kind: &str, body: &[String]) -> Result<Expect, String> {
    let mut e = Expect {
        fail: header_kind == "eval_fail",
        ordered: header_kind == "eval_ordered",
        any_annotation: header_kind == "eval_warn" || header_kind == "eval_info",
        ..Default::default()
    };
    for l in body {
        if let Some(rest) = l.strip_prefix("expect ") {
            let rest = rest.trim();
            let (word, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            match word {
                "fail" => {
                    e.fail = true;
                    match matcher(tail)? {
                        Some(Matcher::Msg(m)) => e.fail_msg = Some(m),
                        Some(Matcher::Re(r)) => e.fail_regex = Some(r.as_str().to_string()),
                        None => {}
                    }
                }
                "warn" => e.warns.push(matcher(tail)?),
                "info" => e.infos.push(matcher(tail)?),
                "no_warn" => e.no_warn = true,
                "no_info" => e.no_info = true,
                "ordered" => e.ordered = true,
                "string" => e.string = Some(unquote(tail)?),
                "range" => {
                    // range vector from A to B step S
                    let w: Vec<&str> = tail.split_whitespace().collect();
                    if w.len() != 7 || w[0] != "vector" {
                        return Err(format!("bad expect range: {l}"));
                    }
                    e.range_vector = Some((dur(w[2])?, dur(w[4])?, dur(w[6])?));
                }
                _ => return Err(format!("unknown expectation {l:?}")),
            }
            continue;
        }
        if let Some(m) = l.strip_prefix("expected_fail_message ") {
            e.fail_msg = Some(m.trim().to_string());
            continue;
        }
        if let Some(m) = l.strip_prefix("expected_fail_regexp ") {
            e.fail_regex = Some(m.trim().to_string());
            continue;
        }
        if let Some(v) = parse_number(l.trim()) {
            e.scalar = Some(v);
            continue;
        }
        e.series.push(parse_series(l)?);
    }
    Ok(e)
}

fn parse_file(text: &str) -> Result<Vec<Cmd>, String> {
    let lines: Vec<String> = text
        .split('\n')
        .map(|l| {
            let t = l.trim();
            if t.starts_with('#') {
                String::new()
            } else {
                t.to_string()
            }
        })
        .collect();
    let mut cmds = vec![];
    let mut i = 0;
    while i < lines.len() {
        let l = &lines[i];
        if l.is_empty() {
            i += 1;
            continue;
        }
        let header_line = i + 1;
        let mut body = vec![];
        let mut j = i + 1;
        while j < lines.len() && !lines[j].is_empty() {
            body.push(lines[j].clone());
            j += 1;
        }
        let first = l.split_whitespace().next().unwrap_or("").to_lowercase();
        if first == "clear" {
            cmds.push(Cmd::Clear);
            i += 1;
            continue;
        } else if first.starts_with("load") {
            let step = l.split_whitespace().nth(1).ok_or("load without step")?;
            cmds.push(Cmd::Load {
                step: dur(step)?,
                nhcb: first == "load_with_nhcb",
                lines: body,
            });
        } else if first.starts_with("eval") {
            let words: Vec<&str> = l.split_whitespace().collect();
            let rest_after = |n: usize| -> String {
                let mut s = l.as_str();
                for _ in 0..n {
                    s = s.trim_start();
                    let end = s.find(char::is_whitespace).unwrap_or(s.len());
                    s = &s[end..];
                }
                s.trim().to_string()
            };
            match words.get(1).copied() {
                Some("instant") => {
                    let t = dur(words.get(3).ok_or("eval without time")?)?;
                    cmds.push(Cmd::Eval {
                        line: header_line,
                        instant: Some(t),
                        range: (t, t, 1),
                        query: rest_after(4),
                        expect: Box::new(parse_expect(&first, &body)),
                    });
                }
                Some("range") => {
                    let s = dur(words.get(3).ok_or("bad range")?)?;
                    let e = dur(words.get(5).ok_or("bad range")?)?;
                    let st = dur(words.get(7).ok_or("bad range")?)?;
                    cmds.push(Cmd::Eval {
                        line: header_line,
                        instant: None,
                        range: (s, e, st),
                        query: rest_after(8),
                        expect: Box::new(parse_expect(&first, &body)),
                    });
                }
                _ => return Err(format!("bad eval line {l:?}")),
            }
        } else {
            return Err(format!("unknown command {l:?}"));
        }
        i = j;
    }
    Ok(cmds)
}

/// Classic histogram parts of one timestamp, for `load_with_nhcb`.
#[derive(Default)]
struct Classic {
    buckets: Vec<(f64, f64)>,
    count: Option<f64>,
    sum: Option<f64>,
}

/// `load_with_nhcb`: the classic histograms of the block (`X_bucket` with
/// `le`, `X_count`, `X_sum`) as custom-bucket histograms named `X`.
fn classic_to_nhcb(
    merged: &std::collections::BTreeMap<Labels, std::collections::BTreeMap<i64, V>>,
) -> Vec<(Labels, i64, FloatHistogram)> {
    let mut parts: std::collections::BTreeMap<(Labels, i64), Classic> = Default::default();
    for (labels, vals) in merged {
        let Some(name) = labels.metric_name() else {
            continue;
        };
        let (base, kind) = if let Some(b) = name.strip_suffix("_bucket") {
            (b, 0)
        } else if let Some(b) = name.strip_suffix("_count") {
            (b, 1)
        } else if let Some(b) = name.strip_suffix("_sum") {
            (b, 2)
        } else {
            continue;
        };
        let le = if kind == 0 {
            match labels.get("le").and_then(parse_num_nohex) {
                Some(le) if !le.is_nan() => Some(le),
                _ => continue,
            }
        } else {
            None
        };
        let mut pairs: Vec<(String, String)> = labels
            .iter()
            .filter(|l| l.name != "le" && l.name != "__name__")
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        pairs.push(("__name__".into(), base.to_string()));
        let key = Labels::from_pairs(pairs);
        for (&t, v) in vals {
            let V::F(v) = v else { continue };
            if v.to_bits() == STALE_NAN_BITS {
                continue;
            }
            let c = parts.entry((key.clone(), t)).or_default();
            match (kind, le) {
                (0, Some(le)) => c.buckets.push((le, *v)),
                (1, _) => c.count = Some(*v),
                _ => c.sum = Some(*v),
            }
        }
    }
    let mut out = vec![];
    for ((labels, t), mut c) in parts {
        if c.buckets.is_empty() {
            continue;
        }
        c.buckets
            .sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
        let mut h = FloatHistogram {
            schema: CUSTOM_BUCKETS_SCHEMA,
            ..Default::default()
        };
        let mut prev = 0.0;
        for (i, &(le, cum)) in c.buckets.iter().enumerate() {
            if le.is_finite() {
                h.custom_values.push(le);
            }
            h.positive.push((i as i32, cum - prev));
            prev = cum;
        }
        h.count = c.count.unwrap_or(prev);
        h.sum = c.sum.unwrap_or(0.0);
        out.push((labels, t, h));
    }
    out
}

fn load(store: &MemMetrics, step: i64, nhcb: bool, lines: &[String]) -> Result<(), String> {
    let tenant = Tenant::anonymous();
    // A later line for the same series overwrites values at the same time,
    // as Prometheus's test storage does.
    let mut merged: std::collections::BTreeMap<Labels, std::collections::BTreeMap<i64, V>> =
        Default::default();
    for l in lines {
        let (lab, vals) = split_series(l)?;
        if lab.ends_with("@st") {
            // Start timestamps are not modelled: the series is left out
            // and evals reading it fail.
            continue;
        }
        let labels = parse_labels(lab)?;
        let vals = expand_values(vals)?;
        let m = merged.entry(labels).or_default();
        for (i, v) in vals.into_iter().enumerate() {
            if let Some(v) = v {
                m.insert(i as i64 * step, v);
            }
        }
    }
    if nhcb {
        for (labels, t, h) in classic_to_nhcb(&merged) {
            merged
                .entry(labels)
                .or_default()
                .insert(t, V::H(Box::new(h), false));
        }
    }
    let mut batch = WriteBatch::default();
    for (labels, m) in merged {
        let mut samples = vec![];
        let mut hists = vec![];
        for (t, v) in m {
            match v {
                V::F(v) => samples.push(Sample::new(t, v)),
                V::H(h, _) => hists.push(HistogramSample { t, h: Arc::new(*h) }),
            }
        }
        if !hists.is_empty() {
            assign_tsdb_hints(&mut hists);
            store.append_histograms(&tenant, &labels, hists);
        }
        batch.series.push(SeriesWrite {
            labels,
            samples,
            exemplars: vec![],
        });
    }
    store
        .append(&tenant, batch)
        .map_err(|e| e.to_string())
        .map(|_| ())
}

fn almost_equal(a: f64, b: f64) -> bool {
    let stale = |v: f64| v.to_bits() == STALE_NAN_BITS;
    if stale(a) || stale(b) {
        return stale(a) && stale(b);
    }
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let diff = (a - b).abs();
    let sum = a.abs() + b.abs();
    if a == 0.0 || b == 0.0 || sum < f64::MIN_POSITIVE {
        return diff < 1e-6 * f64::MIN_POSITIVE;
    }
    diff / sum.min(f64::MAX) < 1e-6
}

fn check_annotations(e: &Expect, out: &QueryOutput) -> Result<(), String> {
    let check =
        |exp: &[Option<Matcher>], got: &[String], no: bool, kind: &str| -> Result<(), String> {
            if no && !got.is_empty() {
                return Err(format!("unexpected {kind}s: {got:?}"));
            }
            if exp.is_empty() {
                return Ok(());
            }
            for m in exp {
                let ok = match m {
                    None => !got.is_empty(),
                    Some(m) => got.iter().any(|g| m.matches(g)),
                };
                if !ok {
                    return Err(format!("expected {kind} not found; got {got:?}"));
                }
            }
            for g in got {
                if !exp.iter().any(|m| m.as_ref().is_none_or(|m| m.matches(g))) {
                    return Err(format!("unexpected {kind} {g:?}"));
                }
            }
            Ok(())
        };
    check(&e.warns, &out.warnings, e.no_warn, "warning")?;
    check(&e.infos, &out.infos, e.no_info, "info")?;
    if e.any_annotation && out.warnings.is_empty() && out.infos.is_empty() {
        return Err("expected an annotation".into());
    }
    Ok(())
}

fn value_equal(exp: &V, got: &V) -> bool {
    match (exp, got) {
        (V::F(x), V::F(y)) => almost_equal(*x, *y),
        (V::H(x, explicit), V::H(y, _)) => test_histogram_equal(x, y, *explicit, almost_equal),
        _ => false,
    }
}

fn show(v: &V) -> String {
    match v {
        V::F(x) => x.to_string(),
        V::H(h, _) => h.to_string(),
    }
}

fn compare_vector(e: &Expect, got: &[(Labels, V)]) -> Result<(), String> {
    if e.scalar.is_some() {
        return Err("expected a scalar, got a vector".into());
    }
    if got.len() != e.series.len() {
        return Err(format!(
            "expected {} series, got {}: {:?}",
            e.series.len(),
            got.len(),
            got.iter().map(|g| g.0.to_string()).collect::<Vec<_>>()
        ));
    }
    for (pos, (l, v)) in got.iter().enumerate() {
        let Some((ei, es)) = e.series.iter().enumerate().find(|(_, s)| &s.labels == l) else {
            return Err(format!("unexpected series {l}"));
        };
        if es.vals.len() != 1 {
            return Err(format!("expected {} values for {l}", es.vals.len()));
        }
        match &es.vals[0] {
            Some(x) if value_equal(x, v) => {}
            x => {
                return Err(format!(
                    "{l}: expected {}, got {}",
                    x.as_ref().map_or("nothing".into(), show),
                    show(v)
                ))
            }
        }
        if e.ordered && ei != pos {
            return Err(format!(
                "{l}: expected at position {}, got {}",
                ei + 1,
                pos + 1
            ));
        }
    }
    Ok(())
}

fn compare_matrix(e: &Expect, got: &[SeriesSamples], start: i64, step: i64) -> Result<(), String> {
    if got.len() != e.series.len() {
        return Err(format!(
            "expected {} series, got {}: {:?}",
            e.series.len(),
            got.len(),
            got.iter().map(|g| g.labels.to_string()).collect::<Vec<_>>()
        ));
    }
    for g in got {
        let Some(es) = e.series.iter().find(|s| s.labels == g.labels) else {
            return Err(format!("unexpected series {}", g.labels));
        };
        let exp: Vec<(i64, &V)> = es
            .vals
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.as_ref().map(|v| (start + i as i64 * step, v)))
            .collect();
        let got = points(g);
        if exp.len() != got.len() {
            return Err(format!(
                "{}: expected {} points, got {}: {:?}",
                g.labels,
                exp.len(),
                got.len(),
                got.iter().map(|s| (s.0, show(&s.1))).collect::<Vec<_>>()
            ));
        }
        for (x, s) in exp.iter().zip(&got) {
            if x.0 != s.0 || !value_equal(x.1, &s.1) {
                return Err(format!(
                    "{}: expected ({}, {}), got ({}, {})",
                    g.labels,
                    x.0,
                    show(x.1),
                    s.0,
                    show(&s.1)
                ));
            }
        }
    }
    Ok(())
}

/// Float and histogram points of a series, in time order.
fn points(s: &SeriesSamples) -> Vec<(i64, V)> {
    let mut out: Vec<(i64, V)> = s.samples.iter().map(|p| (p.t, V::F(p.v))).collect();
    out.extend(
        s.histograms
            .iter()
            .map(|h| (h.t, V::H(Box::new((*h.h).clone()), false))),
    );
    out.sort_by_key(|p| p.0);
    out
}

fn compare(e: &Expect, v: &Value) -> Result<(), String> {
    match v {
        Value::Scalar { v, .. } => match e.scalar {
            Some(x) if almost_equal(x, *v) => Ok(()),
            x => Err(format!("expected {x:?}, got scalar {v}")),
        },
        Value::String { s, .. } => match &e.string {
            Some(x) if x == s => Ok(()),
            x => Err(format!("expected {x:?}, got string {s:?}")),
        },
        Value::Vector(vs) => {
            let got: Vec<(Labels, V)> = vs
                .iter()
                .map(|s| {
                    let v = match &s.h {
                        Some(h) => V::H(Box::new((**h).clone()), false),
                        None => V::F(s.v),
                    };
                    (s.labels.clone(), v)
                })
                .collect();
            compare_vector(e, &got)
        }
        Value::Matrix(m) => {
            let (start, _, step) = e.range_vector.unwrap_or((0, 0, 1));
            compare_matrix(e, m, start, step)
        }
    }
}

fn check_error(e: &Expect, err: &str) -> Result<(), String> {
    if let Some(m) = &e.fail_msg {
        if m != err {
            return Err(format!("expected error {m:?}, got {err:?}"));
        }
    }
    if let Some(r) = &e.fail_regex {
        let re = regex::Regex::new(r).map_err(|e| e.to_string())?;
        if !re.is_match(err) {
            return Err(format!("expected error matching {r:?}, got {err:?}"));
        }
    }
    Ok(())
}

const AT_UNSAFE: &[&str] = &[
    "time",
    "timestamp",
    "minute",
    "hour",
    "month",
    "year",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "predict_linear",
    "start",
    "end",
    "range",
    "step",
];

fn system_time(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis((-ms) as u64)
    }
}

/// Sets `@ ts` on every selector and subquery without one (not inside a
/// subquery that has one). Returns false if the query uses a function that
/// is not step invariant.
fn add_at(e: &mut Expr, ts: i64) -> bool {
    match e {
        Expr::VectorSelector(vs) => {
            if vs.at.is_none() {
                vs.at = Some(AtModifier::At(system_time(ts)));
            }
            true
        }
        Expr::MatrixSelector(ms) => {
            if ms.vs.at.is_none() {
                ms.vs.at = Some(AtModifier::At(system_time(ts)));
            }
            true
        }
        Expr::Subquery(sq) => {
            if sq.at.is_none() {
                sq.at = Some(AtModifier::At(system_time(ts)));
            }
            // Selectors inside are left alone, but still scanned for
            // unsafe functions.
            safe(&sq.expr)
        }
        Expr::Aggregate(a) => {
            let p = a.param.as_mut().is_none_or(|p| add_at(p, ts));
            add_at(&mut a.expr, ts) && p
        }
        Expr::Unary(u) => add_at(&mut u.expr, ts),
        Expr::Binary(b) => {
            let l = add_at(&mut b.lhs, ts);
            add_at(&mut b.rhs, ts) && l
        }
        Expr::Paren(p) => add_at(&mut p.expr, ts),
        Expr::Call(c) => {
            let mut ok = !AT_UNSAFE.contains(&c.func.name);
            for a in &mut c.args.args {
                ok &= add_at(a, ts);
            }
            ok
        }
        _ => true,
    }
}

fn safe(e: &Expr) -> bool {
    let mut c = e.clone();
    add_at(&mut c, 0)
}

fn uses_range_fns(q: &str) -> bool {
    ["start()", "end()", "range()", "step()"]
        .iter()
        .any(|f| q.contains(f))
}

struct Runner {
    store: Arc<MemMetrics>,
    engine: Engine,
    tenant: Tenant,
}

impl Runner {
    fn instant_check(&self, e: &Expect, expr: &Expr, t: i64, query: &str) -> Result<(), String> {
        let params = QueryParams::default();
        let res = catch(|| self.engine.instant_expr(&self.tenant, expr, t, &params))?;
        let out = match res {
            Err(err) if e.fail => return check_error(e, &err.to_string()),
            Err(err) => return Err(format!("error at {t}: {err}")),
            Ok(_) if e.fail => return Err("expected an error, got none".into()),
            Ok(out) => out,
        };
        check_annotations(e, &out)?;
        compare(e, &out.value).map_err(|m| format!("at {t}: {m}"))?;
        if e.range_vector.is_some() || e.string.is_some() || e.ordered || uses_range_fns(query) {
            return Ok(());
        }
        let res = catch(|| {
            self.engine
                .range_expr(&self.tenant, expr, t - 60_000, t + 60_000, 60_000, &params)
        })?
        .map_err(|err| format!("range mode: {err}"))?;
        let Value::Matrix(m) = &res.value else {
            return Err("range mode did not return a matrix".into());
        };
        if m.windows(2).any(|w| w[0].labels > w[1].labels) {
            return Err("range mode matrix not sorted".into());
        }
        let vec: Vec<(Labels, V)> = m
            .iter()
            .filter_map(|s| {
                points(s)
                    .into_iter()
                    .find(|p| p.0 == t)
                    .map(|p| (s.labels.clone(), p.1))
            })
            .collect();
        let r = if let Value::Scalar { .. } = out.value {
            match (e.scalar, vec.first()) {
                (Some(x), Some((_, V::F(v)))) if almost_equal(x, *v) => Ok(()),
                (x, v) => Err(format!("expected {x:?}, got {:?}", v.map(|v| show(&v.1)))),
            }
        } else {
            compare_vector(e, &vec)
        };
        r.map_err(|m| format!("range mode at {t}: {m}"))
    }

    fn eval(
        &self,
        instant: Option<i64>,
        range: (i64, i64, i64),
        query: &str,
        e: &Expect,
    ) -> Result<(), String> {
        let ctx = match instant {
            Some(_) => parse::DurationContext::default(),
            None => parse::DurationContext::range_query(range.0, range.1, range.2),
        };
        let expr = match parse::parse_expr_with(query, &ctx) {
            Ok(x) => x,
            Err(err) if e.fail => return check_error(e, &err),
            Err(err) => return Err(format!("parse error: {err}")),
        };
        match instant {
            Some(t) => {
                self.instant_check(e, &expr, t, query)?;
                let mut at = expr.clone();
                if add_at(&mut at, t) {
                    let times: Vec<i64> = if t == 0 {
                        vec![-1000, 0, 1000]
                    } else {
                        vec![-10 * t, 0, t / 5, t, 10 * t]
                    };
                    let text = parse::to_promql(&at);
                    for et in times {
                        self.instant_check(e, &at, et, &text)
                            .map_err(|m| format!("@ variant {text} at {et}: {m}"))?;
                    }
                }
                Ok(())
            }
            None => {
                let (s, en, st) = range;
                let params = QueryParams::default();
                let res = catch(|| {
                    self.engine
                        .range_expr(&self.tenant, &expr, s, en, st, &params)
                })?;
                let out = match res {
                    Err(err) if e.fail => return check_error(e, &err.to_string()),
                    Err(err) => return Err(format!("error: {err}")),
                    Ok(_) if e.fail => return Err("expected an error, got none".into()),
                    Ok(out) => out,
                };
                check_annotations(e, &out)?;
                let Value::Matrix(m) = &out.value else {
                    return Err("range query did not return a matrix".into());
                };
                if m.windows(2).any(|w| w[0].labels > w[1].labels) {
                    return Err("matrix not sorted".into());
                }
                compare_matrix(e, m, s, st)
            }
        }
    }
}

fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        format!("panic: {msg}")
    })
}

/// Runs every eval of a file: `(header line, outcome)`.
pub fn run_file(text: &str, filter: Option<&str>) -> Vec<(usize, Result<(), String>)> {
    let cmds = match parse_file(text) {
        Ok(c) => c,
        Err(e) => {
            // Count every eval header as failed.
            return text
                .lines()
                .enumerate()
                .filter(|(_, l)| l.trim_start().starts_with("eval"))
                .map(|(i, _)| (i + 1, Err(format!("file does not parse: {e}"))))
                .collect();
        }
    };
    let store = Arc::new(MemMetrics::new());
    let runner = Runner {
        engine: Engine::new(
            store.clone(),
            EngineOptions {
                enable_experimental_functions: true,
                timeout: Duration::from_secs(30),
                ..EngineOptions::default()
            },
        ),
        store,
        tenant: Tenant::anonymous(),
    };
    let mut load_err: Option<String> = None;
    let mut out = vec![];
    for c in cmds {
        match c {
            Cmd::Clear => {
                runner.store.clear();
                load_err = None;
            }
            Cmd::Load { step, nhcb, lines } => {
                if let Err(e) = load(&runner.store, step, nhcb, &lines) {
                    load_err = Some(e);
                }
            }
            Cmd::Eval {
                line,
                instant,
                range,
                query,
                expect,
            } => {
                if let Some(f) = filter {
                    if !query.contains(f) && !format!(":{line}").ends_with(f) {
                        continue;
                    }
                }
                let r = match (&load_err, *expect) {
                    (Some(le), _) => Err(format!("load failed: {le}")),
                    (_, Err(e)) => Err(format!("bad expectation: {e}")),
                    (_, Ok(e)) => runner.eval(instant, range, &query, &e),
                };
                out.push((line, r.map_err(|m| format!("{query}: {m}"))));
            }
        }
    }
    out
}
