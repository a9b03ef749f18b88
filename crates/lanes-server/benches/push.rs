//! From `git push` to the first step running, triggered by the post-receive hook, over loopback,
//! with the real `lanes` binary.
//!
//! In a tempdir: a bare repository `origin.git`, a clone that pushes to it, and
//! `lanes serve --repo origin.git --listen 127.0.0.1:0 --data-dir DATA --poll-interval 1h` (so
//! only the hook triggers runs) with `LANES_CACHE_DIR` in the tempdir and its other settings at
//! their defaults (the built-in agent, the step sandbox when this machine allows one). The hook is
//! `lanes hook install --repo origin.git --server http://ADDR`; when that command is missing the
//! bench writes the same hook itself (`lanes hook notify`), and when that is missing too it
//! POSTs `/api/v1/repos/origin/refs-changed` itself right after the push (it says which).
//!
//! The catalog has one lane, `first`, selected by `src/**`, whose only step is `echo started`
//! with `src/change.txt` as its input. Each push commits a new `src/change.txt` (untimed), so the
//! step's key is new and it runs rather than hits the cache. Timed from just before `git push`:
//! - the push itself (it returns after the hook, which returns once the forge created the run);
//! - the first log bytes, and the log line of the step's `started`, visible through the SSE
//!   stream `/api/v1/jobs/{id}/log/stream` (opened as soon as the run's job is known, from
//!   `GET /api/v1/repos/origin/branches/main`; the stream replays what the log had by then, so
//!   a line already there counts when the stream opens);
//! - the job's `started_at` from the API (the server's clock, against the wall clock before the
//!   push; same host).
//!
//! After each push the bench waits for the job to end, so pushes do not supersede each other.
//! Baseline, interleaved: the same commit pushed to a second bare repository without a hook.
//!
//! Build the binary first, then run: `cargo build --release -p lanes-cli && cargo bench -p
//! lanes-server --bench push`. The binary is `LANES_BIN` if set, else `lanes` in the directory
//! above this bench executable (`target/release/`). `LANES_BENCH_PUSHES` (20) and
//! `LANES_BENCH_WARMUP` (2) set the timed pushes and the pushes before them.

#![expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a bench binary reports on the terminal"
)]

mod common;

use common::{BenchResult, Conn, PATIENCE, env_number, ms, quantile};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CATALOG: &str = r#"version = 1

[lane.first]
class = "required"
paths = ["src/**"]
inputs = ["src/change.txt"]
step = [{ name = "first", run = "echo started" }]
"#;

fn main() -> BenchResult<()> {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs us without it: stay quick.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let pushes = env_number("LANES_BENCH_PUSHES").unwrap_or(20);
    let warmup = env_number("LANES_BENCH_WARMUP").unwrap_or(2);
    let lanes = lanes_binary()?;
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    git(root, &["init", "-q", "--bare", "-b", "main", "origin.git"])?;
    git(root, &["init", "-q", "--bare", "-b", "main", "plain.git"])?;
    git(root, &["clone", "-q", "origin.git", "work"])?;
    let work = root.join("work");
    git(&work, &["checkout", "-q", "-b", "main"])?;
    git(&work, &["remote", "add", "plain", "../plain.git"])?;
    std::fs::write(work.join("lanes.toml"), CATALOG)?;
    std::fs::create_dir_all(work.join("src"))?;
    std::fs::write(work.join("src/change.txt"), "0\n")?;
    git(&work, &["add", "-A"])?;
    git(&work, &["commit", "-q", "-m", "initial"])?;
    git(&work, &["push", "-q", "origin", "HEAD:main"])?;
    git(&work, &["push", "-q", "plain", "HEAD:main"])?;

    let server = Server::start(&lanes, root)?;
    let mut api = Api {
        conn: Conn::connect(&server.addr)?,
        token: server.token.clone(),
    };
    // The first read of the refs at start created run #1 for main: let it end.
    let first = git(&work, &["rev-parse", "HEAD"])?;
    let job = api.wait_job(&first)?;
    api.wait_end(&server.addr, job)?;

    let hook = install_hook(&lanes, root, &server.addr)?;
    eprintln!("hook: {}", hook.describe());

    let mut rows = Rows::default();
    for i in 0..warmup + pushes {
        std::fs::write(work.join("src/change.txt"), format!("{}\n", i + 1))?;
        git(&work, &["commit", "-q", "-am", &format!("push {i}")])?;
        let head = git(&work, &["rev-parse", "HEAD"])?;

        let wall = jiff::Timestamp::now();
        let start = Instant::now();
        git(&work, &["push", "-q", "origin", "HEAD:main"])?;
        let push = start.elapsed();
        if hook == Hook::BenchPosts {
            let r = api
                .conn
                .request("POST", "/api/v1/repos/origin/refs-changed", None, None)?;
            if r.status != 202 {
                return Err(format!("refs-changed: {}", r.status).into());
            }
        }
        let job = api.wait_job(&head)?;
        let mut events = Conn::connect(&server.addr)?
            .events(&format!("/api/v1/jobs/{job}/log/stream"), Some(&api.token))?;
        let (mut first_bytes, mut started) = (None, None);
        let mut text = String::new();
        let status = loop {
            let Some(event) = events.next_event()? else {
                return Err(format!("the log stream of job {job} ended without `end`").into());
            };
            match event.name.as_str() {
                "log" => {
                    first_bytes.get_or_insert_with(|| start.elapsed());
                    let data: serde_json::Value = serde_json::from_str(&event.data)?;
                    text.push_str(data["text"].as_str().unwrap_or_default());
                    if started.is_none() && text.lines().any(|l| l.ends_with("] started")) {
                        started = Some(start.elapsed());
                    }
                }
                "end" => break event.data,
                other => return Err(format!("log stream event {other}: {}", event.data).into()),
            }
        };
        let (Some(first_bytes), Some(started)) = (first_bytes, started) else {
            return Err(format!("job {job} ended ({status}) without `started`:\n{text}").into());
        };
        let record = api.get(&format!("/api/v1/jobs/{job}"))?;
        if record["status"] != "passed" || record["steps_run"] != 1 {
            return Err(format!("job {job} did not run its step: {record:#}").into());
        }
        let started_at: jiff::Timestamp = record["started_at"]
            .as_str()
            .ok_or("no started_at")?
            .parse()?;
        let started_at = started_at.duration_since(wall);

        let start = Instant::now();
        git(&work, &["push", "-q", "plain", "HEAD:main"])?;
        let plain = start.elapsed();

        if i >= warmup {
            rows.push.push(push);
            rows.first_bytes.push(first_bytes);
            rows.started.push(started);
            rows.started_at
                .push(Duration::try_from(started_at).unwrap_or_default());
            rows.plain.push(plain);
            rows.queue_wait.push(Duration::from_millis(
                record["timings"]["queue_wait_ms"].as_u64().unwrap_or(0),
            ));
            rows.materialize.push(Duration::from_millis(
                record["timings"]["materialize_ms"].as_u64().unwrap_or(0),
            ));
        }
    }
    drop(server);
    rows.print(pushes, warmup, hook);
    Ok(())
}

