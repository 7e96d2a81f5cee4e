use serde_json::{Value, json};

use super::*;

const KEY: [u8; 32] = [7; 32];

fn prophecy() -> Catalog {
    builtin("prophecy").expect("prophecy parses")
}

fn apollo() -> Catalog {
    builtin("apollo-studio").expect("apollo-studio parses")
}

fn policy(c: &Catalog, strict: bool) -> Policy<'_> {
    Policy {
        catalog: c,
        version: 1,
        strict,
        hmac_key: &KEY,
    }
}

/// Runs a check; the problems as (field, reason).
fn run(
    p: &Policy<'_>,
    action: &str,
    rtype: Option<&str>,
    details: Value,
) -> (Checked, Vec<(String, String)>) {
    let mut problems = Vec::new();
    let d = details.as_object().cloned();
    let checked = p.check(action, rtype, d.as_ref(), &mut |f, r| problems.push((f, r)));
    (checked, problems)
}

/// Each row of the source table: (action, resource types, parameters).
fn rows(c: &Catalog) -> Vec<(String, Vec<String>, Vec<String>)> {
    let mut out = Vec::new();
    for (name, a) in &c.document().actions {
        let types = a.resource_types.clone().unwrap_or_default();
        if a.forms.is_empty() {
            out.push((name.clone(), types, a.parameters.clone()));
        } else {
            for f in &a.forms {
                out.push((name.clone(), types.clone(), f.parameters.clone()));
            }
        }
    }
    out
}

/// A details object carrying every parameter of a row (nested paths as a list of objects).
fn details_for(params: &[String]) -> Value {
    let mut d = serde_json::Map::new();
    for p in params {
        match p.split_once('.') {
            Some((parent, child)) => {
                let list = d.entry(parent).or_insert_with(|| json!([{}]));
                list[0][child] = json!(format!("v-{child}"));
            }
            None => {
                d.insert(p.clone(), json!(format!("v-{p}")));
            }
        }
    }
    Value::Object(d)
}

#[test]
fn prophecy_has_every_row_of_the_source_table() {
    let c = prophecy();
    let doc = c.document();
    assert_eq!(rows(&c).len(), 68, "the source table has 68 rows");
    assert_eq!(doc.actions.len(), 66, "two operations are listed twice");
    assert_eq!(
        doc.resource_types.keys().collect::<Vec<_>>(),
        [
            "DATASET",
            "FABRIC",
            "GENERIC",
            "GIT",
            "JOB",
            "PIPELINE",
            "PROJECT",
            "TEAM",
            "TRANSPILER",
            "USER"
        ]
    );
    let per_type = |t: &str| {
        rows(&c)
            .iter()
            .filter(|(_, types, _)| types == &[t.to_owned()])
            .count()
    };
    let counts: Vec<usize> = [
        "FABRIC",
        "PROJECT",
        "PIPELINE",
        "JOB",
        "DATASET",
        "TEAM",
        "USER",
        "GIT",
        "TRANSPILER",
        "GENERIC",
    ]
    .iter()
    .map(|t| per_type(t))
    .collect();
    assert_eq!(counts, [4, 15, 9, 7, 3, 4, 4, 18, 2, 2]);
    assert_eq!(doc.actions["tableQueryPipeline"].forms.len(), 2);
    assert_eq!(doc.actions["checkout"].forms.len(), 2);
    // The source's broken punctuation is cleaned, its spelling kept.
    let all: Vec<String> = rows(&c).into_iter().flat_map(|r| r.2).collect();
    for p in &all {
        assert!(
            p.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '.'),
            "parameter `{p}` still has punctuation"
        );
    }
    for p in [
        "databaseNamesList",
        "fromFork",
        "prCreationEnabled",
        "projectID",
        "projectUID",
        "Uid",
        "udfs.name",
        "udfs.description",
    ] {
        assert!(all.iter().any(|x| x == p), "missing parameter {p}");
    }
    assert!(c.has_action("addteamAdmin"));
    assert_eq!(doc.actions["setPassword"].sensitive, ["newPassword"]);
    assert_eq!(
        doc.actions["jobQuery"].description.as_deref(),
        Some("Geta a Job by gievn Id")
    );
}

