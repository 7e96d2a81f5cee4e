//! SQL both backends share: the columns each domain row is read from, in the order the
//! backends' row readers expect them.

pub(crate) const ORG_COLS: &str = "id, name, strict, retention_days, \
    (SELECT name FROM catalogs c WHERE c.org_num = orgs.num ORDER BY version DESC LIMIT 1), \
    (SELECT max(version) FROM catalogs c WHERE c.org_num = orgs.num), created_at";

pub(crate) const KEY_COLS: &str =
    "k.id, o.id, k.name, k.role, k.secret_hash, k.created_at, k.revoked_at";

pub(crate) const EXPORT_COLS: &str = "e.id, o.id, e.status, e.request, e.requester, e.row_count, e.bytes, e.sha256, e.error, \
    e.checkpoint_size, e.checkpoint, e.file, e.attempts, e.created_ms, e.started_ms, e.completed_ms, e.expires_ms";
pub(crate) const EXPORT_FROM: &str = "FROM exports e JOIN orgs o ON o.num = e.org_num";

pub(crate) const DESTINATION_COLS: &str = "o.id, d.name, d.config, d.credentials, d.paused, d.delivered_seq, d.pending_first, \
    d.pending_last, d.last_error, d.last_error_ms, d.failing_since_ms, d.last_delivery_ms, d.created_ms, d.updated_ms";
pub(crate) const DESTINATION_FROM: &str = "FROM destinations d JOIN orgs o ON o.num = d.org_num";

/// Now, as the text `created_at` and `revoked_at` columns hold.
pub(crate) fn now_text() -> String {
    auditrail_core::time::format_millis(chrono::Utc::now().timestamp_millis())
}
