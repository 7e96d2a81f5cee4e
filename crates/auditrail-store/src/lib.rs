//! auditrail storage. The [`Store`] trait speaks the domain (append events, search,
//! tree nodes, checkpoints, orgs and keys), not SQL; each backend implements it and the
//! rest of auditrail is written against `Arc<dyn Store>`: embedded SQLite (`sqlite`) or
//! PostgreSQL shared by several nodes (`postgres`).
#![forbid(unsafe_code)]

#[cfg(test)]
pub mod conformance;
mod destinations;
mod error;
mod frame_cache;
mod jobs;
pub mod postgres;
pub mod proofs;
mod queue;
pub mod sealed;
mod sql;
pub mod sqlite;
pub mod terms;
mod types;

use async_trait::async_trait;
use auditrail_core::merkle::NodeId;
use auditrail_core::query::Filter;
use auditrail_core::{Hash, PreparedEvent};

pub use destinations::{DeliveryUpdate, Destination};
pub use error::StoreError;
pub use jobs::{ExportJob, ExportOutcome, ExportStatus};
pub use types::*;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Events queued by [`Store::enqueue`]: resolves once they are durable.
pub type Appending =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<Accepted>>> + Send>>;

/// Whether a batch queued with [`Store::enqueue_after`] was stored: unknown until its
/// fate is, which is before any batch queued after it is considered.
#[derive(Debug, Clone, Default)]
pub struct Outcome(std::sync::Arc<std::sync::OnceLock<bool>>);

impl Outcome {
    /// `Some(true)` once stored, `Some(false)` once it will not be.
    pub fn stored(&self) -> Option<bool> {
        self.0.get().copied()
    }

    /// Records the fate (the first one said stands).
    pub fn set(&self, stored: bool) {
        let _ = self.0.set(stored);
    }
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates an org; `Conflict` if its id is taken.
    async fn create_org(&self, org: NewOrg) -> Result<Org>;
    async fn get_org(&self, id: &str) -> Result<Option<Org>>;
    async fn list_orgs(&self) -> Result<Vec<Org>>;

    /// Stores a key record (the secret only as its hash).
    async fn create_key(&self, key: KeyRecord) -> Result<()>;
    async fn get_key(&self, key_id: &str) -> Result<Option<KeyRecord>>;
    async fn list_keys(&self, org: &str) -> Result<Vec<KeyRecord>>;
    /// Marks a key of `org` revoked; `NotFound` if `org` has no such key.
    async fn revoke_key(&self, org: &str, key_id: &str) -> Result<KeyRecord>;

    /// Stores a new version of `org`'s catalog, unless `catalog` is the current one;
    /// returns the version in force and whether it is new.
    async fn put_catalog(&self, org: &str, catalog: NewCatalog) -> Result<(StoredCatalog, bool)>;
    /// One version of `org`'s catalog, or the current one when `version` is `None`.
    async fn get_catalog(&self, org: &str, version: Option<u32>) -> Result<Option<StoredCatalog>>;

    async fn get_setting(&self, name: &str) -> Result<Option<String>>;
    /// Sets a setting (`None` removes it).
    async fn put_setting(&self, name: &str, value: Option<&str>) -> Result<()>;
    /// Sets a setting unless present; returns the value in force.
    async fn init_setting(&self, name: &str, value: &str) -> Result<String>;

    /// Appends events to `org`'s log, assigning gapless seqs, and returns once they are
    /// durable. Events whose client id was already accepted come back `duplicate` with
    /// their original seq and are not stored again. `wait` decides what happens when the
    /// write queue is full: wait for room, or fail fast with `Overloaded`.
    async fn append(
        &self,
        org: &str,
        events: Vec<PreparedEvent>,
        wait: bool,
    ) -> Result<Vec<Accepted>>;

