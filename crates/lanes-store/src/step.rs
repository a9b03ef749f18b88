//! Steps: the commands of a job, each with its cache outcome and timings.

use lanes_core::explain::MissKind;

pub use lanes_core::job::{CacheUse, StepRecord};

/// The steps of recently ended jobs counted together ([`crate::Store::step_tallies`]): one row
/// per day, agent, lane, step, cache use, outcome and miss kind. What the web UI's cache and
/// agents pages add up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepTally {
    /// The day (UTC, `YYYY-MM-DD`) the jobs ended.
    pub day: String,
    /// The agent that ran them.
    pub agent: Option<String>,
    /// The lane.
    pub lane: String,
    /// The step.
    pub step: String,
    /// Whether their results came from the cache.
    pub cache: CacheUse,
    /// Whether they passed.
    pub passed: bool,
    /// For misses, the kind of reason (`None`: not reported).
    pub miss_kind: Option<MissKind>,
    /// How many steps.
    pub count: u64,
    /// The time their hits saved.
    pub saved_ms: u64,
    /// The newest of them: its job, the job's repository and run, its miss detail.
    pub latest: LatestStep,
}

/// The newest step of a [`StepTally`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatestStep {
    /// Its job.
    pub job: crate::JobId,
    /// The job's repository.
    pub repo: String,
    /// The job's run.
    pub run_number: u64,
    /// Why it missed, when it did and it was reported.
    pub miss_detail: Option<String>,
}
