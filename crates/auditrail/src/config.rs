//! Configuration: defaults → `auditrail.toml` → `AUDITRAIL_*` environment → flags.
//!
//! Flags and environment arrive together through clap (a flag beats its variable); a
//! value from either beats the file, and the file beats the defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

/// The example configuration, printed by `auditrail config example`.
pub const EXAMPLE: &str = include_str!("../auditrail.example.toml");

/// What `auditrail.toml` may contain. Unknown keys are an error, so typos surface.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub admin_token: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub database_pool_size: Option<usize>,
    pub lease_ttl: Option<String>,
    pub seal_keep_open: Option<usize>,
    pub tail_max_streams: Option<usize>,
    pub exports_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub public_url: Option<String>,
    pub smtp_url: Option<String>,
    pub smtp_from: Option<String>,
    pub export_ttl: Option<String>,
    pub export_max_range: Option<String>,
    pub export_workers: Option<usize>,
    pub checkpoint_interval: Option<String>,
    pub signing_key_file: Option<PathBuf>,
    pub secret_key_file: Option<PathBuf>,
    pub aws_principal_arn: Option<String>,
    pub outbound_allow: Option<Vec<String>>,
    pub ui_frame_ancestors: Option<String>,
    pub max_clock_skew: Option<String>,
    pub log_origin: Option<String>,
    pub max_details_bytes: Option<usize>,
    pub max_details_depth: Option<usize>,
    pub max_details_keys: Option<usize>,
    pub max_details_key_len: Option<usize>,
    pub max_details_value_len: Option<usize>,
}

/// Where the data is: the flags of every command that opens the store itself.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct StoreFlags {
    /// Configuration file [env: AUDITRAIL_CONFIG] [default: ./auditrail.toml if present]
    #[arg(long, env = "AUDITRAIL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory holding the SQLite database, signing key and lock file
    #[arg(long, env = "AUDITRAIL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// `postgres://...` to use PostgreSQL instead of the embedded SQLite
    #[arg(long, env = "AUDITRAIL_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// PostgreSQL connections one node may hold [default: 16]
    #[arg(long, env = "AUDITRAIL_DATABASE_POOL_SIZE")]
    pub database_pool_size: Option<usize>,
    #[arg(long, env = "AUDITRAIL_SIGNING_KEY_FILE")]
    pub signing_key_file: Option<PathBuf>,
    /// Key that seals destination credentials at rest [default: <data dir>/secret.key]
    #[arg(long, env = "AUDITRAIL_SECRET_KEY_FILE")]
    pub secret_key_file: Option<PathBuf>,
    /// Name of the signing key and prefix of checkpoint origins (`<origin>/<org>`)
    #[arg(long, env = "AUDITRAIL_LOG_ORIGIN")]
    pub log_origin: Option<String>,
}

/// Bounds on events: the flags of every command that validates them.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct LimitFlags {
    /// How far in the future `occurred_at` may be
    #[arg(long, env = "AUDITRAIL_MAX_CLOCK_SKEW")]
    pub max_clock_skew: Option<String>,
    /// Largest serialized `details` in bytes [default: 32768]
    #[arg(long, env = "AUDITRAIL_MAX_DETAILS_BYTES")]
    pub max_details_bytes: Option<usize>,
    /// Deepest nesting of `details` [default: 8]
    #[arg(long, env = "AUDITRAIL_MAX_DETAILS_DEPTH")]
    pub max_details_depth: Option<usize>,
    /// Most keys in `details`, counted at every level [default: 256]
    #[arg(long, env = "AUDITRAIL_MAX_DETAILS_KEYS")]
    pub max_details_keys: Option<usize>,
    /// Longest `details` key in characters [default: 128]
    #[arg(long, env = "AUDITRAIL_MAX_DETAILS_KEY_LEN")]
    pub max_details_key_len: Option<usize>,
    /// Longest string value in `details` in characters [default: 8192]
    #[arg(long, env = "AUDITRAIL_MAX_DETAILS_VALUE_LEN")]
    pub max_details_value_len: Option<usize>,
}

