//! What the integration tests share: a repository `app` in a temporary directory with a real
//! SQLite store that knows it (git itself comes from lanes-testkit).

#![allow(
    dead_code,
    reason = "each test binary uses a different part of this module"
)]

use jiff::Timestamp;
use lanes_git::{CommitId, Repo};
use lanes_store::{NewRepo, RepoRecord, SqliteStore, Store};
use lanes_testkit::git_in;
use std::path::PathBuf;

pub(crate) type TestResult = Result<(), Box<dyn std::error::Error>>;

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
        git_in(&work, &["init", "--quiet", "--initial-branch", "main"]);
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
        git_in(&self.work(), &["add", "--all"]);
        git_in(
            &self.work(),
            &["commit", "--quiet", "--allow-empty", "-m", "c"],
        );
        Ok(Repo::discover(&self.work())?.resolve("HEAD")?)
    }
}
