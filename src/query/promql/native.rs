//! Native histograms in functions: `histogram_count/sum/avg/stddev/stdvar`
//! and the range functions over windows that hold histogram samples
//! (Prometheus's `promql/functions.go` semantics and annotations).

use std::sync::Arc;

use promql_parser::parser::Expr;

use super::eval::{Evaluator, Result, Series, Steps, Val, H};
use crate::model::{CounterResetHint, FloatHistogram, HistogramError, HistogramSample, Sample};

/// One result value of a function step.
pub(crate) enum Out {
    F(f64),
    H(FloatHistogram),
}

/// Where annotations point: the metric name and the `(line:col)` suffix.
pub(crate) struct Site<'a> {
    pub metric: &'a str,
    pub pos: &'a str,
}

impl Site<'_> {
    pub fn mixed_floats(&self, ev: &mut Evaluator) {
        ev.warn(format!(
            "encountered a mix of histograms and floats for metric name {:?} {}",
            self.metric, self.pos
        ));
    }

    pub fn mixed_schemas(&self, ev: &mut Evaluator) {
        ev.warn(format!(
            "vector contains a mix of histograms with exponential and custom buckets schemas for metric name {:?} {}",
            self.metric, self.pos
        ));
    }

    pub fn not_counter(&self, ev: &mut Evaluator) {
        ev.warn(format!(
            "this native histogram metric is not a counter: {:?} {}",
            self.metric, self.pos
        ));
    }

    pub fn not_gauge(&self, ev: &mut Evaluator) {
        ev.warn(format!(
            "this native histogram metric is not a gauge: {:?} {}",
            self.metric, self.pos
        ));
    }

    pub fn ignored_in_range(&self, ev: &mut Evaluator) {
        ev.info(format!(
            "ignored histograms in a range containing both floats and histograms for metric name {:?} {}",
            self.metric, self.pos
        ));
    }
}

/// `mismatched custom buckets were reconciled during <op>`.
pub(crate) fn reconciled(ev: &mut Evaluator, op: &str, pos: &str) {
    ev.info(format!(
        "mismatched custom buckets were reconciled during {op} {pos}"
    ));
}

/// `conflicting counter resets during histogram <op>`.
pub(crate) fn reset_collision(ev: &mut Evaluator, op: &str, pos: &str) {
    ev.warn(format!(
        "conflicting counter resets during histogram {op} {pos}"
    ));
}

/// Tracks the counter-reset hints seen while adding histograms.
#[derive(Default)]
pub(crate) struct HintTracker {
    reset: bool,
    not_reset: bool,
}

impl HintTracker {
    pub fn see(&mut self, h: &FloatHistogram) {
        match h.counter_reset_hint {
            CounterResetHint::Reset => self.reset = true,
            CounterResetHint::NotReset => self.not_reset = true,
            _ => {}
        }
    }

    pub fn collided(&self) -> bool {
        self.reset && self.not_reset
    }
}

/// Sums histograms (`mean`: averages them) as Prometheus does: with
/// Kahan–Neumaier compensation; in an average, the fields whose sum
/// overflows take the compensated incremental mean instead. `None` (with
/// the warning) on mixed schemas.
pub(crate) fn sum_histograms<'h>(
    ev: &mut Evaluator,
    hs: impl Iterator<Item = &'h FloatHistogram>,
    site: &Site,
    mean: bool,
) -> Option<FloatHistogram> {
    let mut acc: Option<(FloatHistogram, FloatHistogram)> = None;
    // The incremental mean, once the sum has overflowed.
    let mut inc: Option<(FloatHistogram, FloatHistogram)> = None;
    let mut hints = HintTracker::default();
    let (mut rec, mut n) = (false, 0.0);
    for h in hs {
        hints.see(h);
        n += 1.0;
        let Some((sum, comp)) = &mut acc else {
            acc = Some((h.clone(), h.compensation()));
            continue;
        };
        if mean && inc.is_none() {
            let (mut s, mut c) = (sum.clone(), comp.clone());
            if s.kahan_add(h, 1.0, &mut c).is_ok() && s.has_infinity() {
                let (mut m, mut mc) = (sum.clone(), comp.clone());
                m.div(n - 1.0);
                mc.div(n - 1.0);
                inc = Some((m, mc));
            }
        }
        if let Some((m, mc)) = &mut inc {
            let q = (n - 1.0) / n;
            m.scale(q);
            mc.scale(q);
            let _ = m.kahan_add(h, 1.0 / n, mc);
        }
        match sum.kahan_add(h, 1.0, comp) {
            Ok(r) => rec |= r,
            Err(HistogramError::MixedSchemas) => {
                site.mixed_schemas(ev);
                return None;
            }
        }
    }
    if hints.collided() {
        reset_collision(ev, "aggregation", site.pos);
    }
    if rec {
        reconciled(ev, "aggregation", site.pos);
    }
    let (sum, comp) = acc?;
    let mut out = sum.compensated(&comp);
    if mean {
        out.div(n);
        if let Some((m, mc)) = inc {
            out.replace_infinite(&m.compensated(&mc));
        }
    }
    Some(out)
}

