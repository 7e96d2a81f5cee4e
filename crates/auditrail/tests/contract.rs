//! The API as a contract: Schemathesis (PyPI), nobody here's code, generates requests
//! from `/openapi.json` and runs every check of every phase (examples, coverage, fuzzing,
//! and the stateful phase following links between operations) against a real
//! `auditrail serve`, seeded and bounded: it must find no failure and no error. Where the
//! schema cannot state why a valid-looking request is refused, the config says so per
//! operation (`tests/contract/schemathesis.toml`).
#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed test")]

mod common;

use std::process::Command;

use serde_json::{Value, json};

const ADMIN: &str = "contract-platform-admin";
const CONFIG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/contract/schemathesis.toml"
);

/// Whether `schemathesis` is installed; missing, the test fails under
/// `AUDITRAIL_REQUIRE_SCHEMATHESIS` (as in CI) and is skipped otherwise.
fn available() -> bool {
    let ok = Command::new("schemathesis")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("AUDITRAIL_REQUIRE_SCHEMATHESIS").is_none(),
            "schemathesis is required (python3 -m pip install schemathesis)"
        );
        eprintln!("skipped: python3 -m pip install schemathesis");
    }
    ok
}

async fn post(base: &str, token: &str, path: &str, body: Value) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap()
}

