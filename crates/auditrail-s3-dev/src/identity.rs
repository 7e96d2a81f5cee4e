//! Who may call the server: long-term access keys (each limited to some buckets or not),
//! roles that can be assumed through an STS `AssumeRole` endpoint on the same port
//! (AWS Query protocol, SigV4 with service `sts`) only with the role's `ExternalId`,
//! and the temporary credentials that issues: a session token that must accompany
//! every request, and an expiry after which they are refused.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::{Extensions, HeaderMap, Method, Uri};
use s3s::auth::{S3Auth, SecretKey};
use s3s::route::S3Route;
use s3s::{Body, S3Request, S3Response, S3Result, s3_error};

struct Key {
    secret: String,
    /// Temporary credentials carry a session token and expire.
    token: Option<String>,
    expires: Option<Instant>,
    /// `None`: every bucket.
    buckets: Option<HashSet<String>>,
}

struct Role {
    external_id: String,
    buckets: HashSet<String>,
}

/// The server's identities, shared with the test that starts it.
pub struct Identities {
    keys: Mutex<HashMap<String, Key>>,
    roles: Mutex<HashMap<String, Role>>,
    session: Mutex<Duration>,
    assumed: AtomicU64,
    refused: AtomicU64,
}

impl Default for Identities {
    fn default() -> Self {
        Self {
            keys: Mutex::default(),
            roles: Mutex::default(),
            session: Mutex::new(Duration::from_secs(3600)),
            assumed: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }
}

impl Identities {
    /// A long-term key, allowed on `buckets` (all when `None`).
    pub fn add_key(&self, access_key: &str, secret: &str, buckets: Option<&[&str]>) {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                access_key.to_owned(),
                Key {
                    secret: secret.to_owned(),
                    token: None,
                    expires: None,
                    buckets: buckets.map(|b| b.iter().map(|s| (*s).to_owned()).collect()),
                },
            );
    }

    /// A role that any signed caller may assume with exactly `external_id`; its
    /// temporary credentials reach `buckets` only.
    pub fn add_role(&self, role_arn: &str, external_id: &str, buckets: &[&str]) {
        self.roles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                role_arn.to_owned(),
                Role {
                    external_id: external_id.to_owned(),
                    buckets: buckets.iter().map(|s| (*s).to_owned()).collect(),
                },
            );
    }

    /// How long temporary credentials last (an hour unless set).
    pub fn set_session(&self, d: Duration) {
        *self.session.lock().unwrap_or_else(PoisonError::into_inner) = d;
    }

    /// Successful `AssumeRole` calls so far.
    pub fn assumed(&self) -> u64 {
        self.assumed.load(Ordering::SeqCst)
    }

    /// Refused `AssumeRole` calls so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }

    /// Checks a signed request's session token, expiry and bucket.
    pub(crate) fn admit(
        &self,
        access_key: &str,
        headers: &HeaderMap,
        bucket: &str,
    ) -> S3Result<()> {
        let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let key = keys
            .get(access_key)
            .ok_or_else(|| s3_error!(InvalidAccessKeyId))?;
        if let Some(token) = &key.token {
            let given = headers
                .get("x-amz-security-token")
                .and_then(|v| v.to_str().ok());
            if given != Some(token.as_str()) {
                return Err(s3_error!(
                    InvalidToken,
                    "the session token is missing or wrong"
                ));
            }
        }
        if key.expires.is_some_and(|e| Instant::now() >= e) {
            return Err(s3_error!(
                ExpiredToken,
                "the temporary credentials have expired"
            ));
        }
        if let Some(allowed) = &key.buckets
            && !bucket.is_empty()
            && !allowed.contains(bucket)
        {
            return Err(s3_error!(
                AccessDenied,
                "this identity may not use bucket {bucket}"
            ));
        }
        Ok(())
    }

    fn assume(&self, caller: &str, form: &HashMap<String, String>) -> S3Result<String> {
        let get = |k: &str| form.get(k).map(String::as_str);
        if get("Action") != Some("AssumeRole") {
            return Err(s3_error!(
                InvalidRequest,
                "only Action=AssumeRole is served"
            ));
        }
        let arn = get("RoleArn").ok_or_else(|| s3_error!(InvalidRequest, "RoleArn is required"))?;
        let session_name = get("RoleSessionName")
            .ok_or_else(|| s3_error!(InvalidRequest, "RoleSessionName is required"))?;
        let buckets = {
            let roles = self.roles.lock().unwrap_or_else(PoisonError::into_inner);
            let role = roles.get(arn).ok_or_else(|| {
                s3_error!(
                    AccessDenied,
                    "{caller} is not authorized to perform sts:AssumeRole"
                )
            })?;
            if get("ExternalId") != Some(role.external_id.as_str()) {
                self.refused.fetch_add(1, Ordering::SeqCst);
                return Err(s3_error!(
                    AccessDenied,
                    "{caller} is not authorized to perform sts:AssumeRole on {arn}"
                ));
            }
            role.buckets.clone()
        };
        let lifetime = *self.session.lock().unwrap_or_else(PoisonError::into_inner);
        let n = self.assumed.fetch_add(1, Ordering::SeqCst) + 1;
        let access_key = format!("ASIADEV{n:012}");
        let secret = format!("temporary-secret-{}", random_hex());
        let token = format!("session-{}", random_hex());
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                access_key.clone(),
                Key {
                    secret: secret.clone(),
                    token: Some(token.clone()),
                    expires: Some(Instant::now() + lifetime),
                    buckets: Some(buckets),
                },
            );
        let expiration = chrono::Utc::now()
            + chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::zero());
        Ok(format!(
            "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleResult>\
             <Credentials><AccessKeyId>{access_key}</AccessKeyId><SecretAccessKey>{secret}</SecretAccessKey>\
             <SessionToken>{token}</SessionToken><Expiration>{}</Expiration></Credentials>\
             <AssumedRoleUser><Arn>{arn}/{session_name}</Arn><AssumedRoleId>AROADEV:{session_name}</AssumedRoleId></AssumedRoleUser>\
             </AssumeRoleResult></AssumeRoleResponse>",
            expiration.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ))
    }
}

