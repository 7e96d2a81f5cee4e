//! Group commit on PostgreSQL, one writer task per org per node.
//!
//! An org's task takes the first waiting append and everything else already queued (up
//! to a cap) and writes them in one transaction: one commit, one WAL flush for many
//! requests. The transaction first locks the org's row and reads its head from it: tree
//! size, frontier, last `received_at`. Holding those row locks until commit is what makes several nodes
//! produce one gapless seq order and one tree per org. Nothing is cached between
//! groups, so a node never works from a stale head, and a failed transaction leaves
//! nothing behind. Callers hear back only after the commit.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auditrail_core::PreparedEvent;
use auditrail_core::merkle::Frontier;
use deadpool_postgres::Pool;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;

use super::{STORED_LEVEL, frontier_of, pooled, schema};
use crate::error::Pg;
use crate::{Accepted, CommitObserver, CommitStats, Result, StoreError};

/// Events gathered into one transaction at most.
const MAX_GROUP_EVENTS: usize = 20_000;
const DAY_MS: i64 = 86_400_000;

pub(crate) struct Append {
    pub org_num: i64,
    pub events: Vec<PreparedEvent>,
    pub reply: oneshot::Sender<Result<Vec<Accepted>>>,
    pub _permit: OwnedSemaphorePermit,
}

/// Routes appends to one writer task per org, started on first use and ended after a
/// while idle. Different orgs commit in parallel (each on its own connection); one org's
/// appends are gathered into group commits by its task.
pub(crate) struct Writers {
    pool: Pool,
    observer: Option<CommitObserver>,
    partitions: Arc<Mutex<HashSet<String>>>,
    orgs: Mutex<Option<HashMap<i64, mpsc::UnboundedSender<Append>>>>,
}

impl Writers {
    pub(crate) fn new(pool: Pool, observer: Option<CommitObserver>) -> Self {
        Self {
            pool,
            observer,
            partitions: Arc::default(),
            orgs: Mutex::new(Some(HashMap::new())),
        }
    }

    pub(crate) fn send(&self, mut job: Append) -> Result<()> {
        let mut guard = self
            .orgs
            .lock()
            .map_err(|_| StoreError::Unavailable("writer poisoned".into()))?;
        let orgs = guard
            .as_mut()
            .ok_or_else(|| StoreError::Unavailable("store is shutting down".into()))?;
        loop {
            if let Some(tx) = orgs.get(&job.org_num) {
                match tx.send(job) {
                    Ok(()) => return Ok(()),
                    // That org's task ended (idle): start another.
                    Err(mpsc::error::SendError(j)) => job = j,
                }
            }
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(run(
                self.pool.clone(),
                rx,
                self.observer.clone(),
                self.partitions.clone(),
            ));
            orgs.insert(job.org_num, tx);
        }
    }

    /// Takes no more appends; each task commits what it holds, then ends.
    pub(crate) fn close(&self) {
        if let Ok(mut g) = self.orgs.lock() {
            g.take();
        }
    }
}

/// How long an org's writer task waits for work before ending.
const IDLE: Duration = Duration::from_secs(60);

async fn run(
    pool: Pool,
    mut rx: mpsc::UnboundedReceiver<Append>,
    observer: Option<CommitObserver>,
    partitions: Arc<Mutex<HashSet<String>>>,
) {
    loop {
        let first = match tokio::time::timeout(IDLE, rx.recv()).await {
            Ok(Some(a)) => a,
            Ok(None) => break,
            Err(_) => {
                // Idle: refuse new work (the router starts a new task), then finish
                // whatever arrived in between.
                rx.close();
                match rx.recv().await {
                    Some(a) => a,
                    None => break,
                }
            }
        };
        let mut group = vec![first];
        let mut pending = group[0].events.len();
        while pending < MAX_GROUP_EVENTS {
            match rx.try_recv() {
                Ok(a) => {
                    pending += a.events.len();
                    group.push(a);
                }
                Err(_) => break,
            }
        }
        let started = Instant::now();
        match write_group(&pool, &group, &partitions).await {
            Ok(outcomes) => {
                for (job, out) in group.into_iter().zip(outcomes) {
                    let _ = job.reply.send(Ok(out));
                }
                if let Some(obs) = &observer {
                    obs(CommitStats {
                        events: pending,
                        seconds: started.elapsed().as_secs_f64(),
                    });
                }
            }
            Err(e) => {
                tracing::error!(error = %e, events = pending, "writer: group commit failed; nothing from it was stored");
                let msg = e.to_string();
                for job in group {
                    let _ = job.reply.send(Err(match &e {
                        StoreError::Conflict(m) => StoreError::Conflict(m.clone()),
                        _ => StoreError::Unavailable(msg.clone()),
                    }));
                }
            }
        }
    }
    tracing::debug!("writer: queue closed, exiting");
}

/// One org's head while the group is being written.
#[derive(Clone)]
struct Head {
    frontier: Frontier,
    received_ms: i64,
}

