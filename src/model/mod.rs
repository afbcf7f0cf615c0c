//! The data model shared by every layer: tenants, labels, samples, matchers and
//! durations. `model` does no I/O and no async (STYLE.md rule 2).

mod duration;
mod histogram;
mod labels;
mod matcher;
mod sample;
mod tenant;

pub use duration::{format_duration, parse_duration, DurationError};
pub use histogram::{
    assign_tsdb_hints, expand_test_histogram, parse_test_float, parse_test_histogram,
    split_test_values, test_histogram_equal,
};
pub use histogram::{
    exponential_bound, kahan_inc, Bucket, CounterResetHint, FloatHistogram, HistogramError,
    HistogramSample, NanObservations, CUSTOM_BUCKETS_SCHEMA,
};
pub use labels::{Label, Labels, LabelsBuilder, LabelsRef, METRIC_NAME};
pub use matcher::{MatchOp, Matcher, MatcherError};
pub use sample::{
    format_float, format_float_g, is_stale_nan, Exemplar, MetricMetadata, MetricType, Sample,
    STALE_NAN_BITS,
};
pub use tenant::{Tenant, DEFAULT_TENANT, TENANT_HEADER};
