//! The `chunks` file of a block and the per-chunk encodings.
//!
//! File: `MAGIC_CHUNKS`, version byte, then chunk records
//! `uvarint len | payload | crc32c(payload) u32 BE`. A chunk reference is the
//! record's byte offset. The payload starts with an encoding byte:
//! - [`ENC_XOR`]: a Gorilla chunk ([`XorChunk`]: delta-of-delta timestamps,
//!   XOR floats), for arbitrary floats;
//! - [`ENC_PACKED`]: `uvarint count`, the timestamps as an integer sequence,
//!   a decimal exponent `e` and the values as the integers `v * 10^e`
//!   (exact round trip required), both with [`super::format::encode_ints`].
//!   Counters and gauges with few distinct values cost a few bits per sample.
//!
//! - [`ENC_TIMES`]: `uvarint count` and timestamps as an integer sequence:
//!   a timestamp column shared by the chunks that follow it (all series of
//!   one scrape target carry the same timestamps). Not a chunk itself: the
//!   index never points at it.
//! - [`ENC_PACKED_SHARED`]: [`ENC_PACKED`] without its timestamps:
//!   `uvarint back` (the [`ENC_TIMES`] record sits `back` bytes before this
//!   record), the decimal exponent and the values. Format version 2.
//!
//! Format version 6 groups records into checksummed pages and moves the
//! timestamp-column references into the index:
//! - file: `MAGIC_CHUNKS`, version byte, then pages `uvarint body_len |
//!   body | crc32c(body) u32 BE`, a body being records `uvarint len |
//!   payload` (no per-record checksum); a page is closed once it holds
//!   [`PAGE_BYTES`] or [`PAGE_RECORDS`] records. A reference is `page
//!   offset << 12 | record number in the page`.
//! - [`ENC_COLUMN`]` + e` (`e` the decimal exponent, at most
//!   [`MAX_DECIMAL_EXP`]): the values of a packed chunk whose timestamps are
//!   an [`ENC_TIMES`] column; the index names the column (its table lists
//!   every column's first and last timestamp and reference).
//!
//! The writer ([`ChunkWriter`]) encodes the candidates and keeps the smallest.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use crate::model::Sample;
use crate::storage::tsdb::chunk::{XorChunk, XorIter};

use super::format::{decode_ints, decode_ints_with, encode_ints, put_uvarint, Decoder};

/// Magic at the start of a `chunks` file.
pub(crate) const MAGIC_CHUNKS: &[u8; 4] = b"STCK";
/// Gorilla XOR encoding.
pub(crate) const ENC_XOR: u8 = 1;
/// Packed integer timestamps and decimal values.
pub(crate) const ENC_PACKED: u8 = 2;
/// A shared timestamp column (format version 2).
pub(crate) const ENC_TIMES: u8 = 3;
/// Packed decimal values over a shared timestamp column (format version 2).
pub(crate) const ENC_PACKED_SHARED: u8 = 4;
/// Packed decimal values over a timestamp column named by the index (format
/// version 6): `ENC_COLUMN + e`.
pub(crate) const ENC_COLUMN: u8 = 0x10;
/// First chunks-file version with pages and index-named columns.
pub(crate) const PAGED_VERSION: u8 = 6;
/// A page is closed once its body holds this many bytes.
const PAGE_BYTES: usize = 4096;
/// Most records per page (the low bits of a reference).
const PAGE_RECORDS: u64 = 1 << 12;
/// Timestamp columns remembered for sharing while writing one block (the
/// table is cleared when full, which only costs sharing).
const MAX_SHARED_TIMES: usize = 1 << 16;
/// Largest decimal exponent tried for [`ENC_PACKED`].
const MAX_DECIMAL_EXP: u8 = 9;
/// Most samples a packed chunk may claim (bounds allocation on corrupt input).
const MAX_PACKED_SAMPLES: usize = 1 << 16;
/// Samples per chunk written by blocks.
pub(crate) const CHUNK_SAMPLES: usize = 480;

