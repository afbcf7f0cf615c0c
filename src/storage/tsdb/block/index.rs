//! The `index` file of a block.
//!
//! Layout (format version 1, integers big-endian, varints LEB128):
//! ```text
//! "STIX" | version u8
//! symbols:  uvarint count, then per symbol uvarint len + UTF-8 bytes, sorted
//! series:   uvarint count, then per series (sorted by labels; its ordinal is
//!           its id): uvarint nlabels, (uvarint name ref, uvarint value ref)*,
//!           uvarint nchunks, chunk metas (first: varint min_t; later: varint
//!           min_t - previous max_t; then uvarint max_t - min_t and varint
//!           chunk ref delta)
//!           Version 3 encodes each series against the one before it (sorted
//!           neighbours share most labels, timestamps and chunk positions),
//!           restarting every [`RESTART`] series so a lookup decodes at most
//!           that many: uvarint nlabels, uvarint labels shared with the
//!           previous series' leading labels, the other labels' refs, uvarint
//!           nchunks, then the first chunk as varint min_t - previous series'
//!           first min_t, varint span - previous first span, varint ref -
//!           previous series' last chunk ref, later chunks as above. At a
//!           restart the previous series counts as empty (all zeros), which is
//!           the absolute form.
//!           Version 4 replaces the label part: uvarint `nlabels << 1 |
//!           same_names`; when `same_names` (the previous series has labels
//!           of the same names in the same order, at most [`MAX_MASKED`]) a
//!           uvarint bit mask of the positions whose value differs follows,
//!           then per set bit the varint difference of its value ref to the
//!           previous one (sorted neighbours' values are close symbols);
//!           otherwise the version 3 form (uvarint shared, the other refs).
//!           Version 6 starts the section with the table of timestamp
//!           columns of the chunks file (uvarint count, then per column
//!           varint first timestamp - previous column's, uvarint last - first,
//!           uvarint reference - previous column's) and starts every chunk
//!           meta with a uvarint: `zigzag(column - previous column) << 1 | 1`
//!           for a chunk over a column (its times are the column's; the
//!           previous column is the last one named since the restart point),
//!           else 0 followed by the version 4 times. The chunk reference
//!           follows either way.
//! terms:    uvarint count, then per (name, value) term sorted by name then
//!           value: uvarint name ref, uvarint value ref, uvarint postings
//!           offset, uvarint postings length (the term dictionary: symbols are
//!           sorted, so ref order is string order and prefixes are ranges)
//! postings: serialized roaring bitmaps of series ids, one per term
//! TOC:      per section (symbols, series, terms, postings): u64 offset,
//!           u64 length, u32 CRC32C; then u32 CRC32C of the TOC; "STIX"
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};

use roaring::RoaringBitmap;

use crate::model::{Label, Labels};

use super::chunks::Column;
use super::format::{put_uvarint, put_varint, unzigzag, zigzag, Decoder};

/// Magic at both ends of an `index` file.
pub(crate) const MAGIC_INDEX: &[u8; 4] = b"STIX";
const SECTIONS: usize = 4;
/// Series per restart point of a version 3 series section.
pub(crate) const RESTART: usize = 16;
/// First version with delta-encoded series.
const DELTA_VERSION: u8 = 3;
/// First version with masked label values (same names as the previous series).
const MASK_VERSION: u8 = 4;
/// Most labels a masked series entry may have (bits of its mask).
const MAX_MASKED: usize = 63;
/// First version with a table of timestamp columns.
const COLUMN_VERSION: u8 = 6;

/// What a series is encoded against: the one before it (zeros at a restart).
#[derive(Default, Clone)]
struct Prev {
    labels: Vec<(u64, u64)>,
    first_min: i64,
    first_span: i64,
    last_ref: u64,
    /// Last timestamp column named.
    col: u32,
}
const TOC_LEN: usize = SECTIONS * 20 + 4 + 4;

/// Where one chunk of a series lives and what it covers (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkMeta {
    pub(crate) min_t: i64,
    pub(crate) max_t: i64,
    pub(crate) r: u64,
    /// Ordinal of the timestamp column in the block's table (version 6).
    pub(crate) col: Option<u32>,
}

/// A series as written to the index.
#[derive(Debug, Clone)]
pub(crate) struct SeriesEntry {
    pub(crate) labels: Labels,
    pub(crate) chunks: Vec<ChunkMeta>,
}

