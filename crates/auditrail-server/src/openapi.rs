//! The OpenAPI document, generated from the handlers' annotations.

use serde_json::{Value, json};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::routes::{
    catalog, destinations, events, exports, integrity, orgs, tail, tiles, viewer, witnesses,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "auditrail", description = "Durable, ordered, tamper-evident audit logs."),
    paths(
        orgs::create_org, orgs::create_key, orgs::list_keys, orgs::revoke_key, viewer::create,
        catalog::put_catalog, catalog::get_catalog, catalog::hmac,
        events::ingest, events::search, tail::stream,
        exports::create, exports::list, exports::get, exports::download, exports::checkpoint, exports::proof,
        exports::put_webhook, exports::delete_webhook,
        destinations::put, destinations::put_for_org, destinations::list, destinations::get, destinations::delete,
        destinations::pause, destinations::resume, destinations::test, destinations::bucket_policy,
        integrity::latest_checkpoint, integrity::public_key, integrity::inclusion, integrity::consistency,
        witnesses::put, witnesses::list, witnesses::get, witnesses::delete,
        witnesses::put_admin_emails, witnesses::get_admin_emails,
        tiles::checkpoint, tiles::tile,
    ),
    components(schemas(orgs::CreateOrg, orgs::CreateKey, crate::error::ErrorBody, crate::error::ErrorDetail)),
    modifiers(&Bearer),
    security(("bearer" = []))
)]
struct Doc;

struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(c) = openapi.components.as_mut() {
            c.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// The document `/openapi.json` serves and `auditrail openapi` prints.
pub fn document() -> String {
    let mut doc = serde_json::to_value(Doc::openapi()).unwrap_or_default();
    contract(&mut doc);
    crate::openapi_responses::apply(&mut doc);
    crate::openapi_roles::apply(&mut doc);
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".into())
}

/// What every operation shares, added where the annotations leave it out: its path
/// parameters, and the error answers the server gives (each an `Error`): 401 without a
/// valid key, 403 for a key of the wrong role or org, 404 where a path names something,
/// 400/413/422 where a body or parameters are read, 503 when overloaded (with
/// `Retry-After`), 500 for what should not happen.
fn contract(doc: &mut Value) {
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        schemas.insert("Event".into(), event_schema());
        schemas.insert(
            "EventBatch".into(),
            json!({"type": "object", "additionalProperties": false, "required": ["events"],
                   "properties": {"events": {"type": "array", "minItems": 1,
                       "maxItems": crate::routes::events::MAX_BATCH_EVENTS,
                       "items": {"$ref": "#/components/schemas/Event"}}}}),
        );
        for (name, schema) in detail_value_schemas() {
            schemas.insert(name, schema);
        }
        // Any JSON value but null.
        if let Some(h) = schemas.get_mut("HmacRequest") {
            h["required"] = json!(["value"]);
            h["properties"]["value"] = json!({"not": {"type": "null"},
                "description": "the value to hash as `hmac` mode hashes a sensitive one: any JSON but null"});
        }
    }
    if let Some(op) = doc.pointer_mut("/paths/~1v1~1events/post") {
        op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema":
            {"oneOf": [{"$ref": "#/components/schemas/Event"}, {"$ref": "#/components/schemas/EventBatch"}]}}}});
        op["parameters"] = json!([{"name": "Auditrail-Order", "in": "header", "required": false,
            "description": "`<stream> <n> <follows>`: this batch is number n of the client's stream, and with follows = 1 it is appended only after batch n - 1 (409 `batch_out_of_order` if that one failed or has not arrived within a second). Lets a client keep several batches in flight, stored in order.",
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{8,64} ([0-9]{1,18} 0|0*[1-9][0-9]{0,17} 1)$"}}]);
        op["responses"]["409"] = json!({"description": "`batch_out_of_order`: the batch follows one (`Auditrail-Order`) that failed, has not arrived within a second, or of a stream this node has not seen; nothing of it is stored"});
        op["responses"]["200"]["headers"] = json!({"Auditrail-Order": {
            "description": "the batch's number, when the request named its place: this server keeps ordered batches in order",
            "schema": {"type": "string"}}});
    }
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let names: Vec<&str> = path
            .split('{')
            .skip(1)
            .filter_map(|p| p.split('}').next())
            .collect();
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for op in item.values_mut().filter_map(Value::as_object_mut) {
            let params = op
                .entry("parameters")
                .or_insert_with(|| json!([]))
                .as_array_mut();
            let Some(params) = params else { continue };
            for name in &names {
                let declared = params
                    .iter()
                    .any(|p| p["name"] == *name && p["in"] == "path");
                if !declared {
                    params.push(json!({"name": name, "in": "path", "required": true,
                                       "schema": path_param_schema(name)}));
                }
            }
            let reads_params = !params.is_empty();
            if params.is_empty() {
                op.remove("parameters");
            }
            let has_body = op.contains_key("requestBody");
            let mut errors = vec![
                ("401", "no key, or a key that is unknown or revoked"),
                ("403", "the key's role or org may not do this"),
                ("500", "an internal error (logged; nothing of it is shown)"),
                (
                    "503",
                    "overloaded or the store is unavailable; retry after `Retry-After`",
                ),
            ];
            if !names.is_empty() {
                errors.push(("404", "not found (or another org's)"));
            }
            if reads_params || has_body {
                errors.push(("422", "invalid input; `details` names each field"));
            }
            if has_body {
                errors.push(("400", "the body is not JSON"));
                errors.push(("413", "the body is too large"));
            }
            let Some(responses) = op
                .entry("responses")
                .or_insert_with(|| json!({}))
                .as_object_mut()
            else {
                continue;
            };
            for (status, description) in errors {
                responses
                    .entry(status)
                    .or_insert_with(|| json!({"description": description}));
            }
            for (status, r) in responses.iter_mut() {
                if !status.starts_with('2') && r.get("content").is_none() {
                    r["content"] = json!({"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}});
                }
            }
        }
    }
    unique_operation_ids(paths);
}

/// Operation ids are the handlers' names, and several modules have a `get` or a
/// `list`; generators need them unique. A name used more than once is qualified with
/// its path's first segment after `/v1` (`exports_get`, `destinations_get`).
fn unique_operation_ids(paths: &mut serde_json::Map<String, Value>) {
    let mut uses: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for item in paths.values() {
        for op in item.as_object().into_iter().flat_map(|o| o.values()) {
            if let Some(id) = op.get("operationId").and_then(Value::as_str) {
                *uses.entry(id.to_owned()).or_default() += 1;
            }
        }
    }
    for (path, item) in paths.iter_mut() {
        let area = path
            .split('/')
            .find(|s| !s.is_empty() && *s != "v1")
            .unwrap_or("root")
            .replace('-', "_");
        for op in item
            .as_object_mut()
            .into_iter()
            .flat_map(|o| o.values_mut())
        {
            let Some(id) = op.get("operationId").and_then(Value::as_str) else {
                continue;
            };
            if uses.get(id).copied().unwrap_or(0) > 1 {
                op["operationId"] = json!(format!("{area}_{id}"));
            }
        }
    }
}

/// A path parameter's schema, by its name.
fn path_param_schema(name: &str) -> Value {
    match name {
        "org" => json!({"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$"}),
        _ => json!({"type": "string", "minLength": 1}),
    }
}

/// A time bound of a search: an RFC 3339 timestamp or a date (midnight UTC).
pub(crate) fn time_bound() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
    let string = |f| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(f)))
    };
    OneOfBuilder::new()
        .item(string(KnownFormat::DateTime))
        .item(string(KnownFormat::Date))
        .into()
}

