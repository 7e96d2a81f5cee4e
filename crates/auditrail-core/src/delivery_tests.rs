use super::*;
use crate::merkle::frontier_ids;
use crate::note::{NoteSigner, origin_for};

fn signer() -> NoteSigner {
    NoteSigner::new("auditrail.test", [9u8; 32]).unwrap()
}

/// The NDJSON line of seq `seq`, and its leaf.
fn line(seq: u64) -> (String, Hash) {
    let body = format!(
        r#"{{"action":"a{seq}","id":"e{seq}","org":"acme","received_at":"2026-11-0{}T10:00:00.000000Z","seq":{seq}}}"#,
        1 + seq / 4
    );
    let leaf = leaf_hash(body.as_bytes());
    let l = format!(
        "{},\"leaf_hash\":\"{}\"}}",
        &body[..body.len() - 1],
        hex::encode(leaf)
    );
    (l, leaf)
}

fn note(size: u64) -> String {
    let mut t = Frontier::new();
    for s in 1..=size {
        t.push(line(s).1, |_, _| {});
    }
    let cp = Checkpoint {
        origin: origin_for("auditrail.test", "acme"),
        size,
        root: t.root(),
    };
    signer().sign(&cp.body()).unwrap()
}

fn lines(first: u64, last: u64) -> Vec<String> {
    (first..=last).map(|s| line(s).0).collect()
}

fn verifier() -> OrgVerifier {
    OrgVerifier::new(
        "acme",
        Some(NoteVerifier::parse(&signer().verifier_key()).unwrap()),
    )
}

fn feed(
    v: &mut OrgVerifier,
    name: &str,
    first: u64,
    last: u64,
    ls: &[String],
) -> Result<(), VerifyError> {
    let date = format!("2026-11-0{}", 1 + first / 4);
    v.ndjson_object(name, &date, first, last, ls.iter().map(String::as_str))
}

#[test]
fn keys_round_trip_through_classify() {
    let k = object_key(
        "logs/prod",
        "acme",
        "2026-11-21",
        1,
        42,
        ObjectFormat::NdjsonGz,
    );
    assert_eq!(
        k,
        "logs/prod/org=acme/dt=2026-11-21/acme-00000000000000000001-00000000000000000042.ndjson.gz"
    );
    let rel = k.strip_prefix("logs/prod/").unwrap();
    assert_eq!(
        classify(rel),
        Some(Entry::Object {
            org: "acme".into(),
            date: "2026-11-21".into(),
            first: 1,
            last: 42,
            format: ObjectFormat::NdjsonGz
        })
    );
    assert_eq!(
        object_key("", "a", "2026-01-01", 3, 3, ObjectFormat::Parquet),
        "org=a/dt=2026-01-01/a-00000000000000000003-00000000000000000003.parquet"
    );
    let c = checkpoint_key("", "acme", 42);
    assert_eq!(
        classify(&c),
        Some(Entry::Checkpoint {
            org: "acme".into(),
            size: 42
        })
    );
    assert_eq!(
        classify(&frontier_key("", "acme", 7)),
        Some(Entry::Frontier {
            org: "acme".into(),
            size: 7
        })
    );
    assert_eq!(
        classify(
            &format!("{}/checkpoint", tlog_dir("", "acme")).replacen("org=acme", "org=acme", 1)
        ),
        Some(Entry::TlogCheckpoint { org: "acme".into() })
    );
    assert_eq!(
        classify("org=acme/_tlog/tile/entries/x001/002.p/7"),
        Some(Entry::Tile {
            org: "acme".into(),
            tile: crate::tiles::Tile {
                kind: crate::tiles::Kind::Entries,
                index: 1002,
                width: 7
            }
        })
    );
    for bad in [
        "org=acme/_tlog/tile/0/1",
        "org=acme/_tlog/notes",
        "org=acme/dt=2026-11-21/acme-1-2.ndjson.gz",
        "org=acme/dt=2026-11-21/other-00000000000000000001-00000000000000000002.ndjson.gz",
        "org=acme/dt=2026-11-21/acme-00000000000000000003-00000000000000000002.ndjson.gz",
        "org=acme/dt=2026-11-21/acme-00000000000000000001-00000000000000000002.json",
        "org=acme/dt=yesterday/acme-00000000000000000001-00000000000000000002.csv.gz",
        "org=acme/_checkpoints/42.note",
        "org=acme/notes.txt",
        "acme/dt=2026-11-21/acme-00000000000000000001-00000000000000000002.csv.gz",
    ] {
        assert_eq!(classify(bad), None, "{bad}");
    }
    assert_eq!(date_of("2026-11-21T10:00:00Z"), Some("2026-11-21"));
    assert_eq!(date_of("2026/11/21"), None);
}