/// Encodes samples (sorted, unique timestamps, at most
/// [`crate::storage::tsdb::chunk::MAX_CHUNK_SAMPLES`]) as the smaller of the
/// available encodings.
pub(crate) fn encode_chunk(samples: &[Sample]) -> Vec<u8> {
    let mut best = None;
    if let Some(p) = encode_packed(samples) {
        best = Some(p);
    }
    if samples.len() <= crate::storage::tsdb::chunk::MAX_CHUNK_SAMPLES {
        let mut c = XorChunk::new();
        let appended = samples.iter().all(|s| c.append(s.t, s.v));
        if appended
            && best
                .as_ref()
                .is_none_or(|b: &Vec<u8>| c.byte_len() + 1 < b.len())
        {
            let mut out = vec![ENC_XOR];
            out.extend_from_slice(&c.to_bytes());
            best = Some(out);
        }
    }
    best.unwrap_or_else(|| {
        // Only reachable for out-of-order input the XOR chunk refuses and a
        // value set that is not decimal: store the floats' bit patterns.
        let mut out = vec![ENC_PACKED];
        put_uvarint(&mut out, samples.len() as u64);
        let ts: Vec<i64> = samples.iter().map(|s| s.t).collect();
        encode_ints(&ts, &mut out);
        out.push(RAW_BITS);
        let vs: Vec<i64> = samples.iter().map(|s| s.v.to_bits() as i64).collect();
        encode_ints(&vs, &mut out);
        out
    })
}

/// Exponent byte meaning "the integers are the floats' raw bit patterns".
const RAW_BITS: u8 = 0xff;

fn pow10(e: u8) -> f64 {
    10f64.powi(i32::from(e))
}

/// The smallest exponent `e` with every value exactly `m / 10^e`.
fn decimal_exponent(samples: &[Sample]) -> Option<(u8, Vec<i64>)> {
    const LIMIT: f64 = 9_007_199_254_740_992.0; // 2^53
    'exp: for e in 0..=MAX_DECIMAL_EXP {
        let scale = pow10(e);
        let mut ms = Vec::with_capacity(samples.len());
        for s in samples {
            let m = (s.v * scale).round();
            // Checked through the integer the decoder sees (-0.0 is not 0).
            if !m.is_finite()
                || m.abs() >= LIMIT
                || (m as i64 as f64 / scale).to_bits() != s.v.to_bits()
            {
                continue 'exp;
            }
            ms.push(m as i64);
        }
        return Some((e, ms));
    }
    None
}

fn encode_packed(samples: &[Sample]) -> Option<Vec<u8>> {
    let (e, ms) = decimal_exponent(samples)?;
    let mut out = vec![ENC_PACKED];
    put_uvarint(&mut out, samples.len() as u64);
    let ts: Vec<i64> = samples.iter().map(|s| s.t).collect();
    encode_ints(&ts, &mut out);
    out.push(e);
    encode_ints(&ms, &mut out);
    Some(out)
}

/// Decodes a chunk payload; `None` when it is malformed.
pub(crate) fn decode_chunk(payload: &[u8]) -> Option<Vec<Sample>> {
    let mut out = Vec::new();
    append_chunk(payload, i64::MIN, i64::MAX, &mut out)?;
    Some(out)
}

/// Appends the samples of a chunk payload with timestamps in `[mint,
/// maxt]` to `out`; `None` when it is malformed (`out` may then hold part
/// of it).
fn append_chunk(payload: &[u8], mint: i64, maxt: i64, out: &mut Vec<Sample>) -> Option<()> {
    let (&enc, body) = payload.split_first()?;
    match enc {
        ENC_XOR => {
            let mut it = XorIter::new(body);
            out.extend(
                it.by_ref()
                    .filter(|&(t, _)| t >= mint && t <= maxt)
                    .map(|(t, v)| Sample::new(t, v)),
            );
            (!it.failed()).then_some(())
        }
        ENC_PACKED => {
            let mut d = Decoder::new(body);
            let n = d.len(MAX_PACKED_SAMPLES)?;
            let ts = decode_ints(&mut d, n)?;
            let e = d.u8()?;
            append_values(&mut d, &ts, e, mint, maxt, out)
        }
        _ => None,
    }
}

