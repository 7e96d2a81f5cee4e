//! Continuous delivery of each org's log to its own buckets (S3, GCS, Azure) and
//! receivers (push streams): destination settings,
//! sealed credentials (`secrets.rs`), the bucket client and permission test
//! (`bucket.rs`), and the worker that moves batches (`worker.rs`).

pub mod bucket;
pub mod cloud_config;
pub mod config;
pub mod gcs;
pub(crate) mod health;
pub mod push;
pub mod push_config;
pub mod sts;
mod tlog;
pub mod worker;

use std::time::Duration;

use std::sync::{Arc, OnceLock};

use auditrail_core::delivery::date_of;
use auditrail_core::export::Row;
use auditrail_core::query::Filter;
use auditrail_store::{Destination, Order, PageRequest, StoredEvent};
use tokio::sync::Notify;

use hmac::{Hmac, Mac};
use object_store::StaticCredentialProvider;
use object_store::aws::{AmazonS3Builder, AwsCredential, AwsCredentialProvider};
use sha2::Sha256;

use self::bucket::{Bucket, Patience, S3Failure};
use self::config::{CredentialsSource, DestinationConfig, StaticKeys};
use self::sts::{RoleCredentials, RoleTarget};
use crate::App;

/// How delivery runs on this node.
#[derive(Clone)]
pub struct DeliverySettings {
    /// Seals destination credentials at rest.
    pub secret_key: [u8; 32],
    /// The principal bucket policies grant (`AUDITRAIL_AWS_PRINCIPAL_ARN`).
    pub principal_arn: Option<String>,
    /// Objects larger than this go up as multipart uploads.
    pub multipart_threshold: usize,
    pub patience: Patience,
    /// How often a waiting destination looks for new events.
    pub poll: Duration,
    /// The longest pause between retries of a failing destination.
    pub max_backoff: Duration,
    /// How long shutdown waits for the last batches to go out.
    pub flush_timeout: Duration,
}

impl std::fmt::Debug for DeliverySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliverySettings")
            .field("secret_key", &"****")
            .field("principal_arn", &self.principal_arn)
            .field("multipart_threshold", &self.multipart_threshold)
            .field("poll", &self.poll)
            .finish_non_exhaustive()
    }
}

impl DeliverySettings {
    pub fn new(secret_key: [u8; 32]) -> Self {
        Self {
            secret_key,
            principal_arn: None,
            multipart_threshold: 16 << 20,
            patience: Patience::default(),
            poll: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            flush_timeout: Duration::from_secs(10),
        }
    }
}

/// Per-process delivery state.
pub struct Delivery {
    /// Wakes the worker when a destination changes.
    pub wake: Notify,
    /// Derives each org's STS external id; a key of its own, not the sealing key.
    external_id_key: [u8; 32],
    /// The server's own AWS identity (the standard chain), made once and shared so its
    /// cached tokens are too.
    environment: OnceLock<Result<AwsCredentialProvider, String>>,
}

impl Delivery {
    pub fn new(settings: &DeliverySettings) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&settings.secret_key)
            .expect("HMAC takes any key length");
        mac.update(b"auditrail sts external id key v1");
        Self {
            wake: Notify::new(),
            external_id_key: mac.finalize().into_bytes().into(),
            environment: OnceLock::new(),
        }
    }

    /// The `ExternalId` auditrail passes when it assumes a role for `org`: unguessable
    /// without the server's secret key, never chosen by the customer, the same for the
    /// org on every node and across restarts.
    pub fn external_id(&self, org: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.external_id_key)
            .expect("HMAC takes any key length");
        mac.update(org.as_bytes());
        let tag = mac.finalize().into_bytes();
        format!("auditrail-{}", hex::encode(&tag[..16]))
    }

    /// The server's own identity from the standard AWS chain (environment variables,
    /// web identity, container or instance metadata).
    pub fn environment_identity(&self) -> Result<AwsCredentialProvider, S3Failure> {
        self.environment
            .get_or_init(|| {
                AmazonS3Builder::from_env()
                    .with_bucket_name("auditrail-identity")
                    .build()
                    .map(|s| s.credentials().clone())
                    .map_err(|e| format!("the server's AWS identity is not configured: {e}"))
            })
            .clone()
            .map_err(|message| S3Failure {
                message,
                permanent: true,
                blocked: false,
            })
    }
}

