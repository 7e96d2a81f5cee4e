//! A destination's configuration: the request body, its validation (naming the field
//! at fault), what is stored (no secrets), and the credentials that are sealed apart.

use auditrail_core::delivery::ObjectFormat;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

pub const DEFAULT_BATCH_EVENTS: u64 = 10_000;
pub const MAX_BATCH_EVENTS: u64 = 100_000;
pub const DEFAULT_BATCH_SECONDS: u64 = 10;
pub const MAX_BATCH_SECONDS: u64 = 3_600;

/// `PUT /v1/destinations/{name}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationRequest {
    pub kind: String,
    /// The bucket (`s3`, `gcs`) or container (`azure_blob`).
    #[serde(alias = "container")]
    pub bucket: Option<String>,
    /// `azure_blob`: the storage account.
    pub account: Option<String>,
    #[serde(default)]
    pub prefix: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    /// The STS endpoint `assume_role` calls (tests and stores other than AWS).
    pub sts_endpoint: Option<String>,
    pub credentials: Option<CredentialsRequest>,
    pub format: Option<String>,
    pub max_batch_events: Option<u64>,
    pub max_batch_seconds: Option<u64>,
    pub start: Option<String>,
    /// Write the org's log as tlog-tiles under `_tlog/` beside the objects (default true).
    pub tiles: Option<bool>,
    /// How long delivery may fail before the org's admins are told: seconds, or a
    /// duration such as "15m" (default 15 minutes).
    pub alert_after: Option<serde_json::Value>,
    /// Push streams: where batches are POSTed (see `push_config.rs`).
    pub url: Option<String>,
    /// `https`: the secret batches are signed with.
    pub secret: Option<String>,
    /// `splunk_hec`: the HEC token.
    pub token: Option<String>,
    /// `datadog`: the API key.
    pub api_key: Option<String>,
    /// `splunk_hec`: the index, source and sourcetype of each event.
    pub index: Option<String>,
    pub source: Option<String>,
    pub sourcetype: Option<String>,
    /// `datadog`: the site (`datadoghq.com`, `datadoghq.eu`, …), service and tags.
    pub site: Option<String>,
    pub service: Option<String>,
    pub tags: Option<Vec<String>>,
    /// `s3`: `"standard"` (the default) or `"security_lake"` (Amazon Security Lake's
    /// custom-source layout, OCSF Parquet), which takes `source_name` and `account_id`.
    pub layout: Option<String>,
    pub source_name: Option<String>,
    pub account_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsRequest {
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub source: Option<String>,
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
    /// `gcs`: the service account's JSON key (an object, or its text).
    pub service_account_key: Option<serde_json::Value>,
    /// `azure_blob`: the storage account key, or a SAS token.
    pub access_key: Option<String>,
    pub sas_token: Option<String>,
}

/// Static keys, sealed at rest.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StaticKeys {
    pub access_key_id: String,
    pub secret_access_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<String>,
}

impl std::fmt::Debug for StaticKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StaticKeys({}, ****)", mask_key_id(&self.access_key_id))
    }
}

/// Where a destination's AWS identity comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialsSource {
    /// Keys the customer gave: the customer's own identity.
    Static,
    /// A role in the customer's account, assumed with the org's external id.
    AssumeRole,
    /// The server's own identity (the operator's), attached by the platform admin only.
    Environment,
    /// A push stream's secret (signing secret, HEC token or API key), sealed at rest.
    Secret,
}

impl CredentialsSource {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialsSource::Static => "static",
            CredentialsSource::AssumeRole => "assume_role",
            CredentialsSource::Environment => "environment",
            CredentialsSource::Secret => "secret",
        }
    }
}

/// What the request says about credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialsChoice {
    Static(StaticKeys),
    AssumeRole {
        role_arn: String,
    },
    Environment,
    /// A push stream's secret.
    Secret(String),
    /// A GCS or Azure key.
    Cloud(super::cloud_config::CloudKeys),
    /// Not given: keep what is stored (an update), required on create.
    Unchanged,
}

