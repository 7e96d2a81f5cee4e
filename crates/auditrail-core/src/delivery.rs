//! The layout of a delivered log (object and checkpoint keys) and its offline
//! verification: every seq exactly once, every leaf recomputed, every signed checkpoint's
//! root matched. Pure: callers list and read the objects.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::merkle::{Frontier, Hash, leaf_hash};
use crate::note::{Checkpoint, NoteVerifier};

/// How delivered objects are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectFormat {
    NdjsonGz,
    CsvGz,
    Parquet,
    /// OCSF API Activity records, gzip'd JSON lines.
    Ocsf,
    /// OCSF API Activity records, Parquet (Amazon Security Lake's form).
    OcsfParquet,
}

impl ObjectFormat {
    pub const ALL: [ObjectFormat; 5] = [
        Self::NdjsonGz,
        Self::CsvGz,
        Self::Parquet,
        Self::Ocsf,
        Self::OcsfParquet,
    ];
    pub const NAMES: &'static str = "ndjson.gz, csv.gz, parquet, ocsf or ocsf_parquet";

    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            Self::NdjsonGz => "ndjson.gz",
            Self::CsvGz => "csv.gz",
            Self::Parquet => "parquet",
            Self::Ocsf => "ocsf",
            Self::OcsfParquet => "ocsf_parquet",
        }
    }

    /// The extension of the objects' keys.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Ocsf => "ocsf.json.gz",
            Self::OcsfParquet => "ocsf.parquet",
            other => other.name(),
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == s)
    }

    fn from_extension(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.extension() == s)
    }

    /// Whether objects hold OCSF records rather than the stored events.
    pub fn is_ocsf(self) -> bool {
        matches!(self, Self::Ocsf | Self::OcsfParquet)
    }
}

/// Stored and shown by its name; an unknown name is refused where it is read.
impl serde::Serialize for ObjectFormat {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for ObjectFormat {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&name).ok_or_else(|| {
            serde::de::Error::custom(format!("unknown format `{name}`: {}", Self::NAMES))
        })
    }
}

/// Where the org's part of a destination begins: `{prefix}/org={org}`.
pub fn org_dir(prefix: &str, org: &str) -> String {
    if prefix.is_empty() {
        format!("org={org}")
    } else {
        format!("{prefix}/org={org}")
    }
}

/// `{prefix}/org={org}/dt={date}/{org}-{first:020}-{last:020}.{ext}`.
pub fn object_key(
    prefix: &str,
    org: &str,
    date: &str,
    first: u64,
    last: u64,
    format: ObjectFormat,
) -> String {
    format!(
        "{}/dt={date}/{org}-{first:020}-{last:020}.{}",
        org_dir(prefix, org),
        format.extension()
    )
}

/// Amazon Security Lake's custom-source layout for one batch:
/// `ext/{source}/region={region}/accountId={account}/eventDay={YYYYMMDD}/{org}-{first:020}-{last:020}.ocsf.parquet`.
pub fn security_lake_key(
    source: &str,
    region: &str,
    account: &str,
    date: &str,
    org: &str,
    first: u64,
    last: u64,
) -> String {
    let day: String = date.chars().filter(|c| *c != '-').collect();
    format!(
        "ext/{source}/region={region}/accountId={account}/eventDay={day}/{org}-{first:020}-{last:020}.{}",
        ObjectFormat::OcsfParquet.extension()
    )
}

/// Where auditrail's own files (checkpoints, tiles) go in a Security Lake source:
/// `ext/{source}/_auditrail`, inside the prefix the source's role may write to, in a
/// folder that Hive-style readers (Glue, Athena) skip for its leading `_`.
pub fn security_lake_prefix(source: &str) -> String {
    format!("ext/{source}/_auditrail")
}

/// `{prefix}/org={org}/_checkpoints/{size:020}.note`.
pub fn checkpoint_key(prefix: &str, org: &str, size: u64) -> String {
    format!("{}/_checkpoints/{size:020}.note", org_dir(prefix, org))
}

/// Where the tree's edge before the first delivered seq is written, when delivery does
/// not start at seq 1: `{prefix}/org={org}/_checkpoints/{size:020}.frontier`.
pub fn frontier_key(prefix: &str, org: &str, size: u64) -> String {
    format!("{}/_checkpoints/{size:020}.frontier", org_dir(prefix, org))
}

/// The org's log as C2SP tlog-tiles beside the delivered objects:
/// `{prefix}/org={org}/_tlog` (holding `checkpoint` and `tile/...`).
pub fn tlog_dir(prefix: &str, org: &str) -> String {
    format!("{}/_tlog", org_dir(prefix, org))
}

