//! The forge's vocabulary for jobs: their states, the order they are served in, and the reason
//! every waiting or finished job carries.
//!
//! The scheduler ([`crate::schedule`]) decides with these values, `lanes-store` persists them
//! (as the kebab-case names and JSON objects their serde forms give), and the API, UI and CLI
//! show them. One definition, so the database, the wire and the screen never disagree.

use crate::explain::MissReason;
use serde::{Deserialize, Serialize};

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    /// Waiting to be leased; carries a [`JobReason`] saying why it is not running yet.
    Queued,
    /// An agent holds a lease but has not reported the job started.
    Leased,
    /// The agent reported the job started.
    Running,
    /// Every step passed or was a cache hit.
    Passed,
    /// A step failed.
    Failed,
    /// A step or the lane ran out of time.
    TimedOut,
    /// A step went over its memory limit and the kernel killed it. Only a step ends so; its
    /// job ends [`JobState::Failed`], saying so.
    OomKilled,
    /// Cancelled by a user or superseded by a newer head.
    Cancelled,
    /// Never ran: a need failed, or it was not selected.
    Skipped,
    /// The forge could not run it: retries used up after lost agents, a catalog error, a pin
    /// that does not match the agent's host; an agent's failure of the environment or a bug
    /// ([`crate::ErrorClass`]).
    Error,
}

impl JobState {
    /// Every state, in the order docs list them.
    pub const ALL: [JobState; 10] = [
        JobState::Queued,
        JobState::Leased,
        JobState::Running,
        JobState::Passed,
        JobState::Failed,
        JobState::TimedOut,
        JobState::OomKilled,
        JobState::Cancelled,
        JobState::Skipped,
        JobState::Error,
    ];

    /// The name used in the database, JSON and on screen.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Leased => "leased",
            JobState::Running => "running",
            JobState::Passed => "passed",
            JobState::Failed => "failed",
            JobState::TimedOut => "timed-out",
            JobState::OomKilled => "oom-killed",
            JobState::Cancelled => "cancelled",
            JobState::Skipped => "skipped",
            JobState::Error => "error",
        }
    }

    /// The state called `name`.
    pub fn parse(name: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// True once the job can never change state again.
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            JobState::Queued | JobState::Leased | JobState::Running
        )
    }

    /// True while an agent holds the job.
    pub fn is_held(self) -> bool {
        matches!(self, JobState::Leased | JobState::Running)
    }

    /// True for a finished job that lets the jobs needing it run.
    pub fn is_success(self) -> bool {
        self == JobState::Passed
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The order queued jobs are served in: lower first, FIFO within one priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Priority {
    /// Reruns and manual jobs: a person is waiting for them.
    Manual,
    /// Required lanes: they gate a branch.
    Required,
    /// Advisory lanes.
    Advisory,
    /// Nightly lanes.
    Nightly,
}

impl Priority {
    /// Every priority, highest first.
    pub const ALL: [Priority; 4] = [
        Priority::Manual,
        Priority::Required,
        Priority::Advisory,
        Priority::Nightly,
    ];

    /// The name used in the database and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Manual => "manual",
            Priority::Required => "required",
            Priority::Advisory => "advisory",
            Priority::Nightly => "nightly",
        }
    }

    /// The priority called `name`.
    pub fn parse(name: &str) -> Option<Priority> {
        Priority::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

/// A job that holds a concurrency group, as a waiting job names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Holder {
    /// The repository of the holder's run.
    pub repo: String,
    /// The run's number within its repository.
    pub run: u64,
    /// The holder's lane.
    pub lane: String,
}

