//! Immutable segments: what a head becomes once cut.
//!
//! A segment is a directory `<tenant>/<ULID>/` with two files:
//! - `data`: `STRLOGDT | version u32` then blocks. A block holds up to
//!   `block_bytes` of one stream's entries and decodes on its own (so
//!   reading one line reads one block). Version 4, 3 and 2 blocks are the
//!   columnar templates-and-variables encoding of `block.rs` (since version
//!   3 line templates shared by the segment, in its index; version 4 adds
//!   packed and dictionary integer columns); version 1 blocks
//!   (still read) are one zstd frame of: entry count, the timestamp column
//!   (first value, then deltas), the lines, then the structured metadata of
//!   each entry.
//! - `index`: `STRLOGIX | version u32 | body | CRC32C(body)`. The body holds
//!   the WAL position the segment covers, its time range, per stream the
//!   labels, range, counts and block references (offset, length, CRC32C of
//!   the compressed bytes, range, raw size, token filter), and the stream
//!   postings: per label pair a roaring bitmap of stream ids; since version
//!   3 then the segment's line templates (zstd). Since index version 5 a
//!   block's token filter may be empty: the segment was written with a
//!   full-text index that answers for its blocks; the filters are written
//!   when it turns warm (`filters.rs`).
//!
//! Written into `.tmp-<id>`, fsynced and renamed, so a crash leaves either a
//! complete segment or a temporary directory that `open` removes.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use roaring::RoaringBitmap;

use super::block;
use super::codec::{put_bytes, put_labels, put_uvarint, put_varint, Reader};
use super::filters::WarmFilters;
use super::fulltext::{self, FullText};
use super::head::{entry_bytes, Head};
use super::tokens::{Needle, TokenFilter};
use crate::logs::{LineHint, LogEntry, LogStats, Stream};
use crate::model::{Labels, MatchOp, Matcher};
use crate::storage::tsdb::block::dir::{corrupt, fsync_dir, io, new_block_id, TMP_PREFIX};
use crate::storage::StorageError;

const DATA_MAGIC: &[u8; 8] = b"STRLOGDT";
const INDEX_MAGIC: &[u8; 8] = b"STRLOGIX";
/// Format version written by this code (1 is still read).
pub const FORMAT_VERSION: u32 = 4;
/// Version of the index file written by this code (it follows
/// [`FORMAT_VERSION`] up to 4; 1 is still read).
const INDEX_VERSION: u32 = 5;
const DATA_FILE: &str = "data";
const INDEX_FILE: &str = "index";

/// Where one block lives and what it holds.
#[derive(Debug, Clone)]
pub(crate) struct BlockRef {
    offset: u64,
    len: u64,
    crc: u32,
    pub min_ts: i64,
    pub max_ts: i64,
    pub entries: u64,
    /// Line bytes.
    pub bytes: u64,
    /// Size of the decompressed block.
    raw_len: u64,
    /// `None`: written without one (see [`Segment::filter`]).
    filter: Option<TokenFilter>,
}

/// One stream of a segment.
#[derive(Debug, Clone)]
pub(crate) struct SegStream {
    pub labels: Labels,
    pub min_ts: i64,
    pub max_ts: i64,
    pub blocks: Vec<BlockRef>,
    /// Number of this stream's first block in the segment.
    pub first_block: u32,
    /// Each block starts at or after the previous one's end (as written).
    time_ordered: bool,
}

/// An open segment: its index in memory, its data file open.
pub(crate) struct Segment {
    pub dir: PathBuf,
    /// WAL records in segments before this index are all in this segment
    /// or older ones (replay skips them).
    pub wal_upto: u64,
    pub min_ts: i64,
    pub max_ts: i64,
    pub streams: Vec<SegStream>,
    postings: BTreeMap<(String, String), RoaringBitmap>,
    data: File,
    /// Format version of the data file.
    version: u32,
    /// Line templates of format 3 blocks.
    templates: block::Templates,
    /// Bytes of both files.
    pub disk_bytes: u64,
    /// Bytes of the index file per part.
    index_sizes: IndexSizes,
    /// The full-text index while the segment is hot (`fulltext.rs`).
    pub(super) fulltext: RwLock<Option<Arc<FullText>>>,
    /// Token filters written when the segment turned warm, for blocks
    /// written without one (`filters.rs`).
    pub(super) warm_filters: RwLock<Option<Arc<WarmFilters>>>,
}

