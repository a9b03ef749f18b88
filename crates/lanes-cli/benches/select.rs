//! Selection and key benchmarks on a synthetic monorepo.
//!
//! Generates (once, under `target/bench-repos/`) a repository with 100,000 tracked files and a
//! catalog of 1,000 lanes with 5 trigger patterns each, and two commits that differ in 1,000
//! files. Then measures, as medians over repeated runs:
//! - `lanes select --base A --head B --json` (the real binary, wall time), beside
//!   `git diff --name-only A B` (git itself listing the same change) as the baseline;
//! - the keys of all 1,000 lanes' first steps (in process: tree listing, per-lane fileset
//!   digests, fingerprints), beside `git ls-tree -r B` (git only listing the tree);
//! - `lanes fingerprint LANE --head B` (the real binary, one lane).
//!
//! Run: `cargo bench -p lanes-cli --bench select` (set `LANES_BENCH_RUNS` to change the run
//! count). Results go to stdout as a table; BENCHMARKS.md records them.

#![expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a bench binary reports on the terminal"
)]

use lanes_core::fingerprint::{Host, lane_fingerprints};
use lanes_core::{Source, fileset};
use lanes_git::Repo;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PACKAGES: usize = 1_000;
const FILES_PER_PACKAGE: usize = 100;
const LANES: usize = 1_000;
const CHANGED: usize = 1_000;

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
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-repos/monorepo-100k");
    let (base, head) = generate(&root);
    let lanes_bin = lanes_binary();

    let select = median(runs, || {
        run(Command::new(&lanes_bin)
            .current_dir(&root)
            .args(["select", "--base", &base, "--head", &head, "--json"]))
    });
    let git_diff = median(runs, || {
        run(git(&root).args(["diff", "--no-renames", "--name-only", &base, &head]))
    });
    let keys = median(runs, || all_first_step_keys(&root, &head));
    let ls_tree = median(runs, || run(git(&root).args(["ls-tree", "-r", &head])));
    let fingerprint = median(runs, || {
        run(Command::new(&lanes_bin).current_dir(&root).args([
            "fingerprint",
            "lane-0500",
            "--head",
            &head,
            "--json",
        ]))
    });

    println!(
        "synthetic monorepo: {} files, {LANES} lanes x 5 patterns, {CHANGED} changed files, {runs} runs, medians",
        PACKAGES * FILES_PER_PACKAGE
    );
    println!(
        "{:<44} {:>10} {:>10} {:>7}",
        "measurement", "lanes", "baseline", "ratio"
    );
    let row = |name: &str, ours: Duration, baseline: Duration, what: &str| {
        println!(
            "{name:<44} {:>8.1}ms {:>8.1}ms {:>6.2}x  (baseline: {what})",
            ours.as_secs_f64() * 1e3,
            baseline.as_secs_f64() * 1e3,
            ours.as_secs_f64() / baseline.as_secs_f64()
        );
    };
    row(
        "lanes select (binary, wall)",
        select,
        git_diff,
        "git diff --name-only",
    );
    row(
        "keys of 1,000 lanes' first steps (in process)",
        keys,
        ls_tree,
        "git ls-tree -r",
    );
    row(
        "lanes fingerprint one lane (binary, wall)",
        fingerprint,
        ls_tree,
        "git ls-tree -r",
    );
}

