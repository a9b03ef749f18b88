//! `lanes run`: select lanes, run them here in `needs` order, reuse every step seen before.

use crate::args::RunArgs;
use crate::cache_dir::{KEEP_RUNS, cache_dir};
use crate::commands::select::describe;
use crate::error::{CliError, exit};
use crate::printer::Printer;
use crate::progress::Progress;
use crate::workspace::{CATALOG_PATH, Workspace};
use lanes_cache::{LocalStore, RunEvent};
use lanes_core::job::JobReason;
use lanes_core::plan::{Plan, PlanLane};
use lanes_core::select::LaneSelection;
use lanes_core::{Catalog, LaneClass, Reason, StepFingerprint, Trigger, fileset};
use lanes_engine::DEFAULT_GRACE;
use lanes_engine::fileset::RepoFileset;
use lanes_engine::host::{PinCheck, base_env, check_lane_pins, step_fingerprints};
use lanes_exec::lane::{millis, unix_millis};
use lanes_exec::slot::{Slot, mounts_dir, take_slot};
use lanes_exec::{Cancel, Event, LaneContext, LaneResult, Sandbox, Status, StepResult};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime};

/// Version of the report document.
const REPORT_VERSION: u32 = 1;

/// The report every run writes. Field order is the documented order.
#[derive(Debug, Serialize)]
struct Report {
    version: u32,
    run_id: String,
    base: Option<String>,
    head: Option<String>,
    started_at: String,
    duration_ms: u64,
    status: &'static str,
    lanes: Vec<LaneReport>,
}

#[derive(Debug, Serialize)]
struct LaneReport {
    name: String,
    class: LaneClass,
    status: Status,
    reasons: Vec<Reason>,
    duration_ms: u64,
    lock_wait_ms: u64,
    steps: Vec<StepResult>,
    /// Why a lane ended `error`: the forge's job reason for the same case (`pin-mismatch`).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<JobReason>,
}

/// The sandbox being fitted to this host, on a thread of its own: probing it starts helper
/// processes, which overlap with listing and keying the lanes instead of adding to them.
type Fitting = std::thread::JoinHandle<Result<lanes_exec::sandbox::Fitted, String>>;

/// Starts fitting the sandbox that hides the repository and the cache from steps.
fn start_sandbox(workspace: &Workspace, cache_root: &Path) -> Fitting {
    let helper = std::env::current_exe();
    let mut hide = workspace.repo.dirs();
    hide.push(cache_root.to_owned());
    // `lanes run` runs the user's own code as the user: no step identity, the same namespaces,
    // limits and restore rules as the forge.
    std::thread::spawn(move || {
        let helper = helper.map_err(|e| format!("cannot find the lanes binary: {e}"))?;
        Sandbox::new(helper, hide).fit()
    })
}

/// The sandbox [`start_sandbox`] fitted, or `None` with a warning when this machine cannot make
/// one.
fn sandbox(fitting: Fitting, printer: &Printer) -> Option<Sandbox> {
    let fitted = fitting
        .join()
        .unwrap_or_else(|_| Err("probing the sandbox panicked".to_owned()));
    match fitted {
        Ok(fitted) => {
            for lost in &fitted.lost {
                printer.err(&format!("warning: the step sandbox has {lost}\n"));
            }
            Some(fitted.sandbox)
        }
        Err(why) => {
            printer.err(&format!(
                "warning: steps run without a sandbox ({why}): a step can read files outside \
                 its lane's fileset by absolute path\n  help: lanes hides the repository with \
                 a mount namespace; allow user namespaces for this user (sysctl \
                 user.max_user_namespaces), or pass --no-sandbox to run without it and \
                 silence this warning\n"
            ));
            None
        }
    }
}

/// `lanes run` takes a lane's secrets from its own environment, by name.
fn secrets_from_env(lane: &lanes_core::Lane) -> BTreeMap<String, Result<String, String>> {
    lane.secrets
        .iter()
        .map(|name| {
            let value = std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("`{name}` is not set in the environment of `lanes run`"));
            (name.clone(), value)
        })
        .collect()
}

enum Message {
    Event(usize, Event),
    Done(usize, LaneResult, Option<Slot>),
}

