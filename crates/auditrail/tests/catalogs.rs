//! Catalogs over HTTP: every row of both built-ins accepted by strict orgs, precise
//! refusals, drop mode, HMAC mode, catalog versions, and a secret that must not reach any
//! file of the data dir, the logs, the metrics or an error message.
#![expect(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{ADMIN, BIN, TestServer, independent_leaf, run};
use serde_json::{Value, json};

async fn strict_org(s: &TestServer, id: &str, catalog: Value) -> (String, String) {
    let (st, b) = s
        .post(
            "/v1/orgs",
            ADMIN,
            json!({"id": id, "catalog": catalog, "strict": true}),
        )
        .await;
    assert_eq!(st, 201, "{b}");
    assert_eq!(b["catalog_version"], 1, "{b}");
    (s.key(id, "ingest").await, s.key(id, "admin").await)
}

/// Each row of a catalog document: (action, allowed resource types, parameters).
fn rows(doc: &Value) -> Vec<(String, Vec<String>, Vec<String>)> {
    let all_types: Vec<String> = doc["resource_types"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().map(|x| x.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for (name, a) in doc["actions"].as_object().unwrap() {
        let types = match a.get("resource_types") {
            Some(t) => strings(t),
            None => all_types.clone(),
        };
        match a.get("forms").and_then(Value::as_array) {
            Some(forms) => {
                for f in forms {
                    out.push((name.clone(), types.clone(), strings(&f["parameters"])));
                }
            }
            None => out.push((name.clone(), types, strings(&a["parameters"]))),
        }
    }
    out
}

/// Details carrying every parameter (a dotted path as a list of objects).
fn details_for(params: &[String]) -> Value {
    let mut d = json!({});
    for p in params {
        match p.split_once('.') {
            Some((parent, child)) => {
                if d.get(parent).is_none() {
                    d[parent] = json!([{}]);
                }
                d[parent][0][child] = json!(format!("{child}-value"));
            }
            None => d[p] = json!(format!("{p}-value")),
        }
    }
    d
}

async fn catalog_of(s: &TestServer, token: &str) -> Value {
    let (st, b) = s.get("/v1/catalog", token).await;
    assert_eq!(st, 200, "{b}");
    b
}

#[tokio::test]
async fn strict_prophecy_org_accepts_every_row_with_its_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    let (ingest, admin) = strict_org(&s, "prophecy-co", json!("prophecy")).await;
    let cat = catalog_of(&s, &ingest).await;
    assert_eq!(
        (cat["name"].as_str(), cat["version"].as_u64()),
        (Some("prophecy"), Some(1))
    );
    let rows = rows(&cat["catalog"]);
    assert_eq!(rows.len(), 68);
    let events: Vec<Value> = rows
        .iter()
        .enumerate()
        .map(|(i, (action, types, params))| {
            json!({"id": format!("row-{i}"), "action": action,
                   "resource": {"type": types[0], "id": format!("r-{i}")},
                   "actor": {"id": "u-1", "type": "USER"}, "details": details_for(params)})
        })
        .collect();
    let (st, b) = s
        .post("/v1/events", &ingest, json!({ "events": events }))
        .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["accepted"].as_array().unwrap().len(), 68);
    let stored: Vec<Value> = s
        .all_events(&admin)
        .await
        .into_iter()
        .filter(|e| e["id"].as_str().unwrap().starts_with("row-"))
        .collect();
    assert_eq!(stored.len(), 68);
    for (e, (action, _, params)) in stored.iter().zip(&rows) {
        assert_eq!(e["action"].as_str().unwrap(), action);
        assert_eq!(e["catalog_version"], 1);
        assert_eq!(
            hex::encode(independent_leaf(e)),
            e["leaf_hash"].as_str().unwrap()
        );
        for p in params {
            let top = p.split('.').next().unwrap();
            assert!(e["details"].get(top).is_some(), "{action} lost {p}");
        }
    }
    let pw = stored
        .iter()
        .find(|e| e["action"] == "setPassword")
        .unwrap();
    assert_eq!(pw["details"]["newPassword"], "[REDACTED]");
    s.stop().await;
}

