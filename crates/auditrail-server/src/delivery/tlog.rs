//! The org's log as C2SP tlog-tiles in the destination itself, under
//! `{prefix}/org={org}/_tlog/`: after each object, the tiles and entry bundles it
//! completed, the partial ones of the latest stored (witness-cosigned) checkpoint within
//! what was delivered, and that checkpoint. The bucket is then a tiled log that standard
//! tlog tooling reads without auditrail.
//!
//! Entry bundles are stored gzip'd with `Content-Encoding: gzip`, as tlog-tiles asks
//! ("compressed at the HTTP layer"; gzip with no negotiation is allowed): HTTP clients
//! read them decompressed, and they take a fifth of the space. Tiles and bundles are
//! immutable and say so in `Cache-Control`; the checkpoint may be cached a few seconds.

use std::collections::BTreeSet;

use auditrail_core::delivery::tlog_dir;
use auditrail_core::tiles::{Kind, Tile, encode_bundle, tiles_between};
use auditrail_store::StoredEvent;
use bytes::Bytes;
use futures_util::StreamExt;
use object_store::{Attribute, Attributes};

use super::bucket::{Bucket, S3Failure};
use super::internal;
use crate::App;

/// Uploads in flight at once.
const PARALLEL: usize = 16;

/// A level-0 tile or entry bundle that lies inside the batch, made from the events in
/// hand (the rest are read from the store).
fn from_batch(t: &Tile, events: &[StoredEvent], first: u64) -> Option<Vec<u8>> {
    if t.tree_level() != 0 {
        return None;
    }
    let (a, b) = t.leaf_range()?;
    let lo = first.checked_sub(1)?;
    let hi = lo + events.len() as u64;
    if a < lo || b > hi {
        return None;
    }
    let slice = &events[(a - lo) as usize..(b - lo) as usize];
    match t.kind {
        Kind::Entries => encode_bundle(slice.iter().map(|e| e.body.as_bytes())).ok(),
        Kind::Hashes(_) => Some(slice.iter().flat_map(|e| e.leaf).collect()),
    }
}

/// How the bucket serves a tile or bundle: immutable, bundles gzip'd.
fn tile_attributes(kind: Kind) -> Attributes {
    let mut a = Attributes::new();
    a.insert(Attribute::ContentType, "application/octet-stream".into());
    a.insert(
        Attribute::CacheControl,
        "public, max-age=31536000, immutable".into(),
    );
    if kind == Kind::Entries {
        a.insert(Attribute::ContentEncoding, "gzip".into());
    }
    a
}

/// How the bucket serves the checkpoint: text, cached a few seconds at most.
fn checkpoint_attributes() -> Attributes {
    let mut a = Attributes::new();
    a.insert(Attribute::ContentType, "text/plain; charset=utf-8".into());
    a.insert(Attribute::CacheControl, "max-age=5".into());
    a
}

/// A tile's bytes as they are stored: bundles compressed, off the async threads.
async fn stored_form(kind: Kind, bytes: Vec<u8>) -> Result<Vec<u8>, S3Failure> {
    if kind != Kind::Entries {
        return Ok(bytes);
    }
    tokio::task::spawn_blocking(move || crate::tiles::gzip(&bytes))
        .await
        .map_err(|e| internal(format!("compression task: {e}")))?
        .map_err(|e| internal(format!("compressing a bundle: {e}")))
}

/// Publishes the tiles for an object holding `events`, seqs `first..=last` in order.
/// `first_delivery`: the destination delivers for the first time (entries before `first`
/// are not its to write).
#[expect(
    clippy::too_many_arguments,
    reason = "one call site, every argument distinct"
)]
pub(crate) async fn publish(
    app: &App,
    org: &str,
    bucket: &Bucket,
    prefix: &str,
    events: &[StoredEvent],
    first: u64,
    last: u64,
    first_delivery: bool,
    threshold: usize,
) -> Result<(), S3Failure> {
    let dir = tlog_dir(prefix, org);
    let stored = app
        .store
        .checkpoint_at_most(org, last)
        .await
        .map_err(|e| internal(format!("reading checkpoints: {e}")))?;
    let (cp_size, note) = match stored {
        Some(c) if c.size > 0 => (c.size, c.note),
        _ => {
            let root = auditrail_store::proofs::root_at(app.store.as_ref(), org, last)
                .await
                .map_err(|e| internal(format!("reading the tree: {e}")))?;
            let note = auditrail_service::signing::sign_note(app, org, last, root)
                .map_err(|e| internal(e.to_string()))?;
            (last, note)
        }
    };
    let since = if first_delivery { 0 } else { first - 1 };
    let mut want: BTreeSet<Tile> = tiles_between(since, last)
        .into_iter()
        .filter(Tile::is_full)
        .collect();
    want.extend(
        tiles_between(0, cp_size)
            .into_iter()
            .filter(|t| !t.is_full()),
    );
    // Entry bundles reaching before the destination's first seq are not delivered.
    let floor = if first_delivery { first - 1 } else { 0 };
    want.retain(|t| t.kind != Kind::Entries || t.leaf_range().is_some_and(|(a, _)| a >= floor));
    let results: Vec<Result<(), S3Failure>> = futures_util::stream::iter(want)
        .map(|t| {
            let key = format!("{dir}/{}", t.path());
            async move {
                let bytes = match from_batch(&t, events, first) {
                    Some(b) => b,
                    None => match crate::tiles::read(app, org, &t).await {
                        Ok(b) => b,
                        // Entries purged by retention: the hash tiles still prove the rest.
                        Err(e) if e.code == "pruned" => return Ok(()),
                        Err(e) => {
                            return Err(internal(format!("reading {}: {}", t.path(), e.message)));
                        }
                    },
                };
                let stored = stored_form(t.kind, bytes).await?;
                bucket
                    .put_with(
                        &key,
                        Bytes::from(stored),
                        threshold,
                        tile_attributes(t.kind),
                    )
                    .await
            }
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    results.into_iter().collect::<Result<(), _>>()?;
    bucket
        .put_with(
            &format!("{dir}/checkpoint"),
            Bytes::from(note),
            threshold,
            checkpoint_attributes(),
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_from_the_batch_match_the_layout() {
        let events: Vec<StoredEvent> = (300..=900u64)
            .map(|seq| {
                let body = format!("{{\"seq\":{seq}}}");
                StoredEvent {
                    seq,
                    leaf: auditrail_core::merkle::leaf_hash(body.as_bytes()),
                    body,
                }
            })
            .collect();
        let full = |kind, index| Tile {
            kind,
            index,
            width: 256,
        };
        // Leaves 512..768 are inside seqs 300..=900; 256..512 are not.
        let b = from_batch(&full(Kind::Entries, 2), &events, 300).unwrap();
        let entries = auditrail_core::tiles::decode_bundle(&b).unwrap();
        assert_eq!(entries[0], b"{\"seq\":513}");
        assert_eq!(entries.len(), 256);
        let h = from_batch(&full(Kind::Hashes(0), 2), &events, 300).unwrap();
        assert_eq!(&h[..32], &events[513 - 300].leaf);
        assert!(from_batch(&full(Kind::Entries, 1), &events, 300).is_none());
        assert!(from_batch(&full(Kind::Hashes(1), 0), &events, 300).is_none());
        assert!(from_batch(&full(Kind::Entries, 3), &events, 300).is_none());
    }
}
