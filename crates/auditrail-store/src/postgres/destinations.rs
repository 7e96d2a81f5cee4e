//! Destinations and their delivery state on PostgreSQL. Each update is one conditional
//! statement, so nodes racing on the same destination cannot both advance it.

use tokio_postgres::{Client, Row};

use crate::error::Pg;
use crate::sql::{DESTINATION_COLS, DESTINATION_FROM};
use crate::{DeliveryUpdate, Destination, Result, StoreError};

fn row(r: &Row) -> Destination {
    let first: Option<i64> = r.get(6);
    let last: Option<i64> = r.get(7);
    Destination {
        org: r.get(0),
        name: r.get(1),
        config: r.get(2),
        sealed_credentials: r.get(3),
        paused: r.get(4),
        delivered_seq: r.get::<_, i64>(5).max(0) as u64,
        pending: first.zip(last).map(|(f, l)| (f as u64, l as u64)),
        last_error: r.get(8),
        last_error_ms: r.get(9),
        failing_since_ms: r.get(10),
        last_delivery_ms: r.get(11),
        created_ms: r.get(12),
        updated_ms: r.get(13),
    }
}

pub(super) async fn get(c: &Client, org_num: i64, name: &str) -> Result<Option<Destination>> {
    let r = c
        .query_opt(
            &format!(
                "SELECT {DESTINATION_COLS} {DESTINATION_FROM} WHERE d.org_num = $1 AND d.name = $2"
            ),
            &[&org_num, &name],
        )
        .await
        .pg("read destination")?;
    Ok(r.as_ref().map(row))
}

pub(super) async fn list(c: &Client, org_num: Option<i64>) -> Result<Vec<Destination>> {
    let rows = c
        .query(
            &format!("SELECT {DESTINATION_COLS} {DESTINATION_FROM} WHERE $1::bigint IS NULL OR d.org_num = $1 ORDER BY o.id, d.name"),
            &[&org_num],
        )
        .await
        .pg("list destinations")?;
    Ok(rows.iter().map(row).collect())
}

pub(super) async fn put(c: &Client, org_num: i64, d: &Destination) -> Result<(Destination, bool)> {
    let created: bool = c
        .query_one(
            "INSERT INTO destinations (org_num, name, config, credentials, paused, delivered_seq, created_ms, updated_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (org_num, name) DO UPDATE SET config = excluded.config, credentials = excluded.credentials, \
             updated_ms = excluded.updated_ms \
             RETURNING (xmax = 0)",
            &[
                &org_num,
                &d.name,
                &d.config,
                &d.sealed_credentials,
                &d.paused,
                &(d.delivered_seq as i64),
                &d.created_ms,
                &d.updated_ms,
            ],
        )
        .await
        .pg("store destination")?
        .get(0);
    let stored = get(c, org_num, &d.name).await?.ok_or_else(|| {
        StoreError::Corrupt("a destination vanished right after it was stored".into())
    })?;
    Ok((stored, created))
}

pub(super) async fn delete(c: &Client, org_num: i64, name: &str) -> Result<bool> {
    let n = c
        .execute(
            "DELETE FROM destinations WHERE org_num = $1 AND name = $2",
            &[&org_num, &name],
        )
        .await
        .pg("delete destination")?;
    Ok(n > 0)
}

pub(super) async fn update(
    c: &Client,
    org_num: i64,
    name: &str,
    u: &DeliveryUpdate,
) -> Result<bool> {
    let n = match u {
        DeliveryUpdate::Pause(p) => c.execute(
            "UPDATE destinations SET paused = $3 WHERE org_num = $1 AND name = $2",
            &[&org_num, &name, p],
        )
        .await,
        DeliveryUpdate::Begin { first, last } => c.execute(
            "UPDATE destinations SET pending_first = $3, pending_last = $4 \
             WHERE org_num = $1 AND name = $2 AND delivered_seq + 1 = $3 AND $4 >= $3 \
             AND (pending_first IS NULL OR (pending_first = $3 AND pending_last = $4))",
            &[&org_num, &name, &(*first as i64), &(*last as i64)],
        )
        .await,
        DeliveryUpdate::Delivered { last, at_ms } => c.execute(
            "UPDATE destinations SET delivered_seq = $3, pending_first = NULL, pending_last = NULL, \
             last_error = NULL, last_error_ms = NULL, failing_since_ms = NULL, last_delivery_ms = $4 \
             WHERE org_num = $1 AND name = $2 AND pending_last = $3",
            &[&org_num, &name, &(*last as i64), at_ms],
        )
        .await,
        DeliveryUpdate::Failed { error, at_ms } => c.execute(
            "UPDATE destinations SET last_error = $3, last_error_ms = $4, \
             failing_since_ms = COALESCE(failing_since_ms, $4) WHERE org_num = $1 AND name = $2",
            &[&org_num, &name, error, at_ms],
        )
        .await,
    }
        .pg("update delivery")?;
    Ok(n > 0)
}
