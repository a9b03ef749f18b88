//! Where a lane runs under the lanes cache directory: its slot (`work/<lane>/<n>/`) and its
//! cache mounts (`mounts/<scope or _default>/`), the same for `lanes run` and the forge's agents
//! so that a laptop and an agent on one machine share them.
//!
//! A slot is the same path run after run (tools that remember absolute paths, such as cargo,
//! keep their incremental state); a concurrent run of the same lane takes the next free one.
//! This module picks and locks directories, and keeps a slot's `src/` in step with what a lane
//! needs ([`sync`]): the lane directory is made to hold exactly the wanted entries, and a file
//! already there with the wanted content and mode keeps its times, so a build tool that judges
//! freshness by file times (make, cargo) rebuilds only what changed. The slot's manifest
//! (`work/<lane>/<n>.manifest.json`, beside the slot, where the sandbox keeps steps out) says what
//! lanes wrote there and the metadata each file had then; a file whose inode, size, mtime and
//! ctime are still those is known unchanged without reading it (a step can set a file's mtime but
//! not its ctime). What goes into the slot is [`crate::lane`]'s decision.

use lanes_cache::{LocalStore, OutputKind, OutputTree};
use lanes_core::fileset::{ContentId, mode};
use lanes_core::{Digest, FileEntry};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The cache-mount directory of lanes without a `scope` (scope names cannot start with `_`).
pub const NO_SCOPE: &str = "_default";

/// A lane slot held for one run of a lane. Dropping it frees the slot.
#[derive(Debug)]
#[must_use = "the slot is held only while this is kept"]
pub struct Slot {
    /// The slot directory, for [`crate::LaneContext::slot`].
    pub path: PathBuf,
    /// Holds the exclusive lock on `<n>.lock` that keeps other runs out of the slot.
    _lock: File,
}

/// Lock the first free slot of `lane` under the cache directory `cache_root`
/// (`<cache_root>/work/<lane>/<n>`).
pub fn take_slot(cache_root: &Path, lane: &str) -> std::io::Result<Slot> {
    let dir = cache_root.join("work").join(lane);
    std::fs::create_dir_all(&dir)?;
    for n in 0u64.. {
        let lock = File::create(dir.join(format!("{n}.lock")))?;
        match lock.try_lock() {
            Ok(()) => {
                return Ok(Slot {
                    path: dir.join(n.to_string()),
                    _lock: lock,
                });
            }
            Err(std::fs::TryLockError::WouldBlock) => continue,
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
    unreachable!("the loop returns")
}

/// Where the cache mounts of a lane with `scope` live, for [`crate::LaneContext::mounts`]:
/// lanes of one scope share them, lanes without one share `_default`.
pub fn mounts_dir(cache_root: &Path, scope: Option<&str>) -> PathBuf {
    cache_root.join("mounts").join(scope.unwrap_or(NO_SCOPE))
}

/// Where the record of what lanes wrote into the slot's `src/` is kept: beside the slot, not in
/// it, so a step (which the sandbox lets write only in its slot) cannot forge it.
fn manifest_path(slot: &Path) -> PathBuf {
    let name = slot
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    slot.with_file_name(format!("{name}.manifest.json"))
}

/// Version of the manifest format; a manifest of another version is not used.
const MANIFEST_VERSION: u32 = 1;

/// One entry the lane directory must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Want {
    /// A directory.
    Dir,
    /// A file or symlink of the lane's fileset.
    Input(FileEntry),
    /// A file restored from the store, recorded by step `step`.
    Blob {
        /// Its content.
        digest: Digest,
        /// Whether it is executable.
        executable: bool,
        /// The step whose output tree holds it.
        step: usize,
    },
    /// A symlink restored from the output tree of step `step`.
    Link {
        /// Where it points.
        target: String,
        /// The step whose output tree holds it.
        step: usize,
    },
}

impl Want {
    /// What the manifest records of its content and mode; `None` for a directory.
    fn id(&self) -> Option<String> {
        match self {
            Want::Dir => None,
            Want::Input(file) => Some(match &file.id {
                ContentId::GitBlob(hex) => format!("{:o}:blob:{hex}", file.mode),
                ContentId::Blake3(hex) => format!("{:o}:blake3:{hex}", file.mode),
            }),
            Want::Blob {
                digest, executable, ..
            } => Some(format!(
                "{:o}:blake3:{digest}",
                if *executable {
                    mode::EXECUTABLE
                } else {
                    mode::FILE
                }
            )),
            Want::Link { target, .. } => Some(format!("{:o}:target:{target}", mode::SYMLINK)),
        }
    }

    fn is_symlink(&self) -> bool {
        match self {
            Want::Input(file) => file.mode == mode::SYMLINK,
            Want::Link { .. } => true,
            Want::Dir | Want::Blob { .. } => false,
        }
    }
}

/// What the lane directory must hold: the lane's files with the outputs of earlier hits applied
/// in order, every parent directory listed.
#[derive(Clone, Debug, Default)]
pub struct Desired {
    entries: BTreeMap<String, Want>,
}

/// Why the lane directory could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The recorded outputs of step `step` could not be applied (a missing or corrupt blob, a
    /// bad path).
    #[error("{why}")]
    Restore {
        /// The step whose outputs failed.
        step: usize,
        /// Why.
        why: String,
    },
    /// Anything else: reading or writing the directory, writing the lane's files.
    #[error("{0}")]
    Other(String),
}