#[tokio::test]
async fn strict_apollo_org_accepts_every_action_on_every_type_it_allows() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    let (ingest, _) = strict_org(&s, "apollo-co", json!("apollo-studio")).await;
    let cat = catalog_of(&s, &ingest).await;
    let doc = &cat["catalog"];
    assert_eq!(doc["actions"].as_object().unwrap().len(), 22);
    assert_eq!(doc["resource_types"].as_object().unwrap().len(), 10);
    assert_eq!(doc["actions"]["API_KEY"]["deprecated"], true);
    let mut events = Vec::new();
    for (action, types, _) in rows(doc) {
        for t in types {
            events.push(json!({"action": action, "resource": {"type": t, "id": "x"},
                               "scope": {"type": "GRAPH", "id": "my-graph"},
                               "details": {"anything": {"the": "source does not list details"}}}));
        }
    }
    assert!(events.len() > 60, "{}", events.len());
    let (st, b) = s
        .post("/v1/events", &ingest, json!({ "events": events }))
        .await;
    assert_eq!(st, 200, "{b}");
    s.stop().await;
}

#[tokio::test]
async fn strict_orgs_refuse_what_the_catalog_does_not_name_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    let (ingest, admin) = strict_org(&s, "acme", json!("prophecy")).await;
    let before = s.all_events(&admin).await.len();
    let good = json!({"action": "addProject", "resource": {"type": "PROJECT", "id": "p"}, "details": {"name": "x"}});
    let cases = [
        (
            json!({"action": "dropDatabase"}),
            "action",
            "`dropDatabase`",
        ),
        (
            json!({"action": "addProject", "resource": {"type": "PIPELINE", "id": "p"}}),
            "resource.type",
            "allowed: PROJECT",
        ),
        (
            json!({"action": "addProject", "resource": {"type": "SPACESHIP", "id": "p"}}),
            "resource.type",
            "not a resource type",
        ),
        (
            json!({"action": "addProject", "details": {"name": "x", "colour": "red"}}),
            "details.colour",
            "not a parameter of `addProject`",
        ),
        (
            json!({"action": "addUDFBulk", "details": {"udfs": [{"name": "f", "body": "x"}]}}),
            "details.udfs[0].body",
            "allowed here: description, name",
        ),
    ];
    for (bad, field, reason) in cases {
        let (st, b) = s
            .post(
                "/v1/events",
                &ingest,
                json!({"events": [good.clone(), bad]}),
            )
            .await;
        assert_eq!(st, 422, "{b}");
        let d = &b["error"]["details"][0];
        assert_eq!(
            (d["index"].as_u64(), d["field"].as_str()),
            (Some(1), Some(field)),
            "{b}"
        );
        assert!(d["reason"].as_str().unwrap().contains(reason), "{b}");
    }
    assert_eq!(
        s.all_events(&admin).await.len(),
        before,
        "nothing was stored"
    );
    // Auditrail's own events are not the host product's and pass in any org.
    s.key("acme", "viewer").await;
    assert_eq!(s.all_events(&admin).await.len(), before + 1);
    s.stop().await;
}

