//! Ordered batches: a client may keep several batches of events in flight and still
//! have them stored in the order it sent them.
//!
//! A batch names its place with `Auditrail-Order: <stream> <n> <follows>`: the client's
//! stream (8 to 64 of `A-Z a-z 0-9 _ -`), the batch's number in it (0, 1, 2, … kept on
//! every retry), and `1` when batch `n - 1` may still be in flight (`0` once the client
//! has its acknowledgement). A batch that follows is queued for the store only after
//! batch `n - 1` of its stream is queued, stored or refused for good on this node, and
//! is stored only if that batch is (the store's writer takes batches in the order queued:
//! consecutive batches of a stream usually share one commit). If that batch failed
//! (overload, a storage error, a dropped request), or has not arrived within [`WAIT`],
//! the follower gets 409 `batch_out_of_order` and nothing of it is stored: the client
//! resends both, in order. Batches are idempotent (every event has an `id`), so a resent
//! one that was stored is acknowledged as duplicates.
//!
//! An acknowledgement of an ordered batch carries `Auditrail-Order: <n>`: a client keeps
//! more than one batch in flight only once a server has shown it keeps their order.
//!
//! What the node knows of streams is kept in memory only: after a restart, or on
//! another node, a follower of a stream the node has not seen gets 409 at once, which
//! costs a resend, never order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auditrail_store::Outcome;
use axum::http::{HeaderMap, StatusCode};

use crate::error::ApiError;

/// The request header.
pub const HEADER: &str = "auditrail-order";
/// How long a follower waits for the batch before it.
pub const WAIT: Duration = Duration::from_secs(1);
/// Streams kept; past this, those idle longest are forgotten first.
const MAX_STREAMS: usize = 10_000;

/// A batch's place in its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub stream: String,
    pub n: u64,
    pub follows: bool,
}

/// Reads the header, if the request has one.
pub fn place(headers: &HeaderMap) -> Result<Option<Place>, ApiError> {
    let Some(v) = headers.get(HEADER) else {
        return Ok(None);
    };
    let invalid = || {
        ApiError::invalid_field(
            "Auditrail-Order",
            "must be `<stream> <n> <follows>`: 8 to 64 of A-Z a-z 0-9 _ -, a batch number, 0 or 1",
        )
    };
    let text = v.to_str().map_err(|_| invalid())?;
    let mut parts = text.split(' ');
    let (Some(stream), Some(n), Some(follows), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    let stream_ok = (8..=64).contains(&stream.len())
        && stream
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let n: u64 = n.parse().map_err(|_| invalid())?;
    let follows = match follows {
        "0" => false,
        "1" => true,
        _ => return Err(invalid()),
    };
    if !stream_ok || (follows && n == 0) {
        return Err(invalid());
    }
    Ok(Some(Place {
        stream: stream.to_owned(),
        n,
        follows,
    }))
}

#[derive(Default)]
struct State {
    /// The newest batch stored or refused for good.
    done: Option<u64>,
    /// A batch that failed after `done`: its follower must not go first.
    failed: Option<u64>,
    /// The newest batch queued for the store, with its fate once known there.
    queued: Option<(u64, Outcome)>,
    touched: Option<Instant>,
}

#[derive(Default)]
struct Stream {
    state: Mutex<State>,
    changed: tokio::sync::Notify,
}

/// What this node knows of the streams of every org.
#[derive(Default)]
pub struct Streams {
    streams: Mutex<HashMap<(String, String), Arc<Stream>>>,
}

/// How a batch ended, for the one that follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Stored, or refused for good (the client will not send it again).
    Settled,
    /// Not stored, and the client will send it again.
    Failed,
}

impl End {
    /// How an answer ends a batch: `None` for success, else its error.
    pub fn of(error: Option<&ApiError>) -> End {
        let Some(e) = error else {
            return End::Settled;
        };
        let status = e.status;
        if status.is_client_error()
            && status != StatusCode::TOO_MANY_REQUESTS
            && status != StatusCode::REQUEST_TIMEOUT
            && e.code != OUT_OF_ORDER
        {
            End::Settled
        } else {
            End::Failed
        }
    }
}

/// The error code of a batch refused for its place in the stream.
const OUT_OF_ORDER: &str = "batch_out_of_order";

/// A batch in its stream until it ends; dropped without [`Turn::end`], it failed.
pub struct Turn {
    stream: Arc<Stream>,
    n: u64,
    ended: bool,
    /// The batch before, queued and not yet settled: this one is stored only if it is.
    after: Option<Outcome>,
}

impl Turn {
    /// What this batch must be queued after (`Store::enqueue_after`).
    pub fn after(&self) -> Option<Outcome> {
        self.after.clone()
    }

