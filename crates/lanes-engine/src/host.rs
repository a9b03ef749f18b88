//! What this machine puts into a lane's step keys and its steps' environment, and whether it
//! matches the pins a lane asks for.
//!
//! `lanes run`, `lanes fingerprint` and the forge's agents all take the host's part from here,
//! so a laptop and an agent on the same machine compute the same keys for the same commit and
//! share one step cache. The keys themselves are made by `lanes_core::fingerprint`; this module
//! only reads the platform and the invoking environment for it.
//!
//! A pin's `expect` is keyed, so a host whose tool prints something else must not run, restore
//! or record the lane: [`check_lane_pins`] runs each pin's command here before anything else
//! happens to the lane, and a lane that gets past it has host values equal to the keyed ones.

use lanes_core::catalog::Pin;
use lanes_core::fingerprint::{Host, lane_fingerprints};
use lanes_core::job::JobReason;
use lanes_core::{Catalog, Digest, FileEntry, Lane, StepFingerprint, fileset};
use rustix::process::{Pid, Signal, kill_process_group};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError, mpsc};
use std::time::{Duration, Instant};

/// `os-arch` of this machine, as it goes into keys.
pub fn platform() -> String {
    format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH)
}

/// The fingerprints of `lane`'s steps for the input digest `digest`, on this machine (its
/// platform, and the `pass-env` variables of this process's environment).
pub fn step_fingerprints(catalog: &Catalog, lane: &Lane, digest: &Digest) -> Vec<StepFingerprint> {
    let platform = platform();
    let env = |name: &str| std::env::var(name).ok();
    lane_fingerprints(
        catalog,
        lane,
        digest,
        Host {
            platform: &platform,
            env: &env,
        },
    )
}

/// A lane's keys, as `lanes run` computes them on this machine.
#[derive(Debug)]
pub struct LaneKeys<'f> {
    /// The lane's input files, sorted by path.
    pub inputs: Vec<&'f FileEntry>,
    /// Their digest.
    pub digest: Digest,
    /// Each step's fingerprint, in order.
    pub fingerprints: Vec<StepFingerprint>,
}

/// The keys of `lane` over `files` (every file of the commit or working tree, sorted by path).
pub fn lane_keys<'f>(catalog: &Catalog, lane: &Lane, files: &'f [FileEntry]) -> LaneKeys<'f> {
    let inputs = fileset::select(lane.inputs.as_deref(), files);
    let digest = fileset::digest(inputs.iter().copied());
    let fingerprints = step_fingerprints(catalog, lane, &digest);
    LaneKeys {
        inputs,
        digest,
        fingerprints,
    }
}

/// The environment every step starts from: `PATH` from this process, `LANG=C.UTF-8`,
/// `CI=true`, `LANES_COMMIT` and `LANES_RUN_ID`. Nothing else is inherited.
pub fn base_env(commit: &str, run_id: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert(
        "PATH".to_owned(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".to_owned()),
    );
    env.insert("LANG".to_owned(), "C.UTF-8".to_owned());
    env.insert("CI".to_owned(), "true".to_owned());
    env.insert("LANES_COMMIT".to_owned(), commit.to_owned());
    env.insert("LANES_RUN_ID".to_owned(), run_id.to_owned());
    env
}

/// How long a pin's command may take. Printing a version is quick; one that hangs (a tool
/// waiting for a licence prompt) must not hold the lane for its whole timeout.
pub const PIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The most of a pin command's stdout and stderr kept: a version is one line.
const PIN_OUTPUT_LIMIT: usize = 64 * 1024;

/// One pin held against this host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PinCheck {
    /// The pin's name.
    pub pin: String,
    /// Its command.
    pub command: String,
    /// Its `expect`.
    pub expected: String,
    /// What the command printed on stdout, trimmed; or, when it printed nothing usable, why,
    /// in parentheses (`(exit code 127: sh: 1: xcodebuild: not found)`).
    pub found: String,
    /// `found == expected`.
    pub ok: bool,
}

impl PinCheck {
    /// What the lane's log and error say about a mismatch.
    pub fn message(&self) -> String {
        format!(
            "pin `{}` does not match this host: expected `{}`, found `{}` (from `{}`)",
            self.pin, self.expected, self.found, self.command
        )
    }

    /// The job reason of a lane this pin stopped.
    pub fn reason(&self) -> JobReason {
        JobReason::PinMismatch {
            pin: self.pin.clone(),
            expected: self.expected.clone(),
            found: self.found.clone(),
        }
    }
}

