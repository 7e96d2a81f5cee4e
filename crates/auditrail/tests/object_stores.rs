//! Destinations of kind `gcs` and `azure_blob` against the stores' own emulators, which
//! nobody here wrote: Google Cloud Storage's API as `gcp-storage-emulator` (PyPI) serves
//! it, Azure Blob Storage's as Azurite (npm) serves it, its container created with
//! Microsoft's own Python SDK. For each: the key sealed and masked, the permission
//! test, every seq delivered once and in order under auditrail's key layout with a
//! signed checkpoint beside each object, the store killed mid-stream and restarted,
//! pause and resume, and `auditrail verify gs://…` / `az://…` proving what landed.
#![allow(clippy::unwrap_used, reason = "a panic is a failed test")]

mod common;

use std::io::Read;
use std::time::Duration;

use common::emulators::{AZ_ACCOUNT, AZ_KEY, Emulator, Store, available, gcs_key};
use common::{TestServer, independent_leaf};
use serde_json::{Value, json};

async fn ingest(srv: &TestServer, token: &str, n: usize, tag: &str) {
    let events: Vec<Value> = (0..n)
        .map(|i| json!({"action": "updateGraph", "id": format!("{tag}-{i}"), "actor": {"id": format!("u{i}")}, "resource": {"type": "GRAPH", "id": format!("g-{i}")}}))
        .collect();
    let (s, b) = srv
        .post("/v1/events", token, json!({"events": events}))
        .await;
    assert_eq!(s, 200, "{b}");
}

async fn head(srv: &TestServer, token: &str) -> u64 {
    let (_, b) = srv.get("/v1/events?limit=1", token).await;
    b["events"][0]["seq"].as_u64().unwrap()
}

async fn caught_up(srv: &TestServer, token: &str, secs: u64) -> Value {
    let want = head(srv, token).await;
    common::wait_for_destination(&srv.http, &srv.base, token, "store", secs, |st| {
        st["delivered_seq"].as_u64() >= Some(want) && st["state"] == "active"
    })
    .await
}

/// Every delivered event under `logs/org=acme/`, checking the key layout, each object's
/// range, the checkpoint beside it and every seq exactly once in order.
async fn delivered(emu: &Emulator, total: u64) {
    let keys = emu.keys("logs/org=acme").await;
    let mut seqs = Vec::new();
    for k in keys.iter().filter(|k| k.ends_with(".ndjson.gz")) {
        let rest = k.strip_prefix("logs/org=acme/dt=").unwrap();
        let (_, file) = rest.split_once('/').unwrap();
        let name = file.strip_suffix(".ndjson.gz").unwrap();
        let mut parts = name.rsplitn(3, '-');
        let last: u64 = parts.next().unwrap().parse().unwrap();
        let first: u64 = parts.next().unwrap().parse().unwrap();
        assert!(
            keys.contains(&format!("logs/org=acme/_checkpoints/{last:020}.note")),
            "a signed checkpoint beside {k}"
        );
        let raw = emu.read(k).await;
        let mut text = String::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_string(&mut text)
            .unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len() as u64, last - first + 1, "{k}");
        for (i, l) in lines.iter().enumerate() {
            assert_eq!(l["seq"].as_u64(), Some(first + i as u64), "{k}");
            assert_eq!(
                l["leaf_hash"].as_str().unwrap(),
                hex::encode(independent_leaf(l))
            );
        }
        seqs.extend(first..=last);
    }
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=total).collect::<Vec<_>>(),
        "every seq exactly once"
    );
}

