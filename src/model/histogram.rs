//! Native histograms as PromQL sees them: Prometheus's float histogram with
//! exponential buckets (schemas -4..8) or custom bucket bounds (schema -53,
//! "NHCB"), and the operations the query engine needs (add, subtract, scale,
//! schema reduction, counter-reset detection, quantile and fraction).
//!
//! Buckets are kept sparse as `(index, count)` pairs sorted by index; a
//! bucket may have a zero count (as written by the client) until
//! [`FloatHistogram::compact`] drops it. Spans only appear in wire formats.

use super::{format_float, format_float_g};
use std::fmt;

/// The schema number of histograms with custom bucket bounds.
pub const CUSTOM_BUCKETS_SCHEMA: i32 = -53;

/// What the producer said about counter resets at this sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CounterResetHint {
    /// Nothing known; detect resets by comparing with the previous sample.
    #[default]
    Unknown,
    /// A counter reset happened right before this sample.
    Reset,
    /// No counter reset happened since the previous sample.
    NotReset,
    /// A gauge histogram: resets are meaningless.
    Gauge,
}

impl CounterResetHint {
    /// The name used in the promqltest notation (`counter_reset_hint:`).
    pub fn as_str(self) -> &'static str {
        match self {
            CounterResetHint::Unknown => "unknown",
            CounterResetHint::Reset => "reset",
            CounterResetHint::NotReset => "not_reset",
            CounterResetHint::Gauge => "gauge",
        }
    }
}

/// Why two histograms cannot be combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HistogramError {
    /// One uses exponential buckets, the other custom bounds.
    #[error("cannot apply this operation on histograms with a mix of exponential and custom bucket schemas")]
    MixedSchemas,
}

/// What NaN observations did to a native histogram quantile (Prometheus
/// reports each as an info).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NanObservations {
    /// None, or they did not matter.
    None,
    /// The quantile fell among the NaN observations: the result is NaN.
    ResultNaN,
    /// The quantile is skewed higher by them.
    Skewed,
}

/// One bucket as iterated for quantiles and the API: `(lower, upper]` and
/// its count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Lower bound.
    pub lower: f64,
    /// Upper bound.
    pub upper: f64,
    /// Observations in the bucket.
    pub count: f64,
    /// Lower bound included (negative buckets and the zero bucket).
    pub lower_inclusive: bool,
    /// Upper bound included (positive and custom buckets, the zero bucket).
    pub upper_inclusive: bool,
}

/// A native histogram with float counts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FloatHistogram {
    /// Resolution: -4..=8 exponential, [`CUSTOM_BUCKETS_SCHEMA`] for custom bounds.
    pub schema: i32,
    /// Half-width of the zero bucket.
    pub zero_threshold: f64,
    /// Observations in the zero bucket.
    pub zero_count: f64,
    /// Total observations (NaN observations included).
    pub count: f64,
    /// Sum of observations.
    pub sum: f64,
    /// Positive (or custom) buckets, `(index, count)` sorted by index.
    pub positive: Vec<(i32, f64)>,
    /// Negative buckets, `(index, count)` sorted by index.
    pub negative: Vec<(i32, f64)>,
    /// Upper bounds of the custom buckets (schema -53), `+Inf` implied.
    pub custom_values: Vec<f64>,
    /// Counter-reset hint.
    pub counter_reset_hint: CounterResetHint,
}

/// Upper bound of exponential bucket `idx` at `schema` (Prometheus's
/// `getBound`).
pub fn exponential_bound(idx: i32, schema: i32) -> f64 {
    if schema < 0 {
        let exp = (idx as i64) << (-schema);
        if exp >= 1024 {
            return if exp == 1024 { f64::MAX } else { f64::INFINITY };
        }
        return 2f64.powi(exp as i32);
    }
    let frac_idx = idx & ((1 << schema) - 1);
    let exp = (idx >> schema) as i64;
    let frac = 2f64.powf(frac_idx as f64 / (1i64 << schema) as f64);
    if exp >= 1024 {
        return if frac_idx == 0 && exp == 1024 {
            f64::MAX
        } else {
            f64::INFINITY
        };
    }
    frac * 2f64.powi(exp as i32)
}

/// The index an exponential bucket gets at a lower schema.
fn reduce_index(idx: i32, from: i32, to: i32) -> i32 {
    ((idx - 1) >> (from - to)) + 1
}

/// Adds `(index, count)` pairs into a sorted list.
fn merge_into(dst: &mut Vec<(i32, f64)>, src: impl IntoIterator<Item = (i32, f64)>, sign: f64) {
    for (i, c) in src {
        match dst.binary_search_by_key(&i, |b| b.0) {
            Ok(p) => dst[p].1 += sign * c,
            Err(p) => dst.insert(p, (i, sign * c)),
        }
    }
}

/// Maps two custom-bucket histograms onto the bounds they share.
fn remap_to_common_bounds(a: &mut FloatHistogram, b: &mut FloatHistogram) {
    let common: Vec<f64> = a
        .custom_values
        .iter()
        .copied()
        .filter(|x| b.custom_values.contains(x))
        .collect();
    a.remap_custom(&common);
    b.remap_custom(&common);
}

fn bounds_match(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x == y || (x.is_nan() && y.is_nan()))
}

impl FloatHistogram {
    /// True for custom-bucket (NHCB) histograms.
    pub fn uses_custom_buckets(&self) -> bool {
        self.schema == CUSTOM_BUCKETS_SCHEMA
    }

    /// Upper bound of positive bucket `idx`.
    pub fn upper_bound(&self, idx: i32) -> f64 {
        if self.uses_custom_buckets() {
            self.custom_values
                .get(idx.max(0) as usize)
                .copied()
                .unwrap_or(f64::INFINITY)
        } else {
            exponential_bound(idx, self.schema)
        }
    }

    /// Lower bound of positive bucket `idx`.
    pub fn lower_bound(&self, idx: i32) -> f64 {
        if self.uses_custom_buckets() {
            if idx <= 0 {
                f64::NEG_INFINITY
            } else {
                self.upper_bound(idx - 1)
            }
        } else {
            exponential_bound(idx - 1, self.schema)
        }
    }