/// Serializes an index for series sorted by labels whose column chunks
/// name `columns`.
pub(crate) fn build_index(series: &[SeriesEntry], columns: &[Column], version: u8) -> Vec<u8> {
    let mut syms: BTreeSet<&str> = BTreeSet::new();
    for s in series {
        for l in &s.labels {
            syms.insert(&l.name);
            syms.insert(&l.value);
        }
    }
    let refs: HashMap<&str, u64> = syms
        .iter()
        .enumerate()
        .map(|(i, s)| (*s, i as u64))
        .collect();

    let mut out = MAGIC_INDEX.to_vec();
    out.push(version);
    let mut toc = Vec::with_capacity(SECTIONS);

    let mut sec = Vec::new();
    put_uvarint(&mut sec, syms.len() as u64);
    for s in &syms {
        put_uvarint(&mut sec, s.len() as u64);
        sec.extend_from_slice(s.as_bytes());
    }
    push_section(&mut out, &mut toc, &sec);

    let mut terms: BTreeMap<(u64, u64), RoaringBitmap> = BTreeMap::new();
    sec.clear();
    if version >= COLUMN_VERSION {
        put_uvarint(&mut sec, columns.len() as u64);
        let (mut t, mut r) = (0i64, 0u64);
        for c in columns {
            put_varint(&mut sec, c.min_t.wrapping_sub(t));
            put_uvarint(&mut sec, c.max_t.wrapping_sub(c.min_t) as u64);
            put_uvarint(&mut sec, c.r.wrapping_sub(r));
            (t, r) = (c.min_t, c.r);
        }
    }
    put_uvarint(&mut sec, series.len() as u64);
    let delta = version >= DELTA_VERSION;
    let mut prev = Prev::default();
    for (id, s) in series.iter().enumerate() {
        let labels: Vec<(u64, u64)> = s
            .labels
            .iter()
            .map(|l| (refs[l.name.as_str()], refs[l.value.as_str()]))
            .collect();
        for &(n, v) in &labels {
            terms.entry((n, v)).or_default().insert(id as u32);
        }
        if !delta || id % RESTART == 0 {
            prev = Prev::default();
        }
        put_labels(&mut sec, &labels, &prev.labels, version);
        put_uvarint(&mut sec, s.chunks.len() as u64);
        let (mut prev_max, mut prev_ref) = (0i64, if delta { prev.last_ref } else { 0 });
        for (i, c) in s.chunks.iter().enumerate() {
            let span = c.max_t.wrapping_sub(c.min_t);
            let col = c.col.filter(|_| version >= COLUMN_VERSION);
            if version >= COLUMN_VERSION {
                let tag = col.map_or(0, |k| zigzag(i64::from(k) - i64::from(prev.col)) << 1 | 1);
                put_uvarint(&mut sec, tag);
            }
            if col.is_some() {
                // The times are the column's.
            } else if i > 0 {
                put_varint(&mut sec, c.min_t.wrapping_sub(prev_max));
                put_uvarint(&mut sec, span as u64);
            } else if delta {
                put_varint(&mut sec, c.min_t.wrapping_sub(prev.first_min));
                put_varint(&mut sec, span.wrapping_sub(prev.first_span));
            } else {
                put_varint(&mut sec, c.min_t);
                put_uvarint(&mut sec, span as u64);
            }
            if i == 0 && delta {
                (prev.first_min, prev.first_span) = (c.min_t, span);
            }
            put_varint(&mut sec, c.r.wrapping_sub(prev_ref) as i64);
            (prev_max, prev_ref) = (c.max_t, c.r);
            if let Some(k) = col {
                prev.col = k;
            }
        }
        prev.last_ref = prev_ref;
        prev.labels = labels;
    }
    push_section(&mut out, &mut toc, &sec);

    let mut postings = Vec::new();
    sec.clear();
    put_uvarint(&mut sec, terms.len() as u64);
    for ((n, v), bm) in &mut terms {
        // Run containers for ranges of ids (a metric name's series are
        // contiguous).
        bm.optimize();
        let off = postings.len();
        bm.serialize_into(&mut postings)
            .expect("writing to a Vec cannot fail");
        put_uvarint(&mut sec, *n);
        put_uvarint(&mut sec, *v);
        put_uvarint(&mut sec, off as u64);
        put_uvarint(&mut sec, (postings.len() - off) as u64);
    }
    push_section(&mut out, &mut toc, &sec);
    push_section(&mut out, &mut toc, &postings);

    let toc_start = out.len();
    for (off, len, crc) in toc {
        out.extend_from_slice(&off.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&crc.to_be_bytes());
    }
    let crc = crc32c::crc32c(&out[toc_start..]);
    out.extend_from_slice(&crc.to_be_bytes());
    out.extend_from_slice(MAGIC_INDEX);
    out
}

