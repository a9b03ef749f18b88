//! Changed paths: what lane selection matches its triggers against.
//!
//! Rename tracking is never enabled. A rename is reported as the deletion of the old path and the
//! addition of the new one, because a lane watching either side must be selected.

use std::collections::BTreeSet;

use gix::bstr::BString;
use gix::status::index_worktree::Item as WorktreeItem;

use crate::error::Context;
use crate::repo::utf8_path;
use crate::{CommitId, GitError, Repo};

impl Repo {
    /// Paths that differ between the trees of `from` and `to`: additions, modifications,
    /// deletions, both sides of a rename, mode changes (`chmod +x`, file to symlink) and submodule
    /// commit changes. Sorted, deduplicated, repository-relative with `/`.
    pub fn changed_paths(&self, from: &CommitId, to: &CommitId) -> Result<Vec<String>, GitError> {
        let mut paths = BTreeSet::new();
        self.tree_changes(self.tree_id(from)?, self.tree_id(to)?, &mut paths)?;
        Ok(paths.into_iter().collect())
    }

    /// Paths that differ between commit `from` and the working tree as it is now.
    ///
    /// This is the union of the tree diff from `from` to `HEAD`, the staged changes (`HEAD` against
    /// the index), the unstaged changes (the index against the working tree, deletions and mode
    /// changes included) and the untracked files that are not ignored, listed one by one even
    /// inside untracked directories. A union over-reports by design: a path changed in `HEAD` and
    /// changed back in the working tree is still listed. Selecting one lane too many costs a run;
    /// missing one reports green for untested code.
    pub fn changed_paths_worktree(&self, from: &CommitId) -> Result<Vec<String>, GitError> {
        self.require_workdir()?;
        let head_tree = self
            .inner
            .head_tree_id_or_empty()
            .context(|| "read the tree of HEAD")?
            .detach();
        let mut paths = BTreeSet::new();
        self.tree_changes(self.tree_id(from)?, head_tree, &mut paths)?;

        let status = self
            .inner
            .status(gix::progress::Discard)
            .context(|| "prepare the working tree status")?
            .untracked_files(gix::status::UntrackedFiles::Files)
            .tree_index_track_renames(gix::status::tree_index::TrackRenames::Disabled)
            .index_worktree_rewrites(None)
            .head_tree(head_tree)
            .into_iter(Vec::<BString>::new())
            .context(|| "compute the working tree status")?;
        for item in status {
            let item = item.context(|| "compute the working tree status")?;
            // Only an untracked walk entry is a change; this holds even if gix's walk defaults
            // start emitting tracked or ignored entries.
            if let gix::status::Item::IndexWorktree(WorktreeItem::DirectoryContents {
                entry, ..
            }) = &item
                && entry.status != gix::dir::entry::Status::Untracked
            {
                continue;
            }
            paths.insert(utf8_path(item.location().to_owned())?);
        }
        Ok(paths.into_iter().collect())
    }

    /// Add the path of every non-tree entry that differs between two trees to `paths`.
    fn tree_changes(
        &self,
        old: gix::ObjectId,
        new: gix::ObjectId,
        paths: &mut BTreeSet<String>,
    ) -> Result<(), GitError> {
        let old_tree = self
            .inner
            .find_tree(old)
            .context(|| format!("read tree {old}"))?;
        let new_tree = self
            .inner
            .find_tree(new)
            .context(|| format!("read tree {new}"))?;
        let hash_kind = self.inner.object_hash();
        let mut recorder = gix::diff::tree::Recorder::default();
        gix::diff::tree(
            gix::objs::TreeRefIter::from_bytes(&old_tree.data, hash_kind),
            gix::objs::TreeRefIter::from_bytes(&new_tree.data, hash_kind),
            gix::diff::tree::State::default(),
            &self.inner.objects,
            &mut recorder,
        )
        .context(|| format!("diff tree {old} against tree {new}"))?;

        use gix::diff::tree::recorder::Change;
        for change in recorder.records {
            // Trees are reported as well as the files in them; the files are what triggers
            // match, and a tree replaced by a file (or the reverse) yields both sides as files.
            let (mode, path) = match change {
                Change::Addition {
                    entry_mode, path, ..
                }
                | Change::Deletion {
                    entry_mode, path, ..
                }
                | Change::Modification {
                    entry_mode, path, ..
                } => (entry_mode, path),
            };
            if !mode.is_tree() {
                paths.insert(utf8_path(path)?);
            }
        }
        Ok(())
    }
}