/// What binds sealed credentials to their destination.
pub fn seal_context(org: &str, name: &str) -> String {
    format!("destination/{org}/{name}")
}

/// `dest`'s sealed credentials, opened (bound to the destination) and read as `T`; the
/// error says which step failed, `missing` when there are none.
pub(crate) fn open_sealed<T: serde::de::DeserializeOwned>(
    app: &App,
    dest: &Destination,
    missing: &str,
    unreadable: &str,
) -> Result<T, String> {
    let sealed = dest
        .sealed_credentials
        .as_ref()
        .ok_or_else(|| missing.to_owned())?;
    let plain = app
        .secrets
        .open(sealed, &seal_context(&dest.org, &dest.name))
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&plain).map_err(|e| format!("{unreadable}: {e}"))
}

/// The stored configuration of `dest`.
pub fn config_of(dest: &Destination) -> Result<DestinationConfig, S3Failure> {
    serde_json::from_str(&dest.config).map_err(|e| S3Failure {
        message: format!("stored configuration is unreadable: {e}"),
        permanent: true,
        blocked: false,
    })
}

/// Connects to `dest`'s bucket as the identity its credentials name.
pub fn open_bucket(
    app: &App,
    dest: &Destination,
) -> Result<(DestinationConfig, Bucket), S3Failure> {
    let config = config_of(dest)?;
    let settings = &app.settings.delivery;
    if config.kind.is_cloud() {
        let keys: cloud_config::CloudKeys =
            open_keys(app, dest, "the store's key is missing; give it again")?;
        let bucket =
            Bucket::connect_cloud(&config, keys, &app.settings.outbound, settings.patience)?;
        return Ok((config, bucket));
    }
    let identity = identity(app, dest, &config)?;
    let bucket = Bucket::connect(&config, identity, &app.settings.outbound, settings.patience)?;
    Ok((config, bucket))
}

/// A bucket destination's sealed keys; a failure needs a person (the keys given again).
fn open_keys<T: serde::de::DeserializeOwned>(
    app: &App,
    dest: &Destination,
    missing: &str,
) -> Result<T, S3Failure> {
    open_sealed(app, dest, missing, "sealed credentials are unreadable").map_err(|message| {
        S3Failure {
            message,
            permanent: true,
            blocked: false,
        }
    })
}

fn identity(
    app: &App,
    dest: &Destination,
    config: &DestinationConfig,
) -> Result<AwsCredentialProvider, S3Failure> {
    let delivery = &app.delivery;
    let patience = app.settings.delivery.patience;
    match config.credentials_source {
        CredentialsSource::Static => {
            let keys: StaticKeys = open_keys(
                app,
                dest,
                "static credentials are missing; give the keys again",
            )?;
            Ok(Arc::new(StaticCredentialProvider::new(AwsCredential {
                key_id: keys.access_key_id,
                secret_key: keys.secret_access_key,
                token: keys.session_token,
            })))
        }
        CredentialsSource::Environment => delivery.environment_identity(),
        CredentialsSource::Secret => Err(S3Failure {
            message: "a push stream has no bucket".into(),
            permanent: true,
            blocked: true,
        }),
        CredentialsSource::AssumeRole => {
            let role_arn = config.role_arn.clone().ok_or_else(|| S3Failure {
                message: "assume_role without a role_arn".into(),
                permanent: true,
                blocked: false,
            })?;
            let target = RoleTarget {
                role_arn,
                external_id: delivery.external_id(&dest.org),
                session_name: session_name(&dest.org),
                endpoint: config.sts_url(),
                region: config.region.clone(),
            };
            Ok(Arc::new(RoleCredentials::new(
                target,
                delivery.environment_identity()?,
                &app.settings.outbound,
                patience.request_timeout,
                patience.connect_timeout,
            )?))
        }
    }
}

/// `auditrail-<org>`, in the characters and length STS allows, so the customer's
/// CloudTrail shows which org a session served.
fn session_name(org: &str) -> String {
    let clean: String = org
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(54)
        .collect();
    format!("auditrail-{clean}")
}

