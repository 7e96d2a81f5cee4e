//! The durable local spool: every audited request is written here before the upstream
//! sees it (an *intent*: the events without their outcome) and again, flushed to disk,
//! before its answer is returned (a *completion*: the outcomes). Once the events are in
//! the log an *ack* is written. At start the spool is replayed: completed requests not
//! acked are appended again (event ids make that idempotent), and intents that never
//! completed (the gateway stopped while the upstream was answering) are appended with
//! outcome `unknown`.
//!
//! Records are JSON lines in segment files (`00000001.spool`, ...). Each request writes
//! its own records on its own thread (a short `write` under a lock, no hand-off); one
//! syncing thread gathers the requests waiting for their completion to be on disk into
//! one `fdatasync` (group commit). A segment is synced before the next one is started,
//! and deleted once every intent in it is acked. A write that fails closes the segment
//! (a torn line stays at its end, where replay skips it) and the next write starts a
//! new one.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::outcome::Outcome;

#[derive(Debug, Clone, thiserror::Error)]
pub enum SpoolError {
    #[error("the spool cannot be written: {0}")]
    Io(String),
    #[error("the spool is full ({0} bytes waiting to be appended to the log)")]
    Full(u64),
    #[error("the spool is closed")]
    Closed,
}

#[derive(Debug, Clone)]
pub struct Options {
    /// A segment is closed and a new one started beyond this size.
    pub segment_bytes: u64,
    /// Intents are refused while the live segments hold more than this.
    pub max_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_bytes: 64 << 20,
            max_bytes: 256 << 20,
        }
    }
}

/// A request's events, complete with outcomes, ready to be appended to the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Ready {
    pub key: String,
    pub org: String,
    pub events: Vec<Value>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "t")]
enum Record {
    #[serde(rename = "i")]
    Intent {
        k: String,
        org: String,
        ev: Vec<Value>,
    },
    #[serde(rename = "c")]
    Complete {
        k: String,
        o: Vec<(String, Option<String>)>,
    },
    #[serde(rename = "a")]
    Ack { k: Vec<String> },
}

/// Sets each event's outcome (and `context.error` for a reason).
pub fn complete(events: &mut [Value], outcomes: &[Outcome]) {
    for (ev, o) in events.iter_mut().zip(outcomes) {
        set_outcome(ev, o.name(), o.reason());
    }
}

fn set_outcome(ev: &mut Value, name: &str, reason: Option<&str>) {
    let Value::Object(m) = ev else { return };
    m.insert("outcome".into(), Value::String(name.to_owned()));
    if let Some(r) = reason {
        let ctx = m
            .entry("context")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Value::Object(c) = ctx {
            c.insert("error".into(), Value::String(r.to_owned()));
        }
    }
}

/// A handle on the spool; cheap to clone. The syncing thread ends (after a last sync)
/// when every handle is dropped.
#[derive(Clone)]
pub struct Spool {
    inner: Arc<Inner>,
    _open: Arc<Open>,
}

struct Inner {
    files: Mutex<Writer>,
    waiting: Mutex<Waiting>,
    wake: Condvar,
    /// Events spooled and not yet acked.
    depth: Arc<AtomicU64>,
}

/// Requests whose records are written and which wait for them to be on disk.
#[derive(Default)]
struct Waiting {
    replies: Vec<oneshot::Sender<Result<(), SpoolError>>>,
    closed: bool,
}

/// Dropped with the last handle: tells the syncing thread to finish.
struct Open(Arc<Inner>);

impl Drop for Open {
    fn drop(&mut self) {
        lock(&self.0.waiting).closed = true;
        self.0.wake.notify_one();
    }
}

/// A lock that a panic elsewhere does not make unusable: the state it guards is
/// bookkeeping that every step leaves consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Segment {
    path: PathBuf,
    bytes: u64,
    /// Intents in it not yet acked.
    open: u64,
}

struct Writer {
    dir: PathBuf,
    opts: Options,
    segments: BTreeMap<u64, Segment>,
    current: Option<(u64, Arc<File>)>,
    next: u64,
    /// Intent key -> (segment, events).
    intents: HashMap<String, (u64, u64)>,
    depth: Arc<AtomicU64>,
    /// A segment closed since the last sync could not be flushed: the requests waiting
    /// for that sync must hear of it.
    unsynced: Option<String>,
}

fn segment_name(n: u64) -> String {
    format!("{n:08}.spool")
}