/// True when a version 4 entry of `labels` is masked against `prev`.
fn same_names(labels: &[(u64, u64)], prev: &[(u64, u64)]) -> bool {
    labels.len() == prev.len()
        && labels.len() <= MAX_MASKED
        && labels.iter().zip(prev).all(|(a, b)| a.0 == b.0)
}

/// Writes the label part of a series entry against the previous series'
/// labels (see the module docs for each version's form).
fn put_labels(sec: &mut Vec<u8>, labels: &[(u64, u64)], prev: &[(u64, u64)], version: u8) {
    if version >= MASK_VERSION {
        let masked = same_names(labels, prev);
        put_uvarint(sec, (labels.len() as u64) << 1 | u64::from(masked));
        if masked {
            let mask = labels
                .iter()
                .zip(prev)
                .enumerate()
                .filter(|(_, (a, b))| a.1 != b.1)
                .fold(0u64, |m, (i, _)| m | 1 << i);
            put_uvarint(sec, mask);
            for (a, b) in labels.iter().zip(prev).filter(|(a, b)| a.1 != b.1) {
                put_varint(sec, a.1.wrapping_sub(b.1) as i64);
            }
            return;
        }
    } else {
        put_uvarint(sec, labels.len() as u64);
    }
    let shared = if version >= DELTA_VERSION {
        let shared = labels.iter().zip(prev).take_while(|(a, b)| a == b).count();
        put_uvarint(sec, shared as u64);
        shared
    } else {
        0
    };
    for &(n, v) in &labels[shared..] {
        put_uvarint(sec, n);
        put_uvarint(sec, v);
    }
}

/// Reads the label part written by [`put_labels`] into `prev` (which holds
/// the previous series' labels); refs must be below `sym_count`.
fn read_labels(
    d: &mut Decoder<'_>,
    prev: &mut Vec<(u64, u64)>,
    version: u8,
    sym_count: u64,
) -> Option<()> {
    let nl = if version >= MASK_VERSION {
        let head = d.uvarint()?;
        let nl = usize::try_from(head >> 1).ok().filter(|&n| n <= 1 << 16)?;
        if head & 1 == 1 {
            if nl != prev.len() || nl > MAX_MASKED {
                return None;
            }
            let mask = d.uvarint()?;
            if mask >> nl != 0 {
                return None;
            }
            for (i, l) in prev.iter_mut().enumerate() {
                if mask & 1 << i != 0 {
                    l.1 = l.1.wrapping_add(d.varint()? as u64);
                    if l.1 >= sym_count {
                        return None;
                    }
                }
            }
            return Some(());
        }
        nl
    } else {
        d.len(1 << 16)?
    };
    let shared = if version >= DELTA_VERSION {
        d.len(nl)?
    } else {
        0
    };
    if shared > prev.len() {
        return None;
    }
    prev.truncate(shared);
    for _ in shared..nl {
        let n = d.uvarint().filter(|&r| r < sym_count)?;
        let v = d.uvarint().filter(|&r| r < sym_count)?;
        prev.push((n, v));
    }
    Some(())
}

fn push_section(out: &mut Vec<u8>, toc: &mut Vec<(u64, u64, u32)>, sec: &[u8]) {
    toc.push((out.len() as u64, sec.len() as u64, crc32c::crc32c(sec)));
    out.extend_from_slice(sec);
}

