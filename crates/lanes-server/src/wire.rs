//! The forge's records as the API's objects ([`lanes_api::forge`]): the one place a store record
//! becomes a wire type. Handlers answer with what these return; nothing is built by hand.

use crate::agents::AgentView;
use jiff::Timestamp;
use lanes_api::Lenient;
use lanes_api::forge::{self as api, RunDiagnostic, RunDiagnostics};
use lanes_core::job::{CacheUse, JobState};
use lanes_store::{JobId, JobRecord, RepoRecord, RunDetail, RunRecord};
use std::collections::HashMap;

/// A repository.
pub fn repo(repo: &RepoRecord) -> api::Repo {
    api::Repo {
        name: repo.name.clone(),
        path: repo.path.to_string_lossy().into_owned(),
        default_branch: repo.default_branch.clone(),
        remote_url: repo.remote_url.clone(),
    }
}

/// A job; `lanes` names its needs by lane (a need it does not know is named by its id).
pub fn job(job: &JobRecord, lanes: &HashMap<JobId, String>) -> api::Job {
    let duration_ms = match job.started_at {
        Some(start) => {
            let end = job.finished_at.unwrap_or_else(Timestamp::now);
            u64::try_from(end.as_millisecond() - start.as_millisecond()).unwrap_or(0)
        }
        None => 0,
    };
    let cached = job
        .steps
        .iter()
        .filter(|s| s.cache == CacheUse::Hit)
        .count();
    let ran = job
        .steps
        .iter()
        .filter(|s| {
            s.cache != CacheUse::Hit
                && !matches!(s.status, JobState::Skipped)
                && (s.duration_ms.is_some() || s.exit_code.is_some())
        })
        .count();
    let selection = match &job.selection {
        serde_json::Value::Array(reasons) => reasons
            .iter()
            .map(|r| serde_json::from_value(r.clone()).unwrap_or(Lenient::Unknown(r.clone())))
            .collect(),
        _ => Vec::new(),
    };
    api::Job {
        id: id(job.id),
        lane: job.lane.clone(),
        class: job.class.into(),
        priority: job.priority.into(),
        status: job.state.into(),
        reason: job.reason.clone().map(Lenient::Known),
        selection,
        needs: job
            .needs
            .iter()
            .map(|n| lanes.get(n).cloned().unwrap_or_else(|| n.to_string()))
            .collect(),
        group: job.group.clone(),
        labels: job.labels.clone(),
        rerun_of: job.rerun_of.map(id),
        attempts: job.attempts,
        retries: job.retries,
        agent: job.agent.clone(),
        queued_at: job.queued_at,
        leased_at: job.leased_at,
        started_at: job.started_at,
        finished_at: job.finished_at,
        duration_ms,
        timings: api::Timings {
            queue_wait_ms: job.timings.queue_wait_ms,
            lock_wait_ms: job.timings.lock_wait_ms,
            materialize_ms: job.timings.materialize_ms,
        },
        steps_cached: cached as u64,
        steps_run: ran as u64,
        saved_ms: job.steps.iter().filter_map(|s| s.saved_ms).sum(),
        log_bytes: job.log_len,
        steps: job.steps.iter().cloned().map(Lenient::Known).collect(),
    }
}

/// A job id on the wire (ids are positive).
pub fn id(job: JobId) -> u64 {
    u64::try_from(job.0).unwrap_or(0)
}

/// A run, with its jobs when `jobs` is given.
pub fn run(run: &RunRecord, jobs: Option<&[JobRecord]>) -> api::Run {
    api::Run {
        repo: run.repo.clone(),
        number: run.number,
        branch: run.branch.clone(),
        head: run.head.clone(),
        base: run.base.clone(),
        trigger: run.trigger.into(),
        status: run.status.into(),
        superseded_by: run.superseded_by,
        created_at: run.created_at,
        started_at: run.started_at,
        finished_at: run.finished_at,
        diagnostics: run.diagnostics.as_deref().map(diagnostics),
        jobs: jobs.map(|jobs| {
            let lanes = lanes_of(jobs);
            jobs.iter().map(|j| job(j, &lanes)).collect()
        }),
    }
}

/// A run with its jobs.
pub fn detail(detail: &RunDetail) -> api::Run {
    run(&detail.run, Some(&detail.jobs))
}

/// The lanes of `jobs`, by job id.
pub fn lanes_of(jobs: &[JobRecord]) -> HashMap<JobId, String> {
    jobs.iter().map(|j| (j.id, j.lane.clone())).collect()
}

