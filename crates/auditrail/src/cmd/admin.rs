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
        /// A built-in catalog (prophecy, apollo-studio) or a catalog file (.toml or .json)
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

/// An API error as the commands report it: its message and code.
pub(crate) fn api_err(e: auditrail_server::error::ApiError) -> anyhow::Error {
    anyhow::anyhow!("{} ({})", e.message, e.code)
}

/// `--catalog`: a built-in's name as is, or a file read into a catalog document.
fn catalog_arg(c: &str) -> anyhow::Result<Value> {
    use auditrail_core::catalog::{BUILTIN_NAMES, Catalog};
    if BUILTIN_NAMES.contains(&c) {
        return Ok(json!(c));
    }
    let path = std::path::Path::new(c);
    if !path.exists() {
        anyhow::bail!(
            "--catalog {c}: neither a built-in catalog ({}) nor a file",
            BUILTIN_NAMES.join(", ")
        );
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read catalog {c}: {e}"))?;
    let parsed = if c.ends_with(".json") {
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("catalog {c} is not valid JSON: {e}"))?;
        Catalog::from_json(&v)
    } else {
        Catalog::from_toml(&text)
    };
    let catalog = parsed.map_err(|e| {
        let lines: Vec<String> = e
            .problems()
            .iter()
            .map(|p| format!("  {}: {}", p.field, p.reason))
            .collect();
        anyhow::anyhow!("catalog {c} is invalid:\n{}", lines.join("\n"))
    })?;
    Ok(catalog.to_json())
}

pub async fn orgs(c: OrgsCommand) -> anyhow::Result<()> {
    let OrgsCommand::Create {
        id,
        name,
        catalog,
        strict,
        target,
    } = c;
    let catalog = catalog.map(|c| catalog_arg(&c)).transpose()?;
    let body = json!({"id": id, "name": name, "catalog": catalog, "strict": strict});
    let out = match &target.url {
        Some(url) => {
            Client::new(url, target.token.as_deref())?
                .post("/v1/orgs", &body)
                .await?
        }
        None => {
            let app = local_app(&Config::resolve(
                &Overrides::from_flags(&target.store, None, None),
                None,
            )?)
            .await?;
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

pub async fn keys(c: KeysCommand) -> anyhow::Result<()> {
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
            let app = local_app(&Config::resolve(
                &Overrides::from_flags(&target.store, None, None),
                None,
            )?)
            .await?;
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
