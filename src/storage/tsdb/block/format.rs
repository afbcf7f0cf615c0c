//! Low-level encoding shared by the block files: varints, a bounds-checked
//! decoder, a bit writer/reader and the integer-sequence codec used for
//! timestamps and decimal values (delta or delta-of-delta residuals,
//! zig-zagged and bit-packed in groups of [`GROUP`] with one width per group).

/// Appends an unsigned LEB128 varint.
pub(crate) fn put_uvarint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Appends a zig-zag signed varint.
pub(crate) fn put_varint(buf: &mut Vec<u8>, v: i64) {
    put_uvarint(buf, zigzag(v));
}

pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Reads values written by the `put_*` functions; every read is bounds
/// checked and answers `None` on truncated or malformed input.
#[derive(Debug, Clone)]
pub(crate) struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Decoder<'a> {
        Decoder { buf, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos.min(self.buf.len())..]
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    pub(crate) fn u32_be(&mut self) -> Option<u32> {
        let b = self.bytes(4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64_be(&mut self) -> Option<u64> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Some(u64::from_be_bytes(a))
    }

    pub(crate) fn uvarint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.u8()?;
            if shift == 63 && b > 1 {
                return None;
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    pub(crate) fn varint(&mut self) -> Option<i64> {
        self.uvarint().map(unzigzag)
    }

    /// A uvarint that must fit in `usize` and be at most `max`.
    pub(crate) fn len(&mut self, max: usize) -> Option<usize> {
        let v = usize::try_from(self.uvarint()?).ok()?;
        (v <= max).then_some(v)
    }
}

/// Packs bits most significant first.
#[derive(Debug, Default)]
pub(crate) struct BitWriter {
    buf: Vec<u8>,
    acc: u128,
    n: u32,
}

impl BitWriter {
    pub(crate) fn write(&mut self, v: u64, bits: u32) {
        if bits == 0 {
            return;
        }
        let v = if bits >= 64 {
            v
        } else {
            v & ((1u64 << bits) - 1)
        };
        self.acc = (self.acc << bits) | u128::from(v);
        self.n += bits;
        while self.n >= 8 {
            self.n -= 8;
            self.buf.push((self.acc >> self.n) as u8);
        }
        self.acc &= (1u128 << self.n) - 1;
    }

    pub(crate) fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.buf.push((self.acc << (8 - self.n)) as u8);
        }
        self.buf
    }
}

/// Reads bits written by [`BitWriter`]; `None` past the end.
#[derive(Debug, Clone)]
pub(crate) struct BitReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> BitReader<'a> {
        BitReader { buf, pos: 0 }
    }

    /// The next `bits` (at most 64) bits, most significant first: one
    /// big-endian word load and two shifts (two loads when the bits straddle
    /// a 64-bit window).
    pub(crate) fn read(&mut self, bits: u32) -> Option<u64> {
        let bits = bits as usize;
        if bits > 64 || self.pos.checked_add(bits)? > self.buf.len() * 8 {
            return None;
        }
        if bits == 0 {
            return Some(0);
        }
        let off = self.pos % 8;
        if off + bits > 64 {
            // 57..=64 bits not byte-aligned: two reads.
            let hi = self.read(bits as u32 - 32)?;
            let lo = self.read(32)?;
            return Some(hi << 32 | lo);
        }
        let w = self.word(self.pos / 8);
        self.pos += bits;
        Some((w << off) >> (64 - bits))
    }

    /// The 8 bytes from `at` as a big-endian word, zeros past the end.
    #[inline]
    fn word(&self, at: usize) -> u64 {
        match self.buf.get(at..at + 8) {
            Some(b) => u64::from_be_bytes(b.try_into().expect("8 bytes")),
            None => {
                let mut a = [0u8; 8];
                let tail = &self.buf[at.min(self.buf.len())..];
                a[..tail.len()].copy_from_slice(tail);
                u64::from_be_bytes(a)
            }
        }
    }
}

/// Values per bit-packing group (each group stores one 7-bit width).
pub(crate) const GROUP: usize = 16;

