//! C2SP `tlog-witness`: the `add-checkpoint` request and the checks a witness makes
//! before it cosigns, as pure functions (the witness's storage and HTTP live elsewhere).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::merkle::{self, Hash};
use crate::note::{Checkpoint, NoteError, NoteVerifier, split_note};

/// Consistency proofs longer than this are refused (the specification's bound).
pub const MAX_PROOF_LINES: usize = 63;

/// An `add-checkpoint` request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    pub old_size: u64,
    pub proof: Vec<Hash>,
    /// The signed checkpoint note.
    pub checkpoint: String,
}

impl AddCheckpoint {
    pub fn encode(&self) -> String {
        let mut out = format!("old {}\n", self.old_size);
        for h in &self.proof {
            out.push_str(&B64.encode(h));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }

    pub fn parse(body: &str) -> Result<Self, &'static str> {
        let (head, checkpoint) = body
            .split_once("\n\n")
            .ok_or("no empty line before the checkpoint")?;
        let mut lines = head.split('\n');
        let old = lines
            .next()
            .and_then(|l| l.strip_prefix("old "))
            .ok_or("the first line must be `old <size>`")?;
        let old_size: u64 = old.parse().map_err(|_| "old size is not a number")?;
        if old_size.to_string() != old {
            return Err("old size has leading zeroes or a sign");
        }
        let mut proof = Vec::new();
        for l in lines {
            let h: Hash = B64
                .decode(l)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or("a proof line is not a base64 SHA-256 hash")?;
            proof.push(h);
        }
        if proof.len() > MAX_PROOF_LINES {
            return Err("more than 63 proof lines");
        }
        Ok(Self {
            old_size,
            proof,
            checkpoint: checkpoint.to_owned(),
        })
    }
}

/// Why a witness refuses to cosign, with the HTTP status the specification gives.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("unknown log origin {0:?}")]
    UnknownOrigin(String),
    #[error("no valid signature by the log's key: {0}")]
    Unsigned(String),
    #[error("old size {old} is above the checkpoint's size {size}")]
    OldAboveSize { old: u64, size: u64 },
    /// The witness has cosigned `known` leaves, not the `old` the log claimed.
    #[error("the witness's latest cosigned size is {known}, not {old}")]
    Conflict { old: u64, known: u64 },
    #[error("inconsistent: {0}")]
    Inconsistent(String),
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Malformed(_) | Refusal::OldAboveSize { .. } => 400,
            Refusal::Unsigned(_) => 403,
            Refusal::UnknownOrigin(_) => 404,
            Refusal::Conflict { .. } => 409,
            Refusal::Inconsistent(_) => 422,
        }
    }
}

/// What a witness knows of one log: its latest cosigned size and root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known {
    pub size: u64,
    pub root: Hash,
}

/// The origin a request names, so the witness can find the log's keys and state.
pub fn origin_of(req: &AddCheckpoint) -> Result<String, Refusal> {
    let (text, _) = split_note(&req.checkpoint).map_err(|e| Refusal::Malformed(e.to_string()))?;
    Ok(Checkpoint::parse(text)
        .map_err(|e| Refusal::Malformed(e.to_string()))?
        .origin)
}

