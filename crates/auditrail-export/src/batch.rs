//! One delivery batch encoded in memory as the object that goes to a bucket.

use std::io::Write;

use auditrail_core::delivery::ObjectFormat;
use auditrail_core::export::{CsvEncoder, Layout};
use auditrail_store::StoredEvent;
use flate2::Compression;
use flate2::write::GzEncoder;

use auditrail_core::ocsf::Mapper;

use crate::columnar::ParquetEncoder;
use crate::ocsf::OcsfParquetEncoder;
use crate::stream::ndjson;

/// Encodes `events` (in seq order) as one object of `format`: gzip'd NDJSON lines (the
/// stored event plus `leaf_hash`), gzip'd CSV in the Apollo layout, Parquet, or OCSF
/// records (`ocsf` maps them) as gzip'd JSON lines or Parquet.
pub fn encode_batch(
    events: &[StoredEvent],
    format: ObjectFormat,
    ocsf: &Mapper,
) -> std::io::Result<Vec<u8>> {
    let raw: usize = events.iter().map(|e| e.body.len() + 80).sum();
    let gz = || GzEncoder::new(Vec::with_capacity(raw / 6), Compression::fast());
    match format {
        ObjectFormat::NdjsonGz => {
            let mut g = gz();
            for e in events {
                ndjson(&mut g, &e.body, &e.leaf)?;
            }
            g.finish()
        }
        ObjectFormat::CsvGz => {
            let mut c = CsvEncoder::new(gz(), Layout::Apollo)?;
            for e in events {
                c.write(&e.body, &e.leaf)?;
            }
            c.finish()?.finish()
        }
        ObjectFormat::Parquet => {
            let mut p = ParquetEncoder::new(Vec::with_capacity(raw / 4))?;
            for e in events {
                p.write(&e.body, &e.leaf)?;
            }
            let mut out = p.finish()?;
            out.flush()?;
            Ok(out)
        }
        ObjectFormat::Ocsf => {
            let mut g = gz();
            for e in events {
                crate::ocsf::line(&mut g, ocsf, &e.body)?;
            }
            g.finish()
        }
        ObjectFormat::OcsfParquet => {
            let mut p = OcsfParquetEncoder::new(Vec::with_capacity(raw / 4), ocsf.clone())?;
            for e in events {
                p.write(&e.body)?;
            }
            p.finish()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn event(seq: u64) -> StoredEvent {
        let body = format!(
            r#"{{"action":"=cmd","actor":{{"id":"u{seq}","type":"USER"}},"id":"e{seq}","occurred_at":"2026-11-21T10:00:00.000Z","org":"acme","outcome":"success","received_at":"2026-11-21T10:00:00.000Z","resource":{{"id":"r","type":"GRAPH"}},"seq":{seq}}}"#
        );
        let leaf = auditrail_core::merkle::leaf_hash(body.as_bytes());
        StoredEvent { seq, body, leaf }
    }

    fn gunzip(b: &[u8]) -> String {
        let mut s = String::new();
        flate2::read::GzDecoder::new(b)
            .read_to_string(&mut s)
            .unwrap();
        s
    }

    #[test]
    fn ndjson_lines_re_hash_and_csv_is_neutralized() {
        let events: Vec<_> = (1..=3).map(event).collect();
        let m = Mapper::default();
        let nd = gunzip(&encode_batch(&events, ObjectFormat::NdjsonGz, &m).unwrap());
        let lines: Vec<_> = nd.lines().collect();
        assert_eq!(lines.len(), 3);
        for (l, e) in lines.iter().zip(&events) {
            let (seq, leaf, _) = auditrail_core::delivery::line_leaf(l).unwrap();
            assert_eq!((seq, leaf), (e.seq, e.leaf));
        }
        let csv = gunzip(&encode_batch(&events, ObjectFormat::CsvGz, &m).unwrap());
        assert!(csv.starts_with("Timestamp,Action,"), "{csv}");
        assert!(csv.contains("'=cmd"), "formula neutralized: {csv}");
        let pq = encode_batch(&events, ObjectFormat::Parquet, &m).unwrap();
        assert_eq!(&pq[..4], b"PAR1");
    }

    #[test]
    fn ocsf_objects_hold_one_record_per_event() {
        let events: Vec<_> = (1..=3).map(event).collect();
        let m = Mapper::default();
        let lines = gunzip(&encode_batch(&events, ObjectFormat::Ocsf, &m).unwrap());
        let records: Vec<serde_json::Value> = lines
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(records.len(), 3);
        for (r, e) in records.iter().zip(&events) {
            assert_eq!(r["class_uid"], 6003);
            assert_eq!(r["metadata"]["sequence"], e.seq);
            assert_eq!(r["unmapped"]["seq"], e.seq);
        }
        let pq = encode_batch(&events, ObjectFormat::OcsfParquet, &m).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            bytes::Bytes::from(pq),
        )
        .unwrap()
        .build()
        .unwrap();
        let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(rows, 3);
    }
}
