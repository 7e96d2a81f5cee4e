//! The HTTP side: every request is forwarded to the upstream unchanged; requests to the
//! GraphQL endpoint are read first, and those with audited fields are spooled before
//! they are forwarded and again, with outcomes, before the answer is returned.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::header::{self, HeaderMap, HeaderName};
use http::{StatusCode, request::Parts};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use auditrail_core::event::MAX_TEXT_LEN;

use crate::actor::ActorSource;
use crate::capture::{Capture, Rules};
use crate::metrics::Metrics;
use crate::outcome::{self, Outcome};
use crate::request::{self, Requests};
use crate::sink::{KeyCache, Sink, append_loop};
use crate::spool::{self, Ready, Spool};

/// What to do when an audited request cannot be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Refuse it (503 before it reaches the upstream; 401 for an untrusted actor).
    FailClosed,
    /// Let it through and count it in `auditrail_gateway_unrecorded_events_total`.
    FailOpen,
}

/// Which org the events of a request belong to.
#[derive(Debug, Clone)]
pub enum OrgSource {
    Fixed(String),
    Header(HeaderName),
}

pub struct Gateway {
    /// The GraphQL endpoint: requests to its path are read; every path is forwarded to
    /// its origin.
    pub upstream: reqwest::Url,
    pub rules: Rules,
    pub org: OrgSource,
    pub actor: ActorSource,
    pub mode: Mode,
    /// A header holding the client's address (`X-Forwarded-For`: its first entry),
    /// when the gateway is behind a proxy; otherwise the peer address is recorded.
    pub client_ip_header: Option<HeaderName>,
    pub max_body_bytes: usize,
    /// An audited answer larger than this is passed on without being read for errors
    /// (its outcome then follows the HTTP status).
    pub max_response_bytes: usize,
    pub upstream_timeout: Duration,
    /// How long shutdown waits for the spool to reach the log.
    pub drain_timeout: Duration,
    pub spool_dir: PathBuf,
    pub spool: spool::Options,
    pub sink: Arc<dyn Sink>,
}

struct Shared {
    gw: Gateway,
    origin: String,
    client: reqwest::Client,
    spool: Spool,
    ready: mpsc::UnboundedSender<Ready>,
    metrics: Arc<Metrics>,
    keys: KeyCache,
}

/// Runs the gateway on `listener` until `shutdown` completes, then drains the spool into
/// the log (for at most `drain_timeout`; what is left is replayed at the next start).
pub async fn serve(
    listener: tokio::net::TcpListener,
    gw: Gateway,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (spool, replay) = Spool::open(&gw.spool_dir, gw.spool.clone())?;
    if !replay.is_empty() {
        tracing::info!(requests = replay.len(), "replaying the spool into the log");
    }
    let metrics = Arc::new(Metrics::new());
    let (tx, rx) = mpsc::unbounded_channel();
    for r in replay {
        let _ = tx.send(r);
    }
    let appender = tokio::spawn(append_loop(
        rx,
        gw.sink.clone(),
        spool.clone(),
        metrics.clone(),
        gw.spool_dir.join("rejected.ndjson"),
    ));
    let origin = gw.upstream.origin().ascii_serialization();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .map_err(std::io::Error::other)?;
    let drain = gw.drain_timeout;
    let shared = Arc::new(Shared {
        gw,
        origin,
        client,
        spool: spool.clone(),
        ready: tx,
        metrics,
        keys: KeyCache::default(),
    });
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics_page))
        .fallback(proxy)
        .with_state(shared);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    // The router (and its sender) is gone: the appender ends once the queue is empty.
    if tokio::time::timeout(drain, appender).await.is_err() {
        tracing::warn!(
            events = spool.depth(),
            "shutdown: events still spooled; they will be appended at the next start"
        );
    }
    let _ = spool.flush().await;
    Ok(())
}

