//! Sealed segments on SQLite (see `crate::sealed` for a frame's layout).
//!
//! A complete tile of an org's log (256 seqs) at least `keep_open` events behind its
//! head is sealed in one transaction: its bodies become one zstd frame in `sealed`
//! (keyed by the tile's first rid) and its `events` rows keep their times and leaf with
//! an empty body, which reads resolve from the frame. `sealed_upto` holds, per org, the
//! first seq not yet sealed. A purge that reaches a sealed tile rewrites its frame in the
//! same transaction (or drops it when nothing is left), and bumps the frame's version so
//! no decoded copy of the old one is served again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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

/// The body of sealed event `r`, from its frame.
pub(crate) fn resolve(conn: &Connection, cache: &FrameCache, r: i64) -> Result<String> {
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
    let bodies = match cache.get((first, version)) {
        Some(b) => b,
        None => {
            let data: Vec<u8> = conn
                .prepare_cached("SELECT data FROM sealed WHERE first_rid = ?1")
                .op("prepare frame read")?
                .query_row([first], |x| x.get(0))
                .op("read frame")?;
            let b = Arc::new(sealed::decode(&data)?);
            cache.put((first, version), b.clone());
            b
        }
    };
    bodies
        .get((seq - frame_start(seq)) as usize)
        .cloned()
        .flatten()
        .ok_or_else(|| StoreError::Corrupt(format!("sealed event {seq}: not in its frame")))
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
        .prepare_cached("SELECT rid, body FROM events WHERE rid BETWEEN ?1 AND ?2 ORDER BY rid")
        .op("prepare tile read")?;
    for _ in 0..max_frames {
        if next + FRAME_EVENTS - 1 > end {
            break;
        }
        let (a, b) = (rid(org_num, next), rid(org_num, next + FRAME_EVENTS - 1));
        let rows: Vec<(i64, Option<String>)> = read
            .query_map(params![a, b], |r| Ok((r.get(0)?, r.get(1)?)))
            .op("read tile")?
            .collect::<std::result::Result<_, _>>()
            .op("read tile")?;
        if rows.len() as u64 != FRAME_EVENTS
            || rows
                .iter()
                .enumerate()
                .any(|(i, (r, _))| *r != a + i as i64)
        {
            return Err(StoreError::Corrupt(format!(
                "seqs {next}..{} are not all present",
                next + FRAME_EVENTS - 1
            )));
        }
        if rows.iter().any(|(_, b)| b.as_deref() == Some(SEALED)) {
            return Err(StoreError::Corrupt(format!(
                "seq {next}: sealed past the progress mark"
            )));
        }
        let bodies: Vec<Option<&str>> = rows.iter().map(|(_, b)| b.as_deref()).collect();
        if bodies.iter().any(Option::is_some) {
            let frame = sealed::encode(&bodies)?;
            t.prepare_cached(
                "INSERT INTO sealed (first_rid, last_rid, version, data) VALUES (?1, ?2, 1, ?3)",
            )
            .op("prepare frame insert")?
            .execute(params![a, b, frame])
            .op("insert frame")?;
            t.prepare_cached(
                "UPDATE events SET body = '' WHERE rid BETWEEN ?1 AND ?2 AND body IS NOT NULL",
            )
            .op("prepare seal rows")?
            .execute(params![a, b])
            .op("seal rows")?;
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

/// After the sealed events `rids` (ascending) lost their bodies to a purge: their frames
/// are rewritten without them, or dropped when nothing is left.
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
            if let Some(b) = bodies.get_mut((seq_of(rids[i]) - start) as usize) {
                *b = None;
            }
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
