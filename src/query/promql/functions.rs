//! PromQL functions over floats (Prometheus's `promql/functions.go`).

use chrono::{DateTime, Datelike, NaiveDate, Timelike};
use promql_parser::parser::{Call, Expr};

use super::eval::{
    go_g, hwindow, unparen, window, Cursor, Evaluator, RangeArg, Result, Series, Steps, Val, H,
};
use super::native::{floats_only, push_out, range_step, Site, Window};
use super::QueryError;
use crate::model::{Labels, LabelsBuilder, MatchOp, Sample, METRIC_NAME};

pub(crate) fn eval_call(ev: &mut Evaluator, c: &Call, r: &Steps) -> Result<Val> {
    let name = c.func.name;
    let args: Vec<&Expr> = c.args.args.iter().map(|b| b.as_ref()).collect();
    if !ev.experimental && super::parse::is_experimental_function(name) {
        return Err(QueryError::BadData(format!(
            "function \"{name}\" is not enabled"
        )));
    }
    let n = r.len();
    match name {
        "time" => Ok(Val::Scalar(
            (0..n).map(|i| r.t(i) as f64 / 1000.0).collect(),
        )),
        "pi" => Ok(Val::Scalar(vec![std::f64::consts::PI; n])),
        "step" => Ok(Val::Scalar(vec![ev.qstep as f64 / 1000.0; n])),
        "range" => Ok(Val::Scalar(vec![(ev.qend - ev.qstart) as f64 / 1000.0; n])),
        "start" => Ok(Val::Scalar(vec![ev.qstart as f64 / 1000.0; n])),
        "min_of" | "max_of" => {
            let a = ev.eval_scalar(args[0], r)?;
            let b = ev.eval_scalar(args[1], r)?;
            Ok(Val::Scalar(
                a.iter()
                    .zip(&b)
                    .map(|(x, y)| match (x.is_nan() || y.is_nan(), name) {
                        (true, _) => f64::NAN,
                        (_, "min_of") => x.min(*y),
                        _ => x.max(*y),
                    })
                    .collect(),
            ))
        }
        "histogram_quantiles" => super::histogram::histogram_quantiles(ev, &args, r),
        "end" => Ok(Val::Scalar(vec![ev.qend as f64 / 1000.0; n])),
        "vector" => {
            let v = ev.eval_scalar(args[0], r)?;
            Ok(Val::Vector(vec![Series {
                hvals: vec![],
                labels: Labels::empty(),
                drop_name: false,
                vals: v.into_iter().map(Some).collect(),
            }]))
        }
        "scalar" => {
            let vs = ev.eval_vector(args[0], r)?;
            Ok(Val::Scalar(
                (0..n)
                    .map(|i| {
                        let mut it = vs.iter().filter_map(|s| s.vals[i]);
                        match (it.next(), it.next()) {
                            (Some(v), None) => v,
                            _ => f64::NAN,
                        }
                    })
                    .collect(),
            ))
        }
        "timestamp" => {
            if let Expr::VectorSelector(vs) = unparen(args[0]) {
                let mut out = ev.eval_vector_selector(vs, r, true)?;
                for s in &mut out {
                    s.drop_name = true;
                }
                return Ok(Val::Vector(out));
            }
            let mut out = ev.eval_vector(args[0], r)?;
            for s in &mut out {
                s.drop_name = true;
                let hvals = std::mem::take(&mut s.hvals);
                for (i, v) in s.vals.iter_mut().enumerate() {
                    if v.is_some() || hvals.get(i).is_some_and(|h| h.is_some()) {
                        *v = Some(r.t(i) as f64 / 1000.0);
                    }
                }
            }
            Ok(Val::Vector(out))
        }
        "absent" => {
            let vs = ev.eval_vector(args[0], r)?;
            let labels = absent_labels(args[0]);
            let vals: Vec<Option<f64>> = (0..n)
                .map(|i| {
                    (!vs.iter().any(|s| s.vals[i].is_some() || s.h(i).is_some())).then_some(1.0)
                })
                .collect();
            Ok(Val::Vector(non_empty(vec![Series {
                hvals: vec![],
                labels,
                drop_name: false,
                vals,
            }])))
        }
        "label_replace" => label_replace(ev, &args, r),
        "label_join" => label_join(ev, &args, r),
        "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc" => {
            let mut vs = ev.eval_vector(args[0], r)?;
            if matches!(name, "sort" | "sort_desc") {
                vs = floats_only(vs);
            }
            if n > 1 || r.start != r.end {
                {
                    ev.warn(format!(
                        "sort is ineffective for range queries since results are always ordered by labels {}",
                        ev.pos(&Expr::Call(c.clone()))
                    ));
                }
                return Ok(Val::Vector(vs));
            }
            match name {
                "sort" | "sort_desc" => {
                    let desc = name == "sort_desc";
                    vs.sort_by(|a, b| {
                        let (x, y) = (a.vals[0].unwrap_or(0.0), b.vals[0].unwrap_or(0.0));
                        // NaN sorts last in both directions.
                        match (x.is_nan(), y.is_nan()) {
                            (true, true) => std::cmp::Ordering::Equal,
                            (true, false) => std::cmp::Ordering::Greater,
                            (false, true) => std::cmp::Ordering::Less,
                            _ if desc => y.partial_cmp(&x).unwrap(),
                            _ => x.partial_cmp(&y).unwrap(),
                        }
                    });
                }
                _ => {
                    let names: Vec<String> = args[1..].iter().map(|a| string_arg(a)).collect();
                    let desc = name == "sort_by_label_desc";
                    vs.sort_by(|a, b| {
                        for l in &names {
                            let (x, y) =
                                (a.labels.get(l).unwrap_or(""), b.labels.get(l).unwrap_or(""));
                            let o = natural_cmp(x, y);
                            if o != std::cmp::Ordering::Equal {
                                return if desc { o.reverse() } else { o };
                            }
                        }
                        let o = a.labels.cmp(&b.labels);
                        if desc {
                            o.reverse()
                        } else {
                            o
                        }
                    });
                }
            }
            Ok(Val::Vector(vs))
        }
        "histogram_quantile" => super::histogram::histogram_quantile(ev, c, &args, r),
        "histogram_fraction" => super::histogram::histogram_fraction(ev, &args, r),
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev"
        | "histogram_stdvar" => super::native::histogram_stat(ev, name, args[0], r),
        "info" => super::info::info(ev, &args, r),
        "round" => {
            let to = if args.len() > 1 {
                ev.eval_scalar(args[1], r)?
            } else {
                vec![1.0; n]
            };
            map_vector(ev, args[0], r, |i, v| {
                let inv = 1.0 / to[i];
                (v * inv + 0.5).floor() / inv
            })
        }
        "clamp" => {
            let lo = ev.eval_scalar(args[1], r)?;
            let hi = ev.eval_scalar(args[2], r)?;
            let mut vs = floats_only(ev.eval_vector(args[0], r)?);
            for s in &mut vs {
                s.drop_name = true;
                for (i, v) in s.vals.iter_mut().enumerate() {
                    if let Some(x) = *v {
                        *v = if hi[i] < lo[i] {
                            None
                        } else {
                            Some(go_max(lo[i], go_min(hi[i], x)))
                        };
                    }
                }
            }
            Ok(Val::Vector(non_empty(vs)))
        }
        "clamp_min" => {
            let lo = ev.eval_scalar(args[1], r)?;
            map_vector(ev, args[0], r, |i, v| go_max(lo[i], v))
        }
        "clamp_max" => {
            let hi = ev.eval_scalar(args[1], r)?;
            map_vector(ev, args[0], r, |i, v| go_min(hi[i], v))
        }
        "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month" | "hour" | "minute"
        | "month" | "year" => {
            let f = date_fn(name);
            if args.is_empty() {
                return Ok(Val::Vector(vec![Series {
                    hvals: vec![],
                    labels: Labels::empty(),
                    drop_name: false,
                    vals: (0..n).map(|i| Some(f(r.t(i) as f64 / 1000.0))).collect(),
                }]));
            }
            map_vector(ev, args[0], r, |_, v| f(v))
        }
        _ => {
            if let Some(f) = simple_fn(name) {
                return map_vector(ev, args[0], r, |_, v| f(v));
            }
            range_function(ev, c, &args, r)
        }
    }
}

