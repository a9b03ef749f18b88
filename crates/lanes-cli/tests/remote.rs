//! The forge commands (`status`, `wait`, `logs`, `rerun`, `cancel`) as real processes against a
//! loopback stand-in that answers as docs/api.md says `lanes serve` does. The real server's
//! end-to-end tests are in tests/forge.

mod stand_in;

use serde_json::{Value, json};
use stand_in::{Reply, Request, StandIn, closed_port_url, lanes};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const OLD: &str = "1111111111111111111111111111111111111111";
const NEW: &str = "2222222222222222222222222222222222222222";

fn job(id: i64, lane: &str, status: &str) -> Value {
    json!({"id": id, "lane": lane, "class": "required", "status": status, "reason": null,
           "selection": [{"kind": "always"}], "rerun_of": null, "started_at": null,
           "duration_ms": 0, "steps_cached": 0, "steps_run": 0, "saved_ms": 0})
}

fn branch(head: &str, status: &str, number: u64, run_status: &str, jobs: Vec<Value>) -> Value {
    json!({"repo": "app", "branch": "main", "head": head, "status": status,
           "run": {"repo": "app", "number": number, "branch": "main", "head": head,
                   "trigger": "push", "status": run_status, "superseded_by": null,
                   "diagnostics": null, "jobs": jobs}})
}

fn repos(names: &[&str]) -> Reply {
    Reply::json(&Value::Array(
        names.iter().map(|n| json!({"name": n, "path": "/srv/x", "default_branch": "main", "remote_url": null})).collect(),
    ))
}

fn outside_repo() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn paths(requests: &[Request]) -> Vec<String> {
    requests
        .iter()
        .map(|r| format!("{} {}", r.method, r.target))
        .collect()
}

#[test]
fn status_prints_the_branch_and_json_is_the_forges_document() {
    let doc = branch(NEW, "passed", 3, "passed", vec![job(7, "test", "passed")]);
    let served = doc.clone();
    let forge = StandIn::start(move |r, _| match r.path() {
        "/api/v1/repos" => repos(&["app"]),
        "/api/v1/repos/app/branches/main" => Reply::json(&served),
        _ => Reply::error(404, "not-found", "no such route"),
    });
    let dir = outside_repo();
    let run = lanes(
        dir.path(),
        &["status", "main", "--server", &forge.url],
        &[("LANES_TOKEN", "s3cret")],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "app main: passed (run #3 at 222222222222)\n  test  required  passed\n"
    );
    let requests = forge.requests();
    assert_eq!(
        paths(&requests),
        ["GET /api/v1/repos", "GET /api/v1/repos/app/branches/main"]
    );
    assert!(
        requests
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer s3cret"))
    );

    let run = lanes(
        dir.path(),
        &["status", "main", "--json", "--repo", "app"],
        &[("LANES_SERVER", &forge.url)],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.lines().count(), 1);
    let printed: Value = serde_json::from_str(&run.stdout).expect("one JSON document");
    assert_eq!(printed, doc);
}

#[test]
fn the_repository_is_the_one_named_like_the_local_checkout() {
    let forge = StandIn::start(|r, _| match r.path() {
        "/api/v1/repos" => repos(&["app", "web"]),
        "/api/v1/repos/web/branches/topic/x" => Reply::json(&json!({
            "repo": "web", "branch": "topic/x", "head": null, "status": "pending", "run": null})),
        _ => Reply::error(404, "not-found", "no such route"),
    });
    let dir = outside_repo();
    let checkout = dir.path().join("web");
    std::fs::create_dir(&checkout).expect("mkdir");
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .current_dir(&checkout)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .args(args)
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["init", "-q", "-b", "topic/x"]);
    let run = lanes(&checkout, &["status", "--server", &forge.url], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "web topic/x: pending (no run yet)\n");

    // Elsewhere, with two repositories to choose from, it asks.
    let run = lanes(dir.path(), &["status", "main", "--server", &forge.url], &[]);
    assert_eq!(run.code, 2);
    assert_eq!(
        run.stderr,
        "error: which repository? the forge serves 2: app, web\n  help: pass --repo NAME or set LANES_REPO\n"
    );
}

