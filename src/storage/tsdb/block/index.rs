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

use super::format::{put_uvarint, put_varint, Decoder};

/// Magic at both ends of an `index` file.
pub(crate) const MAGIC_INDEX: &[u8; 4] = b"STIX";
const SECTIONS: usize = 4;
/// Series per restart point of a version 3 series section.
pub(crate) const RESTART: usize = 16;
/// First version with delta-encoded series.
const DELTA_VERSION: u8 = 3;

/// What a series is encoded against: the one before it (zeros at a restart).
#[derive(Default, Clone)]
struct Prev {
    labels: Vec<(u64, u64)>,
    first_min: i64,
    first_span: i64,
    last_ref: u64,
}
const TOC_LEN: usize = SECTIONS * 20 + 4 + 4;

/// Where one chunk of a series lives and what it covers (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkMeta {
    pub(crate) min_t: i64,
    pub(crate) max_t: i64,
    pub(crate) r: u64,
}

/// A series as written to the index.
#[derive(Debug, Clone)]
pub(crate) struct SeriesEntry {
    pub(crate) labels: Labels,
    pub(crate) chunks: Vec<ChunkMeta>,
}

/// Serializes an index for series sorted by labels.
pub(crate) fn build_index(series: &[SeriesEntry], version: u8) -> Vec<u8> {
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
        let shared = if delta {
            labels
                .iter()
                .zip(&prev.labels)
                .take_while(|(a, b)| a == b)
                .count()
        } else {
            0
        };
        put_uvarint(&mut sec, labels.len() as u64);
        if delta {
            put_uvarint(&mut sec, shared as u64);
        }
        for &(n, v) in &labels[shared..] {
            put_uvarint(&mut sec, n);
            put_uvarint(&mut sec, v);
        }
        put_uvarint(&mut sec, s.chunks.len() as u64);
        let (mut prev_max, mut prev_ref) = (0i64, if delta { prev.last_ref } else { 0 });
        for (i, c) in s.chunks.iter().enumerate() {
            let span = c.max_t.wrapping_sub(c.min_t);
            if i > 0 {
                put_varint(&mut sec, c.min_t.wrapping_sub(prev_max));
                put_uvarint(&mut sec, span as u64);
            } else if delta {
                put_varint(&mut sec, c.min_t.wrapping_sub(prev.first_min));
                put_varint(&mut sec, span.wrapping_sub(prev.first_span));
                (prev.first_min, prev.first_span) = (c.min_t, span);
            } else {
                put_varint(&mut sec, c.min_t);
                put_uvarint(&mut sec, span as u64);
            }
            put_varint(&mut sec, c.r.wrapping_sub(prev_ref) as i64);
            (prev_max, prev_ref) = (c.max_t, c.r);
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
    delta: bool,
    sym_count: u64,
) -> Option<Vec<ChunkMeta>> {
    let nl = d.len(1 << 16)?;
    let shared = if delta { d.len(nl)? } else { 0 };
    if shared > prev.labels.len() {
        return None;
    }
    prev.labels.truncate(shared);
    for _ in shared..nl {
        let n = d.uvarint().filter(|&r| r < sym_count)?;
        let v = d.uvarint().filter(|&r| r < sym_count)?;
        prev.labels.push((n, v));
    }
    let nc = d.len(d.rest().len())?;
    let mut chunks = Vec::with_capacity(nc);
    let (mut prev_max, mut prev_ref) = (0i64, if delta { prev.last_ref } else { 0 });
    for i in 0..nc {
        let (min_t, span) = if i > 0 {
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
        chunks.push(ChunkMeta { min_t, max_t, r });
        (prev_max, prev_ref) = (max_t, r);
    }
    prev.last_ref = prev_ref;
    Some(chunks)
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
    /// Series are delta-encoded with restart points (version 3).
    delta: bool,
    symbols: Vec<(usize, usize)>,
    series: Vec<usize>,
    terms: Vec<Term>,
    postings: (usize, usize),
}

type R<T> = Result<T, String>;

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
        let n = d.len(se - ss).ok_or_else(|| bad("series"))?;
        let mut series = Vec::with_capacity(n);
        let delta = version >= DELTA_VERSION;
        let mut prev = Prev::default();
        for id in 0..n {
            series.push(ss + d.pos());
            if !delta || id % RESTART == 0 {
                prev = Prev::default();
            }
            decode_series(&mut d, &mut prev, delta, sym_count).ok_or_else(|| bad("series"))?;
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
            delta,
            symbols,
            series,
            terms,
            postings: (ps, pe),
        })
    }

    fn bytes(&self) -> &[u8] {
        (*self.data).as_ref()
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
        if id as usize >= self.series.len() {
            return Err(bad("series id"));
        }
        let first = if self.delta {
            id as usize - id as usize % RESTART
        } else {
            id as usize
        };
        // Decode from the restart point up to `id`.
        let mut d = Decoder::new(&self.bytes()[self.series[first]..]);
        let mut prev = Prev::default();
        let mut chunks = Vec::new();
        for _ in first..=id as usize {
            chunks = decode_series(&mut d, &mut prev, self.delta, self.symbols.len() as u64)
                .ok_or_else(|| bad("series"))?;
        }
        let mut labels = Vec::with_capacity(prev.labels.len());
        for &(n, v) in &prev.labels {
            labels.push(Label::new(self.symbol(n as u32)?, self.symbol(v as u32)?));
        }
        if labels.windows(2).any(|w| w[0].name >= w[1].name)
            || labels.iter().any(|l| l.value.is_empty())
        {
            return Err(bad("series labels"));
        }
        Ok(SeriesEntry {
            labels: Labels::from_sorted(labels),
            chunks,
        })
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
