//! The [`Store`] trait: every read and write the forge makes on its durable state.
//!
//! SQLite implements it ([`crate::SqliteStore`]); a PostgreSQL implementation can later. Every
//! write is one transaction: when a method returns an error, nothing it would have written is.

use crate::agent::{AgentRecord, AgentState, NewAgent};
use crate::error::StoreError;
use crate::job::{JobFinish, JobId, JobRecord, JobUpdate, JobWrite, NewJob};
use crate::repo::{BranchSummary, NewRepo, RefRecord, RepoRecord};
use crate::run::{NewRun, RunDetail, RunFilter, RunId, RunRecord, RunUpdate};
use crate::step::{StepRecord, StepTally};
use jiff::Timestamp;
use std::future::Future;

/// The result of every store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// The forge's durable state.
///
/// Methods return `Send` futures so a server can call them from spawned tasks.
pub trait Store: Send + Sync {
    // Repositories and refs.

    /// Adds a repository; [`StoreError::Duplicate`] if the name is taken.
    fn add_repo(
        &self,
        repo: &NewRepo,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<RepoRecord>> + Send;

    /// Sets a repository's default branch and remote (from the configuration, or a default
    /// branch found again); its path, runs and refs stay.
    fn update_repo(
        &self,
        name: &str,
        default_branch: &str,
        remote_url: Option<&str>,
    ) -> impl Future<Output = StoreResult<RepoRecord>> + Send;

    /// The repository called `name`.
    fn repo(&self, name: &str) -> impl Future<Output = StoreResult<RepoRecord>> + Send;

    /// Every repository, by name.
    fn list_repos(&self) -> impl Future<Output = StoreResult<Vec<RepoRecord>>> + Send;

    /// Records that `branch` of `repo` points at `head`. True when that head is new for the
    /// branch (the watcher should create a run), false when it was seen before.
    fn record_ref(
        &self,
        repo: &str,
        branch: &str,
        head: &str,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// The heads last seen on each branch of `repo`, by branch.
    fn refs(&self, repo: &str) -> impl Future<Output = StoreResult<Vec<RefRecord>>> + Send;

    /// The branches of `repo` (seen by the watcher or with runs), by name, with their newest run.
    fn branches(&self, repo: &str) -> impl Future<Output = StoreResult<Vec<BranchSummary>>> + Send;

    // Runs.

    /// Creates a run, numbered next in its repository, with its jobs and nightly slots, in one
    /// transaction. [`StoreError::Duplicate`] when a push run for the same (repository, branch,
    /// head) exists or a nightly slot was claimed; then nothing is created.
    fn create_run(&self, run: &NewRun) -> impl Future<Output = StoreResult<RunDetail>> + Send;

    /// Adds jobs to an existing run (reruns), queued at `now`, returning them.
    fn add_jobs(
        &self,
        run: RunId,
        jobs: &[NewJob],
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<Vec<JobRecord>>> + Send;

    /// Changes a run's status, timestamps, superseding run or diagnostics.
    fn update_run(
        &self,
        run: RunId,
        update: &RunUpdate,
    ) -> impl Future<Output = StoreResult<RunRecord>> + Send;

    /// Runs matching `filter`, newest first.
    fn list_runs(
        &self,
        filter: &RunFilter,
    ) -> impl Future<Output = StoreResult<Vec<RunRecord>>> + Send;

    /// Run `#number` of `repo` with its jobs and their steps.
    fn run(&self, repo: &str, number: u64) -> impl Future<Output = StoreResult<RunDetail>> + Send;

    // Jobs and scheduling.

    /// One job with its steps.
    fn job(&self, job: JobId) -> impl Future<Output = StoreResult<JobRecord>> + Send;

    /// Every queued, leased or running job, in id (FIFO) order: what the scheduler rebuilds its
    /// state from at start.
    fn open_jobs(&self) -> impl Future<Output = StoreResult<Vec<JobRecord>>> + Send;

    /// The steps of the newest `jobs` jobs that ended (by id, the order they were queued in),
    /// counted per day, agent, lane, step, cache use, outcome and miss kind: what the web UI's
    /// cache and agents pages add up. One aggregate query.
    fn step_tallies(&self, jobs: u32) -> impl Future<Output = StoreResult<Vec<StepTally>>> + Send;

    /// The smallest fencing token never handed out; survives restarts.
    fn next_token(&self) -> impl Future<Output = StoreResult<u64>> + Send;

    /// Persists scheduler transitions atomically, each compare-and-set on its `from` state (see
    /// [`JobUpdate`]). If any one does not hold, none is written: [`StoreError::StateConflict`],
    /// [`StoreError::StaleToken`], [`StoreError::Conflict`] or [`StoreError::NotFound`].
    fn apply(&self, updates: &[JobUpdate]) -> impl Future<Output = StoreResult<()>> + Send;

    /// Commits `writes` in order in one transaction (one commit, so one sync to disk for them
    /// all): the forge groups the reports and leases of many agents this way. All or nothing:
    /// if one fails, none is written and its error is returned (the same errors as the single
    /// calls).
    fn write_jobs(&self, writes: &[JobWrite]) -> impl Future<Output = StoreResult<()>> + Send;

    // Fenced writes from the agent holding a job: each requires `token` to be the job's current
    // token and the job to be leased or running, else [`StoreError::StaleToken`].

    /// Extends the lease to `expires_at` (never shortens it).
    fn heartbeat(
        &self,
        job: JobId,
        token: u64,
        expires_at: Timestamp,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// The agent started the job: leased becomes running (again: idempotent), and its run, if
    /// it was pending, becomes running, started at `at`.
    fn start_job(
        &self,
        job: JobId,
        token: u64,
        at: Timestamp,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Records (or replaces) one step while the job runs.
    fn record_step(
        &self,
        job: JobId,
        token: u64,
        step: &StepRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// The job ended: its terminal state, steps and timings in one transaction.
    fn finish_job(
        &self,
        job: JobId,
        token: u64,
        finish: &JobFinish,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Acknowledges that the job's log file is `to` bytes long, compare-and-set on the previous
    /// acknowledged length `from` ([`StoreError::Conflict`] if it moved). See [`crate::logs`].
    fn ack_log(
        &self,
        job: JobId,
        token: u64,
        from: u64,
        to: u64,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// The acknowledged length of the job's log.
    fn log_len(&self, job: JobId) -> impl Future<Output = StoreResult<u64>> + Send;

    // Agents.

    /// Registers an agent with its token (stored hashed); [`StoreError::Duplicate`] if the name
    /// is taken.
    fn register_agent(
        &self,
        agent: &NewAgent,
        token: &str,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<AgentRecord>> + Send;

    /// The agent whose token this is, if any.
    fn verify_agent_token(
        &self,
        token: &str,
    ) -> impl Future<Output = StoreResult<Option<AgentRecord>>> + Send;

    /// Records an agent's heartbeat.
    fn agent_heartbeat(
        &self,
        name: &str,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Sets an agent's state (drain, pause, lost, back online).
    fn set_agent_state(
        &self,
        name: &str,
        state: AgentState,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Every agent, by name.
    fn list_agents(&self) -> impl Future<Output = StoreResult<Vec<AgentRecord>>> + Send;

    // Admin tokens.

    /// On first start (no admin token yet), creates one and returns it: the caller prints it
    /// once; only its hash is stored. `None` when one exists.
    fn ensure_admin_token(
        &self,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<Option<String>>> + Send;

    /// True when `token` is an admin token.
    fn verify_admin_token(&self, token: &str) -> impl Future<Output = StoreResult<bool>> + Send;

    // Nightly slots.

    /// The newest cron slot claimed for nightly lane `lane` of `repo` (by a run created with it in
    /// [`NewRun::nightly_slots`]), or `None` when none was. [`StoreError::NotFound`] for an
    /// unknown repository.
    fn last_nightly_slot(
        &self,
        repo: &str,
        lane: &str,
    ) -> impl Future<Output = StoreResult<Option<Timestamp>>> + Send;
}
