//! Parquet files (arrow-rs): one typed column per event field, `details` as JSON text,
//! times as UTC microsecond timestamps, Snappy-compressed, row groups of
//! `ROW_GROUP_ROWS` so engines can skip and parallelize while memory stays bounded.

use std::io::Write;
use std::sync::Arc;

use arrow_array::builder::{StringBuilder, TimestampMicrosecondBuilder, UInt64Builder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use auditrail_core::export::Row;
use auditrail_core::time;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

/// Rows per Parquet row group.
pub const ROW_GROUP_ROWS: usize = 64 * 1024;
/// Columns whose values are (nearly) all distinct.
const UNIQUE_COLUMNS: [&str; 6] = [
    "seq",
    "id",
    "occurred_at",
    "received_at",
    "details",
    "leaf_hash",
];
/// Rows per Arrow batch handed to the writer.
const BATCH_ROWS: usize = 8192;

const TEXT_COLUMNS: [&str; 13] = [
    "id",
    "action",
    "resource_type",
    "resource_id",
    "actor_id",
    "actor_type",
    "actor_role",
    "actor_email",
    "actor_name",
    "scope_type",
    "scope_id",
    "outcome",
    "details",
];

/// The file's schema: `seq`, `occurred_at`, `received_at`, the text columns, `leaf_hash`.
pub fn schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let mut fields = vec![
        Field::new("seq", DataType::UInt64, false),
        Field::new("occurred_at", ts.clone(), false),
        Field::new("received_at", ts, false),
    ];
    fields.extend(
        TEXT_COLUMNS
            .iter()
            .map(|n| Field::new(*n, DataType::Utf8, *n != "id" && *n != "action")),
    );
    fields.push(Field::new("leaf_hash", DataType::Utf8, false));
    Arc::new(Schema::new(fields))
}

pub struct ParquetEncoder<W: Write + Send> {
    writer: ArrowWriter<W>,
    schema: SchemaRef,
    seq: UInt64Builder,
    occurred: TimestampMicrosecondBuilder,
    received: TimestampMicrosecondBuilder,
    text: Vec<StringBuilder>,
    leaf: StringBuilder,
    rows: usize,
}

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

fn micros(t: &str) -> i64 {
    time::parse_rfc3339(t).map(time::micros).unwrap_or(0)
}

impl<W: Write + Send> ParquetEncoder<W> {
    pub fn new(w: W) -> std::io::Result<Self> {
        let schema = schema();
        let mut props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_size(ROW_GROUP_ROWS);
        // Unique per row: a dictionary would only cost memory before falling back.
        for c in UNIQUE_COLUMNS {
            props = props.set_column_dictionary_enabled(ColumnPath::from(c), false);
        }
        let props = props.build();
        let writer = ArrowWriter::try_new(w, schema.clone(), Some(props)).map_err(io_err)?;
        Ok(Self {
            writer,
            schema,
            seq: UInt64Builder::with_capacity(BATCH_ROWS),
            occurred: TimestampMicrosecondBuilder::with_capacity(BATCH_ROWS).with_timezone("UTC"),
            received: TimestampMicrosecondBuilder::with_capacity(BATCH_ROWS).with_timezone("UTC"),
            text: TEXT_COLUMNS.iter().map(|_| StringBuilder::new()).collect(),
            leaf: StringBuilder::new(),
            rows: 0,
        })
    }

    pub fn write(&mut self, stored: &str, leaf: &[u8; 32]) -> std::io::Result<()> {
        let r = Row::parse(stored)?;
        self.seq.append_value(r.seq);
        self.occurred.append_value(micros(&r.occurred_at));
        self.received.append_value(micros(&r.received_at));
        let values: [&str; 13] = [
            &r.id,
            &r.action,
            &r.resource.kind,
            &r.resource.id,
            &r.actor.id,
            &r.actor.kind,
            &r.actor.role,
            &r.actor.email,
            &r.actor.name,
            &r.scope.kind,
            &r.scope.id,
            &r.outcome,
            r.details_text(),
        ];
        for (i, (b, v)) in self.text.iter_mut().zip(values).enumerate() {
            if v.is_empty() && i > 1 {
                b.append_null();
            } else {
                b.append_value(v);
            }
        }
        self.leaf.append_value(hex::encode(leaf));
        self.rows += 1;
        if self.rows == BATCH_ROWS {
            self.flush_batch()?;
        }
        Ok(())
    }

    fn flush_batch(&mut self) -> std::io::Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(self.seq.finish()),
            Arc::new(self.occurred.finish()),
            Arc::new(self.received.finish()),
        ];
        cols.extend(
            self.text
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef),
        );
        cols.push(Arc::new(self.leaf.finish()));
        let batch = RecordBatch::try_new(self.schema.clone(), cols).map_err(io_err)?;
        self.writer.write(&batch).map_err(io_err)?;
        self.rows = 0;
        Ok(())
    }

    /// Writes the last batch and the footer; returns the inner writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.flush_batch()?;
        self.writer.into_inner().map_err(io_err)
    }
}
