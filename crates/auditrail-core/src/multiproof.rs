//! A compact proof that many leaves are in one tree: the hashes of the largest complete
//! subtrees holding none of them. With the leaves themselves they fold up to the root.
//!
//! The walk: the tree of `size` is the fold of its frontier (the maximal complete
//! subtrees, largest first); in each, a subtree holding no proven leaf is one proof
//! hash, a leaf is recomputed from its row, and anything else splits into its halves.
//! Left to right, depth first. A contiguous run of k leaves needs O(log n) hashes; k
//! scattered leaves at most k·log2(n/k). One RFC 9162 proof per row would need
//! k·log2(n) hashes and repeat the upper levels k times.

use crate::merkle::{self, Hash, NodeId, ProofError};

fn covers(node: NodeId, leaves: &[u64]) -> bool {
    let start = node.index << node.level;
    let end = start + (1u64 << node.level);
    let i = leaves.partition_point(|&l| l < start);
    i < leaves.len() && leaves[i] < end
}

/// The two halves of a subtree above the leaves.
fn children(node: NodeId) -> (NodeId, NodeId) {
    let half = |i| NodeId {
        level: node.level - 1,
        index: node.index * 2 + i,
    };
    (half(0), half(1))
}

fn walk(node: NodeId, leaves: &[u64], out: &mut Vec<NodeId>) {
    if !covers(node, leaves) {
        out.push(node);
    } else if node.level > 0 {
        let (left, right) = children(node);
        walk(left, leaves, out);
        walk(right, leaves, out);
    }
}

/// The subtrees whose hashes prove `leaves` (strictly increasing, each below `size`) in
/// the tree of `size`, in proof order.
pub fn nodes(size: u64, leaves: &[u64]) -> Result<Vec<NodeId>, ProofError> {
    check(size, leaves.iter().copied())?;
    let mut out = Vec::new();
    for node in merkle::frontier_ids(size) {
        walk(node, leaves, &mut out);
    }
    Ok(out)
}

/// [`nodes`] for the leaves of `ranges` (inclusive, ascending, disjoint, each below
/// `size`), without listing them: a subtree wholly inside a range needs no hash and is
/// not walked, so a contiguous run of any length costs O(log n). Same nodes, same order.
pub fn nodes_of_ranges(size: u64, ranges: &[(u64, u64)]) -> Result<Vec<NodeId>, ProofError> {
    let mut prev: Option<u64> = None;
    for &(lo, hi) in ranges {
        if hi >= size {
            return Err(ProofError::IndexOutOfRange { index: hi, size });
        }
        if lo > hi || prev.is_some_and(|p| p >= lo) {
            return Err(ProofError::BadSizes);
        }
        prev = Some(hi);
    }
    let mut out = Vec::new();
    for node in merkle::frontier_ids(size) {
        walk_ranges(node, ranges, &mut out);
    }
    Ok(out)
}

fn walk_ranges(node: NodeId, ranges: &[(u64, u64)], out: &mut Vec<NodeId>) {
    let start = node.index << node.level;
    let end = start + (1u64 << node.level); // exclusive
    // The first range that ends at or after `start`.
    let i = ranges.partition_point(|&(_, hi)| hi < start);
    match ranges.get(i) {
        Some(&(lo, _)) if lo < end => {}
        _ => return out.push(node), // no proven leaf below
    }
    if ranges[i].0 <= start && ranges[i].1 >= end - 1 {
        return; // every leaf below is proven
    }
    let (left, right) = children(node);
    walk_ranges(left, ranges, out);
    walk_ranges(right, ranges, out);
}

fn check(size: u64, leaves: impl Iterator<Item = u64>) -> Result<(), ProofError> {
    let mut prev: Option<u64> = None;
    for l in leaves {
        if l >= size {
            return Err(ProofError::IndexOutOfRange { index: l, size });
        }
        if prev.is_some_and(|p| p >= l) {
            return Err(ProofError::BadSizes);
        }
        prev = Some(l);
    }
    Ok(())
}

struct Folder<'a> {
    indices: &'a [u64],
    leaves: &'a [Hash],
    proof: &'a [Hash],
    next_leaf: usize,
    next_proof: usize,
}

impl Folder<'_> {
    fn hash(&mut self, node: NodeId) -> Result<Hash, ProofError> {
        if !covers(node, &self.indices[self.next_leaf..]) {
            let h = self
                .proof
                .get(self.next_proof)
                .ok_or(ProofError::WrongLength)?;
            self.next_proof += 1;
            return Ok(*h);
        }
        if node.level == 0 {
            let h = self.leaves[self.next_leaf];
            self.next_leaf += 1;
            return Ok(h);
        }
        let (l, r) = children(node);
        let left = self.hash(l)?;
        let right = self.hash(r)?;
        Ok(merkle::node_hash(&left, &right))
    }
}

