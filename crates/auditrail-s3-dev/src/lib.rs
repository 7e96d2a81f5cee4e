//! A small S3-compatible server for development and tests: objects are files under a
//! root directory (one directory per bucket), requests must be signed with SigV4 by the
//! configured access key, and [`Faults`] can deny chosen actions or refuse every request,
//! so missing permissions and outages can be rehearsed against a real HTTP server.
//!
//! Built on `s3s-fs`; adds object tagging (kept in memory) and a multipart-upload listing
//! that reports no uploads in progress.
#![forbid(unsafe_code)]

mod identity;

pub use identity::Identities;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::access::{S3Access, S3AccessContext};
use s3s::dto::*;
use s3s::service::S3ServiceBuilder;
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// What the server does wrong on purpose.
#[derive(Debug, Default)]
pub struct Faults {
    denied: Mutex<HashSet<String>>,
    denied_keys: Mutex<Vec<String>>,
    log: Mutex<Vec<(String, String)>>,
    bucket_log: Mutex<Vec<(String, String, String)>>,
    refusing: AtomicBool,
    requests: AtomicU64,
}

impl Faults {
    /// Answers `AccessDenied` to `action`, named as S3 names operations (`PutObject`).
    pub fn deny(&self, action: &str) {
        self.denied
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(action.to_owned());
    }

    /// Answers `AccessDenied` to any request on a key containing `part`.
    pub fn deny_keys_containing(&self, part: &str) {
        self.denied_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(part.to_owned());
    }

    /// Lifts every denial.
    pub fn allow_all(&self) {
        self.denied
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.denied_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Every request that reached the store with credentials: `(operation, key)`.
    pub fn log(&self) -> Vec<(String, String)> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Every request that reached the store with credentials: `(access key, operation,
    /// bucket)`, including those then refused.
    pub fn bucket_log(&self) -> Vec<(String, String, String)> {
        self.bucket_log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// While on, every request gets `503 ServiceUnavailable`.
    pub fn refuse(&self, on: bool) {
        self.refusing.store(on, Ordering::SeqCst);
    }

    /// Requests seen so far (refused and denied ones included).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

struct Access(Arc<Faults>, Arc<Identities>);

#[async_trait::async_trait]
impl S3Access for Access {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        self.0.requests.fetch_add(1, Ordering::SeqCst);
        if self.0.refusing.load(Ordering::SeqCst) {
            return Err(s3_error!(ServiceUnavailable, "refusing requests"));
        }
        let Some(access_key) = cx.credentials().map(|c| c.access_key.clone()) else {
            return Err(s3_error!(AccessDenied, "Signature is required"));
        };
        let op = cx.s3_op().name();
        let (bucket, key) = match cx.s3_path() {
            s3s::path::S3Path::Object { bucket, key } => (bucket.to_string(), key.to_string()),
            s3s::path::S3Path::Bucket { bucket } => (bucket.to_string(), String::new()),
            s3s::path::S3Path::Root => (String::new(), String::new()),
        };
        self.0
            .bucket_log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((access_key.clone(), op.to_owned(), bucket.clone()));
        self.1.admit(&access_key, cx.headers(), &bucket)?;
        self.0
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((op.to_owned(), key.clone()));
        let denied = self
            .0
            .denied
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(op)
            || self
                .0
                .denied_keys
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .any(|p| key.contains(p.as_str()));
        if denied {
            return Err(s3_error!(AccessDenied, "{op} is denied by policy"));
        }
        Ok(())
    }
}

struct DevStore {
    fs: s3s_fs::FileSystem,
    root: PathBuf,
    tags: Mutex<HashMap<(String, String), TagSet>>,
}

macro_rules! store_impl {
    ($($op:ident: $input:ident => $output:ident),* $(,)?; $($extra:item)*) => {
        #[async_trait::async_trait]
        impl S3 for DevStore {
            $(
                async fn $op(&self, req: S3Request<$input>) -> S3Result<S3Response<$output>> {
                    S3::$op(&self.fs, req).await
                }
            )*
            $($extra)*
        }
    };
}

store_impl! {
    create_bucket: CreateBucketInput => CreateBucketOutput,
    delete_bucket: DeleteBucketInput => DeleteBucketOutput,
    head_bucket: HeadBucketInput => HeadBucketOutput,
    list_buckets: ListBucketsInput => ListBucketsOutput,
    get_bucket_location: GetBucketLocationInput => GetBucketLocationOutput,
    put_object: PutObjectInput => PutObjectOutput,
    get_object: GetObjectInput => GetObjectOutput,
    head_object: HeadObjectInput => HeadObjectOutput,
    copy_object: CopyObjectInput => CopyObjectOutput,
    delete_objects: DeleteObjectsInput => DeleteObjectsOutput,
    list_objects: ListObjectsInput => ListObjectsOutput,
    list_objects_v2: ListObjectsV2Input => ListObjectsV2Output,
    create_multipart_upload: CreateMultipartUploadInput => CreateMultipartUploadOutput,
    upload_part: UploadPartInput => UploadPartOutput,
    complete_multipart_upload: CompleteMultipartUploadInput => CompleteMultipartUploadOutput,
    abort_multipart_upload: AbortMultipartUploadInput => AbortMultipartUploadOutput,
    list_parts: ListPartsInput => ListPartsOutput;

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let key = (req.input.bucket.clone(), req.input.key.clone());
        let out = S3::delete_object(&self.fs, req).await?;
        self.tags.lock().unwrap_or_else(PoisonError::into_inner).remove(&key);
        Ok(out)
    }

    async fn put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        let i = req.input;
        self.exists(&i.bucket, &i.key)?;
        self.tags
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((i.bucket, i.key), i.tagging.tag_set);
        Ok(S3Response::new(PutObjectTaggingOutput::default()))
    }

