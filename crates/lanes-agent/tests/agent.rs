//! The agent end to end: a real git repository made with the `git` binary, real processes, a
//! real step cache in a temporary directory, and a recording forge (`Forge`) behind the `Link`
//! trait that hands out assignments, keeps the job log like the store does (appends at the
//! acknowledged offset) and can be told to reject heartbeats or fail appends.

use lanes_agent::{
    AgentConfig, AgentEnv, Assignment, CacheUse, FinishReport, HostStatus, JobEnd, Link, LinkError,
    Shutdown, StepRecord, Stop, run_agent, run_job,
};
use lanes_core::explain::MissKind;
use lanes_core::job::JobState;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A git repository in a temporary directory (lanes-testkit's), its commits made by the `git`
/// binary.
struct Git {
    repo: lanes_testkit::Repo,
}

impl Git {
    fn new() -> Git {
        Git {
            repo: lanes_testkit::Repo::new(),
        }
    }

    fn path(&self) -> &Path {
        &self.repo.path
    }

    fn run(&self, args: &[&str]) -> String {
        self.repo.git(args)
    }

    /// Writes `files` (path, contents; `None` removes it) and commits; returns the commit id.
    fn commit(&self, files: &[(&str, Option<&str>)]) -> String {
        for (path, contents) in files {
            let full = self.path().join(path);
            match contents {
                Some(text) => {
                    std::fs::create_dir_all(full.parent().expect("a file has a parent"))
                        .expect("mkdir");
                    std::fs::write(&full, text).expect("write");
                }
                None => std::fs::remove_file(&full).expect("remove"),
            }
        }
        self.run(&["add", "-A"]);
        self.run(&["commit", "-q", "-m", "change"]);
        self.run(&["rev-parse", "HEAD"])
    }
}

/// One call the agent made.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Call {
    Started,
    Heartbeat {
        rejected: bool,
    },
    HeartbeatUnavailable,
    Append {
        offset: u64,
        bytes: Vec<u8>,
        taken: bool,
    },
    Step(StepRecord),
    Finish(FinishReport),
}

/// What the forge does with the next append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AppendFault {
    /// Fails before writing anything.
    Unavailable,
    /// Writes the bytes, then the answer is lost.
    LostAnswer,
}

/// The forge, as the agent sees it through `Link`.
#[derive(Debug, Default)]
struct Forge {
    queue: Mutex<VecDeque<Assignment>>,
    calls: Mutex<Vec<Call>>,
    /// The job log as stored: only appends at its length are written.
    log: Mutex<Vec<u8>>,
    /// Heartbeats get this answer once this file holds a line.
    fail_heartbeats_once: Option<(PathBuf, LinkError)>,
    /// How many heartbeats to come fail as unavailable (`u32::MAX`: all of them).
    unavailable_heartbeats: Mutex<u32>,
    /// Created at every heartbeat the forge takes.
    heartbeat_taken: Option<PathBuf>,
    /// Faults for the appends to come, first first.
    append_faults: Mutex<VecDeque<Option<AppendFault>>>,
    /// Every host status the agent sent.
    hosts: Mutex<Vec<HostStatus>>,
}

impl Forge {
    fn record(&self, call: Call) {
        self.calls.lock().expect("calls").push(call);
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("calls").clone()
    }

    fn log(&self) -> String {
        String::from_utf8(self.log.lock().expect("log").clone()).expect("the log is UTF-8")
    }

    fn steps(&self) -> Vec<StepRecord> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Step(s) if s.status != JobState::Running => Some(s),
                _ => None,
            })
            .collect()
    }

    fn finishes(&self) -> Vec<FinishReport> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Finish(f) => Some(f),
                _ => None,
            })
            .collect()
    }
}

impl Link for Forge {
    async fn lease(&self, wait: Duration) -> Result<Option<Assignment>, LinkError> {
        let next = self.queue.lock().expect("queue").pop_front();
        if next.is_none() {
            tokio::time::sleep(wait.min(Duration::from_millis(20))).await;
        }
        Ok(next)
    }

    async fn started(&self, _job: u64, _token: u64) -> Result<(), LinkError> {
        self.record(Call::Started);
        Ok(())
    }

