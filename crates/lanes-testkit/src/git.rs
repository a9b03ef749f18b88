//! The `git` command-line tool, isolated from the user's and the system's configuration, with a
//! fixed author, committer and date so commit ids do not depend on the machine or the clock.

use std::path::Path;
use std::process::Command;

/// A git command in `dir`, isolated from the user's and the system's configuration and from a
/// repository the test itself may run in (`GIT_DIR` and friends, as set by a hook).
pub fn git_command(dir: &Path) -> Command {
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
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env_remove("GIT_OBJECT_DIRECTORY")
        .args([
            "-c",
            "commit.gpgsign=false",
            "-c",
            "tag.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
            // Submodules from a local path.
            "-c",
            "protocol.file.allow=always",
        ]);
    cmd
}

/// `git ARGS` in `dir`; its standard output without surrounding whitespace. Panics when git
/// fails, with its standard error.
pub fn git_in(dir: &Path, args: &[&str]) -> String {
    let out = git_command(dir).args(args).output().expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("git prints UTF-8 here")
        .trim()
        .to_owned()
}
