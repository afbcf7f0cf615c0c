//! Log volume (Loki's `index/volume` and `index/volume_range`): line bytes
//! per group of stream labels, over a set of streams already read.

use std::collections::{BTreeMap, HashMap};

use super::Stream;
use crate::model::Labels;

/// How streams are grouped: by the values of `targets` together, or (with
/// `by_label`) by each target label on its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeGrouping {
    /// Label names to group by.
    pub targets: Vec<String>,
    /// Report each label alone (`aggregateBy=labels`) instead of the set.
    pub by_label: bool,
}

impl VolumeGrouping {
    /// The groups a stream with labels `l` counts towards.
    pub fn groups(&self, l: &Labels) -> Vec<Labels> {
        let present = self
            .targets
            .iter()
            .filter_map(|n| l.get(n).map(|v| (n.as_str(), v)));
        if self.by_label {
            present.map(|p| Labels::from_pairs([p])).collect()
        } else {
            vec![Labels::from_pairs(present)]
        }
    }
}

/// Keeps the `limit` largest groups (all when 0), largest first, ties by
/// labels.
fn largest(mut groups: Vec<(Labels, u64)>, limit: usize) -> Vec<(Labels, u64)> {
    groups.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    if limit > 0 {
        groups.truncate(limit);
    }
    groups
}

/// Line bytes per group over every entry of `streams`, largest first, at
/// most `limit` groups (all when 0).
pub fn volume(streams: &[Stream], g: &VolumeGrouping, limit: usize) -> Vec<(Labels, u64)> {
    let mut by: HashMap<Labels, u64> = HashMap::new();
    for s in streams {
        let bytes: u64 = s.entries.iter().map(|e| e.line.len() as u64).sum();
        for k in g.groups(&s.labels) {
            *by.entry(k).or_default() += bytes;
        }
    }
    largest(by.into_iter().collect(), limit)
}

/// Line bytes per group and step: an entry counts at the first step
/// `start + k * step` at or after it (entries in `(t - step, t]`), steps
/// after `end` are dropped. The `limit` largest groups over the whole range
/// (all when 0), sorted by labels, each with its non-empty steps.
pub fn volume_range(
    streams: &[Stream],
    g: &VolumeGrouping,
    start: i64,
    end: i64,
    step: i64,
    limit: usize,
) -> Vec<(Labels, BTreeMap<i64, u64>)> {
    let mut by: HashMap<Labels, BTreeMap<i64, u64>> = HashMap::new();
    for s in streams {
        let groups = g.groups(&s.labels);
        for e in &s.entries {
            let k = if e.ts <= start {
                0
            } else {
                (e.ts - start + step - 1) / step
            };
            let at = start + k * step;
            if at > end {
                continue;
            }
            for grp in &groups {
                *by.entry(grp.clone()).or_default().entry(at).or_default() += e.line.len() as u64;
            }
        }
    }
    let totals = by
        .iter()
        .map(|(l, steps)| (l.clone(), steps.values().sum()))
        .collect();
    let mut keep: Vec<Labels> = largest(totals, limit).into_iter().map(|g| g.0).collect();
    keep.sort();
    keep.into_iter()
        .map(|l| {
            let steps = by.remove(&l).unwrap_or_default();
            (l, steps)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::LogEntry;

    fn stream(pairs: &[(&str, &str)], entries: &[(i64, &str)]) -> Stream {
        Stream {
            labels: Labels::from_pairs(pairs.iter().copied()),
            entries: entries.iter().map(|(t, l)| LogEntry::new(*t, *l)).collect(),
        }
    }

    #[test]
    fn volume_groups_and_limits() {
        let ss = [
            stream(&[("app", "a"), ("env", "p")], &[(1, "xx"), (2, "yyy")]),
            stream(&[("app", "b"), ("env", "p")], &[(1, "z")]),
        ];
        let g = VolumeGrouping {
            targets: vec!["app".into()],
            by_label: false,
        };
        let v = volume(&ss, &g, 0);
        assert_eq!(
            v,
            [
                (Labels::from_pairs([("app", "a")]), 5),
                (Labels::from_pairs([("app", "b")]), 1)
            ]
        );
        assert_eq!(volume(&ss, &g, 1).len(), 1);
        let g = VolumeGrouping {
            targets: vec!["app".into(), "env".into()],
            by_label: true,
        };
        let v = volume(&ss, &g, 0);
        assert_eq!(v[0], (Labels::from_pairs([("env", "p")]), 6));
    }

    #[test]
    fn volume_range_counts_at_the_next_step() {
        let ss = [stream(
            &[("app", "a")],
            &[(0, "a"), (1, "bb"), (10, "ccc"), (11, "d")],
        )];
        let g = VolumeGrouping {
            targets: vec!["app".into()],
            by_label: false,
        };
        let v = volume_range(&ss, &g, 0, 10, 10, 0);
        assert_eq!(v.len(), 1);
        let steps: Vec<(i64, u64)> = v[0].1.iter().map(|(a, b)| (*a, *b)).collect();
        // 0 -> step 0; 1 and 10 -> step 10; 11 -> step 20 > end, dropped.
        assert_eq!(steps, [(0, 1), (10, 5)]);
    }
}
