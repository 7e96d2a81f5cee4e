//! Events as OCSF records: each stored event becomes one API Activity (class 6003) of
//! OCSF 1.1.0, the version Amazon Security Lake takes. Pure: the caller gives the stored
//! event's canonical text and the activities its catalog declares.
//!
//! | OCSF | from the event |
//! | --- | --- |
//! | `activity_id` | the catalog's `activity` for the action, else guessed from its name |
//! | `api.operation` | `action` |
//! | `actor.user` | `actor` (`uid`, `name`, `email_addr`, `type_id` from `actor.type`) |
//! | `src_endpoint` | `context.ip` (`name: "unknown"` without one) |
//! | `http_request.user_agent` | `context.user_agent` |
//! | `resources` | `resource`, then `scope` (labelled `scope`) |
//! | `status_id` | `outcome` |
//! | `time` / `metadata.logged_time` | `occurred_at` / `received_at`, in ms |
//! | `metadata.uid`, `.sequence`, `.tenant_uid` | `id`, `seq`, `org_id` |
//! | `unmapped` | the stored event exactly as hashed (in Parquet, as its text) |

use std::borrow::Cow;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// The OCSF version records claim and are validated against.
pub const VERSION: &str = "1.1.0";
pub const CLASS_UID: u32 = 6003;
pub const CATEGORY_UID: u32 = 6;

/// What an action does to its resource, in OCSF's API Activity terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activity {
    Create,
    Read,
    Update,
    Delete,
    Other,
}

impl Activity {
    pub fn id(self) -> u32 {
        match self {
            Activity::Create => 1,
            Activity::Read => 2,
            Activity::Update => 3,
            Activity::Delete => 4,
            Activity::Other => 99,
        }
    }

    /// `API Activity: Create`, …: the record's `type_name`.
    pub fn type_name(self) -> &'static str {
        match self {
            Activity::Create => "API Activity: Create",
            Activity::Read => "API Activity: Read",
            Activity::Update => "API Activity: Update",
            Activity::Delete => "API Activity: Delete",
            Activity::Other => "API Activity: Other",
        }
    }

    /// OCSF's caption of the activity.
    pub fn caption(self) -> &'static str {
        match self {
            Activity::Create => "Create",
            Activity::Read => "Read",
            Activity::Update => "Update",
            Activity::Delete => "Delete",
            Activity::Other => "Other",
        }
    }

    /// The activity an action's name suggests (`addProject`, `DELETE`,
    /// `IMPLEMENTING_SERVICE_REMOVE`, `fabricDetailQuery`): its words are read in order
    /// and the first that names an activity decides; none is `Other`. A catalog that
    /// declares `activity` for an action overrides this.
    pub fn guess(action: &str) -> Activity {
        words(action)
            .iter()
            .find_map(|w| {
                // `deleted`, `added`: the verb in the past tense, as event names often are.
                word_activity(w)
                    .or_else(|| w.strip_suffix('d').and_then(word_activity))
                    .or_else(|| w.strip_suffix("ed").and_then(word_activity))
            })
            .unwrap_or(Activity::Other)
    }
}

fn word_activity(w: &str) -> Option<Activity> {
    Some(match w {
        "create" | "add" | "new" | "insert" | "register" | "clone" | "import" | "invite"
        | "join" | "upload" | "generate" | "issue" => Activity::Create,
        "get" | "read" | "list" | "view" | "fetch" | "query" | "search" | "show" | "describe"
        | "download" | "export" | "login" | "access" => Activity::Read,
        "update" | "set" | "edit" | "modify" | "change" | "rename" | "patch" | "upsert"
        | "enable" | "disable" | "toggle" | "mark" | "override" | "undo" | "restore"
        | "reactivate" | "move" | "replace" | "assign" | "grant" | "link" | "unlink" | "merge"
        | "commit" | "release" | "sync" | "cancel" | "ignore" => Activity::Update,
        "delete" | "remove" | "destroy" | "purge" | "revoke" | "terminate" | "leave" | "drop"
        | "unregister" | "erase" => Activity::Delete,
        _ => return None,
    })
}