/// Bytes of an index file per part.
#[derive(Debug, Default, Clone, Copy)]
struct IndexSizes {
    labels: u64,
    block_refs: u64,
    filters: u64,
    postings: u64,
    templates: u64,
    other: u64,
}

/// Where the bytes of segments go, from [`crate::storage::logs::LogStore::disk_breakdown`].
#[derive(Debug, Default, Clone)]
pub struct DiskBreakdown {
    /// Segments covered.
    pub segments: u64,
    /// Blocks covered.
    pub blocks: u64,
    /// Entries covered.
    pub entries: u64,
    /// Line bytes covered.
    pub line_bytes: u64,
    /// Bytes per part, named `data: <column>` or `index: <part>`.
    pub parts: BTreeMap<String, u64>,
    /// Line templates of the segments (format 3).
    pub templates: u64,
    /// Bits of all token filters.
    pub filter_bits: u64,
    /// Distinct tokens the filters hold, estimated from their fill.
    pub filter_tokens: f64,
    /// Probes of absent tokens, and how many a filter answered "maybe".
    pub filter_probes: u64,
    /// See `filter_probes`.
    pub filter_false_positives: u64,
    /// Rare tokens in the full-text indexes' rare-token functions.
    pub rare_tokens: u64,
}

/// Decodes a format 1 block (after decompression).
fn decode_block_v1(raw: &[u8]) -> Result<Vec<LogEntry>, String> {
    let mut r = Reader::new(raw);
    let n = r.len("entry count")?;
    let mut ts = Vec::with_capacity(n);
    let mut prev = 0i64;
    for _ in 0..n {
        prev = prev.wrapping_add(r.varint("timestamp")?);
        ts.push(prev);
    }
    let mut lines = Vec::with_capacity(n);
    for _ in 0..n {
        lines.push(r.string("line")?);
    }
    let mut out = Vec::with_capacity(n);
    for (ts, line) in ts.into_iter().zip(lines) {
        out.push(LogEntry {
            ts,
            line,
            metadata: r.labels("structured metadata")?,
        });
    }
    Ok(out)
}

