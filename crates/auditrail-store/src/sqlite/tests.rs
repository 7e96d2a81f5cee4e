use super::*;
use crate::conformance;

fn open(dir: &Path) -> SqliteStore {
    SqliteStore::open(dir, Options::default()).unwrap()
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
async fn enqueue_keeps_call_order() {
    let d = tempfile::tempdir().unwrap();
    conformance::enqueue_keeps_call_order(&open(d.path())).await;
}

#[tokio::test]
async fn enqueue_after_follows_its_batch() {
    let d = tempfile::tempdir().unwrap();
    conformance::enqueue_after_follows_its_batch(&open(d.path())).await;
}

/// Batches queued one behind another while the writer is busy go out in one commit
/// (one fsync), in the order queued.
#[tokio::test]
async fn batches_queued_behind_each_other_share_a_commit() {
    let d = tempfile::tempdir().unwrap();
    let commits = std::sync::Arc::new(Mutex::new(Vec::new()));
    let seen = commits.clone();
    let store = SqliteStore::open(
        d.path(),
        Options {
            on_commit: Some(std::sync::Arc::new(move |c: crate::CommitStats| {
                seen.lock().unwrap().push(c.events)
            })),
            ..Options::default()
        },
    )
    .unwrap();
    conformance::new_org(&store, "acme").await;
    let batch = |b: usize| -> Vec<PreparedEvent> {
        (0..10)
            .map(|i| {
                conformance::event(
                    "acme",
                    serde_json::json!({"id": format!("b{b}-{i}"), "action": "x"}),
                    i,
                )
            })
            .collect()
    };
    // Hold the writer on a write of its own while three batches queue behind it.
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (started, holding) = tokio::sync::oneshot::channel::<()>();
    let store = std::sync::Arc::new(store);
    let s = store.clone();
    let hold = tokio::spawn(async move {
        s.write(move |_| {
            let _ = started.send(());
            let _ = held.recv();
            Ok(())
        })
        .await
    });
    holding.await.unwrap();
    commits.lock().unwrap().clear();
    let mut before: Option<Outcome> = None;
    let mut queued = Vec::new();
    for b in 0..3 {
        let o = Outcome::default();
        queued.push(
            store
                .enqueue_after("acme", batch(b), true, before.take(), o.clone())
                .await
                .unwrap(),
        );
        before = Some(o);
    }
    release.send(()).unwrap();
    hold.await.unwrap().unwrap();
    let mut seqs = Vec::new();
    for q in queued {
        seqs.extend(q.await.unwrap().into_iter().map(|a| a.seq));
    }
    assert_eq!(seqs, (1..=30).collect::<Vec<u64>>());
    // The writer reports a commit just after it answers the appends in it.
    let seen = || commits.lock().map(|c| c.clone()).unwrap_or_default();
    for _ in 0..500 {
        if !seen().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let commits = seen();
    assert_eq!(commits, vec![30], "one commit for the three");
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
async fn sealing() {
    let d = tempfile::tempdir().unwrap();
    conformance::sealing(&open(d.path())).await;
}

/// Every root, proof and node run of org `acme` a reader can ask for, as text; each
/// proof verified against the head.
async fn tree_answers(s: &SqliteStore) -> Vec<String> {
    use auditrail_core::merkle;
    let head = s.tree_head("acme").await.unwrap();
    let mut out = vec![format!("{} {}", head.size, hex::encode(head.root))];
    let sizes = [
        1, 15, 16, 100, 255, 256, 257, 300, 511, 512, 700, 1024, 1100,
    ];
    for size in sizes.into_iter().chain([head.size]) {
        let root = crate::proofs::root_at(s, "acme", size).await.unwrap();
        let c = crate::proofs::consistency(s, "acme", head.size, size, head.size)
            .await
            .unwrap();
        merkle::verify_consistency(size, head.size, &root, &head.root, &c.hashes).unwrap();
        out.push(format!("{size} {} {:?}", hex::encode(root), c.hashes));
    }
    for index in (0..head.size).step_by(7) {
        let p = crate::proofs::inclusion(s, "acme", head.size, index, head.size)
            .await
            .unwrap();
        merkle::verify_inclusion(index, head.size, &p.leaf, &p.hashes, &head.root).unwrap();
        out.push(format!("{index} {:?}", p.hashes));
    }
    for level in 0..11 {
        let run = s
            .run_hashes("acme", level, 0, head.size >> level)
            .await
            .unwrap();
        out.push(format!("{level} {run:?}"));
    }
    out
}

/// Sealing drops the tree's nodes below each sealed tile's root (they are hashed again
/// from the frame's leaves); every root, proof and node read afterwards is the same.
#[tokio::test]
async fn sealed_tiles_keep_no_nodes_below_their_root() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path());
    conformance::new_org(&s, "acme").await;
    for start in (0..1500).step_by(250) {
        let evs = (start..start + 250)
            .map(|i| {
                conformance::event(
                    "acme",
                    serde_json::json!({"action": "a", "details": {"i": i}}),
                    i,
                )
            })
            .collect();
        s.append("acme", evs, false).await.unwrap();
    }
    let db = rusqlite::Connection::open(d.path().join("auditrail.db")).unwrap();
    let low = |sealed_below: i64| -> i64 {
        db.query_row(
            "SELECT count(*) FROM nodes WHERE level BETWEEN 4 AND 7 AND ((idx + 1) << level) < ?1 \
             AND org_num = (SELECT num FROM orgs WHERE id = 'acme')",
            [sealed_below],
            |r| r.get(0),
        )
        .unwrap()
    };
    let before = tree_answers(&s).await;
    let head = s.tree_head("acme").await.unwrap().size;
    let (all, within) = (low(i64::MAX), low(1281));
    // Five tiles: 16 + 8 + 4 + 2 nodes of levels 4 to 7 each.
    assert_eq!(within, 5 * 30);
    let sealed = s.seal("acme", head - 1280, 100).await.unwrap();
    assert_eq!(sealed, 1280);
    assert_eq!(low(1281), 0, "no node below a sealed tile's root");
    assert_eq!(low(i64::MAX), all - within, "the open tiles keep theirs");
    assert_eq!(tree_answers(&s).await, before);
    assert_eq!(
        conformance::independent_root(&s, "acme").await,
        (head, s.tree_head("acme").await.unwrap().root)
    );
}

/// Once sealing catches up after sealing enough, the client-id claims of sealed events
/// are kept short (the recent ones merged early); retries of those events are still
/// found, before and after a restart, and new ids are still new.
#[tokio::test]
async fn claims_of_sealed_events_are_compacted_once_sealing_catches_up() {
    let d = tempfile::tempdir().unwrap();
    let ev = |i: usize| {
        conformance::event(
            "acme",
            serde_json::json!({"id": format!("id-{i}"), "action": "a"}),
            i,
        )
    };
    let s = open(d.path());
    conformance::new_org(&s, "acme").await;
    let n = 80_000;
    for start in (0..n).step_by(5_000) {
        s.append("acme", (start..start + 5_000).map(ev).collect(), false)
            .await
            .unwrap();
    }
    let first = s.append("acme", vec![ev(0)], false).await.unwrap()[0].clone();
    assert!(first.duplicate);
    while s.seal("acme", 4_096, 1_000).await.unwrap() > 0 {}
    let db = rusqlite::Connection::open(d.path().join("auditrail.db")).unwrap();
    let org: i64 = db
        .query_row("SELECT num FROM orgs WHERE id = 'acme'", [], |r| r.get(0))
        .unwrap();
    let check = |i: usize| {
        let (h, _) = super::idem::id_key(org, &format!("id-{i}"));
        super::id_chunks::lookup(&db, h).unwrap().map(|c| c.0)
    };
    assert!(matches!(check(0), Some(super::id_chunks::Check::Short(_))));
    assert!(matches!(
        check(70_000),
        Some(super::id_chunks::Check::Short(_))
    ));
    assert!(matches!(
        check(79_999),
        Some(super::id_chunks::Check::Full(_))
    ));
    let pending: i64 = db
        .query_row("SELECT count(*) FROM ids_pending", [], |r| r.get(0))
        .unwrap();
    assert_eq!(pending, 0, "merged early");
    let retry = [0, 1, 40_000, 75_000, 79_999];
    let again = s
        .append("acme", retry.iter().map(|&i| ev(i)).collect(), false)
        .await
        .unwrap();
    assert!(again.iter().all(|a| a.duplicate));
    assert_eq!(again[0].seq, first.seq);
    s.shutdown_writer();
    drop(s);
    let s = open(d.path());
    let after = s
        .append(
            "acme",
            retry.iter().map(|&i| ev(i)).chain([ev(n)]).collect(),
            false,
        )
        .await
        .unwrap();
    assert_eq!(
        after
            .iter()
            .map(|a| (a.seq, a.duplicate))
            .collect::<Vec<_>>()[..5],
        again.iter().map(|a| (a.seq, true)).collect::<Vec<_>>()[..]
    );
    assert!(!after[5].duplicate, "a new id is new");
}

/// Frames of events that do not compress (here ~3 KB each once compressed: ~800 KB a
/// frame) are kept in as many parts as the rids up to the next frame allow, and read
/// back whole.
#[tokio::test]
async fn frames_of_large_events_are_kept_whole() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path());
    conformance::new_org(&s, "acme").await;
    let noise = |i: usize| -> String {
        let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (0..600)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                format!("{:x}", x & 0xff_ffff)
            })
            .collect()
    };
    for start in (0..600).step_by(100) {
        let evs = (start..start + 100)
            .map(|i| {
                conformance::event(
                    "acme",
                    serde_json::json!({"action": "a", "details": {"blob": noise(i)}}),
                    i,
                )
            })
            .collect();
        s.append("acme", evs, false).await.unwrap();
    }
    async fn all(s: &SqliteStore) -> Vec<crate::StoredEvent> {
        let page = PageRequest {
            after_seq: None,
            limit: 1_000,
            order: crate::Order::Asc,
        };
        s.search("acme", &Default::default(), page)
            .await
            .unwrap()
            .events
    }
    let before = all(&s).await;
    assert_eq!(s.seal("acme", 1, 10).await.unwrap(), 512);
    let db = rusqlite::Connection::open(d.path().join("auditrail.db")).unwrap();
    let (parts, biggest): (i64, i64) = db
        .query_row(
            "SELECT count(*), max(length(data)) FROM sealed_more",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(
        parts <= 2 * 255 && biggest > 1_000,
        "{parts} parts, the largest {biggest}"
    );
    // Read back from disk, not from the frames the seal left decoded.
    s.shutdown_writer();
    drop(s);
    assert_eq!(all(&open(d.path())).await, before);
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
    let second = SqliteStore::open(d.path(), Options::default());
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

/// Every seq the search for `actor` in `org` pages through, limit 7, in `order`.
async fn all_of_actor(s: &SqliteStore, org: &str, actor: &str, order: crate::Order) -> Vec<u64> {
    let mut f = Filter::default();
    f.require(auditrail_core::query::Field::ActorId, actor);
    let (mut got, mut after) = (Vec::new(), None);
    loop {
        let page = PageRequest {
            after_seq: after,
            limit: 7,
            order,
        };
        let p = s.search(org, &f, page).await.unwrap();
        got.extend(p.events.iter().map(|e| e.seq));
        match p.next_after {
            Some(n) => after = Some(n),
            None => return got,
        }
    }
}

/// Rows of `table` in the store's database in `dir`.
fn rows_of(dir: &Path, table: &str) -> i64 {
    let c = Connection::open(dir.join(DB_FILE)).unwrap();
    c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

fn pending_rows(dir: &Path) -> i64 {
    rows_of(dir, "postings_pending")
}

/// Small commits leave their postings pending; searches see pending and merged postings
/// as one list, in both orders, before and after a merge and across a restart.
#[tokio::test]
async fn small_commits_are_searchable_pending_and_merged() {
    use crate::Order;
    let d = tempfile::tempdir().unwrap();
    let actor = |i: usize| {
        if i.is_multiple_of(97) {
            "rare"
        } else {
            "common"
        }
    };
    let (mut n_acme, mut n_beta) = (0usize, 0usize);
    let mut rare: Vec<u64> = Vec::new();
    for round in 0..2 {
        let s = open(d.path());
        if round == 0 {
            conformance::new_org(&s, "acme").await;
            conformance::new_org(&s, "beta").await;
        }
        for _ in 0..250 {
            let acme: Vec<_> = (0..40)
                .map(|_| {
                    n_acme += 1;
                    let v = serde_json::json!({"action": "tick", "actor": {"id": actor(n_acme)}});
                    conformance::event("acme", v, n_acme)
                })
                .collect();
            let beta: Vec<_> = (0..3)
                .map(|_| {
                    n_beta += 1;
                    let v = serde_json::json!({"action": "tock", "actor": {"id": "rare"}});
                    conformance::event("beta", v, n_beta)
                })
                .collect();
            let (a, b) = tokio::join!(s.append("acme", acme, false), s.append("beta", beta, false));
            a.unwrap();
            b.unwrap();
        }
        rare.extend(
            (n_acme - 9_999..=n_acme)
                .filter(|i| i.is_multiple_of(97))
                .map(|i| i as u64),
        );
        assert!(
            pending_rows(d.path()) > 0,
            "round {round} ends with postings pending"
        );
        let mut desc = rare.clone();
        desc.reverse();
        assert_eq!(all_of_actor(&s, "acme", "rare", Order::Asc).await, rare);
        assert_eq!(all_of_actor(&s, "acme", "rare", Order::Desc).await, desc);
        let beta: Vec<u64> = (1..=n_beta as u64).collect();
        assert_eq!(all_of_actor(&s, "beta", "rare", Order::Asc).await, beta);
        let common = all_of_actor(&s, "acme", "common", Order::Desc).await;
        assert_eq!(common.len(), n_acme - rare.len());
        assert!(
            common.windows(2).all(|w| w[0] > w[1]),
            "newest first, no repeats"
        );
        s.shutdown_writer();
    }
}

fn bucket_rows(dir: &Path) -> i64 {
    rows_of(dir, "postings_buckets")
}

/// The seqs of one page (up to `limit`) of the search for `resource` in `org`.
async fn seqs_of_resource(
    s: &SqliteStore,
    org: &str,
    resource: &str,
    limit: usize,
    order: crate::Order,
) -> Vec<u64> {
    let mut f = Filter::default();
    f.require(auditrail_core::query::Field::ResourceId, resource);
    let page = PageRequest {
        after_seq: None,
        limit,
        order,
    };
    let p = s.search(org, &f, page).await.unwrap();
    p.events.iter().map(|e| e.seq).collect()
}

/// A merge of thousands of distinct terms (a resource id an event) goes to bucket rows;
/// every term is still found, alone and in order, and so are the terms merged after it
/// as rows of their own.
#[tokio::test]
async fn merges_of_many_terms_are_bucketed_and_searchable() {
    use crate::Order;
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path());
    conformance::new_org(&s, "acme").await;
    let actor = |i: usize| ["ann", "bob", "cy"][i % 3];
    let mut n = 0usize;
    // 130 commits of 40 events: the 129th pending row triggers a merge of ~5,200 terms.
    for _ in 0..130 {
        let batch: Vec<_> = (0..40)
            .map(|_| {
                n += 1;
                let v = serde_json::json!({"action": "touch", "actor": {"id": actor(n)},
                    "resource": {"type": "doc", "id": format!("r-{n}")}});
                conformance::event("acme", v, n)
            })
            .collect();
        s.append("acme", batch, false).await.unwrap();
    }
    let bucketed = bucket_rows(d.path());
    assert!(
        (200..=256).contains(&bucketed),
        "a row a bucket, got {bucketed}"
    );
    // Then small commits again: a few terms a merge, a row each.
    for _ in 0..130 {
        n += 1;
        let v = serde_json::json!({"action": "touch", "actor": {"id": actor(n)},
            "resource": {"type": "doc", "id": "r-1"}});
        s.append("acme", vec![conformance::event("acme", v, n)], false)
            .await
            .unwrap();
    }
    assert_eq!(
        bucket_rows(d.path()),
        bucketed,
        "small merges write rows of their own"
    );
    for (id, want) in [
        ("r-2", vec![2u64]),
        ("r-5200", vec![5200]),
        ("r-4000", vec![4000]),
    ] {
        let got = seqs_of_resource(&s, "acme", id, 10, Order::Asc).await;
        assert_eq!(got, want, "resource {id}");
    }
    // r-1: its first event, then every single-event commit.
    let mut want: Vec<u64> = std::iter::once(1).chain(5201..=n as u64).collect();
    want.reverse();
    let got = seqs_of_resource(&s, "acme", "r-1", 1000, Order::Desc).await;
    assert_eq!(got, want);
    let bob: Vec<u64> = (1..=n)
        .filter(|&i| actor(i) == "bob")
        .map(|i| i as u64)
        .collect();
    assert_eq!(all_of_actor(&s, "acme", "bob", Order::Asc).await, bob);
    let mut desc = bob;
    desc.reverse();
    assert_eq!(all_of_actor(&s, "acme", "bob", Order::Desc).await, desc);
}

fn open_for_load(dir: &Path) -> SqliteStore {
    SqliteStore::open(
        dir,
        Options {
            bulk_load: true,
            ..Options::default()
        },
    )
    .unwrap()
}

fn journal_mode(db: &Path) -> String {
    let c = rusqlite::Connection::open(db).unwrap();
    c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    c.query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap()
}

/// A store opened for a bulk load takes commits through a rollback journal, behaves as
/// any store does (the conformance checks, with readers), and leaves the file in WAL
/// mode, with the same log, for the next open.
#[tokio::test]
async fn a_bulk_load_store_commits_through_a_rollback_journal_and_leaves_wal() {
    let d = tempfile::tempdir().unwrap();
    let db = d.path().join(DB_FILE);
    // A log made the usual way first, so the load switches a file that is in WAL mode.
    open(d.path()).shutdown_writer();
    assert_eq!(journal_mode(&db), "wal");
    let head = {
        let s = open_for_load(d.path());
        assert_eq!(journal_mode(&db), "delete");
        conformance::append_idempotency_and_tree(&s).await;
        assert!(!d.path().join(format!("{DB_FILE}-wal")).exists());
        let head = s.tree_head("acme").await.unwrap();
        s.shutdown_writer();
        head
    };
    assert_eq!(
        journal_mode(&db),
        "wal",
        "the load leaves the file as a server opens it"
    );
    assert!(!d.path().join(format!("{DB_FILE}-journal")).exists());
    let s = open(d.path());
    assert_eq!(s.tree_head("acme").await.unwrap(), head);
    let root = crate::proofs::root_at(&s, "acme", head.size).await.unwrap();
    assert_eq!(root, head.root);
}

/// A bulk load opened while another connection still holds the file in WAL mode (a
/// store just closed, finishing its client-id filter's scan) waits for it to close.
#[test]
fn a_bulk_load_waits_for_a_connection_still_closing() {
    let d = tempfile::tempdir().unwrap();
    let db = d.path().join(DB_FILE);
    open(d.path()).shutdown_writer();
    let c = rusqlite::Connection::open(&db).unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .unwrap();
    assert!(n > 0);
    let closing = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        drop(c);
    });
    let s = open_for_load(d.path());
    closing.join().unwrap();
    assert_eq!(journal_mode(&db), "delete");
    s.shutdown_writer();
}

