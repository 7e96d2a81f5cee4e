//! Search on PostgreSQL, in one snapshot (a read-only `REPEATABLE READ` transaction) so
//! sealing cannot move events between its reads. Its statements are prepared once per
//! connection, and those that do not wait on one another are sent together: a search of
//! rows alone is two round trips (the transaction's start; the rows with the org's
//! marks), and the transaction ends by a rollback nothing waits for.
//!
//! - Rows (seqs from the org's sealed mark on): the filter becomes one `WHERE` over the
//!   org's events, ordered by seq and cut one row past the page, so `next_after` is set
//!   only when more match. Every condition is exact in SQL (`=`, `IS DISTINCT FROM`,
//!   `strpos`), so no candidate needs re-checking; the planner picks the
//!   `(org_num, field, seq)` index of the most selective condition, or
//!   `(org_num, occurred_us)` for a narrow time range.
//! - Frames (seqs below the mark): frames are listed in seq order, up to 256 at a time
//!   and without their data, skipped by their time bounds and, for positive conditions,
//!   by their `terms` (a GIN lookup, which costs about the same whatever the limit);
//!   the first few frames' data come with the list, the rest is read a few frames at a
//!   time as the page needs, except for frames decoded before. With field conditions only the events whose field values may match
//!   are joined from a frame's columns; every event read is re-checked exactly.
//!
//! Descending, rows come first and frames follow; ascending, the other way round.

use std::collections::HashMap;

use auditrail_core::merkle::leaf_hash;
use auditrail_core::query::{Field, Filter};
use deadpool_postgres::Transaction;
use tokio_postgres::IsolationLevel;
use tokio_postgres::types::{ToSql, Type};

use super::seal;
use crate::error::Pg;
use crate::frame_cache::{Frame, FrameCache, Held};
use crate::sealed::Entry;
use crate::terms::{FieldTest, matches};
use crate::{Order, Page, PageRequest, Result, StoreError, StoredEvent};

/// Frames whose data the first read of the sealed part fetches; each further read twice
/// as many, up to `MAX_FRAME_BATCH`, so a page that needs many frames takes few reads.
const FRAME_BATCH: usize = 8;
const MAX_FRAME_BATCH: usize = 64;
/// Frames listed by one query for the candidates (seqs and versions, no data). With a
/// condition the query is a GIN lookup over the org's every frame holding the term, as
/// costly for 8 as for 256, so it runs once for many data reads.
const CANDIDATES: i64 = 256;

type Params = Vec<Box<dyn ToSql + Sync + Send>>;
/// Parameters with their types, for a statement sent without preparing it first.
type Typed = Vec<(Box<dyn ToSql + Sync + Send>, Type)>;

fn column(f: Field) -> &'static str {
    match f {
        Field::Action => "action",
        Field::ActorId => "actor_id",
        Field::ResourceType => "resource_type",
        Field::ResourceId => "resource_id",
        Field::ScopeId => "scope_id",
    }
}

/// The SQL and parameters of up to `limit` rows of `filter` over org `num` after
/// `page`'s cursor: seqs from the org's sealed mark on, above its purge watermark.
fn query(num: i64, filter: &Filter, page: PageRequest, limit: usize) -> (String, Typed) {
    let mut params: Typed = vec![(Box::new(num), Type::INT8)];
    let mut sql = String::from(
        "SELECT seq, body, leaf FROM events WHERE org_num = $1 \
         AND seq > (SELECT purged_seq FROM orgs WHERE num = $1) \
         AND seq >= COALESCE((SELECT next_seq FROM sealed_upto WHERE org_num = $1), 1)",
    );
    let mut bind = |sql: &mut String, clause: &str, p: Box<dyn ToSql + Sync + Send>, ty| {
        params.push((p, ty));
        sql.push_str(&clause.replace('?', &format!("${}", params.len())));
    };
    if let Some(after) = page.after_seq {
        let op = match page.order {
            Order::Desc => " AND seq < ?",
            Order::Asc => " AND seq > ?",
        };
        let after = after.min(i64::MAX as u64) as i64;
        bind(&mut sql, op, Box::new(after), Type::INT8);
    }
    if let Some(t) = filter.from_us {
        bind(&mut sql, " AND occurred_us >= ?", Box::new(t), Type::INT8);
    }
    if let Some(t) = filter.to_us {
        bind(&mut sql, " AND occurred_us < ?", Box::new(t), Type::INT8);
    }
    for c in &filter.conds {
        let clause = if c.negate {
            format!(" AND {} IS DISTINCT FROM ?", column(c.field))
        } else {
            format!(" AND {} = ?", column(c.field))
        };
        bind(&mut sql, &clause, Box::new(c.value.clone()), Type::TEXT);
    }
    for (text, negate) in &filter.text {
        let clause = if *negate {
            " AND strpos(body, ?) = 0"
        } else {
            " AND strpos(body, ?) > 0"
        };
        bind(&mut sql, clause, Box::new(text.clone()), Type::TEXT);
    }
    sql.push_str(match page.order {
        Order::Desc => " ORDER BY seq DESC",
        Order::Asc => " ORDER BY seq ASC",
    });
    bind(
        &mut sql,
        " LIMIT ?",
        Box::new(limit.min(i64::MAX as usize) as i64),
        Type::INT8,
    );
    (sql, params)
}

