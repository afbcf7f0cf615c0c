//! The in-memory head of one tenant: series by labels (stable hash), their
//! chunks, label postings, a bounded ring of exemplars and metadata per metric.
//!
//! An append is two steps around the WAL write: [`TenantHead::prepare`]
//! assigns ids, validates samples and encodes the WAL records; after the WAL
//! has them, [`TenantHead::commit`] applies them.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicI64, Ordering};

use parking_lot::{RwLock, RwLockReadGuard};
use roaring::RoaringBitmap;

use super::postings::Postings;
use super::record::Encoder;
use super::series::{merge_dedup, MemSeries, Placement};
use crate::model::{Exemplar, Labels, LabelsRef, Matcher, MetricMetadata, Tenant};
use crate::storage::idmap::{DenseMap, IdHasher, IdMap};
use crate::storage::{
    matches_all, AppendOutcome, BatchRef, RejectReason, SeriesRef, SeriesSamples, StorageError,
};

/// Payload bytes after which a checkpoint record is closed.
const CHECKPOINT_RECORD_BYTES: usize = 1 << 20;

/// Limits and ranges the head applies on append.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadLimits {
    pub out_of_order_window_ms: i64,
    pub chunk_range_ms: i64,
    pub max_series: usize,
    pub max_exemplars: usize,
}

/// What [`TenantHead::prepare`] decided, to be logged then committed.
pub(crate) struct Prepared {
    /// WAL payloads, in order.
    pub records: Vec<Vec<u8>>,
    /// The outcome to report once committed.
    pub outcome: AppendOutcome,
    samples: Vec<(u32, i64, f64)>,
    exemplars: Vec<(u32, Exemplar)>,
    metadata: Vec<MetricMetadata>,
    logged: Vec<u32>,
}

/// Figures of a head for the gauges.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HeadStats {
    pub series: usize,
    pub chunks: usize,
}

#[derive(Default)]
struct HeadData {
    series: DenseMap<MemSeries>,
    /// Series id by the stable hash of its labels.
    by_hash: IdMap<u64, u32>,
    /// Further ids whose labels hash like the one in `by_hash` (64-bit
    /// collisions: kept correct, never expected in practice).
    collisions: IdMap<u64, Vec<u32>>,
    postings: Postings,
    next_id: u32,
    exemplars: VecDeque<(Labels, Exemplar)>,
    metadata: BTreeMap<String, MetricMetadata>,
    /// Samples older than this are refused (the end of the last range the
    /// periodic flush moved into blocks).
    min_valid_t: Option<i64>,
    /// During replay: ids of records whose labels were met under another id.
    replay_alias: HashMap<u32, u32>,
}

impl HeadData {
    fn lookup(&self, labels: &Labels) -> Option<u32> {
        self.lookup_hashed(labels.stable_hash(), LabelsRef::Owned(labels))
    }

    /// The id of the series with `labels`, whose stable hash is `h`.
    fn lookup_hashed(&self, h: u64, labels: LabelsRef<'_>) -> Option<u32> {
        let is = |id: &u32| {
            self.series
                .get(id)
                .is_some_and(|s| labels.equals(&s.labels))
        };
        let first = *self.by_hash.get(&h)?;
        if is(&first) {
            return Some(first);
        }
        self.collisions.get(&h)?.iter().copied().find(is)
    }

    fn insert_series(&mut self, id: u32, labels: Labels) {
        let h = labels.stable_hash();
        match self.by_hash.entry(h) {
            Entry::Occupied(_) => self.collisions.entry(h).or_default().push(id),
            Entry::Vacant(v) => {
                v.insert(id);
            }
        }
        self.postings.add(id, &labels);
        self.series.insert(id, MemSeries::new(labels));
        self.next_id = self.next_id.max(id.saturating_add(1));
    }

    fn create(&mut self, labels: LabelsRef<'_>) -> u32 {
        let id = self.next_id;
        self.insert_series(id, labels.to_labels());
        id
    }

