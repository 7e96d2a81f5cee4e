//! The event model: what a host product sends, how it is validated, and the canonical
//! stored form that is hashed into the log.
//!
//! Validation produces every problem of an event at once, each naming its field, so a
//! client can fix a batch in one round trip. A valid event is turned into a
//! [`PreparedEvent`]: its canonical JSON split around the two members (`received_at`,
//! `seq`) that only the log's single writer can assign, so the expensive work
//! (canonicalization) happens in parallel on request threads and the writer only splices.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value};

use sha2::{Digest, Sha256};

use crate::canonical::{self, write_string};
use crate::catalog::{Checked, Policy};
use crate::time;

/// Configurable bounds on what an event may carry.
#[derive(Debug, Clone)]
pub struct Limits {
    /// How far in the future `occurred_at` may lie (clock skew allowance).
    pub max_future: Duration,
    /// Serialized size of `details` in bytes.
    pub max_details_bytes: usize,
    /// Nesting depth of `details` (the object itself is depth 1).
    pub max_details_depth: usize,
    /// Keys in `details`, counted at every level.
    pub max_details_keys: usize,
    /// Characters in one `details` key.
    pub max_details_key_len: usize,
    /// Characters in one string value inside `details`.
    pub max_details_value_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_future: Duration::minutes(5),
            max_details_bytes: 32 * 1024,
            max_details_depth: 8,
            max_details_keys: 256,
            max_details_key_len: 128,
            max_details_value_len: 8192,
        }
    }
}

pub const MAX_ID_LEN: usize = 256;
pub const MAX_ACTION_LEN: usize = 128;
pub const MAX_TEXT_LEN: usize = 1024;
pub const ACTOR_TYPES: [&str; 4] = ["USER", "API_KEY", "GRAPH", "SYSTEM"];
/// `unknown`: the recorder could not learn it (the capture gateway stopped, or the
/// upstream did not answer in time, while the action was being carried out).
pub const OUTCOMES: [&str; 3] = ["success", "failure", "unknown"];

/// One problem with one field of one event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    pub field: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("{} invalid field(s), first: {}: {}", .0.len(), .0[0].field, .0[0].reason)]
    Invalid(Vec<FieldError>),
}

/// Terms the store indexes for search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Terms {
    pub action: String,
    pub actor_id: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub scope_id: Option<String>,
}

/// A validated event, canonicalized except for `received_at` and `seq`.
#[derive(Debug, Clone)]
pub struct PreparedEvent {
    /// The event's id: the client's, or one generated at acceptance.
    pub id: String,
    /// The client's idempotency key, if it gave one.
    pub client_id: Option<String>,
    /// Canonical members sorting before `received_at`, without braces.
    pub head: String,
    /// Canonical members between `received_at` and `seq` (`resource`, `scope`), each
    /// with its leading comma.
    pub mid: String,
    pub occurred_us: i64,
    pub terms: Terms,
    /// SHA-256 state after `0x00 ‖ "{" ‖ head`: most of the leaf hash, computed where
    /// the event is prepared so the single writer only hashes the short tail.
    pub leaf_prefix: Sha256,
    /// The org's catalog does not name the action (accepted: the org is not strict).
    pub unknown_action: bool,
}

impl PreparedEvent {
    /// The stored, canonical event text; its leaf hash is the log's leaf.
    pub fn assemble(&self, received_ms: i64, seq: u64) -> String {
        self.assemble_at(&time::format_millis(received_ms), seq)
    }

    /// [`Self::assemble`] with `received_at` already formatted ([`time::format_millis`]),
    /// as a writer does once for every event of a commit.
    pub fn assemble_at(&self, received_at: &str, seq: u64) -> String {
        let mut s = String::with_capacity(self.head.len() + self.mid.len() + 64);
        self.assemble_into(received_at, seq, &mut s);
        s
    }

    /// [`Self::assemble_at`], appended to `out`.
    fn assemble_into(&self, received_at: &str, seq: u64, out: &mut String) {
        out.push('{');
        out.push_str(&self.head);
        out.push_str(",\"received_at\":\"");
        out.push_str(received_at);
        out.push('"');
        out.push_str(&self.mid);
        out.push_str(",\"seq\":");
        push_decimal(seq, out);
        out.push('}');
    }