/// Decodes the exponent-`e` values that follow a packed chunk's timestamps
/// `ts` and appends the samples with timestamps in `[mint, maxt]` to `out`
/// (no intermediate vectors); the decoder must end with them.
fn append_values(
    d: &mut Decoder<'_>,
    ts: &[i64],
    e: u8,
    mint: i64,
    maxt: i64,
    out: &mut Vec<Sample>,
) -> Option<()> {
    let raw = e == RAW_BITS;
    if !raw && e > MAX_DECIMAL_EXP {
        return None;
    }
    let scale = pow10(if raw { 0 } else { e });
    let inside = |t: i64| t >= mint && t <= maxt;
    if ts.first().is_some_and(|&t| inside(t)) && ts.last().is_some_and(|&t| inside(t)) {
        out.reserve(ts.len());
    }
    let mut times = ts.iter();
    decode_ints_with(d, ts.len(), |m| {
        if let Some(&t) = times.next().filter(|&&t| inside(t)) {
            let v = if raw {
                f64::from_bits(m as u64)
            } else {
                m as f64 / scale
            };
            out.push(Sample::new(t, v));
        }
    })?;
    d.is_empty().then_some(())
}

/// Reads and decodes the chunk at `offset` of a `chunks` file (resolving a
/// shared timestamp column).
pub(crate) fn read_chunk(file: &[u8], offset: u64) -> Result<Vec<Sample>, String> {
    let payload = read_record(file, offset)?;
    let malformed = || format!("chunk at {offset}: malformed");
    let Some((&ENC_PACKED_SHARED, body)) = payload.split_first() else {
        return decode_chunk(payload).ok_or_else(malformed);
    };
    let mut d = Decoder::new(body);
    let back = d
        .uvarint()
        .filter(|&b| b > 0 && b <= offset)
        .ok_or_else(malformed)?;
    let ts = decode_times(read_record(file, offset - back)?)
        .ok_or_else(|| format!("chunk at {offset}: bad timestamp column"))?;
    let e = d.u8().ok_or_else(malformed)?;
    let mut out = Vec::new();
    append_values(&mut d, &ts, e, i64::MIN, i64::MAX, &mut out).ok_or_else(malformed)?;
    Ok(out)
}

/// Decodes an [`ENC_TIMES`] payload.
fn decode_times(payload: &[u8]) -> Option<Vec<i64>> {
    match payload.split_first() {
        Some((&ENC_TIMES, t)) => {
            let mut td = Decoder::new(t);
            td.len(MAX_PACKED_SAMPLES)
                .and_then(|n| decode_ints(&mut td, n))
                .filter(|_| td.is_empty())
        }
        _ => None,
    }
}

/// The payload of record `r` of a paged (version 6) `chunks` file, after
/// verifying its page's checksum.
pub(crate) fn read_paged(file: &[u8], r: u64) -> Result<&[u8], String> {
    let idx = r & (PAGE_RECORDS - 1);
    let body = read_framed(file, r >> 12, "chunk page")?;
    let mut d = Decoder::new(body);
    for i in 0..=idx {
        let rec = d
            .len(body.len())
            .and_then(|n| d.bytes(n))
            .ok_or_else(|| format!("chunk ref {r}: no record {idx} in its page"))?;
        if i == idx {
            return Ok(rec);
        }
    }
    unreachable!("the loop returns at its last iteration")
}

/// Reads and decodes the timestamp column at reference `t` of a paged
/// `chunks` file (one column serves every chunk that names it).
pub(crate) fn read_times_paged(file: &[u8], t: u64) -> Result<Vec<i64>, String> {
    decode_times(read_paged(file, t)?).ok_or_else(|| format!("bad timestamp column {t}"))
}

