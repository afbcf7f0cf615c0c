//! Aggregation operators (`sum`, `avg`, `topk`, `count_values`, ...).

use std::collections::HashMap;

use promql_parser::parser::{AggregateExpr, Expr, LabelModifier};

use super::eval::{go_f, go_g, unparen, Evaluator, Result, Series, Steps, Val, H};
use super::functions::{kahan_inc, merge_same_labels, quantile};
use super::native::{push_out, sum_histograms, Out, Site};
use super::QueryError;
use crate::model::{Labels, LabelsBuilder, METRIC_NAME};

/// Per-group running state of one step.
#[derive(Default, Clone, Copy)]
struct Acc {
    n: f64,
    value: f64,
    c: f64,
    mean: f64,
    incremental: bool,
}

fn group_key(l: &Labels, m: &Option<LabelModifier>) -> Labels {
    match m {
        None => Labels::empty(),
        Some(LabelModifier::Include(ls)) => {
            let names: Vec<&str> = ls.labels.iter().map(|s| s.as_str()).collect();
            l.keep(&names)
        }
        Some(LabelModifier::Exclude(ls)) => {
            let mut names: Vec<&str> = ls.labels.iter().map(|s| s.as_str()).collect();
            names.push(METRIC_NAME);
            l.drop_names(&names)
        }
    }
}

/// The simple aggregations, decided once per aggregation instead of by
/// string per sample.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Simple {
    Sum,
    Avg,
    Count,
    Group,
    Min,
    Max,
    Stddev,
    Stdvar,
}

impl Simple {
    fn parse(op: &str) -> Option<Simple> {
        Some(match op {
            "sum" => Simple::Sum,
            "avg" => Simple::Avg,
            "count" => Simple::Count,
            "group" => Simple::Group,
            "min" => Simple::Min,
            "max" => Simple::Max,
            "stddev" => Simple::Stddev,
            "stdvar" => Simple::Stdvar,
            _ => return None,
        })
    }
}

fn add(op: Simple, a: &mut Acc, f: f64) {
    if a.n == 0.0 {
        a.n = 1.0;
        match op {
            Simple::Stddev | Simple::Stdvar => {
                a.mean = f;
                a.value = if f.is_finite() { 0.0 } else { f64::NAN };
            }
            _ => a.value = f,
        }
        return;
    }
    a.n += 1.0;
    match op {
        Simple::Sum => {
            (a.value, a.c) = kahan_inc(f, a.value, a.c);
        }
        Simple::Avg => {
            if !a.incremental {
                let (ns, nc) = kahan_inc(f, a.value, a.c);
                if !ns.is_infinite() {
                    a.value = ns;
                    a.c = nc;
                    return;
                }
                a.incremental = true;
                a.mean = a.value / (a.n - 1.0);
                a.c /= a.n - 1.0;
            }
            if a.mean.is_infinite() {
                if f.is_infinite() && (a.mean > 0.0) == (f > 0.0) {
                    return;
                }
                if !f.is_infinite() && !f.is_nan() {
                    return;
                }
            }
            let q = (a.n - 1.0) / a.n;
            (a.mean, a.c) = kahan_inc(f / a.n, q * a.mean, q * a.c);
        }
        Simple::Min if a.value > f || a.value.is_nan() => a.value = f,
        Simple::Max if a.value < f || a.value.is_nan() => a.value = f,
        Simple::Stddev | Simple::Stdvar => {
            if !f.is_finite() {
                a.value = f64::NAN;
            } else if !a.value.is_nan() {
                let delta = f - a.mean;
                a.mean += delta / a.n;
                a.value += delta * (f - a.mean);
            }
        }
        _ => {}
    }
}

