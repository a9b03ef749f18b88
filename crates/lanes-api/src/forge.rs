//! The API's objects (docs/api.md): repositories, branches, runs, jobs, steps, groups, agents.
//!
//! Written by the server, read by the CLI. Fields that grow new values over time are
//! [`Lenient`]; everything else is strict.

use crate::Lenient;
use crate::agent::HostStatus;
use jiff::Timestamp;
use lanes_core::LaneClass;
use lanes_core::job::{JobReason, JobState, Priority, StepRecord};
use lanes_core::run::{AgentState, BranchStatus, RunStatus, RunTrigger};
use lanes_core::select::Reason;
use serde::{Deserialize, Serialize};

/// An error: every status the API answers with outside 2xx carries one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Error {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ErrorDetail {
    /// A stable code (the table in docs/api.md).
    pub code: Lenient<ErrorCode>,
    /// For people.
    pub message: String,
}

/// An error's stable code (docs/api.md's table says when each is sent).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// A malformed parameter or body.
    BadRequest,
    /// A value over a limit or out of its range (the message names the field).
    Invalid,
    /// No token where one is needed.
    Unauthorized,
    /// A token that is not valid.
    Forbidden,
    /// No such repository, branch, run, job, lane or route.
    NotFound,
    /// The route has no such method.
    MethodNotAllowed,
    /// The request's head or body did not arrive in time.
    Timeout,
    /// The action does not apply in the current state.
    Conflict,
    /// An agent report with a fencing token that no longer holds the job.
    StaleToken,
    /// The body is larger than the forge takes.
    TooLarge,
    /// The head is larger than the forge takes.
    HeadersTooLarge,
    /// The request's target is longer than the forge reads.
    UriTooLong,
    /// The forge failed (a bug).
    Internal,
    /// The forge is at its limit of connections or requests: retry.
    Busy,
    /// Something the forge needs (its disk, its database) is not available now: retry.
    Unavailable,
}

/// A repository the forge watches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Repo {
    /// Its name in URLs and `#N`.
    pub name: String,
    /// Its path on the forge's host.
    pub path: String,
    /// The branch merge-bases are taken against.
    pub default_branch: String,
    /// The URL its branches are fetched from, for a mirror.
    pub remote_url: Option<String>,
}

/// A branch in the list of a repository's branches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct BranchSummary {
    /// The branch.
    pub branch: String,
    /// The head the forge saw last.
    pub head: Option<String>,
    /// Its CI status; `null` before its first push run.
    pub status: Option<Lenient<BranchStatus>>,
    /// Its latest push run, without jobs.
    pub latest_run: Option<Run>,
}

/// A branch's CI status with its latest head's run (`GET .../branches/{branch}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct BranchState {
    /// The repository.
    pub repo: String,
    /// The branch.
    pub branch: String,
    /// The head the forge saw last.
    pub head: Option<String>,
    /// Derived from the required jobs of its latest head's run.
    pub status: Lenient<BranchStatus>,
    /// That run, with its jobs.
    pub run: Option<Run>,
}

/// A run: everything the forge does for one head of a branch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Run {
    /// The repository.
    pub repo: String,
    /// Its number in the repository (`#N`).
    pub number: u64,
    /// The branch.
    pub branch: String,
    /// The commit tested.
    pub head: String,
    /// What the diff was taken against.
    pub base: Option<String>,
    /// What created it.
    pub trigger: Lenient<RunTrigger>,
    /// Where it is in its life.
    pub status: Lenient<RunStatus>,
    /// The newer run of the branch that superseded it.
    pub superseded_by: Option<u64>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When its first job was leased.
    pub started_at: Option<Timestamp>,
    /// When its last job ended.
    pub finished_at: Option<Timestamp>,
    /// Why the catalog failed at its head, for an `error` run.
    pub diagnostics: Option<RunDiagnostics>,
    /// Its jobs, oldest first (in a run's own document and a branch's status; not in lists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs: Option<Vec<Job>>,
}

impl Run {
    /// Its jobs (none in a list of runs).
    pub fn jobs(&self) -> &[Job] {
        self.jobs.as_deref().unwrap_or_default()
    }

    /// True once the run can change no more: its status is final and none of its jobs (a rerun
    /// added after it finished, say) is still queued or held.
    pub fn is_finished(&self) -> bool {
        let status_final = self.status.known().is_some_and(|s| s.is_terminal());
        status_final && self.jobs().iter().all(|j| !j.is_open())
    }

    /// The newest job of `lane` (the latest rerun, if any).
    pub fn newest_job(&self, lane: &str) -> Option<&Job> {
        self.jobs()
            .iter()
            .filter(|j| j.lane == lane)
            .max_by_key(|j| j.id)
    }

    /// The run's lanes, each once, in the order their first job comes (catalog order).
    pub fn lanes(&self) -> Vec<&str> {
        let mut lanes: Vec<&str> = Vec::new();
        for job in self.jobs() {
            if !lanes.contains(&job.lane.as_str()) {
                lanes.push(&job.lane);
            }
        }
        lanes
    }
}

