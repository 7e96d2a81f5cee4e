//! Index terms. A search condition `field = value` in an org is looked up by a 64-bit
//! key: the first 8 bytes of SHA-256(org ‖ field tag ‖ value). Finding a colliding value
//! for a given one costs a second preimage (2^64 work); searches still re-check every
//! returned event against the exact condition, so a collision can never show a wrong
//! event.

use auditrail_core::event::Terms;
use auditrail_core::query::Field;
use sha2::{Digest, Sha256};

pub fn term_key(org_num: i64, field: Field, value: &str) -> i64 {
    let mut h = Sha256::new();
    h.update(org_num.to_be_bytes());
    h.update([field.tag()]);
    h.update(value.as_bytes());
    let d = h.finalize();
    i64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// The (field, value) pairs of an event that get index entries.
pub fn event_terms(t: &Terms) -> impl Iterator<Item = (Field, &str)> {
    [
        (Field::Action, Some(t.action.as_str())),
        (Field::ActorId, t.actor_id.as_deref()),
        (Field::ResourceType, t.resource_type.as_deref()),
        (Field::ResourceId, t.resource_id.as_deref()),
        (Field::ScopeId, t.scope_id.as_deref()),
    ]
    .into_iter()
    .filter_map(|(f, v)| v.map(|v| (f, v)))
}

/// Reads a field of a stored event, to re-check conditions exactly.
pub fn field_value(event: &serde_json::Value, field: Field) -> Option<&str> {
    field_keys(field)
        .iter()
        .try_fold(event, |v, k| v.get(k))
        .and_then(|v| v.as_str())
}

/// The keys of a field in a stored event, from the root (as [`field_value`] reads them).
pub fn field_keys(field: Field) -> &'static [&'static str] {
    match field {
        Field::Action => &["action"],
        Field::ActorId => &["actor", "id"],
        Field::ResourceType => &["resource", "type"],
        Field::ResourceId => &["resource", "id"],
        Field::ScopeId => &["scope", "id"],
    }
}

/// A quick test of an event's field values, as JSON text (what
/// [`crate::sealed::decode_some`] shows), against a filter's field conditions: it says
/// no only when a condition cannot hold, so an event it lets through still needs
/// [`matches`]. It reads a value only where that is sure: a string with no escape in
/// it, for a condition value with nothing to escape; anything else lets the event
/// through.
pub struct FieldTest {
    /// The fields' paths ([`crate::sealed::field_path`]), one a field tested.
    pub paths: Vec<Vec<u8>>,
    /// Per condition: its field's place in `paths`, its value, and whether negated.
    conds: Vec<(usize, Vec<u8>, bool)>,
}

impl FieldTest {
    /// The test of `filter`'s conditions; `None` if there is none it can test.
    pub fn of(filter: &auditrail_core::query::Filter) -> Option<Self> {
        let mut t = FieldTest {
            paths: Vec::new(),
            conds: Vec::new(),
        };
        let mut fields: Vec<Field> = Vec::new();
        for c in &filter.conds {
            if c.value.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
                continue;
            }
            let at = match fields.iter().position(|f| *f == c.field) {
                Some(i) => i,
                None => {
                    fields.push(c.field);
                    t.paths.push(crate::sealed::field_path(field_keys(c.field)));
                    fields.len() - 1
                }
            };
            t.conds.push((at, c.value.as_bytes().to_vec(), c.negate));
        }
        (!t.conds.is_empty()).then_some(t)
    }

    /// False only if some condition cannot hold for an event with these values (one a
    /// path, `None` where the event has none or it is not known).
    pub fn may_hold(&self, values: &[Option<&[u8]>]) -> bool {
        self.conds.iter().all(|(at, want, negate)| {
            let Some(Some(raw)) = values.get(*at) else {
                return true;
            };
            let plain = raw.len() >= 2
                && raw[0] == b'"'
                && raw[raw.len() - 1] == b'"'
                && !raw.contains(&b'\\');
            if !plain {
                return true;
            }
            (&raw[1..raw.len() - 1] == want.as_slice()) != *negate
        })
    }
}

/// Whether a stored event satisfies every condition of `filter` exactly./// Whether a stored event satisfies every condition of `filter` exactly.
pub fn matches(body: &str, filter: &auditrail_core::query::Filter) -> bool {
    // Substring tests first, which most candidates of a scan fail: text conditions are
    // substring tests; and a stored body is canonical JSON, so a value with nothing to
    // escape appears in it verbatim wherever it is a field's value.
    if !text_holds(body, filter) {
        return false;
    }
    let verbatim = |v: &str| !v.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\');
    if filter
        .conds
        .iter()
        .any(|c| !c.negate && verbatim(&c.value) && !body.contains(c.value.as_str()))
    {
        return false;
    }
    if filter.conds.is_empty() {
        // Nothing left that needs the parsed event (a stored body is valid JSON).
        return true;
    }
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return false;
    };
    conds_hold(filter, |f| field_value(&v, f))
}

