//! Applying an org's catalog to an incoming event: which actions, resource types and
//! `details` keys it accepts, and replacing secrets before anything is hashed or stored.
//! Error reasons name fields and keys, never values, so a secret cannot leak through one.

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use super::{Catalog, Node, Redaction, UnknownDetails};
use crate::canonical;

/// How one org applies its catalog.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    pub catalog: &'a Catalog,
    /// The org's catalog version, recorded in every event checked against it.
    pub version: u32,
    /// Refuse what the catalog does not name (otherwise accept and count it).
    pub strict: bool,
    /// The org's key for `hmac` redaction.
    pub hmac_key: &'a [u8; 32],
}

/// What checking did to an event.
#[derive(Debug, Default, PartialEq)]
pub struct Checked {
    /// `details` with secrets replaced and unknown keys dropped; `None` when unchanged.
    pub details: Option<Map<String, Value>>,
    /// The action is not in the catalog (accepted because the org is not strict).
    pub unknown_action: bool,
}

/// `hmac-sha256:<hex>` of a value under `key`: of a string's UTF-8 bytes, or of the
/// canonical JSON of anything else. What `POST /v1/hmac` returns and sensitive values
/// become in `hmac` mode.
pub fn hmac_value(key: &[u8; 32], value: &Value) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    match value {
        Value::String(s) => mac.update(s.as_bytes()),
        v => mac.update(
            canonical::to_string(v)
                .unwrap_or_else(|_| v.to_string())
                .as_bytes(),
        ),
    }
    format!("hmac-sha256:{}", hex::encode(mac.finalize().into_bytes()))
}

pub const REDACTED: &str = "[REDACTED]";

