//! One command, run to completion or killed with its whole process group.

use crate::cgroup::{Limits, StepGroup};
use crate::mask::Masker;
use crate::sandbox::{Confinement, Sandbox};
use rustix::process::{Pid, Signal, kill_process_group};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// What to run.
#[derive(Clone, Debug)]
pub struct StepCommand {
    /// Program and arguments, such as `["bash", "-eo", "pipefail", "-c", "make"]`.
    pub argv: Vec<String>,
    /// Working directory.
    pub cwd: PathBuf,
    /// The complete environment: nothing else is inherited.
    pub env: BTreeMap<String, String>,
    /// Kill the process group after this long.
    pub timeout: Option<Duration>,
    /// Time between SIGTERM and SIGKILL when a step is stopped.
    pub grace: Duration,
    /// The sandbox the step runs in, its place there and its limits; `None` runs `argv` as is.
    pub confine: Option<Confined>,
    /// Secret values masked in every line of the log before it is written.
    pub mask: Masker,
}

/// A step behind the sandbox boundary.
#[derive(Clone, Debug)]
pub struct Confined {
    /// The sandbox.
    pub sandbox: Sandbox,
    /// The step's place in it.
    pub confinement: Confinement,
    /// Its resource limits (applied when the sandbox has cgroups).
    pub limits: Limits,
}

/// How a step ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It exited with this code.
    Exited(i32),
    /// A signal it did not expect ended it.
    Signaled(i32),
    /// It ran past its timeout and was killed.
    TimedOut,
    /// It was cancelled and killed.
    Cancelled,
    /// The kernel killed it (or a process of it) for going over its memory limit.
    OomKilled,
}

impl Outcome {
    /// True for exit code 0.
    pub fn passed(self) -> bool {
        self == Outcome::Exited(0)
    }
}

/// The result of [`run`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finished {
    /// How it ended.
    pub outcome: Outcome,
    /// Wall time from spawn to exit.
    pub duration: Duration,
}

/// A flag that stops running steps when raised (Ctrl-C, a superseded run).
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A flag that is down.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Raise the flag: every step watching it is stopped.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// The flag itself, for a signal handler to raise.
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.0)
    }

    /// Whether the flag is raised.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Why a step could not be run at all (as opposed to running and failing).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The command line is empty.
    #[error("empty command line")]
    EmptyCommand,
    /// The program could not be started.
    #[error("failed to start `{program}`: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// Waiting for the process failed.
    #[error("failed to wait for the step: {0}")]
    Wait(std::io::Error),
    /// Writing the log failed.
    #[error("failed to write the step log: {0}")]
    Log(std::io::Error),
    /// The step's cgroup could not be made.
    #[error("failed to make the step's cgroup: {0}")]
    Cgroup(std::io::Error),
}

/// How often the waiting loop looks at the cancel flag and the deadline.
const TICK: Duration = Duration::from_millis(20);

