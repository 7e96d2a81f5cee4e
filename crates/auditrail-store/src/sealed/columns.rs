//! A frame's bodies as shapes and columns (frame version 3); `join.rs` reads them back.
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

use crate::StoreError;
use crate::terms::put_varint;

/// Where a scalar was in a shape. Never in JSON text (control characters are escaped).
pub(super) const HOLE: u8 = 0;
/// Ends each value in a column. Never inside a JSON scalar.
pub(super) const END: u8 = b'\n';

pub(super) const SEQ: &[u8] = b"\"seq\"";
pub(super) const RECEIVED: &[u8] = b"\"received_at\"";
pub(super) const OCCURRED: &[u8] = b"\"occurred_at\"";

/// What a body's derivable values are derived from.
#[derive(Debug, Clone, Copy)]
pub(super) struct Times {
    pub occurred_us: i64,
    pub received_ms: i64,
}

/// Appends `received_at` as auditrail writes it for `ms` (quoted).
pub(super) fn put_received(ms: i64, out: &mut Vec<u8>) {
    out.push(b'"');
    if !put_time(ms.div_euclid(1000), ms.rem_euclid(1000) as u32, 3, out) {
        out.extend_from_slice(time::format_millis(ms).as_bytes());
    }
    out.push(b'"');
}

