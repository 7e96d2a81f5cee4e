//! The search index as the writer maintains it, kept off the random-write path.
//!
//! `postings` rows are keyed `(blk, term, first_rid)`, and terms are hashes: the rows a
//! commit adds land all over its block's key range. A commit of a few events writes a
//! handful of rows on as many pages, and every dirty page costs a WAL frame — a whole
//! page — for a few bytes of index. So a commit's postings are first written as one row
//! of `postings_pending` per org (keyed by the first rid of that org's events in the
//! commit: always the end of the org's range), holding each term with its rids packed
//! in a blob that a search looks a term up in without reading the rest (see
//! `pending_blob.rs`). The writer keeps the same postings in memory; once they cover
//! `MERGE_AT` events (or `MERGE_ROWS` rows are pending) they are written to `postings` in
//! `(blk, term)` order, one row per term and block, and `postings_pending` is emptied, in
//! the same transaction. Each page of the
//! block is then written once per merge rather than once per commit.
//!
//! A merge of a whole block's events holds tens of thousands of distinct terms (resource
//! ids, mostly with one or two events each), and a row per term made the merge the
//! writer's longest step: ~28 ms for 66,000 events, during which no commit is
//! answered. So where a merge writes at least `BUCKET_FROM` terms of a block with few
//! events each (at most `BUCKET_MAX_RIDS`), it writes those to `postings_buckets`
//! instead: one row per bucket (the term's top 8 bits, so 256 rows), its terms packed
//! densely, each named by 32 bits of its hash (`bucket_blob.rs`); terms of many events
//! keep rows of their own. A search reads the term's own rows and its bucket's rows of each block
//! (`merged_rids`). Small merges (many small commits) keep a row per term: a bucket row
//! of a few terms would make every search of the bucket read one more row per merge.
//!
//! Every pending rid of an org is newer than every merged one (rids grow with time, and a
//! merge takes everything pending), which is what lets a search read the pending rows as
//! the newest part of its term's postings (see `search.rs`).

use rusqlite::{Transaction, params};

use super::by_key::ByKey;
use super::pending_blob::{legacy_entries, pack, rids_of, unpack};
use super::rid::{MAX_SEQ, SEQ_BITS, block_of, by_block, rid};
use crate::error::Context;
use crate::terms::encode_rids;
use crate::{Result, StoreError};

/// Events whose postings are held pending before they are merged into `postings`: one
/// block's worth. A merge then writes each term's rows of a block about once, mostly at
/// the end of the table, rather than inserting among the rows of earlier merges of the
/// same block (8,192 until version 9; see BENCHMARKS.md).
const MERGE_AT: usize = 1 << super::rid::BLOCK_BITS;
/// Pending rows held at most: a search reads every pending row of its org, and many small
/// commits (single events from many clients) fill a block slowly, a row each.
const MERGE_ROWS: usize = 128;
/// Terms of one block in one merge from which the merge writes bucket rows.
const BUCKET_FROM: usize = 4096;
/// Rids a term may have in a block's merge and go to a bucket row. A lookup reads its
/// bucket row whole, so terms of many events (actions, types, busy actors) keep rows of
/// their own: a bucket row then holds only short lists, whatever term it is read for.
const BUCKET_MAX_RIDS: usize = 16;

/// Names of the postings tables in errors.
const PENDING: &str = "pending postings";
const BUCKETED: &str = "bucketed postings";

/// The bucket of a term in `postings_buckets`: its top 8 bits (terms are hashes).
pub(crate) fn bucket_of(term: i64) -> i64 {
    ((term as u64) >> 56) as i64
}

/// The writer's postings not yet merged into `postings`.
pub(crate) struct Pending {
    /// term → ascending rids of every event since the last merge.
    recent: ByKey<Vec<i64>>,
    /// Events those rids belong to; `postings_pending` holds rows exactly when this is
    /// not zero (a merge empties both).
    events: usize,
    /// Rows of `postings_pending`.
    rows: usize,
    merge_at: usize,
    /// Terms of a block in a merge from which they go to bucket rows.
    bucket_from: usize,
    /// Set when a transaction failed: memory may hold postings that were rolled back.
    stale: bool,
}

