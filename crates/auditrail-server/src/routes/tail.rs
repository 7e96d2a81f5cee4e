//! `GET /v1/events/stream`: live tail over Server-Sent Events.
//!
//! Each event goes out as a `message` whose `id` is its seq and whose data is the event
//! exactly as search returns it. The stream opens with an `id`-only line (the position it
//! starts after), so a client that reconnects with `Last-Event-ID` misses nothing even
//! before its first event. A subscriber that falls [`tail::MAX_LAG`] events behind gets
//! `event: cutoff` (`id` and `resume_after`: where to resume) and the stream ends.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::broadcast;

use auditrail_core::event::with_leaf_hash;
use auditrail_core::query::Filter;
use auditrail_store::{Order, PageRequest, Role, StoredEvent};

use super::events::{SearchParams, filter_from, record_self_audit};
use crate::App;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::tail::{self, Batch, Subscription};

/// How often an idle stream sends a comment line, so proxies and clients see it alive.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// The search filters, without paging.
#[derive(Debug, Deserialize, Serialize, Default, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TailParams {
    /// The key's own org, when the caller wants that checked (another org: 403)
    pub org: Option<String>,
    pub actor_id: Option<String>,
    pub action: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub scope_id: Option<String>,
    /// The search syntax, e.g. `actor:u-42 -action:login`
    pub q: Option<String>,
}

impl TailParams {
    fn filter(&self) -> ApiResult<Filter> {
        filter_from(&SearchParams {
            actor_id: self.actor_id.clone(),
            action: self.action.clone(),
            resource_type: self.resource_type.clone(),
            resource_id: self.resource_id.clone(),
            scope_id: self.scope_id.clone(),
            q: self.q.clone(),
            ..SearchParams::default()
        })
    }
}

#[utoipa::path(get, path = "/v1/events/stream", params(TailParams,
        ("Last-Event-ID" = Option<u64>, Header, minimum = 0, description = "resume after this seq; without it the stream starts at the head")),
    responses(
        (status = 200, description = "`text/event-stream`: each event with `id` = seq and the stored event (plus `leaf_hash`) as data; `event: cutoff` with `resume_after` when the reader fell too far behind", content_type = "text/event-stream"),
        (status = 401, description = "no or unknown key"), (status = 403, description = "not a viewer or admin key"),
        (status = 409, description = "`Last-Event-ID` beyond the log's head"),
        (status = 422, description = "a bad filter or `Last-Event-ID`"),
        (status = 429, description = "the org has as many streams open as it may")))]
pub async fn stream(
    State(app): State<Arc<App>>,
    who: Principal,
    headers: HeaderMap,
    params: Result<Query<TailParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let org = who.org_with(&[Role::Viewer, Role::Admin])?.to_owned();
    let Query(p) = params?;
    if p.org.as_deref().is_some_and(|o| o != org) {
        return Err(ApiError::forbidden(
            "this key belongs to another org than `org` names",
        ));
    }
    let filter = p.filter()?;
    let resume = last_event_id(&headers)?;
    check_resume(&app, &org, resume, "Last-Event-ID").await?;
    let sub = subscribe(&app, &org)?;
    record_self_audit(
        &app,
        &org,
        &who,
        "tailAuditLog",
        json!({"type": "AUDIT_LOG", "id": org}),
        json!({"filters": p, "resume_after": resume}),
    )
    .await?;
    start(app, org, filter, resume, sub, Box::new(message)).await
}

/// What a stream sends as one event's data (its `id` is always the seq).
pub(crate) type Render = Box<dyn Fn(&StoredEvent) -> String + Send + Sync>;

/// The seq a reconnecting client last saw (`Last-Event-ID`), if it sent one.
pub(crate) fn last_event_id(headers: &HeaderMap) -> ApiResult<Option<u64>> {
    headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::invalid_field("Last-Event-ID", "must be the seq of an event")
                })
        })
        .transpose()
}