#[tokio::test]
async fn drop_mode_stores_the_event_without_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    let doc = json!({
        "name": "shop",
        "options": {"unknown_details": "drop"},
        "resource_types": {"ORDER": {"description": "An order"}},
        "actions": {"refund": {"resource_types": ["ORDER"], "parameters": ["amount", "card.last4", "card.number"], "sensitive": ["card.number"]}}
    });
    let (ingest, admin) = strict_org(&s, "shop", doc).await;
    let (st, b) = s
        .post(
            "/v1/events",
            &ingest,
            json!({"id": "r1", "action": "refund", "resource": {"type": "ORDER", "id": "o-1"},
                   "details": {"amount": 12, "note": "dropped", "card": {"last4": "4242", "number": "4242424242424242", "cvv": "123"}}}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let e = s.all_events(&admin).await.pop().unwrap();
    assert_eq!(
        e["details"],
        json!({"amount": 12, "card": {"last4": "4242", "number": "[REDACTED]"}})
    );
    assert_eq!(
        hex::encode(independent_leaf(&e)),
        e["leaf_hash"].as_str().unwrap()
    );
    s.stop().await;
}

#[tokio::test]
async fn lenient_orgs_accept_unknown_actions_and_count_them() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    let (st, b) = s
        .post(
            "/v1/orgs",
            ADMIN,
            json!({"id": "lenient", "catalog": "prophecy"}),
        )
        .await;
    assert_eq!(st, 201, "{b}");
    let ingest = s.key("lenient", "ingest").await;
    let events = json!({"events": [
        {"id": "u1", "action": "somethingNew", "details": {"free": "form"}},
        {"id": "u2", "action": "alsoNew", "resource": {"type": "WHATEVER", "id": "w"}},
        {"action": "addProject", "details": {"name": "x", "extra": "kept"}},
        {"action": "setPassword", "details": {"newPassword": "still-redacted"}}
    ]});
    let (st, b) = s.post("/v1/events", &ingest, events.clone()).await;
    assert_eq!(st, 200, "{b}");
    // Resending the same ids stores nothing and counts nothing again.
    let (st, _) = s
        .post(
            "/v1/events",
            &ingest,
            json!({"events": [events["events"][0]]}),
        )
        .await;
    assert_eq!(st, 200);
    let metrics = s
        .http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap();
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("auditrail_catalog_unknown_actions_total{org=\"lenient\"} 2"),
        "{text}"
    );
    let admin = s.key("lenient", "admin").await;
    let all = s.all_events(&admin).await;
    let add = all.iter().find(|e| e["action"] == "addProject").unwrap();
    assert_eq!(add["details"]["extra"], "kept");
    let pw = all.iter().find(|e| e["action"] == "setPassword").unwrap();
    assert_eq!(pw["details"]["newPassword"], "[REDACTED]");
    s.stop().await;
}

const HMAC_CATALOG: &str = r#"
name = "accounts"
[options]
sensitive = "hmac"
[resource_types.USER]
[actions.setPassword]
resource_types = ["USER"]
parameters = ["uid", "newPassword"]
sensitive = ["newPassword"]
"#;

async fn put_toml(s: &TestServer, org: &str, token: &str, toml: &str) -> (u16, Value) {
    let r = s
        .http
        .put(format!("{}/v1/orgs/{org}/catalog", s.base))
        .bearer_auth(token)
        .header("content-type", "application/toml")
        .body(toml.to_owned())
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap())
}

#[tokio::test]
async fn hmac_mode_is_stable_and_searchable() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    let (ingest, admin) = strict_org(&s, "acme", json!("prophecy")).await;
    let (st, b) = put_toml(&s, "acme", &admin, HMAC_CATALOG).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(
        (b["version"].as_u64(), b["created"].as_bool()),
        (Some(2), Some(true))
    );
    for (i, pw) in ["same-secret", "same-secret", "other-secret"]
        .iter()
        .enumerate()
    {
        let (st, b) = s
            .post(
                "/v1/events",
                &ingest,
                json!({"id": format!("pw{i}"), "action": "setPassword", "resource": {"type": "USER", "id": "u1"}, "details": {"uid": "u1", "newPassword": pw}}),
            )
            .await;
        assert_eq!(st, 200, "{b}");
    }
    let (st, h) = s
        .post("/v1/hmac", &admin, json!({"value": "same-secret"}))
        .await;
    assert_eq!(st, 200, "{h}");
    let h = h["hmac"].as_str().unwrap().to_owned();
    assert!(h.starts_with("hmac-sha256:") && h.len() == 12 + 64, "{h}");
    let digest = h.trim_start_matches("hmac-sha256:");
    let (st, found) = s.get(&format!("/v1/events?q={digest}"), &admin).await;
    assert_eq!(st, 200, "{found}");
    let ids: Vec<&str> = found["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["pw1", "pw0"]);
    for e in found["events"].as_array().unwrap() {
        assert_eq!(e["details"]["newPassword"], h.as_str());
        assert_eq!(e["catalog_version"], 2);
    }
    // Only admins may test values; other orgs' keys give other digests.
    let viewer = s.key("acme", "viewer").await;
    assert_eq!(
        s.post("/v1/hmac", &viewer, json!({"value": "x"})).await.0,
        403
    );
    let (st, e) = s
        .post("/v1/hmac", &admin, json!({"valu": "same-secret"}))
        .await;
    assert_eq!(
        (st, e["error"]["details"][0]["field"].as_str()),
        (422, Some("value"))
    );
    assert!(!e.to_string().contains("same-secret"), "{e}");
    let (_, other_admin) = strict_org(&s, "globex", json!("prophecy")).await;
    let (_, h2) = s
        .post("/v1/hmac", &other_admin, json!({"value": "same-secret"}))
        .await;
    assert_ne!(h2["hmac"].as_str().unwrap(), h);
    s.stop().await;
}

