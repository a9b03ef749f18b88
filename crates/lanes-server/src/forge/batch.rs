//! Group commit for the calls agents make most: a lease, a start, a heartbeat, a finish.
//!
//! Each call is queued as an [`Ask`], then its caller takes the scheduling lock. Whoever holds
//! the lock decides every ask waiting at that moment, in order, and writes all their changes in
//! one transaction ([`Store::write_jobs`]): one sync to disk for the whole batch instead of one
//! per call, which is what bounds a fleet's throughput on SQLite. Nothing is answered before the
//! batch is durable, and the lock is held until every answer is sent, so a caller that gets the
//! lock finds its own ask either answered or still queued (and answers it itself).
//!
//! A batch is all or nothing: if its write fails, the scheduler is rebuilt from the database
//! (which holds none of the batch) and every ask with a write gets the error. Later decisions
//! are never made on top of a batch that is not durable.

use super::{Forge, JobEvent, RunKey, millis, store_id, timestamp};
use crate::error::{ForgeError, ForgeResult};
use jiff::Timestamp;
use lanes_agent::{CacheUse, FinishReport};
use lanes_core::job::{Holder, JobState};
use lanes_core::schedule::{self, AgentId, Lease, Token, Transition};
use lanes_store::{JobFinish, JobId, JobUpdate, JobWrite, Store};
use tokio::sync::oneshot;

/// A call waiting to be decided.
#[derive(Debug)]
pub(super) enum Ask {
    /// The next job for an agent (without waiting).
    Lease { agent: AgentId },
    /// The holder started the job.
    Started { job: u64, token: u64 },
    /// The holder is alive.
    Heartbeat { job: u64, token: u64 },
    /// The job ended on its agent.
    Finish {
        job: u64,
        token: u64,
        report: FinishReport,
    },
}

/// A leased job, with what the scheduler knew of it when it leased it.
pub(super) type Leased = (Lease, Option<Holder>, u32);

/// What an ask is answered with.
#[derive(Debug)]
pub(super) enum Answer {
    /// A lease call's job, if there was one.
    Lease(Option<Box<Leased>>),
    /// A report was recorded.
    Done,
}

impl Answer {
    /// The job a lease call got.
    pub(super) fn leased(self) -> Option<Box<Leased>> {
        match self {
            Answer::Lease(leased) => leased,
            Answer::Done => None,
        }
    }
}

/// An ask and where its answer goes.
#[derive(Debug)]
pub(super) struct Asked {
    ask: Ask,
    reply: oneshot::Sender<ForgeResult<Answer>>,
}

/// An ask decided in memory, waiting for its batch to be written.
enum Decided {
    /// Answered without a write (nothing to lease, a rejected report, a repeated start).
    Now(ForgeResult<Answer>),
    Lease(Box<Leased>),
    Started {
        job: JobId,
        run: Option<RunKey>,
    },
    Heartbeat,
    Finish {
        job: JobId,
        report: FinishReport,
        started: Option<u64>,
    },
}

fn unwrap_answer(
    answer: Result<ForgeResult<Answer>, oneshot::error::RecvError>,
) -> ForgeResult<Answer> {
    answer.unwrap_or_else(|_| {
        Err(ForgeError::Internal(
            "the scheduler dropped a call without answering it".to_owned(),
        ))
    })
}

