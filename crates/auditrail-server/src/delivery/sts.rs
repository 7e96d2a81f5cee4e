//! Delivery by role assumption: auditrail signs STS `AssumeRole` (AWS Query protocol,
//! SigV4) with the server's own identity from the standard AWS chain, passing the
//! org's `ExternalId`, and uses the temporary credentials it gets back. They are cached
//! and renewed before they expire, so delivery never waits on an expired key. A refused
//! assumption is a permanent failure: it needs the customer's trust policy fixed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use object_store::CredentialProvider;
use object_store::aws::{AwsAuthorizer, AwsCredential, AwsCredentialProvider};
use object_store::client::HttpRequestBody;
use tokio::sync::Mutex;

use super::bucket::S3Failure;
use crate::outbound::{Outbound, refusal_in};

/// How long each set of temporary credentials is asked to last.
pub const SESSION_SECONDS: u64 = 3600;
/// Renew this long before expiry at the latest (earlier for short-lived credentials).
const RENEW_MARGIN: Duration = Duration::from_secs(300);

/// The role to assume, and how to reach STS.
#[derive(Debug, Clone)]
pub struct RoleTarget {
    pub role_arn: String,
    pub external_id: String,
    pub session_name: String,
    /// `https://sts.{region}.amazonaws.com` unless the destination names another.
    pub endpoint: String,
    pub region: String,
}

/// Temporary credentials for one destination's role, renewed before they expire.
pub struct RoleCredentials {
    target: RoleTarget,
    /// The server's own identity, which signs the `AssumeRole` call.
    caller: AwsCredentialProvider,
    http: reqwest::Client,
    outbound: Outbound,
    cached: Mutex<Option<Cached>>,
}

struct Cached {
    credential: Arc<AwsCredential>,
    renew_at: Instant,
}

impl std::fmt::Debug for RoleCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleCredentials")
            .field("role_arn", &self.target.role_arn)
            .field("endpoint", &self.target.endpoint)
            .finish_non_exhaustive()
    }
}

/// A refused or failed `AssumeRole`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct AssumeRoleError {
    pub message: String,
    pub permanent: bool,
}

impl From<AssumeRoleError> for S3Failure {
    fn from(e: AssumeRoleError) -> Self {
        S3Failure {
            blocked: e.permanent,
            message: e.message,
            permanent: e.permanent,
        }
    }
}

impl RoleCredentials {
    pub fn new(
        target: RoleTarget,
        caller: AwsCredentialProvider,
        outbound: &Outbound,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Self, S3Failure> {
        let http = outbound.http_client(timeout, connect_timeout)?;
        Ok(Self {
            target,
            caller,
            http,
            outbound: outbound.clone(),
            cached: Mutex::new(None),
        })
    }

    /// Current temporary credentials: the cached ones until they are due for renewal.
    pub async fn current(&self) -> Result<Arc<AwsCredential>, AssumeRoleError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && Instant::now() < c.renew_at
        {
            return Ok(c.credential.clone());
        }
        let (credential, lifetime) = self.assume().await?;
        let margin = RENEW_MARGIN.min(lifetime / 2);
        let credential = Arc::new(credential);
        *cached = Some(Cached {
            credential: credential.clone(),
            renew_at: Instant::now() + lifetime.saturating_sub(margin),
        });
        Ok(credential)
    }

