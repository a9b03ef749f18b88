//! The forge's vocabulary for runs and branches: what created a run, where it is in its life,
//! and a branch's CI status. Stored by `lanes-store`, sent by the API, shown by the UI and the
//! CLI under these names (their serde forms).

use serde::{Deserialize, Serialize};

/// What created a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum RunTrigger {
    /// A new head on a branch. One run per (repository, branch, head): pushing the same commit
    /// again creates nothing.
    Push,
    /// A nightly schedule slot.
    Nightly,
    /// A person asked for it.
    Manual,
}

impl RunTrigger {
    /// Every trigger.
    pub const ALL: [RunTrigger; 3] = [RunTrigger::Push, RunTrigger::Nightly, RunTrigger::Manual];

    /// The name used in the database and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            RunTrigger::Push => "push",
            RunTrigger::Nightly => "nightly",
            RunTrigger::Manual => "manual",
        }
    }

    /// The trigger called `name`.
    pub fn parse(name: &str) -> Option<RunTrigger> {
        RunTrigger::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// Where a run is in its life, derived by the server from its jobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    /// Created; no job has started yet.
    Pending,
    /// Some job has started.
    Running,
    /// Every required job passed (or was skipped).
    Passed,
    /// A required job did not pass.
    Failed,
    /// Cancelled by a user or superseded by a newer head.
    Cancelled,
    /// The forge could not run it (the catalog failed at that commit).
    Error,
}

impl RunStatus {
    /// Every status.
    pub const ALL: [RunStatus; 6] = [
        RunStatus::Pending,
        RunStatus::Running,
        RunStatus::Passed,
        RunStatus::Failed,
        RunStatus::Cancelled,
        RunStatus::Error,
    ];

    /// The name used in the database and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Passed => "passed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Error => "error",
        }
    }

    /// The status called `name`.
    pub fn parse(name: &str) -> Option<RunStatus> {
        RunStatus::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// True once the run can never change status again.
    pub fn is_terminal(self) -> bool {
        !matches!(self, RunStatus::Pending | RunStatus::Running)
    }
}

/// What a branch's CI status is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum BranchStatus {
    /// No required job has started yet.
    Pending,
    /// Some required job started or finished, others are still to come.
    Running,
    /// Every required job passed or was not selected.
    Passed,
    /// A required job failed, timed out, was cancelled, ended in error or was skipped because a
    /// need did not pass.
    Failed,
    /// The run could not be planned (the catalog failed at that commit).
    Error,
}

impl BranchStatus {
    /// The name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            BranchStatus::Pending => "pending",
            BranchStatus::Running => "running",
            BranchStatus::Passed => "passed",
            BranchStatus::Failed => "failed",
            BranchStatus::Error => "error",
        }
    }
}

/// What the forge does with an agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum AgentState {
    /// Heartbeating and leasing.
    Online,
    /// Finishing what it holds, leasing nothing new.
    Draining,
    /// Paused by an admin: leases nothing.
    Paused,
    /// Stopped heartbeating.
    Lost,
}

impl AgentState {
    /// Every state.
    pub const ALL: [AgentState; 4] = [
        AgentState::Online,
        AgentState::Draining,
        AgentState::Paused,
        AgentState::Lost,
    ];

    /// The name used in the database and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Online => "online",
            AgentState::Draining => "draining",
            AgentState::Paused => "paused",
            AgentState::Lost => "lost",
        }
    }

    /// The state called `name`.
    pub fn parse(name: &str) -> Option<AgentState> {
        AgentState::ALL.into_iter().find(|s| s.as_str() == name)
    }
}
