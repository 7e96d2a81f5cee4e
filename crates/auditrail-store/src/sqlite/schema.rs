//! The SQLite schema and its migrations (by `PRAGMA user_version`).
//!
//! Layout, chosen for append speed:
//! - `events` is a rowid table whose rowid is `org_num << 40 | seq`, so each org's log is
//!   one contiguous, append-only key range: inserting never splits a page in the middle.
//! - `postings` is the only search index. Each group commit writes one row per distinct
//!   term it saw (a 64-bit hash of org, field and value, see `terms.rs`) holding the
//!   delta-encoded rids of that commit's events with the term. Index maintenance is one
//!   row per distinct term per commit rather than one row per event per field, which is
//!   what makes secondary indexes the dominant cost of the naive layout.
//! - `idem` holds client-supplied ids only; generated ids are unique by construction.
//! - `catalogs` holds every version of each org's catalog; `orgs.catalog` is unused
//!   since schema version 2 (the current catalog is the highest version).
//! - `exports` holds export jobs with their lease (owner, until) and results.
//! - `nodes` holds every complete Merkle subtree above the leaves, so roots and proofs
//!   take O(log n) point reads; leaves are `events.leaf`.
//! - `leases` names background work and who runs it until when (see `Store::acquire_lease`).

use rusqlite::Connection;

use crate::Result;
use crate::error::Context;

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
];

/// Bits of a rowid that hold the seq; the org number sits above them.
pub const SEQ_BITS: u32 = 40;
pub const MAX_SEQ: u64 = (1 << SEQ_BITS) - 1;

pub fn rid(org_num: i64, seq: u64) -> i64 {
    (org_num << SEQ_BITS) | (seq as i64)
}

pub fn seq_of(rid: i64) -> u64 {
    (rid as u64) & MAX_SEQ
}

pub fn migrate(conn: &mut Connection) -> Result<()> {
    let version: usize = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .op("read schema version")?;
    if version > MIGRATIONS.len() {
        return Err(crate::StoreError::Corrupt(format!(
            "database schema version {version} is newer than this auditrail ({})",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction().op("begin migration")?;
        tx.execute_batch(sql).op("migrate schema")?;
        tx.pragma_update(None, "user_version", i + 1)
            .op("set schema version")?;
        tx.commit().op("commit migration")?;
    }
    Ok(())
}

/// Settings every connection gets. `synchronous=FULL` makes each commit fsync the WAL:
/// an acknowledged event survives power loss.
pub fn configure(conn: &Connection, writer: bool) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .op("set busy timeout")?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .op("enable WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")
        .op("set synchronous")?;
    if writer {
        conn.pragma_update(None, "cache_size", -65536)
            .op("set cache size")?;
        conn.pragma_update(None, "wal_autocheckpoint", 4000)
            .op("set autocheckpoint")?;
    } else {
        conn.pragma_update(None, "query_only", true)
            .op("set query_only")?;
        conn.pragma_update(None, "cache_size", -16384)
            .op("set cache size")?;
    }
    Ok(())
}
