//! A frame's bodies as shapes and columns (frame version 3).
//!
//! Events of one org mostly share their structure and differ in a few values, and a
//! general-purpose compressor pays for every field of every event again when values of
//! one field sit ~500 bytes apart. So each body is split, purely lexically (its bytes,
//! never a re-serialization), into a *shape* (the text with every scalar value replaced
//! by one `HOLE` byte) and its scalars, each appended to the *column* of its path (the
//! keys from the root, `[` for an array level). Bodies of one shape share its text; a
//! column holds one field's values back to back, which compress as well as a column
//! store's. Joining puts each scalar back where its hole is, byte for byte.
//!
//! Three values are not stored when they can be derived: top-level `seq` when it is the
//! previous body's plus one, `received_at` when it is the entry's `received_ms` written
//! as auditrail writes it, and `occurred_at` likewise from `occurred_us`. An empty value
//! in a column means "derived"; no JSON scalar is empty.
//!
//! The caller checks that joining gives back every body exactly before it keeps a frame
//! made this way, so a body the lexer reads differently from a JSON parser can only cost
//! compression, never a byte.

use std::collections::HashMap;

use auditrail_core::time;
use chrono::{DateTime, Utc};

use super::Reader;
use crate::terms::put_varint;
use crate::{Result, StoreError};

/// Where a scalar was in a shape. Never in JSON text (control characters are escaped).
const HOLE: u8 = 0;
/// Ends each value in a column. Never inside a JSON scalar.
const END: u8 = b'\n';

const SEQ: &[u8] = b"\"seq\"";
const RECEIVED: &[u8] = b"\"received_at\"";
const OCCURRED: &[u8] = b"\"occurred_at\"";

/// What a body's derivable values are derived from.
#[derive(Debug, Clone, Copy)]
pub(super) struct Times {
    pub occurred_us: i64,
    pub received_ms: i64,
}

fn received_token(ms: i64) -> String {
    format!("\"{}\"", time::format_millis(ms))
}

fn occurred_token(us: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp_micros(us).map(|t| format!("\"{}\"", time::format(t)))
}

enum Ctx {
    /// An object whose members' paths start with `path[..base]`.
    Obj { base: usize, want_key: bool },
    /// An array; its elements' path is `path[..=base]` (ending in `[`).
    Arr { base: usize },
}