/// The running service's own settings: `auditrail serve` only.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ServiceFlags {
    /// How long background work stays with a node that stops renewing it [default: 15s]
    #[arg(long, env = "AUDITRAIL_LEASE_TTL")]
    pub lease_ttl: Option<String>,
    /// Each org's newest events kept as they are; older complete tiles of 256 events
    /// are sealed (compressed) in the background [default: 4096]
    #[arg(long, env = "AUDITRAIL_SEAL_KEEP_OPEN")]
    pub seal_keep_open: Option<usize>,
    /// Live tails (`GET /v1/events/stream`, the Audit page's Live mode) one org may
    /// hold open at once [default: 256]
    #[arg(long, env = "AUDITRAIL_TAIL_MAX_STREAMS")]
    pub tail_max_streams: Option<usize>,
    /// Where export files are written [default: <data dir>/exports]; shared storage
    /// when several nodes serve one PostgreSQL database
    #[arg(long, env = "AUDITRAIL_EXPORTS_DIR")]
    pub exports_dir: Option<PathBuf>,
    #[arg(
        long,
        env = "AUDITRAIL_ADMIN_TOKEN",
        hide = true,
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    #[arg(long, env = "AUDITRAIL_PUBLIC_URL")]
    pub public_url: Option<String>,
    #[arg(long, env = "AUDITRAIL_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    #[arg(long, env = "AUDITRAIL_SMTP_FROM")]
    pub smtp_from: Option<String>,
    /// How long finished export files stay downloadable [default: 30d]
    #[arg(long, env = "AUDITRAIL_EXPORT_TTL")]
    pub export_ttl: Option<String>,
    /// Widest time range one export may cover [default: 366d]
    #[arg(long, env = "AUDITRAIL_EXPORT_MAX_RANGE")]
    pub export_max_range: Option<String>,
    /// Exports run at the same time by one server [default: 2]
    #[arg(long, env = "AUDITRAIL_EXPORT_WORKERS")]
    pub export_workers: Option<usize>,
    #[arg(long, env = "AUDITRAIL_CHECKPOINT_INTERVAL")]
    pub checkpoint_interval: Option<String>,
    /// The AWS role or user auditrail delivers as, for the bucket policies it suggests
    #[arg(long, env = "AUDITRAIL_AWS_PRINCIPAL_ARN")]
    pub aws_principal_arn: Option<String>,
    /// Non-global address ranges (CIDR, comma-separated) that destinations, STS
    /// endpoints and webhooks may reach [default: none: only global addresses]
    #[arg(long, env = "AUDITRAIL_OUTBOUND_ALLOW", value_delimiter = ',')]
    pub outbound_allow: Option<Vec<String>>,
    /// Sites allowed to show the Audit page in a frame (CSP frame-ancestors) [default: 'self']
    #[arg(long, env = "AUDITRAIL_UI_FRAME_ANCESTORS")]
    pub ui_frame_ancestors: Option<String>,
}

/// Values given by flag or environment (`None` when neither), gathered from the flag
/// groups a command takes; a command without a group leaves it empty.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub store: StoreFlags,
    pub limits: LimitFlags,
    pub service: ServiceFlags,
}

impl Overrides {
    /// The overrides of a command that takes `store`, and `limits` and `service` when
    /// given.
    pub fn from_flags(
        store: &StoreFlags,
        limits: Option<&LimitFlags>,
        service: Option<&ServiceFlags>,
    ) -> Self {
        Self {
            store: store.clone(),
            limits: limits.cloned().unwrap_or_default(),
            service: service.cloned().unwrap_or_default(),
        }
    }
}

/// The effective configuration.
#[derive(Clone)]
pub struct Config {
    pub admin_token: Option<String>,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub database_pool_size: usize,
    pub lease_ttl: Duration,
    pub seal_keep_open: u64,
    pub tail_max_streams: usize,
    pub exports_dir: PathBuf,
    pub listen: String,
    pub public_url: String,
    pub smtp_url: Option<String>,
    pub smtp_from: String,
    pub export_ttl: Duration,
    pub export_max_range: Duration,
    pub export_workers: usize,
    pub checkpoint_interval: Duration,
    pub signing_key_file: PathBuf,
    pub secret_key_file: PathBuf,
    pub aws_principal_arn: Option<String>,
    /// Ranges outside the global address space that org URLs may reach.
    pub outbound_allow: auditrail_core::outbound::AddressPolicy,
    pub ui_frame_ancestors: String,
    pub max_clock_skew: Duration,
    pub log_origin: String,
    /// Bounds on `details` (the clock-skew bound is `max_clock_skew`).
    pub details: DetailLimits,
    pub source: Option<PathBuf>,
}

/// Configurable bounds on an event's `details`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetailLimits {
    pub bytes: usize,
    pub depth: usize,
    pub keys: usize,
    pub key_len: usize,
    pub value_len: usize,
}

fn duration(name: &str, v: &str) -> anyhow::Result<Duration> {
    humantime::parse_duration(v)
        .with_context(|| format!("{name}: `{v}` is not a duration such as 5s, 10m or 30d"))
}

