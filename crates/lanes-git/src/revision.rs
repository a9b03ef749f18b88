//! Naming commits: resolving revisions, guessing the default base, finding the merge-base.

use crate::error::Context;
use crate::{CommitId, GitError, Repo};

/// Local branch names tried, in order, when the remote does not say which branch is the default.
const CONVENTIONAL_DEFAULT_BRANCHES: [&str; 2] = ["main", "master"];

impl Repo {
    /// Resolve any revision gix understands (branch, tag, commit id, `HEAD~2`, `origin/main`) to
    /// the commit it names, peeling annotated tags.
    pub fn resolve(&self, rev: &str) -> Result<CommitId, GitError> {
        let id = self
            .inner
            .rev_parse_single(rev)
            .map_err(|source| GitError::UnknownRevision {
                rev: rev.to_owned(),
                source: source.into(),
            })?;
        let object = id
            .object()
            .context(|| format!("read the object `{rev}` names"))?
            .peel_tags_to_end()
            .context(|| format!("peel the tag `{rev}`"))?;
        match object.kind {
            gix::objs::Kind::Commit => Ok(CommitId::from_object_id(object.id)),
            kind => Err(GitError::NotACommit {
                rev: rev.to_owned(),
                kind: kind.to_string(),
            }),
        }
    }

    /// The name of the revision to compare against when the user gave none.
    ///
    /// In order: the default branch a remote advertises (`refs/remotes/<remote>/HEAD`, `origin`
    /// before the others), the local `main`, the local `master`, and finally a remote-tracking
    /// `main` or `master` (CI checkouts often fetch branches without setting `<remote>/HEAD` and
    /// have no local branch at all). The name is returned rather than the commit so the CLI can
    /// show what it picked.
    pub fn default_base(&self) -> Result<String, GitError> {
        let remotes = self.remotes_origin_first();
        for remote in &remotes {
            let head = format!("refs/remotes/{remote}/HEAD");
            let Some(head) = self.find_reference(&head)? else {
                continue;
            };
            if let Some(target) = head.target().try_name()
                && self
                    .find_reference(&target.as_bstr().to_string())?
                    .is_some()
            {
                return Ok(target.shorten().to_string());
            }
        }
        for branch in CONVENTIONAL_DEFAULT_BRANCHES {
            if self
                .find_reference(&format!("refs/heads/{branch}"))?
                .is_some()
            {
                return Ok(branch.to_owned());
            }
        }
        for remote in &remotes {
            for branch in CONVENTIONAL_DEFAULT_BRANCHES {
                if self
                    .find_reference(&format!("refs/remotes/{remote}/{branch}"))?
                    .is_some()
                {
                    return Ok(format!("{remote}/{branch}"));
                }
            }
        }
        Err(GitError::NoDefaultBase)
    }

    /// The best common ancestor of `base` and `head`.
    ///
    /// When there is none, a shallow clone is reported as such rather than as unrelated
    /// histories: the ancestor most likely exists but was never fetched, and guessing a
    /// different base would silently select the wrong lanes.
    pub fn merge_base(&self, base: &CommitId, head: &CommitId) -> Result<CommitId, GitError> {
        let found = self
            .inner
            .merge_base(base.object_id(), head.object_id())
            .context(|| format!("compute the merge-base of {base} and {head}"))?;
        match found {
            Some(id) => Ok(CommitId::from_object_id(id.detach())),
            None if self.is_shallow() => Err(GitError::ShallowClone {
                base: base.clone(),
                head: head.clone(),
            }),
            None => Err(GitError::NoMergeBase {
                base: base.clone(),
                head: head.clone(),
            }),
        }
    }

    /// Configured remote names, `origin` first, then the others alphabetically.
    fn remotes_origin_first(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .inner
            .remote_names()
            .into_iter()
            .map(|name| name.to_string())
            .collect();
        names.sort_by_key(|name| (name != "origin", name.clone()));
        names
    }

    /// The reference with exactly this full name, without following symbolic references.
    fn find_reference(&self, full_name: &str) -> Result<Option<gix::Reference<'_>>, GitError> {
        self.inner
            .try_find_reference(full_name)
            .context(|| format!("read the reference {full_name}"))
    }
}
