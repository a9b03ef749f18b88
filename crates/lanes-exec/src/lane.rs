//! One lane, step by step: look the key up, restore what a hit produced, else run the step and
//! record what it produced.
//!
//! The lane directory is only materialized when a step has to run: a lane whose every step hits
//! touches nothing but the store. When steps 1..k hit and step k+1 must run, the directory is
//! materialized from the fileset, the outputs of steps 1..k are restored onto it in order, and
//! step k+1 starts from the state it would have had if 1..k had run.

use crate::mask::Masker;
use crate::outputs::{self, OutputError, Snapshot};
use crate::process::{self, Cancel, Confined, Outcome, StepCommand};
use crate::sandbox::{Confinement, Sandbox};
use crate::slot::{Desired, Manifest, SyncError};
use crate::why::explain_miss;
use lanes_cache::{ActionResult, CacheError, LocalStore, Lookup, OutputTree, RESULT_VERSION};
use lanes_core::explain::MissReason;
use lanes_core::glob::{MultiMatcher, Scratch};
use lanes_core::{Digest, FileEntry, Lane, StepFingerprint, fileset};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How a step or a lane ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// It ran and exited 0.
    Passed,
    /// It ran and failed (non-zero exit, killed by a signal, or could not be started).
    Failed,
    /// It ran past its timeout, or its lane's, and was killed.
    TimedOut,
    /// The run was cancelled while it ran.
    Cancelled,
    /// The kernel killed it for going over its memory limit.
    OomKilled,
    /// It did not run: an earlier step or a needed lane failed, or it was not selected.
    Skipped,
    /// Its recorded result was reused.
    Cached,
    /// A lane that could not run on this host at all (a pin does not match); never a step's.
    Error,
}

impl Status {
    /// The name used in reports and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::TimedOut => "timed-out",
            Status::Cancelled => "cancelled",
            Status::OomKilled => "oom-killed",
            Status::Skipped => "skipped",
            Status::Cached => "cached",
            Status::Error => "error",
        }
    }

    /// Passed or cached.
    pub fn is_success(self) -> bool {
        matches!(self, Status::Passed | Status::Cached)
    }
}

pub use lanes_core::job::CacheUse;

/// What happened to one step.
#[derive(Clone, Debug, Serialize)]
pub struct StepResult {
    /// The step's name.
    pub name: String,
    /// How it ended.
    pub status: Status,
    /// Whether its result came from the cache.
    pub cache: CacheUse,
    /// Its key.
    pub key: Digest,
    /// Wall time spent on it in this run (restoring, for a hit).
    pub duration_ms: u64,
    /// For a hit, how long the recorded run took: the time the hit saved.
    pub saved_ms: u64,
    /// Exit code when it ran to completion (128 + signal when a signal ended it).
    pub exit_code: Option<i32>,
    /// The step's log file.
    pub log: PathBuf,
    /// For a step that ran with the cache on: why it missed, from its last recorded run in
    /// this cache (`lanes explain`'s answer, in brief).
    pub miss: Option<MissReason>,
}

/// What happened to one lane.
#[derive(Clone, Debug)]
pub struct LaneResult {
    /// How it ended: `cached` when every step was a hit.
    pub status: Status,
    /// Wall time of the lane.
    pub duration: Duration,
    /// Time spent waiting for cache mounts held by other lanes.
    pub lock_wait: Duration,
    /// Every step, in order.
    pub steps: Vec<StepResult>,
    /// Why the lane could not run at all (materialization failed, a mount collides...).
    pub error: Option<String>,
}

/// Something worth showing while a lane runs.
#[derive(Clone, Debug)]
pub enum Event {
    /// Step `index` started running (not sent for hits).
    StepStarted {
        /// Position in the lane.
        index: usize,
        /// Its key, chained onto what the steps before it left.
        key: Digest,
    },
    /// Step `index` ended.
    StepFinished {
        /// Position in the lane.
        index: usize,
        /// Its result.
        result: StepResult,
    },
    /// The lane directory was written (the first time a step of the lane had to run).
    Materialized {
        /// Files written (a file the slot already held unchanged is kept, not written).
        files: usize,
        /// Bytes written.
        bytes: u64,
        /// Time taken, earlier hits' outputs restored included.
        duration: Duration,
    },
    /// Waiting for a cache mount another lane holds.
    WaitingForMount {
        /// The mount.
        name: String,
    },
    /// One line of a running step's output (only when [`LaneContext::stream`] is set).
    Output {
        /// Position in the lane.
        index: usize,
        /// The line, with its timestamp, without the newline.
        line: String,
    },
    /// Something went wrong beside the steps (the cache, a step's log); the lane carries on
    /// without it.
    Warning(String),
}

