//! Templates, the error page, and the headers every page carries.

use std::sync::LazyLock;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use minijinja::{Environment, Value};

use crate::error::ApiError;

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    for (name, text) in [
        ("base.html", include_str!("templates/base.html")),
        ("message.html", include_str!("templates/message.html")),
        ("events.html", include_str!("templates/events.html")),
        ("event.html", include_str!("templates/event.html")),
        ("event_row.html", include_str!("templates/event_row.html")),
        ("exports.html", include_str!("templates/exports.html")),
        (
            "export_rows.html",
            include_str!("templates/export_rows.html"),
        ),
        (
            "destinations.html",
            include_str!("templates/destinations.html"),
        ),
        ("integrity.html", include_str!("templates/integrity.html")),
        ("login.html", include_str!("templates/login.html")),
    ] {
        if let Err(e) = env.add_template(name, text) {
            // The templates are compiled into the binary; a test renders each one.
            tracing::error!(template = name, error = %e, "template does not parse");
        }
    }
    env
});

/// Renders `name` with `ctx` (HTML-escaped by default).
pub fn page(name: &str, ctx: Value) -> Result<Html<String>, UiError> {
    TEMPLATES
        .get_template(name)
        .and_then(|t| t.render(ctx))
        .map(Html)
        .map_err(|e| UiError::from(ApiError::internal(format!("template {name}: {e}"))))
}

/// An error shown as a page: what happened and what to do.
#[derive(Debug)]
pub struct UiError {
    pub status: StatusCode,
    pub title: String,
    pub message: String,
    pub hint: Option<String>,
}

impl UiError {
    pub fn new(status: StatusCode, title: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            title: title.to_owned(),
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: &str) -> Self {
        self.hint = Some(hint.to_owned());
        self
    }

    /// The session or link is gone: the user must come back through the host product.
    pub fn signed_out(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Please open the Audit page again", message).hint(
            "Links to the Audit page work once and for a short time. Go back to the product you came from and open its audit log again to get a fresh link.",
        )
    }

    pub fn admins_only() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Admins only",
            "This page is for your organization's admins.",
        )
        .hint("Ask an admin of your organization if you need an export or a change to delivery.")
    }
}

impl From<ApiError> for UiError {
    fn from(e: ApiError) -> Self {
        let title = match e.status.as_u16() {
            401 => return UiError::signed_out(e.message),
            403 => "Not allowed",
            404 => "Not found",
            409 => "Not possible right now",
            410 => "Gone",
            400 | 413 | 422 => "Please check what you entered",
            429 | 503 => "Busy — try again in a moment",
            _ => "Something went wrong",
        };
        UiError::new(e.status, title, e.message)
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let ctx = minijinja::context! {
            title => self.title,
            message => self.message,
            hint => self.hint,
            status => self.status.as_u16(),
        };
        let body = TEMPLATES
            .get_template("message.html")
            .and_then(|t| t.render(ctx))
            .unwrap_or_else(|_| "error".to_owned());
        (self.status, Html(body)).into_response()
    }
}

pub async fn not_found() -> UiError {
    UiError::new(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no such page on the Audit page.",
    )
    .hint("Use the navigation above, or go to the events list.")
}

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'; frame-ancestors";

/// Pages are private and never cached; scripts and styles come only from this server;
/// links carry no referrer (a viewer link must not leak through one).
pub async fn security_headers(
    axum::extract::State(app): axum::extract::State<std::sync::Arc<crate::App>>,
    mut resp: Response,
) -> Response {
    let h = resp.headers_mut();
    let csp = format!("{CSP} {}", app.settings.ui_frame_ancestors);
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_str(&csp).unwrap_or(HeaderValue::from_static(
            "default-src 'self'; frame-ancestors 'self'",
        )),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

impl From<auditrail_service::ServiceError> for UiError {
    fn from(e: auditrail_service::ServiceError) -> Self {
        UiError::from(ApiError::from(e))
    }
}

impl From<auditrail_store::StoreError> for UiError {
    fn from(e: auditrail_store::StoreError) -> Self {
        UiError::from(ApiError::from(e))
    }
}

impl From<axum::extract::rejection::FormRejection> for UiError {
    fn from(e: axum::extract::rejection::FormRejection) -> Self {
        UiError::from(ApiError::bad_request("invalid_form", e.body_text()))
    }
}