fn random_hex() -> String {
    let mut b = [0u8; 16];
    let _ = getrandom::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The signature check's key lookup: every key, long-term or temporary.
pub(crate) struct Auth(pub std::sync::Arc<Identities>);

#[async_trait::async_trait]
impl S3Auth for Auth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        let keys = self.0.keys.lock().unwrap_or_else(PoisonError::into_inner);
        keys.get(access_key)
            .map(|k| SecretKey::from(k.secret.as_str()))
            .ok_or_else(|| s3_error!(InvalidAccessKeyId))
    }
}

/// `POST /` with a form body: STS, signed by a long-term key.
pub(crate) struct Sts(pub std::sync::Arc<Identities>);

#[async_trait::async_trait]
impl S3Route for Sts {
    fn is_match(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        _: &mut Extensions,
    ) -> bool {
        method == Method::POST
            && uri.path() == "/"
            && headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
    }

    async fn check_access(&self, req: &mut S3Request<Body>) -> S3Result<()> {
        let creds = req
            .credentials
            .as_ref()
            .ok_or_else(|| s3_error!(AccessDenied, "Signature is required"))?;
        if req.service.as_deref() != Some("sts") {
            return Err(s3_error!(
                InvalidRequest,
                "AssumeRole is signed for service sts"
            ));
        }
        let keys = self.0.keys.lock().unwrap_or_else(PoisonError::into_inner);
        match keys.get(&creds.access_key) {
            Some(k) if k.token.is_none() => Ok(()),
            _ => Err(s3_error!(
                AccessDenied,
                "only long-term keys may assume roles here"
            )),
        }
    }

    async fn call(&self, mut req: S3Request<Body>) -> S3Result<S3Response<Body>> {
        let body = req
            .input
            .store_all_limited(16 * 1024)
            .await
            .map_err(|_| s3_error!(InvalidRequest, "unreadable body"))?;
        let form: HashMap<String, String> = url_form(&body);
        let caller = req
            .credentials
            .as_ref()
            .map(|c| c.access_key.clone())
            .unwrap_or_default();
        let xml = self.0.assume(&caller, &form)?;
        let mut resp = S3Response::new(Body::from(xml));
        resp.headers
            .insert("content-type", http::HeaderValue::from_static("text/xml"));
        Ok(resp)
    }
}

/// `a=b&c=d` with `%XX` and `+` decoded.
fn url_form(body: &[u8]) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode() {
        let f = url_form(b"Action=AssumeRole&RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fx&A=b+c");
        assert_eq!(f["RoleArn"], "arn:aws:iam::1:role/x");
        assert_eq!(f["A"], "b c");
    }
}
