//! WAL replay on open: records are read in order, decoded on several threads
//! a batch at a time, and applied to the heads in WAL order (so a series
//! record always precedes its samples and per-series order is kept, and a
//! flush's truncation record drops, where it stands, what that flush moved
//! into blocks: segments a crash kept from the checkpoint's deletion do not
//! bring it back).

use std::path::Path;
use std::time::{Duration, Instant};

use super::record::{self, Record};
use super::{head_for, wal_error, Heads, TsdbOptions, WAL_REPLAY_DURATION_SECONDS};
use crate::storage::wal::{Wal, WalError};
use crate::storage::StorageError;

/// Records decoded per parallel batch.
const BATCH_RECORDS: usize = 4096;
/// Payload bytes per parallel batch.
const BATCH_BYTES: usize = 32 << 20;

/// What a replay found.
#[derive(Debug, Clone, Default)]
pub struct ReplayFigures {
    /// WAL segments read.
    pub segments: u64,
    /// Records applied.
    pub records: u64,
    /// Payload bytes read.
    pub bytes: u64,
    /// Series records applied.
    pub series: u64,
    /// Samples applied.
    pub samples: u64,
    /// Samples whose series record was missing (skipped).
    pub unknown_series_samples: u64,
    /// Bytes of a torn tail that were dropped.
    pub torn_tail_bytes: u64,
    /// Wall time of the replay.
    pub duration: Duration,
}

struct Replayer<'a> {
    heads: &'a Heads,
    opts: &'a TsdbOptions,
    figures: ReplayFigures,
    batch: Vec<(u64, Vec<u8>)>,
    batch_bytes: usize,
    threads: usize,
}

impl Replayer<'_> {
    fn push(&mut self, segment: u64, payload: &[u8]) -> Result<(), StorageError> {
        self.batch_bytes += payload.len();
        self.batch.push((segment, payload.to_vec()));
        if self.batch.len() >= BATCH_RECORDS || self.batch_bytes >= BATCH_BYTES {
            self.drain()?;
        }
        Ok(())
    }

    /// Decodes the batch in parallel, then applies it in order.
    fn drain(&mut self) -> Result<(), StorageError> {
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        if batch.is_empty() {
            return Ok(());
        }
        let per_thread = batch.len().div_ceil(self.threads);
        let decoded: Vec<Result<Record, StorageError>> = std::thread::scope(|s| {
            let handles: Vec<_> = batch
                .chunks(per_thread)
                .map(|part| {
                    s.spawn(move || {
                        part.iter()
                            .map(|(seg, p)| record::decode(*seg, p))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("decoder thread panicked"))
                .collect()
        });
        let chunk_range = self.opts.block_duration_ms;
        for r in decoded {
            self.figures.records += 1;
            match r? {
                Record::Series(tenant, series) => {
                    let head = head_for(self.heads, &tenant);
                    self.figures.series += series.len() as u64;
                    for (id, labels) in series {
                        head.replay_series(id, labels);
                    }
                }
                Record::Samples(tenant, samples) => {
                    self.figures.samples += samples.len() as u64;
                    self.figures.unknown_series_samples +=
                        head_for(self.heads, &tenant).replay_samples(&samples, chunk_range) as u64;
                }
                Record::Exemplars(tenant, ex) => head_for(self.heads, &tenant)
                    .replay_exemplars(ex, self.opts.max_exemplars_per_tenant),
                Record::Metadata(tenant, md) => head_for(self.heads, &tenant).replay_metadata(md),
                Record::Truncation {
                    tenant,
                    before,
                    min_valid,
                } => head_for(self.heads, &tenant).replay_truncation(before, min_valid),
            }
        }
        Ok(())
    }
}

/// Replays the WAL in `dir` into `heads` and opens it for appending (one
/// read of every segment, under the WAL's directory lock).
pub(crate) fn replay_and_open(
    dir: &Path,
    heads: &Heads,
    opts: &TsdbOptions,
) -> Result<(Wal, ReplayFigures), StorageError> {
    let start = Instant::now();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 8);
    let mut r = Replayer {
        heads,
        opts,
        figures: ReplayFigures::default(),
        batch: Vec::new(),
        batch_bytes: 0,
        threads,
    };
    let mut failure: Option<StorageError> = None;
    let opened = Wal::open_replaying(dir, opts.wal.clone(), &mut |segment, payload| {
        r.push(segment, payload).map_err(|e| {
            let msg = e.to_string();
            failure = Some(e);
            WalError::Failed(msg)
        })
    });
    let (wal, stats) = match (opened, failure) {
        (_, Some(e)) => return Err(e),
        (Err(e), None) => return Err(wal_error(dir, e)),
        (Ok(s), None) => s,
    };
    r.drain()?;
    for h in heads.read().values() {
        h.finish_replay();
    }
    let mut f = r.figures;
    f.segments = stats.segments;
    f.bytes = stats.bytes;
    f.torn_tail_bytes = stats.torn_tail_bytes;
    f.duration = start.elapsed();
    metrics::gauge!(WAL_REPLAY_DURATION_SECONDS).set(f.duration.as_secs_f64());
    if f.torn_tail_bytes > 0 {
        tracing::warn!(
            dir = %dir.display(),
            bytes = f.torn_tail_bytes,
            "wal had a torn tail (a write interrupted by a crash); dropped it"
        );
    }
    tracing::info!(
        dir = %dir.display(),
        segments = f.segments,
        records = f.records,
        series = f.series,
        samples = f.samples,
        unknown_series_samples = f.unknown_series_samples,
        duration_ms = f.duration.as_millis() as u64,
        threads,
        "wal replayed"
    );
    Ok((wal, f))
}
