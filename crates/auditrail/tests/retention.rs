//! Retention through the running service: due event bodies are purged (and the purge is
//! itself an event), other orgs are untouched, and every proof still verifies.
#![expect(clippy::unwrap_used, reason = "tests: a panic is a failed test")]

mod common;

use auditrail_core::merkle::{verify_consistency, verify_inclusion};
use auditrail_server::retention::purge_due;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::{ADMIN, TestServer};
use serde_json::{Value, json};

const DAY_MS: i64 = 86_400_000;

fn hash(v: &Value) -> [u8; 32] {
    B64.decode(v.as_str().unwrap()).unwrap().try_into().unwrap()
}

fn hashes(v: &Value) -> Vec<[u8; 32]> {
    v.as_array().unwrap().iter().map(hash).collect()
}

/// (size, root) of the signed checkpoint `/v1/checkpoints/latest` serves now.
async fn checkpoint(srv: &TestServer, key: &str) -> (u64, [u8; 32]) {
    let (s, note) = srv.get("/v1/checkpoints/latest", key).await;
    assert_eq!(s, 200);
    let note = note.as_str().unwrap().to_owned();
    let mut lines = note.lines().skip(1);
    let size = lines.next().unwrap().parse().unwrap();
    let root = B64
        .decode(lines.next().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    (size, root)
}

#[tokio::test]
async fn due_bodies_are_purged_and_proofs_still_verify() {
    let d = tempfile::tempdir().unwrap();
    let srv = TestServer::start(d.path()).await;
    let (s, b) = srv
        .post(
            "/v1/orgs",
            ADMIN,
            json!({"id": "acme", "retention_days": 30}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    srv.create_org("keep").await;
    let (acme, keep) = (
        srv.key("acme", "admin").await,
        srv.key("keep", "admin").await,
    );
    let batch = |n: usize| json!({"events": (0..n).map(|i| json!({"action": "addProject", "actor": {"id": format!("u-{i}")}})).collect::<Vec<_>>()});
    assert_eq!(srv.post("/v1/events", &acme, batch(10)).await.0, 200);
    assert_eq!(srv.post("/v1/events", &keep, batch(3)).await.0, 200);
    let (old_size, old_root) = checkpoint(&srv, &acme).await;
    let keep_before = srv.all_events(&keep).await;
    let now = chrono::Utc::now().timestamp_millis();

    // Nothing is 30 days old yet.
    assert_eq!(purge_due(&srv.app, now).await.unwrap(), 0);
    assert_eq!(srv.all_events(&acme).await.len() as u64, old_size);

    // 31 days on, every event of acme is due; keep has no retention.
    assert_eq!(
        purge_due(&srv.app, now + 31 * DAY_MS).await.unwrap(),
        old_size
    );
    let left = srv.all_events(&acme).await;
    assert_eq!(left.len(), 1, "only the record of the purge: {left:?}");
    assert_eq!(left[0]["action"], "purgeEvents");
    assert_eq!(left[0]["seq"], old_size + 1);
    assert_eq!(left[0]["actor"]["type"], "SYSTEM");
    assert_eq!(left[0]["details"]["events"], old_size);
    assert_eq!(left[0]["details"]["retention_days"], 30);
    assert_eq!(srv.all_events(&keep).await, keep_before);
    let (_, hits) = srv.get("/v1/events?actor_id=u-3", &acme).await;
    assert_eq!(
        hits["events"],
        json!([]),
        "purged events are not searchable"
    );

    // The tree is whole: the old checkpoint is consistent with the new one, and every
    // purged event's leaf is still proven into the new root.
    let (size, root) = checkpoint(&srv, &acme).await;
    assert_eq!(size, old_size + 1);
    let (s, c) = srv
        .get(
            &format!("/v1/proofs/consistency?from={old_size}&to={size}"),
            &acme,
        )
        .await;
    assert_eq!(s, 200, "{c}");
    verify_consistency(old_size, size, &old_root, &root, &hashes(&c["hashes"])).unwrap();
    for seq in 1..=size {
        let (s, p) = srv
            .get(
                &format!("/v1/proofs/inclusion?seq={seq}&tree_size={size}"),
                &acme,
            )
            .await;
        assert_eq!(s, 200, "{p}");
        verify_inclusion(
            seq - 1,
            size,
            &hash(&p["leaf_hash"]),
            &hashes(&p["hashes"]),
            &root,
        )
        .unwrap();
    }
    // Today, nothing is due: the purge record itself is kept.
    assert_eq!(purge_due(&srv.app, now).await.unwrap(), 0);
    srv.stop().await;
}
