use std::io::Write;

use serde_json::json;

use super::*;

fn ev(id: &str) -> Value {
    json!({"id": id, "action": "addProject", "details": {"name": "x"}})
}

fn segments(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn completed_and_acked_requests_are_not_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let (s, ready) = Spool::open(dir.path(), Options::default()).unwrap();
    assert!(ready.is_empty());
    s.intent("a", "acme", &[ev("a"), ev("a2")]).await.unwrap();
    assert_eq!(s.depth(), 2);
    s.complete("a", &[Outcome::Success, Outcome::Failure("no".into())])
        .await
        .unwrap();
    s.ack(vec!["a".into()]);
    s.flush().await.unwrap();
    assert_eq!(s.depth(), 0);
    drop(s);
    let (_s, ready) = Spool::open(dir.path(), Options::default()).unwrap();
    assert!(ready.is_empty());
    // The finished segment is gone; only none (or the new, empty one) remain.
    assert!(
        segments(dir.path()).len() <= 1,
        "{:?}",
        segments(dir.path())
    );
}

#[tokio::test]
async fn completed_requests_are_replayed_with_outcomes_and_in_flight_ones_as_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = Spool::open(dir.path(), Options::default()).unwrap();
    s.intent("a", "acme", &[ev("a")]).await.unwrap();
    s.intent("b", "beta", &[ev("b")]).await.unwrap();
    s.complete("a", &[Outcome::Failure("denied".into())])
        .await
        .unwrap();
    drop(s);
    let (s, ready) = Spool::open(dir.path(), Options::default()).unwrap();
    assert_eq!(ready.len(), 2);
    assert_eq!(
        (ready[0].key.as_str(), ready[0].org.as_str()),
        ("a", "acme")
    );
    assert_eq!(ready[0].events[0]["outcome"], "failure");
    assert_eq!(ready[0].events[0]["context"]["error"], "denied");
    assert_eq!(ready[1].events[0]["outcome"], "unknown");
    assert_eq!(s.depth(), 2);
    // Acked after replay: nothing left the next time.
    s.ack(vec!["a".into(), "b".into()]);
    s.flush().await.unwrap();
    drop(s);
    let (_s, ready) = Spool::open(dir.path(), Options::default()).unwrap();
    assert!(ready.is_empty());
}

#[tokio::test]
async fn a_torn_last_line_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = Spool::open(dir.path(), Options::default()).unwrap();
    s.intent("a", "acme", &[ev("a")]).await.unwrap();
    s.complete("a", &[Outcome::Success]).await.unwrap();
    drop(s);
    let seg = dir.path().join(&segments(dir.path())[0]);
    let mut f = OpenOptions::new().append(true).open(seg).unwrap();
    f.write_all(br#"{"t":"i","k":"b","org":"acme","ev":[{"id":"#)
        .unwrap();
    drop(f);
    let (_s, ready) = Spool::open(dir.path(), Options::default()).unwrap();
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0].events[0]["outcome"], "success");
}

#[tokio::test]
async fn intents_beyond_the_limit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        segment_bytes: 1 << 20,
        max_bytes: 300,
    };
    let (s, _) = Spool::open(dir.path(), opts).unwrap();
    s.intent("a", "acme", &[ev("a")]).await.unwrap();
    let mut refused = false;
    for i in 0..10 {
        if let Err(SpoolError::Full(_)) = s.intent(&format!("k{i}"), "acme", &[ev("x")]).await {
            refused = true;
            break;
        }
    }
    assert!(refused);
    // Acks free the space again once the segment rotates out.
}

#[tokio::test]
async fn acked_segments_are_deleted_as_the_spool_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        segment_bytes: 200,
        max_bytes: 1 << 20,
    };
    let (s, _) = Spool::open(dir.path(), opts).unwrap();
    for i in 0..20 {
        let k = format!("k{i}");
        s.intent(&k, "acme", &[ev(&k)]).await.unwrap();
        s.complete(&k, &[Outcome::Success]).await.unwrap();
        s.ack(vec![k]);
    }
    s.flush().await.unwrap();
    assert!(
        segments(dir.path()).len() <= 2,
        "{:?}",
        segments(dir.path())
    );
    // One request left unacked keeps its segment, and only it, alive.
    s.intent("last", "acme", &[ev("last")]).await.unwrap();
    s.complete("last", &[Outcome::Success]).await.unwrap();
    for i in 20..30 {
        let k = format!("k{i}");
        s.intent(&k, "acme", &[ev(&k)]).await.unwrap();
        s.complete(&k, &[Outcome::Success]).await.unwrap();
        s.ack(vec![k]);
    }
    s.flush().await.unwrap();
    drop(s);
    let (_s, ready) = Spool::open(dir.path(), Options::default()).unwrap();
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0].key, "last");
}
