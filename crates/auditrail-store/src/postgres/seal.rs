//! Sealed segments on PostgreSQL (see `crate::sealed` for a frame's layout).
//!
//! A complete tile of an org's log (256 seqs) at least `keep_open` events behind its
//! head is sealed in one transaction: its `events` rows become one zstd frame in
//! `sealed`, keyed by (org, first seq), and the rows are deleted. Each body is checked
//! against its stored leaf first; afterwards a sealed event's leaf is its body's hash.
//! `sealed_upto` holds, per org, the first seq not yet sealed: every seq below it is in
//! a frame (or, once retention reclaimed it, only its leaf in `purged_leaves`), every
//! seq from it on in a row. The row of `sealed_upto` is locked for the length of a
//! step, so two sealers never seal the same tile, and appends never wait on it.
//!
//! A frame row also carries what search needs to skip it without decoding: the
//! smallest and largest `occurred_us` of its events, and `terms`, the distinct index
//! terms of its events as 32-bit keys (the top half of `crate::terms::term_key`) under a
//! GIN index. A positive condition reads only frames whose `terms` hold its key; every
//! event of those frames is re-checked exactly, so a colliding key only costs a decode.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use auditrail_core::Hash;
use auditrail_core::query::Field;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::to_hash;
use crate::error::Pg;
use crate::frame_cache::{Frame, FrameCache, Held, RawFrame};
use crate::sealed::{self, Body, Entry, FRAME_EVENTS, Opened, sealable_end};
use crate::terms::{FieldTest, term_key};
use crate::{Result, SealCounts, StoreError};

/// The 32-bit key a frame's `terms` holds for `field = value` in org `num`.
pub(super) fn frame_term(num: i64, field: Field, value: &str) -> i32 {
    (term_key(num, field, value) >> 32) as i32
}

/// The key of a frame in the shared cache: org and first seq as one number, and the
/// frame's version.
fn cache_key(num: i64, first: i64, version: i32) -> (i64, i64) {
    ((num << 40) | first, i64::from(version))
}

/// The first seq of org `num` not yet sealed (1 when nothing is).
pub(super) async fn sealed_upto(c: &impl GenericClient, num: i64) -> Result<i64> {
    let st = c
        .prepare_cached("SELECT next_seq FROM sealed_upto WHERE org_num = $1")
        .await
        .pg("prepare sealing progress")?;
    Ok(c.query_opt(&st, &[&num])
        .await
        .pg("read sealing progress")?
        .map_or(1, |r| r.get(0)))
}

async fn head(c: &impl GenericClient, num: i64) -> Result<u64> {
    let r = c
        .query_one("SELECT tree_size FROM orgs WHERE num = $1", &[&num])
        .await
        .pg("read log head")?;
    Ok(r.get::<_, i64>(0).max(0) as u64)
}

pub(super) async fn counts(c: &impl GenericClient, num: i64, keep_open: u64) -> Result<SealCounts> {
    let next = sealed_upto(c, num).await?.max(1) as u64;
    let limit = sealable_end(head(c, num).await?, keep_open);
    Ok(SealCounts {
        sealed: next - 1,
        backlog: limit.saturating_sub(next - 1),
    })
}

/// Decodes a frame row's (first_seq, version, data), through the cache.
pub(super) fn decoded(cache: &FrameCache, num: i64, row: &Row) -> Result<(i64, Frame)> {
    let first: i64 = row.get(0);
    if let Some(f) = cached(cache, num, row) {
        return Ok((first, f));
    }
    let f = Arc::new(sealed::decode(row.get::<_, &[u8]>(2))?);
    whole(num, first, f.len())?;
    let version: i32 = row.get(1);
    cache.put(cache_key(num, first, version), f.clone());
    Ok((first, f))
}

/// The frame of a `(first_seq, version, data)` row if the cache holds it decoded.
pub(super) fn cached(cache: &FrameCache, num: i64, row: &Row) -> Option<Frame> {
    cached_frame(cache, num, row.get(0), row.get(1))
}

/// Org `num`'s frame at `first` in `version`, if the cache holds it decoded.
pub(super) fn cached_frame(
    cache: &FrameCache,
    num: i64,
    first: i64,
    version: i32,
) -> Option<Frame> {
    cache.get(cache_key(num, first, version))
}

/// Org `num`'s frame at `first` in `version`, if the cache holds its bytes.
pub(super) fn cached_bytes(cache: &FrameCache, num: i64, first: i64, version: i32) -> Option<Held> {
    cache.get_held(cache_key(num, first, version))
}

/// Org `num`'s frame at `first` in `version`, decompressed from what the cache held.
pub(super) fn raw_of(
    cache: &FrameCache,
    num: i64,
    (first, version): (i64, i32),
    held: Held,
) -> Result<RawFrame> {
    cache.raw_of(cache_key(num, first, version), held)
}

