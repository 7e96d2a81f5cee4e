//! Events: the filtered, paginated table (newest first), one event in full, and the
//! material to verify it against the latest signed checkpoint.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use minijinja::context;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use auditrail_core::catalog::Catalog;
use auditrail_core::merkle::{leaf_hash, verify_inclusion};
use auditrail_core::note::{Checkpoint, NoteVerifier};
use auditrail_core::query::{Field, Filter};
use auditrail_store::{Order, PageRequest, StoredEvent, proofs};

use super::{UiError, Viewer};
use auditrail_service::ingest::record_audit_event;

use crate::App;
use crate::checkpoint_signer;
use crate::error::ApiError;
use crate::routes::events::{SearchParams, decode_cursor, encode_cursor, filter_from};
use crate::routes::tail;

const PAGE_SIZE: usize = 50;

/// The filter form; empty fields mean "any".
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub struct EventsQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

fn clean(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

impl EventsQuery {
    fn cleaned(self, scope: Option<&String>) -> Self {
        Self {
            from: clean(self.from),
            to: clean(self.to),
            actor_id: clean(self.actor_id),
            scope_id: scope.cloned().or(clean(self.scope_id)),
            action: clean(self.action),
            resource_type: clean(self.resource_type),
            q: clean(self.q),
            cursor: clean(self.cursor),
        }
    }

    fn search_params(&self) -> SearchParams {
        SearchParams {
            from: self.from.clone(),
            to: self.to.as_deref().map(super::exports::inclusive_to),
            actor_id: self.actor_id.clone(),
            action: self.action.clone(),
            resource_type: self.resource_type.clone(),
            scope_id: self.scope_id.clone(),
            q: self.q.clone(),
            ..SearchParams::default()
        }
    }

    fn is_filtered(&self) -> bool {
        self.from.is_some()
            || self.to.is_some()
            || self.actor_id.is_some()
            || self.action.is_some()
            || self.resource_type.is_some()
            || self.q.is_some()
    }

    fn href(&self, cursor: Option<String>) -> String {
        let mut q = self.clone();
        q.cursor = cursor;
        let qs = serde_urlencoded::to_string(&q).unwrap_or_default();
        if qs.is_empty() {
            "/ui/events".to_owned()
        } else {
            format!("/ui/events?{qs}")
        }
    }
}

/// One line of the table.
#[derive(Debug, Serialize)]
pub struct Row {
    seq: u64,
    occurred_at: String,
    action: String,
    description: Option<String>,
    actor: String,
    actor_id: String,
    actor_type: String,
    resource_type: String,
    resource_id: String,
    scope_id: String,
    outcome: String,
}

fn s(v: &Value, path: &[&str]) -> String {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn description(catalog: Option<&Catalog>, action: &str) -> Option<String> {
    catalog?
        .document()
        .actions
        .get(action)
        .and_then(|a| a.description.clone())
}

pub fn row(e: &StoredEvent, catalog: Option<&Catalog>) -> Row {
    let v: Value = serde_json::from_str(&e.body).unwrap_or(Value::Null);
    let actor_id = s(&v, &["actor", "id"]);
    let name = s(&v, &["actor", "name"]);
    let email = s(&v, &["actor", "email"]);
    let actor = [name, email, actor_id.clone()]
        .into_iter()
        .find(|x| !x.is_empty())
        .unwrap_or_default();
    let action = s(&v, &["action"]);
    Row {
        seq: e.seq,
        occurred_at: s(&v, &["occurred_at"]),
        description: description(catalog, &action),
        action,
        actor,
        actor_id,
        actor_type: s(&v, &["actor", "type"]),
        resource_type: s(&v, &["resource", "type"]),
        resource_id: s(&v, &["resource", "id"]),
        scope_id: s(&v, &["scope", "id"]),
        outcome: s(&v, &["outcome"]),
    }
}

async fn catalog_of(app: &App, org: &str) -> Result<Option<Arc<Catalog>>, UiError> {
    Ok(app
        .policies
        .get(app, org)
        .await?
        .catalog
        .as_ref()
        .map(|(c, _)| c.clone()))
}

fn parse_seq(raw: &str) -> Result<u64, UiError> {
    raw.parse::<u64>().ok().filter(|s| *s > 0).ok_or_else(|| {
        UiError::new(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such event.",
        )
    })
}

pub async fn list(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, UiError> {
    let Query(raw) = query.map_err(|e| UiError::from(ApiError::from(e)))?;
    let q = raw.cleaned(viewer.scope.as_ref());
    let catalog = catalog_of(&app, &viewer.org).await?;
    let (actions, resource_types): (Vec<&String>, Vec<&String>) = match catalog.as_deref() {
        Some(c) => (
            c.document().actions.keys().collect(),
            c.document().resource_types.keys().collect(),
        ),
        None => (Vec::new(), Vec::new()),
    };
    let checked = filter_from(&q.search_params()).and_then(|f| {
        let after = q
            .cursor
            .as_deref()
            .map(|c| decode_cursor(c, Order::Desc))
            .transpose()?;
        Ok((f, after))
    });
    let (filter, after_seq) = match checked {
        Ok(v) => v,
        Err(e) => {
            let field = e.field().map(str::to_owned);
            let html = viewer.render(
                "events.html",
                "events",
                context! { q => q, error => e.message, error_field => field, rows => Vec::<Row>::new(),
                           actions => actions, resource_types => resource_types, filtered => true },
            )?;
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, html).into_response());
        }
    };
    // Live mode (from the newest page only) continues after the newest event this page
    // could show.
    let head = match q.cursor {
        None => Some(
            app.store
                .tree_head(&viewer.org)
                .await
                .map_err(ApiError::from)?
                .size,
        ),
        Some(_) => None,
    };
    let page = app
        .store
        .search(
            &viewer.org,
            &filter,
            PageRequest {
                after_seq,
                limit: PAGE_SIZE,
                order: Order::Desc,
            },
        )
        .await
        .map_err(ApiError::from)?;
    let live = head.map(|head| {
        let after = page.events.first().map_or(head, |e| e.seq.max(head));
        let qs = serde_urlencoded::to_string(&q).unwrap_or_default();
        format!("/ui/events/live?after={after}&{qs}")
    });
    let rows: Vec<Row> = page
        .events
        .iter()
        .map(|e| row(e, catalog.as_deref()))
        .collect();
    let next = page
        .next_after
        .map(|s| q.href(Some(encode_cursor(s, Order::Desc))));
    let newest = q.cursor.is_some().then(|| q.href(None));
    record_audit_event(
        &app,
        &viewer.org,
        viewer.who.actor(),
        "searchAuditLog",
        json!({"type": "AUDIT_LOG", "id": viewer.org}),
        json!({"filters": q, "results": rows.len()}),
        "success",
    )
    .await?;
    let html = viewer.render(
        "events.html",
        "events",
        context! { q => q, rows => rows, next => next, newest => newest, filtered => q.is_filtered(),
                   actions => actions, resource_types => resource_types, live => live },
    )?;
    Ok(html.into_response())
}

/// The event `seq` of the viewer's org, if the viewer may see it.
async fn find(app: &App, viewer: &Viewer, seq: u64) -> Result<StoredEvent, UiError> {
    let mut filter = Filter::default();
    if let Some(s) = &viewer.scope {
        filter.require(Field::ScopeId, s.clone());
    }
    let page = app
        .store
        .search(
            &viewer.org,
            &filter,
            PageRequest {
                after_seq: seq.checked_add(1),
                limit: 1,
                order: Order::Desc,
            },
        )
        .await
        .map_err(ApiError::from)?;
    page.events
        .into_iter()
        .next()
        .filter(|e| e.seq == seq)
        .ok_or_else(|| {
            UiError::new(
                StatusCode::NOT_FOUND,
                "Not found",
                format!("There is no event {seq} here."),
            )
            .hint("Go back to the events list; the event may be outside what you can see.")
        })
}

pub async fn detail(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path(seq): Path<String>,
) -> Result<Response, UiError> {
    let seq = parse_seq(&seq)?;
    let e = find(&app, &viewer, seq).await?;
    let catalog = catalog_of(&app, &viewer.org).await?;
    let value: Value = serde_json::from_str(&e.body).map_err(ApiError::internal)?;
    let pretty = serde_json::to_string_pretty(&value).map_err(ApiError::internal)?;
    record_audit_event(
        &app,
        &viewer.org,
        viewer.who.actor(),
        "viewAuditEvent",
        json!({"type": "AUDIT_EVENT", "id": seq.to_string()}),
        json!({}),
        "success",
    )
    .await?;
    let html = viewer.render(
        "event.html",
        "events",
        context! { row => row(&e, catalog.as_deref()), json => pretty,
        leaf_hex => hex::encode(e.leaf), leaf_b64 => B64.encode(e.leaf) },
    )?;
    Ok(html.into_response())
}

/// What the browser needs to check the event itself: the stored text, the inclusion
/// proof up to the latest signed checkpoint, that checkpoint and the public key. The
/// server's own verdict comes along for browsers without Ed25519 in WebCrypto (or pages
/// served without TLS, where WebCrypto is unavailable).
pub async fn proof(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path(seq): Path<String>,
) -> Result<Json<Value>, UiError> {
    let seq = parse_seq(&seq)?;
    let e = find(&app, &viewer, seq).await?;
    let org = viewer.org.as_str();
    let note = checkpoint_signer::covering(&app, org, seq).await?;
    let cp = Checkpoint::parse(&note).map_err(ApiError::internal)?;
    // Read after the checkpoint, so the log is at least as large as the tree it signs.
    let head = app.store.tree_head(org).await?;
    let p = proofs::inclusion(app.store.as_ref(), org, head.size, seq - 1, cp.size).await?;
    let vkey = app.signer.verifier_key();
    let leaf_ok = leaf_hash(e.body.as_bytes()) == e.leaf;
    let inclusion_ok = verify_inclusion(seq - 1, cp.size, &e.leaf, &p.hashes, &cp.root).is_ok();
    let signature_ok = NoteVerifier::parse(&vkey)
        .and_then(|v| v.verify(&note).map(|_| ()))
        .is_ok();
    Ok(Json(json!({
        "seq": seq,
        "leaf_index": seq - 1,
        "body": e.body,
        "leaf_hash": B64.encode(e.leaf),
        "tree_size": cp.size,
        "hashes": p.hashes.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
        "checkpoint": note,
        "public_key": vkey,
        "server": {"leaf": leaf_ok, "inclusion": inclusion_ok, "signature": signature_ok},
    })))
}

/// The filters of the events page, and where live mode starts.
#[derive(Debug, Deserialize)]
pub struct LiveQuery {
    #[serde(flatten)]
    filters: EventsQuery,
    after: Option<String>,
}

/// Live mode: the org's new events matching the page's filters, each as the table row
/// the page shows, over Server-Sent Events. `Last-Event-ID` (the browser's reconnect)
/// wins over `after` (where the page left off).
pub async fn live(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    headers: axum::http::HeaderMap,
    query: Result<Query<LiveQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(raw) = query?;
    let q = raw.filters.cleaned(viewer.scope.as_ref());
    let filter = filter_from(&q.search_params())?;
    let resume = match tail::last_event_id(&headers)? {
        Some(seq) => Some(seq),
        None => raw
            .after
            .as_deref()
            .map(|a| {
                a.parse::<u64>()
                    .map_err(|_| ApiError::invalid_field("after", "must be the seq of an event"))
            })
            .transpose()?,
    };
    let field = if headers.contains_key("last-event-id") {
        "Last-Event-ID"
    } else {
        "after"
    };
    tail::check_resume(&app, &viewer.org, resume, field).await?;
    let sub = tail::subscribe(&app, &viewer.org)?;
    record_audit_event(
        &app,
        &viewer.org,
        viewer.who.actor(),
        "tailAuditLog",
        json!({"type": "AUDIT_LOG", "id": viewer.org}),
        json!({"filters": q, "resume_after": resume}),
        "success",
    )
    .await?;
    let catalog = catalog_of(&app, &viewer.org)
        .await
        .map_err(|e| ApiError::internal(e.message))?;
    let render: tail::Render = Box::new(move |e| {
        super::render::page(
            "event_row.html",
            context! { r => row(e, catalog.as_deref()) },
        )
        .map(|h| h.0)
        .unwrap_or_default()
    });
    tail::start(app.clone(), viewer.org.clone(), filter, resume, sub, render).await
}
