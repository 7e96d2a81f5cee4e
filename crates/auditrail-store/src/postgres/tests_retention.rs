//! Retention on PostgreSQL: purged events are hidden at once; reclaiming deletes an
//! org's share of a month that others still keep, drops a month once nothing in it is
//! kept, never drops the month being written, and every proof still verifies.

use auditrail_core::merkle;
use serde_json::json;
use tokio_postgres::NoTls;

use super::*;
use auditrail_core::query::Filter;

use crate::{Order, PageRequest, Reclaimed, proofs};

const DAY: i64 = 86_400_000;
/// 2025-03-15T00:00:00Z: a month long past.
const MARCH_2025: i64 = 1_741_996_800_000;

async fn seqs(s: &PgStore, org: &str) -> Vec<u64> {
    let page = PageRequest {
        after_seq: None,
        limit: 1000,
        order: Order::Asc,
    };
    let found = s.search(org, &Filter::default(), page).await.unwrap();
    found.events.iter().map(|e| e.seq).collect()
}

async fn append(s: &PgStore, org: &str, n: usize, from: usize) {
    let events = (from..from + n)
        .map(|i| conformance::event(org, json!({"action": "act", "actor": {"id": "u-1"}}), i))
        .collect();
    s.append(org, events, false).await.unwrap();
}

/// Every leaf's inclusion at the current size, and consistency from `old` to it.
async fn every_proof_verifies(s: &PgStore, org: &str, old: TreeHead) {
    let head = s.tree_head(org).await.unwrap();
    for index in 0..head.size {
        let p = proofs::inclusion(s, org, head.size, index, head.size)
            .await
            .unwrap();
        merkle::verify_inclusion(index, head.size, &p.leaf, &p.hashes, &head.root).unwrap();
    }
    assert_eq!(proofs::root_at(s, org, old.size).await.unwrap(), old.root);
    let c = proofs::consistency(s, org, head.size, old.size, head.size)
        .await
        .unwrap();
    merkle::verify_consistency(old.size, head.size, &old.root, &head.root, &c.hashes).unwrap();
}

/// The leaf hashes of `org`'s first `n` events.
async fn leaves(s: &PgStore, org: &str, n: u64) -> Vec<auditrail_core::Hash> {
    let ids: Vec<_> = (0..n)
        .map(|index| merkle::NodeId { level: 0, index })
        .collect();
    s.node_hashes(org, &ids).await.unwrap()
}

async fn exists(client: &tokio_postgres::Client, table: &str) -> bool {
    client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await
        .unwrap()
        .get(0)
}

