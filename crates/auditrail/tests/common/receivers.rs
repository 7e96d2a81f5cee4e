//! Receivers for push streams, each enforcing its service's documented request format
//! and limits (not our client's idea of it):
//!
//! - `https`: NDJSON, the `Auditrail-Signature` HMAC checked with the stream's secret and a
//!   5-minute window, the seq headers matching the body;
//! - Splunk HTTP Event Collector (`/services/collector/event`): `Authorization: Splunk
//!   <token>` (401 code 2 when missing, 403 code 4 when wrong), a body of concatenated
//!   JSON event objects with only HEC's keys (`time` in epoch seconds, `host`, `source`,
//!   `sourcetype`, `index`, `event`, `fields`; 400 code 6 otherwise, code 5 when empty),
//!   at most `max_content_length` (1 MB by default in older releases: 413);
//! - Datadog logs intake v2 (`/api/v2/logs`): `DD-API-KEY` (403), `application/json`,
//!   an array of at most 1,000 entries, at most 5 MB a payload and 1 MB an entry (413),
//!   each entry's reserved attributes strings; answers 202.
//!
//! Each runs on a runtime of its own, so [`Receiver::kill`] drops it with every open
//! connection, as a crashed process would, and [`Receiver::restart`] brings it back on the
//! same port. A receiver can be told to fail for a while, to answer 429 once, or to refuse.
#![allow(
    dead_code,
    reason = "shared by tests and the streams bench, which use parts"
)]

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Https,
    Splunk,
    Datadog,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Accept,
    /// 503 without `Retry-After` until then.
    FailUntil(Instant),
    /// 429 with `Retry-After: n` once, then accept.
    TooManyOnce(u64),
    /// 403 (a revoked token or key).
    Refuse,
    /// 413 to a request of more events than this (a proxy with a smaller body limit).
    TakesAtMost(usize),
}

#[derive(Debug, Default)]
pub struct Log {
    /// Each accepted request: (idempotency key, seqs in body order).
    pub accepted: Vec<(String, Vec<u64>)>,
    /// When each accepted request arrived.
    pub accepted_at: Vec<Instant>,
    /// When each request arrived, whatever its answer.
    pub arrivals: Vec<Instant>,
    /// Requests that broke the service's documented format (must stay empty).
    pub violations: Vec<String>,
    /// The `org_id` of every event accepted.
    pub orgs: std::collections::BTreeSet<String>,
    /// Every OCSF record accepted by an `https` receiver, as received.
    pub ocsf: Vec<String>,
    /// Requests answered 413 in `TakesAtMost` mode.
    pub too_large: usize,
    pub mode: Option<Mode>,
}

pub struct Receiver {
    pub kind: Kind,
    pub secret: String,
    pub port: u16,
    pub log: Arc<Mutex<Log>>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Receiver {
    pub fn start(kind: Kind, secret: &str) -> Self {
        let mut r = Self {
            kind,
            secret: secret.to_owned(),
            port: 0,
            log: Arc::new(Mutex::new(Log::default())),
            rt: None,
        };
        r.restart();
        r
    }

    /// Where the destination's `url` points.
    pub fn url(&self) -> String {
        match self.kind {
            Kind::Https => format!("http://127.0.0.1:{}/hook", self.port),
            _ => format!("http://127.0.0.1:{}", self.port),
        }
    }

    pub fn set_mode(&self, m: Mode) {
        self.log.lock().unwrap().mode = Some(m);
    }

    /// Stops at once: the listener and every open connection are dropped.
    pub fn kill(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }

    /// Listens again, on the same port as before (any port the first time).
    pub fn restart(&mut self) {
        self.kill();
        let l = std::net::TcpListener::bind(("127.0.0.1", self.port)).unwrap();
        l.set_nonblocking(true).unwrap();
        self.port = l.local_addr().unwrap().port();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (kind, secret, log) = (self.kind, self.secret.clone(), self.log.clone());
        let app = axum::Router::new()
            .fallback(
                move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
                    let (secret, log) = (secret.clone(), log.clone());
                    async move { handle(kind, &secret, &log, uri.path(), &headers, &body) }
                },
            )
            // The services' own caps are checked in `handle` (HEC's 1 MB, Datadog's 5 MB);
            // an `https` receiver takes auditrail's largest batch (10 MB).
            .layer(axum::extract::DefaultBodyLimit::max(16 << 20));
        rt.spawn(async move {
            let l = tokio::net::TcpListener::from_std(l).unwrap();
            let _ = axum::serve(l, app).await;
        });
        self.rt = Some(rt);
    }

