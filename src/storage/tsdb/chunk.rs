//! Gorilla-style compressed float chunks: delta-of-delta timestamps and
//! XOR-encoded values (Pelkonen et al., "Gorilla: A Fast, Scalable, In-Memory
//! Time Series Database", VLDB 2015), the scheme Prometheus's TSDB uses.
//!
//! Layout: `u16 sample count (BE)`, then a bit stream. The first sample stores
//! its timestamp as a zig-zag varint and its value as 64 raw bits; the second
//! stores a varint timestamp delta; later ones a delta-of-delta in one of five
//! buckets. Values are XORed with the previous value and the meaningful bits
//! written with a leading/trailing-zero window.

/// Appends bits to a byte buffer, most significant bit first.
#[derive(Debug, Clone, Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits still free in the last byte (0 means a new byte is needed).
    free: u8,
}

impl BitWriter {
    fn write_bit(&mut self, bit: bool) {
        if self.free == 0 {
            self.bytes.push(0);
            self.free = 8;
        }
        if bit {
            let last = self.bytes.len() - 1;
            self.bytes[last] |= 1 << (self.free - 1);
        }
        self.free -= 1;
    }

    /// Writes the low `nbits` bits of `value`, a byte's worth at a time.
    fn write_bits(&mut self, value: u64, mut nbits: u8) {
        while nbits > 0 {
            if self.free == 0 {
                self.bytes.push(0);
                self.free = 8;
            }
            let take = nbits.min(self.free);
            nbits -= take;
            let part = ((value >> nbits) & ((1u64 << take) - 1)) as u8;
            let last = self.bytes.len() - 1;
            self.bytes[last] |= part << (self.free - take);
            self.free -= take;
        }
    }

    fn write_uvarint(&mut self, mut v: u64) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.write_bits(byte as u64, 8);
                return;
            }
            self.write_bits((byte | 0x80) as u64, 8);
        }
    }

    fn write_varint(&mut self, v: i64) {
        self.write_uvarint(((v << 1) ^ (v >> 63)) as u64);
    }
}

/// Reads bits written by [`BitWriter`] (most significant first, as the
/// block codec's word-at-a-time reader reads them).
#[derive(Debug, Clone)]
struct BitReader<'a>(super::block::format::BitReader<'a>);

impl BitReader<'_> {
    fn read_bit(&mut self) -> Option<bool> {
        self.0.read(1).map(|b| b == 1)
    }

    fn read_bits(&mut self, nbits: u8) -> Option<u64> {
        self.0.read(u32::from(nbits))
    }

    fn read_uvarint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.read_bits(8)?;
            v |= (byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn read_varint(&mut self) -> Option<i64> {
        let u = self.read_uvarint()?;
        Some(((u >> 1) as i64) ^ -((u & 1) as i64))
    }
}

/// Maximum samples in one chunk (the count is stored in 16 bits).
pub const MAX_CHUNK_SAMPLES: usize = u16::MAX as usize;

/// Delta-of-delta buckets: (prefix bits, prefix length, value bits).
const DOD_BUCKETS: [(u64, u8, u8); 4] = [
    (0b10, 2, 14),
    (0b110, 3, 17),
    (0b1110, 4, 20),
    (0b1111, 4, 64),
];

/// An append-only compressed chunk of float samples in timestamp order.
#[derive(Debug, Clone, Default)]
pub struct XorChunk {
    w: BitWriter,
    count: u16,
    min_t: i64,
    t: i64,
    t_delta: i64,
    v: u64,
    leading: u8,
    trailing: u8,
}

