//! Integrity benchmark, one run: on a log of BENCH_INTEGRITY_EVENTS (default 1,000,000)
//! events,
//! - an NDJSON export with its proof against the same export without (`--no-proof`),
//!   interleaved rounds, and `auditrail verify FILE` against `sha256sum FILE` (the hashing
//!   floor);
//! - tile requests per second from `auditrail serve` (wrk, random full level-0 tiles and
//!   entry bundles) against Go's `net/http` file server serving the same tiles from disk;
//! - checkpoint publication latency with two `auditrail witness` processes against an org
//!   without witnesses, on the same server.
//!
//! `cargo bench -p auditrail --bench integrity` (needs wrk and go).
#![expect(clippy::unwrap_used, reason = "a benchmark: a panic is a failed run")]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

#[path = "../tests/common/process.rs"]
mod process;
#[path = "support.rs"]
mod support;

use serde_json::{Value, json};
use support::{BIN, env_u64, load, pct};

const ADMIN: &str = "bench-admin-token";

fn timed(cmd: &mut Command) -> f64 {
    let t = Instant::now();
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed().as_secs_f64()
}

fn export(dir: &Path, out: &Path, proof: bool) -> f64 {
    let today = chrono::Utc::now().date_naive();
    let from = (today - chrono::Duration::days(1)).to_string();
    let to = (today + chrono::Duration::days(1)).to_string();
    let mut c = Command::new(BIN);
    c.args([
        "export", "--org", "acme", "--from", &from, "--to", &to, "--format", "ndjson", "-o",
    ])
    .arg(out)
    .arg("--data-dir")
    .arg(dir);
    if !proof {
        c.arg("--no-proof");
    }
    timed(&mut c)
}

fn median(mut v: Vec<f64>) -> f64 {
    pct(&mut v, 0.5)
}