#[tokio::test]
async fn a_new_catalog_version_leaves_old_events_readable_and_tagged() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    let (ingest, admin) = strict_org(&s, "acme", json!("prophecy")).await;
    let ev = |id: &str, action: &str| json!({"id": id, "action": action, "resource": {"type": "USER", "id": "u1"}, "details": {"uid": "u1"}});
    let (st, b) = s
        .post("/v1/events", &ingest, ev("old", "getUser").clone())
        .await;
    assert!(st == 422, "getUser takes `email`, not `uid`: {b}");
    let (st, b) = s
        .post("/v1/events", &ingest, ev("old", "userAllFabricInfoAspect"))
        .await;
    assert_eq!(st, 200, "{b}");

    let v2 = json!({"name": "accounts-v2", "resource_types": {"USER": {}},
                    "actions": {"deactivateUser": {"resource_types": ["USER"], "parameters": ["uid"]}}});
    let (st, b) = s
        .call("PUT", "/v1/orgs/acme/catalog", &admin, Some(v2.clone()))
        .await;
    assert_eq!(st, 200);
    assert_eq!(
        (b["version"].as_u64(), b["name"].as_str()),
        (Some(2), Some("accounts-v2"))
    );
    // The same document again is not a new version.
    let (_, b) = s
        .call("PUT", "/v1/orgs/acme/catalog", &admin, Some(v2))
        .await;
    assert_eq!(
        (b["version"].as_u64(), b["created"].as_bool()),
        (Some(2), Some(false))
    );

    let (st, b) = s
        .post("/v1/events", &ingest, ev("new", "deactivateUser"))
        .await;
    assert_eq!(st, 200, "{b}");
    let (st, b) = s
        .post(
            "/v1/events",
            &ingest,
            ev("again", "userAllFabricInfoAspect"),
        )
        .await;
    assert_eq!(
        (st, b["error"]["details"][0]["field"].as_str()),
        (422, Some("action"))
    );

    let all = s.all_events(&admin).await;
    for e in &all {
        assert_eq!(
            hex::encode(independent_leaf(e)),
            e["leaf_hash"].as_str().unwrap()
        );
    }
    let by_id = |id: &str| all.iter().find(|e| e["id"] == id).unwrap().clone();
    assert_eq!(by_id("old")["catalog_version"], 1);
    assert_eq!(by_id("new")["catalog_version"], 2);
    let change = all.iter().find(|e| e["action"] == "updateCatalog").unwrap();
    assert_eq!(change["details"]["version"], 2);
    assert_eq!(change["resource"]["id"], "accounts-v2");
    assert!(
        change.get("catalog_version").is_none(),
        "auditrail's own events are not checked"
    );
    assert_eq!(
        all.iter()
            .filter(|e| e["action"] == "updateCatalog")
            .count(),
        1
    );

    let (st, v1) = s.get("/v1/catalog?version=1", &admin).await;
    assert_eq!(st, 200);
    assert_eq!(v1["name"], "prophecy");
    assert!(v1["catalog"]["actions"]["userAllFabricInfoAspect"].is_object());
    let (_, cur) = s.get("/v1/catalog", &admin).await;
    assert_eq!(
        (cur["version"].as_u64(), cur["strict"].as_bool()),
        (Some(2), Some(true))
    );
    assert_eq!(s.get("/v1/catalog?version=3", &admin).await.0, 404);
    assert_eq!(s.get("/v1/catalog?version=x", &admin).await.0, 422);

    // The catalog survives a restart with its versions.
    s.stop().await;
    let s = TestServer::start(dir.path()).await;
    let (st, b) = s
        .post("/v1/events", &ingest, ev("after", "deactivateUser"))
        .await;
    assert_eq!(st, 200, "{b}");
    let e = s.all_events(&admin).await.pop().unwrap();
    assert_eq!(
        (e["id"].as_str(), e["catalog_version"].as_u64()),
        (Some("after"), Some(2))
    );
    s.stop().await;
}

