//! The delivery worker: one task per active destination. Each task waits until a batch
//! is due (`max_batch_events` undelivered, or the oldest undelivered event is
//! `max_batch_seconds` old), records the batch's range, uploads it under a key derived
//! from its content, writes the signed checkpoint of its last seq beside it, and only
//! then advances `delivered_seq`. A failure keeps the recorded range, so the retry writes
//! the same object: nothing is skipped, reordered or delivered twice.
//!
//! With several nodes on one database, every node runs a task per destination but only
//! the holder of the destination's lease delivers; it renews the lease every round. If
//! it dies, another node takes the lease once it lapses and resumes from the recorded
//! state: a batch recorded but not confirmed is uploaded again under the same key with
//! the same bytes, so the bucket still holds each seq exactly once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use auditrail_core::delivery::{
    FrontierFile, checkpoint_key, frontier_key, object_key, security_lake_key,
};
use auditrail_core::merkle::frontier_ids;
use auditrail_core::ocsf::Mapper;
use auditrail_store::{DeliveryUpdate, Destination, StoredEvent};
use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::bucket::{Bucket, S3Failure};
use super::config::DestinationConfig;
use super::push;
use super::push_config::PushConfig;
use super::{internal, oldest_undelivered_ms, read_events, received_ms};
use crate::App;
use crate::exports::now_ms;
use crate::metrics::{DestinationLabels, ErrorKind, Outcome};

type Key = (String, String);
/// A batch read ahead: its events and, for a push stream, their entries.
type Batch = Result<(Vec<StoredEvent>, Option<push::Encoded>), S3Failure>;

