//! The RFC 6962 / RFC 9162 Merkle tree: hashing, the append-only frontier, and
//! inclusion and consistency proofs.
//!
//! Storage keeps the hash of every complete subtree ("node" at `level`, `index` covering
//! leaves `index·2^level .. (index+1)·2^level`). Every hash a proof or root needs is the
//! hash of such a subtree or a right fold of a few of them, so a proof takes O(log n)
//! node reads. The functions here say which nodes are needed; the caller fetches them.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// SHA-256 of the empty string: the root of the empty tree.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// A complete subtree: `level` 0 is a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub level: u32,
    pub index: u64,
}

/// The right edge of a tree: hashes of the maximal complete subtrees covering `[0, size)`,
/// largest first. Appending a leaf merges equal-sized subtrees, yielding new nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    nodes: Vec<(NodeId, Hash)>,
}

impl Frontier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a frontier for a tree of `size` from the hashes of `frontier_ids(size)`.
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Option<Self> {
        let ids = frontier_ids(size);
        if ids.len() != hashes.len() {
            return None;
        }
        Some(Self {
            size,
            nodes: ids.into_iter().zip(hashes).collect(),
        })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The hashes of `frontier_ids(size)`, largest subtree first (what `from_parts` takes).
    pub fn hashes(&self) -> impl Iterator<Item = &Hash> {
        self.nodes.iter().map(|(_, h)| h)
    }

    /// Appends a leaf hash; calls `created` for each complete subtree above the leaf level
    /// that this append completes (the ones storage must persist).
    pub fn push(&mut self, leaf: Hash, mut created: impl FnMut(NodeId, &Hash)) {
        let mut id = NodeId {
            level: 0,
            index: self.size,
        };
        let mut hash = leaf;
        while let Some((top, top_hash)) = self.nodes.last() {
            if top.level != id.level {
                break;
            }
            hash = node_hash(top_hash, &hash);
            id = NodeId {
                level: id.level + 1,
                index: top.index / 2,
            };
            self.nodes.pop();
            created(id, &hash);
        }
        self.nodes.push((id, hash));
        self.size += 1;
    }

    pub fn root(&self) -> Hash {
        fold(
            self.nodes
                .iter()
                .map(|(_, h)| *h)
                .collect::<Vec<_>>()
                .as_slice(),
        )
    }
}

/// The complete subtrees covering `[0, size)`, largest first.
pub fn frontier_ids(size: u64) -> Vec<NodeId> {
    subtrees(0, size)
}

/// Decomposes `[start, end)` into maximal aligned complete subtrees, left to right.
/// In every range a proof asks for, `start` is aligned so sizes only decrease.
pub fn subtrees(start: u64, end: u64) -> Vec<NodeId> {
    let mut out = Vec::new();
    let mut at = start;
    while at < end {
        let mut level = if at == 0 { 63 } else { at.trailing_zeros() };
        while level > 0 && (1u64 << level) > end - at {
            level -= 1;
        }
        out.push(NodeId {
            level,
            index: at >> level,
        });
        at += 1u64 << level;
    }
    out
}

/// Hash of a range from the hashes of its `subtrees`, in order: a right fold.
pub fn fold(hashes: &[Hash]) -> Hash {
    match hashes.split_last() {
        None => empty_root(),
        Some((last, rest)) => rest.iter().rev().fold(*last, |acc, h| node_hash(h, &acc)),
    }
}

/// A half-open leaf range whose Merkle hash is one element of a proof.
pub type Range = (u64, u64);

fn largest_power_of_two_below(n: u64) -> u64 {
    debug_assert!(n > 1);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The ranges whose hashes make the RFC 9162 inclusion proof of leaf `m` in a tree of
/// size `n`, in proof order (leaf side first). Requires `m < n`.
pub fn inclusion_ranges(m: u64, n: u64) -> Vec<Range> {
    let mut out = Vec::new();
    let (mut lo, mut hi) = (0u64, n);
    let mut stack = Vec::new();
    while hi - lo > 1 {
        let k = largest_power_of_two_below(hi - lo);
        if m - lo < k {
            stack.push((lo + k, hi));
            hi = lo + k;
        } else {
            stack.push((lo, lo + k));
            lo += k;
        }
    }
    while let Some(r) = stack.pop() {
        out.push(r);
    }
    out
}

/// The ranges whose hashes make the RFC 9162 consistency proof from size `m` to size `n`.
/// Requires `0 < m <= n`.
pub fn consistency_ranges(m: u64, n: u64) -> Vec<Range> {
    let mut stack = Vec::new();
    let (mut lo, mut hi, mut m_rel) = (0u64, n, m);
    let mut complete = true;
    loop {
        if m_rel == hi - lo {
            if !complete {
                stack.push((lo, hi));
            }
            break;
        }
        let k = largest_power_of_two_below(hi - lo);
        if m_rel <= k {
            stack.push((lo + k, hi));
            hi = lo + k;
        } else {
            stack.push((lo, lo + k));
            lo += k;
            m_rel -= k;
            complete = false;
        }
    }
    stack.reverse();
    stack
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProofError {
    #[error("index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("proof has the wrong number of hashes")]
    WrongLength,
    #[error("recomputed root does not match")]
    RootMismatch,
    #[error("sizes must satisfy 0 < first <= second")]
    BadSizes,
}

/// RFC 9162 §2.1.3.2: verifies an inclusion proof.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(ProofError::WrongLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength);
    }
    if &r == root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// RFC 9162 §2.1.4.2: verifies a consistency proof between two roots.
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if first == 0 || first > second {
        return Err(ProofError::BadSizes);
    }
    if first == second {
        return if proof.is_empty() && first_root == second_root {
            Ok(())
        } else if !proof.is_empty() {
            Err(ProofError::WrongLength)
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    let mut path: Vec<Hash> = proof.to_vec();
    if first.is_power_of_two() {
        path.insert(0, *first_root);
    }
    let Some((first_hash, rest)) = path.split_first() else {
        return Err(ProofError::WrongLength);
    };
    let (mut fn_, mut sn) = (first - 1, second - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*first_hash, *first_hash);
    for c in rest {
        if sn == 0 {
            return Err(ProofError::WrongLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength);
    }
    if &fr == first_root && &sr == second_root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

#[cfg(test)]
#[path = "merkle_tests.rs"]
mod tests;
