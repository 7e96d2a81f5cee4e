//! `auditrail witness`: the C2SP tlog-witness a customer runs to cosign the checkpoints
//! of the auditrail logs it follows.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use auditrail_witness::Witness;
use tokio::net::TcpListener;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on
    #[arg(
        long,
        env = "AUDITRAIL_WITNESS_LISTEN",
        default_value = "127.0.0.1:8090"
    )]
    listen: String,
    /// Where the witness keeps its key (witness.key) and state (witness.sqlite)
    #[arg(
        long,
        env = "AUDITRAIL_WITNESS_DATA_DIR",
        default_value = "./auditrail-witness"
    )]
    data_dir: PathBuf,
    /// The witness's key name, part of its verifier key (a schema-less URL is the custom)
    #[arg(
        long,
        env = "AUDITRAIL_WITNESS_NAME",
        default_value = "auditrail-witness"
    )]
    name: String,
    /// A log to follow: `ORIGIN=VERIFIER_KEY` (the origin line of its checkpoints, e.g.
    /// `auditrail.example.com/acme`, and the server's `GET /v1/public-key`). Repeat for
    /// several logs; in the environment, separate them with newlines or `;`.
    #[arg(long = "log", env = "AUDITRAIL_WITNESS_LOGS", value_delimiter = ';')]
    logs: Vec<String>,
    /// Print the witness's verifier key and exit
    #[arg(long)]
    print_key: bool,
}

fn parse_logs(raw: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for entry in raw.iter().flat_map(|s| s.split('\n')).map(str::trim) {
        if entry.is_empty() {
            continue;
        }
        let Some((origin, key)) = entry.split_once('=') else {
            bail!("--log {entry:?}: expected ORIGIN=VERIFIER_KEY");
        };
        out.push((origin.trim().to_owned(), key.trim().to_owned()));
    }
    Ok(out)
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let logs = parse_logs(&args.logs)?;
    let witness = Witness::open(&args.data_dir, &args.name, &logs)
        .with_context(|| format!("cannot open the witness in {}", args.data_dir.display()))?;
    if args.print_key {
        println!("{}", witness.verifier_key());
        return Ok(());
    }
    if logs.is_empty() {
        bail!("no logs to follow: give --log ORIGIN=VERIFIER_KEY at least once");
    }
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, verifier_key = %witness.verifier_key(), logs = logs.len(), "witness listening");
    println!("auditrail witness listening on http://{addr}");
    auditrail_witness::serve(
        listener,
        Arc::new(witness),
        crate::cmd::serve::shutdown_signal(),
    )
    .await
    .context("witness server failed")
}
