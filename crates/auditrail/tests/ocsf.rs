//! OCSF output, checked by tools nobody here wrote: every record of an export (JSON lines
//! and Parquet), of an S3 destination in Amazon Security Lake's layout, and of a push
//! stream is validated against OCSF 1.1.0's API Activity class (the `ocsf-json-schema`
//! package's JSON Schema, `jsonschema`), and the Parquet is read back by DuckDB with Hive
//! partitioning, as Security Lake's query engines read a custom source.
#![allow(clippy::unwrap_used, reason = "a panic is a failed test")]

mod common;

use std::path::Path;
use std::time::Duration;

use auditrail_s3_dev::DevS3;
use common::receivers::{Kind, Receiver, every_seq_in_order};
use common::{ADMIN, TestServer, independent_leaf};
use futures_util::TryStreamExt;
use object_store::aws::AmazonS3;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::{Value, json};

const AK: &str = "AKIDEVTESTKEY0001";
const SK: &str = "dev-test-secret-key";
const BUCKET: &str = "lake";
const VALIDATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ocsf/validate.py");

/// Whether Python has the OCSF schema, `jsonschema` and DuckDB; a test that finds them
/// missing fails under `AUDITRAIL_REQUIRE_OCSF` (as in CI) and is skipped otherwise.
fn tools() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import ocsf_json_schema, jsonschema, duckdb"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("AUDITRAIL_REQUIRE_OCSF").is_none(),
            "python3 with ocsf-json-schema, jsonschema and duckdb is required"
        );
        eprintln!("skipped: pip install ocsf-json-schema jsonschema duckdb");
    }
    ok
}

