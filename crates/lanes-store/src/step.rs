//! Steps: the commands of a job, each with its cache outcome and timings.

use lanes_core::explain::{MissKind, MissReason};
use lanes_core::job::JobState;

/// Whether a step's result came from the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CacheUse {
    /// The key was seen before; the recorded result was reused.
    Hit,
    /// The step ran (and, if it passed, its result was recorded).
    Miss,
    /// Caching is off for the lane or step.
    Disabled,
}

impl CacheUse {
    /// Every value.
    pub const ALL: [CacheUse; 3] = [CacheUse::Hit, CacheUse::Miss, CacheUse::Disabled];

    /// The name used in the database and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheUse::Hit => "hit",
            CacheUse::Miss => "miss",
            CacheUse::Disabled => "disabled",
        }
    }

    /// The value called `name`.
    pub fn parse(name: &str) -> Option<CacheUse> {
        CacheUse::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

/// One step of a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepRecord {
    /// Position in the lane, from 0.
    pub index: u32,
    /// The step's name.
    pub name: String,
    /// Its outcome (`running` while it runs; `passed`, `failed`, `timed-out`, `cancelled`,
    /// `skipped` after).
    pub status: JobState,
    /// Whether its result came from the cache.
    pub cache: CacheUse,
    /// Its key (hex), when it was keyed.
    pub key: Option<String>,
    /// How long it took (running, or restoring a hit).
    pub duration_ms: Option<u64>,
    /// For a hit: how long the original run took, the time the hit saved.
    pub saved_ms: Option<u64>,
    /// The command's exit code, when it ran to an exit.
    pub exit_code: Option<i32>,
    /// For a miss: why, as the agent explained it.
    pub miss: Option<MissReason>,
}

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