impl Spool {
    /// Opens (creating) the spool in `dir` and replays it: what it returns must be
    /// appended to the log, in order, and acked.
    pub fn open(dir: &Path, opts: Options) -> std::io::Result<(Spool, Vec<Ready>)> {
        fs::create_dir_all(dir)?;
        let mut numbers: Vec<u64> = fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".spool")?.parse().ok()
            })
            .collect();
        numbers.sort_unstable();
        let depth = Arc::new(AtomicU64::new(0));
        let mut w = Writer {
            dir: dir.to_owned(),
            opts,
            segments: BTreeMap::new(),
            current: None,
            next: numbers.last().map_or(1, |n| n + 1),
            intents: HashMap::new(),
            depth: depth.clone(),
            unsynced: None,
        };
        let ready = w.replay(&numbers)?;
        let inner = Arc::new(Inner {
            files: Mutex::new(w),
            waiting: Mutex::new(Waiting::default()),
            wake: Condvar::new(),
            depth,
        });
        let syncer = inner.clone();
        std::thread::Builder::new()
            .name("gateway-spool".into())
            .spawn(move || syncer.sync_loop())?;
        Ok((
            Spool {
                _open: Arc::new(Open(inner.clone())),
                inner,
            },
            ready,
        ))
    }

    /// Records a request's events before it is forwarded (written, not flushed: it
    /// survives the gateway's crash, and proves the spool writable).
    pub fn intent(&self, key: &str, org: &str, events: &[Value]) -> Result<(), SpoolError> {
        let bytes = line(&Record::Intent {
            k: key.to_owned(),
            org: org.to_owned(),
            ev: events.to_vec(),
        });
        let mut w = lock(&self.inner.files);
        let total = w.total_bytes();
        if total + bytes.len() as u64 > w.opts.max_bytes {
            return Err(SpoolError::Full(total));
        }
        let n = w.append(&bytes)?;
        if let Some(s) = w.segments.get_mut(&n) {
            s.open += 1;
        }
        let count = events.len() as u64;
        w.intents.insert(key.to_owned(), (n, count));
        self.inner.depth.fetch_add(count, Ordering::Relaxed);
        Ok(())
    }

    /// Records the outcomes of a request and waits until they are on disk.
    pub async fn complete(&self, key: &str, outcomes: &[Outcome]) -> Result<(), SpoolError> {
        let bytes = line(&Record::Complete {
            k: key.to_owned(),
            o: outcomes
                .iter()
                .map(|o| (o.name().to_owned(), o.reason().map(str::to_owned)))
                .collect(),
        });
        lock(&self.inner.files).append(&bytes)?;
        self.flush().await
    }

    /// Records that these requests' events are in the log (written, not flushed: an ack
    /// lost in a crash only means a harmless re-append after the restart).
    pub fn ack(&self, keys: Vec<String>) {
        let bytes = line(&Record::Ack { k: keys.clone() });
        let mut w = lock(&self.inner.files);
        if let Err(e) = w.append(&bytes) {
            tracing::warn!(
                "an ack could not be written ({e}); those requests will be appended again after a restart"
            );
        }
        for k in keys {
            w.acked(&k);
        }
    }

    /// Events spooled and not yet in the log.
    pub fn depth(&self) -> u64 {
        self.inner.depth.load(Ordering::Relaxed)
    }

    /// Waits until everything written so far is on disk.
    pub async fn flush(&self) -> Result<(), SpoolError> {
        let (reply, rx) = oneshot::channel();
        lock(&self.inner.waiting).replies.push(reply);
        self.inner.wake.notify_one();
        rx.await.unwrap_or(Err(SpoolError::Closed))
    }
}

impl Inner {
    /// The syncing thread: one `fdatasync` for every request waiting when it starts.
    /// A request's records are written before it waits, so the sync covers them.
    fn sync_loop(&self) {
        loop {
            let (replies, closed) = {
                let mut q = lock(&self.waiting);
                while q.replies.is_empty() && !q.closed {
                    q = self.wake.wait(q).unwrap_or_else(|e| e.into_inner());
                }
                (std::mem::take(&mut q.replies), q.closed)
            };
            let result = self.sync();
            for r in replies {
                let _ = r.send(result.clone());
            }
            if closed {
                return;
            }
        }
    }

    fn sync(&self) -> Result<(), SpoolError> {
        let (file, unsynced) = {
            let mut w = lock(&self.files);
            let file = w.current.as_ref().map(|(_, f)| f.clone());
            (file, w.unsynced.take())
        };
        if let Some(e) = unsynced {
            return Err(SpoolError::Io(e));
        }
        let Some(file) = file else { return Ok(()) };
        file.sync_data().map_err(|e| {
            // What the page cache held may be gone: the next write starts a new segment.
            let mut w = lock(&self.files);
            if w.current
                .as_ref()
                .is_some_and(|(_, f)| Arc::ptr_eq(f, &file))
            {
                w.close_current();
            }
            SpoolError::Io(e.to_string())
        })
    }
}

fn line(rec: &Record) -> Vec<u8> {
    let mut v = serde_json::to_vec(rec).unwrap_or_default();
    v.push(b'\n');
    v
}

/// What replay knows of one request.
struct Pending {
    org: String,
    events: Vec<Value>,
    segment: u64,
    outcomes: Option<Vec<(String, Option<String>)>>,
}