    async fn get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        let i = req.input;
        self.exists(&i.bucket, &i.key)?;
        let tag_set = self
            .tags
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(i.bucket, i.key))
            .cloned()
            .unwrap_or_default();
        Ok(S3Response::new(GetObjectTaggingOutput {
            tag_set,
            version_id: None,
        }))
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let bucket = req.input.bucket;
        if !self.root.join(&bucket).is_dir() {
            return Err(s3_error!(NoSuchBucket));
        }
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(bucket),
            is_truncated: Some(false),
            ..Default::default()
        }))
    }
}

impl DevStore {
    fn exists(&self, bucket: &str, key: &str) -> S3Result<()> {
        if self.root.join(bucket).join(key).is_file() {
            Ok(())
        } else {
            Err(s3_error!(NoSuchKey))
        }
    }
}

/// A running server. Dropping it stops it.
pub struct DevS3 {
    addr: SocketAddr,
    faults: Arc<Faults>,
    identities: Arc<Identities>,
    root: PathBuf,
    tasks: JoinSet<()>,
}

impl DevS3 {
    /// Serves `root` on `addr` (port 0 picks one), accepting requests signed with
    /// `access_key`/`secret_key`.
    pub async fn start(
        root: &Path,
        addr: SocketAddr,
        access_key: &str,
        secret_key: &str,
    ) -> anyhow::Result<Self> {
        Self::start_with(root, addr, access_key, secret_key, Arc::default()).await
    }

    /// As [`DevS3::start`], sharing `faults` (so a restarted server keeps them).
    pub async fn start_with(
        root: &Path,
        addr: SocketAddr,
        access_key: &str,
        secret_key: &str,
        faults: Arc<Faults>,
    ) -> anyhow::Result<Self> {
        let identities = Arc::new(Identities::default());
        identities.add_key(access_key, secret_key, None);
        Self::start_as(root, addr, identities, faults).await
    }

    /// A server whose callers are `identities`: keys limited to buckets, roles to
    /// assume through its STS endpoint (`POST /`), temporary credentials.
    pub async fn start_as(
        root: &Path,
        addr: SocketAddr,
        identities: Arc<Identities>,
        faults: Arc<Faults>,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(root)?;
        let store = DevStore {
            fs: s3s_fs::FileSystem::new(root).map_err(|e| anyhow::anyhow!("{e:?}"))?,
            root: root.to_path_buf(),
            tags: Mutex::default(),
        };
        let service = {
            let mut b = S3ServiceBuilder::new(store);
            b.set_auth(identity::Auth(identities.clone()));
            b.set_access(Access(faults.clone(), identities.clone()));
            b.set_route(identity::Sts(identities.clone()));
            b.build()
        };
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let _ = socket.set_nodelay(true);
                let service = service.clone();
                conns.spawn(async move {
                    let http = ConnBuilder::new(TokioExecutor::new());
                    let _ = http.serve_connection(TokioIo::new(socket), service).await;
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Ok(Self {
            addr,
            faults,
            identities,
            root: root.to_path_buf(),
            tasks,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, for a client's endpoint setting (path-style requests).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn faults(&self) -> &Arc<Faults> {
        &self.faults
    }

    pub fn identities(&self) -> &Arc<Identities> {
        &self.identities
    }

    /// Creates a bucket (a directory under the root).
    pub fn create_bucket(&self, name: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(self.root.join(name))
    }

    /// Stops accepting and drops every open connection, as a crashed server would.
    pub async fn stop(mut self) {
        self.tasks.shutdown().await;
    }
}