struct Running {
    updated_ms: i64,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Keeps one task per active destination until `stop`; then lets each flush what is due.
pub async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let mut running: HashMap<Key, Running> = HashMap::new();
    loop {
        match app.store.list_destinations(None).await {
            Ok(all) => reconcile(&app, &mut running, all).await,
            Err(e) => tracing::warn!(error = %e, "could not list destinations"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = app.delivery.wake.notified() => {}
            _ = stop.changed() => break,
        }
    }
    for r in running.values() {
        let _ = r.stop.send(true);
    }
    let flush = app.settings.delivery.flush_timeout;
    for (_, r) in running {
        let abort = r.task.abort_handle();
        if tokio::time::timeout(flush, r.task).await.is_err() {
            abort.abort();
        }
    }
}

async fn reconcile(app: &Arc<App>, running: &mut HashMap<Key, Running>, all: Vec<Destination>) {
    let wanted: HashMap<Key, i64> = all
        .into_iter()
        .filter(|d| !d.paused)
        .map(|d| ((d.org, d.name), d.updated_ms))
        .collect();
    let stale: Vec<Key> = running
        .iter()
        .filter(|(k, r)| wanted.get(*k) != Some(&r.updated_ms) || r.task.is_finished())
        .map(|(k, _)| k.clone())
        .collect();
    for k in stale {
        if let Some(r) = running.remove(&k) {
            // Changed, paused or deleted: stop between steps, or cut an upload short
            // (its range stays recorded, so nothing is lost).
            let _ = r.stop.send(true);
            let abort = r.task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), r.task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
    for (k, updated_ms) in wanted {
        if running.contains_key(&k) {
            continue;
        }
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(deliver(app.clone(), k.0.clone(), k.1.clone(), rx));
        running.insert(
            k,
            Running {
                updated_ms,
                stop: tx,
                task,
            },
        );
    }
}

/// The OCSF mapper of `org` when `config` sends OCSF records.
async fn mapper_for(
    app: &App,
    org: &str,
    config: &DestinationConfig,
) -> Result<Option<Mapper>, S3Failure> {
    crate::ocsf::mapper(app, org, config.format.is_ocsf())
        .await
        .map_err(internal)
}

/// Encodes `events` for a push stream off the async threads; gives them back with it.
async fn encode_push(
    app: &App,
    org: &str,
    config: &DestinationConfig,
    p: &PushConfig,
    events: Vec<StoredEvent>,
) -> Result<(Vec<StoredEvent>, push::Encoded), S3Failure> {
    let body = push::body_of(org, config, p);
    let ocsf = mapper_for(app, org, config).await?;
    tokio::task::spawn_blocking(move || {
        let enc = push::encode(body, &events, ocsf.as_ref())?;
        Ok((events, enc))
    })
    .await
    .map_err(|e| internal(format!("encoding task: {e}")))?
}

/// Exponential backoff with jitter, from 500 ms up to `max`.
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(max: Duration) -> Self {
        Self {
            next: Duration::from_millis(500),
            max,
        }
    }

    fn reset(&mut self) {
        self.next = Duration::from_millis(500);
    }

    fn longest(&mut self) -> Duration {
        self.next = self.max;
        self.max
    }

    fn step(&mut self) -> Duration {
        let jitter = 0.5 + auditrail_service::random::unit();
        let d = self.next.mul_f64(jitter).min(self.max);
        self.next = (self.next * 2).min(self.max);
        d
    }
}

/// What a task keeps between rounds.
struct Task {
    app: Arc<App>,
    org: String,
    name: String,
    bucket: Option<(i64, Bucket)>,
    /// `(delivered_seq, received_at in ms)` of the oldest undelivered event.
    oldest: Option<(u64, i64)>,
    /// The next full batch, read while the current one uploads: `(after_seq, read)`.
    prefetch: Option<(u64, JoinHandle<Batch>)>,
    /// A push stream's HTTP client (under the outbound policy), made once.
    client: Option<reqwest::Client>,
    /// How long the receiver asked us to wait before the next try (`Retry-After`).
    retry_after: Option<Duration>,
    /// Whether the org was told the destination is failing (None: not read yet).
    alerted: Option<bool>,
    /// The most events a push request carries since the receiver answered 413 to more.
    part_cap: Option<usize>,
}

enum Step {
    /// Nothing due before this long.
    Wait(Duration),
    Delivered,
    Gone,
}

async fn deliver(app: Arc<App>, org: String, name: String, mut stop: watch::Receiver<bool>) {
    let mut backoff = Backoff::new(app.settings.delivery.max_backoff);
    let lease = format!("delivery/{org}/{name}");
    let standby = (app.settings.lease_ttl / 3).max(Duration::from_millis(200));
    let mut t = Task {
        app,
        org,
        name,
        bucket: None,
        oldest: None,
        prefetch: None,
        client: None,
        retry_after: None,
        alerted: None,
        part_cap: None,
    };
    loop {
        let stopping = *stop.borrow();
        if !auditrail_service::lease::hold(&t.app, &lease).await {
            // Another node delivers this destination; stand by in case it goes away.
            t.prefetch = None;
            if stopping {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(standby) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        let pause = match t.step(stopping).await {
            Ok(Step::Gone) => {
                auditrail_service::lease::release(&t.app, &lease).await;
                return;
            }
            Ok(Step::Delivered) => {
                backoff.reset();
                continue;
            }
            Ok(Step::Wait(_)) if stopping => {
                auditrail_service::lease::release(&t.app, &lease).await;
                return;
            }
            // Wake at least often enough to keep the lease.
            Ok(Step::Wait(d)) => d.min(standby),
            Err(f) => {
                t.failed(&f).await;
                if stopping {
                    auditrail_service::lease::release(&t.app, &lease).await;
                    return;
                }
                if let Some(asked) = t.retry_after.take() {
                    // The receiver said when to come back (429, or 503 with Retry-After).
                    asked
                } else if f.blocked {
                    // A person must fix it (a role's trust policy, a refused address):
                    // try again now and then, without hammering the remote.
                    t.bucket = None;
                    backoff.longest()
                } else {
                    backoff.step()
                }
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => {}
        }
    }
}

impl Task {
    fn labels(&self) -> DestinationLabels {
        DestinationLabels {
            org: self.org.clone(),
            destination: self.name.clone(),
        }
    }

    async fn read(&self, after: u64, limit: usize) -> Result<Vec<StoredEvent>, S3Failure> {
        read_events(self.app.clone(), self.org.clone(), after, limit).await
    }

    /// The batch after `after`: the prefetched one if it is that, else read now.
    async fn next_batch(&mut self, after: u64, limit: usize) -> Batch {
        if let Some((at, task)) = self.prefetch.take()
            && at == after
            && let Ok(Ok((events, enc))) = task.await
            && events.len() == limit
        {
            return Ok((events, enc));
        }
        Ok((self.read(after, limit).await?, None))
    }

    async fn update(&self, u: DeliveryUpdate) -> Result<bool, S3Failure> {
        self.app
            .store
            .update_delivery(&self.org, &self.name, u)
            .await
            .map_err(|e| internal(format!("recording delivery state: {e}")))
    }

    async fn failed(&mut self, f: &S3Failure) {
        tracing::warn!(
            org = self.org,
            destination = self.name,
            error = f.message,
            "delivery failed"
        );
        let m = &self.app.metrics;
        m.delivery_objects
            .get_or_create(&Outcome { outcome: "failed" })
            .inc();
        let kind = if f.permanent {
            "permanent"
        } else {
            "transient"
        };
        m.delivery_errors.get_or_create(&ErrorKind { kind }).inc();
        m.destination_failing.get_or_create(&self.labels()).set(1);
        let at_ms = now_ms();
        let u = DeliveryUpdate::Failed {
            error: super::stored_error(f),
            at_ms,
        };
        if let Err(e) = self.update(u).await {
            tracing::warn!(error = e.message, "could not record a delivery error");
            return;
        }
        // Failing for longer than the destination's `alert_after`: tell the org, once.
        if self.alerted != Some(true)
            && let Ok(Some(d)) = self.app.store.get_destination(&self.org, &self.name).await
            && let Ok(c) = super::config_of(&d)
        {
            let (app, org, name) = (&self.app, &self.org, &self.name);
            let (since, after) = (d.failing_since_ms, c.alert_after_s);
            if super::health::failing(app, org, name, since, after, &f.message).await {
                self.alerted = Some(true);
            }
        }
    }

    /// Records a batch ending at `last` (`count` events) as delivered, counts it, and
    /// announces the recovery if the org was told of a failure.
    async fn delivered(&mut self, last: u64, count: u64) -> Result<(), S3Failure> {
        let at_ms = now_ms();
        if self
            .update(DeliveryUpdate::Delivered { last, at_ms })
            .await?
        {
            let m = &self.app.metrics;
            m.delivery_objects
                .get_or_create(&Outcome {
                    outcome: "delivered",
                })
                .inc();
            m.delivery_events.inc_by(count);
        }
        self.succeeded(count).await;
        Ok(())
    }

    /// After a delivery of `count` events: counts them, and announces the recovery if the
    /// org was told of the failure.
    async fn succeeded(&mut self, count: u64) {
        let m = &self.app.metrics;
        let labels = self.labels();
        m.destination_events.get_or_create(&labels).inc_by(count);
        m.destination_failing.get_or_create(&labels).set(0);
        if self.alerted.is_none() {
            self.alerted = Some(super::health::alerted(&self.app, &self.org, &self.name).await);
        }
        if self.alerted == Some(true) {
            super::health::recovered(&self.app, &self.org, &self.name).await;
            self.alerted = Some(false);
        }
    }

    /// One round: deliver the pending or a due batch, or say how long to wait.
    async fn step(&mut self, flushing: bool) -> Result<Step, S3Failure> {
        let app = self.app.clone();
        let dest = match app.store.get_destination(&self.org, &self.name).await {
            Ok(Some(d)) if !d.paused => d,
            Ok(_) => return Ok(Step::Gone),
            Err(e) => return Err(internal(format!("reading the destination: {e}"))),
        };
        let config = super::config_of(&dest)?;
        let poll = app.settings.delivery.poll;
        // A push stream's requests carry at most what its receiver takes.
        let max_events = match config.kind.is_push() {
            true => push::limits(config.kind, config.max_batch_events).0,
            false => config.max_batch_events,
        };
        let mut encoded = None;
        let events = match dest.pending {
            Some((first, last)) => {
                let n = (last - first + 1) as usize;
                let events = self.read(first - 1, n).await?;
                let contiguous =
                    events.len() == n && events.iter().zip(first..).all(|(e, s)| e.seq == s);
                if !contiguous {
                    return Err(internal(format!(
                        "the recorded batch {first}..{last} can no longer be read whole"
                    )));
                }
                events
            }
            None => {
                let delivered = dest.delivered_seq;
                let head = app
                    .store
                    .tree_head(&self.org)
                    .await
                    .map_err(|e| internal(format!("reading the log head: {e}")))?;
                app.metrics
                    .destination_lag_events
                    .get_or_create(&self.labels())
                    .set(head.size.saturating_sub(delivered) as i64);
                if head.size <= delivered {
                    return Ok(Step::Wait(poll));
                }
                let full = head.size - delivered >= max_events;
                if !full && !flushing {
                    let oldest = match self.oldest {
                        Some((d, ms)) if d == delivered => ms,
                        _ => {
                            let Some(ms) =
                                oldest_undelivered_ms(&app, &self.org, delivered).await?
                            else {
                                return Ok(Step::Wait(poll));
                            };
                            self.oldest = Some((delivered, ms));
                            ms
                        }
                    };
                    let due = oldest + (config.max_batch_seconds * 1000) as i64;
                    let now = now_ms();
                    if now < due {
                        let wait = Duration::from_millis((due - now) as u64);
                        return Ok(Step::Wait(wait.min(poll)));
                    }
                }
                let max = max_events as usize;
                let (mut events, pre) = self.next_batch(delivered, max).await?;
                if let Some(p) = &config.push {
                    // Cut to the receiver's byte limit before the range is recorded.
                    let enc = match pre {
                        Some(enc) => enc,
                        None => {
                            let (read, enc) =
                                encode_push(&app, &self.org, &config, p, events).await?;
                            events = read;
                            enc
                        }
                    };
                    let n = push::fit(
                        config.kind,
                        config.max_batch_events,
                        &enc.body,
                        &enc.entries,
                    );
                    events.truncate(n);
                    encoded = Some(enc);
                }
                let (Some(first), Some(last)) = (events.first(), events.last()) else {
                    return Ok(Step::Wait(poll));
                };
                let (first, last) = (first.seq, last.seq);
                if !self.update(DeliveryUpdate::Begin { first, last }).await? {
                    // The state moved under us (an update elsewhere): look again.
                    return Ok(Step::Wait(Duration::ZERO));
                }
                if events.len() == max && head.size >= last + max as u64 {
                    // A backlog: read (and for a push stream, encode) the next batch while
                    // this one is encoded and sent.
                    let (app, org, config) = (app.clone(), self.org.clone(), config.clone());
                    let read = async move {
                        let events = read_events(app.clone(), org.clone(), last, max).await?;
                        match &config.push {
                            Some(p) => {
                                let (events, enc) =
                                    encode_push(&app, &org, &config, p, events).await?;
                                Ok((events, Some(enc)))
                            }
                            None => Ok((events, None)),
                        }
                    };
                    self.prefetch = Some((last, tokio::spawn(read)));
                }
                events
            }
        };
        match &config.push {
            Some(p) => {
                let enc = match encoded {
                    Some(enc) => enc,
                    None => {
                        encode_push(&app, &self.org, &config, p, events.clone())
                            .await?
                            .1
                    }
                };
                self.push(&dest, &config, p, &events, &enc).await?;
            }
            None => self.upload(&dest, &config, events).await?,
        }
        Ok(Step::Delivered)
    }

    /// Sends a push stream's batch; `enc` holds at least its events' entries.
    async fn push(
        &mut self,
        dest: &Destination,
        config: &DestinationConfig,
        p: &PushConfig,
        events: &[StoredEvent],
        enc: &push::Encoded,
    ) -> Result<(), S3Failure> {
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return Ok(());
        };
        let (first, last) = (first.seq, last.seq);
        let app = self.app.clone();
        if self.client.is_none() {
            let patience = app.settings.delivery.patience;
            let client = app
                .settings
                .outbound
                .http_client(patience.request_timeout, patience.connect_timeout)
                .map_err(|e| internal(e.to_string()))?;
            self.client = Some(client);
        }
        let Some(client) = &self.client else {
            return Err(internal("no HTTP client".into()));
        };
        let started = std::time::Instant::now();
        // One request, unless the recorded range is larger than the receiver takes now
        // (its kind or limits changed since it was recorded): then in order, in parts; a
        // failure resends from the range's start, which at least once allows.
        // A receiver that answers 413 to a request of several events gets them again at
        // once in halves, and smaller requests from then on.
        let mut at = 0;
        while at < events.len() {
            let rest = &enc.entries[at..events.len()];
            let fits = push::fit(config.kind, config.max_batch_events, &enc.body, rest);
            let n = fits.min(self.part_cap.unwrap_or(usize::MAX)).max(1);
            let span = (events[at].seq, events[at + n - 1].seq);
            let sent = push::send(&app, client, dest, config, p, &enc.body, &rest[..n], span);
            match sent.await {
                Ok(()) => at += n,
                Err(f) if f.too_large && n > 1 => {
                    self.part_cap = Some(n / 2);
                    tracing::info!(
                        org = self.org,
                        destination = self.name,
                        events = n / 2,
                        "the receiver answered 413; sending smaller requests"
                    );
                }
                Err(f) => {
                    self.retry_after = f.retry_after;
                    return Err(f.failure);
                }
            }
        }
        self.delivered(last, events.len() as u64).await?;
        tracing::debug!(
            org = self.org,
            destination = self.name,
            first,
            last,
            total_ms = started.elapsed().as_millis() as u64,
            "pushed"
        );
        Ok(())
    }

    fn bucket(&mut self, dest: &Destination) -> Result<&Bucket, S3Failure> {
        let fresh = matches!(&self.bucket, Some((u, _)) if *u == dest.updated_ms);
        if !fresh {
            let (_, b) = super::open_bucket(&self.app, dest)?;
            self.bucket = Some((dest.updated_ms, b));
        }
        match &self.bucket {
            Some((_, b)) => Ok(b),
            None => Err(internal("no bucket".into())),
        }
    }

    async fn upload(
        &mut self,
        dest: &Destination,
        config: &DestinationConfig,
        events: Vec<StoredEvent>,
    ) -> Result<(), S3Failure> {
        let app = self.app.clone();
        let (Some(first_ev), Some(last_ev)) = (events.first(), events.last()) else {
            return Ok(());
        };
        let (first, last) = (first_ev.seq, last_ev.seq);
        let (_, date) = received_ms(first_ev)?;
        let format = config.format;
        let key = match &config.security_lake {
            Some(l) => security_lake_key(
                &l.source_name,
                &config.region,
                &l.account_id,
                &date,
                &self.org,
                first,
                last,
            ),
            None => object_key(&config.prefix, &self.org, &date, first, last, format),
        };
        let count = events.len() as u64;
        let started = std::time::Instant::now();
        let ocsf = mapper_for(&app, &self.org, config)
            .await?
            .unwrap_or_default();
        let (body, events) = tokio::task::spawn_blocking(move || {
            let body = auditrail_export::batch::encode_batch(&events, format, &ocsf);
            (body, events)
        })
        .await
        .map_err(|e| internal(format!("encoding task: {e}")))?;
        let body = body.map_err(|e| internal(format!("encoding the batch: {e}")))?;
        let note = self.checkpoint_note(last).await?;
        let frontier = if first > 1 && dest.last_delivery_ms.is_none() {
            Some(self.frontier(first - 1).await?)
        } else {
            None
        };
        let encoded = started.elapsed();
        let threshold = app.settings.delivery.multipart_threshold;
        let org = self.org.clone();
        let bucket = self.bucket(dest)?;
        if let Some(f) = frontier {
            let k = frontier_key(&config.prefix, &org, first - 1);
            bucket.put(&k, Bytes::from(f), threshold).await?;
        }
        let size = body.len();
        // The object and the tiles beside it go up together.
        let tiles = async {
            if config.tiles {
                super::tlog::publish(
                    &app,
                    &org,
                    bucket,
                    &config.prefix,
                    &events,
                    first,
                    last,
                    dest.last_delivery_ms.is_none(),
                    threshold,
                )
                .await
            } else {
                Ok(())
            }
        };
        tokio::try_join!(bucket.put(&key, Bytes::from(body), threshold), tiles)?;
        let uploaded = started.elapsed();
        let cp_key = checkpoint_key(&config.prefix, &org, last);
        bucket.put(&cp_key, Bytes::from(note), threshold).await?;
        self.delivered(last, count).await?;
        tracing::debug!(
            org = self.org,
            destination = self.name,
            key,
            count,
            size,
            encoded_ms = encoded.as_millis() as u64,
            uploaded_ms = uploaded.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "delivered"
        );
        Ok(())
    }

    /// The signed checkpoint of the tree at exactly `size`.
    async fn checkpoint_note(&self, size: u64) -> Result<String, S3Failure> {
        let app = &self.app;
        let root = auditrail_store::proofs::root_at(app.store.as_ref(), &self.org, size)
            .await
            .map_err(|e| internal(format!("reading the tree: {e}")))?;
        auditrail_service::signing::sign_note(app, &self.org, size, root)
            .map_err(|e| internal(e.to_string()))
    }

    /// The tree's edge at `size`, for a destination that starts after seq 1.
    async fn frontier(&self, size: u64) -> Result<String, S3Failure> {
        let hashes = self
            .app
            .store
            .node_hashes(&self.org, &frontier_ids(size))
            .await
            .map_err(|e| internal(format!("reading the tree: {e}")))?;
        let f = FrontierFile {
            size,
            hashes: hashes.iter().map(hex::encode).collect(),
        };
        serde_json::to_string(&f).map_err(|e| internal(e.to_string()))
    }
}
