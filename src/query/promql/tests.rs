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

fn counter_1_per_s() -> Engine {
    // x_total = t seconds, scraped every 15 s for 10 minutes.
    let samples: Vec<(i64, f64)> = (0..=40).map(|i| (i * 15_000, (i * 15) as f64)).collect();
    store(&[(&[("__name__", "x_total"), ("job", "a")], &samples)])
}

#[test]
fn rate_extrapolates_to_the_range_boundaries() {
    let e = counter_1_per_s();
    let v = instant(&e, "rate(x_total[5m])", 300_000);
    assert_eq!(v.len(), 1);
    assert!((v[0].1 - 1.0).abs() < 1e-12, "{v:?}");
    // increase over 5m of a 1/s counter is 300 after extrapolation.
    let v = instant(&e, "increase(x_total[5m])", 300_000);
    assert!((v[0].1 - 300.0).abs() < 1e-9, "{v:?}");
    // The name is dropped by rate.
    assert_eq!(v[0].0, r#"{job="a"}"#);
}

#[test]
fn counter_resets_are_compensated() {
    let e = store(&[(
        &[("__name__", "c_total")],
        &[(0, 10.0), (15_000, 20.0), (30_000, 5.0), (45_000, 15.0)],
    )]);
    // resets: one; increase sees 10 + (20) + 10 = 25 over 45 s of samples.
    assert_eq!(instant(&e, "resets(c_total[1m])", 45_000)[0].1, 1.0);
    let irate = instant(&e, "irate(c_total[1m])", 45_000)[0].1;
    assert!((irate - 10.0 / 15.0).abs() < 1e-12);
}

#[test]
fn staleness_marker_ends_a_series_and_lookback_is_left_open() {
    let stale = f64::from_bits(crate::model::STALE_NAN_BITS);
    let e = store(&[
        (&[("__name__", "s")], &[(0, 1.0), (15_000, stale)]),
        (&[("__name__", "l")], &[(0, 2.0)]),
    ]);
    assert_eq!(instant(&e, "s", 10_000).len(), 1);
    assert!(instant(&e, "s", 30_000).is_empty());
    // Lookback is (t - 5m, t]: a sample exactly 5m old is out.
    assert_eq!(instant(&e, "l", 299_999).len(), 1);
    assert!(instant(&e, "l", 300_000).is_empty());
}

#[test]
fn negative_offset_and_at_modifier() {
    let e = counter_1_per_s();
    assert_eq!(instant(&e, "x_total offset -1m", 0)[0].1, 60.0);
    assert_eq!(instant(&e, "x_total @ 120", 600_000)[0].1, 120.0);
    assert_eq!(instant(&e, "x_total @ 120 offset 1m", 0)[0].1, 60.0);
}

#[test]
fn subquery_steps_are_aligned_to_the_step() {
    let e = counter_1_per_s();
    // Inner steps at 60, 120, ..., 300 s (left-open range): 5 points.
    let v = instant(&e, "count_over_time(x_total[5m:1m])", 300_000);
    assert_eq!(v[0].1, 5.0);
    let v = instant(&e, "max_over_time(rate(x_total[1m])[5m:1m])", 300_000);
    assert!((v[0].1 - 1.0).abs() < 1e-12);
}

#[test]
fn many_to_many_matching_is_an_error_with_prometheus_wording() {
    let e = store(&[
        (&[("__name__", "a"), ("l", "1")], &[(0, 1.0)]),
        (&[("__name__", "b"), ("l", "1"), ("x", "p")], &[(0, 1.0)]),
        (&[("__name__", "b"), ("l", "1"), ("x", "q")], &[(0, 2.0)]),
    ]);
    let err = e
        .instant(
            &Tenant::anonymous(),
            "a + on(l) b",
            0,
            &QueryParams::default(),
        )
        .unwrap_err();
    assert_eq!(err.error_type(), "execution");
    assert_eq!(
        err.to_string(),
        r#"found duplicate series for the match group {l="1"} on the right hand-side of the operation: [{__name__="b", l="1", x="p"}, {__name__="b", l="1", x="q"}];many-to-many matching not allowed: matching labels must be unique on one side"#
    );
    // group_left makes it valid and copies nothing.
    let v = instant(&e, "b + on(l) group_left a", 0);
    assert_eq!(v.len(), 2);
}

#[test]
fn topk_orders_instant_results_and_bool_drops_the_name() {
    let e = store(&[
        (&[("__name__", "m"), ("i", "0")], &[(0, 1.0)]),
        (&[("__name__", "m"), ("i", "1")], &[(0, 3.0)]),
        (&[("__name__", "m"), ("i", "2")], &[(0, 2.0)]),
    ]);
    let v = instant(&e, "topk(2, m)", 0);
    assert_eq!(
        v,
        vec![(r#"m{i="1"}"#.into(), 3.0), (r#"m{i="2"}"#.into(), 2.0)]
    );
    let v = instant(&e, "m > bool 1", 0);
    assert!(v.iter().all(|(l, _)| !l.starts_with('m')));
    assert_eq!(instant(&e, "m > 1", 0).len(), 2);
}

#[test]
fn histogram_quantile_interpolates_classic_buckets() {
    let l1 = [("__name__", "h_bucket"), ("le", "0.1")];
    let l2 = [("__name__", "h_bucket"), ("le", "1")];
    let l3 = [("__name__", "h_bucket"), ("le", "+Inf")];
    let refs: Vec<SeriesDef> = vec![
        (&l1, &[(0, 10.0)]),
        (&l2, &[(0, 20.0)]),
        (&l3, &[(0, 20.0)]),
    ];
    let e = store(&refs);
    let v = instant(&e, "histogram_quantile(0.75, h_bucket)", 0);
    // rank 15 falls in (0.1, 1]: 0.1 + 0.9 * 5/10.
    assert!((v[0].1 - 0.55).abs() < 1e-12, "{v:?}");
}

#[test]
fn range_query_is_a_matrix_and_limits_apply() {
    let e = counter_1_per_s();
    let out = e
        .range(
            &Tenant::anonymous(),
            "time()",
            0,
            120_000,
            60_000,
            &QueryParams::default(),
        )
        .unwrap();
    let Value::Matrix(m) = out.value else {
        panic!("not a matrix")
    };
    assert_eq!(m[0].samples.len(), 3);
    assert_eq!(m[0].samples[2].v, 120.0);

    let limited = Engine::new(
        {
            let s = Arc::new(MemMetrics::new());
            let samples: Vec<Sample> = (0..100).map(|i| Sample::new(i * 1000, i as f64)).collect();
            s.append(
                &Tenant::anonymous(),
                WriteBatch {
                    series: vec![SeriesWrite {
                        labels: Labels::from_pairs([("__name__", "z")]),
                        samples,
                        exemplars: vec![],
                    }],
                    metadata: vec![],
                },
            )
            .unwrap();
            s
        },
        EngineOptions {
            max_samples: 10,
            ..EngineOptions::default()
        },
    );
    let err = limited
        .instant(
            &Tenant::anonymous(),
            "sum_over_time(z[1m])",
            99_000,
            &QueryParams::default(),
        )
        .unwrap_err();
    assert!(matches!(err, QueryError::TooManySamples(_)), "{err}");
}

#[test]
fn bad_queries_are_bad_data() {
    let e = counter_1_per_s();
    let err = e
        .range(
            &Tenant::anonymous(),
            "x_total[5m]",
            0,
            60_000,
            15_000,
            &QueryParams::default(),
        )
        .unwrap_err();
    assert_eq!(err.error_type(), "bad_data");
    let err = e
        .instant(&Tenant::anonymous(), "sum(", 0, &QueryParams::default())
        .unwrap_err();
    assert_eq!(err.error_type(), "bad_data");
}

#[test]
fn rate_on_non_counter_name_returns_an_info() {
    let e = store(&[(&[("__name__", "gauge")], &[(0, 1.0), (15_000, 2.0)])]);
    let out = e
        .instant(
            &Tenant::anonymous(),
            "rate(gauge[1m])",
            15_000,
            &QueryParams::default(),
        )
        .unwrap();
    assert_eq!(
        out.infos,
        vec![
            r#"PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: "gauge" (1:6)"#
        ]
    );
}
