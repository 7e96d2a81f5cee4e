//! Reading orgs, keys and catalogs out of PostgreSQL rows.

use tokio_postgres::Row;

use crate::{KeyRecord, Org, Role, StoredCatalog};

pub(super) fn org_row(r: &Row) -> Org {
    Org {
        id: r.get(0),
        name: r.get(1),
        strict: r.get(2),
        retention_days: r.get::<_, Option<i32>>(3).map(|d| d.max(0) as u32),
        catalog: r.get(4),
        catalog_version: r.get::<_, Option<i32>>(5).map(|v| v.max(0) as u32),
        created_at: r.get(6),
    }
}

pub(super) fn catalog_row(r: &Row) -> StoredCatalog {
    StoredCatalog {
        version: r.get::<_, i32>(0).max(0) as u32,
        name: r.get(1),
        document: r.get(2),
        created_at: r.get(3),
    }
}

pub(super) fn key_row(r: &Row) -> KeyRecord {
    let role: &str = r.get(3);
    let hash: &[u8] = r.get(4);
    KeyRecord {
        id: r.get(0),
        org: r.get(1),
        name: r.get(2),
        role: Role::parse(role).unwrap_or(Role::Ingest),
        // A malformed hash matches no token.
        secret_hash: hash.try_into().unwrap_or([0; 32]),
        created_at: r.get(5),
        revoked_at: r.get(6),
    }
}
