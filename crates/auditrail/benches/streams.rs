//! Push streams benchmark, with a real `auditrail serve` and receivers that check each
//! service's request format (the tests' receivers: HMAC of every `https` batch, HEC's
//! and Datadog intake's bodies and limits):
//!
//! - throughput: a backlog of N events (default 1,000,000) drained by each kind (`https`,
//!   `splunk_hec`, `datadog`, and where their emulators are installed `gcs` and
//!   `azure_blob`), from destination creation until `delivered_seq` reaches the head; the
//!   peer, in the same run, the S3 delivery of the same backlog to the workspace's
//!   S3-compatible server (ndjson.gz, 10,000-event objects, no tiles, as the object
//!   stores are);
//! - live lag: events ingested one request at a time, ~20/s, with `max_batch_seconds` 1;
//!   per event, from the ingest acknowledgement until the receiver has it; p50/p95/max.
//!
//! `cargo bench -p auditrail --bench streams` (env BENCH_STREAMS_EVENTS,
//! BENCH_LATENCY_SECS, default 20).
#![expect(clippy::unwrap_used, reason = "a benchmark: a panic is a failed run")]

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use auditrail_s3_dev::DevS3;
use serde_json::{Value, json};

#[path = "../tests/common/emulators.rs"]
mod emulators;
#[path = "../tests/common/process.rs"]
mod process;
#[path = "../tests/common/receivers.rs"]
mod receivers;
#[path = "support.rs"]
mod support;

use process::Serve;
use receivers::{Kind, Receiver};
use support::{env_u64, load, pct, run};

const ADMIN: &str = "bench-admin-token";
const AK: &str = "AKIDBENCH0000001";
const SK: &str = "bench-secret";
const SECRET: &str = "bench-stream-secret-0123";

fn serve(dir: &Path) -> Serve {
    process::serve(ADMIN, |c| {
        // The bench's receivers listen on loopback.
        c.arg("--data-dir")
            .arg(dir)
            .env("AUDITRAIL_OUTBOUND_ALLOW", "127.0.0.0/8");
    })
}

fn body(kind: Option<Kind>, r: Option<&Receiver>, ep: &str, name: &str, secs: u64) -> Value {
    let url = r.map(Receiver::url).unwrap_or_default();
    let mut d = match kind {
        None => json!({"kind": "s3", "bucket": "bench", "prefix": name, "endpoint": ep,
            "credentials": {"access_key_id": AK, "secret_access_key": SK}, "tiles": false}),
        Some(Kind::Https) => json!({"kind": "https", "url": url, "secret": SECRET}),
        Some(Kind::Splunk) => json!({"kind": "splunk_hec", "url": url, "token": SECRET}),
        Some(Kind::Datadog) => json!({"kind": "datadog", "url": url, "api_key": SECRET}),
    };
    d["max_batch_seconds"] = json!(secs);
    d
}

