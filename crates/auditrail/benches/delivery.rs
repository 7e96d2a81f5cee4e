//! S3 delivery benchmark against a local S3-compatible server (auditrail-s3-dev, SigV4,
//! files on disk), with a real `auditrail serve`:
//!
//! - throughput: a backlog of N events (default 1,000,000) delivered as ndjson.gz with
//!   the default batch (10,000 events), from destination creation until
//!   `delivered_seq` reaches the head; beside it, in the same run, `gzip -1` compressing
//!   the same NDJSON (the compression floor) — the peer.
//! - latency: events ingested one request at a time, ~20/s, for each of
//!   `max_batch_seconds` = 1 and 10; per event, the time from the ingest
//!   acknowledgement until its object is listed in the bucket; p50/p95/max.
//!
//! `cargo bench -p auditrail --bench delivery` (env BENCH_DELIVERY_EVENTS,
//! BENCH_LATENCY_SECS per setting, default 40).
#![expect(clippy::unwrap_used, reason = "a benchmark: a panic is a failed run")]

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use auditrail_s3_dev::DevS3;
use futures_util::TryStreamExt;
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use serde_json::{Value, json};

#[path = "../tests/common/process.rs"]
mod process;
#[path = "support.rs"]
mod support;

use process::Serve;
use support::{env_u64, load, pct, run};

const ADMIN: &str = "bench-admin-token";
const AK: &str = "AKIDBENCH0000001";
const SK: &str = "bench-secret";

fn serve(dir: &Path) -> Serve {
    process::serve(ADMIN, |c| {
        // The bench's S3 server listens on loopback.
        c.arg("--data-dir")
            .arg(dir)
            .env("AUDITRAIL_OUTBOUND_ALLOW", "127.0.0.0/8");
    })
}

