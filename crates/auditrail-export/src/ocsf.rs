//! OCSF encoders: API Activity records (`auditrail_core::ocsf`) as JSON lines, or as
//! Parquet with OCSF's nested objects as Arrow structs, the form Amazon Security Lake
//! reads. Records are serialized by serde straight into `arrow-json`'s decoder for a
//! fixed schema, in row groups of `ROW_GROUP_ROWS`, so memory stays flat at any length.

use std::io::Write;
use std::sync::Arc;

use arrow_json::reader::{Decoder, ReaderBuilder};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};
use auditrail_core::ocsf::Mapper;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

/// Rows per row group: a quarter of the flat Parquet's, as an OCSF row is ~4x as wide
/// (the writer holds a whole row group in memory).
const ROW_GROUP_ROWS: usize = 16 * 1024;
/// Rows decoded into one Arrow batch.
const BATCH_ROWS: usize = 8192;

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// One JSON line of `mapper`'s record of the stored event `body`.
pub fn line(out: &mut impl Write, mapper: &Mapper, body: &str) -> std::io::Result<()> {
    let r = mapper.record(body).map_err(io_err)?;
    out.write_all(r.as_bytes())?;
    out.write_all(b"\n")
}

fn text(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

fn int(name: &str) -> Field {
    Field::new(name, DataType::Int32, true)
}

fn long(name: &str) -> Field {
    Field::new(name, DataType::Int64, true)
}

fn object(name: &str, fields: Vec<Field>) -> Field {
    Field::new(name, DataType::Struct(Fields::from(fields)), true)
}

/// The Parquet schema of an API Activity record as auditrail writes it: OCSF's
/// attribute names and nesting, integers for ids and times (ms since the epoch).
pub fn schema() -> SchemaRef {
    let resource = Field::new(
        "item",
        DataType::Struct(Fields::from(vec![
            text("uid"),
            text("type"),
            text("name"),
            Field::new(
                "labels",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                true,
            ),
        ])),
        true,
    );
    Arc::new(Schema::new(vec![
        int("activity_id"),
        text("activity_name"),
        int("category_uid"),
        text("category_name"),
        int("class_uid"),
        text("class_name"),
        long("type_uid"),
        text("type_name"),
        int("severity_id"),
        text("severity"),
        long("time"),
        int("status_id"),
        text("status"),
        object(
            "metadata",
            vec![
                text("version"),
                object(
                    "product",
                    vec![text("name"), text("vendor_name"), text("version")],
                ),
                text("uid"),
                long("sequence"),
                long("logged_time"),
                text("tenant_uid"),
                text("log_name"),
            ],
        ),
        object(
            "actor",
            vec![object(
                "user",
                vec![
                    text("uid"),
                    text("name"),
                    text("email_addr"),
                    int("type_id"),
                    text("type"),
                ],
            )],
        ),
        object(
            "api",
            vec![text("operation"), object("request", vec![text("uid")])],
        ),
        object("src_endpoint", vec![text("ip"), text("name")]),
        object("http_request", vec![text("user_agent")]),
        Field::new("resources", DataType::List(Arc::new(resource)), true),
        object("unmapped", vec![text("event")]),
    ]))
}

/// Writes OCSF records as Parquet (Snappy), one row per event.
pub struct OcsfParquetEncoder<W: Write + Send> {
    writer: ArrowWriter<W>,
    decoder: Decoder,
    mapper: Mapper,
}

impl<W: Write + Send> OcsfParquetEncoder<W> {
    pub fn new(w: W, mapper: Mapper) -> std::io::Result<Self> {
        let schema = schema();
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_size(ROW_GROUP_ROWS)
            .build();
        let writer = ArrowWriter::try_new(w, schema.clone(), Some(props)).map_err(io_err)?;
        let decoder = ReaderBuilder::new(schema)
            .with_batch_size(BATCH_ROWS)
            .with_strict_mode(true)
            .build_decoder()
            .map_err(io_err)?;
        Ok(Self {
            writer,
            decoder,
            mapper,
        })
    }

    pub fn write(&mut self, stored: &str) -> std::io::Result<()> {
        // Straight from the record into Arrow through serde, no JSON text between.
        let r = self.mapper.map(stored, true).map_err(io_err)?;
        self.decoder.serialize(&[r]).map_err(io_err)?;
        if self.decoder.len() >= BATCH_ROWS {
            self.flush_batch()?;
        }
        Ok(())
    }

    fn flush_batch(&mut self) -> std::io::Result<()> {
        if let Some(batch) = self.decoder.flush().map_err(io_err)? {
            self.writer.write(&batch).map_err(io_err)?;
        }
        Ok(())
    }

    pub fn finish(mut self) -> std::io::Result<W> {
        self.flush_batch()?;
        self.writer.into_inner().map_err(io_err)
    }
}

/// The stored events an OCSF Parquet file carries (`unmapped.event`), in row order: what
/// `verify` recomputes each leaf from.
pub fn parquet_events(file: bytes::Bytes) -> std::io::Result<Vec<String>> {
    use arrow_array::{Array, StringArray, StructArray};
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(io_err)?
        .build()
        .map_err(io_err)?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(io_err)?;
        let unmapped = batch
            .column_by_name("unmapped")
            .and_then(|c| c.as_any().downcast_ref::<StructArray>())
            .ok_or_else(|| io_err("no `unmapped` column: not auditrail's OCSF Parquet"))?;
        let events = unmapped
            .column_by_name("event")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| io_err("no `unmapped.event` column"))?;
        for i in 0..events.len() {
            if events.is_null(i) {
                return Err(io_err(format!("row {i} has no event")));
            }
            out.push(events.value(i).to_owned());
        }
    }
    Ok(out)
}