/// Flag in the mode byte: every residual is zero and no bit stream follows.
const ALL_ZERO: u8 = 0x80;
/// Flag in the mode byte: residuals use per-value prefix buckets
/// ([`BUCKETS`]) instead of group packing; better when a few large values
/// sit among many small ones.
const BUCKETED: u8 = 0x40;
/// Value widths of the prefix buckets: a residual of zero is the single bit
/// `0`; bucket `i` is `i + 1` one bits, a zero bit (except the last) and
/// `BUCKETS[i]` value bits.
const BUCKETS: [u32; 5] = [4, 8, 16, 32, 64];
/// Flag in the mode byte: a uvarint divisor follows the first values and
/// every residual is a multiple of it (memory gauges move in 4 KiB pages).
const SCALED: u8 = 0x20;
/// Flag in the mode byte: delta residuals are all non-negative (counters)
/// and stored without zig-zag, saving a bit each.
const UNSIGNED: u8 = 0x10;
/// Flag in the mode byte (format version 5): frame of reference and radix
/// packing. The residuals, read as signed numbers (zig-zag undone unless
/// [`UNSIGNED`]), are stored as varint `lo` (their minimum), uvarint
/// `span` (maximum - minimum) and the digits `r - lo` in base
/// `R = span + 1`, [`radix_word`] of them per word (the word is
/// `sum digit_j * R^j`, written in as many bits as `R^count - 1` needs). A
/// noisy counter or gauge whose residuals fill a range uniformly costs
/// `log2(R)` bits per sample instead of a whole-bit width.
const RADIX: u8 = 0x08;
/// Largest `span` [`RADIX`] handles.
const MAX_RADIX_SPAN: u64 = 1 << 62;

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The largest divisor of every (signed) residual, zig-zagged.
fn residual_gcd(res: &[u64]) -> u64 {
    res.iter().map(|&z| unzigzag(z).unsigned_abs()).fold(0, gcd)
}

fn residuals(vals: &[i64], order: u8) -> Vec<u64> {
    let mut out = Vec::with_capacity(vals.len());
    let mut prev_delta = 0i64;
    for i in 1..vals.len() {
        let d = vals[i].wrapping_sub(vals[i - 1]);
        if order == 2 && i >= 2 {
            out.push(zigzag(d.wrapping_sub(prev_delta)));
        } else if order == 1 {
            out.push(zigzag(d));
        }
        prev_delta = d;
    }
    out
}

fn pack(res: &[u64]) -> Vec<u8> {
    let mut w = BitWriter::default();
    for g in res.chunks(GROUP) {
        let width = g.iter().map(|&v| 64 - v.leading_zeros()).max().unwrap_or(0);
        w.write(u64::from(width), 7);
        for &v in g {
            w.write(v, width);
        }
    }
    w.finish()
}

fn pack_bucketed(res: &[u64]) -> Vec<u8> {
    let mut w = BitWriter::default();
    for &v in res {
        if v == 0 {
            w.write(0, 1);
            continue;
        }
        let width = 64 - v.leading_zeros();
        let i = BUCKETS
            .iter()
            .position(|&b| width <= b)
            .unwrap_or(BUCKETS.len() - 1);
        let ones = i as u32 + 1;
        if i + 1 < BUCKETS.len() {
            w.write(((1u64 << ones) - 1) << 1, ones + 1);
        } else {
            w.write((1u64 << ones) - 1, ones);
        }
        w.write(v, BUCKETS[i]);
    }
    w.finish()
}

fn read_bucketed(r: &mut BitReader<'_>) -> Option<u64> {
    let mut ones = 0usize;
    while ones < BUCKETS.len() && r.read(1)? == 1 {
        ones += 1;
    }
    match ones {
        0 => Some(0),
        n => r.read(BUCKETS[n - 1]),
    }
}

/// Digits per radix word for base `r` (>= 2): the most `k` with
/// `r^k <= 2^127`, and `r^k`.
fn radix_word(r: u128) -> (usize, u128) {
    let (mut k, mut p) = (1usize, r);
    while let Some(q) = p.checked_mul(r).filter(|&q| q <= 1 << 127) {
        (k, p) = (k + 1, q);
    }
    (k, p)
}

/// The most digits `h` of base `base` (>= 2) whose numbers fit in 64 bits,
/// and `base^h`.
fn low_digits(base: u64) -> (usize, u64) {
    let (mut h, mut p) = (1usize, base);
    while let Some(q) = p.checked_mul(base) {
        (h, p) = (h + 1, q);
    }
    (h, p)
}

