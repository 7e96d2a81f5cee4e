//! Retention on PostgreSQL: purging is a watermark, reclaiming drops partitions.
//!
//! - **Purge** moves the org's `purged_seq` past its events received before the cutoff
//!   (an org's `received_ms` never decreases along its seqs, so they are a prefix). From
//!   that moment search, exports and deliveries never return them; no event row is
//!   written.
//! - **Reclaim** removes what is purged from disk. A month partition whose month ended
//!   and whose every org is purged past its last event there is dropped whole (a
//!   `DROP TABLE`, no row is deleted). Where a month also holds events still kept — an
//!   org with a longer retention, or none — the purged orgs' share of it is deleted.
//!   Either way the leaves are first copied into `purged_leaves`, 32 bytes each, packed
//!   by windows of 256 seqs, so the tree, old checkpoints and every proof still verify.

use std::collections::BTreeMap;

use auditrail_core::Hash;
use tokio_postgres::{Client, GenericClient};

use super::{schema, seal, to_hash};
use crate::error::Pg;
use crate::frame_cache::FrameCache;
use crate::{Reclaimed, Result, StoreError};

/// Leaves are archived in rows of at most this many consecutive seqs, each row within
/// one aligned window of this size (`(seq - 1) / LEAF_WINDOW`).
const LEAF_WINDOW: i64 = 256;
/// A partition is dropped only this long after its month ended: a writer whose clock
/// runs behind may still be appending to the month that just ended.
const GRACE_MS: i64 = 86_400_000;

/// Advances `num`'s purge watermark over at most `limit` more events received before
/// `before_ms`; returns how many.
pub(super) async fn purge(
    c: &deadpool_postgres::Object,
    cache: &FrameCache,
    num: i64,
    before_ms: i64,
    limit: i64,
) -> Result<u64> {
    let row = c
        .query_one(
            "SELECT purged_seq, tree_size FROM orgs WHERE num = $1",
            &[&num],
        )
        .await
        .pg("read purge watermark")?;
    let (purged, size): (i64, i64) = (row.get(0), row.get(1));
    let received = c
        .prepare_cached("SELECT received_ms FROM events WHERE org_num = $1 AND seq = $2")
        .await
        .pg("prepare purge probe")?;
    // The largest seq in (purged, purged + limit] received before the cutoff, by
    // bisection: received_ms never decreases along an org's seqs.
    let (mut lo, mut hi) = (purged, size.min(purged.saturating_add(limit)));
    while lo < hi {
        let mid = lo + (hi - lo + 1) / 2;
        // A sealed event's time is in its frame (sealing may move it there meanwhile).
        let at = match c
            .query_opt(&received, &[&num, &mid])
            .await
            .pg("probe purge")?
        {
            Some(r) => r.get(0),
            None => seal::received_at(c, cache, num, mid)
                .await?
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("event {mid} of org {num} is missing"))
                })?,
        };
        if at < before_ms {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    if lo == purged {
        return Ok(0);
    }
    // Compare-and-set: a purge that raced this one (it cannot under the lease) wins.
    let n = c
        .execute(
            "UPDATE orgs SET purged_seq = $3 WHERE num = $1 AND purged_seq = $2",
            &[&num, &purged, &lo],
        )
        .await
        .pg("advance purge watermark")?;
    Ok(if n == 1 { (lo - purged) as u64 } else { 0 })
}

/// The partitions of `events` with their `[from, to)` bounds, oldest first.
async fn partitions(c: &Client) -> Result<Vec<(String, i64, i64)>> {
    let rows = c
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'events'::regclass",
            &[],
        )
        .await
        .pg("list partitions")?;
    let mut out: Vec<_> = rows
        .iter()
        .filter_map(|r| schema::partition_named(r.get(0)))
        .collect();
    out.sort_by_key(|p| p.1);
    Ok(out)
}

