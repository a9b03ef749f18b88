//! One job, from lease to report: read the lane at the commit, run it with the `lanes run`
//! engine and its step cache, stream the job log, report each step and how the job ended, and
//! heartbeat all along.
//!
//! The lane runs on a blocking thread (`lanes_exec::run_lane`); its events become the job log
//! and the step reports ([`crate::joblog`]), which the async side sends in order. A rejected
//! report, a lease that must have expired or the agent's shutdown stops the job
//! (`report::Control`): its steps are cancelled and nothing more is reported, so the
//! forge's view of a job only ever comes from the agent that holds its lease.

use crate::agent::Shutdown;
use crate::host::base_env;
use crate::joblog::{JobLog, Piece};
use crate::link::{Assignment, FinishReport, Link, StepRecord};
use crate::prepare::{Prepared, prepare};
use crate::report::{BATCH_BYTES, Control, LogStream, Reporter, Stop};
use crate::status::Activity;
use lanes_cache::{CacheError, LocalStore, RunRegistration};
use lanes_core::ErrorClass;
use lanes_core::job::{JobReason, JobState};
use lanes_exec::lane::millis;
use lanes_exec::slot::{Slot, mounts_dir, take_slot};
use lanes_exec::{Cancel, LaneContext, LaneResult, Sandbox, Status};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How many heartbeat intervals a lease lasts when the assignment does not say
/// ([`Assignment::lease_ms`] is 0: a forge from before it was sent), as the forge's defaults
/// grant them (heartbeat every 10 s, lease 30 s).
pub use lanes_api::agent::LEASE_PER_HEARTBEAT;

pub use lanes_engine::DEFAULT_GRACE;

/// Log bytes are sent at least this often while a step writes.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// What jobs run with on this host.
#[derive(Clone, Debug)]
pub struct AgentEnv {
    /// The lanes cache directory (the one `lanes run` uses here): slots in `work/`, cache
    /// mounts in `mounts/`, the agent's step logs in `agent/`.
    pub cache_root: PathBuf,
    /// The step cache in it.
    pub store: LocalStore,
    /// The sandbox steps run in (the caller probes it); the job's repository is added to what
    /// it hides. `None` runs steps unsandboxed.
    pub sandbox: Option<Sandbox>,
    /// SIGTERM to SIGKILL when a step is stopped.
    pub grace: Duration,
    /// The agent's running jobs and their scopes, for its host status.
    pub activity: Activity,
    /// Limits for the steps of a repository's jobs that set none, by repository name (the
    /// sandbox's own `limits` for the others).
    pub limits: std::collections::BTreeMap<String, lanes_core::catalog::Limits>,
}

impl AgentEnv {
    /// The environment over the cache directory `cache_root`, with [`DEFAULT_GRACE`].
    pub fn open(cache_root: PathBuf, sandbox: Option<Sandbox>) -> Result<AgentEnv, CacheError> {
        let store = LocalStore::open(&cache_root)?;
        Ok(AgentEnv {
            cache_root,
            store,
            sandbox,
            grace: DEFAULT_GRACE,
            activity: Activity::default(),
            limits: Default::default(),
        })
    }
}

/// How [`run_job`] ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobEnd {
    /// The forge took this finish report.
    Finished(FinishReport),
    /// The job was stopped and not reported to the end (its steps are stopped).
    Stopped(Stop),
}

/// Run `assignment` and report it through `link`. Returns once the job's processes have ended.
/// `shutdown` stops it without reporting it further (the forge requeues it when its lease
/// expires).
pub async fn run_job<L: Link>(
    link: &L,
    assignment: Assignment,
    env: &AgentEnv,
    shutdown: &Shutdown,
) -> JobEnd {
    let leased_at = Instant::now();
    let cancel = Cancel::new();
    let control = Control::new(cancel.clone());
    let reporter = Reporter {
        link,
        job: assignment.job,
        token: assignment.token,
        control: &control,
    };
    let interval = Duration::from_millis(assignment.heartbeat_ms.max(1));
    // The forge's lease, not a multiple of the interval: `--lease` is set apart from
    // `--heartbeat`, and a guess gives a job up too early or keeps it after it was requeued.
    let lease = assignment.lease();
    let body = async {
        let finished = body(&reporter, &assignment, env, cancel, leased_at + lease).await;
        control.set_done();
        finished
    };
    let beats = heartbeats(&reporter, leased_at, interval, lease);
    let watch = async {
        tokio::select! {
            () = shutdown.triggered() => control.stop(Stop::Shutdown),
            () = link.revoked(assignment.job, assignment.token) => control.stop(Stop::Rejected(
                "the forge took the job from this lease (cancelled, superseded or requeued)"
                    .to_owned(),
            )),
            () = control.until_done() => {}
        }
    };
    let (finished, (), ()) = tokio::join!(body, beats, watch);
    match finished {
        Some(report) => JobEnd::Finished(report),
        None => JobEnd::Stopped(
            control
                .stopped()
                .expect("a job is only left unreported when it was stopped"),
        ),
    }
}

