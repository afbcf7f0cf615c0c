//! Samples, exemplars and metric metadata.

use crate::model::Labels;

/// The bit pattern Prometheus uses for staleness markers (a signalling NaN).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// True when `v` is Prometheus's staleness marker (not any NaN).
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// A float as Go's `strconv.FormatFloat(v, 'f', -1, 64)` writes it, with
/// Prometheus's `+Inf`/`-Inf`/`NaN`.
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// A float as Go's `%g` (and `%v`) writes it: the shortest digits, in
/// exponent form (`1e+06`, `2.5e-05`) when the exponent is below -4 or at
/// least 6; `+Inf`/`-Inf`/`NaN`.
pub fn format_float_g(v: f64) -> String {
    if !v.is_finite() {
        return format_float(v);
    }
    let sci = format!("{v:e}");
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        format!("{v}")
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", exp.abs())
    }
}

/// One float sample: a millisecond timestamp and a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Milliseconds since the Unix epoch.
    pub t: i64,
    /// The value; may be the staleness marker ([`STALE_NAN_BITS`]).
    pub v: f64,
}

impl Sample {
    /// A sample at `t` ms with value `v`.
    pub fn new(t: i64, v: f64) -> Sample {
        Sample { t, v }
    }
}

/// An exemplar attached to a series.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    /// The exemplar's own labels (for example `trace_id`).
    pub labels: Labels,
    /// Its value.
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    pub t: i64,
}

/// Metric type as in Prometheus's metadata (`counter`, `gauge`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    /// Type not known.
    Unknown,
    /// A monotonic counter.
    Counter,
    /// A gauge.
    Gauge,
    /// A classic histogram.
    Histogram,
    /// A gauge histogram.
    GaugeHistogram,
    /// A summary.
    Summary,
    /// An info metric.
    Info,
    /// A state set.
    StateSet,
}

impl MetricType {
    /// The name Prometheus's `/api/v1/metadata` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Unknown => "unknown",
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
        }
    }

    /// Parses the name used by [`MetricType::as_str`]; unknown names map to `Unknown`.
    pub fn parse(s: &str) -> MetricType {
        match s {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "gaugehistogram" => MetricType::GaugeHistogram,
            "summary" => MetricType::Summary,
            "info" => MetricType::Info,
            "stateset" => MetricType::StateSet,
            _ => MetricType::Unknown,
        }
    }
}

/// Metadata of one metric family.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MetricMetadata {
    /// The metric family name.
    pub metric: String,
    /// Its type.
    pub kind: MetricType,
    /// Help text.
    pub help: String,
    /// Unit, often empty.
    pub unit: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_nan_is_distinct_from_nan() {
        assert!(is_stale_nan(f64::from_bits(STALE_NAN_BITS)));
        assert!(!is_stale_nan(f64::NAN));
        assert!(f64::from_bits(STALE_NAN_BITS).is_nan());
    }

    #[test]
    fn go_g_format() {
        for (v, want) in [
            (0.0, "0"),
            (-0.0, "-0"),
            (6.0, "6"),
            (100000.0, "100000"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5e-7, "-2.5e-07"),
            (1e100, "1e+100"),
            (0.001, "0.001"),
            (f64::INFINITY, "+Inf"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(format_float_g(v), want, "{v}");
        }
    }
}
