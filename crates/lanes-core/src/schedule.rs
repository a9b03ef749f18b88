//! The forge's scheduling decisions: which queued job an agent gets, when a lease expires and
//! what becomes of its job, which agent reports are stale, which jobs are skipped because a need
//! did not pass, and why each queued job waits.
//!
//! A pure state machine: events and `now` (milliseconds on the server's clock) in, decisions
//! out. It does no I/O, reads no clock and never blocks. The server persists every
//! [`Transition`] it returns (each a compare-and-set on `from`), and after a restart, or after a
//! write that failed, rebuilds it from the database with [`Scheduler::restore`].
//! `docs/scheduler.md` is the reference for the rules.
//!
//! It keeps only open jobs (queued, leased, running): a job is forgotten the moment it ends, so
//! memory follows the queue, not the history. A job that needs a job the scheduler no longer
//! knows is told that job's state by the caller ([`Need::state`]).

mod ready;
mod supersede;

use crate::job::{Holder, JobReason, JobState, Priority};
use ready::{GroupIx, Key, LabelSetIx, Labels, Ready, subset};
use std::collections::{BTreeSet, HashMap, VecDeque};
pub use supersede::{OpenJob, Superseded, SupersedingCatalog, on_superseded};

/// A job's database id. Ids only grow, so id order is arrival order: FIFO within a priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(pub u64);

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// An agent's name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AgentId(pub String);

impl std::fmt::Display for AgentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A lease's fencing token. Every lease gets a new one, larger than every token handed out
/// before (across restarts too); reports must present the current one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Token(pub u64);

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Timings of leases, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// How often agents heartbeat. The scheduler does not use it; it is here so the interval
    /// agents are told and the lease length are configured side by side.
    pub heartbeat: u64,
    /// How long a lease lasts after it is granted or heartbeated.
    pub lease: u64,
    /// The limit of a concurrency group nobody set a limit for: the cautious 1.
    pub default_group_limit: u32,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            heartbeat: 10_000,
            lease: 30_000,
            default_group_limit: 1,
        }
    }
}

/// A job a job waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Need {
    /// The job needed.
    pub job: JobId,
    /// Its lane, for the reasons that name it.
    pub lane: String,
    /// Its state as the caller knows it. Used only when the scheduler does not know the job
    /// (it ended and was forgotten), and must then be terminal.
    pub state: JobState,
}

/// What the scheduler needs to know about a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobSpec {
    /// Its id.
    pub id: JobId,
    /// The repository of its run.
    pub repo: String,
    /// The run's number within its repository.
    pub run: u64,
    /// Its lane.
    pub lane: String,
    /// The order it is served in.
    pub priority: Priority,
    /// The jobs that must pass before it may run.
    pub needs: Vec<Need>,
    /// Its fleet-wide concurrency group.
    pub group: Option<String>,
    /// Labels an agent must all have to run it.
    pub labels: BTreeSet<String>,
    /// How many times it may go back to the queue after losing its agent.
    pub retries: u32,
}

/// A job handed to an agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The job.
    pub job: JobId,
    /// The agent holding it.
    pub agent: AgentId,
    /// The token every report about this lease must present.
    pub token: Token,
    /// When the lease expires unless heartbeated.
    pub expires_at: u64,
}

impl Lease {
    /// The transition that records this lease.
    pub fn transition(&self) -> Transition {
        Transition {
            job: self.job,
            from: JobState::Queued,
            to: JobState::Leased,
            reason: None,
            token: Some(self.token),
            agent: Some(self.agent.clone()),
            expires_at: Some(self.expires_at),
        }
    }
}

/// One decision to persist, as a compare-and-set on `from`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The job.
    pub job: JobId,
    /// The state the decision was made from.
    pub from: JobState,
    /// The new state (`from` itself when only the reason or the expiry changes).
    pub to: JobState,
    /// The job's reason after the transition; `None` clears it.
    pub reason: Option<JobReason>,
    /// For a new lease its token; from a held state the current token, to check.
    pub token: Option<Token>,
    /// The agent of a new lease.
    pub agent: Option<AgentId>,
    /// When a new or extended lease expires.
    pub expires_at: Option<u64>,
}

/// A concurrency group as [`Scheduler::groups`] shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupView {
    /// The group's name.
    pub name: String,
    /// Its fleet-wide limit.
    pub limit: u32,
    /// The held jobs holding it, in id order.
    pub holders: Vec<(JobId, Holder)>,
    /// Its queued jobs, in serving order.
    pub waiters: Vec<(JobId, Holder)>,
}

