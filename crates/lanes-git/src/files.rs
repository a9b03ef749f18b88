//! Files with content ids: what a lane's fileset, and so a step's key, is made of.
//!
//! Committed content is named by its git blob id, so listing a commit or a clean working tree
//! reads no file. Only content git does not know yet (modified or untracked files) is hashed,
//! with BLAKE3, from the bytes a step would see.

use std::collections::HashMap;
use std::io;
use std::path::Path;

use gix::bstr::{BStr, BString};
use gix::status::index_worktree::{Item as WorktreeItem, RewriteSource};
use gix::status::plumbing::index_as_worktree::{Change, EntryStatus};
use lanes_core::fileset::{ContentId, FileEntry, mode};

use crate::error::Context;
use crate::repo::utf8_path;
use crate::{CommitId, GitError, Repo};

impl Repo {
    /// The bytes of the file at `path` in `commit`'s tree (for a symlink, its target), or `None`
    /// if there is no file there (nothing, a directory, or a submodule).
    pub fn read_file_at(&self, commit: &CommitId, path: &str) -> Result<Option<Vec<u8>>, GitError> {
        let tree = self
            .inner
            .find_tree(self.tree_id(commit)?)
            .context(|| format!("read the tree of commit {commit}"))?;
        let entry = tree
            .lookup_entry(path.split('/'))
            .context(|| format!("look up `{path}` in commit {commit}"))?;
        let Some(entry) = entry.filter(|entry| entry.mode().is_blob_or_symlink()) else {
            return Ok(None);
        };
        let blob = entry
            .object()
            .context(|| format!("read `{path}` in commit {commit}"))?;
        Ok(Some(blob.detach().data))
    }

