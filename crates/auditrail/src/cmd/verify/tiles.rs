//! `auditrail verify https://host/logs/{org}`: a C2SP tlog-tiles log checked from its
//! tiles alone. Every entry bundle is fetched and hashed; every hash tile is compared with
//! the hashes recomputed from the leaves; the root is folded and matched with the
//! checkpoint, whose signature (and cosignatures) are checked.

use anyhow::{Context, bail};
use auditrail_core::merkle::{self, Hash};
use auditrail_core::note::{Checkpoint, NoteVerifier, split_note};
use auditrail_core::tiles::{self, Kind, Tile};
use base64::Engine;

use super::witnesses::Policy;

pub struct TilesReport {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    pub pruned: u64,
    pub cosigned_by: Vec<String>,
}

/// Where the tiles are read from: a server, or a bucket (or directory) prefix.
pub enum Source {
    Http {
        http: reqwest::Client,
        token: Option<String>,
    },
    Store(std::sync::Arc<dyn object_store::ObjectStore>),
}

/// The most a tile or bundle may hold once decompressed: a full bundle of the largest
/// entries tlog-tiles allows (256 × (2 + 65,535) bytes). Anything beyond is refused
/// rather than inflated without bound.
const MAX_DECODED: u64 = 256 * (2 + 65_535);

impl Source {
    async fn get(&self, url: &str) -> anyhow::Result<Option<bytes::Bytes>> {
        let (body, encoding) = match self {
            Source::Http { http, token } => {
                // tlog-tiles: clients should accept gzip and identity.
                let mut req = http
                    .get(url)
                    .header(reqwest::header::ACCEPT_ENCODING, "gzip, identity");
                if let Some(t) = token {
                    req = req.bearer_auth(t);
                }
                let resp = req
                    .send()
                    .await
                    .with_context(|| format!("{url}: cannot fetch"))?;
                match resp.status().as_u16() {
                    200 => {}
                    404 => return Ok(None),
                    s => bail!("{url}: answered {s}"),
                }
                let encoding = resp
                    .headers()
                    .get(reqwest::header::CONTENT_ENCODING)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body = resp
                    .bytes()
                    .await
                    .with_context(|| format!("{url}: cannot read"))?;
                (body, encoding)
            }
            Source::Store(store) => {
                use object_store::ObjectStoreExt;
                match store.get(&object_store::path::Path::from(url)).await {
                    Ok(r) => {
                        let encoding = r
                            .attributes
                            .get(&object_store::Attribute::ContentEncoding)
                            .map(|v| v.to_string());
                        let body = r
                            .bytes()
                            .await
                            .with_context(|| format!("{url}: cannot read"))?;
                        (body, encoding)
                    }
                    Err(object_store::Error::NotFound { .. }) => return Ok(None),
                    Err(e) => return Err(anyhow::anyhow!("{url}: {e}")),
                }
            }
        };
        decode(url, body, encoding.as_deref()).map(Some)
    }
}

/// A resource's bytes without their content encoding. `gzip` is what a bucket or server
/// says it used; a copy on disk has lost that, so gzip's magic bytes (`1f 8b 08`) say it
/// instead: no bundle of auditrail's begins so, since its first entry would have to be
/// 8,075 bytes starting with byte 0x08, where every event starts with `{`.
pub(crate) fn decode(
    url: &str,
    body: bytes::Bytes,
    encoding: Option<&str>,
) -> anyhow::Result<bytes::Bytes> {
    use std::io::Read;
    let gzipped = match encoding.map(|e| e.trim().to_ascii_lowercase()) {
        Some(e) if e == "gzip" || e == "x-gzip" => true,
        Some(e) if e.is_empty() || e == "identity" => false,
        Some(e) => bail!("{url}: content encoding {e:?} is not one verify reads (gzip, identity)"),
        None => body.starts_with(&[0x1f, 0x8b, 0x08]),
    };
    if !gzipped {
        return Ok(body);
    }
    let mut out = Vec::with_capacity(body.len() * 5);
    flate2::read::MultiGzDecoder::new(&body[..])
        .take(MAX_DECODED + 1)
        .read_to_end(&mut out)
        .with_context(|| format!("{url}: not valid gzip"))?;
    if out.len() as u64 > MAX_DECODED {
        bail!("{url}: decompresses to more than {MAX_DECODED} bytes, more than any tile holds");
    }
    Ok(out.into())
}

