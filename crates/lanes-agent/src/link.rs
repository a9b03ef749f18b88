//! The agent interface: everything an agent asks of the forge and reports to it.
//!
//! One trait for both shapes of agent: the server's built-in agent implements it with direct
//! calls into the forge (`lanes-server`), a remote agent over HTTP. Every report about a job
//! presents the lease's fencing token; a [`LinkError::Rejected`] answer means the agent no longer
//! holds the job and must stop it at once, without reporting anything more about it.

use crate::status::HostStatus;
use lanes_core::explain::MissReason;
use lanes_core::job::{JobReason, JobState};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

/// A job the forge handed to this agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The job's id.
    pub job: u64,
    /// The lease's fencing token, presented with every report.
    pub token: u64,
    /// The repository's name.
    pub repo: String,
    /// The run's number in its repository.
    pub run: u64,
    /// The lane to run.
    pub lane: String,
    /// The commit to test (full hex id).
    pub head: String,
    /// A git repository (bare or not) on this host that holds `head`.
    pub git_dir: PathBuf,
    /// How often to heartbeat, in milliseconds.
    pub heartbeat_ms: u64,
    /// How long the lease lasts after it was granted or last heartbeated, in milliseconds: an
    /// agent that could not heartbeat for that long has lost the job. 0 (a forge that does not
    /// send it) means [`crate::LEASE_PER_HEARTBEAT`] heartbeats.
    #[serde(default)]
    pub lease_ms: u64,
    /// Where this attempt's log starts: the bytes an earlier attempt (requeued after its agent
    /// was lost) left in the job's log stay, and this attempt appends after them.
    #[serde(default)]
    pub log_offset: u64,
}

/// Whether a step's result came from the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepCache {
    /// The recorded result was reused.
    Hit,
    /// The step ran.
    Miss,
    /// Caching is off for the step.
    Disabled,
}

/// One step, as the agent reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepReport {
    /// Position in the lane, from 0.
    pub index: u32,
    /// The step's name.
    pub name: String,
    /// `running` while it runs; `passed`, `failed`, `timed-out`, `cancelled`, `skipped` after
    /// (a cache hit is `passed` with [`StepCache::Hit`]).
    pub status: JobState,
    /// Whether its result came from the cache.
    pub cache: StepCache,
    /// Its key (hex).
    pub key: Option<String>,
    /// Wall time (running it, or restoring a hit).
    pub duration_ms: Option<u64>,
    /// For a hit, the time the original run took.
    pub saved_ms: Option<u64>,
    /// The exit code, when it ran to an exit.
    pub exit_code: Option<i32>,
    /// For a miss: why, from the step's last recorded run in the agent's cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub miss: Option<MissReason>,
}

/// How a job ended, as the agent reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishReport {
    /// `passed`, `failed`, `timed-out` or `error` (the agent could not run the lane at all:
    /// the commit or the catalog could not be read, a pin does not match its host).
    pub state: JobState,
    /// For `error`, what went wrong.
    pub message: Option<String>,
    /// For `error`, the job's reason when there is one (`pin-mismatch`); absent from agents
    /// that predate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<JobReason>,
    /// Every step, in order.
    pub steps: Vec<StepReport>,
    /// Time spent waiting for cache mounts or a scope.
    pub lock_wait_ms: u64,
    /// Time spent writing the lane directory.
    pub materialize_ms: u64,
}

impl Assignment {
    /// How long the lease lasts without a heartbeat.
    pub fn lease(&self) -> Duration {
        if self.lease_ms > 0 {
            Duration::from_millis(self.lease_ms)
        } else {
            Duration::from_millis(self.heartbeat_ms.max(1)) * crate::LEASE_PER_HEARTBEAT
        }
    }
}

/// Secrets by name: each value, or why the forge refused it.
pub type Secrets = std::collections::BTreeMap<String, Result<String, String>>;

/// A report the forge did not take.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The agent no longer holds the job (stale token, expired lease, cancelled, ended): stop it
    /// and report nothing more about it.
    #[error("the forge rejected the report: {0}")]
    Rejected(String),
    /// The forge could not be reached or failed; the same report may be sent again.
    #[error("the forge is unavailable: {0}")]
    Unavailable(String),
}

/// What an agent asks of the forge. Implemented in-process by the server's built-in agent and
/// over HTTP by remote agents.
pub trait Link: Send + Sync + 'static {
    /// The next job for this agent, waiting up to `wait` for one (a long poll); `None` when none
    /// came.
    fn lease(
        &self,
        wait: Duration,
    ) -> impl Future<Output = Result<Option<Assignment>, LinkError>> + Send;

    /// The job started (leased becomes running).
    fn started(&self, job: u64, token: u64) -> impl Future<Output = Result<(), LinkError>> + Send;

    /// Extends the lease.
    fn heartbeat(&self, job: u64, token: u64)
    -> impl Future<Output = Result<(), LinkError>> + Send;

    /// Appends `bytes` to the job's log at byte `offset` (the length acknowledged so far);
    /// returns the new acknowledged length. An `offset` behind the acknowledged length (a resend
    /// after a lost answer) is answered with the acknowledged length and nothing is written
    /// twice; a resend whose bytes differ from the acknowledged ones is rejected.
    fn append_log(
        &self,
        job: u64,
        token: u64,
        offset: u64,
        bytes: Vec<u8>,
    ) -> impl Future<Output = Result<u64, LinkError>> + Send;

    /// The values of the secrets `names` that the job's lane asks for: per name the value, or
    /// why the forge does not give it (it holds none, or the job's branch may not use it).
    fn secrets(
        &self,
        job: u64,
        token: u64,
        names: Vec<String>,
    ) -> impl Future<Output = Result<Secrets, LinkError>> + Send;

    /// Records (or replaces) one step.
    fn step(
        &self,
        job: u64,
        token: u64,
        step: StepReport,
    ) -> impl Future<Output = Result<(), LinkError>> + Send;

    /// Resolves when the forge takes the job from this lease (a user cancelled it, a newer head
    /// superseded it, it was requeued) so the agent can stop its steps at once rather than at
    /// its next heartbeat, whose rejection would tell it too. A link that cannot tell never
    /// resolves.
    fn revoked(&self, job: u64, token: u64) -> impl Future<Output = ()> + Send {
        // Unused here: a link that cannot tell needs neither.
        let _ = (job, token);
        std::future::pending()
    }

    /// The agent's host now: its scopes and its cache (see [`crate::status`]). The forge keeps
    /// the newest for its agents page; nothing else depends on it.
    fn host_status(&self, status: HostStatus)
    -> impl Future<Output = Result<(), LinkError>> + Send;

    /// The job ended.
    fn finish(
        &self,
        job: u64,
        token: u64,
        finish: FinishReport,
    ) -> impl Future<Output = Result<(), LinkError>> + Send;
}
