//! Jobs: one lane inside one run, the unit of scheduling, with its lease and phase timings.

use crate::error::StoreError;
use crate::run::RunId;
use crate::step::StepRecord;
use jiff::Timestamp;
use lanes_core::job::{JobReason, JobState, Priority};
use lanes_core::schedule::Transition;
use lanes_core::{LaneClass, Reason};

/// A job's row id. Ids only grow (never reused), so id order is creation order: the FIFO order
/// within one priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(pub i64);

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A job to create inside a run.
#[derive(Clone, Debug)]
pub struct NewJob {
    /// The lane's name.
    pub lane: String,
    /// The lane's class.
    pub class: LaneClass,
    /// The order it is served in.
    pub priority: Priority,
    /// [`JobState::Queued`], or a terminal state (normally [`JobState::Skipped`]) for a lane that
    /// will not run.
    pub state: JobState,
    /// Why it waits or why it will not run.
    pub reason: Option<JobReason>,
    /// Why selection picked (or skipped) the lane.
    pub selection: Vec<Reason>,
    /// The lanes of the same run it needs, by name (jobs of the same batch first, else the newest
    /// job of that lane already in the run).
    pub needs: Vec<String>,
    /// Its concurrency group.
    pub group: Option<String>,
    /// Labels an agent must all have.
    pub labels: Vec<String>,
    /// How many times it may be requeued after lost agents.
    pub retries: u32,
    /// The job this one reruns.
    pub rerun_of: Option<JobId>,
}

/// Phase timings of a job, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timings {
    /// From queued to leased (the last time it was queued); set when it is leased.
    pub queue_wait_ms: Option<u64>,
    /// Waiting for a per-host scope or a lock, as the agent reports it.
    pub lock_wait_ms: Option<u64>,
    /// Materializing the lane's inputs, as the agent reports it.
    pub materialize_ms: Option<u64>,
}

/// A stored job.
#[derive(Clone, Debug, PartialEq)]
pub struct JobRecord {
    /// Row id; id order is FIFO order.
    pub id: JobId,
    /// Its run.
    pub run: RunId,
    /// The run's repository.
    pub repo: String,
    /// The run's number.
    pub run_number: u64,
    /// The lane.
    pub lane: String,
    /// The lane's class.
    pub class: LaneClass,
    /// The order it is served in.
    pub priority: Priority,
    /// Its state.
    pub state: JobState,
    /// Why it waits, why it went back to the queue, or why it ended without running.
    pub reason: Option<JobReason>,
    /// The selection reasons, as the JSON array they were stored as.
    pub selection: serde_json::Value,
    /// The jobs it needs.
    pub needs: Vec<JobId>,
    /// Its concurrency group.
    pub group: Option<String>,
    /// Labels an agent must all have.
    pub labels: Vec<String>,
    /// How many times it may be requeued after lost agents.
    pub retries: u32,
    /// How many times it was requeued from a held state so far.
    pub attempts: u32,
    /// The agent holding (or that last held) the lease.
    pub agent: Option<String>,
    /// The fencing token of the current (or last) lease.
    pub token: Option<u64>,
    /// When the current lease expires unless heartbeated; `None` when not held.
    pub expires_at: Option<Timestamp>,
    /// The job this one reruns.
    pub rerun_of: Option<JobId>,
    /// When it was (last) queued.
    pub queued_at: Option<Timestamp>,
    /// When it was (last) leased.
    pub leased_at: Option<Timestamp>,
    /// When the agent reported it started.
    pub started_at: Option<Timestamp>,
    /// When it reached a terminal state.
    pub finished_at: Option<Timestamp>,
    /// Phase timings.
    pub timings: Timings,
    /// The acknowledged length of its log file, in bytes.
    pub log_len: u64,
    /// Its steps, by index.
    pub steps: Vec<StepRecord>,
}

