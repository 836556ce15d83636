//! Hash maps keyed by blob ids, with a hasher that costs one multiplication.
//!
//! Building a shard's encoding looks up every extent's blob in a map local to the call; with
//! the standard library's SipHash that hashing was about a third of the cost of rewriting a
//! shard on every small write. Blob ids are small integers chosen by the store, not by users,
//! so a keyed hash buys nothing here: a multiplicative (Fibonacci) hash spreads them well.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A map keyed by blob id.
pub type IdMap<V> = HashMap<u32, V, BuildHasherDefault<IdHasher>>;
/// A set of blob ids.
pub type IdSet = HashSet<u32, BuildHasherDefault<IdHasher>>;

/// Fibonacci hashing of integer keys (the high bits, which the table uses, mix every input
/// bit).
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*byte)).wrapping_mul(GOLDEN);
        }
    }

    fn write_u32(&mut self, value: u32) {
        self.0 = (self.0 ^ u64::from(value)).wrapping_mul(GOLDEN);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_and_sets_behave_like_the_standard_ones() {
        let mut map: IdMap<u64> = IdMap::default();
        let mut set = IdSet::default();
        for id in 0..10_000u32 {
            map.insert(id.wrapping_mul(7), u64::from(id));
            set.insert(id % 100);
        }
        assert_eq!(map.len(), 10_000);
        assert_eq!(set.len(), 100);
        assert!((0..10_000u32).all(|id| map[&id.wrapping_mul(7)] == u64::from(id)));
    }
}