impl Pending {
    pub(crate) fn new() -> Self {
        Self::merging_at(MERGE_AT)
    }

    pub(crate) fn merging_at(merge_at: usize) -> Self {
        Self {
            recent: ByKey::default(),
            events: 0,
            rows: 0,
            merge_at,
            bucket_from: BUCKET_FROM,
            stale: true,
        }
    }

    /// Writes bucket rows from `n` terms of a block in a merge (tests).
    #[cfg(test)]
    pub(crate) fn bucketing_from(mut self, n: usize) -> Self {
        self.bucket_from = n.max(1);
        self
    }

    /// Forgets what memory holds; it is reloaded from `postings_pending` before the next
    /// group is added.
    pub(crate) fn invalidate(&mut self) {
        self.stale = true;
        self.recent.clear();
        self.events = 0;
        self.rows = 0;
    }

    fn reload(&mut self, tx: &Transaction<'_>) -> Result<()> {
        self.recent.clear();
        self.events = 0;
        self.rows = 0;
        let mut st = tx
            .prepare_cached("SELECT first_rid, terms FROM postings_pending ORDER BY first_rid")
            .op("prepare pending postings read")?;
        let mut rows = st.query([]).op("read pending postings")?;
        let mut all = Vec::new();
        while let Some(r) = rows.next().op("read pending postings")? {
            let (first, blob) = first_and_blob(r, PENDING)?;
            self.rows += 1;
            for (term, rids) in unpack(first, blob).map_err(|_| corrupt(PENDING, first))? {
                all.extend_from_slice(&rids);
                self.recent.entry(term).or_default().extend(rids);
            }
        }
        // Every event has an `action` term: the distinct rids are the events.
        all.sort_unstable();
        all.dedup();
        self.events = all.len();
        self.stale = false;
        Ok(())
    }

    /// Adds the postings of one group commit (`(term, rid)` pairs, in any order; every
    /// rid newer than any added before) covering `events` events, before its transaction
    /// commits: as pending rows, or, once enough events or rows are held, as a merge of
    /// them all into `postings`.
    pub(crate) fn add_group(
        &mut self,
        tx: &Transaction<'_>,
        pairs: Vec<(i64, i64)>,
        events: usize,
    ) -> Result<()> {
        if pairs.is_empty() {
            return Ok(());
        }
        if self.stale {
            self.reload(tx)?;
        }
        // Sorting a vector beats a map of vectors here: one allocation, no hashing.
        let pairs = sort_pairs(pairs);
        let rids: Vec<i64> = pairs.iter().map(|&(_, r)| r).collect();
        let mut terms: Vec<(i64, &[i64])> = Vec::new();
        let mut at = 0;
        for run in pairs.chunk_by(|a, b| a.0 == b.0) {
            terms.push((run[0].0, &rids[at..at + run.len()]));
            at += run.len();
        }
        let held = self.events;
        let merge = held + events >= self.merge_at || self.rows >= MERGE_ROWS;
        if !merge {
            self.rows += write_pending(tx, &mut terms)?;
        }
        for &(term, rids) in &terms {
            self.recent.entry(term).or_default().extend_from_slice(rids);
        }
        self.events += events;
        if merge {
            self.merge(tx, held > 0)?;
        }
        Ok(())
    }