/// The rows a group inserts, column by column (for `unnest`).
#[derive(Default)]
struct Rows {
    org: Vec<i64>,
    seq: Vec<i64>,
    occurred: Vec<i64>,
    received: Vec<i64>,
    action: Vec<String>,
    actor: Vec<Option<String>>,
    rtype: Vec<Option<String>>,
    rid: Vec<Option<String>>,
    scope: Vec<Option<String>>,
    leaf: Vec<Vec<u8>>,
    body: Vec<String>,
    idem_org: Vec<i64>,
    idem_id: Vec<String>,
    idem_seq: Vec<i64>,
    node_org: Vec<i64>,
    node_level: Vec<i32>,
    node_idx: Vec<i64>,
    node_hash: Vec<Vec<u8>>,
}

async fn write_group(
    pool: &Pool,
    group: &[Append],
    partitions: &Mutex<HashSet<String>>,
) -> Result<Vec<Vec<Accepted>>> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut client = pooled(pool).await?;
    // This month's partition, and next month's a day ahead: another node's clock may
    // run a little ahead, and `received_at` never goes back.
    for at in [now_ms, now_ms + DAY_MS] {
        let (partition, ..) = schema::partition_of(at);
        let known = partitions.lock().is_ok_and(|p| p.contains(&partition));
        if !known {
            schema::ensure_partition(&client, at).await?;
            if let Ok(mut p) = partitions.lock() {
                p.insert(partition);
            }
        }
    }
    let tx = client.transaction().await.pg("begin append")?;
    let mut nums: Vec<i64> = group.iter().map(|a| a.org_num).collect();
    nums.sort_unstable();
    nums.dedup();
    let lock = tx
        .prepare_cached(
            "SELECT num, tree_size, frontier, last_received_ms FROM orgs WHERE num = ANY($1) ORDER BY num FOR UPDATE",
        )
        .await
        .pg("prepare head lock")?;
    let mut heads: HashMap<i64, Head> = HashMap::new();
    for row in tx.query(&lock, &[&nums]).await.pg("lock log heads")? {
        let size: i64 = row.get(1);
        let frontier = frontier_of(size, row.get(2))?;
        heads.insert(
            row.get(0),
            Head {
                frontier,
                received_ms: row.get(3),
            },
        );
    }
    // Optimistically, no client id was seen before: claim them all with the seqs this
    // plan gives. A conflict means a resend; then undo the claim, look the ids up, and
    // plan again with the earlier seqs.
    let locked = heads;
    let mut heads = locked.clone();
    let (mut rows, mut outcomes) = plan(group, &mut heads, HashMap::new(), now_ms)?;
    if !rows.idem_id.is_empty() {
        tx.batch_execute("SAVEPOINT claim").await.pg("savepoint")?;
        // A plain COPY: the unique index refuses a resend, far cheaper than checking
        // each row with ON CONFLICT when resends are rare.
        let resend = match copy_idem(&tx, &rows).await {
            Ok(()) => false,
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => true,
            Err(e) => return Err(e).pg("claim idempotency keys"),
        };
        if resend {
            tx.batch_execute("ROLLBACK TO SAVEPOINT claim")
                .await
                .pg("undo claim")?;
            let seen = tx
                .prepare_cached(
                    "SELECT i.org_num, i.id, i.seq FROM idem i JOIN unnest($1::bigint[], $2::text[]) AS u(org_num, id) \
                     ON i.org_num = u.org_num AND i.id = u.id",
                )
                .await
                .pg("prepare idempotency read")?;
            let mut known = HashMap::new();
            for row in tx
                .query(&seen, &[&rows.idem_org, &rows.idem_id])
                .await
                .pg("read idempotency keys")?
            {
                known.insert((row.get(0), row.get(1)), row.get(2));
            }
            heads = locked.clone();
            (rows, outcomes) = plan(group, &mut heads, known, now_ms)?;
            if !rows.idem_id.is_empty() {
                copy_idem(&tx, &rows).await.pg("claim idempotency keys")?;
            }
        }
    }
    if !rows.seq.is_empty() {
        // Binary COPY: the cheapest way into PostgreSQL for many rows.
        let sink = tx
            .copy_in(
                "COPY events (org_num, seq, occurred_us, received_ms, action, actor_id, resource_type, resource_id, scope_id, leaf, body) FROM STDIN BINARY",
            )
            .await
            .pg("start event copy")?;
        let (i8, text, bytea) = (Type::INT8, Type::TEXT, Type::BYTEA);
        let types = [
            i8.clone(),
            i8.clone(),
            i8.clone(),
            i8,
            text.clone(),
            text.clone(),
            text.clone(),
            text.clone(),
            text.clone(),
            bytea,
            text,
        ];
        let writer = BinaryCopyInWriter::new(sink, &types);
        let mut writer = std::pin::pin!(writer);
        for i in 0..rows.seq.len() {
            writer
                .as_mut()
                .write(&[
                    &rows.org[i],
                    &rows.seq[i],
                    &rows.occurred[i],
                    &rows.received[i],
                    &rows.action[i],
                    &rows.actor[i],
                    &rows.rtype[i],
                    &rows.rid[i],
                    &rows.scope[i],
                    &rows.leaf[i],
                    &rows.body[i],
                ])
                .await
                .pg("copy events")?;
        }
        writer.as_mut().finish().await.pg("finish event copy")?;
    }
    if !rows.node_idx.is_empty() {
        let ins = tx
            .prepare_cached(
                "INSERT INTO nodes (org_num, level, idx, hash) SELECT * FROM unnest($1::bigint[], $2::int[], $3::bigint[], $4::bytea[])",
            )
            .await
            .pg("prepare node insert")?;
        tx.execute(
            &ins,
            &[
                &rows.node_org,
                &rows.node_level,
                &rows.node_idx,
                &rows.node_hash,
            ],
        )
        .await
        .pg("insert tree nodes")?;
    }
    let (mut h_num, mut h_size, mut h_frontier, mut h_received) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (num, head) in &heads {
        h_num.push(*num);
        h_size.push(head.frontier.size() as i64);
        h_frontier.push(
            head.frontier
                .hashes()
                .flatten()
                .copied()
                .collect::<Vec<u8>>(),
        );
        h_received.push(head.received_ms);
    }
    let upd = tx
        .prepare_cached(
            "UPDATE orgs o SET tree_size = u.size, frontier = u.frontier, last_received_ms = u.received \
             FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bigint[]) AS u(num, size, frontier, received) \
             WHERE o.num = u.num",
        )
        .await
        .pg("prepare head update")?;
    tx.execute(&upd, &[&h_num, &h_size, &h_frontier, &h_received])
        .await
        .pg("advance log heads")?;
    tx.commit().await.pg("commit append")?;
    Ok(outcomes)
}

