//! Sealing in the background: each org's complete tiles at least `keep_open` events
//! behind its head are compressed into sealed frames (see the store's `seal`), a few at a
//! time, pausing between steps so sealing takes at most about a third of one core and
//! ingest keeps the rest. With several nodes, only the holder of the `sealing` lease
//! seals.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::App;
use crate::error::ApiResult;

pub const LEASE: &str = "sealing";
/// Tiles sealed per step (one write transaction of about 2 ms, which is what an append
/// may wait behind it; two made the ingest bench's p99 about 1.5× its p99 without
/// sealing in one run, one left it within the noise).
const FRAMES_PER_STEP: usize = 1;
const FRAMES_PER_STEP_ALONE: usize = 16;
/// How often a long sealing run renews its lease (at most; a third of `lease_ttl` if
/// that is shorter).
const RENEW_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
pub struct SealingSettings {
    /// The newest events of each org kept as they are (never sealed); 0 disables sealing.
    pub keep_open: u64,
    /// The pause after each step, as a multiple of the step's own time (2 ≈ a third of
    /// one core).
    pub pause_factor: u32,
    /// How often orgs are looked at once nothing is left to seal.
    pub interval: Duration,
}

impl Default for SealingSettings {
    fn default() -> Self {
        Self {
            keep_open: 4_096,
            pause_factor: 2,
            interval: Duration::from_secs(30),
        }
    }
}

/// Seals what is due in every org (all of it unless `stop` changes), pausing
/// `pause_factor` times each step's time after it; returns the events sealed.
pub async fn seal_due(
    app: &App,
    stop: Option<&watch::Receiver<bool>>,
    pause_factor: u32,
) -> ApiResult<u64> {
    let s = app.settings.sealing;
    if s.keep_open == 0 || !auditrail_service::lease::hold(app, LEASE).await {
        return Ok(0);
    }
    let mut total = 0;
    let mut renewed = Instant::now();
    // Without pauses nothing is meant to run beside it (`auditrail seal`): larger steps.
    let frames = if pause_factor == 0 {
        FRAMES_PER_STEP_ALONE
    } else {
        FRAMES_PER_STEP
    };
    for org in app.store.list_orgs().await? {
        loop {
            if stop.is_some_and(|s| *s.borrow()) {
                return Ok(total);
            }
            let started = Instant::now();
            let n = app.store.seal(&org.id, s.keep_open, frames).await?;
            if n == 0 {
                break;
            }
            total += n;
            app.metrics.events_sealed.inc_by(n);
            tokio::time::sleep(started.elapsed() * pause_factor).await;
            if renewed.elapsed() >= RENEW_EVERY.min(app.config.lease_ttl / 3) {
                if !auditrail_service::lease::hold(app, LEASE).await {
                    return Ok(total);
                }
                renewed = Instant::now();
            }
        }
    }
    Ok(total)
}

/// What sealing has done and has left, over every org, and what the store takes on disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Storage {
    pub events: u64,
    pub sealed: u64,
    pub backlog: u64,
    pub disk_bytes: Option<u64>,
}

impl Storage {
    pub fn bytes_per_event(&self) -> Option<f64> {
        self.disk_bytes
            .filter(|_| self.events > 0)
            .map(|b| b as f64 / self.events as f64)
    }
}

/// One org's part of [`Storage`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OrgStorage {
    pub org: String,
    pub events: u64,
    pub sealed: u64,
    pub open: u64,
    pub backlog: u64,
}

/// Reads the figures of [`Storage`] and sets the metrics from them.
pub async fn storage(app: &App) -> ApiResult<Storage> {
    Ok(storage_by_org(app).await?.0)
}

/// [`storage`], with each org's part.
pub async fn storage_by_org(app: &App) -> ApiResult<(Storage, Vec<OrgStorage>)> {
    let keep_open = app.settings.sealing.keep_open;
    let mut s = Storage::default();
    let mut orgs = Vec::new();
    for org in app.store.list_orgs().await? {
        let events = app.store.tree_head(&org.id).await?.size;
        let c = app.store.sealing(&org.id, keep_open).await?;
        s.events += events;
        s.sealed += c.sealed;
        s.backlog += c.backlog;
        orgs.push(OrgStorage {
            org: org.id,
            events,
            sealed: c.sealed,
            open: events.saturating_sub(c.sealed),
            backlog: c.backlog,
        });
    }
    s.disk_bytes = app.store.disk_bytes().await?;
    let m = &app.metrics;
    m.stored_events.set(s.events as i64);
    m.sealed_events.set(s.sealed as i64);
    m.sealing_backlog.set(s.backlog as i64);
    if let Some(b) = s.disk_bytes {
        m.store_bytes.set(b as i64);
    }
    if let Some(b) = s.bytes_per_event() {
        m.store_bytes_per_event.set(b);
    }
    Ok((s, orgs))
}

pub(crate) async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(app.settings.sealing.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        match seal_due(&app, Some(&stop), app.settings.sealing.pause_factor).await {
            Ok(n) if n > 0 => tracing::info!(events = n, "sealed"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = e.message, "sealing did not finish; it retries"),
        }
        if let Err(e) = storage(&app).await {
            tracing::warn!(error = e.message, "reading the storage figures failed");
        }
    }
    auditrail_service::lease::release(&app, LEASE).await;
}