async fn metrics_page(State(s): State<Arc<Shared>>) -> Response {
    s.metrics.spool_depth.set(s.spool.depth() as i64);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = json!({"error": {"code": code, "message": message.into()}});
    (status, axum::Json(body)).into_response()
}

/// An audited request on its way: its spool key, org, events and where each event's
/// field answers.
struct Plan {
    key: String,
    org: String,
    events: Vec<Value>,
    /// Per GraphQL request of the HTTP request, its audited fields' response keys.
    keys: Vec<Vec<String>>,
    batch: bool,
}

async fn proxy(
    State(s): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, s.gw.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            s.metrics.count("refused");
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("request body exceeds {} bytes", s.gw.max_body_bytes),
            );
        }
    };
    let plan = if parts.uri.path() == s.gw.upstream.path() {
        match s.plan(&parts, &body, peer).await {
            Ok(p) => p,
            Err(refusal) => {
                s.metrics.count("refused");
                return *refusal;
            }
        }
    } else {
        None
    };
    s.forward(parts, body, plan).await
}

impl Shared {
    /// Reads a GraphQL request and spools its audited fields; `Err` is the answer when
    /// it must be refused.
    async fn plan(
        &self,
        parts: &Parts,
        body: &Bytes,
        peer: SocketAddr,
    ) -> Result<Option<Plan>, Box<Response>> {
        let ct = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let reqs = match request::parse(&parts.method, ct, parts.uri.query(), body) {
            Ok(r) => r,
            Err(m) => {
                tracing::debug!("not a readable GraphQL request: {m}");
                self.metrics.count("malformed");
                return Ok(None);
            }
        };
        let org = match &self.gw.org {
            OrgSource::Fixed(o) => Some(o.clone()),
            OrgSource::Header(h) => parts
                .headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned),
        };
        let hmac_key = match (&org, self.gw.rules.uses_hmac()) {
            (Some(o), true) => self.keys.get(self.gw.sink.as_ref(), o).await.unwrap_or_else(|e| {
                tracing::warn!(org = %o, "no HMAC key ({e}); secrets are recorded as [REDACTED]");
                None
            }),
            _ => None,
        };
        let mut captures: Vec<Capture> = Vec::new();
        let mut keys = Vec::new();
        let mut malformed = false;
        for r in reqs.as_slice() {
            match self.gw.rules.capture(r, hmac_key.as_ref()) {
                Ok(c) => {
                    keys.push(c.iter().map(|c| c.key.clone()).collect());
                    captures.extend(c);
                }
                Err(m) => {
                    tracing::debug!("not a readable GraphQL document: {m}");
                    malformed = true;
                    keys.push(Vec::new());
                }
            }
        }
        if captures.is_empty() {
            self.metrics
                .count(if malformed { "malformed" } else { "passed" });
            return Ok(None);
        }
        let n = captures.len() as u64;
        let unrecordable = |status: StatusCode, code: &str, message: String| {
            if self.gw.mode == Mode::FailOpen {
                tracing::warn!("{message}; letting the request through unrecorded (fail-open)");
                self.metrics.unrecorded_events.inc_by(n);
                Ok(None)
            } else {
                Err(Box::new(error(status, code, message)))
            }
        };
        let Some(org) = org else {
            let h = match &self.gw.org {
                OrgSource::Header(h) => h.as_str(),
                OrgSource::Fixed(_) => "",
            };
            return unrecordable(
                StatusCode::BAD_REQUEST,
                "missing_org",
                format!("the {h} header naming the org is required for audited operations"),
            );
        };
        let actor = match self.gw.actor.actor(&parts.headers) {
            Ok(a) => a,
            Err(reason) => {
                return unrecordable(StatusCode::UNAUTHORIZED, "untrusted_actor", reason);
            }
        };
        let operation = match &reqs {
            Requests::Single(r) => r.operation_name.clone(),
            Requests::Batch(_) => None,
        };
        let context = self.context(&parts.headers, peer, operation);
        let now = chrono::Utc::now();
        let ids =
            auditrail_service::ids::ulids(captures.len(), now.timestamp_millis().max(0) as u64);
        let occurred = auditrail_core::time::format_millis(now.timestamp_millis());
        let events: Vec<Value> = captures
            .into_iter()
            .zip(ids)
            .map(|(c, id)| event(c, id, &occurred, actor.as_ref(), &context))
            .collect();
        let key = events
            .first()
            .and_then(|e| e["id"].as_str())
            .unwrap_or_default()
            .to_owned();
        if let Err(e) = self.spool.intent(&key, &org, &events) {
            tracing::error!("{e}");
            return unrecordable(
                StatusCode::SERVICE_UNAVAILABLE,
                "spool_unavailable",
                format!("the audit record cannot be written ({e}); the request was not forwarded"),
            );
        }
        self.metrics.count("audited");
        self.metrics.audited_fields.inc_by(n);
        Ok(Some(Plan {
            key,
            org,
            events,
            keys,
            batch: reqs.is_batch(),
        }))
    }

    fn context(
        &self,
        headers: &HeaderMap,
        peer: SocketAddr,
        operation: Option<String>,
    ) -> Map<String, Value> {
        let ip = self
            .gw
            .client_ip_header
            .as_ref()
            .and_then(|h| headers.get(h))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse::<IpAddr>().ok())
            .unwrap_or(peer.ip());
        let mut m = Map::new();
        m.insert("ip".into(), Value::String(ip.to_string()));
        if let Some(ua) = headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
        {
            m.insert("user_agent".into(), Value::String(clip(ua)));
        }
        if let Some(op) = operation {
            m.insert("graphql_operation".into(), Value::String(clip(&op)));
        }
        m
    }

    async fn forward(&self, parts: Parts, body: Bytes, plan: Option<Plan>) -> Response {
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut rb = self
            .client
            .request(parts.method.clone(), format!("{}{path}", self.origin))
            .timeout(self.gw.upstream_timeout);
        for (name, value) in &parts.headers {
            if !hop_by_hop(name) && name != header::HOST && name != header::CONTENT_LENGTH {
                rb = rb.header(name, value);
            }
        }
        let started = Instant::now();
        let result = rb.body(body).send().await;
        self.metrics
            .upstream_seconds
            .observe(started.elapsed().as_secs_f64());
        let resp = match result {
            Ok(r) => r,
            Err(e) => {
                let (status, code, outcome) = if e.is_timeout() {
                    (
                        StatusCode::GATEWAY_TIMEOUT,
                        "upstream_timeout",
                        Outcome::Unknown(format!(
                            "the upstream did not answer within {:?}",
                            self.gw.upstream_timeout
                        )),
                    )
                } else {
                    (
                        StatusCode::BAD_GATEWAY,
                        "upstream_unreachable",
                        Outcome::Failure(format!("the upstream could not be reached: {e}")),
                    )
                };
                let message = outcome.reason().unwrap_or_default().to_owned();
                if let Some(plan) = plan {
                    let n = plan.events.len();
                    if let Err(r) = self.finish(plan, vec![outcome; n]).await {
                        return *r;
                    }
                }
                return error(status, code, message);
            }
        };
        let status = resp.status();
        let mut headers = resp.headers().clone();
        drop_hop_by_hop(&mut headers);
        let Some(plan) = plan else {
            return build(status, headers, Body::from_stream(resp.bytes_stream()));
        };
        // Read the answer (up to the limit) to learn each field's outcome.
        let mut stream = resp.bytes_stream();
        let mut buf = BytesMut::new();
        let mut whole = true;
        let mut broken = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(c) => {
                    buf.extend_from_slice(&c);
                    if buf.len() > self.gw.max_response_bytes {
                        whole = false;
                        break;
                    }
                }
                Err(e) => {
                    broken = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = broken {
            let n = plan.events.len();
            let o = Outcome::Unknown(format!("the upstream's answer broke off: {e}"));
            if let Err(r) = self.finish(plan, vec![o; n]).await {
                return *r;
            }
            return error(
                StatusCode::BAD_GATEWAY,
                "upstream_broke_off",
                format!("the upstream's answer broke off: {e}"),
            );
        }
        let read = outcome::read(
            status.as_u16(),
            whole.then_some(&buf[..]),
            plan.batch,
            &plan.keys,
        );
        let outcomes: Vec<Outcome> = read.into_iter().flatten().collect();
        if let Err(r) = self.finish(plan, outcomes).await {
            return *r;
        }
        let head = buf.freeze();
        if whole {
            return build(status, headers, Body::from(head));
        }
        let rest =
            futures_util::stream::once(async move { Ok::<_, reqwest::Error>(head) }).chain(stream);
        build(status, headers, Body::from_stream(rest))
    }

    /// Spools the outcomes (flushed) and hands the events to the appender; `Err` is the
    /// answer when the spool failed in fail-closed mode.
    async fn finish(&self, plan: Plan, outcomes: Vec<Outcome>) -> Result<(), Box<Response>> {
        let written = self.spool.complete(&plan.key, &outcomes).await;
        let mut events = plan.events;
        spool::complete(&mut events, &outcomes);
        // The events go to the log either way: the intent is on disk, the rest in memory.
        let _ = self.ready.send(Ready {
            key: plan.key,
            org: plan.org,
            events,
        });
        match written {
            Ok(()) => Ok(()),
            Err(e) if self.gw.mode == Mode::FailClosed => {
                tracing::error!("{e}");
                Err(Box::new(error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "spool_unavailable",
                    format!("the upstream answered, but its outcome could not be recorded ({e})"),
                )))
            }
            Err(e) => {
                tracing::error!("{e}; answering anyway (fail-open)");
                Ok(())
            }
        }
    }
}