/// Why a job is waiting, why it went back to the queue, or why it ended without running.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum JobReason {
    /// Queued: some of its needs have not passed yet.
    WaitingForNeeds {
        /// The lanes it still waits for.
        lanes: Vec<String>,
    },
    /// Queued: its concurrency group is full.
    BlockedByGroup {
        /// The group.
        group: String,
        /// The jobs holding it.
        holders: Vec<Holder>,
    },
    /// Queued: no connected agent has every label the lane asks for.
    WaitingForAgent {
        /// The labels it needs.
        labels: Vec<String>,
    },
    /// Queued: agents that could run it exist but are all busy.
    WaitingForCapacity,
    /// Queued again: the agent that held it stopped heartbeating.
    AgentLost {
        /// The agent.
        agent: String,
        /// How many times it has been requeued so far (this one included).
        attempt: u32,
    },
    /// Queued again by a user (`requeue`).
    Requeued,
    /// Queued again: the forge stopped without handing it back (a crash, a kill) while its
    /// built-in agent held it. Counts as an attempt, as a lost agent does.
    ForgeRestarted {
        /// How many times it has been requeued so far (this one included).
        attempt: u32,
    },
    /// Queued again: the forge was stopped cleanly (SIGTERM) while its built-in agent held it.
    /// Not an attempt: the job did nothing wrong.
    HandedBack,
    /// Error: it was requeued `retries` times after lost agents (or forge restarts) and lost
    /// its agent again.
    RetriesExhausted {
        /// How many times it was requeued.
        retries: u32,
    },
    /// Skipped: a lane it needs did not pass.
    NeedFailed {
        /// The lane that did not pass.
        lane: String,
    },
    /// Cancelled: a newer head on the same branch started run `by`.
    Superseded {
        /// The number of the newer run.
        by: u64,
    },
    /// Cancelled by a user.
    CancelledByUser,
    /// Cancelled: the forge shut its run down (the run's catalog failed, the repository went
    /// away).
    RunAborted {
        /// What happened.
        message: String,
    },
    /// Error: a pin the lane uses does not match the host that was to run it, so nothing ran,
    /// was restored or was recorded.
    PinMismatch {
        /// The pin.
        pin: String,
        /// Its `expect`.
        expected: String,
        /// What its command printed on the host, or why it printed nothing usable.
        found: String,
    },
}

/// A reason in words: the one wording the CLI, the web UI and the logs use.
impl std::fmt::Display for JobReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobReason::WaitingForNeeds { lanes } => write!(f, "waiting for {}", lanes.join(", ")),
            JobReason::BlockedByGroup { group, holders } => {
                write!(f, "blocked by group {group}")?;
                if !holders.is_empty() {
                    let held: Vec<String> = holders
                        .iter()
                        .map(|h| format!("{} #{} {}", h.repo, h.run, h.lane))
                        .collect();
                    write!(f, ", held by {}", held.join(", "))?;
                }
                Ok(())
            }
            JobReason::WaitingForAgent { labels } => {
                write!(
                    f,
                    "waiting for an agent with labels [{}]",
                    labels.join(", ")
                )
            }
            JobReason::WaitingForCapacity => f.write_str("waiting for capacity"),
            JobReason::AgentLost { attempt, .. } => write!(f, "agent lost (attempt {attempt})"),
            JobReason::Requeued => f.write_str("requeued by a user"),
            JobReason::ForgeRestarted { attempt } => {
                write!(f, "forge restarted (attempt {attempt})")
            }
            JobReason::HandedBack => f.write_str("handed back at a forge stop"),
            JobReason::RetriesExhausted { retries } => write!(
                f,
                "agent lost again after {retries} retr{}",
                if *retries == 1 { "y" } else { "ies" }
            ),
            JobReason::NeedFailed { lane } => write!(f, "needs {lane}, which did not pass"),
            JobReason::Superseded { by } => write!(f, "superseded by #{by}"),
            JobReason::CancelledByUser => f.write_str("cancelled by a user"),
            JobReason::RunAborted { message } => write!(f, "run aborted: {message}"),
            JobReason::PinMismatch {
                pin,
                expected,
                found,
            } => write!(
                f,
                "pin {pin} does not match its agent: expected {expected}, found {found}"
            ),
        }
    }
}