    /// Every bucket in ascending order of value: negative buckets, the zero
    /// bucket (when it has observations), positive buckets. Buckets with a
    /// zero count are included except the zero bucket.
    pub fn buckets(&self) -> Vec<Bucket> {
        let mut out = Vec::with_capacity(self.positive.len() + self.negative.len() + 1);
        for &(i, c) in self.negative.iter().rev() {
            out.push(Bucket {
                lower: -self.upper_bound(i),
                upper: -self.lower_bound(i),
                count: c,
                lower_inclusive: true,
                upper_inclusive: false,
            });
        }
        if self.zero_count > 0.0 || (self.zero_count != 0.0 && !self.zero_count.is_nan()) {
            out.push(Bucket {
                lower: -self.zero_threshold,
                upper: self.zero_threshold,
                count: self.zero_count,
                lower_inclusive: true,
                upper_inclusive: true,
            });
        }
        for &(i, c) in &self.positive {
            out.push(Bucket {
                lower: self.lower_bound(i),
                upper: self.upper_bound(i),
                count: c,
                lower_inclusive: false,
                upper_inclusive: true,
            });
        }
        out
    }

    /// Prometheus's `FloatHistogram.String()`, which `count_values` uses
    /// as a label value: `{count:20, sum:10, [-2,-1):2, [-0.001,0.001]:2,
    /// (1,2]:2}`, non-empty buckets in ascending order, numbers as Go's `%g`.
    pub fn go_string(&self) -> String {
        let g = format_float_g;
        let mut out = format!("{{count:{}, sum:{}", g(self.count), g(self.sum));
        let mut put = |b: &Bucket| {
            let open = if b.lower_inclusive { '[' } else { '(' };
            let close = if b.upper_inclusive { ']' } else { ')' };
            let (lo, hi, c) = (g(b.lower), g(b.upper), g(b.count));
            out.push_str(&format!(", {open}{lo},{hi}{close}:{c}"));
        };
        let all = self.buckets();
        let is_zero = |b: &&Bucket| b.lower_inclusive && b.upper_inclusive;
        let (negative, positive) = all
            .iter()
            .filter(|b| !is_zero(b) && b.count != 0.0)
            .partition::<Vec<&Bucket>, _>(|b| b.lower_inclusive);
        negative.into_iter().for_each(&mut put);
        if self.zero_count != 0.0 {
            put(&Bucket {
                lower: -self.zero_threshold,
                upper: self.zero_threshold,
                count: self.zero_count,
                lower_inclusive: true,
                upper_inclusive: true,
            });
        }
        positive.into_iter().for_each(&mut put);
        out.push('}');
        out
    }

    /// Drops empty buckets.
    pub fn compact(&mut self) {
        self.positive.retain(|b| b.1 != 0.0);
        self.negative.retain(|b| b.1 != 0.0);
    }

    /// Multiplies every count and the sum by `f`.
    pub fn scale(&mut self, f: f64) {
        self.count *= f;
        self.sum *= f;
        self.zero_count *= f;
        for b in self.positive.iter_mut().chain(self.negative.iter_mut()) {
            b.1 *= f;
        }
    }

    /// Divides every count and the sum by `f`. Dividing by zero removes
    /// the buckets (Prometheus's `Div`).
    pub fn div(&mut self, f: f64) {
        self.count /= f;
        self.sum /= f;
        self.zero_count /= f;
        if f == 0.0 {
            self.positive.clear();
            self.negative.clear();
            return;
        }
        for b in self.positive.iter_mut().chain(self.negative.iter_mut()) {
            b.1 /= f;
        }
    }

    /// Unary minus: every count and the sum negated; the result is a gauge.
    pub fn negate(&mut self) {
        self.scale(-1.0);
        self.counter_reset_hint = CounterResetHint::Gauge;
    }

    /// Lowers the resolution to `target` (exponential schemas only).
    pub fn reduce_schema(&mut self, target: i32) {
        if self.uses_custom_buckets() || target >= self.schema {
            return;
        }
        let from = self.schema;
        for side in [&mut self.positive, &mut self.negative] {
            let old = std::mem::take(side);
            merge_into(
                side,
                old.into_iter()
                    .map(|(i, c)| (reduce_index(i, from, target), c)),
                1.0,
            );
        }
        self.schema = target;
    }

    /// Raises the zero threshold to at least `t`, moving the buckets it
    /// covers into the zero bucket. A threshold inside a bucket grows to
    /// that bucket's upper bound (Prometheus's `zeroCountForLargerThreshold`).
    pub fn widen_zero_bucket(&mut self, t: f64) {
        if self.uses_custom_buckets() || t <= self.zero_threshold {
            return;
        }
        let mut t = t;
        loop {
            let mut moved = false;
            for side in [&mut self.positive, &mut self.negative] {
                let schema = self.schema;
                let mut keep = Vec::with_capacity(side.len());
                for &(i, c) in side.iter() {
                    let upper = exponential_bound(i, schema);
                    let lower = exponential_bound(i - 1, schema);
                    if upper <= t {
                        self.zero_count += c;
                    } else if lower < t {
                        self.zero_count += c;
                        t = upper;
                        moved = true;
                    } else {
                        keep.push((i, c));
                    }
                }
                *side = keep;
            }
            if !moved {
                break;
            }
        }
        self.zero_threshold = t;
    }

    /// Maps custom buckets onto `bounds`, a subset of the own bounds: each
    /// bucket goes to the first new bucket whose upper bound is >= its own.
    fn remap_custom(&mut self, bounds: &[f64]) {
        let old = std::mem::take(&mut self.positive);
        let mut newb = Vec::new();
        merge_into(
            &mut newb,
            old.into_iter().map(|(i, c)| {
                let up = self.upper_bound(i);
                (bounds.partition_point(|b| *b < up) as i32, c)
            }),
            1.0,
        );
        self.positive = newb;
        self.custom_values = bounds.to_vec();
    }

    /// Brings `self` and `other` to a common layout. Returns true when
    /// mismatched custom bounds had to be reconciled.
    fn reconcile(&mut self, other: &mut FloatHistogram) -> Result<bool, HistogramError> {
        if self.uses_custom_buckets() != other.uses_custom_buckets() {
            return Err(HistogramError::MixedSchemas);
        }
        if self.uses_custom_buckets() {
            if bounds_match(&self.custom_values, &other.custom_values) {
                return Ok(false);
            }
            remap_to_common_bounds(self, other);
            return Ok(true);
        }
        let schema = self.schema.min(other.schema);
        self.reduce_schema(schema);
        other.reduce_schema(schema);
        let zt = self.zero_threshold.max(other.zero_threshold);
        self.widen_zero_bucket(zt);
        other.widen_zero_bucket(zt);
        // Widening one side may have moved its threshold further.
        let zt = self.zero_threshold.max(other.zero_threshold);
        self.widen_zero_bucket(zt);
        other.widen_zero_bucket(zt);
        Ok(false)
    }