/// The root that `leaves` (hashes of the leaves at `indices`, strictly increasing) and
/// `proof` lead to in a tree of `size`. Every proof hash must be used.
pub fn root(
    size: u64,
    indices: &[u64],
    leaves: &[Hash],
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    if indices.len() != leaves.len() {
        return Err(ProofError::WrongLength);
    }
    check(size, indices.iter().copied())?;
    let mut f = Folder {
        indices,
        leaves,
        proof,
        next_leaf: 0,
        next_proof: 0,
    };
    let mut parts = Vec::new();
    for node in merkle::frontier_ids(size) {
        parts.push(f.hash(node)?);
    }
    if f.next_proof != proof.len() || f.next_leaf != leaves.len() {
        return Err(ProofError::WrongLength);
    }
    Ok(merkle::fold(&parts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tree(n: u64) -> (Vec<Hash>, std::collections::HashMap<NodeId, Hash>, Hash) {
        let leaves: Vec<Hash> = (0..n)
            .map(|i| merkle::leaf_hash(&i.to_be_bytes()))
            .collect();
        let mut nodes = std::collections::HashMap::new();
        let mut f = merkle::Frontier::new();
        for (i, l) in leaves.iter().enumerate() {
            nodes.insert(
                NodeId {
                    level: 0,
                    index: i as u64,
                },
                *l,
            );
            f.push(*l, |id, h| {
                nodes.insert(id, *h);
            });
        }
        (leaves, nodes, f.root())
    }

    proptest! {
        #[test]
        fn ranges_walk_the_same_nodes_as_leaves(n in 1u64..5000, picks in proptest::collection::vec(any::<u16>(), 0..60), runs in proptest::collection::vec(0u64..700, 0..60)) {
            // Leaves in runs of random lengths, so some subtrees are covered whole.
            let mut idx: Vec<u64> = picks
                .iter()
                .zip(runs.iter().chain(std::iter::repeat(&0)))
                .flat_map(|(p, r)| {
                    let a = u64::from(*p) % n;
                    a..(a + r + 1).min(n)
                })
                .collect();
            idx.sort_unstable();
            idx.dedup();
            let ranges = crate::export_proof::ranges(&idx.iter().map(|i| i + 1).collect::<Vec<_>>());
            let ranges: Vec<(u64, u64)> = ranges.iter().map(|(a, b)| (a - 1, b - 1)).collect();
            prop_assert_eq!(nodes_of_ranges(n, &ranges).unwrap(), nodes(n, &idx).unwrap());
        }

        #[test]
        fn any_subset_proves_and_nothing_else_does(n in 1u64..600, picks in proptest::collection::vec(any::<u16>(), 0..40)) {
            let (leaves, all, want) = tree(n);
            let mut idx: Vec<u64> = picks.iter().map(|p| u64::from(*p) % n).collect();
            idx.sort_unstable();
            idx.dedup();
            let ids = super::nodes(n, &idx).unwrap();
            let proof: Vec<Hash> = ids.iter().map(|id| all[id]).collect();
            let lh: Vec<Hash> = idx.iter().map(|i| leaves[*i as usize]).collect();
            prop_assert_eq!(super::root(n, &idx, &lh, &proof), Ok(want));
            if let Some(first) = lh.first() {
                // An altered leaf changes the root.
                let mut bad = lh.clone();
                bad[0] = merkle::leaf_hash(first);
                prop_assert_ne!(super::root(n, &idx, &bad, &proof), Ok(want));
                // A leaf moved to another index does too, or the proof no longer fits.
                let mut moved = idx.clone();
                moved[0] = (idx[0] + 1) % n;
                if !idx.contains(&moved[0]) {
                    moved.sort_unstable();
                    prop_assert_ne!(super::root(n, &moved, &lh, &proof), Ok(want));
                }
            }
            // A proof with a hash missing or extra does not fold.
            prop_assert!(proof.is_empty() || super::root(n, &idx, &lh, &proof[..proof.len() - 1]) != Ok(want));
            let mut extra = proof.clone();
            extra.push([0; 32]);
            prop_assert_eq!(super::root(n, &idx, &lh, &extra), Err(ProofError::WrongLength));
        }
    }

    #[test]
    fn a_contiguous_run_is_small() {
        let ids = nodes(1_000_000, &(1000..2000).collect::<Vec<_>>()).unwrap();
        assert!(ids.len() <= 2 * 20, "{}", ids.len());
        assert!(
            nodes(1_000_000, &(0..1_000_000).collect::<Vec<_>>())
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            nodes(3, &[3]),
            Err(ProofError::IndexOutOfRange { index: 3, size: 3 })
        );
    }
}
