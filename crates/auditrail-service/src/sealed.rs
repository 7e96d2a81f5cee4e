//! Secrets kept among the store's settings (each org's HMAC key, the export link key,
//! export webhook secrets) are sealed with the server's secret key, so the database never
//! holds them in clear: with PostgreSQL the database is shared, backed up and often run
//! by other people. The setting's name is the associated data, so a sealed value cannot
//! be moved under another name. A value an earlier version stored in clear is read once
//! and sealed in place.

use base64::Engine;

use crate::{Service, ServiceError, ServiceResult};

const SEALED_PREFIX: &str = "v1:";

fn context(name: &str) -> String {
    format!("setting/{name}")
}

fn seal(svc: &Service, name: &str, value: &str) -> ServiceResult<String> {
    svc.secrets
        .seal(value.as_bytes(), &context(name))
        .map_err(|e| ServiceError::Internal(format!("cannot seal setting {name}: {e}")))
}

async fn open(svc: &Service, name: &str, stored: String) -> ServiceResult<String> {
    if !stored.starts_with(SEALED_PREFIX) {
        let sealed = seal(svc, name, &stored)?;
        svc.store.put_setting(name, Some(&sealed)).await?;
        return Ok(stored);
    }
    let clear = svc
        .secrets
        .open(&stored, &context(name))
        .map_err(|e| {
            ServiceError::Internal(format!(
                "setting {name} cannot be opened with this server's secret key ({e}); every node needs the same secret_key_file"
            ))
        })?;
    String::from_utf8(clear)
        .map_err(|_| ServiceError::Internal(format!("setting {name} is not text once opened")))
}

/// The secret stored under `name`, if any.
pub async fn get(svc: &Service, name: &str) -> ServiceResult<Option<String>> {
    match svc.store.get_setting(name).await? {
        Some(stored) => open(svc, name, stored).await.map(Some),
        None => Ok(None),
    }
}

/// The secret in force under `name`, storing `fresh` first if there is none (several
/// nodes may race; all of them get the one that was stored first).
pub async fn init(svc: &Service, name: &str, fresh: &str) -> ServiceResult<String> {
    let sealed = seal(svc, name, fresh)?;
    let stored = svc.store.init_setting(name, &sealed).await?;
    open(svc, name, stored).await
}

/// Stores `value` sealed under `name`.
pub async fn put(svc: &Service, name: &str, value: &str) -> ServiceResult<()> {
    let sealed = seal(svc, name, value)?;
    svc.store.put_setting(name, Some(&sealed)).await?;
    Ok(())
}

/// How a random key is written in its setting.
#[derive(Debug, Clone, Copy)]
pub enum KeyText {
    Hex,
    Base64,
}

/// The 32-byte key kept sealed under `name`: made at random the first time any node
/// asks, then the same for every node and across restarts.
pub async fn random_key(svc: &Service, name: &str, text: KeyText) -> ServiceResult<[u8; 32]> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let stored = match get(svc, name).await? {
        Some(t) => t,
        None => {
            let fresh = crate::random::bytes::<32>();
            let fresh = match text {
                KeyText::Hex => hex::encode(fresh),
                KeyText::Base64 => b64.encode(fresh),
            };
            init(svc, name, &fresh).await?
        }
    };
    let raw = match text {
        KeyText::Hex => hex::decode(stored.trim()).ok(),
        KeyText::Base64 => b64.decode(stored.trim()).ok(),
    };
    raw.and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| ServiceError::Internal(format!("the key stored as {name} is malformed")))
}
