//! Exports end to end over HTTP: filters against a known event set, the exact CSV
//! header read back by a real CSV reader, formula injection, NDJSON re-hashing, Parquet
//! read back with arrow, roles and tenancy, the checkpoint an export is cut at, audit
//! events, email to a real SMTP listener, the signed webhook, expiry → 410.
#![expect(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

mod common;

use std::time::Duration;

use arrow_array::Array;
use base64::Engine;
use common::{TestServer, independent_leaf, independent_root};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const DAY: i64 = 86_400;

/// A UTC timestamp `days` days before now, at `hour`:00.
fn ago(days: i64, hour: u32) -> String {
    let d = chrono::Utc::now().date_naive() - chrono::Duration::days(days);
    format!("{}T{hour:02}:00:00Z", d.format("%Y-%m-%d"))
}

fn day(days: i64) -> String {
    (chrono::Utc::now().date_naive() - chrono::Duration::days(days))
        .format("%Y-%m-%d")
        .to_string()
}

const TRICKY: [&str; 8] = [
    "comma, inside",
    "quote \" inside",
    "new\nline",
    "non-ASCII é 中文 🎉",
    "=HYPERLINK(\"http://evil\")",
    "+1",
    "-2",
    "@SUM(A1)",
];

/// 48 events over four days (10, 9, 8, 7 days ago), two actors, two graphs, tricky text.
fn known_events() -> Vec<Value> {
    (0..48)
        .map(|i| {
            let t = TRICKY[i % TRICKY.len()];
            json!({
                "id": format!("ev-{i}"),
                "occurred_at": ago(10 - (i as i64 / 12), (i % 12) as u32 + 1),
                "action": if i % 3 == 0 { "deleteGraph" } else { "updateGraph" },
                "actor": {"id": format!("u-{}", i % 2), "type": "USER", "role": "ORG_ADMIN", "email": format!("u{}@example.com", i % 2), "name": t.replace('\n', " ")},
                "resource": {"type": "GRAPH", "id": t.replace('\n', " ")},
                "scope": {"id": format!("g-{}", i % 4 / 2), "type": "GRAPH"},
                "details": {"note": t, "n": i},
            })
        })
        .collect()
}

