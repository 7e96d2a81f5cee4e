//! Google Cloud Storage through its JSON API (`/storage/v1`, `/upload/storage/v1`), as an
//! `ObjectStore` for what delivery and `verify` do: whole-object uploads, reads, listings
//! and deletes. `object_store`'s own GCS backend speaks the XML API, which GCS serves but
//! its emulators do not all do (listings, deletes, ETags); the JSON API is the one every
//! GCS client library and emulator has. Tokens still come from `object_store`'s GCS
//! credential provider (service account key → OAuth), over the caller's HTTP client.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::TryStreamExt;
use futures_util::stream::{self, BoxStream, StreamExt};
use object_store::gcp::GcpCredentialProvider;
use object_store::path::Path;
use object_store::{
    Attributes, CopyOptions, Error, GetOptions, GetResult, GetResultPayload, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload,
    PutResult, Result,
};

/// GCS's own address.
pub const DEFAULT_BASE_URL: &str = "https://storage.googleapis.com";
const STORE: &str = "GCS";

/// One bucket over the JSON API.
#[derive(Clone)]
pub struct GcsJson {
    inner: Arc<Inner>,
}

struct Inner {
    base: String,
    bucket: String,
    credentials: GcpCredentialProvider,
    http: reqwest::Client,
}

impl fmt::Debug for GcsJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GcsJson({})", self.inner.bucket)
    }
}

impl fmt::Display for GcsJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gs://{}", self.inner.bucket)
    }
}

/// Percent-encodes all but RFC 3986's unreserved characters (`/` included, as object
/// names in JSON API paths and queries need).
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn generic(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Generic {
        store: STORE,
        source: Box::new(e),
    }
}

fn message(m: String) -> Error {
    Error::Generic {
        store: STORE,
        source: m.into(),
    }
}

#[derive(serde::Deserialize)]
struct Item {
    name: String,
    #[serde(default)]
    size: Option<String>,
    #[serde(default)]
    updated: Option<String>,
    #[serde(default)]
    etag: Option<String>,
    #[serde(default)]
    generation: Option<String>,
}

#[derive(serde::Deserialize)]
struct Page {
    #[serde(default)]
    items: Vec<Item>,
    #[serde(default, rename = "nextPageToken")]
    next: Option<String>,
    #[serde(default)]
    prefixes: Vec<String>,
}

impl Item {
    fn meta(self) -> ObjectMeta {
        ObjectMeta {
            location: Path::from(self.name.as_str()),
            last_modified: self
                .updated
                .as_deref()
                .and_then(auditrail_core::time::parse_rfc3339)
                .unwrap_or_default(),
            size: self.size.and_then(|s| s.parse().ok()).unwrap_or(0),
            e_tag: self.etag,
            version: self.generation,
        }
    }
}

impl GcsJson {
    pub fn new(
        base: &str,
        bucket: &str,
        credentials: GcpCredentialProvider,
        http: reqwest::Client,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                base: base.trim_end_matches('/').to_owned(),
                bucket: bucket.to_owned(),
                credentials,
                http,
            }),
        }
    }
}

impl Inner {
    fn object_url(&self, path: &Path) -> String {
        format!(
            "{}/storage/v1/b/{}/o/{}",
            self.base,
            enc(&self.bucket),
            enc(path.as_ref())
        )
    }

    /// Sends `req` with the bearer token (none for an emulator's `disable_oauth` key);
    /// a non-2xx answer becomes the error `object_store` callers classify, with its status.
    async fn send(&self, req: reqwest::RequestBuilder, path: &str) -> Result<reqwest::Response> {
        let token = self.credentials.get_credential().await?;
        let req = match token.bearer.as_str() {
            "" => req,
            t => req.bearer_auth(t),
        };
        let resp = req.send().await.map_err(generic)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let source = format!("{STORE} answered status code: {}", status.as_u16()).into();
        let path = path.to_owned();
        Err(match status.as_u16() {
            404 => Error::NotFound { path, source },
            401 => Error::Unauthenticated { path, source },
            403 => Error::PermissionDenied { path, source },
            412 => Error::Precondition { path, source },
            _ => Error::Generic {
                store: STORE,
                source,
            },
        })
    }

    async fn page(&self, prefix: &str, delimiter: bool, token: Option<&str>) -> Result<Page> {
        let mut url = format!(
            "{}/storage/v1/b/{}/o?prefix={}",
            self.base,
            enc(&self.bucket),
            enc(prefix)
        );
        if delimiter {
            url.push_str("&delimiter=%2F");
        }
        if let Some(t) = token {
            url.push_str(&format!("&pageToken={}", enc(t)));
        }
        let resp = self.send(self.http.get(&url), prefix).await?;
        let body = resp.bytes().await.map_err(generic)?;
        serde_json::from_slice(&body).map_err(generic)
    }
}

