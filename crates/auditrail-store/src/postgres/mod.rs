//! The PostgreSQL backend: any number of `auditrail serve` nodes share one database.
//!
//! Each node keeps a bounded connection pool and a writer task per active org (group
//! commit, see `writer.rs`). Everything a node knows comes from the database at the moment it needs
//! it, so nodes are stateless: the org number cache holds only what never changes.
//! A lost connection surfaces as `StoreError::Unavailable` (503) and the pool opens new
//! connections once the database is back.

mod destinations;
mod exports;
mod retention;
mod rows;
mod schema;
mod seal;
mod search;
pub mod testdb;
mod writer;

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use async_trait::async_trait;
use auditrail_core::merkle::{self, Frontier, NodeId};
use auditrail_core::query::Filter;
use auditrail_core::{Hash, PreparedEvent};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio::sync::oneshot;
use tokio_postgres::NoTls;

use crate::error::Pg;
use crate::queue::WriteQueue;
use crate::sql::{KEY_COLS, ORG_COLS, now_text};
use crate::{
    Accepted, CommitObserver, DeliveryUpdate, Destination, ExportJob, ExportOutcome, KeyRecord,
    NewCatalog, NewOrg, Org, Page, PageRequest, Reclaimed, Result, SealCounts, Store, StoreError,
    StoredCatalog, StoredCheckpoint, TreeHead,
};
use rows::{catalog_row, key_row, org_row};

/// As on SQLite: subtrees below this level are hashed from their leaves on read.
pub(crate) const STORED_LEVEL: u32 = 4;
const TIMEOUT: Duration = Duration::from_secs(5);

pub struct PgOptions {
    /// Connections this node may hold at most.
    pub max_connections: usize,
    /// Called after each group commit (for metrics).
    pub on_commit: Option<CommitObserver>,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            on_commit: None,
        }
    }
}

pub struct PgStore {
    pool: Pool,
    writers: writer::Writers,
    queue: WriteQueue,
    org_nums: RwLock<HashMap<String, i64>>,
    frames: crate::frame_cache::FrameCache,
}

impl PgStore {
    /// Connects to `url` (`postgres://user:pass@host:port/db`), runs the migrations and
    /// starts this node's writer task. Needs a Tokio runtime.
    pub async fn connect(url: &str, options: PgOptions) -> Result<Self> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Unavailable(format!("invalid database URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(TIMEOUT);
        }
        config.application_name("auditrail");
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.max_connections.max(2))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(TIMEOUT))
            .create_timeout(Some(TIMEOUT))
            .recycle_timeout(Some(TIMEOUT))
            .build()
            .map_err(|e| StoreError::Unavailable(format!("database pool: {e}")))?;
        {
            let mut c = pooled(&pool).await?;
            schema::migrate(&mut c).await?;
        }
        Ok(Self {
            writers: writer::Writers::new(pool.clone(), options.on_commit),
            pool,
            queue: WriteQueue::new(),
            org_nums: RwLock::new(HashMap::new()),
            frames: Default::default(),
        })
    }

    async fn conn(&self) -> Result<Object> {
        pooled(&self.pool).await
    }

    async fn org_num(&self, org: &str) -> Result<i64> {
        if let Some(n) = self.org_nums.read().ok().and_then(|m| m.get(org).copied()) {
            return Ok(n);
        }
        let n: i64 = self
            .conn()
            .await?
            .query_opt("SELECT num FROM orgs WHERE id = $1", &[&org])
            .await
            .pg("find org")?
            .ok_or(StoreError::NotFound { what: "org" })?
            .get(0);
        if let Ok(mut m) = self.org_nums.write() {
            m.insert(org.to_owned(), n);
        }
        Ok(n)
    }
}

pub(crate) async fn pooled(pool: &Pool) -> Result<Object> {
    pool.get()
        .await
        .map_err(|e| StoreError::Unavailable(format!("database: {e}")))
}

/// The frontier stored in an org's row: `frontier_ids(size)` hashes, concatenated.
pub(crate) fn frontier_of(size: i64, bytes: &[u8]) -> Result<Frontier> {
    let hashes = bytes
        .chunks_exact(32)
        .map(|c| <Hash>::try_from(c).unwrap_or_default())
        .collect();
    bytes
        .len()
        .is_multiple_of(32)
        .then(|| Frontier::from_parts(size as u64, hashes))
        .flatten()
        .ok_or_else(|| StoreError::Corrupt(format!("tree frontier at size {size} is malformed")))
}