/// Runs the independent validator; its summary (count, seqs, activities, partitions).
fn validate(args: &[&str]) -> Value {
    let out = std::process::Command::new("python3")
        .arg(VALIDATE)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "OCSF validation failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

const CATALOG: &str = r#"
name = "ocsf-test"
[options]
details = "open"
[resource_types.PROJECT]
[resource_types.USER]
[resource_types.GRAPH]
[actions.addProject]
[actions.project]
activity = "read"
[actions.setPassword]
[actions.deleteUser]
[actions.API_KEY]
activity = "delete"
[actions.rotateSomething]
"#;

/// The OCSF activity each action must map to, decided here from the catalog above and
/// OCSF's activity ids (create 1, read 2, update 3, delete 4, other 99).
/// `None` for actions auditrail records itself (keys, destinations, exports).
fn expected_activity(action: &str) -> Option<u64> {
    Some(match action {
        "addProject" => 1,
        "project" => 2, // declared
        "setPassword" => 3,
        "deleteUser" | "API_KEY" => 4, // API_KEY declared
        "rotateSomething" => 99,
        _ => return None,
    })
}

async fn put_catalog(srv: &TestServer, org: &str) {
    let r = srv
        .http
        .put(format!("{}/v1/orgs/{org}/catalog", srv.base))
        .bearer_auth(ADMIN)
        .header("content-type", "application/toml")
        .body(CATALOG)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert!(
        status == 200 || status == 201,
        "{}",
        r.text().await.unwrap()
    );
}

/// Events of every shape the mapping distinguishes: with and without actor, context,
/// scope and outcome; each action of the catalog.
fn events(n: usize, tag: &str) -> Vec<Value> {
    let actions = [
        "addProject",
        "project",
        "setPassword",
        "deleteUser",
        "API_KEY",
        "rotateSomething",
    ];
    (0..n)
        .map(|i| {
            let action = actions[i % actions.len()];
            let mut e = json!({"action": action, "id": format!("{tag}-{i}")});
            if i % 3 != 2 {
                e["actor"] = json!({"id": format!("u-{i}"), "type": if i % 2 == 0 { "USER" } else { "API_KEY" },
                                    "email": "ann@example.com", "name": "Ann Lee"});
            }
            if i % 2 == 0 {
                e["context"] = json!({"ip": if i % 4 == 0 { "203.0.113.7" } else { "2001:db8::1" }, "user_agent": "curl/8"});
            }
            if i % 5 != 4 {
                e["resource"] = json!({"type": "PROJECT", "id": format!("p-{i}")});
                e["scope"] = json!({"type": "GRAPH", "id": "g-1"});
            }
            if i % 4 != 3 {
                e["outcome"] = json!(if i % 7 == 0 { "failure" } else { "success" });
            }
            e["details"] = json!({"n": i});
            e
        })
        .collect()
}

async fn ingest(srv: &TestServer, token: &str, evs: Vec<Value>) {
    let (s, b) = srv.post("/v1/events", token, json!({"events": evs})).await;
    assert_eq!(s, 200, "{b}");
}

/// Midnight UTC `offset` days from today.
fn day(offset: i64) -> String {
    let d = chrono::Utc::now().date_naive() + chrono::Duration::days(offset);
    format!("{d}T00:00:00Z")
}

async fn export_file(srv: &TestServer, token: &str, format: &str, to: &Path) -> Value {
    let (s, b) = srv
        .post(
            "/v1/exports",
            token,
            json!({"from": day(-1), "to": day(1), "format": format}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let id = b["id"].as_str().unwrap().to_owned();
    let job = common::export_done(srv, token, &id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let (status, bytes) = common::export_file(srv, token, &id).await;
    assert_eq!(status, 200);
    std::fs::write(to, bytes).unwrap();
    job
}

/// The stored events (`leaf_hash` removed), in seq order, up to seq `upto`.
async fn stored(srv: &TestServer, token: &str, upto: u64) -> Vec<Value> {
    let mut all = srv.all_events(token).await;
    all.sort_by_key(|e| e["seq"].as_u64().unwrap());
    all.retain(|e| e["seq"].as_u64().unwrap() <= upto);
    for e in &mut all {
        e.as_object_mut().unwrap().remove("leaf_hash");
    }
    all
}

fn seqs(v: &Value) -> Vec<u64> {
    v["seqs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_in_ocsf_are_valid_records_and_their_parquet_reads_back_in_duckdb() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let srv = TestServer::start(dir.path()).await;
    srv.create_org("acme").await;
    put_catalog(&srv, "acme").await;
    let admin = srv.key("acme", "admin").await;
    ingest(&srv, &admin, events(60, "x")).await;

    let jsonl = dir.path().join("export.ocsf.jsonl");
    let job = export_file(&srv, &admin, "ocsf", &jsonl).await;
    let rows = job["row_count"].as_u64().unwrap();
    assert!(rows >= 60, "{job}");
    let report = validate(&["jsonl", jsonl.to_str().unwrap()]);
    assert_eq!(report["count"], rows);
    assert_eq!(seqs(&report), (1..=rows).collect::<Vec<_>>());

    // Each record carries its event exactly as stored, and the activity its action
    // maps to; records read independently of the validator.
    let want = stored(&srv, &admin, rows).await;
    let text = std::fs::read_to_string(&jsonl).unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (r, e) in records.iter().zip(&want) {
        assert_eq!(&r["unmapped"], e);
        let action = e["action"].as_str().unwrap();
        if let Some(a) = expected_activity(action) {
            assert_eq!(r["activity_id"], a, "{action}");
        }
        assert_eq!(r["api"]["operation"], action);
        assert_eq!(r["metadata"]["uid"], e["id"]);
        assert_eq!(r["metadata"]["tenant_uid"], "acme");
        match e["outcome"].as_str() {
            Some("success") => assert_eq!(r["status_id"], 1),
            Some("failure") => assert_eq!(r["status_id"], 2),
            _ => assert_eq!(r["status_id"], 0),
        }
        assert_eq!(r["src_endpoint"]["ip"], e["context"]["ip"]);
        assert_eq!(r["actor"]["user"]["uid"], e["actor"]["id"]);
    }

    let parquet = dir.path().join("export.ocsf.parquet");
    let job = export_file(&srv, &admin, "ocsf_parquet", &parquet).await;
    let rows = job["row_count"].as_u64().unwrap();
    let report = validate(&["parquet", parquet.to_str().unwrap()]);
    assert_eq!(report["count"], rows);
    assert_eq!(seqs(&report), (1..=rows).collect::<Vec<_>>());
    let want = stored(&srv, &admin, rows).await;
    for (text, e) in report["events"].as_array().unwrap().iter().zip(&want) {
        let back: Value = serde_json::from_str(text.as_str().unwrap()).unwrap();
        assert_eq!(&back, e);
    }
    srv.stop().await;
}

fn client(endpoint: &str) -> AmazonS3 {
    common::s3_client(endpoint, BUCKET, AK, SK)
}

/// Copies every object under `prefix` into `into`, keeping the keys as paths.
async fn download(endpoint: &str, prefix: &str, into: &Path) -> Vec<String> {
    let c = client(endpoint);
    let metas: Vec<_> = c
        .list(Some(&object_store::path::Path::from(prefix)))
        .try_collect()
        .await
        .unwrap();
    let mut keys = Vec::new();
    for m in metas {
        let key = m.location.to_string();
        let b = c.get(&m.location).await.unwrap().bytes().await.unwrap();
        let path = into.join(&key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b).unwrap();
        keys.push(key);
    }
    keys.sort();
    keys
}

async fn put_destination(srv: &TestServer, token: &str, name: &str, body: Value) -> (u16, Value) {
    let path = format!("/v1/destinations/{name}");
    srv.call("PUT", &path, token, Some(body)).await
}

fn verify(target: &str, endpoint: &str, key: &str) -> (bool, String) {
    common::verify_s3(target, endpoint, key, AK, SK)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_lake_layout_and_ocsf_objects_in_a_bucket_and_a_push_stream() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bucket_dir = tempfile::tempdir().unwrap();
    let s3 = DevS3::start(bucket_dir.path(), "127.0.0.1:0".parse().unwrap(), AK, SK)
        .await
        .unwrap();
    s3.create_bucket(BUCKET).unwrap();
    let ep = s3.endpoint();
    let srv = TestServer::start_custom(dir.path(), |s| {
        s.delivery.poll = Duration::from_millis(50);
    })
    .await;
    srv.create_org("acme").await;
    put_catalog(&srv, "acme").await;
    let admin = srv.key("acme", "admin").await;
    let creds = json!({"access_key_id": AK, "secret_access_key": SK});
    let put = |name: &'static str, body: Value| put_destination(&srv, &admin, name, body);

    // Bad Security Lake settings are refused by field, and nothing is created.
    let lake = json!({"kind": "s3", "bucket": BUCKET, "endpoint": ep, "credentials": creds,
                      "layout": "security_lake", "source_name": "auditrail",
                      "account_id": "123456789012", "max_batch_seconds": 1, "max_batch_events": 50});
    for (change, field) in [
        (json!({"format": "csv.gz"}), "format"),
        (json!({"prefix": "logs"}), "prefix"),
        (json!({"account_id": "1234"}), "account_id"),
        (json!({"account_id": null}), "account_id"),
        (json!({"source_name": "no spaces"}), "source_name"),
        (json!({"layout": "hive"}), "layout"),
    ] {
        let mut body = lake.clone();
        for (k, v) in change.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        let (s, b) = put("lake", body).await;
        assert_eq!(s, 422, "{b}");
        assert_eq!(b["error"]["details"][0]["field"], field, "{b}");
    }
    let (s, b) = put(
        "lake",
        json!({"kind": "s3", "bucket": BUCKET, "endpoint": ep, "credentials": creds, "account_id": "123456789012"}),
    )
    .await;
    assert_eq!(
        (s, b["error"]["details"][0]["field"].as_str()),
        (422, Some("account_id"))
    );
    let (s, b) = put(
        "hook",
        json!({"kind": "https", "url": "http://127.0.0.1:9/hook", "secret": "0123456789abcdef", "layout": "security_lake"}),
    )
    .await;
    assert_eq!(
        (s, b["error"]["details"][0]["field"].as_str()),
        (422, Some("layout"))
    );
    let (s, b) = srv.get("/v1/destinations", &admin).await;
    assert_eq!(s, 200);
    assert!(b.to_string().find("\"lake\"").is_none(), "{b}");

    let (s, b) = put("lake", lake.clone()).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(
        (
            b["layout"].as_str(),
            b["format"].as_str(),
            b["prefix"].as_str()
        ),
        (
            Some("security_lake"),
            Some("ocsf_parquet"),
            Some("ext/auditrail/_auditrail")
        ),
        "{b}"
    );
    let (s, b) = put(
        "ocsf",
        json!({"kind": "s3", "bucket": BUCKET, "prefix": "ocsf", "endpoint": ep, "credentials": creds,
               "format": "ocsf", "max_batch_seconds": 1, "max_batch_events": 40}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let mut hook = Receiver::start(Kind::Https, "0123456789abcdef-ocsf");
    let (s, b) = put(
        "hook",
        json!({"kind": "https", "url": hook.url(), "secret": hook.secret, "format": "ocsf", "max_batch_seconds": 1}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["format"], "ocsf");

    ingest(&srv, &admin, events(90, "a")).await;
    ingest(&srv, &admin, events(45, "b")).await;
    let (_, h) = srv.get("/v1/events?limit=1", &admin).await;
    let total = h["events"][0]["seq"].as_u64().unwrap();
    for name in ["lake", "ocsf", "hook"] {
        common::wait_for_destination(&srv.http, &srv.base, &admin, name, 30, |st| {
            st["delivered_seq"].as_u64() >= Some(total)
        })
        .await;
    }

    // Security Lake: Parquet under ext/{source}/region=…/accountId=…/eventDay=…/, and
    // auditrail's own files under ext/{source}/_auditrail/.
    let copy = tempfile::tempdir().unwrap();
    let keys = download(&ep, "ext/auditrail", copy.path()).await;
    let day = chrono::Utc::now().format("%Y%m%d").to_string();
    let objects: Vec<&String> = keys.iter().filter(|k| k.ends_with(".parquet")).collect();
    assert!(!objects.is_empty(), "{keys:?}");
    for k in &objects {
        let rest = k
            .strip_prefix(&format!(
                "ext/auditrail/region=us-east-1/accountId=123456789012/eventDay={day}/acme-"
            ))
            .unwrap_or_else(|| panic!("not Security Lake's layout: {k}"));
        assert_eq!(rest.len(), 20 + 1 + 20 + ".ocsf.parquet".len(), "{k}");
    }
    assert!(
        keys.iter()
            .any(|k| k.starts_with("ext/auditrail/_auditrail/org=acme/_checkpoints/")),
        "{keys:?}"
    );
    let glob = format!(
        "{}/ext/auditrail/region=*/*/*/*.parquet",
        copy.path().display()
    );
    let report = validate(&["parquet", &glob]);
    assert_eq!(
        report["partitions"],
        json!([{"region": "us-east-1", "accountId": "123456789012", "eventDay": day}])
    );
    assert_eq!(
        seqs(&report),
        (1..=total).collect::<Vec<_>>(),
        "every seq once, in order"
    );
    let want = stored(&srv, &admin, total).await;
    for (text, e) in report["events"].as_array().unwrap().iter().zip(&want) {
        let back: Value = serde_json::from_str(text.as_str().unwrap()).unwrap();
        assert_eq!(&back, e);
    }
    let acts = report["activities"].as_array().unwrap();
    assert_eq!(acts.len(), want.len());
    for (a, e) in acts.iter().zip(&want) {
        if let Some(x) = expected_activity(e["action"].as_str().unwrap()) {
            assert_eq!(a.as_u64(), Some(x), "{e}");
        }
    }

    // `auditrail verify` proves the Security Lake source: every leaf recomputed from the
    // events the Parquet rows carry, every checkpoint matched.
    let (_, key) = srv.get("/v1/public-key", &admin).await;
    let key = key.as_str().unwrap().trim().to_owned();
    let (ok, out) = verify(&format!("s3://{BUCKET}/ext/auditrail"), &ep, &key);
    assert!(ok, "{out}");
    assert!(out.contains(&total.to_string()), "{out}");
    // A Parquet object of another batch put in place of one: its rows' leaves no longer
    // match the signed roots.
    let lake = client(&ep);
    let (a, b) = (objects[0].as_str(), objects[objects.len() - 1].as_str());
    assert_ne!(a, b, "more than one batch: {objects:?}");
    let other = lake
        .get(&object_store::path::Path::from(b))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    lake.put(&object_store::path::Path::from(a), other.into())
        .await
        .unwrap();
    let (ok, out) = verify(&format!("s3://{BUCKET}/ext/auditrail"), &ep, &key);
    assert!(
        !ok,
        "a swapped Parquet object must fail verification: {out}"
    );

    // OCSF JSON lines in auditrail's layout: valid records, and `auditrail verify`
    // recomputes every leaf from the events they carry.
    let ocsf_dir = tempfile::tempdir().unwrap();
    let keys = download(&ep, "ocsf", ocsf_dir.path()).await;
    let mut files = Vec::new();
    for k in keys.iter().filter(|k| k.ends_with(".ocsf.json.gz")) {
        let raw = std::fs::read(ocsf_dir.path().join(k)).unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(raw.as_slice()), &mut text)
            .unwrap();
        let plain = ocsf_dir.path().join(format!("{}.jsonl", files.len()));
        std::fs::write(&plain, text).unwrap();
        files.push(plain.to_str().unwrap().to_owned());
    }
    assert!(files.len() >= 3, "batches of 40: {keys:?}");
    let mut args = vec!["jsonl"];
    args.extend(files.iter().map(String::as_str));
    let report = validate(&args);
    assert_eq!(seqs(&report), (1..=total).collect::<Vec<_>>());
    let (ok, out) = verify(&format!("s3://{BUCKET}/ocsf"), &ep, &key);
    assert!(ok, "{out}");
    // A record whose event was altered no longer verifies.
    let first = keys.iter().find(|k| k.ends_with(".ocsf.json.gz")).unwrap();
    let c = client(&ep);
    let path = object_store::path::Path::from(first.as_str());
    let raw = c.get(&path).await.unwrap().bytes().await.unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(raw.as_ref()), &mut text)
        .unwrap();
    let altered = text.replacen("\"details\":{\"n\":0}", "\"details\":{\"n\":1000}", 1);
    assert_ne!(altered, text);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, altered.as_bytes()).unwrap();
    c.put(&path, gz.finish().unwrap().into()).await.unwrap();
    let (ok, out) = verify(&format!("s3://{BUCKET}/ocsf"), &ep, &key);
    assert!(!ok, "an altered record must fail verification: {out}");

    // The push stream: OCSF records, every seq in order.
    assert!(hook.violations().is_empty(), "{:?}", hook.violations());
    every_seq_in_order(&hook.seqs(), total).unwrap();
    let records = dir.path().join("pushed.jsonl");
    std::fs::write(&records, hook.ocsf().join("\n")).unwrap();
    let report = validate(&["jsonl", records.to_str().unwrap()]);
    assert!(report["count"].as_u64().unwrap() >= total);
    for r in hook.ocsf() {
        let v: Value = serde_json::from_str(&r).unwrap();
        let seq = v["metadata"]["sequence"].as_u64().unwrap();
        let e = &want[seq as usize - 1];
        assert_eq!(&v["unmapped"], e, "the event as stored, in every record");
        assert_eq!(
            independent_leaf(&v["unmapped"]),
            independent_leaf(e),
            "its leaf recomputes"
        );
    }
    hook.kill();
    srv.stop().await;
}
