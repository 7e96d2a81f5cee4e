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
use std::ops::Range;
use std::sync::Mutex;

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
            return ends_at(chunk, &[n])
                .first()
                .copied()
                .flatten()
                .map(|i| base + i);
        }
        n -= found;
        base += chunk.len();
    }
    None
}

/// Each byte's top bit set where `w`'s byte is [`END`] (and no other bit).
fn ends_in(w: u64) -> u64 {
    const LOW: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let x = w ^ (0x0101_0101_0101_0101 * u64::from(END));
    !(((x & LOW).wrapping_add(LOW)) | x | LOW)
}

/// For each `t` of `targets` (ascending), the offset just past the `t`-th [`END`] of
/// `data` (0 for 0), or `None` past its last. One pass, eight bytes at a time, that
/// stops at the last target.
fn ends_at(data: &[u8], targets: &[usize]) -> Vec<Option<usize>> {
    let mut out = Vec::with_capacity(targets.len());
    let mut want = targets.iter().copied().peekable();
    while want.next_if_eq(&0).is_some() {
        out.push(Some(0));
    }
    let words = data.chunks_exact(8);
    let rest = words.remainder();
    let (mut seen, mut last) = (0usize, 0usize);
    for (k, w) in words.enumerate() {
        let Some(&next) = want.peek() else {
            return out;
        };
        let mut word = [0u8; 8];
        word.copy_from_slice(w);
        let mut m = ends_in(u64::from_le_bytes(word));
        // One bit at most a byte, at its top: the multiply adds them up.
        let here = ((m >> 7).wrapping_mul(0x0101_0101_0101_0101) >> 56) as usize;
        if next > seen + here {
            seen += here;
            continue;
        }
        // The END that m's lowest bit stands for.
        let mut lowest = seen + 1;
        while let Some(t) = want.next_if(|&t| t <= seen + here) {
            if t > seen {
                for _ in lowest..t {
                    m &= m - 1;
                }
                lowest = t;
                last = k * 8 + m.trailing_zeros() as usize / 8 + 1;
            }
            // A target met again is where it was.
            out.push(Some(last));
        }
        seen += here;
    }
    let base = data.len() - rest.len();
    for (i, _) in rest.iter().enumerate().filter(|(_, b)| **b == END) {
        seen += 1;
        while want.next_if_eq(&seen).is_some() {
            last = base + i + 1;
            out.push(Some(last));
        }
    }
    out.extend(want.map(|_| None));
    out
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

    /// Where reading would stand (as [`Self::seek`] takes it) after each count of
    /// further values of `counts` (ascending) from where it stands.
    fn marks_ahead(&self, counts: &[usize]) -> Result<Vec<usize>> {
        let short = || bad("a column ran out");
        match self {
            Values::Plain { data, at } => ends_at(&data[*at..], counts)
                .into_iter()
                .map(|a| a.map(|a| at + a).ok_or_else(short))
                .collect(),
            Values::Packed { p, at } => counts
                .iter()
                .map(|&c| Some(at + c).filter(|&e| e <= p.count()).ok_or_else(short))
                .collect(),
            Values::One { left, .. } => counts
                .iter()
                .map(|&c| left.checked_sub(c).ok_or_else(short))
                .collect(),
        }
    }

    /// Reading goes back (or on) to where it stood at `mark`.
    fn seek(&mut self, mark: usize) {
        match self {
            Values::Plain { at, .. } | Values::Packed { at, .. } => *at = mark,
            Values::One { left, .. } => *left = mark,
        }
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
    // Derived values (seqs, times) are empty: no need to search for their end.
    if rest.first() == Some(&END) {
        *at += 1;
        return Ok(&[]);
    }
    let end = memchr::memchr(END, rest).ok_or_else(|| bad("a column ran out"))?;
    *at += end + 1;
    Ok(&rest[..end])
}

/// Where a frame's shapes and columns are (ranges of its decompressed bytes), and each
/// shape's plan: read once, then used for every body joined.
pub(super) struct Layout {
    /// Each body's shape.
    shape_of: Vec<usize>,
    cols: Vec<Col>,
    plans: Vec<Plan>,
}

/// A column: its path, its code and its values' bytes.
struct Col {
    path: Range<usize>,
    code: u8,
    data: Range<usize>,
}

/// One shape, ready to fill: its text and, per hole, where it is and its column.
struct Plan {
    text: Range<usize>,
    holes: Vec<(usize, usize)>,
    /// Values it takes of each column.
    counts: Vec<usize>,
}

/// The bytes of `raw` at `at` (a range [`Layout::read`] took from the same bytes).
fn part<'a>(raw: &'a [u8], at: &Range<usize>) -> Result<&'a [u8]> {
    raw.get(at.clone()).ok_or_else(|| bad("truncated"))
}

