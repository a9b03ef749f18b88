//! The CLI against a real forge: `lanes status`, `wait`, `logs`, `rerun`, `cancel` and the
//! post-receive hook, as a developer uses them after a push.

use lanes_testkit::Forge;
use serde_json::Value;
use std::process::{Command, Stdio};

const CATALOG: &str = r#"version = 1
[lane.test]
class = "required"
paths = ["src/**"]
step = [{ name = "build", run = "echo building $(cat src/a.txt)" }, { name = "check", run = "echo checked" }]
[lane.lint]
class = "advisory"
paths = ["lint/**"]
step = [{ name = "lint", run = "true" }]
"#;

#[test]
fn push_then_wait_status_and_logs_follow_the_run_to_green() {
    let forge = Forge::new(CATALOG, &[("src/a.txt", "one\n")]);
    let head = forge.git(&["rev-parse", "HEAD"]);
    let wait = forge.lanes(&["wait", "--timeout", "2m"]);
    assert_eq!(wait.code, 0, "{}\n{}", wait.stdout, wait.stderr);
    assert!(wait.stdout.contains("passed"), "{}", wait.stdout);

    let status = forge.lanes(&["status", "--json"]);
    let json: Value = status.json();
    assert_eq!(json["repo"], "origin");
    assert_eq!(json["branch"], "main");
    assert_eq!(json["status"], "passed");
    assert_eq!(json["run"]["number"], 1);
    assert_eq!(json["run"]["head"], head.as_str());
    let test = &json["run"]["jobs"][0];
    assert_eq!(test["lane"], "test");
    assert_eq!(test["class"], "required");
    assert_eq!(test["status"], "passed");
    assert_eq!(test["steps_run"], 2);
    assert_eq!(test["steps_cached"], 0);
    assert!(test["duration_ms"].is_u64());

    let text = forge.lanes(&["status"]);
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(text.stdout.contains("test"), "{}", text.stdout);
    assert!(text.stdout.contains("passed"), "{}", text.stdout);

    let logs = forge.lanes(&["logs", "main", "test"]);
    assert_eq!(logs.code, 0, "{}", logs.stderr);
    assert!(logs.stdout.contains("building one"), "{}", logs.stdout);
    assert!(logs.stdout.contains("checked"), "{}", logs.stdout);
}

#[test]
fn wait_exits_1_on_a_failed_run_and_logs_follow_ends_with_the_jobs_result() {
    let catalog = r#"version = 1
[lane.test]
class = "required"
step = [{ name = "fails", run = "echo going; sleep 1; echo the assertion failed; exit 1" }]
"#;
    let forge = Forge::new(catalog, &[]);
    forge.wait_for("the forge to see main", || forge.seen_branch("main"));
    let follow = forge.lanes(&["logs", "main", "test", "--follow"]);
    assert_eq!(follow.code, 1, "{}\n{}", follow.stdout, follow.stderr);
    assert!(follow.stdout.contains("going"), "{}", follow.stdout);
    assert!(
        follow.stdout.contains("the assertion failed"),
        "{}",
        follow.stdout
    );
    let wait = forge.lanes(&["wait", "--json"]);
    assert_eq!(wait.code, 1, "{}\n{}", wait.stdout, wait.stderr);
    let json: Value = serde_json::from_str(&wait.stdout).expect("wait --json prints JSON");
    assert_eq!(json["status"], "failed");
}

#[test]
fn wait_for_a_head_the_forge_has_not_seen_times_out_with_exit_3() {
    let forge = Forge::new(CATALOG, &[("src/a.txt", "one\n")]);
    let first = forge.git(&["rev-parse", "HEAD"]);
    forge.wait_done("main", &first);
    // Committed but not pushed: an older green run must not answer for it.
    forge.write("src/a.txt", "two\n");
    let local = forge.commit("not pushed");
    let wait = forge.lanes(&["wait", "--timeout", "2s"]);
    assert_eq!(wait.code, 3, "{}\n{}", wait.stdout, wait.stderr);
    assert!(
        wait.stderr.contains("has not seen") && wait.stderr.contains(&local[..12]),
        "{}",
        wait.stderr
    );
    let status = forge.lanes(&["status"]);
    assert!(
        status.stderr.contains(&first[..12]) || status.stderr.contains("differs"),
        "a warning that the forge's head is not local HEAD: {}",
        status.stderr
    );
}

