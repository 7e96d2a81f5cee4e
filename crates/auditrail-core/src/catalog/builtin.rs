//! The built-in catalogs, compiled into the binary from `catalogs/` at the repository root.

use super::Catalog;

pub const BUILTIN_NAMES: [&str; 2] = ["prophecy", "apollo-studio"];

/// The TOML text of a built-in catalog.
pub fn builtin_source(name: &str) -> Option<&'static str> {
    match name {
        "prophecy" => Some(include_str!("../../../../catalogs/prophecy.toml")),
        "apollo-studio" => Some(include_str!("../../../../catalogs/apollo-studio.toml")),
        _ => None,
    }
}

/// A built-in catalog by name. The built-ins are checked by this crate's tests, so a
/// parse failure here cannot ship; it still reports `None` rather than panicking.
pub fn builtin(name: &str) -> Option<Catalog> {
    builtin_source(name).and_then(|t| Catalog::from_toml(t).ok())
}