#[test]
fn an_intact_log_verifies_and_names_its_root() {
    let mut v = verifier();
    for size in [3, 7] {
        v.add_checkpoint("cp", size, &note(size)).unwrap();
    }
    feed(&mut v, "a", 1, 3, &lines(1, 3)).unwrap();
    feed(&mut v, "b", 4, 7, &lines(4, 7)).unwrap();
    let done = v.finish().unwrap();
    assert_eq!(
        (done.size, done.objects, done.checkpoints, done.first_seq),
        (7, 2, 2, 1)
    );
}

#[test]
fn an_altered_line_is_named_by_object_and_seq() {
    let mut v = verifier();
    v.add_checkpoint("cp", 3, &note(3)).unwrap();
    let mut ls = lines(1, 3);
    ls[1] = ls[1].replace("\"a2\"", "\"a9\"");
    let e = feed(&mut v, "obj-1", 1, 3, &ls).unwrap_err();
    assert_eq!((e.object.as_str(), e.seq), ("obj-1", Some(2)));
    assert!(e.reason.contains("does not match"), "{e}");

    // Altered consistently (leaf_hash recomputed too): the signed root catches it.
    let mut v = verifier();
    v.add_checkpoint("cp-3", 3, &note(3)).unwrap();
    let mut ls = lines(1, 3);
    let forged = r#"{"action":"forged","id":"e2","org":"acme","received_at":"2026-11-01T10:00:00.000000Z","seq":2}"#;
    ls[1] = format!(
        "{},\"leaf_hash\":\"{}\"}}",
        &forged[..forged.len() - 1],
        hex::encode(leaf_hash(forged.as_bytes()))
    );
    let e = feed(&mut v, "obj-1", 1, 3, &ls).unwrap_err();
    assert_eq!(e.seq, Some(3));
    assert!(e.reason.contains("cp-3"), "{e}");
}

#[test]
fn gaps_overlaps_and_short_objects_are_found() {
    let mut v = verifier();
    feed(&mut v, "a", 1, 3, &lines(1, 3)).unwrap();
    let e = feed(&mut v, "c", 6, 7, &lines(6, 7)).unwrap_err();
    assert_eq!(
        (e.seq, e.reason.as_str()),
        (Some(4), "seqs 4..5 are missing")
    );
    let e = feed(&mut v, "dup", 3, 5, &lines(3, 5)).unwrap_err();
    assert!(e.reason.starts_with("overlaps"), "{e}");
    let e = feed(&mut v, "short", 4, 6, &lines(4, 5)).unwrap_err();
    assert_eq!((e.object.as_str(), e.seq), ("short", Some(6)));
}

#[test]
fn a_missing_tail_or_an_uncovered_tail_fails_finish() {
    // A checkpoint signs more than the bucket holds: the last object was deleted.
    let mut v = verifier();
    v.add_checkpoint("cp-3", 3, &note(3)).unwrap();
    v.add_checkpoint("cp-7", 7, &note(7)).unwrap();
    feed(&mut v, "a", 1, 3, &lines(1, 3)).unwrap();
    let e = v.finish().unwrap_err();
    assert_eq!((e.object.as_str(), e.seq), ("cp-7", Some(4)));

    // Objects after the last checkpoint are not proven.
    let mut v = verifier();
    v.add_checkpoint("cp-3", 3, &note(3)).unwrap();
    feed(&mut v, "a", 1, 3, &lines(1, 3)).unwrap();
    feed(&mut v, "b", 4, 5, &lines(4, 5)).unwrap();
    assert_eq!(v.finish().unwrap_err().seq, Some(4));
}

