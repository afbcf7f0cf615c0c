//! Unit tests of the PromQL engine's trickier semantics.

use std::sync::Arc;

use super::*;
use crate::model::{Labels, Sample, Tenant};
use crate::storage::mem::MemMetrics;
use crate::storage::{MetricsWriter, SeriesWrite, WriteBatch};

type SeriesDef<'a> = (&'a [(&'a str, &'a str)], &'a [(i64, f64)]);

fn store(series: &[SeriesDef]) -> Engine {
    let s = Arc::new(MemMetrics::new());
    let batch = WriteBatch {
        series: series
            .iter()
            .map(|(l, v)| SeriesWrite {
                labels: Labels::from_pairs(l.iter().copied()),
                samples: v.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
                exemplars: vec![],
            })
            .collect(),
        metadata: vec![],
    };
    s.append(&Tenant::anonymous(), batch).unwrap();
    Engine::new(s, EngineOptions::default())
}

fn instant(e: &Engine, q: &str, t: i64) -> Vec<(String, f64)> {
    match e
        .instant(&Tenant::anonymous(), q, t, &QueryParams::default())
        .unwrap()
        .value
    {
        Value::Vector(v) => v.into_iter().map(|s| (s.labels.to_string(), s.v)).collect(),
        Value::Scalar { v, .. } => vec![(String::new(), v)],
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn max_ignores_nan_first() {
    let e = store(&[
        (&[("__name__", "m"), ("i", "0")], &[(0, f64::NAN)]),
        (&[("__name__", "m"), ("i", "1")], &[(0, 3.0)]),
    ]);
    assert_eq!(instant(&e, "max(m)", 0), vec![("{}".to_string(), 3.0)]);
}
