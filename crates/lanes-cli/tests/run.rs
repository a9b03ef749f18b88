//! `lanes run` end to end: the real binary, real temporary repositories, real processes, a real
//! cache directory per test.

mod common;

use common::{Repo, Run, lanes_in};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A repository, its own cache directory and a scratch directory steps may write to
/// (`$OUT`, passed with `pass-env`). The scratch directory is not under `/tmp`, which is each
/// step's own in the sandbox.
struct Fixture {
    repo: Repo,
    cache: tempfile::TempDir,
    out: tempfile::TempDir,
}

impl Fixture {
    fn new(catalog: &str) -> Fixture {
        let repo = Repo::new();
        repo.write("lanes.toml", catalog);
        Fixture {
            repo,
            cache: tempfile::tempdir().expect("tempdir"),
            out: common::outside_tmp(),
        }
    }

    /// A process name no other test uses.
    fn marker(&self) -> String {
        let dir = self.out.path().file_name().expect("a name");
        format!("lanes-test-{}", dir.to_string_lossy())
    }

    fn env(&self) -> Vec<(&str, &str)> {
        vec![
            (
                "LANES_CACHE_DIR",
                self.cache.path().to_str().expect("utf-8"),
            ),
            ("OUT", self.out.path().to_str().expect("utf-8")),
        ]
    }

    /// `lanes run ARGS --report R`; returns the outcome and the report.
    fn run(&self, args: &[&str]) -> (Run, Value) {
        self.run_env(args, &[])
    }

    fn run_env(&self, args: &[&str], extra: &[(&str, &str)]) -> (Run, Value) {
        let report = self.out.path().join("report.json");
        let _ = std::fs::remove_file(&report);
        let mut all = vec!["run"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--report", report.to_str().expect("utf-8")]);
        let mut env = self.env();
        env.extend_from_slice(extra);
        let run = lanes_in(&self.repo.path, &all, &env);
        let report = std::fs::read_to_string(&report)
            .map(|text| serde_json::from_str(&text).expect("the report is JSON"))
            .unwrap_or(Value::Null);
        (run, report)
    }

    /// `lanes ARGS` started in the background (stdout dropped, stderr kept), to act on while it
    /// runs.
    fn spawn(&self, args: &[&str], extra: &[(&str, &str)]) -> std::process::Child {
        let mut cmd = self.command(env!("CARGO_BIN_EXE_lanes"));
        cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.spawn().expect("spawn lanes")
    }

    /// `program` in the repository with the fixture's environment (for running lanes through
    /// another program).
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.repo.path)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env_remove("LANES_BASE");
        for (k, v) in self.env() {
            cmd.env(k, v);
        }
        cmd
    }

    /// Lines a step appended to `$OUT/NAME`.
    fn lines(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.out.path().join(name))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn blobs(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let root = self.cache.path().join("v1/blobs");
        for dir in std::fs::read_dir(root).expect("blobs dir") {
            for file in std::fs::read_dir(dir.expect("entry").path()).expect("shard") {
                found.push(file.expect("entry").path());
            }
        }
        found
    }
}

fn lane<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["lanes"]
        .as_array()
        .expect("lanes")
        .iter()
        .find(|l| l["name"] == name)
        .unwrap_or_else(|| panic!("no lane {name} in {report:#}"))
}

/// `(status, cache)` of every step of a lane.
fn steps(report: &Value, name: &str) -> Vec<(String, String)> {
    lane(report, name)["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["status"].as_str().expect("status").to_owned(),
                s["cache"].as_str().expect("cache").to_owned(),
            )
        })
        .collect()
}

fn pair(status: &str, cache: &str) -> (String, String) {
    (status.to_owned(), cache.to_owned())
}

const THREE_STEPS: &str = r#"version = 1

[lane.build]
inputs = ["src/"]
[[lane.build.step]]
name = "gen"
run = "echo gen >> $OUT/ran; mkdir -p gen; cat src/a.txt > gen/a.copy"
pass-env = ["OUT"]
[[lane.build.step]]
name = "compile"
run = "echo compile >> $OUT/ran; cat gen/a.copy gen/a.copy > compiled"
pass-env = ["OUT"]
[[lane.build.step]]
name = "check"
run = "echo check >> $OUT/ran; test -f compiled; cat compiled"
pass-env = ["OUT"]
"#;

fn three_steps() -> Fixture {
    let f = Fixture::new(THREE_STEPS);
    f.repo
        .write("src/a.txt", "alpha\n")
        .write("other/b.txt", "beta\n");
    f.repo.commit("init");
    f
}

