//! The Audit page: viewer links, sessions, CSRF, roles and scopes over HTTP, and the
//! whole page end to end in headless Chromium against a real S3-compatible server.
#![expect(clippy::unwrap_used, reason = "tests: a panic is a failed test")]

mod common;

use std::time::Duration;

use auditrail_s3_dev::DevS3;
use common::browser::{self, Browser};
use common::{ADMIN, TestServer};
use serde_json::{Value, json};

const AK: &str = "ui-access-key";
const SK: &str = "ui-secret-key-0123456789";
const BUCKET: &str = "audit";
const PRINCIPAL: &str = "arn:aws:iam::123456789012:role/auditrail";

struct Rig {
    _d: tempfile::TempDir,
    _bucket_dir: tempfile::TempDir,
    s3: DevS3,
    srv: TestServer,
    admin: String,
    /// Seqs of the product's events by scope: `proj-a`, `proj-b`.
    a: Vec<u64>,
    b: Vec<u64>,
    /// The day (UTC) the events happened on, `YYYY-MM-DD`.
    day: String,
}

/// Org `acme` (Prophecy catalog) with 60 product events by three users in two
/// projects, beside an S3-compatible server with an empty bucket.
async fn rig() -> Rig {
    let d = tempfile::tempdir().unwrap();
    let bucket_dir = tempfile::tempdir().unwrap();
    let s3 = DevS3::start(bucket_dir.path(), "127.0.0.1:0".parse().unwrap(), AK, SK)
        .await
        .unwrap();
    s3.create_bucket(BUCKET).unwrap();
    let srv = TestServer::start_custom(d.path(), |s| {
        s.delivery.poll = Duration::from_millis(50);
        s.delivery.principal_arn = Some(PRINCIPAL.into());
    })
    .await;
    let (s, b) = srv
        .post(
            "/v1/orgs",
            ADMIN,
            json!({"id": "acme", "catalog": "prophecy"}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let admin = srv.key("acme", "admin").await;
    let ingest = srv.key("acme", "ingest").await;
    let mut events = Vec::new();
    for i in 0..60 {
        let user = format!("u-{}", i % 3 + 1);
        let scope = if i % 2 == 0 { "proj-a" } else { "proj-b" };
        let rid = if i == 7 {
            "tamper-me".to_owned()
        } else {
            format!("p-{i}")
        };
        events.push(json!({
            "action": if i % 4 == 0 { "addFabric" } else { "addProject" },
            "actor": {"id": user, "type": "USER", "name": format!("User {user}"), "email": format!("{user}@example.com")},
            "resource": {"type": if i % 4 == 0 { "FABRIC" } else { "PROJECT" }, "id": rid},
            "scope": {"id": scope, "type": "PROJECT"},
        }));
    }
    let (s, body) = srv
        .post("/v1/events", &ingest, json!({"events": events}))
        .await;
    assert_eq!(s, 200, "{body}");
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for (i, acc) in body["accepted"].as_array().unwrap().iter().enumerate() {
        let seq = acc["seq"].as_u64().unwrap();
        if i % 2 == 0 { a.push(seq) } else { b.push(seq) }
    }
    let (_, first) = srv.get("/v1/events?limit=1", &admin).await;
    let day = first["events"][0]["occurred_at"].as_str().unwrap()[..10].to_owned();
    Rig {
        _d: d,
        _bucket_dir: bucket_dir,
        s3,
        srv,
        admin,
        a,
        b,
        day,
    }
}

async fn mint(srv: &TestServer, token: &str, body: Value) -> Value {
    let (s, b) = srv.post("/v1/orgs/acme/viewer-tokens", token, body).await;
    assert_eq!(s, 201, "{b}");
    assert!(b["token"].as_str().unwrap().starts_with("avt_"), "{b}");
    b
}

/// A client that keeps redirects and cookies to itself.
fn raw() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Opens a viewer link; returns the status, the body and the session cookie, if set.
async fn open(url: &str) -> (u16, String, Option<String>) {
    let r = raw().get(url).send().await.unwrap();
    let status = r.status().as_u16();
    let cookie = r
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, r.text().await.unwrap(), cookie)
}

fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

async fn page(srv: &TestServer, path: &str, cookie: &str) -> (u16, String) {
    let r = raw()
        .get(format!("{}{path}", srv.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn post_form(
    srv: &TestServer,
    path: &str,
    cookie: &str,
    form: &[(&str, &str)],
) -> (u16, String, Option<String>) {
    let r = raw()
        .post(format!("{}{path}", srv.base))
        .header("cookie", cookie)
        .form(form)
        .send()
        .await
        .unwrap();
    let loc = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    (r.status().as_u16(), r.text().await.unwrap(), loc)
}

/// Seqs listed on an events page, in order.
fn seqs(html: &str) -> Vec<u64> {
    html.split("data-seq=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().parse().unwrap())
        .collect()
}

/// Undoes the HTML escaping of an attribute value.
fn unescape(s: &str) -> String {
    s.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn csrf(html: &str) -> String {
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .map(unescape)
        .unwrap()
}

async fn session(srv: &TestServer, admin: &str, body: Value) -> String {
    let link = mint(srv, admin, body).await;
    let (s, _, cookie) = open(link["url"].as_str().unwrap()).await;
    assert_eq!(s, 200);
    cookie_pair(&cookie.unwrap())
}

fn own_events<'a>(events: &'a [Value], action: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["action"] == action).collect()
}

#[tokio::test]
async fn viewer_links_are_checked_and_minted_by_org_admins_only() {
    let r = rig().await;
    let srv = &r.srv;
    let viewer = srv.key("acme", "viewer").await;
    let (s, _) = srv
        .post(
            "/v1/orgs/acme/viewer-tokens",
            &viewer,
            json!({"actor_id": "u", "role": "viewer"}),
        )
        .await;
    assert_eq!(s, 403);
    srv.create_org("other").await;
    let other_admin = srv.key("other", "admin").await;
    let (s, _) = srv
        .post(
            "/v1/orgs/acme/viewer-tokens",
            &other_admin,
            json!({"actor_id": "u", "role": "viewer"}),
        )
        .await;
    assert_eq!(s, 404, "another org's admin must not learn acme exists");
    for (body, field) in [
        (json!({"role": "viewer"}), "actor_id"),
        (json!({"actor_id": "", "role": "viewer"}), "actor_id"),
        (json!({"actor_id": "u", "role": "owner"}), "role"),
        (
            json!({"actor_id": "u", "role": "viewer", "ttl_seconds": 0}),
            "ttl_seconds",
        ),
        (
            json!({"actor_id": "u", "role": "viewer", "ttl_seconds": 86401}),
            "ttl_seconds",
        ),
        (
            json!({"actor_id": "u", "role": "viewer", "scope_id": ""}),
            "scope_id",
        ),
        (
            json!({"actor_id": "u", "role": "viewer", "color": "red"}),
            "color",
        ),
    ] {
        let (s, b) = srv
            .post("/v1/orgs/acme/viewer-tokens", &r.admin, body.clone())
            .await;
        assert_eq!(s, 422, "{body} -> {b}");
        assert_eq!(b["error"]["details"][0]["field"], field, "{body} -> {b}");
    }
    let before = srv.all_events(&r.admin).await.len();
    let link = mint(
        srv,
        &r.admin,
        json!({"actor_id": "ada", "actor_email": "ada@example.com", "role": "admin", "ttl_seconds": 600}),
    )
    .await;
    assert!(
        link["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/ui/login?token=avt_", srv.base)),
        "{link}"
    );
    assert!(link["expires_at"].is_string());
    let events = srv.all_events(&r.admin).await;
    assert_eq!(
        events.len(),
        before + 1,
        "refused requests recorded nothing"
    );
    let minted = own_events(&events, "createViewerLink");
    assert_eq!(minted.len(), 1);
    assert_eq!(minted[0]["actor"]["type"], "API_KEY");
    assert_eq!(minted[0]["details"]["actor_id"], "ada");
    assert!(
        !minted[0]
            .to_string()
            .contains(link["token"].as_str().unwrap()),
        "the token itself is never logged"
    );
}

#[tokio::test]
async fn a_link_opens_once_and_its_session_ends_at_expiry() {
    let r = rig().await;
    let srv = &r.srv;
    let link = mint(
        srv,
        &r.admin,
        json!({"actor_id": "ada", "actor_email": "ada@example.com", "actor_name": "Ada", "role": "viewer", "ttl_seconds": 4}),
    )
    .await;
    let url = link["url"].as_str().unwrap();
    let (s, body, cookie) = open(url).await;
    assert_eq!(s, 200, "{body}");
    let set = cookie.unwrap();
    for attr in [
        "auditrail_session=",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/ui",
        "Max-Age=",
    ] {
        assert!(set.contains(attr), "{set} lacks {attr}");
    }
    assert!(
        !set.contains("Secure"),
        "no Secure flag over plain http: {set}"
    );
    let max_age: i64 = set
        .split("Max-Age=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=4).contains(&max_age), "{set}");
    let cookie = cookie_pair(&set);
    let (s, html) = page(srv, "/ui/events", &cookie).await;
    assert_eq!(s, 200, "{html}");
    assert_eq!(seqs(&html).len(), 50, "a full first page");
    // The link is spent.
    let (s, body, again) = open(url).await;
    assert_eq!(s, 401);
    assert!(body.contains("already been used"), "{body}");
    assert!(again.is_none());
    // A forged cookie is refused.
    let mut forged = cookie.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let (s, body) = page(srv, "/ui/events", &forged).await;
    assert_eq!(s, 401, "{body}");
    let (s, body) = page(srv, "/ui/events", "").await;
    assert_eq!(s, 401);
    assert!(body.contains("not signed in"), "{body}");
    // What the user did is in the org's log, as that user.
    let events = srv.all_events(&r.admin).await;
    let opened = own_events(&events, "openAuditPage");
    assert_eq!(opened.len(), 1);
    assert_eq!(
        opened[0]["actor"],
        json!({"id": "ada", "type": "USER", "role": "viewer", "email": "ada@example.com", "name": "Ada"})
    );
    let searched = own_events(&events, "searchAuditLog");
    assert_eq!(searched.len(), 1);
    assert_eq!(searched[0]["actor"]["id"], "ada");
    assert_eq!(searched[0]["details"]["results"], 50);
    // The session ends when the link would have.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let (s, body) = page(srv, "/ui/events", &cookie).await;
    assert_eq!(s, 401);
    assert!(body.contains("has ended"), "{body}");
    // An expired link, and a token that is not ours.
    let short = mint(
        srv,
        &r.admin,
        json!({"actor_id": "bob", "role": "viewer", "ttl_seconds": 1}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (s, body, c) = open(short["url"].as_str().unwrap()).await;
    assert_eq!(s, 401);
    assert!(body.contains("expired") && c.is_none(), "{body}");
    let (s, body, _) = open(&format!("{}/ui/login?token=avt_eyJ9.AAAA", srv.base)).await;
    assert_eq!(s, 401);
    assert!(body.contains("not valid"), "{body}");
}

#[tokio::test]
async fn forms_need_the_sessions_csrf_token() {
    let r = rig().await;
    let srv = &r.srv;
    let cookie = session(srv, &r.admin, json!({"actor_id": "ada", "role": "admin"})).await;
    let (s, html) = page(srv, "/ui/exports", &cookie).await;
    assert_eq!(s, 200, "{html}");
    let token = csrf(&html);
    let form = |csrf: &'static str| {
        vec![
            ("csrf", csrf),
            ("from", "2020-01-01"),
            ("to", "2099-12-31"),
            ("format", "csv"),
        ]
    };
    let (s, body, _) = post_form(srv, "/ui/exports", &cookie, &form("")).await;
    assert_eq!(s, 403, "{body}");
    let (s, _, _) = post_form(srv, "/ui/exports", &cookie, &form("bm90LXRoZS10b2tlbg")).await;
    assert_eq!(s, 403);
    // A token of another session does not fit this one.
    let other = session(srv, &r.admin, json!({"actor_id": "eve", "role": "admin"})).await;
    let (_, other_html) = page(srv, "/ui/exports", &other).await;
    let (s, _, _) = post_form(
        srv,
        "/ui/exports",
        &cookie,
        &[
            ("csrf", &csrf(&other_html)),
            ("from", "2020-01-01"),
            ("to", "2099-12-31"),
            ("format", "csv"),
        ],
    )
    .await;
    assert_eq!(s, 403);
    let (_, list) = srv.get("/v1/exports", &r.admin).await;
    assert_eq!(
        list["exports"].as_array().unwrap().len(),
        0,
        "refused forms created nothing"
    );
    // A bad range is shown on the form, naming the field, and creates nothing.
    let (s, body, _) = post_form(
        srv,
        "/ui/exports",
        &cookie,
        &[
            ("csrf", &token),
            ("from", "2026-12-01"),
            ("to", "2026-01-01"),
            ("format", "csv"),
        ],
    )
    .await;
    assert_eq!(s, 422, "{body}");
    assert!(body.contains("id=\"export-error\""), "{body}");
    let (s, body, _) = post_form(
        srv,
        "/ui/exports",
        &cookie,
        &[
            ("csrf", &token),
            ("from", &r.day),
            ("to", &r.day),
            ("format", "xlsx"),
        ],
    )
    .await;
    assert_eq!(s, 422, "{body}");
    assert!(body.contains("format"), "{body}");
    let (_, list) = srv.get("/v1/exports", &r.admin).await;
    assert_eq!(list["exports"].as_array().unwrap().len(), 0);
    let (s, _, loc) = post_form(
        srv,
        "/ui/exports",
        &cookie,
        &[
            ("csrf", &token),
            ("from", &r.day),
            ("to", &r.day),
            ("actor_id", "u-2"),
            ("format", "ndjson"),
        ],
    )
    .await;
    assert_eq!(s, 303);
    assert_eq!(loc.as_deref(), Some("/ui/exports"));
    let (_, list) = srv.get("/v1/exports", &r.admin).await;
    let exports = list["exports"].as_array().unwrap();
    assert_eq!(exports.len(), 1);
    assert_eq!(exports[0]["requester"]["id"], "ada");
    assert_eq!(exports[0]["requester"]["type"], "USER");
    assert_eq!(exports[0]["actor_id"], "u-2");
    assert!(
        exports[0]["to"].as_str().unwrap() > r.day.as_str(),
        "a plain end date includes that day: {}",
        exports[0]
    );
    // Signing out needs the token too, and ends the session for this browser.
    let (s, _, _) = post_form(srv, "/ui/logout", &cookie, &[("csrf", "x")]).await;
    assert_eq!(s, 403);
    let r2 = raw()
        .post(format!("{}/ui/logout", srv.base))
        .header("cookie", &cookie)
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r2.status(), 200);
    assert!(
        r2.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
}

#[tokio::test]
async fn viewers_and_scoped_viewers_see_only_what_they_may() {
    let r = rig().await;
    let srv = &r.srv;
    let viewer = session(srv, &r.admin, json!({"actor_id": "val", "role": "viewer"})).await;
    let (s, html) = page(srv, "/ui/events", &viewer).await;
    assert_eq!(s, 200);
    assert!(
        !html.contains("href=\"/ui/exports\""),
        "viewers get no Exports link"
    );
    for path in ["/ui/exports", "/ui/exports/rows", "/ui/destinations"] {
        let (s, body) = page(srv, path, &viewer).await;
        assert_eq!(s, 403, "{path}: {body}");
    }
    let (s, _, _) = post_form(
        srv,
        "/ui/exports",
        &viewer,
        &[("from", "2020-01-01"), ("to", "2021-01-01")],
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = page(srv, "/ui/integrity", &viewer).await;
    assert_eq!(s, 200);

    // Narrowed to proj-b: only proj-b's events, whatever the URL asks for.
    let scoped = session(
        srv,
        &r.admin,
        json!({"actor_id": "sam", "role": "viewer", "scope_id": "proj-b"}),
    )
    .await;
    let mut want = r.b.clone();
    want.reverse();
    for path in [
        "/ui/events",
        "/ui/events?scope_id=proj-a",
        "/ui/events?q=scope:proj-a",
    ] {
        let (s, html) = page(srv, path, &scoped).await;
        assert!(s == 200, "{path}: {html}");
        let got = seqs(&html);
        assert!(got.iter().all(|s| r.b.contains(s)), "{path}: {got:?}");
    }
    let (_, html) = page(srv, "/ui/events", &scoped).await;
    assert_eq!(seqs(&html), want);
    let (s, _) = page(srv, &format!("/ui/events/{}", r.a[0]), &scoped).await;
    assert_eq!(s, 404);
    let (s, _) = page(srv, &format!("/ui/events/{}/proof", r.a[0]), &scoped).await;
    assert_eq!(s, 404);
    let (s, _) = page(srv, &format!("/ui/events/{}", r.b[0]), &scoped).await;
    assert_eq!(s, 200);

    // A scoped admin exports only its scope and cannot touch org-wide delivery.
    let scoped_admin = session(
        srv,
        &r.admin,
        json!({"actor_id": "sue", "role": "admin", "scope_id": "proj-b"}),
    )
    .await;
    let (s, _) = page(srv, "/ui/destinations", &scoped_admin).await;
    assert_eq!(s, 403);
    let (_, html) = page(srv, "/ui/exports", &scoped_admin).await;
    let (s, _, _) = post_form(
        srv,
        "/ui/exports",
        &scoped_admin,
        &[
            ("csrf", &csrf(&html)),
            ("from", &r.day),
            ("to", &r.day),
            ("scope_id", "proj-a"),
            ("format", "csv"),
        ],
    )
    .await;
    assert_eq!(s, 303);
    let (_, list) = srv.get("/v1/exports", &r.admin).await;
    assert_eq!(list["exports"][0]["scope_id"], "proj-b");

    // An API key works too, as a Bearer token.
    let key = srv.key("acme", "viewer").await;
    let resp = raw()
        .get(format!("{}/ui/events", srv.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ingest = srv.key("acme", "ingest").await;
    let resp = raw()
        .get(format!("{}/ui/events", srv.base))
        .bearer_auth(&ingest)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

#[tokio::test]
async fn pages_are_private_and_filters_are_checked() {
    let r = rig().await;
    let srv = &r.srv;
    let cookie = session(srv, &r.admin, json!({"actor_id": "ada", "role": "admin"})).await;
    let resp = raw()
        .get(format!("{}/ui/events", srv.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let h = resp.headers();
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    let (s, html) = page(srv, "/ui/events?from=yesterday-ish", &cookie).await;
    assert_eq!(s, 422);
    assert!(
        html.contains("id=\"filter-error\"") && html.contains("from"),
        "{html}"
    );
    let (s, html) = page(srv, "/ui/events?actor_id=nobody", &cookie).await;
    assert_eq!(s, 200);
    assert!(html.contains("No events match these filters"), "{html}");
    let (s, html) = page(srv, "/ui/events?actor_id=u-2", &cookie).await;
    assert_eq!(s, 200);
    assert_eq!(seqs(&html).len(), 20);
    let (s, _) = page(srv, "/ui/events/999999", &cookie).await;
    assert_eq!(s, 404);
    let (s, _) = page(srv, "/ui/events/abc", &cookie).await;
    assert_eq!(s, 404);
    // Paging: 50 newest, then the rest, with no overlap.
    let (_, first) = page(srv, "/ui/events", &cookie).await;
    let next = unescape(
        first
            .split("id=\"older\" href=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap(),
    );
    let (_, second) = page(srv, &next, &cookie).await;
    let (a, b) = (seqs(&first), seqs(&second));
    assert_eq!(a.len(), 50);
    assert!(
        a.windows(2).all(|w| w[0] > w[1]) && b.iter().all(|s| *s < a[49]),
        "{a:?} {b:?}"
    );
    // The proof the page verifies with checks out here too.
    let seq = r.a[3];
    let (s, body) = page(srv, &format!("/ui/events/{seq}/proof"), &cookie).await;
    assert_eq!(s, 200);
    let p: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        p["server"],
        json!({"leaf": true, "inclusion": true, "signature": true})
    );
    let leaf =
        common::independent_leaf(&serde_json::from_str(p["body"].as_str().unwrap()).unwrap());
    use base64::Engine;
    assert_eq!(
        base64::engine::general_purpose::STANDARD.encode(leaf),
        p["leaf_hash"].as_str().unwrap()
    );
}

fn attr_ok(v: Option<String>) -> String {
    v.unwrap_or_default()
}

/// Presses Verify on an event page; returns the verdict (`data-verified`) and the text.
async fn verify(web: &Browser) -> (String, String) {
    web.click("#verify").await;
    web.wait_for("#verify-result[data-verified]", 15).await;
    let out = web
        .client
        .find(fantoccini::Locator::Css("#verify-result"))
        .await
        .unwrap();
    (
        attr_ok(out.attr("data-verified").await.unwrap()),
        out.text().await.unwrap(),
    )
}

/// Rewrites the stored body of the event with resource id `tamper-me` behind the
/// server's back; returns its seq.
fn tamper(r: &Rig) -> u64 {
    let db = rusqlite::Connection::open(r.srv.dir.join("auditrail.db")).unwrap();
    let n = db
        .execute(
            "UPDATE events SET body = replace(body, 'tamper-me', 'tampered!') WHERE body LIKE '%tamper-me%'",
            [],
        )
        .unwrap();
    assert_eq!(n, 1);
    r.b[3] // the 8th event
}

#[tokio::test]
async fn the_audit_page_in_chromium() {
    if !browser::available() {
        return;
    }
    let r = rig().await;
    let srv = &r.srv;
    let web = Browser::start().await;

    // An admin opens the link the product minted.
    let link = mint(
        srv,
        &r.admin,
        json!({"actor_id": "ada", "actor_name": "Ada Lovelace", "actor_email": "ada@example.com", "role": "admin", "ttl_seconds": 900}),
    )
    .await;
    web.goto(link["url"].as_str().unwrap()).await;
    web.wait_for("table#events", 10).await;
    assert_eq!(web.count("#events tbody tr").await, 50);
    assert!(web.text(".me .who").await.contains("Ada Lovelace"));
    let ts = web
        .client
        .find(fantoccini::Locator::Css("#events time.ts"))
        .await
        .unwrap();
    let (shown, iso, title) = (
        ts.text().await.unwrap(),
        attr_ok(ts.attr("datetime").await.unwrap()),
        attr_ok(ts.attr("title").await.unwrap()),
    );
    assert!(
        shown != iso && title.ends_with("UTC"),
        "local time with UTC on hover: {shown} / {title}"
    );
    web.screenshot("events").await;

    // Filter by user.
    web.fill("#f-actor", "u-2").await;
    web.click("form.filters button[type=submit]").await;
    web.wait_url("actor_id=u-2", 10).await;
    web.wait_for("#events tbody tr td.actor[data-actor=\"u-2\"]", 10)
        .await;
    assert_eq!(web.count("#events tbody tr").await, 20);
    assert_eq!(web.count("#events td.actor[data-actor=\"u-2\"]").await, 20);
    web.screenshot("events-filtered").await;

    // Open one and verify it in the browser.
    web.click("#events tbody tr:first-child a.action").await;
    web.wait_for("#verify", 10).await;
    assert!(web.text("#event-json").await.contains("\"u-2\""));
    let (verdict, text) = verify(&web).await;
    assert_eq!(verdict, "true", "{text}");
    assert!(text.contains("Verified in your browser"));
    web.screenshot("event-verified").await;

    // Rewrite one stored event behind the server's back: the page must say so.
    let tampered = tamper(&r);
    web.goto(&format!("{}/ui/events/{tampered}", srv.base))
        .await;
    web.wait_for("#verify", 10).await;
    assert!(web.text("#event-json").await.contains("tampered!"));
    let (verdict, text) = verify(&web).await;
    assert_eq!(verdict, "false");
    assert!(text.contains("FAILED"));
    web.screenshot("event-tampered").await;

    // Request an export and download it when it is done (the table updates itself).
    web.goto(&format!("{}/ui/exports", srv.base)).await;
    web.wait_for("#request-export", 10).await;
    web.fill("#x-actor", "u-3").await;
    web.click("#request-export").await;
    web.wait_for("#export-rows tr[data-status=\"succeeded\"]", 30)
        .await;
    assert_eq!(
        web.text("#export-rows tr td[data-label=\"Rows\"]").await,
        "20",
        "20 rows of u-3"
    );
    web.screenshot("exports").await;
    let href = attr_ok(
        web.client
            .find(fantoccini::Locator::Css("#export-rows a.download"))
            .await
            .unwrap()
            .attr("href")
            .await
            .unwrap(),
    );
    let got = web
        .client
        .execute_async(
            "const [href, done] = arguments; fetch(href, {credentials: 'same-origin'}).then(async r => done([r.status, await r.text()]));",
            vec![json!(href)],
        )
        .await
        .unwrap();
    assert_eq!(got[0], 200, "{got}");
    let csv = got[1].as_str().unwrap();
    assert!(csv.starts_with("Timestamp,Action,Resource_ID"), "{csv}");
    assert_eq!(csv.lines().count(), 21, "{csv}");
    let events = srv.all_events(&r.admin).await;
    let dl = own_events(&events, "downloadExport");
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0]["actor"]["id"], "ada");
    assert_eq!(dl[0]["details"]["via"], "audit_page");

    // Destinations: add the bucket, run the permission test against the S3 server.
    web.goto(&format!("{}/ui/destinations", srv.base)).await;
    web.wait_for("#empty", 10).await;
    for (css, v) in [
        ("#d-name", "main"),
        ("#d-bucket", BUCKET),
        ("#d-prefix", "logs"),
        ("#d-region", "us-east-1"),
        ("#d-endpoint", &r.s3.endpoint()),
        ("#d-akid", AK),
        ("#d-secret", SK),
        ("#d-mbs", "1"),
    ] {
        web.fill(css, v).await;
    }
    web.click("#save-destination").await;
    web.wait_for("#dest-main button.test-permissions", 10).await;
    web.click("#dest-main button.test-permissions").await;
    web.wait_for("#test-results", 30).await;
    let rows = web.count("#test-results tbody tr").await;
    assert!(rows >= 3, "{rows}");
    assert_eq!(web.count("#test-results tbody tr.ok").await, rows);
    assert!(
        web.text("#test-results p.ok")
            .await
            .contains("All permissions work")
    );
    assert!(web.text("#policy-main").await.contains(PRINCIPAL));
    web.screenshot("destinations").await;
    r.s3.faults().deny("PutObject");
    web.click("#dest-main button.test-permissions").await;
    web.wait_for("#test-results p.bad", 30).await;
    assert!(web.count("#test-results tbody tr.bad").await >= 1);
    r.s3.faults().allow_all();

    // A role auditrail assumes: the org's external id is on the page before the role
    // exists, and the role's trust and permissions policies are there to copy.
    let (_, listed) = srv.get("/v1/destinations", &r.admin).await;
    let external_id = listed["external_id"].as_str().unwrap().to_owned();
    web.goto(&format!("{}/ui/destinations", srv.base)).await;
    assert!(web.text("#org-external-id").await.contains(&external_id));
    for (css, v) in [
        ("#d-name", "role"),
        ("#d-bucket", BUCKET),
        ("#d-endpoint", &r.s3.endpoint()),
        (
            "#d-role",
            "arn:aws:iam::111122223333:role/auditrail-delivery",
        ),
    ] {
        web.fill(css, v).await;
    }
    web.click("#save-destination").await;
    web.wait_for("#dest-role .external-id", 10).await;
    assert_eq!(web.text("#dest-role .external-id").await, external_id);
    let trust = web.text("#trust-role").await;
    assert!(
        trust.contains(&external_id)
            && trust.contains(PRINCIPAL)
            && trust.contains("sts:ExternalId"),
        "{trust}"
    );
    assert!(
        web.text("#permissions-role")
            .await
            .contains(&format!("arn:aws:s3:::{BUCKET}/*"))
    );
    assert_eq!(
        web.count("#dest-role button[data-copy=\"trust-role\"]")
            .await,
        1
    );
    assert_eq!(
        web.count("#dest-role button[data-copy=\"permissions-role\"]")
            .await,
        1
    );
    web.screenshot("destinations-role").await;
    let (s, _) = srv
        .call("DELETE", "/v1/destinations/role", &r.admin, None)
        .await;
    assert_eq!(s, 204);

    // A push stream to Splunk's HTTP Event Collector, from the same form: the receiver
    // (which enforces HEC's request format) gets the org's events; the card shows the
    // receiver, never the token, and offers no bucket test.
    let hec = common::receivers::Receiver::start(common::receivers::Kind::Splunk, "hec-token-1");
    web.goto(&format!("{}/ui/destinations", srv.base)).await;
    web.client
        .execute(
            "document.querySelector('#d-kind').value = 'splunk_hec'; document.querySelector('#d-push-format').value = 'ocsf'",
            vec![],
        )
        .await
        .unwrap();
    for (css, v) in [
        ("#d-name", "hec"),
        ("#d-url", hec.url().as_str()),
        ("#d-push-secret", "hec-token-1"),
        ("#d-index", "audit"),
        ("#d-mbs", "1"),
    ] {
        web.fill(css, v).await;
    }
    web.click("#save-destination").await;
    web.wait_for("#dest-hec .receiver-url", 10).await;
    assert!(
        web.text("#dest-hec .receiver-url")
            .await
            .ends_with("/services/collector/event")
    );
    assert_eq!(web.count("#dest-hec button.test-permissions").await, 0);
    assert_eq!(
        web.text("#dest-hec .entries").await,
        "OCSF API Activity records"
    );
    assert!(!web.source().await.contains("hec-token-1"));
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while hec.seqs().is_empty() {
        assert!(
            std::time::Instant::now() < until,
            "nothing reached the HEC receiver"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(hec.violations(), Vec::<String>::new());
    web.screenshot("destinations-splunk").await;
    let (s, _) = srv
        .call("DELETE", "/v1/destinations/hec", &r.admin, None)
        .await;
    assert_eq!(s, 204);

    // Amazon Security Lake, from the same form: OCSF Parquet lands in the custom
    // source's layout in the bucket.
    web.goto(&format!("{}/ui/destinations", srv.base)).await;
    web.client
        .execute(
            "document.querySelector('#d-layout').value = 'security_lake'",
            vec![],
        )
        .await
        .unwrap();
    for (css, v) in [
        ("#d-name", "lake"),
        ("#d-bucket", BUCKET),
        ("#d-endpoint", &r.s3.endpoint()),
        ("#d-akid", AK),
        ("#d-secret", SK),
        ("#d-source-name", "auditrail"),
        ("#d-account", "123456789012"),
        ("#d-mbs", "1"),
    ] {
        web.fill(css, v).await;
    }
    web.click("#save-destination").await;
    web.wait_for("#dest-lake .layout", 10).await;
    assert!(
        web.text("#dest-lake .layout")
            .await
            .contains("ext/auditrail/region=us-east-1/accountId=123456789012/")
    );
    let st = common::wait_for_destination(&srv.http, &srv.base, &r.admin, "lake", 30, |st| {
        st["delivered_seq"].as_u64() > Some(0)
    })
    .await;
    assert_eq!(
        (st["layout"].as_str(), st["format"].as_str()),
        (Some("security_lake"), Some("ocsf_parquet"))
    );
    let bucket = common::s3_client(&r.s3.endpoint(), BUCKET, AK, SK);
    let listed: Vec<object_store::ObjectMeta> = futures_util::TryStreamExt::try_collect(
        object_store::ObjectStore::list(&bucket, Some(&object_store::path::Path::from("ext"))),
    )
    .await
    .unwrap();
    let lake_files: Vec<String> = listed
        .iter()
        .map(|m| m.location.to_string())
        .filter(|k| {
            k.starts_with("ext/auditrail/region=us-east-1/accountId=123456789012/eventDay=")
                && k.ends_with(".ocsf.parquet")
        })
        .collect();
    assert!(
        !lake_files.is_empty(),
        "no Parquet in the Security Lake layout"
    );
    web.screenshot("destinations-security-lake").await;
    let (s, _) = srv
        .call("DELETE", "/v1/destinations/lake", &r.admin, None)
        .await;
    assert_eq!(s, 204);

    // Google Cloud Storage and Azure, from the same form: the key is sealed and never
    // shown again, the card names the store, and there is no S3 bucket policy to paste.
    for (kind, name, key, shown) in [
        (
            "gcs",
            "gcs",
            r#"{"type": "service_account", "client_email": "ui@test.iam.gserviceaccount.com", "private_key": "-----BEGIN PRIVATE KEY-----\nui-private-key-text\n-----END PRIVATE KEY-----\n", "private_key_id": "k1"}"#,
            "gs://audit/logs",
        ),
        (
            "azure_blob",
            "azure",
            "dWktYXp1cmUta2V5LXRleHQ=",
            "az://audit/logs",
        ),
    ] {
        web.goto(&format!("{}/ui/destinations", srv.base)).await;
        web.client
            .execute(
                &format!("document.querySelector('#d-kind').value = '{kind}'"),
                vec![],
            )
            .await
            .unwrap();
        let mut fields = vec![
            ("#d-name", name),
            ("#d-bucket", BUCKET),
            ("#d-prefix", "logs"),
            ("#d-endpoint", "http://127.0.0.1:9"),
            ("#d-store-key", key),
        ];
        if kind == "azure_blob" {
            fields.push(("#d-account-name", "uiaccount"));
        }
        for (css, v) in fields {
            web.fill(css, v).await;
        }
        web.click("#save-destination").await;
        let card = format!("#dest-{name}");
        web.wait_for(&format!("{card} .store-url"), 10).await;
        assert_eq!(web.text(&format!("{card} .store-url")).await, shown);
        assert_eq!(web.count(&format!("{card} details.policy")).await, 0);
        let page = web.source().await;
        assert!(
            !page.contains("ui-private-key-text") && !page.contains("dWktYXp1cmUta2V5LXRleHQ="),
            "the key is never shown"
        );
        let (_, st) = srv.get(&format!("/v1/destinations/{name}"), &r.admin).await;
        assert_eq!(st["kind"], kind, "{st}");
        let (s, _) = srv
            .call(
                "DELETE",
                &format!("/v1/destinations/{name}"),
                &r.admin,
                None,
            )
            .await;
        assert_eq!(s, 204);
    }

    // Integrity: the public key the API serves.
    web.goto(&format!("{}/ui/integrity", srv.base)).await;
    web.wait_for("#public-key", 10).await;
    let (_, key) = srv.get("/v1/public-key", &r.admin).await;
    assert_eq!(
        web.text("#public-key").await.trim(),
        key.as_str().unwrap().trim()
    );
    web.screenshot("integrity").await;

    // Keyboard: the first Tab lands on the skip link; Enter on an event's link opens it.
    web.goto(&format!("{}/ui/events", srv.base)).await;
    web.wait_for("table#events", 10).await;
    let body = web
        .client
        .find(fantoccini::Locator::Css("body"))
        .await
        .unwrap();
    body.send_keys("\u{E004}").await.unwrap();
    let focused = web
        .client
        .execute(
            "return document.activeElement.className + ' ' + document.activeElement.getAttribute('href')",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(focused, "skip #main");
    web.client
        .execute("document.querySelector('#events a.action').focus()", vec![])
        .await
        .unwrap();
    web.client
        .active_element()
        .await
        .unwrap()
        .send_keys("\u{E007}")
        .await
        .unwrap();
    web.wait_for("#verify", 10).await;

    // On a phone the table becomes labelled cards.
    web.set_size(390, 844).await;
    web.goto(&format!("{}/ui/events", srv.base)).await;
    web.wait_for("table#events", 10).await;
    let display = web
        .client
        .execute(
            "return getComputedStyle(document.querySelector('#events thead')).position + ' ' + getComputedStyle(document.querySelector('#events tr')).display",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(display, "absolute block", "header hidden, one card per row");
    web.screenshot("events-phone").await;
    web.set_size(1280, 900).await;

    // A viewer does not get the admin pages.
    web.client.delete_all_cookies().await.unwrap();
    let viewer = mint(srv, &r.admin, json!({"actor_id": "val", "role": "viewer"})).await;
    web.goto(viewer["url"].as_str().unwrap()).await;
    web.wait_for("table#events", 10).await;
    assert_eq!(web.count("nav a[href=\"/ui/exports\"]").await, 0);
    assert_eq!(web.count("nav a[href=\"/ui/destinations\"]").await, 0);
    web.goto(&format!("{}/ui/exports", srv.base)).await;
    web.wait_for("main.message[data-status=\"403\"]", 10).await;
    web.screenshot("viewer-forbidden").await;

    // A scoped viewer sees only its scope.
    web.client.delete_all_cookies().await.unwrap();
    let scoped = mint(
        srv,
        &r.admin,
        json!({"actor_id": "sam", "role": "viewer", "scope_id": "proj-b"}),
    )
    .await;
    web.goto(scoped["url"].as_str().unwrap()).await;
    web.wait_for("table#events", 10).await;
    let n = web.count("#events tbody tr").await;
    assert_eq!(n, r.b.len());
    assert_eq!(web.count("#events td.scope").await, n);
    for td in web
        .client
        .find_all(fantoccini::Locator::Css("#events td.scope"))
        .await
        .unwrap()
    {
        assert_eq!(td.text().await.unwrap(), "proj-b");
    }
    assert!(web.text(".badge.scope").await.contains("proj-b"));
    web.screenshot("events-scoped").await;

    // Live mode: the scope's new events appear at the top as they are acked, and only
    // those; the stream's opening is audited.
    web.click("#live").await;
    web.wait_for("#live[aria-pressed=\"true\"]", 10).await;
    let ingest = srv.key("acme", "ingest").await;
    let mut seqs = Vec::new();
    for scope in ["proj-a", "proj-b"] {
        let (s, b) = srv
            .post(
                "/v1/events",
                &ingest,
                json!({"action": "addProject", "actor": {"id": "u-9", "type": "USER"},
                       "resource": {"type": "PROJECT", "id": format!("live-{scope}")},
                       "scope": {"id": scope, "type": "PROJECT"}}),
            )
            .await;
        assert_eq!(s, 200, "{b}");
        seqs.push(b["accepted"][0]["seq"].as_u64().unwrap());
    }
    web.wait_for(&format!("#events tbody tr[data-seq=\"{}\"]", seqs[1]), 10)
        .await;
    let first = web
        .client
        .execute(
            "return document.querySelector('#events tbody tr').dataset.seq",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(first, json!(seqs[1].to_string()), "the new event is on top");
    assert_eq!(
        web.count(&format!("#events tbody tr[data-seq=\"{}\"]", seqs[0]))
            .await,
        0,
        "another scope's event never shows"
    );
    assert_eq!(web.count("#events tbody tr").await, n + 1);
    assert!(web.text("#live-status").await.starts_with("Live"));
    web.screenshot("events-live").await;
    web.click("#live").await;
    web.wait_for("#live[aria-pressed=\"false\"]", 10).await;
    let tails: Vec<Value> = srv
        .all_events(&r.admin)
        .await
        .into_iter()
        .filter(|e| e["action"] == "tailAuditLog")
        .collect();
    assert_eq!(tails.len(), 1, "{tails:?}");
    assert_eq!(tails[0]["actor"]["id"], "sam");
    assert_eq!(tails[0]["details"]["filters"]["scope_id"], "proj-b");

    // A reused link and an expired one are refused.
    web.client.delete_all_cookies().await.unwrap();
    web.goto(link["url"].as_str().unwrap()).await;
    web.wait_for("main.message[data-status=\"401\"]", 10).await;
    assert!(web.text("main.message").await.contains("already been used"));
    let short = mint(
        srv,
        &r.admin,
        json!({"actor_id": "bob", "role": "viewer", "ttl_seconds": 1}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    web.goto(short["url"].as_str().unwrap()).await;
    web.wait_for("main.message[data-status=\"401\"]", 10).await;
    assert!(web.text("main.message").await.contains("expired"));
    web.screenshot("link-expired").await;
}

/// Where the page is not a secure context (plain HTTP to a host other than localhost),
/// browsers offer no WebCrypto: Verify shows the server's own check instead, and says so.
#[tokio::test]
async fn verify_falls_back_to_the_servers_check_without_webcrypto() {
    if !browser::available() {
        return;
    }
    let r = rig().await;
    let srv = &r.srv;
    let web = Browser::start_with(&["--host-resolver-rules=MAP audit.example 127.0.0.1"]).await;
    let link = mint(srv, &r.admin, json!({"actor_id": "ada", "role": "viewer"})).await;
    let url = link["url"]
        .as_str()
        .unwrap()
        .replace("http://127.0.0.1:", "http://audit.example:");
    web.goto(&url).await;
    web.wait_for("table#events", 10).await;
    let secure = web
        .client
        .execute("return window.isSecureContext", vec![])
        .await
        .unwrap();
    assert_eq!(secure, false, "the test needs an insecure context");
    let base = url.split("/ui/").next().unwrap().to_owned();
    web.goto(&format!("{base}/ui/events/{}", r.a[2])).await;
    web.wait_for("#verify", 10).await;
    let (verdict, text) = verify(&web).await;
    assert_eq!(verdict, "true");
    assert!(text.contains("Verified by the server"), "{text}");
    // An event altered behind the server's back fails the server's check too.
    let tampered = tamper(&r);
    web.goto(&format!("{base}/ui/events/{tampered}")).await;
    web.wait_for("#verify", 10).await;
    let (verdict, text) = verify(&web).await;
    assert_eq!(verdict, "false");
    assert!(text.contains("FAILED by the server"));
}
