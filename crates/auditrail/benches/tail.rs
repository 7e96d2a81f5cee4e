//! Live tail benchmark: a real `auditrail serve` on a fresh data dir, and in this process
//! a load generator (500-event batches over 16 connections) and the subscribers.
//!
//! 1. The peer: the generator alone, flat out, for `BENCH_TAIL_SECS` (10): its rate.
//! 2. 100 subscribers on the org, each following one actor
//!    (`/v1/events/stream?actor_id=u-K`, the Audit page's Live mode with a user filter),
//!    while the generator runs at half the peer's rate: each event's time from the
//!    generator reading its ack to a subscriber reading it (p50, p99, max).
//! 3. 100 subscribers without a filter, every event to each, while the generator sends
//!    `BENCH_TAIL_SLOW_RATE` (1,000) events a second in batches of 100.
//!
//! `cargo bench -p auditrail --bench tail`
#![expect(clippy::unwrap_used, reason = "a benchmark: a panic is a failed run")]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "../tests/common/process.rs"]
mod process;
#[path = "support.rs"]
mod support;

use support::{env_u64, pct};

const ADMIN: &str = "bench-admin-token";
const CONNECTIONS: usize = 16;
const SUBSCRIBERS: usize = 100;

/// Batches of `size` events (the bench's events without client ids, so that the same
/// bodies can be sent again and again), `count` of them.
fn bodies(size: usize, count: usize) -> Vec<bytes::Bytes> {
    (0..count)
        .map(|b| {
            let events: Vec<Value> = (0..size)
                .map(|i| {
                    let mut e = support::event((b * size + i) as u64);
                    e.as_object_mut().unwrap().remove("id");
                    e
                })
                .collect();
            serde_json::to_vec(&json!({ "events": events }))
                .unwrap()
                .into()
        })
        .collect()
}

/// One acked batch: its seqs and when the generator read the answer.
type Acks = Arc<Mutex<Vec<(u64, u64, Instant)>>>;

