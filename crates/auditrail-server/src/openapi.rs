//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::routes::{
    catalog, destinations, events, exports, integrity, orgs, tail, tiles, viewer, witnesses,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "auditrail", description = "Durable, ordered, tamper-evident audit logs."),
    paths(
        orgs::create_org, orgs::create_key, orgs::list_keys, orgs::revoke_key, viewer::create,
        catalog::put_catalog, catalog::get_catalog, catalog::hmac,
        events::ingest, events::search, tail::stream,
        exports::create, exports::list, exports::get, exports::download, exports::checkpoint, exports::proof,
        exports::put_webhook, exports::delete_webhook,
        destinations::put, destinations::put_for_org, destinations::list, destinations::get, destinations::delete,
        destinations::pause, destinations::resume, destinations::test, destinations::bucket_policy,
        integrity::latest_checkpoint, integrity::public_key, integrity::inclusion, integrity::consistency,
        witnesses::put, witnesses::list, witnesses::get, witnesses::delete,
        witnesses::put_admin_emails, witnesses::get_admin_emails,
        tiles::checkpoint, tiles::tile,
    ),
    components(schemas(orgs::CreateOrg, orgs::CreateKey)),
    modifiers(&Bearer),
    security(("bearer" = []))
)]
struct Doc;

struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(c) = openapi.components.as_mut() {
            c.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

pub fn document() -> String {
    Doc::openapi().to_json().unwrap_or_else(|_| "{}".into())
}