fn wrk(url_base: &str, paths: &[String], token: Option<&str>, secs: u64) -> f64 {
    let lua = std::env::temp_dir().join(format!("auditrail-tiles-{}.lua", std::process::id()));
    let list: Vec<String> = paths.iter().map(|p| format!("{p:?}")).collect();
    let auth = token
        .map(|t| format!("wrk.headers[\"Authorization\"] = \"Bearer {t}\"\n"))
        .unwrap_or_default();
    std::fs::write(
        &lua,
        format!(
            "{auth}local paths = {{{}}}\nlocal i = 0\nrequest = function()\n  i = i + 1\n  return wrk.format(\"GET\", paths[(i * 7919) % #paths + 1])\nend\n",
            list.join(",")
        ),
    )
    .unwrap();
    let out = Command::new("wrk")
        .args(["-t2", "-c32", &format!("-d{secs}s"), "-s"])
        .arg(&lua)
        .arg(url_base)
        .output()
        .expect("wrk is installed (Debian package wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("Non-2xx"), "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

const GO_FILES: &str = r#"package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
)

func main() {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	fmt.Printf("files listening on http://%s\n", l.Addr())
	panic(http.Serve(l, http.FileServer(http.Dir(os.Args[1]))))
}
"#;

async fn post(http: &reqwest::Client, url: &str, token: &str, body: Value) -> Value {
    let r = http
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    r.json().await.unwrap()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env_u64("BENCH_INTEGRITY_EVENTS", 1_000_000);
    let rounds = env_u64("BENCH_INTEGRITY_ROUNDS", 3);
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let file = work.path().join("events.ndjson");
    support::write_ndjson(&file, n);
    load(&data, &file);
    println!("{n} events loaded");

    // Exports with and without the proof, interleaved; then verify against sha256sum.
    let (mut with, mut without) = (Vec::new(), Vec::new());
    let out = work.path().join("out.ndjson");
    for _ in 0..rounds {
        without.push(export(&data, &work.path().join("plain.ndjson"), false));
        with.push(export(&data, &out, true));
    }
    let (w, wo) = (median(with), median(without));
    println!(
        "export ndjson, {n} rows: with proof {w:.2} s, without {wo:.2} s: {:.2}x",
        w / wo
    );
    let proof_bytes = std::fs::metadata(work.path().join("out.ndjson.proof"))
        .unwrap()
        .len();
    let (mut v, mut s) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        v.push(timed(Command::new(BIN).arg("verify").arg(&out)));
        s.push(timed(Command::new("sha256sum").arg(&out)));
    }
    let (v, s) = (median(v), median(s));
    let bytes = std::fs::metadata(&out).unwrap().len();
    println!(
        "verify {n} rows ({:.0} MB, proof {proof_bytes} bytes): {v:.2} s = {:.0} rows/s; sha256sum of the file {s:.2} s ({:.2}x verify's speed)",
        bytes as f64 / 1e6,
        n as f64 / v,
        v / s
    );

    // Tiles from the server against a static file server with the same tiles.
    let key = ["keys", "create", "--org", "acme", "--role", "viewer"];
    let key: Value = serde_json::from_str(&support::run(&data, &key)).unwrap();
    let viewer = key["token"].as_str().unwrap().to_owned();
    let srv = process::serve(ADMIN, |c| {
        // The witnesses listen on loopback.
        c.arg("--data-dir")
            .arg(&data)
            .env("AUDITRAIL_OUTBOUND_ALLOW", "127.0.0.0/8");
    });
    let http = reqwest::Client::new();
    let size = n + 2; // the org's own audit events: org and key created
    let mut paths = Vec::new();
    let static_dir = work.path().join("tiles");
    for i in 0..size / 256 {
        for kind in ["0", "entries"] {
            let t = auditrail_core::tiles::Tile {
                kind: if kind == "0" {
                    auditrail_core::tiles::Kind::Hashes(0)
                } else {
                    auditrail_core::tiles::Kind::Entries
                },
                index: i,
                width: 256,
            };
            paths.push(format!("/logs/acme/{}", t.path()));
            if i % 16 == 0 {
                let body = http
                    .get(format!("{}/logs/acme/{}", srv.base, t.path()))
                    .bearer_auth(&viewer)
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
                let p = static_dir.join("logs/acme").join(t.path());
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, body).unwrap();
            }
        }
    }
    let secs = env_u64("BENCH_INTEGRITY_WRK_SECONDS", 5);
    let go_src = work.path().join("files.go");
    std::fs::write(&go_src, GO_FILES).unwrap();
    let go_bin = work.path().join("files");
    let built = Command::new("go")
        .args(["build", "-o"])
        .arg(&go_bin)
        .arg(&go_src)
        .env("GOCACHE", work.path().join("gocache"))
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let mut child = Command::new(&go_bin)
        .arg(&static_dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let files_base = process::listening_after(&mut child, "files listening on ");
    let files = process::Serve {
        child,
        base: files_base,
    };
    // The tiles also written to disk (every 16th), for the file server to serve.
    let on_disk = |kind: &str| -> Vec<String> {
        paths
            .iter()
            .enumerate()
            .filter(|(i, p)| (i / 2) % 16 == 0 && p.contains(kind))
            .map(|(_, p)| p.clone())
            .collect()
    };
    for (what, kind) in [
        ("hash tiles", "/tile/0/"),
        ("entry bundles", "/tile/entries/"),
    ] {
        let all: Vec<String> = paths.iter().filter(|p| p.contains(kind)).cloned().collect();
        let cold = wrk(&srv.base, &all, Some(&viewer), secs);
        let warm = wrk(&srv.base, &all, Some(&viewer), secs);
        let some = on_disk(kind);
        let ours = wrk(&srv.base, &some, Some(&viewer), secs);
        let peer = wrk(&files.base, &some, None, secs);
        println!(
            "{what}: all {} of them {cold:.0} requests/s, again {warm:.0}/s; the {} also on disk: {ours:.0}/s; Go's file server from disk: {peer:.0}/s",
            all.len(),
            some.len()
        );
    }
    drop(files);

    // Checkpoint publication with two witnesses against none.
    let vkey = http
        .get(format!("{}/v1/public-key", srv.base))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .trim()
        .to_owned();
    post(
        &http,
        &format!("{}/v1/orgs", srv.base),
        ADMIN,
        json!({"id": "witnessed"}),
    )
    .await;
    post(
        &http,
        &format!("{}/v1/orgs", srv.base),
        ADMIN,
        json!({"id": "alone"}),
    )
    .await;
    let wk = post(
        &http,
        &format!("{}/v1/orgs/witnessed/keys", srv.base),
        ADMIN,
        json!({"name": "b", "role": "admin"}),
    )
    .await;
    let ak = post(
        &http,
        &format!("{}/v1/orgs/alone/keys", srv.base),
        ADMIN,
        json!({"name": "b", "role": "admin"}),
    )
    .await;
    let (wk, ak) = (
        wk["token"].as_str().unwrap().to_owned(),
        ak["token"].as_str().unwrap().to_owned(),
    );
    let origin_prefix = {
        let cp = http
            .get(format!("{}/v1/checkpoints/latest", srv.base))
            .bearer_auth(&wk)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        cp.lines().next().unwrap().to_owned()
    };
    let mut witnesses = Vec::new();
    for i in 0..2 {
        let d = work.path().join(format!("w{i}"));
        let name = format!("bench.witness/{i}");
        let out = Command::new(BIN)
            .args(["witness", "--print-key", "--name", &name, "--data-dir"])
            .arg(&d)
            .output()
            .unwrap();
        let wkey = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let mut child = Command::new(BIN)
            .args([
                "witness",
                "--listen",
                "127.0.0.1:0",
                "--name",
                &name,
                "--data-dir",
            ])
            .arg(&d)
            .arg("--log")
            .arg(format!("{origin_prefix}={vkey}"))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let base = process::listening_after(&mut child, "auditrail witness listening on ");
        let r = http
            .put(format!("{}/v1/witnesses/w{i}", srv.base))
            .bearer_auth(&wk)
            .json(&json!({"url": base, "verifier_key": wkey}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        witnesses.push(process::Serve { child, base });
    }
    let samples = env_u64("BENCH_INTEGRITY_CHECKPOINTS", 300);
    let (mut lw, mut la) = (Vec::new(), Vec::new());
    for i in 0..samples {
        for (tok, lat) in [(&wk, &mut lw), (&ak, &mut la)] {
            post(
                &http,
                &format!("{}/v1/events", srv.base),
                tok,
                json!({"action": "tick", "details": {"i": i}}),
            )
            .await;
            let t = Instant::now();
            let note = http
                .get(format!("{}/v1/checkpoints/latest", srv.base))
                .bearer_auth(tok)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
            if tok == &wk {
                assert!(
                    note.matches('\u{2014}').count() >= 3,
                    "two cosignatures expected: {note}"
                );
            }
        }
    }
    let (w50, w99) = (pct(&mut lw, 0.5), pct(&mut lw, 0.99));
    let (a50, a99) = (pct(&mut la, 0.5), pct(&mut la, 0.99));
    println!(
        "checkpoint publication ({samples} checkpoints): with 2 witnesses p50 {w50:.2} ms, p99 {w99:.2} ms; without p50 {a50:.2} ms, p99 {a99:.2} ms; added p99 {:.2} ms",
        w99 - a99
    );
    drop(witnesses);
    drop(srv);
}
