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

/// One org's line of the report.
#[derive(Debug, serde::Serialize)]
struct OrgLine {
    org: String,
    events: u64,
    sealed: u64,
    open: u64,
    backlog: u64,
}

fn api(e: auditrail_server::error::ApiError) -> anyhow::Error {
    anyhow::anyhow!("{} ({})", e.message, e.code)
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let cfg = Config::resolve(&Overrides::from_flags(&args.store, None, None), None)?;
    let app = local_app(&cfg).await?;
    let result = async {
        let keep_open = app.settings.sealing.keep_open;
        let mut orgs = Vec::new();
        for org in app.store.list_orgs().await? {
            let events = app.store.tree_head(&org.id).await?.size;
            let c = app.store.sealing(&org.id, keep_open).await?;
            orgs.push(OrgLine {
                org: org.id,
                events,
                sealed: c.sealed,
                open: events.saturating_sub(c.sealed),
                backlog: c.backlog,
            });
        }
        let s = auditrail_server::sealing::storage(&app)
            .await
            .map_err(api)?;
        let pg_bytes = match &cfg.database_url {
            Some(_) => s.disk_bytes,
            None => None,
        };
        anyhow::Ok((orgs, s, pg_bytes))
    }
    .await;
    app.store.close();
    drop(app);
    let (orgs, s, pg_bytes) = result?;
    let bytes = disk_bytes(&cfg, pg_bytes);
    let per_event = bytes
        .filter(|_| s.events > 0)
        .map(|b| b as f64 / s.events as f64);
    if args.json {
        let v = serde_json::json!({
            "events": s.events,
            "sealed": s.sealed,
            "open": s.events - s.sealed.min(s.events),
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

/// What the store takes on disk: PostgreSQL's database size as the store reported it,
/// or the SQLite files, measured once the store is closed and its log folded in.
pub fn disk_bytes(cfg: &Config, pg_bytes: Option<u64>) -> Option<u64> {
    match &cfg.database_url {
        Some(_) => pg_bytes,
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
