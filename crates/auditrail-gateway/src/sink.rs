//! Appending spooled events to the log: straight into the store (`--data-dir`,
//! `--database-url`) or through `POST /v1/events` of a remote auditrail (`--ingest-url`),
//! with retries. Every event carries its id, so an append repeated after an error or a
//! restart stores nothing twice.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use auditrail_service::ingest::prepare_batch;
use auditrail_service::{Service, ServiceError};
use auditrail_store::StoreError;
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc};

use crate::metrics::Metrics;
use crate::spool::{Ready, Spool};

#[derive(Debug, Clone, thiserror::Error)]
pub enum SinkError {
    /// Worth retrying: the log is unreachable or overloaded.
    #[error("the log is unavailable: {0}")]
    Unavailable(String),
    /// The log refuses these events; retrying will not change that.
    #[error("the log refused the events: {0}")]
    Rejected(String),
}

#[async_trait]
pub trait Sink: Send + Sync {
    /// Appends `events` (each with its `id`) to `org`'s log, in order.
    async fn append(&self, org: &str, events: &[Value]) -> Result<(), SinkError>;
    /// The org's key for `hmac` redaction, when this sink can know it.
    async fn hmac_key(&self, org: &str) -> Result<Option<[u8; 32]>, SinkError>;
}

/// What the log refuses for good (the events, an unknown org, a conflict) against what
/// may pass on a retry (the store busy or down, a fault on the log's side), as the HTTP
/// sink tells 4xx from 5xx.
fn from_service(e: ServiceError) -> SinkError {
    let m = e.to_string();
    match e {
        ServiceError::InvalidEvent { .. }
        | ServiceError::NotFound(_)
        | ServiceError::Store(StoreError::NotFound { .. } | StoreError::Conflict(_)) => {
            SinkError::Rejected(m)
        }
        _ => SinkError::Unavailable(m),
    }
}

/// Appends through the store the gateway opened itself, exactly as `POST /v1/events`
/// does (the org's catalog policy, its HMAC key, group commit).
pub struct StoreSink {
    pub service: Arc<Service>,
}

#[async_trait]
impl Sink for StoreSink {
    async fn append(&self, org: &str, events: &[Value]) -> Result<(), SinkError> {
        let svc = &self.service;
        let policy = svc.policies.get(svc, org).await.map_err(from_service)?;
        let prepared =
            prepare_batch(svc, org, Some(&policy), events, true).map_err(from_service)?;
        svc.store
            .append(org, prepared, false)
            .await
            .map_err(|e| from_service(e.into()))?;
        Ok(())
    }

    async fn hmac_key(&self, org: &str) -> Result<Option<[u8; 32]>, SinkError> {
        let policy = self
            .service
            .policies
            .get(&self.service, org)
            .await
            .map_err(from_service)?;
        Ok(Some(policy.hmac_key))
    }
}

/// Appends through a remote auditrail's API with an ingest key (one org's).
pub struct RemoteSink {
    pub client: reqwest::Client,
    /// `{base}/v1/events`.
    pub events_url: String,
    pub token: String,
}

#[async_trait]
impl Sink for RemoteSink {
    async fn append(&self, _org: &str, events: &[Value]) -> Result<(), SinkError> {
        let resp = self
            .client
            .post(&self.events_url)
            .bearer_auth(&self.token)
            .json(&json!({ "events": events }))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| SinkError::Unavailable(e.to_string()))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = resp.text().await.unwrap_or_default();
        let m = format!(
            "HTTP {status}: {}",
            body.chars().take(500).collect::<String>()
        );
        if status.is_server_error() || status.as_u16() == 429 {
            Err(SinkError::Unavailable(m))
        } else {
            Err(SinkError::Rejected(m))
        }
    }

    async fn hmac_key(&self, _org: &str) -> Result<Option<[u8; 32]>, SinkError> {
        Ok(None)
    }
}

/// The org HMAC keys a sink gave, kept for the life of the gateway.
#[derive(Default)]
pub struct KeyCache(Mutex<HashMap<String, Option<[u8; 32]>>>);

impl KeyCache {
    pub async fn get(&self, sink: &dyn Sink, org: &str) -> Result<Option<[u8; 32]>, SinkError> {
        if let Some(k) = self.0.lock().await.get(org) {
            return Ok(*k);
        }
        let k = sink.hmac_key(org).await?;
        self.0.lock().await.insert(org.to_owned(), k);
        Ok(k)
    }
}

