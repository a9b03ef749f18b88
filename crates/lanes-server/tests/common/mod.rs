//! What the integration tests share: the `git` CLI, isolated from the user's configuration, and
//! a repository `app` in a temporary directory with a real SQLite store that knows it.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of this module"
)]

use jiff::Timestamp;
use lanes_git::{CommitId, Repo};
use lanes_store::{NewRepo, RepoRecord, SqliteStore, Store};
use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) type TestResult = Result<(), Box<dyn std::error::Error>>;

/// `git ARGS` in `dir`; its standard output without the trailing newline.
pub(crate) fn git(dir: &Path, args: &[&str]) -> Result<String, Box<dyn std::error::Error>> {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=lanes",
            "-c",
            "user.email=lanes@example.invalid",
        ])
        .args(["-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()?;
    if !out.status.success() {
        return Err(format!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8(out.stdout)?.trim_end().to_owned())
}

/// A repository `app` (branch `main`) and a store that added it.
pub(crate) struct Forge {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) store: SqliteStore,
    pub(crate) repo: RepoRecord,
}

impl Forge {
    /// A repository with no commits yet, added to a new store at `added`.
    pub(crate) async fn new(added: Timestamp) -> Result<Forge, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let work = dir.path().join("app");
        std::fs::create_dir(&work)?;
        git(&work, &["init", "--quiet", "--initial-branch", "main"])?;
        let store = SqliteStore::open(&dir.path().join("lanes.db")).await?;
        let repo = store
            .add_repo(
                &NewRepo {
                    name: "app".into(),
                    path: work,
                    remote_url: None,
                    default_branch: "main".into(),
                },
                added,
            )
            .await?;
        Ok(Forge { dir, store, repo })
    }

    /// The repository's working tree.
    pub(crate) fn work(&self) -> PathBuf {
        self.dir.path().join("app")
    }

    /// Writes files and commits them on the current branch; returns the commit.
    pub(crate) fn commit(
        &self,
        files: &[(&str, &str)],
    ) -> Result<CommitId, Box<dyn std::error::Error>> {
        for (path, text) in files {
            let full = self.work().join(path);
            if let Some(parent) = full.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(full, text)?;
        }
        git(&self.work(), &["add", "--all"])?;
        git(
            &self.work(),
            &["commit", "--quiet", "--allow-empty", "-m", "c"],
        )?;
        Ok(Repo::discover(&self.work())?.resolve("HEAD")?)
    }
}
