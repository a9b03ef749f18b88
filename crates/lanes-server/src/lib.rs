//! The lanes forge (`lanes serve`): the ref watcher turns new branch heads into runs
//! ([`trigger`]), the [`forge::Forge`] schedules their jobs and persists every decision, the
//! built-in agent runs them ([`local`]), and the JSON API ([`api`]) answers "what is the state of
//! my branch".
//!
//! Decisions come from `lanes-core` (selection, the scheduler's state machine); this crate
//! persists them through [`lanes_store::Store`] and does the I/O around them. docs/forge.md
//! describes how a run is created, docs/api.md the API.

mod agent_api;
pub mod agents;
pub mod api;
mod error;
pub mod forge;
pub mod http;
mod input;
pub mod local;
pub mod metrics;
pub mod nightly;
pub mod secrets;
pub mod serve;
pub mod status;
pub mod trigger;
pub mod ui;
pub mod wire;

pub use error::{ForgeError, ForgeResult};
pub use forge::{Forge, ForgeConfig, JobEvent, LOCAL_AGENT};
pub use status::{BranchStatus, JobView, branch_status, branch_status_of, run_status, view};
pub use trigger::{CATALOG_PATH, Created, DEFAULT_RETRIES, Outcome, TriggerError, on_branch_head};