/// Seqs, bodies, leaves and tree nodes for `group` after `heads`, treating the client
/// ids in `claimed` (and repeats within the group) as resends of their earlier seq.
fn plan(
    group: &[Append],
    heads: &mut HashMap<i64, Head>,
    mut claimed: HashMap<(i64, String), i64>,
    now_ms: i64,
) -> Result<(Rows, Vec<Vec<Accepted>>)> {
    let mut rows = Rows::default();
    let mut outcomes = Vec::with_capacity(group.len());
    for Append {
        org_num, events, ..
    } in group
    {
        let org_num = *org_num;
        let head = heads
            .get_mut(&org_num)
            .ok_or(StoreError::NotFound { what: "org" })?;
        let received_ms = now_ms.max(head.received_ms);
        head.received_ms = received_ms;
        let mut out = Vec::with_capacity(events.len());
        for ev in events {
            let seq = head.frontier.size() + 1;
            if let Some(cid) = ev.client_id.as_deref() {
                if let Some(&earlier) = claimed.get(&(org_num, cid.to_owned())) {
                    out.push(Accepted {
                        id: cid.to_owned(),
                        seq: earlier as u64,
                        duplicate: true,
                    });
                    continue;
                }
                claimed.insert((org_num, cid.to_owned()), seq as i64);
                rows.idem_org.push(org_num);
                rows.idem_id.push(cid.to_owned());
                rows.idem_seq.push(seq as i64);
            }
            let (body, leaf) = ev.finish(received_ms, seq);
            rows.org.push(org_num);
            rows.seq.push(seq as i64);
            rows.occurred.push(ev.occurred_us);
            rows.received.push(received_ms);
            rows.action.push(ev.terms.action.clone());
            rows.actor.push(ev.terms.actor_id.clone());
            rows.rtype.push(ev.terms.resource_type.clone());
            rows.rid.push(ev.terms.resource_id.clone());
            rows.scope.push(ev.terms.scope_id.clone());
            rows.leaf.push(leaf.to_vec());
            rows.body.push(body);
            head.frontier.push(leaf, |id, h| {
                if id.level >= STORED_LEVEL {
                    rows.node_org.push(org_num);
                    rows.node_level.push(id.level as i32);
                    rows.node_idx.push(id.index as i64);
                    rows.node_hash.push(h.to_vec());
                }
            });
            out.push(Accepted {
                id: ev.id.clone(),
                seq,
                duplicate: false,
            });
        }
        outcomes.push(out);
    }
    Ok((rows, outcomes))
}

/// Claims the group's client ids in one binary COPY.
async fn copy_idem(
    tx: &deadpool_postgres::Transaction<'_>,
    rows: &Rows,
) -> std::result::Result<(), tokio_postgres::Error> {
    let sink = tx
        .copy_in("COPY idem (org_num, id, seq) FROM STDIN BINARY")
        .await?;
    let writer = BinaryCopyInWriter::new(sink, &[Type::INT8, Type::TEXT, Type::INT8]);
    let mut writer = std::pin::pin!(writer);
    for i in 0..rows.idem_id.len() {
        writer
            .as_mut()
            .write(&[&rows.idem_org[i], &rows.idem_id[i], &rows.idem_seq[i]])
            .await?;
    }
    writer.as_mut().finish().await.map(|_| ())
}
