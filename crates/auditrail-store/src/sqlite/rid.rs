//! How an event's rowid (its *rid*) is laid out: the org's number above the seq, so one
//! org's events are contiguous and in seq order; and the blocks of rids that postings
//! are kept in. The schema, the writer, search and postings all read rids this way.

/// Bits of a rowid that hold the seq; the org number sits above them.
pub const SEQ_BITS: u32 = 40;
pub const MAX_SEQ: u64 = (1 << SEQ_BITS) - 1;

pub fn rid(org_num: i64, seq: u64) -> i64 {
    (org_num << SEQ_BITS) | (seq as i64)
}

pub fn seq_of(rid: i64) -> u64 {
    (rid as u64) & MAX_SEQ
}

/// Rids per postings block.
pub const BLOCK_BITS: u32 = 16;

pub fn block_of(rid: i64) -> i64 {
    rid >> BLOCK_BITS
}

/// Splits ascending rids into runs that each lie in one block.
pub fn by_block(rids: &[i64]) -> impl Iterator<Item = &[i64]> {
    rids.chunk_by(|a, b| block_of(*a) == block_of(*b))
}
