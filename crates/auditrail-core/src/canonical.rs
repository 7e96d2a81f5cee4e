//! RFC 8785 JSON Canonicalization Scheme (JCS).
//!
//! Object members are sorted by the UTF-16 code units of their names, strings use the
//! minimal escaping of ECMAScript's `JSON.stringify`, and numbers are written as
//! ECMAScript writes an IEEE-754 double. Integers beyond ±2^53 cannot round-trip through
//! a double, so they are refused (I-JSON, RFC 7493) rather than silently changed.

use serde_json::{Map, Number, Value};

/// The largest integer magnitude a double represents exactly.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CanonicalError {
    #[error("number {0} is outside the range JSON numbers keep exactly (±2^53-1)")]
    UnsafeInteger(String),
}

/// Canonical text of `value`.
pub fn to_string(value: &Value) -> Result<String, CanonicalError> {
    let mut out = String::with_capacity(128);
    write_value_str(value, &mut out)?;
    Ok(out)
}

/// Appends the canonical text of `value` to `out`.
pub fn write_value_str(value: &Value, out: &mut String) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(n, out)?,
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value_str(item, out)?;
            }
            out.push(']');
        }
        Value::Object(map) => write_object(map, out)?,
    }
    Ok(())
}

/// Appends the canonical text of an object.
pub fn write_object(map: &Map<String, Value>, out: &mut String) -> Result<(), CanonicalError> {
    let mut members: Vec<(&String, &Value)> = map.iter().collect();
    members.sort_by(|a, b| key_order(a.0, b.0));
    out.push('{');
    for (i, (k, v)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(k, out);
        out.push(':');
        write_value_str(v, out)?;
    }
    out.push('}');
    Ok(())
}

/// The order of object member names in canonical JSON: by their UTF-16 code units.
pub fn key_order(a: &str, b: &str) -> std::cmp::Ordering {
    // Names nearly always differ in their first byte. Where they do and one of the two is
    // ASCII, that byte decides as the first UTF-16 code unit would: an ASCII character's
    // unit is its byte, and any other character's first unit is above 0x7f.
    if let (Some(&x), Some(&y)) = (a.as_bytes().first(), b.as_bytes().first())
        && x != y
        && (x < 0x80 || y < 0x80)
    {
        return x.cmp(&y);
    }
    // On ASCII, UTF-16 code units are the bytes (the names sent are nearly always ASCII).
    if a.is_ascii() && b.is_ascii() {
        return a.cmp(b);
    }
    a.encode_utf16().cmp(b.encode_utf16())
}

fn write_number(n: &Number, out: &mut String) -> Result<(), CanonicalError> {
    if let Some(u) = n.as_u64() {
        if u > MAX_SAFE_INTEGER {
            return Err(CanonicalError::UnsafeInteger(u.to_string()));
        }
        out.push_str(&u.to_string());
    } else if let Some(i) = n.as_i64() {
        if i.unsigned_abs() > MAX_SAFE_INTEGER {
            return Err(CanonicalError::UnsafeInteger(i.to_string()));
        }
        out.push_str(&i.to_string());
    } else if let Some(f) = n.as_f64() {
        // serde_json never yields NaN or infinities from parsing.
        let mut buf = ryu_js::Buffer::new();
        out.push_str(buf.format_finite(f));
    }
    Ok(())
}

/// Appends `s` as a JSON string literal with JCS escaping.
pub fn write_string(s: &str, out: &mut String) {
    out.push('"');
    // Most strings need no escape: one pass that vectorizes, then one copy.
    if !s
        .bytes()
        .fold(false, |e, b| e | (b < 0x20) | (b == b'"') | (b == b'\\'))
    {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x08 => Some("\\b"),
            0x0c => Some("\\f"),
            0..=0x1f => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => {
                out.push_str("\\u00");
                out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
                out.push(char::from(b"0123456789abcdef"[usize::from(b & 0xf)]));
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorts_keys_by_utf16_code_units() {
        // RFC 8785 §3.2.3 example: sorting by UTF-16 puts U+1F600 (surrogates D83D..)
        // before U+FB33 although its scalar value is larger.
        let v = json!({"\u{fb33}": 1, "\u{1f600}": 2, "a": 3, "\r": 4, "1": 5, "\u{80}": 6});
        let s = to_string(&v).unwrap();
        assert_eq!(
            s,
            "{\"\\r\":4,\"1\":5,\"a\":3,\"\u{80}\":6,\"\u{1f600}\":2,\"\u{fb33}\":1}"
        );
    }

    #[test]
    fn numbers_follow_ecmascript() {
        let v: Value =
            serde_json::from_str("[1.0, -0.0, 1e21, 1e-7, 0.1, 333333333.3333333, 10, -5]")
                .unwrap();
        assert_eq!(
            to_string(&v).unwrap(),
            "[1,0,1e+21,1e-7,0.1,333333333.3333333,10,-5]"
        );
    }

    #[test]
    fn refuses_unsafe_integers() {
        let v: Value = serde_json::from_str("9007199254740993").unwrap();
        assert!(matches!(
            to_string(&v),
            Err(CanonicalError::UnsafeInteger(_))
        ));
        let ok: Value = serde_json::from_str("-9007199254740991").unwrap();
        assert_eq!(to_string(&ok).unwrap(), "-9007199254740991");
    }

    #[test]
    fn escapes_like_json_stringify() {
        let v = json!("a\"b\\c\n\u{1}\u{7f}\u{2028}é/");
        assert_eq!(
            to_string(&v).unwrap(),
            "\"a\\\"b\\\\c\\n\\u0001\u{7f}\u{2028}é/\""
        );
    }

    #[test]
    fn rfc8785_sample() {
        let input = r#"{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
            "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
            "literals": [null, true, false]}"#;
        let v: Value = serde_json::from_str(input).unwrap();
        assert_eq!(
            to_string(&v).unwrap(),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
    }

    proptest::proptest! {
        #[test]
        fn key_order_is_utf16_order(a in "[a-z_\u{e000}\u{1f600}]{0,6}", b in "[a-z_\u{e000}\u{1f600}]{0,6}", ascii_a in "[ -~]{0,6}", ascii_b in "[ -~]{0,6}") {
            for (x, y) in [(&a, &b), (&ascii_a, &ascii_b), (&a, &ascii_b)] {
                proptest::prop_assert_eq!(key_order(x, y), x.encode_utf16().cmp(y.encode_utf16()));
            }
        }

        #[test]
        fn canonical_form_is_a_fixed_point(s in "\\PC{0,40}", n in -1_000_000i64..1_000_000, f in -1e12f64..1e12) {
            let v = json!({"s": s, "n": n, "f": f, "nested": {"z": [s.clone(), n], "a": null}});
            let once = to_string(&v).unwrap();
            let reparsed: Value = serde_json::from_str(&once).unwrap();
            proptest::prop_assert_eq!(to_string(&reparsed).unwrap(), once);
        }
    }
}
