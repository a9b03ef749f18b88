//! The forge's running state: the store, the scheduler built from it, the repositories watched,
//! and every operation the API, the ref watcher and agents perform.
//!
//! The scheduler (`lanes_core::schedule`) decides; the forge persists each decision before
//! anyone acts on it, under one lock, so the database never lags the scheduler's promises. When
//! a write fails the scheduler is rebuilt from the database ([`Scheduler::restore`]) rather than
//! carried on ahead of it.
//!
//! This file holds the [`Forge`] itself: its configuration, its state and who owns each piece
//! of it, opening it over a store and rebuilding the scheduler from the database. Every other
//! concept has its own file, each an `impl Forge` block:
//!
//! | file | owns |
//! |---|---|
//! | `persist.rs` | the scheduling lock, taken with the scheduler caught up; transitions written before anyone acts on them, the scheduler rebuilt when a write fails; what follows a write (run statuses, live events, waking the agents that wait); a run's status from its jobs; new jobs handed to the scheduler |
//! | `batch.rs` | group commit: the leases, starts, heartbeats and finishes waiting for the scheduling lock, decided together by its next holder and written in one transaction |
//! | `leases.rs` | a lease and its assignment, `started`, heartbeats, the fencing check, lease expiry (`tick`), a clean stop's hand-back, waiting for work |
//! | `reports.rs` | what a lease's holder sends: steps, log appends at acknowledged offsets, the finish, secrets; a forge error as the agent's `LinkError` |
//! | `actions.rs` | what users do: cancel a job or a run, requeue a job, rerun a job or a run's failed jobs |
//! | `polling.rs` | the repositories watched, ref polls (the watcher's and the hook's), a new branch head becoming a run, superseding older runs, and the repair at open of a superseding a crash cut short |
//! | `nightly.rs` | the nightly timer's side: due nightly runs created and queued (the slots and the run: `crate::nightly`) |
//! | `events.rs` | live job events and subscribing to them |
//! | `agents.rs` | connected agents: online, offline, quiet ones taken offline, the scheduler's view of them, their host statuses |
//! | `disk.rs` | the disk-full state: failures that show it, free space checked, writes with no caller to fail |
//!
//! # Who owns which state
//!
//! **The scheduling lock** (`sched`, a tokio mutex around `Sched`) guards the scheduler and
//! what must change with it: whether it may be ahead of the database (`dirty`), the runs known
//! to be running, when running jobs started, the connected agents and the group limits. It is
//! held across the store writes that persist a decision, so nobody acts on a decision before it
//! is durable. Every operation that decides, or reads the scheduler, takes it through
//! `locked()` (`persist.rs`), which first rebuilds a dirty scheduler; the agents' frequent calls
//! take it in `ask` (`batch.rs`), which catches up the same way; `open` takes it directly, before
//! anyone else can. It is never taken twice by one task: a function that receives `&mut Sched`
//! already holds it. Beside the scheduler it holds:
//!
//! - `dirty`: set while a rebuild runs (here) and when a job cannot be added (`persist.rs`) or a
//!   new head's write fails (`polling.rs`); cleared by a rebuild that succeeds;
//! - `running_runs`: a run is added by a job's start (`batch.rs`), dropped when it has no open
//!   job left (`persist.rs`) or is rerun (`actions.rs`);
//! - `started_at`: set by a start (`batch.rs`), read by the finish, dropped at a job's end
//!   (`persist.rs`) and by a rebuild;
//! - `agents`: written by `agents.rs`, replayed into a rebuilt scheduler;
//! - `limits`: from the catalogs, at open and for each new run (`polling.rs`, `nightly.rs`),
//!   replayed into a rebuilt scheduler.
//!
//! **Per-key tokio locks**, each in a map behind a std mutex: `polls` (`polling.rs`), one per
//! repository, held for a whole poll so the watcher and a hook never read the same refs at once;
//! `appends` (`reports.rs`), one per job, held for one log append so two appends of a log never
//! interleave. A poll takes the scheduling lock under its repository's lock (never the other way
//! round); an append takes its fencing check (the scheduling lock) before its job's lock and no
//! lock under it but, on a full disk, `disk_full`.
//!
//! **Std mutexes**, each a leaf: held for a few statements, never across an `.await`, never two
//! at once; `asks` and `disk_full` are also taken under the scheduling lock, the others not.
//!
//! | state | file | what it holds | who takes it |
//! |---|---|---|---|
//! | `asks` | `batch.rs` | calls waiting to be decided | a caller queueing its call; the scheduling lock's holder draining the queue |
//! | `polls` | `polling.rs` | each repository's poll lock | a poll, to find its repository's lock |
//! | `appends` | `reports.rs` | each job's append lock | an append, to find its job's lock |
//! | `watched` (a `RwLock`) | `polling.rs` | the repositories the watcher reads | `set_watched` writes it at start-up; a poll reads it |
//! | `places` | `leases.rs` | each run's commit and repository path | an assignment |
//! | `hosts` | `agents.rs` | each agent's newest host status | an agent's status report; the agents page and API |
//! | `disk_full` | `disk.rs` | since when the disk is full, and why | whoever sees a full disk (under the scheduling lock, an append's lock or neither); the ticker; a lease call; `/health`, `/metrics` and the UI |
//!
//! Without a lock: `work` (a `Notify`, raised when a job may have become leasable), `events`
//! (a broadcast channel, `events.rs`) and `metrics` (atomic counters; its histograms have their
//! own lock, `crate::metrics`).