/// Keeps a frame row's (first_seq, version, data) as stored, for a later search.
pub(super) fn keep_stored(cache: &FrameCache, num: i64, row: &Row) {
    let (first, version): (i64, i32) = (row.get(0), row.get(1));
    if let Some(data) = row.get::<_, Option<&[u8]>>(2) {
        cache.put_stored(cache_key(num, first, version), data);
    }
}

/// A frame row's (first_seq, version, data) decompressed, and kept so in the cache.
pub(super) fn decompressed(cache: &FrameCache, num: i64, row: &Row) -> Result<RawFrame> {
    let (first, version): (i64, i32) = (row.get(0), row.get(1));
    let raw: RawFrame = Arc::new(Opened::open(sealed::decompress(row.get::<_, &[u8]>(2))?)?);
    cache.put_raw(cache_key(num, first, version), raw.clone());
    Ok(raw)
}

/// The events of org `num`'s frame at `first` (decompressed) that `test` lets through
/// (the others `None`, in their places), without joining the bodies of the rest.
pub(super) fn decoded_some(
    num: i64,
    first: i64,
    raw: &Opened,
    test: &FieldTest,
) -> Result<Vec<Option<Entry>>> {
    let f = raw.decode_some(&test.paths, &mut |v| test.may_hold(v))?;
    whole(num, first, f.len())?;
    Ok(f)
}

/// A frame must hold a whole tile.
fn whole(num: i64, first: i64, len: usize) -> Result<()> {
    if len as u64 != FRAME_EVENTS {
        return Err(StoreError::Corrupt(format!(
            "the sealed frame at seq {first} of org {num} holds {len} events"
        )));
    }
    Ok(())
}

/// The leaves of org `num`'s seqs in `first..=last` that lie in frames, by seq.
pub(super) async fn frame_leaves(
    c: &impl GenericClient,
    cache: &FrameCache,
    num: i64,
    first: i64,
    last: i64,
    found: &mut BTreeMap<i64, Hash>,
) -> Result<()> {
    let st = c
        .prepare_cached(
            "SELECT first_seq, version, data FROM sealed WHERE org_num = $1 \
             AND first_seq BETWEEN $2::bigint - 255 AND $3 ORDER BY first_seq",
        )
        .await
        .pg("prepare frame read")?;
    for row in c
        .query(&st, &[&num, &first, &last])
        .await
        .pg("read frames")?
    {
        let (start, frame) = decoded(cache, num, &row)?;
        for (i, e) in frame.iter().enumerate() {
            let seq = start + i as i64;
            if (first..=last).contains(&seq) {
                found.entry(seq).or_insert_with(|| e.leaf());
            }
        }
    }
    Ok(())
}

/// The time an event of org `num` below the sealed mark was received, from its frame.
pub(super) async fn received_at(
    c: &impl GenericClient,
    cache: &FrameCache,
    num: i64,
    seq: i64,
) -> Result<Option<i64>> {
    let st = c
        .prepare_cached(
            "SELECT first_seq, version, data FROM sealed WHERE org_num = $1 AND first_seq = $2",
        )
        .await
        .pg("prepare frame read")?;
    let start = sealed::frame_start(seq.max(1) as u64) as i64;
    let Some(row) = c.query_opt(&st, &[&num, &start]).await.pg("read frame")? else {
        return Ok(None);
    };
    let (_, frame) = decoded(cache, num, &row)?;
    Ok(frame.get((seq - start) as usize).map(|e| e.received_ms))
}

/// An event's row as sealing reads it.
struct TileRow {
    seq: i64,
    occurred_us: i64,
    received_ms: i64,
    leaf: Hash,
    body: Option<String>,
    terms: [Option<String>; 5],
}

const TERM_FIELDS: [Field; 5] = [
    Field::Action,
    Field::ActorId,
    Field::ResourceType,
    Field::ResourceId,
    Field::ScopeId,
];

