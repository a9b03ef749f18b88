//! `lanes serve` end to end: a real server process over a real bare repository, pushes from a
//! real clone, jobs run by the built-in agent with real processes, state in a real SQLite file.

mod agents;
mod boundary;
mod cli;
mod disk;
mod hook;
mod http;
mod pins;
mod secrets;
mod ui;

use lanes_testkit::Forge;
use serde_json::Value;

/// Two required lanes in the group `mac` of limit 1, each sleeping: one holds it, one waits.
const ONE_GROUP: &str = r#"version = 1
[group.mac]
limit = 1
[lane.one]
class = "required"
concurrency = "mac"
step = [{ name = "hold", run = "sleep 600" }]
[lane.two]
class = "required"
concurrency = "mac"
step = [{ name = "hold", run = "sleep 600" }]
"#;

const PASSING: &str = r#"version = 1

[lane.test]
class = "required"
paths = ["src/**"]
inputs = ["src/lib.txt"]
[[lane.test.step]]
name = "build"
run = "echo building; cat src/lib.txt"
[[lane.test.step]]
name = "check"
run = "echo checked"

[lane.docs]
class = "advisory"
paths = ["docs/**"]
step = [{ name = "docs", run = "echo docs" }]
"#;

fn job<'a>(status: &'a Value, lane: &str) -> &'a Value {
    status["run"]["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .rev()
        .find(|j| j["lane"] == lane)
        .unwrap_or_else(|| panic!("no job for lane {lane} in {status:#}"))
}

