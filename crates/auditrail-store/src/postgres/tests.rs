//! The conformance story on PostgreSQL, each test in a database of its own; plus what
//! only a shared database has: several stores (nodes) writing one org's log at once.

use std::sync::Arc;

use super::*;
use crate::conformance;
use crate::postgres::testdb::{TestDb, server_url};

async fn fresh() -> Option<(TestDb, PgStore)> {
    let server = server_url()?;
    let db = TestDb::create(&server)
        .await
        .expect("create a test database");
    let store = PgStore::connect(&db.url, PgOptions::default())
        .await
        .expect("connect");
    Some((db, store))
}

macro_rules! story {
    ($name:ident) => {
        #[tokio::test]
        async fn $name() {
            if let Some((_db, s)) = fresh().await {
                conformance::$name(&s).await;
            }
        }
    };
}

story!(orgs_and_keys);
story!(append_idempotency_and_tree);
story!(enqueue_keeps_call_order);
story!(enqueue_after_follows_its_batch);
story!(search_filters_and_paging);
story!(search_across_blocks);
story!(catalogs);
story!(checkpoints);
story!(export_jobs);
story!(destinations);
story!(leases);
story!(retention);
story!(sealing);

/// Random event streams and random interleavings of sealing, purging and reclaiming: a
/// store that seals answers every search exactly as one that never does.
#[test]
fn sealing_never_changes_an_answer() {
    use proptest::prelude::*;
    if server_url().is_none() {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cfg = ProptestConfig {
        cases: 6,
        ..ProptestConfig::default()
    };
    proptest!(cfg, |(ops in proptest::collection::vec(conformance::seal_op(), 1..10))| {
        rt.block_on(async {
            let (Some((_a, sealing)), Some((_b, plain))) = (fresh().await, fresh().await) else {
                return;
            };
            conformance::sealing_case(&sealing, &plain, &ops).await;
        });
    });
}

#[tokio::test]
async fn sealing_regressions_answer_as_rows() {
    for ops in conformance::seal_regressions() {
        let (Some((_a, sealing)), Some((_b, plain))) = (fresh().await, fresh().await) else {
            return;
        };
        conformance::sealing_case(&sealing, &plain, &ops).await;
    }
}

#[tokio::test]
async fn a_reconnected_node_continues_seqs_and_root() {
    let Some((db, s)) = fresh().await else { return };
    conformance::append_idempotency_and_tree(&s).await;
    let before = s.tree_head("acme").await.unwrap();
    drop(s);
    let s = PgStore::connect(&db.url, PgOptions::default())
        .await
        .unwrap();
    assert_eq!(s.tree_head("acme").await.unwrap(), before);
    let ev = conformance::event("acme", serde_json::json!({"action": "again"}), 0);
    let r = s.append("acme", vec![ev], false).await.unwrap();
    assert_eq!(r[0].seq, before.size + 1);
    let root = crate::proofs::root_at(&s, "acme", before.size)
        .await
        .unwrap();
    assert_eq!(root, before.root, "old tree unchanged");
}

#[tokio::test]
async fn nodes_writing_one_org_make_one_gapless_log_and_one_tree() {
    let Some((db, a)) = fresh().await else { return };
    let b = PgStore::connect(&db.url, PgOptions::default())
        .await
        .unwrap();
    let (a, b): (Arc<dyn Store>, Arc<dyn Store>) = (Arc::new(a), Arc::new(b));
    conformance::new_org(a.as_ref(), "acme").await;
    let mut tasks = Vec::new();
    for (i, store) in [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .enumerate()
    {
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for round in 0..25 {
                let events = (0..20)
                    .map(|k| {
                        let n = i * 10_000 + round * 100 + k;
                        conformance::event(
                            "acme",
                            serde_json::json!({"id": format!("e-{n}"), "action": "write"}),
                            n,
                        )
                    })
                    .collect();
                let acc = store.append("acme", events, true).await.unwrap();
                seqs.extend(acc.iter().map(|x| x.seq));
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (1..=2000).collect::<Vec<u64>>(), "one gapless order");
    let head_a = a.tree_head("acme").await.unwrap();
    assert_eq!(head_a, b.tree_head("acme").await.unwrap());
    assert_eq!(
        conformance::independent_root(b.as_ref(), "acme").await,
        (head_a.size, head_a.root)
    );
    // Resending through the other node finds the original seqs.
    let again = conformance::event(
        "acme",
        serde_json::json!({"id": "e-0", "action": "write"}),
        0,
    );
    let r = b.append("acme", vec![again], false).await.unwrap();
    assert!(r[0].duplicate);
    assert_eq!(a.tree_head("acme").await.unwrap().size, 2000);
}

#[tokio::test]
async fn only_one_node_claims_each_export() {
    let Some((db, a)) = fresh().await else { return };
    let b = PgStore::connect(&db.url, PgOptions::default())
        .await
        .unwrap();
    conformance::new_org(&a, "acme").await;
    for i in 0..20 {
        a.create_export(ExportJob::queued(
            format!("x{i:02}"),
            "acme".into(),
            "{}".into(),
            "{}".into(),
            i,
        ))
        .await
        .unwrap();
    }
    let far = i64::MAX / 2;
    let (a, b) = (Arc::new(a), Arc::new(b));
    let claim = |s: Arc<PgStore>, who: &'static str| {
        tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(j) = s.claim_export(who, 100, far).await.unwrap() {
                got.push(j.id);
            }
            got
        })
    };
    let (ta, tb) = (claim(a, "a"), claim(b, "b"));
    let mut all = ta.await.unwrap();
    all.extend(tb.await.unwrap());
    all.sort();
    assert_eq!(all, (0..20).map(|i| format!("x{i:02}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn events_land_in_monthly_partitions() {
    let Some((db, s)) = fresh().await else { return };
    conformance::new_org(&s, "acme").await;
    let ev = conformance::event("acme", serde_json::json!({"action": "x"}), 0);
    s.append("acme", vec![ev], false).await.unwrap();
    let (client, conn) = tokio_postgres::connect(&db.url, NoTls).await.unwrap();
    tokio::spawn(conn);
    let now = chrono::Utc::now().timestamp_millis();
    let (name, ..) = schema::partition_of(now);
    let (next, ..) = schema::partition_of(now + 86_400_000);
    let rows = client
        .query(
            "SELECT c.relname::text, (SELECT count(*) FROM ONLY events), (SELECT count(*) FROM events) \
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let mut want = vec![name.clone(), next];
    want.dedup();
    assert_eq!(
        names, want,
        "this month's partition, and next month's on its eve"
    );
    assert_eq!(rows[0].get::<_, i64>(1), 0, "the parent holds no rows");
    assert_eq!(rows[0].get::<_, i64>(2), 1);
    let in_month: i64 = client
        .query_one(&format!("SELECT count(*) FROM {name}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(in_month, 1, "the event is in this month's partition");
}

#[tokio::test]
async fn a_lost_database_is_unavailable_then_recovers() {
    let Some((db, s)) = fresh().await else { return };
    conformance::new_org(&s, "acme").await;
    s.ping().await.unwrap();
    // Cut every connection of this store, as a database restart would.
    let (client, conn) = tokio_postgres::connect(&db.url, NoTls).await.unwrap();
    tokio::spawn(conn);
    client
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    let first = s.ping().await;
    assert!(
        matches!(first, Err(StoreError::Unavailable(_)) | Ok(())),
        "a cut connection is reported as unavailable, never as another error: {first:?}"
    );
    // The pool replaces dead connections: the store serves again.
    let mut ok = false;
    for _ in 0..20 {
        if s.ping().await.is_ok() {
            ok = true;
            break;
        }
    }
    assert!(ok, "the store recovers once the database is reachable");
    let ev = conformance::event("acme", serde_json::json!({"action": "after"}), 0);
    assert_eq!(s.append("acme", vec![ev], false).await.unwrap()[0].seq, 1);
}

#[path = "tests_retention.rs"]
mod retention;

/// A database whose client ids were kept as text (schema version 4) is migrated to
/// hashed keys: every id it knew is still recognised as a resend.
#[tokio::test]
async fn client_ids_kept_as_text_still_deduplicate_after_migrating() {
    let Some((db, s)) = fresh().await else { return };
    conformance::new_org(&s, "acme").await;
    let ev = |i: usize| {
        conformance::event(
            "acme",
            serde_json::json!({"id": format!("client-{i}\u{e9}\"x"), "action": "a"}),
            i,
        )
    };
    let first = s
        .append("acme", (0..5).map(ev).collect(), false)
        .await
        .unwrap();
    let head = s.tree_head("acme").await.unwrap();
    drop(s);
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(
            "CREATE TABLE idem (org_num BIGINT NOT NULL, id TEXT NOT NULL, seq BIGINT NOT NULL, \
             PRIMARY KEY (org_num, id)); DROP TABLE idem_keys; UPDATE auditrail_schema SET version = 4",
        )
        .await
        .unwrap();
    for a in &first {
        client
            .execute(
                "INSERT INTO idem (org_num, id, seq) SELECT num, $1, $2 FROM orgs WHERE id = 'acme'",
                &[&a.id, &(a.seq as i64)],
            )
            .await
            .unwrap();
    }
    let s = PgStore::connect(&db.url, PgOptions::default())
        .await
        .unwrap();
    let again = s
        .append("acme", (0..6).map(ev).collect(), false)
        .await
        .unwrap();
    for (a, b) in first.iter().zip(&again) {
        assert_eq!((a.seq, &a.id), (b.seq, &b.id));
        assert!(b.duplicate, "{b:?}");
    }
    assert!(!again[5].duplicate);
    assert_eq!(again[5].seq, head.size + 1);
    assert_eq!(s.tree_head("acme").await.unwrap().size, head.size + 1);
}