    /// The stored event text and its leaf hash, finishing the precomputed hash state.
    pub fn finish(&self, received_ms: i64, seq: u64) -> (String, crate::Hash) {
        self.finish_at(&time::format_millis(received_ms), seq)
    }

    /// [`Self::finish`] with `received_at` already formatted.
    pub fn finish_at(&self, received_at: &str, seq: u64) -> (String, crate::Hash) {
        let mut body = String::with_capacity(self.head.len() + self.mid.len() + 64);
        let leaf = self.finish_into(received_at, seq, &mut body);
        (body, leaf)
    }

    /// [`Self::finish_at`] into `body`, which it clears first: a writer reuses one buffer
    /// for every event of a commit.
    pub fn finish_into(&self, received_at: &str, seq: u64, body: &mut String) -> crate::Hash {
        body.clear();
        self.assemble_into(received_at, seq, body);
        let mut h = self.leaf_prefix.clone();
        h.update(&body.as_bytes()[1 + self.head.len()..]);
        h.finalize().into()
    }
}

/// Appends `n` in decimal.
fn push_decimal(mut n: u64, out: &mut String) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        out.push(char::from(d));
    }
}

/// Adds `leaf_hash` (hex) to a stored event's JSON for clients: they drop it and
/// re-canonicalize to recompute the leaf.
pub fn with_leaf_hash(stored: &str, leaf: &[u8; 32]) -> String {
    let body = stored.strip_suffix('}').unwrap_or(stored);
    format!("{body},\"leaf_hash\":\"{}\"}}", hex::encode(leaf))
}

struct Checker<'a> {
    index: Option<usize>,
    errors: &'a mut Vec<FieldError>,
}

/// Checks a string field; the reason on failure.
fn check_text(v: &Value, min: usize, max: usize) -> Result<&str, String> {
    let Value::String(s) = v else {
        return Err("must be a string".into());
    };
    text_reason(s, min, max)?;
    Ok(s)
}

/// Checks a text's length in characters and that it has no control characters.
fn text_reason(s: &str, min: usize, max: usize) -> Result<(), String> {
    // ASCII (the common case) is checked a byte at a time, without decoding characters,
    // in one pass that finds both whether it is ASCII and whether it holds a control
    // character (`char::is_control` on ASCII: C0 and DEL). A fold, not `any`, so it
    // vectorizes.
    let (high, ascii_control) = s.bytes().fold((false, false), |(h, c), b| {
        (h | (b >= 0x80), c | (b < 0x20) | (b == 0x7f))
    });
    let ascii = !high;
    let n = if ascii { s.len() } else { s.chars().count() };
    if n < min || n > max {
        return Err(format!("must be {min} to {max} characters, got {n}"));
    }
    let control = if ascii {
        ascii_control
    } else {
        s.chars().any(char::is_control)
    };
    if control {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

impl Checker<'_> {
    fn fail(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(FieldError {
            index: self.index,
            field: field.into(),
            reason: reason.into(),
        });
    }

    fn text<'v>(&mut self, field: &str, v: &'v Value, min: usize, max: usize) -> Option<&'v str> {
        check_text(v, min, max)
            .map_err(|reason| self.fail(field, reason))
            .ok()
    }

    /// Validates a small object of string fields (nulls mean absent).
    fn object<'v>(
        &mut self,
        field: &str,
        v: &'v Value,
        allowed: &[(&str, usize)],
    ) -> Option<&'v Map<String, Value>> {
        let Value::Object(map) = v else {
            self.fail(field, "must be an object");
            return None;
        };
        let before = self.errors.len();
        for (k, val) in map {
            match allowed.iter().find(|(name, _)| name == k) {
                Some((_, max)) if !val.is_null() => {
                    if let Err(reason) = check_text(val, 1, *max) {
                        self.fail(format!("{field}.{k}"), reason);
                    }
                }
                Some(_) => {}
                None => self.fail(
                    format!("{field}.{k}"),
                    format!("unknown field; allowed: {}", names(allowed)),
                ),
            }
        }
        (self.errors.len() == before).then_some(map)
    }
}

