//! Event ids for events sent without one: ULIDs (48-bit millisecond time, 80 random
//! bits, Crockford base32), so generated ids sort by acceptance time.

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Makes `n` ULIDs.
pub fn ulids(n: usize, now_ms: u64) -> Vec<String> {
    let mut ids = Ulids::at(now_ms);
    (0..n).map(|_| ids.next_id()).collect()
}

/// ULIDs made one at a time, for as many events as turn out to need one, with their
/// random bits read from the OS [`Ulids::BATCH`] ids' worth at a time.
pub struct Ulids {
    now_ms: u64,
    random: Vec<u8>,
    used: usize,
}

impl Ulids {
    /// Ids whose random bits one read from the OS covers.
    pub const BATCH: usize = 64;

    pub fn at(now_ms: u64) -> Self {
        Self {
            now_ms,
            random: Vec::new(),
            used: 0,
        }
    }

    /// The next id.
    pub fn next_id(&mut self) -> String {
        if self.used == self.random.len() {
            self.random.resize(Self::BATCH * 10, 0);
            crate::random::fill(&mut self.random);
            self.used = 0;
        }
        let id = encode(self.now_ms, &self.random[self.used..self.used + 10]);
        self.used += 10;
        id
    }
}

fn encode(ms: u64, random: &[u8]) -> String {
    let mut value: u128 = u128::from(ms & 0xFFFF_FFFF_FFFF) << 80;
    for (i, b) in random.iter().enumerate() {
        value |= u128::from(*b) << (8 * (9 - i));
    }
    let mut out = String::with_capacity(26);
    for i in (0..26).rev() {
        out.push(char::from(ALPHABET[((value >> (5 * i)) & 31) as usize]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulid_shape_and_order() {
        assert_eq!(encode(0, &[0; 10]), "00000000000000000000000000");
        assert_eq!(encode(1, &[0; 10]), "00000000010000000000000000");
        let a = ulids(3, 1_700_000_000_000);
        let b = ulids(1, 1_700_000_000_001);
        assert!(a.iter().all(|x| x.len() == 26 && x < &b[0]));
        assert_ne!(a[0], a[1]);
    }

    #[test]
    fn ids_made_one_at_a_time_are_ulids_and_distinct_past_a_read() {
        let mut ids = Ulids::at(1_700_000_000_000);
        let made: Vec<String> = (0..Ulids::BATCH * 2 + 1).map(|_| ids.next_id()).collect();
        let later = ulids(1, 1_700_000_000_001);
        assert!(made.iter().all(|x| x.len() == 26 && x < &later[0]));
        assert!(made.iter().all(|x| x.starts_with(&made[0][..10])));
        let distinct: std::collections::HashSet<&String> = made.iter().collect();
        assert_eq!(distinct.len(), made.len());
    }
}
