use serde_json::{Value, json};

use super::*;

const FULL: &str = r#"{"action":"addProject","actor":{"email":"ann@example.com","id":"u-42","name":"Ann Lee","role":"ORG_ADMIN","type":"USER"},"context":{"ip":"203.0.113.7","user_agent":"Mozilla/5.0"},"details":{"name":"demo"},"id":"e-1","occurred_at":"2026-11-21T10:15:30.123Z","org_id":"acme","outcome":"success","received_at":"2026-11-21T10:15:31.000Z","resource":{"id":"p-123","type":"PROJECT"},"scope":{"id":"my-graph","type":"GRAPH"},"seq":7}"#;

fn record(m: &Mapper, stored: &str) -> Value {
    serde_json::from_str(&m.record(stored).unwrap()).unwrap()
}

#[test]
fn activities_are_guessed_from_action_names() {
    let cases = [
        ("addProject", Activity::Create),
        ("CREATE", Activity::Create),
        ("REGISTER_OPERATION", Activity::Create),
        ("getDetails", Activity::Read),
        ("fabricDetailQuery", Activity::Read),
        ("tableQueryPipeline", Activity::Read),
        ("UPDATE", Activity::Update),
        ("setPassword", Activity::Update),
        ("IMPLEMENTING_SERVICE_UPSERT", Activity::Update),
        ("UNDO_SOFT_DELETE", Activity::Update),
        ("SOFT_DELETE", Activity::Delete),
        ("removeProjectDependency", Activity::Delete),
        ("user.deleted", Activity::Delete),
        ("member_added", Activity::Create),
        ("project.created", Activity::Create),
        ("API_KEY", Activity::Other),
        ("project", Activity::Other),
        ("", Activity::Other),
    ];
    for (action, want) in cases {
        assert_eq!(Activity::guess(action), want, "{action}");
    }
}

#[test]
fn a_declared_activity_wins_over_the_guess() {
    let declared = HashMap::from([("project".to_owned(), Activity::Read)]);
    let m = Mapper::new(declared, "1.0.0");
    assert_eq!(m.activity("project"), Activity::Read);
    assert_eq!(m.activity("addProject"), Activity::Create);
    let r = record(&m, &FULL.replace("addProject", "project"));
    assert_eq!(r["activity_id"], 2);
    assert_eq!(r["type_uid"], 600302);
}

#[test]
fn every_field_maps_and_the_original_is_kept_byte_for_byte() {
    let m = Mapper::new(HashMap::new(), "9.9.9");
    let line = m.record(FULL).unwrap();
    let r: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(r["class_uid"], 6003);
    assert_eq!(r["category_uid"], 6);
    assert_eq!(r["activity_id"], 1);
    assert_eq!(r["activity_name"], "Create");
    assert_eq!(r["type_uid"], 600301);
    assert_eq!(r["severity_id"], 1);
    assert_eq!(r["time"], 1_795_256_130_123_i64);
    assert_eq!(r["status_id"], 1);
    assert_eq!(
        r["metadata"],
        json!({"version": "1.1.0", "product": {"name": "auditrail", "vendor_name": "auditrail", "version": "9.9.9"},
               "uid": "e-1", "sequence": 7, "logged_time": 1_795_256_131_000_i64, "tenant_uid": "acme", "log_name": "audit"})
    );
    assert_eq!(
        r["actor"],
        json!({"user": {"uid": "u-42", "name": "Ann Lee", "email_addr": "ann@example.com", "type_id": 1, "type": "User"}})
    );
    assert_eq!(
        r["api"],
        json!({"operation": "addProject", "request": {"uid": "e-1"}})
    );
    assert_eq!(r["src_endpoint"], json!({"ip": "203.0.113.7"}));
    assert_eq!(r["http_request"], json!({"user_agent": "Mozilla/5.0"}));
    assert_eq!(
        r["resources"],
        json!([{"uid": "p-123", "type": "PROJECT", "name": "p-123"},
               {"uid": "my-graph", "type": "GRAPH", "name": "my-graph", "labels": ["scope"]}])
    );
    // The stored event, exactly as hashed: its leaf can be recomputed from the record.
    let start = line.find("\"unmapped\":").unwrap() + "\"unmapped\":".len();
    assert_eq!(&line[start..line.len() - 1], FULL);
    let text = serde_json::to_value(m.map(FULL, true).unwrap()).unwrap();
    assert_eq!(text["unmapped"], json!({"event": FULL}));
}

#[test]
fn a_minimal_event_still_makes_a_complete_record() {
    let m = Mapper::default();
    let stored = r#"{"action":"API_KEY","id":"e-2","occurred_at":"2026-11-21T10:15:30Z","org_id":"acme","received_at":"2026-11-21T10:15:30Z","seq":1}"#;
    let r = record(&m, stored);
    assert_eq!(r["activity_id"], 99);
    assert_eq!(r["status_id"], 0);
    assert_eq!(r["src_endpoint"], json!({"name": "unknown"}));
    assert_eq!(
        r["actor"]["user"],
        json!({"name": "unknown", "type_id": 0, "type": "Unknown"})
    );
    assert!(r.get("resources").is_none() && r.get("http_request").is_none());
    let api_key = stored.replace(
        r#""action":"API_KEY","#,
        r#""action":"x","actor":{"id":"k-1","type":"API_KEY"},"outcome":"failure","#,
    );
    let r = record(&m, &api_key);
    assert_eq!(
        r["actor"]["user"],
        json!({"uid": "k-1", "name": "k-1", "type_id": 99, "type": "API_KEY"})
    );
    assert_eq!(r["status_id"], 2);
}

#[test]
fn what_is_not_a_stored_event_is_an_error() {
    let m = Mapper::default();
    assert!(m.record("not json").is_err());
    let e = m
        .record(r#"{"action":"a","seq":3,"occurred_at":"x"}"#)
        .unwrap_err();
    assert_eq!(e.seq, 3);
}

#[test]
fn the_exported_line_comes_back_from_a_record() {
    let m = Mapper::default();
    let line = m.record(FULL).unwrap();
    let back = exported_line(&line).unwrap();
    let leaf = crate::merkle::leaf_hash(FULL.as_bytes());
    assert_eq!(back, crate::event::with_leaf_hash(FULL, &leaf));
    assert!(exported_line(r#"{"class_uid":6003}"#).is_err());
}
