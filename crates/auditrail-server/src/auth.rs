//! Bearer tokens and roles.
//!
//! Org API keys look like `ark_<key id>_<secret>`: the id finds the record, and the
//! SHA-256 of the secret is compared in constant time with the stored hash (secrets are
//! 256 random bits, so a fast hash is enough; nothing reversible is stored). The
//! platform admin token is compared the same way against its hash.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use auditrail_store::{KeyRecord, Role};

use crate::App;
use crate::error::ApiError;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    PlatformAdmin,
    Key {
        org: String,
        role: Role,
        key_id: String,
    },
    /// A signed-in user of the host product on the Audit page (through a viewer link).
    /// `scope_id` narrows what the user sees to one scope.
    User {
        org: String,
        role: Role,
        id: String,
        email: Option<String>,
        name: Option<String>,
        scope_id: Option<String>,
    },
}

impl Principal {
    /// The org this caller acts in, if it has one of `roles` there; 403 otherwise.
    pub fn org_with(&self, roles: &[Role]) -> Result<&str, ApiError> {
        match self {
            Principal::Key { org, role, .. } | Principal::User { org, role, .. }
                if roles.contains(role) =>
            {
                Ok(org)
            }
            Principal::Key { role, .. } | Principal::User { role, .. } => {
                Err(ApiError::forbidden(format!(
                    "this requires role {}; you have role {}",
                    roles
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(" or "),
                    role.as_str()
                )))
            }
            Principal::PlatformAdmin => Err(ApiError::forbidden(
                "the platform admin token manages orgs and keys; use an org key for org data",
            )),
        }
    }

    /// Platform admin, or an org admin of `org`. Another org's admin gets 404: it must
    /// not learn whether `org` exists.
    pub fn admin_of(&self, org: &str) -> Result<(), ApiError> {
        match self {
            Principal::PlatformAdmin => Ok(()),
            Principal::Key { org: own, .. } | Principal::User { org: own, .. } if own != org => {
                Err(ApiError::not_found("org"))
            }
            Principal::Key {
                role: Role::Admin, ..
            }
            | Principal::User {
                role: Role::Admin,
                scope_id: None,
                ..
            } => Ok(()),
            Principal::Key { .. } | Principal::User { .. } => Err(ApiError::forbidden(
                "this requires role admin of the whole org",
            )),
        }
    }

    /// The actor recorded in the org's own log for what this caller does.
    pub fn actor(&self) -> serde_json::Value {
        match self {
            Principal::PlatformAdmin => {
                serde_json::json!({"id": "platform-admin", "type": "SYSTEM"})
            }
            Principal::Key { key_id, role, .. } => {
                serde_json::json!({"id": key_id, "type": "API_KEY", "role": role.as_str()})
            }
            Principal::User {
                id,
                email,
                name,
                role,
                ..
            } => {
                let mut a = serde_json::json!({"id": id, "type": "USER", "role": role.as_str()});
                if let Some(e) = email {
                    a["email"] = serde_json::json!(e);
                }
                if let Some(n) = name {
                    a["name"] = serde_json::json!(n);
                }
                a
            }
        }
    }
}

pub fn sha256(s: &[u8]) -> [u8; 32] {
    Sha256::digest(s).into()
}