    /// Writes everything held to `postings`; `pending_rows` says whether
    /// `postings_pending` has rows to empty.
    fn merge(&mut self, tx: &Transaction<'_>, pending_rows: bool) -> Result<()> {
        let started = std::time::Instant::now();
        let mut rows: Vec<(i64, i64, &[i64])> = self
            .recent
            .iter()
            .flat_map(|(&term, rids)| by_block(rids).map(move |run| (block_of(run[0]), term, run)))
            .collect();
        // In key order: each page of a block is visited once.
        rows.sort_unstable_by_key(|&(blk, term, _)| (blk, term));
        let mut written = 0usize;
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO postings (blk, term, first_rid, rids) VALUES (?1, ?2, ?3, ?4)",
                )
                .op("prepare postings merge")?;
            let mut ins_bucket = tx
                .prepare_cached(
                    "INSERT INTO postings_buckets (blk, bucket, first_rid, terms) VALUES (?1, ?2, ?3, ?4)",
                )
                .op("prepare postings merge")?;
            let mut terms: Vec<(i64, &[i64])> = Vec::new();
            let mut light: Vec<(i64, i64, &[i64])> = Vec::new();
            let is_light = |run: &[i64]| run.len() <= BUCKET_MAX_RIDS;
            for block in rows.chunk_by(|a, b| a.0 == b.0) {
                light.clear();
                light.extend(block.iter().filter(|r| is_light(r.2)));
                let bucketed = light.len() >= self.bucket_from;
                for &(blk, term, run) in block {
                    if bucketed && is_light(run) {
                        continue;
                    }
                    ins.execute(params![blk, term, run[0], encode_rids(run)])
                        .op("merge postings")?;
                    written += 1;
                }
                if !bucketed {
                    continue;
                }
                // Sorted by term, so each bucket's terms are together.
                for bucket in light.chunk_by(|a, b| bucket_of(a.1) == bucket_of(b.1)) {
                    terms.clear();
                    terms.extend(bucket.iter().map(|&(_, term, run)| (term, run)));
                    let first = terms
                        .iter()
                        .map(|(_, run)| run[0])
                        .min()
                        .unwrap_or_default();
                    ins_bucket
                        .execute(params![
                            bucket[0].0,
                            bucket_of(bucket[0].1),
                            first,
                            super::bucket_blob::pack(first, &terms)
                        ])
                        .op("merge postings")?;
                    written += 1;
                }
            }
        }
        if pending_rows {
            tx.execute("DELETE FROM postings_pending", [])
                .op("empty pending postings")?;
        }
        tracing::debug!(
            events = self.events,
            terms = rows.len(),
            rows = written,
            ms = started.elapsed().as_millis() as u64,
            "writer: merged pending postings"
        );
        self.recent.clear();
        self.events = 0;
        self.rows = 0;
        Ok(())
    }
}

/// Pairs from which [`sort_pairs`] distributes them by their terms' top bits first.
const DISTRIBUTE_FROM: usize = 2048;

/// Sorts `(term, rid)` pairs. Terms are hashes, so their top bits split the pairs into
/// near-equal parts of a few pairs each (but for terms many events share) in one pass;
/// sorting each small part then costs a fraction of sorting them all at once, which was
/// the writer's largest step of its own.
fn sort_pairs(mut pairs: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    if pairs.len() < DISTRIBUTE_FROM {
        pairs.sort_unstable();
        return pairs;
    }
    // About 8 pairs a part, in 2^11 to 2^16 parts.
    let bits = (pairs.len() / 8).ilog2().clamp(11, 16);
    // The sign bit flipped: negative terms first, as `i64` orders them.
    let part = |term: i64| (((term as u64) ^ (1 << 63)) >> (64 - bits)) as usize;
    let mut ends = vec![0usize; 1 << bits];
    for &(term, _) in &pairs {
        ends[part(term)] += 1;
    }
    let mut at = 0;
    for end in &mut ends {
        at += *end;
        *end = at;
    }
    // Filled from each part's end backwards, so `ends` becomes each part's start.
    let mut sorted = vec![(0, 0); pairs.len()];
    for &pair in pairs.iter().rev() {
        let end = &mut ends[part(pair.0)];
        *end -= 1;
        sorted[*end] = pair;
    }
    let mut start = pairs.len();
    for &part_start in ends.iter().rev() {
        sorted[part_start..start].sort_unstable();
        start = part_start;
    }
    sorted
}

