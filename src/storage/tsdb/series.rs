//! One series in the head: closed Gorilla chunks, the open chunk being
//! appended to, and a small buffer of out-of-order samples merged on read.

use std::collections::BTreeMap;

use super::chunk::XorChunk;
use crate::model::{Labels, Sample};

/// Samples per chunk before a new one is cut (Prometheus's figure).
pub(crate) const SAMPLES_PER_CHUNK: usize = 120;

/// What happened to one appended sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// Newer than every sample: goes into the open chunk.
    InOrder,
    /// Older than the newest sample, within the window: goes into the
    /// out-of-order buffer.
    OutOfOrder,
    /// A sample with the same timestamp and value bits is already stored.
    Identical,
    /// A sample with the same timestamp and another value is stored.
    Conflict,
    /// Older than the newest sample by more than the window.
    TooFarBack,
}

/// A series held in memory.
pub(crate) struct MemSeries {
    /// Its labels.
    pub labels: Labels,
    /// Closed chunks, oldest first, not overlapping.
    chunks: Vec<XorChunk>,
    /// The chunk being appended to.
    open: XorChunk,
    /// Samples that arrived out of order (never at a timestamp the chunks hold).
    ooo: BTreeMap<i64, f64>,
    /// Newest in-order timestamp ever appended (kept when chunks are flushed).
    max_t: Option<i64>,
    /// True once a series record for it is in the WAL.
    pub logged: bool,
}

/// Floor division for block alignment of negative timestamps too.
pub(crate) fn align_down(t: i64, range: i64) -> i64 {
    t.div_euclid(range) * range
}

impl MemSeries {
    pub fn new(labels: Labels) -> MemSeries {
        MemSeries {
            labels,
            chunks: Vec::new(),
            open: XorChunk::new(),
            ooo: BTreeMap::new(),
            max_t: None,
            logged: false,
        }
    }

    /// Newest in-order timestamp appended so far.
    pub fn max_t(&self) -> Option<i64> {
        self.max_t
    }

