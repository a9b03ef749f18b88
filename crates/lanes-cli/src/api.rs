//! The forge's JSON objects (docs/api.md), as the CLI reads them.
//!
//! Lenient on purpose: fields the CLI does not show are not declared, most declared ones have a
//! default, and reasons stay JSON until they are put into words, so a newer forge that adds a
//! field or a reason kind still reads. `--json` output never goes through these types: the
//! commands print the forge's document as it came.

use lanes_core::job::JobState;
use lanes_store::RunStatus;
use serde::Deserialize;
use serde_json::Value;

/// `GET /api/v1/repos/{repo}/branches/{branch}`.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct BranchStatus {
    pub(crate) repo: String,
    pub(crate) branch: String,
    /// The head the forge saw last.
    #[serde(default)]
    pub(crate) head: Option<String>,
    pub(crate) status: String,
    #[serde(default)]
    pub(crate) run: Option<Run>,
}

/// A run, with its jobs when it comes from a branch status or `GET .../runs/{number}`.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Run {
    pub(crate) number: u64,
    #[serde(default)]
    pub(crate) branch: String,
    pub(crate) head: String,
    /// `push`, `nightly` or `manual`; empty when the forge did not say.
    #[serde(default)]
    pub(crate) trigger: String,
    pub(crate) status: String,
    #[serde(default)]
    pub(crate) superseded_by: Option<u64>,
    #[serde(default)]
    pub(crate) diagnostics: Option<Value>,
    #[serde(default)]
    pub(crate) jobs: Vec<Job>,
}

impl Run {
    /// True once the run can change no more: its status is final and none of its jobs (a
    /// rerun added after it finished, say) is still queued or held.
    pub(crate) fn is_finished(&self) -> bool {
        let status_final = RunStatus::parse(&self.status).is_some_and(RunStatus::is_terminal);
        status_final && self.jobs.iter().all(|j| !j.is_open())
    }

    /// The newest job of `lane` (the latest rerun, if any).
    pub(crate) fn newest_job(&self, lane: &str) -> Option<&Job> {
        self.jobs
            .iter()
            .filter(|j| j.lane == lane)
            .max_by_key(|j| j.id)
    }

    /// The run's lanes, each once, in the order their first job comes (catalog order).
    pub(crate) fn lanes(&self) -> Vec<&str> {
        let mut lanes: Vec<&str> = Vec::new();
        for job in &self.jobs {
            if !lanes.contains(&job.lane.as_str()) {
                lanes.push(&job.lane);
            }
        }
        lanes
    }
}

/// A job.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Job {
    pub(crate) id: i64,
    pub(crate) lane: String,
    #[serde(default)]
    pub(crate) class: String,
    pub(crate) status: String,
    /// A [`lanes_core::job::JobReason`] as JSON, or `null`.
    #[serde(default)]
    pub(crate) reason: Option<Value>,
    /// Selection reasons (`lanes select --json`'s), as JSON.
    #[serde(default)]
    pub(crate) selection: Vec<Value>,
    #[serde(default)]
    pub(crate) rerun_of: Option<i64>,
    #[serde(default)]
    pub(crate) started_at: Option<String>,
    #[serde(default)]
    pub(crate) duration_ms: u64,
    #[serde(default)]
    pub(crate) steps_cached: u64,
    #[serde(default)]
    pub(crate) steps_run: u64,
    #[serde(default)]
    pub(crate) saved_ms: u64,
}

impl Job {
    /// Queued, leased or running. A status this lanes does not know counts as closed, so a
    /// newer forge cannot keep `lanes wait` waiting forever.
    pub(crate) fn is_open(&self) -> bool {
        JobState::parse(&self.status).is_some_and(|s| !s.is_terminal())
    }
}

/// One entry of `GET /api/v1/repos`.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Repository {
    pub(crate) name: String,
}

/// `.../log/stream`: `event: end`'s data.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct LogEnd {
    pub(crate) status: String,
}

/// `.../log/stream`: `event: log`'s data.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct LogChunk {
    pub(crate) offset: u64,
    pub(crate) text: String,
}

/// `.../log/stream`: `event: error`'s data (the forge could not read the log; the stream ends).
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct StreamError {
    pub(crate) message: String,
}

/// `POST .../rerun-failed`.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Jobs {
    pub(crate) jobs: Vec<Job>,
}

/// `POST .../refs-changed`.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct RefsChanged {
    #[serde(default)]
    pub(crate) created: Vec<u64>,
}

/// Reads a forge document into `T`, or says which document the forge got wrong.
pub(crate) fn read<T: serde::de::DeserializeOwned>(
    client: &crate::client::Client,
    what: &str,
    value: &Value,
) -> Result<T, crate::error::CliError> {
    T::deserialize(value).map_err(|e| client.unreadable(&format!("{what}: {e}")))
}