async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn retention_drops_whole_months_and_keeps_every_proof() {
    let Some((db, s)) = fresh().await else { return };
    let (client, conn) = tokio_postgres::connect(&db.url, NoTls).await.unwrap();
    tokio::spawn(conn);
    conformance::new_org(&s, "acme").await;
    conformance::new_org(&s, "globex").await;
    // History in a month long past: 300 events of acme (more than one window of archived
    // leaves), 5 of globex, moved there as a migration of old events would have put them.
    append(&s, "acme", 300, 0).await;
    append(&s, "globex", 5, 0).await;
    schema::ensure_partition(&client, MARCH_2025).await.unwrap();
    client
        .execute("UPDATE events SET received_ms = $1 + seq", &[&MARCH_2025])
        .await
        .unwrap();
    let march = schema::partition_of(MARCH_2025).0;
    assert_eq!(
        count(&client, &format!("SELECT count(*) FROM {march}")).await,
        305
    );
    let old_acme = s.tree_head("acme").await.unwrap();
    let old_globex = s.tree_head("globex").await.unwrap();
    let leaves_before = leaves(&s, "acme", 300).await;
    append(&s, "acme", 3, 300).await;
    let now = chrono::Utc::now().timestamp_millis();

    // Purging hides at once, oldest first, at most `limit`, and writes no event row.
    assert_eq!(s.purge("acme", now - DAY, 200).await.unwrap(), 200);
    assert_eq!(s.purge("acme", now - DAY, 1000).await.unwrap(), 100);
    assert_eq!(s.purge("acme", now - DAY, 1000).await.unwrap(), 0);
    assert_eq!(seqs(&s, "acme").await, vec![301, 302, 303]);
    assert_eq!(seqs(&s, "globex").await, vec![1, 2, 3, 4, 5]);
    assert_eq!(count(&client, "SELECT count(*) FROM events").await, 308);

    // March also holds globex's kept events: acme's share is deleted, the month stays.
    let r = s.reclaim(now).await.unwrap();
    assert_eq!(
        r,
        Reclaimed {
            partitions_dropped: 0,
            events_deleted: 300,
            frames_dropped: 0,
        }
    );
    assert!(exists(&client, &march).await);
    assert_eq!(
        count(&client, &format!("SELECT count(*) FROM {march}")).await,
        5
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM purged_leaves").await,
        2,
        "seqs 1-256 and 257-300, one packed row each"
    );
    assert_eq!(seqs(&s, "globex").await, vec![1, 2, 3, 4, 5]);
    let leaves_after = leaves(&s, "acme", 300).await;
    assert_eq!(
        leaves_after, leaves_before,
        "archived leaves are the leaves"
    );
    every_proof_verifies(&s, "acme", old_acme).await;

    // Once globex's are purged too, nothing in March is kept: the month is dropped.
    assert_eq!(s.purge("globex", now - DAY, 1000).await.unwrap(), 5);
    let r = s.reclaim(now).await.unwrap();
    assert_eq!(
        r,
        Reclaimed {
            partitions_dropped: 1,
            events_deleted: 0,
            frames_dropped: 0,
        }
    );
    assert!(!exists(&client, &march).await, "the month is dropped");
    assert_eq!(s.reclaim(now).await.unwrap(), Reclaimed::default());
    every_proof_verifies(&s, "acme", old_acme).await;
    every_proof_verifies(&s, "globex", old_globex).await;
    assert_eq!(seqs(&s, "globex").await, Vec::<u64>::new());

    // The month being written is never dropped, even with everything in it purged; the
    // purged rows are deleted and appends go on in the same tree.
    let head = s.tree_head("acme").await.unwrap();
    assert_eq!(s.purge("acme", now + 1, 1000).await.unwrap(), 3);
    let r = s.reclaim(now).await.unwrap();
    assert_eq!(r.partitions_dropped, 0);
    assert_eq!(r.events_deleted, 3);
    assert!(exists(&client, &schema::partition_of(now).0).await);
    append(&s, "acme", 2, 303).await;
    assert_eq!(seqs(&s, "acme").await, vec![304, 305]);
    every_proof_verifies(&s, "acme", head).await;
}

#[tokio::test]
async fn version_2_purged_rows_become_the_watermark() {
    let Some((db, s)) = fresh().await else { return };
    conformance::new_org(&s, "acme").await;
    append(&s, "acme", 6, 0).await;
    drop(s);
    // The database as version 2 left it: the first four bodies purged in place.
    let (client, conn) = tokio_postgres::connect(&db.url, NoTls).await.unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(
            "ALTER TABLE orgs DROP COLUMN purged_seq; DROP TABLE purged_leaves, sealed, sealed_upto, idem_keys; \
             CREATE TABLE idem (org_num BIGINT NOT NULL, id TEXT NOT NULL, seq BIGINT NOT NULL, PRIMARY KEY (org_num, id)); \
             UPDATE auditrail_schema SET version = 2; \
             UPDATE events SET body = NULL, action = NULL, actor_id = NULL WHERE seq <= 4",
        )
        .await
        .unwrap();
    let s = PgStore::connect(&db.url, PgOptions::default())
        .await
        .unwrap();
    assert_eq!(seqs(&s, "acme").await, vec![5, 6]);
    assert_eq!(s.purge("acme", i64::MAX, 1000).await.unwrap(), 2);
    assert_eq!(seqs(&s, "acme").await, Vec::<u64>::new());
}