/// `fabricDetailQuery` → fabric, detail, query; `SOFT_DELETE` → soft, delete; lowercase.
fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in s.chars() {
        if !c.is_ascii_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        cur.push(c.to_ascii_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Turns stored events into OCSF records for one org.
#[derive(Debug, Clone, Default)]
pub struct Mapper {
    declared: HashMap<String, Activity>,
    product_version: String,
}

/// The stored event's members a record reads.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Stored<'a> {
    #[serde(borrow)]
    id: &'a str,
    seq: u64,
    #[serde(borrow)]
    org_id: &'a str,
    #[serde(borrow)]
    occurred_at: &'a str,
    #[serde(borrow)]
    received_at: &'a str,
    #[serde(borrow)]
    action: Cow<'a, str>,
    #[serde(borrow)]
    actor: Option<StoredActor<'a>>,
    #[serde(borrow)]
    resource: Option<StoredPart<'a>>,
    #[serde(borrow)]
    scope: Option<StoredPart<'a>>,
    #[serde(borrow)]
    context: Option<StoredContext<'a>>,
    #[serde(borrow)]
    outcome: Option<&'a str>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct StoredActor<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    email: Option<Cow<'a, str>>,
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
}

/// The members of `context` a record maps; the others stay in `unmapped`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct StoredContext<'a> {
    #[serde(borrow)]
    ip: Option<Cow<'a, str>>,
    #[serde(borrow)]
    user_agent: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct StoredPart<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    id: Cow<'a, str>,
}

/// One OCSF record, borrowed from the stored event it maps; serialize it (to JSON, or
/// into Arrow through serde).
#[derive(Serialize)]
pub struct Record<'a> {
    activity_id: u32,
    activity_name: &'static str,
    category_uid: u32,
    category_name: &'static str,
    class_uid: u32,
    class_name: &'static str,
    type_uid: u32,
    type_name: &'static str,
    severity_id: u32,
    severity: &'static str,
    time: i64,
    status_id: u32,
    status: &'static str,
    metadata: Metadata<'a>,
    actor: Actor<'a>,
    api: Api<'a>,
    src_endpoint: Endpoint<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_request: Option<HttpRequest<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    resources: Vec<Resource<'a>>,
    /// `None` while a JSON line is written: the stored text is spliced in as it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    unmapped: Option<UnmappedText<'a>>,
}

/// `unmapped` in Parquet: the stored event's text.
#[derive(Serialize)]
struct UnmappedText<'a> {
    event: &'a str,
}

#[derive(Serialize)]
struct Metadata<'a> {
    version: &'static str,
    product: Product<'a>,
    uid: &'a str,
    sequence: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    logged_time: Option<i64>,
    tenant_uid: &'a str,
    log_name: &'static str,
}

#[derive(Serialize)]
struct Product<'a> {
    name: &'static str,
    vendor_name: &'static str,
    version: &'a str,
}

#[derive(Serialize)]
struct Actor<'a> {
    user: User<'a>,
}

#[derive(Serialize)]
struct User<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<Cow<'a, str>>,
    name: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email_addr: Option<Cow<'a, str>>,
    type_id: u32,
    #[serde(rename = "type")]
    kind: Cow<'a, str>,
}

#[derive(Serialize)]
struct Api<'a> {
    operation: Cow<'a, str>,
    request: Request<'a>,
}

#[derive(Serialize)]
struct Request<'a> {
    uid: &'a str,
}

#[derive(Serialize)]
struct Endpoint<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'static str>,
}

#[derive(Serialize)]
struct HttpRequest<'a> {
    user_agent: Cow<'a, str>,
}

#[derive(Serialize)]
struct Resource<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    uid: Cow<'a, str>,
    #[serde(rename = "type")]
    kind: Cow<'a, str>,
    name: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    labels: Option<[&'static str; 1]>,
}

/// A stored event that is not the JSON object auditrail stores.
#[derive(Debug, thiserror::Error)]
#[error("seq {seq}: not a stored event: {reason}")]
pub struct RecordError {
    pub seq: u64,
    pub reason: String,
}

fn ms(t: &str) -> Option<i64> {
    crate::time::parse_rfc3339(t).map(|t| t.timestamp_millis())
}

impl Mapper {
    /// A mapper using the activities `declared` per action (from the org's catalog),
    /// naming `product_version` as the auditrail that wrote the records.
    pub fn new(declared: HashMap<String, Activity>, product_version: &str) -> Self {
        Self {
            declared,
            product_version: product_version.to_owned(),
        }
    }

    pub fn activity(&self, action: &str) -> Activity {
        self.declared
            .get(action)
            .copied()
            .unwrap_or_else(|| Activity::guess(action))
    }

