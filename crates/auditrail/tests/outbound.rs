//! The outbound address policy, tried as an org admin who wants the server to connect
//! somewhere it should not (loopback, the private network, cloud metadata):
//!
//! - at configuration time, a destination endpoint, STS endpoint or webhook URL in any
//!   spelling of a refused address, or a name resolving to one, is a 422 naming the
//!   field and the rule; nothing is stored and the attempt is in the org's log;
//! - at connect time, a destination configured while its address was allowed is
//!   refused once the policy no longer allows it (a literal and a name), and the S3
//!   server sees no request;
//! - a redirect to a refused address is not followed;
//! - `outbound_allow` lets exactly what it names through.
#![expect(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use auditrail_core::outbound::AddressPolicy;
use auditrail_s3_dev::DevS3;
use auditrail_server::outbound::Outbound;
use common::TestServer;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const AK: &str = "AKIDEVTESTKEY0001";
const SK: &str = "dev-test-secret-key";

fn policy(allow: &[&str]) -> Outbound {
    Outbound::new(AddressPolicy::parse(allow).unwrap())
}

async fn server(dir: &std::path::Path, allow: &[&str]) -> TestServer {
    let outbound = policy(allow);
    TestServer::start_custom(dir, move |s| {
        s.outbound = outbound;
        s.delivery.poll = Duration::from_millis(50);
        s.delivery.max_backoff = Duration::from_millis(300);
    })
    .await
}

fn dest(endpoint: &str) -> Value {
    json!({"kind": "s3", "bucket": "audit", "endpoint": endpoint, "max_batch_seconds": 1,
        "credentials": {"access_key_id": AK, "secret_access_key": SK}})
}

/// Refused spellings: `(url, rule)`.
const REFUSED: &[(&str, &str)] = &[
    ("http://127.0.0.1:9000", "loopback"),
    ("http://127.1:9000", "loopback"),
    ("http://2130706433:9000", "loopback"),
    ("http://0x7f000001:9000", "loopback"),
    ("http://0x7f.0.0.1:9000", "loopback"),
    ("http://0177.0.0.1:9000", "loopback"),
    ("http://127.0.0.1.:9000", "loopback"),
    ("http://[::1]:9000", "loopback"),
    ("http://[0:0:0:0:0:0:0:1]:9000", "loopback"),
    ("http://[::ffff:127.0.0.1]:9000", "loopback"),
    ("http://[::ffff:7f00:1]:9000", "loopback"),
    ("http://[::127.0.0.1]:9000", "loopback"),
    ("http://localhost:9000", "loopback"),
    ("http://LocalHost.:9000", "loopback"),
    ("http://s3.localhost:9000", "loopback"),
    ("http://0:9000", "unspecified"),
    ("http://[::]:9000", "unspecified"),
    (
        "http://169.254.169.254",
        "link-local (cloud metadata included)",
    ),
    ("http://2852039166", "link-local (cloud metadata included)"),
    (
        "http://0xa9.0xfe.0xa9.0xfe",
        "link-local (cloud metadata included)",
    ),
    (
        "http://[::ffff:a9fe:a9fe]",
        "link-local (cloud metadata included)",
    ),
    (
        "http://[64:ff9b::a9fe:a9fe]",
        "link-local (cloud metadata included)",
    ),
    ("http://[fe80::1]", "link-local (cloud metadata included)"),
    ("http://[fd00:ec2::254]", "unique-local"),
    ("http://10.0.0.1", "private"),
    ("http://012.0.0.1", "private"),
    ("http://172.16.5.4", "private"),
    ("http://192.168.1.1", "private"),
    ("http://[2002:c0a8:101::1]", "private"),
    ("http://100.64.0.1", "shared address space (CGNAT)"),
    ("https://224.0.0.1", "multicast"),
    ("http://240.0.0.1", "reserved or not globally routable"),
];