#[test]
fn status_outside_a_repository_needs_a_branch() {
    let dir = outside_repo();
    let run = lanes(dir.path(), &["status", "--server", &closed_port_url()], &[]);
    assert_eq!(run.code, 2);
    assert_eq!(
        run.stderr,
        "error: name the branch: this is not inside a git repository\n  help: for example `lanes status main`\n"
    );
}

#[test]
fn an_unreachable_forge_says_how_to_start_one() {
    let dir = outside_repo();
    let url = closed_port_url();
    let run = lanes(dir.path(), &["status", "main", "--server", &url], &[]);
    assert_eq!(run.code, 2);
    assert!(run.stdout.is_empty());
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert!(
        lines[0].starts_with(&format!("error: cannot reach the forge at {url}: ")),
        "{}",
        run.stderr
    );
    assert_eq!(
        lines[1],
        "  help: start it with `lanes serve`, or point LANES_SERVER (or --server) at it"
    );
}

#[test]
fn a_refused_token_gets_help_about_lanes_token() {
    let forge =
        StandIn::start(|_, _| Reply::error(401, "unauthorized", "this route needs a token"));
    let dir = outside_repo();
    let run = lanes(dir.path(), &["status", "main", "--server", &forge.url], &[]);
    assert_eq!(run.code, 2);
    assert_eq!(
        run.stderr,
        "error: this route needs a token\n  help: set LANES_TOKEN to the admin token `lanes serve` printed when it first started\n"
    );
}

#[test]
fn wait_never_answers_with_an_older_heads_run() {
    // The forge shows the old head's passed run three times, then the awaited head running,
    // then failed.
    let forge = StandIn::start(|r, n| match r.path() {
        "/api/v1/repos" => repos(&["app"]),
        "/api/v1/repos/app/runs" => Reply::json(&json!([
            {"number": 1, "branch": "main", "head": OLD, "trigger": "push", "status": "passed"}])),
        "/api/v1/repos/app/branches/main" => Reply::json(&match n {
            0..=2 => branch(OLD, "passed", 1, "passed", vec![job(1, "test", "passed")]),
            3 => branch(
                NEW,
                "running",
                2,
                "running",
                vec![job(2, "test", "running")],
            ),
            _ => branch(NEW, "failed", 2, "failed", vec![job(2, "test", "failed")]),
        }),
        _ => Reply::error(404, "not-found", "no such route"),
    });
    let dir = outside_repo();
    let run = lanes(
        dir.path(),
        &[
            "wait",
            "main",
            "--head",
            NEW,
            "--server",
            &forge.url,
            "--timeout",
            "60s",
        ],
        &[],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "app main: failed (run #2 at 222222222222)\n  test  required  failed\n"
    );
    assert_eq!(
        run.stderr
            .matches("the forge has not seen 222222222222 yet")
            .count(),
        1,
        "{}",
        run.stderr
    );
    let branch_polls = forge
        .requests()
        .iter()
        .filter(|r| r.path() == "/api/v1/repos/app/branches/main")
        .count();
    assert_eq!(branch_polls, 5);
}

