//! Exports in the running service: settings, signed download links, the background
//! worker (`worker.rs`) and what tells people a file is ready (`notify.rs`).

pub mod notify;
pub mod worker;

use std::path::PathBuf;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::sync::{Notify, OnceCell};

use auditrail_service::sealed::{KeyText, random_key};

use crate::App;
use crate::error::ApiError;

/// How exports run and how long their files live.
#[derive(Debug, Clone)]
pub struct ExportSettings {
    /// Where files are written (`<data dir>/exports` by default).
    pub dir: PathBuf,
    /// How long a finished file stays downloadable.
    pub ttl: Duration,
    /// The widest `from`..`to` a request may span.
    pub max_range: Duration,
    /// Exports run at the same time on this node.
    pub workers: usize,
    /// Where the completion email goes out, if anywhere.
    pub smtp: Option<notify::SmtpSettings>,
}

impl ExportSettings {
    pub fn in_dir(dir: PathBuf) -> Self {
        Self {
            dir,
            ttl: Duration::from_secs(30 * 86_400),
            max_range: Duration::from_secs(366 * 86_400),
            workers: 2,
            smtp: None,
        }
    }
}

/// Per-process export state.
#[derive(Default)]
pub struct Exports {
    /// Wakes the worker when a job is queued.
    pub wake: Notify,
    link_key: OnceCell<[u8; 32]>,
}

/// Signs a checkpoint of `org`'s tree as it is now: the point an export is cut at.
/// Returns the tree size and the signed note.
pub async fn cut(app: &App, org: &str) -> Result<(u64, String), ApiError> {
    let head = app.store.tree_head(org).await?;
    let note = crate::checkpoint_signer::sign(app, org, head).await?;
    Ok((head.size, note))
}

pub use auditrail_service::clock::now_ms;

const LINK_KEY_SETTING: &str = "export_link_key";

/// The key download links are signed with: 32 random bytes made once per database, so
/// links stay valid across restarts and nodes.
async fn link_key(app: &App) -> Result<[u8; 32], ApiError> {
    app.exports
        .link_key
        .get_or_try_init(|| random_key(app, LINK_KEY_SETTING, KeyText::Hex))
        .await
        .copied()
        .map_err(ApiError::from)
}

fn link_mac(key: &[u8; 32], org: &str, id: &str, expires: i64) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("auditrail-export-link\n{org}\n{id}\n{expires}").as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// A link anyone holding it can download `id` with, until `expires` (Unix seconds).
pub async fn signed_link(app: &App, org: &str, id: &str, expires: i64) -> Result<String, ApiError> {
    let key = link_key(app).await?;
    let sig = hex::encode(link_mac(&key, org, id, expires));
    let base = app.settings.public_url.trim_end_matches('/');
    Ok(format!(
        "{base}/v1/exports/{id}/download?org={}&expires={expires}&sig={sig}",
        urlencode(org)
    ))
}

/// Whether `sig` signs (`org`, `id`, `expires`); compared in constant time.
pub async fn check_link(
    app: &App,
    org: &str,
    id: &str,
    expires: i64,
    sig: &str,
) -> Result<bool, ApiError> {
    let key = link_key(app).await?;
    let Ok(given) = hex::decode(sig) else {
        return Ok(false);
    };
    Ok(link_mac(&key, org, id, expires).ct_eq(&given).into())
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_bind_org_id_and_expiry() {
        let k = [1u8; 32];
        let m = link_mac(&k, "acme", "exp_1", 100);
        assert_ne!(m, link_mac(&k, "acme", "exp_2", 100));
        assert_ne!(m, link_mac(&k, "globex", "exp_1", 100));
        assert_ne!(m, link_mac(&k, "acme", "exp_1", 101));
        assert_ne!(m, link_mac(&[2u8; 32], "acme", "exp_1", 100));
        assert_eq!(urlencode("a b/c"), "a%20b%2Fc");
    }
}
