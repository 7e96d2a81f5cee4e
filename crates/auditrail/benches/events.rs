//! The benchmark event generator, shared by the ingest and export benchmarks.

use serde_json::{Value, json};

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
