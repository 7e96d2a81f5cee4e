//! The single writer: group commit.
//!
//! Every write goes through one thread that owns the write connection. It takes the first
//! waiting job, then everything else already queued (up to a cap), and commits all the
//! appends in one transaction: one fsync for many requests. Callers are answered only
//! after the commit returns, so an acknowledged event is on disk. Per-org state (next
//! seq, Merkle frontier, last `received_at`) and the recent client-id claims live here;
//! a failed commit rolls them back.

use std::collections::HashMap;
use std::time::Instant;

use auditrail_core::PreparedEvent;
use auditrail_core::merkle::{self, Frontier};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

use super::idem::{Claim, Claims, id_key};
use super::postings::Pending;
use super::rid::{MAX_SEQ, rid, seq_of};
use super::schema::{self, Journal};
use super::wal_checkpointer::WalCheckpointer;
use super::{STORED_LEVEL, read_nodes};
use crate::error::Context;
use crate::terms::{event_terms, term_key};
use crate::{Accepted, CommitObserver, CommitStats, Outcome, Result, StoreError};

/// Events gathered into one transaction at most.
const MAX_GROUP_EVENTS: usize = 50_000;

/// Called once the outcome of an exec's transaction is known (`Some` if commit failed).
pub(crate) type Finisher = Box<dyn FnOnce(Option<StoreError>) + Send>;
/// A write: runs inside a transaction, says whether to commit, and gets its finisher
/// called only after the commit, so nobody hears of a write before it is durable.
pub(crate) type ExecFn = Box<dyn FnOnce(&Transaction<'_>) -> (bool, Finisher) + Send>;

/// What the writer looks an event up and indexes it by, hashed on the request's side
/// (the org's number is known there) so that the writer only runs statements.
pub(crate) struct Keys {
    /// The client id's claim key.
    id: Option<(i64, i64)>,
    /// Index terms; the first `n` are set.
    terms: [i64; 5],
    n: usize,
}

impl Keys {
    pub(crate) fn of(org_num: i64, ev: &PreparedEvent) -> Self {
        let mut k = Self {
            id: ev.client_id.as_deref().map(|id| id_key(org_num, id)),
            terms: [0; 5],
            n: 0,
        };
        for (field, value) in event_terms(&ev.terms) {
            k.terms[k.n] = term_key(org_num, field, value);
            k.n += 1;
        }
        k
    }

    fn terms(&self) -> &[i64] {
        &self.terms[..self.n]
    }
}

/// Events for one org from one request, with where to send the outcome. The permit
/// holds the events' place in the bounded queue until they are committed.
pub(crate) struct Append {
    pub org_num: i64,
    pub events: Vec<PreparedEvent>,
    /// `Keys::of` each event, in the same order.
    pub keys: Vec<Keys>,
    /// A batch queued before this one that must be stored for this one to be (see
    /// `Store::enqueue_after`): its fate is known here, or it is in this same group.
    pub after: Option<Outcome>,
    /// This batch's fate, set before the writer takes the next job.
    pub outcome: Option<Outcome>,
    /// The outcome, and the events themselves handed back to be freed by the request
    /// that made them (see `Reply`).
    pub reply: oneshot::Sender<Reply>,
    pub _permit: OwnedSemaphorePermit,
}

/// A commit's outcome with the events it took. Freeing tens of thousands of small
/// allocations a group is time the writer would not be writing; freed by the request
/// task that allocated them, they are also freed on the thread (and into the allocator
/// pages) they came from, which a thread of their own could not do.
pub(crate) type Reply = (Result<Vec<Accepted>>, Vec<PreparedEvent>);

pub(crate) enum Job {
    Append(Append),
    /// Any other write, in a transaction of its own; it replies itself.
    Exec(ExecFn),
    /// Merges the recent client-id claims early (see `Claims::merge_early`); replies
    /// whether it merged.
    MergeClaims(tokio::sync::oneshot::Sender<Result<bool>>),
}

#[derive(Clone)]
struct OrgState {
    next_seq: u64,
    frontier: Frontier,
    last_received_ms: i64,
}

pub(crate) struct Writer {
    conn: Connection,
    orgs: HashMap<i64, OrgState>,
    claims: Claims,
    postings: Pending,
    observer: Option<CommitObserver>,
    /// WAL checkpoints; none in rollback mode.
    checkpointer: Option<WalCheckpointer>,
    journal: Journal,
}

impl Writer {
    pub(crate) fn new(
        conn: Connection,
        checkpointer: Option<WalCheckpointer>,
        journal: Journal,
        observer: Option<CommitObserver>,
    ) -> Self {
        let claims = match conn.path() {
            Some(db) if !db.is_empty() => Claims::new().with_filter(db.into()),
            _ => Claims::new(),
        };
        Self {
            conn,
            orgs: HashMap::new(),
            claims,
            postings: Pending::new(),
            observer,
            checkpointer,
            journal,
        }
    }

    /// Tells the checkpointer what was committed; checkpoints here if the WAL is too big.
    fn committed(&mut self, bytes: u64) {
        let Some(checkpointer) = &self.checkpointer else {
            return;
        };
        if checkpointer.committed(bytes) {
            tracing::debug!("writer: WAL past its cap, checkpointing on the writer");
            if let Err(e) = checkpointer.checkpoint_here(&self.conn) {
                tracing::warn!(error = %e, "writer: checkpoint failed");
            }
        }
    }

    pub(crate) fn run(mut self, mut rx: mpsc::UnboundedReceiver<Job>) {
        while let Some(first) = rx.blocking_recv() {
            let mut appends = Vec::new();
            let mut pending = 0usize;
            let mut next = Some(first);
            while let Some(job) = next.take() {
                match job {
                    Job::Exec(f) => {
                        // Keep order: commit what was gathered before running this write.
                        self.commit_appends(std::mem::take(&mut appends));
                        pending = 0;
                        self.exec(f);
                        self.committed(0);
                    }
                    Job::Append(job) => {
                        pending += job.events.len();
                        appends.push(job);
                    }
                    Job::MergeClaims(reply) => {
                        self.commit_appends(std::mem::take(&mut appends));
                        pending = 0;
                        let _ = reply.send(self.merge_claims_early());
                        self.committed(0);
                    }
                }
                if pending < MAX_GROUP_EVENTS {
                    next = rx.try_recv().ok();
                }
            }
            self.commit_appends(appends);
        }
        if self.journal == Journal::Rollback {
            // Leave the file as a server opens it. If a reader still has it open, the
            // next open switches it instead.
            let _ = schema::set_journal(&self.conn, Journal::Wal);
        }
        tracing::debug!("writer: queue closed, exiting");
    }

    fn merge_claims_early(&mut self) -> Result<bool> {
        let tx = self.conn.transaction().op("begin claims merge")?;
        let merged = self
            .claims
            .merge_early(&tx)
            .and_then(|m| tx.commit().op("commit claims merge").map(|()| m));
        if merged.is_err() {
            // Memory may hold what was rolled back.
            self.claims.invalidate();
        }
        merged
    }

    fn exec(&mut self, f: ExecFn) {
        match self.conn.transaction() {
            Ok(tx) => {
                let (commit, finish) = f(&tx);
                if commit {
                    finish(tx.commit().err().map(|source| StoreError::Sqlite {
                        operation: "commit",
                        source,
                    }));
                } else {
                    drop(tx);
                    finish(None);
                }
            }
            // Dropping `f` drops its reply channel: the caller hears the writer failed.
            Err(e) => tracing::error!(error = %e, "writer: cannot begin transaction"),
        }
    }

    fn commit_appends(&mut self, mut jobs: Vec<Append>) {
        if jobs.is_empty() {
            return;
        }
        let started = Instant::now();
        let mut undo: HashMap<i64, OrgState> = HashMap::new();
        let result = self.write_group(&mut jobs, &mut undo);
        let events: usize = jobs.iter().map(|j| j.events.len()).sum();
        match result {
            Ok(outcomes) => {
                // Bodies plus their share of index rows (the checkpointer adds the pages
                // every commit writes).
                let bytes: usize = jobs
                    .iter()
                    .flat_map(|j| &j.events)
                    .map(|e| e.head.len() + e.mid.len() + 160)
                    .sum();
                self.committed(bytes as u64);
                for (job, out) in jobs.into_iter().zip(outcomes) {
                    if let Some(o) = &job.outcome {
                        o.set(out.is_ok());
                    }
                    let _ = job.reply.send((out, job.events));
                }
                if let Some(obs) = &self.observer {
                    obs(CommitStats {
                        events,
                        seconds: started.elapsed().as_secs_f64(),
                    });
                }
            }
            Err(e) => {
                tracing::error!(error = %e, events, "writer: group commit failed; nothing from it was stored");
                for (org, state) in undo {
                    self.orgs.insert(org, state);
                }
                self.claims.invalidate();
                self.postings.invalidate();
                let msg = e.to_string();
                for job in jobs {
                    if let Some(o) = &job.outcome {
                        o.set(false);
                    }
                    let _ = job
                        .reply
                        .send((Err(StoreError::Unavailable(msg.clone())), job.events));
                }
            }
        }
    }

    /// Writes the jobs' events in one transaction. Each event's id moves into its answer
    /// (the event itself is only freed afterwards).
    fn write_group(
        &mut self,
        jobs: &mut [Append],
        undo: &mut HashMap<i64, OrgState>,
    ) -> Result<Vec<Result<Vec<Accepted>>>> {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let tx = self.conn.transaction().op("begin append")?;
        // Index entries of this group, (term, rid) (see `postings.rs`).
        let mut postings: Vec<(i64, i64)> = Vec::new();
        let mut outcomes = Vec::with_capacity(jobs.len());
        let mut inserted = 0usize;
        // Each event's stored text, written into one buffer that SQLite copies from.
        let mut body = String::with_capacity(1024);
        {
            let mut ins_event = tx
                .prepare_cached("INSERT INTO events (rid, occurred_us, received_ms, leaf, body) VALUES (?1, ?2, ?3, ?4, ?5)")
                .op("prepare event insert")?;
            let mut ins_node = tx
                .prepare_cached(
                    "INSERT INTO nodes (org_num, level, idx, hash) VALUES (?1, ?2, ?3, ?4)",
                )
                .op("prepare node insert")?;
            for Append {
                org_num,
                events,
                keys,
                after,
                outcome,
                ..
            } in jobs
            {
                // A batch behind one that was not stored is not stored either. One in
                // this same group (fate not known yet) shares this commit's fate.
                if after.as_ref().is_some_and(|a| a.stored() == Some(false)) {
                    if let Some(o) = outcome {
                        o.set(false);
                    }
                    outcomes.push(Err(StoreError::out_of_order()));
                    continue;
                }
                let org_num = *org_num;
                let state = match self.orgs.entry(org_num) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(load_org_state(&tx, org_num)?)
                    }
                };
                undo.entry(org_num).or_insert_with(|| state.clone());
                let received_ms = now_ms.max(state.last_received_ms);
                state.last_received_ms = received_ms;
                let received_at = auditrail_core::time::format_millis(received_ms);
                let mut out = Vec::with_capacity(events.len());
                for (ev, keys) in events.iter_mut().zip(keys.iter()) {
                    let seq = state.next_seq;
                    if seq > MAX_SEQ {
                        return Err(StoreError::Conflict("org log is full".into()));
                    }
                    let r = rid(org_num, seq);
                    if let (Some(cid), Some(key)) = (ev.client_id.as_deref(), keys.id) {
                        // Earlier events of this same transaction are seen too.
                        if let Claim::Seen(earlier) =
                            self.claims.claim_keyed(&tx, key, org_num, cid, r)?
                        {
                            out.push(Accepted {
                                id: cid.to_owned(),
                                seq: seq_of(earlier),
                                duplicate: true,
                            });
                            continue;
                        }
                    }
                    let leaf = ev.finish_into(&received_at, seq, &mut body);
                    ins_event
                        .execute(params![r, ev.occurred_us, received_ms, &leaf[..], &body])
                        .op("insert event")?;
                    postings.extend(keys.terms().iter().map(|&term| (term, r)));
                    let mut node_err = None;
                    state.frontier.push(leaf, |id, h| {
                        // Levels below STORED_LEVEL are recomputed from leaves on read.
                        if node_err.is_none() && id.level >= STORED_LEVEL {
                            node_err = ins_node
                                .execute(params![org_num, id.level, id.index as i64, &h[..]])
                                .err();
                        }
                    });
                    if let Some(e) = node_err {
                        return Err(StoreError::Sqlite {
                            operation: "insert tree node",
                            source: e,
                        });
                    }
                    state.next_seq += 1;
                    inserted += 1;
                    out.push(Accepted {
                        id: std::mem::take(&mut ev.id),
                        seq,
                        duplicate: false,
                    });
                }
                outcomes.push(Ok(out));
            }
        }
        self.postings.add_group(&tx, postings, inserted)?;
        self.claims.end_group(&tx)?;
        tx.commit().op("commit append")?;
        Ok(outcomes)
    }
}

fn load_org_state(tx: &Transaction<'_>, org_num: i64) -> Result<OrgState> {
    let last: Option<(i64, i64)> = tx
        .query_row(
            "SELECT rid, received_ms FROM events WHERE rid BETWEEN ?1 AND ?2 ORDER BY rid DESC LIMIT 1",
            params![rid(org_num, 0), rid(org_num, MAX_SEQ)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .op("read log head")?;
    let (size, last_received_ms) = last.map(|(r, ms)| (seq_of(r), ms)).unwrap_or((0, 0));
    let ids = merkle::frontier_ids(size);
    let hashes = read_nodes(tx, org_num, &ids)?;
    let frontier = Frontier::from_parts(size, hashes).ok_or_else(|| {
        StoreError::Corrupt(format!("tree frontier of org {org_num} is incomplete"))
    })?;
    Ok(OrgState {
        next_seq: size + 1,
        frontier,
        last_received_ms,
    })
}
