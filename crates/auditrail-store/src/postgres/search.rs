//! Search on PostgreSQL: the filter becomes one `WHERE` over the org's events, ordered
//! by seq and cut one row past the page, so `next_after` is set only when more match.
//! Every condition is exact in SQL (`=`, `IS DISTINCT FROM`, `strpos`), so no candidate
//! needs re-checking; the planner picks the `(org_num, field, seq)` index of the most
//! selective condition, or `(org_num, occurred_us)` for a narrow time range.

use auditrail_core::query::{Field, Filter};
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use crate::error::Pg;
use crate::{Order, Page, PageRequest, Result, StoredEvent};

fn column(f: Field) -> &'static str {
    match f {
        Field::Action => "action",
        Field::ActorId => "actor_id",
        Field::ResourceType => "resource_type",
        Field::ResourceId => "resource_id",
        Field::ScopeId => "scope_id",
    }
}

/// The SQL and parameters of one page of `filter` over org `num`.
fn query(
    num: i64,
    filter: &Filter,
    page: PageRequest,
) -> (String, Vec<Box<dyn ToSql + Sync + Send>>) {
    let mut params: Vec<Box<dyn ToSql + Sync + Send>> = vec![Box::new(num)];
    let mut sql = String::from(
        "SELECT seq, body, leaf FROM events WHERE org_num = $1 \
         AND seq > (SELECT purged_seq FROM orgs WHERE num = $1)",
    );
    let mut bind = |sql: &mut String, clause: &str, p: Box<dyn ToSql + Sync + Send>| {
        params.push(p);
        sql.push_str(&clause.replace('?', &format!("${}", params.len())));
    };
    if let Some(after) = page.after_seq {
        let op = match page.order {
            Order::Desc => " AND seq < ?",
            Order::Asc => " AND seq > ?",
        };
        bind(&mut sql, op, Box::new(after.min(i64::MAX as u64) as i64));
    }
    if let Some(t) = filter.from_us {
        bind(&mut sql, " AND occurred_us >= ?", Box::new(t));
    }
    if let Some(t) = filter.to_us {
        bind(&mut sql, " AND occurred_us < ?", Box::new(t));
    }
    for c in &filter.conds {
        let clause = if c.negate {
            format!(" AND {} IS DISTINCT FROM ?", column(c.field))
        } else {
            format!(" AND {} = ?", column(c.field))
        };
        bind(&mut sql, &clause, Box::new(c.value.clone()));
    }
    for (text, negate) in &filter.text {
        let clause = if *negate {
            " AND strpos(body, ?) = 0"
        } else {
            " AND strpos(body, ?) > 0"
        };
        bind(&mut sql, clause, Box::new(text.clone()));
    }
    sql.push_str(match page.order {
        Order::Desc => " ORDER BY seq DESC",
        Order::Asc => " ORDER BY seq ASC",
    });
    let limit = page.limit.saturating_add(1).min(i64::MAX as usize) as i64;
    bind(&mut sql, " LIMIT ?", Box::new(limit));
    (sql, params)
}

pub(super) async fn search(
    c: &Client,
    num: i64,
    filter: &Filter,
    page: PageRequest,
) -> Result<Page> {
    let (sql, params) = query(num, filter, page);
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as _).collect();
    let rows = c.query(&sql, &refs).await.pg("search")?;
    let more = rows.len() > page.limit;
    let events = rows
        .iter()
        .take(page.limit)
        .map(|r| {
            let seq = r.get::<_, i64>(0) as u64;
            Ok(StoredEvent {
                seq,
                body: r.get(1),
                leaf: super::to_hash(r.get(2), &format_args!("seq {seq}"))?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let next_after = if more {
        events.last().map(|e| e.seq)
    } else {
        None
    };
    Ok(Page { events, next_after })
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
        );
        assert_eq!(
            sql,
            "SELECT seq, body, leaf FROM events WHERE org_num = $1 \
             AND seq > (SELECT purged_seq FROM orgs WHERE num = $1) AND seq < $2 AND occurred_us >= $3 \
             AND actor_id = $4 AND action IS DISTINCT FROM $5 AND strpos(body, $6) > 0 ORDER BY seq DESC LIMIT $7"
        );
        assert_eq!(params.len(), 7);
    }
}
