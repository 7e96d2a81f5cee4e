//! `--witness KEY … --min-cosignatures N`: a checkpoint is trusted only with N valid
//! cosignatures from the given witnesses.

use anyhow::{Context, bail};
use auditrail_core::cosignature::{CosignatureVerifier, cosigned_by};

pub struct Policy {
    witnesses: Vec<CosignatureVerifier>,
    min: usize,
}

impl Policy {
    /// `keys` are verifier keys or files holding one; `min` defaults to all of them.
    pub fn new(keys: &[String], min: Option<usize>) -> anyhow::Result<Self> {
        let mut witnesses = Vec::new();
        for k in keys {
            let text = if std::path::Path::new(k).is_file() {
                std::fs::read_to_string(k).with_context(|| format!("cannot read {k}"))?
            } else {
                k.clone()
            };
            witnesses.push(
                CosignatureVerifier::parse(text.trim())
                    .map_err(|e| anyhow::anyhow!("--witness {k}: {e}"))?,
            );
        }
        let min = min.unwrap_or(witnesses.len());
        if min > witnesses.len() {
            bail!(
                "--min-cosignatures {min} asks for more cosignatures than the {} --witness keys given",
                witnesses.len()
            );
        }
        Ok(Self { witnesses, min })
    }

    pub fn is_empty(&self) -> bool {
        self.min == 0
    }

    /// Checks the note (named `what` in errors); answers the witnesses that cosigned it.
    pub fn check(&self, what: &str, note: &str) -> anyhow::Result<Vec<String>> {
        let by = cosigned_by(note, &self.witnesses);
        if by.len() < self.min {
            let missing: Vec<&str> = self
                .witnesses
                .iter()
                .filter(|w| !by.contains(&w.name))
                .map(|w| w.name.as_str())
                .collect();
            bail!(
                "{what}: {} valid cosignature(s) from the given witnesses, {} required; none that verifies from {}",
                by.len(),
                self.min,
                missing.join(", ")
            );
        }
        Ok(by)
    }
}