/// The bucket policy granting `principal` what delivery and the permission test use,
/// in the shape of the Prophecy example.
pub fn bucket_policy(principal: &str, bucket: &str) -> serde_json::Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "AuditrailDelivery",
            "Effect": "Allow",
            "Principal": {"AWS": principal},
            "Action": POLICY_ACTIONS,
            "Resource": [
                format!("arn:aws:s3:::{bucket}"),
                format!("arn:aws:s3:::{bucket}/*"),
            ],
        }],
    })
}

/// The trust policy of a role that auditrail assumes for `org`: only `principal`, and
/// only with the org's external id, so no other org can have auditrail assume it.
pub fn trust_policy(principal: &str, external_id: &str) -> serde_json::Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "AuditrailAssumeRole",
            "Effect": "Allow",
            "Principal": {"AWS": principal},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": external_id}},
        }],
    })
}

/// The permissions policy to attach to that role: the bucket policy's actions on the
/// destination's bucket, for the role itself.
pub fn permissions_policy(bucket: &str) -> serde_json::Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "AuditrailDelivery",
            "Effect": "Allow",
            "Action": POLICY_ACTIONS,
            "Resource": [
                format!("arn:aws:s3:::{bucket}"),
                format!("arn:aws:s3:::{bucket}/*"),
            ],
        }],
    })
}

/// The S3 actions of the bucket policy, each of which the permission test exercises.
pub const POLICY_ACTIONS: [&str; 10] = [
    "s3:GetBucketLocation",
    "s3:ListBucket",
    "s3:ListBucketMultipartUploads",
    "s3:AbortMultipartUpload",
    "s3:GetObject",
    "s3:ListMultipartUploadParts",
    "s3:PutObject",
    "s3:GetObjectTagging",
    "s3:PutObjectTagging",
    "s3:DeleteObject",
];

/// When the event after `delivered` was received (ms), if there is one: how old the
/// oldest undelivered event is.
pub(crate) async fn oldest_undelivered_ms(
    app: &Arc<App>,
    org: &str,
    delivered: u64,
) -> Result<Option<i64>, S3Failure> {
    let first = read_events(app.clone(), org.to_owned(), delivered, 1).await?;
    first
        .first()
        .map(|e| received_ms(e).map(|r| r.0))
        .transpose()
}

/// When an event was received (ms since the epoch) and its `dt` date.
pub(crate) fn received_ms(e: &StoredEvent) -> Result<(i64, String), S3Failure> {
    let row = Row::parse(&e.body).map_err(|err| internal(format!("seq {}: {err}", e.seq)))?;
    let at = auditrail_core::time::parse_rfc3339(&row.received_at)
        .ok_or_else(|| internal(format!("seq {} has no readable received_at", e.seq)))?;
    let date = date_of(&row.received_at)
        .ok_or_else(|| internal(format!("seq {} has no readable received_at", e.seq)))?;
    Ok((at.timestamp_millis(), date.to_owned()))
}

/// Up to `limit` events of `org` after seq `after`, in seq order.
pub(crate) async fn read_events(
    app: Arc<App>,
    org: String,
    after: u64,
    limit: usize,
) -> Result<Vec<StoredEvent>, S3Failure> {
    let page = app
        .store
        .search(
            &org,
            &Filter::default(),
            PageRequest {
                after_seq: Some(after),
                limit,
                order: Order::Asc,
            },
        )
        .await
        .map_err(|e| internal(format!("reading events: {e}")))?;
    Ok(page.events)
}

/// How a blocked failure (a refused role or address) is marked in the stored
/// `last_error`, so every node shows the destination's state as `error` rather than
/// `retrying`.
const PERMANENT_MARK: &str = "permanent|";

/// A failure as stored in the destination's `last_error`.
pub(crate) fn stored_error(f: &S3Failure) -> String {
    if f.blocked {
        format!("{PERMANENT_MARK}{}", f.message)
    } else {
        f.message.clone()
    }
}

/// A stored `last_error` as shown, and whether delivery is blocked.
pub fn shown_error(stored: &str) -> (&str, bool) {
    match stored.strip_prefix(PERMANENT_MARK) {
        Some(m) => (m, true),
        None => (stored, false),
    }
}

/// A failure on auditrail's side (store, encoding), worth retrying.
pub(crate) fn internal(message: String) -> S3Failure {
    S3Failure {
        message,
        permanent: false,
        blocked: false,
    }
}
