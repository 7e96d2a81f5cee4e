//! Who is acting: a header set by a trusted proxy in front of the gateway, or a claim of
//! a JWT (`Authorization: Bearer`) whose signature the gateway verifies (HS256 with a
//! shared secret, RS256 or ES256 with a public key).

use http::HeaderMap;
use http::header::{AUTHORIZATION, HeaderName};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde_json::{Map, Value, json};

use auditrail_core::event::MAX_ID_LEN;

pub enum ActorSource {
    /// No actor is recorded.
    None,
    /// The header's value is the actor id.
    Header(HeaderName),
    /// The claim of a verified JWT is the actor id (`email` and `name` claims, when
    /// present, fill the actor's email and name).
    Jwt(Box<Jwt>),
}

pub struct Jwt {
    claim: String,
    key: DecodingKey,
    validation: Validation,
}

#[derive(Debug, thiserror::Error)]
pub enum ActorError {
    #[error("cannot read the JWT key: {0}")]
    Key(String),
}

impl ActorSource {
    /// HS256 with a shared secret (the file's bytes, trailing newline removed).
    pub fn jwt_secret(claim: &str, secret: &[u8]) -> Self {
        let secret = secret.strip_suffix(b"\n").unwrap_or(secret);
        Self::jwt(claim, DecodingKey::from_secret(secret), Algorithm::HS256)
    }

    /// RS256 or ES256 with a PEM public key.
    pub fn jwt_public_key(claim: &str, pem: &[u8]) -> Result<Self, ActorError> {
        if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
            return Ok(Self::jwt(claim, k, Algorithm::RS256));
        }
        DecodingKey::from_ec_pem(pem)
            .map(|k| Self::jwt(claim, k, Algorithm::ES256))
            .map_err(|e| {
                ActorError::Key(format!("not an RSA or EC (P-256) public key in PEM: {e}"))
            })
    }

    fn jwt(claim: &str, key: DecodingKey, alg: Algorithm) -> Self {
        let mut validation = Validation::new(alg);
        // The host product's tokens are meant for it, whatever audience they name.
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        validation.validate_nbf = true;
        ActorSource::Jwt(Box::new(Jwt {
            claim: claim.to_owned(),
            key,
            validation,
        }))
    }

    /// The actor of a request: `Ok(None)` when it names none, `Err(reason)` when what it
    /// presents cannot be trusted (a bad signature, an expired token, a bad header).
    pub fn actor(&self, headers: &HeaderMap) -> Result<Option<Value>, String> {
        match self {
            ActorSource::None => Ok(None),
            ActorSource::Header(h) => {
                let Some(v) = headers.get(h) else {
                    return Ok(None);
                };
                let id = v
                    .to_str()
                    .map_err(|_| format!("header {h} is not text"))?
                    .trim();
                if id.is_empty() {
                    return Ok(None);
                }
                check_id(id)?;
                Ok(Some(json!({"id": id, "type": "USER"})))
            }
            ActorSource::Jwt(jwt) => {
                let Jwt {
                    claim,
                    key,
                    validation,
                } = jwt.as_ref();
                let Some(v) = headers.get(AUTHORIZATION) else {
                    return Ok(None);
                };
                let token = v
                    .to_str()
                    .ok()
                    .and_then(|s| {
                        s.strip_prefix("Bearer ")
                            .or_else(|| s.strip_prefix("bearer "))
                    })
                    .ok_or("the Authorization header is not a Bearer token")?
                    .trim();
                let data = decode::<Map<String, Value>>(token, key, validation)
                    .map_err(|e| format!("the JWT is not valid: {e}"))?;
                let id = match data.claims.get(claim) {
                    Some(Value::String(s)) if !s.is_empty() => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    _ => return Err(format!("the JWT has no `{claim}` claim")),
                };
                check_id(&id)?;
                let mut actor = json!({"id": id, "type": "USER"});
                for field in ["email", "name"] {
                    if let Some(Value::String(s)) = data.claims.get(field)
                        && !s.is_empty()
                        && s.chars().count() <= auditrail_core::event::MAX_TEXT_LEN
                    {
                        actor[field] = Value::String(s.clone());
                    }
                }
                Ok(Some(actor))
            }
        }
    }
}

fn check_id(id: &str) -> Result<(), String> {
    if id.chars().count() > MAX_ID_LEN || id.chars().any(char::is_control) {
        return Err(format!(
            "the actor id must be at most {MAX_ID_LEN} characters without control characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    fn bearer(t: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, format!("Bearer {t}").parse().unwrap());
        h
    }

    #[test]
    fn hs256_tokens_are_verified() {
        let src = ActorSource::jwt_secret("sub", b"s3cret\n");
        let now = chrono::Utc::now().timestamp();
        let good = encode(
            &Header::default(),
            &json!({"sub": "u-42", "email": "ann@example.com", "exp": now + 60}),
            &EncodingKey::from_secret(b"s3cret"),
        )
        .unwrap();
        assert_eq!(
            src.actor(&bearer(&good)).unwrap(),
            Some(json!({"id": "u-42", "type": "USER", "email": "ann@example.com"}))
        );
        let forged = encode(
            &Header::default(),
            &json!({"sub": "u-1"}),
            &EncodingKey::from_secret(b"other"),
        )
        .unwrap();
        assert!(src.actor(&bearer(&forged)).is_err());
        let expired = encode(
            &Header::default(),
            &json!({"sub": "u-1", "exp": now - 3600}),
            &EncodingKey::from_secret(b"s3cret"),
        )
        .unwrap();
        assert!(src.actor(&bearer(&expired)).is_err());
        let no_claim = encode(
            &Header::default(),
            &json!({"uid": "u-1"}),
            &EncodingKey::from_secret(b"s3cret"),
        )
        .unwrap();
        assert!(src.actor(&bearer(&no_claim)).is_err());
        assert!(src.actor(&bearer("not-a-jwt")).is_err());
        assert_eq!(src.actor(&HeaderMap::new()).unwrap(), None);
    }

    #[test]
    fn trusted_header() {
        let src = ActorSource::Header(HeaderName::from_static("x-user-id"));
        let mut h = HeaderMap::new();
        assert_eq!(src.actor(&h).unwrap(), None);
        h.insert("x-user-id", "u-7".parse().unwrap());
        assert_eq!(
            src.actor(&h).unwrap(),
            Some(json!({"id": "u-7", "type": "USER"}))
        );
        h.insert("x-user-id", "x".repeat(300).parse().unwrap());
        assert!(src.actor(&h).is_err());
    }
}
