//! GraphQL capture gateway overhead: the same audited mutations (`addProject` with
//! variables) sent straight to a GraphQL server (async-graphql, the Prophecy operations
//! of the tests) and through `auditrail gateway` in front of it, in the same run.
//!
//! - latency: one client, one request at a time (BENCH_GATEWAY_REQUESTS each way,
//!   default 5,000, rounds of 500 taking turns: direct, gateway, floor); p50/p99/max of
//!   each and what the gateway and the floor add to direct.
//! - throughput: BENCH_GATEWAY_CLIENTS concurrent clients (default 32) for
//!   BENCH_GATEWAY_SECS (default 10) each way.
//!
//! - a floor in the same run: a bare pass-through proxy (axum in, reqwest out, the
//!   request and the answer read whole and passed on; no GraphQL parse, no spool, no
//!   log) in front of the same upstream, on its own runtime: what any gateway that reads
//!   the answer for errors costs before it audits anything.
//! - `BENCH_GATEWAY_UPSTREAM_WORK_US` (default 0): CPU the upstream spends on each
//!   mutation before answering (SHA-256 rounds, calibrated at start), to compare the
//!   two paths against an upstream that does work, not only a trivial resolver.
//!
//! The gateway appends to a SQLite data dir (spool fsynced per group of requests, then
//! the log's own group commit). Everything runs on this one machine: the load, the
//! upstream and the gateway share its cores.
//!
//! `cargo bench -p auditrail --bench gateway`
#![expect(clippy::unwrap_used, reason = "a benchmark: a panic is a failed run")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

#[path = "../tests/common/graphql.rs"]
mod graphql;
#[path = "../tests/common/process.rs"]
mod process;
#[path = "support.rs"]
mod support;

use support::{env_u64, run};

fn body(i: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "query": "mutation Add($n: String!) { addProject(name: $n, language: \"scala\", forkMode: SINGLE) { id name } }",
        "operationName": "Add",
        "variables": {"n": format!("project-{i}")}
    }))
    .unwrap()
}