/// Every check the specification asks of `add-checkpoint`, in its order. On success
/// answers the checkpoint to record (and cosign); the caller persists it atomically with
/// the state it read.
pub fn check(
    req: &AddCheckpoint,
    log_keys: &[NoteVerifier],
    known: Option<Known>,
) -> Result<(Checkpoint, String), Refusal> {
    let mut text = None;
    let mut last_err = NoteError::Unsigned(String::new());
    for k in log_keys {
        match k.verify(&req.checkpoint) {
            Ok(t) => {
                text = Some(t.to_owned());
                break;
            }
            // A matching key whose signature fails makes the note malformed: refuse.
            Err(e @ NoteError::BadSignature(_)) => return Err(Refusal::Unsigned(e.to_string())),
            Err(e) => last_err = e,
        }
    }
    let text = text.ok_or_else(|| Refusal::Unsigned(last_err.to_string()))?;
    let cp = Checkpoint::parse(&text).map_err(|e| Refusal::Malformed(e.to_string()))?;
    if req.old_size > cp.size {
        return Err(Refusal::OldAboveSize {
            old: req.old_size,
            size: cp.size,
        });
    }
    let known_size = known.map_or(0, |k| k.size);
    if req.old_size != known_size {
        return Err(Refusal::Conflict {
            old: req.old_size,
            known: known_size,
        });
    }
    if cp.size == 0 && cp.root != merkle::empty_root() {
        return Err(Refusal::Inconsistent(
            "a checkpoint of size 0 must have the empty tree's root".into(),
        ));
    }
    match known {
        None | Some(Known { size: 0, .. }) => {
            if !req.proof.is_empty() {
                return Err(Refusal::Inconsistent(
                    "a proof from size 0 must be empty".into(),
                ));
            }
        }
        Some(k) if k.size == cp.size => {
            if k.root != cp.root || !req.proof.is_empty() {
                return Err(Refusal::Inconsistent(format!(
                    "a different root for size {} than the one cosigned",
                    k.size
                )));
            }
        }
        Some(k) => {
            merkle::verify_consistency(k.size, cp.size, &k.root, &cp.root, &req.proof).map_err(
                |e| {
                    Refusal::Inconsistent(format!(
                        "consistency proof from {} to {} does not verify: {e}",
                        k.size, cp.size
                    ))
                },
            )?;
        }
    }
    Ok((cp, text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::NoteSigner;

    fn log() -> (NoteSigner, NoteVerifier) {
        let s = NoteSigner::new("example.com/log", [1; 32]).unwrap();
        let v = NoteVerifier::parse(&s.verifier_key()).unwrap();
        (s, v)
    }

    fn tree(n: u64) -> (merkle::Frontier, Vec<Hash>) {
        let mut f = merkle::Frontier::new();
        let mut nodes = Vec::new();
        for i in 0..n {
            let l = merkle::leaf_hash(&i.to_be_bytes());
            nodes.push(l);
            f.push(l, |_, _| {});
        }
        (f, nodes)
    }

    fn mth(l: &[Hash]) -> Hash {
        let mut f = merkle::Frontier::new();
        for h in l {
            f.push(*h, |_, _| {});
        }
        f.root()
    }

    fn proof(leaves: &[Hash], m: u64, n: u64) -> Vec<Hash> {
        merkle::consistency_ranges(m, n)
            .into_iter()
            .map(|(a, b)| mth(&leaves[a as usize..b as usize]))
            .collect()
    }

    fn signed(s: &NoteSigner, size: u64, root: Hash) -> String {
        s.sign(
            &Checkpoint {
                origin: "example.com/log".into(),
                size,
                root,
            }
            .body(),
        )
        .unwrap()
    }

    #[test]
    fn the_specifications_statuses() {
        let (s, v) = log();
        let (f10, leaves) = tree(10);
        let (f4, _) = tree(4);
        let known = Some(Known {
            size: 4,
            root: f4.root(),
        });
        let good = AddCheckpoint {
            old_size: 4,
            proof: proof(&leaves, 4, 10),
            checkpoint: signed(&s, 10, f10.root()),
        };
        assert_eq!(AddCheckpoint::parse(&good.encode()).unwrap(), good);
        assert_eq!(origin_of(&good).unwrap(), "example.com/log");
        let (cp, _) = check(&good, std::slice::from_ref(&v), known).unwrap();
        assert_eq!(cp.size, 10);
        // First contact: old 0, no proof.
        let first = AddCheckpoint {
            old_size: 0,
            proof: vec![],
            ..good.clone()
        };
        assert!(check(&first, std::slice::from_ref(&v), None).is_ok());
        assert_eq!(
            check(&first, std::slice::from_ref(&v), known)
                .unwrap_err()
                .status(),
            409
        );
        // A rollback: the log claims an older state than the witness holds.
        let rollback = AddCheckpoint {
            old_size: 4,
            proof: vec![],
            checkpoint: signed(&s, 4, f4.root()),
        };
        let known10 = Some(Known {
            size: 10,
            root: f10.root(),
        });
        assert_eq!(
            check(&rollback, std::slice::from_ref(&v), known10),
            Err(Refusal::Conflict { old: 4, known: 10 })
        );
        // A fork: same size, another root.
        let fork = AddCheckpoint {
            old_size: 10,
            proof: vec![],
            checkpoint: signed(&s, 10, [9; 32]),
        };
        assert_eq!(
            check(&fork, std::slice::from_ref(&v), known10)
                .unwrap_err()
                .status(),
            422
        );
        // A bad proof.
        let mut bad = good.clone();
        bad.proof[0] = [0; 32];
        assert_eq!(
            check(&bad, std::slice::from_ref(&v), known)
                .unwrap_err()
                .status(),
            422
        );
        // Old above size.
        let above = AddCheckpoint {
            old_size: 11,
            ..good.clone()
        };
        assert_eq!(
            check(&above, std::slice::from_ref(&v), known)
                .unwrap_err()
                .status(),
            400
        );
        // Signed by another key, or a tampered signature.
        let other = NoteSigner::new("example.com/log", [2; 32]).unwrap();
        let stranger = AddCheckpoint {
            checkpoint: signed(&other, 10, f10.root()),
            ..good.clone()
        };
        assert_eq!(
            check(&stranger, std::slice::from_ref(&v), known)
                .unwrap_err()
                .status(),
            403
        );
        let forged = AddCheckpoint {
            checkpoint: good.checkpoint.replace("\n10\n", "\n11\n"),
            ..good.clone()
        };
        assert_eq!(
            check(&forged, std::slice::from_ref(&v), known)
                .unwrap_err()
                .status(),
            403
        );
        // Malformed bodies.
        assert!(AddCheckpoint::parse("old 01\n\nx").is_err());
        assert!(AddCheckpoint::parse("old 1\nnot-a-hash\n\nx").is_err());
        assert!(AddCheckpoint::parse("old 1\n").is_err());
    }
}
