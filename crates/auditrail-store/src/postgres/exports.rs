//! Export jobs on PostgreSQL. A node claims the oldest runnable job with
//! `FOR UPDATE SKIP LOCKED`, so nodes polling at once never wait on each other and never
//! take the same job; a job whose runner stopped renewing its lease becomes runnable
//! again once the lease lapses.

use tokio_postgres::{Client, Row};

use crate::error::Pg;
use crate::sql::{EXPORT_COLS, EXPORT_FROM};
use crate::{ExportJob, ExportOutcome, ExportStatus, Result, StoreError};

fn row(r: &Row) -> ExportJob {
    ExportJob {
        id: r.get(0),
        org: r.get(1),
        status: ExportStatus::parse(r.get(2)).unwrap_or(ExportStatus::Failed),
        request: r.get(3),
        requester: r.get(4),
        row_count: r.get::<_, i64>(5).max(0) as u64,
        bytes: r.get::<_, Option<i64>>(6).map(|b| b.max(0) as u64),
        sha256: r.get(7),
        error: r.get(8),
        checkpoint_size: r.get::<_, Option<i64>>(9).map(|b| b.max(0) as u64),
        checkpoint: r.get(10),
        file: r.get(11),
        attempts: r.get::<_, i32>(12).max(0) as u32,
        created_ms: r.get(13),
        started_ms: r.get(14),
        completed_ms: r.get(15),
        expires_ms: r.get(16),
    }
}

pub(super) async fn create(c: &Client, org_num: i64, job: &ExportJob) -> Result<()> {
    c.execute(
        "INSERT INTO exports (id, org_num, status, request, requester, created_ms) VALUES ($1, $2, 'queued', $3, $4, $5)",
        &[&job.id, &org_num, &job.request, &job.requester, &job.created_ms],
    )
    .await
    .pg("create export")?;
    Ok(())
}

/// One export by id, limited to `org_num` when given.
pub(super) async fn get(c: &Client, org_num: Option<i64>, id: &str) -> Result<Option<ExportJob>> {
    let r = c
        .query_opt(
            &format!(
                "SELECT {EXPORT_COLS} {EXPORT_FROM} WHERE e.id = $1 AND ($2::bigint IS NULL OR e.org_num = $2)"
            ),
            &[&id, &org_num],
        )
        .await
        .pg("read export")?;
    Ok(r.as_ref().map(row))
}

pub(super) async fn list(c: &Client, org_num: i64, limit: usize) -> Result<Vec<ExportJob>> {
    let rows = c
        .query(
            &format!("SELECT {EXPORT_COLS} {EXPORT_FROM} WHERE e.org_num = $1 ORDER BY e.created_ms DESC, e.id DESC LIMIT $2"),
            &[&org_num, &(limit.min(i64::MAX as usize) as i64)],
        )
        .await
        .pg("list exports")?;
    Ok(rows.iter().map(row).collect())
}

pub(super) async fn claim(
    c: &Client,
    owner: &str,
    now_ms: i64,
    until: i64,
) -> Result<Option<ExportJob>> {
    let id: Option<String> = c
        .query_opt(
            "UPDATE exports SET status = 'running', lease_owner = $1, lease_until = $3, attempts = attempts + 1, \
             row_count = 0, started_ms = $2 \
             WHERE id = (SELECT id FROM exports WHERE status = 'queued' OR (status = 'running' AND lease_until < $2) \
                         ORDER BY created_ms, id LIMIT 1 FOR UPDATE SKIP LOCKED) \
             RETURNING id",
            &[&owner, &now_ms, &until],
        )
        .await
        .pg("claim export")?
        .map(|r| r.get(0));
    match id {
        Some(id) => get(c, None, &id).await,
        None => Ok(None),
    }
}

pub(super) async fn progress(
    c: &Client,
    id: &str,
    owner: &str,
    rows: u64,
    until: i64,
) -> Result<bool> {
    let n = c
        .execute(
            "UPDATE exports SET row_count = $3, lease_until = $4 WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
            &[&id, &owner, &(rows as i64), &until],
        )
        .await
        .pg("record export progress")?;
    Ok(n == 1)
}

pub(super) async fn finish(
    c: &Client,
    id: &str,
    owner: &str,
    outcome: &ExportOutcome,
    now_ms: i64,
) -> Result<Option<ExportJob>> {
    let n = match outcome {
        ExportOutcome::Succeeded {
            rows,
            bytes,
            sha256,
            file,
            checkpoint_size,
            checkpoint,
            expires_ms,
        } => c.execute(
            "UPDATE exports SET status = 'succeeded', row_count = $3, bytes = $4, sha256 = $5, file = $6, \
             checkpoint_size = $7, checkpoint = $8, expires_ms = $9, completed_ms = $10, error = NULL, lease_owner = NULL \
             WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
            &[&id, &owner, &(*rows as i64), &(*bytes as i64), sha256, file, &(*checkpoint_size as i64), checkpoint, expires_ms, &now_ms],
        )
        .await,
        ExportOutcome::Failed { error } => c.execute(
            "UPDATE exports SET status = 'failed', error = $3, completed_ms = $4, lease_owner = NULL \
             WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
            &[&id, &owner, error, &now_ms],
        )
        .await,
    }
        .pg("finish export")?;
    if n == 0 {
        return Ok(None);
    }
    get(c, None, id)
        .await?
        .ok_or(StoreError::NotFound { what: "export" })
        .map(Some)
}

pub(super) async fn due_expiry(c: &Client, now_ms: i64) -> Result<Vec<ExportJob>> {
    let rows = c
        .query(
            &format!("SELECT {EXPORT_COLS} {EXPORT_FROM} WHERE e.status = 'succeeded' AND e.expires_ms <= $1 ORDER BY e.expires_ms LIMIT 1000"),
            &[&now_ms],
        )
        .await
        .pg("list expiring exports")?;
    Ok(rows.iter().map(row).collect())
}

pub(super) async fn mark_expired(c: &Client, id: &str) -> Result<()> {
    c.execute(
        "UPDATE exports SET status = 'expired' WHERE id = $1 AND status = 'succeeded'",
        &[&id],
    )
    .await
    .pg("expire export")?;
    Ok(())
}
