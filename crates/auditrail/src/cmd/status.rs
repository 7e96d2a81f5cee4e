//! `auditrail status`: what the store holds, org by org: events, how many of them are
//! sealed (compressed in tiles of 256) or still open, the sealing backlog, and the bytes
//! on disk an event. The same figures as the server's `/metrics`.

use crate::config::{Config, Overrides, StoreFlags};
use crate::local::local_app;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print one JSON object instead of text
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreFlags,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let cfg = Config::resolve(&Overrides::from_flags(&args.store, None, None), None)?;
    let app = local_app(&cfg).await?;
    let result = auditrail_server::sealing::storage_by_org(&app)
        .await
        .map_err(super::admin::api_err);
    app.store.close();
    drop(app);
    let (s, orgs) = result?;
    let bytes = disk_bytes(&cfg, s.disk_bytes);
    let per_event = bytes
        .filter(|_| s.events > 0)
        .map(|b| b as f64 / s.events as f64);
    if args.json {
        let v = serde_json::json!({
            "events": s.events,
            "sealed": s.sealed,
            "open": s.events.saturating_sub(s.sealed),
            "sealing_backlog": s.backlog,
            "disk_bytes": bytes,
            "bytes_per_event": per_event,
            "orgs": orgs,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if !orgs.is_empty() {
        println!(
            "{:<24} {:>12} {:>12} {:>10} {:>10}",
            "org", "events", "sealed", "open", "backlog"
        );
        for o in &orgs {
            println!(
                "{:<24} {:>12} {:>12} {:>10} {:>10}",
                o.org, o.events, o.sealed, o.open, o.backlog
            );
        }
    }
    print_totals(s.events, s.sealed, s.backlog, bytes);
    Ok(())
}

/// What the store takes on disk: on PostgreSQL the database's size as the store
/// reported it (`reported`), on SQLite its files, measured once the store is closed and
/// its log folded in.
pub fn disk_bytes(cfg: &Config, reported: Option<u64>) -> Option<u64> {
    match &cfg.database_url {
        Some(_) => reported,
        None => Some(auditrail_store::sqlite::disk_bytes(&cfg.data_dir)),
    }
}

/// The summary `auditrail status` and `auditrail seal` end with.
pub fn print_totals(events: u64, sealed: u64, backlog: u64, bytes: Option<u64>) {
    println!(
        "events: {events}; sealed: {sealed}; open: {}; sealing backlog: {backlog}",
        events.saturating_sub(sealed),
    );
    match bytes {
        Some(bytes) => println!(
            "on disk: {bytes} bytes, {:.1} bytes an event",
            bytes as f64 / events.max(1) as f64
        ),
        None => println!("on disk: not known"),
    }
}