/// Removes from disk what purges left there (see the module's comment); partitions whose
/// month ended before `now_ms` (less a day's grace) are dropped when nothing in them is
/// kept.
pub(super) async fn reclaim(
    c: &mut deadpool_postgres::Object,
    cache: &FrameCache,
    now_ms: i64,
) -> Result<Reclaimed> {
    let mut done = Reclaimed::default();
    // Sealed frames at or below each org's watermark.
    let orgs = c
        .query(
            "SELECT o.num, o.purged_seq FROM orgs o JOIN sealed_upto s ON s.org_num = o.num \
             WHERE o.purged_seq > 0",
            &[],
        )
        .await
        .pg("list purged orgs")?;
    for r in orgs {
        let (dropped, events) = seal::reclaim(c, cache, r.get(0), r.get(1)).await?;
        done.frames_dropped += dropped;
        done.events_deleted += events;
    }
    let c: &mut Client = c;
    for (name, _, to) in partitions(c).await? {
        // Each org's last seq in this partition (an index probe per org), beside its
        // watermark.
        let rows = c
            .query(
                &format!(
                    "SELECT o.num, o.purged_seq, (SELECT max(seq) FROM {name} e WHERE e.org_num = o.num) FROM orgs o"
                ),
                &[],
            )
            .await
            .pg("probe partition")?;
        let mut purged_orgs = Vec::new();
        let mut kept = false;
        for r in &rows {
            let (num, purged, last): (i64, i64, Option<i64>) = (r.get(0), r.get(1), r.get(2));
            match last {
                None => {}
                Some(m) if m <= purged => purged_orgs.push(num),
                Some(_) => kept = true,
            }
        }
        if purged_orgs.is_empty() {
            // Sealing emptied a month that ended: nothing to archive.
            if !kept && to <= now_ms - GRACE_MS && drop_partition(c, &name).await? {
                done.partitions_dropped += 1;
                tracing::info!(partition = name, "dropped an empty month partition");
            }
            continue;
        }
        if !kept && to <= now_ms - GRACE_MS {
            // Archive every leaf of the month, then drop it. The archive commits first so
            // that a drop which cannot get its lock leaves both copies, never neither.
            archive(c, &name, None).await?;
            if drop_partition(c, &name).await? {
                done.partitions_dropped += 1;
                tracing::info!(partition = name, "retention dropped a month partition");
            }
            continue;
        }
        for num in purged_orgs {
            let tx = c.transaction().await.pg("begin reclaim")?;
            archive(&tx, &name, Some(num)).await?;
            done.events_deleted += tx
                .execute(&format!("DELETE FROM {name} WHERE org_num = $1"), &[&num])
                .await
                .pg("delete purged events")?;
            tx.commit().await.pg("commit reclaim")?;
        }
    }
    Ok(done)
}

/// Drops partition `name`. Dropping a partition locks the whole `events` table for an
/// instant, and the lock waits for the queries that use the partition; meanwhile every
/// query of `events` queues behind it, appends included. So it waits at most `LOCK_WAIT`
/// and, if the lock was not had by then, leaves the month for the next pass (`false`).
async fn drop_partition(c: &mut Client, name: &str) -> Result<bool> {
    const LOCK_WAIT: &str = "250ms";
    let tx = c.transaction().await.pg("begin drop")?;
    tx.batch_execute(&format!("SET LOCAL lock_timeout = '{LOCK_WAIT}'"))
        .await
        .pg("set lock timeout")?;
    match tx.batch_execute(&format!("DROP TABLE {name}")).await {
        Ok(()) => {}
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) => {
            tracing::warn!(
                partition = name,
                "retention could not drop a month partition within {LOCK_WAIT} (queries were using it); the next pass tries again"
            );
            return Ok(false);
        }
        Err(e) => return Err(e).pg("drop partition"),
    }
    tx.commit().await.pg("commit drop")?;
    Ok(true)
}

