//! Destinations (org admins only): create or replace, inspect with delivery status,
//! delete, pause and resume, the permission test, and the bucket policy to paste.
//! Every change is an event in the org's own log.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use auditrail_core::time::format_millis;
use auditrail_store::{DeliveryUpdate, Destination, Role};

use super::events::record_self_audit;
use crate::App;
use crate::auth::Principal;
use crate::delivery::cloud_config::CloudConfig;
use crate::delivery::config::{
    CredentialsChoice, CredentialsSource, DestinationConfig, DestinationKind, DestinationRequest,
    Start, check_name, validate,
};
use crate::delivery::push_config::{PushConfig, PushSecret};
use crate::delivery::{
    bucket_policy as policy_for, config_of, oldest_undelivered_ms, open_bucket, permissions_policy,
    seal_context, shown_error, trust_policy,
};
use crate::error::{ApiError, ApiResult};
use crate::exports::now_ms;
use crate::outbound::OutboundError;
use auditrail_service::ingest::record_audit_event;

const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// The destination as the API shows it: its configuration (secrets masked) and status.
pub(crate) async fn view(app: &Arc<App>, d: &Destination) -> ApiResult<Value> {
    let c = config_of(d).map_err(|e| ApiError::internal(e.message))?;
    let head = app.store.tree_head(&d.org).await?.size;
    let lag_events = head.saturating_sub(d.delivered_seq);
    let mut lag_seconds = 0.0;
    if lag_events > 0
        && let Some(at) = oldest_undelivered_ms(app, &d.org, d.delivered_seq)
            .await
            .map_err(|e| ApiError::internal(e.message))?
    {
        lag_seconds = ((now_ms() - at).max(0) as f64) / 1000.0;
    }
    let (last_error, permanent) = match d.last_error.as_deref().map(shown_error) {
        Some((e, p)) => (Some(e), p),
        None => (None, false),
    };
    let state = if d.paused {
        "paused"
    } else if permanent {
        "error"
    } else if last_error.is_some() {
        "retrying"
    } else {
        "active"
    };
    // What every kind shows of its delivery.
    let status = json!({
        "state": state,
        "delivered_seq": d.delivered_seq,
        "lag_events": lag_events,
        "lag_seconds": lag_seconds,
        "pending": d.pending.map(|(f, l)| json!({"first_seq": f, "last_seq": l})),
        "last_delivery_at": d.last_delivery_ms.map(format_millis),
        "last_error": last_error,
        "last_error_at": d.last_error_ms.map(format_millis),
        "failing_since": d.failing_since_ms.map(format_millis),
        "created_at": format_millis(d.created_ms),
        "updated_at": format_millis(d.updated_ms),
        "name": d.name,
        "kind": c.kind,
        "max_batch_events": c.max_batch_events,
        "max_batch_seconds": c.max_batch_seconds,
        "start": c.start,
        "alert_after": alert_after_text(c.alert_after_s),
    });
    let mut v = match (&c.push, &c.cloud) {
        (Some(p), _) => push_fields(&c, p),
        (None, Some(cloud)) => cloud_fields(&c, cloud),
        (None, None) => s3_fields(app, d, &c),
    };
    if let (Some(o), Some(st)) = (v.as_object_mut(), status.as_object()) {
        o.extend(st.clone());
    }
    Ok(v)
}

/// A push stream's own fields, its secret masked.
fn push_fields(c: &DestinationConfig, p: &PushConfig) -> Value {
    let secret_field = match c.kind {
        DestinationKind::SplunkHec => "token",
        DestinationKind::Datadog => "api_key",
        _ => "secret",
    };
    let format = if c.format.is_ocsf() { "ocsf" } else { "json" };
    let mut v = json!({"url": p.url, "format": format, secret_field: "********"});
    for (k, val) in [
        ("index", json!(p.index)),
        ("source", json!(p.source)),
        ("sourcetype", json!(p.sourcetype)),
        ("site", json!(p.site)),
        ("service", json!(p.service)),
    ] {
        if !val.is_null() {
            v[k] = val;
        }
    }
    if c.kind == DestinationKind::Datadog {
        v["tags"] = json!(p.tags);
    }
    v
}

