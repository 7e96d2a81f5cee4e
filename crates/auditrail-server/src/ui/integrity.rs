//! Integrity: the latest signed checkpoint, the public key, and how to verify offline.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use minijinja::context;

use auditrail_core::cosignature::CosignatureVerifier;
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
    let configs = crate::witnesses::configs(&app, org).await?;
    let states = crate::witnesses::states(&app, org).await?;
    let mut witnesses = Vec::new();
    let mut conflicts = Vec::new();
    for (name, w) in &configs {
        let v = CosignatureVerifier::parse(&w.verifier_key).ok();
        let st = states.get(name).cloned().unwrap_or_default();
        let cosigned = v.as_ref().is_some_and(|v| v.verify(&note).is_ok());
        if let Some(c) = &st.conflict {
            conflicts.push(context! { name => name, at => c.at, size => c.checkpoint_size, detail => c.detail });
        }
        witnesses.push(context! {
            name => name, url => w.url, key_name => v.map(|v| v.name), cosigned => cosigned,
            size => st.size, cosigned_at => st.cosigned_at, last_error => st.last_error,
            conflict => st.conflict.is_some(),
        });
    }
    let html = viewer.render(
        "integrity.html",
        "integrity",
        context! { checkpoint => note, size => cp.size, origin => cp.origin,
        root_hex => hex::encode(cp.root), public_key => app.signer.verifier_key(),
        base => app.settings.public_url.trim_end_matches('/'), org => org,
        witnesses => witnesses, conflicts => conflicts },
    )?;
    Ok(html.into_response())
}