#[test]
fn a_second_run_hits_every_step_and_runs_nothing() {
    let f = three_steps();
    let (first, report) = f.run(&["--all"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(lane(&report, "build")["status"], "passed");
    assert_eq!(f.lines("ran"), ["gen", "compile", "check"]);

    let (second, report) = f.run(&["--all"]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(lane(&report, "build")["status"], "cached");
    assert_eq!(steps(&report, "build"), vec![pair("cached", "hit"); 3]);
    assert_eq!(
        f.lines("ran"),
        ["gen", "compile", "check"],
        "nothing ran again"
    );
    // The cached step's log is the recorded one.
    let log = lane(&report, "build")["steps"][2]["log"]
        .as_str()
        .expect("log");
    assert!(std::fs::read_to_string(log).expect("log").contains("alpha"));
}

#[test]
fn a_changed_input_misses_from_the_first_step_and_an_outside_change_keeps_every_hit() {
    let f = three_steps();
    assert_eq!(f.run(&["--all"]).0.code, 0);

    f.repo.write("other/b.txt", "changed outside the fileset\n");
    let (run, report) = f.run(&["--all"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(steps(&report, "build"), vec![pair("cached", "hit"); 3]);

    f.repo.write("src/a.txt", "changed inside\n");
    let (run, report) = f.run(&["--all"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(steps(&report, "build"), vec![pair("passed", "miss"); 3]);
    let log = lane(&report, "build")["steps"][2]["log"]
        .as_str()
        .expect("log");
    assert!(
        std::fs::read_to_string(log)
            .expect("log")
            .contains("changed inside")
    );
}

#[test]
fn a_changed_third_step_reuses_the_first_two_and_sees_their_outputs() {
    let f = three_steps();
    assert_eq!(f.run(&["--all"]).0.code, 0);
    f.repo.write(
        "lanes.toml",
        &THREE_STEPS.replace(
            "test -f compiled; cat compiled",
            "wc -l < compiled; cat gen/a.copy",
        ),
    );
    let (run, report) = f.run(&["--all"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        steps(&report, "build"),
        vec![
            pair("cached", "hit"),
            pair("cached", "hit"),
            pair("passed", "miss")
        ]
    );
    assert_eq!(f.lines("ran"), ["gen", "compile", "check", "check"]);
    let log = lane(&report, "build")["steps"][2]["log"]
        .as_str()
        .expect("log");
    let log = std::fs::read_to_string(log).expect("log");
    assert!(log.contains("] 2\n") && log.contains("] alpha\n"), "{log}");
}

#[test]
fn a_failing_step_is_not_cached_and_runs_again() {
    let f = Fixture::new(
        r#"version = 1
[lane.flaky]
[[lane.flaky.step]]
name = "fail"
run = "echo try >> $OUT/tries; exit 7"
pass-env = ["OUT"]
"#,
    );
    f.repo.commit("init");
    for _ in 0..2 {
        let (run, report) = f.run(&["--all"]);
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert_eq!(steps(&report, "flaky"), vec![pair("failed", "miss")]);
        assert_eq!(lane(&report, "flaky")["steps"][0]["exit_code"], 7);
    }
    assert_eq!(f.lines("tries"), ["try", "try"]);
}

#[test]
fn a_step_sees_only_its_lanes_fileset() {
    let f = Fixture::new(
        r#"version = 1
[lane.narrow]
inputs = ["a/"]
[[lane.narrow.step]]
name = "look"
run = "find . -type f | sort > $OUT/seen; cat b/secret.txt"
pass-env = ["OUT"]
"#,
    );
    f.repo
        .write("a/visible.txt", "yes\n")
        .write("b/secret.txt", "no\n");
    f.repo.commit("init");
    f.repo.write("a/untracked.txt", "also visible\n");
    let (run, report) = f.run(&["--all"]);
    assert_eq!(
        run.code, 1,
        "reading b/secret.txt must fail: {}",
        run.stderr
    );
    assert_eq!(steps(&report, "narrow"), vec![pair("failed", "miss")]);
    assert_eq!(f.lines("seen"), ["./a/untracked.txt", "./a/visible.txt"]);
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

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The host's processes whose command line holds `marker` (a step's own pids are those of its
/// PID namespace, so a test finds its processes by name).
fn processes_named(marker: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| alive(*pid))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        })
        .collect()
}

fn read_pid(path: &Path) -> i32 {
    let mut pid = 0;
    wait_until(&format!("{} holds a pid", path.display()), || {
        pid = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        pid > 0
    });
    pid
}

#[test]
fn a_timeout_kills_the_step_and_its_grandchildren() {
    let f = Fixture::new(
        r#"version = 1
[lane.slow]
[[lane.slow.step]]
name = "hang"
run = "bash -c '(exec -a $MARKER sleep 300) & echo $! > $OUT/grandchild; wait'"
pass-env = ["OUT", "MARKER"]
timeout = "1s"
"#,
    );
    f.repo.commit("init");
    let marker = f.marker();
    let (run, report) = f.run_env(&["--all"], &[("MARKER", &marker)]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(lane(&report, "slow")["status"], "timed-out");
    assert_eq!(steps(&report, "slow"), vec![pair("timed-out", "miss")]);
    read_pid(&f.out.path().join("grandchild"));
    wait_until("the grandchild is gone", || {
        processes_named(&marker).is_empty()
    });
}

#[test]
fn lanes_in_a_group_with_limit_one_never_overlap() {
    let step = |lane: &str| {
        format!(
            r#"
[lane.{lane}]
concurrency = "one"
[[lane.{lane}.step]]
name = "work"
run = "echo start $(date +%s%N) >> $OUT/{lane}; sleep 0.3; echo end $(date +%s%N) >> $OUT/{lane}"
pass-env = ["OUT"]
cache = false
"#
        )
    };
    let catalog = format!(
        "version = 1\n[group.one]\nlimit = 1\n{}{}{}",
        step("a"),
        step("b"),
        step("c")
    );
    let f = Fixture::new(&catalog);
    f.repo.commit("init");
    let (run, report) = f.run(&["--all", "-j", "3"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut spans: Vec<(u128, u128)> = ["a", "b", "c"]
        .iter()
        .map(|l| {
            assert_eq!(lane(&report, l)["status"], "passed");
            let lines = f.lines(l);
            let at = |i: usize| -> u128 {
                lines[i]
                    .split(' ')
                    .nth(1)
                    .expect("time")
                    .parse()
                    .expect("number")
            };
            (at(0), at(1))
        })
        .collect();
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[0].1 <= w[1].0, "overlap: {spans:?}");
    }
}

#[test]
fn a_corrupt_blob_is_a_miss_with_a_warning_never_a_hit() {
    let f = three_steps();
    assert_eq!(f.run(&["--all"]).0.code, 0);
    let blobs = f.blobs();
    assert!(!blobs.is_empty());
    for blob in &blobs {
        let mut bytes = std::fs::read(blob).expect("read blob");
        bytes.push(b'!');
        std::fs::write(blob, bytes).expect("corrupt blob");
    }
    let (run, report) = f.run(&["--all"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(steps(&report, "build"), vec![pair("passed", "miss"); 3]);
    assert!(
        run.stderr.contains("warning:") && run.stderr.contains("corrupt"),
        "{}",
        run.stderr
    );
    assert_eq!(f.lines("ran").len(), 6, "every step ran again");
    // The fresh results are good again.
    let (_, report) = f.run(&["--all"]);
    assert_eq!(steps(&report, "build"), vec![pair("cached", "hit"); 3]);
}

#[test]
fn two_runs_at_once_share_one_cache_safely() {
    let f = three_steps();
    let runs: Vec<_> = (0..3).map(|_| f.spawn(&["run", "--all"], &[])).collect();
    for child in runs {
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (run, report) = f.run(&["--all"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(steps(&report, "build"), vec![pair("cached", "hit"); 3]);
}

#[test]
fn ctrl_c_cancels_kills_the_step_tree_and_the_next_run_works() {
    let f = Fixture::new(
        r#"version = 1
[lane.long]
[[lane.long.step]]
name = "wait"
run = "bash -c '(exec -a $MARKER sleep $DELAY) & echo $! > $OUT/pid; wait'"
pass-env = ["OUT", "DELAY", "MARKER"]
[lane.after]
needs = ["long"]
[[lane.after.step]]
name = "never"
run = "echo after >> $OUT/after"
pass-env = ["OUT"]
"#,
    );
    f.repo.commit("init");
    let report = f.out.path().join("cancelled.json");
    let marker = f.marker();
    let child = f.spawn(
        &["run", "--all", "--report", report.to_str().expect("utf-8")],
        &[("DELAY", "300"), ("MARKER", &marker)],
    );
    read_pid(&f.out.path().join("pid"));
    assert!(!processes_named(&marker).is_empty(), "the step runs");
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until("the step's process is gone", || {
        processes_named(&marker).is_empty()
    });
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    assert_eq!(report["status"], "cancelled");
    assert_eq!(lane(&report, "long")["status"], "cancelled");
    assert_eq!(steps(&report, "long"), vec![pair("cancelled", "miss")]);
    assert_eq!(lane(&report, "after")["status"], "cancelled");
    assert!(f.lines("after").is_empty());

    let (run, report) = f.run_env(&["--all"], &[("DELAY", "0"), ("MARKER", &marker)]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(report["status"], "passed");
    assert_eq!(f.lines("after"), ["after"]);
}

#[test]
fn exit_codes_say_whether_a_required_lane_failed() {
    let catalog = |required: &str, advisory: &str| {
        format!(
            "version = 1\n[lane.req]\n[[lane.req.step]]\nname = \"s\"\nrun = \"{required}\"\n\
             [lane.adv]\nclass = \"advisory\"\n[[lane.adv.step]]\nname = \"s\"\nrun = \"{advisory}\"\n"
        )
    };
    let f = Fixture::new(&catalog("true", "false"));
    f.repo.commit("init");
    let (run, report) = f.run(&["--all"]);
    assert_eq!(
        run.code, 0,
        "an advisory failure does not fail the run: {}",
        run.stderr
    );
    assert_eq!(report["status"], "passed");
    assert_eq!(lane(&report, "adv")["status"], "failed");

    f.repo.write("lanes.toml", &catalog("exit 1", "true"));
    let (run, report) = f.run(&["--all"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(report["status"], "failed");

    let run = lanes_in(&f.repo.path, &["run", "nope"], &f.env());
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("no lane `nope`"), "{}", run.stderr);
    let run = lanes_in(&f.repo.path, &["run", "--jobs", "0"], &f.env());
    assert_eq!(run.code, 2, "{}", run.stderr);
    f.repo.write("lanes.toml", "version = 1\n[lane.x]\n");
    let run = lanes_in(&f.repo.path, &["run", "--all"], &f.env());
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("catalog::no-steps"), "{}", run.stderr);
}

#[test]
fn a_failed_need_skips_the_lane_with_its_reason() {
    let f = Fixture::new(
        r#"version = 1
[lane.base]
[[lane.base.step]]
name = "s"
run = "exit 1"
[lane.top]
needs = ["base"]
[[lane.top.step]]
name = "s"
run = "true"
"#,
    );
    f.repo.commit("init");
    let (run, report) = f.run(&["top", "--keep-going"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let top = lane(&report, "top");
    assert_eq!(top["status"], "skipped");
    assert_eq!(top["reasons"][0]["kind"], "requested");
    assert_eq!(top["reasons"][1]["kind"], "need-failed");
    assert_eq!(top["reasons"][1]["lane"], "base");
    assert_eq!(lane(&report, "base")["reasons"][0]["kind"], "needed-by");
}

#[test]
fn the_report_has_exactly_the_documented_shape() {
    let f = three_steps();
    f.repo.write(
        "lanes.toml",
        &format!("{THREE_STEPS}\n[lane.manual]\nclass = \"manual\"\n[[lane.manual.step]]\nname = \"s\"\nrun = \"true\"\n"),
    );
    f.repo.commit("manual lane");
    let (run, report) = f.run(&["--all"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&report),
        [
            "base",
            "duration_ms",
            "head",
            "lanes",
            "run_id",
            "started_at",
            "status",
            "version"
        ]
    );
    assert_eq!(report["version"], 1);
    assert!(report["run_id"].as_str().is_some_and(|s| !s.is_empty()));
    let base = report["base"].as_str().expect("base sha");
    assert_eq!(base.len(), 40);
    assert!(
        report["head"].is_null(),
        "the working tree has no head commit"
    );
    let started = report["started_at"].as_str().expect("started_at");
    assert!(
        started.parse::<jiff::Timestamp>().is_ok(),
        "RFC 3339: {started}"
    );
    assert!(report["duration_ms"].is_u64());
    assert_eq!(report["status"], "passed");
    for lane in report["lanes"].as_array().expect("lanes") {
        assert_eq!(
            keys(lane),
            [
                "class",
                "duration_ms",
                "lock_wait_ms",
                "name",
                "reasons",
                "status",
                "steps"
            ]
        );
        assert!(!lane["reasons"].as_array().expect("reasons").is_empty());
        for step in lane["steps"].as_array().expect("steps") {
            assert_eq!(
                keys(step),
                [
                    "cache",
                    "duration_ms",
                    "exit_code",
                    "key",
                    "log",
                    "miss",
                    "name",
                    "saved_ms",
                    "status"
                ]
            );
            assert_eq!(step["key"].as_str().expect("key").len(), 64);
            assert!(Path::new(step["log"].as_str().expect("log")).is_file());
        }
    }
    let manual = lane(&report, "manual");
    assert_eq!(manual["status"], "skipped");
    assert_eq!(manual["reasons"][0]["kind"], "manual");

    // With --head the report names the commit.
    let head = f.repo.git(&["rev-parse", "HEAD"]);
    let (run, report) = f.run(&["--all", "--head", "HEAD"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(report["head"], head.as_str());
}

#[test]
fn explain_names_the_changed_file_and_the_changed_command() {
    let f = three_steps();
    f.repo.write("src/b.txt", "bravo\n");
    assert_eq!(f.run(&["--all"]).0.code, 0);
    let explain = |args: &[&str]| {
        let mut all = vec!["explain", "build"];
        all.extend_from_slice(args);
        lanes_in(&f.repo.path, &all, &f.env())
    };
    let hit = explain(&[]);
    assert_eq!(hit.code, 0, "{}", hit.stderr);
    assert_eq!(hit.stdout.matches(" hit ").count(), 3, "{}", hit.stdout);

    f.repo.write("src/a.txt", "changed\n");
    f.repo.write(
        "lanes.toml",
        &THREE_STEPS.replace("echo compile", "echo compiling"),
    );
    let miss = explain(&[]);
    assert_eq!(miss.code, 0, "{}", miss.stderr);
    let lines: Vec<&str> = miss.stdout.lines().map(str::trim).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("input src/a.txt: blob ") && l.contains(" -> blake3 ")),
        "{}",
        miss.stdout
    );
    assert!(
        !miss.stdout.contains("src/b.txt"),
        "unchanged files are not named"
    );
    assert!(lines.contains(&"command changed"), "{}", miss.stdout);
    assert!(
        lines.contains(&"previous step's key changed"),
        "{}",
        miss.stdout
    );

    let json = explain(&["--step", "compile", "--json"]).json();
    let step = &json["steps"][0];
    assert_eq!(step["name"], "compile");
    assert_eq!(step["cache"], "miss");
    let kinds: Vec<&str> = step["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| c["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["input-changed", "command", "previous-step"]);
    assert_eq!(step["changes"][0]["path"], "src/a.txt");
    assert_eq!(step["last"]["status"], "passed");

    let unknown = explain(&["--step", "nope"]);
    assert_eq!(unknown.code, 2);
}

#[test]
fn the_report_says_why_each_step_that_ran_missed_as_explain_does() {
    let f = three_steps();
    let (first, report) = f.run(&["--all"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    for step in steps_json(&report, "build") {
        assert_eq!(step["miss"]["kind"], "new", "{step:#}");
        assert_eq!(
            step["miss"]["detail"],
            "no run of this step is recorded in this cache"
        );
    }
    let (_, report) = f.run(&["--all"]);
    for step in steps_json(&report, "build") {
        assert_eq!(step["miss"], Value::Null, "a hit has no miss: {step:#}");
    }

    // One input and the last step's command change: the first two steps miss for the input
    // (and their followers' keys), the last for the input and its command.
    f.repo.write("src/a.txt", "changed\n");
    f.repo.write(
        "lanes.toml",
        &THREE_STEPS.replace("test -f compiled", "test -s compiled"),
    );
    let (third, report) = f.run(&["--all"]);
    assert_eq!(third.code, 0, "{}", third.stderr);
    let build = steps_json(&report, "build");
    let details: Vec<(&str, &str)> = build
        .iter()
        .map(|s| {
            (
                s["miss"]["kind"].as_str().expect("kind"),
                s["miss"]["detail"].as_str().expect("detail"),
            )
        })
        .collect();
    assert_eq!(details[0].0, "inputs");
    assert!(
        details[0].1.starts_with("input src/a.txt: blob ") && !details[0].1.contains("more change"),
        "{details:?}"
    );
    assert_eq!(
        details[1],
        (
            "inputs",
            format!("{} (and 1 more change)", details[0].1).as_str()
        ),
        "compile: the input, then its previous step's key"
    );
    assert_eq!(details[2].0, "inputs");
    assert!(
        details[2].1.ends_with(" (and 2 more changes)"),
        "check: the input, its command, its previous step: {details:?}"
    );

    // The same step failing leaves nothing recorded: the next run says so.
    f.repo.write(
        "lanes.toml",
        &THREE_STEPS.replace("test -f compiled", "exit 3"),
    );
    assert_eq!(f.run(&["--all"]).0.code, 1);
    let (_, report) = f.run(&["--all"]);
    let check = &steps_json(&report, "build")[2];
    assert_eq!(check["miss"]["kind"], "not-recorded", "{check:#}");
}

fn steps_json<'r>(report: &'r Value, lane_name: &str) -> &'r Vec<Value> {
    lane(report, lane_name)["steps"].as_array().expect("steps")
}

#[test]
fn explain_says_when_the_last_run_failed() {
    let f =
        Fixture::new("version = 1\n[lane.x]\n[[lane.x.step]]\nname = \"s\"\nrun = \"exit 1\"\n");
    f.repo.commit("init");
    let never = lanes_in(&f.repo.path, &["explain", "x"], &f.env());
    assert!(
        never.stdout.contains("no run of this step is recorded"),
        "{}",
        never.stdout
    );
    assert_eq!(f.run(&["--all"]).0.code, 1);
    let failed = lanes_in(&f.repo.path, &["explain", "x"], &f.env());
    assert!(
        failed
            .stdout
            .contains("the last run of exactly this step failed"),
        "{}",
        failed.stdout
    );
}

#[test]
fn cache_stats_count_hits_and_gc_empties_the_cache() {
    let f = three_steps();
    assert_eq!(f.run(&["--all"]).0.code, 0);
    assert_eq!(f.run(&["--all"]).0.code, 0);
    let stats = lanes_in(&f.repo.path, &["cache", "stats", "--json"], &f.env()).json();
    assert_eq!(stats["runs"], 2);
    assert_eq!(stats["hits"], 3);
    assert_eq!(stats["misses"], 3);
    assert_eq!(stats["actions"], 3);
    assert!(stats["bytes"].as_u64().expect("bytes") > 0);

    let gc = lanes_in(
        &f.repo.path,
        &["cache", "gc", "--max-size", "0", "--json"],
        &f.env(),
    )
    .json();
    assert_eq!(gc["actions_removed"], 3);
    let stats = lanes_in(&f.repo.path, &["cache", "stats", "--json"], &f.env()).json();
    assert_eq!(stats["actions"], 0);
    assert_eq!(
        stats["blobs"], 1,
        "only the file list `lanes explain` compares with is left"
    );
    f.repo.write("src/a.txt", "after gc\n");
    let explain = lanes_in(&f.repo.path, &["explain", "build"], &f.env());
    assert!(
        explain.stdout.contains("input src/a.txt: blob "),
        "{}",
        explain.stdout
    );
    let (_, report) = f.run(&["--all"]);
    assert_eq!(steps(&report, "build"), vec![pair("passed", "miss"); 3]);

    let bad = lanes_in(
        &f.repo.path,
        &["cache", "gc", "--max-size", "ten"],
        &f.env(),
    );
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("invalid size `ten`"), "{}", bad.stderr);
    let nothing = lanes_in(&f.repo.path, &["cache", "gc"], &f.env());
    assert_eq!(nothing.code, 2);
}

#[test]
fn gc_never_evicts_what_a_running_run_uses() {
    let catalog = |second: &str| {
        format!(
            r#"version = 1
[lane.l]
[[lane.l.step]]
name = "first"
run = "mkdir -p out; echo made > out/first.txt"
[[lane.l.step]]
name = "second"
run = "{second}"
pass-env = ["OUT"]
"#
        )
    };
    let f = Fixture::new(&catalog("true"));
    f.repo.commit("init");
    assert_eq!(f.run(&["--all"]).0.code, 0);

    // The second step now waits for a go-ahead, after the first one was restored from the cache.
    f.repo.write(
        "lanes.toml",
        &catalog(
            "touch $OUT/waiting; while [ ! -f $OUT/go ]; do sleep 0.05; done; cat out/first.txt",
        ),
    );
    let child = f.spawn(&["run", "--all"], &[]);
    wait_until("the second step runs", || {
        f.out.path().join("waiting").exists()
    });
    let gc = lanes_in(
        &f.repo.path,
        &["cache", "gc", "--max-size", "0", "--json"],
        &f.env(),
    )
    .json();
    assert_eq!(gc["live_runs"], 1, "{gc}");
    assert!(gc["protected"].as_u64().expect("protected") >= 1, "{gc}");
    std::fs::write(f.out.path().join("go"), "").expect("go");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (run, report) = f.run(&["--all"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(steps(&report, "l"), vec![pair("cached", "hit"); 2]);
}

#[test]
fn a_cache_mount_persists_is_held_by_one_lane_at_a_time_and_is_not_keyed() {
    let entry = |name: &str| {
        format!(
            r#"
[lane.{name}]
cache-mounts = ["shared"]
[[lane.{name}.step]]
name = "use"
run = "echo {name} >> shared/log; sleep 0.3; cat shared/log"
"#
        )
    };
    let f = Fixture::new(&format!("version = 1\n{}{}", entry("a"), entry("b")));
    f.repo.commit("init");
    let (run, report) = f.run(&["--all", "-j", "2"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let waits: Vec<u64> = ["a", "b"]
        .iter()
        .map(|l| {
            lane(&report, l)["lock_wait_ms"]
                .as_u64()
                .expect("lock_wait_ms")
        })
        .collect();
    assert!(
        waits.iter().any(|&w| w >= 100),
        "one lane waited for the other: {waits:?}"
    );
    assert!(
        run.stderr.contains("waiting for the cache mount `shared`"),
        "{}",
        run.stderr
    );
    let mount_log = f.cache.path().join("mounts/_default/shared/log");
    assert_eq!(
        std::fs::read_to_string(&mount_log)
            .expect("log")
            .lines()
            .count(),
        2
    );

    // Its contents are not keyed: the next run hits although the mount changed.
    let (run, report) = f.run(&["--all"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(steps(&report, "a"), vec![pair("cached", "hit")]);
    // And they persist: a run that really runs sees what earlier runs left.
    let (run, _) = f.run(&["--all", "--no-cache"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        std::fs::read_to_string(&mount_log)
            .expect("log")
            .lines()
            .count(),
        4
    );
}

#[test]
fn declared_outputs_are_the_only_ones_restored() {
    let catalog = |check: &str| {
        format!(
            r#"version = 1
[lane.l]
inputs = ["src/"]
[[lane.l.step]]
name = "make"
run = "mkdir -p dist scratch; echo app > dist/app.js; echo junk > scratch/tmp.o"
outputs = ["dist/**"]
[[lane.l.step]]
name = "check"
run = "{check}"
"#
        )
    };
    let f = Fixture::new(&catalog("cat dist/app.js"));
    f.repo.commit("init");
    assert_eq!(f.run(&["--all"]).0.code, 0);
    f.repo.write(
        "lanes.toml",
        &catalog("cat dist/app.js; test ! -e scratch/tmp.o"),
    );
    let (run, report) = f.run(&["--all"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        steps(&report, "l"),
        vec![pair("cached", "hit"), pair("passed", "miss")]
    );
}

#[test]
fn a_step_with_cache_false_runs_every_time_and_later_steps_still_hit() {
    let f = Fixture::new(
        r#"version = 1
[lane.l]
[[lane.l.step]]
name = "stamp"
run = "echo stamp >> $OUT/stamps; echo generated > gen.txt"
pass-env = ["OUT"]
cache = false
[[lane.l.step]]
name = "use"
run = "cat gen.txt"
"#,
    );
    f.repo.commit("init");
    assert_eq!(f.run(&["--all"]).0.code, 0);
    let (run, report) = f.run(&["--all"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        steps(&report, "l"),
        vec![pair("passed", "disabled"), pair("cached", "hit")]
    );
    assert_eq!(f.lines("stamps").len(), 2);
    assert_eq!(
        lane(&report, "l")["status"],
        "passed",
        "not every step was a hit"
    );
}

#[test]
fn a_lane_timeout_stops_the_lane_across_steps() {
    let f = Fixture::new(
        r#"version = 1
[lane.l]
timeout = "1s"
[[lane.l.step]]
name = "first"
run = "sleep 0.6"
[[lane.l.step]]
name = "second"
run = "sleep 5"
[[lane.l.step]]
name = "third"
run = "true"
"#,
    );
    f.repo.commit("init");
    let (run, report) = f.run(&["--all"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        steps(&report, "l"),
        vec![
            pair("passed", "miss"),
            pair("timed-out", "miss"),
            pair("skipped", "miss")
        ]
    );
    let second = lane(&report, "l")["steps"][1]["duration_ms"]
        .as_u64()
        .expect("ms");
    assert!(
        second < 4000,
        "the lane's deadline cut the step short: {second} ms"
    );
}

#[test]
fn verbose_streams_step_output_and_plain_output_shows_the_failing_log_tail() {
    let f = Fixture::new(
        r#"version = 1
[lane.l]
[[lane.l.step]]
name = "noisy"
run = "for i in $(seq 1 80); do echo line-$i; done; exit 2"
"#,
    );
    f.repo.commit("init");
    let (run, _) = f.run(&["--all"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("l/noisy: FAILED with exit code 2"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("] line-80"),
        "the tail is shown: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("] line-31\n"),
        "50 lines: {}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("] line-30\n"),
        "only 50 lines: {}",
        run.stderr
    );
    assert!(
        run.stdout.contains("l     required  failed"),
        "summary: {}",
        run.stdout
    );

    let (run, _) = f.run(&["--all", "--verbose"]);
    assert!(
        run.stderr.contains("l/noisy | [") && run.stderr.contains("] line-1\n"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_full_cache_disk_warns_and_the_step_still_passes() {
    let f = Fixture::new(
        r#"version = 1
[lane.big]
[[lane.big.step]]
name = "write"
run = "head -c 700000 /dev/urandom > out.bin"
"#,
    );
    f.repo.commit("init");
    let mount = f.out.path().join("small-cache");
    std::fs::create_dir(&mount).expect("mkdir");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mount)
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        mounted,
        "this test mounts a 1 MiB tmpfs, which needs root (CI runs as root)"
    );
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount.clone());
    let cache = mount.to_str().expect("utf-8");
    let (run, report) = f.run_env(&["--all"], &[("LANES_CACHE_DIR", cache)]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(steps(&report, "big"), vec![pair("passed", "miss")]);
    assert!(
        run.stderr
            .contains("warning: lane big step write: the result was not cached"),
        "{}",
        run.stderr
    );
}

#[test]
fn pass_env_values_reach_the_step_but_never_the_cache_or_the_report() {
    let f = Fixture::new(
        r#"version = 1
[lane.deploy]
[[lane.deploy.step]]
name = "use"
run = "test ${#TOKEN} = 15 && echo a token of 15 characters is set"
pass-env = ["TOKEN"]
"#,
    );
    f.repo.commit("init");
    let (run, report) = f.run_env(&["--all"], &[("TOKEN", "s3cr3t-value-42")]);
    assert_eq!(run.code, 0, "the step sees the value: {}", run.stderr);
    assert!(!report.to_string().contains("s3cr3t"));
    let mut stack = vec![f.cache.path().to_path_buf()];
    let mut files = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                files += 1;
                let bytes = std::fs::read(&path).expect("read");
                assert!(
                    !String::from_utf8_lossy(&bytes).contains("s3cr3t"),
                    "the secret is in {}",
                    path.display()
                );
            }
        }
    }
    assert!(files > 5, "the cache was written ({files} files)");
    let (_, report) = f.run_env(&["--all"], &[("TOKEN", "s3cr3t-value-42")]);
    assert_eq!(steps(&report, "deploy"), vec![pair("cached", "hit")]);
    let (_, report) = f.run_env(&["--all"], &[("TOKEN", "rotated")]);
    assert_eq!(steps(&report, "deploy"), vec![pair("failed", "miss")]);
}

#[test]
fn a_required_lane_blocked_by_a_failed_advisory_need_fails_the_run() {
    let f = Fixture::new(
        r#"version = 1
[lane.adv]
class = "advisory"
[[lane.adv.step]]
name = "s"
run = "exit 1"
[lane.req]
needs = ["adv"]
[[lane.req.step]]
name = "s"
run = "true"
"#,
    );
    f.repo.commit("init");
    let (run, report) = f.run(&["--all"]);
    assert_eq!(run.code, 1, "the required lane never ran: {}", run.stderr);
    assert_eq!(report["status"], "failed");
    assert_eq!(lane(&report, "req")["status"], "skipped");
}

#[test]
fn a_lane_that_cannot_prepare_its_directory_says_why_in_the_step_log() {
    let f = Fixture::new(
        "version = 1\n[lane.l]\ncache-mounts = [\"target\"]\n[[lane.l.step]]\nname = \"s\"\nrun = \"true\"\n",
    );
    f.repo.write("target/keep", "committed by mistake\n");
    f.repo.commit("init");
    let (run, report) = f.run(&["--all"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(steps(&report, "l"), vec![pair("failed", "miss")]);
    let log = lane(&report, "l")["steps"][0]["log"].as_str().expect("log");
    let log = std::fs::read_to_string(log).expect("the log exists");
    assert!(log.contains("the cache mount `target` collides"), "{log}");
}

#[test]
fn on_a_terminal_each_running_lane_has_a_live_line_under_a_run_progress_bar() {
    let f = Fixture::new(
        "version = 1\n[lane.slowpoke]\n[[lane.slowpoke.step]]\nname = \"nap\"\nrun = \"sleep 0.5\"\n",
    );
    f.repo.commit("init");
    // `script` gives lanes a pseudo-terminal for stderr.
    let lanes = env!("CARGO_BIN_EXE_lanes");
    let mut cmd = Command::new("script");
    cmd.current_dir(&f.repo.path)
        .args(["-qec", &format!("{lanes} run --all"), "/dev/null"])
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("TERM", "xterm")
        .env_remove("NO_COLOR");
    for (k, v) in f.env() {
        cmd.env(k, v);
    }
    cmd.env("CACHE", f.cache.path());
    let out = cmd.output().expect("script runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(
        screen.contains("0/1 lanes"),
        "the run's progress bar: {screen}"
    );
    assert!(
        screen
            .split(['\r', '\n'])
            .any(|l| l.contains("slowpoke") && l.contains(" nap") && !l.contains("slowpoke/nap")),
        "a live line naming the lane and its current step: {screen}"
    );
    assert!(screen.contains("slowpoke/nap: passed"), "{screen}");
}

#[test]
fn a_cache_directory_inside_the_repository_is_warned_about() {
    let f = Fixture::new("version = 1\n[lane.l]\n[[lane.l.step]]\nname = \"s\"\nrun = \"true\"\n");
    f.repo.write(".gitignore", ".cache/\n");
    f.repo.commit("init");
    let inside = f.repo.path.join(".cache/lanes");
    let (run, _) = f.run_env(
        &["--all"],
        &[("LANES_CACHE_DIR", inside.to_str().expect("utf-8"))],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("is inside the repository"),
        "{}",
        run.stderr
    );
    let (run, _) = f.run(&["--all"]);
    assert!(
        !run.stderr.contains("is inside the repository"),
        "{}",
        run.stderr
    );
}

/// Two lanes; `look` runs after `other` (so another lane's directory exists) and writes to
/// `$OUT/leaks` every place outside its own files it can reach by absolute path.
fn sandbox_fixture() -> Fixture {
    let f = Fixture::new(
        r#"version = 1
[lane.other]
inputs = ["b/"]
[[lane.other.step]]
name = "s"
run = "true"
cache = false

[lane.look]
inputs = ["a/"]
needs = ["other"]
[[lane.look.step]]
name = "look"
cache = false
pass-env = ["OUT", "REPO", "CACHE"]
run = """
: > $OUT/leaks
test -e "$REPO/b/secret.txt" && echo repo-file >> $OUT/leaks
test -e "$REPO/.git/HEAD" && echo git-dir >> $OUT/leaks
test -e "$CACHE/v1" && echo cache-store >> $OUT/leaks
test -e "$CACHE/work/other" && echo other-lane >> $OUT/leaks
touch "$REPO/new.txt" 2>/dev/null && echo repo-writable >> $OUT/leaks
cat "$PWD/a/visible.txt" > $OUT/own
echo home > $HOME/h && cat $HOME/h >> $OUT/own
true
"""
"#,
    );
    f.repo
        .write("a/visible.txt", "yes\n")
        .write("b/secret.txt", "no\n");
    f.repo.commit("init");
    f
}

#[test]
fn a_step_cannot_reach_the_repository_or_the_cache_by_absolute_path() {
    let f = sandbox_fixture();
    let repo = f.repo.path.to_str().expect("utf-8");
    let cache = f.cache.path().to_str().expect("utf-8");
    // Covers made by a sandbox this test itself runs in (lanes testing lanes) are already here.
    let covers = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .expect("mountinfo")
            .lines()
            .filter(|l| l.contains("lanes-sandbox"))
            .count()
    };
    let covers_before = covers();
    let (run, report) = f.run_env(&["--all"], &[("REPO", repo), ("CACHE", cache)]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(steps(&report, "look"), vec![pair("passed", "disabled")]);
    assert_eq!(f.lines("leaks"), Vec::<String>::new());
    assert_eq!(f.lines("own"), ["yes", "home"]);
    assert!(!f.repo.path.join("new.txt").exists());
    // The covers lived in the step's own mount namespace only.
    assert_eq!(covers(), covers_before);

    // Without the sandbox the same step reaches all of it: the checks above can fail.
    let (run, _) = f.run_env(
        &["--all", "--no-sandbox"],
        &[("REPO", repo), ("CACHE", cache)],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        f.lines("leaks"),
        [
            "repo-file",
            "git-dir",
            "cache-store",
            "other-lane",
            "repo-writable"
        ]
    );
}

#[test]
fn the_sandbox_works_for_a_user_without_root() {
    let f = sandbox_fixture();
    let nobody = "65534";
    for dir in [&f.repo.path, f.cache.path(), f.out.path()] {
        let parent = dir.parent().expect("parent");
        let owned = Command::new("chown")
            .args(["-R", &format!("{nobody}:{nobody}")])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            owned,
            "this test hands directories to nobody, which needs root (CI runs as root)"
        );
        // Temporary directories are 0700: let nobody walk through them. Only add the bit: a
        // parent may be /tmp itself, whose mode (1777) must stay.
        let _ = Command::new("chmod").arg("a+x").arg(parent).status();
    }
    let mut cmd = f.command("setpriv");
    cmd.args([
        &format!("--reuid={nobody}"),
        &format!("--regid={nobody}"),
        "--clear-groups",
        env!("CARGO_BIN_EXE_lanes"),
        "run",
        "--all",
    ])
    .env("HOME", f.out.path())
    .env("REPO", &f.repo.path)
    .env("CACHE", f.cache.path());
    let out = cmd.output().expect("setpriv runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("without a sandbox"), "{stderr}");
    assert_eq!(f.lines("leaks"), Vec::<String>::new());
    assert_eq!(f.lines("own"), ["yes", "home"]);
}

#[test]
fn without_namespaces_steps_run_unsandboxed_after_a_warning() {
    let f = sandbox_fixture();
    // A user namespace that may not make mount namespaces: the sandbox cannot be set up.
    let script = format!(
        "echo 0 > /proc/sys/user/max_mnt_namespaces && exec '{}' run --all",
        env!("CARGO_BIN_EXE_lanes")
    );
    let mut cmd = f.command("unshare");
    cmd.args(["--user", "--map-root-user", "sh", "-c", &script])
        .env("REPO", &f.repo.path)
        .env("CACHE", f.cache.path());
    let out = cmd.output().expect("unshare runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: steps run without a sandbox")
            && stderr.contains("unshare(CLONE_NEWNS)"),
        "{stderr}"
    );
    assert!(f.lines("leaks").contains(&"repo-file".to_owned()));
}

#[test]
fn a_cache_mount_that_links_into_the_repository_still_works_in_the_sandbox() {
    // How CI shares cargo's target directory: the mount is a symlink to a directory that the
    // sandbox hides.
    let f = Fixture::new(
        r#"version = 1
[lane.build]
cache-mounts = ["target"]
[[lane.build.step]]
name = "s"
run = "cat target/before && echo built > target/after"
cache = false
"#,
    );
    f.repo.write(".gitignore", "/target/\n");
    f.repo.write("target/before", "from the checkout\n");
    f.repo.commit("init");
    let mounts = f.cache.path().join("mounts/_default");
    std::fs::create_dir_all(&mounts).expect("mkdir");
    std::os::unix::fs::symlink(f.repo.path.join("target"), mounts.join("target")).expect("symlink");
    let (run, report) = f.run(&["--all"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(steps(&report, "build"), vec![pair("passed", "disabled")]);
    assert_eq!(
        std::fs::read_to_string(f.repo.path.join("target/after")).expect("written"),
        "built\n"
    );
}

#[test]
fn a_directory_deleted_under_an_outputs_filter_stays_deleted_after_a_hit() {
    // `gen/**` selects the files under `gen` but not `gen` itself: the deletion of the directory
    // must still reach the files it held.
    let catalog = |check: &str| {
        format!(
            r#"version = 1
[lane.l]
inputs = ["gen/"]
[[lane.l.step]]
name = "clean"
run = "rm -rf gen"
outputs = ["gen/**"]
[[lane.l.step]]
name = "check"
run = "{check}"
"#
        )
    };
    let f = Fixture::new(&catalog("test ! -e gen/a.txt"));
    f.repo.write("gen/a.txt", "stale\n");
    f.repo.commit("init");
    let (run, _) = f.run(&["--all"]);
    assert_eq!(run.code, 0, "{}", run.stderr);

    // A changed second step runs after the first step's hit.
    f.repo.write(
        "lanes.toml",
        &catalog("test ! -e gen/a.txt; echo checked again"),
    );
    let (run, report) = f.run(&["--all"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        steps(&report, "l"),
        vec![pair("cached", "hit"), pair("passed", "miss")]
    );
}

#[test]
fn a_step_after_a_cache_false_step_is_keyed_on_what_that_step_left() {
    let f = Fixture::new(
        r#"version = 1
[lane.l]
[[lane.l.step]]
name = "stamp"
run = "cat $OUT/value > gen.txt"
pass-env = ["OUT"]
cache = false
[[lane.l.step]]
name = "copy"
run = "cp gen.txt copy.txt"
[[lane.l.step]]
name = "check"
run = "cmp gen.txt copy.txt"
cache = false
"#,
    );
    f.repo.commit("init");
    std::fs::write(f.out.path().join("value"), "1\n").expect("write");
    let (run, _) = f.run(&["--all"]);
    assert_eq!(run.code, 0, "{}", run.stderr);

    // The same value again: the copy is reused.
    let (run, report) = f.run(&["--all"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(steps(&report, "l")[1], pair("cached", "hit"));

    // Another value: the copy made from the old one must not be restored.
    std::fs::write(f.out.path().join("value"), "2\n").expect("write");
    let (run, report) = f.run(&["--all"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        steps(&report, "l"),
        vec![
            pair("passed", "disabled"),
            pair("passed", "miss"),
            pair("passed", "disabled")
        ]
    );
}

#[test]
fn a_result_recorded_without_the_sandbox_is_not_served_to_a_sandboxed_run() {
    // The step reads a file outside its inputs by absolute path: it passes only without the
    // sandbox, which hides the repository.
    let f = Fixture::new(
        r#"version = 1
[lane.l]
inputs = ["a/"]
[[lane.l.step]]
name = "peek"
pass-env = ["REPO"]
run = "cat \"$REPO/b/outside.txt\""
"#,
    );
    f.repo
        .write("a/inside.txt", "in\n")
        .write("b/outside.txt", "out\n");
    f.repo.commit("init");
    let repo = f.repo.path.to_str().expect("utf-8");
    let (run, report) = f.run_env(&["--all", "--no-sandbox"], &[("REPO", repo)]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(steps(&report, "l"), vec![pair("passed", "miss")]);

    // A sandboxed run does not reuse it: the step runs, and fails as it must.
    let (run, report) = f.run_env(&["--all"], &[("REPO", repo)]);
    assert!(!run.stderr.contains("without a sandbox"), "{}", run.stderr);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(steps(&report, "l"), vec![pair("failed", "miss")]);
    let miss = &lane(&report, "l")["steps"][0]["miss"];
    assert!(
        miss["detail"]
            .as_str()
            .is_some_and(|d| d.contains("without the sandbox")),
        "{miss:#}"
    );

    // The other way round is safe: a sandboxed result serves an unsandboxed run.
    f.repo.write(
        "lanes.toml",
        "version = 1\n[lane.l]\ninputs = [\"a/\"]\n[[lane.l.step]]\nname = \"own\"\nrun = \"cat a/inside.txt\"\n",
    );
    let (run, _) = f.run(&["--all"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (run, report) = f.run(&["--all", "--no-sandbox"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(steps(&report, "l"), vec![pair("cached", "hit")]);
}

/// A file outside every lane, that restores must never touch: `$OUT/outside/`.
fn outside(f: &Fixture) -> PathBuf {
    let dir = f.out.path().join("outside");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("x.txt"), "victim\n").expect("write");
    dir
}

/// Runs without the sandbox, which would hide nothing here anyway: what is checked is the restore
/// code itself.
fn a_hit_then_a_run(f: &Fixture, catalog: &dyn Fn(&str) -> String) -> (Run, Value) {
    let (run, _) = f.run(&["--all", "--no-sandbox"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    f.repo.write("lanes.toml", &catalog("true; echo again"));
    f.run(&["--all", "--no-sandbox"])
}

#[test]
fn a_restore_deletes_nothing_through_a_directory_a_step_made_a_symlink() {
    let catalog = |check: &str| {
        format!(
            r#"version = 1
[lane.l]
inputs = ["data/"]
[[lane.l.step]]
name = "swap"
pass-env = ["OUT"]
run = "rm -rf data && ln -s \"$OUT/outside\" data"
[[lane.l.step]]
name = "check"
run = "{check}"
"#
        )
    };
    let f = Fixture::new(&catalog("true"));
    f.repo.write("data/x.txt", "in the lane\n");
    f.repo.commit("init");
    let outside = outside(&f);
    let (run, report) = a_hit_then_a_run(&f, &catalog);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(steps(&report, "l")[0], pair("cached", "hit"));
    assert_eq!(
        std::fs::read_to_string(outside.join("x.txt"))
            .ok()
            .as_deref(),
        Some("victim\n"),
        "the restore deleted a file outside the lane"
    );
}

#[test]
fn a_restore_writes_nothing_through_a_committed_symlink() {
    let catalog = |check: &str| {
        format!(
            r#"version = 1
[lane.l]
inputs = ["out"]
[[lane.l.step]]
name = "make"
run = "rm out && mkdir out && echo made > out/f.txt"
outputs = ["out/**"]
[[lane.l.step]]
name = "check"
run = "test \"$(cat out/f.txt)\" = made; {check}"
"#
        )
    };
    let f = Fixture::new(&catalog("true"));
    let outside = outside(&f);
    std::os::unix::fs::symlink(&outside, f.repo.path.join("out")).expect("symlink");
    f.repo.commit("init");
    let (run, report) = a_hit_then_a_run(&f, &catalog);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(steps(&report, "l")[0], pair("cached", "hit"));
    assert!(
        !outside.join("f.txt").exists(),
        "the restore wrote through the symlink"
    );
}

#[test]
fn state_written_beside_the_lane_directory_is_gone_next_run() {
    let f = Fixture::new(
        r#"version = 1
[lane.l]
[[lane.l.step]]
name = "leave"
run = "test ! -e ../left.txt && echo left > ../left.txt"
cache = false
"#,
    );
    f.repo.commit("init");
    for _ in 0..2 {
        let (run, report) = f.run(&["--all"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(steps(&report, "l"), vec![pair("passed", "disabled")]);
    }
}

/// A make-like step: it rebuilds `build/out` (in the shared cache mount) only when `src.txt` is
/// newer, as cargo judges freshness by file times, then "tests" what it built. It says when it
/// builds (`$GATE.building`) and waits for `$GATE` before writing the output.
const MAKE_LIKE: &str = r#"version = 1
[lane.test]
inputs = ["src.txt"]
cache-mounts = ["build"]
[[lane.test.step]]
name = "test"
pass-env = ["GATE"]
run = """
if [ ! -e build/out ] || [ src.txt -nt build/out ]; then
  touch "$GATE.building"
  while [ ! -e "$GATE" ]; do sleep 0.02; done
  cp src.txt build/out
fi
grep -q pass build/out
"""
"#;

/// `lanes run --all [extra]` in `repo`, in the background, its stderr in `log`.
fn spawn_run(
    repo: &Path,
    cache: &Path,
    gate: &Path,
    log: &Path,
    extra: &[&str],
) -> std::process::Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lanes"));
    cmd.current_dir(repo)
        .args(["run", "--all"])
        .args(extra)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env_remove("LANES_BASE")
        .env("LANES_CACHE_DIR", cache)
        .env("GATE", gate)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"));
    cmd.spawn().expect("spawn lanes")
}

/// The exit code of `child`, and its stderr for the assertion message.
fn exit_code(child: std::process::Child, log: &Path) -> (i32, String) {
    let out = child.wait_with_output().expect("wait");
    let code = out.status.code().expect("exited");
    (code, std::fs::read_to_string(log).unwrap_or_default())
}

#[test]
fn a_lane_that_waited_for_a_cache_mount_never_takes_another_checkouts_outputs_as_fresh() {
    let passing = Repo::new();
    passing
        .write("lanes.toml", MAKE_LIKE)
        .write("src.txt", "pass\n");
    passing.commit("init");
    let failing = passing.clone_with(&[]);
    failing.write("src.txt", "fail\n");
    let cache = tempfile::tempdir().expect("tempdir");
    // Outside /tmp: steps have their own.
    let scratch = common::outside_tmp();
    let gate = scratch.path().join("gate");
    let building = scratch.path().join("gate.building");
    let (log_a, log_b) = (scratch.path().join("a.log"), scratch.path().join("b.log"));

    // The passing checkout holds the mount and builds; the failing one writes its lane
    // directory and waits for the mount meanwhile.
    let a = spawn_run(&passing.path, cache.path(), &gate, &log_a, &[]);
    wait_until("the passing checkout builds", || building.exists());
    let b = spawn_run(&failing.path, cache.path(), &gate, &log_b, &[]);
    wait_until("the failing checkout waits for the mount", || {
        std::fs::read_to_string(&log_b).is_ok_and(|t| t.contains("waiting for the cache mount"))
    });
    std::fs::write(&gate, "").expect("open the gate");
    let (code, log) = exit_code(a, &log_a);
    assert_eq!(code, 0, "the passing checkout passes: {log}");
    let (code, log) = exit_code(b, &log_b);
    assert_eq!(code, 1, "the failing checkout fails: {log}");

    // Each slot again, the other checkout's slot having used the mount since: the passing
    // checkout runs in slot 0 (not from the cache) and builds; the failing one, kept out of
    // slot 0, runs in slot 1, whose files are as it left them, older than that build.
    let a = spawn_run(&passing.path, cache.path(), &gate, &log_a, &["--no-cache"]);
    let (code, log) = exit_code(a, &log_a);
    assert_eq!(code, 0, "the passing checkout passes again: {log}");
    let slot0 = std::fs::File::open(cache.path().join("work/test/0.lock")).expect("slot lock");
    slot0.lock().expect("hold slot 0");
    let b = spawn_run(&failing.path, cache.path(), &gate, &log_b, &[]);
    let (code, log) = exit_code(b, &log_b);
    assert_eq!(code, 1, "the failing checkout fails again: {log}");
    drop(slot0);
}

#[test]
fn a_reused_slot_keeps_unchanged_files_at_their_times_and_rewrites_the_rest() {
    // `fake.txt` is rewritten by the step with its size, inode and mtime kept: only its ctime
    // tells, and the next run must still start from the committed bytes.
    let f = Fixture::new(
        r#"version = 1
[lane.l]
inputs = ["src/"]
[[lane.l.step]]
name = "s"
cache = false
pass-env = ["OUT"]
run = """
cd src
stat -c '%n %i %y' keep.txt edit.txt >> $OUT/stat
grep -qx original fake.txt
t=$(stat -c %y fake.txt)
printf 'changed!\\n' > fake.txt
touch -d "$t" fake.txt
echo junk > new.txt
test ! -e ../stale.txt
cp new.txt ../stale.txt
"""
"#,
    );
    f.repo
        .write("src/keep.txt", "kept\n")
        .write("src/edit.txt", "before\n")
        .write("src/fake.txt", "original\n");
    f.repo.commit("init");
    let (run, _) = f.run(&["--all"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    f.repo.write("src/edit.txt", "after\n");
    let (run, _) = f.run(&["--all"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let stat = f.lines("stat");
    assert_eq!(stat.len(), 4, "{stat:?}");
    assert_eq!(
        stat[0], stat[2],
        "an unchanged file keeps its inode and times"
    );
    assert_ne!(stat[1], stat[3], "a changed file is written anew");
}