/// Values that matched their pin, by command. Matching is checked once per process: a
/// toolchain does not change under a running agent often enough to pay for a process per
/// lane. A mismatch is not kept, so a host fixed meanwhile (`lanes doctor --ensure`) is seen
/// at the next lane without a restart.
fn matched() -> &'static Mutex<BTreeMap<String, String>> {
    static MATCHED: OnceLock<Mutex<BTreeMap<String, String>>> = OnceLock::new();
    MATCHED.get_or_init(Default::default)
}

/// Holds every pin `lane` uses against this host, in the lane's order, and returns the first
/// that does not match. Runs each command at most once per process while it matches.
pub fn check_lane_pins(catalog: &Catalog, lane: &Lane) -> Result<(), PinCheck> {
    for name in &lane.pins {
        // Parsing resolved every pin a lane names.
        let Some(pin) = catalog.pins.get(name) else {
            continue;
        };
        let check = check_pin(name, pin, true);
        if !check.ok {
            return Err(check);
        }
    }
    Ok(())
}

/// Holds `pin` against this host: from the values seen matching earlier in this process when
/// `cached`, else by running its command now.
pub fn check_pin(name: &str, pin: &Pin, cached: bool) -> PinCheck {
    let known = cached
        .then(|| {
            matched()
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&pin.command)
                .cloned()
        })
        .flatten();
    let found = match known {
        Some(found) => found,
        None => {
            let found = match run_pin_command(&pin.command, &pin.pass_env, PIN_TIMEOUT) {
                Ok(printed) => printed,
                Err(why) => format!("({why})"),
            };
            if found == pin.expect {
                matched()
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(pin.command.clone(), found.clone());
            }
            found
        }
    };
    PinCheck {
        pin: name.to_owned(),
        command: pin.command.clone(),
        expected: pin.expect.clone(),
        ok: found == pin.expect,
        found,
    }
}

/// Runs a pin's `ensure` command as `sh -c` with the caller's own environment and directory
/// (an installer needs the operator's `HOME` and credentials, unlike a version check), without
/// a timeout (an install takes what it takes), its output going to our stderr so that stdout
/// stays the caller's; `Err` says why it did not succeed.
pub fn run_ensure(command: &str) -> Result<(), String> {
    let status = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .status()
        .map_err(|e| format!("cannot start sh: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(ended(status))
    }
}

/// An empty directory for a pin command to run in and use as `HOME` and `TMPDIR`, removed
/// when dropped: a pin sees the same clean environment a step does, so it answers for the
/// tools a step will find, not for the invoking user's dotfiles.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> std::io::Result<Scratch> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "lanes-pin-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(dir.join("home"))?;
        std::fs::create_dir_all(dir.join("tmp"))?;
        Ok(Scratch(dir))
    }

    /// A step's environment without the run's own variables (they would make one host's
    /// answer differ from run to run): `PATH`, `LANG`, `CI`, `HOME`, `TMPDIR`; the pin's
    /// `pass-env` is added by the caller.
    fn env(&self) -> BTreeMap<String, String> {
        let mut env = base_env("", "");
        env.retain(|name, _| !name.starts_with("LANES_"));
        env.insert("HOME".to_owned(), path_string(&self.0.join("home")));
        env.insert("TMPDIR".to_owned(), path_string(&self.0.join("tmp")));
        env
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // A scratch directory left behind takes room, nothing else: the next one is new.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn path_string(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Runs `sh -c command` in a scratch directory for at most `timeout`; its stdout, trimmed, or
/// why it gave none.
fn run_pin_command(
    command: &str,
    pass_env: &[String],
    timeout: Duration,
) -> Result<String, String> {
    let scratch = Scratch::new().map_err(|e| format!("cannot create a scratch directory: {e}"))?;
    let mut env = scratch.env();
    for name in pass_env {
        if let Ok(value) = std::env::var(name) {
            env.insert(name.clone(), value);
        }
    }
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(&scratch.0)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start sh: {e}"))?;
    let group = Pid::from_child(&child);
    let (tx, rx) = mpsc::channel();
    let pipes: [Option<Box<dyn Read + Send>>; 2] = [
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    ];
    for (index, pipe) in pipes.into_iter().enumerate() {
        let Some(mut pipe) = pipe else { continue };
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            let mut buf = [0u8; 8192];
            // Read to the end even past the limit, so a chatty command never blocks on a
            // full pipe.
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let room = PIN_OUTPUT_LIMIT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
            // The receiver only goes when the command timed out: its output is not wanted.
            let _ = tx.send((index, kept));
        });
    }
    drop(tx);
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() >= deadline => break Err(()),
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                // Best effort on the way out: the error below is what counts.
                let _ = kill_process_group(group, Signal::KILL);
                let _ = child.wait();
                return Err(format!("cannot wait for sh: {e}"));
            }
        }
    };
    // Whatever the command left behind in its group would keep the pipes open; a group with
    // nobody left is already dead.
    let _ = kill_process_group(group, Signal::KILL);
    let status = match status {
        Ok(status) => status,
        Err(()) => {
            // Reaps the killed command; the timeout is the answer either way.
            let _ = child.wait();
            return Err(format!("no answer within {timeout:?}"));
        }
    };
    let mut outputs = [Vec::new(), Vec::new()];
    while let Ok((index, bytes)) = rx.recv_timeout(Duration::from_secs(1)) {
        outputs[index] = bytes;
    }
    let [stdout, stderr] = outputs;
    if status.success() {
        return Ok(String::from_utf8_lossy(&stdout).trim().to_owned());
    }
    let stderr = String::from_utf8_lossy(&stderr);
    match stderr.trim().lines().last() {
        Some(line) => Err(format!("{}: {}", ended(status), line.trim())),
        None => Err(ended(status)),
    }
}

