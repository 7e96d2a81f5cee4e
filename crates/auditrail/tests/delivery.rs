//! S3 delivery end to end against a real S3-compatible server speaking HTTP with SigV4
//! (auditrail-s3-dev, files on disk): batch triggers (count, time, shutdown flush), the
//! key layout, every seq exactly once, an outage (refusing, then stopped) shown in the
//! status and recovered from, a crash between upload and commit, wrong credentials,
//! the permission test, the bucket policy, and `auditrail verify` on intact and
//! tampered prefixes.
#![expect(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditrail_s3_dev::{DevS3, Faults};
use common::{ADMIN, TestServer, independent_leaf, independent_root};
use futures_util::TryStreamExt;
use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::{Value, json};

const AK: &str = "AKIDEVTESTKEY0001";
const SK: &str = "dev-test-secret-key";
const BUCKET: &str = "audit";

async fn s3(root: &FsPath) -> DevS3 {
    let s = DevS3::start(root, "127.0.0.1:0".parse().unwrap(), AK, SK)
        .await
        .unwrap();
    s.create_bucket(BUCKET).unwrap();
    s
}

fn client(endpoint: &str) -> AmazonS3 {
    common::s3_client(endpoint, BUCKET, AK, SK)
}

/// Every object under `prefix`, by key.
async fn objects(endpoint: &str, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let c = client(endpoint);
    let metas: Vec<_> = c
        .list(Some(&Path::from(prefix)))
        .try_collect()
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for m in metas {
        let b = c.get(&m.location).await.unwrap().bytes().await.unwrap();
        out.insert(m.location.to_string(), b.to_vec());
    }
    out
}

fn gunzip(b: &[u8]) -> String {
    let mut s = String::new();
    flate2::read::GzDecoder::new(b)
        .read_to_string(&mut s)
        .unwrap();
    s
}

/// The delivered events of `org` in key order, checking each object's lines against
/// the range its key names; panics on any seq missing, repeated or out of place.
fn delivered(objs: &BTreeMap<String, Vec<u8>>, prefix: &str, org: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let dir = format!("{prefix}/org={org}/");
    for (k, body) in objs {
        let Some(rel) = k.strip_prefix(&dir) else {
            continue;
        };
        if rel.starts_with("_checkpoints/") || rel.starts_with("_tlog/") {
            continue;
        }
        let (dt, file) = rel.split_once('/').unwrap();
        let name = file.strip_suffix(".ndjson.gz").unwrap();
        let mut parts = name.rsplitn(3, '-');
        let last: u64 = parts.next().unwrap().parse().unwrap();
        let first: u64 = parts.next().unwrap().parse().unwrap();
        assert_eq!(parts.next().unwrap(), org);
        assert_eq!(
            file.len(),
            org.len() + 1 + 20 + 1 + 20 + ".ndjson.gz".len(),
            "{file}"
        );
        let lines: Vec<Value> = gunzip(body)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len() as u64, last - first + 1, "{k}");
        let received = lines[0]["received_at"].as_str().unwrap();
        assert_eq!(dt, format!("dt={}", &received[..10]), "{k}");
        for (i, l) in lines.iter().enumerate() {
            assert_eq!(l["seq"].as_u64().unwrap(), first + i as u64, "{k}");
        }
        events.extend(lines);
    }
    events.sort_by_key(|e| e["seq"].as_u64().unwrap());
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e["seq"].as_u64().unwrap(),
            i as u64 + 1,
            "every seq exactly once"
        );
        assert_eq!(
            e["leaf_hash"].as_str().unwrap(),
            hex::encode(independent_leaf(e))
        );
    }
    events
}

async fn ingest(srv: &TestServer, token: &str, n: usize, tag: &str) {
    let mut left = n;
    while left > 0 {
        let k = left.min(500);
        let events: Vec<Value> = (0..k)
            .map(|i| json!({"action": "updateGraph", "actor": {"id": format!("u{i}")}, "resource": {"type": "GRAPH", "id": format!("{tag}-{left}-{i}")}}))
            .collect();
        let (s, b) = srv
            .post("/v1/events", token, json!({"events": events}))
            .await;
        assert_eq!(s, 200, "{b}");
        left -= k;
    }
}

async fn status(srv: &TestServer, token: &str, name: &str) -> Value {
    let (s, b) = srv.get(&format!("/v1/destinations/{name}"), token).await;
    assert_eq!(s, 200, "{b}");
    b
}

async fn head(srv: &TestServer, token: &str) -> u64 {
    srv.all_events(token).await.len() as u64
}