fn to_hash(b: &[u8], what: &dyn std::fmt::Display) -> Result<Hash> {
    b.try_into()
        .map_err(|_| StoreError::Corrupt(format!("hash of {what} is malformed")))
}

/// Takes a transaction-scoped lock on one org's catalog (its versions are numbered).
const CATALOG_LOCK: i32 = 1;

#[async_trait]
impl Store for PgStore {
    async fn create_org(&self, org: NewOrg) -> Result<Org> {
        let created_at = now_text();
        let mut c = self.conn().await?;
        let tx = c.transaction().await.pg("begin")?;
        let retention = org.retention_days.map(|d| d as i32);
        let num: Option<i64> = tx
            .query_opt(
                "INSERT INTO orgs (id, name, strict, retention_days, created_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (id) DO NOTHING RETURNING num",
                &[&org.id, &org.name, &org.strict, &retention, &created_at],
            )
            .await
            .pg("create org")?
            .map(|r| r.get(0));
        let Some(num) = num else {
            return Err(StoreError::Conflict(format!(
                "org `{}` already exists",
                org.id
            )));
        };
        if let Some(cat) = &org.catalog {
            tx.execute(
                "INSERT INTO catalogs (org_num, version, name, document, created_at) VALUES ($1, 1, $2, $3, $4)",
                &[&num, &cat.name, &cat.document, &created_at],
            )
            .await
            .pg("store catalog")?;
        }
        tx.commit().await.pg("commit org")?;
        let catalog_version = org.catalog.as_ref().map(|_| 1);
        Ok(Org {
            id: org.id,
            name: org.name,
            strict: org.strict,
            retention_days: org.retention_days,
            catalog: org.catalog.map(|c| c.name),
            catalog_version,
            created_at,
        })
    }

    async fn get_org(&self, id: &str) -> Result<Option<Org>> {
        let row = self
            .conn()
            .await?
            .query_opt(
                &format!("SELECT {ORG_COLS} FROM orgs WHERE id = $1"),
                &[&id],
            )
            .await
            .pg("read org")?;
        Ok(row.as_ref().map(org_row))
    }

    async fn list_orgs(&self) -> Result<Vec<Org>> {
        let rows = self
            .conn()
            .await?
            .query(&format!("SELECT {ORG_COLS} FROM orgs ORDER BY id"), &[])
            .await
            .pg("list orgs")?;
        Ok(rows.iter().map(org_row).collect())
    }

    async fn create_key(&self, key: KeyRecord) -> Result<()> {
        let num = self.org_num(&key.org).await?;
        self.conn()
            .await?
            .execute(
                "INSERT INTO keys (id, org_num, name, role, secret_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                &[&key.id, &num, &key.name, &key.role.as_str(), &&key.secret_hash[..], &key.created_at],
            )
            .await
            .pg("create key")?;
        Ok(())
    }

    async fn get_key(&self, key_id: &str) -> Result<Option<KeyRecord>> {
        let row = self
            .conn()
            .await?
            .query_opt(
                &format!(
                    "SELECT {KEY_COLS} FROM keys k JOIN orgs o ON o.num = k.org_num WHERE k.id = $1"
                ),
                &[&key_id],
            )
            .await
            .pg("read key")?;
        Ok(row.as_ref().map(key_row))
    }

    async fn list_keys(&self, org: &str) -> Result<Vec<KeyRecord>> {
        let num = self.org_num(org).await?;
        let rows = self
            .conn()
            .await?
            .query(
                &format!("SELECT {KEY_COLS} FROM keys k JOIN orgs o ON o.num = k.org_num WHERE k.org_num = $1 ORDER BY k.created_at, k.id"),
                &[&num],
            )
            .await
            .pg("list keys")?;
        Ok(rows.iter().map(key_row).collect())
    }

    async fn revoke_key(&self, org: &str, key_id: &str) -> Result<KeyRecord> {
        let num = self.org_num(org).await?;
        let c = self.conn().await?;
        c.execute(
            "UPDATE keys SET revoked_at = coalesce(revoked_at, $1) WHERE id = $2 AND org_num = $3",
            &[&now_text(), &key_id, &num],
        )
        .await
        .pg("revoke key")?;
        let row = c
            .query_opt(
                &format!("SELECT {KEY_COLS} FROM keys k JOIN orgs o ON o.num = k.org_num WHERE k.id = $1 AND k.org_num = $2"),
                &[&key_id, &num],
            )
            .await
            .pg("read key")?;
        row.as_ref()
            .map(key_row)
            .ok_or(StoreError::NotFound { what: "key" })
    }