pub async fn verify(
    source: &Source,
    base: &str,
    key: Option<&NoteVerifier>,
    policy: &Policy,
) -> anyhow::Result<TilesReport> {
    let base = base.trim_end_matches('/');
    let fetch = |url: String| async move { source.get(&url).await };
    let note_bytes = fetch(format!("{base}/checkpoint"))
        .await?
        .with_context(|| format!("{base}/checkpoint: not found"))?;
    let note = String::from_utf8(note_bytes.to_vec()).context("the checkpoint is not UTF-8")?;
    let text = match key {
        Some(k) => k
            .verify(&note)
            .map_err(|e| anyhow::anyhow!("checkpoint: {e}"))?,
        None => {
            split_note(&note)
                .map_err(|e| anyhow::anyhow!("checkpoint: {e}"))?
                .0
        }
    };
    let cp = Checkpoint::parse(text).map_err(|e| anyhow::anyhow!("checkpoint: {e}"))?;
    let cosigned_by = policy.check("checkpoint", &note)?;
    let size = cp.size;
    // Level 0 from the entry bundles (or, where retention pruned them, the hash tiles).
    let mut leaves: Vec<Hash> = Vec::with_capacity(size as usize);
    let mut pruned = 0u64;
    let bundles = size.div_ceil(tiles::WIDTH);
    for n in 0..bundles {
        let width = (size - n * tiles::WIDTH).min(tiles::WIDTH) as u16;
        let t = Tile {
            kind: Kind::Entries,
            index: n,
            width,
        };
        let url = format!("{base}/{}", t.path());
        match fetch(url.clone()).await? {
            Some(b) => {
                let entries =
                    tiles::decode_bundle(&b).map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
                if entries.len() != usize::from(width) {
                    bail!("{url}: {} entries, {width} expected", entries.len());
                }
                leaves.extend(entries.iter().map(|e| merkle::leaf_hash(e)));
            }
            None => {
                let h = Tile {
                    kind: Kind::Hashes(0),
                    index: n,
                    width,
                };
                let url = format!("{base}/{}", h.path());
                let b = fetch(url.clone())
                    .await?
                    .with_context(|| format!("{url}: entries pruned and hash tile missing"))?;
                pruned += u64::from(width);
                leaves.extend(split_hashes(&url, &b, width)?);
            }
        }
    }
    // Every level's complete nodes, recomputed from the leaves.
    let mut levels: Vec<Vec<Hash>> = vec![leaves];
    while levels.last().is_some_and(|l| l.len() > 1) {
        let below = levels.last().map(Vec::as_slice).unwrap_or_default();
        let up: Vec<Hash> = below
            .chunks_exact(2)
            .map(|p| merkle::node_hash(&p[0], &p[1]))
            .collect();
        levels.push(up);
    }
    for t in tiles::tiles_for(size) {
        let Kind::Hashes(_) = t.kind else { continue };
        let url = format!("{base}/{}", t.path());
        let b = fetch(url.clone())
            .await?
            .with_context(|| format!("{url}: missing"))?;
        let got = split_hashes(&url, &b, t.width)?;
        let level = &levels[t.tree_level() as usize];
        let first = (t.index * tiles::WIDTH) as usize;
        for (i, h) in got.iter().enumerate() {
            if level.get(first + i) != Some(h) {
                bail!(
                    "{url}: hash {i} does not match the one recomputed from the entries (leaves {}..)",
                    ((first + i) as u64) << t.tree_level()
                );
            }
        }
    }
    let parts: Vec<Hash> = merkle::frontier_ids(size)
        .iter()
        .map(|id| levels[id.level as usize][id.index as usize])
        .collect();
    let root = merkle::fold(&parts);
    if root != cp.root {
        bail!(
            "the root recomputed from the tiles ({}) is not the checkpoint's ({})",
            base64::engine::general_purpose::STANDARD.encode(root),
            base64::engine::general_purpose::STANDARD.encode(cp.root)
        );
    }
    Ok(TilesReport {
        origin: cp.origin,
        size,
        root,
        pruned,
        cosigned_by,
    })
}

fn split_hashes(url: &str, b: &[u8], width: u16) -> anyhow::Result<Vec<Hash>> {
    if b.len() != usize::from(width) * 32 {
        bail!(
            "{url}: {} bytes, {} expected",
            b.len(),
            usize::from(width) * 32
        );
    }
    Ok(b.chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            h
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(b: &[u8]) -> bytes::Bytes {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap().into()
    }

    #[test]
    fn bundles_are_read_whether_stored_gzip_or_raw() {
        let raw = tiles::encode_bundle([&b"{\"a\":1}"[..], b"{}"]).unwrap();
        let raw = bytes::Bytes::from(raw);
        // Said by the store, found by the magic bytes, or plain.
        assert_eq!(decode("u", gz(&raw), Some("gzip")).unwrap(), raw);
        assert_eq!(decode("u", gz(&raw), None).unwrap(), raw);
        assert_eq!(decode("u", raw.clone(), None).unwrap(), raw);
        assert_eq!(decode("u", raw.clone(), Some("identity")).unwrap(), raw);
        // Encodings it cannot read, and gzip that is not, are named.
        let e = decode("u", raw.clone(), Some("br"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"br\""), "{e}");
        let e = decode("u", raw.clone(), Some("gzip"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not valid gzip"), "{e}");
    }

    #[test]
    fn a_decompression_bomb_is_refused() {
        let big = vec![0u8; (MAX_DECODED + 10) as usize];
        let e = decode("u", gz(&big), None).unwrap_err().to_string();
        assert!(e.contains("more than"), "{e}");
    }
}