#[tokio::test]
async fn bad_catalogs_and_wrong_callers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    let cases = [
        (
            json!({"id": "a", "catalog": "salesforce"}),
            "catalog",
            "not a built-in",
        ),
        (
            json!({"id": "a", "strict": true}),
            "strict",
            "needs a catalog",
        ),
        (
            json!({"id": "a", "catalog": {"name": "x", "resource_types": {}, "actions": {"a": {"resource_types": ["NOPE"]}}}}),
            "catalog.actions.a.resource_types[0]",
            "not declared",
        ),
        (
            json!({"id": "a", "catalog": {"name": "x", "actions": {"a": {"parameters": ["p"], "sensitive": ["q"]}}}}),
            "catalog.actions.a.sensitive[0]",
            "not one of the action's parameters",
        ),
        (
            json!({"id": "a", "catalog": 7}),
            "catalog",
            "built-in catalog name or a catalog document",
        ),
    ];
    for (body, field, reason) in cases {
        let (st, b) = s.post("/v1/orgs", ADMIN, body).await;
        assert_eq!(st, 422, "{b}");
        let d = &b["error"]["details"][0];
        assert_eq!(d["field"].as_str(), Some(field), "{b}");
        assert!(d["reason"].as_str().unwrap().contains(reason), "{b}");
    }
    s.create_org("acme").await;
    s.create_org("globex").await;
    let (viewer, admin) = (s.key("acme", "viewer").await, s.key("acme", "admin").await);
    let other = s.key("globex", "admin").await;
    assert_eq!(s.get("/v1/catalog", &viewer).await.0, 404, "no catalog yet");
    assert_eq!(put_toml(&s, "acme", &viewer, HMAC_CATALOG).await.0, 403);
    assert_eq!(put_toml(&s, "acme", &other, HMAC_CATALOG).await.0, 404);
    let (st, b) = put_toml(&s, "acme", &admin, "name = \"x\"\n[actions.a\n").await;
    assert_eq!(
        (st, b["error"]["code"].as_str()),
        (422, Some("invalid_catalog")),
        "{b}"
    );
    let (st, b) = put_toml(
        &s,
        "acme",
        &admin,
        "name = \"x\"\n[actions.a]\nparams = []\n",
    )
    .await;
    assert_eq!(st, 422, "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("params"),
        "{b}"
    );
    assert_eq!(
        s.get("/v1/catalog", &viewer).await.0,
        404,
        "refused uploads change nothing"
    );
    let (st, _) = put_toml(&s, "acme", ADMIN, HMAC_CATALOG).await;
    assert_eq!(st, 200, "the platform admin may set any org's catalog");
    let (st, b) = s.get("/v1/catalog", &viewer).await;
    assert_eq!((st, b["name"].as_str()), (200, Some("accounts")));
    let (_, b) = s
        .call(
            "PUT",
            "/v1/orgs/acme/catalog",
            &admin,
            Some(json!("apollo-studio")),
        )
        .await;
    assert_eq!(
        (b["version"].as_u64(), b["name"].as_str()),
        (Some(2), Some("apollo-studio"))
    );
    s.stop().await;
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn assert_absent(dir: &Path, secret: &str) -> usize {
    let all = files(dir);
    for f in &all {
        let bytes = std::fs::read(f).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the secret reached {}",
            f.display()
        );
    }
    all.len()
}

