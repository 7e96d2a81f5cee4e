//! Catalogs: an org's registry of event types (resource types, actions, the `details`
//! keys each action may carry and which of them are secrets), parsed from TOML or JSON,
//! checked, and compiled into the form events are validated against (`check.rs`).
//!
//! The format is documented in `docs/catalogs.md`; the two built-ins live in
//! `catalogs/` at the repository root and are compiled into the binary (`builtin.rs`).

mod builtin;
mod check;
mod document;

use std::collections::{BTreeMap, BTreeSet, HashMap};

pub use builtin::{BUILTIN_NAMES, builtin, builtin_source};
pub use check::{Checked, Policy, REDACTED, hmac_value, is_redaction};
pub use document::{
    Action, DetailsRule, Document, Form, GatewayRule, Options, Redaction, ResourceType,
    UnknownDetails,
};

use crate::FieldError;

/// Why a catalog document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog is not valid {format}: {message}")]
    Syntax {
        format: &'static str,
        message: String,
    },
    #[error("catalog has {} problem(s), first: {}: {}", .0.len(), .0[0].field, .0[0].reason)]
    Invalid(Vec<FieldError>),
}

impl CatalogError {
    /// Every problem, each naming its field.
    pub fn problems(&self) -> Vec<FieldError> {
        match self {
            CatalogError::Syntax { message, .. } => vec![FieldError {
                index: None,
                field: String::new(),
                reason: message.clone(),
            }],
            CatalogError::Invalid(v) => v.clone(),
        }
    }
}

/// A checked catalog, ready to validate events.
#[derive(Debug, Clone)]
pub struct Catalog {
    doc: Document,
    actions: HashMap<String, Compiled>,
}

/// One action, compiled: its allowed resource types and its parameter tree.
#[derive(Debug, Clone)]
struct Compiled {
    /// `None`: any resource type of the catalog.
    resource_types: Option<BTreeSet<String>>,
    params: Node,
}

/// A level of an action's `details`: which keys it may hold and how each is treated.
#[derive(Debug, Clone, Default)]
struct Node {
    /// Any key is allowed at this level (open details, or a leaf parameter).
    open: bool,
    /// The value is a secret, replaced before anything is hashed or stored.
    sensitive: bool,
    children: BTreeMap<String, Node>,
}

impl Node {
    fn insert(&mut self, path: &[&str], open: bool, sensitive: bool) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        let child = self.children.entry((*first).to_owned()).or_insert(Node {
            open: true,
            ..Node::default()
        });
        if rest.is_empty() {
            child.sensitive |= sensitive;
        } else {
            // A parent of listed paths holds only those paths, unless details are open.
            child.open = open;
            child.insert(rest, open, sensitive);
        }
    }

    /// Names allowed at this level, for error messages.
    fn names(&self) -> String {
        let names: Vec<&str> = self.children.keys().map(String::as_str).collect();
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    }
}

const MAX_NAME: usize = 128;

fn bad_name(s: &str) -> Option<String> {
    let n = s.chars().count();
    if n == 0 || n > MAX_NAME {
        return Some(format!("must be 1 to {MAX_NAME} characters, got {n}"));
    }
    if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Some("must not contain spaces or control characters".into());
    }
    None
}

impl Catalog {
    /// Parses and checks a TOML catalog.
    pub fn from_toml(text: &str) -> Result<Self, CatalogError> {
        let doc: Document = toml::from_str(text).map_err(|e| CatalogError::Syntax {
            format: "TOML",
            message: e.message().to_owned()
                + &e.span()
                    .map(|s| format!(" (at byte {})", s.start))
                    .unwrap_or_default(),
        })?;
        Self::from_document(doc)
    }

    /// Parses and checks a JSON catalog (the API's form, and how catalogs are stored).
    pub fn from_json(value: &serde_json::Value) -> Result<Self, CatalogError> {
        let doc: Document =
            serde_json::from_value(value.clone()).map_err(|e| CatalogError::Syntax {
                format: "JSON",
                message: e.to_string(),
            })?;
        Self::from_document(doc)
    }