fn load_file(explicit: Option<&Path>) -> anyhow::Result<(FileConfig, Option<PathBuf>)> {
    let path = match explicit {
        Some(p) => p.to_owned(),
        None if Path::new("auditrail.toml").exists() => PathBuf::from("auditrail.toml"),
        None => return Ok((FileConfig::default(), None)),
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let file: FileConfig =
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))?;
    Ok((file, Some(path)))
}

impl Config {
    pub fn resolve(o: &Overrides, listen_flag: Option<String>) -> anyhow::Result<Self> {
        let (f, source) = load_file(o.store.config.as_deref())?;
        let data_dir = o
            .store
            .data_dir
            .clone()
            .or(f.data_dir)
            .unwrap_or_else(|| PathBuf::from("./auditrail-data"));
        let listen = listen_flag
            .or(f.listen)
            .unwrap_or_else(|| "127.0.0.1:8080".into());
        let public_url = o
            .service
            .public_url
            .clone()
            .or(f.public_url)
            .unwrap_or_else(|| format!("http://{listen}"));
        let pick = |a: &Option<String>, b: Option<String>, d: &str| {
            a.clone().or(b).unwrap_or_else(|| d.to_owned())
        };
        let checkpoint_interval = duration(
            "checkpoint_interval",
            &pick(&o.service.checkpoint_interval, f.checkpoint_interval, "5s"),
        )?;
        if checkpoint_interval < Duration::from_millis(100) {
            bail!("checkpoint_interval must be at least 100ms");
        }
        let lease_ttl = duration("lease_ttl", &pick(&o.service.lease_ttl, f.lease_ttl, "15s"))?;
        if lease_ttl < Duration::from_secs(1) {
            bail!("lease_ttl must be at least 1s");
        }
        let log_origin = pick(&o.store.log_origin, f.log_origin, "auditrail");
        if log_origin.is_empty() || log_origin.contains(['+', ' ', '\n']) {
            bail!("log_origin must be non-empty without spaces or '+'");
        }
        let defaults = auditrail_core::Limits::default();
        let limit = |name: &str, a: Option<usize>, b: Option<usize>, d: usize, max: usize| {
            let v = a.or(b).unwrap_or(d);
            if v == 0 || v > max {
                bail!("{name} must be between 1 and {max}, got {v}");
            }
            Ok(v)
        };
        let details = DetailLimits {
            bytes: limit(
                "max_details_bytes",
                o.limits.max_details_bytes,
                f.max_details_bytes,
                defaults.max_details_bytes,
                4 * 1024 * 1024,
            )?,
            depth: limit(
                "max_details_depth",
                o.limits.max_details_depth,
                f.max_details_depth,
                defaults.max_details_depth,
                64,
            )?,
            keys: limit(
                "max_details_keys",
                o.limits.max_details_keys,
                f.max_details_keys,
                defaults.max_details_keys,
                100_000,
            )?,
            key_len: limit(
                "max_details_key_len",
                o.limits.max_details_key_len,
                f.max_details_key_len,
                defaults.max_details_key_len,
                4096,
            )?,
            value_len: limit(
                "max_details_value_len",
                o.limits.max_details_value_len,
                f.max_details_value_len,
                defaults.max_details_value_len,
                4 * 1024 * 1024,
            )?,
        };
        Ok(Self {
            details,
            admin_token: o.service.admin_token.clone().or(f.admin_token),
            signing_key_file: o
                .store
                .signing_key_file
                .clone()
                .or(f.signing_key_file)
                .unwrap_or_else(|| data_dir.join("signing.key")),
            secret_key_file: o
                .store
                .secret_key_file
                .clone()
                .or(f.secret_key_file)
                .unwrap_or_else(|| data_dir.join("secret.key")),
            aws_principal_arn: o.service.aws_principal_arn.clone().or(f.aws_principal_arn),
            outbound_allow: {
                let ranges = o
                    .service
                    .outbound_allow
                    .clone()
                    .or(f.outbound_allow)
                    .unwrap_or_default();
                let ranges: Vec<&str> = ranges
                    .iter()
                    .map(|r| r.trim())
                    .filter(|r| !r.is_empty())
                    .collect();
                auditrail_core::outbound::AddressPolicy::parse(&ranges)
                    .map_err(|e| anyhow::anyhow!("outbound_allow: {e}"))?
            },
            ui_frame_ancestors: o
                .service
                .ui_frame_ancestors
                .clone()
                .or(f.ui_frame_ancestors)
                .unwrap_or_else(|| "'self'".to_owned()),
            exports_dir: o
                .service
                .exports_dir
                .clone()
                .or(f.exports_dir)
                .unwrap_or_else(|| data_dir.join("exports")),
            database_pool_size: limit(
                "database_pool_size",
                o.store.database_pool_size,
                f.database_pool_size,
                16,
                1000,
            )?,
            lease_ttl,
            seal_keep_open: limit(
                "seal_keep_open",
                o.service.seal_keep_open,
                f.seal_keep_open,
                4_096,
                1 << 40,
            )? as u64,
            tail_max_streams: limit(
                "tail_max_streams",
                o.service.tail_max_streams,
                f.tail_max_streams,
                256,
                100_000,
            )?,
            data_dir,
            database_url: o.store.database_url.clone().or(f.database_url),
            listen,
            public_url: public_url.trim_end_matches('/').to_owned(),
            smtp_url: o.service.smtp_url.clone().or(f.smtp_url),
            smtp_from: pick(&o.service.smtp_from, f.smtp_from, "auditrail@localhost"),
            export_ttl: duration(
                "export_ttl",
                &pick(&o.service.export_ttl, f.export_ttl, "30d"),
            )?,
            export_max_range: duration(
                "export_max_range",
                &pick(&o.service.export_max_range, f.export_max_range, "366d"),
            )?,
            export_workers: limit(
                "export_workers",
                o.service.export_workers,
                f.export_workers,
                2,
                64,
            )?,
            checkpoint_interval,
            max_clock_skew: duration(
                "max_clock_skew",
                &pick(&o.limits.max_clock_skew, f.max_clock_skew, "5m"),
            )?,
            log_origin,
            source,
        })
    }

