//! Signs a checkpoint for every org whose log grew, every `checkpoint_interval`. With
//! several nodes on one database only the holder of the `checkpoints` lease signs; the
//! others stand by and one takes over once the holder stops renewing it.

use std::sync::Arc;
use std::time::Instant;

use auditrail_store::TreeHead;
use tokio::sync::watch;

use crate::App;
use crate::error::ApiError;

/// The latest signed checkpoint of `org` covering at least `min_size` events: the stored
/// one, or, when the log grew past it (or was never signed), one signed now for the
/// current head.
pub(crate) async fn covering(app: &App, org: &str, min_size: u64) -> Result<String, ApiError> {
    match app.store.latest_checkpoint(org).await? {
        Some(cp) if cp.size >= min_size => Ok(cp.note),
        _ => {
            let head = app.store.tree_head(org).await?;
            sign(app, org, head).await
        }
    }
}

/// Signs and stores the checkpoint for `head` of `org`, then has the org's witnesses
/// cosign it; returns the note with every signature it got.
pub(crate) async fn sign(app: &App, org: &str, head: TreeHead) -> Result<String, ApiError> {
    let note = auditrail_service::signing::sign_note(app, org, head.size, head.root)?;
    app.store.save_checkpoint(org, head.size, &note).await?;
    app.metrics.checkpoints_signed.inc();
    crate::witnesses::client::cosign(app, org, note, head.size).await
}

pub(crate) async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(app.settings.checkpoint_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut unsigned_since: Option<Instant> = None;
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.changed() => true,
        };
        if !auditrail_service::lease::hold(&app, CHECKPOINT_LEASE).await {
            app.metrics.checkpoint_age.set(0.0);
            unsigned_since = None;
            if stopping {
                break;
            }
            continue;
        }
        match app.store.stale_checkpoints().await {
            Ok(stale) => {
                let mut all_signed = true;
                for (org, head) in stale {
                    if let Err(e) = sign(&app, &org, head).await {
                        all_signed = false;
                        tracing::warn!(org, error = e.message, "could not sign checkpoint");
                    }
                }
                unsigned_since = if all_signed {
                    None
                } else {
                    unsigned_since.or(Some(Instant::now()))
                };
            }
            Err(e) => {
                unsigned_since = unsigned_since.or(Some(Instant::now()));
                tracing::warn!(error = %e, "could not list orgs needing checkpoints");
            }
        }
        let age = unsigned_since.map_or(0.0, |t| t.elapsed().as_secs_f64());
        app.metrics.checkpoint_age.set(age);
        if stopping {
            auditrail_service::lease::release(&app, CHECKPOINT_LEASE).await;
            break;
        }
    }
}

const CHECKPOINT_LEASE: &str = "checkpoints";
