//! A Bloom filter over the claim keys merged into `id_chunks`, so that a new client id (the
//! common case) is accepted without a B-tree lookup.
//!
//! A claim key's `h` is the first 64 bits of a SHA-256, so its bits are already uniform:
//! they pick the filter's block (one cache line) and the bits within it directly. The
//! filter answers "maybe" for every key it was given and "no" for almost every other;
//! a "maybe" only costs the lookup that every claim made before.
//!
//! It is built from `id_chunks` on a thread of its own with its own connection, so neither
//! opening the store nor the writer waits for a scan of every claim ever made. Keys merged
//! while it is built are kept by the writer and added when it arrives. A filter that has
//! taken the keys it was sized for is built again, twice as large; until the new one
//! arrives the full one still answers (a few more false "maybe"s), rather than every
//! claim being looked up.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, TryRecvError};

use rusqlite::{Connection, OpenFlags};

use crate::Result;
use crate::error::Context;

/// Bits of filter per key it is sized for (about 1% false "maybe"s at that load).
const BITS_PER_KEY: usize = 10;
/// Bits set per key, each in the key's one 512-bit block (9 bits of a 64-bit mix each).
const PROBES: u32 = 7;
/// The fewest keys a filter is sized for.
const MIN_KEYS: usize = 1 << 20;

pub(crate) struct Filter {
    /// Blocks of 8 words (512 bits); the count is a power of two.
    words: Vec<u64>,
    block_mask: u64,
    keys: usize,
    capacity: usize,
}

impl Filter {
    /// A filter for up to `keys` keys (at least [`MIN_KEYS`]).
    pub(crate) fn with_capacity(keys: usize) -> Self {
        let keys = keys.max(MIN_KEYS);
        let blocks = (keys * BITS_PER_KEY).div_ceil(512).next_power_of_two();
        Self {
            words: vec![0; blocks * 8],
            block_mask: blocks as u64 - 1,
            keys: 0,
            capacity: keys,
        }
    }

    pub(crate) fn insert(&mut self, h: i64) {
        for (w, b) in probes(self.block_mask, h) {
            self.words[w] |= b;
        }
        self.keys += 1;
    }

    /// False only if `h` was never inserted.
    pub(crate) fn may_contain(&self, h: i64) -> bool {
        probes(self.block_mask, h).all(|(w, b)| self.words[w] & b != 0)
    }

    /// Has taken more keys than it was sized for (its "maybe"s grow common).
    pub(crate) fn is_full(&self) -> bool {
        self.keys > self.capacity
    }
}

/// The word index and bit of each probe of `h` in a filter of `block_mask + 1` blocks.
/// The block is `h`'s low bits; the bits within it come from a mix of all of `h`, so keys
/// sharing a block do not share their probes.
fn probes(block_mask: u64, h: i64) -> impl Iterator<Item = (usize, u64)> {
    let h = h as u64;
    let base = ((h & block_mask) * 8) as usize;
    // splitmix64's finalizer
    let mut z = h ^ (h >> 30);
    z = z.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z ^= z >> 27;
    z = z.wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (0..PROBES).map(move |i| {
        let bit = ((z >> (9 * i)) & 511) as usize;
        (base + bit / 64, 1u64 << (bit % 64))
    })
}

/// The writer's side of the filter: the database it is built from, and the filter once it
/// is there or the build under way with the keys merged since it started.
pub(crate) struct Known {
    db: Option<PathBuf>,
    state: State,
}

enum State {
    /// No filter: every claim not in memory is looked up.
    Off,
    Building {
        rx: Receiver<Result<Filter>>,
        since: Vec<i64>,
        /// The filter being replaced (full, but still never wrong about a key it took):
        /// it answers, and takes merged keys, until the new one arrives.
        old: Option<Filter>,
    },
    Ready(Filter),
}

/// Starts a build on its own thread; `old`, the filter it replaces, answers meanwhile
/// (and stays if no build can start).
fn start(db: &Path, old: Option<Filter>) -> State {
    let (tx, rx) = mpsc::channel();
    let db = db.to_owned();
    let spawned = std::thread::Builder::new()
        .name("auditrail-idsf".into())
        .spawn(move || {
            let _ = tx.send(scan(&db));
        });
    match spawned {
        Ok(_) => State::Building {
            rx,
            since: Vec::new(),
            old,
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot start building the client-id filter");
            old.map_or(State::Off, State::Ready)
        }
    }
}