/// Whether `v` is already what a sensitive value becomes under `mode`: `"[REDACTED]"`,
/// or in `hmac` mode an `hmac-sha256:` digest. Such a value (sent by the capture
/// gateway, which replaces secrets before they touch its spool) is kept as it is rather
/// than replaced a second time.
pub fn is_redaction(mode: Redaction, v: &Value) -> bool {
    let Value::String(s) = v else {
        return false;
    };
    if s == REDACTED {
        return true;
    }
    mode == Redaction::Hmac
        && s.strip_prefix("hmac-sha256:").is_some_and(|h| {
            h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// Where in `details` the walk is; rendered only when a problem is reported.
#[derive(Clone, Copy)]
enum At<'a> {
    Root,
    Key(&'a At<'a>, &'a str),
    Index(&'a At<'a>, usize),
}

impl At<'_> {
    fn render(&self) -> String {
        match self {
            At::Root => "details".to_owned(),
            At::Key(parent, k) => format!("{}.{k}", parent.render()),
            At::Index(parent, i) => format!("{}[{i}]", parent.render()),
        }
    }
}

struct Walk<'a, 'f> {
    policy: &'a Policy<'a>,
    action: &'a str,
    fail: &'f mut dyn FnMut(String, String),
}

impl Policy<'_> {
    /// Checks `action`, `resource.type` and `details` of one event; problems go to
    /// `fail(field, reason)`.
    pub fn check(
        &self,
        action: &str,
        resource_type: Option<&str>,
        details: Option<&Map<String, Value>>,
        fail: &mut dyn FnMut(String, String),
    ) -> Checked {
        let cat = self.catalog;
        let Some(compiled) = cat.actions.get(action) else {
            if self.strict {
                fail(
                    "action".into(),
                    format!(
                        "`{action}` is not an action of catalog `{}` (version {})",
                        cat.name(),
                        self.version
                    ),
                );
            }
            return Checked {
                details: None,
                unknown_action: true,
            };
        };
        if self.strict
            && let Some(t) = resource_type
        {
            let declared = cat.doc.resource_types.contains_key(t);
            let allowed = compiled
                .resource_types
                .as_ref()
                .map_or(declared, |set| set.contains(t));
            if !declared {
                fail(
                    "resource.type".into(),
                    format!(
                        "`{t}` is not a resource type of catalog `{}`; it declares: {}",
                        cat.name(),
                        cat.doc
                            .resource_types
                            .keys()
                            .map(String::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            } else if !allowed {
                fail(
                    "resource.type".into(),
                    format!(
                        "action `{action}` does not apply to resource type `{t}`; allowed: {}",
                        cat.allowed_resource_types(action).join(", ")
                    ),
                );
            }
        }
        let details = details.and_then(|d| {
            let mut w = Walk {
                policy: self,
                action,
                fail,
            };
            w.map(&compiled.params, d, &At::Root)
        });
        Checked {
            details,
            unknown_action: false,
        }
    }

    fn redact(&self, v: &Value) -> Value {
        match self.catalog.doc.options.sensitive {
            Redaction::Redact => Value::String(REDACTED.to_owned()),
            Redaction::Hmac => Value::String(hmac_value(self.hmac_key, v)),
        }
    }
}

/// The new value of a member: unchanged, dropped, or replaced.
enum Edit {
    Keep,
    Drop,
    Set(Value),
}

impl Walk<'_, '_> {
    /// Walks one object level; the changed object, if anything changed.
    fn map(
        &mut self,
        node: &Node,
        m: &Map<String, Value>,
        at: &At<'_>,
    ) -> Option<Map<String, Value>> {
        let mut out: Option<Map<String, Value>> = None;
        for (i, (k, v)) in m.iter().enumerate() {
            let edit = match node.children.get(k) {
                Some(child) => self.member(child, v, &At::Key(at, k)),
                None if node.open => Edit::Keep,
                None if !self.policy.strict => Edit::Keep,
                None => match self.policy.catalog.doc.options.unknown_details {
                    UnknownDetails::Drop => Edit::Drop,
                    UnknownDetails::Reject => {
                        (self.fail)(
                            At::Key(at, k).render(),
                            format!(
                                "is not a parameter of `{}`; allowed here: {}",
                                self.action,
                                node.names()
                            ),
                        );
                        Edit::Keep
                    }
                },
            };
            if matches!(edit, Edit::Keep) && out.is_none() {
                continue;
            }
            // First change: copy the members before this one.
            let o = out.get_or_insert_with(|| {
                m.iter()
                    .take(i)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            });
            match edit {
                Edit::Keep => {
                    o.insert(k.clone(), v.clone());
                }
                Edit::Drop => {}
                Edit::Set(nv) => {
                    o.insert(k.clone(), nv);
                }
            }
        }
        out
    }

    fn member(&mut self, node: &Node, v: &Value, at: &At<'_>) -> Edit {
        if node.sensitive && !v.is_null() {
            if is_redaction(self.policy.catalog.doc.options.sensitive, v) {
                return Edit::Keep;
            }
            return Edit::Set(self.policy.redact(v));
        }
        if node.children.is_empty() {
            return Edit::Keep;
        }
        match v {
            Value::Object(m) => self
                .map(node, m, at)
                .map_or(Edit::Keep, |m| Edit::Set(Value::Object(m))),
            Value::Array(items) => {
                let mut out: Option<Vec<Value>> = None;
                for (i, item) in items.iter().enumerate() {
                    let item_at = At::Index(at, i);
                    let edit = match item {
                        Value::Object(m) => self
                            .map(node, m, &item_at)
                            .map_or(Edit::Keep, |m| Edit::Set(Value::Object(m))),
                        Value::Null => Edit::Keep,
                        _ => {
                            self.not_nested(node, &item_at);
                            Edit::Keep
                        }
                    };
                    if let Edit::Set(nv) = edit {
                        out.get_or_insert_with(|| items[..i].to_vec()).push(nv);
                    } else if let Some(o) = &mut out {
                        o.push(item.clone());
                    }
                }
                out.map_or(Edit::Keep, |a| Edit::Set(Value::Array(a)))
            }
            Value::Null => Edit::Keep,
            _ => {
                self.not_nested(node, at);
                Edit::Keep
            }
        }
    }

    fn not_nested(&mut self, node: &Node, at: &At<'_>) {
        if self.policy.strict && !node.open {
            (self.fail)(
                at.render(),
                format!(
                    "must be an object, or a list of objects, with keys among: {}",
                    node.names()
                ),
            );
        }
    }
}
