//! The one source of randomness (the OS generator) and the one policy for its failure:
//! a machine whose OS cannot give random bytes cannot make keys, nonces, tokens or ids
//! safely, so the process stops there rather than carry on with weak values.

/// Fills `buf` from the OS random number generator.
pub fn fill(buf: &mut [u8]) {
    if let Err(e) = getrandom::fill(buf) {
        panic!("the OS random number generator failed: {e}");
    }
}

/// `N` random bytes.
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    fill(&mut b);
    b
}

/// `prefix` followed by 128 random bits in hex: ids nobody can guess.
pub fn id(prefix: &str) -> String {
    format!("{prefix}{}", hex::encode(bytes::<16>()))
}

/// A value in `[0, 1]`, for jitter.
pub fn unit() -> f64 {
    f64::from(u16::from_le_bytes(bytes::<2>())) / f64::from(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_and_distinct() {
        let a = id("sess_");
        assert!(a.starts_with("sess_") && a.len() == 5 + 32);
        assert_ne!(a, id("sess_"));
        assert!((0.0..=1.0).contains(&unit()));
    }
}
