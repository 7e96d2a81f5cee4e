//! `auditrail gateway`: the GraphQL capture gateway in front of a host product's API.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use auditrail_core::catalog::{Catalog, builtin};
use auditrail_gateway::actor::ActorSource;
use auditrail_gateway::capture::Rules;
use auditrail_gateway::sink::{RemoteSink, Sink, StoreSink};
use auditrail_gateway::{Gateway, Mode, OrgSource, spool};
use http::HeaderName;
use tokio::net::TcpListener;

use crate::config::{Config, LimitFlags, Overrides, StoreFlags};
use crate::local::local_app;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ModeArg {
    /// Refuse an audited request that cannot be recorded (503 before it is forwarded)
    FailClosed,
    /// Let it through and count it in auditrail_gateway_unrecorded_events_total
    FailOpen,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on
    #[arg(
        long,
        env = "AUDITRAIL_GATEWAY_LISTEN",
        default_value = "127.0.0.1:8081"
    )]
    listen: String,
    /// The host product's GraphQL endpoint, e.g. http://127.0.0.1:4000/graphql. Requests
    /// to its path are read and audited; every request is forwarded to its origin.
    #[arg(long, env = "AUDITRAIL_GATEWAY_UPSTREAM")]
    upstream: String,
    /// A built-in catalog (prophecy, apollo-studio) or a catalog file (.toml or .json)
    #[arg(long, env = "AUDITRAIL_GATEWAY_CATALOG")]
    catalog: String,
    /// The org every event belongs to
    #[arg(
        long,
        env = "AUDITRAIL_GATEWAY_ORG",
        conflicts_with = "org_header",
        required_unless_present = "org_header"
    )]
    org: Option<String>,
    /// A header naming each request's org (set by the host product's edge)
    #[arg(long, env = "AUDITRAIL_GATEWAY_ORG_HEADER")]
    org_header: Option<String>,
    /// A trusted header holding the actor id (set by an authenticating proxy)
    #[arg(long, env = "AUDITRAIL_GATEWAY_ACTOR_HEADER", conflicts_with_all = ["jwt_secret_file", "jwt_public_key_file"])]
    actor_header: Option<String>,
    /// The claim of the verified JWT (Authorization: Bearer) that is the actor id
    #[arg(long, env = "AUDITRAIL_GATEWAY_JWT_CLAIM", default_value = "sub")]
    jwt_claim: String,
    /// HS256: a file holding the shared secret
    #[arg(
        long,
        env = "AUDITRAIL_GATEWAY_JWT_SECRET_FILE",
        conflicts_with = "jwt_public_key_file"
    )]
    jwt_secret_file: Option<PathBuf>,
    /// RS256 or ES256: a PEM file holding the public key
    #[arg(long, env = "AUDITRAIL_GATEWAY_JWT_PUBLIC_KEY_FILE")]
    jwt_public_key_file: Option<PathBuf>,
    /// Append through a running auditrail's POST /v1/events instead of opening the
    /// store (--data-dir / --database-url) directly
    #[arg(long, env = "AUDITRAIL_GATEWAY_INGEST_URL", requires = "ingest_token")]
    ingest_url: Option<String>,
    /// An ingest key of the org, for --ingest-url
    #[arg(long, env = "AUDITRAIL_GATEWAY_INGEST_TOKEN", hide_env_values = true)]
    ingest_token: Option<String>,
    /// What to do when an audited request cannot be recorded
    #[arg(
        long,
        env = "AUDITRAIL_GATEWAY_MODE",
        value_enum,
        default_value = "fail-closed"
    )]
    mode: ModeArg,
    /// Where events wait to be appended [default: <data dir>/gateway-spool]
    #[arg(long, env = "AUDITRAIL_GATEWAY_SPOOL_DIR")]
    spool_dir: Option<PathBuf>,
    /// Audited requests are refused (or, fail-open, let through unrecorded) while this
    /// many bytes wait in the spool
    #[arg(long, env = "AUDITRAIL_GATEWAY_SPOOL_MAX_BYTES", default_value_t = 256 << 20)]
    spool_max_bytes: u64,
    /// A header with the client's address (its first entry), when behind a proxy
    #[arg(long, env = "AUDITRAIL_GATEWAY_CLIENT_IP_HEADER")]
    client_ip_header: Option<String>,
    /// Largest request body accepted
    #[arg(long, env = "AUDITRAIL_GATEWAY_MAX_BODY_BYTES", default_value_t = 5 << 20)]
    max_body_bytes: usize,
    /// Largest audited answer read for errors (a larger one is passed on, its outcome
    /// following the HTTP status)
    #[arg(long, env = "AUDITRAIL_GATEWAY_MAX_RESPONSE_BYTES", default_value_t = 16 << 20)]
    max_response_bytes: usize,
    /// How long the upstream may take to answer
    #[arg(
        long,
        env = "AUDITRAIL_GATEWAY_UPSTREAM_TIMEOUT",
        default_value = "60s"
    )]
    upstream_timeout: humantime::Duration,
    /// How long shutdown waits for spooled events to reach the log
    #[arg(long, env = "AUDITRAIL_GATEWAY_DRAIN_TIMEOUT", default_value = "30s")]
    drain_timeout: humantime::Duration,
    /// Where the log is when the gateway appends to it itself (no --ingest-url)
    #[command(flatten)]
    store: StoreFlags,
    #[command(flatten)]
    limits: LimitFlags,
}

