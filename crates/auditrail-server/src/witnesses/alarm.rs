//! A witness refused the org's checkpoint as inconsistent with what it cosigned before:
//! either the log forked (another history under the same key) or it was rolled back.
//! Everybody who can act is told: a metric, an event in the org's own log, an email to
//! the org's admins, the org's webhook.

use serde_json::json;

use super::Conflict;
use crate::App;
use crate::exports::notify;

pub(crate) async fn raise(app: &App, org: &str, witness: &str, c: &Conflict) {
    app.metrics.witness_conflicts.inc();
    tracing::error!(
        org,
        witness,
        size = c.checkpoint_size,
        status = c.status,
        detail = c.detail,
        "WITNESS CONFLICT: a witness refused the log's checkpoint as inconsistent"
    );
    let details = json!({
        "witness": witness,
        "checkpoint_size": c.checkpoint_size,
        "status": c.status,
        "detail": c.detail,
    });
    if let Err(e) = auditrail_service::ingest::record_audit_event(
        app,
        org,
        json!({"id": "auditrail", "type": "SYSTEM"}),
        "witnessConflict",
        json!({"type": "WITNESS", "id": witness}),
        details.clone(),
        "failure",
    )
    .await
    {
        tracing::warn!(org, error = %e, "could not record the witness conflict in the log");
    }
    let subject = format!("auditrail: witness {witness} refused the audit log of {org}");
    let body = format!(
        "The witness {witness} refused to cosign the checkpoint of {} events of the audit log of org {org}.\n\n{}\n\n\
         A witness refuses only a checkpoint that is inconsistent with one it cosigned before: the log \
         was rewritten (a fork) or rolled back. Treat the log as tampered with until this is explained.\n\n\
         Integrity page: {}/ui/integrity\n",
        c.checkpoint_size,
        c.detail,
        app.settings.public_url.trim_end_matches('/'),
    );
    if let Some(smtp) = &app.settings.exports.smtp {
        match super::admin_emails(app, org).await {
            Ok(to) => {
                for addr in to {
                    if let Err(e) = notify::email(smtp, &addr, &subject, body.clone()).await {
                        tracing::warn!(
                            org,
                            to = addr,
                            error = e,
                            "could not email the witness alarm"
                        );
                    }
                }
            }
            Err(e) => tracing::warn!(org, error = e.message, "could not read the admins' emails"),
        }
    }
    if let Ok(Some(hook)) = auditrail_service::sealed::get(app, &notify::webhook_setting(org)).await
        && let Ok(hook) = serde_json::from_str::<notify::Webhook>(&hook)
    {
        let body = json!({"type": "witness.conflict", "org": org, "conflict": details}).to_string();
        if let Err(e) = notify::call_webhook(&app.settings.outbound, &hook, body).await {
            tracing::warn!(org, error = e, "witness alarm webhook failed");
        }
    }
}