    /// Prometheus's result hint when adding or subtracting `other`.
    fn adjust_hint(&mut self, other: &FloatHistogram) {
        use CounterResetHint::*;
        self.counter_reset_hint = match (self.counter_reset_hint, other.counter_reset_hint) {
            (a, b) if a == b => a,
            (Gauge, _) | (_, Gauge) => Gauge,
            _ => Unknown,
        };
    }

    fn combine(&mut self, other: &FloatHistogram, sign: f64) -> Result<bool, HistogramError> {
        self.adjust_hint(other);
        let mut o = other.clone();
        let reconciled = self.reconcile(&mut o)?;
        self.count += sign * o.count;
        self.sum += sign * o.sum;
        self.zero_count += sign * o.zero_count;
        merge_into(&mut self.positive, o.positive, sign);
        merge_into(&mut self.negative, o.negative, sign);
        Ok(reconciled)
    }

    /// `self += other`. Returns true when custom bounds were reconciled.
    pub fn add(&mut self, other: &FloatHistogram) -> Result<bool, HistogramError> {
        self.combine(other, 1.0)
    }

    /// `self -= other`; the result is a gauge. Returns true when custom
    /// bounds were reconciled.
    pub fn sub(&mut self, other: &FloatHistogram) -> Result<bool, HistogramError> {
        let r = self.combine(other, -1.0);
        self.counter_reset_hint = CounterResetHint::Gauge;
        r
    }

    /// An empty histogram with `self`'s layout, to hold the compensation
    /// of [`Self::kahan_add`].
    pub fn compensation(&self) -> FloatHistogram {
        FloatHistogram {
            schema: self.schema,
            zero_threshold: self.zero_threshold,
            custom_values: self.custom_values.clone(),
            ..Default::default()
        }
    }

    /// Brings a compensation histogram to `of`'s (possibly coarser) layout.
    fn follow_layout(&mut self, of: &FloatHistogram) {
        if of.uses_custom_buckets() {
            if !bounds_match(&self.custom_values, &of.custom_values) {
                self.remap_custom(&of.custom_values);
            }
        } else {
            self.reduce_schema(of.schema);
            self.widen_zero_bucket(of.zero_threshold);
        }
    }

    /// `self += weight * other` with Kahan–Neumaier compensation kept in
    /// `comp` (start it with [`Self::compensation`]; finish with
    /// [`Self::compensated`]), as Prometheus sums histograms. Returns true
    /// when custom bounds were reconciled.
    pub fn kahan_add(
        &mut self,
        other: &FloatHistogram,
        weight: f64,
        comp: &mut FloatHistogram,
    ) -> Result<bool, HistogramError> {
        self.adjust_hint(other);
        let mut o = other.clone();
        let reconciled = self.reconcile(&mut o)?;
        comp.follow_layout(self);
        let (s, c) = kahan_inc(weight * o.count, self.count, comp.count);
        (self.count, comp.count) = (s, c);
        let (s, c) = kahan_inc(weight * o.sum, self.sum, comp.sum);
        (self.sum, comp.sum) = (s, c);
        let (s, c) = kahan_inc(weight * o.zero_count, self.zero_count, comp.zero_count);
        (self.zero_count, comp.zero_count) = (s, c);
        let side = |dst: &mut Vec<(i32, f64)>, cmp: &mut Vec<(i32, f64)>, src: &[(i32, f64)]| {
            for &(i, v) in src {
                let d = dst.binary_search_by_key(&i, |b| b.0).unwrap_or_else(|p| {
                    dst.insert(p, (i, 0.0));
                    p
                });
                let k = cmp.binary_search_by_key(&i, |b| b.0).unwrap_or_else(|p| {
                    cmp.insert(p, (i, 0.0));
                    p
                });
                let (s, c) = kahan_inc(weight * v, dst[d].1, cmp[k].1);
                (dst[d].1, cmp[k].1) = (s, c);
            }
        };
        side(&mut self.positive, &mut comp.positive, &o.positive);
        side(&mut self.negative, &mut comp.negative, &o.negative);
        Ok(reconciled)
    }

    /// The compensated result of a [`Self::kahan_add`] series.
    pub fn compensated(mut self, comp: &FloatHistogram) -> FloatHistogram {
        let mut c = comp.clone();
        c.follow_layout(&self);
        self.count += c.count;
        self.sum += c.sum;
        self.zero_count += c.zero_count;
        merge_into(&mut self.positive, c.positive, 1.0);
        merge_into(&mut self.negative, c.negative, 1.0);
        self
    }

    /// Replaces each infinite count, sum or bucket with `other`'s value for
    /// it (same layout).
    pub fn replace_infinite(&mut self, other: &FloatHistogram) {
        let pick = |v: &mut f64, o: f64| {
            if v.is_infinite() {
                *v = o;
            }
        };
        pick(&mut self.count, other.count);
        pick(&mut self.sum, other.sum);
        pick(&mut self.zero_count, other.zero_count);
        for (mine, theirs) in [
            (&mut self.positive, &other.positive),
            (&mut self.negative, &other.negative),
        ] {
            for b in mine.iter_mut() {
                if let Ok(k) = theirs.binary_search_by_key(&b.0, |x| x.0) {
                    pick(&mut b.1, theirs[k].1);
                }
            }
        }
    }

    /// True when a count, the sum or a bucket is infinite.
    pub fn has_infinity(&self) -> bool {
        [self.count, self.sum, self.zero_count]
            .iter()
            .chain(self.positive.iter().chain(&self.negative).map(|b| &b.1))
            .any(|v| v.is_infinite())
    }