/// One lane of the run set.
struct Planned {
    /// Index in the catalog.
    lane: usize,
    fingerprints: Vec<StepFingerprint>,
}

pub(crate) fn run(dir: &Path, args: &RunArgs, printer: &Printer) -> Result<u8, CliError> {
    let run_started = Instant::now();
    let started_at = jiff::Timestamp::now();
    let workspace = Workspace::open(dir, args.revision.head.as_deref())?;
    let catalog = workspace.catalog()?;
    let (base, selection) = choose(&workspace, &catalog, args)?;
    // A repository without a commit yet can still run named lanes (or --all) on its files.
    let head = match &workspace.head {
        Some(head) => head.as_str().to_owned(),
        None => workspace
            .repo
            .resolve("HEAD")
            .map(|h| h.as_str().to_owned())
            .unwrap_or_default(),
    };

    let cache_root = cache_dir()?;
    let fitting = (!args.no_sandbox).then(|| start_sandbox(&workspace, &cache_root));
    let store = LocalStore::open(&cache_root).map_err(|e| {
        CliError::environment(
            format!("cannot use the cache directory: {e}"),
            "set LANES_CACHE_DIR to a directory lanes may write to".to_owned(),
        )
    })?;
    let run_id = new_run_id(started_at);
    let _registration = store.register_run(&run_id).map_err(|e| {
        CliError::environment(
            format!("cannot register the run in the cache: {e}"),
            None::<String>,
        )
    })?;
    if let Some(workdir) = workspace.repo.workdir()
        && cache_root.starts_with(workdir)
    {
        printer.err(&format!(
            "warning: the cache directory {} is inside the repository, and so are the lane \
             directories: unless git ignores it, its files become lane inputs, and without the \
             sandbox git in a step finds this repository; set LANES_CACHE_DIR to a directory \
             outside it\n",
            cache_root.display()
        ));
    }
    let run_dir = cache_root.join("runs").join(&run_id);
    let io = |what: &str, path: &Path, e: std::io::Error| {
        CliError::environment(
            format!("cannot {what} {}: {e}", path.display()),
            None::<String>,
        )
    };
    std::fs::create_dir_all(&run_dir).map_err(|e| io("create", &run_dir, e))?;
    prune_runs(&cache_root.join("runs"), &run_id);

    // Keys of every lane that will run, from one listing of the files.
    let index: BTreeMap<&str, usize> = catalog
        .lanes
        .iter()
        .enumerate()
        .map(|(i, l)| (l.name.as_str(), i))
        .collect();
    let run_set: Vec<usize> = selection
        .selected()
        .map(|l| index[l.name.as_str()])
        .collect();
    // Pins before anything else: a lane whose pin does not match this host gets no keys, so
    // it restores and records nothing under keys that claim the pinned value.
    let mut mismatched: BTreeMap<usize, PinCheck> = run_set
        .iter()
        .filter_map(|&i| {
            check_lane_pins(&catalog, &catalog.lanes[i])
                .err()
                .map(|check| (i, check))
        })
        .collect();
    let files = Arc::new(if run_set.is_empty() {
        Vec::new()
    } else {
        workspace.files()?
    });
    // Every lane's input digest in one pass over the files.
    let digests = fileset::lane_digests(&catalog, &files);
    let planned: Vec<Planned> = run_set
        .iter()
        .map(|&i| Planned {
            lane: i,
            fingerprints: if mismatched.contains_key(&i) {
                Vec::new()
            } else {
                step_fingerprints(&catalog, &catalog.lanes[i], &digests[i])
            },
        })
        .collect();

    let position: BTreeMap<usize, usize> =
        run_set.iter().enumerate().map(|(p, &i)| (i, p)).collect();
    let groups: Vec<&String> = catalog.groups.keys().collect();
    let plan_lanes = run_set
        .iter()
        .map(|&i| {
            let lane = &catalog.lanes[i];
            PlanLane {
                needs: lane
                    .needs
                    .iter()
                    .filter_map(|n| position.get(&index[n.as_str()]).copied())
                    .collect(),
                group: lane
                    .concurrency
                    .as_ref()
                    .and_then(|g| groups.iter().position(|x| *x == g)),
            }
        })
        .collect();
    let limits = groups.iter().map(|g| catalog.groups[*g].limit).collect();
    let jobs = args.jobs.map(|j| j as usize).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let mut plan = Plan::new(plan_lanes, limits, jobs);

    let sandbox = match fitting {
        Some(fitting) if !run_set.is_empty() => sandbox(fitting, printer),
        _ => None,
    };

    let cancel = Cancel::new();
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, cancel.flag()).map_err(|e| {
            CliError::environment(format!("cannot handle signals: {e}"), None::<String>)
        })?;
    }

    let width = run_set
        .iter()
        .map(|&i| catalog.lanes[i].name.len())
        .max()
        .unwrap_or(4);
    let mut progress = Progress::new(run_set.len(), width);
    progress.line(&header(&workspace, &base, &selection, &run_set, &run_id));

    let mut results: Vec<Option<LaneResult>> = vec![None; run_set.len()];
    let mut extra: Vec<Vec<Reason>> = vec![Vec::new(); run_set.len()];
    let mut cancelled: Vec<bool> = vec![false; run_set.len()];
    let mut errors: Vec<Option<JobReason>> = vec![None; run_set.len()];
    let (tx, rx) = mpsc::channel::<Message>();
    let mut stopped = false;
    let mut abandoned_on_cancel = false;
    let mut threads = Vec::new();
    loop {
        if cancel.is_cancelled() && !abandoned_on_cancel {
            abandoned_on_cancel = true;
            progress.note("cancelling: stopping running steps");
            progress.line("cancelled: stopping running steps");
            for p in plan.abandon() {
                cancelled[p] = true;
                extra[p].push(Reason::RunCancelled);
                progress.lane_done(p);
            }
        }
        if !stopped && !cancel.is_cancelled() {
            while let Some(p) = plan.start() {
                let lane = &catalog.lanes[planned[p].lane];
                if let Some(check) = mismatched.remove(&planned[p].lane) {
                    errors[p] = Some(check.reason());
                    let result = LaneResult {
                        status: Status::Error,
                        duration: Duration::ZERO,
                        lock_wait: Duration::ZERO,
                        steps: Vec::new(),
                        error: Some(check.message()),
                    };
                    // The main loop reads until every lane it started is done: nobody else waits for it.
                    let _ = tx.send(Message::Done(p, result, None));
                    continue;
                }
                progress.lane_status(p, &lane.name, "starting");
                let slot = match take_slot(&cache_root, &lane.name) {
                    Ok(slot) => slot,
                    Err(e) => return Err(io("lock a lane directory in", &cache_root, e)),
                };
                let logs = run_dir.join("logs").join(&lane.name);
                std::fs::create_dir_all(&logs).map_err(|e| io("create", &logs, e))?;
                let events_tx = tx.clone();
                let cx = LaneContext {
                    store: store.clone(),
                    slot: slot.path.clone(),
                    logs,
                    mounts: mounts_dir(&cache_root, lane.scope.as_deref()),
                    env: base_env(&head, &run_id),
                    lookup: !args.no_cache,
                    cancel: cancel.clone(),
                    grace: DEFAULT_GRACE,
                    stream: args.verbose,
                    events: Arc::new(move |event| {
                        // Late events after the run ended are read below, or not wanted.
                        let _ = events_tx.send(Message::Event(p, event));
                    }),
                    sandbox: sandbox.clone(),
                    history: None,
                    secrets: secrets_from_env(lane),
                };
                let fileset = RepoFileset::new(
                    workspace.repo.clone(),
                    Arc::clone(&files),
                    lane,
                    digests[planned[p].lane].clone(),
                );
                let lane = lane.clone();
                let fingerprints = planned[p].fingerprints.clone();
                let done_tx = tx.clone();
                threads.push(std::thread::spawn(move || {
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        lanes_exec::run_lane(&lane, &fingerprints, &fileset, &cx)
                    }))
                    .unwrap_or_else(|_| LaneResult {
                        status: Status::Failed,
                        duration: Duration::ZERO,
                        lock_wait: Duration::ZERO,
                        steps: Vec::new(),
                        error: Some("internal error: the lane's thread panicked".to_owned()),
                    });
                    // The main loop reads until every lane it started is done: nobody else waits for it.
                    let _ = done_tx.send(Message::Done(p, result, Some(slot)));
                }));
            }
        }
        if plan.is_done() {
            break;
        }
        let message = match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(m) => m,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        match message {
            Message::Event(p, event) => {
                let lane = &catalog.lanes[planned[p].lane];
                show_event(&mut progress, p, lane, &event);
            }
            Message::Done(p, result, slot) => {
                // The lane's directory is free for the next run of the lane.
                drop(slot);
                let lane = &catalog.lanes[planned[p].lane];
                progress.lane_done(p);
                progress.line(&lane_line(lane, &result));
                if result.status == Status::Error {
                    progress.line(&format!(
                        "{}: help: install what the pin expects (`lanes doctor` checks this \
                         host, `lanes doctor --ensure` runs a pin's `ensure`), or change its \
                         `expect`",
                        lane.name
                    ));
                }
                let passed = result.status.is_success();
                for skip in plan.finish(p, passed) {
                    let need = &catalog.lanes[planned[skip.need].lane].name;
                    extra[skip.lane].push(Reason::NeedFailed { lane: need.clone() });
                    progress.line(&format!(
                        "{}: skipped, needs {need}, which did not pass",
                        catalog.lanes[planned[skip.lane].lane].name
                    ));
                }
                if !passed
                    && lane.class == LaneClass::Required
                    && !args.keep_going
                    && !stopped
                    && !cancel.is_cancelled()
                {
                    stopped = true;
                    for q in plan.abandon() {
                        extra[q].push(Reason::StoppedAfterFailure {
                            lane: lane.name.clone(),
                        });
                        progress.lane_done(q);
                    }
                }
                results[p] = Some(result);
            }
        }
    }
    for thread in threads {
        // A lane thread that panicked already said so as its lane's result.
        let _ = thread.join();
    }
    // Lanes that finished after the plan was done may still have queued their last events.
    while let Ok(Message::Event(p, event)) = rx.try_recv() {
        show_event(&mut progress, p, &catalog.lanes[planned[p].lane], &event);
    }
    progress.finish();

    // The report: every lane of the catalog, in catalog order.
    let was_cancelled = cancel.is_cancelled();
    let lanes: Vec<LaneReport> = selection
        .lanes
        .iter()
        .zip(&catalog.lanes)
        .enumerate()
        .map(|(i, (selected, lane))| {
            let mut reasons = selected.reasons.clone();
            let Some(&p) = position.get(&i) else {
                return LaneReport {
                    name: lane.name.clone(),
                    class: lane.class,
                    status: Status::Skipped,
                    reasons,
                    duration_ms: 0,
                    lock_wait_ms: 0,
                    steps: Vec::new(),
                    error: None,
                };
            };
            reasons.append(&mut extra[p]);
            let error = errors[p].take();
            match results[p].take() {
                Some(result) => LaneReport {
                    name: lane.name.clone(),
                    class: lane.class,
                    status: result.status,
                    reasons,
                    duration_ms: millis(result.duration),
                    lock_wait_ms: millis(result.lock_wait),
                    steps: result.steps,
                    error,
                },
                None => LaneReport {
                    name: lane.name.clone(),
                    class: lane.class,
                    status: if cancelled[p] {
                        Status::Cancelled
                    } else {
                        Status::Skipped
                    },
                    reasons,
                    duration_ms: 0,
                    lock_wait_ms: 0,
                    steps: Vec::new(),
                    error,
                },
            }
        })
        .collect();
    // A required lane that could not run because a lane it needs failed (even an advisory one)
    // fails the run too: its check would otherwise pass without having run.
    let required_failed = lanes.iter().any(|l| {
        l.class == LaneClass::Required
            && (matches!(
                l.status,
                Status::Failed
                    | Status::TimedOut
                    | Status::Cancelled
                    | Status::OomKilled
                    | Status::Error
            ) || l
                .reasons
                .iter()
                .any(|r| matches!(r, Reason::NeedFailed { .. })))
    });
    let status = if was_cancelled {
        "cancelled"
    } else if required_failed {
        "failed"
    } else {
        "passed"
    };
    let report = Report {
        version: REPORT_VERSION,
        run_id: run_id.clone(),
        base: base.map(|b| b.as_str().to_owned()),
        head: workspace.head.as_ref().map(|h| h.as_str().to_owned()),
        started_at: started_at.to_string(),
        duration_ms: millis(run_started.elapsed()),
        status,
        lanes,
    };

    let (hits, misses, saved_ms, ran_ms) = tally(&report.lanes);
    if let Err(e) = store.record_run(&RunEvent {
        run_id: run_id.clone(),
        finished_at_ms: unix_millis(SystemTime::now()),
        hits,
        misses,
        saved_ms,
        ran_ms,
    }) {
        printer.err(&format!(
            "warning: the run was not counted in the cache statistics: {e}\n"
        ));
    }
    let json = serde_json::to_string_pretty(&report).expect("a report always serializes") + "\n";
    let report_path = run_dir.join("report.json");
    std::fs::write(&report_path, &json).map_err(|e| io("write", &report_path, e))?;
    if let Some(path) = &args.report {
        let path = dir.join(path);
        std::fs::write(&path, &json).map_err(|e| {
            // `--report` into a directory that does not exist is a typo in the flag.
            if e.kind() == std::io::ErrorKind::NotFound {
                CliError::usage(
                    format!("cannot write {}: {e}", path.display()),
                    "give --report a path in an existing directory".to_owned(),
                )
            } else {
                io("write", &path, e)
            }
        })?;
    }
    printer.out(&summary(&report, &report_path))?;
    Ok(if required_failed || was_cancelled {
        exit::FAILED
    } else {
        exit::SUCCESS
    })
}

