//! Ingestion: validation, per-tenant limits and rate limiting between the
//! protocol decoders in `api` and the storage core. One entry point per data
//! kind: [`Ingester::write_metrics`] for metrics.
//!
//! Bad series are refused one by one and the rest of the request is still
//! written (Prometheus's partial-write behaviour); the report says what was
//! written and names the first refused series per reason.

pub mod logs;
mod rate;
pub mod validate;

use std::sync::Arc;
use std::time::Instant;

use crate::config::Limits;
use crate::model::{Exemplar, Label, Labels, MetricMetadata, Sample, Tenant};
use crate::storage::{MetricsWriter, SeriesWrite, StorageError, WriteBatch};

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

/// One incoming series, labels exactly as sent.
#[derive(Debug, Clone, Default)]
pub struct IncomingSeries {
    /// Labels in the order they arrived.
    pub labels: Vec<Label>,
    /// Float samples.
    pub samples: Vec<Sample>,
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

/// A decoded metrics write request.
#[derive(Debug, Clone, Default)]
pub struct IncomingWrite {
    /// Series with data.
    pub series: Vec<IncomingSeries>,
    /// Metric metadata.
    pub metadata: Vec<MetricMetadata>,
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
        write: IncomingWrite,
        now_ms: i64,
    ) -> Result<IngestReport, IngestError> {
        let total: usize = write
            .series
            .iter()
            .map(|s| s.samples.len() + s.histograms)
            .sum();
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
        let mut batch = WriteBatch {
            series: Vec::with_capacity(write.series.len()),
            metadata: write
                .metadata
                .into_iter()
                .filter(|m| !m.metric.is_empty())
                .collect(),
        };
        for s in write.series {
            let n_samples = s.samples.len();
            let labels = match validate::validate_labels(s.labels, &self.limits) {
                Ok(l) => l,
                Err(r) => {
                    report.add(
                        r.reason.as_str(),
                        n_samples + s.histograms + s.exemplars.len(),
                        || r.message,
                    );
                    continue;
                }
            };
            if s.histograms > 0 {
                let r = validate::native_histogram(s.histograms, &labels);
                report.add(r.reason.as_str(), s.histograms, || r.message);
            }
            let mut samples = s.samples;
            let before = samples.len();
            if let Some(bad) = samples.iter().find(|x| x.t > max_t).copied() {
                samples.retain(|x| x.t <= max_t);
                let r = validate::too_far_in_future(
                    bad.t,
                    max_t,
                    self.limits.creation_grace_period.0,
                    &labels,
                );
                report.add(r.reason.as_str(), before - samples.len(), || r.message);
            }
            let exemplars = self.exemplars(s.exemplars, &labels, max_t, &mut report);
            if samples.is_empty() && exemplars.is_empty() {
                continue;
            }
            batch.series.push(SeriesWrite {
                labels,
                samples,
                exemplars,
            });
        }
        if !batch.series.is_empty() || !batch.metadata.is_empty() {
            let out = self.writer.append(tenant, batch)?;
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

    fn exemplars(
        &self,
        incoming: Vec<IncomingExemplar>,
        series: &Labels,
        max_t: i64,
        report: &mut IngestReport,
    ) -> Vec<Exemplar> {
        let mut out = Vec::with_capacity(incoming.len());
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
            match validate::validate_exemplar_labels(e.labels, series) {
                Ok(labels) => out.push(Exemplar {
                    labels,
                    value: e.value,
                    t: e.t,
                }),
                Err(r) => report.add(r.reason.as_str(), 1, || r.message),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Matcher;
    use crate::storage::mem::MemMetrics;
    use crate::storage::MetricsReader;

    fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> IncomingSeries {
        IncomingSeries {
            labels: labels.iter().map(|(n, v)| Label::new(*n, *v)).collect(),
            samples: samples.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn partial_write_keeps_good_series_and_names_the_bad_one() {
        let store = Arc::new(MemMetrics::new());
        let ing = Ingester::new(Limits::default(), store.clone());
        let t = Tenant::anonymous();
        let now = 1_000_000_000;
        let write = IncomingWrite {
            series: vec![
                series(&[("__name__", "good")], &[(now, 1.0)]),
                series(&[("job", "nameless")], &[(now, 1.0)]),
                series(
                    &[("__name__", "future")],
                    &[(now, 1.0), (now + 3_600_000, 2.0)],
                ),
            ],
            metadata: vec![],
        };
        let r = ing.write_metrics(&t, write, now).unwrap();
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
        let w = || IncomingWrite {
            series: vec![series(&[("__name__", "a")], &[(1, 1.0), (2, 1.0)])],
            metadata: vec![],
        };
        assert!(ing.write_metrics(&t, w(), 0).is_ok());
        assert!(matches!(
            ing.write_metrics(&t, w(), 0),
            Err(IngestError::RateLimited(_))
        ));
    }
}