    /// Prometheus's `Equals`: same layout and values (NaN equal to NaN),
    /// the counter-reset hint aside.
    pub fn equals(&self, o: &FloatHistogram) -> bool {
        let f = |a: f64, b: f64| a.to_bits() == b.to_bits() || a == b;
        let (mut a, mut b) = (self.clone(), o.clone());
        a.compact();
        b.compact();
        let bk = |x: &[(i32, f64)], y: &[(i32, f64)]| {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.0 == q.0 && f(p.1, q.1))
        };
        a.schema == b.schema
            && f(a.zero_threshold, b.zero_threshold)
            && f(a.zero_count, b.zero_count)
            && f(a.count, b.count)
            && f(a.sum, b.sum)
            && bounds_match(&a.custom_values, &b.custom_values)
            && bk(&a.positive, &b.positive)
            && bk(&a.negative, &b.negative)
    }

    /// True when `self` follows `prev` only after a counter reset
    /// (Prometheus's `DetectReset`).
    pub fn detect_reset(&self, prev: &FloatHistogram) -> bool {
        match self.counter_reset_hint {
            CounterResetHint::Reset => return true,
            CounterResetHint::NotReset => return false,
            _ => {}
        }
        if self.count < prev.count {
            return true;
        }
        if self.uses_custom_buckets() != prev.uses_custom_buckets() {
            return true;
        }
        if self.uses_custom_buckets() && !bounds_match(&self.custom_values, &prev.custom_values) {
            // Compare on the bounds both share: a reset only if a count there
            // went down (Prometheus's detectResetWithMismatchedCustomBounds).
            let (mut cur, mut old) = (self.clone(), prev.clone());
            remap_to_common_bounds(&mut cur, &mut old);
            return old.positive.iter().any(|&(i, c)| {
                let now = cur
                    .positive
                    .binary_search_by_key(&i, |b| b.0)
                    .map_or(0.0, |k| cur.positive[k].1);
                now < c
            });
        }
        if self.schema > prev.schema || self.zero_threshold < prev.zero_threshold {
            return true;
        }
        let mut p = prev.clone();
        p.reduce_schema(self.schema);
        p.widen_zero_bucket(self.zero_threshold);
        if p.zero_threshold != self.zero_threshold || self.zero_count < p.zero_count {
            return true;
        }
        let dropped = |cur: &[(i32, f64)], old: &[(i32, f64)]| {
            old.iter().any(|&(i, c)| {
                let now = cur
                    .binary_search_by_key(&i, |b| b.0)
                    .map(|k| cur[k].1)
                    .unwrap_or(0.0);
                now < c
            })
        };
        dropped(&self.positive, &p.positive) || dropped(&self.negative, &p.negative)
    }

    /// The `q` quantile (Prometheus's `HistogramQuantile`).
    pub fn quantile(&self, q: f64) -> f64 {
        self.quantile_nan(q).0
    }

    /// [`Self::quantile`] plus what NaN observations (a NaN sum, and a
    /// count above what the buckets hold) did to it.
    pub fn quantile_nan(&self, q: f64) -> (f64, NanObservations) {
        if q < 0.0 {
            return (f64::NEG_INFINITY, NanObservations::None);
        }
        if q > 1.0 {
            return (f64::INFINITY, NanObservations::None);
        }
        if self.count == 0.0 || q.is_nan() {
            return (f64::NAN, NanObservations::None);
        }
        let forward = self.sum.is_nan() || q < 0.5;
        let mut all = self.buckets();
        let mut rank = if forward {
            q * self.count
        } else {
            all.reverse();
            (1.0 - q) * self.count
        };
        let mut count = 0.0;
        let mut bucket = None;
        let mut seen = 0;
        for b in &all {
            seen += 1;
            if b.count == 0.0 {
                continue;
            }
            bucket = Some(*b);
            count += b.count;
            if count >= rank {
                break;
            }
        }
        let mut b = bucket.unwrap_or(Bucket {
            lower: 0.0,
            upper: 0.0,
            count: 0.0,
            lower_inclusive: false,
            upper_inclusive: false,
        });
        let custom = self.uses_custom_buckets();
        if !custom && b.lower < 0.0 && b.upper > 0.0 {
            if self.negative.is_empty() && !self.positive.is_empty() {
                b.lower = 0.0;
            } else if self.positive.is_empty() && !self.negative.is_empty() {
                b.upper = 0.0;
            }
        } else if custom {
            if b.lower == f64::NEG_INFINITY {
                if b.upper <= 0.0 {
                    return (b.upper, NanObservations::None);
                }
                b.lower = 0.0;
            } else if b.upper == f64::INFINITY {
                return (b.lower, NanObservations::None);
            }
        }
        if count > self.count {
            count = self.count;
        }
        if count < rank {
            // Only NaN observations leave the rank above every bucket.
            if self.sum.is_nan() {
                return (f64::NAN, NanObservations::ResultNaN);
            }
            return (b.upper, NanObservations::None);
        }
        if forward {
            rank -= count - b.count;
        } else {
            rank = count - rank;
        }
        let mut nan = NanObservations::None;
        if self.sum.is_nan() {
            let total = count + all[seen..].iter().map(|b| b.count).sum::<f64>();
            if total < self.count {
                nan = NanObservations::Skewed;
            }
        }
        let fraction = rank / b.count;
        if custom || (b.lower <= 0.0 && b.upper >= 0.0) {
            return (b.lower + (b.upper - b.lower) * fraction, nan);
        }
        let log_lower = b.lower.abs().log2();
        let log_upper = b.upper.abs().log2();
        let v = if b.lower > 0.0 {
            (log_lower + (log_upper - log_lower) * fraction).exp2()
        } else {
            -(log_upper + (log_lower - log_upper) * (1.0 - fraction)).exp2()
        };
        (v, nan)
    }

    /// Fraction of observations in `(lower, upper]` (Prometheus's
    /// `HistogramFraction`).
    pub fn fraction(&self, lower: f64, upper: f64) -> f64 {
        self.fraction_nan(lower, upper).0
    }

    /// [`Self::fraction`], and whether NaN observations (a NaN sum and a
    /// count above what the buckets hold) were left out of every fraction.
    pub fn fraction_nan(&self, lower: f64, upper: f64) -> (f64, bool) {
        if self.count == 0.0 || lower.is_nan() || upper.is_nan() {
            return (f64::NAN, false);
        }
        if lower >= upper {
            return (0.0, false);
        }
        let custom = self.uses_custom_buckets();
        let all = self.buckets();
        let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
        let (mut lower_set, mut upper_set) = (false, false);
        let mut count = 0.0;
        let mut seen = 0;
        for &orig in &all {
            seen += 1;
            let mut b = orig;
            count += b.count;
            let mut zero = false;
            if b.lower <= 0.0 && b.upper >= 0.0 {
                zero = true;
                if self.negative.is_empty() && !self.positive.is_empty() {
                    b.lower = 0.0;
                } else if self.positive.is_empty() && !self.negative.is_empty() {
                    b.upper = 0.0;
                }
            }
            let interp = |v: f64| -> f64 {
                if custom || zero {
                    if b.lower == f64::NEG_INFINITY {
                        return b.count;
                    }
                    rank + b.count * (v - b.lower) / (b.upper - b.lower)
                } else {
                    let (ll, lu, lv) = (b.lower.abs().log2(), b.upper.abs().log2(), v.abs().log2());
                    let f = if v > 0.0 {
                        (lv - ll) / (lu - ll)
                    } else {
                        1.0 - (lv - lu) / (ll - lu)
                    };
                    rank + b.count * f
                }
            };
            if !lower_set && b.lower >= lower {
                lower_rank = rank;
                lower_set = true;
            }
            if !upper_set && b.lower >= upper {
                upper_rank = rank;
                upper_set = true;
            }
            if lower_set && upper_set {
                break;
            }
            if !lower_set && b.lower < lower && b.upper > lower {
                lower_rank = interp(lower);
                lower_set = true;
            }
            if !upper_set && b.lower < upper && b.upper > upper {
                upper_rank = interp(upper);
                upper_set = true;
            }
            if lower_set && upper_set {
                break;
            }
            rank += b.count;
        }
        let mut nan = false;
        if self.sum.is_nan() {
            count += all[seen..].iter().map(|b| b.count).sum::<f64>();
            nan = count < self.count;
        } else {
            count = self.count;
        }
        if !lower_set || lower_rank > count {
            lower_rank = count;
        }
        if !upper_set || upper_rank > count {
            upper_rank = count;
        }
        ((upper_rank - lower_rank) / self.count, nan)
    }

    /// The histogram trim operators (Prometheus's `TrimBuckets`): with
    /// `keep_below` (`h </ x`) only the observations below `x` remain, else
    /// (`h >/ x`) only those above it. Buckets wholly on the kept side stay,
    /// the bucket holding `x` is interpolated (linearly for custom bounds and
    /// the zero bucket, exponentially otherwise), the rest are emptied; a
    /// bucket with an infinite bound is kept or dropped whole. When anything
    /// was trimmed, count and sum are re-estimated from what remains (each
    /// bucket's count at its midpoint) and empty buckets are dropped.
    pub fn trim(&self, x: f64, keep_below: bool) -> FloatHistogram {
        let mut out = self.clone();
        let custom = self.uses_custom_buckets();
        let (mut count, mut sum, mut trimmed) = (0.0, 0.0, false);
        let (mut has_pos, mut has_neg) = (false, false);
        for positive in [true, false] {
            let n = if positive {
                out.positive.len()
            } else {
                out.negative.len()
            };
            for k in 0..n {
                let (i, c) = if positive {
                    out.positive[k]
                } else {
                    out.negative[k]
                };
                if c == 0.0 {
                    continue;
                }
                let b = if positive {
                    has_pos = true;
                    (self.lower_bound(i), self.upper_bound(i), c)
                } else {
                    has_neg = true;
                    (-self.upper_bound(i), -self.lower_bound(i), c)
                };
                let (lo, hi) = (b.0, b.1);
                let whole = if keep_below { hi <= x } else { lo >= x };
                let partial = if keep_below { lo < x } else { hi > x };
                let keep = if whole {
                    sum += trim_midpoint(lo, hi, positive, custom) * c;
                    c
                } else if partial {
                    let (kept, mid) = trim_bucket(b, x, keep_below, positive, custom);
                    sum += mid * kept;
                    kept
                } else {
                    0.0
                };
                count += keep;
                if keep != c {
                    trimmed = true;
                    let slot = if positive {
                        &mut out.positive[k]
                    } else {
                        &mut out.negative[k]
                    };
                    slot.1 = keep;
                }
            }
        }
        if out.zero_count > 0.0 {
            let zt = out.zero_threshold;
            let lo = if has_pos && !has_neg { 0.0 } else { -zt };
            let hi = if has_neg && !has_pos { 0.0 } else { zt };
            let (frac, mid) = match (keep_below, x <= lo, x >= hi) {
                (true, true, _) | (false, _, true) => (0.0, 0.0),
                (true, _, true) | (false, true, _) => (1.0, (lo + hi) / 2.0),
                (true, _, _) => ((x - lo) / (hi - lo), (lo + x) / 2.0),
                (false, _, _) => ((hi - x) / (hi - lo), (x + hi) / 2.0),
            };
            let kept = if frac == 1.0 {
                out.zero_count
            } else {
                out.zero_count * frac
            };
            if kept != out.zero_count {
                out.zero_count = kept;
                trimmed = true;
            }
            sum += mid * kept;
            count += kept;
        }
        if trimmed {
            out.count = count;
            out.sum = sum;
            out.compact();
        }
        out
    }

    /// Splits sparse buckets into Prometheus spans: `(offset, length)`
    /// pairs plus the counts, without gaps filled.
    pub fn spans(buckets: &[(i32, f64)]) -> (Vec<(i32, u32)>, Vec<f64>) {
        let mut spans: Vec<(i32, u32)> = Vec::new();
        let mut counts = Vec::with_capacity(buckets.len());
        let mut next = None;
        for &(i, c) in buckets {
            match next {
                Some(n) if n == i => spans.last_mut().expect("span").1 += 1,
                Some(n) => spans.push((i - n, 1)),
                None => spans.push((i, 1)),
            }
            next = Some(i + 1);
            counts.push(c);
        }
        (spans, counts)
    }
}