/// Division of 64-bit numbers by an invariant divisor (at least 2) as two
/// multiplications by its 128-bit reciprocal `ceil(2^128 / d)`: exact for
/// every 64-bit numerator (Lemire, Kaser and Kurz, "Faster remainder by
/// direct computation", 2019: `F = 128 >= N + log2(d)`), where a `div`
/// instruction per radix digit dominated block decoding.
#[derive(Debug, Clone, Copy)]
struct DivBy {
    d: u64,
    m: u128,
}

impl DivBy {
    fn new(d: u64) -> DivBy {
        debug_assert!(d >= 2);
        DivBy {
            d,
            m: u128::MAX / u128::from(d) + 1,
        }
    }

    /// `(n / d, n % d)`.
    #[inline]
    fn div_rem(self, n: u64) -> (u64, u64) {
        let n128 = u128::from(n);
        let low = (u128::from(self.m as u64) * n128) >> 64;
        let q = (((self.m >> 64) * n128 + low) >> 64) as u64;
        (q, n - q * self.d)
    }
}

/// Calls `emit` with the `m` base-`base.d` digits of radix word `v`, least
/// significant first (the caller checked `v < base^m`). 128-bit divisions
/// are slow: while `v` needs more than 64 bits, one of them splits off the
/// low `low.0` digits (`low.1 = base^low.0`); the rest divide 64-bit
/// numbers by multiplication.
fn radix_digits(mut v: u128, m: usize, base: DivBy, low: (usize, u64), mut emit: impl FnMut(u64)) {
    let mut left = m;
    while v >> 64 != 0 && left > low.0 {
        let q = v / u128::from(low.1);
        let mut r = (v - q * u128::from(low.1)) as u64;
        v = q;
        for _ in 0..low.0 {
            let (q, digit) = base.div_rem(r);
            emit(digit);
            r = q;
        }
        left -= low.0;
    }
    let mut v = v as u64;
    for _ in 0..left {
        let (q, digit) = base.div_rem(v);
        emit(digit);
        v = q;
    }
}

/// Bits needed to write every number below `p`.
fn word_bits(p: u128) -> u32 {
    128 - (p - 1).leading_zeros()
}

fn write_u128(w: &mut BitWriter, v: u128, bits: u32) {
    if bits > 64 {
        w.write((v >> 64) as u64, bits - 64);
        w.write(v as u64, 64);
    } else {
        w.write(v as u64, bits);
    }
}

fn read_u128(r: &mut BitReader<'_>, bits: u32) -> Option<u128> {
    if bits > 64 {
        let hi = u128::from(r.read(bits - 64)?);
        Some(hi << 64 | u128::from(r.read(64)?))
    } else {
        r.read(bits).map(u128::from)
    }
}

/// The residuals as the signed numbers [`RADIX`] packs.
fn radix_signed(r: u64, unsigned: bool) -> i64 {
    if unsigned {
        r as i64
    } else {
        unzigzag(r)
    }
}

/// A [`RADIX`] body (`lo`, `span`, digit words), or `None` when the span is
/// too large.
fn pack_radix(res: &[u64], unsigned: bool) -> Option<Vec<u8>> {
    let signed = res.iter().map(|&r| radix_signed(r, unsigned));
    let lo = signed.clone().min()?;
    let hi = signed.clone().max()?;
    let span = u64::try_from(i128::from(hi) - i128::from(lo))
        .ok()
        .filter(|&s| s <= MAX_RADIX_SPAN)?;
    let mut out = Vec::new();
    put_varint(&mut out, lo);
    put_uvarint(&mut out, span);
    if span == 0 {
        return Some(out);
    }
    let base = u128::from(span) + 1;
    let (k, _) = radix_word(base);
    let mut w = BitWriter::default();
    let digits: Vec<u128> = signed.map(|v| v.wrapping_sub(lo) as u64 as u128).collect();
    for word in digits.chunks(k) {
        let (v, p) = word
            .iter()
            .rev()
            .fold((0u128, 1u128), |(v, p), &d| (v * base + d, p * base));
        write_u128(&mut w, v, word_bits(p));
    }
    out.extend_from_slice(&w.finish());
    Some(out)
}