#[tokio::test]
async fn a_bulk_load_store_keeps_call_order_and_searches() {
    let d = tempfile::tempdir().unwrap();
    conformance::enqueue_keeps_call_order(&open_for_load(d.path())).await;
    let d = tempfile::tempdir().unwrap();
    conformance::search_filters_and_paging(&open_for_load(d.path())).await;
}

/// Random event streams and random interleavings of sealing and purging: a store that
/// seals answers every search exactly as one that never does.
#[test]
fn sealing_never_changes_an_answer() {
    use proptest::prelude::*;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cfg = ProptestConfig {
        cases: 12,
        ..ProptestConfig::default()
    };
    proptest!(cfg, |(ops in proptest::collection::vec(conformance::seal_op(), 1..10))| {
        rt.block_on(async {
            let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
            let (sealing, plain) = (open(da.path()), open(db.path()));
            conformance::sealing_case(&sealing, &plain, &ops).await;
            sealing.shutdown_writer();
            plain.shutdown_writer();
        });
    });
}

#[tokio::test]
async fn sealing_regressions_answer_as_rows() {
    for ops in conformance::seal_regressions() {
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (sealing, plain) = (open(da.path()), open(db.path()));
        conformance::sealing_case(&sealing, &plain, &ops).await;
        sealing.shutdown_writer();
        plain.shutdown_writer();
    }
}