/// Why an agent's report was not accepted. Whatever the variant, the agent no longer holds the
/// job and must stop it; only [`Rejected::NotAnOutcome`] is a bug in the agent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// The job ended (and was forgotten) or never existed.
    #[error("job {job} is not open: it ended or never existed")]
    UnknownJob {
        /// The job.
        job: JobId,
    },
    /// The job is back in the queue.
    #[error("job {job} is {state}: no lease holds it")]
    NotHeld {
        /// The job.
        job: JobId,
        /// Its state.
        state: JobState,
    },
    /// A newer lease holds the job.
    #[error("stale fencing token {token} for job {job}: a newer lease holds it")]
    StaleToken {
        /// The job.
        job: JobId,
        /// The token presented.
        token: Token,
    },
    /// The lease expired before the report arrived (even if no tick has requeued it yet).
    #[error("the lease of job {job} (token {token}) expired at {expired_at}")]
    Expired {
        /// The job.
        job: JobId,
        /// The token presented.
        token: Token,
        /// When the lease expired.
        expired_at: u64,
    },
    /// An agent reported a job ending in a state that is not an outcome.
    #[error("{state} is not an outcome an agent can report")]
    NotAnOutcome {
        /// The state reported.
        state: JobState,
    },
}

/// Why a job could not be added or restored: the caller's view of the jobs is inconsistent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidJob {
    /// The scheduler already knows a job with this id.
    #[error("job {job} is already scheduled")]
    Duplicate {
        /// The job.
        job: JobId,
    },
    /// A need the scheduler does not know was given in a state that is not terminal.
    #[error("job {job} needs job {need}, which is not open but was given as {state}")]
    UnknownNeed {
        /// The job.
        job: JobId,
        /// The need.
        need: JobId,
        /// The state given for it.
        state: JobState,
    },
    /// A job to restore is not open.
    #[error("job {job} is {state}: only queued, leased and running jobs are restored")]
    NotOpen {
        /// The job.
        job: JobId,
        /// Its state.
        state: JobState,
    },
    /// A leased or running job to restore comes without its lease.
    #[error("job {job} is {state} but has no lease")]
    MissingLease {
        /// The job.
        job: JobId,
        /// Its state.
        state: JobState,
    },
}

/// A persisted open job, to rebuild the scheduler from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoredJob {
    /// What it is.
    pub spec: JobSpec,
    /// Queued, leased or running.
    pub state: JobState,
    /// How many times it went back to the queue from a held state.
    pub attempts: u32,
    /// Its stored reason.
    pub reason: Option<JobReason>,
    /// Its lease, when leased or running.
    pub lease: Option<Lease>,
}

#[derive(Debug)]
struct Held {
    agent: AgentId,
    token: Token,
    expires_at: u64,
}

#[derive(Debug)]
struct Job {
    repo: String,
    run: u64,
    lane: String,
    priority: Priority,
    needs: Vec<Need>,
    /// How many needs have not passed yet.
    unmet: usize,
    /// Open jobs that need this one (some may have ended since).
    dependents: Vec<JobId>,
    group: Option<GroupIx>,
    labels: LabelSetIx,
    retries: u32,
    attempts: u32,
    state: JobState,
    lease: Option<Held>,
    /// The reason last handed out for persisting.
    reason: Option<JobReason>,
}

impl Job {
    fn key(&self, id: JobId) -> Key {
        (self.priority, id)
    }

    fn holder(&self) -> Holder {
        Holder {
            repo: self.repo.clone(),
            run: self.run,
            lane: self.lane.clone(),
        }
    }
}

#[derive(Debug)]
struct Group {
    name: String,
    limit: u32,
    holders: BTreeSet<JobId>,
}

impl Group {
    fn is_full(&self) -> bool {
        self.holders.len() >= self.limit as usize
    }
}

#[derive(Debug)]
struct Agent {
    labels: Box<[u32]>,
    capacity: u32,
    online: bool,
    /// Leases it holds; an agent that went offline is kept until they end.
    held: u32,
}

/// The scheduler's state: open jobs, connected agents, concurrency groups and leases.
#[derive(Debug)]
pub struct Scheduler {
    config: Config,
    jobs: HashMap<JobId, Job>,
    ready: Ready,
    labels: Labels,
    groups: Vec<Group>,
    group_ids: HashMap<String, GroupIx>,
    agents: HashMap<AgentId, Agent>,
    /// Held jobs by lease expiry.
    expiries: BTreeSet<(u64, JobId)>,
    next_token: u64,
    /// Open jobs per run (repository, number); a run with none is absent.
    open_runs: HashMap<(String, u64), u32>,
}

