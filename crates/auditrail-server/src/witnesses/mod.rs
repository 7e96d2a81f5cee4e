//! The witnesses an org trusts to cosign its checkpoints (C2SP tlog-witness): their
//! configuration, what each last cosigned, and the alarm raised when one refuses a
//! checkpoint as inconsistent with what it saw before.

pub(crate) mod alarm;
pub(crate) mod client;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::App;
use crate::error::{ApiError, ApiResult};

/// One witness, as an org admin configured it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessConfig {
    /// The witness's submission prefix: `add-checkpoint` is POSTed to `{url}/add-checkpoint`.
    pub url: String,
    /// Its Ed25519 cosignature/v1 verifier key (`name+id+base64(0x04 ‖ key)`).
    pub verifier_key: String,
    pub created_at: String,
}

/// A witness's refusal of a checkpoint as inconsistent: a fork or a rollback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    pub at: String,
    /// The size of the checkpoint the witness refused.
    pub checkpoint_size: u64,
    /// The HTTP status it answered (409 with a larger size: rollback; 422: fork).
    pub status: u16,
    pub detail: String,
}

/// What auditrail knows of one witness.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessState {
    /// The size the witness last cosigned for this org (0: never).
    pub size: u64,
    pub cosigned_at: Option<String>,
    pub last_attempt_at: Option<String>,
    /// Why the last attempt got no cosignature, when it did not.
    pub last_error: Option<String>,
    /// Set when the witness refused a checkpoint as inconsistent; kept until an admin
    /// configures the witness anew.
    pub conflict: Option<Conflict>,
}

fn config_key(org: &str) -> String {
    format!("org/{org}/witnesses")
}

fn state_key(org: &str) -> String {
    format!("org/{org}/witness_state")
}

fn emails_key(org: &str) -> String {
    format!("org/{org}/admin_emails")
}

async fn load<T: serde::de::DeserializeOwned + Default>(app: &App, key: &str) -> ApiResult<T> {
    match app.store.get_setting(key).await? {
        None => Ok(T::default()),
        Some(text) => serde_json::from_str(&text)
            .map_err(|e| ApiError::internal(format!("setting {key} is malformed: {e}"))),
    }
}

async fn save<T: Serialize>(app: &App, key: &str, value: &T, empty: bool) -> ApiResult<()> {
    if empty {
        app.store.put_setting(key, None).await?;
        return Ok(());
    }
    let text = serde_json::to_string(value).map_err(ApiError::internal)?;
    app.store.put_setting(key, Some(&text)).await?;
    Ok(())
}

pub async fn configs(app: &App, org: &str) -> ApiResult<BTreeMap<String, WitnessConfig>> {
    load(app, &config_key(org)).await
}

pub async fn save_configs(
    app: &App,
    org: &str,
    all: &BTreeMap<String, WitnessConfig>,
) -> ApiResult<()> {
    save(app, &config_key(org), all, all.is_empty()).await
}

pub async fn states(app: &App, org: &str) -> ApiResult<BTreeMap<String, WitnessState>> {
    load(app, &state_key(org)).await
}

pub async fn save_states(
    app: &App,
    org: &str,
    all: &BTreeMap<String, WitnessState>,
) -> ApiResult<()> {
    save(app, &state_key(org), all, all.is_empty()).await
}

/// The addresses alarms about the org's log are emailed to.
pub async fn admin_emails(app: &App, org: &str) -> ApiResult<Vec<String>> {
    load(app, &emails_key(org)).await
}

pub async fn save_admin_emails(app: &App, org: &str, emails: &[String]) -> ApiResult<()> {
    save(app, &emails_key(org), &emails, emails.is_empty()).await
}
