//! One destination's bucket (S3, GCS or an Azure container), through `object_store`:
//! whole-object puts (multipart above a threshold), bounded client retries so an outage
//! shows within seconds, errors classified, and the permission test that exercises each
//! action delivery needs (for S3, each action of the bucket policy).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use object_store::aws::{AmazonS3, AmazonS3Builder, AwsAuthorizer};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::client::HttpRequestBody;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::path::Path;
use object_store::{
    Attributes, BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutMultipartOptions,
    PutOptions, PutPayload, RetryConfig, WriteMultipart,
};
use serde::Serialize;

use object_store::aws::AwsCredentialProvider;
use object_store::client::{HttpError, HttpErrorKind};

use super::cloud_config::CloudKeys;
use super::config::{DestinationConfig, DestinationKind};
use super::sts::{AssumeRoleError, short_reqwest};
use crate::exports::urlencode;
use crate::outbound::{Outbound, refusal_in};

/// Part size for multipart uploads (S3's minimum is 5 MiB).
const PART_BYTES: usize = 8 << 20;

/// A failed store operation: what the store said, and whether retrying can help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Failure {
    pub message: String,
    /// Credentials, permissions or a missing bucket: needs a person, not a retry.
    pub permanent: bool,
    /// The identity or the address itself is refused (a role that will not be assumed,
    /// an address the outbound policy refuses): the destination is in `error` and is
    /// retried only now and then.
    pub blocked: bool,
}

impl std::fmt::Display for S3Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn classify(op: &str, e: object_store::Error) -> S3Failure {
    use object_store::Error as E;
    if let Some(f) = identity_failure(&e) {
        return S3Failure {
            message: format!("{op}: {}", f.message),
            ..f
        };
    }
    let permanent = matches!(
        e,
        E::PermissionDenied { .. } | E::Unauthenticated { .. } | E::NotFound { .. }
    );
    let kind = match e {
        E::PermissionDenied { .. } => "access denied: ",
        E::Unauthenticated { .. } => "credentials rejected: ",
        E::NotFound { .. } => "not found (does the bucket exist?): ",
        _ => "",
    };
    S3Failure {
        message: format!("{op}: {kind}{}", summary(&e)),
        permanent,
        blocked: false,
    }
}

/// An outbound refusal (or a client that could not be built) needs a person; a refused
/// address blocks delivery until the policy or the URL changes.
impl From<crate::outbound::OutboundError> for S3Failure {
    fn from(e: crate::outbound::OutboundError) -> Self {
        S3Failure {
            blocked: e.rule().is_some(),
            message: e.to_string(),
            permanent: true,
        }
    }
}

/// A refused address or a refused role in `e`'s chain: both need a person.
fn identity_failure(e: &(dyn std::error::Error + 'static)) -> Option<S3Failure> {
    if let Some(r) = refusal_in(e) {
        return Some(r.into());
    }
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(a) = err.downcast_ref::<AssumeRoleError>() {
            return Some(a.clone().into());
        }
        cur = err.source();
    }
    None
}

/// What the org is told of a failed request: the HTTP status and the store's short
/// error code, or the kind of transport failure. Never the answer's body, the URL, or
/// anything else a remote said: a remote may be a service the org should not read.
fn summary(e: &object_store::Error) -> String {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<HttpError>() {
            return match h.kind() {
                HttpErrorKind::Connect => "connection failed".into(),
                HttpErrorKind::Timeout => "timed out".into(),
                HttpErrorKind::Interrupted => "connection interrupted".into(),
                HttpErrorKind::Decode => "unreadable answer".into(),
                _ => "request failed".into(),
            };
        }
        cur = err.source();
    }
    let text = e.to_string();
    let status = text
        .find("status code: ")
        .map(|i| &text[i + "status code: ".len()..])
        .and_then(|rest| rest.get(..3))
        .filter(|s| s.bytes().all(|b| b.is_ascii_digit()));
    match status {
        Some(s) => format!("HTTP {s}{}", error_code(&text)),
        None if matches!(e, object_store::Error::NotFound { .. }) => "HTTP 404".into(),
        None => "request failed".into(),
    }
}

/// `: AccessDenied` when `body` holds an S3 or STS error document whose code is a
/// short token; nothing otherwise.
pub(crate) fn error_code(body: &str) -> String {
    match xml_value(body, "Code") {
        Some(c)
            if !c.is_empty()
                && c.len() <= 64
                && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.') =>
        {
            format!(": {c}")
        }
        _ => String::new(),
    }
}

/// The bucket of one destination.
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    /// The S3 client, for the signed requests `object_store` has no call for.
    s3: Option<Arc<AmazonS3>>,
    outbound: Outbound,
    config: DestinationConfig,
    http: reqwest::Client,
}

