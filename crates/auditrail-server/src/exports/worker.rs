//! The export worker: leases queued jobs through the store (so several nodes can share
//! one database), runs at most `workers` at once, and expires old files.
//!
//! A job writes `<id>.part`, fsyncs it, and only then renames it to its final name and
//! marks the job succeeded: a process that dies mid-export leaves a `.part` that the
//! next run overwrites, never a truncated file marked done. While running, the job
//! reports rows written and renews its lease every `HEARTBEAT`.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use auditrail_export::{ExportError, ExportRequest, Plan};
use auditrail_store::{ExportJob, ExportOutcome, StoreError};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};

use super::{notify, now_ms};
use crate::App;
use auditrail_service::ingest::record_audit_event;

const HEARTBEAT: Duration = Duration::from_secs(1);
/// A lease outlives several missed heartbeats before another node may take the job.
const LEASE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_secs(2);
/// Runs after which a job that keeps dying is marked failed instead of retried.
const MAX_ATTEMPTS: u32 = 5;
/// How long shutdown waits for running exports; one cut short keeps its lease, which
/// lapses, and the job runs again (here or on another node).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

fn lease_until() -> i64 {
    now_ms() + LEASE.as_millis() as i64
}

pub(crate) async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(app.settings.exports.workers.max(1)));
    if let Err(e) = std::fs::create_dir_all(&app.settings.exports.dir) {
        tracing::error!(dir = %app.settings.exports.dir.display(), error = %e, "cannot create the exports directory");
    }
    let expiry_every =
        (app.settings.exports.ttl / 4).clamp(Duration::from_millis(200), Duration::from_secs(60));
    let mut expiry = tokio::time::interval(expiry_every);
    expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Every running export, so shutdown can wait for them.
    let mut jobs = tokio::task::JoinSet::new();
    loop {
        while jobs.try_join_next().is_some() {}
        while let Ok(slot) = slots.clone().try_acquire_owned() {
            match app
                .store
                .claim_export(&app.node_id, now_ms(), lease_until())
                .await
            {
                Ok(Some(job)) => {
                    let app = app.clone();
                    jobs.spawn(async move {
                        run_job(&app, job).await;
                        drop(slot);
                        app.exports.wake.notify_one();
                    });
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "could not claim an export");
                    break;
                }
            }
        }
        tokio::select! {
            _ = app.exports.wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
            _ = expiry.tick() => expire(&app).await,
            _ = stop.changed() => break,
        }
    }
    let finished = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while jobs.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            running = jobs.len(),
            "exports still running at shutdown were stopped; they will run again"
        );
        jobs.shutdown().await;
    }
}

/// Deletes files past their expiry, then marks their jobs `expired`.
pub(crate) async fn expire(app: &App) {
    let due = match app.store.exports_due_expiry(now_ms()).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "could not list expiring exports");
            return;
        }
    };
    for job in due {
        if let Some(f) = &job.file {
            let _ = std::fs::remove_file(app.settings.exports.dir.join(proof_name(f)));
            let path = app.settings.exports.dir.join(f);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "could not delete expired export");
                    continue;
                }
            }
        }
        if let Err(e) = app.store.mark_export_expired(&job.id).await {
            tracing::warn!(export = job.id, error = %e, "could not mark export expired");
        }
    }
}

enum Failure {
    /// The store is unavailable or the lease is gone: leave the job for a later run.
    Retry(String),
    /// The job cannot succeed as asked (or the disk failed): it ends `failed`.
    Fatal(String),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Retry(e.to_string())
    }
}

async fn run_job(app: &App, job: ExportJob) {
    let owner = app.node_id.clone();
    let outcome = if job.attempts > MAX_ATTEMPTS {
        Err(Failure::Fatal(format!(
            "gave up after {MAX_ATTEMPTS} interrupted runs"
        )))
    } else {
        produce(app, &job).await
    };
    let outcome = match outcome {
        Ok(o) => o,
        Err(Failure::Retry(why)) => {
            tracing::warn!(
                export = job.id,
                error = why,
                "export interrupted; it will run again"
            );
            return;
        }
        Err(Failure::Fatal(error)) => {
            tracing::warn!(export = job.id, error, "export failed");
            ExportOutcome::Failed { error }
        }
    };
    let done = match app
        .store
        .finish_export(&job.id, &owner, outcome, now_ms())
        .await
    {
        Ok(Some(done)) => done,
        Ok(None) => return, // another node took the job over
        Err(e) => {
            tracing::warn!(export = job.id, error = %e, "could not record the export's end; it will run again");
            return;
        }
    };
    let outcome = if done.status == auditrail_store::ExportStatus::Succeeded {
        app.metrics.export_rows.inc_by(done.row_count);
        "succeeded"
    } else {
        "failed"
    };
    app.metrics
        .exports_finished
        .get_or_create(&crate::metrics::Outcome { outcome })
        .inc();
    announce(app, &done).await;
}

