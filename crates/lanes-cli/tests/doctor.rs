//! `lanes doctor` end to end: the real binary on a real repository whose pins read a file
//! outside it, which the test rewrites (the host's "installed version") or lets `ensure` write.

mod common;

use common::{Repo, Run, lanes_in};
use serde_json::Value;

/// A repository with the pins `tool` (with an `ensure` that installs `tool 1.0`) and `other`
/// (without one), a cache directory, and the directory the pins read.
struct Host {
    repo: Repo,
    cache: tempfile::TempDir,
    outside: tempfile::TempDir,
}

impl Host {
    fn new(ensure: &str) -> Host {
        let outside = tempfile::tempdir().expect("tempdir");
        let dir = outside.path().display().to_string();
        let repo = Repo::new();
        repo.write(
            "lanes.toml",
            &format!(
                r#"version = 1

[pins]
tool = {{ command = "cat '{dir}/tool-version'", expect = "tool 1.0", ensure = "{ensure}" }}
other = {{ command = "cat '{dir}/other-version'", expect = "other 3" }}

[lane.build]
pins = ["tool", "other"]
step = [{{ name = "s", run = "true" }}]
"#
            ),
        );
        let host = Host {
            repo,
            cache: tempfile::tempdir().expect("tempdir"),
            outside,
        };
        host.install("other-version", "other 3");
        host
    }

    fn install(&self, file: &str, version: &str) {
        std::fs::write(self.outside.path().join(file), format!("{version}\n"))
            .expect("write a version file");
    }

    fn doctor(&self, args: &[&str]) -> Run {
        let mut all = vec!["doctor"];
        all.extend_from_slice(args);
        lanes_in(
            &self.repo.path,
            &all,
            &[
                (
                    "LANES_CACHE_DIR",
                    self.cache.path().to_str().expect("utf-8"),
                ),
                ("OUT", self.outside.path().to_str().expect("utf-8")),
            ],
        )
    }

    fn doctor_json(&self, args: &[&str]) -> (Run, Value) {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let run = self.doctor(&all);
        let json = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("stdout is one JSON document ({e}): {run:?}"));
        (run, json)
    }
}

fn pin<'r>(report: &'r Value, name: &str) -> &'r Value {
    report["pins"]
        .as_array()
        .expect("pins")
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no pin {name} in {report:#}"))
}

/// The exit code follows the report: 0 when every check passed, 1 otherwise. Whether the
/// sandbox, cgroups and disk pass depends on the machine, so only the relation is asserted,
/// and the checks are shown whatever they say.
fn assert_exit_follows(run: &Run, report: &Value) {
    let all_ok = report["pins"]
        .as_array()
        .expect("pins")
        .iter()
        .all(|p| p["ok"] == true)
        && report["sandbox"]["ok"] == true
        && report["cgroups"]["ok"] == true
        && report["disk"]["ok"] == true;
    assert_eq!(report["ok"], all_ok, "{report:#}");
    assert_eq!(run.code, if all_ok { 0 } else { 1 }, "{report:#}");
    assert_eq!(report["version"], 1);
    assert!(
        report["sandbox"]["parts"][0]["name"] == "mount-namespace",
        "{report:#}"
    );
    assert!(
        ["v1", "v2", "hybrid", "none"]
            .contains(&report["cgroups"]["version"].as_str().unwrap_or("")),
        "{report:#}"
    );
    assert!(report["disk"]["path"].is_string(), "{report:#}");
}