/// How long the client may try before a failure is reported.
#[derive(Debug, Clone, Copy)]
pub struct Patience {
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub retries: usize,
    pub retry_window: Duration,
}

impl Default for Patience {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            retries: 2,
            retry_window: Duration::from_secs(5),
        }
    }
}

fn retry_config(patience: Patience) -> RetryConfig {
    RetryConfig {
        max_retries: patience.retries,
        retry_timeout: patience.retry_window,
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..BackoffConfig::default()
        },
    }
}

impl Bucket {
    /// A client for a `gcs` or `azure_blob` destination's store, acting only as the
    /// customer's `keys` (never the server's own cloud identity), every connection
    /// (tokens included) under `outbound`'s address policy.
    pub fn connect_cloud(
        config: &DestinationConfig,
        keys: CloudKeys,
        outbound: &Outbound,
        patience: Patience,
    ) -> Result<Self, S3Failure> {
        let connector = || outbound.connector(patience.request_timeout, patience.connect_timeout);
        let mut options = ClientOptions::new()
            .with_timeout(patience.request_timeout)
            .with_connect_timeout(patience.connect_timeout);
        if let Some(e) = &config.endpoint {
            options = options.with_allow_http(e.starts_with("http://"));
        }
        let http = outbound.http_client(patience.request_timeout, patience.connect_timeout)?;
        let store: Arc<dyn ObjectStore> = match (config.kind, keys) {
            (
                DestinationKind::Gcs,
                CloudKeys::Gcs {
                    service_account_key,
                },
            ) => {
                // `object_store`'s GCS client for its OAuth tokens only; the objects go
                // over the JSON API (`gcs.rs`).
                let tokens = GoogleCloudStorageBuilder::new()
                    .with_bucket_name(&config.bucket)
                    .with_service_account_key(service_account_key)
                    .with_http_connector(connector())
                    .with_retry(retry_config(patience))
                    .with_client_options(options)
                    .build()
                    .map_err(|e| classify("configure GCS client", e))?;
                let base = config
                    .endpoint
                    .as_deref()
                    .unwrap_or(super::gcs::DEFAULT_BASE_URL);
                Arc::new(super::gcs::GcsJson::new(
                    base,
                    &config.bucket,
                    tokens.credentials().clone(),
                    http.clone(),
                ))
            }
            (DestinationKind::AzureBlob, keys) => {
                let account = config
                    .cloud
                    .as_ref()
                    .and_then(|c| c.account.clone())
                    .unwrap_or_default();
                let mut b = MicrosoftAzureBuilder::new()
                    .with_account(account)
                    .with_container_name(&config.bucket)
                    .with_http_connector(connector())
                    .with_retry(retry_config(patience));
                b = match keys {
                    CloudKeys::AzureAccessKey { access_key } => b.with_access_key(access_key),
                    CloudKeys::AzureSas { sas_token } => {
                        let pairs = url::form_urlencoded::parse(sas_token.as_bytes())
                            .into_owned()
                            .collect::<Vec<_>>();
                        b.with_sas_authorization(pairs)
                    }
                    CloudKeys::Gcs { .. } => return Err(mismatch()),
                };
                if let Some(e) = &config.endpoint {
                    b = b.with_endpoint(e.clone());
                }
                Arc::new(
                    b.with_client_options(options)
                        .build()
                        .map_err(|e| classify("configure Azure client", e))?,
                )
            }
            _ => return Err(mismatch()),
        };
        Ok(Self {
            outbound: outbound.clone(),
            store,
            s3: None,
            config: config.clone(),
            http,
        })
    }

    /// A client for `config`'s bucket acting as `identity`, every connection under
    /// `outbound`'s address policy.
    pub fn connect(
        config: &DestinationConfig,
        identity: AwsCredentialProvider,
        outbound: &Outbound,
        patience: Patience,
    ) -> Result<Self, S3Failure> {
        let mut b = AmazonS3Builder::new()
            .with_credentials(identity)
            .with_http_connector(
                outbound.connector(patience.request_timeout, patience.connect_timeout),
            );
        let retry = retry_config(patience);
        let mut options = ClientOptions::new()
            .with_timeout(patience.request_timeout)
            .with_connect_timeout(patience.connect_timeout);
        b = b
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_retry(retry);
        if let Some(e) = &config.endpoint {
            options = options.with_allow_http(e.starts_with("http://"));
            b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
        }
        let store = b
            .with_client_options(options)
            .build()
            .map_err(|e| classify("configure S3 client", e))?;
        let http = outbound.http_client(patience.request_timeout, patience.connect_timeout)?;
        let store = Arc::new(store);
        Ok(Self {
            outbound: outbound.clone(),
            store: store.clone(),
            s3: Some(store),
            config: config.clone(),
            http,
        })
    }

    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// Stores `bytes` at `key` whole: one PUT, or a multipart upload above `threshold`
    /// that is completed only when every part is in (and aborted otherwise).
    pub async fn put(&self, key: &str, bytes: Bytes, threshold: usize) -> Result<(), S3Failure> {
        self.put_with(key, bytes, threshold, Attributes::new())
            .await
    }

