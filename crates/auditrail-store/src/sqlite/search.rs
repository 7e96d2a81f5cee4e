//! Search on SQLite.
//!
//! With a positive condition, the most selective one drives (a candidate that another
//! positive condition's postings of the same block do not name is skipped): its postings
//! are read block by block (its own rows and its bucket's rows of each block of 2^16 seqs, see
//! `postings.rs`, up to the org's newest event) in seq order, with the not yet merged
//! postings of recent commits as the newest part, and each candidate event is fetched
//! by rid. Without one, the events of the org are scanned in seq order. The caller runs
//! a search in one read transaction, so a merge committed meanwhile is not seen half-way.
//! Either way every candidate is checked exactly against the whole filter, and reading
//! stops one match past the page, so the cursor never skips or repeats and `next_after`
//! is set only when more matches exist.

use std::sync::Arc;

use auditrail_core::query::{Field, Filter};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};

use super::postings::{merged_rids, pending_rids};
use super::rid::{MAX_SEQ, SEQ_BITS, block_of, rid, seq_of};
use super::seal::Unsealer;
use crate::error::Context;
use crate::frame_cache::FrameCache;
use crate::sealed::{Body, Entry, FRAME_EVENTS, frame_start};
use crate::terms::{matches, term_key};
use crate::{Order, Page, PageRequest, Result, StoreError, StoredEvent};
use auditrail_core::Hash;
use auditrail_core::merkle::leaf_hash;

/// Which indexed field narrows results most, typically.
fn selectivity(f: Field) -> u8 {
    match f {
        Field::ResourceId => 0,
        Field::ActorId => 1,
        Field::ScopeId => 2,
        Field::Action => 3,
        Field::ResourceType => 4,
    }
}

struct Collector<'f> {
    filter: &'f Filter,
    limit: usize,
    events: Vec<StoredEvent>,
    more: bool,
}

impl Collector<'_> {
    /// Whether an event of these times and body matches the filter.
    fn accepts(&self, occurred_us: i64, body: &str) -> bool {
        self.filter.within(occurred_us) && matches(body, self.filter)
    }

    /// Keeps a match; returns true once the page is full and one more match is known.
    /// `leaf` is asked for only for a match that is kept.
    fn keep(
        &mut self,
        seq: u64,
        body: String,
        leaf: impl FnOnce(&str) -> Result<Hash>,
    ) -> Result<bool> {
        if self.events.len() == self.limit {
            self.more = true;
            return Ok(true);
        }
        let leaf = leaf(&body)?;
        self.events.push(StoredEvent { seq, body, leaf });
        Ok(false)
    }

    /// Offers a candidate; returns true once the page is full and one more match is known.
    fn offer(
        &mut self,
        seq: u64,
        occurred_us: i64,
        body: String,
        leaf: impl FnOnce(&str) -> Result<Hash>,
    ) -> Result<bool> {
        if !self.accepts(occurred_us, &body) {
            return Ok(false);
        }
        self.keep(seq, body, leaf)
    }

    /// Offers a sealed event (its leaf is its body's hash); its body is copied only if
    /// it matches.
    fn offer_sealed(&mut self, seq: u64, e: &Entry) -> Result<bool> {
        match &e.body {
            Body::Text(body) if self.accepts(e.occurred_us, body) => {
                self.keep(seq, body.clone(), |b| Ok(leaf_hash(b.as_bytes())))
            }
            _ => Ok(false),
        }
    }

    /// [`Self::offer_sealed`] of an entry the caller owns: a kept body is moved out.
    fn offer_sealed_owned(&mut self, seq: u64, e: &mut Entry) -> Result<bool> {
        match &mut e.body {
            Body::Text(body) if self.accepts(e.occurred_us, body) => {
                self.keep(seq, std::mem::take(body), |b| Ok(leaf_hash(b.as_bytes())))
            }
            _ => Ok(false),
        }
    }
}

/// A frame a scan reads: its own, or one shared with the cache.
enum ScanFrame {
    Owned(Vec<Entry>),
    Shared(Arc<Vec<Entry>>),
}

fn stored_leaf(seq: u64, leaf: Vec<u8>) -> Result<Hash> {
    leaf.try_into()
        .map_err(|_| StoreError::Corrupt(format!("leaf of seq {seq}")))
}

/// A page of at least this many events is a scan (an export's or a delivery batch's;
/// the API's pages are smaller).
const SCAN_EVENTS: usize = 1024;