/// Writes the file; returns the outcome to record.
async fn produce(app: &App, job: &ExportJob) -> Result<ExportOutcome, Failure> {
    let req: ExportRequest = serde_json::from_str(&job.request)
        .map_err(|e| Failure::Fatal(format!("stored request is unreadable: {e}")))?;
    let max_range = app.settings.exports.max_range.as_micros() as i64;
    let filter = req
        .validate(max_range)
        .map_err(|e| Failure::Fatal(e.to_string()))?;
    // The export is cut at a freshly signed checkpoint: every row is in the tree it signs.
    let (size, checkpoint) = super::cut(app, &job.org)
        .await
        .map_err(|e| Failure::Retry(e.message))?;
    let dir = &app.settings.exports.dir;
    std::fs::create_dir_all(dir).map_err(|e| Failure::Fatal(format!("exports directory: {e}")))?;
    let part = dir.join(format!("{}.part", job.id));
    let file =
        std::fs::File::create(&part).map_err(|e| Failure::Fatal(format!("create file: {e}")))?;
    let ocsf = crate::ocsf::mapper(app, &job.org, req.format.is_ocsf())
        .await
        .map_err(Failure::Retry)?
        .unwrap_or_default();
    let plan = Plan {
        org: job.org.clone(),
        filter,
        upto_seq: size,
        format: req.format,
        layout: req.layout,
        gzip: req.gzip,
        ocsf,
    };
    let rows = Arc::new(AtomicU64::new(0));
    let work = auditrail_export::write_file(app.store.clone(), plan, file, rows.clone());
    tokio::pin!(work);
    let mut beat = tokio::time::interval(HEARTBEAT);
    beat.tick().await;
    let result = loop {
        tokio::select! {
            r = &mut work => break r,
            _ = beat.tick() => {
                let n = rows.load(Ordering::Relaxed);
                match app.store.export_progress(&job.id, &app.node_id, n, lease_until()).await {
                    Ok(true) => {}
                    Ok(false) => return Err(Failure::Retry("lease lost to another node".into())),
                    Err(e) => tracing::warn!(export = job.id, error = %e, "could not record progress"),
                }
            }
        }
    };
    let summary = match result {
        Ok(s) => s,
        Err(ExportError::Store(e)) => return Err(Failure::Retry(e.to_string())),
        Err(e) => return Err(Failure::Fatal(e.to_string())),
    };
    let name = req.file_name(&job.id);
    // The proof goes into place first: a published file always has its proof beside it.
    let proof = auditrail_export::proof::build(
        app.store.as_ref(),
        &job.org,
        size,
        &summary.seqs,
        &checkpoint,
    )
    .await
    .map_err(|e| Failure::Retry(format!("building the proof: {e}")))?;
    let proof_part = dir.join(format!("{}.proof.part", job.id));
    std::fs::write(&proof_part, proof.as_bytes())
        .and_then(|()| std::fs::File::open(&proof_part)?.sync_all())
        .map_err(|e| Failure::Fatal(format!("write proof: {e}")))?;
    publish(&proof_part, &dir.join(proof_name(&name)))
        .map_err(|e| Failure::Fatal(format!("publish proof: {e}")))?;
    publish(&part, &dir.join(&name)).map_err(|e| Failure::Fatal(format!("publish file: {e}")))?;
    let expires_ms = now_ms() + app.settings.exports.ttl.as_millis() as i64;
    Ok(ExportOutcome::Succeeded {
        rows: summary.rows,
        bytes: summary.bytes,
        sha256: summary.sha256,
        file: name,
        checkpoint_size: size,
        checkpoint,
        expires_ms,
    })
}

/// Where an export's proof is kept: beside it.
pub(crate) fn proof_name(file: &str) -> String {
    format!("{file}.proof")
}

