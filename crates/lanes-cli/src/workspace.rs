//! The repository state a command looks at: a commit (`--head REV`) or the working tree.

use crate::error::CliError;
use lanes_core::{Catalog, FileEntry};
use lanes_git::{CommitId, Repo};
use std::path::Path;

/// Where the catalog lives, relative to the repository root.
pub(crate) use lanes_engine::catalog::CATALOG_PATH;
use lanes_engine::catalog::{self, LoadError};

#[derive(Debug)]
pub(crate) struct Workspace {
    pub(crate) repo: Repo,
    /// The commit under test, or `None` for the working tree.
    pub(crate) head: Option<CommitId>,
}

impl Workspace {
    pub(crate) fn open(dir: &Path, head: Option<&str>) -> Result<Workspace, CliError> {
        let repo = Repo::discover(dir)?;
        let head = head.map(|rev| repo.resolve(rev)).transpose()?;
        if head.is_none() && repo.workdir().is_none() {
            return Err(CliError::usage(
                "this repository has no working tree",
                "pass `--head REV` to look at a commit".to_owned(),
            ));
        }
        Ok(Workspace { repo, head })
    }

    /// The commit the change is measured from: `--head`, or `HEAD` for the working tree.
    pub(crate) fn head_commit(&self) -> Result<CommitId, CliError> {
        match &self.head {
            Some(commit) => Ok(commit.clone()),
            None => Ok(self.repo.resolve("HEAD")?),
        }
    }

    /// The catalog at the head commit (or in the working tree), validated (lanes-engine's one
    /// loader).
    pub(crate) fn catalog(&self) -> Result<Catalog, CliError> {
        let from = match &self.head {
            Some(commit) => catalog::From::Commit(&self.repo, commit),
            None => catalog::From::Worktree(self.repo.workdir().expect("checked in open")),
        };
        catalog::load(from).map_err(|e| match e {
            LoadError::Missing { location } => CliError::usage(
                format!("no {CATALOG_PATH} {location}"),
                "create one at the repository root; docs/manifest.md describes the format"
                    .to_owned(),
            ),
            LoadError::Invalid(error) => CliError::Catalog(error),
            LoadError::Git(error) => CliError::Git(error),
            LoadError::NotUtf8 { path } => {
                CliError::usage(format!("`{path}` is not valid UTF-8"), None::<String>)
            }
            LoadError::Io { path, source } => CliError::Read { path, source },
        })
    }

    /// Paths changed between `merge_base` and the head commit (or the working tree).
    pub(crate) fn changed_since(&self, merge_base: &CommitId) -> Result<Vec<String>, CliError> {
        Ok(match &self.head {
            Some(head) => self.repo.changed_paths(merge_base, head)?,
            None => self.repo.changed_paths_worktree(merge_base)?,
        })
    }

    /// Every file a lane could see, sorted by path, with content ids.
    pub(crate) fn files(&self) -> Result<Vec<FileEntry>, CliError> {
        Ok(match &self.head {
            Some(head) => self.repo.files_at(head)?,
            None => self.repo.files_worktree()?,
        })
    }
}
