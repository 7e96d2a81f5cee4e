//! Client-id claims (idempotency), kept off the random-write path.
//!
//! A client id is looked up by a 128-bit key: SHA-256(org ‖ id) split into `h` and `h2`.
//! Equal keys mean the same id (a collision costs 2^64 work); when only `h` agrees, the
//! ids differ and the exact text goes to `ids_collided`.
//!
//! Random keys written one commit at a time would dirty pages all over a growing table
//! on every commit, and each dirty page is written to the WAL and again to the database.
//! So new claims are kept in memory and written to `ids_pending` as one row per group
//! commit (rowid = the rid of the group's first claim, always the end of the table; the
//! claims packed in a blob), which costs one row rather than one per claim; once there
//! are enough of them (a quarter as many as are merged, within `MERGE_AT ..=
//! MAX_MERGE_AT`) they are merged in key order into the sorted chunks of `id_chunks`
//! (`id_chunks.rs`) and `ids_pending` is emptied, in the same transaction. Each chunk is
//! then written once per merge rather than once per commit, and, as merges wait longer
//! while the merged claims grow, a claim costs about the same bytes written in a large
//! set as in a small one.
//!
//! Most ids are new, and a lookup of a new id among the merged claims reads a chunk and
//! finds nothing; a Bloom filter of the merged keys (`idem_filter.rs`) skips it.

use std::path::PathBuf;

use rusqlite::{OptionalExtension, Transaction, params};
use sha2::{Digest, Sha256};

use super::by_key::ByKey;
use super::id_chunks::Check;
use super::idem_filter::Known;
use super::rid::{SEQ_BITS, seq_of};
use crate::Result;
use crate::error::Context;

/// Recent claims held before they are merged into `ids`, at least.
const MERGE_AT: usize = 262_144;
/// A merge waits for at least one new claim for every this many already in `ids`: each
/// merge dirties nearly every page of `ids` (the keys are random), so merges at a fixed
/// count would write the whole table again every `MERGE_AT` claims, ever more as it grows.
const IDS_PER_MERGED_CLAIM: usize = 4;
/// Recent claims held before a merge, at most, however large `ids` is (memory: ~52 bytes
/// a claim in the map at this size).
const MAX_MERGE_AT: usize = 1 << 20;

/// The 128-bit lookup key of a client id in an org.
pub(crate) fn id_key(org_num: i64, id: &str) -> (i64, i64) {
    let mut h = Sha256::new();
    h.update(b"client-id\0");
    h.update(org_num.to_be_bytes());
    h.update(id.as_bytes());
    let d = h.finalize();
    (
        i64::from_be_bytes(eight(&d, 0)),
        i64::from_be_bytes(eight(&d, 8)),
    )
}

/// The 8 bytes of `b` from `i` (the caller knows they are there).
fn eight(b: &[u8], i: usize) -> [u8; 8] {
    let mut out = [0u8; 8];
    out.copy_from_slice(&b[i..i + 8]);
    out
}

/// What a claim found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Claim {
    /// The id is new; it now belongs to the rid given.
    New,
    /// The id was accepted before, as this rid.
    Seen(i64),
}

/// The writer's view of the claims: the recent ones in memory, the rest in `ids`.
pub(crate) struct Claims {
    /// h → (h2, rid) of every claim not yet merged into `ids`.
    recent: ByKey<(i64, i64)>,
    /// This group's new claims, written to `ids_pending` by [`Self::end_group`].
    group: Vec<(i64, i64, i64)>,
    /// Whether `ids_pending` may hold rows (a merge empties it).
    pending_rows: bool,
    /// Merge once `recent` holds this many claims, or a quarter of those in `ids`, up to
    /// `merge_cap` (see [`Self::due`]).
    merge_at: usize,
    merge_cap: usize,
    /// Set when a transaction failed: memory may hold claims that were rolled back.
    stale: bool,
    /// Which keys may be in `ids`.
    known: Known,
    /// Lookups in `ids` so far (the filter's effect, for tests and logs).
    lookups: u64,
}

