//! Ingestion: validation, per-tenant limits and rate limiting between the
//! protocol decoders in `api` and the storage core. One entry point per data
//! kind: [`Ingester::write_metrics`] for metrics.
//!
//! Bad series are refused one by one and the rest of the request is still
//! written (Prometheus's partial-write behaviour); the report says what was
//! written and names the first refused series per reason.

pub mod logs;
pub mod patterns;
mod rate;
pub mod validate;

use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use crate::config::Limits;
use crate::model::{Exemplar, Label, LabelsRef, MetricMetadata, Sample, Tenant};
use crate::storage::{BatchRef, MetricsWriter, SeriesRef, StorageError};

pub use rate::RateLimiter;
pub use validate::{Invalid, Rejection};

/// Samples stored.
pub const SAMPLES_INGESTED_TOTAL: &str = "strata_samples_ingested_total";
/// Exemplars stored.
pub const EXEMPLARS_INGESTED_TOTAL: &str = "strata_exemplars_ingested_total";
/// Samples (and histogram samples, exemplars) refused, by `reason`.
pub const SAMPLES_REJECTED_TOTAL: &str = "strata_samples_rejected_total";
/// Whole write requests refused by the ingestion rate limit.
pub const RATE_LIMITED_REQUESTS_TOTAL: &str = "strata_ingest_rate_limited_requests_total";

/// One incoming series: ranges of [`IncomingWrite::labels`] and
/// [`IncomingWrite::samples`].
#[derive(Debug, Clone, Default)]
pub struct IncomingSeries {
    /// Its labels as sent, in the order they arrived.
    pub labels: Range<usize>,
    /// Its float samples.
    pub samples: Range<usize>,
    /// Exemplars.
    pub exemplars: Vec<IncomingExemplar>,
    /// Native histogram samples carried by the series (refused for now).
    pub histograms: usize,
}

/// One incoming exemplar, labels as sent.
#[derive(Debug, Clone, Default)]
pub struct IncomingExemplar {
    /// Exemplar labels (`trace_id` and the like).
    pub labels: Vec<Label>,
    /// Value.
    pub value: f64,
    /// Timestamp, ms.
    pub t: i64,
}

/// A decoded metrics write request. Labels borrow the request body and,
/// like samples, sit back to back for all series: a request costs a few
/// allocations, not a few per series.
#[derive(Debug, Clone, Default)]
pub struct IncomingWrite<'a> {
    /// Labels of every series, `(name, value)`.
    pub labels: Vec<(&'a str, &'a str)>,
    /// Samples of every series.
    pub samples: Vec<Sample>,
    /// Series with data.
    pub series: Vec<IncomingSeries>,
    /// Metric metadata.
    pub metadata: Vec<MetricMetadata>,
}

impl<'a> IncomingWrite<'a> {
    /// Adds a series whose labels and samples were pushed already.
    pub fn push_series(
        &mut self,
        labels: Range<usize>,
        samples: Range<usize>,
        exemplars: Vec<IncomingExemplar>,
        histograms: usize,
    ) {
        self.series.push(IncomingSeries {
            labels,
            samples,
            exemplars,
            histograms,
        });
    }

    /// Adds a series from its labels and samples.
    pub fn add_series(
        &mut self,
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
        samples: impl IntoIterator<Item = Sample>,
        exemplars: Vec<IncomingExemplar>,
        histograms: usize,
    ) {
        let (l, s) = (self.labels.len(), self.samples.len());
        self.labels.extend(labels);
        self.samples.extend(samples);
        self.push_series(
            l..self.labels.len(),
            s..self.samples.len(),
            exemplars,
            histograms,
        );
    }
}

/// What a write stored and what it refused.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngestReport {
    /// Float samples stored.
    pub samples_written: usize,
    /// Exemplars stored.
    pub exemplars_written: usize,
    /// Native histogram samples stored (always 0 for now).
    pub histograms_written: usize,
    /// Samples, histogram samples and exemplars refused.
    pub rejected: usize,
    /// One message per refusal reason, naming the first series concerned.
    pub errors: Vec<String>,
}

impl IngestReport {
    /// True when something was refused (the protocol answers 400).
    pub fn is_partial(&self) -> bool {
        self.rejected > 0
    }

    /// A single message for the response body.
    pub fn message(&self) -> String {
        format!(
            "{} of the request's samples were rejected, the rest was written: {}",
            self.rejected,
            self.errors.join("; ")
        )
    }

    fn add(&mut self, reason: &'static str, n: usize, message: impl FnOnce() -> String) {
        if n == 0 {
            return;
        }
        metrics::counter!(SAMPLES_REJECTED_TOTAL, "reason" => reason).increment(n as u64);
        self.rejected += n;
        if !self.errors.iter().any(|e| e.starts_with(reason)) {
            self.errors.push(format!("{reason}: {}", message()));
        }
    }
}

