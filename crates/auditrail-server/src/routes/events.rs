//! Ingest and search.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Value, json};

use auditrail_core::event::{self, with_leaf_hash};
use auditrail_core::query::{Field, Filter, parse_q};
use auditrail_core::{PreparedEvent, time};
use auditrail_service::ingest;
use auditrail_store::{Accepted, Order, PageRequest, Role};

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::metrics::{OrgLabel, Outcome};
use crate::{App, batch_order};
use auditrail_service::policy::OrgPolicy;

pub const MAX_BATCH_EVENTS: usize = 1000;
pub const MAX_BODY_BYTES: usize = 5 * 1024 * 1024;

/// A request body's events, validated and canonicalized; all or nothing. The body is one
/// event object or `{"events": [...]}`.
pub fn prepare_body(
    app: &App,
    org: &str,
    policy: Option<&OrgPolicy>,
    body: &[u8],
) -> ApiResult<Vec<PreparedEvent>> {
    if let Some(prepared) = fast_body(app, org, policy, body) {
        return Ok(prepared);
    }
    let (values, batched) = parse_events(body)?;
    Ok(ingest::prepare_batch(app, org, policy, &values, batched)?)
}

fn fast_body(
    app: &App,
    org: &str,
    policy: Option<&OrgPolicy>,
    body: &[u8],
) -> Option<Vec<PreparedEvent>> {
    let text = std::str::from_utf8(body).ok()?;
    let rules = ingest::rules(app, org, policy);
    let mut ids = ingest::ids_for(&rules);
    event::fast::prepare_body(text, &rules, MAX_BATCH_EVENTS, || ids.next_id())
}

/// Splits a request body into events: one event object, or `{"events": [...]}`.
pub fn parse_events(body: &[u8]) -> ApiResult<(Vec<Value>, bool)> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("request body is not valid JSON: {e}"),
        )
    })?;
    match v {
        Value::Object(mut m) if m.contains_key("events") && !m.contains_key("action") => {
            if m.len() > 1 {
                let extra = m
                    .keys()
                    .find(|k| *k != "events")
                    .cloned()
                    .unwrap_or_default();
                return Err(ApiError::invalid_field(
                    &extra,
                    "unknown field in a batch; only `events` is allowed",
                ));
            }
            match m.remove("events") {
                Some(Value::Array(events)) if events.is_empty() => Err(ApiError::invalid_field("events", "must contain at least one event")),
                Some(Value::Array(events)) if events.len() > MAX_BATCH_EVENTS => Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "batch_too_large",
                    format!("a batch holds at most {MAX_BATCH_EVENTS} events; this one has {}", events.len()),
                )
                .with_details(vec![json!({"field": "events", "reason": format!("at most {MAX_BATCH_EVENTS} events")})])),
                Some(Value::Array(events)) => Ok((events, true)),
                _ => Err(ApiError::invalid_field("events", "must be an array of events")),
            }
        }
        v @ Value::Object(_) => Ok((vec![v], false)),
        _ => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_event",
            "body must be an event object or {\"events\": [...]}",
        )),
    }
}

async fn read_body(body: Body) -> ApiResult<axum::body::Bytes> {
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("request body exceeds {MAX_BODY_BYTES} bytes"),
            )
        })
}

#[utoipa::path(post, path = "/v1/events", request_body(content = Object, description = "one event, or {\"events\": [...]} with at most 1000"),
    responses((status = 200, description = "`{accepted: [{id, seq, duplicate?}]}`, sent once durable"), (status = 422, description = "invalid; nothing stored"), (status = 503, description = "overloaded; retry after Retry-After")))]
