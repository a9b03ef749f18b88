//! The agent interface: everything an agent asks of the forge and reports to it.
//!
//! One trait for both shapes of agent: the server's built-in agent implements it with direct
//! calls into the forge (`lanes-server`), a remote agent over HTTP. Every report about a job
//! presents the lease's fencing token; a [`LinkError::Rejected`] answer means the agent no longer
//! holds the job and must stop it at once, without reporting anything more about it.

use crate::status::HostStatus;
use std::future::Future;
use std::time::Duration;

pub use lanes_api::agent::{Assignment, FinishReport};
pub use lanes_core::job::{CacheUse, StepRecord};

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
        step: StepRecord,
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