pub(crate) fn search(
    conn: &Connection,
    frames: &FrameCache,
    org_num: i64,
    filter: &Filter,
    page: PageRequest,
) -> Result<Page> {
    let (mut lo, mut hi) = (1u64, MAX_SEQ);
    match (page.order, page.after_seq) {
        (Order::Desc, Some(s)) => hi = s.saturating_sub(1),
        (Order::Asc, Some(s)) => lo = s.saturating_add(1),
        _ => {}
    }
    let mut c = Collector {
        filter,
        limit: page.limit,
        events: Vec::with_capacity(page.limit.min(1000)),
        more: false,
    };
    if lo <= hi {
        let mut positive: Vec<_> = filter.conds.iter().filter(|c| !c.negate).collect();
        positive.sort_by_key(|c| selectivity(c.field));
        let terms: Vec<i64> = positive
            .iter()
            .map(|c| term_key(org_num, c.field, &c.value))
            .collect();
        match terms.split_first() {
            Some((&driver, others)) => by_postings(
                conn,
                frames,
                (driver, others),
                (rid(org_num, lo), rid(org_num, hi)),
                page.order,
                &mut c,
            )?,
            None => by_scan(
                conn,
                frames,
                (rid(org_num, lo), rid(org_num, hi)),
                page.order,
                &mut c,
            )?,
        }
    }
    let next_after = if c.more {
        c.events.last().map(|e| e.seq)
    } else {
        None
    };
    Ok(Page {
        events: c.events,
        next_after,
    })
}

/// Keeps the rids of `rids` (ascending) that are also in each of the ascending lists
/// `others`: the candidates every positive condition's postings name. (Postings may name
/// more than match, never fewer, so this only spares fetching events that cannot match.)
fn intersect(mut rids: Vec<i64>, others: &[Vec<i64>]) -> Vec<i64> {
    for o in others {
        rids.retain(|r| o.binary_search(r).is_ok());
    }
    rids
}

fn by_postings(
    conn: &Connection,
    frames: &FrameCache,
    (term, others): (i64, &[i64]),
    (lo, hi): (i64, i64),
    order: Order,
    c: &mut Collector<'_>,
) -> Result<()> {
    let org_num = lo >> SEQ_BITS;
    let mut frames = Unsealer::new(conn, frames, org_num)?;
    // Blocks past the org's newest event hold nothing: stop there, not at MAX_SEQ. (Its
    // newest event is always in a row; a range below the rows ends in the sealed part.)
    let head: Option<i64> = conn
        .query_row(
            "SELECT max(rid) FROM events WHERE rid BETWEEN ?1 AND ?2",
            params![lo, hi],
            |r| r.get(0),
        )
        .op("read log head")?;
    let hi = match head {
        Some(h) => h,
        None if frames.next > seq_of(lo) => hi.min(rid(org_num, frames.next - 1)),
        None => return Ok(()),
    };
    let mut fetch = conn
        .prepare_cached(
            "SELECT occurred_us, body, leaf FROM events WHERE rid = ?1 AND body IS NOT NULL",
        )
        .op("prepare event fetch")?;
    // Offers the rids of `rids` in range, in the list's order; true once the page is
    // full. Sealed candidates of one frame (next to one another in the list) are decoded
    // together, and only they.
    let mut offer = |rids: &[i64]| -> Result<bool> {
        let in_range = |r: &i64| (lo..=hi).contains(r);
        let mut i = 0;
        while i < rids.len() {
            let r = rids[i];
            i += 1;
            if !in_range(&r) {
                continue;
            }
            if frames.is_sealed(seq_of(r)) {
                let start = frame_start(seq_of(r));
                let n = rids[i - 1..]
                    .iter()
                    .take_while(|&&x| frame_start(seq_of(x)) == start)
                    .count();
                let run: Vec<i64> = rids[i - 1..i - 1 + n]
                    .iter()
                    .copied()
                    .filter(in_range)
                    .collect();
                i += n - 1;
                let at: Vec<usize> = run.iter().map(|&x| (seq_of(x) - start) as usize).collect();
                let got = frames.entries_at(start, &at)?;
                for (&x, &place) in run.iter().zip(&at) {
                    let e = got.get(place).and_then(Option::as_ref).ok_or_else(|| {
                        StoreError::Corrupt(format!("sealed event {}: not in its frame", seq_of(x)))
                    })?;
                    if c.offer_sealed(seq_of(x), e)? {
                        return Ok(true);
                    }
                }
                continue;
            }
            let found = fetch
                .query_row([r], |x| {
                    Ok((
                        x.get::<_, i64>(0)?,
                        x.get::<_, String>(1)?,
                        x.get::<_, Vec<u8>>(2)?,
                    ))
                })
                .optional()
                .op("fetch event")?;
            if let Some((occurred, body, leaf)) = found
                && c.offer(seq_of(r), occurred, body, |_| stored_leaf(seq_of(r), leaf))?
            {
                return Ok(true);
            }
        }
        Ok(false)
    };
    // The pending rids are newer than every merged one: first in descending order, last
    // in ascending.
    let pending = intersect(
        pending_rids(conn, org_num, term)?,
        &others
            .iter()
            .map(|&t| pending_rids(conn, org_num, t))
            .collect::<Result<Vec<_>>>()?,
    );
    if order == Order::Desc {
        let newest_first: Vec<i64> = pending.iter().rev().copied().collect();
        if offer(&newest_first)? {
            return Ok(());
        }
    }
    let (first, last) = (block_of(lo), block_of(hi));
    for k in 0..=(last - first) {
        let blk = match order {
            Order::Desc => last - k,
            Order::Asc => first + k,
        };
        let mut rids = merged_rids(conn, blk, term)?;
        if !rids.is_empty() && !others.is_empty() {
            let lists = others
                .iter()
                .map(|&t| merged_rids(conn, blk, t))
                .collect::<Result<Vec<_>>>()?;
            rids = intersect(rids, &lists);
        }
        if order == Order::Desc {
            rids.reverse();
        }
        if offer(&rids)? {
            return Ok(());
        }
    }
    if order == Order::Asc {
        offer(&pending)?;
    }
    Ok(())
}