    /// The effective configuration as TOML, secrets masked.
    pub fn render_masked(&self) -> String {
        let mask = |s: &Option<String>| s.as_ref().map(|_| "\"********\"".to_owned());
        let url_mask =
            |s: &Option<String>| s.as_ref().map(|u| format!("\"{}\"", mask_url_password(u)));
        let lines = [
            (
                "config_file",
                self.source.as_ref().map(|p| format!("\"{}\"", p.display())),
            ),
            ("admin_token", mask(&self.admin_token)),
            ("data_dir", Some(format!("\"{}\"", self.data_dir.display()))),
            ("database_url", url_mask(&self.database_url)),
            (
                "database_pool_size",
                Some(self.database_pool_size.to_string()),
            ),
            (
                "lease_ttl",
                Some(format!(
                    "\"{}\"",
                    humantime::format_duration(self.lease_ttl)
                )),
            ),
            ("seal_keep_open", Some(self.seal_keep_open.to_string())),
            ("tail_max_streams", Some(self.tail_max_streams.to_string())),
            (
                "exports_dir",
                Some(format!("\"{}\"", self.exports_dir.display())),
            ),
            ("listen", Some(format!("\"{}\"", self.listen))),
            ("public_url", Some(format!("\"{}\"", self.public_url))),
            ("smtp_url", url_mask(&self.smtp_url)),
            ("smtp_from", Some(format!("\"{}\"", self.smtp_from))),
            (
                "export_ttl",
                Some(format!(
                    "\"{}\"",
                    humantime::format_duration(self.export_ttl)
                )),
            ),
            (
                "export_max_range",
                Some(format!(
                    "\"{}\"",
                    humantime::format_duration(self.export_max_range)
                )),
            ),
            ("export_workers", Some(self.export_workers.to_string())),
            (
                "checkpoint_interval",
                Some(format!(
                    "\"{}\"",
                    humantime::format_duration(self.checkpoint_interval)
                )),
            ),
            (
                "signing_key_file",
                Some(format!("\"{}\"", self.signing_key_file.display())),
            ),
            (
                "secret_key_file",
                Some(format!("\"{}\"", self.secret_key_file.display())),
            ),
            (
                "aws_principal_arn",
                self.aws_principal_arn.as_ref().map(|a| format!("\"{a}\"")),
            ),
            (
                "outbound_allow",
                Some(format!(
                    "[{}]",
                    self.outbound_allow
                        .allowed_ranges()
                        .iter()
                        .map(|c| format!("\"{c}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            ),
            (
                "ui_frame_ancestors",
                Some(format!("\"{}\"", self.ui_frame_ancestors)),
            ),
            (
                "max_clock_skew",
                Some(format!(
                    "\"{}\"",
                    humantime::format_duration(self.max_clock_skew)
                )),
            ),
            ("log_origin", Some(format!("\"{}\"", self.log_origin))),
            ("max_details_bytes", Some(self.details.bytes.to_string())),
            ("max_details_depth", Some(self.details.depth.to_string())),
            ("max_details_keys", Some(self.details.keys.to_string())),
            (
                "max_details_key_len",
                Some(self.details.key_len.to_string()),
            ),
            (
                "max_details_value_len",
                Some(self.details.value_len.to_string()),
            ),
        ];
        lines
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k} = {v}\n"),
                None => format!("# {k} is not set\n"),
            })
            .collect()
    }
}

/// `scheme://user:secret@host` → `scheme://user:********@host`.
pub fn mask_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:********@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses() {
        let f: FileConfig = toml::from_str(EXAMPLE).unwrap();
        assert_eq!(f.listen.as_deref(), Some("127.0.0.1:8080"));
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<FileConfig>("lisen = \"x\"").is_err());
    }

