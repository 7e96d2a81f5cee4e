//! C2SP `tlog-tiles`: the static layout of a log's tree and entries.
//!
//! A hash tile at level `L`, index `N` holds the hashes of the complete subtrees at tree
//! level `8·L` numbered `N·256 .. N·256 + W` (W = 256 for a full tile); an entry bundle
//! at index `N` holds entries `N·256 .. N·256 + W`, each as a big-endian `u16` length
//! followed by the bytes. Paths are `tile/<L>/<N>[.p/<W>]` and
//! `tile/entries/<N>[.p/<W>]`, `N` written in 3-digit groups, all but the last prefixed
//! with `x` (1234067 → `x001/x234/067`).

use crate::merkle::NodeId;

/// Hashes in a full tile; tiles span 8 tree levels.
pub const WIDTH: u64 = 256;
pub const HEIGHT: u32 = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A hash tile at this tile level (0..=7 covers every tree a u64 size allows).
    Hashes(u8),
    /// An entry bundle.
    Entries,
}

/// One tile or entry bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tile {
    pub kind: Kind,
    pub index: u64,
    /// 1..=256; 256 is a full tile.
    pub width: u16,
}

fn push_index(out: &mut String, index: u64) {
    let digits = format!("{index}");
    let pad = (3 - digits.len() % 3) % 3;
    let padded = format!("{}{digits}", "0".repeat(pad));
    let groups: Vec<&str> = padded
        .as_bytes()
        .chunks(3)
        .map(|c| std::str::from_utf8(c).unwrap_or("000"))
        .collect();
    for (i, g) in groups.iter().enumerate() {
        if i + 1 < groups.len() {
            out.push('x');
            out.push_str(g);
            out.push('/');
        } else {
            out.push_str(g);
        }
    }
}

impl Tile {
    pub fn is_full(&self) -> bool {
        u64::from(self.width) == WIDTH
    }

    /// The path under the log's prefix, e.g. `tile/1/x001/234.p/17`.
    pub fn path(&self) -> String {
        let mut out = String::from("tile/");
        match self.kind {
            Kind::Hashes(l) => out.push_str(&l.to_string()),
            Kind::Entries => out.push_str("entries"),
        }
        out.push('/');
        push_index(&mut out, self.index);
        if !self.is_full() {
            out.push_str(&format!(".p/{}", self.width));
        }
        out
    }

    /// Parses a path as [`Tile::path`] writes it (strictly: no leading zeroes where the
    /// specification forbids them, no empty groups).
    pub fn parse(path: &str) -> Option<Self> {
        let rest = path.strip_prefix("tile/")?;
        let (kind_s, rest) = rest.split_once('/')?;
        let kind = if kind_s == "entries" {
            Kind::Entries
        } else {
            let l: u8 = kind_s.parse().ok()?;
            if l.to_string() != kind_s || u32::from(l) * HEIGHT >= 64 {
                return None;
            }
            Kind::Hashes(l)
        };
        let (idx, width) = match rest.split_once(".p/") {
            Some((i, w)) => {
                let w: u16 = w.parse().ok()?;
                if w == 0 || u64::from(w) >= WIDTH || w.to_string() != rest.split_once(".p/")?.1 {
                    return None;
                }
                (i, w)
            }
            None => (rest, WIDTH as u16),
        };
        let groups: Vec<&str> = idx.split('/').collect();
        let mut index: u64 = 0;
        for (i, g) in groups.iter().enumerate() {
            let digits = if i + 1 < groups.len() {
                g.strip_prefix('x')?
            } else {
                g
            };
            if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            index = index
                .checked_mul(1000)?
                .checked_add(digits.parse::<u64>().ok()?)?;
        }
        // The canonical form has no leading all-zero group.
        if groups.len() > 1 && groups[0] == "x000" {
            return None;
        }
        Some(Self { kind, index, width })
    }

    /// The tree level of the hashes a hash tile holds (0 for entry bundles: leaves).
    pub fn tree_level(&self) -> u32 {
        match self.kind {
            Kind::Hashes(l) => u32::from(l) * HEIGHT,
            Kind::Entries => 0,
        }
    }

    /// The complete subtrees whose hashes this tile holds, in order.
    pub fn nodes(&self) -> Vec<NodeId> {
        let level = self.tree_level();
        let first = self.index * WIDTH;
        (first..first + u64::from(self.width))
            .map(|index| NodeId { level, index })
            .collect()
    }

    /// The leaves `[start, end)` this tile's hashes (or entries) cover.
    pub fn leaf_range(&self) -> Option<(u64, u64)> {
        let level = self.tree_level();
        let first = (self.index.checked_mul(WIDTH)?).checked_shl(level)?;
        let end = (self.index.checked_mul(WIDTH)? + u64::from(self.width)).checked_shl(level)?;
        // checked_shl only refuses shifts ≥ 64; refuse overflow of the value too.
        if (end >> level) != self.index * WIDTH + u64::from(self.width) {
            return None;
        }
        Some((first, end))
    }

    /// Whether a tree of `size` holds everything this tile needs.
    pub fn within(&self, size: u64) -> bool {
        self.leaf_range().is_some_and(|(_, end)| end <= size)
    }
}

/// Every tile and entry bundle of a tree of `size`: full ones and the partial one at the
/// right edge of each level.
pub fn tiles_for(size: u64) -> Vec<Tile> {
    tiles_between(0, size)
}