#[test]
fn rerun_and_cancel_from_the_cli() {
    let outside = tempfile::tempdir().expect("tempdir");
    let marker = outside.path().join("second");
    let catalog = format!(
        "version = 1\n[lane.flaky]\nclass = \"required\"\nstep = [{{ name = \"flaky\", run = \
         \"test -e {m} || {{ touch {m}; exit 1; }}\" }}]\n[lane.slow]\nclass = \"advisory\"\n\
         step = [{{ name = \"slow\", run = \"sleep 600\" }}]\n",
        m = marker.display()
    );
    // The step keeps a marker outside its lane between runs: only without the sandbox.
    let forge = Forge::with_args(&catalog, &[], &["--agent-capacity", "2", "--no-sandbox"]);
    forge.wait_for("flaky to fail", || {
        let status = forge.seen_branch("main")?;
        let flaky = status["run"]["jobs"]
            .as_array()?
            .iter()
            .find(|j| j["lane"] == "flaky")?
            .clone();
        (flaky["status"] == "failed").then_some(())
    });
    let cancel = forge.lanes(&["cancel", "--lane", "slow", "--json"]);
    assert_eq!(cancel.code, 0, "{}\n{}", cancel.stdout, cancel.stderr);
    let rerun = forge.lanes(&["rerun", "--lane", "flaky"]);
    assert_eq!(rerun.code, 0, "{}\n{}", rerun.stdout, rerun.stderr);
    let wait = forge.lanes(&["wait", "--timeout", "2m"]);
    assert_eq!(wait.code, 0, "{}\n{}", wait.stdout, wait.stderr);
    let json: Value = forge.lanes(&["status", "--json"]).json();
    let jobs = json["run"]["jobs"].as_array().expect("jobs");
    let slow = jobs.iter().find(|j| j["lane"] == "slow").expect("slow");
    assert_eq!(slow["status"], "cancelled");
    let reruns: Vec<&Value> = jobs.iter().filter(|j| !j["rerun_of"].is_null()).collect();
    assert_eq!(reruns.len(), 1, "{json:#}");
    assert_eq!(reruns[0]["status"], "passed");
}

#[test]
fn the_post_receive_hook_starts_a_run_without_waiting_for_a_poll() {
    let mut forge = Forge::with_args(
        CATALOG,
        &[("src/a.txt", "one\n")],
        &["--poll-interval", "1h"],
    );
    let first = forge.git(&["rev-parse", "HEAD"]);
    forge.wait_done("main", &first);
    let origin = forge.origin.clone();
    let server = format!("http://{}", forge.addr);
    let install = forge.lanes(&[
        "hook",
        "install",
        "--repo",
        origin.to_str().expect("utf-8 path"),
        "--server",
        &server,
    ]);
    assert_eq!(install.code, 0, "{}", install.stderr);
    forge.git(&["checkout", "-q", "-b", "feature"]);
    forge.write("src/a.txt", "two\n");
    let head = forge.commit("through the hook");
    let pushed = forge.git_push("feature");
    assert!(
        pushed.contains("created run #2"),
        "the hook reports the run: {pushed}"
    );
    let status = forge.wait_done("feature", &head);
    assert_eq!(status["status"], "passed", "{status:#}");

    // With the forge down the push still succeeds; the next start picks it up.
    forge.kill();
    forge.write("src/a.txt", "three\n");
    let later = forge.commit("while the forge is down");
    let pushed = forge.git_push("feature");
    assert!(pushed.contains("warning"), "{pushed}");
    forge.start();
    let status = forge.wait_done("feature", &later);
    assert_eq!(status["run"]["number"], 3);
}