fn build(status: StatusCode, headers: HeaderMap, body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

/// Drops the hop-by-hop headers, which belong to one connection.
fn drop_hop_by_hop(headers: &mut HeaderMap) {
    let drop: Vec<HeaderName> = headers.keys().filter(|k| hop_by_hop(k)).cloned().collect();
    for k in drop {
        headers.remove(k);
    }
}

fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

fn clip(s: &str) -> String {
    s.chars().take(MAX_TEXT_LEN).collect()
}

/// The event of one audited field, before its outcome is known.
fn event(
    c: Capture,
    id: String,
    occurred: &str,
    actor: Option<&Value>,
    context: &Map<String, Value>,
) -> Value {
    let mut e = Map::new();
    e.insert("id".into(), Value::String(id));
    e.insert("occurred_at".into(), Value::String(occurred.to_owned()));
    e.insert("action".into(), Value::String(c.action));
    let mut resource = Map::new();
    if let Some(t) = c.resource_type {
        resource.insert("type".into(), Value::String(t));
    }
    if let Some(i) = c
        .resource_id
        .filter(|i| i.chars().count() <= auditrail_core::event::MAX_ID_LEN)
    {
        resource.insert("id".into(), Value::String(i));
    }
    if !resource.is_empty() {
        e.insert("resource".into(), Value::Object(resource));
    }
    if let Some(a) = actor {
        e.insert("actor".into(), a.clone());
    }
    if let Some(sid) = c
        .scope_id
        .filter(|i| i.chars().count() <= auditrail_core::event::MAX_ID_LEN)
    {
        let mut scope = Map::new();
        if let Some(t) = c.scope_type {
            scope.insert("type".into(), Value::String(t));
        }
        scope.insert("id".into(), Value::String(sid));
        e.insert("scope".into(), Value::Object(scope));
    }
    e.insert("details".into(), Value::Object(c.details));
    e.insert("context".into(), Value::Object(context.clone()));
    Value::Object(e)
}
