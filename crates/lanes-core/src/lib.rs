//! The pure domain of lanes.
//!
//! Everything here is a function from values to values: the catalog model and its validation,
//! the glob engine, lane selection with reasons, and step fingerprints and keys. This crate does
//! no I/O, reads no clock and no environment variable; adapters (`lanes-git`, the CLI) feed it
//! values. That is what keeps selection and keys testable with property tests.

pub mod catalog;
pub mod diagnostic;
pub mod error;
pub mod explain;
pub mod fileset;
pub mod fingerprint;
pub mod glob;
pub mod job;
pub mod limits;
pub mod parse;
pub mod plan;
pub mod run;
pub mod schedule;
pub mod select;
pub mod status;

pub use catalog::{Catalog, Lane, LaneClass, Step};
pub use diagnostic::{Diagnostic, Source};
pub use error::ErrorClass;
pub use fileset::{ContentId, Digest, FileEntry};
pub use fingerprint::{Host, KEY_VERSION, StepFingerprint};
pub use parse::{CatalogError, parse};
pub use select::{Reason, Selection, Selector, Trigger, select};
