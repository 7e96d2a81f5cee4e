use super::*;

fn hd(s: &str) -> Hash {
    hex::decode(s).unwrap().try_into().unwrap()
}

/// RFC 6962 test vectors as published with the certificate-transparency reference trees.
const LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];
const ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn leaves(n: usize) -> Vec<Hash> {
    (0..n)
        .map(|i| leaf_hash(&(i as u64).to_be_bytes()))
        .collect()
}

/// Reference MTH straight from the RFC's recursive definition.
fn mth(l: &[Hash]) -> Hash {
    match l.len() {
        0 => empty_root(),
        1 => l[0],
        n => {
            let k = largest_power_of_two_below(n as u64) as usize;
            node_hash(&mth(&l[..k]), &mth(&l[k..]))
        }
    }
}

fn range_hash(l: &[Hash], (a, b): Range) -> Hash {
    mth(&l[a as usize..b as usize])
}

#[test]
fn roots_match_rfc6962_vectors() {
    let mut f = Frontier::new();
    assert_eq!(f.root(), hd(ROOTS[0]));
    for (i, leaf) in LEAVES.iter().enumerate() {
        f.push(leaf_hash(&hex::decode(leaf).unwrap()), |_, _| {});
        assert_eq!(f.root(), hd(ROOTS[i + 1]), "size {}", i + 1);
    }
}

#[test]
fn inclusion_proof_matches_published_path() {
    let l: Vec<Hash> = LEAVES
        .iter()
        .map(|x| leaf_hash(&hex::decode(x).unwrap()))
        .collect();
    let proof: Vec<Hash> = inclusion_ranges(0, 8)
        .into_iter()
        .map(|r| range_hash(&l, r))
        .collect();
    assert_eq!(
        proof,
        vec![
            hd("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            hd("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            hd("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ]
    );
    verify_inclusion(0, 8, &l[0], &proof, &hd(ROOTS[8])).unwrap();
}

#[test]
fn frontier_reports_every_complete_node() {
    let l = leaves(13);
    let mut f = Frontier::new();
    let mut created = Vec::new();
    for h in &l {
        f.push(*h, |id, hash| created.push((id, *hash)));
    }
    for (id, hash) in &created {
        let size = 1u64 << id.level;
        assert_eq!(
            *hash,
            range_hash(&l, (id.index * size, (id.index + 1) * size))
        );
    }
    // 13 leaves complete 6 level-1, 3 level-2 and 1 level-3 nodes.
    assert_eq!(created.len(), 10);
    let ids = frontier_ids(13);
    let hashes = ids.iter().map(|id| {
        let s = 1u64 << id.level;
        range_hash(&l, (id.index * s, (id.index + 1) * s))
    });
    let rebuilt = Frontier::from_parts(13, hashes.collect()).unwrap();
    assert_eq!(rebuilt, f);
}

#[test]
fn subtrees_fold_to_range_hash() {
    let l = leaves(37);
    for (a, b) in [(0, 37), (32, 37), (16, 24), (36, 37), (0, 1), (8, 13)] {
        let hashes: Vec<Hash> = subtrees(a, b)
            .into_iter()
            .map(|id| {
                let s = 1u64 << id.level;
                range_hash(&l, (id.index * s, (id.index + 1) * s))
            })
            .collect();
        assert_eq!(fold(&hashes), range_hash(&l, (a, b)), "{a}..{b}");
    }
}

#[test]
fn tampered_proofs_fail() {
    let l = leaves(10);
    let root = mth(&l);
    let mut proof: Vec<Hash> = inclusion_ranges(3, 10)
        .into_iter()
        .map(|r| range_hash(&l, r))
        .collect();
    assert_eq!(
        verify_inclusion(3, 10, &l[4], &proof, &root),
        Err(ProofError::RootMismatch)
    );
    proof[1][0] ^= 1;
    assert!(verify_inclusion(3, 10, &l[3], &proof, &root).is_err());
    proof.pop();
    assert!(verify_inclusion(3, 10, &l[3], &proof, &root).is_err());
    assert!(verify_inclusion(10, 10, &l[3], &proof, &root).is_err());
}

proptest::proptest! {
    #[test]
    fn every_inclusion_proof_verifies(n in 1u64..300, pick in 0u64..1000) {
        let l = leaves(n as usize);
        let m = pick % n;
        let root = mth(&l);
        let proof: Vec<Hash> = inclusion_ranges(m, n).into_iter().map(|r| range_hash(&l, r)).collect();
        proptest::prop_assert_eq!(verify_inclusion(m, n, &l[m as usize], &proof, &root), Ok(()));
        // Ranges must be ones storage can answer: aligned decompositions.
        for (a, b) in inclusion_ranges(m, n) {
            let parts = subtrees(a, b);
            proptest::prop_assert!(parts.windows(2).all(|w| w[0].level > w[1].level));
        }
    }

    #[test]
    fn every_consistency_proof_verifies(n in 1u64..300, pick in 0u64..1000) {
        let l = leaves(n as usize);
        let m = pick % n + 1;
        let proof: Vec<Hash> = consistency_ranges(m, n).into_iter().map(|r| range_hash(&l, r)).collect();
        let (r1, r2) = (mth(&l[..m as usize]), mth(&l));
        proptest::prop_assert_eq!(verify_consistency(m, n, &r1, &r2, &proof), Ok(()));
        if m < n {
            let mut other = l.clone();
            other[(m - 1) as usize][0] ^= 1;
            let forged = mth(&other[..m as usize]);
            proptest::prop_assert!(verify_consistency(m, n, &forged, &r2, &proof).is_err());
        }
    }
}
