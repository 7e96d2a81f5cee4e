//! `auditrail ingest`: bulk-load an NDJSON file, in file order.
//!
//! Locally it is a pipeline: batches of lines are parsed and canonicalized on worker
//! threads, and each batch is queued to the store's writer while the one before it
//! commits ([`Store::enqueue`](auditrail_store::Store::enqueue)), so both cores stay busy
//! and the writer never waits for this loop. Batches are queued strictly in file order, so
//! seqs follow the file. A bad line stops the queueing: the batches queued before it still
//! commit, and are counted, before the error is reported.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use auditrail_server::error::ApiError;
use auditrail_service::ingest::{prepare_batch, prepare_texts};

use super::Target;
use crate::config::{Config, LimitFlags, Overrides};
use crate::local::local_app_for;
use crate::remote::Client;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The org to load into
    #[arg(long)]
    org: String,
    /// One event per line (JSON), as `POST /v1/events` takes them
    file: PathBuf,
    /// Events per transaction (local; default 25,000) or request (with --url, at most
    /// 1000; default 1000)
    #[arg(long)]
    batch: Option<usize>,
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    limits: LimitFlags,
}

/// A batch of the file's lines, read into one buffer: a bulk load reads hundreds of
/// megabytes, and a string per line would cost an allocation (and fresh, zeroed pages)
/// for each.
struct Batch {
    first_line: usize,
    /// File line number of each line (blank lines are skipped).
    numbers: Vec<usize>,
    /// The lines back to back; line ends (`\n`, `\r\n`) are not kept.
    buf: Vec<u8>,
    /// Where each line ends in `buf`.
    ends: Vec<usize>,
    bytes: u64,
}

/// Batch buffers handed back once their lines are prepared, for the next batches.
#[derive(Clone, Default)]
struct Buffers(std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

impl Buffers {
    fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .ok()
            .and_then(|mut v| v.pop())
            .unwrap_or_default()
    }

    fn give(&self, mut buf: Vec<u8>) {
        buf.clear();
        if let Ok(mut v) = self.0.lock()
            && v.len() < 8
        {
            v.push(buf);
        }
    }
}

impl Batch {
    /// The batch's lines, naming the file line of the first that is not UTF-8.
    fn texts(&self) -> anyhow::Result<Vec<&str>> {
        let mut start = 0;
        self.ends
            .iter()
            .zip(&self.numbers)
            .map(|(&end, n)| {
                let line = std::str::from_utf8(&self.buf[start..end])
                    .map_err(|e| anyhow::anyhow!("line {n}: not valid UTF-8: {e}"));
                start = end;
                line
            })
            .collect()
    }

    /// `{"events": [...]}` of the batch's lines as they are, each checked to be one JSON
    /// value (so that the body holds exactly one event a line); names the file line of
    /// the first that is not.
    fn request_body(&self) -> anyhow::Result<bytes::Bytes> {
        let texts = self.texts()?;
        let mut body = Vec::with_capacity(self.buf.len() + texts.len() + 16);
        body.extend_from_slice(b"{\"events\":[");
        for (i, (l, n)) in texts.iter().zip(&self.numbers).enumerate() {
            serde_json::from_str::<serde::de::IgnoredAny>(l)
                .map_err(|e| anyhow::anyhow!("line {n}: invalid JSON: {e}"))?;
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(l.as_bytes());
        }
        body.extend_from_slice(b"]}");
        Ok(body.into())
    }

    /// `texts` (the batch's lines, from [`Batch::texts`]) as JSON.
    fn values_of(&self, texts: &[&str]) -> anyhow::Result<Vec<Value>> {
        texts
            .iter()
            .zip(&self.numbers)
            .map(|(l, n)| {
                serde_json::from_str(l).map_err(|e| anyhow::anyhow!("line {n}: invalid JSON: {e}"))
            })
            .collect()
    }
}

/// Whether a line holds only whitespace (it is skipped, as an empty line is).
fn blank(line: &[u8]) -> bool {
    match line.iter().find(|b| !b.is_ascii_whitespace()) {
        None => true,
        Some(b) if b.is_ascii() => false,
        // Unicode whitespace is skipped too; a line that is not UTF-8 is reported later.
        Some(_) => std::str::from_utf8(line).is_ok_and(|s| s.trim().is_empty()),
    }
}

fn batches(
    file: &PathBuf,
    size: usize,
    buffers: Buffers,
) -> anyhow::Result<impl Iterator<Item = anyhow::Result<Batch>>> {
    let f = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, f);
    let mut n = 0usize;
    Ok(std::iter::from_fn(move || {
        let mut b = Batch {
            first_line: 0,
            numbers: Vec::with_capacity(size),
            buf: buffers.take(),
            ends: Vec::with_capacity(size),
            bytes: 0,
        };
        while b.ends.len() < size {
            let start = b.buf.len();
            let read = match reader.read_until(b'\n', &mut b.buf) {
                Ok(0) => break,
                Ok(read) => read,
                Err(e) => return Some(Err(anyhow::anyhow!("line {}: cannot read: {e}", n + 1))),
            };
            n += 1;
            b.bytes += read as u64;
            let mut end = b.buf.len();
            if b.buf[start..end].ends_with(b"\n") {
                end -= 1;
                if b.buf[start..end].ends_with(b"\r") {
                    end -= 1;
                }
            }
            if blank(&b.buf[start..end]) {
                b.buf.truncate(start);
                continue;
            }
            b.buf.truncate(end);
            if b.ends.is_empty() {
                b.first_line = n;
            }
            b.numbers.push(n);
            b.ends.push(end);
        }
        (!b.ends.is_empty()).then_some(Ok(b))
    }))
}

