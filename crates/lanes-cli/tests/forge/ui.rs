//! The web UI against a real `lanes serve`: pages after real pushes, sign-in and its cookie,
//! action forms, cross-site refusals, escaping, 404 pages, live events; and the browser tests
//! (`tests/browser/`, headless Chromium through playwright-core) driven from here.

use crate::{ONE_GROUP, PASSING, job};
use lanes_testkit::{Forge, PATIENCE, Response, parse_response};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// One HTTP/1.1 request with exactly these extra headers (no token unless given).
fn http(forge: &Forge, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
    let mut stream = TcpStream::connect(&forge.addr).expect("the forge accepts connections");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        forge.addr,
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("send");
    stream.write_all(body.as_bytes()).expect("send body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    parse_response(&raw)
}

fn bearer(forge: &Forge) -> String {
    format!("Bearer {}", forge.token)
}

/// GET a page with the admin token; panics unless 200 HTML.
fn page(forge: &Forge, path: &str) -> String {
    let auth = bearer(forge);
    let r = http(forge, "GET", path, &[("Authorization", &auth)], "");
    assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{:?}",
        r.headers
    );
    r.text()
}

/// Signs in with the form; returns the `name=value` of the session cookie.
fn sign_in(forge: &Forge) -> String {
    let body = format!("token={}&next=%2F", forge.token);
    let r = http(
        forge,
        "POST",
        "/sign-in",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Sec-Fetch-Site", "same-origin"),
        ],
        &body,
    );
    assert_eq!(r.status, 303, "{}", r.text());
    let cookie = r.header("set-cookie").expect("a session cookie").to_owned();
    cookie.split(';').next().expect("name=value").to_owned()
}

