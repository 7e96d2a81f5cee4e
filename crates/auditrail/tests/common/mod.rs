//! Test helpers: a real server on a port-0 listener, stopped by a oneshot (no sleeps),
//! and an HTTP client.
#![allow(
    dead_code,
    clippy::unwrap_used,
    reason = "test helpers: a panic is a failed test"
)]

pub mod browser;
pub mod emulators;
pub mod process;
pub mod receivers;
pub mod smtp;
pub mod sse;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use auditrail_core::Limits;
use auditrail_core::note::NoteSigner;
use auditrail_server::{App, Metrics, Settings, auth::sha256};
use auditrail_store::sqlite::{Options, SqliteStore};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const ADMIN: &str = "test-platform-admin-token";

/// The `auditrail` binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_auditrail");

/// A client of the S3-compatible server at `endpoint` (path-style, plain HTTP), for
/// reading and altering what was delivered to `bucket`.
pub fn s3_client(endpoint: &str, bucket: &str, ak: &str, sk: &str) -> object_store::aws::AmazonS3 {
    object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region("us-east-1")
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .with_access_key_id(ak)
        .with_secret_access_key(sk)
        .build()
        .unwrap()
}

/// A server whose delivery polls fast and retries within `max_backoff`, that mails
/// through the SMTP listener on `smtp_port`; org `acme` with an admin key and
/// `secops@customer.example` as its admins' address.
pub async fn alerting_server(
    dir: &Path,
    smtp_port: u16,
    max_backoff: Duration,
) -> (TestServer, String) {
    let srv = TestServer::start_custom(dir, move |s| {
        s.delivery.poll = Duration::from_millis(50);
        s.delivery.max_backoff = max_backoff;
        s.exports.smtp = Some(auditrail_server::exports::notify::SmtpSettings {
            host: "127.0.0.1".into(),
            port: smtp_port,
            from: "audit@example.com".into(),
        });
    })
    .await;
    srv.create_org("acme").await;
    let admin = srv.key("acme", "admin").await;
    let (s, _) = srv
        .call(
            "PUT",
            "/v1/orgs/acme/admin-emails",
            &admin,
            Some(json!({"emails": ["secops@customer.example"]})),
        )
        .await;
    assert_eq!(s, 200);
    (srv, admin)
}

/// Polls export `id` until it is no longer queued or running; its job.
pub async fn export_done(srv: &TestServer, token: &str, id: &str) -> Value {
    for _ in 0..600 {
        let (s, b) = srv.get(&format!("/v1/exports/{id}"), token).await;
        assert_eq!(s, 200, "{b}");
        match b["status"].as_str().unwrap() {
            "queued" | "running" => tokio::time::sleep(Duration::from_millis(50)).await,
            _ => return b,
        }
    }
    panic!("export {id} did not finish");
}

