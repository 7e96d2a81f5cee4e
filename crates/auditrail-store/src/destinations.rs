//! Destinations: where an org's log is delivered continuously, and how far delivery got.

/// One destination of one org, with its delivery state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub org: String,
    pub name: String,
    /// The configuration as JSON text, secrets excluded.
    pub config: String,
    /// Credentials sealed with the server's secret key; `None` when the destination
    /// takes credentials from the server's environment.
    pub sealed_credentials: Option<String>,
    pub paused: bool,
    /// Every seq up to this one is delivered.
    pub delivered_seq: u64,
    /// The batch recorded before its upload and not yet confirmed: `(first, last)`.
    pub pending: Option<(u64, u64)>,
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
    /// When the current run of failures began.
    pub failing_since_ms: Option<i64>,
    pub last_delivery_ms: Option<i64>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// A change to a destination's delivery state; see [`crate::Store::update_delivery`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryUpdate {
    Pause(bool),
    /// Records the batch `(first, last)` before its upload. Applies only when `first`
    /// follows `delivered_seq` and no other batch is pending.
    Begin {
        first: u64,
        last: u64,
    },
    /// The pending batch ending at `last` is stored whole: advance `delivered_seq`.
    Delivered {
        last: u64,
        at_ms: i64,
    },
    Failed {
        error: String,
        at_ms: i64,
    },
}
