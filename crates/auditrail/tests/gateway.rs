//! The GraphQL capture gateway, as a process, in front of a real GraphQL server
//! (async-graphql) implementing Prophecy's operations, appending to a real auditrail.
#![expect(clippy::unwrap_used, reason = "tests")]

mod common;
#[path = "common/graphql.rs"]
mod graphql;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::process::{Serve, gateway, listening_after};
use common::{ADMIN, BIN, TestServer};
use graphql::Upstream;

struct Log {
    server: TestServer,
    ingest: String,
    viewer: String,
}

/// An auditrail with org `acme` on the Prophecy catalog.
async fn log(dir: &Path) -> Log {
    let server = TestServer::start(dir).await;
    let (s, b) = server
        .post(
            "/v1/orgs",
            ADMIN,
            json!({"id": "acme", "catalog": "prophecy"}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let ingest = server.key("acme", "ingest").await;
    let viewer = server.key("acme", "viewer").await;
    Log {
        server,
        ingest,
        viewer,
    }
}

fn remote_args<'a>(
    upstream: &'a str,
    base: &'a str,
    token: &'a str,
    spool: &'a str,
) -> Vec<&'a str> {
    vec![
        "--upstream",
        upstream,
        "--catalog",
        "prophecy",
        "--org",
        "acme",
        "--ingest-url",
        base,
        "--ingest-token",
        token,
        "--spool-dir",
        spool,
        "--actor-header",
        "x-user-id",
    ]
}

/// The gateway's events in the log (not the org's own administrative events).
async fn recorded(http: &reqwest::Client, base: &str, token: &str) -> Vec<Value> {
    let mut evs = common::all_events(http, base, token).await;
    evs.retain(|e| e["context"]["ip"].is_string());
    evs
}

/// Polls the log until it holds `n` events from the gateway (or fails after a while).
async fn wait_events(http: &reqwest::Client, base: &str, token: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let evs = recorded(http, base, token).await;
        if evs.len() >= n || Instant::now() > deadline {
            assert_eq!(evs.len(), n, "events: {evs:#?}");
            return evs;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    body: Value,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut rb = http.post(url).json(&body);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let r = rb.send().await.unwrap();
    let s = r.status().as_u16();
    let t = r.text().await.unwrap();
    (s, serde_json::from_str(&t).unwrap_or(Value::String(t)))
}

fn by_action<'a>(evs: &'a [Value], action: &str) -> Vec<&'a Value> {
    evs.iter().filter(|e| e["action"] == action).collect()
}

/// Every file under `dir`, read whole, must not contain `needle`.
fn assert_absent(dir: &Path, needle: &str) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            assert_absent(&p, needle);
        } else if let Ok(bytes) = std::fs::read(&p) {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{} holds the secret",
                p.display()
            );
        }
    }
}

