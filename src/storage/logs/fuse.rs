//! A static function from 64-bit key hashes to small values: a 3-wise
//! binary fuse (Graf and Lemire, "Binary Fuse Filters: Fast and Smaller
//! Than Xor Filters", 2022) that stores `width`-bit values where the
//! filter stores fingerprints.
//!
//! [`Fuse::get`] returns the value built for a key of the set, and an
//! arbitrary value for any other key: membership is the caller's business
//! (the full-text index checks the block's Bloom filter). About
//! 1.125 × `width` bits per key for large sets, one probe of three words.
//!
//! Layout: the slot array is cut into segments of `seg_len` slots; a key's
//! three slots lie in three consecutive segments (the first chosen by the
//! key's hash). Built by peeling: a slot holding one key fixes that key's
//! value, which is removed from its other slots; slots are then assigned in
//! reverse peeling order so that the XOR of a key's three slots is its
//! value.

use super::codec::Reader;

/// Tries with different seeds before giving up (each succeeds with high
/// probability for the sizes used here).
const ATTEMPTS: u64 = 32;

/// A built function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fuse {
    seed: u64,
    keys: u64,
    width: u32,
    layout: Layout,
    /// `width`-bit slots, packed little-endian into words.
    slots: Vec<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    seg_len: u32,
    /// Slots the first position ranges over (segments but the last two).
    seg_count_len: u32,
    array_len: u32,
}

/// The layout for `n` keys (the reference implementation's parameters).
fn layout(n: u64) -> Layout {
    let seg_len = if n == 0 {
        4
    } else {
        let bits = ((n as f64).ln() / 3.33f64.ln() + 2.25).floor() as u32;
        1u32 << bits.min(18)
    };
    let factor = if n <= 1 {
        0.0
    } else {
        (0.875 + 0.25 * 1e6f64.ln() / (n as f64).ln()).max(1.125)
    };
    let capacity = (n as f64 * factor).round() as u64;
    let seg_count = capacity
        .div_ceil(u64::from(seg_len))
        .saturating_sub(2)
        .max(1);
    Layout {
        seg_len,
        seg_count_len: (seg_count * u64::from(seg_len)) as u32,
        array_len: ((seg_count + 2) * u64::from(seg_len)) as u32,
    }
}