pub async fn ingest(
    State(app): State<Arc<App>>,
    who: Principal,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let org = who.org_with(&[Role::Ingest, Role::Admin])?.to_owned();
    let place = batch_order::place(&headers)?;
    let result = async {
        let prepared = async {
            let bytes = read_body(body).await?;
            let policy = app.policies.get(&app, &org).await?;
            prepare_body(&app, &org, Some(&policy), &bytes)
        }
        .await;
        // An ordered batch is prepared at once, and appended (or refused) only in its
        // turn, after the batch before it.
        let turn = match &place {
            Some(p) => Some(app.batches.turn(&org, p).await?),
            None => None,
        };
        let result = async {
            let prepared = prepared?;
            let unknown: Vec<bool> = prepared.iter().map(|p| p.unknown_action).collect();
            let accepted = match &turn {
                None => app.store.append(&org, prepared, false).await?,
                Some(turn) => {
                    // Queued behind the batch before it (and ahead of the one after):
                    // stored only if that one is, often in the same commit.
                    let outcome = auditrail_store::Outcome::default();
                    let appending = app
                        .store
                        .enqueue_after(&org, prepared, false, turn.after(), outcome.clone())
                        .await?;
                    turn.queued(outcome);
                    appending.await?
                }
            };
            app.notify_appended();
            count_unknown_actions(&app, &org, &unknown, &accepted);
            Ok::<_, ApiError>(accepted)
        }
        .await;
        if let Some(turn) = turn {
            turn.end(batch_order::End::of(result.as_ref().err()));
        }
        result
    }
    .await;
    let outcome = match &result {
        Ok(_) => "accepted",
        Err(e) if e.status == StatusCode::SERVICE_UNAVAILABLE => "overloaded",
        Err(_) => "rejected",
    };
    app.metrics
        .ingest_requests
        .get_or_create(&Outcome { outcome })
        .inc();
    let accepted = result?;
    app.metrics
        .ingest_events
        .inc_by(accepted.iter().filter(|a| !a.duplicate).count() as u64);
    // Written straight from the list, not through a `Value` of every entry.
    #[derive(serde::Serialize)]
    struct Answer<'a> {
        accepted: &'a [Accepted],
    }
    let mut resp = axum::Json(Answer {
        accepted: &accepted,
    })
    .into_response();
    // Says the order was kept, so a client knows this server keeps it.
    if let Some(p) = &place
        && let Ok(v) = axum::http::HeaderValue::from_str(&p.n.to_string())
    {
        resp.headers_mut().insert(batch_order::HEADER, v);
    }
    Ok(resp)
}

/// Counts newly stored events whose action the org's catalog does not name.
pub fn count_unknown_actions(app: &App, org: &str, unknown: &[bool], accepted: &[Accepted]) {
    let n = unknown
        .iter()
        .zip(accepted)
        .filter(|(u, a)| **u && !a.duplicate)
        .count();
    if n > 0 {
        app.metrics
            .unknown_actions
            .get_or_create(&OrgLabel {
                org: org.to_owned(),
            })
            .inc_by(n as u64);
    }
}

/// Appends an event describing an administrative action to `org`'s own log.
pub async fn record_self_audit(
    app: &App,
    org: &str,
    who: &Principal,
    action: &str,
    resource: Value,
    details: Value,
) -> ApiResult<Accepted> {
    Ok(
        ingest::record_audit_event(app, org, who.actor(), action, resource, details, "success")
            .await?,
    )
}

#[derive(Debug, Deserialize, Default, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// Events that occurred at or after this time (RFC 3339, or `YYYY-MM-DD`: midnight UTC)
    #[param(schema_with = crate::openapi::time_bound)]
    pub from: Option<String>,
    /// Events that occurred before this time; not before `from`
    #[param(schema_with = crate::openapi::time_bound)]
    pub to: Option<String>,
    pub actor_id: Option<String>,
    pub action: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub scope_id: Option<String>,
    /// Conditions, all of which must hold: `field:value`, `-field:value`, `"quoted"`, bare
    /// words, `created:>=2026-11-01`; fields: action, actor, resource_type, resource, scope
    pub q: Option<String>,
    /// Events a page (default 100)
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page (opaque; issued for one `order`)
    pub cursor: Option<String>,
    /// `desc` (newest first, the default) or `asc`
    #[param(schema_with = crate::openapi::order)]
    pub order: Option<String>,
}

fn time_param(name: &str, v: &Option<String>) -> ApiResult<Option<i64>> {
    v.as_deref()
        .map(|s| {
            time::parse_bound(s).map(time::micros).ok_or_else(|| {
                ApiError::invalid_field(name, "must be an RFC 3339 timestamp or YYYY-MM-DD")
            })
        })
        .transpose()
}

