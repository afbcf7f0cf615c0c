//! Hash maps keyed by dense ids or by keys that are already hashes
//! (series ids, xxh3 label-set hashes, token hashes), shared by the
//! metrics head and the log store's full-text index.

use std::collections::{HashMap, VecDeque};
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

/// Values by dense `u32` id: a lookup is an index into a vector of boxed
/// slots, not a hash probe (with 100k series, the probes of a hash map keyed
/// by id were most of the cost of resolving a series on append). Slots
/// below the smallest live id are trimmed from the front, so a store whose
/// ids only grow (series churn) keeps a table about as long as its id span;
/// a hole costs one pointer. Iteration is in id order and yields `&u32`
/// like a `HashMap`'s (each slot keeps its id).
pub(crate) struct DenseMap<T> {
    /// Id of `slots[0]`.
    base: u32,
    slots: VecDeque<Option<Box<(u32, T)>>>,
    len: usize,
}

impl<T> Default for DenseMap<T> {
    fn default() -> Self {
        DenseMap {
            base: 0,
            slots: VecDeque::new(),
            len: 0,
        }
    }
}

impl<T> DenseMap<T> {
    fn slot(&self, id: u32) -> Option<usize> {
        let i = id.checked_sub(self.base)? as usize;
        (i < self.slots.len()).then_some(i)
    }

    /// The value of `id`.
    pub fn get(&self, id: &u32) -> Option<&T> {
        self.slots[self.slot(*id)?].as_deref().map(|s| &s.1)
    }

    /// The value of `id`, mutably.
    pub fn get_mut(&mut self, id: &u32) -> Option<&mut T> {
        let i = self.slot(*id)?;
        self.slots[i].as_deref_mut().map(|s| &mut s.1)
    }

    /// Sets the value of `id`, returning the previous one.
    pub fn insert(&mut self, id: u32, v: T) -> Option<T> {
        if self.slots.is_empty() {
            self.base = id;
        } else if id < self.base {
            for _ in id..self.base {
                self.slots.push_front(None);
            }
            self.base = id;
        }
        let i = (id - self.base) as usize;
        if i >= self.slots.len() {
            self.slots.resize_with(i + 1, || None);
        }
        let old = self.slots[i].replace(Box::new((id, v)));
        if old.is_none() {
            self.len += 1;
        }
        old.map(|b| b.1)
    }

    /// Removes `id`, returning its value.
    pub fn remove(&mut self, id: &u32) -> Option<T> {
        let i = self.slot(*id)?;
        let old = self.slots[i].take()?;
        self.len -= 1;
        while self.slots.front().is_some_and(Option::is_none) {
            self.slots.pop_front();
            self.base += 1;
        }
        while self.slots.back().is_some_and(Option::is_none) {
            self.slots.pop_back();
        }
        if self.slots.is_empty() {
            self.base = 0;
        }
        Some(old.1)
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// `(id, value)` in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&u32, &T)> {
        self.slots.iter().flatten().map(|s| (&s.0, &s.1))
    }

    /// Ids in order.
    pub fn keys(&self) -> impl Iterator<Item = &u32> {
        self.iter().map(|(id, _)| id)
    }

    /// Values in id order.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.iter().map(|(_, v)| v)
    }

    /// Values in id order, mutably.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.slots.iter_mut().flatten().map(|s| &mut s.1)
    }
}

impl<T> std::ops::Index<&u32> for DenseMap<T> {
    type Output = T;

    fn index(&self, id: &u32) -> &T {
        self.get(id).expect("no value for this id")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn dense_map_agrees_with_a_btree_map_and_trims_its_front() {
        let mut d = DenseMap::default();
        let mut r = BTreeMap::new();
        let mut x = 12345u64;
        for step in 0..20_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Ids drift upwards like series ids under churn.
            let id = step / 4 + (x % 64) as u32;
            if x % 3 == 0 {
                assert_eq!(d.remove(&id), r.remove(&id), "remove {id}");
            } else {
                assert_eq!(d.insert(id, step), r.insert(id, step), "insert {id}");
            }
            // The id leaving the window goes (its series churned away).
            if step % 4 == 0 && step > 0 {
                let gone = step / 4 - 1;
                assert_eq!(d.remove(&gone), r.remove(&gone), "remove {gone}");
            }
            assert_eq!(d.len(), r.len());
            assert_eq!(d.get(&id), r.get(&id));
        }
        let got: Vec<(u32, u32)> = d.iter().map(|(k, v)| (*k, *v)).collect();
        let want: Vec<(u32, u32)> = r.iter().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(got, want);
        assert!(d.keys().eq(r.keys()));
        assert!(
            d.slots.len() < 200,
            "front trimmed: {} slots",
            d.slots.len()
        );
        for v in d.values_mut() {
            *v += 1;
        }
        assert!(d.values().zip(r.values()).all(|(a, b)| *a == b + 1));
        let lowest = *r.keys().next().unwrap();
        assert_eq!(d.insert(3, 7), None);
        assert_eq!(d[&3], 7);
        assert_eq!(d.get(&lowest).copied(), r.get(&lowest).map(|v| v + 1));
        for k in d.keys().copied().collect::<Vec<_>>() {
            d.remove(&k);
        }
        assert_eq!((d.len(), d.slots.len()), (0, 0));
    }
}
