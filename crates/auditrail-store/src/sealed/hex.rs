//! A column of hex identifiers, packed: half a byte a digit (frame version 4).
//!
//! Client ids are most often random hex (32 digits, or a UUID's 8-4-4-4-12), and a
//! general-purpose compressor codes a random hex digit in ~4.5 bits of Huffman code plus
//! its share of sequence headers, where the digit holds 4: about 2 of the ~18 bytes such
//! an id costs in a frame. So a column whose values all have one layout (the same
//! length, the same bytes where they agree, hex digits of one case where they differ) is
//! kept as that layout and each value's varying digits, two to a byte. Pure: no I/O.
//!
//! Layout: the value length (LEB128), then the pattern, a byte per position: [`LOWER`] or
//! [`UPPER`] for a varying hex digit, otherwise the byte every value has there; then the
//! number of values (LEB128); then per value its varying digits, high nibble first, the
//! last byte padded with a zero nibble.

use super::Reader;
use crate::terms::put_varint;
use crate::{Result, StoreError};

/// Ends each value in a plain column.
const END: u8 = b'\n';
/// A varying lowercase hex digit in a pattern (never a byte of a JSON scalar).
const LOWER: u8 = 0;
/// A varying uppercase hex digit.
const UPPER: u8 = 1;
/// Fewer varying digits than this, and a column is left plain: packing would save little.
const MIN_DIGITS: usize = 8;

fn bad(why: &str) -> StoreError {
    StoreError::Corrupt(format!("sealed frame: packed column: {why}"))
}

fn nibble(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A plain column (each value followed by `\n`) packed, if its values share a layout.
pub(super) fn pack(col: &[u8]) -> Option<Vec<u8>> {
    let body = col.strip_suffix(&[END])?;
    let first = body.split(|&b| b == END).next()?;
    let len = first.len();
    // Per position: every value has first's byte there; some value has a-f; A-F; a
    // byte that is not a hex digit.
    let mut same = vec![true; len];
    let (mut lower, mut upper, mut other) = (vec![false; len], vec![false; len], vec![false; len]);
    let mut count = 0usize;
    for v in body.split(|&b| b == END) {
        if v.len() != len {
            return None;
        }
        count += 1;
        for (p, &b) in v.iter().enumerate() {
            same[p] &= b == first[p];
            match b {
                b'a'..=b'f' => lower[p] = true,
                b'A'..=b'F' => upper[p] = true,
                b'0'..=b'9' => {}
                _ => other[p] = true,
            }
        }
    }
    let mut pattern = Vec::with_capacity(len);
    for p in 0..len {
        pattern.push(if same[p] {
            if first[p] == LOWER || first[p] == UPPER {
                return None;
            }
            first[p]
        } else if other[p] || (lower[p] && upper[p]) {
            return None;
        } else if upper[p] {
            UPPER
        } else {
            LOWER
        });
    }
    let slots: Vec<usize> = (0..len).filter(|&p| !same[p]).collect();
    if slots.len() < MIN_DIGITS {
        return None;
    }
    let mut out = Vec::with_capacity(16 + len + count * slots.len().div_ceil(2));
    put_varint(&mut out, len as u64);
    out.extend_from_slice(&pattern);
    put_varint(&mut out, count as u64);
    for v in body.split(|&b| b == END) {
        for pair in slots.chunks(2) {
            let hi = nibble(v[pair[0]])?;
            let lo = match pair.get(1) {
                Some(&p) => nibble(v[p])?,
                None => 0,
            };
            out.push(hi << 4 | lo);
        }
    }
    Some(out)
}

/// A packed column, read in place: any value can be written out on its own.
pub(super) struct Packed<'a> {
    pattern: &'a [u8],
    /// Bytes of digits a value.
    per: usize,
    digits: &'a [u8],
}

impl<'a> Packed<'a> {
    /// Reads the layout of a column [`pack`] made; `Corrupt` if its digits do not fill
    /// a whole number of values of it.
    pub(super) fn parse(data: &'a [u8]) -> Result<Self> {
        let mut r = Reader { raw: data, at: 0 };
        let len = usize::try_from(r.varint()?)
            .ok()
            .filter(|&n| n <= data.len())
            .ok_or_else(|| bad("too long a value"))?;
        let pattern = r.take(len)?;
        let count = r.varint()?;
        let slots = pattern
            .iter()
            .filter(|&&b| b == LOWER || b == UPPER)
            .count();
        let per = slots.div_ceil(2);
        let digits = &data[r.at..];
        if per == 0
            || u64::try_from(digits.len() / per).ok() != Some(count)
            || !digits.len().is_multiple_of(per)
        {
            return Err(bad("its digits do not fill its values"));
        }
        Ok(Self {
            pattern,
            per,
            digits,
        })
    }

    /// How many values the column holds.
    pub(super) fn count(&self) -> usize {
        self.digits.len() / self.per
    }