/// Builds the filter shared by search and exports.
pub fn filter_from(p: &SearchParams) -> ApiResult<Filter> {
    let mut f = Filter::default();
    if let Some(from) = time_param("from", &p.from)? {
        f.narrow_from(from);
    }
    if let Some(to) = time_param("to", &p.to)? {
        f.narrow_to(to);
    }
    if let (Some(a), Some(b)) = (f.from_us, f.to_us)
        && a > b
    {
        return Err(ApiError::invalid_field("from", "must not be after `to`"));
    }
    for (field, v) in [
        (Field::ActorId, &p.actor_id),
        (Field::Action, &p.action),
        (Field::ResourceType, &p.resource_type),
        (Field::ResourceId, &p.resource_id),
        (Field::ScopeId, &p.scope_id),
    ] {
        if let Some(v) = v {
            f.require(field, v.clone());
        }
    }
    if let Some(q) = &p.q {
        parse_q(q, &mut f).map_err(|e| ApiError::invalid_field("q", e.to_string()))?;
    }
    Ok(f)
}

pub(crate) fn encode_cursor(seq: u64, order: Order) -> String {
    let o = if order == Order::Asc { "a" } else { "d" };
    URL_SAFE_NO_PAD.encode(format!("v1:{o}:{seq}"))
}

pub(crate) fn decode_cursor(c: &str, order: Order) -> ApiResult<u64> {
    let bad = || ApiError::invalid_field("cursor", "is not a cursor this server issued");
    let raw = URL_SAFE_NO_PAD.decode(c).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let mut parts = text.splitn(3, ':');
    let (Some("v1"), Some(o), Some(seq)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    if o != if order == Order::Asc { "a" } else { "d" } {
        return Err(ApiError::invalid_field(
            "cursor",
            "was issued for the other `order`",
        ));
    }
    seq.parse().map_err(|_| bad())
}

#[utoipa::path(get, path = "/v1/events", params(SearchParams),
    responses((status = 200, description = "`{events, next_cursor}`; each event exactly as stored and hashed, plus `leaf_hash`")))]
pub async fn search(
    State(app): State<Arc<App>>,
    who: Principal,
    params: Result<Query<SearchParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let org = who.org_with(&[Role::Viewer, Role::Admin])?;
    let Query(p) = params?;
    let filter = filter_from(&p)?;
    let limit = match p.limit.as_deref() {
        None => 100,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                ApiError::invalid_field("limit", "must be a whole number from 1 to 1000")
            })?,
    };
    let order = match p.order.as_deref() {
        None | Some("desc") => Order::Desc,
        Some("asc") => Order::Asc,
        Some(_) => return Err(ApiError::invalid_field("order", "must be asc or desc")),
    };
    let after_seq = p
        .cursor
        .as_deref()
        .map(|c| decode_cursor(c, order))
        .transpose()?;
    let page = app
        .store
        .search(
            org,
            &filter,
            PageRequest {
                after_seq,
                limit,
                order,
            },
        )
        .await?;
    // Events go out byte for byte as stored, so the response is assembled, not re-serialized.
    let mut out =
        String::with_capacity(page.events.iter().map(|e| e.body.len() + 90).sum::<usize>() + 64);
    out.push_str("{\"events\":[");
    for (i, e) in page.events.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&with_leaf_hash(&e.body, &e.leaf));
    }
    out.push_str("],\"next_cursor\":");
    match page.next_after {
        Some(s) => out.push_str(&format!("\"{}\"", encode_cursor(s, order))),
        None => out.push_str("null"),
    }
    out.push('}');
    Ok(([(header::CONTENT_TYPE, "application/json")], out).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trip_and_tamper() {
        let c = encode_cursor(42, Order::Desc);
        assert_eq!(decode_cursor(&c, Order::Desc).unwrap(), 42);
        assert_eq!(decode_cursor(&c, Order::Asc).unwrap_err().status, 422);
        assert!(decode_cursor("garbage!", Order::Desc).is_err());
    }

    #[test]
    fn body_shapes() {
        assert_eq!(parse_events(br#"{"action":"a"}"#).unwrap().0.len(), 1);
        assert_eq!(
            parse_events(br#"{"events":[{"action":"a"},{"action":"b"}]}"#)
                .unwrap()
                .0
                .len(),
            2
        );
        assert_eq!(parse_events(br#"{"events":[]}"#).unwrap_err().status, 422);
        assert_eq!(
            parse_events(br#"{"events":[], "x":1}"#).unwrap_err().status,
            422
        );
        assert_eq!(parse_events(b"[1]").unwrap_err().status, 422);
        assert_eq!(parse_events(b"{nope").unwrap_err().status, 400);
        let many = format!(
            "{{\"events\":[{}]}}",
            vec!["{\"action\":\"a\"}"; 1001].join(",")
        );
        assert_eq!(parse_events(many.as_bytes()).unwrap_err().status, 413);
    }
}
