//! Branches and their heads, as the forge polls them.

use crate::error::Context;
use crate::{CommitId, GitError, Repo};

/// A local branch and the commit it points at.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Branch {
    /// The short name (`main`, `feature/x`).
    pub name: String,
    /// The commit at its tip.
    pub head: CommitId,
}

impl Repo {
    /// Every local branch (`refs/heads/*`) whose tip is a commit, sorted by name.
    ///
    /// Reads the references from disk on every call, so a long-lived `Repo` sees pushes made
    /// since it was opened.
    pub fn branches(&self) -> Result<Vec<Branch>, GitError> {
        let platform = self.inner.references().context(|| "read the references")?;
        let mut branches = Vec::new();
        for reference in platform.local_branches().context(|| "list the branches")? {
            let mut reference = reference.map_err(|e| GitError::other("read a branch", e))?;
            let name = reference.name().shorten().to_string();
            let Ok(commit) = reference.peel_to_commit() else {
                // A branch pointing at a tree or a blob is not something CI can run.
                continue;
            };
            branches.push(Branch {
                name,
                head: CommitId::from_object_id(commit.id),
            });
        }
        branches.sort();
        Ok(branches)
    }

    /// The branch a forge should take as the default: the one `HEAD` points at, when it has
    /// commits; when it has none yet (a bare repository made with `master` as its initial
    /// branch, to which `main` was pushed), `main`, then `master`, if one exists; else `HEAD`'s
    /// branch (a repository nothing was pushed to). `None` when `HEAD` is detached and neither
    /// exists.
    pub fn default_branch(&self) -> Result<Option<String>, GitError> {
        let head = self.head_branch()?;
        let branches = self.branches()?;
        let exists = |name: &str| branches.iter().any(|b| b.name == name);
        if let Some(head) = &head
            && exists(head)
        {
            return Ok(Some(head.clone()));
        }
        for usual in ["main", "master"] {
            if exists(usual) {
                return Ok(Some(usual.to_owned()));
            }
        }
        Ok(head)
    }

    /// The branch `HEAD` points at (`main` in a fresh bare repository), or `None` when `HEAD`
    /// is detached.
    pub fn head_branch(&self) -> Result<Option<String>, GitError> {
        let name = self.inner.head_name().context(|| "read HEAD")?;
        Ok(name.and_then(|n| {
            n.as_bstr()
                .strip_prefix(b"refs/heads/")
                .map(|short| String::from_utf8_lossy(short).into_owned())
        }))
    }
}
