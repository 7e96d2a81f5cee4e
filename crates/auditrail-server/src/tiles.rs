//! An org's tlog-tiles as bytes, read from the store: hash tiles from the subtree hashes
//! it keeps, entry bundles from the events' canonical text. Served under `/logs/{org}/`
//! and written beside each destination's objects.

use axum::http::StatusCode;

use auditrail_core::query::Filter;
use auditrail_core::tiles::{self, Kind, Tile};
use auditrail_store::{Order, PageRequest};

use crate::App;
use crate::error::{ApiError, ApiResult};

/// The bytes of tile `t` of `org`'s log (which must lie within the tree).
pub(crate) async fn read(app: &App, org: &str, t: &Tile) -> ApiResult<Vec<u8>> {
    match t.kind {
        Kind::Hashes(_) => {
            let hashes = app
                .store
                .run_hashes(
                    org,
                    t.tree_level(),
                    t.index * tiles::WIDTH,
                    u64::from(t.width),
                )
                .await?;
            Ok(hashes.concat())
        }
        Kind::Entries => {
            let first = t.index * tiles::WIDTH;
            let page = app
                .store
                .search(
                    org,
                    &Filter::default(),
                    PageRequest {
                        after_seq: Some(first),
                        limit: usize::from(t.width),
                        order: Order::Asc,
                    },
                )
                .await?;
            let whole = page.events.len() == usize::from(t.width)
                && page
                    .events
                    .iter()
                    .enumerate()
                    .all(|(i, e)| e.seq == first + 1 + i as u64);
            if !whole {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "pruned",
                    "some events of this bundle were purged by the org's retention; their hashes remain in the hash tiles",
                ));
            }
            tiles::encode_bundle(page.events.iter().map(|e| e.body.as_bytes()))
                .map_err(ApiError::internal)
        }
    }
}

/// An entry bundle compressed for HTTP (`Content-Encoding: gzip`), at the fastest level:
/// bundles are compressed as they are sent or delivered, on the request's budget.
pub(crate) fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4),
        flate2::Compression::fast(),
    );
    enc.write_all(bytes)?;
    enc.finish()
}
