//! Export encoders: CSV in the Apollo Studio layout (and the `full` layout that adds
//! what verification needs), NDJSON lines exactly as hashed. Pure: rows go to any
//! `io::Write` the caller gives, one at a time, so memory stays flat at any size.
//!
//! Spreadsheet formula injection (OWASP "CSV injection") is neutralized: a cell whose
//! first character is `=`, `+`, `-`, `@`, TAB or CR gets a leading `'`, so Excel, Sheets
//! and LibreOffice show it as text instead of evaluating it. Quoting follows RFC 4180.

use std::borrow::Cow;
use std::io::Write;

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

/// The parts of a stored event exports use, borrowed from its canonical text where no
/// unescaping is needed. Parsing into this (instead of a `Value` tree) is what keeps an
/// export at memory-bandwidth speed.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Row<'a> {
    #[serde(borrow, default)]
    pub id: Cow<'a, str>,
    #[serde(default)]
    pub seq: u64,
    #[serde(borrow, default)]
    pub occurred_at: Cow<'a, str>,
    #[serde(borrow, default)]
    pub received_at: Cow<'a, str>,
    #[serde(borrow, default)]
    pub action: Cow<'a, str>,
    #[serde(borrow, default)]
    pub resource: Part<'a>,
    #[serde(borrow, default)]
    pub actor: Actor<'a>,
    #[serde(borrow, default)]
    pub scope: Part<'a>,
    #[serde(borrow, default)]
    pub outcome: Cow<'a, str>,
    /// The `details` object's text, already canonical (a member of a canonical document).
    #[serde(borrow, default)]
    pub details: Option<&'a serde_json::value::RawValue>,
}

/// `resource` or `scope`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Part<'a> {
    #[serde(borrow, default, rename = "type")]
    pub kind: Cow<'a, str>,
    #[serde(borrow, default)]
    pub id: Cow<'a, str>,
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct Actor<'a> {
    #[serde(borrow, default)]
    pub id: Cow<'a, str>,
    #[serde(borrow, default, rename = "type")]
    pub kind: Cow<'a, str>,
    #[serde(borrow, default)]
    pub role: Cow<'a, str>,
    #[serde(borrow, default)]
    pub email: Cow<'a, str>,
    #[serde(borrow, default)]
    pub name: Cow<'a, str>,
}

impl<'a> Row<'a> {
    pub fn parse(stored: &'a str) -> serde_json::Result<Self> {
        serde_json::from_str(stored)
    }

    /// The `details` object as JSON text; empty when the event has none.
    pub fn details_text(&self) -> &str {
        match self.details.map(|d| d.get()) {
            Some(d) if d.starts_with('{') => d,
            _ => "",
        }
    }
}

/// The cells of one stored event in `layout`, neutralized. `leaf_hex` is its leaf hash.
pub fn csv_cells<'r>(
    row: &'r Row<'_>,
    seq: &'r str,
    leaf_hex: &'r str,
    layout: Layout,
) -> Vec<Cow<'r, str>> {
    let mut cells: Vec<&str> = vec![
        &row.occurred_at,
        &row.action,
        &row.resource.id,
        &row.resource.kind,
        row.details_text(),
        &row.actor.id,
        &row.actor.kind,
        &row.actor.role,
        &row.actor.email,
        &row.actor.name,
        &row.scope.id,
    ];
    if layout == Layout::Full {
        cells.extend([seq, &row.id, &row.received_at, leaf_hex]);
    }
    cells.into_iter().map(neutralize).collect()
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
            .buffer_capacity(256 * 1024)
            .from_writer(w);
        out.write_record(layout.header())?;
        Ok(Self { out, layout })
    }

    /// Writes one stored event (its canonical text) with its leaf hash.
    pub fn write(&mut self, stored: &str, leaf: &[u8; 32]) -> std::io::Result<()> {
        let row = Row::parse(stored)?;
        let (seq, leaf_hex) = match self.layout {
            Layout::Full => (row.seq.to_string(), hex::encode(leaf)),
            Layout::Apollo => (String::new(), String::new()),
        };
        self.out.write_record(
            csv_cells(&row, &seq, &leaf_hex, self.layout)
                .iter()
                .map(|c| c.as_bytes()),
        )?;
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