/// Keys of every lane's first step at `head`, as `lanes run` will compute them.
fn all_first_step_keys(root: &Path, head: &str) {
    let repo = Repo::discover(root).expect("bench repo");
    let commit = repo.resolve(head).expect("head");
    let text = String::from_utf8(
        repo.read_file_at(&commit, "lanes.toml")
            .expect("read")
            .expect("catalog"),
    )
    .expect("utf-8");
    let mut no_pins = |_: &str| Err("no pins file".to_owned());
    let catalog =
        lanes_core::parse(&Source::new("lanes.toml", text), &mut no_pins).expect("valid catalog");
    let files = repo.files_at(&commit).expect("files");
    let digests = fileset::lane_digests(&catalog, &files);
    let env = |_: &str| None;
    let host = Host {
        platform: "linux-x86_64",
        env: &env,
    };
    let mut keys = 0;
    for (lane, digest) in catalog.lanes.iter().zip(&digests) {
        let first = lane_fingerprints(&catalog, lane, digest, host)
            .into_iter()
            .next()
            .expect("a step");
        keys += first.key().len();
    }
    assert_eq!(keys, 64 * LANES);
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

fn run(cmd: &mut Command) {
    let out = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
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

fn catalog() -> String {
    let mut text =
        String::from("version = 1\n\n[paths]\ntools = [\"tools/*.toml\", \"Cargo.lock\"]\n");
    for i in 0..LANES {
        let next = (i + 1) % PACKAGES;
        text.push_str(&format!(
            "\n[lane.lane-{i:04}]\npaths = [\"pkgs/p{i:04}/**\", \"pkgs/p{next:04}/src/*.rs\", \
             \"shared/s{}/**\", \"!pkgs/p{i:04}/docs/**\", \"@tools\"]\ninputs = [\"pkgs/p{i:04}/\", \
             \"shared/s{}/\", \"!pkgs/p{i:04}/docs/\"]\n[[lane.lane-{i:04}.step]]\nname = \"build\"\n\
             run = \"make -C pkgs/p{i:04}\"\n[[lane.lane-{i:04}.step]]\nname = \"test\"\nrun = \"make -C pkgs/p{i:04} test\"\n",
            i % 10,
            i % 10,
        ));
    }
    text
}

/// Path of file `n` of package `p`: most under `src/`, some under `docs/`.
fn file_path(p: usize, n: usize) -> String {
    match n {
        0..80 => format!("pkgs/p{p:04}/src/f{n:02}.rs"),
        80..90 => format!("pkgs/p{p:04}/docs/d{n:02}.md"),
        _ => format!("shared/s{}/p{p:04}-{n:02}.txt", p % 10),
    }
}

/// Builds the repository with `git fast-import` unless it exists; returns (base, head) commits.
fn generate(root: &Path) -> (String, String) {
    if root.join(".git").exists() {
        let rev = |r: &str| {
            let out = git(root).args(["rev-parse", r]).output().expect("git");
            String::from_utf8(out.stdout)
                .expect("utf-8")
                .trim()
                .to_owned()
        };
        return (rev("base"), rev("head"));
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
    let data = |w: &mut dyn Write, body: &str| {
        write!(w, "data {}\n{body}\n", body.len()).expect("write");
    };
    let commit = |w: &mut std::io::BufWriter<_>, branch: &str, message: &str, time: u64| {
        write!(
            w,
            "commit refs/heads/{branch}\ncommitter Bench <bench@example.invalid> {time} +0000\n"
        )
        .expect("write");
        write!(w, "data {}\n{message}\n", message.len()).expect("write");
    };
    commit(&mut w, "base", "base", 1_700_000_000);
    w.write_all(b"M 100644 inline lanes.toml\n").expect("write");
    data(&mut w, &catalog());
    w.write_all(b"M 100644 inline tools/build.toml\n")
        .expect("write");
    data(&mut w, "[tool]\n");
    for p in 0..PACKAGES {
        for n in 0..FILES_PER_PACKAGE {
            writeln!(w, "M 100644 inline {}", file_path(p, n)).expect("write");
            data(&mut w, &format!("package {p} file {n}\n"));
        }
    }
    // Head: 1,000 files changed, spread over every package (one `src/` file each).
    commit(&mut w, "head", "head", 1_700_000_100);
    w.write_all(b"from refs/heads/base\n").expect("write");
    for p in 0..CHANGED {
        let path = file_path(p % PACKAGES, (p * 7) % 80);
        writeln!(w, "M 100644 inline {path}").expect("write");
        data(&mut w, &format!("package {p} changed\n"));
    }
    w.write_all(b"reset refs/heads/main\nfrom refs/heads/head\n\n")
        .expect("write");
    drop(w);
    assert!(child.wait().expect("fast-import").success());
    run(git(root).args(["checkout", "-q", "-f", "main"]));
    eprintln!(
        "generated {} in {:.1}s",
        root.display(),
        started.elapsed().as_secs_f64()
    );
    generate(root)
}
