//! The witness's memory: per log origin, the latest checkpoint it cosigned, in SQLite.

use std::path::Path;
use std::sync::Mutex;

use auditrail_core::merkle::Hash;
use auditrail_core::note::Checkpoint;
use auditrail_core::witness::Refusal;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StateError(String);

impl From<rusqlite::Error> for StateError {
    fn from(e: rusqlite::Error) -> Self {
        Self(e.to_string())
    }
}

#[derive(Debug)]
pub(crate) enum AdvanceError {
    Refused(Refusal),
    State(StateError),
}

impl From<Refusal> for AdvanceError {
    fn from(r: Refusal) -> Self {
        Self::Refused(r)
    }
}

/// The latest cosigned checkpoint of one log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogState {
    pub size: u64,
    pub root: Hash,
    /// The checkpoint as received, with this witness's cosignature added.
    pub note: String,
}

pub struct State {
    conn: Mutex<Connection>,
}

impl State {
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS logs (
                 origin TEXT PRIMARY KEY,
                 size INTEGER NOT NULL,
                 root BLOB NOT NULL,
                 note TEXT NOT NULL,
                 updated_ms INTEGER NOT NULL
             );",
        )?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, origin: &str) -> Result<Option<LogState>, StateError> {
        let c = self.lock();
        read(&c, origin)
    }

    /// Reads `origin`'s state, lets `decide` check the request against it, and records
    /// what it answers, all in one immediate transaction committed (synced) before return.
    pub(crate) fn advance<T>(
        &self,
        origin: &str,
        decide: impl FnOnce(Option<LogState>) -> Result<(Checkpoint, String, T), Refusal>,
    ) -> Result<T, AdvanceError> {
        let mut c = self.lock();
        let st = |e: rusqlite::Error| AdvanceError::State(e.into());
        let t = c
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(st)?;
        let known = read(&t, origin).map_err(AdvanceError::State)?;
        let (cp, note, out) = decide(known)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        t.execute(
            "INSERT INTO logs (origin, size, root, note, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (origin) DO UPDATE SET size = excluded.size, root = excluded.root,
                 note = excluded.note, updated_ms = excluded.updated_ms",
            params![origin, cp.size as i64, cp.root.to_vec(), note, now],
        )
        .map_err(st)?;
        t.commit().map_err(st)?;
        Ok(out)
    }
}

fn read(c: &Connection, origin: &str) -> Result<Option<LogState>, StateError> {
    let row = c
        .query_row(
            "SELECT size, root, note FROM logs WHERE origin = ?1",
            [origin],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, String>(2)?,
                ))
            },
        )
        .optional()?;
    row.map(|(size, root, note)| {
        let root: Hash = root
            .try_into()
            .map_err(|_| StateError(format!("stored root of {origin:?} is not 32 bytes")))?;
        Ok(LogState {
            size: size as u64,
            root,
            note,
        })
    })
    .transpose()
}
