//! Content-addressed storage for lanes.
//!
//! A [`LocalStore`] keeps two kinds of records under one directory:
//! - **blobs**, named by the BLAKE3 digest of their bytes (logs, output files, output trees);
//! - **action results**, named by a step key: what running the step produced.
//!
//! Every write goes to a temporary file in the store, is fsynced and renamed into place, so a
//! reader never sees half a record and two processes can share one store. Every read is verified:
//! a blob whose bytes do not hash to its name, or an action result whose checksum does not match,
//! is deleted and reported as a miss. A corrupt entry is never a hit.

mod action;
mod error;
mod gc;
mod history;
mod lease;
mod scan;
mod stats;
mod store;
mod tree;

pub use action::{ActionResult, Lookup, RESULT_VERSION};
pub use error::CacheError;
pub use gc::{GcPolicy, GcReport};
pub use history::HistoryEntry;
pub use lease::{RunRegistration, UseGuard};
pub use stats::{CacheStats, RunEvent, human_size};
pub use store::LocalStore;
pub use tree::{OutputEntry, OutputKind, OutputTree, TREE_VERSION};
