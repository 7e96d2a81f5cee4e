//! Ordered batches (`Auditrail-Order`): a client's batches are stored in the order it
//! numbered them, whatever order they reach the server in; a batch whose predecessor
//! never comes, or failed, is refused with 409 and nothing of it is stored.
#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed test")]

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use serde_json::{Value, json};

async fn send(
    srv: &TestServer,
    token: &str,
    order: &str,
    ids: std::ops::Range<u32>,
) -> (u16, Option<String>, Value) {
    let events: Vec<Value> = ids
        .map(|i| json!({"id": format!("ev-{i}"), "action": "addProject"}))
        .collect();
    let r = srv
        .http
        .post(format!("{}/v1/events", srv.base))
        .bearer_auth(token)
        .header("auditrail-order", order)
        .json(&json!({ "events": events }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let echo = r
        .headers()
        .get("auditrail-order")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, echo, r.json().await.unwrap())
}

/// The seqs the org stored for event ids `ev-<from>` .. `ev-<to>`, in id order.
async fn seqs(srv: &TestServer, token: &str) -> Vec<(String, u64)> {
    srv.all_events(token)
        .await
        .into_iter()
        .filter(|e| e["id"].as_str().unwrap().starts_with("ev-"))
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_owned(),
                e["seq"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_batch_that_arrives_first_is_stored_after_the_one_it_follows() {
    let dir = tempfile::tempdir().unwrap();
    let srv = TestServer::start(dir.path()).await;
    srv.create_org("acme").await;
    let token = srv.key("acme", "ingest").await;
    let viewer = srv.key("acme", "viewer").await;

    // Batch 0 alone, then batch 2 (follows 1) before batch 1 (follows 0).
    let (s, echo, b) = send(&srv, &token, "stream-aaa 0 0", 0..10).await;
    assert_eq!((s, echo.as_deref()), (200, Some("0")), "{b}");
    let later = {
        let srv_base = srv.base.clone();
        let http = srv.http.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let events: Vec<Value> = (20..30)
                .map(|i| json!({"id": format!("ev-{i}"), "action": "addProject"}))
                .collect();
            let r = http
                .post(format!("{srv_base}/v1/events"))
                .bearer_auth(&token)
                .header("auditrail-order", "stream-aaa 2 1")
                .json(&json!({ "events": events }))
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!later.is_finished(), "batch 2 did not wait for batch 1");
    let (s, _, b) = send(&srv, &token, "stream-aaa 1 1", 10..20).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(later.await.unwrap(), 200);

    let stored = seqs(&srv, &viewer).await;
    assert_eq!(stored.len(), 30);
    let ids: Vec<&str> = stored.iter().map(|(id, _)| id.as_str()).collect();
    let want: Vec<String> = (0..30).map(|i| format!("ev-{i}")).collect();
    assert_eq!(ids, want, "stored in the stream's order");
    srv.stop().await;
}

#[tokio::test]
async fn a_batch_whose_predecessor_never_comes_is_refused_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let srv = TestServer::start(dir.path()).await;
    srv.create_org("acme").await;
    let token = srv.key("acme", "ingest").await;
    let viewer = srv.key("acme", "viewer").await;

    // Of a stream this node has never seen: refused at once.
    let t = Instant::now();
    let (s, _, b) = send(&srv, &token, "stream-bbb 5 1", 0..10).await;
    assert_eq!(s, 409, "{b}");
    assert_eq!(b["error"]["code"], "batch_out_of_order");
    assert!(t.elapsed() < Duration::from_millis(900));
    // Of a known stream whose batch 4 never comes: after a second.
    let (s, _, b) = send(&srv, &token, "stream-bbb 3 0", 300..301).await;
    assert_eq!(s, 200, "{b}");
    let t = Instant::now();
    let (s, _, b) = send(&srv, &token, "stream-bbb 5 1", 0..10).await;
    assert_eq!(s, 409, "{b}");
    assert!(t.elapsed() >= Duration::from_millis(900));
    assert_eq!(
        seqs(&srv, &viewer).await.len(),
        1,
        "nothing of the refused batch"
    );

    // A batch refused for good settles its place: the next one goes.
    let (s, _, _) = send(&srv, &token, "stream-bbb 5 0", 0..0).await;
    assert_eq!(s, 422, "an empty batch is refused");
    let (s, echo, b) = send(&srv, &token, "stream-bbb 6 1", 0..10).await;
    assert_eq!((s, echo.as_deref()), (200, Some("6")), "{b}");

    // Another org's stream of the same name is its own.
    srv.create_org("other").await;
    let other = srv.key("other", "ingest").await;
    let (s, _, _) = send(&srv, &other, "stream-bbb 7 1", 100..101).await;
    assert_eq!(s, 409);

    // A malformed header changes nothing.
    for bad in [
        "stream-bbb",
        "short 1 0",
        "stream-bbb 0 1",
        "stream-bbb 1 2",
    ] {
        let (s, _, b) = send(&srv, &token, bad, 200..201).await;
        assert_eq!(s, 422, "{bad}: {b}");
        assert_eq!(b["error"]["details"][0]["field"], "Auditrail-Order", "{b}");
    }
    assert_eq!(seqs(&srv, &viewer).await.len(), 11);
    srv.stop().await;
}