    /// Every seq accepted, in arrival order (a batch sent again appears again).
    pub fn seqs(&self) -> Vec<u64> {
        let log = self.log.lock().unwrap();
        log.accepted.iter().flat_map(|(_, s)| s.clone()).collect()
    }

    pub fn orgs(&self) -> Vec<String> {
        self.log.lock().unwrap().orgs.iter().cloned().collect()
    }

    /// Each accepted request's event count, in arrival order.
    pub fn request_sizes(&self) -> Vec<usize> {
        let log = self.log.lock().unwrap();
        log.accepted.iter().map(|(_, s)| s.len()).collect()
    }

    pub fn too_large(&self) -> usize {
        self.log.lock().unwrap().too_large
    }

    pub fn ocsf(&self) -> Vec<String> {
        self.log.lock().unwrap().ocsf.clone()
    }

    pub fn violations(&self) -> Vec<String> {
        self.log.lock().unwrap().violations.clone()
    }

    pub fn arrivals(&self) -> Vec<Instant> {
        self.log.lock().unwrap().arrivals.clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.kill();
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn answer(status: u16, body: Value) -> Response {
    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

fn handle(
    kind: Kind,
    secret: &str,
    log: &Mutex<Log>,
    path: &str,
    h: &HeaderMap,
    body: &[u8],
) -> Response {
    let mut g = log.lock().unwrap();
    g.arrivals.push(Instant::now());
    match g.mode {
        Some(Mode::FailUntil(t)) if Instant::now() < t => {
            return answer(503, json!({"error": "unavailable"}));
        }
        Some(Mode::TooManyOnce(secs)) => {
            g.mode = Some(Mode::Accept);
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", secs.to_string())],
                "slow down",
            )
                .into_response();
        }
        Some(Mode::Refuse) => {
            return match kind {
                Kind::Splunk => answer(403, json!({"text": "Invalid token", "code": 4})),
                Kind::Datadog => answer(403, json!({"errors": ["Forbidden"]})),
                Kind::Https => answer(403, json!({"error": "forbidden"})),
            };
        }
        _ => {}
    }
    let checked = match kind {
        Kind::Https => https(secret, path, h, body),
        Kind::Splunk => splunk(secret, path, h, body),
        Kind::Datadog => datadog(secret, path, h, body),
    };
    match checked {
        Ok(events) if matches!(g.mode, Some(Mode::TakesAtMost(max)) if events.len() > max) => {
            g.too_large += 1;
            answer(413, json!({"error": "request entity too large"}))
        }
        Ok(events) => {
            let key = header(h, "idempotency-key").unwrap_or_default().to_owned();
            let seqs = events.iter().map(|(s, _)| *s).collect();
            g.orgs.extend(events.into_iter().map(|(_, o)| o));
            g.accepted.push((key, seqs));
            if kind == Kind::Https {
                let text = String::from_utf8_lossy(body);
                let records = text.lines().filter(|l| l.contains("\"class_uid\""));
                g.ocsf.extend(records.map(str::to_owned));
            }
            g.accepted_at.push(Instant::now());
            match kind {
                Kind::Splunk => answer(200, json!({"text": "Success", "code": 0})),
                Kind::Datadog => answer(202, json!({})),
                Kind::Https => answer(200, json!({"ok": true})),
            }
        }
        Err((status, why, reply)) => {
            g.violations.push(format!("{status}: {why}"));
            answer(status, reply)
        }
    }
}

/// The (seq, org_id) of each event of an accepted request, or why it is refused.
type Checked = Result<Vec<(u64, String)>, (u16, String, Value)>;

fn bad(status: u16, why: &str) -> (u16, String, Value) {
    (status, why.to_owned(), json!({"error": why}))
}

/// What a receiver reads of an event: auditrail exports each with these at least.
#[derive(serde::Deserialize)]
struct Ev<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
    seq: u64,
    org_id: String,
    #[serde(borrow)]
    leaf_hash: std::borrow::Cow<'a, str>,
}

/// What a receiver reads of an OCSF record: its `metadata`.
#[derive(serde::Deserialize)]
struct OcsfRecord {
    class_uid: u32,
    metadata: OcsfMetadata,
}

#[derive(serde::Deserialize)]
struct OcsfMetadata {
    uid: String,
    sequence: u64,
    tenant_uid: String,
}

/// An event as auditrail exports it (`id`, `seq`, `org_id` and `leaf_hash` at least), or
/// its OCSF API Activity record (`metadata.uid`, `.sequence`, `.tenant_uid`).
fn event_seq(text: &str) -> Result<(u64, String), String> {
    if text.contains("\"class_uid\"") {
        let r: OcsfRecord = serde_json::from_str(text)
            .map_err(|e| format!("an OCSF record without its metadata: {e}"))?;
        if r.class_uid != 6003 || r.metadata.uid.is_empty() {
            return Err(format!("not an API Activity record with a uid: {text}"));
        }
        return Ok((r.metadata.sequence, r.metadata.tenant_uid));
    }
    let e: Ev<'_> = serde_json::from_str(text)
        .map_err(|e| format!("an event without id, seq, org_id or leaf_hash: {e}"))?;
    if e.id.is_empty() || e.leaf_hash.len() != 64 {
        return Err(format!(
            "an event with an empty id or a bad leaf_hash: {text}"
        ));
    }
    Ok((e.seq, e.org_id))
}

/// One HEC event object: only the keys HEC knows; `event` any JSON value (here, ours).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HecEvent<'a> {
    time: Option<Value>,
    host: Option<String>,
    source: Option<String>,
    sourcetype: Option<String>,
    index: Option<String>,
    #[serde(borrow)]
    event: Option<&'a serde_json::value::RawValue>,
    fields: Option<Value>,
}

