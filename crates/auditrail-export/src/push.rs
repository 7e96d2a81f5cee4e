//! The request bodies of push streams, one entry per event, so a batch can be cut to
//! the receiver's limits before it is recorded and sent:
//!
//! - `https`: NDJSON, each line the event as exported (`leaf_hash` added);
//! - `splunk_hec`: HTTP Event Collector events, one JSON object per line, the event
//!   itself under `event`, `time` its `received_at` in epoch seconds;
//! - `datadog`: a JSON array of log entries for the logs intake v2, the event's JSON
//!   text in `message` (Datadog parses it into attributes).
//!
//! Every entry carries the event's `id` and `seq`, so a receiver can deduplicate: a push
//! stream delivers at least once.

use auditrail_core::event::with_leaf_hash;
use auditrail_core::export::Row;
use auditrail_core::ocsf::Mapper;
use auditrail_store::StoredEvent;
use serde_json::Value;

/// What a Splunk HEC event says besides the event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SplunkFields {
    pub source: String,
    pub sourcetype: String,
    pub index: Option<String>,
    pub host: String,
}

/// What a Datadog log entry says besides the event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatadogFields {
    pub service: String,
    pub ddsource: String,
    /// `key:value` tags, `org:<org>` among them.
    pub ddtags: String,
    pub hostname: String,
}

/// How a push stream's body is laid out. The members every entry of a stream shares
/// are rendered once, when the layout is made, not once an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushBody {
    Ndjson,
    /// The HEC members after `time` and before `event`: `,"host":…,"index":…`.
    Splunk(String),
    /// A Datadog entry up to its `message`: `{"ddsource":…,"message":`.
    Datadog(String),
}

/// `v` as a JSON string.
fn quoted(v: &str) -> String {
    Value::String(v.to_owned()).to_string()
}

/// `,"key":value` for each member, the values as JSON strings.
fn members(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!(",\"{k}\":{}", quoted(v)))
        .collect()
}

#[derive(Debug, thiserror::Error)]
#[error("seq {seq}: {reason}")]
pub struct EntryError {
    pub seq: u64,
    pub reason: String,
}

impl PushBody {
    pub fn splunk(f: &SplunkFields) -> Self {
        let mut m = vec![
            ("host", f.host.as_str()),
            ("source", &f.source),
            ("sourcetype", &f.sourcetype),
        ];
        if let Some(i) = &f.index {
            m.push(("index", i));
        }
        PushBody::Splunk(members(&m))
    }

    pub fn datadog(f: &DatadogFields) -> Self {
        let m = members(&[
            ("ddsource", &f.ddsource),
            ("ddtags", &f.ddtags),
            ("hostname", &f.hostname),
            ("service", &f.service),
        ]);
        PushBody::Datadog(format!("{{{},\"message\":", &m[1..]))
    }

    /// The bytes of one event's entry (without separator): the event as exported, or
    /// its OCSF record when `ocsf` maps it.
    pub fn entry(&self, e: &StoredEvent, ocsf: Option<&Mapper>) -> Result<Vec<u8>, EntryError> {
        let line = match ocsf {
            None => with_leaf_hash(&e.body, &e.leaf),
            Some(m) => m.record(&e.body).map_err(|err| EntryError {
                seq: e.seq,
                reason: err.reason,
            })?,
        };
        Ok(match self {
            PushBody::Ndjson => line.into_bytes(),
            // The stored body is canonical JSON already: it goes in as it is.
            PushBody::Splunk(shared) => format!(
                "{{\"time\":{}{shared},\"event\":{line}}}",
                epoch_seconds(e)?
            )
            .into_bytes(),
            PushBody::Datadog(head) => format!("{head}{}}}", quoted(&line)).into_bytes(),
        })
    }

    /// Bytes a body of `n` entries adds around and between them.
    pub fn overhead(&self, n: usize) -> usize {
        match self {
            PushBody::Ndjson | PushBody::Splunk(_) => n, // a newline after each
            PushBody::Datadog(_) => 2 + n.saturating_sub(1), // [ , ]
        }
    }