/// Encodes an integer sequence (its length is stored by the caller): the
/// smallest of delta and delta-of-delta residual packings.
pub(crate) fn encode_ints(vals: &[i64], out: &mut Vec<u8>) {
    let Some(&first) = vals.first() else {
        out.push(1 | ALL_ZERO);
        return;
    };
    let mut best: Option<Vec<u8>> = None;
    for order in [1u8, 2] {
        let mut res = residuals(vals, order);
        let mut buf: Vec<u8> = Vec::new();
        let all_zero = res.iter().all(|&r| r == 0);
        let divisor = residual_gcd(&res);
        let scaled = !all_zero && divisor > 1;
        let unsigned = order == 1 && !all_zero && res.iter().all(|&z| z & 1 == 0);
        let flags = [(all_zero, ALL_ZERO), (scaled, SCALED), (unsigned, UNSIGNED)];
        buf.push(flags.iter().filter(|f| f.0).fold(order, |m, f| m | f.1));
        put_varint(&mut buf, first);
        if order == 2 && vals.len() >= 2 {
            put_varint(&mut buf, vals[1].wrapping_sub(first));
        }
        if scaled {
            put_uvarint(&mut buf, divisor);
            for r in &mut res {
                // Exact: the divisor divides the magnitude; the quotient of
                // i64::MIN by a divisor > 1 fits.
                let q = (unzigzag(*r) as i128 / i128::from(divisor)) as i64;
                *r = zigzag(q);
            }
        }
        if unsigned {
            for r in &mut res {
                *r >>= 1;
            }
        }
        let bodies = if all_zero {
            vec![(0, vec![])]
        } else {
            let mut b = vec![(0, pack(&res)), (BUCKETED, pack_bucketed(&res))];
            b.extend(pack_radix(&res, unsigned).map(|r| (RADIX, r)));
            b
        };
        for (flag, body) in bodies {
            let mut cand = buf.clone();
            cand[0] |= flag;
            cand.extend_from_slice(&body);
            if best.as_ref().is_none_or(|b| cand.len() < b.len()) {
                best = Some(cand);
            }
        }
    }
    out.extend_from_slice(&best.unwrap_or_default());
}

/// Decodes `n` integers written by [`encode_ints`], consuming the rest of
/// `d`'s input when a bit stream follows.
pub(crate) fn decode_ints(d: &mut Decoder<'_>, n: usize) -> Option<Vec<i64>> {
    let mut out = Vec::with_capacity(n.min(1 << 16));
    decode_ints_with(d, n, |v| out.push(v))?;
    Some(out)
}

