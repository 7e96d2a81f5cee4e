use super::*;
use crate::event::tests::rules;
use crate::event::{Limits, prepare as full};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Both paths on `text`: the fast one, and the full one on the parsed `Value`.
fn both(
    text: &str,
    limits: &Limits,
) -> (
    Option<PreparedEvent>,
    Option<Result<PreparedEvent, Vec<crate::event::FieldError>>>,
) {
    let r = rules(limits);
    let fast = prepare(text, &r, || "01JGEN".into());
    let slow = serde_json::from_str::<Value>(text)
        .ok()
        .map(|v| full(&v, None, &r, || "01JGEN".into()));
    (fast, slow)
}

fn assert_same(a: &PreparedEvent, b: &PreparedEvent) {
    assert_eq!(a.id, b.id);
    assert_eq!(a.client_id, b.client_id);
    assert_eq!(a.head, b.head);
    assert_eq!(a.mid, b.mid);
    assert_eq!(a.occurred_us, b.occurred_us);
    assert_eq!(a.terms, b.terms);
    assert_eq!(a.unknown_action, b.unknown_action);
    assert_eq!(
        a.finish(1_700_000_000_123, 42),
        b.finish(1_700_000_000_123, 42)
    );
}

fn accepted_alike(text: &str) {
    let (fast, slow) = both(text, &Limits::default());
    let fast = fast.unwrap_or_else(|| panic!("fast path declined {text}"));
    let slow = slow.expect("valid JSON").expect("full path accepts");
    assert_same(&fast, &slow);
}

fn declined(text: &str) {
    let (fast, _) = both(text, &Limits::default());
    assert!(fast.is_none(), "fast path accepted {text}");
}

#[test]
fn accepts_plain_events_exactly_as_the_full_path() {
    for v in [
        json!({"action": "login"}),
        json!({
            "id": "e-1", "occurred_at": "2026-11-21T11:15:30.123+01:00", "action": "addProject",
            "resource": {"type": "PROJECT", "id": "p-123", "name": null},
            "actor": {"id": "u-42", "type": "USER", "email": "ann@example.com", "role": null},
            "scope": {"type": "GRAPH", "id": "g"},
            "details": {"name": "demo", "a": [1, 2.50, -3, 1e21, 0.1, true, null, {"z": {}, "b": []}], "": "empty key"},
            "context": {"ip": "2001:db8::1", "user_agent": "curl/8", "note": ""}, "outcome": "failure"
        }),
        json!({"action": "x", "id": null, "occurred_at": null, "details": null, "context": null, "actor": null, "outcome": null}),
        json!({"action": "caf\u{e9} \"quoted\" \\ back", "details": {"\u{10000}": 1, "\u{e000}": 2, "a\nb": "tab\there"}}),
        json!({"action": "a", "details": {}, "resource": {}, "actor": {"type": "SYSTEM"}}),
        json!({"action": "a", "details": {"big": 9_007_199_254_740_991_u64, "neg": -9_007_199_254_740_991_i64, "f": 1.5e-7}}),
    ] {
        accepted_alike(&v.to_string());
    }
    // Escapes in keys and values, and a client id with escapes (owned, not borrowed).
    accepted_alike(
        r#"{"action":"a\u0041","id":"i\/d","actor":{"i\u0064":"u-1"},"details":{"k\u00e9":"v\ud83d\ude00"}}"#,
    );
    // Whitespace anywhere JSON allows it.
    accepted_alike("{ \"action\" : \"a\" ,\n\t\"details\" : { \"x\" : [ 1 , 2 ] } }");
}

#[test]
fn declines_what_the_full_path_rejects() {
    for text in [
        r#"{}"#,
        r#"[]"#,
        r#"["login"]"#,
        r#""login""#,
        r#"{"action": ""}"#,
        r#"{"action": 5}"#,
        r#"{"action": "a\u0007"}"#,
        r#"{"action": "a", "seq": 1}"#,
        r#"{"action": "a", "id": ""}"#,
        r#"{"action": "a", "occurred_at": "yesterday"}"#,
        r#"{"action": "a", "occurred_at": "2099-01-01T00:00:00Z"}"#,
        r#"{"action": "a", "resource": {"kind": "x"}}"#,
        r#"{"action": "a", "resource": {"id": ""}}"#,
        r#"{"action": "a", "resource": {"id": 7}}"#,
        r#"{"action": "a", "resource": "p-1"}"#,
        r#"{"action": "a", "actor": {"type": "ROBOT"}}"#,
        r#"{"action": "a", "context": {"ip": "not-an-ip"}}"#,
        r#"{"action": "a", "context": {"k": null}}"#,
        r#"{"action": "a", "outcome": "maybe"}"#,
        r#"{"action": "a", "details": []}"#,
        r#"{"action": "a", "details": {"n": 9007199254740992}}"#,
        r#"{"action": "a", "details": {"s": "a\u0000b"}}"#,
        r#"{"action": "a"} trailing"#,
    ] {
        declined(text);
        let (_, slow) = both(text, &Limits::default());
        assert!(
            !matches!(slow, Some(Ok(_))),
            "full path accepts {text}, fast path should too"
        );
    }
    let many: Value = (0..17)
        .map(|i| (format!("k{i}"), json!("v")))
        .collect::<serde_json::Map<_, _>>()
        .into();
    declined(&json!({"action": "a", "context": many}).to_string());
    let mut deep = json!(1);
    for _ in 0..8 {
        deep = json!({ "d": deep });
    }
    declined(&json!({"action": "a", "details": deep}).to_string());
}