/// Neumaier-compensated summation step (Prometheus's `kahanSumInc`):
/// adds `inc` to `sum` with the running compensation `c`; the result is
/// `sum + c`.
pub fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// The value a trimmed bucket's remaining observations are assumed to have
/// (Prometheus's `computeMidpoint`): the arithmetic mean of `(lo, hi]` for
/// custom bounds, the geometric mean for exponential buckets; an infinite
/// bound falls back to the finite one.
fn trim_midpoint(lo: f64, hi: f64, positive: bool, linear: bool) -> f64 {
    if lo.is_infinite() {
        return match hi {
            h if h.is_infinite() => 0.0,
            h if h > 0.0 => h / 2.0,
            h => h,
        };
    }
    if hi.is_infinite() {
        return lo;
    }
    if linear {
        return (lo + hi) / 2.0;
    }
    let g = (lo * hi).abs().sqrt();
    if positive {
        g
    } else {
        -g
    }
}

/// The kept count and its midpoint for bucket `(lo, hi, count)` that holds
/// the trim point `x` (Prometheus's `computeBucketTrim`).
fn trim_bucket(
    (lo, hi, c): (f64, f64, f64),
    x: f64,
    keep_below: bool,
    positive: bool,
    linear: bool,
) -> (f64, f64) {
    let zero_if_inf = |v: f64| if v.is_infinite() { 0.0 } else { v };
    if lo == f64::NEG_INFINITY {
        // Only custom buckets reach -Inf: a finite positive upper bound is
        // treated as the bucket (0, hi]; otherwise nothing is known.
        if keep_below {
            if x >= hi {
                return (c, 0.0);
            }
            if x > 0.0 && hi > 0.0 && hi.is_finite() {
                return (c * x / hi, x / 2.0);
            }
            if hi <= 0.0 {
                return (c, x);
            }
            return (0.0, zero_if_inf(hi));
        }
        if x >= 0.0 && hi > x && hi.is_finite() {
            return (c * (1.0 - x / hi), (x + hi) / 2.0);
        }
        return (0.0, zero_if_inf(hi));
    }
    if hi == f64::INFINITY {
        if !keep_below && x >= lo {
            return (c, x);
        }
        return (0.0, zero_if_inf(lo));
    }
    let below = if x <= lo {
        0.0
    } else if x >= hi {
        c
    } else if linear {
        c * ((x - lo) / (hi - lo))
    } else {
        let (ll, lh, lx) = (lo.abs().log2(), hi.abs().log2(), x.abs().log2());
        let f = if positive {
            (lx - ll) / (lh - ll)
        } else {
            1.0 - (lx - lh) / (ll - lh)
        };
        c * f
    };
    if keep_below {
        (below, trim_midpoint(lo, x, positive, linear))
    } else {
        (c - below, trim_midpoint(x, hi, positive, linear))
    }
}

