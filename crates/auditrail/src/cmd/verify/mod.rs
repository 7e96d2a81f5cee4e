//! `auditrail verify s3://bucket/prefix | gs://bucket/prefix | az://container/prefix | DIR |
//! https://host/logs/ORG`: proves a
//! delivered log (or a tiled one) whole and unaltered. For a bucket or directory: lists
//! the objects, checks every seq appears exactly once, recomputes every leaf and root,
//! checks every checkpoint's signature and root, and names the first bad object and seq.

mod file;
mod tiles;
mod witnesses;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use auditrail_core::delivery::{
    Entry, FrontierFile, ObjectFormat, OrgVerifier, classify, classify_security_lake,
};
use auditrail_core::note::NoteVerifier;
use base64::Engine;
use futures_util::TryStreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// `s3://bucket/prefix` (credentials from the standard AWS environment),
    /// `gs://bucket/prefix` (GOOGLE_SERVICE_ACCOUNT_KEY or _PATH, or application default
    /// credentials), `az://container/prefix` (AZURE_STORAGE_ACCOUNT_NAME with
    /// AZURE_STORAGE_ACCOUNT_KEY or AZURE_STORAGE_SAS_KEY), a local directory holding a
    /// copy of the prefix, or a tlog-tiles log (`https://auditrail.example.com/logs/ORG`,
    /// with --token)
    pub target: String,
    /// The server's checkpoint verifier key (`GET /v1/public-key`), or a file holding it;
    /// without it, roots are matched but signatures are not checked
    #[arg(long)]
    pub public_key: Option<String>,
    /// The store's endpoint: S3-compatible (path-style requests), e.g.
    /// http://127.0.0.1:9000; for gs:// and az:// the service's base URL (an emulator)
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub endpoint: Option<String>,
    /// A witness's cosignature verifier key (or a file holding it); repeat for several
    #[arg(long = "witness")]
    pub witnesses: Vec<String>,
    /// How many of the --witness keys must have cosigned the checkpoint (default: all)
    #[arg(long)]
    pub min_cosignatures: Option<usize>,
    /// A viewer or admin key of the org, for a tiles URL
    #[arg(long, env = "AUDITRAIL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// For an export file: its proof (default: FILE.proof beside it)
    #[arg(long)]
    pub proof: Option<PathBuf>,
    /// Hide the progress bar
    #[arg(long)]
    pub quiet: bool,
}

fn open(args: &Args) -> anyhow::Result<(Arc<dyn ObjectStore>, String)> {
    if let Some(rest) = args.target.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            bail!("s3:// needs a bucket: s3://bucket/prefix");
        }
        let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(e) = &args.endpoint {
            b = b
                .with_endpoint(e)
                .with_virtual_hosted_style_request(false)
                .with_allow_http(e.starts_with("http://"));
        }
        let store = b.build().context("cannot set up the S3 client")?;
        return Ok((Arc::new(store), prefix.trim_end_matches('/').to_owned()));
    }
    if let Some(rest) = args.target.strip_prefix("gs://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            bail!("gs:// needs a bucket: gs://bucket/prefix");
        }
        // Credentials from the standard environment; the objects over GCS's JSON API.
        let tokens = GoogleCloudStorageBuilder::from_env()
            .with_bucket_name(bucket)
            .build()
            .context("cannot set up the GCS client")?;
        let base = args
            .endpoint
            .as_deref()
            .unwrap_or(auditrail_server::delivery::gcs::DEFAULT_BASE_URL);
        let store = auditrail_server::delivery::gcs::GcsJson::new(
            base,
            bucket,
            tokens.credentials().clone(),
            reqwest::Client::new(),
        );
        return Ok((Arc::new(store), prefix.trim_end_matches('/').to_owned()));
    }
    if let Some(rest) = args.target.strip_prefix("az://") {
        let (container, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if container.is_empty() {
            bail!("az:// needs a container: az://container/prefix");
        }
        let mut b = MicrosoftAzureBuilder::from_env().with_container_name(container);
        if let Some(e) = &args.endpoint {
            b = b
                .with_endpoint(e.clone())
                .with_allow_http(e.starts_with("http://"));
        }
        let store = b.build().context("cannot set up the Azure client")?;
        return Ok((Arc::new(store), prefix.trim_end_matches('/').to_owned()));
    }
    let dir = PathBuf::from(&args.target);
    if dir.is_file() {
        bail!(
            "{} is a file; verify takes a delivered prefix (s3://bucket/prefix) or a directory copy of one",
            dir.display()
        );
    }
    if !dir.is_dir() {
        bail!(
            "{} is neither s3://, gs:// or az://bucket/prefix nor a directory",
            dir.display()
        );
    }
    let store = LocalFileSystem::new_with_prefix(&dir)
        .with_context(|| format!("cannot open {}", dir.display()))?;
    Ok((Arc::new(store), String::new()))
}

