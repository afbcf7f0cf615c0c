//! The evaluator core: every node is evaluated once over all steps of the
//! query (Prometheus's range evaluation), selectors issue one `select` each
//! for the whole range and values are kept dense per step.

use std::time::{Duration, Instant, SystemTime};

use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{AtModifier, Expr, Offset, SubqueryExpr, VectorSelector};

use super::{QueryError, QueryStats};
use crate::model::{
    is_stale_nan, FloatHistogram, HistogramSample, Labels, MatchOp, Matcher, Sample, Tenant,
    METRIC_NAME,
};

/// A shared native histogram value.
pub(crate) type H = std::sync::Arc<FloatHistogram>;
use crate::storage::MetricsReader;

/// Result alias of the evaluator.
pub(crate) type Result<T> = std::result::Result<T, QueryError>;

/// The evaluation steps of one (sub)query: `start..=end` every `step` ms.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Steps {
    pub start: i64,
    pub end: i64,
    pub step: i64,
}

impl Steps {
    /// Number of steps.
    pub fn len(&self) -> usize {
        if self.end < self.start {
            0
        } else {
            ((self.end - self.start) / self.step.max(1)) as usize + 1
        }
    }

    /// Timestamp of step `i`.
    pub fn t(&self, i: usize) -> i64 {
        self.start + i as i64 * self.step
    }
}

/// One instant-vector series with a value (or none) per step.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub labels: Labels,
    /// Delayed `__name__` removal: dropped when the query finishes.
    pub drop_name: bool,
    pub vals: Vec<Option<f64>>,
    /// Histogram values per step; empty when the series has none. A step
    /// holds a float or a histogram, never both.
    pub hvals: Vec<Option<H>>,
}

impl Series {
    /// The histogram at step `i`, if any.
    pub fn h(&self, i: usize) -> Option<&H> {
        self.hvals.get(i).and_then(|h| h.as_ref())
    }

    /// True when step `i` has a float or a histogram.
    pub fn present(&self, i: usize) -> bool {
        self.vals[i].is_some() || self.h(i).is_some()
    }

    /// Removes the value of step `i`.
    pub fn clear(&mut self, i: usize) {
        self.vals[i] = None;
        if let Some(h) = self.hvals.get_mut(i) {
            *h = None;
        }
    }

    /// True when some step has a float or a histogram.
    pub fn has_any(&self) -> bool {
        self.vals.iter().any(|v| v.is_some()) || self.hvals.iter().any(|h| h.is_some())
    }
}

/// A series with raw samples (range vectors).
#[derive(Debug, Clone)]
pub(crate) struct Raw {
    pub labels: Labels,
    pub drop_name: bool,
    pub samples: Vec<Sample>,
    /// Histogram samples, sorted by time.
    pub hists: Vec<HistogramSample>,
}

/// A range-vector argument: raw samples and how to window them per step.
pub(crate) struct RangeArg {
    pub series: Vec<Raw>,
    pub range: i64,
    pub offset: i64,
    pub at: Option<i64>,
    /// `anchored` / `smoothed` on the range selector.
    pub mode: Option<super::parse::RangeMode>,
    /// How far before (and, smoothed, after) the window samples were loaded.
    pub lookback: i64,
}

impl RangeArg {
    /// `(mint, maxt]` of step `i`.
    pub fn window(&self, r: &Steps, i: usize) -> (i64, i64) {
        let eff = self.at.unwrap_or_else(|| r.t(i));
        let maxt = eff - self.offset;
        (maxt - self.range, maxt)
    }
}

/// Samples of `s` in `(mint, maxt]`.
pub(crate) fn window(s: &[Sample], mint: i64, maxt: i64) -> &[Sample] {
    let a = s.partition_point(|x| x.t <= mint);
    let b = s.partition_point(|x| x.t <= maxt);
    &s[a..b.max(a)]
}

