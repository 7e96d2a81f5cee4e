//! The blob of one `postings_buckets` row (schema version 15): one merge's terms of few
//! events in one block and bucket.
//!
//! Most of these terms are resource ids with one event in the block, and the layout that
//! pending rows use (a fixed directory entry of the 64-bit term and a 32-bit end, then the
//! rids) spent 12 bytes naming each term for the ~3 of its one rid: about 11 bytes an
//! event of the whole index. Here a term is named by 24 bits (with the bucket's 8 in the
//! row's key, 32 bits of its hash), as the change from the term before, and a term with
//! one rid says so in that same number. A search re-checks every event it reads against
//! its filter, so two terms sharing those 32 bits (one row holds a few hundred terms, so
//! about one lookup in 60,000 meets another's) only cost reading the other's events.
//!
//! Layout: the entry count (LEB128); then per entry, in ascending key order: (the key's
//! change from the entry before, from 0 for the first) × 2 + (1 if it has one rid), as
//! LEB128; its rid count if not one (LEB128, at least 2); its rids, each the distance from
//! the one before (from the row's first rid for the first), LEB128.

use super::pending_blob::Damaged;
use crate::terms::put_varint;

/// The bits of `term` that name it within its bucket row: the 24 below the bucket's 8.
pub(crate) fn key(term: i64) -> u32 {
    (((term as u64) >> 32) & 0x00ff_ffff) as u32
}

/// Packs the terms of one bucket with their ascending rids (all ≥ `first`). Terms that
/// share a key become one entry holding the rids of both.
pub(crate) fn pack(first: i64, terms: &[(i64, &[i64])]) -> Vec<u8> {
    let mut keyed: Vec<(u32, &[i64])> = terms.iter().map(|&(t, r)| (key(t), r)).collect();
    keyed.sort_unstable_by_key(|e| e.0);
    let mut entries: Vec<(u32, Vec<i64>)> = Vec::with_capacity(keyed.len());
    for (k, rids) in keyed {
        match entries.last_mut() {
            Some((last, all)) if *last == k => {
                all.extend_from_slice(rids);
                all.sort_unstable();
                all.dedup();
            }
            _ => entries.push((k, rids.to_vec())),
        }
    }
    let mut out = Vec::with_capacity(4 + entries.len() * 8);
    put_varint(&mut out, entries.len() as u64);
    let mut prev = 0u32;
    for (k, rids) in &entries {
        let single = u64::from(rids.len() == 1);
        put_varint(&mut out, u64::from(k - prev) << 1 | single);
        if rids.len() != 1 {
            put_varint(&mut out, rids.len() as u64);
        }
        let mut at = first;
        for &r in rids {
            put_varint(&mut out, (r - at) as u64);
            at = r;
        }
        prev = *k;
    }
    out
}

struct Reader<'a> {
    blob: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn varint(&mut self) -> Result<u64, Damaged> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.blob.get(self.at).ok_or(Damaged)?;
            self.at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Damaged)
    }

    /// Skips `n` varints.
    fn skip(&mut self, n: u64) -> Result<(), Damaged> {
        let mut left = n;
        while left > 0 {
            let b = *self.blob.get(self.at).ok_or(Damaged)?;
            self.at += 1;
            left -= u64::from(b & 0x80 == 0);
        }
        Ok(())
    }
}

