//! Export jobs as the store keeps them. Times are milliseconds since the epoch.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Expired,
}

impl ExportStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExportStatus::Queued => "queued",
            ExportStatus::Running => "running",
            ExportStatus::Succeeded => "succeeded",
            ExportStatus::Failed => "failed",
            ExportStatus::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => ExportStatus::Queued,
            "running" => ExportStatus::Running,
            "succeeded" => ExportStatus::Succeeded,
            "failed" => ExportStatus::Failed,
            "expired" => ExportStatus::Expired,
            _ => return None,
        })
    }
}

/// One export job. `request` and `requester` are JSON documents the server owns (the
/// filters and format asked for; the actor who asked); the store only keeps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportJob {
    pub id: String,
    pub org: String,
    pub status: ExportStatus,
    pub request: String,
    pub requester: String,
    /// Rows written so far while running; the file's rows once succeeded.
    pub row_count: u64,
    pub bytes: Option<u64>,
    pub sha256: Option<String>,
    pub error: Option<String>,
    /// The tree size the export was cut at and its signed checkpoint.
    pub checkpoint_size: Option<u64>,
    pub checkpoint: Option<String>,
    /// The file's name inside the exports directory.
    pub file: Option<String>,
    pub attempts: u32,
    pub created_ms: i64,
    pub started_ms: Option<i64>,
    pub completed_ms: Option<i64>,
    pub expires_ms: Option<i64>,
}

impl ExportJob {
    /// A job waiting to run.
    pub fn queued(
        id: String,
        org: String,
        request: String,
        requester: String,
        now_ms: i64,
    ) -> Self {
        Self {
            id,
            org,
            status: ExportStatus::Queued,
            request,
            requester,
            row_count: 0,
            bytes: None,
            sha256: None,
            error: None,
            checkpoint_size: None,
            checkpoint: None,
            file: None,
            attempts: 0,
            created_ms: now_ms,
            started_ms: None,
            completed_ms: None,
            expires_ms: None,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportOutcome {
    Succeeded {
        rows: u64,
        bytes: u64,
        sha256: String,
        file: String,
        checkpoint_size: u64,
        checkpoint: String,
        expires_ms: i64,
    },
    Failed {
        error: String,
    },
}