/// A run's stored diagnostics. Written by [`crate::trigger`] in this format; text that does not
/// read as it (a store written by hand) is shown as one diagnostic rather than lost.
fn diagnostics(stored: &str) -> RunDiagnostics {
    serde_json::from_str(stored).unwrap_or_else(|_| RunDiagnostics {
        version: RunDiagnostics::VERSION,
        diagnostics: vec![RunDiagnostic {
            code: "catalog::invalid".into(),
            file: crate::trigger::CATALOG_PATH.into(),
            line: None,
            column: None,
            message: stored.to_owned(),
            help: None,
        }],
    })
}

/// An agent.
pub fn agent(agent: AgentView) -> api::Agent {
    api::Agent {
        name: agent.name,
        labels: agent.labels,
        capacity: agent.capacity,
        state: agent.state.into(),
        last_heartbeat: agent.last_heartbeat,
        running: agent.running.iter().map(|j| id(j.id)).collect(),
        host: agent.host.map(|(status, reported_at)| api::AgentHost {
            status,
            reported_at,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lanes_core::LaneClass;
    use lanes_core::explain::{MissKind, MissReason};
    use lanes_core::job::{Holder, JobReason, Priority, StepRecord};
    use lanes_store::{RunId, Timings};

    fn at(text: &str) -> Timestamp {
        text.parse().expect("a timestamp")
    }

    fn record() -> JobRecord {
        JobRecord {
            id: JobId(12),
            run: RunId(3),
            repo: "app".into(),
            run_number: 3,
            lane: "test".into(),
            class: LaneClass::Required,
            priority: Priority::Required,
            state: JobState::Passed,
            reason: None,
            selection: serde_json::json!([{"kind": "path", "path": "src/lib.rs", "pattern": "src/**"}]),
            needs: vec![JobId(11)],
            group: Some("mac".into()),
            labels: vec!["linux".into()],
            retries: 2,
            attempts: 0,
            agent: Some("local".into()),
            token: Some(7),
            expires_at: None,
            rerun_of: None,
            queued_at: Some(at("2026-12-01T10:00:00Z")),
            leased_at: Some(at("2026-12-01T10:00:00.120Z")),
            started_at: Some(at("2026-12-01T10:00:00.200Z")),
            finished_at: Some(at("2026-12-01T10:00:06.000Z")),
            timings: Timings {
                queue_wait_ms: Some(120),
                lock_wait_ms: Some(0),
                materialize_ms: Some(35),
            },
            log_len: 2048,
            steps: vec![
                StepRecord {
                    index: 0,
                    name: "build".into(),
                    status: JobState::Passed,
                    cache: CacheUse::Hit,
                    key: Some("1a2b".into()),
                    duration_ms: Some(12),
                    saved_ms: Some(5400),
                    exit_code: Some(0),
                    miss: None,
                },
                StepRecord {
                    index: 1,
                    name: "test".into(),
                    status: JobState::Passed,
                    cache: CacheUse::Miss,
                    key: Some("3c4d".into()),
                    duration_ms: Some(5700),
                    saved_ms: None,
                    exit_code: Some(0),
                    miss: Some(MissReason {
                        kind: MissKind::Inputs,
                        detail: "input src/lib.rs: blob 1a2b -> blob 5e6f".into(),
                    }),
                },
            ],
        }
    }

    #[test]
    fn a_finished_job_as_the_api_shows_it() {
        let lanes = HashMap::from([(JobId(11), "fmt".to_owned())]);
        insta::assert_json_snapshot!(job(&record(), &lanes));
    }

    #[test]
    fn a_waiting_job_names_what_holds_its_group() {
        let mut waiting = record();
        waiting.state = JobState::Queued;
        waiting.started_at = None;
        waiting.finished_at = None;
        waiting.leased_at = None;
        waiting.agent = None;
        waiting.steps.clear();
        waiting.reason = Some(JobReason::BlockedByGroup {
            group: "mac".into(),
            holders: vec![Holder {
                repo: "app".into(),
                run: 2,
                lane: "ios".into(),
            }],
        });
        // A need this job's run does not hold is named by its id.
        insta::assert_json_snapshot!(job(&waiting, &HashMap::new()));
    }

    #[test]
    fn a_stored_selection_reason_this_lanes_does_not_know_is_kept() {
        let mut old = record();
        old.selection = serde_json::json!([{"kind": "path-matched", "path": "a", "glob": "*"}]);
        let shown = job(&old, &HashMap::new());
        assert_eq!(shown.selection[0].name(), "path-matched");
        assert_eq!(
            serde_json::to_value(&shown.selection).ok(),
            Some(old.selection)
        );
    }
}