async fn put(http: &reqwest::Client, base: &str, key: &str, name: &str, body: Value) {
    let r = http
        .put(format!("{base}/v1/destinations/{name}"))
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

async fn delete(http: &reqwest::Client, base: &str, key: &str, name: &str) {
    let r = http
        .delete(format!("{base}/v1/destinations/{name}"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

/// Waits until every full batch of destination `name` is out (a tail shorter than a batch
/// waits for its time); the seq delivered through.
async fn drained(http: &reqwest::Client, base: &str, key: &str, name: &str) -> u64 {
    loop {
        let st = status(http, base, key, name).await;
        let delivered = st["delivered_seq"].as_u64().unwrap();
        let total = delivered + st["lag_events"].as_u64().unwrap();
        if delivered + 10_000 > total {
            return delivered;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn label(kind: Option<Kind>) -> &'static str {
    match kind {
        None => "s3",
        Some(Kind::Https) => "https",
        Some(Kind::Splunk) => "splunk_hec",
        Some(Kind::Datadog) => "datadog",
    }
}

#[tokio::main]
async fn main() {
    let n = env_u64("BENCH_STREAMS_EVENTS", 1_000_000);
    let lat_secs = env_u64("BENCH_LATENCY_SECS", 20);
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

    // Throughput: each kind drains the backlog, one after the other.
    let mut s3_rate = 0.0;
    let mut stores = Vec::new();
    for store in [emulators::Store::Gcs, emulators::Store::Azure] {
        if emulators::available(store) {
            stores.push(emulators::Emulator::start(store));
        } else {
            println!("{store:?}: emulator not installed, not measured");
        }
    }
    for kind in [
        None,
        Some(Kind::Https),
        Some(Kind::Splunk),
        Some(Kind::Datadog),
    ] {
        let name = format!("backlog-{}", label(kind));
        let r = kind.map(|k| Receiver::start(k, SECRET));
        let t = Instant::now();
        put(
            &http,
            &srv.base,
            &key,
            &name,
            body(kind, r.as_ref(), &ep, &name, 10),
        )
        .await;
        let head = drained(&http, &srv.base, &key, &name).await;
        let secs = t.elapsed().as_secs_f64();
        let rate = head as f64 / secs;
        if kind.is_none() {
            s3_rate = rate;
        }
        let requests = r.as_ref().map_or(head.div_ceil(10_000) as usize, |r| {
            r.log.lock().unwrap().accepted.len()
        });
        let bad = r.as_ref().map_or(0, |r| r.violations().len());
        println!(
            "{}: {head} events in {secs:.2} s = {rate:.0} events/s ({:.0}% of S3's), {requests} requests, {bad} refused",
            label(kind),
            100.0 * rate / s3_rate.max(1.0),
        );
        delete(&http, &srv.base, &key, &name).await;
    }
    for emu in &stores {
        let name = format!("backlog-{:?}", emu.store).to_lowercase();
        let mut b = emu.destination(json!({"max_batch_seconds": 10, "tiles": false}));
        b["prefix"] = json!(name);
        let t = Instant::now();
        put(&http, &srv.base, &key, &name, b).await;
        let head = drained(&http, &srv.base, &key, &name).await;
        let secs = t.elapsed().as_secs_f64();
        let rate = head as f64 / secs;
        println!(
            "{} ({} emulator): {head} events in {secs:.2} s = {rate:.0} events/s ({:.0}% of S3's), {} objects",
            if emu.store == emulators::Store::Gcs {
                "gcs"
            } else {
                "azure_blob"
            },
            if emu.store == emulators::Store::Gcs {
                "gcp-storage-emulator"
            } else {
                "Azurite"
            },
            100.0 * rate / s3_rate.max(1.0),
            head.div_ceil(10_000),
        );
        delete(&http, &srv.base, &key, &name).await;
    }
    drop(stores);

    // Live lag: ack → in the receiver's hands, max_batch_seconds = 1.
    for (k, kind) in [Kind::Https, Kind::Splunk, Kind::Datadog]
        .into_iter()
        .enumerate()
    {
        let name = format!("live-{}", label(Some(kind)));
        let r = Receiver::start(kind, SECRET);
        let mut b = body(Some(kind), Some(&r), &ep, &name, 1);
        b["start"] = json!("now");
        put(&http, &srv.base, &key, &name, b).await;
        let mut acked: HashMap<u64, Instant> = HashMap::new();
        let stop_at = Instant::now() + Duration::from_secs(lat_secs);
        let mut i = 0u64;
        let mut seen: HashMap<u64, Instant> = HashMap::new();
        let mut read = 0usize;
        loop {
            let now = Instant::now();
            if now < stop_at {
                let resp: Value = http
                    .post(format!("{}/v1/events", srv.base))
                    .bearer_auth(&key)
                    // Events of their own: a client id seen before is a resend, answered
                    // with the seq it already has.
                    .json(&support::event(20_000_000 + k as u64 * 1_000_000 + i))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                acked.insert(resp["accepted"][0]["seq"].as_u64().unwrap(), Instant::now());
                i += 1;
            }
            {
                let log = r.log.lock().unwrap();
                for (k, (_, seqs)) in log.accepted.iter().enumerate().skip(read) {
                    let at = log.accepted_at[k];
                    for s in seqs {
                        seen.entry(*s).or_insert(at);
                    }
                    read = k + 1;
                }
            }
            if now >= stop_at && acked.keys().all(|s| seen.contains_key(s)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut lat: Vec<f64> = acked
            .iter()
            .map(|(s, a)| seen[s].saturating_duration_since(*a).as_secs_f64())
            .collect();
        let count = lat.len();
        let (p50, p95) = (pct(&mut lat, 0.5), pct(&mut lat, 0.95));
        let max = lat.last().copied().unwrap_or(0.0);
        println!(
            "live lag {} at max_batch_seconds=1: {count} events, ack → received p50 {p50:.2} s, p95 {p95:.2} s, max {max:.2} s (goal p95 ≤ 2 s)",
            label(Some(kind))
        );
        delete(&http, &srv.base, &key, &name).await;
    }
    drop(srv);
    s3.stop().await;
}
