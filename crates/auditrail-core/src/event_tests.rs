use super::*;
use serde_json::json;

pub(super) fn now() -> DateTime<Utc> {
    time::parse_rfc3339("2026-11-21T10:30:00Z").unwrap()
}

pub(super) fn rules(limits: &Limits) -> Rules<'_> {
    Rules {
        org_id: "acme",
        now: now(),
        limits,
        catalog: None,
    }
}

fn ok(v: Value) -> PreparedEvent {
    prepare(&v, Some(0), &rules(&Limits::default()), || "01JGEN".into()).unwrap()
}

fn errs(v: Value) -> Vec<FieldError> {
    prepare(&v, Some(3), &rules(&Limits::default()), || "01JGEN".into()).unwrap_err()
}

#[test]
fn assembles_the_canonical_stored_event() {
    let p = ok(json!({
        "id": "e-1", "occurred_at": "2026-11-21T11:15:30.123+01:00", "action": "addProject",
        "resource": {"type": "PROJECT", "id": "p-123"},
        "actor": {"id": "u-42", "type": "USER", "email": "ann@example.com"},
        "scope": {"type": "GRAPH", "id": "g"}, "details": {"name": "demo", "a": [1, 2.50]},
        "context": {"ip": "203.0.113.7"}, "outcome": "success"
    }));
    let stored = p.assemble(1_700_000_000_123, 7);
    // Assembly must be exactly what a generic JCS implementation makes of the whole event.
    let reparsed: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(canonical::to_string(&reparsed).unwrap(), stored);
    assert_eq!(reparsed["seq"], 7);
    assert_eq!(reparsed["received_at"], "2023-11-14T22:13:20.123Z");
    assert_eq!(reparsed["occurred_at"], "2026-11-21T10:15:30.123Z");
    assert_eq!(reparsed["org_id"], "acme");
    assert_eq!(p.client_id.as_deref(), Some("e-1"));
    assert_eq!(p.terms.actor_id.as_deref(), Some("u-42"));
    assert_eq!(p.terms.scope_id.as_deref(), Some("g"));
}

#[test]
fn minimal_event_gets_defaults() {
    let p = ok(json!({"action": "login"}));
    let stored = p.assemble(0, 1);
    assert_eq!(
        stored,
        r#"{"action":"login","id":"01JGEN","occurred_at":"2026-11-21T10:30:00Z","org_id":"acme","received_at":"1970-01-01T00:00:00.000Z","seq":1}"#
    );
    assert_eq!(p.client_id, None);
}