/// The base commit (when there is one) and which lanes run.
fn choose(
    workspace: &Workspace,
    catalog: &Catalog,
    args: &RunArgs,
) -> Result<(Option<lanes_git::CommitId>, lanes_core::Selection), CliError> {
    let repo = &workspace.repo;
    let base_rev = args.base.as_deref().filter(|b| !b.is_empty());
    let needs_base = args.lanes.is_empty() && !args.all;
    let base = match base_rev {
        Some(rev) => Some(repo.resolve(rev)?),
        None if needs_base => Some(repo.resolve(&repo.default_base()?)?),
        // The base only labels the report when lanes are named or `--all` is given.
        None => repo.default_base().ok().and_then(|b| repo.resolve(&b).ok()),
    };
    if !args.lanes.is_empty() {
        return Ok((base, requested(catalog, &args.lanes)?));
    }
    if args.all {
        return Ok((base, lanes_core::select(catalog, Trigger::All)));
    }
    let base_commit = base
        .clone()
        .expect("a base is resolved when selecting by change");
    let head = workspace.head_commit()?;
    let merge_base = repo.merge_base(&base_commit, &head)?;
    let changed = workspace.changed_since(&merge_base)?;
    let selection = lanes_core::select(
        catalog,
        Trigger::Changed {
            paths: &changed,
            catalog_path: CATALOG_PATH,
        },
    );
    Ok((base, selection))
}

