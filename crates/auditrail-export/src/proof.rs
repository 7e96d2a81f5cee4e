//! The proof file written beside an export: the checkpoint it was cut at and the
//! multi-leaf proof of its rows ([`auditrail_core::export_proof`]).

use auditrail_core::export_proof::ExportProof;
use auditrail_core::multiproof;
use auditrail_store::{Store, StoreError};

/// Subtree hashes are read from the store this many at a time.
const CHUNK: usize = 4096;

/// The proof text for rows `seqs` (inclusive ranges, ascending) of `org`'s tree of `size`, signed by
/// `checkpoint`.
pub async fn build(
    store: &dyn Store,
    org: &str,
    size: u64,
    seqs: &[(u64, u64)],
    checkpoint: &str,
) -> Result<String, StoreError> {
    let indices: Vec<(u64, u64)> = seqs
        .iter()
        .map(|(a, b)| (a.saturating_sub(1), b.saturating_sub(1)))
        .collect();
    let nodes = multiproof::nodes_of_ranges(size, &indices).map_err(|e| {
        StoreError::Corrupt(format!("export rows do not fit the tree of {size}: {e}"))
    })?;
    let mut hashes = Vec::with_capacity(nodes.len());
    for chunk in nodes.chunks(CHUNK) {
        hashes.extend(store.node_hashes(org, chunk).await?);
    }
    Ok(ExportProof {
        seqs: seqs.to_vec(),
        hashes,
        checkpoint: checkpoint.to_owned(),
    }
    .encode())
}