/// Retention removes a sealed body from the disk, not only from the answers: its frame
/// is rewritten with the leaf in its place, and the rows of sealed events are gone.
#[tokio::test]
async fn purged_bodies_leave_their_frames() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path());
    conformance::new_org(&s, "acme").await;
    let evs: Vec<_> = (0..700)
        .map(|i| {
            conformance::event(
                "acme",
                // ~32 bytes no codec can shrink: frames run to several parts.
                serde_json::json!({"action": "a", "details": {"secret": format!(
                    "s-{i}-x{:032x}{:032x}",
                    (i as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835),
                    (i as u128 + 7).wrapping_mul(0xD6E8_FEB8_6659_FD93_A5A5_5A5A_0F0F_F0F1)
                )}}),
                i,
            )
        })
        .collect();
    s.append("acme", evs, false).await.unwrap();
    let leaves = s.run_hashes("acme", 0, 0, 700).await.unwrap();
    assert_eq!(s.seal("acme", 100, 10).await.unwrap(), 512);
    assert_eq!(s.seal("acme", 100, 10).await.unwrap(), 0);
    let c = s.sealing("acme", 100).await.unwrap();
    assert_eq!((c.sealed, c.backlog), (512, 0));
    let db = || Connection::open(d.path().join(DB_FILE)).unwrap();
    let frames = || {
        let c = db();
        let mut st = c
            .prepare("SELECT first_rid, live, data FROM sealed ORDER BY first_rid")
            .unwrap();
        let rows: Vec<(i64, i64, Vec<u8>)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        // Every part of `sealed_more` belongs to a frame, and no frame misses one.
        let mut parts = 0;
        let f = rows
            .into_iter()
            .map(|(first, live, head)| {
                let whole = super::seal::frame_bytes(&c, first, head).unwrap();
                let rest = whole.len().saturating_sub(super::seal::PART);
                parts += rest.div_ceil(super::seal::more_part(rest));
                (live, crate::sealed::decode(&whole).unwrap())
            })
            .collect::<Vec<_>>();
        let stored: usize = c
            .query_row("SELECT count(*) FROM sealed_more", [], |r| r.get(0))
            .unwrap();
        assert_eq!(stored, parts, "parts of frames");
        assert!(parts >= 2, "frames here run to several parts");
        f
    };
    let rows = || -> i64 {
        db().query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(frames().len(), 2);
    assert_eq!(rows(), 700 - 512, "sealed events have no rows");
    // The 300 oldest: all of the first tile, part of the second.
    let now = chrono::Utc::now().timestamp_millis() + 1;
    assert_eq!(s.purge("acme", now, 300).await.unwrap(), 300);
    let f = frames();
    assert_eq!(f[0].0, 0, "nothing live in the first frame");
    assert!(f[0].1.iter().all(|e| e.text().is_none()));
    assert_eq!(f[1].0, 256 - (300 - 256));
    let secret = |e: &crate::sealed::Entry| -> Option<usize> {
        let t = e.text()?;
        t.split("s-").nth(1)?.split('-').next()?.parse().ok()
    };
    assert!(f[1].1.iter().filter_map(secret).all(|i| i >= 299));
    assert_eq!(f[1].1.iter().filter_map(secret).count(), 212);
    // Each frame knows when its oldest live body was received, so purges read only the
    // frames they change.
    let froms: Vec<Option<i64>> = db()
        .prepare("SELECT live_from_ms FROM sealed ORDER BY first_rid")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let oldest_live = f[1]
        .1
        .iter()
        .filter(|e| e.text().is_some())
        .map(|e| e.received_ms)
        .min();
    assert_eq!(froms, vec![None, oldest_live]);
    // Every leaf stays, and the next purge skips the emptied frame.
    assert_eq!(s.run_hashes("acme", 0, 0, 700).await.unwrap(), leaves);
    assert_eq!(s.purge("acme", now, 100).await.unwrap(), 100);
    assert_eq!(s.run_hashes("acme", 0, 0, 700).await.unwrap(), leaves);
    s.shutdown_writer();
}
