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

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(u: u64) -> i64 {
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
#[derive(Debug)]
pub(crate) struct BitReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> BitReader<'a> {
        BitReader { buf, pos: 0 }
    }

    pub(crate) fn read(&mut self, bits: u32) -> Option<u64> {
        let bits = bits as usize;
        if bits > 64 || self.pos.checked_add(bits)? > self.buf.len() * 8 {
            return None;
        }
        let mut v = 0u64;
        let mut left = bits;
        while left > 0 {
            let byte = self.buf[self.pos / 8];
            let avail = 8 - self.pos % 8;
            let take = avail.min(left);
            let chunk = (byte >> (avail - take)) & (((1u16 << take) - 1) as u8);
            v = if take == 64 { 0 } else { v << take } | u64::from(chunk);
            self.pos += take;
            left -= take;
        }
        Some(v)
    }
}

/// Values per bit-packing group (each group stores one 7-bit width).
pub(crate) const GROUP: usize = 16;

/// Flag in the mode byte: every residual is zero and no bit stream follows.
const ALL_ZERO: u8 = 0x80;

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

/// Encodes an integer sequence (its length is stored by the caller): the
/// smaller of delta and delta-of-delta residual packings.
pub(crate) fn encode_ints(vals: &[i64], out: &mut Vec<u8>) {
    let Some(&first) = vals.first() else {
        out.push(1 | ALL_ZERO);
        return;
    };
    let mut best: Option<Vec<u8>> = None;
    for order in [1u8, 2] {
        let res = residuals(vals, order);
        let mut buf = Vec::new();
        let all_zero = res.iter().all(|&r| r == 0);
        buf.push(order | if all_zero { ALL_ZERO } else { 0 });
        put_varint(&mut buf, first);
        if order == 2 && vals.len() >= 2 {
            put_varint(&mut buf, vals[1].wrapping_sub(first));
        }
        if !all_zero {
            buf.extend_from_slice(&pack(&res));
        }
        if best.as_ref().is_none_or(|b| buf.len() < b.len()) {
            best = Some(buf);
        }
    }
    out.extend_from_slice(&best.unwrap_or_default());
}

/// Decodes `n` integers written by [`encode_ints`], consuming the rest of
/// `d`'s input when a bit stream follows.
pub(crate) fn decode_ints(d: &mut Decoder<'_>, n: usize) -> Option<Vec<i64>> {
    let mode = d.u8()?;
    let order = mode & !ALL_ZERO;
    if order != 1 && order != 2 {
        return None;
    }
    let mut out = Vec::with_capacity(n.min(1 << 16));
    if n == 0 {
        return Some(out);
    }
    let first = d.varint()?;
    out.push(first);
    let mut delta = 0i64;
    if order == 2 && n >= 2 {
        delta = d.varint()?;
        out.push(first.wrapping_add(delta));
    }
    let nres = n - out.len();
    let mut next = |r: u64, out: &mut Vec<i64>| {
        let r = unzigzag(r);
        if order == 2 {
            delta = delta.wrapping_add(r);
        } else {
            delta = r;
        }
        let last = *out.last().unwrap_or(&0);
        out.push(last.wrapping_add(delta));
    };
    if mode & ALL_ZERO != 0 {
        for _ in 0..nres {
            next(0, &mut out);
        }
        return Some(out);
    }
    let rest = d.rest();
    let mut r = BitReader::new(rest);
    let mut left = nres;
    while left > 0 {
        let width = r.read(7)? as u32;
        if width > 64 {
            return None;
        }
        for _ in 0..left.min(GROUP) {
            let v = r.read(width)?;
            next(v, &mut out);
        }
        left -= left.min(GROUP);
    }
    d.bytes(r.pos.div_ceil(8))?;
    Some(out)
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
        ];
        for vals in cases {
            let mut buf = Vec::new();
            encode_ints(&vals, &mut buf);
            buf.push(0xAB);
            let mut d = Decoder::new(&buf);
            assert_eq!(decode_ints(&mut d, vals.len()).unwrap(), vals);
            assert_eq!(d.u8(), Some(0xAB), "decoder consumed exactly its bytes");
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