/// `GET /v1/exports/{id}/download`: the status and the bytes.
pub async fn export_file(srv: &TestServer, token: &str, id: &str) -> (u16, Vec<u8>) {
    let r = srv
        .http
        .get(format!("{}/v1/exports/{id}/download", srv.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

/// `auditrail verify TARGET --public-key KEY --quiet --endpoint ENDPOINT` against an
/// S3-compatible server with the keys `ak`/`sk`: whether it passed, and what it said.
pub fn verify_s3(target: &str, endpoint: &str, key: &str, ak: &str, sk: &str) -> (bool, String) {
    let out = std::process::Command::new(BIN)
        .args([
            "verify",
            target,
            "--public-key",
            key,
            "--quiet",
            "--endpoint",
            endpoint,
        ])
        .env("AWS_ACCESS_KEY_ID", ak)
        .env("AWS_SECRET_ACCESS_KEY", sk)
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Runs the binary against the data dir `dir`, with no admin token in the environment.
pub fn run(args: &[&str], dir: &Path) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env_remove("AUDITRAIL_ADMIN_TOKEN")
        .output()
        .unwrap()
}

pub struct TestServer {
    pub base: String,
    /// The running service, for calling its background work directly.
    pub app: Arc<App>,
    pub http: reqwest::Client,
    pub dir: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// The outbound policy of the tests: the default, plus 127.0.0.0/8.
pub fn loopback_allowed() -> auditrail_server::outbound::Outbound {
    auditrail_server::outbound::Outbound::new(
        auditrail_core::outbound::AddressPolicy::parse(&["127.0.0.0/8"]).unwrap(),
    )
}

impl TestServer {
    pub async fn start(dir: &Path) -> Self {
        Self::start_with(dir, Duration::from_secs(3600)).await
    }

    pub async fn start_with(dir: &Path, checkpoint_interval: Duration) -> Self {
        Self::start_custom(dir, |s| s.checkpoint_interval = checkpoint_interval).await
    }

    /// A server whose settings `adjust` changes; `public_url` is its own address.
    pub async fn start_custom(dir: &Path, adjust: impl FnOnce(&mut Settings)) -> Self {
        Self::start_at(dir, "127.0.0.1:0", adjust).await
    }

    /// A server listening on `addr` (to come back on the address it had before).
    pub async fn start_at(dir: &Path, addr: &str, adjust: impl FnOnce(&mut Settings)) -> Self {
        let store = Arc::new(SqliteStore::open(dir, Options::default()).expect("open store"));
        let signer = NoteSigner::new("auditrail.test", [42u8; 32]).unwrap();
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut settings = Settings {
            public_url: base.clone(),
            ui_frame_ancestors: "'self'".into(),
            tail_max_streams: auditrail_server::tail::DEFAULT_MAX_SUBSCRIBERS,
            checkpoint_interval: Duration::from_secs(3600),
            lease_ttl: Duration::from_secs(15),
            sealing: Default::default(),
            limits: Limits::default(),
            origin_prefix: "auditrail.test".into(),
            exports: auditrail_server::exports::ExportSettings::in_dir(dir.join("exports")),
            delivery: auditrail_server::delivery::DeliverySettings::new([7u8; 32]),
            // The S3, STS and webhook servers of these tests listen on loopback, which
            // the default policy refuses: allowed here explicitly.
            outbound: loopback_allowed(),
        };
        adjust(&mut settings);
        let app = App::new(
            store,
            signer,
            settings,
            Arc::new(Metrics::new()),
            sha256(ADMIN.as_bytes()),
        );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(auditrail_server::serve(app.clone(), listener, async move {
            let _ = rx.await;
        }));
        Self {
            base,
            app,
            http: reqwest::Client::new(),
            dir: dir.to_owned(),
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Graceful stop: in-flight requests finish, the store commits and closes. Returns
    /// once the data dir is free again (its lock file can be taken): the last task
    /// holding the app may let go of it just after the server returns.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
        let (app, dir) = (Arc::downgrade(&self.app), self.dir.clone());
        drop(self);
        let lock = dir.join("auditrail.lock");
        for _ in 0..1000 {
            let free = std::fs::OpenOptions::new()
                .write(true)
                .open(&lock)
                .is_ok_and(|f| f.try_lock().is_ok());
            if free {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "the data dir is still locked 10 s after the server stopped ({} holders of the app)",
            app.strong_count()
        );
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        call(&self.http, &self.base, method, path, token, body).await
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call("GET", path, token, None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, token, Some(body)).await
    }

    pub async fn create_org(&self, id: &str) {
        let (s, b) = self.post("/v1/orgs", ADMIN, json!({"id": id})).await;
        assert_eq!(s, 201, "{b}");
    }

    pub async fn key(&self, org: &str, role: &str) -> String {
        let (s, b) = self
            .post(
                &format!("/v1/orgs/{org}/keys"),
                ADMIN,
                json!({"name": role, "role": role}),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        b["token"].as_str().unwrap().to_owned()
    }

    /// All events of the key's org, oldest first.
    pub async fn all_events(&self, token: &str) -> Vec<Value> {
        all_events(&self.http, &self.base, token).await
    }
}

/// One API call to the server at `base`: the status and the JSON answer (the text as a
/// JSON string when it is not JSON).
pub async fn call(
    http: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = http.request(m, format!("{base}{path}")).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Polls destination `name` on the server at `base` until `done` holds, or fails after
/// `secs` with the last status.
pub async fn wait_for_destination(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    name: &str,
    secs: u64,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let until = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let (s, st) = call(
            http,
            base,
            "GET",
            &format!("/v1/destinations/{name}"),
            token,
            None,
        )
        .await;
        assert_eq!(s, 200, "{st}");
        if done(&st) {
            return st;
        }
        assert!(
            std::time::Instant::now() < until,
            "timed out; last status {st}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every file under `dir`.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// All events of the key's org on the server at `base`, oldest first, page by page.
pub async fn all_events(http: &reqwest::Client, base: &str, token: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let resp = http
            .get(format!("{base}/v1/events?order=asc&limit=1000{cursor}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let b: Value = resp.json().await.unwrap();
        out.extend(b["events"].as_array().unwrap().iter().cloned());
        match b["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return out,
        }
    }
}

/// Recomputes a leaf independently of auditrail's canonicalizer: for events (ASCII keys,
/// strings and small integers) RFC 8785 is sorted keys and compact separators, which is
/// exactly what serde_json writes for its default (sorted) map.
pub fn independent_leaf(event: &Value) -> [u8; 32] {
    let mut e = event.clone();
    e.as_object_mut().unwrap().remove("leaf_hash");
    let text = serde_json::to_string(&e).unwrap();
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(text.as_bytes());
    h.finalize().into()
}

/// RFC 6962 Merkle tree hash, straight from the definition.
pub fn independent_root(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            let mut h = Sha256::new();
            h.update([1u8]);
            h.update(independent_root(&leaves[..k]));
            h.update(independent_root(&leaves[k..]));
            h.finalize().into()
        }
    }
}
