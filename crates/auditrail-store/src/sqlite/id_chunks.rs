//! The merged client-id claims, packed in chunks (schema version 14).
//!
//! A claim is a 128-bit key (`h`, `h2`) and the rid it was accepted as. Kept as rows of a
//! rowid table keyed by `h` it cost ~32 bytes on disk: a random 64-bit rowid takes 9
//! bytes as a varint, `h2` 8, the rid 6, and each row has its own header and pointer.
//! Claims are merged in large sorted batches (`idem.rs`), so they can be kept sorted in
//! chunks instead: `id_chunks` rows keyed by the chunk's first `h`, each holding up to
//! [`CHUNK_BYTES`] of claims in key order, `h` as the gap from the claim before (a
//! varint: ~6 bytes at a million claims, less as the set grows), `h2` as it is and the
//! rid as the zigzag change from the claim before. About 19 bytes a claim; a lookup reads
//! the one chunk whose range holds its key.
//!
//! A merge rewrites the chunks in key order, a window at a time: the chunks of the window
//! and the new claims that fall in its key range become new chunks, written where the old
//! ones were. Keys are random, so every chunk takes some of a merge's claims, as every
//! page of the former table did; writing them in order fills the pages.
//!
//! Chunk layout: the claim count (LEB128), then per claim the gap of `h` from the claim
//! before (from the chunk's first `h` for the first, so 0), LEB128; `h2`, 8 bytes LE; the
//! zigzag change of the rid from the claim before (from 0), LEB128.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::error::Context;
use crate::terms::put_varint;
use crate::{Result, StoreError};

/// A claim: `h`, `h2`, rid.
pub(crate) type Claim = (i64, i64, i64);

/// The most bytes a chunk holds: four chunks and their rows' headers fill a 16 KB page
/// without spilling into overflow pages.
pub(crate) const CHUNK_BYTES: usize = 4_000;
/// Chunks rewritten together in a merge.
const WINDOW: usize = 256;
/// The most bytes one claim takes in a chunk.
const MAX_CLAIM_BYTES: usize = 10 + 8 + 10;

fn corrupt(first: i64, why: &str) -> StoreError {
    StoreError::Corrupt(format!("client-id claims chunk at {first}: {why}"))
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// `claims` (sorted by `h`, none equal) as one chunk's bytes.
fn encode(claims: &[Claim]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + claims.len() * 20);
    put_varint(&mut out, claims.len() as u64);
    let (mut h0, mut rid0) = (claims.first().map_or(0, |c| c.0), 0i64);
    for &(h, h2, rid) in claims {
        put_varint(&mut out, (h as u64).wrapping_sub(h0 as u64));
        out.extend_from_slice(&h2.to_le_bytes());
        put_varint(&mut out, zigzag(rid.wrapping_sub(rid0)));
        (h0, rid0) = (h, rid);
    }
    out
}

struct Bytes<'a> {
    data: &'a [u8],
    at: usize,
}

impl Bytes<'_> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.data.get(self.at)?;
            self.at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn word(&mut self) -> Option<i64> {
        let b = self.data.get(self.at..self.at + 8)?;
        self.at += 8;
        let mut w = [0u8; 8];
        w.copy_from_slice(b);
        Some(i64::from_le_bytes(w))
    }
}

/// The claims of the chunk whose first key is `first`, in key order; `Corrupt` unless
/// they are exactly what [`encode`] writes for a chunk starting there.
fn decode(first: i64, data: &[u8]) -> Result<Vec<Claim>> {
    let mut r = Bytes { data, at: 0 };
    let n = r.varint().ok_or_else(|| corrupt(first, "no count"))?;
    if n == 0 || n > (data.len() / 9) as u64 {
        return Err(corrupt(first, "a count that does not fit"));
    }
    let mut out = Vec::with_capacity(n as usize);
    let (mut h, mut rid) = (first, 0i64);
    for i in 0..n {
        let gap = r.varint().ok_or_else(|| corrupt(first, "truncated"))?;
        if (i == 0) != (gap == 0) {
            return Err(corrupt(first, "keys out of order"));
        }
        let next = (h as u64).wrapping_add(gap) as i64;
        if next < h {
            return Err(corrupt(first, "keys out of order"));
        }
        h = next;
        let h2 = r.word().ok_or_else(|| corrupt(first, "truncated"))?;
        rid = rid.wrapping_add(unzigzag(
            r.varint().ok_or_else(|| corrupt(first, "truncated"))?,
        ));
        out.push((h, h2, rid));
    }
    if r.at != data.len() {
        return Err(corrupt(first, "trailing bytes"));
    }
    Ok(out)
}

