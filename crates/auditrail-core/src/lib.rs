//! The pure domain of auditrail. Nothing here performs I/O: the event model and its
//! validation, catalogs, RFC 8785 canonical JSON, the RFC 6962 / RFC 9162 Merkle tree and its proofs,
//! C2SP signed notes and checkpoints, and the search query syntax.
#![forbid(unsafe_code)]

pub mod canonical;
pub mod catalog;
pub mod cosignature;
pub mod delivery;
pub mod event;
pub mod export;
pub mod export_proof;
pub mod merkle;
pub mod multiproof;
pub mod note;
pub mod ocsf;
pub mod outbound;
pub mod query;
pub mod tiles;
pub mod time;
pub mod witness;

pub use event::{EventError, FieldError, Limits, PreparedEvent, Rules};
pub use merkle::Hash;
