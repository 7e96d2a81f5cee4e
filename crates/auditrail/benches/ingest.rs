//! Ingest benchmark: auditrail against the naive SQLite layout, on the same events, in
//! one run. `cargo bench -p auditrail --bench ingest` (env BENCH_EVENTS, BENCH_BULK_EVENTS;
//! BENCH_ROUNDS, default 3: the insert-only peers and the HTTP batches measured in turn
//! that many times, the figures being the rounds' medians; BENCH_ONLY_BATCHES=N,
//! BENCH_ONLY_SINGLES=N or BENCH_ONLY_BULK=N runs just that phase N times;
//! BENCH_ONLY_SEALING=N the single events with and without background sealing;
//! BENCH_ONLY_REMOTE=N runs `auditrail ingest --url` of BENCH_BULK_EVENTS events against a
//! fresh server N times).
//!
//! Peers: one SQLite row per event with two secondary indexes, WAL, synchronous=FULL,
//! 1000-row transactions, driven from Rust (rusqlite) and from Python's `executemany`:
//! once with every row made before the clock starts (only the inserts timed), once with
//! each row made, its body serialized from the event, inside the timed loop.
#![expect(clippy::unwrap_used, reason = "a benchmark: a panic is a failed run")]

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The same real server the integration tests start, on a port-0 listener.
#[path = "../tests/common/mod.rs"]
mod common;
use common::TestServer;

/// The same allocator as the `auditrail` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "support.rs"]
mod support;
use support::event;

fn naive_schema(conn: &rusqlite::Connection) {
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
         CREATE TABLE events (id INTEGER PRIMARY KEY, org TEXT NOT NULL, seq INTEGER NOT NULL, event_id TEXT NOT NULL,
            occurred_at TEXT NOT NULL, action TEXT NOT NULL, actor_id TEXT, body TEXT NOT NULL);
         CREATE INDEX events_actor ON events (org, actor_id, occurred_at);
         CREATE INDEX events_action ON events (org, action, occurred_at);",
    )
    .unwrap();
}