/// [`window`] for windows that move forward step by step: the bounds
/// advance from the previous step's instead of searching the whole series
/// again (a window holds a handful of samples; a day of data thousands).
#[derive(Default)]
pub(crate) struct Cursor {
    a: usize,
    b: usize,
}

impl Cursor {
    /// Samples of `s` in `(mint, maxt]`; `s` must be the same slice on
    /// every call.
    pub fn window<'s, T>(
        &mut self,
        s: &'s [T],
        t: impl Fn(&T) -> i64,
        mint: i64,
        maxt: i64,
    ) -> &'s [T] {
        if self.a > s.len() || (self.a > 0 && t(&s[self.a - 1]) > mint) {
            // Moved backwards: search afresh.
            self.a = s.partition_point(|x| t(x) <= mint);
            self.b = self.a;
        }
        while self.a < s.len() && t(&s[self.a]) <= mint {
            self.a += 1;
        }
        if self.b < self.a || (self.b > 0 && t(&s[self.b - 1]) > maxt) {
            self.b = self.a;
        }
        while self.b < s.len() && t(&s[self.b]) <= maxt {
            self.b += 1;
        }
        &s[self.a..self.b]
    }
}

/// Histogram samples of `s` in `(mint, maxt]`.
pub(crate) fn hwindow(s: &[HistogramSample], mint: i64, maxt: i64) -> &[HistogramSample] {
    let a = s.partition_point(|x| x.t <= mint);
    let b = s.partition_point(|x| x.t <= maxt);
    &s[a..b.max(a)]
}

/// An evaluated value.
pub(crate) enum Val {
    Scalar(Vec<f64>),
    Vector(Vec<Series>),
    String(String),
    /// Only at the top of an instant query (a range selector or subquery).
    Matrix(Vec<Raw>),
}

/// Per-query evaluation state.
pub(crate) struct Evaluator<'a> {
    pub reader: &'a dyn MetricsReader,
    pub tenant: &'a Tenant,
    pub query: &'a str,
    pub lookback: i64,
    pub qstart: i64,
    pub qend: i64,
    /// The range query's step, ms (0 for instant queries).
    pub qstep: i64,
    pub deadline: Instant,
    pub max_samples: usize,
    pub experimental: bool,
    pub subquery_step: i64,
    pub stats: QueryStats,
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
    pub cur_samples: u64,
    /// Selectors are read as Prometheus reads them under `histogram_count`,
    /// `histogram_sum` and `histogram_avg` (its `HistogramStatsIterator`):
    /// see [`super::native::resolve_stats_hints`].
    pub hist_stats: bool,
}

pub(crate) fn dur_ms(d: &Duration) -> i64 {
    d.as_millis() as i64
}

pub(crate) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => dur_ms(d),
        Some(Offset::Neg(d)) => -dur_ms(d),
    }
}

fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// Unwraps parentheses.
pub(crate) fn unparen(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unparen(&p.expr),
        _ => e,
    }
}

impl<'a> Evaluator<'a> {
    pub fn check_deadline(&self) -> Result<()> {
        if Instant::now() > self.deadline {
            return Err(QueryError::Timeout("expression evaluation".into()));
        }
        Ok(())
    }

    /// Accounts `n` samples held; errors past the limit.
    pub fn hold(&mut self, n: usize) -> Result<()> {
        self.cur_samples += n as u64;
        if self.cur_samples > self.stats.peak_samples {
            self.stats.peak_samples = self.cur_samples;
        }
        if self.cur_samples as usize > self.max_samples {
            return Err(QueryError::TooManySamples("query execution".into()));
        }
        Ok(())
    }

    /// Releases `n` held samples.
    pub fn release(&mut self, n: usize) {
        self.cur_samples = self.cur_samples.saturating_sub(n as u64);
    }

