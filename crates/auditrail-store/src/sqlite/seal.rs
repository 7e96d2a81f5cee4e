//! Sealed segments on SQLite (see `crate::sealed` for a frame's layout).
//!
//! A complete tile of an org's log (256 seqs) at least `keep_open` events behind its
//! head is sealed in one transaction: its bodies become one zstd frame in `sealed`
//! (keyed by the tile's first rid), and its `events` rows are written again holding only
//! their seq and times, with an empty body and an empty leaf: reads take the body from
//! the frame and the leaf is the hash of the body, checked before the row gives it up.
//! (Rewriting the rows, rather than updating them in place, is what lets SQLite pack
//! them into fewer pages and free the rest.) `sealed_upto` holds, per org, the first
//! seq not yet sealed. A purge that reaches a sealed tile writes each purged event's leaf
//! back to its row, rewrites the frame without the body in the same transaction (or
//! drops it when nothing is left), and bumps the frame's version so no decoded copy of
//! the old one is served again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use auditrail_core::Hash;
use auditrail_core::merkle::leaf_hash;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::rid::{MAX_SEQ, rid, seq_of};
use crate::error::Context;
use crate::sealed::{self, Bodies, FRAME_EVENTS, frame_start};
use crate::{Result, StoreError};

/// What a sealed event's row holds as its body.
pub(crate) const SEALED: &str = "";

/// Decoded frames kept for reads, by (first rid, version).
const CACHE_FRAMES: usize = 64;

/// A frame by (first rid, version), and when it was last used.
type Frames = HashMap<(i64, i64), (u64, Arc<Bodies>)>;

#[derive(Default)]
pub(crate) struct FrameCache {
    /// A use counter, and the frames.
    inner: Mutex<(u64, Frames)>,
}

impl FrameCache {
    fn get(&self, key: (i64, i64)) -> Option<Arc<Bodies>> {
        let mut g = self.inner.lock().ok()?;
        let (tick, map) = &mut *g;
        *tick += 1;
        let now = *tick;
        map.get_mut(&key).map(|(t, b)| {
            *t = now;
            b.clone()
        })
    }

    fn put(&self, key: (i64, i64), bodies: Arc<Bodies>) {
        let Ok(mut g) = self.inner.lock() else { return };
        let (tick, map) = &mut *g;
        *tick += 1;
        if map.len() >= CACHE_FRAMES
            && let Some(old) = map.iter().min_by_key(|(_, (t, _))| *t).map(|(k, _)| *k)
        {
            map.remove(&old);
        }
        map.insert(key, (*tick, bodies));
    }
}

/// Reads sealed bodies within one read (one snapshot): the last frame used is kept at
/// hand, so a scan looks each frame up once.
pub(crate) struct Unsealer<'a> {
    conn: &'a Connection,
    cache: &'a FrameCache,
    last: Option<(i64, Arc<Bodies>)>,
}

impl<'a> Unsealer<'a> {
    pub(crate) fn new(conn: &'a Connection, cache: &'a FrameCache) -> Self {
        Self {
            conn,
            cache,
            last: None,
        }
    }

    /// The body of sealed event `r`, from its frame.
    pub(crate) fn body(&mut self, r: i64) -> Result<String> {
        let seq = seq_of(r);
        let first = r - (seq - frame_start(seq)) as i64;
        let frame = match &self.last {
            Some((f, b)) if *f == first => b.clone(),
            _ => {
                let b = frame_of(self.conn, self.cache, r)?;
                self.last = Some((first, b.clone()));
                b
            }
        };
        frame
            .get((seq - frame_start(seq)) as usize)
            .cloned()
            .flatten()
            .ok_or_else(|| StoreError::Corrupt(format!("sealed event {seq}: not in its frame")))
    }
}