/// Sends `bodies` round-robin over `CONNECTIONS` connections for `secs`, each connection
/// at most one batch every `gap` (flat out when zero); returns events acked.
async fn generate(
    base: &str,
    token: &str,
    bodies: &[bytes::Bytes],
    secs: u64,
    gap: Duration,
    acks: &Acks,
) -> u64 {
    let end = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let http = reqwest::Client::new();
        let url = format!("{base}/v1/events");
        let token = token.to_owned();
        let bodies = bodies.to_vec();
        let acks = acks.clone();
        tasks.push(tokio::spawn(async move {
            let mut sent = 0u64;
            let mut i = c;
            // Connections start spread over one gap, not all at once.
            let mut next = Instant::now() + gap.mul_f64(c as f64 / CONNECTIONS as f64);
            while Instant::now() < end {
                if !gap.is_zero() {
                    tokio::time::sleep_until(next.into()).await;
                    next += gap;
                }
                let r = http
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(bodies[i % bodies.len()].clone())
                    .send()
                    .await
                    .unwrap();
                let status = r.status();
                let v: Value = r.json().await.unwrap();
                let at = Instant::now();
                assert!(status.is_success(), "{status} {v}");
                let acc = v["accepted"].as_array().unwrap();
                let first = acc[0]["seq"].as_u64().unwrap();
                let last = acc[acc.len() - 1]["seq"].as_u64().unwrap();
                acks.lock().unwrap().push((first, last, at));
                sent += acc.len() as u64;
                i += CONNECTIONS;
            }
            sent
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total
}

/// Each event a subscriber read: its seq and when.
type Seen = Arc<Mutex<Vec<(u64, Instant)>>>;

/// Opens a stream and records every event it reads until `stop`; returns once the stream
/// is open (its first line read).
async fn subscribe(
    base: &str,
    token: &str,
    query: &str,
    seen: Seen,
    stop: Arc<tokio::sync::Notify>,
) {
    let mut resp = reqwest::Client::new()
        .get(format!("{base}/v1/events/stream{query}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let first = resp.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"id: "));
    tokio::spawn(async move {
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let chunk = tokio::select! {
                c = resp.chunk() => c,
                _ = stop.notified() => return,
            };
            let Ok(Some(chunk)) = chunk else { return };
            let at = Instant::now();
            buf.extend_from_slice(&chunk);
            let mut got = Vec::new();
            while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = buf.drain(..end + 2).collect();
                let text = String::from_utf8_lossy(&block);
                if let Some(i) = text.find("\"seq\":") {
                    let digits: String = text[i + 6..]
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .collect();
                    got.push((digits.parse().unwrap(), at));
                }
            }
            seen.lock().unwrap().extend(got);
        }
    });
}

/// Milliseconds from each seen event's ack to its arrival.
fn latencies(acks: &Acks, seen: &Seen) -> Vec<f64> {
    let mut acks = acks.lock().unwrap().clone();
    acks.sort_by_key(|a| a.0);
    let seen = seen.lock().unwrap();
    seen.iter()
        .filter_map(|(seq, at)| {
            let i = acks.partition_point(|a| a.0 <= *seq).checked_sub(1)?;
            let (first, last, acked) = acks[i];
            ((first..=last).contains(seq))
                .then(|| at.saturating_duration_since(acked).as_secs_f64() * 1000.0)
        })
        .collect()
}

/// The server and the org's keys.
struct Org {
    base: String,
    viewer: String,
    ingest: String,
}

async fn run_with_subscribers(
    label: &str,
    org: &Org,
    queries: Vec<String>,
    bodies: &[bytes::Bytes],
    secs: u64,
    gap: Duration,
) {
    let seen: Seen = Arc::default();
    let stop = Arc::new(tokio::sync::Notify::new());
    for q in &queries {
        subscribe(&org.base, &org.viewer, q, seen.clone(), stop.clone()).await;
    }
    let acks: Acks = Arc::default();
    let t = Instant::now();
    let sent = generate(&org.base, &org.ingest, bodies, secs, gap, &acks).await;
    let rate = sent as f64 / t.elapsed().as_secs_f64();
    // What is still in flight arrives.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.notify_waiters();
    let mut ms = latencies(&acks, &seen);
    let delivered = ms.len();
    let max = ms.iter().cloned().fold(0.0, f64::max);
    println!(
        "{label}: {} subscribers, ingest {rate:.0} events/s; {delivered} deliveries; ack → received p50 {:.1} ms, p99 {:.1} ms, max {max:.1} ms",
        queries.len(),
        pct(&mut ms, 0.5),
        pct(&mut ms, 0.99),
    );
}

#[tokio::main]
async fn main() {
    let secs = env_u64("BENCH_TAIL_SECS", 10);
    let slow_rate = env_u64("BENCH_TAIL_SLOW_RATE", 1000);
    let work = tempfile::tempdir().unwrap();
    let srv = process::serve(ADMIN, |c| {
        c.arg("--data-dir").arg(work.path().join("data"));
    });
    let base = srv.base.clone();
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        let req = http
            .post(format!("{base}{path}"))
            .bearer_auth(ADMIN)
            .json(&body);
        async move {
            let r = req.send().await.unwrap();
            assert!(r.status().is_success(), "{}", r.status());
            r.json::<Value>().await.unwrap()
        }
    };
    post("/v1/orgs", json!({"id": "acme"})).await;
    let key = |role: &str| post("/v1/orgs/acme/keys", json!({"name": role, "role": role}));
    let ingest = key("ingest").await["token"].as_str().unwrap().to_owned();
    let viewer = key("viewer").await["token"].as_str().unwrap().to_owned();
    let big = bodies(500, 400);
    let org = Org {
        base: base.clone(),
        viewer,
        ingest,
    };

    let acks: Acks = Arc::default();
    let t = Instant::now();
    let sent = generate(&base, &org.ingest, &big, secs, Duration::ZERO, &acks).await;
    let peer = sent as f64 / t.elapsed().as_secs_f64();
    println!(
        "peer: the load generator alone, 500-event batches × {CONNECTIONS}: {peer:.0} events/s"
    );

    // Half the peer's rate: each connection one batch every gap.
    let gap = Duration::from_secs_f64(500.0 * CONNECTIONS as f64 / (peer / 2.0));
    let one_actor: Vec<String> = (0..SUBSCRIBERS)
        .map(|k| format!("?actor_id=u-{k}"))
        .collect();
    run_with_subscribers(
        "one actor each, at half the peer's rate",
        &org,
        one_actor,
        &big,
        secs,
        gap,
    )
    .await;

    let small = bodies(100, 400);
    let gap = Duration::from_secs_f64(100.0 * CONNECTIONS as f64 / slow_rate as f64);
    run_with_subscribers(
        &format!("every event, at {slow_rate} events/s"),
        &org,
        vec![String::new(); SUBSCRIBERS],
        &small,
        secs,
        gap,
    )
    .await;
    drop(srv);
}
