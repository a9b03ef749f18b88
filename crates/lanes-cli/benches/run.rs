//! `lanes run` benchmarks: a rerun where every step hits, and the overhead of running a step.
//!
//! Generates (once, under `target/bench-repos/`) two repositories with `git fast-import`:
//! - `run-50x200`: 10,000 tracked files (50 packages × 200 files) and a catalog of 50 lanes,
//!   each with `inputs = ["pkgs/pNNNN/"]` and 3 cheap steps. The cache (a directory beside the
//!   repository, kept from one bench run to the next) is filled by one run and brought to its
//!   steady state (as many kept runs as lanes keeps); then, as medians over repeated runs, it
//!   measures `lanes run --all` (the real binary, every step a hit) on the working tree and with
//!   `--head HEAD`, beside `git status` in the same repository (git only looking at the working
//!   tree) as the baseline;
//! - `run-trivial`: a handful of files and a lane whose one step is `true`. It measures
//!   `lanes run LANE` with `cache = false` (the step runs every time, in the sandbox and with
//!   `--no-sandbox`) and with the cache on but
//!   missed (a `pass-env` variable changes every run), beside `bash -c true` spawned directly;
//!   and, in process, the lane executor (`run_lane`) and the process runner (`process::run`)
//!   beside spawning the same shell with `std::process::Command`.
//!
//! Run: `cargo bench -p lanes-cli --bench run`. Set `LANES_BENCH_RUNS` to change the run count
//! (15), `LANES_BENCH_PACKAGES` and `LANES_BENCH_FILES` for the rerun repository's packages and
//! files per package (50 and 200), `LANES_BENCH_WARMUP` for the runs before timing (50). Results
//! go to stdout as a table; BENCHMARKS.md records them.

#![expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a bench binary reports on the terminal"
)]

