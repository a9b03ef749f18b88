//! A branch's CI status, derived from the required jobs of its latest head's run. Pure.

use lanes_core::LaneClass;
use lanes_core::job::{JobReason, JobState};
use lanes_store::{JobId, JobRecord, RunRecord, RunStatus};
use std::collections::BTreeMap;

pub use lanes_core::run::BranchStatus;

/// The part of a job the derivation looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobView {
    /// The job.
    pub id: JobId,
    /// Its lane's class.
    pub class: LaneClass,
    /// Its state.
    pub state: JobState,
    /// Its reason.
    pub reason: Option<JobReason>,
    /// The job it reruns.
    pub rerun_of: Option<JobId>,
}

impl From<&JobRecord> for JobView {
    fn from(job: &JobRecord) -> JobView {
        JobView {
            id: job.id,
            class: job.class,
            state: job.state,
            reason: job.reason.clone(),
            rerun_of: job.rerun_of,
        }
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
    let by_id: BTreeMap<JobId, &JobView> = jobs.iter().map(|j| (j.id, j)).collect();
    let mut latest: BTreeMap<JobId, &JobView> = BTreeMap::new();
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
    let red = |j: &JobView| match j.state {
        JobState::Failed
        | JobState::TimedOut
        | JobState::OomKilled
        | JobState::Cancelled
        | JobState::Error => true,
        JobState::Skipped => matches!(j.reason, Some(JobReason::NeedFailed { .. })),
        _ => false,
    };
    if required.iter().any(|j| red(j)) {
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
pub fn run_status(run: &RunRecord, jobs: &[JobRecord]) -> RunStatus {
    if run.status == RunStatus::Error {
        return RunStatus::Error;
    }
    if jobs.iter().any(|j| !j.state.is_terminal()) {
        let started = jobs
            .iter()
            .any(|j| j.state.is_held() || j.leased_at.is_some());
        return if started {
            RunStatus::Running
        } else {
            RunStatus::Pending
        };
    }
    let views: Vec<JobView> = jobs.iter().map(JobView::from).collect();
    match branch_status(run.status, &views) {
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
fn root<'a>(by_id: &BTreeMap<JobId, &'a JobView>, mut job: &'a JobView, limit: usize) -> JobId {
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

    fn job(id: i64, class: LaneClass, state: JobState, rerun_of: Option<i64>) -> JobView {
        JobView {
            id: JobId(id),
            class,
            state,
            reason: None,
            rerun_of: rerun_of.map(JobId),
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
