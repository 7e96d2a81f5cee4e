//! The merged client-id claims, packed in chunks (schema version 14).
//!
//! A claim is a 128-bit key (`h`, `h2`) and the rid it was accepted as. Kept as rows of a
//! rowid table keyed by `h` it cost ~32 bytes on disk: a random 64-bit rowid takes 9
//! bytes as a varint, `h2` 8, the rid 6, and each row has its own header and pointer.
//! Claims are merged in large sorted batches (`idem.rs`), so they can be kept sorted in
//! chunks instead: `id_chunks` rows keyed by the chunk's first `h`, each holding up to
//! [`CHUNK_BYTES`] of claims in key order, bit-packed (see [`encode`]): the gaps between
//! random sorted keys Rice-coded (~46 bits each at a million claims, fewer as the set
//! grows), the rids' changes in as many bits as the chunk's largest needs. A lookup reads
//! the one chunk whose range holds its key.
//!
//! A merge rewrites the chunks in key order, a window at a time: the chunks of the window
//! and the new claims that fall in its key range become new chunks, written where the old
//! ones were. Keys are random, so every chunk takes some of a merge's claims, as every
//! page of the former table did; writing them in order fills the pages.
//!
//! A claim whose event is sealed keeps only 16 bits of `h2` (an 80-bit key; see
//! [`Check`]): its event's body is in a frame, where the exact id is read whenever the
//! 80 bits agree, so only a purged body leaves the 80 bits to decide. Sealing makes them
//! short (`compact`), as merges do: 6 bytes a claim less. About 11 bytes a short claim
//! on disk, 17 a whole one.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::rid::{SEQ_BITS, seq_of};

use crate::error::Context;
use crate::terms::put_varint;
use crate::{Result, StoreError};

/// What a merged claim keeps of `h2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// All of it.
    Full(i64),
    /// Its top 16 bits, once the claim's event is sealed (its exact id is in the frame).
    Short(u16),
}

impl Check {
    /// The short check of a full `h2`.
    pub(crate) fn short(h2: i64) -> u16 {
        ((h2 as u64) >> 48) as u16
    }

    /// Whether `h2` may be the key this check was made from: equal, or equal in its top
    /// 16 bits for a short one (the caller then compares the ids themselves).
    pub(crate) fn admits(self, h2: i64) -> bool {
        match self {
            Check::Full(x) => x == h2,
            Check::Short(s) => s == Self::short(h2),
        }
    }
}

/// A claim: `h`, what is kept of `h2`, rid.
pub(crate) type Claim = (i64, Check, i64);

/// A claim as the writer holds it: `h`, `h2`, rid.
pub(crate) type FullClaim = (i64, i64, i64);

/// The most bytes a chunk holds: four chunks and their rows' headers fill a 16 KB page
/// without spilling into overflow pages.
pub(crate) const CHUNK_BYTES: usize = 4_000;
/// Chunks rewritten together in a merge.
const WINDOW: usize = 256;

fn corrupt(first: i64, why: &str) -> StoreError {
    StoreError::Corrupt(format!("client-id claims chunk at {first}: {why}"))
}

/// The change of a rid (any two `i64` apart, so 65 bits) zigzagged, times 2, plus `flag`.
fn rid_word(delta: i128, flag: bool) -> u128 {
    (((delta << 1) ^ (delta >> 127)) as u128) << 1 | u128::from(flag)
}

/// The change of a rid and the flag of a [`rid_word`].
fn rid_delta(w: u128) -> (i128, bool) {
    let z = w >> 1;
    (((z >> 1) as i128) ^ -((z & 1) as i128), w & 1 == 1)
}

/// The bits `v` takes (0 for 0).
fn bit_len(v: u128) -> u32 {
    128 - v.leading_zeros()
}

/// The most a gap's quotient (its bits above the chunk's Rice parameter) may be: the
/// encoder picks the parameter so that it is below this.
const MAX_QUOTIENT: u64 = 64;

/// Bits written low first.
#[derive(Default)]
struct BitWriter {
    out: Vec<u8>,
    acc: u128,
    n: u32,
}

