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

/// Strings read without escapes are copied as they are; strings that had escapes, or
/// whose text needs escaping again, are escaped as the full path escapes them. Both, in
/// every place a string is written: action, object keys and values, details keys,
/// values and nested values, outcome.
#[test]
fn strings_copied_as_read_or_escaped_alike() {
    // Characters JSON lets through raw and canonical JSON leaves raw: U+2028, non-ASCII,
    // a slash, an astral character; and in details, where control characters other
    // than NUL are allowed, DEL.
    let raw = "x\u{2028}é/😀";
    let del = "d\u{7f}\u{2028}é/😀";
    let v = json!({
        "action": raw, "outcome": "success",
        "actor": {"id": raw, "type": "USER", "email": raw},
        "resource": {"type": raw, "id": raw}, "scope": {"type": raw, "id": raw},
        "details": {del: del, "nested": {raw: [del, {del: raw}]}},
        "context": {"note": raw}
    });
    accepted_alike(&v.to_string());
    // The same places with escapes in the text sent: owned strings, escaped again where
    // canonical JSON needs it (quote, backslash; in details also a newline and U+0001)
    // and not where it does not (\u0041, \/).
    let esc = r#"q\"b\\c\u0041\/"#;
    let ctl = r#"q\"b\\\nc\u0001\u0041\/"#;
    let text = format!(
        r#"{{"action":"{esc}","outcome":"success","actor":{{"i\u0064":"{esc}","type":"USER"}},"resource":{{"type":"{esc}","id":"{esc}"}},"details":{{"{ctl}":"{ctl}","n":{{"{esc}":["{ctl}"]}}}},"context":{{"note":"{esc}"}}}}"#
    );
    accepted_alike(&text);
    let (fast, _) = both(&text, &Limits::default());
    let head = fast.expect("accepted above").head;
    assert!(head.contains(r#""action":"q\"b\\cA/""#), "{head}");
    assert!(
        head.contains(r#""q\"b\\\nc\u0001A/":"q\"b\\\nc\u0001A/""#),
        "{head}"
    );
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

/// `prepare_body` on `text` with at most `max` events; ids `gen-0`, `gen-1`, ...
fn body(text: &str, max: usize) -> Option<Vec<PreparedEvent>> {
    let limits = Limits::default();
    let mut made = 0;
    prepare_body(text, &rules(&limits), max, || {
        made += 1;
        format!("gen-{}", made - 1)
    })
}

#[test]
fn a_batch_body_is_each_of_its_events_prepared_alone() {
    let events = [
        json!({"action": "login"}),
        json!({"id": "e-1", "action": "addProject", "actor": {"id": "u-\"1", "type": "USER"},
               "resource": {"type": "PROJECT", "id": "p"}, "details": {"b": 1, "a": [true]}}),
        json!({"action": "logout", "occurred_at": "2026-11-21T10:00:00Z", "outcome": "success"}),
    ];
    let text = json!({"events": events}).to_string();
    let batch = body(&text, 1000).expect("a plain batch is taken");
    assert_eq!(batch.len(), 3);
    let limits = Limits::default();
    for (got, ev) in batch.iter().zip(&events) {
        let alone = prepare(&ev.to_string(), &rules(&limits), || got.id.clone()).unwrap();
        assert_same(got, &alone);
    }
    // Events without an id take the generated ones, in order.
    assert_eq!(batch[0].id, "gen-0");
    assert_eq!(batch[1].id, "e-1");
    assert_eq!(batch[2].id, "gen-1");
    // Ids are made for exactly the events sent without one.
    let mut asked = 0;
    prepare_body(&text, &rules(&limits), 1000, || {
        asked += 1;
        String::new()
    });
    assert_eq!(asked, 2);
    // One event object is a body of one.
    let one = body(&events[1].to_string(), 1000).expect("one event is taken");
    assert_eq!(one.len(), 1);
    assert_same(&one[0], &batch[1]);
}

#[test]
fn a_body_the_fast_path_cannot_take_whole_is_declined() {
    let ok = json!({"action": "a"});
    for text in [
        json!({"events": []}).to_string(),
        json!({"events": [ok, ok, ok]}).to_string(), // over the cap of 2 below
        json!({"events": [ok], "extra": 1}).to_string(),
        json!({"events": [ok, {"action": "a", "unknown": 1}]}).to_string(),
        json!({"events": [ok, {"action": ""}]}).to_string(),
        json!({"events": [ok, "not an object"]}).to_string(),
        json!({"events": ok}).to_string(),
        json!([ok]).to_string(),
        json!([[ok]]).to_string(),
        "{\"events\": [{\"action\": \"a\"}]".to_owned(),
        "{\"events\": [{\"action\": \"a\"}]} x".to_owned(),
        "{\"events\": [{\"action\": \"a\"}], \"events\": [{\"action\": \"a\"}]}".to_owned(),
        "{\"extra\": 1, \"events\": [{\"action\": \"a\"}]}".to_owned(),
        "  ".to_owned(),
    ] {
        assert!(body(&text, 2).is_none(), "fast path took {text}");
    }
    assert_eq!(
        body(&json!({"events": [ok, ok]}).to_string(), 2).map(|v| v.len()),
        Some(2)
    );
}

#[test]
fn a_batch_of_more_events_than_its_first_guess_keeps_them_all_in_order() {
    // Fourteen-byte events: more than one for every 64 bytes of the body.
    let events: Vec<Value> = (0..300)
        .map(|i| json!({"action": format!("a{i}")}))
        .collect();
    let text = json!({"events": events}).to_string();
    assert!(text.len() / 64 < 300);
    let batch = body(&text, 1000).expect("a plain batch is taken");
    assert_eq!(batch.len(), 300);
    for (i, ev) in batch.iter().enumerate() {
        assert_eq!(ev.terms.action, format!("a{i}"));
        assert_eq!(ev.id, format!("gen-{i}"));
    }
    assert_eq!(body(&text, 299).map(|v| v.len()), None);
    assert_eq!(body(&text, 300).map(|v| v.len()), Some(300));
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

#[test]
fn fields_write_canonically_however_many_and_in_any_order() {
    for n in [0usize, 1, 3, 16, 17, 40] {
        // Names in reverse order, a null every third member, one non-ASCII name.
        let names: Vec<String> = (0..n)
            .rev()
            .map(|i| {
                if i == 5 {
                    "é".into()
                } else {
                    format!("k{i:02}")
                }
            })
            .collect();
        let fields = Fields(
            names
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    let v = (i % 3 != 2).then(|| Cow::Owned(format!("v\"{i}")));
                    (Cow::Borrowed(k.as_str()), v)
                })
                .collect(),
        );
        let expected: serde_json::Map<String, Value> = fields
            .0
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_string(), json!(v))))
            .collect();
        let expected = crate::canonical::to_string(&Value::Object(expected)).unwrap();
        let (mut fast, mut many) = (String::new(), String::new());
        fields.write(&mut fast);
        fields.write_many(&mut many);
        assert_eq!(fast, expected, "{n} members");
        assert_eq!(many, expected, "{n} members");
    }
}