/// `prefix` as a listing prefix: the folder's path and a trailing `/`.
fn folder(prefix: Option<&Path>) -> String {
    match prefix.map(|p| p.as_ref()) {
        None | Some("") => String::new(),
        Some(p) => format!("{p}/"),
    }
}

#[async_trait]
impl ObjectStore for GcsJson {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        _opts: PutOptions,
    ) -> Result<PutResult> {
        let i = &self.inner;
        let url = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType=media&name={}",
            i.base,
            enc(&i.bucket),
            enc(location.as_ref())
        );
        // Delivery's objects come as one chunk: sent as they are, without a copy.
        let body = match payload.as_ref() {
            [one] => one.clone(),
            parts => Bytes::from(parts.concat()),
        };
        let req = i
            .http
            .post(&url)
            .header("content-type", "application/octet-stream")
            .body(body);
        let resp = i.send(req, location.as_ref()).await?;
        let text = resp.bytes().await.map_err(generic)?;
        let item: Option<Item> = serde_json::from_slice(&text).ok();
        Ok(PutResult {
            e_tag: item.as_ref().and_then(|x| x.etag.clone()),
            version: item.and_then(|x| x.generation),
        })
    }

    async fn put_multipart_opts(
        &self,
        _location: &Path,
        _opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        Err(Error::NotImplemented {
            operation: "put_multipart (objects go up whole)".into(),
            implementer: STORE.into(),
        })
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let i = &self.inner;
        let path = location.as_ref();
        let meta_resp = i.send(i.http.get(i.object_url(location)), path).await?;
        let meta_body = meta_resp.bytes().await.map_err(generic)?;
        let item: Item = serde_json::from_slice(&meta_body).map_err(generic)?;
        let meta = item.meta();
        if options.head {
            return Ok(GetResult {
                payload: GetResultPayload::Stream(stream::empty().boxed()),
                range: 0..meta.size,
                meta,
                attributes: Attributes::new(),
            });
        }
        let url = format!("{}?alt=media", i.object_url(location));
        let resp = i.send(i.http.get(&url), path).await?;
        let bytes = resp.bytes().await.map_err(generic)?;
        let len = bytes.len() as u64;
        Ok(GetResult {
            payload: GetResultPayload::Stream(stream::once(async move { Ok(bytes) }).boxed()),
            range: 0..len,
            meta: ObjectMeta { size: len, ..meta },
            attributes: Attributes::new(),
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let me = self.clone();
        locations
            .then(move |p| {
                let me = me.clone();
                async move {
                    let p = p?;
                    let i = &me.inner;
                    i.send(i.http.delete(i.object_url(&p)), p.as_ref()).await?;
                    Ok(p)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let me = self.clone();
        let prefix = folder(prefix);
        // (next page token, done)
        stream::try_unfold((None::<String>, false), move |(token, done)| {
            let me = me.clone();
            let prefix = prefix.clone();
            async move {
                if done {
                    return Ok::<_, Error>(None);
                }
                let page = me.inner.page(&prefix, false, token.as_deref()).await?;
                let metas: Vec<Result<ObjectMeta>> =
                    page.items.into_iter().map(|x| Ok(x.meta())).collect();
                let finished = page.next.is_none();
                Ok(Some((stream::iter(metas), (page.next, finished))))
            }
        })
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let prefix = folder(prefix);
        let mut out = ListResult {
            common_prefixes: Vec::new(),
            objects: Vec::new(),
        };
        let mut token: Option<String> = None;
        loop {
            let page = self.inner.page(&prefix, true, token.as_deref()).await?;
            out.objects.extend(page.items.into_iter().map(Item::meta));
            out.common_prefixes.extend(
                page.prefixes
                    .iter()
                    .map(|p| Path::from(p.trim_end_matches('/'))),
            );
            match page.next {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    async fn copy_opts(&self, _from: &Path, _to: &Path, _options: CopyOptions) -> Result<()> {
        Err(message("copy is not used by auditrail".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_encoded_whole() {
        assert_eq!(
            enc("logs/org=acme/dt=2026-12-06/a b+c.ndjson.gz"),
            "logs%2Forg%3Dacme%2Fdt%3D2026-12-06%2Fa%20b%2Bc.ndjson.gz"
        );
        assert_eq!(folder(None), "");
        assert_eq!(folder(Some(&Path::from("logs/org=acme"))), "logs/org=acme/");
    }
}
