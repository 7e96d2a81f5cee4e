//! Live tail (`GET /v1/events/stream`) against a real server: events acked while a
//! subscriber is connected arrive in seq order and exactly as search returns them;
//! filters apply; a reconnect with `Last-Event-ID` yields exactly the missed events;
//! another org's events never appear; a stalled reader is cut off with its resume
//! point; the per-org bound on subscribers holds.
#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed test")]

mod common;

use std::time::Duration;

use common::TestServer;
use common::sse::{SseEvent, SseReader, open};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

async fn ingest(srv: &TestServer, token: &str, events: Vec<Value>) -> Vec<u64> {
    let (s, b) = srv
        .post("/v1/events", token, json!({ "events": events }))
        .await;
    assert_eq!(s, 200, "{b}");
    b["accepted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["seq"].as_u64().unwrap())
        .collect()
}

fn event(actor: &str, n: usize) -> Value {
    json!({"action": "addProject", "actor": {"id": actor, "type": "USER"},
           "resource": {"type": "PROJECT", "id": format!("p-{n}")}})
}

/// The org's events after `after`, oldest first, as search returns them.
async fn searched_after(srv: &TestServer, token: &str, after: u64) -> Vec<Value> {
    srv.all_events(token)
        .await
        .into_iter()
        .filter(|e| e["seq"].as_u64().unwrap() > after)
        .collect()
}

/// The position a stream opened at (its first, `id`-only line).
async fn position(r: &mut SseReader) -> u64 {
    let first = r.next(WAIT).await.unwrap();
    assert_eq!(first.data, "", "{first:?}");
    first.id.unwrap().parse().unwrap()
}

/// Reads messages until `n` have come; returns them.
async fn take(r: &mut SseReader, n: usize) -> Vec<SseEvent> {
    let mut out = Vec::new();
    while out.len() < n {
        let e = r.next(WAIT).await.expect("stream ended early");
        assert_eq!(e.event, "message", "{e:?}");
        out.push(e);
    }
    out
}

fn assert_same(got: &[SseEvent], want: &[Value]) {
    let got: Vec<Value> = got.iter().map(SseEvent::json).collect();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g, w);
    }
    for (e, g) in got.iter().zip(got.iter().skip(1)) {
        assert!(e["seq"].as_u64() < g["seq"].as_u64(), "out of order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_tail_in_order_filtered_resumable_and_isolated() {
    let dir = tempfile::tempdir().unwrap();
    let srv = TestServer::start(dir.path()).await;
    srv.create_org("acme").await;
    srv.create_org("other").await;
    let viewer = srv.key("acme", "viewer").await;
    let ingest_key = srv.key("acme", "ingest").await;
    let other_ingest = srv.key("other", "ingest").await;
    let other_viewer = srv.key("other", "viewer").await;
    ingest(&srv, &ingest_key, vec![event("u-0", 0)]).await;

    // Refusals, each naming what is wrong.
    let (s, b) = open(&srv.base, "/v1/events/stream", &ingest_key, None).await;
    assert_eq!(s, 403, "{:?}", b.err());
    let (s, b) = open(&srv.base, "/v1/events/stream?limit=5", &viewer, None).await;
    assert_eq!(s, 422);
    let b = b.err().unwrap();
    assert_eq!(b["error"]["code"], "invalid_query");
    assert_eq!(b["error"]["details"][0]["field"], "limit", "{b}");
    for (bad, status) in [("x", 422), ("-1", 422), ("99999999", 409)] {
        let (s, b) = open(&srv.base, "/v1/events/stream", &viewer, Some(bad)).await;
        assert_eq!(s, status, "{bad}");
        let b = b.err().unwrap();
        assert_eq!(b["error"]["details"][0]["field"], "Last-Event-ID", "{b}");
    }
    let (s, b) = open(&srv.base, "/v1/events/stream?q=nope:1", &viewer, None).await;
    assert_eq!(s, 422);
    assert_eq!(b.err().unwrap()["error"]["details"][0]["field"], "q");

    // Two subscribers: everything, and one actor's events.
    let (_, all) = open(&srv.base, "/v1/events/stream", &viewer, None).await;
    let mut all = all.unwrap();
    let start = position(&mut all).await;
    let (_, one) = open(&srv.base, "/v1/events/stream?actor_id=u-1", &viewer, None).await;
    let mut one = one.unwrap();
    let one_start = position(&mut one).await;
    assert!(
        one_start > start,
        "the second stream's own audit event comes first"
    );
    let (_, theirs) = open(&srv.base, "/v1/events/stream", &other_viewer, None).await;
    let mut theirs = theirs.unwrap();
    position(&mut theirs).await;

    let mut acked = Vec::new();
    for round in 0..10 {
        let batch = (0..5).map(|i| event(&format!("u-{}", i % 2), round * 5 + i));
        acked.extend(ingest(&srv, &ingest_key, batch.collect()).await);
        ingest(&srv, &other_ingest, vec![event("u-1", round)]).await;
    }
    let want = searched_after(&srv, &viewer, start).await;
    assert_eq!(
        want.len(),
        51,
        "50 acked, and the second stream's audit event"
    );
    let got = take(&mut all, want.len()).await;
    assert_same(&got, &want);
    for (e, seq) in got.iter().skip(1).zip(&acked) {
        assert_eq!(e.id.as_deref(), Some(seq.to_string().as_str()));
    }
    let u1: Vec<Value> = want
        .iter()
        .filter(|e| e["actor"]["id"] == "u-1")
        .cloned()
        .collect();
    assert_eq!(u1.len(), 20);
    assert_same(&take(&mut one, u1.len()).await, &u1);
    // The other org's stream sees its own ten and nothing of acme's.
    let mine = take(&mut theirs, 10).await;
    let theirs_want = searched_after(&srv, &other_viewer, 0).await;
    assert_same(&mine, &theirs_want[theirs_want.len() - 10..]);

    // Disconnect after 20, miss 30 more, reconnect: exactly the missed ones.
    let last_seen = got[20].id.clone().unwrap();
    drop(all);
    for round in 0..6 {
        let batch = (0..5).map(|i| event("u-2", 100 + round * 5 + i));
        ingest(&srv, &ingest_key, batch.collect()).await;
    }
    let (s, again) = open(&srv.base, "/v1/events/stream", &viewer, Some(&last_seen)).await;
    assert_eq!(s, 200);
    let mut again = again.unwrap();
    assert_eq!(position(&mut again).await.to_string(), last_seen);
    let missed = searched_after(&srv, &viewer, last_seen.parse().unwrap()).await;
    // 30 after the first 20 of before, 30 new, this stream's own audit event.
    assert_eq!(missed.len(), 30 + 30 + 1);
    assert_same(&take(&mut again, missed.len()).await, &missed);
    // And it goes on live.
    let live = ingest(&srv, &ingest_key, vec![event("u-3", 999)]).await;
    let e = take(&mut again, 1).await;
    assert_eq!(e[0].json()["seq"].as_u64(), Some(live[0]));

    // The reads are audited, with the filters.
    let audited: Vec<Value> = srv
        .all_events(&viewer)
        .await
        .into_iter()
        .filter(|e| e["action"] == "tailAuditLog")
        .collect();
    assert_eq!(audited.len(), 3, "{audited:?}");
    assert_eq!(audited[1]["details"]["filters"]["actor_id"], "u-1");
    assert_eq!(audited[2]["details"]["resume_after"].to_string(), last_seen);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_is_cut_off_with_its_resume_point_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let srv = TestServer::start(dir.path()).await;
    srv.create_org("acme").await;
    let viewer = srv.key("acme", "viewer").await;
    let ingest_key = srv.key("acme", "ingest").await;
    let (_, r) = open(&srv.base, "/v1/events/stream", &viewer, None).await;
    let mut stalled = r.unwrap();
    let start = position(&mut stalled).await;

    // Far more than the socket buffers and the feed's channel hold, none of it read.
    let pad = "x".repeat(200);
    let mut last = 0;
    for b in 0..60 {
        let batch = (0..1000)
            .map(|i| {
                json!({"action": "addProject", "actor": {"id": "u-1"},
                       "resource": {"type": "PROJECT", "id": format!("p-{b}-{i}")},
                       "details": {"pad": pad}})
            })
            .collect();
        last = *ingest(&srv, &ingest_key, batch).await.last().unwrap();
    }
    // Whatever was in flight arrives, then the cutoff with where to resume.
    let mut seqs = Vec::new();
    let cutoff = loop {
        let e = stalled.next(WAIT).await.expect("ended without a cutoff");
        if e.event == "cutoff" {
            break e;
        }
        seqs.push(e.json()["seq"].as_u64().unwrap());
    };
    assert!(stalled.next(WAIT).await.is_none(), "the stream ends");
    let resume = cutoff.json()["resume_after"].as_u64().unwrap();
    assert_eq!(cutoff.json()["reason"], "slow_consumer");
    assert_eq!(cutoff.id.as_deref(), Some(resume.to_string().as_str()));
    assert!(resume < last, "cut off behind the head");
    assert!(seqs.last().is_none_or(|s| *s <= resume));

    let (_, r) = open(
        &srv.base,
        "/v1/events/stream",
        &viewer,
        Some(&resume.to_string()),
    )
    .await;
    let mut again = r.unwrap();
    position(&mut again).await;
    while seqs.last() != Some(&last) {
        let e = again.next(WAIT).await.expect("stream ended early");
        assert_eq!(e.event, "message");
        seqs.push(e.json()["seq"].as_u64().unwrap());
    }
    let want: Vec<u64> = (start + 1..=last).collect();
    assert_eq!(seqs.len(), want.len(), "nothing lost, nothing repeated");
    assert_eq!(seqs, want);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_per_org_are_bounded_and_given_back() {
    let dir = tempfile::tempdir().unwrap();
    let srv = TestServer::start_custom(dir.path(), |s| s.tail_max_streams = 3).await;
    srv.create_org("acme").await;
    srv.create_org("other").await;
    let viewer = srv.key("acme", "viewer").await;
    let ingest_key = srv.key("acme", "ingest").await;
    let other = srv.key("other", "viewer").await;
    let mut open_ones = Vec::new();
    for _ in 0..3 {
        let (s, r) = open(&srv.base, "/v1/events/stream", &viewer, None).await;
        assert_eq!(s, 200);
        let mut r = r.unwrap();
        position(&mut r).await;
        open_ones.push(r);
    }
    let (s, b) = open(&srv.base, "/v1/events/stream", &viewer, None).await;
    assert_eq!(s, 429);
    assert_eq!(b.err().unwrap()["error"]["code"], "too_many_streams");
    // Another org's bound is its own.
    let (s, _) = open(&srv.base, "/v1/events/stream", &other, None).await;
    assert_eq!(s, 200);
    // A closed stream gives its slot back, once the server finds it gone (its next
    // write fails).
    drop(open_ones.pop());
    let mut reopened = None;
    for n in 0..100 {
        ingest(&srv, &ingest_key, vec![event("u-1", n)]).await;
        let (s, r) = open(&srv.base, "/v1/events/stream", &viewer, None).await;
        if s == 200 {
            reopened = Some(r.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut reopened = reopened.expect("the slot came back");
    let at = position(&mut reopened).await;

    // Shutting down ends every stream with its resume point; the server does not wait
    // on them.
    srv.stop().await;
    let last = reopened.next(WAIT).await.unwrap();
    assert_eq!(last.event, "cutoff", "{last:?}");
    assert_eq!(last.json()["reason"], "shutting_down");
    assert_eq!(last.json()["resume_after"].as_u64(), Some(at));
    assert!(reopened.next(WAIT).await.is_none());
}

/// `auditrail tail` prints the filtered events as JSON lines and, when the server
/// restarts under it, resumes where it left off: nothing missed, nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_tail_follows_across_a_server_restart() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let srv = TestServer::start(dir.path()).await;
    let addr = srv.base.trim_start_matches("http://").to_owned();
    srv.create_org("acme").await;
    srv.create_org("other").await;
    let viewer = srv.key("acme", "viewer").await;
    let ingest_key = srv.key("acme", "ingest").await;

    // A key of another org than `--org` names is refused at once.
    let (base, token) = (srv.base.clone(), viewer.clone());
    let wrong = tokio::task::spawn_blocking(move || {
        std::process::Command::new(common::BIN)
            .args(["tail", "--url", &base, "--token", &token, "--org", "other"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("403"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );

    let mut child = std::process::Command::new(common::BIN)
        .args([
            "tail", "--url", &srv.base, "--token", &viewer, "--org", "acme",
        ])
        .args(["--actor-id", "u-1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let subscribed = |srv: &TestServer| {
        srv.app
            .tail
            .subscribers()
            .iter()
            .any(|(org, n)| org == "acme" && *n > 0)
    };
    for _ in 0..200 {
        if subscribed(&srv) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(subscribed(&srv), "auditrail tail connected");

    let batch = |from: usize| (from..from + 10).map(|n| event(&format!("u-{}", n % 2), n));
    ingest(&srv, &ingest_key, batch(0).collect()).await;
    srv.stop().await;
    // While the server is down the CLI retries; events appended before it comes back
    // are read from where it left off.
    let srv = TestServer::start_at(dir.path(), &addr, |_| {}).await;
    ingest(&srv, &ingest_key, batch(10).collect()).await;
    ingest(&srv, &ingest_key, batch(20).collect()).await;

    let want: Vec<Value> = srv
        .all_events(&viewer)
        .await
        .into_iter()
        .filter(|e| e["actor"]["id"] == "u-1")
        .collect();
    assert_eq!(want.len(), 15);
    let mut got = Vec::new();
    while got.len() < want.len() {
        let line = lines
            .recv_timeout(WAIT)
            .expect("auditrail tail printed every event");
        got.push(serde_json::from_str::<Value>(&line).unwrap());
    }
    assert_eq!(got, want);
    // And nothing more (no repeats) once caught up.
    assert!(lines.recv_timeout(Duration::from_millis(500)).is_err());
    child.kill().unwrap();
    let _ = child.wait();
    srv.stop().await;
}
