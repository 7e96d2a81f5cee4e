//! The HTTP surface. One file per area; errors map in `error.rs`.

pub mod catalog;
pub mod events;
pub mod exports;
pub(crate) mod integrity;
mod ops;
pub mod orgs;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};

use crate::App;

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/orgs", post(orgs::create_org))
        .route(
            "/v1/orgs/{org}/keys",
            post(orgs::create_key).get(orgs::list_keys),
        )
        .route("/v1/orgs/{org}/keys/{key_id}", delete(orgs::revoke_key))
        .route("/v1/orgs/{org}/catalog", put(catalog::put_catalog))
        .route("/v1/catalog", get(catalog::get_catalog))
        .route("/v1/hmac", post(catalog::hmac))
        .route("/v1/events", post(events::ingest).get(events::search))
        .route("/v1/exports", post(exports::create).get(exports::list))
        .route("/v1/exports/{id}", get(exports::get))
        .route("/v1/exports/{id}/download", get(exports::download))
        .route("/v1/exports/{id}/checkpoint", get(exports::checkpoint))
        .route(
            "/v1/orgs/{org}/export-webhook",
            put(exports::put_webhook).delete(exports::delete_webhook),
        )
        .route("/v1/checkpoints/latest", get(integrity::latest_checkpoint))
        .route("/v1/public-key", get(integrity::public_key))
        .route("/v1/proofs/inclusion", get(integrity::inclusion))
        .route("/v1/proofs/consistency", get(integrity::consistency))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .fallback(ops::not_found)
        // Bodies are read with their own limit so an oversize one gets our JSON error.
        .layer(DefaultBodyLimit::disable())
        .with_state(app)
}
