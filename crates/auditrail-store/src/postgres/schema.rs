//! The PostgreSQL schema and its migrations (by the row in `auditrail_schema`).
//!
//! Layout:
//! - `orgs` carries each org's log head: `tree_size`, `frontier` (the hashes of
//!   `frontier_ids(tree_size)`, 32 bytes each) and `last_received_ms`. Appending to an org
//!   locks its row (`SELECT ... FOR UPDATE`) for the length of one transaction: that row
//!   lock is what serializes every node's writers into one gapless seq order and one tree.
//! - `events` is partitioned by `received_ms`, one partition per calendar month (UTC),
//!   created on demand by the writer, so retention drops whole partitions (see
//!   `retention.rs`; their leaves are kept in `purged_leaves`). Its indexes
//!   serve the search filters: `(org_num, seq)` for paging and the tree's leaves, one
//!   `(org_num, field, seq)` per selective field, `(org_num, occurred_us)` for time ranges.
//! - `idem_keys` holds client-supplied ids, as the first 16 bytes of their SHA-256 (a
//!   partitioned table cannot hold a unique index that leaves out the partition key).
//! - `nodes` holds complete subtrees from level 4 up, as on SQLite.
//! - `sealed` holds sealed segments: complete tiles of old events compressed into one
//!   frame each (see `seal.rs`); `sealed_upto` says where each org's rows begin.
//! - `leases` names background work and who runs it until when; export jobs carry
//!   their own lease columns and are claimed with `FOR UPDATE SKIP LOCKED`.

use tokio_postgres::Client;