    async fn assume(&self) -> Result<(AwsCredential, Duration), AssumeRoleError> {
        let t = &self.target;
        let transient = |message: String| AssumeRoleError {
            message,
            permanent: false,
        };
        let caller = self
            .caller
            .get_credential()
            .await
            .map_err(|e| AssumeRoleError {
                message: format!(
                    "AssumeRole: the server has no AWS identity of its own to sign with: {e}"
                ),
                permanent: true,
            })?;
        let body = serde_urlencoded::to_string([
            ("Action", "AssumeRole"),
            ("Version", "2011-06-15"),
            ("RoleArn", t.role_arn.as_str()),
            ("RoleSessionName", t.session_name.as_str()),
            ("ExternalId", t.external_id.as_str()),
            ("DurationSeconds", &SESSION_SECONDS.to_string()),
        ])
        .map_err(|e| transient(format!("AssumeRole: {e}")))?;
        let url = format!("{}/", t.endpoint.trim_end_matches('/'));
        let parsed = reqwest::Url::parse(&url).map_err(|e| AssumeRoleError {
            message: format!("AssumeRole: sts_endpoint: {e}"),
            permanent: true,
        })?;
        self.outbound
            .check_literal(&parsed)
            .map_err(|e| AssumeRoleError {
                message: format!("AssumeRole: {e}"),
                permanent: true,
            })?;
        let body = Bytes::from(body);
        let mut req = http::Request::builder()
            .method(Method::POST)
            .uri(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(HttpRequestBody::from(body.clone()))
            .map_err(|e| transient(format!("AssumeRole: {e}")))?;
        AwsAuthorizer::new(&caller, "sts", &t.region).authorize(&mut req, None);
        let (parts, _) = req.into_parts();
        let started = Instant::now();
        let resp = self
            .http
            .post(parsed)
            .headers(parts.headers)
            .body(body)
            .send()
            .await
            .map_err(|e| match refusal_in(&e) {
                Some(r) => AssumeRoleError {
                    message: format!("AssumeRole: {r}"),
                    permanent: true,
                },
                None => transient(format!(
                    "AssumeRole: could not reach STS ({})",
                    short_reqwest(&e)
                )),
            })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let code = crate::delivery::bucket::error_code(&text);
            return Err(AssumeRoleError {
                message: format!("AssumeRole {} refused: {status}{code}", t.role_arn),
                permanent: status.is_client_error() && status.as_u16() != 429,
            });
        }
        parse_credentials(&text, started).map_err(|m| transient(format!("AssumeRole: {m}")))
    }
}

/// The kind of failure a client error was, without the URL or any answer.
pub(crate) fn short_reqwest(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_redirect() {
        "redirect not followed"
    } else {
        "request failed"
    }
}

/// `AssumeRoleResponse/AssumeRoleResult/Credentials` → credentials and how long they
/// last from `asked_at` on.
fn parse_credentials(xml: &str, asked_at: Instant) -> Result<(AwsCredential, Duration), String> {
    let field = |tag: &str| {
        super::bucket::xml_value(xml, tag).ok_or_else(|| format!("STS answered without {tag}"))
    };
    let key_id = field("AccessKeyId")?;
    let secret_key = field("SecretAccessKey")?;
    let token = field("SessionToken")?;
    let expiration = field("Expiration")?;
    let expires = auditrail_core::time::parse_rfc3339(&expiration)
        .ok_or_else(|| format!("STS answered an unreadable Expiration {expiration:?}"))?;
    let left_ms = (expires.timestamp_millis() - chrono::Utc::now().timestamp_millis()).max(0);
    let lifetime = Duration::from_millis(left_ms as u64).saturating_sub(asked_at.elapsed());
    if lifetime.is_zero() {
        return Err("STS answered credentials that have already expired".into());
    }
    Ok((
        AwsCredential {
            key_id,
            secret_key,
            token: Some(token),
        },
        lifetime,
    ))
}

#[async_trait::async_trait]
impl CredentialProvider for RoleCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        self.current()
            .await
            .map_err(|e| object_store::Error::Generic {
                store: "S3",
                source: Box::new(e),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sts_answers_are_read() {
        let later = chrono::Utc::now() + chrono::Duration::seconds(3600);
        let xml = format!(
            "<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>ASIAX</AccessKeyId>\
             <SecretAccessKey>s</SecretAccessKey><SessionToken>t</SessionToken>\
             <Expiration>{}</Expiration></Credentials></AssumeRoleResult></AssumeRoleResponse>",
            later.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        let (c, life) = parse_credentials(&xml, Instant::now()).unwrap();
        assert_eq!(
            (c.key_id.as_str(), c.token.as_deref()),
            ("ASIAX", Some("t"))
        );
        assert!(life > Duration::from_secs(3500) && life <= Duration::from_secs(3600));
        assert!(
            parse_credentials("<x/>", Instant::now())
                .unwrap_err()
                .contains("AccessKeyId")
        );
        let past = xml.replace(
            &later.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "2001-01-01T00:00:00Z",
        );
        assert!(
            parse_credentials(&past, Instant::now())
                .unwrap_err()
                .contains("expired")
        );
    }
}