impl Known {
    /// No filter: every claim not in memory is looked up.
    pub(crate) fn off() -> Self {
        Self {
            db: None,
            state: State::Off,
        }
    }

    /// Starts building a filter of the claims in the database at `db`, and builds it
    /// again whenever it fills up.
    pub(crate) fn build(db: PathBuf) -> Self {
        Self {
            state: start(&db, None),
            db: Some(db),
        }
    }

    /// A build whose result arrives on `rx` (for tests, which decide when it arrives).
    #[cfg(test)]
    pub(crate) fn building(rx: Receiver<Result<Filter>>) -> Self {
        Self {
            db: None,
            state: State::Building {
                rx,
                since: Vec::new(),
                old: None,
            },
        }
    }

    #[cfg(test)]
    pub(crate) fn is_ready(&self) -> bool {
        matches!(self.state, State::Ready(_))
    }

    #[cfg(test)]
    fn is_off(&self) -> bool {
        matches!(self.state, State::Off)
    }

    /// Whether `h` may be in `ids`; takes in a finished build first.
    pub(crate) fn may_contain(&mut self, h: i64) -> bool {
        if let State::Building { rx, since, old } = &mut self.state {
            match rx.try_recv() {
                Ok(Ok(mut f)) => {
                    for &k in since.iter() {
                        f.insert(k);
                    }
                    self.state = State::Ready(f);
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "building the client-id filter failed; claims are looked up");
                    self.state = old.take().map_or(State::Off, State::Ready);
                }
                Err(TryRecvError::Disconnected) => {
                    self.state = old.take().map_or(State::Off, State::Ready);
                }
                Err(TryRecvError::Empty) => {}
            }
        }
        match &self.state {
            State::Ready(f) | State::Building { old: Some(f), .. } => f.may_contain(h),
            _ => true,
        }
    }

    /// How many keys the filter holds (those in `ids`, and any merged since whose
    /// transaction rolled back); `None` while there is no filter.
    pub(crate) fn keys(&self) -> Option<usize> {
        match &self.state {
            State::Ready(f) | State::Building { old: Some(f), .. } => Some(f.keys),
            _ => None,
        }
    }

    /// Records keys merged into `id_chunks` (even if their transaction may yet roll back: a key
    /// the filter holds but `ids` does not only costs a lookup). A filter that is full
    /// is built again, larger; these keys, not committed yet, are not in its scan, so
    /// they are kept for it.
    pub(crate) fn merged(&mut self, keys: impl Iterator<Item = i64> + Clone) {
        let full = match &mut self.state {
            State::Off => return,
            State::Ready(f) => {
                for k in keys.clone() {
                    f.insert(k);
                }
                f.is_full()
            }
            State::Building { since, old, .. } => {
                if let Some(f) = old {
                    for k in keys.clone() {
                        f.insert(k);
                    }
                }
                since.extend(keys);
                return;
            }
        };
        let Some(db) = self.db.as_deref().filter(|_| full) else {
            return;
        };
        tracing::debug!("writer: client-id filter full, building a larger one");
        if let State::Ready(f) = std::mem::replace(&mut self.state, State::Off) {
            self.state = start(db, Some(f));
        }
        if let State::Building { since, .. } = &mut self.state {
            since.extend(keys);
        }
    }
}