/// Events per append (the API's batch limit).
const MAX_BATCH: usize = 1000;
/// How long a batch waits for more requests before it is appended. The client's answer
/// never waits for the append (only for the spool), so this costs nothing but a few
/// milliseconds before the events are searchable, and makes each commit of the log carry
/// many requests instead of a few: its per-commit costs (WAL pages, `fsync`) are most
/// of what the log spends at a gateway's request rates.
const LINGER: Duration = Duration::from_millis(5);

/// Appends what the spool hands over, in order, until the channel closes and is empty.
/// A batch the log is unavailable for is retried (with backoff) until it goes in; one it
/// refuses is split request by request, and a request still refused is written to
/// `rejected.ndjson` in the spool dir (with the reason) rather than dropped.
pub async fn append_loop(
    mut rx: mpsc::UnboundedReceiver<Ready>,
    sink: Arc<dyn Sink>,
    spool: Spool,
    metrics: Arc<Metrics>,
    rejected: PathBuf,
) {
    let mut carry: VecDeque<Ready> = VecDeque::new();
    loop {
        let first = match carry.pop_front() {
            Some(r) => r,
            None => match rx.recv().await {
                Some(r) => r,
                None => break,
            },
        };
        let mut batch = vec![first];
        let mut n = batch[0].events.len();
        let until = tokio::time::Instant::now() + LINGER;
        while n < MAX_BATCH {
            let next = match carry.pop_front() {
                Some(r) => r,
                None => match rx.try_recv() {
                    Ok(r) => r,
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        match tokio::time::timeout_at(until, rx.recv()).await {
                            Ok(Some(r)) => r,
                            _ => break,
                        }
                    }
                },
            };
            if next.org != batch[0].org || n + next.events.len() > MAX_BATCH {
                carry.push_front(next);
                break;
            }
            n += next.events.len();
            batch.push(next);
        }
        match append_retrying(sink.as_ref(), &metrics, &batch).await {
            Ok(()) => {
                metrics
                    .appended_events
                    .inc_by(batch.iter().map(|r| r.events.len() as u64).sum());
            }
            Err(reason) if batch.len() > 1 => {
                tracing::warn!(
                    "the log refused a batch ({reason}); appending its requests one by one"
                );
                for r in batch {
                    match append_retrying(sink.as_ref(), &metrics, std::slice::from_ref(&r)).await {
                        Ok(()) => {
                            metrics.appended_events.inc_by(r.events.len() as u64);
                        }
                        Err(reason) => reject(&rejected, &r, &reason, &metrics),
                    }
                    spool.ack(vec![r.key]);
                }
                continue;
            }
            Err(reason) => reject(&rejected, &batch[0], &reason, &metrics),
        }
        spool.ack(batch.into_iter().map(|r| r.key).collect());
    }
}

/// Appends one batch, retrying while the log is unavailable; `Err` when it refuses.
async fn append_retrying(
    sink: &dyn Sink,
    metrics: &Metrics,
    batch: &[Ready],
) -> Result<(), String> {
    let events: Vec<Value> = batch
        .iter()
        .flat_map(|r| r.events.iter().cloned())
        .collect();
    let mut wait = Duration::from_millis(100);
    loop {
        match sink.append(&batch[0].org, &events).await {
            Ok(()) => return Ok(()),
            Err(SinkError::Rejected(m)) => return Err(m),
            Err(SinkError::Unavailable(m)) => {
                metrics.append_retries.inc();
                tracing::warn!(org = %batch[0].org, "cannot append to the log yet ({m}); retrying in {wait:?}");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn reject(path: &PathBuf, r: &Ready, reason: &str, metrics: &Metrics) {
    tracing::error!(org = %r.org, events = r.events.len(), "the log refused spooled events ({reason}); kept in {}", path.display());
    metrics.rejected_events.inc_by(r.events.len() as u64);
    let line = json!({"org": r.org, "reason": reason, "events": r.events});
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        f.write_all(format!("{line}\n").as_bytes())?;
        f.sync_data()
    };
    if let Err(e) = write() {
        tracing::error!("cannot keep refused events in {}: {e}", path.display());
    }
}
