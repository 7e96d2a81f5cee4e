//! The embedded SQLite backend: one database file in WAL mode under the data dir (a bulk
//! load, alone on the data dir, commits through a rollback journal instead: see
//! [`Journal`]), one writer thread (see `writer.rs`), a small pool of read connections.

mod bucket_blob;
mod by_key;
mod destinations;
mod exports;
mod id_chunks;
mod idem;
mod idem_filter;
mod pending_blob;
mod postings;
mod rid;
mod schema;
mod seal;
mod search;
mod wal_checkpointer;
mod writer;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use async_trait::async_trait;
use auditrail_core::merkle::{self, NodeId};
use auditrail_core::query::Filter;
use auditrail_core::{Hash, PreparedEvent};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, params};
use tokio::sync::{mpsc, oneshot};

pub use crate::CommitStats;
use rid::{MAX_SEQ, rid, seq_of};
pub use schema::Journal;
use writer::{Job, Writer};

use crate::error::Context;
use crate::queue::WriteQueue;
use crate::sql::{KEY_COLS, ORG_COLS, now_text};
use crate::{
    Accepted, Appending, CommitObserver, DeliveryUpdate, Destination, ExportJob, ExportOutcome,
    KeyRecord, NewCatalog, NewOrg, Org, Outcome, Page, PageRequest, Result, Role, SealCounts,
    Store, StoreError, StoredCatalog, StoredCheckpoint, TreeHead,
};

const DB_FILE: &str = "auditrail.db";
const LOCK_FILE: &str = "auditrail.lock";

pub struct SqliteStore {
    path: PathBuf,
    sender: Mutex<Option<mpsc::UnboundedSender<Job>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    queue: WriteQueue,
    readers: Mutex<Vec<Connection>>,
    org_nums: RwLock<HashMap<String, i64>>,
    frames: std::sync::Arc<crate::frame_cache::FrameCache>,
    /// Events sealed since the client-id claims were last compacted (see `seal`).
    sealed_since_compaction: std::sync::atomic::AtomicU64,
    _lock: File,
}

