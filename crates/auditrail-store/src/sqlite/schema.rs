//! The SQLite schema and its migrations (by `PRAGMA user_version`).
//!
//! Layout, chosen for append speed:
//! - `events` is a rowid table whose rowid is `org_num << 40 | seq`, so each org's log is
//!   one contiguous, append-only key range: inserting never splits a page in the middle.
//! - `postings` is the only search index. A row holds, for one term (a 64-bit hash of
//!   org, field and value, see `terms.rs`) and one block of 2^16 rids, the delta-encoded
//!   rids of the events with that term written by one merge. Index maintenance is one
//!   row per distinct term per merge rather than one row per event per field, which is
//!   what makes secondary indexes the dominant cost of the naive layout. Rows are keyed
//!   by block first, so a merge only writes pages at the end of the table (the org's
//!   newest block) instead of all over it; a search seeks its term once per block.
//!   Commits write their postings to `postings_pending`, one row per org per commit
//!   (since version 8; since version 9 its blob opens with a directory of its terms, see
//!   `pending_blob.rs`), and the writer merges them into `postings` a block's worth of
//!   events at a time (see `postings.rs`); a search reads both. Since version 10 a merge
//!   of many terms writes its terms of few events to `postings_buckets` instead: one row
//!   per block and bucket (the top 8 bits of the term) holding all that merge's such terms
//!   of the bucket, packed as the pending rows are (since version 15 in a denser layout of
//!   their own, see `bucket_blob.rs`); a search reads its term's rows of both tables.
//! - `id_chunks`, `ids_pending` and `ids_collided` hold the claims of client-supplied ids
//!   (see `idem.rs`); generated ids are unique by construction. (`ids_recent`, one row
//!   per claim, was replaced in version 7 by `ids_pending`, one row per group commit;
//!   `ids`, one row per merged claim, in version 14 by `id_chunks`, sorted claims packed
//!   a few hundred to a row, see `id_chunks.rs`.)
//! - `catalogs` holds every version of each org's catalog; `orgs.catalog` is unused
//!   since schema version 2 (the current catalog is the highest version).
//! - `exports` holds export jobs with their lease (owner, until) and results.
//! - `nodes` holds every complete Merkle subtree of 16 leaves or more (smaller ones are
//!   hashed from their leaves), so roots and proofs take O(log n) point reads; leaves are
//!   `events.leaf`, or a sealed body's hash.
//! - `leases` names background work and who runs it until when (see `Store::acquire_lease`).
//! - `sealed` holds, since version 11, the zstd frames of sealed tiles, and
//!   `sealed_upto` each org's first unsealed seq (see `seal.rs`); a sealed event has no
//!   row in `events`. Since version 12 a frame longer than a quarter of a page goes on
//!   in `sealed_more`, keyed by the frame's first rid plus 1, 2, ..., so frames pack
//!   pages instead of leaving half of one empty after each. Since version 13 `nodes`
//!   holds no node below a tile's root within a sealed tile: those are hashed from the
//!   frame's leaves when a proof needs them.

use super::rid::{block_of, by_block, rid};
use rusqlite::Connection;

use crate::Result;
use crate::error::Context;

