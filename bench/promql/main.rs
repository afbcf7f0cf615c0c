//! PromQL engine benchmark: loads 1000+ counter series and 100 classic
//! histograms (10 buckets each) of 24 h at a 15 s interval into `MemMetrics`
//! and times typical dashboard queries, printing the median of several runs.
//!
//! Run: `cargo bench --bench promql` (release profile). `PROMQL_BENCH_SERIES`
//! and `PROMQL_BENCH_RUNS` override the defaults (1000 and 5).

use std::sync::Arc;
use std::time::Instant;

use strata::model::{Labels, Sample, Tenant};
use strata::query::promql::{Engine, EngineOptions, QueryParams};
use strata::storage::mem::MemMetrics;
use strata::storage::{MetricsWriter, SeriesWrite, WriteBatch};

const DAY_MS: i64 = 24 * 3600 * 1000;
const SCRAPE_MS: i64 = 15_000;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn load(store: &MemMetrics, series: usize) -> usize {
    let tenant = Tenant::anonymous();
    let points = (DAY_MS / SCRAPE_MS) as usize;
    let mut total = 0;
    let mut batch = WriteBatch::default();
    let flush = |batch: &mut WriteBatch| {
        store
            .append(&tenant, std::mem::take(batch))
            .expect("append");
    };
    for i in 0..series {
        let labels = Labels::from_pairs([
            ("__name__", "http_requests_total".to_string()),
            ("job", format!("job{}", i % 10)),
            ("instance", format!("host{i}:9100")),
        ]);
        let rate = 1.0 + (i % 7) as f64;
        let samples = (0..points)
            .map(|p| Sample::new(p as i64 * SCRAPE_MS, (p as f64 * rate * 15.0).floor()))
            .collect::<Vec<_>>();
        total += samples.len();
        batch.series.push(SeriesWrite {
            labels,
            samples,
            exemplars: vec![],
        });
        if batch.series.len() >= 100 {
            flush(&mut batch);
        }
    }
    let bounds = [
        "0.005", "0.01", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf",
    ];
    for h in 0..100 {
        for (bi, le) in bounds.iter().enumerate() {
            let labels = Labels::from_pairs([
                (
                    "__name__",
                    "http_request_duration_seconds_bucket".to_string(),
                ),
                ("job", format!("job{}", h % 10)),
                ("instance", format!("host{h}:9100")),
                ("le", le.to_string()),
            ]);
            let samples = (0..points)
                .map(|p| Sample::new(p as i64 * SCRAPE_MS, (p * (bi + 1)) as f64))
                .collect::<Vec<_>>();
            total += samples.len();
            batch.series.push(SeriesWrite {
                labels,
                samples,
                exemplars: vec![],
            });
        }
        flush(&mut batch);
    }
    flush(&mut batch);
    total
}

fn main() {
    let series = env_usize("PROMQL_BENCH_SERIES", 1000);
    let runs = env_usize("PROMQL_BENCH_RUNS", 5).max(1);
    let store = Arc::new(MemMetrics::new());
    let t0 = Instant::now();
    let samples = load(&store, series);
    println!(
        "loaded {} series + 1000 bucket series, {samples} samples in {:.1}s",
        series,
        t0.elapsed().as_secs_f64()
    );
    let engine = Engine::new(store, EngineOptions::default());
    let tenant = Tenant::anonymous();
    let params = QueryParams::default();
    let queries = [
        "rate(http_requests_total[5m])",
        "sum by (job) (rate(http_requests_total[5m]))",
        "topk(5, rate(http_requests_total[5m]))",
        "histogram_quantile(0.99, sum by (le, job) (rate(http_request_duration_seconds_bucket[5m])))",
        "sum by (job) (rate(http_requests_total[5m])) / on(job) group_left sum by (job) (rate(http_requests_total[1h]))",
    ];
    // A 24 h range at a 60 s step (1441 steps) and an instant query at the end.
    for q in queries {
        for (kind, step) in [("range 24h/60s", 60_000), ("instant", 0)] {
            let mut times = Vec::with_capacity(runs);
            let mut points = 0;
            for _ in 0..runs {
                let t = Instant::now();
                let out = if step == 0 {
                    engine.instant(&tenant, q, DAY_MS, &params)
                } else {
                    engine.range(&tenant, q, 0, DAY_MS, step, &params)
                }
                .expect("query");
                times.push(t.elapsed().as_secs_f64());
                points = match out.value {
                    strata::query::promql::Value::Matrix(m) => {
                        m.iter().map(|s| s.samples.len()).sum()
                    }
                    strata::query::promql::Value::Vector(v) => v.len(),
                    _ => 1,
                };
            }
            times.sort_by(|a, b| a.partial_cmp(b).unwrap());
            println!(
                "{kind:>14}  median {:>9.2} ms  (min {:>9.2} ms, {runs} runs, {points} points)  {q}",
                times[times.len() / 2] * 1000.0,
                times[0] * 1000.0
            );
        }
    }
}