/// The `YYYY-MM-DD` of an RFC 3339 UTC timestamp, as `dt` partitions use.
pub fn date_of(received_at: &str) -> Option<&str> {
    let d = received_at.get(..10)?;
    let b = d.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    (digits(0..4) && b[4] == b'-' && digits(5..7) && b[7] == b'-' && digits(8..10)).then_some(d)
}

/// What a key below a destination's prefix holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Object {
        org: String,
        date: String,
        first: u64,
        last: u64,
        format: ObjectFormat,
    },
    Checkpoint {
        org: String,
        size: u64,
    },
    Frontier {
        org: String,
        size: u64,
    },
    /// The tlog-tiles checkpoint (`_tlog/checkpoint`).
    TlogCheckpoint {
        org: String,
    },
    /// A tile or entry bundle (`_tlog/tile/...`).
    Tile {
        org: String,
        tile: crate::tiles::Tile,
    },
}

fn seq20(s: &str) -> Option<u64> {
    (s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Reads a key relative to the destination's prefix (`org=…/…`); `None` if it is not
/// one auditrail writes.
pub fn classify(rel: &str) -> Option<Entry> {
    let mut parts = rel.split('/');
    let org = parts.next()?.strip_prefix("org=")?.to_owned();
    let dir = parts.next()?;
    if dir == "_tlog" && !org.is_empty() {
        let rest = rel.split_once("/_tlog/")?.1;
        if rest == "checkpoint" {
            return Some(Entry::TlogCheckpoint { org });
        }
        let tile = crate::tiles::Tile::parse(rest)?;
        return Some(Entry::Tile { org, tile });
    }
    let file = parts.next()?;
    if parts.next().is_some() || org.is_empty() {
        return None;
    }
    if dir == "_checkpoints" {
        if let Some(size) = file.strip_suffix(".note").and_then(seq20) {
            return Some(Entry::Checkpoint { org, size });
        }
        let size = file.strip_suffix(".frontier").and_then(seq20)?;
        return Some(Entry::Frontier { org, size });
    }
    let date = dir.strip_prefix("dt=")?;
    date_of(date).filter(|d| d.len() == date.len())?;
    let rest = file.strip_prefix(&org)?.strip_prefix('-')?;
    let (first, rest) = rest.split_at_checked(20)?;
    let rest = rest.strip_prefix('-')?;
    let (last, ext) = rest.split_at_checked(20)?;
    let format = ObjectFormat::from_extension(ext.strip_prefix('.')?)?;
    let (first, last) = (seq20(first)?, seq20(last)?);
    (first >= 1 && last >= first).then(|| Entry::Object {
        org,
        date: date.to_owned(),
        first,
        last,
        format,
    })
}

/// Reads a key below a Security Lake source (`ext/{source}/…`): an object auditrail wrote
/// there (`region=…/accountId=…/eventDay=YYYYMMDD/{org}-{first}-{last}.ocsf.parquet`), or
/// one of its own files under `_auditrail/` (checkpoints, tiles); `None` otherwise.
pub fn classify_security_lake(rel: &str) -> Option<Entry> {
    if let Some(own) = rel.strip_prefix("_auditrail/") {
        return classify(own);
    }
    let mut parts = rel.split('/');
    parts.next()?.strip_prefix("region=")?;
    parts.next()?.strip_prefix("accountId=")?;
    let day = parts.next()?.strip_prefix("eventDay=")?;
    let file = parts.next()?;
    if parts.next().is_some() || day.len() != 8 || !day.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let date = format!("{}-{}-{}", &day[..4], &day[4..6], &day[6..]);
    let name = file.strip_suffix(&format!(".{}", ObjectFormat::OcsfParquet.extension()))?;
    // `{org}-{first:020}-{last:020}`: the org may hold '-', the seqs never do.
    let (rest, last) = name.rsplit_once('-')?;
    let (org, first) = rest.rsplit_once('-')?;
    let (first, last) = (seq20(first)?, seq20(last)?);
    (!org.is_empty() && first >= 1 && last >= first).then(|| Entry::Object {
        org: org.to_owned(),
        date,
        first,
        last,
        format: ObjectFormat::OcsfParquet,
    })
}

/// The tree's edge before delivery began, as the `.frontier` file holds it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FrontierFile {
    pub size: u64,
    /// Hex hashes of the complete subtrees covering `[0, size)`, largest first.
    pub hashes: Vec<String>,
}

impl FrontierFile {
    pub fn to_frontier(&self) -> Option<Frontier> {
        let hashes = self
            .hashes
            .iter()
            .map(|h| hex::decode(h).ok()?.try_into().ok())
            .collect::<Option<Vec<Hash>>>()?;
        Frontier::from_parts(self.size, hashes)
    }
}

/// The first thing wrong with a delivered log: which object (or checkpoint) and seq.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyError {
    pub object: String,
    pub seq: Option<u64>,
    pub reason: String,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.seq {
            Some(s) => write!(f, "{} (seq {s}): {}", self.object, self.reason),
            None => write!(f, "{}: {}", self.object, self.reason),
        }
    }
}

