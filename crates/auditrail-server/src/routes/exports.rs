//! Exports: request (admins only), list, inspect, download (admin key or signed link),
//! the checkpoint each export was cut at, and the org's export webhook.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use auditrail_core::time::format_millis;
use auditrail_export::{ExportRequest, Format};
use auditrail_store::{ExportJob, ExportStatus, Role};

use super::events::record_self_audit;
use crate::App;
use crate::auth::{Principal, authenticate};
use crate::error::{ApiError, ApiResult};
use crate::exports::notify::{Webhook, webhook_setting};
use crate::exports::{check_link, now_ms, urlencode};
use auditrail_service::ingest::record_audit_event;

const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// The job as the API shows it: the request's fields, the status and the results.
pub fn view(app: &App, job: &ExportJob) -> Value {
    let request: Value = serde_json::from_str(&job.request).unwrap_or(Value::Null);
    let requester: Value = serde_json::from_str(&job.requester).unwrap_or(Value::Null);
    let base = app.settings.public_url.trim_end_matches('/');
    let ready = job.status == ExportStatus::Succeeded;
    let mut v = json!({
        "id": job.id,
        "status": job.status.as_str(),
        "requester": requester,
        "row_count": job.row_count,
        "bytes": job.bytes,
        "sha256": job.sha256,
        "error": job.error,
        "attempts": job.attempts,
        "checkpoint_size": job.checkpoint_size,
        "created_at": format_millis(job.created_ms),
        "started_at": job.started_ms.map(format_millis),
        "completed_at": job.completed_ms.map(format_millis),
        "expires_at": job.expires_ms.map(format_millis),
        "download_url": ready.then(|| format!("{base}/v1/exports/{}/download", job.id)),
        "checkpoint_url": job.checkpoint.as_ref().map(|_| format!("{base}/v1/exports/{}/checkpoint", job.id)),
    });
    if let (Value::Object(m), Value::Object(r)) = (&mut v, request) {
        for (k, val) in r {
            m.entry(k).or_insert(val);
        }
    }
    v
}

fn new_export_id() -> String {
    format!(
        "exp_{}",
        hex::encode(auditrail_service::random::bytes::<10>())
    )
}

fn parse_request(body: &[u8]) -> ApiResult<ExportRequest> {
    super::parse_json(body)
}

#[utoipa::path(post, path = "/v1/exports", request_body = auditrail_export::ExportRequest,
    responses((status = 202, description = "the queued job"), (status = 403, description = "only org admins export"), (status = 422, description = "names the invalid field")))]
pub async fn create(
    State(app): State<Arc<App>>,
    who: Principal,
    body: Bytes,
) -> ApiResult<Response> {
    let org = who.org_with(&[Role::Admin])?.to_owned();
    if body.len() > MAX_REQUEST_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "an export request is small JSON",
        ));
    }
    let req = parse_request(&body)?;
    req.validate(app.settings.exports.max_range.as_micros() as i64)
        .map_err(|e| ApiError::invalid_field(e.field, e.reason))?;
    let id = new_export_id();
    let request = serde_json::to_string(&req).map_err(ApiError::internal)?;
    let job = ExportJob::queued(
        id.clone(),
        org.clone(),
        request,
        who.actor().to_string(),
        now_ms(),
    );
    app.store.create_export(job.clone()).await?;
    record_self_audit(
        &app,
        &org,
        &who,
        "requestExport",
        json!({"type": "AUDIT_JOB", "id": id}),
        serde_json::to_value(&req).unwrap_or_default(),
    )
    .await?;
    app.exports.wake.notify_one();
    // The job as accepted: a worker may already be running it, and the answer to the
    // request should not depend on that race.
    Ok((StatusCode::ACCEPTED, axum::Json(view(&app, &job))).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/exports", responses((status = 200, description = "`{exports: [...]}`, newest first")))]
pub async fn list(
    State(app): State<Arc<App>>,
    who: Principal,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let org = who.org_with(&[Role::Viewer, Role::Admin])?;
    let Query(p) = params?;
    let limit = p.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid_field("limit", "must be from 1 to 1000"));
    }
    let jobs = app.store.list_exports(org, limit).await?;
    let exports: Vec<Value> = jobs.iter().map(|j| view(&app, j)).collect();
    Ok(axum::Json(json!({ "exports": exports })).into_response())
}