fn non_empty(mut v: Vec<Series>) -> Vec<Series> {
    v.retain(|s| s.has_any());
    v
}

fn string_arg(e: &Expr) -> String {
    match unparen(e) {
        Expr::StringLiteral(s) => s.val.clone(),
        other => other.to_string(),
    }
}

/// Applies `f(step, value)` to every value; the metric name is dropped.
fn map_vector(
    ev: &mut Evaluator,
    arg: &Expr,
    r: &Steps,
    f: impl Fn(usize, f64) -> f64,
) -> Result<Val> {
    let mut vs = floats_only(ev.eval_vector(arg, r)?);
    for s in &mut vs {
        s.drop_name = true;
        for (i, v) in s.vals.iter_mut().enumerate() {
            if let Some(x) = v {
                *x = f(i, *x);
            }
        }
    }
    Ok(Val::Vector(vs))
}

fn simple_fn(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sgn" => |v: f64| {
            if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                v
            }
        },
        "acos" => f64::acos,
        "acosh" => f64::acosh,
        "asin" => f64::asin,
        "asinh" => f64::asinh,
        "atan" => f64::atan,
        "atanh" => f64::atanh,
        "cos" => f64::cos,
        "cosh" => f64::cosh,
        "sin" => f64::sin,
        "sinh" => f64::sinh,
        "tan" => f64::tan,
        "tanh" => f64::tanh,
        "deg" => |v: f64| v * 180.0 / std::f64::consts::PI,
        "rad" => |v: f64| v * std::f64::consts::PI / 180.0,
        _ => return None,
    })
}