#[tokio::test]
async fn refused_addresses_in_every_spelling_are_422_at_configuration_time() {
    let dir = tempfile::tempdir().unwrap();
    // The default policy: nothing but global addresses.
    let srv = server(dir.path(), &[]).await;
    srv.create_org("acme").await;
    let admin = srv.key("acme", "admin").await;
    for (i, (url, rule)) in REFUSED.iter().enumerate() {
        let name = format!("d{i}");
        let (s, b) = srv
            .call(
                "PUT",
                &format!("/v1/destinations/{name}"),
                &admin,
                Some(dest(url)),
            )
            .await;
        assert_eq!(s, 422, "{url}: {b}");
        assert_eq!(b["error"]["code"], "address_refused", "{url}: {b}");
        assert_eq!(b["error"]["details"][0]["field"], "endpoint", "{url}: {b}");
        assert_eq!(b["error"]["details"][0]["rule"], *rule, "{url}: {b}");
        let (s, _) = srv.get(&format!("/v1/destinations/{name}"), &admin).await;
        assert_eq!(s, 404, "{url}: nothing stored");
    }
    // The STS endpoint of a role, and the export webhook, obey the same policy.
    let mut role = dest("https://s3.example.com");
    role["credentials"] =
        json!({"source": "assume_role", "role_arn": "arn:aws:iam::123456789012:role/r"});
    role["sts_endpoint"] = json!("http://169.254.169.254");
    let (s, b) = srv
        .call("PUT", "/v1/destinations/role", &admin, Some(role))
        .await;
    assert_eq!(s, 422, "{b}");
    assert_eq!(b["error"]["details"][0]["field"], "sts_endpoint", "{b}");
    for url in [
        "http://[::ffff:169.254.169.254]/latest/meta-data",
        "http://localhost:8080/hook",
    ] {
        let (s, b) = srv
            .call(
                "PUT",
                "/v1/orgs/acme/export-webhook",
                &admin,
                Some(json!({"url": url})),
            )
            .await;
        assert_eq!(s, 422, "{url}: {b}");
        assert_eq!(b["error"]["details"][0]["field"], "url", "{url}: {b}");
    }
    // A global address and a name that does not resolve here are accepted.
    for url in ["http://8.8.8.8:9000", "https://s3.eu-west-1.amazonaws.com"] {
        let (s, b) = srv
            .call("PUT", "/v1/destinations/global", &admin, Some(dest(url)))
            .await;
        assert!(s == 200 || s == 201, "{url}: {b}");
    }
    srv.call("DELETE", "/v1/destinations/global", &admin, None)
        .await;
    // Every refused attempt is in acme's own log.
    let refused = srv
        .all_events(&admin)
        .await
        .into_iter()
        .filter(|e| e["outcome"] == "failure")
        .count();
    assert_eq!(refused, REFUSED.len() + 1 + 2);
}

#[tokio::test]
async fn outbound_allow_lets_exactly_its_ranges_through() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path(), &["127.0.0.1/32", "10.20.0.0/16"]).await;
    srv.create_org("acme").await;
    let admin = srv.key("acme", "admin").await;
    for url in [
        "http://127.0.0.1:9000",
        "http://2130706433:9000",
        "http://[::ffff:127.0.0.1]:9000",
        "http://10.20.3.4",
    ] {
        let (s, b) = srv
            .call("PUT", "/v1/destinations/ok", &admin, Some(dest(url)))
            .await;
        assert!(s == 200 || s == 201, "{url}: {b}");
    }
    for (url, rule) in [
        ("http://127.0.0.2:9000", "loopback"),
        ("http://[::1]:9000", "loopback"),
        ("http://10.21.0.1", "private"),
        (
            "http://169.254.169.254",
            "link-local (cloud metadata included)",
        ),
    ] {
        let (s, b) = srv
            .call("PUT", "/v1/destinations/no", &admin, Some(dest(url)))
            .await;
        assert_eq!(s, 422, "{url}: {b}");
        assert_eq!(b["error"]["details"][0]["rule"], rule, "{url}: {b}");
    }
}

