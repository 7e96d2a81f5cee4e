use serde::{Deserialize, Serialize};

use auditrail_core::Hash;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewOrg {
    pub id: String,
    pub name: String,
    pub strict: bool,
    pub retention_days: Option<u32>,
    /// The org's first catalog version, stored with the org in one transaction.
    pub catalog: Option<NewCatalog>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Org {
    pub id: String,
    pub name: String,
    pub strict: bool,
    pub retention_days: Option<u32>,
    /// The name of the org's current catalog.
    pub catalog: Option<String>,
    /// Its version (1, 2, ...: each upload adds one).
    pub catalog_version: Option<u32>,
    pub created_at: String,
}

/// A catalog to store: its name and its document (JSON text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewCatalog {
    pub name: String,
    pub document: String,
}

/// One stored version of an org's catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCatalog {
    pub version: u32,
    pub name: String,
    pub document: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Ingest,
    Viewer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Viewer => "viewer",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ingest" => Role::Ingest,
            "viewer" => Role::Viewer,
            "admin" => Role::Admin,
            _ => return None,
        })
    }
}

/// An org API key. The secret is never stored; only its SHA-256.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: String,
    pub org: String,
    pub name: String,
    pub role: Role,
    pub secret_hash: [u8; 32],
    pub created_at: String,
    pub revoked_at: Option<String>,
}

impl std::fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRecord")
            .field("id", &self.id)
            .field("org", &self.org)
            .field("role", &self.role)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

/// The outcome of appending one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Accepted {
    pub id: String,
    pub seq: u64,
    /// The id had been accepted before; nothing new was stored.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    #[default]
    Desc,
    Asc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Continue after this seq (exclusive), in `order`.
    pub after_seq: Option<u64>,
    pub limit: usize,
    pub order: Order,
}

/// One stored event: its canonical text and leaf hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub seq: u64,
    pub body: String,
    pub leaf: Hash,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub events: Vec<StoredEvent>,
    /// The seq to continue after, when more may match.
    pub next_after: Option<u64>,
}

/// What one pass of reclaiming purged events removed from disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reclaimed {
    /// Whole partitions dropped (every event in them purged).
    pub partitions_dropped: u64,
    /// Purged event rows deleted from partitions that also hold kept events, and purged
    /// bodies removed from sealed frames.
    pub events_deleted: u64,
    /// Sealed frames whose every event was purged, dropped (their leaves archived).
    pub frames_dropped: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeHead {
    pub size: u64,
    pub root: Hash,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub size: u64,
    pub note: String,
    pub created_ms: i64,
}

/// What a group commit reports to whoever watches the writer (metrics).
#[derive(Debug, Clone, Copy)]
pub struct CommitStats {
    pub events: usize,
    pub seconds: f64,
}

pub type CommitObserver = std::sync::Arc<dyn Fn(CommitStats) + Send + Sync>;

/// Counts of one org's sealing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SealCounts {
    /// Events in sealed tiles.
    pub sealed: u64,
    /// Events in complete tiles old enough to seal that are not sealed yet.
    pub backlog: u64,
}
