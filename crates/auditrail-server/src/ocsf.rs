//! The OCSF mapper of an org: the activities its catalog declares per action.

use auditrail_core::ocsf::Mapper;

use crate::App;

/// The mapper for `org`'s events when `wanted` (the output is OCSF), naming this build as
/// the product that wrote them; `None` otherwise, without reading the org's catalog.
pub async fn mapper(app: &App, org: &str, wanted: bool) -> Result<Option<Mapper>, String> {
    if !wanted {
        return Ok(None);
    }
    let policy = app
        .policies
        .get(app, org)
        .await
        .map_err(|e| format!("reading the org's catalog: {e}"))?;
    let declared = match &policy.catalog {
        Some((c, _)) => c.activities(),
        None => Default::default(),
    };
    Ok(Some(Mapper::new(declared, env!("CARGO_PKG_VERSION"))))
}