#[derive(Default)]
pub struct Options {
    /// Called after each group commit (for metrics).
    pub on_commit: Option<CommitObserver>,
    /// Opened by a bulk load (`auditrail ingest`) that is the data dir's only user: the
    /// database takes commits through a rollback journal while the store is open (see
    /// [`Journal::Rollback`]) and is back in WAL mode once it is closed. A load killed
    /// half way leaves the journal of its last, uncommitted batch, which the next open
    /// rolls back.
    pub bulk_load: bool,
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir`, taking its lock file: a second
    /// process opening the same data dir gets `Locked`.
    pub fn open(dir: &Path, options: Options) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)?;
        if lock.try_lock().is_err() {
            return Err(StoreError::Locked {
                path: dir.to_owned(),
                lock: lock_path,
            });
        }
        let path = dir.join(DB_FILE);
        let journal = if options.bulk_load {
            Journal::Rollback
        } else {
            Journal::Wal
        };
        let mut conn = Connection::open(&path).op("open database")?;
        schema::configure(&conn, Some(journal))?;
        schema::migrate(&mut conn)?;
        exports::void_leases(&conn)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let page_size: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .op("read page size")?;
        // A rollback journal has no log to copy into the database.
        let checkpointer = match journal {
            Journal::Wal => Some(wal_checkpointer::WalCheckpointer::start(
                &path,
                wal_checkpointer::Tuning::for_page_size(page_size),
            )?),
            Journal::Rollback => None,
        };
        let writer = Writer::new(conn, checkpointer, journal, options.on_commit);
        let handle = std::thread::Builder::new()
            .name("auditrail-writer".into())
            .spawn(move || writer.run(rx))?;
        Ok(Self {
            path,
            sender: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            queue: WriteQueue::new(),
            readers: Mutex::new(Vec::new()),
            org_nums: RwLock::new(HashMap::new()),
            frames: Default::default(),
            sealed_since_compaction: Default::default(),
            _lock: lock,
        })
    }

    /// Stops accepting writes, lets the writer commit everything queued, and waits.
    pub fn shutdown_writer(&self) {
        if let Ok(mut s) = self.sender.lock() {
            s.take();
        }
        let handle = self.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    /// Queues events for the writer: they are stored in the order queued, `after` and
    /// `outcome` as `Store::enqueue_after` says.
    async fn queue_append(
        &self,
        org: &str,
        events: Vec<PreparedEvent>,
        wait: bool,
        after: Option<Outcome>,
        outcome: Option<Outcome>,
    ) -> Result<Appending> {
        if events.is_empty() {
            if let Some(o) = &outcome {
                o.set(after.is_none_or(|a| a.stored() == Some(true)));
            }
            return Ok(Box::pin(std::future::ready(Ok(Vec::new()))));
        }
        let org_num = self.org_num(org).await?;
        let permit = self.queue.admit(events.len(), wait).await?;
        let keys = events
            .iter()
            .map(|e| writer::Keys::of(org_num, e))
            .collect();
        let (tx, rx) = oneshot::channel();
        // The writer takes jobs in the order they are sent: this is what orders batches.
        self.send(Job::Append(writer::Append {
            org_num,
            events,
            keys,
            after,
            outcome,
            reply: tx,
            _permit: permit,
        }))?;
        Ok(Box::pin(async move {
            let (result, spent) = rx
                .await
                .map_err(|_| StoreError::Unavailable("writer stopped".into()))?;
            drop(spent);
            result
        }))
    }

    fn send(&self, job: Job) -> Result<()> {
        let guard = self
            .sender
            .lock()
            .map_err(|_| StoreError::Unavailable("writer poisoned".into()))?;
        let sender = guard
            .as_ref()
            .ok_or_else(|| StoreError::Unavailable("store is shutting down".into()))?;
        sender
            .send(job)
            .map_err(|_| StoreError::Unavailable("writer stopped".into()))
    }

    /// Runs a write in its own transaction on the writer thread.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Exec(Box::new(move |t| {
            let r = f(t);
            let commit = r.is_ok();
            let finish: writer::Finisher = Box::new(move |commit_err| {
                let _ = tx.send(match commit_err {
                    Some(e) => Err(e),
                    None => r,
                });
            });
            (commit, finish)
        })))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("writer stopped".into()))?
    }

    /// Runs a read on a pooled connection, off the async threads.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let mut conn = match self.readers.lock().ok().and_then(|mut p| p.pop()) {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .op("open read connection")?;
                schema::configure(&c, None)?;
                c
            }
        };
        let (r, conn) = tokio::task::spawn_blocking(move || {
            let r = f(&mut conn);
            (r, conn)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("read task failed: {e}")))?;
        if let Ok(mut pool) = self.readers.lock()
            && pool.len() < 8
        {
            pool.push(conn);
        }
        r
    }

    async fn org_num(&self, org: &str) -> Result<i64> {
        if let Some(n) = self.org_nums.read().ok().and_then(|m| m.get(org).copied()) {
            return Ok(n);
        }
        let id = org.to_owned();
        let n = self
            .read(move |c| {
                c.query_row("SELECT num FROM orgs WHERE id = ?1", [&id], |r| {
                    r.get::<_, i64>(0)
                })
                .optional()
                .op("find org")
            })
            .await?
            .ok_or(StoreError::NotFound { what: "org" })?;
        if let Ok(mut m) = self.org_nums.write() {
            m.insert(org.to_owned(), n);
        }
        Ok(n)
    }
}

/// Bytes the store's files in data dir `dir` take (database, WAL, rollback journal).
pub fn disk_bytes(dir: &Path) -> u64 {
    ["", "-wal", "-journal"]
        .iter()
        .filter_map(|suffix| std::fs::metadata(dir.join(format!("{DB_FILE}{suffix}"))).ok())
        .map(|m| m.len())
        .sum()
}

/// Events sealed, at least, before the claims are compacted again.
const COMPACT_AFTER: u64 = 65_536;
/// ... and at least one for every this many merged claims: a compaction reads every
/// chunk, so it waits longer as they grow, and costs each sealed event about the same.
const CLAIMS_PER_COMPACTED_EVENT: u64 = 8;

impl SqliteStore {
    /// Gives the emptied pages back (the file has `auto_vacuum = INCREMENTAL` unless it
    /// predates it; then they are reused by later writes).
    async fn vacuum(&self) -> Result<()> {
        self.write(|t| {
            // Each step frees one page: step until it is done.
            let mut st = t
                .prepare("PRAGMA incremental_vacuum")
                .op("incremental vacuum")?;
            let mut rows = st.query([]).op("incremental vacuum")?;
            while rows.next().op("incremental vacuum")?.is_some() {}
            Ok(())
        })
        .await
    }

    /// Once sealing has caught up, and enough events were sealed since the last time,
    /// makes short the client-id claims of sealed events (`id_chunks.rs`): a window of
    /// chunks per write, so commits go on between them.
    async fn compact_claims_if_due(&self) -> Result<()> {
        use std::sync::atomic::Ordering;
        let since = self.sealed_since_compaction.load(Ordering::Relaxed);
        if since < COMPACT_AFTER {
            return Ok(());
        }
        let claims = self.read(|c| id_chunks::count(c)).await?.max(0) as u64;
        if since < claims / CLAIMS_PER_COMPACTED_EVENT {
            return Ok(());
        }
        self.sealed_since_compaction.store(0, Ordering::Relaxed);
        let started = std::time::Instant::now();
        // A merge rewrites every chunk, claims of sealed events made short: merging the
        // recent claims now does both (in one transaction; the windows below, when there
        // is nothing to merge, are one each).
        let (tx, rx) = oneshot::channel();
        self.send(Job::MergeClaims(tx))?;
        let merged = rx
            .await
            .map_err(|_| StoreError::Unavailable("writer stopped".into()))??;
        let mut from = (!merged).then_some(i64::MIN);
        while let Some(f) = from {
            from = self.write(move |t| id_chunks::compact(t, f)).await?;
        }
        self.vacuum().await?;
        tracing::debug!(
            claims,
            merged,
            ms = started.elapsed().as_millis() as u64,
            "compacted the client-id claims of sealed events"
        );
        Ok(())
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.shutdown_writer();
    }
}

/// The lowest tree level whose nodes are stored. A subtree below it spans at most
/// 2^(STORED_LEVEL-1) = 8 leaves, read in one range query and hashed on the spot; not
/// storing levels 1-3 saves 15 of every 16 node rows on the commit path.
pub(crate) const STORED_LEVEL: u32 = 4;

/// The lowest level stored within a sealed tile: the tile's root. Sealing drops the
/// nodes of levels `STORED_LEVEL..SEALED_LEVEL` beneath it (16 of every 256 leaves' 31
/// rows, ~5.5 bytes an event); a proof hashes them again from the frame's leaves, one
/// frame decoded and at most 256 bodies hashed.
pub(crate) const SEALED_LEVEL: u32 = 8;

/// Whether the node at (`level`, `index`) is hashed from leaves rather than read, in an
/// org whose first unsealed seq is `next`.
fn hashed(level: u32, index: u64, next: u64) -> bool {
    level < STORED_LEVEL
        || (level < SEALED_LEVEL && index.saturating_add(1).saturating_mul(1 << level) < next)
}

/// `count` consecutive nodes at `level` from `first`: stored nodes in one range query, or
/// (below the stored levels, or within sealed tiles) the leaves beneath, hashed up.
fn read_run(
    conn: &Connection,
    org_num: i64,
    level: u32,
    first: u64,
    count: u64,
) -> Result<Vec<Hash>> {
    let end = first + count;
    // Nodes before `split` are hashed from leaves, the rest read.
    let split = if level >= SEALED_LEVEL {
        first
    } else if level >= STORED_LEVEL {
        // Sealed tiles end on multiples of 256, so those hashed are the ones before the
        // node holding the first unsealed seq.
        ((seal::sealed_upto(conn, org_num)? - 1) >> level).clamp(first, end)
    } else {
        end
    };
    let frames = crate::frame_cache::FrameCache::default();
    let mut unseal = seal::Unsealer::new(conn, &frames, org_num)?;
    let mut out = hashed_run(&mut unseal, level, first, split - first)?;
    out.extend(stored_run(conn, org_num, level, split, end - split)?);
    Ok(out)
}

/// `count` stored nodes at `level` from `first`, in one range query.
fn stored_run(
    conn: &Connection,
    org_num: i64,
    level: u32,
    first: u64,
    count: u64,
) -> Result<Vec<Hash>> {
    let missing = || {
        StoreError::Corrupt(format!(
            "missing tree nodes at level {level} of org {org_num}"
        ))
    };
    if count == 0 {
        return Ok(Vec::new());
    }
    let mut q = conn
        .prepare_cached("SELECT idx, hash FROM nodes WHERE org_num = ?1 AND level = ?2 AND idx BETWEEN ?3 AND ?4 ORDER BY idx")
        .op("prepare node run")?;
    let rows = q
        .query_map(
            params![org_num, level, first as i64, (first + count - 1) as i64],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)),
        )
        .op("read node run")?;
    let mut out = Vec::with_capacity(count as usize);
    for (i, row) in rows.enumerate() {
        let (idx, h) = row.op("read node")?;
        if idx as u64 != first + i as u64 {
            return Err(missing());
        }
        out.push(h.try_into().map_err(|_| missing())?);
    }
    if out.len() as u64 != count {
        return Err(missing());
    }
    Ok(out)
}

/// `count` nodes at `level` from `first`, hashed up from the leaves beneath them.
fn hashed_run(
    unseal: &mut seal::Unsealer<'_>,
    level: u32,
    first: u64,
    count: u64,
) -> Result<Vec<Hash>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let width = 1u64 << level;
    let (lo, hi) = (first * width + 1, (first + count) * width);
    let mut level_hashes = seal::leaves(unseal, lo, hi)?;
    if level_hashes.len() as u64 != count * width {
        return Err(StoreError::Corrupt(format!(
            "missing leaves under level {level} of org {}",
            unseal.org_num()
        )));
    }
    while level_hashes.len() as u64 > count {
        level_hashes = level_hashes
            .chunks(2)
            .map(|p| merkle::node_hash(&p[0], &p[1]))
            .collect();
    }
    Ok(level_hashes)
}

pub(crate) fn read_nodes(conn: &Connection, org_num: i64, ids: &[NodeId]) -> Result<Vec<Hash>> {
    let frames = crate::frame_cache::FrameCache::default();
    let mut unseal = seal::Unsealer::new(conn, &frames, org_num)?;
    let mut node = conn
        .prepare_cached("SELECT hash FROM nodes WHERE org_num = ?1 AND level = ?2 AND idx = ?3")
        .op("prepare node read")?;
    let missing =
        |id: &NodeId| StoreError::Corrupt(format!("missing tree node {id:?} of org {org_num}"));
    ids.iter()
        .map(|id| {
            if !hashed(id.level, id.index, unseal.next()) {
                let h: Option<Vec<u8>> = node
                    .query_row(params![org_num, id.level, id.index as i64], |r| r.get(0))
                    .optional()
                    .op("read tree node")?;
                return h.and_then(|h| h.try_into().ok()).ok_or_else(|| missing(id));
            }
            hashed_run(&mut unseal, id.level, id.index, 1)?
                .pop()
                .ok_or_else(|| missing(id))
        })
        .collect()
}

fn tree_size(conn: &Connection, org_num: i64) -> Result<u64> {
    let max: Option<i64> = conn
        .query_row(
            "SELECT max(rid) FROM events WHERE rid BETWEEN ?1 AND ?2",
            params![rid(org_num, 0), rid(org_num, MAX_SEQ)],
            |r| r.get(0),
        )
        .op("read tree size")?;
    Ok(max.map(seq_of).unwrap_or(0))
}

fn head_of(conn: &mut Connection, org_num: i64) -> Result<TreeHead> {
    let tx = conn.transaction().op("begin read")?;
    let size = tree_size(&tx, org_num)?;
    let hashes = read_nodes(&tx, org_num, &merkle::frontier_ids(size))?;
    Ok(TreeHead {
        size,
        root: merkle::fold(&hashes),
    })
}

fn org_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Org> {
    Ok(Org {
        id: r.get(0)?,
        name: r.get(1)?,
        strict: r.get(2)?,
        retention_days: r.get(3)?,
        catalog: r.get(4)?,
        catalog_version: r.get(5)?,
        created_at: r.get(6)?,
    })
}

fn catalog_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredCatalog> {
    Ok(StoredCatalog {
        version: r.get(0)?,
        name: r.get(1)?,
        document: r.get(2)?,
        created_at: r.get(3)?,
    })
}

fn current_catalog(t: &Connection, org_num: i64) -> Result<Option<StoredCatalog>> {
    t.query_row(
        "SELECT version, name, document, created_at FROM catalogs WHERE org_num = ?1 ORDER BY version DESC LIMIT 1",
        [org_num],
        catalog_row,
    )
    .optional()
    .op("read catalog")
}

fn key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyRecord> {
    let role: String = r.get(3)?;
    let hash: Vec<u8> = r.get(4)?;
    Ok(KeyRecord {
        id: r.get(0)?,
        org: r.get(1)?,
        name: r.get(2)?,
        role: Role::parse(&role).unwrap_or(Role::Ingest),
        secret_hash: hash.try_into().unwrap_or([0; 32]),
        created_at: r.get(5)?,
        revoked_at: r.get(6)?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_org(&self, org: NewOrg) -> Result<Org> {
        let created_at = now_text();
        self.write(move |t| {
            let n = t
                .execute(
                    "INSERT INTO orgs (id, name, strict, retention_days, created_at) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO NOTHING",
                    params![org.id, org.name, org.strict, org.retention_days, created_at],
                )
                .op("create org")?;
            if n == 0 {
                return Err(StoreError::Conflict(format!("org `{}` already exists", org.id)));
            }
            if let Some(c) = &org.catalog {
                t.execute(
                    "INSERT INTO catalogs (org_num, version, name, document, created_at) VALUES (?1, 1, ?2, ?3, ?4)",
                    params![t.last_insert_rowid(), c.name, c.document, created_at],
                )
                .op("store catalog")?;
            }
            let catalog_version = org.catalog.as_ref().map(|_| 1);
            Ok(Org { id: org.id, name: org.name, strict: org.strict, retention_days: org.retention_days, catalog: org.catalog.map(|c| c.name), catalog_version, created_at })
        })
        .await
    }

    async fn get_org(&self, id: &str) -> Result<Option<Org>> {
        let id = id.to_owned();
        self.read(move |c| {
            c.query_row(
                &format!("SELECT {ORG_COLS} FROM orgs WHERE id = ?1"),
                [id],
                org_row,
            )
            .optional()
            .op("read org")
        })
        .await
    }

    async fn list_orgs(&self) -> Result<Vec<Org>> {
        self.read(|c| {
            let mut s = c
                .prepare(&format!("SELECT {ORG_COLS} FROM orgs ORDER BY id"))
                .op("list orgs")?;
            let rows = s.query_map([], org_row).op("list orgs")?;
            rows.collect::<rusqlite::Result<_>>().op("list orgs")
        })
        .await
    }

    async fn create_key(&self, key: KeyRecord) -> Result<()> {
        let num = self.org_num(&key.org).await?;
        self.write(move |t| {
            t.execute(
                "INSERT INTO keys (id, org_num, name, role, secret_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![key.id, num, key.name, key.role.as_str(), &key.secret_hash[..], key.created_at],
            )
            .op("create key")?;
            Ok(())
        })
        .await
    }

    async fn get_key(&self, key_id: &str) -> Result<Option<KeyRecord>> {
        let id = key_id.to_owned();
        self.read(move |c| {
            c.query_row(
                &format!(
                    "SELECT {KEY_COLS} FROM keys k JOIN orgs o ON o.num = k.org_num WHERE k.id = ?1"
                ),
                [id],
                key_row,
            )
            .optional()
            .op("read key")
        })
        .await
    }

    async fn list_keys(&self, org: &str) -> Result<Vec<KeyRecord>> {
        let num = self.org_num(org).await?;
        self.read(move |c| {
            let mut s = c
                .prepare(&format!("SELECT {KEY_COLS} FROM keys k JOIN orgs o ON o.num = k.org_num WHERE k.org_num = ?1 ORDER BY k.created_at"))
                .op("list keys")?;
            let rows = s.query_map([num], key_row).op("list keys")?;
            rows.collect::<rusqlite::Result<_>>().op("list keys")
        })
        .await
    }

    async fn revoke_key(&self, org: &str, key_id: &str) -> Result<KeyRecord> {
        let num = self.org_num(org).await?;
        let (id, at) = (key_id.to_owned(), now_text());
        self.write(move |t| {
            t.execute("UPDATE keys SET revoked_at = coalesce(revoked_at, ?1) WHERE id = ?2 AND org_num = ?3", params![at, id, num])
                .op("revoke key")?;
            t.query_row(&format!("SELECT {KEY_COLS} FROM keys k JOIN orgs o ON o.num = k.org_num WHERE k.id = ?1 AND k.org_num = ?2"), params![id, num], key_row)
                .optional()
                .op("read key")?
                .ok_or(StoreError::NotFound { what: "key" })
        })
        .await
    }

    async fn put_catalog(&self, org: &str, catalog: NewCatalog) -> Result<(StoredCatalog, bool)> {
        let num = self.org_num(org).await?;
        let created_at = now_text();
        self.write(move |t| {
            let current = current_catalog(t, num)?;
            if let Some(c) = current.as_ref().filter(|c| c.name == catalog.name && c.document == catalog.document) {
                return Ok((c.clone(), false));
            }
            let version = current.map_or(1, |c| c.version + 1);
            t.execute(
                "INSERT INTO catalogs (org_num, version, name, document, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![num, version, catalog.name, catalog.document, created_at],
            )
            .op("store catalog")?;
            Ok((StoredCatalog { version, name: catalog.name, document: catalog.document, created_at }, true))
        })
        .await
    }

    async fn get_catalog(&self, org: &str, version: Option<u32>) -> Result<Option<StoredCatalog>> {
        let num = self.org_num(org).await?;
        self.read(move |c| match version {
            None => current_catalog(c, num),
            Some(v) => c
                .query_row(
                    "SELECT version, name, document, created_at FROM catalogs WHERE org_num = ?1 AND version = ?2",
                    params![num, v],
                    catalog_row,
                )
                .optional()
                .op("read catalog"),
        })
        .await
    }

    async fn get_setting(&self, name: &str) -> Result<Option<String>> {
        let name = name.to_owned();
        self.read(move |c| {
            c.query_row("SELECT value FROM settings WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .op("read setting")
        })
        .await
    }

    async fn put_setting(&self, name: &str, value: Option<&str>) -> Result<()> {
        let (name, value) = (name.to_owned(), value.map(str::to_owned));
        self.write(move |t| {
            match value {
                Some(v) => t.execute(
                    "INSERT INTO settings (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    params![name, v],
                ),
                None => t.execute("DELETE FROM settings WHERE name = ?1", [name]),
            }
            .op("write setting")?;
            Ok(())
        })
        .await
    }

    async fn init_setting(&self, name: &str, value: &str) -> Result<String> {
        let (name, value) = (name.to_owned(), value.to_owned());
        self.write(move |t| {
            t.execute(
                "INSERT INTO settings (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                params![name, value],
            )
            .op("write setting")?;
            t.query_row("SELECT value FROM settings WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .op("read setting")
        })
        .await
    }

    async fn append(
        &self,
        org: &str,
        events: Vec<PreparedEvent>,
        wait: bool,
    ) -> Result<Vec<Accepted>> {
        self.enqueue(org, events, wait).await?.await
    }

    async fn enqueue(
        &self,
        org: &str,
        events: Vec<PreparedEvent>,
        wait: bool,
    ) -> Result<Appending> {
        self.queue_append(org, events, wait, None, None).await
    }

    async fn enqueue_after(
        &self,
        org: &str,
        events: Vec<PreparedEvent>,
        wait: bool,
        after: Option<Outcome>,
        outcome: Outcome,
    ) -> Result<Appending> {
        let queued = self
            .queue_append(org, events, wait, after, Some(outcome.clone()))
            .await;
        if queued.is_err() {
            outcome.set(false);
        }
        queued
    }

    async fn search(&self, org: &str, filter: &Filter, page: PageRequest) -> Result<Page> {
        let org_num = self.org_num(org).await?;
        let filter = filter.clone();
        let frames = self.frames.clone();
        self.read(move |c| {
            // One snapshot: pending and merged postings (and sealed frames) as of the
            // same commit.
            let tx = c.transaction().op("begin read")?;
            search::search(&tx, &frames, org_num, &filter, page)
        })
        .await
    }

    async fn seal(&self, org: &str, keep_open: u64, max_frames: usize) -> Result<u64> {
        let org_num = self.org_num(org).await?;
        let sealed = self
            .write(move |t| seal::seal(t, org_num, keep_open, max_frames))
            .await?;
        if sealed > 0 {
            self.sealed_since_compaction
                .fetch_add(sealed, std::sync::atomic::Ordering::Relaxed);
            self.vacuum().await?;
        } else {
            self.compact_claims_if_due().await?;
        }
        Ok(sealed)
    }

    async fn sealing(&self, org: &str, keep_open: u64) -> Result<SealCounts> {
        let org_num = self.org_num(org).await?;
        self.read(move |c| seal::counts(c, org_num, keep_open))
            .await
    }

    async fn disk_bytes(&self) -> Result<Option<u64>> {
        Ok(Some(self.path.parent().map_or(0, disk_bytes)))
    }

    async fn purge(&self, org: &str, before_ms: i64, limit: usize) -> Result<u64> {
        let org_num = self.org_num(org).await?;
        let limit = limit.clamp(1, i64::MAX as usize) as i64;
        self.write(move |t| {
            // Seqs are assigned in the order events are received, so the oldest bodies
            // are at the start of the org's log: its sealed part, then its rows.
            let sealed = seal::purge(t, org_num, before_ms, limit)?;
            let n = if sealed < limit {
                t.execute(
                    "UPDATE events SET body = NULL WHERE rid IN (SELECT rid FROM events \
                     WHERE rid BETWEEN ?1 AND ?2 AND received_ms < ?3 AND body IS NOT NULL ORDER BY rid LIMIT ?4)",
                    params![rid(org_num, 1), rid(org_num, MAX_SEQ), before_ms, limit - sealed],
                )
                .op("purge events")? as i64
            } else {
                0
            };
            let n = sealed + n;
            Ok(n as u64)
        })
        .await
    }

    async fn tree_head(&self, org: &str) -> Result<TreeHead> {
        let org_num = self.org_num(org).await?;
        self.read(move |c| head_of(c, org_num)).await
    }

    async fn node_hashes(&self, org: &str, ids: &[NodeId]) -> Result<Vec<Hash>> {
        let org_num = self.org_num(org).await?;
        let ids = ids.to_vec();
        self.read(move |c| {
            // One snapshot: sealing drops nodes it makes redundant, and where they are
            // read or hashed from depends on how far it had got.
            let tx = c.transaction().op("begin read")?;
            read_nodes(&tx, org_num, &ids)
        })
        .await
    }

    async fn save_checkpoint(&self, org: &str, size: u64, note: &str) -> Result<()> {
        let org_num = self.org_num(org).await?;
        let note = note.to_owned();
        let now = chrono::Utc::now().timestamp_millis();
        self.write(move |t| {
            t.execute(
                "INSERT INTO checkpoints (org_num, size, note, created_ms) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                params![org_num, size as i64, note, now],
            )
            .op("save checkpoint")?;
            Ok(())
        })
        .await
    }

    async fn run_hashes(&self, org: &str, level: u32, first: u64, count: u64) -> Result<Vec<Hash>> {
        let org_num = self.org_num(org).await?;
        self.read(move |c| {
            // One snapshot, as for `node_hashes`.
            let tx = c.transaction().op("begin read")?;
            read_run(&tx, org_num, level, first, count)
        })
        .await
    }

    async fn set_checkpoint_note(&self, org: &str, size: u64, note: &str) -> Result<bool> {
        let org_num = self.org_num(org).await?;
        let note = note.to_owned();
        self.write(move |t| {
            let n = t
                .execute(
                    "UPDATE checkpoints SET note = ?3 WHERE org_num = ?1 AND size = ?2",
                    params![org_num, size as i64, note],
                )
                .op("update checkpoint")?;
            Ok(n > 0)
        })
        .await
    }

    async fn checkpoint_at_most(&self, org: &str, size: u64) -> Result<Option<StoredCheckpoint>> {
        let org_num = self.org_num(org).await?;
        self.read(move |c| {
            c.query_row(
                "SELECT size, note, created_ms FROM checkpoints WHERE org_num = ?1 AND size <= ?2 ORDER BY size DESC LIMIT 1",
                params![org_num, size as i64],
                |r| Ok(StoredCheckpoint { size: r.get::<_, i64>(0)? as u64, note: r.get(1)?, created_ms: r.get(2)? }),
            )
            .optional()
            .op("read checkpoint")
        })
        .await
    }

    async fn latest_checkpoint(&self, org: &str) -> Result<Option<StoredCheckpoint>> {
        // Sizes are stored as i64: the largest one is at most i64::MAX.
        self.checkpoint_at_most(org, i64::MAX as u64).await
    }

    async fn stale_checkpoints(&self) -> Result<Vec<(String, TreeHead)>> {
        self.read(|c| {
            let orgs: Vec<(i64, String, i64)> = {
                let mut s = c
                    .prepare("SELECT o.num, o.id, coalesce((SELECT max(size) FROM checkpoints WHERE org_num = o.num), 0) FROM orgs o")
                    .op("list checkpoints")?;
                let rows = s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).op("list checkpoints")?;
                rows.collect::<rusqlite::Result<_>>().op("list checkpoints")?
            };
            let mut out = Vec::new();
            for (num, id, signed) in orgs {
                let head = head_of(c, num)?;
                if head.size > signed as u64 {
                    out.push((id, head));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn create_export(&self, job: ExportJob) -> Result<()> {
        let num = self.org_num(&job.org).await?;
        self.write(move |t| exports::create(t, num, &job)).await
    }

    async fn get_export(&self, org: &str, id: &str) -> Result<Option<ExportJob>> {
        let num = self.org_num(org).await?;
        let id = id.to_owned();
        self.read(move |c| exports::get(c, num, &id)).await
    }

    async fn list_exports(&self, org: &str, limit: usize) -> Result<Vec<ExportJob>> {
        let num = self.org_num(org).await?;
        self.read(move |c| exports::list(c, num, limit)).await
    }

    async fn claim_export(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Option<ExportJob>> {
        let owner = owner.to_owned();
        self.write(move |t| exports::claim(t, &owner, now_ms, lease_until_ms))
            .await
    }

    async fn export_progress(
        &self,
        id: &str,
        owner: &str,
        rows: u64,
        lease_until_ms: i64,
    ) -> Result<bool> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        self.write(move |t| exports::progress(t, &id, &owner, rows, lease_until_ms))
            .await
    }

    async fn finish_export(
        &self,
        id: &str,
        owner: &str,
        outcome: ExportOutcome,
        now_ms: i64,
    ) -> Result<Option<ExportJob>> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        self.write(move |t| exports::finish(t, &id, &owner, &outcome, now_ms))
            .await
    }

    async fn exports_due_expiry(&self, now_ms: i64) -> Result<Vec<ExportJob>> {
        self.read(move |c| exports::due_expiry(c, now_ms)).await
    }

    async fn mark_export_expired(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.write(move |t| exports::mark_expired(t, &id)).await
    }

    async fn put_destination(&self, dest: Destination) -> Result<(Destination, bool)> {
        let num = self.org_num(&dest.org).await?;
        self.write(move |t| destinations::put(t, num, &dest)).await
    }

    async fn get_destination(&self, org: &str, name: &str) -> Result<Option<Destination>> {
        let num = self.org_num(org).await?;
        let name = name.to_owned();
        self.read(move |c| destinations::get(c, num, &name)).await
    }

    async fn list_destinations(&self, org: Option<&str>) -> Result<Vec<Destination>> {
        let num = match org {
            Some(o) => Some(self.org_num(o).await?),
            None => None,
        };
        self.read(move |c| destinations::list(c, num)).await
    }

    async fn delete_destination(&self, org: &str, name: &str) -> Result<bool> {
        let num = self.org_num(org).await?;
        let name = name.to_owned();
        self.write(move |t| destinations::delete(t, num, &name))
            .await
    }

    async fn update_delivery(&self, org: &str, name: &str, update: DeliveryUpdate) -> Result<bool> {
        let num = self.org_num(org).await?;
        let name = name.to_owned();
        self.write(move |t| destinations::update(t, num, &name, &update))
            .await
    }

    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool> {
        let (name, owner) = (name.to_owned(), owner.to_owned());
        self.write(move |t| {
            let n = t
                .execute(
                    "INSERT INTO leases (name, owner, until_ms) VALUES (?1, ?2, ?4) ON CONFLICT (name) DO UPDATE \
                     SET owner = excluded.owner, until_ms = excluded.until_ms \
                     WHERE leases.owner = excluded.owner OR leases.until_ms < ?3",
                    params![name, owner, now_ms, until_ms],
                )
                .op("take lease")?;
            Ok(n == 1)
        })
        .await
    }

    async fn release_lease(&self, name: &str, owner: &str) -> Result<()> {
        let (name, owner) = (name.to_owned(), owner.to_owned());
        self.write(move |t| {
            t.execute(
                "DELETE FROM leases WHERE name = ?1 AND owner = ?2",
                params![name, owner],
            )
            .op("release lease")?;
            Ok(())
        })
        .await
    }

    async fn ping(&self) -> Result<()> {
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(())).op("ping"))
            .await
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
