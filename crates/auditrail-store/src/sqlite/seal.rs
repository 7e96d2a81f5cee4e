//! Sealed segments on SQLite (see `crate::sealed` for a frame's layout).
//!
//! A complete tile of an org's log (256 seqs) at least `keep_open` events behind its
//! head is sealed in one transaction: everything its `events` rows hold (times, bodies,
//! and the leaves of purged events) becomes one zstd frame in `sealed`, keyed by the
//! tile's first rid, and the rows are deleted. Each body is checked against its stored
//! leaf first; afterwards a sealed event's leaf is its body's hash. `sealed_upto` holds,
//! per org, the first seq not yet sealed: every seq below it is in a frame, every seq
//! from it on in a row. A purge that reaches a sealed tile rewrites its frame with the
//! purged bodies replaced by their leaves, and bumps the frame's version so no decoded
//! copy of the old one is served again; `live` counts a frame's bodies and
//! `live_from_ms` is the earliest `received_ms` among them, so a purge reads only the
//! frames it will change.
//!
//! A frame's bytes are kept in parts of at most [`PART`] bytes: the first in `sealed`,
//! the rest in `sealed_more` at the frame's first rid plus 1, 2, ... A row of SQLite
//! holds its bytes in its page when they fit, and two ~8.5 KB frames do not fit in one
//! 16 KB page: whole frames left half of nearly every page empty. Parts of a quarter
//! page pack pages full, and a frame is still read from adjacent rows.

use std::sync::Arc;

use auditrail_core::Hash;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::rid::{MAX_SEQ, rid, seq_of};
use crate::error::Context;
use crate::frame_cache::{Frame, FrameCache, RawFrame};
use crate::sealed::{self, Body, Entry, FRAME_EVENTS, Opened, frame_start, sealable_end};
use crate::{Result, SealCounts, StoreError};

/// Reads one org's sealed events within one read (one snapshot): where the sealed part
/// ends, and the last frame used kept at hand, so a scan looks each frame up once.
pub(crate) struct Unsealer<'a> {
    conn: &'a Connection,
    cache: &'a FrameCache,
    org_num: i64,
    /// The first seq not sealed.
    pub(crate) next: u64,
    last: Option<(u64, Frame)>,
    /// Whether frames decoded here are offered to the shared cache: not by a long scan
    /// (an export, a delivery batch), which reads each frame once and would only evict
    /// what interactive reads come back to.
    keep: bool,
}

impl<'a> Unsealer<'a> {
    pub(crate) fn new(conn: &'a Connection, cache: &'a FrameCache, org_num: i64) -> Result<Self> {
        Ok(Self {
            conn,
            cache,
            org_num,
            next: sealed_upto(conn, org_num)?,
            last: None,
            keep: true,
        })
    }

    /// For a long scan: frames it decodes are not kept in the shared cache.
    pub(crate) fn scanning(mut self) -> Self {
        self.keep = false;
        self
    }

    pub(crate) fn is_sealed(&self, seq: u64) -> bool {
        seq < self.next
    }

    /// The org's first unsealed seq.
    pub(crate) fn next(&self) -> u64 {
        self.next
    }

    pub(crate) fn org_num(&self) -> i64 {
        self.org_num
    }

    /// The frame starting at seq `start` (a sealed tile's first seq).
    pub(crate) fn frame(&mut self, start: u64) -> Result<Frame> {
        if let Some((s, f)) = &self.last
            && *s == start
        {
            return Ok(f.clone());
        }
        let f = frame_at(self.conn, self.cache, rid(self.org_num, start), self.keep)?;
        self.last = Some((start, f.clone()));
        Ok(f)
    }

    /// The frame starting at seq `start` for a scan to read once: a scanning unsealer
    /// keeps no hold of it, so when it was decoded here the caller holds the only copy.
    pub(crate) fn frame_to_scan(&mut self, start: u64) -> Result<Frame> {
        let f = self.frame(start)?;
        if !self.keep {
            self.last = None;
        }
        Ok(f)
    }