/// The order of a page of events.
pub(crate) fn order() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["desc", "asc"]))
        .build()
}

/// Text the validator takes: no control characters.
const NO_CONTROL: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$";

/// An event as a client sends it, from the validator's own rules
/// (`auditrail_core::event`): its fields, their lengths, the actor types and outcomes.
fn event_schema() -> Value {
    use auditrail_core::event::{
        ACTOR_FIELDS, ACTOR_TYPES, MAX_ACTION_LEN, MAX_ID_LEN, MAX_TEXT_LEN, OUTCOMES,
        RESOURCE_FIELDS,
    };
    // Absent and null are the same for every field but `action`.
    let text = |min: usize, max: usize| json!({"type": ["string", "null"], "minLength": min, "maxLength": max, "pattern": NO_CONTROL});
    let object = |fields: &[(&str, usize)]| {
        let props: serde_json::Map<String, Value> = fields
            .iter()
            .map(|(name, max)| (name.to_string(), text(1, *max)))
            .collect();
        json!({"type": ["object", "null"], "additionalProperties": false, "properties": props})
    };
    let mut actor = object(&ACTOR_FIELDS);
    let mut actor_types: Vec<Value> = ACTOR_TYPES.iter().map(|t| json!(t)).collect();
    actor_types.push(Value::Null);
    actor["properties"]["type"] = json!({"enum": actor_types});
    let mut outcomes: Vec<Value> = OUTCOMES.iter().map(|t| json!(t)).collect();
    outcomes.push(Value::Null);
    let limits = auditrail_core::Limits::default();
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["action"],
        "properties": {
            "id": text(1, MAX_ID_LEN),
            "action": {"type": "string", "minLength": 1, "maxLength": MAX_ACTION_LEN, "pattern": NO_CONTROL},
            "occurred_at": {"type": ["string", "null"], "format": "date-time",
                "description": format!("default: when auditrail receives it; at most {} seconds ahead of the server's clock", limits.max_future.num_seconds())},
            "actor": actor,
            "resource": object(&RESOURCE_FIELDS),
            "scope": object(&RESOURCE_FIELDS),
            "details": {"type": ["object", "null"], "maxProperties": limits.max_details_keys,
                "propertyNames": {"maxLength": limits.max_details_key_len, "pattern": "^[^\\u0000]*$"},
                "additionalProperties": {"$ref": "#/components/schemas/DetailValue"},
                "description": format!("at most {} bytes as canonical JSON, {} levels, {} keys in all; with a catalog, only the action's parameters", limits.max_details_bytes, limits.max_details_depth, limits.max_details_keys)},
            "context": {"type": ["object", "null"], "maxProperties": 16,
                "additionalProperties": {"type": "string", "maxLength": MAX_TEXT_LEN, "pattern": NO_CONTROL},
                "properties": {"ip": {"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}}},
            "outcome": {"enum": outcomes},
        }
    })
}

/// The values inside `details`, one schema a level: `details` is level 1, and a value
/// at level `max_details_depth` holds nothing more (a scalar, or an empty array or
/// object). The levels are spelled out rather than one recursive schema, so that the
/// nesting bound is part of the contract and generators that cannot type a recursive
/// schema (TypeScript's, Python's) still can. An object's values refer to the next
/// level by name; an array's items are the next level written in place, as generators
/// cannot name a union as an array's items.
fn detail_value_schemas() -> Vec<(String, Value)> {
    let max = auditrail_core::Limits::default().max_details_depth.max(2);
    (2..=max)
        .map(|level| {
            let mut schema = detail_value(level, max);
            schema["description"] = json!(format!(
                "a value of `details` at nesting level {level} (of at most {max})"
            ));
            (detail_value_name(level), schema)
        })
        .collect()
}

fn detail_value_name(level: usize) -> String {
    match level {
        2 => "DetailValue".to_owned(),
        n => format!("DetailValueL{n}"),
    }
}

/// A value of `details` at `level` (of at most `max`).
fn detail_value(level: usize, max: usize) -> Value {
    let limits = auditrail_core::Limits::default();
    let no_nul = "^[^\\u0000]*$";
    let (array, object) = if level < max {
        (
            json!({"type": "array", "items": detail_value(level + 1, max)}),
            json!({"type": "object",
                   "propertyNames": {"maxLength": limits.max_details_key_len, "pattern": no_nul},
                   "additionalProperties": {"$ref": format!("#/components/schemas/{}", detail_value_name(level + 1))}}),
        )
    } else {
        (
            json!({"type": "array", "maxItems": 0, "items": {"type": "null"}}),
            json!({"type": "object", "maxProperties": 0}),
        )
    };
    json!({"anyOf": [
        {"type": "string", "maxLength": limits.max_details_value_len, "pattern": no_nul},
        {"type": "number"}, {"type": "boolean"}, {"type": "null"}, array, object,
    ]})
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every answer the responses table names is an operation of the document.
    #[test]
    fn every_typed_answer_is_an_operation() {
        let doc: Value = serde_json::from_str(&document()).unwrap_or_default();
        for (method, path, status, name) in crate::openapi_responses::ANSWERS {
            let op = &doc["paths"][path][method];
            assert!(op.is_object(), "{method} {path}");
            assert_eq!(
                op["responses"][status]["content"]["application/json"]["schema"]["$ref"],
                format!("#/components/schemas/{name}"),
                "{method} {path} {status}"
            );
            assert!(doc["components"]["schemas"][name].is_object(), "{name}");
        }
    }

    /// Every link names an operation of the document, and parameters it takes.
    #[test]
    fn every_link_names_an_operation_and_its_parameters() {
        let doc: Value = serde_json::from_str(&document()).unwrap_or_default();
        let mut ops = std::collections::HashMap::new();
        for item in doc["paths"]
            .as_object()
            .into_iter()
            .flat_map(|p| p.values())
        {
            for op in item.as_object().into_iter().flat_map(|o| o.values()) {
                ops.insert(
                    op["operationId"].as_str().unwrap_or("").to_owned(),
                    op.clone(),
                );
            }
        }
        let mut links = 0;
        for op in ops.values() {
            for answer in op["responses"]
                .as_object()
                .into_iter()
                .flat_map(|r| r.values())
            {
                for link in answer["links"]
                    .as_object()
                    .into_iter()
                    .flat_map(|l| l.values())
                {
                    links += 1;
                    let target = &ops[link["operationId"].as_str().unwrap_or("")];
                    for name in link["parameters"]
                        .as_object()
                        .into_iter()
                        .flat_map(|p| p.keys())
                    {
                        let taken = target["parameters"]
                            .as_array()
                            .is_some_and(|ps| ps.iter().any(|p| p["name"] == *name));
                        assert!(taken, "{} takes no {name}", link["operationId"]);
                    }
                }
            }
        }
        assert!(links >= 16, "{links} links");
    }

    /// Every operation says which roles may call it, and the table names no other.
    #[test]
    fn every_operation_names_its_roles() {
        let doc: Value = serde_json::from_str(&document()).unwrap_or_default();
        let mut ops = 0;
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, op) in item.as_object().into_iter().flatten() {
                ops += 1;
                let listed = crate::openapi_roles::ROLES
                    .iter()
                    .any(|(m, p, _)| m == method && p == path);
                assert!(listed, "{method} {path} has no roles");
                assert!(
                    op["security"][0]["bearer"]
                        .as_array()
                        .is_some_and(|r| !r.is_empty())
                );
            }
        }
        assert_eq!(ops, crate::openapi_roles::ROLES.len());
    }
}
