//! Export encoders: CSV in the Apollo Studio layout (and the `full` layout that adds
//! what verification needs), NDJSON lines exactly as hashed. Pure: rows go to any
//! `io::Write` the caller gives, one at a time, so memory stays flat at any size.
//!
//! Spreadsheet formula injection (OWASP "CSV injection") is neutralized: a cell whose
//! first character is `=`, `+`, `-`, `@`, TAB or CR gets a leading `'`, so Excel, Sheets
//! and LibreOffice show it as text instead of evaluating it. Quoting follows RFC 4180.

use std::borrow::Cow;
use std::io::Write;

use serde_json::Value;

use crate::canonical;

/// The columns of Apollo Studio's audit export, in its order.
pub const APOLLO_COLUMNS: [&str; 11] = [
    "Timestamp",
    "Action",
    "Resource_ID",
    "Resource_Type",
    "Details",
    "Actor_ID",
    "Actor_Type",
    "Effective_Role",
    "Actor_Email",
    "Actor_Name",
    "Graph_ID",
];

/// What the `full` layout adds after the Apollo columns.
pub const FULL_EXTRA_COLUMNS: [&str; 4] = ["Seq", "Event_ID", "Received_At", "Leaf_Hash"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Exactly Apollo Studio's columns.
    #[default]
    Apollo,
    /// Apollo's columns, then `Seq, Event_ID, Received_At, Leaf_Hash`.
    Full,
}

impl Layout {
    pub fn header(self) -> Vec<&'static str> {
        let mut h = APOLLO_COLUMNS.to_vec();
        if self == Layout::Full {
            h.extend(FULL_EXTRA_COLUMNS);
        }
        h
    }
}

/// A cell a spreadsheet would run as a formula, made inert with a leading `'`.
pub fn neutralize(cell: &str) -> Cow<'_, str> {
    match cell.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => Cow::Owned(format!("'{cell}")),
        _ => Cow::Borrowed(cell),
    }
}

fn text<'a>(event: &'a Value, path: &[&str]) -> &'a str {
    let mut v = event;
    for p in path {
        match v.get(p) {
            Some(x) => v = x,
            None => return "",
        }
    }
    v.as_str().unwrap_or("")
}

/// The cells of one stored event in `layout`, neutralized. `leaf_hex` is its leaf hash.
pub fn csv_cells(event: &Value, leaf_hex: &str, layout: Layout) -> Vec<String> {
    let details = match event.get("details") {
        Some(d @ Value::Object(_)) => canonical::to_string(d).unwrap_or_else(|_| d.to_string()),
        _ => String::new(),
    };
    let mut cells: Vec<Cow<'_, str>> = vec![
        text(event, &["occurred_at"]).into(),
        text(event, &["action"]).into(),
        text(event, &["resource", "id"]).into(),
        text(event, &["resource", "type"]).into(),
        details.into(),
        text(event, &["actor", "id"]).into(),
        text(event, &["actor", "type"]).into(),
        text(event, &["actor", "role"]).into(),
        text(event, &["actor", "email"]).into(),
        text(event, &["actor", "name"]).into(),
        text(event, &["scope", "id"]).into(),
    ];
    if layout == Layout::Full {
        let seq = event.get("seq").and_then(Value::as_u64).unwrap_or(0);
        cells.push(seq.to_string().into());
        cells.push(text(event, &["id"]).into());
        cells.push(text(event, &["received_at"]).into());
        cells.push(leaf_hex.into());
    }
    cells.iter().map(|c| neutralize(c).into_owned()).collect()
}

/// Streams events as CSV: the header on creation, then one row per event.
pub struct CsvEncoder<W: Write> {
    out: csv::Writer<W>,
    layout: Layout,
}

impl<W: Write> CsvEncoder<W> {
    pub fn new(w: W, layout: Layout) -> std::io::Result<Self> {
        let mut out = csv::WriterBuilder::new()
            .quote_style(csv::QuoteStyle::Necessary)
            .terminator(csv::Terminator::CRLF)
            .from_writer(w);
        out.write_record(layout.header())?;
        Ok(Self { out, layout })
    }

    /// Writes one stored event (its canonical text) with its leaf hash.
    pub fn write(&mut self, stored: &str, leaf: &[u8; 32]) -> std::io::Result<()> {
        let v: Value = serde_json::from_str(stored)?;
        self.out
            .write_record(csv_cells(&v, &hex::encode(leaf), self.layout))?;
        Ok(())
    }

    /// Flushes and returns the inner writer.
    pub fn finish(self) -> std::io::Result<W> {
        self.out
            .into_inner()
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
}

/// One NDJSON line: the stored event exactly as hashed, plus `leaf_hash`, and `\n`.
pub fn ndjson_line(stored: &str, leaf: &[u8; 32]) -> String {
    let mut s = crate::event::with_leaf_hash(stored, leaf);
    s.push('\n');
    s
}

#[cfg(test)]
#[path = "export_tests.rs"]
mod tests;