fn date_fn(name: &str) -> fn(f64) -> f64 {
    fn dt(v: f64) -> Option<DateTime<chrono::Utc>> {
        if !v.is_finite() {
            return None;
        }
        DateTime::from_timestamp(v as i64, 0)
    }
    fn wrap(v: f64, f: impl Fn(DateTime<chrono::Utc>) -> f64) -> f64 {
        dt(v).map(f).unwrap_or(f64::NAN)
    }
    match name {
        "day_of_month" => |v| wrap(v, |d| d.day() as f64),
        "day_of_week" => |v| wrap(v, |d| d.weekday().num_days_from_sunday() as f64),
        "day_of_year" => |v| wrap(v, |d| d.ordinal() as f64),
        "days_in_month" => |v| {
            wrap(v, |d| {
                let (y, m) = if d.month() == 12 {
                    (d.year() + 1, 1)
                } else {
                    (d.year(), d.month() + 1)
                };
                let first_next = NaiveDate::from_ymd_opt(y, m, 1).unwrap();
                first_next.pred_opt().unwrap().day() as f64
            })
        },
        "hour" => |v| wrap(v, |d| d.hour() as f64),
        "minute" => |v| wrap(v, |d| d.minute() as f64),
        "month" => |v| wrap(v, |d| d.month() as f64),
        _ => |v| wrap(v, |d| d.year() as f64),
    }
}

/// Labels of `absent()`'s output: the selector's equality matchers.
fn absent_labels(e: &Expr) -> Labels {
    let vs = match unparen(e) {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Labels::empty(),
    };
    let mut b = LabelsBuilder::new(&Labels::empty());
    let mut has = std::collections::HashSet::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        let eq = matches!(m.op, promql_parser::label::MatchOp::Equal);
        if eq && !has.contains(&m.name) {
            b.set(m.name.clone(), m.value.clone());
            has.insert(m.name.clone());
        } else {
            b.del(&m.name);
        }
    }
    let _ = MatchOp::Equal;
    b.labels()
}

