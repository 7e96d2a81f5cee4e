//! Integrity: the latest signed checkpoint, the public key, and how to verify offline.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use minijinja::context;

use auditrail_core::note::Checkpoint;

use super::{UiError, Viewer};
use crate::App;
use crate::checkpoint_signer;
use crate::error::ApiError;

pub async fn page(State(app): State<Arc<App>>, viewer: Viewer) -> Result<Response, UiError> {
    let org = viewer.org.as_str();
    let head = app.store.tree_head(org).await?;
    let note = checkpoint_signer::covering(&app, org, head.size).await?;
    let cp = Checkpoint::parse(&note).map_err(ApiError::internal)?;
    let html = viewer.render(
        "integrity.html",
        "integrity",
        context! { checkpoint => note, size => cp.size, origin => cp.origin,
        root_hex => hex::encode(cp.root), public_key => app.signer.verifier_key(),
        base => app.settings.public_url.trim_end_matches('/') },
    )?;
    Ok(html.into_response())
}