fn finish(op: Simple, a: &Acc) -> f64 {
    match op {
        Simple::Sum => a.value + a.c,
        Simple::Avg => {
            if a.incremental {
                a.mean + a.c
            } else if a.n == 1.0 {
                a.value
            } else {
                (a.value + a.c) / a.n
            }
        }
        Simple::Count => a.n,
        Simple::Group => 1.0,
        Simple::Stdvar => a.value / a.n,
        Simple::Stddev => (a.value / a.n).sqrt(),
        Simple::Min | Simple::Max => a.value,
    }
}

pub(crate) fn eval_aggregate(ev: &mut Evaluator, a: &AggregateExpr, r: &Steps) -> Result<Val> {
    let op = a.op.to_string().to_lowercase();
    let n = r.len();
    let param = match &a.param {
        Some(p) if op != "count_values" => Some(ev.eval_scalar(p, r)?),
        _ => None,
    };
    // Delayed name removal: groups are partitioned by the not yet removed
    // `__name__`; a group drops it if any member does.
    let input = ev.eval_vector(&a.expr, r)?;
    // Groups in order of first appearance.
    let mut gidx: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<(Labels, Vec<usize>)> = Vec::new();
    let mut gdrop: Vec<bool> = Vec::new();
    for (si, s) in input.iter().enumerate() {
        let key = group_key(&s.labels, &a.modifier);
        let gi = *gidx.entry(key.clone()).or_insert_with(|| {
            groups.push((key, vec![]));
            gdrop.push(false);
            groups.len() - 1
        });
        groups[gi].1.push(si);
        gdrop[gi] |= s.drop_name;
    }
    match op.as_str() {
        "topk" | "bottomk" | "limitk" | "limit_ratio" => {
            let param = param.unwrap_or_else(|| vec![f64::NAN; n]);
            let out_of_range = param.iter().find(|p| **p < -1.0 || **p > 1.0);
            if let (Some(&p), "limit_ratio") = (out_of_range, op.as_str()) {
                let pos = a.param.as_deref().map(|e| ev.pos(e)).unwrap_or_default();
                ev.warn(format!(
                    "ratio value should be between -1 and 1, got {}, capping to {} {pos}",
                    go_g(p),
                    if p < 0.0 { -1 } else { 1 }
                ));
            }
            let pos = ev.pos(&a.expr);
            select_k(ev, &op, &input, &groups, &param, r, &pos)
        }
        "count_values" => {
            let label = match a.param.as_deref().map(unparen) {
                Some(Expr::StringLiteral(s)) => s.val.clone(),
                _ => {
                    return Err(QueryError::BadData(
                        "count_values needs a string parameter".into(),
                    ))
                }
            };
            if !super::functions::valid_label_name(&label) {
                return Err(QueryError::Execution(format!(
                    "invalid label name {}",
                    super::parse::go_quote(&label)
                )));
            }
            let mut out: Vec<Series> = Vec::new();
            let mut idx: HashMap<Labels, usize> = HashMap::new();
            for ((key, members), &drop_name) in groups.iter().zip(&gdrop) {
                for i in 0..n {
                    for &si in members {
                        let h = input[si].hvals.get(i).and_then(Option::as_ref);
                        let value = match (input[si].vals[i], h) {
                            (Some(v), _) => go_f(v),
                            (None, Some(h)) => h.go_string(),
                            (None, None) => continue,
                        };
                        let mut b = LabelsBuilder::new(key);
                        b.set(label.clone(), value);
                        let l = b.labels();
                        let oi = *idx.entry(l.clone()).or_insert_with(|| {
                            out.push(Series {
                                hvals: vec![],
                                labels: l,
                                drop_name,
                                vals: vec![None; n],
                            });
                            out.len() - 1
                        });
                        let slot = &mut out[oi].vals[i];
                        *slot = Some(slot.unwrap_or(0.0) + 1.0);
                    }
                }
            }
            Ok(Val::Vector(merge_same_labels(out)?))
        }
        "quantile" => {
            let q = param.unwrap_or_else(|| vec![f64::NAN; n]);
            if let Some(bad) = q.iter().find(|q| q.is_nan() || **q < 0.0 || **q > 1.0) {
                let pos = a.param.as_deref().map(|p| ev.pos(p)).unwrap_or_default();
                ev.warn(format!(
                    "quantile value should be between 0 and 1, got {} {pos}",
                    go_g(*bad)
                ));
            }
            if input.iter().any(|s| s.hvals.iter().any(|h| h.is_some())) {
                let pos = ev.pos(&a.expr);
                ev.info(format!("ignored histogram in quantile aggregation {pos}"));
            }
            let mut out = Vec::with_capacity(groups.len());
            for ((key, members), drop_name) in groups.into_iter().zip(gdrop) {
                let vals = (0..n)
                    .map(|i| {
                        let mut v: Vec<f64> =
                            members.iter().filter_map(|&si| input[si].vals[i]).collect();
                        (!v.is_empty()).then(|| quantile(q[i], &mut v))
                    })
                    .collect();
                out.push(Series {
                    hvals: vec![],
                    labels: key,
                    drop_name,
                    vals,
                });
            }
            Ok(Val::Vector(
                out.into_iter()
                    .filter(|s| s.vals.iter().any(|v| v.is_some()))
                    .collect(),
            ))
        }
        name => {
            let Some(simple) = Simple::parse(name) else {
                return Err(QueryError::BadData(format!(
                    "aggregation {name} is not supported"
                )));
            };
            let mut out = Vec::with_capacity(groups.len());
            let pos = ev.pos(&a.expr);
            let any_hist = input.iter().any(|s| !s.hvals.is_empty());
            let mut accs = vec![Acc::default(); n];
            for ((key, members), drop_name) in groups.into_iter().zip(gdrop) {
                // Member by member over all steps: each series' values are
                // read in order (one step across many series is a stride).
                accs.fill(Acc::default());
                for &si in &members {
                    for (acc, v) in accs.iter_mut().zip(&input[si].vals) {
                        if let Some(v) = *v {
                            add(simple, acc, v);
                        }
                    }
                }
                let mut vals: Vec<Option<f64>> = Vec::with_capacity(n);
                let mut hvals: Vec<Option<H>> = vec![];
                for (i, acc) in accs.iter().enumerate() {
                    let hs: Vec<&H> = if any_hist {
                        members.iter().filter_map(|&si| input[si].h(i)).collect()
                    } else {
                        vec![]
                    };
                    if hs.is_empty() {
                        vals.push((acc.n > 0.0).then(|| finish(simple, acc)));
                        continue;
                    }
                    let o = aggregate_histograms(ev, &op, simple, acc, &hs, &pos);
                    push_out(&mut vals, &mut hvals, n, i, o);
                }
                let s = Series {
                    hvals,
                    labels: key,
                    drop_name,
                    vals,
                };
                if s.has_any() {
                    out.push(s);
                }
            }
            Ok(Val::Vector(out))
        }
    }
}