fn header(flag: &str, v: &str) -> anyhow::Result<HeaderName> {
    HeaderName::try_from(v).with_context(|| format!("--{flag} `{v}` is not a header name"))
}

fn load_catalog(spec: &str) -> anyhow::Result<Catalog> {
    if let Some(c) = builtin(spec) {
        return Ok(c);
    }
    let text = std::fs::read_to_string(spec).with_context(|| {
        format!(
            "--catalog {spec}: not a built-in catalog (prophecy, apollo-studio) nor a readable file"
        )
    })?;
    let parsed = if spec.ends_with(".json") {
        let v: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{spec} is not JSON"))?;
        Catalog::from_json(&v)
    } else {
        Catalog::from_toml(&text)
    };
    parsed.map_err(|e| {
        let problems: Vec<String> = e
            .problems()
            .iter()
            .map(|p| format!("{}: {}", p.field, p.reason))
            .collect();
        anyhow::anyhow!("catalog {spec} is invalid:\n  {}", problems.join("\n  "))
    })
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let o = Overrides::from_flags(&args.store, Some(&args.limits), None);
    let cfg = Config::resolve(&o, None)?;
    let upstream = reqwest::Url::parse(&args.upstream)
        .with_context(|| format!("--upstream {} is not a URL", args.upstream))?;
    if !matches!(upstream.scheme(), "http" | "https") {
        bail!("--upstream must be an http:// or https:// URL");
    }
    let catalog = load_catalog(&args.catalog)?;
    let org = match (&args.org, &args.org_header) {
        (Some(o), _) => OrgSource::Fixed(o.clone()),
        (None, Some(h)) => OrgSource::Header(header("org-header", h)?),
        (None, None) => bail!("give --org or --org-header"),
    };
    let actor = if let Some(h) = &args.actor_header {
        ActorSource::Header(header("actor-header", h)?)
    } else if let Some(f) = &args.jwt_secret_file {
        let secret = std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?;
        ActorSource::jwt_secret(&args.jwt_claim, &secret)
    } else if let Some(f) = &args.jwt_public_key_file {
        let pem = std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?;
        ActorSource::jwt_public_key(&args.jwt_claim, &pem)?
    } else {
        ActorSource::None
    };
    let sink: Arc<dyn Sink> = match &args.ingest_url {
        Some(url) => {
            if matches!(org, OrgSource::Header(_)) {
                bail!(
                    "--org-header needs the store (--data-dir or --database-url): an ingest key belongs to one org"
                );
            }
            let base = url.trim_end_matches('/');
            Arc::new(RemoteSink {
                client: reqwest::Client::new(),
                events_url: format!("{base}/v1/events"),
                token: args.ingest_token.clone().unwrap_or_default(),
            })
        }
        None => {
            let app = local_app(&cfg).await?;
            if let OrgSource::Fixed(org) = &org {
                app.store
                    .get_org(org)
                    .await?
                    .with_context(|| format!("org {org} does not exist in this store"))?;
            }
            Arc::new(StoreSink {
                service: app.service.clone(),
            })
        }
    };
    let gw = Gateway {
        upstream,
        rules: Rules::new(&catalog),
        org,
        actor,
        mode: match args.mode {
            ModeArg::FailClosed => Mode::FailClosed,
            ModeArg::FailOpen => Mode::FailOpen,
        },
        client_ip_header: args
            .client_ip_header
            .as_deref()
            .map(|h| header("client-ip-header", h))
            .transpose()?,
        max_body_bytes: args.max_body_bytes,
        max_response_bytes: args.max_response_bytes,
        upstream_timeout: Duration::from(args.upstream_timeout),
        drain_timeout: Duration::from(args.drain_timeout),
        spool_dir: args
            .spool_dir
            .clone()
            .unwrap_or_else(|| cfg.data_dir.join("gateway-spool")),
        spool: spool::Options {
            max_bytes: args.spool_max_bytes,
            ..spool::Options::default()
        },
        sink,
    };
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    // Tests and scripts read this line to learn the port when listening on port 0.
    println!(
        "auditrail gateway listening on http://{}",
        listener.local_addr()?
    );
    let spool_dir = gw.spool_dir.clone();
    auditrail_gateway::serve(listener, gw, crate::cmd::serve::shutdown_signal())
        .await
        .with_context(|| format!("gateway stopped (spool {})", spool_dir.display()))?;
    tracing::info!("gateway stopped");
    Ok(())
}
