//! Which keys may call each operation, stated in the document as OpenAPI 3.1 allows for
//! a bearer scheme: the role names in the operation's security requirement. The
//! contract test calls every operation with a key of each role and holds the server to
//! this table (a role not named gets 403; one named never does).

use serde_json::{Value, json};

/// The platform admin token (`AUDITRAIL_ADMIN_TOKEN`): creates orgs, manages their keys.
pub const PLATFORM: &str = "platform_admin";

const ADMIN: &[&str] = &["admin"];
const READ: &[&str] = &["viewer", "admin"];
const MANAGE: &[&str] = &[PLATFORM, "admin"];

/// Method, path and the roles that may call it.
pub const ROLES: &[(&str, &str, &[&str])] = &[
    ("post", "/v1/orgs", &[PLATFORM]),
    ("post", "/v1/orgs/{org}/keys", MANAGE),
    ("get", "/v1/orgs/{org}/keys", MANAGE),
    ("delete", "/v1/orgs/{org}/keys/{key_id}", MANAGE),
    ("post", "/v1/orgs/{org}/viewer-tokens", MANAGE),
    ("put", "/v1/orgs/{org}/catalog", MANAGE),
    ("put", "/v1/orgs/{org}/destinations/{name}", MANAGE),
    ("put", "/v1/orgs/{org}/export-webhook", MANAGE),
    ("delete", "/v1/orgs/{org}/export-webhook", MANAGE),
    ("get", "/v1/orgs/{org}/admin-emails", MANAGE),
    ("put", "/v1/orgs/{org}/admin-emails", MANAGE),
    ("get", "/v1/catalog", &["ingest", "viewer", "admin"]),
    ("post", "/v1/hmac", ADMIN),
    ("post", "/v1/events", &["ingest", "admin"]),
    ("get", "/v1/events", READ),
    ("get", "/v1/events/stream", READ),
    ("post", "/v1/exports", ADMIN),
    ("get", "/v1/exports", READ),
    ("get", "/v1/exports/{id}", READ),
    ("get", "/v1/exports/{id}/checkpoint", READ),
    ("get", "/v1/exports/{id}/download", ADMIN),
    ("get", "/v1/exports/{id}/proof", ADMIN),
    ("get", "/v1/destinations", ADMIN),
    ("get", "/v1/destinations/{name}", ADMIN),
    ("put", "/v1/destinations/{name}", ADMIN),
    ("delete", "/v1/destinations/{name}", ADMIN),
    ("post", "/v1/destinations/{name}/pause", ADMIN),
    ("post", "/v1/destinations/{name}/resume", ADMIN),
    ("post", "/v1/destinations/{name}/test", ADMIN),
    ("get", "/v1/destinations/{name}/bucket-policy", ADMIN),
    ("get", "/v1/checkpoints/latest", READ),
    ("get", "/v1/public-key", READ),
    ("get", "/v1/proofs/inclusion", READ),
    ("get", "/v1/proofs/consistency", READ),
    ("get", "/v1/witnesses", ADMIN),
    ("get", "/v1/witnesses/{name}", ADMIN),
    ("put", "/v1/witnesses/{name}", ADMIN),
    ("delete", "/v1/witnesses/{name}", ADMIN),
    ("get", "/logs/{org}/checkpoint", READ),
    ("get", "/logs/{org}/tile/{path}", READ),
];

/// Sets each operation's security requirement to its roles, and says them in its
/// description.
pub(crate) fn apply(doc: &mut Value) {
    for (method, path, roles) in ROLES {
        let pointer = format!(
            "/paths/{}/{method}",
            path.replace('~', "~0").replace('/', "~1")
        );
        let Some(op) = doc.pointer_mut(&pointer) else {
            continue;
        };
        op["security"] = if *path == "/v1/exports/{id}/download" {
            // Or a signed link (`org`, `expires`, `sig`) and no key at all.
            json!([{ "bearer": roles }, {}])
        } else {
            json!([{ "bearer": roles }])
        };
        let said = format!("Keys: {}.", roles.join(", "));
        op["description"] = match op.get("description").and_then(Value::as_str) {
            Some(d) if !d.is_empty() => json!(format!("{d}\n\n{said}")),
            _ => json!(said),
        };
    }
}
