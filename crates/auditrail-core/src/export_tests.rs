use serde_json::json;

use serde_json::Value;

use super::*;
use crate::canonical;

fn stored(v: &Value) -> String {
    canonical::to_string(v).unwrap()
}

#[test]
fn apollo_header_is_exact_and_full_adds_four() {
    assert_eq!(
        Layout::Apollo.header().join(","),
        "Timestamp,Action,Resource_ID,Resource_Type,Details,Actor_ID,Actor_Type,Effective_Role,Actor_Email,Actor_Name,Graph_ID"
    );
    assert_eq!(
        Layout::Full.header()[11..],
        ["Seq", "Event_ID", "Received_At", "Leaf_Hash"]
    );
}

#[test]
fn every_formula_prefix_is_neutralized() {
    for p in ["=", "+", "-", "@", "\t", "\r"] {
        let cell = format!("{p}HYPERLINK(\"http://evil\")");
        assert_eq!(neutralize(&cell), format!("'{cell}"));
    }
    for safe in ["", "plain", "a=b", " =x", "'=already", "{\"k\":1}"] {
        assert_eq!(neutralize(safe), safe);
    }
}

#[test]
fn csv_round_trips_through_a_real_reader() {
    let tricky = [
        "comma, inside",
        "quote \" inside",
        "new\nline",
        "crlf\r\ninside",
        "non-ASCII: é 中文 🎉",
        "=1+1",
        "-2",
        "@SUM(A1)",
        "+cmd",
        "\tTAB",
        "\rCR",
    ];
    let mut out = Vec::new();
    let mut enc = CsvEncoder::new(&mut out, Layout::Full).unwrap();
    let mut events = Vec::new();
    for (i, t) in tricky.iter().enumerate() {
        let e = json!({
            "action": t, "actor": {"id": t, "type": "USER", "role": "ORG_ADMIN", "email": "a@x", "name": t},
            "resource": {"type": "PROJECT", "id": t}, "scope": {"id": t, "type": "GRAPH"},
            "details": {"note": t, "n": i}, "id": format!("e{i}"), "org_id": "acme",
            "occurred_at": "2026-11-21T10:00:00.000Z", "received_at": "2026-11-21T10:00:01.000Z", "seq": i + 1
        });
        enc.write(&stored(&e), &[i as u8; 32]).unwrap();
        events.push(e);
    }
    enc.finish().unwrap();
    let mut r = csv::Reader::from_reader(out.as_slice());
    assert_eq!(r.headers().unwrap().len(), 15);
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), tricky.len());
    for (row, (e, t)) in rows.iter().zip(events.iter().zip(tricky)) {
        let expect = neutralize(t).into_owned();
        assert_eq!(&row[1], expect, "Action");
        assert_eq!(&row[2], expect, "Resource_ID");
        assert_eq!(&row[5], expect, "Actor_ID");
        assert_eq!(&row[9], expect, "Actor_Name");
        assert_eq!(&row[10], expect, "Graph_ID");
        assert_eq!(&row[0], "2026-11-21T10:00:00.000Z");
        assert_eq!(&row[3], "PROJECT");
        assert_eq!(&row[7], "ORG_ADMIN");
        let details: Value = serde_json::from_str(&row[4]).unwrap();
        assert_eq!(details, e["details"]);
        assert_eq!(&row[11], e["seq"].to_string());
        assert_eq!(&row[12], e["id"].as_str().unwrap());
        assert_eq!(row[14].len(), 64);
    }
    assert!(
        !String::from_utf8(out.clone()).unwrap().contains("\n=1+1"),
        "no cell starts with a formula"
    );
}

#[test]
fn missing_fields_are_empty_cells() {
    let e = json!({"action": "a", "id": "x", "org_id": "o", "occurred_at": "2026-11-21T10:00:00.000Z", "received_at": "2026-11-21T10:00:00.000Z", "seq": 1});
    let text = stored(&e);
    let row = Row::parse(&text).unwrap();
    let cells = csv_cells(&row, "1", "ab", Layout::Apollo);
    assert_eq!(cells.len(), 11);
    assert_eq!(cells[1], "a");
    assert!(cells[2..].iter().all(|c| c.is_empty()));
    let full = csv_cells(&row, "1", "ab", Layout::Full);
    assert_eq!(full[11..], ["1", "x", "2026-11-21T10:00:00.000Z", "ab"]);
}

#[test]
fn ndjson_lines_rehash_to_their_leaf() {
    let e =
        json!({"action": "a", "id": "x", "org_id": "o", "seq": 1, "details": {"é": "\u{2028}"}});
    let body = stored(&e);
    let leaf = crate::merkle::leaf_hash(body.as_bytes());
    let line = ndjson_line(&body, &leaf);
    assert!(line.ends_with('\n'));
    let mut v: Value = serde_json::from_str(line.trim_end()).unwrap();
    assert_eq!(v["leaf_hash"], hex::encode(leaf));
    v.as_object_mut().unwrap().remove("leaf_hash");
    assert_eq!(crate::merkle::leaf_hash(stored(&v).as_bytes()), leaf);
}
