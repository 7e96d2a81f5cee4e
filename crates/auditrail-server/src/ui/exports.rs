//! Exports (admins): the form Apollo shows (time range, optional user, optional graph)
//! plus the format, and the table of exports with live status and download links.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use auditrail_store::ExportJob;

use super::{UiError, Viewer};
use crate::App;
use crate::error::ApiError;
use crate::routes::exports as api;

/// What the form sends; kept to show it again when it is refused.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub struct ExportForm {
    #[serde(default, skip_serializing)]
    csrf: Option<String>,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    actor_id: String,
    #[serde(default)]
    scope_id: String,
    #[serde(default)]
    format: String,
}

/// A plain date as the end of a range means "through that day".
pub fn inclusive_to(to: &str) -> String {
    match chrono::NaiveDate::parse_from_str(to.trim(), "%Y-%m-%d") {
        Ok(d) => d
            .succ_opt()
            .map(|n| n.format("%Y-%m-%d").to_string())
            .unwrap_or_else(|| to.to_owned()),
        Err(_) => to.trim().to_owned(),
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn visible(viewer: &Viewer, job: &ExportJob) -> bool {
    match &viewer.scope {
        None => true,
        Some(s) => serde_json::from_str::<Value>(&job.request)
            .ok()
            .is_some_and(|r| r["scope_id"].as_str() == Some(s)),
    }
}

async fn rows_of(app: &App, viewer: &Viewer) -> Result<(Vec<Value>, bool), UiError> {
    let jobs = app.store.list_exports(&viewer.org, 100).await?;
    let mut pending = false;
    let rows = jobs
        .iter()
        .filter(|j| visible(viewer, j))
        .map(|j| {
            let mut v = api::view(app, j);
            if matches!(v["status"].as_str(), Some("queued" | "running")) {
                pending = true;
            }
            v["size"] = json!(j.bytes.map(human_bytes));
            v["ui_download"] = json!(
                v["download_url"]
                    .is_string()
                    .then(|| format!("/ui/exports/{}/download", j.id))
            );
            v
        })
        .collect();
    Ok((rows, pending))
}

fn default_form(viewer: &Viewer) -> ExportForm {
    let today = chrono::Utc::now().date_naive();
    ExportForm {
        from: (today - chrono::Days::new(30))
            .format("%Y-%m-%d")
            .to_string(),
        to: today.format("%Y-%m-%d").to_string(),
        scope_id: viewer.scope.clone().unwrap_or_default(),
        format: "csv".into(),
        ..ExportForm::default()
    }
}

async fn render(
    app: &App,
    viewer: &Viewer,
    form: &ExportForm,
    error: Option<(String, Option<String>)>,
) -> Result<Response, UiError> {
    let (rows, pending) = rows_of(app, viewer).await?;
    let (error, error_field) = error.unzip();
    Ok(viewer
        .render(
            "exports.html",
            "exports",
            context! { form => form, exports => rows, pending => pending,
            error => error, error_field => error_field.flatten() },
        )?
        .into_response())
}

pub async fn page(State(app): State<Arc<App>>, viewer: Viewer) -> Result<Response, UiError> {
    viewer.require_admin()?;
    let form = default_form(&viewer);
    render(&app, &viewer, &form, None).await
}

/// The table body alone, polled by the page while an export is queued or running.
pub async fn rows(State(app): State<Arc<App>>, viewer: Viewer) -> Result<Response, UiError> {
    viewer.require_admin()?;
    let (rows, pending) = rows_of(&app, &viewer).await?;
    let html = super::render::page(
        "export_rows.html",
        context! { exports => rows, pending => pending },
    )?;
    Ok(html.into_response())
}

pub async fn create(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    form: Result<axum::Form<ExportForm>, FormRejection>,
) -> Result<Response, UiError> {
    viewer.require_admin()?;
    let axum::Form(mut form) = form?;
    viewer.check_csrf(form.csrf.as_deref())?;
    if let Some(s) = &viewer.scope {
        form.scope_id = s.clone();
    }
    let mut req = json!({
        "from": form.from.trim(),
        "to": inclusive_to(&form.to),
        "format": if form.format.is_empty() { "csv" } else { form.format.as_str() },
    });
    if !form.actor_id.trim().is_empty() {
        req["actor_id"] = json!(form.actor_id.trim());
    }
    if !form.scope_id.trim().is_empty() {
        req["scope_id"] = json!(form.scope_id.trim());
    }
    let body = Bytes::from(serde_json::to_vec(&req).map_err(ApiError::internal)?);
    match api::create(State(app.clone()), viewer.who.clone(), body).await {
        Ok(_) => Ok(Redirect::to("/ui/exports").into_response()),
        Err(e) => {
            let status = e.status;
            let field = e.field().map(str::to_owned);
            let mut resp = render(&app, &viewer, &form, Some((e.message, field))).await?;
            *resp.status_mut() = status;
            Ok(resp)
        }
    }
}

pub async fn download(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    viewer.require_admin()?;
    let job = app
        .store
        .get_export(&viewer.org, &id)
        .await?
        .filter(|j| visible(&viewer, j))
        .ok_or_else(|| UiError::from(ApiError::not_found("export")))?;
    let actor = viewer.who.actor();
    Ok(api::serve_file(&app, &viewer.org, &job.id, |_| actor, "audit_page").await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_end_dates_include_the_day() {
        assert_eq!(inclusive_to("2026-11-21"), "2026-11-22");
        assert_eq!(inclusive_to("2026-12-31"), "2027-01-01");
        assert_eq!(inclusive_to("2026-11-21T10:00:00Z"), "2026-11-21T10:00:00Z");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
