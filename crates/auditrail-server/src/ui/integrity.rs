//! Integrity: the latest signed checkpoint, the public key, and how to verify offline.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use minijinja::context;

use auditrail_core::note::Checkpoint;

use super::{UiError, Viewer};
use crate::App;
use crate::checkpointer;
use crate::error::ApiError;

pub async fn page(State(app): State<Arc<App>>, viewer: Viewer) -> Result<Response, UiError> {
    let org = viewer.org.as_str();
    let head = app.store.tree_head(org).await?;
    let note = match app.store.latest_checkpoint(org).await? {
        Some(cp) if cp.size == head.size => cp.note,
        _ => checkpointer::sign(&app, org, head).await?,
    };
    let body_end = note.find("\n\n").map(|i| i + 1).unwrap_or(note.len());
    let cp = Checkpoint::parse(&note[..body_end]).map_err(ApiError::internal)?;
    let html = viewer.render(
        "integrity.html",
        "integrity",
        context! { checkpoint => note, size => cp.size, origin => cp.origin,
        root_hex => hex::encode(cp.root), public_key => app.signer.verifier_key(),
        base => app.settings.public_url.trim_end_matches('/') },
    )?;
    Ok(html.into_response())
}
