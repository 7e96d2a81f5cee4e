//! The service's clock.

/// Milliseconds since the epoch, the unit times are stored in.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
