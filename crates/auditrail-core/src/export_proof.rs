//! The proof that travels with an export (`FILE.proof`): the signed checkpoint the
//! export was cut at, which seqs it holds, and one compact multi-leaf proof
//! ([`crate::multiproof`]) that all its rows are leaves of that tree.
//!
//! ```text
//! auditrail/export-proof@v1
//! rows 1234
//! seqs 1-1000,1005,1010-1242
//! <base64 hash>            (zero or more: the multi-leaf proof, in order)
//!
//! <the checkpoint note, with every signature and cosignature it had>
//! ```
//!
//! Why one multi-leaf proof and not a C2SP tlog-proof per row: per-row proofs repeat the
//! upper levels of the tree in every row (k·log2 n hashes); the multi-leaf proof holds each
//! needed subtree once (none at all for an unfiltered export of the whole log), so a
//! million-row export carries kilobytes, not a gigabyte. The `seqs` line names every row's
//! place, so a missing or added row is named, not merely detected.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::merkle::{Hash, ProofError};
use crate::multiproof;

pub const HEADER: &str = "auditrail/export-proof@v1";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportProof {
    /// The rows' seqs, ascending, as inclusive ranges.
    pub seqs: Vec<(u64, u64)>,
    pub hashes: Vec<Hash>,
    /// The checkpoint note the export was cut at.
    pub checkpoint: String,
}

/// Ascending seqs as inclusive ranges.
pub fn ranges(seqs: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &s in seqs {
        match out.last_mut() {
            Some((_, hi)) if *hi + 1 == s => *hi = s,
            _ => out.push((s, s)),
        }
    }
    out
}

impl ExportProof {
    pub fn rows(&self) -> u64 {
        self.seqs.iter().map(|(a, b)| b - a + 1).sum()
    }

    /// The rows' leaf indices (seq − 1), ascending.
    pub fn indices(&self) -> Vec<u64> {
        self.seqs
            .iter()
            .flat_map(|(a, b)| (*a..=*b).map(|s| s - 1))
            .collect()
    }

    pub fn encode(&self) -> String {
        let mut out = format!("{HEADER}\nrows {}\nseqs ", self.rows());
        for (i, (a, b)) in self.seqs.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            if a == b {
                out.push_str(&a.to_string());
            } else {
                out.push_str(&format!("{a}-{b}"));
            }
        }
        out.push('\n');
        for h in &self.hashes {
            out.push_str(&B64.encode(h));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let (head, checkpoint) = text
            .split_once("\n\n")
            .ok_or("no empty line before the checkpoint")?;
        let mut lines = head.split('\n');
        if lines.next() != Some(HEADER) {
            return Err(format!("not an export proof (first line must be {HEADER})"));
        }
        let rows: u64 = lines
            .next()
            .and_then(|l| l.strip_prefix("rows "))
            .and_then(|n| n.parse().ok())
            .ok_or("second line must be `rows <n>`")?;
        let seqs_line = lines
            .next()
            .and_then(|l| l.strip_prefix("seqs"))
            .ok_or("third line must be `seqs <ranges>`")?
            .trim_start();
        let mut seqs = Vec::new();
        let mut last = 0u64;
        for part in seqs_line.split(',').filter(|p| !p.is_empty()) {
            let (a, b) = match part.split_once('-') {
                Some((a, b)) => (a.parse::<u64>(), b.parse::<u64>()),
                None => (part.parse::<u64>(), part.parse::<u64>()),
            };
            let (Ok(a), Ok(b)) = (a, b) else {
                return Err(format!("seq range {part:?} is malformed"));
            };
            if a == 0 || a > b || a <= last {
                return Err(format!("seq range {part:?} is out of order"));
            }
            last = b;
            seqs.push((a, b));
        }
        let mut hashes = Vec::new();
        for l in lines {
            let h: Hash = B64
                .decode(l)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| format!("proof line {l:?} is not a base64 SHA-256 hash"))?;
            hashes.push(h);
        }
        let p = Self {
            seqs,
            hashes,
            checkpoint: checkpoint.to_owned(),
        };
        if p.rows() != rows {
            return Err(format!(
                "rows says {rows}, the seq ranges hold {}",
                p.rows()
            ));
        }
        Ok(p)
    }
}

/// Why an export's rows do not prove against its checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowsError {
    #[error("row {row} (seq {seq}) is not one the proof covers: a row was added")]
    Added { row: u64, seq: u64 },
    #[error("row {row} repeats seq {seq}")]
    Repeated { row: u64, seq: u64 },
    #[error("the row with seq {seq} is missing: a row was removed")]
    Missing { seq: u64 },
    #[error(
        "the rows do not fold to the checkpoint's root: a row's content differs from the log's ({0})"
    )]
    Root(String),
}

