//! Pins held against the host by `lanes run`: the real binary, a real repository, a pin whose
//! command reads a file outside the repository that the test rewrites between runs (as a
//! toolchain upgrade would change what `rustc --version` prints).

mod common;

use common::{Repo, Run, lanes_in};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A repository whose lane `build` uses the pin `tool`, a cache directory, and the file the
/// pin's command prints (the host's "installed version").
struct Host {
    repo: Repo,
    cache: tempfile::TempDir,
    outside: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        // Not under /tmp, which is each step's own in the sandbox.
        let outside = common::outside_tmp();
        let repo = Repo::new();
        // The command finds the file through `pass-env`, as a rustup proxy finds its toolchains
        // through RUSTUP_HOME.
        repo.write(
            "lanes.toml",
            r#"version = 1

[pins]
tool = { command = "cat \"$OUT/tool-version\"", expect = "tool 1.0", pass-env = ["OUT"] }

[lane.build]
class = "required"
pins = ["tool"]
[[lane.build.step]]
name = "compile"
run = "echo compiled >> \"$OUT/runs.txt\"; echo compiled > out.txt"
pass-env = ["OUT"]
"#,
        )
        .write("src/main.c", "int main() {}\n");
        repo.commit("initial");
        Host {
            repo,
            cache: tempfile::tempdir().expect("tempdir"),
            outside,
        }
    }

    /// Sets what the pin's command prints on this host.
    fn install(&self, version: &str) {
        std::fs::write(
            self.outside.path().join("tool-version"),
            format!("{version}\n"),
        )
        .expect("write the version file");
    }

    /// How many times the step really ran.
    fn runs(&self) -> usize {
        std::fs::read_to_string(self.outside.path().join("runs.txt"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    fn env(&self) -> Vec<(&str, &str)> {
        vec![
            (
                "LANES_CACHE_DIR",
                self.cache.path().to_str().expect("utf-8"),
            ),
            ("OUT", self.outside.path().to_str().expect("utf-8")),
        ]
    }

    fn report_path(&self) -> PathBuf {
        self.outside.path().join("report.json")
    }

    /// `lanes run build --report R`; the outcome and the report.
    fn run(&self) -> (Run, Value) {
        let report = self.report_path();
        let _ = std::fs::remove_file(&report);
        let run = lanes_in(
            &self.repo.path,
            &["run", "build", "--report", report.to_str().expect("utf-8")],
            &self.env(),
        );
        let report = read_json(&report);
        (run, report)
    }

    /// Results recorded in the cache.
    fn recorded(&self) -> u64 {
        let stats = lanes_in(&self.repo.path, &["cache", "stats", "--json"], &self.env()).json();
        stats["actions"].as_u64().expect("actions is a count")
    }
}

fn read_json(path: &Path) -> Value {
    std::fs::read_to_string(path)
        .map(|text| serde_json::from_str(&text).expect("the report is JSON"))
        .unwrap_or(Value::Null)
}

fn lane<'r>(report: &'r Value, name: &str) -> &'r Value {
    report["lanes"]
        .as_array()
        .expect("lanes")
        .iter()
        .find(|l| l["name"] == name)
        .unwrap_or_else(|| panic!("no lane {name} in {report:#}"))
}

/// The lane errors with `pin-mismatch` and neither runs, restores nor records anything.
fn assert_pin_mismatch(run: &Run, report: &Value, found: &str) {
    assert_eq!(
        run.code, 1,
        "a required lane that errors fails the run: {run:?}"
    );
    let build = lane(report, "build");
    assert_eq!(build["status"], "error", "{report:#}");
    assert_eq!(
        build["error"],
        serde_json::json!({"kind": "pin-mismatch", "pin": "tool", "expected": "tool 1.0",
            "found": found}),
        "{report:#}"
    );
    assert_eq!(
        build["steps"],
        serde_json::json!([]),
        "no step was looked up, restored or run: {report:#}"
    );
    assert_eq!(report["status"], "failed", "{report:#}");
    assert!(
        run.stdout.contains("build") && run.stdout.contains("error"),
        "the summary shows the lane's state: {}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains(&format!("(pin tool: expected `tool 1.0`, found `{found}`)")),
        "the summary says which pin and both values: {}",
        run.stdout
    );
    assert!(
        run.stderr.contains("pin `tool` does not match this host"),
        "the progress says why: {}",
        run.stderr
    );
}