fn ended(status: std::process::ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "ended without an exit code".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(command: &str, expect: &str) -> Pin {
        Pin {
            command: command.to_owned(),
            expect: expect.to_owned(),
            ensure: None,
            pass_env: Vec::new(),
        }
    }

    #[test]
    fn a_pin_matches_the_trimmed_stdout_of_its_command() {
        let check = check_pin(
            "tool",
            &pin("echo '  tool 1.0  '; echo noise >&2", "tool 1.0"),
            false,
        );
        assert!(check.ok, "{check:?}");
        assert_eq!(check.found, "tool 1.0");
    }

    #[test]
    fn a_failing_command_is_a_mismatch_that_says_why() {
        let check = check_pin(
            "tool",
            &pin("echo tool 1.0; echo broken >&2; exit 3", "tool 1.0"),
            false,
        );
        assert!(!check.ok);
        assert_eq!(check.found, "(exit code 3: broken)");
        assert_eq!(
            check.reason().kind(),
            "pin-mismatch",
            "the job reason of the lane it stops"
        );
    }

    /// Whether process `pid` is gone (or a zombie waiting for its parent to reap it).
    fn gone(pid: &str) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z')),
        }
    }

    #[test]
    fn a_pin_command_that_does_not_answer_in_time_is_killed_with_its_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("pid");
        let command = format!("sleep 600 & echo $! > '{}'; sleep 600", pid_file.display());
        let found = run_pin_command(&command, &[], Duration::from_millis(300));
        assert_eq!(found, Err("no answer within 300ms".to_owned()));
        let pid = std::fs::read_to_string(&pid_file).expect("the command wrote its child's pid");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !gone(pid.trim()) {
            assert!(
                Instant::now() < deadline,
                "the background sleep {pid} survived"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn what_a_pin_command_leaves_running_does_not_hold_its_answer() {
        // The background sleep keeps stdout open after `sh` exits; the group is killed.
        let found = run_pin_command("echo tool 1.0; sleep 600 &", &[], PIN_TIMEOUT);
        assert_eq!(found, Ok("tool 1.0".to_owned()));
    }

    #[test]
    fn a_pin_command_sees_a_steps_clean_environment() {
        let check = check_pin(
            "env",
            &pin("echo \"$LANG $CI ${LANES_RUN_ID-unset}\"", ""),
            false,
        );
        assert_eq!(check.found, "C.UTF-8 true unset");
        let home = check_pin("home", &pin("ls -A \"$HOME\" | wc -l", "0"), false);
        assert!(home.ok, "HOME is an empty directory: {home:?}");
        // The value this process has (cargo and nextest set it when the test runs; a test binary
        // built in another copy of the sources has another one baked in).
        let manifest = std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
        let mut passed = pin("echo ${CARGO_MANIFEST_DIR-unset}", &manifest);
        assert_eq!(check_pin("unpassed", &passed, false).found, "unset");
        passed.pass_env = vec!["CARGO_MANIFEST_DIR".to_owned()];
        let check = check_pin("passed", &passed, false);
        assert!(check.ok, "pass-env reaches the command: {check:?}");
    }
}