async fn metric(http: &reqwest::Client, base: &str, name: &str) -> f64 {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_catalogued_operations_and_forwards_them_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let log = log(&tmp.path().join("log")).await;
    let up = Upstream::default();
    let upstream = graphql::start(up.clone()).await;
    let spool = tmp.path().join("spool");
    let gw = gateway(
        &remote_args(
            &upstream,
            &log.server.base,
            &log.ingest,
            spool.to_str().unwrap(),
        ),
        |_| {},
    );
    let url = format!("{}/graphql", gw.base);
    let http = reqwest::Client::new();
    let actor = [("x-user-id", "u-42"), ("user-agent", "gateway-test/1.0")];

    // A literal mutation, answered exactly as the upstream answers it directly.
    let add = json!({"query": "mutation { addProject(name: \"demo\", language: \"scala\", forkMode: SINGLE) { id name } }"});
    let through = post(
        &http,
        &url,
        add.clone(),
        &[("x-user-id", "u-42"), ("x-custom", "kept")],
    )
    .await;
    let direct = post(&http, &upstream, add.clone(), &[]).await;
    assert_eq!(through, direct);
    assert_eq!(
        through.1["data"]["addProject"]["id"], "p-demo",
        "{through:?}"
    );
    {
        let rec = up.received.lock().unwrap();
        let first = &rec[0];
        assert_eq!(first.body, serde_json::to_vec(&add).unwrap());
        assert_eq!(first.headers["x-custom"], "kept");
        assert_eq!(first.headers["x-user-id"], "u-42");
    }

    // Variables.
    let (s, _) = post(&http, &url, json!({
        "query": "mutation R($p: String!, $v: String) { releaseProject(projectID: $p, version: $v, branch: \"main\", message: \"m\") }",
        "operationName": "R", "variables": {"p": "p-7", "v": "1.2.0"}}), &actor).await;
    assert_eq!(s, 200);
    // Aliases, a fragment, and an error on one field of two.
    let (s, b) = post(&http, &url, json!({
        "query": "mutation { ok: addProject(name: \"alpha\") { id } ...F } fragment F on Mutation { dup: addProject(name: \"taken\") { id } }"}), &actor).await;
    assert_eq!(s, 200);
    assert_eq!(b["errors"][0]["path"][0], "dup");
    // A batch: nested input objects, and checkout.
    let (s, b) = post(&http, &url, json!([
        {"query": "mutation($u: [UDFInput!]!) { addUDFBulk(projectUID: \"p-7\", udfs: $u) }",
         "variables": {"u": [{"name": "f", "description": "d", "code": "x + 1"}, {"name": "g"}]}},
        {"query": "mutation { checkout(projectId: \"p-7\", branchName: \"dev\") }"}
    ]), &actor).await;
    assert_eq!(s, 200);
    assert_eq!(b.as_array().unwrap().len(), 2);
    // GET with query parameters, forwarded with its query string as it was.
    let qs = "query=%7B%20getDetails(projectId%3A%20%22p-9%22)%20%7B%20id%20%7D%20%7D";
    let r = http
        .get(format!("{url}?{qs}"))
        .header("x-user-id", "u-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    {
        let rec = up.received.lock().unwrap();
        let get = rec.last().unwrap();
        assert_eq!(
            (get.method.as_str(), get.query.as_deref()),
            ("GET", Some(qs))
        );
    }
    // A document sent as application/graphql.
    let r = http
        .post(&url)
        .header("content-type", "application/graphql")
        .header("x-user-id", "u-42")
        .body("query { tableQueryPipeline(uid: \"u-42\", sortOrder: \"asc\") { id } }")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // @skip with a variable: only checkout is recorded.
    let (s, _) = post(&http, &url, json!({
        "query": "mutation($s: Boolean!) { addProject(name: \"skipped\") @skip(if: $s) { id } checkout(projectUID: \"p-8\", branchName: \"b\") }",
        "variables": {"s": true}}), &actor).await;
    assert_eq!(s, 200);
    // The upstream refuses a request outright: a failure for its field.
    let (s, _) = post(
        &http,
        &url,
        json!({"query": "mutation { addProject(name: \"refused\") { id } }"}),
        &[("x-user-id", "u-42"), ("x-test-reject", "1")],
    )
    .await;
    assert_eq!(s, 403);
    // A secret.
    let secret = "hunter2-S3CRET-9f1c";
    let (s, _) = post(
        &http,
        &url,
        json!({
        "query": "mutation($pw: String!) { setPassword(uid: \"u-42\", newPassword: $pw) }",
        "variables": {"pw": secret}}),
        &actor,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(up.passwords.lock().unwrap().as_slice(), [secret]);

    // Nothing recorded: malformed GraphQL (forwarded all the same), introspection, and a
    // query the catalog does not name.
    let before = up.received.lock().unwrap().len();
    let (s, _) = post(
        &http,
        &url,
        json!({"query": "mutation { addProject(name: "}),
        &actor,
    )
    .await;
    assert_eq!(
        s, 200,
        "the upstream answers malformed documents with its own errors"
    );
    let (s, b) = post(
        &http,
        &url,
        json!({"query": "{ __schema { queryType { name } } }"}),
        &actor,
    )
    .await;
    assert_eq!(
        (s, &b["data"]["__schema"]["queryType"]["name"]),
        (200, &json!("Query"))
    );
    let (s, _) = post(&http, &url, json!({"query": "{ whoami }"}), &actor).await;
    assert_eq!(s, 200);
    let r = http.get(format!("{}/other", gw.base)).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "not graphql");
    assert_eq!(up.received.lock().unwrap().len(), before + 3);

    // 1 + 1 + 2 + 2 + 1 + 1 + 1 + 1 + 1 events, in the order their answers came back.
    let evs = wait_events(&log.server.http, &log.server.base, &log.viewer, 11).await;
    let add = by_action(&evs, "addProject");
    assert_eq!(add.len(), 4, "{add:#?}");
    let demo = add[0];
    assert_eq!(demo["resource"], json!({"type": "PROJECT"}));
    assert_eq!(
        demo["details"],
        json!({"name": "demo", "language": "scala", "forkMode": "SINGLE"})
    );
    assert_eq!(demo["actor"], json!({"id": "u-42", "type": "USER"}));
    assert_eq!(demo["outcome"], "success");
    assert_eq!(demo["context"]["ip"], "127.0.0.1");
    assert_eq!(add[1]["details"]["name"], "alpha");
    assert_eq!(add[1]["outcome"], "success");
    assert_eq!(add[1]["context"]["user_agent"], "gateway-test/1.0");
    assert_eq!(add[2]["details"]["name"], "taken");
    assert_eq!(add[2]["outcome"], "failure");
    assert_eq!(
        add[2]["context"]["error"],
        "a project with this name exists"
    );
    assert_eq!(add[3]["details"]["name"], "refused");
    assert_eq!(add[3]["outcome"], "failure");
    assert_eq!(add[3]["context"]["error"], "forbidden by the host product");
    let rel = by_action(&evs, "releaseProject")[0];
    assert_eq!(rel["resource"], json!({"type": "PROJECT", "id": "p-7"}));
    assert_eq!(rel["scope"], json!({"type": "PROJECT", "id": "p-7"}));
    assert_eq!(
        rel["details"],
        json!({"projectID": "p-7", "version": "1.2.0", "branch": "main", "message": "m"})
    );
    assert_eq!(rel["context"]["graphql_operation"], "R");
    let udf = by_action(&evs, "addUDFBulk")[0];
    assert_eq!(
        udf["details"],
        json!({"projectUID": "p-7", "udfs": [{"name": "f", "description": "d"}, {"name": "g"}]})
    );
    let co = by_action(&evs, "checkout");
    assert_eq!(co.len(), 2);
    assert_eq!(
        co[0]["details"],
        json!({"projectId": "p-7", "branchName": "dev"})
    );
    assert_eq!(
        co[1]["details"],
        json!({"projectUID": "p-8", "branchName": "b"})
    );
    assert_eq!(co[1]["resource"], json!({"type": "GIT", "id": "p-8"}));
    assert_eq!(
        by_action(&evs, "getDetails")[0]["details"],
        json!({"projectId": "p-9"})
    );
    assert_eq!(
        by_action(&evs, "tableQueryPipeline")[0]["details"],
        json!({"uid": "u-42", "sortOrder": "asc"})
    );
    let pw = by_action(&evs, "setPassword")[0];
    assert_eq!(
        pw["details"],
        json!({"uid": "u-42", "newPassword": "[REDACTED]"})
    );
    assert_eq!(pw["resource"], json!({"type": "USER", "id": "u-42"}));

    assert_eq!(
        metric(
            &http,
            &gw.base,
            "auditrail_gateway_requests_total{kind=\"malformed\"}"
        )
        .await,
        1.0
    );
    assert_eq!(
        metric(
            &http,
            &gw.base,
            "auditrail_gateway_requests_total{kind=\"audited\"}"
        )
        .await,
        9.0
    );
    assert_eq!(
        metric(&http, &gw.base, "auditrail_gateway_audited_fields_total").await,
        11.0
    );
    assert_eq!(
        metric(&http, &gw.base, "auditrail_gateway_appended_events_total").await,
        11.0
    );
    let health = http
        .get(format!("{}/healthz", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    // Stopped gracefully, the gateway leaves the secret in no file: not in its spool,
    // not in the log's database.
    stop(gw);
    log.server.stop().await;
    assert_absent(tmp.path(), secret);
}

/// Stops a process with SIGTERM and waits for it.
fn stop(mut p: Serve) {
    let pid = p.child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let status = p.child.wait().unwrap();
    assert!(status.success(), "gateway exited with {status}");
}

/// Starts the gateway with writes to regular files failing (as on a full disk): the
/// file size limit is 0 and SIGXFSZ is ignored, so every write gets EFBIG.
fn unwritable_gateway(args: &[&str]) -> Serve {
    let script = "trap '' XFSZ; ulimit -f 0; exec \"$0\" \"$@\"";
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script, BIN, "gateway", "--listen", "127.0.0.1:0"])
        .args(args)
        .env("AUDITRAIL_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let base = listening_after(&mut child, "auditrail gateway listening on ");
    Serve { child, base }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_spool_refuses_audited_requests_before_the_upstream_sees_them() {
    let tmp = tempfile::tempdir().unwrap();
    let log = log(&tmp.path().join("log")).await;
    let up = Upstream::default();
    let upstream = graphql::start(up.clone()).await;
    let http = reqwest::Client::new();
    let spool = tmp.path().join("spool");
    let args = remote_args(
        &upstream,
        &log.server.base,
        &log.ingest,
        spool.to_str().unwrap(),
    );
    let gw = unwritable_gateway(&args);
    let url = format!("{}/graphql", gw.base);
    let (s, b) = post(
        &http,
        &url,
        json!({"query": "mutation { addProject(name: \"x\") { id } }"}),
        &[],
    )
    .await;
    assert_eq!(s, 503, "{b}");
    assert_eq!(b["error"]["code"], "spool_unavailable");
    assert!(
        up.received.lock().unwrap().is_empty(),
        "the upstream received the refused request"
    );
    // What records nothing still passes.
    let (s, b) = post(&http, &url, json!({"query": "{ whoami }"}), &[]).await;
    assert_eq!((s, &b["data"]["whoami"]), (200, &json!("someone")));
    assert_eq!(up.received.lock().unwrap().len(), 1);
    assert_eq!(
        metric(
            &http,
            &gw.base,
            "auditrail_gateway_requests_total{kind=\"refused\"}"
        )
        .await,
        1.0
    );
    drop(gw);

    // Fail-open lets it through and counts what went unrecorded.
    let mut open = args.clone();
    open.extend(["--mode", "fail-open"]);
    let gw = unwritable_gateway(&open);
    let url = format!("{}/graphql", gw.base);
    let (s, b) = post(
        &http,
        &url,
        json!({"query": "mutation { addProject(name: \"y\") { id } }"}),
        &[],
    )
    .await;
    assert_eq!((s, &b["data"]["addProject"]["id"]), (200, &json!("p-y")));
    assert_eq!(up.received.lock().unwrap().len(), 2);
    assert_eq!(
        metric(&http, &gw.base, "auditrail_gateway_unrecorded_events_total").await,
        1.0
    );
    drop(gw);
    assert!(
        recorded(&log.server.http, &log.server.base, &log.viewer)
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_gateway_loses_no_event() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    // The log exists, then goes away: the gateway can only spool.
    let log = log(&dir).await;
    let addr = log.server.base.trim_start_matches("http://").to_owned();
    let (base, ingest, viewer) = (
        log.server.base.clone(),
        log.ingest.clone(),
        log.viewer.clone(),
    );
    log.server.stop().await;

    let up = Upstream::default();
    let upstream = graphql::start(up.clone()).await;
    let spool = tmp.path().join("spool");
    let args = remote_args(&upstream, &base, &ingest, spool.to_str().unwrap());
    let mut gw = gateway(&args, |_| {});
    let url = format!("{}/graphql", gw.base);
    let http = reqwest::Client::new();
    // Answered: its events are on disk before the answer is returned.
    let (s, b) = post(&http, &url, json!({"query": "mutation { a: addProject(name: \"kept\") { id } b: addProject(name: \"taken\") { id } }"}), &[("x-user-id", "u-1")]).await;
    assert_eq!(s, 200, "{b}");
    // In flight: the upstream is still answering when the gateway dies.
    let slow = tokio::spawn({
        let (http, url) = (http.clone(), url.clone());
        async move {
            // The gateway dies under it: the client sees the connection drop.
            let body = json!({"query": "mutation { checkout(projectId: \"p-1\", branchName: \"slow\", sleepMs: 5000) }"});
            http.post(&url)
                .header("x-user-id", "u-1")
                .json(&body)
                .send()
                .await
                .is_err()
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while up.received.lock().unwrap().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the slow request never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gw.child.kill().unwrap();
    gw.child.wait().unwrap();
    assert!(slow.await.unwrap(), "the in-flight request was answered");

    // The log comes back on its address; the restarted gateway replays its spool.
    let server = TestServer::start_at(&dir, &addr, |_| {}).await;
    let gw = gateway(&args, |_| {});
    let evs = wait_events(&server.http, &server.base, &viewer, 3).await;
    assert_eq!(evs[0]["details"]["name"], "kept");
    assert_eq!(evs[0]["outcome"], "success");
    assert_eq!(evs[1]["details"]["name"], "taken");
    assert_eq!(evs[1]["outcome"], "failure");
    assert_eq!(evs[2]["action"], "checkout");
    assert_eq!(evs[2]["outcome"], "unknown");
    assert_eq!(evs[2]["actor"]["id"], "u-1");
    // Nothing twice, however often it is replayed.
    stop(gw);
    let gw = gateway(&args, |_| {});
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(recorded(&server.http, &server.base, &viewer).await.len(), 3);
    stop(gw);
    server.stop().await;
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actors_come_from_verified_jwts() {
    let tmp = tempfile::tempdir().unwrap();
    let log = log(&tmp.path().join("log")).await;
    let up = Upstream::default();
    let upstream = graphql::start(up.clone()).await;
    let keys = tmp.path();
    openssl(
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "k.pem",
        ],
        keys,
    );
    openssl(
        &["pkey", "-in", "k.pem", "-pubout", "-out", "pub.pem"],
        keys,
    );
    openssl(
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "other.pem",
        ],
        keys,
    );
    let spool = tmp.path().join("spool");
    let pubkey = keys.join("pub.pem");
    let gw = gateway(
        &[
            "--upstream",
            &upstream,
            "--catalog",
            "prophecy",
            "--org",
            "acme",
            "--ingest-url",
            &log.server.base,
            "--ingest-token",
            &log.ingest,
            "--spool-dir",
            spool.to_str().unwrap(),
            "--jwt-public-key-file",
            pubkey.to_str().unwrap(),
        ],
        |_| {},
    );
    let url = format!("{}/graphql", gw.base);
    let http = reqwest::Client::new();
    let token = |key: &str, claims: Value| {
        let pem = std::fs::read(keys.join(key)).unwrap();
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
            &claims,
            &jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap(),
        )
        .unwrap()
    };
    let exp = chrono::Utc::now().timestamp() + 600;
    let good = format!(
        "Bearer {}",
        token(
            "k.pem",
            json!({"sub": "u-7", "name": "Ann Lee", "exp": exp})
        )
    );
    let forged = format!(
        "Bearer {}",
        token("other.pem", json!({"sub": "u-admin", "exp": exp}))
    );
    let m = json!({"query": "mutation { addProject(name: \"jwt\") { id } }"});
    let (s, _) = post(&http, &url, m.clone(), &[("authorization", &good)]).await;
    assert_eq!(s, 200);
    let (s, b) = post(&http, &url, m.clone(), &[("authorization", &forged)]).await;
    assert_eq!((s, &b["error"]["code"]), (401, &json!("untrusted_actor")));
    assert_eq!(
        up.received.lock().unwrap().len(),
        1,
        "a request with a forged token reached the upstream"
    );
    // No token: forwarded (the upstream decides), recorded without an actor.
    let (s, _) = post(&http, &url, m, &[]).await;
    assert_eq!(s, 200);
    let evs = wait_events(&log.server.http, &log.server.base, &log.viewer, 2).await;
    assert_eq!(
        evs[0]["actor"],
        json!({"id": "u-7", "type": "USER", "name": "Ann Lee"})
    );
    assert!(evs[1].get("actor").is_none());
    stop(gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_straight_to_the_store_for_the_org_a_header_names() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let dir_s = dir.to_str().unwrap();
    for org in ["acme", "beta"] {
        let out = common::run(&["orgs", "create", org, "--catalog", "prophecy"], &dir);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let up = Upstream::default();
    let upstream = graphql::start(up.clone()).await;
    let gw = gateway(
        &[
            "--upstream",
            &upstream,
            "--catalog",
            "prophecy",
            "--org-header",
            "x-org",
            "--data-dir",
            dir_s,
        ],
        |_| {},
    );
    let url = format!("{}/graphql", gw.base);
    let http = reqwest::Client::new();
    let m = |name: &str| json!({"query": format!("mutation {{ addProject(name: \"{name}\") {{ id }} }}")});
    for (org, name) in [("acme", "a1"), ("beta", "b1"), ("acme", "a2")] {
        let (s, b) = post(&http, &url, m(name), &[("x-org", org)]).await;
        assert_eq!(s, 200, "{b}");
    }
    let (s, b) = post(&http, &url, m("nobody"), &[]).await;
    assert_eq!((s, &b["error"]["code"]), (400, &json!("missing_org")));
    assert_eq!(up.received.lock().unwrap().len(), 3);
    // A graceful stop drains the spool into the store.
    stop(gw);
    let day = chrono::Duration::days(1);
    let from = (chrono::Utc::now() - day).format("%Y-%m-%d").to_string();
    let to = (chrono::Utc::now() + day).format("%Y-%m-%d").to_string();
    for (org, names) in [("acme", vec!["a1", "a2"]), ("beta", vec!["b1"])] {
        let out_file = tmp.path().join(format!("{org}.ndjson"));
        let out = common::run(
            &[
                "export",
                "--org",
                org,
                "--from",
                &from,
                "--to",
                &to,
                "--format",
                "ndjson",
                "-o",
                out_file.to_str().unwrap(),
            ],
            &dir,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(&out_file).unwrap();
        let got: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|e| e["action"] == "addProject")
            .map(|e| e["details"]["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(got, names);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_to_postgresql_beside_a_serving_node() {
    use auditrail_store::postgres::testdb::{TestDb, server_url};
    let Some(server) = server_url() else {
        return;
    };
    let db = TestDb::create(&server).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let shared = tmp.path().join("shared");
    let shared_s = shared.to_str().unwrap();
    let node = common::process::serve(ADMIN, |c| {
        c.args(["--data-dir", shared_s, "--database-url", &db.url]);
    });
    let http = reqwest::Client::new();
    let (s, b) = post(
        &http,
        &format!("{}/v1/orgs", node.base),
        json!({"id": "acme", "catalog": "prophecy"}),
        &[("authorization", &format!("Bearer {ADMIN}"))],
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = post(
        &http,
        &format!("{}/v1/orgs/acme/keys", node.base),
        json!({"name": "v", "role": "viewer"}),
        &[("authorization", &format!("Bearer {ADMIN}"))],
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let viewer = b["token"].as_str().unwrap().to_owned();
    let upstream = graphql::start(Upstream::default()).await;
    let spool = tmp.path().join("spool");
    let gw = gateway(
        &[
            "--upstream",
            &upstream,
            "--catalog",
            "prophecy",
            "--org",
            "acme",
            "--database-url",
            &db.url,
            "--data-dir",
            shared_s,
            "--spool-dir",
            spool.to_str().unwrap(),
        ],
        |_| {},
    );
    let (s, _) = post(
        &http,
        &format!("{}/graphql", gw.base),
        json!({"query": "mutation { releaseProject(projectID: \"p-1\", version: \"2.0\") }"}),
        &[],
    )
    .await;
    assert_eq!(s, 200);
    // The serving node sees what the gateway appended to the shared database.
    let evs = wait_events(&http, &node.base, &viewer, 1).await;
    assert_eq!(evs[0]["action"], "releaseProject");
    assert_eq!(
        evs[0]["details"],
        json!({"projectID": "p-1", "version": "2.0"})
    );
    stop(gw);
    drop(node);
}