    /// The events at places `at` of the frame starting at seq `start` (the others
    /// `None`): from the frame if it is held decoded, else decoding only those (a search's
    /// candidates are a few events of each frame).
    pub(crate) fn entries_at(&mut self, start: u64, at: &[usize]) -> Result<Vec<Option<Entry>>> {
        let whole = |f: &Frame| {
            (0..f.len())
                .map(|i| at.contains(&i).then(|| f[i].clone()))
                .collect()
        };
        if let Some((s, f)) = &self.last
            && *s == start
        {
            return Ok(whole(f));
        }
        match frame_read(self.conn, self.cache, rid(self.org_num, start))? {
            Read::Decoded(f) => {
                let picked = whole(&f);
                self.last = Some((start, f));
                Ok(picked)
            }
            Read::Raw(_, raw) => raw.decode_at(at),
            // Kept, the frame is opened (indexed) once for the searches that come back
            // to it; otherwise only the events wanted are decoded.
            Read::Stored(version, data) if self.keep => {
                let raw: RawFrame = Arc::new(Opened::open(sealed::decompress(&data)?)?);
                self.cache
                    .put_raw((rid(self.org_num, start), version), raw.clone());
                raw.decode_at(at)
            }
            Read::Stored(_, data) => sealed::decode_at(&sealed::decompress(&data)?, at),
        }
    }

    /// Sealed event `seq`.
    pub(crate) fn entry(&mut self, seq: u64) -> Result<Entry> {
        let start = frame_start(seq);
        self.frame(start)?
            .get((seq - start) as usize)
            .cloned()
            .ok_or_else(|| StoreError::Corrupt(format!("sealed event {seq}: not in its frame")))
    }
}

/// The bytes of a frame kept in its row of `sealed`: a quarter of a 16 KB page, less the
/// row's own bytes. The rest goes on in rows of `sealed_more`.
pub(crate) const PART: usize = 4_000;
/// The bytes of each further part of a frame, in `sealed_more`, at least.
const MORE_PART: usize = 1_000;

/// The whole frame whose first part (from `sealed`) is `head`.
pub(crate) fn frame_bytes(conn: &Connection, first: i64, mut head: Vec<u8>) -> Result<Vec<u8>> {
    if head.len() < PART {
        return Ok(head);
    }
    let mut st = conn
        .prepare_cached("SELECT data FROM sealed_more WHERE rid BETWEEN ?1 AND ?2 ORDER BY rid")
        .op("prepare frame parts read")?;
    let mut rows = st
        .query([first + 1, first + FRAME_EVENTS as i64 - 1])
        .op("read frame parts")?;
    while let Some(r) = rows.next().op("read frame parts")? {
        let part = r.get_ref(0).op("frame part")?;
        let part = part.as_blob().map_err(|_| {
            StoreError::Corrupt(format!("a part of the frame of seq {}", seq_of(first)))
        })?;
        head.extend_from_slice(part);
    }
    Ok(head)
}

/// The bytes of each part in `sealed_more` of a frame that has `rest` beyond its first:
/// small parts pack pages tightly (parts of 4,000 bytes left a tenth of each page empty),
/// but no more of them than the rids up to the next frame.
pub(crate) fn more_part(rest: usize) -> usize {
    MORE_PART.max(rest.div_ceil(FRAME_EVENTS as usize - 1))
}

/// Writes frame `data` at `first`: its first part is returned for the `sealed` row, the
/// rest replace what `sealed_more` held for it.
fn store_parts<'d>(t: &Transaction<'_>, first: i64, data: &'d [u8]) -> Result<&'d [u8]> {
    t.prepare_cached("DELETE FROM sealed_more WHERE rid BETWEEN ?1 AND ?2")
        .op("prepare frame parts delete")?
        .execute([first + 1, first + FRAME_EVENTS as i64 - 1])
        .op("delete frame parts")?;
    let (head, rest) = data.split_at(data.len().min(PART));
    let size = more_part(rest.len());
    let mut ins = t
        .prepare_cached("INSERT INTO sealed_more (rid, data) VALUES (?1, ?2)")
        .op("prepare frame part")?;
    for (k, part) in rest.chunks(size).enumerate() {
        ins.execute(params![first + 1 + k as i64, part])
            .op("write frame part")?;
    }
    Ok(head)
}