/// Polls `status` until `done` holds, or fails after `secs` with the last status.
async fn wait_for(
    srv: &TestServer,
    token: &str,
    name: &str,
    secs: u64,
    done: impl Fn(&Value) -> bool,
) -> Value {
    common::wait_for_destination(&srv.http, &srv.base, token, name, secs, done).await
}

fn dest(endpoint: &str, extra: Value) -> Value {
    let mut d = json!({
        "kind": "s3", "bucket": BUCKET, "prefix": "logs/prod", "region": "us-east-1",
        "endpoint": endpoint,
        "credentials": {"access_key_id": AK, "secret_access_key": SK},
    });
    for (k, v) in extra.as_object().unwrap() {
        d[k] = v.clone();
    }
    d
}

async fn start(
    dir: &FsPath,
    principal: Option<&str>,
    multipart_threshold: Option<usize>,
) -> TestServer {
    let principal = principal.map(str::to_owned);
    TestServer::start_custom(dir, move |s| {
        s.delivery.poll = Duration::from_millis(50);
        s.delivery.max_backoff = Duration::from_millis(500);
        s.delivery.principal_arn = principal;
        if let Some(t) = multipart_threshold {
            s.delivery.multipart_threshold = t;
        }
    })
    .await
}

/// A server with org `acme` and its admin key, beside an S3 server with the bucket.
struct Rig {
    d: tempfile::TempDir,
    _bucket_dir: tempfile::TempDir,
    store: DevS3,
    ep: String,
    srv: TestServer,
    admin: String,
}

async fn rig(principal: Option<&str>, multipart_threshold: Option<usize>) -> Rig {
    let d = tempfile::tempdir().unwrap();
    let bucket_dir = tempfile::tempdir().unwrap();
    let store = s3(bucket_dir.path()).await;
    let ep = store.endpoint();
    let srv = start(d.path(), principal, multipart_threshold).await;
    srv.create_org("acme").await;
    let admin = srv.key("acme", "admin").await;
    Rig {
        d,
        _bucket_dir: bucket_dir,
        store,
        ep,
        srv,
        admin,
    }
}

/// `PUT /v1/destinations/main`.
async fn put_main(srv: &TestServer, token: &str, body: Value) -> (u16, Value) {
    srv.call("PUT", "/v1/destinations/main", token, Some(body))
        .await
}

