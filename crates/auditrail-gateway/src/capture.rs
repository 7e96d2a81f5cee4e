//! Which root fields of a GraphQL operation the catalog names, and the event each one
//! becomes: action = field name, resource type = the action's entity, `details` = the
//! action's parameters taken from the field's arguments (variables resolved, nested
//! paths over input objects and lists of them), secrets replaced before they go
//! anywhere.

use std::collections::{BTreeMap, HashMap, HashSet};

use async_graphql_parser::types::{
    Directive, DocumentOperations, ExecutableDocument, OperationDefinition, Selection, SelectionSet,
};
use async_graphql_parser::{Positioned, parse_query};
use async_graphql_value::Value as Gql;
use serde_json::{Map, Value};

use auditrail_core::catalog::{Catalog, DetailsRule, REDACTED, Redaction, hmac_value, parse_path};

use crate::request::{GraphqlRequest, Malformed};

/// One audited root field of an operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Capture {
    /// The field's key in the response (its alias, or its name).
    pub key: String,
    pub action: String,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub scope_type: Option<String>,
    pub scope_id: Option<String>,
    /// The action's parameters, secrets replaced.
    pub details: Map<String, Value>,
}

/// A catalog compiled for matching GraphQL fields.
#[derive(Debug)]
pub struct Rules {
    actions: HashMap<String, ActionRule>,
    redaction: Redaction,
}

#[derive(Debug)]
struct ActionRule {
    /// The action's entity when the catalog gives it exactly one.
    resource_type: Option<String>,
    params: Tree,
    resource_id: Vec<Vec<String>>,
    scope_id: Vec<Vec<String>>,
    scope_type: Option<String>,
}

/// The parameter paths of an action, as a tree of argument names.
#[derive(Debug, Default)]
struct Tree {
    /// Keys not listed are kept too (details are `open`).
    open: bool,
    sensitive: bool,
    children: BTreeMap<String, Tree>,
}

impl Tree {
    fn insert(&mut self, path: &[&str], sensitive: bool) {
        let Some((first, rest)) = path.split_first() else {
            self.sensitive |= sensitive;
            return;
        };
        let open = self.open;
        self.children
            .entry((*first).to_owned())
            .or_insert_with(|| Tree {
                open,
                ..Tree::default()
            })
            .insert(rest, sensitive);
    }

    fn at(&self, path: &[String]) -> Option<&Tree> {
        path.iter().try_fold(self, |t, k| t.children.get(k))
    }
}

fn paths(list: &[String]) -> Vec<Vec<String>> {
    list.iter()
        .filter_map(|p| parse_path(p).ok())
        .map(|p| p.into_iter().map(str::to_owned).collect())
        .collect()
}

impl Rules {
    pub fn new(catalog: &Catalog) -> Self {
        let doc = catalog.document();
        let actions = doc
            .actions
            .iter()
            .map(|(name, a)| {
                let open = a.details.unwrap_or(doc.options.details) == DetailsRule::Open;
                let mut params = Tree {
                    open,
                    ..Tree::default()
                };
                let listed = a
                    .parameters
                    .iter()
                    .chain(a.forms.iter().flat_map(|f| &f.parameters));
                for p in listed {
                    if let Ok(path) = parse_path(p) {
                        params.insert(&path, false);
                    }
                }
                for p in &a.sensitive {
                    if let Ok(path) = parse_path(p) {
                        params.insert(&path, true);
                    }
                }
                let own = a.gateway.clone().unwrap_or_default();
                let pick = |mine: &Vec<String>, base: &Vec<String>| {
                    paths(if mine.is_empty() { base } else { mine })
                };
                let rule = ActionRule {
                    resource_type: match a.resource_types.as_deref() {
                        Some([one]) => Some(one.clone()),
                        _ => None,
                    },
                    params,
                    resource_id: pick(&own.resource_id, &doc.gateway.resource_id),
                    scope_id: pick(&own.scope_id, &doc.gateway.scope_id),
                    scope_type: own.scope_type.or_else(|| doc.gateway.scope_type.clone()),
                };
                (name.clone(), rule)
            })
            .collect();
        Rules {
            actions,
            redaction: doc.options.sensitive,
        }
    }