    /// [`Bucket::put`] with the object's HTTP attributes (content type and encoding,
    /// cache control), which the bucket serves back to every reader.
    pub async fn put_with(
        &self,
        key: &str,
        bytes: Bytes,
        threshold: usize,
        attributes: Attributes,
    ) -> Result<(), S3Failure> {
        let path = Path::parse(key).map_err(|e| classify("object key", e.into()))?;
        // GCS's JSON API takes an object whole at any size.
        let whole = self.config.kind == DestinationKind::Gcs;
        if bytes.len() <= threshold || whole {
            let opts = PutOptions {
                attributes,
                ..PutOptions::default()
            };
            return self
                .store
                .put_opts(&path, PutPayload::from_bytes(bytes), opts)
                .await
                .map(|_| ())
                .map_err(|e| classify(&format!("PutObject {key}"), e));
        }
        let opts = PutMultipartOptions {
            attributes,
            ..PutMultipartOptions::default()
        };
        let upload = self
            .store
            .put_multipart_opts(&path, opts)
            .await
            .map_err(|e| classify(&format!("CreateMultipartUpload {key}"), e))?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        w.put(bytes);
        w.finish()
            .await
            .map(|_| ())
            .map_err(|e| classify(&format!("multipart upload of {key}"), e))
    }

    fn url(&self, key: Option<&str>, query: &str) -> String {
        let c = &self.config;
        let base = match &c.endpoint {
            Some(e) => format!("{e}/{}", c.bucket),
            None => format!("https://{}.s3.{}.amazonaws.com", c.bucket, c.region),
        };
        let path = key.map(|k| format!("/{k}")).unwrap_or_else(|| "/".into());
        format!("{base}{path}?{query}")
    }