fn other(action: &str, path: &Path) -> impl FnOnce(std::io::Error) -> SyncError {
    let what = format!("cannot {action} {}", path.display());
    move |e| SyncError::Other(format!("{what}: {e}"))
}

/// The paths strictly under `dir` in a map ordered by path: `dir/` up to `dir0` (`0` follows `/`).
fn under<V>(map: &BTreeMap<String, V>, dir: &str) -> Vec<String> {
    map.range(format!("{dir}/")..format!("{dir}0"))
        .map(|(k, _)| k.clone())
        .collect()
}

impl Desired {
    /// The lane's `files` (a submodule is an empty directory, as when it is written).
    pub fn new(files: Vec<FileEntry>) -> Desired {
        let mut desired = Desired::default();
        for file in files {
            let path = file.path.clone();
            let want = if file.mode == mode::GITLINK {
                Want::Dir
            } else {
                Want::Input(file)
            };
            desired.make_parents(&path);
            desired.entries.insert(path, want);
        }
        desired
    }

    /// Every entry, in path order (a directory before what it holds).
    pub fn entries(&self) -> &BTreeMap<String, Want> {
        &self.entries
    }

    /// Whether the top-level name `name` is taken.
    pub fn has(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    fn remove_tree(&mut self, path: &str) {
        for child in under(&self.entries, path) {
            self.entries.remove(&child);
        }
        self.entries.remove(path);
    }

    fn make_parents(&mut self, path: &str) {
        let mut end = 0;
        while let Some(slash) = path[end..].find('/') {
            let parent = &path[..end + slash];
            if self.entries.get(parent) != Some(&Want::Dir) {
                self.remove_tree(parent);
                self.entries.insert(parent.to_owned(), Want::Dir);
            }
            end += slash + 1;
        }
    }

    fn parents_are_dirs(&self, path: &str) -> bool {
        let mut end = 0;
        while let Some(slash) = path[end..].find('/') {
            if self.entries.get(&path[..end + slash]) != Some(&Want::Dir) {
                return false;
            }
            end += slash + 1;
        }
        true
    }

    /// Apply the output tree step `step` recorded, as [`crate::outputs::restore`] applies it to a
    /// directory.
    pub fn apply(&mut self, tree: &OutputTree, step: usize) -> Result<(), SyncError> {
        for entry in &tree.entries {
            let path = entry.path.as_str();
            if path
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == "..")
            {
                return Err(SyncError::Restore {
                    step,
                    why: format!("the output path `{path}` is not a plain relative path"),
                });
            }
            let want = match &entry.kind {
                OutputKind::Deleted => {
                    // Under something that is not a directory there is nothing to delete.
                    if self.parents_are_dirs(path) {
                        self.remove_tree(path);
                    }
                    continue;
                }
                OutputKind::Dir => Want::Dir,
                OutputKind::File {
                    digest, executable, ..
                } => Want::Blob {
                    digest: digest.clone(),
                    executable: *executable,
                    step,
                },
                OutputKind::Symlink { target } => Want::Link {
                    target: target.clone(),
                    step,
                },
            };
            self.make_parents(path);
            if !(want == Want::Dir && self.entries.get(path) == Some(&Want::Dir)) {
                self.remove_tree(path);
                self.entries.insert(path.to_owned(), want);
            }
        }
        Ok(())
    }
}

