//! The catalog document as written in TOML or JSON. Unknown fields are refused, so a
//! misspelt option is an error rather than silently ignored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// Short identifier: a-z, 0-9, `-`, `_`.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Where the catalog was transcribed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default)]
    pub options: Options,
    #[serde(default)]
    pub resource_types: BTreeMap<String, ResourceType>,
    /// How the GraphQL capture gateway fills in resource ids and scopes.
    #[serde(default, skip_serializing_if = "GatewayRule::is_empty")]
    pub gateway: GatewayRule,
    pub actions: BTreeMap<String, Action>,
}

/// Which arguments of a GraphQL field name the event's resource and scope. Each list is
/// tried in order and the first argument present (a string or a number) wins; dotted
/// paths reach into input objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct GatewayRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_id: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scope_id: Vec<String>,
    /// `scope.type` of the events (e.g. `PROJECT`, `GRAPH`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_type: Option<String>,
}

impl GatewayRule {
    pub fn is_empty(&self) -> bool {
        self.resource_id.is_empty() && self.scope_id.is_empty() && self.scope_type.is_none()
    }
}

/// How an org using the catalog treats what the catalog does not name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// In a strict org, a `details` key outside the action's parameters.
    #[serde(default)]
    pub unknown_details: UnknownDetails,
    /// How sensitive values are replaced.
    #[serde(default)]
    pub sensitive: Redaction,
    /// Default for actions that do not say: `listed` details only, or `open`.
    #[serde(default)]
    pub details: DetailsRule,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UnknownDetails {
    /// Refuse the event (422 naming the key).
    #[default]
    Reject,
    /// Store the event without the key.
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Redaction {
    /// `"[REDACTED]"`.
    #[default]
    Redact,
    /// `"hmac-sha256:<hex>"` keyed per org, so a known value can still be searched for.
    Hmac,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DetailsRule {
    /// Only the action's parameters.
    #[default]
    Listed,
    /// Any keys (the catalog does not enumerate them).
    Open,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ResourceType {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deprecated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Action {
    /// A heading to group actions under (display only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Resource types the action may act on; absent means any declared one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_types: Option<Vec<String>>,
    /// `details` keys the action may carry; dotted paths name nested keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<String>,
    /// Parameters whose values are secrets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensitive: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deprecated: bool,
    /// Overrides `options.details` for this action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<DetailsRule>,
    /// What the action does in OCSF's terms (`create`, `read`, `update`, `delete`,
    /// `other`); absent, OCSF records guess it from the action's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity: Option<crate::ocsf::Activity>,
    /// Overrides the catalog's `gateway` lists for this action (each list given replaces
    /// the catalog's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayRule>,
    /// When a source lists the same operation more than once with different parameters,
    /// each listing; the action accepts the union of their parameters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forms: Vec<Form>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Form {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub parameters: Vec<String>,
}
