//! Full tiles, kept in memory: a full hash tile never changes, so once read it is served
//! from here without touching the store. Full entry bundles are kept too, but only for a
//! minute: retention may purge their events, and a purged event must stop being served.
//! Bounded by bytes; the oldest entries go first.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use auditrail_core::tiles::{Kind, Tile};
use bytes::Bytes;

/// How long a full entry bundle may be served from memory.
const BUNDLE_TTL: Duration = Duration::from_secs(60);

type Key = (String, Tile);

#[derive(Default)]
struct Inner {
    map: HashMap<Key, (Bytes, Instant)>,
    order: VecDeque<Key>,
    bytes: usize,
}

pub struct TileCache {
    budget: usize,
    inner: Mutex<Inner>,
}

impl TileCache {
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, org: &str, t: &Tile) -> Option<Bytes> {
        if !t.is_full() {
            return None;
        }
        let inner = self.lock();
        let (b, at) = inner.map.get(&(org.to_owned(), *t))?;
        if t.kind == Kind::Entries && at.elapsed() > BUNDLE_TTL {
            return None;
        }
        Some(b.clone())
    }

    pub fn put(&self, org: &str, t: &Tile, b: Bytes) {
        if !t.is_full() || b.len() > self.budget / 4 {
            return;
        }
        let mut inner = self.lock();
        let key = (org.to_owned(), *t);
        let len = b.len();
        if let Some((old, _)) = inner.map.insert(key.clone(), (b, Instant::now())) {
            inner.bytes -= old.len();
        } else {
            inner.order.push_back(key);
        }
        inner.bytes += len;
        while inner.bytes > self.budget {
            let Some(k) = inner.order.pop_front() else {
                break;
            };
            if let Some((old, _)) = inner.map.remove(&k) {
                inner.bytes -= old.len();
            }
        }
    }

    /// Forgets `org`'s entry bundles (after a purge).
    pub fn forget_entries(&self, org: &str) {
        let mut inner = self.lock();
        let gone: Vec<Key> = inner
            .map
            .keys()
            .filter(|(o, t)| o == org && t.kind == Kind::Entries)
            .cloned()
            .collect();
        for k in gone {
            if let Some((old, _)) = inner.map.remove(&k) {
                inner.bytes -= old.len();
            }
        }
        let Inner { order, map, .. } = &mut *inner;
        order.retain(|k| map.contains_key(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(kind: Kind, index: u64, width: u16) -> Tile {
        Tile { kind, index, width }
    }

    #[test]
    fn bounded_full_only_and_purge_aware() {
        let c = TileCache::new(100);
        let h = t(Kind::Hashes(0), 0, 256);
        c.put("a", &h, Bytes::from(vec![1u8; 20]));
        assert_eq!(c.get("a", &h).unwrap().len(), 20);
        assert!(c.get("b", &h).is_none());
        let partial = t(Kind::Hashes(0), 1, 3);
        c.put("a", &partial, Bytes::from(vec![1u8; 10]));
        assert!(c.get("a", &partial).is_none());
        for i in 1..10 {
            c.put("a", &t(Kind::Hashes(0), i, 256), Bytes::from(vec![0u8; 20]));
        }
        assert!(c.get("a", &h).is_none(), "the oldest went first");
        assert!(c.get("a", &t(Kind::Hashes(0), 9, 256)).is_some());
        let e = t(Kind::Entries, 9, 256);
        c.put("a", &e, Bytes::from(vec![0u8; 20]));
        assert!(c.get("a", &e).is_some());
        c.forget_entries("a");
        assert!(c.get("a", &e).is_none());
        assert!(c.get("a", &t(Kind::Hashes(0), 9, 256)).is_some());
        assert!(c.lock().bytes <= 100);
    }
}