use super::Pg;
use crate::Result;

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE orgs (
    num BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    strict BOOLEAN NOT NULL,
    retention_days INTEGER,
    created_at TEXT NOT NULL,
    tree_size BIGINT NOT NULL DEFAULT 0,
    frontier BYTEA NOT NULL DEFAULT ''::bytea,
    last_received_ms BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE keys (
    id TEXT PRIMARY KEY,
    org_num BIGINT NOT NULL REFERENCES orgs(num),
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    secret_hash BYTEA NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE INDEX keys_by_org ON keys (org_num, created_at);
CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE events (
    org_num BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    occurred_us BIGINT NOT NULL,
    received_ms BIGINT NOT NULL,
    action TEXT NOT NULL,
    actor_id TEXT,
    resource_type TEXT,
    resource_id TEXT,
    scope_id TEXT,
    leaf BYTEA NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (org_num, seq, received_ms)
) PARTITION BY RANGE (received_ms);
CREATE INDEX events_by_actor ON events (org_num, actor_id, seq);
CREATE INDEX events_by_action ON events (org_num, action, seq);
CREATE INDEX events_by_resource ON events (org_num, resource_id, seq);
CREATE INDEX events_by_scope ON events (org_num, scope_id, seq);
CREATE INDEX events_by_time ON events (org_num, occurred_us);
CREATE TABLE idem (
    org_num BIGINT NOT NULL,
    id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (org_num, id)
);
CREATE TABLE nodes (
    org_num BIGINT NOT NULL,
    level INTEGER NOT NULL,
    idx BIGINT NOT NULL,
    hash BYTEA NOT NULL,
    PRIMARY KEY (org_num, level, idx)
);
CREATE TABLE checkpoints (
    org_num BIGINT NOT NULL,
    size BIGINT NOT NULL,
    note TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (org_num, size)
);
CREATE TABLE catalogs (
    org_num BIGINT NOT NULL REFERENCES orgs(num),
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    document TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (org_num, version)
);
CREATE TABLE exports (
    id TEXT PRIMARY KEY,
    org_num BIGINT NOT NULL REFERENCES orgs(num),
    status TEXT NOT NULL,
    request TEXT NOT NULL,
    requester TEXT NOT NULL,
    row_count BIGINT NOT NULL DEFAULT 0,
    bytes BIGINT,
    sha256 TEXT,
    error TEXT,
    checkpoint_size BIGINT,
    checkpoint TEXT,
    file TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_ms BIGINT NOT NULL,
    started_ms BIGINT,
    completed_ms BIGINT,
    expires_ms BIGINT,
    lease_owner TEXT,
    lease_until BIGINT
);
CREATE INDEX exports_by_org ON exports (org_num, created_ms);
CREATE INDEX exports_by_status ON exports (status, created_ms);
CREATE TABLE destinations (
    org_num BIGINT NOT NULL REFERENCES orgs(num),
    name TEXT NOT NULL,
    config TEXT NOT NULL,
    credentials TEXT,
    paused BOOLEAN NOT NULL DEFAULT false,
    delivered_seq BIGINT NOT NULL,
    pending_first BIGINT,
    pending_last BIGINT,
    last_error TEXT,
    last_error_ms BIGINT,
    failing_since_ms BIGINT,
    last_delivery_ms BIGINT,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (org_num, name)
);
CREATE TABLE leases (name TEXT PRIMARY KEY, owner TEXT NOT NULL, until_ms BIGINT NOT NULL);
"#,
    r#"
-- Retention: a purged event keeps its seq, times and leaf; its body and searchable
-- columns become NULL.
ALTER TABLE events ALTER COLUMN body DROP NOT NULL, ALTER COLUMN action DROP NOT NULL;
"#,
    r#"
-- Retention by watermark and dropped partitions: an org's events up to `purged_seq` are
-- purged (no query returns them); reclaiming drops or deletes their rows once their
-- leaves are packed into `purged_leaves`. Version 2's purged rows (NULL bodies) are a
-- prefix of their org's seqs, so the watermark starts after them.
ALTER TABLE orgs ADD COLUMN purged_seq BIGINT NOT NULL DEFAULT 0;
UPDATE orgs o SET purged_seq = COALESCE(
    (SELECT max(seq) FROM events e WHERE e.org_num = o.num AND e.body IS NULL), 0);
CREATE TABLE purged_leaves (
    org_num BIGINT NOT NULL,
    first_seq BIGINT NOT NULL,
    leaves BYTEA NOT NULL,
    PRIMARY KEY (org_num, first_seq)
);
ALTER TABLE purged_leaves ALTER COLUMN leaves SET STORAGE EXTERNAL;
"#,
    r#"
-- Sealed segments (see seal.rs): one zstd frame per complete tile of 256 events, with
-- the time bounds and the 32-bit index terms of its events so search can skip it.
CREATE TABLE sealed (
    org_num BIGINT NOT NULL,
    first_seq BIGINT NOT NULL,
    version INTEGER NOT NULL,
    min_us BIGINT NOT NULL,
    max_us BIGINT NOT NULL,
    live INTEGER NOT NULL,
    terms INTEGER[] NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (org_num, first_seq)
);
-- Frames are compressed already, and the terms are hashes: neither compresses further.
ALTER TABLE sealed ALTER COLUMN data SET STORAGE EXTERNAL, ALTER COLUMN terms SET STORAGE EXTERNAL;
CREATE INDEX sealed_by_term ON sealed USING gin (terms);
CREATE TABLE sealed_upto (org_num BIGINT PRIMARY KEY, next_seq BIGINT NOT NULL);
"#,
    r#"
-- Client ids are kept as the first 16 bytes of their SHA-256, in a uuid column (16 bytes
-- with no length header): about a third of the row and index entry a 32-character id took.
CREATE TABLE idem_keys (
    org_num BIGINT NOT NULL,
    key UUID NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (org_num, key)
);
INSERT INTO idem_keys (org_num, key, seq)
    SELECT org_num, encode(substring(sha256(convert_to(id, 'UTF8')) FROM 1 FOR 16), 'hex')::uuid, seq
    FROM idem;
DROP TABLE idem;
"#,
    r#"
-- A frame's row keeps in the table only what a search's candidate list reads: its terms
-- (~1.8 KB) and data go out of line. About 80 frames' rows share a page, not 4, so the
-- list visits a tenth of the pages (0.39 against 1.46 ms at 1M events). The update
-- moves the frames sealed before; their data stays where it is.
-- Sealing adds frames in the background: their terms go straight into the index, not
-- into a pending list that every search would scan until a vacuum merged it.
ALTER TABLE sealed SET (toast_tuple_target = 128);
ALTER INDEX sealed_by_term SET (fastupdate = off);
UPDATE sealed SET terms = terms;
"#,
];

/// Any fixed number: every node takes this advisory lock while migrating, so two nodes
/// starting at once do not both run the same migration.
const MIGRATION_LOCK: i64 = 0x6175_6469_7472_6c01;

pub(super) async fn migrate(client: &mut Client) -> Result<()> {
    let tx = client.transaction().await.pg("begin migration")?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .pg("lock for migration")?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS auditrail_schema (version INTEGER NOT NULL)")
        .await
        .pg("create schema table")?;
    let version: Option<i32> = tx
        .query_opt("SELECT version FROM auditrail_schema", &[])
        .await
        .pg("read schema version")?
        .map(|r| r.get(0));
    let version = version.unwrap_or(0).max(0) as usize;
    if version > MIGRATIONS.len() {
        return Err(crate::StoreError::Corrupt(format!(
            "database schema version {version} is newer than this auditrail ({})",
            MIGRATIONS.len()
        )));
    }
    for sql in &MIGRATIONS[version..] {
        tx.batch_execute(sql).await.pg("migrate schema")?;
    }
    let latest = MIGRATIONS.len() as i32;
    tx.execute("DELETE FROM auditrail_schema", &[])
        .await
        .pg("set schema version")?;
    tx.execute(
        "INSERT INTO auditrail_schema (version) VALUES ($1)",
        &[&latest],
    )
    .await
    .pg("set schema version")?;
    tx.commit().await.pg("commit migration")
}

/// The month partition holding `received_ms`: its name and `[from, to)` in ms.
pub(super) fn partition_of(received_ms: i64) -> (String, i64, i64) {
    use chrono::{Datelike, TimeZone, Utc};
    let t = Utc
        .timestamp_millis_opt(received_ms)
        .single()
        .unwrap_or_default();
    let (y, m) = (t.year(), t.month());
    let start = |y: i32, m: u32| {
        Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0)
            .single()
            .map_or(0, |d| d.timestamp_millis())
    };
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    (format!("events_y{y:04}m{m:02}"), start(y, m), start(ny, nm))
}

