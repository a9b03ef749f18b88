//! Temporary git repositories and a way to run the real `lanes` binary in them.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of this module"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A git repository in a temporary directory, isolated from the user's git configuration.
pub(crate) struct Repo {
    _dir: tempfile::TempDir,
    pub(crate) path: PathBuf,
}

pub(crate) fn git_command(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.invalid")
        .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
        .args([
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ]);
    cmd
}

pub(crate) fn git_in(dir: &Path, args: &[&str]) -> String {
    let out = git_command(dir).args(args).output().expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

impl Repo {
    pub(crate) fn new() -> Repo {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("repo");
        std::fs::create_dir(&path).expect("mkdir");
        git_in(&path, &["init", "-q"]);
        Repo { _dir: dir, path }
    }

    /// A clone of `self` (a full clone unless `args` say otherwise), in its own temp dir.
    pub(crate) fn clone_with(&self, args: &[&str]) -> Repo {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("clone");
        let url = format!("file://{}", self.path.display());
        let mut all = vec!["clone", "-q"];
        all.extend_from_slice(args);
        all.push(&url);
        all.push(path.to_str().expect("utf-8 path"));
        git_in(dir.path(), &all);
        Repo { _dir: dir, path }
    }

    pub(crate) fn git(&self, args: &[&str]) -> String {
        git_in(&self.path, args)
    }

    pub(crate) fn write(&self, path: &str, contents: &str) -> &Self {
        let full = self.path.join(path);
        std::fs::create_dir_all(full.parent().expect("has parent")).expect("mkdir");
        std::fs::write(full, contents).expect("write");
        self
    }

    pub(crate) fn remove(&self, path: &str) -> &Self {
        std::fs::remove_file(self.path.join(path)).expect("remove");
        self
    }

    pub(crate) fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }

    pub(crate) fn lanes(&self, args: &[&str]) -> Run {
        lanes_in(&self.path, args, &[])
    }

    pub(crate) fn lanes_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        lanes_in(&self.path, args, env)
    }
}

/// The outcome of one `lanes` invocation.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    pub(crate) fn json(&self) -> serde_json::Value {
        assert_eq!(self.code, 0, "lanes failed: {}", self.stderr);
        serde_json::from_str(&self.stdout).expect("stdout is one JSON document")
    }
}

/// Run `lanes args...` in `dir` with `env`, and with none of the `LANES_*` variables of the
/// test's own environment (a forge test passes `LANES_SERVER` and `LANES_TOKEN` in `env`).
pub(crate) fn lanes_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lanes"));
    cmd.current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env_remove("LANES_BASE")
        .env_remove("LANES_SERVER")
        .env_remove("LANES_REPO")
        .env_remove("LANES_TOKEN")
        .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("lanes runs");
    Run {
        code: status.code().expect("exited, not killed"),
        stdout: String::from_utf8(stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(stderr).expect("utf-8 stderr"),
    }
}

/// A catalog with a lane per area of a small monorepo.
pub(crate) const CATALOG: &str = r#"version = 1

[paths]
rust = ["crates/**", "Cargo.toml"]

[lane.test]
paths = ["@rust", "!crates/**/README.md"]
inputs = ["@rust"]
[[lane.test.step]]
name = "build"
run = "cargo build"
[[lane.test.step]]
name = "test"
run = "cargo test"

[lane.docs]
class = "advisory"
paths = ["docs/"]
inputs = ["docs/"]
[[lane.docs.step]]
name = "build"
run = "mdbook build"

[lane.fmt]
[[lane.fmt.step]]
name = "fmt"
run = "cargo fmt --check"
"#;

/// A repository with `CATALOG` and a few files committed on `main`.
pub(crate) fn monorepo() -> Repo {
    let repo = Repo::new();
    repo.write("lanes.toml", CATALOG)
        .write("Cargo.toml", "[workspace]\n")
        .write("crates/a/src/lib.rs", "pub fn a() {}\n")
        .write("crates/a/README.md", "# a\n")
        .write("crates/b/src/lib.rs", "pub fn b() {}\n")
        .write("docs/index.md", "# docs\n")
        .write("README.md", "# repo\n");
    repo.commit("initial");
    repo
}

/// Names of the selected lanes in `lanes select --json` output.
pub(crate) fn selected(json: &serde_json::Value) -> Vec<String> {
    json["lanes"]
        .as_array()
        .expect("lanes array")
        .iter()
        .filter(|l| l["selected"] == true)
        .map(|l| l["name"].as_str().expect("name").to_owned())
        .collect()
}

pub(crate) fn changed(json: &serde_json::Value) -> Vec<String> {
    json["changed"]
        .as_array()
        .expect("changed array")
        .iter()
        .map(|p| p.as_str().expect("string").to_owned())
        .collect()
}

/// A temporary directory outside `/tmp`, for files a step must see (or must not see for another
/// reason than `/tmp`): every sandboxed step has its own empty `/tmp`. `/var/tmp` when the
/// machine has it (also inside lanes' own test lane, whose target directory lies under the
/// cache in `/tmp`), else the target directory's.
pub(crate) fn outside_tmp() -> tempfile::TempDir {
    match tempfile::tempdir_in("/var/tmp") {
        Ok(dir) => dir,
        Err(_) => tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir"),
    }
}