    /// Whether the catalog replaces secrets with an HMAC (which needs the org's key).
    pub fn uses_hmac(&self) -> bool {
        self.redaction == Redaction::Hmac
    }

    /// The audited root fields of the operation `req` runs. `hmac_key` is the org's key
    /// for `hmac` redaction; without it secrets become `"[REDACTED]"`.
    pub fn capture(
        &self,
        req: &GraphqlRequest,
        hmac_key: Option<&[u8; 32]>,
    ) -> Result<Vec<Capture>, Malformed> {
        let doc = parse_query(&req.query).map_err(|e| Malformed(format!("GraphQL: {e}")))?;
        let op = select(&doc, req.operation_name.as_deref())?;
        let vars = variables(&op.node, &req.variables);
        let mut walk = Walk {
            rules: self,
            doc: &doc,
            vars: &vars,
            redact: &|v: &Value| match (self.redaction, hmac_key) {
                (Redaction::Hmac, Some(k)) => Value::String(hmac_value(k, v)),
                _ => Value::String(REDACTED.to_owned()),
            },
            out: Vec::new(),
            seen: HashSet::new(),
            fragments: Vec::new(),
        };
        walk.set(&op.node.selection_set.node)?;
        Ok(walk.out)
    }
}

/// The operation a request runs: the one named, or the only one.
fn select<'a>(
    doc: &'a ExecutableDocument,
    name: Option<&str>,
) -> Result<&'a Positioned<OperationDefinition>, Malformed> {
    match (&doc.operations, name) {
        (DocumentOperations::Single(op), _) => Ok(op),
        (DocumentOperations::Multiple(ops), Some(n)) => ops
            .iter()
            .find(|(k, _)| k.as_str() == n)
            .map(|(_, op)| op)
            .ok_or_else(|| Malformed(format!("no operation named {n}"))),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops
            .values()
            .next()
            .ok_or_else(|| Malformed("no operation".into())),
        (DocumentOperations::Multiple(_), None) => {
            Err(Malformed("several operations and no operationName".into()))
        }
    }
}

/// The request's variables, completed with the operation's defaults.
fn variables(op: &OperationDefinition, given: &Map<String, Value>) -> HashMap<String, Value> {
    let mut vars: HashMap<String, Value> =
        given.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    for def in &op.variable_definitions {
        let name = def.node.name.node.as_str();
        if !vars.contains_key(name)
            && let Some(d) = &def.node.default_value
            && let Ok(v) = d.node.clone().into_json()
        {
            vars.insert(name.to_owned(), v);
        }
    }
    vars
}

/// A GraphQL value as JSON, variables resolved; `None` when a variable is not given.
fn to_json(v: &Gql, vars: &HashMap<String, Value>) -> Option<Value> {
    Some(match v {
        Gql::Variable(n) => return vars.get(n.as_str()).cloned(),
        Gql::Null => Value::Null,
        Gql::Number(n) => Value::Number(n.clone()),
        Gql::String(s) => Value::String(s.clone()),
        Gql::Boolean(b) => Value::Bool(*b),
        Gql::Binary(_) => return None,
        Gql::Enum(n) => Value::String(n.to_string()),
        Gql::List(items) => Value::Array(
            items
                .iter()
                .map(|i| to_json(i, vars).unwrap_or(Value::Null))
                .collect(),
        ),
        Gql::Object(m) => Value::Object(
            m.iter()
                .filter_map(|(k, v)| Some((k.to_string(), to_json(v, vars)?)))
                .collect(),
        ),
    })
}

/// Fragments nest at most this deep (a cycle is an invalid document anyway).
const MAX_FRAGMENT_DEPTH: usize = 32;

struct Walk<'a> {
    rules: &'a Rules,
    doc: &'a ExecutableDocument,
    vars: &'a HashMap<String, Value>,
    redact: &'a dyn Fn(&Value) -> Value,
    out: Vec<Capture>,
    /// Response keys already captured (the same field selected twice runs once).
    seen: HashSet<String>,
    fragments: Vec<&'a str>,
}

