//! RFC 9162 proofs and roots, for any [`Store`]: work out which complete subtrees are
//! needed, fetch them in one call, fold.

use auditrail_core::Hash;
use auditrail_core::merkle::{self, NodeId, Range};

use crate::{Result, Store, StoreError};

async fn range_hashes(store: &dyn Store, org: &str, ranges: &[Range]) -> Result<Vec<Hash>> {
    let parts: Vec<Vec<NodeId>> = ranges
        .iter()
        .map(|(a, b)| merkle::subtrees(*a, *b))
        .collect();
    let ids: Vec<NodeId> = parts.iter().flatten().copied().collect();
    let hashes = store.node_hashes(org, &ids).await?;
    let mut it = hashes.into_iter();
    Ok(parts
        .iter()
        .map(|p| merkle::fold(&it.by_ref().take(p.len()).collect::<Vec<_>>()))
        .collect())
}

/// Root of `org`'s tree at an earlier (or the current) `size`.
pub async fn root_at(store: &dyn Store, org: &str, size: u64) -> Result<Hash> {
    if size == 0 {
        return Ok(merkle::empty_root());
    }
    Ok(range_hashes(store, org, &[(0, size)]).await?.remove(0))
}

/// Inclusion proof of leaf `index` (seq − 1) in the tree of `size`.
pub async fn inclusion(store: &dyn Store, org: &str, index: u64, size: u64) -> Result<Vec<Hash>> {
    let current = store.tree_head(org).await?.size;
    if size > current || index >= size {
        return Err(StoreError::NotFound {
            what: "leaf or tree size",
        });
    }
    range_hashes(store, org, &merkle::inclusion_ranges(index, size)).await
}

/// Consistency proof from tree size `from` to `to`.
pub async fn consistency(store: &dyn Store, org: &str, from: u64, to: u64) -> Result<Vec<Hash>> {
    let current = store.tree_head(org).await?.size;
    if from == 0 || from > to || to > current {
        return Err(StoreError::NotFound { what: "tree size" });
    }
    range_hashes(store, org, &merkle::consistency_ranges(from, to)).await
}
