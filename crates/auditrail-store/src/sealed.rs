//! Sealed frames: one level-0 tile's worth of events (256 consecutive seqs, aligned as
//! tlog-tiles lays out tiles) compressed together with zstd. Events are immutable and
//! arrive in seq order, so once a tile is complete and old enough it is sealed into one
//! frame that holds everything its events' rows held: each event's times, and its body,
//! or, once retention has purged the body, its leaf (a present body's leaf is its hash,
//! so it is not kept). Pure: no I/O.
//!
//! Layout before compression: a version byte (2) and the entry count (u16 LE); then per
//! entry the change of `occurred_us` and of `received_ms` from the entry before (zigzag
//! LEB128), a kind byte (0: a body follows, as a LEB128 length; 1: purged, its 32-byte
//! leaf follows); then the bodies back to back.

use auditrail_core::Hash;
use auditrail_core::merkle::leaf_hash;

use crate::terms::put_varint;
use crate::{Result, StoreError};

/// Events a frame holds: one tile.
pub const FRAME_EVENTS: u64 = 256;
/// zstd level: level 3 is zstd's default, the best size for the time at this shape.
const LEVEL: i32 = 3;
const VERSION: u8 = 2;
/// The largest body a frame may hold once decoded (events are capped far below this).
const MAX_BODY: usize = 4 << 20;

/// One sealed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub occurred_us: i64,
    pub received_ms: i64,
    pub body: Body,
}

/// What a sealed event still has: its body, or (purged) only its leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Text(String),
    Purged(Hash),
}

impl Entry {
    pub fn text(&self) -> Option<&str> {
        match &self.body {
            Body::Text(t) => Some(t),
            Body::Purged(_) => None,
        }
    }

    pub fn leaf(&self) -> Hash {
        match &self.body {
            Body::Text(t) => leaf_hash(t.as_bytes()),
            Body::Purged(h) => *h,
        }
    }

    /// The body goes (retention); the leaf stays.
    pub fn purge(&mut self) {
        if let Body::Text(t) = &self.body {
            self.body = Body::Purged(leaf_hash(t.as_bytes()));
        }
    }
}

/// The first seq of the frame holding `seq` (seqs start at 1).
pub fn frame_start(seq: u64) -> u64 {
    (seq - 1) / FRAME_EVENTS * FRAME_EVENTS + 1
}

/// The last seq that may be sealed: the end of the last complete tile at least
/// `keep_open` events (and at least one) behind the head.
pub fn sealable_end(head: u64, keep_open: u64) -> u64 {
    head.saturating_sub(keep_open.max(1)) / FRAME_EVENTS * FRAME_EVENTS
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Compresses `entries` (at most [`FRAME_EVENTS`]) into a frame.
pub fn encode(entries: &[Entry]) -> Result<Vec<u8>> {
    if entries.len() as u64 > FRAME_EVENTS {
        return Err(StoreError::Corrupt(format!(
            "a frame holds at most {FRAME_EVENTS} events, not {}",
            entries.len()
        )));
    }
    let text: usize = entries.iter().filter_map(Entry::text).map(str::len).sum();
    let mut raw = Vec::with_capacity(3 + 8 * entries.len() + text);
    raw.push(VERSION);
    raw.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    let (mut occ, mut rec) = (0i64, 0i64);
    for e in entries {
        put_varint(&mut raw, zigzag(e.occurred_us.wrapping_sub(occ)));
        put_varint(&mut raw, zigzag(e.received_ms.wrapping_sub(rec)));
        (occ, rec) = (e.occurred_us, e.received_ms);
        match &e.body {
            Body::Text(t) => {
                raw.push(0);
                put_varint(&mut raw, t.len() as u64);
            }
            Body::Purged(h) => {
                raw.push(1);
                raw.extend_from_slice(h);
            }
        }
    }
    for t in entries.iter().filter_map(Entry::text) {
        raw.extend_from_slice(t.as_bytes());
    }
    zstd::bulk::compress(&raw, LEVEL)
        .map_err(|e| StoreError::Corrupt(format!("compressing a frame: {e}")))
}

/// Reads the bytes of a frame after decompression.
struct Reader<'a> {
    raw: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn bad(why: &str) -> StoreError {
        StoreError::Corrupt(format!("sealed frame: {why}"))
    }

    fn byte(&mut self) -> Result<u8> {
        let b = *self
            .raw
            .get(self.at)
            .ok_or_else(|| Self::bad("truncated"))?;
        self.at += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Self::bad("a number is too long"))
    }

    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.raw.len())
            .ok_or_else(|| Self::bad("truncated"))?;
        let s = &self.raw[self.at..end];
        self.at = end;
        Ok(s)
    }
}