/// The decoded frame whose first rid is `first`.
fn frame_at(conn: &Connection, cache: &FrameCache, first: i64, keep: bool) -> Result<Frame> {
    match frame_read(conn, cache, first)? {
        Read::Decoded(f) => Ok(f),
        Read::Raw(version, raw) => {
            let f = Arc::new(sealed::decode_raw(raw.raw())?);
            if keep {
                cache.put((first, version), f.clone());
            }
            Ok(f)
        }
        Read::Stored(version, data) => {
            let f = Arc::new(sealed::decode(&data)?);
            if keep {
                cache.put((first, version), f.clone());
            }
            Ok(f)
        }
    }
}

/// A frame as [`frame_read`] finds it.
enum Read {
    /// Held decoded by the shared cache.
    Decoded(Frame),
    /// Its version, held decompressed by the shared cache.
    Raw(i64, RawFrame),
    /// Its version and its bytes, whole.
    Stored(i64, Vec<u8>),
}

/// The frame whose first rid is `first`, decoded or decompressed if the cache holds it.
fn frame_read(conn: &Connection, cache: &FrameCache, first: i64) -> Result<Read> {
    let missing = || {
        StoreError::Corrupt(format!(
            "the sealed frame of seq {} is missing",
            seq_of(first)
        ))
    };
    let version: i64 = conn
        .prepare_cached("SELECT version FROM sealed WHERE first_rid = ?1")
        .op("prepare frame version")?
        .query_row([first], |x| x.get(0))
        .optional()
        .op("read frame version")?
        .ok_or_else(missing)?;
    if let Some(b) = cache.get((first, version)) {
        return Ok(Read::Decoded(b));
    }
    if let Some(r) = cache.get_raw((first, version))? {
        return Ok(Read::Raw(version, r));
    }
    // The version again with the data: outside a transaction a purge may commit between
    // the two reads, and the frame is cached under the version its data has.
    let (version, data): (i64, Vec<u8>) = conn
        .prepare_cached("SELECT version, data FROM sealed WHERE first_rid = ?1")
        .op("prepare frame read")?
        .query_row([first], |x| Ok((x.get(0)?, x.get(1)?)))
        .optional()
        .op("read frame")?
        .ok_or_else(missing)?;
    Ok(Read::Stored(version, frame_bytes(conn, first, data)?))
}

/// The leaves of `u`'s org's seqs `lo..=hi`, in order: from the frames below the sealed
/// mark, from the rows above it.
pub(crate) fn leaves(u: &mut Unsealer<'_>, lo: u64, hi: u64) -> Result<Vec<Hash>> {
    let (conn, org_num) = (u.conn, u.org_num);
    let mut out = Vec::with_capacity(hi.saturating_sub(lo) as usize + 1);
    let mut seq = lo;
    while seq <= hi && u.is_sealed(seq) {
        let start = frame_start(seq);
        let frame = u.frame(start)?;
        let end = (start + FRAME_EVENTS - 1).min(hi).min(u.next - 1);
        for s in seq..=end {
            let e = frame.get((s - start) as usize).ok_or_else(|| {
                StoreError::Corrupt(format!("sealed event {s}: not in its frame"))
            })?;
            out.push(e.leaf());
        }
        seq = end + 1;
    }
    if seq <= hi {
        let mut q = conn
            .prepare_cached("SELECT leaf FROM events WHERE rid BETWEEN ?1 AND ?2 ORDER BY rid")
            .op("prepare leaf read")?;
        let rows = q
            .query_map([rid(org_num, seq), rid(org_num, hi)], |r| {
                r.get::<_, Vec<u8>>(0)
            })
            .op("read leaves")?;
        for row in rows {
            out.push(row.op("read leaf")?.try_into().map_err(|_| {
                StoreError::Corrupt(format!("a leaf of org {org_num} is not 32 bytes"))
            })?);
        }
    }
    Ok(out)
}