#[derive(Debug, Default)]
struct Rows {
    push: Vec<Duration>,
    first_bytes: Vec<Duration>,
    started: Vec<Duration>,
    started_at: Vec<Duration>,
    plain: Vec<Duration>,
    queue_wait: Vec<Duration>,
    materialize: Vec<Duration>,
}

impl Rows {
    fn print(mut self, pushes: usize, warmup: usize, hook: Hook) {
        println!(
            "push to first step running: {pushes} pushes after {warmup}, {}",
            hook.describe()
        );
        println!("| measurement | median | p90 | ratio to `git push` alone (median) |");
        println!("|---|---:|---:|---:|");
        let base = quantile(&mut self.plain, 0.5).as_secs_f64();
        for (name, times) in [
            (
                "push -> the step's `started` line visible (SSE)",
                &mut self.started,
            ),
            (
                "push -> the first log bytes visible (SSE)",
                &mut self.first_bytes,
            ),
            (
                "push -> the job's `started_at` (API, server clock)",
                &mut self.started_at,
            ),
            (
                "`git push` with the hook (returns after it)",
                &mut self.push,
            ),
            (
                "`git push` to a bare repository without a hook (baseline)",
                &mut self.plain,
            ),
            ("the job's queue_wait_ms", &mut self.queue_wait),
            ("the job's materialize_ms", &mut self.materialize),
        ] {
            let p50 = quantile(times, 0.5);
            println!(
                "| {name} | {} | {} | {:.2}x |",
                ms(p50),
                ms(quantile(times, 0.9)),
                p50.as_secs_f64() / base.max(1e-9)
            );
        }
    }
}

/// How the forge hears about a push.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hook {
    /// `lanes hook install` wrote the post-receive hook.
    Installed,
    /// The bench wrote a post-receive hook that runs `lanes hook notify`.
    Written,
    /// No hook command in this binary: the bench POSTs refs-changed after the push.
    BenchPosts,
}

impl Hook {
    fn describe(self) -> &'static str {
        match self {
            Hook::Installed => "post-receive hook from `lanes hook install`",
            Hook::Written => {
                "post-receive hook written by the bench (`lanes hook install` failed), running \
                 `lanes hook notify`"
            }
            Hook::BenchPosts => {
                "no hook command in this lanes binary: the bench POSTs refs-changed right after \
                 the push"
            }
        }
    }
}