/// Merges series that ended up with the same labels; overlapping steps are
/// Prometheus's "same labelset" error.
pub(crate) fn merge_same_labels(vs: Vec<Series>) -> Result<Vec<Series>> {
    let mut idx: std::collections::HashMap<(Labels, bool), usize> = Default::default();
    let mut out: Vec<Series> = Vec::with_capacity(vs.len());
    for s in vs {
        match idx.get(&(s.labels.clone(), s.drop_name)) {
            Some(&i) => {
                let o = &mut out[i];
                let n = o.vals.len();
                if !s.hvals.is_empty() && o.hvals.is_empty() {
                    o.hvals = vec![None; n];
                }
                let mut hs = s.hvals.into_iter();
                for (k, b) in s.vals.into_iter().enumerate() {
                    let h = hs.next().flatten();
                    if b.is_none() && h.is_none() {
                        continue;
                    }
                    if o.present(k) {
                        return Err(QueryError::Execution(
                            "vector cannot contain metrics with the same labelset".into(),
                        ));
                    }
                    o.vals[k] = b;
                    if h.is_some() {
                        o.hvals[k] = h;
                    }
                }
            }
            None => {
                idx.insert((s.labels.clone(), s.drop_name), out.len());
                out.push(s);
            }
        }
    }
    Ok(out)
}

/// Prometheus 3 accepts any non-empty valid UTF-8 label name.
pub(crate) fn valid_label_name(s: &str) -> bool {
    !s.is_empty() && !super::parse::has_raw_bytes(s)
}

