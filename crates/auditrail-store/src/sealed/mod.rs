//! Sealed frames: one level-0 tile's worth of events (256 consecutive seqs, aligned as
//! tlog-tiles lays out tiles) compressed together with zstd. Events are immutable and
//! arrive in seq order, so once a tile is complete and old enough it is sealed into one
//! frame that holds everything its events' rows held: each event's times, and its body,
//! or, once retention has purged the body, its leaf (a present body's leaf is its hash,
//! so it is not kept). Pure: no I/O.
//!
//! Layout before compression: a version byte and the entry count (u16 LE); then per
//! entry the change of `occurred_us` and of `received_ms` from the entry before (zigzag
//! LEB128) and a kind byte (0: a body; 1: purged, its 32-byte leaf follows). Then the
//! bodies: from version 3 on, as shapes and columns (`columns.rs`), about 40% smaller
//! once compressed (version 4 packs columns of hex ids; version 5 keeps a column whose
//! values are all one value once); in version 2 (what earlier releases wrote, and what a frame falls back to
//! if a body cannot be split), each body's LEB128 length in its entry, then the bodies
//! back to back.

mod columns;
mod hex;
mod join;

use auditrail_core::Hash;
use auditrail_core::merkle::leaf_hash;

use crate::terms::put_varint;
use crate::{Result, StoreError};

/// Events a frame holds: one tile.
pub const FRAME_EVENTS: u64 = 256;
/// zstd level. Sealing compresses each frame once and reads it many times (decoding
/// costs the same at any level): level 9 makes frames ~5% smaller than zstd's default 3,
/// for ~0.2 ms a frame (1 µs an event, a small part of what sealing costs an event).
const LEVEL: i32 = 9;
/// Bodies back to back.
const WHOLE: u8 = 2;
/// Bodies as shapes and columns, every column plain.
const COLUMNS: u8 = 3;
/// Bodies as shapes and columns, columns of hex ids packed (`hex.rs`).
const PACKED: u8 = 4;
/// As [`PACKED`], and a column of one value repeated is kept as that value and how many.
const CONSTANT: u8 = 5;
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
    let raw = columnar(entries).unwrap_or_else(|| layout(entries, WHOLE));
    zstd::bulk::compress(&raw, LEVEL)
        .map_err(|e| StoreError::Corrupt(format!("compressing a frame: {e}")))
}

/// The columns' codes of a columnar frame version.
fn codes(version: u8) -> columns::Codes {
    match version {
        COLUMNS => columns::Codes::Plain,
        PACKED => columns::Codes::Named,
        _ => columns::Codes::NamedOrOne,
    }
}

/// The version 5 layout, if every body splits and joins back exactly.
fn columnar(entries: &[Entry]) -> Option<Vec<u8>> {
    columnar_as(entries, CONSTANT)
}

/// A columnar layout (`COLUMNS`, `PACKED` or `CONSTANT`), if every body splits and
/// joins back.
fn columnar_as(entries: &[Entry], version: u8) -> Option<Vec<u8>> {
    let bodies: Vec<(&str, columns::Times)> = entries
        .iter()
        .filter_map(|e| Some((e.text()?, times(e))))
        .collect();
    let mut raw = layout(entries, version);
    let at = raw.len();
    columns::split(&bodies, codes(version), &mut raw)?;
    let times: Vec<columns::Times> = bodies.iter().map(|b| b.1).collect();
    let back = join::join(&mut Reader { raw: &raw, at }, &times, codes(version)).ok()?;
    let same = back.len() == bodies.len() && back.iter().zip(&bodies).all(|(a, b)| a == b.0);
    same.then_some(raw)
}

fn times(e: &Entry) -> columns::Times {
    columns::Times {
        occurred_us: e.occurred_us,
        received_ms: e.received_ms,
    }
}