/// The named lanes and everything they need.
fn requested(catalog: &Catalog, names: &[String]) -> Result<lanes_core::Selection, CliError> {
    let mut reasons: BTreeMap<&str, Vec<Reason>> = BTreeMap::new();
    let mut stack: Vec<&str> = Vec::new();
    for name in names {
        if catalog.lane(name).is_none() {
            let all: Vec<&str> = catalog.lanes.iter().map(|l| l.name.as_str()).collect();
            return Err(CliError::usage(
                format!("no lane `{name}` in the catalog"),
                format!("lanes: {}", all.join(", ")),
            ));
        }
        let entry = reasons.entry(name.as_str()).or_default();
        if !entry.contains(&Reason::Requested) {
            entry.push(Reason::Requested);
            stack.push(name);
        }
    }
    while let Some(name) = stack.pop() {
        let lane = catalog.lane(name).expect("only known lanes are stacked");
        for need in &lane.needs {
            let entry = reasons.entry(need.as_str()).or_default();
            let reason = Reason::NeededBy {
                lane: name.to_owned(),
            };
            if entry.is_empty() {
                stack.push(need);
            }
            if !entry.contains(&reason) {
                entry.push(reason);
            }
        }
    }
    Ok(lanes_core::Selection {
        lanes: catalog
            .lanes
            .iter()
            .map(|lane| {
                let found = reasons.remove(lane.name.as_str());
                LaneSelection {
                    name: lane.name.clone(),
                    class: lane.class,
                    selected: found.is_some(),
                    reasons: found.unwrap_or_else(|| vec![Reason::NotRequested]),
                }
            })
            .collect(),
    })
}

