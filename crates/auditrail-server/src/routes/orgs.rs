//! Orgs and their API keys. Key changes are recorded in the org's own log.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use auditrail_store::{KeyRecord, NewOrg, Role};

use super::catalog::{CatalogInput, resolve, to_new};
use super::events::record_self_audit;
use crate::App;
use crate::auth::{Principal, new_key_token};
use crate::error::{ApiError, ApiResult};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrg {
    /// Lowercase letters, digits, `-` and `_`; 1 to 64 characters, starting with a letter or digit.
    pub id: String,
    pub name: Option<String>,
    /// A built-in catalog name (`prophecy`, `apollo-studio`) or a catalog document.
    #[schema(value_type = Object)]
    pub catalog: Option<Value>,
    #[serde(default)]
    pub strict: bool,
    pub retention_days: Option<u32>,
}

pub fn valid_org_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && id.as_bytes()[0].is_ascii_alphanumeric()
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|e| {
        let field = e.to_string();
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            field.clone(),
        )
        .with_details(vec![json!({"reason": field})])
    })
}

#[utoipa::path(post, path = "/v1/orgs", request_body = CreateOrg, responses((status = 201, description = "org created"), (status = 409, description = "id taken")))]
pub async fn create_org(
    State(app): State<Arc<App>>,
    who: Principal,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if who != Principal::PlatformAdmin {
        return Err(ApiError::forbidden("only the platform admin creates orgs"));
    }
    let req: CreateOrg = parse_json(&body)?;
    let org = create_org_as(&app, &who, req).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::to_value(&org).unwrap_or_default()),
    ))
}

/// Creates an org and records it as the first event of the org's own log.
pub async fn create_org_as(
    app: &App,
    who: &Principal,
    req: CreateOrg,
) -> ApiResult<auditrail_store::Org> {
    if !valid_org_id(&req.id) {
        return Err(ApiError::invalid_field(
            "id",
            "must be 1-64 of a-z, 0-9, '-', '_', starting with a letter or digit",
        ));
    }
    if req.retention_days == Some(0) {
        return Err(ApiError::invalid_field(
            "retention_days",
            "must be at least 1",
        ));
    }
    let catalog = match &req.catalog {
        None | Some(Value::Null) => None,
        Some(v) => Some(resolve(CatalogInput::Json(v), "catalog")?),
    };
    if req.strict && catalog.is_none() {
        return Err(ApiError::invalid_field(
            "strict",
            "a strict org needs a catalog to check events against; give `catalog`",
        ));
    }
    let org = app
        .store
        .create_org(NewOrg {
            id: req.id.clone(),
            name: req.name.unwrap_or_else(|| req.id.clone()),
            strict: req.strict,
            retention_days: req.retention_days,
            catalog: catalog.as_ref().map(to_new),
        })
        .await?;
    record_self_audit(
        app,
        &org.id,
        who,
        "createOrg",
        json!({"type": "ORG", "id": org.id}),
        json!({"name": org.name, "strict": org.strict, "catalog": org.catalog, "catalog_version": org.catalog_version}),
    )
    .await?;
    Ok(org)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub name: String,
    /// `ingest`, `viewer` or `admin`.
    #[schema(pattern = "^(ingest|viewer|admin)$")]
    pub role: String,
}

fn key_json(k: &KeyRecord) -> Value {
    json!({"id": k.id, "org_id": k.org, "name": k.name, "role": k.role.as_str(), "created_at": k.created_at, "revoked_at": k.revoked_at})
}

#[utoipa::path(post, path = "/v1/orgs/{org}/keys", request_body = CreateKey, responses((status = 201, description = "`{id, token}`; the token is shown only here")))]
pub async fn create_key(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(org): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    who.admin_of(&org)?;
    let req: CreateKey = parse_json(&body)?;
    let out = create_key_as(&app, &who, &org, req).await?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// Creates a key in `org`; the result carries the token, which is never shown again.
pub async fn create_key_as(
    app: &App,
    who: &Principal,
    org: &str,
    req: CreateKey,
) -> ApiResult<Value> {
    let role = Role::parse(&req.role)
        .ok_or_else(|| ApiError::invalid_field("role", "must be ingest, viewer or admin"))?;
    if req.name.is_empty() || req.name.chars().count() > 128 {
        return Err(ApiError::invalid_field(
            "name",
            "must be 1 to 128 characters",
        ));
    }
    if app.store.get_org(org).await?.is_none() {
        return Err(ApiError::not_found("org"));
    }
    let (id, token, secret_hash) = new_key_token();
    let created_at = auditrail_core::time::format_millis(chrono::Utc::now().timestamp_millis());
    let key = KeyRecord {
        id,
        org: org.to_owned(),
        name: req.name,
        role,
        secret_hash,
        created_at,
        revoked_at: None,
    };
    app.store.create_key(key.clone()).await?;
    record_self_audit(
        app,
        org,
        who,
        "createApiKey",
        json!({"type": "API_KEY", "id": key.id, "name": key.name}),
        json!({"role": role.as_str()}),
    )
    .await?;
    let mut out = key_json(&key);
    out["token"] = json!(token);
    Ok(out)
}

#[utoipa::path(get, path = "/v1/orgs/{org}/keys", responses((status = 200, description = "the org's keys, without secrets")))]
pub async fn list_keys(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(org): Path<String>,
) -> ApiResult<Json<Value>> {
    who.admin_of(&org)?;
    let keys = app.store.list_keys(&org).await?;
    Ok(Json(
        json!({"keys": keys.iter().map(key_json).collect::<Vec<_>>()}),
    ))
}

#[utoipa::path(delete, path = "/v1/orgs/{org}/keys/{key_id}", responses((status = 200, description = "revoked")))]
pub async fn revoke_key(
    State(app): State<Arc<App>>,
    who: Principal,
    Path((org, key_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    who.admin_of(&org)?;
    let key = app.store.revoke_key(&org, &key_id).await?;
    app.keys.evict(&key_id);
    record_self_audit(
        &app,
        &org,
        &who,
        "revokeApiKey",
        json!({"type": "API_KEY", "id": key.id, "name": key.name}),
        json!({"role": key.role.as_str()}),
    )
    .await?;
    Ok(Json(key_json(&key)))
}