    async fn heartbeat(&self, _job: u64, _token: u64) -> Result<(), LinkError> {
        {
            let mut failing = self.unavailable_heartbeats.lock().expect("heartbeats");
            if *failing > 0 {
                if *failing != u32::MAX {
                    *failing -= 1;
                }
                self.record(Call::HeartbeatUnavailable);
                return Err(LinkError::Unavailable("connection refused".into()));
            }
        }
        // Once the file holds a whole line: the step wrote its pid.
        let failure = self
            .fail_heartbeats_once
            .as_ref()
            .filter(|(path, _)| std::fs::read_to_string(path).is_ok_and(|t| t.ends_with('\n')));
        match failure {
            Some((_, error)) => {
                self.record(match error {
                    LinkError::Rejected(_) => Call::Heartbeat { rejected: true },
                    LinkError::Unavailable(_) => Call::HeartbeatUnavailable,
                });
                return Err(error.clone());
            }
            None => self.record(Call::Heartbeat { rejected: false }),
        }
        if let Some(taken) = &self.heartbeat_taken {
            std::fs::write(taken, "").expect("write");
        }
        Ok(())
    }

    async fn append_log(
        &self,
        _job: u64,
        _token: u64,
        offset: u64,
        bytes: Vec<u8>,
    ) -> Result<u64, LinkError> {
        let fault = self
            .append_faults
            .lock()
            .expect("faults")
            .pop_front()
            .flatten();
        let mut log = self.log.lock().expect("log");
        let len = log.len() as u64;
        assert!(offset <= len, "an append past the end: {offset} > {len}");
        let write = offset == len && fault != Some(AppendFault::Unavailable);
        self.record(Call::Append {
            offset,
            bytes: bytes.clone(),
            taken: write && fault.is_none(),
        });
        if write {
            log.extend_from_slice(&bytes);
        }
        match fault {
            Some(_) => Err(LinkError::Unavailable("connection reset".into())),
            None => Ok(log.len() as u64),
        }
    }

    async fn secrets(
        &self,
        _job: u64,
        _token: u64,
        names: Vec<String>,
    ) -> Result<lanes_agent::link::Secrets, LinkError> {
        Ok(names
            .into_iter()
            .map(|n| (n, Err("this test's forge holds no secrets".to_owned())))
            .collect())
    }

    async fn step(&self, _job: u64, _token: u64, step: StepRecord) -> Result<(), LinkError> {
        self.record(Call::Step(step));
        Ok(())
    }

    async fn host_status(&self, status: HostStatus) -> Result<(), LinkError> {
        self.hosts.lock().expect("hosts").push(status);
        Ok(())
    }

    async fn finish(&self, _job: u64, _token: u64, finish: FinishReport) -> Result<(), LinkError> {
        self.record(Call::Finish(finish));
        Ok(())
    }
}

/// A cache directory and the agent environment over it (no sandbox: the tests' steps write
/// outside their lane directory on purpose).
fn agent_env(cache: &Path) -> AgentEnv {
    let mut env = AgentEnv::open(cache.to_owned(), None).expect("the cache opens");
    // Steps here stop at SIGTERM; a short grace keeps a wrong test from hanging long.
    env.grace = Duration::from_millis(500);
    env
}

fn assignment(git: &Git, head: &str, lane: &str) -> Assignment {
    Assignment {
        job: 1,
        token: 7,
        repo: "demo".into(),
        run: 3,
        lane: lane.into(),
        head: head.into(),
        git_dir: git.path().to_owned(),
        heartbeat_ms: 10_000,
        lease_ms: 30_000,
        log_offset: 0,
    }
}

async fn run(forge: &Forge, assignment: Assignment, cache: &Path) -> JobEnd {
    run_job(forge, assignment, &agent_env(cache), &Shutdown::new()).await
}

/// The TOML of lane `name` with `keys` (lines such as `cache-mounts = ["target"]`) and its
/// steps (name, command).
fn lane(name: &str, keys: &str, steps: &[(&str, &str)]) -> String {
    let mut toml = format!("[lane.{name}]\n{keys}");
    for (step, run) in steps {
        toml.push_str(&format!(
            "[[lane.{name}.step]]\nname = '{step}'\nrun = '{run}'\n"
        ));
    }
    toml
}

