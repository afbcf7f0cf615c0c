//! Extended range selectors (`rate(x[5m] anchored)`, `increase(x[5m]
//! smoothed)`, Prometheus's experimental `promql-extended-range-selectors`):
//! no extrapolation; `anchored` starts from the last sample at or before the
//! window start, `smoothed` interpolates the values at both window ends.

use super::eval::{window, Evaluator, RangeArg, Result, Series, Steps, Val};
use super::parse::RangeMode;
use super::QueryError;
use crate::model::Sample;

/// The samples of `s` the modifier sees for the window `(mint, maxt]`, with
/// the window ends as their timestamps where interpolated.
fn points(s: &[Sample], mint: i64, maxt: i64, mode: RangeMode, lookback: i64) -> Vec<Sample> {
    let inside = window(s, mint, maxt);
    let before = s[..s.partition_point(|x| x.t <= mint)]
        .last()
        .filter(|x| x.t > mint - lookback)
        .copied();
    let after = s[s.partition_point(|x| x.t <= maxt)..]
        .first()
        .filter(|x| x.t < maxt + lookback)
        .copied();
    let mut out = Vec::with_capacity(inside.len() + 2);
    match mode {
        RangeMode::Anchored => {
            out.extend(before);
            out.extend_from_slice(inside);
        }
        RangeMode::Smoothed => {
            let first = inside.first().copied().or(after);
            let start = match (before, first) {
                (Some(b), Some(f)) => Some(interpolate(b, f, mint)),
                (None, Some(f)) => Some(f.v),
                (Some(b), None) => Some(b.v),
                (None, None) => None,
            };
            let last = inside.last().copied().or(before);
            let end = match (last, after) {
                (Some(l), Some(a)) => Some(interpolate(l, a, maxt)),
                (Some(l), None) => Some(l.v),
                (None, Some(a)) => Some(a.v),
                (None, None) => None,
            };
            if let (Some(a), Some(b)) = (start, end) {
                out.push(Sample::new(mint, a));
                out.extend(inside.iter().filter(|x| x.t < maxt).copied());
                out.push(Sample::new(maxt, b));
            }
        }
    }
    out
}

fn interpolate(a: Sample, b: Sample, t: i64) -> f64 {
    if b.t == a.t {
        return b.v;
    }
    a.v + (b.v - a.v) * (t - a.t) as f64 / (b.t - a.t) as f64
}

fn increase(p: &[Sample], counter: bool) -> f64 {
    let mut r = p[p.len() - 1].v - p[0].v;
    if counter {
        for w in p.windows(2) {
            if w[1].v < w[0].v {
                r += w[0].v;
            }
        }
    }
    r
}

pub(crate) fn anchored_or_smoothed(
    ev: &mut Evaluator,
    name: &str,
    mode: RangeMode,
    arg: &RangeArg,
    r: &Steps,
) -> Result<Val> {
    let allowed: &[&str] = match mode {
        RangeMode::Anchored => &["changes", "delta", "increase", "rate", "resets"],
        RangeMode::Smoothed => &["delta", "increase", "rate"],
    };
    if !allowed.contains(&name) {
        let m = match mode {
            RangeMode::Anchored => "anchored",
            RangeMode::Smoothed => "smoothed",
        };
        return Err(QueryError::BadData(format!(
            "{m} modifier can only be used with: {} - not with {name}",
            allowed.join(", ")
        )));
    }
    let n = r.len();
    let mut out = Vec::new();
    for s in &arg.series {
        let vals: Vec<Option<f64>> = (0..n)
            .map(|i| {
                let (mint, maxt) = arg.window(r, i);
                let p = points(&s.samples, mint, maxt, mode, arg.lookback);
                let empty = window(&s.samples, mint, maxt).is_empty();
                // Smoothed needs data on both sides of an empty window.
                let both_sides = s.samples.first().is_some_and(|f| f.t <= mint)
                    && s.samples.last().is_some_and(|l| l.t > maxt);
                if p.is_empty() || (empty && (mode == RangeMode::Anchored || !both_sides)) {
                    return None;
                }
                Some(match name {
                    "rate" => increase(&p, true) / (arg.range as f64 / 1000.0),
                    "increase" => increase(&p, true),
                    "delta" => increase(&p, false),
                    "changes" => p.windows(2).filter(|w| w[1].v != w[0].v).count() as f64,
                    _ => p.windows(2).filter(|w| w[1].v < w[0].v).count() as f64,
                })
            })
            .collect();
        if vals.iter().any(|v| v.is_some()) {
            out.push(Series {
                hvals: vec![],
                labels: s.labels.clone(),
                drop_name: true,
                vals,
            });
        }
    }
    ev.check_deadline()?;
    Ok(Val::Vector(out))
}
