//! Prometheus metrics.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use auditrail_store::sqlite::CommitStats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: &'static str,
}

/// One destination of one org.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestinationLabels {
    pub org: String,
    pub destination: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OrgLabel {
    pub org: String,
}

pub struct Metrics {
    registry: Registry,
    pub unknown_actions: Family<OrgLabel, Counter>,
    pub ingest_events: Counter,
    pub ingest_requests: Family<Outcome, Counter>,
    pub commit_events: Histogram,
    pub commit_seconds: Histogram,
    pub checkpoint_age: Gauge<f64, AtomicU64>,
    pub checkpoints_signed: Counter,
    pub witness_cosignatures: Counter,
    pub witness_failures: Counter,
    pub witness_conflicts: Counter,
    pub events_purged: Counter,
    pub partitions_dropped: Counter,
    pub events_sealed: Counter,
    pub stored_events: Gauge,
    pub sealed_events: Gauge,
    pub sealing_backlog: Gauge,
    pub store_bytes: Gauge,
    pub store_bytes_per_event: Gauge<f64, AtomicU64>,
    pub exports_finished: Family<Outcome, Counter>,
    pub export_rows: Counter,
    pub export_notifications_failed: Counter,
    pub delivery_objects: Family<Outcome, Counter>,
    pub delivery_events: Counter,
    pub delivery_errors: Family<ErrorKind, Counter>,
    pub destination_events: Family<DestinationLabels, Counter>,
    pub destination_lag_events: Family<DestinationLabels, Gauge>,
    pub destination_failing: Family<DestinationLabels, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorKind {
    pub kind: &'static str,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("auditrail");
        let ingest_events = Counter::default();
        registry.register(
            "ingest_events",
            "Events stored (duplicates excluded)",
            ingest_events.clone(),
        );
        let unknown_actions = Family::<OrgLabel, Counter>::default();
        registry.register(
            "catalog_unknown_actions",
            "Events accepted with an action their org's catalog does not name (non-strict orgs)",
            unknown_actions.clone(),
        );
        let ingest_requests = Family::<Outcome, Counter>::default();
        registry.register(
            "ingest_requests",
            "Ingest requests by outcome",
            ingest_requests.clone(),
        );
        let commit_events = Histogram::new(exponential_buckets(1.0, 4.0, 10));
        registry.register(
            "commit_batch_events",
            "Events per group commit",
            commit_events.clone(),
        );
        let commit_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "commit_seconds",
            "Group commit latency, including fsync",
            commit_seconds.clone(),
        );
        let checkpoint_age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "checkpoint_age_seconds",
            "Seconds the checkpointer has failed to sign every grown log (0 when all are signed)",
            checkpoint_age.clone(),
        );
        let checkpoints_signed = Counter::default();
        registry.register(
            "checkpoints_signed",
            "Checkpoints signed",
            checkpoints_signed.clone(),
        );
        let witness_cosignatures = Counter::default();
        registry.register(
            "witness_cosignatures",
            "Witness cosignatures received and verified",
            witness_cosignatures.clone(),
        );
        let witness_failures = Counter::default();
        registry.register(
            "witness_failures",
            "Witness calls that gave no cosignature (unreachable, misconfigured, bad answer)",
            witness_failures.clone(),
        );
        let witness_conflicts = Counter::default();
        registry.register(
            "witness_conflicts",
            "Witnesses that refused a checkpoint as inconsistent with what they cosigned (a fork or a rollback): an alarm",
            witness_conflicts.clone(),
        );
        let events_purged = Counter::default();
        registry.register(
            "events_purged",
            "Events purged by retention",
            events_purged.clone(),
        );
        let partitions_dropped = Counter::default();
        registry.register(
            "partitions_dropped",
            "Month partitions of purged events dropped by retention (PostgreSQL)",
            partitions_dropped.clone(),
        );
        let events_sealed = Counter::default();
        registry.register(
            "events_sealed",
            "Events sealed into compressed frames",
            events_sealed.clone(),
        );
        let stored_events = Gauge::default();
        registry.register(
            "stored_events",
            "Events in every org's log (purged ones included: their leaves stay)",
            stored_events.clone(),
        );
        let sealed_events = Gauge::default();
        registry.register(
            "sealed_events",
            "Events in sealed (compressed) tiles; the rest are open",
            sealed_events.clone(),
        );
        let sealing_backlog = Gauge::default();
        registry.register(
            "sealing_backlog_events",
            "Events old enough to seal that are not sealed yet",
            sealing_backlog.clone(),
        );
        let store_bytes = Gauge::default();
        registry.register(
            "store_bytes",
            "Bytes the store takes on disk (SQLite: its files; PostgreSQL: the database's size)",
            store_bytes.clone(),
        );
        let store_bytes_per_event = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "store_bytes_per_event",
            "store_bytes over stored_events",
            store_bytes_per_event.clone(),
        );
        let exports_finished = Family::<Outcome, Counter>::default();
        registry.register(
            "exports_finished",
            "Export jobs finished, by outcome (succeeded, failed)",
            exports_finished.clone(),
        );
        let export_rows = Counter::default();
        registry.register(
            "export_rows",
            "Rows written to finished exports",
            export_rows.clone(),
        );
        let export_notifications_failed = Counter::default();
        registry.register(
            "export_notifications_failed",
            "Export emails and webhook calls that failed",
            export_notifications_failed.clone(),
        );
        let delivery_objects = Family::<Outcome, Counter>::default();
        registry.register(
            "delivery_objects",
            "Objects uploaded to destinations, by outcome (delivered, failed)",
            delivery_objects.clone(),
        );
        let delivery_events = Counter::default();
        registry.register(
            "delivery_events",
            "Events delivered to destinations",
            delivery_events.clone(),
        );
        let delivery_errors = Family::<ErrorKind, Counter>::default();
        registry.register(
            "delivery_errors",
            "Failed deliveries, by kind (permanent: credentials, permissions, missing bucket; transient)",
            delivery_errors.clone(),
        );
        let destination_events = Family::<DestinationLabels, Counter>::default();
        registry.register(
            "destination_events",
            "Events delivered, per destination (push streams: counted once per acknowledged request)",
            destination_events.clone(),
        );
        let destination_lag_events = Family::<DestinationLabels, Gauge>::default();
        registry.register(
            "destination_lag_events",
            "Events in the log not yet delivered, per destination (as its delivering node last saw)",
            destination_lag_events.clone(),
        );
        let destination_failing = Family::<DestinationLabels, Gauge>::default();
        registry.register(
            "destination_failing",
            "1 while a destination's last attempt failed, per destination",
            destination_failing.clone(),
        );
        Self {
            registry,
            delivery_objects,
            delivery_events,
            delivery_errors,
            destination_events,
            destination_lag_events,
            destination_failing,
            exports_finished,
            export_rows,
            export_notifications_failed,
            unknown_actions,
            ingest_events,
            ingest_requests,
            commit_events,
            commit_seconds,
            checkpoint_age,
            checkpoints_signed,
            witness_cosignatures,
            witness_failures,
            witness_conflicts,
            events_purged,
            partitions_dropped,
            events_sealed,
            stored_events,
            sealed_events,
            sealing_backlog,
            store_bytes,
            store_bytes_per_event,
        }
    }

    /// For the store's commit observer.
    pub fn observe_commit(&self, stats: CommitStats) {
        self.commit_events.observe(stats.events as f64);
        self.commit_seconds.observe(stats.seconds);
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