    async fn put_catalog(&self, org: &str, catalog: NewCatalog) -> Result<(StoredCatalog, bool)> {
        let num = self.org_num(org).await?;
        let created_at = now_text();
        let mut c = self.conn().await?;
        let tx = c.transaction().await.pg("begin")?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, $2::bigint::int)",
            &[&CATALOG_LOCK, &num],
        )
        .await
        .pg("lock catalog")?;
        let current = tx
            .query_opt(
                "SELECT version, name, document, created_at FROM catalogs WHERE org_num = $1 ORDER BY version DESC LIMIT 1",
                &[&num],
            )
            .await
            .pg("read catalog")?
            .as_ref()
            .map(catalog_row);
        if let Some(c) = current
            .as_ref()
            .filter(|c| c.name == catalog.name && c.document == catalog.document)
        {
            return Ok((c.clone(), false));
        }
        let version = current.map_or(1, |c| c.version + 1);
        tx.execute(
            "INSERT INTO catalogs (org_num, version, name, document, created_at) VALUES ($1, $2, $3, $4, $5)",
            &[&num, &(version as i32), &catalog.name, &catalog.document, &created_at],
        )
        .await
        .pg("store catalog")?;
        tx.commit().await.pg("commit catalog")?;
        Ok((
            StoredCatalog {
                version,
                name: catalog.name,
                document: catalog.document,
                created_at,
            },
            true,
        ))
    }

    async fn get_catalog(&self, org: &str, version: Option<u32>) -> Result<Option<StoredCatalog>> {
        let num = self.org_num(org).await?;
        let c = self.conn().await?;
        let row = match version {
            None => c.query_opt(
                "SELECT version, name, document, created_at FROM catalogs WHERE org_num = $1 ORDER BY version DESC LIMIT 1",
                &[&num],
            )
            .await,
            Some(v) => c.query_opt(
                "SELECT version, name, document, created_at FROM catalogs WHERE org_num = $1 AND version = $2",
                &[&num, &(v.min(i32::MAX as u32) as i32)],
            )
            .await,
        }
                .pg("read catalog")?;
        Ok(row.as_ref().map(catalog_row))
    }

    async fn get_setting(&self, name: &str) -> Result<Option<String>> {
        let row = self
            .conn()
            .await?
            .query_opt("SELECT value FROM settings WHERE name = $1", &[&name])
            .await
            .pg("read setting")?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn put_setting(&self, name: &str, value: Option<&str>) -> Result<()> {
        let c = self.conn().await?;
        match value {
            Some(v) => c.execute(
                "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                &[&name, &v],
            )
            .await,
            None => c.execute("DELETE FROM settings WHERE name = $1", &[&name]).await,
        }
        .pg("write setting")?;
        Ok(())
    }

    async fn init_setting(&self, name: &str, value: &str) -> Result<String> {
        let c = self.conn().await?;
        c.execute(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[&name, &value],
        )
        .await
        .pg("write setting")?;
        let row = c
            .query_one("SELECT value FROM settings WHERE name = $1", &[&name])
            .await
            .pg("read setting")?;
        Ok(row.get(0))
    }

    async fn append(
        &self,
        org: &str,
        events: Vec<PreparedEvent>,
        wait: bool,
    ) -> Result<Vec<Accepted>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let org_num = self.org_num(org).await?;
        let permit = self.queue.admit(events.len(), wait).await?;
        let (tx, rx) = oneshot::channel();
        self.writers.send(writer::Append {
            org_num,
            events,
            reply: tx,
            _permit: permit,
        })?;
        rx.await
            .map_err(|_| StoreError::Unavailable("writer stopped".into()))?
    }

    async fn search(&self, org: &str, filter: &Filter, page: PageRequest) -> Result<Page> {
        let num = self.org_num(org).await?;
        search::search(&mut self.conn().await?, &self.frames, num, filter, page).await
    }

    async fn purge(&self, org: &str, before_ms: i64, limit: usize) -> Result<u64> {
        let num = self.org_num(org).await?;
        let limit = limit.clamp(1, i64::MAX as usize) as i64;
        // A purge holds no lock on the org's head: appends go on while it runs.
        let c = self.conn().await?;
        retention::purge(&c, &self.frames, num, before_ms, limit).await
    }

    async fn reclaim(&self, now_ms: i64) -> Result<Reclaimed> {
        let mut c = self.conn().await?;
        retention::reclaim(&mut c, &self.frames, now_ms).await
    }

    async fn seal(&self, org: &str, keep_open: u64, max_frames: usize) -> Result<u64> {
        let num = self.org_num(org).await?;
        seal::seal(&mut self.conn().await?, num, keep_open, max_frames).await
    }

    async fn sealing(&self, org: &str, keep_open: u64) -> Result<SealCounts> {
        let num = self.org_num(org).await?;
        seal::counts(&self.conn().await?, num, keep_open).await
    }

    async fn disk_bytes(&self) -> Result<Option<u64>> {
        let r = self
            .conn()
            .await?
            .query_one("SELECT pg_database_size(current_database())", &[])
            .await
            .pg("read database size")?;
        Ok(Some(r.get::<_, i64>(0).max(0) as u64))
    }

    async fn tree_head(&self, org: &str) -> Result<TreeHead> {
        let num = self.org_num(org).await?;
        let row = self
            .conn()
            .await?
            .query_one(
                "SELECT tree_size, frontier FROM orgs WHERE num = $1",
                &[&num],
            )
            .await
            .pg("read log head")?;
        let size: i64 = row.get(0);
        let frontier = frontier_of(size, row.get(1))?;
        Ok(TreeHead {
            size: size as u64,
            root: frontier.root(),
        })
    }

    async fn node_hashes(&self, org: &str, ids: &[NodeId]) -> Result<Vec<Hash>> {
        let num = self.org_num(org).await?;
        let c = self.conn().await?;
        let node = c
            .prepare_cached("SELECT hash FROM nodes WHERE org_num = $1 AND level = $2 AND idx = $3")
            .await
            .pg("prepare node read")?;
        let missing =
            |id: &NodeId| StoreError::Corrupt(format!("missing tree node {id:?} of org {org}"));
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if id.level >= STORED_LEVEL {
                let row = c
                    .query_opt(&node, &[&num, &(id.level as i32), &(id.index as i64)])
                    .await
                    .pg("read tree node")?
                    .ok_or_else(|| missing(id))?;
                out.push(to_hash(row.get(0), &format_args!("node {id:?}"))?);
                continue;
            }
            let width = 1u64 << id.level;
            let first = id.index * width + 1;
            let mut level = retention::leaves(
                &c,
                &self.frames,
                num,
                first as i64,
                (first + width - 1) as i64,
            )
            .await?;
            while level.len() > 1 {
                level = level
                    .chunks(2)
                    .map(|p| merkle::node_hash(&p[0], &p[1]))
                    .collect();
            }
            out.push(level.pop().ok_or_else(|| missing(id))?);
        }
        Ok(out)
    }

    async fn save_checkpoint(&self, org: &str, size: u64, note: &str) -> Result<()> {
        let num = self.org_num(org).await?;
        let now = chrono::Utc::now().timestamp_millis();
        self.conn()
            .await?
            .execute(
                "INSERT INTO checkpoints (org_num, size, note, created_ms) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &[&num, &(size as i64), &note, &now],
            )
            .await
            .pg("save checkpoint")?;
        Ok(())
    }

    async fn set_checkpoint_note(&self, org: &str, size: u64, note: &str) -> Result<bool> {
        let num = self.org_num(org).await?;
        let n = self
            .conn()
            .await?
            .execute(
                "UPDATE checkpoints SET note = $3 WHERE org_num = $1 AND size = $2",
                &[&num, &(size as i64), &note],
            )
            .await
            .pg("update checkpoint")?;
        Ok(n > 0)
    }

    async fn checkpoint_at_most(&self, org: &str, size: u64) -> Result<Option<StoredCheckpoint>> {
        let num = self.org_num(org).await?;
        let row = self
            .conn()
            .await?
            .query_opt(
                "SELECT size, note, created_ms FROM checkpoints WHERE org_num = $1 AND size <= $2 ORDER BY size DESC LIMIT 1",
                &[&num, &(size as i64)],
            )
            .await
            .pg("read checkpoint")?;
        Ok(row.map(|r| StoredCheckpoint {
            size: r.get::<_, i64>(0) as u64,
            note: r.get(1),
            created_ms: r.get(2),
        }))
    }

    async fn latest_checkpoint(&self, org: &str) -> Result<Option<StoredCheckpoint>> {
        // Sizes are stored as i64: the largest one is at most i64::MAX.
        self.checkpoint_at_most(org, i64::MAX as u64).await
    }

    async fn stale_checkpoints(&self) -> Result<Vec<(String, TreeHead)>> {
        let rows = self
            .conn()
            .await?
            .query(
                "SELECT o.id, o.tree_size, o.frontier FROM orgs o \
                 WHERE o.tree_size > coalesce((SELECT max(size) FROM checkpoints c WHERE c.org_num = o.num), 0)",
                &[],
            )
            .await
            .pg("list checkpoints")?;
        rows.iter()
            .map(|r| {
                let size: i64 = r.get(1);
                let f = frontier_of(size, r.get(2))?;
                Ok((
                    r.get(0),
                    TreeHead {
                        size: size as u64,
                        root: f.root(),
                    },
                ))
            })
            .collect()
    }

    async fn create_export(&self, job: ExportJob) -> Result<()> {
        let num = self.org_num(&job.org).await?;
        exports::create(&*self.conn().await?, num, &job).await
    }

    async fn get_export(&self, org: &str, id: &str) -> Result<Option<ExportJob>> {
        let num = self.org_num(org).await?;
        exports::get(&*self.conn().await?, Some(num), id).await
    }

    async fn list_exports(&self, org: &str, limit: usize) -> Result<Vec<ExportJob>> {
        let num = self.org_num(org).await?;
        exports::list(&*self.conn().await?, num, limit).await
    }

    async fn claim_export(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Option<ExportJob>> {
        exports::claim(&*self.conn().await?, owner, now_ms, lease_until_ms).await
    }

    async fn export_progress(
        &self,
        id: &str,
        owner: &str,
        rows: u64,
        lease_until_ms: i64,
    ) -> Result<bool> {
        exports::progress(&*self.conn().await?, id, owner, rows, lease_until_ms).await
    }

    async fn finish_export(
        &self,
        id: &str,
        owner: &str,
        outcome: ExportOutcome,
        now_ms: i64,
    ) -> Result<Option<ExportJob>> {
        exports::finish(&*self.conn().await?, id, owner, &outcome, now_ms).await
    }

    async fn exports_due_expiry(&self, now_ms: i64) -> Result<Vec<ExportJob>> {
        exports::due_expiry(&*self.conn().await?, now_ms).await
    }

    async fn mark_export_expired(&self, id: &str) -> Result<()> {
        exports::mark_expired(&*self.conn().await?, id).await
    }

    async fn put_destination(&self, dest: Destination) -> Result<(Destination, bool)> {
        let num = self.org_num(&dest.org).await?;
        destinations::put(&*self.conn().await?, num, &dest).await
    }

    async fn get_destination(&self, org: &str, name: &str) -> Result<Option<Destination>> {
        let num = self.org_num(org).await?;
        destinations::get(&*self.conn().await?, num, name).await
    }

    async fn list_destinations(&self, org: Option<&str>) -> Result<Vec<Destination>> {
        let num = match org {
            Some(o) => Some(self.org_num(o).await?),
            None => None,
        };
        destinations::list(&*self.conn().await?, num).await
    }

    async fn delete_destination(&self, org: &str, name: &str) -> Result<bool> {
        let num = self.org_num(org).await?;
        destinations::delete(&*self.conn().await?, num, name).await
    }

    async fn update_delivery(&self, org: &str, name: &str, update: DeliveryUpdate) -> Result<bool> {
        let num = self.org_num(org).await?;
        destinations::update(&*self.conn().await?, num, name, &update).await
    }

    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool> {
        let row = self
            .conn()
            .await?
            .query_opt(
                "INSERT INTO leases (name, owner, until_ms) VALUES ($1, $2, $4) ON CONFLICT (name) DO UPDATE \
                 SET owner = excluded.owner, until_ms = excluded.until_ms \
                 WHERE leases.owner = excluded.owner OR leases.until_ms < $3 RETURNING owner",
                &[&name, &owner, &now_ms, &until_ms],
            )
            .await
            .pg("take lease")?;
        Ok(row.is_some())
    }

    async fn release_lease(&self, name: &str, owner: &str) -> Result<()> {
        self.conn()
            .await?
            .execute(
                "DELETE FROM leases WHERE name = $1 AND owner = $2",
                &[&name, &owner],
            )
            .await
            .pg("release lease")?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        self.conn()
            .await?
            .query_one("SELECT 1", &[])
            .await
            .pg("ping")?;
        Ok(())
    }

    fn close(&self) {
        // The writer commits what is queued, then ends; callers waiting on appends
        // hear back as usual.
        self.writers.close();
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