/// Where org `num`'s rows begin (its sealed mark) and its purge watermark.
const MARKS: &str = "SELECT COALESCE((SELECT next_seq FROM sealed_upto WHERE org_num = $1), 1), \
                     purged_seq FROM orgs WHERE num = $1";

pub(super) async fn search(
    c: &mut deadpool_postgres::Object,
    cache: &FrameCache,
    num: i64,
    filter: &Filter,
    page: PageRequest,
) -> Result<Page> {
    let tx = c
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .pg("begin search")?;
    let marks = tx.prepare_cached(MARKS).await.pg("prepare search marks")?;
    let want = page.limit.saturating_add(1);
    let mut events = Vec::new();
    let after = page.after_seq.map(|a| a.min(i64::MAX as u64) as i64);
    match page.order {
        Order::Desc => {
            // The rows query reads the marks itself: both are sent at once.
            let (row, ()) = tokio::try_join!(
                async { tx.query_one(&marks, &[&num]).await.pg("read search marks") },
                rows(&tx, num, filter, page, want, &mut events),
            )?;
            let (mark, purged): (i64, i64) = (row.get(0), row.get(1));
            let hi = after.map_or(mark - 1, |a| a.saturating_sub(1).min(mark - 1));
            if events.len() < want && hi >= 1 {
                frames(
                    &tx,
                    cache,
                    (num, purged),
                    filter,
                    Order::Desc,
                    (1, hi),
                    want,
                    &mut events,
                )
                .await?;
            }
        }
        Order::Asc => {
            let row = tx
                .query_one(&marks, &[&num])
                .await
                .pg("read search marks")?;
            let (mark, purged): (i64, i64) = (row.get(0), row.get(1));
            let lo = after.map_or(1, |a| a.saturating_add(1)).max(1);
            if lo < mark {
                frames(
                    &tx,
                    cache,
                    (num, purged),
                    filter,
                    Order::Asc,
                    (lo, mark - 1),
                    want,
                    &mut events,
                )
                .await?;
            }
            if events.len() < want {
                let left = want - events.len();
                rows(&tx, num, filter, page, left, &mut events).await?;
            }
        }
    }
    // Read-only: dropping the transaction sends its rollback without waiting for it,
    // and the connection's next use queues behind it.
    drop(tx);
    let more = events.len() > page.limit;
    events.truncate(page.limit);
    let next_after = if more {
        events.last().map(|e| e.seq)
    } else {
        None
    };
    Ok(Page { events, next_after })
}

/// Up to `limit` matching rows (seqs from the sealed mark on), appended to `out`.
async fn rows(
    tx: &Transaction<'_>,
    num: i64,
    filter: &Filter,
    page: PageRequest,
    limit: usize,
    out: &mut Vec<StoredEvent>,
) -> Result<()> {
    let (sql, params) = query(num, filter, page, limit);
    let refs: Vec<(&(dyn ToSql + Sync), Type)> = params
        .iter()
        .map(|(p, t)| (p.as_ref() as _, t.clone()))
        .collect();
    // Typed, the statement goes with its parameters in one round trip, and filters of
    // every shape leave no prepared statement behind.
    for r in tx.query_typed(&sql, &refs).await.pg("search")? {
        let seq = r.get::<_, i64>(0) as u64;
        out.push(StoredEvent {
            seq,
            body: r.get(1),
            leaf: super::to_hash(r.get(2), &format_args!("seq {seq}"))?,
        });
    }
    Ok(())
}

