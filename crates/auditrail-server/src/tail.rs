//! Live tail: one reader per org that has subscribers, fanned out to all of them.
//!
//! The reader reads each org's new events once, in seq order, and publishes them in
//! batches on a bounded broadcast channel; every subscriber filters them itself. A
//! subscriber first catches up from the store (from its resume point, or from the head),
//! then follows the channel. One that falls more than the channel holds behind goes back
//! to the store, and one more than [`MAX_LAG`] events behind is cut off with its resume
//! point: memory is the channel's, whatever the readers do.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use auditrail_core::query::{Field, Filter};
use auditrail_core::time;
use auditrail_store::{Order, PageRequest, StoredEvent, terms};
use tokio::sync::broadcast;

use crate::App;

/// Subscribers one org may hold open at once, unless the operator sets another bound.
pub const DEFAULT_MAX_SUBSCRIBERS: usize = 256;
/// How far behind the head (in events) a live subscriber may fall before it is cut off.
pub const MAX_LAG: u64 = 10_000;
/// Batches the channel keeps for slow subscribers.
const CHANNEL_BATCHES: usize = 64;
/// Events read from the store at a time.
pub(crate) const PAGE: usize = 500;
/// How often the reader looks for events appended by another node (PostgreSQL).
const POLL: Duration = Duration::from_millis(250);
/// At most this often the reader reads again, however often appends wake it.
const MIN_GAP: Duration = Duration::from_millis(5);

/// Events `(after, last]` of an org's log, in seq order, as one read found them (purged
/// events are absent).
pub struct Batch {
    pub after: u64,
    pub last: u64,
    pub events: Vec<LiveEvent>,
}

/// An event as the reader publishes it: with the fields filters name, read once for all
/// subscribers.
pub struct LiveEvent {
    pub event: StoredEvent,
    fields: [Option<String>; 5],
    occurred_us: Option<i64>,
}

/// The members of a stored body that filters read, borrowed where they have no escapes;
/// the rest is skipped unread into values.
#[derive(serde::Deserialize)]
struct Probe<'a> {
    #[serde(borrow, default)]
    action: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    actor: Option<Ids<'a>>,
    #[serde(borrow, default)]
    resource: Option<Ids<'a>>,
    #[serde(borrow, default)]
    scope: Option<Ids<'a>>,
    #[serde(borrow, default)]
    occurred_at: Option<Cow<'a, str>>,
}

#[derive(serde::Deserialize)]
struct Ids<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "type")]
    kind: Option<Cow<'a, str>>,
}

impl LiveEvent {
    pub fn new(event: StoredEvent) -> Self {
        // A body the probe cannot read (a member of another type than it expects) is
        // read whole, as search reads it.
        let (fields, occurred) = match serde_json::from_str::<Probe>(&event.body) {
            Ok(p) => {
                let id =
                    |o: &Option<Ids>| o.as_ref().and_then(|o| o.id.as_deref()).map(str::to_owned);
                let fields = [
                    p.action.as_deref().map(str::to_owned),
                    id(&p.actor),
                    p.resource
                        .as_ref()
                        .and_then(|r| r.kind.as_deref())
                        .map(str::to_owned),
                    id(&p.resource),
                    id(&p.scope),
                ];
                (
                    fields,
                    p.occurred_at.as_deref().and_then(time::parse_rfc3339),
                )
            }
            Err(_) => {
                let v: serde_json::Value = serde_json::from_str(&event.body).unwrap_or_default();
                let fields = Field::ALL.map(|f| terms::field_value(&v, f).map(str::to_owned));
                let occurred = v
                    .get("occurred_at")
                    .and_then(|t| t.as_str())
                    .and_then(time::parse_rfc3339);
                (fields, occurred)
            }
        };
        Self {
            event,
            fields,
            occurred_us: occurred.map(time::micros),
        }
    }

    /// Whether the event satisfies every condition of `filter`, as search decides.
    pub fn accepts(&self, filter: &Filter) -> bool {
        let in_time =
            !filter.has_time_bounds() || self.occurred_us.is_some_and(|at| filter.within(at));
        in_time
            && terms::text_holds(&self.event.body, filter)
            && terms::conds_hold(filter, |field| {
                let i = Field::ALL.iter().position(|f| *f == field)?;
                self.fields[i].as_deref()
            })
    }
}

pub struct Feed {
    tx: broadcast::Sender<Arc<Batch>>,
    subscribers: AtomicUsize,
    /// The newest seq the reader has published (everything up to it has been read).
    read: AtomicU64,
}

impl Feed {
    /// The newest seq read so far.
    pub fn read(&self) -> u64 {
        self.read.load(Ordering::Acquire)
    }
}

/// The orgs' feeds, each alive while it has subscribers.
pub struct TailHub {
    feeds: Mutex<HashMap<String, Weak<Feed>>>,
    limit: usize,
    /// Set when the server shuts down: every stream ends with its resume point.
    closing: tokio::sync::watch::Sender<bool>,
}

impl TailHub {
    pub fn new(limit: usize) -> Self {
        Self {
            feeds: Mutex::default(),
            limit,
            closing: tokio::sync::watch::Sender::new(false),
        }
    }
}