fn names(allowed: &[(&str, usize)]) -> String {
    allowed
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Walks `details` once, checking the configured limits and NULs; problems name the
/// path of the offending key or value, never the value itself.
struct Scan<'l> {
    limits: &'l Limits,
    keys: usize,
    depth: usize,
    nul: bool,
    problems: Vec<(String, String)>,
}

const MAX_SCAN_PROBLEMS: usize = 10;

fn chars(s: &str, max: usize) -> Option<usize> {
    // Bytes bound characters from above, so short strings skip the count.
    (s.len() > max)
        .then(|| s.chars().count())
        .filter(|n| *n > max)
}

impl Scan<'_> {
    fn problem(&mut self, field: String, reason: String) {
        if self.problems.len() < MAX_SCAN_PROBLEMS {
            self.problems.push((field, reason));
        }
    }

    fn value(&mut self, v: &Value, depth: usize, path: &mut String) {
        self.depth = self.depth.max(depth);
        match v {
            Value::String(s) => {
                self.nul |= s.contains('\0');
                if let Some(n) = chars(s, self.limits.max_details_value_len) {
                    let max = self.limits.max_details_value_len;
                    self.problem(
                        path.clone(),
                        format!("is {n} characters; at most {max} allowed"),
                    );
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    self.value(x, depth + 1, path);
                    path.truncate(len);
                }
            }
            Value::Object(m) => {
                self.keys += m.len();
                for (k, x) in m {
                    self.nul |= k.contains('\0');
                    let len = path.len();
                    path.push('.');
                    if let Some(n) = chars(k, self.limits.max_details_key_len) {
                        let shown: String = k.chars().take(32).collect();
                        path.push_str(&shown);
                        path.push('…');
                        let max = self.limits.max_details_key_len;
                        self.problem(
                            path.clone(),
                            format!("key is {n} characters; at most {max} allowed"),
                        );
                    } else {
                        path.push_str(k);
                    }
                    self.value(x, depth + 1, path);
                    path.truncate(len);
                }
            }
            _ => {}
        }
    }
}

/// The fields an event may have.
pub const TOP_LEVEL: [&str; 9] = [
    "id",
    "occurred_at",
    "action",
    "resource",
    "actor",
    "scope",
    "details",
    "context",
    "outcome",
];

/// `resource` and `scope`: their fields and each one's most characters.
pub const RESOURCE_FIELDS: [(&str, usize); 3] = [
    ("type", MAX_ACTION_LEN),
    ("id", MAX_ID_LEN),
    ("name", MAX_TEXT_LEN),
];
/// `actor`: its fields and each one's most characters.
pub const ACTOR_FIELDS: [(&str, usize); 5] = [
    ("id", MAX_ID_LEN),
    ("type", 32),
    ("email", MAX_TEXT_LEN),
    ("name", MAX_TEXT_LEN),
    ("role", MAX_ACTION_LEN),
];

/// What an event is validated against.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    pub org_id: &'a str,
    /// Acceptance time: the default `occurred_at`, and the reference for clock skew.
    pub now: DateTime<Utc>,
    pub limits: &'a Limits,
    /// The org's catalog, if it has one.
    pub catalog: Option<Policy<'a>>,
}