fn by_scan(
    conn: &Connection,
    frames: &FrameCache,
    (lo, hi): (i64, i64),
    order: Order,
    c: &mut Collector<'_>,
) -> Result<()> {
    let org_num = lo >> SEQ_BITS;
    let mut u = Unsealer::new(conn, frames, org_num)?;
    if c.limit >= SCAN_EVENTS {
        u = u.scanning();
    }
    // Seqs below the sealed mark are in frames, the rest in rows.
    let split = rid(org_num, u.next);
    let sealed = (lo, hi.min(split - 1));
    let rows = (lo.max(split), hi);
    if order == Order::Asc {
        if scan_sealed(&mut u, sealed, order, c)? {
            return Ok(());
        }
        scan_rows(conn, rows, order, c)?;
    } else {
        if scan_rows(conn, rows, order, c)? {
            return Ok(());
        }
        scan_sealed(&mut u, sealed, order, c)?;
    }
    Ok(())
}

/// The sealed events of rids `lo..=hi` in `order`; true once the page is full.
fn scan_sealed(
    u: &mut Unsealer<'_>,
    (lo, hi): (i64, i64),
    order: Order,
    c: &mut Collector<'_>,
) -> Result<bool> {
    if lo > hi {
        return Ok(false);
    }
    let (a, b) = (seq_of(lo), seq_of(hi));
    let mut starts: Vec<u64> = (frame_start(a)..=b)
        .step_by(FRAME_EVENTS as usize)
        .collect();
    if order == Order::Desc {
        starts.reverse();
    }
    for start in starts {
        // A scan's frame is its own (not cached): its bodies are moved into the page,
        // not copied, which halves what an export allocates.
        let mut frame = match Arc::try_unwrap(u.frame_to_scan(start)?) {
            Ok(owned) => ScanFrame::Owned(owned),
            Err(shared) => ScanFrame::Shared(shared),
        };
        let mut seqs: Vec<u64> = (start.max(a)..=(start + FRAME_EVENTS - 1).min(b)).collect();
        if order == Order::Desc {
            seqs.reverse();
        }
        for seq in seqs {
            let missing = || StoreError::Corrupt(format!("sealed event {seq}: not in its frame"));
            let at = (seq - start) as usize;
            let full = match &mut frame {
                ScanFrame::Owned(f) => {
                    c.offer_sealed_owned(seq, f.get_mut(at).ok_or_else(missing)?)?
                }
                ScanFrame::Shared(f) => c.offer_sealed(seq, f.get(at).ok_or_else(missing)?)?,
            };
            if full {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// The events in rows of rids `lo..=hi` in `order`; true once the page is full.
fn scan_rows(
    conn: &Connection,
    (lo, hi): (i64, i64),
    order: Order,
    c: &mut Collector<'_>,
) -> Result<bool> {
    if lo > hi {
        return Ok(false);
    }
    let dir = if order == Order::Desc { "DESC" } else { "ASC" };
    let mut sql = String::from(
        "SELECT rid, occurred_us, body, leaf FROM events WHERE rid BETWEEN ?1 AND ?2 AND body IS NOT NULL",
    );
    let mut args: Vec<Value> = vec![Value::Integer(lo), Value::Integer(hi)];
    // Cheap prefilters in SQL; the exact check happens in `offer`.
    if let Some(f) = c.filter.from_us {
        sql.push_str(&format!(" AND occurred_us >= ?{}", args.len() + 1));
        args.push(Value::Integer(f));
    }
    if let Some(t) = c.filter.to_us {
        sql.push_str(&format!(" AND occurred_us < ?{}", args.len() + 1));
        args.push(Value::Integer(t));
    }
    for (text, negate) in &c.filter.text {
        sql.push_str(&format!(
            " AND instr(body, ?{}) {}",
            args.len() + 1,
            if *negate { "= 0" } else { "> 0" }
        ));
        args.push(Value::Text(text.clone()));
    }
    sql.push_str(&format!(" ORDER BY rid {dir}"));
    let mut stmt = conn.prepare_cached(&sql).op("prepare scan")?;
    let mut rows = stmt.query(rusqlite::params_from_iter(args)).op("scan")?;
    while let Some(row) = rows.next().op("scan")? {
        let r: i64 = row.get(0).op("scan")?;
        let leaf: Vec<u8> = row.get(3).op("scan")?;
        if c.offer(
            seq_of(r),
            row.get(1).op("scan")?,
            row.get(2).op("scan")?,
            |_| stored_leaf(seq_of(r), leaf),
        )? {
            return Ok(true);
        }
    }
    Ok(false)
}
