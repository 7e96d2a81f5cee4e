use std::io::Write;

use serde_json::json;

use super::*;

fn ev(id: &str) -> Value {
    json!({"id": id, "action": "addProject", "details": {"name": "x"}})
}

/// What a spool reopened on `dir` replays.
fn replayed(dir: &Path) -> Vec<Ready> {
    Spool::open(dir, Options::default()).unwrap().1
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
    s.intent("a", "acme", &[ev("a"), ev("a2")]).unwrap();
    assert_eq!(s.depth(), 2);
    s.complete("a", &[Outcome::Success, Outcome::Failure("no".into())])
        .await
        .unwrap();
    s.ack(vec!["a".into()]);
    s.flush().await.unwrap();
    assert_eq!(s.depth(), 0);
    drop(s);
    let ready = replayed(dir.path());
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
    s.intent("a", "acme", &[ev("a")]).unwrap();
    s.intent("b", "beta", &[ev("b")]).unwrap();
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
    let ready = replayed(dir.path());
    assert!(ready.is_empty());
}

#[tokio::test]
async fn a_torn_last_line_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = Spool::open(dir.path(), Options::default()).unwrap();
    s.intent("a", "acme", &[ev("a")]).unwrap();
    s.complete("a", &[Outcome::Success]).await.unwrap();
    drop(s);
    let seg = dir.path().join(&segments(dir.path())[0]);
    let mut f = OpenOptions::new().append(true).open(seg).unwrap();
    f.write_all(br#"{"t":"i","k":"b","org":"acme","ev":[{"id":"#)
        .unwrap();
    drop(f);
    let ready = replayed(dir.path());
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
    s.intent("a", "acme", &[ev("a")]).unwrap();
    let mut refused = false;
    for i in 0..10 {
        if let Err(SpoolError::Full(_)) = s.intent(&format!("k{i}"), "acme", &[ev("x")]) {
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
        s.intent(&k, "acme", &[ev(&k)]).unwrap();
        s.complete(&k, &[Outcome::Success]).await.unwrap();
        s.ack(vec![k]);
    }
    s.flush().await.unwrap();
    assert!(
        segments(dir.path()).len() <= 2,
        "{:?}",
        segments(dir.path())
    );
    // One request left unacked keeps its segment alive (and the later ones, which hold
    // the acks of the rest); only it comes back.
    s.intent("last", "acme", &[ev("last")]).unwrap();
    s.complete("last", &[Outcome::Success]).await.unwrap();
    for i in 20..30 {
        let k = format!("k{i}");
        s.intent(&k, "acme", &[ev(&k)]).unwrap();
        s.complete(&k, &[Outcome::Success]).await.unwrap();
        s.ack(vec![k]);
    }
    s.flush().await.unwrap();
    drop(s);
    let ready = replayed(dir.path());
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0].key, "last");
}

/// Many requests completing at once share syncs; each one's records are whole and in
/// place after a reopen, whichever segment they landed in.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_are_all_on_disk_when_their_completions_return() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        segment_bytes: 4096,
        max_bytes: 1 << 30,
    };
    let (s, _) = Spool::open(dir.path(), opts).unwrap();
    let tasks: Vec<_> = (0..400)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                let k = format!("k{i:03}");
                s.intent(&k, "acme", &[ev(&k), ev(&format!("{k}b"))])
                    .unwrap();
                tokio::task::yield_now().await;
                let o = if i % 3 == 0 {
                    Outcome::Failure(format!("no {i}"))
                } else {
                    Outcome::Success
                };
                s.complete(&k, &[o, Outcome::Success]).await.unwrap();
                // Half are acked: those must not come back.
                if i % 2 == 0 {
                    s.ack(vec![k]);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(s.depth(), 400);
    assert!(segments(dir.path()).len() > 2, "the spool rotated");
    drop(s);
    let (s, mut ready) = Spool::open(dir.path(), Options::default()).unwrap();
    ready.sort_by(|a, b| a.key.cmp(&b.key));
    let keys: Vec<String> = ready.iter().map(|r| r.key.clone()).collect();
    let want: Vec<String> = (0..400)
        .filter(|i| i % 2 == 1)
        .map(|i| format!("k{i:03}"))
        .collect();
    assert_eq!(keys, want);
    for r in &ready {
        let i: usize = r.key[1..].parse().unwrap();
        assert_eq!(r.events.len(), 2);
        assert_eq!(r.events[0]["id"], r.key.as_str());
        let (o, reason) = if i.is_multiple_of(3) {
            ("failure", json!(format!("no {i}")))
        } else {
            ("success", Value::Null)
        };
        assert_eq!(r.events[0]["outcome"], o, "{}", r.key);
        assert_eq!(r.events[0]["context"]["error"], reason, "{}", r.key);
        assert_eq!(r.events[1]["outcome"], "success");
    }
    // Acked after the replay, every segment is done with and none comes back.
    s.ack(keys);
    s.flush().await.unwrap();
    assert_eq!(s.depth(), 0);
    drop(s);
    assert!(
        segments(dir.path()).len() <= 1,
        "{:?}",
        segments(dir.path())
    );
    let ready = replayed(dir.path());
    assert!(ready.is_empty());
}

/// An intent that cannot be written is refused at once and counts for nothing; the
/// spool goes on once it can write again. A flush with nothing written returns.
#[tokio::test]
async fn a_spool_that_cannot_be_written_refuses_intents() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = Spool::open(dir.path(), Options::default()).unwrap();
    s.flush().await.unwrap();
    // A directory where the next segment would go makes its creation fail.
    fs::create_dir(dir.path().join(segment_name(1))).unwrap();
    assert!(matches!(
        s.intent("a", "acme", &[ev("a")]),
        Err(SpoolError::Io(_))
    ));
    assert_eq!(s.depth(), 0);
    fs::remove_dir(dir.path().join(segment_name(1))).unwrap();
    // Once the segment can be created, the spool goes on.
    s.intent("b", "acme", &[ev("b")]).unwrap();
    s.complete("b", &[Outcome::Success]).await.unwrap();
    drop(s);
    let ready = replayed(dir.path());
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0].key, "b");
}
