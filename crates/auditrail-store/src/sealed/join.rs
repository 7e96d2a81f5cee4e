//! Joining a frame's shapes and columns (`columns.rs`) back into bodies: all of them, or
//! only those a [`Pick`] keeps.
//!
//! A body's values of one column follow those of the bodies before it that have the
//! column, so its place in a column is known from the shapes of the bodies before it.
//! Reading a few bodies of a frame costs, beyond decompressing it:
//! - the picked fields' values of every body, to choose (one or two short columns);
//! - for each column, skipping to the chosen bodies' values: counting ends 512 bytes at a
//!   time in a plain column, arithmetic in a packed one;
//! - writing the chosen bodies.
//!
//! Joining every body also checks that each column holds exactly the values its bodies
//! take; a partial join reads no further than its last body (sealing joined the frame
//! whole and compared it with the bodies before keeping it).

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write as _;

use super::Reader;
use super::columns::{
    Codes, END, HEX, OCCURRED, ONE, PLAIN, RECEIVED, SEQ, Step, Times, bad, put_occurred,
    put_received, walk,
};
use super::hex::Packed;
use crate::Result;

/// Which bodies [`join_picked`] writes out. Before a body is written, `keep` is told
/// its index (among the bodies joined) and shown its value of each of `paths` (a
/// column's path: the keys from the root, each as its JSON text): the value's JSON text,
/// or `None` when the body has none there, or more than one. Skipping a body costs
/// finding its values of `paths`, not writing it.
pub(super) struct Pick<'p> {
    pub paths: &'p [Vec<u8>],
    pub keep: &'p mut KeepBody<'p>,
}

/// What a [`Pick`] asks of each body.
pub(super) type KeepBody<'a> = dyn FnMut(usize, &[Option<&[u8]>]) -> bool + 'a;

/// A stored `seq` value, if it is one a following derived seq counts on from (a number
/// written as `u64` writes it: "01" is not).
fn written_seq(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|n| n.to_string().as_bytes() == v)
}

/// The seq after `last`, for a body whose `seq` was derived.
fn next_seq(last: Option<u64>) -> Result<u64> {
    last.and_then(|s| s.checked_add(1))
        .ok_or_else(|| bad("a seq with nothing before it"))
}

/// The offset just past the `n`-th [`END`] in `data` (0 for `n` = 0), if it has `n`.
fn past_ends(data: &[u8], mut n: usize) -> Option<usize> {
    if n == 0 {
        return Some(0);
    }
    let mut base = 0;
    for chunk in data.chunks(CHUNK) {
        // memchr counts with vector instructions.
        let found = memchr::memchr_iter(END, chunk).count();
        if found >= n {
            return memchr::memchr_iter(END, chunk)
                .nth(n - 1)
                .map(|i| base + i + 1);
        }
        n -= found;
        base += chunk.len();
    }
    None
}

/// Bytes of a plain column counted at once when skipping its values.
const CHUNK: usize = 512;