/// A GCS or Azure destination's own fields, its key masked.
fn cloud_fields(c: &DestinationConfig, cloud: &CloudConfig) -> Value {
    let credentials = match (&cloud.client_email, &cloud.secret_kind) {
        (_, Some(kind)) => json!({ kind.as_str(): "********" }),
        (Some(email), None) => json!({"service_account_key": "********", "client_email": email}),
        (None, None) => json!({"service_account_key": "********"}),
    };
    let mut v = json!({
        "bucket": c.bucket,
        "prefix": c.prefix,
        "endpoint": c.endpoint,
        "format": c.format,
        "tiles": c.tiles,
        "credentials": credentials,
    });
    if let Some(a) = &cloud.account {
        v["account"] = json!(a);
    }
    v
}

/// An S3 destination's own fields, its credentials masked.
fn s3_fields(app: &App, d: &Destination, c: &DestinationConfig) -> Value {
    let mut credentials = json!({"source": c.credentials_source});
    if let Some(k) = &c.access_key_id {
        credentials["access_key_id"] = json!(k);
        credentials["secret_access_key"] = json!("********");
    }
    if c.credentials_source == CredentialsSource::AssumeRole {
        credentials["role_arn"] = json!(c.role_arn);
        credentials["external_id"] = json!(app.delivery.external_id(&d.org));
    }
    let mut v = json!({
        "bucket": c.bucket,
        "prefix": c.prefix,
        "region": c.region,
        "endpoint": c.endpoint,
        "sts_endpoint": c.sts_endpoint,
        "format": c.format,
        "layout": if c.security_lake.is_some() { "security_lake" } else { "standard" },
        "tiles": c.tiles,
        "credentials": credentials,
    });
    if let Some(l) = &c.security_lake {
        v["source_name"] = json!(l.source_name);
        v["account_id"] = json!(l.account_id);
    }
    v
}

/// `alert_after` as shown: "15m", "1h 30m".
fn alert_after_text(secs: u64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

async fn find(app: &App, org: &str, name: &str) -> ApiResult<Destination> {
    app.store
        .get_destination(org, name)
        .await?
        .ok_or_else(|| ApiError::not_found("destination"))
}

fn resource(name: &str) -> Value {
    json!({"type": "DESTINATION", "id": name})
}

#[utoipa::path(put, path = "/v1/destinations/{name}", request_body(content = Object, description = "`{kind: \"s3\", bucket, prefix?, region?, endpoint?, sts_endpoint?, credentials: {source: \"assume_role\", role_arn} (recommended: auditrail passes the org's external id) | {access_key_id, secret_access_key, session_token?} | {source: \"environment\"} (the server's own identity: platform admin only, through PUT /v1/orgs/{org}/destinations/{name}), format?: ndjson.gz|csv.gz|parquet|ocsf|ocsf_parquet, layout?: standard|security_lake (with source_name and account_id: OCSF Parquet under ext/{source_name}/region=…/accountId=…/eventDay=…/), max_batch_events?, max_batch_seconds?, start?: earliest|now}`; or a push stream (at least once: every event carries `id` and `seq`): `{kind: \"https\", url, secret (16-256 characters; batches are NDJSON signed in Auditrail-Signature)}`, `{kind: \"splunk_hec\", url (the HEC base URL), token, index?, source?, sourcetype?}`, `{kind: \"datadog\", api_key, site?, url?, service?, tags?}`, each with `format?: json|ocsf, max_batch_events?, max_batch_seconds?, start?`; credentials and secrets may be omitted on update. `endpoint`, `sts_endpoint` and `url` must resolve to addresses the outbound policy allows (global ones, or `outbound_allow`)."),
    responses((status = 201, description = "created"), (status = 200, description = "replaced; delivery continues where it was"), (status = 403, description = "admins only; `credentials.source: environment` is the platform admin's alone"), (status = 422, description = "names the invalid field, and for a refused address the rule")))]
pub async fn put(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let org = who.org_with(&[Role::Admin])?.to_owned();
    put_in(app, who, org, name, body).await
}