    fn remove_series(&mut self, id: u32) {
        let Some(s) = self.series.remove(&id) else {
            return;
        };
        let h = s.labels.stable_hash();
        if self.by_hash.get(&h) == Some(&id) {
            self.by_hash.remove(&h);
            if let Some(more) = self.collisions.get_mut(&h) {
                self.by_hash.insert(h, more.remove(0));
            }
        } else if let Some(more) = self.collisions.get_mut(&h) {
            more.retain(|x| *x != id);
        }
        if self.collisions.get(&h).is_some_and(Vec::is_empty) {
            self.collisions.remove(&h);
        }
        self.postings.remove(id, &s.labels);
    }

    /// Forgets series holding no sample (after a flush, or created by an
    /// append whose WAL write failed).
    fn drop_empty_series(&mut self) {
        let empty: Vec<u32> = self
            .series
            .iter()
            .filter(|(_, s)| s.is_empty())
            .map(|(id, _)| *id)
            .collect();
        for id in empty {
            self.remove_series(id);
        }
    }

    fn push_exemplar(&mut self, labels: Labels, e: Exemplar, max: usize) {
        if max == 0 {
            return;
        }
        while self.exemplars.len() >= max {
            self.exemplars.pop_front();
        }
        self.exemplars.push_back((labels, e));
    }

    /// Ids of series matching `matchers` with a sample in `[mint, maxt]`.
    fn matching(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> RoaringBitmap {
        self.postings
            .select(matchers)
            .iter()
            .filter(|id| {
                self.series
                    .get(id)
                    .is_some_and(|s| s.has_samples_in(mint, maxt))
            })
            .collect()
    }
}

/// The head of one tenant.
pub(crate) struct TenantHead {
    pub tenant: Tenant,
    data: RwLock<HeadData>,
    /// Oldest and newest timestamps appended since the last truncation (a
    /// superset of what the head holds), read without the lock to tell when
    /// the head has grown enough to flush.
    span: (AtomicI64, AtomicI64),
}

impl TenantHead {
    pub fn new(tenant: Tenant) -> TenantHead {
        TenantHead {
            tenant,
            data: RwLock::new(HeadData::default()),
            span: (AtomicI64::new(i64::MAX), AtomicI64::new(i64::MIN)),
        }
    }

    /// Widens the known span by timestamps `lo..=hi` being appended.
    pub fn note_span(&self, lo: i64, hi: i64) {
        self.span.0.fetch_min(lo, Ordering::Relaxed);
        self.span.1.fetch_max(hi, Ordering::Relaxed);
    }

    /// Newest minus oldest timestamp appended since the last truncation
    /// (0 when empty).
    pub fn span_ms(&self) -> i64 {
        let (lo, hi) = (
            self.span.0.load(Ordering::Relaxed),
            self.span.1.load(Ordering::Relaxed),
        );
        hi.saturating_sub(lo).max(0)
    }

    /// Sets the known span to what the head holds.
    pub fn refresh_span(&self) {
        self.reset_span(&self.data.read());
    }

    fn reset_span(&self, d: &HeadData) {
        let (lo, hi) = bounds(d).unwrap_or((i64::MAX, i64::MIN));
        self.span.0.store(lo, Ordering::Relaxed);
        self.span.1.store(hi, Ordering::Relaxed);
    }