/// Why a whole write was refused (nothing of it is acknowledged).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The tenant's ingestion rate limit applies (retryable: 429).
    #[error("{0}")]
    RateLimited(String),
    /// A storage-side limit applies, such as series per tenant (429).
    #[error("{0}")]
    LimitExceeded(String),
    /// Storage refuses writes for now (503).
    #[error("{0}")]
    Unavailable(String),
    /// Storage failed (500).
    #[error("{0}")]
    Internal(String),
}

impl From<StorageError> for IngestError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::LimitExceeded(m) => IngestError::LimitExceeded(m),
            StorageError::Unavailable(_) => IngestError::Unavailable(e.to_string()),
            other => IngestError::Internal(other.to_string()),
        }
    }
}

/// The metrics ingestion path: limits, validation, then the store.
pub struct Ingester {
    limits: Limits,
    writer: Arc<dyn MetricsWriter>,
    rate: RateLimiter,
}

impl Ingester {
    /// An ingester writing to `writer` under `limits`.
    pub fn new(limits: Limits, writer: Arc<dyn MetricsWriter>) -> Ingester {
        let rate = RateLimiter::new(
            limits.ingestion_rate_samples_per_second,
            limits.ingestion_burst_samples,
        );
        Ingester {
            limits,
            writer,
            rate,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Validates and stores one write for `tenant`, `now_ms` being the
    /// current time. Blocking (the store fsyncs): call from a blocking thread.
    pub fn write_metrics(
        &self,
        tenant: &Tenant,
        write: &IncomingWrite<'_>,
        now_ms: i64,
    ) -> Result<IngestReport, IngestError> {
        let total = write.samples.len() + write.series.iter().map(|s| s.histograms).sum::<usize>();
        if !self.rate.try_take(tenant, total, Instant::now()) {
            metrics::counter!(RATE_LIMITED_REQUESTS_TOTAL).increment(1);
            return Err(IngestError::RateLimited(format!(
                "ingestion rate limit of {} samples/s with a burst of {} (limits.ingestion_rate_samples_per_second, limits.ingestion_burst_samples) reached for tenant {tenant}: request of {total} samples refused, retry later",
                self.rate.rate(),
                self.rate.burst()
            )));
        }
        let mut report = IngestReport::default();
        let max_t = now_ms.saturating_add(self.limits.creation_grace_period.0);
        let metadata: Vec<MetricMetadata> = write
            .metadata
            .iter()
            .filter(|m| !m.metric.is_empty())
            .cloned()
            .collect();
        // What is kept of each series, as ranges into these buffers, turned
        // into borrowed series once nothing is pushed any more.
        let mut labels: Vec<(&str, &str)> = Vec::with_capacity(write.labels.len());
        let mut trimmed: Vec<Sample> = Vec::new();
        let mut exemplars: Vec<Exemplar> = Vec::new();
        let mut kept: Vec<(Range<usize>, Kept, Range<usize>)> =
            Vec::with_capacity(write.series.len());
        for s in &write.series {
            let pairs = &write.labels[s.labels.clone()];
            let samples = &write.samples[s.samples.clone()];
            if let Err(r) = validate::validate_labels(pairs, &self.limits) {
                report.add(
                    r.reason.as_str(),
                    samples.len() + s.histograms + s.exemplars.len(),
                    || r.message,
                );
                continue;
            }
            let from = labels.len();
            labels.extend(pairs.iter().filter(|(_, v)| !v.is_empty()));
            let series_labels = from..labels.len();
            if s.histograms > 0 {
                let r = validate::native_histogram(s.histograms, pairs);
                report.add(r.reason.as_str(), s.histograms, || r.message);
            }
            let series_samples = match samples.iter().find(|x| x.t > max_t) {
                None => Kept::Sent(s.samples.clone()),
                Some(bad) => {
                    let from = trimmed.len();
                    trimmed.extend(samples.iter().filter(|x| x.t <= max_t));
                    let r = validate::too_far_in_future(
                        bad.t,
                        max_t,
                        self.limits.creation_grace_period.0,
                        pairs,
                    );
                    let refused = samples.len() - (trimmed.len() - from);
                    report.add(r.reason.as_str(), refused, || r.message);
                    Kept::Trimmed(from..trimmed.len())
                }
            };
            let from = exemplars.len();
            self.exemplars(&s.exemplars, pairs, max_t, &mut report, &mut exemplars);
            let series_exemplars = from..exemplars.len();
            if series_samples.is_empty() && series_exemplars.is_empty() {
                continue;
            }
            kept.push((series_labels, series_samples, series_exemplars));
        }
        let batch = BatchRef {
            series: kept
                .into_iter()
                .map(|(l, s, e)| SeriesRef {
                    labels: LabelsRef::Pairs(&labels[l]),
                    samples: match s {
                        Kept::Sent(r) => &write.samples[r],
                        Kept::Trimmed(r) => &trimmed[r],
                    },
                    exemplars: &exemplars[e],
                })
                .collect(),
            metadata: &metadata,
        };
        if !batch.series.is_empty() || !batch.metadata.is_empty() {
            let out = self.writer.append_ref(tenant, &batch)?;
            report.samples_written = out.samples_written;
            report.exemplars_written = out.exemplars_written;
            for (reason, n, labels) in &out.rejected {
                let key = match reason {
                    crate::storage::RejectReason::OutOfOrder => "out_of_order",
                    crate::storage::RejectReason::TooOld => "too_old",
                    crate::storage::RejectReason::DuplicateTimestamp => "duplicate_timestamp",
                    crate::storage::RejectReason::Exemplar => "exemplar",
                };
                report.add(key, *n, || {
                    format!("{} ({n} samples), first series {labels}", reason.as_str())
                });
            }
        }
        metrics::counter!(SAMPLES_INGESTED_TOTAL).increment(report.samples_written as u64);
        metrics::counter!(EXEMPLARS_INGESTED_TOTAL).increment(report.exemplars_written as u64);
        Ok(report)
    }

    /// Validates a series' exemplars into `out`.
    fn exemplars(
        &self,
        incoming: &[IncomingExemplar],
        series: &[(&str, &str)],
        max_t: i64,
        report: &mut IngestReport,
        out: &mut Vec<Exemplar>,
    ) {
        for e in incoming {
            if e.t > max_t {
                let r = validate::too_far_in_future(
                    e.t,
                    max_t,
                    self.limits.creation_grace_period.0,
                    series,
                );
                report.add(Invalid::InvalidExemplar.as_str(), 1, || r.message);
                continue;
            }
            match validate::validate_exemplar_labels(&e.labels, series) {
                Ok(labels) => out.push(Exemplar {
                    labels,
                    value: e.value,
                    t: e.t,
                }),
                Err(r) => report.add(r.reason.as_str(), 1, || r.message),
            }
        }
    }
}

/// The samples kept of a series: all it sent, or those left in the
/// trimmed buffer after refusing some.
enum Kept {
    Sent(Range<usize>),
    Trimmed(Range<usize>),
}

impl Kept {
    fn is_empty(&self) -> bool {
        match self {
            Kept::Sent(r) | Kept::Trimmed(r) => r.is_empty(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Matcher;
    use crate::storage::mem::MemMetrics;
    use crate::storage::MetricsReader;

    type Series<'a, 'b> = (&'a [(&'a str, &'a str)], &'b [(i64, f64)]);

    fn write<'a>(series: &[Series<'a, '_>]) -> IncomingWrite<'a> {
        let mut w = IncomingWrite::default();
        for (labels, samples) in series {
            w.add_series(
                labels.iter().copied(),
                samples.iter().map(|&(t, v)| Sample::new(t, v)),
                vec![],
                0,
            );
        }
        w
    }

    #[test]
    fn partial_write_keeps_good_series_and_names_the_bad_one() {
        let store = Arc::new(MemMetrics::new());
        let ing = Ingester::new(Limits::default(), store.clone());
        let t = Tenant::anonymous();
        let now = 1_000_000_000;
        let write = write(&[
            (&[("__name__", "good")], &[(now, 1.0)]),
            (&[("job", "nameless")], &[(now, 1.0)]),
            (
                &[("__name__", "future")],
                &[(now, 1.0), (now + 3_600_000, 2.0)],
            ),
        ]);
        let r = ing.write_metrics(&t, &write, now).unwrap();
        assert_eq!(r.samples_written, 2);
        assert_eq!(r.rejected, 2);
        assert!(r.message().contains("nameless"), "{}", r.message());
        assert!(r.message().contains("future"), "{}", r.message());
        let got = store
            .select(&t, &[Matcher::equal("__name__", "future")], 0, i64::MAX)
            .unwrap();
        assert_eq!(got[0].samples.len(), 1);
    }

    #[test]
    fn rate_limit_refuses_whole_request() {
        let store = Arc::new(MemMetrics::new());
        let limits = Limits {
            ingestion_rate_samples_per_second: 1.0,
            ingestion_burst_samples: 2,
            ..Limits::default()
        };
        let ing = Ingester::new(limits, store);
        let t = Tenant::anonymous();
        let w = write(&[(&[("__name__", "a")], &[(1, 1.0), (2, 1.0)])]);
        assert!(ing.write_metrics(&t, &w, 0).is_ok());
        assert!(matches!(
            ing.write_metrics(&t, &w, 0),
            Err(IngestError::RateLimited(_))
        ));
    }
}