#[test]
fn an_unreachable_forge_and_a_wrong_token_say_what_to_do() {
    let forge = Forge::new(CATALOG, &[("src/a.txt", "one\n")]);
    let nobody = lanes_testkit::lanes_in(
        &forge.work,
        &["status"],
        &[("LANES_SERVER", "http://127.0.0.1:9"), ("LANES_TOKEN", "x")],
    );
    // The environment's exit code (docs/cli.md#exit-codes): the forge is not the user's typo.
    assert_eq!(nobody.code, 4);
    assert!(
        nobody.stderr.contains("cannot reach the forge"),
        "{}",
        nobody.stderr
    );
    assert!(nobody.stderr.contains("lanes serve"), "{}", nobody.stderr);
    let server = format!("http://{}", forge.addr);
    let wrong = lanes_testkit::lanes_in(
        &forge.work,
        &["status"],
        &[
            ("LANES_SERVER", server.as_str()),
            ("LANES_TOKEN", "lanes_wrong"),
        ],
    );
    assert_eq!(wrong.code, 2);
    assert!(wrong.stderr.contains("LANES_TOKEN"), "{}", wrong.stderr);
}

#[test]
fn logs_follow_survives_a_server_restart() {
    let catalog = r#"version = 1
[lane.test]
class = "required"
step = [{ name = "slow", run = "echo before; sleep 4; echo after" }]
"#;
    let mut forge = Forge::new(catalog, &[]);
    forge.wait_for("the job to start", || {
        let status = forge.seen_branch("main")?;
        (status["run"]["jobs"][0]["status"] == "running").then_some(())
    });
    let mut follow = Command::new(env!("CARGO_BIN_EXE_lanes"))
        .args(["logs", "main", "test", "--follow"])
        .current_dir(&forge.work)
        .env("LANES_SERVER", format!("http://{}", forge.addr))
        .env("LANES_TOKEN", &forge.token)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lanes logs starts");
    // Kill the forge once the follower has printed the first line, then bring it back.
    let stdout = follow.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut seen = String::new();
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            let Ok(line) = line else { break };
            seen.push_str(&line);
            seen.push('\n');
            let _ = tx.send(line);
        }
        seen
    });
    loop {
        let line = rx
            .recv_timeout(lanes_testkit::PATIENCE)
            .expect("the follower prints the log");
        if line.contains("before") {
            break;
        }
    }
    forge.kill();
    forge.start();
    let status = follow.wait().expect("lanes logs ends");
    let stdout = reader.join().expect("the reader ends");
    assert_eq!(status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("after"), "{stdout}");
    // The job ran again after the restart: the first attempt's bytes stay, then the second's.
    let (first, second) = stdout
        .split_once("attempt 2 starts here")
        .unwrap_or_else(|| panic!("a line marks the second attempt: {stdout}"));
    assert!(
        first.contains("before") && !first.contains("after"),
        "{stdout}"
    );
    assert!(
        second.contains("before") && second.contains("after"),
        "{stdout}"
    );
    follow_headers_are_served(&forge);
}

/// The log endpoint's headers say how much there is.
fn follow_headers_are_served(forge: &Forge) {
    let status = forge.branch("main");
    let id = status["run"]["jobs"][0]["id"].as_i64().expect("id");
    let r = forge.request("GET", &format!("/api/v1/jobs/{id}/log?offset=3"), None);
    let length: usize = r
        .header("x-log-length")
        .and_then(|v| v.parse().ok())
        .expect("x-log-length");
    assert_eq!(r.header("x-log-offset"), Some("3"));
    assert_eq!(r.body.len(), length - 3);
    assert_eq!(r.header("x-job-status"), Some("passed"));
    let _ = &forge.root;
}

