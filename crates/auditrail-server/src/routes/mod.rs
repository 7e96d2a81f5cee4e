//! The HTTP surface. One file per area; errors map in `error.rs`.

pub mod catalog;
pub mod destinations;
pub mod events;
pub mod exports;
pub(crate) mod integrity;
mod ops;
pub mod orgs;
pub mod tail;
pub mod tiles;
pub mod viewer;
pub mod witnesses;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};

use crate::App;
use crate::error::{ApiError, ApiResult};

/// Parses a JSON request body, naming the field that is wrong (422), or 400 when the
/// body is not JSON at all.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize::<_, T>(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::bad_request(
                "invalid_json",
                format!("request body is not valid JSON: {inner}"),
            );
        }
        let msg = inner.to_string();
        // Missing and unknown fields are reported at their parent; name them anyway.
        let named = msg
            .split('`')
            .nth(1)
            .filter(|_| msg.starts_with("missing field") || msg.starts_with("unknown field"));
        let field = match named {
            Some(f) if path == "." || path.is_empty() => f.to_owned(),
            Some(f) if path != f && !path.ends_with(&format!(".{f}")) => format!("{path}.{f}"),
            _ if path == "." || path.is_empty() => {
                msg.split('`').nth(1).unwrap_or("body").to_owned()
            }
            _ => path,
        };
        ApiError::invalid_field(&field, msg)
    })
}

/// For calls on `/v1/orgs/{org}/...`: the platform admin or `org`'s own admin, and an
/// org that exists (404 otherwise, as for another org's admin).
pub(crate) async fn admin_of_existing(
    app: &App,
    who: &crate::auth::Principal,
    org: &str,
) -> ApiResult<()> {
    who.admin_of(org)?;
    app.store
        .get_org(org)
        .await?
        .ok_or_else(|| ApiError::not_found("org"))?;
    Ok(())
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/orgs", post(orgs::create_org))
        .route(
            "/v1/orgs/{org}/keys",
            post(orgs::create_key).get(orgs::list_keys),
        )
        .route("/v1/orgs/{org}/keys/{key_id}", delete(orgs::revoke_key))
        .route("/v1/orgs/{org}/viewer-tokens", post(viewer::create))
        .route("/v1/orgs/{org}/catalog", put(catalog::put_catalog))
        .route("/v1/catalog", get(catalog::get_catalog))
        .route("/v1/hmac", post(catalog::hmac))
        .route("/v1/events", post(events::ingest).get(events::search))
        .route("/v1/events/stream", get(tail::stream))
        .route("/v1/exports", post(exports::create).get(exports::list))
        .route("/v1/exports/{id}", get(exports::get))
        .route("/v1/exports/{id}/download", get(exports::download))
        .route("/v1/exports/{id}/checkpoint", get(exports::checkpoint))
        .route("/v1/exports/{id}/proof", get(exports::proof))
        .route(
            "/v1/orgs/{org}/export-webhook",
            put(exports::put_webhook).delete(exports::delete_webhook),
        )
        .route(
            "/v1/orgs/{org}/destinations/{name}",
            put(destinations::put_for_org),
        )
        .route("/v1/destinations", get(destinations::list))
        .route(
            "/v1/destinations/{name}",
            put(destinations::put)
                .get(destinations::get)
                .delete(destinations::delete),
        )
        .route("/v1/destinations/{name}/pause", post(destinations::pause))
        .route("/v1/destinations/{name}/resume", post(destinations::resume))
        .route("/v1/destinations/{name}/test", post(destinations::test))
        .route(
            "/v1/destinations/{name}/bucket-policy",
            get(destinations::bucket_policy),
        )
        .route("/v1/checkpoints/latest", get(integrity::latest_checkpoint))
        .route("/v1/public-key", get(integrity::public_key))
        .route("/v1/proofs/inclusion", get(integrity::inclusion))
        .route("/v1/proofs/consistency", get(integrity::consistency))
        .route("/logs/{org}/checkpoint", get(tiles::checkpoint))
        .route("/logs/{org}/tile/{*path}", get(tiles::tile))
        .route("/v1/witnesses", get(witnesses::list))
        .route(
            "/v1/witnesses/{name}",
            put(witnesses::put)
                .get(witnesses::get)
                .delete(witnesses::delete),
        )
        .route(
            "/v1/orgs/{org}/admin-emails",
            put(witnesses::put_admin_emails).get(witnesses::get_admin_emails),
        )
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .merge(crate::ui::router(app.clone()))
        .fallback(ops::not_found)
        // Bodies are read with their own limit so an oversize one gets our JSON error.
        .layer(DefaultBodyLimit::disable())
        .with_state(app)
}