impl Layout {
    /// Reads the shapes and columns `columns::split` wrote for `bodies` bodies; leaves
    /// `r` past the last column.
    pub(super) fn read(r: &mut Reader<'_>, bodies: usize, codes: Codes) -> Result<Self> {
        let raw = r.raw;
        let count = |r: &mut Reader<'_>| -> Result<usize> {
            usize::try_from(r.varint()?)
                .ok()
                .filter(|&n| n <= r.raw.len())
                .ok_or_else(|| bad("a count is too large"))
        };
        let take = |r: &mut Reader<'_>, len: usize| -> Result<Range<usize>> {
            let at = r.at;
            r.take(len)?;
            Ok(at..at + len)
        };
        let n_shapes = count(r)?;
        let mut shapes = Vec::with_capacity(n_shapes);
        for _ in 0..n_shapes {
            let len = count(r)?;
            shapes.push(take(r, len)?);
        }
        let mut shape_of = Vec::with_capacity(bodies);
        for _ in 0..bodies {
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
            let path = take(r, len)?;
            let code = match codes {
                Codes::Named | Codes::NamedOrOne => r.byte()?,
                Codes::Plain => PLAIN,
            };
            heads.push((path, code, count(r)?));
        }
        let mut col_of: HashMap<&[u8], usize> = HashMap::with_capacity(n_cols);
        let mut cols = Vec::with_capacity(n_cols);
        for (i, (path, code, len)) in heads.into_iter().enumerate() {
            let data = take(r, len)?;
            // Read once here, so a column that is no column of its code fails now.
            Values::new(code, part(raw, &data)?)?;
            if col_of.insert(part(raw, &path)?, i).is_some() {
                return Err(bad("a column appears twice"));
            }
            cols.push(Col { path, code, data });
        }
        let mut path = Vec::new();
        let mut plans = Vec::with_capacity(shapes.len());
        for s in shapes {
            let mut holes = Vec::new();
            let mut at = 0usize;
            walk(part(raw, &s)?, true, &mut path, |step, path| {
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
            plans.push(Plan {
                text: s,
                holes,
                counts,
            });
        }
        Ok(Self {
            shape_of,
            cols,
            plans,
        })
    }

    /// Each column's path and values, from the first value on.
    fn columns<'a>(&self, raw: &'a [u8]) -> Result<Vec<(&'a [u8], Values<'a>)>> {
        self.cols
            .iter()
            .map(|c| {
                Ok((
                    part(raw, &c.path)?,
                    Values::new(c.code, part(raw, &c.data)?)?,
                ))
            })
            .collect()
    }

    /// The column of `path`, if there is one.
    fn column(&self, raw: &[u8], path: &[u8]) -> Option<usize> {
        self.cols
            .iter()
            .position(|c| raw.get(c.path.clone()) == Some(path))
    }

    fn plan(&self, body: usize) -> Result<&Plan> {
        self.shape_of
            .get(body)
            .and_then(|&s| self.plans.get(s))
            .ok_or_else(|| bad("no such body"))
    }

    /// Moves every column past the values of bodies `from..to`.
    fn skip(&self, cols: &mut [(&[u8], Values<'_>)], from: usize, to: usize) -> Result<()> {
        if from >= to {
            return Ok(());
        }
        let mut n = vec![0usize; cols.len()];
        for &s in self
            .shape_of
            .get(from..to)
            .ok_or_else(|| bad("no such body"))?
        {
            for (k, &c) in n.iter_mut().zip(&self.plans[s].counts) {
                *k += c;
            }
        }
        for (col, &k) in cols.iter_mut().zip(&n) {
            if k > 0 {
                col.1.skip(k)?;
            }
        }
        Ok(())
    }
}

/// Writes the body of `plan` (text `text`) with times `t`, each hole's value read from
/// where its column stands; `last_seq` is the seq of the body before it.
fn write_body(
    text: &[u8],
    plan: &Plan,
    cols: &mut [(&[u8], Values<'_>)],
    t: Times,
    mut last_seq: Option<u64>,
    buf: &mut Vec<u8>,
) -> Result<String> {
    buf.clear();
    let mut from = 0;
    for &(at, c) in &plan.holes {
        buf.extend_from_slice(
            text.get(from..at)
                .ok_or_else(|| bad("a hole is misplaced"))?,
        );
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
                p.write(*at, buf)?;
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
            RECEIVED => put_received(t.received_ms, buf),
            OCCURRED => {
                if !put_occurred(t.occurred_us, buf) {
                    return Err(bad("a time out of range"));
                }
            }
            _ => return Err(bad("an empty value")),
        }
    }
    buf.extend_from_slice(text.get(from..).ok_or_else(|| bad("a hole is misplaced"))?);
    let len = buf.len();
    String::from_utf8(std::mem::replace(buf, Vec::with_capacity(len + 64)))
        .map_err(|_| bad("a body is not UTF-8"))
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
pub(super) fn join_picked(
    r: &mut Reader<'_>,
    times: &[Times],
    codes: Codes,
    mut pick: Option<Pick<'_>>,
) -> Result<Vec<Option<String>>> {
    let raw = r.raw;
    let layout = Layout::read(r, times.len(), codes)?;
    let mut cols = layout.columns(raw)?;
    // The columns the first pass reads value by value: `seq`, and the picked paths
    // (the index of the path, if picked).
    let mut scan: Vec<(usize, Option<usize>)> = Vec::new();
    if let Some(c) = layout.column(raw, SEQ) {
        scan.push((c, None));
    }
    let n_watched = pick.as_ref().map_or(0, |p| p.paths.len());
    if let Some(p) = &pick {
        for (w, path) in p.paths.iter().enumerate() {
            if let Some(c) = layout.column(raw, path) {
                match scan.iter_mut().find(|s| s.0 == c) {
                    Some(s) => s.1 = Some(w),
                    None => scan.push((c, Some(w))),
                }
            }
        }
    }
    let mut scan_of: Vec<Option<usize>> = vec![None; cols.len()];
    for (k, &(c, _)) in scan.iter().enumerate() {
        scan_of[c] = Some(k);
    }
    // Per shape, its holes whose columns the first pass reads, in order: an index into
    // that pass's columns.
    let scanned: Vec<Vec<usize>> = layout
        .plans
        .iter()
        .map(|p| p.holes.iter().filter_map(|&(_, c)| scan_of[c]).collect())
        .collect();

    // First pass: each body's seq before it, and whether it is written.
    let scan_data: Vec<Cow<'_, [u8]>> = scan
        .iter()
        .map(|&(c, _)| cols[c].1.plain())
        .collect::<Result<_>>()?;
    let mut scan_at = vec![0usize; scan.len()];
    let mut seen: Vec<std::result::Result<Option<&[u8]>, ()>> = vec![Ok(None); n_watched];
    let mut shown: Vec<Option<&[u8]>> = vec![None; n_watched];
    let mut last_seq: Option<u64> = None;
    // Per body written: its index and the seq before it.
    let mut written: Vec<(usize, Option<u64>)> = Vec::with_capacity(times.len());
    for (i, &s) in layout.shape_of.iter().enumerate() {
        let before = last_seq;
        seen.fill(Ok(None));
        for &k in &scanned[s] {
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
    let mut buf = Vec::new();
    for &(i, before) in &written {
        layout.skip(&mut cols, row, i)?;
        row = i + 1;
        let plan = layout.plan(i)?;
        out[i] = Some(write_body(
            part(raw, &plan.text)?,
            plan,
            &mut cols,
            times[i],
            before,
            &mut buf,
        )?);
    }
    // Joining every body checks that the columns hold exactly their values; a partial
    // join leaves the rest of each column unread (sealing checked the frame whole).
    if pick.is_none() && cols.iter().any(|(_, v)| !v.done()) {
        return Err(bad("a column has values left"));
    }
    Ok(out)
}

/// Bodies between two marks of an [`Index`].
const MARK: usize = 8;

/// A frame's [`Layout`], and where each column stands every [`MARK`] bodies: joining a
/// few bodies then costs those bodies, not the frame. The marks are found as bodies
/// further on are first asked for, so opening a frame costs what a first partial join
/// did (sealing joined the frame whole and checked it before keeping it).
pub(super) struct Index {
    layout: Layout,
    /// Each column's count of values before each mark (bodies 0, MARK, 2·MARK, …).
    counts: Vec<Vec<usize>>,
    /// Each column's place (`Values::seek`) at the marks found so far (at least the
    /// first).
    marks: Mutex<Vec<Vec<usize>>>,
    /// Per body, the seq of the body before it (what a derived seq counts on from).
    seq_before: Vec<Option<u64>>,
}

impl Index {
    /// Reads the layout `columns::split` wrote for `bodies` bodies.
    pub(super) fn build(r: &mut Reader<'_>, bodies: usize, codes: Codes) -> Result<Self> {
        let raw = r.raw;
        let layout = Layout::read(r, bodies, codes)?;
        let cols = layout.columns(raw)?;
        let mut seq_before = Vec::with_capacity(bodies);
        match layout.column(raw, SEQ) {
            Some(c) => {
                let data = cols[c].1.plain()?;
                let (mut at, mut last) = (0, None);
                for &s in &layout.shape_of {
                    seq_before.push(last);
                    for _ in 0..layout.plans[s].counts[c] {
                        let v = next_value(&data, &mut at)?;
                        last = if v.is_empty() {
                            Some(next_seq(last)?)
                        } else {
                            written_seq(v)
                        };
                    }
                }
            }
            None => seq_before.resize(bodies, None),
        }
        let mut counts = Vec::with_capacity(bodies.div_ceil(MARK));
        let mut total = vec![0usize; cols.len()];
        let mut passed = vec![0usize; layout.plans.len()];
        for from in (0..bodies).step_by(MARK) {
            counts.push(total.clone());
            passed.fill(0);
            for &s in &layout.shape_of[from..(from + MARK).min(bodies)] {
                passed[s] += 1;
            }
            for (plan, &k) in layout.plans.iter().zip(&passed) {
                if k > 0 {
                    for (t, &c) in total.iter_mut().zip(&plan.counts) {
                        *t += c * k;
                    }
                }
            }
        }
        // Every column stands at its start at the first mark.
        let first = cols
            .iter()
            .map(|c| c.1.marks_ahead(&[0]).map(|m| m[0]))
            .collect::<Result<Vec<usize>>>()?;
        Ok(Self {
            layout,
            counts,
            marks: Mutex::new(vec![first]),
            seq_before,
        })
    }

    /// What keeping the index costs, in bytes (about).
    pub(super) fn cost(&self) -> usize {
        let cols = self.layout.cols.len();
        8 * (2 * self.counts.len() * cols
            + self.layout.plans.len() * 3 * cols
            + 3 * self.seq_before.len())
    }

    /// Sets `cols` where they stand at mark `k`, finding the marks up to it first.
    fn seek_mark(&self, cols: &mut [(&[u8], Values<'_>)], k: usize) -> Result<()> {
        let mut marks = self
            .marks
            .lock()
            .map_err(|_| bad("an index was poisoned"))?;
        let known = marks.len();
        if k >= known {
            let last = marks.last().ok_or_else(|| bad("no such body"))?.clone();
            let base = self
                .counts
                .get(known - 1)
                .ok_or_else(|| bad("no such body"))?;
            let wanted = self
                .counts
                .get(known..=k)
                .ok_or_else(|| bad("no such body"))?;
            // Per column, where it stands at each mark wanted: one pass from the last.
            let mut ahead = Vec::with_capacity(cols.len());
            for (c, col) in cols.iter_mut().enumerate() {
                col.1.seek(last[c]);
                let further: Vec<usize> = wanted.iter().map(|m| m[c] - base[c]).collect();
                ahead.push(col.1.marks_ahead(&further)?);
            }
            for j in 0..wanted.len() {
                marks.push(ahead.iter().map(|a| a[j]).collect());
            }
        }
        for (col, &p) in cols.iter_mut().zip(&marks[k]) {
            col.1.seek(p);
        }
        Ok(())
    }

    /// Bodies `at` (ascending indexes among the frame's bodies, each with its times)
    /// joined, in that order.
    pub(super) fn join_at(&self, raw: &[u8], at: &[(usize, Times)]) -> Result<Vec<String>> {
        let mut cols = self.layout.columns(raw)?;
        // The body the columns' reading stands at, once one was joined.
        let mut stands: Option<usize> = None;
        let mut buf = Vec::new();
        let mut out = Vec::with_capacity(at.len());
        for &(b, t) in at {
            let mark = b / MARK;
            let from = match stands {
                Some(s) if s <= b && s >= mark * MARK => s,
                _ => {
                    self.seek_mark(&mut cols, mark)?;
                    mark * MARK
                }
            };
            self.layout.skip(&mut cols, from, b)?;
            let plan = self.layout.plan(b)?;
            out.push(write_body(
                part(raw, &plan.text)?,
                plan,
                &mut cols,
                t,
                self.seq_before[b],
                &mut buf,
            )?);
            stands = Some(b + 1);
        }
        Ok(out)
    }

    /// The bodies `keep` accepts (ascending), as a [`Pick`] chooses them: `keep` is told
    /// each body's index and shown its value of each of `paths`.
    pub(super) fn pick(
        &self,
        raw: &[u8],
        paths: &[Vec<u8>],
        keep: &mut KeepBody<'_>,
    ) -> Result<Vec<usize>> {
        // Each path's column and its values as plain text; where reading stands in each.
        let mut watched: Vec<Option<(usize, Cow<'_, [u8]>)>> = Vec::new();
        for p in paths {
            watched.push(match self.layout.column(raw, p) {
                Some(c) => {
                    let col = &self.layout.cols[c];
                    Some((c, Values::new(col.code, part(raw, &col.data)?)?.plain()?))
                }
                None => None,
            });
        }
        let mut stands = vec![0usize; paths.len()];
        let mut shown: Vec<Option<&[u8]>> = vec![None; paths.len()];
        let mut out = Vec::new();
        for (b, &s) in self.layout.shape_of.iter().enumerate() {
            for ((to, w), at) in shown.iter_mut().zip(&watched).zip(&mut stands) {
                *to = None;
                let Some((c, data)) = w else { continue };
                let n = self.layout.plans[s].counts[*c];
                for k in 0..n {
                    let v = next_value(data, at)?;
                    // A body with more than one value there shows none.
                    if n == 1 && k == 0 {
                        *to = Some(v);
                    }
                }
            }
            if keep(b, &shown) {
                out.push(b);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: a panic is a failed test")]
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Counting ends a chunk at a time finds what counting them one by one finds.
        #[test]
        fn ends_at_finds_each_target_end(
            data in proptest::collection::vec(prop_oneof![Just(END), Just(b'x'), any::<u8>()], 0..200),
            mut targets in proptest::collection::vec(0usize..60, 0..8),
        ) {
            targets.sort_unstable();
            let naive = |n: usize| if n == 0 {
                Some(0)
            } else {
                data.iter().enumerate().filter(|(_, b)| **b == END).nth(n - 1).map(|(i, _)| i + 1)
            };
            let at = ends_at(&data, &targets);
            prop_assert_eq!(at, targets.iter().map(|&t| naive(t)).collect::<Vec<_>>());
        }

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