/// The `[from, to)` bounds of the partition `name` (as `partition_of` names them).
pub(super) fn partition_named(name: &str) -> Option<(String, i64, i64)> {
    let rest = name.strip_prefix("events_y")?;
    let (y, m) = rest.split_once('m')?;
    let (y, m): (i32, u32) = (y.parse().ok()?, m.parse().ok()?);
    let start = chrono::NaiveDate::from_ymd_opt(y, m, 1)?
        .and_hms_opt(0, 0, 0)?
        .and_utc()
        .timestamp_millis();
    let found = partition_of(start);
    (found.0 == name).then_some(found)
}

/// Creates the partition for `received_ms` unless it exists. Two nodes may race to
/// create it; the loser finds it there.
pub(super) async fn ensure_partition(client: &Client, received_ms: i64) -> Result<()> {
    let (name, from, to) = partition_of(received_ms);
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS {name} PARTITION OF events FOR VALUES FROM ({from}) TO ({to})"
    );
    if let Err(e) = client.batch_execute(&sql).await {
        let exists: Option<String> = client
            .query_one("SELECT to_regclass($1)::text", &[&name])
            .await
            .pg("look up partition")?
            .get(0);
        if exists.is_none() {
            return Err(e).pg("create partition");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{partition_named, partition_of};

    #[test]
    fn partitions_are_calendar_months() {
        // 2026-11-21T10:00:00Z
        let (name, from, to) = partition_of(1_795_255_200_000);
        assert_eq!(name, "events_y2026m11");
        assert_eq!(from, 1_793_491_200_000); // 2026-11-01
        assert_eq!(to, 1_796_083_200_000); // 2026-12-01
        let (name, _, to) = partition_of(1_796_083_199_999);
        assert_eq!((name.as_str(), to), ("events_y2026m11", 1_796_083_200_000));
        assert_eq!(partition_of(1_798_761_600_000).0, "events_y2027m01");
        assert_eq!(
            partition_named("events_y2026m11"),
            Some(partition_of(1_795_255_200_000))
        );
        assert_eq!(partition_named("events_y2026m13"), None);
        assert_eq!(
            partition_named("events_y2026m1"),
            None,
            "not a name we make"
        );
        assert_eq!(partition_named("purged_leaves"), None);
    }
}
