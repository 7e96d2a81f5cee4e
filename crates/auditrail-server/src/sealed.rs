//! Secrets kept among the store's settings (each org's HMAC key, the export link key,
//! export webhook secrets) are sealed with the server's secret key, so the database never
//! holds them in clear: with PostgreSQL the database is shared, backed up and often run
//! by other people. The setting's name is the associated data, so a sealed value cannot
//! be moved under another name. A value an earlier version stored in clear is read once
//! and sealed in place.

use crate::App;
use crate::error::{ApiError, ApiResult};

const SEALED_PREFIX: &str = "v1:";

fn context(name: &str) -> String {
    format!("setting/{name}")
}

fn seal(app: &App, name: &str, value: &str) -> ApiResult<String> {
    app.delivery
        .secrets()
        .seal(value.as_bytes(), &context(name))
        .map_err(|e| ApiError::internal(format!("cannot seal setting {name}: {e}")))
}

async fn open(app: &App, name: &str, stored: String) -> ApiResult<String> {
    if !stored.starts_with(SEALED_PREFIX) {
        let sealed = seal(app, name, &stored)?;
        app.store.put_setting(name, Some(&sealed)).await?;
        return Ok(stored);
    }
    let clear = app
        .delivery
        .secrets()
        .open(&stored, &context(name))
        .map_err(|e| {
            ApiError::internal(format!(
                "setting {name} cannot be opened with this server's secret key ({e}); every node needs the same secret_key_file"
            ))
        })?;
    String::from_utf8(clear)
        .map_err(|_| ApiError::internal(format!("setting {name} is not text once opened")))
}

/// The secret stored under `name`, if any.
pub(crate) async fn get(app: &App, name: &str) -> ApiResult<Option<String>> {
    match app.store.get_setting(name).await? {
        Some(stored) => open(app, name, stored).await.map(Some),
        None => Ok(None),
    }
}

/// The secret in force under `name`, storing `fresh` first if there is none (several
/// nodes may race; all of them get the one that was stored first).
pub(crate) async fn init(app: &App, name: &str, fresh: &str) -> ApiResult<String> {
    let sealed = seal(app, name, fresh)?;
    let stored = app.store.init_setting(name, &sealed).await?;
    open(app, name, stored).await
}

/// Stores `value` sealed under `name`.
pub(crate) async fn put(app: &App, name: &str, value: &str) -> ApiResult<()> {
    let sealed = seal(app, name, value)?;
    app.store.put_setting(name, Some(&sealed)).await?;
    Ok(())
}
