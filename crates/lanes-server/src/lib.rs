//! The lanes forge (`lanes serve`): turning new branch heads into runs ([`trigger`]) and deriving a
//! branch's CI status from its latest run ([`status`]).
//!
//! This crate decides what the forge does with a push and persists it through
//! [`lanes_store::Store`]; lane selection comes from `lanes-core`, commits and diffs from
//! `lanes-git`. No HTTP yet. docs/forge.md describes how a run is created.

pub mod status;
pub mod trigger;

pub use status::{BranchStatus, JobView, branch_status};
pub use trigger::{CATALOG_PATH, Created, DEFAULT_RETRIES, Outcome, TriggerError, on_branch_head};