/// Checks rows `(row number, seq, leaf)` (any order) against the proof and a tree of
/// `size` with `root`.
pub fn check_rows(
    proof: &ExportProof,
    mut rows: Vec<(u64, u64, Hash)>,
    size: u64,
    root: &Hash,
) -> Result<(), RowsError> {
    rows.sort_unstable_by_key(|r| (r.1, r.0));
    let covered = |seq: u64| {
        let i = proof.seqs.partition_point(|(_, hi)| *hi < seq);
        i < proof.seqs.len() && proof.seqs[i].0 <= seq
    };
    for w in rows.windows(2) {
        if w[0].1 == w[1].1 {
            return Err(RowsError::Repeated {
                row: w[1].0.max(w[0].0),
                seq: w[1].1,
            });
        }
    }
    for r in &rows {
        if !covered(r.1) {
            return Err(RowsError::Added { row: r.0, seq: r.1 });
        }
    }
    if rows.len() as u64 != proof.rows() {
        let have: std::collections::HashSet<u64> = rows.iter().map(|r| r.1).collect();
        let missing = proof
            .seqs
            .iter()
            .flat_map(|(a, b)| *a..=*b)
            .find(|s| !have.contains(s))
            .unwrap_or(0);
        return Err(RowsError::Missing { seq: missing });
    }
    let indices: Vec<u64> = rows.iter().map(|r| r.1 - 1).collect();
    let leaves: Vec<Hash> = rows.iter().map(|r| r.2).collect();
    match multiproof::root(size, &indices, &leaves, &proof.hashes) {
        Ok(r) if &r == root => Ok(()),
        Ok(_) => Err(RowsError::Root("recomputed root differs".into())),
        Err(e @ ProofError::WrongLength) | Err(e @ ProofError::IndexOutOfRange { .. }) => {
            Err(RowsError::Root(e.to_string()))
        }
        Err(e) => Err(RowsError::Root(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{self, Frontier, NodeId};

    fn tree(n: u64) -> (Vec<Hash>, std::collections::HashMap<NodeId, Hash>, Hash) {
        let leaves: Vec<Hash> = (0..n)
            .map(|i| merkle::leaf_hash(&i.to_be_bytes()))
            .collect();
        let mut nodes = std::collections::HashMap::new();
        let mut f = Frontier::new();
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

    #[test]
    fn rows_prove_and_tampering_is_named() {
        let (leaves, nodes, root) = tree(300);
        let seqs: Vec<u64> = (10..=40).chain([77, 78, 200]).collect();
        let idx: Vec<u64> = seqs.iter().map(|s| s - 1).collect();
        let hashes = multiproof::nodes(300, &idx)
            .unwrap()
            .iter()
            .map(|id| nodes[id])
            .collect();
        let proof = ExportProof {
            seqs: ranges(&seqs),
            hashes,
            checkpoint: "cp\n".into(),
        };
        assert_eq!(proof.seqs, vec![(10, 40), (77, 78), (200, 200)]);
        let text = proof.encode();
        assert!(text.contains("\nseqs 10-40,77-78,200\n"));
        let proof = ExportProof::parse(&text).unwrap();
        let rows: Vec<(u64, u64, Hash)> = seqs
            .iter()
            .enumerate()
            .map(|(i, s)| (i as u64 + 1, *s, leaves[*s as usize - 1]))
            .collect();
        assert_eq!(check_rows(&proof, rows.clone(), 300, &root), Ok(()));
        let mut altered = rows.clone();
        altered[3].2 = [0; 32];
        assert!(matches!(
            check_rows(&proof, altered, 300, &root),
            Err(RowsError::Root(_))
        ));
        let mut removed = rows.clone();
        removed.remove(5);
        assert_eq!(
            check_rows(&proof, removed, 300, &root),
            Err(RowsError::Missing { seq: 15 })
        );
        let mut added = rows.clone();
        added.push((99, 150, leaves[149]));
        assert_eq!(
            check_rows(&proof, added, 300, &root),
            Err(RowsError::Added { row: 99, seq: 150 })
        );
        let mut repeated = rows.clone();
        repeated.push((99, 20, leaves[19]));
        assert_eq!(
            check_rows(&proof, repeated, 300, &root),
            Err(RowsError::Repeated { row: 99, seq: 20 })
        );
        let (_, _, other_root) = tree(301);
        assert!(check_rows(&proof, rows, 301, &other_root).is_err());
        assert!(ExportProof::parse(&text.replace("rows 34", "rows 35")).is_err());
        assert!(ExportProof::parse(&text.replace("10-40", "40-10")).is_err());
    }
}