async fn wait_for(
    srv: &TestServer,
    token: &str,
    name: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, st) = srv.get(&format!("/v1/destinations/{name}"), token).await;
        assert_eq!(s, 200, "{st}");
        if done(&st) {
            return st;
        }
        assert!(Instant::now() < until, "timed out; last status {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_policy_holds_at_connect_time_not_only_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let bucket_dir = tempfile::tempdir().unwrap();
    let s3 = DevS3::start(bucket_dir.path(), "127.0.0.1:0".parse().unwrap(), AK, SK)
        .await
        .unwrap();
    s3.create_bucket("audit").unwrap();
    let port = s3.addr().port();
    // Configured while the operator allowed loopback...
    let srv = server(dir.path(), &["127.0.0.0/8", "::1/128"]).await;
    srv.create_org("acme").await;
    let admin = srv.key("acme", "admin").await;
    for (name, ep) in [
        ("literal", format!("http://127.0.0.1:{port}")),
        ("named", format!("http://localhost:{port}")),
    ] {
        let (s, b) = srv
            .call(
                "PUT",
                &format!("/v1/destinations/{name}"),
                &admin,
                Some(dest(&ep)),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        srv.post(&format!("/v1/destinations/{name}/pause"), &admin, json!({}))
            .await;
    }
    srv.stop().await;
    // ...then the operator narrows the policy: the stored URLs are refused on connect.
    let srv = server(dir.path(), &[]).await;
    let (s, b) = srv
        .post("/v1/events", &admin, json!({"action": "updateGraph"}))
        .await;
    assert_eq!(s, 200, "{b}");
    let before = s3.faults().requests();
    for name in ["literal", "named"] {
        srv.post(
            &format!("/v1/destinations/{name}/resume"),
            &admin,
            json!({}),
        )
        .await;
        let st = wait_for(&srv, &admin, name, |st| st["state"] == "error").await;
        let err = st["last_error"].as_str().unwrap();
        assert!(
            err.contains("outbound address refused") && err.contains("loopback"),
            "{name}: {err}"
        );
        let (s, t) = srv
            .post(&format!("/v1/destinations/{name}/test"), &admin, json!({}))
            .await;
        assert_eq!(s, 200, "{t}");
        assert_eq!(t["all_passed"], false);
        for r in t["results"].as_array().unwrap() {
            let e = r["error"].as_str().unwrap();
            assert!(e.contains("outbound address refused"), "{name}: {r}");
        }
    }
    assert_eq!(
        s3.faults().requests(),
        before,
        "no request reached the S3 server"
    );
    srv.stop().await;
}

/// A server that answers every request with a redirect to `location`, counting them.
async fn redirector(location: String) -> (SocketAddr, Arc<AtomicU64>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let n = Arc::new(AtomicU64::new(0));
    let seen = n.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = l.accept().await else {
                return;
            };
            seen.fetch_add(1, Ordering::SeqCst);
            let location = location.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                let _ = sock.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    (addr, n)
}

/// Counts connections to a listener on `ip`.
async fn counting_listener(ip: &str) -> (SocketAddr, Arc<AtomicU64>) {
    let l = tokio::net::TcpListener::bind(format!("{ip}:0"))
        .await
        .unwrap();
    let addr = l.local_addr().unwrap();
    let n = Arc::new(AtomicU64::new(0));
    let seen = n.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = l.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            let _ = sock
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
        }
    });
    (addr, n)
}

#[tokio::test]
async fn redirects_to_a_refused_address_are_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    // 127.0.0.2 is loopback too, and not allowed: only 127.0.0.1 is.
    let (target, hits) = counting_listener("127.0.0.2").await;
    let (hop, redirected) = redirector(format!("http://{target}/latest/meta-data/")).await;
    let srv = server(dir.path(), &["127.0.0.1/32"]).await;
    srv.create_org("acme").await;
    let admin = srv.key("acme", "admin").await;
    let (s, b) = srv
        .call(
            "PUT",
            "/v1/destinations/hop",
            &admin,
            Some(dest(&format!("http://{hop}"))),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, t) = srv
        .post("/v1/destinations/hop/test", &admin, json!({}))
        .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["all_passed"], false, "{t}");
    let get = t["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "s3:GetBucketLocation")
        .unwrap();
    assert!(get["error"].as_str().unwrap().contains("307"), "{get}");
    // The webhook too.
    let before = redirected.load(Ordering::SeqCst);
    let (s, b) = srv
        .call(
            "PUT",
            "/v1/orgs/acme/export-webhook",
            &admin,
            Some(json!({"url": format!("http://{hop}/hook")})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, e) = srv
        .post(
            "/v1/exports",
            &admin,
            json!({"from": "2026-01-01T00:00:00Z", "to": "2026-12-31T00:00:00Z", "format": "ndjson"}),
        )
        .await;
    assert_eq!(s, 202, "{e}");
    let id = e["id"].as_str().unwrap().to_owned();
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, e) = srv.get(&format!("/v1/exports/{id}"), &admin).await;
        if e["status"] == "succeeded" {
            break;
        }
        assert!(Instant::now() < until, "{e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let until = Instant::now() + Duration::from_secs(10);
    while redirected.load(Ordering::SeqCst) == before {
        assert!(Instant::now() < until, "the webhook was never called");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the redirect target was never reached"
    );
}