/// The naive layout driven from Rust. With `build_rows`, each row (its body serialized
/// from the event) is made inside the timed loop, as a program loading events would;
/// otherwise every row is made before the clock starts and only the inserts are timed.
fn naive_rust(dir: &Path, events: &[Value], build_rows: bool) -> f64 {
    let name = if build_rows {
        "naive-built.db"
    } else {
        "naive.db"
    };
    let mut conn = rusqlite::Connection::open(dir.join(name)).unwrap();
    naive_schema(&conn);
    let row = |e: &Value| {
        (
            e["id"].as_str().unwrap().to_owned(),
            e["action"].as_str().unwrap().to_owned(),
            e["actor"]["id"].as_str().unwrap().to_owned(),
            e.to_string(),
        )
    };
    let prebuilt: Vec<(String, String, String, String)> = if build_rows {
        Vec::new()
    } else {
        events.iter().map(row).collect()
    };
    let start = Instant::now();
    for (c, chunk) in events.chunks(1000).enumerate() {
        let built: Vec<(String, String, String, String)>;
        let rows = if build_rows {
            built = chunk.iter().map(row).collect();
            &built[..]
        } else {
            &prebuilt[c * 1000..c * 1000 + chunk.len()]
        };
        let tx = conn.transaction().unwrap();
        {
            let mut st = tx.prepare_cached("INSERT INTO events (org, seq, event_id, occurred_at, action, actor_id, body) VALUES ('acme', ?1, ?2, '2026-11-21T10:00:00Z', ?3, ?4, ?5)").unwrap();
            for (i, (id, action, actor, body)) in rows.iter().enumerate() {
                st.execute(rusqlite::params![
                    (c * 1000 + i) as i64,
                    id,
                    action,
                    actor,
                    body
                ])
                .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    events.len() as f64 / start.elapsed().as_secs_f64()
}

/// The naive layout driven from Python's `executemany`; `build_rows` as for
/// [`naive_rust`] (there, `json.dumps` of each event inside the timed loop).
fn naive_python(dir: &Path, data: &Path, events: &[Value], build_rows: bool) -> Option<f64> {
    if !data.exists() {
        let mut f = std::io::BufWriter::new(std::fs::File::create(data).unwrap());
        for e in events {
            writeln!(f, "{e}").unwrap();
        }
    }
    let script = r#"
import json, sqlite3, sys, time
events = [json.loads(l) for l in open(sys.argv[1])]
build = sys.argv[3] == "build"
def row(i, e):
    return ("acme", i, e["id"], "2026-11-21T10:00:00Z", e["action"], e["actor"]["id"], json.dumps(e))
rows = None if build else [row(i, e) for i, e in enumerate(events)]
db = sqlite3.connect(sys.argv[2], isolation_level=None)
db.executescript("""PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
CREATE TABLE events (id INTEGER PRIMARY KEY, org TEXT NOT NULL, seq INTEGER NOT NULL, event_id TEXT NOT NULL,
  occurred_at TEXT NOT NULL, action TEXT NOT NULL, actor_id TEXT, body TEXT NOT NULL);
CREATE INDEX events_actor ON events (org, actor_id, occurred_at);
CREATE INDEX events_action ON events (org, action, occurred_at);""")
t = time.perf_counter()
for i in range(0, len(events), 1000):
    chunk = [row(i + j, e) for j, e in enumerate(events[i:i+1000])] if build else rows[i:i+1000]
    db.execute("BEGIN")
    db.executemany("INSERT INTO events (org, seq, event_id, occurred_at, action, actor_id, body) VALUES (?,?,?,?,?,?,?)", chunk)
    db.execute("COMMIT")
print(len(events) / (time.perf_counter() - t))
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(data)
        .arg(dir.join(if build_rows { "py-built.db" } else { "py.db" }))
        .arg(if build_rows { "build" } else { "prebuilt" })
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// `n` HTTP clients, built before a phase's clock and CPU count start: building one
/// loads the TLS roots, which is the load generator's cost, not the server's.
fn clients(n: usize) -> Vec<reqwest::Client> {
    (0..n).map(|_| reqwest::Client::new()).collect()
}

/// The `https` clients post `bodies` until none are left; returns events/s (each body
/// holds `per_body` events) and every request's latency in milliseconds, sorted.
async fn drive(
    base: &str,
    token: &str,
    bodies: Vec<Vec<u8>>,
    per_body: usize,
    https: Vec<reqwest::Client>,
) -> (f64, Vec<f64>) {
    let total = bodies.len() * per_body;
    let queue = Arc::new(std::sync::Mutex::new(bodies));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for http in https {
        let (queue, url, token) = (queue.clone(), format!("{base}/v1/events"), token.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let Some(body) = queue.lock().unwrap().pop() else {
                    return lat;
                };
                let t = Instant::now();
                let r = http
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let status = r.status();
                let body = r.bytes().await.unwrap();
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let rate = total as f64 / start.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.total_cmp(b));
    (rate, lat)
}

/// 16 connections posting 500-event batches; returns events/s, the CPU time the process
/// (server and clients) spent per event and that of the store's writer thread alone (the
/// one thread every commit goes through), in microseconds.
async fn http_batches(
    base: &str,
    token: &str,
    events: &[Value],
) -> (f64, Option<f64>, Option<f64>) {
    let bodies = events
        .chunks(500)
        .map(|c| serde_json::to_vec(&json!({"events": c})).unwrap())
        .collect();
    let https = clients(16);
    let per_event =
        |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| (b - a) * 1e6 / events.len() as f64);
    let cpu = support::cpu_seconds();
    let writer = support::thread_cpu_seconds(WRITER_THREAD);
    let rate = drive(base, token, bodies, 500, https).await.0;
    let writer = per_event(writer, support::thread_cpu_seconds(WRITER_THREAD));
    (rate, per_event(cpu, support::cpu_seconds()), writer)
}

/// One round of the insert-only peers and the HTTP batches.
struct Round {
    naive: f64,
    py: Option<f64>,
    http: f64,
    cpu: Option<f64>,
    writer: Option<f64>,
}

/// The median of `values` (`support::pct`); `None` if there are none.
fn median_of(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.collect();
    (!v.is_empty()).then(|| support::pct(&mut v, 0.5))
}

/// The name of the SQLite store's writer thread.
const WRITER_THREAD: &str = "auditrail-write";

/// 64 clients sending one event per request; returns (events/s, p50 ms, p99 ms, bytes
/// the process wrote per event: WAL frames, checkpoints and the HTTP traffic).
async fn http_singles(base: &str, token: &str, events: &[Value]) -> (f64, f64, f64, f64) {
    let bodies = events
        .iter()
        .map(|e| serde_json::to_vec(e).unwrap())
        .collect();
    let before = support::written_bytes();
    let (rate, lat) = drive(base, token, bodies, 1, clients(64)).await;
    let written = before
        .zip(support::written_bytes())
        .map_or(f64::NAN, |(a, b)| (b - a) / events.len() as f64);
    (rate, lat[lat.len() / 2], lat[lat.len() * 99 / 100], written)
}

/// Latency of 200 searches by actor (newest 50 of ~1/1000 of the events), one at a time.
async fn search_latency(srv: &TestServer, org: &str) -> (f64, f64) {
    let token = srv.key(org, "viewer").await;
    let mut lat = Vec::new();
    for k in 0..200 {
        let t = Instant::now();
        let (st, body) = srv
            .get(&format!("/v1/events?actor_id=u-{}&limit=50", k * 5), &token)
            .await;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(st, 200, "{body}");
    }
    (support::pct(&mut lat, 0.5), support::pct(&mut lat, 0.99))
}

/// An NDJSON file of `n` events (not the ones the HTTP phases send).
fn bulk_file(dir: &Path, n: u64) -> std::path::PathBuf {
    let file = dir.join("bulk.ndjson");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    for i in 0..n {
        writeln!(f, "{}", event(i + 10_000_000)).unwrap();
    }
    file
}

/// `auditrail ingest --url` of `n` events into a running server (a fresh one each round,
/// in this process), `rounds` times; prints events/s.
fn remote_cli(dir: &Path, n: u64, rounds: u64) {
    let file = bulk_file(dir, n);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for round in 0..rounds {
        let (srv, key) = rt.block_on(async {
            let srv =
                TestServer::start_with(&dir.join(format!("remote{round}")), Duration::from_secs(5))
                    .await;
            srv.create_org("bulk").await;
            let key = srv.key("bulk", "ingest").await;
            (srv, key)
        });
        let start = Instant::now();
        let out = std::process::Command::new(common::BIN)
            .args([
                "ingest", "--org", "bulk", "--url", &srv.base, "--token", &key,
            ])
            .arg(&file)
            .output()
            .unwrap();
        let secs = start.elapsed().as_secs_f64();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        println!(
            "auditrail ingest --url (one request of 1000 in flight) of {n}: {:.0} events/s",
            n as f64 / secs
        );
        rt.block_on(srv.stop());
    }
}

fn bulk_cli(dir: &Path, n: u64) -> f64 {
    let bin = common::BIN;
    let data = dir.join("bulk");
    let ok = std::process::Command::new(bin)
        .args(["orgs", "create", "bulk", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(ok.status.success());
    let file = bulk_file(dir, n);
    let start = Instant::now();
    let out = std::process::Command::new(bin)
        .args(["ingest", "--org", "bulk", "--data-dir"])
        .arg(&data)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    n as f64 / start.elapsed().as_secs_f64()
}

/// Only the HTTP batches (`BENCH_ONLY_BATCHES=N`) or only the single events
/// (`BENCH_ONLY_SINGLES=N`), N times on fresh servers (to compare builds or settings
/// without the peers and the other phases).
fn only_one_phase(dir: &Path, events: &[Value], singles: bool) {
    let var = if singles {
        "BENCH_ONLY_SINGLES"
    } else {
        "BENCH_ONLY_BATCHES"
    };
    let rounds = support::env_u64(var, 1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for round in 0..rounds {
            let srv =
                TestServer::start_with(&dir.join(format!("only{round}")), Duration::from_secs(5))
                    .await;
            srv.create_org("acme").await;
            let key = srv.key("acme", "ingest").await;
            if singles {
                let (rate, p50, p99, written) =
                    http_singles(&srv.base, &key, &events[..events.len() / 4]).await;
                println!(
                    "HTTP single events x 64: {rate:.0} events/s, p50 {p50:.2} ms, p99 {p99:.2} ms, {written:.0} bytes written an event"
                );
                let (p50, p99) = search_latency(&srv, "acme").await;
                println!(
                    "search by actor, newest 50, just after: p50 {p50:.2} ms, p99 {p99:.2} ms"
                );
            } else {
                let (rate, cpu, writer) = http_batches(&srv.base, &key, events).await;
                println!(
                    "HTTP 500-event batches x 16: {rate:.0} events/s, CPU {:.2} us an event (writer thread {:.2})",
                    cpu.unwrap_or(f64::NAN),
                    writer.unwrap_or(f64::NAN)
                );
                let (p50, p99) = search_latency(&srv, "acme").await;
                println!(
                    "search by actor, newest 50, just after: p50 {p50:.2} ms, p99 {p99:.2} ms"
                );
            }
            srv.stop().await;
        }
    });
}

/// `BENCH_ONLY_SEALING=N`: single events into an org that already holds `bulk`
/// events, on a server that never seals and then on one sealing that backlog in the
/// background (each on a fresh data dir loaded alike), N times: the ingest latency
/// sealing costs.
fn sealing_phase(dir: &Path, events: &[Value], bulk: u64) {
    let rounds = support::env_u64("BENCH_ONLY_SEALING", 1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let backlog: Vec<Value> = (0..bulk).map(|i| event(i + 10_000_000)).collect();
    for round in 0..rounds {
        for sealing in [false, true] {
            let data = dir.join(format!("seal{round}-{sealing}"));
            rt.block_on(async {
                let never = |s: &mut auditrail_server::Settings| {
                    s.checkpoint_interval = Duration::from_secs(5);
                    s.sealing.keep_open = 1 << 40;
                };
                let srv = TestServer::start_custom(&data, never).await;
                srv.create_org("acme").await;
                let key = srv.key("acme", "ingest").await;
                http_batches(&srv.base, &key, &backlog).await;
                srv.stop().await;
                let srv = TestServer::start_custom(&data, |s| {
                    never(s);
                    s.sealing.interval = Duration::from_millis(100);
                    if sealing {
                        s.sealing.keep_open = 65_536;
                    }
                })
                .await;
                let sealed = || async {
                    srv.app.store.sealing("acme", 65_536).await.unwrap().sealed
                };
                let before = sealed().await;
                let (rate, p50, p99, _) =
                    http_singles(&srv.base, &key, &events[..events.len() / 4]).await;
                let during = sealed().await - before;
                println!(
                    "HTTP single events x 64 into an org of {bulk}, sealing {}: {rate:.0} events/s, p50 {p50:.2} ms, p99 {p99:.2} ms; {during} events sealed meanwhile",
                    if sealing { "on" } else { "off" }
                );
                srv.stop().await;
            });
        }
    }
}

fn main() {
    // `RUST_LOG=auditrail_store=debug` shows the writer's merges and checkpoints.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let n = support::env_u64("BENCH_EVENTS", 200_000);
    let bulk = support::env_u64("BENCH_BULK_EVENTS", 1_000_000);
    let root = std::env::var("BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    let dir = tempfile::tempdir_in(root).unwrap();
    let events: Vec<Value> = (0..n).map(event).collect();
    let avg = events.iter().map(|e| e.to_string().len()).sum::<usize>() / events.len();
    println!("events: {n} (average {avg} bytes as sent); bulk: {bulk}");
    if std::env::var_os("BENCH_ONLY_BATCHES").is_some() {
        only_one_phase(dir.path(), &events, false);
        return;
    }
    if std::env::var_os("BENCH_ONLY_SINGLES").is_some() {
        only_one_phase(dir.path(), &events, true);
        return;
    }
    if std::env::var_os("BENCH_ONLY_SEALING").is_some() {
        sealing_phase(dir.path(), &events, bulk);
        return;
    }
    if std::env::var_os("BENCH_ONLY_REMOTE").is_some() {
        remote_cli(dir.path(), bulk, support::env_u64("BENCH_ONLY_REMOTE", 1));
        return;
    }
    if std::env::var_os("BENCH_ONLY_BULK").is_some() {
        for round in 0..support::env_u64("BENCH_ONLY_BULK", 1) {
            let round_dir = dir.path().join(format!("bulk{round}"));
            std::fs::create_dir_all(&round_dir).unwrap();
            let rate = bulk_cli(&round_dir, bulk);
            println!("auditrail ingest, bulk load of {bulk}: {rate:.0} events/s");
        }
        return;
    }

    // The insert-only peers and the HTTP batches, measured in turn `BENCH_ROUNDS` times
    // (each round on fresh databases and a fresh server): the machine's speed drifts by
    // more than the goals' margins between minutes, so each round's ratio compares
    // measurements taken seconds apart, and the figures are the rounds' medians.
    let rounds = support::env_u64("BENCH_ROUNDS", 3).max(1) as usize;
    let data = dir.path().join("events.ndjson");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut measured: Vec<Round> = Vec::new();
    let mut singles = (0.0, 0.0, 0.0, 0.0);
    for round in 0..rounds {
        let round_dir = dir.path().join(format!("round{round}"));
        std::fs::create_dir_all(&round_dir).unwrap();
        let naive = naive_rust(&round_dir, &events, false);
        let py = naive_python(&round_dir, &data, &events, false);
        let last = round + 1 == rounds;
        let (http, cpu, writer) = rt.block_on(async {
            let srv = TestServer::start_with(&round_dir.join("srv"), Duration::from_secs(5)).await;
            srv.create_org("acme").await;
            let batches = http_batches(&srv.base, &srv.key("acme", "ingest").await, &events).await;
            if last {
                // Single events on the same server, into another org.
                srv.create_org("single").await;
                let single_events: Vec<Value> =
                    (0..(n / 4)).map(|i| event(i + 5_000_000)).collect();
                singles = http_singles(
                    &srv.base,
                    &srv.key("single", "ingest").await,
                    &single_events,
                )
                .await;
            }
            srv.stop().await;
            batches
        });
        println!(
            "round {}: naive Rust {naive:.0} rows/s, Python {}, auditrail HTTP batches {http:.0} events/s ({:.2}x naive Rust{})",
            round + 1,
            py.map(|p| format!("{p:.0} rows/s"))
                .unwrap_or_else(|| "n/a".into()),
            http / naive,
            py.map(|p| format!(", {:.2}x naive Python", http / p))
                .unwrap_or_default()
        );
        measured.push(Round {
            naive,
            py,
            http,
            cpu,
            writer,
        });
        std::fs::remove_dir_all(&round_dir).unwrap();
    }
    let naive = median_of(measured.iter().map(|r| r.naive)).unwrap();
    let py = median_of(measured.iter().filter_map(|r| r.py));
    let batch_rate = median_of(measured.iter().map(|r| r.http)).unwrap();
    let batch_cpu = median_of(measured.iter().filter_map(|r| r.cpu));
    let writer_cpu = median_of(measured.iter().filter_map(|r| r.writer));
    let over_naive = median_of(measured.iter().map(|r| r.http / r.naive)).unwrap();
    let over_py = median_of(measured.iter().filter_map(|r| r.py.map(|p| r.http / p)));
    println!("medians of {rounds} round(s); each ratio is the median of the rounds' own ratios");
    println!("naive layout, Rust (rusqlite, 1000-row tx, 2 indexes): {naive:.0} rows/s");
    match py {
        Some(p) => println!("naive layout, Python executemany:                      {p:.0} rows/s"),
        None => println!("naive layout, Python executemany: python3 not available"),
    }
    // The same peers with each row made (its body serialized) inside the timed loop.
    let naive_built = naive_rust(dir.path(), &events, true);
    let py_built = naive_python(dir.path(), &data, &events, true);
    println!(
        "naive layout, rows made in the timed loop: Rust {naive_built:.0} rows/s{}",
        py_built
            .map(|p| format!(", Python {p:.0} rows/s"))
            .unwrap_or_default()
    );
    // The same events into an org with the Prophecy catalog, on a fresh server so the
    // two runs start from the same state (lenient org: every event is looked up, known
    // actions' details walked, secrets replaced, unknown actions counted).
    let catalog_rate = rt.block_on(async {
        let srv = TestServer::start_with(&dir.path().join("srv2"), Duration::from_secs(5)).await;
        let (st, b) = srv
            .post(
                "/v1/orgs",
                common::ADMIN,
                json!({"id": "catalogued", "catalog": "prophecy"}),
            )
            .await;
        assert_eq!(st, 201, "{b}");
        let rate = http_batches(&srv.base, &srv.key("catalogued", "ingest").await, &events)
            .await
            .0;
        srv.stop().await;
        rate
    });
    println!(
        "auditrail HTTP, 500-event batches x 16 connections:    {batch_rate:.0} events/s ({over_naive:.2}x naive Rust{})",
        over_py
            .map(|r| format!(", {r:.2}x naive Python"))
            .unwrap_or_default()
    );
    println!(
        "  against the peers making rows in the timed loop: {:.2}x Rust{}",
        batch_rate / naive_built,
        py_built
            .map(|p| format!(", {:.2}x Python", batch_rate / p))
            .unwrap_or_default()
    );
    if let Some(us) = batch_cpu {
        println!(
            "  CPU (server and clients, all threads): {us:.2} us an event ({:.0} events per CPU-second)",
            1e6 / us
        );
    }
    if let Some(us) = writer_cpu {
        println!("  CPU of the store's writer thread alone: {us:.2} us an event");
    }
    println!(
        "auditrail HTTP, same batches, org with Prophecy catalog: {catalog_rate:.0} events/s ({:.2}x without a catalog)",
        catalog_rate / batch_rate
    );
    println!(
        "auditrail HTTP, single events x 64 clients:            {:.0} events/s, p50 {:.2} ms, p99 {:.2} ms, {:.0} bytes written an event",
        singles.0, singles.1, singles.2, singles.3
    );
    let bulk_rate = bulk_cli(dir.path(), bulk);
    println!("auditrail ingest (CLI bulk load) of {bulk} events:       {bulk_rate:.0} events/s");
}
