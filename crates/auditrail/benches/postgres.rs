//! PostgreSQL benchmark: durable HTTP batch ingest through one and two `auditrail serve`
//! nodes, beside PostgreSQL `COPY` of the same events into an equivalent table (same
//! columns, same partitioning, same indexes) in the same run; then search latency for a
//! 7-day range filtered by actor over a large log; then retention of a month of events
//! (purge and reclaim, which drops the month's partition) beside the row-by-row ways of
//! doing it (`DELETE`, and `UPDATE` to clear the bodies) on copies of the same rows.
//!
//! `cargo bench -p auditrail --bench postgres`; env `AUDITRAIL_BENCH_DATABASE_URL`
//! (default `AUDITRAIL_TEST_DATABASE_URL`, else postgres://postgres@127.0.0.1:5432/test),
//! `BENCH_EVENTS` (ingest, default 200000), `BENCH_CLIENTS` (concurrent HTTP clients,
//! default 8), `BENCH_SEARCH_EVENTS` (default 1000000; 0 skips the search part),
//! `BENCH_RETENTION_EVENTS` (default 500000; 0 skips the retention part).
#![expect(clippy::unwrap_used, reason = "a benchmark: a panic is a failed run")]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditrail_store::postgres::testdb::TestDb;
use futures_util::SinkExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_postgres::NoTls;

#[path = "../tests/common/process.rs"]
mod process;
#[path = "support.rs"]
mod support;
use process::Serve;
use support::{env_u64, event};

const ADMIN: &str = "bench-admin-token";
const BATCH: usize = 1000;

fn node(dir: &Path, name: &str, url: &str) -> Serve {
    process::serve(ADMIN, |c| {
        c.arg("--data-dir")
            .arg(dir.join(name))
            .args(["--database-url", url])
            .arg("--signing-key-file")
            .arg(dir.join("signing.key"))
            .arg("--secret-key-file")
            .arg(dir.join("secret.key"));
    })
}

/// Creates org `id` and returns an admin key of it.
async fn org_token(http: &reqwest::Client, base: &str, id: &str) -> String {
    let r = http
        .post(format!("{base}/v1/orgs"))
        .bearer_auth(ADMIN)
        .json(&json!({ "id": id }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http
        .post(format!("{base}/v1/orgs/{id}/keys"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "bench", "role": "admin"}))
        .send()
        .await
        .unwrap();
    let b: Value = r.json().await.unwrap();
    b["token"].as_str().unwrap().to_owned()
}

/// Sends `bodies` (each a batch) with `clients` concurrent clients spread over `bases`,
/// batch `i` to the org of `tokens[i % tokens.len()]`; returns events per second.
async fn http_ingest(
    bases: &[String],
    tokens: &[String],
    bodies: Arc<Vec<String>>,
    clients: usize,
) -> f64 {
    let http = reqwest::Client::new();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, tokens, bodies, next) =
            (http.clone(), tokens.to_vec(), bodies.clone(), next.clone());
        let base = bases[c % bases.len()].clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let r = http
                    .post(format!("{base}/v1/events"))
                    .bearer_auth(&tokens[i % tokens.len()])
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (bodies.len() * BATCH) as f64 / start.elapsed().as_secs_f64()
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(conn);
    c
}