fn log_of(forge: &Forge, job: &Value) -> String {
    let id = job["id"].as_i64().expect("job id");
    let r = forge.request("GET", &format!("/api/v1/jobs/{id}/log"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

#[test]
fn a_pushed_branch_runs_its_selected_lanes_and_turns_green() {
    let forge = Forge::new(PASSING, &[("src/lib.txt", "one\n"), ("docs/a.md", "a\n")]);
    let main_head = forge.git(&["rev-parse", "HEAD"]);
    let main = forge.wait_done("main", &main_head);
    assert_eq!(main["status"], "passed", "{main:#}");

    forge.git(&["checkout", "-q", "-b", "feature"]);
    forge.write("src/lib.txt", "two\n");
    let head = forge.commit("change src");
    forge.push("feature");
    let status = forge.wait_done("feature", &head);
    assert_eq!(status["status"], "passed", "{status:#}");
    assert_eq!(status["run"]["number"], 2);
    assert_eq!(status["run"]["base"], main_head.as_str());
    let test = job(&status, "test");
    assert_eq!(test["status"], "passed");
    assert_eq!(test["steps_run"], 2, "{test:#}");
    assert_eq!(
        test["selection"][0]["kind"], "path",
        "selected because src/lib.txt changed: {test:#}"
    );
    let docs = job(&status, "docs");
    assert_eq!(docs["status"], "skipped");
    assert_eq!(docs["selection"][0]["kind"], "no-matching-path");
    let log = log_of(&forge, test);
    assert!(log.contains("building") && log.contains("two"), "{log}");
    assert!(log.contains("checked"), "{log}");
    assert!(
        log.find("building") < log.find("checked"),
        "steps in order: {log}"
    );
}

#[test]
fn a_forge_started_on_an_empty_repository_whose_head_names_master_takes_main_when_pushed() {
    // `git init --bare` without init.defaultBranch: HEAD names `master`; the user pushes `main`.
    let forge = Forge::on_empty_origin(PASSING, &[("src/lib.txt", "one\n")], "master");
    let head = forge.git(&["rev-parse", "HEAD"]);
    forge.push("main");
    let main = forge.wait_done("main", &head);
    assert_eq!(main["status"], "passed", "{main:#}");
    // The forge looked at the empty repository at start (refs, nightly slots): nothing there is
    // an error worth a log line.
    let log = forge.server_log();
    assert!(!log.contains("unknown revision"), "{log}");
    assert!(!log.contains("ERROR"), "{log}");
    let repos = forge.request("GET", "/api/v1/repos", None).json();
    assert_eq!(repos[0]["default_branch"], "main", "{repos:#}");

    // A branch off `main` is diffed against it.
    forge.git(&["checkout", "-q", "-b", "feature"]);
    forge.write("src/lib.txt", "two\n");
    let feature = forge.commit("change src");
    forge.push("feature");
    let status = forge.wait_done("feature", &feature);
    assert_eq!(status["status"], "passed", "{status:#}");
    assert_eq!(status["run"]["base"], head.as_str());
}

#[test]
fn a_lane_seen_before_is_restored_from_the_cache() {
    let forge = Forge::new(PASSING, &[("src/lib.txt", "one\n")]);
    let head = forge.git(&["rev-parse", "HEAD"]);
    let main = forge.wait_done("main", &head);
    assert_eq!(job(&main, "test")["steps_run"], 2, "{main:#}");
    // src/other.txt selects `test` (paths src/**) but is not one of its inputs: same keys.
    forge.git(&["checkout", "-q", "-b", "feature"]);
    forge.write("src/other.txt", "other\n");
    let feature = forge.commit("a file outside test's inputs");
    forge.push("feature");
    let status = forge.wait_done("feature", &feature);
    let test = job(&status, "test");
    assert_eq!(test["status"], "passed", "{status:#}");
    assert_eq!(test["steps_cached"], 2, "{test:#}");
    assert_eq!(test["steps_run"], 0, "{test:#}");
    for step in test["steps"].as_array().expect("steps") {
        assert_eq!(step["cache"], "hit", "{test:#}");
    }
    let log = log_of(&forge, test);
    assert!(
        log.contains("building"),
        "a hit's log is the recorded one: {log}"
    );
}

#[test]
fn a_failing_lane_fails_the_branch_and_its_log_says_why() {
    let catalog = r#"version = 1
[lane.test]
class = "required"
step = [{ name = "fails", run = "echo about to fail; exit 3" }, { name = "after", run = "echo never" }]
"#;
    let forge = Forge::new(catalog, &[]);
    let head = forge.git(&["rev-parse", "HEAD"]);
    let status = forge.wait_done("main", &head);
    assert_eq!(status["status"], "failed", "{status:#}");
    assert_eq!(status["run"]["status"], "failed");
    let test = job(&status, "test");
    assert_eq!(test["status"], "failed");
    assert_eq!(test["steps"][0]["exit_code"], 3, "{test:#}");
    assert_eq!(test["steps"][1]["status"], "skipped", "{test:#}");
    let log = log_of(&forge, test);
    assert!(log.contains("about to fail"), "{log}");
    assert!(!log.contains("never"), "{log}");
}

#[test]
fn pushing_the_same_commit_twice_creates_one_run() {
    let forge = Forge::new(PASSING, &[("src/lib.txt", "one\n")]);
    let head = forge.git(&["rev-parse", "HEAD"]);
    forge.wait_done("main", &head);
    forge.git(&["checkout", "-q", "-b", "feature"]);
    forge.write("src/lib.txt", "two\n");
    let feature = forge.commit("feature");
    forge.push("feature");
    forge.wait_done("feature", &feature);
    forge.push("feature");
    // Delete the branch and push the same commit again: still the same head, no new run.
    forge.git(&["push", "-q", "origin", ":refs/heads/feature"]);
    let r = forge.request("POST", "/api/v1/repos/origin/refs-changed", None);
    assert_eq!(r.json()["created"], serde_json::json!([]));
    forge.push("feature");
    let runs = forge.get("/api/v1/repos/origin/runs");
    assert_eq!(runs.as_array().map(Vec::len), Some(2), "{runs:#}");
}

#[test]
fn a_catalog_that_fails_at_a_commit_gives_an_error_run_with_its_diagnostics() {
    let forge = Forge::new(PASSING, &[("src/lib.txt", "one\n")]);
    let head = forge.git(&["rev-parse", "HEAD"]);
    forge.wait_done("main", &head);
    forge.git(&["checkout", "-q", "-b", "broken"]);
    forge.write(
        "lanes.toml",
        "version = 1\n[lane.test]\nclas = \"required\"\nstep = [{ name = \"a\", run = \"true\" }]\n",
    );
    let broken = forge.commit("typo in the catalog");
    forge.push("broken");
    let status = forge.wait_done("broken", &broken);
    assert_eq!(status["status"], "error", "{status:#}");
    assert_eq!(status["run"]["status"], "error");
    assert_eq!(status["run"]["jobs"].as_array().map(Vec::len), Some(0));
    let diagnostics = &status["run"]["diagnostics"]["diagnostics"];
    assert_eq!(diagnostics[0]["line"], 3, "{status:#}");
    assert!(
        diagnostics[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("clas")),
        "{status:#}"
    );
}

#[test]
fn a_new_head_supersedes_the_older_run_and_cancels_its_jobs() {
    let catalog = r#"version = 1
[lane.slow]
class = "required"
paths = ["src/**"]
step = [{ name = "sleep", run = "echo started; sleep 600" }]
"#;
    let forge = Forge::new(catalog, &[("src/a.txt", "a\n")]);
    let first = forge.git(&["rev-parse", "HEAD"]);
    forge.wait_for("the first run's job to run", || {
        let status = forge.seen_branch("main")?;
        (status["run"]["head"] == first.as_str() && job(&status, "slow")["status"] == "running")
            .then_some(())
    });
    forge.write("src/a.txt", "b\n");
    let second = forge.commit("second");
    forge.push("main");
    let old = forge.wait_for("run #1 to be cancelled", || {
        let run = forge.get("/api/v1/repos/origin/runs/1");
        (run["status"] == "cancelled").then_some(run)
    });
    assert_eq!(old["superseded_by"], 2, "{old:#}");
    let old_job = &old["jobs"][0];
    assert_eq!(old_job["status"], "cancelled", "{old:#}");
    assert_eq!(old_job["reason"]["kind"], "superseded");
    assert_eq!(old_job["reason"]["by"], 2);
    let status = forge.branch("main");
    assert_eq!(status["run"]["head"], second.as_str());
    assert_eq!(status["run"]["number"], 2);
}

#[test]
fn reads_need_a_token_unless_public_and_actions_always_do() {
    let forge = Forge::new(PASSING, &[("src/lib.txt", "one\n")]);
    let anonymous = forge.request_as("GET", "/api/v1/repos", None, None);
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.json()["error"]["code"], "unauthorized");
    let wrong = forge.request_as("GET", "/api/v1/repos", None, Some("lanes_nope"));
    assert_eq!(wrong.status, 403);
    assert_eq!(wrong.json()["error"]["code"], "forbidden");
    let ok = forge.request("GET", "/api/v1/repos", None);
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()[0]["name"], "origin");
    let doc = forge.request_as("GET", "/api/v1/openapi.json", None, None);
    assert_eq!(doc.status, 200);
    assert_eq!(doc.json()["openapi"], "3.1.0");
    let malformed = forge.request("GET", "/api/v1/jobs/abc", None);
    assert_eq!(malformed.status, 400, "{}", malformed.text());
    assert_eq!(malformed.json()["error"]["code"], "bad-request");
    let no_body = forge.request("POST", "/api/v1/agents", Some("not json"));
    assert_eq!(no_body.status, 400, "{}", no_body.text());
    assert_eq!(no_body.json()["error"]["code"], "bad-request");
    let missing = forge.request("GET", "/api/v1/repos/origin/runs/99", None);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"]["code"], "not-found");

    let public = Forge::with_args(PASSING, &[("src/lib.txt", "one\n")], &["--public-read"]);
    let read = public.request_as("GET", "/api/v1/repos", None, None);
    assert_eq!(read.status, 200);
    let act = public.request_as("POST", "/api/v1/jobs/1/cancel", None, None);
    assert_eq!(act.status, 401, "{}", act.text());
}

#[test]
fn a_job_waiting_for_a_full_group_names_the_group_and_its_holder() {
    let forge = Forge::with_args(ONE_GROUP, &[], &["--agent-capacity", "2"]);
    let status = forge.wait_for(
        "one lane to run and the other to wait for the group",
        || {
            let status = forge.seen_branch("main")?;
            let jobs = status["run"]["jobs"].as_array()?.clone();
            let running = jobs.iter().find(|j| j["status"] == "running")?.clone();
            let waiting = jobs
                .iter()
                .find(|j| j["reason"]["kind"] == "blocked-by-group")?
                .clone();
            Some((running, waiting))
        },
    );
    let (running, waiting) = status;
    assert_eq!(waiting["status"], "queued");
    assert_eq!(waiting["reason"]["group"], "mac");
    assert_eq!(waiting["reason"]["holders"][0]["lane"], running["lane"]);
    assert_eq!(waiting["reason"]["holders"][0]["run"], 1);
    let groups = forge.get("/api/v1/groups");
    assert_eq!(groups[0]["name"], "mac");
    assert_eq!(groups[0]["limit"], 1);
    assert_eq!(groups[0]["holders"][0]["lane"], running["lane"]);
    assert_eq!(groups[0]["waiters"][0]["lane"], waiting["lane"]);
}

#[test]
fn a_failed_need_skips_the_lanes_that_need_it() {
    let catalog = r#"version = 1
[lane.lint]
class = "advisory"
step = [{ name = "lint", run = "exit 1" }]
[lane.test]
class = "required"
needs = ["lint"]
step = [{ name = "test", run = "echo test" }]
"#;
    let forge = Forge::new(catalog, &[]);
    let head = forge.git(&["rev-parse", "HEAD"]);
    let status = forge.wait_done("main", &head);
    let test = job(&status, "test");
    assert_eq!(test["status"], "skipped", "{status:#}");
    assert_eq!(test["reason"]["kind"], "need-failed");
    assert_eq!(test["reason"]["lane"], "lint");
    assert_eq!(
        status["status"], "failed",
        "a required lane that could not run is red"
    );
}

#[test]
fn a_rerun_that_passes_turns_the_branch_green_and_records_what_it_reruns() {
    let forge_root = tempfile::tempdir().expect("tempdir");
    let marker = forge_root.path().join("second-time");
    let catalog = format!(
        "version = 1\n[lane.flaky]\nclass = \"required\"\nstep = [{{ name = \"flaky\", run = \
         \"test -e {m} || {{ touch {m}; exit 1; }}\" }}]\n",
        m = marker.display()
    );
    // The step keeps a marker outside its lane between runs: only without the sandbox.
    let forge = Forge::with_args(&catalog, &[], &["--no-sandbox"]);
    let head = forge.git(&["rev-parse", "HEAD"]);
    let status = forge.wait_done("main", &head);
    assert_eq!(status["status"], "failed", "{status:#}");
    let failed = job(&status, "flaky")["id"].as_i64().expect("id");
    let r = forge.request("POST", "/api/v1/repos/origin/runs/1/rerun-failed", None);
    assert_eq!(r.status, 200, "{}", r.text());
    let rerun = r.json()["jobs"][0].clone();
    assert_eq!(rerun["rerun_of"], failed);
    assert_eq!(rerun["priority"], "manual");
    let status = forge.wait_for("the rerun to pass", || {
        let status = forge.branch("main");
        (job(&status, "flaky")["status"] == "passed").then_some(status)
    });
    assert_eq!(status["status"], "passed", "{status:#}");
    assert_eq!(status["run"]["status"], "passed");
    let again = forge.request("POST", "/api/v1/repos/origin/runs/1/rerun-failed", None);
    assert_eq!(
        again.status,
        409,
        "nothing failed any more: {}",
        again.text()
    );
}

#[test]
fn cancelling_a_running_job_stops_its_steps_at_once() {
    let outside = tempfile::tempdir().expect("tempdir");
    let pid = outside.path().join("pid");
    let catalog = format!(
        "version = 1\n[lane.slow]\nclass = \"required\"\nstep = [{{ name = \"sleep\", run = \
         \"echo $$ > {p}; sleep 600\" }}]\n",
        p = pid.display()
    );
    // Heartbeats far apart: only the forge telling the agent can stop the step in time.
    // The step writes its pid outside its lane: only without the sandbox.
    let forge = Forge::with_args(
        &catalog,
        &[],
        &["--heartbeat", "10m", "--lease", "30m", "--no-sandbox"],
    );
    let id = forge.wait_for("the job to run", || {
        let status = forge.seen_branch("main")?;
        let j = job(&status, "slow");
        (j["status"] == "running").then(|| j["id"].as_i64().expect("id"))
    });
    let step_pid = forge.wait_for("the step to start", || {
        std::fs::read_to_string(&pid)
            .ok()
            .filter(|p| p.ends_with('\n'))
            .map(|p| p.trim().to_owned())
    });
    let r = forge.request("POST", &format!("/api/v1/jobs/{id}/cancel"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "cancelled");
    assert_eq!(r.json()["reason"]["kind"], "cancelled-by-user");
    let again = forge.request("POST", &format!("/api/v1/jobs/{id}/cancel"), None);
    assert_eq!(again.status, 409);
    assert_eq!(again.json()["error"]["code"], "conflict");
    forge.wait_for("the step's process to end", || {
        let alive = std::process::Command::new("kill")
            .args(["-0", &step_pid])
            .stderr(std::process::Stdio::null())
            .status()
            .expect("kill runs");
        (!alive.success()).then_some(())
    });
    let run = forge.get("/api/v1/repos/origin/runs/1");
    assert_eq!(run["status"], "cancelled", "{run:#}");
    assert_eq!(run["jobs"][0]["status"], "cancelled");
}

#[test]
fn a_killed_server_loses_no_run_and_keeps_every_acknowledged_log_byte() {
    let catalog = r#"version = 1
[lane.slow]
class = "required"
step = [{ name = "two-halves", run = "echo first half; sleep 5; echo second half" }]
[lane.quick]
class = "required"
step = [{ name = "quick", run = "echo quick" }]
"#;
    let mut forge = Forge::new(catalog, &[]);
    let head = forge.git(&["rev-parse", "HEAD"]);
    let (id, before) = forge.wait_for("the first half of the log", || {
        let status = forge.seen_branch("main")?;
        let j = job(&status, "slow");
        let log = log_of(&forge, j);
        log.contains("first half")
            .then(|| (j["id"].as_i64().expect("id"), log))
    });
    forge.kill();
    forge.start();
    let status = forge.wait_done("main", &head);
    let runs = forge.get("/api/v1/repos/origin/runs");
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "{runs:#}");
    for j in status["run"]["jobs"].as_array().expect("jobs") {
        let state = j["status"].as_str().expect("status");
        assert!(
            [
                "passed",
                "failed",
                "timed-out",
                "cancelled",
                "skipped",
                "error"
            ]
            .contains(&state),
            "every job ends: {status:#}"
        );
    }
    let slow = job(&status, "slow");
    assert_eq!(slow["id"], id);
    assert_eq!(slow["status"], "passed", "{status:#}");
    let after = log_of(&forge, slow);
    assert!(
        after.starts_with(&before),
        "the acknowledged bytes survive the kill:\nbefore:\n{before}\nafter:\n{after}"
    );
    let rest = &after[before.len()..];
    assert!(rest.contains("attempt 2 starts here"), "{after}");
    assert!(rest.contains("second half"), "{after}");
}

#[test]
fn a_job_whose_agent_stops_heartbeating_is_requeued_and_its_late_result_rejected() {
    let catalog = r#"version = 1
[lane.test]
class = "required"
step = [{ name = "test", run = "true" }]
"#;
    let forge = Forge::with_args(
        catalog,
        &[],
        &["--no-local-agent", "--heartbeat", "1s", "--lease", "3s"],
    );
    let register = |name: &str| {
        let r = forge.request(
            "POST",
            "/api/v1/agents",
            Some(&format!(r#"{{"name": "{name}", "capacity": 1}}"#)),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()["token"].as_str().expect("a token").to_owned()
    };
    let agent = register("remote");
    let other = register("other");
    let agents = forge.get("/api/v1/agents");
    assert_eq!(agents[1]["name"], "remote", "{agents:#}");
    assert_eq!(
        agents[1]["state"], "lost",
        "registered, not connected: {agents:#}"
    );
    let lease = forge.wait_for("a lease", || {
        let r = forge.request_as(
            "POST",
            "/api/v1/agent/lease?wait_ms=1000",
            None,
            Some(&agent),
        );
        (r.status == 200).then(|| r.json())
    });
    let agents = forge.get("/api/v1/agents");
    let remote = agents
        .as_array()
        .expect("agents")
        .iter()
        .find(|a| a["name"] == "remote")
        .expect("remote");
    assert_eq!(remote["state"], "online", "{agents:#}");
    let (job, token) = (
        lease["job"].as_u64().expect("job"),
        lease["token"].as_u64().expect("token"),
    );
    let fenced = format!(r#"{{"token": {token}}}"#);
    let started = forge.request_as(
        "POST",
        &format!("/api/v1/agent/jobs/{job}/started"),
        Some(&fenced),
        Some(&agent),
    );
    assert_eq!(started.status, 204, "{}", started.text());
    let stranger = forge.request_as(
        "POST",
        &format!("/api/v1/agent/jobs/{job}/heartbeat"),
        Some(&fenced),
        Some(&other),
    );
    assert_eq!(
        stranger.status,
        409,
        "only the holder reports: {}",
        stranger.text()
    );
    assert_eq!(stranger.json()["error"]["code"], "stale-token");

    // The agent goes silent: the lease runs out and the job goes back to the queue.
    let requeued = forge.wait_for("the lease to expire", || {
        let j = forge.get(&format!("/api/v1/jobs/{job}"));
        (j["status"] == "queued").then_some(j)
    });
    // Why it went back stays until it is leased again (agents.rs polls it); the attempt count
    // and the expiry counter keep what happened.
    assert_eq!(requeued["reason"]["kind"], "agent-lost", "{requeued:#}");
    assert_eq!(requeued["attempts"], 1, "{requeued:#}");
    let metrics = forge.request("GET", "/metrics", None).text();
    assert!(
        metrics.contains("lanes_lease_expiries_total 1"),
        "{metrics}"
    );

    let finish = format!(
        r#"{{"token": {token}, "finish": {{"state": "passed", "message": null, "steps": [],
            "lock_wait_ms": 0, "materialize_ms": 0}}}}"#
    );
    let late = forge.request_as(
        "POST",
        &format!("/api/v1/agent/jobs/{job}/finish"),
        Some(&finish),
        Some(&agent),
    );
    assert_eq!(
        late.status,
        409,
        "a late result is rejected: {}",
        late.text()
    );
    assert_eq!(late.json()["error"]["code"], "stale-token");
    assert_eq!(
        forge.get(&format!("/api/v1/jobs/{job}"))["status"],
        "queued"
    );

    // Leased again, with a newer token; the old one stays stale.
    let again = forge.wait_for("a second lease", || {
        let r = forge.request_as(
            "POST",
            "/api/v1/agent/lease?wait_ms=1000",
            None,
            Some(&other),
        );
        (r.status == 200).then(|| r.json())
    });
    assert_eq!(again["job"], job);
    assert!(again["token"].as_u64().expect("token") > token);
    let stale = forge.request_as(
        "POST",
        &format!("/api/v1/agent/jobs/{job}/heartbeat"),
        Some(&fenced),
        Some(&agent),
    );
    assert_eq!(stale.status, 409);
}

#[test]
fn a_running_lane_with_cancel_superseded_false_runs_to_the_end() {
    let catalog = r#"version = 1
[lane.deploy]
class = "required"
paths = ["src/**"]
cancel-superseded = false
step = [{ name = "deploy", run = "echo deploying; sleep 3; echo deployed" }]
"#;
    let forge = Forge::new(catalog, &[("src/a.txt", "a\n")]);
    let first = forge.git(&["rev-parse", "HEAD"]);
    forge.wait_for("the first deploy to run", || {
        let status = forge.seen_branch("main")?;
        (status["run"]["head"] == first.as_str() && job(&status, "deploy")["status"] == "running")
            .then_some(())
    });
    forge.write("src/a.txt", "b\n");
    forge.commit("second");
    forge.push("main");
    let old = forge.wait_for("run #1 to end", || {
        let run = forge.get("/api/v1/repos/origin/runs/1");
        (run["status"] == "passed").then_some(run)
    });
    assert_eq!(old["superseded_by"], 2, "{old:#}");
    assert_eq!(old["jobs"][0]["status"], "passed", "{old:#}");
    let log = log_of(&forge, &old["jobs"][0]);
    assert!(log.contains("deployed"), "{log}");
}

#[test]
fn sigterm_stops_the_running_steps_and_the_job_runs_again_after_restart() {
    let outside = tempfile::tempdir().expect("tempdir");
    let (marker, pid) = (outside.path().join("ran"), outside.path().join("pid"));
    let catalog = format!(
        "version = 1\n[lane.slow]\nclass = \"required\"\nstep = [{{ name = \"slow\", run = \
         \"if [ -e {m} ]; then echo second attempt; else touch {m}; echo $$ > {p}; sleep 600; \
         fi\" }}]\n",
        m = marker.display(),
        p = pid.display()
    );
    // The step writes a marker and its pid outside its lane: only without the sandbox.
    let mut forge = Forge::with_args(&catalog, &[], &["--no-sandbox"]);
    let head = forge.git(&["rev-parse", "HEAD"]);
    let step_pid = forge.wait_for("the step to start", || {
        std::fs::read_to_string(&pid)
            .ok()
            .filter(|p| p.ends_with('\n'))
            .map(|p| p.trim().to_owned())
    });
    assert_eq!(forge.stop(), Some(0), "{}", forge.server_log());
    let alive = std::process::Command::new("kill")
        .args(["-0", &step_pid])
        .status()
        .expect("kill runs");
    assert!(
        !alive.success(),
        "the step's process {step_pid} outlived the server"
    );
    forge.start();
    let status = forge.wait_done("main", &head);
    let slow = job(&status, "slow");
    assert_eq!(slow["status"], "passed", "{status:#}");
    assert_eq!(
        slow["attempts"],
        0,
        "a clean stop hands the job back without using an attempt: {slow:#}\n{}",
        forge.server_log()
    );
    assert!(log_of(&forge, slow).contains("second attempt"));
}

#[test]
fn a_job_that_kills_the_forge_three_times_ends_in_error() {
    let catalog = r#"version = 1
[lane.crash]
class = "required"
step = [{ name = "crash", run = "echo killing the forge; kill -9 $FORGE_PID; sleep 1", pass-env = ["FORGE_PID"] }]
"#;
    // Only a step outside the sandbox can reach the forge's process.
    let mut forge = Forge::exporting_pid(catalog, &["--no-sandbox"]);
    let head = forge.git(&["rev-parse", "HEAD"]);
    for kill in 1..=3 {
        let status = forge.wait_exit();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "kill {kill}: the step killed the forge ({status:?})"
        );
        forge.start();
    }
    let status = forge.wait_done("main", &head);
    let crash = job(&status, "crash");
    assert_eq!(crash["status"], "error", "{status:#}");
    assert_eq!(
        crash["reason"],
        serde_json::json!({"kind": "retries-exhausted", "retries": 2}),
        "{crash:#}"
    );
    assert!(
        forge.server_log().contains("stopped uncleanly"),
        "{}",
        forge.server_log()
    );
}