fn load_key(k: &str) -> anyhow::Result<NoteVerifier> {
    let text = if std::path::Path::new(k).is_file() {
        std::fs::read_to_string(k).with_context(|| format!("cannot read {k}"))?
    } else {
        k.to_owned()
    };
    // `GET /v1/public-key` answers JSON; accept it as saved, or the bare key.
    let key = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| {
            v.get("verifier_key")
                .and_then(|s| s.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| text.trim().to_owned());
    NoteVerifier::parse(&key).map_err(|e| anyhow::anyhow!("--public-key: {e}"))
}

#[derive(Default)]
struct OrgFiles {
    objects: Vec<(u64, u64, String, String, ObjectFormat)>,
    checkpoints: Vec<(u64, String)>,
    frontiers: Vec<String>,
    /// The `_tlog` directory, when the destination publishes tiles.
    tlog: Option<String>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let key = args.public_key.as_deref().map(load_key).transpose()?;
    let policy = witnesses::Policy::new(&args.witnesses, args.min_cosignatures)?;
    if args.target.starts_with("http://") || args.target.starts_with("https://") {
        if key.is_none() {
            eprintln!("warning: no --public-key given; the checkpoint's signature is not checked");
        }
        let source = tiles::Source::Http {
            http: reqwest::Client::new(),
            token: args.token.clone(),
        };
        let r = tiles::verify(&source, &args.target, key.as_ref(), &policy).await?;
        println!(
            "log {}: {} entries; every leaf, every hash tile and the root match the checkpoint; root is {}",
            r.origin,
            r.size,
            base64::engine::general_purpose::STANDARD.encode(r.root)
        );
        if r.pruned > 0 {
            println!(
                "  {} entries were purged by retention: their leaves were taken from the hash tiles",
                r.pruned
            );
        }
        if !r.cosigned_by.is_empty() {
            println!("  cosigned by {}", r.cosigned_by.join(", "));
        }
        return Ok(());
    }
    let as_path = std::path::Path::new(&args.target);
    if as_path.is_file() {
        if key.is_none() {
            eprintln!("warning: no --public-key given; the checkpoint's signature is not checked");
        }
        let r = file::verify(as_path, args.proof.as_deref(), key.as_ref(), &policy)?;
        println!(
            "{}: {} rows, each proven in the signed tree of {} events{}",
            as_path.display(),
            r.rows,
            r.size,
            if r.recomputed {
                "; every row's leaf recomputed from its content"
            } else {
                "; rows are bound by their Leaf_Hash (export NDJSON to recompute each leaf from the row's content)"
            }
        );
        if !r.cosigned_by.is_empty() {
            println!("  cosigned by {}", r.cosigned_by.join(", "));
        }
        return Ok(());
    }
    let (store, prefix) = open(&args)?;
    let list_at = (!prefix.is_empty()).then(|| Path::from(prefix.as_str()));
    let metas: Vec<_> = store
        .list(list_at.as_ref())
        .try_collect()
        .await
        .with_context(|| format!("cannot list {}", args.target))?;
    let mut orgs: BTreeMap<String, OrgFiles> = BTreeMap::new();
    for m in &metas {
        let full = m.location.as_ref();
        let rel = match prefix.as_str() {
            "" => full,
            p => full
                .strip_prefix(p)
                .and_then(|r| r.strip_prefix('/'))
                .unwrap_or(full),
        };
        // A Security Lake source (`s3://bucket/ext/{source}`) holds the objects under
        // `region=…/` and auditrail's own files under `_auditrail/`.
        let entry = if rel.starts_with("region=") || rel.starts_with("_auditrail/org=") {
            classify_security_lake(rel)
        } else if rel.starts_with("_auditrail/") {
            continue;
        } else {
            classify(rel)
        };
        match entry {
            Some(Entry::Object {
                org,
                date,
                first,
                last,
                format,
            }) => orgs.entry(org).or_default().objects.push((
                first,
                last,
                full.to_owned(),
                date,
                format,
            )),
            Some(Entry::Checkpoint { org, size }) => orgs
                .entry(org)
                .or_default()
                .checkpoints
                .push((size, full.to_owned())),
            Some(Entry::Frontier { org, .. }) => {
                orgs.entry(org).or_default().frontiers.push(full.to_owned())
            }
            Some(Entry::TlogCheckpoint { org }) => {
                let dir = full.strip_suffix("/checkpoint").unwrap_or(full).to_owned();
                orgs.entry(org).or_default().tlog = Some(dir);
            }
            Some(Entry::Tile { .. }) => {}
            None => bail!("{full}: unexpected object (not one auditrail writes)"),
        }
    }
    if orgs.is_empty() {
        bail!("{}: no delivered objects found", args.target);
    }
    if key.is_none() {
        eprintln!("warning: no --public-key given; checkpoint signatures are not checked");
    }
    let total: usize = orgs.values().map(|o| o.objects.len()).sum();
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} objects {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut reports = Vec::new();
    let mut tlog_reports = Vec::new();
    for (org, mut files) in orgs {
        let mut v = OrgVerifier::new(&org, key.clone());
        if let Some(dir) = &files.tlog {
            // The tiled log beside the objects: checked whole, from its tiles, against its
            // (witness-cosigned) checkpoint; that checkpoint's root must also be the one
            // the objects recompute to at its size.
            let t = tiles::verify(
                &tiles::Source::Store(store.clone()),
                dir,
                key.as_ref(),
                &policy,
            )
            .await?;
            let name = format!("{dir}/checkpoint");
            let note = read_text(store.as_ref(), &name).await?;
            v.add_checkpoint(&name, t.size, &note)?;
            tlog_reports.push((org.clone(), t));
        } else if !policy.is_empty() {
            bail!(
                "org {org}: no tiled log (_tlog/) beside the objects, so no witness-cosigned checkpoint to check"
            );
        }
        for (size, name) in &files.checkpoints {
            let note = read_text(store.as_ref(), name).await?;
            v.add_checkpoint(name, *size, &note)?;
        }
        if let Some(name) = files.frontiers.first() {
            let text = read_text(store.as_ref(), name).await?;
            let f: FrontierFile = serde_json::from_str(&text)
                .with_context(|| format!("{name}: malformed frontier"))?;
            v.start_from(name, &f)?;
        }
        files
            .objects
            .sort_by(|a, b| (a.0, a.1, &a.2).cmp(&(b.0, b.1, &b.2)));
        for (first, last, name, date, format) in &files.objects {
            let (first, last) = (*first, *last);
            match format {
                ObjectFormat::NdjsonGz => {
                    let text = gunzipped(store.as_ref(), name).await?;
                    v.ndjson_object(name, date, first, last, text.split('\n'))?;
                }
                ObjectFormat::Ocsf => {
                    // Each record carries its event in `unmapped`, exactly as hashed.
                    let text = gunzipped(store.as_ref(), name).await?;
                    let lines = text
                        .split('\n')
                        .filter(|l| !l.is_empty())
                        .map(auditrail_core::ocsf::exported_line)
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
                    v.ndjson_object(name, date, first, last, lines.iter().map(|l| l.as_str()))?;
                }
                ObjectFormat::OcsfParquet => {
                    // Each row carries its event, exactly as hashed, in `unmapped.event`.
                    let raw = read_bytes(store.as_ref(), name).await?;
                    let events = auditrail_export::ocsf::parquet_events(raw)
                        .with_context(|| format!("{name}: not OCSF Parquet"))?;
                    let lines: Vec<String> = events
                        .iter()
                        .map(|e| {
                            let leaf = auditrail_core::merkle::leaf_hash(e.as_bytes());
                            auditrail_core::event::with_leaf_hash(e, &leaf)
                        })
                        .collect();
                    v.ndjson_object(name, date, first, last, lines.iter().map(|l| l.as_str()))?;
                }
                ObjectFormat::CsvGz | ObjectFormat::Parquet => v.skip_object(name, first, last)?,
            }
            bar.inc(1);
        }
        reports.push(v.finish()?);
    }
    bar.finish_and_clear();
    for (org, t) in &tlog_reports {
        println!(
            "org {org}: the tiled log (_tlog) checks out at {} entries{}{}",
            t.size,
            if t.pruned > 0 {
                format!(" ({} entries taken from hash tiles)", t.pruned)
            } else {
                String::new()
            },
            if t.cosigned_by.is_empty() {
                String::new()
            } else {
                format!("; cosigned by {}", t.cosigned_by.join(", "))
            }
        );
    }
    for r in reports {
        let root = base64::engine::general_purpose::STANDARD.encode(r.root);
        println!(
            "org {}: seqs {}..{} in {} objects, each once; {} checkpoints matched; root at {} is {root}",
            r.org, r.first_seq, r.size, r.objects, r.checkpoints, r.size
        );
        if r.unhashed_objects > 0 {
            println!(
                "  {} objects are not NDJSON: their ranges were checked, their leaves and later roots could not be",
                r.unhashed_objects
            );
        }
    }
    Ok(())
}

/// A gzip'd text object, unpacked.
async fn gunzipped(store: &dyn ObjectStore, name: &str) -> anyhow::Result<String> {
    let raw = read_bytes(store, name).await?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(raw.as_ref())
        .read_to_string(&mut text)
        .with_context(|| format!("{name}: not gzip'd UTF-8 text"))?;
    Ok(text)
}

async fn read_bytes(store: &dyn ObjectStore, name: &str) -> anyhow::Result<bytes::Bytes> {
    let got = store
        .get(&Path::from(name))
        .await
        .with_context(|| format!("{name}: cannot read"))?;
    got.bytes()
        .await
        .with_context(|| format!("{name}: cannot read"))
}

async fn read_text(store: &dyn ObjectStore, name: &str) -> anyhow::Result<String> {
    let b = read_bytes(store, name).await?;
    String::from_utf8(b.to_vec()).with_context(|| format!("{name}: not UTF-8"))
}