/// The version byte, the entries' heads and, for [`WHOLE`], the bodies.
fn layout(entries: &[Entry], version: u8) -> Vec<u8> {
    let text: usize = entries.iter().filter_map(Entry::text).map(str::len).sum();
    let mut raw = Vec::with_capacity(3 + 8 * entries.len() + text);
    raw.push(version);
    raw.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    let (mut occ, mut rec) = (0i64, 0i64);
    for e in entries {
        put_varint(&mut raw, zigzag(e.occurred_us.wrapping_sub(occ)));
        put_varint(&mut raw, zigzag(e.received_ms.wrapping_sub(rec)));
        (occ, rec) = (e.occurred_us, e.received_ms);
        match &e.body {
            Body::Text(t) => {
                raw.push(0);
                if version == WHOLE {
                    put_varint(&mut raw, t.len() as u64);
                }
            }
            Body::Purged(h) => {
                raw.push(1);
                raw.extend_from_slice(h);
            }
        }
    }
    if version == WHOLE {
        for t in entries.iter().filter_map(Entry::text) {
            raw.extend_from_slice(t.as_bytes());
        }
    }
    raw
}

/// Reads the bytes of a frame after decompression.
struct Reader<'a> {
    raw: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
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
        // Most numbers here are below 128: one byte.
        if let Some(&b) = self.raw.get(self.at)
            && b < 0x80
        {
            self.at += 1;
            return Ok(u64::from(b));
        }
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

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
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
    decode_raw(&decompress(data)?)
}

/// [`decode`] of a frame already [`decompress`]ed.
pub fn decode_raw(raw: &[u8]) -> Result<Vec<Entry>> {
    let all = decode_picked(raw, &[], None)?;
    let n = all.len();
    let out: Vec<Entry> = all.into_iter().flatten().collect();
    if out.len() != n {
        return Err(Reader::bad("an entry is missing"));
    }
    Ok(out)
}

/// The path of a field in [`decode_some`]: its keys from the root (`["actor", "id"]`).
pub fn field_path(keys: &[&str]) -> Vec<u8> {
    let mut p = Vec::new();
    for k in keys {
        // Keys here are plain: nothing in them to escape.
        p.push(b'"');
        p.extend_from_slice(k.as_bytes());
        p.push(b'"');
    }
    p
}

/// What [`decode_some`] asks of each event: its values of the paths, as JSON text.
pub type Keep<'a> = dyn FnMut(&[Option<&[u8]>]) -> bool + 'a;

/// [`decode_raw`], writing out only the events `keep` accepts: it is shown each event's
/// value of each of `paths` ([`field_path`]) as JSON text, or `None` where the event has
/// none there (or more than one). The others are `None`, in their places; events whose
/// body was purged, and every event of a frame without columns, are always written.
/// Skipping an event spares joining its body, most of decoding it.
pub fn decode_some(
    raw: &[u8],
    paths: &[Vec<u8>],
    keep: &mut Keep<'_>,
) -> Result<Vec<Option<Entry>>> {
    decode_picked(raw, paths, Some(&mut |_, v: &[Option<&[u8]>]| keep(v)))
}

/// [`decode_raw`], writing out only the events at places `at` of the frame (0 its
/// first); the others are `None`, as in [`decode_some`] (purged events are always
/// written).
pub fn decode_at(raw: &[u8], at: &[usize]) -> Result<Vec<Option<Entry>>> {
    let mut wanted = [false; FRAME_EVENTS as usize];
    for &i in at {
        if let Some(w) = wanted.get_mut(i) {
            *w = true;
        }
    }
    decode_picked(raw, &[], Some(&mut |i, _| wanted[i]))
}

/// A frame's bytes as [`encode`] laid them out before compressing: what the decodes
/// read. Kept by readers that come back to a frame (the decodes cost a part of it).
pub fn decompress(data: &[u8]) -> Result<Vec<u8>> {
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
    Ok(raw)
}

/// An entry's head: its times, and its body if purged (its leaf), else (`Err`) its
/// body's length in a [`WHOLE`] frame (0 in a columnar one).
type Head = (i64, i64, std::result::Result<Body, usize>);

/// A frame's version and its entries' heads; leaves `r` where the bodies begin.
fn read_heads(r: &mut Reader<'_>) -> Result<(u8, Vec<Head>)> {
    let version = r.byte()?;
    if ![WHOLE, COLUMNS, PACKED, CONSTANT].contains(&version) {
        return Err(Reader::bad("unknown version"));
    }
    let columnar = version != WHOLE;
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
            0 if columnar => Err(0),
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
    Ok((version, heads))
}