/// Decodes the series at `d` against `prev` (which becomes it): its labels
/// land in `prev.labels` (refs below `sym_count`), its chunk metas are
/// returned. `None` when malformed.
fn decode_series(
    d: &mut Decoder<'_>,
    prev: &mut Prev,
    version: u8,
    sym_count: u64,
    columns: &[Column],
    chunks: &mut Vec<ChunkMeta>,
) -> Option<()> {
    read_labels(d, &mut prev.labels, version, sym_count)?;
    let delta = version >= DELTA_VERSION;
    let nc = d.len(d.rest().len())?;
    chunks.clear();
    chunks.reserve(nc);
    let (mut prev_max, mut prev_ref) = (0i64, if delta { prev.last_ref } else { 0 });
    for i in 0..nc {
        let tag = if version >= COLUMN_VERSION {
            d.uvarint()?
        } else {
            0
        };
        let col = if tag & 1 == 1 {
            let k = i64::from(prev.col).checked_add(unzigzag(tag >> 1))?;
            let k = u32::try_from(k)
                .ok()
                .filter(|&k| (k as usize) < columns.len())?;
            prev.col = k;
            Some(k)
        } else if tag == 0 {
            None
        } else {
            return None;
        };
        let (min_t, span) = if let Some(k) = col {
            let c = columns[k as usize];
            if i == 0 && delta {
                (prev.first_min, prev.first_span) = (c.min_t, c.max_t.wrapping_sub(c.min_t));
            }
            (c.min_t, c.max_t.wrapping_sub(c.min_t))
        } else if i > 0 {
            let min_t = prev_max.wrapping_add(d.varint()?);
            (min_t, d.uvarint()? as i64)
        } else if delta {
            let min_t = prev.first_min.wrapping_add(d.varint()?);
            let span = prev.first_span.wrapping_add(d.varint()?);
            (prev.first_min, prev.first_span) = (min_t, span);
            (min_t, span)
        } else {
            (d.varint()?, d.uvarint()? as i64)
        };
        let r = prev_ref.wrapping_add(d.varint()? as u64);
        let max_t = min_t.wrapping_add(span);
        chunks.push(ChunkMeta {
            min_t,
            max_t,
            r,
            col,
        });
        (prev_max, prev_ref) = (max_t, r);
    }
    prev.last_ref = prev_ref;
    Some(())
}

/// One entry of the term dictionary.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Term {
    pub(crate) name: u32,
    pub(crate) value: u32,
    off: usize,
    len: usize,
}

/// A parsed, checksum-verified index. Series are decoded on demand.
pub(crate) struct IndexReader {
    data: Box<dyn AsRef<[u8]> + Send + Sync>,
    /// Format version (series are delta-encoded with restart points since 3).
    version: u8,
    symbols: Vec<(usize, usize)>,
    /// Timestamp columns of the chunks file (version 6).
    columns: Vec<Column>,
    series: Vec<usize>,
    terms: Vec<Term>,
    postings: (usize, usize),
}

type R<T> = Result<T, String>;

/// Reads series entries of an index: a series encoded against its
/// neighbour is decoded from the entry the cursor stands on when it lies in
/// the same restart run, so a select walking matching ids in order decodes
/// each entry once (and its chunk metas into one reused vector).
pub(crate) struct SeriesCursor<'a> {
    idx: &'a IndexReader,
    d: Decoder<'a>,
    prev: Prev,
    /// Id of the entry `d` stands on.
    next: usize,
    chunks: Vec<ChunkMeta>,
}

impl SeriesCursor<'_> {
    /// Moves to series `id`.
    pub(crate) fn seek(&mut self, id: u32) -> R<()> {
        let idx = self.idx;
        let id = id as usize;
        let Some(&at) = idx.series.get(id) else {
            return Err(bad("series id"));
        };
        let first = if idx.version >= DELTA_VERSION {
            id - id % RESTART
        } else {
            id
        };
        if !(self.next > first && self.next <= id) {
            let start = if first == id { at } else { idx.series[first] };
            self.d = Decoder::new(&idx.bytes()[start..]);
            self.prev = Prev::default();
            self.next = first;
        }
        while self.next <= id {
            let at = self.next;
            // A failed entry leaves the cursor to restart at the next seek.
            self.next = usize::MAX;
            decode_series(
                &mut self.d,
                &mut self.prev,
                idx.version,
                idx.symbols.len() as u64,
                &idx.columns,
                &mut self.chunks,
            )
            .ok_or_else(|| bad("series"))?;
            self.next = at + 1;
        }
        Ok(())
    }

    /// The chunk metas of the series sought last.
    pub(crate) fn chunks(&self) -> &[ChunkMeta] {
        &self.chunks
    }

    /// The labels of the series sought last.
    pub(crate) fn labels(&self) -> R<Labels> {
        let idx = self.idx;
        let mut labels = Vec::with_capacity(self.prev.labels.len());
        for &(n, v) in &self.prev.labels {
            labels.push(Label::new(idx.symbol(n as u32)?, idx.symbol(v as u32)?));
        }
        if labels.windows(2).any(|w| w[0].name >= w[1].name)
            || labels.iter().any(|l| l.value.is_empty())
        {
            return Err(bad("series labels"));
        }
        Ok(Labels::from_sorted(labels))
    }
}