/// `20261122T101500Z-1a2b3c`: sortable by time, unique per process.
fn new_run_id(at: jiff::Timestamp) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&std::process::id().to_le_bytes());
    hasher.update(&at.as_nanosecond().to_le_bytes());
    let random = hasher.finalize().to_hex();
    format!("{}-{}", at.strftime("%Y%m%dT%H%M%SZ"), &random[..6])
}

/// Keep the logs and reports of the last [`KEEP_RUNS`] runs.
fn prune_runs(runs: &Path, current: &str) {
    let Ok(entries) = std::fs::read_dir(runs) else {
        return;
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n != current)
        .collect();
    names.sort();
    let excess = names.len().saturating_sub(KEEP_RUNS);
    for name in &names[..excess] {
        // Old run directories only take room; the next run prunes them again.
        let _ = std::fs::remove_dir_all(runs.join(name));
    }
}

fn header(
    workspace: &Workspace,
    base: &Option<lanes_git::CommitId>,
    selection: &lanes_core::Selection,
    run_set: &[usize],
    run_id: &str,
) -> String {
    let head = match &workspace.head {
        Some(h) => format!("{h:.12}"),
        None => "working tree".to_owned(),
    };
    let base = base
        .as_ref()
        .map(|b| format!("base {b:.12}, "))
        .unwrap_or_default();
    format!(
        "run {run_id}: {base}head {head}: {} of {} lanes to run",
        run_set.len(),
        selection.lanes.len()
    )
}