impl Scheduler {
    /// An empty scheduler; its first token is 1.
    pub fn new(config: Config) -> Scheduler {
        Scheduler {
            config,
            jobs: HashMap::new(),
            ready: Ready::default(),
            labels: Labels::default(),
            groups: Vec::new(),
            group_ids: HashMap::new(),
            agents: HashMap::new(),
            expiries: BTreeSet::new(),
            next_token: 1,
            open_runs: HashMap::new(),
        }
    }

    /// Rebuilds the scheduler from the open jobs the database holds. `next_token` is the
    /// smallest token never handed out (tokens also stay above every restored one).
    ///
    /// Agents start offline (they come back with [`Scheduler::agent_online`]) but keep their
    /// leases, and a lease is extended to at least `now + lease`, so the server's downtime does
    /// not count against agents. The transitions persist those extensions, and skip the queued
    /// jobs whose need did not pass.
    pub fn restore(
        config: Config,
        jobs: Vec<RestoredJob>,
        next_token: Token,
        now: u64,
    ) -> Result<(Scheduler, Vec<Transition>), InvalidJob> {
        let mut sched = Scheduler::new(config);
        sched.next_token = next_token.0.max(1);
        let mut out = Vec::new();
        let mut specs = Vec::with_capacity(jobs.len());
        for restored in jobs {
            let RestoredJob {
                spec,
                state,
                attempts,
                reason,
                lease,
            } = restored;
            let id = spec.id;
            if state.is_terminal() {
                return Err(InvalidJob::NotOpen { job: id, state });
            }
            let held = match (state.is_held(), lease) {
                (true, Some(lease)) => Some(lease),
                (true, None) => return Err(InvalidJob::MissingLease { job: id, state }),
                (false, _) => None,
            };
            if sched.jobs.contains_key(&id) {
                return Err(InvalidJob::Duplicate { job: id });
            }
            let job = sched.job_from(&spec, state, attempts, reason);
            sched.insert_new(id, job);
            if let Some(lease) = held {
                sched.next_token = sched.next_token.max(lease.token.0 + 1);
                let expires_at = lease.expires_at.max(now + config.lease);
                if expires_at != lease.expires_at {
                    out.push(Transition {
                        job: id,
                        from: state,
                        to: state,
                        reason: None,
                        token: Some(lease.token),
                        agent: None,
                        expires_at: Some(expires_at),
                    });
                }
                sched.hold(
                    id,
                    Held {
                        agent: lease.agent,
                        token: lease.token,
                        expires_at,
                    },
                );
            }
            specs.push(spec);
        }
        // Needs may point at jobs restored after their dependents: link them once all are in.
        let mut failed = Vec::new();
        for spec in &specs {
            match sched.link_needs(spec)? {
                Linked::Failed(lane) => failed.push((spec.id, lane)),
                Linked::Waiting(unmet) => {
                    if let Some(job) = sched.jobs.get_mut(&spec.id) {
                        job.unmet = unmet;
                        if unmet == 0 && job.state == JobState::Queued {
                            sched.ready.insert(job.group, job.labels, job.key(spec.id));
                        }
                    }
                }
            }
        }
        let mut work = VecDeque::new();
        for (id, lane) in failed {
            work.push_back((id, JobState::Skipped, Some(JobReason::NeedFailed { lane })));
        }
        sched.end_all(work, &mut out);
        Ok((sched, out))
    }

    /// The lease timings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The smallest token not handed out yet.
    pub fn next_token(&self) -> Token {
        Token(self.next_token)
    }

    /// Sets the fleet-wide limit of `group`. Lowering it below the jobs holding it ends none of
    /// them; it only stops new leases. A limit of 0 pauses the group.
    pub fn set_group_limit(&mut self, group: &str, limit: u32) {
        let ix = self.group(group);
        self.groups[ix as usize].limit = limit;
    }