/// One Datadog log entry's reserved attributes (strings when present).
#[derive(serde::Deserialize)]
struct DdEntry {
    ddsource: Option<String>,
    ddtags: Option<String>,
    hostname: Option<String>,
    service: Option<String>,
    message: Option<String>,
}

fn https(secret: &str, path: &str, h: &HeaderMap, body: &[u8]) -> Checked {
    if path != "/hook" {
        return Err(bad(404, "no such path"));
    }
    if header(h, "content-type") != Some("application/x-ndjson") {
        return Err(bad(415, "content-type must be application/x-ndjson"));
    }
    let sig = header(h, "auditrail-signature").ok_or_else(|| bad(401, "no signature"))?;
    let (t, v1) = sig
        .split_once(',')
        .and_then(|(t, v)| Some((t.strip_prefix("t=")?, v.strip_prefix("v1=")?)))
        .ok_or_else(|| bad(401, "signature is not t=…,v1=…"))?;
    let t: i64 = t.parse().map_err(|_| bad(401, "bad t"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if (now - t).abs() > 300 {
        return Err(bad(401, "stale signature"));
    }
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let want = hex::decode(v1).map_err(|_| bad(401, "v1 is not hex"))?;
    mac.verify_slice(&want)
        .map_err(|_| bad(401, "signature does not match"))?;
    let key = header(h, "idempotency-key").unwrap_or_default();
    if key.len() != 32 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(400, "idempotency-key must be 32 hex digits"));
    }
    let text = std::str::from_utf8(body).map_err(|_| bad(400, "not UTF-8"))?;
    let mut seqs = Vec::new();
    for line in text.lines() {
        seqs.push(event_seq(line).map_err(|e| bad(400, &e))?);
    }
    let num = |n: &str| header(h, n).and_then(|v| v.parse::<u64>().ok());
    if seqs.is_empty()
        || num("auditrail-first-seq") != seqs.first().map(|e: &(u64, String)| e.0)
        || num("auditrail-last-seq") != seqs.last().map(|e| e.0)
        || num("auditrail-event-count") != Some(seqs.len() as u64)
    {
        return Err(bad(400, "seq headers do not match the body"));
    }
    Ok(seqs)
}

