//! Sealed frames shared by every read of a store, so that reads which come back to a
//! frame do not pay for it again. Two kinds are kept, each least recently used first
//! out, keyed by (the frame's first rid, its version): a purge that rewrites a frame
//! bumps its version, so no copy of the old one is served.
//!
//! - **Decoded** frames (every event joined back): a scan or a run of tile reads
//!   decodes each frame once. Up to 64 (a few MB).
//! - **Opened** frames (`sealed::Opened`: decompressed, their layout read, and where
//!   each column stands every few events found as they are asked for): a search joins
//!   only its candidates of a frame, and an opened frame gives one for about the cost of
//!   that event, where decompressing and skipping to it cost the whole frame; pages of
//!   recent events come back to the same frames. Up to 32 MB (~900 frames of the
//!   export bench's events). A frame read ahead for a search that was done before it
//!   came to it is kept as stored, so the next search needs no read of it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::Result;
use crate::sealed::{Entry, Opened};

/// A frame's bytes as the cache holds them.
#[derive(Clone)]
pub(crate) enum Held {
    /// Decompressed.
    Raw(RawFrame),
    /// As stored: read for a search that was done before it came to the frame (the next
    /// search then needs no read of it).
    Stored(Arc<[u8]>),
}

/// Decoded frames kept for reads.
const CACHE_FRAMES: usize = 64;
/// Bytes of opened frames kept for reads.
const RAW_BYTES: usize = 32 << 20;

pub(crate) type Frame = Arc<Vec<Entry>>;
/// A decompressed frame, opened for reading a few events at a time.
pub(crate) type RawFrame = Arc<Opened>;
type Key = (i64, i64);

/// Values by key within a budget of cost, the least recently used dropped first.
struct Lru<V> {
    tick: u64,
    /// Each value, its last use and its cost.
    map: HashMap<Key, (u64, V, usize)>,
    /// Keys by last use.
    order: BTreeMap<u64, Key>,
    cost: usize,
    budget: usize,
}

impl<V: Clone> Lru<V> {
    fn new(budget: usize) -> Self {
        Self {
            tick: 0,
            map: HashMap::new(),
            order: BTreeMap::new(),
            cost: 0,
            budget,
        }
    }

    fn get(&mut self, key: Key) -> Option<V> {
        self.tick += 1;
        let (t, v, _) = self.map.get_mut(&key)?;
        self.order.remove(t);
        *t = self.tick;
        self.order.insert(self.tick, key);
        Some(v.clone())
    }

    fn put(&mut self, key: Key, value: V, cost: usize) {
        if cost > self.budget {
            return;
        }
        self.tick += 1;
        if let Some((t, _, c)) = self.map.remove(&key) {
            self.order.remove(&t);
            self.cost -= c;
        }
        while self.cost + cost > self.budget {
            let Some((_, old)) = self.order.pop_first() else {
                break;
            };
            if let Some((_, _, c)) = self.map.remove(&old) {
                self.cost -= c;
            }
        }
        self.map.insert(key, (self.tick, value, cost));
        self.order.insert(self.tick, key);
        self.cost += cost;
    }
}

pub(crate) struct FrameCache {
    decoded: Mutex<Lru<Frame>>,
    raw: Mutex<Lru<Held>>,
}

impl Default for FrameCache {
    fn default() -> Self {
        Self {
            decoded: Mutex::new(Lru::new(CACHE_FRAMES)),
            raw: Mutex::new(Lru::new(RAW_BYTES)),
        }
    }
}

impl FrameCache {
    /// The decoded frame at `key` (first rid, version), if held.
    pub(crate) fn get(&self, key: Key) -> Option<Frame> {
        self.decoded.lock().ok()?.get(key)
    }

    pub(crate) fn put(&self, key: Key, frame: Frame) {
        if let Ok(mut g) = self.decoded.lock() {
            g.put(key, frame, 1);
        }
    }

