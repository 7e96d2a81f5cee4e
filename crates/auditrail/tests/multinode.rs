//! Several `auditrail serve` processes on one PostgreSQL database, as a cluster runs:
//! concurrent ingest through both makes one gapless log whose root an independent
//! recomputation matches; an export asked of one node runs once; a destination is
//! delivered by one node and, once that node is SIGKILLed, by the other, with every seq
//! exactly once in the bucket; a node whose database goes away answers 503 and
//! recovers. Skipped without `AUDITRAIL_TEST_DATABASE_URL`.
#![expect(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auditrail_s3_dev::DevS3;
use auditrail_store::postgres::testdb::{TestDb, server_url};
use base64::Engine;
use common::process::{Serve as Node, serve};
use common::{all_events, independent_leaf, independent_root};
use serde_json::{Value, json};

const ADMIN: &str = "multinode-admin-token";

/// The files every node of the cluster shares: keys and the exports directory.
struct Cluster {
    db: TestDb,
    shared: tempfile::TempDir,
    http: reqwest::Client,
}

impl Cluster {
    async fn new() -> Option<Self> {
        let server = server_url()?;
        let db = TestDb::create(&server).await.unwrap();
        Some(Self {
            db,
            shared: tempfile::tempdir().unwrap(),
            http: reqwest::Client::new(),
        })
    }

    fn node(&self, name: &str) -> Node {
        self.node_on(name, &self.db.url)
    }

    fn node_on(&self, name: &str, url: &str) -> Node {
        let s = self.shared.path();
        serve(ADMIN, |c| {
            c.arg("--data-dir")
                .arg(s.join(name))
                .arg("--database-url")
                .arg(url)
                .arg("--signing-key-file")
                .arg(s.join("signing.key"))
                .arg("--secret-key-file")
                .arg(s.join("secret.key"))
                .arg("--exports-dir")
                .arg(s.join("exports"))
                .env("AUDITRAIL_CHECKPOINT_INTERVAL", "200ms")
                .env("AUDITRAIL_LEASE_TTL", "2s")
                // The S3 server of these tests listens on loopback.
                .env("AUDITRAIL_OUTBOUND_ALLOW", "127.0.0.0/8");
        })
    }

