//! Validation of incoming series: label names and values, ordering, counts,
//! lengths and timestamps. Every error names the series it concerns.

use std::fmt::Write as _;

use crate::config::Limits;
use crate::model::{Label, Labels, METRIC_NAME};

/// Why a series or sample was refused by validation. The `reason` label of
/// `strata_samples_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Invalid {
    /// No labels at all.
    EmptyLabels,
    /// No `__name__` (or an empty one).
    MissingMetricName,
    /// An empty label name.
    InvalidLabelName,
    /// Label names not in strictly increasing order.
    UnsortedLabels,
    /// The same label name twice.
    DuplicateLabelName,
    /// More labels than `limits.max_labels_per_series`.
    TooManyLabels,
    /// A label name longer than `limits.max_label_name_length`.
    LabelNameTooLong,
    /// A label value longer than `limits.max_label_value_length`.
    LabelValueTooLong,
    /// A timestamp beyond now + `limits.creation_grace_period`.
    TooFarInFuture,
    /// A native histogram sample (not stored yet).
    NativeHistogram,
    /// An exemplar with invalid labels.
    InvalidExemplar,
}

impl Invalid {
    /// The metric label value for this reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Invalid::EmptyLabels => "empty_labels",
            Invalid::MissingMetricName => "missing_metric_name",
            Invalid::InvalidLabelName => "invalid_label_name",
            Invalid::UnsortedLabels => "unsorted_labels",
            Invalid::DuplicateLabelName => "duplicate_label_name",
            Invalid::TooManyLabels => "too_many_labels",
            Invalid::LabelNameTooLong => "label_name_too_long",
            Invalid::LabelValueTooLong => "label_value_too_long",
            Invalid::TooFarInFuture => "too_far_in_future",
            Invalid::NativeHistogram => "native_histogram",
            Invalid::InvalidExemplar => "invalid_exemplar",
        }
    }
}

/// A validation failure with its message.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// The reason.
    pub reason: Invalid,
    /// Lowercase message naming the value, the limit and the series.
    pub message: String,
}

/// Longest series description put into an error message.
const MAX_DESCRIBED: usize = 512;

/// The series in Prometheus's text form, from the pairs as sent (so unsorted
/// and duplicate labels show as they arrived), shortened for messages.
pub fn describe(pairs: &[(&str, &str)]) -> String {
    let name = pairs
        .iter()
        .find(|l| l.0 == METRIC_NAME)
        .map(|l| l.1)
        .unwrap_or("");
    let mut out = String::from(name);
    out.push('{');
    let mut first = true;
    for (n, v) in pairs.iter().filter(|l| l.0 != METRIC_NAME) {
        if !first {
            out.push_str(", ");
        }
        first = false;
        let _ = write!(out, "{n}={v:?}");
        if out.len() > MAX_DESCRIBED {
            break;
        }
    }
    out.push('}');
    if out.len() > MAX_DESCRIBED {
        let mut cut = MAX_DESCRIBED;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("...");
    }
    out
}

fn reject(reason: Invalid, message: String) -> Rejection {
    Rejection { reason, message }
}

/// Checks a series' labels as sent. Label names may be any non-empty UTF-8
/// (Prometheus 3); values may be any UTF-8 (decoding has already refused
/// invalid UTF-8). Empty values mean "absent": the caller drops them, as
/// Prometheus does; the rest is then a valid sorted label set.
pub fn validate_labels(pairs: &[(&str, &str)], limits: &Limits) -> Result<(), Rejection> {
    if pairs.is_empty() {
        return Err(reject(
            Invalid::EmptyLabels,
            "series has an empty label set".into(),
        ));
    }
    for (i, &(name, value)) in pairs.iter().enumerate() {
        if name.is_empty() {
            return Err(reject(
                Invalid::InvalidLabelName,
                format!("invalid empty label name in series {}", describe(pairs)),
            ));
        }
        if name.len() > limits.max_label_name_length {
            return Err(reject(
                Invalid::LabelNameTooLong,
                format!(
                    "label name is {} bytes long, the limit is {} (limits.max_label_name_length), in series {}",
                    name.len(),
                    limits.max_label_name_length,
                    describe(pairs)
                ),
            ));
        }
        if value.len() > limits.max_label_value_length {
            return Err(reject(
                Invalid::LabelValueTooLong,
                format!(
                    "value of label {:?} is {} bytes long, the limit is {} (limits.max_label_value_length), in series {}",
                    name,
                    value.len(),
                    limits.max_label_value_length,
                    describe(pairs)
                ),
            ));
        }
        if i > 0 {
            let prev = pairs[i - 1].0;
            if prev == name {
                return Err(reject(
                    Invalid::DuplicateLabelName,
                    format!(
                        "duplicate label name {:?} in series {}",
                        name,
                        describe(pairs)
                    ),
                ));
            }
            if prev > name {
                return Err(reject(
                    Invalid::UnsortedLabels,
                    format!(
                        "labels are not sorted by name ({:?} comes after {:?}) in series {}",
                        name,
                        prev,
                        describe(pairs)
                    ),
                ));
            }
        }
    }
    if pairs.len() > limits.max_labels_per_series {
        return Err(reject(
            Invalid::TooManyLabels,
            format!(
                "series has {} labels, the limit is {} (limits.max_labels_per_series): {}",
                pairs.len(),
                limits.max_labels_per_series,
                describe(pairs)
            ),
        ));
    }
    if !pairs.iter().any(|l| l.0 == METRIC_NAME && !l.1.is_empty()) {
        return Err(reject(
            Invalid::MissingMetricName,
            format!("series has no metric name (__name__): {}", describe(pairs)),
        ));
    }
    Ok(())
}