fn splunk(token: &str, path: &str, h: &HeaderMap, body: &[u8]) -> Checked {
    let hec = |status: u16, text: &str, code: u32| {
        (status, text.to_owned(), json!({"text": text, "code": code}))
    };
    if path != "/services/collector/event" && path != "/services/collector" {
        return Err(hec(404, "Not Found", 404));
    }
    let auth = header(h, "authorization").ok_or_else(|| hec(401, "Token is required", 2))?;
    let given = auth
        .strip_prefix("Splunk ")
        .ok_or_else(|| hec(401, "Invalid authorization", 3))?;
    if given != token {
        return Err(hec(403, "Invalid token", 4));
    }
    if body.len() > 1_000_000 {
        return Err(hec(413, "Content too large", 27));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(hec(400, "No data", 5));
    }
    let mut seqs = Vec::new();
    let mut objects = serde_json::Deserializer::from_slice(body).into_iter::<HecEvent<'_>>();
    let invalid = || hec(400, "Invalid data format", 6);
    for (i, v) in objects.by_ref().enumerate() {
        // An unknown key, or a key of the wrong type: HEC's code 6.
        let o = v.map_err(|_| invalid())?;
        let event = match o.event {
            Some(e) if !matches!(e.get(), "null" | "\"\"") => e,
            _ => {
                return Err(hec(
                    400,
                    &format!("Event field is required (event {i})"),
                    12,
                ));
            }
        };
        if let Some(t) = &o.time
            && !t.is_number()
            && t.as_str().is_none_or(|s| s.parse::<f64>().is_err())
        {
            return Err(hec(400, "Invalid time", 6));
        }
        let _ = (&o.host, &o.source, &o.sourcetype, &o.index, &o.fields);
        seqs.push(
            event_seq(event.get())
                .map_err(|e| (400, e, json!({"text": "Invalid data format", "code": 6})))?,
        );
    }
    Ok(seqs)
}

fn datadog(api_key: &str, path: &str, h: &HeaderMap, body: &[u8]) -> Checked {
    if path != "/api/v2/logs" {
        return Err(bad(404, "no such path"));
    }
    if header(h, "dd-api-key") != Some(api_key) {
        return Err((403, "bad api key".into(), json!({"errors": ["Forbidden"]})));
    }
    if !header(h, "content-type").is_some_and(|c| c.starts_with("application/json")) {
        return Err(bad(400, "content-type must be application/json"));
    }
    if body.len() > 5_000_000 {
        return Err(bad(413, "payload over 5 MB"));
    }
    let entries: Vec<DdEntry> = serde_json::from_slice(body).map_err(|e| {
        bad(
            400,
            &format!("not an array of log entries with string attributes: {e}"),
        )
    })?;
    if entries.is_empty() || entries.len() > 1000 {
        return Err(bad(413, "1 to 1000 entries a request"));
    }
    let mut seqs = Vec::new();
    for e in &entries {
        let msg = e.message.as_deref().ok_or_else(|| bad(400, "no message"))?;
        let size = [&e.ddsource, &e.ddtags, &e.hostname, &e.service]
            .iter()
            .map(|v| v.as_ref().map_or(0, String::len))
            .sum::<usize>()
            + msg.len();
        if size > 1_000_000 {
            return Err(bad(413, "an entry over 1 MB"));
        }
        seqs.push(event_seq(msg).map_err(|e| bad(400, &e))?);
    }
    Ok(seqs)
}

/// Checks that `seqs` (as a receiver logged them) hold `1..=n` (and maybe more) each at
/// least once, first seen in order: at least once, never reordered, no gap.
pub fn every_seq_in_order(seqs: &[u64], n: u64) -> Result<(), String> {
    let mut next = 1u64;
    for &s in seqs {
        if s == next {
            next += 1;
        } else if s > next {
            return Err(format!("seq {s} arrived before seq {next}"));
        }
        // s < next: a batch sent again (at least once).
    }
    if next <= n {
        return Err(format!("delivered up to {}, the log holds {n}", next - 1));
    }
    Ok(())
}
