//! C2SP `tlog-cosignature`, the Ed25519 `cosignature/v1` type: a witness's timestamped
//! statement that a checkpoint is the largest consistent tree it has seen of a log.
//!
//! The signed message is `cosignature/v1\ntime <t>\n` followed by the checkpoint's note
//! text; the signature line carries `key id (4) ‖ timestamp (u64 BE) ‖ signature (64)`,
//! the key id being SHA-256(name ‖ "\n" ‖ 0x04 ‖ public key)[:4].

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use crate::note::{ALG_COSIGNATURE_V1, NoteError, check_key_name, key_id, parse_vkey, split_note};

fn message(text: &str, timestamp: u64) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{text}")
}

/// A witness's cosigning key.
pub struct Cosigner {
    name: String,
    key: SigningKey,
}

impl std::fmt::Debug for Cosigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cosigner")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Cosigner {
    pub fn new(name: &str, seed: [u8; 32]) -> Result<Self, NoteError> {
        check_key_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            key: SigningKey::from_bytes(&seed),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `name+hexid+base64(0x04 ‖ public key)`.
    pub fn verifier_key(&self) -> String {
        let public = self.key.verifying_key();
        let mut raw = vec![ALG_COSIGNATURE_V1];
        raw.extend_from_slice(public.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(key_id(&self.name, ALG_COSIGNATURE_V1, &public)),
            B64.encode(raw)
        )
    }

    /// The signature line (ending in a newline) cosigning the note text `text` (the
    /// checkpoint body, ending in a newline) at `timestamp` (seconds since the epoch).
    pub fn cosign(&self, text: &str, timestamp: u64) -> String {
        let sig = self.key.sign(message(text, timestamp).as_bytes());
        let mut blob = key_id(&self.name, ALG_COSIGNATURE_V1, &self.key.verifying_key()).to_vec();
        blob.extend_from_slice(&timestamp.to_be_bytes());
        blob.extend_from_slice(&sig.to_bytes());
        format!("\u{2014} {} {}\n", self.name, B64.encode(blob))
    }
}

/// A witness's public key, for checking its cosignatures.
#[derive(Debug, Clone)]
pub struct CosignatureVerifier {
    pub name: String,
    id: [u8; 4],
    key: VerifyingKey,
}

impl PartialEq for CosignatureVerifier {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.key == other.key
    }
}

impl CosignatureVerifier {
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        let (name, id, key) = parse_vkey(vkey, ALG_COSIGNATURE_V1)?;
        Ok(Self { name, id, key })
    }

    pub fn verifier_key(&self) -> String {
        let mut raw = vec![ALG_COSIGNATURE_V1];
        raw.extend_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, hex::encode(self.id), B64.encode(raw))
    }

    /// Whether a signature line (name and decoded blob) claims to be by this key.
    pub fn claims(&self, name: &str, blob: &[u8]) -> bool {
        name == self.name && blob.len() == 76 && blob[..4] == self.id
    }

    /// Checks one claimed cosignature on `text`; answers its timestamp.
    pub fn check(&self, text: &str, blob: &[u8]) -> Result<u64, NoteError> {
        if blob.len() != 76 || blob[..4] != self.id {
            return Err(NoteError::Unsigned(self.name.clone()));
        }
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&blob[4..12]);
        let timestamp = u64::from_be_bytes(ts);
        if timestamp > i64::MAX as u64 {
            return Err(NoteError::BadSignature(self.name.clone()));
        }
        let sig = Signature::from_slice(&blob[12..])
            .map_err(|_| NoteError::Malformed("signature length"))?;
        self.key
            .verify(message(text, timestamp).as_bytes(), &sig)
            .map(|()| timestamp)
            .map_err(|_| NoteError::BadSignature(self.name.clone()))
    }

    /// The timestamp of this witness's valid cosignature on `note`.
    pub fn verify(&self, note: &str) -> Result<u64, NoteError> {
        let (text, sigs) = split_note(note)?;
        let mut last = Err(NoteError::Unsigned(self.name.clone()));
        for (name, blob) in sigs {
            if self.claims(name, &blob) {
                last = self.check(text, &blob);
                if last.is_ok() {
                    return last;
                }
            }
        }
        last
    }
}

/// The witnesses among `witnesses` whose cosignature on `note` verifies, by name.
pub fn cosigned_by(note: &str, witnesses: &[CosignatureVerifier]) -> Vec<String> {
    witnesses
        .iter()
        .filter(|w| w.verify(note).is_ok())
        .map(|w| w.name.clone())
        .collect()
}

/// Adds signature lines to a note, skipping any it already carries.
pub fn add_signature_lines(note: &str, lines: &str) -> String {
    let mut out = note.to_owned();
    for line in lines.lines().filter(|l| !l.is_empty()) {
        if !note.lines().any(|l| l == line) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::NoteSigner;

    const BODY: &str = "example.com/log\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";

    #[test]
    fn cosign_then_verify() {
        let w = Cosigner::new("witness.example/w1", [3; 32]).unwrap();
        let v = CosignatureVerifier::parse(&w.verifier_key()).unwrap();
        let log = NoteSigner::new("example.com/log", [1; 32]).unwrap();
        let note = log.sign(BODY).unwrap();
        let cosigned = add_signature_lines(&note, &w.cosign(BODY, 1_679_315_147));
        assert_eq!(v.verify(&cosigned), Ok(1_679_315_147));
        assert_eq!(
            cosigned_by(&cosigned, std::slice::from_ref(&v)),
            vec!["witness.example/w1"]
        );
        // The log's own signature still verifies with the line added.
        let lv = crate::note::NoteVerifier::parse(&log.verifier_key()).unwrap();
        assert_eq!(lv.verify(&cosigned), Ok(BODY));
        // A cosignature on another tree does not carry over.
        let other = BODY.replace("\n5\n", "\n6\n");
        let moved = add_signature_lines(&log.sign(&other).unwrap(), &w.cosign(BODY, 1));
        assert_eq!(
            v.verify(&moved),
            Err(NoteError::BadSignature("witness.example/w1".into()))
        );
    }

    #[test]
    fn keys_are_typed() {
        let w = Cosigner::new("w", [3; 32]).unwrap();
        let log = NoteSigner::new("w", [3; 32]).unwrap();
        assert!(CosignatureVerifier::parse(&log.verifier_key()).is_err());
        assert!(crate::note::NoteVerifier::parse(&w.verifier_key()).is_err());
        assert_eq!(
            CosignatureVerifier::parse(&w.verifier_key())
                .unwrap()
                .verifier_key(),
            w.verifier_key()
        );
    }

    /// The message layout of the specification's example, byte for byte.
    #[test]
    fn message_layout() {
        assert_eq!(
            message(
                "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
                1679315147
            ),
            "cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
        );
    }
}