#[test]
fn every_page_shows_a_pushed_branch_its_run_and_its_lane_log() {
    let forge = Forge::new(PASSING, &[("src/lib.txt", "one\n"), ("docs/a.md", "a\n")]);
    let main = forge.git(&["rev-parse", "HEAD"]);
    forge.wait_done("main", &main);
    forge.git(&["checkout", "-q", "-b", "feature/ui"]);
    forge.write("src/lib.txt", "two\n");
    let head = forge.commit("change src");
    forge.push("feature/ui");
    let status = forge.wait_done("feature/ui", &head);
    assert_eq!(status["status"], "passed", "{status:#}");

    let home = page(&forge, "/");
    assert!(
        home.contains(r#"href="/origin/branches/feature/ui""#),
        "{home}"
    );
    assert!(home.contains(r#"<span class="chip s-passed">passed</span>"#));
    assert!(
        home.contains(r#"<span class="chip small s-passed">run passed</span>"#),
        "the run's own status beside the branch's: {home}"
    );
    assert!(home.contains(r#"href="/origin/runs/2">#2</a>"#), "{home}");
    assert!(home.contains(&head[..10]), "the head's short id: {home}");
    assert!(home.contains("Agents online"), "{home}");

    let branch = page(&forge, "/origin/branches/feature/ui");
    assert!(branch.contains("<title>passed · feature/ui · origin · lanes</title>"));
    assert!(
        branch.contains("CI: <a href=\"/origin/runs/2\">run #2</a>"),
        "{branch}"
    );
    assert!(branch.contains("1 passed</span>"), "{branch}");
    assert!(branch.contains("test: passed"), "a chip per lane: {branch}");
    assert!(branch.contains("queued "), "{branch}");
    assert!(branch.contains(r#"id="run-2""#), "the history: {branch}");
    assert!(branch.contains(r#"href="/-/favicon/passed.svg""#));

    let run = page(&forge, "/origin/runs/2");
    assert!(run.contains("Run #2"), "{run}");
    assert!(
        run.contains("src/lib.txt matched src/**"),
        "why test was selected: {run}"
    );
    assert!(
        run.contains("skipped: no matching path"),
        "why docs was skipped: {run}"
    );
    for what in ["Queue wait", "Lock wait", "build", "check", "c-miss"] {
        assert!(run.contains(what), "{what}: {run}");
    }
    assert!(
        run.contains("Rerun test"),
        "the admin token signs in, so the actions show: {run}"
    );

    let lane = page(&forge, "/origin/runs/2/lanes/test");
    assert!(lane.contains("building"), "{lane}");
    assert!(lane.contains("two"), "the step's output: {lane}");
    assert!(
        lane.contains(r#"<details class="step st-passed" id="step-1""#),
        "{lane}"
    );
    assert!(lane.contains("step 1/2 build"), "{lane}");
    let id = job(&status, "test")["id"].as_i64().expect("id");
    assert!(
        lane.contains(&format!("/origin/runs/2/lanes/test/raw?job={id}")),
        "a raw log link: {lane}"
    );
    let auth = bearer(&forge);
    let raw = http(
        &forge,
        "GET",
        &format!("/origin/runs/2/lanes/test/raw?job={id}"),
        &[("Authorization", &auth)],
        "",
    );
    assert_eq!(raw.status, 200);
    assert!(raw.text().starts_with("== lane test at"), "{}", raw.text());

    let agents = page(&forge, "/agents");
    assert!(agents.contains("<th scope=\"row\">local"), "{agents}");
    assert!(agents.contains("a-online"), "{agents}");
    let groups = page(&forge, "/groups");
    assert!(groups.contains("Concurrency groups"), "{groups}");
    let cache = page(&forge, "/cache");
    assert!(cache.contains("Hit rate"), "{cache}");
    assert!(
        cache.contains("<th scope=\"row\">test</th><td>build</td><td>2</td>"),
        "test's build step missed in both runs: {cache}"
    );
    // Why: the first run found nothing in the agent's cache; the second, a changed input.
    let build = cache
        .split("<th scope=\"row\">test</th><td>build</td>")
        .nth(1)
        .and_then(|row| row.split("</tr>").next())
        .expect("build's row");
    assert!(
        build.contains("<li>first run in this cache ×1</li>"),
        "{build}"
    );
    assert!(build.contains("<li>inputs changed ×1</li>"), "{build}");
    assert!(
        build.contains("input src/lib.txt: blob "),
        "the newest miss's own: {build}"
    );
    let steps = &forge.get(&format!("/api/v1/jobs/{id}"))["steps"];
    assert_eq!(steps[0]["miss"]["kind"], "inputs", "{steps:#}");
    assert!(
        steps[0]["miss"]["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("input src/lib.txt: blob ")),
        "{steps:#}"
    );
    assert!(
        run.contains("<span class=\"sub miss-why\">input src/lib.txt: blob "),
        "the run page says why a step missed: {run}"
    );
}

#[test]
fn reads_need_a_session_and_signing_in_sets_a_strict_http_only_cookie() {
    let forge = Forge::new(PASSING, &[("src/lib.txt", "one\n")]);
    // Run #1 exists before anyone reads it.
    forge.wait_for("run #1", || {
        forge
            .seen_branch("main")
            .filter(|s| s["run"]["number"] == 1)
    });
    let anonymous = http(&forge, "GET", "/origin/runs/1", &[], "");
    assert_eq!(anonymous.status, 401);
    let text = anonymous.text();
    assert!(
        text.contains(r#"<form method="post" action="/sign-in""#),
        "{text}"
    );
    assert!(
        text.contains(r#"name="next" value="/origin/runs/1""#),
        "comes back to the page: {text}"
    );

    let wrong = http(
        &forge,
        "POST",
        "/sign-in",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "token=lanes_nope&next=%2F",
    );
    assert_eq!(wrong.status, 403, "{}", wrong.text());
    assert!(wrong.header("set-cookie").is_none());

    let body = format!("token={}&next=%2Forigin%2Fruns%2F1", forge.token);
    let r = http(
        &forge,
        "POST",
        "/sign-in",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &body,
    );
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/origin/runs/1"));
    let set = r.header("set-cookie").expect("a cookie");
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Strict"), "{set}");
    assert!(
        !set.contains(&forge.token),
        "the cookie is a session id, not the token: {set}"
    );
    let cookie = set.split(';').next().expect("name=value");
    let signed = http(&forge, "GET", "/origin/runs/1", &[("Cookie", cookie)], "");
    assert_eq!(signed.status, 200, "{}", signed.text());
    assert!(signed.text().contains("Sign out"));
    // The session reads the API (the log tail needs it) but never acts through it.
    let read = http(&forge, "GET", "/api/v1/repos", &[("Cookie", cookie)], "");
    assert_eq!(read.status, 200, "{}", read.text());
    let act = http(
        &forge,
        "POST",
        "/api/v1/repos/origin/runs/1/cancel",
        &[("Cookie", cookie)],
        "",
    );
    assert_eq!(act.status, 401, "{}", act.text());
    assert!(
        !forge
            .server_log()
            .contains(&format!("token={}", forge.token)),
        "the token is never logged"
    );

    let out = http(
        &forge,
        "POST",
        "/sign-out",
        &[("Cookie", cookie), ("Sec-Fetch-Site", "same-origin")],
        "",
    );
    assert_eq!(out.status, 303);
    let after = http(&forge, "GET", "/origin/runs/1", &[("Cookie", cookie)], "");
    assert_eq!(after.status, 401, "the session ended");

    let public = Forge::with_args(PASSING, &[("src/lib.txt", "one\n")], &["--public-read"]);
    let read = http(&public, "GET", "/", &[], "");
    assert_eq!(read.status, 200, "{}", read.text());
    assert!(
        !read
            .text()
            .contains("<button type=\"submit\" class=\"danger\""),
        "no action buttons for an anonymous reader"
    );
    let act = http(&public, "POST", "/origin/runs/1/cancel", &[], "");
    assert_eq!(act.status, 401, "{}", act.text());
}

const SLOW: &str = r#"version = 1
[lane.slow]
class = "required"
step = [{ name = "sleep", run = "echo started; sleep 600" }]
"#;

#[test]
fn the_cancel_form_stops_a_running_job_and_a_cross_site_post_is_refused() {
    let forge = Forge::with_args(SLOW, &[], &["--heartbeat", "10m", "--lease", "30m"]);
    let id = forge.wait_for("the job to run", || {
        let status = forge.seen_branch("main")?;
        let j = job(&status, "slow");
        (j["status"] == "running").then(|| j["id"].as_i64().expect("id"))
    });
    let cookie = sign_in(&forge);
    let run = http(&forge, "GET", "/origin/runs/1", &[("Cookie", &cookie)], "");
    let action = format!("/origin/runs/1/jobs/{id}/cancel");
    assert!(
        run.text().contains(&format!("action=\"{action}\"")),
        "{}",
        run.text()
    );

    let cross = http(
        &forge,
        "POST",
        &action,
        &[("Cookie", &cookie), ("Sec-Fetch-Site", "cross-site")],
        "",
    );
    assert_eq!(cross.status, 403, "{}", cross.text());
    let foreign = http(
        &forge,
        "POST",
        &action,
        &[("Cookie", &cookie), ("Origin", "https://evil.example")],
        "",
    );
    assert_eq!(foreign.status, 403, "{}", foreign.text());
    assert_eq!(
        forge.get(&format!("/api/v1/jobs/{id}"))["status"],
        "running",
        "a refused form changes nothing"
    );

    let origin = format!("http://{}", forge.addr);
    let ok = http(
        &forge,
        "POST",
        &action,
        &[
            ("Cookie", &cookie),
            ("Origin", &origin),
            ("Sec-Fetch-Site", "same-origin"),
        ],
        "",
    );
    assert_eq!(ok.status, 303, "{}", ok.text());
    assert_eq!(ok.header("location"), Some("/origin/runs/1?did=cancel"));
    let j = forge.get(&format!("/api/v1/jobs/{id}"));
    assert_eq!(j["status"], "cancelled", "{j:#}");
    assert_eq!(j["reason"]["kind"], "cancelled-by-user");
    let again = http(
        &forge,
        "POST",
        &action,
        &[("Cookie", &cookie), ("Sec-Fetch-Site", "same-origin")],
        "",
    );
    assert_eq!(
        again.status,
        409,
        "cancelling twice conflicts: {}",
        again.text()
    );
    assert!(again.text().contains("409 Conflict"));
    assert!(
        again.text().contains("Sign out"),
        "an error page knows who is signed in: {}",
        again.text()
    );
    let back = http(
        &forge,
        "GET",
        "/origin/runs/1?did=cancel",
        &[("Cookie", &cookie)],
        "",
    );
    assert!(back.text().contains("The job was cancelled."));
}

#[test]
fn hostile_branch_names_diagnostics_and_log_text_are_escaped() {
    let catalog = r#"version = 1
[lane.test]
class = "required"
step = [{ name = "echo", run = "echo '<script>alert(3)</script>'" }]
"#;
    let forge = Forge::new(catalog, &[]);
    let head = forge.git(&["rev-parse", "HEAD"]);
    forge.wait_done("main", &head);
    let branch = "x/<script>alert(1)</script>";
    forge.git(&["checkout", "-q", "-b", branch]);
    // Step names are checked, so the hostile one makes an error run whose diagnostics quote it.
    forge.write(
        "lanes.toml",
        "version = 1\n[lane.test]\nclass = \"required\"\nstep = [{ name = \"<img src=x \
         onerror=alert(2)>\", run = \"true\" }]\n",
    );
    let head = forge.commit("hostile");
    forge.push(branch);
    // The request line needs the branch percent-encoded.
    let encoded = "x/%3Cscript%3Ealert%281%29%3C/script%3E";
    let status = forge.wait_for("the hostile branch's run to end", || {
        let r = forge.request(
            "GET",
            &format!("/api/v1/repos/origin/branches/{encoded}"),
            None,
        );
        let status = (r.status == 200).then(|| r.json())?;
        (status["run"]["head"] == head.as_str() && status["run"]["status"] == "error")
            .then_some(status)
    });
    assert_eq!(status["run"]["number"], 2, "{status:#}");
    let home = page(&forge, "/");
    assert!(!home.contains("<script>alert(1)"), "{home}");
    assert!(
        home.contains("x/&#60;script&#62;alert(1)&#60;/script&#62;")
            || home.contains("x/&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{home}"
    );
    assert!(
        home.contains(&format!("/origin/branches/{encoded}")),
        "the link is percent-encoded: {home}"
    );
    let branch_page = page(&forge, &format!("/origin/branches/{encoded}"));
    assert!(!branch_page.contains("<script>alert(1)"), "{branch_page}");
    assert!(branch_page.contains("alert(1)"), "{branch_page}");
    let run = page(&forge, "/origin/runs/2");
    assert!(run.contains("The catalog failed at this commit"), "{run}");
    assert!(run.contains("invalid step name"), "{run}");
    assert!(!run.contains("<img src=x"), "{run}");
    assert!(!run.contains("<script>alert(1)"), "{run}");
    let lane = page(&forge, "/origin/runs/1/lanes/test");
    assert!(!lane.contains("<script>alert(3)"), "{lane}");
    assert!(
        lane.contains("alert(3)"),
        "the line is there, as text: {lane}"
    );
}

#[test]
fn missing_pages_are_html_404s_and_the_apis_stay_json() {
    let forge = Forge::new(PASSING, &[("src/lib.txt", "one\n")]);
    let head = forge.git(&["rev-parse", "HEAD"]);
    forge.wait_done("main", &head);
    let auth = bearer(&forge);
    for path in [
        "/no/such/page",
        "/origin/runs/99",
        "/origin/runs/abc",
        "/origin/runs/1/lanes/nope",
        "/origin/branches/nope",
        "/nope/branches/main",
        "/-/assets/nope.css",
    ] {
        let r = http(&forge, "GET", path, &[("Authorization", &auth)], "");
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert!(
            r.header("content-type")
                .is_some_and(|t| t.starts_with("text/html")),
            "{path}: {:?}",
            r.headers
        );
        assert!(r.text().contains("404 Not Found"), "{path}");
    }
    let api = http(
        &forge,
        "GET",
        "/api/v1/nope",
        &[("Authorization", &auth)],
        "",
    );
    assert_eq!(api.status, 404);
    assert_eq!(api.json()["error"]["code"], "not-found");
    let run = http(
        &forge,
        "GET",
        "/api/v1/repos/origin/runs/99",
        &[("Authorization", &auth)],
        "",
    );
    assert_eq!(run.json()["error"]["code"], "not-found");
}

#[test]
fn a_lane_blocked_by_a_group_names_the_run_holding_it() {
    let forge = Forge::with_args(ONE_GROUP, &[], &["--agent-capacity", "2"]);
    let (holder, waiter) = forge.wait_for("one lane to hold the group", || {
        let status = forge.seen_branch("main")?;
        let jobs = status["run"]["jobs"].as_array()?.clone();
        let running = jobs.iter().find(|j| j["status"] == "running")?.clone();
        let waiting = jobs
            .iter()
            .find(|j| j["reason"]["kind"] == "blocked-by-group")?
            .clone();
        Some((running, waiting))
    });
    let holder = holder["lane"].as_str().expect("lane").to_owned();
    let run = page(&forge, "/origin/runs/1");
    assert!(
        run.contains(&format!(
            "blocked by group mac, held by <a href=\"/origin/runs/1/lanes/{holder}\">run #1 lane {holder}</a>"
        )),
        "{run}"
    );
    let lane = page(
        &forge,
        &format!(
            "/origin/runs/1/lanes/{}",
            waiter["lane"].as_str().expect("lane")
        ),
    );
    assert!(lane.contains("blocked by group mac"), "{lane}");
    let groups = page(&forge, "/groups");
    assert!(groups.contains(&format!("origin #1 {holder}")), "{groups}");
    assert!(groups.contains("1 of 1 held · full"), "{groups}");
    assert!(groups.contains("waiting for"), "{groups}");
}

#[test]
fn the_live_events_of_a_run_page_carry_its_re_rendered_lanes() {
    let forge = Forge::new(SLOW, &[]);
    forge.wait_for("the job to run", || {
        let status = forge.seen_branch("main")?;
        (job(&status, "slow")["status"] == "running").then_some(())
    });
    let mut stream = TcpStream::connect(&forge.addr).expect("connect");
    write!(
        stream,
        "GET /-/events?page=%2Forigin%2Fruns%2F1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        forge.token
    )
    .expect("send");
    stream
        .set_read_timeout(Some(PATIENCE))
        .expect("a read timeout");
    let mut seen = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + PATIENCE;
    while !String::from_utf8_lossy(&seen).contains("slow") && Instant::now() < deadline {
        let n = stream.read(&mut buf).expect("the stream answers");
        assert!(
            n > 0,
            "the stream ended: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("text/event-stream"), "{text}");
    assert!(text.contains("event: page"), "{text}");
    assert!(text.contains(r#""status":"running""#), "{text}");
    assert!(text.contains("Run #1"), "the run page's fragment: {text}");
    let missing = http(
        &forge,
        "GET",
        "/-/events?page=%2Fnope%2Fnope",
        &[("Authorization", &bearer(&forge))],
        "",
    );
    assert_eq!(missing.status, 404);
}

/// The browser tests: `tests/browser/ui.test.mjs` in headless Chromium against real forges.
#[test]
#[expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a skip must be loud, and the measured log delays are for BENCHMARKS.md"
)]
fn the_ui_in_a_real_browser() {
    // The checkout this test runs in, read when it runs: a test binary built in another copy of
    // the sources (lanes' own `test` lane shares the target directory with the checkout) still
    // finds the checkout's tests/browser and its node_modules. cargo and nextest set it.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let root = manifest.join("../../tests/browser");
    let chromium = which("chromium").or_else(|| which("chromium-browser"));
    let modules = root.join("node_modules/playwright-core");
    if chromium.is_none() || !modules.exists() || which("node").is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the browser tests: install chromium and run `npm ci` in tests/browser \
             (.ci/run does)"
        );
        eprintln!(
            "SKIPPED the browser tests: no chromium, node or tests/browser/node_modules \
             (apt-get install chromium; cd tests/browser && npm ci)"
        );
        return;
    }
    let out = Command::new("node")
        .arg("--test")
        .arg("--test-reporter=spec")
        .arg(root.join("ui.test.mjs"))
        .env("LANES_BIN", env!("CARGO_BIN_EXE_lanes"))
        .env("CHROMIUM", chromium.expect("checked"))
        .env("SCREENSHOTS", manifest.join("../../docs/screenshots"))
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The measured delays go to the test's output, for BENCHMARKS.md.
    println!("{stdout}");
    assert!(
        out.status.success(),
        "browser tests failed:\n{stdout}\n{stderr}"
    );
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

#[test]
fn the_branch_page_shows_the_run_of_the_head_the_branch_points_at() {
    let forge = Forge::new(PASSING, &[("src/lib.txt", "one\n")]);
    let first = forge.git(&["rev-parse", "HEAD"]);
    forge.wait_done("main", &first);
    forge.write("src/lib.txt", "two\n");
    let second = forge.commit("second");
    forge.push("main");
    forge.wait_done("main", &second);
    let newest = page(&forge, "/origin/branches/main");
    assert!(
        newest.contains("CI: <a href=\"/origin/runs/2\">"),
        "{newest}"
    );
    forge.git(&["reset", "-q", "--hard", &first]);
    forge.push("main");
    forge.wait_for("the forge to see main back at its first head", || {
        (forge.branch("main")["head"] == first.as_str()).then_some(())
    });
    let back = page(&forge, "/origin/branches/main");
    assert!(
        back.contains("CI: <a href=\"/origin/runs/1\">"),
        "the first head's run, not the newer one: {back}"
    );
    assert!(
        back.contains(r#"id="run-2""#),
        "the history keeps both: {back}"
    );
}

#[test]
fn the_agents_page_shows_scopes_in_use_and_each_hosts_cache_as_the_agents_report_them() {
    let catalog = r#"version = 1
[lane.sim]
class = "required"
scope = "runtime"
cache-mounts = ["devices"]
step = [{ name = "boot", run = "echo booted; sleep 600" }]
"#;
    let forge = Forge::with_args(catalog, &[], &["--heartbeat", "10m", "--lease", "30m"]);
    let id = forge.wait_for("the job to run", || {
        let status = forge.seen_branch("main")?;
        let j = job(&status, "sim");
        (j["status"] == "running").then(|| j["id"].as_i64().expect("id"))
    });
    // The built-in agent reports its host when the job starts: the scope, its mount, the job.
    let href = format!("/origin/runs/1/lanes/sim?job={id}");
    let agents = forge.wait_for("the scope in use on the agents page", || {
        let agents = page(&forge, "/agents");
        agents
            .contains(&format!("in use by</span> <a href=\"{href}\""))
            .then_some(agents)
    });
    assert!(
        agents.contains("<span class=\"scope\">runtime</span>"),
        "{agents}"
    );
    assert!(agents.contains("mounts: devices"), "{agents}");
    assert!(agents.contains(" in 0 results and 0 blobs"), "{agents}");
    let api = forge.get("/api/v1/agents");
    let local = &api[0];
    assert_eq!(local["name"], "local", "{api:#}");
    let scope = local["host"]["scopes"]
        .as_array()
        .expect("scopes")
        .iter()
        .find(|s| s["name"] == "runtime")
        .expect("the lane's scope");
    assert_eq!(scope["jobs"], serde_json::json!([id]), "{api:#}");
    assert_eq!(scope["mounts"], serde_json::json!(["devices"]));
    assert!(local["host"]["reported_at"].is_string(), "{api:#}");

    // A remote agent reports its own host; only with its token.
    let r = forge.request(
        "POST",
        "/api/v1/agents",
        Some(r#"{"name": "mac-1", "labels": ["macos"], "capacity": 2}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let token = r.json()["token"].as_str().expect("a token").to_owned();
    let status = r#"{"platform": "macos-aarch64", "version": "0.1.0",
        "scopes": [{"name": "compile", "mounts": ["derived-data", "target"], "jobs": []}],
        "cache": {"actions": 12, "blobs": 340, "bytes": 3221225472}}"#;
    let anonymous = http(
        &forge,
        "POST",
        "/api/v1/agent/status",
        &[("Content-Type", "application/json")],
        status,
    );
    assert_eq!(anonymous.status, 401, "{}", anonymous.text());
    let sent = forge.request_as("POST", "/api/v1/agent/status", Some(status), Some(&token));
    assert_eq!(sent.status, 204, "{}", sent.text());
    let agents = page(&forge, "/agents");
    let row = agents
        .split("<th scope=\"row\">mac-1")
        .nth(1)
        .expect("mac-1's row");
    let row = row.split("</tr>").next().expect("the row");
    assert!(row.contains("macos-aarch64, lanes 0.1.0"), "{row}");
    assert!(row.contains("3.0 GiB in 12 results and 340 blobs"), "{row}");
    assert!(row.contains("mounts: derived-data, target"), "{row}");
    assert!(row.contains("free"), "{row}");
    assert!(
        row.contains("a-online"),
        "a status is a sign of life: {row}"
    );

    // The job ends: the scope is free again in the next status.
    let cancel = forge.request("POST", &format!("/api/v1/jobs/{id}/cancel"), None);
    assert_eq!(cancel.status, 200, "{}", cancel.text());
    forge.wait_for("the scope to be free", || {
        let api = forge.get("/api/v1/agents");
        let free = api[0]["host"]["scopes"]
            .as_array()
            .is_some_and(|s| s.iter().all(|s| s["jobs"] == serde_json::json!([])));
        free.then_some(())
    });
}

#[test]
fn sign_in_sends_only_to_a_path_on_this_forge_and_refuses_a_line_break() {
    let forge = Forge::new(PASSING, &[("src/lib.txt", "one\n")]);
    let form = |next: &str| {
        http(
            &forge,
            "POST",
            "/sign-in",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            &format!("token={}&next={next}", forge.token),
        )
    };
    // Each of these leaves the forge once a browser reads it (tabs and line breaks are dropped
    // from a Location), so each goes home instead.
    for next in [
        "%2F%09%2Fevil.example",
        "%2F%2Fevil.example",
        "https%3A%2F%2Fevil.example",
    ] {
        let r = form(next);
        assert_eq!(r.status, 303, "{next}: {}", r.text());
        assert_eq!(r.header("location"), Some("/"), "{next}");
        let page = http(&forge, "GET", &format!("/sign-in?next={next}"), &[], "");
        assert_eq!(page.status, 200, "{next}: {}", page.text());
        assert!(
            page.text().contains(r#"name="next" value="/""#),
            "{next}: {}",
            page.text()
        );
    }
    let r = form("%2Forigin%2Fruns%2F1");
    assert_eq!(r.header("location"), Some("/origin/runs/1"));
    for next in ["%2F%0D%0ASet-Cookie%3A%20a%3Db", "%2F%0Aevil"] {
        let r = form(next);
        assert_eq!(r.status, 400, "{next}: {}", r.text());
        assert!(r.header("set-cookie").is_none(), "{next}");
        let page = http(&forge, "GET", &format!("/sign-in?next={next}"), &[], "");
        assert_eq!(page.status, 400, "{next}: {}", page.text());
    }
}
