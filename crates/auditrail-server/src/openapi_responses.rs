//! The success answers of the API, as schemas. The handlers build their JSON by hand, so
//! these are stated here, beside the document; the contract test holds them to the
//! server: Schemathesis checks every answer it gets against them.

use serde_json::{Value, json};

fn r(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn nullable(t: &str) -> Value {
    json!({"type": [t, "null"]})
}

fn time() -> Value {
    json!({"type": "string", "format": "date-time"})
}

fn time_or_null() -> Value {
    json!({"type": ["string", "null"], "format": "date-time"})
}

fn object(required: &[&str], properties: Value) -> Value {
    json!({"type": "object", "required": required, "properties": properties})
}

/// The component schemas of the answers.
pub(crate) fn components() -> Vec<(&'static str, Value)> {
    let hash64 = json!({"type": "string", "pattern": "^[0-9a-f]{64}$"});
    let b64 = json!({"type": "string", "contentEncoding": "base64"});
    let text_object =
        json!({"type": "object", "additionalProperties": {"type": ["string", "null"]}});
    vec![
        (
            "Org",
            object(
                &["id", "name", "created_at", "strict"],
                json!({"id": {"type": "string"}, "name": {"type": "string"}, "created_at": time(),
                       "strict": {"type": "boolean"}, "catalog": nullable("string"),
                       "catalog_version": nullable("integer"), "retention_days": nullable("integer")}),
            ),
        ),
        (
            "ApiKey",
            object(
                &["id", "org_id", "name", "role", "created_at", "revoked_at"],
                json!({"id": {"type": "string"}, "org_id": {"type": "string"}, "name": {"type": "string"},
                       "role": {"enum": ["admin", "ingest", "viewer"]}, "created_at": time(),
                       "revoked_at": time_or_null()}),
            ),
        ),
        (
            "NewApiKey",
            json!({"description": "a key as created: its `token` is shown this once",
                   "allOf": [r("ApiKey"), object(&["token"], json!({"token": {"type": "string"}}))]}),
        ),
        (
            "ApiKeyList",
            object(
                &["keys"],
                json!({"keys": {"type": "array", "items": r("ApiKey")}}),
            ),
        ),
        (
            "IngestAck",
            object(
                &["accepted"],
                json!({"accepted": {"type": "array", "items": object(&["id", "seq"], json!({
                    "id": {"type": "string"}, "seq": {"type": "integer", "minimum": 1},
                    "duplicate": {"type": "boolean", "description": "already stored by an earlier request with this id"}}))}}),
            ),
        ),
        (
            "StoredEvent",
            json!({"description": "an event exactly as stored and hashed, plus its `leaf_hash`",
                "type": "object",
                "required": ["id", "org_id", "seq", "action", "occurred_at", "received_at", "leaf_hash"],
                "properties": {
                    "id": {"type": "string"}, "org_id": {"type": "string"},
                    "seq": {"type": "integer", "minimum": 1}, "action": {"type": "string"},
                    "occurred_at": time(), "received_at": time(),
                    "actor": text_object, "resource": text_object, "scope": text_object,
                    "details": {"type": "object", "additionalProperties": r("DetailValue")},
                    "context": {"type": "object", "additionalProperties": {"type": "string"}},
                    "outcome": {"enum": ["success", "failure", "unknown"]},
                    "leaf_hash": hash64}}),
        ),
        (
            "EventPage",
            object(
                &["events", "next_cursor"],
                json!({"events": {"type": "array", "items": r("StoredEvent")},
                       "next_cursor": {"type": ["string", "null"], "description": "the next page's `cursor`; null on the last page"}}),
            ),
        ),
        (
            "Export",
            object(
                &["id", "status", "format", "from", "to", "created_at"],
                json!({
                    "id": {"type": "string"},
                    "status": {"enum": ["queued", "running", "succeeded", "failed", "expired"]},
                    "format": {"type": "string"}, "layout": {"type": "string"}, "gzip": {"type": "boolean"},
                    "from": {"type": "string"}, "to": {"type": "string"},
                    "created_at": time(), "started_at": time_or_null(), "completed_at": time_or_null(),
                    "expires_at": time_or_null(), "attempts": {"type": "integer"},
                    "row_count": {"type": "integer"}, "bytes": nullable("integer"),
                    "sha256": {"type": ["string", "null"], "pattern": "^[0-9a-f]{64}$"},
                    "checkpoint_size": nullable("integer"),
                    "download_url": nullable("string"), "checkpoint_url": nullable("string"),
                    "error": nullable("string"),
                    "requester": {"type": "object"}}),
            ),
        ),
        (
            "ExportList",
            object(
                &["exports"],
                json!({"exports": {"type": "array", "items": r("Export")}}),
            ),
        ),
        (
            "InclusionProof",
            object(
                &[
                    "seq",
                    "leaf_index",
                    "tree_size",
                    "leaf_hash",
                    "root_hash",
                    "hashes",
                ],
                json!({"seq": {"type": "integer"}, "leaf_index": {"type": "integer"},
                       "tree_size": {"type": "integer"}, "leaf_hash": b64, "root_hash": b64,
                       "hashes": {"type": "array", "items": b64}}),
            ),
        ),
        (
            "ConsistencyProof",
            object(
                &["from", "to", "from_root", "to_root", "hashes"],
                json!({"from": {"type": "integer"}, "to": {"type": "integer"},
                       "from_root": b64, "to_root": b64, "hashes": {"type": "array", "items": b64}}),
            ),
        ),
        (
            "Witness",
            object(
                &["name", "url", "verifier_key", "created_at", "state"],
                json!({"name": {"type": "string"}, "url": {"type": "string"},
                       "verifier_key": {"type": "string"}, "key_name": nullable("string"),
                       "created_at": {"type": "string"}, "state": {"type": "object"}}),
            ),
        ),
        (
            "WitnessList",
            object(
                &["witnesses"],
                json!({"witnesses": {"type": "array", "items": r("Witness")}}),
            ),
        ),
        (
            "Destination",
            json!({"description": "a destination as configured (secrets masked) with its delivery's state; the kind's own fields besides",
                "type": "object",
                "required": ["name", "kind", "state", "delivered_seq", "lag_events", "lag_seconds", "created_at", "updated_at"],
                "properties": {
                    "name": {"type": "string"}, "kind": {"type": "string"},
                    "state": {"enum": ["active", "retrying", "error", "paused"]},
                    "delivered_seq": {"type": "integer"}, "lag_events": {"type": "integer"},
                    "lag_seconds": {"type": "number"},
                    "pending": {"type": ["object", "null"], "properties": {"first_seq": {"type": "integer"}, "last_seq": {"type": "integer"}}},
                    "last_delivery_at": time_or_null(), "last_error": nullable("string"),
                    "last_error_at": time_or_null(), "failing_since": time_or_null(),
                    "created_at": time(), "updated_at": time(),
                    "max_batch_events": {"type": "integer"}, "max_batch_seconds": {"type": "integer"}}}),
        ),
        (
            "DestinationList",
            object(
                &["destinations", "external_id"],
                json!({"destinations": {"type": "array", "items": r("Destination")},
                       "external_id": {"type": "string", "description": "the org's external id for role assumption"}}),
            ),
        ),
        (
            "PermissionTest",
            object(
                &["all_passed", "results"],
                json!({"all_passed": {"type": "boolean"}, "results": {"type": "array", "items": object(
                    &["action", "passed"],
                    json!({"action": {"type": "string"}, "passed": {"type": "boolean"}, "error": nullable("string")}))}}),
            ),
        ),
        (
            "OrgCatalog",
            object(
                &[
                    "org_id",
                    "version",
                    "name",
                    "created_at",
                    "strict",
                    "catalog",
                ],
                json!({"org_id": {"type": "string"}, "version": {"type": "integer"}, "name": {"type": "string"},
                       "created_at": {"type": "string"}, "strict": {"type": "boolean"},
                       "catalog": {"type": "object", "description": "the catalog document"}}),
            ),
        ),
        (
            "CatalogStored",
            object(
                &["org_id", "version", "name", "created_at", "created"],
                json!({"org_id": {"type": "string"}, "version": {"type": "integer"}, "name": {"type": "string"},
                       "created_at": {"type": "string"},
                       "created": {"type": "boolean", "description": "false when the same document was already the org's"}}),
            ),
        ),
        (
            "Hmac",
            object(
                &["hmac"],
                json!({"hmac": {"type": "string", "pattern": "^hmac-sha256:[0-9a-f]{64}$"}}),
            ),
        ),
        (
            "ViewerLink",
            object(
                &["token", "url", "expires_at", "role"],
                json!({"token": {"type": "string"}, "url": {"type": "string"}, "expires_at": {"type": "string"},
                       "role": {"type": "string"}, "scope_id": nullable("string")}),
            ),
        ),
        (
            "AdminEmails",
            object(
                &["emails"],
                json!({"emails": {"type": "array", "items": {"type": "string"}}}),
            ),
        ),
        (
            "BucketPolicy",
            json!({"type": "object", "description": "the IAM policy to attach to the bucket; for role assumption, `{mode: \"assume_role\", role_arn, external_id, trust_policy, permissions_policy}`",
                   "properties": {"mode": {"type": "string"}, "role_arn": nullable("string"), "external_id": {"type": "string"},
                                  "trust_policy": {"type": "object"}, "permissions_policy": {"type": "object"},
                                  "Version": {"type": "string"}, "Statement": {"type": "array", "items": {"type": "object"}}}}),
        ),
        (
            "ExportWebhook",
            object(
                &["url", "secret"],
                json!({"url": {"type": "string"}, "secret": {"type": "string"}}),
            ),
        ),
    ]
}

/// Each JSON success answer: method, path, status and its schema's name.
pub(crate) const ANSWERS: &[(&str, &str, &str, &str)] = &[
    ("post", "/v1/orgs", "201", "Org"),
    ("post", "/v1/orgs/{org}/keys", "201", "NewApiKey"),
    ("get", "/v1/orgs/{org}/keys", "200", "ApiKeyList"),
    ("delete", "/v1/orgs/{org}/keys/{key_id}", "200", "ApiKey"),
    ("post", "/v1/orgs/{org}/viewer-tokens", "201", "ViewerLink"),
    ("put", "/v1/orgs/{org}/catalog", "200", "CatalogStored"),
    ("get", "/v1/catalog", "200", "OrgCatalog"),
    ("post", "/v1/hmac", "200", "Hmac"),
    ("post", "/v1/events", "200", "IngestAck"),
    ("get", "/v1/events", "200", "EventPage"),
    ("post", "/v1/exports", "202", "Export"),
    ("get", "/v1/exports", "200", "ExportList"),
    ("get", "/v1/exports/{id}", "200", "Export"),
    (
        "put",
        "/v1/orgs/{org}/export-webhook",
        "200",
        "ExportWebhook",
    ),
    ("get", "/v1/destinations", "200", "DestinationList"),
    ("get", "/v1/destinations/{name}", "200", "Destination"),
    ("put", "/v1/destinations/{name}", "200", "Destination"),
    ("put", "/v1/destinations/{name}", "201", "Destination"),
    (
        "put",
        "/v1/orgs/{org}/destinations/{name}",
        "200",
        "Destination",
    ),
    (
        "put",
        "/v1/orgs/{org}/destinations/{name}",
        "201",
        "Destination",
    ),
    (
        "post",
        "/v1/destinations/{name}/pause",
        "200",
        "Destination",
    ),
    (
        "post",
        "/v1/destinations/{name}/resume",
        "200",
        "Destination",
    ),
    (
        "post",
        "/v1/destinations/{name}/test",
        "200",
        "PermissionTest",
    ),
    (
        "get",
        "/v1/destinations/{name}/bucket-policy",
        "200",
        "BucketPolicy",
    ),
    ("get", "/v1/proofs/inclusion", "200", "InclusionProof"),
    ("get", "/v1/proofs/consistency", "200", "ConsistencyProof"),
    ("get", "/v1/witnesses", "200", "WitnessList"),
    ("get", "/v1/witnesses/{name}", "200", "Witness"),
    ("put", "/v1/witnesses/{name}", "200", "Witness"),
    ("put", "/v1/witnesses/{name}", "201", "Witness"),
    ("get", "/v1/orgs/{org}/admin-emails", "200", "AdminEmails"),
    ("put", "/v1/orgs/{org}/admin-emails", "200", "AdminEmails"),
];

/// Links between operations, for clients and for Schemathesis' stateful phase: what one
/// answer names, another operation takes. Source method, path, status; then the link's
/// name, its operation id and its parameters.
type Link = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Value,
);

