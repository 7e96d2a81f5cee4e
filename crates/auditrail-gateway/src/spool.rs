//! The durable local spool: every audited request is written here before the upstream
//! sees it (an *intent*: the events without their outcome) and again, flushed to disk,
//! before its answer is returned (a *completion*: the outcomes). Once the events are in
//! the log an *ack* is written. At start the spool is replayed: completed requests not
//! acked are appended again (event ids make that idempotent), and intents that never
//! completed (the gateway stopped while the upstream was answering) are appended with
//! outcome `unknown`.
//!
//! Records are JSON lines in segment files (`00000001.spool`, ...). One writer thread
//! owns the files and gathers concurrent requests into one write and one `fdatasync`
//! (group commit). A segment is deleted once every intent in it is acked. A write that
//! fails closes the segment (a torn line stays at its end, where replay skips it) and
//! the next write starts a new one.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

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

enum Kind {
    Intent { key: String, events: u64 },
    Complete,
    Ack(Vec<String>),
}

struct Job {
    bytes: Vec<u8>,
    kind: Kind,
    sync: bool,
    reply: Option<oneshot::Sender<Result<(), SpoolError>>>,
}

/// A handle on the spool; cheap to clone. The writer thread ends when every handle is
/// dropped.
#[derive(Clone)]
pub struct Spool {
    tx: mpsc::Sender<Job>,
    /// Events spooled and not yet acked.
    depth: Arc<AtomicU64>,
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
    current: Option<(u64, File)>,
    next: u64,
    /// Intent key -> (segment, events).
    intents: HashMap<String, (u64, u64)>,
    depth: Arc<AtomicU64>,
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
        };
        let ready = w.replay(&numbers)?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("gateway-spool".into())
            .spawn(move || w.run(rx))?;
        Ok((Spool { tx, depth }, ready))
    }

    fn send(
        &self,
        bytes: Vec<u8>,
        kind: Kind,
        sync: bool,
    ) -> oneshot::Receiver<Result<(), SpoolError>> {
        let (reply, rx) = oneshot::channel();
        let _ = self.tx.send(Job {
            bytes,
            kind,
            sync,
            reply: Some(reply),
        });
        rx
    }

    /// Records a request's events before it is forwarded (written, not flushed: it
    /// survives the gateway's crash, and proves the spool writable).
    pub async fn intent(&self, key: &str, org: &str, events: &[Value]) -> Result<(), SpoolError> {
        let rec = Record::Intent {
            k: key.to_owned(),
            org: org.to_owned(),
            ev: events.to_vec(),
        };
        let kind = Kind::Intent {
            key: key.to_owned(),
            events: events.len() as u64,
        };
        self.send(line(&rec), kind, false)
            .await
            .unwrap_or(Err(SpoolError::Closed))
    }

    /// Records the outcomes of a request and flushes them to disk.
    pub async fn complete(&self, key: &str, outcomes: &[Outcome]) -> Result<(), SpoolError> {
        let rec = Record::Complete {
            k: key.to_owned(),
            o: outcomes
                .iter()
                .map(|o| (o.name().to_owned(), o.reason().map(str::to_owned)))
                .collect(),
        };
        self.send(line(&rec), Kind::Complete, true)
            .await
            .unwrap_or(Err(SpoolError::Closed))
    }

    /// Records that these requests' events are in the log.
    pub fn ack(&self, keys: Vec<String>) {
        let rec = Record::Ack { k: keys.clone() };
        let _ = self.tx.send(Job {
            bytes: line(&rec),
            kind: Kind::Ack(keys),
            sync: false,
            reply: None,
        });
    }

    /// Events spooled and not yet in the log.
    pub fn depth(&self) -> u64 {
        self.depth.load(Ordering::Relaxed)
    }

    /// Waits until every job sent so far has been written.
    pub async fn flush(&self) -> Result<(), SpoolError> {
        self.send(Vec::new(), Kind::Complete, true)
            .await
            .unwrap_or(Err(SpoolError::Closed))
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
        // Segments with nothing left to append are done with.
        let done: Vec<u64> = self
            .segments
            .iter()
            .filter(|(_, s)| s.open == 0)
            .map(|(n, _)| *n)
            .collect();
        for n in done {
            self.remove(n);
        }
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

    /// The segment to write to, opening a new one when there is none or it is full.
    fn file(&mut self) -> std::io::Result<(u64, &mut File)> {
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
            self.current = Some((n, f));
        }
        match &mut self.current {
            Some((n, f)) => Ok((*n, f)),
            None => Err(std::io::Error::other("no segment")),
        }
    }

    fn close_current(&mut self) {
        if let Some((n, _)) = self.current.take()
            && self.segments.get(&n).is_some_and(|s| s.open == 0)
        {
            self.remove(n);
        }
    }

    fn run(mut self, rx: mpsc::Receiver<Job>) {
        while let Ok(first) = rx.recv() {
            let mut jobs = vec![first];
            while jobs.len() < 1024 {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            self.write(jobs);
        }
        if let Some((_, f)) = &self.current {
            let _ = f.sync_data();
        }
    }

    fn write(&mut self, mut jobs: Vec<Job>) {
        // Refuse intents beyond the size limit; everything else is always written.
        let mut total = self.total_bytes();
        let mut refused = Vec::new();
        jobs.retain_mut(|j| {
            if matches!(j.kind, Kind::Intent { .. })
                && total + j.bytes.len() as u64 > self.opts.max_bytes
            {
                refused.push(j.reply.take());
                return false;
            }
            total += j.bytes.len() as u64;
            true
        });
        for r in refused.into_iter().flatten() {
            let _ = r.send(Err(SpoolError::Full(total)));
        }
        let buf: Vec<u8> = jobs.iter().flat_map(|j| j.bytes.iter().copied()).collect();
        let sync = jobs.iter().any(|j| j.sync);
        let result = self.file().and_then(|(n, f)| {
            f.write_all(&buf)?;
            if sync {
                f.sync_data()?;
            }
            Ok(n)
        });
        let result = match result {
            Ok(n) => {
                if let Some(s) = self.segments.get_mut(&n) {
                    s.bytes += buf.len() as u64;
                }
                Ok(n)
            }
            Err(e) => {
                // What was written of this batch may end in a torn line: start afresh.
                self.close_current();
                Err(SpoolError::Io(e.to_string()))
            }
        };
        for j in jobs {
            match (&result, j.kind) {
                (Ok(n), Kind::Intent { key, events }) => {
                    if let Some(s) = self.segments.get_mut(n) {
                        s.open += 1;
                    }
                    self.intents.insert(key, (*n, events));
                    self.depth.fetch_add(events, Ordering::Relaxed);
                }
                // An ack that could not be written only means a harmless re-append
                // after a restart; the segment bookkeeping goes on.
                (_, Kind::Ack(keys)) => {
                    for k in keys {
                        self.acked(&k);
                    }
                }
                _ => {}
            }
            if let Some(r) = j.reply {
                let _ = r.send(result.clone().map(|_| ()));
            }
        }
    }

    fn acked(&mut self, key: &str) {
        let Some((seg, events)) = self.intents.remove(key) else {
            return;
        };
        self.depth.fetch_sub(events, Ordering::Relaxed);
        let current = self.current.as_ref().map(|(n, _)| *n);
        let Some(s) = self.segments.get_mut(&seg) else {
            return;
        };
        s.open = s.open.saturating_sub(1);
        if s.open == 0 && Some(seg) != current {
            self.remove(seg);
        }
    }
}

#[cfg(test)]
mod tests;