/// Seals up to `max_frames` tiles of org `num`, one transaction each; returns the
/// events sealed.
pub(super) async fn seal(
    c: &mut deadpool_postgres::Object,
    num: i64,
    keep_open: u64,
    max_frames: usize,
) -> Result<u64> {
    let end = sealable_end(head(&*c, num).await?, keep_open) as i64;
    let mut sealed = 0u64;
    for _ in 0..max_frames {
        let tx = c.transaction().await.pg("begin sealing")?;
        tx.execute(
            "INSERT INTO sealed_upto (org_num, next_seq) VALUES ($1, 1) ON CONFLICT DO NOTHING",
            &[&num],
        )
        .await
        .pg("start sealing progress")?;
        let next: i64 = tx
            .query_one(
                "SELECT next_seq FROM sealed_upto WHERE org_num = $1 FOR UPDATE",
                &[&num],
            )
            .await
            .pg("lock sealing progress")?
            .get(0);
        let last = next + FRAME_EVENTS as i64 - 1;
        if last > end {
            break;
        }
        let rows = tx
            .query(
                "SELECT seq, occurred_us, received_ms, leaf, body, action, actor_id, \
                 resource_type, resource_id, scope_id FROM events \
                 WHERE org_num = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq",
                &[&num, &next, &last],
            )
            .await
            .pg("read tile")?;
        let mut by_seq = BTreeMap::new();
        for r in &rows {
            let seq: i64 = r.get(0);
            by_seq.insert(
                seq,
                TileRow {
                    seq,
                    occurred_us: r.get(1),
                    received_ms: r.get(2),
                    leaf: to_hash(r.get(3), &format_args!("seq {seq}"))?,
                    body: r.get(4),
                    terms: [r.get(5), r.get(6), r.get(7), r.get(8), r.get(9)],
                },
            );
        }
        if by_seq.len() as u64 != FRAME_EVENTS {
            // Retention reclaimed part of the tile: its rows are gone, their leaves
            // archived in `purged_leaves`.
            let purged: i64 = tx
                .query_one("SELECT purged_seq FROM orgs WHERE num = $1", &[&num])
                .await
                .pg("read purge watermark")?
                .get(0);
            if last <= purged {
                // Wholly purged: the rest stays in rows until reclaimed in turn, and
                // reads find the leaves there.
                finish_step(tx, num, last + 1).await?;
                continue;
            }
            fill_reclaimed(&tx, num, next, last, purged, &mut by_seq).await?;
        }
        let mut entries = Vec::with_capacity(FRAME_EVENTS as usize);
        let mut terms = BTreeSet::new();
        let (mut min_us, mut max_us, mut live) = (i64::MAX, i64::MIN, 0i32);
        let (mut min_ms, mut max_ms) = (i64::MAX, i64::MIN);
        for row in by_seq.into_values() {
            let body = match row.body {
                // The leaf is given up only while the body still hashes to it.
                Some(b) if auditrail_core::merkle::leaf_hash(b.as_bytes()) == row.leaf => {
                    live += 1;
                    for (f, v) in TERM_FIELDS.iter().zip(&row.terms) {
                        if let Some(v) = v {
                            terms.insert(frame_term(num, *f, v));
                        }
                    }
                    Body::Text(b)
                }
                Some(_) => {
                    return Err(StoreError::Corrupt(format!(
                        "seq {} of org {num}: its body does not hash to its leaf",
                        row.seq
                    )));
                }
                None => Body::Purged(row.leaf),
            };
            min_us = min_us.min(row.occurred_us);
            max_us = max_us.max(row.occurred_us);
            min_ms = min_ms.min(row.received_ms);
            max_ms = max_ms.max(row.received_ms);
            entries.push(Entry {
                occurred_us: row.occurred_us,
                received_ms: row.received_ms,
                body,
            });
        }
        let terms: Vec<i32> = terms.into_iter().collect();
        tx.execute(
            "INSERT INTO sealed (org_num, first_seq, version, min_us, max_us, live, terms, data) \
             VALUES ($1, $2, 1, $3, $4, $5, $6, $7)",
            &[
                &num,
                &next,
                &min_us,
                &max_us,
                &live,
                &terms,
                &sealed::encode(&entries)?,
            ],
        )
        .await
        .pg("insert frame")?;
        // The received_ms bounds let the planner touch only the partitions involved.
        tx.execute(
            "DELETE FROM events WHERE org_num = $1 AND seq BETWEEN $2 AND $3 \
             AND received_ms BETWEEN $4 AND $5",
            &[&num, &next, &last, &min_ms, &max_ms],
        )
        .await
        .pg("delete rows")?;
        finish_step(tx, num, last + 1).await?;
        sealed += FRAME_EVENTS;
    }
    Ok(sealed)
}

/// Completes a tile of which retention reclaimed rows at or below the watermark
/// `purged` (the rest is kept, so the tile is sealed now): each missing seq becomes a
/// purged entry holding its archived leaf, timed as the next row present (so the
/// frame's time bounds and `received_ms` order are those of the rows).
async fn fill_reclaimed(
    tx: &deadpool_postgres::Transaction<'_>,
    num: i64,
    next: i64,
    last: i64,
    purged: i64,
    by_seq: &mut BTreeMap<i64, TileRow>,
) -> Result<()> {
    let missing: Vec<i64> = (next..=last).filter(|s| !by_seq.contains_key(s)).collect();
    let corrupt = || {
        StoreError::Corrupt(format!(
            "seqs {next}..={last} of org {num}: {} of {FRAME_EVENTS} rows present, \
             purged up to {purged}",
            FRAME_EVENTS as usize - missing.len()
        ))
    };
    if missing.iter().any(|&s| s > purged) {
        return Err(corrupt());
    }
    let client: &tokio_postgres::Transaction<'_> = tx;
    let archived = super::retention::archived_leaves_in(client, num, next, purged).await?;
    for &seq in missing.iter().rev() {
        let leaf = *archived.get(&seq).ok_or_else(corrupt)?;
        let (occurred_us, received_ms) = by_seq
            .range(seq..)
            .next()
            .map(|(_, r)| (r.occurred_us, r.received_ms))
            .ok_or_else(corrupt)?;
        by_seq.insert(
            seq,
            TileRow {
                seq,
                occurred_us,
                received_ms,
                leaf,
                body: None,
                terms: Default::default(),
            },
        );
    }
    Ok(())
}

