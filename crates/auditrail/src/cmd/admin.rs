//! `auditrail orgs create`, `auditrail keys create`.

use clap::Subcommand;
use serde_json::{Value, json};

use auditrail_server::auth::Principal;
use auditrail_server::routes::orgs::{CreateKey, CreateOrg, create_key_as, create_org_as};

use super::Target;
use crate::config::{Config, Overrides};
use crate::local::local_app;
use crate::remote::Client;

#[derive(Subcommand)]
pub enum OrgsCommand {
    /// Create an org
    Create {
        id: String,
        #[arg(long)]
        name: Option<String>,
        /// A built-in catalog name
        #[arg(long)]
        catalog: Option<String>,
        /// Reject what the catalog does not name
        #[arg(long)]
        strict: bool,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create an API key; its token is printed once
    Create {
        #[arg(long)]
        org: String,
        /// ingest, viewer or admin
        #[arg(long)]
        role: String,
        #[arg(long, default_value = "cli")]
        name: String,
        #[command(flatten)]
        target: Target,
    },
}

fn print(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn api_err(e: auditrail_server::error::ApiError) -> anyhow::Error {
    anyhow::anyhow!("{} ({})", e.message, e.code)
}

pub async fn orgs(o: &Overrides, c: OrgsCommand) -> anyhow::Result<()> {
    let OrgsCommand::Create {
        id,
        name,
        catalog,
        strict,
        target,
    } = c;
    let body = json!({"id": id, "name": name, "catalog": catalog, "strict": strict});
    let out = match &target.url {
        Some(url) => {
            Client::new(url, target.token.as_deref())?
                .post("/v1/orgs", &body)
                .await?
        }
        None => {
            let app = local_app(&Config::resolve(o, None)?).await?;
            let req: CreateOrg = serde_json::from_value(body)?;
            let org = create_org_as(&app, &Principal::PlatformAdmin, req)
                .await
                .map_err(api_err);
            app.store.close();
            serde_json::to_value(org?)?
        }
    };
    print(&out);
    Ok(())
}

pub async fn keys(o: &Overrides, c: KeysCommand) -> anyhow::Result<()> {
    let KeysCommand::Create {
        org,
        role,
        name,
        target,
    } = c;
    let body = json!({"name": name, "role": role});
    let out = match &target.url {
        Some(url) => {
            Client::new(url, target.token.as_deref())?
                .post(&format!("/v1/orgs/{org}/keys"), &body)
                .await?
        }
        None => {
            let app = local_app(&Config::resolve(o, None)?).await?;
            let req: CreateKey = serde_json::from_value(body)?;
            let key = create_key_as(&app, &Principal::PlatformAdmin, &org, req)
                .await
                .map_err(api_err);
            app.store.close();
            key?
        }
    };
    print(&out);
    Ok(())
}
