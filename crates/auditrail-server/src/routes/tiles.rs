//! C2SP tlog-tiles of each org's log under `/logs/{org}/`: the checkpoint, hash tiles
//! and entry bundles (the events' canonical bytes), for the org's viewers and admins
//! (whole-org ones: an entry bundle holds every event of its range). Tiles are read from
//! the subtree hashes the store keeps; nothing is copied.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use auditrail_core::tiles::Tile;
use auditrail_store::Role;

use crate::App;
use crate::auth::Principal;
use crate::checkpoint_signer;
use crate::error::{ApiError, ApiResult};

const IMMUTABLE: &str = "private, max-age=31536000, immutable";

/// The caller may read the whole log of `org`.
fn reader_of(who: &Principal, org: &str) -> ApiResult<()> {
    let own = who.org_with(&[Role::Viewer, Role::Admin])?;
    if own != org {
        return Err(ApiError::not_found("log"));
    }
    if let Principal::User {
        scope_id: Some(_), ..
    } = who
    {
        return Err(ApiError::forbidden(
            "the log's tiles hold every event of the org; a link scoped to one scope cannot read them",
        ));
    }
    Ok(())
}

#[utoipa::path(get, path = "/logs/{org}/checkpoint", params(("org" = String, Path)),
    responses((status = 200, description = "the org's latest checkpoint with every signature it has (tlog-tiles)", content_type = "text/plain")))]
pub async fn checkpoint(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(org): Path<String>,
) -> ApiResult<Response> {
    reader_of(&who, &org)?;
    let head = app.store.tree_head(&org).await?;
    let note = checkpoint_signer::covering(&app, &org, head.size).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        note,
    )
        .into_response())
}

#[utoipa::path(get, path = "/logs/{org}/tile/{path}", params(("org" = String, Path), ("path" = String, Path, description = "`<L>/<N>[.p/<W>]` or `entries/<N>[.p/<W>]`, N in x-prefixed 3-digit groups")),
    responses((status = 200, description = "a hash tile (W × 32 bytes) or an entry bundle (u16-length-prefixed canonical events)", content_type = "application/octet-stream"),
        (status = 404, description = "no such tile in the current tree, or its entries were purged by retention")))]
pub async fn tile(
    State(app): State<Arc<App>>,
    who: Principal,
    Path((org, path)): Path<(String, String)>,
) -> ApiResult<Response> {
    reader_of(&who, &org)?;
    let t = Tile::parse(&format!("tile/{path}")).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "not a tile path: tile/<L>/<N>[.p/<W>] or tile/entries/<N>[.p/<W>]",
        )
    })?;
    // A full tile in memory was within the tree when read, and trees only grow.
    let body = match app.tiles.get(&org, &t) {
        Some(b) => b,
        None => {
            let size = app.store.tree_head(&org).await?.size;
            if !t.within(size) {
                return Err(ApiError::not_found("tile"));
            }
            let b = bytes::Bytes::from(crate::tiles::read(&app, &org, &t).await?);
            app.tiles.put(&org, &t, b.clone());
            b
        }
    };
    let mut resp = ([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    Ok(resp)
}
