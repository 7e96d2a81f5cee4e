//! The service's errors. The HTTP layer maps them to statuses in one place
//! (`auditrail-server`'s `error.rs`); the gateway and the CLI read them as they are.

use auditrail_store::StoreError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Events that fail validation; nothing was stored. `details` name each event's
    /// index and field.
    #[error("{message}")]
    InvalidEvent {
        message: String,
        details: Vec<serde_json::Value>,
    },
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A fault on auditrail's side (a stored value unreadable, a key that does not open).
    #[error("{0}")]
    Internal(String),
}

impl ServiceError {
    /// Worth retrying: the store is busy or unreachable.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            ServiceError::Store(StoreError::Overloaded | StoreError::Unavailable(_))
        )
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;