/// Runs `f` with [`Evaluator::hist_stats`] set to `on`, then restores it.
pub(crate) fn with_hist_stats<T>(
    ev: &mut Evaluator,
    on: bool,
    f: impl FnOnce(&mut Evaluator) -> T,
) -> T {
    let before = std::mem::replace(&mut ev.hist_stats, on);
    let out = f(ev);
    ev.hist_stats = before;
    out
}

/// Counter-reset hints as Prometheus's `HistogramStatsIterator` reports
/// them: an `unknown` hint is resolved to `reset` or `not_reset` by
/// comparing with the sample read before it (the first one read stays
/// `unknown`). Only the annotations about conflicting hints can tell.
pub(crate) fn resolve_stats_hints(hs: &mut [HistogramSample]) {
    for k in 1..hs.len() {
        if hs[k].h.counter_reset_hint != CounterResetHint::Unknown {
            continue;
        }
        let hint = if hs[k].h.detect_reset(&hs[k - 1].h) {
            CounterResetHint::Reset
        } else {
            CounterResetHint::NotReset
        };
        Arc::make_mut(&mut hs[k].h).counter_reset_hint = hint;
    }
}

/// Prometheus's histogram variance estimate from the buckets.
fn variance(h: &FloatHistogram) -> f64 {
    let mean = h.sum / h.count;
    let (mut var, mut c) = (0.0, 0.0);
    for b in h.buckets() {
        if b.count == 0.0 {
            continue;
        }
        let val = if h.uses_custom_buckets() {
            (b.upper + b.lower) / 2.0
        } else if b.lower <= 0.0 && b.upper >= 0.0 {
            0.0
        } else {
            let v = (b.upper * b.lower).sqrt();
            if b.upper < 0.0 {
                -v
            } else {
                v
            }
        };
        let d = val - mean;
        (var, c) = super::functions::kahan_inc(b.count * d * d, var, c);
    }
    (var + c) / h.count
}

/// `histogram_count/sum/avg/stddev/stdvar`: histogram samples only.
pub(crate) fn histogram_stat(ev: &mut Evaluator, name: &str, arg: &Expr, r: &Steps) -> Result<Val> {
    let f: fn(&FloatHistogram) -> f64 = match name {
        "histogram_count" => |h| h.count,
        "histogram_sum" => |h| h.sum,
        "histogram_avg" => |h| h.sum / h.count,
        "histogram_stddev" => |h| variance(h).sqrt(),
        _ => variance,
    };
    let stats = matches!(name, "histogram_count" | "histogram_sum" | "histogram_avg");
    let vs = with_hist_stats(ev, stats, |ev| ev.eval_vector(arg, r))?;
    let out = vs
        .into_iter()
        .filter(|s| !s.hvals.is_empty())
        .map(|s| {
            let vals = s.hvals.iter().map(|h| h.as_deref().map(f)).collect();
            Series {
                labels: s.labels,
                drop_name: true,
                vals,
                hvals: vec![],
            }
        })
        .filter(|s| s.has_any())
        .collect();
    Ok(Val::Vector(out))
}

/// Drops the histogram samples of float-only functions.
pub(crate) fn floats_only(mut vs: Vec<Series>) -> Vec<Series> {
    for s in &mut vs {
        s.hvals.clear();
    }
    vs.retain(|s| s.has_any());
    vs
}