    /// Adds a queued job (already stored as queued). Returns its skip when a need did not pass.
    pub fn add_job(&mut self, spec: JobSpec) -> Result<Vec<Transition>, InvalidJob> {
        let id = spec.id;
        if self.jobs.contains_key(&id) {
            return Err(InvalidJob::Duplicate { job: id });
        }
        // Check the needs before anything is registered, so a rejected job leaves no trace.
        for need in &spec.needs {
            if need.job != id && !self.jobs.contains_key(&need.job) && !need.state.is_terminal() {
                return Err(InvalidJob::UnknownNeed {
                    job: id,
                    need: need.job,
                    state: need.state,
                });
            }
        }
        let job = self.job_from(&spec, JobState::Queued, 0, None);
        self.insert_new(id, job);
        match self.link_needs(&spec)? {
            Linked::Failed(lane) => {
                let mut out = Vec::new();
                let work =
                    VecDeque::from([(id, JobState::Skipped, Some(JobReason::NeedFailed { lane }))]);
                self.end_all(work, &mut out);
                Ok(out)
            }
            Linked::Waiting(unmet) => {
                if let Some(job) = self.jobs.get_mut(&id) {
                    job.unmet = unmet;
                    if unmet == 0 {
                        self.ready.insert(job.group, job.labels, job.key(id));
                    }
                }
                Ok(Vec::new())
            }
        }
    }

    /// An agent connected (or changed): it may hold `capacity` jobs at once, of lanes whose
    /// labels it all has.
    pub fn agent_online(&mut self, agent: AgentId, labels: &BTreeSet<String>, capacity: u32) {
        let labels = self.labels.ids(labels);
        let entry = self.agents.entry(agent).or_insert(Agent {
            labels: Box::new([]),
            capacity: 0,
            online: false,
            held: 0,
        });
        entry.labels = labels;
        entry.capacity = capacity;
        entry.online = true;
    }

    /// An agent disconnected: it gets no new leases and no longer counts for
    /// `waiting-for-agent`. Its leases live on until they end or expire: a disconnect is not a
    /// crash, and heartbeats may come back over a new connection.
    pub fn agent_offline(&mut self, agent: &AgentId) {
        if let Some(a) = self.agents.get_mut(agent) {
            a.online = false;
            if a.held == 0 {
                self.agents.remove(agent);
            }
        }
    }

    /// Leases the first job in serving order (priority, then FIFO) that `agent` may run: its
    /// needs passed, the agent has all its labels, its group is below its limit, and the agent
    /// is online and below its capacity. Persist it with [`Lease::transition`].
    pub fn lease(&mut self, agent: &AgentId, now: u64) -> Option<Lease> {
        let a = self.agents.get(agent)?;
        if !a.online || a.held >= a.capacity {
            return None;
        }
        let mut best: Option<(Key, usize)> = None;
        for (i, part) in self.ready.parts().iter().enumerate() {
            if best.is_some_and(|(key, _)| key <= part.head) {
                continue;
            }
            if part
                .group
                .is_some_and(|g| self.groups[g as usize].is_full())
            {
                continue;
            }
            if !subset(self.labels.members(part.labels), &a.labels) {
                continue;
            }
            best = Some((part.head, i));
        }
        let (_, i) = best?;
        let (_, id) = self.ready.pop(i);
        let token = Token(self.next_token);
        self.next_token += 1;
        let expires_at = now + self.config.lease;
        if let Some(job) = self.jobs.get_mut(&id) {
            job.state = JobState::Leased;
            job.reason = None;
        }
        self.hold(
            id,
            Held {
                agent: agent.clone(),
                token,
                expires_at,
            },
        );
        Some(Lease {
            job: id,
            agent: agent.clone(),
            token,
            expires_at,
        })
    }

    /// Whether `token` is the live lease of `job` at `now`: the fence for every report (log
    /// appends, step records) that changes nothing here.
    pub fn check(&self, job: JobId, token: Token, now: u64) -> Result<(), Rejected> {
        let j = self.jobs.get(&job).ok_or(Rejected::UnknownJob { job })?;
        let held = j.lease.as_ref().ok_or(Rejected::NotHeld {
            job,
            state: j.state,
        })?;
        if held.token != token {
            return Err(Rejected::StaleToken { job, token });
        }
        if now >= held.expires_at {
            return Err(Rejected::Expired {
                job,
                token,
                expired_at: held.expires_at,
            });
        }
        Ok(())
    }

    /// The holder of `job` is alive: its lease now expires at the returned time.
    pub fn heartbeat(&mut self, job: JobId, token: Token, now: u64) -> Result<u64, Rejected> {
        self.check(job, token, now)?;
        let expires_at = now + self.config.lease;
        let old = self
            .jobs
            .get_mut(&job)
            .and_then(|j| j.lease.as_mut())
            .map(|held| std::mem::replace(&mut held.expires_at, expires_at));
        if let Some(old) = old {
            self.expiries.remove(&(old, job));
            self.expiries.insert((expires_at, job));
        }
        Ok(expires_at)
    }