#[test]
fn doctor_shows_a_matching_pin_as_ok() {
    let host = Host::new("true");
    host.install("tool-version", "tool 1.0");
    let (run, report) = host.doctor_json(&[]);
    let tool = pin(&report, "tool");
    assert_eq!(tool["ok"], true, "{report:#}");
    assert_eq!(tool["expected"], "tool 1.0");
    assert_eq!(tool["found"], "tool 1.0");
    assert!(tool.get("help").is_none(), "no help for a pin that matches");
    assert_exit_follows(&run, &report);

    let run = host.doctor(&[]);
    assert!(
        run.stdout.contains("  ok    tool: `tool 1.0`"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("  ok    other: `other 3`"),
        "{}",
        run.stdout
    );
    for section in ["pins\n", "sandbox\n", "cgroups (", "disk\n"] {
        assert!(run.stdout.contains(section), "{section}: {}", run.stdout);
    }
}

#[test]
fn doctor_fails_on_a_pin_that_does_not_match_and_says_what_to_do() {
    let host = Host::new("true");
    host.install("tool-version", "tool 2.0");
    let (run, report) = host.doctor_json(&[]);
    assert_eq!(run.code, 1, "{report:#}");
    assert_eq!(report["ok"], false);
    let tool = pin(&report, "tool");
    assert_eq!(tool["ok"], false);
    assert_eq!(tool["found"], "tool 2.0");
    assert_eq!(tool["expected"], "tool 1.0");
    assert!(
        tool["help"]
            .as_str()
            .is_some_and(|h| h.contains("lanes doctor --ensure")),
        "a pin with ensure points at --ensure: {report:#}"
    );
    assert_eq!(pin(&report, "other")["ok"], true, "{report:#}");

    let run = host.doctor(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    let dir = host.outside.path().display();
    assert!(
        run.stdout.contains(&format!(
            "  FAIL  tool: expected `tool 1.0`, found `tool 2.0` (from `cat '{dir}/tool-version'`)\n        help: run `lanes doctor --ensure`"
        )),
        "{}",
        run.stdout
    );

    // A pin without `ensure` is told to install the tool or change the pin.
    host.install("other-version", "other 4");
    let (_, report) = host.doctor_json(&[]);
    let other = pin(&report, "other");
    assert_eq!(other["ok"], false);
    assert!(
        other["help"]
            .as_str()
            .is_some_and(|h| h.contains("change the pin's `expect`")),
        "{report:#}"
    );
}

#[test]
fn doctor_ensure_runs_ensure_for_a_pin_that_does_not_match_then_checks_again() {
    let host = Host::new("echo installing; echo tool 1.0 > \\\"$OUT/tool-version\\\"");
    host.install("tool-version", "tool 0.9");
    let (run, report) = host.doctor_json(&["--ensure"]);
    let tool = pin(&report, "tool");
    assert_eq!(tool["ok"], true, "ensure fixed it: {report:#}");
    assert_eq!(tool["found"], "tool 1.0");
    assert_eq!(tool["ensure"]["ok"], true, "{report:#}");
    assert!(
        run.stderr.contains("ensuring pin tool") && run.stderr.contains("installing"),
        "ensure's output goes to stderr, stdout stays JSON: {}",
        run.stderr
    );
    assert_eq!(
        std::fs::read_to_string(host.outside.path().join("tool-version")).ok(),
        Some("tool 1.0\n".to_owned())
    );
    assert!(
        pin(&report, "other").get("ensure").is_none(),
        "a matching pin's ensure is not run"
    );
    assert_exit_follows(&run, &report);

    // Fixed: a second --ensure has nothing to do.
    let (run, report) = host.doctor_json(&["--ensure"]);
    assert!(pin(&report, "tool").get("ensure").is_none(), "{report:#}");
    assert!(!run.stderr.contains("ensuring"), "{}", run.stderr);
}

#[test]
fn doctor_ensure_that_does_not_fix_the_pin_still_fails() {
    let host = Host::new("echo cannot download >&2; exit 4");
    host.install("tool-version", "tool 0.9");
    let (run, report) = host.doctor_json(&["--ensure"]);
    assert_eq!(run.code, 1, "{report:#}");
    let tool = pin(&report, "tool");
    assert_eq!(tool["ok"], false);
    assert_eq!(tool["ensure"]["ok"], false);
    assert_eq!(tool["ensure"]["error"], "exit code 4", "{report:#}");
    assert!(
        tool["help"]
            .as_str()
            .is_some_and(|h| h.contains("its `ensure` did not make")),
        "{report:#}"
    );
    assert!(run.stderr.contains("cannot download"), "{}", run.stderr);

    // Without --ensure, nothing is run.
    let run = host.doctor(&[]);
    assert!(!run.stderr.contains("ensuring"), "{}", run.stderr);
}

#[test]
fn doctor_outside_a_repository_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = lanes_in(dir.path(), &["doctor"], &[]);
    assert_eq!(run.code, 2, "{run:?}");
}
