//! `auditrail seal`: seals now what `auditrail serve` seals in the background (each
//! org's complete tiles older than its newest `seal_keep_open` events), then prints what
//! the store holds: events, sealed events, the backlog and the bytes on disk.

use anyhow::Context;

use crate::config::{Config, Overrides, ServiceFlags, StoreFlags};
use crate::local::local_app;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only print the figures; seal nothing
    #[arg(long)]
    stats: bool,
    /// Each org's newest events left as they are [default: seal_keep_open, 65536]
    #[arg(long)]
    keep_open: Option<usize>,
    #[command(flatten)]
    store: StoreFlags,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let service = ServiceFlags {
        seal_keep_open: args.keep_open,
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
            auditrail_server::sealing::seal_due(&app, None, 0)
                .await
                .map_err(|e| anyhow::anyhow!("{} ({})", e.message, e.code))
                .context("sealing")?
        };
        let s = auditrail_server::sealing::storage(&app)
            .await
            .map_err(|e| anyhow::anyhow!("{} ({})", e.message, e.code))?;
        if !args.stats {
            println!(
                "sealed {sealed} events in {:.2} s",
                started.elapsed().as_secs_f64()
            );
        }
        println!(
            "events: {}; sealed: {}; open: {}; sealing backlog: {}",
            s.events,
            s.sealed,
            s.events - s.sealed,
            s.backlog
        );
        anyhow::Ok(s.events)
    }
    .await;
    app.store.close();
    drop(app);
    let events = result?;
    // Measured once the store is closed and its log folded into the database file.
    if cfg.database_url.is_some() {
        println!("on disk: not known for PostgreSQL");
    } else {
        let bytes = auditrail_store::sqlite::disk_bytes(&cfg.data_dir);
        println!(
            "on disk: {bytes} bytes, {:.1} bytes an event",
            bytes as f64 / events.max(1) as f64
        );
    }
    Ok(())
}