#[test]
fn a_lane_whose_pin_does_not_match_the_host_errors_and_restores_and_records_nothing() {
    let host = Host::new();

    // The wrong tool from the start: nothing runs and nothing is recorded under `tool 1.0`.
    host.install("tool 2.0");
    let (run, report) = host.run();
    assert_pin_mismatch(&run, &report, "tool 2.0");
    assert_eq!(host.runs(), 0, "the step never ran");
    assert_eq!(host.recorded(), 0, "nothing recorded under the pinned key");

    // The pinned tool: the step runs and is recorded.
    host.install("tool 1.0");
    let (run, report) = host.run();
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(lane(&report, "build")["steps"][0]["status"], "passed");
    assert_eq!(host.runs(), 1);
    assert_eq!(host.recorded(), 1);

    // The tool changes under the recorded result: no hit is served to this host.
    host.install("tool 2.0");
    let (run, report) = host.run();
    assert_pin_mismatch(&run, &report, "tool 2.0");
    assert_eq!(host.runs(), 1, "the step did not run");
    assert_eq!(host.recorded(), 1, "nothing more recorded");

    // The tool is back: the recorded result is used again.
    host.install("tool 1.0");
    let (run, report) = host.run();
    assert_eq!(run.code, 0, "{run:?}");
    let step = &lane(&report, "build")["steps"][0];
    assert_eq!(step["status"], "cached", "{report:#}");
    assert_eq!(step["cache"], "hit", "{report:#}");
    assert_eq!(host.runs(), 1, "a hit, not a run");
}

#[test]
fn a_pin_whose_command_fails_is_a_mismatch_that_says_why() {
    let host = Host::new();
    // No version file at all: `cat` fails, as a missing tool's command would.
    let (run, report) = host.run();
    let build = lane(&report, "build");
    assert_eq!(build["status"], "error", "{report:#}");
    let found = build["error"]["found"].as_str().expect("found is a string");
    assert!(
        found.starts_with("(exit code 1: ") && found.contains("No such file"),
        "found says the command failed and how: {found}"
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(host.runs(), 0);
}

#[test]
fn a_pin_command_runs_once_per_process_however_many_lanes_use_it() {
    let outside = common::outside_tmp();
    let cache = tempfile::tempdir().expect("tempdir");
    let repo = Repo::new();
    // Each run of the command leaves a line in calls.txt.
    repo.write(
        "lanes.toml",
        r#"version = 1

[pins]
tool = { command = "echo called >> \"$OUT/calls.txt\"; echo tool 1.0", expect = "tool 1.0", pass-env = ["OUT"] }

[lane.one]
pins = ["tool"]
step = [{ name = "s", run = "true" }]

[lane.two]
pins = ["tool"]
step = [{ name = "s", run = "true" }]

[lane.three]
pins = ["tool"]
step = [{ name = "s", run = "true" }]
"#,
    );
    repo.commit("initial");
    let env = [
        ("LANES_CACHE_DIR", cache.path().to_str().expect("utf-8")),
        ("OUT", outside.path().to_str().expect("utf-8")),
    ];
    let run = lanes_in(&repo.path, &["run", "one", "two", "three"], &env);
    assert_eq!(run.code, 0, "{run:?}");
    let calls = std::fs::read_to_string(outside.path().join("calls.txt")).unwrap_or_default();
    assert_eq!(
        calls.lines().count(),
        1,
        "three lanes, one check: {calls:?}"
    );
}