fn random_token(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    auditrail_service::random::fill(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// A new platform admin token.
pub fn new_admin_token() -> String {
    format!("arp_{}", random_token(32))
}

/// A new key id and its full token.
pub fn new_key_token() -> (String, String, [u8; 32]) {
    let id = format!(
        "key_{}",
        hex::encode(auditrail_service::random::bytes::<8>())
    );
    let secret = random_token(32);
    let hash = sha256(secret.as_bytes());
    (id.clone(), format!("ark_{id}_{secret}"), hash)
}

/// Known keys, cached briefly so authentication costs no query per request. A revoke
/// on this node evicts at once; other nodes notice within `KEY_CACHE_TTL`.
#[derive(Default)]
pub struct KeyCache {
    keys: RwLock<HashMap<String, (KeyRecord, Instant)>>,
}

const KEY_CACHE_TTL: Duration = Duration::from_secs(5);

impl KeyCache {
    pub fn evict(&self, key_id: &str) {
        if let Ok(mut m) = self.keys.write() {
            m.remove(key_id);
        }
    }

    fn get(&self, key_id: &str) -> Option<KeyRecord> {
        let m = self.keys.read().ok()?;
        m.get(key_id)
            .filter(|(_, at)| at.elapsed() < KEY_CACHE_TTL)
            .map(|(k, _)| k.clone())
    }

    fn put(&self, key: KeyRecord) {
        if let Ok(mut m) = self.keys.write() {
            if m.len() > 10_000 {
                m.clear();
            }
            m.insert(key.id.clone(), (key, Instant::now()));
        }
    }
}

impl FromRequestParts<Arc<App>> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <token>"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| ApiError::unauthorized("Authorization must be `Bearer <token>`"))?;
        authenticate(app, token).await
    }
}

/// `key_<hex>_<secret>` → (`key_<hex>`, secret). The secret is base64url and may itself
/// contain `_`, so the split is at the second underscore.
fn split_key_token(rest: &str) -> Option<(&str, &str)> {
    let (at, _) = rest.match_indices('_').nth(1)?;
    Some((&rest[..at], &rest[at + 1..]))
}

/// The key id inside a full `ark_...` token.
pub fn key_id_of(token: &str) -> Option<&str> {
    split_key_token(token.strip_prefix("ark_")?).map(|(id, _)| id)
}

pub async fn authenticate(app: &App, token: &str) -> Result<Principal, ApiError> {
    let invalid = || ApiError::unauthorized("unknown or revoked token");
    if let Some(rest) = token.strip_prefix("ark_") {
        let (key_id, secret) = split_key_token(rest).ok_or_else(invalid)?;
        let key = match app.keys.get(key_id) {
            Some(k) => k,
            None => {
                let k = app.store.get_key(key_id).await?.ok_or_else(invalid)?;
                app.keys.put(k.clone());
                k
            }
        };
        let ok: bool = sha256(secret.as_bytes()).ct_eq(&key.secret_hash).into();
        if !ok || key.revoked_at.is_some() {
            return Err(invalid());
        }
        return Ok(Principal::Key {
            org: key.org,
            role: key.role,
            key_id: key.id,
        });
    }
    let ok: bool = sha256(token.as_bytes()).ct_eq(&app.admin_token_hash).into();
    if ok {
        Ok(Principal::PlatformAdmin)
    } else {
        Err(invalid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_tokens_carry_id_and_hash_of_secret() {
        let (id, token, hash) = new_key_token();
        let rest = token.strip_prefix("ark_").unwrap();
        let (tid, secret) = split_key_token(rest).unwrap();
        assert_eq!(tid, id);
        assert_eq!(key_id_of(&token), Some(id.as_str()));
        assert_eq!(sha256(secret.as_bytes()), hash);
        assert_ne!(new_key_token().1, token);
        assert_eq!(
            split_key_token("key_ab_se_cr_et"),
            Some(("key_ab", "se_cr_et"))
        );
    }

    #[test]
    fn roles_and_tenancy() {
        let viewer = Principal::Key {
            org: "a".into(),
            role: Role::Viewer,
            key_id: "k".into(),
        };
        assert_eq!(viewer.org_with(&[Role::Viewer, Role::Admin]).unwrap(), "a");
        assert_eq!(viewer.org_with(&[Role::Ingest]).unwrap_err().status, 403);
        assert_eq!(viewer.admin_of("a").unwrap_err().status, 403);
        assert_eq!(viewer.admin_of("b").unwrap_err().status, 404);
        assert!(Principal::PlatformAdmin.admin_of("b").is_ok());
        assert_eq!(
            Principal::PlatformAdmin
                .org_with(&[Role::Viewer])
                .unwrap_err()
                .status,
            403
        );
    }
}