/// Prometheus's `histogramRate`: the (uncorrected for extrapolation)
/// increase of the histograms in the window.
fn histogram_rate(
    ev: &mut Evaluator,
    pts: &[HistogramSample],
    counter: bool,
    site: &Site,
) -> Option<FloatHistogram> {
    let first = &pts[0].h;
    let last = &pts[pts.len() - 1].h;
    let mut prev: FloatHistogram = (**first).clone();
    if counter
        && (first.counter_reset_hint == CounterResetHint::Gauge
            || last.counter_reset_hint == CounterResetHint::Gauge)
    {
        site.not_counter(ev);
    }
    if counter {
        let second = &pts[1].h;
        if second.detect_reset(&prev) {
            prev = FloatHistogram {
                schema: second.schema,
                custom_values: second.custom_values.clone(),
                ..Default::default()
            };
        }
    }
    let custom = prev.uses_custom_buckets();
    if last.uses_custom_buckets() != custom {
        site.mixed_schemas(ev);
        return None;
    }
    let mut min_schema = last.schema.min(prev.schema);
    for p in &pts[1..pts.len() - 1] {
        if !counter {
            continue;
        }
        if p.h.counter_reset_hint == CounterResetHint::Gauge {
            site.not_counter(ev);
        }
        min_schema = min_schema.min(p.h.schema);
        if p.h.uses_custom_buckets() != custom {
            site.mixed_schemas(ev);
            return None;
        }
    }
    let mut h = (**last).clone();
    h.reduce_schema(min_schema);
    match h.sub(&prev) {
        Err(_) => {
            site.mixed_schemas(ev);
            return None;
        }
        Ok(true) => reconciled(ev, "subtraction", site.pos),
        Ok(false) => {}
    }
    if counter {
        for p in &pts[1..] {
            if p.h.detect_reset(&prev) {
                match h.add(&prev) {
                    Err(_) => {
                        site.mixed_schemas(ev);
                        return None;
                    }
                    Ok(true) => reconciled(ev, "addition", site.pos),
                    Ok(false) => {}
                }
            }
            prev = (*p.h).clone();
        }
    } else if first.counter_reset_hint != CounterResetHint::Gauge
        || last.counter_reset_hint != CounterResetHint::Gauge
    {
        site.not_gauge(ev);
    }
    h.counter_reset_hint = CounterResetHint::Gauge;
    h.compact();
    Some(h)
}

/// The window of one step of a range function.
pub(crate) struct Window<'a> {
    pub floats: &'a [Sample],
    pub hists: &'a [HistogramSample],
    pub mint: i64,
    pub maxt: i64,
    pub range: i64,
}