#[tokio::test]
async fn a_secret_never_reaches_the_data_dir_logs_metrics_or_errors() {
    const SECRET: &str = "Zebra-Quartz-9f3c-TOPSECRET";
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let log_path = data.join("serve.log");
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("AUDITRAIL_ADMIN_TOKEN", ADMIN)
        .env("AUDITRAIL_CHECKPOINT_INTERVAL", "200ms")
        .env("AUDITRAIL_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let base = first
        .trim()
        .strip_prefix("auditrail listening on ")
        .unwrap()
        .to_owned();
    // Everything the server prints from here on goes to a log file in the data dir.
    let mut log = std::fs::File::create(&log_path).unwrap();
    log.write_all(first.as_bytes()).unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let copier = std::thread::spawn(move || {
        let mut rest = Vec::new();
        let _ = stdout.read_to_end(&mut rest);
        let mut err = Vec::new();
        let _ = stderr.read_to_end(&mut err);
        log.write_all(&rest).unwrap();
        log.write_all(&err).unwrap();
    });

    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, token: &str, body: Value| {
        let req = http
            .request(method, format!("{base}{path}"))
            .bearer_auth(token)
            .json(&body);
        async move {
            let r = req.send().await.unwrap();
            let st = r.status().as_u16();
            (st, r.text().await.unwrap())
        }
    };
    let (st, b) = call(
        reqwest::Method::POST,
        "/v1/orgs",
        ADMIN,
        json!({"id": "acme", "catalog": "prophecy", "strict": true}),
    )
    .await;
    assert_eq!(st, 201, "{b}");
    let (_, key) = call(
        reqwest::Method::POST,
        "/v1/orgs/acme/keys",
        ADMIN,
        json!({"name": "k", "role": "admin"}),
    )
    .await;
    let token = serde_json::from_str::<Value>(&key).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let pw = json!({"id": "pw", "action": "setPassword", "resource": {"type": "USER", "id": "u1"},
                    "details": {"uid": "u1", "newPassword": SECRET}});
    let (st, b) = call(reqwest::Method::POST, "/v1/events", &token, pw).await;
    assert_eq!(st, 200, "{b}");
    // Refused events must not echo the secret either: a bad sibling key, a too-long
    // value, a wrong type under a nested parameter.
    let refusals = [
        json!({"action": "setPassword", "details": {"newPassword": SECRET, "oldPassword": SECRET}}),
        json!({"action": "setPassword", "details": {"newPassword": SECRET.repeat(400)}}),
        json!({"action": "addUDFBulk", "details": {"udfs": SECRET}}),
    ];
    for bad in refusals {
        let (st, b) = call(reqwest::Method::POST, "/v1/events", &token, bad).await;
        assert_eq!(st, 422, "{b}");
        assert!(!b.contains(SECRET), "an error echoed the secret: {b}");
    }
    let (st, b) = call(
        reqwest::Method::POST,
        "/v1/hmac",
        &token,
        json!({"value": SECRET}),
    )
    .await;
    assert_eq!(st, 200, "{b}");
    assert!(!b.contains(SECRET));
    let (st, b) = call(
        reqwest::Method::GET,
        &format!("/v1/events?q={SECRET}"),
        &token,
        json!(null),
    )
    .await;
    assert_eq!(st, 200);
    assert!(!b.contains(SECRET));
    let (_, events) = call(reqwest::Method::GET, "/v1/events", &token, json!(null)).await;
    assert!(events.contains("[REDACTED]") && !events.contains(SECRET));
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!metrics.contains(SECRET));
    // Let a checkpoint be signed, then scan while the WAL is live.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let n = assert_absent(&data, SECRET);
    assert!(n >= 4, "database, WAL, key and log at least: {n}");
    assert!(
        data.join("auditrail.db-wal").exists(),
        "the WAL was scanned"
    );

    // Stop gracefully and scan everything again, logs included.
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(child.wait().unwrap().success());
    copier.join().unwrap();
    let log_text = std::fs::read_to_string(&log_path).unwrap();
    assert!(log_text.len() > 100, "the server logged: {log_text}");
    assert_absent(&data, SECRET);
}