/// Copies the leaves of partition `name` (of one org, or all) into `purged_leaves`.
/// Idempotent: the same rows pack into the same (org, first seq) keys.
async fn archive(c: &impl GenericClient, name: &str, org: Option<i64>) -> Result<()> {
    let sql = format!(
        "INSERT INTO purged_leaves (org_num, first_seq, leaves) \
         SELECT org_num, min(seq), string_agg(leaf, ''::bytea ORDER BY seq) FROM {name} \
         WHERE $1::bigint IS NULL OR org_num = $1 \
         GROUP BY org_num, (seq - 1) / {LEAF_WINDOW} ON CONFLICT DO NOTHING"
    );
    c.execute(&sql, &[&org]).await.pg("archive leaves")?;
    Ok(())
}

/// The archived rows that may hold leaves of seqs `$2..=$3` of org `$1` (`$4` is
/// `LEAF_WINDOW`).
const ARCHIVED_LEAVES: &str = "SELECT first_seq, leaves FROM purged_leaves WHERE org_num = $1 \
     AND first_seq <= $3 AND first_seq > $2::bigint - $4::bigint ORDER BY first_seq";

/// Adds to `found` the archived leaves of seqs `first..=last` of org `num` it does not
/// hold yet; `query` is `ARCHIVED_LEAVES`, prepared or not.
pub(super) async fn archived_leaves<Q>(
    c: &impl GenericClient,
    query: &Q,
    num: i64,
    first: i64,
    last: i64,
    found: &mut BTreeMap<i64, Hash>,
) -> Result<()>
where
    Q: ?Sized + tokio_postgres::ToStatement + Sync + Send,
{
    for r in c
        .query(query, &[&num, &first, &last, &LEAF_WINDOW])
        .await
        .pg("read archived leaves")?
    {
        let start: i64 = r.get(0);
        let packed: &[u8] = r.get(1);
        for (i, leaf) in packed.chunks(32).enumerate() {
            let seq = start + i as i64;
            if (first..=last).contains(&seq) && !found.contains_key(&seq) {
                found.insert(seq, to_hash(leaf, &format_args!("archived leaf {seq}"))?);
            }
        }
    }
    Ok(())
}

/// The archived leaves of seqs `first..=last` of org `num`, by seq, in one query (inside
/// a transaction, where a prepared statement would outlive nothing).
pub(super) async fn archived_leaves_in(
    c: &impl GenericClient,
    num: i64,
    first: i64,
    last: i64,
) -> Result<BTreeMap<i64, Hash>> {
    let mut found = BTreeMap::new();
    archived_leaves(c, ARCHIVED_LEAVES, num, first, last, &mut found).await?;
    Ok(found)
}

/// The leaves of seqs `first..=last` of org `num`, from the events where they still are,
/// the sealed frames, and the archive where retention removed them.
pub(super) async fn leaves(
    c: &deadpool_postgres::Object,
    cache: &FrameCache,
    num: i64,
    first: i64,
    last: i64,
) -> Result<Vec<Hash>> {
    let width = (last - first + 1).max(0) as usize;
    let live = c
        .prepare_cached(
            "SELECT seq, leaf FROM events WHERE org_num = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq",
        )
        .await
        .pg("prepare leaf read")?;
    let rows = c
        .query(&live, &[&num, &first, &last])
        .await
        .pg("read leaves")?;
    let mut found = BTreeMap::new();
    for r in &rows {
        found.insert(r.get::<_, i64>(0), to_hash(r.get(1), &"a leaf")?);
    }
    if found.len() < width {
        seal::frame_leaves(c, cache, num, first, last, &mut found).await?;
    }
    if found.len() < width {
        let archived = c
            .prepare_cached(ARCHIVED_LEAVES)
            .await
            .pg("prepare archived leaf read")?;
        let client: &Client = c;
        archived_leaves(client, &archived, num, first, last, &mut found).await?;
    }
    if found.len() != width {
        return Err(StoreError::Corrupt(format!(
            "leaves {first}..={last} of org {num}: {} of {width} found",
            found.len()
        )));
    }
    Ok(found.into_values().collect())
}