async fn put_destination(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    ep: &str,
    prefix: &str,
    secs: u64,
    tiles: bool,
) {
    let body = json!({"kind": "s3", "bucket": "bench", "prefix": prefix, "endpoint": ep,
        "credentials": {"access_key_id": AK, "secret_access_key": SK}, "max_batch_seconds": secs,
        "tiles": tiles});
    let r = http
        .put(format!("{base}/v1/destinations/{prefix}"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

async fn status(http: &reqwest::Client, base: &str, key: &str, name: &str) -> Value {
    http.get(format!("{base}/v1/destinations/{name}"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::main]
async fn main() {
    let n = env_u64("BENCH_DELIVERY_EVENTS", 1_000_000);
    let lat_secs = env_u64("BENCH_LATENCY_SECS", 40);
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let file = work.path().join("events.ndjson");
    support::write_ndjson(&file, n);
    load(&data, &file);
    let key = ["keys", "create", "--org", "acme", "--role", "admin"];
    let key: Value = serde_json::from_str(&run(&data, &key)).unwrap();
    let key = key["token"].as_str().unwrap().to_owned();

    let s3 = DevS3::start(
        &work.path().join("s3"),
        "127.0.0.1:0".parse().unwrap(),
        AK,
        SK,
    )
    .await
    .unwrap();
    s3.create_bucket("bench").unwrap();
    let ep = s3.endpoint();
    let srv = serve(&data);
    let http = reqwest::Client::new();

    // Throughput: the backlog, until every full batch is delivered (the tail of a
    // backlog that is not a multiple of the batch size waits for the time trigger); once
    // without the tiled log beside the objects, once with it (the default).
    let mut took = Vec::new();
    for (name, tiles) in [("backlog-plain", false), ("backlog", true)] {
        let t = Instant::now();
        put_destination(&http, &srv.base, &key, &ep, name, 10, tiles).await;
        let head = loop {
            let st = status(&http, &srv.base, &key, name).await;
            let delivered = st["delivered_seq"].as_u64().unwrap();
            let total = delivered + st["lag_events"].as_u64().unwrap();
            if delivered >= total / 10_000 * 10_000 {
                break delivered;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let secs = t.elapsed().as_secs_f64();
        let bytes: u64 = walk_size(&work.path().join(format!("s3/bench/{name}")));
        let tile_bytes: u64 =
            walk_size(&work.path().join(format!("s3/bench/{name}/org=acme/_tlog")));
        println!(
            "{name}: {head} events delivered as ndjson.gz in {secs:.2} s = {:.0} events/s; {} objects of ~10k events, {:.1} MB in the bucket ({:.1} MB of tiles)",
            head as f64 / secs,
            head.div_ceil(10_000),
            bytes as f64 / 1e6,
            tile_bytes as f64 / 1e6
        );
        took.push((head, secs));
    }
    let ((head, plain), (_, tiled)) = (took[0], took[1]);
    println!(
        "tiles: the {head}-event log's tiles added {:.2} s: written at {:.0} events/s (the delivery itself: {:.0} events/s)",
        tiled - plain,
        head as f64 / (tiled - plain).max(1e-3),
        head as f64 / plain
    );

    // Peer: gzip -1 of the same events as NDJSON (the compression floor, one core).
    let t = Instant::now();
    let out = Command::new("gzip")
        .args(["-1", "-c"])
        .arg(&file)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(out.success());
    let g = t.elapsed().as_secs_f64();
    println!(
        "peer: gzip -1 of the {n} NDJSON lines: {g:.2} s = {:.0} lines/s",
        n as f64 / g
    );

    // Latency: ack → object listed in the bucket.
    let client = AmazonS3Builder::new()
        .with_bucket_name("bench")
        .with_region("us-east-1")
        .with_endpoint(&ep)
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .with_access_key_id(AK)
        .with_secret_access_key(SK)
        .build()
        .unwrap();
    for secs in [1u64, 10] {
        let name = format!("latency{secs}");
        put_destination(&http, &srv.base, &key, &ep, &name, secs, true).await;
        // Let it catch up with the backlog first.
        loop {
            let st = status(&http, &srv.base, &key, &name).await;
            if st["lag_events"] == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut acked: HashMap<u64, Instant> = HashMap::new();
        let mut seen: HashMap<u64, Instant> = HashMap::new();
        let mut known = std::collections::HashSet::new();
        let stop_at = Instant::now() + Duration::from_secs(lat_secs);
        let mut i = 0u64;
        // Only the day's objects: the tiled log beside them holds thousands of keys.
        let today = chrono::Utc::now().format("%Y-%m-%d");
        let prefix = object_store::path::Path::from(format!("{name}/org=acme/dt={today}"));
        loop {
            let now = Instant::now();
            if now < stop_at {
                let r: Value = http
                    .post(format!("{}/v1/events", srv.base))
                    .bearer_auth(&key)
                    .json(&support::event(10_000_000 + secs * 1_000_000 + i))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                acked.insert(r["accepted"][0]["seq"].as_u64().unwrap(), Instant::now());
                i += 1;
            }
            let metas: Vec<_> = client.list(Some(&prefix)).try_collect().await.unwrap();
            let now = Instant::now();
            for m in metas {
                let k = m.location.to_string();
                if k.contains("_checkpoints") || k.contains("/_tlog/") || !known.insert(k.clone()) {
                    continue;
                }
                let name = k.trim_end_matches(".ndjson.gz");
                let mut p = name.rsplit('-');
                let last: u64 = p.next().unwrap().parse().unwrap();
                let first: u64 = p.next().unwrap().parse().unwrap();
                for s in first..=last {
                    seen.entry(s).or_insert(now);
                }
            }
            if now >= stop_at && acked.keys().all(|s| seen.contains_key(s)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        let mut lat: Vec<f64> = acked
            .iter()
            .map(|(s, a)| seen[s].duration_since(*a).as_secs_f64())
            .collect();
        let count = lat.len();
        let (p50, p95) = (pct(&mut lat, 0.5), pct(&mut lat, 0.95));
        let max = lat.last().copied().unwrap_or(0.0);
        println!(
            "latency at max_batch_seconds={secs}: {count} events, ack → readable in the bucket p50 {p50:.2} s, p95 {p95:.2} s, max {max:.2} s (goal p95 ≤ {} s)",
            secs + 2
        );
    }
    drop(srv);
    s3.stop().await;
}

fn walk_size(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            total += if p.is_dir() {
                walk_size(&p)
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            };
        }
    }
    total
}
