//! What the benchmarks share: the event generator, settings from the environment, and
//! running the `auditrail` binary against a data dir.
#![allow(
    dead_code,
    clippy::unwrap_used,
    reason = "each benchmark uses part of this; a panic is a failed run"
)]

use std::io::Write;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_auditrail");

/// A numeric setting from the environment, or `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `p` quantile (0..=1) of `v`, which it sorts.
pub fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Writes events `0..n` to `path`, one JSON object per line.
pub fn write_ndjson(path: &Path, n: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..n {
        writeln!(f, "{}", event(i)).unwrap();
    }
}

/// Runs the binary on the data dir `dir`; panics unless it succeeds; returns stdout.
pub fn run(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Creates org `acme` in `dir` and bulk-loads `file` into it.
pub fn load(dir: &Path, file: &Path) {
    run(dir, &["orgs", "create", "acme"]);
    let file = file.to_str().unwrap();
    run(dir, &["ingest", "--org", "acme", "--batch", "20000", file]);
}

/// A deterministic, realistic event (~550 bytes as sent).
pub fn event(i: u64) -> Value {
    let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let actions = [
        "addProject",
        "releaseProject",
        "addPipeline",
        "updatePipeline",
        "setPassword",
        "CREATE_GRAPH",
        "UPDATE_GRAPH_VARIANT",
        "ADD_USER_TO_ORGANIZATION",
    ];
    json!({
        "id": format!("{:016x}{:016x}", x, x.rotate_left(17) ^ i),
        "action": actions[(x % actions.len() as u64) as usize],
        "actor": {"id": format!("u-{}", x % 1000), "type": "USER", "email": format!("user{}@example.com", x % 1000), "name": "Ann Lee", "role": "ORG_ADMIN"},
        "resource": {"type": "PROJECT", "id": format!("p-{}", (x >> 8) % 100_000)},
        "scope": {"type": "GRAPH", "id": format!("graph-{}", (x >> 20) % 200)},
        "details": {"name": format!("project {}", i), "language": "scala", "branch": "main", "version": (x % 97) as i64},
        "context": {"ip": "203.0.113.7", "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"},
        "outcome": "success"
    })
}

/// CPU seconds (user + system) this process has used so far, from `/proc/self/stat`
/// (Linux; `None` elsewhere). Differences over a phase give its CPU cost, which the
/// machine's other load disturbs far less than its throughput.
#[allow(dead_code, reason = "not every bench reports CPU")]
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // In clock ticks (USER_HZ), 100 a second on Linux.
    Some(ticks / 100.0)
}

/// Bytes this process has passed to `write`-like calls so far (`wchar` of
/// `/proc/self/io`: files and sockets; Linux, `None` elsewhere).
#[allow(dead_code, reason = "not every bench reports writes")]
pub fn written_bytes() -> Option<f64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|v| v.trim().parse().ok())
}

/// CPU seconds (user + system) used so far by this process's live threads named `name`
/// (`/proc/self/task/*/stat`; Linux, `None` elsewhere). A thread that has exited is not
/// counted, so take both readings while the threads of interest run.
#[allow(dead_code, reason = "not every bench reports a thread's CPU")]
pub fn thread_cpu_seconds(name: &str) -> Option<f64> {
    let mut total = 0.0;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let Ok(stat) = std::fs::read_to_string(task.ok()?.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if &stat[open + 1..close] != name {
            continue;
        }
        let f: Vec<&str> = stat[close + 2..].split(' ').collect();
        total += f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    }
    Some(total / 100.0)
}
