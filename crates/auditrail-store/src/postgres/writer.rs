//! Group commit on PostgreSQL, one writer task per org per node.
//!
//! An org's task takes the first waiting append and everything else already queued (up
//! to a cap) and writes them in one transaction: one commit, one WAL flush for many
//! requests. The transaction first locks the org's row and reads its head from it: tree
//! size, frontier, last `received_at`. Holding that row lock until commit is what makes
//! several nodes produce one gapless seq order and one tree per org. Nothing is cached between
//! groups, so a node never works from a stale head, and a failed transaction leaves
//! nothing behind. Callers hear back only after the commit.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auditrail_core::merkle::{Frontier, NodeId};
use auditrail_core::{Hash, PreparedEvent};
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
                job.org_num,
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
    org_num: i64,
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
        match write_group(&pool, org_num, &group, &partitions).await {
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
                // A partition known to exist may be gone (dropped by hand, or by a
                // retention node whose clock ran far ahead): look again next time.
                if let Ok(mut p) = partitions.lock() {
                    p.clear();
                }
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

/// The org's head as the group leaves it.
#[derive(Clone)]
struct Head {
    frontier: Frontier,
    received_ms: i64,
}

/// One event as it will be stored.
struct Row<'a> {
    ev: &'a PreparedEvent,
    seq: i64,
    received_ms: i64,
    leaf: Hash,
    body: String,
}

/// What a group writes: its new events, the client ids they claim, the tree nodes they
/// complete, the head after them, and each request's answer.
struct Plan<'a> {
    rows: Vec<Row<'a>>,
    claims: Vec<(&'a str, i64)>,
    nodes: Vec<(NodeId, Hash)>,
    head: Head,
    outcomes: Vec<Vec<Accepted>>,
}

/// Seqs, bodies, leaves and tree nodes for `group` after `head`, treating the client ids
/// in `known` (and repeats within the group) as resends of their earlier seq.
fn plan<'a>(
    group: &'a [Append],
    mut head: Head,
    known: &'a HashMap<String, i64>,
    now_ms: i64,
) -> Plan<'a> {
    let mut claimed: HashMap<&str, i64> = known.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let (mut rows, mut claims, mut nodes) = (Vec::new(), Vec::new(), Vec::new());
    let received_ms = now_ms.max(head.received_ms);
    head.received_ms = received_ms;
    let received_at = auditrail_core::time::format_millis(received_ms);
    let outcomes = group
        .iter()
        .map(|a| {
            a.events
                .iter()
                .map(|ev| {
                    let seq = head.frontier.size() + 1;
                    if let Some(cid) = ev.client_id.as_deref() {
                        if let Some(&earlier) = claimed.get(cid) {
                            return Accepted {
                                id: cid.to_owned(),
                                seq: earlier as u64,
                                duplicate: true,
                            };
                        }
                        claimed.insert(cid, seq as i64);
                        claims.push((cid, seq as i64));
                    }
                    let (body, leaf) = ev.finish_at(&received_at, seq);
                    head.frontier.push(leaf, |id, h| {
                        if id.level >= STORED_LEVEL {
                            nodes.push((id, *h));
                        }
                    });
                    rows.push(Row {
                        ev,
                        seq: seq as i64,
                        received_ms,
                        leaf,
                        body,
                    });
                    Accepted {
                        id: ev.id.clone(),
                        seq,
                        duplicate: false,
                    }
                })
                .collect()
        })
        .collect();
    Plan {
        rows,
        claims,
        nodes,
        head,
        outcomes,
    }
}

