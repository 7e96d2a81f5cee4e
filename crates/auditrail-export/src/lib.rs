//! auditrail exports: an org's events, filtered, streamed from the store into a CSV,
//! NDJSON, Parquet or OCSF file with flat memory, counted and hashed as written.
#![forbid(unsafe_code)]

pub mod batch;
pub mod columnar;
pub mod ocsf;
pub mod proof;
pub mod push;
pub mod request;
pub mod sink;
pub mod stream;

pub use request::{ExportRequest, Format, Invalid};
pub use stream::{ExportError, Plan, Summary, write_file};
