use super::*;
use serde_json::json;

fn now() -> DateTime<Utc> {
    time::parse_rfc3339("2026-11-21T10:30:00Z").unwrap()
}

fn ok(v: Value) -> PreparedEvent {
    prepare(&v, Some(0), "acme", now(), &Limits::default(), || {
        "01JGEN".into()
    })
    .unwrap()
}

fn errs(v: Value) -> Vec<FieldError> {
    prepare(&v, Some(3), "acme", now(), &Limits::default(), || {
        "01JGEN".into()
    })
    .unwrap_err()
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
    let big = json!({"action": "a", "details": {"k": "x".repeat(33 * 1024)}});
    assert!(errs(big)[0].reason.contains("bytes"));
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
}