/// Writes the head as a segment under `tenant_dir`, durably, and opens it.
/// `None` when the head is empty.
pub(crate) fn write(
    tenant_dir: &Path,
    head: &Head,
    wal_upto: u64,
    block_bytes: usize,
    zstd_level: i32,
    fulltext: Option<fulltext::Settings>,
) -> Result<Option<Segment>, StorageError> {
    if head.entries == 0 {
        return Ok(None);
    }
    let id = new_block_id();
    fs::create_dir_all(tenant_dir).map_err(io(format!("create {}", tenant_dir.display())))?;
    let tmp = tenant_dir.join(format!("{TMP_PREFIX}{id}"));
    fs::create_dir(&tmp).map_err(io(format!("create {}", tmp.display())))?;
    let res = write_files(&tmp, head, wal_upto, block_bytes, zstd_level, fulltext);
    if let Err(e) = res {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let dir = tenant_dir.join(&id);
    fs::rename(&tmp, &dir).map_err(io(format!("rename {}", tmp.display())))?;
    fsync_dir(tenant_dir)?;
    Segment::open(&dir).map(Some)
}

fn write_files(
    tmp: &Path,
    head: &Head,
    wal_upto: u64,
    block_bytes: usize,
    zstd_level: i32,
    fulltext: Option<fulltext::Settings>,
) -> Result<(), StorageError> {
    let data_path = tmp.join(DATA_FILE);
    let mut data =
        File::create(&data_path).map_err(io(format!("create {}", data_path.display())))?;
    let mut header = DATA_MAGIC.to_vec();
    header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    let mut offset = header.len() as u64;
    data.write_all(&header)
        .map_err(io(format!("write {}", data_path.display())))?;
    let mut streams: Vec<(&Labels, &Vec<LogEntry>)> = head
        .streams
        .iter()
        .filter(|(_, es)| !es.is_empty())
        .collect();
    streams.sort_by(|a, b| a.0.cmp(b.0));
    let mut zstd =
        zstd::bulk::Compressor::new(zstd_level).map_err(io(format!("zstd level {zstd_level}")))?;
    let mut templates = block::Templates::default();
    let mut body = Vec::new();
    put_uvarint(&mut body, wal_upto);
    let min = streams.iter().map(|s| s.1[0].ts).min().unwrap_or(0);
    let max = streams
        .iter()
        .map(|s| s.1[s.1.len() - 1].ts)
        .max()
        .unwrap_or(0);
    put_varint(&mut body, min);
    put_varint(&mut body, max);
    put_uvarint(&mut body, streams.len() as u64);
    let mut postings: BTreeMap<(&str, &str), RoaringBitmap> = BTreeMap::new();
    let mut fulltext = fulltext::Builder::new(fulltext);
    for (id, (labels, entries)) in streams.iter().enumerate() {
        for l in labels.iter() {
            postings
                .entry((l.name.as_str(), l.value.as_str()))
                .or_default()
                .insert(id as u32);
        }
        put_labels(&mut body, labels);
        put_varint(&mut body, entries[0].ts);
        put_varint(&mut body, entries[entries.len() - 1].ts);
        let parts = split_blocks(entries, block_bytes);
        put_uvarint(&mut body, parts.len() as u64);
        for part in parts {
            let (packed, raw_len) = block::encode(part, &mut templates, &mut zstd)
                .map_err(io(format!("compress a block of {}", data_path.display())))?;
            data.write_all(&packed)
                .map_err(io(format!("write {}", data_path.display())))?;
            put_uvarint(&mut body, offset);
            put_uvarint(&mut body, packed.len() as u64);
            put_uvarint(&mut body, u64::from(crc32c::crc32c(&packed)));
            put_varint(&mut body, part[0].ts);
            put_varint(&mut body, part[part.len() - 1].ts);
            put_uvarint(&mut body, part.len() as u64);
            put_uvarint(
                &mut body,
                part.iter().map(|e| e.line.len() as u64).sum::<u64>(),
            );
            put_uvarint(&mut body, raw_len);
            let filter = fulltext.add_block(part);
            put_bytes(&mut body, &filter.map_or_else(Vec::new, |f| f.to_bytes()));
            offset += packed.len() as u64;
        }
    }
    put_uvarint(&mut body, postings.len() as u64);
    for ((name, value), bm) in &postings {
        put_bytes(&mut body, name.as_bytes());
        put_bytes(&mut body, value.as_bytes());
        let mut b = Vec::with_capacity(bm.serialized_size());
        bm.serialize_into(&mut b)
            .map_err(io("serialize postings".to_string()))?;
        put_bytes(&mut body, &b);
    }
    let packed = templates
        .to_bytes(&mut zstd)
        .map_err(io("compress line templates".to_string()))?;
    put_bytes(&mut body, &packed);
    data.sync_all()
        .map_err(io(format!("fsync {}", data_path.display())))?;
    fulltext.write(tmp)?;
    let index_path = tmp.join(INDEX_FILE);
    let mut index = INDEX_MAGIC.to_vec();
    index.extend_from_slice(&INDEX_VERSION.to_le_bytes());
    index.extend_from_slice(&body);
    index.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    let mut f =
        File::create(&index_path).map_err(io(format!("create {}", index_path.display())))?;
    f.write_all(&index)
        .and_then(|_| f.sync_all())
        .map_err(io(format!("write {}", index_path.display())))?;
    fsync_dir(tmp)
}

/// Cuts a stream's entries into runs of about `block_bytes` of entry bytes.
fn split_blocks(entries: &[LogEntry], block_bytes: usize) -> Vec<&[LogEntry]> {
    let mut out = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, e) in entries.iter().enumerate() {
        size += entry_bytes(e) + 8;
        if size >= block_bytes {
            out.push(&entries[start..=i]);
            (start, size) = (i + 1, 0);
        }
    }
    if start < entries.len() {
        out.push(&entries[start..]);
    }
    out
}

/// Checks magic and version (at most `newest`); returns the version.
fn check_header(buf: &[u8], magic: &[u8; 8], newest: u32) -> Result<u32, String> {
    if buf.len() < 12 || &buf[..8] != magic {
        return Err("bad magic".into());
    }
    let v = u32::from_le_bytes(buf[8..12].try_into().expect("4 bytes"));
    if !(1..=newest).contains(&v) {
        return Err(format!("unsupported format version {v}"));
    }
    Ok(v)
}