    /// The batch is queued for the store; its follower may be queued behind it.
    pub fn queued(&self, outcome: Outcome) {
        let mut s = self.stream.state.lock().unwrap_or_else(|p| p.into_inner());
        s.queued = Some((self.n, outcome));
        s.touched = Some(Instant::now());
        drop(s);
        self.stream.changed.notify_waiters();
    }

    pub fn end(mut self, end: End) {
        self.finish(end);
    }

    fn finish(&mut self, end: End) {
        if self.ended {
            return;
        }
        self.ended = true;
        let mut s = self.stream.state.lock().unwrap_or_else(|p| p.into_inner());
        match end {
            End::Settled => {
                s.done = Some(s.done.map_or(self.n, |d| d.max(self.n)));
                if s.failed.is_some_and(|f| f <= self.n) {
                    s.failed = None;
                }
            }
            End::Failed => {
                if s.done.is_none_or(|d| d < self.n) {
                    s.failed = Some(self.n);
                }
            }
        }
        s.touched = Some(Instant::now());
        drop(s);
        self.stream.changed.notify_waiters();
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.finish(End::Failed);
    }
}

/// The batch cannot go before the one it follows: the client sends that one again, then
/// this one. A conflict with the stream's state, not an overload: 409.
fn not_yet(reason: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, OUT_OF_ORDER, reason)
}

impl Streams {
    fn existing(&self, org: &str, name: &str) -> Option<Arc<Stream>> {
        let all = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        all.get(&(org.to_owned(), name.to_owned())).cloned()
    }

    fn stream(&self, org: &str, name: &str) -> Arc<Stream> {
        let mut all = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        let key = (org.to_owned(), name.to_owned());
        if !all.contains_key(&key) && all.len() >= MAX_STREAMS {
            // Forgets the tenth of the streams idle longest.
            let mut idle: Vec<_> = all
                .iter()
                .map(|(k, s)| {
                    let t = s.state.lock().unwrap_or_else(|p| p.into_inner()).touched;
                    (t, k.clone())
                })
                .collect();
            idle.sort();
            for (_, k) in idle.into_iter().take(MAX_STREAMS / 10) {
                all.remove(&k);
            }
        }
        all.entry(key).or_default().clone()
    }

    /// Waits until the batch at `place` may be queued in `org`: at once unless it follows
    /// a batch not yet queued. Its [`Turn`] must be ended with the answer.
    pub async fn turn(&self, org: &str, place: &Place) -> Result<Turn, ApiError> {
        let before = place.n.saturating_sub(1);
        let stream = if place.follows {
            // A stream this node has not seen (a restart, another node, a made-up name):
            // its batch `n - 1` is not coming here, so there is nothing to wait for.
            self.existing(org, &place.stream).ok_or_else(|| {
                not_yet(format!(
                    "this node knows nothing of stream {}; send batch {before} again, then this one",
                    place.stream
                ))
            })?
        } else {
            self.stream(org, &place.stream)
        };
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut after = None;
        if place.follows {
            loop {
                let changed = stream.changed.notified();
                {
                    let mut s = stream.state.lock().unwrap_or_else(|p| p.into_inner());
                    if s.done.is_some_and(|d| d >= before) {
                        break;
                    }
                    // The batch before, if it is queued (its fate may be known already).
                    let queued = s
                        .queued
                        .as_ref()
                        .filter(|(q, _)| *q == before)
                        .map(|(_, o)| o.clone());
                    if s.failed == Some(before)
                        || queued.as_ref().is_some_and(|o| o.stored() == Some(false))
                    {
                        // This one fails too, so the batch after it is refused at once.
                        s.failed = Some(place.n);
                        drop(s);
                        stream.changed.notify_waiters();
                        return Err(not_yet(format!(
                            "batch {before} of stream {} failed; send it again, then this one",
                            place.stream
                        )));
                    }
                    if queued.is_some() {
                        after = queued;
                        break;
                    }
                }
                if tokio::time::timeout_at(deadline, changed).await.is_err() {
                    Turn {
                        stream: stream.clone(),
                        n: place.n,
                        ended: false,
                        after: None,
                    }
                    .end(End::Failed);
                    return Err(not_yet(format!(
                        "batch {before} of stream {} has not arrived; send it again, then this one",
                        place.stream
                    )));
                }
            }
        }
        Ok(Turn {
            stream,
            n: place.n,
            ended: false,
            after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HEADER, v.parse().unwrap_or_else(|_| unreachable!()));
        h
    }

    #[test]
    fn the_header_is_read_exactly() {
        assert_eq!(place(&HeaderMap::new()).ok(), Some(None));
        let p = place(&header("abcdefgh 7 1")).ok().flatten();
        assert_eq!(
            p,
            Some(Place {
                stream: "abcdefgh".into(),
                n: 7,
                follows: true
            })
        );
        for bad in [
            "short 1 1",
            "abcdefgh 1",
            "abcdefgh x 1",
            "abcdefgh 1 2",
            "abcdefgh 0 1",
            "abcdefgh 1 1 1",
            "abcd/efgh 1 1",
        ] {
            assert!(place(&header(bad)).is_err(), "{bad}");
        }
    }

    fn at(n: u64, follows: bool) -> Place {
        Place {
            stream: "stream-1".into(),
            n,
            follows,
        }
    }

    #[tokio::test]
    async fn a_follower_waits_for_the_batch_before_it() {
        let streams = Arc::new(Streams::default());
        let first = streams.turn("o", &at(0, false)).await.ok();
        let s2 = streams.clone();
        let second = tokio::spawn(async move { s2.turn("o", &at(1, true)).await.is_ok() });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "went before its predecessor ended");
        if let Some(t) = first {
            t.end(End::Settled);
        }
        assert!(second.await.unwrap_or(false));
    }