/// The decoded frame holding sealed event `r`.
fn frame_of(conn: &Connection, cache: &FrameCache, r: i64) -> Result<Arc<Bodies>> {
    let org_num = r >> super::rid::SEQ_BITS;
    let seq = seq_of(r);
    let first = rid(org_num, frame_start(seq));
    let version: Option<i64> = conn
        .prepare_cached("SELECT version FROM sealed WHERE first_rid = ?1")
        .op("prepare frame version")?
        .query_row([first], |x| x.get(0))
        .optional()
        .op("read frame version")?;
    let missing = || StoreError::Corrupt(format!("sealed event {seq}: its frame is missing"));
    let version = version.ok_or_else(missing)?;
    if let Some(b) = cache.get((first, version)) {
        return Ok(b);
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
    let b = Arc::new(sealed::decode(&data)?);
    cache.put((first, version), b.clone());
    Ok(b)
}

/// The leaves of `org_num`'s seqs `lo..=hi`, in order: as stored, or for a sealed event
/// the hash of its body.
pub(crate) fn leaves(
    conn: &Connection,
    cache: &FrameCache,
    org_num: i64,
    lo: u64,
    hi: u64,
) -> Result<Vec<Hash>> {
    let mut q = conn
        .prepare_cached("SELECT rid, leaf FROM events WHERE rid BETWEEN ?1 AND ?2 ORDER BY rid")
        .op("prepare leaf read")?;
    let rows = q
        .query_map([rid(org_num, lo), rid(org_num, hi)], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
        })
        .op("read leaves")?;
    let mut out = Vec::with_capacity(hi.saturating_sub(lo) as usize + 1);
    let mut unseal = Unsealer::new(conn, cache);
    for row in rows {
        let (r, leaf) = row.op("read leaf")?;
        let h = if leaf.is_empty() {
            leaf_hash(unseal.body(r)?.as_bytes())
        } else {
            leaf.try_into().map_err(|_| {
                StoreError::Corrupt(format!("leaf of seq {} of org {org_num}", seq_of(r)))
            })?
        };
        out.push(h);
    }
    Ok(out)
}

/// The first seq of `org_num` not yet sealed.
fn sealed_upto(t: &Connection, org_num: i64) -> Result<u64> {
    let v: Option<i64> = t
        .query_row(
            "SELECT next_seq FROM sealed_upto WHERE org_num = ?1",
            [org_num],
            |r| r.get(0),
        )
        .optional()
        .op("read sealing progress")?;
    Ok(v.map_or(1, |v| v as u64))
}

/// The org's newest seq (0 for an empty log).
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

/// Counts of one org's sealing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SealCounts {
    /// Events in sealed tiles.
    pub sealed: u64,
    /// Events in complete tiles old enough to seal that are not sealed yet.
    pub backlog: u64,
}

pub(crate) fn counts(t: &Connection, org_num: i64, keep_open: u64) -> Result<SealCounts> {
    let next = sealed_upto(t, org_num)?;
    let limit = sealable_end(head(t, org_num)?, keep_open);
    Ok(SealCounts {
        sealed: next - 1,
        backlog: limit.saturating_sub(next - 1),
    })
}

/// The last seq that may be sealed: the end of the last complete tile at least
/// `keep_open` events behind the head.
fn sealable_end(head: u64, keep_open: u64) -> u64 {
    head.saturating_sub(keep_open) / FRAME_EVENTS * FRAME_EVENTS
}

