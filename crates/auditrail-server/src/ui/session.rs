//! Who is looking at the page: a session cookie opened from a viewer link, or an org
//! API key sent as `Authorization: Bearer`. Sessions are signed claims (no server-side
//! table), bound to the link's lifetime; forms carry a CSRF token tied to the session.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use minijinja::{Value, context};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use auditrail_core::time::format_millis;
use auditrail_store::Role;

use super::render::{UiError, page};
use super::signing_key;
use super::token::{self, Claims, Purpose, TokenError};
use crate::App;
use crate::auth::Principal;
use auditrail_service::ingest::record_audit_event;
use auditrail_service::random::id as random_id;

pub const COOKIE: &str = "auditrail_session";

/// The person (or key) the page is shown to.
pub struct Viewer {
    pub who: Principal,
    pub org: String,
    pub role: Role,
    /// When set, only this scope's events are shown.
    pub scope: Option<String>,
    display: String,
    /// The CSRF token forms must carry; `None` for API keys (no cookie to ride on).
    csrf: Option<String>,
    expires_at: Option<String>,
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn role_of(s: &str) -> Option<Role> {
    match s {
        "viewer" => Some(Role::Viewer),
        "admin" => Some(Role::Admin),
        _ => None,
    }
}

impl Viewer {
    fn from_claims(c: Claims, key: &[u8; 32]) -> Result<Self, UiError> {
        let role =
            role_of(&c.role).ok_or_else(|| UiError::signed_out("Your session is not valid."))?;
        Ok(Self {
            display: c
                .actor_name
                .clone()
                .or_else(|| c.actor_email.clone())
                .unwrap_or_else(|| c.actor_id.clone()),
            csrf: Some(token::csrf_token(key, &c.id)),
            expires_at: Some(format_millis(c.exp * 1000)),
            org: c.org.clone(),
            role,
            scope: c.scope_id.clone(),
            who: Principal::User {
                org: c.org,
                role,
                id: c.actor_id,
                email: c.actor_email,
                name: c.actor_name,
                scope_id: c.scope_id,
            },
        })
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    pub fn require_admin(&self) -> Result<(), UiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(UiError::admins_only())
        }
    }

    /// Destinations deliver the whole org, so a viewer narrowed to one scope may not
    /// see or change them, whatever its role.
    pub fn require_org_admin(&self) -> Result<(), UiError> {
        self.require_admin()?;
        if self.scope.is_some() {
            return Err(UiError::new(
                StatusCode::FORBIDDEN,
                "Not for a single scope",
                "Delivery settings cover the whole organization; your access is limited to one scope.",
            ));
        }
        Ok(())
    }

    /// Refuses a form that does not carry this session's CSRF token.
    pub fn check_csrf(&self, given: Option<&str>) -> Result<(), UiError> {
        let Some(want) = &self.csrf else {
            return Ok(());
        };
        let given = given.unwrap_or("");
        if want.len() == given.len() && bool::from(want.as_bytes().ct_eq(given.as_bytes())) {
            Ok(())
        } else {
            Err(UiError::new(
                StatusCode::FORBIDDEN,
                "Form expired",
                "This form did not come from your current session.",
            )
            .hint("Reload the page and submit the form again."))
        }
    }

    /// Renders a page inside the common frame (navigation, who is signed in).
    pub fn render(&self, template: &str, nav: &str, extra: Value) -> Result<Html<String>, UiError> {
        let me = context! {
            name => self.display,
            role => self.role.as_str(),
            admin => self.is_admin(),
            org_admin => self.is_admin() && self.scope.is_none(),
            scope => self.scope,
            org => self.org,
            via_key => self.csrf.is_none(),
            expires_at => self.expires_at,
        };
        page(
            template,
            context! { me => me, csrf => self.csrf.clone().unwrap_or_default(), nav => nav, ..extra },
        )
    }
}