/// A decompressed frame made ready to read a few of its events at a time: its entries'
/// heads and its columns' layout read once, and where each column stands every few
/// bodies (`join::Index`), so reading an event of it costs that event, not the frame.
/// What readers that come back to a frame keep. A frame without columns (version 2)
/// is decoded as before.
pub struct Opened {
    raw: Vec<u8>,
    /// Each entry's times.
    heads: Vec<(i64, i64)>,
    /// The entries whose bodies were purged: their places and leaves.
    purged: Vec<(usize, Hash)>,
    /// The places of the entries with bodies (in order) and the columns' index; `None`
    /// without columns.
    index: Option<(Vec<usize>, join::Index)>,
}

impl Opened {
    /// Reads a [`decompress`]ed frame's layout and indexes it: a pass over the whole
    /// frame, which checks it as a whole decode does.
    pub fn open(raw: Vec<u8>) -> Result<Self> {
        let mut r = Reader { raw: &raw, at: 0 };
        let (version, heads) = read_heads(&mut r)?;
        if version == WHOLE {
            return Ok(Self {
                raw,
                heads: Vec::new(),
                purged: Vec::new(),
                index: None,
            });
        }
        let places: Vec<usize> = (0..heads.len()).filter(|&i| heads[i].2.is_err()).collect();
        let index = join::Index::build(&mut r, places.len(), codes(version))?;
        if r.at != raw.len() {
            return Err(Reader::bad("trailing bytes"));
        }
        let purged = heads
            .iter()
            .enumerate()
            .filter_map(|(i, h)| match h.2 {
                Ok(Body::Purged(leaf)) => Some((i, leaf)),
                _ => None,
            })
            .collect();
        Ok(Self {
            raw,
            heads: heads.into_iter().map(|(o, rc, _)| (o, rc)).collect(),
            purged,
            index: Some((places, index)),
        })
    }

    /// The frame's bytes, as [`decompress`] returned them.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// What keeping it costs, in bytes (about).
    pub fn cost(&self) -> usize {
        self.raw.len()
            + 16 * self.heads.len()
            + 40 * self.purged.len()
            + self
                .index
                .as_ref()
                .map_or(0, |(p, i)| 8 * p.len() + i.cost())
    }

    /// [`decode_at`] of this frame.
    pub fn decode_at(&self, at: &[usize]) -> Result<Vec<Option<Entry>>> {
        let Some((places, _)) = &self.index else {
            return decode_at(&self.raw, at);
        };
        let bodies: Vec<usize> = (0..places.len())
            .filter(|&b| at.contains(&places[b]))
            .collect();
        self.with_bodies(&bodies)
    }

    /// [`decode_some`] of this frame.
    pub fn decode_some(
        &self,
        paths: &[Vec<u8>],
        keep: &mut Keep<'_>,
    ) -> Result<Vec<Option<Entry>>> {
        let Some((_, index)) = &self.index else {
            return decode_some(&self.raw, paths, keep);
        };
        let bodies = index.pick(&self.raw, paths, &mut |_, v| keep(v))?;
        self.with_bodies(&bodies)
    }

    /// Every entry whose body was purged, and those of `bodies` (indexes among the
    /// entries with bodies, ascending); the others `None`, in their places.
    fn with_bodies(&self, bodies: &[usize]) -> Result<Vec<Option<Entry>>> {
        let Some((places, index)) = &self.index else {
            return Err(Reader::bad("a frame without columns"));
        };
        let mut out: Vec<Option<Entry>> = vec![None; self.heads.len()];
        for &(place, leaf) in &self.purged {
            let (occurred_us, received_ms) = self.heads[place];
            out[place] = Some(Entry {
                occurred_us,
                received_ms,
                body: Body::Purged(leaf),
            });
        }
        let wanted: Vec<(usize, columns::Times)> = bodies
            .iter()
            .map(|&b| {
                let (occurred_us, received_ms) = self.heads[places[b]];
                (
                    b,
                    columns::Times {
                        occurred_us,
                        received_ms,
                    },
                )
            })
            .collect();
        for (&b, text) in bodies.iter().zip(index.join_at(&self.raw, &wanted)?) {
            let place = places[b];
            let (occurred_us, received_ms) = self.heads[place];
            out[place] = Some(Entry {
                occurred_us,
                received_ms,
                body: Body::Text(text),
            });
        }
        Ok(out)
    }
}