impl XorChunk {
    /// An empty chunk.
    pub fn new() -> XorChunk {
        XorChunk {
            leading: 0xff,
            ..Default::default()
        }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// True when the chunk holds no samples.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Timestamp of the first sample (undefined when empty).
    pub fn min_t(&self) -> i64 {
        self.min_t
    }

    /// Timestamp of the last sample (undefined when empty).
    pub fn max_t(&self) -> i64 {
        self.t
    }

    /// Gives back the spare capacity of the byte buffer (for a chunk that
    /// will take no more samples: the head holds its closed chunks for
    /// hours, and the doubling growth leaves ~25% of them unused).
    pub fn shrink_to_fit(&mut self) {
        self.w.bytes.shrink_to_fit();
    }

    /// Size of the encoded chunk in bytes.
    pub fn byte_len(&self) -> usize {
        2 + self.w.bytes.len()
    }

    /// Appends a sample. The caller keeps timestamps strictly increasing;
    /// returns false (and appends nothing) when the chunk is full or `t` is
    /// not after the last timestamp.
    pub fn append(&mut self, t: i64, v: f64) -> bool {
        if self.count as usize >= MAX_CHUNK_SAMPLES || (self.count > 0 && t <= self.t) {
            return false;
        }
        let vb = v.to_bits();
        match self.count {
            0 => {
                self.w.write_varint(t);
                self.w.write_bits(vb, 64);
                self.min_t = t;
            }
            1 => {
                let delta = t - self.t;
                self.w.write_uvarint(delta as u64);
                self.write_value(vb);
                self.t_delta = delta;
            }
            _ => {
                let delta = t - self.t;
                let dod = delta - self.t_delta;
                if dod == 0 {
                    self.w.write_bit(false);
                } else {
                    let (prefix, plen, bits) = DOD_BUCKETS
                        .iter()
                        .copied()
                        .find(|&(_, _, bits)| bits == 64 || fits(dod, bits))
                        .expect("last bucket always fits");
                    self.w.write_bits(prefix, plen);
                    self.w.write_bits(dod as u64 & mask(bits), bits);
                }
                self.write_value(vb);
                self.t_delta = delta;
            }
        }
        self.t = t;
        self.v = vb;
        self.count += 1;
        true
    }

    fn write_value(&mut self, vb: u64) {
        let x = vb ^ self.v;
        if x == 0 {
            self.w.write_bit(false);
            return;
        }
        self.w.write_bit(true);
        let mut leading = x.leading_zeros() as u8;
        let trailing = x.trailing_zeros() as u8;
        // Leading zeros are stored in 5 bits.
        if leading >= 32 {
            leading = 31;
        }
        if self.leading != 0xff && leading >= self.leading && trailing >= self.trailing {
            self.w.write_bit(false);
            let sig = 64 - self.leading - self.trailing;
            self.w.write_bits(x >> self.trailing, sig);
        } else {
            self.leading = leading;
            self.trailing = trailing;
            self.w.write_bit(true);
            self.w.write_bits(leading as u64, 5);
            let sig = 64 - leading - trailing;
            // 64 significant bits are stored as 0 in the 6-bit field.
            self.w.write_bits((sig % 64) as u64, 6);
            self.w.write_bits(x >> trailing, sig);
        }
    }

    /// The encoded bytes (count header plus bit stream).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.byte_len());
        out.extend_from_slice(&self.count.to_be_bytes());
        out.extend_from_slice(&self.w.bytes);
        out
    }

    /// Iterates over the samples.
    pub fn iter(&self) -> XorIter<'_> {
        XorIter::with_count(&self.w.bytes, self.count)
    }
}

fn fits(v: i64, bits: u8) -> bool {
    let lim = 1i64 << (bits - 1);
    v > -lim && v <= lim
}