    /// A signed request for an action `object_store` has no call for.
    async fn raw(
        &self,
        method: Method,
        key: Option<&str>,
        query: &str,
        body: Bytes,
    ) -> Result<String, String> {
        let Some(s3) = &self.s3 else {
            return Err("not an S3 bucket".into());
        };
        let cred =
            s3.credentials()
                .get_credential()
                .await
                .map_err(|e| match identity_failure(&e) {
                    Some(f) => f.message,
                    None => "credentials: could not be had".to_owned(),
                })?;
        let url = self.url(key, query);
        let parsed = reqwest::Url::parse(&url).map_err(|e| e.to_string())?;
        self.outbound
            .check_literal(&parsed)
            .map_err(|e| e.to_string())?;
        let md5 = {
            use base64::Engine;
            use md5::Digest;
            base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&body))
        };
        let mut req = http::Request::builder()
            .method(method.clone())
            .uri(&url)
            .header("content-md5", md5)
            .body(HttpRequestBody::from(body.clone()))
            .map_err(|e| e.to_string())?;
        AwsAuthorizer::new(&cred, "s3", &self.config.region).authorize(&mut req, None);
        let (parts, _) = req.into_parts();
        let resp = self
            .http
            .request(method, &url)
            .headers(parts.headers)
            .body(body)
            .send()
            .await
            .map_err(|e| match refusal_in(&e) {
                Some(r) => r.to_string(),
                None => short_reqwest(&e).to_owned(),
            })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if status.is_success() {
            Ok(text)
        } else {
            Err(format!("HTTP {}{}", status.as_u16(), error_code(&text)))
        }
    }

    /// GCS or Azure: writes, reads, lists and deletes a marker object under
    /// `{prefix}/_auditrail/`, each a check named in the store's own terms.
    async fn object_test(&self, path: &Path, dir: &str) -> Vec<Check> {
        let names: [&'static str; 4] = match self.config.kind {
            DestinationKind::Gcs => [
                "storage.objects.create",
                "storage.objects.get",
                "storage.objects.list",
                "storage.objects.delete",
            ],
            _ => ["Put Blob", "Get Blob", "List Blobs", "Delete Blob"],
        };
        let store = &self.store;
        let mut out = Vec::new();
        let r = store
            .put(
                path,
                PutPayload::from_static(b"auditrail permission test\n"),
            )
            .await;
        out.push(Check::object(names[0], r.map(|_| ())));
        let r = match store.get(path).await {
            Ok(g) => g.bytes().await.map(|_| ()),
            Err(e) => Err(e),
        };
        out.push(Check::object(names[1], r));
        let r =
            futures_util::TryStreamExt::try_collect::<Vec<_>>(store.list(Some(&Path::from(dir))))
                .await;
        out.push(Check::object(names[2], r.map(|_| ())));
        let r = store.delete(path).await;
        out.push(Check::object(names[3], r));
        out
    }

    /// Exercises each action delivery needs on a marker object under
    /// `{prefix}/_auditrail/`, and removes it: for S3 each action the bucket policy grants.
    pub async fn permission_test(&self) -> Vec<Check> {
        let mut out = Vec::new();
        let rnd = auditrail_service::random::bytes::<8>();
        let dir = match self.config.prefix.as_str() {
            "" => "_auditrail".to_owned(),
            p => format!("{p}/_auditrail"),
        };
        let key = format!("{dir}/permission-test-{}", hex::encode(rnd));
        let path = Path::from(key.as_str());
        if self.s3.is_none() {
            return self.object_test(&path, &dir).await;
        }
        let store = &self.store;

        let r = self.raw(Method::GET, None, "location", Bytes::new()).await;
        out.push(Check::new("s3:GetBucketLocation", r.map(|_| ())));
        let r = store
            .put(
                &path,
                PutPayload::from_static(b"auditrail permission test\n"),
            )
            .await;
        out.push(Check::object("s3:PutObject", r.map(|_| ())));
        let r = match store.get(&path).await {
            Ok(g) => g.bytes().await.map(|_| ()),
            Err(e) => Err(e),
        };
        out.push(Check::object("s3:GetObject", r));
        let tagging = Bytes::from_static(
            b"<Tagging><TagSet><Tag><Key>auditrail</Key><Value>permission-test</Value></Tag></TagSet></Tagging>",
        );
        let r = self.raw(Method::PUT, Some(&key), "tagging", tagging).await;
        out.push(Check::new("s3:PutObjectTagging", r.map(|_| ())));
        let r = self
            .raw(Method::GET, Some(&key), "tagging", Bytes::new())
            .await;
        out.push(Check::new("s3:GetObjectTagging", r.map(|_| ())));
        let r = futures_util::TryStreamExt::try_collect::<Vec<_>>(
            store.list(Some(&Path::from(dir.as_str()))),
        )
        .await;
        out.push(Check::object("s3:ListBucket", r.map(|_| ())));
        let q = format!("prefix={}&uploads=", urlencode(&dir));
        let r = self.raw(Method::GET, None, &q, Bytes::new()).await;
        out.push(Check::new("s3:ListBucketMultipartUploads", r.map(|_| ())));

        // A multipart upload to list and abort (creating it needs s3:PutObject).
        let upload_key = format!("{key}-multipart");
        let created = self
            .raw(Method::POST, Some(&upload_key), "uploads=", Bytes::new())
            .await;
        let upload_id = created
            .as_deref()
            .ok()
            .and_then(|x| xml_value(x, "UploadId"));
        let (list, abort) = match upload_id {
            Some(id) => {
                let q = format!("uploadId={}", urlencode(&id));
                let l = self
                    .raw(Method::GET, Some(&upload_key), &q, Bytes::new())
                    .await;
                let a = self
                    .raw(Method::DELETE, Some(&upload_key), &q, Bytes::new())
                    .await;
                (l.map(|_| ()), a.map(|_| ()))
            }
            None => {
                let why = format!(
                    "could not start a multipart upload to try it: {}",
                    created
                        .err()
                        .unwrap_or_else(|| "no UploadId in the answer".into())
                );
                (Err(why.clone()), Err(why))
            }
        };
        out.push(Check::new("s3:ListMultipartUploadParts", list));
        out.push(Check::new("s3:AbortMultipartUpload", abort));
        let r = store.delete(&path).await;
        out.push(Check::object("s3:DeleteObject", r));
        out
    }
}

fn mismatch() -> S3Failure {
    S3Failure {
        message: "the sealed key is not this store's kind; give the key again".into(),
        permanent: true,
        blocked: false,
    }
}

/// One action of the permission test.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Check {
    pub action: &'static str,
    pub passed: bool,
    pub error: Option<String>,
}

impl Check {
    fn new(action: &'static str, r: Result<(), String>) -> Self {
        Self {
            action,
            passed: r.is_ok(),
            error: r.err(),
        }
    }

    fn object(action: &'static str, r: object_store::Result<()>) -> Self {
        Self::new(action, r.map_err(|e| classify(action, e).message))
    }
}

pub(crate) fn xml_value(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(xml[start..end].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_error_documents_are_summarized_without_their_text() {
        let body = "<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>secret internal page</Message></Error>";
        assert_eq!(error_code(body), ": AccessDenied");
        assert_eq!(error_code("<html>ami-id\ninstance-id</html>"), "");
        assert_eq!(error_code("<Code>two words</Code>"), "");
        assert_eq!(
            xml_value("<a><UploadId>x-1</UploadId></a>", "UploadId").as_deref(),
            Some("x-1")
        );
    }
}