/// A range function over a window with histogram samples (`w.hists` is not
/// empty). `float_fn` computes the float result for float-only functions.
pub(crate) fn range_step(
    ev: &mut Evaluator,
    name: &str,
    w: &Window,
    site: &Site,
    float_fn: &dyn Fn(&[Sample]) -> Option<f64>,
) -> Option<Out> {
    let (fl, hs) = (w.floats, w.hists);
    match name {
        "rate" | "increase" | "delta" => {
            if !fl.is_empty() {
                site.mixed_floats(ev);
                return None;
            }
            if hs.len() < 2 {
                return None;
            }
            let counter = name != "delta";
            let mut h = histogram_rate(ev, hs, counter, site)?;
            let factor = super::functions::extrapolation_factor(
                (hs[0].t, hs[hs.len() - 1].t, hs.len() - 1),
                (w.mint, w.maxt, w.range),
                counter,
                name == "rate",
                (hs[0].h.count, h.count),
            );
            h.scale(factor);
            Some(Out::H(h))
        }
        "irate" | "idelta" => {
            let rate = name == "irate";
            let mut last: Vec<(i64, Option<f64>, Option<&H>)> = fl
                .iter()
                .rev()
                .take(2)
                .map(|s| (s.t, Some(s.v), None))
                .chain(hs.iter().rev().take(2).map(|h| (h.t, None, Some(&h.h))))
                .collect();
            if last.len() < 2 {
                return None;
            }
            last.sort_by_key(|x| x.0);
            let (a, b) = (&last[last.len() - 2], &last[last.len() - 1]);
            let dt = b.0 - a.0;
            if dt == 0 {
                return None;
            }
            match (a.2, b.2) {
                (Some(ha), Some(hb)) => {
                    let mut out = (**hb).clone();
                    if rate
                        && (ha.counter_reset_hint == CounterResetHint::Gauge
                            || hb.counter_reset_hint == CounterResetHint::Gauge)
                    {
                        site.not_counter(ev);
                    }
                    if !rate
                        && (ha.counter_reset_hint != CounterResetHint::Gauge
                            || hb.counter_reset_hint != CounterResetHint::Gauge)
                    {
                        site.not_gauge(ev);
                    }
                    if !rate || !hb.detect_reset(ha) {
                        match out.sub(ha) {
                            Err(_) => {
                                site.mixed_schemas(ev);
                                return None;
                            }
                            Ok(true) => reconciled(ev, "subtraction", site.pos),
                            Ok(false) => {}
                        }
                    }
                    out.counter_reset_hint = CounterResetHint::Gauge;
                    out.compact();
                    if rate {
                        out.scale(1000.0 / dt as f64);
                    }
                    Some(Out::H(out))
                }
                (None, None) => float_fn(fl).map(Out::F),
                _ => {
                    site.mixed_floats(ev);
                    None
                }
            }
        }
        "resets" | "changes" => {
            let mut pts: Vec<(i64, Option<f64>, Option<&H>)> = fl
                .iter()
                .map(|s| (s.t, Some(s.v), None))
                .chain(hs.iter().map(|h| (h.t, None, Some(&h.h))))
                .collect();
            pts.sort_by_key(|x| x.0);
            let mut n = 0;
            for p in pts.windows(2) {
                let (a, b) = (&p[0], &p[1]);
                let hit = match (a.2, b.2, a.1, b.1) {
                    (Some(ha), Some(hb), _, _) => {
                        if name == "resets" {
                            hb.detect_reset(ha)
                        } else {
                            !ha.equals(hb)
                        }
                    }
                    (None, None, Some(x), Some(y)) => {
                        if name == "resets" {
                            y < x
                        } else {
                            !(x == y || (x.is_nan() && y.is_nan()))
                        }
                    }
                    _ => true,
                };
                n += hit as usize;
            }
            Some(Out::F(n as f64))
        }
        "count_over_time" => Some(Out::F((fl.len() + hs.len()) as f64)),
        "present_over_time" => Some(Out::F(1.0)),
        "last_over_time" => {
            let h = &hs[hs.len() - 1];
            match fl.last() {
                Some(f) if f.t > h.t => Some(Out::F(f.v)),
                _ => Some(Out::H((*h.h).clone())),
            }
        }
        "first_over_time" => {
            let h = &hs[0];
            match fl.first() {
                Some(f) if f.t < h.t => Some(Out::F(f.v)),
                _ => Some(Out::H((*h.h).clone())),
            }
        }
        "ts_of_last_over_time" => {
            let t = hs[hs.len() - 1].t.max(fl.last().map_or(i64::MIN, |f| f.t));
            Some(Out::F(t as f64 / 1000.0))
        }
        "ts_of_first_over_time" => {
            let t = hs[0].t.min(fl.first().map_or(i64::MAX, |f| f.t));
            Some(Out::F(t as f64 / 1000.0))
        }
        "sum_over_time" | "avg_over_time" => {
            if !fl.is_empty() {
                site.mixed_floats(ev);
                return None;
            }
            let mean = name == "avg_over_time";
            let sum = sum_histograms(ev, hs.iter().map(|h| &*h.h), site, mean)?;
            Some(Out::H(sum))
        }
        _ => {
            // Float-only functions ignore the histograms.
            if fl.is_empty() {
                return None;
            }
            let v = float_fn(fl);
            if v.is_some() || fl.len() == 1 {
                site.ignored_in_range(ev);
            }
            v.map(Out::F)
        }
    }
}

/// Appends a step result to a series under construction.
pub(crate) fn push_out(
    vals: &mut Vec<Option<f64>>,
    hvals: &mut Vec<Option<H>>,
    n: usize,
    i: usize,
    o: Option<Out>,
) {
    match o {
        Some(Out::F(v)) => vals.push(Some(v)),
        Some(Out::H(h)) => {
            if hvals.is_empty() {
                *hvals = vec![None; n];
            }
            hvals[i] = Some(Arc::new(h));
            vals.push(None);
        }
        None => vals.push(None),
    }
}
