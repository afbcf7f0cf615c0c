//! The hot tier's full-text index: per segment, a dictionary of the tokens
//! of its blocks (lines and structured metadata values), each mapped to the
//! blocks holding it.
//!
//! Documents are blocks, not lines: a term's postings are block numbers
//! (the segment's blocks in stream order), so a needle reads only the
//! blocks that can hold it. Tokens are those of [`super::tokens`] (runs of
//! letters, digits and non-ASCII bytes).
//!
//! High-cardinality tokens stay out of the dictionary: a token found in at
//! most `rare_max_blocks` blocks of the segment and no longer than
//! `rare_max_len` (random request ids, mostly, logged by one service or a
//! few) is a *rare* token, kept in a per-segment static function
//! ([`super::fuse`]) from (its hash, i) to its i-th block number with a
//! fingerprint of `fingerprint_bits` bits (~1.125 × (log2(blocks) +
//! fingerprint) bits per token and block). A rare-token lookup walks
//! i = 0, 1, … while the fingerprints match: it yields the token's blocks,
//! and a wrong one with probability 2^-bits per segment. Each block records
//! the length of its longest rare token (`rare_len`). The index thus
//! answers every whole token: a hot segment needs no per-block filter
//! (`filters.rs` writes them when it turns warm). A query can
//! still be answered without reading every block because a token that
//! *contains* a needle `x` (or starts or ends with it) and is not `x` is
//! longer than `x`: a block whose rare tokens are all no longer than
//! `x` holds such a token only in the dictionary, or `x` itself, which the
//! function answers. So for a constraint "a token of the line is, starts
//! with, ends with or contains `x`" a block is read when
//! - a dictionary term in that relation to `x` lists the block, or
//! - `x` is not in the dictionary and the function gives the block for
//!   `x`, or
//! - the block has a rare token longer than `x` (the index cannot tell;
//!   the block is read and filtered).
//!
//! The dictionary is kept in memory as one byte string `\n t0 \n t1 \n …`
//! of the sorted terms, so prefix lookups are a binary search and suffix
//! and infix lookups one `memmem` pass over it.
//!
//! File `fulltext` in the segment directory: `STRLOGFT | version u32 |
//! zstd(body) | CRC32C(zstd bytes)`; body: block count, `rare_len` per
//! block (one byte), a byte 1 then the rare-token function, its
//! fingerprint bits (u8) and its longest chain (varint), or 0 when it could
//! not be built (its tokens are then dictionary terms), term count, the
//! term string, then per term its block count and the block numbers as
//! ascending deltas (varints). Older versions are still read: version 2's
//! function stores bare block numbers of tokens in one block, confirmed by
//! that block's Bloom filter; version 1 has no function (rare tokens are
//! looked up in every block's filter). Written with the segment, off the
//! acknowledgement path; deleted when the segment leaves the hot window,
//! judged by when the segment was written, not by the age of its entries
//! (the warm tier: Bloom filters only, same answers).
//! A missing or unreadable file only makes queries slower.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use roaring::RoaringBitmap;

use super::codec::{put_bytes, put_uvarint, Reader};
use super::fuse::{width_for, Fuse};
use super::segment::Segment;
use super::tokens::{for_each_token, hash, token_head, Needle, TokenFilter};
use super::{LogStore, FULLTEXT_BYTES, FULLTEXT_SEGMENTS_DEMOTED_TOTAL};
use crate::logs::LogEntry;
use crate::storage::idmap::IdMap;
use crate::storage::tsdb::block::dir::{block_id_ms, io};
use crate::storage::tsdb::block::format::Decoder;
use crate::storage::StorageError;

const MAGIC: &[u8; 8] = b"STRLOGFT";
const VERSION: u32 = 3;
/// The index file in a segment directory.
pub(crate) const FILE: &str = "fulltext";
/// Separates terms in the dictionary string; never a token byte.
const SEP: u8 = b'\n';
/// zstd level of the file.
const ZSTD_LEVEL: i32 = 3;
/// Terms at least this long are also kept in a second term string, so
/// suffix and infix lookups of needles this long scan only the terms long
/// enough to hold them.
const LONG_TERM: usize = 8;

type HashKeyed<V> = IdMap<u64, V>;

/// A token seen while building: the first block holding it and, once a
/// second one does, its list number (from 1) in [`Builder::postings`].
#[derive(Clone, Copy)]
struct Term<'a> {
    text: &'a str,
    first: u32,
    list: u32,
    /// The first bytes of `text` ([`inline_key`]).
    key: [u8; INLINE],
}

/// Bytes of a term kept beside it while building.
const INLINE: usize = 16;

/// The first [`INLINE`] bytes of a token, zero-padded. Terms are told
/// apart by it (and by length), so recording a term seen in an earlier
/// block reads its text (in that block's lines, long evicted from the
/// cache on a large head) only when it is longer.
fn inline_key(t: &str) -> [u8; INLINE] {
    let mut k = [0u8; INLINE];
    let n = t.len().min(INLINE);
    k[..n].copy_from_slice(&t.as_bytes()[..n]);
    k
}

impl Term<'_> {
    fn is(&self, t: &str, key: &[u8; INLINE]) -> bool {
        self.text.len() == t.len() && self.key == *key && (t.len() <= INLINE || self.text == t)
    }
}

/// Collects the tokens of a segment's blocks as they are written.
pub(crate) struct Builder<'a> {
    /// `None`: no index is built, only the per-block token filters.
    settings: Option<Settings>,
    blocks: u32,
    /// Distinct tokens of the current block by hash; `clashes` holds
    /// tokens whose hash another token of the block already has.
    /// (Each with its first bytes, [`token_head`]: a repeat is told from a
    /// clash without reading the earlier line again.)
    block: HashKeyed<(&'a str, u64)>,
    clashes: Vec<&'a str>,
    terms: HashKeyed<Term<'a>>,
    /// Terms whose hash an earlier, different term has.
    clashing_terms: HashMap<&'a str, Term<'a>>,
    /// `(list, block)` for every block of every term found in more than
    /// one, in block order: appended, never looked up (a list per term
    /// was a cache miss or two per term and block), grouped by list when
    /// the file is written.
    postings: Vec<(u32, u32)>,
    /// Lists numbered so far.
    lists: u32,
}