/// The kinds of destination this build delivers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DestinationKind {
    S3,
    /// Google Cloud Storage.
    Gcs,
    /// Azure Blob Storage.
    AzureBlob,
    /// NDJSON batches POSTed to the customer's endpoint, signed.
    Https,
    /// Splunk's HTTP Event Collector.
    SplunkHec,
    /// Datadog's logs intake (v2).
    Datadog,
}

impl DestinationKind {
    pub const NAMES: &'static str =
        "\"s3\", \"gcs\", \"azure_blob\", \"https\", \"splunk_hec\" or \"datadog\"";

    fn parse(s: &str) -> Option<Self> {
        match s {
            "s3" => Some(Self::S3),
            "gcs" => Some(Self::Gcs),
            "azure_blob" => Some(Self::AzureBlob),
            "https" => Some(Self::Https),
            "splunk_hec" => Some(Self::SplunkHec),
            "datadog" => Some(Self::Datadog),
            _ => None,
        }
    }

    /// Push streams deliver at least once to a receiver, not objects to a bucket.
    pub fn is_push(self) -> bool {
        matches!(self, Self::Https | Self::SplunkHec | Self::Datadog)
    }

    /// `gcs` and `azure_blob`: object stores with keys of their own.
    pub fn is_cloud(self) -> bool {
        matches!(self, Self::Gcs | Self::AzureBlob)
    }
}

/// Where a new destination's delivery begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Start {
    /// With the org's first event.
    Earliest,
    /// With the first event after the destination is created.
    Now,
}

impl Start {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "earliest" => Some(Start::Earliest),
            "now" => Some(Start::Now),
            _ => None,
        }
    }
}

/// A destination's configuration as stored and shown (never a secret). Every field is
/// typed, so an unknown value is refused where it is read, never taken for a default.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DestinationConfig {
    pub kind: DestinationKind,
    #[serde(default)]
    pub bucket: String,
    pub prefix: String,
    pub region: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    pub format: ObjectFormat,
    pub max_batch_events: u64,
    pub max_batch_seconds: u64,
    pub start: Start,
    pub credentials_source: CredentialsSource,
    /// The role `assume_role` assumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// Where `assume_role` calls STS, when not AWS's regional endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sts_endpoint: Option<String>,
    /// The access key id, masked, for static credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// Whether the org's log is written as tlog-tiles under `_tlog/` beside the objects.
    #[serde(default = "yes")]
    pub tiles: bool,
    /// A push stream's receiver and what it is told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<super::push_config::PushConfig>,
    /// Seconds of failing before the org's admins are told (`delivery/health.rs`).
    #[serde(default = "default_alert_after")]
    pub alert_after_s: u64,
    /// The Security Lake custom source objects are written for, with that layout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_lake: Option<SecurityLake>,
    /// `gcs` and `azure_blob`: the account and identity shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<super::cloud_config::CloudConfig>,
}

/// An Amazon Security Lake custom source: objects go to
/// `ext/{source_name}/region={region}/accountId={account_id}/eventDay=…/` as OCSF
/// Parquet; checkpoints and tiles to `ext/{source_name}/_auditrail/`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SecurityLake {
    pub source_name: String,
    pub account_id: String,
}

/// `layout`, `source_name` and `account_id` of an s3 request: the Security Lake source,
/// if that is the layout, after checking the format and prefix agree with it.
fn security_lake(
    req: &DestinationRequest,
    format: Option<ObjectFormat>,
) -> Result<Option<SecurityLake>, ApiError> {
    let bad = |field: &str, reason: &str| ApiError::invalid_field(field, reason);
    match req.layout.as_deref() {
        None | Some("standard") => {
            for (field, given) in [
                ("source_name", req.source_name.is_some()),
                ("account_id", req.account_id.is_some()),
            ] {
                if given {
                    return Err(bad(field, "applies with layout \"security_lake\" only"));
                }
            }
            return Ok(None);
        }
        Some("security_lake") => {}
        Some(_) => return Err(bad("layout", "must be \"standard\" or \"security_lake\"")),
    }
    if !matches!(format, None | Some(ObjectFormat::OcsfParquet)) {
        return Err(bad(
            "format",
            "layout \"security_lake\" writes ocsf_parquet (omit format)",
        ));
    }
    if !req.prefix.is_empty() {
        return Err(bad(
            "prefix",
            "layout \"security_lake\" writes under ext/{source_name}/ (omit prefix)",
        ));
    }
    let source_name = req
        .source_name
        .clone()
        .ok_or_else(|| bad("source_name", "required with layout \"security_lake\""))?;
    let ok = (1..=64).contains(&source_name.len())
        && source_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        return Err(bad(
            "source_name",
            "the custom source's name: 1-64 of A-Z a-z 0-9 - _",
        ));
    }
    let account_id = req
        .account_id
        .clone()
        .ok_or_else(|| bad("account_id", "required with layout \"security_lake\""))?;
    if account_id.len() != 12 || !account_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("account_id", "a 12-digit AWS account id"));
    }
    Ok(Some(SecurityLake {
        source_name,
        account_id,
    }))
}