impl fmt::Display for FloatHistogram {
    /// The promqltest notation, `{{schema:0 count:4 sum:5 buckets:[1 2 1]}}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |b: &[(i32, f64)]| -> (i32, String) {
            let first = b.first().map_or(0, |x| x.0);
            let last = b.last().map_or(0, |x| x.0);
            let mut out = vec![];
            for i in first..=last {
                out.push(format_float(
                    b.binary_search_by_key(&i, |x| x.0)
                        .map(|k| b[k].1)
                        .unwrap_or(0.0),
                ));
            }
            (first, out.join(" "))
        };
        write!(f, "{{{{")?;
        let mut parts = vec![];
        if self.schema != 0 {
            parts.push(format!("schema:{}", self.schema));
        }
        parts.push(format!("count:{}", format_float(self.count)));
        parts.push(format!("sum:{}", format_float(self.sum)));
        if self.zero_threshold != 0.0 {
            parts.push(format!("z_bucket_w:{}", format_float(self.zero_threshold)));
        }
        if self.zero_count != 0.0 {
            parts.push(format!("z_bucket:{}", format_float(self.zero_count)));
        }
        if !self.custom_values.is_empty() {
            let v: Vec<String> = self
                .custom_values
                .iter()
                .map(|x| format_float(*x))
                .collect();
            parts.push(format!("custom_values:[{}]", v.join(" ")));
        }
        if !self.positive.is_empty() {
            let (off, l) = list(&self.positive);
            if off != 0 {
                parts.push(format!("offset:{off}"));
            }
            parts.push(format!("buckets:[{l}]"));
        }
        if !self.negative.is_empty() {
            let (off, l) = list(&self.negative);
            if off != 0 {
                parts.push(format!("n_offset:{off}"));
            }
            parts.push(format!("n_buckets:[{l}]"));
        }
        if self.counter_reset_hint != CounterResetHint::Unknown {
            parts.push(format!(
                "counter_reset_hint:{}",
                self.counter_reset_hint.as_str()
            ));
        }
        write!(f, "{}}}}}", parts.join(" "))
    }
}

/// One histogram sample of a series.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSample {
    /// Milliseconds since the Unix epoch.
    pub t: i64,
    /// The histogram.
    pub h: std::sync::Arc<FloatHistogram>,
}

// ---------------------------------------------------------------------------
// The promqltest / promtool text notation for histograms.
// ---------------------------------------------------------------------------

/// Parses a number as Go's `strconv.ParseFloat` does for the forms used in
/// promqltest and promtool files (`1`, `-2.5e3`, `Inf`, `NaN`); `hex`
/// allows `0x1f` (series values do not: there `0x5` is `0` five times).
pub fn parse_test_float(s: &str, hex: bool) -> Option<f64> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let v = if body.eq_ignore_ascii_case("inf") || body.eq_ignore_ascii_case("infinity") {
        f64::INFINITY
    } else if body.eq_ignore_ascii_case("nan") {
        f64::NAN
    } else if let Some(h) = body
        .strip_prefix("0x")
        .or_else(|| body.strip_prefix("0X"))
        .filter(|_| hex)
    {
        u64::from_str_radix(h, 16).ok()? as f64
    } else if body.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        body.parse::<f64>().ok()?
    } else {
        return None;
    };
    Some(if neg { -v } else { v })
}

