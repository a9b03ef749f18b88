//! The forge's running state: the store, the scheduler built from it, the repositories watched,
//! and every operation the API, the ref watcher and agents perform.
//!
//! The scheduler (`lanes_core::schedule`) decides; this module persists each decision before
//! anyone acts on it, under one lock, so the database never lags the scheduler's promises. When
//! a write fails the scheduler is rebuilt from the database ([`Scheduler::restore`]) rather than
//! carried on ahead of it.

use crate::error::{ForgeError, ForgeResult};
use crate::metrics::Metrics;
use crate::nightly::{self, NightlyOutcome};
use crate::status::run_status;
use crate::trigger::{self, Outcome};
use batch::{Ask, Asked};
use jiff::Timestamp;
use lanes_agent::{Assignment, FinishReport, HostStatus};
use lanes_core::job::{JobReason, JobState, Priority};
use lanes_core::schedule::{
    self, AgentId, GroupView, Lease, Need, RestoredJob, Scheduler, Superseded, SupersedingCatalog,
    Token, Transition, on_superseded,
};
use lanes_git::Repo;
use lanes_store::{
    JobId, JobRecord, JobUpdate, LogFile, NewJob, RepoRecord, RunDetail, RunRecord, RunStatus,
    RunUpdate, StepRecord, Store, StoreError,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, PoisonError};
use std::time::Duration;
use tokio::sync::{Mutex, Notify, broadcast};

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

/// Something that happened to a job, for live views (log tails, status pages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobEvent {
    /// Its log grew to `len` acknowledged bytes.
    Log {
        /// The job.
        job: JobId,
        /// The acknowledged length.
        len: u64,
    },
    /// It changed state.
    State {
        /// The job.
        job: JobId,
    },
}

/// An agent the scheduler places jobs on.
#[derive(Clone, Debug)]
struct AgentEntry {
    labels: BTreeSet<String>,
    capacity: u32,
    online: bool,
    /// When it last called in (ms); the built-in agent never goes quiet.
    last_seen: u64,
}

/// A run by its repository and number.
type RunKey = (String, u64);

/// A remote agent that has not called in for this long past its lease is offline: it gets no
/// leases and no longer counts as able to run a job's labels. (A lease call may wait 60 s.)
const AGENT_QUIET_MS: u64 = 60_000;

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
    agents: BTreeMap<String, AgentEntry>,
    limits: BTreeMap<String, u32>,
}

/// The forge.
#[derive(Debug)]
pub struct Forge<S> {
    store: S,
    config: ForgeConfig,
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

/// Below this much free space in the data directory the forge counts its disk as full: a
/// SQLite commit or a log append may need that much, and failing halfway helps nobody.
const LOW_SPACE: u64 = 1 << 20;

mod batch;

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

    /// Cancels the open jobs of superseded runs that a crash left between the run being marked
    /// superseded and its jobs cancelled, by the rule a push applies
    /// ([`lanes_core::schedule::on_superseded`]). Runs before the built-in agent's jobs are
    /// requeued, so the rule sees them as they were when the forge stopped.
    async fn finish_superseding(&self, state: &mut Sched) -> ForgeResult<()> {
        for run in self.unfinished_runs().await? {
            let Some(by) = run.superseded_by else {
                continue;
            };
            let detail = self.store.run(&run.repo, run.number).await?;
            let open: Vec<&JobRecord> = detail
                .jobs
                .iter()
                .filter(|j| !j.state.is_terminal())
                .collect();
            if open.is_empty() {
                continue;
            }
            let read = match (
                self.store.repo(&run.repo).await,
                self.store.run(&run.repo, by).await,
            ) {
                (Ok(record), Ok(newer)) => {
                    trigger::catalog_at(&record, &newer.run.head).map_err(|e| e.to_string())
                }
                (Err(e), _) | (_, Err(e)) => Err(e.to_string()),
            };
            let newer = match &read {
                Ok(Some(catalog)) => SupersedingCatalog::Read(catalog),
                Ok(None) => SupersedingCatalog::Unknown,
                Err(e) => {
                    tracing::warn!(
                        "the catalog of run #{by} of {} cannot be read ({e}): the started jobs \
                         of run #{} it superseded are left to run",
                        run.repo,
                        run.number
                    );
                    SupersedingCatalog::Unknown
                }
            };
            let cancel: Vec<schedule::JobId> = open
                .iter()
                .filter(|j| on_superseded(trigger::open_job(j), newer) == Superseded::Cancel)
                .map(|j| core_id(j.id))
                .collect();
            if cancel.is_empty() {
                continue;
            }
            tracing::warn!(
                "run #{} of {} was superseded by #{by} but {} of its jobs were still open: \
                     cancelled",
                run.number,
                run.repo,
                cancel.len()
            );
            let transitions = state.sched.cancel(&cancel, JobReason::Superseded { by });
            self.persist(state, transitions).await?;
        }
        Ok(())
    }

