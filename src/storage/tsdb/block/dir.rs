//! One block directory: writing it atomically and reading it back.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::model::{Labels, Sample};
use crate::storage::{SeriesSamples, StorageError};

use super::chunks::{
    append_chunk_paged, read_chunk, read_times_paged, ChunkWriter, CHUNK_SAMPLES, MAGIC_CHUNKS,
    PAGED_VERSION,
};
use super::index::{build_index, ChunkMeta, IndexReader, SeriesEntry};
use super::BlockMeta;

/// Format version written by this code.
pub const FORMAT_VERSION: u32 = 6;
/// Prefix of directories being written.
pub(crate) const TMP_PREFIX: &str = ".tmp-";
pub(crate) const META_FILE: &str = "meta.json";
pub(crate) const INDEX_FILE: &str = "index";
pub(crate) const CHUNKS_FILE: &str = "chunks";

pub(crate) fn io(ctx: impl Into<String>) -> impl FnOnce(std::io::Error) -> StorageError {
    let ctx = ctx.into();
    move |e| StorageError::io(ctx, e)
}

pub(crate) fn corrupt(path: &Path, reason: impl Into<String>) -> StorageError {
    StorageError::Corrupt {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Crockford base32, the digits of block ids.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A new time-sortable id: 48 bits of milliseconds then 80 random bits, in
/// Crockford base32 (26 characters, the ULID layout).
pub(crate) fn new_block_id() -> String {
    let ms = chrono::Utc::now().timestamp_millis().max(0) as u128 & ((1 << 48) - 1);
    let rnd: u128 = rand::random::<u128>() & ((1u128 << 80) - 1);
    let v = (ms << 80) | rnd;
    (0..26)
        .rev()
        .map(|i| ALPHABET[((v >> (i * 5)) & 31) as usize] as char)
        .collect()
}

/// The milliseconds of a [`new_block_id`] id; `None` for other names.
pub(crate) fn block_id_ms(id: &str) -> Option<i64> {
    if id.len() != 26 {
        return None;
    }
    id.bytes().take(10).try_fold(0i64, |ms, c| {
        Some((ms << 5) | ALPHABET.iter().position(|&a| a == c)? as i64)
    })
}

pub(crate) fn fsync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io(format!("fsync {}", dir.display())))
}

/// What the writer is asked to build.
pub(crate) struct BlockSpec<'a> {
    pub(crate) tenant_dir: &'a Path,
    pub(crate) tenant: &'a str,
    pub(crate) min_t: i64,
    pub(crate) max_t: i64,
    pub(crate) level: u32,
    /// Level-1 ids this block comes from (empty: itself).
    pub(crate) sources: Vec<String>,
}

/// Writes a block from series (any order; duplicates merged) into
/// `.tmp-<id>`, fsyncs it and renames it to `<id>`. Returns `None` without
/// leaving anything behind when there is no sample.
pub(crate) fn write_block_dir(
    spec: BlockSpec<'_>,
    series: &mut dyn Iterator<Item = Result<SeriesSamples, StorageError>>,
) -> Result<Option<(BlockMeta, PathBuf)>, StorageError> {
    let id = new_block_id();
    fs::create_dir_all(spec.tenant_dir)
        .map_err(io(format!("create {}", spec.tenant_dir.display())))?;
    let tmp = spec.tenant_dir.join(format!("{TMP_PREFIX}{id}"));
    fs::create_dir(&tmp).map_err(io(format!("create {}", tmp.display())))?;
    let result = write_into(&tmp, &id, spec, series);
    match result {
        Ok(Some((meta, final_dir))) => {
            fs::rename(&tmp, &final_dir).map_err(io(format!("rename {}", tmp.display())))?;
            if let Some(parent) = final_dir.parent() {
                fsync_dir(parent)?;
            }
            Ok(Some((meta, final_dir)))
        }
        other => {
            let _ = fs::remove_dir_all(&tmp);
            other.map(|_| None)
        }
    }
}