/// The catalog problems that made a run `error`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RunDiagnostics {
    /// The format's version ([`RunDiagnostics::VERSION`]).
    pub version: u32,
    /// The problems, in the catalog's order.
    pub diagnostics: Vec<RunDiagnostic>,
}

impl RunDiagnostics {
    /// The version the forge writes.
    pub const VERSION: u32 = 1;
}

/// One catalog problem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RunDiagnostic {
    /// A stable code (`catalog::unknown-key`).
    pub code: String,
    /// The file it points into.
    pub file: String,
    /// 1-based line.
    pub line: Option<usize>,
    /// 1-based column.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub help: Option<String>,
}

/// A job: one lane of one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Job {
    /// Its id.
    pub id: u64,
    /// Its lane.
    pub lane: String,
    /// The lane's class.
    pub class: Lenient<LaneClass>,
    /// The order it is served in.
    pub priority: Lenient<Priority>,
    /// Where it is in its life.
    pub status: Lenient<JobState>,
    /// Why it waits, went back to the queue or ended without running.
    pub reason: Option<Lenient<JobReason>>,
    /// Why selection picked or skipped its lane.
    pub selection: Vec<Lenient<Reason>>,
    /// The lanes it needs.
    pub needs: Vec<String>,
    /// Its concurrency group.
    pub group: Option<String>,
    /// The labels an agent needs to run it.
    pub labels: Vec<String>,
    /// The job it reruns.
    pub rerun_of: Option<u64>,
    /// How many times it was requeued after lost agents.
    pub attempts: u32,
    /// How many times it may be.
    pub retries: u32,
    /// The agent that holds or ran it.
    pub agent: Option<String>,
    /// When it was (last) queued.
    pub queued_at: Option<Timestamp>,
    /// When it was leased.
    pub leased_at: Option<Timestamp>,
    /// When it started.
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub finished_at: Option<Timestamp>,
    /// From started to finished (or to now while it runs); 0 before it starts.
    pub duration_ms: u64,
    /// Where its time went.
    pub timings: Timings,
    /// Steps restored from the cache.
    pub steps_cached: u64,
    /// Steps that ran.
    pub steps_run: u64,
    /// Time the cache hits saved.
    pub saved_ms: u64,
    /// The acknowledged length of its log.
    pub log_bytes: u64,
    /// Its steps, in order (each lenient: a step status or cache use a newer forge adds keeps
    /// the job readable).
    pub steps: Vec<Lenient<StepRecord>>,
}

impl Job {
    /// Queued, leased or running. A status this lanes does not know counts as closed, so a newer
    /// forge cannot keep `lanes wait` waiting forever.
    pub fn is_open(&self) -> bool {
        self.status.known().is_some_and(|s| !s.is_terminal())
    }
}

/// Where a job's time went.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Timings {
    /// From queued to leased.
    pub queue_wait_ms: Option<u64>,
    /// Waiting for a scope or cache mounts, as the agent reported it.
    pub lock_wait_ms: Option<u64>,
    /// Writing the lane directory, as the agent reported it.
    pub materialize_ms: Option<u64>,
}

/// The jobs `rerun-failed` queued.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Jobs {
    /// The new jobs.
    pub jobs: Vec<Job>,
}

/// What `refs-changed` did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RefsChanged {
    /// The numbers of the runs it created.
    pub created: Vec<u64>,
}

/// A concurrency group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Group {
    /// Its name.
    pub name: String,
    /// How many jobs may hold it at once.
    pub limit: u32,
    /// The jobs holding it.
    pub holders: Vec<GroupJob>,
    /// The jobs waiting for it, first served first.
    pub waiters: Vec<GroupWaiter>,
}

/// A job holding a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct GroupJob {
    /// The job.
    pub job: u64,
    /// Its repository.
    pub repo: String,
    /// Its run's number.
    pub run: u64,
    /// Its lane.
    pub lane: String,
}

/// A job waiting for a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct GroupWaiter {
    /// The job.
    pub job: u64,
    /// Its repository.
    pub repo: String,
    /// Its run's number.
    pub run: u64,
    /// Its lane.
    pub lane: String,
    /// When it was queued.
    pub queued_at: Option<Timestamp>,
}

/// An agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Agent {
    /// Its name.
    pub name: String,
    /// Its labels.
    pub labels: Vec<String>,
    /// How many jobs it runs at once.
    pub capacity: u32,
    /// What the forge does with it.
    pub state: Lenient<AgentState>,
    /// When it last reported about a job.
    pub last_heartbeat: Option<Timestamp>,
    /// The jobs it holds, by id.
    pub running: Vec<u64>,
    /// Its newest host status.
    pub host: Option<AgentHost>,
}

/// An agent's newest host status and when it came.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AgentHost {
    /// The status.
    #[serde(flatten)]
    pub status: HostStatus,
    /// When it came.
    pub reported_at: Timestamp,
}

/// Whether the forge can take work now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Health {
    /// The data directory's disk is full: no new jobs start until space returns.
    pub disk_full: bool,
    /// Since when.
    pub disk_full_since: Option<Timestamp>,
    /// What is wrong, for people.
    pub message: Option<String>,
}
