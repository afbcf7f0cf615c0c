//! `histogram_quantile` and `histogram_fraction` over classic `le` buckets.

use std::collections::HashMap;

use promql_parser::parser::{Call, Expr};

use super::eval::{go_g, Evaluator, Result, Series, Steps, Val};
use super::native::with_hist_stats;
use crate::model::{FloatHistogram, Labels, NanObservations};

#[derive(Clone, Copy)]
struct Bucket {
    upper: f64,
    count: f64,
}

/// Go's `strconv.ParseFloat` for `le` values.
fn parse_le(s: &str) -> Option<f64> {
    let t = s.trim_start_matches(['+', '-']);
    if t.eq_ignore_ascii_case("inf") || t.eq_ignore_ascii_case("infinity") {
        return Some(if s.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if t.eq_ignore_ascii_case("nan") {
        return Some(f64::NAN);
    }
    if t.is_empty() || t.starts_with(|c: char| c.is_alphabetic()) {
        return None;
    }
    s.parse::<f64>().ok()
}

fn almost_equal(a: f64, b: f64, eps: f64) -> bool {
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < f64::MIN_POSITIVE {
        return diff < eps * f64::MIN_POSITIVE;
    }
    diff / abs_sum.min(f64::MAX) < eps
}

fn sort_and_coalesce(b: &mut Vec<Bucket>) {
    b.sort_by(|x, y| {
        x.upper
            .partial_cmp(&y.upper)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut out: Vec<Bucket> = Vec::with_capacity(b.len());
    for x in b.drain(..) {
        match out.last_mut() {
            Some(l) if l.upper == x.upper => l.count += x.count,
            _ => out.push(x),
        }
    }
    *b = out;
}

fn ensure_monotonic(b: &mut [Bucket]) -> bool {
    let mut forced = false;
    let mut prev = b[0].count;
    for x in b.iter_mut().skip(1) {
        let cur = x.count;
        if cur == prev {
            continue;
        }
        if almost_equal(prev, cur, 1e-12) {
            x.count = prev;
            continue;
        }
        if cur < prev {
            x.count = prev;
            forced = true;
            continue;
        }
        prev = cur;
    }
    forced
}

/// Prometheus's `BucketQuantile`: the value and whether monotonicity was forced.
fn bucket_quantile(q: f64, mut b: Vec<Bucket>) -> (f64, bool) {
    if q.is_nan() {
        return (f64::NAN, false);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if q > 1.0 {
        return (f64::INFINITY, false);
    }
    b.sort_by(|x, y| {
        x.upper
            .partial_cmp(&y.upper)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    if !(b[b.len() - 1].upper.is_infinite() && b[b.len() - 1].upper > 0.0) {
        return (f64::NAN, false);
    }
    sort_and_coalesce(&mut b);
    let forced = ensure_monotonic(&mut b);
    if b.len() < 2 {
        return (f64::NAN, false);
    }
    let obs = b[b.len() - 1].count;
    if obs == 0.0 || obs.is_nan() {
        return (f64::NAN, false);
    }
    let mut rank = q * obs;
    let idx = b[..b.len() - 1].partition_point(|x| x.count < rank);
    if idx == b.len() - 1 {
        return (b[b.len() - 2].upper, forced);
    }
    if idx == 0 && b[0].upper <= 0.0 {
        return (b[0].upper, forced);
    }
    let (mut start, end, mut count) = (0.0, b[idx].upper, b[idx].count);
    if idx > 0 {
        start = b[idx - 1].upper;
        count -= b[idx - 1].count;
        rank -= b[idx - 1].count;
    }
    (start + (end - start) * (rank / count), forced)
}

/// Prometheus's `BucketFraction` for classic buckets.
fn bucket_fraction(lower: f64, upper: f64, mut b: Vec<Bucket>) -> f64 {
    b.sort_by(|x, y| {
        x.upper
            .partial_cmp(&y.upper)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    if !(b[b.len() - 1].upper.is_infinite() && b[b.len() - 1].upper > 0.0) {
        return f64::NAN;
    }
    sort_and_coalesce(&mut b);
    ensure_monotonic(&mut b);
    let count = b[b.len() - 1].count;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    for (i, x) in b.iter().enumerate() {
        let lb = if i > 0 {
            b[i - 1].upper
        } else if x.upper > 0.0 {
            0.0
        } else {
            f64::NEG_INFINITY
        };
        let ub = x.upper;
        let interp = |v: f64| {
            if lb.is_infinite() {
                x.count
            } else if ub.is_infinite() {
                rank
            } else {
                rank + (x.count - rank) * (v - lb) / (ub - lb)
            }
        };
        if !lower_set && lb >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && lb >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && lb < lower && ub > lower {
            lower_rank = interp(lower);
            lower_set = true;
        }
        if !upper_set && lb < upper && ub > upper {
            upper_rank = interp(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank = x.count;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    (upper_rank - lower_rank) / count
}

struct Group {
    labels: Labels,
    name: String,
    members: Vec<(f64, usize)>,
}

/// Groups classic bucket series by their labels without `le`.
fn group_buckets(ev: &mut Evaluator, vs: &[Series], pos: &str) -> Vec<Group> {
    let mut idx: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    for (si, s) in vs.iter().enumerate() {
        if s.vals.iter().all(|v| v.is_none()) {
            // Native histograms only.
            continue;
        }
        let le = s.labels.get("le").unwrap_or("");
        let name = s.labels.metric_name().unwrap_or("").to_string();
        let Some(upper) = parse_le(le) else {
            ev.warn(format!(
                "bucket label \"le\" is missing or has a malformed value of {le:?} for metric name {name:?} {pos}"
            ));
            continue;
        };
        let key = s.labels.drop_names(&["le"]);
        let gi = *idx.entry(key.clone()).or_insert_with(|| {
            groups.push(Group {
                labels: key,
                name: name.clone(),
                members: vec![],
            });
            groups.len() - 1
        });
        groups[gi].members.push((upper, si));
    }
    groups
}

/// Where a native histogram and classic buckets share a label set at a step,
/// Prometheus evaluates neither and warns: clears both at that step.
fn drop_mixed(ev: &mut Evaluator, vs: &mut [Series], groups: &[Group], pos: &str) {
    let by_key: HashMap<&Labels, &Group> = groups.iter().map(|g| (&g.labels, g)).collect();
    for ni in 0..vs.len() {
        if vs[ni].hvals.is_empty() {
            continue;
        }
        let Some(g) = by_key.get(&vs[ni].labels) else {
            continue;
        };
        for i in 0..vs[ni].hvals.len() {
            if vs[ni].hvals[i].is_none() || buckets_at(g, vs, i).is_empty() {
                continue;
            }
            ev.warn(format!(
                "vector contains a mix of classic and native histograms for metric name {:?} {pos}",
                vs[ni].labels.metric_name().unwrap_or("")
            ));
            vs[ni].hvals[i] = None;
            for &(_, si) in &g.members {
                vs[si].vals[i] = None;
            }
        }
    }
}

fn buckets_at(g: &Group, vs: &[Series], i: usize) -> Vec<Bucket> {
    g.members
        .iter()
        .filter_map(|&(upper, si)| vs[si].vals[i].map(|count| Bucket { upper, count }))
        .collect()
}

pub(crate) fn histogram_quantile(
    ev: &mut Evaluator,
    _c: &Call,
    args: &[&Expr],
    r: &Steps,
) -> Result<Val> {
    let q = ev.eval_scalar(args[0], r)?;
    let mut vs = with_hist_stats(ev, false, |ev| ev.eval_vector(args[1], r))?;
    warn_quantile(ev, &q, args[0]);
    let pos = ev.pos(args[1]);
    Ok(Val::Vector(quantiles_of(ev, &mut vs, &q, &pos)))
}

fn warn_quantile(ev: &mut Evaluator, q: &[f64], arg: &Expr) {
    if let Some(bad) = q.iter().find(|q| q.is_nan() || **q < 0.0 || **q > 1.0) {
        let m = format!(
            "quantile value should be between 0 and 1, got {} {}",
            go_g(*bad),
            ev.pos(arg)
        );
        ev.warn(m);
    }
}

/// `histogram_quantiles(v, "label", q1, q2, ...)`: one series per quantile,
/// labelled with it.
pub(crate) fn histogram_quantiles(ev: &mut Evaluator, args: &[&Expr], r: &Steps) -> Result<Val> {
    let mut vs = with_hist_stats(ev, false, |ev| ev.eval_vector(args[0], r))?;
    let label = match super::eval::unparen(args[1]) {
        Expr::StringLiteral(s) => s.val.clone(),
        _ => return Err(super::QueryError::BadData("expected a label name".into())),
    };
    let pos = ev.pos(args[0]);
    let mut out = Vec::new();
    for qe in &args[2..] {
        let q = ev.eval_scalar(qe, r)?;
        warn_quantile(ev, &q, qe);
        let mut qs = super::eval::go_f(q[0]);
        if q[0].is_finite() && !qs.contains(['.', 'e']) {
            qs.push_str(".0");
        }
        for mut s in quantiles_of(ev, &mut vs, &q, &pos) {
            let mut b = crate::model::LabelsBuilder::new(&s.labels);
            b.set(label.clone(), qs.clone());
            s.labels = b.labels();
            out.push(s);
        }
    }
    Ok(Val::Vector(out))
}

/// One float series per native-histogram series: `f(step, histogram)`.
fn per_native(vs: &[Series], f: impl Fn(usize, &FloatHistogram) -> f64) -> Vec<Series> {
    vs.iter()
        .filter(|s| s.hvals.iter().any(Option::is_some))
        .map(|s| Series {
            labels: s.labels.clone(),
            drop_name: true,
            vals: s
                .hvals
                .iter()
                .enumerate()
                .map(|(i, h)| h.as_ref().map(|h| f(i, h)))
                .collect(),
            hvals: vec![],
        })
        .collect()
}

/// Prometheus's infos for native histograms with NaN observations:
/// `what(step, histogram)` names the effect, if any.
fn nan_observations(
    ev: &mut Evaluator,
    vs: &[Series],
    pos: &str,
    what: impl Fn(usize, &FloatHistogram) -> Option<&'static str>,
) {
    for s in vs {
        for (i, h) in s.hvals.iter().enumerate() {
            let Some(msg) = h
                .as_ref()
                .filter(|h| h.sum.is_nan())
                .and_then(|h| what(i, h))
            else {
                continue;
            };
            ev.info(format!(
                "{msg} for metric name {:?} {pos}",
                s.labels.metric_name().unwrap_or("")
            ));
        }
    }
}

fn quantiles_of(ev: &mut Evaluator, vs: &mut [Series], q: &[f64], pos: &str) -> Vec<Series> {
    let groups = group_buckets(ev, vs, pos);
    drop_mixed(ev, vs, &groups, pos);
    let vs = &*vs;
    let mut out = per_native(vs, |i, h| h.quantile(q[i]));
    nan_observations(ev, vs, pos, |i, h| match h.quantile_nan(q[i]).1 {
        NanObservations::None => None,
        NanObservations::ResultNaN => {
            Some("input to histogram_quantile has NaN observations, result is NaN")
        }
        NanObservations::Skewed => {
            Some("input to histogram_quantile has NaN observations, result is skewed higher")
        }
    });
    for g in groups {
        let mut forced_any = false;
        let vals: Vec<Option<f64>> = (0..q.len())
            .map(|i| {
                let b = buckets_at(&g, vs, i);
                if b.is_empty() {
                    return None;
                }
                let (v, forced) = bucket_quantile(q[i], b);
                forced_any |= forced;
                Some(v)
            })
            .collect();
        if forced_any {
            ev.info(format!(
                "input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name {:?} {pos}",
                g.name
            ));
        }
        if vals.iter().any(|v| v.is_some()) {
            out.push(Series {
                hvals: vec![],
                labels: g.labels,
                drop_name: true,
                vals,
            });
        }
    }
    out
}

pub(crate) fn histogram_fraction(ev: &mut Evaluator, args: &[&Expr], r: &Steps) -> Result<Val> {
    let lo = ev.eval_scalar(args[0], r)?;
    let hi = ev.eval_scalar(args[1], r)?;
    let mut vs = with_hist_stats(ev, false, |ev| ev.eval_vector(args[2], r))?;
    let pos = ev.pos(args[2]);
    let groups = group_buckets(ev, &vs, &pos);
    drop_mixed(ev, &mut vs, &groups, &pos);
    let mut out = per_native(&vs, |i, h| h.fraction(lo[i], hi[i]));
    nan_observations(ev, &vs, &pos, |i, h| {
        h.fraction_nan(lo[i], hi[i]).1.then_some(
            "input to histogram_fraction has NaN observations, which are excluded from all fractions",
        )
    });
    for g in groups {
        let vals: Vec<Option<f64>> = (0..r.len())
            .map(|i| {
                let b = buckets_at(&g, &vs, i);
                (!b.is_empty()).then(|| bucket_fraction(lo[i], hi[i], b))
            })
            .collect();
        if vals.iter().any(|v| v.is_some()) {
            out.push(Series {
                hvals: vec![],
                labels: g.labels,
                drop_name: true,
                vals,
            });
        }
    }
    Ok(Val::Vector(out))
}
