//! Audit page benchmark: a real `auditrail serve` over N events (default 1,000,000) in
//! one org, and a viewer session opened from a minted link. Each page is requested R
//! times one after another (default 50, after one warm-up); p50, p99 and max of the
//! whole request as the browser would see it (server-side rendering included, and the
//! `searchAuditLog` / `viewAuditEvent` event each view appends, fsync included).
//!
//! Beside it, in the same run: the JSON API's first page (`GET /v1/events?limit=50`), and
//! the peer, SQLite answering the same first-page queries from a flat table of the same
//! events with an index on each filtered column (query and fetch, in process, no HTTP).
//!
//! The table is measured twice: as loaded, and after `auditrail seal`.
//!
//! `cargo bench -p auditrail --bench ui` (env BENCH_UI_EVENTS, BENCH_UI_REPEAT).
#![expect(clippy::unwrap_used, reason = "a benchmark: a panic is a failed run")]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};

#[path = "../tests/common/process.rs"]
mod process;
#[path = "support.rs"]
mod support;

use support::{env_u64, load, pct, run};

const ADMIN: &str = "bench-admin-token";

async fn timed(
    http: &reqwest::Client,
    url: &str,
    auth: (&str, &str),
    repeat: u64,
) -> (f64, f64, f64) {
    let once = || async {
        let t = Instant::now();
        let r = http.get(url).header(auth.0, auth.1).send().await.unwrap();
        let status = r.status();
        let body = r.bytes().await.unwrap();
        assert!(
            status.is_success(),
            "{url}: {status} {}",
            String::from_utf8_lossy(&body)
        );
        t.elapsed().as_secs_f64() * 1000.0
    };
    once().await;
    let mut ms = Vec::new();
    for _ in 0..repeat {
        ms.push(once().await);
    }
    let max = ms.iter().cloned().fold(0.0, f64::max);
    (pct(&mut ms, 0.5), pct(&mut ms, 0.99), max)
}

const SQLITE_LOAD: &str = r#"
import sys, sqlite3, json
src, db = sys.argv[1], sys.argv[2]
c = sqlite3.connect(db)
c.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, actor_id TEXT, action TEXT, body TEXT)")
c.executemany("INSERT INTO events VALUES (?,?,?,?)",
  ((i + 1, json.loads(l)["actor"]["id"], json.loads(l)["action"], l) for i, l in enumerate(open(src))))
c.execute("CREATE INDEX events_actor ON events (actor_id, seq)")
c.execute("CREATE INDEX events_action ON events (action, seq)")
c.commit()
"#;

/// p50 and p99 milliseconds of `sql` on `db` through SQLite (Python's sqlite3 module:
/// the same C library, timed around each query including fetching the rows).
const SQLITE_TIME: &str = r#"
import sys, sqlite3, time
db, sql, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = sqlite3.connect(db)
c.execute(sql).fetchall()
ms = []
for _ in range(n):
    t = time.perf_counter(); c.execute(sql).fetchall(); ms.append((time.perf_counter() - t) * 1000)
