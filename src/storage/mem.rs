//! An in-memory metrics store: the reference implementation of
//! [`MetricsReader`] and [`MetricsWriter`], used by unit tests and the PromQL
//! conformance runner. Linear scans, no durability.

use std::collections::{BTreeMap, HashMap};

use parking_lot::RwLock;

use super::{
    clip_samples, matches_all, merge_label_names, merge_label_values, AppendOutcome, MetricsReader,
    MetricsWriter, RejectReason, SeriesSamples, StorageError, StoreAdmin, WriteBatch,
};
use crate::model::{Exemplar, HistogramSample, Labels, Matcher, MetricMetadata, Sample, Tenant};

#[derive(Default)]
struct TenantData {
    series: BTreeMap<Labels, Vec<Sample>>,
    histograms: BTreeMap<Labels, Vec<HistogramSample>>,
    exemplars: HashMap<Labels, Vec<Exemplar>>,
    metadata: BTreeMap<String, MetricMetadata>,
}

/// In-memory metrics for tests; samples may arrive in any order.
#[derive(Default)]
pub struct MemMetrics {
    tenants: RwLock<HashMap<Tenant, TenantData>>,
}

impl MemMetrics {
    /// An empty store.
    pub fn new() -> MemMetrics {
        MemMetrics::default()
    }

    /// Removes every series of every tenant (`clear` in promqltest).
    pub fn clear(&self) {
        self.tenants.write().clear();
    }

    /// Stores native-histogram samples of one series (the promqltest
    /// loader's path; [`MetricsWriter`] carries floats only so far). A
    /// histogram replaces a float at the same timestamp and vice versa.
    pub fn append_histograms(&self, tenant: &Tenant, labels: &Labels, hs: Vec<HistogramSample>) {
        let mut tenants = self.tenants.write();
        let td = tenants.entry(tenant.clone()).or_default();
        let floats = td.series.entry(labels.clone()).or_default();
        floats.retain(|s| hs.binary_search_by_key(&s.t, |h| h.t).is_err());
        let stored = td.histograms.entry(labels.clone()).or_default();
        for h in hs {
            match stored.binary_search_by_key(&h.t, |x| x.t) {
                Ok(i) => stored[i] = h,
                Err(i) => stored.insert(i, h),
            }
        }
    }

    fn with_matching<T>(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        mut f: impl FnMut(&Labels, Vec<Sample>, Vec<HistogramSample>) -> Option<T>,
    ) -> Vec<T> {
        let tenants = self.tenants.read();
        let Some(td) = tenants.get(tenant) else {
            return vec![];
        };
        td.series
            .iter()
            .filter(|(l, _)| matches_all(l, matchers))
            .filter_map(|(l, s)| {
                let clipped = clip_samples(s, mint, maxt);
                let hs: Vec<HistogramSample> = td
                    .histograms
                    .get(l)
                    .map(|h| {
                        let a = h.partition_point(|x| x.t < mint);
                        let b = h.partition_point(|x| x.t <= maxt);
                        h[a..b.max(a)].to_vec()
                    })
                    .unwrap_or_default();
                if clipped.is_empty() && hs.is_empty() {
                    None
                } else {
                    f(l, clipped, hs)
                }
            })
            .collect()
    }
}

impl MetricsWriter for MemMetrics {
    fn append(&self, tenant: &Tenant, batch: WriteBatch) -> Result<AppendOutcome, StorageError> {
        let mut out = AppendOutcome::default();
        let mut tenants = self.tenants.write();
        let td = tenants.entry(tenant.clone()).or_default();
        for sw in batch.series {
            let stored = td.series.entry(sw.labels.clone()).or_default();
            for s in sw.samples {
                match stored.binary_search_by(|x| x.t.cmp(&s.t)) {
                    Ok(i) if stored[i].v.to_bits() == s.v.to_bits() => out.samples_written += 1,
                    Ok(_) => out.reject(RejectReason::DuplicateTimestamp, 1, &sw.labels),
                    Err(i) => {
                        stored.insert(i, s);
                        out.samples_written += 1;
                    }
                }
            }
            if !sw.exemplars.is_empty() {
                out.exemplars_written += sw.exemplars.len();
                td.exemplars
                    .entry(sw.labels)
                    .or_default()
                    .extend(sw.exemplars);
            }
        }
        for m in batch.metadata {
            td.metadata.insert(m.metric.clone(), m);
        }
        Ok(out)
    }
}

