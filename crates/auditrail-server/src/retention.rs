//! Retention: each org created with `retention_days` loses the events received longer
//! ago than that. Seqs, times and leaves stay, so checkpoints signed before the purge,
//! inclusion proofs and consistency proofs still verify; the purged events no longer
//! appear in search, exports or deliveries. On SQLite their bodies are removed at once;
//! on PostgreSQL they are hidden at once and their storage is reclaimed after the
//! purges, by dropping each month partition once every event in it is purged (see the
//! store's `reclaim`). With several nodes, only the holder of the `retention` lease
//! purges. Each purge is itself an event in the org's log.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;

use auditrail_core::time::format_millis;
use auditrail_store::Reclaimed;

use crate::App;
use crate::error::ApiResult;
use crate::exports::now_ms;
use auditrail_service::ingest::record_audit_event;

const LEASE: &str = "retention";
/// How often due events are looked for.
const INTERVAL: Duration = Duration::from_secs(600);
/// Events purged per statement, so appends are never held up for long.
const CHUNK: usize = 10_000;
const DAY_MS: i64 = 86_400_000;

/// Purges what is due at `now_ms` in every org with a retention period, if this node
/// holds the lease; returns how many events were purged.
pub async fn purge_due(app: &App, now_ms: i64) -> ApiResult<u64> {
    if !auditrail_service::lease::hold(app, LEASE).await {
        return Ok(0);
    }
    let mut total = 0;
    for org in app.store.list_orgs().await? {
        let Some(days) = org.retention_days else {
            continue;
        };
        let before = now_ms - i64::from(days) * DAY_MS;
        let mut purged = 0;
        loop {
            let n = app.store.purge(&org.id, before, CHUNK).await?;
            if n > 0 {
                app.tiles.forget_entries(&org.id);
            }
            purged += n;
            if n < CHUNK as u64 || !auditrail_service::lease::hold(app, LEASE).await {
                break;
            }
        }
        if purged > 0 {
            total += purged;
            app.metrics.events_purged.inc_by(purged);
            tracing::info!(org = org.id, purged, "retention purged event bodies");
            record_audit_event(
                app,
                &org.id,
                json!({"id": "auditrail-retention", "type": "SYSTEM"}),
                "purgeEvents",
                json!({"type": "AUDIT_LOG", "id": org.id}),
                json!({"retention_days": days, "received_before": format_millis(before), "events": purged}),
                "success",
            )
            .await?;
        }
    }
    if auditrail_service::lease::hold(app, LEASE).await {
        let r = app.store.reclaim(now_ms).await?;
        app.metrics.partitions_dropped.inc_by(r.partitions_dropped);
        if r != Reclaimed::default() {
            tracing::info!(
                partitions_dropped = r.partitions_dropped,
                events_deleted = r.events_deleted,
                "retention reclaimed purged events"
            );
        }
    }
    Ok(total)
}

pub(crate) async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        if let Err(e) = purge_due(&app, now_ms()).await {
            tracing::warn!(error = e.message, "retention did not finish; it retries");
        }
    }
    auditrail_service::lease::release(&app, LEASE).await;
}
