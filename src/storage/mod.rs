//! The storage core: the write-ahead log, the metrics head and blocks, and
//! (later) the log segments and tiers. Upper layers see the two traits
//! [`MetricsReader`] and [`MetricsWriter`]; [`mem::MemMetrics`] is the
//! in-memory implementation every implementation is tested against.

pub mod heap;
pub(crate) mod idmap;
pub mod logs;
pub mod mem;
pub mod periodic;
pub mod tsdb;
pub mod wal;

use crate::model::{
    Exemplar, HistogramSample, Labels, LabelsRef, Matcher, MetricMetadata, Sample, Tenant,
};

/// Errors from the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Persisted data failed a magic, version or checksum check.
    #[error("corrupt data in {path}: {reason}")]
    Corrupt {
        /// File concerned.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// A per-tenant limit was hit (series count and the like).
    #[error("{0}")]
    LimitExceeded(String),
    /// The store is shutting down or failed earlier and refuses writes.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

impl StorageError {
    /// Wraps an I/O error with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> StorageError {
        StorageError::Io {
            context: context.into(),
            source,
        }
    }
}

/// One series and its samples in a time range, samples sorted by timestamp
/// with no duplicate timestamps.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSamples {
    /// The series' labels.
    pub labels: Labels,
    /// Its float samples.
    pub samples: Vec<Sample>,
    /// Its native-histogram samples, sorted by timestamp; a timestamp holds
    /// either a float or a histogram. Only [`mem::MemMetrics`] stores
    /// histograms so far: `storage::tsdb` always returns none.
    pub histograms: Vec<HistogramSample>,
}

/// Samples, exemplars and metadata to append for one tenant.
#[derive(Debug, Clone, Default)]
pub struct WriteBatch {
    /// Series with their new samples and exemplars.
    pub series: Vec<SeriesWrite>,
    /// Metric metadata (remote-write metadata records).
    pub metadata: Vec<MetricMetadata>,
}

/// New data for one series.
#[derive(Debug, Clone)]
pub struct SeriesWrite {
    /// Validated, sorted labels.
    pub labels: Labels,
    /// Samples, in any order.
    pub samples: Vec<Sample>,
    /// Exemplars.
    pub exemplars: Vec<Exemplar>,
}

/// Why a sample was not stored (Prometheus's receiver answers 400 for these,
/// while still keeping the rest of the request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Older than the newest sample of its series by more than the
    /// out-of-order window.
    OutOfOrder,
    /// Older than the oldest time the head still accepts.
    TooOld,
    /// Same timestamp as a stored sample but a different value.
    DuplicateTimestamp,
    /// Exemplar rejected (out of order or duplicate).
    Exemplar,
}

impl RejectReason {
    /// Prometheus's wording for the reason.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::OutOfOrder => "out of order sample",
            RejectReason::TooOld => "out of bounds",
            RejectReason::DuplicateTimestamp => "duplicate sample for timestamp",
            RejectReason::Exemplar => "out of order exemplar",
        }
    }
}

/// What an append stored and what it refused.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppendOutcome {
    /// Samples stored (identical re-sends of a stored sample count as stored).
    pub samples_written: usize,
    /// Exemplars stored.
    pub exemplars_written: usize,
    /// Refused samples by reason, with the first refused series as an example.
    pub rejected: Vec<(RejectReason, usize, Labels)>,
}

impl AppendOutcome {
    /// Total refused samples and exemplars.
    pub fn rejected_count(&self) -> usize {
        self.rejected.iter().map(|r| r.1).sum()
    }

    /// Records `n` refusals for `reason`, keeping the first example.
    pub fn reject(&mut self, reason: RejectReason, n: usize, labels: &Labels) {
        match self.rejected.iter_mut().find(|r| r.0 == reason) {
            Some(r) => r.1 += n,
            None => self.rejected.push((reason, n, labels.clone())),
        }
    }
}

