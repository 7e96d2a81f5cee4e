//! Object stores beyond S3: `gcs` (Google Cloud Storage) and `azure_blob` (Azure Blob
//! Storage). Everything an `s3` destination has (keys, checkpoints, tiles, formats) with
//! the store's own credentials, which are the customer's, sealed like S3 keys: a GCS
//! service account key, an Azure storage account key or SAS token. Never the server's
//! own cloud identity: with no key given, the request is refused, so no org can make
//! auditrail use the operator's instance or workload identity.

use auditrail_core::delivery::ObjectFormat;
use serde::{Deserialize, Serialize};

use base64::Engine;

use super::config::{
    CredentialsChoice, CredentialsRequest, CredentialsSource, DestinationConfig, DestinationKind,
    DestinationRequest, batching, check_endpoint, normalize_prefix, parse_format,
};
use super::push_config::text;
use crate::error::ApiError;

/// What is shown of a cloud store's identity (never a secret).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CloudConfig {
    /// Azure: the storage account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// GCS: the service account's `client_email`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_email: Option<String>,
    /// GCS: where the key's tokens are fetched (`token_uri`), checked against the
    /// outbound policy like `endpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_uri: Option<String>,
    /// Azure: which secret was given, `access_key` or `sas_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_kind: Option<String>,
}

/// The sealed credentials of a cloud store.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "store", rename_all = "snake_case")]
pub enum CloudKeys {
    Gcs { service_account_key: String },
    AzureAccessKey { access_key: String },
    AzureSas { sas_token: String },
}

impl std::fmt::Debug for CloudKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CloudKeys(****)")
    }
}

fn bad(field: &str, reason: &str) -> ApiError {
    ApiError::invalid_field(field, reason)
}

/// GCS bucket names: 3–63 of lowercase letters, digits, `-`, `_` and `.`, starting and
/// ending with a letter or digit.
fn check_gcs_bucket(b: &str) -> Result<(), &'static str> {
    let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let bytes = b.as_bytes();
    if !(3..=63).contains(&b.len())
        || !bytes
            .iter()
            .all(|&c| edge(c) || matches!(c, b'-' | b'_' | b'.'))
        || !edge(bytes[0])
        || !edge(bytes[b.len() - 1])
    {
        return Err(
            "3-63 of lowercase letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
        );
    }
    Ok(())
}

/// Azure container names: 3–63 of lowercase letters, digits and single `-`, starting
/// and ending with a letter or digit.
fn check_container(c: &str) -> Result<(), &'static str> {
    let edge = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = c.as_bytes();
    if !(3..=63).contains(&c.len())
        || !bytes.iter().all(|&b| edge(b) || b == b'-')
        || !edge(bytes[0])
        || !edge(bytes[c.len() - 1])
        || c.contains("--")
    {
        return Err(
            "3-63 of lowercase letters, digits and single '-', starting and ending with a letter or digit",
        );
    }
    Ok(())
}

/// Azure storage account names: 3–24 lowercase letters and digits.
fn check_account(a: &str) -> Result<(), &'static str> {
    if (3..=24).contains(&a.len())
        && a.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        Ok(())
    } else {
        Err("the storage account's name: 3-24 lowercase letters and digits")
    }
}

