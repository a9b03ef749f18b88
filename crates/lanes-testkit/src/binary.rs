//! The real `lanes` binary: where it is, and one run of it.
//!
//! A library cannot use `env!("CARGO_BIN_EXE_lanes")`: cargo sets it only while it compiles a
//! package's own integration tests. Cargo builds those tests into `<target>/<profile>/deps/` and
//! the package's binaries, before the tests, into `<target>/<profile>/`, which is where
//! `CARGO_BIN_EXE_lanes` points. So [`lanes_bin`] looks beside the calling test binary; a test in
//! lanes-cli checks the two paths agree. Only lanes-cli's tests may run the binary: cargo builds
//! it for no other package's tests, so elsewhere the file found could be stale or missing.
//! Rejected: taking the path as a parameter, which every `Repo::lanes` and `Forge::new` call
//! of the suite would repeat.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// `<target>/<profile>/`: the directory above the running test binary's `deps/`.
pub(crate) fn profile_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary's path");
        let deps = exe.parent().expect("the test binary is in a directory");
        assert!(
            deps.ends_with("deps"),
            "not a cargo test binary in <target>/<profile>/deps: {}",
            exe.display()
        );
        deps.parent().expect("deps/ has a parent").to_owned()
    })
}

/// The `lanes` binary cargo built for the calling package's integration tests.
pub fn lanes_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let bin = profile_dir().join("lanes");
        assert!(
            bin.is_file(),
            "no lanes binary at {}: only lanes-cli's integration tests get it built",
            bin.display()
        );
        bin
    })
}

/// The outcome of one `lanes` invocation.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Standard output as one JSON document; panics unless `lanes` exited 0.
    pub fn json(&self) -> serde_json::Value {
        assert_eq!(self.code, 0, "lanes failed: {}", self.stderr);
        serde_json::from_str(&self.stdout).expect("stdout is one JSON document")
    }
}

/// Run `lanes args...` in `dir` with `env`, and with none of the `LANES_*` variables of the
/// test's own environment (a forge test passes `LANES_SERVER` and `LANES_TOKEN` in `env`).
pub fn lanes_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(lanes_bin());
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
