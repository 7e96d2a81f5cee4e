//! The bound on a node's write queue, shared by both backends: events wait for a place
//! before they are handed to a writer, so overload answers `Overloaded` instead of
//! growing memory.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{Result, StoreError};

/// Events that may wait in the write queue at once.
pub(crate) const MAX_QUEUED_EVENTS: usize = 200_000;

pub(crate) struct WriteQueue(Arc<Semaphore>);

impl WriteQueue {
    pub(crate) fn new() -> Self {
        Self(Arc::new(Semaphore::new(MAX_QUEUED_EVENTS)))
    }

    /// A place for `events` events, held until they are committed: waited for when
    /// `wait`, else `Overloaded` at once if the queue is full.
    pub(crate) async fn admit(&self, events: usize, wait: bool) -> Result<OwnedSemaphorePermit> {
        let n = u32::try_from(events.min(MAX_QUEUED_EVENTS)).unwrap_or(u32::MAX);
        if wait {
            self.0
                .clone()
                .acquire_many_owned(n)
                .await
                .map_err(|_| StoreError::Unavailable("closed".into()))
        } else {
            self.0
                .clone()
                .try_acquire_many_owned(n)
                .map_err(|_| StoreError::Overloaded)
        }
    }
}
