//! The Audit page: server-rendered pages for an org's admins and viewers (events,
//! exports, destinations, integrity), opened through viewer links or with an API key.
//!
//! The pages are a thin layer over the API's own functions, so validation, tenancy and
//! self-audit are the same whichever way an org is read.

mod assets;
mod destinations;
mod events;
mod exports;
mod integrity;
mod render;
mod session;
pub mod token;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use auditrail_service::sealed::{KeyText, random_key};

use crate::App;
use crate::error::{ApiError, ApiResult};

pub use render::UiError;
pub use session::Viewer;

/// Per-process state of the Audit page.
#[derive(Default)]
pub struct UiState {
    key: tokio::sync::OnceCell<[u8; 32]>,
}

const KEY_SETTING: &str = "ui/signing_key";

/// The key viewer links and sessions are signed with: made once, kept sealed among the
/// store's settings so every node shares it.
pub async fn signing_key(app: &App) -> ApiResult<[u8; 32]> {
    app.ui
        .key
        .get_or_try_init(|| random_key(app, KEY_SETTING, KeyText::Base64))
        .await
        .copied()
        .map_err(ApiError::from)
}

pub fn router(app: Arc<App>) -> Router<Arc<App>> {
    Router::new()
        .route("/ui", get(session::home))
        .route("/ui/", get(session::home))
        .route("/ui/login", get(session::login))
        .route("/ui/logout", post(session::logout))
        .route("/ui/events", get(events::list))
        .route("/ui/events/live", get(events::live))
        .route("/ui/events/{seq}", get(events::detail))
        .route("/ui/events/{seq}/proof", get(events::proof))
        .route("/ui/exports", get(exports::page).post(exports::create))
        .route("/ui/exports/rows", get(exports::rows))
        .route("/ui/exports/{id}/download", get(exports::download))
        .route(
            "/ui/destinations",
            get(destinations::page).post(destinations::save),
        )
        .route("/ui/destinations/{name}/test", post(destinations::test))
        .route("/ui/integrity", get(integrity::page))
        .route("/ui/assets/{file}", get(assets::serve))
        .route("/ui/{*rest}", get(render::not_found))
        .layer(axum::middleware::map_response_with_state(
            app,
            render::security_headers,
        ))
}