/// Parses the inside of one `{{schema:.. sum:.. count:.. z_bucket:..
/// z_bucket_w:.. buckets:[..] offset:.. n_buckets:[..] n_offset:..
/// custom_values:[..] counter_reset_hint:..}}` histogram (without the
/// braces). The bool tells whether `counter_reset_hint` was given.
pub fn parse_test_histogram(body: &str) -> Result<(FloatHistogram, bool), String> {
    let mut h = FloatHistogram::default();
    let mut explicit = false;
    let (mut pos, mut neg) = (Vec::new(), Vec::new());
    let (mut off, mut noff) = (0i32, 0i32);
    let mut seen = std::collections::HashSet::new();
    let mut rest = body.trim();
    let num = |v: &str| {
        parse_test_float(v, false).ok_or_else(|| format!("bad number {v:?} in histogram"))
    };
    let list = |v: &str| -> Result<Vec<f64>, String> { v.split_whitespace().map(num).collect() };
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once(':')
            .ok_or_else(|| format!("bad histogram {body:?}"))?;
        let key = key.trim();
        if !seen.insert(key.to_string()) {
            return Err(format!("duplicate key {key} in histogram"));
        }
        let after = after.trim_start();
        let (val, next) = if let Some(inner) = after.strip_prefix('[') {
            let end = inner.find(']').ok_or("unterminated list in histogram")?;
            (&inner[..end], &inner[end + 1..])
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        rest = next.trim_start();
        match key {
            "schema" => h.schema = val.parse().map_err(|_| format!("bad schema {val:?}"))?,
            "sum" => h.sum = num(val)?,
            "count" => h.count = num(val)?,
            "z_bucket" => h.zero_count = num(val)?,
            "z_bucket_w" => h.zero_threshold = num(val)?,
            "offset" => off = val.parse().map_err(|_| format!("bad offset {val:?}"))?,
            "n_offset" => noff = val.parse().map_err(|_| format!("bad offset {val:?}"))?,
            "buckets" => pos = list(val)?,
            "n_buckets" => neg = list(val)?,
            "custom_values" => h.custom_values = list(val)?,
            "counter_reset_hint" => {
                explicit = true;
                h.counter_reset_hint = match val {
                    "unknown" => CounterResetHint::Unknown,
                    "reset" => CounterResetHint::Reset,
                    "not_reset" => CounterResetHint::NotReset,
                    "gauge" => CounterResetHint::Gauge,
                    _ => return Err(format!("bad counter_reset_hint {val:?}")),
                }
            }
            _ => return Err(format!("unknown histogram key {key:?}")),
        }
    }
    h.positive = pos
        .into_iter()
        .enumerate()
        .map(|(i, c)| (off + i as i32, c))
        .collect();
    h.negative = neg
        .into_iter()
        .enumerate()
        .map(|(i, c)| (noff + i as i32, c))
        .collect();
    Ok((h, explicit))
}