#[test]
fn cli_creates_strict_orgs_from_built_ins_and_files_and_bulk_ingest_applies_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = run(
        &[
            "orgs",
            "create",
            "acme",
            "--catalog",
            "prophecy",
            "--strict",
        ],
        &data,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let org: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (org["catalog"].as_str(), org["strict"].as_bool()),
        (Some("prophecy"), Some(true))
    );

    let file = dir.path().join("accounts.toml");
    std::fs::write(&file, HMAC_CATALOG).unwrap();
    let out = run(
        &[
            "orgs",
            "create",
            "shop",
            "--catalog",
            file.to_str().unwrap(),
            "--strict",
        ],
        &data,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let org: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(org["catalog"], "accounts");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "name = \"bad\"\n[actions.a]\nsensitive = [\"x\"]\n").unwrap();
    let out = run(
        &["orgs", "create", "bad", "--catalog", bad.to_str().unwrap()],
        &data,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("actions.a.sensitive[0]"), "{err}");
    let out = run(&["orgs", "create", "bad", "--catalog", "nonesuch"], &data);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("prophecy, apollo-studio"));

    let ndjson = dir.path().join("events.ndjson");
    std::fs::write(
        &ndjson,
        concat!(
            r#"{"action":"setPassword","resource":{"type":"USER","id":"u1"},"details":{"uid":"u1","newPassword":"bulk-secret-123"}}"#,
            "\n",
            r#"{"action":"addProject","details":{"name":"x"}}"#,
            "\n",
            r#"{"action":"notInTheCatalog"}"#,
            "\n"
        ),
    )
    .unwrap();
    let out = run(
        &["ingest", "--org", "acme", ndjson.to_str().unwrap()],
        &data,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3: action"), "{err}");
    std::fs::write(
        &ndjson,
        std::fs::read_to_string(&ndjson)
            .unwrap()
            .lines()
            .take(2)
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    let out = run(
        &["ingest", "--org", "acme", ndjson.to_str().unwrap()],
        &data,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = std::fs::read(data.join("auditrail.db")).unwrap();
    let secret = b"bulk-secret-123";
    assert!(!db.windows(secret.len()).any(|w| w == secret));
    let conn = rusqlite::Connection::open(data.join("auditrail.db")).unwrap();
    let bodies: Vec<String> = conn
        .prepare("SELECT body FROM events WHERE body LIKE '%setPassword%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(bodies.len(), 1);
    assert!(
        bodies[0].contains(r#""newPassword":"[REDACTED]""#),
        "{}",
        bodies[0]
    );
    assert!(
        bodies[0].contains(r#""catalog_version":1"#),
        "{}",
        bodies[0]
    );
}

/// An HMAC key an earlier version stored in clear keeps working (same digests) and is
/// sealed with the server's secret key on first use.
#[tokio::test]
async fn an_hmac_key_stored_in_clear_is_used_then_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    let key = [7u8; 32];
    {
        let db = rusqlite::Connection::open(dir.path().join("auditrail.db")).unwrap();
        db.execute(
            "INSERT INTO settings (name, value) VALUES ('org/acme/hmac_key', ?1)",
            [hex::encode(key)],
        )
        .unwrap();
    }
    let (_, admin) = strict_org(&s, "acme", json!("prophecy")).await;
    let (st, h) = s
        .post("/v1/hmac", &admin, json!({"value": "same-secret"}))
        .await;
    assert_eq!(st, 200, "{h}");
    assert_eq!(
        h["hmac"].as_str().unwrap(),
        auditrail_core::catalog::hmac_value(&key, &json!("same-secret"))
    );
    let stored: String = rusqlite::Connection::open(dir.path().join("auditrail.db"))
        .unwrap()
        .query_row(
            "SELECT value FROM settings WHERE name = 'org/acme/hmac_key'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(stored.starts_with("v1:"), "still in clear: {stored}");
    assert!(!stored.contains(&hex::encode(key)));
    s.stop().await;
}