/// The lane's files, provided by whoever knows the repository.
pub trait Fileset: Send {
    /// The lane's input files, in path order: exactly those its keys were made with (an error
    /// otherwise).
    fn files(&self) -> Result<Vec<FileEntry>, String>;
    /// Write `files` (some of [`Fileset::files`]) under `dest`, where their parent directories
    /// exist and they do not; returns how many files and bytes were written.
    fn write(&self, files: &[&FileEntry], dest: &Path) -> Result<(usize, u64), String>;
    /// The fileset's canonical listing, whose BLAKE3 is the fingerprint's `inputs` (kept so
    /// `lanes explain` can name the files that changed).
    fn listing(&self) -> Vec<u8>;
}

/// Where a lane's events go.
pub type Events = Arc<dyn Fn(Event) + Send + Sync>;

/// Where a lane runs and what it may use.
pub struct LaneContext {
    /// The step cache.
    pub store: LocalStore,
    /// The lane's slot: `src/` (the lane directory), `home/`, `tmp/` are made inside it.
    pub slot: PathBuf,
    /// Where step logs go: `<logs>/<step>.log`.
    pub logs: PathBuf,
    /// Where this lane's cache mounts live (`<mounts>/<name>/`, locked by `<name>.lock`).
    pub mounts: PathBuf,
    /// The base environment (`PATH`, `LANG`, `CI`, `LANES_COMMIT`, `LANES_RUN_ID`); `HOME`,
    /// `TMPDIR`, `LANES_LANE`, `LANES_STEP` and the step's own variables are added.
    pub env: BTreeMap<String, String>,
    /// Whether recorded results may be reused (`--no-cache` turns this off; results are still
    /// recorded).
    pub lookup: bool,
    /// Raised to stop the lane.
    pub cancel: Cancel,
    /// SIGTERM to SIGKILL.
    pub grace: Duration,
    /// Send every output line as [`Event::Output`].
    pub stream: bool,
    /// Where events go.
    pub events: Events,
    /// Hide the repository and the cache from steps; `None` runs them unsandboxed.
    pub sandbox: Option<Sandbox>,
    /// Whose history the steps are compared with and recorded in (why a step missed): the
    /// forge repository of an agent's job; `None` for `lanes run`.
    pub history: Option<String>,
    /// The secrets the lane asks for (`secrets = [...]`): each value, or why this run may not
    /// have it. A lane missing one fails before anything runs or is restored.
    pub secrets: BTreeMap<String, Result<String, String>>,
}

impl std::fmt::Debug for LaneContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaneContext")
            .field("slot", &self.slot)
            .field("lookup", &self.lookup)
            .field("sandbox", &self.sandbox)
            .finish_non_exhaustive()
    }
}

/// What a hit left to apply if a later step has to run.
struct Pending {
    index: usize,
    outputs: Digest,
}

