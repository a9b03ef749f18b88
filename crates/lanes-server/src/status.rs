//! A branch's and a run's status from the store's records, by lanes-core's rule
//! ([`lanes_core::status`]).

use lanes_store::{JobRecord, RunDetail, RunRecord, RunStatus};

pub use lanes_core::run::BranchStatus;
pub use lanes_core::status::{JobView, branch_status};

/// The part of `job` the status rules look at.
pub fn view(job: &JobRecord) -> JobView {
    JobView {
        id: u64::try_from(job.id.0).unwrap_or(0),
        class: job.class,
        state: job.state,
        reason: job.reason.clone(),
        rerun_of: job.rerun_of.and_then(|id| u64::try_from(id.0).ok()),
        leased: job.leased_at.is_some(),
    }
}

/// The status of `run` with `jobs`.
pub fn run_status(run: &RunRecord, jobs: &[JobRecord]) -> RunStatus {
    let views: Vec<JobView> = jobs.iter().map(view).collect();
    lanes_core::status::run_status(run.status, &views)
}

/// The status of the branch whose head's run is `detail`.
pub fn branch_status_of(detail: &RunDetail) -> BranchStatus {
    let views: Vec<JobView> = detail.jobs.iter().map(view).collect();
    branch_status(detail.run.status, &views)
}
