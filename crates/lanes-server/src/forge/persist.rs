//! The scheduling lock and what every decision goes through: the lock taken with the scheduler
//! caught up, transitions written (each a compare-and-set, in one transaction) before anyone acts
//! on them, the scheduler rebuilt when a write fails, then what follows a write: run statuses,
//! live events, waking the agents that wait for work. Also a run's status from its jobs, and a
//! run's new jobs handed to the scheduler.
//!
//! Nothing here decides: the callers ask the scheduler, this file makes its answer durable.

use super::{Forge, JobEvent, RunKey, Sched, core_id, spec_of, store_id};
use crate::error::ForgeResult;
use crate::status::run_status;
use jiff::Timestamp;
use lanes_core::job::{JobReason, JobState};
use lanes_core::schedule::{self, Need, Transition};
use lanes_store::{JobId, JobRecord, JobUpdate, RunDetail, RunRecord, RunStatus, RunUpdate, Store};
use std::collections::BTreeSet;

impl<S: Store + 'static> Forge<S> {
    /// The scheduling lock, with the scheduler rebuilt first if it may be ahead of the database.
    pub(super) async fn locked(&self) -> tokio::sync::MutexGuard<'_, Sched> {
        let mut state = self.sched.lock().await;
        self.catch_up(&mut state).await;
        state
    }

    /// Rebuilds the scheduler if it may be ahead of the database.
    pub(super) async fn catch_up(&self, state: &mut Sched) {
        if state.dirty
            && let Err(e) = self.rebuild(state).await
        {
            tracing::warn!("rebuilding the scheduler from the database failed: {e}");
        }
    }

    /// Writes transitions, each a compare-and-set, in one transaction.
    pub(super) async fn write(&self, transitions: &[Transition]) -> ForgeResult<()> {
        if transitions.is_empty() {
            return Ok(());
        }
        let at = Timestamp::now();
        let updates = transitions
            .iter()
            .map(|t| JobUpdate::from_transition(t, at))
            .collect::<Result<Vec<_>, _>>()?;
        self.store.apply(&updates).await?;
        Ok(())
    }

    /// Persists transitions the scheduler made; if the write fails, the scheduler is rebuilt
    /// from the database so it never runs ahead of it.
    pub(super) async fn persist(
        &self,
        state: &mut Sched,
        transitions: Vec<Transition>,
    ) -> ForgeResult<()> {
        if let Err(e) = self.write(&transitions).await {
            if !self.full_disk(&e) {
                tracing::warn!("a scheduler write failed, rebuilding from the database: {e}");
            }
            self.rebuild(state).await?;
            return Err(e);
        }
        self.after(state, &transitions, &[]).await;
        Ok(())
    }

    /// What follows persisted transitions: run statuses, live events, waking agents. `known`
    /// names the runs of jobs the caller knew before they ended (the scheduler forgets a job
    /// when it ends); the runs of the others are read from the store.
    pub(super) async fn after(
        &self,
        state: &mut Sched,
        transitions: &[Transition],
        known: &[(JobId, RunKey)],
    ) {
        let mut jobs = BTreeSet::new();
        let mut wake = false;
        for t in transitions {
            if t.from != t.to {
                // Fails only when nobody listens to live events: nobody to tell.
                let _ = self.events.send(JobEvent::State {
                    job: store_id(t.job),
                });
                if t.to == JobState::Queued || t.to.is_terminal() {
                    wake = true;
                }
                if t.to.is_terminal() || t.to == JobState::Running {
                    jobs.insert(store_id(t.job));
                }
                if t.to.is_terminal() {
                    state.started_at.remove(&store_id(t.job));
                }
            }
            if t.to == JobState::Queued && matches!(t.reason, Some(JobReason::AgentLost { .. })) {
                self.metrics.lease_expired();
            }
        }
        let mut runs = BTreeSet::new();
        for job in jobs {
            let run = match known.iter().find(|(id, _)| *id == job) {
                Some((_, run)) => Some(run.clone()),
                None => match state.sched.holder(core_id(job)) {
                    Some(h) => Some((h.repo, h.run)),
                    None => self
                        .store
                        .job(job)
                        .await
                        .ok()
                        .map(|r| (r.repo, r.run_number)),
                },
            };
            runs.extend(run);
        }
        for (repo, number) in runs {
            // A run already running with jobs still open stays running: a job's end changes
            // its status only when it was the last open one (or the run was not known to be
            // running yet), so most ends need no read of the whole run.
            let key = (repo, number);
            if state.sched.open_in_run(&key.0, key.1) > 0 && state.running_runs.contains(&key) {
                continue;
            }
            let refreshed = self.refresh_run(&key.0, key.1).await;
            self.unwritten(refreshed, || {
                format!("the status of run #{} of {}", key.1, key.0)
            });
            if state.sched.open_in_run(&key.0, key.1) == 0 {
                state.running_runs.remove(&key);
            }
        }
        if wake {
            self.work.notify_waiters();
        }
    }

    /// Recomputes every queued job's reason and writes the ones that changed.
    pub(super) async fn refresh_reasons(&self, state: &mut Sched) -> ForgeResult<()> {
        let transitions = state.sched.update_reasons();
        self.persist(state, transitions).await
    }

    /// Sets a run's status from its jobs, if it changed.
    pub(crate) async fn refresh_run(&self, repo: &str, number: u64) -> ForgeResult<RunRecord> {
        let detail = self.store.run(repo, number).await?;
        let now = Timestamp::now();
        let status = run_status(&detail.run, &detail.jobs);
        if status == detail.run.status {
            return Ok(detail.run);
        }
        let update = RunUpdate {
            status: Some(status),
            started_at: (detail.run.started_at.is_none() && status != RunStatus::Pending)
                .then_some(now),
            finished_at: status.is_terminal().then_some(now),
            reopen: !status.is_terminal() && detail.run.finished_at.is_some(),
            ..RunUpdate::default()
        };
        Ok(self.store.update_run(detail.run.id, &update).await?)
    }

    /// Hands the queued jobs among `jobs` (of `run`) to the scheduler.
    pub(super) async fn queue_jobs(
        &self,
        state: &mut Sched,
        run: &RunDetail,
        jobs: &[JobRecord],
    ) -> ForgeResult<()> {
        // A job is added after the jobs of the batch it needs: the scheduler refuses a need it
        // does not know yet, and a catalog may name a need defined further down.
        let batch: BTreeSet<JobId> = jobs.iter().map(|j| j.id).collect();
        let mut pending: Vec<&JobRecord> = jobs
            .iter()
            .filter(|j| j.state == JobState::Queued)
            .collect();
        let mut added: BTreeSet<JobId> = BTreeSet::new();
        let mut transitions = Vec::new();
        while !pending.is_empty() {
            let (mut ready, rest): (Vec<&JobRecord>, Vec<&JobRecord>) =
                pending.iter().partition(|j| {
                    j.needs
                        .iter()
                        .all(|n| !batch.contains(n) || added.contains(n) || !is_queued(jobs, *n))
                });
            let rest = if ready.is_empty() {
                // A cycle cannot pass validation; take them all rather than loop.
                ready = rest;
                Vec::new()
            } else {
                rest
            };
            for job in ready {
                let mut needs = Vec::new();
                for need in &job.needs {
                    let found = match run.jobs.iter().chain(jobs).find(|j| j.id == *need) {
                        Some(j) => j.clone(),
                        None => self.store.job(*need).await?,
                    };
                    let need_state = state.sched.state(core_id(found.id)).unwrap_or(found.state);
                    needs.push(Need {
                        job: core_id(found.id),
                        lane: found.lane.clone(),
                        state: need_state,
                    });
                }
                match state.sched.add_job(spec_of(job, needs)) {
                    Ok(t) => transitions.extend(t),
                    // A rebuild from the database since the run was written (after a write that
                    // failed: a lock timeout, a full disk) scheduled it already. Nothing is
                    // wrong.
                    Err(schedule::InvalidJob::Duplicate { .. }) => {}
                    Err(e) => {
                        // The database has the job: a rebuild from it will schedule it.
                        tracing::warn!(
                            "job {} could not be scheduled now ({e}); the scheduler is rebuilt \
                             from the database",
                            job.id
                        );
                        state.dirty = true;
                    }
                }
                added.insert(job.id);
            }
            pending = rest;
        }
        self.persist(state, transitions).await?;
        self.refresh_reasons(state).await?;
        self.work.notify_waiters();
        // A run whose every lane was skipped is finished now; others may have moved too.
        self.refresh_run(&run.run.repo, run.run.number).await?;
        Ok(())
    }
}

fn is_queued(jobs: &[JobRecord], id: JobId) -> bool {
    jobs.iter()
        .any(|j| j.id == id && j.state == JobState::Queued)
}