#[test]
fn apollo_has_all_actions_and_resource_types() {
    let c = apollo();
    let doc = c.document();
    assert_eq!(doc.actions.len(), 22);
    assert_eq!(doc.resource_types.len(), 10);
    let count = |cat: &str| {
        doc.actions
            .values()
            .filter(|a| a.category.as_deref() == Some(cat))
            .count()
    };
    assert_eq!(
        [
            "Generic actions",
            "Federated graphs",
            "Organization members",
            "Studio features",
            "Studio plan"
        ]
        .map(count),
        [7, 2, 4, 4, 5]
    );
    let deprecated: Vec<&String> = doc
        .actions
        .iter()
        .filter(|(_, a)| a.deprecated)
        .map(|(n, _)| n)
        .collect();
    assert_eq!(deprecated, ["API_KEY"]);
    assert!(doc.resource_types.values().all(|r| r.description.is_some()));
    assert_eq!(c.allowed_resource_types("CREATE").len(), 10);
}

#[test]
fn strict_prophecy_accepts_every_row_with_its_parameters() {
    let c = prophecy();
    let p = policy(&c, true);
    for (action, types, params) in rows(&c) {
        let (checked, problems) = run(&p, &action, Some(&types[0]), details_for(&params));
        assert!(problems.is_empty(), "{action}: {problems:?}");
        assert!(!checked.unknown_action);
    }
}

#[test]
fn strict_apollo_accepts_every_action_on_every_type_it_allows() {
    let c = apollo();
    let p = policy(&c, true);
    let mut n = 0;
    for action in c.document().actions.keys() {
        for t in c.allowed_resource_types(action) {
            let (_, problems) = run(&p, action, Some(t), json!({"anything": {"goes": 1}}));
            assert!(problems.is_empty(), "{action} on {t}: {problems:?}");
            n += 1;
        }
    }
    assert!(n > 22);
}

#[test]
fn strict_refuses_unknown_actions_and_resource_types() {
    let c = prophecy();
    let p = policy(&c, true);
    let (_, e) = run(&p, "dropDatabase", None, json!({}));
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].0, "action");
    assert!(e[0].1.contains("`dropDatabase`"), "{}", e[0].1);

    let (_, e) = run(&p, "addProject", Some("PIPELINE"), json!({}));
    assert_eq!(e[0].0, "resource.type");
    assert!(e[0].1.contains("allowed: PROJECT"), "{}", e[0].1);

    let (_, e) = run(&p, "addProject", Some("SPACESHIP"), json!({}));
    assert_eq!(e[0].0, "resource.type");
    assert!(e[0].1.contains("`SPACESHIP` is not a resource type"));

    let a = apollo();
    let (_, e) = run(
        &policy(&a, true),
        "CANCEL_STUDIO_SUBSCRIPTION",
        Some("GRAPH"),
        json!({}),
    );
    assert_eq!(e[0].0, "resource.type");
}

#[test]
fn lenient_orgs_accept_everything_and_flag_unknown_actions() {
    let c = prophecy();
    let p = policy(&c, false);
    let (checked, e) = run(&p, "dropDatabase", Some("X"), json!({"any": 1}));
    assert!(e.is_empty());
    assert!(checked.unknown_action);
    let (checked, e) = run(&p, "addProject", Some("X"), json!({"extra": 1}));
    assert!(e.is_empty());
    assert_eq!(checked, Checked::default());
}

#[test]
fn unknown_details_keys_are_named_or_dropped() {
    let c = prophecy();
    let p = policy(&c, true);
    let (_, e) = run(
        &p,
        "addProject",
        None,
        json!({"name": "x", "colour": "red"}),
    );
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].0, "details.colour");
    assert!(e[0].1.contains("not a parameter of `addProject`"));
    assert!(!e[0].1.contains("red"));

    let mut doc = c.document().clone();
    doc.options.unknown_details = UnknownDetails::Drop;
    let dropping = Catalog::from_document(doc).unwrap();
    let (checked, e) = run(
        &policy(&dropping, true),
        "addProject",
        None,
        json!({"name": "x", "colour": "red", "language": "scala"}),
    );
    assert!(e.is_empty());
    assert_eq!(
        Value::Object(checked.details.unwrap()),
        json!({"name": "x", "language": "scala"})
    );
}

