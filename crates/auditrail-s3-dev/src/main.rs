//! `auditrail-s3-dev`: serve a directory as an S3-compatible store, for trying
//! auditrail's S3 delivery without a cloud account.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
#[command(version, about)]
struct Opt {
    /// Directory holding the buckets (one sub-directory each)
    root: PathBuf,
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    #[arg(long, env = "AWS_ACCESS_KEY_ID")]
    access_key: String,
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    secret_key: String,
    /// Buckets to create at start
    #[arg(long = "bucket")]
    buckets: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let o = Opt::parse();
    let server =
        auditrail_s3_dev::DevS3::start(&o.root, o.listen, &o.access_key, &o.secret_key).await?;
    for b in &o.buckets {
        server.create_bucket(b)?;
    }
    println!("S3-compatible server on {}", server.endpoint());
    tokio::signal::ctrl_c().await?;
    server.stop().await;
    Ok(())
}