/// One step of an aggregation whose group holds histograms `hs` (and the
/// floats accumulated in `acc`).
fn aggregate_histograms(
    ev: &mut Evaluator,
    op: &str,
    simple: Simple,
    acc: &Acc,
    hs: &[&H],
    pos: &str,
) -> Option<Out> {
    match op {
        "count" => Some(Out::F(acc.n + hs.len() as f64)),
        "group" => Some(Out::F(1.0)),
        "sum" | "avg" => {
            if acc.n > 0.0 {
                ev.warn(format!(
                    "encountered a mix of histograms and floats for aggregation {pos}"
                ));
                return None;
            }
            let site = Site { metric: "", pos };
            let sum = sum_histograms(ev, hs.iter().map(|h| &***h), &site, op == "avg")?;
            Some(Out::H(sum))
        }
        _ => {
            ev.info(format!("ignored histogram in {op} aggregation {pos}"));
            (acc.n > 0.0).then(|| Out::F(finish(simple, acc)))
        }
    }
}

/// `topk`, `bottomk`, `limitk` and `limit_ratio`: a subset of the input
/// series per step, labels unchanged.
fn select_k(
    ev: &mut Evaluator,
    op: &str,
    input: &[Series],
    groups: &[(Labels, Vec<usize>)],
    param: &[f64],
    r: &Steps,
    pos: &str,
) -> Result<Val> {
    let n = r.len();
    let mut keep: Vec<Vec<bool>> = vec![vec![false; n]; input.len()];
    // For instant queries, the output order (per group, sorted).
    let mut order: Vec<usize> = Vec::new();
    for (i, &p) in param.iter().enumerate() {
        if p.is_nan() {
            return Err(QueryError::Execution(
                if op == "limit_ratio" {
                    "Ratio value is NaN"
                } else {
                    "Parameter value is NaN"
                }
                .into(),
            ));
        }
        if op != "limit_ratio" && p >= 9.223_372_036_854_776e18 {
            return Err(QueryError::Execution(format!(
                "Scalar value {} overflows int64",
                go_g(p)
            )));
        }
        let _ = i;
    }
    let limit = matches!(op, "limitk" | "limit_ratio");
    let mut ignored = false;
    for (_, members) in groups {
        for i in 0..n {
            // topk/bottomk rank floats only; limitk/limit_ratio keep histograms.
            let present: Vec<usize> = members
                .iter()
                .copied()
                .filter(|&si| {
                    let h = input[si].h(i).is_some();
                    ignored |= h && !limit;
                    input[si].vals[i].is_some() || (h && limit)
                })
                .collect();
            let chosen: Vec<usize> = match op {
                "limit_ratio" => {
                    let ratio = param[i].clamp(-1.0, 1.0);
                    present
                        .into_iter()
                        .filter(|&si| {
                            let off = input[si].labels.stable_hash() as f64 / u64::MAX as f64;
                            if ratio >= 0.0 {
                                off < ratio
                            } else {
                                off >= 1.0 + ratio
                            }
                        })
                        .collect()
                }
                _ => {
                    let k = param[i] as i64;
                    if k < 1 {
                        continue;
                    }
                    let k = (k as usize).min(present.len());
                    if op == "limitk" {
                        present.into_iter().take(k).collect()
                    } else {
                        let mut p = present;
                        let val = |si: usize| input[si].vals[i].unwrap();
                        let top = op == "topk";
                        p.sort_by(|&x, &y| {
                            let (a, b) = (val(x), val(y));
                            match (a.is_nan(), b.is_nan()) {
                                (true, true) => std::cmp::Ordering::Equal,
                                (true, false) => std::cmp::Ordering::Greater,
                                (false, true) => std::cmp::Ordering::Less,
                                _ if top => b.partial_cmp(&a).unwrap(),
                                _ => a.partial_cmp(&b).unwrap(),
                            }
                        });
                        p.truncate(k);
                        p
                    }
                }
            };
            for si in chosen {
                keep[si][i] = true;
                if n == 1 {
                    order.push(si);
                }
            }
        }
    }
    if ignored {
        ev.info(format!("ignored histogram in {op} aggregation {}", pos));
    }
    if n == 1 {
        return Ok(Val::Vector(
            order
                .into_iter()
                .map(|si| {
                    let mut s = input[si].clone();
                    if !limit {
                        s.hvals.clear();
                    }
                    s
                })
                .collect(),
        ));
    }
    let out = input
        .iter()
        .zip(keep)
        .filter(|(_, k)| k.iter().any(|b| *b))
        .map(|(s, k)| {
            let mut s = s.clone();
            if !limit {
                s.hvals.clear();
            }
            for (i, k) in k.into_iter().enumerate() {
                if !k {
                    s.clear(i);
                }
            }
            s
        })
        .collect();
    Ok(Val::Vector(out))
}