    /// Appends value `k` (without its end) to `out`.
    pub(super) fn write(&self, k: usize, out: &mut Vec<u8>) -> Result<()> {
        let value = self
            .digits
            .get(k * self.per..(k + 1) * self.per)
            .ok_or_else(|| bad("no such value"))?;
        let mut nibbles = value.iter().flat_map(|b| [b >> 4, b & 15]);
        for &p in self.pattern {
            out.push(match p {
                LOWER | UPPER => {
                    let n = nibbles.next().ok_or_else(|| bad("a value is short"))?;
                    let set = if p == LOWER {
                        b"0123456789abcdef"
                    } else {
                        b"0123456789ABCDEF"
                    };
                    set[usize::from(n)]
                }
                literal => literal,
            });
        }
        if nibbles.any(|n| n != 0) {
            return Err(bad("a value's padding is not zero"));
        }
        Ok(())
    }

    /// The column as a plain one: each value followed by `\n`.
    pub(super) fn plain(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.count() * (self.pattern.len() + 1));
        for k in 0..self.count() {
            self.write(k, &mut out)?;
            out.push(END);
        }
        Ok(out)
    }
}

/// The plain column (each value followed by `\n`) that [`pack`] packed into `data`.
#[cfg(test)]
pub(super) fn unpack(data: &[u8]) -> Result<Vec<u8>> {
    Packed::parse(data)?.plain()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: a panic is a failed test")]
    use super::*;
    use proptest::prelude::*;

    fn column(values: &[&str]) -> Vec<u8> {
        values
            .iter()
            .flat_map(|v| [v.as_bytes(), b"\n"].concat())
            .collect()
    }

    #[test]
    fn hex_ids_and_uuids_pack_to_half_a_byte_a_digit() {
        let ids = column(&[
            "\"0f1e2d3c4b5a69788796a5b4c3d2e1f0\"",
            "\"00000000000000000000000000000001\"",
            "\"ffffffffffffffffffffffffffffffff\"",
        ]);
        let p = pack(&ids).unwrap();
        assert!(p.len() < 34 + 3 + 3 * 16 + 1, "{}", p.len());
        assert_eq!(unpack(&p).unwrap(), ids);
        let uuids = column(&[
            "\"550e8400-e29b-41d4-a716-446655440000\"",
            "\"6ba7b810-9dad-41d1-80b4-00c04fd430c8\"",
        ]);
        assert_eq!(unpack(&pack(&uuids).unwrap()).unwrap(), uuids);
        let upper = column(&["\"ABCDEF0123\"", "\"0123456789\""]);
        assert_eq!(unpack(&pack(&upper).unwrap()).unwrap(), upper);
    }

    #[test]
    fn columns_without_one_layout_stay_plain() {
        for odd in [
            column(&["\"abcdef0123\"", "\"abcdef012\""]), // lengths differ
            column(&["\"abcdef0123\"", "\"ABCDEF0123\""]), // cases differ
            column(&["\"abcdef0123\"", "\"abcdefg123\""]), // not hex
            column(&["\"p-1\"", "\"p-2\""]),              // too few digits
            column(&["12345678901", "", "12345678902"]),  // a derived (empty) value
            column(&["\"abcdef0123\"", "\"abcdef0124\""]), // one digit varies
            b"\"abcdef0123\"".to_vec(),                   // no end
            Vec::new(),
        ] {
            assert_eq!(pack(&odd), None, "{}", String::from_utf8_lossy(&odd));
        }
    }

    #[test]
    fn damaged_packed_columns_are_refused() {
        let p = pack(&column(&["\"0123456789abcdef\"", "\"fedcba9876543210\""])).unwrap();
        assert!(unpack(&p[..p.len() - 1]).is_err(), "short");
        assert!(unpack(&[p.as_slice(), &[0]].concat()).is_err(), "long");
        assert!(unpack(&[0xff; 3]).is_err());
        let odd = pack(&column(&["\"012345678\"", "\"123456789\""])).unwrap();
        let mut bad = odd.clone();
        *bad.last_mut().unwrap() |= 1;
        assert!(unpack(&bad).is_err(), "padding");
        assert!(unpack(&odd).is_ok());
    }

    proptest! {
        /// Whatever a column holds, packing it either gives it back exactly or declines.
        #[test]
        fn packing_gives_a_column_back_or_declines(
            layout in "[0-9a-fA-F\"-]{0,40}",
            values in proptest::collection::vec(any::<u64>(), 1..40),
            ragged in any::<bool>(),
        ) {
            let values: Vec<String> = values.iter().enumerate().map(|(i, x)| {
                let hex = format!("{x:016x}{:016X}", x.rotate_left(7));
                let v: String = layout.chars().zip(hex.chars().cycle()).map(|(l, h)| match l {
                    'a'..='f' | '0'..='9' => h.to_ascii_lowercase(),
                    'A'..='F' => h.to_ascii_uppercase(),
                    other => other,
                }).collect();
                if ragged && i == 1 { format!("{v}0") } else { v }
            }).collect();
            let refs: Vec<&str> = values.iter().map(String::as_str).collect();
            let col = column(&refs);
            if let Some(p) = pack(&col) {
                prop_assert_eq!(unpack(&p).unwrap(), col);
            }
        }
    }
}