fn bad(what: &str) -> String {
    format!("malformed {what}")
}

impl IndexReader {
    /// Verifies magic, version and every checksum, and parses the tables.
    pub(crate) fn open(
        data: Box<dyn AsRef<[u8]> + Send + Sync>,
        max_version: u8,
    ) -> R<IndexReader> {
        let b = (*data).as_ref();
        if b.len() < 5 + TOC_LEN || &b[..4] != MAGIC_INDEX || &b[b.len() - 4..] != MAGIC_INDEX {
            return Err("bad magic or truncated index".into());
        }
        let version = b[4];
        if version == 0 || version > max_version {
            return Err(format!("unsupported index version {version}"));
        }
        let toc_start = b.len() - TOC_LEN;
        let mut d = Decoder::new(&b[toc_start..]);
        let mut secs = Vec::with_capacity(SECTIONS);
        for _ in 0..SECTIONS {
            let (off, len, crc) = (d.u64_be(), d.u64_be(), d.u32_be());
            let (Some(off), Some(len), Some(crc)) = (off, len, crc) else {
                return Err(bad("table of contents"));
            };
            secs.push((off, len, crc));
        }
        let toc_crc = d.u32_be().ok_or_else(|| bad("table of contents"))?;
        if crc32c::crc32c(&b[toc_start..toc_start + SECTIONS * 20]) != toc_crc {
            return Err("table of contents checksum mismatch".into());
        }
        let names = ["symbols", "series", "terms", "postings"];
        let mut ranges = Vec::with_capacity(SECTIONS);
        for ((off, len, crc), name) in secs.into_iter().zip(names) {
            let start = usize::try_from(off).map_err(|_| bad(name))?;
            let end = start
                .checked_add(usize::try_from(len).map_err(|_| bad(name))?)
                .filter(|&e| start >= 5 && e <= toc_start)
                .ok_or_else(|| format!("{name} section out of bounds"))?;
            if crc32c::crc32c(&b[start..end]) != crc {
                return Err(format!("{name} section checksum mismatch"));
            }
            ranges.push((start, end));
        }

        let (ss, se) = ranges[0];
        let mut d = Decoder::new(&b[ss..se]);
        let n = d.len(se - ss).ok_or_else(|| bad("symbols"))?;
        let mut symbols = Vec::with_capacity(n);
        for _ in 0..n {
            let len = d.len(se - ss).ok_or_else(|| bad("symbols"))?;
            let start = ss + d.pos();
            let s = d.bytes(len).ok_or_else(|| bad("symbols"))?;
            std::str::from_utf8(s).map_err(|_| "symbol is not UTF-8".to_string())?;
            symbols.push((start, start + len));
        }
        let sym_count = symbols.len() as u64;

        let (ss, se) = ranges[1];
        let mut d = Decoder::new(&b[ss..se]);
        let mut columns = Vec::new();
        if version >= COLUMN_VERSION {
            let n = d.len(se - ss).ok_or_else(|| bad("columns"))?;
            let (mut t, mut r) = (0i64, 0u64);
            for _ in 0..n {
                let (dt, span, dr) = (d.varint(), d.uvarint(), d.uvarint());
                let (Some(dt), Some(span), Some(dr)) = (dt, span, dr) else {
                    return Err(bad("columns"));
                };
                (t, r) = (t.wrapping_add(dt), r.wrapping_add(dr));
                columns.push(Column {
                    min_t: t,
                    max_t: t.wrapping_add(span as i64),
                    r,
                });
            }
        }
        let n = d.len(se - ss).ok_or_else(|| bad("series"))?;
        let mut series = Vec::with_capacity(n);
        let delta = version >= DELTA_VERSION;
        let mut prev = Prev::default();
        let mut chunks = Vec::new();
        for id in 0..n {
            series.push(ss + d.pos());
            if !delta || id % RESTART == 0 {
                prev = Prev::default();
            }
            decode_series(&mut d, &mut prev, version, sym_count, &columns, &mut chunks)
                .ok_or_else(|| bad("series"))?;
        }

        let (ts, te) = ranges[2];
        let (ps, pe) = ranges[3];
        let mut d = Decoder::new(&b[ts..te]);
        let n = d.len(te - ts).ok_or_else(|| bad("terms"))?;
        let mut terms = Vec::with_capacity(n);
        for _ in 0..n {
            let (nm, v, off, len) = (d.uvarint(), d.uvarint(), d.len(pe - ps), d.len(pe - ps));
            let (Some(nm), Some(v), Some(off), Some(len)) = (nm, v, off, len) else {
                return Err(bad("terms"));
            };
            if nm >= sym_count || v >= sym_count || off + len > pe - ps {
                return Err(bad("terms"));
            }
            let t = Term {
                name: nm as u32,
                value: v as u32,
                off: ps + off,
                len,
            };
            if terms
                .last()
                .is_some_and(|p: &Term| (p.name, p.value) >= (t.name, t.value))
            {
                return Err("term dictionary is not sorted".into());
            }
            terms.push(t);
        }
        Ok(IndexReader {
            data,
            version,
            symbols,
            columns,
            series,
            terms,
            postings: (ps, pe),
        })
    }

