//! compat/prometheus: Debian's Prometheus 2.42 scrapes node-exporter and
//! itself every second and remote-writes to Strata; after 90 s,
//! a fixed list of PromQL queries is run as `query_range` against both over
//! the same window and step, and the answers must agree (same label sets,
//! values within 1e-6 relative). Skips when the peers are not installed,
//! unless `STRATA_COMPAT_REQUIRE=1`.
//!
//! Env: `STRATA_COMPAT_WAIT_SECONDS` (default 90) sets how long data is
//! collected before querying; `STRATA_COMPAT_CONTROL=1` puts a second
//! Prometheus (remote-write receiver) in Strata's place, to check the
//! harness itself. The second test, in `ecosystem.rs`, compares every
//! PromQL expression of the stock dashboards and rules the same way.

#[path = "../common/mod.rs"]
mod common;
#[cfg(test)]
mod compare_tests;
mod ecosystem;
mod grafana;
#[cfg(test)]
mod grafana_tests;
mod queries;

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use common::compare::compare;
use common::scrape::{http, query_range, ScrapePair};

#[test]
fn strata_answers_like_prometheus_2_42() {
    let Some(mut pair) =
        ScrapePair::start("compat_prometheus", Path::new(env!("CARGO_BIN_EXE_strata")))
    else {
        return;
    };
    let wait_secs: f64 = std::env::var("STRATA_COMPAT_WAIT_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(90.0);
    let client = http();
    let w = pair.window(wait_secs, queries::LONGEST_LOOKBACK_SECS);
    let (start, end, step) = (w.start, w.end, w.step);
    let (prom_url, strata_url) = (pair.prom_url.clone(), pair.strata_url.clone());

    let mut report = String::new();
    let _ = writeln!(
        report,
        "compat/prometheus: Prometheus 2.42 vs {}, query_range start={start} end={end} step={step}s ({} s window)",
        pair.sut_description(),
        end - start
    );
    let _ = writeln!(
        report,
        "{:<20} {:>7} {:>7}  result",
        "query", "series", "points"
    );
    let mut failures = Vec::new();
    // The whole test stays bounded even if Strata answers slowly.
    let query_deadline = Instant::now() + Duration::from_secs(90);
    for (name, q) in queries::QUERIES {
        if Instant::now() > query_deadline {
            failures.push(format!("{name}: {q}\n    not run: query phase over 90 s"));
            let _ = writeln!(
                report,
                "{name:<20} {:>7} {:>7}  FAIL not run (time budget)",
                0, 0
            );
            continue;
        }
        let expected = query_range(&client, &prom_url, q, start, end, step);
        let got = query_range(&client, &strata_url, q, start, end, step);
        let (series, points, verdict) = match (&expected, &got) {
            (Err(e), _) => (
                0,
                0,
                format!("FAIL prometheus error (bad query list?): {e}"),
            ),
            (Ok(exp), _) if exp.is_empty() => (
                0,
                0,
                "FAIL prometheus returned no series (bad query list?)".to_string(),
            ),
            (Ok(_), Err(e)) => (0, 0, format!("FAIL strata error: {e}")),
            (Ok(exp), Ok(got)) => match compare(exp, got) {
                Ok((s, p)) => (s, p, "match".to_string()),
                Err(e) => (exp.len(), 0, format!("FAIL {e}")),
            },
        };
        if verdict != "match" {
            failures.push(format!("{name}: {q}\n    {verdict}"));
        }
        let _ = writeln!(report, "{name:<20} {series:>7} {points:>7}  {verdict}");
    }
    let total = queries::QUERIES.len();
    let _ = writeln!(
        report,
        "{} of {total} queries match",
        total - failures.len()
    );
    println!("{report}");
    // Kept for .ci/run's summary.
    let _ = std::fs::write(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("compat_prometheus.txt"),
        &report,
    );
    assert!(
        failures.is_empty(),
        "{} of {total} queries differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
