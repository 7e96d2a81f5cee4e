//! The configuration of push streams (`https`, `splunk_hec`, `datadog`): their request
//! fields, validated naming the field at fault, and what is stored (the secret is sealed
//! apart, like S3 keys).

use auditrail_core::delivery::ObjectFormat;
use serde::{Deserialize, Serialize};

use super::config::{
    CredentialsChoice, CredentialsSource, DestinationConfig, DestinationKind, DestinationRequest,
    batching, check_endpoint,
};
use crate::error::ApiError;

/// The Datadog sites and their logs intake hosts.
pub const DATADOG_SITES: [&str; 7] = [
    "datadoghq.com",
    "us3.datadoghq.com",
    "us5.datadoghq.com",
    "datadoghq.eu",
    "ap1.datadoghq.com",
    "ap2.datadoghq.com",
    "ddog-gov.com",
];

/// A push stream's receiver and what each entry says besides the event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PushConfig {
    /// Where batches are POSTed: the whole URL, path included.
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sourcetype: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// The secret of a push stream, as sealed.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PushSecret {
    pub secret: String,
}

impl std::fmt::Debug for PushSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PushSecret(****)")
    }
}

fn bad(field: &str, reason: &str) -> ApiError {
    ApiError::invalid_field(field, reason)
}

/// An S3 destination takes none of the push streams' fields.
pub(super) fn refuse_push_fields(req: &DestinationRequest) -> Result<(), ApiError> {
    let given = [
        ("url", req.url.is_some()),
        ("secret", req.secret.is_some()),
        ("token", req.token.is_some()),
        ("api_key", req.api_key.is_some()),
        ("index", req.index.is_some()),
        ("source", req.source.is_some()),
        ("sourcetype", req.sourcetype.is_some()),
        ("site", req.site.is_some()),
        ("service", req.service.is_some()),
        ("tags", req.tags.is_some()),
    ];
    match given.iter().find(|(_, g)| *g) {
        Some((field, _)) => Err(bad(field, "applies to push streams, not to s3")),
        None => Ok(()),
    }
}

/// `1..=max` printable characters, no control characters.
pub(super) fn text(field: &str, v: &str, max: usize) -> Result<(), ApiError> {
    if v.is_empty() || v.len() > max || v.chars().any(char::is_control) {
        return Err(bad(
            field,
            &format!("1-{max} characters, no control characters"),
        ));
    }
    Ok(())
}

/// A receiver's whole URL: http or https, a host, no credentials or fragment.
fn check_url(u: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(u).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("must be an http or https URL".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials in the URL".into());
    }
    if url.fragment().is_some() {
        return Err("must not have a fragment".into());
    }
    Ok(url.to_string())
}

