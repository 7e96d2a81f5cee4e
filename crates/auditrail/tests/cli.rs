//! The `auditrail` binary as users run it: a crash test with SIGKILL, the data-dir lock,
#![expect(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]
//! bulk ingest, local administration and configuration.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use common::process::listening_base;
use common::{BIN, independent_leaf, independent_root, run};
use serde_json::{Value, json};

const ADMIN: &str = "cli-test-admin-token";

struct Serve {
    child: Child,
    base: String,
}

fn serve(dir: &Path) -> Serve {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("AUDITRAIL_ADMIN_TOKEN", ADMIN)
        .env("AUDITRAIL_CHECKPOINT_INTERVAL", "200ms")
        // These tests read the `events` rows themselves: nothing is sealed under them.
        .env("AUDITRAIL_SEAL_KEEP_OPEN", "1099511627776")
        .env("AUDITRAIL_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start auditrail serve");
    let base = listening_base(&mut child);
    Serve { child, base }
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: Value,
) -> reqwest::Result<(u16, Value)> {
    let r = http.post(url).bearer_auth(token).json(&body).send().await?;
    let s = r.status().as_u16();
    Ok((s, r.json().await.unwrap_or(Value::Null)))
}

/// The latest signed checkpoint of the token's org, as text.
async fn latest_note(http: &reqwest::Client, base: &str, token: &str) -> String {
    http.get(format!("{base}/v1/checkpoints/latest"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Creates the org `acme` on the server at `base` and a key of `role` in it; its token.
async fn org_acme_with_key(http: &reqwest::Client, base: &str, role: &str) -> String {
    let (s, org) = post(
        http,
        &format!("{base}/v1/orgs"),
        ADMIN,
        json!({"id": "acme"}),
    )
    .await
    .unwrap();
    assert_eq!(s, 201, "{org}");
    acme_key(http, base, role).await
}

/// Creates a key of `role` in the org `acme` on the server at `base`; its token.
async fn acme_key(http: &reqwest::Client, base: &str, role: &str) -> String {
    let (s, key) = post(
        http,
        &format!("{base}/v1/orgs/acme/keys"),
        ADMIN,
        json!({"name": role, "role": role}),
    )
    .await
    .unwrap();
    assert_eq!(s, 201, "{key}");
    key["token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_concurrent_ingest_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let mut srv = serve(dir.path());
    let http = reqwest::Client::new();
    let token = org_acme_with_key(&http, &srv.base, "admin").await;

    // 16 clients send batches until the server dies; record every acknowledgement.
    let acked: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let mut clients = Vec::new();
    for c in 0..16 {
        let (http, url, token, acked) = (
            http.clone(),
            format!("{}/v1/events", srv.base),
            token.clone(),
            acked.clone(),
        );
        clients.push(tokio::spawn(async move {
            for b in 0.. {
                let n = if c % 2 == 0 { 1 } else { 50 };
                let events: Vec<Value> = (0..n).map(|i| json!({"id": format!("c{c}-b{b}-{i}"), "action": "crash.test", "details": {"c": c}})).collect();
                let Ok((200, body)) = post(&http, &url, &token, json!({"events": events})).await else { return };
                let mut a = acked.lock().unwrap();
                for x in body["accepted"].as_array().unwrap() {
                    a.insert(x["id"].as_str().unwrap().to_owned(), x["seq"].as_u64().unwrap());
                }
            }
        }));
    }
    // Kill once a good number of events is acknowledged (no fixed sleep).
    while acked.lock().unwrap().len() < 3000 {
        tokio::task::yield_now().await;
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    srv.child.kill().unwrap(); // SIGKILL
    srv.child.wait().unwrap();
    for c in clients {
        c.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let mut srv = serve(dir.path());
    let events = common::all_events(&http, &srv.base, &token).await;
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "seqs are gapless after the crash"
    );
    let by_id: HashMap<&str, u64> = events
        .iter()
        .map(|e| (e["id"].as_str().unwrap(), e["seq"].as_u64().unwrap()))
        .collect();
    assert_eq!(by_id.len(), events.len(), "no event is stored twice");
    for (id, seq) in &acked {
        assert_eq!(
            by_id.get(id.as_str()),
            Some(seq),
            "acknowledged event {id} is present with its seq"
        );
    }
    // The restarted tree is the one the events make.
    let note = latest_note(&http, &srv.base, &token).await;
    let leaves: Vec<[u8; 32]> = events.iter().map(independent_leaf).collect();
    use base64::Engine;
    assert_eq!(note.lines().nth(1).unwrap(), events.len().to_string());
    assert_eq!(
        note.lines().nth(2).unwrap(),
        base64::engine::general_purpose::STANDARD.encode(independent_root(&leaves))
    );
    // And it keeps going.
    let (s, b) = post(
        &http,
        &format!("{}/v1/events", srv.base),
        &token,
        json!({"action": "after"}),
    )
    .await
    .unwrap();
    assert_eq!(
        (s, b["accepted"][0]["seq"].as_u64()),
        (200, Some(events.len() as u64 + 1))
    );
    srv.child.kill().unwrap();
    srv.child.wait().unwrap();
    eprintln!(
        "crash test: {} acknowledged, {} present after restart",
        acked.len(),
        events.len()
    );
}

#[test]
fn data_dir_in_use_is_refused_and_local_admin_works_when_free() {
    let dir = tempfile::tempdir().unwrap();
    let mut srv = serve(dir.path());
    let out = run(&["orgs", "create", "acme"], dir.path());
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use by another auditrail process"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ndjson = dir.path().join("x.ndjson");
    std::fs::write(&ndjson, "{\"action\":\"a\"}\n").unwrap();
    let out = run(
        &["ingest", "--org", "acme", ndjson.to_str().unwrap()],
        dir.path(),
    );
    assert!(
        !out.status.success(),
        "ingest refuses a data dir a server holds"
    );
    srv.child.kill().unwrap();
    srv.child.wait().unwrap();

    let out = run(&["orgs", "create", "acme", "--name", "Acme"], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let org: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(org["name"], "Acme");
    let out = run(
        &["keys", "create", "--org", "acme", "--role", "viewer"],
        dir.path(),
    );
    assert!(out.status.success());
    let key: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(key["token"].as_str().unwrap().starts_with("ark_key_"));
    let out = run(
        &["keys", "create", "--org", "acme", "--role", "root"],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("role"));
}

/// A data dir holding the org `acme`.
fn dir_with_acme() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        run(&["orgs", "create", "acme"], dir.path())
            .status
            .success()
    );
    dir
}

/// `auditrail ingest` of `file` into `acme` of the data dir `dir`, `batch` lines a batch.
fn ingest_in_batches(dir: &Path, file: &Path, batch: usize) -> std::process::Output {
    let batch = batch.to_string();
    let file = file.to_str().unwrap();
    run(&["ingest", "--org", "acme", "--batch", &batch, file], dir)
}

/// Every event in the data dir's log, as stored, in seq order.
fn stored_events(dir: &std::path::Path) -> Vec<Value> {
    let conn = rusqlite::Connection::open(dir.join("auditrail.db")).unwrap();
    let mut stmt = conn
        .prepare("SELECT body FROM events ORDER BY rid")
        .unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|b| serde_json::from_str(&b.unwrap()).unwrap())
        .collect()
}

/// The `id` of every event in the data dir's log, in seq order.
fn stored_ids(dir: &std::path::Path) -> Vec<String> {
    stored_events(dir)
        .into_iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn bulk_ingest_keeps_file_order_and_names_bad_lines() {
    let dir = dir_with_acme();
    let file = dir.path().join("events.ndjson");
    let mut f = std::fs::File::create(&file).unwrap();
    for i in 0..25_000 {
        writeln!(f, "{}", json!({"id": format!("e{i}"), "action": "bulk", "actor": {"id": format!("u-{}", i % 7)}})).unwrap();
    }
    drop(f);
    let out = ingest_in_batches(dir.path(), &file, 4000);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("ingested 25000 events"));
    // Rerunning stores nothing twice.
    let out = run(
        &["ingest", "--org", "acme", file.to_str().unwrap()],
        dir.path(),
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ingested 0 events"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = dir.path().join("bad.ndjson");
    std::fs::write(
        &bad,
        "{\"action\":\"ok\"}\n\n{\"action\":\"ok\",\"actor\":{\"type\":\"ROBOT\"}}\n",
    )
    .unwrap();
    let out = run(
        &["ingest", "--org", "acme", bad.to_str().unwrap()],
        dir.path(),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3: actor.type"), "{err}");

    // File order is seq order.
    let ids = stored_ids(dir.path());
    let bulk: Vec<&String> = ids.iter().filter(|i| i.starts_with('e')).collect();
    assert_eq!(bulk.len(), 25_000);
    assert!(
        bulk.iter()
            .enumerate()
            .all(|(i, id)| **id == format!("e{i}"))
    );
}

/// `auditrail ingest --url` against a running server, `batch` lines a request.
fn ingest_remote(base: &str, token: &str, file: &Path, batch: usize) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["ingest", "--org", "acme", "--url", base, "--token", token])
        .args(["--batch", &batch.to_string()])
        .arg(file)
        .env_remove("AUDITRAIL_ADMIN_TOKEN")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Against a running server, the load keeps file order (one request in flight while the
/// next is read), stores nothing twice when rerun, names a line that is not JSON before
/// anything of its batch is sent, maps the server's refusal of an event to its file line,
/// and reports what was stored before the bad batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_ingest_keeps_file_order_and_names_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let mut srv = serve(dir.path());
    let http = reqwest::Client::new();
    let token = org_acme_with_key(&http, &srv.base, "ingest").await;
    let lines = |prefix: &str, n: usize| -> Vec<String> {
        (0..n)
            .map(|i| json!({"id": format!("{prefix}{i}"), "action": "bulk", "actor": {"id": format!("u-{}", i % 7)}}).to_string())
            .collect()
    };

    // 2,500 events and a blank line, in requests of 1,000.
    let file = dir.path().join("events.ndjson");
    let mut text = lines("e", 2_500);
    text.insert(1_200, String::new());
    std::fs::write(&file, text.join("\n") + "\n").unwrap();
    let (ok, err) = ingest_remote(&srv.base, &token, &file, 1000);
    assert!(ok, "{err}");
    assert!(err.contains("ingested 2500 events"), "{err}");
    let (ok, err) = ingest_remote(&srv.base, &token, &file, 1000);
    assert!(ok, "{err}");
    assert!(
        err.contains("ingested 0 events") && err.contains("2500 already present"),
        "{err}"
    );

    // Line 1,501 is not JSON: the first request was sent and stored, the second never was.
    let bad_json = dir.path().join("bad-json.ndjson");
    let mut text = lines("f", 1_510);
    text[1_500] = "{\"action\": \"x\"".into();
    std::fs::write(&bad_json, text.join("\n")).unwrap();
    let (ok, err) = ingest_remote(&srv.base, &token, &bad_json, 1000);
    assert!(!ok);
    assert!(err.contains("line 1501: invalid JSON"), "{err}");
    assert!(err.contains("1000 events were stored"), "{err}");

    // Line 1,200 is JSON but no valid event: the server refuses its whole request and the
    // error names the file line and the field.
    let bad_event = dir.path().join("bad-event.ndjson");
    let mut text = lines("g", 1_500);
    text[1_199] = json!({"id": "g-bad", "action": ""}).to_string();
    std::fs::write(&bad_event, text.join("\n")).unwrap();
    let (ok, err) = ingest_remote(&srv.base, &token, &bad_event, 1000);
    assert!(!ok);
    assert!(err.contains("line 1200: action"), "{err}");
    assert!(err.contains("1000 events were stored"), "{err}");

    // Two values on one line would be two events in the request: refused as not JSON.
    let two = dir.path().join("two.ndjson");
    std::fs::write(&two, "{\"action\":\"a\"} {\"action\":\"b\"}\n").unwrap();
    let (ok, err) = ingest_remote(&srv.base, &token, &two, 1000);
    assert!(!ok);
    assert!(err.contains("line 1: invalid JSON"), "{err}");
    assert!(err.contains("0 events were stored"), "{err}");

    // Stored once each, in file order, and nothing of a refused request.
    let ids: Vec<String> = stored_ids(dir.path())
        .into_iter()
        .filter(|id| id.starts_with(['e', 'f', 'g']))
        .collect();
    let want: Vec<String> = (0..2_500)
        .map(|i| format!("e{i}"))
        .chain((0..1_000).map(|i| format!("f{i}")))
        .chain((0..1_000).map(|i| format!("g{i}")))
        .collect();
    assert_eq!(ids, want);
    srv.child.kill().unwrap();
    srv.child.wait().unwrap();
}

/// The one-shot commands log warnings only, unless `AUDITRAIL_LOG` asks for more; written
/// to a file or pipe, the log has no colour codes.
#[test]
fn one_shot_commands_log_what_auditrail_log_asks_for() {
    let dir = dir_with_acme();
    let file = dir.path().join("events.ndjson");
    std::fs::write(&file, "{\"id\":\"a1\",\"action\":\"a\"}\n").unwrap();
    let ingest = |log: Option<&str>| {
        let mut cmd = Command::new(BIN);
        cmd.args(["ingest", "--org", "acme", "--data-dir"])
            .arg(dir.path())
            .arg(&file)
            .env_remove("AUDITRAIL_LOG");
        if let Some(l) = log {
            cmd.env("AUDITRAIL_LOG", l);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let quiet = ingest(None);
    assert!(quiet.contains("ingested 1 events"), "{quiet}");
    assert!(
        !quiet.contains("DEBUG") && !quiet.contains("INFO"),
        "{quiet}"
    );
    let debug = ingest(Some("auditrail_store=debug"));
    assert!(debug.contains("DEBUG"), "{debug}");
    assert!(debug.contains("journal mode set"), "{debug}");
    assert!(!debug.contains('\u{1b}'), "{debug}");
}

/// Batches are committed while later ones are read and prepared: a bad line far into the
/// file stops the load, and every batch queued before it is committed, counted and in
/// file order, nothing after it.
#[test]
fn bulk_ingest_stopped_by_a_bad_line_keeps_what_was_queued() {
    let dir = dir_with_acme();
    let file = dir.path().join("events.ndjson");
    let mut f = std::fs::File::create(&file).unwrap();
    for i in 0..12_000 {
        writeln!(f, "{}", json!({"id": format!("e{i}"), "action": "bulk"})).unwrap();
    }
    // Line 12,001: no action.
    writeln!(f, "{}", json!({"id": "bad"})).unwrap();
    for i in 12_000..13_000 {
        writeln!(f, "{}", json!({"id": format!("e{i}"), "action": "bulk"})).unwrap();
    }
    drop(f);
    let out = ingest_in_batches(dir.path(), &file, 1000);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 12001: action"), "{err}");
    assert!(err.contains("12000 events were stored"), "{err}");
    let ids: Vec<String> = stored_ids(dir.path())
        .into_iter()
        // The org's own records (its creation) are not the file's.
        .filter(|id| id.starts_with('e') || id == "bad")
        .collect();
    let want: Vec<String> = (0..12_000).map(|i| format!("e{i}")).collect();
    assert_eq!(ids, want);
}

/// The journal mode a database file's header records (byte 18: 1 rollback, 2 WAL).
fn header_journal(db: &Path) -> &'static str {
    let mut head = [0u8; 20];
    std::io::Read::read_exact(&mut std::fs::File::open(db).unwrap(), &mut head).unwrap();
    match head[18] {
        1 => "rollback",
        2 => "wal",
        _ => "unknown",
    }
}

/// A bulk load commits through a rollback journal (see `Options::bulk_load`). Killed
/// (SIGKILL) while it commits, it loses nothing it committed and leaves nothing half
/// written: a server opening the data dir next rolls back the batch in progress and
/// serves the batches before it, whole and in file order; a rerun stores the rest once
/// each, with gapless seqs; and the tree the server signs is the one those events make.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_bulk_load_then_a_rerun_stores_every_line_once_in_order() {
    let dir = dir_with_acme();
    let db = dir.path().join("auditrail.db");
    let file = dir.path().join("events.ndjson");
    let n = 60_000;
    let mut f = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    for i in 0..n {
        writeln!(f, "{}", json!({"id": format!("e{i}"), "action": "bulk", "actor": {"id": format!("u-{}", i % 13)}, "details": {"i": i}})).unwrap();
    }
    drop(f);
    let empty = std::fs::metadata(&db).unwrap().len();
    let mut child = Command::new(BIN)
        .args(["ingest", "--org", "acme", "--batch", "2000"])
        .arg(&file)
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("AUDITRAIL_ADMIN_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill once several batches are in the file (it grows as they commit; no reader
    // is opened on it meanwhile, and no fixed sleep).
    while std::fs::metadata(&db).unwrap().len() < empty + (3 << 20) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the load ended before it was killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let journal_left = dir.path().join("auditrail.db-journal").exists();
    assert_eq!(
        header_journal(&db),
        "rollback",
        "killed while loading through a rollback journal"
    );

    // A server opens the data dir first: it rolls back the batch in progress and serves
    // the batches committed before the kill, whole and in file order.
    let mut srv = serve(dir.path());
    let http = reqwest::Client::new();
    let token = acme_key(&http, &srv.base, "viewer").await;
    let file_ids = |events: &[Value]| -> Vec<String> {
        events
            .iter()
            .filter_map(|e| e["id"].as_str().filter(|id| id.starts_with('e')))
            .map(str::to_owned)
            .collect()
    };
    let committed = file_ids(&common::all_events(&http, &srv.base, &token).await);
    let want: Vec<String> = (0..n).map(|i| format!("e{i}")).collect();
    assert!(
        !committed.is_empty() && committed.len() % 2000 == 0,
        "whole batches: {}",
        committed.len()
    );
    assert_eq!(committed[..], want[..committed.len()]);
    srv.child.kill().unwrap();
    srv.child.wait().unwrap();
    assert_eq!(header_journal(&db), "wal", "the server's open switched it");

    // The rerun stores the rest, each line once.
    let out = ingest_in_batches(dir.path(), &file, 2000);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let count = |after: &str, before: &str| -> u64 {
        let rest = &err[err.find(after).unwrap() + after.len()..];
        rest[..rest.find(before).unwrap()].trim().parse().unwrap()
    };
    let (stored, present) = (
        count("ingested ", " events"),
        count("; ", " already present"),
    );
    assert_eq!(present, committed.len() as u64, "{err}");
    assert_eq!(stored + present, n, "every line stored once: {err}");
    assert_eq!(header_journal(&db), "wal");
    assert!(!dir.path().join("auditrail.db-journal").exists());

    let stored_log = stored_events(dir.path());
    let seqs: Vec<u64> = stored_log
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (1..=stored_log.len() as u64).collect::<Vec<_>>(),
        "gapless seqs"
    );
    assert_eq!(file_ids(&stored_log), want, "each line once, in file order");

    // A server signs the tree those events make.
    let mut srv = serve(dir.path());
    let events = common::all_events(&http, &srv.base, &token).await;
    assert_eq!(events.len(), stored_log.len());
    let leaves: Vec<[u8; 32]> = events.iter().map(independent_leaf).collect();
    use base64::Engine;
    let root = base64::engine::general_purpose::STANDARD.encode(independent_root(&leaves));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let note = loop {
        let note = latest_note(&http, &srv.base, &token).await;
        if note.lines().nth(1) == Some(&events.len().to_string()) {
            break note;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint of the whole log: {note}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        note.lines().nth(2).unwrap(),
        root,
        "the tree of the stored events"
    );
    eprintln!(
        "bulk crash test: {present} events committed before the kill (journal left: {journal_left}), {stored} by the rerun"
    );
    srv.child.kill().unwrap();
    srv.child.wait().unwrap();
}

/// The file is read in batches into reused buffers: line ends (`\n`, `\r\n`, none on
/// the last line), blank and whitespace-only lines and non-ASCII text all come through as
/// they would line by line, and a line that is not UTF-8 is named.
#[test]
fn bulk_ingest_reads_every_kind_of_line_end_and_names_bytes_that_are_not_utf8() {
    let dir = dir_with_acme();
    let file = dir.path().join("mixed.ndjson");
    let mut bytes = Vec::new();
    for i in 0..20 {
        let ev = json!({"id": format!("e{i}"), "action": "bulk", "details": {"name": format!("Zoë 東京 {i}")}});
        bytes.extend_from_slice(ev.to_string().as_bytes());
        bytes.extend_from_slice(match i % 4 {
            0 => b"\r\n".as_slice(),
            1 => b"\n\n".as_slice(),
            2 => " \t\n \u{3000}\n".as_bytes(),
            _ => b"\n".as_slice(),
        });
    }
    bytes.extend_from_slice(
        json!({"id": "last", "action": "bulk"})
            .to_string()
            .as_bytes(),
    );
    std::fs::write(&file, &bytes).unwrap();
    // Three lines a batch: most batches reuse a buffer an earlier batch filled.
    let out = ingest_in_batches(dir.path(), &file, 3);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("ingested 21 events"), "{err}");
    let names: Vec<String> = stored_events(dir.path())
        .into_iter()
        .filter_map(|v| {
            // The org's own records (its creation) are not the file's.
            (v["action"] == "bulk")
                .then(|| v["details"]["name"].as_str().map(str::to_owned))
                .flatten()
        })
        .collect();
    let want: Vec<String> = (0..20).map(|i| format!("Zoë 東京 {i}")).collect();
    assert_eq!(names, want);
    let mut ids = stored_ids(dir.path());
    ids.retain(|id| id.starts_with('e') || id == "last");
    let mut want: Vec<String> = (0..20).map(|i| format!("e{i}")).collect();
    want.push("last".into());
    assert_eq!(ids, want);

    // Line 4 holds a byte that is not UTF-8: the batch before it (lines 1-2) is stored.
    let bad = dir.path().join("bad.ndjson");
    let mut bytes = Vec::new();
    for i in 0..6 {
        let mut line = json!({"id": format!("b{i}"), "action": "bulk"})
            .to_string()
            .into_bytes();
        if i == 3 {
            line.insert(line.len() - 2, 0xff);
        }
        bytes.extend_from_slice(&line);
        bytes.push(b'\n');
    }
    std::fs::write(&bad, &bytes).unwrap();
    let out = ingest_in_batches(dir.path(), &bad, 2);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 4: not valid UTF-8"), "{err}");
    assert!(err.contains("2 events were stored"), "{err}");
    let ids: Vec<String> = stored_ids(dir.path())
        .into_iter()
        .filter(|id| id.starts_with('b'))
        .collect();
    assert_eq!(ids, ["b0", "b1"]);
}

#[test]
fn print_config_masks_secrets_and_layers_sources() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("a.toml");
    std::fs::write(
        &cfg,
        "listen = \"127.0.0.1:9999\"\nexport_ttl = \"7d\"\ncheckpoint_interval = \"9s\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--print-config", "--config"])
        .arg(&cfg)
        .env("AUDITRAIL_ADMIN_TOKEN", "very-secret-value")
        .env("AUDITRAIL_CHECKPOINT_INTERVAL", "3s")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(!text.contains("very-secret-value"));
    assert!(text.contains("admin_token = \"********\""));
    assert!(
        text.contains("listen = \"127.0.0.1:9999\""),
        "file value: {text}"
    );
    assert!(text.contains("export_ttl = \"7days\""), "{text}");
    assert!(
        text.contains("checkpoint_interval = \"3s\""),
        "env beats file: {text}"
    );
    let out = Command::new(BIN)
        .args([
            "serve",
            "--print-config",
            "--listen",
            "0.0.0.0:1",
            "--config",
        ])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("listen = \"0.0.0.0:1\""),
        "flag beats file"
    );
    std::fs::write(&cfg, "lisen = 1\n").unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--print-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("lisen"));
}