fn show_event(progress: &mut Progress, p: usize, lane: &lanes_core::Lane, event: &Event) {
    match event {
        Event::StepStarted { index, .. } => {
            progress.lane_status(p, &lane.name, &lane.steps[*index].name);
            progress.line(&format!(
                "{}/{}: started",
                lane.name, lane.steps[*index].name
            ));
        }
        Event::StepFinished { index, result } => {
            progress.line(&step_line(lane, result));
            if matches!(
                result.status,
                Status::Failed | Status::TimedOut | Status::OomKilled
            ) {
                progress.raw(&tail(&result.log, 50));
            }
            if let Some(next) = lane.steps.get(index + 1) {
                progress.lane_status(p, &lane.name, &next.name);
            }
        }
        Event::Materialized {
            files,
            bytes,
            duration,
        } => {
            progress.line(&format!(
                "{}: lane directory written: {files} {}, {:.1} MB in {} ms",
                lane.name,
                if *files == 1 { "file" } else { "files" },
                *bytes as f64 / 1e6,
                duration.as_millis()
            ));
        }
        Event::WaitingForMount { name } => {
            progress.lane_status(p, &lane.name, &format!("waiting for cache mount {name}"));
            progress.line(&format!(
                "{}: waiting for the cache mount `{name}`, held by another lane",
                lane.name
            ));
        }
        Event::Output { index, line } => {
            progress.raw(&format!(
                "{}/{} | {line}\n",
                lane.name, lane.steps[*index].name
            ));
        }
        Event::Warning(text) => progress.line(&format!("warning: {text}")),
    }
}

fn seconds(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

fn step_line(lane: &lanes_core::Lane, step: &StepResult) -> String {
    let name = format!("{}/{}", lane.name, step.name);
    match step.status {
        Status::Cached => format!("{name}: cached (saved {})", seconds(step.saved_ms)),
        Status::Passed => format!("{name}: passed in {}", seconds(step.duration_ms)),
        Status::Failed => match step.exit_code {
            Some(code) => format!(
                "{name}: FAILED with exit code {code} after {}; log: {}",
                seconds(step.duration_ms),
                step.log.display()
            ),
            None => format!("{name}: FAILED; log: {}", step.log.display()),
        },
        Status::TimedOut => format!(
            "{name}: TIMED OUT after {}; log: {}",
            seconds(step.duration_ms),
            step.log.display()
        ),
        Status::OomKilled => format!(
            "{name}: OOM-KILLED (over its memory limit) after {}; log: {}",
            seconds(step.duration_ms),
            step.log.display()
        ),
        Status::Cancelled => format!("{name}: cancelled after {}", seconds(step.duration_ms)),
        Status::Skipped => format!("{name}: skipped"),
        Status::Error => format!("{name}: error"),
    }
}

fn lane_line(lane: &lanes_core::Lane, result: &LaneResult) -> String {
    lanes_engine::summary::lane_summary(&lane.name, result)
}

/// The last `n` lines of a log file.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    let mut out = String::new();
    if start > 0 {
        let _ = writeln!(out, "    ... {start} earlier lines in {}", path.display());
    }
    for line in &lines[start..] {
        let _ = writeln!(out, "    | {line}");
    }
    out
}