fn write_into(
    tmp: &Path,
    id: &str,
    spec: BlockSpec<'_>,
    series: &mut dyn Iterator<Item = Result<SeriesSamples, StorageError>>,
) -> Result<Option<(BlockMeta, PathBuf)>, StorageError> {
    let chunks_path = tmp.join(CHUNKS_FILE);
    let mut chunks_file =
        File::create(&chunks_path).map_err(io(format!("create {}", chunks_path.display())))?;
    let mut header = MAGIC_CHUNKS.to_vec();
    header.push(FORMAT_VERSION as u8);
    let mut writer = ChunkWriter::new(&header);
    let mut entries: Vec<SeriesEntry> = Vec::new();
    let (mut min_t, mut max_t) = (spec.min_t, spec.max_t);
    let (mut num_samples, mut num_chunks) = (0u64, 0u64);
    for s in series {
        let SeriesSamples {
            labels,
            mut samples,
            ..
        } = s?;
        if !samples.windows(2).all(|w| w[0].t < w[1].t) {
            samples.sort_by_key(|s| s.t);
            samples.dedup_by_key(|s| s.t);
        }
        let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
            continue;
        };
        min_t = min_t.min(first.t);
        max_t = max_t.max(last.t.saturating_add(1));
        let mut metas = Vec::with_capacity(samples.len().div_ceil(CHUNK_SAMPLES));
        for part in samples.chunks(CHUNK_SAMPLES) {
            let added = writer.add(part);
            metas.push(ChunkMeta {
                min_t: part[0].t,
                max_t: part[part.len() - 1].t,
                r: added.r,
                col: added.column,
            });
            num_chunks += 1;
        }
        num_samples += samples.len() as u64;
        entries.push(SeriesEntry {
            labels,
            chunks: metas,
        });
        if writer.buffered() >= 1 << 20 {
            chunks_file
                .write_all(&writer.take())
                .map_err(io(format!("write {}", chunks_path.display())))?;
        }
    }
    chunks_file
        .write_all(&writer.take())
        .and_then(|_| chunks_file.sync_all())
        .map_err(io(format!("write {}", chunks_path.display())))?;
    if entries.is_empty() {
        return Ok(None);
    }
    if !entries.windows(2).all(|w| w[0].labels < w[1].labels) {
        entries.sort_by(|a, b| a.labels.cmp(&b.labels));
        let mut merged: Vec<SeriesEntry> = Vec::with_capacity(entries.len());
        for e in entries {
            match merged.last_mut() {
                Some(m) if m.labels == e.labels => {
                    m.chunks.extend(e.chunks);
                    m.chunks.sort_by_key(|c| c.min_t);
                }
                _ => merged.push(e),
            }
        }
        entries = merged;
    }
    let index = build_index(&entries, writer.columns(), FORMAT_VERSION as u8);
    write_file(&tmp.join(INDEX_FILE), &index)?;
    let meta = BlockMeta {
        id: id.to_string(),
        tenant: spec.tenant.to_string(),
        min_t,
        max_t,
        num_series: entries.len() as u64,
        num_samples,
        num_chunks,
        level: spec.level,
        sources: if spec.sources.is_empty() {
            vec![id.to_string()]
        } else {
            spec.sources
        },
        version: FORMAT_VERSION,
    };
    let json = serde_json::to_vec_pretty(&meta).expect("meta serializes");
    write_file(&tmp.join(META_FILE), &json)?;
    fsync_dir(tmp)?;
    Ok(Some((meta, spec.tenant_dir.join(id))))
}

fn write_file(path: &Path, data: &[u8]) -> Result<(), StorageError> {
    let mut f = File::create(path).map_err(io(format!("create {}", path.display())))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(io(format!("write {}", path.display())))
}

/// File contents kept for the life of a block: memory-mapped.
struct Mapped(memmap2::Mmap);

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

fn map(path: &Path) -> Result<memmap2::Mmap, StorageError> {
    let f = File::open(path).map_err(io(format!("open {}", path.display())))?;
    // SAFETY: block files are immutable once their directory is renamed into
    // place; they are only ever deleted (never truncated or rewritten), and a
    // deleted file stays mapped until the last reader drops the block.
    unsafe { memmap2::Mmap::map(&f) }.map_err(io(format!("mmap {}", path.display())))
}

/// An opened, verified block.
pub(crate) struct Block {
    pub(crate) meta: BlockMeta,
    pub(crate) dir: PathBuf,
    pub(crate) index: IndexReader,
    chunks: memmap2::Mmap,
    chunks_path: PathBuf,
    /// Bytes of the block's files.
    pub(crate) bytes: u64,
}

impl Block {
    /// Opens `dir`, verifying the meta, the index checksums and the chunks
    /// header. Any problem is a `Corrupt` error naming the file.
    pub(crate) fn open(dir: &Path) -> Result<Block, StorageError> {
        let meta_path = dir.join(META_FILE);
        let raw = fs::read(&meta_path).map_err(io(format!("read {}", meta_path.display())))?;
        let meta: BlockMeta =
            serde_json::from_slice(&raw).map_err(|e| corrupt(&meta_path, e.to_string()))?;
        if meta.version == 0 || meta.version > FORMAT_VERSION {
            return Err(corrupt(
                &meta_path,
                format!("unsupported block version {}", meta.version),
            ));
        }
        if dir.file_name().and_then(|n| n.to_str()) != Some(meta.id.as_str()) {
            return Err(corrupt(
                &meta_path,
                format!("id {:?} does not match the directory", meta.id),
            ));
        }
        if meta.min_t >= meta.max_t {
            return Err(corrupt(&meta_path, "empty time range"));
        }
        let index_path = dir.join(INDEX_FILE);
        let index_map = map(&index_path)?;
        let mut bytes = raw.len() as u64 + index_map.len() as u64;
        let index = IndexReader::open(Box::new(Mapped(index_map)), FORMAT_VERSION as u8)
            .map_err(|r| corrupt(&index_path, r))?;
        if u64::from(index.num_series()) != meta.num_series {
            return Err(corrupt(&index_path, "series count differs from meta.json"));
        }
        let chunks_path = dir.join(CHUNKS_FILE);
        let chunks = map(&chunks_path)?;
        if chunks.len() < 5
            || &chunks[..4] != MAGIC_CHUNKS
            || chunks[4] == 0
            || u32::from(chunks[4]) > FORMAT_VERSION
        {
            return Err(corrupt(&chunks_path, "bad magic or version"));
        }
        bytes += chunks.len() as u64;
        Ok(Block {
            meta,
            dir: dir.to_path_buf(),
            index,
            chunks,
            chunks_path,
            bytes,
        })
    }

