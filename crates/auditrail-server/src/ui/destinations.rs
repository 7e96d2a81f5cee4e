//! Destinations (org admins): each destination's delivery status (lag, last delivery,
//! last error), the form to add or change one (an S3 bucket, or a push stream to an
//! HTTPS endpoint, Splunk HEC or Datadog), and for S3 the permission test with each
//! action's result and the bucket policy to copy.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{UiError, Viewer};
use crate::App;
use crate::delivery::config_of;
use crate::error::ApiError;
use crate::routes::destinations as api;

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub struct DestinationForm {
    #[serde(default, skip_serializing)]
    csrf: Option<String>,
    #[serde(default)]
    name: String,
    /// `s3`, `https`, `splunk_hec` or `datadog`.
    #[serde(default)]
    kind: String,
    #[serde(default)]
    bucket: String,
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    region: String,
    #[serde(default)]
    endpoint: String,
    #[serde(default)]
    access_key_id: String,
    /// Never shown again; blank keeps the stored secret on a change.
    #[serde(default, skip_serializing)]
    secret_access_key: String,
    #[serde(default)]
    credentials_source: String,
    #[serde(default)]
    role_arn: String,
    #[serde(default)]
    sts_endpoint: String,
    #[serde(default)]
    format: String,
    #[serde(default)]
    max_batch_events: String,
    #[serde(default)]
    max_batch_seconds: String,
    #[serde(default)]
    start: String,
    /// Push streams: the receiver's URL, its secret (never shown again; blank keeps the
    /// stored one), and each kind's own fields.
    #[serde(default)]
    url: String,
    #[serde(default, skip_serializing)]
    push_secret: String,
    #[serde(default)]
    index: String,
    #[serde(default)]
    site: String,
    #[serde(default)]
    service: String,
    /// `key:value` tags, separated by commas or spaces.
    #[serde(default)]
    tags: String,
    /// `azure_blob`: the storage account.
    #[serde(default)]
    account: String,
    /// `gcs`: the service account's JSON key; `azure_blob`: the account key. Never shown
    /// again; blank keeps the stored one.
    #[serde(default, skip_serializing)]
    store_key: String,
    /// A push stream's entries: `json` (the events) or `ocsf`.
    #[serde(default)]
    push_format: String,
    /// `standard` or `security_lake` (with the custom source's name and account).
    #[serde(default)]
    layout: String,
    #[serde(default)]
    source_name: String,
    #[serde(default)]
    account_id: String,
}

impl DestinationForm {
    /// The empty form, with the API's defaults chosen.
    fn blank() -> Self {
        DestinationForm {
            kind: "s3".into(),
            format: "ndjson.gz".into(),
            start: "earliest".into(),
            credentials_source: "assume_role".into(),
            ..DestinationForm::default()
        }
    }
}

/// A push stream's request, from the form: only the fields of its kind.
fn push_request_of(f: &DestinationForm) -> Value {
    let kind = f.kind.trim();
    let mut r = json!({"kind": kind});
    let (secret_field, own): (&str, &[(&str, &String)]) = match kind {
        "splunk_hec" => ("token", &[("url", &f.url), ("index", &f.index)]),
        "datadog" => (
            "api_key",
            &[("url", &f.url), ("site", &f.site), ("service", &f.service)],
        ),
        _ => ("secret", &[("url", &f.url)]),
    };
    for (k, v) in own {
        if !v.trim().is_empty() {
            r[*k] = json!(v.trim());
        }
    }
    if !f.push_secret.is_empty() {
        r[secret_field] = json!(f.push_secret);
    }
    if f.push_format.trim() == "ocsf" {
        r["format"] = json!("ocsf");
    }
    if kind == "datadog" && !f.tags.trim().is_empty() {
        let tags: Vec<&str> = f.tags.split([',', ' ']).filter(|t| !t.is_empty()).collect();
        r["tags"] = json!(tags);
    }
    r
}

/// A `gcs` or `azure_blob` request, from the form.
fn cloud_request_of(f: &DestinationForm) -> Value {
    let kind = f.kind.trim();
    let mut r = json!({"kind": kind, "bucket": f.bucket.trim(), "prefix": f.prefix.trim()});
    for (k, v) in [
        ("endpoint", &f.endpoint),
        ("format", &f.format),
        ("start", &f.start),
    ] {
        if !v.trim().is_empty() {
            r[k] = json!(v.trim());
        }
    }
    if kind == "azure_blob" {
        r["account"] = json!(f.account.trim());
    }
    let key = f.store_key.trim();
    if !key.is_empty() {
        r["credentials"] = match kind {
            // The key as pasted: the API reads it, and names it if it is not a key.
            "gcs" => json!({"service_account_key": key}),
            _ => json!({"access_key": key}),
        };
    }
    batching(f, &mut r);
    r
}

/// `max_batch_events` and `max_batch_seconds`: a number goes as one; anything else goes
/// as typed, so the API names the field.
fn batching(f: &DestinationForm, r: &mut Value) {
    for (k, v) in [
        ("max_batch_events", &f.max_batch_events),
        ("max_batch_seconds", &f.max_batch_seconds),
    ] {
        let v = v.trim();
        if !v.is_empty() {
            r[k] = v
                .parse::<u64>()
                .map(|n| json!(n))
                .unwrap_or_else(|_| json!(v));
        }
    }
}

