//! Compaction planning and the k-way merge of blocks' series.

use std::iter::Peekable;

use crate::model::{Labels, Sample};
use crate::storage::{SeriesSamples, StorageError};

use super::dir::Block;
use super::query::merge_samples;
use super::BlockMeta;

/// Compaction ranges: `block_duration * 3^k` up to `max`, plus `max` itself.
pub(crate) fn ranges(block_duration: i64, max: i64) -> Vec<i64> {
    let mut out = vec![block_duration.max(1)];
    while let Some(next) = out.last().and_then(|r| r.checked_mul(3)) {
        if next > max {
            break;
        }
        out.push(next);
    }
    if out.last().is_some_and(|&l| l < max) {
        out.push(max);
    }
    out
}

/// Picks the next set of blocks to merge (indices into `metas`, which are
/// sorted by `min_t`): first any group of overlapping blocks (vertical
/// compaction), then, smallest range first, two or more blocks inside one
/// aligned range that the newest data has already passed.
pub(crate) fn plan(metas: &[BlockMeta], ranges: &[i64]) -> Option<Vec<usize>> {
    let mut group = vec![];
    let mut group_max = i64::MIN;
    for (i, m) in metas.iter().enumerate() {
        if m.min_t < group_max {
            group.push(i);
        } else {
            if group.len() > 1 {
                return Some(group);
            }
            group = vec![i];
        }
        group_max = group_max.max(m.max_t);
    }
    if group.len() > 1 {
        return Some(group);
    }
    let newest = metas.iter().map(|m| m.max_t).max()?;
    for &r in ranges.iter().skip(1) {
        let mut i = 0;
        while i < metas.len() {
            let start = metas[i].min_t.saturating_sub(metas[i].min_t.rem_euclid(r));
            let end = start.saturating_add(r);
            let bucket: Vec<usize> = (i..metas.len())
                .take_while(|&j| metas[j].min_t < end)
                .collect();
            i += bucket.len().max(1);
            let inside: Vec<usize> = bucket
                .into_iter()
                .filter(|&j| {
                    metas[j].max_t <= end && metas[j].max_t.saturating_sub(metas[j].min_t) < r
                })
                .collect();
            if inside.len() > 1 && end <= newest {
                return Some(inside);
            }
        }
    }
    None
}

type SeriesIter<'a> = Box<dyn Iterator<Item = Result<(Labels, Vec<Sample>), StorageError>> + 'a>;

/// Merges the series of several blocks in label order; samples of a series
/// present in several blocks are merged and deduplicated by timestamp.
pub(crate) struct MergeIter<'a> {
    its: Vec<Peekable<SeriesIter<'a>>>,
    failed: bool,
}

impl<'a> MergeIter<'a> {
    pub(crate) fn new(blocks: &'a [std::sync::Arc<Block>]) -> MergeIter<'a> {
        let its = blocks
            .iter()
            .map(|b| (Box::new(b.all_series()) as SeriesIter<'a>).peekable())
            .collect();
        MergeIter { its, failed: false }
    }
}

impl Iterator for MergeIter<'_> {
    type Item = Result<SeriesSamples, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let mut min: Option<Labels> = None;
        for it in &mut self.its {
            match it.peek() {
                Some(Ok((l, _))) if min.as_ref().is_none_or(|m| l < m) => {
                    min = Some(l.clone());
                }
                Some(Ok(_)) => {}
                Some(Err(_)) => {
                    self.failed = true;
                    return it.next().and_then(|r| r.err()).map(Err);
                }
                None => {}
            }
        }
        let labels = min?;
        let mut parts = Vec::new();
        for it in &mut self.its {
            if matches!(it.peek(), Some(Ok((l, _))) if *l == labels) {
                if let Some(Ok((_, s))) = it.next() {
                    parts.push(s);
                }
            }
        }
        Some(Ok(SeriesSamples {
            labels,
            samples: merge_samples(parts),
            histograms: vec![],
        }))
    }
}