#[utoipa::path(put, path = "/v1/orgs/{org}/destinations/{name}", request_body(content = Object, description = "as `PUT /v1/destinations/{name}`; the platform admin may attach the server's own identity, `credentials: {source: \"environment\"}`, to the org it vouches for"),
    responses((status = 201, description = "created"), (status = 200, description = "replaced"), (status = 404, description = "no such org"), (status = 422, description = "names the invalid field")))]
pub async fn put_for_org(
    State(app): State<Arc<App>>,
    who: Principal,
    Path((org, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    super::admin_of_existing(&app, &who, &org).await?;
    put_in(app, who, org, name, body).await
}

/// Records a refused change in the org's log, and returns the error to answer.
async fn refused(
    app: &App,
    org: &str,
    who: &Principal,
    action: &str,
    resource: Value,
    error: ApiError,
) -> ApiError {
    let details = json!({
        "refused": error.field().unwrap_or_default(),
        "reason": error.message,
    });
    if let Err(e) =
        record_audit_event(app, org, who.actor(), action, resource, details, "failure").await
    {
        tracing::warn!(org, error = %e, "could not record a refused change");
    }
    error
}

/// A URL the outbound policy refuses: 422 naming `field` and the rule, recorded in the
/// org's own log.
pub(crate) async fn refused_address(
    app: &App,
    org: &str,
    who: &Principal,
    action: &str,
    resource: Value,
    field: &str,
    e: OutboundError,
) -> ApiError {
    let mut err = ApiError::invalid_field(field, e.to_string());
    err.code = "address_refused";
    if let Some(rule) = e.rule() {
        err.details[0]["rule"] = json!(rule);
    }
    refused(app, org, who, action, resource, err).await
}

async fn put_in(
    app: Arc<App>,
    who: Principal,
    org: String,
    name: String,
    body: Bytes,
) -> ApiResult<Response> {
    check_name(&name)?;
    if body.len() > MAX_REQUEST_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "a destination is small JSON",
        ));
    }
    let req: DestinationRequest = super::parse_json(&body)?;
    let existing = app.store.get_destination(&org, &name).await?;
    let previous = existing
        .as_ref()
        .map(config_of)
        .transpose()
        .map_err(|e| ApiError::internal(e.message))?;
    let (config, creds) = validate(req, previous.as_ref())?;
    let action = if existing.is_some() {
        "updateDestination"
    } else {
        "createDestination"
    };
    check_allowed(&app, &org, &who, action, &name, &config, previous.as_ref()).await?;
    let sealed = match creds {
        CredentialsChoice::Static(keys) => {
            let plain = serde_json::to_vec(&keys).map_err(ApiError::internal)?;
            Some(
                app.secrets
                    .seal(&plain, &seal_context(&org, &name))
                    .map_err(ApiError::internal)?,
            )
        }
        CredentialsChoice::Cloud(keys) => {
            let plain = serde_json::to_vec(&keys).map_err(ApiError::internal)?;
            Some(
                app.secrets
                    .seal(&plain, &seal_context(&org, &name))
                    .map_err(ApiError::internal)?,
            )
        }
        CredentialsChoice::Secret(secret) => {
            let plain = serde_json::to_vec(&PushSecret { secret }).map_err(ApiError::internal)?;
            Some(
                app.secrets
                    .seal(&plain, &seal_context(&org, &name))
                    .map_err(ApiError::internal)?,
            )
        }
        CredentialsChoice::Environment | CredentialsChoice::AssumeRole { .. } => None,
        CredentialsChoice::Unchanged => {
            existing.as_ref().and_then(|d| d.sealed_credentials.clone())
        }
    };
    let start_seq = match (&existing, config.start) {
        (None, Start::Now) => app.store.tree_head(&org).await?.size,
        _ => 0,
    };
    let now = now_ms();
    let dest = Destination {
        org: org.clone(),
        name: name.clone(),
        config: serde_json::to_string(&config).map_err(ApiError::internal)?,
        sealed_credentials: sealed,
        paused: false,
        delivered_seq: start_seq,
        pending: None,
        last_error: None,
        last_error_ms: None,
        failing_since_ms: None,
        last_delivery_ms: None,
        created_ms: now,
        updated_ms: now,
    };
    let (stored, created) = app.store.put_destination(dest).await?;
    let action = if created {
        "createDestination"
    } else {
        "updateDestination"
    };
    record_self_audit(
        &app,
        &org,
        &who,
        action,
        resource(&name),
        serde_json::to_value(&config).unwrap_or_default(),
    )
    .await?;
    app.delivery.wake.notify_one();
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(view(&app, &stored).await?)).into_response())
}