#[test]
fn leaf_hash_is_appended_for_clients() {
    let s = with_leaf_hash(r#"{"a":1}"#, &[0xab; 32]);
    assert!(s.starts_with(r#"{"a":1,"leaf_hash":"abab"#));
}

#[test]
fn errors_name_every_field() {
    let e = errs(json!({
        "action": "", "id": "x".repeat(257), "seq": 4, "actor": {"type": "ROBOT", "x": "y"},
        "occurred_at": "yesterday", "context": {"ip": "nope"}, "outcome": "maybe", "details": []
    }));
    let fields: Vec<&str> = e.iter().map(|f| f.field.as_str()).collect();
    for f in [
        "action",
        "id",
        "seq",
        "actor.x",
        "occurred_at",
        "context.ip",
        "outcome",
        "details",
    ] {
        assert!(fields.contains(&f), "{f} missing from {fields:?}");
    }
    assert!(e.iter().all(|f| f.index == Some(3)));
}

#[test]
fn action_is_required_and_future_is_bounded() {
    assert_eq!(errs(json!({"id": "a"}))[0].field, "action");
    let e = errs(json!({"action": "a", "occurred_at": "2026-11-21T10:36:00Z"}));
    assert_eq!(e[0].field, "occurred_at");
    ok(json!({"action": "a", "occurred_at": "2026-11-21T10:34:00Z"}));
}

#[test]
fn details_limits() {
    let mut deep = json!("x");
    for _ in 0..8 {
        deep = json!({ "k": deep });
    }
    assert!(
        errs(json!({"action": "a", "details": deep}))[0]
            .reason
            .contains("nests")
    );
    let big: serde_json::Map<String, Value> = (0..5)
        .map(|i| (format!("k{i}"), json!("x".repeat(7000))))
        .collect();
    let e = errs(json!({"action": "a", "details": big}));
    assert_eq!(e.len(), 1);
    assert!(e[0].reason.contains("bytes"));
    let nul = json!({"action": "a", "details": {"k": "a\u{0}b"}});
    assert!(errs(nul)[0].reason.contains("NUL"));
    let huge = json!({"action": "a", "details": {"n": 9007199254740993u64}});
    assert!(errs(huge)[0].reason.contains("2^53"));
}

#[test]
fn nulls_mean_absent() {
    let p = ok(json!({"action": "a", "scope": null, "actor": {"id": "u", "email": null}}));
    assert!(!p.mid.contains("scope"));
    assert!(!p.head.contains("email"));
}

#[test]
fn finish_hashes_like_the_whole_text() {
    let p = ok(
        json!({"action": "a", "actor": {"id": "u"}, "scope": {"id": "s"}, "details": {"x": [1, "é"]}}),
    );
    let (body, leaf) = p.finish(1_700_000_000_000, 9);
    assert_eq!(body, p.assemble(1_700_000_000_000, 9));
    assert_eq!(leaf, crate::merkle::leaf_hash(body.as_bytes()));
    // A reused buffer gives the same, whatever it held; every seq's digits are written.
    let mut buf = "left over from an earlier event".to_owned();
    for seq in [0, 1, 9, 10, 4096, 1 << 53, u64::MAX] {
        let leaf = p.finish_into("2026-11-21T10:00:00.000Z", seq, &mut buf);
        assert_eq!(buf, p.assemble_at("2026-11-21T10:00:00.000Z", seq));
        assert!(buf.ends_with(&format!(",\"seq\":{seq}}}")), "{buf}");
        assert_eq!(leaf, crate::merkle::leaf_hash(buf.as_bytes()));
    }
}

#[test]
fn details_limits_name_the_field_and_never_echo_the_value() {
    let limits = Limits {
        max_details_keys: 4,
        max_details_key_len: 8,
        max_details_value_len: 10,
        ..Limits::default()
    };
    let e = prepare(
        &json!({"action": "a", "details": {"ok": "fine", "n": {"long": "0123456789-secret"}, "averyveryverylongkey": 1}}),
        Some(2),
        &rules(&limits),
        || "x".into(),
    )
    .unwrap_err();
    let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
    assert!(fields.contains(&"details.n.long"), "{fields:?}");
    assert!(
        fields.contains(&"details.averyveryverylongkey…"),
        "{fields:?}"
    );
    assert!(!format!("{e:?}").contains("secret"));
    assert!(e.iter().all(|e| e.index == Some(2)));

    let e = prepare(
        &json!({"action": "a", "details": {"a": 1, "b": 2, "c": {"d": 3, "e": 4}}}),
        None,
        &rules(&limits),
        || "x".into(),
    )
    .unwrap_err();
    assert_eq!(e[0].field, "details");
    assert!(e[0].reason.contains("5 keys"), "{}", e[0].reason);

    let e = prepare(
        &json!({"action": "a", "details": {"list": ["short", "far too long a value"]}}),
        None,
        &rules(&limits),
        || "x".into(),
    )
    .unwrap_err();
    assert_eq!(e[0].field, "details.list[1]");
}

#[test]
fn a_catalog_tags_the_event_and_redacts_before_hashing() {
    let cat = crate::catalog::builtin("prophecy").unwrap();
    let limits = Limits::default();
    let policy = crate::catalog::Policy {
        catalog: &cat,
        version: 3,
        strict: true,
        hmac_key: &[1; 32],
    };
    let r = Rules {
        catalog: Some(policy),
        ..rules(&limits)
    };
    let p = prepare(
        &json!({"action": "setPassword", "resource": {"type": "USER", "id": "u1"},
                "details": {"uid": "u1", "newPassword": "correct horse"}}),
        None,
        &r,
        || "01JGEN".into(),
    )
    .unwrap();
    let (body, leaf) = p.finish(1_795_000_000_000, 9);
    assert!(body.contains(r#""catalog_version":3"#), "{body}");
    assert!(body.contains(r#""newPassword":"[REDACTED]""#), "{body}");
    assert!(!body.contains("correct horse"));
    // The leaf is the hash of exactly what is stored.
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        leaf,
        crate::merkle::leaf_hash(crate::canonical::to_string(&v).unwrap().as_bytes())
    );

    let e = prepare(&json!({"action": "nope"}), Some(1), &r, || "x".into()).unwrap_err();
    assert_eq!((e[0].index, e[0].field.as_str()), (Some(1), "action"));

    let lenient = Rules {
        catalog: Some(crate::catalog::Policy {
            strict: false,
            ..policy
        }),
        ..rules(&limits)
    };
    let p = prepare(&json!({"action": "nope"}), None, &lenient, || "x".into()).unwrap();
    assert!(p.unknown_action);
    assert!(p.finish(0, 1).0.contains(r#""catalog_version":3"#));
}

/// Texts are measured in characters and refuse control characters, ASCII or not, found
/// in the one pass over their bytes or, past ASCII, over their characters.
#[test]
fn text_checks_count_characters_and_refuse_controls() {
    for ok in ["a", "abc", "é", "日本", "x\u{2028}y", "😀"] {
        assert_eq!(text_reason(ok, 1, 3), Ok(()), "{ok:?}");
    }
    // Length in characters, not bytes: "日本語" is 9 bytes, 3 characters.
    assert_eq!(text_reason("日本語", 1, 3), Ok(()));
    assert!(text_reason("日本語x", 1, 3).unwrap_err().contains("got 4"));
    assert!(text_reason("", 1, 3).unwrap_err().contains("got 0"));
    assert!(text_reason("abcd", 1, 3).unwrap_err().contains("got 4"));
    for bad in [
        "a\u{0}", "\u{1f}", "a\tb", "\u{7f}", "é\u{7f}", "é\n", "a\u{85}", "\u{9f}",
    ] {
        assert_eq!(
            text_reason(bad, 0, 10),
            Err("must not contain control characters".into()),
            "{bad:?}"
        );
    }
}
