//! The gateway's Prometheus metrics (`/metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    /// `audited` (at least one field recorded), `passed` (nothing to record),
    /// `malformed` (not a readable GraphQL request; forwarded), `refused` (not forwarded).
    pub kind: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<Kind, Counter>,
    pub audited_fields: Counter,
    pub unrecorded_events: Counter,
    pub appended_events: Counter,
    pub append_retries: Counter,
    pub rejected_events: Counter,
    pub spool_depth: Gauge,
    pub upstream_seconds: Histogram,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("auditrail_gateway");
        let requests = Family::<Kind, Counter>::default();
        registry.register("requests", "Requests by kind", requests.clone());
        let audited_fields = Counter::default();
        registry.register(
            "audited_fields",
            "Root fields recorded (one event each)",
            audited_fields.clone(),
        );
        let unrecorded_events = Counter::default();
        registry.register(
            "unrecorded_events",
            "Audited fields let through without a record (fail-open mode only)",
            unrecorded_events.clone(),
        );
        let appended_events = Counter::default();
        registry.register(
            "appended_events",
            "Events appended to the log",
            appended_events.clone(),
        );
        let append_retries = Counter::default();
        registry.register(
            "append_retries",
            "Appends retried because the log was unavailable",
            append_retries.clone(),
        );
        let rejected_events = Counter::default();
        registry.register(
            "rejected_events",
            "Events the log refused, kept in the spool dir's rejected.ndjson",
            rejected_events.clone(),
        );
        let spool_depth = Gauge::default();
        registry.register(
            "spool_depth",
            "Events spooled and not yet in the log",
            spool_depth.clone(),
        );
        let upstream_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 18));
        registry.register(
            "upstream_seconds",
            "Time the upstream took to answer",
            upstream_seconds.clone(),
        );
        Metrics {
            registry,
            requests,
            audited_fields,
            unrecorded_events,
            appended_events,
            append_retries,
            rejected_events,
            spool_depth,
            upstream_seconds,
        }
    }

    pub fn count(&self, kind: &'static str) {
        self.requests.get_or_create(&Kind { kind }).inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
