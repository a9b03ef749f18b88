//! The agent protocol: what an agent sends the forge and what it gets back (docs/api.md,
//! "Agents"). The server's built-in agent uses the same types in process.

use lanes_core::job::{JobReason, JobState, StepRecord};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// How many heartbeats a lease outlasts when the forge does not say how long it lasts.
pub const LEASE_PER_HEARTBEAT: u32 = 3;

/// `POST /api/v1/agents` (admin): an agent to register.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// Its name: letters, digits, `-`, `_`, `.`; not `local` (the built-in agent's).
    #[cfg_attr(
        feature = "schema",
        schemars(length(min = 1, max = lanes_core::limits::MAX_NAME), regex(pattern = r"^[A-Za-z0-9._-]+$"), extend("not" = {"const": "local"}))
    )]
    pub name: String,
    /// Its labels, matched against a lane's `labels`.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(length(max = lanes_core::limits::MAX_LABELS), inner(length(max = lanes_core::limits::MAX_NAME))))]
    pub labels: Vec<String>,
    /// How many jobs it runs at once.
    #[serde(default = "one")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub capacity: u32,
}

fn one() -> u32 {
    1
}

/// The registered agent and its token, shown once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Registered {
    /// Its name.
    pub name: String,
    /// Its labels.
    pub labels: Vec<String>,
    /// How many jobs it runs at once.
    pub capacity: u32,
    /// Its token: the forge keeps only its hash.
    pub token: String,
}

/// A job the forge handed to an agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
    /// A git repository (bare or not) on the agent's host that holds `head`.
    pub git_dir: std::path::PathBuf,
    /// How often to heartbeat, in milliseconds.
    pub heartbeat_ms: u64,
    /// How long the lease lasts after it was granted or last heartbeated, in milliseconds: an
    /// agent that could not heartbeat for that long has lost the job. 0 (a forge that does not
    /// send it) means [`LEASE_PER_HEARTBEAT`] heartbeats.
    #[serde(default)]
    pub lease_ms: u64,
    /// Where this attempt's log starts: the bytes an earlier attempt (requeued after its agent
    /// was lost) left in the job's log stay, and this attempt appends after them.
    #[serde(default)]
    pub log_offset: u64,
}

impl Assignment {
    /// How long the lease lasts without a heartbeat.
    pub fn lease(&self) -> Duration {
        if self.lease_ms > 0 {
            Duration::from_millis(self.lease_ms)
        } else {
            Duration::from_millis(self.heartbeat_ms.max(1)) * LEASE_PER_HEARTBEAT
        }
    }
}

/// A report about a job that carries nothing but the lease's fencing token (`started`,
/// `heartbeat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Fenced {
    /// The lease's fencing token.
    pub token: u64,
}

/// One step's report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct StepBody {
    /// The lease's fencing token.
    pub token: u64,
    /// The step.
    pub step: StepRecord,
}

/// How a job ended, as the agent reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FinishReport {
    /// `passed`, `failed`, `timed-out` or `error` (the agent could not run the lane at all:
    /// the commit or the catalog could not be read, a pin does not match its host).
    pub state: JobState,
    /// For `error`, what went wrong.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(length(max = lanes_core::limits::MAX_MESSAGE)))]
    pub message: Option<String>,
    /// For `error`, the job's reason when there is one (`pin-mismatch`); absent from agents
    /// that predate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<JobReason>,
    /// Every step, in order.
    #[cfg_attr(feature = "schema", schemars(length(max = lanes_core::limits::MAX_ITEMS)))]
    pub steps: Vec<StepRecord>,
    /// Time spent waiting for cache mounts or a scope.
    pub lock_wait_ms: u64,
    /// Time spent writing the lane directory.
    pub materialize_ms: u64,
}

/// The job's end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct FinishBody {
    /// The lease's fencing token.
    pub token: u64,
    /// How it ended.
    pub finish: FinishReport,
}

/// The secrets a job's lane asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SecretsRequest {
    /// The lease's fencing token.
    pub token: u64,
    /// The secrets' names.
    #[cfg_attr(feature = "schema", schemars(length(max = lanes_core::limits::MAX_ITEMS), inner(length(max = lanes_core::limits::MAX_NAME))))]
    pub names: Vec<String>,
}

/// Each secret asked for: its value, or why the forge refuses it. Answered with
/// `Cache-Control: no-store`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SecretsAnswer {
    /// By name.
    pub secrets: BTreeMap<String, SecretAnswer>,
}

/// One secret: its value, or why the forge refuses it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum SecretAnswer {
    /// The value.
    Value(String),
    /// Why not (the forge holds no such secret, or the job's branch may not use it).
    Refused(String),
}

/// The log's new acknowledged length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LogAck {
    /// Bytes of the log the forge holds durably.
    pub acknowledged: u64,
}

/// An agent's host, as it reports it (`POST /api/v1/agent/status`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct HostStatus {
    /// `os-arch`, as it goes into step keys.
    #[cfg_attr(feature = "schema", schemars(length(max = lanes_core::limits::MAX_NAME)))]
    pub platform: String,
    /// The agent's lanes version.
    #[cfg_attr(feature = "schema", schemars(length(max = lanes_core::limits::MAX_NAME)))]
    pub version: String,
    /// Every scope with cache mounts on the host or a job running now, by name; lanes without a
    /// scope are `_default`.
    #[cfg_attr(feature = "schema", schemars(length(max = lanes_core::limits::MAX_ITEMS)))]
    pub scopes: Vec<ScopeStatus>,
    /// What the host's step cache holds at its last measurement; `None` when it has not been
    /// measured yet.
    pub cache: Option<CacheUsage>,
}

/// One scope on the host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ScopeStatus {
    /// The scope's name, or `_default`.
    #[cfg_attr(feature = "schema", schemars(length(max = lanes_core::limits::MAX_NAME)))]
    pub name: String,
    /// Its cache mounts (the directories under `mounts/<scope>/`, and those its running lanes
    /// declare), sorted.
    #[cfg_attr(feature = "schema", schemars(length(max = lanes_core::limits::MAX_ITEMS), inner(length(max = lanes_core::limits::MAX_KEY))))]
    pub mounts: Vec<String>,
    /// The agent's jobs running a lane of this scope now, by job id.
    #[cfg_attr(feature = "schema", schemars(length(max = lanes_core::limits::MAX_ITEMS)))]
    pub jobs: Vec<u64>,
}

/// What the step cache holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CacheUsage {
    /// Recorded step results.
    pub actions: u64,
    /// Stored output blobs.
    pub blobs: u64,
    /// Bytes of both on disk.
    pub bytes: u64,
}