    /// The body of `entries`, in order.
    pub fn join(&self, entries: &[Vec<u8>]) -> Vec<u8> {
        let len: usize = entries.iter().map(Vec::len).sum::<usize>() + self.overhead(entries.len());
        let mut out = Vec::with_capacity(len);
        match self {
            PushBody::Ndjson | PushBody::Splunk(_) => {
                for e in entries {
                    out.extend_from_slice(e);
                    out.push(b'\n');
                }
            }
            PushBody::Datadog(_) => {
                out.push(b'[');
                for (i, e) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(e);
                }
                out.push(b']');
            }
        }
        out
    }

    pub fn content_type(&self) -> &'static str {
        match self {
            PushBody::Ndjson => "application/x-ndjson",
            PushBody::Splunk(_) | PushBody::Datadog(_) => "application/json",
        }
    }
}

/// How many of `entries` (in order) fit in one body of at most `max_bytes`: at least
/// one, so an event larger than the cap still goes (alone).
pub fn fitting(body: &PushBody, entries: &[Vec<u8>], max_bytes: usize) -> usize {
    let mut total = body.overhead(0);
    for (i, e) in entries.iter().enumerate() {
        total += e.len() + body.overhead(i + 1) - body.overhead(i);
        if total > max_bytes {
            return i.max(1);
        }
    }
    entries.len()
}

/// `received_at` in seconds since the epoch, to the millisecond, as JSON.
fn epoch_seconds(e: &StoredEvent) -> Result<String, EntryError> {
    let bad = |reason: &str| EntryError {
        seq: e.seq,
        reason: reason.to_owned(),
    };
    let row = Row::parse(&e.body).map_err(|err| bad(&err.to_string()))?;
    let at = auditrail_core::time::parse_rfc3339(&row.received_at)
        .ok_or_else(|| bad("no readable received_at"))?;
    let ms = at.timestamp_millis();
    Ok(format!(
        "{}.{:03}",
        ms.div_euclid(1000),
        ms.rem_euclid(1000)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64) -> StoredEvent {
        let body = format!(
            r#"{{"action":"a","id":"e{seq}","org_id":"acme","received_at":"2026-12-06T17:00:00.250Z","seq":{seq}}}"#
        );
        StoredEvent {
            seq,
            leaf: auditrail_core::merkle::leaf_hash(body.as_bytes()),
            body,
        }
    }

    #[test]
    fn each_layout_carries_id_seq_and_leaf() {
        let e = ev(7);
        let nd = String::from_utf8(PushBody::Ndjson.entry(&e, None).unwrap()).unwrap();
        let v: Value = serde_json::from_str(&nd).unwrap();
        assert_eq!((v["id"].as_str(), v["seq"].as_u64()), (Some("e7"), Some(7)));
        assert_eq!(v["leaf_hash"], hex::encode(e.leaf));

        let splunk = PushBody::splunk(&SplunkFields {
            source: "auditrail".into(),
            sourcetype: "auditrail:event".into(),
            index: Some("audit".into()),
            host: "auditrail".into(),
        });
        let v: Value = serde_json::from_slice(&splunk.entry(&e, None).unwrap()).unwrap();
        assert_eq!(v["time"], 1_796_576_400.25);
        assert_eq!(v["index"], "audit");
        assert_eq!(v["event"]["seq"], 7);

        let dd = PushBody::datadog(&DatadogFields {
            service: "auditrail".into(),
            ddsource: "auditrail".into(),
            ddtags: "org:acme".into(),
            hostname: "auditrail".into(),
        });
        let body = dd.join(&[
            dd.entry(&ev(1), None).unwrap(),
            dd.entry(&ev(2), None).unwrap(),
        ]);
        let v: Value = serde_json::from_slice(&body).unwrap();
        let msg: Value = serde_json::from_str(v[1]["message"].as_str().unwrap()).unwrap();
        assert_eq!(msg["seq"], 2);
        assert_eq!(v.as_array().unwrap().len(), 2);
    }

    #[test]
    fn batches_are_cut_to_the_byte_cap() {
        let dd = PushBody::datadog(&DatadogFields::default());
        let entries: Vec<Vec<u8>> = (0..10).map(|_| vec![b'x'; 100]).collect();
        // [ + 3 entries + 2 commas + ] = 304 bytes.
        assert_eq!(fitting(&dd, &entries, 304), 3);
        assert_eq!(fitting(&dd, &entries, 303), 2);
        assert_eq!(dd.join(&entries[..3]).len(), 304);
        let nd = PushBody::Ndjson;
        assert_eq!(fitting(&nd, &entries, 303), 3);
        assert_eq!(nd.join(&entries[..3]).len(), 303);
        assert_eq!(fitting(&nd, &entries, 10), 1, "one event always goes");
        assert_eq!(fitting(&nd, &entries, 1 << 20), 10);
    }
}
