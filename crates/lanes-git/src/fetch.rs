//! Fetching a mirror's branches: the one place lanes runs the `git` binary.
//!
//! gix is built without its network features (docs/architecture.md: a lean build, no TLS
//! stack in lanes-git), so fetching over `https://` or `ssh://` is left to the `git` the host
//! has, through this function alone. Everything else reads the repository through gix.

use std::path::Path;

/// Brings the local branches of the repository at `path` up to `remote`'s (`git fetch
/// --prune REMOTE +refs/heads/*:refs/heads/*`): a branch deleted there is deleted here.
/// The error is git's own message, or why git could not be run.
pub fn fetch_branches(path: &Path, remote: &str) -> Result<(), String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(path)
        .args([
            "fetch",
            "--prune",
            "--quiet",
            remote,
            "+refs/heads/*:refs/heads/*",
        ])
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}
