//! Each org's ingest policy (strictness, current catalog version, HMAC key), loaded from
//! the store on first use and kept until the org's catalog changes on this node.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use auditrail_core::catalog::{Catalog, Policy};

use crate::App;
use crate::error::{ApiError, ApiResult};

/// What ingest needs to know about one org.
pub struct OrgPolicy {
    pub strict: bool,
    /// The current catalog and its version.
    pub catalog: Option<(Arc<Catalog>, u32)>,
    /// Key for `hmac` redaction and `POST /v1/hmac`.
    pub hmac_key: [u8; 32],
}

impl OrgPolicy {
    /// The catalog check to apply to this org's events, if it has a catalog.
    pub fn policy(&self) -> Option<Policy<'_>> {
        self.catalog.as_ref().map(|(c, v)| Policy {
            catalog: c,
            version: *v,
            strict: self.strict,
            hmac_key: &self.hmac_key,
        })
    }
}

#[derive(Default)]
pub struct Policies {
    map: RwLock<HashMap<String, Arc<OrgPolicy>>>,
}

fn hmac_setting(org: &str) -> String {
    format!("org/{org}/hmac_key")
}

impl Policies {
    pub async fn get(&self, app: &App, org: &str) -> ApiResult<Arc<OrgPolicy>> {
        if let Some(p) = self.map.read().ok().and_then(|m| m.get(org).cloned()) {
            return Ok(p);
        }
        let p = Arc::new(load(app, org).await?);
        if let Ok(mut m) = self.map.write() {
            m.insert(org.to_owned(), p.clone());
        }
        Ok(p)
    }

    /// Forgets an org's policy so the next event loads its new catalog.
    pub fn evict(&self, org: &str) {
        if let Ok(mut m) = self.map.write() {
            m.remove(org);
        }
    }
}

async fn load(app: &App, org: &str) -> ApiResult<OrgPolicy> {
    let o = app
        .store
        .get_org(org)
        .await?
        .ok_or_else(|| ApiError::not_found("org"))?;
    let catalog = match app.store.get_catalog(org, None).await? {
        None => None,
        Some(stored) => {
            let doc: serde_json::Value = serde_json::from_str(&stored.document).map_err(|e| {
                ApiError::internal(format!("stored catalog of org {org} is not JSON: {e}"))
            })?;
            let c = Catalog::from_json(&doc).map_err(|e| {
                ApiError::internal(format!(
                    "stored catalog v{} of org {org} is invalid: {e}",
                    stored.version
                ))
            })?;
            Some((Arc::new(c), stored.version))
        }
    };
    Ok(OrgPolicy {
        strict: o.strict,
        catalog,
        hmac_key: hmac_key(app, org).await?,
    })
}

/// The org's HMAC key: 32 random bytes made on first use and kept in the store, sealed.
async fn hmac_key(app: &App, org: &str) -> ApiResult<[u8; 32]> {
    let name = hmac_setting(org);
    let text = match crate::sealed::get(app, &name).await? {
        Some(t) => t,
        None => {
            let mut k = [0u8; 32];
            getrandom::fill(&mut k)
                .map_err(|e| ApiError::internal(format!("no OS randomness: {e}")))?;
            crate::sealed::init(app, &name, &hex::encode(k)).await?
        }
    };
    hex::decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| ApiError::internal(format!("HMAC key of org {org} is malformed")))
}