#[test]
fn nested_parameters_are_checked_inside_objects_and_lists() {
    let c = prophecy();
    let p = policy(&c, true);
    let ok =
        json!({"projectUID": "p1", "udfs": [{"name": "a", "description": "d"}, {"name": "b"}]});
    assert!(run(&p, "addUDFBulk", None, ok).1.is_empty());
    assert!(
        run(&p, "addUDFBulk", None, json!({"udfs": {"name": "a"}}))
            .1
            .is_empty()
    );
    let (_, e) = run(
        &p,
        "addUDFBulk",
        None,
        json!({"udfs": [{"name": "a"}, {"name": "b", "body": "x"}]}),
    );
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].0, "details.udfs[1].body");
    let (_, e) = run(&p, "addUDFBulk", None, json!({"udfs": "a,b"}));
    assert_eq!(e[0].0, "details.udfs");
    assert!(e[0].1.contains("name"), "{}", e[0].1);
}

#[test]
fn secrets_are_replaced_and_never_echoed() {
    let c = prophecy();
    for strict in [true, false] {
        let (checked, e) = run(
            &policy(&c, strict),
            "setPassword",
            Some("USER"),
            json!({"uid": "u1", "newPassword": "hunter2-s3cret"}),
        );
        assert!(e.is_empty());
        assert_eq!(
            Value::Object(checked.details.unwrap()),
            json!({"uid": "u1", "newPassword": "[REDACTED]"})
        );
    }
    // A refused event's errors do not carry the secret either.
    let (_, e) = run(
        &policy(&c, true),
        "setPassword",
        None,
        json!({"newPassword": "hunter2-s3cret", "oldPassword": "hunter1-s3cret"}),
    );
    assert_eq!(e.len(), 1);
    assert!(!format!("{e:?}").contains("s3cret"));
}

#[test]
fn hmac_mode_is_stable_keyed_and_matches_hmac_value() {
    let mut doc = prophecy().document().clone();
    doc.options.sensitive = Redaction::Hmac;
    let c = Catalog::from_document(doc).unwrap();
    let p = policy(&c, true);
    let d = json!({"uid": "u1", "newPassword": "hunter2"});
    let a = run(&p, "setPassword", None, d.clone()).0.details.unwrap();
    let b = run(&p, "setPassword", None, d).0.details.unwrap();
    assert_eq!(a, b);
    let h = a["newPassword"].as_str().unwrap();
    assert_eq!(h, hmac_value(&KEY, &json!("hunter2")));
    assert_eq!(
        h,
        "hmac-sha256:326eb4f6783e519f198c32929bd28e66c5229387bcad7eaa651b20613622ec9f"
    );
    assert_ne!(h, hmac_value(&[8; 32], &json!("hunter2")));
    assert_ne!(hmac_value(&KEY, &json!(12)), hmac_value(&KEY, &json!("13")));
    // A value already replaced (by the capture gateway) is kept, not hashed again.
    let again = run(&p, "setPassword", None, json!({"newPassword": h})).0;
    assert_eq!(again.details, None);
    let marked = run(
        &p,
        "setPassword",
        None,
        json!({"newPassword": "[REDACTED]"}),
    )
    .0;
    assert_eq!(marked.details, None);
    // Anything else that merely looks like one is hashed.
    let short = run(
        &p,
        "setPassword",
        None,
        json!({"newPassword": "hmac-sha256:abc"}),
    )
    .0;
    assert_ne!(
        short.details.unwrap()["newPassword"],
        json!("hmac-sha256:abc")
    );
}

#[test]
fn gateway_rules_are_checked() {
    let mut doc = prophecy().document().clone();
    assert_eq!(doc.gateway.scope_type.as_deref(), Some("PROJECT"));
    doc.gateway.resource_id.push("a..b".into());
    doc.actions.get_mut("addProject").unwrap().gateway = Some(GatewayRule {
        scope_type: Some("bad type".into()),
        ..GatewayRule::default()
    });
    let fields: Vec<String> = match Catalog::from_document(doc) {
        Err(e) => e.problems().into_iter().map(|p| p.field).collect(),
        Ok(_) => panic!("accepted"),
    };
    let last = prophecy().document().gateway.resource_id.len();
    assert!(
        fields.contains(&format!("gateway.resource_id[{last}]")),
        "{fields:?}"
    );
    assert!(
        fields.contains(&"actions.addProject.gateway.scope_type".to_owned()),
        "{fields:?}"
    );
}