    /// Frame `key`'s bytes, if held: take them now, and [`Self::raw_of`] them when
    /// they are needed.
    pub(crate) fn get_held(&self, key: Key) -> Option<Held> {
        self.raw.lock().ok()?.get(key)
    }

    /// The opened frame of bytes `held` for `key` (opened now, and kept so, if they were
    /// held as stored).
    pub(crate) fn raw_of(&self, key: Key, held: Held) -> Result<RawFrame> {
        match held {
            Held::Raw(r) => Ok(r),
            Held::Stored(data) => {
                let raw: RawFrame = Arc::new(Opened::open(crate::sealed::decompress(&data)?)?);
                self.put_raw(key, raw.clone());
                Ok(raw)
            }
        }
    }

    /// The opened frame at `key`, if held.
    pub(crate) fn get_raw(&self, key: Key) -> Result<Option<RawFrame>> {
        self.get_held(key).map(|h| self.raw_of(key, h)).transpose()
    }

    pub(crate) fn put_raw(&self, key: Key, raw: RawFrame) {
        if let Ok(mut g) = self.raw.lock() {
            let cost = raw.cost();
            g.put(key, Held::Raw(raw), cost);
        }
    }

    /// Keeps frame `key`'s stored bytes, unless it is held already.
    pub(crate) fn put_stored(&self, key: Key, data: &[u8]) {
        if let Ok(mut g) = self.raw.lock()
            && !g.map.contains_key(&key)
        {
            g.put(key, Held::Stored(data.into()), data.len());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: a panic is a failed test")]
    use super::*;

    #[test]
    fn the_least_recently_used_goes_first_within_the_budget() {
        let mut l = Lru::new(10);
        l.put((1, 0), 'a', 4);
        l.put((2, 0), 'b', 4);
        assert_eq!(l.get((1, 0)), Some('a'));
        // 4 + 4 + 4 > 10: b, used least recently, goes.
        l.put((3, 0), 'c', 4);
        assert_eq!(l.get((2, 0)), None);
        assert_eq!(l.get((1, 0)), Some('a'));
        assert_eq!(l.get((3, 0)), Some('c'));
        assert_eq!(l.cost, 8);
        // Replacing a key replaces its cost; a value over the budget is not kept.
        l.put((3, 0), 'd', 2);
        assert_eq!((l.get((3, 0)), l.cost), (Some('d'), 6));
        l.put((4, 0), 'e', 11);
        assert_eq!((l.get((4, 0)), l.cost), (None, 6));
        // A new version is another key.
        assert_eq!(l.get((1, 1)), None);
        assert_eq!(l.map.len(), l.order.len());
    }

    #[test]
    fn a_frame_kept_as_stored_is_decompressed_once_and_never_replaces_one_decompressed() {
        use crate::sealed::{self, Body, Entry};
        let entries: Vec<Entry> = (0..3)
            .map(|i| Entry {
                occurred_us: i,
                received_ms: i,
                body: Body::Text(format!("{{\"seq\":{}}}", i + 1)),
            })
            .collect();
        let stored = sealed::encode(&entries).unwrap();
        let raw = sealed::decompress(&stored).unwrap();
        let c = FrameCache::default();
        assert!(c.get_raw((1, 0)).unwrap().is_none());
        c.put_stored((1, 0), &stored);
        assert!(matches!(c.get_held((1, 0)), Some(Held::Stored(_))));
        assert_eq!(c.get_raw((1, 0)).unwrap().unwrap().raw(), &raw[..]);
        // Now held decompressed; keeping the stored bytes again changes nothing.
        c.put_stored((1, 0), &stored);
        assert!(matches!(c.get_held((1, 0)), Some(Held::Raw(_))));
        // Bytes that are no frame are an error when needed, not before.
        c.put_stored((2, 0), b"not a frame");
        assert!(c.get_raw((2, 0)).is_err());
    }
}