/// Who may point auditrail where: the server's own identity is the platform admin's to
/// lend (an org admin may not attach it, nor change a destination that uses it), and
/// every URL must resolve to an address the outbound policy allows. A refusal changes
/// nothing and is recorded in the org's log.
async fn check_allowed(
    app: &App,
    org: &str,
    who: &Principal,
    action: &str,
    name: &str,
    config: &DestinationConfig,
    previous: Option<&DestinationConfig>,
) -> ApiResult<()> {
    let uses_environment = config.credentials_source == CredentialsSource::Environment
        || previous.is_some_and(|p| p.credentials_source == CredentialsSource::Environment);
    if uses_environment && *who != Principal::PlatformAdmin {
        let err = ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "credentials {\"source\": \"environment\"} lend the server's own AWS identity; only the platform admin may create or change a destination that uses them. Use {\"source\": \"assume_role\", \"role_arn\"} (see the trust policy at /v1/destinations/{name}/bucket-policy) or static keys of your own",
        )
        .with_details(vec![json!({"field": "credentials.source", "reason": "environment credentials are the platform admin's to attach"})]);
        return Err(refused(app, org, who, action, resource(name), err).await);
    }
    for (field, url) in [
        ("endpoint", config.endpoint.as_deref()),
        ("sts_endpoint", config.sts_endpoint.as_deref()),
        ("url", config.push.as_ref().map(|p| p.url.as_str())),
        (
            "credentials.service_account_key",
            config.cloud.as_ref().and_then(|c| c.token_uri.as_deref()),
        ),
    ] {
        if let Some(url) = url
            && let Err(e) = app.settings.outbound.check_url(url).await
        {
            return Err(refused_address(app, org, who, action, resource(name), field, e).await);
        }
    }
    Ok(())
}

#[utoipa::path(get, path = "/v1/destinations", responses((status = 200, description = "`{destinations: [...], external_id}` with status; `external_id` is the org's STS external id, for the trust policy of a role auditrail is to assume")))]
pub async fn list(State(app): State<Arc<App>>, who: Principal) -> ApiResult<Response> {
    let org = who.org_with(&[Role::Admin])?.to_owned();
    let mut out = Vec::new();
    for d in app.store.list_destinations(Some(&org)).await? {
        out.push(view(&app, &d).await?);
    }
    // The external id comes first: the customer puts it in the role's trust policy
    // before creating an `assume_role` destination.
    let external_id = app.delivery.external_id(&org);
    Ok(axum::Json(json!({ "destinations": out, "external_id": external_id })).into_response())
}

#[utoipa::path(get, path = "/v1/destinations/{name}", responses((status = 200, description = "configuration (secrets masked) and status: state, delivered_seq, lag_events, lag_seconds, last_delivery_at, last_error")))]
pub async fn get(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let org = who.org_with(&[Role::Admin])?.to_owned();
    let d = find(&app, &org, &name).await?;
    Ok(axum::Json(view(&app, &d).await?).into_response())
}