    /// Resolves series, validates samples and encodes WAL records. Refuses
    /// the whole batch when it would create series beyond the limit.
    pub fn prepare(
        &self,
        batch: &BatchRef<'_>,
        lim: &HeadLimits,
    ) -> Result<Prepared, StorageError> {
        let wanted = |sw: &&SeriesRef| !sw.samples.is_empty() || !sw.exemplars.is_empty();
        let writes: Vec<&SeriesRef> = batch.series.iter().filter(wanted).collect();
        // Label hashes before taking the lock, then existing ids resolved
        // once by hash and comparison with the borrowed labels (nothing is
        // built for a series the head holds).
        let hashes: Vec<u64> = writes.iter().map(|sw| sw.labels.stable_hash()).collect();
        let mut d = self.data.write();
        let resolved: Vec<Option<u32>> = writes
            .iter()
            .zip(&hashes)
            .map(|(sw, &h)| d.lookup_hashed(h, sw.labels))
            .collect();
        if lim.max_series > 0 {
            // Distinct new series by hash (a 64-bit collision would only
            // count one series fewer against the limit).
            let new: HashSet<u64, BuildHasherDefault<IdHasher>> = hashes
                .iter()
                .zip(&resolved)
                .filter(|(_, r)| r.is_none())
                .map(|(h, _)| *h)
                .collect();
            if d.series.len() + new.len() > lim.max_series {
                return Err(StorageError::LimitExceeded(format!(
                    "per-tenant series limit of {} reached for tenant {:?}: the head holds {} series and the request adds {} new ones (limits.max_series_per_tenant)",
                    lim.max_series,
                    self.tenant.as_str(),
                    d.series.len(),
                    new.len()
                )));
            }
        }
        let mut p = Prepared {
            records: Vec::new(),
            outcome: AppendOutcome::default(),
            samples: Vec::new(),
            exemplars: Vec::new(),
            metadata: batch.metadata.to_vec(),
            logged: Vec::new(),
        };
        let mut series_rec = Encoder::series(&self.tenant);
        let mut samples_rec = Encoder::samples(&self.tenant);
        let mut exemplars_rec = Encoder::exemplars(&self.tenant);
        let mut sorted = Vec::new();
        let mut seen: HashSet<u32, BuildHasherDefault<IdHasher>> = HashSet::default();
        for ((sw, resolved), h) in writes.into_iter().zip(resolved).zip(hashes) {
            // A series new to the head may have been created by an earlier
            // entry of this batch.
            let id = match resolved.or_else(|| d.lookup_hashed(h, sw.labels)) {
                Some(id) => id,
                None => d.create(sw.labels),
            };
            let series = &d.series[&id];
            let labels = &series.labels;
            let repeat = !seen.insert(id);
            if !series.logged && !repeat {
                series_rec.add_series(id, labels);
                p.logged.push(id);
            }
            sorted.clear();
            sorted.extend_from_slice(sw.samples);
            sorted.sort_by_key(|s| s.t);
            // Samples of this series accepted earlier in the batch: the
            // previous one of this entry (samples are sorted), and those of
            // earlier entries with the same labels (rare: built only then).
            let mut last: Option<(i64, u64)> = None;
            let earlier: BTreeMap<i64, u64> = if repeat {
                p.samples
                    .iter()
                    .filter(|x| x.0 == id)
                    .map(|x| (x.1, x.2.to_bits()))
                    .collect()
            } else {
                BTreeMap::new()
            };
            for s in &sorted {
                let pending = match last {
                    Some((t, bits)) if t == s.t => Some(bits),
                    _ => earlier.get(&s.t).copied(),
                };
                let placement = match pending {
                    Some(bits) if bits == s.v.to_bits() => Placement::Identical,
                    Some(_) => Placement::Conflict,
                    None => {
                        let batch_max = last.map(|l| l.0).max(earlier.keys().next_back().copied());
                        match (series.max_t(), batch_max) {
                            (series_max, Some(bm))
                                if s.t < bm && series_max.is_none_or(|m| s.t > m) =>
                            {
                                if s.t < bm.saturating_sub(lim.out_of_order_window_ms) {
                                    Placement::TooFarBack
                                } else {
                                    Placement::OutOfOrder
                                }
                            }
                            _ => series.classify(s.t, s.v, Some(lim.out_of_order_window_ms)),
                        }
                    }
                };
                let too_old = d.min_valid_t.is_some_and(|m| s.t < m);
                match placement {
                    Placement::InOrder if too_old => {
                        p.outcome.reject(RejectReason::TooOld, 1, labels)
                    }
                    Placement::InOrder | Placement::OutOfOrder => {
                        last = Some((s.t, s.v.to_bits()));
                        samples_rec.add_sample(id, s.t, s.v);
                        p.samples.push((id, s.t, s.v));
                        p.outcome.samples_written += 1;
                    }
                    Placement::Identical => p.outcome.samples_written += 1,
                    Placement::Conflict => {
                        p.outcome
                            .reject(RejectReason::DuplicateTimestamp, 1, labels)
                    }
                    Placement::TooFarBack => p.outcome.reject(RejectReason::OutOfOrder, 1, labels),
                }
            }
            for e in sw.exemplars {
                exemplars_rec.add_exemplar(id, e);
                p.exemplars.push((id, e.clone()));
            }
        }
        p.outcome.exemplars_written = p.exemplars.len();
        let mut md_rec = Encoder::metadata(&self.tenant);
        for m in batch.metadata {
            md_rec.add_metadata(m);
        }
        p.records.extend(
            [series_rec, samples_rec, exemplars_rec, md_rec]
                .into_iter()
                .filter_map(Encoder::finish),
        );
        Ok(p)
    }