impl Segment {
    /// Opens a segment directory: reads and checks its index, opens its data.
    pub(crate) fn open(dir: &Path) -> Result<Segment, StorageError> {
        let index_path = dir.join(INDEX_FILE);
        let buf = fs::read(&index_path).map_err(io(format!("read {}", index_path.display())))?;
        let bad = |r: String| corrupt(&index_path, r);
        let index_version = check_header(&buf, INDEX_MAGIC, INDEX_VERSION).map_err(bad)?;
        if buf.len() < 16 {
            return Err(bad("truncated".into()));
        }
        let (body, crc) = buf[12..].split_at(buf.len() - 16);
        if crc32c::crc32c(body).to_le_bytes() != crc {
            return Err(bad("checksum mismatch".into()));
        }
        let (wal_upto, min_ts, max_ts, streams, postings, templates, mut index_sizes) =
            parse_index(body, index_version).map_err(bad)?;
        index_sizes.other = buf.len() as u64
            - index_sizes.labels
            - index_sizes.block_refs
            - index_sizes.filters
            - index_sizes.postings
            - index_sizes.templates;
        let data_path = dir.join(DATA_FILE);
        let data = File::open(&data_path).map_err(io(format!("open {}", data_path.display())))?;
        let mut head = [0u8; 12];
        data.read_exact_at(&mut head, 0)
            .map_err(io(format!("read {}", data_path.display())))?;
        let version =
            check_header(&head, DATA_MAGIC, FORMAT_VERSION).map_err(|r| corrupt(&data_path, r))?;
        let data_len = data
            .metadata()
            .map_err(io(format!("stat {}", data_path.display())))?
            .len();
        let blocks = streams.iter().map(|s| s.blocks.len() as u32).sum();
        Ok(Segment {
            fulltext: RwLock::new(fulltext::open(dir, blocks)),
            warm_filters: RwLock::new(super::filters::open(dir, blocks)),
            dir: dir.to_path_buf(),
            wal_upto,
            min_ts,
            max_ts,
            streams,
            postings,
            data,
            version,
            templates,
            disk_bytes: data_len + buf.len() as u64,
            index_sizes,
        })
    }

    /// Ids of streams matching every matcher: equality matchers through
    /// the postings, the rest checked on the candidates' labels.
    fn matching(&self, matchers: &[Matcher]) -> Vec<usize> {
        let mut cand: Option<RoaringBitmap> = None;
        for m in matchers {
            if m.op == MatchOp::Equal && !m.value.is_empty() {
                let key = (m.name.clone(), m.value.clone());
                let p = self.postings.get(&key).cloned().unwrap_or_default();
                cand = Some(match cand {
                    Some(c) => c & p,
                    None => p,
                });
            }
        }
        let ids: Box<dyn Iterator<Item = usize>> = match cand {
            Some(c) => Box::new(c.into_iter().map(|i| i as usize)),
            None => Box::new(0..self.streams.len()),
        };
        ids.filter(|&i| {
            self.streams
                .get(i)
                .is_some_and(|s| crate::storage::matches_all(&s.labels, matchers))
        })
        .collect()
    }