fn yes() -> bool {
    true
}

pub const DEFAULT_ALERT_AFTER_S: u64 = 15 * 60;
const MAX_ALERT_AFTER_S: u64 = 30 * 24 * 3600;

fn default_alert_after() -> u64 {
    DEFAULT_ALERT_AFTER_S
}

/// `alert_after`: whole seconds, or a duration like "15m"; 1 s to 30 days. Omitted: the
/// stored value on an update, else 15 minutes.
pub(super) fn alert_after(
    v: Option<&serde_json::Value>,
    previous: Option<&DestinationConfig>,
) -> Result<u64, ApiError> {
    let reason = "seconds (1 to 2592000) or a duration such as \"15m\" or \"2h\"";
    let secs = match v {
        None => return Ok(previous.map_or(DEFAULT_ALERT_AFTER_S, |p| p.alert_after_s)),
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => humantime::parse_duration(s.trim())
            .ok()
            .filter(|d| d.subsec_nanos() == 0)
            .map(|d| d.as_secs()),
        Some(_) => None,
    };
    secs.filter(|s| (1..=MAX_ALERT_AFTER_S).contains(s))
        .ok_or_else(|| ApiError::invalid_field("alert_after", reason))
}

impl DestinationConfig {
    /// The STS endpoint `assume_role` calls.
    pub fn sts_url(&self) -> String {
        match &self.sts_endpoint {
            Some(e) => e.clone(),
            None => format!("https://sts.{}.amazonaws.com", self.region),
        }
    }
}

/// `AKIA…WXYZ`: enough to recognise a key, not to use it.
pub fn mask_key_id(id: &str) -> String {
    let n = id.chars().count();
    if n <= 8 {
        return "****".into();
    }
    let head: String = id.chars().take(4).collect();
    let tail: String = id.chars().skip(n - 4).collect();
    format!("{head}…{tail}")
}

/// Destination names: 1–64 of `A-Z a-z 0-9 . _ -`.
pub fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            "name",
            "1-64 characters from A-Z a-z 0-9 . _ -",
        ))
    }
}

/// S3 bucket naming rules: 3–63 of lowercase letters, digits, `.` and `-`, starting and
/// ending with a letter or digit.
fn check_bucket(b: &str) -> Result<(), &'static str> {
    let bytes = b.as_bytes();
    let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !(3..=63).contains(&b.len()) {
        return Err("must be 3-63 characters");
    }
    if !bytes.iter().all(|&c| edge(c) || c == b'.' || c == b'-') {
        return Err("only lowercase letters, digits, '.' and '-'");
    }
    if !edge(bytes[0]) || !edge(bytes[bytes.len() - 1]) || b.contains("..") {
        return Err("must start and end with a letter or digit, without '..'");
    }
    Ok(())
}

/// Key prefixes: no leading `/`, no empty, `.` or `..` segments, printable, ≤ 512 bytes;
/// a trailing `/` is dropped.
pub(super) fn normalize_prefix(p: &str) -> Result<String, &'static str> {
    let p = p.trim_end_matches('/');
    if p.is_empty() {
        return Ok(String::new());
    }
    if p.len() > 512 {
        return Err("at most 512 bytes");
    }
    if p.chars().any(|c| {
        c.is_control()
            || matches!(
                c,
                '\\' | '{'
                    | '}'
                    | '^'
                    | '%'
                    | '`'
                    | '['
                    | ']'
                    | '"'
                    | '<'
                    | '>'
                    | '~'
                    | '#'
                    | '|'
                    | '*'
                    | '?'
            )
    }) {
        return Err("use letters, digits and / - _ . = ! ' ( ) only");
    }
    if p.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err("no leading '/', empty, '.' or '..' segments");
    }
    if p.split('/').any(|s| s.starts_with("org=")) {
        return Err("must not contain an org= segment (auditrail adds it)");
    }
    Ok(p.to_owned())
}

