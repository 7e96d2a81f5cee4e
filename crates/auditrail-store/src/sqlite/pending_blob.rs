//! The blob of one `postings_pending` row: one commit's postings for one org.
//!
//! A search looks one term up in every pending row of its org, and the writer holds up to
//! a block's worth of events pending (see `postings.rs`): the lookup must not read the
//! whole blob. So the blob opens with a directory of its terms, sorted, each with where
//! its rids end, and a lookup is a binary search of it (since schema version 9):
//!
//! ```text
//! count: u32 LE | count × (term: i64 LE, end: u32 LE) | rids of each term, in directory order
//! ```
//!
//! A term's rids are each one's distance from the one before (from the row's `first`
//! rid for the first), as LEB128; they run from the end of the term before it to its own
//! `end`, counted from the start of the rids. Version 8 wrote the terms one after another
//! (term, number of rids, distances): [`legacy_entries`] reads that, to convert.

use crate::terms::{decode_rids, put_varint};

/// Bytes of a directory entry: the term and where its rids end.
const ENTRY: usize = 12;

/// What is wrong with a blob (the caller names the row).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Damaged;

/// Packs terms with their ascending rids (all ≥ `first`); the terms are distinct.
pub(crate) fn pack(first: i64, terms: &[(i64, &[i64])]) -> Vec<u8> {
    let mut sorted: Vec<&(i64, &[i64])> = terms.iter().collect();
    sorted.sort_unstable_by_key(|(term, _)| *term);
    let dir = 4 + sorted.len() * ENTRY;
    let mut out = Vec::with_capacity(dir + terms.iter().map(|(_, r)| r.len() * 2).sum::<usize>());
    out.extend_from_slice(&(sorted.len() as u32).to_le_bytes());
    out.resize(dir, 0);
    for (i, &&(term, rids)) in sorted.iter().enumerate() {
        let mut prev = first;
        for &r in rids {
            put_varint(&mut out, (r - prev) as u64);
            prev = r;
        }
        let end = (out.len() - dir) as u32;
        let at = 4 + i * ENTRY;
        out[at..at + 8].copy_from_slice(&term.to_le_bytes());
        out[at + 8..at + ENTRY].copy_from_slice(&end.to_le_bytes());
    }
    out
}

/// The directory and the rids of a blob, checked: the ends rise and the last is the end of
/// the rids (so every term's rids are whole varints is checked where they are read).
fn split(blob: &[u8]) -> Result<(&[u8], &[u8]), Damaged> {
    let (count, rest) = blob.split_first_chunk::<4>().ok_or(Damaged)?;
    let len = (u32::from_le_bytes(*count) as usize)
        .checked_mul(ENTRY)
        .ok_or(Damaged)?;
    if rest.len() < len {
        return Err(Damaged);
    }
    let (dir, rids) = rest.split_at(len);
    let last = match dir.len() {
        0 => 0,
        n => end_at(dir, n / ENTRY - 1),
    };
    if last != rids.len() {
        return Err(Damaged);
    }
    Ok((dir, rids))
}

fn term_at(dir: &[u8], i: usize) -> i64 {
    let at = i * ENTRY;
    let mut b = [0u8; 8];
    b.copy_from_slice(&dir[at..at + 8]);
    i64::from_le_bytes(b)
}

fn end_at(dir: &[u8], i: usize) -> usize {
    let at = i * ENTRY + 8;
    let mut b = [0u8; 4];
    b.copy_from_slice(&dir[at..at + 4]);
    u32::from_le_bytes(b) as usize
}

/// The bytes of the `i`th term's rids: non-empty, within the rids, whole varints.
fn rids_at<'a>(dir: &[u8], rids: &'a [u8], i: usize) -> Result<&'a [u8], Damaged> {
    let start = if i == 0 { 0 } else { end_at(dir, i - 1) };
    let end = end_at(dir, i);
    let bytes = rids.get(start..end).ok_or(Damaged)?;
    match bytes.last() {
        Some(b) if b & 0x80 == 0 => Ok(bytes),
        _ => Err(Damaged),
    }
}

/// Every term of a blob with its rids, in term order.
pub(crate) fn unpack(first: i64, blob: &[u8]) -> Result<Vec<(i64, Vec<i64>)>, Damaged> {
    let (dir, rids) = split(blob)?;
    (0..dir.len() / ENTRY)
        .map(|i| {
            if i > 0 && term_at(dir, i - 1) >= term_at(dir, i) {
                return Err(Damaged);
            }
            Ok((term_at(dir, i), decode_rids(first, rids_at(dir, rids, i)?)))
        })
        .collect()
}

