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

/// Drops `__name__` and, as Prometheus does with type-and-unit labels, the
/// `__type__` and `__unit__` that describe it.
fn without_name(l: &Labels) -> Labels {
    l.drop_names(&[crate::model::METRIC_NAME, "__type__", "__unit__"])
}

fn final_labels(l: Labels, drop_name: bool) -> Labels {
    if drop_name {
        without_name(&l)
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
        (Val::Vector(vs), false) => {
            // Series that became equal once names were dropped merge when
            // their steps do not overlap (Prometheus checks per step).
            let vs = super::functions::merge_same_labels(
                vs.into_iter()
                    .map(|mut s| {
                        if s.drop_name {
                            s.labels = without_name(&s.labels);
                            s.drop_name = false;
                        }
                        s
                    })
                    .collect(),
            )?;
            let mut out: Vec<SeriesSamples> = vs
                .into_iter()
                .filter_map(|s| {
                    let samples: Vec<Sample> = s
                        .vals
                        .iter()
                        .enumerate()
                        .filter_map(|(i, v)| v.map(|v| Sample::new(r.t(i), v)))
                        .collect();
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
                    (!samples.is_empty() || !histograms.is_empty()).then(|| SeriesSamples {
                        labels: final_labels(s.labels, s.drop_name),
                        samples,
                        histograms,
                    })
                })
                .collect();
            out.sort_by(|a, b| a.labels.cmp(&b.labels));
            check_unique(out.iter().map(|s| &s.labels))?;
            Ok(Value::Matrix(out))
        }
        (Val::String(_), false) => Err(QueryError::BadData(
            "invalid expression type \"string\" for range query, must be Scalar or instant Vector"
                .into(),
        )),
    }
}