    pub fn at_ms(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.qstart),
            Some(AtModifier::End) => Some(self.qend),
            Some(AtModifier::At(t)) => Some(system_time_ms(t)),
        }
    }

    /// `(line:col)` of the first place `e` appears in the query text.
    pub fn pos(&self, e: &Expr) -> String {
        let needle = match unparen(e) {
            Expr::VectorSelector(vs) => vs.name.clone().unwrap_or_else(|| e.to_string()),
            Expr::MatrixSelector(ms) => ms.vs.name.clone().unwrap_or_else(|| e.to_string()),
            other => other.to_string(),
        };
        let col = self.query.find(&needle).map(|i| i + 1).unwrap_or(1);
        format!("({}:{})", 1, col)
    }

    pub fn warn(&mut self, msg: String) {
        let m = format!("PromQL warning: {msg}");
        if !self.warnings.contains(&m) {
            self.warnings.push(m);
        }
    }

    pub fn info(&mut self, msg: String) {
        let m = format!("PromQL info: {msg}");
        if !self.infos.contains(&m) {
            self.infos.push(m);
        }
    }

    /// Evaluates `e` over the steps `r`.
    pub fn eval(&mut self, e: &Expr, r: &Steps) -> Result<Val> {
        self.check_deadline()?;
        match e {
            Expr::NumberLiteral(n) => Ok(Val::Scalar(vec![n.val; r.len()])),
            Expr::StringLiteral(s) => Ok(Val::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, r),
            Expr::Unary(u) => match self.eval(&u.expr, r)? {
                Val::Scalar(v) => Ok(Val::Scalar(v.into_iter().map(|x| -x).collect())),
                Val::Vector(mut vs) => {
                    for s in &mut vs {
                        s.drop_name = true;
                        for v in s.vals.iter_mut().flatten() {
                            *v = -*v;
                        }
                        for h in s.hvals.iter_mut().flatten() {
                            std::sync::Arc::make_mut(h).negate();
                        }
                    }
                    Ok(Val::Vector(vs))
                }
                _ => Err(QueryError::BadData(
                    "unary expression only allowed on expressions of type scalar or vector".into(),
                )),
            },
            Expr::VectorSelector(vs) => Ok(Val::Vector(self.eval_vector_selector(vs, r, false)?)),
            Expr::MatrixSelector(_) | Expr::Subquery(_) => {
                if r.len() != 1 || r.start != r.end {
                    return Err(QueryError::BadData(
                        "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector".into(),
                    ));
                }
                let arg = self.eval_range_arg(e, r)?;
                let (mint, maxt) = arg.window(r, 0);
                let out = arg
                    .series
                    .into_iter()
                    .filter_map(|s| {
                        let w = window(&s.samples, mint, maxt).to_vec();
                        let hw = hwindow(&s.hists, mint, maxt).to_vec();
                        (!w.is_empty() || !hw.is_empty()).then_some(Raw {
                            labels: s.labels,
                            drop_name: s.drop_name,
                            samples: w,
                            hists: hw,
                        })
                    })
                    .collect();
                Ok(Val::Matrix(out))
            }
            Expr::Call(c) => super::functions::eval_call(self, c, r),
            Expr::Aggregate(a) => super::aggregate::eval_aggregate(self, a, r),
            Expr::Binary(b) => {
                // Prometheus decides the histogram reading per operand.
                let stats = std::mem::replace(&mut self.hist_stats, false);
                let out = super::binary::eval_binary(self, b, r);
                self.hist_stats = stats;
                out
            }
            Expr::Extension(_) => Err(QueryError::BadData("unsupported expression".into())),
        }
    }

    /// Evaluates `e`, which must be an instant vector.
    pub fn eval_vector(&mut self, e: &Expr, r: &Steps) -> Result<Vec<Series>> {
        match self.eval(e, r)? {
            Val::Vector(v) => Ok(v),
            _ => Err(QueryError::BadData(format!(
                "expected type instant vector, got {}",
                e.value_type()
            ))),
        }
    }

    /// Evaluates `e`, which must be a scalar.
    pub fn eval_scalar(&mut self, e: &Expr, r: &Steps) -> Result<Vec<f64>> {
        match self.eval(e, r)? {
            Val::Scalar(v) => Ok(v),
            _ => Err(QueryError::BadData(format!(
                "expected type scalar, got {}",
                e.value_type()
            ))),
        }
    }

    fn matchers(&self, vs: &VectorSelector) -> Result<Vec<Vec<Matcher>>> {
        let conv = |ms: &[promql_parser::label::Matcher]| -> Result<Vec<Matcher>> {
            let mut out = Vec::with_capacity(ms.len() + 1);
            if let Some(n) = &vs.name {
                out.push(Matcher::equal(METRIC_NAME, n.clone()));
            }
            for m in ms {
                if m.name == super::parse::BRIDGE_LABEL {
                    continue;
                }
                let op = match m.op {
                    PMatchOp::Equal => MatchOp::Equal,
                    PMatchOp::NotEqual => MatchOp::NotEqual,
                    PMatchOp::Re(_) => MatchOp::Regex,
                    PMatchOp::NotRe(_) => MatchOp::NotRegex,
                };
                out.push(
                    Matcher::new(op, m.name.clone(), m.value.clone())
                        .map_err(|e| QueryError::BadData(e.to_string()))?,
                );
            }
            Ok(out)
        };
        if vs.matchers.or_matchers.is_empty() {
            Ok(vec![conv(&vs.matchers.matchers)?])
        } else {
            vs.matchers
                .or_matchers
                .iter()
                .map(|g| conv(g))
                .collect::<Result<Vec<_>>>()
        }
    }

    /// All series of the selector with samples in `[mint, maxt]`, sorted.
    pub fn select(&mut self, vs: &VectorSelector, mint: i64, maxt: i64) -> Result<Vec<Raw>> {
        let groups = self.matchers(vs)?;
        let mut all = Vec::new();
        for ms in &groups {
            all.extend(self.reader.select(self.tenant, ms, mint, maxt)?);
        }
        if groups.len() > 1 {
            all.sort_by(|a, b| a.labels.cmp(&b.labels));
            all.dedup_by(|a, b| a.labels == b.labels);
        }
        let n: usize = all
            .iter()
            .map(|s| s.samples.len() + s.histograms.len())
            .sum();
        self.stats.total_queryable_samples += n as u64;
        if self.hist_stats {
            for s in &mut all {
                super::native::resolve_stats_hints(&mut s.histograms);
            }
        }
        Ok(all
            .into_iter()
            .map(|s| Raw {
                labels: s.labels,
                drop_name: false,
                samples: s.samples,
                hists: s.histograms,
            })
            .collect())
    }

    /// Instant-vector selector over all steps. With `timestamps`, the
    /// values are the samples' own timestamps in seconds (`timestamp()`).
    pub fn eval_vector_selector(
        &mut self,
        vs: &VectorSelector,
        r: &Steps,
        timestamps: bool,
    ) -> Result<Vec<Series>> {
        let off = offset_ms(&vs.offset);
        let at = self.at_ms(&vs.at);
        let n = r.len();
        let (lo, hi) = match at {
            Some(a) => (a - off, a - off),
            None => (r.start - off, r.end - off),
        };
        let smoothed = super::parse::range_mode(vs) == Some(super::parse::RangeMode::Smoothed);
        let post = if smoothed { self.lookback } else { 0 };
        let raws = self.select(vs, lo - self.lookback + 1, hi + post)?;
        let mut out = Vec::with_capacity(raws.len());
        let mut held = 0;
        for raw in raws {
            let mut vals = Vec::with_capacity(n);
            let mut hvals: Vec<Option<H>> = vec![];
            let mut j = 0;
            let mut k = 0;
            let mut any = false;
            if raw.hists.is_empty() && !smoothed && !timestamps {
                // Floats only, as read (the common case): the loop below
                // without its histogram and interpolation branches.
                let s = &raw.samples;
                for i in 0..n {
                    let t = at.unwrap_or_else(|| r.t(i)) - off;
                    while j < s.len() && s[j].t <= t {
                        j += 1;
                    }
                    let v = j
                        .checked_sub(1)
                        .map(|j| s[j])
                        .filter(|p| p.t > t - self.lookback && !is_stale_nan(p.v))
                        .map(|p| p.v);
                    any |= v.is_some();
                    held += v.is_some() as usize;
                    vals.push(v);
                }
            } else {
                for i in 0..n {
                    let t = at.unwrap_or_else(|| r.t(i)) - off;
                    while j < raw.samples.len() && raw.samples[j].t <= t {
                        j += 1;
                    }
                    while k < raw.hists.len() && raw.hists[k].t <= t {
                        k += 1;
                    }
                    // A histogram newer than the newest float wins the step.
                    let newest_hist = k
                        .checked_sub(1)
                        .map(|k| &raw.hists[k])
                        .filter(|hs| j == 0 || raw.samples[j - 1].t < hs.t);
                    if let Some(hs) = newest_hist {
                        if hs.t > t - self.lookback {
                            if timestamps {
                                vals.push(Some(hs.t as f64 / 1000.0));
                            } else {
                                if hvals.is_empty() {
                                    hvals = vec![None; n];
                                }
                                hvals[i] = Some(hs.h.clone());
                                vals.push(None);
                            }
                            any = true;
                            held += 1;
                        } else {
                            vals.push(None);
                        }
                        continue;
                    }
                    let v = if j > 0 {
                        let s = raw.samples[j - 1];
                        let next = raw.samples.get(j).filter(|n| {
                            smoothed && s.t < t && n.t < t + self.lookback && !is_stale_nan(n.v)
                        });
                        if s.t > t - self.lookback && !is_stale_nan(s.v) {
                            Some(match next {
                                // `x smoothed`: interpolated between the samples around t.
                                Some(n) if !timestamps => {
                                    s.v + (n.v - s.v) * (t - s.t) as f64 / (n.t - s.t) as f64
                                }
                                _ if timestamps => s.t as f64 / 1000.0,
                                _ => s.v,
                            })
                        } else {
                            None
                        }
                    } else {
                        None
                    };
                    any |= v.is_some();
                    held += v.is_some() as usize;
                    vals.push(v);
                }
            }
            if any {
                out.push(Series {
                    labels: raw.labels,
                    drop_name: false,
                    vals,
                    hvals,
                });
            }
        }
        self.hold(held)?;
        Ok(out)
    }

    /// A range-vector argument: a matrix selector or a subquery.
    pub fn eval_range_arg(&mut self, e: &Expr, r: &Steps) -> Result<RangeArg> {
        match unparen(e) {
            Expr::MatrixSelector(ms) => {
                let off = offset_ms(&ms.vs.offset);
                let at = self.at_ms(&ms.vs.at);
                let range = dur_ms(&ms.range);
                let (lo, hi) = match at {
                    Some(a) => (a - off, a - off),
                    None => (r.start - off, r.end - off),
                };
                let mode = super::parse::range_mode(&ms.vs);
                let (pre, post) = match mode {
                    None => (0, 0),
                    Some(super::parse::RangeMode::Anchored) => (self.lookback, 0),
                    Some(super::parse::RangeMode::Smoothed) => (self.lookback, self.lookback),
                };
                let mut series = self.select(&ms.vs, lo - range - pre + 1, hi + post)?;
                let mut held = 0;
                for s in &mut series {
                    s.samples.retain(|x| !is_stale_nan(x.v));
                    held += s.samples.len() + s.hists.len();
                }
                series.retain(|s| !s.samples.is_empty() || !s.hists.is_empty());
                self.hold(held)?;
                Ok(RangeArg {
                    series,
                    range,
                    offset: off,
                    at,
                    mode,
                    lookback: self.lookback,
                })
            }
            Expr::Subquery(sq) => self.eval_subquery(sq, r),
            other => Err(QueryError::BadData(format!(
                "expected type range vector, got {}",
                other.value_type()
            ))),
        }
    }

    fn eval_subquery(&mut self, sq: &SubqueryExpr, r: &Steps) -> Result<RangeArg> {
        let off = offset_ms(&sq.offset);
        let at = self.at_ms(&sq.at);
        let range = dur_ms(&sq.range);
        let step = sq
            .step
            .as_ref()
            .map(dur_ms)
            .filter(|s| *s > 0)
            .unwrap_or(self.subquery_step);
        let (lo, hi) = match at {
            Some(a) => (a, a),
            None => (r.start, r.end),
        };
        let first = lo - off - range;
        let mut start = step * (first / step);
        if start <= first {
            start += step;
        }
        let inner = Steps {
            start,
            end: hi - off,
            step,
        };
        let vals = self.eval_vector(&sq.expr, &inner)?;
        let series = vals
            .into_iter()
            .map(|s| Raw {
                labels: s.labels,
                drop_name: s.drop_name,
                samples: s
                    .vals
                    .iter()
                    .enumerate()
                    .filter_map(|(i, v)| v.map(|v| Sample::new(inner.t(i), v)))
                    .collect(),
                hists: s
                    .hvals
                    .iter()
                    .enumerate()
                    .filter_map(|(i, h)| {
                        h.as_ref().map(|h| HistogramSample {
                            t: inner.t(i),
                            h: unknown_hint(h),
                        })
                    })
                    .collect(),
            })
            .filter(|s| !s.samples.is_empty() || !s.hists.is_empty())
            .collect();
        Ok(RangeArg {
            series,
            range,
            offset: off,
            at,
            mode: None,
            lookback: self.lookback,
        })
    }
}