impl<'a> Builder<'a> {
    /// A builder; `None` to build no index, only token filters.
    pub(crate) fn new(settings: Option<Settings>) -> Builder<'a> {
        Builder {
            settings,
            blocks: 0,
            block: HashKeyed::default(),
            clashes: Vec::new(),
            terms: HashKeyed::default(),
            clashing_terms: HashMap::new(),
            postings: Vec::new(),
            lists: 0,
        }
    }

    /// Adds the next block; returns its token filter when no index is
    /// built (the index answers for the block otherwise: no filter).
    pub(crate) fn add_block(&mut self, entries: &'a [LogEntry]) -> Option<TokenFilter> {
        self.collect(entries);
        if self.settings.is_none() {
            self.blocks += 1;
            return Some(self.block_filter());
        }
        let b = self.blocks;
        let block = std::mem::take(&mut self.block);
        for (&h, &(t, _)) in &block {
            self.record(h, t, b);
        }
        self.block = block;
        for i in 0..self.clashes.len() {
            let t = self.clashes[i];
            self.record(hash(t), t, b);
        }
        self.blocks += 1;
        None
    }

    /// The filter of the tokens [`Builder::collect`] found.
    fn block_filter(&self) -> TokenFilter {
        TokenFilter::build(&self.block.keys().copied().collect::<Vec<u64>>())
    }

    /// Collects the distinct tokens of a block's lines and metadata values.
    fn collect(&mut self, entries: &'a [LogEntry]) {
        self.block.clear();
        self.clashes.clear();
        let (block, clashes) = (&mut self.block, &mut self.clashes);
        let mut add = |s: &'a str| {
            for_each_token(s, |t, _, _| {
                let head = token_head(t);
                match block.entry(hash(t)) {
                    Entry::Vacant(v) => {
                        v.insert((t, head));
                    }
                    Entry::Occupied(o) => {
                        let (u, u_head) = *o.get();
                        let same = u_head == head && u.len() == t.len() && (t.len() <= 8 || u == t);
                        if !same && !clashes.contains(&t) {
                            clashes.push(t);
                        }
                    }
                }
            })
        };
        for e in entries {
            add(&e.line);
            for l in e.metadata.iter() {
                add(&l.value);
            }
        }
    }

    fn record(&mut self, h: u64, t: &'a str, b: u32) {
        let key = inline_key(t);
        let fresh = Term {
            text: t,
            first: b,
            list: 0,
            key,
        };
        // A fresh term already records `b`: the update below does nothing.
        let term = match self.terms.entry(h) {
            Entry::Vacant(v) => v.insert(fresh),
            Entry::Occupied(o) if o.get().is(t, &key) => o.into_mut(),
            Entry::Occupied(_) => self.clashing_terms.entry(t).or_insert(fresh),
        };
        // A term is recorded once per block (the block's tokens are
        // distinct), so `b` is new to its list.
        if term.list == 0 {
            if term.first != b {
                self.lists += 1;
                term.list = self.lists;
                self.postings.push((term.list, term.first));
                self.postings.push((term.list, b));
            }
        } else {
            self.postings.push((term.list, b));
        }
    }

    /// The blocks of every list, grouped by list (a counting sort, stable:
    /// blocks stay ascending): list `l` is `blocks[at[l - 1]..at[l]]`.
    fn grouped_lists(&self) -> (Vec<u32>, Vec<u32>) {
        let mut at = vec![0u32; self.lists as usize + 1];
        for &(l, _) in &self.postings {
            at[l as usize] += 1;
        }
        for i in 1..at.len() {
            at[i] += at[i - 1];
        }
        let mut next = at.clone();
        let mut blocks = vec![0u32; self.postings.len()];
        for &(l, b) in &self.postings {
            let slot = &mut next[l as usize - 1];
            blocks[*slot as usize] = b;
            *slot += 1;
        }
        (blocks, at)
    }

    /// Writes the index file into `dir` (fsynced; the caller fsyncs the
    /// directory). Nothing when the builder builds no index.
    pub(crate) fn write(self, dir: &Path) -> Result<(), StorageError> {
        let Some(settings) = self.settings else {
            return Ok(());
        };
        let (grouped, at) = self.grouped_lists();
        let blocks_of = |t: &Term<'a>| -> Vec<u32> {
            match t.list as usize {
                0 => vec![t.first],
                l => grouped[at[l - 1] as usize..at[l] as usize].to_vec(),
            }
        };
        let mut dict: Vec<Term<'a>> = Vec::new();
        let mut rare: Vec<(Term<'a>, Vec<u32>)> = Vec::new();
        let terms = self.terms.values();
        let pair_bits = rare_pair_bits(self.blocks, settings);
        for t in terms.chain(self.clashing_terms.values()) {
            let blocks = blocks_of(t);
            if t.text.len() <= settings.rare_max_len
                && blocks.len() <= settings.rare_max_blocks as usize
                && rare_is_smaller(t.text.len(), blocks.len(), pair_bits)
            {
                rare.push((*t, blocks));
            } else {
                dict.push(*t);
            }
        }
        let (function, rare_len) = build_rare(&mut rare, self.blocks, settings);
        if function.is_none() && !rare.is_empty() {
            tracing::warn!(dir = %dir.display(), tokens = rare.len(), "rare-token function not built; its tokens go to the dictionary");
        }
        // Tokens the function does not hold (all, when it failed) are
        // dictionary terms.
        dict.extend(rare.iter().map(|r| r.0));
        dict.sort_unstable_by(|a, b| a.text.cmp(b.text));
        let mut body = Vec::new();
        put_uvarint(&mut body, u64::from(self.blocks));
        body.extend_from_slice(&rare_len);
        match &function {
            Some(f) => {
                body.push(1);
                f.fuse.put(&mut body);
                body.push(f.fp_bits as u8);
                put_uvarint(&mut body, u64::from(f.max_blocks));
            }
            None => body.push(0),
        }
        put_uvarint(&mut body, dict.len() as u64);
        let mut s = Vec::with_capacity(dict.iter().map(|t| t.text.len() + 1).sum::<usize>() + 1);
        s.push(SEP);
        for t in &dict {
            s.extend_from_slice(t.text.as_bytes());
            s.push(SEP);
        }
        put_bytes(&mut body, &s);
        for t in &dict {
            let blocks = blocks_of(t);
            put_uvarint(&mut body, blocks.len() as u64);
            let mut prev = 0;
            for &b in &blocks {
                put_uvarint(&mut body, u64::from(b - prev));
                prev = b;
            }
        }
        let path = dir.join(FILE);
        let packed = zstd::bulk::compress(&body, ZSTD_LEVEL)
            .map_err(io(format!("compress {}", path.display())))?;
        let mut out = Vec::with_capacity(packed.len() + 16);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&packed);
        out.extend_from_slice(&crc32c::crc32c(&packed).to_le_bytes());
        let mut f = fs::File::create(&path).map_err(io(format!("create {}", path.display())))?;
        f.write_all(&out)
            .and_then(|_| f.sync_all())
            .map_err(io(format!("write {}", path.display())))
    }
}