/// The SQL listing frames of org `num` that may hold matches of `filter` among seqs
/// `lo..=hi` in `order`, with the data of the first `FRAME_BATCH`; `$2`/`$3` bound the
/// frames' first seqs, `$4` is how many.
fn frame_query(num: i64, filter: &Filter, order: Order) -> (String, Params) {
    let mut params: Params = vec![
        Box::new(num),
        Box::new(0i64),
        Box::new(0i64),
        Box::new(CANDIDATES),
    ];
    let dir = match order {
        Order::Desc => "DESC",
        Order::Asc => "ASC",
    };
    let terms: Vec<i32> = filter
        .conds
        .iter()
        .filter(|c| !c.negate)
        .map(|c| seal::frame_term(num, c.field, &c.value))
        .collect();
    // With terms, the GIN lookup drives and the seq range is checked on the rows it
    // finds (`+ 0` keeps the planner from also scanning the range in the primary key,
    // which at 1M events doubled the list's time); without, the key's order drives.
    let range = if terms.is_empty() {
        "first_seq"
    } else {
        "first_seq + 0"
    };
    let mut sql = format!(
        "SELECT first_seq, version, CASE WHEN row_number() OVER (ORDER BY first_seq {dir}) \
         <= {FRAME_BATCH} THEN data END FROM sealed WHERE org_num = $1 \
         AND {range} BETWEEN $2 AND $3",
    );
    if !terms.is_empty() {
        params.push(Box::new(terms));
        sql.push_str(&format!(" AND terms @> ${}", params.len()));
    }
    if let Some(t) = filter.from_us {
        params.push(Box::new(t));
        sql.push_str(&format!(" AND max_us >= ${}", params.len()));
    }
    if let Some(t) = filter.to_us {
        params.push(Box::new(t));
        sql.push_str(&format!(" AND min_us < ${}", params.len()));
    }
    sql.push_str(&format!(" ORDER BY first_seq {dir} LIMIT $4"));
    (sql, params)
}