impl BitWriter {
    /// The low `bits` (at most 66) of `v`.
    fn put(&mut self, v: u128, bits: u32) {
        if bits == 0 {
            return;
        }
        self.acc |= (v & ((1u128 << bits) - 1)) << self.n;
        self.n += bits;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

struct BitReader<'a> {
    data: &'a [u8],
    at: usize,
    acc: u128,
    n: u32,
}

impl BitReader<'_> {
    /// The next `bits` (at most 66).
    fn get(&mut self, bits: u32) -> Option<u128> {
        while self.n < bits {
            let b = *self.data.get(self.at)?;
            self.at += 1;
            self.acc |= u128::from(b) << self.n;
            self.n += 8;
        }
        if bits == 0 {
            return Some(0);
        }
        let v = self.acc & ((1u128 << bits) - 1);
        self.acc >>= bits;
        self.n -= bits;
        Some(v)
    }

    /// Ones up to a zero, at most [`MAX_QUOTIENT`].
    fn unary(&mut self) -> Option<u64> {
        let mut q = 0;
        while self.get(1)? == 1 {
            q += 1;
            if q > MAX_QUOTIENT {
                return None;
            }
        }
        Some(q)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.get(8)? as u64;
            v |= (b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
}

/// `claims` (sorted by `h`, none equal; at least one) as one chunk's bytes.
///
/// Layout: the claim count (LEB128); the first claim's rid (its 64 bits as LEB128); the
/// Rice parameter `k` of the gaps of `h` (a byte); the bits `w` of each rid word (a
/// byte); then bits, low first: per claim after the first, its gap of `h` from the claim
/// before, Rice-coded (the gap's bits above `k` as that many ones and a zero, then its
/// low `k` bits); per claim, the change of its rid from the claim before (from the first
/// claim's rid), zigzagged, times 2, plus 1 if the claim is short, in `w` bits; then `h2` in 64 bits, or for a short claim its top 16 bits. Zero bits pad
/// the last byte.
fn encode(claims: &[Claim]) -> Vec<u8> {
    let gaps: Vec<u64> = claims
        .windows(2)
        .map(|p| (p[1].0 as u64).wrapping_sub(p[0].0 as u64))
        .collect();
    let most = gaps.iter().copied().max().unwrap_or(0);
    let mean = gaps.iter().map(|&g| u128::from(g)).sum::<u128>() / (gaps.len().max(1) as u128);
    // Near the gaps' mean (the best for random keys), but high enough that no gap's
    // quotient passes MAX_QUOTIENT.
    let k = bit_len(mean)
        .saturating_sub(1)
        .max(bit_len(u128::from(most)).saturating_sub(6));
    // The first claim's rid is in the head: the changes from it are small.
    let base = claims.first().map_or(0, |c| c.2);
    let words: Vec<u128> = claims
        .iter()
        .scan(base, |rid0, &(_, check, rid)| {
            let w = rid_word(
                i128::from(rid) - i128::from(*rid0),
                matches!(check, Check::Short(_)),
            );
            *rid0 = rid;
            Some(w)
        })
        .collect();
    let w = words.iter().map(|&x| bit_len(x)).max().unwrap_or(1).max(1);
    let mut head = Vec::with_capacity(12);
    put_varint(&mut head, claims.len() as u64);
    put_varint(&mut head, base as u64);
    head.push(k as u8);
    head.push(w as u8);
    let mut bits = BitWriter {
        out: head,
        ..BitWriter::default()
    };
    for (i, &(_, check, _)) in claims.iter().enumerate() {
        if let Some(&gap) = i.checked_sub(1).and_then(|j| gaps.get(j)) {
            let q = gap >> k;
            bits.put((1u128 << q) - 1, q as u32);
            bits.put(0, 1);
            bits.put(u128::from(gap), k);
        }
        bits.put(words[i], w);
        match check {
            Check::Full(h2) => bits.put(u128::from(h2 as u64), 64),
            Check::Short(s) => bits.put(u128::from(s), 16),
        }
    }
    bits.finish()
}

/// The claims of the chunk whose first key is `first`, in key order; `Corrupt` unless
/// they are exactly what [`encode`] writes for a chunk starting there.
fn decode(first: i64, data: &[u8]) -> Result<Vec<Claim>> {
    let bad = |why| corrupt(first, why);
    let mut r = BitReader {
        data,
        at: 0,
        acc: 0,
        n: 0,
    };
    let n = r.varint().ok_or_else(|| bad("no count"))?;
    // Each claim takes at least 18 bits.
    if n == 0 || n > (data.len() as u64 * 8) / 18 {
        return Err(bad("a count that does not fit"));
    }
    let base = r.varint().ok_or_else(|| bad("no first rid"))? as i64;
    let (k, w) = match (r.get(8), r.get(8)) {
        (Some(k), Some(w)) if k < 64 && (1..=66).contains(&w) => (k as u32, w as u32),
        _ => return Err(bad("bad widths")),
    };
    let mut out = Vec::with_capacity(n as usize);
    let (mut h, mut rid) = (first, base);
    for i in 0..n {
        if i > 0 {
            let q = r.unary().ok_or_else(|| bad("a gap too long"))?;
            let gap = u128::from(q) << k | r.get(k).ok_or_else(|| bad("truncated"))?;
            let next = i128::from(h) + i128::try_from(gap).map_err(|_| bad("a gap too long"))?;
            h = match i64::try_from(next) {
                Ok(next) if gap > 0 => next,
                _ => return Err(bad("keys out of order")),
            };
        }
        let word = r.get(w).ok_or_else(|| bad("truncated"))?;
        let (delta, short) = rid_delta(word);
        rid = i64::try_from(i128::from(rid) + delta).map_err(|_| bad("a rid out of range"))?;
        let check = if short {
            r.get(16).map(|s| Check::Short(s as u16))
        } else {
            r.get(64).map(|x| Check::Full(x as u64 as i64))
        };
        out.push((h, check.ok_or_else(|| bad("truncated"))?, rid));
    }
    if r.at != data.len() || r.acc != 0 {
        return Err(bad("trailing bytes"));
    }
    Ok(out)
}

/// What the merged claim keyed `h` keeps of `h2`, and its rid, if there is one.
pub(crate) fn lookup(c: &Connection, h: i64) -> Result<Option<(Check, i64)>> {
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
    // Claims a chunk is tried with: the last chunk's.
    let mut try_n = 256usize;
    while from < claims.len() {
        let rest = claims.len() - from;
        let mut n = try_n.min(rest);
        let mut grown = false;
        let data = loop {
            let data = encode(&claims[from..from + n]);
            // Claims take about the same bits each: grow once to nearly fill the chunk,
            // then shrink until it fits.
            if data.len() > CHUNK_BYTES && n > 1 {
                n = (n * CHUNK_BYTES / data.len() * 99 / 100).clamp(1, n - 1);
            } else if !grown && n < rest && data.len() < CHUNK_BYTES * 97 / 100 {
                n = (n * CHUNK_BYTES * 99 / 100 / data.len().max(1)).clamp(n + 1, rest);
                grown = true;
            } else {
                break data;
            }
        };
        ins.execute(params![claims[from].0, n as i64, data])
            .op("merge ids")?;
        from += n;
        try_n = n;
    }
    Ok(())
}

/// Each org's first unsealed seq: the claims of events below it are kept short.
pub(crate) struct Sealed(HashMap<i64, u64>);

impl Sealed {
    pub(crate) fn read(c: &Connection) -> Result<Self> {
        let mut st = c
            .prepare_cached("SELECT org_num, next_seq FROM sealed_upto")
            .op("prepare sealing progress")?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
            .op("read sealing progress")?;
        let mut m = HashMap::new();
        for row in rows {
            let (org, next) = row.op("read sealing progress")?;
            m.insert(org, next.max(0) as u64);
        }
        Ok(Self(m))
    }

    /// `c`, short if its event is sealed.
    fn shorten(&self, c: Claim) -> Claim {
        match c.1 {
            Check::Full(h2)
                if self
                    .0
                    .get(&(c.2 >> SEQ_BITS))
                    .is_some_and(|&next| seq_of(c.2) < next) =>
            {
                (c.0, Check::Short(Check::short(h2)), c.2)
            }
            _ => c,
        }
    }
}

/// Rewrites the chunks of the window of at most `size` chunks from key `from`, with the
/// claims of `new` (sorted by `h`) that fall in its key range merged in and claims of
/// sealed events made short; a window neither changes is left as it is. Returns the
/// next window's first key (`None` after the last) and how many of `new` it took.
fn window(
    t: &Transaction<'_>,
    from: i64,
    size: usize,
    new: &[Claim],
    sealed: &Sealed,
) -> Result<(Option<i64>, usize)> {
    let chunks: Vec<(i64, Vec<u8>)> = t
        .prepare_cached(
            "SELECT first_h, data FROM id_chunks WHERE first_h >= ?1 ORDER BY first_h LIMIT ?2",
        )
        .op("prepare id merge")?
        .query_map(params![from, size as i64 + 1], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .op("read ids")?
        .collect::<std::result::Result<_, _>>()
        .op("read ids")?;
    // The window's key range is from..until (until: the next window's first key).
    let until = chunks.get(size).map(|c| c.0);
    let take = until.map_or(new.len(), |u| new.partition_point(|c| c.0 < u));
    let mut old = Vec::new();
    for (first, data) in chunks.iter().take(size) {
        old.extend(decode(*first, data)?);
    }
    let mut changed = take > 0;
    for c in &mut old {
        let short = sealed.shorten(*c);
        changed |= short != *c;
        *c = short;
    }
    if changed {
        let mine: Vec<Claim> = new[..take].iter().map(|&c| sealed.shorten(c)).collect();
        let merged = merge_sorted(&old, &mine)?;
        // `until` is above `from` (it is a later chunk's first key).
        t.prepare_cached("DELETE FROM id_chunks WHERE first_h BETWEEN ?1 AND ?2")
            .op("prepare id merge")?
            .execute(params![from, until.map_or(i64::MAX, |u| u - 1)])
            .op("merge ids")?;
        write(t, &merged)?;
    }
    Ok((until, take))
}

/// Merges `new` (sorted by `h`; no key among them or already merged) into the chunks.
/// `Corrupt` (and the caller's transaction rolls back) if a key is already there.
pub(crate) fn merge(t: &Transaction<'_>, new: &[FullClaim]) -> Result<()> {
    let sealed = Sealed::read(t)?;
    let new: Vec<Claim> = new
        .iter()
        .map(|&(h, h2, rid)| (h, Check::Full(h2), rid))
        .collect();
    let (mut from, mut rest) = (i64::MIN, new.as_slice());
    loop {
        let (until, took) = window(t, from, WINDOW, rest, &sealed)?;
        rest = &rest[took..];
        match until {
            Some(u) => from = u,
            None => return Ok(()),
        }
    }
}

/// Chunks a compaction step rewrites at most: a few milliseconds of the writer's time.
pub(crate) const COMPACT_WINDOW: usize = 32;

/// Makes short the claims of sealed events in the window of chunks from key `from`;
/// returns the next window's first key (`None` after the last).
pub(crate) fn compact(t: &Transaction<'_>, from: i64) -> Result<Option<i64>> {
    let sealed = Sealed::read(t)?;
    Ok(window(t, from, COMPACT_WINDOW, &[], &sealed)?.0)
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
            .query_map([], |r| Ok((r.get(0)?, Check::Full(r.get(1)?), r.get(2)?)))
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
    use crate::sqlite::rid::rid;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn db(dir: &std::path::Path) -> Connection {
        let mut c = Connection::open(dir.join("t.db")).unwrap();
        super::super::schema::migrate(&mut c).unwrap();
        c
    }

    fn claim(x: u64) -> FullClaim {
        let h = x.wrapping_mul(0x9E37_79B9_7F4A_7C15) as i64;
        (h, h.rotate_left(17) ^ 5, rid(1, x % 1_000_000 + 1))
    }

    #[test]
    fn a_chunk_comes_back_as_written_and_damage_is_refused() {
        let mut claims: Vec<Claim> = (0..200)
            .map(|x| {
                let (h, h2, r) = claim(x);
                let check = if x % 3 == 0 {
                    Check::Short(Check::short(h2))
                } else {
                    Check::Full(h2)
                };
                (h, check, r)
            })
            .collect();
        claims.push((i64::MIN, Check::Full(-1), 0));
        claims.push((i64::MAX, Check::Short(u16::MAX), i64::MAX));
        claims.push((i64::MAX - 1, Check::Full(7), i64::MIN));
        claims.sort_unstable_by_key(|c| c.0);
        let data = encode(&claims);
        assert_eq!(decode(claims[0].0, &data).unwrap(), claims);
        assert!(decode(claims[0].0, &data[..data.len() - 1]).is_err());
        assert!(decode(claims[0].0, &[data.as_slice(), &[0]].concat()).is_err());
        assert!(decode(claims[0].0, &[0]).is_err(), "empty");
        // Keys that would wrap around: out of order.
        let wrapped = encode(&[
            (i64::MAX - 1, Check::Full(0), 0),
            (i64::MIN, Check::Full(0), 0),
        ]);
        assert!(decode(i64::MAX - 1, &wrapped).is_err());
    }

    fn bytes_a_claim(t: &Connection) -> f64 {
        let (n, bytes): (i64, i64) = t
            .query_row("SELECT sum(n), sum(length(data)) FROM id_chunks", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        bytes as f64 / n as f64
    }

    #[test]
    fn merges_keep_every_claim_findable_in_full_pages() {
        let d = tempfile::tempdir().unwrap();
        let mut c = db(d.path());
        let t = c.transaction().unwrap();
        let mut model = BTreeMap::new();
        for round in 0..4u64 {
            let mut new: Vec<FullClaim> =
                (round * 30_000..(round + 1) * 30_000).map(claim).collect();
            new.sort_unstable();
            merge(&t, &new).unwrap();
            model.extend(new.iter().map(|&(h, h2, rid)| (h, (Check::Full(h2), rid))));
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
        assert!(bytes_a_claim(&t) < 20.0, "{}", bytes_a_claim(&t));
        // A key merged twice is refused.
        let twice = [claim(5)];
        assert!(merge(&t, &twice).is_err());
    }

    /// Once events are sealed, compaction (and any merge) keeps their claims short; the
    /// others stay whole, and every claim is still found.
    #[test]
    fn claims_of_sealed_events_are_made_short() {
        let d = tempfile::tempdir().unwrap();
        let mut c = db(d.path());
        let t = c.transaction().unwrap();
        let mut all: Vec<FullClaim> = (0..40_000).map(claim).collect();
        all.sort_unstable();
        merge(&t, &all).unwrap();
        let full = bytes_a_claim(&t);
        // Org 1 sealed below seq 30,001.
        t.execute(
            "INSERT INTO sealed_upto (org_num, next_seq) VALUES (1, 30001)",
            [],
        )
        .unwrap();
        let mut from = Some(i64::MIN);
        let mut steps = 0;
        while let Some(f) = from {
            from = compact(&t, f).unwrap();
            steps += 1;
        }
        assert!(steps > 1, "a window at a time");
        for &(h, h2, r) in &all {
            let want = if seq_of(r) < 30_001 {
                Check::Short(Check::short(h2))
            } else {
                Check::Full(h2)
            };
            assert_eq!(lookup(&t, h).unwrap(), Some((want, r)));
        }
        let short = bytes_a_claim(&t);
        // Three in four made short: 6 bytes less each.
        assert!(short < full - 4.0, "{short} against {full}");
        // A merge after it keeps them short and shortens new claims of sealed events.
        let mut more: Vec<FullClaim> = (40_000..41_000).map(claim).collect();
        more.sort_unstable();
        merge(&t, &more).unwrap();
        for &(h, h2, r) in all.iter().chain(&more).step_by(7) {
            let got = lookup(&t, h).unwrap().unwrap();
            assert!(got.0.admits(h2));
            assert_eq!(matches!(got.0, Check::Short(_)), seq_of(r) < 30_001);
        }
    }

    proptest! {
        /// Whatever keys come, in whatever merges and compactions, every claim is found
        /// as merged (short once its event is sealed), and keys not merged are not.
        #[test]
        fn merged_claims_are_found_and_others_are_not(
            rounds in proptest::collection::vec(
                (proptest::collection::btree_map(any::<i64>(), (any::<i64>(), 1u64..5_000), 0..400),
                 0u64..5_000),
                1..5),
            probes in proptest::collection::vec(any::<i64>(), 0..50),
        ) {
            let d = tempfile::tempdir().unwrap();
            let mut c = db(d.path());
            let t = c.transaction().unwrap();
            let mut model: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
            let mut sealed_below = 0;
            for (round, seal) in rounds {
                let new: Vec<FullClaim> = round
                    .into_iter()
                    .filter(|(h, _)| !model.contains_key(h))
                    .map(|(h, (h2, seq))| (h, h2, rid(1, seq)))
                    .collect();
                merge(&t, &new).unwrap();
                model.extend(new.iter().map(|&(h, h2, rid)| (h, (h2, rid))));
                if seal > sealed_below {
                    sealed_below = seal;
                    t.execute(
                        "INSERT OR REPLACE INTO sealed_upto (org_num, next_seq) VALUES (1, ?1)",
                        [seal as i64],
                    )
                    .unwrap();
                    let mut from = Some(i64::MIN);
                    while let Some(f) = from {
                        from = compact(&t, f).unwrap();
                    }
                }
            }
            prop_assert_eq!(count(&t).unwrap(), model.len() as i64);
            for (&h, &(h2, r)) in &model {
                let want = if seq_of(r) < sealed_below {
                    Check::Short(Check::short(h2))
                } else {
                    Check::Full(h2)
                };
                prop_assert_eq!(lookup(&t, h).unwrap(), Some((want, r)));
            }
            for p in probes {
                prop_assert_eq!(
                    lookup(&t, p).unwrap().map(|x| x.1),
                    model.get(&p).map(|x| x.1)
                );
            }
        }
    }
}
