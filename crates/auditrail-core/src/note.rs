//! C2SP signed notes (`signed-note`) and transparency-log checkpoints (`tlog-checkpoint`)
//! with Ed25519 keys.
//!
//! A note is UTF-8 text ending in a newline; after a blank line come signature lines
//! `— <key name> <base64(key hash ‖ signature)>`. The key hash is the first four bytes of
//! SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key), 0x01 naming the Ed25519 algorithm.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

const ALG_ED25519: u8 = 0x01;
/// C2SP tlog-cosignature: an Ed25519 `cosignature/v1` (timestamped) signature.
pub(crate) const ALG_COSIGNATURE_V1: u8 = 0x04;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NoteError {
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    #[error("malformed verifier key: {0}")]
    BadKey(&'static str),
    #[error("no signature by key {0} on the note")]
    Unsigned(String),
    #[error("signature by key {0} does not verify")]
    BadSignature(String),
}

fn key_hash(name: &str, public: &VerifyingKey) -> [u8; 4] {
    key_id(name, ALG_ED25519, public)
}

/// SHA-256(name ‖ "\n" ‖ alg ‖ public key)[:4]: the key id of signed-note and of
/// tlog-cosignature.
pub(crate) fn key_id(name: &str, alg: u8, public: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([alg]);
    h.update(public.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// A key name a note may carry: non-empty, without spaces or `+`.
pub(crate) fn check_key_name(name: &str) -> Result<(), NoteError> {
    if valid_key_name(name) {
        Ok(())
    } else {
        Err(NoteError::BadKey(
            "key name must be non-empty, without spaces or '+'",
        ))
    }
}

fn valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('+') && name.chars().all(|c| !c.is_whitespace())
}

/// Signs notes with one named Ed25519 key.
pub struct NoteSigner {
    name: String,
    key: SigningKey,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// `seed` is the 32-byte Ed25519 private key.
    pub fn new(name: &str, seed: [u8; 32]) -> Result<Self, NoteError> {
        check_key_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// The C2SP verifier key: `name+hexhash+base64(0x01 ‖ public key)`.
    pub fn verifier_key(&self) -> String {
        let public = self.key.verifying_key();
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(public.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(key_hash(&self.name, &public)),
            B64.encode(raw)
        )
    }

    /// Signs `text` (which must end with a newline) and returns the whole signed note.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        if !text.ends_with('\n') {
            return Err(NoteError::Malformed("note text must end with a newline"));
        }
        let sig = self.key.sign(text.as_bytes());
        let mut blob = key_hash(&self.name, &self.key.verifying_key()).to_vec();
        blob.extend_from_slice(&sig.to_bytes());
        Ok(format!(
            "{text}\n\u{2014} {} {}\n",
            self.name,
            B64.encode(blob)
        ))
    }
}

/// A parsed verifier key.
#[derive(Debug, Clone)]
pub struct NoteVerifier {
    pub name: String,
    hash: [u8; 4],
    key: VerifyingKey,
}

/// Parses a C2SP verifier key `name+hexhash+base64(alg ‖ key)` whose algorithm byte is
/// `alg` and whose key is a 32-byte Ed25519 point.
pub(crate) fn parse_vkey(
    vkey: &str,
    alg: u8,
) -> Result<(String, [u8; 4], VerifyingKey), NoteError> {
    let mut parts = vkey.trim().splitn(3, '+');
    let (Some(name), Some(hash_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(NoteError::BadKey("expected name+hash+key"));
    };
    check_key_name(name)?;
    let raw = B64
        .decode(key_b64)
        .map_err(|_| NoteError::BadKey("key is not base64"))?;
    let (got, key) = raw.split_first().ok_or(NoteError::BadKey("empty key"))?;
    if *got != alg {
        return Err(NoteError::BadKey(match alg {
            ALG_ED25519 => "not an Ed25519 signed-note key (algorithm 0x01)",
            _ => "not an Ed25519 cosignature/v1 key (algorithm 0x04)",
        }));
    }
    let bytes: [u8; 32] = key
        .try_into()
        .map_err(|_| NoteError::BadKey("key length"))?;
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| NoteError::BadKey("bad point"))?;
    let hash = key_id(name, alg, &key);
    if hex::encode(hash) != hash_hex {
        return Err(NoteError::BadKey("key hash does not match name and key"));
    }
    Ok((name.to_owned(), hash, key))
}

/// One signature line of a note: the key name and the decoded blob.
pub type SignatureLine<'a> = (&'a str, Vec<u8>);