/// The `(h2, rid)` of the merged claim keyed `h`, if there is one.
pub(crate) fn lookup(c: &Connection, h: i64) -> Result<Option<(i64, i64)>> {
    let chunk: Option<(i64, Vec<u8>)> = c
        .prepare_cached(
            "SELECT first_h, data FROM id_chunks WHERE first_h <= ?1 ORDER BY first_h DESC LIMIT 1",
        )
        .op("prepare id read")?
        .query_row([h], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .op("read id")?;
    let Some((first, data)) = chunk else {
        return Ok(None);
    };
    let claims = decode(first, &data)?;
    Ok(claims
        .binary_search_by_key(&h, |c| c.0)
        .ok()
        .map(|i| (claims[i].1, claims[i].2)))
}

/// How many claims are merged.
pub(crate) fn count(c: &Connection) -> Result<i64> {
    c.query_row("SELECT coalesce(sum(n), 0) FROM id_chunks", [], |r| {
        r.get(0)
    })
    .op("count client ids")
}

/// Calls `f` with the key `h` of every merged claim.
pub(crate) fn scan(c: &Connection, mut f: impl FnMut(i64)) -> Result<()> {
    let mut st = c
        .prepare("SELECT first_h, data FROM id_chunks")
        .op("prepare client-id scan")?;
    let mut rows = st.query([]).op("scan client ids")?;
    while let Some(r) = rows.next().op("scan client ids")? {
        let first: i64 = r.get(0).op("client ids chunk")?;
        let data = r.get_ref(1).op("client ids chunk")?;
        let data = data.as_blob().map_err(|_| corrupt(first, "not a blob"))?;
        for (h, _, _) in decode(first, data)? {
            f(h);
        }
    }
    Ok(())
}

/// Writes `claims` (sorted by `h`) as chunks of at most [`CHUNK_BYTES`].
fn write(t: &Transaction<'_>, claims: &[Claim]) -> Result<()> {
    let mut ins = t
        .prepare_cached("INSERT INTO id_chunks (first_h, n, data) VALUES (?1, ?2, ?3)")
        .op("prepare id merge")?;
    let mut from = 0;
    while from < claims.len() {
        // Each claim takes at most MAX_CLAIM_BYTES; grow the chunk while it fits.
        let mut end = from;
        let mut bytes = 10;
        while end < claims.len() && bytes + MAX_CLAIM_BYTES <= CHUNK_BYTES {
            bytes += claim_bytes(claims, from, end);
            end += 1;
        }
        let chunk = &claims[from..end];
        ins.execute(params![chunk[0].0, chunk.len() as i64, encode(chunk)])
            .op("merge ids")?;
        from = end;
    }
    Ok(())
}

/// The bytes claim `i` of `claims` takes in a chunk that starts with claim `first`.
fn claim_bytes(claims: &[Claim], first: usize, i: usize) -> usize {
    let varint_len = |v: u64| (64 - v.leading_zeros() as usize).max(1).div_ceil(7);
    let (h0, rid0) = if i == first {
        (claims[i].0, 0)
    } else {
        (claims[i - 1].0, claims[i - 1].2)
    };
    varint_len((claims[i].0 as u64).wrapping_sub(h0 as u64))
        + 8
        + varint_len(zigzag(claims[i].2.wrapping_sub(rid0)))
}

/// Merges `new` (sorted by `h`; no key among them or already merged) into the chunks.
/// `Corrupt` (and the caller's transaction rolls back) if a key is already there.
pub(crate) fn merge(t: &Transaction<'_>, new: &[Claim]) -> Result<()> {
    let mut read = t
        .prepare_cached(
            "SELECT first_h, data FROM id_chunks WHERE first_h >= ?1 ORDER BY first_h LIMIT ?2",
        )
        .op("prepare id merge")?;
    let mut rest = new;
    let mut from = i64::MIN;
    loop {
        let chunks: Vec<(i64, Vec<u8>)> = read
            .query_map(params![from, WINDOW as i64 + 1], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .op("read ids")?
            .collect::<std::result::Result<_, _>>()
            .op("read ids")?;
        // The window's key range is from..until (until: the next window's first key).
        let until = chunks.get(WINDOW).map(|c| c.0);
        let take = until.map_or(rest.len(), |u| rest.partition_point(|c| c.0 < u));
        let (mine, later) = rest.split_at(take);
        if !mine.is_empty() {
            let mut old = Vec::new();
            for (first, data) in chunks.iter().take(WINDOW) {
                old.extend(decode(*first, data)?);
            }
            let merged = merge_sorted(&old, mine)?;
            // `until` is above `from` (it is a later chunk's first key).
            t.prepare_cached("DELETE FROM id_chunks WHERE first_h BETWEEN ?1 AND ?2")
                .op("prepare id merge")?
                .execute(params![from, until.map_or(i64::MAX, |u| u - 1)])
                .op("merge ids")?;
            write(t, &merged)?;
        }
        match until {
            Some(u) => (from, rest) = (u, later),
            None => return Ok(()),
        }
    }
}

/// `a` and `b` (each sorted by `h`) in one sorted list; `Corrupt` if a key is in both.
fn merge_sorted(a: &[Claim], b: &[Claim]) -> Result<Vec<Claim>> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                return Err(StoreError::Corrupt(format!(
                    "client-id key {} merged twice",
                    a[i].0
                )));
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    Ok(out)
}

/// Moves the claims of the former `ids` table into chunks (schema version 14).
pub(crate) fn convert_ids(t: &Transaction<'_>) -> Result<()> {
    let mut all: Vec<Claim> = Vec::new();
    {
        let mut st = t
            .prepare("SELECT h, h2, rid FROM ids ORDER BY h")
            .op("read old ids")?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .op("read old ids")?;
        for row in rows {
            all.push(row.op("read old ids")?);
            if all.len() >= 1 << 16 {
                write(t, &all)?;
                all.clear();
            }
        }
    }
    write(t, &all)?;
    t.execute_batch("DROP TABLE ids").op("drop old ids")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: a panic is a failed test")]
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn db(dir: &std::path::Path) -> Connection {
        let mut c = Connection::open(dir.join("t.db")).unwrap();
        super::super::schema::migrate(&mut c).unwrap();
        c
    }

    fn claim(x: u64) -> Claim {
        let h = x.wrapping_mul(0x9E37_79B9_7F4A_7C15) as i64;
        (h, h.rotate_left(17) ^ 5, (1 << 40) | (x as i64 % 1_000_000))
    }

    #[test]
    fn a_chunk_comes_back_as_written_and_damage_is_refused() {
        let mut claims: Vec<Claim> = (0..200).map(claim).collect();
        claims.push((i64::MIN, -1, 0));
        claims.push((i64::MAX, 1, i64::MAX));
        claims.sort_unstable();
        let data = encode(&claims);
        assert_eq!(decode(claims[0].0, &data).unwrap(), claims);
        // ~19 bytes a claim here, against 24 as three words.
        assert!(data.len() < claims.len() * 20, "{}", data.len());
        assert!(decode(claims[0].0, &data[..data.len() - 1]).is_err());
        assert!(decode(claims[0].0, &[data.as_slice(), &[0]].concat()).is_err());
        assert!(decode(claims[0].0, &[0]).is_err(), "empty");
        // Keys that would wrap around: out of order.
        let wrapped = encode(&[(i64::MAX - 1, 0, 0), (i64::MIN, 0, 0)]);
        assert!(decode(i64::MAX - 1, &wrapped).is_err());
    }

    #[test]
    fn merges_keep_every_claim_findable_in_full_pages() {
        let d = tempfile::tempdir().unwrap();
        let mut c = db(d.path());
        let t = c.transaction().unwrap();
        let mut model = BTreeMap::new();
        for round in 0..4u64 {
            let mut new: Vec<Claim> = (round * 30_000..(round + 1) * 30_000).map(claim).collect();
            new.sort_unstable();
            merge(&t, &new).unwrap();
            model.extend(new.iter().map(|&(h, h2, rid)| (h, (h2, rid))));
        }
        assert_eq!(count(&t).unwrap(), 120_000);
        for (&h, &v) in model.iter().step_by(97) {
            assert_eq!(lookup(&t, h).unwrap(), Some(v));
            assert_eq!(lookup(&t, h.wrapping_add(1)).unwrap(), None);
        }
        assert_eq!(lookup(&t, i64::MIN).unwrap(), None);
        let mut keys = Vec::new();
        scan(&t, |h| keys.push(h)).unwrap();
        keys.sort_unstable();
        assert_eq!(keys, model.keys().copied().collect::<Vec<_>>());
        // Chunks are nearly full: the claims cost about their packed size on disk.
        let (chunks, bytes): (i64, i64) = t
            .query_row(
                "SELECT count(*), sum(length(data)) FROM id_chunks",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert!(
            bytes / chunks > (CHUNK_BYTES as i64) * 9 / 10,
            "{bytes} / {chunks}"
        );
        // A key merged twice is refused, and the claims stay as they were.
        let twice = [claim(5)];
        assert!(merge(&t, &twice).is_err());
    }

    proptest! {
        /// Whatever keys come, in whatever merges, every claim is found as merged, and
        /// keys not merged are not.
        #[test]
        fn merged_claims_are_found_and_others_are_not(
            rounds in proptest::collection::vec(
                proptest::collection::btree_map(any::<i64>(), (any::<i64>(), any::<i64>()), 0..400),
                1..5),
            probes in proptest::collection::vec(any::<i64>(), 0..50),
        ) {
            let d = tempfile::tempdir().unwrap();
            let mut c = db(d.path());
            let t = c.transaction().unwrap();
            let mut model: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
            for round in rounds {
                let new: Vec<Claim> = round
                    .into_iter()
                    .filter(|(h, _)| !model.contains_key(h))
                    .map(|(h, (h2, rid))| (h, h2, rid))
                    .collect();
                merge(&t, &new).unwrap();
                model.extend(new.iter().map(|&(h, h2, rid)| (h, (h2, rid))));
            }
            prop_assert_eq!(count(&t).unwrap(), model.len() as i64);
            for (&h, &v) in &model {
                prop_assert_eq!(lookup(&t, h).unwrap(), Some(v));
            }
            for p in probes {
                prop_assert_eq!(lookup(&t, p).unwrap(), model.get(&p).copied());
            }
        }
    }
}
