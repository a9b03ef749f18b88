//! Runs: everything the forge does for one (repository, head commit), numbered `#N` per
//! repository.

use crate::job::{JobRecord, NewJob};
use jiff::Timestamp;

/// A run's row id (global; the number users see is [`RunRecord::number`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunId(pub i64);

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

pub use lanes_core::run::{RunStatus, RunTrigger};

/// A nightly schedule slot a run claims: `(repository, lane, slot)` runs once, even across
/// restarts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NightlySlot {
    /// The nightly lane.
    pub lane: String,
    /// The cron slot's time (the scheduled time, not when it was noticed).
    pub slot: Timestamp,
}

/// A run to create, with its jobs, in one transaction.
#[derive(Clone, Debug)]
pub struct NewRun {
    /// The repository's name.
    pub repo: String,
    /// The branch.
    pub branch: String,
    /// The commit tested.
    pub head: String,
    /// What the diff is taken against: the merge-base with the default branch, or the previous
    /// default-branch head.
    pub base: Option<String>,
    /// What created it.
    pub trigger: RunTrigger,
    /// The initial status: [`RunStatus::Pending`], or [`RunStatus::Error`] when the catalog failed.
    pub status: RunStatus,
    /// The catalog's diagnostics (text or JSON) when it failed.
    pub diagnostics: Option<String>,
    /// Creation time.
    pub created_at: Timestamp,
    /// One job per lane, skipped lanes included with their reason.
    pub jobs: Vec<NewJob>,
    /// Nightly slots this run claims; if one is claimed already nothing is created.
    pub nightly_slots: Vec<NightlySlot>,
}

/// A stored run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRecord {
    /// Row id; also the cursor of [`RunFilter::before`].
    pub id: RunId,
    /// The repository's name.
    pub repo: String,
    /// `#N`: 1, 2, 3, … per repository.
    pub number: u64,
    /// The branch.
    pub branch: String,
    /// The commit tested.
    pub head: String,
    /// The commit the diff was taken against.
    pub base: Option<String>,
    /// What created it.
    pub trigger: RunTrigger,
    /// Its status.
    pub status: RunStatus,
    /// The catalog's diagnostics when it failed.
    pub diagnostics: Option<String>,
    /// The number of the newer run on the same branch that superseded it.
    pub superseded_by: Option<u64>,
    /// Creation time.
    pub created_at: Timestamp,
    /// When its first job started.
    pub started_at: Option<Timestamp>,
    /// When it reached a terminal status.
    pub finished_at: Option<Timestamp>,
}

/// A run with its jobs (and their steps), as the run page shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct RunDetail {
    /// The run.
    pub run: RunRecord,
    /// Its jobs in creation order.
    pub jobs: Vec<JobRecord>,
}

/// Which runs to list: newest first, filtered, one page at a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunFilter {
    /// Only this repository's runs (all repositories when `None`).
    pub repo: Option<String>,
    /// Only this branch's runs.
    pub branch: Option<String>,
    /// Only runs with this status.
    pub status: Option<RunStatus>,
    /// Only runs older than this one: pass the last [`RunRecord::id`] of a page to get the next.
    pub before: Option<RunId>,
    /// At most this many runs.
    pub limit: u32,
}

impl Default for RunFilter {
    fn default() -> Self {
        RunFilter {
            repo: None,
            branch: None,
            status: None,
            before: None,
            limit: 50,
        }
    }
}

/// Changes to a run; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunUpdate {
    /// The new status.
    pub status: Option<RunStatus>,
    /// When its first job started.
    pub started_at: Option<Timestamp>,
    /// When it reached a terminal status.
    pub finished_at: Option<Timestamp>,
    /// The number of the newer run that superseded it.
    pub superseded_by: Option<u64>,
    /// Diagnostics to record.
    pub diagnostics: Option<String>,
    /// The run is open again (a rerun of a finished run): its `finished_at` is cleared.
    pub reopen: bool,
}