    /// Only these repositories are read on a poll or a hook's notice.
    pub fn set_watched(&self, names: impl IntoIterator<Item = String>) {
        *self
            .watched
            .write()
            .expect("the watched set is never poisoned") = Some(names.into_iter().collect());
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

    /// Live job events.
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.events.subscribe()
    }

    /// Since when the data directory's disk is full, and what showed it; `None` while there is
    /// room. Meanwhile the forge takes no new leases.
    pub fn disk_full(&self) -> Option<(Timestamp, String)> {
        self.disk_full
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Notes a failure: a full disk puts the forge in the disk-full state, said once at WARN.
    /// True when it was a full disk, which the caller then need not log again.
    /// A write of the forge's state whose failure has no caller to go to (the operation it
    /// follows is done): counted, and logged with `what` was not written (a full disk is said
    /// once, by [`Forge::full_disk`]).
    pub(crate) fn unwritten<T>(&self, result: ForgeResult<T>, what: impl FnOnce() -> String) {
        if let Err(e) = result {
            self.metrics.store_write_failed();
            if !self.full_disk(&e) {
                tracing::warn!("failed to write {}: {e}", what());
            }
        }
    }

    pub(crate) fn full_disk(&self, e: &ForgeError) -> bool {
        if !e.is_disk_full() {
            return false;
        }
        self.set_disk_full(e.to_string());
        true
    }

    fn set_disk_full(&self, why: String) {
        let mut full = self
            .disk_full
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if full.is_none() {
            tracing::warn!(
                "the disk of the data directory {} is full ({why}): no new jobs start until \
                 space returns",
                self.config.data_dir.display()
            );
            *full = Some((Timestamp::now(), why));
        }
    }

    /// Looks at the data directory's free space: below [`LOW_SPACE`] the disk is full; above
    /// it a full disk is over.
    fn check_space(&self) {
        let free = match rustix::fs::statvfs(&self.config.data_dir) {
            Ok(stat) => stat.f_bavail.saturating_mul(stat.f_frsize),
            Err(e) => {
                tracing::debug!("statvfs of the data directory failed: {e}");
                return;
            }
        };
        if free < LOW_SPACE {
            self.set_disk_full(format!("{free} bytes free"));
            return;
        }
        let mut full = self
            .disk_full
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((since, _)) = full.take() {
            tracing::info!(
                "the data directory has room again ({free} bytes free; full since {since}): \
                 jobs start again"
            );
        }
    }

    /// The scheduling lock, with the scheduler rebuilt first if it may be ahead of the database.
    async fn locked(&self) -> tokio::sync::MutexGuard<'_, Sched> {
        let mut state = self.sched.lock().await;
        self.catch_up(&mut state).await;
        state
    }