fn progress(total: u64) -> ProgressBar {
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let o = &Overrides::from_flags(&args.target.store, Some(&args.limits), None);
    let total = std::fs::metadata(&args.file)
        .with_context(|| format!("cannot open {}", args.file.display()))?
        .len();
    let started = Instant::now();
    let (stored, dups, first, last) = match &args.target.url {
        Some(url) => remote(url, args.target.token.as_deref(), &args, total).await?,
        None => local(o, &args, total).await?,
    };
    let secs = started.elapsed().as_secs_f64();
    let range = match (first, last) {
        (Some(a), Some(b)) => format!("seq {a}..{b}"),
        _ => "no new seqs".into(),
    };
    eprintln!(
        "ingested {stored} events into org {} ({range}; {dups} already present) in {secs:.2}s: {:.0} events/s",
        args.org,
        stored as f64 / secs.max(1e-9)
    );
    Ok(())
}

type Tally = (u64, u64, Option<u64>, Option<u64>);

fn tally(t: &mut Tally, accepted: &[auditrail_store::Accepted]) {
    for a in accepted {
        if a.duplicate {
            t.1 += 1;
        } else {
            t.0 += 1;
            t.2 = t.2.or(Some(a.seq));
            t.3 = Some(a.seq);
        }
    }
}