/// Reads every `h` of `ids` in one read transaction; claims merged after it began are
/// the writer's to add.
fn scan(db: &PathBuf) -> Result<Filter> {
    let started = std::time::Instant::now();
    let mut conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .op("open client-id filter connection")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .op("set busy timeout")?;
    let tx = conn.transaction().op("begin client-id scan")?;
    let n = super::id_chunks::count(&tx)?;
    let mut f = Filter::with_capacity((n.max(0) as usize) * 2);
    super::id_chunks::scan(&tx, |h| f.insert(h))?;
    tracing::debug!(
        keys = f.keys,
        ms = started.elapsed().as_millis() as u64,
        "built the client-id filter"
    );
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> i64 {
        super::super::idem::id_key(1, &format!("id-{i}")).0
    }

    #[test]
    fn every_inserted_key_is_a_maybe_and_few_others_are() {
        let mut f = Filter::with_capacity(100_000);
        for i in 0..100_000 {
            f.insert(key(i));
        }
        assert!((0..100_000).all(|i| f.may_contain(key(i))));
        let false_maybes = (100_000..200_000)
            .filter(|&i| f.may_contain(key(i)))
            .count();
        // Sized for a million keys and holding a tenth of that: well under 1%.
        assert!(false_maybes < 1_000, "{false_maybes} false maybes");
    }

    #[test]
    fn a_filter_past_its_size_says_so() {
        let mut f = Filter::with_capacity(10);
        assert_eq!(f.capacity, MIN_KEYS);
        for i in 0..MIN_KEYS as u64 {
            f.insert(key(i));
        }
        assert!(!f.is_full());
        f.insert(key(u64::MAX));
        assert!(f.is_full());
    }

    #[test]
    fn keys_merged_while_building_are_added_when_the_filter_arrives() {
        let (tx, rx) = mpsc::channel();
        let mut known = Known::building(rx);
        assert!(
            known.may_contain(key(1)),
            "no filter yet: look everything up"
        );
        known.merged([key(1)].into_iter());
        let mut f = Filter::with_capacity(0);
        f.insert(key(2));
        tx.send(Ok(f)).unwrap();
        assert!(known.may_contain(key(1)), "merged during the build");
        assert!(known.may_contain(key(2)), "scanned");
        assert!(known.is_ready());
        assert!(!known.may_contain(key(3)) || !known.may_contain(key(4)));
    }

    #[test]
    fn a_full_filter_answers_while_its_successor_is_built() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("ids.db");
        let mut c = Connection::open(&db).unwrap();
        super::super::schema::migrate(&mut c).unwrap();
        let t = c.transaction().unwrap();
        let mut claims: Vec<(i64, i64, i64)> = (0..10).map(|i| (key(i), 0, i as i64)).collect();
        claims.sort_unstable();
        super::super::id_chunks::merge(&t, &claims).unwrap();
        t.commit().unwrap();
        // A filter of the ten, sized for eight: the next merge finds it full.
        let mut f = Filter::with_capacity(0);
        f.capacity = 8;
        (0..10).for_each(|i| f.insert(key(i)));
        let mut known = Known {
            db: Some(db),
            state: State::Ready(f),
        };
        known.merged([key(10)].into_iter());
        assert!(!known.is_ready(), "a larger one is being built");
        assert_eq!(known.keys(), Some(11), "the full one still counts");
        assert!((0..=10).all(|i| known.may_contain(key(i))));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !known.is_ready() {
            assert!(std::time::Instant::now() < deadline, "never rebuilt");
            known.may_contain(0);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(
            (0..=10).all(|i| known.may_contain(key(i))),
            "scanned and merged"
        );
        assert_eq!(known.keys(), Some(11));
    }

    /// A build under way (its result sent on the sender) replacing a filter of `k`.
    fn replacing(k: i64) -> (mpsc::Sender<Result<Filter>>, Known) {
        let mut old = Filter::with_capacity(0);
        old.insert(k);
        let (tx, rx) = mpsc::channel();
        let state = State::Building {
            rx,
            since: Vec::new(),
            old: Some(old),
        };
        (tx, Known { db: None, state })
    }

    #[test]
    fn until_the_new_filter_arrives_the_old_one_answers_and_takes_keys() {
        let (tx, mut known) = replacing(key(1));
        assert!(known.may_contain(key(1)));
        let maybes = (100..1_100).filter(|&i| known.may_contain(key(i))).count();
        assert!(maybes < 50, "{maybes} of 1,000 new keys looked up");
        known.merged([key(2)].into_iter());
        assert!(known.may_contain(key(2)));
        assert_eq!(known.keys(), Some(2));
        let mut new = Filter::with_capacity(0);
        new.insert(key(1));
        tx.send(Ok(new)).unwrap();
        assert!(known.may_contain(key(2)), "merged during the build");
        assert!(known.is_ready());

        // A failed build leaves the old filter answering.
        let (tx, mut known) = replacing(key(3));
        tx.send(Err(crate::StoreError::Unavailable("disk".into())))
            .unwrap();
        assert!(known.may_contain(key(3)));
        assert!(known.is_ready(), "the old filter, not none");
        assert!(!(100..1_100).all(|i| known.may_contain(key(i))));
    }

    #[test]
    fn a_failed_build_turns_the_filter_off() {
        let (tx, rx) = mpsc::channel();
        let mut known = Known::building(rx);
        tx.send(Err(crate::StoreError::Unavailable("disk".into())))
            .unwrap();
        assert!(known.may_contain(key(5)));
        assert!(known.is_off());
        let (tx, rx) = mpsc::channel::<Result<Filter>>();
        let mut known = Known::building(rx);
        drop(tx);
        assert!(known.may_contain(key(5)));
        assert!(known.is_off());
    }
}
