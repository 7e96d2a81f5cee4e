//! C2SP tlog-tiles under /logs/{org}: served from the subtree hashes the store keeps,
//! checked by our own `auditrail verify` and by Go's golang.org/x/mod/sumdb/tlog.
#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed test")]

mod common;

use std::path::PathBuf;
use std::process::Command;

use auditrail_core::merkle;
use auditrail_core::note::NoteSigner;
use auditrail_core::tiles::{self, Kind, Tile};
use common::TestServer;
use serde_json::{Value, json};

fn log_key() -> String {
    NoteSigner::new("auditrail.test", [42u8; 32])
        .unwrap()
        .verifier_key()
}

async fn raw(srv: &TestServer, path: &str, token: &str) -> reqwest::Response {
    srv.http
        .get(format!("{}{path}", srv.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// Builds the Go checker; None when Go or x/mod is missing (required in CI).
fn go_checker(dir: &std::path::Path) -> Option<PathBuf> {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/go/tlogcheck");
    let out = dir.join("tlogcheck");
    let built = Command::new("go")
        .args(["build", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(&src)
        .env("GO111MODULE", "off")
        .env("GOPATH", "/usr/share/gocode")
        .env("GOCACHE", dir.join("gocache"))
        .output();
    match built {
        Ok(o) if o.status.success() => Some(out),
        other => {
            assert!(
                std::env::var("AUDITRAIL_REQUIRE_GO").is_err(),
                "Go's sumdb/tlog checker could not be built: {other:?}"
            );
            eprintln!("skipping the Go check: go or golang-golang-x-mod-dev is missing");
            None
        }
    }
}

/// The bucket `audit` served over plain HTTP as a customer would put it behind a CDN
/// or a public endpoint: each object's body with the type and encoding it was stored
/// with, read from the S3 server (SigV4). Returns the base URL.
async fn serve_bucket(endpoint: String, ak: &str, sk: &str) -> String {
    use axum::response::IntoResponse;
    use object_store::{Attribute, ObjectStoreExt};
    let store = std::sync::Arc::new(common::s3_client(&endpoint, "audit", ak, sk));
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let store = store.clone();
        async move {
            let path = object_store::path::Path::from(uri.path().trim_start_matches('/'));
            let Ok(r) = store.get(&path).await else {
                return axum::http::StatusCode::NOT_FOUND.into_response();
            };
            let mut headers = axum::http::HeaderMap::new();
            for (attr, name) in [
                (Attribute::ContentEncoding, "content-encoding"),
                (Attribute::ContentType, "content-type"),
            ] {
                if let Some(v) = r.attributes.get(&attr) {
                    headers.insert(name, v.as_ref().parse().unwrap());
                }
            }
            (headers, r.bytes().await.unwrap()).into_response()
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiles_are_served_and_check_out_with_go_sumdb_tlog() {
    let dir = tempfile::tempdir().unwrap();
    let srv = TestServer::start(dir.path()).await;
    srv.create_org("acme").await;
    srv.create_org("other").await;
    let admin = srv.key("acme", "admin").await;
    let viewer = srv.key("acme", "viewer").await;
    let ingest = srv.key("acme", "ingest").await;
    let other = srv.key("other", "admin").await;
    // 1,300 events and the self-audit ones: full and partial tiles at levels 0 and 1.
    for batch in 0..13 {
        let events: Vec<Value> = (0..100)
            .map(|i| json!({"action": "updateProject", "actor": {"id": format!("u-{batch}-{i}")}, "details": {"n": i}}))
            .collect();
        let (s, b) = srv
            .post("/v1/events", &ingest, json!({ "events": events }))
            .await;
        assert_eq!(s, 200, "{b}");
    }
    let size = srv.app.store.tree_head("acme").await.unwrap().size;
    assert!(size > 1300 && size % 256 != 0);

    // The checkpoint, each tile, each bundle: as the layout says.
    let r = raw(&srv, "/logs/acme/checkpoint", &viewer).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    assert!(
        r.text()
            .await
            .unwrap()
            .starts_with(&format!("auditrail.test/acme\n{size}\n"))
    );
    let events = srv.all_events(&admin).await;
    let by_seq: std::collections::BTreeMap<u64, merkle::Hash> = events
        .iter()
        .map(|e| (e["seq"].as_u64().unwrap(), common::independent_leaf(e)))
        .collect();
    let leaves: Vec<merkle::Hash> = by_seq.values().copied().collect();
    for t in tiles::tiles_for(size) {
        let r = raw(&srv, &format!("/logs/acme/{}", t.path()), &viewer).await;
        assert_eq!(r.status(), 200, "{}", t.path());
        assert_eq!(
            r.headers()["cache-control"],
            "private, max-age=31536000, immutable"
        );
        let body = r.bytes().await.unwrap();
        let (a, b) = t.leaf_range().unwrap();
        match t.kind {
            Kind::Entries => {
                let entries = tiles::decode_bundle(&body).unwrap();
                assert_eq!(entries.len(), (b - a) as usize);
                for (i, e) in entries.iter().enumerate() {
                    assert_eq!(
                        merkle::leaf_hash(e),
                        leaves[a as usize + i],
                        "entry {}",
                        a as usize + i
                    );
                }
                // Compressed at the HTTP layer for a client that accepts gzip.
                let r = srv
                    .http
                    .get(format!("{}/logs/acme/{}", srv.base, t.path()))
                    .bearer_auth(&viewer)
                    .header("accept-encoding", "gzip, identity")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.headers()["content-encoding"], "gzip");
                assert_eq!(r.headers()["vary"], "accept-encoding");
                let gz = r.bytes().await.unwrap();
                let mut plain = Vec::new();
                std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut plain)
                    .unwrap();
                assert_eq!(plain, body);
            }
            Kind::Hashes(_) => {
                assert_eq!(body.len(), usize::from(t.width) * 32);
                let span = 1usize << t.tree_level();
                for (i, h) in body.chunks(32).enumerate() {
                    let lo = a as usize + i * span;
                    assert_eq!(
                        h,
                        common::independent_root(&leaves[lo..lo + span]),
                        "{} hash {i}",
                        t.path()
                    );
                }
            }
        }
    }
    // Refusals: beyond the tree, malformed, other orgs, ingest keys.
    let beyond = Tile {
        kind: Kind::Hashes(0),
        index: size / 256 + 1,
        width: 256,
    };
    assert_eq!(
        raw(&srv, &format!("/logs/acme/{}", beyond.path()), &viewer)
            .await
            .status(),
        404
    );
    assert_eq!(
        raw(&srv, "/logs/acme/tile/0/1", &viewer).await.status(),
        404
    );
    assert_eq!(
        raw(&srv, "/logs/acme/tile/0/000", &other).await.status(),
        404
    );
    assert_eq!(
        raw(&srv, "/logs/other/tile/0/000", &viewer).await.status(),
        404
    );
    assert_eq!(
        raw(&srv, "/logs/acme/tile/0/000", &ingest).await.status(),
        403
    );
    assert_eq!(
        raw(&srv, "/logs/acme/checkpoint", "nope").await.status(),
        401
    );

    // Our own verifier, from the tiles alone.
    let out = Command::new(common::BIN)
        .args([
            "verify",
            &format!("{}/logs/acme", srv.base),
            "--public-key",
            &log_key(),
        ])
        .env("AUDITRAIL_TOKEN", &viewer)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("{size} entries")));

    // Go's sumdb/tlog: every tile against the root, every entry's inclusion.
    if let Some(go) = go_checker(dir.path()) {
        let out = Command::new(&go)
            .arg(format!("{}/logs/acme", srv.base))
            .arg(log_key())
            .env("AUDITRAIL_TOKEN", &viewer)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&format!("ok: {size} entries proven")),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        // And it notices a wrong key.
        let wrong = NoteSigner::new("auditrail.test", [1u8; 32])
            .unwrap()
            .verifier_key();
        let out = Command::new(&go)
            .arg(format!("{}/logs/acme", srv.base))
            .arg(wrong)
            .env("AUDITRAIL_TOKEN", &viewer)
            .output()
            .unwrap();
        assert!(!out.status.success());
    }
    srv.stop().await;
}

/// The same log, written as tiles beside the objects of an S3 destination: the bucket is
/// itself a tiled log. Go's sumdb/tlog reads it from the S3 server's files; `auditrail
/// verify` checks it, with the witness's cosignature required.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_bucket_is_a_tiled_log_with_cosigned_checkpoints() {
    use auditrail_core::cosignature::CosignatureVerifier;
    use std::time::Duration;
    const AK: &str = "AKIDEVTESTKEY0001";
    const SK: &str = "dev-test-secret-key";
    let dir = tempfile::tempdir().unwrap();
    let s3root = dir.path().join("s3");
    std::fs::create_dir_all(&s3root).unwrap();
    let s3 = auditrail_s3_dev::DevS3::start(&s3root, "127.0.0.1:0".parse().unwrap(), AK, SK)
        .await
        .unwrap();
    s3.create_bucket("audit").unwrap();
    // A witness the org runs.
    let wdir = dir.path().join("w");
    let out = Command::new(common::BIN)
        .args([
            "witness",
            "--print-key",
            "--name",
            "witness.test/b",
            "--data-dir",
        ])
        .arg(&wdir)
        .output()
        .unwrap();
    let wkey = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let mut child = Command::new(common::BIN)
        .args([
            "witness",
            "--listen",
            "127.0.0.1:0",
            "--name",
            "witness.test/b",
            "--data-dir",
        ])
        .arg(&wdir)
        .arg("--log")
        .arg(format!("auditrail.test/acme={}", log_key()))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let wbase = common::process::listening_after(&mut child, "auditrail witness listening on ");
    let _w = common::process::Serve {
        child,
        base: wbase.clone(),
    };

    let srv = TestServer::start_custom(&dir.path().join("data"), |s| {
        s.delivery.poll = Duration::from_millis(50);
        s.checkpoint_interval = Duration::from_millis(100);
    })
    .await;
    srv.create_org("acme").await;
    let admin = srv.key("acme", "admin").await;
    let (s, b) = srv
        .call(
            "PUT",
            "/v1/witnesses/mine",
            &admin,
            Some(json!({"url": wbase, "verifier_key": wkey})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = srv
        .call(
            "PUT",
            "/v1/destinations/lake",
            &admin,
            Some(json!({
                "kind": "s3", "bucket": "audit", "prefix": "logs", "region": "us-east-1",
                "endpoint": s3.endpoint(), "max_batch_events": 300, "max_batch_seconds": 1,
                "credentials": {"access_key_id": AK, "secret_access_key": SK},
            })),
        )
        .await;
    assert!(s == 200 || s == 201, "{b}");
    assert_eq!(b["tiles"], true, "{b}");
    // A destination can leave the tiled log out.
    let (s, b) = srv
        .call(
            "PUT",
            "/v1/destinations/plain",
            &admin,
            Some(json!({
                "kind": "s3", "bucket": "audit", "prefix": "plain", "region": "us-east-1",
                "endpoint": s3.endpoint(), "max_batch_events": 300, "max_batch_seconds": 1, "tiles": false,
                "credentials": {"access_key_id": AK, "secret_access_key": SK},
            })),
        )
        .await;
    assert!(s == 200 || s == 201, "{b}");
    assert_eq!(b["tiles"], false, "{b}");
    for batch in 0..9 {
        let events: Vec<Value> = (0..150)
            .map(|i| json!({"action": "updateProject", "actor": {"id": format!("u-{batch}-{i}")}}))
            .collect();
        let (s, b) = srv
            .post("/v1/events", &admin, json!({ "events": events }))
            .await;
        assert_eq!(s, 200, "{b}");
    }
    // Wait until everything is delivered and the tiled checkpoint is a cosigned one
    // covering all of it (the log is quiet now, so the two meet).
    let tlog = s3root.join("audit/logs/org=acme/_tlog");
    let w = CosignatureVerifier::parse(&wkey).unwrap();
    let mut settled = false;
    for _ in 0..400 {
        let head = srv.app.store.tree_head("acme").await.unwrap().size;
        if let Ok(note) = std::fs::read_to_string(tlog.join("checkpoint"))
            && note.starts_with(&format!("auditrail.test/acme\n{head}\n"))
            && w.verify(&note).is_ok()
        {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        settled,
        "the bucket's tiled checkpoint never caught up, cosigned"
    );
    let out = Command::new(common::BIN)
        .arg("verify")
        .arg(s3root.join("audit/logs"))
        .args(["--public-key", &log_key(), "--witness", &wkey, "--quiet"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("the tiled log (_tlog) checks out"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Entry bundles are stored gzip'd and say so, as tlog-tiles asks; tiles are not.
    let bundle = tlog.join("tile/entries/000");
    assert!(
        std::fs::read(&bundle)
            .unwrap()
            .starts_with(&[0x1f, 0x8b, 0x08])
    );
    let bucket = serve_bucket(s3.endpoint(), AK, SK).await;
    let r = reqwest::get(format!("{bucket}/logs/org=acme/_tlog/tile/entries/000"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    let r = reqwest::get(format!("{bucket}/logs/org=acme/_tlog/tile/0/000"))
        .await
        .unwrap();
    assert!(r.headers().get("content-encoding").is_none());
    assert_eq!(r.bytes().await.unwrap().len(), 8192);
    // Read through S3 itself (the object's stored encoding), and through the bucket
    // served over HTTP, where Go's net/http undoes the gzip as any HTTP client would.
    let out = Command::new(common::BIN)
        .arg("verify")
        .arg("s3://audit/logs")
        .args(["--public-key", &log_key(), "--witness", &wkey, "--quiet"])
        .args(["--endpoint", &s3.endpoint()])
        .env("AWS_ACCESS_KEY_ID", AK)
        .env("AWS_SECRET_ACCESS_KEY", SK)
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if let Some(go) = go_checker(dir.path()) {
        for base in [
            tlog.display().to_string(),
            format!("{bucket}/logs/org=acme/_tlog"),
        ] {
            let out = Command::new(&go)
                .arg(&base)
                .arg(log_key())
                .arg(&wkey)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{base}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    // A tile altered in the bucket is caught.
    let t0 = tlog.join("tile/0/000");
    let mut bytes = std::fs::read(&t0).unwrap();
    bytes[5] ^= 1;
    std::fs::write(&t0, bytes).unwrap();
    let out = Command::new(common::BIN)
        .arg("verify")
        .arg(s3root.join("audit/logs"))
        .args(["--public-key", &log_key(), "--quiet"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("tile/0/000"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    srv.stop().await;
}
