//! Export benchmark: `auditrail export` of the same events as CSV (Apollo layout),
//! Parquet, NDJSON and OCSF (JSON lines, Parquet), beside DuckDB writing the Apollo columns as CSV from the NDJSON file and
//! `sqlite3 -csv` dumping a full table, all in one run. Wall time and peak RSS of each
//! process (GNU time). Then `auditrail seal` (the newest `seal_keep_open`, 4,096 by default, left open) and the CSV
//! export again, read from the sealed frames. `cargo bench -p auditrail --bench export`
//! (env BENCH_EXPORT_EVENTS, default 1,000,000; BENCH_EXPORT_LARGE to also export that
//! many, for flat memory).
#![expect(clippy::unwrap_used, reason = "a benchmark: a panic is a failed run")]

use std::path::Path;
use std::process::Command;

#[path = "support.rs"]
mod support;

use support::{BIN, env_u64, load};

/// Runs `cmd` under GNU time; returns (seconds, peak RSS in MB).
fn measured(cmd: &mut Command) -> (f64, f64) {
    let prog = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "TIME %e %M"])
        .arg(prog)
        .args(args)
        .output()
        .expect("GNU time (/usr/bin/time) is installed");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let line = err.lines().rev().find(|l| l.starts_with("TIME ")).unwrap();
    let mut p = line.split_whitespace().skip(1);
    let secs: f64 = p.next().unwrap().parse().unwrap();
    let kb: f64 = p.next().unwrap().parse().unwrap();
    (secs, kb / 1024.0)
}

const DUCKDB_PARQUET: &str = r#"
import sys, duckdb
src, out = sys.argv[1], sys.argv[2]
duckdb.sql(f"COPY (SELECT * FROM read_ndjson('{src}', maximum_object_size=100000000)) TO '{out}' (FORMAT parquet)")
"#;

fn export(dir: &Path, format: &str, out: &Path) -> (f64, f64) {
    let today = chrono::Utc::now().date_naive();
    let from = (today - chrono::Duration::days(1)).to_string();
    let to = (today + chrono::Duration::days(1)).to_string();
    measured(
        Command::new(BIN)
            .args([
                "export", "--org", "acme", "--from", &from, "--to", &to, "--format", format, "-o",
            ])
            .arg(out)
            .arg("--data-dir")
            .arg(dir),
    )
}

const DUCKDB: &str = r#"
import sys, duckdb
src, out = sys.argv[1], sys.argv[2]
duckdb.sql(f"""COPY (SELECT occurred_at AS Timestamp, action AS Action, resource.id AS Resource_ID,
  resource.type AS Resource_Type, to_json(details) AS Details, actor.id AS Actor_ID, actor.type AS Actor_Type,
  actor.role AS Effective_Role, actor.email AS Actor_Email, actor.name AS Actor_Name, scope.id AS Graph_ID
  FROM read_ndjson('{src}', maximum_object_size=100000000)) TO '{out}' (HEADER, DELIMITER ',')""")
"#;

const SQLITE_LOAD: &str = r#"
import sys, sqlite3, json
src, db = sys.argv[1], sys.argv[2]
c = sqlite3.connect(db)
c.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, occurred_at TEXT, action TEXT, resource_id TEXT, resource_type TEXT, details TEXT, actor_id TEXT, actor_type TEXT, role TEXT, email TEXT, name TEXT, graph_id TEXT)")
def rows():
    for i, line in enumerate(open(src)):
        e = json.loads(line)
        a, r, s = e.get("actor", {}), e.get("resource", {}), e.get("scope", {})
        yield (i + 1, e.get("occurred_at", ""), e["action"], r.get("id"), r.get("type"), json.dumps(e.get("details")), a.get("id"), a.get("type"), a.get("role"), a.get("email"), a.get("name"), s.get("id"))
c.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows())
c.commit()
"#;