/// A file's identity: it changes whenever the file is written, replaced or has its mode or
/// times changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Identity {
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Identity {
    fn of(meta: &std::fs::Metadata) -> Identity {
        Identity {
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// What lanes wrote into a slot's `src/`: each file's content id (blob or link target) and its
/// identity then.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Manifest {
    version: u32,
    /// Every recorded file's ctime is before this: a file written later, even within the file
    /// system clock's resolution, cannot look like a recorded one.
    sealed: (i64, i64),
    files: BTreeMap<String, (String, Identity)>,
}

impl Manifest {
    /// The manifest of `slot`; `None` when there is none or it cannot be read.
    pub fn load(slot: &Path) -> Option<Manifest> {
        let bytes = std::fs::read(manifest_path(slot)).ok()?;
        serde_json::from_slice::<Manifest>(&bytes)
            .ok()
            .filter(|m| m.version == MANIFEST_VERSION)
    }

    /// Whether `path`, with metadata `meta`, is still the file lanes wrote with id `id`.
    fn unchanged(&self, path: &str, id: &str, meta: &std::fs::Metadata) -> bool {
        self.files.get(path).is_some_and(|(recorded, identity)| {
            recorded == id && *identity == Identity::of(meta) && identity.ctime < self.sealed
        })
    }
}

/// What [`sync`] did.
#[derive(Debug, Default)]
pub struct Synced {
    /// Files and symlinks written.
    pub written: usize,
    /// Bytes of the lane's files written.
    pub bytes: u64,
    /// Files and symlinks kept as they were.
    pub kept: usize,
}

/// Make `src` hold exactly `desired`: remove what it does not want, keep what `manifest` shows
/// unchanged, write the rest (`fileset` writes the lane's files, `store` the restored
/// outputs). No symlink in `src` is followed. With an `owner` (the step user, when lanes runs as
/// root), everything in `src` is given to it before the manifest records it: a later change of
/// owner would change every file's ctime and so make the next sync rewrite them all.
/// Afterwards, with the file system's clock moved past every write, the new manifest is written
/// beside `slot` (a failure to write it only costs the next sync a rewrite).
pub fn sync(
    slot: &Path,
    desired: &Desired,
    manifest: Option<&Manifest>,
    owner: Option<(u32, u32)>,
    fileset: &dyn crate::Fileset,
    store: &LocalStore,
) -> Result<Synced, SyncError> {
    let src = slot.join("src");
    // An old manifest must not outlive a sync that fails halfway: one that cannot be removed
    // fails the sync.
    let old = manifest_path(slot);
    match std::fs::remove_file(&old) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(other("remove", &old)(e));
        }
        _ => {}
    }
    match std::fs::symlink_metadata(&src) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => std::fs::remove_file(&src).map_err(other("remove", &src))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(other("read the metadata of", &src)(e)),
    }
    std::fs::create_dir_all(&src).map_err(other("create", &src))?;

    let mut synced = Synced::default();
    let mut present: BTreeSet<String> = BTreeSet::new();
    let mut stack = vec![(src.clone(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(other("list", &dir))? {
            let entry = entry.map_err(other("list", &dir))?;
            let full = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                remove(&full)?;
                continue;
            };
            let path = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let meta =
                std::fs::symlink_metadata(&full).map_err(other("read the metadata of", &full))?;
            let keep = match desired.entries.get(&path) {
                None => false,
                Some(Want::Dir) => meta.is_dir(),
                Some(want) => {
                    let kind_fits = if want.is_symlink() {
                        meta.file_type().is_symlink()
                    } else {
                        meta.is_file()
                    };
                    kind_fits
                        && want.id().is_some_and(|id| {
                            manifest.is_some_and(|m| m.unchanged(&path, &id, &meta))
                        })
                }
            };
            if !keep {
                remove(&full)?;
                continue;
            }
            if meta.is_dir() {
                stack.push((full, path.clone()));
            } else {
                synced.kept += 1;
            }
            present.insert(path);
        }
    }

    let mut inputs: Vec<&FileEntry> = Vec::new();
    for (path, want) in &desired.entries {
        if present.contains(path) {
            continue;
        }
        let full = src.join(path);
        match want {
            Want::Dir => std::fs::create_dir(&full).map_err(other("create", &full))?,
            Want::Input(file) => inputs.push(file),
            Want::Blob {
                digest,
                executable,
                step,
            } => {
                let restored = store.copy_blob_to(digest, &full, *executable);
                match restored {
                    Ok(true) => synced.written += 1,
                    Ok(false) => {
                        return Err(SyncError::Restore {
                            step: *step,
                            why: format!(
                                "the stored output {path} ({digest}) is missing or corrupt"
                            ),
                        });
                    }
                    Err(e) => {
                        return Err(SyncError::Restore {
                            step: *step,
                            why: e.to_string(),
                        });
                    }
                }
            }
            Want::Link { target, .. } => {
                std::os::unix::fs::symlink(target, &full)
                    .map_err(other("create the link", &full))?;
                synced.written += 1;
            }
        }
    }
    let (files, bytes) = fileset
        .write(&inputs, &src)
        .map_err(|e| SyncError::Other(format!("materializing the lane's files: {e}")))?;
    synced.written += files;
    synced.bytes = bytes;
    if let Some((uid, gid)) = owner {
        give(&src, uid, gid).map_err(other("give to the step user", &src))?;
    }

    if let Ok(sealed) = tick(slot) {
        let mut files = BTreeMap::new();
        for (path, want) in &desired.entries {
            let Some(id) = want.id() else { continue };
            if let Ok(meta) = std::fs::symlink_metadata(src.join(path)) {
                let identity = Identity::of(&meta);
                if identity.ctime < sealed {
                    files.insert(path.clone(), (id, identity));
                }
            }
        }
        let manifest = Manifest {
            version: MANIFEST_VERSION,
            sealed,
            files,
        };
        let json = serde_json::to_vec(&manifest).expect("a manifest always serializes");
        let path = manifest_path(slot);
        let temp = path.with_extension("json.tmp");
        // Without a manifest the next sync rewrites every file: slower, never wrong.
        if std::fs::write(&temp, json).is_ok() {
            let _ = std::fs::rename(&temp, &path);
        }
    }
    Ok(synced)
}