/// The first seq of `org_num` not yet sealed.
pub(crate) fn sealed_upto(t: &Connection, org_num: i64) -> Result<u64> {
    let v: Option<i64> = t
        .prepare_cached("SELECT next_seq FROM sealed_upto WHERE org_num = ?1")
        .op("prepare sealing progress")?
        .query_row([org_num], |r| r.get(0))
        .optional()
        .op("read sealing progress")?;
    Ok(v.map_or(1, |v| v as u64))
}

/// The org's newest seq (0 for an empty log). Sealing always leaves the newest event in
/// a row.
fn head(t: &Connection, org_num: i64) -> Result<u64> {
    let r: Option<i64> = t
        .query_row(
            "SELECT max(rid) FROM events WHERE rid BETWEEN ?1 AND ?2",
            params![rid(org_num, 1), rid(org_num, MAX_SEQ)],
            |r| r.get(0),
        )
        .op("read log head")?;
    Ok(r.map_or(0, seq_of))
}

pub(crate) fn counts(t: &Connection, org_num: i64, keep_open: u64) -> Result<SealCounts> {
    let next = sealed_upto(t, org_num)?;
    let limit = sealable_end(head(t, org_num)?, keep_open);
    Ok(SealCounts {
        sealed: next - 1,
        backlog: limit.saturating_sub(next - 1),
    })
}

/// An event's row as sealing reads it: rid, occurred_us, received_ms, leaf, body.
type TileRow = (i64, i64, i64, Vec<u8>, Option<String>);

