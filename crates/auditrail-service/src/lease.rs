//! Leases on background work, held through the store so that with several nodes on one
//! database each piece of work runs on exactly one of them.

use crate::Service;
use crate::clock::now_ms;

/// Takes or renews the lease `name` for this node; `false` when another node holds it
/// or the store cannot be reached (work stops rather than risk running twice).
pub async fn hold(svc: &Service, name: &str) -> bool {
    let now = now_ms();
    let until = now + svc.config.lease_ttl.as_millis() as i64;
    match svc
        .store
        .acquire_lease(name, &svc.node_id, now, until)
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
pub async fn release(svc: &Service, name: &str) {
    if let Err(e) = svc.store.release_lease(name, &svc.node_id).await {
        tracing::warn!(lease = name, error = %e, "could not release a lease");
    }
}