#[tokio::test]
async fn a_month_in_use_is_dropped_at_the_next_pass() {
    let Some((db, s)) = fresh().await else { return };
    let (client, conn) = tokio_postgres::connect(&db.url, NoTls).await.unwrap();
    tokio::spawn(conn);
    let (mut reader, conn) = tokio_postgres::connect(&db.url, NoTls).await.unwrap();
    tokio::spawn(conn);
    conformance::new_org(&s, "acme").await;
    append(&s, "acme", 10, 0).await;
    schema::ensure_partition(&client, MARCH_2025).await.unwrap();
    client
        .execute("UPDATE events SET received_ms = $1 + seq", &[&MARCH_2025])
        .await
        .unwrap();
    let march = schema::partition_of(MARCH_2025).0;
    let now = chrono::Utc::now().timestamp_millis();
    assert_eq!(s.purge("acme", now, 1000).await.unwrap(), 10);
    // A reader in the middle of a transaction over March holds it: the drop gives up
    // after its short wait instead of stalling every query of `events` behind it.
    let tx = reader.transaction().await.unwrap();
    let in_march: i64 = tx
        .query_one(&format!("SELECT count(*) FROM {march}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(in_march, 10);
    assert_eq!(s.reclaim(now).await.unwrap(), Reclaimed::default());
    assert!(exists(&client, &march).await);
    append(&s, "acme", 1, 10).await;
    assert_eq!(
        seqs(&s, "acme").await,
        vec![11],
        "appends went on meanwhile"
    );
    tx.commit().await.unwrap();
    assert_eq!(s.reclaim(now).await.unwrap().partitions_dropped, 1);
    assert!(!exists(&client, &march).await);
    let head = s.tree_head("acme").await.unwrap();
    for index in 0..head.size {
        let p = proofs::inclusion(&s, "acme", head.size, index, head.size)
            .await
            .unwrap();
        merkle::verify_inclusion(index, head.size, &p.leaf, &p.hashes, &head.root).unwrap();
    }
}

#[tokio::test]
async fn sealing_empties_old_months_and_reclaim_drops_them() {
    let Some((db, s)) = fresh().await else { return };
    let (client, conn) = tokio_postgres::connect(&db.url, NoTls).await.unwrap();
    tokio::spawn(conn);
    conformance::new_org(&s, "acme").await;
    append(&s, "acme", 768, 0).await;
    schema::ensure_partition(&client, MARCH_2025).await.unwrap();
    client
        .execute("UPDATE events SET received_ms = $1 + seq", &[&MARCH_2025])
        .await
        .unwrap();
    append(&s, "acme", 5, 768).await;
    let march = schema::partition_of(MARCH_2025).0;
    let before = seqs(&s, "acme").await;
    let old = s.tree_head("acme").await.unwrap();
    let leaves_before = leaves(&s, "acme", 773).await;
    // Every complete tile at least one event behind the head: all of March.
    assert_eq!(s.seal("acme", 1, 100).await.unwrap(), 768);
    assert_eq!(
        count(&client, &format!("SELECT count(*) FROM {march}")).await,
        0
    );
    assert_eq!(count(&client, "SELECT count(*) FROM sealed").await, 3);
    // A frame's row keeps its data and terms out of line (the candidate list reads
    // small rows), and its terms go straight into the index (no pending list for
    // searches to scan).
    for (table, option) in [
        ("sealed", "toast_tuple_target=128"),
        ("sealed_by_term", "fastupdate=off"),
    ] {
        let set = client
            .query_one(
                "SELECT count(*) FROM pg_class WHERE relname = $1 AND $2 = ANY(reloptions)",
                &[&table, &option],
            )
            .await
            .unwrap();
        assert_eq!(set.get::<_, i64>(0), 1, "{table}: {option}");
    }
    let now = chrono::Utc::now().timestamp_millis();
    let r = s.reclaim(now).await.unwrap();
    assert_eq!(r.partitions_dropped, 1, "{r:?}");
    assert_eq!(r.events_deleted + r.frames_dropped, 0, "nothing was purged");
    assert!(
        !exists(&client, &march).await,
        "the emptied month is dropped"
    );
    assert_eq!(seqs(&s, "acme").await, before);
    assert_eq!(leaves(&s, "acme", 773).await, leaves_before);
    every_proof_verifies(&s, "acme", old).await;
    // Purging the sealed history and reclaiming archives the frames' leaves.
    assert_eq!(
        s.purge("acme", MARCH_2025 + DAY, 10_000).await.unwrap(),
        768
    );
    let r = s.reclaim(now).await.unwrap();
    assert_eq!((r.frames_dropped, r.events_deleted), (3, 768), "{r:?}");
    assert_eq!(count(&client, "SELECT count(*) FROM sealed").await, 0);
    assert_eq!(seqs(&s, "acme").await, (769..=773).collect::<Vec<u64>>());
    assert_eq!(leaves(&s, "acme", 773).await, leaves_before);
    every_proof_verifies(&s, "acme", old).await;
}
