//! A Server-Sent Events reader over a real HTTP response, for the live tail's tests.

use std::time::Duration;

use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SseEvent {
    /// `message` unless the server named it.
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

pub struct SseReader {
    resp: reqwest::Response,
    buf: Vec<u8>,
    pub comments: usize,
}

/// Opens `GET {base}{path}` as an event stream; the status and the reader (when 200).
pub async fn open(
    base: &str,
    path: &str,
    token: &str,
    last_event_id: Option<&str>,
) -> (u16, Result<SseReader, Value>) {
    let mut req = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(token);
    if let Some(id) = last_event_id {
        req = req.header("Last-Event-ID", id);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    if status != 200 {
        let body = resp.json().await.unwrap_or(Value::Null);
        return (status, Err(body));
    }
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    (
        status,
        Ok(SseReader {
            resp,
            buf: Vec::new(),
            comments: 0,
        }),
    )
}

impl SseReader {
    /// The next dispatched event (comments counted and skipped), or None at the end of
    /// the stream; panics if nothing comes within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<SseEvent> {
        tokio::time::timeout(wait, self.next_inner())
            .await
            .expect("no event in time")
    }

    async fn next_inner(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let raw: Vec<u8> = self.buf.drain(..end + 2).collect();
                let block = String::from_utf8(raw).unwrap();
                let mut ev = SseEvent {
                    event: "message".into(),
                    ..SseEvent::default()
                };
                let mut any = false;
                for line in block.lines() {
                    if line.starts_with(':') {
                        self.comments += 1;
                        continue;
                    }
                    let (name, value) = line.split_once(": ").unwrap_or((line, ""));
                    any = true;
                    match name {
                        "event" => ev.event = value.to_owned(),
                        "id" => ev.id = Some(value.to_owned()),
                        "data" => {
                            if !ev.data.is_empty() {
                                ev.data.push('\n');
                            }
                            ev.data.push_str(value)
                        }
                        _ => {}
                    }
                }
                if any {
                    return Some(ev);
                }
                continue;
            }
            match self.resp.chunk().await.unwrap() {
                Some(c) => self.buf.extend_from_slice(&c),
                None => return None,
            }
        }
    }
}
