//! Real processes: exit codes, logs, clean environments, timeouts and cancellation that take the
//! whole process tree down.

use lanes_exec::{Cancel, Finished, Outcome, StepCommand, run};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A log that tests can read after the step.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().expect("lock").clone()).expect("utf-8")
    }
}

fn bash(dir: &Path, script: &str) -> StepCommand {
    StepCommand {
        argv: ["bash", "-eo", "pipefail", "-c", script]
            .map(String::from)
            .to_vec(),
        cwd: dir.to_owned(),
        env: BTreeMap::from([("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into())]),
        timeout: None,
        grace: Duration::from_millis(500),
        confine: None,
        mask: Default::default(),
    }
}

fn run_logged(command: &StepCommand, cancel: &Cancel) -> (Finished, String) {
    let log = Log::default();
    let finished = run(command, log.clone(), cancel).expect("runs");
    (finished, log.text())
}

/// Whether a process with this pid is still running (zombies count as gone).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

fn wait_gone(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn read_pid(path: &Path) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "no pid written to {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn exit_codes_and_output_are_recorded_line_by_line_with_timestamps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (finished, log) = run_logged(
        &bash(dir.path(), "echo out; echo err >&2; printf partial; exit 3"),
        &Cancel::new(),
    );
    assert_eq!(finished.outcome, Outcome::Exited(3));
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 3, "{log}");
    for line in &lines {
        let (stamp, _) = line.split_once("s] ").expect("timestamped");
        assert!(stamp.starts_with('[') && stamp.contains('.'), "{line}");
    }
    let bodies: Vec<&str> = lines
        .iter()
        .map(|l| l.split_once("s] ").expect("stamp").1)
        .collect();
    assert!(bodies.contains(&"out") && bodies.contains(&"err") && bodies.contains(&"partial"));
}

#[test]
fn pipefail_and_errexit_apply() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (finished, _) = run_logged(
        &bash(dir.path(), "false | true; echo unreachable"),
        &Cancel::new(),
    );
    assert_eq!(finished.outcome, Outcome::Exited(1));
}

#[test]
fn the_environment_is_exactly_the_one_given_and_stdin_is_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = bash(dir.path(), "env | sort; cat; pwd");
    command.env.insert("ONLY_THIS".into(), "1".into());
    let (finished, log) = run_logged(&command, &Cancel::new());
    assert!(finished.outcome.passed());
    let vars: Vec<&str> = log
        .lines()
        .map(|l| l.split_once("s] ").expect("stamp").1)
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    // bash itself sets PWD, SHLVL and _.
    assert_eq!(vars, ["ONLY_THIS", "PATH", "PWD", "SHLVL", "_"], "{log}");
    assert!(
        log.contains(&dir.path().display().to_string()),
        "runs in cwd: {log}"
    );
}

#[test]
fn a_timeout_kills_the_whole_process_tree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("grandchild.pid");
    let mut command = bash(
        dir.path(),
        "bash -c 'sleep 300 & echo $! > grandchild.pid; wait' & wait",
    );
    command.timeout = Some(Duration::from_millis(500));
    let (finished, _) = run_logged(&command, &Cancel::new());
    assert_eq!(finished.outcome, Outcome::TimedOut);
    let grandchild = read_pid(&pidfile);
    assert!(
        wait_gone(grandchild),
        "grandchild {grandchild} survived the timeout"
    );
}

#[test]
fn a_step_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = bash(
        dir.path(),
        "trap '' TERM; echo $$ > self.pid; while true; do sleep 0.05; done",
    );
    command.timeout = Some(Duration::from_millis(300));
    command.grace = Duration::from_millis(300);
    let (finished, _) = run_logged(&command, &Cancel::new());
    assert_eq!(finished.outcome, Outcome::TimedOut);
    assert!(wait_gone(read_pid(&dir.path().join("self.pid"))));
}

#[test]
fn processes_left_behind_by_a_finished_step_are_killed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (finished, _) = run_logged(
        &bash(dir.path(), "sleep 300 & echo $! > bg.pid; echo done"),
        &Cancel::new(),
    );
    assert!(finished.outcome.passed());
    let pid = read_pid(&dir.path().join("bg.pid"));
    assert!(wait_gone(pid), "background process {pid} outlived its step");
}

#[test]
fn cancelling_stops_the_step_and_its_children() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cancel = Cancel::new();
    let flag = cancel.clone();
    let pidfile = dir.path().join("child.pid");
    let watcher = {
        let pidfile = pidfile.clone();
        std::thread::spawn(move || {
            read_pid(&pidfile);
            flag.cancel();
        })
    };
    let (finished, _) = run_logged(
        &bash(dir.path(), "sleep 300 & echo $! > child.pid; wait"),
        &cancel,
    );
    watcher.join().expect("watcher");
    assert_eq!(finished.outcome, Outcome::Cancelled);
    assert!(wait_gone(read_pid(&pidfile)));
}

#[test]
fn a_missing_program_is_an_error_not_a_failed_step() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = bash(dir.path(), "true");
    command.argv[0] = "/no/such/shell".into();
    let err = run(&command, Log::default(), &Cancel::new()).expect_err("cannot start");
    assert!(
        err.to_string().contains("failed to start `/no/such/shell`"),
        "{err}"
    );
}