/// Validates a push stream's request. `previous` is the stored configuration on update:
/// an omitted secret keeps the stored one if the kind is unchanged.
pub(super) fn validate(
    kind: DestinationKind,
    req: DestinationRequest,
    previous: Option<&DestinationConfig>,
) -> Result<(DestinationConfig, CredentialsChoice), ApiError> {
    let s3_only = [
        ("bucket", req.bucket.is_some()),
        ("prefix", !req.prefix.is_empty()),
        ("region", req.region.is_some()),
        ("endpoint", req.endpoint.is_some()),
        ("sts_endpoint", req.sts_endpoint.is_some()),
        ("credentials", req.credentials.is_some()),
        ("tiles", req.tiles.is_some()),
        ("account", req.account.is_some()),
        ("layout", req.layout.is_some()),
        ("source_name", req.source_name.is_some()),
        ("account_id", req.account_id.is_some()),
    ];
    if let Some((field, _)) = s3_only.iter().find(|(_, g)| *g) {
        return Err(bad(
            field,
            "applies to object-store destinations (s3, gcs, azure_blob) only",
        ));
    }
    // Each entry is the event as exported, or its OCSF record.
    let format = match req.format.as_deref() {
        None | Some("json") => ObjectFormat::NdjsonGz,
        Some("ocsf") => ObjectFormat::Ocsf,
        Some(_) => {
            return Err(bad(
                "format",
                "a push stream sends \"json\" (the events) or \"ocsf\" (OCSF records)",
            ));
        }
    };
    // Each kind's own fields; another kind's are refused by name.
    let (secret_field, secret) = match kind {
        DestinationKind::Https => ("secret", &req.secret),
        DestinationKind::SplunkHec => ("token", &req.token),
        _ => ("api_key", &req.api_key),
    };
    for (field, v) in [
        ("secret", &req.secret),
        ("token", &req.token),
        ("api_key", &req.api_key),
    ] {
        if v.is_some() && field != secret_field {
            return Err(bad(
                field,
                &format!("this kind's secret is `{secret_field}`"),
            ));
        }
    }
    let splunk = [
        ("index", req.index.is_some()),
        ("source", req.source.is_some()),
        ("sourcetype", req.sourcetype.is_some()),
    ];
    let datadog = [
        ("site", req.site.is_some()),
        ("service", req.service.is_some()),
        ("tags", req.tags.is_some()),
    ];
    let foreign: Vec<(&str, bool)> = match kind {
        DestinationKind::SplunkHec => datadog.to_vec(),
        DestinationKind::Datadog => splunk.to_vec(),
        _ => splunk.iter().chain(datadog.iter()).copied().collect(),
    };
    if let Some((field, _)) = foreign.iter().find(|(_, g)| *g) {
        return Err(bad(field, "does not apply to this kind of destination"));
    }
    let creds = match secret {
        Some(s) => {
            let min = if kind == DestinationKind::Https {
                16
            } else {
                1
            };
            if s.len() < min || s.len() > 256 || s.chars().any(char::is_control) {
                return Err(bad(
                    secret_field,
                    &format!("{min}-256 characters, no control characters"),
                ));
            }
            CredentialsChoice::Secret(s.clone())
        }
        None if previous.is_some_and(|p| p.kind == kind) => CredentialsChoice::Unchanged,
        None => return Err(bad(secret_field, "required")),
    };
    let mut push = PushConfig {
        url: String::new(),
        index: None,
        source: None,
        sourcetype: None,
        site: None,
        service: None,
        tags: Vec::new(),
    };
    match kind {
        DestinationKind::Https => {
            let url = req.url.ok_or_else(|| bad("url", "required"))?;
            push.url = check_url(&url).map_err(|r| bad("url", &r))?;
        }
        DestinationKind::SplunkHec => {
            let url = req.url.ok_or_else(|| {
                bad(
                    "url",
                    "required: the HTTP Event Collector's base URL, such as https://splunk.example.com:8088",
                )
            })?;
            let base = check_endpoint(&url).map_err(|r| bad("url", &r))?;
            push.url = format!("{base}/services/collector/event");
            if let Some(i) = &req.index {
                let ok = !i.is_empty()
                    && i.len() <= 80
                    && i.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                    });
                if !ok {
                    return Err(bad("index", "a Splunk index name: a-z 0-9 _ -, 1-80"));
                }
            }
            push.index = req.index;
            let source = req.source.unwrap_or_else(|| "auditrail".into());
            text("source", &source, 256)?;
            let sourcetype = req.sourcetype.unwrap_or_else(|| "auditrail:event".into());
            text("sourcetype", &sourcetype, 256)?;
            push.source = Some(source);
            push.sourcetype = Some(sourcetype);
        }
        _ => {
            let site = req.site.unwrap_or_else(|| "datadoghq.com".into());
            if !DATADOG_SITES.contains(&site.as_str()) {
                return Err(bad("site", &format!("one of {}", DATADOG_SITES.join(", "))));
            }
            // `url` replaces the site's intake (a proxy, or a test receiver).
            let base = match req.url {
                Some(u) => check_endpoint(&u).map_err(|r| bad("url", &r))?,
                None => format!("https://http-intake.logs.{site}"),
            };
            push.url = format!("{base}/api/v2/logs");
            push.site = Some(site);
            let service = req.service.unwrap_or_else(|| "auditrail".into());
            text("service", &service, 100)?;
            push.service = Some(service);
            let tags = req.tags.unwrap_or_default();
            if tags.len() > 50 {
                return Err(bad("tags", "at most 50"));
            }
            for t in &tags {
                let ok = t.contains(':') && !t.contains(',') && !t.contains(' ');
                text("tags", t, 200)?;
                if !ok {
                    return Err(bad("tags", "each `key:value`, without commas or spaces"));
                }
            }
            push.tags = tags;
        }
    }
    let (max_batch_events, max_batch_seconds, start) = batching(
        req.max_batch_events,
        req.max_batch_seconds,
        req.start.as_deref(),
        previous,
    )?;
    Ok((
        DestinationConfig {
            kind,
            bucket: String::new(),
            prefix: String::new(),
            region: String::new(),
            endpoint: None,
            // `ndjson.gz`: the events as exported; `ocsf`: their OCSF records.
            format,
            max_batch_events,
            max_batch_seconds,
            start,
            credentials_source: CredentialsSource::Secret,
            role_arn: None,
            sts_endpoint: None,
            access_key_id: None,
            tiles: false,
            push: Some(push),
            alert_after_s: super::config::alert_after(req.alert_after.as_ref(), previous)?,
            security_lake: None,
            cloud: None,
        },
        creds,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(v: serde_json::Value) -> Result<(DestinationConfig, CredentialsChoice), ApiError> {
        super::super::config::validate(serde_json::from_value(v).unwrap(), None)
    }

    fn field(v: serde_json::Value) -> String {
        let e = run(v).unwrap_err();
        assert_eq!(e.status.as_u16(), 422);
        e.details[0]["field"].as_str().unwrap().to_owned()
    }

    #[test]
    fn each_kind_is_stored_without_its_secret() {
        let (c, creds) = run(json!({"kind": "splunk_hec", "url": "https://splunk.example.com:8088/", "token": "hec-token", "index": "audit"})).unwrap();
        let p = c.push.as_ref().unwrap();
        assert_eq!(
            p.url,
            "https://splunk.example.com:8088/services/collector/event"
        );
        assert_eq!(
            (p.source.as_deref(), p.sourcetype.as_deref()),
            (Some("auditrail"), Some("auditrail:event"))
        );
        assert_eq!(creds, CredentialsChoice::Secret("hec-token".into()));
        assert!(!serde_json::to_string(&c).unwrap().contains("hec-token"));

        let (c, _) = run(json!({"kind": "datadog", "api_key": "k", "site": "datadoghq.eu", "tags": ["env:prod"]})).unwrap();
        assert_eq!(
            c.push.unwrap().url,
            "https://http-intake.logs.datadoghq.eu/api/v2/logs"
        );

        let (c, _) = run(json!({"kind": "https", "url": "https://hooks.example.com/audit?x=1", "secret": "0123456789abcdef", "alert_after": "2h"})).unwrap();
        assert_eq!(c.alert_after_s, 7200);
        assert_eq!(
            c.push.as_ref().unwrap().url,
            "https://hooks.example.com/audit?x=1"
        );
        // Stored and read back.
        let stored = serde_json::to_string(&c.clone()).unwrap();
        let back: DestinationConfig = serde_json::from_str(&stored).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn each_bad_field_is_named() {
        assert_eq!(
            field(json!({"kind": "https", "secret": "0123456789abcdef"})),
            "url"
        );
        assert_eq!(
            field(json!({"kind": "https", "url": "https://h.example.com/"})),
            "secret"
        );
        assert_eq!(
            field(json!({"kind": "https", "url": "https://h.example.com/", "secret": "short"})),
            "secret"
        );
        assert_eq!(
            field(
                json!({"kind": "https", "url": "ftp://h.example.com/", "secret": "0123456789abcdef"})
            ),
            "url"
        );
        assert_eq!(
            field(
                json!({"kind": "https", "url": "https://u:p@h.example.com/", "secret": "0123456789abcdef"})
            ),
            "url"
        );
        assert_eq!(
            field(json!({"kind": "https", "url": "https://h.example.com/", "token": "t"})),
            "token"
        );
        assert_eq!(
            field(
                json!({"kind": "https", "url": "https://h.example.com/", "secret": "0123456789abcdef", "bucket": "b-1"})
            ),
            "bucket"
        );
        assert_eq!(
            field(
                json!({"kind": "https", "url": "https://h.example.com/", "secret": "0123456789abcdef", "format": "parquet"})
            ),
            "format"
        );
        assert_eq!(
            field(
                json!({"kind": "splunk_hec", "url": "https://s.example.com:8088/services/collector", "token": "t"})
            ),
            "url"
        );
        assert_eq!(
            field(
                json!({"kind": "splunk_hec", "url": "https://s.example.com:8088", "token": "t", "index": "Bad Index"})
            ),
            "index"
        );
        assert_eq!(
            field(
                json!({"kind": "splunk_hec", "url": "https://s.example.com:8088", "token": "t", "site": "datadoghq.com"})
            ),
            "site"
        );
        assert_eq!(
            field(json!({"kind": "datadog", "api_key": "k", "site": "example.com"})),
            "site"
        );
        assert_eq!(
            field(json!({"kind": "datadog", "api_key": "k", "tags": ["no-colon"]})),
            "tags"
        );
        assert_eq!(
            field(json!({"kind": "datadog", "api_key": "k", "index": "main"})),
            "index"
        );
        assert_eq!(field(json!({"kind": "datadog"})), "api_key");
        assert_eq!(
            field(json!({"kind": "datadog", "api_key": "k", "max_batch_events": 0})),
            "max_batch_events"
        );
    }

    #[test]
    fn an_update_keeps_the_secret_of_the_same_kind_only() {
        let (first, _) = run(json!({"kind": "datadog", "api_key": "k"})).unwrap();
        let again = |v: serde_json::Value| {
            super::super::config::validate(serde_json::from_value(v).unwrap(), Some(&first))
        };
        let (_, creds) = again(json!({"kind": "datadog", "service": "billing"})).unwrap();
        assert_eq!(creds, CredentialsChoice::Unchanged);
        let e =
            again(json!({"kind": "splunk_hec", "url": "https://s.example.com:8088"})).unwrap_err();
        assert_eq!(e.details[0]["field"], "token");
        let e = again(json!({"kind": "s3", "bucket": "audit-logs"})).unwrap_err();
        assert_eq!(e.details[0]["field"], "credentials");
    }
}