/// Give `path` and everything under it that is not yet theirs to `uid:gid`; no link is followed.
pub(crate) fn give(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.uid() != uid || meta.gid() != gid {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            give(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

fn remove(path: &Path) -> Result<(), SyncError> {
    let is_dir = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
    if is_dir {
        std::fs::remove_dir_all(path).map_err(other("remove", path))
    } else {
        std::fs::remove_file(path).map_err(other("remove", path))
    }
}

/// Wait until the file system's clock (its timestamps have a coarse resolution, a few
/// milliseconds) has moved past now; returns the new time. Everything written before the call has
/// an earlier time than everything written after it.
pub fn tick(slot: &Path) -> std::io::Result<(i64, i64)> {
    let probe = slot.join("clock");
    let stamp = |probe: &Path| -> std::io::Result<(i64, i64)> {
        // A new file each time: whatever a step left at the name is never followed.
        match std::fs::remove_file(probe) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let meta = File::create_new(probe)?.metadata()?;
        Ok((meta.mtime(), meta.mtime_nsec()))
    };
    let start = stamp(&probe)?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        std::thread::sleep(std::time::Duration::from_millis(1));
        let now = stamp(&probe)?;
        if now > start || std::time::Instant::now() > deadline {
            // A probe left behind is a stray empty file in the slot's own directory.
            let _ = std::fs::remove_file(&probe);
            return Ok(now);
        }
    }
}

/// Record that `slot` holds the cache mount whose lock is `lock_path` (held by the caller);
/// returns whether another slot held it since this one last did (or that is unknown), in which
/// case what the mount holds was built from other files than the slot's and no file of the slot
/// may keep its old times.
pub fn take_mount(lock_path: &Path, slot: &Path) -> std::io::Result<bool> {
    let owner = lock_path.with_extension("owner");
    let me = slot.display().to_string();
    let foreign = std::fs::read_to_string(&owner).map_or(true, |last| last != me);
    if foreign {
        std::fs::write(&owner, me)?;
    }
    Ok(foreign)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_slot_sends_the_next_run_to_the_next_slot_and_is_reused_once_freed() {
        let root = tempfile::tempdir().expect("tempdir");
        let first = take_slot(root.path(), "build").expect("slot");
        let second = take_slot(root.path(), "build").expect("slot");
        assert_eq!(first.path, root.path().join("work/build/0"));
        assert_eq!(second.path, root.path().join("work/build/1"));
        drop(first);
        let again = take_slot(root.path(), "build").expect("slot");
        assert_eq!(again.path, root.path().join("work/build/0"));
    }

    #[test]
    fn lanes_without_a_scope_share_the_default_mounts() {
        let root = Path::new("/cache");
        assert_eq!(mounts_dir(root, None), Path::new("/cache/mounts/_default"));
        assert_eq!(
            mounts_dir(root, Some("rust")),
            Path::new("/cache/mounts/rust")
        );
    }

    fn input(path: &str) -> FileEntry {
        FileEntry {
            path: path.to_owned(),
            mode: mode::FILE,
            id: ContentId::GitBlob("ab".repeat(20)),
        }
    }

    fn tree(entries: &[(&str, OutputKind)]) -> OutputTree {
        OutputTree {
            version: lanes_cache::TREE_VERSION,
            entries: entries
                .iter()
                .map(|(path, kind)| lanes_cache::OutputEntry {
                    path: (*path).to_owned(),
                    kind: kind.clone(),
                })
                .collect(),
        }
    }

    fn paths(desired: &Desired) -> Vec<&str> {
        desired.entries().keys().map(String::as_str).collect()
    }

    #[test]
    fn applying_trees_lists_what_a_restore_onto_the_files_would_leave() {
        let mut desired = Desired::new(vec![input("data/x.txt"), input("keep.txt")]);
        assert_eq!(paths(&desired), ["data", "data/x.txt", "keep.txt"]);
        let link = OutputKind::Symlink {
            target: "/elsewhere".into(),
        };
        let file = OutputKind::File {
            digest: "cd".repeat(32),
            size: 1,
            executable: false,
        };
        // A directory replaced by a symlink: the deletion under it has nothing to delete.
        desired
            .apply(
                &tree(&[("data", link.clone()), ("data/x.txt", OutputKind::Deleted)]),
                0,
            )
            .expect("apply");
        assert_eq!(paths(&desired), ["data", "keep.txt"]);
        // A file under it makes it a directory again.
        desired
            .apply(&tree(&[("data/new.txt", file.clone())]), 1)
            .expect("apply");
        assert_eq!(desired.entries().get("data"), Some(&Want::Dir));
        assert_eq!(paths(&desired), ["data", "data/new.txt", "keep.txt"]);
        // A deleted directory takes what it held.
        desired
            .apply(&tree(&[("data", OutputKind::Deleted)]), 2)
            .expect("apply");
        assert_eq!(paths(&desired), ["keep.txt"]);
        let bad = desired.apply(&tree(&[("../out", file)]), 3);
        assert!(
            matches!(bad, Err(SyncError::Restore { step: 3, .. })),
            "{bad:?}"
        );
    }
}