impl FromRequestParts<Arc<App>> for Viewer {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, UiError> {
        if parts.headers.contains_key(header::AUTHORIZATION) {
            let who = Principal::from_request_parts(parts, app).await?;
            let org = who.org_with(&[Role::Viewer, Role::Admin])?.to_owned();
            let (role, display) = match &who {
                Principal::Key { role, key_id, .. } => (*role, key_id.clone()),
                _ => return Err(UiError::signed_out("Use an org API key or a viewer link.")),
            };
            return Ok(Self {
                who,
                org,
                role,
                scope: None,
                display,
                csrf: None,
                expires_at: None,
            });
        }
        let cookie = cookie_value(&parts.headers, COOKIE)
            .ok_or_else(|| UiError::signed_out("You are not signed in to the Audit page."))?;
        let key = signing_key(app).await?;
        let claims =
            token::open(&key, Purpose::Session, cookie, now_secs()).map_err(|e| match e {
                TokenError::Expired => {
                    UiError::signed_out("Your session on the Audit page has ended.")
                }
                _ => UiError::signed_out("Your session is not valid."),
            })?;
        Self::from_claims(claims, &key)
    }
}

pub async fn home() -> Redirect {
    Redirect::to("/ui/events")
}

#[derive(Debug, Deserialize)]
pub struct LoginParams {
    token: Option<String>,
}

fn session_cookie(app: &App, value: &str, max_age: i64) -> Result<HeaderValue, UiError> {
    let secure = if app.settings.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .map_err(|e| UiError::from(crate::error::ApiError::internal(e)))
}

/// Opens a viewer link: checks it, spends it, and starts a session that ends when the
/// link would have. Answers with a page that moves on to the events, not a redirect, so
/// the SameSite=Strict cookie is sent even when the link was opened from another site.
pub async fn login(
    State(app): State<Arc<App>>,
    Query(p): Query<LoginParams>,
) -> Result<Response, UiError> {
    let text = p
        .token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| UiError::signed_out("This address is missing its link token."))?;
    let key = signing_key(&app).await?;
    let now = now_secs();
    let link = token::open(&key, Purpose::Link, &text, now).map_err(|e| match e {
        TokenError::Expired => UiError::signed_out("This link has expired."),
        _ => UiError::signed_out("This link is not valid."),
    })?;
    let marker = random_id("");
    let first = app
        .store
        .init_setting(&format!("ui/used_link/{}", link.id), &marker)
        .await
        .map_err(crate::error::ApiError::from)?;
    if first != marker {
        return Err(UiError::signed_out("This link has already been used."));
    }
    let mut session = link.clone();
    session.id = random_id("s_");
    let value = token::sign(&key, Purpose::Session, &session);
    let viewer = Viewer::from_claims(session, &key)?;
    record_audit_event(
        &app,
        &link.org,
        viewer.who.actor(),
        "openAuditPage",
        json!({"type": "VIEWER_LINK", "id": link.id}),
        json!({"role": link.role, "scope_id": link.scope_id, "expires_at": viewer.expires_at}),
        "success",
    )
    .await?;
    let mut resp = page("login.html", context! { next => "/ui/events" })?.into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(&app, &value, link.exp - now)?,
    );
    Ok(resp)
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    csrf: Option<String>,
}

pub async fn logout(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    form: Result<axum::Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, UiError> {
    let csrf = form.ok().and_then(|f| f.0.csrf);
    viewer.check_csrf(csrf.as_deref())?;
    let mut resp = UiError::new(
        StatusCode::OK,
        "Signed out",
        "You have left the Audit page.",
    )
    .hint("Open the audit log again from your product when you need it.")
    .into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&app, "", 0)?);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; auditrail_session=abc.def; b=2"),
        );
        assert_eq!(cookie_value(&h, COOKIE), Some("abc.def"));
        assert_eq!(cookie_value(&h, "c"), None);
    }
}
