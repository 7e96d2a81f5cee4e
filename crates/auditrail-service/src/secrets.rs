//! The server-wide secret box: ChaCha20-Poly1305 under the server's secret key. Every
//! secret the store keeps (destination credentials, sealed settings) is sealed with it,
//! bound to a context (the org and destination, the setting's name) so a sealed value
//! cannot be moved.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

const VERSION: &str = "v1:";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the secret could not be sealed")]
    Seal,
    #[error("sealed credentials are malformed")]
    Malformed,
    #[error(
        "sealed credentials do not open with this server's secret key (was the key file replaced?)"
    )]
    WrongKey,
}

/// Seals and opens secrets with one 32-byte key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(****)")
    }
}

impl SecretBox {
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(key)),
        }
    }

    /// `v1:` + base64(nonce ‖ ciphertext ‖ tag); `context` must be given again to open.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Result<String, SealError> {
        let nonce = crate::random::bytes::<12>();
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SealError::Seal)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(format!("{VERSION}{}", B64.encode(out)))
    }

    pub fn open(&self, sealed: &str, context: &str) -> Result<Vec<u8>, SealError> {
        let raw = sealed
            .strip_prefix(VERSION)
            .and_then(|b| B64.decode(b).ok())
            .filter(|r| r.len() > 12 + 16)
            .ok_or(SealError::Malformed)?;
        let (nonce, ct) = raw.split_at(12);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SealError::WrongKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_only_with_key_and_context() {
        let b = SecretBox::new(&[1u8; 32]);
        let s = b.seal(b"hunter2", "acme/s3").unwrap();
        assert!(!s.contains("hunter2"));
        assert_ne!(
            s,
            b.seal(b"hunter2", "acme/s3").unwrap(),
            "fresh nonce each time"
        );
        assert_eq!(b.open(&s, "acme/s3").unwrap(), b"hunter2");
        assert_eq!(b.open(&s, "globex/s3"), Err(SealError::WrongKey));
        assert_eq!(
            SecretBox::new(&[2u8; 32]).open(&s, "acme/s3"),
            Err(SealError::WrongKey)
        );
        assert_eq!(b.open("v1:AAAA", "acme/s3"), Err(SealError::Malformed));
    }
}
