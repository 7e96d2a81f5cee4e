//! Storage benchmark: what an event costs on disk before and after sealing, on the
//! embedded SQLite store, beside `zstd -3` of the same events as NDJSON and DuckDB's own
//! database file holding them; the time `auditrail seal` takes, and a CSV export before
//! and after (every row read back through the sealed frames).
//! `cargo bench -p auditrail --bench storage` (env BENCH_STORAGE_EVENTS, default 1,000,000).
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

fn main() {
    let n = env_u64("BENCH_STORAGE_EVENTS", 1_000_000);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("events.ndjson");
    support::write_ndjson(&src, n);
    let data = tmp.path().join("data");
    load(&data, &src);
    let before = db_bytes(&data);
    println!(
        "{n} events loaded: {:.1} MB on disk = {:.0} bytes an event",
        before as f64 / 1e6,
        before as f64 / n as f64
    );
    let csv = tmp.path().join("out.csv");
    let t_open = export(&data, "csv", &csv);
    let t = Instant::now();
    let out = run(&data, &["seal", "--keep-open", "65536"]);
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
    let t_sealed = export(&data, "csv", &csv);
    println!("export --format csv: {t_open:.2} s before sealing, {t_sealed:.2} s after");

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