/// [`decode_ints`] handing each integer to `emit` in order instead of
/// collecting them (the block read path decodes straight into samples).
/// On malformed input `emit` may have seen a prefix of the values.
pub(crate) fn decode_ints_with(
    d: &mut Decoder<'_>,
    n: usize,
    mut emit: impl FnMut(i64),
) -> Option<()> {
    let mode = d.u8()?;
    let order = mode & !(ALL_ZERO | BUCKETED | SCALED | UNSIGNED | RADIX);
    let unsigned = mode & UNSIGNED != 0;
    if order != 1 && order != 2 {
        return None;
    }
    if n == 0 {
        return Some(());
    }
    let first = d.varint()?;
    emit(first);
    let mut last = first;
    let mut delta = 0i64;
    let mut done = 1;
    if order == 2 && n >= 2 {
        delta = d.varint()?;
        last = first.wrapping_add(delta);
        emit(last);
        done = 2;
    }
    let divisor = if mode & SCALED != 0 {
        d.uvarint()? as i64
    } else {
        1
    };
    let nres = n - done;
    // One residual (as stored) to the next integer.
    let mut next = |r: u64| {
        let r = if unsigned { r as i64 } else { unzigzag(r) }.wrapping_mul(divisor);
        if order == 2 {
            delta = delta.wrapping_add(r);
        } else {
            delta = r;
        }
        last = last.wrapping_add(delta);
        emit(last);
    };
    if mode & ALL_ZERO != 0 {
        for _ in 0..nres {
            next(0);
        }
        return Some(());
    }
    if mode & RADIX != 0 {
        let lo = d.varint()?;
        let span = d.uvarint().filter(|&s| s <= MAX_RADIX_SPAN)?;
        let back = |v: i64| if unsigned { v as u64 } else { zigzag(v) };
        if span == 0 {
            for _ in 0..nres {
                next(back(lo));
            }
            return Some(());
        }
        let base = u128::from(span) + 1;
        let (k, full) = radix_word(base);
        let low = low_digits(span + 1);
        let div = DivBy::new(span + 1);
        let mut r = BitReader::new(d.rest());
        let mut left = nres;
        while left > 0 {
            let m = left.min(k);
            let p = if m == k { full } else { base.pow(m as u32) };
            let v = read_u128(&mut r, word_bits(p))?;
            if v >= p {
                return None;
            }
            radix_digits(v, m, div, low, |digit| {
                next(back(lo.wrapping_add(digit as i64)))
            });
            left -= m;
        }
        d.bytes(r.pos.div_ceil(8))?;
        return Some(());
    }
    let rest = d.rest();
    let mut r = BitReader::new(rest);
    let mut left = nres;
    if mode & BUCKETED != 0 {
        for _ in 0..nres {
            let v = read_bucketed(&mut r)?;
            next(v);
        }
        left = 0;
    }
    while left > 0 {
        let width = r.read(7)? as u32;
        if width > 64 {
            return None;
        }
        for _ in 0..left.min(GROUP) {
            let v = r.read(width)?;
            next(v);
        }
        left -= left.min(GROUP);
    }
    d.bytes(r.pos.div_ceil(8))?;
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_sequences_round_trip() {
        let cases: Vec<Vec<i64>> = vec![
            vec![],
            vec![5],
            vec![5, 9],
            (0..240).map(|i| 1_700_000_000_000 + i * 15_000).collect(),
            (0..100).map(|i| i * i * 37 - 5000).collect(),
            vec![i64::MIN, i64::MAX, 0, -1, i64::MAX, i64::MIN, 3],
            (0..50).map(|i| if i % 3 == 0 { 7 } else { -7 }).collect(),
            // Uniform noise in a range that is not a power of two: radix.
            (0..100)
                .scan(1_000_000i64, |v, i| {
                    *v += 1_500_000 + (i * 7_919_993 % 3_000_000);
                    Some(*v)
                })
                .collect(),
            (0..100).map(|i| (i * 7_919 % 129) - 64).collect(),
            (0..3).map(|i| i64::MIN + i).collect(),
            vec![i64::MIN, i64::MAX],
            (0..200)
                .map(|i| {
                    if i % 50 == 7 {
                        i * 1_000_000_007
                    } else {
                        i % 2
                    }
                })
                .collect(),
        ];
        for vals in cases {
            let mut buf = Vec::new();
            encode_ints(&vals, &mut buf);
            buf.push(0xAB);
            let mut d = Decoder::new(&buf);
            assert_eq!(decode_ints(&mut d, vals.len()).unwrap(), vals);
            if vals.len() == 100 {
                assert!(buf[0] & RADIX != 0, "noise in a range packs by radix");
            }
            assert_eq!(d.u8(), Some(0xAB), "decoder consumed exactly its bytes");
        }
    }

    #[test]
    fn division_by_reciprocal_is_exact() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut divisors = vec![
            2,
            3,
            7,
            10,
            17,
            1 << 32,
            (1 << 62) + 1,
            u64::MAX,
            u64::MAX - 1,
        ];
        divisors.extend((0..200).map(|i| 2 + (rnd() >> (i % 63))));
        for d in divisors.into_iter().filter(|&d| d >= 2) {
            let div = DivBy::new(d);
            let mut ns = vec![0, 1, d - 1, d, d.wrapping_add(1), u64::MAX, u64::MAX - 1];
            ns.extend((0..200).map(|i| rnd() >> (i % 64)));
            ns.extend((1..50).map(|k| d.wrapping_mul(k).wrapping_sub(k % 2)));
            for n in ns {
                assert_eq!(div.div_rem(n), (n / d, n % d), "{n} / {d}");
            }
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u64 = 0x9E3779B97F4A7C15;
        for len in 0..200 {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = decode_ints(&mut Decoder::new(&buf), len * 3);
            let _ = Decoder::new(&buf).uvarint();
        }
    }
}