use crate::error::{ForgeError, ForgeResult};
use crate::metrics::Metrics;
use batch::Asked;
use jiff::Timestamp;
use lanes_agent::HostStatus;
use lanes_core::job::{JobReason, JobState};
use lanes_core::schedule::{self, AgentId, GroupView, Lease, Need, RestoredJob, Scheduler, Token};
use lanes_store::{JobId, JobRecord, RunRecord, RunStatus, Store};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{Mutex, Notify, broadcast};

mod actions;
mod agents;
mod batch;
mod disk;
mod events;
mod leases;
mod nightly;
mod persist;
mod polling;
mod reports;

use agents::AgentEntry;
pub use events::JobEvent;
pub(crate) use polling::open_repo;

/// The name of the server's built-in agent. Reserved: remote agents cannot take it.
pub const LOCAL_AGENT: &str = "local";

/// How the forge runs.
#[derive(Clone, Debug)]
pub struct ForgeConfig {
    /// Where the database and the job logs live.
    pub data_dir: PathBuf,
    /// Heartbeat and lease timings.
    pub schedule: schedule::Config,
    /// Answer reads without a token.
    pub public_read: bool,
    /// Each repository's secrets.
    pub secrets: crate::secrets::Secrets,
}

/// A run by its repository and number.
type RunKey = (String, u64);

/// Everything the scheduling lock guards.
#[derive(Debug)]
struct Sched {
    sched: Scheduler,
    /// The scheduler may be ahead of the database (a rebuild failed, a job could not be
    /// added): the next operation rebuilds it before deciding anything.
    dirty: bool,
    /// Runs (repository, number) a job of which started since they were last found pending (a
    /// cache: forgetting a run only costs a read).
    running_runs: BTreeSet<RunKey>,
    /// When each running job started (ms), for its duration at the end; a job missing here
    /// (started before a restart) is read back from the store.
    started_at: HashMap<JobId, u64>,
    /// The agents that connected, as the scheduler was told of them (`agents.rs`).
    agents: BTreeMap<String, AgentEntry>,
    /// Each concurrency group's limit, from the catalogs (kept for rebuilds).
    limits: BTreeMap<String, u32>,
}

/// The forge.
#[derive(Debug)]
pub struct Forge<S> {
    store: S,
    config: ForgeConfig,
    /// The scheduling lock (see the module's docs).
    sched: Mutex<Sched>,
    /// Raised whenever a job may have become leasable.
    work: Notify,
    events: broadcast::Sender<JobEvent>,
    /// One lock per repository, so the poller and the hook never read the same refs at once.
    polls: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Per job, so two appends of one log never interleave.
    appends: std::sync::Mutex<HashMap<JobId, Arc<Mutex<()>>>>,
    /// The repositories the ref watcher reads (`None`: every one the store has).
    watched: std::sync::RwLock<Option<BTreeSet<String>>>,
    /// Leases and agents' reports waiting for the next holder of the scheduling lock, who
    /// decides them all and writes them in one transaction ([`batch`]).
    asks: std::sync::Mutex<Vec<Asked>>,
    /// Per run: its commit and its repository's path, for assignments.
    places: std::sync::Mutex<HashMap<RunKey, (String, PathBuf)>>,
    /// Each agent's newest host status and when it came (memory only: a restart forgets them
    /// until the agents report again, within `lanes_agent::status::EVERY`).
    hosts: std::sync::Mutex<HashMap<String, (HostStatus, Timestamp)>>,
    /// Set while the data directory's disk is full: since when, and what showed it.
    disk_full: std::sync::Mutex<Option<(Timestamp, String)>>,
    metrics: Metrics,
}