impl Claims {
    pub(crate) fn new() -> Self {
        Self::merging_at(MERGE_AT).growing_to(MAX_MERGE_AT)
    }

    pub(crate) fn merging_at(merge_at: usize) -> Self {
        Self {
            recent: ByKey::default(),
            group: Vec::new(),
            pending_rows: true,
            merge_at,
            merge_cap: merge_at,
            stale: true,
            known: Known::off(),
            lookups: 0,
        }
    }

    /// Lets merges wait for up to `cap` claims as `ids` grows (see [`Self::due`]).
    pub(crate) fn growing_to(mut self, cap: usize) -> Self {
        self.merge_cap = cap.max(self.merge_at);
        self
    }

    /// How many recent claims make a merge due: one for every [`IDS_PER_MERGED_CLAIM`]
    /// claims already in `ids` (as the filter counts them; none before it is built),
    /// within `merge_at ..= merge_cap`. Writing `ids` costs about the same whatever a
    /// merge brings, so this keeps the bytes written per claim bounded rather than growing
    /// with the table (until the cap).
    fn due(&self) -> usize {
        (self.known.keys().unwrap_or(0) / IDS_PER_MERGED_CLAIM)
            .min(self.merge_cap)
            .max(self.merge_at)
    }

    /// Starts building the filter of the claims in `ids` from the database at `db` (the
    /// writer's own database file), and builds it again whenever it fills up.
    pub(crate) fn with_filter(mut self, db: PathBuf) -> Self {
        self.known = Known::build(db);
        self
    }

    /// Forgets what memory holds; it is reloaded from the database before the next claim.
    /// Until then nothing is written: what memory held may have been rolled back.
    pub(crate) fn invalidate(&mut self) {
        self.stale = true;
        self.recent.clear();
        self.group.clear();
    }

    fn reload(&mut self, tx: &Transaction<'_>) -> Result<()> {
        self.recent.clear();
        self.group.clear();
        let mut st = tx
            .prepare_cached("SELECT rid, claims FROM ids_pending")
            .op("prepare pending ids read")?;
        let mut rows = st.query([]).op("read pending ids")?;
        while let Some(r) = rows.next().op("read pending ids")? {
            let first: i64 = r.get(0).op("pending ids")?;
            let blob = r.get_ref(1).op("pending ids")?;
            let packed = blob.as_blob().ok().filter(|b| b.len() % CLAIM_BYTES == 0);
            let packed = packed.ok_or_else(|| {
                crate::StoreError::Corrupt(format!("pending client-id claims at rid {first}"))
            })?;
            for (h, h2, rid) in unpack(packed) {
                self.recent.insert(h, (h2, rid));
            }
        }
        self.pending_rows = !self.recent.is_empty();
        self.stale = false;
        Ok(())
    }

    /// Claims `id` of `org_num` for `rid` unless it was accepted before.
    #[cfg(test)]
    pub(crate) fn claim(
        &mut self,
        tx: &Transaction<'_>,
        org_num: i64,
        id: &str,
        rid: i64,
    ) -> Result<Claim> {
        self.claim_keyed(tx, id_key(org_num, id), org_num, id, rid)
    }

    /// [`Self::claim`] with the id's key already computed (by [`id_key`]).
    pub(crate) fn claim_keyed(
        &mut self,
        tx: &Transaction<'_>,
        (h, h2): (i64, i64),
        org_num: i64,
        id: &str,
        rid: i64,
    ) -> Result<Claim> {
        if self.stale {
            self.reload(tx)?;
        }
        let found = match self.recent.get(&h) {
            Some(&(h2, rid)) => Some((Check::Full(h2), rid)),
            None if !self.known.may_contain(h) => None,
            None => {
                self.lookups += 1;
                super::id_chunks::lookup(tx, h)?
            }
        };
        match found {
            Some((Check::Full(seen), seen_rid)) if seen == h2 => Ok(Claim::Seen(seen_rid)),
            Some((check @ Check::Short(_), seen_rid))
                if check.admits(h2) && carries_id(tx, org_num, seen_rid, id)? =>
            {
                Ok(Claim::Seen(seen_rid))
            }
            Some(_) => claim_collided(tx, org_num, id, rid),
            None => {
                self.group.push((h, h2, rid));
                self.recent.insert(h, (h2, rid));
                Ok(Claim::New)
            }
        }
    }