    /// The holder started `job`: leased becomes running. `None` when it already was running.
    pub fn started(
        &mut self,
        job: JobId,
        token: Token,
        now: u64,
    ) -> Result<Option<Transition>, Rejected> {
        self.check(job, token, now)?;
        let Some(j) = self.jobs.get_mut(&job) else {
            return Ok(None);
        };
        if j.state == JobState::Running {
            return Ok(None);
        }
        j.state = JobState::Running;
        Ok(Some(Transition {
            job,
            from: JobState::Leased,
            to: JobState::Running,
            reason: None,
            token: Some(token),
            agent: None,
            expires_at: None,
        }))
    }

    /// The holder reports `job` ended in `outcome` (passed, failed, timed-out or error). The
    /// first transition is the job's own; the rest skip the jobs that needed it, directly or
    /// not, when it did not pass.
    pub fn finished(
        &mut self,
        job: JobId,
        token: Token,
        outcome: JobState,
        now: u64,
    ) -> Result<Vec<Transition>, Rejected> {
        if !matches!(
            outcome,
            JobState::Passed | JobState::Failed | JobState::TimedOut | JobState::Error
        ) {
            return Err(Rejected::NotAnOutcome { state: outcome });
        }
        self.check(job, token, now)?;
        let mut out = Vec::new();
        self.end_all(VecDeque::from([(job, outcome, None)]), &mut out);
        Ok(out)
    }

    /// Ends the leases that expired by `now`: each job goes back to the queue with reason
    /// `agent-lost`, or to `error` (`retries-exhausted`) once it was requeued `retries` times.
    pub fn tick(&mut self, now: u64) -> Vec<Transition> {
        let mut out = Vec::new();
        while let Some(&(at, id)) = self.expiries.first() {
            if at > now {
                break;
            }
            let Some(job) = self.jobs.get(&id) else {
                self.expiries.remove(&(at, id));
                continue;
            };
            let (attempts, retries) = (job.attempts, job.retries);
            let agent = job
                .lease
                .as_ref()
                .map(|held| held.agent.0.clone())
                .unwrap_or_default();
            if attempts < retries {
                let reason = JobReason::AgentLost {
                    agent,
                    attempt: attempts + 1,
                };
                out.extend(self.requeue_held(id, reason));
            } else {
                let reason = JobReason::RetriesExhausted { retries: attempts };
                self.end_all(
                    VecDeque::from([(id, JobState::Error, Some(reason))]),
                    &mut out,
                );
            }
        }
        out
    }

    /// The forge restarted after an unclean stop while its built-in agent held `job` (that
    /// agent died with it): the job goes back to the queue with `forge-restarted`, counting an
    /// attempt, and once that exceeds its retries it ends `error` (`retries-exhausted`), as
    /// with a lost agent: a job that kills the forge must not be retried forever. Held jobs
    /// only; the others are left alone.
    pub fn restarted(&mut self, job: JobId) -> Vec<Transition> {
        let Some(j) = self.jobs.get(&job).filter(|j| j.state.is_held()) else {
            return Vec::new();
        };
        let (attempts, retries) = (j.attempts, j.retries);
        let reason = JobReason::ForgeRestarted {
            attempt: attempts + 1,
        };
        let mut out: Vec<Transition> = self.requeue_held(job, reason).into_iter().collect();
        if attempts >= retries {
            // From the queue, not from the lease: the lease did not expire, the holder died.
            let reason = JobReason::RetriesExhausted { retries };
            self.end_all(
                VecDeque::from([(job, JobState::Error, Some(reason))]),
                &mut out,
            );
        }
        out
    }

    /// The forge stops cleanly and hands `job`, held by its built-in agent, back to the queue
    /// (`handed-back`) without counting an attempt. Held jobs only.
    pub fn hand_back(&mut self, job: JobId) -> Option<Transition> {
        if !self.jobs.get(&job)?.state.is_held() {
            return None;
        }
        let t = self.requeue_held(job, JobReason::HandedBack)?;
        if let Some(j) = self.jobs.get_mut(&job) {
            j.attempts = j.attempts.saturating_sub(1);
        }
        Some(t)
    }