impl MetricsReader for MemMetrics {
    fn select(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        Ok(
            self.with_matching(tenant, matchers, mint, maxt, |l, samples, histograms| {
                Some(SeriesSamples {
                    labels: l.clone(),
                    samples,
                    histograms,
                })
            }),
        )
    }

    fn series(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, StorageError> {
        Ok(self.with_matching(tenant, matchers, mint, maxt, |l, _, _| Some(l.clone())))
    }

    fn label_names(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        Ok(merge_label_names(
            &self.series(tenant, matchers, mint, maxt)?,
        ))
    }

    fn label_values(
        &self,
        tenant: &Tenant,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        Ok(merge_label_values(
            &self.series(tenant, matchers, mint, maxt)?,
            name,
        ))
    }

    fn metadata(
        &self,
        tenant: &Tenant,
        metric: Option<&str>,
    ) -> Result<Vec<MetricMetadata>, StorageError> {
        let tenants = self.tenants.read();
        Ok(tenants
            .get(tenant)
            .map(|td| {
                td.metadata
                    .values()
                    .filter(|m| metric.is_none_or(|n| m.metric == n))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    fn exemplars(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<(Labels, Vec<Exemplar>)>, StorageError> {
        let tenants = self.tenants.read();
        let Some(td) = tenants.get(tenant) else {
            return Ok(vec![]);
        };
        let mut out: Vec<(Labels, Vec<Exemplar>)> = td
            .exemplars
            .iter()
            .filter(|(l, _)| matches_all(l, matchers))
            .map(|(l, ex)| {
                (
                    l.clone(),
                    ex.iter()
                        .filter(|e| e.t >= mint && e.t <= maxt)
                        .cloned()
                        .collect::<Vec<_>>(),
                )
            })
            .filter(|(_, ex)| !ex.is_empty())
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

impl StoreAdmin for MemMetrics {
    fn flush(&self) -> Result<(), StorageError> {
        Ok(())
    }

    fn disk_bytes(&self) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::SeriesWrite;

    fn write(
        store: &MemMetrics,
        tenant: &Tenant,
        labels: &[(&str, &str)],
        samples: &[(i64, f64)],
    ) -> AppendOutcome {
        store
            .append(
                tenant,
                WriteBatch {
                    series: vec![SeriesWrite {
                        labels: Labels::from_pairs(labels.iter().copied()),
                        samples: samples.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
                        exemplars: vec![],
                    }],
                    metadata: vec![],
                },
            )
            .unwrap()
    }

    #[test]
    fn tenants_are_isolated_and_duplicates_follow_prometheus() {
        let s = MemMetrics::new();
        let (a, b) = (Tenant::new("a").unwrap(), Tenant::new("b").unwrap());
        write(&s, &a, &[("__name__", "up")], &[(1, 1.0), (2, 1.0)]);
        let out = write(&s, &a, &[("__name__", "up")], &[(2, 1.0), (2, 5.0)]);
        assert_eq!(out.samples_written, 1);
        assert_eq!(out.rejected_count(), 1);
        let m = [Matcher::equal("__name__", "up")];
        assert_eq!(s.select(&a, &m, 0, 10).unwrap()[0].samples.len(), 2);
        assert!(s.select(&b, &m, 0, 10).unwrap().is_empty());
        assert_eq!(s.label_names(&a, &[], 0, 10).unwrap(), vec!["__name__"]);
    }
}