use lanes_cache::LocalStore;
use lanes_core::fingerprint::{Host, lane_fingerprints};
use lanes_core::{FileEntry, Source, fileset};
use lanes_exec::{Cancel, Fileset, LaneContext, StepCommand};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const STEPS: usize = 3;
/// `cache_dir::KEEP_RUNS` in lanes-cli: once that many runs are kept, every run prunes one.
const KEEP_RUNS: usize = 50;
/// The default step shell (`lanes_core::catalog::DEFAULT_SHELL`), split.
const SHELL: [&str; 3] = ["bash", "-eo", "pipefail"];

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs us without it: stay quick.
    let benching = std::env::args().any(|a| a == "--bench");
    if !benching {
        return;
    }
    let runs: usize = std::env::var("LANES_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(15);
    let warmup = env_number("LANES_BENCH_WARMUP").unwrap_or(KEEP_RUNS);
    let shape = Shape {
        packages: env_number("LANES_BENCH_PACKAGES").unwrap_or(50),
        files: env_number("LANES_BENCH_FILES").unwrap_or(200),
    };
    let repos = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-repos");
    let lanes_bin = lanes_binary();

    // 1. A rerun where every step hits.
    let name = format!("run-{}x{}", shape.packages, shape.files);
    let root = repos.join(&name);
    generate(&root, &shape.catalog(), &shape.files());
    let (cache, new_cache) = cache_dir(&repos.join(format!("{name}.cache")));
    let lanes = |extra: &[&str]| {
        let mut cmd = Command::new(&lanes_bin);
        cmd.current_dir(&root)
            .env("LANES_CACHE_DIR", &cache)
            .args(["run", "--all"])
            .args(extra);
        cmd
    };
    let filled = Instant::now();
    run(&mut lanes(&[]));
    let fill = filled.elapsed();
    let all_steps = shape.packages * STEPS;
    assert_steps(&mut lanes(&[]), &cache, all_steps, "status", "cached");
    assert_steps(
        &mut lanes(&["--head", "HEAD"]),
        &cache,
        all_steps,
        "status",
        "cached",
    );
    // Steady state: the cache keeps the last KEEP_RUNS runs, so from then on every run also
    // removes the oldest run's logs and report.
    for _ in 0..warmup {
        run(&mut lanes(&[]));
    }
    let hits_worktree = median(runs, || run(&mut lanes(&[])));
    let hits_head = median(runs, || run(&mut lanes(&["--head", "HEAD"])));
    let hits_unsandboxed = median(runs, || run(&mut lanes(&["--no-sandbox"])));
    let git_status = median(runs, || run(git(&root).arg("status")));
    let select_all = median(runs, || {
        run(Command::new(&lanes_bin)
            .current_dir(&root)
            .args(["select", "--all", "--json"]))
    });

    // 2. The overhead of running a trivial step.
    let trivial = repos.join("run-trivial");
    generate(&trivial, TRIVIAL_CATALOG, &trivial_files());
    let (trivial_cache, _) = cache_dir(&repos.join("run-trivial.cache"));
    let lanes_trivial = |lane: &str| {
        let mut cmd = Command::new(&lanes_bin);
        cmd.current_dir(&trivial)
            .env("LANES_CACHE_DIR", &trivial_cache)
            .args(["run", lane]);
        cmd
    };
    for _ in 0..warmup {
        run(&mut lanes_trivial("uncached"));
    }
    let uncached = median(runs, || run(&mut lanes_trivial("uncached")));
    let unsandboxed = median(runs, || run(lanes_trivial("uncached").arg("--no-sandbox")));
    // A value no earlier run (of this bench either) has seen: every run is a miss.
    let mut nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos();
    assert_steps(
        lanes_trivial("missed").env("BENCH_NONCE", nonce.to_string()),
        &trivial_cache,
        1,
        "cache",
        "miss",
    );
    let missed = median(runs, || {
        nonce += 1;
        run(lanes_trivial("missed").env("BENCH_NONCE", nonce.to_string()));
    });
    let bash = median(runs, || run(Command::new("bash").args(["-c", "true"])));
    let in_process_lane = median(runs, || in_process_run_lane(&trivial_cache));
    let command = step_command(&trivial_cache.join("in-process"));
    let in_process_run = median(runs, || {
        let finished = lanes_exec::run(&command, std::io::sink(), &Cancel::new()).expect("run");
        assert!(finished.outcome.passed());
    });
    // The step boundary in process: every part (namespaces, the step user when root, a cgroup
    // per step) against the mount namespace alone, the sandbox before the boundary work.
    let boundary_dir = trivial_cache.join("boundary");
    let full = boundary(&lanes_bin, &repos, &boundary_dir, true);
    let boundary_full = median(runs, || run_confined(&full));
    let mounts_only = boundary(&lanes_bin, &repos, &boundary_dir, false);
    let boundary_mounts = median(runs, || run_confined(&mounts_only));
    let in_process_spawn = median(runs, || {
        let status = Command::new(&command.argv[0])
            .args(&command.argv[1..])
            .current_dir(&command.cwd)
            .env_clear()
            .envs(&command.env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("spawn");
        assert!(status.success());
    });

    println!(
        "rerun, every step a hit: {} files, {} lanes x {STEPS} steps, {runs} runs, medians{}",
        shape.packages * shape.files,
        shape.packages,
        if new_cache {
            format!(" (first run, filling the cache: {:.0}ms)", ms(fill))
        } else {
            String::new()
        }
    );
    println!(
        "{:<46} {:>10} {:>10} {:>7}",
        "measurement", "lanes", "baseline", "ratio"
    );
    let row = |name: &str, ours: Duration, baseline: Duration, what: &str| {
        println!(
            "{name:<46} {:>8.1}ms {:>8.1}ms {:>6.2}x  (baseline: {what})",
            ms(ours),
            ms(baseline),
            ours.as_secs_f64() / baseline.as_secs_f64()
        );
    };
    let steps = (shape.packages * STEPS) as f64;
    row(
        "lanes run --all, all hits (binary, wall)",
        hits_worktree,
        git_status,
        "git status",
    );
    row(
        "lanes run --all, all hits",
        hits_worktree,
        hits_unsandboxed,
        "the same, --no-sandbox",
    );
    row(
        "lanes run --all --head HEAD, all hits",
        hits_head,
        git_status,
        "git status",
    );
    row(
        "lanes select --all --json (binary, wall)",
        select_all,
        git_status,
        "git status",
    );
    println!(
        "per cached step: {:.2}ms (working tree), {:.2}ms (--head HEAD); \
         Turborepo's published time to first task, ~1,000 packages: 716ms (not measured here)",
        ms(hits_worktree) / steps,
        ms(hits_head) / steps
    );
    println!();
    println!("one trivial step (`true`), {runs} runs, medians");
    row(
        "lanes run LANE, cache = false (binary, wall)",
        uncached,
        bash,
        "bash -c true",
    );
    row(
        "lanes run LANE, cache = false, --no-sandbox",
        unsandboxed,
        bash,
        "bash -c true",
    );
    row(
        "lanes run LANE, cache missed (binary, wall)",
        missed,
        bash,
        "bash -c true",
    );
    row(
        "run_lane, cache = false (in process)",
        in_process_lane,
        in_process_spawn,
        "Command::status",
    );
    row(
        "process::run (in process)",
        in_process_run,
        in_process_spawn,
        "Command::status",
    );
    row(
        "process::run, the full boundary",
        boundary_full,
        in_process_spawn,
        "Command::status",
    );
    row(
        "process::run, the full boundary",
        boundary_full,
        boundary_mounts,
        "mount namespace only",
    );
}

/// `true` behind the sandbox, its lane directory `dir` under the hidden `hide`: with every part
/// this host has (`full`), or with the mount namespace only (no PID, IPC, UTS or network
/// namespace, no cgroup, no step user).
fn boundary(helper: &Path, hide: &Path, dir: &Path, full: bool) -> StepCommand {
    let sandbox = lanes_exec::Sandbox::new(helper.to_owned(), vec![hide.to_owned()]);
    let sandbox = if full {
        let sandbox = lanes_exec::Sandbox {
            user: lanes_exec::sandbox::is_root().then(lanes_exec::StepUser::default_for_root),
            ..sandbox
        };
        let fitted = sandbox.fit().expect("the sandbox fits this host");
        for lost in &fitted.lost {
            eprintln!("warning: the full boundary has {lost}");
        }
        fitted.sandbox
    } else {
        lanes_exec::Sandbox {
            parts: lanes_exec::Parts {
                pid: false,
                net: false,
                ipc_uts: false,
            },
            cgroups: None,
            ..sandbox
        }
    };
    let mut command = step_command(dir);
    command.confine = Some(lanes_exec::Confined {
        sandbox,
        confinement: lanes_exec::Confinement {
            keep: vec![dir.to_owned()],
            mounts: Vec::new(),
            cwd: dir.to_owned(),
            network: false,
        },
        limits: Default::default(),
    });
    command
}

fn run_confined(command: &StepCommand) {
    let finished = lanes_exec::run(command, std::io::sink(), &Cancel::new()).expect("run");
    assert!(finished.outcome.passed(), "{:?}", finished.outcome);
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Run `cmd` with a report and check that it passed with exactly `expected` steps, all with
/// `field` equal to `value` (`status` `cached` for hits, `cache` `miss` for misses).
fn assert_steps(cmd: &mut Command, cache: &Path, expected: usize, field: &str, value: &str) {
    let report = cache.join("check-report.json");
    run(cmd.arg("--report").arg(&report));
    let text = std::fs::read_to_string(&report).expect("the report");
    let report: serde_json::Value = serde_json::from_str(&text).expect("a JSON report");
    assert_eq!(report["status"], "passed");
    let statuses: Vec<&serde_json::Value> = report["lanes"]
        .as_array()
        .expect("lanes")
        .iter()
        .flat_map(|l| l["steps"].as_array().expect("steps"))
        .map(|s| &s[field])
        .collect();
    assert_eq!(statuses.len(), expected);
    assert!(statuses.iter().all(|s| *s == value), "{statuses:?}");
}

/// The one-lane, one-step path `lanes run` takes for a step that runs, without the process
/// start, the repository and the report: materialize (nothing), snapshot, spawn, remember.
fn in_process_run_lane(cache: &Path) {
    let mut no_pins = |_: &str| Err("no pins file".to_owned());
    let catalog = lanes_core::parse(
        &Source::new("lanes.toml", TRIVIAL_CATALOG.to_owned()),
        &mut no_pins,
    )
    .expect("valid catalog");
    let lane = catalog.lane("uncached").expect("the lane");
    let env = |_: &str| None;
    let host = Host {
        platform: "linux-x86_64",
        env: &env,
    };
    let no_files: [FileEntry; 0] = [];
    let fingerprints = lane_fingerprints(&catalog, lane, &fileset::digest(&no_files), host);
    let dir = cache.join("in-process");
    let cx = LaneContext {
        store: LocalStore::open(&dir.join("store")).expect("store"),
        slot: dir.join("slot"),
        logs: dir.join("logs"),
        mounts: dir.join("mounts"),
        env: base_env(),
        lookup: true,
        cancel: Cancel::new(),
        grace: Duration::from_secs(5),
        stream: false,
        events: Arc::new(|_| {}),
        sandbox: None,
        history: None,
        secrets: Default::default(),
    };
    std::fs::create_dir_all(&cx.logs).expect("mkdir");
    let result = lanes_exec::run_lane(lane, &fingerprints, &NoFiles, &cx);
    assert_eq!(result.status, lanes_exec::Status::Passed, "{result:?}");
}

struct NoFiles;

impl Fileset for NoFiles {
    fn files(&self) -> Result<Vec<lanes_core::FileEntry>, String> {
        Ok(Vec::new())
    }

    fn write(
        &self,
        _files: &[&lanes_core::FileEntry],
        _dest: &Path,
    ) -> Result<(usize, u64), String> {
        Ok((0, 0))
    }

    fn listing(&self) -> Vec<u8> {
        Vec::new()
    }
}

fn base_env() -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert(
        "PATH".to_owned(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".to_owned()),
    );
    env.insert("LANG".to_owned(), "C.UTF-8".to_owned());
    env
}

/// `true` in the default shell, the way `run_lane` runs it.
fn step_command(cwd: &Path) -> StepCommand {
    std::fs::create_dir_all(cwd).expect("mkdir");
    let mut argv: Vec<String> = SHELL.iter().map(|s| (*s).to_owned()).collect();
    argv.extend(["-c".to_owned(), "true".to_owned()]);
    StepCommand {
        argv,
        cwd: cwd.to_path_buf(),
        env: base_env(),
        timeout: None,
        grace: Duration::from_secs(5),
        confine: None,
        mask: Default::default(),
    }
}

fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    f(); // warm the page cache and any lazily built state
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

/// Run to success with stdout and stderr piped, never a terminal: `lanes run` prints plain lines.
fn run(cmd: &mut Command) {
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn git(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1");
    cmd
}

fn lanes_binary() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "lanes-cli",
            "--bin",
            "lanes",
        ])
        .status()
        .expect("cargo build");
    assert!(status.success());
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/lanes")
}

