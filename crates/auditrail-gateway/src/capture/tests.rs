use serde_json::json;

use super::*;

fn rules() -> Rules {
    Rules::new(&auditrail_core::catalog::builtin("prophecy").unwrap())
}

fn req(query: &str, vars: Value) -> GraphqlRequest {
    GraphqlRequest {
        query: query.into(),
        operation_name: None,
        variables: vars.as_object().cloned().unwrap_or_default(),
    }
}

fn keys(c: &[Capture]) -> Vec<&str> {
    c.iter().map(|c| c.key.as_str()).collect()
}

#[test]
fn literals_variables_and_the_entity() {
    let c = rules()
        .capture(
            &req(
                r#"mutation($lang: String = "scala") { addProject(name: "demo", language: $lang, forkMode: SINGLE, extra: 1) { id } }"#,
                json!({}),
            ),
            None,
        )
        .unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].action, "addProject");
    assert_eq!(c[0].resource_type.as_deref(), Some("PROJECT"));
    // Only the catalog's parameters; enums as strings; defaults applied.
    assert_eq!(
        Value::Object(c[0].details.clone()),
        json!({"name": "demo", "language": "scala", "forkMode": "SINGLE"})
    );
    assert_eq!(c[0].resource_id, None);
    let r = rules()
        .capture(
            &req(
                "mutation R($p: String!, $v: String) { releaseProject(projectID: $p, version: $v, branch: \"main\") { id } }",
                json!({"p": "p-7", "v": "1.0"}),
            ),
            None,
        )
        .unwrap();
    assert_eq!(r[0].resource_id.as_deref(), Some("p-7"));
    assert_eq!(r[0].scope_type.as_deref(), Some("PROJECT"));
    assert_eq!(r[0].scope_id.as_deref(), Some("p-7"));
    assert_eq!(r[0].details["version"], json!("1.0"));
}

#[test]
fn aliases_fragments_and_directives() {
    let q = r#"
        mutation M($skip: Boolean!, $u: String) {
          first: addProject(name: "a") { id }
          ...More
          ... on Mutation @include(if: true) { third: addProject(name: "c") { id } }
          skipped: addProject(name: "d") @skip(if: $skip) { id }
          kept: addProject(name: "e") @include(if: $skip) @skip(if: false) { id }
          notAudited { id }
          __typename
        }
        fragment More on Mutation { second: setPassword(uid: $u, newPassword: "p") }
    "#;
    let on = rules()
        .capture(&req(q, json!({"skip": true, "u": "u1"})), None)
        .unwrap();
    assert_eq!(keys(&on), ["first", "second", "third", "kept"]);
    let off = rules()
        .capture(&req(q, json!({"skip": false, "u": "u1"})), None)
        .unwrap();
    assert_eq!(keys(&off), ["first", "second", "third", "skipped"]);
    assert_eq!(off[1].resource_id.as_deref(), Some("u1"));
}

#[test]
fn the_operation_named_is_the_one_captured() {
    let q = "query A { getDetails(projectId: \"1\") { id } } mutation B { addProject(name: \"x\") { id } }";
    let mut r = req(q, json!({}));
    r.operation_name = Some("B".into());
    assert_eq!(keys(&rules().capture(&r, None).unwrap()), ["addProject"]);
    r.operation_name = Some("A".into());
    assert_eq!(keys(&rules().capture(&r, None).unwrap()), ["getDetails"]);
    r.operation_name = None;
    assert!(rules().capture(&r, None).is_err());
    r.operation_name = Some("C".into());
    assert!(rules().capture(&r, None).is_err());
}

#[test]
fn nested_lists_of_input_objects() {
    let c = rules()
        .capture(
            &req(
                "mutation($u: [UDFInput!]!) { addUDFBulk(projectUID: \"p1\", udfs: $u) }",
                json!({"u": [{"name": "f", "description": "d", "code": "secret sauce"}, {"name": "g"}]}),
            ),
            None,
        )
        .unwrap();
    assert_eq!(
        Value::Object(c[0].details.clone()),
        json!({"projectUID": "p1", "udfs": [{"name": "f", "description": "d"}, {"name": "g"}]})
    );
}

#[test]
fn secrets_are_replaced() {
    let q = "mutation($p: String!) { setPassword(uid: \"u1\", newPassword: $p) }";
    let vars = json!({"p": "hunter2-s3cret"});
    let c = rules().capture(&req(q, vars.clone()), None).unwrap();
    assert_eq!(c[0].details["newPassword"], json!("[REDACTED]"));
    let mut doc = auditrail_core::catalog::builtin("prophecy")
        .unwrap()
        .document()
        .clone();
    doc.options.sensitive = Redaction::Hmac;
    let hmac = Rules::new(&Catalog::from_document(doc).unwrap());
    assert!(hmac.uses_hmac());
    let key = [3u8; 32];
    let h = hmac.capture(&req(q, vars), Some(&key)).unwrap();
    assert_eq!(
        h[0].details["newPassword"],
        json!(hmac_value(&key, &json!("hunter2-s3cret")))
    );
    assert!(!format!("{h:?}{c:?}").contains("s3cret"));
}

#[test]
fn introspection_and_unknown_fields_record_nothing() {
    for q in [
        "{ __schema { types { name } } }",
        "query { __type(name: \"X\") { name } }",
        "{ somethingElse }",
        "subscription { onEvent { id } }",
    ] {
        assert_eq!(rules().capture(&req(q, json!({})), None).unwrap(), vec![]);
    }
}

#[test]
fn malformed_documents() {
    for q in [
        "mutation { addProject(name: ) }",
        "{ ...Missing }",
        "{ ...A } fragment A on Q { ...A }",
        "mutation($b: Boolean) { addProject(name: \"x\") @skip(if: $b) }",
        "",
    ] {
        assert!(rules().capture(&req(q, json!({})), None).is_err(), "{q}");
    }
}

#[test]
fn the_same_key_twice_is_one_event() {
    let c = rules()
        .capture(
            &req(
                "mutation { addProject(name: \"x\") { id } addProject(name: \"x\") { name } }",
                json!({}),
            ),
            None,
        )
        .unwrap();
    assert_eq!(c.len(), 1);
}