/// An Azure account URL other than `https://{account}.blob.core.windows.net`: another
/// cloud's, or an emulator's with the account as its path
/// (`http://127.0.0.1:10000/devstoreaccount1`). No query, fragment or credentials.
fn check_account_url(e: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(e).map_err(|err| err.to_string())?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("must be an http or https URL".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must be the account's URL, without query".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials in the URL".into());
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// A service account key as Google issues it: `client_email` and `private_key`, or an
/// emulator's key with `disable_oauth`. The store's URL is `endpoint`, never the key's.
fn gcs_key(v: &serde_json::Value) -> Result<(String, Option<String>, Option<String>), ApiError> {
    let field = "credentials.service_account_key";
    let text = match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(_) => v.to_string(),
        _ => {
            return Err(bad(
                field,
                "the service account's JSON key, as an object or a string",
            ));
        }
    };
    if text.len() > 16 * 1024 {
        return Err(bad(field, "at most 16 KB"));
    }
    let key: serde_json::Value = serde_json::from_str(&text).map_err(|_| {
        bad(
            field,
            "the service account's JSON key, as an object or a string",
        )
    })?;
    let s = |k: &str| key.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    if key.get("gcs_base_url").is_some() {
        return Err(bad(
            field,
            "give the store's URL as `endpoint`, not in the key (gcs_base_url)",
        ));
    }
    let no_oauth = key.get("disable_oauth").and_then(|x| x.as_bool()) == Some(true);
    let email = s("client_email");
    if !no_oauth && (email.is_none() || s("private_key").is_none()) {
        return Err(bad(
            field,
            "a service account key with client_email and private_key",
        ));
    }
    if !no_oauth && !s("private_key").is_some_and(|k| k.contains("-----BEGIN PRIVATE KEY-----")) {
        return Err(bad(field, "private_key is not a PEM private key"));
    }
    let token_uri = match s("token_uri") {
        Some(u) => {
            let parsed =
                reqwest::Url::parse(&u).map_err(|_| bad(field, "token_uri is not a URL"))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                return Err(bad(field, "token_uri must be an http or https URL"));
            }
            Some(parsed.to_string())
        }
        None => None,
    };
    Ok((text, email, token_uri))
}

/// The store's own key from `credentials`, and what is shown of it; AWS credentials and
/// the other store's key are refused by name.
fn keys_of(azure: bool, c: CredentialsRequest) -> Result<(CloudKeys, CloudConfig), ApiError> {
    let aws = [
        ("credentials.access_key_id", c.access_key_id.is_some()),
        (
            "credentials.secret_access_key",
            c.secret_access_key.is_some(),
        ),
        ("credentials.session_token", c.session_token.is_some()),
        ("credentials.role_arn", c.role_arn.is_some()),
        ("credentials.external_id", c.external_id.is_some()),
        ("credentials.source", c.source.is_some()),
    ];
    if let Some((field, _)) = aws.iter().find(|(_, g)| *g) {
        return Err(bad(
            field,
            "AWS credentials apply to s3; this store takes its own key",
        ));
    }
    let shown = CloudConfig {
        account: None,
        client_email: None,
        token_uri: None,
        secret_kind: None,
    };
    if !azure {
        if c.access_key.is_some() || c.sas_token.is_some() {
            return Err(bad("credentials.access_key", "applies to azure_blob"));
        }
        let v = c.service_account_key.ok_or_else(|| {
            bad(
                "credentials.service_account_key",
                "required: the service account's JSON key",
            )
        })?;
        let (text, client_email, token_uri) = gcs_key(&v)?;
        let keys = CloudKeys::Gcs {
            service_account_key: text,
        };
        return Ok((
            keys,
            CloudConfig {
                client_email,
                token_uri,
                ..shown
            },
        ));
    }
    if c.service_account_key.is_some() {
        return Err(bad("credentials.service_account_key", "applies to gcs"));
    }
    let (keys, secret_kind) = match (c.access_key, c.sas_token) {
        (Some(k), None) => {
            text("credentials.access_key", &k, 256)?;
            if base64::engine::general_purpose::STANDARD
                .decode(k.trim())
                .is_err()
            {
                return Err(bad(
                    "credentials.access_key",
                    "the storage account key, as Azure shows it (base64)",
                ));
            }
            (CloudKeys::AzureAccessKey { access_key: k }, "access_key")
        }
        (None, Some(t)) => {
            text("credentials.sas_token", &t, 2048)?;
            let sas_token = t.trim_start_matches('?').to_owned();
            (CloudKeys::AzureSas { sas_token }, "sas_token")
        }
        (Some(_), Some(_)) => {
            return Err(bad(
                "credentials.sas_token",
                "give access_key or sas_token, not both",
            ));
        }
        (None, None) => {
            return Err(bad(
                "credentials.access_key",
                "required: access_key or sas_token",
            ));
        }
    };
    Ok((
        keys,
        CloudConfig {
            secret_kind: Some(secret_kind.into()),
            ..shown
        },
    ))
}

