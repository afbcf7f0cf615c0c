//! Hash maps keyed by dense ids or by keys that are already hashes
//! (series ids, xxh3 label-set hashes, token hashes), shared by the
//! metrics head and the log store's full-text index.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Hashes integer keys by one multiplication: series ids are dense and
/// label-set keys are already xxh3 hashes, so SipHash would only cost time.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ *b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, v: u32) {
        self.write_u64(v as u64);
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;