#[test]
fn checkpoints_need_the_right_key_size_and_org() {
    let mut v = verifier();
    let other = NoteSigner::new("auditrail.test", [1u8; 32]).unwrap();
    let cp = Checkpoint {
        origin: origin_for("auditrail.test", "acme"),
        size: 3,
        root: [0; 32],
    };
    let forged = other.sign(&cp.body()).unwrap();
    assert!(
        v.add_checkpoint("x", 3, &forged)
            .unwrap_err()
            .reason
            .starts_with("signature")
    );
    assert!(v.add_checkpoint("x", 4, &note(3)).is_err());
    let mut globex = OrgVerifier::new("globex", None);
    assert!(
        globex
            .add_checkpoint("x", 3, &note(3))
            .unwrap_err()
            .reason
            .contains("not org globex")
    );
}

#[test]
fn delivery_can_start_from_a_frontier() {
    let mut t = Frontier::new();
    for s in 1..=5 {
        t.push(line(s).1, |_, _| {});
    }
    // The hashes of frontier_ids(5), as the server reads them from its tree.
    let mut hashes = Vec::new();
    for id in frontier_ids(5) {
        let width = 1u64 << id.level;
        let mut sub = Frontier::new();
        for s in id.index * width + 1..=(id.index + 1) * width {
            sub.push(line(s).1, |_, _| {});
        }
        hashes.push(hex::encode(sub.root()));
    }
    let file = FrontierFile { size: 5, hashes };
    let mut v = verifier();
    v.add_checkpoint("cp", 9, &note(9)).unwrap();
    v.start_from("f", &file).unwrap();
    feed(&mut v, "b", 6, 9, &lines(6, 9)).unwrap();
    let done = v.finish().unwrap();
    assert_eq!((done.first_seq, done.size, done.checkpoints), (6, 9, 1));
}

#[test]
fn ocsf_objects_and_the_security_lake_layout() {
    let k = object_key("logs", "acme", "2026-11-21", 1, 9, ObjectFormat::Ocsf);
    assert_eq!(
        k,
        "logs/org=acme/dt=2026-11-21/acme-00000000000000000001-00000000000000000009.ocsf.json.gz"
    );
    let rel = k.strip_prefix("logs/").unwrap();
    assert!(matches!(
        classify(rel),
        Some(Entry::Object {
            format: ObjectFormat::Ocsf,
            first: 1,
            last: 9,
            ..
        })
    ));
    assert_eq!(
        ObjectFormat::parse("ocsf_parquet"),
        Some(ObjectFormat::OcsfParquet)
    );
    assert_eq!(ObjectFormat::parse("ocsf.parquet"), None);
    assert_eq!(
        security_lake_key(
            "auditrail",
            "us-east-1",
            "123456789012",
            "2026-11-21",
            "acme",
            1,
            2
        ),
        "ext/auditrail/region=us-east-1/accountId=123456789012/eventDay=20261121/acme-00000000000000000001-00000000000000000002.ocsf.parquet"
    );
    assert_eq!(
        security_lake_prefix("auditrail"),
        "ext/auditrail/_auditrail"
    );
}

#[test]
fn security_lake_keys_classify_back() {
    let k = security_lake_key(
        "src",
        "us-east-1",
        "123456789012",
        "2026-11-21",
        "my-org",
        3,
        9,
    );
    let rel = k.strip_prefix("ext/src/").unwrap();
    assert_eq!(
        classify_security_lake(rel),
        Some(Entry::Object {
            org: "my-org".into(),
            date: "2026-11-21".into(),
            first: 3,
            last: 9,
            format: ObjectFormat::OcsfParquet
        })
    );
    assert_eq!(
        classify_security_lake("_auditrail/org=my-org/_checkpoints/00000000000000000009.note"),
        Some(Entry::Checkpoint {
            org: "my-org".into(),
            size: 9
        })
    );
    for bad in [
        "region=x/accountId=1/eventDay=2026112/o-00000000000000000001-00000000000000000002.ocsf.parquet",
        "region=x/accountId=1/eventDay=20261121/o-00000000000000000001-00000000000000000002.parquet",
        "region=x/eventDay=20261121/o-00000000000000000001-00000000000000000002.ocsf.parquet",
        "other/file",
    ] {
        assert_eq!(classify_security_lake(bad), None, "{bad}");
    }
}