fn check_region(r: &str) -> Result<(), &'static str> {
    let ok = !r.is_empty()
        && r.len() <= 64
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err("an AWS region name such as us-east-1")
    }
}

pub(super) fn check_endpoint(e: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(e).map_err(|err| err.to_string())?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("must be an http or https URL".into());
    }
    if url.query().is_some() || url.fragment().is_some() || url.path() != "/" {
        return Err("must be the store's base URL, without path or query".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials in the URL".into());
    }
    // Stored as the parser spells it, so the address checked is the address connected to.
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// `arn:<partition>:iam::<account>:role/<path/name>`, the characters IAM allows.
fn check_role_arn(arn: &str) -> Result<(), &'static str> {
    let ok = arn.len() <= 2048
        && arn.starts_with("arn:")
        && arn.contains(":role/")
        && arn
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@:/_-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err("a role ARN such as arn:aws:iam::123456789012:role/auditrail-delivery")
    }
}

fn credentials(c: Option<CredentialsRequest>) -> Result<CredentialsChoice, ApiError> {
    let Some(c) = c else {
        return Ok(CredentialsChoice::Unchanged);
    };
    let bad = |field: &str, reason: &str| ApiError::invalid_field(field, reason);
    if c.external_id.is_some() {
        return Err(bad(
            "credentials.external_id",
            "auditrail generates the org's external id; it cannot be chosen (see GET /v1/destinations/{name} for it)",
        ));
    }
    for (field, given) in [
        (
            "credentials.service_account_key",
            c.service_account_key.is_some(),
        ),
        ("credentials.access_key", c.access_key.is_some()),
        ("credentials.sas_token", c.sas_token.is_some()),
    ] {
        if given {
            return Err(bad(field, "applies to gcs or azure_blob, not to s3"));
        }
    }
    let has_keys =
        c.access_key_id.is_some() || c.secret_access_key.is_some() || c.session_token.is_some();
    match c.source.as_deref() {
        Some("environment") => {
            if has_keys || c.role_arn.is_some() {
                return Err(bad(
                    "credentials.source",
                    "\"environment\" takes no keys or role",
                ));
            }
            Ok(CredentialsChoice::Environment)
        }
        Some("assume_role") => {
            if has_keys {
                return Err(bad(
                    "credentials.access_key_id",
                    "\"assume_role\" takes a role_arn, not keys",
                ));
            }
            let role_arn = c
                .role_arn
                .filter(|s| !s.is_empty())
                .ok_or_else(|| bad("credentials.role_arn", "required with \"assume_role\""))?;
            check_role_arn(&role_arn).map_err(|r| bad("credentials.role_arn", r))?;
            Ok(CredentialsChoice::AssumeRole { role_arn })
        }
        Some("static") | None => {
            if c.role_arn.is_some() {
                return Err(bad(
                    "credentials.role_arn",
                    "a role is assumed with {\"source\": \"assume_role\", \"role_arn\": ...}",
                ));
            }
            let id = c
                .access_key_id
                .filter(|s| !s.is_empty())
                .ok_or_else(|| bad("credentials.access_key_id", "required with static keys"))?;
            let secret = c
                .secret_access_key
                .filter(|s| !s.is_empty())
                .ok_or_else(|| bad("credentials.secret_access_key", "required with static keys"))?;
            if id.len() > 128 || secret.len() > 256 {
                return Err(bad("credentials", "keys are too long"));
            }
            Ok(CredentialsChoice::Static(StaticKeys {
                access_key_id: id,
                secret_access_key: secret,
                session_token: c.session_token,
            }))
        }
        Some(_) => Err(bad(
            "credentials.source",
            "must be \"assume_role\", \"static\" or \"environment\"",
        )),
    }
}