#[test]
fn a_nightly_lane_runs_on_the_default_head_at_its_slot() {
    let catalog = r#"version = 1
[lane.test]
class = "required"
step = [{ name = "test", run = "echo test" }]
[lane.soak]
class = "nightly"
schedule = "* * * * *"
step = [{ name = "soak", run = "echo soaking" }]
"#;
    let forge = Forge::new(catalog, &[]);
    let head = forge.git(&["rev-parse", "HEAD"]);
    let push = forge.wait_done("main", &head);
    assert_eq!(
        job(&push, "soak")["status"],
        "skipped",
        "a push never runs a nightly lane"
    );
    assert_eq!(job(&push, "soak")["selection"][0]["kind"], "nightly");
    // The first minute boundary after the forge saw the repository is the first slot.
    let nightly = forge.wait_for("a nightly run", || {
        let runs = forge.get("/api/v1/repos/origin/runs");
        runs.as_array()?
            .iter()
            .find(|r| r["trigger"] == "nightly" && r["status"] == "passed")
            .cloned()
    });
    assert_eq!(nightly["branch"], "main");
    assert_eq!(nightly["head"], head.as_str());
    let detail = forge.get(&format!("/api/v1/repos/origin/runs/{}", nightly["number"]));
    let lanes: Vec<&str> = detail["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["lane"].as_str().expect("lane"))
        .collect();
    assert_eq!(lanes, ["soak"], "{detail:#}");
    assert_eq!(detail["jobs"][0]["selection"][0]["kind"], "scheduled");
    assert!(log_of(&forge, &detail["jobs"][0]).contains("soaking"));
    // The branch's status is still its push run's.
    assert_eq!(forge.branch("main")["run"]["trigger"], "push");
}

#[test]
fn a_mirror_from_the_configuration_file_is_fetched_before_its_refs_are_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    // An upstream the forge cannot watch directly, and an empty mirror it fetches into.
    lanes_testkit::git_in(dir.path(), &["init", "-q", "--bare", "upstream.git"]);
    lanes_testkit::git_in(dir.path(), &["init", "-q", "--bare", "mirror.git"]);
    lanes_testkit::git_in(dir.path(), &["clone", "-q", "upstream.git", "dev"]);
    let dev = dir.path().join("dev");
    lanes_testkit::git_in(&dev, &["checkout", "-q", "-b", "main"]);
    std::fs::write(dev.join("lanes.toml"), PASSING).expect("write");
    std::fs::create_dir_all(dev.join("src")).expect("mkdir");
    std::fs::write(dev.join("src/lib.txt"), "upstream\n").expect("write");
    lanes_testkit::git_in(&dev, &["add", "-A"]);
    lanes_testkit::git_in(&dev, &["commit", "-q", "-m", "upstream"]);
    lanes_testkit::git_in(&dev, &["push", "-q", "origin", "main"]);
    let head = lanes_testkit::git_in(&dev, &["rev-parse", "HEAD"]);
    let config = dir.path().join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "[[repo]]\nname = \"mirrored\"\npath = \"mirror.git\"\nremote = \"{}\"\n\
             default-branch = \"main\"\n\n[agent]\ncapacity = 1\n",
            dir.path().join("upstream.git").display()
        ),
    )
    .expect("write config");
    let forge = Forge::with_args(
        PASSING,
        &[("src/lib.txt", "one\n")],
        &["--config", config.to_str().expect("utf-8")],
    );
    let status = forge.wait_for("the mirror's run", || {
        let r = forge.request("GET", "/api/v1/repos/mirrored/branches/main", None);
        let status = (r.status == 200).then(|| r.json())?;
        (status["run"]["head"] == head.as_str() && status["status"] == "passed").then_some(status)
    });
    let test = job(&status, "test");
    assert!(log_of(&forge, test).contains("upstream"), "{status:#}");
    let repos = forge.get("/api/v1/repos");
    let names: Vec<&str> = repos
        .as_array()
        .expect("repos")
        .iter()
        .map(|r| r["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["mirrored", "origin"]);
}

#[test]
fn bad_serve_flags_and_configuration_files_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let serve = |args: &[&str]| {
        lanes_testkit::lanes_in(
            dir.path(),
            &[
                &["serve", "--data-dir", "data", "--listen", "127.0.0.1:0"],
                args,
            ]
            .concat(),
            &[],
        )
    };
    let bad = serve(&["--poll-interval", "10 seconds"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("invalid poll interval `10 seconds`"),
        "{}",
        bad.stderr
    );
    assert!(bad.stderr.contains("help:"), "{}", bad.stderr);
    let short = serve(&["--heartbeat", "30s", "--lease", "10s"]);
    assert_eq!(short.code, 2);
    assert!(
        short.stderr.contains("does not outlast"),
        "{}",
        short.stderr
    );
    std::fs::write(dir.path().join("serve.toml"), "listn = \"0.0.0.0:80\"\n").expect("write");
    let unknown = serve(&["--config", "serve.toml"]);
    assert_eq!(unknown.code, 2);
    assert!(
        unknown.stderr.contains("serve.toml") && unknown.stderr.contains("listn"),
        "{}",
        unknown.stderr
    );
    let not_git = serve(&["--repo", "."]);
    assert_eq!(not_git.code, 2);
    assert!(
        not_git.stderr.contains("cannot watch"),
        "{}",
        not_git.stderr
    );
    assert!(
        !dir.path().join("data").exists(),
        "a repository that is not one stops the server before it writes anything"
    );
    assert!(
        !not_git.stderr.contains("LANES_TOKEN"),
        "no token shown for a server that never ran"
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let busy = lanes_testkit::lanes_in(
        dir.path(),
        &["serve", "--data-dir", "busy", "--listen", &addr],
        &[],
    );
    assert_eq!(busy.code, 2, "{}", busy.stderr);
    assert!(
        busy.stderr.contains(&format!("cannot listen on {addr}")),
        "{}",
        busy.stderr
    );
}

#[test]
fn a_lane_may_need_a_lane_defined_after_it_also_in_a_rerun() {
    let outside = tempfile::tempdir().expect("tempdir");
    let marker = outside.path().join("second");
    let catalog = format!(
        "version = 1\n[lane.app]\nclass = \"required\"\nneeds = [\"build\"]\nstep = [{{ name = \
         \"app\", run = \"echo app\" }}]\n[lane.build]\nclass = \"required\"\nstep = [{{ name = \
         \"build\", run = \"test -e {m} || {{ touch {m}; exit 1; }}\" }}]\n",
        m = marker.display()
    );
    // The step keeps a marker outside its lane between runs: only without the sandbox.
    let forge = Forge::with_args(&catalog, &[], &["--no-sandbox"]);
    let head = forge.git(&["rev-parse", "HEAD"]);
    let status = forge.wait_done("main", &head);
    assert_eq!(job(&status, "build")["status"], "failed", "{status:#}");
    assert_eq!(job(&status, "app")["status"], "skipped");
    assert_eq!(job(&status, "app")["reason"]["kind"], "need-failed");
    let r = forge.request("POST", "/api/v1/repos/origin/runs/1/rerun-failed", None);
    assert_eq!(r.status, 200, "{}", r.text());
    let status = forge.wait_for("the reruns to pass", || {
        let status = forge.branch("main");
        (status["run"]["status"] == "passed").then_some(status)
    });
    assert_eq!(job(&status, "app")["status"], "passed", "{status:#}");
    assert_eq!(job(&status, "build")["status"], "passed");
}

#[test]
fn a_run_whose_every_lane_is_skipped_is_finished_at_once() {
    let forge = Forge::new(PASSING, &[("src/lib.txt", "one\n")]);
    let head = forge.git(&["rev-parse", "HEAD"]);
    forge.wait_done("main", &head);
    forge.git(&["checkout", "-q", "-b", "readme"]);
    forge.write("README.md", "nothing any lane looks at\n");
    let readme = forge.commit("readme only");
    forge.push("readme");
    let status = forge.wait_done("readme", &readme);
    assert_eq!(status["run"]["status"], "passed", "{status:#}");
    assert_eq!(status["status"], "passed");
    assert!(!status["run"]["finished_at"].is_null(), "{status:#}");
}

#[test]
fn an_orphan_branch_does_not_hold_back_the_other_branches() {
    let forge = Forge::new(PASSING, &[("src/lib.txt", "one\n")]);
    let head = forge.git(&["rev-parse", "HEAD"]);
    forge.wait_done("main", &head);
    // No merge-base with main: it cannot be selected against it.
    forge.git(&["checkout", "-q", "--orphan", "aaa-pages"]);
    forge.write("index.html", "<p>pages</p>\n");
    forge.commit("pages");
    forge.git_push("aaa-pages");
    forge.git(&["checkout", "-q", "-b", "zzz-feature", "main"]);
    forge.write("src/lib.txt", "two\n");
    let feature = forge.commit("feature");
    forge.git_push("zzz-feature");
    let status = forge.wait_done("zzz-feature", &feature);
    assert_eq!(status["status"], "passed", "{status:#}");
    let unknown = forge.request_as("POST", "/api/v1/repos/nope/refs-changed", None, None);
    assert_eq!(unknown.status, 404, "{}", unknown.text());
}

#[test]
fn sigterm_stops_the_server_even_with_a_log_follower_connected() {
    let catalog = r#"version = 1
[lane.slow]
class = "required"
step = [{ name = "sleep", run = "echo started; sleep 600" }]
"#;
    let mut forge = Forge::new(catalog, &[]);
    let id = forge.wait_for("the job to run", || {
        let status = forge.seen_branch("main")?;
        let j = job(&status, "slow");
        (j["status"] == "running").then(|| j["id"].as_i64().expect("id"))
    });
    let mut stream = std::net::TcpStream::connect(&forge.addr).expect("connect");
    std::io::Write::write_all(
        &mut stream,
        format!(
            "GET /api/v1/jobs/{id}/log/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
            forge.token
        )
        .as_bytes(),
    )
    .expect("send");
    let mut first = [0u8; 64];
    let n = std::io::Read::read(&mut stream, &mut first).expect("the stream answers");
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    assert_eq!(forge.stop(), Some(0), "{}", forge.server_log());
    drop(stream);
}

#[test]
fn a_branch_pushed_back_to_an_older_head_shows_that_heads_run() {
    let forge = Forge::new(PASSING, &[("src/lib.txt", "one\n")]);
    let first = forge.git(&["rev-parse", "HEAD"]);
    forge.wait_done("main", &first);
    forge.write("src/lib.txt", "two\n");
    let second = forge.commit("second");
    forge.push("main");
    forge.wait_done("main", &second);
    forge.git(&["reset", "-q", "--hard", &first]);
    forge.push("main");
    let status = forge.wait_for("the branch to show the first head's run", || {
        let status = forge.branch("main");
        (status["head"] == first.as_str()).then_some(status)
    });
    assert_eq!(status["run"]["head"], first.as_str(), "{status:#}");
    assert_eq!(status["run"]["number"], 1);
    let runs = forge.get("/api/v1/repos/origin/runs");
    assert_eq!(
        runs.as_array().map(Vec::len),
        Some(2),
        "no new run: {runs:#}"
    );
}

#[test]
fn running_out_of_file_descriptors_is_said_as_such_once() {
    let mut forge = Forge::with_args(PASSING, &[("src/lib.txt", "one\n")], &[]);
    let first = forge.git(&["rev-parse", "HEAD"]);
    forge.wait_done("main", &first);
    forge.stop();
    forge.nofile = Some(96);
    forge.start();
    // Idle connections take the server's descriptors until it has none left for the
    // repository's files.
    let mut held = Vec::new();
    let log = forge.wait_for("the ref watcher to run out of file descriptors", || {
        for _ in 0..16 {
            held.extend(std::net::TcpStream::connect(&forge.addr).ok());
        }
        let log = forge.server_log();
        log.contains("reading the refs of origin failed")
            .then_some(log)
    });
    assert!(log.contains("Too many open files"), "{log}");
    assert!(!log.contains("not a git repository"), "{log}");
    // More polls fail the same way while the connections stay.
    std::thread::sleep(std::time::Duration::from_secs(3));
    drop(held);
    forge.write("src/lib.txt", "two\n");
    let second = forge.commit("second");
    forge.git_push("main");
    assert_eq!(forge.wait_done("main", &second)["status"], "passed");
    let log = forge.server_log();
    assert_eq!(
        log.matches("reading the refs of origin failed").count(),
        1,
        "said once:\n{log}"
    );
    assert!(!log.contains("not a git repository"), "{log}");
}