/// A whole or partial decode of a [`decompress`]ed frame; `keep`, when given, is asked
/// with each event's place in its frame (a [`join::KeepBody`] is told a body's index
/// among those joined).
fn decode_picked(
    raw: &[u8],
    paths: &[Vec<u8>],
    keep: Option<&mut join::KeepBody<'_>>,
) -> Result<Vec<Option<Entry>>> {
    let mut r = Reader { raw, at: 0 };
    let (version, heads) = read_heads(&mut r)?;
    let columnar = version != WHOLE;
    let mut joined = if columnar {
        let times: Vec<columns::Times> = heads
            .iter()
            .filter(|h| h.2.is_err())
            .map(|&(occurred_us, received_ms, _)| columns::Times {
                occurred_us,
                received_ms,
            })
            .collect();
        // The join counts only the events with bodies; `keep` is told their places.
        let places: Vec<usize> = (0..heads.len()).filter(|&i| heads[i].2.is_err()).collect();
        let mut at_place = keep
            .map(|k| move |b: usize, v: &[Option<&[u8]>]| places.get(b).is_some_and(|&i| k(i, v)));
        let pick = at_place.as_mut().map(|keep| join::Pick {
            paths,
            keep: keep as &mut join::KeepBody<'_>,
        });
        join::join_picked(&mut r, &times, codes(version), pick)?.into_iter()
    } else {
        Vec::new().into_iter()
    };
    let mut out = Vec::with_capacity(heads.len());
    for (occurred_us, received_ms, body) in heads {
        let body = match body {
            Ok(b) => b,
            Err(_) if columnar => {
                match joined
                    .next()
                    .ok_or_else(|| Reader::bad("a body is missing"))?
                {
                    Some(t) => Body::Text(t),
                    None => {
                        out.push(None);
                        continue;
                    }
                }
            }
            Err(len) => {
                let t = std::str::from_utf8(r.take(len)?)
                    .map_err(|_| Reader::bad("a body is not UTF-8"))?;
                Body::Text(t.to_owned())
            }
        };
        out.push(Some(Entry {
            occurred_us,
            received_ms,
            body,
        }));
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

    /// An event as the store keeps it: canonical, with `seq` and both times.
    fn stored(i: i64, occurred_us: i64, received_ms: i64) -> String {
        let t = |us: i64| {
            auditrail_core::time::format(chrono::DateTime::from_timestamp_micros(us).unwrap())
        };
        format!(
            r#"{{"action":"addProject","actor":{{"id":"u-{a}","type":"USER"}},"details":{{"tags":["x","y{i}"],"n":{i},"ok":true,"none":null,"nested":{{"q":"a\"b\\c"}}}},"id":"{id:016x}","occurred_at":"{o}","received_at":"{r}","seq":{seq}}}"#,
            a = i % 7,
            id = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            o = t(occurred_us),
            r = auditrail_core::time::format_millis(received_ms),
            seq = 1000 + i,
        )
    }

    fn stored_frame(n: i64) -> Vec<Entry> {
        (0..n)
            .map(|i| {
                let mut e = entry(i, Body::Purged([0; 32]));
                e.body = Body::Text(stored(i, e.occurred_us, e.received_ms));
                e
            })
            .collect()
    }

    /// A whole frame of stored events, two of them purged.
    fn frame_with_purges() -> Vec<Entry> {
        let mut entries = stored_frame(256);
        entries[3].purge();
        entries[200].purge();
        entries
    }

    #[test]
    fn an_opened_frame_gives_any_of_its_events_as_a_whole_decode_does() {
        let entries = frame_with_purges();
        let f = encode(&entries).unwrap();
        let opened = Opened::open(decompress(&f).unwrap()).unwrap();
        assert!(opened.cost() > opened.raw().len());
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(opened.decode_at(&[i]).unwrap()[i].as_ref(), Some(e));
        }
        // Several at once: within a mark, across marks, back again, past the end.
        let at = [0, 1, 7, 8, 9, 100, 101, 254, 255, 256, 4];
        let got = opened.decode_at(&at).unwrap();
        for (i, e) in entries.iter().enumerate() {
            let want = at.contains(&i) || e.text().is_none();
            assert_eq!(got[i].as_ref(), want.then_some(e), "event {i}");
        }
        // A frame that is not one fails to open.
        let mut raw = decompress(&f).unwrap();
        raw.push(0);
        assert!(Opened::open(raw).is_err(), "trailing bytes");
        let raw = decompress(&f).unwrap();
        assert!(
            Opened::open(raw[..raw.len() - 1].to_vec()).is_err(),
            "truncated"
        );
    }

    fn version_of(frame: &[u8]) -> u8 {
        zstd::bulk::decompress(frame, 1 << 24).unwrap()[0]
    }

    #[test]
    fn stored_events_are_split_into_columns_and_come_back_byte_for_byte() {
        let entries = frame_with_purges();
        let f = encode(&entries).unwrap();
        assert_eq!(version_of(&f), CONSTANT);
        assert_eq!(decode(&f).unwrap(), entries);
        // The same bodies kept whole compress worse.
        let whole = zstd::bulk::compress(&layout(&entries, WHOLE), LEVEL).unwrap();
        assert!(
            f.len() * 10 < whole.len() * 9,
            "{} vs {}",
            f.len(),
            whole.len()
        );
        // ... and frames earlier releases wrote still read: bodies whole, columns all
        // plain (version 3), hex ids packed (version 4).
        assert_eq!(decode(&whole).unwrap(), entries);
        let v4 = zstd::bulk::compress(&columnar_as(&entries, PACKED).unwrap(), LEVEL).unwrap();
        assert_eq!(version_of(&v4), PACKED);
        assert_eq!(decode(&v4).unwrap(), entries);
        // A column of one value (`action`, `actor.type`, ...) is kept once: less to decompress.
        let raw = |f: &[u8]| zstd::bulk::decompress(f, 1 << 24).unwrap().len();
        assert!(
            raw(&f) + 255 * 10 <= raw(&v4),
            "{} vs {}",
            raw(&f),
            raw(&v4)
        );
        let plain = zstd::bulk::compress(&columnar_as(&entries, COLUMNS).unwrap(), LEVEL).unwrap();
        assert_eq!(version_of(&plain), COLUMNS);
        assert_eq!(decode(&plain).unwrap(), entries);
        // The ids (random hex) are packed: the frame is smaller than with plain columns.
        assert!(f.len() < plain.len(), "{} vs {}", f.len(), plain.len());
        let some = decode_some(
            &decompress(&plain).unwrap(),
            &[field_path(&["id"])],
            &mut |_| true,
        )
        .unwrap();
        assert_eq!(
            some.into_iter().map(Option::unwrap).collect::<Vec<_>>(),
            entries
        );
    }

    #[test]
    fn a_packed_id_column_is_shown_to_a_partial_decode_as_written() {
        let entries = stored_frame(40);
        let f = encode(&entries).unwrap();
        let mut ids = Vec::new();
        decode_some(&decompress(&f).unwrap(), &[field_path(&["id"])], &mut |v| {
            ids.push(String::from_utf8(v[0].unwrap().to_vec()).unwrap());
            false
        })
        .unwrap();
        let want: Vec<String> = entries
            .iter()
            .map(|e| {
                let v: serde_json::Value = serde_json::from_str(e.text().unwrap()).unwrap();
                v["id"].to_string()
            })
            .collect();
        assert_eq!(ids, want);
    }

    #[test]
    fn values_that_do_not_match_their_times_are_kept_as_they_are() {
        let mut entries = stored_frame(5);
        // A seq that does not follow, one written as "07", times another instant's.
        let skew = |e: &mut Entry, from: &str, to: &str| {
            let Body::Text(t) = &mut e.body else {
                unreachable!()
            };
            *t = t.replace(from, to);
        };
        skew(&mut entries[1], "\"seq\":1001", "\"seq\":1009");
        skew(&mut entries[2], "\"seq\":1002", "\"seq\":07");
        entries[3].received_ms += 1;
        entries[4].occurred_us += 1;
        let f = encode(&entries).unwrap();
        assert_eq!(version_of(&f), CONSTANT);
        assert_eq!(decode(&f).unwrap(), entries);
    }

    #[test]
    fn bodies_that_are_not_json_are_kept_whole() {
        for odd in [
            "not json",
            "{\"a\":1",
            "{\"a\":\u{0}1}",
            "[1,,2]",
            "{\"a\" 1}",
            "{}{}",
            "",
        ] {
            let mut entries = stored_frame(3);
            entries[1].body = Body::Text(odd.into());
            let f = encode(&entries).unwrap();
            assert_eq!(decode(&f).unwrap(), entries, "{odd:?}");
        }
        // Shapes that are still JSON: empty containers, arrays of arrays, spaces.
        for odd in [
            "[]",
            "{}",
            "[[1,[2]],[],{}]",
            "{ \"a\" : [ 1 , \"b\" ] }",
            "7",
            "\"s\"",
        ] {
            let mut entries = stored_frame(3);
            entries[1].body = Body::Text(odd.into());
            let f = encode(&entries).unwrap();
            assert_eq!(version_of(&f), CONSTANT, "{odd:?}");
            assert_eq!(decode(&f).unwrap(), entries, "{odd:?}");
        }
    }

    fn json() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "\\PC{0,12}".prop_map(Value::String),
            "(seq|received_at|occurred_at)".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                proptest::collection::btree_map(
                    "(seq|received_at|occurred_at|\\PC{0,6})",
                    inner,
                    0..5
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Entries from (occurred, received, a JSON body, whether the body is a stored event's
    /// instead, whether to purge it (one in three asked for)).
    fn mixed_entries<'a>(
        items: impl Iterator<Item = (i64, i64, &'a serde_json::Value, bool, bool)>,
    ) -> Vec<Entry> {
        items
            .enumerate()
            .map(|(i, (o, r, v, seq, purged))| {
                let text = if seq {
                    stored(i as i64, o, r)
                } else {
                    v.to_string()
                };
                let mut e = Entry {
                    occurred_us: o,
                    received_ms: r,
                    body: Body::Text(text),
                };
                if purged && i % 3 == 0 {
                    e.purge();
                }
                e
            })
            .collect()
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

        #[test]
        fn json_bodies_round_trip(items in proptest::collection::vec(
            (0i64..1 << 50, 0i64..1 << 42, json(), any::<bool>()), 0..=64)) {
            let entries: Vec<Entry> = items.into_iter().enumerate().map(|(i, (o, r, v, seq))| {
                let mut text = v.to_string();
                if seq {
                    // Bodies like stored ones, so derivation is tried on them too.
                    text = stored(i as i64, o, r);
                }
                Entry { occurred_us: o, received_ms: r, body: Body::Text(text) }
            }).collect();
            prop_assert_eq!(decode(&encode(&entries).unwrap()).unwrap(), entries);
        }

        /// Decoding some events: those kept come back exactly as a whole decode gives
        /// them, the others are `None`, purged ones always come back, and `keep` is
        /// shown each event's values of the paths as its body has them.
        #[test]
        fn decoding_some_events_gives_exactly_those(items in proptest::collection::vec(
            (0i64..1 << 50, 0i64..1 << 42, json(), any::<bool>(), any::<bool>(), any::<u8>()), 0..=64)) {
            let entries = mixed_entries(items.iter().map(|(o, r, v, seq, purged, _)| (*o, *r, v, *seq, *purged)));
            let frame = encode(&entries).unwrap();
            let whole = decode(&frame).unwrap();
            let paths = [field_path(&["actor", "id"]), field_path(&["action"])];
            // What keep is shown, and what it says, in the order it is asked.
            let mut asked: Vec<Vec<Option<Vec<u8>>>> = Vec::new();
            let mut said = Vec::new();
            let votes: Vec<bool> = items.iter().map(|t| t.5 % 2 == 0).collect();
            let some = decode_some(&decompress(&frame).unwrap(), &paths, &mut |v| {
                asked.push(v.iter().map(|x| x.map(<[u8]>::to_vec)).collect());
                let k = votes.get(said.len()).copied().unwrap_or(true);
                said.push(k);
                k
            }).unwrap();
            prop_assert_eq!(some.len(), whole.len());
            let columnar = zstd::bulk::decompress(&frame, 1 << 24).unwrap()[0] == CONSTANT;
            let asked_before = asked.clone();
            let mut shown = asked.into_iter().zip(said);
            for (e, got) in whole.iter().zip(&some) {
                let Some(text) = e.text() else {
                    prop_assert_eq!(got.as_ref(), Some(e));
                    continue;
                };
                if !columnar {
                    prop_assert_eq!(got.as_ref(), Some(e));
                    continue;
                }
                let (values, kept) = shown.next().unwrap();
                prop_assert_eq!(got.is_some(), kept);
                if kept {
                    prop_assert_eq!(got.as_ref(), Some(e));
                }
                // The values shown are the body's scalars at those paths, as written.
                let v: serde_json::Value = match serde_json::from_str(text) {
                    Ok(v) => v,
                    Err(_) => continue,
                };
                let at = |keys: &[&str]| keys.iter().try_fold(&v, |v, k| v.get(k))
                    .filter(|x| !x.is_object() && !x.is_array())
                    .map(|x| x.to_string().into_bytes());
                prop_assert_eq!(&values[0], &at(&["actor", "id"]));
                prop_assert_eq!(&values[1], &at(&["action"]));
            }
            prop_assert!(shown.next().is_none());
            // An opened frame shows `keep` the same values and gives the same events.
            let opened = Opened::open(decompress(&frame).unwrap()).unwrap();
            let mut asked_again: Vec<Vec<Option<Vec<u8>>>> = Vec::new();
            let again = opened.decode_some(&paths, &mut |v| {
                asked_again.push(v.iter().map(|x| x.map(<[u8]>::to_vec)).collect());
                votes.get(asked_again.len() - 1).copied().unwrap_or(true)
            }).unwrap();
            prop_assert_eq!(again, some);
            prop_assert_eq!(asked_again, asked_before);
        }

        /// Decoding the events at some places gives exactly those (purged ones always),
        /// each as a whole decode gives it, with the seqs derived before them counted.
        #[test]
        fn decoding_events_at_places_gives_exactly_those(
            items in proptest::collection::vec(
                (0i64..1 << 50, 0i64..1 << 42, json(), any::<bool>(), any::<bool>()), 0..=80),
            at in proptest::collection::vec(0usize..90, 0..12),
        ) {
            let entries = mixed_entries(items.iter().map(|(o, r, v, seq, purged)| (*o, *r, v, *seq, *purged)));
            let frame = encode(&entries).unwrap();
            let some = decode_at(&decompress(&frame).unwrap(), &at).unwrap();
            prop_assert_eq!(some.len(), entries.len());
            // An opened frame gives the same, asked once or place by place.
            let opened = Opened::open(decompress(&frame).unwrap()).unwrap();
            prop_assert_eq!(&opened.decode_at(&at).unwrap(), &some);
            for &i in &at {
                let one = opened.decode_at(&[i]).unwrap();
                let want = entries.get(i).cloned().map(Some);
                prop_assert_eq!(one.get(i), want.as_ref());
            }
            let columnar = zstd::bulk::decompress(&frame, 1 << 24).unwrap()[0] == CONSTANT;
            for (i, (e, got)) in entries.iter().zip(&some).enumerate() {
                if at.contains(&i) || e.text().is_none() || !columnar {
                    prop_assert_eq!(got.as_ref(), Some(e));
                } else {
                    prop_assert_eq!(got, &None);
                }
            }
        }
    }
}