/// Hits, misses (steps that ran with the cache on), time saved, time spent running.
fn tally(lanes: &[LaneReport]) -> (u64, u64, u64, u64) {
    let steps = lanes.iter().flat_map(|l| &l.steps);
    let (mut hits, mut misses, mut saved, mut ran) = (0, 0, 0, 0);
    for step in steps {
        match step.cache {
            lanes_exec::CacheUse::Hit => {
                hits += 1;
                saved += step.saved_ms;
            }
            // A step cancelled or skipped before it started was never looked up.
            _ if !started(step) => {}
            lanes_exec::CacheUse::Miss => {
                misses += 1;
                ran += step.duration_ms;
            }
            _ => ran += step.duration_ms,
        }
    }
    (hits, misses, saved, ran)
}

/// Whether a step ran (or was restored), as opposed to being skipped or cancelled before it
/// started.
fn started(step: &StepResult) -> bool {
    match step.status {
        Status::Skipped => false,
        Status::Cancelled => step.duration_ms > 0 || step.exit_code.is_some(),
        _ => true,
    }
}

fn summary(report: &Report, report_path: &Path) -> String {
    let shown: Vec<&LaneReport> = report
        .lanes
        .iter()
        .filter(|l| !l.steps.is_empty() || l.status != Status::Skipped || is_runtime_skip(l))
        .collect();
    let width = shown.iter().map(|l| l.name.len()).max().unwrap_or(4).max(4);
    let mut out = String::new();
    if !shown.is_empty() {
        let _ = writeln!(
            out,
            "{:width$}  {:8}  {:9}  {:>8}  {:>10}  {:>8}",
            "lane", "class", "status", "duration", "run/cached", "saved"
        );
    }
    for lane in &shown {
        let (ran, cached) = lanes_engine::summary::ran_and_cached(&lane.steps);
        let saved: u64 = lane.steps.iter().map(|s| s.saved_ms).sum();
        let _ = writeln!(
            out,
            "{:width$}  {:8}  {:9}  {:>8}  {:>10}  {:>8}",
            lane.name,
            lane.class.as_str(),
            lane.status.as_str(),
            seconds(lane.duration_ms),
            format!("{ran}/{cached}"),
            seconds(saved),
        );
        if let Some(JobReason::PinMismatch {
            pin,
            expected,
            found,
        }) = &lane.error
        {
            let _ = writeln!(
                out,
                "{:width$}  (pin {pin}: expected `{expected}`, found `{found}`)",
                ""
            );
        } else if lane.steps.is_empty()
            && let Some(reason) = lane.reasons.last()
        {
            let _ = writeln!(out, "{:width$}  ({})", "", describe(reason));
        }
    }
    let not_selected = report.lanes.len() - shown.len();
    if not_selected > 0 {
        let lanes = if not_selected == 1 { "lane" } else { "lanes" };
        let _ = writeln!(
            out,
            "{not_selected} {lanes} not selected (see the report for reasons)"
        );
    }
    let saved: u64 = report
        .lanes
        .iter()
        .flat_map(|l| &l.steps)
        .map(|s| s.saved_ms)
        .sum();
    let _ = writeln!(
        out,
        "run {} {} in {} (saved {}); report: {}",
        report.run_id,
        report.status,
        seconds(report.duration_ms),
        seconds(saved),
        report_path.display()
    );
    out
}

fn is_runtime_skip(lane: &LaneReport) -> bool {
    lane.reasons.iter().any(|r| {
        matches!(
            r,
            Reason::NeedFailed { .. } | Reason::StoppedAfterFailure { .. } | Reason::RunCancelled
        )
    })
}