    /// Oldest timestamp held, if any sample is held.
    pub fn min_t(&self) -> Option<i64> {
        let c = self
            .chunks
            .first()
            .or(Some(&self.open).filter(|c| !c.is_empty()))
            .map(|c| c.min_t());
        let o = self.ooo.keys().next().copied();
        match (c, o) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Newest timestamp held, if any sample is held.
    pub fn held_max_t(&self) -> Option<i64> {
        let c = Some(&self.open)
            .filter(|c| !c.is_empty())
            .or(self.chunks.last())
            .map(|c| c.max_t());
        let o = self.ooo.keys().next_back().copied();
        match (c, o) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// True when the series holds no samples.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.open.is_empty() && self.ooo.is_empty()
    }

    /// Chunks held, the open one included when it has samples.
    pub fn num_chunks(&self) -> usize {
        self.chunks.len() + usize::from(!self.open.is_empty())
    }

    fn all_chunks(&self) -> impl Iterator<Item = &XorChunk> {
        self.chunks
            .iter()
            .chain(Some(&self.open).filter(|c| !c.is_empty()))
    }

    /// The value stored at `t`, if any.
    fn lookup(&self, t: i64) -> Option<f64> {
        if let Some(v) = self.ooo.get(&t) {
            return Some(*v);
        }
        self.all_chunks()
            .filter(|c| c.min_t() <= t && t <= c.max_t())
            .find_map(|c| c.iter().find(|s| s.0 == t).map(|s| s.1))
    }

    /// Where a sample would go, without storing it. `window` is the
    /// out-of-order window; `None` accepts any age (WAL replay).
    pub fn classify(&self, t: i64, v: f64, window: Option<i64>) -> Placement {
        let Some(max_t) = self.max_t else {
            return Placement::InOrder;
        };
        if t > max_t {
            return Placement::InOrder;
        }
        match self.lookup(t) {
            Some(old) if old.to_bits() == v.to_bits() => Placement::Identical,
            Some(_) => Placement::Conflict,
            None if window.is_some_and(|w| t < max_t.saturating_sub(w)) => Placement::TooFarBack,
            None => Placement::OutOfOrder,
        }
    }

    /// Stores a sample if [`MemSeries::classify`] allows it; returns the
    /// placement. `chunk_range` bounds the time range of one chunk so that no
    /// chunk spans two blocks.
    pub fn append(&mut self, t: i64, v: f64, window: Option<i64>, chunk_range: i64) -> Placement {
        let p = self.classify(t, v, window);
        match p {
            Placement::InOrder => {
                if !self.open.is_empty()
                    && (self.open.len() >= SAMPLES_PER_CHUNK
                        || t >= align_down(self.open.min_t(), chunk_range) + chunk_range)
                {
                    let mut full = std::mem::replace(&mut self.open, XorChunk::new());
                    full.shrink_to_fit();
                    self.chunks.push(full);
                }
                let ok = self.open.append(t, v);
                debug_assert!(ok, "in-order append into a fresh or non-full chunk");
                self.max_t = Some(t);
            }
            Placement::OutOfOrder => {
                self.ooo.insert(t, v);
            }
            _ => {}
        }
        p
    }

    /// Samples in `[mint, maxt]`, sorted, chunks outside the range not decoded.
    pub fn samples(&self, mint: i64, maxt: i64) -> Vec<Sample> {
        let mut out = Vec::new();
        self.append_samples(mint, maxt, &mut out);
        out
    }

    /// Appends [`MemSeries::samples`] to `out` (decoding straight into it).
    pub fn append_samples(&self, mint: i64, maxt: i64, out: &mut Vec<Sample>) {
        let start = out.len();
        for c in self.all_chunks() {
            if c.max_t() < mint || c.min_t() > maxt {
                continue;
            }
            out.extend(
                c.iter()
                    .filter(|s| s.0 >= mint && s.0 <= maxt)
                    .map(|(t, v)| Sample::new(t, v)),
            );
        }
        if maxt < mint {
            return;
        }
        let mut ooo = self
            .ooo
            .range(mint..=maxt)
            .map(|(&t, &v)| Sample::new(t, v))
            .peekable();
        if ooo.peek().is_none() {
            return;
        }
        let in_order = out.split_off(start);
        out.extend(merge_sorted(in_order, ooo.collect()));
    }

    /// True when a sample lies in `[mint, maxt]`.
    pub fn has_samples_in(&self, mint: i64, maxt: i64) -> bool {
        if maxt < mint {
            return false;
        }
        if self.ooo.range(mint..=maxt).next().is_some() {
            return true;
        }
        self.all_chunks().any(|c| {
            if c.max_t() < mint || c.min_t() > maxt {
                false
            } else if c.min_t() >= mint || c.max_t() <= maxt {
                // One end of the chunk lies inside the range.
                true
            } else {
                c.iter().any(|s| s.0 >= mint && s.0 <= maxt)
            }
        })
    }

    /// Drops every sample older than `t` (chunks end before it: chunks never
    /// span a boundary of the range they were cut at). A closed or open chunk
    /// straddling `t` is kept whole.
    pub fn truncate_before(&mut self, t: i64) {
        self.chunks.retain(|c| c.max_t() >= t);
        if !self.open.is_empty() && self.open.max_t() < t {
            self.open = XorChunk::new();
        }
        self.ooo = self.ooo.split_off(&t);
    }
}

/// Merges two sorted sample lists with distinct timestamps.
fn merge_sorted(a: Vec<Sample>, b: Vec<Sample>) -> Vec<Sample> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].t <= b[j].t {
            out.push(a[i]);
            i += 1;
        } else {
            out.push(b[j]);
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// Merges sorted lists where `primary` wins on equal timestamps.
pub(crate) fn merge_dedup(primary: &[Sample], secondary: &[Sample]) -> Vec<Sample> {
    let mut out = Vec::with_capacity(primary.len() + secondary.len());
    let (mut i, mut j) = (0, 0);
    while i < primary.len() && j < secondary.len() {
        match primary[i].t.cmp(&secondary[j].t) {
            std::cmp::Ordering::Less => {
                out.push(primary[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(secondary[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(primary[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&primary[i..]);
    out.extend_from_slice(&secondary[j..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RANGE: i64 = 7_200_000;

    #[test]
    fn cuts_chunks_by_count_and_range() {
        let mut s = MemSeries::new(Labels::empty());
        for i in 0..300 {
            assert_eq!(
                s.append(i * 10, i as f64, Some(0), RANGE),
                Placement::InOrder
            );
        }
        assert_eq!(s.num_chunks(), 3);
        s.append(RANGE + 1, 1.0, Some(0), RANGE);
        assert_eq!(s.num_chunks(), 4, "a chunk never spans a block boundary");
        assert_eq!(s.samples(0, i64::MAX).len(), 301);
        assert_eq!(s.samples(15, 35).len(), 2);
    }

    #[test]
    fn out_of_order_duplicates_and_window() {
        let mut s = MemSeries::new(Labels::empty());
        s.append(1000, 1.0, Some(100), RANGE);
        s.append(2000, 2.0, Some(100), RANGE);
        assert_eq!(s.append(1950, 9.0, Some(100), RANGE), Placement::OutOfOrder);
        assert_eq!(s.append(1899, 9.0, Some(100), RANGE), Placement::TooFarBack);
        assert_eq!(s.append(2000, 2.0, Some(100), RANGE), Placement::Identical);
        assert_eq!(s.append(1950, 9.0, Some(100), RANGE), Placement::Identical);
        assert_eq!(s.append(1000, 3.0, None, RANGE), Placement::Conflict);
        let got: Vec<i64> = s.samples(0, 5000).iter().map(|x| x.t).collect();
        assert_eq!(got, vec![1000, 1950, 2000]);
        assert!(s.has_samples_in(1900, 1960) && !s.has_samples_in(1001, 1949));
        // The chunk straddling the cut is kept whole, older OOO samples go.
        s.truncate_before(1960);
        let got: Vec<i64> = s.samples(0, 5000).iter().map(|x| x.t).collect();
        assert_eq!(got, vec![1000, 2000]);
        s.truncate_before(2001);
        assert!(s.is_empty());
    }

    #[test]
    fn merge_dedup_prefers_primary() {
        let a = [Sample::new(1, 1.0), Sample::new(3, 1.0)];
        let b = [Sample::new(1, 2.0), Sample::new(2, 2.0)];
        let m = merge_dedup(&a, &b);
        assert_eq!(
            m,
            vec![
                Sample::new(1, 1.0),
                Sample::new(2, 2.0),
                Sample::new(3, 1.0)
            ]
        );
    }
}