/// Reads and decodes chunk `r` of a paged `chunks` file; `times` is the
/// reference of its timestamp column (from the index) when it has one.
#[cfg(test)]
pub(crate) fn read_chunk_paged(
    file: &[u8],
    r: u64,
    times: Option<u64>,
) -> Result<Vec<Sample>, String> {
    let ts = times.map(|t| read_times_paged(file, t)).transpose()?;
    let mut out = Vec::new();
    append_chunk_paged(file, r, ts.as_deref(), i64::MIN, i64::MAX, &mut out)?;
    Ok(out)
}

/// Appends the samples of chunk `r` of a paged `chunks` file with
/// timestamps in `[mint, maxt]` to `out`, decoding straight into it;
/// `times` is its decoded timestamp column when the index names one. On
/// error `out` may hold part of the chunk.
pub(crate) fn append_chunk_paged(
    file: &[u8],
    r: u64,
    times: Option<&[i64]>,
    mint: i64,
    maxt: i64,
    out: &mut Vec<Sample>,
) -> Result<(), String> {
    let payload = read_paged(file, r)?;
    let malformed = || format!("chunk {r}: malformed");
    match (payload.split_first(), times) {
        (Some((&enc, body)), Some(ts))
            if (ENC_COLUMN..=ENC_COLUMN + MAX_DECIMAL_EXP).contains(&enc) =>
        {
            let mut d = Decoder::new(body);
            append_values(&mut d, ts, enc - ENC_COLUMN, mint, maxt, out).ok_or_else(malformed)
        }
        (_, None) => append_chunk(payload, mint, maxt, out).ok_or_else(malformed),
        _ => Err(malformed()),
    }
}

/// Where a chunk went: its reference and, for a column chunk, the ordinal of
/// its timestamp column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Added {
    pub(crate) r: u64,
    pub(crate) column: Option<u32>,
}

/// A timestamp column as the index lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Column {
    pub(crate) min_t: i64,
    pub(crate) max_t: i64,
    pub(crate) r: u64,
}

/// Builds a paged (version 6) `chunks` file: chunk records in order, with
/// timestamp columns written once and shared by every packed chunk that has
/// them.
pub(crate) struct ChunkWriter {
    /// Closed pages not taken yet.
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    taken: u64,
    /// Body and record count of the open page.
    page: Vec<u8>,
    records: u64,
    columns: Vec<Column>,
    /// Timestamp columns written so far: 128-bit hash to ordinal.
    times: HashMap<(u64, u64), u32>,
    hashers: (RandomState, RandomState),
}

impl ChunkWriter {
    /// A writer whose file starts with `header`.
    pub(crate) fn new(header: &[u8]) -> ChunkWriter {
        ChunkWriter {
            buf: header.to_vec(),
            taken: 0,
            page: Vec::new(),
            records: 0,
            columns: Vec::new(),
            times: HashMap::new(),
            hashers: (RandomState::new(), RandomState::new()),
        }
    }