    /// Applies a prepared batch once its records are in the WAL. Returns the
    /// outcome, the number of samples stored out of order and the series count.
    pub fn commit(&self, p: Prepared, lim: &HeadLimits) -> (AppendOutcome, usize, usize) {
        let mut d = self.data.write();
        let mut ooo = 0;
        for id in p.logged {
            if let Some(s) = d.series.get_mut(&id) {
                s.logged = true;
            }
        }
        for (id, t, v) in p.samples {
            if let Some(s) = d.series.get_mut(&id) {
                if s.append(t, v, None, lim.chunk_range_ms) == Placement::OutOfOrder {
                    ooo += 1;
                }
            }
        }
        for (id, e) in p.exemplars {
            if let Some(labels) = d.series.get(&id).map(|s| s.labels.clone()) {
                d.push_exemplar(labels, e, lim.max_exemplars);
            }
        }
        for m in p.metadata {
            d.metadata.insert(m.metric.clone(), m);
        }
        (p.outcome, ooo, d.series.len())
    }

    // ---- replay ----

    /// Replays a series record.
    pub fn replay_series(&self, id: u32, labels: Labels) {
        let mut d = self.data.write();
        match d.lookup(&labels) {
            Some(existing) if existing != id => {
                d.replay_alias.insert(id, existing);
            }
            Some(_) => {}
            None => {
                d.insert_series(id, labels);
                if let Some(s) = d.series.get_mut(&id) {
                    s.logged = true;
                }
            }
        }
    }

    /// Replays samples; returns how many referred to unknown series.
    pub fn replay_samples(&self, samples: &[(u32, i64, f64)], chunk_range: i64) -> usize {
        let mut d = self.data.write();
        let mut unknown = 0;
        for &(id, t, v) in samples {
            let id = d.replay_alias.get(&id).copied().unwrap_or(id);
            match d.series.get_mut(&id) {
                Some(s) => {
                    s.append(t, v, None, chunk_range);
                }
                None => unknown += 1,
            }
        }
        unknown
    }

    /// Replays exemplars.
    pub fn replay_exemplars(&self, exemplars: Vec<(u32, Exemplar)>, max: usize) {
        let mut d = self.data.write();
        for (id, e) in exemplars {
            let id = d.replay_alias.get(&id).copied().unwrap_or(id);
            if let Some(labels) = d.series.get(&id).map(|s| s.labels.clone()) {
                d.push_exemplar(labels, e, max);
            }
        }
    }

    /// Replays metadata.
    pub fn replay_metadata(&self, metadata: Vec<MetricMetadata>) {
        let mut d = self.data.write();
        for m in metadata {
            d.metadata.insert(m.metric.clone(), m);
        }
    }

    /// Replays a truncation record: drops what the head holds older than
    /// `before` (a flush moved it into blocks) and restores the lower bound
    /// for in-order samples.
    pub fn replay_truncation(&self, before: i64, min_valid: Option<i64>) {
        if before > i64::MIN {
            self.truncate_before(before, false);
        }
        let mut d = self.data.write();
        d.min_valid_t = d.min_valid_t.max(min_valid);
    }

    /// Ends replay: forgets id aliases and series that received no sample.
    pub fn finish_replay(&self) {
        let mut d = self.data.write();
        d.replay_alias.clear();
        d.drop_empty_series();
        self.reset_span(&d);
    }

    // ---- reads ----