/// Appends the rids of `term` in a blob to `out`, reading only its directory and them.
pub(crate) fn rids_of(
    first: i64,
    blob: &[u8],
    term: i64,
    out: &mut Vec<i64>,
) -> Result<(), Damaged> {
    let (dir, rids) = split(blob)?;
    let (mut lo, mut hi) = (0, dir.len() / ENTRY);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match term_at(dir, mid).cmp(&term) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => {
                out.extend(decode_rids(first, rids_at(dir, rids, mid)?));
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The terms and rids of a blob version 8 wrote (term, number of rids, distances; one
/// term after another).
pub(crate) fn legacy_entries(first: i64, mut blob: &[u8]) -> Result<Vec<(i64, Vec<i64>)>, Damaged> {
    let mut out = Vec::new();
    while !blob.is_empty() {
        let (term, rest) = blob.split_first_chunk::<8>().ok_or(Damaged)?;
        blob = rest;
        let n = usize::try_from(take_varint(&mut blob).ok_or(Damaged)?).map_err(|_| Damaged)?;
        // n varints: each ends at a byte without the high bit.
        let mut left = n;
        let len = match n {
            0 => 0,
            _ => {
                1 + blob
                    .iter()
                    .position(|&b| {
                        left -= usize::from(b & 0x80 == 0);
                        left == 0
                    })
                    .ok_or(Damaged)?
            }
        };
        let (rids, rest) = blob.split_at(len);
        blob = rest;
        out.push((i64::from_le_bytes(*term), decode_rids(first, rids)));
    }
    Ok(out)
}

fn take_varint(blob: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for (i, &b) in blob.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *blob = &blob[i + 1..];
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::rid::rid;

    fn looked_up(first: i64, blob: &[u8], term: i64) -> Result<Vec<i64>, Damaged> {
        let mut got = Vec::new();
        rids_of(first, blob, term, &mut got).map(|()| got)
    }

    #[test]
    fn packed_terms_round_trip_and_are_found_alone() {
        let first = rid(3, 1000);
        let a = [first, first + 1, first + 300];
        let b = [first + 5];
        let c = [first + 2, first + 70_000];
        // Given out of order: the directory is sorted.
        let blob = pack(first, &[(i64::MAX, &b), (-7, &a), (0, &c)]);
        assert_eq!(
            unpack(first, &blob).unwrap(),
            vec![(-7, a.to_vec()), (0, c.to_vec()), (i64::MAX, b.to_vec())]
        );
        for (term, want) in [(-7, &a[..]), (0, &c[..]), (i64::MAX, &b[..]), (5, &[][..])] {
            assert_eq!(looked_up(first, &blob, term).unwrap(), want, "term {term}");
        }
        assert!(unpack(first, &pack(first, &[])).unwrap().is_empty());
        assert!(looked_up(first, &pack(first, &[]), 1).unwrap().is_empty());
    }

    #[test]
    fn a_damaged_blob_is_rejected_not_misread() {
        let first = rid(1, 1);
        let a: Vec<i64> = (0..40).map(|i| first + i * 200).collect();
        let blob = pack(first, &[(1, &a), (2, &a[..3]), (3, &a[..1])]);
        for cut in 0..blob.len() {
            assert_eq!(unpack(first, &blob[..cut]), Err(Damaged), "cut at {cut}");
            assert!(
                looked_up(first, &blob[..cut], 3).is_err(),
                "lookup, cut at {cut}"
            );
        }
        // An end that points into the middle of a varint (a distance of 200 takes two
        // bytes: the first term's rids are 0x00, 0xc8 0x01, ...).
        let mut bad = blob.clone();
        bad[4 + 8] = 2;
        assert_eq!(looked_up(first, &bad, 1), Err(Damaged));
        // Terms out of order.
        let mut swapped = blob.clone();
        swapped[4..12].copy_from_slice(&9i64.to_le_bytes());
        assert_eq!(unpack(first, &swapped), Err(Damaged));
        // A count far beyond the blob.
        let mut huge = blob;
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(unpack(first, &huge), Err(Damaged));
    }

    #[test]
    fn version_8_blobs_are_read() {
        let first = rid(3, 1000);
        // term -7: 3 rids (distances 0, 1, 299 — two bytes); term MAX: 1 rid (5).
        let mut old = Vec::new();
        old.extend_from_slice(&(-7i64).to_le_bytes());
        old.extend_from_slice(&[3, 0, 1, 0xab, 0x02]);
        old.extend_from_slice(&i64::MAX.to_le_bytes());
        old.extend_from_slice(&[1, 5]);
        assert_eq!(
            legacy_entries(first, &old).unwrap(),
            vec![
                (-7, vec![first, first + 1, first + 300]),
                (i64::MAX, vec![first + 5])
            ]
        );
        assert_eq!(legacy_entries(first, &old[..13]).unwrap().len(), 1);
        for cut in (1..old.len()).filter(|&c| c != 13) {
            assert_eq!(
                legacy_entries(first, &old[..cut]),
                Err(Damaged),
                "cut {cut}"
            );
        }
    }
}