    /// Writes the group's new claims, before its transaction commits: one row of
    /// `ids_pending`, or, once there are enough claims, a merge of them all into `ids`.
    /// A failure leaves the tables as they were (the transaction rolls back).
    pub(crate) fn end_group(&mut self, tx: &Transaction<'_>) -> Result<()> {
        if self.stale {
            // No claim since a rollback: nothing new to write.
            return Ok(());
        }
        if self.recent.len() >= self.due() {
            return self.merge(tx);
        }
        let Some(&(_, _, first)) = self.group.first() else {
            return Ok(());
        };
        tx.prepare_cached("INSERT INTO ids_pending (rid, claims) VALUES (?1, ?2)")
            .op("prepare id claims")?
            .execute(params![first, pack(&self.group)])
            .op("claim ids")?;
        self.group.clear();
        self.pending_rows = true;
        Ok(())
    }

    /// Merges the recent claims now, before they are due: sealing has caught up, and a
    /// merge rewrites every chunk with the claims of sealed events made short, as the
    /// compaction it stands for would. Returns whether it merged (nothing was recent).
    pub(crate) fn merge_early(&mut self, tx: &Transaction<'_>) -> Result<bool> {
        if self.stale {
            self.reload(tx)?;
        }
        if self.recent.is_empty() {
            return Ok(false);
        }
        self.merge(tx)?;
        Ok(true)
    }

    pub(crate) fn merge(&mut self, tx: &Transaction<'_>) -> Result<()> {
        let started = std::time::Instant::now();
        let mut all: Vec<(i64, i64, i64)> = self
            .recent
            .iter()
            .map(|(&h, &(h2, rid))| (h, h2, rid))
            .collect();
        all.sort_unstable();
        super::id_chunks::merge(tx, &all)?;
        if self.pending_rows {
            tx.execute("DELETE FROM ids_pending", [])
                .op("empty pending ids")?;
        }
        self.known.merged(self.recent.keys().copied());
        tracing::debug!(
            claims = self.recent.len(),
            lookups = self.lookups,
            ms = started.elapsed().as_millis() as u64,
            "writer: merged recent client-id claims"
        );
        self.recent.clear();
        self.group.clear();
        self.pending_rows = false;
        Ok(())
    }
}

/// Bytes of one packed claim: h, h2 and rid, little-endian.
const CLAIM_BYTES: usize = 24;