/// One row per org: rows are keyed by rid, and rids are ordered by org first (a term
/// is one org's: its key hashes the org). Reorders `terms` by org. Returns the rows
/// written.
fn write_pending(tx: &Transaction<'_>, terms: &mut [(i64, &[i64])]) -> Result<usize> {
    terms.sort_by_key(|(_, rids)| rids.first().map(|r| r >> SEQ_BITS));
    let mut ins = tx
        .prepare_cached("INSERT INTO postings_pending (first_rid, terms) VALUES (?1, ?2)")
        .op("prepare pending postings")?;
    let mut rows = 0;
    for org in terms.chunk_by(|(_, a), (_, b)| {
        a.first().map(|r| r >> SEQ_BITS) == b.first().map(|r| r >> SEQ_BITS)
    }) {
        let first = org
            .iter()
            .filter_map(|(_, r)| r.first())
            .min()
            .copied()
            .unwrap_or_default();
        ins.execute(params![first, pack(first, org)])
            .op("write pending postings")?;
        rows += 1;
    }
    Ok(rows)
}

fn corrupt(what: &str, first: i64) -> StoreError {
    StoreError::Corrupt(format!("{what} at rid {first}"))
}

/// A postings row's `(first_rid, blob)`; `what` names the table in errors.
fn first_and_blob<'r>(r: &'r rusqlite::Row<'_>, what: &'static str) -> Result<(i64, &'r [u8])> {
    let first: i64 = r.get(0).op(what)?;
    let blob = r.get_ref(1).op(what)?;
    let blob = blob.as_blob().map_err(|_| corrupt(what, first))?;
    Ok((first, blob))
}

/// The rids of `term` held in `org_num`'s pending rows, ascending.
pub(crate) fn pending_rids(
    conn: &rusqlite::Connection,
    org_num: i64,
    term: i64,
) -> Result<Vec<i64>> {
    let mut st = conn
        .prepare_cached(
            "SELECT first_rid, terms FROM postings_pending WHERE first_rid BETWEEN ?1 AND ?2 ORDER BY first_rid",
        )
        .op("prepare pending postings read")?;
    let mut rows = st
        .query(params![rid(org_num, 0), rid(org_num, MAX_SEQ)])
        .op("read pending postings")?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().op("read pending postings")? {
        let (first, blob) = first_and_blob(r, PENDING)?;
        rids_of(first, blob, term, &mut out).map_err(|_| corrupt(PENDING, first))?;
    }
    Ok(out)
}