/// The cache directory `dir`, and whether it is new. An existing one is kept rather than
/// deleted: on a filesystem like this machine's (ext4 without a journal), creating files within
/// minutes of deleting thousands is several times slower, which would measure the allocator.
fn cache_dir(dir: &Path) -> (PathBuf, bool) {
    let new = !dir.exists();
    std::fs::create_dir_all(dir).expect("mkdir");
    (dir.to_path_buf(), new)
}

fn env_number(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// The rerun repository: `packages` packages of `files` files, one lane per package.
#[derive(Clone, Copy, Debug)]
struct Shape {
    packages: usize,
    files: usize,
}

impl Shape {
    fn catalog(self) -> String {
        let mut text = String::from("version = 1\n");
        for p in 0..self.packages {
            text.push_str(&format!(
                "\n[lane.lane-{p:04}]\npaths = [\"pkgs/p{p:04}/**\"]\ninputs = [\"pkgs/p{p:04}/\"]\n\
                 [[lane.lane-{p:04}.step]]\nname = \"build\"\nrun = \"echo x > out.txt\"\n\
                 [[lane.lane-{p:04}.step]]\nname = \"test\"\nrun = \"cat out.txt\"\n\
                 [[lane.lane-{p:04}.step]]\nname = \"lint\"\nrun = \"true\"\n"
            ));
        }
        text
    }

    /// Every file: four in five under `src/`, the rest under `docs/`.
    fn files(self) -> Vec<(String, String)> {
        let mut files = Vec::with_capacity(self.packages * self.files);
        for p in 0..self.packages {
            for n in 0..self.files {
                let path = if n < self.files * 4 / 5 {
                    format!("pkgs/p{p:04}/src/f{n:03}.rs")
                } else {
                    format!("pkgs/p{p:04}/docs/d{n:03}.md")
                };
                files.push((path, format!("package {p} file {n}\n")));
            }
        }
        files
    }
}

const TRIVIAL_CATALOG: &str = r#"version = 1

[lane.uncached]
inputs = ["src/"]

[[lane.uncached.step]]
name = "true"
run = "true"
cache = false

[lane.missed]
inputs = ["src/"]

[[lane.missed.step]]
name = "true"
run = "true"
pass-env = ["BENCH_NONCE"]
"#;

fn trivial_files() -> Vec<(String, String)> {
    (0..10)
        .map(|n| (format!("src/f{n}.txt"), format!("file {n}\n")))
        .collect()
}

/// Builds the repository (one commit on `main`, checked out, the index fresh) with
/// `git fast-import` unless it exists.
fn generate(root: &Path, catalog: &str, files: &[(String, String)]) {
    if root.join(".git").exists() {
        return;
    }
    let started = Instant::now();
    std::fs::create_dir_all(root).expect("mkdir");
    run(git(root).args(["init", "-q", "-b", "main"]));
    let mut child = git(root)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("git fast-import");
    let mut w = std::io::BufWriter::new(child.stdin.take().expect("stdin"));
    let file = |w: &mut std::io::BufWriter<_>, path: &str, body: &str| {
        write!(w, "M 100644 inline {path}\ndata {}\n{body}\n", body.len()).expect("write");
    };
    let message = "bench";
    write!(
        w,
        "commit refs/heads/main\ncommitter Bench <bench@example.invalid> 1700000000 +0000\n\
         data {}\n{message}\n",
        message.len()
    )
    .expect("write");
    file(&mut w, "lanes.toml", catalog);
    for (path, body) in files {
        file(&mut w, path, body);
    }
    drop(w);
    assert!(child.wait().expect("fast-import").success());
    run(git(root).args(["checkout", "-q", "-f", "main"]));
    // Files written in the same second as the index are racily clean: git and gix would read
    // them on every status. Refresh the index once they are older than it.
    std::thread::sleep(Duration::from_millis(1_100));
    run(git(root).args(["update-index", "-q", "--really-refresh"]));
    eprintln!(
        "generated {} in {:.1}s",
        root.display(),
        started.elapsed().as_secs_f64()
    );
}
