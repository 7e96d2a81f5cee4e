//! Tenant isolation on the way out, tried as an attacker holding one org's admin key:
//!
//! - the confused deputy: a real `auditrail serve` with the operator's AWS keys in its
//!   environment, and an S3-compatible server holding two customers' buckets that the
//!   operator's key may reach. An org admin cannot attach the server's identity (403
//!   naming `credentials.source`), and the S3 server sees no request for the other
//!   bucket; the platform admin can attach it for the org it vouches for;
//! - role assumption with the org's external id against a real STS endpoint (AWS Query
//!   protocol, SigV4): temporary credentials renewed before expiry without a gap in
//!   delivery, and another org's role refused (state `error`, its reason, no request
//!   to that org's bucket).
#![expect(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

mod common;

use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditrail_s3_dev::{DevS3, Faults, Identities};
use common::process::{Serve, serve};
use serde_json::{Value, json};

const ADMIN: &str = "isolation-admin-token";
const OPERATOR_AK: &str = "AKIDOPERATOR00001";
const OPERATOR_SK: &str = "operator-secret-key";

async fn s3(root: &FsPath, identities: Arc<Identities>) -> DevS3 {
    let s = DevS3::start_as(
        root,
        "127.0.0.1:0".parse().unwrap(),
        identities,
        Arc::new(Faults::default()),
    )
    .await
    .unwrap();
    s.create_bucket("acme-audit").unwrap();
    s.create_bucket("globex-audit").unwrap();
    s
}

/// `auditrail serve` with the operator's keys in its environment, as a server that
/// delivers with its own identity is run.
fn operator_server(data: &FsPath) -> Serve {
    serve(ADMIN, |c| {
        c.args(["--data-dir", data.to_str().unwrap()])
            .env("AWS_ACCESS_KEY_ID", OPERATOR_AK)
            .env("AWS_SECRET_ACCESS_KEY", OPERATOR_SK)
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .env(
                "AUDITRAIL_AWS_PRINCIPAL_ARN",
                "arn:aws:iam::999999999999:role/auditrail",
            )
            // The S3 and STS server of this test listens on loopback.
            .env("AUDITRAIL_OUTBOUND_ALLOW", "127.0.0.0/8")
            .env("AUDITRAIL_CHECKPOINT_INTERVAL", "1s");
    })
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        common::call(&self.http, &self.base, method, path, token, body).await
    }

    async fn org_with_admin(&self, org: &str) -> String {
        let (s, b) = self
            .call(
                "POST",
                "/v1/orgs",
                ADMIN,
                Some(json!({"id": org, "name": org})),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        let (s, b) = self
            .call(
                "POST",
                &format!("/v1/orgs/{org}/keys"),
                ADMIN,
                Some(json!({"name": "admin", "role": "admin"})),
            )
            .await;
        assert!(s == 200 || s == 201, "{b}");
        b["token"].as_str().unwrap().to_owned()
    }

    async fn events(&self, token: &str) -> Vec<Value> {
        common::all_events(&self.http, &self.base, token).await
    }

    async fn ingest(&self, token: &str, n: usize, tag: &str) {
        let events: Vec<Value> = (0..n)
            .map(|i| json!({"action": "updateGraph", "actor": {"id": "u1"}, "resource": {"type": "GRAPH", "id": format!("{tag}-{i}")}}))
            .collect();
        let (s, b) = self
            .call("POST", "/v1/events", token, Some(json!({"events": events})))
            .await;
        assert_eq!(s, 200, "{b}");
    }

    /// Polls the destination until `done` holds, or fails after `secs`.
    async fn wait_for(
        &self,
        token: &str,
        name: &str,
        secs: u64,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        common::wait_for_destination(&self.http, &self.base, token, name, secs, done).await
    }
}

/// The S3 and STS server with both customers' buckets, `auditrail serve` beside it as
/// the operator runs it, and orgs `acme` and `globex` with their admin keys.
struct Rig {
    _data: tempfile::TempDir,
    buckets: tempfile::TempDir,
    store: DevS3,
    ep: String,
    _node: Serve,
    api: Client,
    acme: String,
    globex: String,
}

async fn rig(identities: Arc<Identities>) -> Rig {
    let data = tempfile::tempdir().unwrap();
    let buckets = tempfile::tempdir().unwrap();
    let store = s3(buckets.path(), identities).await;
    let ep = store.endpoint();
    let node = operator_server(data.path());
    let api = Client {
        http: reqwest::Client::new(),
        base: node.base.clone(),
    };
    let acme = api.org_with_admin("acme").await;
    let globex = api.org_with_admin("globex").await;
    Rig {
        _data: data,
        buckets,
        store,
        ep,
        _node: node,
        api,
        acme,
        globex,
    }
}