/// Whether every field condition of `filter` holds, `value` giving each field's value.
pub fn conds_hold<'v>(
    filter: &auditrail_core::query::Filter,
    value: impl Fn(Field) -> Option<&'v str>,
) -> bool {
    filter
        .conds
        .iter()
        .all(|c| (value(c.field) == Some(c.value.as_str())) != c.negate)
}

/// Whether every text condition of `filter` holds for a stored body.
pub fn text_holds(body: &str, filter: &auditrail_core::query::Filter) -> bool {
    filter
        .text
        .iter()
        .all(|(t, neg)| body.contains(t.as_str()) != *neg)
}

/// Encodes ascending rids as LEB128 deltas from the first (which is stored as the key).
pub fn encode_rids(rids: &[i64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rids.len() * 2);
    let mut prev = rids.first().copied().unwrap_or(0);
    for &r in rids {
        put_varint(&mut out, (r - prev) as u64);
        prev = r;
    }
    out
}

/// Appends `v` as LEB128: seven bits a byte, low first, the high bit set on all but the last.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Decodes what [`encode_rids`] wrote, given the first rid.
pub fn decode_rids(first: i64, blob: &[u8]) -> Vec<i64> {
    let mut out = Vec::with_capacity(blob.len());
    let (mut cur, mut shift, mut d) = (first, 0u32, 0u64);
    for &b in blob {
        d |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            cur += d as i64;
            out.push(cur);
            (shift, d) = (0, 0);
        } else {
            shift += 7;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rid_blocks_round_trip() {
        let rids = vec![1 << 40, (1 << 40) + 1, (1 << 40) + 200, (1 << 40) + 70_000];
        assert_eq!(decode_rids(rids[0], &encode_rids(&rids)), rids);
        assert_eq!(encode_rids(&rids[..1]), vec![0]);
    }

    #[test]
    fn matches_is_exact_whatever_the_value_holds() {
        use auditrail_core::query::{Filter, parse_q};
        let body = r#"{"action":"a\"b","actor":{"id":"u-12"},"details":{"n":"line\nbreak"}}"#;
        let m = |q: &str| {
            let mut f = Filter::default();
            parse_q(q, &mut f).unwrap();
            matches(body, &f)
        };
        let mut f = Filter::default();
        f.require(Field::Action, "a\"b");
        assert!(matches(body, &f), "a value that is escaped in the body");
        assert!(m("actor:u-12"));
        assert!(!m("actor:u-1"), "a substring of the value is not the value");
        assert!(!m("actor:u-123"));
        assert!(m("-actor:u-1"));
        assert!(!m("-actor:u-12"));
        assert!(m("\"u-12\" actor:u-12"));
        assert!(!m("-\"u-12\""));
        assert!(!m("\"nothing\""));
    }

    /// The quick test on a sealed event's values never says no where `matches` would
    /// say yes, and says no where it is sure.
    #[test]
    fn the_field_test_refuses_only_events_that_cannot_match() {
        use auditrail_core::query::{Cond, Filter};
        let bodies = [
            r#"{"action":"add","actor":{"id":"u-12"}}"#,
            r#"{"action":"add","actor":{"id":"u-1\u0032"}}"#,
            r#"{"action":"a\"b","actor":{"id":12}}"#,
            r#"{"action":"add"}"#,
            r#"{"action":"add","actor":{"id":["u-12"]}}"#,
            r#"{"action":"add","actor":{"id":{"x":"u-12"}}}"#,
            r#"{"action":"add","actor":"u-12"}"#,
        ];
        let values = |body: &str| -> Vec<Option<Vec<u8>>> {
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            [&["actor", "id"][..], &["action"][..]]
                .iter()
                .map(|keys| {
                    keys.iter()
                        .try_fold(&v, |v, k| v.get(k))
                        .filter(|x| !x.is_object() && !x.is_array())
                        .map(|x| x.to_string().into_bytes())
                })
                .collect()
        };
        let mut refused = 0;
        for (field, value) in [
            (Field::ActorId, "u-12"),
            (Field::ActorId, "u-1"),
            (Field::ActorId, "12"),
            (Field::Action, "add"),
            (Field::Action, "a\"b"),
            (Field::Action, "other"),
        ] {
            for negate in [false, true] {
                let mut f = Filter::default();
                f.conds.push(Cond {
                    field,
                    value: value.into(),
                    negate,
                });
                let Some(test) = FieldTest::of(&f) else {
                    assert_eq!(value, "a\"b", "only a value with something to escape");
                    continue;
                };
                for body in bodies {
                    let vals = values(body);
                    // The test's paths, in its order: this filter has one field.
                    let at = if field == Field::ActorId { 0 } else { 1 };
                    let shown = [vals[at].as_deref()];
                    let may = test.may_hold(&shown);
                    assert!(
                        may || !matches(body, &f),
                        "{field:?} {value} negate={negate}: refused {body}"
                    );
                    refused += usize::from(!may);
                }
            }
        }
        assert!(
            refused >= 10,
            "the test refuses what it is sure of ({refused})"
        );
    }
}