    /// The OCSF record of one stored event (its canonical text), as one line of JSON,
    /// the stored text in `unmapped` byte for byte.
    pub fn record(&self, stored: &str) -> Result<String, RecordError> {
        let r = self.map(stored, false)?;
        let seq = r.metadata.sequence;
        let mut line = serde_json::to_string(&r).map_err(|x| RecordError {
            seq,
            reason: x.to_string(),
        })?;
        // `{…}` → `{…,"unmapped":<stored>}`: the stored event is canonical JSON.
        line.pop();
        line.reserve(stored.len() + 13);
        line.push_str(",\"unmapped\":");
        line.push_str(stored);
        line.push('}');
        Ok(line)
    }

    /// The record of one stored event, to serialize; `unmapped` holds the stored text
    /// when `with_text` (Parquet), and is left out otherwise.
    pub fn map<'a>(&'a self, stored: &'a str, with_text: bool) -> Result<Record<'a>, RecordError> {
        let fail = |reason: String| RecordError { seq: 0, reason };
        let e: Stored<'_> = serde_json::from_str(stored).map_err(|x| fail(x.to_string()))?;
        let fail = |reason: &str| RecordError {
            seq: e.seq,
            reason: reason.to_owned(),
        };
        let received = ms(e.received_at);
        let time = ms(e.occurred_at)
            .or(received)
            .ok_or_else(|| fail("no readable occurred_at or received_at"))?;
        let activity = self.activity(&e.action);
        let (status_id, status) = match e.outcome {
            Some("success") => (1, "Success"),
            Some("failure") => (2, "Failure"),
            _ => (0, "Unknown"),
        };
        let actor = e.actor.unwrap_or_default();
        let (type_id, kind) = match actor.kind {
            Some(k) if k == "USER" => (1, Cow::Borrowed("User")),
            Some(k) if k == "SYSTEM" => (3, Cow::Borrowed("System")),
            Some(other) => (99, other),
            None => (0, Cow::Borrowed("Unknown")),
        };
        let name = match (&actor.name, &actor.id) {
            (Some(n), _) => n.clone(),
            (None, Some(id)) => id.clone(),
            (None, None) => Cow::Borrowed("unknown"),
        };
        let user = User {
            uid: actor.id,
            name,
            email_addr: actor.email,
            type_id,
            kind,
        };
        let context = e.context.unwrap_or_default();
        let mut resources = Vec::new();
        for (part, label) in [(e.resource, None), (e.scope, Some(["scope"]))] {
            if let Some(p) = part {
                let name = if p.id.is_empty() {
                    p.kind.clone()
                } else {
                    p.id.clone()
                };
                resources.push(Resource {
                    uid: p.id,
                    kind: p.kind,
                    name,
                    labels: label,
                });
            }
        }
        let r = Record {
            activity_id: activity.id(),
            activity_name: activity.caption(),
            category_uid: CATEGORY_UID,
            category_name: "Application Activity",
            class_uid: CLASS_UID,
            class_name: "API Activity",
            type_uid: CLASS_UID * 100 + activity.id(),
            type_name: activity.type_name(),
            severity_id: 1,
            severity: "Informational",
            time,
            status_id,
            status,
            metadata: Metadata {
                version: VERSION,
                product: Product {
                    name: "auditrail",
                    vendor_name: "auditrail",
                    version: &self.product_version,
                },
                uid: e.id,
                sequence: e.seq,
                logged_time: received,
                tenant_uid: e.org_id,
                log_name: "audit",
            },
            actor: Actor { user },
            api: Api {
                operation: e.action,
                request: Request { uid: e.id },
            },
            src_endpoint: Endpoint {
                name: if context.ip.is_none() {
                    Some("unknown")
                } else {
                    None
                },
                ip: context.ip,
            },
            http_request: context.user_agent.map(|ua| HttpRequest { user_agent: ua }),
            resources,
            unmapped: with_text.then_some(UnmappedText { event: stored }),
        };
        Ok(r)
    }
}

/// The stored event an OCSF JSON line carries in `unmapped`, as an exported NDJSON line
/// (`leaf_hash` recomputed and added), so a delivered OCSF object is verified like an
/// NDJSON one: its leaves against the signed roots.
pub fn exported_line(record: &str) -> Result<String, String> {
    let v: serde_json::Value =
        serde_json::from_str(record).map_err(|e| format!("not JSON: {e}"))?;
    let event = v
        .get("unmapped")
        .filter(|u| u.is_object())
        .ok_or("no event in `unmapped`")?;
    let canonical = crate::canonical::to_string(event).map_err(|e| e.to_string())?;
    let leaf = crate::merkle::leaf_hash(canonical.as_bytes());
    Ok(crate::event::with_leaf_hash(&canonical, &leaf))
}

#[cfg(test)]
#[path = "ocsf_tests.rs"]
mod tests;
