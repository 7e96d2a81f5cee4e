//! Telling an org that a destination is broken, and that it has recovered: when it has
//! been failing for longer than its `alert_after`, once, an email to the org's admins
//! (`PUT /v1/orgs/{org}/admin-emails`), a call to the org's webhook and an event in the
//! org's own log; the same again when a delivery next succeeds.
//!
//! That an alert went out is stored (a setting per destination, holding the failure's
//! start), so a restarted node or another node holding the lease neither repeats it nor
//! forgets to announce the recovery.

use serde_json::json;

use crate::App;
use crate::exports::notify;
use crate::exports::now_ms;

fn alerted_key(org: &str, name: &str) -> String {
    format!("org/{org}/destination/{name}/alerted")
}

/// Forgets a deleted destination's alert, so one created later under its name does not
/// announce a recovery.
pub(crate) async fn forget(app: &App, org: &str, name: &str) {
    if let Err(e) = app.store.put_setting(&alerted_key(org, name), None).await {
        tracing::warn!(org, destination = name, error = %e, "could not clear the alert");
    }
}

/// Whether a failing alert is outstanding for the destination.
pub(crate) async fn alerted(app: &App, org: &str, name: &str) -> bool {
    matches!(
        app.store.get_setting(&alerted_key(org, name)).await,
        Ok(Some(_))
    )
}

/// After a failure: alerts if the destination has been failing since `failing_since_ms`
/// for at least `alert_after_s` and no alert went out for it. True once alerted (now or
/// before).
pub(crate) async fn failing(
    app: &App,
    org: &str,
    name: &str,
    failing_since_ms: Option<i64>,
    alert_after_s: u64,
    error: &str,
) -> bool {
    let Some(since) = failing_since_ms else {
        return false;
    };
    if now_ms() - since < (alert_after_s * 1000) as i64 {
        return false;
    }
    if alerted(app, org, name).await {
        return true;
    }
    let key = alerted_key(org, name);
    if let Err(e) = app.store.put_setting(&key, Some(&since.to_string())).await {
        tracing::warn!(org, destination = name, error = %e, "could not record the alert");
        return false;
    }
    let since_at = auditrail_core::time::format_millis(since);
    let minutes = (now_ms() - since) / 60_000;
    let subject = format!("auditrail: destination {name} of {org} is failing");
    let body = format!(
        "Delivery to the destination {name} of org {org} has been failing since {since_at} \
         ({minutes} min). Events are kept and will be delivered, in order, once it works again.\n\n\
         Last error: {error}\n\nDestinations page: {}/ui/destinations\n",
        app.settings.public_url.trim_end_matches('/'),
    );
    let details = json!({"failing_since": since_at, "last_error": error});
    tell(
        app,
        org,
        name,
        "destinationFailing",
        "destination.failing",
        details,
        &subject,
        body,
    )
    .await;
    true
}

/// After a success: announces the recovery if a failing alert went out. True if it did.
pub(crate) async fn recovered(app: &App, org: &str, name: &str) -> bool {
    let key = alerted_key(org, name);
    let Ok(Some(since)) = app.store.get_setting(&key).await else {
        return false;
    };
    if let Err(e) = app.store.put_setting(&key, None).await {
        tracing::warn!(org, destination = name, error = %e, "could not clear the alert");
        return false;
    }
    let since_at = since
        .parse::<i64>()
        .map(auditrail_core::time::format_millis)
        .unwrap_or(since);
    let subject = format!("auditrail: destination {name} of {org} has recovered");
    let body = format!(
        "Delivery to the destination {name} of org {org}, failing since {since_at}, works again; \
         the events it missed are being delivered in order.\n"
    );
    let details = json!({"failing_since": since_at});
    tell(
        app,
        org,
        name,
        "destinationRecovered",
        "destination.recovered",
        details,
        &subject,
        body,
    )
    .await;
    true
}

#[allow(clippy::too_many_arguments, reason = "one message in three channels")]
async fn tell(
    app: &App,
    org: &str,
    name: &str,
    action: &str,
    hook_type: &str,
    details: serde_json::Value,
    subject: &str,
    body: String,
) {
    let outcome = if action == "destinationFailing" {
        "failure"
    } else {
        "success"
    };
    if let Err(e) = auditrail_service::ingest::record_audit_event(
        app,
        org,
        json!({"id": "auditrail", "type": "SYSTEM"}),
        action,
        json!({"type": "DESTINATION", "id": name}),
        details.clone(),
        outcome,
    )
    .await
    {
        tracing::warn!(org, destination = name, error = %e, "could not record the alert in the log");
    }
    if let Some(smtp) = &app.settings.exports.smtp {
        match crate::witnesses::admin_emails(app, org).await {
            Ok(to) => {
                for addr in to {
                    if let Err(e) = notify::email(smtp, &addr, subject, body.clone()).await {
                        tracing::warn!(org, to = addr, error = e, "could not email the alert");
                    }
                }
            }
            Err(e) => tracing::warn!(org, error = e.message, "could not read the admins' emails"),
        }
    }
    if let Ok(Some(hook)) = auditrail_service::sealed::get(app, &notify::webhook_setting(org)).await
        && let Ok(hook) = serde_json::from_str::<notify::Webhook>(&hook)
    {
        let body = json!({"type": hook_type, "org": org, "destination": name, "details": details})
            .to_string();
        if let Err(e) = notify::call_webhook(&app.settings.outbound, &hook, body).await {
            tracing::warn!(org, error = e, "destination alert webhook failed");
        }
    }
}
