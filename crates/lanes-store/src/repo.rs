//! Repositories the forge watches, and the branch heads it has seen in them.

use crate::run::RunRecord;
use jiff::Timestamp;
use std::path::PathBuf;

/// A repository's row id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RepoId(pub i64);

impl std::fmt::Display for RepoId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A repository to add.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRepo {
    /// Unique name, as in URLs and `owner/repo #N`.
    pub name: String,
    /// The local git repository (bare or not) the forge reads commits from.
    pub path: PathBuf,
    /// Where the local repository is fetched from, when it mirrors a remote.
    pub remote_url: Option<String>,
    /// The branch merge-bases are computed against (`main`).
    pub default_branch: String,
}

/// A stored repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoRecord {
    /// Row id.
    pub id: RepoId,
    /// Unique name.
    pub name: String,
    /// The local git repository.
    pub path: PathBuf,
    /// Where it is fetched from, if anywhere.
    pub remote_url: Option<String>,
    /// The default branch.
    pub default_branch: String,
    /// When it was added.
    pub created_at: Timestamp,
}

/// The head the ref watcher last saw on a branch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefRecord {
    /// The branch name (`main`, not `refs/heads/main`).
    pub branch: String,
    /// The commit id it pointed at.
    pub head: String,
    /// When the watcher recorded that head.
    pub seen_at: Timestamp,
}

/// A branch of a repository with its newest run, for the branch page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BranchSummary {
    /// The branch name.
    pub branch: String,
    /// The head the watcher last saw, if the watcher has seen the branch.
    pub head: Option<String>,
    /// The newest run on the branch, if any.
    pub latest_run: Option<RunRecord>,
}
