//! Viewer links and UI sessions: claims signed with the server's UI key (HMAC-SHA-256),
//! so any node can check them without a lookup. The purpose is part of what is signed,
//! so a session cookie is never accepted as a link, nor a link as a cookie.
//!
//! Text form: `base64url(JSON claims) "." base64url(mac)`; viewer links add `avt_` in
//! front. No I/O here.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// What a viewer link or a session says about its holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub org: String,
    /// The host product's user.
    pub actor_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_name: Option<String>,
    /// `viewer` or `admin`.
    pub role: String,
    /// When set, the holder sees only events of this scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_id: Option<String>,
    /// Seconds since the epoch after which the claims are void.
    pub exp: i64,
    /// The link's id (used once) or the session's id.
    pub id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Link,
    Session,
    Csrf,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::Link => b"auditrail viewer link v1\0",
            Purpose::Session => b"auditrail ui session v1\0",
            Purpose::Csrf => b"auditrail ui csrf v1\0",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("this is not a link or session auditrail issued")]
    Malformed,
    #[error("the signature does not match (forged, or issued by another server)")]
    BadSignature,
    #[error("it expired")]
    Expired,
}

pub const LINK_PREFIX: &str = "avt_";

fn mac(key: &[u8; 32], purpose: Purpose, payload: &[u8]) -> [u8; 32] {
    let Ok(mut m) = Hmac::<Sha256>::new_from_slice(key) else {
        unreachable!("HMAC takes keys of any length")
    };
    m.update(purpose.label());
    m.update(payload);
    m.finalize().into_bytes().into()
}

/// The signed text of `claims`.
pub fn sign(key: &[u8; 32], purpose: Purpose, claims: &Claims) -> String {
    let json = serde_json::to_vec(claims).unwrap_or_default();
    let payload = B64.encode(json);
    let sig = B64.encode(mac(key, purpose, payload.as_bytes()));
    let prefix = if purpose == Purpose::Link {
        LINK_PREFIX
    } else {
        ""
    };
    format!("{prefix}{payload}.{sig}")
}

/// The claims in `text` if it was signed with `key` for `purpose` and has not expired
/// at `now` (seconds since the epoch).
pub fn open(key: &[u8; 32], purpose: Purpose, text: &str, now: i64) -> Result<Claims, TokenError> {
    let text = if purpose == Purpose::Link {
        text.strip_prefix(LINK_PREFIX)
            .ok_or(TokenError::Malformed)?
    } else {
        text
    };
    let (payload, sig) = text.split_once('.').ok_or(TokenError::Malformed)?;
    let sig = B64.decode(sig).map_err(|_| TokenError::Malformed)?;
    let want = mac(key, purpose, payload.as_bytes());
    if !bool::from(want.as_slice().ct_eq(&sig)) {
        return Err(TokenError::BadSignature);
    }
    let json = B64.decode(payload).map_err(|_| TokenError::Malformed)?;
    let claims: Claims = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
    if claims.exp <= now {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

/// The token forms of a session carry, tied to that session.
pub fn csrf_token(key: &[u8; 32], session_id: &str) -> String {
    B64.encode(mac(key, Purpose::Csrf, session_id.as_bytes()))
}

/// Whether `given` is the CSRF token of `session_id` (constant time).
pub fn csrf_ok(key: &[u8; 32], session_id: &str, given: &str) -> bool {
    let want = csrf_token(key, session_id);
    want.len() == given.len() && bool::from(want.as_bytes().ct_eq(given.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims {
            org: "acme".into(),
            actor_id: "u-1".into(),
            actor_email: Some("ada@example.com".into()),
            actor_name: None,
            role: "viewer".into(),
            scope_id: Some("proj-a".into()),
            exp,
            id: "l1".into(),
        }
    }

    #[test]
    fn round_trip_and_expiry() {
        let k = [9u8; 32];
        let t = sign(&k, Purpose::Link, &claims(100));
        assert!(t.starts_with(LINK_PREFIX));
        assert_eq!(open(&k, Purpose::Link, &t, 99).unwrap(), claims(100));
        assert_eq!(open(&k, Purpose::Link, &t, 100), Err(TokenError::Expired));
    }

    #[test]
    fn purposes_and_keys_do_not_mix() {
        let k = [9u8; 32];
        let link = sign(&k, Purpose::Link, &claims(100));
        let session = sign(&k, Purpose::Session, &claims(100));
        assert_eq!(
            open(
                &k,
                Purpose::Session,
                link.strip_prefix(LINK_PREFIX).unwrap(),
                1
            ),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            open(&k, Purpose::Link, &format!("{LINK_PREFIX}{session}"), 1),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            open(&[8u8; 32], Purpose::Link, &link, 1),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            open(&k, Purpose::Link, "avt_nodot", 1),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn tampered_claims_are_refused() {
        let k = [9u8; 32];
        let t = sign(&k, Purpose::Session, &claims(100));
        let (_, sig) = t.split_once('.').unwrap();
        let mut admin = claims(100);
        admin.role = "admin".into();
        let forged = format!("{}.{sig}", B64.encode(serde_json::to_vec(&admin).unwrap()));
        assert_eq!(
            open(&k, Purpose::Session, &forged, 1),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn csrf_is_bound_to_the_session() {
        let k = [9u8; 32];
        let t = csrf_token(&k, "s1");
        assert!(csrf_ok(&k, "s1", &t));
        assert!(!csrf_ok(&k, "s2", &t));
        assert!(!csrf_ok(&k, "s1", ""));
    }
}