#[utoipa::path(delete, path = "/v1/destinations/{name}", responses((status = 204, description = "deleted; objects already delivered stay in the bucket")))]
pub async fn delete(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let org = who.org_with(&[Role::Admin])?.to_owned();
    let d = find(&app, &org, &name).await?;
    if !app.store.delete_destination(&org, &name).await? {
        return Err(ApiError::not_found("destination"));
    }
    crate::delivery::health::forget(&app, &org, &name).await;
    record_self_audit(
        &app,
        &org,
        &who,
        "deleteDestination",
        resource(&name),
        json!({"delivered_seq": d.delivered_seq}),
    )
    .await?;
    app.delivery.wake.notify_one();
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn set_paused(
    app: Arc<App>,
    who: Principal,
    name: String,
    paused: bool,
) -> ApiResult<Response> {
    let org = who.org_with(&[Role::Admin])?.to_owned();
    find(&app, &org, &name).await?;
    if !app
        .store
        .update_delivery(&org, &name, DeliveryUpdate::Pause(paused))
        .await?
    {
        return Err(ApiError::not_found("destination"));
    }
    let action = if paused {
        "pauseDestination"
    } else {
        "resumeDestination"
    };
    record_self_audit(&app, &org, &who, action, resource(&name), json!({})).await?;
    app.delivery.wake.notify_one();
    let d = find(&app, &org, &name).await?;
    Ok(axum::Json(view(&app, &d).await?).into_response())
}

#[utoipa::path(post, path = "/v1/destinations/{name}/pause", responses((status = 200, description = "paused: nothing is delivered until resumed")))]
pub async fn pause(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    set_paused(app, who, name, true).await
}

#[utoipa::path(post, path = "/v1/destinations/{name}/resume", responses((status = 200, description = "delivery resumes after delivered_seq")))]
pub async fn resume(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    set_paused(app, who, name, false).await
}

#[utoipa::path(post, path = "/v1/destinations/{name}/test", responses((status = 200, description = "`{all_passed, results: [{action, passed, error}]}`, one per action of the bucket policy")))]
pub async fn test(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let org = who.org_with(&[Role::Admin])?.to_owned();
    let d = find(&app, &org, &name).await?;
    s3_only(&d, true)?;
    let (_, bucket) = open_bucket(&app, &d).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "destination_unusable",
            e.message,
        )
    })?;
    let results = bucket.permission_test().await;
    let all_passed = results.iter().all(|r| r.passed);
    Ok(axum::Json(json!({"all_passed": all_passed, "results": results})).into_response())
}

#[utoipa::path(get, path = "/v1/destinations/{name}/bucket-policy", responses((status = 200, description = "the policy JSON to paste. For static keys or environment credentials: the bucket policy granting auditrail's principal. For `assume_role`: `{mode: \"assume_role\", external_id, trust_policy, permissions_policy}`, the role's trust policy (auditrail's principal, `sts:ExternalId` condition) and the permissions to attach to it"), (status = 409, description = "no principal configured (AUDITRAIL_AWS_PRINCIPAL_ARN)")))]
pub async fn bucket_policy(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let org = who.org_with(&[Role::Admin])?.to_owned();
    let d = find(&app, &org, &name).await?;
    s3_only(&d, false)?;
    let c = config_of(&d).map_err(|e| ApiError::internal(e.message))?;
    Ok(axum::Json(policies(&app, &org, &c)?).into_response())
}

/// The permission test is an object store's (`s3`, `gcs`, `azure_blob`), the bucket
/// policy an S3 destination's: a push stream has neither (409, naming the kind).
fn s3_only(d: &Destination, test: bool) -> ApiResult<()> {
    let c = config_of(d).map_err(|e| ApiError::internal(e.message))?;
    if c.kind.is_push() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_an_s3_destination",
            "this destination is a push stream: it has no bucket to test or policy to paste; its state shows whether its receiver accepts what it sends",
        ));
    }
    if c.kind.is_cloud() && !test {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_an_s3_destination",
            "bucket policies are S3's: grant the service account (GCS) or the key (Azure) write access in the store's own console",
        ));
    }
    Ok(())
}

/// The policies to paste for a destination: the bucket policy, or for role assumption
/// the role's trust and permissions policies with the org's external id.
pub(crate) fn policies(app: &App, org: &str, c: &DestinationConfig) -> ApiResult<Value> {
    let principal = app.settings.delivery.principal_arn.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "principal_not_configured",
            "this server has no AWS principal to grant; set AUDITRAIL_AWS_PRINCIPAL_ARN (aws_principal_arn) to the role or user auditrail runs as",
        )
    })?;
    Ok(match c.credentials_source {
        CredentialsSource::AssumeRole => {
            let external_id = app.delivery.external_id(org);
            json!({
                "mode": "assume_role",
                "role_arn": c.role_arn,
                "external_id": external_id,
                "trust_policy": trust_policy(principal, &external_id),
                "permissions_policy": permissions_policy(&c.bucket),
            })
        }
        _ => policy_for(principal, &c.bucket),
    })
}