/// Read access to metrics. Time bounds are inclusive milliseconds.
/// Implementations never mix tenants.
pub trait MetricsReader: Send + Sync {
    /// Series matching every matcher, with their samples in `[mint, maxt]`.
    /// Series without samples in the range are left out. Sorted by labels.
    fn select(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StorageError>;

    /// Label sets of series matching every matcher that have samples in the
    /// range. Sorted.
    fn series(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, StorageError>;

    /// Label names of series matching the matchers (all series when
    /// `matchers` is empty) in the range. Sorted, unique.
    fn label_names(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError>;

    /// Values of label `name` over series matching the matchers (all series
    /// when empty) in the range. Sorted, unique.
    fn label_values(
        &self,
        tenant: &Tenant,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError>;

    /// Stored metadata, optionally for one metric.
    fn metadata(
        &self,
        tenant: &Tenant,
        metric: Option<&str>,
    ) -> Result<Vec<MetricMetadata>, StorageError>;

    /// Exemplars of series matching the matchers in the range.
    fn exemplars(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<(Labels, Vec<Exemplar>)>, StorageError>;
}

/// Write access to metrics.
pub trait MetricsWriter: Send + Sync {
    /// Appends a batch and returns once it is durable (in the fsynced WAL for
    /// persistent stores). Blocking: call it from a blocking thread.
    /// Refused samples are reported in the outcome, not as an error; an error
    /// means nothing of the batch is acknowledged.
    fn append(&self, tenant: &Tenant, batch: WriteBatch) -> Result<AppendOutcome, StorageError>;

    /// [`MetricsWriter::append`] of a batch borrowed from a request, so a
    /// series the store already holds is found without building owned
    /// labels (the remote-write path). By default an owned copy is appended.
    fn append_ref(
        &self,
        tenant: &Tenant,
        batch: &BatchRef<'_>,
    ) -> Result<AppendOutcome, StorageError> {
        self.append(tenant, batch.to_owned())
    }
}

/// New data for one series, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct SeriesRef<'a> {
    /// Validated, sorted labels.
    pub labels: LabelsRef<'a>,
    /// Samples, in any order.
    pub samples: &'a [Sample],
    /// Exemplars.
    pub exemplars: &'a [Exemplar],
}

/// A [`WriteBatch`] borrowed from a request.
#[derive(Debug, Clone, Default)]
pub struct BatchRef<'a> {
    /// Series with their new samples and exemplars.
    pub series: Vec<SeriesRef<'a>>,
    /// Metric metadata.
    pub metadata: &'a [MetricMetadata],
}

impl<'a> BatchRef<'a> {
    /// Borrows an owned batch.
    pub fn of(batch: &'a WriteBatch) -> BatchRef<'a> {
        BatchRef {
            series: batch
                .series
                .iter()
                .map(|s| SeriesRef {
                    labels: LabelsRef::Owned(&s.labels),
                    samples: &s.samples,
                    exemplars: &s.exemplars,
                })
                .collect(),
            metadata: &batch.metadata,
        }
    }

    /// An owned copy.
    pub fn to_owned(&self) -> WriteBatch {
        WriteBatch {
            series: self
                .series
                .iter()
                .map(|s| SeriesWrite {
                    labels: s.labels.to_labels(),
                    samples: s.samples.to_vec(),
                    exemplars: s.exemplars.to_vec(),
                })
                .collect(),
            metadata: self.metadata.to_vec(),
        }
    }
}

/// Maintenance of a persistent store, for the admin API and benchmarks.
pub trait StoreAdmin: Send + Sync {
    /// Writes everything held in memory into immutable on-disk blocks now
    /// (Strata's `POST /api/v1/admin/tsdb/flush`).
    fn flush(&self) -> Result<(), StorageError>;
    /// Bytes the store occupies on disk (WAL and blocks).
    fn disk_bytes(&self) -> u64;
}

/// Sorts, dedups and clips a sample list to `[mint, maxt]` (a helper shared
/// by implementations).
pub fn clip_samples(samples: &[Sample], mint: i64, maxt: i64) -> Vec<Sample> {
    let start = samples.partition_point(|s| s.t < mint);
    let end = samples.partition_point(|s| s.t <= maxt);
    samples[start..end.max(start)].to_vec()
}

/// True when `labels` satisfies every matcher.
pub fn matches_all(labels: &Labels, matchers: &[Matcher]) -> bool {
    matchers
        .iter()
        .all(|m| m.matches(labels.get(&m.name).unwrap_or("")))
}

/// Sorted, unique label names over label sets.
pub fn merge_label_names<'a>(sets: impl IntoIterator<Item = &'a Labels>) -> Vec<String> {
    let names: std::collections::BTreeSet<&str> = sets
        .into_iter()
        .flat_map(|l| l.iter().map(|p| p.name.as_str()))
        .collect();
    names.into_iter().map(str::to_string).collect()
}

/// Sorted, unique values of label `name` over label sets (sets without it
/// contribute nothing).
pub fn merge_label_values<'a>(
    sets: impl IntoIterator<Item = &'a Labels>,
    name: &str,
) -> Vec<String> {
    let values: std::collections::BTreeSet<&str> =
        sets.into_iter().filter_map(|l| l.get(name)).collect();
    values.into_iter().map(str::to_string).collect()
}
