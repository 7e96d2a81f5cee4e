//! Ingest: an org's events checked against its catalog policy, validated and
//! canonicalized (all or nothing), and the events auditrail writes about itself into
//! each org's own log.

use auditrail_core::event;
use auditrail_core::{PreparedEvent, Rules};
use auditrail_store::Accepted;
use serde_json::{Value, json};

use crate::ids::Ulids;
use crate::policy::OrgPolicy;
use crate::{Service, ServiceError, ServiceResult};

/// At most this many problems are reported for one batch.
const MAX_REPORTED_ERRORS: usize = 100;

/// The rules `org`'s events are prepared under now.
pub fn rules<'a>(svc: &'a Service, org: &'a str, policy: Option<&'a OrgPolicy>) -> Rules<'a> {
    Rules {
        org_id: org,
        // Millisecond precision for the default `occurred_at`, like `received_at`.
        now: chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 3),
        limits: &svc.config.limits,
        catalog: policy.and_then(OrgPolicy::policy),
    }
}

/// Ids for the events of one batch sent without one, stamped with `rules`' time.
pub fn ids_for(rules: &Rules<'_>) -> Ulids {
    Ulids::at(rules.now.timestamp_millis().max(0) as u64)
}

/// Validates and canonicalizes a batch; all or nothing. `policy` is the org's catalog
/// policy (`None` for auditrail's own events, which no catalog governs).
pub fn prepare_batch(
    svc: &Service,
    org: &str,
    policy: Option<&OrgPolicy>,
    values: &[Value],
    batched: bool,
) -> ServiceResult<Vec<PreparedEvent>> {
    let rules = rules(svc, org, policy);
    let mut ids = ids_for(&rules);
    let mut errors = Vec::new();
    let mut prepared = Vec::with_capacity(values.len());
    for (i, v) in values.iter().enumerate() {
        let index = batched.then_some(i);
        match event::prepare(v, index, &rules, || ids.next_id()) {
            Ok(p) => prepared.push(p),
            Err(errs) => errors.extend(errs),
        }
    }
    if errors.is_empty() {
        return Ok(prepared);
    }
    let total = errors.len();
    let first = &errors[0];
    let at = first
        .index
        .map(|i| format!("event {i}: "))
        .unwrap_or_default();
    let message = format!(
        "{at}{}: {} ({total} problem(s); nothing was stored)",
        first.field, first.reason
    );
    errors.truncate(MAX_REPORTED_ERRORS);
    let details = errors
        .into_iter()
        .map(|e| serde_json::to_value(e).unwrap_or_default())
        .collect();
    Err(ServiceError::InvalidEvent { message, details })
}

/// The fast path of [`prepare_batch`] for events still in their JSON text: `None` unless
/// every one of them is a plain valid event (see [`event::fast`]); the caller then
/// parses them and takes the full path, which reports what is wrong.
pub fn prepare_texts(
    svc: &Service,
    org: &str,
    policy: Option<&OrgPolicy>,
    texts: &[&str],
) -> Option<Vec<PreparedEvent>> {
    let rules = rules(svc, org, policy);
    if rules.catalog.is_some() {
        return None;
    }
    // Ids only for the events sent without one.
    let mut ids = ids_for(&rules);
    texts
        .iter()
        .map(|t| event::fast::prepare(t, &rules, || ids.next_id()))
        .collect()
}

/// Appends an event auditrail itself writes to `org`'s log, for `actor`.
pub async fn record_audit_event(
    svc: &Service,
    org: &str,
    actor: Value,
    action: &str,
    resource: Value,
    details: Value,
    outcome: &str,
) -> ServiceResult<Accepted> {
    let ev = json!({"action": action, "actor": actor, "resource": resource, "details": details, "outcome": outcome});
    let p = prepare_batch(svc, org, None, std::slice::from_ref(&ev), false)?;
    let mut r = svc.store.append(org, p, true).await?;
    svc.notify_appended();
    r.pop()
        .ok_or_else(|| ServiceError::Internal("append returned nothing".into()))
}
