use super::*;
use crate::conformance;

fn open(dir: &Path) -> SqliteStore {
    SqliteStore::open(dir, Options { on_commit: None }).unwrap()
}

#[tokio::test]
async fn orgs_and_keys() {
    let d = tempfile::tempdir().unwrap();
    conformance::orgs_and_keys(&open(d.path())).await;
}

#[tokio::test]
async fn append_idempotency_and_tree() {
    let d = tempfile::tempdir().unwrap();
    conformance::append_idempotency_and_tree(&open(d.path())).await;
}

#[tokio::test]
async fn search_filters_and_paging() {
    let d = tempfile::tempdir().unwrap();
    conformance::search_filters_and_paging(&open(d.path())).await;
}

#[tokio::test]
async fn search_across_blocks() {
    let d = tempfile::tempdir().unwrap();
    conformance::search_across_blocks(&open(d.path())).await;
}

#[tokio::test]
async fn catalogs() {
    let d = tempfile::tempdir().unwrap();
    conformance::catalogs(&open(d.path())).await;
}

#[tokio::test]
async fn checkpoints() {
    let d = tempfile::tempdir().unwrap();
    conformance::checkpoints(&open(d.path())).await;
}

#[tokio::test]
async fn restart_continues_seqs_and_root() {
    let d = tempfile::tempdir().unwrap();
    let before = {
        let s = open(d.path());
        conformance::append_idempotency_and_tree(&s).await;
        let h = s.tree_head("acme").await.unwrap();
        s.shutdown_writer();
        h
    };
    let s = open(d.path());
    assert_eq!(s.tree_head("acme").await.unwrap(), before);
    let limits = auditrail_core::Limits::default();
    let rules = auditrail_core::Rules {
        org_id: "acme",
        now: chrono::Utc::now(),
        limits: &limits,
        catalog: None,
    };
    let ev = auditrail_core::event::prepare(
        &serde_json::json!({"id": "e1", "action": "again"}),
        None,
        &rules,
        || "x".into(),
    )
    .unwrap();
    let ev2 =
        auditrail_core::event::prepare(&serde_json::json!({"action": "new"}), None, &rules, || {
            "y".into()
        })
        .unwrap();
    let r = s.append("acme", vec![ev, ev2], false).await.unwrap();
    assert_eq!(
        (r[0].seq, r[0].duplicate),
        (1, true),
        "idempotency survives restart"
    );
    assert_eq!(r[1].seq, before.size + 1);
    let root = crate::proofs::root_at(&s, "acme", before.size)
        .await
        .unwrap();
    assert_eq!(root, before.root, "old tree unchanged");
}

#[tokio::test]
async fn a_second_process_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let _s = open(d.path());
    let second = SqliteStore::open(d.path(), Options { on_commit: None });
    assert!(matches!(second, Err(StoreError::Locked { .. })));
}

#[tokio::test]
async fn export_jobs() {
    let d = tempfile::tempdir().unwrap();
    conformance::export_jobs(&open(d.path())).await;
}

#[tokio::test]
async fn a_restart_voids_export_leases() {
    let d = tempfile::tempdir().unwrap();
    {
        let s = open(d.path());
        conformance::new_org(&s, "acme").await;
        s.create_export(ExportJob::queued(
            "e".into(),
            "acme".into(),
            "{}".into(),
            "{}".into(),
            1,
        ))
        .await
        .unwrap();
        let far = i64::MAX / 2;
        assert!(s.claim_export("dead", 10, far).await.unwrap().is_some());
        assert!(s.claim_export("other", 20, far).await.unwrap().is_none());
    }
    let s = open(d.path());
    let j = s.claim_export("new", 30, 40).await.unwrap().unwrap();
    assert_eq!((j.id.as_str(), j.attempts), ("e", 2));
}

#[tokio::test]
async fn destinations() {
    let d = tempfile::tempdir().unwrap();
    conformance::destinations(&open(d.path())).await;
}

#[tokio::test]
async fn leases() {
    let d = tempfile::tempdir().unwrap();
    conformance::leases(&open(d.path())).await;
}

#[tokio::test]
async fn retention() {
    let d = tempfile::tempdir().unwrap();
    conformance::retention(&open(d.path())).await;
}

fn page_size(dir: &Path) -> i64 {
    let c = Connection::open(dir.join(DB_FILE)).unwrap();
    c.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap()
}

#[tokio::test]
async fn new_databases_get_16_kib_pages_and_older_ones_keep_theirs() {
    let d = tempfile::tempdir().unwrap();
    drop(open(d.path()));
    assert_eq!(page_size(d.path()), schema::PAGE_SIZE);

    // A database made with SQLite's default 4 KiB pages, already in WAL mode, as
    // earlier versions left theirs: it keeps its pages and works as before.
    let old = tempfile::tempdir().unwrap();
    {
        let c = Connection::open(old.path().join(DB_FILE)).unwrap();
        c.pragma_update(None, "page_size", 4096).unwrap();
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
        c.execute_batch("CREATE TABLE earlier (x INTEGER)").unwrap();
    }
    let s = open(old.path());
    conformance::append_idempotency_and_tree(&s).await;
    drop(s);
    assert_eq!(page_size(old.path()), 4096);
}
