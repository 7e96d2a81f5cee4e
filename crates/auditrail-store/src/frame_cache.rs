//! Decoded sealed frames shared by every read of a store, so a scan or a run of tile
//! reads decodes each frame once. Keyed by (the frame's first rid, its version): a purge
//! that rewrites a frame bumps its version, so no decoded copy of the old one is served.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::sealed::Entry;

/// Decoded frames kept for reads, by (first rid, version).
const CACHE_FRAMES: usize = 64;

pub(crate) type Frame = Arc<Vec<Entry>>;
/// A frame by (first rid, version), and when it was last used.
type Frames = HashMap<(i64, i64), (u64, Frame)>;

#[derive(Default)]
pub(crate) struct FrameCache {
    /// A use counter, and the frames.
    inner: Mutex<(u64, Frames)>,
}

impl FrameCache {
    pub(crate) fn get(&self, key: (i64, i64)) -> Option<Frame> {
        let mut g = self.inner.lock().ok()?;
        let (tick, map) = &mut *g;
        *tick += 1;
        let now = *tick;
        map.get_mut(&key).map(|(t, b)| {
            *t = now;
            b.clone()
        })
    }

    pub(crate) fn put(&self, key: (i64, i64), frame: Frame) {
        let Ok(mut g) = self.inner.lock() else { return };
        let (tick, map) = &mut *g;
        *tick += 1;
        if map.len() >= CACHE_FRAMES
            && let Some(old) = map.iter().min_by_key(|(_, (t, _))| *t).map(|(k, _)| *k)
        {
            map.remove(&old);
        }
        map.insert(key, (*tick, frame));
    }
}
