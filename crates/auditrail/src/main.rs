//! `auditrail`: one binary for every role — the service, administration, bulk ingest.
#![forbid(unsafe_code)]

mod cmd;
mod config;
mod local;
mod remote;

use clap::{Parser, Subcommand};

/// Ingest allocates many short-lived strings on several threads at once; mimalloc keeps
/// that from contending the way the system allocator does. It is built without
/// transparent huge pages (`no_thp`): with them, memory it had freed stayed resident in
/// 2 MB pages, and a sealed export of 1M events peaked at 95–117 MB where 64–67 MB are
/// in use.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "auditrail",
    version,
    about = "Durable, ordered, tamper-evident audit logs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service
    Serve(Box<cmd::serve::Args>),
    /// Manage orgs
    Orgs {
        #[command(subcommand)]
        command: cmd::admin::OrgsCommand,
    },
    /// Manage API keys
    Keys {
        #[command(subcommand)]
        command: cmd::admin::KeysCommand,
    },
    /// Bulk-load events from an NDJSON file
    Ingest(cmd::ingest::Args),
    /// Seal now what the server seals in the background (older events compressed in
    /// tiles of 256), and print events, sealed events and bytes on disk per event
    Seal(cmd::seal::Args),
    /// Print what the store holds, org by org: events, sealed and open events, the
    /// sealing backlog, and bytes on disk an event
    Status(cmd::status::Args),
    /// Export an org's events to a CSV, NDJSON or Parquet file
    Export(cmd::export::Args),
    /// Verify a delivered log (s3://bucket/prefix or a local copy): every seq once,
    /// every leaf recomputed, every signed checkpoint matched
    Verify(cmd::verify::Args),
    /// Run the GraphQL capture gateway: a reverse proxy in front of a GraphQL API that
    /// records every operation the catalog names
    Gateway(Box<cmd::gateway::Args>),
    /// Run a C2SP tlog-witness: cosign the checkpoints of the logs it follows, only when
    /// each is consistent with the last one it cosigned
    Witness(cmd::witness::Args),
    /// Follow an org's events live from a running server, one JSON line each
    /// (reconnecting where it left off)
    Tail(cmd::tail::Args),
    /// Print the OpenAPI document of the HTTP API (what `/openapi.json` serves)
    Openapi,
    /// Configuration helpers
    Config {
        #[command(subcommand)]
        command: cmd::ConfigCommand,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // The services log `info`; the one-shot commands only warnings (a failed checkpoint,
    // say) unless `AUDITRAIL_LOG` asks for more.
    init_tracing(
        if matches!(
            cli.command,
            Command::Serve(_) | Command::Gateway(_) | Command::Witness(_)
        ) {
            "info"
        } else {
            "warn"
        },
    );
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => cmd::serve::run(*args).await,
            Command::Orgs { command } => cmd::admin::orgs(command).await,
            Command::Keys { command } => cmd::admin::keys(command).await,
            Command::Ingest(args) => cmd::ingest::run(args).await,
            Command::Export(args) => cmd::export::run(args).await,
            Command::Seal(args) => cmd::seal::run(args).await,
            Command::Status(args) => cmd::status::run(args).await,
            Command::Verify(args) => cmd::verify::run(args).await,
            Command::Gateway(args) => cmd::gateway::run(*args).await,
            Command::Witness(args) => cmd::witness::run(args).await,
            Command::Tail(args) => cmd::tail::run(args).await,
            Command::Openapi => {
                println!("{}", auditrail_server::openapi_document());
                Ok(())
            }
            Command::Config { command } => cmd::config(command),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by `AUDITRAIL_LOG` (tracing's `EnvFilter` syntax), else by
/// `default`.
fn init_tracing(default: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("AUDITRAIL_LOG")
        .unwrap_or_else(|_| default.into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours only on a terminal: not as escape codes in a log file.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