/// Matching sealed events among seqs `lo..=hi` in `order`, appended to `out` until it
/// holds `want`.
#[allow(clippy::too_many_arguments)]
async fn frames(
    tx: &Transaction<'_>,
    cache: &FrameCache,
    (num, purged): (i64, i64),
    filter: &Filter,
    order: Order,
    (lo, hi): (i64, i64),
    want: usize,
    out: &mut Vec<StoredEvent>,
) -> Result<()> {
    let lo = lo.max(purged + 1);
    let (sql, mut params) = frame_query(num, filter, order);
    let test = FieldTest::of(filter);
    let st = tx.prepare_cached(&sql).await.pg("prepare frame search")?;
    let read = tx
        .prepare_cached(
            "SELECT first_seq, version, data FROM sealed WHERE org_num = $1 \
             AND first_seq = ANY($2)",
        )
        .await
        .pg("prepare frame read")?;
    // The frames' first seqs still to read: [first_lo, first_hi].
    let (mut first_lo, mut first_hi) = (crate::sealed::frame_start(lo.max(1) as u64) as i64, hi);
    let mut batch = FRAME_BATCH;
    while first_lo <= first_hi && out.len() < want {
        params[1] = Box::new(first_lo);
        params[2] = Box::new(first_hi);
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as _).collect();
        let rows = tx.query(&st, &refs).await.pg("search frames")?;
        let listed: Vec<(i64, i32)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let done = (listed.len() as i64) < CANDIDATES;
        // Frames' data by first seq: the first few came with the list.
        let mut data: HashMap<i64, tokio_postgres::Row> = rows
            .into_iter()
            .filter(|r| r.get::<_, Option<&[u8]>>(2).is_some())
            .map(|r| (r.get(0), r))
            .collect();
        let mut at = 0;
        while at < listed.len() {
            let chunk = &listed[at..(at + batch).min(listed.len())];
            at += chunk.len();
            // The first batch's data came with the list: the next read takes more.
            batch = (batch * 2).min(MAX_FRAME_BATCH);
            // Frames decoded before need no data: taken from the cache now, as another
            // search may push them out of it meanwhile. The rest is read in one query.
            let mut held: HashMap<i64, Frame> = HashMap::new();
            let mut bytes: HashMap<i64, Held> = HashMap::new();
            let mut missing: Vec<i64> = Vec::new();
            for &(first, version) in chunk {
                if let Some(f) = seal::cached_frame(cache, num, first, version) {
                    held.insert(first, f);
                } else if let Some(b) = test
                    .as_ref()
                    .and_then(|_| seal::cached_bytes(cache, num, first, version))
                {
                    bytes.insert(first, b);
                } else if !data.contains_key(&first) {
                    missing.push(first);
                }
            }
            if !missing.is_empty() {
                for row in tx.query(&read, &[&num, &missing]).await.pg("read frames")? {
                    data.insert(row.get(0), row);
                }
            }
            for &(first, version) in chunk {
                // A frame held decoded is used whole; otherwise, with field conditions,
                // only the events whose fields may match are joined (most of a decode).
                let (whole, some);
                let events: Vec<(i64, &Entry)> = if let Some(f) = held.get(&first) {
                    seal::within(first, f, lo, hi).collect()
                } else {
                    let row = data.remove(&first).ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "the sealed frame at seq {first} of org {num} went missing"
                        ))
                    });
                    if let Some(test) = &test {
                        let raw = match bytes.remove(&first) {
                            Some(b) => seal::raw_of(cache, num, (first, version), b)?,
                            None => seal::decompressed(cache, num, &row?)?,
                        };
                        some = seal::decoded_some(num, first, &raw, test)?;
                        seal::within_some(first, &some, lo, hi).collect()
                    } else {
                        whole = seal::decoded(cache, num, &row?)?.1;
                        seal::within(first, &whole, lo, hi).collect()
                    }
                };
                let events: Box<dyn Iterator<Item = _>> = match order {
                    Order::Asc => Box::new(events.into_iter()),
                    Order::Desc => Box::new(events.into_iter().rev()),
                };
                for (seq, e) in events {
                    let Some(body) = e.text() else { continue };
                    let in_time = filter.from_us.is_none_or(|t| e.occurred_us >= t)
                        && filter.to_us.is_none_or(|t| e.occurred_us < t);
                    if in_time && matches(body, filter) {
                        out.push(StoredEvent {
                            seq: seq as u64,
                            body: body.to_owned(),
                            leaf: leaf_hash(body.as_bytes()),
                        });
                        if out.len() >= want {
                            // Frames read ahead and not reached are kept as stored: the
                            // next page, or the same search again, needs no read of them.
                            for row in data.values() {
                                seal::keep_stored(cache, num, row);
                            }
                            return Ok(());
                        }
                    }
                }
                match order {
                    Order::Asc => first_lo = first + 1,
                    Order::Desc => first_hi = first - 1,
                }
            }
        }
        if done {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use auditrail_core::query::parse_q;

    use super::*;

    #[test]
    fn filters_become_bound_parameters() {
        let mut f = Filter::default();
        parse_q("actor:u-1 -action:login \"drop table\"", &mut f).unwrap();
        f.narrow_from(10);
        let (sql, params) = query(
            7,
            &f,
            PageRequest {
                after_seq: Some(99),
                limit: 50,
                order: Order::Desc,
            },
            51,
        );
        assert_eq!(
            sql,
            "SELECT seq, body, leaf FROM events WHERE org_num = $1 \
             AND seq > (SELECT purged_seq FROM orgs WHERE num = $1) \
             AND seq >= COALESCE((SELECT next_seq FROM sealed_upto WHERE org_num = $1), 1) AND seq < $2 AND occurred_us >= $3 \
             AND actor_id = $4 AND action IS DISTINCT FROM $5 AND strpos(body, $6) > 0 ORDER BY seq DESC LIMIT $7"
        );
        assert_eq!(params.len(), 7);
    }
}