#[test]
fn hmac_matches_openssl() {
    // printf %s 'what do ya want for nothing?' | openssl dgst -sha256 -mac HMAC -macopt hexkey:0707...07
    assert_eq!(
        hmac_value(&[0x07; 32], &json!("what do ya want for nothing?")),
        "hmac-sha256:37853aff7df2ff1f94e194ad66dd7633e01f2642bdbc02f0b6a1ea7540d2ac0e"
    );
}

#[test]
fn open_details_still_redact_listed_secrets() {
    let c = Catalog::from_toml(
        r#"
name = "custom"
[options]
details = "open"
[resource_types.DOC]
[actions.share]
sensitive = ["link.token"]
"#,
    )
    .unwrap();
    let (checked, e) = run(
        &policy(&c, true),
        "share",
        Some("DOC"),
        json!({"link": {"token": "t0k", "url": "u"}, "who": "x"}),
    );
    assert!(e.is_empty(), "{e:?}");
    assert_eq!(
        Value::Object(checked.details.unwrap()),
        json!({"link": {"token": "[REDACTED]", "url": "u"}, "who": "x"})
    );
}

fn invalid(toml: &str) -> Vec<FieldError> {
    match Catalog::from_toml(toml) {
        Err(CatalogError::Invalid(v)) => v,
        other => panic!("expected invalid, got {other:?}"),
    }
}

#[test]
fn malformed_catalogs_are_refused_with_the_field_named() {
    let e = invalid(
        r#"
name = "Bad Name"
[resource_types.DOC]
[actions.a]
resource_types = ["DOC", "PAGE"]
parameters = ["x", "x", "y.z", "y", "q..r"]
sensitive = ["nope"]
"#,
    );
    let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
    assert!(fields.contains(&"name"), "{fields:?}");
    assert!(
        fields.contains(&"actions.a.resource_types[1]"),
        "{fields:?}"
    );
    assert!(fields.contains(&"actions.a.parameters[1]"), "{fields:?}");
    assert!(fields.contains(&"actions.a.parameters[4]"), "{fields:?}");
    assert!(fields.contains(&"actions.a.sensitive[0]"), "{fields:?}");
    assert!(
        e.iter()
            .any(|e| e.reason.contains("both a parameter and the parent")),
        "{e:?}"
    );
    assert!(matches!(
        Catalog::from_toml("name = \"x\"\n[actions.a]\ncolour = 1\n"),
        Err(CatalogError::Syntax { .. })
    ));
    assert!(matches!(
        Catalog::from_toml("name = "),
        Err(CatalogError::Syntax { .. })
    ));
    let e = invalid("name = \"x\"\nactions = {}\n");
    assert_eq!(e[0].field, "actions");
}

#[test]
fn json_form_round_trips() {
    for name in BUILTIN_NAMES {
        let c = builtin(name).unwrap();
        let back = Catalog::from_json(&c.to_json()).unwrap();
        assert_eq!(back.document(), c.document());
    }
}

#[test]
fn the_documented_example_is_a_valid_catalog() {
    let doc = include_str!("../../../../docs/catalogs.md");
    let section = &doc[doc.find("## The format").unwrap()..];
    let start = section.find("```toml\n").unwrap() + 8;
    let end = start + section[start..].find("```").unwrap();
    let c = Catalog::from_toml(&section[start..end]).unwrap();
    assert_eq!(c.name(), "shop");
    let p = policy(&c, true);
    let (checked, e) = run(
        &p,
        "refund",
        Some("ORDER"),
        json!({"amount": 5, "card": [{"last4": "4242", "number": "4242424242424242"}]}),
    );
    assert!(e.is_empty(), "{e:?}");
    assert_eq!(
        checked.details.unwrap()["card"][0]["number"],
        json!("[REDACTED]")
    );
    assert!(
        run(
            &p,
            "tableQuery",
            None,
            json!({"uid": "u", "projectId": "p"})
        )
        .1
        .is_empty()
    );
}
