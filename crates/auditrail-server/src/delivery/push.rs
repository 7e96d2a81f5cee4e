//! Sending one batch to a push stream's receiver (`https`, `splunk_hec`, `datadog`),
//! through the outbound address policy, and reading its answer:
//!
//! - 2xx: delivered;
//! - 429, or 503 with `Retry-After`: retried after the time it asks for (at most
//!   [`MAX_RETRY_AFTER`]);
//! - 413 to a request of several events: sent again at once in halves, and the stream
//!   keeps to the smaller size from then on; 413 to a single event, and 400, 401, 403,
//!   404, 422: a refusal that will not heal by itself: the stream is in `error` and is
//!   tried again only now and then, never hammered;
//! - anything else, a timeout or a dropped connection: retried with backoff.
//!
//! Only the status is kept of a refusal, never the receiver's body.
//!
//! The batch's range was recorded before: a retry sends the same events with the same
//! idempotency key, and the receiver deduplicates by each event's `id` and `seq`.

use std::time::Duration;

use auditrail_core::ocsf::Mapper;
use auditrail_export::push::{DatadogFields, PushBody, SplunkFields, fitting};
use auditrail_store::{Destination, StoredEvent};
use sha2::{Digest, Sha256};

use super::bucket::S3Failure;
use super::config::{DestinationConfig, DestinationKind};
use super::internal;
use super::push_config::{PushConfig, PushSecret};
use crate::App;

/// The longest `Retry-After` honoured as asked; a longer one waits this long.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(900);

/// The most events and bytes a request of `kind` carries: Datadog's intake takes at
/// most 1,000 entries and 5 MB (uncompressed); Splunk's HEC refuses requests over its
/// `max_content_length`, 1 MB in the configurations it ships with before 8.x; an `https`
/// receiver gets up to `max_batch_events` in at most 10 MB.
pub fn limits(kind: DestinationKind, max_batch_events: u64) -> (u64, usize) {
    match kind {
        DestinationKind::Datadog => (max_batch_events.min(1_000), 5_000_000),
        DestinationKind::SplunkHec => (max_batch_events.min(1_000), 1_000_000),
        _ => (max_batch_events, 10_000_000),
    }
}

/// How each event of `org`'s stream is laid out.
pub fn body_of(org: &str, config: &DestinationConfig, push: &PushConfig) -> PushBody {
    match config.kind {
        DestinationKind::SplunkHec => PushBody::splunk(&SplunkFields {
            source: push.source.clone().unwrap_or_else(|| "auditrail".into()),
            sourcetype: push
                .sourcetype
                .clone()
                .unwrap_or_else(|| "auditrail:event".into()),
            index: push.index.clone(),
            host: "auditrail".into(),
        }),
        DestinationKind::Datadog => {
            let mut tags = vec![format!("org:{org}")];
            tags.extend(push.tags.iter().cloned());
            PushBody::datadog(&DatadogFields {
                service: push.service.clone().unwrap_or_else(|| "auditrail".into()),
                ddsource: "auditrail".into(),
                ddtags: tags.join(","),
                hostname: "auditrail".into(),
            })
        }
        _ => PushBody::Ndjson,
    }
}

/// A batch encoded for sending: its entries, one per event.
pub struct Encoded {
    pub body: PushBody,
    pub entries: Vec<Vec<u8>>,
}

/// Encodes `events`, as OCSF records if `ocsf` is given (CPU work: call off the async
/// threads).
pub fn encode(
    body: PushBody,
    events: &[StoredEvent],
    ocsf: Option<&Mapper>,
) -> Result<Encoded, S3Failure> {
    let entries = events
        .iter()
        .map(|e| body.entry(e, ocsf))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| internal(format!("encoding the batch: {e}")))?;
    Ok(Encoded { body, entries })
}

/// How many of `entries` (from the first) fit in one request of `kind`: within its
/// event and byte limits, at least one.
pub fn fit(
    kind: DestinationKind,
    max_batch_events: u64,
    body: &PushBody,
    entries: &[Vec<u8>],
) -> usize {
    let (max_events, max_bytes) = limits(kind, max_batch_events);
    let cap = entries.len().min(max_events.max(1) as usize);
    fitting(body, &entries[..cap], max_bytes)
}

/// Why a send failed, and how long the receiver asked us to wait.
pub struct PushFailure {
    pub failure: S3Failure,
    pub retry_after: Option<Duration>,
    /// The receiver answered 413: the request was larger than it takes.
    pub too_large: bool,
}

impl From<S3Failure> for PushFailure {
    fn from(failure: S3Failure) -> Self {
        Self {
            failure,
            retry_after: None,
            too_large: false,
        }
    }
}

