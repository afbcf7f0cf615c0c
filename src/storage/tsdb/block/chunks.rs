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
//! The writer ([`ChunkWriter`]) encodes the candidates and keeps the smallest.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use crate::model::Sample;
use crate::storage::tsdb::chunk::{XorChunk, XorIter};

use super::format::{decode_ints, encode_ints, put_uvarint, Decoder};

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
    let (&enc, body) = payload.split_first()?;
    match enc {
        ENC_XOR => {
            let mut it = XorIter::new(body);
            let out: Vec<Sample> = it.by_ref().map(|(t, v)| Sample::new(t, v)).collect();
            (!it.failed()).then_some(out)
        }
        ENC_PACKED => {
            let mut d = Decoder::new(body);
            let n = d.len(MAX_PACKED_SAMPLES)?;
            let ts = decode_ints(&mut d, n)?;
            decode_values(&mut d, ts)
        }
        _ => None,
    }
}

/// Reads the exponent and values that follow a packed chunk's timestamps;
/// the decoder must end with them.
fn decode_values(d: &mut Decoder<'_>, ts: Vec<i64>) -> Option<Vec<Sample>> {
    let e = d.u8()?;
    let ms = decode_ints(d, ts.len())?;
    if !d.is_empty() {
        return None;
    }
    let out = if e == RAW_BITS {
        ts.into_iter()
            .zip(ms)
            .map(|(t, m)| Sample::new(t, f64::from_bits(m as u64)))
            .collect()
    } else if e <= MAX_DECIMAL_EXP {
        let scale = pow10(e);
        ts.into_iter()
            .zip(ms)
            .map(|(t, m)| Sample::new(t, m as f64 / scale))
            .collect()
    } else {
        return None;
    };
    Some(out)
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
    let times = read_record(file, offset - back)?;
    let ts = match times.split_first() {
        Some((&ENC_TIMES, t)) => {
            let mut td = Decoder::new(t);
            td.len(MAX_PACKED_SAMPLES)
                .and_then(|n| decode_ints(&mut td, n))
                .filter(|_| td.is_empty())
        }
        _ => None,
    };
    let ts = ts.ok_or_else(|| format!("chunk at {offset}: bad timestamp column"))?;
    decode_values(&mut d, ts).ok_or_else(malformed)
}

/// Builds a block's `chunks` file: chunk records in order, with timestamp
/// columns written once and shared by every packed chunk that has them.
pub(crate) struct ChunkWriter {
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    taken: u64,
    /// Timestamp columns written so far: 128-bit hash to record offset.
    times: HashMap<(u64, u64), u64>,
    hashers: (RandomState, RandomState),
}

impl ChunkWriter {
    /// A writer whose file starts with `header`.
    pub(crate) fn new(header: &[u8]) -> ChunkWriter {
        ChunkWriter {
            buf: header.to_vec(),
            taken: 0,
            times: HashMap::new(),
            hashers: (RandomState::new(), RandomState::new()),
        }
    }

    fn offset(&self) -> u64 {
        self.taken + self.buf.len() as u64
    }

    /// Bytes buffered and not taken yet.
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Hands out the buffered bytes (to be appended to the file).
    pub(crate) fn take(&mut self) -> Vec<u8> {
        self.taken += self.buf.len() as u64;
        std::mem::take(&mut self.buf)
    }

    /// Appends `samples` (sorted, unique timestamps) as one chunk in the
    /// smallest encoding; returns the chunk's reference.
    pub(crate) fn add(&mut self, samples: &[Sample]) -> u64 {
        if let Some(r) = self.add_shared(samples) {
            return r;
        }
        let r = self.offset();
        put_record(&mut self.buf, &encode_chunk(samples));
        r
    }

