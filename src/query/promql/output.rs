//! Turns the evaluator's dense per-step values into the API's [`Value`],
//! applying delayed `__name__` removal as Prometheus does at the end.

use std::collections::HashSet;

use super::eval::{Result, Steps, Val};
use super::{QueryError, Value, VectorSample};
use crate::model::{HistogramSample, Labels, Sample};
use crate::storage::SeriesSamples;

fn same_labelset() -> QueryError {
    QueryError::Execution("vector cannot contain metrics with the same labelset".into())
}

/// `__name__` and, as Prometheus drops them with it, the type-and-unit
/// labels `__type__` and `__unit__` that describe it.
const NAME_LABELS: [&str; 3] = [crate::model::METRIC_NAME, "__type__", "__unit__"];

/// Drops the [`NAME_LABELS`] in place (no copy of the other labels).
fn without_name(l: Labels) -> Labels {
    if !l.iter().any(|p| NAME_LABELS.contains(&p.name.as_str())) {
        return l;
    }
    let mut pairs = l.into_vec();
    pairs.retain(|p| !NAME_LABELS.contains(&p.name.as_str()));
    Labels::from_sorted(pairs)
}

fn final_labels(l: Labels, drop_name: bool) -> Labels {
    if drop_name {
        without_name(l)
    } else {
        l
    }
}

fn check_unique<'a>(labels: impl Iterator<Item = &'a Labels>) -> Result<()> {
    let mut seen = HashSet::new();
    for l in labels {
        if !seen.insert(l) {
            return Err(same_labelset());
        }
    }
    Ok(())
}

/// The final value of a query.
pub(crate) fn finish(val: Val, r: &Steps, instant: bool) -> Result<Value> {
    let t = r.start;
    match (val, instant) {
        (Val::Scalar(v), true) => Ok(Value::Scalar { t, v: v[0] }),
        (Val::String(s), true) => Ok(Value::String { t, s }),
        (Val::Vector(vs), true) => {
            let out: Vec<VectorSample> = vs
                .into_iter()
                .filter_map(|s| {
                    let h = s.h(0).cloned();
                    let v = s.vals[0];
                    if v.is_none() && h.is_none() {
                        return None;
                    }
                    Some(VectorSample {
                        labels: final_labels(s.labels, s.drop_name),
                        t,
                        v: v.unwrap_or(0.0),
                        h,
                    })
                })
                .collect();
            check_unique(out.iter().map(|s| &s.labels))?;
            Ok(Value::Vector(out))
        }
        (Val::Matrix(m), _) => {
            let mut out: Vec<SeriesSamples> = m
                .into_iter()
                .map(|s| SeriesSamples {
                    labels: final_labels(s.labels, s.drop_name),
                    samples: s.samples,
                    histograms: s.hists,
                })
                .collect();
            out.sort_by(|a, b| a.labels.cmp(&b.labels));
            check_unique(out.iter().map(|s| &s.labels))?;
            Ok(Value::Matrix(out))
        }
        (Val::Scalar(v), false) => Ok(Value::Matrix(vec![SeriesSamples {
            labels: Labels::empty(),
            histograms: vec![],
            samples: v
                .into_iter()
                .enumerate()
                .map(|(i, v)| Sample::new(r.t(i), v))
                .collect(),
        }])),
        (Val::Vector(mut vs), false) => {
            for s in &mut vs {
                if s.drop_name {
                    s.labels = without_name(std::mem::take(&mut s.labels));
                    s.drop_name = false;
                }
            }
            // Sorted (stable: the first of equal label sets stays first),
            // series that became equal once names were dropped are
            // neighbours and merge when their steps do not overlap
            // (Prometheus checks per step); the answer is then unique.
            vs.sort_by(|a, b| a.labels.cmp(&b.labels));
            let mut out: Vec<SeriesSamples> = Vec::with_capacity(vs.len());
            let mut vs = vs.into_iter().peekable();
            while let Some(mut s) = vs.next() {
                while let Some(dup) = vs.next_if(|d| d.labels == s.labels) {
                    for (a, b) in s.vals.iter_mut().zip(dup.vals) {
                        if b.is_some() {
                            if a.is_some() {
                                return Err(same_labelset());
                            }
                            *a = b;
                        }
                    }
                }
                let count = s.vals.iter().filter(|v| v.is_some()).count();
                let mut samples = Vec::with_capacity(count);
                for (i, v) in s.vals.iter().enumerate() {
                    if let Some(v) = *v {
                        samples.push(Sample::new(r.t(i), v));
                    }
                }
                let histograms: Vec<HistogramSample> = s
                    .hvals
                    .iter()
                    .enumerate()
                    .filter_map(|(i, h)| {
                        h.as_ref().map(|h| HistogramSample {
                            t: r.t(i),
                            h: h.clone(),
                        })
                    })
                    .collect();
                if !samples.is_empty() || !histograms.is_empty() {
                    out.push(SeriesSamples {
                        labels: s.labels,
                        samples,
                        histograms,
                    });
                }
            }
            Ok(Value::Matrix(out))
        }
        (Val::String(_), false) => Err(QueryError::BadData(
            "invalid expression type \"string\" for range query, must be Scalar or instant Vector"
                .into(),
        )),
    }
}