/// The merged rids of `term` in block `blk`, ascending: from the term's own rows and from
/// its bucket's rows (see the module's comment).
pub(crate) fn merged_rids(conn: &rusqlite::Connection, blk: i64, term: i64) -> Result<Vec<i64>> {
    let mut out = Vec::new();
    let mut own = conn
        .prepare_cached("SELECT first_rid, rids FROM postings WHERE blk = ?1 AND term = ?2")
        .op("prepare postings read")?;
    let mut rows = own.query(params![blk, term]).op("read postings")?;
    while let Some(r) = rows.next().op("read postings")? {
        let (first, blob) = first_and_blob(r, "postings")?;
        out.extend(crate::terms::decode_rids(first, blob));
    }
    let mut buckets = conn
        .prepare_cached(
            "SELECT first_rid, terms FROM postings_buckets WHERE blk = ?1 AND bucket = ?2",
        )
        .op("prepare postings read")?;
    let mut rows = buckets
        .query(params![blk, bucket_of(term)])
        .op("read postings")?;
    while let Some(r) = rows.next().op("read postings")? {
        let (first, blob) = first_and_blob(r, BUCKETED)?;
        super::bucket_blob::rids_of(first, blob, term, &mut out)
            .map_err(|_| corrupt(BUCKETED, first))?;
    }
    // Each row's rids ascend; rows of the two tables interleave in time. A bucket row
    // may also hold, under the same key, an event of another term that this one has too.
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Rewrites the bucket rows in version 15's format (see `bucket_blob.rs`): all deleted,
/// then written again in key order, so the smaller rows fill the pages they take.
pub(crate) fn convert_v15(tx: &Transaction<'_>) -> Result<()> {
    let mut done = Vec::new();
    {
        let mut st = tx
            .prepare("SELECT blk, bucket, first_rid, terms FROM postings_buckets ORDER BY blk, bucket, first_rid")
            .op("read bucketed postings")?;
        let mut rows = st.query([]).op("read bucketed postings")?;
        while let Some(r) = rows.next().op("read bucketed postings")? {
            let (blk, bucket): (i64, i64) = (r.get(0).op(BUCKETED)?, r.get(1).op(BUCKETED)?);
            let first: i64 = r.get(2).op(BUCKETED)?;
            let blob: Vec<u8> = r.get(3).op(BUCKETED)?;
            let terms = unpack(first, &blob).map_err(|_| corrupt(BUCKETED, first))?;
            let refs: Vec<(i64, &[i64])> = terms.iter().map(|(t, r)| (*t, r.as_slice())).collect();
            done.push((blk, bucket, first, super::bucket_blob::pack(first, &refs)));
        }
    }
    tx.execute("DELETE FROM postings_buckets", [])
        .op("convert bucketed postings")?;
    let mut ins = tx
        .prepare(
            "INSERT INTO postings_buckets (blk, bucket, first_rid, terms) VALUES (?1, ?2, ?3, ?4)",
        )
        .op("prepare bucketed postings")?;
    for (blk, bucket, first, blob) in done {
        ins.execute(params![blk, bucket, first, blob])
            .op("convert bucketed postings")?;
    }
    Ok(())
}

/// Rewrites version 8's pending rows in version 9's format (see `pending_blob.rs`).
pub(crate) fn convert_v9(tx: &Transaction<'_>) -> Result<()> {
    let rows: Vec<(i64, Vec<u8>)> = {
        let mut st = tx
            .prepare("SELECT first_rid, terms FROM postings_pending")
            .op("read pending postings")?;
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .op("read pending postings")?
            .collect::<rusqlite::Result<_>>()
            .op("read pending postings")?
    };
    let mut up = tx
        .prepare("UPDATE postings_pending SET terms = ?2 WHERE first_rid = ?1")
        .op("prepare pending postings")?;
    for (first, blob) in rows {
        let terms = legacy_entries(first, &blob).map_err(|_| corrupt(PENDING, first))?;
        let terms: Vec<(i64, &[i64])> = terms.iter().map(|(t, r)| (*t, &r[..])).collect();
        up.execute(params![first, pack(first, &terms)])
            .op("convert pending postings")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::schema::migrate;
    use crate::terms::decode_rids;
    use rusqlite::Connection;

    #[test]
    fn pairs_sort_as_a_plain_sort_does() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as i64
        };
        for n in [0, 1, 7, DISTRIBUTE_FROM - 1, DISTRIBUTE_FROM, 20_000] {
            // Some terms repeated (actions), most not (resource ids); rids of both signs.
            let common: Vec<i64> = (0..8).map(|_| next()).collect();
            let pairs: Vec<(i64, i64)> = (0..n)
                .map(|i| {
                    let term = if i % 3 == 0 { common[i % 8] } else { next() };
                    (term, next() >> 8)
                })
                .collect();
            let mut expected = pairs.clone();
            expected.sort_unstable();
            assert_eq!(sort_pairs(pairs), expected, "{n} pairs");
        }
        let edges = [(i64::MAX, 1), (i64::MIN, 2), (0, 3), (-1, 4), (1, 5)];
        let mut many: Vec<(i64, i64)> = edges
            .iter()
            .cycle()
            .take(DISTRIBUTE_FROM * 2)
            .copied()
            .collect();
        many.reverse();
        let mut expected = many.clone();
        expected.sort_unstable();
        assert_eq!(sort_pairs(many), expected);
    }

    /// (term, rids) of every merged row, and the number of pending rows.
    fn tables(c: &Connection) -> (Vec<(i64, Vec<i64>)>, i64) {
        let mut st = c
            .prepare("SELECT term, first_rid, rids FROM postings ORDER BY term, first_rid")
            .unwrap();
        let merged = st
            .query_map([], |r| {
                Ok((r.get(0)?, decode_rids(r.get(1)?, &r.get::<_, Vec<u8>>(2)?)))
            })
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let pending = c
            .query_row("SELECT count(*) FROM postings_pending", [], |r| r.get(0))
            .unwrap();
        (merged, pending)
    }

    fn group(entries: &[(i64, &[i64])]) -> Vec<(i64, i64)> {
        entries
            .iter()
            .flat_map(|&(t, rids)| rids.iter().map(move |&r| (t, r)))
            .collect()
    }

    #[test]
    fn small_groups_wait_and_merge_once_a_rolled_back_group_is_forgotten() {
        let d = tempfile::tempdir().unwrap();
        let mut c = Connection::open(d.path().join("p.db")).unwrap();
        migrate(&mut c).unwrap();
        let r = |org, seq| rid(org, seq);
        let mut p = Pending::merging_at(6);

        let tx = c.transaction().unwrap();
        p.add_group(&tx, group(&[(1, &[r(1, 1), r(1, 2)]), (2, &[r(2, 1)])]), 3)
            .unwrap();
        tx.commit().unwrap();
        assert_eq!(tables(&c), (vec![], 2), "one pending row per org");
        assert_eq!(pending_rids(&c, 1, 1).unwrap(), vec![r(1, 1), r(1, 2)]);
        assert!(
            pending_rids(&c, 2, 1).unwrap().is_empty(),
            "org 2 has no term 1"
        );

        // A group whose transaction rolls back leaves nothing behind.
        let tx = c.transaction().unwrap();
        p.add_group(&tx, group(&[(1, &[r(1, 3), r(1, 4)])]), 2)
            .unwrap();
        drop(tx);
        p.invalidate();
        assert_eq!(pending_rids(&c, 1, 1).unwrap(), vec![r(1, 1), r(1, 2)]);

        // Reloaded from the table: 3 events held, 3 more reach the merge.
        let tx = c.transaction().unwrap();
        p.add_group(&tx, group(&[(1, &[r(1, 3), r(1, 4), r(1, 5)])]), 3)
            .unwrap();
        tx.commit().unwrap();
        assert_eq!(
            tables(&c),
            (
                vec![
                    (1, vec![r(1, 1), r(1, 2), r(1, 3), r(1, 4), r(1, 5)]),
                    (2, vec![r(2, 1)])
                ],
                0
            )
        );
        assert!(pending_rids(&c, 1, 1).unwrap().is_empty());
    }

    #[test]
    fn many_small_groups_merge_before_a_block_fills() {
        let d = tempfile::tempdir().unwrap();
        let mut c = Connection::open(d.path().join("p.db")).unwrap();
        migrate(&mut c).unwrap();
        let add = |c: &mut Connection, p: &mut Pending, seq: u64| {
            let tx = c.transaction().unwrap();
            p.add_group(&tx, group(&[(9, &[rid(1, seq)])]), 1).unwrap();
            tx.commit().unwrap();
        };
        let mut p = Pending::new();
        for seq in 1..=3 {
            add(&mut c, &mut p, seq);
        }
        // A reopened writer counts the rows held so far.
        let mut p = Pending::new();
        for seq in 4..=MERGE_ROWS as u64 {
            add(&mut c, &mut p, seq);
        }
        assert_eq!(tables(&c), (vec![], MERGE_ROWS as i64), "a row a group");
        add(&mut c, &mut p, MERGE_ROWS as u64 + 1);
        let all: Vec<i64> = (1..=MERGE_ROWS as u64 + 1).map(|s| rid(1, s)).collect();
        assert_eq!(tables(&c), (vec![(9, all)], 0), "merged, pending emptied");
    }

    #[test]
    fn large_merges_write_bucket_rows_that_read_back_with_the_per_term_rows() {
        let d = tempfile::tempdir().unwrap();
        let mut c = Connection::open(d.path().join("p.db")).unwrap();
        migrate(&mut c).unwrap();
        let r = |seq| rid(1, seq);
        // Terms a and b share bucket 0, -1 is bucket 255, 1 << 60 is bucket 16.
        let (a, b, z, x) = (5i64 << 32, 6i64 << 32, -1i64, 1i64 << 60);
        assert_eq!(
            (bucket_of(a), bucket_of(b), bucket_of(z), bucket_of(x)),
            (0, 0, 255, 16)
        );
        // Merges at 2 events; bucket rows from 3 terms of a block.
        let mut p = Pending::merging_at(2).bucketing_from(3);
        let mut commit = |p: &mut Pending, entries: &[(i64, &[i64])], events| {
            let tx = c.transaction().unwrap();
            p.add_group(&tx, group(entries), events).unwrap();
            tx.commit().unwrap();
        };
        // Two terms: a row each.
        commit(&mut p, &[(a, &[r(1), r(2)]), (z, &[r(2)])], 2);
        // Four terms of few events: bucket rows (0 holds a and b; 255 and 16 one term
        // each); `h`, with more events than a bucket row takes, gets a row of its own.
        let h = 9i64 << 56;
        let many: Vec<i64> = (3..=3 + BUCKET_MAX_RIDS as u64).map(r).collect();
        commit(
            &mut p,
            &[
                (a, &[r(3), r(4)]),
                (b, &[r(3)]),
                (z, &[r(4)]),
                (x, &[r(4)]),
                (h, &many),
            ],
            2,
        );
        // Two terms again, one of them in block 1 too.
        commit(&mut p, &[(a, &[r(5), r(65_536)]), (b, &[r(6)])], 2);
        let count = |table: &str| -> i64 {
            c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(count("postings"), 6);
        assert_eq!(count("postings_buckets"), 3);
        let blk0 = block_of(r(1));
        assert_eq!(
            merged_rids(&c, blk0, a).unwrap(),
            vec![r(1), r(2), r(3), r(4), r(5)]
        );
        assert_eq!(merged_rids(&c, blk0, b).unwrap(), vec![r(3), r(6)]);
        assert_eq!(merged_rids(&c, blk0, z).unwrap(), vec![r(2), r(4)]);
        assert_eq!(merged_rids(&c, blk0, x).unwrap(), vec![r(4)]);
        assert!(
            merged_rids(&c, blk0, 7 << 32).unwrap().is_empty(),
            "same bucket, other term"
        );
        // A term of bucket 0 whose 32 bits are b's reads b's events (of a bucket row)
        // too: the search re-checks each event it reads.
        assert_eq!(merged_rids(&c, blk0, b | 1).unwrap(), vec![r(3)]);
        assert_eq!(merged_rids(&c, blk0, h).unwrap(), many);
        assert_eq!(merged_rids(&c, blk0 + 1, a).unwrap(), vec![r(65_536)]);
        assert!(merged_rids(&c, blk0 + 1, b).unwrap().is_empty());

        // A damaged bucket row is reported, not misread.
        c.execute(
            "UPDATE postings_buckets SET terms = x'ffff' WHERE bucket = 0",
            [],
        )
        .unwrap();
        match merged_rids(&c, blk0, b) {
            Err(StoreError::Corrupt(m)) => assert!(m.contains("bucketed postings"), "{m}"),
            other => panic!("expected a corrupt-row error, got {other:?}"),
        }
        assert_eq!(
            merged_rids(&c, blk0, x).unwrap(),
            vec![r(4)],
            "other buckets read"
        );
    }
}