async fn export(srv: &TestServer, token: &str, req: Value) -> (Value, Vec<u8>) {
    let (s, b) = srv.post("/v1/exports", token, req).await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(b["status"], "queued");
    let job = common::export_done(srv, token, b["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let (s, bytes) = common::export_file(srv, token, job["id"].as_str().unwrap()).await;
    assert_eq!(s, 200);
    assert_eq!(job["bytes"], bytes.len() as u64);
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    assert_eq!(job["sha256"], sha, "recorded hash is the file's");
    (job, bytes)
}

fn neutral(t: &str) -> String {
    if t.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{t}")
    } else {
        t.to_owned()
    }
}

#[tokio::test]
async fn filtered_csv_ndjson_parquet_with_roles_checkpoint_and_audit() {
    let dir = tempfile::tempdir().unwrap();
    let srv = TestServer::start(dir.path()).await;
    srv.create_org("acme").await;
    srv.create_org("globex").await;
    let admin = srv.key("acme", "admin").await;
    let viewer = srv.key("acme", "viewer").await;
    let ingest = srv.key("acme", "ingest").await;
    let other = srv.key("globex", "admin").await;
    let events = known_events();
    let (s, b) = srv
        .post("/v1/events", &ingest, json!({"events": events}))
        .await;
    assert_eq!(s, 200, "{b}");

    // Day 9 only, actor u-1, graph g-0: computed from the known set independently.
    let expect: Vec<&Value> = events
        .iter()
        .filter(|e| e["occurred_at"].as_str().unwrap().starts_with(&day(9)))
        .filter(|e| e["actor"]["id"] == "u-1" && e["scope"]["id"] == "g-0")
        .collect();
    assert!(expect.len() >= 2);
    let (job, csv_bytes) = export(
        &srv,
        &admin,
        json!({"from": day(9), "to": day(8), "actor_id": "u-1", "scope_id": "g-0", "format": "csv"}),
    )
    .await;
    assert_eq!(job["row_count"], expect.len() as u64);
    assert_eq!(job["actor_id"], "u-1");
    let mut r = csv::Reader::from_reader(csv_bytes.as_slice());
    assert_eq!(
        r.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "Timestamp",
            "Action",
            "Resource_ID",
            "Resource_Type",
            "Details",
            "Actor_ID",
            "Actor_Type",
            "Effective_Role",
            "Actor_Email",
            "Actor_Name",
            "Graph_ID"
        ]
    );
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), expect.len());
    for (row, e) in rows.iter().zip(&expect) {
        let t = e["resource"]["id"].as_str().unwrap();
        assert_eq!(e["details"]["note"].as_str().unwrap().replace('\n', " "), t);
        assert_eq!(&row[0], e["occurred_at"].as_str().unwrap());
        assert_eq!(&row[1], e["action"].as_str().unwrap());
        assert_eq!(
            &row[2],
            neutral(t),
            "Resource_ID round-trips, formulas neutralized"
        );
        assert_eq!(&row[3], "GRAPH");
        assert_eq!(
            serde_json::from_str::<Value>(&row[4]).unwrap(),
            e["details"]
        );
        assert_eq!((&row[5], &row[6], &row[7]), ("u-1", "USER", "ORG_ADMIN"));
        assert_eq!(&row[8], "u1@example.com");
        assert_eq!(&row[9], neutral(t));
        assert_eq!(&row[10], "g-0");
    }

    // Action filter over the whole range; NDJSON lines re-hash to their leaf_hash.
    let deletes = events
        .iter()
        .filter(|e| e["action"] == "deleteGraph")
        .count();
    let (job, nd) = export(
        &srv,
        &admin,
        json!({"from": day(11), "to": day(0), "action": "deleteGraph", "format": "ndjson"}),
    )
    .await;
    let lines: Vec<Value> = String::from_utf8(nd)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        (lines.len(), job["row_count"].as_u64()),
        (deletes, Some(deletes as u64))
    );
    for l in &lines {
        assert_eq!(l["action"], "deleteGraph");
        assert_eq!(l["leaf_hash"], hex::encode(independent_leaf(l)));
    }

    // The checkpoint beside the export signs a root over every event up to its size.
    let cut = job["checkpoint_size"].as_u64().unwrap();
    let note = srv
        .http
        .get(format!(
            "{}/v1/exports/{}/checkpoint",
            srv.base,
            job["id"].as_str().unwrap()
        ))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let body: Vec<&str> = note.lines().collect();
    assert_eq!(body[0], "auditrail.test/acme");
    assert_eq!(body[1], cut.to_string());
    let all = srv.all_events(&admin).await;
    let leaves: Vec<[u8; 32]> = all
        .iter()
        .take(cut as usize)
        .map(independent_leaf)
        .collect();
    assert_eq!(
        body[2],
        base64::engine::general_purpose::STANDARD.encode(independent_root(&leaves))
    );
    assert!(lines.iter().all(|l| l["seq"].as_u64().unwrap() <= cut));

    // Parquet, full range, read back with arrow.
    let (job, pq) = export(
        &srv,
        &admin,
        json!({"from": day(11), "to": day(-1), "format": "parquet"}),
    )
    .await;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        bytes::Bytes::from(pq),
    )
    .unwrap()
    .build()
    .unwrap();
    let mut seqs = Vec::new();
    let mut details = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let seq = batch
            .column_by_name("seq")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow_array::UInt64Array>()
            .unwrap();
        seqs.extend(seq.values().iter().copied());
        let d = batch
            .column_by_name("details")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow_array::StringArray>()
            .unwrap();
        details.extend((0..d.len()).map(|i| d.value(i).to_owned()));
        let ts = batch.column_by_name("occurred_at").unwrap();
        assert!(matches!(
            ts.data_type(),
            arrow_schema::DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, Some(_))
        ));
    }
    assert_eq!(seqs.len() as u64, job["row_count"].as_u64().unwrap());
    let all = srv.all_events(&admin).await;
    let in_range: Vec<&Value> = all
        .iter()
        .take(job["checkpoint_size"].as_u64().unwrap() as usize)
        .collect();
    assert_eq!(
        seqs,
        in_range
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect::<Vec<_>>()
    );
    let first_known = in_range.iter().position(|e| e["id"] == "ev-0").unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&details[first_known]).unwrap(),
        events[0]["details"]
    );

    // Full layout adds Seq, Event_ID, Received_At, Leaf_Hash.
    let (_, full) = export(
        &srv,
        &admin,
        json!({"from": day(10), "to": day(9), "format": "csv", "layout": "full", "gzip": true}),
    )
    .await;
    let mut gz = flate2::read::GzDecoder::new(full.as_slice());
    let mut text = String::new();
    std::io::Read::read_to_string(&mut gz, &mut text).unwrap();
    let mut r = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(
        r.headers().unwrap().iter().skip(11).collect::<Vec<_>>(),
        ["Seq", "Event_ID", "Received_At", "Leaf_Hash"]
    );
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 12);
    for row in &rows {
        let ev = all.iter().find(|e| e["id"] == row[12]).unwrap();
        assert_eq!(row[11], ev["seq"].to_string());
        assert_eq!(&row[14], ev["leaf_hash"].as_str().unwrap());
    }

    // Roles and tenancy.
    let req = json!({"from": day(2), "to": day(1)});
    assert_eq!(srv.post("/v1/exports", &viewer, req.clone()).await.0, 403);
    assert_eq!(srv.post("/v1/exports", &ingest, req.clone()).await.0, 403);
    let (s, list) = srv.get("/v1/exports", &viewer).await;
    assert_eq!(s, 200);
    let listed = list["exports"].as_array().unwrap();
    assert_eq!(listed.len(), 4);
    let id = listed[0]["id"].as_str().unwrap();
    for k in [
        "status",
        "requester",
        "row_count",
        "bytes",
        "sha256",
        "created_at",
        "completed_at",
        "expires_at",
        "download_url",
    ] {
        assert!(listed[0].get(k).is_some(), "{k} listed");
    }
    assert_eq!(common::export_file(&srv, &viewer, id).await.0, 403);
    assert_eq!(common::export_file(&srv, &ingest, id).await.0, 403);
    assert_eq!(srv.get(&format!("/v1/exports/{id}"), &other).await.0, 404);
    assert_eq!(common::export_file(&srv, &other, id).await.0, 404);
    assert!(
        srv.get("/v1/exports", &other).await.1["exports"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Bad requests name the field and create nothing.
    for (body, field) in [
        (json!({"from": day(1), "to": day(2)}), "from"),
        (json!({"from": "yesterday", "to": day(1)}), "from"),
        (json!({"from": day(400), "to": day(1)}), "to"),
        (json!({"to": day(1)}), "from"),
        (
            json!({"from": day(2), "to": day(1), "format": "xlsx"}),
            "format",
        ),
        (
            json!({"from": day(2), "to": day(1), "notify_email": "nobody"}),
            "notify_email",
        ),
    ] {
        let (s, b) = srv.post("/v1/exports", &admin, body.clone()).await;
        assert_eq!(s, 422, "{body} → {b}");
        assert_eq!(b["error"]["details"][0]["field"], field, "{body} → {b}");
    }
    assert_eq!(
        srv.get("/v1/exports", &admin).await.1["exports"]
            .as_array()
            .unwrap()
            .len(),
        4
    );

    // Requests, completions and downloads are AUDIT_JOB events by the requester.
    let log = srv.all_events(&admin).await;
    let key_id = auditrail_server::auth::key_id_of(&admin).unwrap();
    for action in ["requestExport", "completeExport", "downloadExport"] {
        let n = log
            .iter()
            .filter(|e| {
                e["action"] == action
                    && e["resource"]["type"] == "AUDIT_JOB"
                    && e["actor"]["id"] == key_id
            })
            .count();
        assert_eq!(n, 4, "{action}");
    }
    srv.stop().await;
}

/// A minimal HTTP server that answers 200 and hands over (headers, body) of each POST.
async fn webhook_listener() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (sock, _) = l.accept().await.unwrap();
            let mut r = BufReader::new(sock);
            let mut head = String::new();
            let mut line = String::new();
            loop {
                line.clear();
                r.read_line(&mut line).await.unwrap();
                if line == "\r\n" {
                    break;
                }
                head.push_str(&line.to_ascii_lowercase());
            }
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            let mut body = vec![0u8; len];
            r.read_exact(&mut body).await.unwrap();
            r.get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            tx.send((head, String::from_utf8(body).unwrap())).unwrap();
        }
    });
    (url, rx)
}

