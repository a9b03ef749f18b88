//! Run and branch status: the one rule for what a run's jobs make of the run and of its branch.
//! Pure; the forge (`lanes-server`), the API and the web UI all ask it.

use crate::LaneClass;
use crate::job::{JobReason, JobState};
use crate::run::{BranchStatus, RunStatus};
use std::collections::BTreeMap;

/// The part of a job the status rules look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobView {
    /// The job's id (ids grow with time: a rerun has a larger id than the job it reruns).
    pub id: u64,
    /// Its lane's class.
    pub class: LaneClass,
    /// Its state.
    pub state: JobState,
    /// Its reason.
    pub reason: Option<JobReason>,
    /// The job it reruns.
    pub rerun_of: Option<u64>,
    /// Whether an agent ever leased it.
    pub leased: bool,
}

/// The one "red" rule: a job that failed, timed out, ran out of memory, was cancelled, ended in
/// error, or was skipped because a need did not pass. For a required lane's newest attempt, red
/// makes the branch `failed`.
pub fn is_red(job: &JobView) -> bool {
    match job.state {
        JobState::Failed
        | JobState::TimedOut
        | JobState::OomKilled
        | JobState::Cancelled
        | JobState::Error => true,
        JobState::Skipped => matches!(job.reason, Some(JobReason::NeedFailed { .. })),
        _ => false,
    }
}

/// The branch's status from its latest head's run status and jobs.
///
/// A rerun replaces the job it reruns (the newest attempt of a chain counts), so a passing rerun
/// turns its lane green without hiding another required lane that is red. Any red required lane
/// makes the branch `failed` even while others still run.
pub fn branch_status(run: RunStatus, jobs: &[JobView]) -> BranchStatus {
    if run == RunStatus::Error {
        return BranchStatus::Error;
    }
    let by_id: BTreeMap<u64, &JobView> = jobs.iter().map(|j| (j.id, j)).collect();
    let mut latest: BTreeMap<u64, &JobView> = BTreeMap::new();
    for job in jobs {
        let entry = latest.entry(root(&by_id, job, jobs.len())).or_insert(job);
        if job.id > entry.id {
            *entry = job;
        }
    }
    let required: Vec<&JobView> = latest
        .values()
        .copied()
        .filter(|j| j.class == LaneClass::Required)
        .collect();
    if required.iter().any(|j| is_red(j)) {
        return BranchStatus::Failed;
    }
    if required.iter().all(|j| j.state.is_terminal()) {
        return BranchStatus::Passed;
    }
    if required.iter().all(|j| j.state == JobState::Queued) {
        return BranchStatus::Pending;
    }
    BranchStatus::Running
}

/// A run's status from its jobs: `pending` until a job is leased, `running` while any job is
/// open, then `passed` or `failed` by the same rule as the branch status (a rerun replaces the
/// job it reruns), or `cancelled` when it did not pass and a user or a newer head cancelled some
/// of it. An `error` run stays `error`.
pub fn run_status(current: RunStatus, jobs: &[JobView]) -> RunStatus {
    if current == RunStatus::Error {
        return RunStatus::Error;
    }
    if jobs.iter().any(|j| !j.state.is_terminal()) {
        let started = jobs.iter().any(|j| j.state.is_held() || j.leased);
        return if started {
            RunStatus::Running
        } else {
            RunStatus::Pending
        };
    }
    match branch_status(current, jobs) {
        BranchStatus::Passed => RunStatus::Passed,
        _ if jobs.iter().any(|j| {
            matches!(
                j.reason,
                Some(JobReason::CancelledByUser | JobReason::Superseded { .. })
            )
        }) =>
        {
            RunStatus::Cancelled
        }
        _ => RunStatus::Failed,
    }
}

/// The first job of `job`'s rerun chain. Bounded by `limit` steps so a corrupt cycle cannot loop.
fn root<'a>(by_id: &BTreeMap<u64, &'a JobView>, mut job: &'a JobView, limit: usize) -> u64 {
    for _ in 0..limit {
        match job.rerun_of.and_then(|id| by_id.get(&id)) {
            Some(parent) => job = parent,
            None => break,
        }
    }
    job.id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: u64, class: LaneClass, state: JobState, rerun_of: Option<u64>) -> JobView {
        JobView {
            id,
            class,
            state,
            reason: None,
            rerun_of,
            leased: false,
        }
    }

    const R: LaneClass = LaneClass::Required;
    const A: LaneClass = LaneClass::Advisory;

    #[test]
    fn an_error_run_is_an_error_branch() {
        assert_eq!(branch_status(RunStatus::Error, &[]), BranchStatus::Error);
    }

    #[test]
    fn queued_required_jobs_are_pending_and_a_started_one_is_running() {
        let queued = [
            job(1, R, JobState::Queued, None),
            job(2, R, JobState::Queued, None),
        ];
        assert_eq!(
            branch_status(RunStatus::Pending, &queued),
            BranchStatus::Pending
        );
        let started = [
            job(1, R, JobState::Running, None),
            job(2, R, JobState::Queued, None),
        ];
        assert_eq!(
            branch_status(RunStatus::Running, &started),
            BranchStatus::Running
        );
        let half = [
            job(1, R, JobState::Passed, None),
            job(2, R, JobState::Queued, None),
        ];
        assert_eq!(
            branch_status(RunStatus::Running, &half),
            BranchStatus::Running
        );
    }

    #[test]
    fn skipped_required_lanes_pass_and_advisory_failures_do_not_count() {
        let jobs = [
            job(1, R, JobState::Passed, None),
            job(2, R, JobState::Skipped, None),
            job(3, A, JobState::Failed, None),
        ];
        assert_eq!(
            branch_status(RunStatus::Running, &jobs),
            BranchStatus::Passed
        );
    }

    #[test]
    fn a_required_lane_skipped_because_a_need_failed_is_red() {
        let mut skipped = job(2, R, JobState::Skipped, None);
        skipped.reason = Some(JobReason::NeedFailed {
            lane: "lint".into(),
        });
        let jobs = [job(1, A, JobState::Failed, None), skipped];
        assert_eq!(
            branch_status(RunStatus::Running, &jobs),
            BranchStatus::Failed
        );
    }

    #[test]
    fn a_passing_rerun_replaces_its_failed_job() {
        let jobs = [
            job(1, R, JobState::Failed, None),
            job(2, R, JobState::Passed, None),
            job(3, R, JobState::Passed, Some(1)),
        ];
        assert_eq!(
            branch_status(RunStatus::Running, &jobs),
            BranchStatus::Passed
        );
        let chain = [
            job(1, R, JobState::Failed, None),
            job(3, R, JobState::Failed, Some(1)),
            job(4, R, JobState::Running, Some(3)),
        ];
        assert_eq!(
            branch_status(RunStatus::Running, &chain),
            BranchStatus::Running
        );
    }

    #[test]
    fn a_passing_rerun_does_not_hide_another_red_lane() {
        let jobs = [
            job(1, R, JobState::Failed, None),
            job(2, R, JobState::TimedOut, None),
            job(3, R, JobState::Passed, Some(1)),
        ];
        assert_eq!(
            branch_status(RunStatus::Running, &jobs),
            BranchStatus::Failed
        );
        let running = [
            job(1, R, JobState::Failed, None),
            job(2, R, JobState::Running, None),
        ];
        assert_eq!(
            branch_status(RunStatus::Running, &running),
            BranchStatus::Failed
        );
    }
}
