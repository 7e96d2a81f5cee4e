//! Provable exports: every export comes with a proof; `auditrail verify FILE` checks
//! it offline and names what fails.
#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed test")]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use auditrail_core::note::NoteSigner;
use common::TestServer;
use serde_json::{Value, json};

fn log_key() -> String {
    NoteSigner::new("auditrail.test", [42u8; 32])
        .unwrap()
        .verifier_key()
}

async fn get_bytes(srv: &TestServer, token: &str, path: &str) -> (u16, Vec<u8>) {
    let r = srv
        .http
        .get(format!("{}{path}", srv.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

/// Runs an export to `dir/name` and its proof to `dir/name.proof`.
async fn export(
    srv: &TestServer,
    token: &str,
    req: Value,
    dir: &Path,
    name: &str,
) -> std::path::PathBuf {
    let (s, b) = srv.post("/v1/exports", token, req).await;
    assert_eq!(s, 202, "{b}");
    let id = b["id"].as_str().unwrap().to_owned();
    for _ in 0..600 {
        let (_, j) = srv.get(&format!("/v1/exports/{id}"), token).await;
        match j["status"].as_str().unwrap() {
            "queued" | "running" => tokio::time::sleep(Duration::from_millis(50)).await,
            "succeeded" => break,
            other => panic!("{other}: {j}"),
        }
    }
    let (s, file) = get_bytes(srv, token, &format!("/v1/exports/{id}/download")).await;
    assert_eq!(s, 200);
    let (s, proof) = get_bytes(srv, token, &format!("/v1/exports/{id}/proof")).await;
    assert_eq!(s, 200);
    let path = dir.join(name);
    std::fs::write(&path, file).unwrap();
    std::fs::write(dir.join(format!("{name}.proof")), proof).unwrap();
    path
}

fn verify(path: &Path, extra: &[&str]) -> (bool, String) {
    let out = Command::new(common::BIN)
        .arg("verify")
        .arg(path)
        .args(["--public-key", &log_key()])
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_export_verifies_offline_and_tampering_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let srv = TestServer::start(&dir.path().join("data")).await;
    srv.create_org("acme").await;
    let admin = srv.key("acme", "admin").await;
    let now = chrono::Utc::now();
    let events: Vec<Value> = (0..600)
        .map(|i| {
            json!({
                "action": if i % 2 == 0 { "updateGraph" } else { "deleteGraph" },
                "occurred_at": (now - chrono::Duration::minutes(600 - i)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "actor": {"id": format!("u-{}", i % 3)},
                "scope": {"type": "GRAPH", "id": format!("g-{}", i % 5)},
                "resource": {"type": "GRAPH", "id": format!("g-{}", i % 5)},
                "details": {"n": i},
            })
        })
        .collect();
    let (s, b) = srv
        .post("/v1/events", &admin, json!({ "events": events }))
        .await;
    assert_eq!(s, 200, "{b}");
    let from = (now - chrono::Duration::days(1)).to_rfc3339();
    let to = (now + chrono::Duration::minutes(1)).to_rfc3339();
    let out = dir.path();
    // Actor + scope: 40 scattered rows out of 600 and more.
    let filtered = export(
        &srv,
        &admin,
        json!({"from": from, "to": to, "actor_id": "u-1", "scope_id": "g-2", "format": "ndjson"}),
        out,
        "filtered.ndjson",
    )
    .await;
    let (ok, msg) = verify(&filtered, &[]);
    assert!(ok, "{msg}");
    assert!(msg.contains("40 rows"), "{msg}");
    let lines: Vec<String> = std::fs::read_to_string(&filtered)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let write = |name: &str, lines: &[String]| {
        let p = out.join(name);
        std::fs::write(&p, lines.join("\n") + "\n").unwrap();
        std::fs::copy(
            out.join("filtered.ndjson.proof"),
            out.join(format!("{name}.proof")),
        )
        .unwrap();
        p
    };

    // One altered row: named.
    let mut altered = lines.clone();
    altered[6] = altered[6].replace("\"n\":", "\"n\":1");
    let (ok, msg) = verify(&write("altered.ndjson", &altered), &[]);
    assert!(!ok);
    assert!(
        msg.contains("row 7") && msg.contains("does not hash"),
        "{msg}"
    );
    // Altered with its leaf_hash recomputed: the rows no longer fold to the root.
    let mut v: Value = serde_json::from_str(&lines[6]).unwrap();
    v.as_object_mut().unwrap().remove("leaf_hash");
    v["details"]["n"] = json!(9999);
    let body = auditrail_core::canonical::to_string(&v).unwrap();
    let leaf = auditrail_core::merkle::leaf_hash(body.as_bytes());
    let mut rehashed = lines.clone();
    rehashed[6] = auditrail_core::export::ndjson_line(&body, &leaf)
        .trim_end()
        .to_owned();
    let (ok, msg) = verify(&write("rehashed.ndjson", &rehashed), &[]);
    assert!(!ok);
    assert!(
        msg.contains("do not fold to the checkpoint's root"),
        "{msg}"
    );
    // One removed row: its seq is named.
    let mut removed = lines.clone();
    let gone: Value = serde_json::from_str(&removed.remove(10)).unwrap();
    let (ok, msg) = verify(&write("removed.ndjson", &removed), &[]);
    assert!(!ok);
    assert!(
        msg.contains(&format!("seq {} is missing", gone["seq"])),
        "{msg}"
    );
    // One added row (a genuine event of the log, outside the filter): named.
    let all = export(
        &srv,
        &admin,
        json!({"from": from, "to": to, "format": "ndjson"}),
        out,
        "all.ndjson",
    )
    .await;
    let (ok, msg) = verify(&all, &[]);
    assert!(ok, "{msg}");
    let extra = std::fs::read_to_string(&all)
        .unwrap()
        .lines()
        .find(|l| l.contains("\"u-0\""))
        .unwrap()
        .to_owned();
    let extra_seq = serde_json::from_str::<Value>(&extra).unwrap()["seq"].clone();
    let mut added = lines.clone();
    added.push(extra);
    let (ok, msg) = verify(&write("added.ndjson", &added), &[]);
    assert!(!ok);
    assert!(
        msg.contains(&format!(
            "row {} (seq {extra_seq}) is not one the proof covers",
            added.len()
        )),
        "{msg}"
    );
    // A swapped checkpoint (the later one of the whole-log export): fails.
    let proof = std::fs::read_to_string(out.join("filtered.ndjson.proof")).unwrap();
    let later = std::fs::read_to_string(out.join("all.ndjson.proof")).unwrap();
    let (head, _) = proof.split_once("\n\n").unwrap();
    let (_, later_cp) = later.split_once("\n\n").unwrap();
    let p = write("swapped.ndjson", &lines);
    std::fs::write(
        out.join("swapped.ndjson.proof"),
        format!("{head}\n\n{later_cp}"),
    )
    .unwrap();
    let (ok, msg) = verify(&p, &[]);
    assert!(!ok);
    assert!(msg.contains("do not fold"), "{msg}");
    // A forged checkpoint signature: fails on the signature.
    std::fs::write(
        out.join("swapped.ndjson.proof"),
        proof.replacen("\n600", "\n601", 1).replacen(
            "auditrail.test/acme\n6",
            "auditrail.test/acme\n7",
            1,
        ),
    )
    .unwrap();
    let (ok, _) = verify(&p, &[]);
    assert!(!ok);
    // Required witnesses the export's checkpoint lacks: fails.
    let w = auditrail_core::cosignature::Cosigner::new("w", [9; 32])
        .unwrap()
        .verifier_key();
    let (ok, msg) = verify(&filtered, &["--witness", &w]);
    assert!(!ok);
    assert!(msg.contains("0 valid cosignature(s)"), "{msg}");

    // Parquet and the full CSV layout verify; the Apollo layout is refused with a pointer.
    let pq = export(
        &srv,
        &admin,
        json!({"from": from, "to": to, "actor_id": "u-2", "format": "parquet"}),
        out,
        "e.parquet",
    )
    .await;
    let (ok, msg) = verify(&pq, &[]);
    assert!(ok, "{msg}");
    let csv = export(
        &srv,
        &admin,
        json!({"from": from, "to": to, "scope_id": "g-1", "format": "csv", "layout": "full"}),
        out,
        "e.csv",
    )
    .await;
    let (ok, msg) = verify(&csv, &[]);
    assert!(ok, "{msg}");
    let apollo = export(
        &srv,
        &admin,
        json!({"from": from, "to": to, "format": "csv"}),
        out,
        "apollo.csv",
    )
    .await;
    let (ok, msg) = verify(&apollo, &[]);
    assert!(!ok);
    assert!(msg.contains("layout full"), "{msg}");
    // A viewer cannot fetch a proof (exports are an admin's).
    let viewer = srv.key("acme", "viewer").await;
    let (_, list) = srv.get("/v1/exports", &admin).await;
    let id = list["exports"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        get_bytes(&srv, &viewer, &format!("/v1/exports/{id}/proof"))
            .await
            .0,
        403
    );
    srv.stop().await;

    // The CLI writes FILE.proof beside what it exports, and verify finds it.
    let cli_out = out.join("cli.ndjson");
    let o = Command::new(common::BIN)
        .args([
            "export", "--org", "acme", "--from", &from, "--to", &to, "--actor", "u-1", "--format",
            "ndjson", "-o",
        ])
        .arg(&cli_out)
        .arg("--data-dir")
        .arg(out.join("data"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("cli.ndjson.proof").is_file());
    // (The CLI signs with the data dir's own key, not the test server's fixed one.)
    let o = Command::new(common::BIN)
        .arg("verify")
        .arg(&cli_out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("every row's leaf recomputed"));
}