/// Walks the entries of a blob; `visit(key, reader, rid count)` must read or skip the
/// entry's rids and returns whether to go on.
fn walk(
    blob: &[u8],
    mut visit: impl FnMut(u32, &mut Reader<'_>, u64) -> Result<bool, Damaged>,
) -> Result<(), Damaged> {
    let mut r = Reader { blob, at: 0 };
    let count = r.varint()?;
    if count > blob.len() as u64 {
        return Err(Damaged);
    }
    let mut k = 0u64;
    for i in 0..count {
        let head = r.varint()?;
        let step = head >> 1;
        if i > 0 && step == 0 {
            return Err(Damaged);
        }
        k = k
            .checked_add(step)
            .filter(|&k| k <= 0x00ff_ffff)
            .ok_or(Damaged)?;
        let n = if head & 1 == 1 {
            1
        } else {
            let n = r.varint()?;
            if n < 2 || n > blob.len() as u64 {
                return Err(Damaged);
            }
            n
        };
        if !visit(k as u32, &mut r, n)? {
            return Ok(());
        }
    }
    if r.at != blob.len() {
        return Err(Damaged);
    }
    Ok(())
}

/// The `n` rids at the reader, the first counted from `first`.
fn read_rids(r: &mut Reader<'_>, first: i64, n: u64, out: &mut Vec<i64>) -> Result<(), Damaged> {
    let mut at = first;
    for _ in 0..n {
        let d = i64::try_from(r.varint()?).map_err(|_| Damaged)?;
        at = at.checked_add(d).ok_or(Damaged)?;
        out.push(at);
    }
    Ok(())
}

/// Appends to `out` the rids the blob holds under `term`'s key: its own rids, and those of
/// any other term of the row that shares its key.
pub(crate) fn rids_of(
    first: i64,
    blob: &[u8],
    term: i64,
    out: &mut Vec<i64>,
) -> Result<(), Damaged> {
    let want = key(term);
    walk(blob, |k, r, n| {
        if k < want {
            r.skip(n)?;
            return Ok(true);
        }
        if k == want {
            read_rids(r, first, n, out)?;
        }
        Ok(false)
    })
}

/// Every entry of a blob: its key and rids, in key order.
#[cfg(test)]
pub(crate) fn unpack(first: i64, blob: &[u8]) -> Result<Vec<(u32, Vec<i64>)>, Damaged> {
    let mut out = Vec::new();
    walk(blob, |k, r, n| {
        let mut rids = Vec::new();
        read_rids(r, first, n, &mut rids)?;
        out.push((k, rids));
        Ok(true)
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: a panic is a failed test")]
    use super::*;
    use crate::sqlite::rid::rid;
    use proptest::prelude::*;

    fn looked_up(first: i64, blob: &[u8], term: i64) -> Result<Vec<i64>, Damaged> {
        let mut got = Vec::new();
        rids_of(first, blob, term, &mut got).map(|()| got)
    }

    #[test]
    fn terms_are_found_by_their_key_and_a_single_rid_costs_a_few_bytes() {
        let first = rid(3, 1000);
        let (a, b, c) = (7i64 << 32, 9i64 << 32, 0x00ff_ffffi64 << 32);
        let ra = [first, first + 1, first + 300];
        let rb = [first + 5];
        let rc = [first + 2, first + 70_000];
        let blob = pack(first, &[(c, &rc), (a, &ra), (b, &rb)]);
        assert_eq!(
            unpack(first, &blob).unwrap(),
            vec![
                (7, ra.to_vec()),
                (9, rb.to_vec()),
                (0x00ff_ffff, rc.to_vec())
            ]
        );
        assert_eq!(looked_up(first, &blob, a).unwrap(), ra);
        assert_eq!(looked_up(first, &blob, b).unwrap(), rb);
        assert_eq!(looked_up(first, &blob, c).unwrap(), rc);
        assert!(looked_up(first, &blob, 8i64 << 32).unwrap().is_empty());
        // The bucket's bits and the low 32 bits do not name a term here: a term that
        // differs only there reads the same entry (the search re-checks each event).
        assert_eq!(looked_up(first, &blob, a | 0x1234).unwrap(), ra);
        // One rid near the row's first: 1 count, 1 key, 1 rid byte.
        assert_eq!(pack(first, &[(a, &rb)]).len(), 3);
        assert!(unpack(first, &pack(first, &[])).unwrap().is_empty());
    }

    #[test]
    fn terms_sharing_a_key_share_an_entry() {
        let first = rid(1, 1);
        let (a, b) = (5i64 << 32 | 1, 5i64 << 32 | 2);
        let blob = pack(
            first,
            &[(a, &[first, first + 4]), (b, &[first + 2, first + 4])],
        );
        let both = vec![first, first + 2, first + 4];
        assert_eq!(looked_up(first, &blob, a).unwrap(), both);
        assert_eq!(looked_up(first, &blob, b).unwrap(), both);
    }

    #[test]
    fn a_damaged_blob_is_rejected_not_misread() {
        let first = rid(1, 1);
        let a: Vec<i64> = (0..40).map(|i| first + i * 200).collect();
        let blob = pack(
            first,
            &[(1 << 32, &a), (2 << 32, &a[..3]), (3 << 32, &a[..1])],
        );
        for cut in 0..blob.len() {
            assert_eq!(unpack(first, &blob[..cut]), Err(Damaged), "cut at {cut}");
            assert!(
                looked_up(first, &blob[..cut], 3 << 32).is_err(),
                "cut at {cut}"
            );
        }
        assert_eq!(
            unpack(first, &[blob.as_slice(), &[0]].concat()),
            Err(Damaged)
        );
        // Keys that do not rise.
        assert_eq!(unpack(first, &[2, 3, 0, 1, 0]), Err(Damaged));
        // A count far beyond the blob.
        assert_eq!(unpack(first, &[0xff, 0xff, 0x03]), Err(Damaged));
    }

    proptest! {
        /// Every term's rids are among those read for it; terms whose key no other term
        /// of the row shares read exactly theirs.
        #[test]
        fn each_term_reads_its_rids(
            terms in proptest::collection::btree_map(
                prop_oneof![any::<i64>(), (0i64..4).prop_map(|k| k << 32 | 77)],
                proptest::collection::btree_set(0i64..200_000, 1..20),
                0..60),
        ) {
            let first = rid(2, 1);
            let terms: Vec<(i64, Vec<i64>)> = terms
                .into_iter()
                .map(|(t, r)| (t, r.into_iter().map(|x| first + x).collect()))
                .collect();
            let refs: Vec<(i64, &[i64])> = terms.iter().map(|(t, r)| (*t, r.as_slice())).collect();
            let blob = pack(first, &refs);
            for (t, rids) in &terms {
                let got = looked_up(first, &blob, *t).unwrap();
                let shared = terms.iter().filter(|(o, _)| key(*o) == key(*t)).count() > 1;
                if shared {
                    prop_assert!(rids.iter().all(|r| got.contains(r)));
                    prop_assert!(got.windows(2).all(|w| w[0] < w[1]));
                } else {
                    prop_assert_eq!(&got, rids);
                }
            }
        }
    }
}