#[utoipa::path(get, path = "/v1/exports/{id}", responses((status = 200, description = "the job"), (status = 404, description = "no such export in this org")))]
pub async fn get(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let org = who.org_with(&[Role::Viewer, Role::Admin])?;
    let job = app
        .store
        .get_export(org, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("export"))?;
    Ok(axum::Json(view(&app, &job)).into_response())
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LinkParams {
    org: Option<String>,
    expires: Option<i64>,
    sig: Option<String>,
}

/// How a download was authorized.
enum Access {
    Key(Principal, String),
    Link { org: String },
}

impl Access {
    fn org(&self) -> &str {
        match self {
            Access::Key(_, org) | Access::Link { org } => org,
        }
    }
}

/// An admin key of the export's org (viewers and ingest keys get 403), or a valid
/// signed link (a bad signature is 403; a lapsed one 410).
async fn access(
    app: &App,
    headers: &HeaderMap,
    p: &LinkParams,
    id: &str,
    roles: &[Role],
) -> ApiResult<Access> {
    if let Some(h) = headers.get(header::AUTHORIZATION) {
        let token = h
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| ApiError::unauthorized("Authorization must be `Bearer <token>`"))?;
        let who = authenticate(app, token).await?;
        let org = who.org_with(roles)?.to_owned();
        return Ok(Access::Key(who, org));
    }
    let (Some(org), Some(expires), Some(sig)) = (&p.org, p.expires, &p.sig) else {
        return Err(ApiError::unauthorized(
            "missing Authorization: Bearer <token> (or a signed link's org, expires and sig)",
        ));
    };
    if !check_link(app, org, id, expires, sig).await? {
        return Err(ApiError::forbidden(
            "the link's signature does not match this export",
        ));
    }
    if expires * 1000 <= now_ms() {
        return Err(gone());
    }
    Ok(Access::Link { org: org.clone() })
}

fn gone() -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        "expired",
        "this export has expired and its file was deleted; request a new one",
    )
}

/// The job behind a download, if its file can be served.
async fn ready_job(app: &App, org: &str, id: &str) -> ApiResult<ExportJob> {
    let job = app
        .store
        .get_export(org, id)
        .await?
        .ok_or_else(|| ApiError::not_found("export"))?;
    match job.status {
        ExportStatus::Succeeded if job.expires_ms.is_some_and(|e| e > now_ms()) => Ok(job),
        ExportStatus::Succeeded | ExportStatus::Expired => Err(gone()),
        ExportStatus::Failed => Err(ApiError::new(
            StatusCode::CONFLICT,
            "export_failed",
            format!(
                "this export failed: {}",
                job.error.as_deref().unwrap_or("unknown error")
            ),
        )),
        ExportStatus::Queued | ExportStatus::Running => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_ready",
            format!(
                "this export is {}; poll GET /v1/exports/{id}",
                job.status.as_str()
            ),
        )),
    }
}

#[utoipa::path(get, path = "/v1/exports/{id}/download", params(("org" = Option<String>, Query), ("expires" = Option<i64>, Query), ("sig" = Option<String>, Query)),
    security((), ("bearer" = [])),
    responses((status = 200, description = "the file"), (status = 403, description = "not an admin, or a bad signature"), (status = 410, description = "expired")))]
pub async fn download(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    params: Result<Query<LinkParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(p) = params?;
    let acc = access(&app, &headers, &p, &id, &[Role::Admin]).await?;
    let org = acc.org().to_owned();
    match &acc {
        Access::Key(who, _) => serve_file(&app, &org, &id, |_| who.actor(), "api_key").await,
        Access::Link { .. } => {
            serve_file(
                &app,
                &org,
                &id,
                |job| serde_json::from_str(&job.requester).unwrap_or(Value::Null),
                "signed_link",
            )
            .await
        }
    }
}

/// Streams a finished export's file, recording `downloadExport` for `actor` first.
pub async fn serve_file(
    app: &App,
    org: &str,
    id: &str,
    actor: impl FnOnce(&ExportJob) -> Value,
    via: &str,
) -> ApiResult<Response> {
    let job = ready_job(app, org, id).await?;
    let name = job
        .file
        .clone()
        .ok_or_else(|| ApiError::internal("succeeded export without a file"))?;
    let path = app.settings.exports.dir.join(&name);
    let file = tokio::fs::File::open(&path).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            gone()
        } else {
            ApiError::internal(format!("open {}: {e}", path.display()))
        }
    })?;
    record_audit_event(
        app,
        org,
        actor(&job),
        "downloadExport",
        json!({"type": "AUDIT_JOB", "id": id}),
        json!({"via": via, "file": name, "sha256": job.sha256}),
        "success",
    )
    .await?;
    let req: Option<ExportRequest> = serde_json::from_str(&job.request).ok();
    let content_type = match req.as_ref() {
        Some(r) if r.gzip => "application/gzip",
        Some(r) => r.format.content_type(),
        None => Format::Csv.content_type(),
    };
    let stream = futures_util::stream::unfold(file, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 256 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(b) = job.bytes {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(b));
    }
    let download_name = format!("auditrail-{}-{}", urlencode(org), name);
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{download_name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Some(Ok(v)) = job.sha256.as_deref().map(HeaderValue::from_str) {
        h.insert("x-auditrail-sha256", v);
    }
    if let Some(s) = job.checkpoint_size {
        h.insert("x-auditrail-tree-size", HeaderValue::from(s));
    }
    Ok(resp)
}

