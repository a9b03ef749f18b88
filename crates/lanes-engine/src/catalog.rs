//! The one loader of the lane catalog: `lanes.toml` and the files it includes (its pins file),
//! read at a commit or in a working tree, every file strictly UTF-8. `lanes select`/`run`/
//! `check`, the forge's trigger and its agents all read a catalog through [`load`], so a commit's
//! catalog means the same thing to each.

use lanes_core::{Catalog, CatalogError, Source};
use lanes_git::{CommitId, GitError, Repo};
use std::path::Path;

/// Where the catalog lives, relative to the repository root.
pub const CATALOG_PATH: &str = "lanes.toml";

/// Where the catalog's files are read from.
#[derive(Clone, Copy, Debug)]
pub enum From<'a> {
    /// A commit of a repository.
    Commit(&'a Repo, &'a CommitId),
    /// A working tree's files as they are on disk.
    Worktree(&'a Path),
}

impl From<'_> {
    /// `at commit 1a2b3c4d5e6f` or `in the working tree`.
    pub fn location(&self) -> String {
        match self {
            From::Commit(_, commit) => {
                format!(
                    "at commit {}",
                    commit.as_str().get(..12).unwrap_or(commit.as_str())
                )
            }
            From::Worktree(_) => "in the working tree".to_owned(),
        }
    }

    /// A file's text; `None` when it does not exist.
    pub fn read(&self, path: &str) -> Result<Option<String>, LoadError> {
        let bytes = match self {
            From::Commit(repo, commit) => repo.read_file_at(commit, path)?,
            From::Worktree(root) => match std::fs::read(root.join(path)) {
                Ok(bytes) => Some(bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(source) => {
                    return Err(LoadError::Io {
                        path: root.join(path).display().to_string(),
                        source,
                    });
                }
            },
        };
        bytes
            .map(|b| {
                String::from_utf8(b).map_err(|_| LoadError::NotUtf8 {
                    path: path.to_owned(),
                })
            })
            .transpose()
    }
}

/// Why a catalog could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// There is no `lanes.toml`.
    #[error("no {CATALOG_PATH} {location}")]
    Missing {
        /// `at commit ...` or `in the working tree`.
        location: String,
    },
    /// A file of the catalog is not UTF-8.
    #[error("`{path}` is not valid UTF-8")]
    NotUtf8 {
        /// The file.
        path: String,
    },
    /// Reading the commit failed.
    #[error(transparent)]
    Git(#[from] GitError),
    /// Reading a file of the working tree failed.
    #[error("failed to read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The catalog does not validate.
    #[error("{0}")]
    Invalid(CatalogError),
}

/// The catalog `from` holds, validated, with the files it includes read from the same place.
pub fn load(from: From<'_>) -> Result<Catalog, LoadError> {
    let text = from.read(CATALOG_PATH)?.ok_or_else(|| LoadError::Missing {
        location: from.location(),
    })?;
    let mut include = |path: &str| match from.read(path) {
        Ok(Some(text)) => Ok(text),
        Ok(None) => Err(format!("no such file {}", from.location())),
        Err(e) => Err(e.to_string()),
    };
    lanes_core::parse(&Source::new(CATALOG_PATH, text), &mut include).map_err(LoadError::Invalid)
}