/// Decodes a quoted-printable body (soft line breaks and `=XX`), as a mail client does.
fn quoted_printable(s: &str) -> String {
    let s = s.replace("=\r\n", "");
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'='
            && i + 2 < b.len()
            && b[i + 1].is_ascii_hexdigit()
            && b[i + 2].is_ascii_hexdigit()
        {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn emailed_signed_link_webhook_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let (port, mut mail) = common::smtp::listener().await;
    let srv = TestServer::start_custom(dir.path(), |s| {
        s.exports.ttl = Duration::from_secs(3);
        s.exports.smtp = Some(auditrail_server::exports::notify::SmtpSettings {
            host: "127.0.0.1".into(),
            port,
            from: "audit@example.com".into(),
        });
    })
    .await;
    srv.create_org("acme").await;
    let admin = srv.key("acme", "admin").await;
    let (hook_url, mut hooks) = webhook_listener().await;
    let (s, hook) = srv
        .call(
            "PUT",
            "/v1/orgs/acme/export-webhook",
            &admin,
            Some(json!({"url": hook_url})),
        )
        .await;
    assert_eq!(s, 200, "{hook}");
    let secret = hook["secret"].as_str().unwrap().to_owned();
    let (s, b) = srv
        .post(
            "/v1/events",
            &admin,
            json!({"action": "addProject", "details": {"n": 1}}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = srv
        .post(
            "/v1/exports",
            &admin,
            json!({"from": day(1), "to": day(-1), "notify_email": "ada@example.com"}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let id = b["id"].as_str().unwrap().to_owned();

    let (to, message) = tokio::time::timeout(Duration::from_secs(30), mail.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(to, "ada@example.com");
    assert!(
        message.contains("Subject: Your audit log export for acme is ready"),
        "{message}"
    );
    let message = quoted_printable(&message);
    let link = message
        .split_whitespace()
        .find(|w| w.contains("/download?"))
        .expect("a download link")
        .to_owned();
    assert!(link.starts_with(&srv.base), "{link}");
    let job = common::export_done(&srv, &admin, &id).await;

    // The link works without a key, for this export only.
    let r = srv.http.get(&link).send().await.unwrap();
    assert_eq!(r.status(), 200, "{link}\n{message}");
    let bytes = r.bytes().await.unwrap();
    assert_eq!(
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
        job["sha256"].as_str().unwrap()
    );
    let tampered = link.replace(&format!("/{id}/"), "/exp_00000000000000000000/");
    assert_eq!(srv.http.get(&tampered).send().await.unwrap().status(), 403);
    let later = {
        let (base, exp) = link.split_once("expires=").unwrap();
        let (n, rest) = exp.split_once('&').unwrap();
        format!("{base}expires={}&{rest}", n.parse::<i64>().unwrap() + DAY)
    };
    assert_eq!(
        srv.http.get(&later).send().await.unwrap().status(),
        403,
        "expiry is signed"
    );
    assert_eq!(
        srv.http
            .get(format!("{}/v1/exports/{id}/download", srv.base))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // The webhook got a signed JSON POST.
    let (head, body) = tokio::time::timeout(Duration::from_secs(30), hooks.recv())
        .await
        .unwrap()
        .unwrap();
    let sig = head
        .lines()
        .find_map(|l| l.strip_prefix("auditrail-signature:"))
        .unwrap()
        .trim()
        .to_owned();
    let t: i64 = sig
        .split(',')
        .next()
        .unwrap()
        .strip_prefix("t=")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        sig,
        auditrail_server::exports::notify::webhook_signature(&secret, t, &body)
    );
    let payload: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (payload["type"].as_str(), payload["export"]["id"].as_str()),
        (Some("export.succeeded"), Some(id.as_str()))
    );

    // Secrets kept among the settings are sealed with the server's secret key: the
    // webhook secret, the link key and the org's HMAC key are stored only as `v1:` boxes,
    // and the webhook secret is in no file of the data dir.
    let sealed: Vec<(String, String)> = {
        let db = rusqlite::Connection::open(dir.path().join("auditrail.db")).unwrap();
        let mut st = db
            .prepare("SELECT name, value FROM settings WHERE name IN ('org/acme/export_webhook', 'org/acme/hmac_key', 'export_link_key')")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(sealed.len(), 3, "{sealed:?}");
    for (name, value) in &sealed {
        assert!(value.starts_with("v1:"), "{name} is stored in clear");
    }
    let secret_hex = secret.trim_start_matches("whsec_");
    for p in common::files_under(dir.path()) {
        let bytes = std::fs::read(&p).unwrap();
        assert!(
            !bytes
                .windows(secret_hex.len())
                .any(|w| w == secret_hex.as_bytes()),
            "the webhook secret is in {}",
            p.display()
        );
    }

    // After the TTL: the file is gone, status expired, downloads 410 by key and by link.
    let file = dir.path().join("exports").join(format!("{id}.csv"));
    assert!(file.exists());
    let mut status = String::new();
    for _ in 0..200 {
        status = srv.get(&format!("/v1/exports/{id}"), &admin).await.1["status"]
            .as_str()
            .unwrap()
            .to_owned();
        if status == "expired" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "expired");
    assert!(!file.exists(), "expired file deleted");
    assert_eq!(common::export_file(&srv, &admin, &id).await.0, 410);
    assert_eq!(srv.http.get(&link).send().await.unwrap().status(), 410);
    let log = srv.all_events(&admin).await;
    let via_link = log
        .iter()
        .filter(|e| e["action"] == "downloadExport" && e["details"]["via"] == "signed_link")
        .count();
    assert_eq!(via_link, 1);
    srv.stop().await;
}