#[test]
fn first_start_prints_the_admin_token_once() {
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env_remove("AUDITRAIL_ADMIN_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        child.kill().unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let first = start();
    assert!(first.contains("arp_"), "{first}");
    let second = start();
    assert!(!second.contains("arp_"), "{second}");
    let db = std::fs::read(dir.path().join("auditrail.db")).unwrap();
    let token = first
        .split_whitespace()
        .find(|w| w.starts_with("arp_"))
        .unwrap();
    assert!(
        !db.windows(token.len()).any(|w| w == token.as_bytes()),
        "the token is stored only hashed"
    );
}

async fn get_json(http: &reqwest::Client, url: &str, token: &str) -> Value {
    let r = http.get(url).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    r.json().await.unwrap()
}

/// A server killed while an export runs leaves no file marked done; after a restart the
/// job runs again and produces the whole file. Then `auditrail export` writes the same
/// rows from the data dir, and against the server with `--url`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_an_export_then_restart_completes_it() {
    let dir = tempfile::tempdir().unwrap();
    let today = chrono::Utc::now().date_naive();
    let from = (today - chrono::Duration::days(1)).to_string();
    let to = (today + chrono::Duration::days(1)).to_string();
    assert!(
        run(&["orgs", "create", "acme"], dir.path())
            .status
            .success()
    );
    let file = dir.path().join("events.ndjson");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    const N: usize = 300_000;
    for i in 0..N {
        writeln!(f, "{}", json!({"action": "bulk", "actor": {"id": format!("u-{}", i % 7)}, "resource": {"type": "DOC", "id": format!("d-{i}")}, "details": {"i": i, "text": "lorem ipsum dolor sit amet"}})).unwrap();
    }
    drop(f);
    let out = run(
        &["ingest", "--org", "acme", file.to_str().unwrap()],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let http = reqwest::Client::new();
    let mut srv = serve(dir.path());
    let token = acme_key(&http, &srv.base, "admin").await;
    let (s, job) = post(
        &http,
        &format!("{}/v1/exports", srv.base),
        &token,
        json!({"from": from, "to": to, "format": "ndjson"}),
    )
    .await
    .unwrap();
    assert_eq!(s, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let job_url = |base: &str| format!("{base}/v1/exports/{id}");
    loop {
        let j = get_json(&http, &job_url(&srv.base), &token).await;
        if j["status"] == "running" {
            break;
        }
        assert_eq!(j["status"], "queued", "{j}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    srv.child.kill().unwrap();
    srv.child.wait().unwrap();
    let exports = dir.path().join("exports");
    let db = rusqlite::Connection::open(dir.path().join("auditrail.db")).unwrap();
    let status: String = db
        .query_row("SELECT status FROM exports WHERE id = ?1", [&id], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(status, "running", "killed mid-export");
    drop(db);
    assert!(
        !exports.join(format!("{id}.ndjson")).exists(),
        "no final file from a killed run"
    );

    let mut srv = serve(dir.path());
    let done = loop {
        let j = get_json(&http, &job_url(&srv.base), &token).await;
        match j["status"].as_str().unwrap() {
            "queued" | "running" => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            _ => break j,
        }
    };
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["attempts"], 2);
    let text = std::fs::read_to_string(exports.join(format!("{id}.ndjson"))).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let cut = done["checkpoint_size"].as_u64().unwrap();
    assert_eq!(lines.len() as u64, cut, "every event up to the cut, once");
    assert_eq!(done["row_count"].as_u64(), Some(cut));
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["seq"].as_u64(), Some(i as u64 + 1));
    }
    assert_eq!(
        lines[1..].iter().filter(|l| l["action"] == "bulk").count(),
        N
    );
    assert!(!exports.join(format!("{id}.part")).exists());

    // The CLI against the server: same rows for one actor, and the checkpoint beside it.
    let remote = dir.path().join("u3.csv");
    let out = Command::new(BIN)
        .args([
            "export", "--org", "acme", "--from", &from, "--to", &to, "--actor", "u-3", "--url",
            &srv.base, "--token", &token, "-o",
        ])
        .arg(&remote)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expect = lines.iter().filter(|l| l["actor"]["id"] == "u-3").count();
    let rows = csv::Reader::from_path(&remote).unwrap().records().count();
    assert_eq!(rows, expect);
    assert!(
        std::fs::read_to_string(dir.path().join("u3.csv.checkpoint"))
            .unwrap()
            .starts_with("auditrail/acme\n")
    );
    srv.child.kill().unwrap();
    srv.child.wait().unwrap();

    // The CLI on the data dir: the same rows again, as Parquet too.
    let local = dir.path().join("u3-local.csv");
    let out = run(
        &[
            "export",
            "--org",
            "acme",
            "--from",
            &from,
            "--to",
            &to,
            "--actor",
            "u-3",
            "-o",
            local.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(&local).unwrap(),
        std::fs::read(&remote).unwrap()
    );
    let out = run(
        &[
            "export",
            "--org",
            "acme",
            "--from",
            &from,
            "--to",
            "2000-01-01",
            "-o",
            local.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--from"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn each_subcommand_lists_only_its_own_flags() {
    let help = |args: &[&str]| {
        let out = Command::new(BIN).args(args).arg("--help").output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let serve = help(&["serve"]);
    for flag in [
        "--smtp-url",
        "--outbound-allow",
        "--data-dir",
        "--max-details-bytes",
    ] {
        assert!(serve.contains(flag), "serve lacks {flag}");
    }
    let verify = help(&["verify"]);
    for flag in [
        "--smtp-url",
        "--data-dir",
        "--lease-ttl",
        "--database-pool-size",
    ] {
        assert!(!verify.contains(flag), "verify lists {flag}:\n{verify}");
    }
    let ingest = help(&["ingest"]);
    assert!(ingest.contains("--data-dir") && ingest.contains("--max-details-bytes"));
    assert!(!ingest.contains("--smtp-url") && !ingest.contains("--outbound-allow"));
    let export = help(&["export"]);
    assert!(export.contains("--data-dir") && !export.contains("--export-ttl"));
    let keys = help(&["keys", "create"]);
    assert!(keys.contains("--url") && !keys.contains("--ui-frame-ancestors"));
}