impl JobReason {
    /// The `kind` string of this reason, as in JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            JobReason::WaitingForNeeds { .. } => "waiting-for-needs",
            JobReason::BlockedByGroup { .. } => "blocked-by-group",
            JobReason::WaitingForAgent { .. } => "waiting-for-agent",
            JobReason::WaitingForCapacity => "waiting-for-capacity",
            JobReason::AgentLost { .. } => "agent-lost",
            JobReason::Requeued => "requeued",
            JobReason::ForgeRestarted { .. } => "forge-restarted",
            JobReason::HandedBack => "handed-back",
            JobReason::RetriesExhausted { .. } => "retries-exhausted",
            JobReason::NeedFailed { .. } => "need-failed",
            JobReason::Superseded { .. } => "superseded",
            JobReason::CancelledByUser => "cancelled-by-user",
            JobReason::RunAborted { .. } => "run-aborted",
            JobReason::PinMismatch { .. } => "pin-mismatch",
        }
    }
}

/// Whether a step's result came from the cache: one vocabulary for `lanes run`'s report, the
/// agent's reports, the store and the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
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

/// One step of a job: as the agent reports it, the store keeps it and the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct StepRecord {
    /// Position in the lane, from 0.
    pub index: u32,
    /// The step's name.
    #[cfg_attr(feature = "schema", schemars(length(max = crate::limits::MAX_NAME)))]
    pub name: String,
    /// Its outcome (`running` while it runs; `passed`, `failed`, `timed-out`, `cancelled`,
    /// `skipped` after).
    pub status: JobState,
    /// Whether its result came from the cache.
    pub cache: CacheUse,
    /// Its key (hex), when it was keyed.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(length(max = crate::limits::MAX_KEY)))]
    pub key: Option<String>,
    /// How long it took (running, or restoring a hit).
    #[serde(default)]
    pub duration_ms: Option<u64>,
    /// For a hit: how long the original run took, the time the hit saved.
    #[serde(default)]
    pub saved_ms: Option<u64>,
    /// The command's exit code, when it ran to an exit.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// For a miss: why, as the agent explained it.
    #[serde(default)]
    pub miss: Option<MissReason>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_round_trip_and_match_serde() {
        for state in JobState::ALL {
            assert_eq!(JobState::parse(state.as_str()), Some(state));
            assert_eq!(
                serde_json::to_value(state).ok(),
                Some(serde_json::Value::String(state.as_str().to_owned()))
            );
        }
        assert_eq!(JobState::parse("done"), None);
    }

    #[test]
    fn only_queued_leased_and_running_are_not_terminal() {
        let open: Vec<JobState> = JobState::ALL
            .into_iter()
            .filter(|s| !s.is_terminal())
            .collect();
        assert_eq!(
            open,
            [JobState::Queued, JobState::Leased, JobState::Running]
        );
    }

    #[test]
    fn priorities_serve_manual_first_and_nightly_last() {
        let mut all = Priority::ALL;
        all.sort();
        assert_eq!(all, Priority::ALL);
        for p in Priority::ALL {
            assert_eq!(Priority::parse(p.as_str()), Some(p));
        }
    }

    #[test]
    fn a_pin_mismatch_carries_the_pin_and_both_values() {
        let reason = JobReason::PinMismatch {
            pin: "rustc".into(),
            expected: "rustc 1.95.0".into(),
            found: "rustc 1.96.0".into(),
        };
        let json = serde_json::to_value(&reason).ok();
        assert_eq!(
            json,
            Some(serde_json::json!({"kind": "pin-mismatch", "pin": "rustc",
                "expected": "rustc 1.95.0", "found": "rustc 1.96.0"}))
        );
        assert_eq!(reason.kind(), "pin-mismatch");
    }

    #[test]
    fn reasons_serialize_with_their_kind() {
        let reason = JobReason::BlockedByGroup {
            group: "mac".into(),
            holders: vec![Holder {
                repo: "app".into(),
                run: 12,
                lane: "ios-compile".into(),
            }],
        };
        let json = serde_json::to_value(&reason).ok();
        assert_eq!(
            json,
            Some(
                serde_json::json!({"kind": "blocked-by-group", "group": "mac",
                "holders": [{"repo": "app", "run": 12, "lane": "ios-compile"}]})
            )
        );
        let back: Option<JobReason> = json.and_then(|j| serde_json::from_value(j).ok());
        assert_eq!(back.as_ref().map(JobReason::kind), Some("blocked-by-group"));
        assert_eq!(back, Some(reason));
    }
}
