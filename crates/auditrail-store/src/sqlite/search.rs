//! Search on SQLite: the most selective positive condition drives an index range scan
//! over `terms`; every other condition is checked per candidate; results are re-checked
//! exactly against the event text before they are returned.

use auditrail_core::query::{Field, Filter};
use rusqlite::Connection;
use rusqlite::types::Value;

use super::schema::{MAX_SEQ, rid, seq_of};
use crate::error::Context;
use crate::terms::{matches, term_key};
use crate::{Order, Page, PageRequest, Result, StoredEvent};

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

pub(crate) fn search(
    conn: &Connection,
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
    let dir = if page.order == Order::Desc {
        "DESC"
    } else {
        "ASC"
    };
    let mut params: Vec<Value> = Vec::new();
    let driver = filter
        .conds
        .iter()
        .filter(|c| !c.negate)
        .min_by_key(|c| selectivity(c.field));
    let mut sql = String::from("SELECT e.rid, e.body, e.leaf FROM ");
    let key_col = match driver {
        Some(d) => {
            sql.push_str(
                "terms t JOIN events e ON e.rid = t.rid WHERE t.term = ? AND t.rid BETWEEN ? AND ?",
            );
            params.push(Value::Integer(term_key(org_num, d.field, &d.value)));
            "t.rid"
        }
        None => {
            sql.push_str("events e WHERE e.rid BETWEEN ? AND ?");
            "e.rid"
        }
    };
    params.push(Value::Integer(rid(org_num, lo)));
    params.push(Value::Integer(rid(org_num, hi.min(MAX_SEQ))));
    sql.push_str(" AND e.body IS NOT NULL");
    for c in &filter.conds {
        if Some(c) == driver {
            continue;
        }
        sql.push_str(if c.negate {
            " AND NOT EXISTS"
        } else {
            " AND EXISTS"
        });
        sql.push_str(" (SELECT 1 FROM terms x WHERE x.term = ? AND x.rid = e.rid)");
        params.push(Value::Integer(term_key(org_num, c.field, &c.value)));
    }
    if let Some(f) = filter.from_us {
        sql.push_str(" AND e.occurred_us >= ?");
        params.push(Value::Integer(f));
    }
    if let Some(t) = filter.to_us {
        sql.push_str(" AND e.occurred_us < ?");
        params.push(Value::Integer(t));
    }
    for (text, negate) in &filter.text {
        sql.push_str(if *negate {
            " AND instr(e.body, ?) = 0"
        } else {
            " AND instr(e.body, ?) > 0"
        });
        params.push(Value::Text(text.clone()));
    }
    sql.push_str(&format!(" ORDER BY {key_col} {dir} LIMIT ?"));
    params.push(Value::Integer(page.limit as i64 + 1));

    let mut stmt = conn.prepare_cached(&sql).op("prepare search")?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(params), |r| {
            let leaf: Vec<u8> = r.get(2)?;
            Ok((seq_of(r.get(0)?), r.get::<_, String>(1)?, leaf))
        })
        .op("search")?;
    let mut events = Vec::with_capacity(page.limit.min(1000));
    let mut last_seq = None;
    let mut more = false;
    // Rows dropped by the exact re-check still count toward the page, so the cursor
    // always advances past everything that was read.
    for (consumed, row) in rows.enumerate() {
        let (seq, body, leaf) = row.op("read search row")?;
        if consumed == page.limit {
            more = true;
            break;
        }
        last_seq = Some(seq);
        if matches(&body, filter) {
            let leaf = leaf
                .try_into()
                .map_err(|_| crate::StoreError::Corrupt(format!("leaf of seq {seq}")))?;
            events.push(StoredEvent { seq, body, leaf });
        }
    }
    Ok(Page {
        events,
        next_after: if more { last_seq } else { None },
    })
}
