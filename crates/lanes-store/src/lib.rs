//! The durable state of the lanes forge: repositories, runs, jobs, leases, agents, admin tokens,
//! nightly slots, and the index of job logs.
//!
//! [`Store`] is every read and write `lanes serve` makes; [`SqliteStore`] implements it on one
//! SQLite file (WAL), the embedded default. A PostgreSQL implementation can satisfy the same
//! trait later. The store decides nothing: scheduling decisions come from `lanes-core` as
//! [`JobUpdate`]s, and the store persists them with compare-and-set so a racing writer is
//! refused, never silently overwritten. Writes from agents are fenced by their lease's token.
//!
//! Job logs are files, not rows ([`logs`]); the database keeps their acknowledged lengths.
//!
//! docs/store.md describes the schema, the migration policy and the durability settings.

pub mod agent;
mod error;
pub mod job;
pub mod logs;
pub mod repo;
pub mod run;
mod sqlite;
pub mod step;
mod store;
pub mod token;

pub use agent::{AgentRecord, AgentState, NewAgent};
pub use error::{ErrorKind, StoreError};
pub use job::{JobFinish, JobId, JobRecord, JobUpdate, JobWrite, NewJob, Timings};
pub use logs::LogFile;
pub use repo::{BranchSummary, NewRepo, RefRecord, RepoId, RepoRecord};
pub use run::{
    NewRun, NightlySlot, RunDetail, RunFilter, RunId, RunRecord, RunStatus, RunTrigger, RunUpdate,
};
pub use sqlite::{Durability, SCHEMA_VERSION, SqliteStore, StoreOptions};
pub use step::{CacheUse, LatestStep, StepRecord, StepTally};
pub use store::{Store, StoreResult};
