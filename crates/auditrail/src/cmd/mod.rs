pub mod admin;
pub mod export;
pub mod gateway;
pub mod ingest;
pub mod seal;
pub mod serve;
pub mod status;
pub mod tail;
pub mod verify;
pub mod witness;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Print an example auditrail.toml
    Example,
}

pub fn config(c: ConfigCommand) -> anyhow::Result<()> {
    match c {
        ConfigCommand::Example => print!("{}", crate::config::EXAMPLE),
    }
    Ok(())
}

/// Where an administrative command acts: a running server, or the data directly.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// URL of a running auditrail; without it the command opens the data dir itself
    #[arg(long, env = "AUDITRAIL_URL")]
    pub url: Option<String>,
    /// Token for --url (platform admin or org key)
    #[arg(long, env = "AUDITRAIL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(flatten)]
    pub store: crate::config::StoreFlags,
}