/// Decompresses a frame; `Corrupt` on anything but a frame [`encode`] made.
pub fn decode(data: &[u8]) -> Result<Vec<Entry>> {
    thread_local! {
        /// One decompression context per thread: making one costs more than a frame.
        static DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    let cap = 3 + FRAME_EVENTS as usize * (64 + MAX_BODY);
    // Frames record their decoded size; the buffer is made that size, never `cap`.
    let size = zstd::zstd_safe::get_frame_content_size(data)
        .ok()
        .flatten()
        .ok_or_else(|| Reader::bad("no decoded size"))?;
    let size = usize::try_from(size)
        .ok()
        .filter(|&n| n <= cap)
        .ok_or_else(|| Reader::bad("too large"))?;
    let mut raw = Vec::with_capacity(size);
    DCTX.with(|d| {
        let mut d = d.borrow_mut();
        let d = match &mut *d {
            Some(d) => d,
            slot => slot.insert(zstd::bulk::Decompressor::new()?),
        };
        d.decompress_to_buffer(data, &mut raw)
    })
    .map_err(|e| Reader::bad(&e.to_string()))?;
    let mut r = Reader { raw: &raw, at: 0 };
    if r.byte()? != VERSION {
        return Err(Reader::bad("unknown version"));
    }
    let n = usize::from(u16::from_le_bytes([r.byte()?, r.byte()?]));
    if n as u64 > FRAME_EVENTS {
        return Err(Reader::bad("too many entries"));
    }
    let (mut occ, mut rec) = (0i64, 0i64);
    let mut heads = Vec::with_capacity(n);
    for _ in 0..n {
        occ = occ.wrapping_add(unzigzag(r.varint()?));
        rec = rec.wrapping_add(unzigzag(r.varint()?));
        let body = match r.byte()? {
            0 => {
                let len = r.varint()?;
                if len > MAX_BODY as u64 {
                    return Err(Reader::bad("a body is too long"));
                }
                Err(len as usize)
            }
            1 => {
                let mut h = [0u8; 32];
                h.copy_from_slice(r.take(32)?);
                Ok(Body::Purged(h))
            }
            _ => return Err(Reader::bad("unknown entry kind")),
        };
        heads.push((occ, rec, body));
    }
    let mut out = Vec::with_capacity(n);
    for (occurred_us, received_ms, body) in heads {
        let body = match body {
            Ok(b) => b,
            Err(len) => {
                let t = std::str::from_utf8(r.take(len)?)
                    .map_err(|_| Reader::bad("a body is not UTF-8"))?;
                Body::Text(t.to_owned())
            }
        };
        out.push(Entry {
            occurred_us,
            received_ms,
            body,
        });
    }
    if r.at != raw.len() {
        return Err(Reader::bad("trailing bytes"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: a panic is a failed test")]
    use super::*;
    use proptest::prelude::*;

    fn entry(i: i64, body: Body) -> Entry {
        Entry {
            occurred_us: 1_700_000_000_000_000 + i * 1000 - (i % 3) * 7,
            received_ms: 1_700_000_000_000 + i,
            body,
        }
    }

    #[test]
    fn frames_start_on_tile_boundaries() {
        assert_eq!(frame_start(1), 1);
        assert_eq!(frame_start(256), 1);
        assert_eq!(frame_start(257), 257);
        assert_eq!(frame_start(1000), 769);
    }

    #[test]
    fn a_frame_is_much_smaller_than_its_bodies() {
        let entries: Vec<Entry> = (0..256)
            .map(|i| {
                entry(
                    i,
                    Body::Text(format!(
                        r#"{{"action":"updateProject","actor":{{"id":"u-{}"}},"seq":{i}}}"#,
                        i % 7
                    )),
                )
            })
            .collect();
        let f = encode(&entries).unwrap();
        let raw: usize = entries.iter().filter_map(Entry::text).map(str::len).sum();
        assert!(f.len() * 5 < raw, "{} of {raw}", f.len());
        assert_eq!(decode(&f).unwrap(), entries);
    }

    #[test]
    fn a_purged_entry_keeps_its_leaf_and_times() {
        let mut e = entry(5, Body::Text("{\"a\":1}".into()));
        let leaf = e.leaf();
        e.purge();
        assert_eq!(e.text(), None);
        assert_eq!(e.leaf(), leaf);
        let back = decode(&encode(std::slice::from_ref(&e)).unwrap()).unwrap();
        assert_eq!(back, vec![e]);
    }

    #[test]
    fn garbage_and_oversized_frames_are_refused() {
        assert!(decode(b"not zstd").is_err());
        let f = zstd::bulk::compress(&[1, 0, 0], 3).unwrap();
        assert!(decode(&f).is_err(), "unknown version");
        let f = zstd::bulk::compress(&[2, 1, 0, 0, 0, 0, 9, b'x'], 3).unwrap();
        assert!(decode(&f).is_err(), "truncated body");
        let f = zstd::bulk::compress(&[2, 1, 0, 0, 0, 7], 3).unwrap();
        assert!(decode(&f).is_err(), "unknown kind");
        let too_many: Vec<Entry> = (0..257).map(|i| entry(i, Body::Purged([0; 32]))).collect();
        assert!(encode(&too_many).is_err());
    }

    proptest! {
        #[test]
        fn frames_round_trip(items in proptest::collection::vec(
            (any::<i64>(), any::<i64>(), proptest::option::of("\\PC{0,200}"), any::<[u8; 32]>()), 0..=256)) {
            let entries: Vec<Entry> = items.into_iter().map(|(o, r, t, h)| Entry {
                occurred_us: o,
                received_ms: r,
                body: t.map_or(Body::Purged(h), Body::Text),
            }).collect();
            prop_assert_eq!(decode(&encode(&entries).unwrap()).unwrap(), entries);
        }
    }
}