fn pack(claims: &[(i64, i64, i64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(claims.len() * CLAIM_BYTES);
    for &(h, h2, rid) in claims {
        out.extend_from_slice(&h.to_le_bytes());
        out.extend_from_slice(&h2.to_le_bytes());
        out.extend_from_slice(&rid.to_le_bytes());
    }
    out
}

/// The claims of a blob whose length is a multiple of [`CLAIM_BYTES`].
fn unpack(blob: &[u8]) -> impl Iterator<Item = (i64, i64, i64)> + '_ {
    blob.chunks_exact(CLAIM_BYTES).map(|c| {
        let word = |i| i64::from_le_bytes(eight(c, i));
        (word(0), word(8), word(16))
    })
}

/// Whether the stored event `seen`, whose claim agrees with `id`'s key in its 80 bits
/// kept (a sealed event's, see `id_chunks.rs`), carries `id`: its body's `id` decides, read
/// from its frame (or its row). A purged body cannot tell: the 80 bits decide.
fn carries_id(tx: &Transaction<'_>, org_num: i64, seen: i64, id: &str) -> Result<bool> {
    if seen >> SEQ_BITS != org_num {
        return Ok(false);
    }
    let seq = seq_of(seen);
    let frames = crate::frame_cache::FrameCache::default();
    let mut unsealer = super::seal::Unsealer::new(tx, &frames, org_num)?;
    let body: Option<String> = if unsealer.is_sealed(seq) {
        unsealer.entry(seq)?.text().map(str::to_owned)
    } else {
        tx.query_row("SELECT body FROM events WHERE rid = ?1", [seen], |r| {
            r.get(0)
        })
        .optional()
        .op("read claimed event")?
        .flatten()
    };
    let Some(body) = body else {
        return Ok(true);
    };
    let v: serde_json::Value = serde_json::from_str(&body)
        .map_err(|e| crate::StoreError::Corrupt(format!("the body of seq {seq}: {e}")))?;
    Ok(v.get("id").and_then(serde_json::Value::as_str) == Some(id))
}

/// Two different ids share `h`: the exact text decides.
fn claim_collided(tx: &Transaction<'_>, org_num: i64, id: &str, rid: i64) -> Result<Claim> {
    let seen: Option<i64> = tx
        .query_row(
            "SELECT rid FROM ids_collided WHERE org_num = ?1 AND id = ?2",
            params![org_num, id],
            |r| r.get(0),
        )
        .optional()
        .op("read collided id")?;
    if let Some(r) = seen {
        return Ok(Claim::Seen(r));
    }
    tx.execute(
        "INSERT INTO ids_collided (org_num, id, rid) VALUES (?1, ?2, ?3)",
        params![org_num, id, rid],
    )
    .op("claim collided id")?;
    Ok(Claim::New)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    fn db(dir: &std::path::Path) -> Connection {
        let mut c = Connection::open(dir.join("t.db")).unwrap();
        super::super::schema::migrate(&mut c).unwrap();
        c
    }

    fn count(c: &Connection, table: &str) -> i64 {
        if table == "ids" {
            // The merged claims, in their chunks.
            return super::super::id_chunks::count(c).unwrap();
        }
        c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn claims_are_found_before_and_after_a_merge_and_across_restarts() {
        let d = tempfile::tempdir().unwrap();
        let mut c = db(d.path());
        let mut claims = Claims::merging_at(3);
        let tx = c.transaction().unwrap();
        assert_eq!(claims.claim(&tx, 1, "a", 101).unwrap(), Claim::New);
        assert_eq!(claims.claim(&tx, 1, "a", 102).unwrap(), Claim::Seen(101));
        assert_eq!(
            claims.claim(&tx, 2, "a", 201).unwrap(),
            Claim::New,
            "another org's id"
        );
        claims.end_group(&tx).unwrap();
        assert_eq!(count(&tx, "ids"), 0, "not due yet");
        assert_eq!(
            count(&tx, "ids_pending"),
            1,
            "one row for the group's claims"
        );
        assert_eq!(claims.claim(&tx, 1, "b", 103).unwrap(), Claim::New);
        claims.end_group(&tx).unwrap();
        assert_eq!((count(&tx, "ids"), count(&tx, "ids_pending")), (3, 0));
        assert_eq!(claims.claim(&tx, 1, "b", 104).unwrap(), Claim::Seen(103));
        assert_eq!(claims.claim(&tx, 1, "c", 105).unwrap(), Claim::New);
        claims.end_group(&tx).unwrap();
        tx.commit().unwrap();
        drop(c);

        // A new writer finds both the merged and the recent claims.
        let mut c = db(d.path());
        let mut claims = Claims::merging_at(3);
        let tx = c.transaction().unwrap();
        assert_eq!(claims.claim(&tx, 1, "a", 106).unwrap(), Claim::Seen(101));
        assert_eq!(claims.claim(&tx, 1, "c", 107).unwrap(), Claim::Seen(105));
        assert_eq!(claims.claim(&tx, 2, "a", 202).unwrap(), Claim::Seen(201));
    }

    #[test]
    fn with_the_filter_old_ids_are_found_and_new_ones_are_not_looked_up() {
        let d = tempfile::tempdir().unwrap();
        let mut c = db(d.path());
        {
            let mut claims = Claims::merging_at(100);
            let tx = c.transaction().unwrap();
            for i in 0..1_000 {
                claims.claim(&tx, 1, &format!("old-{i}"), i).unwrap();
                claims.end_group(&tx).unwrap();
            }
            tx.commit().unwrap();
        }
        assert_eq!(count(&c, "ids"), 1_000);
        let mut claims = with_ready_filter(Claims::merging_at(100), &d.path().join("t.db"));
        let tx = c.transaction().unwrap();
        for i in 0..1_000 {
            let id = format!("old-{i}");
            assert_eq!(claims.claim(&tx, 1, &id, 5_000).unwrap(), Claim::Seen(i));
        }
        assert_eq!(claims.lookups, 1_000);
        for i in 0..1_000 {
            let id = format!("new-{i}");
            assert_eq!(claims.claim(&tx, 1, &id, 10_000 + i).unwrap(), Claim::New);
            // Merged as they come: the filter takes each merge in.
            claims.end_group(&tx).unwrap();
        }
        assert!(claims.lookups < 1_010, "{} lookups", claims.lookups);
        // Merged claims are found through the filter.
        for i in 0..1_000 {
            let id = format!("new-{i}");
            assert_eq!(
                claims.claim(&tx, 1, &id, 20_000).unwrap(),
                Claim::Seen(10_000 + i)
            );
        }
    }

    /// Claims built with the filter over `db`, once the filter is there.
    fn with_ready_filter(claims: Claims, db: &std::path::Path) -> Claims {
        let mut claims = claims.with_filter(db.into());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !claims.known.is_ready() {
            assert!(std::time::Instant::now() < deadline, "filter never built");
            claims.known.may_contain(0);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        claims
    }

    /// Claims new ids `prefix-0..` one group each until a group's end merges them into
    /// `ids`; returns how many it claimed (`None` if `limit` claims did not merge).
    fn claims_until_merge(
        claims: &mut Claims,
        tx: &Transaction<'_>,
        prefix: &str,
        limit: i64,
    ) -> Option<i64> {
        let before = count(tx, "ids");
        let mut waiting = 0;
        for i in 0..limit {
            let id = format!("{prefix}-{i}");
            assert_eq!(claims.claim(tx, 1, &id, 1_000_000 + i).unwrap(), Claim::New);
            if i == 0 {
                // Claims already waiting (the first claim loads them after a restart).
                waiting = claims.recent.len() as i64 - 1;
            }
            claims.end_group(tx).unwrap();
            if count(tx, "ids") > before {
                assert_eq!(count(tx, "ids"), before + waiting + i + 1, "all merged");
                assert_eq!(count(tx, "ids_pending"), 0);
                return Some(i + 1);
            }
        }
        None
    }

    #[test]
    fn merges_wait_longer_as_ids_grows_up_to_the_cap() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("t.db");
        let mut c = db(d.path());
        let tx = c.transaction().unwrap();
        // No filter yet, so nothing known of `ids`: merges at the floor.
        let mut claims = Claims::merging_at(10).growing_to(400);
        assert_eq!(claims_until_merge(&mut claims, &tx, "a", 100), Some(10));
        for i in 0..990 {
            claims.claim(&tx, 1, &format!("old-{i}"), i).unwrap();
        }
        claims.merge(&tx).unwrap();
        tx.commit().unwrap();
        assert_eq!(count(&c, "ids"), 1_000);

        // With 1,000 claims in `ids`, a merge waits for 250 new ones, then for a quarter
        // of the 1,250 it leaves; the claims waiting are found, and survive a restart.
        let mut claims = with_ready_filter(Claims::merging_at(10).growing_to(400), &file);
        let tx = c.transaction().unwrap();
        assert_eq!(claims_until_merge(&mut claims, &tx, "b", 1_000), Some(250));
        assert_eq!(count(&tx, "ids"), 1_250);
        assert_eq!(claims_until_merge(&mut claims, &tx, "c", 311), None);
        assert_eq!(count(&tx, "ids_pending"), 311, "a row for each group");
        assert_eq!(
            claims.claim(&tx, 1, "c-7", 9).unwrap(),
            Claim::Seen(1_000_007)
        );
        tx.commit().unwrap();
        let mut claims = with_ready_filter(Claims::merging_at(10).growing_to(400), &file);
        let tx = c.transaction().unwrap();
        assert_eq!(
            claims.claim(&tx, 1, "c-310", 9).unwrap(),
            Claim::Seen(1_000_310)
        );
        assert_eq!(
            claims.claim(&tx, 1, "b-249", 9).unwrap(),
            Claim::Seen(1_000_249)
        );
        assert_eq!(claims_until_merge(&mut claims, &tx, "d", 10), Some(1));
        assert_eq!(
            count(&tx, "ids"),
            1_562,
            "the 311 waiting, and the one that made 312"
        );

        // The cap holds however large `ids` grows: a quarter of the 1,250 committed
        // (the filter's scan sees no more) would be 312; the cap makes it 200.
        let mut capped = with_ready_filter(Claims::merging_at(10).growing_to(200), &file);
        assert_eq!(claims_until_merge(&mut capped, &tx, "e", 1_000), Some(200));
    }

    #[test]
    fn a_rolled_back_claim_is_forgotten() {
        let d = tempfile::tempdir().unwrap();
        let mut c = db(d.path());
        let mut claims = Claims::merging_at(1);
        {
            let tx = c.transaction().unwrap();
            assert_eq!(claims.claim(&tx, 1, "x", 1).unwrap(), Claim::New);
            claims.end_group(&tx).unwrap();
            assert_eq!(claims.claim(&tx, 1, "y", 2).unwrap(), Claim::New);
            // dropped: rolled back, as a failed group commit is
        }
        claims.invalidate();
        // A group with no claims after the rollback writes nothing of the rolled-back ones.
        {
            let tx = c.transaction().unwrap();
            claims.end_group(&tx).unwrap();
            assert_eq!((count(&tx, "ids"), count(&tx, "ids_pending")), (0, 0));
            tx.commit().unwrap();
        }
        let tx = c.transaction().unwrap();
        assert_eq!(claims.claim(&tx, 1, "x", 3).unwrap(), Claim::New);
        assert_eq!(claims.claim(&tx, 1, "y", 4).unwrap(), Claim::New);
    }

    #[test]
    fn ids_sharing_the_first_half_of_their_key_are_told_apart_by_their_text() {
        let d = tempfile::tempdir().unwrap();
        let mut c = db(d.path());
        let (h, h2) = id_key(1, "victim");
        let mut claims = Claims::merging_at(1_000);
        let tx = c.transaction().unwrap();
        // Another id already holds `h` with a different second half.
        super::super::id_chunks::merge(&tx, &[(h, h2 ^ 1, 7)]).unwrap();
        assert_eq!(claims.claim(&tx, 1, "victim", 8).unwrap(), Claim::New);
        assert_eq!(claims.claim(&tx, 1, "victim", 9).unwrap(), Claim::Seen(8));
        assert_eq!(count(&tx, "ids_collided"), 1);
        // And in memory, before any merge.
        let (h, h2) = id_key(1, "other");
        tx.execute("DELETE FROM id_chunks", []).unwrap();
        claims.recent.insert(h, (h2 ^ 1, 10));
        assert_eq!(claims.claim(&tx, 1, "other", 11).unwrap(), Claim::New);
        assert_eq!(claims.claim(&tx, 1, "other", 12).unwrap(), Claim::Seen(11));
    }

    /// Org 1's events `1..=n` as rows, each body carrying its client id `id-<seq>`.
    fn event_rows(tx: &Transaction<'_>, n: u64) {
        for seq in 1..=n {
            let body = format!(r#"{{"action":"a","id":"id-{seq}","seq":{seq}}}"#);
            tx.execute(
                "INSERT INTO events (rid, occurred_us, received_ms, leaf, body) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    super::super::rid::rid(1, seq),
                    seq as i64,
                    seq as i64,
                    auditrail_core::merkle::leaf_hash(body.as_bytes()).to_vec(),
                    body
                ],
            )
            .unwrap();
        }
    }

    /// Claims of sealed events keep 80 bits of their key; a retry of such an event is
    /// still found (its frame holds the exact id), across a restart, and an id whose key
    /// agrees in those 80 bits but is another is told apart by its text.
    #[test]
    fn claims_of_sealed_events_are_short_and_still_found() {
        use super::super::id_chunks::{self, Check};
        use super::super::rid::rid;
        let d = tempfile::tempdir().unwrap();
        let mut c = db(d.path());
        let tx = c.transaction().unwrap();
        event_rows(&tx, 1_000);
        let mut claims = Claims::merging_at(100);
        for seq in 1..=1_000 {
            let id = format!("id-{seq}");
            assert_eq!(claims.claim(&tx, 1, &id, rid(1, seq)).unwrap(), Claim::New);
            claims.end_group(&tx).unwrap();
        }
        claims.merge(&tx).unwrap();
        assert_eq!(super::super::seal::seal(&tx, 1, 100, 100).unwrap(), 768);
        let mut from = Some(i64::MIN);
        while let Some(f) = from {
            from = id_chunks::compact(&tx, f).unwrap();
        }
        let short = |tx: &Transaction<'_>, id: &str| {
            let (h, _) = id_key(1, id);
            matches!(
                id_chunks::lookup(tx, h).unwrap(),
                Some((Check::Short(_), _))
            )
        };
        assert!(short(&tx, "id-1") && short(&tx, "id-768"), "sealed: short");
        assert!(
            !short(&tx, "id-769") && !short(&tx, "id-1000"),
            "open: whole"
        );
        tx.commit().unwrap();

        let mut claims = Claims::merging_at(100);
        let tx = c.transaction().unwrap();
        for seq in [1, 500, 768, 769, 1_000] {
            let id = format!("id-{seq}");
            assert_eq!(
                claims.claim(&tx, 1, &id, rid(1, 5_000)).unwrap(),
                Claim::Seen(rid(1, seq)),
                "{id}"
            );
        }
        assert_eq!(
            claims.claim(&tx, 1, "id-1001", rid(1, 1_001)).unwrap(),
            Claim::New
        );
        assert_eq!(claims.claim(&tx, 2, "id-1", rid(2, 1)).unwrap(), Claim::New);

        // A short claim of "victim" that points at an event whose body carries another
        // id (the 80 bits agreeing for two ids): the text tells them apart.
        let (h, h2) = id_key(1, "victim");
        let sealed_other = rid(1, 3);
        tx.execute("DELETE FROM id_chunks", []).unwrap();
        let merged = [(h, h2, sealed_other)];
        id_chunks::merge(&tx, &merged).unwrap();
        assert!(short(&tx, "victim"));
        assert_eq!(
            claims.claim(&tx, 1, "victim", rid(1, 5_001)).unwrap(),
            Claim::New
        );
        assert_eq!(
            claims.claim(&tx, 1, "victim", rid(1, 5_002)).unwrap(),
            Claim::Seen(rid(1, 5_001)),
            "now claimed by its text"
        );
        // A short claim whose event was purged: the 80 bits decide.
        let (h, h2) = id_key(1, "purged");
        tx.execute("DELETE FROM id_chunks", []).unwrap();
        id_chunks::merge(&tx, &[(h, h2, rid(1, 4))]).unwrap();
        super::super::seal::purge(&tx, 1, i64::MAX, 10).unwrap();
        assert_eq!(
            claims.claim(&tx, 1, "purged", rid(1, 5_003)).unwrap(),
            Claim::Seen(rid(1, 4))
        );
    }

    #[test]
    fn keys_depend_on_org_and_id() {
        assert_ne!(id_key(1, "a"), id_key(2, "a"));
        assert_ne!(id_key(1, "a"), id_key(1, "b"));
        assert_eq!(id_key(1, "a"), id_key(1, "a"));
    }
}
