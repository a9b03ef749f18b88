//! What users do to jobs and runs, through the API, the CLI and the UI: cancel a job or every
//! open job of a run, requeue a held job, rerun a job or a run's failed jobs (new jobs in the
//! same run, served first).

use super::{Forge, core_id};
use crate::error::{ForgeError, ForgeResult};
use jiff::Timestamp;
use lanes_core::job::{JobReason, JobState, Priority};
use lanes_core::schedule;
use lanes_store::{JobId, JobRecord, NewJob, RunRecord, RunStatus, RunUpdate, Store};
use std::collections::{BTreeSet, HashMap};

impl<S: Store + 'static> Forge<S> {
    /// Cancels one job (queued or held) by a user.
    pub async fn cancel_job(&self, job: JobId) -> ForgeResult<JobRecord> {
        let record = self.store.job(job).await?;
        if record.state.is_terminal() {
            return Err(ForgeError::Conflict(format!(
                "job {job} ({}) already ended: {}",
                record.lane, record.state
            )));
        }
        let mut state = self.locked().await;
        let transitions = state
            .sched
            .cancel(&[core_id(job)], JobReason::CancelledByUser);
        self.persist(&mut state, transitions).await?;
        self.refresh_reasons(&mut state).await?;
        drop(state);
        Ok(self.store.job(job).await?)
    }

    /// Cancels every open job of a run.
    pub async fn cancel_run(&self, repo: &str, number: u64) -> ForgeResult<RunRecord> {
        let detail = self.store.run(repo, number).await?;
        let open: Vec<schedule::JobId> = detail
            .jobs
            .iter()
            .filter(|j| !j.state.is_terminal())
            .map(|j| core_id(j.id))
            .collect();
        if open.is_empty() {
            return Err(ForgeError::Conflict(format!(
                "run #{number} of {repo} has no job left to cancel"
            )));
        }
        let mut state = self.locked().await;
        let transitions = state.sched.cancel(&open, JobReason::CancelledByUser);
        self.persist(&mut state, transitions).await?;
        self.refresh_reasons(&mut state).await?;
        self.refresh_run(repo, number).await
    }

    /// A held job goes back to the queue.
    pub async fn requeue(&self, job: JobId) -> ForgeResult<JobRecord> {
        let mut state = self.locked().await;
        let Some(transition) = state.sched.requeue(core_id(job)) else {
            drop(state);
            let record = self.store.job(job).await?;
            return Err(ForgeError::Conflict(format!(
                "job {job} ({}) is {}: only a leased or running job can be requeued",
                record.lane, record.state
            )));
        };
        self.persist(&mut state, vec![transition]).await?;
        self.refresh_reasons(&mut state).await?;
        drop(state);
        Ok(self.store.job(job).await?)
    }

    /// A new job for the same lane of the same run, served first, recording what it reruns.
    pub async fn rerun_job(&self, job: JobId) -> ForgeResult<JobRecord> {
        let record = self.store.job(job).await?;
        let mut created = self.rerun(&record.repo, record.run_number, &[job]).await?;
        created
            .pop()
            .ok_or_else(|| ForgeError::Conflict(format!("job {job} was not rerun")))
    }

    /// Reruns every job of a run whose latest attempt did not pass (skipped lanes that were not
    /// selected stay as they are).
    pub async fn rerun_failed(&self, repo: &str, number: u64) -> ForgeResult<Vec<JobRecord>> {
        let detail = self.store.run(repo, number).await?;
        let rerun_of: BTreeSet<JobId> = detail.jobs.iter().filter_map(|j| j.rerun_of).collect();
        let failed: Vec<JobId> = detail
            .jobs
            .iter()
            .filter(|j| !rerun_of.contains(&j.id))
            .filter(|j| match j.state {
                JobState::Failed
                | JobState::TimedOut
                | JobState::OomKilled
                | JobState::Cancelled
                | JobState::Error => true,
                JobState::Skipped => matches!(j.reason, Some(JobReason::NeedFailed { .. })),
                _ => false,
            })
            .map(|j| j.id)
            .collect();
        if failed.is_empty() {
            return Err(ForgeError::Conflict(format!(
                "run #{number} of {repo} has no failed job to rerun"
            )));
        }
        self.rerun(repo, number, &failed).await
    }

    async fn rerun(&self, repo: &str, number: u64, jobs: &[JobId]) -> ForgeResult<Vec<JobRecord>> {
        let detail = self.store.run(repo, number).await?;
        if detail.run.status == RunStatus::Error {
            return Err(ForgeError::Conflict(format!(
                "run #{number} of {repo} has no jobs: its catalog failed"
            )));
        }
        let lane_of: HashMap<JobId, &str> = detail
            .jobs
            .iter()
            .map(|j| (j.id, j.lane.as_str()))
            .collect();
        let mut new = Vec::new();
        for id in jobs {
            let Some(old) = detail.jobs.iter().find(|j| j.id == *id) else {
                return Err(ForgeError::NotFound(format!("job {id} in run #{number}")));
            };
            if !old.state.is_terminal() {
                return Err(ForgeError::Conflict(format!(
                    "job {id} ({}) is still {}: cancel it first or wait for it",
                    old.lane, old.state
                )));
            }
            new.push(NewJob {
                lane: old.lane.clone(),
                class: old.class,
                priority: Priority::Manual,
                state: JobState::Queued,
                reason: None,
                selection: serde_json::from_value(old.selection.clone()).unwrap_or_default(),
                needs: old
                    .needs
                    .iter()
                    .filter_map(|n| lane_of.get(n).map(|l| (*l).to_owned()))
                    .collect(),
                group: old.group.clone(),
                labels: old.labels.clone(),
                retries: old.retries,
                rerun_of: Some(old.id),
            });
        }
        let created = self
            .store
            .add_jobs(detail.run.id, &new, Timestamp::now())
            .await?;
        if detail.run.status.is_terminal() {
            self.store
                .update_run(
                    detail.run.id,
                    &RunUpdate {
                        status: Some(RunStatus::Pending),
                        reopen: true,
                        ..RunUpdate::default()
                    },
                )
                .await?;
        }
        let detail = self.store.run(repo, number).await?;
        let mut state = self.locked().await;
        // Reopened: its next start must mark it running again.
        state
            .running_runs
            .remove(&(detail.run.repo.clone(), detail.run.number));
        self.queue_jobs(&mut state, &detail, &created).await?;
        drop(state);
        let ids: BTreeSet<JobId> = created.iter().map(|j| j.id).collect();
        let mut out = Vec::new();
        for id in ids {
            out.push(self.store.job(id).await?);
        }
        Ok(out)
    }
}