#[test]
fn declines_repeated_members_and_catalogs() {
    // Valid JSON the full path reads last-one-wins; the fast path leaves it to it.
    declined(r#"{"action": "a", "action": "b"}"#);
    declined(r#"{"action": "a", "actor": {"id": "u-1", "id": "u-2"}}"#);
    declined(r#"{"action": "a", "details": {"k": 1, "k": 2}}"#);
    declined(r#"{"action": "a", "id": null, "id": "x"}"#);
}

/// A member value: mostly a valid text, sometimes anything that may be refused.
fn text() -> impl Strategy<Value = Value> {
    prop_oneof![
        12 => "[a-z0-9-]{1,6}".prop_map(Value::from),
        1 => "\\PC{0,8}".prop_map(Value::from),
        1 => ".{0,3}".prop_map(Value::from),
        1 => Just(Value::Null),
        1 => any::<i32>().prop_map(Value::from),
    ]
}

fn details() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-100i64..100).prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,10}".prop_map(Value::from),
        "[a\u{0}é]{0,3}".prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-zé\u{10000}\u{e000}]{0,4}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A small object: mostly allowed keys, sometimes one that is not.
fn fields(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop::collection::btree_map(prop::sample::select(keys), text(), 0..4)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
}

fn event() -> impl Strategy<Value = Value> {
    let members = (
        prop::option::weighted(0.95, text()),
        prop::option::of(text()),
        prop::option::of(prop_oneof![
            Just(json!("2026-11-21T10:00:00Z")),
            Just(json!("2026-11-21T10:34:59.5+00:00")),
            Just(json!("2027-01-01T00:00:00Z")),
            text(),
        ]),
        prop::option::of(fields(&["type", "id", "name", "type", "id", "kind"])),
        prop::option::of(fields(&["id", "type", "email", "name", "role", "id", "x"])),
        prop::option::of(prop_oneof![8 => details(), 1 => text()]),
        prop::option::weighted(0.3, fields(&["ip", "user_agent", "k", "k2"])),
        prop::option::weighted(0.3, prop_oneof![Just(json!("success")), text()]),
        prop::option::weighted(0.05, text()),
    );
    members.prop_map(
        |(action, id, at, resource, actor, details, context, outcome, extra)| {
            let mut m = serde_json::Map::new();
            for (k, v) in [
                ("action", action),
                ("id", id),
                ("occurred_at", at),
                ("resource", resource),
                ("actor", actor),
                ("details", details),
                ("context", context),
                ("outcome", outcome),
                ("color", extra),
            ] {
                if let Some(v) = v {
                    m.insert(k.to_owned(), v);
                }
            }
            Value::Object(m)
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// On any event without repeated keys the two paths agree: both accept with the same
    /// result, or the fast path declines and the full path rejects.
    #[test]
    fn agrees_with_the_full_path(v in event(), tight in any::<bool>()) {
        let limits = if tight {
            Limits {
                max_details_bytes: 60,
                max_details_depth: 3,
                max_details_keys: 5,
                max_details_key_len: 3,
                max_details_value_len: 6,
                ..Limits::default()
            }
        } else {
            Limits::default()
        };
        let text = v.to_string();
        let (fast, slow) = both(&text, &limits);
        match (fast, slow) {
            (Some(f), Some(Ok(s))) => assert_same(&f, &s),
            (None, Some(Err(_))) => {}
            (f, s) => prop_assert!(false, "paths disagree on {text}: fast {:?}, full {:?}", f.map(|p| p.head), s.map(|r| r.map(|p| p.head))),
        }
    }
}
