//! Each org's ingest policy (strictness, current catalog version, HMAC key), loaded from
//! the store on first use and kept until the org's catalog changes on this node.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use auditrail_core::catalog::{Catalog, Policy};

use crate::sealed::{KeyText, random_key};
use crate::{Service, ServiceError, ServiceResult};

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

/// The setting of the org's HMAC key: 32 random bytes made on first use, kept sealed.
fn hmac_setting(org: &str) -> String {
    format!("org/{org}/hmac_key")
}

impl Policies {
    pub async fn get(&self, svc: &Service, org: &str) -> ServiceResult<Arc<OrgPolicy>> {
        if let Some(p) = self.map.read().ok().and_then(|m| m.get(org).cloned()) {
            return Ok(p);
        }
        let p = Arc::new(load(svc, org).await?);
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

async fn load(svc: &Service, org: &str) -> ServiceResult<OrgPolicy> {
    let o = svc
        .store
        .get_org(org)
        .await?
        .ok_or(ServiceError::NotFound("org"))?;
    let catalog = match svc.store.get_catalog(org, None).await? {
        None => None,
        Some(stored) => {
            let doc: serde_json::Value = serde_json::from_str(&stored.document).map_err(|e| {
                ServiceError::Internal(format!("stored catalog of org {org} is not JSON: {e}"))
            })?;
            let c = Catalog::from_json(&doc).map_err(|e| {
                ServiceError::Internal(format!(
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
        hmac_key: random_key(svc, &hmac_setting(org), KeyText::Hex).await?,
    })
}