async fn story(store: Store) {
    if !available(store) {
        return;
    }
    let mut emu = Emulator::start(store);
    let dir = tempfile::tempdir().unwrap();
    let (smtp_port, mut mail) = common::smtp::listener().await;
    let (srv, admin) = common::alerting_server(dir.path(), smtp_port, Duration::from_secs(2)).await;

    let (s, b) = srv
        .call(
            "PUT",
            "/v1/destinations/store",
            &admin,
            Some(emu.destination(json!({"max_batch_events": 100, "max_batch_seconds": 1}))),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    assert!(
        !b.to_string().contains(AZ_KEY),
        "the key is never shown: {b}"
    );
    match store {
        Store::Gcs => {
            assert_eq!(b["credentials"]["service_account_key"], "********");
            assert_eq!(
                b["credentials"]["client_email"],
                "auditrail@test.iam.gserviceaccount.com"
            );
        }
        Store::Azure => {
            assert_eq!(b["credentials"]["access_key"], "********");
            assert_eq!(b["account"], AZ_ACCOUNT);
        }
    }
    let (s, t) = srv
        .call("POST", "/v1/destinations/store/test", &admin, None)
        .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["all_passed"], true, "{t}");
    assert_eq!(t["results"].as_array().unwrap().len(), 4);
    let (s, p) = srv
        .get("/v1/destinations/store/bucket-policy", &admin)
        .await;
    assert_eq!(
        (s, p["error"]["code"].as_str()),
        (409, Some("not_an_s3_destination"))
    );

    // A backlog, then the store killed mid-stream and brought back: caught up, each seq
    // once.
    ingest(&srv, &admin, 250, "a").await;
    caught_up(&srv, &admin, 30).await;
    ingest(&srv, &admin, 300, "b").await;
    emu.kill();
    let down = std::time::Instant::now();
    let st = common::wait_for_destination(&srv.http, &srv.base, &admin, "store", 30, |st| {
        st["state"] == "retrying"
    })
    .await;
    assert!(st["last_error"].as_str().is_some(), "{st}");
    ingest(&srv, &admin, 40, "c").await;
    // Down for 10 s, then back: caught up, nothing skipped or repeated.
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(down.elapsed())).await;
    emu.restart();
    caught_up(&srv, &admin, 60).await;

    if store == Store::Azure {
        // A key Azure refuses (403): after `alert_after` the admins are told, once; the
        // right key given again, delivery catches up and the recovery is announced.
        let wrong = json!({"access_key": "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk="});
        let mut d = emu.destination(
            json!({"max_batch_events": 100, "max_batch_seconds": 1, "alert_after": "1s"}),
        );
        d["credentials"] = wrong;
        let (s, b) = srv
            .call("PUT", "/v1/destinations/store", &admin, Some(d))
            .await;
        assert_eq!(s, 200, "{b}");
        ingest(&srv, &admin, 20, "k").await;
        let (to, text) = common::smtp::next_mail(&mut mail, 30).await;
        assert_eq!(to, "secops@customer.example");
        assert!(
            text.contains("destination store of acme is failing"),
            "{text}"
        );
        assert!(
            text.contains("403"),
            "the store's refusal is in the email: {text}"
        );
        let (_, st) = srv.get("/v1/destinations/store", &admin).await;
        assert!(st["last_error"].as_str().unwrap().contains("403"), "{st}");
        let (s, b) = srv
            .call(
                "PUT",
                "/v1/destinations/store",
                &admin,
                Some(emu.destination(
                    json!({"max_batch_events": 100, "max_batch_seconds": 1, "alert_after": "1s"}),
                )),
            )
            .await;
        assert_eq!(s, 200, "{b}");
        caught_up(&srv, &admin, 30).await;
        let (_, text) = common::smtp::next_mail(&mut mail, 30).await;
        assert!(
            text.contains("destination store of acme has recovered"),
            "{text}"
        );
    }

    // Paused: nothing moves; resumed: caught up.
    let (s, _) = srv
        .call("POST", "/v1/destinations/store/pause", &admin, None)
        .await;
    assert_eq!(s, 200);
    let before = head(&srv, &admin).await;
    ingest(&srv, &admin, 30, "d").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, st) = srv.get("/v1/destinations/store", &admin).await;
    assert_eq!(st["state"], "paused");
    assert!(st["delivered_seq"].as_u64() <= Some(before), "{st}");
    let (s, _) = srv
        .call("POST", "/v1/destinations/store/resume", &admin, None)
        .await;
    assert_eq!(s, 200);
    caught_up(&srv, &admin, 30).await;
    let total = head(&srv, &admin).await;
    delivered(&emu, total).await;

    let (_, key) = srv.get("/v1/public-key", &admin).await;
    let key = key.as_str().unwrap().trim().to_owned();
    let (ok, out) = emu.verify(&key);
    assert!(ok, "{out}");
    // An object altered in the store no longer verifies.
    let keys = emu.keys("logs/org=acme").await;
    let obj = keys.iter().find(|k| k.ends_with(".ndjson.gz")).unwrap();
    let raw = emu.read(obj).await;
    let mut text = String::new();
    flate2::read::GzDecoder::new(raw.as_slice())
        .read_to_string(&mut text)
        .unwrap();
    let altered = text.replacen("\"updateGraph\"", "\"deleteGraph\"", 1);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, altered.as_bytes()).unwrap();
    emu.write(obj, gz.finish().unwrap()).await;
    let (ok, out) = emu.verify(&key);
    assert!(!ok, "an altered object must fail: {out}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_destination_against_the_gcs_emulator() {
    story(Store::Gcs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_blob_destination_against_azurite() {
    story(Store::Azure).await;
}

#[tokio::test]
async fn cloud_destinations_take_only_their_own_keys() {
    let dir = tempfile::tempdir().unwrap();
    let srv = TestServer::start(dir.path()).await;
    srv.create_org("acme").await;
    let admin = srv.key("acme", "admin").await;
    let gcs = json!({"kind": "gcs", "bucket": "audit", "credentials": {"service_account_key": gcs_key()}});
    let az = json!({"kind": "azure_blob", "account": "acct1", "container": "audit", "credentials": {"access_key": "a2V5"}});
    let with = |base: &Value, k: &str, v: Value| {
        let mut b = base.clone();
        if v.is_null() {
            b.as_object_mut().unwrap().remove(k);
        } else {
            b[k] = v;
        }
        b
    };
    let cases = [
        // No key: never the server's own cloud identity.
        (with(&gcs, "credentials", Value::Null), "credentials"),
        (with(&az, "credentials", Value::Null), "credentials"),
        (
            with(&gcs, "credentials", json!({"source": "environment"})),
            "credentials.source",
        ),
        (
            with(
                &az,
                "credentials",
                json!({"access_key_id": "AKIA", "secret_access_key": "x"}),
            ),
            "credentials.access_key_id",
        ),
        (
            with(
                &gcs,
                "credentials",
                json!({"service_account_key": {"client_email": "a@b.c"}}),
            ),
            "credentials.service_account_key",
        ),
        (
            with(
                &gcs,
                "credentials",
                json!({"service_account_key": {"disable_oauth": true, "gcs_base_url": "http://169.254.169.254"}}),
            ),
            "credentials.service_account_key",
        ),
        (
            with(
                &az,
                "credentials",
                json!({"access_key": "k", "sas_token": "sv=1"}),
            ),
            "credentials.sas_token",
        ),
        (
            with(&az, "credentials", json!({"access_key": "not base64!"})),
            "credentials.access_key",
        ),
        (with(&gcs, "bucket", json!("Bad_Bucket")), "bucket"),
        (with(&az, "container", json!("a--b")), "bucket"),
        (with(&az, "account", Value::Null), "account"),
        (with(&az, "account", json!("UPPER")), "account"),
        (with(&gcs, "account", json!("acct1")), "account"),
        (with(&gcs, "region", json!("us-east-1")), "region"),
        (with(&gcs, "endpoint", json!("ftp://x")), "endpoint"),
        (with(&az, "format", json!("xlsx")), "format"),
    ];
    for (body, field) in cases {
        let (s, b) = srv
            .call("PUT", "/v1/destinations/x", &admin, Some(body.clone()))
            .await;
        assert_eq!(s, 422, "{body}: {b}");
        assert_eq!(b["error"]["details"][0]["field"], field, "{body}: {b}");
    }
    // A key whose token service is an address the outbound policy refuses.
    let (s, b) = srv
        .call(
            "PUT",
            "/v1/destinations/x",
            &admin,
            Some(with(
                &gcs,
                "credentials",
                json!({"service_account_key": {"client_email": "a@b.c", "private_key": "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n", "token_uri": "http://169.254.169.254/token"}}),
            )),
        )
        .await;
    assert_eq!(s, 422, "{b}");
    assert_eq!(b["error"]["code"], "address_refused", "{b}");
    let (_, list) = srv.get("/v1/destinations", &admin).await;
    assert_eq!(list["destinations"], json!([]), "nothing was created");
    srv.stop().await;
}