fn mix(key: u64, seed: u64) -> u64 {
    let mut h = key.wrapping_add(seed);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

impl Layout {
    /// The three slots of a mixed hash, in three consecutive segments.
    fn positions(&self, h: u64) -> [usize; 3] {
        let h0 = ((u128::from(h) * u128::from(self.seg_count_len)) >> 64) as u32;
        let mask = self.seg_len - 1;
        let h1 = (h0 + self.seg_len) ^ ((h >> 18) as u32 & mask);
        let h2 = (h0 + 2 * self.seg_len) ^ (h as u32 & mask);
        [h0 as usize, h1 as usize, h2 as usize]
    }
}

/// Bits needed for values up to `max`.
pub(crate) fn width_for(max: u32) -> u32 {
    (32 - max.leading_zeros()).max(1)
}

impl Fuse {
    /// A function mapping each key to its value (`keys` distinct, values
    /// below `2^width`, `width` at most 32). `None` when peeling fails
    /// with every seed (duplicate keys, or astronomically bad luck).
    pub(crate) fn build(entries: &[(u64, u32)], width: u32) -> Option<Fuse> {
        debug_assert!((1..=32).contains(&width));
        let n = entries.len();
        let lay = layout(n as u64);
        let len = lay.array_len as usize;
        // Keys grouped by the segment of their first slot: the passes
        // below then touch three consecutive segments at a time.
        let mut counts = vec![0u32; len];
        let mut xh = vec![0u64; len];
        let mut xv = vec![0u32; len];
        let mut sorted: Vec<(u64, u32)> = vec![(0, 0); n];
        let mut order: Vec<(u32, u64, u32)> = Vec::with_capacity(n);
        let mut stack: Vec<u32> = Vec::new();
        let segs = (lay.seg_count_len / lay.seg_len) as usize;
        for attempt in 0..ATTEMPTS {
            let seed = mix(attempt, 0x9e37_79b9_7f4a_7c15);
            let seg_of = |h: u64| lay.positions(h)[0] / lay.seg_len as usize;
            let mut start = vec![0usize; segs + 1];
            for &(k, _) in entries {
                start[seg_of(mix(k, seed)) + 1] += 1;
            }
            for i in 0..segs {
                start[i + 1] += start[i];
            }
            for &(k, v) in entries {
                let h = mix(k, seed);
                let s = &mut start[seg_of(h)];
                sorted[*s] = (h, v);
                *s += 1;
            }
            counts.fill(0);
            xh.fill(0);
            xv.fill(0);
            for &(h, v) in &sorted {
                for p in lay.positions(h) {
                    counts[p] += 1;
                    xh[p] ^= h;
                    xv[p] ^= v;
                }
            }
            order.clear();
            stack.clear();
            stack.extend((0..len as u32).filter(|&i| counts[i as usize] == 1));
            while let Some(i) = stack.pop() {
                let i = i as usize;
                if counts[i] != 1 {
                    continue;
                }
                let (h, v) = (xh[i], xv[i]);
                order.push((i as u32, h, v));
                for p in lay.positions(h) {
                    counts[p] -= 1;
                    xh[p] ^= h;
                    xv[p] ^= v;
                    if counts[p] == 1 {
                        stack.push(p as u32);
                    }
                }
            }
            if order.len() != n {
                continue;
            }
            let mut f = Fuse {
                seed,
                keys: n as u64,
                width,
                layout: lay,
                slots: vec![0; (len * width as usize).div_ceil(64)],
            };
            for &(i, h, v) in order.iter().rev() {
                // Slot `i` is still 0: the XOR of the three is the others'.
                let [a, b, c] = lay.positions(h);
                let x = v ^ f.slot(a) ^ f.slot(b) ^ f.slot(c);
                f.set(i as usize, x);
            }
            return Some(f);
        }
        None
    }

    fn slot(&self, i: usize) -> u32 {
        let bit = i * self.width as usize;
        let (w, off) = (bit / 64, bit % 64);
        let mut x = self.slots[w] >> off;
        if off + self.width as usize > 64 {
            x |= self.slots[w + 1] << (64 - off);
        }
        (x & ((1u64 << self.width) - 1)) as u32
    }

    fn set(&mut self, i: usize, v: u32) {
        let bit = i * self.width as usize;
        let (w, off) = (bit / 64, bit % 64);
        let v = u64::from(v);
        self.slots[w] |= v << off;
        if off + self.width as usize > 64 {
            self.slots[w + 1] |= v >> (64 - off);
        }
    }

    /// The value of `key` (arbitrary for keys not in the set).
    pub(crate) fn get(&self, key: u64) -> u32 {
        let [a, b, c] = self.layout.positions(mix(key, self.seed));
        self.slot(a) ^ self.slot(b) ^ self.slot(c)
    }

    /// Keys it was built for.
    pub(crate) fn keys(&self) -> u64 {
        self.keys
    }

    /// Bits per value.
    pub(crate) fn width(&self) -> u32 {
        self.width
    }

    /// Bytes of [`Fuse::to_bytes`] (without its framing).
    pub(crate) fn byte_len(&self) -> usize {
        self.slots.len() * 8
    }

    /// Appends seed (8 bytes), key count, width, then the slot words.
    pub(crate) fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.seed.to_le_bytes());
        super::codec::put_uvarint(out, self.keys);
        out.push(self.width as u8);
        for w in &self.slots {
            out.extend_from_slice(&w.to_le_bytes());
        }
    }

    /// Reads what [`Fuse::put`] wrote.
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Fuse, String> {
        let seed = r.take(8, "fuse seed")?;
        let seed = u64::from_le_bytes(seed.try_into().expect("8 bytes"));
        let keys = r.u64("fuse key count")?;
        if keys > u64::from(u32::MAX / 2) {
            return Err(format!("fuse of {keys} keys"));
        }
        let width = u32::from(r.u8("fuse width")?);
        if !(1..=32).contains(&width) {
            return Err(format!("fuse values of {width} bits"));
        }
        let layout = layout(keys);
        let words = (layout.array_len as usize * width as usize).div_ceil(64);
        let b = r.take(words * 8, "fuse slots")?;
        let slots = b
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        Ok(Fuse {
            seed,
            keys,
            width,
            layout,
            slots,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn every_key_gets_its_value_at_every_size() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(3);
        for n in [0usize, 1, 2, 3, 7, 100, 1000, 20_000, 200_000] {
            let width = 10;
            let entries: Vec<(u64, u32)> = (0..n)
                .map(|_| (rng.random(), rng.random_range(0..1 << width)))
                .collect();
            let f = Fuse::build(&entries, width).unwrap();
            for &(k, v) in &entries {
                assert_eq!(f.get(k), v, "n {n}");
            }
            let mut buf = Vec::new();
            f.put(&mut buf);
            assert!(buf.len() - f.byte_len() <= 8 + 10 + 1);
            let g = Fuse::read(&mut Reader::new(&buf)).unwrap();
            assert_eq!(g, f);
            if n >= 200_000 {
                let bits = f.byte_len() as f64 * 8.0 / n as f64;
                assert!(bits < 1.2 * width as f64, "{bits} bits per key at n {n}");
            }
            for cut in [0, 9, buf.len() - 1] {
                assert!(Fuse::read(&mut Reader::new(&buf[..cut])).is_err());
            }
        }
    }

    #[test]
    fn widths_pack_across_words() {
        let entries: Vec<(u64, u32)> = (0..5000u64).map(|k| (k * 7919, (k % 97) as u32)).collect();
        for width in [7, 13, 32] {
            let f = Fuse::build(&entries, width).unwrap();
            assert!(entries.iter().all(|&(k, v)| f.get(k) == v), "width {width}");
        }
        assert_eq!(width_for(0), 1);
        assert_eq!(width_for(1), 1);
        assert_eq!(width_for(1023), 10);
        assert_eq!(width_for(1024), 11);
    }

    #[test]
    fn duplicate_keys_fail_to_build() {
        assert!(Fuse::build(&[(5, 1), (5, 2), (6, 0)], 4).is_none());
    }
}
