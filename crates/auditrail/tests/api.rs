//! The HTTP API over real connections to a port-0 server on SQLite files on disk.
#![expect(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

mod common;

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::{ADMIN, TestServer, independent_leaf, independent_root};
use serde_json::{Value, json};

fn seqs(b: &Value) -> Vec<u64> {
    b["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect()
}

fn sample() -> Vec<Value> {
    vec![
        json!({"id": "a1", "action": "addProject", "actor": {"id": "u-1", "type": "USER"}, "resource": {"type": "PROJECT", "id": "p-1"}, "scope": {"type": "GRAPH", "id": "g1"}, "occurred_at": "2026-11-01T10:00:00Z", "details": {"name": "demo"}}),
        json!({"id": "a2", "action": "releaseProject", "actor": {"id": "u-2", "type": "USER"}, "resource": {"type": "PROJECT", "id": "p-1"}, "scope": {"type": "GRAPH", "id": "g2"}, "occurred_at": "2026-11-02T10:00:00Z"}),
        json!({"id": "a3", "action": "addProject", "actor": {"id": "u-2", "type": "USER"}, "resource": {"type": "PROJECT", "id": "p-2"}, "scope": {"type": "GRAPH", "id": "my graph"}, "occurred_at": "2026-11-03T10:00:00Z", "details": {"note": "needle, \"quoted\" é"}}),
        json!({"id": "a4", "action": "setPassword", "actor": {"id": "u-1", "type": "USER"}, "resource": {"type": "USER", "id": "u-1"}, "occurred_at": "2026-11-04T10:00:00Z"}),
    ]
}

#[tokio::test]
async fn ingest_and_search_with_every_filter() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    s.create_org("acme").await;
    let (ingest, viewer) = (s.key("acme", "ingest").await, s.key("acme", "viewer").await);
    // The org's own log starts with its administrative events (org, two keys).
    let (st, b) = s
        .post("/v1/events", &ingest, json!({"events": sample()}))
        .await;
    assert_eq!(st, 200, "{b}");
    let accepted: Vec<u64> = b["accepted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(accepted, vec![4, 5, 6, 7]);
    // Visible the moment it is acknowledged, exactly as hashed.
    let (_, all) = s.get("/v1/events", &viewer).await;
    assert_eq!(seqs(&all), vec![7, 6, 5, 4, 3, 2, 1]);
    for e in all["events"].as_array().unwrap() {
        assert_eq!(
            hex::encode(independent_leaf(e)),
            e["leaf_hash"].as_str().unwrap()
        );
    }
    let cases: &[(&str, &[u64])] = &[
        ("actor_id=u-1", &[7, 4]),
        ("action=addProject", &[6, 4]),
        ("resource_type=PROJECT", &[6, 5, 4]),
        ("resource_id=p-1", &[5, 4]),
        ("scope_id=g1", &[4]),
        ("from=2026-11-02&to=2026-11-04", &[6, 5]),
        ("from=2026-11-02T10:00:00Z&actor_id=u-2", &[6, 5]),
        ("q=actor:u-2%20action:addProject", &[6]),
        ("q=action:addProject%20-actor:u-1", &[6]),
        ("q=scope:%22my%20graph%22", &[6]),
        ("q=needle", &[6]),
        ("q=-needle%20type:PROJECT", &[5, 4]),
        (
            "q=created:%3E%3D2026-11-03%20created:%3C2026-11-05",
            &[7, 6],
        ),
        ("q=created:%3E%3D2026-11-03", &[7, 6, 3, 2, 1]),
        ("q=created:2026-11-02", &[5]),
        ("actor_id=u-1&q=-action:setPassword", &[4]),
        ("actor_id=nobody", &[]),
    ];
    for (query, expected) in cases {
        let (st, b) = s.get(&format!("/v1/events?{query}"), &viewer).await;
        assert_eq!(st, 200, "{query}: {b}");
        assert_eq!(seqs(&b), expected.to_vec(), "{query}");
    }
    for (query, field) in [
        ("q=colour:red", "q"),
        ("from=yesterday", "from"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("cursor=zzz", "cursor"),
        ("order=up", "order"),
        ("from=2026-11-05&to=2026-11-01", "from"),
    ] {
        let (st, b) = s.get(&format!("/v1/events?{query}"), &viewer).await;
        assert_eq!(st, 422, "{query}: {b}");
        assert_eq!(b["error"]["details"][0]["field"], field, "{query}: {b}");
    }
    s.stop().await;
}

#[tokio::test]
async fn cursor_paging_never_skips_or_repeats_while_ingesting() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    s.create_org("acme").await;
    let (ingest, viewer) = (s.key("acme", "ingest").await, s.key("acme", "viewer").await);
    let batch: Vec<Value> = (0..300)
        .map(|i| json!({"action": "seed", "details": {"i": i}}))
        .collect();
    assert_eq!(
        s.post("/v1/events", &ingest, json!({"events": batch}))
            .await
            .0,
        200
    );
    let writer = {
        let (base, http, ingest) = (s.base.clone(), s.http.clone(), ingest.clone());
        tokio::spawn(async move {
            for i in 0..30 {
                let batch: Vec<Value> = (0..10)
                    .map(|j| json!({"action": "live", "details": {"i": i, "j": j}}))
                    .collect();
                let r = http
                    .post(format!("{base}/v1/events"))
                    .bearer_auth(&ingest)
                    .json(&json!({"events": batch}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
        })
    };
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (st, b) = s
            .get(&format!("/v1/events?limit=17{cursor}"), &viewer)
            .await;
        assert_eq!(st, 200);
        seen.extend(seqs(&b));
        match b["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    let top = seen[0];
    assert!(
        seen.windows(2).all(|w| w[0] == w[1] + 1),
        "strictly descending without gaps"
    );
    assert_eq!(
        seen.len() as u64,
        top,
        "every event from the first page's top down to 1, once"
    );
    let mut asc_cursor = String::new();
    let mut asc = Vec::new();
    loop {
        let (_, b) = s
            .get(
                &format!("/v1/events?order=asc&limit=100{asc_cursor}"),
                &viewer,
            )
            .await;
        asc.extend(seqs(&b));
        match b["next_cursor"].as_str() {
            Some(c) => asc_cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(asc, (1..=603).collect::<Vec<u64>>());
    s.stop().await;
}

#[tokio::test]
async fn resend_is_idempotent_and_bad_batches_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    s.create_org("acme").await;
    let (ingest, viewer) = (s.key("acme", "ingest").await, s.key("acme", "viewer").await);
    let (_, first) = s
        .post("/v1/events", &ingest, json!({"events": sample()}))
        .await;
    let (st, again) = s
        .post("/v1/events", &ingest, json!({"events": sample()}))
        .await;
    assert_eq!(st, 200);
    for (a, b) in first["accepted"]
        .as_array()
        .unwrap()
        .iter()
        .zip(again["accepted"].as_array().unwrap())
    {
        assert_eq!(a["seq"], b["seq"]);
        assert_eq!(a["id"], b["id"]);
        assert_eq!(b["duplicate"], true);
    }
    let before = s.all_events(&viewer).await.len();
    assert_eq!(before, 7);

    let mut bad = sample();
    for (i, e) in bad.iter_mut().enumerate() {
        e["id"] = json!(format!("new-{i}"));
    }
    bad[2]["details"] = json!("not an object");
    let (st, b) = s.post("/v1/events", &ingest, json!({"events": bad})).await;
    assert_eq!(st, 422, "{b}");
    assert_eq!(b["error"]["code"], "invalid_event");
    assert_eq!(
        b["error"]["details"][0],
        json!({"index": 2, "field": "details", "reason": "must be an object"})
    );
    let cases = [
        (json!({"action": "a", "seq": 9}), 422, "seq"),
        (json!({"id": "x".repeat(257), "action": "a"}), 422, "id"),
        (
            json!({"action": "a", "occurred_at": "2099-01-01T00:00:00Z"}),
            422,
            "occurred_at",
        ),
        (
            json!({"action": "a", "details": {"k": "v\u{0}"}}),
            422,
            "details",
        ),
        (
            json!({"action": "a", "details": {"k": "x".repeat(40_000)}}),
            422,
            "details.k",
        ),
        (
            json!({"action": "a", "details": (0..5).map(|i| (format!("k{i}"), json!("x".repeat(7000)))).collect::<serde_json::Map<_, _>>()}),
            422,
            "details",
        ),
        (
            json!({"events": (0..1001).map(|_| json!({"action": "a"})).collect::<Vec<_>>()}),
            413,
            "events",
        ),
    ];
    for (body, status, field) in cases {
        let (st, b) = s.post("/v1/events", &ingest, body).await;
        assert_eq!(st, status, "{b}");
        assert_eq!(b["error"]["details"][0]["field"], field, "{b}");
    }
    let huge = format!(
        "{{\"action\":\"a\",\"details\":{{\"k\":\"{}\"}}}}",
        "x".repeat(6 << 20)
    );
    let r = s
        .http
        .post(format!("{}/v1/events", s.base))
        .bearer_auth(&ingest)
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let r = s
        .http
        .post(format!("{}/v1/events", s.base))
        .bearer_auth(&ingest)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = s
        .http
        .post(format!("{}/v1/events", s.base))
        .bearer_auth(&ingest)
        .body(vec![b'{', 0xff, b'}'])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        s.all_events(&viewer).await.len(),
        before,
        "rejected requests changed nothing"
    );
    s.stop().await;
}

#[tokio::test]
async fn roles_and_tenants_are_enforced_on_every_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    s.create_org("acme").await;
    s.create_org("globex").await;
    let ingest = s.key("acme", "ingest").await;
    let viewer = s.key("acme", "viewer").await;
    let admin = s.key("acme", "admin").await;
    let other_admin = s.key("globex", "admin").await;
    let other_viewer = s.key("globex", "viewer").await;
    assert_eq!(
        s.post("/v1/events", &ingest, json!({"action": "a"}))
            .await
            .0,
        200
    );

    // (method, path, body) × expected status for [ingest, viewer, admin, platform admin, other org admin, no/bad token]
    let ev = json!({"action": "x"});
    let key = json!({"name": "n", "role": "viewer"});
    let table: Vec<(&str, &str, Option<Value>, [u16; 6])> = vec![
        (
            "POST",
            "/v1/events",
            Some(ev),
            [200, 403, 200, 403, 200, 401],
        ),
        ("GET", "/v1/events", None, [403, 200, 200, 403, 200, 401]),
        (
            "GET",
            "/v1/checkpoints/latest",
            None,
            [403, 200, 200, 403, 200, 401],
        ),
        (
            "GET",
            "/v1/public-key",
            None,
            [403, 200, 200, 403, 200, 401],
        ),
        (
            "GET",
            "/v1/proofs/inclusion?seq=1",
            None,
            [403, 200, 200, 403, 200, 401],
        ),
        (
            "GET",
            "/v1/proofs/consistency?from=1",
            None,
            [403, 200, 200, 403, 200, 401],
        ),
        (
            "POST",
            "/v1/orgs/acme/keys",
            Some(key),
            [403, 403, 201, 201, 404, 401],
        ),
        (
            "GET",
            "/v1/orgs/acme/keys",
            None,
            [403, 403, 200, 200, 404, 401],
        ),
        (
            "DELETE",
            "/v1/orgs/acme/keys/key_doesnotexist",
            None,
            [403, 403, 404, 404, 404, 401],
        ),
        (
            "POST",
            "/v1/orgs",
            Some(json!({"id": "new-org"})),
            [403, 403, 403, 201, 403, 401],
        ),
    ];
    for (method, path, body, expected) in table {
        for (who, token) in [
            &ingest,
            &viewer,
            &admin,
            &ADMIN.to_owned(),
            &other_admin,
            &"ark_key_0_bogus".to_owned(),
        ]
        .into_iter()
        .enumerate()
        {
            let (st, b) = s.call(method, path, token, body.clone()).await;
            assert_eq!(st, expected[who], "{method} {path} as caller #{who}: {b}");
            if st >= 400 {
                assert!(
                    b["error"]["code"].is_string(),
                    "JSON error for {method} {path}: {b}"
                );
            }
        }
    }
    let r = s
        .http
        .get(format!("{}/v1/events", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // The other org sees none of acme's events; acme's admin sees only its own.
    let theirs = s.all_events(&other_viewer).await;
    assert!(theirs.iter().all(|e| e["org_id"] == "globex"), "{theirs:?}");
    assert!(
        s.all_events(&admin)
            .await
            .iter()
            .all(|e| e["org_id"] == "acme")
    );
    // Revoking a key locks it out at once.
    let key_id = auditrail_server::auth::key_id_of(&ingest)
        .unwrap()
        .to_owned();
    let (st, _) = s
        .call(
            "DELETE",
            &format!("/v1/orgs/acme/keys/{key_id}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(
        s.post("/v1/events", &ingest, json!({"action": "a"}))
            .await
            .0,
        401
    );
    // Key changes are in the org's own log, by whoever made them.
    let actions: Vec<String> = s
        .all_events(&admin)
        .await
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(actions[0], "createOrg");
    assert!(actions.contains(&"revokeApiKey".to_owned()));
    s.stop().await;
}

fn spki_der(raw: &[u8]) -> Vec<u8> {
    let mut der = hex::decode("302a300506032b6570032100").unwrap();
    der.extend_from_slice(raw);
    der
}

/// Verifies a checkpoint note with OpenSSL, parsing it by hand: an implementation
/// that shares no code with the signer.
fn openssl_verifies(note: &str, vkey: &str) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let (text, sigs) = note.split_at(note.rfind("\n\n").unwrap() + 1);
    let line = sigs.trim_start_matches('\n').lines().next().unwrap();
    let b64 = line.rsplit(' ').next().unwrap();
    let blob = B64.decode(b64).unwrap();
    let parts: Vec<&str> = vkey.trim().splitn(3, '+').collect();
    let key = B64.decode(parts[2]).unwrap();
    assert_eq!(key[0], 1, "Ed25519 algorithm byte");
    let mut h = <sha2::Sha256 as sha2::Digest>::new();
    sha2::Digest::update(&mut h, format!("{}\n", parts[0]).as_bytes());
    sha2::Digest::update(&mut h, &key);
    assert_eq!(&sha2::Digest::finalize(h)[..4], &blob[..4], "key hash");
    std::fs::write(dir.path().join("pub.der"), spki_der(&key[1..])).unwrap();
    std::fs::write(dir.path().join("msg"), text).unwrap();
    std::fs::write(dir.path().join("sig"), &blob[4..]).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["pkeyutl", "-verify", "-pubin", "-keyform", "DER", "-rawin"])
        .arg("-inkey")
        .arg(dir.path().join("pub.der"))
        .arg("-in")
        .arg(dir.path().join("msg"))
        .arg("-sigfile")
        .arg(dir.path().join("sig"))
        .output()
        .expect("openssl is installed");
    out.status.success()
}

#[tokio::test]
async fn checkpoints_and_proofs_verify_independently() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    s.create_org("acme").await;
    let (ingest, viewer) = (s.key("acme", "ingest").await, s.key("acme", "viewer").await);
    let batch: Vec<Value> = (0..37)
        .map(|i| json!({"action": "a", "details": {"i": i, "f": 0.5}}))
        .collect();
    s.post("/v1/events", &ingest, json!({"events": batch}))
        .await;
    let cp = s
        .http
        .get(format!("{}/v1/checkpoints/latest", s.base))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert!(
        cp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let note = cp.text().await.unwrap();
    let vkey = s
        .http
        .get(format!("{}/v1/public-key", s.base))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        openssl_verifies(&note, &vkey),
        "OpenSSL accepts the checkpoint signature"
    );
    assert!(
        !openssl_verifies(&note.replacen("\n40\n", "\n41\n", 1), &vkey),
        "and refuses an altered one"
    );
    let lines: Vec<&str> = note.lines().collect();
    assert_eq!(lines[0], "auditrail.test/acme");
    assert_eq!(lines[1], "40");
    let events = s.all_events(&viewer).await;
    let leaves: Vec<[u8; 32]> = events.iter().map(independent_leaf).collect();
    assert_eq!(
        B64.encode(independent_root(&leaves)),
        lines[2],
        "root matches an independent recomputation"
    );

    for (seq, size) in [(1u64, 40u64), (17, 40), (40, 40), (3, 5)] {
        let (st, p) = s
            .get(
                &format!("/v1/proofs/inclusion?seq={seq}&tree_size={size}"),
                &viewer,
            )
            .await;
        assert_eq!(st, 200, "{p}");
        let hashes: Vec<[u8; 32]> = p["hashes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| B64.decode(h.as_str().unwrap()).unwrap().try_into().unwrap())
            .collect();
        let root = independent_root(&leaves[..size as usize]);
        auditrail_core::merkle::verify_inclusion(
            seq - 1,
            size,
            &leaves[(seq - 1) as usize],
            &hashes,
            &root,
        )
        .unwrap();
    }
    let (_, c) = s.get("/v1/proofs/consistency?from=7&to=40", &viewer).await;
    let hashes: Vec<[u8; 32]> = c["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| B64.decode(h.as_str().unwrap()).unwrap().try_into().unwrap())
        .collect();
    auditrail_core::merkle::verify_consistency(
        7,
        40,
        &independent_root(&leaves[..7]),
        &independent_root(&leaves),
        &hashes,
    )
    .unwrap();
    // Malformed: 422. Well formed but beyond the log as it is now: 409.
    for (q, status, field) in [
        ("inclusion?seq=0", 422, "seq"),
        ("inclusion?seq=41", 409, "seq"),
        ("inclusion?seq=5&tree_size=4", 422, "seq"),
        ("inclusion?seq=1&tree_size=99", 409, "tree_size"),
        ("inclusion?seq=x", 422, "seq"),
        ("inclusion?seq=1&seq=2", 422, "seq"),
        ("inclusion?seq=1&size=2", 422, "size"),
        ("consistency?from=9&to=8", 422, "from"),
        ("consistency?from=0", 422, "from"),
        ("consistency?from=41", 409, "from"),
        ("consistency?from=1&to=41", 409, "to"),
    ] {
        let (st, b) = s.get(&format!("/v1/proofs/{q}"), &viewer).await;
        assert_eq!(
            (st, b["error"]["details"][0]["field"].as_str()),
            (status, Some(field)),
            "{q}: {b}"
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn restart_keeps_seqs_root_and_idempotency() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    s.create_org("acme").await;
    let (ingest, viewer) = (s.key("acme", "ingest").await, s.key("acme", "viewer").await);
    s.post("/v1/events", &ingest, json!({"events": sample()}))
        .await;
    let note_before = s
        .http
        .get(format!("{}/v1/checkpoints/latest", s.base))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    s.stop().await;

    let s = TestServer::start(dir.path()).await;
    let note_after = s
        .http
        .get(format!("{}/v1/checkpoints/latest", s.base))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(note_before, note_after, "same tree, same signed checkpoint");
    let (_, again) = s
        .post("/v1/events", &ingest, json!({"events": sample()}))
        .await;
    assert!(
        again["accepted"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["duplicate"] == true)
    );
    let (_, next) = s
        .post("/v1/events", &ingest, json!({"action": "after-restart"}))
        .await;
    assert_eq!(next["accepted"][0]["seq"], 8);
    let events = s.all_events(&viewer).await;
    assert_eq!(
        events
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        (1..=8).collect::<Vec<_>>()
    );
    let ids: HashSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 8);
    let (_, c) = s.get("/v1/proofs/consistency?from=7&to=8", &viewer).await;
    let old_root = note_before.lines().nth(2).unwrap();
    assert_eq!(
        c["from_root"], old_root,
        "the pre-restart tree is a prefix of the new one"
    );
    s.stop().await;
}

#[tokio::test]
async fn operations_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    s.create_org("acme").await;
    let ingest = s.key("acme", "ingest").await;
    s.post("/v1/events", &ingest, json!({"events": sample()}))
        .await;
    let get = |p: &'static str| {
        let (http, base) = (s.http.clone(), s.base.clone());
        async move { http.get(format!("{base}{p}")).send().await.unwrap() }
    };
    assert_eq!(get("/healthz").await.status(), 200);
    assert_eq!(get("/readyz").await.status(), 200);
    let m = get("/metrics").await.text().await.unwrap();
    for name in [
        "auditrail_ingest_events_total 4",
        "auditrail_commit_batch_events_count",
        "auditrail_commit_seconds_bucket",
        "auditrail_checkpoint_age_seconds",
    ] {
        assert!(m.contains(name), "{name} missing from metrics");
    }
    let doc: Value = get("/openapi.json").await.json().await.unwrap();
    for p in [
        "/v1/events",
        "/v1/orgs",
        "/v1/orgs/{org}/keys",
        "/v1/proofs/inclusion",
        "/v1/checkpoints/latest",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} missing from OpenAPI");
    }
    let r = get("/v1/nope").await;
    assert_eq!(r.status(), 404);
    s.stop().await;
}