/// One scheduler transition to persist, compare-and-set on `from`.
///
/// What is written besides the state and reason depends on `to`:
/// - to `leased`: `token` (fresh: never handed out before), `agent` and `expires_at` are
///   required; `leased_at` and the queue wait are set;
/// - to `running`: `started_at`;
/// - to `queued`: `queued_at`; the lease is cleared; from a held state `attempts` grows, but
///   with reason [`JobReason::HandedBack`] (a clean stop);
/// - to a terminal state: `finished_at`; the lease stops (no expiry), agent and token are kept;
/// - `from == to`: only the reason, and the expiry when given (a scheduler-side heartbeat).
///
/// From a held state a `token` (other than for a new lease) must equal the job's current token,
/// and a transition out of a held state with reason [`JobReason::AgentLost`] or
/// [`JobReason::RetriesExhausted`] requires the lease to have expired by `at`, so a heartbeat
/// that landed after the decision wins.
#[derive(Clone, Debug, PartialEq)]
pub struct JobUpdate {
    /// The job.
    pub job: JobId,
    /// The state the decision was computed from.
    pub from: JobState,
    /// The new state.
    pub to: JobState,
    /// The new reason (`None` clears it).
    pub reason: Option<JobReason>,
    /// The new lease's fencing token, or the current one to check.
    pub token: Option<u64>,
    /// The agent of a new lease.
    pub agent: Option<String>,
    /// When a new (or extended) lease expires.
    pub expires_at: Option<Timestamp>,
    /// When the transition happened.
    pub at: Timestamp,
}

impl JobUpdate {
    /// The update persisting a decision of the scheduler (`lanes_core::schedule`), made at `at`.
    /// Its ids and times are the scheduler's (`u64` ids, milliseconds since the epoch); one out
    /// of the store's range is [`StoreError::Invalid`].
    pub fn from_transition(t: &Transition, at: Timestamp) -> Result<JobUpdate, StoreError> {
        let job = i64::try_from(t.job.0)
            .map(JobId)
            .map_err(|_| StoreError::Invalid(format!("job id {} is too large", t.job)))?;
        let expires_at = t
            .expires_at
            .map(|ms| {
                i64::try_from(ms)
                    .ok()
                    .and_then(|ms| Timestamp::from_millisecond(ms).ok())
                    .ok_or_else(|| {
                        StoreError::Invalid(format!("lease expiry {ms} is out of range"))
                    })
            })
            .transpose()?;
        Ok(JobUpdate {
            job,
            from: t.from,
            to: t.to,
            reason: t.reason.clone(),
            token: t.token.map(|token| token.0),
            agent: t.agent.as_ref().map(|agent| agent.0.clone()),
            expires_at,
            at,
        })
    }
}

/// One of the job writes [`crate::Store::write_jobs`] commits together.
#[derive(Clone, Debug, PartialEq)]
pub enum JobWrite {
    /// A scheduler transition, as [`crate::Store::apply`] writes it.
    Apply(JobUpdate),
    /// A lease extended, as [`crate::Store::heartbeat`].
    Heartbeat {
        /// The job.
        job: JobId,
        /// The holder's fencing token.
        token: u64,
        /// The new expiry.
        expires_at: Timestamp,
    },
    /// A leased job started, as [`crate::Store::start_job`].
    Start {
        /// The job.
        job: JobId,
        /// The holder's fencing token.
        token: u64,
        /// When.
        at: Timestamp,
        /// Mark the run running if it is pending, as `start_job` does; the writer may skip it
        /// for a run it knows is running already.
        mark_run: bool,
    },
    /// A job ended, as [`crate::Store::finish_job`].
    Finish {
        /// The job.
        job: JobId,
        /// The holder's fencing token.
        token: u64,
        /// Its end.
        finish: JobFinish,
    },
}

/// What an agent reports when a job ends.
#[derive(Clone, Debug, PartialEq)]
pub struct JobFinish {
    /// The terminal state.
    pub state: JobState,
    /// Why, when it did not pass.
    pub reason: Option<JobReason>,
    /// When it ended.
    pub at: Timestamp,
    /// Its steps (replacing any recorded with the same index).
    pub steps: Vec<StepRecord>,
    /// Time spent waiting for a scope or a lock.
    pub lock_wait_ms: Option<u64>,
    /// Time spent materializing inputs.
    pub materialize_ms: Option<u64>,
}