async fn one(http: &reqwest::Client, url: &str, i: u64) -> Duration {
    let t = Instant::now();
    let r = http
        .post(url)
        .header("content-type", "application/json")
        .header("x-user-id", "u-42")
        .body(body(i))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b = r.bytes().await.unwrap();
    assert!(b.starts_with(b"{\"data\":{\"addProject\""), "{b:?}");
    t.elapsed()
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

async fn throughput(http: &reqwest::Client, url: &str, clients: u64, secs: u64) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (http, url, done) = (http.clone(), url.to_owned(), done.clone());
            tokio::spawn(async move {
                let mut i = c * 1_000_000_000;
                while Instant::now() < until {
                    one(&http, &url, i).await;
                    i += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// The floor's one handler: the request passed on (method, headers, body) and the
/// upstream's status, content type and body passed back.
async fn pass_on(
    axum::extract::State((client, upstream)): axum::extract::State<(reqwest::Client, String)>,
    req: axum::extract::Request,
) -> axum::response::Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let mut headers = parts.headers;
    headers.remove(http::header::HOST);
    headers.remove(http::header::CONTENT_LENGTH);
    let r = client
        .request(parts.method, &upstream)
        .headers(headers)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let kind = r.headers().get(http::header::CONTENT_TYPE).cloned();
    let mut resp = axum::response::Response::new(axum::body::Body::from(r.bytes().await.unwrap()));
    *resp.status_mut() = status;
    if let Some(k) = kind {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, k);
    }
    resp
}

/// The floor: a proxy that only passes requests on (`pass_on`), on its own two-thread
/// runtime, as a separate process's would be; returns its URL for `/graphql`.
fn bare_proxy(upstream: &str) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let state = (
        reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .build()
            .unwrap(),
        upstream.to_owned(),
    );
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().fallback(pass_on).with_state(state);
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    format!("http://{addr}/graphql")
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let requests = env_u64("BENCH_GATEWAY_REQUESTS", 5_000);
    let clients = env_u64("BENCH_GATEWAY_CLIENTS", 32);
    let secs = env_u64("BENCH_GATEWAY_SECS", 10);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    run(&dir, &["orgs", "create", "acme", "--catalog", "prophecy"]);
    let work_us = env_u64("BENCH_GATEWAY_UPSTREAM_WORK_US", 0);
    let work_rounds = if work_us == 0 {
        0
    } else {
        // Rounds per microsecond, the best of a few timings of 10,000 rounds.
        let per_us = (0..5)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(graphql::work(10_000));
                10_000.0 / (t.elapsed().as_secs_f64() * 1e6)
            })
            .fold(0.0, f64::max);
        (per_us * work_us as f64).round() as u32
    };
    if work_us > 0 {
        println!(
            "upstream work: {work_us} us of CPU per addProject ({work_rounds} SHA-256 rounds)"
        );
    }
    let upstream = graphql::start(graphql::Upstream {
        work_rounds,
        ..Default::default()
    })
    .await;
    let dir_s = dir.to_str().unwrap();
    let gw = process::gateway(
        &[
            "--upstream",
            &upstream,
            "--catalog",
            "prophecy",
            "--org",
            "acme",
            "--data-dir",
            dir_s,
            "--actor-header",
            "x-user-id",
        ],
        |cmd| {
            // The gateway's runtime threads (default: one per core).
            if let Ok(n) = std::env::var("BENCH_GATEWAY_WORKERS") {
                cmd.env("TOKIO_WORKER_THREADS", n);
            }
        },
    );
    let through = format!("{}/graphql", gw.base);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()
        .unwrap();
    let bare = bare_proxy(&upstream);
    // Warm every path (connections, caches, the log's first commits).
    for i in 0..200 {
        one(&http, &upstream, i).await;
        one(&http, &through, i).await;
        one(&http, &bare, i).await;
    }
    let (mut direct, mut gateway, mut floor) = (Vec::new(), Vec::new(), Vec::new());
    let mut i = 1_000;
    while (direct.len() as u64) < requests {
        for (url, v) in [
            (&upstream, &mut direct),
            (&through, &mut gateway),
            (&bare, &mut floor),
        ] {
            for _ in 0..500 {
                v.push(one(&http, url, i).await);
                i += 1;
            }
        }
    }
    for v in [&mut direct, &mut gateway, &mut floor] {
        v.sort();
    }
    println!(
        "latency, one client, {} audited mutations each way (ms):",
        direct.len()
    );
    println!("| path | p50 | p99 | max |");
    println!("| --- | ---: | ---: | ---: |");
    for (name, v) in [
        ("direct", &direct),
        ("through the gateway", &gateway),
        ("floor: bare pass-through proxy", &floor),
    ] {
        println!(
            "| {name} | {:.3} | {:.3} | {:.3} |",
            pct(v, 0.5),
            pct(v, 0.99),
            pct(v, 1.0)
        );
    }
    for (name, v) in [
        ("added by the gateway", &gateway),
        ("added by the floor", &floor),
    ] {
        println!(
            "| {name} | {:.3} | {:.3} | |",
            pct(v, 0.5) - pct(&direct, 0.5),
            pct(v, 0.99) - pct(&direct, 0.99)
        );
    }
    let d = throughput(&http, &upstream, clients, secs).await;
    let g = throughput(&http, &through, clients, secs).await;
    let b = throughput(&http, &bare, clients, secs).await;
    println!("throughput, {clients} clients, {secs} s each way:");
    println!("| path | requests/s | of direct |");
    println!("| --- | ---: | ---: |");
    println!("| direct | {d:.0} | 1.00 |");
    println!("| through the gateway | {g:.0} | **{:.2}** |", g / d);
    println!(
        "| floor: bare pass-through proxy (no audit) | {b:.0} | {:.2} |",
        b / d
    );
    // Every audited mutation reached the log.
    let metrics = http
        .get(format!("{}/metrics", gw.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
            .unwrap_or_default()
    };
    println!(
        "gateway: audited fields {}, appended {}, spool depth {}",
        line("auditrail_gateway_audited_fields_total"),
        line("auditrail_gateway_appended_events_total"),
        line("auditrail_gateway_spool_depth")
    );
    drop(gw);
}