async fn local(o: &Overrides, args: &Args, total: u64) -> anyhow::Result<Tally> {
    let cfg = Config::resolve(o, None)?;
    // The lock file makes this the data dir's only user: commits go through a rollback
    // journal, which writes the appended pages once rather than twice.
    let app = local_app_for(&cfg, true).await?;
    if app.store.get_org(&args.org).await?.is_none() {
        bail!(
            "org `{}` does not exist; create it with `auditrail orgs create {}`",
            args.org,
            args.org
        );
    }
    let policy = app
        .policies
        .get(&app, &args.org)
        .await
        .map_err(|e| super::admin::api_err(ApiError::from(e)))?;
    // Larger transactions write fewer postings rows and rewrite the tables' last pages
    // less often; past ~25,000 events the gain is small and the memory is not.
    let size = args.batch.unwrap_or(25_000).clamp(1, 100_000);
    let pb = progress(total);
    let mut t: Tally = (0, 0, None, None);
    let mut in_flight = VecDeque::new();
    // Batches queued in the store's writer, oldest first: the next one is queued while
    // the previous commits, so the writer never waits for this loop between commits.
    let mut committing: VecDeque<(auditrail_store::Appending, u64)> = VecDeque::new();
    let buffers = Buffers::default();
    let mut source = batches(&args.file, size, buffers.clone())?;
    let mut result = async {
        loop {
            // Keep a few batches being prepared ahead of the writer.
            while in_flight.len() < 3 {
                let Some(b) = source.next() else { break };
                let b = b?;
                let (app, org, policy) = (app.clone(), args.org.clone(), policy.clone());
                let buffers = buffers.clone();
                in_flight.push_back(tokio::task::spawn_blocking(move || {
                    let prepared = prepare(&app, &org, &policy, &b);
                    buffers.give(b.buf);
                    prepared
                }));
            }
            let Some(next) = in_flight.pop_front() else {
                break;
            };
            let (events, bytes) = next.await.context("prepare task failed")??;
            // Queued one after another, so the writer commits them in file order.
            let appending = app.store.enqueue(&args.org, events, true).await?;
            committing.push_back((appending, bytes));
            if committing.len() > 1
                && let Some((done, bytes)) = committing.pop_front()
            {
                tally(&mut t, &done.await?);
                pb.inc(bytes);
                pb.set_message(format!("{} events", t.0));
            }
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    // Whatever stopped the loop, the batches already queued commit (or fail) on their own:
    // wait for them so the count below is what the log holds.
    for (done, bytes) in committing.drain(..) {
        match done.await {
            Ok(accepted) => {
                tally(&mut t, &accepted);
                pb.inc(bytes);
            }
            Err(e) => {
                if result.is_ok() {
                    result = Err(e.into());
                }
            }
        }
    }
    pb.finish_and_clear();
    // Everything appended so far is committed; report it even when a line was bad.
    app.store.close();
    if let Err(e) = result {
        bail!(
            "{e:#}\n{} events were stored (rerunning is safe for events with an `id`: they are not stored twice)",
            t.0
        );
    }
    Ok(t)
}

fn prepare(
    app: &auditrail_server::App,
    org: &str,
    policy: &auditrail_service::policy::OrgPolicy,
    b: &Batch,
) -> anyhow::Result<(Vec<auditrail_core::PreparedEvent>, u64)> {
    let texts = b.texts()?;
    if let Some(prepared) = prepare_texts(app, org, Some(policy), &texts) {
        return Ok((prepared, b.bytes));
    }
    let values = b.values_of(&texts)?;
    prepare_batch(app, org, Some(policy), &values, true)
        .map(|p| (p, b.bytes))
        .map_err(|e| {
            let e = ApiError::from(e);
            let (line, field, reason) =
                refused_at(e.details.first().unwrap_or(&Value::Null), &b.numbers);
            let line = line.unwrap_or(b.first_line);
            let reason = reason.unwrap_or(&e.message);
            anyhow::anyhow!("line {line}: {}: {reason}", field.unwrap_or(""))
        })
}

/// What the first detail of a refusal names: the file line of the event at its `index`
/// (`lines` holds each event's line), its field and its reason.
fn refused_at<'a>(
    detail: &'a Value,
    lines: &[usize],
) -> (Option<usize>, Option<&'a str>, Option<&'a str>) {
    let line = detail["index"]
        .as_u64()
        .and_then(|i| lines.get(i as usize).copied());
    (line, detail["field"].as_str(), detail["reason"].as_str())
}

/// Against a running server: one request in flight at a time, so that seqs follow the
/// file, while the next batch is read and its body written. Each line goes into the body
/// as it is in the file (checked locally to be one JSON value, so a bad line is named
/// before anything of its batch is sent); the server checks the events.
async fn remote(url: &str, token: Option<&str>, args: &Args, total: u64) -> anyhow::Result<Tally> {
    let client = std::sync::Arc::new(Client::new(url, token)?);
    let size = args.batch.unwrap_or(1000).clamp(1, 1000);
    let pb = progress(total);
    let mut t: Tally = (0, 0, None, None);
    let buffers = Buffers::default();
    let source = batches(&args.file, size, buffers.clone())?;
    let mut in_flight: Option<Sent> = None;
    let mut result = async {
        for b in source {
            let mut b = b?;
            let body = b.request_body()?;
            let sent_bytes = b.bytes;
            let lines = std::mem::take(&mut b.numbers);
            buffers.give(b.buf);
            // The batch before this one is answered before this one is sent.
            if let Some(prev) = in_flight.take() {
                prev.settle(&mut t, &pb).await?;
            }
            let c = client.clone();
            in_flight = Some(Sent {
                request: tokio::spawn(async move { c.post_json_bytes("/v1/events", body).await }),
                lines,
                bytes: sent_bytes,
            });
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    // A batch already sent is stored (or refused) whatever stopped the loop: wait for its
    // answer so that the count below is what the log holds.
    if let Some(prev) = in_flight.take() {
        let settled = prev.settle(&mut t, &pb).await;
        if result.is_ok() {
            result = settled;
        }
    }
    pb.finish_and_clear();
    if let Err(e) = result {
        bail!(
            "{e:#}\n{} events were stored (rerunning is safe for events with an `id`: they are not stored twice)",
            t.0
        );
    }
    Ok(t)
}

/// A batch posted to the server, with the file lines of its events.
struct Sent {
    request: tokio::task::JoinHandle<anyhow::Result<Result<Value, (reqwest::StatusCode, Value)>>>,
    lines: Vec<usize>,
    bytes: u64,
}

impl Sent {
    /// Waits for the answer and counts it (and the batch's bytes on the progress bar).
    async fn settle(self, t: &mut Tally, pb: &ProgressBar) -> anyhow::Result<()> {
        let bytes = self.bytes;
        tally(t, &self.answer().await?);
        pb.inc(bytes);
        pb.set_message(format!("{} events", t.0));
        Ok(())
    }

    /// The server's answer: the batch's outcomes, or its refusal naming the file line.
    async fn answer(self) -> anyhow::Result<Vec<auditrail_store::Accepted>> {
        let first = self.lines.first().copied().unwrap_or(0);
        let answer = self
            .request
            .await
            .context("request task failed")?
            .with_context(|| format!("batch starting at line {first}"))?;
        let resp = match answer {
            Ok(resp) => resp,
            Err((status, v)) => {
                let message = v["error"]["message"].as_str().unwrap_or("request failed");
                match refused_at(&v["error"]["details"][0], &self.lines) {
                    (Some(line), Some(field), Some(reason)) => {
                        bail!("line {line}: {field}: {reason}")
                    }
                    _ => bail!(
                        "batch starting at line {first}: the server answered {status}: {message}"
                    ),
                }
            }
        };
        let accepted = resp["accepted"]
            .as_array()
            .context("the server's answer has no `accepted` list")?;
        Ok(accepted
            .iter()
            .map(|x| auditrail_store::Accepted {
                id: x["id"].as_str().unwrap_or_default().to_owned(),
                seq: x["seq"].as_u64().unwrap_or(0),
                duplicate: x["duplicate"].as_bool().unwrap_or(false),
            })
            .collect())
    }
}