/// A column's values, and where its reading stands.
enum Values<'a> {
    /// Values back to back, each followed by [`END`]; `at` is a byte offset.
    Plain { data: &'a [u8], at: usize },
    /// Packed hex ids; `at` is a value's index.
    Packed { p: Packed<'a>, at: usize },
    /// One value, `left` more times.
    One { v: &'a [u8], left: usize },
}

impl<'a> Values<'a> {
    fn new(code: u8, data: &'a [u8]) -> Result<Self> {
        match code {
            PLAIN => Ok(Values::Plain { data, at: 0 }),
            HEX => Ok(Values::Packed {
                p: Packed::parse(data)?,
                at: 0,
            }),
            ONE => {
                let mut r = Reader { raw: data, at: 0 };
                let left = usize::try_from(r.varint()?)
                    .ok()
                    .filter(|&n| n <= super::FRAME_EVENTS as usize)
                    .ok_or_else(|| bad("a column of one value is too long"))?;
                Ok(Values::One {
                    v: &data[r.at..],
                    left,
                })
            }
            _ => Err(bad("unknown column code")),
        }
    }

    /// Passes over the next `n` values.
    fn skip(&mut self, n: usize) -> Result<()> {
        match self {
            Values::Plain { data, at } => {
                *at += past_ends(&data[*at..], n).ok_or_else(|| bad("a column ran out"))?;
            }
            Values::Packed { p, at } => {
                *at += n;
                if *at > p.count() {
                    return Err(bad("a column ran out"));
                }
            }
            Values::One { left, .. } => {
                *left = left.checked_sub(n).ok_or_else(|| bad("a column ran out"))?;
            }
        }
        Ok(())
    }

    /// Every value has been read.
    fn done(&self) -> bool {
        match self {
            Values::Plain { data, at } => *at == data.len(),
            Values::Packed { p, at } => *at == p.count(),
            Values::One { left, .. } => *left == 0,
        }
    }

    /// The column as a plain one (packed ids written out), for reading value by value.
    fn plain(&self) -> Result<Cow<'a, [u8]>> {
        match self {
            Values::Plain { data, .. } => Ok(Cow::Borrowed(*data)),
            Values::Packed { p, .. } => Ok(Cow::Owned(p.plain()?)),
            Values::One { v, left } => Ok(Cow::Owned([v, &[END][..]].concat().repeat(*left))),
        }
    }
}

/// The next value of a plain column `data` from byte `at` on; moves `at` past it.
fn next_value<'d>(data: &'d [u8], at: &mut usize) -> Result<&'d [u8]> {
    let rest = &data[*at..];
    let end = memchr::memchr(END, rest).ok_or_else(|| bad("a column ran out"))?;
    *at += end + 1;
    Ok(&rest[..end])
}

/// One shape, ready to fill: its text and, per hole, where it is and its column.
struct Plan<'a> {
    text: &'a [u8],
    holes: Vec<(usize, usize)>,
    /// Values it takes of each column.
    counts: Vec<usize>,
    /// Its holes whose columns the first pass reads (`seq` and picked paths), in order:
    /// an index into that pass's columns.
    scanned: Vec<usize>,
}

/// Reads what `columns::split` wrote for bodies with these times; the bodies, in order.
pub(super) fn join(r: &mut Reader<'_>, times: &[Times], codes: Codes) -> Result<Vec<String>> {
    let all = join_picked(r, times, codes, None)?;
    let n = all.len();
    let out: Vec<String> = all.into_iter().flatten().collect();
    if out.len() != n {
        return Err(bad("a body is missing"));
    }
    Ok(out)
}