async fn write_group(
    pool: &Pool,
    org_num: i64,
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
    let lock = tx
        .prepare_cached(
            "SELECT tree_size, frontier, last_received_ms FROM orgs WHERE num = $1 FOR UPDATE",
        )
        .await
        .pg("prepare head lock")?;
    let row = tx
        .query_opt(&lock, &[&org_num])
        .await
        .pg("lock log head")?
        .ok_or(StoreError::NotFound { what: "org" })?;
    let locked = Head {
        frontier: frontier_of(row.get(0), row.get(1))?,
        received_ms: row.get(2),
    };
    // Optimistically, no client id was seen before: claim them all with the seqs this
    // plan gives. A conflict means a resend; then undo the claim, look the ids up, and
    // plan again with the earlier seqs.
    let none = HashMap::new();
    let mut known = HashMap::new();
    let mut plan_ = plan(group, locked.clone(), &none, now_ms);
    if !plan_.claims.is_empty() {
        tx.batch_execute("SAVEPOINT claim").await.pg("savepoint")?;
        // A plain COPY: the unique index refuses a resend, far cheaper than checking
        // each row with ON CONFLICT when resends are rare.
        let resend = match copy_idem(&tx, org_num, &plan_.claims).await {
            Ok(()) => false,
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => true,
            Err(e) => return Err(e).pg("claim idempotency keys"),
        };
        if resend {
            tx.batch_execute("ROLLBACK TO SAVEPOINT claim")
                .await
                .pg("undo claim")?;
            let by_key: HashMap<uuid::Uuid, &str> = plan_
                .claims
                .iter()
                .map(|(id, _)| (idem_key(id), *id))
                .collect();
            let keys: Vec<uuid::Uuid> = by_key.keys().copied().collect();
            for row in tx
                .query(
                    "SELECT key, seq FROM idem_keys WHERE org_num = $1 AND key = ANY($2)",
                    &[&org_num, &keys],
                )
                .await
                .pg("read idempotency keys")?
            {
                if let Some(id) = by_key.get(&row.get::<_, uuid::Uuid>(0)) {
                    known.insert((*id).to_owned(), row.get(1));
                }
            }
            plan_ = plan(group, locked, &known, now_ms);
            if !plan_.claims.is_empty() {
                copy_idem(&tx, org_num, &plan_.claims)
                    .await
                    .pg("claim idempotency keys")?;
            }
        }
    }
    let Plan {
        rows,
        nodes,
        head,
        outcomes,
        ..
    } = plan_;
    if !rows.is_empty() {
        copy_events(&tx, org_num, &rows).await.pg("copy events")?;
    }
    if !nodes.is_empty() {
        let (mut level, mut idx, mut hash) = (Vec::new(), Vec::new(), Vec::new());
        for (id, h) in &nodes {
            level.push(id.level as i32);
            idx.push(id.index as i64);
            hash.push(&h[..]);
        }
        let ins = tx
            .prepare_cached(
                "INSERT INTO nodes (org_num, level, idx, hash) SELECT $1, * FROM unnest($2::int[], $3::bigint[], $4::bytea[])",
            )
            .await
            .pg("prepare node insert")?;
        tx.execute(&ins, &[&org_num, &level, &idx, &hash])
            .await
            .pg("insert tree nodes")?;
    }
    let frontier: Vec<u8> = head.frontier.hashes().flatten().copied().collect();
    let upd = tx
        .prepare_cached(
            "UPDATE orgs SET tree_size = $2, frontier = $3, last_received_ms = $4 WHERE num = $1",
        )
        .await
        .pg("prepare head update")?;
    tx.execute(
        &upd,
        &[
            &org_num,
            &(head.frontier.size() as i64),
            &frontier,
            &head.received_ms,
        ],
    )
    .await
    .pg("advance log head")?;
    tx.commit().await.pg("commit append")?;
    Ok(outcomes)
}

/// The group's events in one binary COPY: the cheapest way into PostgreSQL for many rows.
async fn copy_events(
    tx: &deadpool_postgres::Transaction<'_>,
    org_num: i64,
    rows: &[Row<'_>],
) -> std::result::Result<(), tokio_postgres::Error> {
    let sink = tx
        .copy_in(
            "COPY events (org_num, seq, occurred_us, received_ms, action, actor_id, resource_type, resource_id, scope_id, leaf, body) FROM STDIN BINARY",
        )
        .await?;
    let (i8, text) = (Type::INT8, Type::TEXT);
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
        Type::BYTEA,
        text,
    ];
    let writer = BinaryCopyInWriter::new(sink, &types);
    let mut writer = std::pin::pin!(writer);
    for r in rows {
        let t = &r.ev.terms;
        writer
            .as_mut()
            .write(&[
                &org_num,
                &r.seq,
                &r.ev.occurred_us,
                &r.received_ms,
                &t.action,
                &t.actor_id,
                &t.resource_type,
                &t.resource_id,
                &t.scope_id,
                &&r.leaf[..],
                &r.body,
            ])
            .await?;
    }
    writer.as_mut().finish().await.map(|_| ())
}

/// The key a client id is kept under: the first 16 bytes of its SHA-256, in a `uuid`
/// column (16 bytes with no length header). A collision needs 2^64 ids in one org.
pub(super) fn idem_key(id: &str) -> uuid::Uuid {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(id.as_bytes());
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    uuid::Uuid::from_bytes(k)
}

/// Claims the group's client ids in one binary COPY.
async fn copy_idem(
    tx: &deadpool_postgres::Transaction<'_>,
    org_num: i64,
    claims: &[(&str, i64)],
) -> std::result::Result<(), tokio_postgres::Error> {
    let sink = tx
        .copy_in("COPY idem_keys (org_num, key, seq) FROM STDIN BINARY")
        .await?;
    let writer = BinaryCopyInWriter::new(sink, &[Type::INT8, Type::UUID, Type::INT8]);
    let mut writer = std::pin::pin!(writer);
    for (id, seq) in claims {
        writer
            .as_mut()
            .write(&[&org_num, &idem_key(id), seq])
            .await?;
    }
    writer.as_mut().finish().await.map(|_| ())
}