/// A signed note split into its text (ending in a newline) and its signature lines.
pub fn split_note(note: &str) -> Result<(&str, Vec<SignatureLine<'_>>), NoteError> {
    let split = note
        .rfind("\n\n")
        .ok_or(NoteError::Malformed("no signature block"))?;
    let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
    let mut out = Vec::new();
    for line in sigs.lines() {
        out.push(signature_line(line)?);
    }
    if out.is_empty() {
        return Err(NoteError::Malformed("no signature lines"));
    }
    Ok((text, out))
}

/// One signature line `— <name> <base64>`, decoded.
pub fn signature_line(line: &str) -> Result<(&str, Vec<u8>), NoteError> {
    let Some(rest) = line.strip_prefix("\u{2014} ") else {
        return Err(NoteError::Malformed(
            "signature line must start with an em dash",
        ));
    };
    let Some((name, b64)) = rest.split_once(' ') else {
        return Err(NoteError::Malformed(
            "signature line needs name and signature",
        ));
    };
    let blob = B64
        .decode(b64)
        .map_err(|_| NoteError::Malformed("signature not base64"))?;
    if blob.len() < 4 {
        return Err(NoteError::Malformed("signature shorter than its key id"));
    }
    Ok((name, blob))
}

impl NoteVerifier {
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        let (name, hash, key) = parse_vkey(vkey, ALG_ED25519)?;
        Ok(Self { name, hash, key })
    }

    /// The verifier key text this was parsed from.
    pub fn verifier_key(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.hash),
            B64.encode(raw)
        )
    }

    /// Verifies the note's signature by this key and returns the signed text.
    pub fn verify<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let (text, sigs) = split_note(note)?;
        for (name, blob) in sigs {
            if name != self.name {
                continue;
            }
            if blob.len() != 68 || blob[..4] != self.hash {
                continue;
            }
            let sig = Signature::from_slice(&blob[4..])
                .map_err(|_| NoteError::Malformed("signature length"))?;
            return self
                .key
                .verify(text.as_bytes(), &sig)
                .map(|()| text)
                .map_err(|_| NoteError::BadSignature(self.name.clone()));
        }
        Err(NoteError::Unsigned(self.name.clone()))
    }
}

/// A tree head: the body of a C2SP `tlog-checkpoint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let mut lines = text.split('\n');
        let origin = lines.next().filter(|o| !o.is_empty());
        let size = lines.next().and_then(|s| s.parse::<u64>().ok());
        let root = lines
            .next()
            .and_then(|r| B64.decode(r).ok())
            .and_then(|r| r.try_into().ok());
        match (origin, size, root) {
            (Some(origin), Some(size), Some(root)) => Ok(Self {
                origin: origin.to_owned(),
                size,
                root,
            }),
            _ => Err(NoteError::Malformed(
                "checkpoint needs origin, size and base64 root",
            )),
        }
    }
}

/// The checkpoint origin line for an org's log.
pub fn origin_for(prefix: &str, org: &str) -> String {
    format!("{prefix}/{org}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> NoteSigner {
        NoteSigner::new("auditrail.test", [7u8; 32]).unwrap()
    }

    #[test]
    fn sign_then_verify_checkpoint() {
        let cp = Checkpoint {
            origin: origin_for("auditrail.test", "acme"),
            size: 42,
            root: [9; 32],
        };
        let note = signer().sign(&cp.body()).unwrap();
        let v = NoteVerifier::parse(&signer().verifier_key()).unwrap();
        let text = v.verify(&note).unwrap();
        assert_eq!(Checkpoint::parse(text).unwrap(), cp);
        assert!(note.starts_with("auditrail.test/acme\n42\n"));
    }

    #[test]
    fn tampering_is_detected() {
        let note = signer().sign("origin\n1\nAAAA\n").unwrap();
        let v = NoteVerifier::parse(&signer().verifier_key()).unwrap();
        let forged = note.replacen("\n1\n", "\n2\n", 1);
        assert_eq!(
            v.verify(&forged),
            Err(NoteError::BadSignature("auditrail.test".into()))
        );
        let other = NoteSigner::new("auditrail.test", [8u8; 32]).unwrap();
        let v2 = NoteVerifier::parse(&other.verifier_key()).unwrap();
        assert_eq!(
            v2.verify(&note),
            Err(NoteError::Unsigned("auditrail.test".into()))
        );
    }

    #[test]
    fn verifier_key_shape() {
        let k = signer().verifier_key();
        let parts: Vec<&str> = k.split('+').collect();
        assert_eq!(parts[0], "auditrail.test");
        assert_eq!(parts[1].len(), 8);
        assert!(NoteVerifier::parse(&k.replace("auditrail.test", "other")).is_err());
    }
}