#[tokio::test]
async fn schemathesis_finds_no_failure_and_no_error() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let srv = common::process::serve(ADMIN, |c| {
        c.arg("--data-dir").arg(dir.path());
    });
    let base = srv.base.clone();
    post(&base, ADMIN, "/v1/orgs", json!({"id": "acme"})).await;
    let key = post(
        &base,
        ADMIN,
        "/v1/orgs/acme/keys",
        json!({"name": "contract", "role": "admin"}),
    )
    .await;
    let key = key["token"].as_str().unwrap().to_owned();
    let events: Vec<Value> = (0..20)
        .map(|i| {
            json!({"action": "addProject", "actor": {"id": format!("u-{}", i % 3)},
                         "resource": {"type": "PROJECT", "id": format!("p-{i}")}})
        })
        .collect();
    post(&base, &key, "/v1/events", json!({ "events": events })).await;

    let examples = std::env::var("AUDITRAIL_CONTRACT_EXAMPLES").unwrap_or_else(|_| "5".into());
    // Its cache of past crashes goes to a directory of its own, so every run starts
    // from the seed alone.
    let cwd = tempfile::tempdir().unwrap();
    let mut st = Command::new("schemathesis");
    st.current_dir(cwd.path())
        .args(["--no-color", "--config-file", CONFIG, "run"])
        .arg(format!("{base}/openapi.json"))
        .args(["-H", &format!("Authorization: Bearer {key}")])
        .args(["--seed", "20261206", "--max-examples", &examples])
        .args(["--request-timeout", "20"]);
    let out = tokio::task::spawn_blocking(move || st.output().unwrap())
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // The summary and the failures, without the longest generated bodies.
    let shown: String = text
        .lines()
        .map(|l| l.chars().take(400).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        out.status.success(),
        "schemathesis found failures or errors:\n{shown}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        shown.contains("Stateful"),
        "the stateful phase ran:\n{shown}"
    );
    // ... and followed links: what one operation answered, another used.
    let covered: u32 = shown
        .lines()
        .find_map(|l| l.trim().strip_prefix("API Links:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(covered > 0, "the stateful phase followed no link:\n{shown}");
    drop(srv);
}

/// `auditrail openapi` prints, without a server, the document the server serves; every
/// path parameter is declared and every error answer is the one `Error` schema.
#[tokio::test]
async fn the_cli_prints_the_served_document() {
    let dir = tempfile::tempdir().unwrap();
    let srv = common::process::serve(ADMIN, |c| {
        c.arg("--data-dir").arg(dir.path());
    });
    let served: Value = reqwest::get(format!("{}/openapi.json", srv.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let printed = Command::new(common::BIN).arg("openapi").output().unwrap();
    assert!(printed.status.success());
    let printed: Value = serde_json::from_slice(&printed.stdout).unwrap();
    assert_eq!(printed, served);
    assert_eq!(served["openapi"], "3.1.0");
    let mut ops = 0;
    let mut ids = std::collections::HashSet::new();
    for (path, item) in served["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            ops += 1;
            // Generators name a method per operation id: each is unique.
            let id = op["operationId"].as_str().unwrap().to_owned();
            assert!(
                ids.insert(id.clone()),
                "{method} {path}: operationId {id} is used twice"
            );
            for name in path
                .split('{')
                .skip(1)
                .map(|p| p.split('}').next().unwrap())
            {
                let declared = op["parameters"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["name"] == name && p["in"] == "path"));
                assert!(declared, "{method} {path}: {{{name}}} is not declared");
            }
            for (status, r) in op["responses"].as_object().unwrap() {
                if !status.starts_with('2') && !status.starts_with('3') {
                    assert_eq!(
                        r["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/Error",
                        "{method} {path} {status}"
                    );
                }
            }
            assert!(op["responses"].get("401").is_some(), "{method} {path}");
            // Every success but 204 says what it answers, and a JSON answer by a named
            // schema, so that generated clients are typed.
            for (status, r) in op["responses"].as_object().unwrap() {
                if status.starts_with('2') && status != "204" {
                    let content = r["content"].as_object();
                    assert!(content.is_some(), "{method} {path} {status}: no content");
                    if let Some(json) = content.unwrap().get("application/json") {
                        assert!(
                            json["schema"]["$ref"].is_string(),
                            "{method} {path} {status}: an unnamed schema"
                        );
                    }
                }
            }
        }
    }
    assert!(ops >= 40, "{ops} operations");
    assert!(served["paths"]["/v1/events/stream"]["get"].is_object());
    drop(srv);
}

/// Every operation names the roles whose keys may call it (`security`: the bearer
/// scheme with role names, as OpenAPI 3.1 allows), and the server keeps to it: called
/// with a key of each role, an operation answers 403 exactly to the roles it does not
/// name.
#[tokio::test]
async fn each_operation_answers_the_roles_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let srv = common::process::serve(ADMIN, |c| {
        c.arg("--data-dir").arg(dir.path());
    });
    let base = srv.base.clone();
    post(&base, ADMIN, "/v1/orgs", json!({"id": "acme"})).await;
    let mut tokens = vec![("platform_admin".to_owned(), ADMIN.to_owned())];
    for role in ["admin", "ingest", "viewer"] {
        let key = post(
            &base,
            ADMIN,
            "/v1/orgs/acme/keys",
            json!({"name": role, "role": role}),
        )
        .await;
        tokens.push((role.to_owned(), key["token"].as_str().unwrap().to_owned()));
    }
    let doc: Value = reqwest::get(format!("{base}/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let roles: Vec<&str> = op["security"][0]["bearer"]
                .as_array()
                .unwrap_or_else(|| panic!("{method} {path} names no roles"))
                .iter()
                .map(|r| r.as_str().unwrap())
                .collect();
            let mut url = format!("{base}{path}")
                .replace("{org}", "acme")
                .replace("{path}", "tile/0/000");
            for name in ["name", "id", "key_id"] {
                url = url.replace(&format!("{{{name}}}"), "none-such");
            }
            if path.ends_with("/inclusion") {
                url.push_str("?seq=1&tree_size=2");
            } else if path.ends_with("/consistency") {
                url.push_str("?from=1&to=2");
            }
            for (role, token) in &tokens {
                let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let mut req = http.request(m, &url).bearer_auth(token);
                if method == "post" || method == "put" {
                    req = req.json(&json!({}));
                }
                let status = req.send().await.unwrap().status().as_u16();
                let named = roles.contains(&role.as_str());
                assert_eq!(
                    status == 403,
                    !named,
                    "{method} {path} as {role}: {status}, and the document names {roles:?}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 160, "{checked} calls");
    drop(srv);
}
