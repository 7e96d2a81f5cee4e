//! Opening the data directly: the store, the signing key, the app state.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use auditrail_core::Limits;
use auditrail_core::note::NoteSigner;
use auditrail_server::delivery::DeliverySettings;
use auditrail_server::exports::ExportSettings;
use auditrail_server::exports::notify::SmtpSettings;
use auditrail_server::outbound::Outbound;
use auditrail_server::sealing::SealingSettings;
use auditrail_server::{App, Metrics, Settings};
use auditrail_store::Store;
use auditrail_store::postgres::{PgOptions, PgStore};
use auditrail_store::sqlite::{Options, SqliteStore};

use crate::config::Config;

/// Opens the configured store: PostgreSQL when `database_url` is set, else the
/// embedded SQLite under the data dir (for a bulk load, `bulk_load`: see
/// [`Options::bulk_load`]).
pub async fn open_store(
    cfg: &Config,
    metrics: Option<Arc<Metrics>>,
    bulk_load: bool,
) -> anyhow::Result<Arc<dyn Store>> {
    let on_commit =
        metrics.map(|m| Arc::new(move |s| m.observe_commit(s)) as auditrail_store::CommitObserver);
    if let Some(url) = &cfg.database_url {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            bail!(
                "unsupported database URL scheme (expected postgres:// or postgresql://); leave it unset for the embedded SQLite"
            );
        }
        let options = PgOptions {
            max_connections: cfg.database_pool_size,
            on_commit,
        };
        let store = PgStore::connect(url, options).await.with_context(|| {
            format!(
                "cannot open the PostgreSQL database {}",
                crate::config::mask_url_password(url)
            )
        })?;
        return Ok(Arc::new(store));
    }
    let store = SqliteStore::open(
        &cfg.data_dir,
        Options {
            on_commit,
            bulk_load,
        },
    )
    .with_context(|| format!("cannot open the data dir {}", cfg.data_dir.display()))?;
    Ok(Arc::new(store))
}

const SIGNING_KEY_SETTING: &str = "signing_public_key";

/// Loads the signing key and makes sure every node sharing the database signs with the
/// same one: the first node records its public key, and a node with another key is
/// refused rather than signing checkpoints nobody can verify against the first.
pub async fn checked_signer(cfg: &Config, store: &dyn Store) -> anyhow::Result<NoteSigner> {
    let signer = load_signer(cfg)?;
    let ours = signer.verifier_key();
    let recorded = store.init_setting(SIGNING_KEY_SETTING, &ours).await?;
    if recorded != ours {
        bail!(
            "the signing key {} is not the one this database's checkpoints are signed with ({recorded}); give every node the same signing_key_file",
            cfg.signing_key_file.display()
        );
    }
    Ok(signer)
}

/// Loads the Ed25519 signing key, creating it (mode 0600) on first use.
pub fn load_signer(cfg: &Config) -> anyhow::Result<NoteSigner> {
    let seed = load_key(&cfg.signing_key_file, "signing key")?;
    NoteSigner::new(&cfg.log_origin, seed).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Loads a 32-byte key kept as hex in `path`, creating it (mode 0600) on first use.
pub fn load_key(path: &Path, what: &str) -> anyhow::Result<[u8; 32]> {
    if path.exists() {
        return read_key(path, what);
    }
    let key = auditrail_service::random::bytes::<32>();
    write_secret(path, format!("{}\n", hex::encode(key)).as_bytes())
        .with_context(|| format!("cannot write {what} {}", path.display()))?;
    Ok(key)
}

fn read_key(path: &Path, what: &str) -> anyhow::Result<[u8; 32]> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    hex::decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .with_context(|| {
            format!(
                "{what} {} must hold 64 hex digits (32 bytes)",
                path.display()
            )
        })
}

fn write_secret(path: &Path, content: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    f.write_all(content)?;
    f.sync_all()
}

pub fn settings(cfg: &Config) -> anyhow::Result<Settings> {
    let max_future =
        chrono::Duration::from_std(cfg.max_clock_skew).context("max_clock_skew is too large")?;
    let frame_ancestors = cfg.ui_frame_ancestors.trim();
    if frame_ancestors.is_empty()
        || frame_ancestors
            .chars()
            .any(|c| c == ';' || c == ',' || c.is_control())
    {
        anyhow::bail!(
            "ui_frame_ancestors must be CSP sources separated by spaces, such as \"'self' https://app.example.com\""
        );
    }
    Ok(Settings {
        public_url: cfg.public_url.clone(),
        ui_frame_ancestors: frame_ancestors.to_owned(),
        tail_max_streams: cfg.tail_max_streams,
        checkpoint_interval: cfg.checkpoint_interval,
        lease_ttl: cfg.lease_ttl,
        sealing: SealingSettings {
            keep_open: cfg.seal_keep_open,
            ..SealingSettings::default()
        },
        limits: Limits {
            max_future,
            max_details_bytes: cfg.details.bytes,
            max_details_depth: cfg.details.depth,
            max_details_keys: cfg.details.keys,
            max_details_key_len: cfg.details.key_len,
            max_details_value_len: cfg.details.value_len,
        },
        origin_prefix: cfg.log_origin.clone(),
        exports: ExportSettings {
            dir: cfg.exports_dir.clone(),
            ttl: cfg.export_ttl,
            max_range: cfg.export_max_range,
            workers: cfg.export_workers,
            smtp: cfg
                .smtp_url
                .as_deref()
                .map(|u| SmtpSettings::parse(u, &cfg.smtp_from))
                .transpose()
                .map_err(|e| anyhow::anyhow!(e))?,
        },
        outbound: Outbound::new(cfg.outbound_allow.clone()),
        delivery: DeliverySettings {
            principal_arn: cfg.aws_principal_arn.clone(),
            ..DeliverySettings::new(load_key(&cfg.secret_key_file, "secret key")?)
        },
    })
}

/// App state for commands that act on the data directly (no HTTP authentication).
pub async fn local_app(cfg: &Config) -> anyhow::Result<Arc<App>> {
    local_app_for(cfg, false).await
}

/// [`local_app`], for a bulk load when `bulk_load` (see [`Options::bulk_load`]).
pub async fn local_app_for(cfg: &Config, bulk_load: bool) -> anyhow::Result<Arc<App>> {
    let store = open_store(cfg, None, bulk_load).await?;
    let signer = checked_signer(cfg, store.as_ref()).await?;
    Ok(App::new(
        store,
        signer,
        settings(cfg)?,
        Arc::new(Metrics::new()),
        [0; 32],
    ))
}