/// Validates a request. `previous` is the stored configuration when this is an update:
/// `start` only matters at creation, and omitted credentials keep the stored ones.
pub fn validate(
    req: DestinationRequest,
    previous: Option<&DestinationConfig>,
) -> Result<(DestinationConfig, CredentialsChoice), ApiError> {
    let bad = |field: &str, reason: &str| ApiError::invalid_field(field, reason);
    let kind = DestinationKind::parse(&req.kind)
        .ok_or_else(|| bad("kind", &format!("must be {}", DestinationKind::NAMES)))?;
    if kind.is_push() {
        return super::push_config::validate(kind, req, previous);
    }
    if kind.is_cloud() {
        return super::cloud_config::validate(kind, req, previous);
    }
    if req.account.is_some() {
        return Err(bad("account", "applies to azure_blob only"));
    }
    super::push_config::refuse_push_fields(&req)?;
    let asked = parse_format(req.format.as_deref())?;
    let lake = security_lake(&req, asked)?;
    let bucket = req
        .bucket
        .ok_or_else(|| bad("bucket", "required for an s3 destination"))?;
    check_bucket(&bucket).map_err(|r| bad("bucket", r))?;
    let prefix = normalize_prefix(&req.prefix).map_err(|r| bad("prefix", r))?;
    let (format, prefix) = match &lake {
        Some(l) => (
            ObjectFormat::OcsfParquet,
            auditrail_core::delivery::security_lake_prefix(&l.source_name),
        ),
        None => (asked.unwrap_or(ObjectFormat::NdjsonGz), prefix),
    };
    let region = req.region.unwrap_or_else(|| "us-east-1".into());
    check_region(&region).map_err(|r| bad("region", r))?;
    let url = |field: &str, e: Option<String>| {
        e.map(|e| check_endpoint(&e))
            .transpose()
            .map_err(|r| bad(field, &r))
    };
    let endpoint = url("endpoint", req.endpoint)?;
    let sts_endpoint = url("sts_endpoint", req.sts_endpoint)?;

    let (max_batch_events, max_batch_seconds, start) = batching(
        req.max_batch_events,
        req.max_batch_seconds,
        req.start.as_deref(),
        previous,
    )?;
    let creds = credentials(req.credentials)?;
    let (credentials_source, access_key_id, role_arn) = match (&creds, previous) {
        (CredentialsChoice::Static(k), _) => (
            CredentialsSource::Static,
            Some(mask_key_id(&k.access_key_id)),
            None,
        ),
        (CredentialsChoice::AssumeRole { role_arn }, _) => {
            (CredentialsSource::AssumeRole, None, Some(role_arn.clone()))
        }
        (CredentialsChoice::Environment, _) => (CredentialsSource::Environment, None, None),
        // `credentials()` reads AWS credentials only.
        (CredentialsChoice::Secret(_) | CredentialsChoice::Cloud(_), _) => {
            return Err(bad("credentials", "AWS credentials expected"));
        }
        (CredentialsChoice::Unchanged, Some(p)) if p.kind != DestinationKind::S3 => {
            return Err(bad(
                "credentials",
                "required when another kind becomes an s3 destination",
            ));
        }
        (CredentialsChoice::Unchanged, Some(p)) => (
            p.credentials_source,
            p.access_key_id.clone(),
            p.role_arn.clone(),
        ),
        (CredentialsChoice::Unchanged, None) => {
            return Err(bad(
                "credentials",
                "required: {\"source\": \"assume_role\", \"role_arn\"}, {\"access_key_id\", \"secret_access_key\"} or {\"source\": \"environment\"}",
            ));
        }
    };
    if sts_endpoint.is_some() && credentials_source != CredentialsSource::AssumeRole {
        return Err(bad(
            "sts_endpoint",
            "applies only with credentials {\"source\": \"assume_role\"}",
        ));
    }
    Ok((
        DestinationConfig {
            kind,
            bucket,
            prefix,
            region,
            endpoint,
            format,
            max_batch_events,
            max_batch_seconds,
            start,
            credentials_source,
            role_arn,
            sts_endpoint,
            access_key_id,
            tiles: req.tiles.unwrap_or(true),
            push: None,
            alert_after_s: alert_after(req.alert_after.as_ref(), previous)?,
            security_lake: lake,
            cloud: None,
        },
        creds,
    ))
}