impl Writer {
    fn replay(&mut self, numbers: &[u64]) -> std::io::Result<Vec<Ready>> {
        let mut order: Vec<String> = Vec::new();
        let mut pending: HashMap<String, Pending> = HashMap::new();
        for &n in numbers {
            let path = self.dir.join(segment_name(n));
            let file = File::open(&path)?;
            let bytes = file.metadata()?.len();
            for (i, l) in BufReader::new(file).split(b'\n').enumerate() {
                let l = l?;
                let Ok(rec) = serde_json::from_slice::<Record>(&l) else {
                    if !l.is_empty() {
                        tracing::warn!(segment = %path.display(), line = i + 1, "skipping a torn spool record");
                    }
                    continue;
                };
                match rec {
                    Record::Intent { k, org, ev } => {
                        order.push(k.clone());
                        pending.insert(
                            k,
                            Pending {
                                org,
                                events: ev,
                                segment: n,
                                outcomes: None,
                            },
                        );
                    }
                    Record::Complete { k, o } => {
                        if let Some(p) = pending.get_mut(&k) {
                            p.outcomes = Some(o);
                        }
                    }
                    Record::Ack { k } => {
                        for k in k {
                            pending.remove(&k);
                        }
                    }
                }
            }
            self.segments.insert(
                n,
                Segment {
                    path,
                    bytes,
                    open: 0,
                },
            );
        }
        let mut ready = Vec::new();
        for k in order {
            let Some(mut p) = pending.remove(&k) else {
                continue;
            };
            match &p.outcomes {
                Some(o) => {
                    for (ev, (name, reason)) in p.events.iter_mut().zip(o) {
                        set_outcome(ev, name, reason.as_deref());
                    }
                }
                None => {
                    for ev in &mut p.events {
                        set_outcome(
                            ev,
                            "unknown",
                            Some("the gateway stopped before the upstream's answer was recorded"),
                        );
                    }
                }
            }
            let n = p.events.len() as u64;
            if let Some(s) = self.segments.get_mut(&p.segment) {
                s.open += 1;
            }
            self.intents.insert(k.clone(), (p.segment, n));
            self.depth.fetch_add(n, Ordering::Relaxed);
            ready.push(Ready {
                key: k,
                org: p.org,
                events: p.events,
            });
        }
        self.trim();
        Ok(ready)
    }

    fn total_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.bytes).sum()
    }

    fn remove(&mut self, n: u64) {
        if let Some(s) = self.segments.remove(&n)
            && let Err(e) = fs::remove_file(&s.path)
        {
            tracing::warn!(segment = %s.path.display(), "cannot remove a finished spool segment: {e}");
        }
    }

    /// Writes `bytes` at the end of the current segment; returns the segment's number.
    fn append(&mut self, bytes: &[u8]) -> Result<u64, SpoolError> {
        let written = self.file().and_then(|(n, mut f)| {
            f.write_all(bytes)?;
            Ok(n)
        });
        match written {
            Ok(n) => {
                if let Some(s) = self.segments.get_mut(&n) {
                    s.bytes += bytes.len() as u64;
                }
                Ok(n)
            }
            Err(e) => {
                // What was written may end in a torn line: start afresh.
                self.close_current();
                Err(SpoolError::Io(e.to_string()))
            }
        }
    }

    /// The segment to write to, opening a new one when there is none or it is full.
    fn file(&mut self) -> std::io::Result<(u64, &File)> {
        let full = self.current.as_ref().is_some_and(|(n, _)| {
            self.segments
                .get(n)
                .is_none_or(|s| s.bytes >= self.opts.segment_bytes)
        });
        if full {
            self.close_current();
        }
        if self.current.is_none() {
            let n = self.next;
            let path = self.dir.join(segment_name(n));
            let f = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)?;
            // The new name must survive a crash as well as its content.
            File::open(&self.dir)?.sync_all()?;
            self.next += 1;
            self.segments.insert(
                n,
                Segment {
                    path,
                    bytes: 0,
                    open: 0,
                },
            );
            self.current = Some((n, Arc::new(f)));
        }
        match &self.current {
            Some((n, f)) => Ok((*n, f)),
            None => Err(std::io::Error::other("no segment")),
        }
    }

    /// Leaves the current segment, flushed (the syncing thread only flushes the current
    /// one), and deletes it when nothing in it waits for the log.
    fn close_current(&mut self) {
        let Some((n, f)) = self.current.take() else {
            return;
        };
        if let Err(e) = f.sync_data() {
            tracing::error!(segment = n, "cannot flush a spool segment: {e}");
            self.unsynced = Some(e.to_string());
        }
        self.trim();
    }

    /// Deletes finished segments, oldest first: a segment is finished when no intent in
    /// it waits for the log, and it goes only after every older one, since it may hold
    /// the acks of their intents (without which a replay would append those again).
    fn trim(&mut self) {
        let current = self.current.as_ref().map(|(n, _)| *n);
        while let Some((&n, s)) = self.segments.first_key_value() {
            if s.open > 0 || Some(n) == current {
                break;
            }
            self.remove(n);
        }
    }

    fn acked(&mut self, key: &str) {
        let Some((seg, events)) = self.intents.remove(key) else {
            return;
        };
        self.depth.fetch_sub(events, Ordering::Relaxed);
        if let Some(s) = self.segments.get_mut(&seg) {
            s.open = s.open.saturating_sub(1);
        }
        self.trim();
    }
}

#[cfg(test)]
mod tests;
