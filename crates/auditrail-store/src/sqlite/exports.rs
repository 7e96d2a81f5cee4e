//! Export jobs on SQLite. Leases matter little with one process per data dir (the lock
//! file guarantees it), but the same rules as PostgreSQL keep the worker backend-blind;
//! on open, every lease left by a previous process is voided so its jobs run again now.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::error::Context;
use crate::sql::{EXPORT_COLS, EXPORT_FROM};
use crate::{ExportJob, ExportOutcome, ExportStatus, Result, StoreError};

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ExportJob> {
    let status: String = r.get(2)?;
    Ok(ExportJob {
        id: r.get(0)?,
        org: r.get(1)?,
        status: ExportStatus::parse(&status).unwrap_or(ExportStatus::Failed),
        request: r.get(3)?,
        requester: r.get(4)?,
        row_count: r.get::<_, i64>(5)? as u64,
        bytes: r.get::<_, Option<i64>>(6)?.map(|b| b as u64),
        sha256: r.get(7)?,
        error: r.get(8)?,
        checkpoint_size: r.get::<_, Option<i64>>(9)?.map(|b| b as u64),
        checkpoint: r.get(10)?,
        file: r.get(11)?,
        attempts: r.get(12)?,
        created_ms: r.get(13)?,
        started_ms: r.get(14)?,
        completed_ms: r.get(15)?,
        expires_ms: r.get(16)?,
    })
}

pub(super) fn void_leases(conn: &Connection) -> Result<()> {
    conn.execute(
        "UPDATE exports SET lease_until = 0 WHERE status = 'running'",
        [],
    )
    .op("void export leases")?;
    conn.execute("DELETE FROM leases", []).op("void leases")?;
    Ok(())
}

pub(super) fn create(t: &Transaction<'_>, org_num: i64, job: &ExportJob) -> Result<()> {
    t.execute(
        "INSERT INTO exports (id, org_num, status, request, requester, created_ms) VALUES (?1, ?2, 'queued', ?3, ?4, ?5)",
        params![job.id, org_num, job.request, job.requester, job.created_ms],
    )
    .op("create export")?;
    Ok(())
}

fn by_id(c: &Connection, id: &str) -> Result<Option<ExportJob>> {
    c.query_row(
        &format!("SELECT {EXPORT_COLS} {EXPORT_FROM} WHERE e.id = ?1"),
        [id],
        row,
    )
    .optional()
    .op("read export")
}

pub(super) fn get(c: &Connection, org_num: i64, id: &str) -> Result<Option<ExportJob>> {
    c.query_row(
        &format!("SELECT {EXPORT_COLS} {EXPORT_FROM} WHERE e.id = ?1 AND e.org_num = ?2"),
        params![id, org_num],
        row,
    )
    .optional()
    .op("read export")
}

pub(super) fn list(c: &Connection, org_num: i64, limit: usize) -> Result<Vec<ExportJob>> {
    let mut s = c
        .prepare(&format!(
            "SELECT {EXPORT_COLS} {EXPORT_FROM} WHERE e.org_num = ?1 ORDER BY e.created_ms DESC, e.id DESC LIMIT ?2"
        ))
        .op("list exports")?;
    let rows = s
        .query_map(params![org_num, limit as i64], row)
        .op("list exports")?;
    rows.collect::<rusqlite::Result<_>>().op("list exports")
}

pub(super) fn claim(
    t: &Transaction<'_>,
    owner: &str,
    now_ms: i64,
    until: i64,
) -> Result<Option<ExportJob>> {
    let id: Option<String> = t
        .query_row(
            "SELECT id FROM exports WHERE status = 'queued' OR (status = 'running' AND lease_until < ?1) ORDER BY created_ms, id LIMIT 1",
            [now_ms],
            |r| r.get(0),
        )
        .optional()
        .op("find runnable export")?;
    let Some(id) = id else { return Ok(None) };
    t.execute(
        "UPDATE exports SET status = 'running', lease_owner = ?2, lease_until = ?3, attempts = attempts + 1, \
         row_count = 0, started_ms = ?4 WHERE id = ?1",
        params![id, owner, until, now_ms],
    )
    .op("claim export")?;
    by_id(t, &id)
}

pub(super) fn progress(
    t: &Transaction<'_>,
    id: &str,
    owner: &str,
    rows: u64,
    until: i64,
) -> Result<bool> {
    let n = t
        .execute(
            "UPDATE exports SET row_count = ?3, lease_until = ?4 WHERE id = ?1 AND lease_owner = ?2 AND status = 'running'",
            params![id, owner, rows as i64, until],
        )
        .op("record export progress")?;
    Ok(n == 1)
}

pub(super) fn finish(
    t: &Transaction<'_>,
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
        } => t.execute(
            "UPDATE exports SET status = 'succeeded', row_count = ?3, bytes = ?4, sha256 = ?5, file = ?6, \
             checkpoint_size = ?7, checkpoint = ?8, expires_ms = ?9, completed_ms = ?10, error = NULL, lease_owner = NULL \
             WHERE id = ?1 AND lease_owner = ?2 AND status = 'running'",
            params![id, owner, *rows as i64, *bytes as i64, sha256, file, *checkpoint_size as i64, checkpoint, expires_ms, now_ms],
        ),
        ExportOutcome::Failed { error } => t.execute(
            "UPDATE exports SET status = 'failed', error = ?3, completed_ms = ?4, lease_owner = NULL \
             WHERE id = ?1 AND lease_owner = ?2 AND status = 'running'",
            params![id, owner, error, now_ms],
        ),
    }
    .op("finish export")?;
    if n == 0 {
        return Ok(None);
    }
    by_id(t, id)?
        .ok_or(StoreError::NotFound { what: "export" })
        .map(Some)
}

pub(super) fn due_expiry(c: &Connection, now_ms: i64) -> Result<Vec<ExportJob>> {
    let mut s = c
        .prepare(&format!(
            "SELECT {EXPORT_COLS} {EXPORT_FROM} WHERE e.status = 'succeeded' AND e.expires_ms <= ?1 ORDER BY e.expires_ms LIMIT 1000"
        ))
        .op("list expiring exports")?;
    let rows = s.query_map([now_ms], row).op("list expiring exports")?;
    rows.collect::<rusqlite::Result<_>>()
        .op("list expiring exports")
}

pub(super) fn mark_expired(t: &Transaction<'_>, id: &str) -> Result<()> {
    t.execute(
        "UPDATE exports SET status = 'expired' WHERE id = ?1 AND status = 'succeeded'",
        [id],
    )
    .op("expire export")?;
    Ok(())
}