/// An object destination's `format`, if given: one of [`ObjectFormat::NAMES`].
pub(super) fn parse_format(f: Option<&str>) -> Result<Option<ObjectFormat>, ApiError> {
    f.map(|f| {
        ObjectFormat::parse(f).ok_or_else(|| {
            ApiError::invalid_field("format", format!("must be {}", ObjectFormat::NAMES))
        })
    })
    .transpose()
}

/// `max_batch_events`, `max_batch_seconds` and `start`, with their defaults; `start`
/// is kept from `previous` on an update, and may not change.
pub(super) fn batching(
    events: Option<u64>,
    seconds: Option<u64>,
    start: Option<&str>,
    previous: Option<&DestinationConfig>,
) -> Result<(u64, u64, Start), ApiError> {
    let bad = |field: &str, reason: &str| ApiError::invalid_field(field, reason);
    let max_batch_events = events.unwrap_or(DEFAULT_BATCH_EVENTS);
    if !(1..=MAX_BATCH_EVENTS).contains(&max_batch_events) {
        return Err(bad("max_batch_events", "must be 1 to 100000"));
    }
    let max_batch_seconds = seconds.unwrap_or(DEFAULT_BATCH_SECONDS);
    if !(1..=MAX_BATCH_SECONDS).contains(&max_batch_seconds) {
        return Err(bad("max_batch_seconds", "must be 1 to 3600"));
    }
    let asked = start
        .map(|s| Start::parse(s).ok_or_else(|| bad("start", "must be \"earliest\" or \"now\"")))
        .transpose()?;
    let start = match (asked, previous) {
        (None, Some(p)) => p.start,
        (None, None) => Start::Earliest,
        (Some(s), None) => s,
        (Some(s), Some(p)) if s == p.start => s,
        (Some(_), Some(_)) => {
            return Err(bad(
                "start",
                "applies only when a destination is created; delete and recreate it to start elsewhere",
            ));
        }
    };
    Ok((max_batch_events, max_batch_seconds, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: serde_json::Value) -> DestinationRequest {
        serde_json::from_value(v).unwrap()
    }

    fn field(v: serde_json::Value) -> String {
        let e = validate(req(v), None).unwrap_err();
        assert_eq!(e.status.as_u16(), 422);
        e.details[0]["field"].as_str().unwrap().to_owned()
    }

    #[test]
    fn defaults_and_masking() {
        let (c, creds) = validate(
            req(serde_json::json!({"kind": "s3", "bucket": "audit-logs", "prefix": "a/b/",
                "credentials": {"access_key_id": "AKIAEXAMPLE1234", "secret_access_key": "s3cr3t"}})),
            None,
        )
        .unwrap();
        assert_eq!(
            (c.prefix.as_str(), c.region.as_str(), c.format.name()),
            ("a/b", "us-east-1", "ndjson.gz")
        );
        assert_eq!(
            (c.max_batch_events, c.max_batch_seconds, c.start),
            (10_000, 10, Start::Earliest)
        );
        assert_eq!(c.access_key_id.as_deref(), Some("AKIA…1234"));
        assert_eq!(c.alert_after_s, 900);
        assert!(!serde_json::to_string(&c).unwrap().contains("s3cr3t"));
        assert!(matches!(creds, CredentialsChoice::Static(_)));
    }

    #[test]
    fn each_bad_field_is_named() {
        let base = |k: &str, v: serde_json::Value| {
            let mut b = serde_json::json!({"kind": "s3", "bucket": "audit-logs", "credentials": {"source": "environment"}});
            b[k] = v;
            b
        };
        assert_eq!(field(base("kind", "ftp".into())), "kind");
        assert_eq!(field(base("token", "t".into())), "token");
        assert_eq!(field(base("alert_after", "soon".into())), "alert_after");
        assert_eq!(field(base("alert_after", 0.into())), "alert_after");
        assert_eq!(field(base("alert_after", "1.5s".into())), "alert_after");
        assert_eq!(field(base("bucket", "Audit_Logs".into())), "bucket");
        assert_eq!(field(base("prefix", "/abs".into())), "prefix");
        assert_eq!(field(base("prefix", "a/../b".into())), "prefix");
        assert_eq!(field(base("region", "US East".into())), "region");
        assert_eq!(field(base("endpoint", "ftp://x".into())), "endpoint");
        assert_eq!(field(base("format", "xlsx".into())), "format");
        assert_eq!(
            field(base("max_batch_events", 0.into())),
            "max_batch_events"
        );
        assert_eq!(
            field(base("max_batch_seconds", 0.into())),
            "max_batch_seconds"
        );
        assert_eq!(field(base("start", "yesterday".into())), "start");
        assert_eq!(
            field(base(
                "credentials",
                serde_json::json!({"access_key_id": "A"})
            )),
            "credentials.secret_access_key"
        );
        assert_eq!(
            field(base(
                "credentials",
                serde_json::json!({"role_arn": "arn:aws:iam::1:role/x"})
            )),
            "credentials.role_arn"
        );
        assert_eq!(
            field(base(
                "credentials",
                serde_json::json!({"source": "assume_role"})
            )),
            "credentials.role_arn"
        );
        assert_eq!(
            field(base(
                "credentials",
                serde_json::json!({"source": "assume_role", "role_arn": "not an arn"})
            )),
            "credentials.role_arn"
        );
        assert_eq!(
            field(base(
                "credentials",
                serde_json::json!({"source": "assume_role", "role_arn": "arn:aws:iam::123456789012:role/x", "external_id": "mine"})
            )),
            "credentials.external_id"
        );
        assert_eq!(
            field(base(
                "credentials",
                serde_json::json!({"source": "assume_role", "role_arn": "arn:aws:iam::123456789012:role/x", "access_key_id": "A"})
            )),
            "credentials.access_key_id"
        );
        assert_eq!(
            field(base("sts_endpoint", "http://127.0.0.1:1".into())),
            "sts_endpoint"
        );
        assert_eq!(
            field(base("endpoint", "http://user:pw@s3.example.com".into())),
            "endpoint"
        );
        let mut none = base("kind", "s3".into());
        none.as_object_mut().unwrap().remove("credentials");
        assert_eq!(field(none), "credentials");
    }

    #[test]
    fn assume_role_is_stored_without_secrets_and_endpoints_as_parsed() {
        let (c, creds) = validate(
            req(serde_json::json!({"kind": "s3", "bucket": "audit-logs",
                "endpoint": "http://2130706433:9000/", "sts_endpoint": "http://0x7f.1:9001",
                "credentials": {"source": "assume_role", "role_arn": "arn:aws:iam::123456789012:role/auditrail"}})),
            None,
        )
        .unwrap();
        assert_eq!(c.credentials_source, CredentialsSource::AssumeRole);
        assert_eq!(
            c.role_arn.as_deref(),
            Some("arn:aws:iam::123456789012:role/auditrail")
        );
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(c.sts_url(), "http://127.0.0.1:9001");
        assert_eq!(
            creds,
            CredentialsChoice::AssumeRole {
                role_arn: "arn:aws:iam::123456789012:role/auditrail".into()
            }
        );
        let stored = serde_json::to_value(&c).unwrap();
        assert_eq!(stored["credentials_source"], "assume_role");
    }

    #[test]
    fn updates_keep_credentials_and_start() {
        let (first, _) = validate(
            req(serde_json::json!({"kind": "s3", "bucket": "b-1", "start": "now", "credentials": {"source": "environment"}})),
            None,
        )
        .unwrap();
        let (second, creds) = validate(
            req(serde_json::json!({"kind": "s3", "bucket": "b-2"})),
            Some(&first),
        )
        .unwrap();
        assert_eq!(
            (second.start, second.credentials_source),
            (Start::Now, CredentialsSource::Environment)
        );
        assert_eq!(creds, CredentialsChoice::Unchanged);
        let e = validate(
            req(serde_json::json!({"kind": "s3", "bucket": "b-2", "start": "earliest"})),
            Some(&first),
        )
        .unwrap_err();
        assert_eq!(e.details[0]["field"], "start");
    }
}
