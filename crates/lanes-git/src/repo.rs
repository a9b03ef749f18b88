//! The handle on one repository, the commit id type, and the conversions every query shares.
//!
//! The queries themselves live beside the concept they answer: revisions in `revision.rs`,
//! changed paths in `diff.rs`, file listings in `files.rs`.

use std::fmt;
use std::path::Path;

use gix::bstr::BString;

use crate::GitError;
use crate::error::Context;

/// A commit id: the full lowercase hex object id, as git prints it.
///
/// Only [`Repo`] makes these, from a revision it resolved, so a `CommitId` always names a commit
/// that existed in some repository. `Display` honours a precision (`{:.12}`) for short ids.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommitId(String);

impl CommitId {
    /// The hex id, to store or send as a plain string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn from_object_id(id: gix::ObjectId) -> Self {
        CommitId(id.to_string())
    }

    pub(crate) fn object_id(&self) -> gix::ObjectId {
        gix::ObjectId::from_hex(self.0.as_bytes())
            .expect("a CommitId is only built from an object id, so it is valid hex")
    }
}

impl fmt::Display for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// A git repository, opened once and queried many times.
#[derive(Clone, Debug)]
pub struct Repo {
    pub(crate) inner: gix::Repository,
}

impl Repo {
    /// Discover the repository containing `dir`, walking up through its parents like git does.
    ///
    /// Environment variables such as `GIT_DIR` are deliberately not consulted: lanes answers for
    /// the directory it was pointed at, not for whatever a surrounding hook exported.
    pub fn discover(dir: &Path) -> Result<Repo, GitError> {
        match gix::discover(dir) {
            Ok(inner) => Ok(Repo { inner }),
            Err(err) => {
                use gix::discover::upwards::Error as Upwards;
                match err.downcast_any_ref::<Upwards>() {
                    Some(
                        Upwards::NoGitRepository { .. }
                        | Upwards::NoGitRepositoryWithinCeiling { .. }
                        | Upwards::NoGitRepositoryWithinFs { .. },
                    ) => Err(GitError::NotARepository {
                        path: dir.to_owned(),
                    }),
                    _ => Err(GitError::other(
                        format!("open the git repository at {}", dir.display()),
                        err,
                    )),
                }
            }
        }
    }

    /// Root of the working tree, or `None` for a bare repository.
    pub fn workdir(&self) -> Option<&Path> {
        self.inner.workdir()
    }

    /// The git directory shared by every worktree (`.git` of a normal clone, the repository
    /// itself when bare).
    pub fn git_dir(&self) -> &Path {
        self.inner.common_dir()
    }

    /// Every directory that holds this repository's files, for a sandbox to hide: the work tree,
    /// the git directory and, for a linked worktree, the main work tree beside its `.git`.
    pub fn dirs(&self) -> Vec<std::path::PathBuf> {
        let mut dirs: Vec<std::path::PathBuf> =
            self.workdir().map(Path::to_owned).into_iter().collect();
        let common = self.git_dir();
        dirs.push(common.to_owned());
        dirs.push(self.inner.git_dir().to_owned());
        if !self.inner.is_bare()
            && common.file_name().is_some_and(|n| n == ".git")
            && let Some(main) = common.parent()
        {
            dirs.push(main.to_owned());
        }
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// True if the repository is a shallow clone: some commits' parents were never fetched.
    pub fn is_shallow(&self) -> bool {
        // `gix` only fails here when `gitoxide.core.shallowFile` is not a representable path; such
        // a repository cannot be read as shallow by gix either, so "not shallow" is the truth
        // for every query this crate makes.
        self.inner.is_shallow().unwrap_or(false)
    }

    /// The working tree root, or [`GitError::Bare`] for operations that need one.
    pub(crate) fn require_workdir(&self) -> Result<&Path, GitError> {
        self.inner.workdir().ok_or_else(|| GitError::Bare {
            path: self.inner.git_dir().to_owned(),
        })
    }

    /// The id of the root tree of `commit`.
    pub(crate) fn tree_id(&self, commit: &CommitId) -> Result<gix::ObjectId, GitError> {
        let commit_obj = self
            .inner
            .find_commit(commit.object_id())
            .context(|| format!("find commit {commit}"))?;
        let tree_id = commit_obj
            .tree_id()
            .context(|| format!("read the tree of commit {commit}"))?;
        Ok(tree_id.detach())
    }
}

/// A repository path as lanes uses it: UTF-8 with `/` separators.
pub(crate) fn utf8_path(path: BString) -> Result<String, GitError> {
    String::from_utf8(path.into()).map_err(|err| GitError::NonUtf8Path {
        path: String::from_utf8_lossy(err.as_bytes()).into_owned(),
    })
}
