//! Group commit on PostgreSQL, one writer task per node.
//!
//! The task takes the first waiting append and everything else already queued (up to a
//! cap) and writes them in one transaction: one commit, one WAL flush for many requests.
//! The transaction first locks the row of every org it touches, in org order (so two
//! nodes never deadlock), and reads each org's head from it: tree size, frontier, last
//! `received_at`. Holding those row locks until commit is what makes several nodes
//! produce one gapless seq order and one tree per org. Nothing is cached between
//! groups, so a node never works from a stale head, and a failed transaction leaves
//! nothing behind. Callers hear back only after the commit.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use auditrail_core::PreparedEvent;
use auditrail_core::merkle::Frontier;
use deadpool_postgres::Pool;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

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

pub(crate) async fn run(
    pool: Pool,
    mut rx: mpsc::UnboundedReceiver<Append>,
    observer: Option<CommitObserver>,
) {
    let mut partitions: HashSet<String> = HashSet::new();
    while let Some(first) = rx.recv().await {
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
        match write_group(&pool, &group, &mut partitions).await {
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
                        StoreError::Unavailable(_) => StoreError::Unavailable(msg.clone()),
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
    partitions: &mut HashSet<String>,
) -> Result<Vec<Vec<Accepted>>> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut client = pooled(pool).await?;
    // This month's partition, and next month's a day ahead: another node's clock may
    // run a little ahead, and `received_at` never goes back.
    for at in [now_ms, now_ms + DAY_MS] {
        let (partition, ..) = schema::partition_of(at);
        if !partitions.contains(&partition) {
            schema::ensure_partition(&client, at).await?;
            partitions.insert(partition);
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
    // Client ids seen before, and those claimed earlier in this group.
    let (ids_org, ids): (Vec<i64>, Vec<String>) = group
        .iter()
        .flat_map(|a| {
            a.events
                .iter()
                .filter_map(move |e| e.client_id.clone().map(|c| (a.org_num, c)))
        })
        .unzip();
    let mut claimed: HashMap<(i64, String), i64> = HashMap::new();
    if !ids.is_empty() {
        let seen = tx
            .prepare_cached(
                "SELECT i.org_num, i.id, i.seq FROM idem i JOIN unnest($1::bigint[], $2::text[]) AS u(org_num, id) \
                 ON i.org_num = u.org_num AND i.id = u.id",
            )
            .await
            .pg("prepare idempotency read")?;
        for row in tx
            .query(&seen, &[&ids_org, &ids])
            .await
            .pg("read idempotency keys")?
        {
            claimed.insert((row.get(0), row.get(1)), row.get(2));
        }
    }
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
    if !rows.seq.is_empty() {
        let ins = tx
            .prepare_cached(
                "INSERT INTO events (org_num, seq, occurred_us, received_ms, action, actor_id, resource_type, resource_id, scope_id, leaf, body) \
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::bytea[], $11::text[])",
            )
            .await
            .pg("prepare event insert")?;
        tx.execute(
            &ins,
            &[
                &rows.org,
                &rows.seq,
                &rows.occurred,
                &rows.received,
                &rows.action,
                &rows.actor,
                &rows.rtype,
                &rows.rid,
                &rows.scope,
                &rows.leaf,
                &rows.body,
            ],
        )
        .await
        .pg("insert events")?;
    }
    if !rows.idem_id.is_empty() {
        let ins = tx
            .prepare_cached(
                "INSERT INTO idem (org_num, id, seq) SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[])",
            )
            .await
            .pg("prepare idempotency insert")?;
        tx.execute(&ins, &[&rows.idem_org, &rows.idem_id, &rows.idem_seq])
            .await
            .pg("claim idempotency keys")?;
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
