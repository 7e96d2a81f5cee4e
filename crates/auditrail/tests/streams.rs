//! Push streams (`https`, `splunk_hec`, `datadog`) against receivers that enforce each
//! service's documented request format and limits: a backlog delivered whole and in
//! order within the limits; the receiver failing for 10 s, then caught up; 429 with
//! `Retry-After` honoured; the receiver killed mid-stream and restarted; auditrail itself
//! restarted mid-stream; a 403 putting the stream in `error` without hammering the
//! receiver, and recovery. Push is at least once: a batch may arrive again, never out of
//! order, never with a gap.
#![allow(clippy::unwrap_used, reason = "a panic is a failed test")]

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use common::receivers::{Kind, Mode, Receiver, every_seq_in_order};
use common::smtp::next_mail;
use serde_json::{Value, json};

async fn start(dir: &std::path::Path) -> TestServer {
    TestServer::start_custom(dir, |s| {
        s.delivery.poll = Duration::from_millis(50);
        s.delivery.max_backoff = Duration::from_secs(2);
    })
    .await
}

async fn ingest(srv: &TestServer, token: &str, n: usize) {
    let mut left = n;
    while left > 0 {
        let k = left.min(500);
        let events: Vec<Value> = (0..k)
            .map(|i| json!({"action": "updateGraph", "actor": {"id": format!("u{i}")}, "resource": {"type": "GRAPH", "id": format!("g-{left}-{i}")}, "details": {"pad": "x".repeat(300)}}))
            .collect();
        let (s, b) = srv
            .post("/v1/events", token, json!({"events": events}))
            .await;
        assert_eq!(s, 200, "{b}");
        left -= k;
    }
}

async fn head(srv: &TestServer, token: &str) -> u64 {
    let (s, b) = srv.get("/v1/events?limit=1", token).await;
    assert_eq!(s, 200, "{b}");
    b["events"][0]["seq"].as_u64().unwrap()
}

async fn status(srv: &TestServer, token: &str) -> Value {
    let (s, b) = srv.get("/v1/destinations/siem", token).await;
    assert_eq!(s, 200, "{b}");
    b
}

/// Waits until the stream has delivered everything the log holds now.
async fn caught_up(srv: &TestServer, token: &str, secs: u64) -> u64 {
    let want = head(srv, token).await;
    common::wait_for_destination(&srv.http, &srv.base, token, "siem", secs, |st| {
        st["delivered_seq"].as_u64() >= Some(want) && st["state"] == "active"
    })
    .await;
    want
}

fn destination(kind: Kind, r: &Receiver) -> Value {
    let base = json!({"max_batch_events": 700, "max_batch_seconds": 1});
    let mut d = match kind {
        Kind::Https => json!({"kind": "https", "url": r.url(), "secret": r.secret}),
        Kind::Splunk => {
            json!({"kind": "splunk_hec", "url": r.url(), "token": r.secret, "index": "audit"})
        }
        Kind::Datadog => {
            json!({"kind": "datadog", "url": r.url(), "api_key": r.secret, "tags": ["env:test"]})
        }
    };
    for (k, v) in base.as_object().unwrap() {
        d[k] = v.clone();
    }
    d
}

fn check(r: &Receiver, n: u64) {
    assert_eq!(r.violations(), Vec::<String>::new());
    if let Err(e) = every_seq_in_order(&r.seqs(), n) {
        panic!("{e}");
    }
}