/// One step of reading a body or a shape.
enum Step<'a> {
    /// Bytes that belong to the shape.
    Text(&'a [u8]),
    /// A scalar value (a hole in a shape), and the path of its column.
    Value(&'a [u8]),
}

/// Walks JSON text (`shape`: holes in place of scalars), keeping the path of the
/// position. Calls `f` for each run of shape text and each scalar; `None` on text it
/// does not understand.
fn walk<'a>(
    text: &'a [u8],
    shape: bool,
    path: &mut Vec<u8>,
    mut f: impl FnMut(Step<'a>, &[u8]) -> Option<()>,
) -> Option<()> {
    let mut stack: Vec<Ctx> = Vec::new();
    path.clear();
    let mut top_done = false;
    let mut i = 0;
    while i < text.len() {
        let b = text[i];
        let value_here = match stack.last() {
            None => !top_done,
            Some(Ctx::Obj { want_key, .. }) => !want_key,
            Some(Ctx::Arr { .. }) => true,
        };
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => {
                f(Step::Text(&text[i..=i]), path.as_slice())?;
                i += 1;
            }
            b'{' | b'[' if value_here => {
                if stack.is_empty() {
                    top_done = true;
                }
                let base = path.len();
                if b == b'[' {
                    path.push(b'[');
                    stack.push(Ctx::Arr { base });
                } else {
                    stack.push(Ctx::Obj {
                        base,
                        want_key: true,
                    });
                }
                f(Step::Text(&text[i..=i]), path.as_slice())?;
                i += 1;
            }
            b'}' | b']' => {
                match (b, stack.pop()?) {
                    (b'}', Ctx::Obj { base, .. }) | (b']', Ctx::Arr { base }) => {
                        path.truncate(base);
                    }
                    _ => return None,
                }
                f(Step::Text(&text[i..=i]), path.as_slice())?;
                i += 1;
            }
            b',' => {
                match stack.last_mut()? {
                    Ctx::Obj { want_key, .. } => *want_key = true,
                    Ctx::Arr { base } => path.truncate(*base + 1),
                }
                f(Step::Text(&text[i..=i]), path.as_slice())?;
                i += 1;
            }
            b':' => {
                match stack.last_mut()? {
                    Ctx::Obj { want_key, .. } if *want_key => *want_key = false,
                    _ => return None,
                }
                f(Step::Text(&text[i..=i]), path.as_slice())?;
                i += 1;
            }
            b'"' if !value_here => {
                // A key: part of the shape, and of its members' path.
                let end = string_end(text, i)?;
                let Some(Ctx::Obj { base, .. }) = stack.last() else {
                    return None;
                };
                path.truncate(*base);
                path.extend_from_slice(&text[i..end]);
                f(Step::Text(&text[i..end]), path.as_slice())?;
                i = end;
            }
            HOLE if shape && value_here => {
                top_done |= stack.is_empty();
                f(Step::Value(&text[i..=i]), path.as_slice())?;
                i += 1;
            }
            _ if !shape && value_here && b != HOLE => {
                let end = if b == b'"' {
                    string_end(text, i)?
                } else {
                    text[i..]
                        .iter()
                        .position(|c| b",}] \t\r\n:".contains(c))
                        .map_or(text.len(), |p| i + p)
                };
                if end == i {
                    return None;
                }
                top_done |= stack.is_empty();
                f(Step::Value(&text[i..end]), path.as_slice())?;
                i = end;
            }
            _ => return None,
        }
    }
    stack.is_empty().then_some(())
}