fn mask(bits: u8) -> u64 {
    if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

fn sign_extend(v: u64, bits: u8) -> i64 {
    if bits == 64 {
        return v as i64;
    }
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

/// Iterates over the samples of an encoded chunk.
#[derive(Debug, Clone)]
pub struct XorIter<'a> {
    r: BitReader<'a>,
    remaining: u16,
    read: u16,
    t: i64,
    t_delta: i64,
    v: u64,
    leading: u8,
    trailing: u8,
    failed: bool,
}

impl<'a> XorIter<'a> {
    /// Iterates over bytes produced by [`XorChunk::to_bytes`]. A header that is
    /// too short yields nothing; a truncated body ends early and sets
    /// [`XorIter::failed`].
    pub fn new(bytes: &'a [u8]) -> XorIter<'a> {
        if bytes.len() < 2 {
            let mut it = XorIter::with_count(&[], 0);
            it.failed = !bytes.is_empty();
            return it;
        }
        let count = u16::from_be_bytes([bytes[0], bytes[1]]);
        XorIter::with_count(&bytes[2..], count)
    }

    fn with_count(bits: &'a [u8], count: u16) -> XorIter<'a> {
        XorIter {
            r: BitReader(super::block::format::BitReader::new(bits)),
            remaining: count,
            read: 0,
            t: 0,
            t_delta: 0,
            v: 0,
            leading: 0,
            trailing: 0,
            failed: false,
        }
    }

    /// True when the stream ended before the advertised sample count.
    pub fn failed(&self) -> bool {
        self.failed
    }

    fn next_inner(&mut self) -> Option<(i64, f64)> {
        match self.read {
            0 => {
                self.t = self.r.read_varint()?;
                self.v = self.r.read_bits(64)?;
            }
            1 => {
                self.t_delta = self.r.read_uvarint()? as i64;
                // Wrapping: corrupt input must end the iteration, never panic.
                self.t = self.t.wrapping_add(self.t_delta);
                self.read_value()?;
            }
            _ => {
                let mut prefix_len = 0u8;
                while prefix_len < 4 {
                    if !self.r.read_bit()? {
                        break;
                    }
                    prefix_len += 1;
                }
                let dod = match prefix_len {
                    0 => 0,
                    n => {
                        let bits = DOD_BUCKETS[(n - 1) as usize].2;
                        sign_extend(self.r.read_bits(bits)?, bits)
                    }
                };
                self.t_delta = self.t_delta.wrapping_add(dod);
                self.t = self.t.wrapping_add(self.t_delta);
                self.read_value()?;
            }
        }
        Some((self.t, f64::from_bits(self.v)))
    }

    fn read_value(&mut self) -> Option<()> {
        if !self.r.read_bit()? {
            return Some(());
        }
        if self.r.read_bit()? {
            self.leading = self.r.read_bits(5)? as u8;
            let mut sig = self.r.read_bits(6)? as u8;
            if sig == 0 {
                sig = 64;
            }
            // A corrupt window (leading + significant bits > 64) ends the stream.
            self.trailing = 64u8.checked_sub(self.leading)?.checked_sub(sig)?;
        }
        let sig = 64 - self.leading - self.trailing;
        let bits = self.r.read_bits(sig)?;
        self.v ^= bits << self.trailing;
        Some(())
    }
}

impl Iterator for XorIter<'_> {
    type Item = (i64, f64);

    fn next(&mut self) -> Option<(i64, f64)> {
        if self.remaining == 0 || self.failed {
            return None;
        }
        match self.next_inner() {
            Some(s) => {
                self.remaining -= 1;
                self.read += 1;
                Some(s)
            }
            None => {
                self.failed = true;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(samples: &[(i64, f64)]) -> XorChunk {
        let mut c = XorChunk::new();
        for &(t, v) in samples {
            assert!(c.append(t, v));
        }
        let got: Vec<(i64, f64)> = c.iter().collect();
        assert_eq!(got.len(), samples.len());
        for (g, w) in got.iter().zip(samples) {
            assert_eq!(g.0, w.0);
            assert_eq!(g.1.to_bits(), w.1.to_bits());
        }
        let bytes = c.to_bytes();
        let again: Vec<(i64, f64)> = XorIter::new(&bytes).collect();
        assert_eq!(again.len(), samples.len());
        c
    }

    #[test]
    fn regular_scrapes_compress_well() {
        let samples: Vec<(i64, f64)> = (0..120)
            .map(|i| (1_700_000_000_000 + i * 15_000, (i * 3) as f64))
            .collect();
        let c = round_trip(&samples);
        assert!(c.byte_len() < 120 * 3, "{} bytes", c.byte_len());
    }

    #[test]
    fn irregular_and_special_values() {
        let samples = vec![
            (-5, 1.5),
            (0, f64::NAN),
            (1, f64::INFINITY),
            (1_000_000, -0.0),
            (1_000_001, f64::from_bits(crate::model::STALE_NAN_BITS)),
            (i64::MAX / 4, 1e300),
            (i64::MAX / 4 + 3, f64::MIN_POSITIVE),
            (i64::MAX / 2, 42.0),
        ];
        round_trip(&samples);
    }

    #[test]
    fn random_walk() {
        let mut t = 0i64;
        let mut v = 0.0f64;
        let mut samples = vec![];
        let mut x: u64 = 0x2545F4914F6CDD1D;
        for _ in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            t += 1 + (x % 100_000) as i64;
            v += ((x >> 20) % 1000) as f64 / 7.0 - 70.0;
            samples.push((t, v));
        }
        round_trip(&samples);
    }

    #[test]
    fn corrupt_bytes_never_panic() {
        let mut c = XorChunk::new();
        for i in 0..200i64 {
            assert!(c.append(i * 15_000 + i % 3, (i % 17) as f64 / 3.0));
        }
        let bytes = c.to_bytes();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[i] ^= 1 << bit;
                let _ = XorIter::new(&bad).count();
            }
            let _ = XorIter::new(&bytes[..i]).count();
        }
    }

    #[test]
    fn rejects_out_of_order_and_truncation_is_detected() {
        let mut c = XorChunk::new();
        assert!(c.append(10, 1.0));
        assert!(!c.append(10, 2.0));
        assert!(!c.append(9, 2.0));
        assert!(c.append(20, 2.0));
        assert!(c.append(35, 3.0));
        let bytes = c.to_bytes();
        let mut it = XorIter::new(&bytes[..bytes.len() - 1]);
        let n = it.by_ref().count();
        assert!(n < 3 || !it.failed());
    }
}