/// Milliseconds since the epoch, the scheduler's clock.
pub(crate) fn millis(t: Timestamp) -> u64 {
    u64::try_from(t.as_millisecond()).unwrap_or(0)
}

fn timestamp(ms: u64) -> Timestamp {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .unwrap_or(Timestamp::MAX)
}

fn core_id(job: JobId) -> schedule::JobId {
    schedule::JobId(u64::try_from(job.0).unwrap_or(0))
}

fn store_id(job: schedule::JobId) -> JobId {
    JobId(i64::try_from(job.0).unwrap_or(i64::MAX))
}

impl<S: Store + 'static> Forge<S> {
    /// Builds the forge over `store` and rebuilds the scheduler from the jobs the database holds
    /// open. Jobs the built-in agent still held (the server stopped without handing them back)
    /// are put back in the queue at once as an attempt, or end `error` past their retries: that
    /// agent lived in the process that stopped.
    pub async fn open(store: S, config: ForgeConfig) -> ForgeResult<Arc<Forge<S>>> {
        let (events, _) = broadcast::channel(1024);
        let forge = Arc::new(Forge {
            sched: Mutex::new(Sched {
                sched: Scheduler::new(config.schedule),
                dirty: false,
                running_runs: BTreeSet::new(),
                started_at: HashMap::new(),
                agents: BTreeMap::new(),
                limits: BTreeMap::new(),
            }),
            store,
            config,
            work: Notify::new(),
            events,
            polls: std::sync::Mutex::new(HashMap::new()),
            appends: std::sync::Mutex::new(HashMap::new()),
            places: std::sync::Mutex::new(HashMap::new()),
            hosts: std::sync::Mutex::new(HashMap::new()),
            disk_full: std::sync::Mutex::new(None),
            asks: std::sync::Mutex::new(Vec::new()),
            watched: std::sync::RwLock::new(None),
            metrics: Metrics::default(),
        });
        {
            let mut state = forge.sched.lock().await;
            let open = forge.store.open_jobs().await?;
            forge.set_limits_from_catalogs(&mut state, &open).await;
            forge.rebuild(&mut state).await?;
            // Read before the rebuild: one the rebuild ended is left alone by `requeue`.
            let orphans: Vec<schedule::JobId> = open
                .iter()
                .filter(|j| j.state.is_held() && j.agent.as_deref() == Some(LOCAL_AGENT))
                .map(|j| core_id(j.id))
                .collect();
            forge.finish_superseding(&mut state).await?;
            // Still held: the forge stopped without handing them back (a clean stop does), so it
            // crashed or was killed, perhaps by the job itself. That uses an attempt.
            for job in orphans {
                let transitions = state.sched.restarted(job);
                if !transitions.is_empty() {
                    tracing::warn!(
                        "job {job} was running on the built-in agent when the forge stopped \
                         uncleanly: requeued as an attempt"
                    );
                    forge.persist(&mut state, transitions).await?;
                }
            }
            forge.refresh_reasons(&mut state).await?;
            // A status left behind by a crash between a job's end and its run's update.
            for run in forge.unfinished_runs().await? {
                forge.refresh_run(&run.repo, run.number).await?;
            }
        }
        Ok(forge)
    }

    /// The newest 500 pending and the newest 500 running runs, what start-up repairs look at.
    async fn unfinished_runs(&self) -> ForgeResult<Vec<RunRecord>> {
        let mut out = Vec::new();
        for status in [RunStatus::Pending, RunStatus::Running] {
            out.extend(
                self.store
                    .list_runs(&lanes_store::RunFilter {
                        status: Some(status),
                        limit: 500,
                        ..lanes_store::RunFilter::default()
                    })
                    .await?,
            );
        }
        Ok(out)
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The configuration.
    pub fn config(&self) -> &ForgeConfig {
        &self.config
    }

    /// The counters `/metrics` shows.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Rebuilds the scheduler from the database: after start, and after any write that failed.
    /// Until it succeeds the state stays dirty and every operation tries again.
    async fn rebuild(&self, state: &mut Sched) -> ForgeResult<()> {
        state.dirty = true;
        self.rebuild_now(state).await?;
        state.dirty = false;
        Ok(())
    }

    async fn rebuild_now(&self, state: &mut Sched) -> ForgeResult<()> {
        let open = self.store.open_jobs().await?;
        let by_id: HashMap<JobId, &JobRecord> = open.iter().map(|j| (j.id, j)).collect();
        let mut restored = Vec::with_capacity(open.len());
        for job in &open {
            let mut needs = Vec::new();
            for need in &job.needs {
                let (lane, need_state) = match by_id.get(need) {
                    Some(j) => (j.lane.clone(), j.state),
                    None => {
                        let j = self.store.job(*need).await?;
                        (j.lane, j.state)
                    }
                };
                needs.push(Need {
                    job: core_id(*need),
                    lane,
                    state: need_state,
                });
            }
            let lease = match (job.state.is_held(), &job.agent, job.token, job.expires_at) {
                (true, Some(agent), Some(token), expires) => Some(Lease {
                    job: core_id(job.id),
                    agent: AgentId(agent.clone()),
                    token: Token(token),
                    expires_at: expires.map(millis).unwrap_or(0),
                }),
                _ => None,
            };
            restored.push(RestoredJob {
                spec: spec_of(job, needs),
                state: job.state,
                attempts: job.attempts,
                reason: job.reason.clone(),
                lease,
            });
        }
        let next = Token(self.store.next_token().await?);
        let now = millis(Timestamp::now());
        let (mut sched, transitions) =
            Scheduler::restore(self.config.schedule, restored, next, now).map_err(|e| {
                ForgeError::Internal(format!("the database's open jobs are inconsistent: {e}"))
            })?;
        for (name, limit) in &state.limits {
            sched.set_group_limit(name, *limit);
        }
        for (name, agent) in &state.agents {
            if agent.online {
                sched.agent_online(AgentId(name.clone()), &agent.labels, agent.capacity);
            }
        }
        // The restored scheduler is installed only once what it decided is written.
        self.write(&transitions).await?;
        state.sched = sched;
        state.started_at.clear();
        self.after(state, &transitions, &[]).await;
        Ok(())
    }

    /// Group limits from the catalog at the head of every run that has open jobs.
    async fn set_limits_from_catalogs(&self, state: &mut Sched, open: &[JobRecord]) {
        let runs: BTreeSet<(String, u64)> = open
            .iter()
            .map(|j| (j.repo.clone(), j.run_number))
            .collect();
        for (repo, number) in runs {
            let (Ok(record), Ok(run)) = (
                self.store.repo(&repo).await,
                self.store.run(&repo, number).await,
            ) else {
                continue;
            };
            if let Ok(groups) = crate::trigger::group_limits_at(&record, &run.run.head) {
                state.limits.extend(groups);
            }
        }
    }

    /// Every concurrency group with its holders and waiters.
    pub async fn groups(&self) -> Vec<GroupView> {
        self.locked().await.sched.groups()
    }

    /// Queued jobs by waiting reason, and held jobs.
    pub async fn queue_counts(&self) -> (BTreeMap<String, u64>, u64) {
        let open = self.store.open_jobs().await.unwrap_or_default();
        let mut queued = BTreeMap::new();
        let mut held = 0;
        for job in &open {
            if job.state == JobState::Queued {
                let kind = job.reason.as_ref().map_or("none", JobReason::kind);
                *queued.entry(kind.to_owned()).or_insert(0) += 1;
            } else {
                held += 1;
            }
        }
        (queued, held)
    }
}

/// What the scheduler needs of a stored job.
fn spec_of(job: &JobRecord, needs: Vec<Need>) -> schedule::JobSpec {
    schedule::JobSpec {
        id: core_id(job.id),
        repo: job.repo.clone(),
        run: job.run_number,
        lane: job.lane.clone(),
        priority: job.priority,
        needs,
        group: job.group.clone(),
        labels: job.labels.iter().cloned().collect(),
        retries: job.retries,
    }
}