fn links() -> Vec<Link> {
    let export = |name, op| {
        (
            "post",
            "/v1/exports",
            "202",
            name,
            op,
            json!({"id": "$response.body#/id"}),
        )
    };
    let key = |name, op| {
        (
            "post",
            "/v1/orgs/{org}/keys",
            "201",
            name,
            op,
            json!({"org": "$request.path.org", "key_id": "$response.body#/id"}),
        )
    };
    let witness = |status, name, op| {
        (
            "put",
            "/v1/witnesses/{name}",
            status,
            name,
            op,
            json!({"name": "$request.path.name"}),
        )
    };
    let destination = |status, name, op| {
        (
            "put",
            "/v1/destinations/{name}",
            status,
            name,
            op,
            json!({"name": "$request.path.name"}),
        )
    };
    vec![
        (
            "post",
            "/v1/orgs",
            "201",
            "CreateKey",
            "create_key",
            json!({"org": "$response.body#/id"}),
        ),
        (
            "post",
            "/v1/orgs",
            "201",
            "ListKeys",
            "list_keys",
            json!({"org": "$response.body#/id"}),
        ),
        key("RevokeKey", "revoke_key"),
        export("GetExport", "exports_get"),
        export("DownloadExport", "download"),
        export("GetExportCheckpoint", "exports_checkpoint"),
        export("GetExportProof", "proof"),
        (
            "get",
            "/v1/events",
            "200",
            "NextPage",
            "search",
            json!({"cursor": "$response.body#/next_cursor"}),
        ),
        witness("201", "GetWitness", "witnesses_get"),
        witness("201", "DeleteWitness", "witnesses_delete"),
        witness("200", "GetWitness", "witnesses_get"),
        destination("201", "GetDestination", "destinations_get"),
        destination("201", "PauseDestination", "pause"),
        destination("201", "ResumeDestination", "resume"),
        destination("201", "DeleteDestination", "destinations_delete"),
        destination("200", "GetDestination", "destinations_get"),
    ]
}