/// Expands one histogram series item: `{{a}}`, `{{a}}xN` (N+1 copies),
/// `{{a}}+{{b}}xN` or `{{a}}-{{b}}xN` (N+1 values, adding or subtracting
/// `b` each step). Each value carries whether `a` gave its hint explicitly.
pub fn expand_test_histogram(tok: &str) -> Result<Vec<(FloatHistogram, bool)>, String> {
    let bad = || format!("bad histogram item {tok:?}");
    let body = tok.strip_prefix("{{").ok_or_else(bad)?;
    let end = body.find("}}").ok_or_else(bad)?;
    let (a, ea) = parse_test_histogram(&body[..end])?;
    let rest = &body[end + 2..];
    if rest.is_empty() {
        return Ok(vec![(a, ea)]);
    }
    if let Some(n) = rest.strip_prefix('x') {
        let n: usize = n.parse().map_err(|_| bad())?;
        return Ok(vec![(a, ea); n + 1]);
    }
    let sign = rest.as_bytes()[0];
    if sign != b'+' && sign != b'-' {
        return Err(bad());
    }
    let rest = rest[1..].strip_prefix("{{").ok_or_else(bad)?;
    let end = rest.find("}}").ok_or_else(bad)?;
    let (b, _) = parse_test_histogram(&rest[..end])?;
    let n: usize = rest[end + 2..]
        .strip_prefix('x')
        .and_then(|n| n.parse().ok())
        .ok_or_else(bad)?;
    let mut out = Vec::with_capacity(n + 1);
    let mut cur = a;
    for _ in 0..=n {
        out.push((cur.clone(), ea));
        let r = if sign == b'-' {
            cur.sub(&b)
        } else {
            cur.add(&b)
        };
        r.map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// Splits a series value list on whitespace, keeping `{{...}}` items
/// (which contain spaces) whole.
pub fn split_test_values(vals: &str) -> Vec<&str> {
    let b = vals.as_bytes();
    let mut out = vec![];
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        let mut depth = 0;
        while i < b.len() && (depth > 0 || !b[i].is_ascii_whitespace()) {
            if b[i..].starts_with(b"{{") {
                depth += 1;
                i += 2;
            } else if b[i..].starts_with(b"}}") {
                depth -= 1;
                i += 2;
            } else {
                i += 1;
            }
        }
        out.push(&vals[start..i]);
    }
    out
}

/// Compares an expected histogram with a got one after compacting both:
/// floats with `float_eq`, the counter-reset hint only when `check_hint`.
pub fn test_histogram_equal(
    e: &FloatHistogram,
    g: &FloatHistogram,
    check_hint: bool,
    float_eq: impl Fn(f64, f64) -> bool,
) -> bool {
    let (mut a, mut b) = (e.clone(), g.clone());
    a.compact();
    b.compact();
    let buckets_eq = |x: &[(i32, f64)], y: &[(i32, f64)]| {
        x.len() == y.len()
            && x.iter()
                .zip(y)
                .all(|(p, q)| p.0 == q.0 && float_eq(p.1, q.1))
    };
    a.schema == b.schema
        && a.zero_threshold == b.zero_threshold
        && (!a.uses_custom_buckets() || a.custom_values == b.custom_values)
        && float_eq(a.count, b.count)
        && float_eq(a.sum, b.sum)
        && float_eq(a.zero_count, b.zero_count)
        && buckets_eq(&a.positive, &b.positive)
        && buckets_eq(&a.negative, &b.negative)
        && (!check_hint || a.counter_reset_hint == b.counter_reset_hint)
}

/// Gives consecutive histogram samples of one series the counter-reset
/// hints they read back with from Prometheus's TSDB: a sample that starts a
/// new chunk after a reset is `unknown`, the others `not_reset`; the first
/// sample and hints other than `unknown` are kept.
pub fn assign_tsdb_hints(hists: &mut [HistogramSample]) {
    for i in 1..hists.len() {
        let prev = hists[i - 1].h.clone();
        let h = std::sync::Arc::make_mut(&mut hists[i].h);
        if h.counter_reset_hint != CounterResetHint::Unknown {
            continue;
        }
        let mut probe = h.clone();
        probe.counter_reset_hint = CounterResetHint::Unknown;
        h.counter_reset_hint = if probe.detect_reset(&prev) {
            CounterResetHint::Unknown
        } else {
            CounterResetHint::NotReset
        };
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn test_notation_parses_expands_and_round_trips() {
        let (h, explicit) = parse_test_histogram(
            "schema:1 sum:-0.3 count:32.1 z_bucket:7.1 z_bucket_w:0.05 buckets:[5.1 10 7] offset:-3 n_buckets:[4.1 5] n_offset:-5",
        )
        .unwrap();
        assert!(!explicit);
        assert_eq!(h.schema, 1);
        assert_eq!(h.positive, vec![(-3, 5.1), (-2, 10.0), (-1, 7.0)]);
        assert_eq!(h.negative, vec![(-5, 4.1), (-4, 5.0)]);
        let (back, _) = parse_test_histogram(h.to_string().trim_matches(['{', '}'])).unwrap();
        assert!(test_histogram_equal(&h, &back, true, |a, b| a == b));
        assert!(parse_test_histogram("sum:1 sum:2").is_err());
        assert!(parse_test_histogram("bogus:1").is_err());

        let v = expand_test_histogram(
            "{{sum:3 count:2 buckets:[2]}}+{{sum:1.3 count:1 buckets:[1]}}x2",
        )
        .unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[2].0.count, 4.0);
        assert!((v[2].0.sum - 5.6).abs() < 1e-9);
        assert_eq!(expand_test_histogram("{{count:1}}x3").unwrap().len(), 4);
        assert!(expand_test_histogram("{{count:1}}*{{count:1}}x3").is_err());
        assert_eq!(
            split_test_values(" 1 {{count:1 buckets:[1 2]}}x2  _ "),
            vec!["1", "{{count:1 buckets:[1 2]}}x2", "_"]
        );
        assert_eq!(parse_test_float("0x10", true), Some(16.0));
        assert_eq!(parse_test_float("0x10", false), None);
    }

    #[test]
    fn tsdb_hints_mark_non_resets() {
        let mk = |t, c| HistogramSample {
            t,
            h: std::sync::Arc::new(
                parse_test_histogram(&format!("count:{c} sum:{c} buckets:[{c}]"))
                    .unwrap()
                    .0,
            ),
        };
        let mut hs = vec![mk(0, 2.0), mk(1, 3.0), mk(2, 1.0)];
        assign_tsdb_hints(&mut hs);
        let hints: Vec<_> = hs.iter().map(|h| h.h.counter_reset_hint).collect();
        assert_eq!(
            hints,
            vec![
                CounterResetHint::Unknown,
                CounterResetHint::NotReset,
                CounterResetHint::Unknown
            ]
        );
        let (e, _) = parse_test_histogram("count:3 sum:3 buckets:[3]").unwrap();
        assert!(!test_histogram_equal(&e, &hs[1].h, true, |a, b| a == b));
        assert!(test_histogram_equal(&e, &hs[1].h, false, |a, b| a == b));
    }

    use super::*;

    fn h(schema: i32, count: f64, sum: f64, pos: &[(i32, f64)]) -> FloatHistogram {
        FloatHistogram {
            schema,
            count,
            sum,
            positive: pos.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn bounds_quantile_and_fraction_follow_prometheus() {
        assert_eq!(exponential_bound(0, 0), 1.0);
        assert_eq!(exponential_bound(1, 0), 2.0);
        assert_eq!(exponential_bound(2, 1), 2.0);
        assert_eq!(exponential_bound(1, -1), 4.0);
        // {{schema:0 sum:5 count:4 buckets:[1 2 1]}}
        let x = h(0, 4.0, 5.0, &[(0, 1.0), (1, 2.0), (2, 1.0)]);
        assert!((x.quantile(0.5) - std::f64::consts::SQRT_2).abs() < 1e-12);
        assert_eq!(x.fraction(1.0, 2.0), 0.5);
        assert_eq!(x.fraction(0.0, 8.0), 1.0);
    }

    #[test]
    fn trim_interpolates_the_bucket_holding_the_cut() {
        // Custom bounds [5 10 15 20], buckets [1 6 4 3 1]: `</ 13` keeps
        // 3/5 of (10, 15] (linear), `>/ 13` the other 2/5 and what is above.
        let mut c = h(
            CUSTOM_BUCKETS_SCHEMA,
            15.0,
            172.5,
            &[(0, 1.0), (1, 6.0), (2, 4.0), (3, 3.0), (4, 1.0)],
        );
        c.custom_values = vec![5.0, 10.0, 15.0, 20.0];
        let below = c.trim(13.0, true);
        assert_eq!(below.positive, vec![(0, 1.0), (1, 6.0), (2, 2.4)]);
        assert!((below.count - 9.4).abs() < 1e-12 && (below.sum - 75.1).abs() < 1e-9);
        let above = c.trim(13.0, false);
        assert!((above.count - 5.6).abs() < 1e-12 && (above.sum - 94.9).abs() < 1e-9);
        // Nothing trimmed: count and sum stay as they were.
        assert_eq!(c.trim(f64::INFINITY, true), c);
        // Exponential: the geometric middle of (1, 2] halves that bucket.
        let e = h(0, 4.0, 5.0, &[(1, 2.0), (2, 2.0)]);
        let t = e.trim(std::f64::consts::SQRT_2, true);
        assert!((t.count - 1.0).abs() < 1e-12);
        assert_eq!(t.positive.len(), 1);
    }

    #[test]
    fn kahan_add_keeps_what_plain_addition_loses() {
        let sums = [3.1, 1e100, -1e100, 1.3];
        let mut acc = h(0, 1.0, sums[0], &[(0, 1.0)]);
        let mut comp = acc.compensation();
        for s in &sums[1..] {
            acc.kahan_add(&h(0, 1.0, *s, &[(1, 1.0)]), 1.0, &mut comp)
                .unwrap();
        }
        let out = acc.compensated(&comp);
        assert!((out.sum - 4.4).abs() < 1e-12, "{}", out.sum);
        assert_eq!(out.count, 4.0);
        assert_eq!(out.positive, vec![(0, 1.0), (1, 3.0)]);
    }

    #[test]
    fn add_reduces_schema_and_sub_detects_layout() {
        let mut a = h(1, 2.0, 3.0, &[(1, 1.0), (2, 1.0)]);
        let b = h(0, 1.0, 1.0, &[(1, 1.0)]);
        a.add(&b).unwrap();
        assert_eq!(a.schema, 0);
        assert_eq!(a.positive, vec![(1, 3.0)]);
        let mut c = h(CUSTOM_BUCKETS_SCHEMA, 1.0, 1.0, &[(0, 1.0)]);
        assert_eq!(c.add(&b), Err(HistogramError::MixedSchemas));
        assert!(b.detect_reset(&a));
        assert!(!a.detect_reset(&b));
        c.custom_values = vec![1.0, 2.0];
        let mut d = c.clone();
        d.custom_values = vec![2.0];
        assert_eq!(c.add(&d), Ok(true));
        assert_eq!(c.custom_values, vec![2.0]);
        assert_eq!(c.positive, vec![(0, 2.0)]);
    }
}