    /// Checks a parsed document: every name well formed, every reference declared.
    pub fn from_document(doc: Document) -> Result<Self, CatalogError> {
        let mut errors = Vec::new();
        let mut fail = |field: String, reason: String| {
            errors.push(FieldError {
                index: None,
                field,
                reason,
            })
        };
        let name_ok = doc.name.len() <= 64
            && !doc.name.is_empty()
            && doc
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !name_ok {
            fail(
                "name".into(),
                "must be 1-64 of a-z, 0-9, '-' and '_'".into(),
            );
        }
        if doc.actions.is_empty() {
            fail("actions".into(), "must name at least one action".into());
        }
        for name in doc.resource_types.keys() {
            if let Some(r) = bad_name(name) {
                fail(format!("resource_types.{name}"), format!("name {r}"));
            }
        }
        check_gateway(&doc.gateway, "gateway", &mut fail);
        let mut actions = HashMap::with_capacity(doc.actions.len());
        for (name, a) in &doc.actions {
            let at = format!("actions.{name}");
            if let Some(r) = bad_name(name) {
                fail(at.clone(), format!("name {r}"));
            }
            if let Some(types) = &a.resource_types {
                if types.is_empty() {
                    fail(
                        format!("{at}.resource_types"),
                        "must not be empty; leave it out to allow every resource type".into(),
                    );
                }
                for (i, t) in types.iter().enumerate() {
                    if !doc.resource_types.contains_key(t) {
                        fail(
                            format!("{at}.resource_types[{i}]"),
                            format!("`{t}` is not declared under resource_types"),
                        );
                    }
                }
            }
            if let Some(g) = &a.gateway {
                check_gateway(g, &format!("{at}.gateway"), &mut fail);
            }
            let open = a.details.unwrap_or(doc.options.details) == DetailsRule::Open;
            let mut params = Node {
                open,
                ..Node::default()
            };
            let lists = std::iter::once(("parameters".to_owned(), &a.parameters)).chain(
                a.forms
                    .iter()
                    .enumerate()
                    .map(|(i, f)| (format!("forms[{i}].parameters"), &f.parameters)),
            );
            let mut listed: BTreeSet<&str> = BTreeSet::new();
            for (list_name, list) in lists {
                let mut seen = BTreeSet::new();
                for (i, p) in list.iter().enumerate() {
                    let field = format!("{at}.{list_name}[{i}]");
                    match parse_path(p) {
                        Err(r) => fail(field, r),
                        Ok(_) if !seen.insert(p.as_str()) => {
                            fail(field, format!("`{p}` is listed twice"))
                        }
                        Ok(path) => {
                            listed.insert(p.as_str());
                            params.insert(&path, open, false);
                        }
                    }
                }
            }
            for p in &listed {
                let prefix = format!("{p}.");
                if let Some(child) = listed.iter().find(|q| q.starts_with(&prefix)) {
                    fail(
                        format!("{at}.parameters"),
                        format!(
                            "`{p}` is both a parameter and the parent of `{child}`; list only the nested paths"
                        ),
                    );
                }
            }
            for (i, s) in a.sensitive.iter().enumerate() {
                let field = format!("{at}.sensitive[{i}]");
                match parse_path(s) {
                    Err(r) => fail(field, r),
                    Ok(_) if !open && !listed.contains(s.as_str()) => fail(
                        field,
                        format!("`{s}` is not one of the action's parameters"),
                    ),
                    Ok(path) => params.insert(&path, open, true),
                }
            }
            actions.insert(
                name.clone(),
                Compiled {
                    resource_types: a
                        .resource_types
                        .as_ref()
                        .map(|t| t.iter().cloned().collect()),
                    params,
                },
            );
        }
        if errors.is_empty() {
            Ok(Self { doc, actions })
        } else {
            Err(CatalogError::Invalid(errors))
        }
    }

    pub fn name(&self) -> &str {
        &self.doc.name
    }

    pub fn document(&self) -> &Document {
        &self.doc
    }

    /// The OCSF activity each action declares (those that declare one).
    pub fn activities(&self) -> HashMap<String, crate::ocsf::Activity> {
        self.doc
            .actions
            .iter()
            .filter_map(|(name, a)| a.activity.map(|act| (name.clone(), act)))
            .collect()
    }

    /// The catalog as JSON, the form it is stored and served in.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.doc).unwrap_or_default()
    }

    pub fn has_action(&self, action: &str) -> bool {
        self.actions.contains_key(action)
    }

    /// The resource types `action` may act on (every declared one when it lists none).
    pub fn allowed_resource_types(&self, action: &str) -> Vec<&str> {
        match self.actions.get(action).map(|a| &a.resource_types) {
            Some(Some(t)) => t.iter().map(String::as_str).collect(),
            Some(None) => self.doc.resource_types.keys().map(String::as_str).collect(),
            None => Vec::new(),
        }
    }
}

/// Checks the argument paths and scope type of a `gateway` table.
fn check_gateway(g: &GatewayRule, at: &str, fail: &mut dyn FnMut(String, String)) {
    for (list, paths) in [("resource_id", &g.resource_id), ("scope_id", &g.scope_id)] {
        for (i, p) in paths.iter().enumerate() {
            if let Err(r) = parse_path(p) {
                fail(format!("{at}.{list}[{i}]"), r);
            }
        }
    }
    if let Some(r) = g.scope_type.as_deref().and_then(bad_name) {
        fail(format!("{at}.scope_type"), r);
    }
}

/// Splits a dotted parameter path, refusing empty or malformed segments.
pub fn parse_path(p: &str) -> Result<Vec<&str>, String> {
    let parts: Vec<&str> = p.split('.').collect();
    for part in &parts {
        if part.is_empty() {
            return Err(format!("`{p}` has an empty path segment"));
        }
        if let Some(r) = bad_name(part) {
            return Err(format!("`{p}`: segment {r}"));
        }
    }
    if parts.len() > 8 {
        return Err(format!("`{p}` nests deeper than 8 levels"));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests;