fn requests_to(store: &DevS3, bucket: &str) -> Vec<(String, String, String)> {
    store
        .faults()
        .bucket_log()
        .into_iter()
        .filter(|(_, _, b)| b == bucket)
        .collect()
}

#[tokio::test]
async fn an_org_admin_cannot_lend_itself_the_operators_identity() {
    let identities = Arc::new(Identities::default());
    // The operator's principal is granted by every customer's bucket policy.
    identities.add_key(
        OPERATOR_AK,
        OPERATOR_SK,
        Some(&["acme-audit", "globex-audit"]),
    );
    let Rig {
        store,
        ep,
        api,
        acme,
        ..
    } = &rig(identities).await;
    let acme = acme.as_str();

    // The attack: acme's admin points the server's own identity at globex's bucket.
    let steal = json!({"kind": "s3", "bucket": "globex-audit", "endpoint": ep,
        "credentials": {"source": "environment"}});
    let (s, b) = api
        .call("PUT", "/v1/destinations/steal", acme, Some(steal.clone()))
        .await;
    assert_eq!(s, 403, "{b}");
    assert_eq!(b["error"]["details"][0]["field"], "credentials.source");
    let (s, _) = api.call("GET", "/v1/destinations/steal", acme, None).await;
    assert_eq!(s, 404, "nothing was stored");
    // Through the platform admin's path for its own org: refused just the same.
    let (s, b) = api
        .call("PUT", "/v1/orgs/acme/destinations/steal", acme, Some(steal))
        .await;
    assert_eq!(s, 403, "{b}");
    assert_eq!(b["error"]["details"][0]["field"], "credentials.source");

    // The platform admin vouches for acme and attaches the identity to acme's bucket.
    let own = json!({"kind": "s3", "bucket": "acme-audit", "endpoint": ep,
        "max_batch_seconds": 1, "credentials": {"source": "environment"}});
    let (s, b) = api
        .call("PUT", "/v1/orgs/acme/destinations/main", ADMIN, Some(own))
        .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["credentials"]["source"], "environment");

    // acme's admin sees, tests and pauses it...
    let (s, b) = api.call("GET", "/v1/destinations/main", acme, None).await;
    assert_eq!(
        (s, &b["credentials"]["source"]),
        (200, &json!("environment")),
        "{b}"
    );
    let (s, b) = api
        .call("POST", "/v1/destinations/main/test", acme, None)
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["all_passed"], true, "{b}");
    let (s, b) = api
        .call("POST", "/v1/destinations/main/pause", acme, None)
        .await;
    assert_eq!((s, &b["state"]), (200, &json!("paused")), "{b}");
    // ...but cannot retarget it: the identity stays on the bucket it was vouched for.
    let (s, b) = api
        .call(
            "PUT",
            "/v1/destinations/main",
            acme,
            Some(json!({"kind": "s3", "bucket": "globex-audit", "endpoint": ep})),
        )
        .await;
    assert_eq!(s, 403, "{b}");
    assert_eq!(b["error"]["details"][0]["field"], "credentials.source");
    let (_, b) = api.call("GET", "/v1/destinations/main", acme, None).await;
    assert_eq!(b["bucket"], "acme-audit");

    // Delivery goes to acme's bucket.
    api.ingest(acme, 5, "acme").await;
    let (s, b) = api
        .call("POST", "/v1/destinations/main/resume", acme, None)
        .await;
    assert_eq!(s, 200, "{b}");
    let head = api.events(acme).await.len() as u64;
    let st = api
        .wait_for(acme, "main", 30, |st| {
            st["delivered_seq"].as_u64() == Some(head)
        })
        .await;
    assert_eq!(st["last_error"], Value::Null);
    assert!(!requests_to(store, "acme-audit").is_empty());

    // The S3 server never saw a request for globex's bucket.
    assert_eq!(requests_to(store, "globex-audit"), vec![]);

    // Each refusal is an event in acme's own log, with the key that tried.
    let events = api.events(acme).await;
    let refused: Vec<&Value> = events
        .iter()
        .filter(|e| e["outcome"] == "failure" && e["resource"]["type"] == "DESTINATION")
        .collect();
    assert_eq!(refused.len(), 3, "{refused:?}");
    for e in refused {
        assert_eq!(e["details"]["refused"], "credentials.source", "{e}");
        assert_eq!(e["actor"]["type"], "API_KEY", "{e}");
    }
}