/// Checks an exemplar's labels: non-empty names, unique, and at most 128
/// UTF-8 characters in total (Prometheus's exemplar limit).
pub fn validate_exemplar_labels(
    pairs: &[Label],
    series: &[(&str, &str)],
) -> Result<Labels, Rejection> {
    let series = describe(series);
    const MAX_EXEMPLAR_RUNES: usize = 128;
    let runes: usize = pairs
        .iter()
        .map(|l| l.name.chars().count() + l.value.chars().count())
        .sum();
    if runes > MAX_EXEMPLAR_RUNES {
        return Err(reject(
            Invalid::InvalidExemplar,
            format!(
                "exemplar labels are {runes} characters long, the limit is {MAX_EXEMPLAR_RUNES}, in series {series}"
            ),
        ));
    }
    if pairs.iter().any(|l| l.name.is_empty()) {
        return Err(reject(
            Invalid::InvalidExemplar,
            format!("exemplar has an empty label name, in series {series}"),
        ));
    }
    let mut names: Vec<&str> = pairs.iter().map(|l| l.name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(reject(
            Invalid::InvalidExemplar,
            format!(
                "exemplar has the label name {:?} twice, in series {series}",
                w[0]
            ),
        ));
    }
    let labels = Labels::from_pairs(pairs.iter().map(|l| (l.name.as_str(), l.value.as_str())));
    Ok(labels)
}

/// The rejection for samples beyond the creation grace period.
pub fn too_far_in_future(t: i64, max_t: i64, grace_ms: i64, series: &[(&str, &str)]) -> Rejection {
    let series = describe(series);
    reject(
        Invalid::TooFarInFuture,
        format!(
            "sample timestamp {} is {}ms past now + {} (limits.creation_grace_period), in series {series}",
            format_ms(t),
            t.saturating_sub(max_t),
            crate::model::format_duration(grace_ms),
        ),
    )
}

/// The rejection for native histogram samples.
pub fn native_histogram(n: usize, series: &[(&str, &str)]) -> Rejection {
    let series = describe(series);
    reject(
        Invalid::NativeHistogram,
        format!(
            "native histograms are not supported yet: {n} histogram sample(s) of series {series} were not written"
        ),
    )
}

/// An RFC3339 rendering of a millisecond timestamp, for messages.
fn format_ms(t: i64) -> String {
    chrono::DateTime::from_timestamp_millis(t)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| format!("{t}ms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_table() {
        let limits = Limits {
            max_labels_per_series: 3,
            max_label_name_length: 10,
            max_label_value_length: 10,
            ..Limits::default()
        };
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<Invalid>);
        let cases: &[Case] = &[
            (&[("__name__", "up"), ("job", "a")], None),
            (&[("__name__", "cpu use.x"), ("job name", "ü")], None),
            (&[("__name__", "up"), ("a", "")], None),
            (&[], Some(Invalid::EmptyLabels)),
            (&[("job", "a")], Some(Invalid::MissingMetricName)),
            (
                &[("__name__", ""), ("job", "a")],
                Some(Invalid::MissingMetricName),
            ),
            (
                &[("", "x"), ("__name__", "up")],
                Some(Invalid::InvalidLabelName),
            ),
            (
                &[("__name__", "up"), ("b", "1"), ("a", "2")],
                Some(Invalid::UnsortedLabels),
            ),
            (
                &[("__name__", "up"), ("a", "1"), ("a", "2")],
                Some(Invalid::DuplicateLabelName),
            ),
            (
                &[("__name__", "up"), ("a", "1"), ("b", "2"), ("c", "3")],
                Some(Invalid::TooManyLabels),
            ),
            (
                &[("__name__", "up"), ("abcdefghijk", "1")],
                Some(Invalid::LabelNameTooLong),
            ),
            (
                &[("__name__", "up"), ("a", "abcdefghijk")],
                Some(Invalid::LabelValueTooLong),
            ),
        ];
        for (input, want) in cases {
            let got = validate_labels(input, &limits);
            match (want, &got) {
                (None, Ok(())) => {}
                (Some(w), Err(r)) => {
                    assert_eq!(r.reason, *w, "{input:?}");
                    if !input.is_empty() {
                        assert!(r.message.contains('{'), "names the series: {}", r.message);
                    }
                }
                _ => panic!("{input:?}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn describe_is_bounded() {
        let long = "x".repeat(2000);
        let d = describe(&[("__name__", "up"), ("a", &long)]);
        assert!(d.len() < MAX_DESCRIBED + 10);
        assert!(d.starts_with("up{a=\"xxx"));
    }
}