fn verify(target: &str, endpoint: &str, key: &str) -> (bool, String) {
    common::verify_s3(target, endpoint, key, AK, SK)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_close_on_count_time_and_shutdown_and_verify_proves_the_prefix() {
    let Rig {
        d,
        _bucket_dir,
        store,
        ep,
        srv,
        admin,
    } = rig(None, None).await;

    // Count trigger only (the time trigger is an hour away).
    let (s, b) = put_main(
        &srv,
        &admin,
        dest(
            &ep,
            json!({"max_batch_events": 100, "max_batch_seconds": 3600}),
        ),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["credentials"]["secret_access_key"], "********");
    assert!(
        !b.to_string().contains(SK),
        "the secret is never shown: {b}"
    );
    ingest(&srv, &admin, 330, "a").await;
    let total = head(&srv, &admin).await;
    let full = total / 100 * 100;
    let st = wait_for(&srv, &admin, "main", 20, |s| s["delivered_seq"] == full).await;
    assert_eq!(st["state"], "active");
    assert_eq!(st["lag_events"], total - full);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let objs = objects(&ep, "logs/prod").await;
    let events = delivered(&objs, "logs/prod", "acme");
    assert_eq!(
        events.len() as u64,
        full,
        "only full batches before the time trigger"
    );
    for k in objs
        .keys()
        .filter(|k| !k.contains("_checkpoints") && !k.contains("/_tlog/"))
    {
        let last: u64 = k
            .trim_end_matches(".ndjson.gz")
            .rsplit('-')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            objs.contains_key(&format!("logs/prod/org=acme/_checkpoints/{last:020}.note")),
            "checkpoint beside {k}"
        );
        assert_eq!(last % 100, 0, "count-closed batches hold 100 events: {k}");
    }

    // Shutdown flushes the partial batch.
    srv.stop().await;
    let objs = objects(&ep, "logs/prod").await;
    assert_eq!(
        delivered(&objs, "logs/prod", "acme").len() as u64,
        total,
        "shutdown flush"
    );

    // Time trigger: a few events go out within max_batch_seconds.
    let srv = start(d.path(), None, None).await;
    let (s, b) = put_main(&srv, &admin, json!({"kind": "s3", "bucket": BUCKET, "prefix": "logs/prod", "endpoint": ep, "max_batch_seconds": 1})).await;
    assert_eq!(s, 200, "credentials kept when omitted: {b}");
    ingest(&srv, &admin, 5, "b").await;
    let total = head(&srv, &admin).await;
    wait_for(&srv, &admin, "main", 10, |s| {
        s["delivered_seq"] == total && s["lag_events"] == 0
    })
    .await;
    let objs = objects(&ep, "logs/prod").await;
    let events = delivered(&objs, "logs/prod", "acme");
    assert_eq!(events.len() as u64, total);
    let leaves: Vec<_> = events.iter().map(independent_leaf).collect();

    // The last checkpoint beside the data signs the root of everything delivered.
    let (_, key) = srv.get("/v1/public-key", &admin).await;
    let key = key.as_str().unwrap().trim().to_owned();
    let note = String::from_utf8(
        objs[&format!("logs/prod/org=acme/_checkpoints/{total:020}.note")].clone(),
    )
    .unwrap();
    let root = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        independent_root(&leaves),
    );
    assert_eq!(note.lines().nth(2).unwrap(), root);

    let (ok, out) = verify(&format!("s3://{BUCKET}/logs/prod"), &ep, &key);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("seqs 1..{total}")) && out.contains(&root),
        "{out}"
    );

    // The org's own log records the destination's changes.
    let actions: Vec<_> = srv
        .all_events(&admin)
        .await
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        actions.contains(&"createDestination".into())
            && actions.contains(&"updateDestination".into())
    );
    srv.stop().await;
    store.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_shows_in_the_status_and_delivery_resumes_without_gap_or_overlap() {
    let d = tempfile::tempdir().unwrap();
    let bucket_dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let store = DevS3::start_with(
        bucket_dir.path(),
        "127.0.0.1:0".parse().unwrap(),
        AK,
        SK,
        faults.clone(),
    )
    .await
    .unwrap();
    store.create_bucket(BUCKET).unwrap();
    let (addr, ep) = (store.addr(), store.endpoint());
    let srv = start(d.path(), None, None).await;
    srv.create_org("acme").await;
    let admin = srv.key("acme", "admin").await;
    let (s, _) = put_main(
        &srv,
        &admin,
        dest(&ep, json!({"max_batch_events": 50, "max_batch_seconds": 1})),
    )
    .await;
    assert_eq!(s, 201);
    ingest(&srv, &admin, 120, "a").await;
    let before = head(&srv, &admin).await;
    wait_for(&srv, &admin, "main", 15, |s| s["delivered_seq"] == before).await;

    // The store refuses everything: the status says so within seconds, nothing advances.
    faults.refuse(true);
    ingest(&srv, &admin, 100, "b").await;
    let t = Instant::now();
    let st = wait_for(&srv, &admin, "main", 20, |s| s["state"] == "retrying").await;
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "shown after {:?}",
        t.elapsed()
    );
    assert!(st["last_error"].as_str().unwrap().contains("503"), "{st}");
    assert_eq!(st["delivered_seq"], before);
    assert!(st["lag_events"].as_u64().unwrap() >= 100);
    assert!(st["failing_since"].is_string());

    // Then it is down altogether, and comes back.
    store.stop().await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let st = status(&srv, &admin, "main").await;
    assert_eq!(
        (st["state"].as_str(), st["delivered_seq"].as_u64()),
        (Some("retrying"), Some(before)),
        "{st}"
    );
    faults.refuse(false);
    let store = DevS3::start_with(bucket_dir.path(), addr, AK, SK, faults.clone())
        .await
        .unwrap();
    let total = head(&srv, &admin).await;
    let st = wait_for(&srv, &admin, "main", 20, |s| {
        s["delivered_seq"] == total && s["state"] == "active"
    })
    .await;
    assert!(
        st["last_error"].is_null() && st["last_delivery_at"].is_string(),
        "{st}"
    );
    let objs = objects(&ep, "logs/prod").await;
    assert_eq!(delivered(&objs, "logs/prod", "acme").len() as u64, total);

    // Pausing stops delivery; resuming continues after delivered_seq.
    let (s, b) = srv
        .post("/v1/destinations/main/pause", &admin, json!({}))
        .await;
    assert_eq!((s, b["state"].as_str()), (200, Some("paused")));
    ingest(&srv, &admin, 10, "c").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let st = status(&srv, &admin, "main").await;
    assert_eq!(st["delivered_seq"], total, "nothing after the pause: {st}");
    assert_eq!(st["lag_events"], 11, "the pause event and ten more wait");
    let (s, _) = srv
        .post("/v1/destinations/main/resume", &admin, json!({}))
        .await;
    assert_eq!(s, 200);
    let total = head(&srv, &admin).await;
    wait_for(&srv, &admin, "main", 15, |s| s["delivered_seq"] == total).await;
    let objs = objects(&ep, "logs/prod").await;
    assert_eq!(delivered(&objs, "logs/prod", "acme").len() as u64, total);
    srv.stop().await;
    store.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_upload_and_commit_rewrites_the_same_key_and_multipart_works() {
    // Every object goes up as a multipart upload.
    let Rig {
        d,
        _bucket_dir,
        store,
        ep,
        srv,
        admin,
    } = rig(None, Some(1)).await;
    ingest(&srv, &admin, 40, "a").await;
    let total = head(&srv, &admin).await;

    // The data object goes up, but the checkpoint beside it cannot: the batch stays
    // recorded and unconfirmed, exactly as after a crash between upload and commit.
    store.faults().deny_keys_containing("_checkpoints/");
    let (s, _) = put_main(&srv, &admin, dest(&ep, json!({"max_batch_seconds": 1}))).await;
    assert_eq!(s, 201);
    let st = wait_for(&srv, &admin, "main", 15, |s| {
        s["pending"].is_object() && s["state"] == "retrying"
    })
    .await;
    let (first, last) = (
        st["pending"]["first_seq"].as_u64().unwrap(),
        st["pending"]["last_seq"].as_u64().unwrap(),
    );
    assert_eq!((first, st["delivered_seq"].as_u64().unwrap()), (1, 0));
    assert!(last > total, "the batch includes createDestination");
    srv.stop().await; // the "crash": the pending batch survives in the store

    let key = |log: &[(String, String)]| {
        log.iter()
            .filter(|(op, k)| {
                op == "CreateMultipartUpload" && k.ends_with(&format!("-{last:020}.ndjson.gz"))
            })
            .count()
    };
    let uploads_before = key(&store.faults().log());
    assert!(
        uploads_before >= 1,
        "the data object was uploaded before the crash"
    );
    store.faults().allow_all();
    let srv = start(d.path(), None, Some(1)).await;
    ingest(&srv, &admin, 5, "b").await;
    let total = head(&srv, &admin).await;
    wait_for(&srv, &admin, "main", 15, |s| s["delivered_seq"] == total).await;
    assert!(
        key(&store.faults().log()) > uploads_before,
        "the same key was written again"
    );
    let objs = objects(&ep, "logs/prod").await;
    let data: Vec<_> = objs
        .keys()
        .filter(|k| !k.contains("_checkpoints") && !k.contains("/_tlog/"))
        .collect();
    assert_eq!(
        data.iter()
            .filter(|k| k.contains(&format!("-{first:020}-")))
            .count(),
        1,
        "{data:?}"
    );
    assert_eq!(delivered(&objs, "logs/prod", "acme").len() as u64, total);
    srv.stop().await;
    store.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_permissions_policy_and_the_api_contract() {
    let principal = "arn:aws:iam::123456789012:role/auditrail-delivery";
    let Rig {
        d,
        _bucket_dir,
        store,
        ep,
        srv,
        admin,
    } = rig(Some(principal), None).await;
    srv.create_org("globex").await;
    let viewer = srv.key("acme", "viewer").await;
    let other = srv.key("globex", "admin").await;
    ingest(&srv, &admin, 30, "a").await;

    // Contract: admins only, precise 422s, nothing stored on error, tenancy.
    let body = dest(&ep, json!({"max_batch_seconds": 1}));
    let (s, _) = put_main(&srv, &viewer, body.clone()).await;
    assert_eq!(s, 403);
    let (s, _) = srv.get("/v1/destinations/main", &viewer).await;
    assert_eq!(s, 403);
    for (field, value) in [
        ("bucket", json!("Bad_Bucket")),
        ("format", json!("xlsx")),
        ("max_batch_seconds", json!(0)),
        ("endpoint", json!("ftp://x")),
    ] {
        let mut b = body.clone();
        b[field] = value;
        let (s, e) = put_main(&srv, &admin, b).await;
        assert_eq!(
            (s, e["error"]["details"][0]["field"].as_str()),
            (422, Some(field)),
            "{e}"
        );
    }
    let (s, e) = put_main(
        &srv,
        &admin,
        json!({"kind": "s3", "bucket": BUCKET, "colour": "red"}),
    )
    .await;
    assert_eq!(
        (s, e["error"]["details"][0]["field"].as_str()),
        (422, Some("colour"))
    );
    let (s, e) = srv
        .call(
            "PUT",
            "/v1/destinations/bad%20name",
            &admin,
            Some(body.clone()),
        )
        .await;
    assert_eq!(
        (s, e["error"]["details"][0]["field"].as_str()),
        (422, Some("name"))
    );
    let (s, _) = srv.get("/v1/destinations/main", &admin).await;
    assert_eq!(s, 404, "nothing was stored");

    // Wrong secret: the status names the rejection, nothing is skipped.
    let mut wrong = body.clone();
    wrong["credentials"]["secret_access_key"] = json!("not-the-secret");
    let (s, _) = put_main(&srv, &admin, wrong).await;
    assert_eq!(s, 201);
    let st = wait_for(&srv, &admin, "main", 15, |s| s["state"] == "retrying").await;
    let err = st["last_error"].as_str().unwrap();
    assert!(
        err.contains("403") || err.contains("credentials") || err.contains("Signature"),
        "{err}"
    );
    assert_eq!(st["delivered_seq"], 0);
    let (_, t) = srv
        .post("/v1/destinations/main/test", &admin, json!({}))
        .await;
    assert_eq!(t["all_passed"], false);
    assert!(
        t["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["passed"] == false),
        "{t}"
    );
    let (s, _) = srv.get("/v1/destinations/main", &other).await;
    assert_eq!(s, 404, "another org's admin sees nothing");

    // Fixed: everything from seq 1 arrives.
    let (s, _) = put_main(&srv, &admin, body.clone()).await;
    assert_eq!(s, 200);
    let total = head(&srv, &admin).await;
    wait_for(&srv, &admin, "main", 15, |s| {
        s["delivered_seq"].as_u64() >= Some(total) && s["state"] == "active"
    })
    .await;
    let objs = objects(&ep, "logs/prod").await;
    assert!(delivered(&objs, "logs/prod", "acme").len() as u64 >= total);

    // Permission test: every action of the bucket policy, one denied.
    let (s, t) = srv
        .post("/v1/destinations/main/test", &admin, json!({}))
        .await;
    assert_eq!(s, 200);
    let actions: Vec<_> = t["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(actions.len(), 10, "{t}");
    assert_eq!(t["all_passed"], true, "{t}");
    store.faults().deny("PutObjectTagging");
    let (_, t) = srv
        .post("/v1/destinations/main/test", &admin, json!({}))
        .await;
    assert_eq!(t["all_passed"], false);
    for r in t["results"].as_array().unwrap() {
        if r["action"] == "s3:PutObjectTagging" {
            assert_eq!(r["passed"], false);
            assert!(r["error"].as_str().unwrap().contains("AccessDenied"), "{r}");
        } else {
            assert_eq!(r["passed"], true, "{r}");
        }
    }
    store.faults().allow_all();
    let marker = objects(&ep, "logs/prod/_auditrail").await;
    assert!(
        marker.is_empty(),
        "the marker object is removed: {marker:?}"
    );

    // The bucket policy to paste.
    let (s, p) = srv.get("/v1/destinations/main/bucket-policy", &admin).await;
    assert_eq!(s, 200);
    let st = &p["Statement"][0];
    assert_eq!(st["Principal"]["AWS"], principal);
    assert_eq!(st["Action"].as_array().unwrap().len(), 10);
    assert_eq!(
        st["Resource"],
        json!([
            format!("arn:aws:s3:::{BUCKET}"),
            format!("arn:aws:s3:::{BUCKET}/*")
        ])
    );

    // Credentials at rest are sealed: the secret appears nowhere in the database files.
    for entry in std::fs::read_dir(d.path()).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            let bytes = std::fs::read(&p).unwrap();
            assert!(
                !bytes.windows(SK.len()).any(|w| w == SK.as_bytes()),
                "{} holds the secret",
                p.display()
            );
        }
    }

    let (s, _) = srv
        .call("DELETE", "/v1/destinations/main", &admin, None)
        .await;
    assert_eq!(s, 204);
    let (s, _) = srv.get("/v1/destinations/main", &admin).await;
    assert_eq!(s, 404);
    let actions: Vec<_> = srv
        .all_events(&admin)
        .await
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert!(actions.contains(&"deleteDestination".into()));
    srv.stop().await;
    store.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_fails_on_an_altered_deleted_or_extra_object() {
    let Rig {
        d: _d,
        _bucket_dir,
        store,
        ep,
        srv,
        admin,
    } = rig(None, None).await;
    let (s, _) = put_main(
        &srv,
        &admin,
        dest(&ep, json!({"max_batch_events": 20, "max_batch_seconds": 1})),
    )
    .await;
    assert_eq!(s, 201);
    ingest(&srv, &admin, 75, "a").await;
    let total = head(&srv, &admin).await;
    wait_for(&srv, &admin, "main", 15, |s| s["delivered_seq"] == total).await;
    let (_, key) = srv.get("/v1/public-key", &admin).await;
    let key = key.as_str().unwrap().trim().to_owned();
    srv.stop().await;

    // A local copy of the prefix verifies like the bucket does.
    let objs = objects(&ep, "logs/prod").await;
    let copy = tempfile::tempdir().unwrap();
    let write = |k: &str, b: &[u8]| {
        let p = copy.path().join(k.strip_prefix("logs/prod/").unwrap());
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b).unwrap();
    };
    for (k, b) in &objs {
        write(k, b);
    }
    let dir = copy.path().to_str().unwrap().to_owned();
    let (ok, out) = verify(&dir, &ep, &key);
    assert!(ok, "{out}");
    let (ok, out) = verify(&format!("s3://{BUCKET}/logs/prod"), &ep, &key);
    assert!(ok, "{out}");

    let data: Vec<&String> = objs
        .keys()
        .filter(|k| !k.contains("_checkpoints") && !k.contains("/_tlog/"))
        .collect();
    let middle = data[1].clone();

    // Altered: one event's action changed in the bucket.
    let text = gunzip(&objs[&middle]);
    let altered = text.replacen("updateGraph", "deleteGraph", 1);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(altered.as_bytes()).unwrap();
    let c = client(&ep);
    c.put(
        &Path::from(middle.as_str()),
        PutPayload::from(gz.finish().unwrap()),
    )
    .await
    .unwrap();
    let (ok, out) = verify(&format!("s3://{BUCKET}/logs/prod"), &ep, &key);
    assert!(!ok && out.contains(&middle) && out.contains("seq"), "{out}");
    c.put(
        &Path::from(middle.as_str()),
        PutPayload::from(objs[&middle].clone()),
    )
    .await
    .unwrap();

    // Deleted: a middle object (the copy on disk).
    let local = copy.path().join(middle.strip_prefix("logs/prod/").unwrap());
    std::fs::remove_file(&local).unwrap();
    let (ok, out) = verify(&dir, &ep, &key);
    assert!(!ok && out.contains("missing"), "{out}");
    std::fs::write(&local, &objs[&middle]).unwrap();

    // Deleted: the last object (its checkpoint names seqs no longer there).
    let last = data.last().unwrap();
    let last_local = copy.path().join(last.strip_prefix("logs/prod/").unwrap());
    std::fs::remove_file(&last_local).unwrap();
    let (ok, out) = verify(&dir, &ep, &key);
    assert!(!ok && out.contains("signs a tree"), "{out}");
    std::fs::write(&last_local, &objs[*last]).unwrap();

    // Extra: an overlapping object, and a stray file.
    let first_obj = data[0];
    let overlap = first_obj.replace("-00000000000000000001-", "-00000000000000000002-");
    write(&overlap, &objs[first_obj]);
    let (ok, out) = verify(&dir, &ep, &key);
    assert!(
        !ok && (out.contains("overlaps") || out.contains("repeats")),
        "{out}"
    );
    std::fs::remove_file(
        copy.path()
            .join(overlap.strip_prefix("logs/prod/").unwrap()),
    )
    .unwrap();
    write("logs/prod/org=acme/notes.txt", b"hello");
    let (ok, out) = verify(&dir, &ep, &key);
    assert!(!ok && out.contains("unexpected object"), "{out}");
    std::fs::remove_file(copy.path().join("org=acme/notes.txt")).unwrap();

    // A checkpoint signed by another key is refused.
    let (ok, out) = verify(
        &dir,
        &ep,
        "auditrail.other+00000000+AfR8lRmAX1kkTh9ng4G9XZaS5hRaT3YXW3Vv1zLNPXbn",
    );
    assert!(!ok, "{out}");
    let (ok, out) = verify(&dir, &ep, &key);
    assert!(ok, "restored: {out}");
    let _ = ADMIN;
    store.stop().await;
}