/// Renames the finished file into place and fsyncs the directory so the name survives.
fn publish(part: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::rename(part, to)?;
    if let Some(dir) = to.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Records the end in the org's log, emails the requester, calls the webhook.
async fn announce(app: &App, job: &ExportJob) {
    let requester: Value = serde_json::from_str(&job.requester).unwrap_or(Value::Null);
    let req: Option<ExportRequest> = serde_json::from_str(&job.request).ok();
    let ok = job.status == auditrail_store::ExportStatus::Succeeded;
    let (action, outcome) = if ok {
        ("completeExport", "success")
    } else {
        ("failExport", "failure")
    };
    let mut details = json!({"row_count": job.row_count, "bytes": job.bytes, "sha256": job.sha256, "checkpoint_size": job.checkpoint_size});
    if let Some(e) = &job.error {
        details = json!({"error": e});
    }
    if let Err(e) = record_audit_event(
        app,
        &job.org,
        requester,
        action,
        json!({"type": "AUDIT_JOB", "id": job.id}),
        details,
        outcome,
    )
    .await
    {
        tracing::warn!(
            export = job.id,
            error = %e,
            "could not record the export's end in the org's log"
        );
    }
    let link = match job.expires_ms {
        Some(exp) if ok => super::signed_link(app, &job.org, &job.id, exp.div_euclid(1000))
            .await
            .ok(),
        _ => None,
    };
    let to = req.as_ref().and_then(|r| r.notify_email.clone());
    if let (Some(smtp), Some(to)) = (&app.settings.exports.smtp, to) {
        let (subject, body) = message(job, req.as_ref(), link.as_deref());
        if let Err(e) = notify::email(smtp, &to, &subject, body).await {
            tracing::warn!(
                export = job.id,
                error = e,
                "could not email the export result"
            );
            app.metrics.export_notifications_failed.inc();
        }
    }
    if let Ok(Some(hook)) =
        auditrail_service::sealed::get(app, &notify::webhook_setting(&job.org)).await
        && let Ok(hook) = serde_json::from_str::<notify::Webhook>(&hook)
    {
        let body = json!({"type": if ok { "export.succeeded" } else { "export.failed" }, "export": crate::routes::exports::view(app, job), "download_url": link}).to_string();
        if let Err(e) = notify::call_webhook(&app.settings.outbound, &hook, body).await {
            tracing::warn!(export = job.id, error = e, "export webhook failed");
            app.metrics.export_notifications_failed.inc();
            if e.starts_with("outbound address refused") {
                // The webhook's name now resolves somewhere the policy refuses: the
                // org's own log says so.
                let _ = auditrail_service::ingest::record_audit_event(
                    app,
                    &job.org,
                    json!({"id": "auditrail", "type": "SYSTEM"}),
                    "callExportWebhook",
                    json!({"type": "AUDIT_JOB", "id": "export-webhook"}),
                    json!({"export_id": job.id, "error": e}),
                    "failure",
                )
                .await;
            }
        }
    }
}

fn message(job: &ExportJob, req: Option<&ExportRequest>, link: Option<&str>) -> (String, String) {
    let range = req
        .map(|r| format!("{} to {}", r.from, r.to))
        .unwrap_or_default();
    match link {
        Some(link) => (
            format!("Your audit log export for {} is ready", job.org),
            format!(
                "The audit log export {id} of org {org} ({range}) is ready.\r\n\r\n\
                 Rows: {rows}\r\nSize: {bytes} bytes\r\nSHA-256: {sha}\r\n\r\n\
                 Download it (the link works until {until}):\r\n{link}\r\n",
                id = job.id,
                org = job.org,
                rows = job.row_count,
                bytes = job.bytes.unwrap_or(0),
                sha = job.sha256.as_deref().unwrap_or(""),
                until = job
                    .expires_ms
                    .map(auditrail_core::time::format_millis)
                    .unwrap_or_default(),
            ),
        ),
        None => (
            format!("Your audit log export for {} failed", job.org),
            format!(
                "The audit log export {} of org {} ({range}) failed: {}\r\n\r\nRequest it again; if it keeps failing, tell your auditrail operator.\r\n",
                job.id,
                job.org,
                job.error.as_deref().unwrap_or("unknown error")
            ),
        ),
    }
}