/// Appends `occurred_at` as auditrail writes it for `us` (quoted); false if out of range.
pub(super) fn put_occurred(us: i64, out: &mut Vec<u8>) -> bool {
    let (secs, frac) = (us.div_euclid(1_000_000), us.rem_euclid(1_000_000) as u32);
    out.push(b'"');
    // As chrono's `AutoSi` writes it: no fraction, or 3 or 6 digits.
    let done = match frac {
        0 => put_time(secs, 0, 0, out),
        f if f % 1000 == 0 => put_time(secs, f / 1000, 3, out),
        f => put_time(secs, f, 6, out),
    };
    if !done {
        match DateTime::<Utc>::from_timestamp_micros(us) {
            Some(t) => out.extend_from_slice(time::format(t).as_bytes()),
            None => return false,
        }
    }
    out.push(b'"');
    true
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z` for years 0000 to 9999 (false otherwise: chrono
/// writes other years its own way). A few times faster than chrono's formatting, which
/// every sealed event's two times would otherwise go through when read.
fn put_time(secs: i64, frac: u32, digits: u32, out: &mut Vec<u8>) -> bool {
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    if !(0..=9999).contains(&y) {
        return false;
    }
    put_digits(y, 4, out);
    out.push(b'-');
    put_digits(m, 2, out);
    out.push(b'-');
    put_digits(d, 2, out);
    out.push(b'T');
    put_digits(sod / 3600, 2, out);
    out.push(b':');
    put_digits(sod / 60 % 60, 2, out);
    out.push(b':');
    put_digits(sod % 60, 2, out);
    if digits > 0 {
        out.push(b'.');
        put_digits(i64::from(frac), digits, out);
    }
    out.push(b'Z');
    true
}

enum Ctx {
    /// An object whose members' paths start with `path[..base]`.
    Obj { base: usize, want_key: bool },
    /// An array; its elements' path is `path[..=base]` (ending in `[`).
    Arr { base: usize },
}

/// One step of reading a body or a shape.
pub(super) enum Step<'a> {
    /// Bytes that belong to the shape.
    Text(&'a [u8]),
    /// A scalar value (a hole in a shape), and the path of its column.
    Value(&'a [u8]),
}

/// Walks JSON text (`shape`: holes in place of scalars), keeping the path of the
/// position. Calls `f` for each run of shape text and each scalar; `None` on text it
/// does not understand.
pub(super) fn walk<'a>(
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

/// How a column's values are kept (from frame version 4 on, its head names it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Codes {
    /// Version 3: every column plain, its head without a code.
    Plain,
    /// Version 4: each head carries [`PLAIN`] or [`HEX`].
    Named,
    /// Version 5: [`PLAIN`], [`HEX`] or [`ONE`].
    NamedOrOne,
}

/// A column's values back to back, each followed by [`END`].
pub(super) const PLAIN: u8 = 0;
/// A column of hex identifiers of one layout, packed (`hex.rs`).
pub(super) const HEX: u8 = 1;
/// A column whose values are all one value: how many (LEB128), then the value. Values
/// every event of an org repeats (a type, an outcome, a user agent, the derived times)
/// then cost nothing to decompress.
pub(super) const ONE: u8 = 2;

/// A plain column's values kept as [`ONE`], if they are all one value.
fn one_value(col: &[u8]) -> Option<Vec<u8>> {
    let first = &col[..memchr::memchr(END, col)? + 1];
    if !col.len().is_multiple_of(first.len()) || !col.chunks(first.len()).all(|v| v == first) {
        return None;
    }
    let mut out = Vec::with_capacity(first.len() + 4);
    put_varint(&mut out, (col.len() / first.len()) as u64);
    out.extend_from_slice(&first[..first.len() - 1]);
    Some(out)
}

/// Appends the bodies as shapes and columns to `out`; `None` if one cannot be split
/// (the caller then keeps the bodies whole).
pub(super) fn split(bodies: &[(&str, Times)], codes: Codes, out: &mut Vec<u8>) -> Option<()> {
    let mut shapes: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut shape_list: Vec<Vec<u8>> = Vec::new();
    let mut shape_of: Vec<usize> = Vec::with_capacity(bodies.len());
    let mut col_of: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut cols: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut path = Vec::new();
    let mut last_seq: Option<u64> = None;
    let mut token = Vec::new();
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
                        RECEIVED => {
                            token.clear();
                            put_received(t.received_ms, &mut token);
                            v == token
                        }
                        OCCURRED => {
                            token.clear();
                            put_occurred(t.occurred_us, &mut token) && v == token
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
        // Most bodies repeat a shape already seen: only a new one is copied.
        let idx = match shapes.get(&shape) {
            Some(&i) => i,
            None => {
                shapes.insert(shape.clone(), shape_list.len());
                shape_list.push(shape);
                shape_list.len() - 1
            }
        };
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
    // Each column's code and, unless plain, its values as that code keeps them.
    let packed: Vec<(u8, Option<Vec<u8>>)> = cols
        .iter()
        .map(|(_, data)| {
            let one = match codes {
                Codes::NamedOrOne => one_value(data).map(|v| (ONE, Some(v))),
                _ => None,
            };
            let hex = || match codes {
                Codes::Named | Codes::NamedOrOne => super::hex::pack(data).map(|v| (HEX, Some(v))),
                Codes::Plain => None,
            };
            one.or_else(hex).unwrap_or((PLAIN, None))
        })
        .collect();
    put_varint(out, cols.len() as u64);
    for ((p, data), (code, packed)) in cols.iter().zip(&packed) {
        put_varint(out, p.len() as u64);
        out.extend_from_slice(p);
        if codes != Codes::Plain {
            out.push(*code);
        }
        put_varint(out, packed.as_ref().unwrap_or(data).len() as u64);
    }
    for ((_, data), (_, packed)) in cols.iter().zip(&packed) {
        out.extend_from_slice(packed.as_ref().unwrap_or(data));
    }
    Some(())
}

/// Appends the `width` lowest decimal digits of `v` (non-negative).
fn put_digits(v: i64, width: u32, out: &mut Vec<u8>) {
    for k in (0..width).rev() {
        out.push(b'0' + (v / 10i64.pow(k) % 10) as u8);
    }
}

pub(super) fn bad(why: &str) -> StoreError {
    StoreError::Corrupt(format!("sealed frame: {why}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: a panic is a failed test")]
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The fast formatting writes exactly what auditrail's own (chrono's) writes.
        #[test]
        fn times_are_written_as_auditrail_writes_them(
            us in prop_oneof![
                -70_000_000_000_000_000i64..300_000_000_000_000_000,
                (-3_000_000_000i64..3_000_000_000).prop_map(|s| s * 1_000_000),
                (-3_000_000_000_000i64..3_000_000_000_000).prop_map(|ms| ms * 1000),
            ],
        ) {
            let mut out = Vec::new();
            put_received(us / 1000, &mut out);
            prop_assert_eq!(out, format!("\"{}\"", time::format_millis(us / 1000)).into_bytes());
            let mut out = Vec::new();
            let t = DateTime::<Utc>::from_timestamp_micros(us).unwrap();
            prop_assert!(put_occurred(us, &mut out));
            prop_assert_eq!(out, format!("\"{}\"", time::format(t)).into_bytes());
        }
    }
}
