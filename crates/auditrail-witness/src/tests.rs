use super::*;
use auditrail_core::cosignature::CosignatureVerifier;
use auditrail_core::merkle::{self, Frontier};
use auditrail_core::note::{Checkpoint, NoteSigner};

const ORIGIN: &str = "auditrail.test/acme";

fn log_key() -> NoteSigner {
    NoteSigner::new("auditrail.test", [5; 32]).unwrap()
}

fn signed(size: u64, root: merkle::Hash) -> String {
    log_key()
        .sign(
            &Checkpoint {
                origin: ORIGIN.into(),
                size,
                root,
            }
            .body(),
        )
        .unwrap()
}

fn leaves(n: u64, salt: u8) -> Vec<merkle::Hash> {
    (0..n)
        .map(|i| merkle::leaf_hash(&[i.to_be_bytes().as_slice(), &[salt]].concat()))
        .collect()
}

fn mth(l: &[merkle::Hash]) -> merkle::Hash {
    let mut f = Frontier::new();
    for h in l {
        f.push(*h, |_, _| {});
    }
    f.root()
}

fn body(old: u64, l: &[merkle::Hash], new: u64) -> String {
    let proof = if old == 0 || old >= new {
        vec![]
    } else {
        merkle::consistency_ranges(old, new)
            .into_iter()
            .map(|(a, b)| mth(&l[a as usize..b as usize]))
            .collect()
    };
    AddCheckpoint {
        old_size: old,
        proof,
        checkpoint: signed(new, mth(&l[..new as usize])),
    }
    .encode()
}

fn open(dir: &Path) -> Witness {
    Witness::open(
        dir,
        "witness.test/w1",
        &[(ORIGIN.into(), log_key().verifier_key())],
    )
    .unwrap()
}

fn status(r: Result<String, AddError>) -> u16 {
    match r {
        Ok(_) => 200,
        Err(AddError::Refused(r)) => r.status(),
        Err(AddError::Internal(_)) => 500,
    }
}

#[test]
fn cosigns_growth_and_refuses_rollback_and_fork() {
    let dir = tempfile::tempdir().unwrap();
    let w = open(dir.path());
    let v = CosignatureVerifier::parse(&w.verifier_key()).unwrap();
    let l = leaves(20, 0);
    let line = w.add_checkpoint(&body(0, &l, 5)).unwrap();
    let note = format!("{}{line}", signed(5, mth(&l[..5])));
    assert!(v.verify(&note).is_ok());
    assert!(w.add_checkpoint(&body(5, &l, 12)).is_ok());
    assert_eq!(w.state().get(ORIGIN).unwrap().unwrap().size, 12);
    // Stale old size: 409 with the size the witness holds.
    match w.add_checkpoint(&body(5, &l, 20)) {
        Err(AddError::Refused(Refusal::Conflict { known, .. })) => assert_eq!(known, 12),
        other => panic!("{other:?}"),
    }
    // A rollback to 5 from 12 is a conflict too; the state stays.
    assert_eq!(status(w.add_checkpoint(&body(12, &l, 5))), 400);
    assert_eq!(status(w.add_checkpoint(&body(5, &l, 5))), 409);
    // A rewritten history: same size, or growth from a different tree.
    let forged = leaves(20, 1);
    assert_eq!(status(w.add_checkpoint(&body(12, &forged, 12))), 422);
    let mut fork = forged.clone();
    fork[..12].copy_from_slice(&l[..12]);
    fork[3] = forged[3];
    assert_eq!(status(w.add_checkpoint(&body(12, &fork, 20))), 422);
    assert_eq!(w.state().get(ORIGIN).unwrap().unwrap().size, 12);
    // Unknown origin: 404; unsigned: 403.
    let other = NoteSigner::new("auditrail.test", [6; 32]).unwrap();
    let stranger = AddCheckpoint {
        old_size: 12,
        proof: vec![],
        checkpoint: other
            .sign(
                &Checkpoint {
                    origin: ORIGIN.into(),
                    size: 12,
                    root: mth(&l[..12]),
                }
                .body(),
            )
            .unwrap(),
    };
    assert_eq!(status(w.add_checkpoint(&stranger.encode())), 403);
    let elsewhere = AddCheckpoint {
        old_size: 0,
        proof: vec![],
        checkpoint: log_key()
            .sign(
                &Checkpoint {
                    origin: "other/log".into(),
                    size: 1,
                    root: l[0],
                }
                .body(),
            )
            .unwrap(),
    };
    assert_eq!(status(w.add_checkpoint(&elsewhere.encode())), 404);
    // Restarted, it remembers, and the key is the same.
    let key = w.verifier_key();
    drop(w);
    let w = open(dir.path());
    assert_eq!(w.verifier_key(), key);
    assert_eq!(status(w.add_checkpoint(&body(5, &l, 20))), 409);
    assert!(w.add_checkpoint(&body(12, &l, 20)).is_ok());
}
