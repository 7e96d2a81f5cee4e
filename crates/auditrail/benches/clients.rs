//! The official clients' throughput against their peer, in one run on one server.
//!
//! A real `auditrail serve` on a fresh data dir. The peer is the ingest bench's HTTP
//! batch load: this process posting the bench's events (with ids) in 500-event batches
//! over 16 connections. Then one Node process (`clients/typescript`, `bench/record.mjs`)
//! and one Python process (`clients/python`, `bench/record.py`) each send the same number
//! of events through `record()`, each into an org of its own; Python twice, with the
//! standard library's JSON and, where it is installed, with orjson (the client's `fast`
//! extra). The peer runs again last,
//! so that each client's figure lies between two of its own.
//!
//! `cargo bench -p auditrail --bench clients` (`BENCH_EVENTS`, default 200,000; needs
//! Node.js with npm, and Python 3).
#![expect(clippy::unwrap_used, reason = "a benchmark: a panic is a failed run")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};

#[path = "../tests/common/process.rs"]
mod process;
#[path = "support.rs"]
mod support;

const ADMIN: &str = "bench-admin-token";
const CONNECTIONS: usize = 16;
const BATCH: usize = 500;

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients")
}

/// The peer: `n` of the bench's events (ids from `from`) in 500-event batches over 16
/// connections; events/s.
async fn peer(base: &str, token: &str, from: u64, n: u64) -> f64 {
    let bodies: Vec<bytes::Bytes> = (from..from + n)
        .collect::<Vec<_>>()
        .chunks(BATCH)
        .map(|c| {
            let events: Vec<Value> = c.iter().map(|&i| support::event(i)).collect();
            serde_json::to_vec(&json!({ "events": events }))
                .unwrap()
                .into()
        })
        .collect();
    let bodies = std::sync::Arc::new(bodies);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (bodies, next) = (bodies.clone(), next.clone());
        let http = reqwest::Client::new();
        let url = format!("{base}/v1/events");
        let token = token.to_owned();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { return };
                let r = http
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "{}", r.status());
                r.bytes().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// Runs a client's bench script against the server, with `env` set; the events/s it
/// prints.
fn client(
    dir: &Path,
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
    (base, token): (&str, &str),
    n: u64,
) -> f64 {
    let out = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .env("AUDITRAIL_URL", base)
        .env("AUDITRAIL_TOKEN", token)
        .env("BENCH_EVENTS", n.to_string())
        .env("PYTHONPATH", dir.join("src"))
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{program} {args:?}: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text.lines().rfind(|l| l.contains("events/s")).unwrap();
    println!("  {line}");
    let rate = line.split(" = ").nth(1).unwrap();
    rate.split_whitespace().next().unwrap().parse().unwrap()
}

#[tokio::main]
async fn main() {
    let n = support::env_u64("BENCH_EVENTS", 200_000);
    let ts = clients_dir().join("typescript");
    let py = clients_dir().join("python");
    let npm = |args: &[&str]| {
        let ok = Command::new("npm")
            .args(args)
            .current_dir(&ts)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "npm {args:?} in {}", ts.display());
    };
    npm(&["ci", "--no-audit", "--no-fund", "--silent"]);
    npm(&["run", "--silent", "build"]);

    let work = tempfile::tempdir().unwrap();
    let srv = process::serve(ADMIN, |c| {
        c.arg("--data-dir").arg(work.path().join("data"));
    });
    let base = srv.base.clone();
    let http = reqwest::Client::new();
    let mut tokens = Vec::new();
    for org in ["peer", "typescript", "python", "python-orjson"] {
        let post = |path: String, body: Value| {
            http.post(format!("{base}{path}"))
                .bearer_auth(ADMIN)
                .json(&body)
                .send()
        };
        let r = post("/v1/orgs".into(), json!({ "id": org })).await.unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        let r = post(
            format!("/v1/orgs/{org}/keys"),
            json!({"name": "bench", "role": "ingest"}),
        )
        .await
        .unwrap();
        let key: Value = r.json().await.unwrap();
        tokens.push(key["token"].as_str().unwrap().to_owned());
    }

    let before = peer(&base, &tokens[0], 0, n).await;
    println!("peer (500-event batches × {CONNECTIONS}, first): {before:.0} events/s");
    let node = client(
        &ts,
        "node",
        &["bench/record.mjs"],
        &[],
        (&base, &tokens[1]),
        n,
    );
    // Python twice: with the standard library's JSON, and with orjson (the client's
    // `fast` extra) where it is installed.
    let py_run = |env: &[(&str, &str)], token: &str| {
        client(&py, "python3", &["bench/record.py"], env, (&base, token), n)
    };
    let python = py_run(&[("AUDITRAIL_JSON", "stdlib")], &tokens[2]);
    let has_orjson = Command::new("python3")
        .args(["-c", "import orjson"])
        .output()
        .is_ok_and(|o| o.status.success());
    let fast = if has_orjson {
        Some(py_run(&[], &tokens[3]))
    } else {
        println!("  python client with orjson: not measured (`pip install orjson`)");
        None
    };
    let after = peer(&base, &tokens[0], n, n).await;
    println!("peer (last): {after:.0} events/s");
    let mean = (before + after) / 2.0;
    let pct = |r: f64| r * 100.0 / mean;
    println!(
        "record() against the peer's mean ({mean:.0} events/s): TypeScript {:.0}%, Python {:.0}% (standard library JSON){}",
        pct(node),
        pct(python),
        fast.map(|f| format!(", {:.0}% with orjson", pct(f)))
            .unwrap_or_default()
    );
    drop(srv);
}