/// Validates a `gcs` or `azure_blob` request.
pub(super) fn validate(
    kind: DestinationKind,
    req: DestinationRequest,
    previous: Option<&DestinationConfig>,
) -> Result<(DestinationConfig, CredentialsChoice), ApiError> {
    super::push_config::refuse_push_fields(&req)?;
    for (field, given) in [
        ("region", req.region.is_some()),
        ("sts_endpoint", req.sts_endpoint.is_some()),
        ("layout", req.layout.is_some()),
        ("source_name", req.source_name.is_some()),
        ("account_id", req.account_id.is_some()),
    ] {
        if given {
            return Err(bad(field, "applies to s3 destinations only"));
        }
    }
    let azure = kind == DestinationKind::AzureBlob;
    let what = if azure { "container" } else { "bucket" };
    let bucket = req
        .bucket
        .clone()
        .ok_or_else(|| bad("bucket", &format!("required: the {what}")))?;
    match azure {
        true => check_container(&bucket),
        false => check_gcs_bucket(&bucket),
    }
    .map_err(|r| bad("bucket", r))?;
    let account = match (azure, req.account.clone()) {
        (true, Some(a)) => {
            check_account(&a).map_err(|r| bad("account", r))?;
            Some(a)
        }
        (true, None) => return Err(bad("account", "required: the storage account")),
        (false, Some(_)) => return Err(bad("account", "applies to azure_blob only")),
        (false, None) => None,
    };
    let prefix = normalize_prefix(&req.prefix).map_err(|r| bad("prefix", r))?;
    let endpoint = req
        .endpoint
        .clone()
        .map(|e| match azure {
            false => check_endpoint(&e),
            true => check_account_url(&e),
        })
        .transpose()
        .map_err(|r| bad("endpoint", &r))?;
    let format = parse_format(req.format.as_deref())?.unwrap_or(ObjectFormat::NdjsonGz);
    let (max_batch_events, max_batch_seconds, start) = batching(
        req.max_batch_events,
        req.max_batch_seconds,
        req.start.as_deref(),
        previous,
    )?;
    let same_store = previous
        .is_some_and(|p| p.kind == kind && p.cloud.as_ref().map(|c| &c.account) == Some(&account));
    let (keys, mut cloud) = match req.credentials {
        None if same_store => (None, previous.and_then(|p| p.cloud.clone())),
        None => {
            let want = if azure {
                "{\"access_key\"} or {\"sas_token\"}"
            } else {
                "{\"service_account_key\"}"
            };
            return Err(bad("credentials", &format!("required: {want}")));
        }
        Some(c) => {
            let (keys, cloud) = keys_of(azure, c)?;
            (Some(keys), Some(cloud))
        }
    };
    if let Some(c) = cloud.as_mut() {
        c.account = account;
    }
    let creds = match keys {
        Some(k) => CredentialsChoice::Cloud(k),
        None => CredentialsChoice::Unchanged,
    };
    Ok((
        DestinationConfig {
            kind,
            bucket,
            prefix,
            region: String::new(),
            endpoint,
            format,
            max_batch_events,
            max_batch_seconds,
            start,
            credentials_source: CredentialsSource::Static,
            role_arn: None,
            sts_endpoint: None,
            access_key_id: None,
            tiles: req.tiles.unwrap_or(true),
            push: None,
            alert_after_s: super::config::alert_after(req.alert_after.as_ref(), previous)?,
            security_lake: None,
            cloud,
        },
        creds,
    ))
}
