//! `auditrail serve`.

use std::sync::Arc;

use anyhow::Context;
use auditrail_server::auth::{new_admin_token, sha256};
use auditrail_server::{App, Metrics};
use auditrail_store::Store;
use tokio::net::TcpListener;

use crate::config::{Config, LimitFlags, Overrides, ServiceFlags, StoreFlags};
use crate::local::{checked_signer, open_store, settings};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on [env: AUDITRAIL_LISTEN] [default: 127.0.0.1:8080]
    #[arg(long, env = "AUDITRAIL_LISTEN")]
    listen: Option<String>,
    /// Seed a demo org with sample events and print how to use it
    #[arg(long)]
    demo: bool,
    /// Print the effective configuration (secrets masked) and exit
    #[arg(long)]
    print_config: bool,
    #[command(flatten)]
    store: StoreFlags,
    #[command(flatten)]
    limits: LimitFlags,
    #[command(flatten)]
    service: ServiceFlags,
}

const ADMIN_HASH_SETTING: &str = "admin_token_sha256";

/// The platform admin token's hash: from configuration, or generated once and printed.
async fn admin_token_hash(cfg: &Config, store: &dyn Store) -> anyhow::Result<[u8; 32]> {
    if let Some(t) = &cfg.admin_token {
        return Ok(sha256(t.as_bytes()));
    }
    let token = new_admin_token();
    let ours = hex::encode(sha256(token.as_bytes()));
    let stored = store.init_setting(ADMIN_HASH_SETTING, &ours).await?;
    if stored == ours {
        eprintln!(
            "\nGenerated the platform admin token (shown only this once; set AUDITRAIL_ADMIN_TOKEN to choose your own):\n\n    {token}\n"
        );
    }
    hex::decode(&stored)
        .ok()
        .and_then(|b| b.try_into().ok())
        .context("stored admin token hash is corrupt")
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let o = Overrides::from_flags(&args.store, Some(&args.limits), Some(&args.service));
    let cfg = Config::resolve(&o, args.listen.clone())?;
    if args.print_config {
        print!("{}", cfg.render_masked());
        return Ok(());
    }
    let metrics = Arc::new(Metrics::new());
    let store = open_store(&cfg, Some(metrics.clone()), false).await?;
    let signer = checked_signer(&cfg, store.as_ref()).await?;
    let admin_hash = admin_token_hash(&cfg, store.as_ref()).await?;
    let listener = TcpListener::bind(&cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let mut settings = settings(&cfg)?;
    // Links default to the listen address; on port 0 that is the port actually bound.
    if settings.public_url == format!("http://{}", cfg.listen) {
        settings.public_url = format!("http://{addr}");
    }
    let app = App::new(store, signer, settings, metrics, admin_hash);
    // Tests and scripts read this line to learn the port when listening on port 0.
    println!("auditrail listening on http://{addr}");
    if args.demo {
        demo::seed(&app, &format!("http://{addr}")).await?;
    }
    auditrail_server::serve(app, listener, shutdown_signal()).await?;
    tracing::info!("stopped; every accepted event is committed");
    Ok(())
}

pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests and commits");
}

pub mod demo {
    //! `serve --demo`: a demo org with events from both reference catalogs. The org
    //! uses the Prophecy catalog, not strictly: Prophecy events are checked and their
    //! secrets redacted (`setPassword` below is stored as `[REDACTED]`); Apollo Studio
    //! events are accepted and counted as unknown actions.

    use auditrail_server::auth::Principal;
    use auditrail_server::routes::orgs::{CreateKey, CreateOrg, create_key_as, create_org_as};
    use auditrail_service::ingest::prepare_batch;
    use serde_json::{Value, json};

    use auditrail_server::App;

    pub const DEMO_ORG: &str = "demo";

