//! `auditrail verify FILE`: an export checked offline against its proof (`FILE.proof`):
//! the checkpoint's signature and cosignatures, every row's leaf, and the multi-leaf
//! proof that the rows are exactly the ones the log holds at those seqs.

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use auditrail_core::delivery::line_leaf;
use auditrail_core::export_proof::{ExportProof, check_rows};
use auditrail_core::merkle::Hash;
use auditrail_core::note::{Checkpoint, NoteVerifier, split_note};

use super::witnesses::Policy;

pub struct FileReport {
    pub rows: u64,
    pub size: u64,
    /// Whether each row's leaf was recomputed from its content (NDJSON) or taken from
    /// its Leaf_Hash cell (CSV full layout, Parquet).
    pub recomputed: bool,
    pub cosigned_by: Vec<String>,
}

enum Kind {
    Ndjson,
    Csv,
    Parquet,
}

fn kind_of(path: &Path) -> anyhow::Result<(Kind, bool)> {
    let name = path.to_string_lossy().to_ascii_lowercase();
    let gz = name.ends_with(".gz");
    let base = name.trim_end_matches(".gz");
    Ok(if base.ends_with(".ndjson") || base.ends_with(".jsonl") {
        (Kind::Ndjson, gz)
    } else if base.ends_with(".csv") {
        (Kind::Csv, gz)
    } else if base.ends_with(".parquet") {
        (Kind::Parquet, false)
    } else {
        bail!(
            "{}: not an export (.ndjson, .csv or .parquet, optionally .gz)",
            path.display()
        )
    })
}

fn open(path: &Path, gz: bool) -> anyhow::Result<Box<dyn Read>> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(if gz {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
            1 << 20,
            f,
        )))
    } else {
        Box::new(f)
    })
}

#[derive(serde::Deserialize)]
struct SeqOnly {
    seq: u64,
}

/// One NDJSON row: its seq and the leaf recomputed from its bytes. The line is the
/// stored event as hashed with `,"leaf_hash":"<hex>"` spliced in before the final `}`,
/// so the event's bytes are the line without that field.
fn ndjson_row(line: &str) -> Result<(u64, Hash), String> {
    use sha2::Digest;
    const FIELD: &str = ",\"leaf_hash\":\"";
    let fast = line.len().checked_sub(FIELD.len() + 64 + 2).filter(|&at| {
        line.is_char_boundary(at) && line[at..].starts_with(FIELD) && line.ends_with("\"}")
    });
    let Some(at) = fast else {
        // Not as auditrail writes it (reformatted?): canonicalize and compare.
        return line_leaf(line).map(|(seq, leaf, _)| (seq, leaf));
    };
    let mut h = sha2::Sha256::new();
    h.update([0u8]);
    h.update(&line.as_bytes()[..at]);
    h.update(b"}");
    let leaf: Hash = h.finalize().into();
    let claimed = &line[at + FIELD.len()..line.len() - 2];
    let mut want = [0u8; 32];
    hex::decode_to_slice(claimed, &mut want)
        .map_err(|_| "leaf_hash is not 64 hex digits".to_owned())?;
    if want != leaf {
        return Err(format!(
            "its content does not hash to its leaf_hash (recomputed {})",
            hex::encode(leaf)
        ));
    }
    let seq = serde_json::from_str::<SeqOnly>(line)
        .map_err(|e| format!("no numeric seq: {e}"))?
        .seq;
    Ok((seq, leaf))
}

/// Bytes read at a time; each block's lines are hashed on two threads.
const BLOCK: usize = 8 << 20;

fn rows_of(lines: &[&[u8]], first_line: u64) -> Result<Vec<(u64, u64, Hash)>, String> {
    let mut out = Vec::with_capacity(lines.len());
    for (i, l) in lines.iter().enumerate() {
        if l.is_empty() {
            continue;
        }
        let n = first_line + i as u64;
        let line = std::str::from_utf8(l).map_err(|_| format!("row {n}: not UTF-8"))?;
        let (seq, leaf) = ndjson_row(line).map_err(|e| format!("row {n}: {e}"))?;
        out.push((n, seq, leaf));
    }
    Ok(out)
}