/// Run `command`, writing its output to `log`, one timestamped line per output line.
pub fn run(
    command: &StepCommand,
    log: impl Write + Send + 'static,
    cancel: &Cancel,
) -> Result<Finished, ExecError> {
    if command.argv.is_empty() {
        return Err(ExecError::EmptyCommand);
    }
    // The cgroup exists before the step does, so nothing it starts is ever outside it.
    let step_group = match &command.confine {
        Some(Confined {
            sandbox:
                Sandbox {
                    cgroups: Some(hierarchy),
                    ..
                },
            limits,
            ..
        }) => Some(StepGroup::create(hierarchy, limits).map_err(ExecError::Cgroup)?),
        _ => None,
    };
    let argv = match &command.confine {
        Some(c) => c.sandbox.wrap(
            &c.confinement,
            &step_group
                .as_ref()
                .map(StepGroup::procs_files)
                .unwrap_or_default(),
            command.argv.clone(),
        ),
        None => command.argv.clone(),
    };
    let (program, args) = argv.split_first().ok_or(ExecError::EmptyCommand)?;
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .current_dir(&command.cwd)
        .env_clear()
        .envs(&command.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|source| ExecError::Spawn {
            program: program.clone(),
            source,
        })?;
    let group = Pid::from_child(&child);

    let log = Arc::new(Mutex::new(log));
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|stream| {
        let log = Arc::clone(&log);
        let mask = command.mask.clone();
        thread::spawn(move || copy_lines(stream, &log, &mask, started))
    })
    .collect();

    let (outcome, status) = wait(child, group, command, cancel, started)?;
    // Whatever the step started and left behind dies with it; this also closes the pipes the
    // leftovers might hold, so the readers finish. A group with nobody left is already dead.
    let _ = kill_process_group(group, Signal::KILL);
    let oom = step_group.as_ref().is_some_and(StepGroup::oom_killed);
    // Kills what left the process group (`setsid`) and removes the cgroup.
    drop(step_group);
    for reader in readers {
        reader
            .join()
            .expect("the log reader does not panic")
            .map_err(ExecError::Log)?;
    }
    let duration = started.elapsed();
    let outcome = outcome.or(oom.then_some(Outcome::OomKilled));
    let outcome = outcome.unwrap_or_else(|| match status.code() {
        Some(code) => Outcome::Exited(code),
        None => Outcome::Signaled(status.signal().unwrap_or(0)),
    });
    log.lock()
        .expect("log lock")
        .flush()
        .map_err(ExecError::Log)?;
    Ok(Finished { outcome, duration })
}

/// Wait for the child, stopping its group on timeout or cancellation. Returns the outcome when
/// lanes decided it (timed out, cancelled), and the exit status in every case.
fn wait(
    child: Child,
    group: Pid,
    command: &StepCommand,
    cancel: &Cancel,
    started: Instant,
) -> Result<(Option<Outcome>, ExitStatus), ExecError> {
    let (tx, rx) = mpsc::channel();
    let mut child = child;
    thread::spawn(move || {
        // The receiver only goes when the run returned early with an error: nobody to tell.
        let _ = tx.send(child.wait());
    });
    let mut stopped: Option<(Outcome, Instant)> = None;
    loop {
        match rx.recv_timeout(TICK) {
            Ok(status) => return Ok((stopped.map(|(o, _)| o), status.map_err(ExecError::Wait)?)),
            Err(RecvTimeoutError::Disconnected) => {
                return Err(ExecError::Wait(std::io::Error::other(
                    "the waiter thread stopped",
                )));
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        match stopped {
            None => {
                let why = if cancel.is_cancelled() {
                    Some(Outcome::Cancelled)
                } else if command.timeout.is_some_and(|t| started.elapsed() >= t) {
                    Some(Outcome::TimedOut)
                } else {
                    None
                };
                if let Some(why) = why {
                    // A group already gone has nothing to stop; the wait below sees it exit.
                    let _ = kill_process_group(group, Signal::TERM);
                    stopped = Some((why, Instant::now()));
                }
            }
            Some((_, at)) if at.elapsed() >= command.grace => {
                // As above: a group already gone needs no kill.
                let _ = kill_process_group(group, Signal::KILL);
            }
            Some(_) => {}
        }
    }
}

/// Copy `stream` into `log`, prefixing each line with the time since the step started and
/// masking secrets.
fn copy_lines(
    stream: Box<dyn Read + Send>,
    log: &Mutex<impl Write>,
    mask: &Masker,
    started: Instant,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        if line.last() != Some(&b'\n') {
            line.push(b'\n');
        }
        if !mask.is_empty() {
            line = mask.apply(&line);
        }
        let t = started.elapsed();
        let stamp = format!("[{:>4}.{:03}s] ", t.as_secs(), t.subsec_millis());
        let mut log = log.lock().expect("log lock");
        log.write_all(stamp.as_bytes())?;
        log.write_all(&line)?;
    }
}
