//! Storage benchmark: what an event costs on disk before and after sealing, on the
//! embedded SQLite store, beside `zstd -3` of the same events as NDJSON and DuckDB's own
//! database file holding them; the time `auditrail seal` takes, and a CSV export before
//! and after (every row read back through the sealed frames), and search p50/p99 before
//! and after (an actor filter, two pages, newest first).
//! Then the same on PostgreSQL: the tables' size before sealing, after it, and once
//! compacted (`VACUUM FULL`: what the deleted rows' pages come to when reused), and
//! search p50/p99 before and after (through the store, an actor filter, newest first).
//! `cargo bench -p auditrail --bench storage` (env BENCH_STORAGE_EVENTS, default
//! 1,000,000; BENCH_STORAGE_POSTGRES=0 skips PostgreSQL, BENCH_STORAGE_SQLITE=0 SQLite; AUDITRAIL_BENCH_DATABASE_URL,
//! default AUDITRAIL_TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/test).
#![expect(clippy::unwrap_used, reason = "a benchmark: a panic is a failed run")]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

#[path = "support.rs"]
mod support;

use support::{BIN, env_u64, load, run};

fn db_bytes(dir: &Path) -> u64 {
    ["auditrail.db", "auditrail.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

/// `auditrail export` of every event in `format` to `out`; returns its seconds.
fn export(dir: &Path, format: &str, out: &Path) -> f64 {
    let today = chrono::Utc::now().date_naive();
    let from = (today - chrono::Duration::days(1)).to_string();
    let to = (today + chrono::Duration::days(1)).to_string();
    let t = Instant::now();
    let st = Command::new(BIN)
        .args([
            "export", "--org", "acme", "--from", &from, "--to", &to, "--format", format,
        ])
        .args(["--no-proof", "-o"])
        .arg(out)
        .arg("--data-dir")
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success());
    t.elapsed().as_secs_f64()
}

const DUCKDB: &str = r#"
import sys, duckdb
src, db = sys.argv[1], sys.argv[2]
c = duckdb.connect(db)
c.execute(f"CREATE TABLE events AS SELECT * FROM read_ndjson('{src}', maximum_object_size=100000000)")
c.execute("CHECKPOINT")
c.close()
"#;

/// Bytes of every table in the database (heap, TOAST and indexes), by what they hold.
async fn pg_sizes(c: &tokio_postgres::Client) -> Vec<(String, i64)> {
    let rows = c
        .query(
            "SELECT CASE WHEN c.relname LIKE 'events_y%' THEN 'events' ELSE c.relname::text END, \
             sum(pg_total_relation_size(c.oid))::bigint FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public' AND c.relkind = 'r' GROUP BY 1 ORDER BY 2 DESC",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

fn pg_report(what: &str, sizes: &[(String, i64)], n: u64) -> i64 {
    let total: i64 = sizes.iter().map(|s| s.1).sum();
    let parts: Vec<String> = sizes
        .iter()
        .take(5)
        .map(|(t, b)| format!("{t} {:.0}", *b as f64 / n as f64))
        .collect();
    println!(
        "postgres {what}: {:.1} MB = {:.0} bytes an event ({})",
        total as f64 / 1e6,
        total as f64 / n as f64,
        parts.join(", ")
    );
    total
}

/// Search latency through the store: `k` actor filters, newest first, 50 a page.
async fn search_ms(store: &impl auditrail_store::Store, k: u64) -> (f64, f64) {
    use auditrail_store::{Order, PageRequest};
    let mut ms = Vec::new();
    for i in 0..k {
        let mut f = auditrail_core::query::Filter::default();
        f.require(
            auditrail_core::query::Field::ActorId,
            format!("u-{}", (i * 37) % 1000),
        );
        let t = Instant::now();
        let page = PageRequest {
            after_seq: None,
            limit: 50,
            order: Order::Desc,
        };
        let p = store.search("acme", &f, page).await.unwrap();
        // A second page, further back: where sealed frames are read.
        if let Some(after) = p.next_after {
            let page = PageRequest {
                after_seq: Some(after.saturating_sub(400_000)),
                ..page
            };
            store.search("acme", &f, page).await.unwrap();
        }
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    (support::pct(&mut ms, 0.5), support::pct(&mut ms, 0.99))
}

fn postgres(n: u64, src: &Path, tmp: &Path) {
    use auditrail_store::postgres::{PgOptions, PgStore, testdb::TestDb};
    let server = std::env::var("AUDITRAIL_BENCH_DATABASE_URL")
        .or_else(|_| std::env::var("AUDITRAIL_TEST_DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::create(&server)).unwrap();
    let (client, conn) = rt
        .block_on(tokio_postgres::connect(&db.url, tokio_postgres::NoTls))
        .unwrap();
    rt.spawn(conn);
    let data = tmp.join("pg-data");
    let url = db.url.clone();
    let pg = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend(["--database-url", &url]);
        run(&data, &a)
    };
    pg(&["orgs", "create", "acme"]);
    let t = Instant::now();
    pg(&[
        "ingest",
        "--org",
        "acme",
        "--batch",
        "20000",
        src.to_str().unwrap(),
    ]);
    println!(
        "postgres: {n} events ingested in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    rt.block_on(client.batch_execute("VACUUM ANALYZE")).unwrap();
    let before = pg_report("before sealing", &rt.block_on(pg_sizes(&client)), n);
    let store = rt
        .block_on(PgStore::connect(&db.url, PgOptions::default()))
        .unwrap();
    let (p50a, p99a) = rt.block_on(search_ms(&store, 200));
    let t = Instant::now();
    print!("{}", pg(&["seal"]));
    let secs = t.elapsed().as_secs_f64();
    println!(
        "postgres: sealed in {secs:.1} s ({:.0} events/s)",
        n as f64 / secs
    );
    rt.block_on(client.batch_execute("VACUUM ANALYZE")).unwrap();
    let after = pg_report("after sealing", &rt.block_on(pg_sizes(&client)), n);
    let (p50b, p99b) = rt.block_on(search_ms(&store, 200));
    rt.block_on(client.batch_execute("VACUUM FULL")).unwrap();
    let full = pg_report(
        "after sealing, compacted",
        &rt.block_on(pg_sizes(&client)),
        n,
    );
    println!(
        "postgres: {:.1}x smaller as the files stand, {:.1}x once compacted",
        before as f64 / after as f64,
        before as f64 / full as f64
    );
    println!(
        "postgres search (actor filter, two pages): p50 {p50a:.2} ms, p99 {p99a:.2} ms before sealing; p50 {p50b:.2} ms, p99 {p99b:.2} ms after"
    );
    drop(store);
    rt.block_on(async move { drop(db) });
}

fn main() {
    let n = env_u64("BENCH_STORAGE_EVENTS", 1_000_000);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("events.ndjson");
    support::write_ndjson(&src, n);
    if env_u64("BENCH_STORAGE_POSTGRES", 1) != 0 {
        postgres(n, &src, tmp.path());
    }
    if env_u64("BENCH_STORAGE_SQLITE", 1) == 0 {
        return;
    }
    let data = tmp.path().join("data");
    load(&data, &src);
    let before = db_bytes(&data);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sqlite_search = |rt: &tokio::runtime::Runtime| {
        let store = auditrail_store::sqlite::SqliteStore::open(&data, Default::default()).unwrap();
        rt.block_on(search_ms(&store, 200))
    };
    let (p50a, p99a) = sqlite_search(&rt);
    println!(
        "{n} events loaded: {:.1} MB on disk = {:.0} bytes an event",
        before as f64 / 1e6,
        before as f64 / n as f64
    );
    let csv = tmp.path().join("out.csv");
    let t_open = export(&data, "csv", &csv);
    let t = Instant::now();
    let out = run(&data, &["seal"]);
    let secs = t.elapsed().as_secs_f64();
    print!("{out}");
    let after = db_bytes(&data);
    println!(
        "sealed in {secs:.1} s ({:.0} events/s): {:.1} MB on disk = {:.0} bytes an event ({:.1}x smaller)",
        n as f64 / secs,
        after as f64 / 1e6,
        after as f64 / n as f64,
        before as f64 / after as f64
    );
    // Where the bytes are, table by table (SQLite's dbstat, if the sqlite3 shell is here).
    if let Ok(o) = Command::new("sqlite3")
        .arg(data.join("auditrail.db"))
        .arg("SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC LIMIT 8")
        .output()
        && o.status.success()
    {
        let parts: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| l.split_once('|'))
            .map(|(t, b)| format!("{t} {:.1}", b.parse::<f64>().unwrap_or(0.0) / n as f64))
            .collect();
        println!("bytes an event by table: {}", parts.join(", "));
    }
    let t_sealed = export(&data, "csv", &csv);
    println!("export --format csv: {t_open:.2} s before sealing, {t_sealed:.2} s after");
    let (p50b, p99b) = sqlite_search(&rt);
    println!(
        "search (actor filter, two pages): p50 {p50a:.2} ms, p99 {p99a:.2} ms before sealing; p50 {p50b:.2} ms, p99 {p99b:.2} ms after"
    );

    // Peers: the stored events as NDJSON (what the export writes), zstd -3'd; DuckDB's
    // database file holding them.
    let nd = tmp.path().join("out.ndjson");
    export(&data, "ndjson", &nd);
    let raw = std::fs::metadata(&nd).unwrap().len();
    match Command::new("zstd")
        .args(["-3", "-q", "-f", "-o"])
        .arg(tmp.path().join("o.zst"))
        .arg(&nd)
        .status()
    {
        Ok(s) if s.success() => {
            let z = std::fs::metadata(tmp.path().join("o.zst")).unwrap().len();
            println!(
                "peer: the stored events as NDJSON {:.1} MB ({:.0} bytes an event); zstd -3 of it {:.1} MB = {:.0} bytes an event",
                raw as f64 / 1e6,
                raw as f64 / n as f64,
                z as f64 / 1e6,
                z as f64 / n as f64
            );
        }
        _ => println!("peer: zstd not installed"),
    }
    let duck = tmp.path().join("events.duckdb");
    let st = Command::new("python3")
        .args(["-c", DUCKDB])
        .arg(&nd)
        .arg(&duck)
        .status();
    match st {
        Ok(s) if s.success() => {
            let b = std::fs::metadata(&duck).unwrap().len();
            println!(
                "peer: DuckDB's database file holding the same events: {:.1} MB = {:.0} bytes an event",
                b as f64 / 1e6,
                b as f64 / n as f64
            );
        }
        _ => println!("peer: DuckDB not installed (pip install duckdb)"),
    }
}