/// Heartbeats every `interval` once the job is reported started, until it is done or stopped; a
/// lease that could not be extended within `lease` of the last extension (at first, of
/// `leased_at`) stops the job.
async fn heartbeats<L: Link>(
    reporter: &Reporter<'_, L>,
    leased_at: Instant,
    interval: Duration,
    lease: Duration,
) {
    let control = reporter.control;
    tokio::select! {
        () = control.until_started() => {}
        () = control.until_done() => return,
    }
    let mut extended = leased_at;
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = control.until_done() => return,
            () = control.until_stopped() => return,
        }
        let sent = Instant::now();
        let beat = reporter.call("heartbeating", Some(extended + lease), || {
            reporter.link.heartbeat(reporter.job, reporter.token)
        });
        tokio::select! {
            beat = beat => match beat {
                // The forge extends from when it got the beat, which is after it was sent.
                Some(()) => extended = sent,
                None => return,
            },
            () = control.until_done() => return,
        }
    }
}

/// What the lane's thread needs besides the lane.
#[derive(Debug)]
struct Setup {
    prepared: Prepared,
    slot: Slot,
    /// Keeps garbage collection off what the job uses.
    registration: RunRegistration,
    /// The job's step logs, removed when the lane ends.
    logs: PathBuf,
}

/// Why a job could not start its lane: what it ends with.
#[derive(Debug)]
struct SetupFailed {
    class: ErrorClass,
    message: String,
    reason: Option<JobReason>,
}

impl From<String> for SetupFailed {
    /// The agent's own directories and cache: this host's environment.
    fn from(message: String) -> SetupFailed {
        SetupFailed {
            class: ErrorClass::Environment,
            message,
            reason: None,
        }
    }
}

/// The state a job ends in when its lane could not be run, by the failure's class: the one place
/// that decides it. The commit's own input fails the job as a failing step would (the pusher
/// fixes it, and a rerun fails again); the environment (this host, its cache, its tools) or a
/// bug make it `error`: the forge could not run it, and a rerun elsewhere or later may.
pub fn ending(class: ErrorClass) -> JobState {
    match class {
        ErrorClass::Input => JobState::Failed,
        ErrorClass::Environment | ErrorClass::Bug => JobState::Error,
    }
}

/// Reads the lane at the commit and takes what it runs in. Blocking.
fn set_up(assignment: &Assignment, env: &AgentEnv) -> Result<Setup, SetupFailed> {
    let prepared = prepare(assignment).map_err(|e| SetupFailed {
        class: e.class(),
        message: e.to_string(),
        reason: e.reason(),
    })?;
    let registration = env
        .store
        .register_run(&format!("job-{}-{}", assignment.job, assignment.token))
        .map_err(|e| format!("cannot register the job in the cache: {e}"))?;
    let logs = env
        .cache_root
        .join("agent")
        .join(format!("{}-{}", assignment.job, assignment.token));
    fresh_dir(&logs).map_err(|e| format!("cannot create {}: {e}", logs.display()))?;
    let slot = take_slot(&env.cache_root, &prepared.lane().name).map_err(|e| {
        format!(
            "cannot lock a lane directory in {}: {e}",
            env.cache_root.display()
        )
    })?;
    Ok(Setup {
        prepared,
        slot,
        registration,
        logs,
    })
}

fn fresh_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::fs::create_dir_all(dir)
}