    /// [`append`](Store::append) in two steps, for a caller that keeps several batches
    /// in flight in order (the bulk load): once this returns, `events` are queued behind
    /// every batch queued before and ahead of every batch queued after; the returned
    /// future resolves as `append` does, once they are durable. A backend without a
    /// queue of its own appends here, so its future is already resolved.
    async fn enqueue(
        &self,
        org: &str,
        events: Vec<PreparedEvent>,
        wait: bool,
    ) -> Result<Appending> {
        let done = self.append(org, events, wait).await;
        Ok(Box::pin(std::future::ready(done)))
    }

    /// [`enqueue`](Store::enqueue) for a batch that may be stored only if `after`, a
    /// batch enqueued before it, is: when `after` is not, this one fails with
    /// `OutOfOrder` and nothing of it is stored. `outcome` is set to this batch's fate
    /// before any batch enqueued after it is considered. Where the batches share a
    /// commit, they share its fate: a client's consecutive batches can go out in one
    /// fsync. A backend without a queue of its own appends here, once `after` is known.
    async fn enqueue_after(
        &self,
        org: &str,
        events: Vec<PreparedEvent>,
        wait: bool,
        after: Option<Outcome>,
        outcome: Outcome,
    ) -> Result<Appending> {
        // Here `after` was appended in its own `enqueue_after`, so its fate is known.
        if after.is_some_and(|a| a.stored() != Some(true)) {
            outcome.set(false);
            return Err(StoreError::out_of_order());
        }
        let done = self.append(org, events, wait).await;
        outcome.set(done.is_ok());
        Ok(Box::pin(std::future::ready(done)))
    }

    /// One page of events matching `filter`, by seq. Purged events are never returned.
    async fn search(&self, org: &str, filter: &Filter, page: PageRequest) -> Result<Page>;

    /// Retention: purges up to `limit` of `org`'s events received before `before_ms`,
    /// oldest first: from then on nothing returns them (SQLite removes their bodies and
    /// searchable columns at once; PostgreSQL hides them and `reclaim` removes them).
    /// Their seqs, times and leaves stay, so the tree, old checkpoints and proofs still
    /// verify. Returns how many were purged; 0 once nothing older is left.
    async fn purge(&self, org: &str, before_ms: i64, limit: usize) -> Result<u64>;

    /// Frees the disk space of purged events where `purge` only hid them (PostgreSQL:
    /// drops month partitions whose every event is purged). `now_ms` is the time of day.
    /// A no-op where `purge` already removed them (SQLite).
    async fn reclaim(&self, now_ms: i64) -> Result<Reclaimed> {
        let _ = now_ms;
        Ok(Reclaimed::default())
    }

    /// Sealed segments: compresses up to `max_frames` complete tiles (256 events each)
    /// of `org` that lie at least `keep_open` events behind its head, each in its own
    /// transaction-safe step; returns the events sealed (0 when nothing is due). Reads
    /// return the same bytes before and after. Backends without sealing return 0.
    async fn seal(&self, org: &str, keep_open: u64, max_frames: usize) -> Result<u64> {
        let _ = (org, keep_open, max_frames);
        Ok(0)
    }

    /// What sealing has done and has left for `org`, and what the store takes on disk.
    async fn sealing(&self, org: &str, keep_open: u64) -> Result<SealCounts> {
        let _ = (org, keep_open);
        Ok(SealCounts::default())
    }

    /// Bytes the store takes on disk (database files), where the backend can tell.
    async fn disk_bytes(&self) -> Result<Option<u64>> {
        Ok(None)
    }

    /// The current size and root of `org`'s tree.
    async fn tree_head(&self, org: &str) -> Result<TreeHead>;
    /// Hashes of complete subtrees of `org`'s tree, in the order asked.
    async fn node_hashes(&self, org: &str, ids: &[NodeId]) -> Result<Vec<Hash>>;
    /// Hashes of `count` consecutive complete subtrees at `level` from `first`: a
    /// tlog-tiles hash tile. Backends may read them in one go.
    async fn run_hashes(&self, org: &str, level: u32, first: u64, count: u64) -> Result<Vec<Hash>> {
        let ids: Vec<NodeId> = (first..first + count)
            .map(|index| NodeId { level, index })
            .collect();
        self.node_hashes(org, &ids).await
    }

