//! Sealed segments end to end: a real server seals in the background and every read path
//! (search with filters and text, the tiles, proofs, exports in every text format) answers
//! byte for byte what it answered before; `auditrail seal` killed at random points
//! loses and duplicates nothing.
#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed test")]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{BIN, TestServer};
use serde_json::{Value, json};

fn export(dir: &Path, store: &[&str], format: &str, out: &Path) -> Vec<u8> {
    let today = chrono::Utc::now().date_naive();
    let from = (today - chrono::Duration::days(1)).to_string();
    let to = (today + chrono::Duration::days(1)).to_string();
    let o = common::run(
        &[
            "export",
            "--org",
            "acme",
            "--from",
            &from,
            "--to",
            &to,
            "--format",
            format,
            "--no-proof",
            "-o",
            out.to_str().unwrap(),
        ]
        .iter()
        .chain(store)
        .copied()
        .collect::<Vec<_>>(),
        dir,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::read(out).unwrap()
}

/// What the API answers for `org`'s log: searches, tiles and proofs.
async fn reads(srv: &TestServer, token: &str) -> Vec<String> {
    let mut out = Vec::new();
    for q in [
        "limit=1000&order=asc",
        "limit=1000",
        "limit=1000&actor_id=u-3",
        "limit=1000&q=%22note%202%22",
        "limit=1000&q=-%22note%201%22%20action:b",
        "limit=17&order=asc",
    ] {
        let (s, b) = srv.get(&format!("/v1/events?{q}"), token).await;
        assert_eq!(s, 200, "{b}");
        out.push(b["events"].to_string());
    }
    let size = srv.app.store.tree_head("acme").await.unwrap().size;
    for t in auditrail_core::tiles::tiles_for(size) {
        let r = srv
            .http
            .get(format!("{}/logs/acme/{}", srv.base, t.path()))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        out.push(hex::encode(r.bytes().await.unwrap()));
    }
    for seq in [1, 300, 511, 777, size] {
        let (s, b) = srv
            .get(
                &format!("/v1/proofs/inclusion?seq={seq}&tree_size={size}"),
                token,
            )
            .await;
        assert_eq!(s, 200, "{b}");
        out.push(b.to_string());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_log_reads_the_same_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let never = |s: &mut auditrail_server::Settings| s.sealing.keep_open = 1 << 40;
    let srv = TestServer::start_custom(&data, never).await;
    srv.create_org("acme").await;
    let admin = srv.key("acme", "admin").await;
    for b in 0..9 {
        let events: Vec<Value> = (0..100)
            .map(|i| {
                json!({"action": (["a", "b", "c"][i % 3]), "actor": {"id": format!("u-{}", i % 5)},
                       "details": {"note": format!("note {}", i % 4), "batch": b}})
            })
            .collect();
        let (s, body) = srv
            .post("/v1/events", &admin, json!({"events": events}))
            .await;
        assert_eq!(s, 200, "{body}");
    }
    srv.stop().await;
    // Exports are read before sealing (each one adds its own audit event after the rows
    // it wrote, so later exports begin with these bytes).
    let (nd0, csv0) = (
        export(&data, &[], "ndjson", &dir.path().join("a.ndjson")),
        export(&data, &[], "csv", &dir.path().join("a.csv")),
    );
    let srv = TestServer::start_custom(&data, never).await;
    let before = reads(&srv, &admin).await;
    srv.stop().await;

    // The same data dir, sealing everything but the newest 100 events.
    let srv = TestServer::start_custom(&data, |s| {
        s.sealing.keep_open = 100;
        s.sealing.interval = Duration::from_millis(100);
    })
    .await;
    let mut sealed = false;
    for _ in 0..100 {
        let text = srv
            .http
            .get(format!("{}/metrics", srv.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains("auditrail_sealed_events 768")
            && text.contains("auditrail_sealing_backlog_events 0")
        {
            assert!(text.contains("auditrail_store_bytes_per_event"), "{text}");
            sealed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(sealed, "the server never sealed the 3 complete tiles");
    let c = srv.app.store.sealing("acme", 100).await.unwrap();
    assert_eq!((c.sealed, c.backlog), (768, 0));
    let after = reads(&srv, &admin).await;
    assert_eq!(after.len(), before.len());
    for (i, (a, b)) in after.iter().zip(&before).enumerate() {
        let at = a
            .bytes()
            .zip(b.bytes())
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len()));
        assert!(
            a == b,
            "read {i} differs at byte {at}: {:?} vs {:?}",
            &a[at.saturating_sub(80)..(at + 80).min(a.len())],
            &b[at.saturating_sub(80)..(at + 80).min(b.len())]
        );
    }
    srv.stop().await;
    let (nd1, csv1) = (
        export(&data, &[], "ndjson", &dir.path().join("b.ndjson")),
        export(&data, &[], "csv", &dir.path().join("b.csv")),
    );
    assert!(nd1.starts_with(&nd0) && nd1.len() > nd0.len());
    assert!(csv1.starts_with(&csv0) && csv1.len() > csv0.len());
}

#[test]
fn sealing_killed_at_random_points_loses_and_duplicates_nothing() {
    killed_at_random_points(&[]);
}

#[test]
fn sealing_on_postgres_killed_at_random_points_loses_and_duplicates_nothing() {
    let Some(server) = auditrail_store::postgres::testdb::server_url() else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt
        .block_on(auditrail_store::postgres::testdb::TestDb::create(&server))
        .unwrap();
    killed_at_random_points(&["--database-url", &db.url]);
    rt.block_on(async move { drop(db) });
}

/// Ingests 60,000 events, kills `auditrail seal` six times at random points, seals the
/// rest: the export reads the same bytes, nothing lost or repeated. `store` names the
/// store (none: the data dir's SQLite).
fn killed_at_random_points(store: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let with = |args: &[&str]| -> Vec<String> {
        args.iter().chain(store).map(|s| s.to_string()).collect()
    };
    let run = |args: &[&str]| {
        let args = with(args);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::run(&args, &data)
    };
    let src = dir.path().join("events.ndjson");
    let mut lines = String::new();
    for i in 0..60_000 {
        lines.push_str(
            &json!({"action": "tick", "actor": {"id": format!("u-{}", i % 13)}, "details": {"i": i}})
                .to_string(),
        );
        lines.push('\n');
    }
    std::fs::write(&src, lines).unwrap();
    let ok = |o: std::process::Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    ok(run(&["orgs", "create", "acme"]));
    ok(run(&["ingest", "--org", "acme", src.to_str().unwrap()]));
    let before = export(&data, store, "ndjson", &dir.path().join("a.ndjson"));
    // Killed with SIGKILL after a random while, several times over.
    let mut seed = std::process::id() as u64;
    for _ in 0..6 {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let mut child = Command::new(BIN)
            .args(with(&["seal", "--keep-open", "1", "--lease-ttl", "1s"]))
            .arg("--data-dir")
            .arg(&data)
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(5 + (seed >> 33) % 150));
        let _ = child.kill();
        child.wait().unwrap();
    }
    let out = ok(run(&["seal", "--keep-open", "1", "--lease-ttl", "1s"]));
    let stats = ok(run(&["seal", "--stats"]));
    assert!(
        stats.contains("sealed: 59904;") && stats.contains("sealing backlog: 0"),
        "{out}{stats}"
    );
    assert!(stats.contains("bytes an event"), "{stats}");
    // `auditrail status` says the same, org by org.
    let status: serde_json::Value = serde_json::from_str(&ok(run(&["status", "--json"]))).unwrap();
    let acme = &status["orgs"][0];
    assert_eq!(acme["org"], "acme", "{status}");
    let events = acme["events"].as_u64().unwrap();
    assert!(events > 60_000, "{status}");
    assert_eq!(acme["sealed"], 59_904, "{status}");
    assert_eq!(acme["open"], events - 59_904, "{status}");
    assert_eq!(acme["backlog"], 0, "{status}");
    assert_eq!(status["events"], events, "{status}");
    assert_eq!(status["sealing_backlog"], 0, "{status}");
    let disk = status["disk_bytes"].as_u64().unwrap();
    let per = status["bytes_per_event"].as_f64().unwrap();
    assert!(
        disk > 0 && (per - disk as f64 / events as f64).abs() < 1e-6,
        "{status}"
    );
    let text = ok(run(&["status"]));
    assert!(
        text.contains("acme") && text.contains("sealed: 59904;"),
        "{text}"
    );
    // The export before sealing added its own event after its rows: the rows are the
    // same bytes, and follow with nothing lost or repeated.
    let after = export(&data, store, "ndjson", &dir.path().join("b.ndjson"));
    assert!(
        after.starts_with(&before),
        "the sealed events read back differently"
    );
    let lines = |b: &[u8]| b.split(|&c| c == b'\n').filter(|l| !l.is_empty()).count();
    assert_eq!(lines(&after), lines(&before) + 1);
}