/// The tiles a tree of `new` has that one of `old` did not: the full tiles completed in
/// between and the partial tiles at `new`'s right edge.
pub fn tiles_between(old: u64, new: u64) -> Vec<Tile> {
    let mut out = Vec::new();
    let mut level: u32 = 0;
    loop {
        let shift = level * HEIGHT;
        if shift >= 64 {
            break;
        }
        let count_new = new >> shift;
        let count_old = old >> shift;
        if count_new == 0 {
            break;
        }
        let (full_old, full_new) = (count_old / WIDTH, count_new / WIDTH);
        for kind in kinds(level) {
            for index in full_old..full_new {
                out.push(Tile {
                    kind,
                    index,
                    width: WIDTH as u16,
                });
            }
            let w = count_new % WIDTH;
            if w > 0 && count_new != count_old {
                out.push(Tile {
                    kind,
                    index: full_new,
                    width: w as u16,
                });
            }
        }
        level += 1;
    }
    out
}

fn kinds(level: u32) -> Vec<Kind> {
    let mut k = vec![Kind::Hashes(level as u8)];
    if level == 0 {
        k.push(Kind::Entries);
    }
    k
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BundleError {
    #[error("entry {0} is longer than 65535 bytes")]
    TooLong(usize),
    #[error("entry bundle is truncated")]
    Truncated,
}

/// An entry bundle: each entry as a big-endian u16 length and its bytes.
pub fn encode_bundle<'a>(
    entries: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<u8>, BundleError> {
    let mut out = Vec::new();
    for (i, e) in entries.into_iter().enumerate() {
        let len = u16::try_from(e.len()).map_err(|_| BundleError::TooLong(i))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    Ok(out)
}

pub fn decode_bundle(mut data: &[u8]) -> Result<Vec<&[u8]>, BundleError> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let [a, b, rest @ ..] = data else {
            return Err(BundleError::Truncated);
        };
        let len = usize::from(u16::from_be_bytes([*a, *b]));
        if rest.len() < len {
            return Err(BundleError::Truncated);
        }
        out.push(&rest[..len]);
        data = &rest[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_as_the_specification_writes_them() {
        let t = |kind, index, width| Tile { kind, index, width };
        assert_eq!(
            t(Kind::Hashes(0), 1234067, 256).path(),
            "tile/0/x001/x234/067"
        );
        assert_eq!(t(Kind::Hashes(1), 5, 17).path(), "tile/1/005.p/17");
        assert_eq!(t(Kind::Entries, 1000, 256).path(), "tile/entries/x001/000");
        for tile in [
            t(Kind::Hashes(0), 1234067, 256),
            t(Kind::Hashes(2), 0, 1),
            t(Kind::Entries, 999, 255),
        ] {
            assert_eq!(Tile::parse(&tile.path()), Some(tile));
        }
        for bad in [
            "tile/0/1",
            "tile/00/001",
            "tile/0/001.p/0",
            "tile/0/001.p/256",
            "tile/0/001.p/07",
            "tile/0/x000/001",
            "tile/0/001/002",
            "tile/8/000",
            "tile/x/000",
            "tiles/0/000",
        ] {
            assert_eq!(Tile::parse(bad), None, "{bad}");
        }
    }

    /// The specification's example: a tree of 70,000.
    #[test]
    fn tiles_of_seventy_thousand() {
        let all = tiles_for(70_000);
        let level = |l| all.iter().filter(move |t| t.kind == Kind::Hashes(l));
        assert_eq!(level(0).filter(|t| t.is_full()).count(), 273);
        assert_eq!(
            level(0)
                .filter(|t| !t.is_full())
                .map(|t| t.width)
                .collect::<Vec<_>>(),
            vec![112]
        );
        assert_eq!(level(1).filter(|t| t.is_full()).count(), 1);
        assert_eq!(
            level(1)
                .filter(|t| !t.is_full())
                .map(|t| t.width)
                .collect::<Vec<_>>(),
            vec![17]
        );
        assert_eq!(level(2).map(|t| t.width).collect::<Vec<_>>(), vec![1]);
        assert_eq!(all.iter().filter(|t| t.kind == Kind::Entries).count(), 274);
        assert!(all.iter().all(|t| t.within(70_000)));
        assert_eq!(
            tiles_for(256).iter().map(Tile::path).collect::<Vec<_>>(),
            vec!["tile/0/000", "tile/entries/000", "tile/1/000.p/1"]
        );
    }

    #[test]
    fn incremental_tiles_add_up() {
        let mut seen = std::collections::BTreeSet::new();
        let mut old = 0;
        for new in [1u64, 255, 256, 300, 65_536, 70_000, 70_000] {
            for t in tiles_between(old, new) {
                assert!(t.within(new));
                seen.insert(t);
            }
            old = new;
        }
        for t in tiles_for(70_000) {
            assert!(seen.contains(&t), "{}", t.path());
        }
    }

    #[test]
    fn bundles_round_trip() {
        let entries: Vec<&[u8]> = vec![b"", b"a", &[7u8; 300]];
        let b = encode_bundle(entries.iter().copied()).unwrap();
        assert_eq!(&b[..2], &[0, 0]);
        assert_eq!(decode_bundle(&b).unwrap(), entries);
        assert_eq!(
            decode_bundle(&b[..b.len() - 1]),
            Err(BundleError::Truncated)
        );
        let big = vec![0u8; 70_000];
        assert_eq!(
            encode_bundle([big.as_slice()]),
            Err(BundleError::TooLong(0))
        );
    }
}
