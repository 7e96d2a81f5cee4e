//! The auditrail HTTP service: routes, authentication, background tasks.
#![forbid(unsafe_code)]

pub mod auth;
pub mod batch_order;
mod checkpoint_signer;
pub mod delivery;
pub mod error;
pub mod exports;
pub mod metrics;
pub mod ocsf;
mod openapi;
mod openapi_responses;
mod openapi_roles;
pub use openapi::document as openapi_document;
pub mod outbound;
pub mod retention;
pub mod routes;
pub mod sealing;
pub mod tail;
mod tile_cache;
mod tiles;
pub mod ui;
pub mod witnesses;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use auditrail_core::Limits;
use auditrail_core::note::NoteSigner;
use auditrail_service::{Service, ServiceConfig};
use auditrail_store::Store;
use tokio::net::TcpListener;

pub use metrics::Metrics;

/// What the service needs to know beyond its store.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Base of links the service hands out.
    pub public_url: String,
    /// CSP `frame-ancestors` sources of the Audit page: who may show it in a frame.
    pub ui_frame_ancestors: String,
    /// Live tails one org may hold open at once.
    pub tail_max_streams: usize,
    /// How often checkpoints are signed for orgs with new events.
    pub checkpoint_interval: Duration,
    pub limits: Limits,
    /// Prefix of every checkpoint origin line: `<prefix>/<org>`.
    pub origin_prefix: String,
    pub exports: exports::ExportSettings,
    pub delivery: delivery::DeliverySettings,
    /// Which addresses the server may connect to for an org (destinations, STS,
    /// webhooks): global ones, and the ranges of `outbound_allow`.
    pub outbound: outbound::Outbound,
    /// How long a node holds background work (a destination's delivery, checkpoint
    /// signing) without renewing it before another node may take it over.
    pub lease_ttl: Duration,
    pub sealing: sealing::SealingSettings,
}

/// Shared state of the running HTTP service: the transport-free [`Service`] (reached
/// through `Deref`: `app.store`, `app.policies`, ...) and what only the server keeps.
pub struct App {
    pub service: Arc<Service>,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    pub admin_token_hash: [u8; 32],
    pub keys: auth::KeyCache,
    pub exports: exports::Exports,
    pub delivery: delivery::Delivery,
    pub ui: ui::UiState,
    /// The HTTP client witnesses are called with (kept for its pooled connections).
    witness_client: std::sync::OnceLock<reqwest::Client>,
    /// Full tiles already read (64 MiB at most).
    pub(crate) tiles: tile_cache::TileCache,
    /// Live tails' feeds, one per org with subscribers.
    pub tail: tail::TailHub,
    /// Ordered batches' streams (`Auditrail-Order`).
    pub batches: batch_order::Streams,
}

impl std::ops::Deref for App {
    type Target = Service;

    fn deref(&self) -> &Service {
        &self.service
    }
}

impl App {
    pub fn new(
        store: Arc<dyn Store>,
        signer: NoteSigner,
        settings: Settings,
        metrics: Arc<Metrics>,
        admin_token_hash: [u8; 32],
    ) -> Arc<Self> {
        let delivery = delivery::Delivery::new(&settings.delivery);
        let settings_tail_max = settings.tail_max_streams;
        let config = ServiceConfig {
            limits: settings.limits.clone(),
            origin_prefix: settings.origin_prefix.clone(),
            lease_ttl: settings.lease_ttl,
        };
        let service = Service::new(store, signer, config, &settings.delivery.secret_key);
        Arc::new(Self {
            service: Arc::new(service),
            delivery,
            settings,
            metrics,
            admin_token_hash,
            keys: auth::KeyCache::default(),
            exports: exports::Exports::default(),
            ui: ui::UiState::default(),
            witness_client: std::sync::OnceLock::new(),
            tiles: tile_cache::TileCache::new(64 << 20),
            tail: tail::TailHub::new(settings_tail_max),
            batches: batch_order::Streams::default(),
        })
    }

    /// The client witnesses are called with, under the outbound address policy.
    pub(crate) fn witness_client(&self) -> Result<reqwest::Client, outbound::OutboundError> {
        if let Some(c) = self.witness_client.get() {
            return Ok(c.clone());
        }
        let c = self
            .settings
            .outbound
            .http_client(Duration::from_secs(5), Duration::from_secs(3))?;
        Ok(self.witness_client.get_or_init(|| c).clone())
    }
}

/// Serves until `shutdown` resolves, then finishes in-flight requests, signs a last
/// checkpoint, and closes the store so every accepted write is committed.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let checkpoints = tokio::spawn(checkpoint_signer::run(app.clone(), stop_rx.clone()));
    let exporter = tokio::spawn(exports::worker::run(app.clone(), stop_rx.clone()));
    let deliverer = tokio::spawn(delivery::worker::run(app.clone(), stop_rx.clone()));
    let sealer = tokio::spawn(sealing::run(app.clone(), stop_rx.clone()));
    let retention = tokio::spawn(retention::run(app.clone(), stop_rx));
    let router = routes::router(app.clone());
    let tails = app.clone();
    let shutdown = async move {
        shutdown.await;
        // Live tails would keep their connections open: they end with a resume point.
        tails.tail.close();
    };
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await?;
    let _ = stop_tx.send(true);
    let _ = checkpoints.await;
    let _ = exporter.await;
    let _ = deliverer.await;
    let _ = retention.await;
    let _ = sealer.await;
    let store = app.store.clone();
    let _ = tokio::task::spawn_blocking(move || store.close()).await;
    Ok(())
}
