//! The service layer of auditrail: what the service does, apart from any transport.
//!
//! - `ingest`: an org's events through its catalog policy, prepared, appended, and the
//!   events auditrail writes about itself (`record_audit_event`);
//! - `policy`: each org's ingest policy (strictness, catalog, HMAC key);
//! - `signing`: signed checkpoints of an org's tree;
//! - `lease`, `clock`: background work held by one node at a time, and the time;
//! - `random`, `ids`: one source of randomness, one policy for its failure; ULIDs;
//! - `secrets`, `sealed`: the server-wide secret box and the settings sealed with it.
//!
//! The HTTP server, the Audit page, the background workers, the GraphQL gateway and the
//! CLI all call this crate; errors are [`ServiceError`], which the HTTP layer maps to a
//! status in one place.
#![forbid(unsafe_code)]

pub mod clock;
pub mod error;
pub mod ids;
pub mod ingest;
pub mod lease;
pub mod policy;
pub mod random;
pub mod sealed;
pub mod secrets;
pub mod signing;

use std::sync::Arc;
use std::time::Duration;

use auditrail_core::Limits;
use auditrail_core::note::NoteSigner;
use auditrail_store::Store;

pub use error::{ServiceError, ServiceResult};

/// What the service needs to know beyond its store.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub limits: Limits,
    /// Prefix of every checkpoint origin line: `<prefix>/<org>`.
    pub origin_prefix: String,
    /// How long a node holds background work without renewing it before another node
    /// may take it over.
    pub lease_ttl: Duration,
}

/// The running service: its store, signing key, the server-wide secret box, and what it
/// keeps per org.
pub struct Service {
    pub store: Arc<dyn Store>,
    pub signer: NoteSigner,
    pub config: ServiceConfig,
    pub policies: policy::Policies,
    /// Seals what the store keeps secret (destination credentials, org HMAC keys, link
    /// and session keys, webhook secrets).
    pub secrets: secrets::SecretBox,
    /// This process's name as the owner of leases on background work.
    pub node_id: String,
    /// Bumped after every append this process makes, so live tails read at once
    /// instead of waiting for their next poll.
    pub appended: tokio::sync::watch::Sender<u64>,
}

impl Service {
    pub fn new(
        store: Arc<dyn Store>,
        signer: NoteSigner,
        config: ServiceConfig,
        secret_key: &[u8; 32],
    ) -> Self {
        Self {
            store,
            signer,
            config,
            policies: policy::Policies::default(),
            secrets: secrets::SecretBox::new(secret_key),
            node_id: format!("node-{}", hex::encode(random::bytes::<8>())),
            appended: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Tells live tails that events were appended.
    pub fn notify_appended(&self) {
        self.appended.send_modify(|n| *n = n.wrapping_add(1));
    }
}