/// Schema versions, one script each; version 6's is followed by `convert_v6`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE orgs (
    num INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    strict INTEGER NOT NULL,
    retention_days INTEGER,
    catalog TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE keys (
    id TEXT PRIMARY KEY,
    org_num INTEGER NOT NULL REFERENCES orgs(num),
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    secret_hash BLOB NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE events (
    rid INTEGER PRIMARY KEY,
    occurred_us INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    leaf BLOB NOT NULL,
    body TEXT
);
CREATE TABLE postings (term INTEGER NOT NULL, first_rid INTEGER NOT NULL, rids BLOB NOT NULL, PRIMARY KEY (term, first_rid)) WITHOUT ROWID;
CREATE TABLE idem (org_num INTEGER NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (org_num, id)) WITHOUT ROWID;
CREATE TABLE nodes (
    org_num INTEGER NOT NULL, level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL,
    PRIMARY KEY (org_num, level, idx)
) WITHOUT ROWID;
CREATE TABLE checkpoints (
    org_num INTEGER NOT NULL, size INTEGER NOT NULL, note TEXT NOT NULL, created_ms INTEGER NOT NULL,
    PRIMARY KEY (org_num, size)
) WITHOUT ROWID;
"#,
    r#"
CREATE TABLE catalogs (
    org_num INTEGER NOT NULL REFERENCES orgs(num),
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    document TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (org_num, version)
) WITHOUT ROWID;
"#,
    r#"
CREATE TABLE exports (
    id TEXT PRIMARY KEY,
    org_num INTEGER NOT NULL REFERENCES orgs(num),
    status TEXT NOT NULL,
    request TEXT NOT NULL,
    requester TEXT NOT NULL,
    row_count INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER,
    sha256 TEXT,
    error TEXT,
    checkpoint_size INTEGER,
    checkpoint TEXT,
    file TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    started_ms INTEGER,
    completed_ms INTEGER,
    expires_ms INTEGER,
    lease_owner TEXT,
    lease_until INTEGER
);
CREATE INDEX exports_by_org ON exports (org_num, created_ms);
CREATE INDEX exports_by_status ON exports (status, created_ms);
"#,
    r#"
CREATE TABLE destinations (
    org_num INTEGER NOT NULL REFERENCES orgs(num),
    name TEXT NOT NULL,
    config TEXT NOT NULL,
    credentials TEXT,
    paused INTEGER NOT NULL DEFAULT 0,
    delivered_seq INTEGER NOT NULL,
    pending_first INTEGER,
    pending_last INTEGER,
    last_error TEXT,
    last_error_ms INTEGER,
    failing_since_ms INTEGER,
    last_delivery_ms INTEGER,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (org_num, name)
) WITHOUT ROWID;
"#,
    r#"
CREATE TABLE leases (name TEXT PRIMARY KEY, owner TEXT NOT NULL, until_ms INTEGER NOT NULL) WITHOUT ROWID;
"#,
    r#"
CREATE TABLE ids (h INTEGER PRIMARY KEY, h2 INTEGER NOT NULL, rid INTEGER NOT NULL);
CREATE TABLE ids_recent (rid INTEGER PRIMARY KEY, h INTEGER NOT NULL, h2 INTEGER NOT NULL);
CREATE TABLE ids_collided (
    org_num INTEGER NOT NULL, id TEXT NOT NULL, rid INTEGER NOT NULL, PRIMARY KEY (org_num, id)
) WITHOUT ROWID;
ALTER TABLE postings RENAME TO postings_v1;
CREATE TABLE postings (
    blk INTEGER NOT NULL, term INTEGER NOT NULL, first_rid INTEGER NOT NULL, rids BLOB NOT NULL,
    PRIMARY KEY (blk, term, first_rid)
) WITHOUT ROWID;
"#,
    r#"
CREATE TABLE ids_pending (rid INTEGER PRIMARY KEY, claims BLOB NOT NULL);
INSERT INTO ids (h, h2, rid) SELECT h, h2, rid FROM ids_recent ORDER BY h;
DROP TABLE ids_recent;
"#,
    r#"
CREATE TABLE postings_pending (first_rid INTEGER PRIMARY KEY, terms BLOB NOT NULL);
"#,
    // Version 9 only rewrites the pending postings' blobs (`convert_v9`).
    "",
    r#"
CREATE TABLE postings_buckets (
    blk INTEGER NOT NULL, bucket INTEGER NOT NULL, first_rid INTEGER NOT NULL, terms BLOB NOT NULL,
    PRIMARY KEY (blk, bucket, first_rid)
) WITHOUT ROWID;
"#,
    r#"
CREATE TABLE sealed (first_rid INTEGER PRIMARY KEY, version INTEGER NOT NULL, live INTEGER NOT NULL, live_from_ms INTEGER, data BLOB NOT NULL);
CREATE TABLE sealed_upto (org_num INTEGER PRIMARY KEY, next_seq INTEGER NOT NULL);
"#,
    r#"
CREATE TABLE sealed_more (rid INTEGER PRIMARY KEY, data BLOB NOT NULL);
"#,
    // Nodes below a tile's root in sealed tiles are hashed from the frame's leaves
    // when needed (`mod.rs`, `SEALED_LEVEL`); sealing no longer keeps them.
    r#"
DELETE FROM nodes WHERE level >= 4 AND level < 8 AND ((idx + 1) << level) <
    coalesce((SELECT next_seq FROM sealed_upto s WHERE s.org_num = nodes.org_num), 1);
"#,
    // Merged client-id claims packed in sorted chunks; `convert_ids` moves `ids` there.
    r#"
CREATE TABLE id_chunks (first_h INTEGER PRIMARY KEY, n INTEGER NOT NULL, data BLOB NOT NULL);
"#,
    // Version 15 only rewrites the bucket rows' blobs (`postings::convert_v15`).
    "",
];

