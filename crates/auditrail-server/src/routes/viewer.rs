//! Viewer links: the host product mints a short-lived, single-use link into the Audit
//! page for one of its signed-in users.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use auditrail_core::time::format_millis;
use auditrail_store::Role;

use super::events::record_self_audit;
use super::parse_json;
use crate::App;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::ui::token::{self, Claims, Purpose};

/// Longest a link (and the session it opens) may live.
pub const MAX_TTL_SECONDS: i64 = 24 * 3600;
const DEFAULT_TTL_SECONDS: i64 = 15 * 60;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ViewerTokenRequest {
    /// The host product's user id; the page acts as this user
    pub actor_id: String,
    #[schema(pattern = "^(viewer|admin)$")]
    pub role: String,
    #[serde(default)]
    pub actor_email: Option<String>,
    #[serde(default)]
    pub actor_name: Option<String>,
    #[serde(default)]
    pub scope_id: Option<String>,
    /// How long the link (and its session) lives; default 900
    #[serde(default)]
    #[schema(minimum = 1, maximum = 86400)]
    pub ttl_seconds: Option<i64>,
}

fn text(field: &str, v: &str, max: usize) -> ApiResult<()> {
    if v.is_empty() || v.chars().count() > max {
        return Err(ApiError::invalid_field(
            field,
            format!("must be 1 to {max} characters"),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(ApiError::invalid_field(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// Checks a request; returns the role and the lifetime in seconds.
pub fn validate(req: &ViewerTokenRequest) -> ApiResult<(Role, i64)> {
    text("actor_id", &req.actor_id, 256)?;
    let role = match req.role.as_str() {
        "viewer" => Role::Viewer,
        "admin" => Role::Admin,
        _ => return Err(ApiError::invalid_field("role", "must be viewer or admin")),
    };
    if let Some(e) = &req.actor_email {
        text("actor_email", e, 256)?;
    }
    if let Some(n) = &req.actor_name {
        text("actor_name", n, 256)?;
    }
    if let Some(s) = &req.scope_id {
        text("scope_id", s, 256)?;
    }
    let ttl = req.ttl_seconds.unwrap_or(DEFAULT_TTL_SECONDS);
    if !(1..=MAX_TTL_SECONDS).contains(&ttl) {
        return Err(ApiError::invalid_field(
            "ttl_seconds",
            format!("must be from 1 to {MAX_TTL_SECONDS} (24 hours)"),
        ));
    }
    Ok((role, ttl))
}

#[utoipa::path(post, path = "/v1/orgs/{org}/viewer-tokens", request_body = ViewerTokenRequest,
    responses((status = 201, description = "`{token, url, expires_at}`: the url opens the Audit page once, as that user, until expires_at"), (status = 403, description = "org admins only"), (status = 422, description = "names the invalid field")))]
pub async fn create(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(org): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    who.admin_of(&org)?;
    if body.len() > 16 * 1024 {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "a viewer token request is small JSON",
        ));
    }
    let req: ViewerTokenRequest = parse_json(&body)?;
    Ok((
        StatusCode::CREATED,
        Json(mint_as(&app, &who, &org, req).await?),
    ))
}

/// Mints a viewer link into `org` for `who` (already checked to be allowed).
pub async fn mint_as(
    app: &App,
    who: &Principal,
    org: &str,
    req: ViewerTokenRequest,
) -> ApiResult<Value> {
    let (role, ttl) = validate(&req)?;
    if app.store.get_org(org).await?.is_none() {
        return Err(ApiError::not_found("org"));
    }
    let now = chrono::Utc::now().timestamp();
    let claims = Claims {
        org: org.to_owned(),
        actor_id: req.actor_id,
        actor_email: req.actor_email,
        actor_name: req.actor_name,
        role: role.as_str().to_owned(),
        scope_id: req.scope_id,
        exp: now + ttl,
        id: auditrail_service::random::id("vl_"),
    };
    let key = crate::ui::signing_key(app).await?;
    let token = token::sign(&key, Purpose::Link, &claims);
    let expires_at = format_millis(claims.exp * 1000);
    record_self_audit(
        app,
        org,
        who,
        "createViewerLink",
        json!({"type": "VIEWER_LINK", "id": claims.id}),
        json!({"actor_id": claims.actor_id, "role": claims.role, "scope_id": claims.scope_id, "expires_at": expires_at}),
    )
    .await?;
    let base = app.settings.public_url.trim_end_matches('/');
    Ok(json!({
        "token": token,
        "url": format!("{base}/ui/login?token={token}"),
        "expires_at": expires_at,
        "role": claims.role,
        "scope_id": claims.scope_id,
    }))
}