/// Refuses a resume point beyond the log's head (409: the log is not that long now;
/// `field` names where it came from).
pub(crate) async fn check_resume(
    app: &App,
    org: &str,
    resume: Option<u64>,
    field: &str,
) -> ApiResult<()> {
    if let Some(seq) = resume {
        let head = app.store.tree_head(org).await?.size;
        if seq > head {
            let reason = format!("{seq} is beyond the log's head ({head})");
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "beyond_head",
                format!("{field}: {reason}"),
            )
            .with_details(vec![json!({"field": field, "reason": reason})]));
        }
    }
    Ok(())
}

/// Takes one of the org's stream slots (429 when they are all taken).
pub(crate) fn subscribe(app: &Arc<App>, org: &str) -> ApiResult<Subscription> {
    app.tail.subscribe(app, org).map_err(|_| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_streams",
            format!(
                "this org has {} live streams open, as many as it may; close one",
                app.tail.limit()
            ),
        )
    })
}

/// The stream of `org`'s events matching `filter` after `resume` (or the head).
pub(crate) async fn start(
    app: Arc<App>,
    org: String,
    filter: Filter,
    resume: Option<u64>,
    sub: Subscription,
    render: Render,
) -> ApiResult<Response> {
    // Subscribed before the head is read: whatever is appended from here on arrives.
    let rx = sub.feed.receiver();
    let head = app.store.tree_head(&org).await?.size;
    // Checked by the caller; the head has only grown since.
    let start = resume.map_or(head, |seq| seq.min(head));
    let closing = app.tail.closing();
    let mut t = Tail {
        app,
        org,
        closing,
        filter,
        sub,
        rx,
        render,
        scanned: start,
        catch_up: resume.map(|_| CatchUp { head, after: start }),
        out: String::new(),
        sent_at: tokio::time::Instant::now(),
        done: false,
    };
    // The position it starts after, so that a reconnect before any event misses nothing.
    let _ = write!(t.out, "id: {start}\n\n");
    let body = Body::from_stream(futures_util::stream::unfold(t, Tail::next));
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Reverse proxies (nginx) pass each chunk on at once.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(resp)
}

/// Appends one Server-Sent Event: its type (unless `message`), `id` and data, a `data:`
/// line for each line of it.
fn write_event(out: &mut String, kind: Option<&str>, id: u64, data: &str) {
    if let Some(k) = kind {
        let _ = writeln!(out, "event: {k}");
    }
    let _ = writeln!(out, "id: {id}");
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line.trim_end_matches('\r'));
        out.push('\n');
    }
    out.push('\n');
}

/// Reading from the store until `head` (known durable when the catch-up began).
struct CatchUp {
    head: u64,
    after: u64,
}

struct Tail {
    app: Arc<App>,
    org: String,
    closing: tokio::sync::watch::Receiver<bool>,
    filter: Filter,
    sub: Subscription,
    rx: broadcast::Receiver<Arc<Batch>>,
    render: Render,
    /// Every event up to this seq has been sent or did not match.
    scanned: u64,
    catch_up: Option<CatchUp>,
    /// What is ready to go out: all the events of one batch or page in one chunk.
    out: String,
    /// When the last chunk went out: a comment follows after [`HEARTBEAT`] of silence.
    sent_at: tokio::time::Instant,
    done: bool,
}