fn main() {
    let n = env_u64("BENCH_EXPORT_EVENTS", 1_000_000);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("events.ndjson");
    support::write_ndjson(&src, n);
    let data = tmp.path().join("data");
    load(&data, &src);
    println!(
        "{n} events ({} MB of NDJSON)",
        std::fs::metadata(&src).unwrap().len() / 1_000_000
    );

    let csv = tmp.path().join("out.csv");
    let (t, mb) = export(&data, "csv", &csv);
    let rows = std::fs::read_to_string(&csv)
        .map(|s| s.lines().count())
        .unwrap_or(0);
    println!(
        "auditrail export --format csv: {t:.2} s ({:.0} rows/s), peak RSS {mb:.1} MB, {} MB written, {rows} lines",
        n as f64 / t,
        std::fs::metadata(&csv).unwrap().len() / 1_000_000
    );
    let pq = tmp.path().join("out.parquet");
    let (tp, mbp) = export(&data, "parquet", &pq);
    println!(
        "auditrail export --format parquet: {tp:.2} s ({:.2}x the CSV time), peak RSS {mbp:.1} MB, {} MB written",
        tp / t,
        std::fs::metadata(&pq).unwrap().len() / 1_000_000
    );

    // The peers read the stored events (auditrail's NDJSON export), as a user would.
    let nd = tmp.path().join("out.ndjson");
    let (tn, mbn) = export(&data, "ndjson", &nd);
    println!("auditrail export --format ndjson: {tn:.2} s, peak RSS {mbn:.1} MB");
    // OCSF records (API Activity), the same events: JSON lines and Parquet.
    let oc = tmp.path().join("out.ocsf.jsonl");
    let (to, mbo) = export(&data, "ocsf", &oc);
    println!(
        "auditrail export --format ocsf: {to:.2} s ({:.2}x the NDJSON time), peak RSS {mbo:.1} MB, {} MB written",
        to / tn,
        std::fs::metadata(&oc).unwrap().len() / 1_000_000
    );
    let op = tmp.path().join("out.ocsf.parquet");
    let (top, mbop) = export(&data, "ocsf_parquet", &op);
    println!(
        "auditrail export --format ocsf_parquet: {top:.2} s ({:.2}x the Parquet time), peak RSS {mbop:.1} MB, {} MB written",
        top / tp,
        std::fs::metadata(&op).unwrap().len() / 1_000_000
    );
    let src = nd;
    let duck_out = tmp.path().join("duck.csv");
    let has_duckdb = Command::new("python3")
        .args(["-c", "import duckdb"])
        .status()
        .is_ok_and(|s| s.success());
    let mut duck_secs = None;
    if has_duckdb {
        let (td, mbd) = measured(
            Command::new("python3")
                .args(["-c", DUCKDB])
                .arg(&src)
                .arg(&duck_out),
        );
        println!(
            "DuckDB (Python) NDJSON → CSV, Apollo columns: {td:.2} s, peak RSS {mbd:.1} MB; auditrail is {:.2}x DuckDB's speed",
            td / t
        );
        duck_secs = Some(td);
        let duck_pq = tmp.path().join("duck.parquet");
        let (tdp, mbdp) = measured(
            Command::new("python3")
                .args(["-c", DUCKDB_PARQUET])
                .arg(&src)
                .arg(&duck_pq),
        );
        println!(
            "DuckDB (Python) NDJSON → Parquet, every field as it reads them: {tdp:.2} s, peak RSS {mbdp:.1} MB; auditrail's OCSF Parquet is {:.2}x its speed",
            tdp / top
        );
    } else {
        println!("DuckDB: not installed (pip install duckdb)");
    }
    let db = tmp.path().join("peer.db");
    let loaded = Command::new("python3")
        .args(["-c", SQLITE_LOAD])
        .arg(&src)
        .arg(&db)
        .status()
        .is_ok_and(|s| s.success());
    if loaded && Command::new("sqlite3").arg("-version").output().is_ok() {
        let sh = format!(
            "sqlite3 -csv -header {} 'SELECT * FROM events' > {}",
            db.display(),
            tmp.path().join("sqlite.csv").display()
        );
        let (ts, mbs) = measured(Command::new("sh").args(["-c", &sh]));
        println!("sqlite3 -csv of the same rows as a flat table: {ts:.2} s, peak RSS {mbs:.1} MB");
    } else {
        println!("sqlite3: not installed");
    }

    // The same CSV export once the events are sealed.
    support::run(&data, &["seal"]);
    let (tz, mbz) = export(&data, "csv", &csv);
    println!(
        "auditrail export --format csv, sealed: {tz:.2} s ({:.2}x the open export's time), peak RSS {mbz:.1} MB{}",
        tz / t,
        duck_secs.map_or(String::new(), |d| format!(
            "; {:.2}x DuckDB's speed",
            d / tz
        ))
    );
}