/// A subquery's steps are not adjacent samples: a `not_reset` hint no
/// longer holds between them, and a `reset` one would count the same reset
/// again at every step that repeats its sample (Prometheus clears both).
fn unknown_hint(h: &H) -> H {
    use crate::model::CounterResetHint::{NotReset, Reset};
    if matches!(h.counter_reset_hint, NotReset | Reset) {
        let mut c = (**h).clone();
        c.counter_reset_hint = crate::model::CounterResetHint::Unknown;
        std::sync::Arc::new(c)
    } else {
        h.clone()
    }
}

/// Formats labels as Go's `labels.Labels.String()` does: `{a="b", c="d"}`.
pub(crate) fn go_labels(l: &Labels) -> String {
    let mut s = String::from("{");
    for (i, p) in l.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&p.name);
        s.push('=');
        s.push_str(&format!("{:?}", p.value));
    }
    s.push('}');
    s
}

/// Formats a float like Go's `%g` for the values that occur in messages.
pub(crate) fn go_g(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        let s = format!("{v}");
        if s.len() > 21 {
            format!("{v:e}")
        } else {
            s
        }
    }
}

/// Formats a float like Go's `strconv.FormatFloat(v, 'f', -1, 64)`.
pub(crate) fn go_f(v: f64) -> String {
    crate::model::format_float(v)
}

#[cfg(test)]
mod cursor_tests {
    use super::*;

    #[test]
    fn cursor_windows_match_searched_windows() {
        let s: Vec<Sample> = (0..200).map(|i| Sample::new(i * 15 + i % 7, 0.0)).collect();
        for (range, step) in [(75, 60), (300, 7), (10, 60), (1000, 1), (0, 30)] {
            let mut c = Cursor::default();
            let mut ends: Vec<i64> = (-100..3200).step_by(step).collect();
            // Forward, then a jump back (searched afresh).
            ends.extend([50, 60, 3000]);
            for maxt in ends {
                let mint = maxt - range;
                assert_eq!(
                    c.window(&s, |x| x.t, mint, maxt),
                    window(&s, mint, maxt),
                    "({mint}, {maxt}]"
                );
            }
        }
    }
}