    /// True when the block may hold samples in `[mint, maxt]`.
    pub(crate) fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.meta.min_t <= maxt && self.meta.max_t > mint
    }

    pub(crate) fn corrupt_index(&self, reason: String) -> StorageError {
        corrupt(&self.dir.join(INDEX_FILE), reason)
    }

    /// Labels and chunk metas of series `id`.
    pub(crate) fn series(&self, id: u32) -> Result<SeriesEntry, StorageError> {
        self.index.series(id).map_err(|r| self.corrupt_index(r))
    }

    /// Samples of `chunks` inside `[mint, maxt]`, decoding only overlapping chunks.
    pub(crate) fn samples(
        &self,
        chunks: &[ChunkMeta],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Sample>, StorageError> {
        let mut out = Vec::new();
        BlockReader::new(self).append(chunks, mint, maxt, &mut out)?;
        Ok(out)
    }

    /// True when series chunks hold a sample in `[mint, maxt]` (decodes only
    /// chunks that straddle a bound).
    pub(crate) fn has_samples(
        &self,
        chunks: &[ChunkMeta],
        mint: i64,
        maxt: i64,
    ) -> Result<bool, StorageError> {
        if chunks.iter().any(|c| c.min_t >= mint && c.max_t <= maxt) {
            return Ok(true);
        }
        let straddling: Vec<ChunkMeta> = chunks
            .iter()
            .copied()
            .filter(|c| c.max_t >= mint && c.min_t <= maxt)
            .collect();
        Ok(!straddling.is_empty() && !self.samples(&straddling, mint, maxt)?.is_empty())
    }

    /// Every series of the block with all its samples, in label order.
    pub(crate) fn all_series(
        &self,
    ) -> impl Iterator<Item = Result<(Labels, Vec<Sample>), StorageError>> + '_ {
        (0..self.index.num_series()).map(move |id| {
            let e = self.series(id)?;
            let samples = self.samples(&e.chunks, i64::MIN, i64::MAX)?;
            Ok((e.labels, samples))
        })
    }
}

/// Reads series samples of one block, decoding each timestamp column once
/// for every series that names it (a scrape target's series share their
/// timestamps) and chunks straight into the caller's sample vector.
pub(crate) struct BlockReader<'a> {
    block: &'a Block,
    /// Decoded timestamp columns by ordinal (version 6).
    times: HashMap<u32, Vec<i64>>,
}

impl<'a> BlockReader<'a> {
    pub(crate) fn new(block: &'a Block) -> BlockReader<'a> {
        BlockReader {
            block,
            times: HashMap::new(),
        }
    }

    /// Appends the samples of `chunks` inside `[mint, maxt]` to `out`,
    /// decoding only overlapping chunks; what it appends is sorted with
    /// unique timestamps (the first one kept).
    pub(crate) fn append(
        &mut self,
        chunks: &[ChunkMeta],
        mint: i64,
        maxt: i64,
        out: &mut Vec<Sample>,
    ) -> Result<(), StorageError> {
        let b = self.block;
        let start = out.len();
        let bad_chunks = |r: String| corrupt(&b.chunks_path, r);
        for c in chunks.iter().filter(|c| c.max_t >= mint && c.min_t <= maxt) {
            if b.chunks[4] < PAGED_VERSION {
                let samples = read_chunk(&b.chunks, c.r).map_err(bad_chunks)?;
                out.extend(samples.into_iter().filter(|s| s.t >= mint && s.t <= maxt));
                continue;
            }
            let times = match c.col {
                Some(k) => Some(match self.times.entry(k) {
                    Entry::Occupied(e) => e.into_mut(),
                    Entry::Vacant(v) => {
                        let r = b
                            .index
                            .column_ref(k)
                            .ok_or_else(|| b.corrupt_index(format!("no timestamp column {k}")))?;
                        v.insert(read_times_paged(&b.chunks, r).map_err(bad_chunks)?)
                    }
                }),
                None => None,
            };
            append_chunk_paged(&b.chunks, c.r, times.map(|t| &t[..]), mint, maxt, out)
                .map_err(bad_chunks)?;
        }
        if !out[start..].windows(2).all(|w| w[0].t < w[1].t) {
            let mut part = out.split_off(start);
            part.sort_by_key(|s| s.t);
            part.dedup_by_key(|s| s.t);
            out.extend(part);
        }
        Ok(())
    }
}