    /// Writes a packed chunk over a shared timestamp column when the values
    /// are decimal and that beats Gorilla XOR.
    fn add_shared(&mut self, samples: &[Sample]) -> Option<u64> {
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
        let mut values = vec![e];
        encode_ints(&ms, &mut values);
        // Costs of the record framings (length, CRC) included.
        let shared = values.len() + 10 + if known.is_none() { times.len() + 7 } else { 0 };
        let xor = self.xor_len(samples);
        if xor.is_some_and(|x| x + 6 < shared) {
            return None;
        }
        let times_ref = match known {
            Some(r) => r,
            None => {
                if self.times.len() >= MAX_SHARED_TIMES {
                    self.times.clear();
                }
                let r = self.offset();
                put_record(&mut self.buf, &times);
                self.times.insert(key, r);
                r
            }
        };
        let r = self.offset();
        let mut payload = vec![ENC_PACKED_SHARED];
        put_uvarint(&mut payload, r - times_ref);
        payload.extend_from_slice(&values);
        put_record(&mut self.buf, &payload);
        Some(r)
    }

    fn xor_len(&self, samples: &[Sample]) -> Option<usize> {
        if samples.len() > crate::storage::tsdb::chunk::MAX_CHUNK_SAMPLES {
            return None;
        }
        let mut c = XorChunk::new();
        samples
            .iter()
            .all(|s| c.append(s.t, s.v))
            .then(|| c.byte_len() + 1)
    }
}

/// Appends one chunk record (length, payload, CRC32C) to `buf`.
pub(crate) fn put_record(buf: &mut Vec<u8>, payload: &[u8]) {
    put_uvarint(buf, payload.len() as u64);
    buf.extend_from_slice(payload);
    buf.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
}

/// Why a chunk record could not be read.
pub(crate) fn read_record(file: &[u8], offset: u64) -> Result<&[u8], String> {
    let start = usize::try_from(offset).map_err(|_| format!("chunk ref {offset} out of range"))?;
    if start < MAGIC_CHUNKS.len() + 1 || start >= file.len() {
        return Err(format!("chunk ref {offset} out of range"));
    }
    let mut d = Decoder::new(&file[start..]);
    let len = d
        .len(file.len())
        .ok_or_else(|| format!("chunk at {offset}: bad length"))?;
    let payload = d
        .bytes(len)
        .ok_or_else(|| format!("chunk at {offset}: truncated"))?;
    let crc = d
        .u32_be()
        .ok_or_else(|| format!("chunk at {offset}: truncated checksum"))?;
    if crc32c::crc32c(payload) != crc {
        return Err(format!("chunk at {offset}: checksum mismatch"));
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

    /// Writes series through a [`ChunkWriter`] and reads every chunk back.
    fn write_all(series: &[Vec<Sample>]) -> (Vec<u8>, Vec<u64>) {
        let mut w = ChunkWriter::new(b"STCK\x02");
        let mut file = Vec::new();
        let refs: Vec<u64> = series
            .iter()
            .map(|s| {
                let r = w.add(s);
                file.extend(w.take());
                r
            })
            .collect();
        for (s, &r) in series.iter().zip(&refs) {
            let got = read_chunk(&file, r).unwrap();
            assert_eq!(got.len(), s.len());
            for (g, w) in got.iter().zip(s) {
                assert_eq!((g.t, g.v.to_bits()), (w.t, w.v.to_bits()));
            }
        }
        (file, refs)
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
        let (file, refs) = write_all(&series);
        let kinds: Vec<u8> = refs
            .iter()
            .map(|&r| read_record(&file, r).unwrap()[0])
            .collect();
        assert!(kinds[..60].iter().all(|&k| k == ENC_PACKED_SHARED));
        assert_eq!(kinds[60], ENC_XOR);
        assert_eq!(kinds[61], ENC_PACKED);
        // Three hosts, three timestamp columns.
        let mut r = 5u64;
        let mut columns = 0;
        while (r as usize) < file.len() {
            let p = read_record(&file, r).unwrap();
            columns += usize::from(p[0] == ENC_TIMES);
            let mut d = Decoder::new(&file[r as usize..]);
            r += (d.len(usize::MAX).unwrap() + d.pos() + 4) as u64;
        }
        assert_eq!(columns, 3);
        // Every flipped bit of a shared chunk and its column is an error or
        // a wrong answer, never a panic.
        for i in 5..file.len().min(400) {
            let mut bad = file.clone();
            bad[i] ^= 0x10;
            for &r in &refs[..3] {
                let _ = read_chunk(&bad, r);
            }
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
        write_all(&series);
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