impl Tail {
    async fn next(mut self) -> Option<(Result<Bytes, Infallible>, Self)> {
        loop {
            if !self.out.is_empty() {
                let chunk = Bytes::from(std::mem::take(&mut self.out));
                self.sent_at = tokio::time::Instant::now();
                return Some((Ok(chunk), self));
            }
            if self.done {
                return None;
            }
            if *self.closing.borrow() {
                self.cut_off("shutting_down");
                continue;
            }
            if self.catch_up.is_some() {
                self.read_store().await;
                continue;
            }
            let got = tokio::select! {
                got = self.rx.recv() => got,
                _ = self.closing.changed() => continue,
                _ = tokio::time::sleep_until(self.sent_at + HEARTBEAT) => {
                    // A comment line, so proxies and clients see the stream alive.
                    self.out.push_str(":\n\n");
                    continue;
                }
            };
            match got {
                Ok(batch) => self.take(&batch).await,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    if self.sub.feed.read().saturating_sub(self.scanned) > tail::MAX_LAG {
                        self.cut_off("slow_consumer");
                    } else {
                        self.start_catch_up().await;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => self.cut_off("unavailable"),
            }
        }
    }

    /// Takes a batch the feed read; a gap before it is read from the store.
    async fn take(&mut self, batch: &Batch) {
        if batch.last <= self.scanned {
            return;
        }
        if batch.after > self.scanned {
            self.start_catch_up().await;
            return;
        }
        for e in batch.events.iter().filter(|e| e.event.seq > self.scanned) {
            if e.accepts(&self.filter) {
                let data = (self.render)(&e.event);
                write_event(&mut self.out, None, e.event.seq, &data);
            }
        }
        self.scanned = batch.last;
    }

    /// Goes back to the store from `scanned`, with a fresh place on the channel.
    async fn start_catch_up(&mut self) {
        self.rx = self.sub.feed.receiver();
        match self.app.store.tree_head(&self.org).await {
            Ok(h) => {
                self.catch_up = Some(CatchUp {
                    head: h.size,
                    after: self.scanned,
                })
            }
            Err(e) => {
                tracing::warn!(org = %self.org, error = %e, "live tail: cannot read the head");
                self.cut_off("unavailable");
            }
        }
    }

    async fn read_store(&mut self) {
        let Some(c) = self.catch_up.as_mut() else {
            return;
        };
        let page = self
            .app
            .store
            .search(
                &self.org,
                &self.filter,
                PageRequest {
                    after_seq: Some(c.after),
                    limit: tail::PAGE,
                    order: Order::Asc,
                },
            )
            .await;
        let page = match page {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(org = %self.org, error = %e, "live tail: cannot read events");
                self.catch_up = None;
                self.cut_off("unavailable");
                return;
            }
        };
        for e in &page.events {
            let data = (self.render)(e);
            write_event(&mut self.out, None, e.seq, &data);
            self.scanned = self.scanned.max(e.seq);
        }
        match page.next_after {
            Some(n) => c.after = n,
            None => {
                self.scanned = self.scanned.max(c.head);
                self.catch_up = None;
            }
        }
    }

    /// Ends the stream with where to resume.
    fn cut_off(&mut self, reason: &str) {
        let data = json!({"reason": reason, "resume_after": self.scanned}).to_string();
        write_event(&mut self.out, Some("cutoff"), self.scanned, &data);
        self.done = true;
    }
}

/// The event exactly as search returns it.
fn message(e: &StoredEvent) -> String {
    with_leaf_hash(&e.body, &e.leaf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tail::LiveEvent;

    #[test]
    fn tail_params_build_the_search_filter() {
        let e = LiveEvent::new(StoredEvent {
            seq: 1,
            body: r#"{"action":"addProject","actor":{"id":"u-1"},"occurred_at":"2026-11-01T10:00:00.000000Z"}"#.into(),
            leaf: [0; 32],
        });
        let p = TailParams {
            actor_id: Some("u-1".into()),
            q: Some("created:2026-11-01 -action:login".into()),
            ..TailParams::default()
        };
        assert!(e.accepts(&p.filter().unwrap()));
        let p = TailParams {
            action: Some("login".into()),
            ..TailParams::default()
        };
        assert!(!e.accepts(&p.filter().unwrap()));
        let bad = TailParams {
            q: Some("nope:1".into()),
            ..TailParams::default()
        };
        assert_eq!(bad.filter().unwrap_err().field(), Some("q"));
    }
}