    fn bytes(&self) -> &[u8] {
        (*self.data).as_ref()
    }

    /// Reference of timestamp column `k` in the chunks file.
    pub(crate) fn column_ref(&self, k: u32) -> Option<u64> {
        self.columns.get(k as usize).map(|c| c.r)
    }

    /// Number of series.
    pub(crate) fn num_series(&self) -> u32 {
        self.series.len() as u32
    }

    /// The symbol with reference `r`.
    pub(crate) fn symbol(&self, r: u32) -> R<&str> {
        let &(s, e) = self
            .symbols
            .get(r as usize)
            .ok_or_else(|| bad("symbol ref"))?;
        std::str::from_utf8(&self.bytes()[s..e]).map_err(|_| bad("symbol"))
    }

    fn find_symbol(&self, s: &str) -> Option<u32> {
        let (mut lo, mut hi) = (0usize, self.symbols.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.symbol(mid as u32).ok()?.cmp(s) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid as u32),
            }
        }
        None
    }

    /// Labels and chunk metas of series `id`.
    pub(crate) fn series(&self, id: u32) -> R<SeriesEntry> {
        let mut c = self.cursor();
        c.seek(id)?;
        Ok(SeriesEntry {
            labels: c.labels()?,
            chunks: c.chunks().to_vec(),
        })
    }

    /// A cursor over the series entries (cheapest when sought by
    /// increasing id).
    pub(crate) fn cursor(&self) -> SeriesCursor<'_> {
        SeriesCursor {
            idx: self,
            d: Decoder::new(&[]),
            prev: Prev::default(),
            next: 0,
            chunks: Vec::new(),
        }
    }

    /// Label names present in the block, sorted.
    pub(crate) fn label_names(&self) -> R<Vec<String>> {
        let mut out: Vec<String> = Vec::new();
        let mut last = None;
        for t in &self.terms {
            if last != Some(t.name) {
                out.push(self.symbol(t.name)?.to_string());
                last = Some(t.name);
            }
        }
        Ok(out)
    }

    /// The dictionary entries of label `name` (sorted by value).
    pub(crate) fn terms_of(&self, name: &str) -> &[Term] {
        let Some(n) = self.find_symbol(name) else {
            return &[];
        };
        let start = self.terms.partition_point(|t| t.name < n);
        let end = self.terms.partition_point(|t| t.name <= n);
        &self.terms[start..end]
    }

    /// The entries of `name` whose value starts with `prefix` (a dictionary
    /// range: values are sorted).
    pub(crate) fn terms_with_prefix(&self, name: &str, prefix: &str) -> R<&[Term]> {
        let all = self.terms_of(name);
        let mut lo = 0;
        let mut hi = all.len();
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.symbol(all[mid].value)? < prefix {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let mut end = lo;
        while end < all.len() && self.symbol(all[end].value)?.starts_with(prefix) {
            end += 1;
        }
        Ok(&all[lo..end])
    }

    /// The entry for `name="value"`.
    pub(crate) fn term(&self, name: &str, value: &str) -> Option<Term> {
        let all = self.terms_of(name);
        let v = self.find_symbol(value)?;
        all.binary_search_by_key(&v, |t| t.value)
            .ok()
            .map(|i| all[i])
    }

    /// The series ids of a term.
    pub(crate) fn postings(&self, t: &Term) -> R<RoaringBitmap> {
        let (ps, pe) = self.postings;
        let s = self
            .bytes()
            .get(t.off..t.off + t.len)
            .filter(|_| t.off >= ps && t.off + t.len <= pe);
        let s = s.ok_or_else(|| bad("postings offset"))?;
        let bm = RoaringBitmap::deserialize_from(s).map_err(|_| bad("postings list"))?;
        if bm.max().is_some_and(|m| m >= self.num_series()) {
            return Err(bad("postings list"));
        }
        Ok(bm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Neighbours with the same names, with names added, removed and
    /// renamed, values moving both ways, several chunks: every version's
    /// series form reads back what was written.
    #[test]
    fn every_series_form_round_trips() {
        let sets: &[&[(&str, &str)]] = &[
            &[("__name__", "a")],
            &[("__name__", "a"), ("x", "9")],
            &[("__name__", "a"), ("x", "1"), ("y", "z")],
            &[("__name__", "b"), ("x", "0"), ("y", "a")],
            &[("__name__", "b"), ("x", "0"), ("y", "z")],
            &[("__name__", "b"), ("w", "0"), ("y", "z")],
            &[("__name__", "c")],
            &[("__name__", "d"), ("x", "é")],
        ];
        let mut series: Vec<SeriesEntry> = Vec::new();
        let mut columns: Vec<Column> = Vec::new();
        for k in 0..40usize {
            for (i, set) in sets.iter().enumerate() {
                let mut pairs: Vec<(String, String)> = set
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect();
                pairs.push(("zone".into(), format!("{}", (k * 7919) % 23)));
                pairs.push(("zz".into(), format!("{k:03}")));
                let t = 1_000 * (k as i64) - 7 * i as i64;
                series.push(SeriesEntry {
                    labels: Labels::from_pairs(pairs),
                    chunks: (0..(k + i) % 3)
                        .map(|c| {
                            let min_t = t + c as i64 * 100;
                            let max_t = min_t + 50 + (k as i64 % 5);
                            // Every third chunk over a column with its times.
                            let col = (c % 3 == 1).then(|| {
                                columns.push(Column {
                                    min_t,
                                    max_t,
                                    r: 7 * columns.len() as u64,
                                });
                                columns.len() as u32 - 1
                            });
                            ChunkMeta {
                                min_t,
                                max_t,
                                r: (1000 * k + 10 * i + c) as u64,
                                col,
                            }
                        })
                        .collect(),
                });
            }
        }
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        for version in 1..=6u8 {
            let data = build_index(&series, &columns, version);
            let r = IndexReader::open(Box::new(data), version).unwrap();
            assert_eq!(r.num_series() as usize, series.len());
            for (id, want) in series.iter().enumerate() {
                let got = r.series(id as u32).unwrap();
                assert_eq!(got.labels, want.labels, "version {version} id {id}");
                let mut want = want.chunks.clone();
                if version < COLUMN_VERSION {
                    want.iter_mut().for_each(|c| c.col = None);
                }
                assert_eq!(got.chunks, want, "version {version} id {id}");
            }
            // One cursor sought forwards with gaps of every size (inside
            // a restart run, across runs), then backwards, agrees with
            // random access.
            for gap in [1, 2, 5, 15, 16, 17, 40] {
                let mut c = r.cursor();
                let ids: Vec<u32> = (0..series.len() as u32).step_by(gap).collect();
                for &id in ids.iter().chain(ids.iter().rev()) {
                    c.seek(id).unwrap();
                    let want = r.series(id).unwrap();
                    assert_eq!(
                        c.labels().unwrap(),
                        want.labels,
                        "version {version} id {id}"
                    );
                    assert_eq!(c.chunks(), &want.chunks[..], "version {version} id {id}");
                }
                assert!(c.seek(series.len() as u32).is_err());
            }
        }
    }
}