/// Validates one event as sent by a client and canonicalizes it for `rules.org_id`.
///
/// `index` is its position in a batch (named in errors); `new_id` makes an id when the
/// client gave none. With a catalog, the event is checked against it and its secrets are
/// replaced before canonicalization, so they never reach the hash or the store.
pub fn prepare(
    value: &Value,
    index: Option<usize>,
    rules: &Rules<'_>,
    new_id: impl FnOnce() -> String,
) -> Result<PreparedEvent, Vec<FieldError>> {
    let (org_id, now, limits) = (rules.org_id, rules.now, rules.limits);
    let mut errors = Vec::new();
    let mut c = Checker {
        index,
        errors: &mut errors,
    };
    let Value::Object(obj) = value else {
        c.fail("", "an event must be a JSON object");
        return Err(errors);
    };
    for k in obj.keys() {
        if !TOP_LEVEL.contains(&k.as_str()) {
            let reason = if ["seq", "org_id", "received_at", "leaf_hash"].contains(&k.as_str()) {
                "is assigned by auditrail and must not be sent".to_owned()
            } else {
                format!("unknown field; allowed: {}", TOP_LEVEL.join(", "))
            };
            c.fail(k.clone(), reason);
        }
    }
    let get = |k: &str| obj.get(k).filter(|v| !v.is_null());

    let action = match get("action") {
        Some(v) => c.text("action", v, 1, MAX_ACTION_LEN),
        None => {
            c.fail("action", "is required");
            None
        }
    };
    let client_id = get("id").and_then(|v| c.text("id", v, 1, MAX_ID_LEN));
    let occurred = match get("occurred_at") {
        None => Some(now),
        Some(Value::String(s)) => match time::parse_rfc3339(s) {
            Some(t) if t > now + limits.max_future => {
                c.fail(
                    "occurred_at",
                    format!(
                        "is more than {} seconds in the future",
                        limits.max_future.num_seconds()
                    ),
                );
                None
            }
            Some(t) => Some(t),
            None => {
                c.fail(
                    "occurred_at",
                    "must be an RFC 3339 timestamp such as 2026-11-21T10:15:30.123Z",
                );
                None
            }
        },
        Some(_) => {
            c.fail("occurred_at", "must be an RFC 3339 timestamp string");
            None
        }
    };
    let resource = get("resource").and_then(|v| c.object("resource", v, &RESOURCE_FIELDS));
    let scope = get("scope").and_then(|v| c.object("scope", v, &RESOURCE_FIELDS));
    let actor = get("actor").and_then(|v| {
        let a = c.object("actor", v, &ACTOR_FIELDS)?;
        if let Some(t) = a.get("type").and_then(Value::as_str)
            && !ACTOR_TYPES.contains(&t)
        {
            c.fail(
                "actor.type",
                format!("must be one of {}", ACTOR_TYPES.join(", ")),
            );
            return None;
        }
        Some(a)
    });
    let context = get("context").and_then(|v| {
        let Value::Object(m) = v else {
            c.fail("context", "must be an object");
            return None;
        };
        if m.len() > 16 {
            c.fail("context", "may have at most 16 keys");
        }
        for (k, val) in m {
            match check_text(val, 0, MAX_TEXT_LEN) {
                Err(reason) => c.fail(format!("context.{k}"), reason),
                Ok(s) if k == "ip" && s.parse::<std::net::IpAddr>().is_err() => {
                    c.fail("context.ip", "must be an IPv4 or IPv6 address")
                }
                Ok(_) => {}
            }
        }
        Some(m)
    });
    let outcome = get("outcome").and_then(|v| {
        let s = v.as_str().filter(|s| OUTCOMES.contains(s));
        if s.is_none() {
            c.fail("outcome", format!("must be one of {}", OUTCOMES.join(", ")));
        }
        s
    });
    let details = get("details").and_then(|v| {
        let Value::Object(m) = v else {
            c.fail("details", "must be an object");
            return None;
        };
        let mut scan = Scan {
            limits,
            keys: 0,
            depth: 1,
            nul: false,
            problems: Vec::new(),
        };
        scan.value(v, 1, &mut "details".to_owned());
        if scan.nul {
            c.fail("details", "must not contain NUL characters");
        }
        if scan.depth > limits.max_details_depth {
            c.fail(
                "details",
                format!(
                    "nests {} levels; at most {} allowed",
                    scan.depth, limits.max_details_depth
                ),
            );
        }
        if scan.keys > limits.max_details_keys {
            c.fail(
                "details",
                format!(
                    "has {} keys in all; at most {} allowed",
                    scan.keys, limits.max_details_keys
                ),
            );
        }
        for (field, reason) in scan.problems {
            c.fail(field, reason);
        }
        Some(m)
    });
    let checked = match (&rules.catalog, action) {
        (Some(policy), Some(action)) => {
            let rtype = resource.and_then(|r| r.get("type")).and_then(Value::as_str);
            policy.check(action, rtype, details, &mut |f, r| c.fail(f, r))
        }
        _ => Checked::default(),
    };
    let details_text = details.and_then(|original| {
        let m = checked.details.as_ref().unwrap_or(original);
        let mut text = String::with_capacity(128);
        match canonical::write_object(m, &mut text) {
            Ok(()) if text.len() > limits.max_details_bytes => {
                c.fail(
                    "details",
                    format!(
                        "is {} bytes; at most {} allowed",
                        text.len(),
                        limits.max_details_bytes
                    ),
                );
                None
            }
            Ok(()) => Some(text),
            Err(e) => {
                c.fail("details", e.to_string());
                None
            }
        }
    });
    if !errors.is_empty() {
        return Err(errors);
    }
    let (Some(action), Some(occurred)) = (action, occurred) else {
        return Err(errors);
    };

    let id = client_id.map_or_else(new_id, str::to_owned);
    let occurred_at = time::format(occurred);
    // Members in canonical (UTF-16) order; all names are ASCII so byte order is the same.
    let mut head = String::with_capacity(512);
    member(&mut head, "action", |o| write_string(action, o));
    if let Some(a) = actor {
        member(&mut head, "actor", |o| write_map(a, o));
    }
    if let Some(p) = &rules.catalog {
        member(&mut head, "catalog_version", |o| {
            o.push_str(&p.version.to_string())
        });
    }
    if let Some(m) = context {
        member(&mut head, "context", |o| write_map(m, o));
    }
    if let Some(d) = &details_text {
        member(&mut head, "details", |o| o.push_str(d));
    }
    member(&mut head, "id", |o| write_string(&id, o));
    member(&mut head, "occurred_at", |o| write_string(&occurred_at, o));
    member(&mut head, "org_id", |o| write_string(org_id, o));
    if let Some(out) = outcome {
        member(&mut head, "outcome", |o| write_string(out, o));
    }
    let mut mid = String::with_capacity(128);
    if let Some(r) = resource {
        mid.push(',');
        member(&mut mid, "resource", |o| write_map(r, o));
    }
    if let Some(s) = scope {
        mid.push(',');
        member(&mut mid, "scope", |o| write_map(s, o));
    }
    let s = |m: Option<&Map<String, Value>>, k: &str| {
        m.and_then(|m| m.get(k))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let terms = Terms {
        action: action.to_owned(),
        actor_id: s(actor, "id"),
        resource_type: s(resource, "type"),
        resource_id: s(resource, "id"),
        scope_id: s(scope, "id"),
    };
    let mut leaf_prefix = Sha256::new();
    leaf_prefix.update([0u8, b'{']);
    leaf_prefix.update(head.as_bytes());
    Ok(PreparedEvent {
        id,
        client_id: client_id.map(str::to_owned),
        head,
        mid,
        occurred_us: time::micros(occurred),
        terms,
        leaf_prefix,
        unknown_action: checked.unknown_action,
    })
}

fn member(out: &mut String, name: &'static str, value: impl FnOnce(&mut String)) {
    if !out.is_empty() && !out.ends_with(',') {
        out.push(',');
    }
    // Member names are the event's own, plain ASCII words: nothing in them to escape.
    debug_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    out.push('"');
    out.push_str(name);
    out.push_str("\":");
    value(out);
}

/// Writes an object of validated string values, leaving out nulls (absent).
fn write_map(m: &Map<String, Value>, out: &mut String) {
    // Only strings and nulls reach here, so canonicalization cannot fail.
    if m.values().any(Value::is_null) {
        let filtered: Map<String, Value> = m
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let _ = canonical::write_object(&filtered, out);
    } else {
        let _ = canonical::write_object(m, out);
    }
}

#[path = "event_fast.rs"]
pub mod fast;

#[cfg(test)]
#[path = "event_tests.rs"]
mod tests;