#[test]
fn wait_reports_the_awaited_heads_run_after_the_forge_moved_past_it() {
    let forge = StandIn::start(|r, _| match r.path() {
        "/api/v1/repos" => repos(&["app"]),
        "/api/v1/repos/app/branches/main" => Reply::json(&branch(
            NEW,
            "running",
            5,
            "running",
            vec![job(9, "test", "running")],
        )),
        "/api/v1/repos/app/runs" => Reply::json(&json!([
            {"number": 5, "branch": "main", "head": NEW, "trigger": "push", "status": "running"},
            {"number": 4, "branch": "main", "head": OLD, "trigger": "push", "status": "cancelled",
             "superseded_by": 5}])),
        "/api/v1/repos/app/runs/4" => Reply::json(&json!({
            "number": 4, "branch": "main", "head": OLD, "trigger": "push", "status": "cancelled",
            "superseded_by": 5, "jobs": [job(8, "test", "cancelled")]})),
        _ => Reply::error(404, "not-found", "no such route"),
    });
    let dir = outside_repo();
    let run = lanes(
        dir.path(),
        &[
            "wait", "main", "--head", OLD, "--server", &forge.url, "--json",
        ],
        &[],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let printed: Value = serde_json::from_str(&run.stdout).expect("one JSON document");
    assert_eq!(printed["status"], "cancelled");
    assert_eq!(printed["run"]["number"], 4);
    assert!(
        run.stderr.contains(
            "the forge has moved on to 222222222222 (run #5); run #4 is the one for 111111111111"
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn wait_gives_up_at_its_timeout_with_exit_3() {
    let forge = StandIn::start(|r, _| match r.path() {
        "/api/v1/repos" => repos(&["app"]),
        "/api/v1/repos/app/branches/main" => Reply::json(&branch(
            NEW,
            "running",
            2,
            "running",
            vec![job(2, "test", "running")],
        )),
        _ => Reply::error(404, "not-found", "no such route"),
    });
    let dir = outside_repo();
    let run = lanes(
        dir.path(),
        &["wait", "main", "--server", &forge.url, "--timeout", "1s"],
        &[],
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("timed out after 1.0s: run #2 is still going"),
        "{}",
        run.stderr
    );
    assert_eq!(
        run.stdout,
        "app main: running (run #2 at 222222222222)\n  test  required  running\n"
    );

    let run = lanes(dir.path(), &["wait", "main", "--timeout", "soon"], &[]);
    assert_eq!(run.code, 2);
    assert_eq!(
        run.stderr,
        "error: invalid duration `soon`\n  help: use a number and a unit: 90s, 30m, 1h30m\n"
    );
}

fn run_with_log_job() -> Value {
    branch(
        NEW,
        "passed",
        3,
        "passed",
        vec![job(7, "test", "failed"), job(9, "test", "passed")],
    )
}

#[test]
fn logs_pages_through_the_newest_jobs_log() {
    let log = "line one\nline two é\n".as_bytes().to_vec();
    let length = log.len();
    let forge = StandIn::start(move |r, _| match r.path() {
        "/api/v1/repos" => repos(&["app"]),
        "/api/v1/repos/app/branches/main" => Reply::json(&run_with_log_job()),
        "/api/v1/jobs/9/log" => {
            let offset: usize = r.query("offset").and_then(|o| o.parse().ok()).unwrap_or(0);
            // Pages of 10 bytes, the second one cutting `é` in two.
            let page = &log[offset.min(length)..(offset + 10).min(length)];
            Reply::text(
                page,
                &[
                    ("x-log-offset", offset.to_string()),
                    ("x-log-length", length.to_string()),
                ],
            )
        }
        _ => Reply::error(404, "not-found", "no such route"),
    });
    let dir = outside_repo();
    let run = lanes(
        dir.path(),
        &["logs", "main", "test", "--server", &forge.url],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "line one\nline two é\n");
    let offsets: Vec<String> = forge
        .requests()
        .iter()
        .filter(|r| r.path() == "/api/v1/jobs/9/log")
        .map(|r| r.query("offset").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(offsets, ["0", "10", "20"]);

    let run = lanes(
        dir.path(),
        &["logs", "main", "nope", "--server", &forge.url],
        &[],
    );
    assert_eq!(run.code, 2);
    assert_eq!(
        run.stderr,
        "error: run #3 has no lane `nope`\n  help: lanes: test\n"
    );
}

#[test]
fn logs_follow_reconnects_from_the_last_offset_and_exits_with_the_jobs_result() {
    let forge = StandIn::start(|r, n| match r.path() {
        "/api/v1/repos" => repos(&["app"]),
        "/api/v1/repos/app/runs/3" => Reply::json(&run_with_log_job()["run"]),
        "/api/v1/jobs/9/log/stream" => match n {
            // The first stream drops after one chunk.
            0 => Reply::events("event: log\ndata: {\"offset\":0,\"text\":\"hello\\n\"}\n\n"),
            _ => Reply::events(
                "event: log\ndata: {\"offset\":6,\"text\":\"world\\n\"}\n\n: keep-alive\n\n\
                 event: end\ndata: {\"status\":\"failed\"}\n\n",
            ),
        },
        _ => Reply::error(404, "not-found", "no such route"),
    });
    let dir = outside_repo();
    let run = lanes(
        dir.path(),
        &[
            "logs", "main", "test", "--run", "3", "--follow", "--server", &forge.url,
        ],
        &[],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.stdout, "hello\nworld\n");
    let offsets: Vec<String> = forge
        .requests()
        .iter()
        .filter(|r| r.path() == "/api/v1/jobs/9/log/stream")
        .map(|r| r.query("offset").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(offsets, ["0", "6"]);
}

#[test]
fn rerun_and_cancel_post_to_the_newest_job_or_the_run() {
    let posts = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&posts);
    let forge = StandIn::start(move |r, _| {
        if r.method == "POST" {
            counted.fetch_add(1, Ordering::SeqCst);
        }
        match (r.method.as_str(), r.path()) {
            ("GET", "/api/v1/repos") => repos(&["app"]),
            ("GET", "/api/v1/repos/app/branches/main") => Reply::json(&run_with_log_job()),
            ("POST", "/api/v1/jobs/9/rerun") => {
                let mut new = job(12, "test", "queued");
                new["rerun_of"] = json!(9);
                Reply::json(&new)
            }
            ("POST", "/api/v1/repos/app/runs/3/rerun-failed") => Reply::json(&json!({"jobs": []})),
            ("POST", "/api/v1/jobs/9/cancel") => {
                Reply::error(409, "conflict", "job 9 has already finished")
            }
            ("POST", "/api/v1/repos/app/runs/8/cancel") => Reply::json(&json!({
                "number": 8, "branch": "main", "head": NEW, "status": "cancelled",
                "jobs": [job(20, "test", "cancelled")]})),
            _ => Reply::error(404, "not-found", "no such route"),
        }
    });
    let dir = outside_repo();
    let url = forge.url.clone();
    let lanes_here = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--server", url.as_str()]);
        lanes(dir.path(), &all, &[])
    };

    let run = lanes_here(&["rerun", "main", "--lane", "test"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "queued test again in app run #3: job 12 (rerun of job 9)\n"
    );

    let run = lanes_here(&["rerun", "main"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "nothing to rerun in app run #3: no job's latest attempt failed\n"
    );

    let run = lanes_here(&["rerun", "main", "--json"]);
    assert_eq!(run.stdout, "{\"jobs\":[]}\n");

    let run = lanes_here(&["cancel", "main", "--lane", "test"]);
    assert_eq!(run.code, 2);
    assert_eq!(run.stderr, "error: job 9 has already finished\n");

    let run = lanes_here(&["cancel", "--run", "8"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "cancelled app run #8 on main: cancelled\n  test  required  cancelled\n"
    );
    assert_eq!(posts.load(Ordering::SeqCst), 5);
    let posted: Vec<String> = forge
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.target.clone())
        .collect();
    assert_eq!(
        posted,
        [
            "/api/v1/jobs/9/rerun",
            "/api/v1/repos/app/runs/3/rerun-failed",
            "/api/v1/repos/app/runs/3/rerun-failed",
            "/api/v1/jobs/9/cancel",
            "/api/v1/repos/app/runs/8/cancel",
        ]
    );
}