/// A catalog of `lanes`.
fn catalog(lanes: &[String]) -> String {
    format!("version = 1\n{}", lanes.join("\n"))
}

/// The lane `build`: `compile` writes two lines, its input file and a line on stderr; `test`
/// writes two lines.
fn build_lane() -> String {
    lane(
        "build",
        "",
        &[
            (
                "compile",
                "echo compile-a; echo compile-b; cat src/main.txt; echo compile-err >&2",
            ),
            ("test", "echo test-a; echo test-b"),
        ],
    )
}

fn two_steps() -> (Git, String) {
    let git = Git::new();
    let head = git.commit(&[
        ("lanes.toml", Some(&catalog(&[build_lane()]))),
        ("src/main.txt", Some("main-content\n")),
    ]);
    (git, head)
}

/// The lines of `log` that match one of `wanted` by substring, in log order.
fn positions(log: &str, wanted: &[&str]) -> Vec<usize> {
    wanted
        .iter()
        .map(|w| {
            log.lines()
                .position(|l| l.contains(w))
                .unwrap_or_else(|| panic!("`{w}` is not in the log:\n{log}"))
        })
        .collect()
}

fn is_sorted(v: &[usize]) -> bool {
    v.windows(2).all(|w| w[0] < w[1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_holds_every_steps_header_and_output_lines_in_order_with_contiguous_offsets() {
    let (git, head) = two_steps();
    let cache = tempfile::tempdir().expect("tempdir");
    let forge = Forge::default();
    run(&forge, assignment(&git, &head, "build"), cache.path()).await;

    let log = forge.log();
    let order = positions(
        &log,
        &[
            "== lane build at",
            "== step 1/2 compile",
            "compile-a",
            "compile-b",
            "main-content",
            "== step 1/2 compile: passed",
            "== step 2/2 test",
            "test-a",
            "test-b",
            "== step 2/2 test: passed",
            "== lane build: passed",
        ],
    );
    assert!(is_sorted(&order), "out of order {order:?}:\n{log}");
    // stderr is a pipe of its own, so only its place within the step is certain.
    let err = positions(&log, &["compile-err"])[0];
    assert!(order[1] < err && err < order[5], "{log}");
    // Output lines carry the executor's timestamp.
    assert!(
        log.lines()
            .any(|l| l.starts_with('[') && l.ends_with("] test-a")),
        "{log}"
    );

    let mut expected = 0;
    for call in forge.calls() {
        if let Call::Append { offset, bytes, .. } = call {
            assert_eq!(offset, expected, "appends must continue where the log ends");
            expected += bytes.len() as u64;
        }
    }
    assert_eq!(expected, log.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passing_lane_reports_every_step_passed_and_finishes_passed() {
    let (git, head) = two_steps();
    let cache = tempfile::tempdir().expect("tempdir");
    let forge = Forge::default();
    let end = run(&forge, assignment(&git, &head, "build"), cache.path()).await;

    let calls = forge.calls();
    assert_eq!(calls.first(), Some(&Call::Started), "started comes first");
    let steps = forge.steps();
    let summary: Vec<(u32, &str, JobState, CacheUse, Option<i32>)> = steps
        .iter()
        .map(|s| (s.index, s.name.as_str(), s.status, s.cache, s.exit_code))
        .collect();
    assert_eq!(
        summary,
        [
            (0, "compile", JobState::Passed, CacheUse::Miss, Some(0)),
            (1, "test", JobState::Passed, CacheUse::Miss, Some(0)),
        ]
    );
    assert!(
        steps
            .iter()
            .all(|s| s.key.as_ref().is_some_and(|k| k.len() == 64))
    );
    let finishes = forge.finishes();
    assert_eq!(finishes.len(), 1);
    let finish = &finishes[0];
    assert_eq!(finish.state, JobState::Passed);
    assert_eq!(finish.message, None);
    assert_eq!(finish.steps, steps);
    assert_eq!(
        calls.last(),
        Some(&Call::Finish(finish.clone())),
        "finish comes last"
    );
    assert_eq!(end, JobEnd::Finished(finish.clone()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_lane_reports_the_failed_step_and_the_skipped_rest_and_finishes_failed() {
    let git = Git::new();
    let failing = lane(
        "build",
        "",
        &[
            ("ok", "true"),
            ("broken", "echo about-to-fail; exit 3"),
            ("after", "echo never"),
        ],
    );
    let head = git.commit(&[("lanes.toml", Some(&catalog(&[failing])))]);
    let cache = tempfile::tempdir().expect("tempdir");
    let forge = Forge::default();
    run(&forge, assignment(&git, &head, "build"), cache.path()).await;

    let steps = forge.steps();
    let summary: Vec<(&str, JobState, Option<i32>)> = steps
        .iter()
        .map(|s| (s.name.as_str(), s.status, s.exit_code))
        .collect();
    assert_eq!(
        summary,
        [
            ("ok", JobState::Passed, Some(0)),
            ("broken", JobState::Failed, Some(3)),
            ("after", JobState::Skipped, None),
        ]
    );
    let finishes = forge.finishes();
    assert_eq!(finishes.len(), 1);
    assert_eq!(finishes[0].state, JobState::Failed);
    let log = forge.log();
    let order = positions(
        &log,
        &[
            "about-to-fail",
            "== step 2/3 broken: failed with exit code 3",
            "== step 3/3 after: skipped",
            "== lane build: failed",
        ],
    );
    assert!(is_sorted(&order), "{log}");
    assert!(!log.contains("never"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_the_same_job_again_hits_the_cache_for_every_step_and_the_log_says_restored() {
    let (git, head) = two_steps();
    let cache = tempfile::tempdir().expect("tempdir");
    let first = Forge::default();
    run(&first, assignment(&git, &head, "build"), cache.path()).await;
    assert!(
        first.steps().iter().all(|s| s.cache == CacheUse::Miss),
        "{:?}",
        first.steps()
    );

    let second = Forge::default();
    let mut again = assignment(&git, &head, "build");
    again.job = 2;
    again.token = 8;
    run(&second, again, cache.path()).await;

    let steps = second.steps();
    assert_eq!(steps.len(), 2);
    for (hit, original) in steps.iter().zip(first.steps()) {
        assert_eq!(hit.cache, CacheUse::Hit, "{hit:?}");
        assert_eq!(hit.status, JobState::Passed);
        assert_eq!(hit.key, original.key, "the same commit has the same keys");
        assert!(hit.saved_ms.is_some(), "{hit:?}");
    }
    assert_eq!(second.finishes()[0].state, JobState::Passed);
    let log = second.log();
    let order = positions(
        &log,
        &[
            "== step 1/2 compile",
            // The recorded run's lines.
            "compile-a",
            "main-content",
            "== step 1/2 compile: cached, restored from the cache",
            "== step 2/2 test",
            "test-b",
            "== step 2/2 test: cached, restored from the cache",
        ],
    );
    assert!(is_sorted(&order), "{log}");
    assert!(
        !log.contains("lane directory written"),
        "a lane whose steps all hit is not materialized:\n{log}"
    );
}

/// A repository whose lane `slow` writes its shell's pid to `pid` in the returned scratch
/// directory (outside the lane directory), then sleeps for 600 s; a second step comes after.
fn sleeping_lane() -> (Git, String, tempfile::TempDir) {
    let scratch = tempfile::tempdir().expect("tempdir");
    let git = Git::new();
    let pid = scratch.path().join("pid");
    let slow = lane(
        "slow",
        "",
        &[
            (
                "sleep",
                &format!("echo $$ > {}; exec sleep 600", pid.display()),
            ),
            ("after", "true"),
        ],
    );
    let catalog = catalog(&[slow]);
    let head = git.commit(&[("lanes.toml", Some(&catalog))]);
    (git, head, scratch)
}

/// The pid the step wrote to `pid_file`, once it is whole.
async fn pid_from(pid_file: &Path) -> String {
    // No deadline: a hang is a failure too, and a deadline would be a timing threshold.
    loop {
        match std::fs::read_to_string(pid_file) {
            Ok(pid) if pid.ends_with('\n') => return pid.trim().to_owned(),
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Whether the process `pid` is gone (its step was reaped).
fn gone(pid: &str) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_heartbeat_stops_the_running_step_and_nothing_more_is_reported() {
    let (git, head, scratch) = sleeping_lane();
    let pid_file = scratch.path().join("pid");
    let cache = tempfile::tempdir().expect("tempdir");
    let forge = Forge {
        fail_heartbeats_once: Some((pid_file.clone(), LinkError::Rejected("stale token".into()))),
        ..Forge::default()
    };
    let mut job = assignment(&git, &head, "slow");
    job.heartbeat_ms = 50;
    job.lease_ms = 150;
    let end = run(&forge, job, cache.path()).await;

    assert_eq!(end, JobEnd::Stopped(Stop::Rejected("stale token".into())));
    let pid = pid_from(&pid_file).await;
    assert!(gone(&pid), "the step's process {pid} outlived the job");
    let calls = forge.calls();
    let rejected = calls
        .iter()
        .position(|c| *c == Call::Heartbeat { rejected: true })
        .expect("a heartbeat was rejected");
    assert_eq!(
        &calls[rejected + 1..],
        &[],
        "nothing is reported after a rejection"
    );
    assert!(forge.finishes().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_missing_from_the_catalog_at_that_commit_finishes_error_with_a_message() {
    let git = Git::new();
    let docs = lane("docs", "", &[("build", "true")]);
    let with_docs = git.commit(&[("lanes.toml", Some(&catalog(&[build_lane(), docs])))]);
    let without = git.commit(&[("lanes.toml", Some(&catalog(&[build_lane()])))]);
    let cache = tempfile::tempdir().expect("tempdir");

    // The lane exists at the first commit, so it is the commit's catalog that is read.
    let earlier = Forge::default();
    run(&earlier, assignment(&git, &with_docs, "docs"), cache.path()).await;
    assert_eq!(earlier.finishes()[0].state, JobState::Passed);

    let forge = Forge::default();
    run(&forge, assignment(&git, &without, "docs"), cache.path()).await;
    let finishes = forge.finishes();
    assert_eq!(finishes.len(), 1);
    assert_eq!(finishes[0].state, JobState::Error);
    let message = finishes[0].message.clone().expect("an error has a message");
    assert!(message.contains("no lane `docs`"), "{message}");
    assert!(message.contains(&without), "{message}");
    assert!(finishes[0].steps.is_empty());
    assert_eq!(forge.log(), format!("lanes: {message}\n"));
    assert!(forge.steps().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_catalog_or_a_missing_commit_finishes_error_with_the_reason() {
    let git = Git::new();
    let head = git.commit(&[("lanes.toml", Some("version = 1\n[lane.x]\nbogus = 1\n"))]);
    let cache = tempfile::tempdir().expect("tempdir");

    let forge = Forge::default();
    run(&forge, assignment(&git, &head, "x"), cache.path()).await;
    let finish = &forge.finishes()[0];
    assert_eq!(finish.state, JobState::Error);
    let message = finish.message.as_deref().expect("a message");
    assert!(message.contains("invalid"), "{message}");
    assert!(message.contains("lanes.toml:3"), "{message}");
    assert!(forge.log().contains(message));

    let forge = Forge::default();
    let missing = "0123456789abcdef0123456789abcdef01234567";
    run(&forge, assignment(&git, missing, "x"), cache.path()).await;
    let finish = &forge.finishes()[0];
    assert_eq!(finish.state, JobState::Error);
    assert!(
        finish
            .message
            .as_deref()
            .is_some_and(|m| m.contains(missing)),
        "{finish:?}"
    );
}

/// Runs the two-step lane with `faults` on the first appends; returns the forge.
async fn with_append_faults(faults: &[Option<AppendFault>]) -> Forge {
    let (git, head) = two_steps();
    let cache = tempfile::tempdir().expect("tempdir");
    let forge = Forge {
        append_faults: Mutex::new(faults.iter().copied().collect()),
        ..Forge::default()
    };
    run(&forge, assignment(&git, &head, "build"), cache.path()).await;
    forge
}

fn appends(forge: &Forge) -> Vec<(u64, Vec<u8>, bool)> {
    forge
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Append {
                offset,
                bytes,
                taken,
            } => Some((offset, bytes, taken)),
            _ => None,
        })
        .collect()
}

/// Every line the job log of the two-step lane must hold exactly once.
fn assert_whole(log: &str) {
    for line in [
        "== step 1/2 compile",
        "compile-a",
        "compile-b",
        "main-content",
        "== step 1/2 compile: passed",
        "== step 2/2 test",
        "test-a",
        "test-b",
        "== step 2/2 test: passed",
        "== lane build: passed",
    ] {
        let n = log
            .lines()
            .filter(|l| {
                if line.contains(':') {
                    // A closing line: its duration varies.
                    l.starts_with(line)
                } else if line.starts_with("==") {
                    *l == line
                } else {
                    l.ends_with(&format!("] {line}"))
                }
            })
            .count();
        assert_eq!(n, 1, "`{line}` is in the log {n} times:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_append_is_resent_at_the_same_offset_and_nothing_is_lost() {
    // The second append fails: the first is acknowledged, so the resend is at a later offset.
    let forge = with_append_faults(&[None, Some(AppendFault::Unavailable)]).await;
    let sent = appends(&forge);
    assert!(sent.len() >= 3, "{sent:?}");
    let (failed_offset, failed_bytes, taken) = &sent[1];
    assert!(!taken);
    assert!(*failed_offset > 0);
    assert_eq!(&sent[2].0, failed_offset, "resent at the same offset");
    assert!(
        sent[2].1.starts_with(failed_bytes),
        "the resend carries the bytes that were not taken"
    );
    assert_eq!(forge.finishes()[0].state, JobState::Passed);
    assert_whole(&forge.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_whose_answer_was_lost_is_resent_and_written_once() {
    let forge = with_append_faults(&[Some(AppendFault::LostAnswer)]).await;
    let sent = appends(&forge);
    assert_eq!(sent[0].0, 0);
    assert_eq!(sent[1].0, 0, "resent at the same offset");
    let log = forge.log();
    assert!(log.starts_with(std::str::from_utf8(&sent[0].1).expect("utf-8")));
    assert_whole(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutting_down_stops_running_jobs_without_reporting_them_and_returns_once_they_ended() {
    let (git, head, scratch) = sleeping_lane();
    let pid_file = scratch.path().join("pid");
    let cache = tempfile::tempdir().expect("tempdir");
    let forge = Arc::new(Forge::default());
    forge
        .queue
        .lock()
        .expect("queue")
        .push_back(assignment(&git, &head, "slow"));
    let shutdown = Shutdown::new();
    let agent = tokio::spawn(run_agent(
        Arc::clone(&forge),
        AgentConfig {
            env: agent_env(cache.path()),
            capacity: 2,
            lease_wait: Duration::from_millis(20),
        },
        shutdown.clone(),
    ));
    let pid = pid_from(&pid_file).await;
    shutdown.trigger();
    agent.await.expect("the agent ends");

    assert!(gone(&pid), "the step's process {pid} outlived the agent");
    // The step was cancelled, but that is not reported: the lease expires and the forge
    // requeues the job.
    assert_eq!(forge.steps(), [], "no step end is reported");
    assert!(forge.finishes().is_empty(), "{:?}", forge.calls());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_is_explained_against_the_last_run_of_the_same_repository_only() {
    let (git, head) = two_steps();
    let cache = tempfile::tempdir().expect("tempdir");
    let miss_of = |forge: &Forge| {
        forge.steps()[0]
            .miss
            .clone()
            .expect("a step that ran says why it missed")
    };
    let forge = Forge::default();
    run(&forge, assignment(&git, &head, "build"), cache.path()).await;
    assert_eq!(miss_of(&forge).kind, MissKind::New);

    let changed = git.commit(&[("src/main.txt", Some("changed\n"))]);
    let forge = Forge::default();
    let mut again = assignment(&git, &changed, "build");
    again.job = 2;
    run(&forge, again.clone(), cache.path()).await;
    let miss = miss_of(&forge);
    assert_eq!(miss.kind, MissKind::Inputs, "{miss:?}");
    assert!(
        miss.detail.starts_with("input src/main.txt: blob "),
        "{miss:?}"
    );

    // Another repository's lane of the same name has no run yet, whatever this one did.
    let third = git.commit(&[("src/main.txt", Some("third\n"))]);
    let forge = Forge::default();
    let mut other = assignment(&git, &third, "build");
    other.job = 3;
    other.repo = "other".into();
    run(&forge, other, cache.path()).await;
    assert_eq!(miss_of(&forge).kind, MissKind::New);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_reports_its_scopes_with_the_job_running_in_one_and_its_cache() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let git = Git::new();
    let pid_file = scratch.path().join("pid");
    let sim = lane(
        "sim",
        "scope = 'runtime'\ncache-mounts = ['devices']\n",
        &[(
            "boot",
            &format!("echo $$ > {}; exec sleep 600", pid_file.display()),
        )],
    );
    let head = git.commit(&[("lanes.toml", Some(&catalog(&[sim])))]);
    let cache = tempfile::tempdir().expect("tempdir");
    let forge = Arc::new(Forge::default());
    let mut job = assignment(&git, &head, "sim");
    job.job = 41;
    forge.queue.lock().expect("queue").push_back(job);
    let shutdown = Shutdown::new();
    let agent = tokio::spawn(run_agent(
        Arc::clone(&forge),
        AgentConfig {
            env: agent_env(cache.path()),
            capacity: 1,
            lease_wait: Duration::from_millis(20),
        },
        shutdown.clone(),
    ));
    let pid = pid_from(&pid_file).await;
    // The job started, so a status naming it in its scope follows (no deadline: a hang fails).
    let status = loop {
        let found = forge
            .hosts
            .lock()
            .expect("hosts")
            .iter()
            .find(|h| h.scopes.iter().any(|s| s.jobs == [41]))
            .cloned();
        match found {
            Some(status) => break status,
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    shutdown.trigger();
    agent.await.expect("the agent ends");
    assert!(gone(&pid));
    let runtime = status
        .scopes
        .iter()
        .find(|s| s.name == "runtime")
        .expect("the lane's scope");
    assert_eq!(runtime.mounts, ["devices"], "{status:?}");
    assert_eq!(status.platform, lanes_agent::host::platform());
    assert_eq!(
        status.cache.map(|c| (c.actions, c.blobs)),
        Some((0, 0)),
        "nothing recorded yet, and measured as such: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_log_goes_in_appends_of_at_most_64_kib_when_streamed_and_when_restored() {
    let git = Git::new();
    let head = git.commit(&[(
        "lanes.toml",
        Some(&catalog(&[lane("loud", "", &[("count", "seq 1 30000")])])),
    )]);
    let cache = tempfile::tempdir().expect("tempdir");
    for job in [1, 2] {
        let forge = Forge::default();
        let mut assignment = assignment(&git, &head, "loud");
        assignment.job = job;
        run(&forge, assignment, cache.path()).await;
        let sent = appends(&forge);
        assert!(sent.len() > 1, "{} appends", sent.len());
        assert!(
            sent.iter().all(|(_, bytes, _)| bytes.len() <= 64 * 1024),
            "{:?}",
            sent.iter().map(|(_, b, _)| b.len()).collect::<Vec<_>>()
        );
        let log = forge.log();
        let numbers: Vec<&str> = log
            .lines()
            .filter(|l| l.starts_with('['))
            .filter_map(|l| l.split("] ").nth(1))
            .collect();
        let expected: Vec<String> = (1..=30000).map(|n| n.to_string()).collect();
        assert_eq!(numbers, expected, "every line once, in order (job {job})");
        let step = &forge.steps()[0];
        let cache_use = if job == 1 {
            CacheUse::Miss
        } else {
            CacheUse::Hit
        };
        assert_eq!(step.cache, cache_use);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_heartbeat_is_tried_again_and_the_job_goes_on() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let taken = scratch.path().join("taken");
    let git = Git::new();
    // The step runs until the forge took a heartbeat, so the retry happens while it runs.
    let run_until = format!(
        "until [ -e {} ]; do sleep 0.02; done; echo released",
        taken.display()
    );
    let catalog = catalog(&[lane("wait", "", &[("wait", &run_until)])]);
    let head = git.commit(&[("lanes.toml", Some(&catalog))]);
    let cache = tempfile::tempdir().expect("tempdir");
    let forge = Forge {
        unavailable_heartbeats: Mutex::new(2),
        heartbeat_taken: Some(taken),
        ..Forge::default()
    };
    let mut job = assignment(&git, &head, "wait");
    // A lease of 3 s leaves room for two retries (100 ms, then 200 ms).
    job.heartbeat_ms = 1000;
    job.lease_ms = 3000;
    let end = run(&forge, job, cache.path()).await;

    let beats: Vec<Call> = forge
        .calls()
        .into_iter()
        .filter(|c| matches!(c, Call::Heartbeat { .. } | Call::HeartbeatUnavailable))
        .collect();
    assert_eq!(
        &beats[..3],
        [
            Call::HeartbeatUnavailable,
            Call::HeartbeatUnavailable,
            Call::Heartbeat { rejected: false }
        ]
    );
    let JobEnd::Finished(finish) = end else {
        panic!("the job was stopped: {end:?}");
    };
    assert_eq!(finish.state, JobState::Passed);
    assert!(forge.log().contains("] released"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forge_unavailable_for_longer_than_the_lease_stops_the_job_unreported() {
    let (git, head, scratch) = sleeping_lane();
    let pid_file = scratch.path().join("pid");
    let cache = tempfile::tempdir().expect("tempdir");
    let forge = Forge {
        fail_heartbeats_once: Some((
            pid_file.clone(),
            LinkError::Unavailable("connection refused".into()),
        )),
        ..Forge::default()
    };
    let mut job = assignment(&git, &head, "slow");
    job.heartbeat_ms = 50;
    job.lease_ms = 150;
    let end = run(&forge, job, cache.path()).await;

    assert!(
        matches!(&end, JobEnd::Stopped(Stop::LeaseLost(why)) if why.contains("connection refused")),
        "{end:?}"
    );
    let pid = pid_from(&pid_file).await;
    assert!(gone(&pid), "the step's process {pid} outlived the job");
    assert!(forge.calls().contains(&Call::HeartbeatUnavailable));
    // The step ended only after the job was given up, so its end was not reported.
    assert_eq!(forge.steps(), []);
    assert!(forge.finishes().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_repository_runs_like_a_clone() {
    let (git, head) = two_steps();
    let bare = tempfile::tempdir().expect("tempdir");
    let bare_path = bare.path().join("demo.git");
    git.run(&[
        "clone",
        "-q",
        "--bare",
        &git.path().display().to_string(),
        &bare_path.display().to_string(),
    ]);
    let cache = tempfile::tempdir().expect("tempdir");
    let forge = Forge::default();
    let mut job = assignment(&git, &head, "build");
    job.git_dir = bare_path;
    run(&forge, job, cache.path()).await;
    assert_eq!(forge.finishes()[0].state, JobState::Passed);
    assert!(forge.log().contains("] main-content"), "{}", forge.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_that_cannot_prepare_its_directory_fails_and_the_job_log_says_why() {
    let git = Git::new();
    let head = git.commit(&[
        (
            "lanes.toml",
            Some(&catalog(&[lane(
                "l",
                "cache-mounts = [\"target\"]\n",
                &[("s", "true")],
            )])),
        ),
        ("target/keep", Some("committed by mistake\n")),
    ]);
    let cache = tempfile::tempdir().expect("tempdir");
    let forge = Forge::default();
    run(&forge, assignment(&git, &head, "l"), cache.path()).await;

    let finish = &forge.finishes()[0];
    assert_eq!(finish.state, JobState::Failed);
    let log = forge.log();
    let order = positions(
        &log,
        &[
            "== step 1/1 s",
            "lanes: the cache mount `target` collides",
            "== step 1/1 s: failed",
            "== lane l: failed",
        ],
    );
    assert!(is_sorted(&order), "{log}");
    assert_eq!(forge.steps()[0].status, JobState::Failed);
}
