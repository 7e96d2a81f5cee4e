//! WAL checkpoints off the writer's thread.
//!
//! A checkpoint copies committed pages from the write-ahead log into the database file.
//! SQLite runs it inside whichever commit crosses `wal_autocheckpoint`, on the committing
//! thread: the single writer then spent about a quarter of its time copying pages while
//! the requests queued behind it waited. Here the writer only counts what it committed;
//! this thread, on its own connection, runs passive checkpoints, which never block the
//! writer or readers: once enough was written, or shortly after writing stops.
//!
//! The WAL is reused from its start when a checkpoint has copied all of it before the
//! next commit. Under a load that never pauses that may not happen, so once the WAL
//! holds more than `Tuning::wal_cap_frames` the writer runs a checkpoint itself, between
//! two commits: it copies only what this thread has not copied yet, and the WAL starts
//! over at the next commit.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::Result;
use crate::error::Context;

/// When checkpoints happen.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tuning {
    /// Bytes committed that wake the checkpointer at once.
    pub batch_bytes: u64,
    /// How soon after the last commit what is left is copied.
    pub idle: Duration,
    /// WAL length (in pages) beyond which the writer checkpoints itself:
    /// `schema::WAL_CAP_BYTES` worth of the database's pages, and at most
    /// `schema::WAL_CAP_FRAMES`.
    pub wal_cap_frames: i64,
    /// Bytes any commit adds to the WAL besides its rows: a small commit still writes
    /// whole pages (the newest page of each table it appends to).
    pub commit_bytes: u64,
}

impl Tuning {
    /// The defaults, with the WAL cap counted in pages of `page_size` bytes.
    pub(crate) fn for_page_size(page_size: i64) -> Self {
        Self {
            batch_bytes: 16 << 20,
            idle: Duration::from_millis(250),
            wal_cap_frames: (super::schema::WAL_CAP_BYTES / page_size.max(512))
                .min(super::schema::WAL_CAP_FRAMES),
            // Events, tree nodes, pending postings and pending client-id claims.
            commit_bytes: 4 * page_size.max(512) as u64,
        }
    }
}

impl Default for Tuning {
    fn default() -> Self {
        Self::for_page_size(super::schema::PAGE_SIZE)
    }
}

