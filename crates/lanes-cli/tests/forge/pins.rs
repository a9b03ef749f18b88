//! Pins on the forge's agent: a pin whose command reads a file outside the repository, which the
//! test rewrites as a toolchain upgrade on the agent's host would change what it prints.

use crate::{job, log_of};
use lanes_testkit::Forge;

/// The catalog of a required lane `test` that uses the pin `tool`, read from `dir`.
fn catalog(dir: &std::path::Path) -> String {
    format!(
        r#"version = 1
[pins]
tool = {{ command = "cat '{}/tool-version'", expect = "tool 1.0" }}

[lane.test]
class = "required"
inputs = ["src/lib.txt"]
pins = ["tool"]
step = [{{ name = "build", run = "echo built from $(cat src/lib.txt)" }}]
"#,
        dir.display()
    )
}

fn install(dir: &std::path::Path, version: &str) {
    std::fs::write(dir.join("tool-version"), format!("{version}\n")).expect("write the version");
}

#[test]
fn a_job_whose_pin_does_not_match_its_agent_ends_error_with_pin_mismatch_and_restores_nothing() {
    let outside = tempfile::tempdir().expect("tempdir");
    install(outside.path(), "tool 1.0");
    let mut forge = Forge::new(&catalog(outside.path()), &[("src/lib.txt", "one\n")]);
    let head = forge.git(&["rev-parse", "HEAD"]);
    let main = forge.wait_done("main", &head);
    assert_eq!(job(&main, "test")["status"], "passed", "{main:#}");
    assert_eq!(job(&main, "test")["steps_run"], 1, "{main:#}");

    // Another tool on the agent's host. A matching answer is kept for the life of the agent's
    // process, so the agent learns of the change when it starts.
    forge.stop();
    install(outside.path(), "tool 2.0");
    forge.start();
    forge.git(&["checkout", "-q", "-b", "feature"]);
    forge.write("src/other.txt", "not an input of test\n");
    let feature = forge.commit("same inputs for test");
    forge.push("feature");
    let status = forge.wait_done("feature", &feature);
    let test = job(&status, "test");
    assert_eq!(test["status"], "error", "{status:#}");
    assert_eq!(
        test["reason"],
        serde_json::json!({"kind": "pin-mismatch", "pin": "tool", "expected": "tool 1.0",
            "found": "tool 2.0"}),
        "{status:#}"
    );
    assert_eq!(
        test["steps"],
        serde_json::json!([]),
        "the recorded result was not restored: {test:#}"
    );
    assert_eq!(test["steps_cached"], 0, "{test:#}");
    let log = log_of(&forge, test);
    assert!(
        log.contains(
            "lanes: pin `tool` does not match this host: expected `tool 1.0`, found `tool 2.0`"
        ),
        "the job's log says why: {log}"
    );
    assert!(
        !log.contains("built from"),
        "nothing ran or was restored: {log}"
    );
    let run = status["run"]["number"].as_u64().expect("run number");
    let page = forge.request("GET", &format!("/origin/runs/{run}"), None);
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(
        page.text()
            .contains("pin tool does not match its agent: expected tool 1.0, found tool 2.0"),
        "the UI's run page says why: {}",
        page.text()
    );

    // The tool is back. A mismatch is not kept, so the running agent checks again at its next
    // job, and the recorded result is used.
    install(outside.path(), "tool 1.0");
    forge.write("src/third.txt", "still not an input\n");
    let third = forge.commit("same inputs again");
    forge.push("feature");
    let status = forge.wait_done("feature", &third);
    let test = job(&status, "test");
    assert_eq!(test["status"], "passed", "{status:#}");
    assert_eq!(test["steps_cached"], 1, "{test:#}");
    assert_eq!(test["steps_run"], 0, "{test:#}");
}
