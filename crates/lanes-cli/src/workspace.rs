//! The repository state a command looks at: a commit (`--head REV`) or the working tree.

use crate::error::CliError;
use lanes_core::{Catalog, FileEntry, Source};
use lanes_git::{CommitId, Repo};
use std::path::Path;

/// Where the catalog lives, relative to the repository root.
pub(crate) const CATALOG_PATH: &str = "lanes.toml";

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

    /// A file's text at the head commit or in the working tree; `None` if it does not exist.
    pub(crate) fn read(&self, path: &str) -> Result<Option<String>, CliError> {
        let bytes = match &self.head {
            Some(commit) => self.repo.read_file_at(commit, path)?,
            None => {
                let full = self.repo.workdir().expect("checked in open").join(path);
                match std::fs::read(&full) {
                    Ok(bytes) => Some(bytes),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(source) => {
                        return Err(CliError::Read {
                            path: full.display().to_string(),
                            source,
                        });
                    }
                }
            }
        };
        bytes
            .map(|b| {
                String::from_utf8(b).map_err(|_| {
                    CliError::usage(format!("`{path}` is not valid UTF-8"), None::<String>)
                })
            })
            .transpose()
    }

    fn location(&self) -> String {
        match &self.head {
            Some(commit) => format!("at commit {}", &commit.as_str()[..12]),
            None => "in the working tree".to_owned(),
        }
    }

    /// The catalog at the head commit (or in the working tree), validated.
    pub(crate) fn catalog(&self) -> Result<Catalog, CliError> {
        let text = self.read(CATALOG_PATH)?.ok_or_else(|| {
            CliError::usage(
                format!("no {CATALOG_PATH} {}", self.location()),
                "create one at the repository root; docs/manifest.md describes the format"
                    .to_owned(),
            )
        })?;
        let mut load = |path: &str| match self.read(path) {
            Ok(Some(text)) => Ok(text),
            Ok(None) => Err(format!("no such file {}", self.location())),
            Err(e) => Err(e.to_string()),
        };
        lanes_core::parse(&Source::new(CATALOG_PATH, text), &mut load).map_err(CliError::Catalog)
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