    #[test]
    fn precedence_file_then_env_or_flag() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.toml");
        std::fs::write(
            &file,
            "data_dir = \"/from-file\"\ncheckpoint_interval = \"2s\"\nlisten = \"127.0.0.1:1\"\n",
        )
        .unwrap();
        let o = Overrides {
            store: StoreFlags {
                config: Some(file.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        let c = Config::resolve(&o, None).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/from-file"));
        assert_eq!(c.checkpoint_interval, Duration::from_secs(2));
        assert_eq!(c.listen, "127.0.0.1:1");
        let o = Overrides {
            store: StoreFlags {
                config: Some(file),
                data_dir: Some("/flag".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let c = Config::resolve(&o, Some("0.0.0.0:9".into())).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/flag"));
        assert_eq!(c.listen, "0.0.0.0:9");
        assert_eq!(c.signing_key_file, PathBuf::from("/flag/signing.key"));
    }

    #[test]
    fn detail_limits_layer_and_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.toml");
        std::fs::write(&file, "max_details_keys = 10\nmax_details_value_len = 99\n").unwrap();
        let o = Overrides {
            store: StoreFlags {
                config: Some(file.clone()),
                ..Default::default()
            },
            limits: LimitFlags {
                max_details_keys: Some(20),
                ..Default::default()
            },
            ..Default::default()
        };
        let c = Config::resolve(&o, None).unwrap();
        assert_eq!((c.details.keys, c.details.value_len), (20, 99));
        assert_eq!(c.details.key_len, 128);
        assert!(c.render_masked().contains("max_details_keys = 20"));
        let o = Overrides {
            limits: LimitFlags {
                max_details_depth: Some(0),
                ..Default::default()
            },
            ..Default::default()
        };
        let e = Config::resolve(&o, None).err().unwrap().to_string();
        assert!(e.contains("max_details_depth"), "{e}");
    }

    #[test]
    fn secrets_are_masked() {
        let o = Overrides {
            store: StoreFlags {
                database_url: Some("postgres://u:pw@h/db".into()),
                ..Default::default()
            },
            service: ServiceFlags {
                admin_token: Some("s3cret-token".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let out = Config::resolve(&o, None).unwrap().render_masked();
        assert!(
            !out.contains("s3cret-token") && !out.contains(":pw@"),
            "{out}"
        );
        assert!(out.contains("postgres://u:********@h/db"));
    }

    #[test]
    fn outbound_allow_is_parsed_checked_and_printed() {
        let none = Config::resolve(&Overrides::default(), None).unwrap();
        assert!(none.outbound_allow.allowed_ranges().is_empty());
        assert!(none.render_masked().contains("outbound_allow = []"));
        let o = Overrides {
            service: ServiceFlags {
                outbound_allow: Some(vec!["10.20.0.0/16".into(), " fd00::/8 ".into(), "".into()]),
                ..Default::default()
            },
            ..Default::default()
        };
        let c = Config::resolve(&o, None).unwrap();
        assert_eq!(c.outbound_allow.allowed_ranges().len(), 2);
        assert!(
            c.render_masked()
                .contains("outbound_allow = [\"10.20.0.0/16\", \"fd00::/8\"]")
        );
        let bad = Overrides {
            service: ServiceFlags {
                outbound_allow: Some(vec!["10.0.0.0/33".into()]),
                ..Default::default()
            },
            ..Default::default()
        };
        let e = Config::resolve(&bad, None).err().unwrap().to_string();
        assert!(
            e.contains("outbound_allow") && e.contains("10.0.0.0/33"),
            "{e}"
        );
    }
}