/// The token filter of a block's entries (the warm tier's, built from the
/// block read back).
pub(crate) fn block_filter(entries: &[LogEntry]) -> TokenFilter {
    let mut b = Builder::new(None);
    b.collect(entries);
    b.block_filter()
}

/// What segment writing is given for the full-text index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settings {
    /// Tokens at most this long ...
    pub rare_max_len: usize,
    /// ... found in at most this many blocks are rare: kept in the
    /// rare-token function, not the dictionary.
    pub rare_max_blocks: u32,
    /// Fingerprint bits stored with each block number of the function.
    pub fingerprint_bits: u32,
}

/// The rare-token function of a version 3 index: for a rare token with
/// hash `h` in blocks `b0 < b1 < …`, key [`chain_key`]`(h, i)` maps to
/// `bi | fingerprint << block_bits`. A lookup walks `i = 0, 1, …` while
/// the fingerprints match (at most `max_blocks` steps).
#[derive(Debug)]
struct RareBlocks {
    fuse: Fuse,
    fp_bits: u32,
    block_bits: u32,
    max_blocks: u32,
}

/// Bits a (token, block) pair takes in the rare-token function of a
/// segment of `blocks` blocks, ×8 (the function's 1.125 overhead: 9/8).
fn rare_pair_bits(blocks: u32, s: Settings) -> usize {
    let block_bits = width_for(blocks.saturating_sub(1));
    (block_bits + s.fingerprint_bits.min(32 - block_bits)) as usize * 9
}

/// True when a token of `len` bytes in `blocks` blocks takes fewer bytes in
/// the rare-token function (`pair_bits` ×8 per block) than in the
/// dictionary, estimated at 4 bits per term byte once compressed (sorted
/// terms share prefixes), a byte of framing, and a byte per posting (all ×8).
/// A token in one block always goes to the function.
fn rare_is_smaller(len: usize, blocks: usize, pair_bits: usize) -> bool {
    blocks <= 1 || blocks * pair_bits <= 8 * (4 * len + 8 + 8 * blocks)
}