/// Run `lane`'s steps (with their `fingerprints`, in order, as [`lanes_core::fingerprint`]
/// makes them: each step is keyed again on what the step before it left once that is known).
pub fn run_lane(
    lane: &Lane,
    fingerprints: &[StepFingerprint],
    fileset: &dyn Fileset,
    cx: &LaneContext,
) -> LaneResult {
    let started = Instant::now();
    let deadline = lane.timeout.map(|t| started + t);
    let mut runner = Runner {
        lane,
        fingerprints: fingerprints.to_vec(),
        left: vec![None; fingerprints.len()],
        fileset,
        cx,
        materialized: false,
        pending: Vec::new(),
        mounts: Vec::new(),
        lock_wait: Duration::ZERO,
        deadline,
        unsandboxed_result: false,
    };
    let mut steps: Vec<StepResult> = Vec::new();
    let mut error = None;
    let mut index = 0;
    // Fail fast rather than run without a secret: nothing runs, nothing is restored.
    if let Some(why) = lane
        .secrets
        .iter()
        .find_map(|name| match cx.secrets.get(name) {
            Some(Ok(_)) => None,
            Some(Err(why)) => Some(format!("the secret `{name}` is not available: {why}")),
            None => Some(format!("the secret `{name}` is not available")),
        })
        && !lane.steps.is_empty()
    {
        let result = StepResult {
            status: Status::Failed,
            ..runner.skipped(0)
        };
        write_reason(cx, &result.log, &why);
        (cx.events)(Event::StepFinished {
            index: 0,
            result: result.clone(),
        });
        steps.push(result);
        error = Some(why);
        index = 1;
    }
    // Steps whose recorded outputs could not be restored: they run instead.
    let mut no_lookup = vec![false; lane.steps.len()];
    while index < lane.steps.len() {
        if steps
            .last()
            .is_some_and(|s: &StepResult| !s.status.is_success())
            || error.is_some()
        {
            steps.push(runner.skipped(index));
            index += 1;
            continue;
        }
        if cx.cancel.is_cancelled() {
            steps.push(StepResult {
                status: Status::Cancelled,
                ..runner.skipped(index)
            });
            index += 1;
            continue;
        }
        // The key covers the directory the step starts from: what the step before it left.
        let mut unkeyed = false;
        if index > 0 {
            let left = runner.left[index - 1].clone();
            unkeyed = left.is_none();
            runner.fingerprints[index] =
                fingerprints[index].after(&runner.fingerprints[index - 1], left);
        }
        match runner.step(index, deadline, no_lookup[index], unkeyed) {
            Ok(result) => {
                (cx.events)(Event::StepFinished {
                    index,
                    result: result.clone(),
                });
                steps.push(result);
                index += 1;
            }
            Err(StepError::Restore { index: bad, why }) => {
                (cx.events)(Event::Warning(format!(
                    "lane {}: the recorded outputs of step {} could not be restored ({why}); \
                     running it again",
                    lane.name, lane.steps[bad].name
                )));
                no_lookup[bad] = true;
                runner.materialized = false;
                runner.pending.clear();
                steps.truncate(bad);
                index = bad;
                // The hits before `bad` must be applied again on the fresh directory.
                runner.pending = steps
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| (s.cache == CacheUse::Hit).then_some(i))
                    .filter_map(|i| {
                        runner.recorded_outputs(i).map(|o| Pending {
                            index: i,
                            outputs: o,
                        })
                    })
                    .collect();
            }
            Err(failure @ (StepError::Lane(_) | StepError::Stopped(..))) => {
                let (status, why) = match failure {
                    StepError::Stopped(status, why) => (status, why),
                    StepError::Lane(why) => (Status::Failed, why),
                    StepError::Restore { .. } => unreachable!("matched above"),
                };
                // The step's log says why, so the report's log path always has the answer.
                let result = StepResult {
                    status,
                    ..runner.skipped(index)
                };
                write_reason(cx, &result.log, &why);
                error = Some(why);
                steps.push(result);
                (cx.events)(Event::StepFinished {
                    index,
                    result: steps[index].clone(),
                });
                index += 1;
            }
        }
    }
    let status = lane_status(&steps);
    LaneResult {
        status,
        duration: started.elapsed(),
        lock_wait: runner.lock_wait,
        steps,
        error,
    }
}

/// `fingerprints` chained through the results recorded in `store`: the keys a run uses while
/// the steps before hit (what `lanes fingerprint` and `lanes explain` show). After a step without
/// a usable record the outputs it leaves are unknown until it runs, and the keys after it are
/// not the ones a run will use.
pub fn chain_recorded(
    store: &LocalStore,
    fingerprints: &[StepFingerprint],
) -> Vec<StepFingerprint> {
    lanes_core::fingerprint::chain_recorded(fingerprints, |key| match store.get_action(key) {
        Ok(Lookup::Hit(result)) => Some(result.outputs),
        _ => None,
    })
}

/// Writes why a step did not run (or could not start) into its log, so the report's log path
/// always says why; a log that cannot be written is a warning instead, saying both.
fn write_reason(cx: &LaneContext, log: &Path, why: &str) {
    if let Err(e) = std::fs::write(log, format!("lanes: {why}\n")) {
        (cx.events)(Event::Warning(format!(
            "cannot write {}: {e}; it would have said: {why}",
            log.display()
        )));
    }
}

fn lane_status(steps: &[StepResult]) -> Status {
    if let Some(bad) = steps.iter().find(|s| {
        matches!(
            s.status,
            Status::Failed | Status::TimedOut | Status::Cancelled | Status::OomKilled
        )
    }) {
        return bad.status;
    }
    if steps.iter().all(|s| s.status == Status::Cached) {
        Status::Cached
    } else {
        Status::Passed
    }
}

enum StepError {
    /// The recorded outputs of step `index` (a hit) could not be restored.
    Restore { index: usize, why: String },
    /// The lane cannot go on.
    Lane(String),
    /// The lane was cancelled or ran out of time before the step could start.
    Stopped(Status, String),
}