async fn story(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let mut srv = start(dir.path()).await;
    srv.create_org("acme").await;
    srv.create_org("other").await;
    let admin = srv.key("acme", "admin").await;
    let other = srv.key("other", "admin").await;
    ingest(&srv, &other, 700).await;
    let mut r = Receiver::start(kind, "a-secret-of-sixteen-or-more");

    // A backlog, then the stream: delivered whole, in order, in requests the receiver takes.
    ingest(&srv, &admin, 2_500).await;
    let (s, b) = srv
        .call(
            "PUT",
            "/v1/destinations/siem",
            &admin,
            Some(destination(kind, &r)),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    assert!(
        !b.to_string().contains(&r.secret),
        "the secret is shown: {b}"
    );
    let n = caught_up(&srv, &admin, 60).await;
    check(&r, n);
    let batches = r.log.lock().unwrap().accepted.len();
    match kind {
        // 1 MB a request at most: ~700-byte events come in batches under 1,500.
        Kind::Splunk | Kind::Datadog => assert!(batches >= 4, "{batches} requests"),
        Kind::Https => assert!(batches >= 4, "{batches} requests"),
    }

    // The receiver fails for 10 s: the state says so, then it is caught up.
    r.set_mode(Mode::FailUntil(Instant::now() + Duration::from_secs(10)));
    ingest(&srv, &admin, 300).await;
    let st = common::wait_for_destination(&srv.http, &srv.base, &admin, "siem", 30, |st| {
        st["state"] == "retrying"
    })
    .await;
    assert!(st["last_error"].as_str().unwrap().contains("503"), "{st}");
    let n = caught_up(&srv, &admin, 60).await;
    check(&r, n);

    // 429 with Retry-After: 2 is honoured.
    r.set_mode(Mode::TooManyOnce(2));
    let before = r.arrivals().len();
    ingest(&srv, &admin, 10).await;
    let n = caught_up(&srv, &admin, 30).await;
    let arrivals = r.arrivals();
    let (refused_at, next_at) = (arrivals[before], arrivals[before + 1]);
    assert!(
        next_at - refused_at >= Duration::from_millis(1_900),
        "came back after {:?}",
        next_at - refused_at
    );
    check(&r, n);

    // The receiver is killed mid-stream and comes back on the same port.
    ingest(&srv, &admin, 1_500).await;
    ingest(&srv, &other, 500).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    r.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    r.restart();
    let n = caught_up(&srv, &admin, 60).await;
    check(&r, n);

    // auditrail restarts mid-stream: it resumes from the recorded batch.
    ingest(&srv, &admin, 1_500).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    srv.stop().await;
    srv = start(dir.path()).await;
    let n = caught_up(&srv, &admin, 60).await;
    check(&r, n);

    // A refusal that will not heal: `error`, and the receiver is not hammered.
    r.set_mode(Mode::Refuse);
    ingest(&srv, &admin, 5).await;
    let st = common::wait_for_destination(&srv.http, &srv.base, &admin, "siem", 30, |st| {
        st["state"] == "error"
    })
    .await;
    let said = st["last_error"].as_str().unwrap();
    assert!(said.contains("403"), "{st}");
    // Only the status: the receiver's body never comes back to the org.
    assert!(
        !said.contains('{') && !said.contains("Invalid token"),
        "{st}"
    );
    let tried = r.arrivals().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = r.arrivals().len() - tried;
    assert!(again <= 2, "{again} more requests in 3 s after a 403");
    // The customer fixes the receiver: delivery resumes by itself.
    r.set_mode(Mode::Accept);
    let n = caught_up(&srv, &admin, 30).await;
    check(&r, n);

    // Another org's events, written all along, never reached this stream.
    assert_eq!(r.orgs(), vec!["acme".to_owned()]);
    // Per-destination metrics.
    let text = srv
        .http
        .get(format!("{}/metrics", srv.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let labels = "{org=\"acme\",destination=\"siem\"}";
    assert!(
        text.contains(&format!("auditrail_destination_failing{labels} 0")),
        "{text}"
    );
    assert!(
        text.contains(&format!("auditrail_destination_lag_events{labels} 0")),
        "{text}"
    );
    let delivered: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("auditrail_destination_events_total{labels} ")))
        .unwrap()
        .parse()
        .unwrap();
    assert!(delivered > 0, "{text}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_stream_delivers_at_least_once_in_order_through_failures() {
    story(Kind::Https).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splunk_hec_stream_delivers_at_least_once_in_order_through_failures() {
    story(Kind::Splunk).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datadog_stream_delivers_at_least_once_in_order_through_failures() {
    story(Kind::Datadog).await;
}

#[tokio::test]
async fn push_streams_refuse_bad_fields_and_loopback_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    // The default outbound policy: loopback refused.
    let srv = TestServer::start_custom(dir.path(), |s| {
        s.outbound = auditrail_server::outbound::Outbound::default();
    })
    .await;
    srv.create_org("acme").await;
    let admin = srv.key("acme", "admin").await;
    let put = |body: Value| {
        let srv = &srv;
        let admin = admin.clone();
        async move {
            srv.call("PUT", "/v1/destinations/siem", &admin, Some(body))
                .await
        }
    };
    let (s, b) =
        put(json!({"kind": "splunk_hec", "url": "http://127.0.0.1:8088", "token": "t"})).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (422, Some("address_refused")),
        "{b}"
    );
    assert_eq!(b["error"]["details"][0]["field"], "url");
    let (s, b) = put(json!({"kind": "datadog", "api_key": "k", "site": "example.com"})).await;
    assert_eq!(
        (s, b["error"]["details"][0]["field"].as_str()),
        (422, Some("site")),
        "{b}"
    );
    let (s, b) =
        put(json!({"kind": "https", "url": "https://hooks.example.com/x", "secret": "short"}))
            .await;
    assert_eq!(
        (s, b["error"]["details"][0]["field"].as_str()),
        (422, Some("secret")),
        "{b}"
    );
    let (s, b) = srv.get("/v1/destinations/siem", &admin).await;
    assert_eq!(s, 404, "nothing was created: {b}");
    // A datadog stream to its public site is accepted (nothing is sent until events are
    // due; the address is global) and shows no secret.
    let (s, b) = put(
        json!({"kind": "datadog", "api_key": "dd-key-123", "site": "datadoghq.eu", "start": "now"}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(
        b["url"],
        "https://http-intake.logs.datadoghq.eu/api/v2/logs"
    );
    assert_eq!(b["api_key"], "********");
    assert!(!b.to_string().contains("dd-key-123"));
    // Neither a permission test nor a bucket policy applies.
    let (s, b) = srv
        .post("/v1/destinations/siem/test", &admin, json!({}))
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (409, Some("not_an_s3_destination")),
        "{b}"
    );
    srv.stop().await;
}

/// The org's webhook: every JSON body POSTed to it.
async fn webhook_catcher() -> (String, tokio::sync::mpsc::UnboundedReceiver<Value>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null));
            "ok"
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_stream_alerts_the_admins_once_and_again_on_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let (smtp_port, mut mail) = common::smtp::listener().await;
    let (srv, admin) =
        common::alerting_server(dir.path(), smtp_port, Duration::from_millis(500)).await;
    let (hook_url, mut hooks) = webhook_catcher().await;
    let (s, b) = srv
        .call(
            "PUT",
            "/v1/orgs/acme/export-webhook",
            &admin,
            Some(json!({"url": hook_url})),
        )
        .await;
    assert_eq!(s, 200, "{b}");

    // The receiver refuses from the start; alert after 2 s of failing.
    let r = Receiver::start(Kind::Https, "a-secret-of-sixteen-or-more");
    r.set_mode(Mode::Refuse);
    let mut d = destination(Kind::Https, &r);
    d["alert_after"] = json!("2s");
    let (s, b) = srv
        .call("PUT", "/v1/destinations/siem", &admin, Some(d))
        .await;
    assert_eq!((s, b["alert_after"].as_str()), (201, Some("2s")), "{b}");
    ingest(&srv, &admin, 5).await;
    let started = Instant::now();
    let (to, text) = next_mail(&mut mail, 30).await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "alerted too soon"
    );
    assert_eq!(to, "secops@customer.example");
    assert!(
        text.contains("destination siem of acme is failing"),
        "{text}"
    );
    assert!(
        text.contains("403"),
        "the last error is in the email: {text}"
    );
    let hook = tokio::time::timeout(Duration::from_secs(10), hooks.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (hook["type"].as_str(), hook["destination"].as_str()),
        (Some("destination.failing"), Some("siem")),
        "{hook}"
    );
    assert_eq!(status(&srv, &admin).await["state"], "error");
    // Once: failures go on, no more emails.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(mail.try_recv().is_err(), "alerted twice");

    // The receiver is fixed: delivery catches up and the recovery is announced.
    r.set_mode(Mode::Accept);
    let n = caught_up(&srv, &admin, 30).await;
    let (_, text) = next_mail(&mut mail, 30).await;
    assert!(
        text.contains("destination siem of acme has recovered"),
        "{text}"
    );
    let hook = tokio::time::timeout(Duration::from_secs(10), hooks.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hook["type"], "destination.recovered", "{hook}");
    check(&r, n);
    // Both are events in the org's own log.
    let events = srv.all_events(&admin).await;
    for action in ["destinationFailing", "destinationRecovered"] {
        assert_eq!(
            events.iter().filter(|e| e["action"] == action).count(),
            1,
            "{action}"
        );
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_recorded_for_one_receiver_goes_to_a_smaller_one_in_parts() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    srv.create_org("acme").await;
    let admin = srv.key("acme", "admin").await;
    ingest(&srv, &admin, 3_000).await;
    // An `https` receiver refuses a 3,000-event batch, which stays recorded...
    let hook = Receiver::start(Kind::Https, "a-secret-of-sixteen-or-more");
    hook.set_mode(Mode::Refuse);
    let mut d = destination(Kind::Https, &hook);
    d["max_batch_events"] = json!(5_000);
    let (s, b) = srv
        .call("PUT", "/v1/destinations/siem", &admin, Some(d))
        .await;
    assert_eq!(s, 201, "{b}");
    let st = common::wait_for_destination(&srv.http, &srv.base, &admin, "siem", 30, |st| {
        st["state"] == "error" && !st["pending"].is_null()
    })
    .await;
    let pending = st["pending"]["last_seq"].as_u64().unwrap()
        - st["pending"]["first_seq"].as_u64().unwrap()
        + 1;
    assert!(pending > 1_000, "{st}");
    // ...and the stream is pointed at Splunk, which takes 1,000 events and 1 MB a request.
    let hec = Receiver::start(Kind::Splunk, "hec-token");
    let (s, b) = srv
        .call(
            "PUT",
            "/v1/destinations/siem",
            &admin,
            Some(json!({"kind": "splunk_hec", "url": hec.url(), "token": "hec-token", "max_batch_seconds": 1})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let n = caught_up(&srv, &admin, 60).await;
    check(&hec, n);
    assert!(hec.log.lock().unwrap().accepted.len() >= 4);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_answers_413_gets_the_batch_in_halves_and_smaller_ones_after() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    srv.create_org("acme").await;
    let admin = srv.key("acme", "admin").await;
    ingest(&srv, &admin, 2_000).await;
    // Behind a proxy that takes at most 150 events a request, whatever auditrail's limits.
    let hook = Receiver::start(Kind::Https, "a-secret-of-sixteen-or-more");
    hook.set_mode(Mode::TakesAtMost(150));
    let (s, b) = srv
        .call(
            "PUT",
            "/v1/destinations/siem",
            &admin,
            Some(destination(Kind::Https, &hook)),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let n = caught_up(&srv, &admin, 60).await;
    check(&hook, n);
    let sizes = hook.request_sizes();
    assert!(sizes.iter().all(|&k| k <= 150), "{sizes:?}");
    // 700 → 350 → 175 → 87: three refusals to learn the size, not one per batch.
    assert!(hook.too_large() <= 4, "{} refusals", hook.too_large());
    let st = status(&srv, &admin).await;
    assert_eq!(st["state"], "active", "{st}");
    assert!(st["last_error"].is_null(), "{st}");
    // A single event larger than the receiver takes still puts the stream in error.
    hook.set_mode(Mode::TakesAtMost(0));
    ingest(&srv, &admin, 5).await;
    let st = common::wait_for_destination(&srv.http, &srv.base, &admin, "siem", 30, |st| {
        st["state"] == "error"
    })
    .await;
    assert!(st["last_error"].as_str().unwrap().contains("413"), "{st}");
    srv.stop().await;
}