    async fn save_checkpoint(&self, org: &str, size: u64, note: &str) -> Result<()>;
    /// Replaces the stored note of `org`'s checkpoint at `size` with `note`: the same
    /// checkpoint with witnesses' cosignatures added. False when no such checkpoint.
    async fn set_checkpoint_note(&self, org: &str, size: u64, note: &str) -> Result<bool>;
    async fn latest_checkpoint(&self, org: &str) -> Result<Option<StoredCheckpoint>>;
    /// The largest checkpoint of `org` whose size is at most `size`.
    async fn checkpoint_at_most(&self, org: &str, size: u64) -> Result<Option<StoredCheckpoint>>;
    /// Orgs whose tree has grown past their latest checkpoint.
    async fn stale_checkpoints(&self) -> Result<Vec<(String, TreeHead)>>;

    /// Stores a new export job (status `queued`).
    async fn create_export(&self, job: ExportJob) -> Result<()>;
    /// One export of `org`; another org's export is `None`.
    async fn get_export(&self, org: &str, id: &str) -> Result<Option<ExportJob>>;
    /// `org`'s exports, newest first.
    async fn list_exports(&self, org: &str, limit: usize) -> Result<Vec<ExportJob>>;
    /// Leases the oldest runnable export to `owner` until `lease_until_ms`: a queued
    /// one, or a running one whose lease has lapsed (its runner died). Counts the attempt.
    async fn claim_export(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Option<ExportJob>>;
    /// Records rows written and extends the lease; `false` when `owner` no longer holds it.
    async fn export_progress(
        &self,
        id: &str,
        owner: &str,
        rows: u64,
        lease_until_ms: i64,
    ) -> Result<bool>;
    /// Ends a run `owner` holds; `None` when the lease was lost (nothing changes).
    async fn finish_export(
        &self,
        id: &str,
        owner: &str,
        outcome: ExportOutcome,
        now_ms: i64,
    ) -> Result<Option<ExportJob>>;
    /// Succeeded exports whose `expires_ms` has passed.
    async fn exports_due_expiry(&self, now_ms: i64) -> Result<Vec<ExportJob>>;
    /// Marks an export `expired` (after its file is deleted).
    async fn mark_export_expired(&self, id: &str) -> Result<()>;

    /// Creates `dest`, or replaces the configuration and credentials of the org's
    /// destination of that name, keeping its delivery state; returns it as stored and
    /// whether it is new.
    async fn put_destination(&self, dest: Destination) -> Result<(Destination, bool)>;
    async fn get_destination(&self, org: &str, name: &str) -> Result<Option<Destination>>;
    /// `org`'s destinations by name, or every org's when `org` is `None`.
    async fn list_destinations(&self, org: Option<&str>) -> Result<Vec<Destination>>;
    /// Removes a destination; `false` if there was none.
    async fn delete_destination(&self, org: &str, name: &str) -> Result<bool>;
    /// Applies `update`; `false` (nothing changed) when the destination is gone or the
    /// update does not follow from its state.
    async fn update_delivery(&self, org: &str, name: &str, update: DeliveryUpdate) -> Result<bool>;

    /// Takes the named lease for `owner` until `until_ms`, or renews it when `owner`
    /// already holds it; `false` while another owner holds it unexpired. Background work
    /// that must run on one node at a time (a destination's delivery, checkpoint
    /// signing) runs only while its lease is held.
    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool>;
    /// Gives the lease up at once if `owner` holds it (another node may take it).
    async fn release_lease(&self, name: &str, owner: &str) -> Result<()>;

    /// Whether the store can serve requests (for readiness probes).
    async fn ping(&self) -> Result<()>;

    /// Stops taking writes and blocks until everything already accepted is committed.
    fn close(&self) {}
}