/// COPY of the same events, in `BATCH`-row transactions like the HTTP batches, into a
/// table shaped like auditrail's `events` (partitioned by month, the same indexes).
/// Returns events per second with one connection and with eight.
async fn copy_peer(url: &str, events: &[Value]) -> (f64, f64) {
    let c = connect(url).await;
    c.batch_execute(
        "CREATE TABLE peer (org_num BIGINT NOT NULL, seq BIGINT NOT NULL, occurred_us BIGINT NOT NULL, received_ms BIGINT NOT NULL,
            action TEXT NOT NULL, actor_id TEXT, resource_type TEXT, resource_id TEXT, scope_id TEXT, leaf BYTEA NOT NULL, body TEXT NOT NULL,
            PRIMARY KEY (org_num, seq, received_ms)) PARTITION BY RANGE (received_ms);
         CREATE TABLE peer_now PARTITION OF peer FOR VALUES FROM (0) TO (9000000000000);
         CREATE INDEX ON peer (org_num, actor_id, seq);
         CREATE INDEX ON peer (org_num, action, seq);
         CREATE INDEX ON peer (org_num, resource_id, seq);
         CREATE INDEX ON peer (org_num, scope_id, seq);
         CREATE INDEX ON peer (org_num, occurred_us);",
    )
    .await
    .unwrap();
    let now_ms = chrono::Utc::now().timestamp_millis();
    let esc = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('\t', "\\t")
            .replace('\n', "\\n")
    };
    let rows: Vec<String> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let body = e.to_string();
            let leaf = Sha256::digest(body.as_bytes());
            format!(
                "1\t{}\t{}\t{now_ms}\t{}\t{}\tPROJECT\t{}\t{}\t\\\\x{}\t{}\n",
                i + 1,
                now_ms * 1000,
                esc(e["action"].as_str().unwrap()),
                esc(e["actor"]["id"].as_str().unwrap()),
                esc(e["resource"]["id"].as_str().unwrap()),
                esc(e["scope"]["id"].as_str().unwrap()),
                hex::encode(leaf),
                esc(&body)
            )
        })
        .collect();
    drop(c);
    let rows = Arc::new(rows);
    let mut rates = Vec::new();
    for conns in [1usize, 8] {
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let (rows, next, url) = (rows.clone(), next.clone(), url.to_owned());
            tasks.push(tokio::spawn(async move {
                let mut c = connect(&url).await;
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(chunk) = rows.chunks(BATCH).nth(i) else {
                        break;
                    };
                    let tx = c.transaction().await.unwrap();
                    let sink = tx
                        .copy_in::<_, bytes::Bytes>("COPY peer FROM STDIN")
                        .await
                        .unwrap();
                    futures_util::pin_mut!(sink);
                    sink.send(bytes::Bytes::from(chunk.concat())).await.unwrap();
                    sink.as_mut().finish().await.unwrap();
                    tx.commit().await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        rates.push(rows.len() as f64 / start.elapsed().as_secs_f64());
        connect(url)
            .await
            .batch_execute("TRUNCATE peer")
            .await
            .unwrap();
    }
    (rates[0], rates[1])
}

fn bodies(events: &[Value]) -> Arc<Vec<String>> {
    Arc::new(
        events
            .chunks(BATCH)
            .map(|c| json!({ "events": c }).to_string())
            .collect(),
    )
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() {
    let server = std::env::var("AUDITRAIL_BENCH_DATABASE_URL")
        .or_else(|_| std::env::var("AUDITRAIL_TEST_DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let n = env_u64("BENCH_EVENTS", 200_000) as usize / BATCH * BATCH;
    let clients = env_u64("BENCH_CLIENTS", 8) as usize;
    let search_n = env_u64("BENCH_SEARCH_EVENTS", 1_000_000);
    let retention_n = env_u64("BENCH_RETENTION_EVENTS", 500_000);
    let dir = tempfile::tempdir().unwrap();
    if n > 0 {
        ingest(&server, dir.path(), n, clients).await;
    }
    if search_n > 0 {
        search(&server, dir.path(), search_n).await;
    }
    if retention_n > 0 {
        retention(&server, dir.path(), retention_n).await;
    }
}

/// Durable HTTP batch ingest through one and two nodes, for 1 and 8 orgs, beside COPY.
async fn ingest(server: &str, dir: &Path, n: usize, clients: usize) {
    let server = server.to_owned();
    let events: Vec<Value> = (0..n as u64).map(event).collect();
    println!("events: {n} in batches of {BATCH}, {clients} HTTP clients");

    let peer_db = TestDb::create(&server).await.unwrap();
    let (copy, copy8) = copy_peer(&peer_db.url, &events).await;
    println!(
        "PostgreSQL COPY ({BATCH}-row transactions): one connection {copy:.0} events/s, eight connections {copy8:.0} events/s"
    );

    for orgs in [1usize, 8] {
        let nodes = |k: usize| {
            let server = server.clone();
            let (dir, events) = (dir.to_owned(), &events);
            async move {
                let db = TestDb::create(&server).await.unwrap();
                let all: Vec<Serve> = (0..k)
                    .map(|i| node(&dir, &format!("o{orgs}-n{k}-{i}"), &db.url))
                    .collect();
                let http = reqwest::Client::new();
                let mut tokens = Vec::new();
                for o in 0..orgs {
                    tokens.push(org_token(&http, &all[0].base, &format!("org{o}")).await);
                }
                let bases: Vec<String> = all.iter().map(|n| n.base.clone()).collect();
                http_ingest(&bases, &tokens, bodies(events), clients).await
            }
        };
        let cpu = Cpu::now();
        let one = nodes(1).await;
        println!(
            "auditrail, {orgs} org(s), one node, HTTP batches: {one:.0} events/s ({:.0}% of COPY on one connection, {:.0}% of eight; CPU {:.0}% busy)",
            100.0 * one / copy,
            100.0 * one / copy8,
            cpu.busy()
        );
        let cpu = Cpu::now();
        let two = nodes(2).await;
        println!(
            "auditrail, {orgs} org(s), two nodes, HTTP batches: {two:.0} events/s ({:.2}x one node; CPU {:.0}% busy)",
            two / one,
            cpu.busy()
        );
    }
    drop(peer_db);
}

/// Runs `auditrail ARGS` on the data dir `name` against database `url`.
fn cli(dir: &Path, name: &str, url: &str, args: &[&str]) {
    let (signing, secret) = (dir.join("signing.key"), dir.join("secret.key"));
    let mut all = args.to_vec();
    all.extend([
        "--signing-key-file",
        signing.to_str().unwrap(),
        "--secret-key-file",
        secret.to_str().unwrap(),
        "--database-url",
        url,
    ]);
    support::run(&dir.join(name), &all);
}

/// Retention of a month of `n` events: auditrail's purge (a watermark) and reclaim (the
/// leaves packed aside, the partition dropped), beside deleting the same rows, and
/// clearing their bodies as the previous layout did, each on its own copy of the month.
/// Reports wall time and the WAL each writes.
async fn retention(server: &str, dir: &Path, n: u64) {
    // March 2025, a month long past.
    const FROM: i64 = 1_740_787_200_000;
    const TO: i64 = 1_743_465_600_000;
    let db = TestDb::create(server).await.unwrap();
    let file = dir.join("retention.ndjson");
    support::write_ndjson(&file, n);
    cli(dir, "retention", &db.url, &["orgs", "create", "acme"]);
    cli(
        dir,
        "retention",
        &db.url,
        &["ingest", "--org", "acme", file.to_str().unwrap()],
    );
    let c = connect(&db.url).await;
    // Move the events into March 2025, as if received then; copy the month twice for
    // the peers, with the same indexes.
    c.batch_execute(&format!(
        "CREATE TABLE events_y2025m03 PARTITION OF events FOR VALUES FROM ({FROM}) TO ({TO});
         UPDATE events SET received_ms = {FROM} + seq;"
    ))
    .await
    .unwrap();
    for peer in ["peer_delete", "peer_update"] {
        c.batch_execute(&format!(
            "CREATE TABLE {peer} AS SELECT * FROM events_y2025m03;
             ALTER TABLE {peer} ADD PRIMARY KEY (org_num, seq, received_ms);
             CREATE INDEX ON {peer} (org_num, actor_id, seq);
             CREATE INDEX ON {peer} (org_num, action, seq);
             CREATE INDEX ON {peer} (org_num, resource_id, seq);
             CREATE INDEX ON {peer} (org_num, scope_id, seq);
             CREATE INDEX ON {peer} (org_num, occurred_us);"
        ))
        .await
        .unwrap();
    }
    c.batch_execute("VACUUM ANALYZE").await.unwrap();
    let num: i64 = c
        .query_one("SELECT num FROM orgs WHERE id = 'acme'", &[])
        .await
        .unwrap()
        .get(0);
    let wal = || async {
        c.query_one("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let report = |what: &str, secs: f64, wal_bytes: i64| {
        println!(
            "retention, {what}: {secs:.2} s ({:.0} events/s), WAL {:.1} MB",
            n as f64 / secs,
            wal_bytes as f64 / 1e6
        );
    };
    const CHUNK: i64 = 10_000;

    // Peer: delete the month's rows, 10,000 a statement.
    let (w, t) = (wal().await, Instant::now());
    let mut after = 0i64;
    loop {
        let k = c
            .execute(
                "DELETE FROM peer_delete WHERE org_num = $1 AND seq > $2 AND seq <= $3",
                &[&num, &after, &(after + CHUNK)],
            )
            .await
            .unwrap();
        after += CHUNK;
        if k == 0 {
            break;
        }
    }
    report(
        "peer DELETE of the rows",
        t.elapsed().as_secs_f64(),
        wal().await - w,
    );

    // Peer: the previous layout's purge, clearing bodies and searchable columns.
    let (w, t) = (wal().await, Instant::now());
    loop {
        let k = c
            .execute(
                "WITH doomed AS (SELECT seq, received_ms FROM peer_update WHERE org_num = $1 \
                 AND received_ms < $2 AND body IS NOT NULL ORDER BY seq LIMIT $3) \
                 UPDATE peer_update e SET body = NULL, action = NULL, actor_id = NULL, resource_type = NULL, \
                 resource_id = NULL, scope_id = NULL FROM doomed d \
                 WHERE e.org_num = $1 AND e.seq = d.seq AND e.received_ms = d.received_ms",
                &[&num, &TO, &CHUNK],
            )
            .await
            .unwrap();
        if k < CHUNK as u64 {
            break;
        }
    }
    report(
        "peer UPDATE clearing the bodies (the previous layout)",
        t.elapsed().as_secs_f64(),
        wal().await - w,
    );

    // auditrail: purge as the server does (10,000 a call), then reclaim.
    let store = auditrail_store::postgres::PgStore::connect(&db.url, Default::default())
        .await
        .unwrap();
    use auditrail_store::Store;
    let (w, t) = (wal().await, Instant::now());
    let mut purged = 0;
    loop {
        let k = store.purge("acme", TO, CHUNK as usize).await.unwrap();
        purged += k;
        if k < CHUNK as u64 {
            break;
        }
    }
    assert!(
        purged >= n,
        "{purged} purged of {n} and the org's own records"
    );
    let purge_secs = t.elapsed().as_secs_f64();
    let r = store
        .reclaim(chrono::Utc::now().timestamp_millis())
        .await
        .unwrap();
    assert_eq!(r.partitions_dropped, 1);
    report(
        &format!(
            "auditrail purge ({purge_secs:.3} s) + reclaim (leaves packed aside, month dropped)"
        ),
        t.elapsed().as_secs_f64(),
        wal().await - w,
    );
    let archived: i64 = c
        .query_one("SELECT pg_total_relation_size('purged_leaves')", &[])
        .await
        .unwrap()
        .get(0);
    println!(
        "retention: the packed leaves take {:.1} MB ({:.1} bytes an event)",
        archived as f64 / 1e6,
        archived as f64 / n as f64
    );
}

/// Loads `n` events spread over 90 days through the CLI bulk loader, then times the
/// search a compliance admin runs most: one actor over 7 days, first page.
async fn search(server: &str, dir: &Path, n: u64) {
    let db = TestDb::create(server).await.unwrap();
    let file = dir.join("search.ndjson");
    let now = chrono::Utc::now();
    let span_us: i64 = 90 * 86_400_000_000;
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        for i in 0..n {
            let mut e = event(i);
            let at =
                now - chrono::Duration::microseconds(span_us - (i as i64 * (span_us / n as i64)));
            e["occurred_at"] = json!(at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
            writeln!(f, "{e}").unwrap();
        }
    }
    let run = |args: &[&str]| cli(dir, "search", &db.url, args);
    let start = Instant::now();
    run(&["orgs", "create", "acme"]);
    run(&[
        "ingest",
        "--org",
        "acme",
        "--batch",
        "10000",
        file.to_str().unwrap(),
    ]);
    let load = start.elapsed().as_secs_f64();
    println!(
        "search log: {n} events over 90 days loaded in {load:.0} s ({:.0} events/s, bulk CLI)",
        n as f64 / load
    );
    let c = connect(&db.url).await;
    c.batch_execute("ANALYZE").await.unwrap();
    let node = node(dir, "search-node", &db.url);
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/v1/orgs/acme/keys", node.base))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "bench", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut lat = Vec::new();
    let mut hits = 0usize;
    for q in 0..200u64 {
        let actor = format!("u-{}", (q * 37) % 1000);
        let days_back = 7 + (q % 80) as i64;
        let from = now - chrono::Duration::days(days_back);
        let to = from + chrono::Duration::days(7);
        let url = format!(
            "{}/v1/events?actor_id={actor}&from={}&to={}&limit=100",
            node.base,
            from.format("%Y-%m-%dT%H:%M:%SZ"),
            to.format("%Y-%m-%dT%H:%M:%SZ")
        );
        let t = Instant::now();
        let r = http.get(&url).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let b: Value = r.json().await.unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        hits += b["events"].as_array().unwrap().len();
    }
    lat.sort_by(f64::total_cmp);
    println!(
        "search, actor + 7-day range over {n} events: p50 {:.1} ms, p99 {:.1} ms ({:.0} hits per page on average)",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        hits as f64 / lat.len() as f64
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// Whole-machine CPU time from /proc/stat, to tell a saturated machine from a waiting one.
struct Cpu(Option<(u64, u64)>);

impl Cpu {
    fn read() -> Option<(u64, u64)> {
        let text = std::fs::read_to_string("/proc/stat").ok()?;
        let v: Vec<u64> = text
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        let idle = v.get(3)? + v.get(4)?;
        Some((v.iter().sum(), idle))
    }

    fn now() -> Self {
        Self(Self::read())
    }

    /// Percent of all cores busy since `now()`.
    fn busy(&self) -> f64 {
        match (self.0, Self::read()) {
            (Some((t0, i0)), Some((t1, i1))) if t1 > t0 => {
                100.0 * (1.0 - (i1 - i0) as f64 / (t1 - t0) as f64)
            }
            _ => f64::NAN,
        }
    }
}