fn ndjson_rows(path: &Path, gz: bool) -> anyhow::Result<Vec<(u64, u64, Hash)>> {
    let mut r = open(path, gz)?;
    let mut rows = Vec::new();
    let mut buf: Vec<u8> = Vec::with_capacity(BLOCK * 2);
    let mut line_no = 1u64;
    let mut eof = false;
    while !eof {
        // Fill to BLOCK bytes (or the end), then cut after the last newline.
        let mut chunk = [0u8; 64 * 1024];
        while buf.len() < BLOCK {
            let n = r
                .read(&mut chunk)
                .with_context(|| format!("{}: cannot read", path.display()))?;
            if n == 0 {
                eof = true;
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let end = if eof {
            buf.len()
        } else {
            match buf.iter().rposition(|&b| b == b'\n') {
                Some(i) => i + 1,
                None => continue, // one line longer than a block: read on
            }
        };
        let block = &buf[..end];
        let mut lines: Vec<&[u8]> = block.split(|&b| b == b'\n').collect();
        if block.ends_with(b"\n") {
            lines.pop();
        }
        let mid = lines.len() / 2;
        let (a, b) = std::thread::scope(|s| {
            let back = s.spawn(|| rows_of(&lines[mid..], line_no + mid as u64));
            let front = rows_of(&lines[..mid], line_no);
            (front, back.join())
        });
        let b = b.map_err(|_| anyhow::anyhow!("a verifying thread failed"))?;
        rows.extend(a.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?);
        rows.extend(b.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?);
        line_no += lines.len() as u64;
        buf.drain(..end);
    }
    Ok(rows)
}

fn hex_leaf(s: &str) -> Option<Hash> {
    let mut h = [0u8; 32];
    hex::decode_to_slice(s.trim(), &mut h).ok()?;
    Some(h)
}

fn csv_rows(path: &Path, gz: bool) -> anyhow::Result<Vec<(u64, u64, Hash)>> {
    let mut r = csv::Reader::from_reader(open(path, gz)?);
    let header = r
        .headers()
        .with_context(|| format!("{}: no CSV header", path.display()))?
        .clone();
    let col = |name: &str| header.iter().position(|h| h == name);
    let (Some(seq_at), Some(leaf_at)) = (col("Seq"), col("Leaf_Hash")) else {
        bail!(
            "{}: this CSV is in the apollo layout, which has no Seq or Leaf_Hash column, so its rows cannot be proven; export it again with \"layout\": \"full\" (auditrail export --layout full)",
            path.display()
        );
    };
    let mut rows = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let n = i as u64 + 1;
        let rec = rec.with_context(|| format!("{}: row {n} is not valid CSV", path.display()))?;
        let seq = rec.get(seq_at).and_then(|s| s.trim().parse::<u64>().ok());
        let leaf = rec.get(leaf_at).and_then(hex_leaf);
        let (Some(seq), Some(leaf)) = (seq, leaf) else {
            bail!("{}: row {n}: Seq or Leaf_Hash is malformed", path.display());
        };
        rows.push((n, seq, leaf));
    }
    Ok(rows)
}

fn parquet_rows(path: &Path) -> anyhow::Result<Vec<(u64, u64, Hash)>> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .with_context(|| format!("{}: not a Parquet file", path.display()))?
        .build()?;
    let mut rows = Vec::new();
    let mut n = 0u64;
    for batch in reader {
        let batch = batch.with_context(|| format!("{}: cannot read", path.display()))?;
        let (Some(seqs), Some(leaves)) = (
            batch.column_by_name("seq"),
            batch.column_by_name("leaf_hash"),
        ) else {
            bail!("{}: no seq or leaf_hash column", path.display());
        };
        let seqs = seqs
            .as_primitive_opt::<UInt64Type>()
            .context("seq is not an unsigned integer column")?;
        let leaves = leaves
            .as_string_opt::<i32>()
            .context("leaf_hash is not a string column")?;
        for i in 0..batch.num_rows() {
            n += 1;
            let leaf = hex_leaf(leaves.value(i))
                .with_context(|| format!("{}: row {n}: leaf_hash is malformed", path.display()))?;
            rows.push((n, seqs.value(i), leaf));
        }
    }
    Ok(rows)
}

pub fn proof_beside(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".proof");
    PathBuf::from(s)
}

pub fn verify(
    path: &Path,
    proof_path: Option<&Path>,
    key: Option<&NoteVerifier>,
    policy: &Policy,
) -> anyhow::Result<FileReport> {
    let (kind, gz) = kind_of(path)?;
    let proof_path = proof_path.map_or_else(|| proof_beside(path), Path::to_path_buf);
    let text = std::fs::read_to_string(&proof_path).with_context(|| {
        format!(
            "cannot read the proof {} (GET /v1/exports/{{id}}/proof, or what `auditrail export` wrote beside the file)",
            proof_path.display()
        )
    })?;
    let proof =
        ExportProof::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", proof_path.display()))?;
    let body = match key {
        Some(k) => k
            .verify(&proof.checkpoint)
            .map_err(|e| anyhow::anyhow!("{}: the checkpoint: {e}", proof_path.display()))?,
        None => {
            split_note(&proof.checkpoint)
                .map_err(|e| anyhow::anyhow!("{}: the checkpoint: {e}", proof_path.display()))?
                .0
        }
    };
    let cp = Checkpoint::parse(body)
        .map_err(|e| anyhow::anyhow!("{}: the checkpoint: {e}", proof_path.display()))?;
    let cosigned_by = policy.check(
        &format!("{}: the checkpoint", proof_path.display()),
        &proof.checkpoint,
    )?;
    let rows = match kind {
        Kind::Ndjson => ndjson_rows(path, gz)?,
        Kind::Csv => csv_rows(path, gz)?,
        Kind::Parquet => parquet_rows(path)?,
    };
    let n = rows.len() as u64;
    check_rows(&proof, rows, cp.size, &cp.root)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(FileReport {
        rows: n,
        size: cp.size,
        recomputed: matches!(kind, Kind::Ndjson),
        cosigned_by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use auditrail_core::merkle::leaf_hash;

    #[test]
    fn ndjson_rows_hash_their_own_bytes() {
        let body = r#"{"action":"a","seq":7}"#;
        let leaf = leaf_hash(body.as_bytes());
        let line = auditrail_core::export::ndjson_line(body, &leaf);
        assert_eq!(ndjson_row(line.trim_end()), Ok((7, leaf)));
        let altered = line.trim_end().replace("\"a\"", "\"b\"");
        assert!(ndjson_row(&altered).unwrap_err().contains("does not hash"));
    }
}