impl<'a> Walk<'a> {
    fn set(&mut self, set: &'a SelectionSet) -> Result<(), Malformed> {
        for item in &set.items {
            match &item.node {
                Selection::Field(f) => {
                    let f = &f.node;
                    if !self.included(&f.directives)? {
                        continue;
                    }
                    let name = f.name.node.as_str();
                    let Some(rule) = self.rules.actions.get(name) else {
                        continue;
                    };
                    let key = f.alias.as_ref().map_or(name, |a| a.node.as_str());
                    if !self.seen.insert(key.to_owned()) {
                        continue;
                    }
                    let args: Map<String, Value> = f
                        .arguments
                        .iter()
                        .filter_map(|(k, v)| {
                            Some((k.node.to_string(), to_json(&v.node, self.vars)?))
                        })
                        .collect();
                    self.out.push(self.event(key, name, rule, &args));
                }
                Selection::FragmentSpread(s) => {
                    if !self.included(&s.node.directives)? {
                        continue;
                    }
                    let name = s.node.fragment_name.node.as_str();
                    let frag = self
                        .doc
                        .fragments
                        .iter()
                        .find(|(k, _)| k.as_str() == name)
                        .map(|(_, f)| f)
                        .ok_or_else(|| Malformed(format!("unknown fragment {name}")))?;
                    if self.fragments.contains(&name) || self.fragments.len() >= MAX_FRAGMENT_DEPTH
                    {
                        return Err(Malformed(format!("fragment {name} spreads itself")));
                    }
                    self.fragments.push(name);
                    self.set(&frag.node.selection_set.node)?;
                    self.fragments.pop();
                }
                Selection::InlineFragment(i) => {
                    if self.included(&i.node.directives)? {
                        self.set(&i.node.selection_set.node)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// `@skip(if:)` and `@include(if:)`, with variables.
    fn included(&self, directives: &[Positioned<Directive>]) -> Result<bool, Malformed> {
        for d in directives {
            let name = d.node.name.node.as_str();
            if name != "skip" && name != "include" {
                continue;
            }
            let cond = d
                .node
                .arguments
                .iter()
                .find(|(k, _)| k.node.as_str() == "if")
                .and_then(|(_, v)| to_json(&v.node, self.vars));
            let Some(Value::Bool(b)) = cond else {
                return Err(Malformed(format!("@{name} needs a Boolean `if`")));
            };
            if (name == "skip") == b {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn event(
        &self,
        key: &str,
        action: &str,
        rule: &ActionRule,
        args: &Map<String, Value>,
    ) -> Capture {
        let id = |candidates: &[Vec<String>]| {
            candidates.iter().find_map(|path| {
                if rule.params.at(path).is_some_and(|t| t.sensitive) {
                    return None;
                }
                let mut v = args.get(path.first()?)?;
                for k in &path[1..] {
                    v = v.as_object()?.get(k)?;
                }
                match v {
                    Value::String(s) if !s.is_empty() => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                }
            })
        };
        let scope_id = id(&rule.scope_id);
        Capture {
            key: key.to_owned(),
            action: action.to_owned(),
            resource_type: rule.resource_type.clone(),
            resource_id: id(&rule.resource_id),
            scope_type: scope_id.as_ref().and(rule.scope_type.clone()),
            scope_id,
            details: project_map(&rule.params, args, self.redact),
        }
    }
}

/// The members of `m` that `tree` lists (every member when open), projected.
fn project_map(
    tree: &Tree,
    m: &Map<String, Value>,
    redact: &dyn Fn(&Value) -> Value,
) -> Map<String, Value> {
    m.iter()
        .filter_map(|(k, v)| match tree.children.get(k) {
            Some(child) => Some((k.clone(), project(child, v, redact)?)),
            None if tree.open => Some((k.clone(), v.clone())),
            None => None,
        })
        .collect()
}

fn project(tree: &Tree, v: &Value, redact: &dyn Fn(&Value) -> Value) -> Option<Value> {
    if tree.sensitive && !v.is_null() {
        return Some(redact(v));
    }
    if tree.children.is_empty() {
        return Some(v.clone());
    }
    match v {
        Value::Object(m) => Some(Value::Object(project_map(tree, m, redact))),
        Value::Array(items) => Some(Value::Array(
            items
                .iter()
                .map(|i| project(tree, i, redact).unwrap_or(Value::Null))
                .collect(),
        )),
        Value::Null => Some(Value::Null),
        // A scalar where the catalog expects an input object: nothing it lists.
        _ => None,
    }
}

#[cfg(test)]
mod tests;
