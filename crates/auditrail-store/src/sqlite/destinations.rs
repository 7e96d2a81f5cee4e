//! Destinations and their delivery state on SQLite.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::error::Context;
use crate::sql::{DESTINATION_COLS, DESTINATION_FROM};
use crate::{DeliveryUpdate, Destination, Result};

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Destination> {
    let first: Option<i64> = r.get(6)?;
    let last: Option<i64> = r.get(7)?;
    Ok(Destination {
        org: r.get(0)?,
        name: r.get(1)?,
        config: r.get(2)?,
        sealed_credentials: r.get(3)?,
        paused: r.get(4)?,
        delivered_seq: r.get::<_, i64>(5)? as u64,
        pending: first.zip(last).map(|(f, l)| (f as u64, l as u64)),
        last_error: r.get(8)?,
        last_error_ms: r.get(9)?,
        failing_since_ms: r.get(10)?,
        last_delivery_ms: r.get(11)?,
        created_ms: r.get(12)?,
        updated_ms: r.get(13)?,
    })
}

pub(super) fn get(c: &Connection, org_num: i64, name: &str) -> Result<Option<Destination>> {
    c.query_row(
        &format!(
            "SELECT {DESTINATION_COLS} {DESTINATION_FROM} WHERE d.org_num = ?1 AND d.name = ?2"
        ),
        params![org_num, name],
        row,
    )
    .optional()
    .op("read destination")
}

pub(super) fn list(c: &Connection, org_num: Option<i64>) -> Result<Vec<Destination>> {
    let mut st = c
        .prepare(&format!(
            "SELECT {DESTINATION_COLS} {DESTINATION_FROM} WHERE ?1 IS NULL OR d.org_num = ?1 ORDER BY o.id, d.name"
        ))
        .op("list destinations")?;
    st.query_map([org_num], row)
        .op("list destinations")?
        .collect::<rusqlite::Result<Vec<_>>>()
        .op("list destinations")
}

pub(super) fn put(
    t: &Transaction<'_>,
    org_num: i64,
    d: &Destination,
) -> Result<(Destination, bool)> {
    let updated = t
        .execute(
            "UPDATE destinations SET config = ?3, credentials = ?4, updated_ms = ?5 WHERE org_num = ?1 AND name = ?2",
            params![org_num, d.name, d.config, d.sealed_credentials, d.updated_ms],
        )
        .op("update destination")?;
    if updated == 0 {
        t.execute(
            "INSERT INTO destinations (org_num, name, config, credentials, paused, delivered_seq, created_ms, updated_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                org_num,
                d.name,
                d.config,
                d.sealed_credentials,
                d.paused,
                d.delivered_seq as i64,
                d.created_ms,
                d.updated_ms
            ],
        )
        .op("create destination")?;
    }
    let stored = get(t, org_num, &d.name)?.ok_or_else(|| {
        crate::StoreError::Corrupt("a destination vanished inside its transaction".into())
    })?;
    Ok((stored, updated == 0))
}

pub(super) fn delete(t: &Transaction<'_>, org_num: i64, name: &str) -> Result<bool> {
    let n = t
        .execute(
            "DELETE FROM destinations WHERE org_num = ?1 AND name = ?2",
            params![org_num, name],
        )
        .op("delete destination")?;
    Ok(n > 0)
}

pub(super) fn update(
    t: &Transaction<'_>,
    org_num: i64,
    name: &str,
    u: &DeliveryUpdate,
) -> Result<bool> {
    let n = match u {
        DeliveryUpdate::Pause(p) => t.execute(
            "UPDATE destinations SET paused = ?3 WHERE org_num = ?1 AND name = ?2",
            params![org_num, name, p],
        ),
        DeliveryUpdate::Begin { first, last } => t.execute(
            "UPDATE destinations SET pending_first = ?3, pending_last = ?4 \
             WHERE org_num = ?1 AND name = ?2 AND delivered_seq + 1 = ?3 AND ?4 >= ?3 \
             AND (pending_first IS NULL OR (pending_first = ?3 AND pending_last = ?4))",
            params![org_num, name, *first as i64, *last as i64],
        ),
        DeliveryUpdate::Delivered { last, at_ms } => t.execute(
            "UPDATE destinations SET delivered_seq = ?3, pending_first = NULL, pending_last = NULL, \
             last_error = NULL, last_error_ms = NULL, failing_since_ms = NULL, last_delivery_ms = ?4 \
             WHERE org_num = ?1 AND name = ?2 AND pending_last = ?3",
            params![org_num, name, *last as i64, at_ms],
        ),
        DeliveryUpdate::Failed { error, at_ms } => t.execute(
            "UPDATE destinations SET last_error = ?3, last_error_ms = ?4, \
             failing_since_ms = COALESCE(failing_since_ms, ?4) WHERE org_num = ?1 AND name = ?2",
            params![org_num, name, error, at_ms],
        ),
    }
    .op("update delivery")?;
    Ok(n > 0)
}