impl std::error::Error for VerifyError {}

fn fail(object: &str, seq: Option<u64>, reason: impl Into<String>) -> VerifyError {
    VerifyError {
        object: object.to_owned(),
        seq,
        reason: reason.into(),
    }
}

/// Recomputes the leaf of one NDJSON line (the stored event plus `leaf_hash`); returns
/// the seq, the leaf, and the event's `received_at`.
pub fn line_leaf(line: &str) -> Result<(u64, Hash, String), String> {
    let mut v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v.as_object_mut().ok_or("not a JSON object")?;
    let claimed = obj
        .remove("leaf_hash")
        .and_then(|h| h.as_str().and_then(|h| hex::decode(h).ok()))
        .ok_or("no hex leaf_hash")?;
    let seq = obj
        .get("seq")
        .and_then(Value::as_u64)
        .ok_or("no numeric seq")?;
    let received = obj
        .get("received_at")
        .and_then(Value::as_str)
        .ok_or("no received_at")?
        .to_owned();
    let canonical = crate::canonical::to_string(&v).map_err(|e| e.to_string())?;
    let leaf = leaf_hash(canonical.as_bytes());
    if claimed != leaf {
        return Err(format!(
            "leaf_hash {} does not match the event (recomputed {})",
            hex::encode(claimed),
            hex::encode(leaf)
        ));
    }
    Ok((seq, leaf, received))
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub org: String,
    /// Seqs from `first_seq` to `size` are in the bucket, each once.
    pub first_seq: u64,
    pub size: u64,
    pub root: Hash,
    pub objects: u64,
    /// Checkpoints whose root was matched (and signature checked, with a key).
    pub checkpoints: u64,
    /// Objects whose leaves could not be recomputed (not NDJSON).
    pub unhashed_objects: u64,
}

/// Verifies one org's delivered log. Feed every checkpoint first, then the objects in
/// seq order, then call [`OrgVerifier::finish`].
pub struct OrgVerifier {
    org: String,
    key: Option<NoteVerifier>,
    tree: Frontier,
    first_seq: u64,
    /// Signed roots by tree size, with the checkpoint's name.
    checkpoints: BTreeMap<u64, (Hash, String)>,
    matched: u64,
    objects: u64,
    unhashed: u64,
    /// Set once an object could not be hashed: later roots cannot be checked.
    blind: bool,
}

impl OrgVerifier {
    pub fn new(org: &str, key: Option<NoteVerifier>) -> Self {
        Self {
            org: org.to_owned(),
            key,
            tree: Frontier::new(),
            first_seq: 1,
            checkpoints: BTreeMap::new(),
            matched: 0,
            objects: 0,
            unhashed: 0,
            blind: false,
        }
    }

    /// Starts from the tree's edge before the first delivered seq.
    pub fn start_from(&mut self, name: &str, file: &FrontierFile) -> Result<(), VerifyError> {
        if self.objects > 0 || self.tree.size() > 0 {
            return Err(fail(name, None, "more than one starting frontier"));
        }
        self.tree = file
            .to_frontier()
            .ok_or_else(|| fail(name, None, "malformed frontier"))?;
        self.first_seq = file.size + 1;
        Ok(())
    }

    /// Checks a checkpoint note's signature (with a key) and origin, and remembers its root.
    pub fn add_checkpoint(&mut self, name: &str, size: u64, note: &str) -> Result<(), VerifyError> {
        let body = match &self.key {
            Some(k) => k
                .verify(note)
                .map_err(|e| fail(name, None, format!("signature: {e}")))?,
            None => note,
        };
        let cp = Checkpoint::parse(body).map_err(|e| fail(name, None, e.to_string()))?;
        if cp.size != size {
            return Err(fail(
                name,
                None,
                format!("names size {size} but signs size {}", cp.size),
            ));
        }
        if !cp.origin.ends_with(&format!("/{}", self.org)) {
            return Err(fail(
                name,
                None,
                format!("origin {} is not org {}'s log", cp.origin, self.org),
            ));
        }
        self.checkpoints.insert(size, (cp.root, name.to_owned()));
        Ok(())
    }

