//! Continuous delivery of each org's log to its own S3 buckets: destination settings,
//! sealed credentials (`secrets.rs`), the bucket client and permission test
//! (`bucket.rs`), and the worker that moves batches (`worker.rs`).

pub mod bucket;
pub mod config;
pub mod secrets;
pub mod worker;

use std::time::Duration;

use std::sync::Arc;

use auditrail_core::delivery::date_of;
use auditrail_core::export::Row;
use auditrail_core::query::Filter;
use auditrail_store::{Destination, Order, PageRequest, StoredEvent};
use tokio::sync::Notify;

use self::bucket::{Bucket, Patience, S3Failure};
use self::config::{DestinationConfig, StaticKeys};
use self::secrets::SecretBox;
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
    secrets: SecretBox,
}

impl Delivery {
    pub fn new(settings: &DeliverySettings) -> Self {
        Self {
            wake: Notify::new(),
            secrets: SecretBox::new(&settings.secret_key),
        }
    }

    pub fn secrets(&self) -> &SecretBox {
        &self.secrets
    }
}

/// What binds sealed credentials to their destination.
pub fn seal_context(org: &str, name: &str) -> String {
    format!("destination/{org}/{name}")
}

/// The stored configuration of `dest`.
pub fn config_of(dest: &Destination) -> Result<DestinationConfig, S3Failure> {
    serde_json::from_str(&dest.config).map_err(|e| S3Failure {
        message: format!("stored configuration is unreadable: {e}"),
        permanent: true,
    })
}

/// Connects to `dest`'s bucket, opening its sealed credentials.
pub fn open_bucket(
    delivery: &Delivery,
    settings: &DeliverySettings,
    dest: &Destination,
) -> Result<(DestinationConfig, Bucket), S3Failure> {
    let config = config_of(dest)?;
    let keys = match &dest.sealed_credentials {
        Some(sealed) => {
            let plain = delivery
                .secrets
                .open(sealed, &seal_context(&dest.org, &dest.name))
                .map_err(|e| S3Failure {
                    message: e.to_string(),
                    permanent: true,
                })?;
            let keys: StaticKeys = serde_json::from_slice(&plain).map_err(|e| S3Failure {
                message: format!("sealed credentials are unreadable: {e}"),
                permanent: true,
            })?;
            Some(keys)
        }
        None => None,
    };
    let bucket = Bucket::connect(&config, keys.as_ref(), settings.patience)?;
    Ok((config, bucket))
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

/// A failure on auditrail's side (store, encoding), worth retrying.
pub(crate) fn internal(message: String) -> S3Failure {
    S3Failure {
        message,
        permanent: false,
    }
}