/// An STS `AssumeRole` call signed by `ak`/`sk`, as any AWS client would make it.
async fn assume_role_call(
    endpoint: &str,
    ak: &str,
    sk: &str,
    form: &[(&str, &str)],
) -> (u16, String) {
    use object_store::aws::{AwsAuthorizer, AwsCredential};
    let body = serde_urlencoded::to_string(form).unwrap();
    let url = format!("{endpoint}/");
    let mut req = http::Request::builder()
        .method("POST")
        .uri(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(object_store::client::HttpRequestBody::from(
            bytes::Bytes::from(body.clone()),
        ))
        .unwrap();
    let cred = AwsCredential {
        key_id: ak.into(),
        secret_key: sk.into(),
        token: None,
    };
    AwsAuthorizer::new(&cred, "sts", "us-east-1").authorize(&mut req, None);
    let (parts, _) = req.into_parts();
    let resp = reqwest::Client::new()
        .post(&url)
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn the_sts_endpoint_refuses_a_wrong_or_missing_external_id() {
    let buckets = tempfile::tempdir().unwrap();
    let identities = Arc::new(Identities::default());
    identities.add_key(OPERATOR_AK, OPERATOR_SK, Some(&[]));
    let role = "arn:aws:iam::111122223333:role/acme-delivery";
    identities.add_role(role, "the-right-id", &["acme-audit"]);
    let store = s3(buckets.path(), identities.clone()).await;
    let ep = store.endpoint();
    let base = [
        ("Action", "AssumeRole"),
        ("Version", "2011-06-15"),
        ("RoleArn", role),
        ("RoleSessionName", "t"),
    ];
    let with = |id: Option<&'static str>| {
        let mut f = base.to_vec();
        if let Some(id) = id {
            f.push(("ExternalId", id));
        }
        f
    };
    let (s, b) = assume_role_call(&ep, OPERATOR_AK, OPERATOR_SK, &with(None)).await;
    assert_eq!(s, 403, "{b}");
    let (s, b) = assume_role_call(&ep, OPERATOR_AK, OPERATOR_SK, &with(Some("a-wrong-id"))).await;
    assert_eq!(s, 403, "{b}");
    let (s, b) = assume_role_call(
        &ep,
        OPERATOR_AK,
        "not-the-secret",
        &with(Some("the-right-id")),
    )
    .await;
    assert_eq!(s, 403, "a bad signature is refused: {b}");
    assert_eq!(identities.assumed(), 0);
    let (s, b) = assume_role_call(&ep, OPERATOR_AK, OPERATOR_SK, &with(Some("the-right-id"))).await;
    assert_eq!(s, 200, "{b}");
    assert!(
        b.contains("<SessionToken>") && b.contains("<Expiration>"),
        "{b}"
    );
    assert_eq!(identities.assumed(), 1);
}

#[tokio::test]
async fn role_assumption_delivers_renews_and_refuses_another_orgs_role() {
    let identities = Arc::new(Identities::default());
    // The operator's own key reaches no bucket: only the roles customers grant do.
    identities.add_key(OPERATOR_AK, OPERATOR_SK, Some(&[]));
    // Short-lived sessions, so renewal happens several times within the test.
    identities.set_session(Duration::from_secs(4));
    let Rig {
        buckets,
        store,
        ep,
        api,
        acme,
        globex,
        ..
    } = &rig(identities.clone()).await;

    // Each customer reads its org's external id and puts it in its role's trust policy.
    let external_id = |token: String| {
        let api = &api;
        async move {
            let (s, b) = api.call("GET", "/v1/destinations", &token, None).await;
            assert_eq!(s, 200, "{b}");
            b["external_id"].as_str().unwrap().to_owned()
        }
    };
    let acme_id = external_id(acme.clone()).await;
    let globex_id = external_id(globex.clone()).await;
    assert_ne!(acme_id, globex_id);
    assert!(acme_id.len() >= 32, "{acme_id}");
    let acme_role = "arn:aws:iam::111122223333:role/acme-delivery";
    let globex_role = "arn:aws:iam::444455556666:role/globex-delivery";
    identities.add_role(acme_role, &acme_id, &["acme-audit"]);
    identities.add_role(globex_role, &globex_id, &["globex-audit"]);

    let dest = |role: &str| {
        json!({"kind": "s3", "bucket": "acme-audit", "endpoint": ep, "sts_endpoint": ep,
            "max_batch_seconds": 1, "credentials": {"source": "assume_role", "role_arn": role}})
    };
    let (s, b) = api
        .call("PUT", "/v1/destinations/main", acme, Some(dest(acme_role)))
        .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["credentials"]["external_id"], acme_id.as_str());
    assert_eq!(b["credentials"]["role_arn"], acme_role);

    // The trust policy and permissions policy to paste.
    let (s, p) = api
        .call("GET", "/v1/destinations/main/bucket-policy", acme, None)
        .await;
    assert_eq!(s, 200, "{p}");
    let cond = &p["trust_policy"]["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"];
    assert_eq!(cond, acme_id.as_str());
    assert_eq!(
        p["trust_policy"]["Statement"][0]["Principal"]["AWS"],
        "arn:aws:iam::999999999999:role/auditrail"
    );
    assert_eq!(
        p["trust_policy"]["Statement"][0]["Action"],
        "sts:AssumeRole"
    );
    let resources = p["permissions_policy"]["Statement"][0]["Resource"].to_string();
    assert!(
        resources.contains("arn:aws:s3:::acme-audit/*"),
        "{resources}"
    );

    // Events keep arriving for longer than three sessions last; delivery never fails.
    let started = Instant::now();
    let mut round = 0;
    while started.elapsed() < Duration::from_secs(13) {
        api.ingest(acme, 3, &format!("r{round}")).await;
        round += 1;
        let (_, st) = api.call("GET", "/v1/destinations/main", acme, None).await;
        assert_eq!(st["last_error"], Value::Null, "no gap: {st}");
        assert_ne!(st["state"], "error", "{st}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let head = api.events(acme).await.len() as u64;
    let st = api
        .wait_for(acme, "main", 30, |st| {
            st["delivered_seq"].as_u64() == Some(head)
        })
        .await;
    assert_eq!(
        (st["last_error"].clone(), st["state"].clone()),
        (Value::Null, json!("active"))
    );
    assert!(
        identities.assumed() >= 3,
        "credentials renewed before they expired: {} assumptions",
        identities.assumed()
    );
    // Every request was made with temporary credentials, not the operator's key.
    let log = requests_to(store, "acme-audit");
    assert!(!log.is_empty());
    assert!(
        log.iter().all(|(ak, _, _)| ak.starts_with("ASIA")),
        "{log:?}"
    );
    // Each object holds its events once and in order.
    let keys = common::files_under(&buckets.path().join("acme-audit"));
    let mut seqs: Vec<u64> = keys
        .iter()
        .map(|k| k.to_string_lossy().into_owned())
        .filter(|k| k.ends_with(".ndjson.gz"))
        .flat_map(|k| {
            let stem = k.rsplit('/').next().unwrap().trim_end_matches(".ndjson.gz");
            let mut p = stem.rsplitn(3, '-');
            let last: u64 = p.next().unwrap().parse().unwrap();
            let first: u64 = p.next().unwrap().parse().unwrap();
            first..=last
        })
        .collect();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=head).collect::<Vec<_>>(),
        "every seq exactly once"
    );

    // acme's admin names globex's role: STS refuses acme's external id for it.
    let refused_before = identities.refused();
    let (s, b) = api
        .call(
            "PUT",
            "/v1/destinations/borrowed",
            acme,
            Some(json!({"kind": "s3",
            "bucket": "globex-audit", "endpoint": ep, "sts_endpoint": ep,
            "credentials": {"source": "assume_role", "role_arn": globex_role}})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let st = api
        .wait_for(acme, "borrowed", 30, |st| st["state"] == "error")
        .await;
    let err = st["last_error"].as_str().unwrap();
    assert!(
        err.contains("AssumeRole") && err.contains("AccessDenied"),
        "{err}"
    );
    assert!(
        !err.contains("not authorized"),
        "the remote's message is not relayed: {err}"
    );
    assert!(identities.refused() > refused_before);
    // No hammering: one refusal, then a long pause.
    let n = identities.refused();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        identities.refused() <= n + 1,
        "{} refusals in 3 s",
        identities.refused() - n
    );
    assert_eq!(requests_to(store, "globex-audit"), vec![]);
    let (_, st) = api
        .call("GET", "/v1/destinations/borrowed", acme, None)
        .await;
    assert_eq!(st["delivered_seq"], 0);
}
