//! Streams an org's events from the store into a file. A reader task pages through the
//! store in seq order while a blocking thread encodes the previous page, so reading and
//! encoding overlap; at most `QUEUED_PAGES` pages are in flight, so memory stays flat
//! at any export size.

use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use auditrail_core::export::{CsvEncoder, Layout};
use auditrail_core::query::Filter;
use auditrail_store::{Order, PageRequest, Store, StoreError, StoredEvent};

use auditrail_core::ocsf::Mapper;

use crate::columnar::ParquetEncoder;
use crate::ocsf::OcsfParquetEncoder;
use crate::request::Format;
use crate::sink::{Sink, Written};

const PAGE_EVENTS: usize = 2048;
const QUEUED_PAGES: usize = 2;

/// What to write.
#[derive(Debug, Clone)]
pub struct Plan {
    pub org: String,
    pub filter: Filter,
    /// Only events with `seq <= upto_seq`: the tree size the export is cut at.
    pub upto_seq: u64,
    pub format: Format,
    pub layout: Layout,
    pub gzip: bool,
    /// Maps events to OCSF records (the org's catalog's activities), for the OCSF formats.
    pub ocsf: Mapper,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
    /// The rows' seqs as inclusive ranges, ascending: what the export's proof covers.
    /// One range for an unfiltered export, whatever its length, so memory stays flat.
    pub seqs: Vec<(u64, u64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing the export file failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the export task stopped: {0}")]
    Task(String),
}

enum Encoder {
    Csv(Box<CsvEncoder<Sink>>),
    Ndjson(Box<Sink>),
    Parquet(Box<ParquetEncoder<Sink>>),
    Ocsf(Box<Sink>, Box<Mapper>),
    OcsfParquet(Box<OcsfParquetEncoder<Sink>>),
}

impl Encoder {
    fn new(plan: &Plan, file: File) -> std::io::Result<Self> {
        let sink = Sink::new(file, plan.gzip);
        Ok(match plan.format {
            Format::Csv => Encoder::Csv(Box::new(CsvEncoder::new(sink, plan.layout)?)),
            Format::Ndjson => Encoder::Ndjson(Box::new(sink)),
            Format::Parquet => Encoder::Parquet(Box::new(ParquetEncoder::new(sink)?)),
            Format::Ocsf => Encoder::Ocsf(Box::new(sink), Box::new(plan.ocsf.clone())),
            Format::OcsfParquet => {
                Encoder::OcsfParquet(Box::new(OcsfParquetEncoder::new(sink, plan.ocsf.clone())?))
            }
        })
    }

    fn write(&mut self, e: &StoredEvent) -> std::io::Result<()> {
        match self {
            Encoder::Csv(c) => c.write(&e.body, &e.leaf),
            Encoder::Ndjson(s) => ndjson(s.as_mut(), &e.body, &e.leaf),
            Encoder::Parquet(p) => p.write(&e.body, &e.leaf),
            Encoder::Ocsf(s, m) => crate::ocsf::line(s.as_mut(), m, &e.body),
            Encoder::OcsfParquet(p) => p.write(&e.body),
        }
    }

    fn finish(self) -> std::io::Result<Written> {
        match self {
            Encoder::Csv(c) => c.finish()?.finish(),
            Encoder::Ndjson(s) => s.finish(),
            Encoder::Parquet(p) => p.finish()?.finish(),
            Encoder::Ocsf(s, _) => s.finish(),
            Encoder::OcsfParquet(p) => p.finish()?.finish(),
        }
    }
}

/// The stored event exactly as hashed, plus `leaf_hash`, without building a new string.
pub(crate) fn ndjson(out: &mut impl Write, body: &str, leaf: &[u8; 32]) -> std::io::Result<()> {
    let open = body.strip_suffix('}').unwrap_or(body);
    let mut tail = [0u8; 96];
    let prefix = b",\"leaf_hash\":\"";
    tail[..prefix.len()].copy_from_slice(prefix);
    let hex_at = prefix.len();
    hex::encode_to_slice(leaf, &mut tail[hex_at..hex_at + 64]).map_err(std::io::Error::other)?;
    tail[hex_at + 64..hex_at + 67].copy_from_slice(b"\"}\n");
    out.write_all(open.as_bytes())?;
    out.write_all(&tail[..hex_at + 67])
}

/// Writes every event of `plan` to `file` and fsyncs it. `rows` counts rows written so
/// far, for progress reports.
pub async fn write_file(
    store: Arc<dyn Store>,
    plan: Plan,
    file: File,
    rows: Arc<AtomicU64>,
) -> Result<Summary, ExportError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<StoredEvent>>(QUEUED_PAGES);
    let reader_plan = plan.clone();
    let reader = tokio::spawn(async move {
        let p = reader_plan;
        let mut after = None;
        loop {
            let page = store
                .search(
                    &p.org,
                    &p.filter,
                    PageRequest {
                        after_seq: after,
                        limit: PAGE_EVENTS,
                        order: Order::Asc,
                    },
                )
                .await?;
            let mut events = page.events;
            let past_cut = events.iter().position(|e| e.seq > p.upto_seq);
            if let Some(i) = past_cut {
                events.truncate(i);
            }
            if !events.is_empty() && tx.send(events).await.is_err() {
                return Ok::<_, StoreError>(()); // the writer failed; it reports why
            }
            match page.next_after {
                Some(a) if past_cut.is_none() && a < p.upto_seq => after = Some(a),
                _ => return Ok(()),
            }
        }
    });
    let writer = tokio::task::spawn_blocking(move || {
        let mut enc = Encoder::new(&plan, file)?;
        let mut n = 0u64;
        let mut seqs: Vec<(u64, u64)> = Vec::new();
        while let Some(page) = rx.blocking_recv() {
            for e in &page {
                enc.write(e)?;
                match seqs.last_mut() {
                    Some((_, hi)) if *hi + 1 == e.seq => *hi = e.seq,
                    _ => seqs.push((e.seq, e.seq)),
                }
            }
            n += page.len() as u64;
            rows.store(n, Ordering::Relaxed);
        }
        let w = enc.finish()?;
        Ok::<_, std::io::Error>((n, w, seqs))
    });
    let written = writer.await.map_err(|e| ExportError::Task(e.to_string()))?;
    // A reader error ends the channel early: it must fail the export, never truncate it.
    reader
        .await
        .map_err(|e| ExportError::Task(e.to_string()))??;
    let (rows, w, seqs) = written?;
    Ok(Summary {
        rows,
        bytes: w.bytes,
        sha256: w.sha256,
        seqs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_matches_the_core_line() {
        let body = r#"{"action":"a","seq":1}"#;
        let leaf = [7u8; 32];
        let mut out = Vec::new();
        ndjson(&mut out, body, &leaf).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            auditrail_core::export::ndjson_line(body, &leaf)
        );
    }
}