impl<S: Store + 'static> Forge<S> {
    /// Queues `ask` and answers it, or has it answered by whoever holds the lock first.
    pub(super) async fn ask(&self, ask: Ask) -> ForgeResult<Answer> {
        let (reply, answer) = oneshot::channel();
        self.asks
            .lock()
            .expect("the ask queue is never poisoned")
            .push(Asked { ask, reply });
        let mut answer = answer;
        // Answered by another holder while waiting for the lock: done, without queueing behind
        // every other caller for a lock there is nothing left to do under.
        let mut state = tokio::select! {
            biased;
            answered = &mut answer => return unwrap_answer(answered),
            state = self.sched.lock() => state,
        };
        self.catch_up(&mut state).await;
        self.answer_asks(&mut state).await;
        drop(state);
        unwrap_answer(answer.await)
    }

    /// Decides every queued ask, writes the batch, then answers them.
    async fn answer_asks(&self, state: &mut super::Sched) {
        let asks = std::mem::take(&mut *self.asks.lock().expect("the ask queue is never poisoned"));
        if asks.is_empty() {
            return;
        }
        let now = Timestamp::now();
        let now_ms = millis(now);
        let mut writes: Vec<JobWrite> = Vec::with_capacity(asks.len());
        let mut transitions: Vec<Transition> = Vec::new();
        let mut known: Vec<(JobId, RunKey)> = Vec::new();
        let mut invalid: Option<ForgeError> = None;
        let mut decided = Vec::with_capacity(asks.len());
        for Asked { ask, reply } in asks {
            let decision = match ask {
                Ask::Lease { agent } => match state.sched.lease(&agent, now_ms) {
                    Some(lease) => {
                        let transition = lease.transition();
                        match JobUpdate::from_transition(&transition, now) {
                            Ok(update) => writes.push(JobWrite::Apply(update)),
                            Err(e) => invalid = Some(e.into()),
                        }
                        transitions.push(transition);
                        let holder = state.sched.holder(lease.job);
                        let attempts = state.sched.attempts(lease.job).unwrap_or(0);
                        Decided::Lease(Box::new((lease, holder, attempts)))
                    }
                    None => Decided::Now(Ok(Answer::Lease(None))),
                },
                Ask::Started { job, token } => {
                    match state
                        .sched
                        .started(schedule::JobId(job), Token(token), now_ms)
                    {
                        Err(e) => Decided::Now(Err(e.into())),
                        // Started before: nothing changes.
                        Ok(None) => Decided::Now(Ok(Answer::Done)),
                        Ok(Some(_)) => {
                            let id = store_id(schedule::JobId(job));
                            let run = state
                                .sched
                                .holder(schedule::JobId(job))
                                .map(|h| (h.repo, h.run));
                            // A run known to be running needs no second mark.
                            let mark_run = run
                                .as_ref()
                                .is_none_or(|key| !state.running_runs.contains(key));
                            writes.push(JobWrite::Start {
                                job: id,
                                token,
                                at: now,
                                mark_run,
                            });
                            Decided::Started { job: id, run }
                        }
                    }
                }
                Ask::Heartbeat { job, token } => {
                    match state
                        .sched
                        .heartbeat(schedule::JobId(job), Token(token), now_ms)
                    {
                        Err(e) => Decided::Now(Err(e.into())),
                        Ok(expires) => {
                            writes.push(JobWrite::Heartbeat {
                                job: store_id(schedule::JobId(job)),
                                token,
                                expires_at: timestamp(expires),
                            });
                            Decided::Heartbeat
                        }
                    }
                }
                Ask::Finish { job, token, report } => {
                    let core = schedule::JobId(job);
                    // Known before the scheduler forgets the job.
                    let run = state.sched.holder(core).map(|h| (h.repo, h.run));
                    match state
                        .sched
                        .finished(core, Token(token), report.state, now_ms)
                    {
                        Err(e) => Decided::Now(Err(e.into())),
                        Ok(ended) => {
                            let id = store_id(core);
                            writes.push(JobWrite::Finish {
                                job: id,
                                token,
                                finish: JobFinish {
                                    state: report.state,
                                    // Only an agent that could not run the lane says why.
                                    reason: report
                                        .reason
                                        .clone()
                                        .filter(|_| report.state == JobState::Error),
                                    at: now,
                                    steps: report.steps.clone(),
                                    lock_wait_ms: Some(report.lock_wait_ms),
                                    materialize_ms: Some(report.materialize_ms),
                                },
                            });
                            // The first is the job's own end; the rest are the jobs it skips.
                            for skipped in ended.iter().skip(1) {
                                match JobUpdate::from_transition(skipped, now) {
                                    Ok(update) => writes.push(JobWrite::Apply(update)),
                                    Err(e) => invalid = Some(e.into()),
                                }
                            }
                            transitions.extend(ended);
                            known.extend(run.map(|run| (id, run)));
                            Decided::Finish {
                                job: id,
                                started: state.started_at.get(&id).copied(),
                                report,
                            }
                        }
                    }
                }
            };
            decided.push((decision, reply));
        }

        let written = match invalid {
            Some(e) => Err(e),
            None => self
                .store
                .write_jobs(&writes)
                .await
                .map_err(ForgeError::from),
        };
        if let Err(e) = written {
            if !self.full_disk(&e) {
                tracing::warn!(
                    "writing a batch of {} job changes failed, rebuilding the scheduler from \
                     the database: {e}",
                    writes.len()
                );
            }
            if let Err(rebuild) = self.rebuild(state).await {
                tracing::warn!(
                    "rebuilding the scheduler failed (retried on the next call): {rebuild}"
                );
            }
            // A batch of one keeps its own error (a stale token stays a stale token); in a
            // bigger one the others were refused for its sake and may simply try again.
            let writers = decided
                .iter()
                .filter(|(d, _)| !matches!(d, Decided::Now(_)))
                .count();
            let mut own = (writers == 1).then_some(e);
            for (decision, reply) in decided {
                let answer = match decision {
                    Decided::Now(answer) => answer,
                    _ => Err(own.take().unwrap_or_else(|| {
                        ForgeError::Internal(
                            "writing the batch this call was decided in failed; try again"
                                .to_owned(),
                        )
                    })),
                };
                // Fails only when the caller went away: nobody to answer.
                let _ = reply.send(answer);
            }
            return;
        }

        let calls = decided
            .iter()
            .filter(|(d, _)| !matches!(d, Decided::Now(_)))
            .count();
        if calls > 0 {
            self.metrics.batch_written(calls as u64);
        }
        self.after(state, &transitions, &known).await;
        let mut unclaimed = Vec::new();
        for (decision, reply) in decided {
            let answer = match decision {
                Decided::Now(answer) => answer,
                Decided::Lease(leased) => {
                    let job = leased.0.job;
                    if reply.send(Ok(Answer::Lease(Some(leased)))).is_err() {
                        unclaimed.push(job);
                    }
                    continue;
                }
                Decided::Started { job, run } => {
                    self.after_start(state, job, run, now_ms).await;
                    Ok(Answer::Done)
                }
                Decided::Heartbeat => Ok(Answer::Done),
                Decided::Finish {
                    job,
                    report,
                    started,
                } => {
                    self.after_finish(job, &report, started, now_ms).await;
                    Ok(Answer::Done)
                }
            };
            // Fails only when the caller went away: its lease is requeued below.
            let _ = reply.send(answer);
        }
        // A lease nobody is left to receive (its caller went away) goes back to the queue now
        // rather than when it expires.
        for job in unclaimed {
            if let Some(t) = state.sched.requeue(job) {
                tracing::warn!("job {job} was leased to a caller that went away: requeued");
                let written = self.persist(state, vec![t]).await;
                self.unwritten(written, || {
                    format!("the requeue of job {job} (it waits for its lease to expire instead)")
                });
            }
        }
    }

    /// A job started: live views hear of it, and its run is known to be running (the start's
    /// write made it so: [`Store::start_job`]).
    async fn after_start(
        &self,
        state: &mut super::Sched,
        job: JobId,
        run: Option<RunKey>,
        now_ms: u64,
    ) {
        // Fails only when nobody listens to live events: nobody to tell.
        let _ = self.events.send(JobEvent::State { job });
        state.started_at.insert(job, now_ms);
        let key = match run {
            Some(key) => key,
            None => match self.store.job(job).await {
                Ok(record) => (record.repo, record.run_number),
                Err(e) => {
                    tracing::warn!("job {job} started; reading its run failed: {e}");
                    return;
                }
            },
        };
        if state.running_runs.len() > 10_000 {
            state.running_runs.clear();
        }
        state.running_runs.insert(key);
    }

    /// A job ended: its cache results and duration go to the metrics.
    async fn after_finish(
        &self,
        job: JobId,
        report: &FinishReport,
        started: Option<u64>,
        now_ms: u64,
    ) {
        for step in &report.steps {
            match step.cache {
                CacheUse::Hit => self.metrics.cache_hit(),
                CacheUse::Miss if step.status != JobState::Skipped => self.metrics.cache_miss(),
                _ => {}
            }
        }
        // Started before a restart: the store knows when.
        let started = match started {
            Some(ms) => Some(ms),
            None => self
                .store
                .job(job)
                .await
                .ok()
                .and_then(|r| r.started_at)
                .map(millis),
        };
        if let Some(started) = started {
            self.metrics
                .job_finished(report.state, now_ms.saturating_sub(started));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forge::ForgeConfig;
    use lanes_core::job::Priority;
    use lanes_core::{LaneClass, Reason};
    use lanes_store::{NewJob, NewRepo, NewRun, RunStatus, RunTrigger, SqliteStore};
    use std::collections::BTreeSet;
    use std::sync::Arc;
    use std::time::Duration;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// A forge over a new database holding one run of `lanes` queued jobs, and agent `a` of
    /// capacity `lanes` online.
    async fn forge(
        dir: &std::path::Path,
        lanes: usize,
    ) -> Result<Arc<Forge<SqliteStore>>, Box<dyn std::error::Error>> {
        let store = SqliteStore::open(&dir.join("lanes.db")).await?;
        store
            .add_repo(
                &NewRepo {
                    name: "app".into(),
                    path: dir.join("app.git"),
                    remote_url: None,
                    default_branch: "main".into(),
                },
                Timestamp::now(),
            )
            .await?;
        let jobs = (0..lanes)
            .map(|i| NewJob {
                lane: format!("lane{i}"),
                class: LaneClass::Required,
                priority: Priority::Required,
                state: JobState::Queued,
                reason: None,
                selection: vec![Reason::Always],
                needs: Vec::new(),
                group: None,
                labels: Vec::new(),
                retries: 2,
                rerun_of: None,
            })
            .collect();
        store
            .create_run(&NewRun {
                repo: "app".into(),
                branch: "main".into(),
                head: "0".repeat(40),
                base: None,
                trigger: RunTrigger::Push,
                status: RunStatus::Pending,
                diagnostics: None,
                created_at: Timestamp::now(),
                jobs,
                nightly_slots: Vec::new(),
            })
            .await?;
        let forge = Forge::open(
            store,
            ForgeConfig {
                data_dir: dir.to_owned(),
                schedule: schedule::Config::default(),
                public_read: false,
                secrets: Default::default(),
            },
        )
        .await?;
        forge
            .agent_online("a", BTreeSet::new(), u32::try_from(lanes)?)
            .await;
        Ok(forge)
    }

    /// Queues `ask` without taking the lock, as a caller still waiting for it would have.
    fn queue(forge: &Forge<SqliteStore>, ask: Ask) -> oneshot::Receiver<ForgeResult<Answer>> {
        let (reply, answer) = oneshot::channel();
        forge
            .asks
            .lock()
            .expect("not poisoned")
            .push(Asked { ask, reply });
        answer
    }

    fn lease_ask() -> Ask {
        Ask::Lease {
            agent: AgentId("a".into()),
        }
    }

    fn passed() -> FinishReport {
        FinishReport {
            state: JobState::Passed,
            message: None,
            reason: None,
            steps: Vec::new(),
            lock_wait_ms: 0,
            materialize_ms: 0,
        }
    }

    #[tokio::test]
    async fn calls_waiting_together_are_decided_in_order_and_written_in_one_transaction()
    -> TestResult {
        let dir = tempfile::tempdir()?;
        let forge = forge(dir.path(), 3).await?;
        let waiting = [queue(&forge, lease_ask()), queue(&forge, lease_ask())];
        // The next caller to take the lock decides the two waiting leases with its own.
        let own = forge
            .ask(lease_ask())
            .await?
            .leased()
            .ok_or("a job for the caller")?;
        let mut leases = vec![own.0];
        for answer in waiting {
            leases.push(
                answer
                    .await??
                    .leased()
                    .ok_or("a job for each waiting call")?
                    .0,
            );
        }
        assert_eq!(
            forge.metrics().batches(),
            (1, 3),
            "one transaction for three leases"
        );
        let jobs: BTreeSet<u64> = leases.iter().map(|l| l.job.0).collect();
        let tokens: BTreeSet<u64> = leases.iter().map(|l| l.token.0).collect();
        assert_eq!(
            (jobs.len(), tokens.len()),
            (3, 3),
            "three jobs, three tokens: {leases:?}"
        );
        // Decided in the order they were queued: the waiting calls first, each a later token.
        let order: Vec<u64> = leases.iter().map(|l| l.token.0).collect();
        assert_eq!(order[1] + 1, order[2]);
        assert!(order[0] > order[2], "{order:?}");
        for lease in &leases {
            let stored = forge.store().job(store_id(lease.job)).await?;
            assert_eq!(
                (stored.state, stored.token),
                (JobState::Leased, Some(lease.token.0))
            );
        }

        // Starts, a heartbeat and finishes of different jobs, also together.
        let mut waiting = Vec::new();
        for lease in &leases {
            waiting.push(queue(
                &forge,
                Ask::Started {
                    job: lease.job.0,
                    token: lease.token.0,
                },
            ));
        }
        waiting.push(queue(
            &forge,
            Ask::Heartbeat {
                job: leases[0].job.0,
                token: leases[0].token.0,
            },
        ));
        forge.started(leases[0].job.0, leases[0].token.0).await?;
        for answer in waiting {
            answer.await??;
        }
        assert_eq!(
            forge.metrics().batches(),
            (2, 7),
            "a start repeated needs no write"
        );
        let run = forge.store().run("app", 1).await?;
        assert_eq!(run.run.status, RunStatus::Running);
        assert!(run.jobs.iter().all(|j| j.state == JobState::Running));

        let waiting: Vec<_> = leases[1..]
            .iter()
            .map(|l| {
                queue(
                    &forge,
                    Ask::Finish {
                        job: l.job.0,
                        token: l.token.0,
                        report: passed(),
                    },
                )
            })
            .collect();
        forge
            .finish(leases[0].job.0, leases[0].token.0, passed())
            .await?;
        for answer in waiting {
            answer.await??;
        }
        assert_eq!(forge.metrics().batches(), (3, 10));
        let run = forge.store().run("app", 1).await?;
        assert!(run.jobs.iter().all(|j| j.state == JobState::Passed));
        assert_eq!(
            run.run.status,
            RunStatus::Passed,
            "the last finish ends the run"
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_batch_whose_write_fails_answers_every_call_in_it_with_an_error_and_writes_none()
    -> TestResult {
        let dir = tempfile::tempdir()?;
        let forge = forge(dir.path(), 3).await?;
        let first = forge
            .lease("a", Duration::ZERO)
            .await?
            .ok_or("a job to start")?;
        // The database refuses every start from now on, as a full disk would refuse a write.
        let mut conn = <sqlx::sqlite::SqliteConnection as sqlx::Connection>::connect(&format!(
            "sqlite://{}",
            dir.path().join("lanes.db").display()
        ))
        .await?;
        sqlx::query(
            "CREATE TRIGGER refuse_starts BEFORE UPDATE OF state ON jobs \
             WHEN NEW.state = 'running' BEGIN SELECT RAISE(ABORT, 'disk full'); END",
        )
        .execute(&mut conn)
        .await?;

        let waiting = queue(&forge, lease_ask());
        let err = forge
            .started(first.job, first.token)
            .await
            .expect_err("the start's write fails");
        assert!(
            matches!(err, ForgeError::Internal(_)),
            "the caller is told to try again: {err:?}"
        );
        let err = waiting
            .await?
            .err()
            .ok_or("the lease written with the failed start is refused too")?;
        assert!(matches!(err, ForgeError::Internal(_)), "{err:?}");
        let open = forge.store().open_jobs().await?;
        let states: Vec<JobState> = open.iter().map(|j| j.state).collect();
        assert_eq!(
            states,
            [JobState::Leased, JobState::Queued, JobState::Queued],
            "nothing of the batch was written"
        );

        // The scheduler was rebuilt from the database: the refused lease's job is leasable
        // again, and once starts are accepted the first job starts.
        sqlx::query("DROP TRIGGER refuse_starts")
            .execute(&mut conn)
            .await?;
        forge.started(first.job, first.token).await?;
        let second = forge
            .lease("a", Duration::ZERO)
            .await?
            .ok_or("the refused lease's job is queued again")?;
        assert_ne!(second.job, first.job);
        let third = forge
            .lease("a", Duration::ZERO)
            .await?
            .ok_or("and the last one")?;
        assert_ne!(third.job, second.job);
        assert_eq!(forge.lease("a", Duration::ZERO).await?.map(|a| a.job), None);
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_agents_at_once_run_every_job_once() -> TestResult {
        let dir = tempfile::tempdir()?;
        let jobs = 120;
        let forge = forge(dir.path(), jobs).await?;
        for i in 0..20 {
            forge
                .agent_online(&format!("agent{i}"), BTreeSet::new(), 2)
                .await;
        }
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..20 {
            let forge = Arc::clone(&forge);
            tasks.spawn(async move {
                let name = format!("agent{i}");
                let mut ran = Vec::new();
                while let Some(job) = forge.lease(&name, Duration::ZERO).await? {
                    forge.started(job.job, job.token).await?;
                    forge.heartbeat(job.job, job.token).await?;
                    forge.finish(job.job, job.token, passed()).await?;
                    ran.push((job.job, job.token));
                }
                Ok::<_, ForgeError>(ran)
            });
        }
        let mut ran = Vec::new();
        while let Some(done) = tasks.join_next().await {
            ran.extend(done??);
        }
        let jobs_run: BTreeSet<u64> = ran.iter().map(|(job, _)| *job).collect();
        let tokens: BTreeSet<u64> = ran.iter().map(|(_, token)| *token).collect();
        assert_eq!(ran.len(), jobs, "every job leased exactly once");
        assert_eq!((jobs_run.len(), tokens.len()), (jobs, jobs));
        let run = forge.store().run("app", 1).await?;
        assert!(run.jobs.iter().all(|j| j.state == JobState::Passed));
        assert_eq!(run.run.status, RunStatus::Passed);
        let (batches, calls) = forge.metrics().batches();
        assert_eq!(
            calls,
            4 * jobs as u64,
            "a lease, a start, a heartbeat, a finish per job"
        );
        assert!(batches <= calls);
        Ok(())
    }
}