    /// Bytes buffered and not taken yet.
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len() + self.page.len()
    }

    /// The timestamp columns written, by ordinal.
    pub(crate) fn columns(&self) -> &[Column] {
        &self.columns
    }

    fn close_page(&mut self) {
        if self.records == 0 {
            return;
        }
        put_uvarint(&mut self.buf, self.page.len() as u64);
        self.buf.extend_from_slice(&self.page);
        self.buf
            .extend_from_slice(&crc32c::crc32c(&self.page).to_be_bytes());
        self.page.clear();
        self.records = 0;
    }

    /// Closes the open page and hands out the buffered bytes (to be
    /// appended to the file).
    pub(crate) fn take(&mut self) -> Vec<u8> {
        self.close_page();
        self.taken += self.buf.len() as u64;
        std::mem::take(&mut self.buf)
    }

    fn put(&mut self, payload: &[u8]) -> u64 {
        if self.page.len() >= PAGE_BYTES || self.records >= PAGE_RECORDS {
            self.close_page();
        }
        let r = (self.taken + self.buf.len() as u64) << 12 | self.records;
        put_uvarint(&mut self.page, payload.len() as u64);
        self.page.extend_from_slice(payload);
        self.records += 1;
        r
    }

    /// Appends `samples` (sorted, unique timestamps) as one chunk in the
    /// smallest encoding.
    pub(crate) fn add(&mut self, samples: &[Sample]) -> Added {
        if let Some(a) = self.add_column(samples) {
            return a;
        }
        Added {
            r: self.put(&encode_chunk(samples)),
            column: None,
        }
    }

    /// Writes a packed chunk over a shared timestamp column when the values
    /// are decimal and that beats Gorilla XOR.
    fn add_column(&mut self, samples: &[Sample]) -> Option<Added> {
        if samples.len() < 2 {
            return None;
        }
        let (e, ms) = decimal_exponent(samples)?;
        let ts: Vec<i64> = samples.iter().map(|s| s.t).collect();
        let key = (self.hashers.0.hash_one(&ts), self.hashers.1.hash_one(&ts));
        let known = self.times.get(&key).copied();
        let mut times = Vec::new();
        if known.is_none() {
            times.push(ENC_TIMES);
            put_uvarint(&mut times, ts.len() as u64);
            encode_ints(&ts, &mut times);
        }
        let mut values = vec![ENC_COLUMN + e];
        encode_ints(&ms, &mut values);
        // Costs of the framings (record length, index entry) included.
        let column = values.len() + 2 + if known.is_none() { times.len() + 8 } else { 0 };
        if xor_len(samples).is_some_and(|x| x + 5 < column) {
            return None;
        }
        let ordinal = match known {
            Some(k) => k,
            None => {
                if self.times.len() >= MAX_SHARED_TIMES {
                    self.times.clear();
                }
                let r = self.put(&times);
                let k = self.columns.len() as u32;
                self.columns.push(Column {
                    min_t: ts[0],
                    max_t: ts[ts.len() - 1],
                    r,
                });
                self.times.insert(key, k);
                k
            }
        };
        Some(Added {
            r: self.put(&values),
            column: Some(ordinal),
        })
    }
}

/// Bytes of `samples` as a Gorilla XOR payload (with its encoding byte), if
/// XOR can hold them.
fn xor_len(samples: &[Sample]) -> Option<usize> {
    if samples.len() > crate::storage::tsdb::chunk::MAX_CHUNK_SAMPLES {
        return None;
    }
    let mut c = XorChunk::new();
    samples
        .iter()
        .all(|s| c.append(s.t, s.v))
        .then(|| c.byte_len() + 1)
}

/// The payload of the chunk record at `offset` of a version 1-5 `chunks`
/// file, after verifying its checksum.
pub(crate) fn read_record(file: &[u8], offset: u64) -> Result<&[u8], String> {
    read_framed(file, offset, "chunk")
}

