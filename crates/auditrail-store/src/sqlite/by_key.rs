//! Maps keyed by hashes the store made itself (index terms, client-id keys): their bits
//! are already uniform, so the map uses them as they are instead of hashing them again
//! with SipHash (a cost the single writer paid for every term of every event).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map from a 64-bit hash to `V`.
pub(crate) type ByKey<V> = HashMap<i64, V, BuildHasherDefault<KeyHasher>>;

/// Passes an `i64` key through; any other input is folded in (not used by `ByKey`).
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_i64(&mut self, i: i64) {
        self.0 = i as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_and_hash_to_themselves() {
        let mut m: ByKey<u32> = ByKey::default();
        for k in [i64::MIN, -1, 0, 1, 42, i64::MAX] {
            m.insert(k, k as u32);
        }
        assert_eq!(m.len(), 6);
        assert_eq!(m[&-1], u32::MAX);
        assert_eq!(m.get(&7), None);
        let mut h = KeyHasher::default();
        h.write_i64(-2);
        assert_eq!(h.finish(), (-2i64) as u64);
    }
}
