//! Loki's `detected_labels`: which stream labels are worth offering as
//! filters, with their cardinality.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::Labels;

/// Labels Loki never reports (internal ones).
pub const HIDDEN_LABELS: &[&str] = &["__stream_shard__", "__aggregated_metric__", "__tenant_id__"];
/// Labels reported whatever their cardinality.
const STATIC_LABELS: &[&str] = &["cluster", "namespace", "instance", "pod"];
/// Labels with more values than this are too varied to filter by.
const MAX_CARDINALITY: usize = 50;

/// `(name, distinct values)` of the labels of `streams`, by name: Loki's
/// static labels always, others with 2 to 50 values, internal ones never.
pub fn detected_labels<'a>(streams: impl IntoIterator<Item = &'a Labels>) -> Vec<(String, usize)> {
    let mut values: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for l in streams {
        for p in l.iter() {
            values.entry(&p.name).or_default().insert(&p.value);
        }
    }
    values
        .into_iter()
        .filter(|(name, vs)| {
            let n = vs.len();
            !HIDDEN_LABELS.contains(name)
                && (STATIC_LABELS.contains(name) || (n > 1 && n <= MAX_CARDINALITY))
        })
        .map(|(name, vs)| (name.to_string(), vs.len()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cardinality_rules() {
        let streams: Vec<Labels> = (0..60)
            .map(|i| {
                Labels::from_pairs([
                    ("app", format!("a{}", i % 3)),
                    ("pod", "p".to_string()),
                    ("env", "prod".to_string()),
                    ("id", format!("{i}")),
                    ("__stream_shard__", format!("{}", i % 2)),
                ])
            })
            .collect();
        assert_eq!(
            detected_labels(&streams),
            [("app".to_string(), 3), ("pod".to_string(), 1)]
        );
    }
}