/// An event's row as `seal` reads it.
struct Row {
    rid: i64,
    occurred_us: i64,
    received_ms: i64,
    leaf: Vec<u8>,
    body: Option<String>,
}

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
        let rows: Vec<Row> = read
            .query_map(params![a, b], |r| {
                Ok(Row {
                    rid: r.get(0)?,
                    occurred_us: r.get(1)?,
                    received_ms: r.get(2)?,
                    leaf: r.get(3)?,
                    body: r.get(4)?,
                })
            })
            .op("read tile")?
            .collect::<std::result::Result<_, _>>()
            .op("read tile")?;
        if rows.len() as u64 != FRAME_EVENTS
            || rows
                .iter()
                .enumerate()
                .any(|(i, row)| row.rid != a + i as i64)
        {
            return Err(StoreError::Corrupt(format!(
                "seqs {next}..{} are not all present",
                next + FRAME_EVENTS - 1
            )));
        }
        for row in &rows {
            match &row.body {
                Some(b) if b == SEALED => {
                    return Err(StoreError::Corrupt(format!(
                        "seq {}: sealed past the progress mark",
                        seq_of(row.rid)
                    )));
                }
                // The leaf is given up only while the body still hashes to it.
                Some(b) if leaf_hash(b.as_bytes())[..] != row.leaf[..] => {
                    return Err(StoreError::Corrupt(format!(
                        "seq {}: its body does not hash to its leaf",
                        seq_of(row.rid)
                    )));
                }
                _ => {}
            }
        }
        let bodies: Vec<Option<&str>> = rows.iter().map(|r| r.body.as_deref()).collect();
        if bodies.iter().any(Option::is_some) {
            let frame = sealed::encode(&bodies)?;
            t.prepare_cached(
                "INSERT INTO sealed (first_rid, last_rid, version, data) VALUES (?1, ?2, 1, ?3)",
            )
            .op("prepare frame insert")?
            .execute(params![a, b, frame])
            .op("insert frame")?;
            t.prepare_cached("DELETE FROM events WHERE rid BETWEEN ?1 AND ?2")
                .op("prepare row delete")?
                .execute(params![a, b])
                .op("delete rows")?;
            let mut insert = t
                .prepare_cached(
                    "INSERT INTO events (rid, occurred_us, received_ms, leaf, body) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .op("prepare row insert")?;
            for row in &rows {
                // A purged event keeps its leaf: nothing else can give it back.
                let (leaf, body): (&[u8], Option<&str>) = match row.body {
                    Some(_) => (&[], Some(SEALED)),
                    None => (&row.leaf, None),
                };
                insert
                    .execute(params![
                        row.rid,
                        row.occurred_us,
                        row.received_ms,
                        leaf,
                        body
                    ])
                    .op("write sealed row")?;
            }
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

/// Before the sealed events `rids` (ascending) lose their bodies to a purge: each one's
/// leaf goes back to its row, and their frames are rewritten without them, or dropped
/// when nothing is left.
pub(crate) fn purge_from_frames(t: &Transaction<'_>, rids: &[i64]) -> Result<()> {
    let mut i = 0;
    while i < rids.len() {
        let org_num = rids[i] >> super::rid::SEQ_BITS;
        let start = frame_start(seq_of(rids[i]));
        let first = rid(org_num, start);
        let data: Vec<u8> = t
            .query_row(
                "SELECT data FROM sealed WHERE first_rid = ?1",
                [first],
                |r| r.get(0),
            )
            .op("read frame")?;
        let mut bodies = sealed::decode(&data)?;
        while i < rids.len()
            && rids[i] >> super::rid::SEQ_BITS == org_num
            && frame_start(seq_of(rids[i])) == start
        {
            let seq = seq_of(rids[i]);
            let body = bodies
                .get_mut((seq - start) as usize)
                .and_then(Option::take)
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("sealed event {seq}: not in its frame"))
                })?;
            t.prepare_cached("UPDATE events SET leaf = ?2 WHERE rid = ?1")
                .op("prepare leaf write")?
                .execute(params![rids[i], &leaf_hash(body.as_bytes())[..]])
                .op("write the leaf back")?;
            i += 1;
        }
        if bodies.iter().all(Option::is_none) {
            t.execute("DELETE FROM sealed WHERE first_rid = ?1", [first])
                .op("drop frame")?;
        } else {
            let refs: Vec<Option<&str>> = bodies.iter().map(|b| b.as_deref()).collect();
            t.execute(
                "UPDATE sealed SET data = ?2, version = version + 1 WHERE first_rid = ?1",
                params![first, sealed::encode(&refs)?],
            )
            .op("rewrite frame")?;
        }
    }
    Ok(())
}