/// The end (exclusive) of the JSON string starting at `text[start]` (a quote).
fn string_end(text: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < text.len() {
        match text[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Appends the bodies as shapes and columns to `out`; `None` if one cannot be split
/// (the caller then keeps the bodies whole).
pub(super) fn split(bodies: &[(&str, Times)], out: &mut Vec<u8>) -> Option<()> {
    let mut shapes: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut shape_list: Vec<Vec<u8>> = Vec::new();
    let mut shape_of: Vec<usize> = Vec::with_capacity(bodies.len());
    let mut col_of: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut cols: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut path = Vec::new();
    let mut last_seq: Option<u64> = None;
    for (body, t) in bodies {
        let mut shape = Vec::with_capacity(body.len() / 2);
        walk(body.as_bytes(), false, &mut path, |step, path| {
            match step {
                Step::Text(s) => {
                    if s.contains(&HOLE) {
                        return None;
                    }
                    shape.extend_from_slice(s);
                }
                Step::Value(v) => {
                    if v.contains(&END) || v.contains(&HOLE) {
                        return None;
                    }
                    shape.push(HOLE);
                    let derived = match path {
                        SEQ => {
                            let n = std::str::from_utf8(v).ok()?.parse::<u64>().ok();
                            let d = n.is_some() && n == last_seq.and_then(|s| s.checked_add(1));
                            // Only a number written as `u64` writes it: "01" stays.
                            last_seq = n.filter(|n| n.to_string().as_bytes() == v);
                            d && last_seq.is_some()
                        }
                        RECEIVED => v == received_token(t.received_ms).as_bytes(),
                        OCCURRED => {
                            occurred_token(t.occurred_us).is_some_and(|o| v == o.as_bytes())
                        }
                        _ => false,
                    };
                    let c = match col_of.get(path) {
                        Some(&c) => c,
                        None => {
                            col_of.insert(path.to_vec(), cols.len());
                            cols.push((path.to_vec(), Vec::new()));
                            cols.len() - 1
                        }
                    };
                    let data = &mut cols[c].1;
                    if !derived {
                        data.extend_from_slice(v);
                    }
                    data.push(END);
                }
            }
            Some(())
        })?;
        let next = shape_list.len();
        let idx = *shapes.entry(shape.clone()).or_insert(next);
        if idx == next {
            shape_list.push(shape);
        }
        shape_of.push(idx);
    }
    put_varint(out, shape_list.len() as u64);
    for s in &shape_list {
        put_varint(out, s.len() as u64);
        out.extend_from_slice(s);
    }
    for s in shape_of {
        put_varint(out, s as u64);
    }
    put_varint(out, cols.len() as u64);
    for (p, data) in &cols {
        put_varint(out, p.len() as u64);
        out.extend_from_slice(p);
        put_varint(out, data.len() as u64);
    }
    for (_, data) in &cols {
        out.extend_from_slice(data);
    }
    Some(())
}

fn bad(why: &str) -> StoreError {
    StoreError::Corrupt(format!("sealed frame: {why}"))
}

/// One shape, ready to fill: its text and, per hole, where it is and its column.
struct Plan<'a> {
    text: &'a [u8],
    holes: Vec<(usize, usize)>,
}

/// Reads what [`split`] wrote for bodies with these times; the bodies, in order.
pub(super) fn join<'a>(r: &mut Reader<'a>, times: &[Times]) -> Result<Vec<String>> {
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
        heads.push((p, count(r)?));
    }
    let mut col_of: HashMap<&[u8], usize> = HashMap::with_capacity(n_cols);
    // Each column's values, and the next one to use.
    let mut cols: Vec<(std::slice::Split<'_, u8, fn(&u8) -> bool>, &[u8])> = Vec::new();
    for (i, (p, len)) in heads.iter().enumerate() {
        let data = r.take(*len)?;
        let data = data.strip_suffix(&[END]).unwrap_or(data);
        let is_end: fn(&u8) -> bool = |b| *b == END;
        cols.push((data.split(is_end), p));
        if col_of.insert(p, i).is_some() {
            return Err(bad("a column appears twice"));
        }
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
        plans.push(Plan { text: s, holes });
    }
    let mut out = Vec::with_capacity(times.len());
    let mut last_seq: Option<u64> = None;
    let mut buf = Vec::new();
    for (t, s) in times.iter().zip(shape_of) {
        let plan = &plans[s];
        buf.clear();
        let mut from = 0;
        for &(at, c) in &plan.holes {
            buf.extend_from_slice(&plan.text[from..at]);
            from = at + 1;
            let (values, path) = &mut cols[c];
            let v = values.next().ok_or_else(|| bad("a column ran out"))?;
            let path: &[u8] = *path;
            if v.is_empty() {
                match path {
                    SEQ => {
                        let n = last_seq
                            .and_then(|s| s.checked_add(1))
                            .ok_or_else(|| bad("a seq with nothing before it"))?;
                        buf.extend_from_slice(n.to_string().as_bytes());
                        last_seq = Some(n);
                    }
                    RECEIVED => buf.extend_from_slice(received_token(t.received_ms).as_bytes()),
                    OCCURRED => buf.extend_from_slice(
                        occurred_token(t.occurred_us)
                            .ok_or_else(|| bad("a time out of range"))?
                            .as_bytes(),
                    ),
                    _ => return Err(bad("an empty value")),
                }
            } else {
                if path == SEQ {
                    last_seq = std::str::from_utf8(v)
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok())
                        .filter(|n| n.to_string().as_bytes() == v);
                }
                buf.extend_from_slice(v);
            }
        }
        buf.extend_from_slice(&plan.text[from..]);
        let len = buf.len();
        let body = String::from_utf8(std::mem::replace(&mut buf, Vec::with_capacity(len + 64)))
            .map_err(|_| bad("a body is not UTF-8"))?;
        out.push(body);
    }
    if cols.iter_mut().any(|(v, _)| v.next().is_some()) {
        return Err(bad("a column has values left"));
    }
    Ok(out)
}
