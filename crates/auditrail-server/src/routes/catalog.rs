//! Catalogs: the org's current catalog and its versions, uploading a new version, and
//! the HMAC lookup for values stored in `hmac` mode.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};

use auditrail_core::catalog::{BUILTIN_NAMES, Catalog, CatalogError, builtin, hmac_value};
use auditrail_store::{NewCatalog, Role, StoredCatalog};

use super::events::record_self_audit;
use crate::App;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};

/// A catalog as a request gives it.
pub enum CatalogInput<'a> {
    /// A built-in's name (JSON string) or a catalog document (JSON object).
    Json(&'a Value),
    Toml(&'a str),
}

/// Turns a built-in name or a document into a checked catalog; problems are named by
/// field, under `prefix` (e.g. `catalog.actions.x.sensitive[0]`).
pub fn resolve(input: CatalogInput<'_>, prefix: &str) -> ApiResult<Catalog> {
    let field = |f: &str| match (prefix.is_empty(), f.is_empty()) {
        (true, _) => f.to_owned(),
        (false, true) => prefix.to_owned(),
        (false, false) => format!("{prefix}.{f}"),
    };
    let parsed = match input {
        CatalogInput::Json(Value::String(name)) => {
            return builtin(name).ok_or_else(|| {
                ApiError::invalid_field(
                    &field(""),
                    format!(
                        "`{name}` is not a built-in catalog; built-ins: {}",
                        BUILTIN_NAMES.join(", ")
                    ),
                )
            });
        }
        CatalogInput::Json(v @ Value::Object(_)) => Catalog::from_json(v),
        CatalogInput::Json(_) => {
            return Err(ApiError::invalid_field(
                &field(""),
                "must be a built-in catalog name or a catalog document",
            ));
        }
        CatalogInput::Toml(text) => Catalog::from_toml(text),
    };
    parsed.map_err(|e| {
        let problems = e.problems();
        let details: Vec<Value> = problems
            .iter()
            .take(100)
            .map(|p| json!({"field": field(&p.field), "reason": p.reason}))
            .collect();
        let message = match &e {
            CatalogError::Syntax { .. } => e.to_string(),
            CatalogError::Invalid(_) => {
                format!(
                    "{}: {} ({} problem(s) in the catalog)",
                    field(&problems[0].field),
                    problems[0].reason,
                    problems.len()
                )
            }
        };
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_catalog", message)
            .with_details(details)
    })
}

/// The stored form of a catalog.
pub fn to_new(c: &Catalog) -> NewCatalog {
    NewCatalog {
        name: c.name().to_owned(),
        document: c.to_json().to_string(),
    }
}

fn catalog_json(org: &str, strict: bool, c: &StoredCatalog) -> ApiResult<Value> {
    let doc: Value = serde_json::from_str(&c.document).map_err(|e| {
        ApiError::internal(format!("stored catalog of org {org} is unreadable: {e}"))
    })?;
    Ok(json!({
        "org_id": org,
        "version": c.version,
        "name": c.name,
        "created_at": c.created_at,
        "strict": strict,
        "catalog": doc,
    }))
}

#[derive(Debug, Deserialize, Default, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CatalogQuery {
    /// A past version; the current one when absent
    #[param(value_type = Option<u32>, minimum = 1)]
    pub version: Option<String>,
}

#[utoipa::path(get, path = "/v1/catalog", params(CatalogQuery),
    responses((status = 200, description = "`{org_id, version, name, created_at, strict, catalog}`"), (status = 404, description = "the org has no catalog, or no such version")))]
pub async fn get_catalog(
    State(app): State<Arc<App>>,
    who: Principal,
    query: Result<Query<CatalogQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let org = who.org_with(&[Role::Ingest, Role::Viewer, Role::Admin])?;
    let Query(q) = query?;
    let version = q
        .version
        .as_deref()
        .map(|v| {
            v.parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ApiError::invalid_field("version", "must be a positive integer"))
        })
        .transpose()?;
    let o = app
        .store
        .get_org(org)
        .await?
        .ok_or_else(|| ApiError::not_found("org"))?;
    let c = app
        .store
        .get_catalog(org, version)
        .await?
        .ok_or_else(|| match version {
            Some(v) => ApiError::not_found(&format!("catalog version {v}")),
            None => ApiError::not_found("catalog (this org has none)"),
        })?;
    Ok(Json(catalog_json(org, o.strict, &c)?))
}

#[utoipa::path(put, path = "/v1/orgs/{org}/catalog",
    request_body(content = Object, description = "a catalog document (JSON, or TOML with Content-Type application/toml), or a built-in's name as a JSON string"),
    responses((status = 200, description = "`{version, name, created_at, created}`; an upload identical to the current version keeps it"), (status = 422, description = "invalid catalog; each problem names its field")))]
pub async fn put_catalog(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(org): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    who.admin_of(&org)?;
    let is_toml = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("toml"));
    let catalog = if is_toml {
        let text = std::str::from_utf8(&body)
            .map_err(|_| ApiError::bad_request("invalid_body", "TOML body must be UTF-8"))?;
        resolve(CatalogInput::Toml(text), "")?
    } else {
        let v: Value = serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(
                "invalid_json",
                format!("request body is not valid JSON: {e}"),
            )
        })?;
        resolve(CatalogInput::Json(&v), "")?
    };
    if app.store.get_org(&org).await?.is_none() {
        return Err(ApiError::not_found("org"));
    }
    let (stored, created) = app.store.put_catalog(&org, to_new(&catalog)).await?;
    app.policies.evict(&org);
    if created {
        record_self_audit(
            &app,
            &org,
            &who,
            "updateCatalog",
            json!({"type": "CATALOG", "id": stored.name}),
            json!({"version": stored.version, "actions": catalog.document().actions.len(),
                   "resource_types": catalog.document().resource_types.len()}),
        )
        .await?;
    }
    Ok(Json(json!({
        "org_id": org,
        "version": stored.version,
        "name": stored.name,
        "created_at": stored.created_at,
        "created": created,
    })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HmacRequest {
    /// The value to hash as `hmac` mode hashes a sensitive one (any JSON but null)
    #[schema(value_type = Object)]
    pub value: Option<Value>,
}

#[utoipa::path(post, path = "/v1/hmac", request_body = HmacRequest,
    responses((status = 200, description = "`{hmac}`: what a sensitive value becomes in `hmac` mode, to search for")))]
pub async fn hmac(
    State(app): State<Arc<App>>,
    who: Principal,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let org = who.org_with(&[Role::Admin])?;
    // The body holds a secret: its parse errors must not quote it.
    let req: HmacRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid_field(
            "value",
            format!(
                "body must be {{\"value\": ...}} (JSON error at line {} column {})",
                e.line(),
                e.column()
            ),
        )
    })?;
    let value = req
        .value
        .filter(|v| !v.is_null())
        .ok_or_else(|| ApiError::invalid_field("value", "is required"))?;
    let policy = app.policies.get(&app, org).await?;
    Ok(Json(json!({"hmac": hmac_value(&policy.hmac_key, &value)})))
}