    /// Streams matching the matchers with entries in `[start, end)`.
    pub(crate) fn stream_refs(
        &self,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> impl Iterator<Item = &SegStream> {
        self.matching(matchers)
            .into_iter()
            .map(|i| &self.streams[i])
            .filter(move |s| s.max_ts >= start && s.min_ts < end)
    }

    /// Adds the index statistics of matching streams in the range.
    pub(crate) fn add_stats(&self, matchers: &[Matcher], start: i64, end: i64, st: &mut LogStats) {
        for s in self.stream_refs(matchers, start, end) {
            st.streams += 1;
            for b in s
                .blocks
                .iter()
                .filter(|b| b.max_ts >= start && b.min_ts < end)
            {
                st.chunks += 1;
                st.entries += b.entries;
                st.bytes += b.bytes;
            }
        }
    }

    /// Matching streams with their entries in `[start, end)` that pass the
    /// hint. Blocks whose token filter rules a needle out are not read;
    /// `blocks_read` counts those that are.
    pub(crate) fn select(
        &self,
        matchers: &[Matcher],
        start: i64,
        end: i64,
        hint: &LineHint,
        blocks_read: &mut u64,
    ) -> Result<Vec<Stream>, StorageError> {
        let needles: Vec<Needle> = hint.must_contain.iter().map(|h| Needle::of(h)).collect();
        // The index before the warm filters: a segment turning warm gets
        // its filters before it loses its index.
        let plan = fulltext::Plan::new(self.fulltext.read().clone(), &needles);
        let warm = self.warm_filters.read().clone();
        let mut out = Vec::new();
        for s in self.stream_refs(matchers, start, end) {
            let mut entries = Vec::new();
            // Blocks are in time order (written from sorted heads): skip to
            // the first that can overlap instead of checking them all.
            let from = match s.time_ordered {
                true => s.blocks.partition_point(|b| b.max_ts < start),
                false => 0,
            };
            let refs = s.blocks[from..].iter().zip(s.first_block + from as u32..);
            for (b, no) in refs {
                if b.min_ts >= end && s.time_ordered {
                    break;
                }
                let filter = Segment::filter(b, no, warm.as_deref());
                if b.max_ts < start || b.min_ts >= end || !plan.admits(no, filter) {
                    continue;
                }
                *blocks_read += 1;
                entries.extend(
                    self.read_block(b, hint)?
                        .into_iter()
                        .filter(|e| e.ts >= start && e.ts < end && hint.accepts(&e.line)),
                );
            }
            if !entries.is_empty() {
                out.push(Stream {
                    labels: s.labels.clone(),
                    entries,
                });
            }
        }
        Ok(out)
    }

    /// The token filter of block `b` (number `no` in the segment): its own,
    /// else the one written when the segment turned warm; `None` when it
    /// has neither (the full-text index answers for it, or nothing does).
    pub(super) fn filter<'a>(
        b: &'a BlockRef,
        no: u32,
        warm: Option<&'a WarmFilters>,
    ) -> Option<&'a TokenFilter> {
        b.filter
            .as_ref()
            .or_else(|| warm.and_then(|w| w.filters.get(no as usize)))
    }

    /// True when some block was written without a token filter.
    pub(super) fn lacks_filters(&self) -> bool {
        self.streams
            .iter()
            .flat_map(|s| &s.blocks)
            .any(|b| b.filter.is_none())
    }

    /// Reads and checks the stored bytes of a block.
    fn block_bytes(&self, b: &BlockRef) -> Result<Vec<u8>, StorageError> {
        let path = self.dir.join(DATA_FILE);
        let mut buf = vec![0u8; b.len as usize];
        self.data
            .read_exact_at(&mut buf, b.offset)
            .map_err(io(format!("read {} at {}", path.display(), b.offset)))?;
        if crc32c::crc32c(&buf) != b.crc {
            return Err(self.bad_block(b, "checksum mismatch".into()));
        }
        Ok(buf)
    }

    fn bad_block(&self, b: &BlockRef, r: String) -> StorageError {
        corrupt(
            &self.dir.join(DATA_FILE),
            format!("block at {}: {r}", b.offset),
        )
    }

    /// Reads, checks and decodes a block: of formats 2 and later only the
    /// entries that pass the hint, with as much of each line as it needs.
    pub(super) fn read_block(
        &self,
        b: &BlockRef,
        hint: &LineHint,
    ) -> Result<Vec<LogEntry>, StorageError> {
        let buf = self.block_bytes(b)?;
        let bad = |r: String| self.bad_block(b, r);
        if self.version >= 2 {
            let got = block::decode(
                &buf,
                self.version,
                &self.templates,
                &hint.must_contain,
                hint.need,
            );
            return got.map_err(bad);
        }
        let raw =
            zstd::bulk::decompress(&buf, b.raw_len as usize).map_err(|e| bad(e.to_string()))?;
        let found = |h: &String| memchr::memmem::find(&raw, h.as_bytes()).is_some();
        if !hint.must_contain.iter().all(found) {
            return Ok(Vec::new());
        }
        decode_block_v1(&raw).map_err(bad)
    }

    /// Adds where this segment's bytes go: the data file per column (read
    /// from the block headers), the index file per part, and the token
    /// filters' size, fill and false-positive rate on absent tokens.
    pub(crate) fn breakdown(&self, out: &mut DiskBreakdown) -> Result<(), StorageError> {
        out.segments += 1;
        out.templates += self.templates.len() as u64;
        let mut add = |k: &str, v: u64| *out.parts.entry(k.to_string()).or_default() += v;
        let ix = self.index_sizes;
        add("index: stream labels", ix.labels);
        add("index: block references", ix.block_refs);
        add("index: token filters", ix.filters);
        add("index: stream postings", ix.postings);
        add("index: line templates", ix.templates);
        add("index: header, ranges, checksum", ix.other);
        out.rare_tokens += self.add_fulltext_parts(&mut add);
        let mut data_blocks = 0u64;
        for b in self.streams.iter().flat_map(|s| &s.blocks) {
            data_blocks += b.len;
            if self.version >= 2 {
                let buf = self.block_bytes(b)?;
                for (name, n) in block::column_sizes(&buf).map_err(|r| self.bad_block(b, r))? {
                    add(&format!("data: {name}"), n);
                }
            } else {
                add("data: format 1 blocks", b.len);
            }
        }
        let data_len = self
            .data
            .metadata()
            .map_err(io(format!("stat {}", self.dir.display())))?
            .len();
        add("data: header", data_len.saturating_sub(data_blocks));
        let warm = self.warm_filters.read().clone();
        if let Some(w) = &warm {
            add("filters (warm): token filters", w.file_bytes);
        }
        for (b, no) in self.streams.iter().flat_map(|s| &s.blocks).zip(0..) {
            out.blocks += 1;
            out.entries += b.entries;
            out.line_bytes += b.bytes;
            let Some(filter) = Segment::filter(b, no, warm.as_deref()) else {
                continue;
            };
            let (bits, tokens) = filter.fill();
            out.filter_bits += bits;
            out.filter_tokens += tokens;
            for i in 0..64 {
                out.filter_probes += 1;
                let probe = format!("absentprobe{}x{i}", out.blocks);
                out.filter_false_positives += u64::from(filter.may_contain(&probe));
            }
        }
        Ok(())
    }
}