    /// The jobs `agent` holds, in id order.
    pub fn held_by(&self, agent: &AgentId) -> Vec<JobId> {
        let mut held: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.lease.as_ref().is_some_and(|l| &l.agent == agent))
            .map(|(&id, _)| id)
            .collect();
        held.sort_unstable();
        held
    }

    /// When the next lease expires: the latest time to call [`Scheduler::tick`] again.
    pub fn next_expiry(&self) -> Option<u64> {
        self.expiries.first().map(|&(at, _)| at)
    }

    /// Cancels `jobs` (queued or held; ended or unknown ones are left alone) with `reason`,
    /// then skips the jobs that needed them and are not cancelled themselves. A cancelled
    /// holder's later reports are stale.
    pub fn cancel(&mut self, jobs: &[JobId], reason: JobReason) -> Vec<Transition> {
        let work = jobs
            .iter()
            .map(|&id| (id, JobState::Cancelled, Some(reason.clone())))
            .collect();
        let mut out = Vec::new();
        self.end_all(work, &mut out);
        out
    }

    /// A user puts a held job back in the queue (reason `requeued`); its holder's reports are
    /// stale from now on. It counts as an attempt, as a lost agent does. Queued, ended or
    /// unknown jobs are left alone.
    pub fn requeue(&mut self, job: JobId) -> Option<Transition> {
        if !self.jobs.get(&job)?.state.is_held() {
            return None;
        }
        self.requeue_held(job, JobReason::Requeued)
    }

    /// The state of an open job; `None` once it ended (or was never added).
    pub fn state(&self, job: JobId) -> Option<JobState> {
        self.jobs.get(&job).map(|j| j.state)
    }

    /// The run and lane of an open job; `None` once it ended (or was never added).
    pub fn holder(&self, job: JobId) -> Option<Holder> {
        self.jobs.get(&job).map(Job::holder)
    }

    /// How many times an open job went back to the queue from a held state.
    pub fn attempts(&self, job: JobId) -> Option<u32> {
        self.jobs.get(&job).map(|j| j.attempts)
    }

    /// How many jobs of run `run` of `repo` are open (queued, leased or running).
    pub fn open_in_run(&self, repo: &str, run: u64) -> u32 {
        // The map's key is owned; a lookup by borrowed parts would need a custom key type for
        // one hash probe per finish.
        self.open_runs
            .get(&(repo.to_owned(), run))
            .copied()
            .unwrap_or(0)
    }

    /// The live lease of a held job.
    pub fn lease_of(&self, job: JobId) -> Option<Lease> {
        let held = self.jobs.get(&job)?.lease.as_ref()?;
        Some(Lease {
            job,
            agent: held.agent.clone(),
            token: held.token,
            expires_at: held.expires_at,
        })
    }

    /// How many jobs are queued, and how many are held.
    pub fn counts(&self) -> (usize, usize) {
        let held = self.expiries.len();
        (self.jobs.len() - held, held)
    }

    /// Why a queued job waits, by the rules [`Scheduler::lease`] uses, the first that holds:
    /// `waiting-for-needs` (the lanes not passed yet), `waiting-for-agent` (no connected agent
    /// has every label), `blocked-by-group` (the group is full; its holders named),
    /// `waiting-for-capacity`. `None` unless the job is queued.
    pub fn reason(&self, job: JobId) -> Option<JobReason> {
        let j = self.jobs.get(&job)?;
        if j.state != JobState::Queued {
            return None;
        }
        Some(self.waiting_reason(j))
    }

    /// Every concurrency group the scheduler knows, by name: its limit, the jobs holding it and
    /// the queued jobs of the group (in serving order), for the API's group view.
    pub fn groups(&self) -> Vec<GroupView> {
        let mut views: Vec<GroupView> = self
            .groups
            .iter()
            .enumerate()
            .map(|(ix, group)| {
                let mut waiters: Vec<(Key, Holder)> = self
                    .jobs
                    .iter()
                    .filter(|(_, j)| j.state == JobState::Queued && j.group == Some(ix as GroupIx))
                    .map(|(&id, j)| (j.key(id), j.holder()))
                    .collect();
                waiters.sort_by_key(|w| w.0);
                GroupView {
                    name: group.name.clone(),
                    limit: group.limit,
                    holders: group
                        .holders
                        .iter()
                        .filter_map(|id| Some((*id, self.jobs.get(id)?.holder())))
                        .collect(),
                    waiters: waiters.into_iter().map(|((_, id), h)| (id, h)).collect(),
                }
            })
            .collect();
        views.sort_by(|a, b| a.name.cmp(&b.name));
        views
    }

    /// The queued jobs whose reason changed since it was last handed out, in id order, as
    /// transitions (queued to queued) to persist. A job that went back to the queue keeps why
    /// (`agent-lost`, `requeued`) until it is leased again: that is what its watchers need to
    /// see, and it would otherwise be gone within a tick.
    pub fn update_reasons(&mut self) -> Vec<Transition> {
        let mut by_part: HashMap<(Option<GroupIx>, LabelSetIx), JobReason> = HashMap::new();
        let mut changed = Vec::new();
        for (&id, job) in &self.jobs {
            if job.state != JobState::Queued || job.reason.as_ref().is_some_and(went_back) {
                continue;
            }
            let reason = if job.unmet > 0 {
                self.needs_reason(job)
            } else {
                by_part
                    .entry((job.group, job.labels))
                    .or_insert_with(|| self.placement_reason(job.group, job.labels))
                    .clone()
            };
            if job.reason.as_ref() != Some(&reason) {
                changed.push((id, reason));
            }
        }
        changed.sort_by_key(|&(id, _)| id);
        changed
            .into_iter()
            .map(|(id, reason)| {
                if let Some(job) = self.jobs.get_mut(&id) {
                    job.reason = Some(reason.clone());
                }
                Transition {
                    job: id,
                    from: JobState::Queued,
                    to: JobState::Queued,
                    reason: Some(reason),
                    token: None,
                    agent: None,
                    expires_at: None,
                }
            })
            .collect()
    }

    fn group(&mut self, name: &str) -> GroupIx {
        if let Some(&ix) = self.group_ids.get(name) {
            return ix;
        }
        let ix = GroupIx::try_from(self.groups.len()).expect("fewer than 2^32 groups");
        self.groups.push(Group {
            name: name.to_owned(),
            limit: self.config.default_group_limit,
            holders: BTreeSet::new(),
        });
        self.group_ids.insert(name.to_owned(), ix);
        ix
    }

    /// Registers a job not known before, counting it in its run.
    fn insert_new(&mut self, id: JobId, job: Job) {
        *self
            .open_runs
            .entry((job.repo.clone(), job.run))
            .or_insert(0) += 1;
        self.jobs.insert(id, job);
    }

    /// Uncounts an ended job from its run.
    fn forget_run_job(&mut self, job: &Job) {
        let key = (job.repo.clone(), job.run);
        if let Some(open) = self.open_runs.get_mut(&key) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                self.open_runs.remove(&key);
            }
        }
    }

    /// The job for `spec`, not linked to its needs yet.
    fn job_from(
        &mut self,
        spec: &JobSpec,
        state: JobState,
        attempts: u32,
        reason: Option<JobReason>,
    ) -> Job {
        // A job needing itself could never run; validated catalogs have no such cycle.
        let mut needs: Vec<Need> = spec
            .needs
            .iter()
            .filter(|n| n.job != spec.id)
            .cloned()
            .collect();
        needs.sort_by_key(|n| n.job);
        needs.dedup_by_key(|n| n.job);
        Job {
            repo: spec.repo.clone(),
            run: spec.run,
            lane: spec.lane.clone(),
            priority: spec.priority,
            needs,
            unmet: 0,
            dependents: Vec::new(),
            group: spec.group.as_deref().map(|g| self.group(g)),
            labels: self.labels.set(&spec.labels),
            retries: spec.retries,
            attempts,
            state,
            lease: None,
            reason,
        }
    }

    /// Registers `spec` with the open jobs it needs. A need the scheduler does not know ended
    /// before: passed, or failed (then the job must be skipped).
    fn link_needs(&mut self, spec: &JobSpec) -> Result<Linked, InvalidJob> {
        let mut unmet = 0;
        let mut failed = None;
        let needs = self
            .jobs
            .get(&spec.id)
            .map(|j| j.needs.clone())
            .unwrap_or_default();
        for need in &needs {
            if let Some(open) = self.jobs.get_mut(&need.job) {
                open.dependents.push(spec.id);
                unmet += 1;
            } else if !need.state.is_terminal() {
                return Err(InvalidJob::UnknownNeed {
                    job: spec.id,
                    need: need.job,
                    state: need.state,
                });
            } else if !need.state.is_success() && failed.is_none() {
                failed = Some(need.lane.clone());
            }
        }
        Ok(match failed {
            Some(lane) => Linked::Failed(lane),
            None => Linked::Waiting(unmet),
        })
    }

    /// Records a lease on `id` in the group, agent and expiry indexes.
    fn hold(&mut self, id: JobId, held: Held) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if let Some(g) = job.group {
            self.groups[g as usize].holders.insert(id);
        }
        match self.agents.get_mut(&held.agent) {
            Some(agent) => agent.held += 1,
            // A restored lease of an agent that has not come back yet.
            None => {
                let agent = Agent {
                    labels: Box::new([]),
                    capacity: 0,
                    online: false,
                    held: 1,
                };
                self.agents.insert(held.agent.clone(), agent);
            }
        }
        self.expiries.insert((held.expires_at, id));
        job.lease = Some(held);
    }

    /// Removes the lease of `job` from the indexes; returns its token.
    fn release(&mut self, id: JobId, job: &mut Job) -> Option<Token> {
        let held = job.lease.take()?;
        if let Some(g) = job.group {
            self.groups[g as usize].holders.remove(&id);
        }
        self.expiries.remove(&(held.expires_at, id));
        if let Some(agent) = self.agents.get_mut(&held.agent) {
            agent.held = agent.held.saturating_sub(1);
            if agent.held == 0 && !agent.online {
                self.agents.remove(&held.agent);
            }
        }
        Some(held.token)
    }

    /// Puts a held job back in the queue with `reason`, counting an attempt.
    fn requeue_held(&mut self, id: JobId, reason: JobReason) -> Option<Transition> {
        let mut job = self.jobs.remove(&id)?;
        let from = job.state;
        let token = self.release(id, &mut job);
        job.state = JobState::Queued;
        job.attempts += 1;
        job.reason = Some(reason.clone());
        if job.unmet == 0 {
            self.ready.insert(job.group, job.labels, job.key(id));
        }
        self.jobs.insert(id, job);
        Some(Transition {
            job: id,
            from,
            to: JobState::Queued,
            reason: Some(reason),
            token,
            agent: None,
            expires_at: None,
        })
    }

    /// Ends each open job of `work` in its state, in order; a job that did not pass adds its
    /// open dependents to the end of `work`, to be skipped. Ended jobs are forgotten.
    fn end_all(
        &mut self,
        mut work: VecDeque<(JobId, JobState, Option<JobReason>)>,
        out: &mut Vec<Transition>,
    ) {
        while let Some((id, to, reason)) = work.pop_front() {
            let Some(mut job) = self.jobs.remove(&id) else {
                continue;
            };
            self.forget_run_job(&job);
            if job.state == JobState::Queued && job.unmet == 0 {
                self.ready.remove(job.group, job.labels, job.key(id));
            }
            let token = self.release(id, &mut job);
            out.push(Transition {
                job: id,
                from: job.state,
                to,
                reason,
                token,
                agent: None,
                expires_at: None,
            });
            for dep in job.dependents {
                let Some(d) = self.jobs.get_mut(&dep) else {
                    continue;
                };
                if to.is_success() {
                    d.unmet = d.unmet.saturating_sub(1);
                    if d.unmet == 0 && d.state == JobState::Queued {
                        self.ready.insert(d.group, d.labels, d.key(dep));
                    }
                } else {
                    let lane = job.lane.clone();
                    work.push_back((dep, JobState::Skipped, Some(JobReason::NeedFailed { lane })));
                }
            }
        }
    }

    fn needs_reason(&self, job: &Job) -> JobReason {
        // An unknown need ended, and passed: had it not, this job would have been skipped.
        let lanes = job
            .needs
            .iter()
            .filter(|n| self.jobs.contains_key(&n.job))
            .map(|n| n.lane.clone())
            .collect();
        JobReason::WaitingForNeeds { lanes }
    }

    fn waiting_reason(&self, job: &Job) -> JobReason {
        if job.unmet > 0 {
            self.needs_reason(job)
        } else {
            self.placement_reason(job.group, job.labels)
        }
    }

    fn placement_reason(&self, group: Option<GroupIx>, labels: LabelSetIx) -> JobReason {
        let want = self.labels.members(labels);
        if !self
            .agents
            .values()
            .any(|a| a.online && subset(want, &a.labels))
        {
            return JobReason::WaitingForAgent {
                labels: self.labels.names(labels),
            };
        }
        if let Some(g) = group.map(|g| &self.groups[g as usize])
            && g.is_full()
        {
            let holders = g
                .holders
                .iter()
                .filter_map(|id| self.jobs.get(id))
                .map(Job::holder)
                .collect();
            return JobReason::BlockedByGroup {
                group: g.name.clone(),
                holders,
            };
        }
        JobReason::WaitingForCapacity
    }
}

/// A reason that says why a job went back to the queue rather than why it waits.
fn went_back(reason: &JobReason) -> bool {
    matches!(
        reason,
        JobReason::AgentLost { .. }
            | JobReason::Requeued
            | JobReason::ForgeRestarted { .. }
            | JobReason::HandedBack
    )
}

enum Linked {
    /// Waiting for this many needs.
    Waiting(usize),
    /// A need did not pass: the lane of the first such need.
    Failed(String),
}

#[cfg(test)]
mod tests;