/// The request `PUT /v1/destinations/{name}` takes, from the form.
fn request_of(f: &DestinationForm) -> Value {
    if matches!(f.kind.trim(), "gcs" | "azure_blob") {
        return cloud_request_of(f);
    }
    let push = !matches!(f.kind.trim(), "" | "s3");
    let lake = f.layout.trim() == "security_lake";
    let mut r = match (push, lake) {
        (true, _) => push_request_of(f),
        // Security Lake's layout places the objects and writes OCSF Parquet.
        (false, true) => json!({"kind": "s3", "bucket": f.bucket.trim(), "layout": "security_lake",
            "source_name": f.source_name.trim(), "account_id": f.account_id.trim()}),
        (false, false) => {
            json!({"kind": "s3", "bucket": f.bucket.trim(), "prefix": f.prefix.trim()})
        }
    };
    let format = if lake { &String::new() } else { &f.format };
    let s3_only: &[(&str, &String)] = &[
        ("region", &f.region),
        ("endpoint", &f.endpoint),
        ("sts_endpoint", &f.sts_endpoint),
        ("format", format),
    ];
    for (k, v) in s3_only
        .iter()
        .filter(|_| !push)
        .chain(&[("start", &f.start)])
    {
        if !v.trim().is_empty() {
            r[*k] = json!(v.trim());
        }
    }
    batching(f, &mut r);
    if push {
        return r;
    }
    if f.credentials_source == "environment" {
        r["credentials"] = json!({"source": "environment"});
    } else if !f.role_arn.trim().is_empty()
        && (f.credentials_source == "assume_role" || f.access_key_id.trim().is_empty())
    {
        r["credentials"] = json!({"source": "assume_role", "role_arn": f.role_arn.trim()});
    } else if !f.access_key_id.trim().is_empty() || !f.secret_access_key.is_empty() {
        r["credentials"] = json!({
            "access_key_id": f.access_key_id.trim(),
            "secret_access_key": f.secret_access_key,
        });
    }
    r
}

async fn body_json(resp: Response) -> Result<Value, UiError> {
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .map_err(ApiError::internal)?;
    Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

struct Extra {
    form: DestinationForm,
    error: Option<(String, Option<String>)>,
    tested: Option<(String, Value)>,
}

async fn render(app: &Arc<App>, viewer: &Viewer, extra: Extra) -> Result<Response, UiError> {
    let principal = app.settings.delivery.principal_arn.clone();
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let mut list = Vec::new();
    for d in app.store.list_destinations(Some(&viewer.org)).await? {
        let mut v = api::view(app, &d).await?;
        if let (Some(_), Ok(c)) = (&principal, config_of(&d))
            && c.kind == crate::delivery::config::DestinationKind::S3
            && let Ok(p) = api::policies(app, &viewer.org, &c)
        {
            match p.get("trust_policy") {
                Some(trust) => {
                    v["trust_policy"] = json!(pretty(trust));
                    v["permissions_policy"] = json!(pretty(&p["permissions_policy"]));
                }
                None => v["policy"] = json!(pretty(&p)),
            }
        }
        list.push(v);
    }
    let external_id = app.delivery.external_id(&viewer.org);
    let (error, error_field) = extra.error.unzip();
    let (tested, results) = extra.tested.unzip();
    Ok(viewer
        .render(
            "destinations.html",
            "destinations",
            context! { destinations => list, form => extra.form, error => error,
            error_field => error_field.flatten(), tested => tested, test => results,
            principal_configured => principal.is_some(), external_id => external_id,
            principal => principal },
        )?
        .into_response())
}

pub async fn page(State(app): State<Arc<App>>, viewer: Viewer) -> Result<Response, UiError> {
    viewer.require_org_admin()?;
    let form = DestinationForm::blank();
    render(
        &app,
        &viewer,
        Extra {
            form,
            error: None,
            tested: None,
        },
    )
    .await
}

pub async fn save(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    form: Result<axum::Form<DestinationForm>, FormRejection>,
) -> Result<Response, UiError> {
    viewer.require_org_admin()?;
    let axum::Form(form) = form?;
    viewer.check_csrf(form.csrf.as_deref())?;
    let name = form.name.trim().to_owned();
    let body = Bytes::from(serde_json::to_vec(&request_of(&form)).map_err(ApiError::internal)?);
    match api::put(
        State(app.clone()),
        viewer.who.clone(),
        Path(name.clone()),
        body,
    )
    .await
    {
        Ok(_) => Ok(Redirect::to(&format!("/ui/destinations#dest-{name}")).into_response()),
        Err(e) => {
            let status = e.status;
            let field = e.field().map(str::to_owned);
            let mut resp = render(
                &app,
                &viewer,
                Extra {
                    form,
                    error: Some((e.message, field)),
                    tested: None,
                },
            )
            .await?;
            *resp.status_mut() = status;
            Ok(resp)
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct CsrfOnly {
    csrf: Option<String>,
}

pub async fn test(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path(name): Path<String>,
    form: Result<axum::Form<CsrfOnly>, FormRejection>,
) -> Result<Response, UiError> {
    viewer.require_org_admin()?;
    viewer.check_csrf(form.ok().and_then(|f| f.0.csrf).as_deref())?;
    let resp = api::test(State(app.clone()), viewer.who.clone(), Path(name.clone())).await?;
    let results = body_json(resp).await?;
    let form = DestinationForm::blank();
    render(
        &app,
        &viewer,
        Extra {
            form,
            error: None,
            tested: Some((name, results)),
        },
    )
    .await
}