/// The key a receiver can deduplicate a request by: the same for every retry of a
/// batch, different for every other batch of any stream.
pub fn idempotency_key(org: &str, name: &str, first: u64, last: u64) -> String {
    let h = Sha256::digest(format!("auditrail push\n{org}\n{name}\n{first}\n{last}").as_bytes());
    hex::encode(&h[..16])
}

fn secret(app: &App, dest: &Destination) -> Result<String, S3Failure> {
    let s: PushSecret = super::open_sealed(
        app,
        dest,
        "the stream's secret is missing; give it again",
        "the sealed secret is unreadable",
    )
    .map_err(|message| S3Failure {
        message,
        permanent: true,
        blocked: true,
    })?;
    Ok(s.secret)
}

/// `Retry-After`: seconds, or an HTTP date.
fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = h.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    let d = match v.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
            let ms = at.timestamp_millis() - chrono::Utc::now().timestamp_millis();
            Duration::from_millis(ms.max(0) as u64)
        }
    };
    Some(d.min(MAX_RETRY_AFTER))
}

/// POSTs `entries` (the events of seqs `first..=last`, in order) to the stream's
/// receiver in one request.
#[allow(clippy::too_many_arguments, reason = "one request's parts")]
pub async fn send(
    app: &App,
    client: &reqwest::Client,
    dest: &Destination,
    config: &DestinationConfig,
    push: &PushConfig,
    layout: &PushBody,
    entries: &[Vec<u8>],
    (first, last): (u64, u64),
) -> Result<(), PushFailure> {
    let n = entries.len();
    let url = reqwest::Url::parse(&push.url)
        .map_err(|e| internal(format!("the stored url is unreadable: {e}")))?;
    if let Err(e) = app.settings.outbound.check_literal(&url) {
        return Err(S3Failure {
            message: e.to_string(),
            permanent: true,
            blocked: true,
        }
        .into());
    }
    let secret = secret(app, dest)?;
    let body = layout.join(entries);
    let mut req = client
        .post(url)
        .header("content-type", layout.content_type())
        .header(
            "idempotency-key",
            idempotency_key(&dest.org, &dest.name, first, last),
        )
        .header("auditrail-org", &dest.org)
        .header("auditrail-first-seq", first.to_string())
        .header("auditrail-last-seq", last.to_string())
        .header("auditrail-event-count", n.to_string());
    req = match config.kind {
        DestinationKind::SplunkHec => req.header("authorization", format!("Splunk {secret}")),
        DestinationKind::Datadog => req.header("dd-api-key", secret),
        _ => {
            let t = chrono::Utc::now().timestamp();
            let text = std::str::from_utf8(&body)
                .map_err(|e| internal(format!("the batch is not UTF-8: {e}")))?;
            let sig = crate::exports::notify::webhook_signature(&secret, t, text);
            req.header("auditrail-signature", sig)
        }
    };
    let resp = req.body(body).send().await.map_err(|e| {
        let refused = crate::outbound::refusal_in(&e);
        S3Failure {
            message: match &refused {
                Some(r) => r.to_string(),
                None => format!("sending to the receiver: {}", super::sts::short_reqwest(&e)),
            },
            permanent: refused.is_some(),
            blocked: refused.is_some(),
        }
    })?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let wait = retry_after(resp.headers());
    // The status only: what a remote says reaches the org as its HTTP status, never as
    // a copy of its body (the outbound policy's rule, so an allowed address cannot be
    // read back through `last_error`).
    let message = format!("the receiver answered HTTP {status}");
    let code = status.as_u16();
    let refused = matches!(code, 400 | 401 | 403 | 404 | 413 | 422);
    Err(PushFailure {
        failure: S3Failure {
            message,
            permanent: refused,
            blocked: refused,
        },
        retry_after: match code {
            429 => Some(wait.unwrap_or(Duration::from_secs(1))),
            503 => wait,
            _ => None,
        },
        too_large: code == 413,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_name_one_batch_of_one_stream() {
        let k = idempotency_key("acme", "siem", 1, 100);
        assert_eq!(k.len(), 32);
        assert_eq!(k, idempotency_key("acme", "siem", 1, 100));
        assert_ne!(k, idempotency_key("acme", "siem", 1, 99));
        assert_ne!(k, idempotency_key("acme", "siem2", 1, 100));
        assert_ne!(k, idempotency_key("acme2", "siem", 1, 100));
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert("retry-after", "86400".parse().unwrap());
        assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER));
        let soon = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        h.insert("retry-after", soon.parse().unwrap());
        let d = retry_after(&h).unwrap();
        assert!(d > Duration::from_secs(25) && d <= Duration::from_secs(30));
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }
}