/// Seals up to `max_frames` tiles of `org_num`; returns the events sealed.
pub(crate) fn seal(
    t: &Transaction<'_>,
    org_num: i64,
    keep_open: u64,
    max_frames: usize,
) -> Result<u64> {
    let mut next = sealed_upto(t, org_num)?;
    let end = sealable_end(head(t, org_num)?, keep_open);
    let mut sealed = 0u64;
    let mut read = t
        .prepare_cached(
            "SELECT rid, occurred_us, received_ms, leaf, body FROM events \
             WHERE rid BETWEEN ?1 AND ?2 ORDER BY rid",
        )
        .op("prepare tile read")?;
    for _ in 0..max_frames {
        if next + FRAME_EVENTS - 1 > end {
            break;
        }
        let (a, b) = (rid(org_num, next), rid(org_num, next + FRAME_EVENTS - 1));
        let rows: Vec<TileRow> = read
            .query_map(params![a, b], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .op("read tile")?
            .collect::<std::result::Result<_, _>>()
            .op("read tile")?;
        if rows.len() as u64 != FRAME_EVENTS
            || rows
                .iter()
                .enumerate()
                .any(|(i, row)| row.0 != a + i as i64)
        {
            return Err(StoreError::Corrupt(format!(
                "seqs {next}..{} are not all present",
                next + FRAME_EVENTS - 1
            )));
        }
        let mut entries = Vec::with_capacity(rows.len());
        for (r, occurred_us, received_ms, leaf, body) in rows {
            let leaf: Hash = leaf.try_into().map_err(|_| {
                StoreError::Corrupt(format!("the leaf of seq {} is not 32 bytes", seq_of(r)))
            })?;
            let body = match body {
                // The leaf is given up only while the body still hashes to it.
                Some(b) if auditrail_core::merkle::leaf_hash(b.as_bytes()) == leaf => Body::Text(b),
                Some(_) => {
                    return Err(StoreError::Corrupt(format!(
                        "seq {}: its body does not hash to its leaf",
                        seq_of(r)
                    )));
                }
                None => Body::Purged(leaf),
            };
            entries.push(Entry {
                occurred_us,
                received_ms,
                body,
            });
        }
        let (live, live_from) = live_of(&entries);
        let data = sealed::encode(&entries)?;
        let head = store_parts(t, a, &data)?;
        t.prepare_cached(
            "INSERT INTO sealed (first_rid, version, live, live_from_ms, data) \
             VALUES (?1, 1, ?2, ?3, ?4)",
        )
        .op("prepare frame insert")?
        .execute(params![a, live, live_from, head])
        .op("insert frame")?;
        t.prepare_cached("DELETE FROM events WHERE rid BETWEEN ?1 AND ?2")
            .op("prepare row delete")?
            .execute(params![a, b])
            .op("delete rows")?;
        // The tile's nodes below its root: hashed from the frame's leaves from now on.
        let mut drop_nodes = t
            .prepare_cached(
                "DELETE FROM nodes WHERE org_num = ?1 AND level = ?2 AND idx BETWEEN ?3 AND ?4",
            )
            .op("prepare node delete")?;
        for level in super::STORED_LEVEL..super::SEALED_LEVEL {
            let lo = (next - 1) >> level;
            let hi = lo + (FRAME_EVENTS >> level) - 1;
            drop_nodes
                .execute(params![org_num, level, lo as i64, hi as i64])
                .op("delete nodes")?;
        }
        next += FRAME_EVENTS;
        sealed += FRAME_EVENTS;
    }
    if sealed > 0 {
        t.execute(
            "INSERT INTO sealed_upto (org_num, next_seq) VALUES (?1, ?2) \
             ON CONFLICT (org_num) DO UPDATE SET next_seq = excluded.next_seq",
            params![org_num, next as i64],
        )
        .op("save sealing progress")?;
    }
    Ok(sealed)
}

/// Retention in the sealed part: purges the bodies of up to `limit` sealed events of
/// `org_num` received before `before_ms`, oldest first, rewriting each frame it changes.
/// Returns how many were purged.
pub(crate) fn purge(t: &Transaction<'_>, org_num: i64, before_ms: i64, limit: i64) -> Result<i64> {
    let firsts: Vec<i64> = t
        .prepare_cached(
            "SELECT first_rid FROM sealed WHERE first_rid BETWEEN ?1 AND ?2 AND live > 0 \
             AND live_from_ms < ?3 ORDER BY first_rid",
        )
        .op("prepare frame list")?
        .query_map(
            params![rid(org_num, 1), rid(org_num, MAX_SEQ), before_ms],
            |r| r.get(0),
        )
        .op("list frames")?
        .collect::<std::result::Result<_, _>>()
        .op("list frames")?;
    let mut purged = 0i64;
    for first in firsts {
        if purged >= limit {
            break;
        }
        let data: Vec<u8> = t
            .prepare_cached("SELECT data FROM sealed WHERE first_rid = ?1")
            .op("prepare frame read")?
            .query_row([first], |r| r.get(0))
            .op("read frame")?;
        let mut entries = sealed::decode(&frame_bytes(t, first, data)?)?;
        let mut changed = false;
        for e in &mut entries {
            if purged >= limit {
                break;
            }
            if e.text().is_some() && e.received_ms < before_ms {
                e.purge();
                purged += 1;
                changed = true;
            }
        }
        if changed {
            let (live, live_from) = live_of(&entries);
            let data = sealed::encode(&entries)?;
            let head = store_parts(t, first, &data)?;
            t.prepare_cached(
                "UPDATE sealed SET data = ?2, live = ?3, live_from_ms = ?4, version = version + 1 \
                 WHERE first_rid = ?1",
            )
            .op("prepare frame rewrite")?
            .execute(params![first, head, live, live_from])
            .op("rewrite frame")?;
        }
    }
    Ok(purged)
}

/// How many of a frame's events still have their body, and the earliest time one of
/// them was received (none when all are purged).
fn live_of(entries: &[Entry]) -> (i64, Option<i64>) {
    let live: Vec<&Entry> = entries.iter().filter(|e| e.text().is_some()).collect();
    (live.len() as i64, live.iter().map(|e| e.received_ms).min())
}
