//! Leases on background work, held through the store so that with several nodes on one
//! database each piece of work runs on exactly one of them.

use crate::App;
use crate::exports::now_ms;

/// Takes or renews the lease `name` for this node; `false` when another node holds it
/// or the store cannot be reached (work stops rather than risk running twice).
pub(crate) async fn hold(app: &App, name: &str) -> bool {
    let now = now_ms();
    let until = now + app.settings.lease_ttl.as_millis() as i64;
    match app
        .store
        .acquire_lease(name, &app.node_id, now, until)
        .await
    {
        Ok(held) => held,
        Err(e) => {
            tracing::warn!(lease = name, error = %e, "could not renew a lease");
            false
        }
    }
}

/// Gives `name` up so another node may take it at once (on shutdown).
pub(crate) async fn release(app: &App, name: &str) {
    if let Err(e) = app.store.release_lease(name, &app.node_id).await {
        tracing::warn!(lease = name, error = %e, "could not release a lease");
    }
}