    async fn call(
        &self,
        method: &str,
        url: String,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self
            .http
            .request(method.parse().unwrap(), url)
            .bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Org `acme` created through `a`, and a key of `role` made through `b`.
    async fn org(&self, a: &Node, b: &Node, role: &str) -> String {
        let (s, body) = self
            .call(
                "POST",
                format!("{}/v1/orgs", a.base),
                ADMIN,
                Some(json!({"id": "acme"})),
            )
            .await;
        assert_eq!(s, 201, "{body}");
        let (s, body) = self
            .call(
                "POST",
                format!("{}/v1/orgs/acme/keys", b.base),
                ADMIN,
                Some(json!({"name": role, "role": role})),
            )
            .await;
        assert_eq!(s, 201, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }
}

async fn text(http: &reqwest::Client, url: &str, token: &str) -> String {
    let r = http.get(url).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// `(size, root)` of a signed checkpoint note.
fn checkpoint(note: &str) -> (u64, [u8; 32]) {
    let mut lines = note.lines();
    lines.next();
    let size = lines.next().unwrap().parse().unwrap();
    let root = base64::engine::general_purpose::STANDARD
        .decode(lines.next().unwrap())
        .unwrap();
    (size, root.try_into().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_ingest_through_two_nodes_makes_one_gapless_log_and_one_tree() {
    let Some(c) = Cluster::new().await else {
        return;
    };
    let (a, b) = (c.node("a"), c.node("b"));
    let token = c.org(&a, &b, "admin").await;
    // The org's own audit events (its keys) come first.
    let before = all_events(&c.http, &a.base, &token).await.len() as u64;
    let mut tasks = Vec::new();
    for w in 0..6 {
        let base = if w % 2 == 0 {
            a.base.clone()
        } else {
            b.base.clone()
        };
        let (http, token) = (c.http.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for round in 0..20 {
                let n = if round % 5 == 0 { 1 } else { 40 };
                let events: Vec<Value> = (0..n)
                    .map(|i| json!({"id": format!("w{w}-r{round}-{i}"), "action": "updateGraph", "actor": {"id": format!("u{w}")}}))
                    .collect();
                let r = http
                    .post(format!("{base}/v1/events"))
                    .bearer_auth(&token)
                    .json(&json!({"events": events}))
                    .send()
                    .await
                    .unwrap();
                let status = r.status();
                let body: Value = r.json().await.unwrap();
                assert_eq!(status, 200, "{body}");
                for e in body["accepted"].as_array().unwrap() {
                    seqs.push(e["seq"].as_u64().unwrap());
                }
            }
            seqs
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.extend(t.await.unwrap());
    }
    seqs.sort_unstable();
    let sent = seqs.len() as u64;
    assert_eq!(sent, 6 * (4 + 16 * 40));
    let n = before + sent;
    assert!(
        seqs == (before + 1..=n).collect::<Vec<_>>(),
        "one gapless seq order, each seq once: {:?}..{:?} for {sent}",
        seqs.first(),
        seqs.last()
    );
    // A resend through the other node is recognised.
    let (s, again) = c
        .call(
            "POST",
            format!("{}/v1/events", b.base),
            &token,
            Some(json!({"id": "w0-r1-0", "action": "updateGraph"})),
        )
        .await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["accepted"][0]["duplicate"], true, "{again}");

    let events = all_events(&c.http, &b.base, &token).await;
    assert_eq!(events.len() as u64, n);
    let leaves: Vec<[u8; 32]> = events
        .iter()
        .map(|e| {
            let leaf = independent_leaf(e);
            assert_eq!(e["leaf_hash"].as_str().unwrap(), hex::encode(leaf));
            leaf
        })
        .collect();
    let root = independent_root(&leaves);
    for node in [&a, &b] {
        let note = text(
            &c.http,
            &format!("{}/v1/checkpoints/latest", node.base),
            &token,
        )
        .await;
        assert_eq!(
            checkpoint(&note),
            (n, root),
            "one tree, whichever node signs"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_asked_of_one_node_runs_once_and_downloads_from_the_other() {
    let Some(c) = Cluster::new().await else {
        return;
    };
    let (a, b) = (c.node("a"), c.node("b"));
    let token = c.org(&a, &b, "admin").await;
    let events: Vec<Value> = (0..300)
        .map(|i| json!({"action": "addProject", "resource": {"type": "PROJECT", "id": format!("p{i}")}}))
        .collect();
    let (s, body) = c
        .call(
            "POST",
            format!("{}/v1/events", a.base),
            &token,
            Some(json!({"events": events})),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let (s, job) = c
        .call(
            "POST",
            format!("{}/v1/exports", a.base),
            &token,
            Some(json!({
                "format": "ndjson",
                "action": "addProject",
                "from": (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339(),
                "to": (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339(),
            })),
        )
        .await;
    assert_eq!(s, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let until = Instant::now() + Duration::from_secs(60);
    let done = loop {
        let (s, j) = c
            .call("GET", format!("{}/v1/exports/{id}", b.base), &token, None)
            .await;
        assert_eq!(s, 200, "{j}");
        if j["status"] == "succeeded" {
            break j;
        }
        assert!(j["status"] == "queued" || j["status"] == "running", "{j}");
        assert!(Instant::now() < until, "export did not finish: {j}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["attempts"], 1, "{done}");
    assert_eq!(done["row_count"], 300, "{done}");
    let r = c
        .http
        .get(format!("{}/v1/exports/{id}/download", b.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.bytes().await.unwrap();
    let rows = String::from_utf8(body.to_vec()).unwrap_or_default();
    assert_eq!(rows.lines().count(), 300);
    // Both nodes poll for work; the org's log says the job ran (and ended) once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = all_events(&c.http, &a.base, &token).await;
    let ends = log
        .iter()
        .filter(|e| e["action"] == "completeExport" || e["action"] == "failExport")
        .count();
    assert_eq!(ends, 1);
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

async fn delivered_events(c: &Cluster, node: &Node) -> f64 {
    let m = c
        .http
        .get(format!("{}/metrics", node.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metric(&m, "auditrail_delivery_events_total ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_destination_is_delivered_by_one_node_then_by_the_survivor_of_a_sigkill() {
    let Some(c) = Cluster::new().await else {
        return;
    };
    let bucket_dir = tempfile::tempdir().unwrap();
    let (ak, sk) = ("AKIDMULTINODE0001", "multinode-secret");
    let s3 = DevS3::start(bucket_dir.path(), "127.0.0.1:0".parse().unwrap(), ak, sk)
        .await
        .unwrap();
    s3.create_bucket("audit").unwrap();
    let (a, b) = (c.node("a"), c.node("b"));
    let token = c.org(&a, &b, "admin").await;
    let dest = json!({
        "kind": "s3", "bucket": "audit", "prefix": "logs", "region": "us-east-1",
        "endpoint": s3.endpoint(), "max_batch_events": 100, "max_batch_seconds": 1,
        "credentials": {"access_key_id": ak, "secret_access_key": sk},
    });
    let (s, body) = c
        .call(
            "PUT",
            format!("{}/v1/destinations/main", a.base),
            &token,
            Some(dest),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    let ingest = |node: &Node, tag: &'static str| {
        let (http, token, base) = (c.http.clone(), token.clone(), node.base.clone());
        async move {
            for round in 0..5 {
                let events: Vec<Value> = (0..100)
                    .map(|i| json!({"action": "updateGraph", "resource": {"type": "GRAPH", "id": format!("{tag}-{round}-{i}")}}))
                    .collect();
                let r = http
                    .post(format!("{base}/v1/events"))
                    .bearer_auth(&token)
                    .json(&json!({"events": events}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
        }
    };
    let wait_delivered = |node: &Node, seq: u64| {
        let (http, token, base) = (c.http.clone(), token.clone(), node.base.clone());
        async move {
            let until = Instant::now() + Duration::from_secs(60);
            loop {
                let r = http
                    .get(format!("{base}/v1/destinations/main"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap();
                let st: Value = r.json().await.unwrap();
                if st["delivered_seq"].as_u64() == Some(seq) {
                    return;
                }
                assert!(Instant::now() < until, "not delivered up to {seq}: {st}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    ingest(&a, "one").await;
    ingest(&b, "two").await;
    // The org's log also holds its own audit events (keys, the destination).
    let total = all_events(&c.http, &a.base, &token).await.len() as u64;
    assert!(total >= 1000);
    wait_delivered(&a, total).await;
    let (da, db) = (
        delivered_events(&c, &a).await,
        delivered_events(&c, &b).await,
    );
    assert_eq!(da + db, total as f64, "a={da} b={db}");
    assert!(da == 0.0 || db == 0.0, "one node delivers: a={da} b={db}");
    let (mut victim, survivor) = if da > 0.0 { (a, b) } else { (b, a) };
    victim.child.kill().unwrap();
    victim.child.wait().unwrap();
    ingest(&survivor, "three").await;
    let all = all_events(&c.http, &survivor.base, &token).await.len() as u64;
    assert_eq!(all, total + 500);
    wait_delivered(&survivor, all).await;
    assert_eq!(
        delivered_events(&c, &survivor).await,
        500.0,
        "the survivor took over"
    );

    // Every seq exactly once in the bucket.
    let mut seqs = Vec::new();
    collect_seqs(&bucket_dir.path().join("audit").join("logs"), &mut seqs);
    seqs.sort_unstable();
    assert!(
        seqs == (1..=all).collect::<Vec<u64>>(),
        "every seq exactly once: {} objects' lines for {all} events",
        seqs.len()
    );
}

/// The seqs of every NDJSON object under `dir` (the S3 server keeps objects as files).
fn collect_seqs(dir: &Path, out: &mut Vec<u64>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_seqs(&path, out);
        } else if path.to_string_lossy().ends_with(".ndjson.gz") {
            let mut text = String::new();
            let f = std::fs::File::open(&path).unwrap();
            std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(f), &mut text).unwrap();
            for line in text.lines() {
                let v: Value = serde_json::from_str(line).unwrap();
                out.push(v["seq"].as_u64().unwrap());
            }
        }
    }
}

/// A TCP proxy in front of PostgreSQL that a test can cut (closing every connection and
/// refusing new ones) and restore, as a network partition or a database restart would.
struct Proxy {
    addr: std::net::SocketAddr,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(target: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (up2, conns2) = (up.clone(), conns.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: the connection closes at once
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                conns2.lock().unwrap().push(task);
            }
        });
        Self { addr, up, conns }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for t in self.conns.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

async fn status_of(
    http: &reqwest::Client,
    url: String,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = match &body {
        Some(b) => http.post(&url).json(b),
        None => http.get(&url),
    };
    r = r.bearer_auth(token);
    let resp = r.send().await.unwrap();
    let s = resp.status().as_u16();
    (s, resp.json().await.unwrap_or(Value::Null))
}

async fn wait_ready(http: &reqwest::Client, base: &str, want: u16) {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, _) = status_of(http, format!("{base}/readyz"), "", None).await;
        if s == want {
            return;
        }
        assert!(
            Instant::now() < until,
            "/readyz stayed {s}, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_database_goes_away_answers_503_then_recovers() {
    let Some(c) = Cluster::new().await else {
        return;
    };
    let (rest, db_name) = c.db.url.rsplit_once('/').unwrap();
    let (_, host) = rest
        .rsplit_once('@')
        .unwrap_or(("", rest.trim_start_matches("postgres://")));
    let proxy = Proxy::start(host.to_owned()).await;
    let user = rest
        .split_once("://")
        .and_then(|(_, r)| r.split_once('@'))
        .map_or(String::new(), |(u, _)| format!("{u}@"));
    let url = format!("postgres://{user}{}/{db_name}", proxy.addr);
    let n = c.node_on("n", &url);
    let token = c.org(&n, &n, "admin").await;
    let post = |i: usize| {
        status_of(
            &c.http,
            format!("{}/v1/events", n.base),
            &token,
            Some(json!({"id": format!("e{i}"), "action": "addProject"})),
        )
    };
    assert_eq!(post(1).await.0, 200);
    wait_ready(&c.http, &n.base, 200).await;

    proxy.cut();
    wait_ready(&c.http, &n.base, 503).await;
    let (s, body) = post(2).await;
    assert_eq!(s, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    let (s, body) = status_of(&c.http, format!("{}/v1/events", n.base), &token, None).await;
    assert_eq!(s, 503, "{body}");

    proxy.restore();
    wait_ready(&c.http, &n.base, 200).await;
    assert_eq!(post(3).await.0, 200);
    let (s, again) = post(2).await;
    assert_eq!(s, 200, "{again}");
    assert!(
        again["accepted"][0]["duplicate"].is_null(),
        "the refused event was never stored: {again}"
    );
    let log = all_events(&c.http, &n.base, &token).await;
    let ids: Vec<&str> = log
        .iter()
        .filter(|e| e["action"] == "addProject")
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert_eq!(ids, ["e1", "e3", "e2"]);
}