    #[tokio::test]
    async fn a_follower_goes_once_the_batch_before_it_is_queued_and_shares_its_fate() {
        let streams = Arc::new(Streams::default());
        let Ok(first) = streams.turn("o", &at(0, false)).await else {
            unreachable!()
        };
        assert!(first.after().is_none());
        let s2 = streams.clone();
        let second = tokio::spawn(async move { s2.turn("o", &at(1, true)).await.ok() });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !second.is_finished(),
            "went before its predecessor was queued"
        );
        let outcome = Outcome::default();
        first.queued(outcome.clone());
        let second = second.await.ok().flatten();
        let after = second.as_ref().and_then(Turn::after);
        assert!(after.is_some(), "not queued behind its predecessor");
        // The store decides both: what it says of the first, the second's `after` says.
        outcome.set(false);
        assert_eq!(after.and_then(|a| a.stored()), Some(false));
        // The first then fails: a later follower of it is refused at once.
        first.end(End::Failed);
        drop(second);
        let t = std::time::Instant::now();
        assert!(streams.turn("o", &at(1, true)).await.is_err());
        assert!(t.elapsed() < WAIT);
    }

    #[test]
    fn a_refusal_for_order_is_a_failure_other_client_errors_settle() {
        assert_eq!(End::of(None), End::Settled);
        let e = not_yet("x".into());
        assert_eq!(End::of(Some(&e)), End::Failed);
        let e = ApiError::new(StatusCode::CONFLICT, "conflict", "x");
        assert_eq!(End::of(Some(&e)), End::Settled);
        let e = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_event", "x");
        assert_eq!(End::of(Some(&e)), End::Settled);
        let e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "x");
        assert_eq!(End::of(Some(&e)), End::Failed);
    }

    #[tokio::test]
    async fn a_follower_of_a_failed_batch_is_refused_and_may_go_after_its_resend() {
        let streams = Arc::new(Streams::default());
        let first = streams.turn("o", &at(0, false)).await.ok();
        drop(first); // the request was dropped: failed
        let e = streams.turn("o", &at(1, true)).await.err();
        assert_eq!(e.map(|e| e.status), Some(StatusCode::CONFLICT));
        // The resend of batch 0 is stored; batch 1 may follow.
        if let Ok(t) = streams.turn("o", &at(0, false)).await {
            t.end(End::Settled);
        }
        assert!(streams.turn("o", &at(1, true)).await.is_ok());
        // A chain: batch 2 follows batch 1, which follows batch 0 (failed): both are
        // refused at once, not after the wait.
        if let Ok(t) = streams.turn("o", &at(2, false)).await {
            drop(t);
        }
        let t = std::time::Instant::now();
        assert!(streams.turn("o", &at(3, true)).await.is_err());
        assert!(streams.turn("o", &at(4, true)).await.is_err());
        assert!(
            t.elapsed() < WAIT,
            "a follower of a refused follower waited"
        );
        // Another org's stream of the same name is its own.
        let other =
            tokio::time::timeout(Duration::from_millis(1500), streams.turn("p", &at(1, true)))
                .await;
        assert!(
            matches!(other, Ok(Err(_))),
            "waited for another org's batch"
        );
    }

    #[tokio::test]
    async fn a_follower_whose_predecessor_never_comes_gets_409_after_the_wait() {
        let streams = Streams::default();
        // Of a stream the node has not seen: at once.
        let t = std::time::Instant::now();
        assert!(streams.turn("o", &at(5, true)).await.is_err());
        assert!(t.elapsed() < WAIT);
        if let Ok(t) = streams.turn("o", &at(0, false)).await {
            t.end(End::Settled);
        }
        let t = std::time::Instant::now();
        let e = streams.turn("o", &at(5, true)).await.err();
        assert_eq!(e.map(|e| e.status), Some(StatusCode::CONFLICT));
        assert!(t.elapsed() >= WAIT);
    }
}