    fn expect_range(&self, name: &str, first: u64, last: u64) -> Result<(), VerifyError> {
        let next = self.tree.size() + 1;
        if first < next {
            let what = if last < next { "repeats" } else { "overlaps" };
            return Err(fail(
                name,
                Some(first),
                format!("{what} seqs already delivered (up to {})", next - 1),
            ));
        }
        if first > next {
            return Err(fail(
                name,
                Some(next),
                format!("seqs {next}..{} are missing", first - 1),
            ));
        }
        Ok(())
    }

    fn check_root(&mut self, name: &str) -> Result<(), VerifyError> {
        let size = self.tree.size();
        if let Some((root, cp)) = self.checkpoints.get(&size) {
            if *root != self.tree.root() {
                return Err(fail(
                    name,
                    Some(size),
                    format!("the leaves up to seq {size} do not match the root signed by {cp}"),
                ));
            }
            self.matched += 1;
        }
        Ok(())
    }

    /// Verifies an NDJSON object holding seqs `first..=last`, received on `date`.
    pub fn ndjson_object<'a>(
        &mut self,
        name: &str,
        date: &str,
        first: u64,
        last: u64,
        lines: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), VerifyError> {
        self.expect_range(name, first, last)?;
        if self.blind {
            return self.skip_object(name, first, last);
        }
        for (i, line) in lines.into_iter().enumerate() {
            if line.is_empty() {
                continue;
            }
            let want = first + i as u64;
            let (seq, leaf, received) = line_leaf(line).map_err(|r| fail(name, Some(want), r))?;
            if seq != want {
                return Err(fail(
                    name,
                    Some(want),
                    format!("line {} holds seq {seq}", i + 1),
                ));
            }
            if seq > last {
                return Err(fail(
                    name,
                    Some(seq),
                    format!("holds seqs beyond its name's last {last}"),
                ));
            }
            if seq == first && date_of(&received) != Some(date) {
                return Err(fail(
                    name,
                    Some(seq),
                    format!("first event was received {received}, not on dt={date}"),
                ));
            }
            self.tree.push(leaf, |_, _| {});
            self.check_root(name)?;
        }
        if self.tree.size() != last {
            return Err(fail(
                name,
                Some(self.tree.size() + 1),
                format!("ends before its name's last seq {last}"),
            ));
        }
        self.objects += 1;
        Ok(())
    }

    /// Accounts for an object whose leaves cannot be recomputed (CSV, Parquet): its
    /// range is checked, roots after it are not.
    pub fn skip_object(&mut self, name: &str, first: u64, last: u64) -> Result<(), VerifyError> {
        self.expect_range(name, first, last)?;
        // Keep counting seqs with placeholder leaves; roots are no longer checkable.
        for _ in first..=last {
            self.tree.push([0u8; 32], |_, _| {});
        }
        self.blind = true;
        self.objects += 1;
        self.unhashed += 1;
        Ok(())
    }

    /// Every checkpoint must be reached by the delivered seqs, and the last delivered seq
    /// must be covered by one.
    pub fn finish(self) -> Result<Verified, VerifyError> {
        let size = self.tree.size();
        let org = format!("org={}", self.org);
        if let Some((cp_size, (_, name))) = self.checkpoints.range(size + 1..).next() {
            return Err(fail(
                name,
                Some(size + 1),
                format!(
                    "signs a tree of {cp_size} seqs but the bucket holds seqs only up to {size}"
                ),
            ));
        }
        if !self.blind && size >= self.first_seq {
            let covered = self.checkpoints.keys().next_back().copied().unwrap_or(0);
            if covered < size {
                return Err(fail(
                    &org,
                    Some(covered.max(self.first_seq - 1) + 1),
                    format!(
                        "seqs {}..{size} are not covered by any signed checkpoint",
                        covered.max(self.first_seq - 1) + 1
                    ),
                ));
            }
        }
        Ok(Verified {
            org: self.org,
            first_seq: self.first_seq,
            size,
            root: self.tree.root(),
            objects: self.objects,
            checkpoints: self.matched,
            unhashed_objects: self.unhashed,
        })
    }
}

#[cfg(test)]
#[path = "delivery_tests.rs"]
mod tests;
