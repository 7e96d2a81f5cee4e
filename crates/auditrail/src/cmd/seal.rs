//! `auditrail seal`: seals now what `auditrail serve` seals in the background (each
//! org's complete tiles older than its newest `seal_keep_open` events), then prints what
//! the store holds: events, sealed events, the backlog and the bytes on disk.

use anyhow::Context;

use crate::config::{Config, Overrides, ServiceFlags, StoreFlags};
use crate::local::local_app;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only print the figures, as `auditrail status` does; seal nothing
    #[arg(long)]
    stats: bool,
    /// Each org's newest events left as they are [default: seal_keep_open, 4096]
    #[arg(long)]
    keep_open: Option<usize>,
    /// How long a stopped process keeps the sealing lease [default: 15s]
    #[arg(long, env = "AUDITRAIL_LEASE_TTL")]
    lease_ttl: Option<String>,
    #[command(flatten)]
    store: StoreFlags,
}

/// Takes the sealing lease, waiting while another process holds it: one that was
/// stopped lets it lapse within `lease_ttl`; one that keeps renewing it (a server
/// sealing in the background) makes this fail after that long.
async fn take_lease(app: &auditrail_server::App, ttl: std::time::Duration) -> anyhow::Result<()> {
    let lease = auditrail_server::sealing::LEASE;
    let deadline = std::time::Instant::now() + ttl + std::time::Duration::from_secs(1);
    let mut told = false;
    while !auditrail_service::lease::hold(app, lease).await {
        if std::time::Instant::now() > deadline {
            anyhow::bail!(
                "another auditrail process holds the sealing lease and keeps renewing it \
                 (a server sealing in the background?): it seals what is due itself"
            );
        }
        if !told {
            eprintln!(
                "waiting for the sealing lease: another process holds it (a stopped one's lapses within {})",
                humantime::format_duration(ttl)
            );
            told = true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    Ok(())
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let service = ServiceFlags {
        seal_keep_open: args.keep_open,
        lease_ttl: args.lease_ttl.clone(),
        ..ServiceFlags::default()
    };
    let cfg = Config::resolve(
        &Overrides::from_flags(&args.store, None, Some(&service)),
        None,
    )?;
    let app = local_app(&cfg).await?;
    let result = async {
        let started = std::time::Instant::now();
        let sealed = if args.stats {
            0
        } else {
            take_lease(&app, cfg.lease_ttl).await?;
            auditrail_server::sealing::seal_due(&app, None, 0)
                .await
                .map_err(super::admin::api_err)
                .context("sealing")?
        };
        if !args.stats {
            auditrail_service::lease::release(&app, auditrail_server::sealing::LEASE).await;
        }
        let s = auditrail_server::sealing::storage(&app)
            .await
            .map_err(super::admin::api_err)?;
        if !args.stats {
            println!(
                "sealed {sealed} events in {:.2} s",
                started.elapsed().as_secs_f64()
            );
        }
        anyhow::Ok(s)
    }
    .await;
    app.store.close();
    drop(app);
    let s = result?;
    let bytes = super::status::disk_bytes(&cfg, s.disk_bytes);
    super::status::print_totals(s.events, s.sealed, s.backlog, bytes);
    Ok(())
}