/// Moves org `num`'s sealed mark to `next` and commits the step.
async fn finish_step(tx: deadpool_postgres::Transaction<'_>, num: i64, next: i64) -> Result<()> {
    tx.execute(
        "UPDATE sealed_upto SET next_seq = $2 WHERE org_num = $1",
        &[&num, &next],
    )
    .await
    .pg("save sealing progress")?;
    tx.commit().await.pg("commit sealing")
}

/// Retention on frames, once the purge watermark of org `num` is at `purged`: a frame
/// wholly at or below it leaves only its leaves (archived in `purged_leaves`, as a
/// reclaimed partition's are) and is deleted; the frame it cuts through is rewritten
/// with the purged bodies replaced by their leaves. Returns the frames dropped and the
/// events whose bodies left disk.
pub(super) async fn reclaim(
    c: &mut deadpool_postgres::Object,
    cache: &FrameCache,
    num: i64,
    purged: i64,
) -> Result<(u64, u64)> {
    let (mut dropped, mut events) = (0u64, 0u64);
    let rows = c
        .query(
            "SELECT first_seq, version, data FROM sealed WHERE org_num = $1 AND first_seq <= $2 \
             AND (first_seq + 255 <= $2 OR live > 0) ORDER BY first_seq",
            &[&num, &purged],
        )
        .await
        .pg("list purged frames")?;
    for row in rows {
        let (first, frame) = decoded(cache, num, &row)?;
        let version: i32 = row.get(1);
        let tx = c.transaction().await.pg("begin frame reclaim")?;
        if first + FRAME_EVENTS as i64 - 1 <= purged {
            let leaves: Vec<u8> = frame.iter().flat_map(|e| e.leaf()).collect();
            tx.execute(
                "INSERT INTO purged_leaves (org_num, first_seq, leaves) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
                &[&num, &first, &leaves],
            )
            .await
            .pg("archive frame leaves")?;
            tx.execute(
                "DELETE FROM sealed WHERE org_num = $1 AND first_seq = $2 AND version = $3",
                &[&num, &first, &version],
            )
            .await
            .pg("drop frame")?;
            dropped += 1;
            events += frame.iter().filter(|e| e.text().is_some()).count() as u64;
        } else {
            let mut entries = frame.to_vec();
            let mut n = 0u64;
            for (i, e) in entries.iter_mut().enumerate() {
                if first + (i as i64) <= purged && e.text().is_some() {
                    e.purge();
                    n += 1;
                }
            }
            if n == 0 {
                continue;
            }
            let live = entries.iter().filter(|e| e.text().is_some()).count() as i32;
            tx.execute(
                "UPDATE sealed SET data = $4, live = $5, version = version + 1 \
                 WHERE org_num = $1 AND first_seq = $2 AND version = $3",
                &[&num, &first, &version, &sealed::encode(&entries)?, &live],
            )
            .await
            .pg("rewrite frame")?;
            events += n;
        }
        tx.commit().await.pg("commit frame reclaim")?;
    }
    Ok((dropped, events))
}

/// The events of a decoded frame starting at `first`, as (seq, entry), within `lo..=hi`.
pub(super) fn within(
    first: i64,
    frame: &[Entry],
    lo: i64,
    hi: i64,
) -> impl DoubleEndedIterator<Item = (i64, &Entry)> {
    frame
        .iter()
        .enumerate()
        .map(move |(i, e)| (first + i as i64, e))
        .filter(move |(s, _)| (lo..=hi).contains(s))
}

/// [`within`] for a frame decoded in part ([`decoded_some`]): the events it holds.
pub(super) fn within_some(
    first: i64,
    frame: &[Option<Entry>],
    lo: i64,
    hi: i64,
) -> impl DoubleEndedIterator<Item = (i64, &Entry)> {
    frame
        .iter()
        .enumerate()
        .filter_map(move |(i, e)| e.as_ref().map(|e| (first + i as i64, e)))
        .filter(move |(s, _)| (lo..=hi).contains(s))
}