/// Reads `uvarint len | bytes | crc32c u32 BE` at `offset` (a record of a
/// version 1-5 file, a page of version 6) and verifies the checksum; errors
/// name `what` and the offset.
fn read_framed<'a>(file: &'a [u8], offset: u64, what: &str) -> Result<&'a [u8], String> {
    let start = usize::try_from(offset).map_err(|_| format!("{what} ref {offset} out of range"))?;
    if start < MAGIC_CHUNKS.len() + 1 || start >= file.len() {
        return Err(format!("{what} ref {offset} out of range"));
    }
    let mut d = Decoder::new(&file[start..]);
    let len = d
        .len(file.len())
        .ok_or_else(|| format!("{what} at {offset}: bad length"))?;
    let payload = d
        .bytes(len)
        .ok_or_else(|| format!("{what} at {offset}: truncated"))?;
    let crc = d
        .u32_be()
        .ok_or_else(|| format!("{what} at {offset}: truncated checksum"))?;
    if crc32c::crc32c(payload) != crc {
        return Err(format!("{what} at {offset}: checksum mismatch"));
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(samples: &[Sample]) -> usize {
        let enc = encode_chunk(samples);
        let got = decode_chunk(&enc).unwrap_or_else(|| {
            panic!(
                "decodes {} samples, enc {:?}",
                samples.len(),
                &enc[..enc.len().min(20)]
            )
        });
        assert_eq!(got.len(), samples.len());
        for (g, w) in got.iter().zip(samples) {
            assert_eq!(g.t, w.t);
            assert_eq!(g.v.to_bits(), w.v.to_bits(), "{} vs {}", g.v, w.v);
        }
        enc.len()
    }

    #[test]
    fn encodings_round_trip_exactly() {
        let t0 = 1_700_000_000_000i64;
        let counter: Vec<Sample> = (0..240)
            .map(|i| Sample::new(t0 + i * 15_000, (1000 + i * i * 13) as f64))
            .collect();
        assert!(
            check(&counter) < 240,
            "integer counter packs below 1 byte/sample"
        );
        let cpu: Vec<Sample> = (0..240)
            .map(|i| {
                Sample::new(
                    t0 + i * 15_000,
                    (12345.67f64 + i as f64 * 14.93).mul_add(1.0, 0.0),
                )
            })
            .collect();
        check(&cpu);
        let mixed = vec![
            Sample::new(1, 0.1),
            Sample::new(2, f64::NAN),
            Sample::new(3, -0.0),
            Sample::new(4, f64::from_bits(crate::model::STALE_NAN_BITS)),
            Sample::new(9, 1e300),
        ];
        check(&mixed);
        let constant: Vec<Sample> = (0..240)
            .map(|i| Sample::new(t0 + i * 15_000, 1.0))
            .collect();
        assert!(
            check(&constant) <= 16,
            "a constant regular chunk is a header only"
        );
        check(&[]);
        check(&[Sample::new(-5, 0.5)]);
    }

    /// Writes series through a [`ChunkWriter`] (taking its bytes after
    /// every `take_every` series) and reads every chunk back.
    fn write_all(series: &[Vec<Sample>], take_every: usize) -> (Vec<u8>, Vec<Added>, Vec<Column>) {
        let mut w = ChunkWriter::new(b"STCK\x06");
        let mut file = Vec::new();
        let mut added = Vec::new();
        for (i, s) in series.iter().enumerate() {
            added.push(w.add(s));
            if i % take_every == 0 {
                file.extend(w.take());
            }
        }
        file.extend(w.take());
        let cols = w.columns().to_vec();
        for (s, a) in series.iter().zip(&added) {
            let got = read_chunk_paged(&file, a.r, a.column.map(|k| cols[k as usize].r)).unwrap();
            assert_eq!(got.len(), s.len());
            for (g, w) in got.iter().zip(s) {
                assert_eq!((g.t, g.v.to_bits()), (w.t, w.v.to_bits()));
            }
            if let Some(k) = a.column {
                let c = cols[k as usize];
                assert_eq!((c.min_t, c.max_t), (s[0].t, s[s.len() - 1].t));
            }
        }
        (file, added, cols)
    }

    #[test]
    fn timestamp_columns_are_written_once_and_shared() {
        let t0 = 1_700_000_000_000i64;
        let ts = |off: i64| -> Vec<i64> {
            (0..120)
                .map(|i| t0 + off + i * 15_000 + if i == 50 { 17 } else { 0 })
                .collect()
        };
        let mut series = Vec::new();
        for host in 0..3 {
            for k in 0..20 {
                let v: Vec<Sample> = ts(host * 1000)
                    .into_iter()
                    .enumerate()
                    .map(|(i, t)| Sample::new(t, (k * 1000 + i * i) as f64 / 100.0))
                    .collect();
                series.push(v);
            }
        }
        // High-entropy floats take XOR; a single sample stays inline.
        series.push(
            ts(0)
                .into_iter()
                .map(|t| Sample::new(t, (t as f64).sqrt().sin()))
                .collect(),
        );
        series.push(vec![Sample::new(t0, 1.5)]);
        for take_every in [1, 7, 1000] {
            let (file, added, cols) = write_all(&series, take_every);
            let kinds: Vec<u8> = added
                .iter()
                .map(|a| read_paged(&file, a.r).unwrap()[0])
                .collect();
            assert!(kinds[..60]
                .iter()
                .all(|&k| (ENC_COLUMN..=ENC_COLUMN + MAX_DECIMAL_EXP).contains(&k)));
            assert!(added[..60].iter().all(|a| a.column.is_some()));
            assert_eq!(kinds[60], ENC_XOR);
            assert_eq!(kinds[61], ENC_PACKED);
            assert_eq!(added[61].column, None);
            // Three hosts, three timestamp columns.
            assert_eq!(cols.len(), 3);
            // Every flipped bit is an error or a wrong answer, never a panic;
            // a flip inside a page body is always detected.
            for i in 5..file.len() {
                let mut bad = file.clone();
                bad[i] ^= 0x10;
                for a in [&added[0], &added[20], &added[61]] {
                    let _ = read_chunk_paged(&bad, a.r, a.column.map(|k| cols[k as usize].r));
                }
            }
            let mut bad = file.clone();
            bad[8] ^= 1;
            let first = added[0];
            assert!(
                read_chunk_paged(&bad, first.r, first.column.map(|k| cols[k as usize].r)).is_err()
            );
        }
    }

    /// Random sample sequences (seeded, reproducible) mixing decimal
    /// counters and gauges with every awkward float: NaNs with random
    /// payloads, the stale marker, -0.0, infinities, subnormals, extremes,
    /// integers near 2^53 and random bit patterns; timestamps regular,
    /// jittered, negative and far apart. Every encoding and the block
    /// writer must give back the same bits.
    #[test]
    fn property_every_f64_round_trips_bit_exact() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let specials = [
            f64::NAN,
            -f64::NAN,
            f64::from_bits(crate::model::STALE_NAN_BITS),
            f64::from_bits(0x7ff0_0000_0000_0001),
            f64::from_bits(0xfff8_dead_beef_0001),
            -0.0,
            0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            f64::from_bits(1),
            f64::MAX,
            f64::MIN,
            9_007_199_254_740_993.0,
            -9_007_199_254_740_992.0,
            0.1,
            1e-9,
        ];
        let mut series = Vec::new();
        for case in 0..400 {
            let n = 1 + (rnd() % 300) as usize;
            let mut t = (rnd() % 2_000_000_000_000) as i64 - 1_000_000_000_000;
            let step = 1 + (rnd() % 60_000) as i64;
            let mut v = (rnd() % 1_000_000) as f64 / 100.0;
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                t += match case % 4 {
                    0 => step,
                    1 => step + (rnd() % 3) as i64,
                    2 => 1 + (rnd() % 1_000_000_000) as i64,
                    _ => step * (1 + (rnd() % 2) as i64),
                };
                v = match (case / 4) % 6 {
                    0 => v + (rnd() % 1500) as f64 / 100.0,
                    1 => ((v * 100.0).round() + (rnd() % 201) as f64 - 100.0) / 100.0,
                    2 => f64::from_bits(rnd()),
                    3 => specials[(rnd() % specials.len() as u64) as usize],
                    4 if rnd() % 10 == 0 => specials[(rnd() % specials.len() as u64) as usize],
                    4 => ((rnd() % 4096) * 4096) as f64,
                    _ => (rnd() % 1000) as f64 * 1e-9 + 1e6,
                };
                out.push(Sample::new(t, v));
            }
            check(&out);
            series.push(out);
        }
        write_all(&series, 3);
    }

    #[test]
    fn corrupt_payloads_never_panic() {
        let t0 = 1_700_000_000_000i64;
        let samples: Vec<Sample> = (0..100)
            .map(|i| Sample::new(t0 + i * 15_000 + (i % 7), (i * 3) as f64 / 7.0))
            .collect();
        for enc in [
            encode_chunk(&samples),
            encode_packed(&samples[..1]).unwrap(),
        ] {
            for i in 0..enc.len() {
                for bit in 0..8 {
                    let mut bad = enc.clone();
                    bad[i] ^= 1 << bit;
                    let _ = decode_chunk(&bad);
                }
                let _ = decode_chunk(&enc[..i]);
            }
        }
    }
}