struct Runner<'a> {
    lane: &'a Lane,
    /// Each step's fingerprint, chained onto the steps before it as they went.
    fingerprints: Vec<StepFingerprint>,
    /// The digest of the output tree each step left (recorded for a hit, captured when it ran);
    /// `None` until it is known, or when it could not be captured.
    left: Vec<Option<Digest>>,
    fileset: &'a dyn Fileset,
    cx: &'a LaneContext,
    materialized: bool,
    pending: Vec<Pending>,
    /// Held cache-mount locks.
    mounts: Vec<File>,
    lock_wait: Duration,
    /// When the lane's timeout runs out.
    deadline: Option<Instant>,
    /// The last lookup found a result recorded without the sandbox, not reused by this
    /// sandboxed run.
    unsandboxed_result: bool,
}

impl Runner<'_> {
    fn src(&self) -> PathBuf {
        self.cx.slot.join("src")
    }

    fn log_path(&self, index: usize) -> PathBuf {
        self.cx
            .logs
            .join(format!("{}.log", self.lane.steps[index].name))
    }

    fn warn(&self, message: String) {
        (self.cx.events)(Event::Warning(message));
    }

    fn skipped(&self, index: usize) -> StepResult {
        StepResult {
            name: self.lane.steps[index].name.clone(),
            status: Status::Skipped,
            cache: CacheUse::Miss,
            key: self.fingerprints[index].key(),
            duration_ms: 0,
            saved_ms: 0,
            exit_code: None,
            log: self.log_path(index),
            miss: None,
        }
    }

    /// The outputs digest recorded for step `index`, looked up again.
    fn recorded_outputs(&self, index: usize) -> Option<Digest> {
        match self.cx.store.get_action(&self.fingerprints[index].key()) {
            Ok(Lookup::Hit(result)) => Some(result.outputs),
            _ => None,
        }
    }

    /// Run step `index`, or reuse its result. `unkeyed`: what the previous step left is unknown,
    /// so the key does not describe where this step starts: it is neither looked up nor recorded.
    fn step(
        &mut self,
        index: usize,
        deadline: Option<Instant>,
        no_lookup: bool,
        unkeyed: bool,
    ) -> Result<StepResult, StepError> {
        let step = &self.lane.steps[index];
        let fingerprint = &self.fingerprints[index];
        let key = fingerprint.key();
        let started = Instant::now();
        let cache = if !step.cache || !self.cx.lookup || unkeyed {
            CacheUse::Disabled
        } else {
            CacheUse::Miss
        };
        if cache == CacheUse::Miss
            && !no_lookup
            && let Some(hit) = self.lookup(index, &key)
        {
            return Ok(StepResult {
                name: step.name.clone(),
                status: Status::Cached,
                cache: CacheUse::Hit,
                key,
                duration_ms: millis(started.elapsed()),
                saved_ms: hit.duration_ms,
                exit_code: Some(hit.exit_code),
                log: self.log_path(index),
                miss: None,
            });
        }
        // Before the step runs and its history entry is replaced.
        let miss = if std::mem::take(&mut self.unsandboxed_result) {
            Some(MissReason {
                kind: lanes_core::explain::MissKind::Settings,
                detail: "the recorded result ran without the sandbox (--no-sandbox); a sandboxed \
                         run does not reuse it"
                    .to_owned(),
            })
        } else if cache == CacheUse::Miss {
            self.why_missed(index, &key)
        } else {
            None
        };

        self.prepare()?;
        (self.cx.events)(Event::StepStarted {
            index,
            key: key.clone(),
        });
        let src = self.src();
        let before = match Snapshot::take(&src, &self.lane.cache_mounts) {
            Ok(s) => Some(s),
            Err(e) => {
                self.warn(format!("lane {}: cannot list the lane directory before step {}: {e}; its result will not be recorded", self.lane.name, step.name));
                None
            }
        };
        let log_path = self.log_path(index);
        let log = File::create(&log_path)
            .map_err(|e| StepError::Lane(format!("cannot create {}: {e}", log_path.display())))?;
        let mut argv: Vec<String> = step.shell().split_whitespace().map(str::to_owned).collect();
        argv.push(step.run.clone());
        let mut env = self.cx.env.clone();
        let home = self.cx.slot.join("home");
        env.insert("HOME".into(), home.display().to_string());
        env.insert(
            "TMPDIR".into(),
            self.cx.slot.join("tmp").display().to_string(),
        );
        // The fingerprint holds only digests of these values; the step gets the values.
        for name in &step.pass_env {
            if let Ok(value) = std::env::var(name) {
                env.insert(name.clone(), value);
            }
        }
        env.extend(step.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        let secrets: Vec<(&String, &String)> = (self.lane.secrets.iter())
            .filter_map(|name| Some((name, self.cx.secrets.get(name)?.as_ref().ok()?)))
            .collect();
        env.extend(secrets.iter().map(|(k, v)| ((*k).clone(), (*v).clone())));
        let mask = Masker::new(secrets.iter().map(|(_, v)| v.as_str()));
        env.insert("LANES_LANE".into(), self.lane.name.clone());
        env.insert("LANES_STEP".into(), step.name.clone());
        let lane_left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let timeout = match (step.timeout, lane_left) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // The slot holds src/, home/ and tmp/; the held cache mounts sit beside it.
        let confine = self.cx.sandbox.as_ref().map(|sandbox| Confined {
            sandbox: sandbox.clone(),
            confinement: Confinement {
                keep: vec![self.cx.slot.clone()],
                mounts: (self.lane.cache_mounts.iter())
                    .map(|m| self.cx.mounts.join(m))
                    .collect(),
                cwd: src.clone(),
                network: step.network,
            },
            limits: step.limits.or(self.lane.limits).or(sandbox.limits),
        });
        if let Some(c) = &confine
            && c.limits.any()
            && c.sandbox.cgroups.is_none()
        {
            self.warn(format!(
                "lane {} step {}: its limits are not enforced: lanes has no cgroups on this host \
                 (`lanes doctor` says why)",
                self.lane.name, step.name
            ));
        }
        let command = StepCommand {
            argv,
            cwd: src.clone(),
            env,
            timeout,
            grace: self.cx.grace,
            confine,
            mask,
        };
        let writer = LogWriter {
            file: log,
            line: Vec::new(),
            stream: self.cx.stream.then(|| (Arc::clone(&self.cx.events), index)),
        };
        let finished = match process::run(&command, writer, &self.cx.cancel) {
            Ok(finished) => finished,
            Err(e) => {
                write_reason(self.cx, &log_path, &e.to_string());
                return Ok(StepResult {
                    name: step.name.clone(),
                    status: Status::Failed,
                    cache,
                    key,
                    duration_ms: millis(started.elapsed()),
                    saved_ms: 0,
                    exit_code: None,
                    log: log_path,
                    miss,
                });
            }
        };
        let (status, exit_code) = match finished.outcome {
            Outcome::Exited(0) => (Status::Passed, Some(0)),
            Outcome::Exited(code) => (Status::Failed, Some(code)),
            Outcome::Signaled(signal) => (Status::Failed, Some(128 + signal)),
            Outcome::TimedOut => (Status::TimedOut, None),
            Outcome::Cancelled => (Status::Cancelled, None),
            Outcome::OomKilled => (Status::OomKilled, None),
        };
        if status == Status::Passed
            && let Some(before) = before
        {
            self.left[index] = if step.cache && !unkeyed {
                self.record(index, &key, &before, &log_path, finished.duration)
            } else {
                self.digest_outputs(index, &before)
            };
        }
        self.remember(index, &key, status);
        Ok(StepResult {
            name: step.name.clone(),
            status,
            cache,
            key,
            duration_ms: millis(started.elapsed()),
            saved_ms: 0,
            exit_code,
            log: log_path,
            miss,
        })
    }

    /// Why step `index` with `key` misses, from its history entry; `None` when that cannot be
    /// read (the step runs all the same).
    fn why_missed(&self, index: usize, key: &str) -> Option<MissReason> {
        let store = &self.cx.store;
        let latest = store
            .latest(
                self.cx.history.as_deref(),
                &self.lane.name,
                &self.lane.steps[index].name,
            )
            .ok()?;
        let explained = explain_miss(
            store,
            latest.as_ref(),
            key,
            &self.fingerprints[index],
            || fileset::parse_listing(&self.fileset.listing()),
        );
        Some(explained.reason)
    }

    /// A usable recorded result for step `index`, with its log written out; `None` for a miss.
    fn lookup(&mut self, index: usize, key: &str) -> Option<ActionResult> {
        let store = &self.cx.store;
        let found = (|| -> Result<Option<ActionResult>, CacheError> {
            let _guard = store.guard()?;
            match store.get_action(key)? {
                // What it read outside its inputs is not in the key: it may not stand for a
                // sandboxed run (the other way round is safe).
                Lookup::Hit(result) if self.cx.sandbox.is_some() && !result.sandboxed => {
                    self.unsandboxed_result = true;
                    Ok(None)
                }
                Lookup::Hit(result) => {
                    let path = self.log_path(index);
                    // Only so the copy starts afresh: one that fails below says why.
                    let _ = std::fs::remove_file(&path);
                    if store.copy_blob_to(&result.log, &path, false)? {
                        Ok(Some(result))
                    } else {
                        Ok(None)
                    }
                }
                Lookup::Miss => Ok(None),
                Lookup::Corrupt(why) => {
                    self.warn(format!(
                        "lane {} step {}: the cache entry {} was corrupt and has been removed ({why}); running the step",
                        self.lane.name, self.lane.steps[index].name, &key[..12]
                    ));
                    Ok(None)
                }
            }
        })();
        match found {
            Ok(Some(result)) => {
                self.pending.push(Pending {
                    index,
                    outputs: result.outputs.clone(),
                });
                self.left[index] = Some(result.outputs.clone());
                Some(result)
            }
            Ok(None) => None,
            Err(e) => {
                self.warn(format!(
                    "lane {} step {}: cache lookup failed ({e}); running the step",
                    self.lane.name, self.lane.steps[index].name
                ));
                None
            }
        }
    }

    /// Make the lane directory ready for a step to run: materialized, earlier hits restored,
    /// cache mounts held and linked.
    fn prepare(&mut self) -> Result<(), StepError> {
        if !self.materialized {
            let slot = self.cx.slot.clone();
            // Whatever a step wrote beside its directories (`../left.txt`) must not reach the
            // next run, which would see state no key covers.
            clear_slot(&slot, &["src", "home", "tmp"]).map_err(StepError::Lane)?;
            for dir in [&slot.join("home"), &slot.join("tmp")] {
                remove_dir_if_present(dir).map_err(StepError::Lane)?;
                std::fs::create_dir_all(dir).map_err(|e| {
                    StepError::Lane(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            // The mounts first: a build tool in a mount judges freshness by comparing file
            // times, so every file written below must be newer than anything another lane built
            // there while this one waited.
            let foreign = self.hold_mounts()?;
            let started = Instant::now();
            let files = self
                .fileset
                .files()
                .map_err(|e| StepError::Lane(format!("materializing the lane's files: {e}")))?;
            let mut desired = Desired::new(files);
            let restoring = std::mem::take(&mut self.pending);
            for pending in &restoring {
                let tree = self.load_pending(pending)?;
                desired
                    .apply(&tree, pending.index)
                    .map_err(|e| self.sync_error(e))?;
            }
            // After another slot used a mount, what it holds was built from other files: none
            // of this slot's may keep its old times.
            let manifest = if foreign { None } else { Manifest::load(&slot) };
            if !self.mounts.is_empty() {
                crate::slot::tick(&slot).map_err(|e| {
                    StepError::Lane(format!("cannot write in {}: {e}", slot.display()))
                })?;
            }
            let synced = {
                let _guard = self
                    .cx
                    .store
                    .guard()
                    .map_err(|e| StepError::Lane(format!("cannot use the cache: {e}")))?;
                let owner = self.cx.sandbox.as_ref().and_then(|s| s.user);
                crate::slot::sync(
                    &slot,
                    &desired,
                    manifest.as_ref(),
                    owner.map(|u| (u.uid, u.gid)),
                    self.fileset,
                    &self.cx.store,
                )
                .map_err(|e| self.sync_error(e))?
            };
            self.link_mounts()?;
            (self.cx.events)(Event::Materialized {
                files: synced.written,
                bytes: synced.bytes,
                duration: started.elapsed(),
            });
            self.materialized = true;
        }
        let restoring = std::mem::take(&mut self.pending);
        self.restore(restoring)
    }

    /// The output tree of an earlier hit.
    fn load_pending(&self, pending: &Pending) -> Result<OutputTree, StepError> {
        let loaded = (|| -> Result<OutputTree, OutputError> {
            let _guard = self.cx.store.guard()?;
            outputs::load_tree(&self.cx.store, &pending.outputs)?.ok_or_else(|| {
                OutputError::MissingBlob {
                    path: "(output tree)".into(),
                    digest: pending.outputs.clone(),
                }
            })
        })();
        loaded.map_err(|e| StepError::Restore {
            index: pending.index,
            why: e.to_string(),
        })
    }

    fn sync_error(&self, error: SyncError) -> StepError {
        match error {
            SyncError::Restore { step, why } => StepError::Restore { index: step, why },
            SyncError::Other(why) => StepError::Lane(why),
        }
    }

    /// Apply the outputs of earlier hits, in order.
    fn restore(&self, pending: Vec<Pending>) -> Result<(), StepError> {
        for pending in pending {
            let restored = (|| -> Result<(), OutputError> {
                let _guard = self.cx.store.guard()?;
                let tree: OutputTree = outputs::load_tree(&self.cx.store, &pending.outputs)?
                    .ok_or_else(|| OutputError::MissingBlob {
                        path: "(output tree)".into(),
                        digest: pending.outputs.clone(),
                    })?;
                outputs::restore(&self.cx.store, &self.src(), &tree)
            })();
            if let Err(e) = restored {
                return Err(StepError::Restore {
                    index: pending.index,
                    why: e.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Take every cache mount of the lane, waiting while another lane holds one; returns whether
    /// another slot held one since this slot last did.
    fn hold_mounts(&mut self) -> Result<bool, StepError> {
        if !self.mounts.is_empty() {
            return Ok(false);
        }
        let mut foreign = false;
        for name in &self.lane.cache_mounts {
            let dir = self.cx.mounts.join(name);
            std::fs::create_dir_all(&dir)
                .map_err(|e| StepError::Lane(format!("cannot create {}: {e}", dir.display())))?;
            let lock_path = self.cx.mounts.join(format!("{name}.lock"));
            let lock = File::create(&lock_path).map_err(|e| {
                StepError::Lane(format!("cannot create {}: {e}", lock_path.display()))
            })?;
            let waiting = Instant::now();
            let mut told = false;
            loop {
                match lock.try_lock() {
                    Ok(()) => break,
                    Err(std::fs::TryLockError::WouldBlock) => {
                        if !told {
                            (self.cx.events)(Event::WaitingForMount { name: name.clone() });
                            told = true;
                        }
                        if self.cx.cancel.is_cancelled() {
                            return Err(StepError::Stopped(
                                Status::Cancelled,
                                format!("cancelled while waiting for the cache mount `{name}`"),
                            ));
                        }
                        if self.deadline.is_some_and(|d| Instant::now() >= d) {
                            return Err(StepError::Stopped(
                                Status::TimedOut,
                                format!(
                                    "the lane's timeout passed while waiting for the cache mount `{name}`"
                                ),
                            ));
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(std::fs::TryLockError::Error(e)) => {
                        return Err(StepError::Lane(format!(
                            "cannot lock {}: {e}",
                            lock_path.display()
                        )));
                    }
                }
            }
            self.lock_wait += waiting.elapsed();
            self.mounts.push(lock);
            foreign |= crate::slot::take_mount(&lock_path, &self.cx.slot).map_err(|e| {
                StepError::Lane(format!("cannot write beside {}: {e}", lock_path.display()))
            })?;
        }
        Ok(foreign)
    }

    /// Link every held cache mount into the lane directory.
    fn link_mounts(&self) -> Result<(), StepError> {
        for name in &self.lane.cache_mounts {
            let dir = self.cx.mounts.join(name);
            let link = self.src().join(name);
            if std::fs::symlink_metadata(&link).is_ok() {
                return Err(StepError::Lane(format!(
                    "the cache mount `{name}` collides with `{name}` in the lane's files; rename the mount or exclude the path from `inputs`"
                )));
            }
            std::os::unix::fs::symlink(&dir, &link).map_err(|e| {
                StepError::Lane(format!("cannot link the cache mount `{name}`: {e}"))
            })?;
        }
        Ok(())
    }

    /// What a passing step left, as its `outputs` select it, without storing it: the digest
    /// the next step is keyed on when this step's result is not recorded. `None`, with a
    /// warning, when the lane directory cannot be read.
    fn digest_outputs(&self, index: usize, before: &Snapshot) -> Option<Digest> {
        let step = &self.lane.steps[index];
        let digested = (|| -> Result<Digest, OutputError> {
            let src = self.src();
            let after = Snapshot::take(&src, &self.lane.cache_mounts)?;
            self.with_filter(index, |filter| {
                outputs::digest_changes(&src, before, &after, filter)
            })
        })();
        match digested {
            Ok(digest) => Some(digest),
            Err(e) => {
                self.warn(format!(
                    "lane {} step {}: cannot tell what it left in the lane directory ({e}); the next step runs without the cache",
                    self.lane.name, step.name
                ));
                None
            }
        }
    }

    /// Call `f` with step `index`'s `outputs` as a path filter.
    fn with_filter<T>(&self, index: usize, f: impl FnOnce(outputs::OutputFilter<'_>) -> T) -> T {
        let matcher = self.lane.steps[index]
            .outputs
            .as_deref()
            .map(MultiMatcher::single);
        let filter = matcher
            .as_ref()
            .map(|m| move |path: &str| m.decide(path, &mut Scratch::default()).is_some());
        f(filter.as_ref().map(|f| f as &dyn Fn(&str) -> bool))
    }

    /// Store what a passing step produced; returns the digest of its output tree. Failures only
    /// warn: caching never fails a step (the tree is then digested without storing it).
    fn record(
        &self,
        index: usize,
        key: &str,
        before: &Snapshot,
        log_path: &Path,
        duration: Duration,
    ) -> Option<Digest> {
        let step = &self.lane.steps[index];
        let store = &self.cx.store;
        let recorded = (|| -> Result<Digest, OutputError> {
            let _guard = store.guard()?;
            let src = self.src();
            let after = Snapshot::take(&src, &self.lane.cache_mounts)?;
            let (outputs, _) = self.with_filter(index, |filter| {
                outputs::capture(store, &src, before, &after, filter)
            })?;
            let (log, _) = store.put_file(log_path)?;
            let fingerprint = self.fingerprints[index].clone();
            if !store.has_blob(&fingerprint.inputs) {
                store.put_blob(&self.fileset.listing())?;
            }
            store.put_action(&ActionResult {
                version: RESULT_VERSION,
                key: key.to_owned(),
                fingerprint,
                exit_code: 0,
                duration_ms: millis(duration),
                log,
                outputs: outputs.clone(),
                sandboxed: self.cx.sandbox.is_some(),
            })?;
            Ok(outputs)
        })();
        match recorded {
            Ok(outputs) => Some(outputs),
            Err(e) => {
                self.warn(format!(
                    "lane {} step {}: the result was not cached: {e}",
                    self.lane.name, step.name
                ));
                self.digest_outputs(index, before)
            }
        }
    }

    /// Keep the fingerprint of a step that ran, for `lanes explain`.
    fn remember(&self, index: usize, key: &str, status: Status) {
        let store = &self.cx.store;
        let fingerprint = &self.fingerprints[index];
        let remembered = (|| -> Result<(), CacheError> {
            if !store.has_blob(&fingerprint.inputs) {
                store.put_blob(&self.fileset.listing())?;
            }
            store.record_history(&lanes_cache::HistoryEntry {
                repo: self.cx.history.clone(),
                lane: self.lane.name.clone(),
                step: self.lane.steps[index].name.clone(),
                key: key.to_owned(),
                fingerprint: fingerprint.clone(),
                status: status.as_str().to_owned(),
                recorded_at_ms: unix_millis(SystemTime::now()),
            })
        })();
        if let Err(e) = remembered {
            self.warn(format!(
                "lane {} step {}: could not keep its fingerprint for `lanes explain`: {e}",
                self.lane.name, self.lane.steps[index].name
            ));
        }
    }
}

/// Remove every entry of the slot `slot` but those named in `keep` (creating the slot when it
/// is missing).
fn clear_slot(slot: &Path, keep: &[&str]) -> Result<(), String> {
    std::fs::create_dir_all(slot).map_err(|e| format!("cannot create {}: {e}", slot.display()))?;
    let entries =
        std::fs::read_dir(slot).map_err(|e| format!("cannot list {}: {e}", slot.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", slot.display()))?;
        if keep.iter().any(|k| entry.file_name() == **k) {
            continue;
        }
        let path = entry.path();
        let removed = match entry.file_type() {
            Ok(kind) if kind.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
        removed.map_err(|e| format!("cannot clear {}: {e}", path.display()))?;
    }
    Ok(())
}

fn remove_dir_if_present(dir: &Path) -> Result<(), String> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("cannot clear {}: {e}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// Milliseconds, saturating.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Milliseconds since the Unix epoch.
pub fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(millis)
        .unwrap_or(0)
}

/// The step log: every byte to the file; whole lines to the event stream when asked.
struct LogWriter {
    file: File,
    line: Vec<u8>,
    stream: Option<(Events, usize)>,
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write_all(buf)?;
        if let Some((events, index)) = &self.stream {
            for &b in buf {
                if b == b'\n' {
                    let line = String::from_utf8_lossy(&self.line).into_owned();
                    events(Event::Output {
                        index: *index,
                        line,
                    });
                    self.line.clear();
                } else {
                    self.line.push(b);
                }
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}