/// The schema version whose script is followed by `convert_v6`.
const BLOCKED_POSTINGS: usize = 6;
/// The schema version whose script is followed by `postings::convert_v9`.
const INDEXED_PENDING: usize = 9;
/// The schema version whose script is followed by `id_chunks::convert_ids`.
const CHUNKED_IDS: usize = 14;
/// The schema version whose script is followed by `postings::convert_v15`.
const PACKED_BUCKETS: usize = 15;

pub fn migrate(conn: &mut Connection) -> Result<()> {
    migrate_to(conn, MIGRATIONS.len())
}

fn migrate_to(conn: &mut Connection, target: usize) -> Result<()> {
    let version: usize = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .op("read schema version")?;
    if version > MIGRATIONS.len() {
        return Err(crate::StoreError::Corrupt(format!(
            "database schema version {version} is newer than this auditrail ({})",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().take(target).skip(version) {
        let tx = conn.transaction().op("begin migration")?;
        tx.execute_batch(sql).op("migrate schema")?;
        if i + 1 == BLOCKED_POSTINGS {
            convert_v6(&tx)?;
        }
        if i + 1 == INDEXED_PENDING {
            super::postings::convert_v9(&tx)?;
        }
        if i + 1 == CHUNKED_IDS {
            super::id_chunks::convert_ids(&tx)?;
        }
        if i + 1 == PACKED_BUCKETS {
            super::postings::convert_v15(&tx)?;
        }
        tx.pragma_update(None, "user_version", i + 1)
            .op("set schema version")?;
        tx.commit().op("commit migration")?;
    }
    Ok(())
}

/// Moves version 5's postings and client-id claims into version 6's tables.
fn convert_v6(tx: &rusqlite::Transaction<'_>) -> Result<()> {
    use rusqlite::params;
    {
        let mut read = tx
            .prepare("SELECT term, first_rid, rids FROM postings_v1")
            .op("read old postings")?;
        let mut ins = tx
            .prepare("INSERT INTO postings (blk, term, first_rid, rids) VALUES (?1, ?2, ?3, ?4)")
            .op("prepare postings")?;
        let mut rows = read.query([]).op("read old postings")?;
        while let Some(r) = rows.next().op("read old postings")? {
            let (term, first, blob): (i64, i64, Vec<u8>) = (
                r.get(0).op("old postings")?,
                r.get(1).op("old postings")?,
                r.get(2).op("old postings")?,
            );
            let rids = crate::terms::decode_rids(first, &blob);
            for run in by_block(&rids) {
                ins.execute(params![
                    block_of(run[0]),
                    term,
                    run[0],
                    crate::terms::encode_rids(run)
                ])
                .op("convert postings")?;
            }
        }
    }
    {
        // Into `ids` as it was then (version 14 packs it into chunks).
        let mut read = tx
            .prepare("SELECT org_num, id, seq FROM idem ORDER BY org_num, seq")
            .op("read old ids")?;
        let mut ins = tx
            .prepare("INSERT OR IGNORE INTO ids (h, h2, rid) VALUES (?1, ?2, ?3)")
            .op("prepare ids")?;
        let mut collided = tx
            .prepare("INSERT INTO ids_collided (org_num, id, rid) VALUES (?1, ?2, ?3)")
            .op("prepare ids")?;
        let mut rows = read.query([]).op("read old ids")?;
        while let Some(r) = rows.next().op("read old ids")? {
            let (org, id, seq): (i64, String, i64) = (
                r.get(0).op("old ids")?,
                r.get(1).op("old ids")?,
                r.get(2).op("old ids")?,
            );
            let (h, h2) = super::idem::id_key(org, &id);
            let at = rid(org, seq as u64);
            // Ids are unique in `idem`: a key taken is another id's (see `idem.rs`).
            if ins.execute(params![h, h2, at]).op("convert ids")? == 0 {
                collided.execute(params![org, id, at]).op("convert ids")?;
            }
        }
    }
    tx.execute_batch("DROP TABLE postings_v1; DROP TABLE idem;")
        .op("drop old tables")?;
    Ok(())
}

/// The page size of a new database. SQLite's default is 4 KiB; with 16 KiB a commit of
/// many events touches and logs a quarter as many pages (B-tree splits, WAL frame
/// headers and checksums, page-cache lookups). Measured on the same machine, interleaved:
/// bulk load 145k/171k → 193k/191k events/s, HTTP batches 95k/132k → 191k/171k, singles
/// unchanged (see BENCHMARKS.md). A database made with another size keeps it: SQLite
/// cannot change it once in WAL mode.
pub const PAGE_SIZE: i64 = 16_384;
/// The WAL length, in bytes, beyond which the writer checkpoints it itself (and the size
/// SQLite truncates it back to). Under a load that never pauses the WAL starts over only
/// after such a checkpoint, which copies what was committed while the checkpointer last
/// ran and syncs the database file: ~50 ms on the writer's thread each time. At 64 MiB
/// that came every ~0.4 s of sustained batches; at 256 MiB a quarter as often, and the
/// batches ran 5% faster (BENCHMARKS.md). The disk holds up to this much more.
pub const WAL_CAP_BYTES: i64 = 256 << 20;
/// The most frames the WAL may hold before the writer checkpoints it, whatever the page
/// size: a page is looked up in the WAL index one block of 4,096 frames after another, so
/// a database made with 4 KiB pages (the size before 16 KiB) keeps a cap of 64 MiB,
/// which measured faster for it than 256 MB.
pub const WAL_CAP_FRAMES: i64 = 16_384;

/// How the database file takes its commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Journal {
    /// A write-ahead log, as a running service needs: readers never wait for the writer,
    /// and the writer never waits for them.
    Wal,
    /// A rollback journal, for a bulk load by the one process that holds the data dir
    /// (`auditrail ingest`). Pages appended at the end of the file (almost all a load
    /// writes) go straight into it, where in WAL mode each is written to the log and
    /// again by a checkpoint; only the pages a commit changes in place are copied to the
    /// journal first. A reader blocks the writer's commit while it reads, so it is for a
    /// process with no other readers. Measured: a load of 1M events wrote 46% fewer
    /// bytes and ran 17–36% faster (BENCHMARKS.md, "Bulk load through a rollback
    /// journal").
    Rollback,
}

impl Journal {
    fn mode(self) -> &'static str {
        match self {
            Journal::Wal => "wal",
            Journal::Rollback => "delete",
        }
    }
}

/// Puts the database file in `journal`'s mode; it stays in another (said in a warning)
/// only if some other connection is using the file.
pub fn set_journal(conn: &Connection, journal: Journal) -> Result<()> {
    // Leaving WAL needs the file to itself, and SQLite refuses at once (no busy wait)
    // while another connection is open: one a store just closed may still be finishing
    // (its client-id filter's scan). The switch is tried again for up to 10 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let sql = format!("PRAGMA journal_mode={}", journal.mode());
    let mode: String = loop {
        match conn.query_row(&sql, [], |r| r.get(0)) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => break r.op("set journal mode")?,
        }
    };
    if mode.eq_ignore_ascii_case(journal.mode()) {
        tracing::debug!(mode, "database journal mode set");
    } else {
        tracing::warn!(
            wanted = journal.mode(),
            mode,
            "the database stays in its journal mode: another connection is using it"
        );
    }
    Ok(())
}

/// Settings every connection gets: `writer` is the journal the writer's connection puts
/// the file in, `None` for a reader (readers take the file's mode as the writer, opened
/// first, left it). `synchronous=FULL` makes each commit fsync the WAL (or the rollback
/// journal and the database): an acknowledged event survives power loss.
pub fn configure(conn: &Connection, writer: Option<Journal>) -> Result<()> {
    // A writer in rollback mode waits for readers to finish before it commits; its
    // load has no readers but the client-id filter's scan (see `idem_filter.rs`),
    // which may take seconds on a large log.
    let busy = match writer {
        Some(Journal::Rollback) => std::time::Duration::from_secs(600),
        _ => std::time::Duration::from_secs(10),
    };
    conn.busy_timeout(busy).op("set busy timeout")?;
    if let Some(journal) = writer {
        // Take effect only on a database with no table yet (before WAL is on). Pages
        // that sealing empties go back to the file system (see `seal.rs`).
        conn.pragma_update(None, "page_size", PAGE_SIZE)
            .op("set page size")?;
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
            .op("set auto vacuum")?;
        set_journal(conn, journal)?;
        if journal == Journal::Rollback {
            // A transaction larger than the page cache keeps its pages in memory rather
            // than writing them into the file early, which would need the file to
            // itself (no reader) in the middle of the transaction.
            conn.pragma_update(None, "cache_spill", false)
                .op("set cache spill")?;
        }
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .op("set synchronous")?;
    if writer.is_some() {
        conn.pragma_update(None, "cache_size", -65536)
            .op("set cache size")?;
        // Checkpoints run on their own thread (see `checkpoint.rs`), which lets the WAL
        // grow to about its cap under load; once it starts over it is reused in place
        // (new file blocks cost the kernel far more than rewriting cached ones), and cut
        // back only if something made it grow past this.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .op("set autocheckpoint")?;
        conn.pragma_update(None, "journal_size_limit", WAL_CAP_BYTES)
            .op("set journal size limit")?;
    } else {
        conn.pragma_update(None, "query_only", true)
            .op("set query_only")?;
        conn.pragma_update(None, "cache_size", -16384)
            .op("set cache size")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::terms::{decode_rids, encode_rids};
    use rusqlite::params;

    /// How many of the (quoted, comma-separated) names are tables of `c`.
    fn tables_named(c: &Connection, names: &str) -> i64 {
        c.query_row(
            &format!("SELECT count(*) FROM sqlite_master WHERE name IN ({names})"),
            [],
            |r| r.get(0),
        )
        .unwrap()
    }

    #[test]
    fn blocks_split_runs() {
        let rids = [
            rid(1, 65_534),
            rid(1, 65_535),
            rid(1, 65_536),
            rid(1, 200_000),
        ];
        let runs: Vec<&[i64]> = by_block(&rids).collect();
        assert_eq!(runs, vec![&rids[..2], &rids[2..3], &rids[3..]]);
        assert_eq!(block_of(rid(1, 65_536)), block_of(rid(1, 0)) + 1);
    }

    #[test]
    fn version_6_recent_claims_are_merged_into_ids() {
        use super::super::idem::{Claim, Claims, id_key};
        let d = tempfile::tempdir().unwrap();
        let mut c = Connection::open(d.path().join("old.db")).unwrap();
        migrate_to(&mut c, 6).unwrap();
        let (h, h2) = id_key(1, "kept");
        c.execute(
            "INSERT INTO ids_recent (rid, h, h2) VALUES (?1, ?2, ?3)",
            params![rid(1, 3), h, h2],
        )
        .unwrap();
        migrate(&mut c).unwrap();
        let tx = c.transaction().unwrap();
        let mut claims = Claims::new();
        assert_eq!(
            claims.claim(&tx, 1, "kept", rid(1, 9)).unwrap(),
            Claim::Seen(rid(1, 3))
        );
        assert_eq!(claims.claim(&tx, 1, "new", rid(1, 10)).unwrap(), Claim::New);
        let gone = tables_named(&tx, "'ids_recent'");
        assert_eq!(gone, 0);
    }

    /// Version 15 rewrites the bucket rows: each term's rids are read as before.
    #[test]
    fn version_15_bucket_rows_are_rewritten_and_still_found() {
        use super::super::postings::merged_rids;
        let d = tempfile::tempdir().unwrap();
        let mut c = Connection::open(d.path().join("old.db")).unwrap();
        migrate_to(&mut c, 14).unwrap();
        let first = rid(1, 10);
        let (a, b) = (3i64 << 32, 4i64 << 32 | 9);
        let (ra, rb) = ([first, first + 7], [first + 3]);
        let old = super::super::pending_blob::pack(first, &[(a, &ra), (b, &rb)]);
        c.execute(
            "INSERT INTO postings_buckets (blk, bucket, first_rid, terms) VALUES (?1, 0, ?2, ?3)",
            params![block_of(first), first, old],
        )
        .unwrap();
        migrate(&mut c).unwrap();
        assert_eq!(merged_rids(&c, block_of(first), a).unwrap(), ra);
        assert_eq!(merged_rids(&c, block_of(first), b).unwrap(), rb);
        let now: Vec<u8> = c
            .query_row("SELECT terms FROM postings_buckets", [], |r| r.get(0))
            .unwrap();
        assert!(now.len() < old.len() / 3, "{} of {}", now.len(), old.len());
    }

    /// Version 14 packs the merged claims of `ids` into chunks: each is found as it was.
    #[test]
    fn version_14_packs_every_merged_claim() {
        use super::super::id_chunks;
        let d = tempfile::tempdir().unwrap();
        let mut c = Connection::open(d.path().join("old.db")).unwrap();
        migrate_to(&mut c, 13).unwrap();
        let claim = |i: i64| {
            let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as i64);
            (h, h ^ 0x55, rid(1 + i % 3, (i * 7 % 100_000) as u64))
        };
        let n = 70_000;
        {
            let tx = c.transaction().unwrap();
            let mut ins = tx
                .prepare("INSERT INTO ids (h, h2, rid) VALUES (?1, ?2, ?3)")
                .unwrap();
            for i in 0..n {
                let (h, h2, r) = claim(i);
                ins.execute(params![h, h2, r]).unwrap();
            }
            drop(ins);
            tx.commit().unwrap();
        }
        migrate(&mut c).unwrap();
        assert_eq!(tables_named(&c, "'ids'"), 0, "the old table is gone");
        assert_eq!(id_chunks::count(&c).unwrap(), n);
        for i in 0..n {
            let (h, h2, r) = claim(i);
            assert_eq!(
                id_chunks::lookup(&c, h).unwrap(),
                Some((id_chunks::Check::Full(h2), r)),
                "claim {i}"
            );
        }
    }

    /// Version 13 drops the nodes below sealed tiles' roots and keeps every other node.
    #[test]
    fn version_13_drops_the_nodes_within_sealed_tiles() {
        let d = tempfile::tempdir().unwrap();
        let mut c = Connection::open(d.path().join("old.db")).unwrap();
        migrate_to(&mut c, 12).unwrap();
        // Org 1 sealed up to seq 512 (two tiles), org 2 nothing; nodes of levels 3 to 9.
        c.execute(
            "INSERT INTO sealed_upto (org_num, next_seq) VALUES (1, 513)",
            [],
        )
        .unwrap();
        for org in [1i64, 2] {
            for level in 3..10u32 {
                for idx in 0..(1024u64 >> level) {
                    c.execute(
                        "INSERT INTO nodes (org_num, level, idx, hash) VALUES (?1, ?2, ?3, x'00')",
                        params![org, level, idx as i64],
                    )
                    .unwrap();
                }
            }
        }
        migrate(&mut c).unwrap();
        let left = |org: i64, level: u32| -> Vec<i64> {
            let mut q = c
                .prepare("SELECT idx FROM nodes WHERE org_num = ?1 AND level = ?2 ORDER BY idx")
                .unwrap();
            q.query_map(params![org, level], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        for level in 3..10u32 {
            let all: Vec<i64> = (0..(1024i64 >> level)).collect();
            assert_eq!(left(2, level), all, "org 2 level {level}");
            let kept: Vec<i64> = if (4..8).contains(&level) {
                all.into_iter().filter(|i| (i + 1) << level > 512).collect()
            } else {
                all
            };
            assert_eq!(left(1, level), kept, "org 1 level {level}");
        }
    }

    #[test]
    fn version_8_pending_postings_are_converted_and_still_found() {
        use super::super::postings::pending_rids;
        let d = tempfile::tempdir().unwrap();
        let mut c = Connection::open(d.path().join("old.db")).unwrap();
        migrate_to(&mut c, 8).unwrap();
        // Version 8's blob: term 42 with rids first and first + 300; term -1 with first + 1.
        let first = rid(2, 10);
        let mut old = Vec::new();
        old.extend_from_slice(&42i64.to_le_bytes());
        old.extend_from_slice(&[2, 0, 0xac, 0x02]);
        old.extend_from_slice(&(-1i64).to_le_bytes());
        old.extend_from_slice(&[1, 1]);
        c.execute(
            "INSERT INTO postings_pending (first_rid, terms) VALUES (?1, ?2)",
            params![first, old],
        )
        .unwrap();
        migrate(&mut c).unwrap();
        assert_eq!(pending_rids(&c, 2, 42).unwrap(), vec![first, first + 300]);
        assert_eq!(pending_rids(&c, 2, -1).unwrap(), vec![first + 1]);
        assert!(pending_rids(&c, 2, 7).unwrap().is_empty());
        let version: usize = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len());
    }

    #[test]
    fn version_5_postings_and_ids_are_converted() {
        let d = tempfile::tempdir().unwrap();
        let mut c = Connection::open(d.path().join("old.db")).unwrap();
        migrate_to(&mut c, 5).unwrap();
        let rids = [rid(1, 65_535), rid(1, 65_536), rid(1, 65_540)];
        c.execute(
            "INSERT INTO postings (term, first_rid, rids) VALUES (42, ?1, ?2)",
            params![rids[0], encode_rids(&rids)],
        )
        .unwrap();
        c.execute_batch(
            "INSERT INTO idem (org_num, id, seq) VALUES (1, 'a', 5), (1, 'b', 6), (2, 'a', 1);",
        )
        .unwrap();
        migrate(&mut c).unwrap();
        let mut st = c
            .prepare("SELECT blk, term, first_rid, rids FROM postings ORDER BY blk")
            .unwrap();
        let rows: Vec<(i64, i64, Vec<i64>)> = st
            .query_map([], |r| {
                let first: i64 = r.get(2)?;
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    decode_rids(first, &r.get::<_, Vec<u8>>(3)?),
                ))
            })
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        drop(st);
        assert_eq!(
            rows,
            vec![
                (block_of(rids[0]), 42, vec![rids[0]]),
                (block_of(rids[1]), 42, vec![rids[1], rids[2]]),
            ]
        );
        let tx = c.transaction().unwrap();
        let mut claims = super::super::idem::Claims::new();
        use super::super::idem::Claim;
        assert_eq!(
            claims.claim(&tx, 1, "a", rid(1, 9)).unwrap(),
            Claim::Seen(rid(1, 5))
        );
        assert_eq!(
            claims.claim(&tx, 1, "b", rid(1, 9)).unwrap(),
            Claim::Seen(rid(1, 6))
        );
        assert_eq!(
            claims.claim(&tx, 2, "a", rid(2, 9)).unwrap(),
            Claim::Seen(rid(2, 1))
        );
        assert_eq!(claims.claim(&tx, 2, "b", rid(2, 9)).unwrap(), Claim::New);
        let old = tables_named(&tx, "'idem', 'postings_v1'");
        assert_eq!(old, 0, "the old tables are gone");
    }
}