ms.sort()
print(ms[len(ms) // 2], ms[min(len(ms) - 1, round((len(ms) - 1) * 0.99))])
"#;

fn sqlite_ms(db: &Path, sql: &str, repeat: u64) -> (f64, f64) {
    let out = Command::new("python3")
        .args(["-c", SQLITE_TIME])
        .arg(db)
        .arg(sql)
        .arg(repeat.to_string())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut v = text.split_whitespace().map(|x| x.parse::<f64>().unwrap());
    (v.next().unwrap(), v.next().unwrap())
}

#[tokio::main]
async fn main() {
    let n = env_u64("BENCH_UI_EVENTS", 1_000_000);
    let repeat = env_u64("BENCH_UI_REPEAT", 50);
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let file = work.path().join("events.ndjson");
    support::write_ndjson(&file, n);
    let t = Instant::now();
    load(&data, &file);
    println!("{n} events loaded in {:.1} s", t.elapsed().as_secs_f64());
    let key = ["keys", "create", "--org", "acme", "--role", "admin"];
    let key: Value = serde_json::from_str(&run(&data, &key)).unwrap();
    let key = key["token"].as_str().unwrap().to_owned();
    // Once as loaded, then again after `auditrail seal` (all but the newest `seal_keep_open` events
    // in sealed frames): the detail, the proof and the oldest-first searches read frames.
    for phase in ["open", "sealed"] {
        if phase == "sealed" {
            let t = Instant::now();
            print!("{}", run(&data, &["seal"]));
            println!("sealed in {:.1} s", t.elapsed().as_secs_f64());
        }
        let srv = process::serve(ADMIN, |c| {
            c.arg("--data-dir").arg(&data);
            if phase == "open" {
                // Nothing sealed in the background while the open log is measured.
                c.args(["--seal-keep-open", "1099511627776"]);
            }
        });
        let base = srv.base.clone();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let link: Value = http
            .post(format!("{base}/v1/orgs/acme/viewer-tokens"))
            .bearer_auth(&key)
            .json(&json!({"actor_id": "bench", "role": "admin", "ttl_seconds": 3600}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let r = http
            .get(link["url"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        let cookie = r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let cookie = ("cookie", cookie.as_str());
        let bearer = format!("Bearer {key}");
        let api = ("authorization", bearer.as_str());
        let mid = n / 2;
        println!(
            "{phase}: page (R={repeat} sequential requests)              p50 ms   p99 ms   max ms"
        );
        for (label, path, auth) in [
            (
                "/ui/events (first page, newest 50)",
                "/ui/events".to_owned(),
                cookie,
            ),
            (
                "/ui/events?actor_id=u-7",
                "/ui/events?actor_id=u-7".to_owned(),
                cookie,
            ),
            (
                "/ui/events?action=addPipeline",
                "/ui/events?action=addPipeline".to_owned(),
                cookie,
            ),
            (
                "/ui/events?q=actor:u-7 action:addProject",
                "/ui/events?q=actor%3Au-7+action%3AaddProject".to_owned(),
                cookie,
            ),
            (
                "/ui/events/{seq} (detail)",
                format!("/ui/events/{mid}"),
                cookie,
            ),
            (
                "/ui/events/{seq}/proof (verify)",
                format!("/ui/events/{mid}/proof"),
                cookie,
            ),
            ("/ui/exports", "/ui/exports".to_owned(), cookie),
            ("/ui/integrity", "/ui/integrity".to_owned(), cookie),
            (
                "API: /v1/events?limit=50",
                "/v1/events?limit=50".to_owned(),
                api,
            ),
            (
                "API: /v1/events?limit=50&actor_id=u-7",
                "/v1/events?limit=50&actor_id=u-7".to_owned(),
                api,
            ),
            (
                "API: oldest 50 of actor u-7 (order=asc)",
                "/v1/events?limit=50&actor_id=u-7&order=asc".to_owned(),
                api,
            ),
            (
                "API: oldest 50 with q=\"project 1\" (order=asc)",
                "/v1/events?limit=50&q=%22project+1%22&order=asc".to_owned(),
                api,
            ),
        ] {
            let (p50, p99, max) = timed(&http, &format!("{base}{path}"), auth, repeat).await;
            println!("{label:<56} {p50:>7.2}  {p99:>7.2}  {max:>7.2}");
        }
        drop(srv);
    }

    // The peer: the same first pages from a flat, indexed SQLite table.
    let db = work.path().join("peer.db");
    let loaded = Command::new("python3")
        .args(["-c", SQLITE_LOAD])
        .arg(&file)
        .arg(&db)
        .status()
        .is_ok_and(|s| s.success());
    if loaded {
        for (label, sql) in [
            (
                "newest 50",
                "SELECT body FROM events ORDER BY seq DESC LIMIT 50",
            ),
            (
                "newest 50 of actor u-7",
                "SELECT body FROM events WHERE actor_id = 'u-7' ORDER BY seq DESC LIMIT 50",
            ),
            (
                "newest 50 of addPipeline",
                "SELECT body FROM events WHERE action = 'addPipeline' ORDER BY seq DESC LIMIT 50",
            ),
        ] {
            let (p50, p99) = sqlite_ms(&db, sql, repeat);
            println!(
                "peer: SQLite, flat indexed table, {label:<24} {p50:>7.2}  {p99:>7.2}  (query and fetch, in process)"
            );
        }
    } else {
        println!("python3: not installed");
    }
}
