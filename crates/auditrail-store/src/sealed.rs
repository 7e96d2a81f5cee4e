//! Sealed frames: the bodies of one level-0 tile's worth of events (256 consecutive
//! seqs, aligned as tlog-tiles lays out tiles) compressed together with zstd. Events are
//! immutable and arrive in seq order, so once a tile is complete and old enough its
//! bodies are sealed into one frame; an event's row then keeps its times and leaf, and an
//! empty body that says "read me from the frame". Pure: no I/O.
//!
//! Layout before compression: a version byte (1), the entry count (u16 LE), one u32 LE
//! length per entry (`ABSENT` for an event whose body is gone: purged by retention),
//! then the bodies back to back.

use crate::{Result, StoreError};

/// Events a frame holds: one tile.
pub const FRAME_EVENTS: u64 = 256;
/// zstd level: level 3 is zstd's default, the best size for the time at this shape.
const LEVEL: i32 = 3;
const VERSION: u8 = 1;
const ABSENT: u32 = u32::MAX;
/// The largest body a frame may hold once decoded (events are capped far below this).
const MAX_BODY: usize = 4 << 20;

/// The bodies of a frame, in seq order; `None` where the event's body is gone.
pub type Bodies = Vec<Option<String>>;

/// The first seq of the frame holding `seq` (seqs start at 1).
pub fn frame_start(seq: u64) -> u64 {
    (seq - 1) / FRAME_EVENTS * FRAME_EVENTS + 1
}

/// Compresses `bodies` (at most [`FRAME_EVENTS`]) into a frame.
pub fn encode(bodies: &[Option<&str>]) -> Result<Vec<u8>> {
    if bodies.len() as u64 > FRAME_EVENTS {
        return Err(StoreError::Corrupt(format!(
            "a frame holds at most {FRAME_EVENTS} events, not {}",
            bodies.len()
        )));
    }
    let text: usize = bodies.iter().flatten().map(|b| b.len()).sum();
    let mut raw = Vec::with_capacity(3 + 4 * bodies.len() + text);
    raw.push(VERSION);
    raw.extend_from_slice(&(bodies.len() as u16).to_le_bytes());
    for b in bodies {
        let len = match b {
            Some(b) if b.len() < ABSENT as usize => b.len() as u32,
            Some(_) => return Err(StoreError::Corrupt("an event body over 4 GiB".into())),
            None => ABSENT,
        };
        raw.extend_from_slice(&len.to_le_bytes());
    }
    for b in bodies.iter().flatten() {
        raw.extend_from_slice(b.as_bytes());
    }
    zstd::bulk::compress(&raw, LEVEL)
        .map_err(|e| StoreError::Corrupt(format!("compressing a frame: {e}")))
}

/// Decompresses a frame; `Corrupt` on anything but a frame [`encode`] made.
pub fn decode(data: &[u8]) -> Result<Bodies> {
    let bad = |why: &str| StoreError::Corrupt(format!("sealed frame: {why}"));
    let cap = 3 + FRAME_EVENTS as usize * (4 + MAX_BODY);
    let raw = zstd::bulk::decompress(data, cap).map_err(|e| bad(&e.to_string()))?;
    if raw.len() < 3 || raw[0] != VERSION {
        return Err(bad("unknown version"));
    }
    let n = usize::from(u16::from_le_bytes([raw[1], raw[2]]));
    if n as u64 > FRAME_EVENTS {
        return Err(bad("too many entries"));
    }
    let lens_end = 3 + 4 * n;
    let lens = raw
        .get(3..lens_end)
        .ok_or_else(|| bad("truncated lengths"))?;
    let mut at = lens_end;
    let mut out = Vec::with_capacity(n);
    for l in lens.chunks_exact(4) {
        let len = u32::from_le_bytes([l[0], l[1], l[2], l[3]]);
        if len == ABSENT {
            out.push(None);
            continue;
        }
        let end = at
            .checked_add(len as usize)
            .filter(|&e| e <= raw.len())
            .ok_or_else(|| bad("truncated body"))?;
        let body = std::str::from_utf8(&raw[at..end]).map_err(|_| bad("a body is not UTF-8"))?;
        out.push(Some(body.to_owned()));
        at = end;
    }
    if at != raw.len() {
        return Err(bad("trailing bytes"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: a panic is a failed test")]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frames_start_on_tile_boundaries() {
        assert_eq!(frame_start(1), 1);
        assert_eq!(frame_start(256), 1);
        assert_eq!(frame_start(257), 257);
        assert_eq!(frame_start(1000), 769);
    }

    #[test]
    fn a_frame_is_much_smaller_than_its_bodies() {
        let bodies: Vec<String> = (0..256)
            .map(|i| {
                format!(
                    r#"{{"action":"updateProject","actor":{{"id":"u-{}"}},"seq":{i}}}"#,
                    i % 7
                )
            })
            .collect();
        let refs: Vec<Option<&str>> = bodies.iter().map(|b| Some(b.as_str())).collect();
        let f = encode(&refs).unwrap();
        let raw: usize = bodies.iter().map(String::len).sum();
        assert!(f.len() * 5 < raw, "{} of {raw}", f.len());
        let back = decode(&f).unwrap();
        assert_eq!(back.len(), 256);
        assert_eq!(back[9].as_deref(), Some(bodies[9].as_str()));
    }

    #[test]
    fn garbage_and_oversized_frames_are_refused() {
        assert!(decode(b"not zstd").is_err());
        let f = zstd::bulk::compress(&[2, 0, 0], 3).unwrap();
        assert!(decode(&f).is_err(), "unknown version");
        let f = zstd::bulk::compress(&[1, 1, 0, 9, 0, 0, 0, b'x'], 3).unwrap();
        assert!(decode(&f).is_err(), "truncated body");
        let too_many: Vec<Option<&str>> = vec![None; 257];
        assert!(encode(&too_many).is_err());
    }

    proptest! {
        #[test]
        fn frames_round_trip(bodies in proptest::collection::vec(
            proptest::option::of("\\PC{0,200}"), 0..=256)) {
            let refs: Vec<Option<&str>> = bodies.iter().map(|b| b.as_deref()).collect();
            let back = decode(&encode(&refs).unwrap()).unwrap();
            prop_assert_eq!(back, bodies);
        }
    }
}