/// Everything said about the job after the lease: `None` when it was stopped.
async fn body<L: Link>(
    reporter: &Reporter<'_, L>,
    assignment: &Assignment,
    env: &AgentEnv,
    cancel: Cancel,
    lease_ends: Instant,
) -> Option<FinishReport> {
    let (job, token) = (reporter.job, reporter.token);
    reporter
        .call("reporting the job started", Some(lease_ends), || {
            reporter.link.started(job, token)
        })
        .await?;
    reporter.control.set_started();

    let mut stream = LogStream::starting_at(assignment.log_offset);
    let setup = {
        let (assignment, env) = (assignment.clone(), env.clone());
        tokio::task::spawn_blocking(move || set_up(&assignment, &env)).await
    };
    let setup = match setup {
        Ok(Ok(setup)) => setup,
        Ok(Err(failed)) => {
            let SetupFailed {
                class,
                message,
                reason,
            } = failed;
            return finish_unrun(reporter, &mut stream, class, message, reason).await;
        }
        Err(e) => {
            let why = format!("internal error: reading the lane failed: {e}");
            return finish_unrun(reporter, &mut stream, ErrorClass::Bug, why, None).await;
        }
    };

    // Counted in its scope until the job's report is done.
    let lane = setup.prepared.lane();
    let _running = env.activity.running(
        assignment.job,
        assignment.token,
        lane.scope.as_deref(),
        &lane.cache_mounts,
    );
    // The secrets the lane asks for, from the forge (which checks the job's branch may have
    // them); one it does not give fails the lane before anything runs. Behind a sandbox without
    // a PID namespace, a step could read another step's environment (or the forge's): no
    // secret is asked for there.
    let secrets = if lane.secrets.is_empty() {
        Default::default()
    } else if env.sandbox.as_ref().is_some_and(|s| !s.parts.pid) {
        lane.secrets
            .iter()
            .map(|name| {
                let why = "this host's step sandbox has no PID namespace, so another step could \
                           read it from a process's environment";
                (name.clone(), Err(why.to_owned()))
            })
            .collect()
    } else {
        // Until the job is stopped: the heartbeats keep the lease and say when it is lost.
        reporter
            .call("asking for the lane's secrets", None, || {
                reporter.link.secrets(job, token, lane.secrets.clone())
            })
            .await?
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<Piece>();
    let sandbox = env.sandbox.clone().map(|mut sandbox| {
        for dir in &setup.prepared.repo_dirs {
            if !sandbox.hide.contains(dir) {
                sandbox.hide.push(dir.clone());
            }
        }
        if let Some(limits) = env.limits.get(&assignment.repo) {
            sandbox.limits = *limits;
        }
        sandbox
    });
    let cx = LaneContext {
        store: env.store.clone(),
        slot: setup.slot.path.clone(),
        logs: setup.logs.clone(),
        mounts: mounts_dir(&env.cache_root, setup.prepared.lane().scope.as_deref()),
        env: base_env(
            &assignment.head,
            &format!("{}-{}", assignment.repo, assignment.run),
        ),
        lookup: true,
        cancel,
        grace: env.grace,
        stream: true,
        events: Arc::new(|_| {}),
        sandbox,
        history: Some(assignment.repo.clone()),
        secrets,
    };
    let head = assignment.head.clone();
    let lane_thread = tokio::task::spawn_blocking(move || run_lane(setup, cx, &head, tx));

    // The pump: pieces in order; bytes batched, sent before every step report.
    let mut steps: Vec<Option<StepRecord>> = Vec::new();
    let mut materialize = Duration::ZERO;
    let mut result: Option<LaneResult> = None;
    let mut flush_at: Option<Instant> = None;
    loop {
        let piece = tokio::select! {
            piece = rx.recv() => piece,
            () = sleep_until(flush_at) => {
                stream.flush(reporter).await;
                flush_at = None;
                continue;
            }
        };
        match piece {
            None => break,
            Some(Piece::Log(bytes)) => {
                stream.push(&bytes);
                if stream.pending() >= BATCH_BYTES {
                    stream.flush(reporter).await;
                    flush_at = None;
                } else if flush_at.is_none() && stream.pending() > 0 {
                    flush_at = Some(Instant::now() + FLUSH_EVERY);
                }
            }
            Some(Piece::Step(report)) => {
                stream.flush(reporter).await;
                flush_at = None;
                if report.status != JobState::Running {
                    let index = report.index as usize;
                    if steps.len() <= index {
                        steps.resize(index + 1, None);
                    }
                    steps[index] = Some(report.clone());
                }
                reporter
                    .call("reporting a step", None, || {
                        reporter.link.step(job, token, report.clone())
                    })
                    .await;
            }
            Some(Piece::Materialized(took)) => materialize += took,
            Some(Piece::Done(done)) => result = Some(done),
        }
    }
    stream.flush(reporter).await;
    let panicked = lane_thread.await.is_err();
    if reporter.control.stopped().is_some() {
        return None;
    }
    let Some(result) = result.filter(|_| !panicked) else {
        let why = "internal error: the lane's thread panicked".to_owned();
        return finish_unrun(reporter, &mut stream, ErrorClass::Bug, why, None).await;
    };

    let (state, message) = match result.status {
        Status::Passed | Status::Cached => (JobState::Passed, None),
        Status::Failed => (JobState::Failed, result.error.clone()),
        Status::TimedOut => (JobState::TimedOut, result.error.clone()),
        Status::OomKilled => (
            JobState::Failed,
            Some("oom-killed: a step went over its memory limit".to_owned()),
        ),
        // Only the job's own stop cancels its lane, and a stopped job is not reported; pins
        // were checked before the lane started: a bug.
        Status::Cancelled | Status::Skipped | Status::Error => (
            ending(ErrorClass::Bug),
            Some(format!(
                "internal error: the lane ended {}",
                result.status.as_str()
            )),
        ),
    };
    let report = FinishReport {
        state,
        message,
        reason: None,
        steps: steps.into_iter().flatten().collect(),
        lock_wait_ms: millis(result.lock_wait),
        materialize_ms: millis(materialize),
    };
    reporter
        .call("reporting the job finished", None, || {
            reporter.link.finish(job, token, report.clone())
        })
        .await?;
    Some(report)
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Runs the lane on this (blocking) thread, sending its log and reports to `tx` in order, the
/// last piece being [`Piece::Done`].
fn run_lane(setup: Setup, mut cx: LaneContext, head: &str, tx: mpsc::UnboundedSender<Piece>) {
    let Setup {
        prepared,
        slot,
        registration,
        logs,
    } = setup;
    let lane = prepared.lane();
    let log = Arc::new(Mutex::new(JobLog::new(lane)));
    // As below: a receiver gone means nobody wants the log.
    let _ = tx.send(
        log.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .opening(head),
    );
    cx.events = {
        let (log, tx) = (Arc::clone(&log), tx.clone());
        Arc::new(move |event| {
            // A panic while the log was locked leaves it whole enough to go on with.
            let pieces = log
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .event(event);
            for piece in pieces {
                // The receiver only goes away when the job's future is dropped; then nobody
                // wants the log.
                let _ = tx.send(piece);
            }
        })
    };
    let result = lanes_exec::run_lane(lane, &prepared.fingerprints, &prepared.fileset, &cx);
    drop(cx);
    let pieces = log
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .end(result);
    // Every step log was read into the job log; the forge keeps it now. Step logs left behind
    // take room, nothing else: say so and carry on.
    if let Err(e) = std::fs::remove_dir_all(&logs) {
        tracing::warn!("cannot remove the step logs in {}: {e}", logs.display());
    }
    drop(slot);
    drop(registration);
    for piece in pieces {
        // As above: a receiver gone means nobody wants the log.
        let _ = tx.send(piece);
    }
}

/// Ends a job whose lane could not be run in the state of `class` ([`ending`]): `why` in the
/// log, then in the finish report with `reason`.
async fn finish_unrun<L: Link>(
    reporter: &Reporter<'_, L>,
    stream: &mut LogStream,
    class: ErrorClass,
    why: String,
    reason: Option<JobReason>,
) -> Option<FinishReport> {
    stream.push(format!("lanes: {why}\n").as_bytes());
    stream.flush(reporter).await;
    let report = FinishReport {
        state: ending(class),
        message: Some(why),
        reason,
        steps: Vec::new(),
        lock_wait_ms: 0,
        materialize_ms: 0,
    };
    reporter
        .call("reporting the job finished", None, || {
            reporter
                .link
                .finish(reporter.job, reporter.token, report.clone())
        })
        .await?;
    Some(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commit_s_input_fails_a_job_and_the_rest_is_an_error() {
        assert_eq!(ending(ErrorClass::Input), JobState::Failed);
        assert_eq!(ending(ErrorClass::Environment), JobState::Error);
        assert_eq!(ending(ErrorClass::Bug), JobState::Error);
        for class in ErrorClass::ALL {
            assert!(ending(class).is_terminal(), "{class}");
        }
    }

    #[test]
    fn what_the_agent_cannot_set_up_is_its_environment() {
        let failed = SetupFailed::from("cannot create /x: Permission denied".to_owned());
        assert_eq!(failed.class, ErrorClass::Environment);
        assert_eq!(ending(failed.class), JobState::Error);
    }
}