fn label_replace(ev: &mut Evaluator, args: &[&Expr], r: &Steps) -> Result<Val> {
    let dst = string_arg(args[1]);
    let repl = string_arg(args[2]);
    let src = string_arg(args[3]);
    let re_src = string_arg(args[4]);
    let re = regex::Regex::new(&format!("^(?s:{re_src})$")).map_err(|e| {
        QueryError::Execution(format!(
            "invalid regular expression in label_replace(): {re_src}: {e}"
        ))
    })?;
    if !valid_label_name(&dst) {
        return Err(QueryError::Execution(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let vs = ev.eval_vector(args[0], r)?;
    let mut out = Vec::with_capacity(vs.len());
    for mut s in vs {
        let val = s.labels.get(&src).unwrap_or("").to_string();
        if let Some(caps) = re.captures(&val) {
            let mut res = String::new();
            caps.expand(&repl, &mut res);
            let mut b = LabelsBuilder::new(&s.labels);
            b.set(dst.clone(), res);
            s.labels = b.labels();
            if dst == METRIC_NAME {
                s.drop_name = false;
            }
        }
        out.push(s);
    }
    Ok(Val::Vector(merge_same_labels(out)?))
}

fn label_join(ev: &mut Evaluator, args: &[&Expr], r: &Steps) -> Result<Val> {
    let dst = string_arg(args[1]);
    let sep = string_arg(args[2]);
    let srcs: Vec<String> = args[3..].iter().map(|a| string_arg(a)).collect();
    if !valid_label_name(&dst) {
        return Err(QueryError::Execution(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    let vs = ev.eval_vector(args[0], r)?;
    let mut out = Vec::with_capacity(vs.len());
    for mut s in vs {
        let joined = srcs
            .iter()
            .map(|l| s.labels.get(l).unwrap_or(""))
            .collect::<Vec<_>>()
            .join(&sep);
        let mut b = LabelsBuilder::new(&s.labels);
        b.set(dst.clone(), joined);
        s.labels = b.labels();
        if dst == METRIC_NAME {
            s.drop_name = false;
        }
        out.push(s);
    }
    Ok(Val::Vector(merge_same_labels(out)?))
}

/// Compares strings with runs of digits compared numerically.
pub(crate) fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].is_ascii_digit() && b[j].is_ascii_digit() {
            let si = i;
            while i < a.len() && a[i].is_ascii_digit() {
                i += 1;
            }
            let sj = j;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let x = std::str::from_utf8(&a[si..i])
                .unwrap()
                .trim_start_matches('0');
            let y = std::str::from_utf8(&b[sj..j])
                .unwrap()
                .trim_start_matches('0');
            let o = x.len().cmp(&y.len()).then_with(|| x.cmp(y));
            if o != Ordering::Equal {
                return o;
            }
        } else {
            if a[i] != b[j] {
                return a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
    }
    (a.len() - i).cmp(&(b.len() - j))
}

pub(crate) use crate::model::kahan_inc;

/// Prometheus's `quantile` over unsorted values.
pub(crate) fn quantile(q: f64, vals: &mut [f64]) -> f64 {
    if vals.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    vals.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap(),
    });
    let n = vals.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let w = rank - rank.floor();
    vals[lower as usize] * (1.0 - w) + vals[upper as usize] * w
}

/// Mean with Kahan summation, switching to the incremental mean on overflow
/// (Prometheus's `avg_over_time`).
pub(crate) fn kahan_mean(vals: impl Iterator<Item = f64>) -> f64 {
    let mut it = vals;
    let Some(first) = it.next() else {
        return f64::NAN;
    };
    let (mut sum, mut count, mut mean, mut c) = (first, 1.0f64, 0.0f64, 0.0f64);
    let mut incremental = false;
    for f in it {
        count += 1.0;
        if !incremental {
            let (ns, nc) = kahan_inc(f, sum, c);
            if !ns.is_infinite() {
                sum = ns;
                c = nc;
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        if mean.is_infinite() {
            if f.is_infinite() && (mean > 0.0) == (f > 0.0) {
                continue;
            }
            if !f.is_infinite() && !f.is_nan() {
                continue;
            }
        }
        let q = (count - 1.0) / count;
        let (m, nc) = kahan_inc(f / count, q * mean, q * c);
        mean = m;
        c = nc;
    }
    if incremental {
        mean + c
    } else {
        sum / count + c / count
    }
}

/// Slope and intercept of the least-squares line through the samples.
fn linear_regression(s: &[Sample], intercept_t: i64) -> (f64, f64) {
    let (mut n, mut sx, mut cx, mut sy, mut cy, mut sxy, mut cxy, mut sx2, mut cx2) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let init_y = s[0].v;
    let mut const_y = true;
    for (i, p) in s.iter().enumerate() {
        if const_y && i > 0 && p.v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (p.t - intercept_t) as f64 / 1e3;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(p.v, sy, cy);
        (sxy, cxy) = kahan_inc(x * p.v, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    sx += cx;
    sy += cy;
    sxy += cxy;
    sx2 += cx2;
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

/// Prometheus's extrapolated rate/increase/delta.
fn extrapolated_rate(
    s: &[Sample],
    mint: i64,
    maxt: i64,
    range: i64,
    counter: bool,
    rate: bool,
) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let n1 = s.len() - 1;
    let mut result = s[n1].v - s[0].v;
    if counter {
        let mut prev = s[0].v;
        for p in &s[1..] {
            if p.v < prev {
                result += prev;
            }
            prev = p.v;
        }
    }
    let factor = extrapolation_factor(
        (s[0].t, s[n1].t, n1),
        (mint, maxt, range),
        counter,
        rate,
        (s[0].v, result),
    );
    Some(result * factor)
}

/// Prometheus's extrapolation of a window's increase to the window edges:
/// `(first_t, last_t, samples - 1)`, `(mint, maxt, range)`, and for
/// counters `(first value, increase)` (counts for histograms) to stop at
/// the counter's zero point.
pub(crate) fn extrapolation_factor(
    (first_t, last_t, n1): (i64, i64, usize),
    (mint, maxt, range): (i64, i64, i64),
    counter: bool,
    rate: bool,
    (first, result): (f64, f64),
) -> f64 {
    let mut to_start = (first_t - mint) as f64 / 1000.0;
    let mut to_end = (maxt - last_t) as f64 / 1000.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let avg = sampled / n1 as f64;
    let threshold = avg * 1.1;
    let mut interval = sampled;
    if to_start >= threshold {
        to_start = avg / 2.0;
    }
    if counter && result > 0.0 && first >= 0.0 {
        let to_zero = sampled * (first / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    interval += to_start;
    if to_end >= threshold {
        to_end = avg / 2.0;
    }
    interval += to_end;
    let mut factor = interval / sampled;
    if rate {
        factor /= range as f64 / 1000.0;
    }
    factor
}

fn instant_value(s: &[Sample], rate: bool) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let (a, b) = (s[s.len() - 2], s[s.len() - 1]);
    let dt = b.t - a.t;
    if dt == 0 {
        return None;
    }
    let mut v = b.v;
    if !rate || b.v >= a.v || b.v.is_nan() || a.v.is_nan() {
        v = b.v - a.v;
    }
    if rate {
        v /= dt as f64 / 1000.0;
    }
    Some(v)
}

fn stdvar(s: &[Sample]) -> f64 {
    let (mut count, mut mean, mut cmean, mut aux, mut caux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for p in s {
        count += 1.0;
        let delta = p.v - (mean + cmean);
        (mean, cmean) = kahan_inc(delta / count, mean, cmean);
        (aux, caux) = kahan_inc(delta * (p.v - (mean + cmean)), aux, caux);
    }
    (aux + caux) / count
}

/// The values of scalar argument `i` at every step; empty when the call
/// has no such argument (the parser checked the arity, so a function that
/// reads it has it).
fn scalar_param(ev: &mut Evaluator, args: &[&Expr], i: usize, r: &Steps) -> Result<Vec<f64>> {
    match args.get(i) {
        Some(e) => ev.eval_scalar(e, r),
        None => Ok(Vec::new()),
    }
}

/// A range function: window samples, step index, window bounds.
type RangeFn<'a> = dyn Fn(&[Sample], usize, i64, i64) -> Option<f64> + 'a;

fn range_function(ev: &mut Evaluator, c: &Call, args: &[&Expr], r: &Steps) -> Result<Val> {
    let name = c.func.name;
    let n = r.len();
    // Index of the range-vector argument.
    let mi = match name {
        "quantile_over_time" => 1,
        _ => 0,
    };
    let Some(marg) = args.get(mi) else {
        return Err(QueryError::BadData(format!("unknown function {name}")));
    };
    let p0 = if name == "quantile_over_time" {
        scalar_param(ev, args, 0, r)?
    } else {
        scalar_param(ev, args, 1, r)?
    };
    let p1 = scalar_param(ev, args, 2, r)?;
    let mut arg: RangeArg = ev.eval_range_arg(marg, r)?;
    let keep_name = matches!(name, "last_over_time" | "first_over_time");
    if let Some(mode) = arg.mode {
        return super::extended::anchored_or_smoothed(ev, name, mode, &arg, r);
    }
    if name == "absent_over_time" {
        let vals = (0..n)
            .map(|i| {
                let (mint, maxt) = arg.window(r, i);
                (!arg.series.iter().any(|s| {
                    !window(&s.samples, mint, maxt).is_empty()
                        || !hwindow(&s.hists, mint, maxt).is_empty()
                }))
                .then_some(1.0)
            })
            .collect();
        return Ok(Val::Vector(non_empty(vec![Series {
            hvals: vec![],
            labels: absent_labels(marg),
            drop_name: false,
            vals,
        }])));
    }
    if matches!(name, "rate" | "increase") {
        for s in &arg.series {
            if let Some(mn) = s.labels.metric_name() {
                if !["_total", "_sum", "_count", "_bucket"]
                    .iter()
                    .any(|suf| mn.ends_with(suf))
                {
                    let m = format!(
                        "metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {:?} {}",
                        mn,
                        ev.pos(marg)
                    );
                    ev.info(m);
                }
            }
        }
    }
    if matches!(name, "quantile_over_time") {
        for q in &p0 {
            if q.is_nan() || *q < 0.0 || *q > 1.0 {
                let m = format!(
                    "quantile value should be between 0 and 1, got {} {}",
                    go_g(*q),
                    ev.pos(args[0])
                );
                ev.warn(m);
                break;
            }
        }
    }
    if name == "double_exponential_smoothing" {
        if let Some(sf) = p0.iter().find(|v| **v <= 0.0 || **v >= 1.0) {
            return Err(QueryError::Execution(format!(
                "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
            )));
        }
        if let Some(tf) = p1.iter().find(|v| **v <= 0.0 || **v >= 1.0) {
            return Err(QueryError::Execution(format!(
                "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
            )));
        }
    }
    let f: Box<RangeFn> = match name {
        "rate" => Box::new(|s, _, lo, hi| extrapolated_rate(s, lo, hi, arg.range, true, true)),
        "increase" => Box::new(|s, _, lo, hi| extrapolated_rate(s, lo, hi, arg.range, true, false)),
        "delta" => Box::new(|s, _, lo, hi| extrapolated_rate(s, lo, hi, arg.range, false, false)),
        "irate" => Box::new(|s, _, _, _| instant_value(s, true)),
        "idelta" => Box::new(|s, _, _, _| instant_value(s, false)),
        "deriv" => Box::new(|s, _, _, _| (s.len() >= 2).then(|| linear_regression(s, s[0].t).0)),
        "predict_linear" => Box::new(|s, i, _, _| {
            (s.len() >= 2).then(|| {
                let t = r.t(i);
                let (slope, icpt) = linear_regression(s, t);
                slope * p0[i] + icpt
            })
        }),
        "resets" => {
            Box::new(|s, _, _, _| Some(s.windows(2).filter(|w| w[1].v < w[0].v).count() as f64))
        }
        "changes" => Box::new(|s, _, _, _| {
            Some(
                s.windows(2)
                    .filter(|w| !(w[1].v == w[0].v || (w[1].v.is_nan() && w[0].v.is_nan())))
                    .count() as f64,
            )
        }),
        "avg_over_time" => Box::new(|s, _, _, _| Some(kahan_mean(s.iter().map(|p| p.v)))),
        "sum_over_time" => Box::new(|s, _, _, _| {
            let (mut sum, mut c) = (0.0, 0.0);
            for p in s {
                (sum, c) = kahan_inc(p.v, sum, c);
            }
            Some(if sum.is_infinite() { sum } else { sum + c })
        }),
        "count_over_time" => Box::new(|s, _, _, _| Some(s.len() as f64)),
        "min_over_time" => Box::new(|s, _, _, _| {
            let mut m = s[0].v;
            for p in s {
                if p.v < m || m.is_nan() {
                    m = p.v;
                }
            }
            Some(m)
        }),
        "max_over_time" => Box::new(|s, _, _, _| {
            let mut m = s[0].v;
            for p in s {
                if p.v > m || m.is_nan() {
                    m = p.v;
                }
            }
            Some(m)
        }),
        "ts_of_min_over_time" => Box::new(|s, _, _, _| {
            let (mut m, mut t) = (s[0].v, s[0].t);
            for p in s {
                if p.v <= m || m.is_nan() {
                    (m, t) = (p.v, p.t);
                }
            }
            Some(t as f64 / 1000.0)
        }),
        "ts_of_max_over_time" => Box::new(|s, _, _, _| {
            let (mut m, mut t) = (s[0].v, s[0].t);
            for p in s {
                if p.v >= m || m.is_nan() {
                    (m, t) = (p.v, p.t);
                }
            }
            Some(t as f64 / 1000.0)
        }),
        "ts_of_last_over_time" => Box::new(|s, _, _, _| Some(s[s.len() - 1].t as f64 / 1000.0)),
        "ts_of_first_over_time" => Box::new(|s, _, _, _| Some(s[0].t as f64 / 1000.0)),
        "stddev_over_time" => Box::new(|s, _, _, _| Some(stdvar(s).sqrt())),
        "stdvar_over_time" => Box::new(|s, _, _, _| Some(stdvar(s))),
        "last_over_time" => Box::new(|s, _, _, _| Some(s[s.len() - 1].v)),
        "first_over_time" => Box::new(|s, _, _, _| Some(s[0].v)),
        "present_over_time" => Box::new(|_, _, _, _| Some(1.0)),
        "quantile_over_time" => Box::new(|s, i, _, _| {
            let mut v: Vec<f64> = s.iter().map(|p| p.v).collect();
            Some(quantile(p0[i], &mut v))
        }),
        "mad_over_time" => Box::new(|s, _, _, _| {
            if s.iter().any(|p| p.v.is_nan()) {
                return Some(f64::NAN);
            }
            let mut v: Vec<f64> = s.iter().map(|p| p.v).collect();
            let med = quantile(0.5, &mut v);
            let mut d: Vec<f64> = v.iter().map(|x| (x - med).abs()).collect();
            Some(quantile(0.5, &mut d))
        }),
        "double_exponential_smoothing" => Box::new(|s, i, _, _| {
            if s.len() < 2 {
                return None;
            }
            let (sf, tf) = (p0[i], p1[i]);
            let (mut s0, mut s1, mut b) = (0.0, s[0].v, s[1].v - s[0].v);
            for (j, p) in s.iter().enumerate().skip(1) {
                let x = sf * p.v;
                if j > 1 {
                    b = tf * (s1 - s0) + (1.0 - tf) * b;
                }
                let y = (1.0 - sf) * (s1 + b);
                s0 = s1;
                s1 = x + y;
            }
            Some(s1)
        }),
        _ => {
            return Err(QueryError::BadData(format!(
                "function {name} is not supported"
            )))
        }
    };
    let mut out = Vec::with_capacity(arg.series.len());
    let mut held = 0;
    // Only native-histogram annotations need the position: made on demand.
    let mut pos: Option<String> = None;
    let released: usize = arg.series.iter().map(|s| s.samples.len()).sum();
    // Each series' labels move into its result (no copy per series).
    let series: Vec<super::eval::Raw> = std::mem::take(&mut arg.series);
    for s in series {
        let mut vals: Vec<Option<f64>> = Vec::with_capacity(n);
        let mut hvals: Vec<Option<H>> = vec![];
        let metric = s.labels.metric_name().unwrap_or("");
        let (mut fc, mut hc) = (Cursor::default(), Cursor::default());
        for i in 0..n {
            let (mint, maxt) = arg.window(r, i);
            let w = fc.window(&s.samples, |x| x.t, mint, maxt);
            let hw = hc.window(&s.hists, |x| x.t, mint, maxt);
            if hw.is_empty() {
                vals.push(if w.is_empty() {
                    None
                } else {
                    f(w, i, mint, maxt)
                });
                continue;
            }
            let win = Window {
                floats: w,
                hists: hw,
                mint,
                maxt,
                range: arg.range,
            };
            let pos = pos.get_or_insert_with(|| ev.pos(marg));
            let site = Site { metric, pos };
            let o = range_step(ev, name, &win, &site, &|w| f(w, i, mint, maxt));
            push_out(&mut vals, &mut hvals, n, i, o);
        }
        let series = Series {
            labels: s.labels,
            drop_name: s.drop_name || !keep_name,
            vals,
            hvals,
        };
        if series.has_any() {
            held += series.vals.iter().filter(|v| v.is_some()).count();
            out.push(series);
        }
        if out.len() % 256 == 0 {
            ev.check_deadline()?;
        }
    }
    ev.release(released);
    ev.hold(held)?;
    Ok(Val::Vector(out))
}

/// Go's `math.Max`: +Inf wins over NaN, NaN over numbers, +0 over -0.
fn go_max(x: f64, y: f64) -> f64 {
    if x == f64::INFINITY || y == f64::INFINITY {
        f64::INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && y == 0.0 {
        if x.is_sign_negative() {
            y
        } else {
            x
        }
    } else {
        x.max(y)
    }
}

/// Go's `math.Min`: -Inf wins over NaN, NaN over numbers, -0 over +0.
fn go_min(x: f64, y: f64) -> f64 {
    -go_max(-x, -y)
}