    /// Every file of `commit`'s tree (regular, executable, symlink, submodule), sorted by path,
    /// each named by its git object id. Reads trees only, never a blob.
    pub fn files_at(&self, commit: &CommitId) -> Result<Vec<FileEntry>, GitError> {
        let tree = self
            .inner
            .find_tree(self.tree_id(commit)?)
            .context(|| format!("read the tree of commit {commit}"))?;
        let mut recorder = gix::traverse::tree::Recorder::default();
        tree.traverse()
            .breadthfirst(&mut recorder)
            .context(|| format!("list the files of commit {commit}"))?;
        let mut files = Vec::with_capacity(recorder.records.len());
        for entry in recorder.records {
            if let Some(mode) = file_mode(entry.mode) {
                files.push(FileEntry {
                    path: utf8_path(entry.filepath)?,
                    mode,
                    id: ContentId::GitBlob(entry.oid.to_string()),
                });
            }
        }
        files.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    /// Every file of the working tree as a step would see it, sorted by path.
    ///
    /// That is each index entry still present on disk plus each untracked file that is not
    /// ignored. A file git's status calls clean (judged by the index's stat cache, so clean files
    /// are not read) keeps its index blob id and mode; any other file is named by the BLAKE3 of
    /// its bytes (of its target, for a symlink) with its mode taken from the disk. A submodule is
    /// named by the commit checked out in it; changes inside a submodule are not seen. Entries
    /// marked `--assume-unchanged` are trusted, as git trusts them. The index is only read,
    /// never refreshed, so this never writes to the repository.
    pub fn files_worktree(&self) -> Result<Vec<FileEntry>, GitError> {
        let workdir = self.require_workdir()?;
        let index = self.inner.index_or_empty().context(|| "read the index")?;
        let (changes, untracked) = self.worktree_changes(index.clone())?;

        let mut files = Vec::with_capacity(index.entries().len() + untracked.len());
        for entry in index.entries() {
            let path = entry.path(&index);
            // Unmerged paths have up to three entries; the disk has one file.
            if files
                .last()
                .is_some_and(|last: &FileEntry| last.path.as_bytes() == &**path)
            {
                continue;
            }
            let file = match changes.get(path) {
                Some(Worktree::Removed) => None,
                Some(Worktree::Submodule(head)) => Some(FileEntry {
                    path: utf8_path(path.to_owned())?,
                    mode: mode::GITLINK,
                    id: ContentId::GitBlob(head.to_string()),
                }),
                Some(Worktree::Changed) => hash_from_disk(workdir, path)?,
                // Outside a sparse checkout's cone, or hidden from status on purpose: the index
                // says nothing reliable about what is on disk.
                None if entry
                    .flags
                    .contains(gix::index::entry::Flags::SKIP_WORKTREE) =>
                {
                    hash_from_disk(workdir, path)?
                }
                None => {
                    let tree_mode = entry.mode.to_tree_entry_mode();
                    match tree_mode.and_then(file_mode) {
                        Some(mode) => Some(FileEntry {
                            path: utf8_path(path.to_owned())?,
                            mode,
                            id: ContentId::GitBlob(entry.id.to_string()),
                        }),
                        // A directory entry of a sparse index: its files are not checked out.
                        None => None,
                    }
                }
            };
            files.extend(file);
        }
        for path in untracked {
            files.extend(hash_from_disk(workdir, path.as_ref())?);
        }
        files.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    /// What git's status says differs between `index` and the working tree: changed index
    /// entries by path, and untracked, non-ignored files one by one.
    fn worktree_changes(
        &self,
        index: gix::worktree::Index,
    ) -> Result<(HashMap<BString, Worktree>, Vec<BString>), GitError> {
        let status = self
            .inner
            .status(gix::progress::Discard)
            .context(|| "prepare the working tree status")?
            .index(gix::worktree::IndexPersistedOrInMemory::Persisted(index))
            .untracked_files(gix::status::UntrackedFiles::Files)
            .index_worktree_rewrites(None)
            // Only the checked-out commit names a submodule; its own working tree is not read.
            .index_worktree_submodules(gix::status::Submodule::Given {
                ignore: gix::submodule::config::Ignore::Dirty,
                check_dirty: false,
            })
            .into_index_worktree_iter(Vec::new())
            .context(|| "compute the working tree status")?;

        let mut changes = HashMap::new();
        let mut untracked = Vec::new();
        for item in status {
            match item.context(|| "compute the working tree status")? {
                WorktreeItem::Modification {
                    rela_path, status, ..
                } => {
                    let change = match status {
                        EntryStatus::NeedsUpdate(_) => continue,
                        EntryStatus::Change(Change::Removed) => Worktree::Removed,
                        EntryStatus::Change(Change::SubmoduleModification(submodule)) => {
                            match submodule.checked_out_head_id {
                                Some(head) => Worktree::Submodule(head),
                                None => continue,
                            }
                        }
                        EntryStatus::Change(_)
                        | EntryStatus::Conflict { .. }
                        | EntryStatus::IntentToAdd => Worktree::Changed,
                    };
                    changes.insert(rela_path, change);
                }
                WorktreeItem::DirectoryContents { entry, .. } => {
                    if is_untracked_file(&entry) {
                        untracked.push(entry.rela_path);
                    }
                }
                WorktreeItem::Rewrite {
                    source,
                    dirwalk_entry,
                    ..
                } => {
                    if let RewriteSource::RewriteFromIndex {
                        source_rela_path, ..
                    } = source
                    {
                        changes.insert(source_rela_path, Worktree::Removed);
                    }
                    if is_untracked_file(&dirwalk_entry) {
                        untracked.push(dirwalk_entry.rela_path);
                    }
                }
            }
        }
        Ok((changes, untracked))
    }
}

/// How an index entry's working-tree file differs from it.
#[derive(Debug)]
enum Worktree {
    /// The file is gone.
    Removed,
    /// The content, the mode or the kind differs, or the path is unmerged: read the disk.
    Changed,
    /// A submodule checked out at a commit other than the one in the index.
    Submodule(gix::ObjectId),
}

/// An untracked walk entry that a fileset can hold: a file or a symlink, not a nested repository.
fn is_untracked_file(entry: &gix::dir::Entry) -> bool {
    use gix::dir::entry::{Kind, Status};
    entry.status == Status::Untracked && matches!(entry.disk_kind, Some(Kind::File | Kind::Symlink))
}

/// The fileset mode of a tree entry, or `None` for a tree.
fn file_mode(tree_mode: gix::objs::tree::EntryMode) -> Option<u32> {
    use gix::objs::tree::EntryKind;
    match tree_mode.kind() {
        EntryKind::Tree => None,
        EntryKind::Blob => Some(mode::FILE),
        EntryKind::BlobExecutable => Some(mode::EXECUTABLE),
        EntryKind::Link => Some(mode::SYMLINK),
        EntryKind::Commit => Some(mode::GITLINK),
    }
}

/// The file at `rela_path` as it is on disk, named by BLAKE3, or `None` if there is no file
/// there any more (or something a fileset cannot hold, like a directory or a FIFO).
fn hash_from_disk(workdir: &Path, rela_path: &BStr) -> Result<Option<FileEntry>, GitError> {
    let path = utf8_path(rela_path.to_owned())?;
    let disk_path = workdir.join(&path);
    let metadata = match std::fs::symlink_metadata(&disk_path) {
        Ok(metadata) => metadata,
        Err(err) if is_absent(&err) => return Ok(None),
        Err(err) => {
            return Err(GitError::other(
                format!("inspect {}", disk_path.display()),
                err,
            ));
        }
    };
    let mut hasher = blake3::Hasher::new();
    let file_mode = if metadata.file_type().is_symlink() {
        let target = std::fs::read_link(&disk_path)
            .context(|| format!("read the symlink {}", disk_path.display()))?;
        let target = gix::path::into_bstr(target)
            .context(|| format!("read the symlink {}", disk_path.display()))?;
        hasher.update(&target);
        mode::SYMLINK
    } else if metadata.is_file() {
        let file = match std::fs::File::open(&disk_path) {
            Ok(file) => file,
            Err(err) if is_absent(&err) => return Ok(None),
            Err(err) => {
                return Err(GitError::other(
                    format!("open {}", disk_path.display()),
                    err,
                ));
            }
        };
        hasher
            .update_reader(file)
            .context(|| format!("read {}", disk_path.display()))?;
        if is_executable(&metadata) {
            mode::EXECUTABLE
        } else {
            mode::FILE
        }
    } else {
        return Ok(None);
    };
    Ok(Some(FileEntry {
        path,
        mode: file_mode,
        id: ContentId::Blake3(hasher.finalize().to_hex().to_string()),
    }))
}

/// The file vanished, or a parent directory became a file, between the status and the read.
fn is_absent(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

#[cfg(unix)]
fn is_executable(metadata: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    metadata.permissions().mode() & 0o111 != 0
}

/// Without execute bits on the filesystem, git's own answer (`core.fileMode = false`) is "no".
#[cfg(not(unix))]
fn is_executable(_metadata: &std::fs::Metadata) -> bool {
    false
}
