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

/// An inclusion proof with the leaf it proves and the root it leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    pub leaf: Hash,
    pub hashes: Vec<Hash>,
    pub root: Hash,
}

/// Inclusion proof of leaf `index` (seq − 1) in the tree of `size`. `current` is the
/// log's size as the caller read it from [`Store::tree_head`].
pub async fn inclusion(
    store: &dyn Store,
    org: &str,
    current: u64,
    index: u64,
    size: u64,
) -> Result<InclusionProof> {
    if size > current || index >= size {
        return Err(StoreError::NotFound {
            what: "leaf or tree size",
        });
    }
    let mut ranges = vec![(index, index + 1), (0, size)];
    ranges.extend(merkle::inclusion_ranges(index, size));
    let mut h = range_hashes(store, org, &ranges).await?;
    let hashes = h.split_off(2);
    Ok(InclusionProof {
        leaf: h[0],
        root: h[1],
        hashes,
    })
}

/// A consistency proof with the two roots it connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProof {
    pub from_root: Hash,
    pub to_root: Hash,
    pub hashes: Vec<Hash>,
}

/// Consistency proof from tree size `from` to `to`; `current` as for [`inclusion`].
pub async fn consistency(
    store: &dyn Store,
    org: &str,
    current: u64,
    from: u64,
    to: u64,
) -> Result<ConsistencyProof> {
    if from == 0 || from > to || to > current {
        return Err(StoreError::NotFound { what: "tree size" });
    }
    let mut ranges = vec![(0, from), (0, to)];
    ranges.extend(merkle::consistency_ranges(from, to));
    let mut h = range_hashes(store, org, &ranges).await?;
    let hashes = h.split_off(2);
    Ok(ConsistencyProof {
        from_root: h[0],
        to_root: h[1],
        hashes,
    })
}