type ParsedIndex = (
    u64,
    i64,
    i64,
    Vec<SegStream>,
    BTreeMap<(String, String), RoaringBitmap>,
    block::Templates,
    IndexSizes,
);

fn parse_index(body: &[u8], version: u32) -> Result<ParsedIndex, String> {
    let mut r = Reader::new(body);
    let wal_upto = r.u64("wal position")?;
    let min_ts = r.varint("min time")?;
    let max_ts = r.varint("max time")?;
    let n = r.len("stream count")?;
    let mut sizes = IndexSizes::default();
    let mut streams = Vec::with_capacity(n);
    let mut first_block = 0u32;
    for _ in 0..n {
        let at = r.pos();
        let labels = r.labels("stream labels")?;
        sizes.labels += (r.pos() - at) as u64;
        let (smin, smax) = (r.varint("stream min time")?, r.varint("stream max time")?);
        let nb = r.len("block count")?;
        let first = first_block;
        first_block = first_block.saturating_add(nb as u32);
        let mut blocks = Vec::with_capacity(nb);
        for _ in 0..nb {
            let at = r.pos();
            blocks.push(BlockRef {
                offset: r.u64("block offset")?,
                len: r.u64("block length")?,
                crc: r.u64("block checksum")? as u32,
                min_ts: r.varint("block min time")?,
                max_ts: r.varint("block max time")?,
                entries: r.u64("block entries")?,
                bytes: r.u64("block bytes")?,
                raw_len: r.u64("block raw length")?,
                filter: {
                    let f = r.bytes("token filter")?;
                    sizes.filters += f.len() as u64;
                    match f.is_empty() && version >= 5 {
                        true => None,
                        false => Some(TokenFilter::from_bytes(f)?),
                    }
                },
            });
            sizes.block_refs += (r.pos() - at) as u64;
        }
        streams.push(SegStream {
            labels,
            min_ts: smin,
            max_ts: smax,
            first_block: first,
            time_ordered: blocks.windows(2).all(|w| w[0].max_ts <= w[1].min_ts),
            blocks,
        });
    }
    let postings_at = r.pos();
    let np = r.len("postings count")?;
    let mut postings = BTreeMap::new();
    for _ in 0..np {
        let name = r.string("postings name")?;
        let value = r.string("postings value")?;
        let bm = RoaringBitmap::deserialize_from(r.bytes("postings")?)
            .map_err(|e| format!("postings of {name}={value}: {e}"))?;
        if bm.max().is_some_and(|m| m as usize >= streams.len()) {
            return Err(format!("postings of {name}={value} name a missing stream"));
        }
        postings.insert((name, value), bm);
    }
    sizes.postings = (r.pos() - postings_at) as u64;
    let templates = if version >= 3 {
        let at = r.pos();
        let t = block::Templates::from_bytes(r.bytes("line templates")?)?;
        sizes.templates = (r.pos() - at) as u64;
        t
    } else {
        block::Templates::default()
    };
    if !r.is_empty() {
        return Err("trailing bytes in the index".into());
    }
    sizes.block_refs -= sizes.filters;
    Ok((
        wal_upto, min_ts, max_ts, streams, postings, templates, sizes,
    ))
}
