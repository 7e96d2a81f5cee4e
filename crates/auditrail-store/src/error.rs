use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("{what} not found")]
    NotFound { what: &'static str },
    #[error("{0}")]
    Conflict(String),
    #[error("the write queue is full; retry shortly")]
    Overloaded,
    /// A batch queued behind another (`Store::enqueue_after`) that was not stored:
    /// nothing of this one was stored either.
    #[error("{0}")]
    OutOfOrder(String),
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("data directory {path} is in use by another auditrail process (lock file {lock})")]
    Locked { path: PathBuf, lock: PathBuf },
    #[error("{operation} failed: {source}")]
    Sqlite {
        operation: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{operation} failed: {source}")]
    Postgres {
        operation: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// A batch queued behind one that was not stored (`Store::enqueue_after`).
    pub(crate) fn out_of_order() -> Self {
        StoreError::OutOfOrder(
            "the batch before this one was not stored; nothing of this one was".into(),
        )
    }
}

pub(crate) trait Context<T> {
    fn op(self, operation: &'static str) -> Result<T, StoreError>;
}

impl<T> Context<T> for Result<T, rusqlite::Error> {
    fn op(self, operation: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Sqlite { operation, source })
    }
}

pub(crate) trait Pg<T> {
    fn pg(self, operation: &'static str) -> Result<T, StoreError>;
}

impl<T> Pg<T> for Result<T, tokio_postgres::Error> {
    /// A lost or refused connection is `Unavailable` (503, retry); anything the server
    /// answered with is an error of the statement.
    fn pg(self, operation: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| {
            let transient = match source.code() {
                None => {
                    source.is_closed()
                        || std::error::Error::source(&source)
                            .is_some_and(|s| s.is::<std::io::Error>())
                }
                Some(c) => {
                    let c = c.code();
                    c.starts_with("08") || c == "57P01" || c == "57P02" || c == "57P03"
                }
            };
            if transient {
                StoreError::Unavailable(format!("database: {operation}: {source}"))
            } else {
                StoreError::Postgres { operation, source }
            }
        })
    }
}