/// [`join`], writing only the bodies `pick` keeps (all without one); the others are
/// `None`, in their places.
pub(super) fn join_picked<'a>(
    r: &mut Reader<'a>,
    times: &[Times],
    codes: Codes,
    mut pick: Option<Pick<'_>>,
) -> Result<Vec<Option<String>>> {
    let count = |r: &mut Reader<'a>| -> Result<usize> {
        usize::try_from(r.varint()?)
            .ok()
            .filter(|&n| n <= r.raw.len())
            .ok_or_else(|| bad("a count is too large"))
    };
    let n_shapes = count(r)?;
    let mut shapes = Vec::with_capacity(n_shapes);
    for _ in 0..n_shapes {
        let len = count(r)?;
        shapes.push(r.take(len)?);
    }
    let mut shape_of = Vec::with_capacity(times.len());
    for _ in times {
        let s = count(r)?;
        if s >= shapes.len() {
            return Err(bad("no such shape"));
        }
        shape_of.push(s);
    }
    let n_cols = count(r)?;
    let mut heads = Vec::with_capacity(n_cols);
    for _ in 0..n_cols {
        let len = count(r)?;
        let p = r.take(len)?;
        let code = match codes {
            Codes::Named | Codes::NamedOrOne => r.byte()?,
            Codes::Plain => PLAIN,
        };
        heads.push((p, code, count(r)?));
    }
    let mut col_of: HashMap<&[u8], usize> = HashMap::with_capacity(n_cols);
    // Each column's path and values.
    let mut cols: Vec<(&[u8], Values<'a>)> = Vec::with_capacity(n_cols);
    for (i, &(p, code, len)) in heads.iter().enumerate() {
        cols.push((p, Values::new(code, r.take(len)?)?));
        if col_of.insert(p, i).is_some() {
            return Err(bad("a column appears twice"));
        }
    }
    // The columns the first pass reads value by value: `seq`, and the picked paths
    // (the index of the path, if picked).
    let mut scan: Vec<(usize, Option<usize>)> = Vec::new();
    if let Some(&c) = col_of.get(SEQ) {
        scan.push((c, None));
    }
    let n_watched = pick.as_ref().map_or(0, |p| p.paths.len());
    if let Some(p) = &pick {
        for (w, path) in p.paths.iter().enumerate() {
            if let Some(&c) = col_of.get(path.as_slice()) {
                match scan.iter_mut().find(|s| s.0 == c) {
                    Some(s) => s.1 = Some(w),
                    None => scan.push((c, Some(w))),
                }
            }
        }
    }
    let mut scan_of: Vec<Option<usize>> = vec![None; n_cols];
    for (k, &(c, _)) in scan.iter().enumerate() {
        scan_of[c] = Some(k);
    }
    let mut path = Vec::new();
    let mut plans: Vec<Plan<'_>> = Vec::with_capacity(shapes.len());
    for s in &shapes {
        let mut holes = Vec::new();
        let mut at = 0usize;
        walk(s, true, &mut path, |step, path| {
            if let Step::Value(_) = step {
                holes.push((at, *col_of.get(path)?));
            }
            at += match step {
                Step::Text(t) | Step::Value(t) => t.len(),
            };
            Some(())
        })
        .ok_or_else(|| bad("a shape is not JSON with holes"))?;
        let mut counts = vec![0usize; n_cols];
        for &(_, c) in &holes {
            counts[c] += 1;
        }
        let scanned = holes.iter().filter_map(|&(_, c)| scan_of[c]).collect();
        plans.push(Plan {
            text: s,
            holes,
            counts,
            scanned,
        });
    }

    // First pass: each body's seq before it, and whether it is written.
    let scan_data: Vec<Cow<'a, [u8]>> = scan
        .iter()
        .map(|&(c, _)| cols[c].1.plain())
        .collect::<Result<_>>()?;
    let mut scan_at = vec![0usize; scan.len()];
    let mut seen: Vec<std::result::Result<Option<&[u8]>, ()>> = vec![Ok(None); n_watched];
    let mut shown: Vec<Option<&[u8]>> = vec![None; n_watched];
    let mut last_seq: Option<u64> = None;
    // Per body written: its index and the seq before it.
    let mut written: Vec<(usize, Option<u64>)> = Vec::with_capacity(times.len());
    for (i, &s) in shape_of.iter().enumerate() {
        let before = last_seq;
        seen.fill(Ok(None));
        for &k in &plans[s].scanned {
            let v = next_value(&scan_data[k], &mut scan_at[k])?;
            let (c, w) = scan[k];
            if cols[c].0 == SEQ {
                last_seq = if v.is_empty() {
                    Some(next_seq(last_seq)?)
                } else {
                    written_seq(v)
                };
            }
            if let Some(w) = w {
                seen[w] = match seen[w] {
                    Ok(None) => Ok(Some(v)),
                    _ => Err(()),
                };
            }
        }
        if let Some(p) = pick.as_mut() {
            for (to, from) in shown.iter_mut().zip(&seen) {
                *to = from.ok().flatten();
            }
            if !(p.keep)(i, &shown) {
                continue;
            }
        }
        written.push((i, before));
    }

    // Second pass: the bodies written, each column read from where the last one left.
    let mut out: Vec<Option<String>> = vec![None; times.len()];
    // The body every column's reading stands at.
    let mut row = 0usize;
    let mut shapes_passed = vec![0usize; plans.len()];
    let mut skip_to = |cols: &mut [(&[u8], Values<'a>)], from: usize, to: usize| -> Result<()> {
        if from == to {
            return Ok(());
        }
        shapes_passed.fill(0);
        for &s in &shape_of[from..to] {
            shapes_passed[s] += 1;
        }
        for (c, col) in cols.iter_mut().enumerate() {
            let n: usize = plans
                .iter()
                .zip(&shapes_passed)
                .map(|(p, &k)| p.counts[c] * k)
                .sum();
            if n > 0 {
                col.1.skip(n)?;
            }
        }
        Ok(())
    };
    let mut buf = Vec::new();
    for &(i, before) in &written {
        skip_to(&mut cols, row, i)?;
        row = i + 1;
        let plan = &plans[shape_of[i]];
        let t = times[i];
        let mut last_seq = before;
        buf.clear();
        let mut from = 0;
        for &(at, c) in &plan.holes {
            buf.extend_from_slice(&plan.text[from..at]);
            from = at + 1;
            let (path, values) = &mut cols[c];
            let v: &[u8] = match values {
                Values::Plain { data, at } => next_value(data, at)?,
                Values::One { v, left } => {
                    *left = left.checked_sub(1).ok_or_else(|| bad("a column ran out"))?;
                    v
                }
                Values::Packed { p, at } => {
                    let start = buf.len();
                    p.write(*at, &mut buf)?;
                    *at += 1;
                    if *path == SEQ {
                        last_seq = written_seq(&buf[start..]);
                    }
                    continue;
                }
            };
            if !v.is_empty() {
                if *path == SEQ {
                    last_seq = written_seq(v);
                }
                buf.extend_from_slice(v);
                continue;
            }
            match *path {
                SEQ => {
                    let n = next_seq(last_seq)?;
                    // Writing to a Vec cannot fail.
                    let _ = write!(buf, "{n}");
                    last_seq = Some(n);
                }
                RECEIVED => put_received(t.received_ms, &mut buf),
                OCCURRED => {
                    if !put_occurred(t.occurred_us, &mut buf) {
                        return Err(bad("a time out of range"));
                    }
                }
                _ => return Err(bad("an empty value")),
            }
        }
        buf.extend_from_slice(&plan.text[from..]);
        let len = buf.len();
        let body = String::from_utf8(std::mem::replace(&mut buf, Vec::with_capacity(len + 64)))
            .map_err(|_| bad("a body is not UTF-8"))?;
        out[i] = Some(body);
    }
    // Joining every body checks that the columns hold exactly their values; a partial
    // join leaves the rest of each column unread (sealing checked the frame whole).
    if pick.is_none() && cols.iter().any(|(_, v)| !v.done()) {
        return Err(bad("a column has values left"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: a panic is a failed test")]
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Counting ends a chunk at a time finds what counting them one by one finds.
        #[test]
        fn past_ends_finds_the_nth_end(
            data in proptest::collection::vec(prop_oneof![Just(END), Just(b'x'), any::<u8>()], 0..400),
            n in 0usize..200,
        ) {
            let naive = if n == 0 {
                Some(0)
            } else {
                data.iter().enumerate().filter(|(_, b)| **b == END).nth(n - 1).map(|(i, _)| i + 1)
            };
            prop_assert_eq!(past_ends(&data, n), naive);
        }
    }

    #[test]
    fn a_packed_column_reads_in_place_as_unpacked() {
        let col: Vec<u8> = (0..70u64)
            .flat_map(|i| {
                format!("\"{:032x}\"\n", i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).into_bytes()
            })
            .collect();
        let packed = super::super::hex::pack(&col).unwrap();
        let mut v = Values::new(HEX, &packed).unwrap();
        assert_eq!(&*v.plain().unwrap(), col.as_slice());
        assert_eq!(super::super::hex::unpack(&packed).unwrap(), col);
        v.skip(69).unwrap();
        assert!(!v.done());
        v.skip(1).unwrap();
        assert!(v.done());
        assert!(v.skip(1).is_err());
        // A column of one value: its value, so many times; no more.
        let mut one = Values::new(ONE, b"\x03\"USER\"").unwrap();
        assert_eq!(&*one.plain().unwrap(), b"\"USER\"\n\"USER\"\n\"USER\"\n");
        one.skip(2).unwrap();
        assert!(!one.done());
        assert!(one.skip(2).is_err());
        assert!(
            Values::new(ONE, b"\xff\x7f").is_err(),
            "more than a frame holds"
        );
        let mut plain = Values::new(PLAIN, &col).unwrap();
        plain.skip(70).unwrap();
        assert!(plain.done());
        assert!(plain.skip(1).is_err());
    }
}
