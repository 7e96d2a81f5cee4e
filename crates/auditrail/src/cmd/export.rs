//! `auditrail export`: the same files as the API, written straight from the data dir
//! (or requested, awaited and downloaded from a server with `--url`), with a progress
//! bar. Beside `FILE` goes `FILE.checkpoint`, the signed checkpoint the export was cut
//! at.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use auditrail_core::export::Layout;
use auditrail_export::{ExportRequest, Format, Plan};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::Target;
use crate::config::{Config, Overrides};
use crate::local::local_app;
use crate::remote::Client;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The org to export
    #[arg(long)]
    org: String,
    /// Start of the range (inclusive): RFC 3339 or YYYY-MM-DD
    #[arg(long)]
    from: String,
    /// End of the range (exclusive)
    #[arg(long)]
    to: String,
    /// Only events by this actor id
    #[arg(long)]
    actor: Option<String>,
    /// Only events in this scope (graph) id
    #[arg(long)]
    scope: Option<String>,
    /// Only events with this action
    #[arg(long)]
    action: Option<String>,
    /// Only events on this resource type
    #[arg(long)]
    resource_type: Option<String>,
    #[arg(long, value_enum, default_value = "csv")]
    format: FormatArg,
    /// CSV columns: Apollo Studio's, or those plus Seq, Event_ID, Received_At, Leaf_Hash
    #[arg(long, value_enum, default_value = "apollo")]
    layout: LayoutArg,
    /// gzip the file (csv and ndjson)
    #[arg(long)]
    gzip: bool,
    /// Where to write the file (its proof goes to FILE.proof)
    #[arg(short = 'o', long = "output")]
    output: PathBuf,
    /// Do not write FILE.proof (the rows then cannot be verified offline)
    #[arg(long)]
    no_proof: bool,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    Csv,
    Ndjson,
    Parquet,
    /// OCSF API Activity records, JSON lines.
    Ocsf,
    /// OCSF API Activity records, Parquet.
    #[value(name = "ocsf_parquet", alias = "ocsf-parquet")]
    OcsfParquet,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LayoutArg {
    Apollo,
    Full,
}

impl Args {
    fn request(&self) -> ExportRequest {
        ExportRequest {
            from: self.from.clone(),
            to: self.to.clone(),
            actor_id: self.actor.clone(),
            scope_id: self.scope.clone(),
            action: self.action.clone(),
            resource_type: self.resource_type.clone(),
            format: match self.format {
                FormatArg::Csv => Format::Csv,
                FormatArg::Ndjson => Format::Ndjson,
                FormatArg::Parquet => Format::Parquet,
                FormatArg::Ocsf => Format::Ocsf,
                FormatArg::OcsfParquet => Format::OcsfParquet,
            },
            layout: match self.layout {
                LayoutArg::Apollo => Layout::Apollo,
                LayoutArg::Full => Layout::Full,
            },
            gzip: self.gzip,
            notify_email: None,
        }
    }
}

