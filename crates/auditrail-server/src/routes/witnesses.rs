//! `PUT/GET/DELETE /v1/witnesses/{name}`, `GET /v1/witnesses`: the witnesses that cosign
//! the caller's org's checkpoints; `PUT/GET /v1/orgs/{org}/admin-emails`: who alarms
//! about the org's log are emailed to.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use auditrail_core::cosignature::CosignatureVerifier;
use auditrail_store::Role;

use crate::App;
use crate::auth::Principal;
use crate::delivery::config::check_name;
use crate::error::{ApiError, ApiResult};
use crate::routes::events::record_self_audit;
use crate::witnesses::{self, WitnessConfig, WitnessState};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WitnessBody {
    /// The witness's submission prefix (http or https, under the outbound address policy)
    #[schema(pattern = "^https?://")]
    url: String,
    /// Its Ed25519 cosignature/v1 note verifier key (`name+hash+base64`)
    verifier_key: String,
}

fn resource(name: &str) -> Value {
    json!({"type": "WITNESS", "id": name})
}

fn view(name: &str, w: &WitnessConfig, st: Option<&WitnessState>) -> Value {
    let vkey = CosignatureVerifier::parse(&w.verifier_key).ok();
    json!({
        "name": name,
        "url": w.url,
        "verifier_key": w.verifier_key,
        "key_name": vkey.map(|v| v.name),
        "created_at": w.created_at,
        "state": st.cloned().unwrap_or_default(),
    })
}

#[utoipa::path(put, path = "/v1/witnesses/{name}", params(("name" = String, Path)),
    request_body = WitnessBody,
    responses((status = 200, description = "the witness, replaced"), (status = 201, description = "the witness, added"), (status = 422, description = "a field is invalid, or the url's address is refused")))]
pub async fn put(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let org = who.org_with(&[Role::Admin])?.to_owned();
    check_name(&name)?;
    if body.len() > 16 * 1024 {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "a witness is small JSON",
        ));
    }
    let b: WitnessBody = super::parse_json(&body)?;
    let url =
        reqwest::Url::parse(&b.url).map_err(|e| ApiError::invalid_field("url", e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ApiError::invalid_field(
            "url",
            "must be an http or https URL",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ApiError::invalid_field(
            "url",
            "is a prefix: no query or fragment",
        ));
    }
    let verifier = CosignatureVerifier::parse(&b.verifier_key)
        .map_err(|e| ApiError::invalid_field("verifier_key", e.to_string()))?;
    if let Err(e) = app.settings.outbound.check_url(url.as_str()).await {
        return Err(super::destinations::refused_address(
            &app,
            &org,
            &who,
            "updateWitness",
            resource(&name),
            "url",
            e,
        )
        .await);
    }
    let mut all = witnesses::configs(&app, &org).await?;
    let cfg = WitnessConfig {
        url: url.as_str().trim_end_matches('/').to_owned(),
        verifier_key: verifier.verifier_key(),
        created_at: auditrail_core::time::format_millis(auditrail_service::clock::now_ms()),
    };
    let created = all.insert(name.clone(), cfg.clone()).is_none();
    witnesses::save_configs(&app, &org, &all).await?;
    // A witness configured anew starts over: no remembered size, no standing alarm.
    let mut states = witnesses::states(&app, &org).await?;
    states.remove(&name);
    witnesses::save_states(&app, &org, &states).await?;
    record_self_audit(
        &app,
        &org,
        &who,
        if created {
            "createWitness"
        } else {
            "updateWitness"
        },
        resource(&name),
        json!({"url": cfg.url, "verifier_key": cfg.verifier_key}),
    )
    .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view(&name, &cfg, None))).into_response())
}

#[utoipa::path(get, path = "/v1/witnesses", responses((status = 200, description = "`{witnesses: [...]}` with what each last cosigned and any conflict")))]
pub async fn list(State(app): State<Arc<App>>, who: Principal) -> ApiResult<Json<Value>> {
    let org = who.org_with(&[Role::Admin])?;
    let all = witnesses::configs(&app, org).await?;
    let states = witnesses::states(&app, org).await?;
    let list: Vec<Value> = all.iter().map(|(n, w)| view(n, w, states.get(n))).collect();
    Ok(Json(json!({"witnesses": list})))
}

#[utoipa::path(get, path = "/v1/witnesses/{name}", params(("name" = String, Path)), responses((status = 200, description = "the witness and its state"), (status = 404, description = "no such witness")))]
pub async fn get(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let org = who.org_with(&[Role::Admin])?;
    let all = witnesses::configs(&app, org).await?;
    let w = all
        .get(&name)
        .ok_or_else(|| ApiError::not_found("witness"))?;
    let states = witnesses::states(&app, org).await?;
    Ok(Json(view(&name, w, states.get(&name))))
}

#[utoipa::path(delete, path = "/v1/witnesses/{name}", params(("name" = String, Path)), responses((status = 204, description = "removed"), (status = 404, description = "no such witness")))]
pub async fn delete(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let org = who.org_with(&[Role::Admin])?.to_owned();
    let mut all = witnesses::configs(&app, &org).await?;
    let w = all
        .remove(&name)
        .ok_or_else(|| ApiError::not_found("witness"))?;
    witnesses::save_configs(&app, &org, &all).await?;
    let mut states = witnesses::states(&app, &org).await?;
    states.remove(&name);
    witnesses::save_states(&app, &org, &states).await?;
    record_self_audit(
        &app,
        &org,
        &who,
        "deleteWitness",
        resource(&name),
        json!({"url": w.url, "verifier_key": w.verifier_key}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailsBody {
    /// Who alarms about the org's log (a witness conflict) are emailed to; at most 20
    #[schema(max_items = 20, value_type = Vec<String>, format = Email)]
    emails: Vec<String>,
}

#[utoipa::path(put, path = "/v1/orgs/{org}/admin-emails", params(("org" = String, Path)),
    request_body = EmailsBody,
    responses((status = 200, description = "`{emails}`"), (status = 422, description = "an address is invalid")))]
pub async fn put_admin_emails(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(org): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    super::admin_of_existing(&app, &who, &org).await?;
    let b: EmailsBody = super::parse_json(&body)?;
    if b.emails.len() > 20 {
        return Err(ApiError::invalid_field("emails", "at most 20 addresses"));
    }
    for (i, e) in b.emails.iter().enumerate() {
        if e.parse::<lettre::Address>().is_err() {
            return Err(ApiError::invalid_field(
                &format!("emails[{i}]"),
                "is not an email address",
            ));
        }
    }
    witnesses::save_admin_emails(&app, &org, &b.emails).await?;
    record_self_audit(
        &app,
        &org,
        &who,
        "updateAdminEmails",
        json!({"type": "ORG", "id": org}),
        json!({"emails": b.emails}),
    )
    .await?;
    Ok(Json(json!({"emails": b.emails})))
}

#[utoipa::path(get, path = "/v1/orgs/{org}/admin-emails", params(("org" = String, Path)), responses((status = 200, description = "`{emails}`")))]
pub async fn get_admin_emails(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(org): Path<String>,
) -> ApiResult<Json<Value>> {
    super::admin_of_existing(&app, &who, &org).await?;
    Ok(Json(
        json!({"emails": witnesses::admin_emails(&app, &org).await?}),
    ))
}
