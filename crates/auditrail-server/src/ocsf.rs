//! The OCSF mapper of an org: the activities its catalog declares per action.

use auditrail_core::ocsf::Mapper;

use crate::App;

/// The mapper for `org`'s events, naming this build as the product that wrote them.
pub async fn mapper(app: &App, org: &str) -> Result<Mapper, String> {
    let policy = app
        .policies
        .get(app, org)
        .await
        .map_err(|e| format!("reading the org's catalog: {e}"))?;
    let declared = match &policy.catalog {
        Some((c, _)) => c.activities(),
        None => Default::default(),
    };
    Ok(Mapper::new(declared, env!("CARGO_PKG_VERSION")))
}
