//! Leases: the next job for an agent and what it needs to run it (its assignment), the holder's
//! `started` and heartbeats (decided in batches: `batch.rs`), the check that a token holds a job
//! now, leases that expire (`tick`), a clean stop's hand-back, and waiting for work.

use super::{Forge, batch::Ask, millis, store_id};
use crate::error::ForgeResult;
use jiff::Timestamp;
use lanes_agent::Assignment;
use lanes_core::schedule::{self, AgentId, Lease, Token, Transition};
use lanes_store::Store;
use std::time::Duration;

impl<S: Store + 'static> Forge<S> {
    /// The next job for `agent`, waiting up to `wait` for one.
    pub async fn lease(&self, agent: &str, wait: Duration) -> ForgeResult<Option<Assignment>> {
        let deadline = tokio::time::Instant::now() + wait;
        let id = AgentId(agent.to_owned());
        loop {
            if self.disk_full().is_some() {
                // A job started now could not write its log or its end; it waits in the queue.
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    return Ok(None);
                }
                tokio::time::sleep((deadline - now).min(Duration::from_secs(1))).await;
                continue;
            }
            let notified = self.work.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(leased) = self.ask(Ask::Lease { agent: id.clone() }).await?.leased() {
                let (lease, holder, attempts) = *leased;
                return match self.assignment(&lease, holder, attempts).await {
                    Ok(assignment) => Ok(Some(assignment)),
                    Err(e) => {
                        // The agent never hears of this lease: give the job back now instead of
                        // when the lease expires.
                        let mut state = self.locked().await;
                        if let Some(t) = state.sched.requeue(lease.job) {
                            tracing::warn!(
                                "job {} could not be handed to {agent} ({e}): requeued",
                                lease.job
                            );
                            let written = self.persist(&mut state, vec![t]).await;
                            self.unwritten(written, || {
                                format!(
                                    "the requeue of job {} (it waits for its lease to expire instead)",
                                    lease.job
                                )
                            });
                        }
                        Err(e)
                    }
                };
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(None);
            }
        }
    }

    /// What an agent needs to run a leased job. The scheduler knows the job's run and lane and
    /// how often it was attempted; the commit and the repository's path of a run never change,
    /// so they are remembered rather than read again for every lease. Only a job attempted
    /// before, or one that has a log file (handed back at a clean stop, which uses no attempt),
    /// whose log may hold an earlier attempt's bytes, is read back.
    async fn assignment(
        &self,
        lease: &Lease,
        holder: Option<lanes_core::job::Holder>,
        attempts: u32,
    ) -> ForgeResult<Assignment> {
        let id = store_id(lease.job);
        let logged = || lanes_store::LogFile::path(&self.config.data_dir, id).exists();
        let (repo, number, lane, log_len) = match holder {
            Some(h) if attempts == 0 && !logged() => (h.repo, h.run, h.lane, 0),
            _ => {
                let job = self.store.job(id).await?;
                (job.repo, job.run_number, job.lane, job.log_len)
            }
        };
        let key = (repo, number);
        let known = self
            .places
            .lock()
            .expect("the place cache is never poisoned")
            .get(&key)
            .cloned();
        let (head, git_dir) = match known {
            Some(place) => place,
            None => {
                let record = self.store.repo(&key.0).await?;
                let run = self.store.run(&key.0, key.1).await?;
                let place = (run.run.head, record.path);
                let mut places = self
                    .places
                    .lock()
                    .expect("the place cache is never poisoned");
                if places.len() > 10_000 {
                    places.clear();
                }
                places.insert(key.clone(), place.clone());
                place
            }
        };
        let log_offset = if log_len > 0 {
            // An earlier attempt wrote to this log: its bytes stay, a line says where this
            // attempt starts, and the agent appends after it.
            let line = format!(
                "\n== lanes: attempt {} starts here; the log above is the earlier attempt's\n",
                attempts + 1,
            );
            self.append_log(lease.job.0, lease.token.0, log_len, line.into_bytes())
                .await?
        } else {
            0
        };
        let (repo, run) = key;
        Ok(Assignment {
            job: lease.job.0,
            token: lease.token.0,
            repo,
            run,
            lane,
            head,
            git_dir,
            heartbeat_ms: self.config.schedule.heartbeat,
            lease_ms: self.config.schedule.lease,
            log_offset,
        })
    }

    /// The holder started the job.
    pub async fn started(&self, job: u64, token: u64) -> ForgeResult<()> {
        self.ask(Ask::Started { job, token }).await.map(drop)
    }

    /// The holder is alive: the lease is extended.
    pub async fn heartbeat(&self, job: u64, token: u64) -> ForgeResult<()> {
        self.ask(Ask::Heartbeat { job, token }).await.map(drop)
    }

    /// Checks that `token` holds `job` now.
    pub(super) async fn check(&self, job: u64, token: u64) -> ForgeResult<()> {
        let state = self.locked().await;
        state
            .sched
            .check(schedule::JobId(job), Token(token), millis(Timestamp::now()))?;
        Ok(())
    }

    /// True while `token` is `job`'s live lease.
    pub async fn holds(&self, job: u64, token: u64) -> bool {
        let state = self.locked().await;
        state
            .sched
            .lease_of(schedule::JobId(job))
            .is_some_and(|lease| lease.token == Token(token))
    }

    /// The agent holding `job`'s lease, if it is held.
    pub async fn holder(&self, job: u64) -> Option<String> {
        let state = self.locked().await;
        state
            .sched
            .lease_of(schedule::JobId(job))
            .map(|lease| lease.agent.0)
    }

    /// Ends every lease that expired (after taking offline the agents that went quiet) and
    /// writes the queue's reasons; returns when the next lease expires.
    pub async fn tick(&self) -> ForgeResult<Option<u64>> {
        self.check_space();
        let mut state = self.locked().await;
        let now = millis(Timestamp::now());
        self.quiet_agents_offline(&mut state, now).await;
        let transitions = state.sched.tick(now);
        self.persist(&mut state, transitions).await?;
        self.refresh_reasons(&mut state).await?;
        Ok(state.sched.next_expiry())
    }

    /// A clean stop: the jobs `agent` (the built-in one, whose steps were stopped) holds go back
    /// to the queue without using an attempt. Returns how many.
    pub async fn hand_back(&self, agent: &str) -> ForgeResult<usize> {
        let mut state = self.locked().await;
        let held = state.sched.held_by(&AgentId(agent.to_owned()));
        let transitions: Vec<Transition> = held
            .into_iter()
            .filter_map(|job| state.sched.hand_back(job))
            .collect();
        let count = transitions.len();
        self.persist(&mut state, transitions).await?;
        Ok(count)
    }

    /// Waits until a job may be leasable, or `wait` passed.
    pub async fn wait_for_work(&self, wait: Duration) {
        // Running out of time is one of the two ways this wait ends, not an error.
        let _ = tokio::time::timeout(wait, self.work.notified()).await;
    }
}