fn install_hook(lanes: &Path, root: &Path, addr: &str) -> BenchResult<Hook> {
    let server = format!("http://{addr}");
    let installed = Command::new(lanes)
        .args(["hook", "install", "--repo"])
        .arg(root.join("origin.git"))
        .args(["--server", &server])
        .output()?;
    if installed.status.success() {
        return Ok(Hook::Installed);
    }
    eprintln!(
        "lanes hook install failed: {}",
        String::from_utf8_lossy(&installed.stderr).trim()
    );
    let notify = Command::new(lanes)
        .args(["hook", "notify", "--help"])
        .output()?;
    if !notify.status.success() {
        return Ok(Hook::BenchPosts);
    }
    let hook = root.join("origin.git/hooks/post-receive");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nexec '{}' hook notify --server {server} --repo origin\n",
            lanes.display()
        ),
    )?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))?;
    Ok(Hook::Written)
}

fn lanes_binary() -> BenchResult<PathBuf> {
    if let Some(path) = std::env::var_os("LANES_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    // target/release/deps/push-HASH -> target/release/lanes
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("lanes"))
        .ok_or("cannot tell where the bench executable is")?;
    if !path.exists() {
        return Err(format!(
            "no lanes binary at {}: build it first (`cargo build --release -p lanes-cli`) or set \
             LANES_BIN",
            path.display()
        )
        .into());
    }
    Ok(path)
}

fn git(dir: &Path, args: &[&str]) -> BenchResult<String> {
    let out = git_command(dir).args(args).output()?;
    if !out.status.success() {
        return Err(format!(
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn git_command(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.invalid")
        .env("GIT_COMMITTER_NAME", "Bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.invalid")
        .args(["-c", "commit.gpgsign=false"]);
    cmd
}

/// `lanes serve`, stopped when dropped.
struct Server {
    child: Child,
    addr: String,
    token: String,
}

impl Server {
    fn start(lanes: &Path, root: &Path) -> BenchResult<Server> {
        let mut child = Command::new(lanes)
            .args(["serve", "--repo"])
            .arg(root.join("origin.git"))
            .arg("--data-dir")
            .arg(root.join("data"))
            .args(["--listen", "127.0.0.1:0", "--poll-interval", "1h"])
            .env("LANES_CACHE_DIR", root.join("cache"))
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        let log = Arc::new(Mutex::new(String::new()));
        let kept = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut log) = kept.lock() {
                    log.push_str(&line);
                    log.push('\n');
                }
                let _ = tx.send(line);
            }
        });
        let mut server = Server {
            child,
            addr: String::new(),
            token: String::new(),
        };
        let deadline = Instant::now() + PATIENCE;
        while server.addr.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                let log = log.lock().map(|l| l.clone()).unwrap_or_default();
                return Err(format!("lanes serve did not start listening:\n{log}").into());
            };
            if let Some(token) = line.split("export LANES_TOKEN=").nth(1) {
                server.token = token.trim().to_owned();
            }
            if let Some(rest) = line.split("listening on http://").nth(1) {
                server.addr = rest.split(';').next().unwrap_or_default().to_owned();
            }
            if line.contains("warning") {
                eprintln!("lanes serve: {line}");
            }
        }
        if server.token.is_empty() {
            return Err("lanes serve printed no admin token".into());
        }
        Ok(server)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Requests to the forge with the admin token, on one keep-alive connection.
struct Api {
    conn: Conn,
    token: String,
}

impl Api {
    fn get(&mut self, path: &str) -> BenchResult<serde_json::Value> {
        let r = self.conn.request("GET", path, Some(&self.token), None)?;
        if r.status != 200 {
            return Err(format!(
                "GET {path}: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            )
            .into());
        }
        r.json()
    }

    /// The id of the job of lane `first` in main's run at `head`, once that run exists.
    fn wait_job(&mut self, head: &str) -> BenchResult<u64> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let path = "/api/v1/repos/origin/branches/main";
            // Not seen yet (the forge reads the refs at start only once it listens): wait.
            let r = self.conn.request("GET", path, Some(&self.token), None)?;
            let status = if r.status == 404 {
                serde_json::Value::Null
            } else {
                self.get(path)?
            };
            if status["run"]["head"] == head
                && let Some(id) = status["run"]["jobs"]
                    .as_array()
                    .and_then(|jobs| jobs.iter().find(|j| j["lane"] == "first"))
                    .and_then(|j| j["id"].as_u64())
            {
                return Ok(id);
            }
            if Instant::now() > deadline {
                return Err(format!("no run for {head} on main: {status:#}").into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits for `job` to end (its log stream's `end`).
    fn wait_end(&mut self, addr: &str, job: u64) -> BenchResult<()> {
        let mut events = Conn::connect(addr)?
            .events(&format!("/api/v1/jobs/{job}/log/stream"), Some(&self.token))?;
        while let Some(event) = events.next_event()? {
            if event.name == "end" {
                return Ok(());
            }
        }
        Err(format!("the log stream of job {job} ended without `end`").into())
    }
}
