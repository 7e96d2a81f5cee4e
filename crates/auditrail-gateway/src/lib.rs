//! The GraphQL capture gateway: a reverse proxy in front of a host product's GraphQL
//! API that records one audit event per catalogued root field of every operation.
//!
//! Pure parts (no I/O): `request` (how GraphQL servers accept requests over HTTP),
//! `capture` (which root fields the catalog names and what each event holds),
//! `outcome` (success or failure of each field, read from the response).
//! I/O parts: `spool` (the durable local spool), `sink` (appending to the log),
//! `actor` (trusted header or verified JWT), `proxy` (the HTTP server) and `metrics`.

pub mod actor;
pub mod capture;
pub mod metrics;
pub mod outcome;
pub mod proxy;
pub mod request;
pub mod sink;
pub mod spool;

pub use proxy::{Gateway, Mode, OrgSource, serve};