fn bar() -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template("{spinner} {human_pos} rows written ({per_sec}) {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

fn sidecar(output: &Path) -> PathBuf {
    beside(output, ".checkpoint")
}

/// `FILE.proof`: what `auditrail verify FILE` proves the rows with.
pub fn proof_path(output: &Path) -> PathBuf {
    beside(output, ".proof")
}

fn beside(output: &Path, ext: &str) -> PathBuf {
    let mut s = output.as_os_str().to_owned();
    s.push(ext);
    PathBuf::from(s)
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let o = &Overrides::from_flags(&args.target.store, None, None);
    let req = args.request();
    let started = Instant::now();
    let (rows, bytes, sha256) = match &args.target.url {
        Some(url) => {
            remote(
                Client::new(url, args.target.token.as_deref())?,
                &req,
                &args.output,
                !args.no_proof,
            )
            .await?
        }
        None => {
            local(
                &Config::resolve(o, None)?,
                &args.org,
                &req,
                &args.output,
                !args.no_proof,
            )
            .await?
        }
    };
    eprintln!(
        "exported {rows} events to {} ({bytes} bytes, sha256 {sha256}) in {:.2}s; proof in {}",
        args.output.display(),
        started.elapsed().as_secs_f64(),
        proof_path(&args.output).display()
    );
    Ok(())
}

async fn local(
    cfg: &Config,
    org: &str,
    req: &ExportRequest,
    output: &Path,
    with_proof: bool,
) -> anyhow::Result<(u64, u64, String)> {
    let filter = req
        .validate(cfg.export_max_range.as_micros() as i64)
        .map_err(|e| anyhow::anyhow!("--{}: {}", e.field.replace('_', "-"), e.reason))?;
    let app = local_app(cfg).await?;
    if app.store.get_org(org).await?.is_none() {
        bail!("org `{org}` does not exist");
    }
    let (size, note) = auditrail_server::exports::cut(&app, org)
        .await
        .map_err(|e| anyhow::anyhow!("cannot sign the checkpoint to cut at: {}", e.message))?;
    let part = output.with_extension("part");
    let file = std::fs::File::create(&part)
        .with_context(|| format!("cannot create {}", part.display()))?;
    let ocsf = auditrail_server::ocsf::mapper(&app, org, req.format.is_ocsf())
        .await
        .map_err(|e| anyhow::anyhow!(e))?
        .unwrap_or_default();
    let plan = Plan {
        org: org.to_owned(),
        filter,
        upto_seq: size,
        format: req.format,
        layout: req.layout,
        gzip: req.gzip,
        ocsf,
    };
    let counter = Arc::new(AtomicU64::new(0));
    let pb = bar();
    let work = auditrail_export::write_file(app.store.clone(), plan, file, counter.clone());
    tokio::pin!(work);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let summary = loop {
        tokio::select! {
            r = &mut work => break r,
            _ = tick.tick() => pb.set_position(counter.load(Ordering::Relaxed)),
        }
    };
    pb.finish_and_clear();
    let summary = match summary {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            return Err(e.into());
        }
    };
    if with_proof {
        let proof =
            auditrail_export::proof::build(app.store.as_ref(), org, size, &summary.seqs, &note)
                .await
                .context("cannot build the export's proof")?;
        std::fs::write(proof_path(output), proof)
            .context("cannot write the proof beside the file")?;
    }
    std::fs::rename(&part, output)
        .with_context(|| format!("cannot move the file to {}", output.display()))?;
    std::fs::write(sidecar(output), &note)
        .context("cannot write the checkpoint beside the file")?;
    let details = json!({"via": "cli", "request": req, "row_count": summary.rows, "sha256": summary.sha256, "checkpoint_size": size});
    auditrail_service::ingest::record_audit_event(
        &app,
        org,
        json!({"id": "auditrail-cli", "type": "SYSTEM"}),
        "exportLocally",
        json!({"type": "AUDIT_JOB", "id": output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()}),
        details,
        "success",
    )
    .await
    .map_err(|e| anyhow::anyhow!("export written, but recording it in the org's log failed: {}", e))?;
    app.store.close();
    Ok((summary.rows, summary.bytes, summary.sha256))
}

async fn remote(
    client: Client,
    req: &ExportRequest,
    output: &Path,
    with_proof: bool,
) -> anyhow::Result<(u64, u64, String)> {
    let body = serde_json::to_value(req)?;
    let job = client.post("/v1/exports", &body).await?;
    let id = job["id"]
        .as_str()
        .context("the server answered without an export id")?
        .to_owned();
    let pb = bar();
    let job = loop {
        let job = client.get_json(&format!("/v1/exports/{id}")).await?;
        pb.set_position(job["row_count"].as_u64().unwrap_or(0));
        match job["status"].as_str() {
            Some("queued" | "running") => tokio::time::sleep(Duration::from_millis(250)).await,
            Some("succeeded") => break job,
            Some(s) => bail!("export {id} {s}: {}", job["error"].as_str().unwrap_or("")),
            None => bail!("unexpected answer: {job}"),
        }
    };
    pb.finish_and_clear();
    let part = output.with_extension("part");
    client
        .download(&format!("/v1/exports/{id}/download"), &part)
        .await?;
    let sha = job["sha256"].as_str().unwrap_or_default().to_owned();
    let got = sha256_file(&part)?;
    if got != sha {
        bail!("downloaded file's SHA-256 {got} is not the export's {sha}; try again");
    }
    std::fs::rename(&part, output)
        .with_context(|| format!("cannot move the file to {}", output.display()))?;
    let note = client
        .get_text(&format!("/v1/exports/{id}/checkpoint"))
        .await?;
    std::fs::write(sidecar(output), note).context("cannot write the checkpoint beside the file")?;
    if with_proof {
        let proof = client.get_text(&format!("/v1/exports/{id}/proof")).await?;
        std::fs::write(proof_path(output), proof)
            .context("cannot write the proof beside the file")?;
    }
    Ok((
        job["row_count"].as_u64().unwrap_or(0),
        job["bytes"].as_u64().unwrap_or(0),
        sha,
    ))
}

fn sha256_file(path: &Path) -> anyhow::Result<String> {
    use sha2::Digest;
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}
