//! Witnesses end to end: a real server, real `auditrail witness` processes, a malicious
//! operator who rewrites the log behind the server's back, and a witness killed while it
//! works.
#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed test")]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use auditrail_core::cosignature::CosignatureVerifier;
use auditrail_core::merkle::{self, Frontier};
use auditrail_core::note::{Checkpoint, NoteSigner, split_note};
use auditrail_core::witness::AddCheckpoint;
use common::TestServer;
use common::process::{Serve, listening_after};
use serde_json::{Value, json};

const ORIGIN: &str = "auditrail.test/acme";

fn log_key() -> String {
    NoteSigner::new("auditrail.test", [42u8; 32])
        .unwrap()
        .verifier_key()
}

/// The witness's verifier key (made on first use in `dir`).
fn witness_key(dir: &Path, name: &str) -> String {
    let out = Command::new(common::BIN)
        .args(["witness", "--print-key", "--name", name, "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn witness(dir: &Path, name: &str, listen: &str) -> Serve {
    let mut child = Command::new(common::BIN)
        .args(["witness", "--listen", listen, "--name", name, "--data-dir"])
        .arg(dir)
        .arg("--log")
        .arg(format!("{ORIGIN}={}", log_key()))
        .env("AUDITRAIL_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let base = listening_after(&mut child, "auditrail witness listening on ");
    Serve { child, base }
}

async fn ingest(srv: &TestServer, token: &str, n: usize, tag: &str) {
    let events: Vec<Value> = (0..n)
        .map(|i| json!({"action": "updateProject", "actor": {"id": format!("u-{tag}-{i}")}, "resource": {"type": "PROJECT", "id": "p1"}}))
        .collect();
    let (s, b) = srv
        .post("/v1/events", token, json!({ "events": events }))
        .await;
    assert_eq!(s, 200, "{b}");
}

async fn latest(srv: &TestServer, token: &str) -> String {
    srv.http
        .get(format!("{}/v1/checkpoints/latest", srv.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits until the latest checkpoint covers `size` events and carries cosignatures from
/// every one of `ws`.
async fn wait_cosigned(
    srv: &TestServer,
    token: &str,
    size: u64,
    ws: &[CosignatureVerifier],
) -> String {
    for _ in 0..200 {
        let note = latest(srv, token).await;
        let (text, _) = split_note(&note).unwrap();
        let cp = Checkpoint::parse(text).unwrap();
        if cp.size >= size && ws.iter().all(|w| w.verify(&note).is_ok()) {
            return note;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "no cosigned checkpoint of {size}: {}",
        latest(srv, token).await
    );
}

/// What a malicious operator with the database does: rewrites one event's body (the one
/// by actor u-first-1), its leaf and every stored subtree hash above it, so the tree is
/// whole again and the server will sign its new root with its own key.
fn rewrite_history(data_dir: &Path) {
    let db = rusqlite::Connection::open(data_dir.join("auditrail.db")).unwrap();
    let org_num: i64 = db
        .query_row("SELECT num FROM orgs WHERE id = 'acme'", [], |r| r.get(0))
        .unwrap();
    let (rid, body): (i64, String) = db
        .query_row(
            "SELECT rid, body FROM events WHERE body LIKE '%\"u-first-1\"%'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let forged = body.replace("u-first-1", "u-someone-else");
    assert_ne!(body, forged);
    db.execute(
        "UPDATE events SET body = ?1, leaf = ?2 WHERE rid = ?3",
        rusqlite::params![forged, merkle::leaf_hash(forged.as_bytes()).to_vec(), rid],
    )
    .unwrap();
    let leaves: Vec<Vec<u8>> = db
        .prepare("SELECT leaf FROM events WHERE rid BETWEEN ?1 AND ?2 ORDER BY rid")
        .unwrap()
        .query_map([org_num << 40, (org_num << 40) | ((1 << 40) - 1)], |r| {
            r.get(0)
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    db.execute("DELETE FROM nodes WHERE org_num = ?1", [org_num])
        .unwrap();
    let mut f = Frontier::new();
    for l in leaves {
        f.push(l.try_into().unwrap(), |id, h| {
            if id.level >= 4 {
                db.execute(
                    "INSERT INTO nodes (org_num, level, idx, hash) VALUES (?1, ?2, ?3, ?4)",
                    rusqlite::params![org_num, id.level, id.index as i64, h.to_vec()],
                )
                .unwrap();
            }
        });
    }
    // The signed checkpoints of the old history go too.
    db.execute("DELETE FROM checkpoints WHERE org_num = ?1", [org_num])
        .unwrap();
}

fn verify_tiles(
    srv_base: &str,
    token: &str,
    witnesses: &[&str],
    min: usize,
) -> std::process::Output {
    let mut cmd = Command::new(common::BIN);
    cmd.args([
        "verify",
        &format!("{srv_base}/logs/acme"),
        "--quiet",
        "--public-key",
        &log_key(),
    ])
    .args(["--min-cosignatures", &min.to_string()])
    .env("AUDITRAIL_TOKEN", token);
    for w in witnesses {
        cmd.args(["--witness", w]);
    }
    cmd.output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_view_is_refused_by_the_witnesses_and_raises_the_alarm() {
    let dir = tempfile::tempdir().unwrap();
    let (w1dir, w2dir) = (dir.path().join("w1"), dir.path().join("w2"));
    let k1 = witness_key(&w1dir, "witness.test/w1");
    let k2 = witness_key(&w2dir, "witness.test/w2");
    let w1 = witness(&w1dir, "witness.test/w1", "127.0.0.1:0");
    let w2 = witness(&w2dir, "witness.test/w2", "127.0.0.1:0");
    let vs = [
        CosignatureVerifier::parse(&k1).unwrap(),
        CosignatureVerifier::parse(&k2).unwrap(),
    ];
    let (smtp_port, mut mail) = common::smtp::listener().await;
    let data = dir.path().join("data");
    let smtp = move |s: &mut auditrail_server::Settings| {
        s.checkpoint_interval = Duration::from_millis(100);
        s.exports.smtp = Some(auditrail_server::exports::notify::SmtpSettings {
            host: "127.0.0.1".into(),
            port: smtp_port,
            from: "audit@example.com".into(),
        });
    };
    let srv = TestServer::start_custom(&data, smtp).await;
    srv.create_org("acme").await;
    let admin = srv.key("acme", "admin").await;
    let viewer = srv.key("acme", "viewer").await;

    // Bad configurations are refused, naming the field.
    let (s, b) = srv
        .call(
            "PUT",
            "/v1/witnesses/w1",
            &admin,
            Some(json!({"url": w1.base, "verifier_key": log_key()})),
        )
        .await;
    assert_eq!(
        (s, b["error"]["details"][0]["field"].as_str()),
        (422, Some("verifier_key")),
        "{b}"
    );
    let (s, b) = srv
        .call(
            "PUT",
            "/v1/witnesses/w1",
            &viewer,
            Some(json!({"url": w1.base, "verifier_key": k1})),
        )
        .await;
    assert_eq!(s, 403, "{b}");
    for (name, base, key) in [("w1", &w1.base, &k1), ("w2", &w2.base, &k2)] {
        let (s, b) = srv
            .call(
                "PUT",
                &format!("/v1/witnesses/{name}"),
                &admin,
                Some(json!({"url": base, "verifier_key": key})),
            )
            .await;
        assert_eq!(s, 201, "{b}");
    }
    let (s, _) = srv
        .call(
            "PUT",
            "/v1/orgs/acme/admin-emails",
            &admin,
            Some(json!({"emails": ["secops@customer.example"]})),
        )
        .await;
    assert_eq!(s, 200);

    // Growth: every checkpoint is cosigned by both.
    ingest(&srv, &admin, 20, "first").await;
    let early = wait_cosigned(&srv, &viewer, 20, &vs).await;
    ingest(&srv, &admin, 20, "second").await;
    let before = wait_cosigned(&srv, &viewer, 44, &vs).await;
    let size_before = Checkpoint::parse(split_note(&before).unwrap().0)
        .unwrap()
        .size;
    let (_, list) = srv.get("/v1/witnesses", &admin).await;
    for w in list["witnesses"].as_array().unwrap() {
        assert!(w["state"]["size"].as_u64().unwrap() >= 44, "{w}");
        assert!(w["state"]["conflict"].is_null(), "{w}");
    }
    // The whole log verifies from its tiles, with both witnesses required.
    let out = verify_tiles(&srv.base, &viewer, &[&k1, &k2], 2);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    srv.stop().await;

    // The operator rewrites one event (actor u-first-1) and the tree above it.
    rewrite_history(&data);
    let srv = TestServer::start_custom(&data, smtp).await;
    ingest(&srv, &admin, 1, "third").await;

    // Both witnesses refuse; the alarm reaches the admins.
    let mut conflicts = 0;
    for _ in 0..200 {
        let (_, list) = srv.get("/v1/witnesses", &admin).await;
        conflicts = list["witnesses"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w["state"]["conflict"]["status"] == 422)
            .count();
        if conflicts == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(conflicts, 2);
    let after = latest(&srv, &viewer).await;
    assert!(vs.iter().all(|w| w.verify(&after).is_err()), "{after}");
    let (to, body) = tokio::time::timeout(Duration::from_secs(10), mail.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(to, "secops@customer.example");
    assert!(body.contains("refused"), "{body}");
    // One event per witness in the org's own log (each written as its alarm is raised).
    let mut alarms: Vec<Value> = Vec::new();
    for _ in 0..200 {
        alarms = srv
            .all_events(&admin)
            .await
            .into_iter()
            .filter(|e| e["action"] == "witnessConflict")
            .collect();
        if alarms.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(alarms.len(), 2, "one event per witness");
    assert_eq!(alarms[0]["outcome"], "failure");
    let metrics = srv
        .http
        .get(format!("{}/metrics", srv.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("auditrail_witness_conflicts_total 2"),
        "{metrics}"
    );
    // The Integrity page shows it.
    let (s, link) = srv
        .post(
            "/v1/orgs/acme/viewer-tokens",
            &admin,
            json!({"actor_id": "u-1", "role": "viewer", "ttl_seconds": 600}),
        )
        .await;
    assert_eq!(s, 201, "{link}");
    let page = integrity_page(&srv, link["url"].as_str().unwrap()).await;
    assert_eq!(page.matches("alarm witness-conflict").count(), 2, "{page}");
    assert!(page.contains("witness.test&#x2f;w1"), "{page}");

    // Verifying with the witnesses required fails on the rewritten log; without them the
    // operator's own signature alone would pass.
    let out = verify_tiles(&srv.base, &viewer, &[&k1, &k2], 1);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("0 valid cosignature(s)"), "{err}");
    let out = verify_tiles(&srv.base, &viewer, &[], 0);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A rollback: the older (genuinely signed) checkpoint is refused by the witness.
    let old_size = Checkpoint::parse(split_note(&early).unwrap().0)
        .unwrap()
        .size;
    let http = reqwest::Client::new();
    for (base, old) in [(&w1.base, old_size), (&w1.base, size_before)] {
        let r = http
            .post(format!("{base}/add-checkpoint"))
            .body(
                AddCheckpoint {
                    old_size: old,
                    proof: vec![],
                    checkpoint: early.clone(),
                }
                .encode(),
            )
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert!(status == 409 || status == 400, "{status}");
        if status == 409 {
            assert_eq!(r.headers()["content-type"], "text/x.tlog.size");
            assert_eq!(r.text().await.unwrap().trim(), size_before.to_string());
        }
    }
    srv.stop().await;
}

async fn integrity_page(srv: &TestServer, link: &str) -> String {
    let raw = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = raw.get(link).send().await.unwrap();
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    raw.get(format!("{}/ui/integrity", srv.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// SIGKILL the witness again and again while a log keeps submitting: every cosignature
/// it ever answered is for a state it kept, and after each restart it continues from
/// what it kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_witness_never_cosigns_what_it_did_not_keep() {
    let dir = tempfile::tempdir().unwrap();
    let wdir = dir.path().join("w");
    let vk = CosignatureVerifier::parse(&witness_key(&wdir, "witness.test/crash")).unwrap();
    let log = NoteSigner::new("auditrail.test", [42u8; 32]).unwrap();
    let leaves: Vec<merkle::Hash> = (0..2000u64)
        .map(|i| merkle::leaf_hash(&i.to_be_bytes()))
        .collect();
    let mth = |l: &[merkle::Hash]| {
        let mut f = Frontier::new();
        for h in l {
            f.push(*h, |_, _| {});
        }
        f.root()
    };
    // The signed checkpoint of `next` leaves and the add-checkpoint body from `known`.
    let submission = |known: u64, next: u64| -> (String, String) {
        let proof = if known == 0 {
            vec![]
        } else {
            merkle::consistency_ranges(known, next)
                .into_iter()
                .map(|(a, b)| mth(&leaves[a as usize..b as usize]))
                .collect()
        };
        let cp = Checkpoint {
            origin: ORIGIN.into(),
            size: next,
            root: mth(&leaves[..next as usize]),
        };
        let note = log.sign(&cp.body()).unwrap();
        let body = AddCheckpoint {
            old_size: known,
            proof,
            checkpoint: note.clone(),
        }
        .encode();
        (note, body)
    };
    let http = reqwest::Client::new();
    let (mut known, mut cosigned_max, mut size) = (0u64, 0u64, 0u64);
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..12 {
        let mut w = witness(&wdir, "witness.test/crash", "127.0.0.1:0");
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let kill_after = Duration::from_millis(5 + rng % 60);
        let base = w.base.clone();
        let started = std::time::Instant::now();
        loop {
            if started.elapsed() >= kill_after && round > 0 {
                break;
            }
            if size + 3 > leaves.len() as u64 {
                break;
            }
            let next = size + 1 + rng % 3;
            let (note, body) = submission(known, next);
            let r = match http
                .post(format!("{base}/add-checkpoint"))
                .body(body)
                .send()
                .await
            {
                Ok(r) => r,
                Err(_) => break,
            };
            match r.status().as_u16() {
                200 => {
                    let lines = r.text().await.unwrap();
                    assert!(vk.verify(&format!("{note}{lines}")).is_ok());
                    known = next;
                    size = next;
                    cosigned_max = cosigned_max.max(next);
                }
                409 => known = r.text().await.unwrap().trim().parse().unwrap(),
                s => panic!("unexpected {s}: {}", r.text().await.unwrap()),
            }
            if round == 0 && size > 20 {
                break;
            }
        }
        // SIGKILL mid-flight: a request may be between its check and its commit.
        let killer = {
            let base = base.clone();
            let (_, body) = submission(known, size + 1);
            let http = http.clone();
            tokio::spawn(async move {
                match http
                    .post(format!("{base}/add-checkpoint"))
                    .body(body)
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => Some(size + 1),
                    _ => None,
                }
            })
        };
        tokio::time::sleep(Duration::from_micros(rng % 3000)).await;
        w.child.kill().unwrap();
        w.child.wait().unwrap();
        if let Some(s) = killer.await.unwrap() {
            cosigned_max = cosigned_max.max(s);
        }
        // What the witness kept is at least every size it cosigned.
        let state = rusqlite::Connection::open(wdir.join("witness.sqlite"))
            .unwrap()
            .query_row("SELECT size FROM logs WHERE origin = ?1", [ORIGIN], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap() as u64;
        assert!(
            state >= cosigned_max,
            "round {round}: kept {state}, cosigned {cosigned_max}"
        );
        known = state;
        size = size.max(state);
    }
    assert!(cosigned_max > 20);
}