#[utoipa::path(get, path = "/v1/exports/{id}/checkpoint", responses((status = 200, description = "the signed checkpoint (C2SP signed note) the export was cut at")))]
pub async fn checkpoint(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    params: Result<Query<LinkParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(p) = params?;
    let acc = access(&app, &headers, &p, &id, &[Role::Viewer, Role::Admin]).await?;
    let org = acc.org();
    let job = app
        .store
        .get_export(org, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("export"))?;
    let note = job.checkpoint.ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "not_ready",
            "this export has not been cut yet",
        )
    })?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note).into_response())
}

#[utoipa::path(get, path = "/v1/exports/{id}/proof", params(("id" = String, Path)),
    responses((status = 200, description = "the export's proof (`auditrail/export-proof@v1`): the checkpoint it was cut at and a multi-leaf proof of every row", content_type = "text/plain"),
        (status = 404, description = "no such export"), (status = 409, description = "not finished yet"), (status = 410, description = "expired")))]
pub async fn proof(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    params: Result<Query<LinkParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(p) = params?;
    let acc = access(&app, &headers, &p, &id, &[Role::Admin]).await?;
    let org = acc.org().to_owned();
    let job = ready_job(&app, &org, &id).await?;
    let name = job
        .file
        .clone()
        .ok_or_else(|| ApiError::internal("succeeded export without a file"))?;
    let path = app
        .settings
        .exports
        .dir
        .join(crate::exports::worker::proof_name(&name));
    let text = tokio::fs::read_to_string(&path).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            gone()
        } else {
            ApiError::internal(format!("open {}: {e}", path.display()))
        }
    })?;
    let disposition = format!(
        "attachment; filename=\"{}\"",
        crate::exports::worker::proof_name(&name)
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        text,
    )
        .into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookBody {
    /// http(s); it must resolve to an address the outbound policy allows
    #[schema(pattern = "^https?://")]
    url: String,
}

#[utoipa::path(put, path = "/v1/orgs/{org}/export-webhook", request_body = WebhookBody,
    responses((status = 200, description = "`{url, secret}`: the secret is shown once"), (status = 422, description = "`url` is not http(s), or its address is refused (`code: address_refused`, with the rule)")))]
pub async fn put_webhook(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(org): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    super::admin_of_existing(&app, &who, &org).await?;
    let b: WebhookBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid_field("url", e.to_string()))?;
    let url =
        reqwest::Url::parse(&b.url).map_err(|e| ApiError::invalid_field("url", e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ApiError::invalid_field(
            "url",
            "must be an http or https URL",
        ));
    }
    if let Err(e) = app.settings.outbound.check_url(url.as_str()).await {
        return Err(super::destinations::refused_address(
            &app,
            &org,
            &who,
            "updateExportWebhook",
            json!({"type": "AUDIT_JOB", "id": "export-webhook"}),
            "url",
            e,
        )
        .await);
    }
    let secret = auditrail_service::random::bytes::<32>();
    let hook = Webhook {
        url: url.to_string(),
        secret: format!("whsec_{}", hex::encode(secret)),
    };
    let text = serde_json::to_string(&hook).map_err(ApiError::internal)?;
    auditrail_service::sealed::put(&app, &webhook_setting(&org), &text).await?;
    record_self_audit(
        &app,
        &org,
        &who,
        "updateExportWebhook",
        json!({"type": "AUDIT_JOB", "id": "export-webhook"}),
        json!({"url": b.url}),
    )
    .await?;
    Ok(axum::Json(json!({"url": hook.url, "secret": hook.secret})).into_response())
}

#[utoipa::path(delete, path = "/v1/orgs/{org}/export-webhook", responses((status = 204, description = "removed")))]
pub async fn delete_webhook(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(org): Path<String>,
) -> ApiResult<Response> {
    super::admin_of_existing(&app, &who, &org).await?;
    app.store.put_setting(&webhook_setting(&org), None).await?;
    record_self_audit(
        &app,
        &org,
        &who,
        "deleteExportWebhook",
        json!({"type": "AUDIT_JOB", "id": "export-webhook"}),
        json!({}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_errors_name_the_field() {
        let f = |b: &str| parse_request(b.as_bytes()).unwrap_err();
        let e = f(r#"{"to":"2026-11-02"}"#);
        assert_eq!(
            (e.status.as_u16(), e.details[0]["field"].as_str()),
            (422, Some("from"))
        );
        let e = f(r#"{"from":"2026-11-01","to":"2026-11-02","format":"xlsx"}"#);
        assert_eq!(e.details[0]["field"], "format");
        let e = f(r#"{"from":"2026-11-01","to":"2026-11-02","gzip":"yes"}"#);
        assert_eq!(e.details[0]["field"], "gzip");
        let e = f(r#"{"from":"2026-11-01","to":"2026-11-02","colour":"red"}"#);
        assert_eq!(e.details[0]["field"], "colour");
        assert_eq!(f("{nope").status.as_u16(), 400);
    }
}
