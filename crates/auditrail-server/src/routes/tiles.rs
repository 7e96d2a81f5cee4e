//! C2SP tlog-tiles of each org's log under `/logs/{org}/`: the checkpoint, hash tiles
//! and entry bundles (the events' canonical bytes), for the org's viewers and admins
//! (whole-org ones: an entry bundle holds every event of its range). Tiles are read from
//! the subtree hashes the store keeps; nothing is copied.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use auditrail_core::tiles::{Kind, Tile};
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
    responses((status = 200, description = "a hash tile (W × 32 bytes) or an entry bundle (u16-length-prefixed canonical events; gzip'd when Accept-Encoding allows)", content_type = "application/octet-stream"),
        (status = 404, description = "no such tile in the current tree, or its entries were purged by retention")))]
pub async fn tile(
    State(app): State<Arc<App>>,
    who: Principal,
    Path((org, path)): Path<(String, String)>,
    headers: HeaderMap,
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
    // tlog-tiles: entry bundles should be compressed at the HTTP layer.
    let gzip = t.kind == Kind::Entries && accepts_gzip(&headers);
    let body = if gzip {
        let raw = body;
        tokio::task::spawn_blocking(move || crate::tiles::gzip(&raw))
            .await
            .map_err(|e| ApiError::internal(format!("compression task: {e}")))?
            .map_err(|e| ApiError::internal(format!("compressing a bundle: {e}")))?
            .into()
    } else {
        body
    };
    let mut resp = ([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    if t.kind == Kind::Entries {
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    Ok(resp)
}

/// `Accept-Encoding` names gzip (or `*`) without refusing it with `q=0`.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or_default().to_ascii_lowercase();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (coding == "gzip" || coding == "*") && !refused
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> bool {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        accepts_gzip(&h)
    }

    #[test]
    fn gzip_is_used_only_when_asked_for() {
        assert!(accept("gzip"));
        assert!(accept("br, gzip;q=0.5, identity"));
        assert!(accept("*"));
        assert!(!accept("identity"));
        assert!(!accept("gzip;q=0, identity"));
        assert!(!accept("br"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