/// The key of the `i`th block of a token with hash `h`.
fn chain_key(h: u64, i: u32) -> u64 {
    h ^ u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The fingerprint stored with a key's block: `bits` bits, independent of
/// the function's slot positions (a different mixer of the key).
fn fingerprint(k: u64, bits: u32) -> u32 {
    if bits == 0 {
        return 0;
    }
    let mut x = k ^ 0x5851_f42d_4c95_7f2d;
    x = (x ^ (x >> 31)).wrapping_mul(0x9fb2_1c65_1e98_df25);
    x ^= x >> 29;
    (x >> (64 - bits)) as u32
}

/// Builds the rare-token function over `rare` (token, its blocks) for a
/// segment of `blocks` blocks; returns it and each block's longest rare
/// token. Tokens it holds are removed from `rare`; what stays there (keys
/// clashing with another token's, or all when building fails) belongs in
/// the dictionary.
fn build_rare(
    rare: &mut Vec<(Term<'_>, Vec<u32>)>,
    blocks: u32,
    s: Settings,
) -> (Option<RareBlocks>, Vec<u8>) {
    let mut rare_len = vec![0u8; blocks as usize];
    let block_bits = width_for(blocks.saturating_sub(1));
    let fp_bits = s.fingerprint_bits.min(32 - block_bits);
    let mut keys: Vec<(u64, u32, u32)> = Vec::new();
    for (ri, (t, bs)) in rare.iter().enumerate() {
        let h = hash(t.text);
        for (i, &b) in bs.iter().enumerate() {
            keys.push((chain_key(h, i as u32), ri as u32, b));
        }
    }
    keys.sort_unstable_by_key(|k| k.0);
    let mut clash = vec![false; rare.len()];
    for w in keys.windows(2) {
        if w[0].0 == w[1].0 {
            clash[w[0].1 as usize] = true;
            clash[w[1].1 as usize] = true;
        }
    }
    let entries: Vec<(u64, u32)> = keys
        .iter()
        .filter(|k| !clash[k.1 as usize])
        .map(|&(k, _, b)| (k, b | fingerprint(k, fp_bits) << block_bits))
        .collect();
    let Some(fuse) = Fuse::build(&entries, block_bits + fp_bits) else {
        return (None, rare_len);
    };
    let mut i = 0;
    rare.retain(|(t, bs)| {
        let keep = clash[i];
        i += 1;
        if !keep {
            for &b in bs {
                let r = &mut rare_len[b as usize];
                *r = (*r).max(t.text.len().min(255) as u8);
            }
        }
        keep
    });
    let max_blocks = s.rare_max_blocks.max(1);
    let f = RareBlocks {
        fuse,
        fp_bits,
        block_bits,
        max_blocks,
    };
    (Some(f), rare_len)
}

/// How a loaded index finds its rare tokens.
#[derive(Debug)]
enum Rare {
    /// Version 1 (or a version 2 function that could not be built): in
    /// every block's filter.
    Filters,
    /// Version 2: token hash -> the one block whose filter may hold it.
    Block(Fuse),
    /// Version 3: token hash -> its blocks, confirmed by fingerprints (the
    /// segment keeps no token filters while hot). Also version 3 without a
    /// function: every token is in the dictionary.
    Blocks(Option<RareBlocks>),
}

/// A loaded index.
#[derive(Debug)]
pub(crate) struct FullText {
    /// Per block, the length of its longest rare token.
    rare_len: Vec<u8>,
    /// Where the rare tokens are.
    rare: Rare,
    /// `\n t0 \n t1 \n … \n`, terms sorted.
    terms: Vec<u8>,
    /// Start of each term in `terms`, then `terms.len()`.
    starts: Vec<u32>,
    /// The terms at least [`LONG_TERM`] long, as `terms`; `long_ids` their
    /// ids, `long_starts` as `starts`.
    long: Vec<u8>,
    long_ids: Vec<u32>,
    long_starts: Vec<u32>,
    postings: Vec<u8>,
    /// Start of each term's postings, then `postings.len()`.
    post_at: Vec<u32>,
    /// Size of the file.
    pub file_bytes: u64,
}

impl FullText {
    /// Reads `dir/fulltext`; `Ok(None)` when there is none.
    pub(crate) fn load(dir: &Path, blocks: u32) -> Result<Option<FullText>, String> {
        let buf = match fs::read(dir.join(FILE)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        if buf.len() < 16 || &buf[..8] != MAGIC {
            return Err("bad magic".into());
        }
        let v = u32::from_le_bytes(buf[8..12].try_into().expect("4 bytes"));
        if !(1..=VERSION).contains(&v) {
            return Err(format!("unsupported format version {v}"));
        }
        let (packed, crc) = buf[12..].split_at(buf.len() - 16);
        if crc32c::crc32c(packed).to_le_bytes() != crc {
            return Err("checksum mismatch".into());
        }
        let body = zstd::stream::decode_all(packed).map_err(|e| e.to_string())?;
        let mut ft = FullText::parse(&body, blocks, v)?;
        ft.file_bytes = buf.len() as u64;
        Ok(Some(ft))
    }

    fn parse(body: &[u8], blocks: u32, version: u32) -> Result<FullText, String> {
        let mut r = Reader::new(body);
        let n = r.len("block count")?;
        if n != blocks as usize {
            return Err(format!("{n} blocks indexed, the segment has {blocks}"));
        }
        let rare_len = r.take(n, "token lengths")?.to_vec();
        let flag = match version {
            1 => 0,
            _ => r.u8("rare-token function flag")?,
        };
        let rare = match (version, flag) {
            (1 | 2, 0) => Rare::Filters,
            (2, 1) => Rare::Block(Fuse::read(&mut r)?),
            (_, 0) => Rare::Blocks(None),
            (_, 1) => {
                let fuse = Fuse::read(&mut r)?;
                let fp_bits = u32::from(r.u8("fingerprint bits")?);
                let max_blocks = r.u64("blocks per rare token")?;
                let block_bits = fuse.width().checked_sub(fp_bits);
                let (Some(block_bits), 1..=255) = (block_bits, max_blocks) else {
                    return Err(format!(
                        "rare-token function of {} bits, {fp_bits} of fingerprint, {max_blocks} blocks per token",
                        fuse.width()
                    ));
                };
                Rare::Blocks(Some(RareBlocks {
                    fuse,
                    fp_bits,
                    block_bits,
                    max_blocks: max_blocks as u32,
                }))
            }
            (_, x) => return Err(format!("rare-token function flag {x}")),
        };
        let nterms = r.len("term count")?;
        let term_bytes = r.bytes("terms")?;
        // The postings are the rest of the body.
        let from = term_bytes.as_ptr() as usize + term_bytes.len() - body.as_ptr() as usize;
        let terms = term_bytes.to_vec();
        if terms.first() != Some(&SEP) || terms.last() != Some(&SEP) {
            return Err("malformed term string".into());
        }
        let mut starts = Vec::with_capacity(nterms + 1);
        let mut prev: &[u8] = &[];
        let inner = if terms.len() > 1 {
            &terms[1..terms.len() - 1]
        } else {
            &[][..]
        };
        for (i, t) in inner.split(|&b| b == SEP).enumerate() {
            if terms.len() == 1 {
                break;
            }
            if t.is_empty() || (i > 0 && t <= prev) {
                return Err("terms empty or not sorted".into());
            }
            starts.push((t.as_ptr() as usize - terms.as_ptr() as usize) as u32);
            prev = t;
        }
        if starts.len() != nterms {
            return Err(format!("{} terms, {nterms} announced", starts.len()));
        }
        starts.push(terms.len() as u32);
        let (mut long, mut long_ids, mut long_starts) = (vec![SEP], Vec::new(), Vec::new());
        for i in 0..nterms {
            let t = &terms[starts[i] as usize..starts[i + 1] as usize];
            if t.len() > LONG_TERM {
                long_ids.push(i as u32);
                long_starts.push(long.len() as u32);
                long.extend_from_slice(t);
            }
        }
        long_starts.push(long.len() as u32);
        let postings = body[from..].to_vec();
        let mut d = Decoder::new(&postings);
        let mut post_at = Vec::with_capacity(nterms + 1);
        let bad = |what: &str| format!("truncated or malformed {what}");
        for _ in 0..nterms {
            post_at.push(d.pos() as u32);
            let k = d.len(postings.len()).ok_or_else(|| bad("postings"))?;
            let mut b = 0u64;
            for _ in 0..k {
                b += d.uvarint().ok_or_else(|| bad("posting"))?;
                if b >= u64::from(blocks) {
                    return Err(format!("posting names block {b} of {blocks}"));
                }
            }
        }
        if !d.is_empty() {
            return Err("trailing bytes in the index".into());
        }
        post_at.push(postings.len() as u32);
        Ok(FullText {
            rare_len,
            rare,
            terms,
            starts,
            long,
            long_ids,
            long_starts,
            postings,
            post_at,
            file_bytes: 0,
        })
    }

    fn len(&self) -> usize {
        self.starts.len() - 1
    }

    fn term(&self, i: usize) -> &[u8] {
        &self.terms[self.starts[i] as usize..self.starts[i + 1] as usize - 1]
    }

    /// The id of term `t`.
    fn find(&self, t: &str) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.term(mid).cmp(t.as_bytes()) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    /// Ids of the terms in relation `rel` to `x`.
    fn related(&self, rel: Relation, x: &str) -> Vec<usize> {
        let x = x.as_bytes();
        if rel == Relation::Prefix {
            let from = partition(self.len(), |i| self.term(i) < x);
            return (from..self.len())
                .take_while(|&i| self.term(i).starts_with(x))
                .collect();
        }
        let mut pat = x.to_vec();
        if rel == Relation::Suffix {
            pat.push(SEP);
        }
        // A term holding `x` is at least as long.
        if x.len() >= LONG_TERM {
            let at = scan(&self.long, &self.long_starts, &pat);
            return at.into_iter().map(|i| self.long_ids[i] as usize).collect();
        }
        scan(&self.terms, &self.starts, &pat)
    }

    /// The only block that can hold `t` as a rare token, by a version 2
    /// function (any block without one; `u32::MAX`, none, when the
    /// function names a block the segment does not have).
    fn rare_block(&self, t: &str) -> Option<u32> {
        let Rare::Block(f) = &self.rare else {
            return None;
        };
        let b = f.get(hash(t));
        Some(if (b as usize) < self.rare_len.len() {
            b
        } else {
            u32::MAX
        })
    }

    /// True when rare tokens are found without token filters (version 3).
    fn confirms_rare(&self) -> bool {
        matches!(self.rare, Rare::Blocks(_))
    }

    /// Adds the blocks that may hold `t` as a rare token to `set` (version
    /// 3): the chain of blocks the function gives while fingerprints match.
    fn add_rare_blocks(&self, t: &str, set: &mut RoaringBitmap) {
        let Rare::Blocks(Some(r)) = &self.rare else {
            return;
        };
        let h = hash(t);
        let mask = (1u64 << r.block_bits) - 1;
        for i in 0..r.max_blocks {
            let k = chain_key(h, i);
            let v = u64::from(r.fuse.get(k));
            if v >> r.block_bits != u64::from(fingerprint(k, r.fp_bits)) {
                break;
            }
            let b = (v & mask) as u32;
            if (b as usize) < self.rare_len.len() {
                set.insert(b);
            }
        }
    }

    /// Adds term `i`'s blocks to `set`.
    fn add_postings(&self, i: usize, set: &mut RoaringBitmap) {
        let p = &self.postings[self.post_at[i] as usize..self.post_at[i + 1] as usize];
        let mut d = Decoder::new(p);
        let n = d.len(p.len()).unwrap_or(0);
        let mut b = 0u32;
        for _ in 0..n {
            // Checked at load.
            b += d.uvarint().unwrap_or(0) as u32;
            set.insert(b);
        }
    }
}

/// Numbers of the terms of a term string (`starts` as in [`FullText`]) in
/// which `pat` occurs.
fn scan(terms: &[u8], starts: &[u32], pat: &[u8]) -> Vec<usize> {
    let mut out: Vec<usize> = Vec::new();
    for pos in memchr::memmem::find_iter(terms, pat) {
        let i = partition(starts.len(), |i| starts[i] as usize <= pos) - 1;
        if out.last() != Some(&i) {
            out.push(i);
        }
    }
    out
}

/// The first `i` in `0..n` where `pred(i)` is false (`pred` true then false).
fn partition(n: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// How a token of the line relates to a needle token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relation {
    /// The line token starts with the needle token.
    Prefix,
    /// ... ends with it.
    Suffix,
    /// ... contains it.
    Infix,
}

/// A token looked up in the blocks' filters.
#[derive(Debug)]
struct Probe {
    token: String,
    /// The only block that can hold it (from the rare-token function);
    /// `None`: any.
    block: Option<u32>,
}

/// One condition a block must meet to be read: any of the three holds.
#[derive(Debug)]
struct Check {
    /// Blocks the dictionary lists.
    blocks: RoaringBitmap,
    /// Or the block's filter may hold this token.
    bloom: Option<Probe>,
    /// Or the block has a Bloom-only token longer than this.
    rare_longer_than: Option<usize>,
}

/// Which blocks of a segment a read must decompress for some needles.
pub(crate) struct Plan {
    ft: Option<Arc<FullText>>,
    checks: Vec<Check>,
}

impl Plan {
    /// The plan for `needles` with the segment's index, if it has one.
    pub(crate) fn new(ft: Option<Arc<FullText>>, needles: &[Needle]) -> Plan {
        let mut checks = Vec::new();
        // A token outside the dictionary: the rare-token function's
        // blocks (version 3), else the blocks whose filter may hold it.
        let rare = |t: &String, c: &mut Check| match ft.as_ref() {
            Some(f) if f.confirms_rare() => f.add_rare_blocks(t, &mut c.blocks),
            _ => {
                c.bloom = Some(Probe {
                    token: t.clone(),
                    block: ft.as_ref().and_then(|f| f.rare_block(t)),
                })
            }
        };
        for n in needles {
            for t in &n.whole {
                let mut c = Check {
                    blocks: RoaringBitmap::new(),
                    bloom: None,
                    rare_longer_than: None,
                };
                match ft.as_ref().and_then(|f| f.find(t).map(|i| (f, i))) {
                    Some((f, i)) => f.add_postings(i, &mut c.blocks),
                    None => rare(t, &mut c),
                }
                checks.push(c);
            }
            // Without the index an edge token says nothing about whole
            // tokens: no check.
            let Some(f) = ft.as_ref() else { continue };
            let edges = [
                (Relation::Prefix, &n.prefix),
                (Relation::Suffix, &n.suffix),
                (Relation::Infix, &n.infix),
            ];
            for (rel, x) in edges {
                let Some(x) = x else { continue };
                let mut c = Check {
                    blocks: RoaringBitmap::new(),
                    bloom: None,
                    rare_longer_than: Some(x.len()),
                };
                if f.find(x).is_none() {
                    rare(x, &mut c);
                }
                for i in f.related(rel, x) {
                    f.add_postings(i, &mut c.blocks);
                }
                checks.push(c);
            }
        }
        Plan { ft, checks }
    }

    /// True when block `b` (its number in the segment) with filter
    /// `filter` (`None`: the block has none) may hold a matching line.
    pub(crate) fn admits(&self, b: u32, filter: Option<&TokenFilter>) -> bool {
        let rare = self
            .ft
            .as_ref()
            .and_then(|f| f.rare_len.get(b as usize))
            .map_or(usize::MAX, |&l| usize::from(l));
        self.checks.iter().all(|c| {
            c.blocks.contains(b)
                || c.bloom.as_ref().is_some_and(|p| {
                    p.block.is_none_or(|only| only == b)
                        && filter.is_none_or(|f| f.may_contain(&p.token))
                })
                || c.rare_longer_than.is_some_and(|l| rare > l)
        })
    }
}

/// Opens a segment's index; a damaged one is reported and ignored (reads
/// are slower, answers the same).
pub(crate) fn open(dir: &Path, blocks: u32) -> Option<Arc<FullText>> {
    match FullText::load(dir, blocks) {
        Ok(ft) => ft.map(Arc::new),
        Err(reason) => {
            tracing::warn!(segment = %dir.display(), %reason, "full-text index unreadable; the segment is read as warm");
            None
        }
    }
}

impl Segment {
    /// Bytes of the segment's files, its full-text index included.
    pub(crate) fn stored_bytes(&self) -> u64 {
        self.disk_bytes
            + self.fulltext.read().as_ref().map_or(0, |f| f.file_bytes)
            + self
                .warm_filters
                .read()
                .as_ref()
                .map_or(0, |w| w.file_bytes)
    }

    /// Adds the full-text index's bytes to `add`: the rare-token function
    /// and the rest (dictionary, postings, framing); returns the keys the
    /// function holds (rare tokens; since version 3 one per rare token and
    /// block).
    pub(crate) fn add_fulltext_parts(&self, add: &mut impl FnMut(&str, u64)) -> u64 {
        let Some(f) = self.fulltext.read().clone() else {
            return 0;
        };
        let fuse = match &f.rare {
            Rare::Block(f) | Rare::Blocks(Some(RareBlocks { fuse: f, .. })) => Some(f),
            Rare::Filters | Rare::Blocks(None) => None,
        };
        let function = fuse.map_or(0, |r| r.byte_len() as u64);
        add("full-text (hot): rare-token function", function);
        add(
            "full-text (hot): dictionary, postings",
            f.file_bytes.saturating_sub(function),
        );
        fuse.map_or(0, Fuse::keys)
    }

    /// Moves the segment to the warm tier: writes the token filters its
    /// blocks were written without (before the index goes: a query that
    /// finds no index finds them), then drops its full-text index. True
    /// when it had one.
    fn demote(&self) -> Result<bool, StorageError> {
        if self.lacks_filters() && self.warm_filters.read().is_none() {
            let w = super::filters::build(self)?;
            *self.warm_filters.write() = Some(Arc::new(w));
        }
        if self.fulltext.read().is_none() {
            return Ok(false);
        }
        let path = self.dir.join(FILE);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(format!("remove {}", path.display()))(e)),
        }
        *self.fulltext.write() = None;
        Ok(true)
    }
}

/// When the segment in `dir` was written, Unix ns: the time in its name (a
/// ULID, milliseconds in its first 10 characters), else the directory's
/// modification time, else `None`.
fn written_ns(dir: &Path) -> Option<i64> {
    let name = dir.file_name().and_then(|n| n.to_str());
    let from_name = name
        .and_then(block_id_ms)
        .map(|ms| ms.saturating_mul(1_000_000));
    from_name.or_else(|| {
        let t = fs::metadata(dir).and_then(|m| m.modified()).ok()?;
        let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
        i64::try_from(d.as_nanos()).ok()
    })
}

impl LogStore {
    /// Moves segments written longer than the hot window before `now_ns`
    /// (Unix ns) to the warm tier (writes the token filters their blocks
    /// lack, drops their full-text index); updates the index gauge. The
    /// age is the segment's, not its entries': backfilled logs just
    /// ingested are hot. The maintenance thread calls it; benchmarks and
    /// tests force the conversion with a later `now_ns`.
    pub fn apply_tiering(&self, now_ns: i64) -> Result<(), StorageError> {
        let window = self.opts.fulltext_hot_window_ns;
        let cutoff = now_ns.saturating_sub(window);
        let mut bytes = 0u64;
        for (tenant, t) in self.all_tenants() {
            let segments = t.read().segments.clone();
            for s in segments {
                if window <= 0 || written_ns(&s.dir).is_some_and(|w| w < cutoff) {
                    // One segment failing (a damaged block) does not stop
                    // the others; it is tried again on the next pass.
                    match s.demote() {
                        Ok(true) => {
                            metrics::counter!(FULLTEXT_SEGMENTS_DEMOTED_TOTAL).increment(1);
                            tracing::info!(tenant = %tenant, segment = %s.dir.display(), "log segment moved to the warm tier (token filters written, full-text index dropped)");
                        }
                        Ok(false) => {}
                        Err(e) => {
                            tracing::error!(tenant = %tenant, segment = %s.dir.display(), error = %e, "log segment not moved to the warm tier")
                        }
                    }
                } else if let Some(f) = s.fulltext.read().as_ref() {
                    bytes += f.file_bytes;
                }
            }
        }
        metrics::gauge!(FULLTEXT_BYTES).set(bytes as f64);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(lines: &[&str]) -> Vec<LogEntry> {
        lines.iter().map(|l| LogEntry::new(0, *l)).collect()
    }

    fn settings(rare_max_len: usize, rare_max_blocks: u32) -> Settings {
        Settings {
            rare_max_len,
            rare_max_blocks,
            fingerprint_bits: 8,
        }
    }

    /// Builds an index over `blocks` and loads it back, with the filters
    /// the blocks get when they turn warm.
    fn build(blocks: &[Vec<LogEntry>], s: Settings) -> (FullText, Vec<TokenFilter>) {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Builder::new(Some(s));
        for es in blocks {
            assert!(b.add_block(es).is_none(), "hot blocks get no filter");
        }
        let filters = blocks.iter().map(|es| block_filter(es)).collect();
        b.write(dir.path()).unwrap();
        let ft = FullText::load(dir.path(), blocks.len() as u32)
            .unwrap()
            .unwrap();
        (ft, filters)
    }

    fn terms(ft: &FullText, ids: Vec<usize>) -> Vec<String> {
        ids.into_iter()
            .map(|i| String::from_utf8(ft.term(i).to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn dictionary_keeps_shared_and_long_tokens_and_finds_relations() {
        let blocks = [
            entries(&["GET /api/users id=abc123 user=u42", "cache miss"]),
            entries(&["GET /api/orders id=zzz999 user=u42 cachemiss"]),
        ];
        let (ft, _) = build(&blocks, settings(6, 1));
        // abc123, zzz999, users, orders, miss and cache are in one block
        // each and short: Bloom only; cachemiss is longer than 6.
        assert_eq!(
            terms(&ft, (0..ft.len()).collect()),
            ["GET", "api", "cachemiss", "id", "u42", "user"]
        );
        assert_eq!(ft.rare_len, [6, 6]);
        assert_eq!(
            terms(&ft, ft.related(Relation::Prefix, "u")),
            ["u42", "user"]
        );
        assert_eq!(terms(&ft, ft.related(Relation::Suffix, "i")), ["api"]);
        assert_eq!(
            terms(&ft, ft.related(Relation::Infix, "s")),
            ["cachemiss", "user"]
        );
        // Needles of LONG_TERM bytes or more scan the long terms only.
        assert_eq!(
            terms(&ft, ft.related(Relation::Infix, "achemis")),
            ["cachemiss"]
        );
        assert_eq!(
            terms(&ft, ft.related(Relation::Infix, "achemiss")),
            ["cachemiss"]
        );
        assert_eq!(
            terms(&ft, ft.related(Relation::Suffix, "achemiss")),
            ["cachemiss"]
        );
        assert!(ft.related(Relation::Suffix, "cachemis").is_empty());
        assert_eq!(ft.find("id"), Some(3));
        assert_eq!(ft.find("ie"), None);
    }

    #[test]
    fn metadata_values_are_indexed() {
        let mut e = LogEntry::new(0, "plain line");
        e.metadata = crate::model::Labels::from_pairs([("trace_id", "t0ken")]);
        let blocks = [vec![e.clone()], vec![e]];
        let (ft, _) = build(&blocks, settings(16, 1));
        assert!(ft.find("t0ken").is_some());
        assert!(ft.find("trace_id").is_none());
    }

    /// A block is admitted whenever one of its lines contains the needle
    /// (brute force over generated data), and most others are skipped.
    #[test]
    fn plans_admit_every_block_holding_the_needle() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        let words = ["alpha", "beta", "gamma", "delta", "epsilon"];
        let blocks: Vec<Vec<LogEntry>> = (0..40)
            .map(|_| {
                (0..50)
                    .map(|_| {
                        let id: u32 = rng.random();
                        let w = words[rng.random_range(0..words.len())];
                        let u = rng.random_range(0..300);
                        LogEntry::new(0, format!("{w} req={id:08x} user=u{u} long{id:08x}x{u}"))
                    })
                    .collect()
            })
            .collect();
        let (ft, filters) = build(&blocks, settings(8, 1));
        let ft = Arc::new(ft);
        let all_lines: Vec<&str> = blocks.iter().flatten().map(|e| e.line.as_str()).collect();
        let mut needles: Vec<String> = vec![
            "alpha".into(),
            "lph".into(),
            "user=u1".into(),
            "=u12 ".into(),
            "ser=u2".into(),
            "nothere".into(),
            "eta req".into(),
        ];
        for l in all_lines.iter().step_by(97) {
            let id = &l[l.find("req=").unwrap() + 4..][..8];
            needles.push(id.to_string());
            needles.push(format!("={id} "));
            needles.push(id[2..].to_string());
            needles.push(format!("long{id}"));
        }
        let mut skipped_any = false;
        for h in &needles {
            for warm in [false, true] {
                let plan = Plan::new((!warm).then(|| ft.clone()), &[Needle::of(h)]);
                for (b, es) in blocks.iter().enumerate() {
                    let holds = es.iter().any(|e| e.line.contains(h.as_str()));
                    let admitted = plan.admits(b as u32, warm.then(|| &filters[b]));
                    assert!(!holds || admitted, "{h:?} (warm {warm}) skipped block {b}");
                    skipped_any |= !warm && !holds && !admitted;
                }
            }
            if h.len() == 8 && !h.contains('=') {
                // A whole 8-hex id (as long as the rare tokens) reads only
                // the block the rare-token function names.
                let plan = Plan::new(Some(ft.clone()), &[Needle::of(h)]);
                let read = (0..blocks.len() as u32)
                    .filter(|&b| plan.admits(b, None))
                    .count();
                assert_eq!(read, 1, "{h}: {read} blocks read");
            }
        }
        assert!(skipped_any);
    }

    /// Ids found in a few blocks (a request logged by several services)
    /// are read through the function: exactly their blocks, give or take
    /// a fingerprint collision; ids in more blocks are dictionary terms.
    #[test]
    fn tokens_in_a_few_blocks_are_found_through_the_function() {
        use rand::{Rng, SeedableRng};
        use std::collections::BTreeSet;
        let mut rng = rand::rngs::SmallRng::seed_from_u64(4);
        let mut blocks: Vec<Vec<LogEntry>> = vec![Vec::new(); 40];
        let mut ids = Vec::new();
        for i in 0..600 {
            let id = format!("{:016x}", rng.random::<u64>());
            let mut holders = BTreeSet::new();
            for _ in 0..1 + i % 6 {
                let b = rng.random_range(0..blocks.len());
                blocks[b].push(LogEntry::new(0, format!("req={id} ok")));
                holders.insert(b as u32);
            }
            ids.push((id, holders));
        }
        let (ft, filters) = build(&blocks, settings(16, 4));
        let ft = Arc::new(ft);
        let (mut extra, mut in_dict) = (0, 0);
        for (id, holders) in &ids {
            assert_eq!(ft.find(id).is_some(), holders.len() > 4, "{id}");
            in_dict += usize::from(holders.len() > 4);
            for needle in [id.clone(), format!("={id} "), id[3..].to_string()] {
                let plan = Plan::new(Some(ft.clone()), &[Needle::of(&needle)]);
                let read: BTreeSet<u32> = (0..blocks.len() as u32)
                    .filter(|&b| plan.admits(b, None))
                    .collect();
                assert!(read.is_superset(holders), "{needle}: {read:?} {holders:?}");
                // A part of an id reads the blocks whose rare tokens are
                // longer than it.
                if needle.len() >= id.len() {
                    extra += read.len() - holders.len();
                }
                // Warm: the filters hold every token.
                let plan = Plan::new(None, &[Needle::of(&needle)]);
                for &b in holders {
                    assert!(plan.admits(b, Some(&filters[b as usize])));
                }
            }
        }
        assert!(in_dict > 50, "{in_dict}");
        // Whole ids: ~0.4% of lookups read one more block.
        assert!(extra < 20, "{extra} blocks read beyond the holders");
    }

    #[test]
    fn segment_age_is_read_from_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let before = chrono::Utc::now().timestamp_millis() * 1_000_000;
        let id = crate::storage::tsdb::block::dir::new_block_id();
        let after = chrono::Utc::now().timestamp_millis() * 1_000_000;
        let w = written_ns(&dir.path().join(&id)).unwrap();
        assert!((before..=after).contains(&w), "{id}: {w}");
        // Not a ULID: the directory's modification time.
        let w = written_ns(dir.path()).unwrap();
        assert!((w - before).abs() < 60_000_000_000, "{w} vs {before}");
        assert_eq!(written_ns(&dir.path().join("missing")), None);
    }

    /// Absent rare-looking tokens: the hot tier probes one block's filter
    /// per segment, the warm tier every block's (Bloom false positives).
    #[test]
    fn absent_ids_read_almost_no_blocks_when_hot() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(2);
        let blocks: Vec<Vec<LogEntry>> = (0..64)
            .map(|_| {
                (0..300)
                    .map(|_| LogEntry::new(0, format!("id={:016x} ok", rng.random::<u64>())))
                    .collect()
            })
            .collect();
        let (ft, filters) = build(&blocks, settings(16, 4));
        let Rare::Blocks(Some(r)) = &ft.rare else {
            panic!("no rare-token function");
        };
        assert_eq!(r.fuse.keys(), 64 * 300);
        let ft = Arc::new(ft);
        let (mut hot, mut warm) = (0, 0);
        for i in 0..2000 {
            let n = [Needle::of(&format!("={:016x} ", rng.random::<u64>() ^ i))];
            let read = |plan: Plan, warm: bool| {
                (0..64u32)
                    .filter(|&b| plan.admits(b, warm.then(|| &filters[b as usize])))
                    .count()
            };
            hot += read(Plan::new(Some(ft.clone()), &n), false);
            warm += read(Plan::new(None, &n), true);
        }
        // Warm: 10 bits per token, 6 probes: ~0.8% per block. Hot: 8-bit
        // fingerprints, ~0.4% per segment (and per further step of a chain).
        assert!(warm > 300, "warm read {warm} blocks for 2000 absent ids");
        assert!(hot < 25, "hot read {hot} blocks for 2000 absent ids");
    }

    #[test]
    fn version_1_files_are_read_without_the_function() {
        let mut body = Vec::new();
        put_uvarint(&mut body, 2);
        body.extend_from_slice(&[3, 0]);
        put_uvarint(&mut body, 1);
        put_bytes(&mut body, b"\nshared\n");
        body.extend_from_slice(&[2, 0, 1]);
        let ft = Arc::new(FullText::parse(&body, 2, 1).unwrap());
        assert!(matches!(ft.rare, Rare::Filters));
        assert!(FullText::parse(&body, 2, 2).is_err());
        let filter = TokenFilter::build(&[hash("abc")]);
        let plan = Plan::new(Some(ft), &[Needle::of(" abc ")]);
        assert!(plan.admits(0, Some(&filter)) && plan.admits(1, Some(&filter)));
        assert!(!plan.admits(0, Some(&TokenFilter::build(&[hash("abd")]))));
    }

    #[test]
    fn damaged_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let blocks = [entries(&["a b"]), entries(&["a c"])];
        let mut b = Builder::new(Some(settings(16, 8)));
        for es in &blocks {
            b.add_block(es);
        }
        b.write(dir.path()).unwrap();
        let path = dir.path().join(FILE);
        let good = fs::read(&path).unwrap();
        assert!(FullText::load(dir.path(), 2).unwrap().is_some());
        assert!(FullText::load(dir.path(), 3).is_err());
        let mut bad = good.clone();
        let n = bad.len();
        bad[n - 5] ^= 1;
        fs::write(&path, &bad).unwrap();
        assert!(FullText::load(dir.path(), 2)
            .unwrap_err()
            .contains("checksum"));
        fs::write(&path, &good[..10]).unwrap();
        assert!(FullText::load(dir.path(), 2).is_err());
        fs::remove_file(&path).unwrap();
        assert!(FullText::load(dir.path(), 2).unwrap().is_none());
    }
}