/// Puts each answer's schema into the document's operations.
pub(crate) fn apply(doc: &mut Value) {
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for (name, schema) in components() {
            schemas.insert(name.to_owned(), schema);
        }
    }
    for (method, path, status, name) in ANSWERS {
        let pointer = format!(
            "/paths/{}/{method}/responses/{status}",
            path.replace('~', "~0").replace('/', "~1")
        );
        if let Some(answer) = doc.pointer_mut(&pointer) {
            answer["content"] = json!({"application/json": {"schema": r(name)}});
        }
    }
    for (method, path, status, name, op, parameters) in links() {
        let pointer = format!(
            "/paths/{}/{method}/responses/{status}",
            path.replace('~', "~0").replace('/', "~1")
        );
        if let Some(answer) = doc.pointer_mut(&pointer) {
            answer["links"][name] = json!({"operationId": op, "parameters": parameters});
        }
    }
    // The export's file, in the media type of its format (gzip when asked for).
    if let Some(answer) = doc.pointer_mut("/paths/~1v1~1exports~1{id}~1download/get/responses/200")
    {
        let file = json!({"schema": {"type": "string", "format": "binary"}});
        answer["content"] = json!({
            "text/csv": {"schema": {"type": "string"}}, "application/x-ndjson": file,
            "application/vnd.apache.parquet": file, "application/gzip": file});
    }
    // The checkpoint an export was cut at: a signed note.
    if let Some(answer) =
        doc.pointer_mut("/paths/~1v1~1exports~1{id}~1checkpoint/get/responses/200")
    {
        answer["content"] = json!({"text/plain": {"schema": {"type": "string"}}});
    }
}