    fn sample_events() -> Vec<Value> {
        let ann = json!({"id": "u-42", "type": "USER", "email": "ann@example.com", "name": "Ann Lee", "role": "ORG_ADMIN"});
        let bob = json!({"id": "u-7", "type": "USER", "email": "bob@example.com", "name": "Bob Roy", "role": "CONSUMER"});
        let key = json!({"id": "key-ci", "type": "API_KEY", "name": "ci deploy"});
        let p = |action: &str,
                 rtype: &str,
                 rid: &str,
                 scope: &str,
                 actor: &Value,
                 details: Value| {
            json!({"action": action, "resource": {"type": rtype, "id": rid}, "scope": {"type": "PROJECT", "id": scope},
                   "actor": actor, "details": details, "context": {"ip": "203.0.113.7"}, "outcome": "success"})
        };
        let g = |action: &str, rtype: &str, rid: &str, graph: &str, actor: &Value| {
            json!({"action": action, "resource": {"type": rtype, "id": rid}, "scope": {"type": "GRAPH", "id": graph},
                   "actor": actor, "outcome": "success"})
        };
        vec![
            p(
                "addProject",
                "PROJECT",
                "p-123",
                "p-123",
                &ann,
                json!({"name": "demo", "language": "scala"}),
            ),
            p(
                "addPipeline",
                "PIPELINE",
                "pl-1",
                "p-123",
                &ann,
                json!({"name": "ingest_orders", "branch": "main"}),
            ),
            p(
                "releaseProject",
                "PROJECT",
                "p-123",
                "p-123",
                &bob,
                json!({"version": "1.0.0"}),
            ),
            p(
                "addDataset",
                "DATASET",
                "ds-9",
                "p-123",
                &bob,
                json!({"name": "orders"}),
            ),
            p(
                "setPassword",
                "USER",
                "u-7",
                "p-123",
                &bob,
                json!({"uid": "u-7", "newPassword": "hunter2"}),
            ),
            g("CREATE", "GRAPH", "my-graph", "my-graph", &ann),
            g(
                "CONFIG_CHANGE",
                "GRAPH_VARIANT",
                "my-graph@prod",
                "my-graph",
                &key,
            ),
            g(
                "CREATE",
                "GRAPH_API_KEY",
                "service:my-graph:1",
                "my-graph",
                &ann,
            ),
            g("JOIN_ACCOUNT", "USER", "u-7", "my-graph", &ann),
            g("CREATE", "AUDIT_JOB", "export-1", "my-graph", &ann),
        ]
    }

    pub async fn seed(app: &App, base: &str) -> anyhow::Result<()> {
        let err = |e: auditrail_server::error::ApiError| {
            anyhow::anyhow!("demo seeding failed: {}", e.message)
        };
        if app.store.get_org(DEMO_ORG).await?.is_none() {
            let req = CreateOrg {
                id: DEMO_ORG.into(),
                name: Some("Demo Org".into()),
                catalog: Some(json!("prophecy")),
                strict: false,
                retention_days: None,
            };
            create_org_as(app, &Principal::PlatformAdmin, req)
                .await
                .map_err(err)?;
            let policy = app
                .policies
                .get(app, DEMO_ORG)
                .await
                .map_err(|e| err(e.into()))?;
            let events = prepare_batch(app, DEMO_ORG, Some(&policy), &sample_events(), true)
                .map_err(|e| err(e.into()))?;
            app.store.append(DEMO_ORG, events, true).await?;
        }
        let key = create_key_as(
            app,
            &Principal::PlatformAdmin,
            DEMO_ORG,
            CreateKey {
                name: "demo".into(),
                role: "admin".into(),
            },
        )
        .await
        .map_err(err)?;
        let token = key["token"].as_str().unwrap_or_default();
        let link = auditrail_server::routes::viewer::mint_as(
            app,
            &Principal::PlatformAdmin,
            DEMO_ORG,
            auditrail_server::routes::viewer::ViewerTokenRequest {
                actor_id: "demo-admin".into(),
                actor_name: Some("Demo Admin".into()),
                actor_email: None,
                role: "admin".into(),
                scope_id: None,
                ttl_seconds: Some(auditrail_server::routes::viewer::MAX_TTL_SECONDS),
            },
        )
        .await
        .map_err(err)?;
        let url = link["url"].as_str().unwrap_or_default();
        println!(
            "\nDemo org `{DEMO_ORG}` is ready. Its admin key (shown once):\n\n    export TOKEN={token}\n\n\
             Try:\n    curl -s -H \"Authorization: Bearer $TOKEN\" '{base}/v1/events?q=actor:u-42'\n\
             \x20   curl -s -H \"Authorization: Bearer $TOKEN\" {base}/v1/checkpoints/latest\n\n\
             The Audit page (this link works once, for 24 hours):\n\n    {url}\n"
        );
        Ok(())
    }
}