    /// Series matching the matchers with their samples in `[mint, maxt]`, sorted.
    #[cfg(test)]
    pub fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<SeriesSamples> {
        let d = self.data.read();
        let mut out: Vec<SeriesSamples> = d
            .postings
            .select(matchers)
            .iter()
            .filter_map(|id| {
                let s = d.series.get(&id)?;
                let samples = s.samples(mint, maxt);
                (!samples.is_empty()).then(|| SeriesSamples {
                    labels: s.labels.clone(),
                    samples,
                    histograms: vec![],
                })
            })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    /// Adds the head's samples of the series matching `matchers` to
    /// `out`, label-sorted series read from the blocks: a series found
    /// there gets the head's samples appended to its own vector (decoded
    /// straight into it; the head wins on equal timestamps), others are
    /// added; `out` stays sorted by labels.
    pub fn append_selected(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        out: &mut Vec<SeriesSamples>,
    ) {
        let d = self.data.read();
        let from_blocks = out.len();
        for id in &d.postings.select(matchers) {
            let Some(s) = d.series.get(&id) else {
                continue;
            };
            match out[..from_blocks].binary_search_by(|x| x.labels.cmp(&s.labels)) {
                Ok(i) => {
                    let v = &mut out[i].samples;
                    let start = v.len();
                    s.append_samples(mint, maxt, v);
                    if start > 0 && v.len() > start && v[start - 1].t >= v[start].t {
                        let head = v.split_off(start);
                        *v = merge_dedup(&head, v);
                    }
                }
                Err(_) => {
                    let samples = s.samples(mint, maxt);
                    if !samples.is_empty() {
                        out.push(SeriesSamples {
                            labels: s.labels.clone(),
                            samples,
                            histograms: vec![],
                        });
                    }
                }
            }
        }
        if out.len() > from_blocks {
            out.sort_by(|a, b| a.labels.cmp(&b.labels));
        }
    }

    /// Label sets of matching series with samples in range, sorted.
    pub fn series(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Labels> {
        let d = self.data.read();
        let mut out: Vec<Labels> = d
            .matching(matchers, mint, maxt)
            .iter()
            .filter_map(|id| d.series.get(&id).map(|s| s.labels.clone()))
            .collect();
        out.sort();
        out
    }

    /// Label names of matching series with samples in range.
    pub fn label_names(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> BTreeSet<String> {
        let d = self.data.read();
        let ids = d.matching(matchers, mint, maxt);
        d.postings
            .names()
            .filter(|(_, values)| values.values().any(|b| !b.is_disjoint(&ids)))
            .map(|(n, _)| n.to_string())
            .collect()
    }

    /// Values of label `name` over matching series with samples in range.
    pub fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> BTreeSet<String> {
        let d = self.data.read();
        let Some(values) = d.postings.values(name) else {
            return BTreeSet::new();
        };
        let ids = d.matching(matchers, mint, maxt);
        values
            .iter()
            .filter(|(_, b)| !b.is_disjoint(&ids))
            .map(|(v, _)| v.clone())
            .collect()
    }

    /// Stored metadata, optionally for one metric.
    pub fn metadata(&self, metric: Option<&str>) -> Vec<MetricMetadata> {
        let d = self.data.read();
        match metric {
            Some(m) => d.metadata.get(m).cloned().into_iter().collect(),
            None => d.metadata.values().cloned().collect(),
        }
    }

    /// Exemplars of matching series in range, grouped by series, sorted.
    pub fn exemplars(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Vec<(Labels, Vec<Exemplar>)> {
        let d = self.data.read();
        let mut by_series: BTreeMap<&Labels, Vec<Exemplar>> = BTreeMap::new();
        for (l, e) in &d.exemplars {
            if e.t >= mint && e.t <= maxt && matches_all(l, matchers) {
                by_series.entry(l).or_default().push(e.clone());
            }
        }
        by_series.into_iter().map(|(l, e)| (l.clone(), e)).collect()
    }

    // ---- flush and checkpoint ----

    /// Oldest and newest timestamps held.
    pub fn time_bounds(&self) -> Option<(i64, i64)> {
        bounds(&self.data.read())
    }

    /// Every series' samples in `[lo, hi)` in label order, one series at a
    /// time (a flush never holds a whole block range decoded). The head
    /// stays read-locked while the iterator lives.
    pub fn range_iter(&self, lo: i64, hi: i64) -> RangeIter<'_> {
        let d = self.data.read();
        let mut ids: Vec<u32> = d
            .series
            .iter()
            .filter(|(_, s)| s.has_samples_in(lo, hi - 1))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable_by(|a, b| d.series[a].labels.cmp(&d.series[b].labels));
        RangeIter {
            d,
            ids: ids.into_iter(),
            lo,
            hi,
        }
    }

    /// Drops samples older than `t`, then series left empty. With
    /// `refuse_older`, later samples older than `t` are refused as too old.
    pub fn truncate_before(&self, t: i64, refuse_older: bool) {
        let mut d = self.data.write();
        for s in d.series.values_mut() {
            s.truncate_before(t);
        }
        d.drop_empty_series();
        if refuse_older {
            d.min_valid_t = Some(d.min_valid_t.map_or(t, |m| m.max(t)));
        }
        self.reset_span(&d);
    }

    /// The WAL record of a truncation before `t` (after
    /// [`TenantHead::truncate_before`]).
    pub fn truncation_record(&self, t: i64) -> Vec<u8> {
        Encoder::truncation(&self.tenant, t, self.data.read().min_valid_t)
    }

    /// Hands `sink` records rewriting everything the head holds: its lower
    /// bound for in-order samples, series, then samples, exemplars and
    /// metadata.
    pub fn checkpoint_records(
        &self,
        sink: &mut dyn FnMut(Vec<u8>) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let d = self.data.read();
        if d.min_valid_t.is_some() {
            sink(Encoder::truncation(&self.tenant, i64::MIN, d.min_valid_t))?;
        }
        let mut ids: Vec<u32> = d.series.keys().copied().collect();
        ids.sort_unstable();
        let mut rec = Encoder::series(&self.tenant);
        for &id in &ids {
            rec.add_series(id, &d.series[&id].labels);
            if rec.byte_len() >= CHECKPOINT_RECORD_BYTES {
                emit(&mut rec, Encoder::series(&self.tenant), sink)?;
            }
        }
        emit(&mut rec, Encoder::samples(&self.tenant), sink)?;
        for &id in &ids {
            for s in d.series[&id].samples(i64::MIN, i64::MAX) {
                rec.add_sample(id, s.t, s.v);
                if rec.byte_len() >= CHECKPOINT_RECORD_BYTES {
                    emit(&mut rec, Encoder::samples(&self.tenant), sink)?;
                }
            }
        }
        emit(&mut rec, Encoder::exemplars(&self.tenant), sink)?;
        for (l, e) in &d.exemplars {
            if let Some(id) = d.lookup(l) {
                rec.add_exemplar(id, e);
            }
        }
        emit(&mut rec, Encoder::metadata(&self.tenant), sink)?;
        for m in d.metadata.values() {
            rec.add_metadata(m);
        }
        emit(&mut rec, Encoder::metadata(&self.tenant), sink)
    }

    /// Series and chunk counts.
    pub fn stats(&self) -> HeadStats {
        let d = self.data.read();
        HeadStats {
            series: d.series.len(),
            chunks: d.series.values().map(MemSeries::num_chunks).sum(),
        }
    }
}

/// Series of a head range in label order, decoded one at a time.
pub(crate) struct RangeIter<'a> {
    d: RwLockReadGuard<'a, HeadData>,
    ids: std::vec::IntoIter<u32>,
    lo: i64,
    hi: i64,
}

impl RangeIter<'_> {
    /// Series still to come.
    pub fn remaining(&self) -> usize {
        self.ids.len()
    }
}

impl Iterator for RangeIter<'_> {
    type Item = SeriesSamples;