#[derive(Default)]
struct State {
    /// Bytes committed since the last checkpoint started.
    pending: u64,
    /// Pages in the WAL when last seen (by a checkpoint).
    wal_frames: i64,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

/// The writer's handle on the checkpoint thread; dropping it copies what is left and
/// stops the thread.
pub(crate) struct WalCheckpointer {
    shared: Arc<Shared>,
    handle: Option<JoinHandle<()>>,
    tuning: Tuning,
}

impl WalCheckpointer {
    pub(crate) fn start(db: &Path, tuning: Tuning) -> Result<Self> {
        let conn = Connection::open_with_flags(
            db,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .op("open checkpoint connection")?;
        // Not `query_only`: a checkpoint writes the database file (and syncs it).
        conn.busy_timeout(Duration::from_secs(10))
            .op("set busy timeout")?;
        conn.pragma_update(None, "synchronous", "FULL")
            .op("set synchronous")?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let s = shared.clone();
        let handle = std::thread::Builder::new()
            .name("auditrail-ckpt".into())
            .spawn(move || run(&conn, &s, tuning))?;
        Ok(Self {
            shared,
            handle: Some(handle),
            tuning,
        })
    }

    /// Called by the writer after each commit with roughly how many bytes of rows it
    /// wrote. Returns whether the writer should checkpoint itself now (the WAL is past
    /// its cap).
    pub(crate) fn committed(&self, bytes: u64) -> bool {
        let Ok(mut st) = self.shared.state.lock() else {
            return false;
        };
        st.pending += bytes + self.tuning.commit_bytes;
        self.shared.wake.notify_one();
        st.wal_frames > self.tuning.wal_cap_frames
    }

    /// Runs a checkpoint on the writer's connection, between two commits.
    pub(crate) fn checkpoint_here(&self, conn: &Connection) -> Result<()> {
        let (log, done) = checkpoint(conn)?;
        if log >= 0
            && log == done
            && let Ok(mut st) = self.shared.state.lock()
        {
            // Everything was copied: the next commit starts the WAL over.
            st.wal_frames = 0;
        }
        Ok(())
    }
}

impl Drop for WalCheckpointer {
    fn drop(&mut self) {
        if let Ok(mut st) = self.shared.state.lock() {
            st.stop = true;
            self.shared.wake.notify_one();
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn run(conn: &Connection, shared: &Shared, tuning: Tuning) {
    let Ok(mut st) = shared.state.lock() else {
        return;
    };
    loop {
        // Wait for a full batch, or for writing to pause with something left.
        while !st.stop && st.pending < tuning.batch_bytes {
            let before = st.pending;
            let timeout = if before == 0 {
                Duration::from_secs(3600)
            } else {
                tuning.idle
            };
            let Ok((next, waited)) = shared.wake.wait_timeout(st, timeout) else {
                return;
            };
            st = next;
            if waited.timed_out() && st.pending == before && before > 0 {
                break;
            }
        }
        let stop = st.stop;
        st.pending = 0;
        drop(st);
        let result = checkpoint(conn);
        if stop {
            return;
        }
        st = match shared.state.lock() {
            Ok(s) => s,
            Err(_) => return,
        };
        match result {
            Ok((log, _)) if log >= 0 => st.wal_frames = log,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "checkpoint failed; retried after the next commits")
            }
        }
    }
}

/// A passive checkpoint: copies what it can without waiting for anyone. Returns the
/// frames in the WAL and how many of them are now in the database file.
pub(crate) fn checkpoint(conn: &Connection) -> Result<(i64, i64)> {
    let started = std::time::Instant::now();
    let (log, done): (i64, i64) = conn
        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get(1)?, r.get(2)?))
        })
        .op("checkpoint")?;
    tracing::debug!(
        frames = log,
        copied = done,
        ms = started.elapsed().as_secs_f64() * 1e3,
        "checkpoint"
    );
    Ok((log, done))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::schema::WAL_CAP_FRAMES;

    fn writer(path: &Path) -> Connection {
        let c = Connection::open(path).unwrap();
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
        c.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        c.execute_batch("CREATE TABLE t (x BLOB)").unwrap();
        c
    }

    fn write(c: &Connection, n: usize) {
        c.execute("INSERT INTO t VALUES (zeroblob(?1))", [n as i64])
            .unwrap();
    }

    fn start(
        db: &Path,
        batch_bytes: u64,
        idle: Duration,
        cap: i64,
        commit: u64,
    ) -> WalCheckpointer {
        let tuning = Tuning {
            batch_bytes,
            idle,
            wal_cap_frames: cap,
            commit_bytes: commit,
        };
        WalCheckpointer::start(db, tuning).unwrap()
    }

    fn size(p: &Path) -> u64 {
        std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
    }

    #[test]
    fn the_wal_cap_is_256_mib_of_pages_and_at_most_16384_of_them() {
        let bytes = |page: i64| Tuning::for_page_size(page).wal_cap_frames * page;
        assert_eq!(bytes(16_384), 256 << 20);
        assert_eq!(bytes(65_536), 256 << 20);
        // Small pages: the frame limit wins.
        assert_eq!(Tuning::for_page_size(4_096).wal_cap_frames, WAL_CAP_FRAMES);
        assert_eq!(bytes(4_096), 64 << 20);
        assert_eq!(Tuning::for_page_size(512).wal_cap_frames, WAL_CAP_FRAMES);
    }

    #[test]
    fn copies_the_wal_into_the_database_off_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let c = writer(&db);
        let ck = start(&db, 1 << 20, Duration::from_millis(20), i64::MAX, 0);
        let before = size(&db);
        for _ in 0..40 {
            write(&c, 64 << 10);
            assert!(!ck.committed(64 << 10));
        }
        // The writer never checkpointed; the pages reach the database file anyway.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while size(&db) < before + (40 * (64 << 10)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            size(&db) >= before + 40 * (64 << 10),
            "db is {} bytes",
            size(&db)
        );
    }

    #[test]
    fn every_commit_counts_the_pages_it_writes() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let c = writer(&db);
        // No idle checkpoint: only the bytes counted wake the thread.
        let ck = start(&db, 1 << 20, Duration::from_secs(3600), i64::MAX, 256 << 10);
        let before = size(&db);
        for _ in 0..8 {
            write(&c, 64 << 10);
            // Commits whose rows the writer does not count still add up.
            ck.committed(0);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while size(&db) <= before && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(size(&db) > before, "a checkpoint copied the commits' pages");
    }

    #[test]
    fn past_its_cap_the_writer_checkpoints_and_the_wal_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let wal = dir.path().join("t.db-wal");
        let c = writer(&db);
        // The checkpoint thread stays asleep: only the writer checkpoints here.
        let ck = start(&db, u64::MAX, Duration::from_secs(3600), 64, 0);
        for _ in 0..100 {
            write(&c, 4096);
            assert!(!ck.committed(4096), "nothing has measured the WAL yet");
        }
        let grown = size(&wal);
        // What the checkpoint thread reports after a checkpoint that could not catch up.
        ck.shared.state.lock().unwrap().wal_frames = 100;
        assert!(ck.committed(0));
        ck.checkpoint_here(&c).unwrap();
        assert!(!ck.committed(0), "the WAL starts over at the next commit");
        for _ in 0..50 {
            write(&c, 4096);
        }
        assert_eq!(size(&wal), grown, "the WAL file was reused from its start");
        assert_eq!(
            c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))
                .unwrap(),
            150
        );
    }
}