    /// Rebuilds the scheduler if it may be ahead of the database.
    async fn catch_up(&self, state: &mut Sched) {
        if state.dirty
            && let Err(e) = self.rebuild(state).await
        {
            tracing::warn!("rebuilding the scheduler from the database failed: {e}");
        }
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

    /// Writes transitions, each a compare-and-set, in one transaction.
    async fn write(&self, transitions: &[Transition]) -> ForgeResult<()> {
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
    async fn persist(&self, state: &mut Sched, transitions: Vec<Transition>) -> ForgeResult<()> {
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
    async fn after(
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
    async fn refresh_reasons(&self, state: &mut Sched) -> ForgeResult<()> {
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

    // Repositories and triggers.

    /// Reads `repo`'s branches from disk and creates a run for every head not seen before: the
    /// default branch first, so merge-bases are taken against its newest head. Returns the
    /// numbers of the runs created.
    pub async fn poll_repo(self: &Arc<Self>, repo: &str) -> ForgeResult<Vec<u64>> {
        // gix's repository handle is not `Sync`, so a future holding one across awaits is not
        // `Send`: the reading runs on a blocking thread with its own `block_on`.
        let this = Arc::clone(self);
        let repo = repo.to_owned();
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || handle.block_on(this.poll_repo_here(&repo)))
            .await
            .map_err(|e| ForgeError::Internal(format!("the ref reader panicked: {e}")))?
    }

    async fn poll_repo_here(&self, repo: &str) -> ForgeResult<Vec<u64>> {
        // Checked first, so a request for anything else leaves nothing behind.
        let record = self.store.repo(repo).await?;
        let watched = self
            .watched
            .read()
            .expect("the watched set is never poisoned")
            .as_ref()
            .is_none_or(|w| w.contains(repo));
        if !watched {
            return Err(ForgeError::NotFound(format!(
                "repository `{repo}` is not watched by this server"
            )));
        }
        let lock = {
            let mut polls = self.polls.lock().expect("the poll map is never poisoned");
            Arc::clone(polls.entry(repo.to_owned()).or_default())
        };
        let _serial = lock.lock().await;
        let git = open_repo(&record.path)?;
        let mut branches = git.branches()?;
        let record = self.find_default_branch(record, &git, &branches).await?;
        branches.sort_by_key(|b| b.name != record.default_branch);
        let mut created = Vec::new();
        let mut failed = None;
        for branch in branches {
            // One branch that cannot become a run (an orphan branch without a merge-base) must
            // not hold back the others.
            match self
                .on_head(&record, &git, &branch.name, &branch.head)
                .await
            {
                Ok(Some(number)) => created.push(number),
                Ok(None) => {}
                Err(e) => {
                    if !self.full_disk(&e) {
                        tracing::warn!("branch {} of {repo}: {e}", branch.name);
                    }
                    failed.get_or_insert(e);
                }
            }
        }
        match failed {
            Some(e) if created.is_empty() => Err(e),
            _ => Ok(created),
        }
    }

    /// The repository with a default branch that exists: when the one recorded has no commits
    /// (a bare repository whose `HEAD` names `master`, to which `main` was pushed), the one
    /// [`Repo::default_branch`] finds now is recorded instead, before any branch is diffed
    /// against a default that is not there.
    async fn find_default_branch(
        &self,
        record: RepoRecord,
        git: &Repo,
        branches: &[lanes_git::Branch],
    ) -> ForgeResult<RepoRecord> {
        if branches.is_empty() || branches.iter().any(|b| b.name == record.default_branch) {
            return Ok(record);
        }
        let Some(found) = git.default_branch()? else {
            return Ok(record);
        };
        if found == record.default_branch || !branches.iter().any(|b| b.name == found) {
            return Ok(record);
        }
        tracing::warn!(
            "repository {}: its default branch {} has no commits; using {found} (name the \
             default branch in the configuration file to choose another)",
            record.name,
            record.default_branch
        );
        Ok(self
            .store
            .update_repo(&record.name, &found, record.remote_url.as_deref())
            .await?)
    }

    /// One branch head: a run if it is new, the superseded runs' jobs cancelled, the new jobs
    /// queued.
    async fn on_head(
        &self,
        record: &RepoRecord,
        git: &Repo,
        branch: &str,
        head: &lanes_git::CommitId,
    ) -> ForgeResult<Option<u64>> {
        let outcome =
            match trigger::on_branch_head(&self.store, record, git, branch, head, Timestamp::now())
                .await
            {
                Ok(outcome) => outcome,
                Err(e) => {
                    // A store failure may come after the run was created (recording the ref,
                    // superseding): its queued jobs are in the database, so the next operation
                    // rebuilds the scheduler from it rather than leave them unscheduled. A git
                    // failure comes before anything is written.
                    if matches!(e, trigger::TriggerError::Store(_)) {
                        self.locked().await.dirty = true;
                    }
                    return Err(e.into());
                }
            };
        let (created, new) = match outcome {
            Outcome::AlreadySeen => return Ok(None),
            Outcome::Created(created) => (created, true),
            Outcome::Returned(created) => (created, false),
        };
        if new {
            self.metrics.run_created();
        }
        let number = created.run.run.number;
        let mut state = self.locked().await;
        for (group, limit) in &created.groups {
            state.limits.insert(group.clone(), *limit);
            state.sched.set_group_limit(group, *limit);
        }
        let cancel: Vec<schedule::JobId> =
            created.to_cancel.iter().map(|j| core_id(j.id)).collect();
        if !cancel.is_empty() {
            let transitions = state
                .sched
                .cancel(&cancel, JobReason::Superseded { by: number });
            self.persist(&mut state, transitions).await?;
        }
        if new {
            self.queue_jobs(&mut state, &created.run, &created.run.jobs)
                .await?;
        }
        for old in &created.superseded {
            let refreshed = self.refresh_run(&record.name, *old).await;
            self.unwritten(refreshed, || {
                format!("the status of run #{old} of {}, superseded", record.name)
            });
        }
        drop(state);
        Ok(new.then_some(number))
    }

    /// Creates the nightly runs that are due in the `watched` repositories (one per repository,
    /// with every nightly lane whose cron slot passed) and queues their jobs. Returns when the next slot of
    /// any repository comes.
    pub async fn nightly_tick(self: &Arc<Self>, watched: &[String]) -> Option<Timestamp> {
        let mut next: Option<Timestamp> = None;
        for name in watched {
            let repo = match self.store.repo(name).await {
                Ok(repo) => repo,
                Err(e) => {
                    tracing::warn!("nightly runs of {name}: {e}");
                    continue;
                }
            };
            let this = Arc::clone(self);
            let handle = tokio::runtime::Handle::current();
            let name = repo.name.clone();
            // gix's handle is not `Sync`: the git part runs on a blocking thread.
            let ticked = tokio::task::spawn_blocking(move || {
                handle.block_on(async {
                    let git = open_repo(&repo.path)?;
                    // A slot from before the forge knew the repository is not run.
                    let first_seen = repo.created_at;
                    let tick = nightly::create_nightly_run(
                        &this.store,
                        &repo,
                        &git,
                        |_| first_seen,
                        Timestamp::now(),
                    )
                    .await?;
                    if let NightlyOutcome::Created(created) = &tick.outcome {
                        this.start_run(&created.run, &created.groups).await?;
                    }
                    Ok::<_, ForgeError>(tick.next)
                })
            })
            .await;
            match ticked {
                Ok(Ok(Some(at))) => next = Some(next.map_or(at, |n| n.min(at))),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => tracing::warn!("nightly runs of {name}: {e}"),
                Err(e) => tracing::warn!("nightly runs of {name}: the task failed: {e}"),
            }
        }
        next
    }

    /// Queues a run created outside a push (a nightly run).
    async fn start_run(&self, run: &RunDetail, groups: &[(String, u32)]) -> ForgeResult<()> {
        self.metrics.run_created();
        let mut state = self.locked().await;
        for (group, limit) in groups {
            state.limits.insert(group.clone(), *limit);
            state.sched.set_group_limit(group, *limit);
        }
        self.queue_jobs(&mut state, run, &run.jobs).await
    }

    /// Hands the queued jobs among `jobs` (of `run`) to the scheduler.
    async fn queue_jobs(
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

    // Agents.

    /// An agent connects (or changes its labels or capacity).
    pub async fn agent_online(&self, name: &str, labels: BTreeSet<String>, capacity: u32) {
        let mut state = self.locked().await;
        state
            .sched
            .agent_online(AgentId(name.to_owned()), &labels, capacity);
        state.agents.insert(
            name.to_owned(),
            AgentEntry {
                labels,
                capacity,
                online: true,
                last_seen: millis(Timestamp::now()),
            },
        );
        let refreshed = self.refresh_reasons(&mut state).await;
        self.unwritten(refreshed, || {
            format!("the waiting reasons after agent {name} came online")
        });
        self.work.notify_waiters();
    }

    /// An agent disconnects: it gets no new leases; the ones it holds run out unless it comes
    /// back.
    pub async fn agent_offline(&self, name: &str) {
        let mut state = self.locked().await;
        state.sched.agent_offline(&AgentId(name.to_owned()));
        if let Some(agent) = state.agents.get_mut(name) {
            agent.online = false;
        }
        let refreshed = self.refresh_reasons(&mut state).await;
        self.unwritten(refreshed, || {
            format!("the waiting reasons after agent {name} went offline")
        });
    }

    /// A registered remote agent called in: online with its stored labels and capacity, unless
    /// it already is.
    pub async fn agent_connected(&self, agent: &lanes_store::AgentRecord) {
        let labels: BTreeSet<String> = agent.labels.iter().cloned().collect();
        let known = {
            let mut state = self.locked().await;
            match state.agents.get_mut(&agent.name) {
                Some(a) if a.online && a.labels == labels && a.capacity == agent.capacity => {
                    a.last_seen = millis(Timestamp::now());
                    true
                }
                _ => false,
            }
        };
        if !known {
            self.agent_online(&agent.name, labels, agent.capacity).await;
            let written = self
                .store
                .set_agent_state(&agent.name, lanes_store::AgentState::Online)
                .await;
            self.unwritten(written.map_err(ForgeError::from), || {
                format!("the state of agent {} (online)", agent.name)
            });
        }
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

    /// The agents the scheduler knows, with their labels, capacity and whether they are online.
    pub async fn agents(&self) -> Vec<(String, Vec<String>, u32, bool)> {
        let state = self.locked().await;
        state
            .agents
            .iter()
            .map(|(name, a)| {
                (
                    name.clone(),
                    a.labels.iter().cloned().collect(),
                    a.capacity,
                    a.online,
                )
            })
            .collect()
    }

    /// Keeps `status` as `agent`'s host status, received now.
    pub fn set_host_status(&self, agent: &str, status: HostStatus) {
        self.hosts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(agent.to_owned(), (status, Timestamp::now()));
    }

    /// Every agent's newest host status with when it came.
    pub fn host_statuses(&self) -> HashMap<String, (HostStatus, Timestamp)> {
        self.hosts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

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
    async fn check(&self, job: u64, token: u64) -> ForgeResult<()> {
        let state = self.locked().await;
        state
            .sched
            .check(schedule::JobId(job), Token(token), millis(Timestamp::now()))?;
        Ok(())
    }

    /// The secrets `names` the lane of `job` asks for, to the agent holding it with `token`:
    /// each value, or why the job's branch may not have it ([`crate::secrets::grant`]).
    pub async fn secrets(
        &self,
        job: u64,
        token: u64,
        names: &[String],
    ) -> ForgeResult<std::collections::BTreeMap<String, Result<String, String>>> {
        self.check(job, token).await?;
        let record = self.store.job(store_id(schedule::JobId(job))).await?;
        let run = self.store.run(&record.repo, record.run_number).await?;
        let repo = self.store.repo(&record.repo).await?;
        Ok(crate::secrets::grant(
            &self.config.secrets,
            &record.repo,
            &run.run.branch,
            &repo.default_branch,
            names,
        ))
    }

    /// Appends to a job's log at `offset` (see [`lanes_agent::Link::append_log`]).
    pub async fn append_log(
        &self,
        job: u64,
        token: u64,
        offset: u64,
        bytes: Vec<u8>,
    ) -> ForgeResult<u64> {
        self.check(job, token).await?;
        let id = JobId(i64::try_from(job).unwrap_or(i64::MAX));
        let lock = {
            let mut appends = self
                .appends
                .lock()
                .expect("the append map is never poisoned");
            if appends.len() > 1024 {
                // Forget the locks nobody holds: they belong to jobs not appending right now.
                appends.retain(|_, lock| Arc::strong_count(lock) > 1);
            }
            Arc::clone(appends.entry(id).or_default())
        };
        let _serial = lock.lock().await;
        let acked = self.store.log_len(id).await?;
        let end = offset.checked_add(bytes.len() as u64).ok_or_else(|| {
            ForgeError::BadRequest(format!("log offset {offset} is out of range"))
        })?;
        if offset > acked {
            return Err(ForgeError::BadRequest(format!(
                "log append at byte {offset} of job {job} leaves a gap: {acked} bytes are \
                 acknowledged"
            )));
        }
        // The bytes before `acked` were acknowledged already: a resend (an answer that got lost)
        // must carry the same bytes, or the log would no longer say what the agent saw.
        let overlap = usize::try_from(end.min(acked) - offset).unwrap_or(usize::MAX);
        let data_dir = self.config.data_dir.clone();
        let appended = tokio::task::spawn_blocking(move || {
            let mut file = LogFile::open(&data_dir, id, acked)?;
            if overlap > 0 && file.read_at(offset, overlap)? != bytes[..overlap] {
                return Ok(None);
            }
            if end <= acked {
                return Ok(Some(acked));
            }
            file.append(&bytes[overlap..]).map(Some)
        })
        .await
        .map_err(|e| ForgeError::Internal(format!("the log writer panicked: {e}")))?
        .map_err(|e| {
            let e = ForgeError::Store(e);
            self.full_disk(&e);
            e
        })?;
        let Some(new_len) = appended else {
            return Err(ForgeError::Conflict(format!(
                "log append at byte {offset} of job {job} differs from the bytes acknowledged \
                 there: a resend must repeat them"
            )));
        };
        if new_len == acked {
            return Ok(acked);
        }
        self.store.ack_log(id, token, acked, new_len).await?;
        // Fails only when nobody listens to live events: nobody to tell.
        let _ = self.events.send(JobEvent::Log {
            job: id,
            len: new_len,
        });
        Ok(new_len)
    }

    /// Records one step of a running job.
    pub async fn step(&self, job: u64, token: u64, step: StepRecord) -> ForgeResult<()> {
        self.check(job, token).await?;
        let id = JobId(i64::try_from(job).unwrap_or(i64::MAX));
        self.store.record_step(id, token, &step).await?;
        // Fails only when nobody listens to live events: nobody to tell.
        let _ = self.events.send(JobEvent::State { job: id });
        Ok(())
    }

    /// The job ended on its agent.
    pub async fn finish(&self, job: u64, token: u64, report: FinishReport) -> ForgeResult<()> {
        self.ask(Ask::Finish { job, token, report }).await.map(drop)
    }

    /// Ends every lease that expired and writes the queue's reasons; returns when the next
    /// lease expires.
    pub async fn tick(&self) -> ForgeResult<Option<u64>> {
        self.check_space();
        let mut state = self.locked().await;
        let now = millis(Timestamp::now());
        let quiet = self.config.schedule.lease + AGENT_QUIET_MS;
        let gone: Vec<String> = state
            .agents
            .iter()
            .filter(|(name, a)| {
                a.online && name.as_str() != LOCAL_AGENT && a.last_seen + quiet < now
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            tracing::warn!(
                "agent {name} has not called in for {} s: offline",
                quiet / 1000
            );
            state.sched.agent_offline(&AgentId(name.clone()));
            if let Some(agent) = state.agents.get_mut(&name) {
                agent.online = false;
            }
            let written = self
                .store
                .set_agent_state(&name, lanes_store::AgentState::Lost)
                .await;
            self.unwritten(written.map_err(ForgeError::from), || {
                format!("the state of agent {name} (lost)")
            });
        }
        let transitions = state.sched.tick(now);
        self.persist(&mut state, transitions).await?;
        self.refresh_reasons(&mut state).await?;
        Ok(state.sched.next_expiry())
    }

    // Actions.

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

    /// Waits until a job may be leasable, or `wait` passed.
    pub async fn wait_for_work(&self, wait: Duration) {
        // Running out of time is one of the two ways this wait ends, not an error.
        let _ = tokio::time::timeout(wait, self.work.notified()).await;
    }
}

/// The repository at `path`. gix reports any failure to open its files as "not a git
/// repository", out of file descriptors included: such a failure is checked by reading the
/// directory, and said as what it is.
pub(crate) fn open_repo(path: &std::path::Path) -> ForgeResult<Repo> {
    match Repo::discover(path) {
        Ok(repo) => Ok(repo),
        Err(e @ lanes_git::GitError::NotARepository { .. }) => match std::fs::read_dir(path) {
            Err(source) => Err(ForgeError::Io {
                action: "open the repository",
                path: path.to_owned(),
                source,
            }),
            Ok(_) => Err(e.into()),
        },
        Err(e) => Err(e.into()),
    }
}

fn is_queued(jobs: &[JobRecord], id: JobId) -> bool {
    jobs.iter()
        .any(|j| j.id == id && j.state == JobState::Queued)
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

impl From<ForgeError> for lanes_agent::LinkError {
    fn from(e: ForgeError) -> Self {
        match &e {
            ForgeError::Rejected(_) => lanes_agent::LinkError::Rejected(e.to_string()),
            ForgeError::Store(StoreError::StaleToken { .. }) => {
                lanes_agent::LinkError::Rejected(e.to_string())
            }
            // A gap or a resend that differs: sending it again cannot help.
            ForgeError::BadRequest(_) | ForgeError::Conflict(_) => {
                lanes_agent::LinkError::Rejected(e.to_string())
            }
            _ => lanes_agent::LinkError::Unavailable(e.to_string()),
        }
    }
}