    fn next(&mut self) -> Option<SeriesSamples> {
        for id in self.ids.by_ref() {
            let Some(s) = self.d.series.get(&id) else {
                continue;
            };
            let samples = s.samples(self.lo, self.hi - 1);
            if !samples.is_empty() {
                return Some(SeriesSamples {
                    labels: s.labels.clone(),
                    samples,
                    histograms: vec![],
                });
            }
        }
        None
    }
}

/// Oldest and newest timestamps a head holds.
fn bounds(d: &HeadData) -> Option<(i64, i64)> {
    let mut bounds: Option<(i64, i64)> = None;
    for s in d.series.values() {
        if let (Some(lo), Some(hi)) = (s.min_t(), s.held_max_t()) {
            bounds = Some(match bounds {
                None => (lo, hi),
                Some((a, b)) => (a.min(lo), b.max(hi)),
            });
        }
    }
    bounds
}

/// Hands the finished record to `sink` and starts `next` in its place.
fn emit(
    rec: &mut Encoder,
    next: Encoder,
    sink: &mut dyn FnMut(Vec<u8>) -> Result<(), StorageError>,
) -> Result<(), StorageError> {
    match std::mem::replace(rec, next).finish() {
        Some(p) => sink(p),
        None => Ok(()),
    }
}
