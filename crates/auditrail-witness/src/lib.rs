//! `auditrail witness`: a C2SP tlog-witness a customer runs on its own machine.
//!
//! It follows one or more logs, each named by its checkpoint origin and trusted through
//! its signed-note verifier key. For each `add-checkpoint` it checks the log's signature
//! and the consistency proof against the latest checkpoint it cosigned, records the new
//! one in SQLite (one transaction, synced to disk) and only then answers its Ed25519
//! `cosignature/v1`. It never cosigns a rollback or a fork.
#![forbid(unsafe_code)]

mod http;
mod state;

use std::collections::HashMap;
use std::path::Path;

use auditrail_core::cosignature::Cosigner;
use auditrail_core::note::{NoteError, NoteVerifier};
use auditrail_core::witness::{self, AddCheckpoint, Known, Refusal};

pub use http::{router, serve};
pub use state::{LogState, State, StateError};

#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    #[error("{0}")]
    State(#[from] StateError),
    #[error("log {origin:?}: {error}")]
    LogKey { origin: String, error: NoteError },
    #[error("witness key: {0}")]
    Key(String),
}

/// Why an `add-checkpoint` got no cosignature.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error("{0}")]
    Refused(#[from] Refusal),
    #[error("the witness's state could not be updated: {0}")]
    Internal(String),
}

/// The witness: its key, the logs it follows and its state.
pub struct Witness {
    cosigner: Cosigner,
    logs: HashMap<String, Vec<NoteVerifier>>,
    state: State,
}

/// The clock cosignatures carry: seconds since the epoch.
fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_secs().max(1))
}

impl Witness {
    /// Opens (or creates) the witness in `data_dir`: its key in `witness.key` (made once,
    /// mode 0600), its state in `witness.sqlite`. `logs` are `(origin, verifier key)`.
    pub fn open(
        data_dir: &Path,
        name: &str,
        logs: &[(String, String)],
    ) -> Result<Self, WitnessError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| WitnessError::Key(format!("cannot create {}: {e}", data_dir.display())))?;
        let seed = load_or_make_seed(&data_dir.join("witness.key"))?;
        let cosigner = Cosigner::new(name, seed).map_err(|e| WitnessError::Key(e.to_string()))?;
        let mut map: HashMap<String, Vec<NoteVerifier>> = HashMap::new();
        for (origin, vkey) in logs {
            let v = NoteVerifier::parse(vkey).map_err(|error| WitnessError::LogKey {
                origin: origin.clone(),
                error,
            })?;
            map.entry(origin.clone()).or_default().push(v);
        }
        let state = State::open(&data_dir.join("witness.sqlite"))?;
        Ok(Self {
            cosigner,
            logs: map,
            state,
        })
    }

    /// The witness's cosignature verifier key, for the logs and verifiers that trust it.
    pub fn verifier_key(&self) -> String {
        self.cosigner.verifier_key()
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// Handles one `add-checkpoint` body: on success the cosignature line(s).
    pub fn add_checkpoint(&self, body: &str) -> Result<String, AddError> {
        let req = AddCheckpoint::parse(body).map_err(|e| Refusal::Malformed(e.to_owned()))?;
        let origin = witness::origin_of(&req)?;
        let keys = self
            .logs
            .get(&origin)
            .ok_or_else(|| Refusal::UnknownOrigin(origin.clone()))?;
        let timestamp = now_secs();
        // Read, check and record in one transaction: two requests racing cannot roll the
        // state back (the specification's race).
        let line = self
            .state
            .advance(&origin, |known| {
                let known = known.map(|k| Known {
                    size: k.size,
                    root: k.root,
                });
                let (cp, text) = witness::check(&req, keys, known)?;
                let line = self.cosigner.cosign(&text, timestamp);
                let mut note = req.checkpoint.clone();
                if !note.ends_with('\n') {
                    note.push('\n');
                }
                note.push_str(&line);
                Ok((cp, note, line))
            })
            .map_err(|e| match e {
                state::AdvanceError::Refused(r) => AddError::Refused(r),
                state::AdvanceError::State(e) => AddError::Internal(e.to_string()),
            })?;
        // The state is on disk; only now is the cosignature answered.
        Ok(line)
    }
}

fn load_or_make_seed(path: &Path) -> Result<[u8; 32], WitnessError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let raw = hex::decode(text.trim())
                .map_err(|_| WitnessError::Key(format!("{} is not hex", path.display())))?;
            raw.try_into()
                .map_err(|_| WitnessError::Key(format!("{} is not 32 bytes", path.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| WitnessError::Key(e.to_string()))?;
            write_private(path, format!("{}\n", hex::encode(seed)).as_bytes())
                .map_err(|e| WitnessError::Key(format!("cannot write {}: {e}", path.display())))?;
            Ok(seed)
        }
        Err(e) => Err(WitnessError::Key(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests;