/// One subscriber's hold on its org's feed; the slot is given back on drop.
pub struct Subscription {
    pub feed: Arc<Feed>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.feed.subscribers.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The org already has as many subscribers as [`TailHub::limit`].
#[derive(Debug)]
pub struct Full;

impl TailHub {
    /// Subscribers one org may hold open at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Ends every stream (the server is shutting down, and waits for them).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Becomes true when the server shuts down.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Takes a subscriber slot on `org`'s feed, starting its reader if there is none.
    pub fn subscribe(&self, app: &Arc<App>, org: &str) -> Result<Subscription, Full> {
        let mut feeds = self.feeds.lock().unwrap_or_else(|p| p.into_inner());
        let feed = match feeds.get(org).and_then(Weak::upgrade) {
            Some(feed) => feed,
            None => {
                feeds.retain(|_, f| f.strong_count() > 0);
                let (tx, _) = broadcast::channel(CHANNEL_BATCHES);
                let feed = Arc::new(Feed {
                    tx,
                    subscribers: AtomicUsize::new(0),
                    read: AtomicU64::new(0),
                });
                feeds.insert(org.to_owned(), Arc::downgrade(&feed));
                let reader = run_reader(app.clone(), org.to_owned(), Arc::downgrade(&feed));
                tokio::spawn(reader);
                feed
            }
        };
        if feed.subscribers.fetch_add(1, Ordering::AcqRel) >= self.limit() {
            feed.subscribers.fetch_sub(1, Ordering::AcqRel);
            return Err(Full);
        }
        Ok(Subscription { feed })
    }

    /// Subscribers open now, org by org.
    pub fn subscribers(&self) -> Vec<(String, usize)> {
        let feeds = self.feeds.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<_> = feeds
            .iter()
            .filter_map(|(org, f)| {
                f.upgrade()
                    .map(|f| (org.clone(), f.subscribers.load(Ordering::Acquire)))
            })
            .collect();
        out.sort();
        out
    }
}

impl Feed {
    pub fn receiver(&self) -> broadcast::Receiver<Arc<Batch>> {
        self.tx.subscribe()
    }
}

/// Reads `org`'s new events while the feed has subscribers: at once when this process
/// appends, and every [`POLL`] for what other nodes append.
async fn run_reader(app: Arc<App>, org: String, feed: Weak<Feed>) {
    let mut appended = app.appended.subscribe();
    let mut after: Option<u64> = None;
    loop {
        let Some(f) = feed.upgrade() else { return };
        if let Err(e) = read_new(&app, &org, &f, &mut after).await {
            tracing::warn!(org = %org, error = %e, "live tail: cannot read new events");
        }
        drop(f);
        tokio::select! {
            _ = appended.changed() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
        tokio::time::sleep(MIN_GAP).await;
    }
}

async fn read_new(
    app: &App,
    org: &str,
    feed: &Feed,
    after: &mut Option<u64>,
) -> Result<(), auditrail_store::StoreError> {
    let mut from = match *after {
        Some(a) => a,
        None => {
            // Starts at the head: whoever subscribed before catches up from the store.
            let head = app.store.tree_head(org).await?.size;
            feed.read.store(head, Ordering::Release);
            *after = Some(head);
            return Ok(());
        }
    };
    loop {
        let page = app
            .store
            .search(
                org,
                &Filter::default(),
                PageRequest {
                    after_seq: Some(from),
                    limit: PAGE,
                    order: Order::Asc,
                },
            )
            .await?;
        let Some(last) = page.events.last().map(|e| e.seq) else {
            return Ok(());
        };
        let more = page.next_after.is_some();
        feed.read.store(last, Ordering::Release);
        // No receiver now is not an error: a subscriber may be catching up.
        let events = page.events.into_iter().map(LiveEvent::new).collect();
        let _ = feed.tx.send(Arc::new(Batch {
            after: from,
            last,
            events,
        }));
        from = last;
        *after = Some(last);
        if !more {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditrail_core::query::parse_q;

    /// The probe reads the fields search reads, escapes and nulls included.
    #[test]
    fn the_probe_reads_what_search_reads() {
        for body in [
            r#"{"action":"a\"b","actor":{"email":"x@y","id":"u-\u00e9"},"details":{"actor":{"id":"no"}},"occurred_at":"2026-11-01T10:00:00.000000Z","resource":{"id":"r","type":"T"},"scope":null}"#,
            r#"{"action":"a","actor":null,"resource":{"type":"T"},"scope":{"id":"s"}}"#,
            r#"{"action":"a","actor":{"id":7}}"#,
            r#"{}"#,
        ] {
            let live = LiveEvent::new(StoredEvent {
                seq: 1,
                body: body.into(),
                leaf: [0; 32],
            });
            let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
            let want = Field::ALL.map(|f| terms::field_value(&v, f).map(str::to_owned));
            assert_eq!(live.fields, want, "{body}");
            let at = v["occurred_at"]
                .as_str()
                .and_then(time::parse_rfc3339)
                .map(time::micros);
            assert_eq!(live.occurred_us, at, "{body}");
        }
    }

    #[test]
    fn live_events_match_filters_as_search_does() {
        let e = LiveEvent::new(StoredEvent {
            seq: 1,
            body: r#"{"action":"addProject","actor":{"id":"u-1"},"occurred_at":"2026-11-01T10:00:00.000000Z","resource":{"id":"u-10","type":"PROJECT"}}"#.into(),
            leaf: [0; 32],
        });
        let with = |q: &str| {
            let mut f = Filter::default();
            parse_q(q, &mut f).unwrap();
            let live = e.accepts(&f);
            if f.from_us.is_none() && f.to_us.is_none() {
                assert_eq!(live, terms::matches(&e.event.body, &f), "{q}");
            }
            live
        };
        assert!(with("actor:u-1"));
        assert!(
            !with("actor:u-10"),
            "a value inside another field is not a match"
        );
        assert!(with("resource:u-10"));
        assert!(!with("actor:u-2"));
        assert!(with("-action:login"));
        assert!(!with("-actor:u-1"));
        assert!(with("addProject"));
        assert!(!with("-PROJECT"));
        assert!(with("created:2026-11-01"));
        assert!(!with("created:>=2026-11-02"));
        assert!(!with("created:<2026-11-01"));
    }
}