#[test]
fn status_outside_a_repository_needs_a_branch() {
    let forge = Forge::new(CATALOG, &[("src/a.txt", "one\n")]);
    let outside = tempfile::tempdir().expect("tempdir");
    let server = format!("http://{}", forge.addr);
    let env = [
        ("LANES_SERVER", server.as_str()),
        ("LANES_TOKEN", forge.token.as_str()),
    ];
    let out = lanes_testkit::lanes_in(outside.path(), &["status"], &env);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("branch"), "{}", out.stderr);
    let head = forge.git(&["rev-parse", "HEAD"]);
    forge.wait_done("main", &head);
    let named = lanes_testkit::lanes_in(outside.path(), &["status", "main", "--json"], &env);
    assert_eq!(named.json()["status"], "passed");
}

#[test]
fn the_repository_named_like_the_checkout_is_chosen_and_repo_overrides_it() {
    let other = tempfile::tempdir().expect("tempdir");
    lanes_testkit::git_in(other.path(), &["init", "-q", "--bare", "work.git"]);
    let work = other.path().join("work.git");
    let forge = Forge::with_args(
        CATALOG,
        &[("src/a.txt", "one\n")],
        &["--repo", work.to_str().expect("utf-8 path")],
    );
    let head = forge.git(&["rev-parse", "HEAD"]);
    forge.wait_done("main", &head);
    // The clone's directory is `work`: the forge's `work` repository is the one asked about.
    let chosen = forge.lanes(&["status", "main"]);
    assert_eq!(chosen.code, 2, "{}", chosen.stdout);
    assert!(
        chosen.stderr.contains("repository work"),
        "{}",
        chosen.stderr
    );
    let explicit = forge.lanes(&["status", "main", "--repo", "origin", "--json"]);
    assert_eq!(explicit.json()["repo"], "origin");
}

#[test]
fn wait_for_a_head_the_forge_moved_past_reports_that_heads_run() {
    let catalog = r#"version = 1
[lane.slow]
class = "required"
paths = ["src/**"]
step = [{ name = "sleep", run = "sleep 600" }]
"#;
    let forge = Forge::new(catalog, &[("src/a.txt", "a\n")]);
    let first = forge.git(&["rev-parse", "HEAD"]);
    forge.wait_for("run #1", || {
        let status = forge.seen_branch("main")?;
        (status["run"]["head"] == first.as_str()).then_some(())
    });
    forge.write("src/a.txt", "b\n");
    let second = forge.commit("second");
    forge.push("main");
    forge.wait_for("run #2", || {
        let status = forge.seen_branch("main")?;
        (status["run"]["head"] == second.as_str()).then_some(())
    });
    let wait = forge.lanes(&["wait", "--head", &first, "--timeout", "1m", "--json"]);
    assert_eq!(wait.code, 1, "{}\n{}", wait.stdout, wait.stderr);
    let json: Value = serde_json::from_str(&wait.stdout).expect("JSON");
    assert_eq!(json["run"]["number"], 1, "{json:#}");
    assert_eq!(json["run"]["status"], "cancelled");
}

#[test]
fn logs_pages_through_a_log_larger_than_one_response() {
    let catalog = r#"version = 1
[lane.loud]
class = "required"
step = [{ name = "loud", run = "seq 1 200000" }]
"#;
    let forge = Forge::new(catalog, &[]);
    let head = forge.git(&["rev-parse", "HEAD"]);
    let status = forge.wait_done("main", &head);
    let bytes = status["run"]["jobs"][0]["log_bytes"]
        .as_u64()
        .expect("log_bytes");
    assert!(bytes > 1 << 20, "more than one page: {bytes}");
    let logs = forge.lanes(&["logs", "main", "loud"]);
    assert_eq!(logs.code, 0, "{}", logs.stderr);
    assert_eq!(logs.stdout.len() as u64, bytes);
    assert!(logs.stdout.contains("] 200000\n"), "the last line is there");
    assert!(logs.stdout.contains("] 1\n"), "the first line is there");
}
