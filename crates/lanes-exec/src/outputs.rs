//! What a step changed in its lane directory, captured into the store and restored from it.
//!
//! Before a step runs, lanes records the metadata of every entry of the lane directory
//! ([`Snapshot`]); afterwards it records it again. An entry whose size, mtime, ctime, inode or
//! mode differs, or that is new, was written by the step; an entry that is gone was deleted. A
//! process cannot write a file without changing its ctime, so nothing the step wrote is missed.
//! The changes become an [`OutputTree`] whose files are blobs, and restoring that tree onto the
//! state the step started from yields the state it left.

use lanes_cache::{CacheError, LocalStore, OutputEntry, OutputKind, OutputTree, TREE_VERSION};
use lanes_core::Digest;
use std::collections::BTreeMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Metadata of every entry under a directory, by `/`-separated relative path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    entries: BTreeMap<String, Stat>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stat {
    kind: Kind,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
    mode: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    /// Sockets, fifos, devices: never captured.
    Other,
}

impl Stat {
    fn of(meta: &Metadata) -> Stat {
        let kind = if meta.file_type().is_symlink() {
            Kind::Symlink
        } else if meta.is_dir() {
            Kind::Dir
        } else if meta.is_file() {
            Kind::File
        } else {
            Kind::Other
        };
        Stat {
            kind,
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            ino: meta.ino(),
            mode: meta.mode(),
        }
    }
}

/// Why outputs could not be captured or restored.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// Reading or writing the lane directory failed.
    #[error("failed to {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A path in the lane directory is not UTF-8 and cannot be recorded.
    #[error("path is not valid UTF-8: {0}")]
    NotUtf8(String),
    /// The store failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// A path in an output tree that does not stay inside the lane directory.
    #[error("the output path `{0}` is not a plain relative path")]
    BadPath(String),
    /// A blob the tree needs is missing or corrupt (it has been removed from the store).
    #[error("the stored output {path} ({digest}) is missing or corrupt")]
    MissingBlob {
        /// The output path.
        path: String,
        /// The blob.
        digest: Digest,
    },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> OutputError {
    let path = path.display().to_string();
    move |source| OutputError::Io {
        action,
        path,
        source,
    }
}

impl Snapshot {
    /// Record every entry under `root`, not following symlinks. Top-level names in `skip` (cache
    /// mounts) are left out, with everything under them.
    pub fn take(root: &Path, skip: &[String]) -> Result<Snapshot, OutputError> {
        let mut snapshot = Snapshot::default();
        let mut stack = vec![(root.to_path_buf(), String::new())];
        while let Some((dir, prefix)) = stack.pop() {
            for entry in std::fs::read_dir(&dir).map_err(io("read the directory", &dir))? {
                let entry = entry.map_err(io("read the directory", &dir))?;
                let name = entry.file_name();
                let name = name
                    .to_str()
                    .ok_or_else(|| OutputError::NotUtf8(entry.path().display().to_string()))?;
                if prefix.is_empty() && skip.iter().any(|s| s == name) {
                    continue;
                }
                let path = if prefix.is_empty() {
                    name.to_owned()
                } else {
                    format!("{prefix}/{name}")
                };
                let meta = entry
                    .metadata()
                    .map_err(io("read the metadata of", &entry.path()))?;
                let stat = Stat::of(&meta);
                if stat.kind == Kind::Dir {
                    stack.push((entry.path(), path.clone()));
                }
                snapshot.entries.insert(path, stat);
            }
        }
        Ok(snapshot)
    }

    /// Number of entries recorded.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Which changed paths a step records: all of them, or those its `outputs` patterns select.
pub type OutputFilter<'a> = Option<&'a dyn Fn(&str) -> bool>;

/// Store what changed between `before` and `after` under `root` as an output tree; returns the
/// digest of the tree blob and the tree.
///
/// With a filter, only files, symlinks and deletions whose path it accepts are recorded;
/// directories are then recreated as the parents of what is restored.
pub fn capture(
    store: &LocalStore,
    root: &Path,
    before: &Snapshot,
    after: &Snapshot,
    filter: OutputFilter<'_>,
) -> Result<(Digest, OutputTree), OutputError> {
    let tree = changes(root, before, after, filter, &mut |path| {
        Ok(store.put_file(path)?)
    })?;
    let json = serde_json::to_vec(&tree).expect("an output tree always serializes");
    let digest = store.put_blob(&json)?;
    Ok((digest, tree))
}

/// The digest [`capture`] would return, without storing anything: what the next step's key
/// records of a step whose result is not recorded (`cache = false`).
pub fn digest_changes(
    root: &Path,
    before: &Snapshot,
    after: &Snapshot,
    filter: OutputFilter<'_>,
) -> Result<Digest, OutputError> {
    let tree = changes(root, before, after, filter, &mut |path| {
        let mut file = std::fs::File::open(path).map_err(io("read", path))?;
        let mut hasher = blake3::Hasher::new();
        let size = std::io::copy(&mut file, &mut hasher).map_err(io("read", path))?;
        Ok((hasher.finalize().to_hex().to_string(), size))
    })?;
    let json = serde_json::to_vec(&tree).expect("an output tree always serializes");
    Ok(blake3::hash(&json).to_hex().to_string())
}

/// Names a changed file's content: its digest and size.
type NameFile<'a> = &'a mut dyn FnMut(&Path) -> Result<(Digest, u64), OutputError>;

/// The output tree of what changed between `before` and `after`; `file` names a changed file's
/// content.
fn changes(
    root: &Path,
    before: &Snapshot,
    after: &Snapshot,
    filter: OutputFilter<'_>,
    file: NameFile<'_>,
) -> Result<OutputTree, OutputError> {
    let mut entries = Vec::new();
    let mut deleted_dir: Option<&str> = None;
    // Both maps are sorted; walk them together.
    let mut old = before.entries.iter().peekable();
    let mut new = after.entries.iter().peekable();
    loop {
        let (path, was, now) = match (old.peek(), new.peek()) {
            (None, None) => break,
            (Some((p, s)), None) => {
                let r = (p.as_str(), Some(**s), None);
                old.next();
                r
            }
            (None, Some((p, s))) => {
                let r = (p.as_str(), None, Some(**s));
                new.next();
                r
            }
            (Some((po, so)), Some((pn, sn))) => match po.cmp(pn) {
                std::cmp::Ordering::Less => {
                    let r = (po.as_str(), Some(**so), None);
                    old.next();
                    r
                }
                std::cmp::Ordering::Greater => {
                    let r = (pn.as_str(), None, Some(**sn));
                    new.next();
                    r
                }
                std::cmp::Ordering::Equal => {
                    let r = (po.as_str(), Some(**so), Some(**sn));
                    old.next();
                    new.next();
                    r
                }
            },
        };
        let accepted = filter.is_none_or(|f| f(path));
        match now {
            None => {
                // Inside a directory whose deletion is recorded: that entry removes it all.
                if deleted_dir.is_some_and(|d| is_under(path, d)) {
                    continue;
                }
                if accepted {
                    // Only a recorded deletion stands for what was under it: when the filter
                    // selects the files of a directory but not the directory, each of them is
                    // recorded, or a restore would bring them back.
                    if was.is_some_and(|w| w.kind == Kind::Dir) {
                        deleted_dir = Some(path);
                    }
                    entries.push(OutputEntry {
                        path: path.to_owned(),
                        kind: OutputKind::Deleted,
                    });
                }
            }
            Some(now) => {
                let changed = match was {
                    None => true,
                    // A directory's own metadata changes whenever an entry is added or removed;
                    // those entries are recorded themselves.
                    Some(was) if was.kind == Kind::Dir && now.kind == Kind::Dir => false,
                    Some(was) => was != now,
                };
                if !changed || !accepted {
                    continue;
                }
                let full = root.join(path);
                let kind = match now.kind {
                    Kind::Dir if filter.is_some() => continue,
                    Kind::Dir => OutputKind::Dir,
                    Kind::File => {
                        let (digest, size) = file(&full)?;
                        OutputKind::File {
                            digest,
                            size,
                            executable: now.mode & 0o111 != 0,
                        }
                    }
                    Kind::Symlink => {
                        let target =
                            std::fs::read_link(&full).map_err(io("read the link", &full))?;
                        let target = target.to_str().ok_or_else(|| {
                            OutputError::NotUtf8(format!(
                                "{} -> {}",
                                full.display(),
                                target.display()
                            ))
                        })?;
                        OutputKind::Symlink {
                            target: target.to_owned(),
                        }
                    }
                    Kind::Other => continue,
                };
                entries.push(OutputEntry {
                    path: path.to_owned(),
                    kind,
                });
            }
        }
    }
    Ok(OutputTree {
        version: TREE_VERSION,
        entries,
    })
}

/// Whether every parent of the tree path `path` is a real directory under `root` (not a
/// symlink). With `make`, parents that are missing, symlinks or files become directories, and
/// the answer is yes. A path that could leave `root` (absolute, `..`, empty parts) is an error.
fn parents_inside(root: &Path, path: &str, make: bool) -> Result<bool, OutputError> {
    let parts: Vec<&str> = path.split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Err(OutputError::BadPath(path.to_owned()));
    }
    let mut dir = root.to_path_buf();
    for part in &parts[..parts.len() - 1] {
        dir.push(part);
        match std::fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => continue,
            Ok(_) if !make => return Ok(false),
            Ok(_) => std::fs::remove_file(&dir).map_err(io("remove", &dir))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !make => return Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("read the metadata of", &dir)(e)),
        }
        // Not create_dir_all: it would follow a symlink made meanwhile; the parent is real.
        std::fs::create_dir(&dir).map_err(io("create", &dir))?;
    }
    Ok(true)
}

fn is_under(path: &str, dir: &str) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/'
}

/// Read the output tree stored as `digest`; `None` when it is missing, corrupt or of another
/// version.
pub fn load_tree(store: &LocalStore, digest: &str) -> Result<Option<OutputTree>, CacheError> {
    let Some(bytes) = store.get_blob(digest)? else {
        return Ok(None);
    };
    Ok(serde_json::from_slice::<OutputTree>(&bytes)
        .ok()
        .filter(|t| t.version == TREE_VERSION))
}

/// Apply `tree` to the directory `root`, which must be in the state the step started from.
/// Every file is verified against its digest while it is written.
///
/// Nothing outside `root` is touched: no symlink is followed on the way to an entry (a step may
/// have left one, or the lane's files hold one). A symlink, or a file, where an entry needs a
/// parent directory is replaced by a directory; a deletion under one has nothing inside the lane
/// to delete and does nothing. The step's snapshot never descended into a symlink, so no recorded
/// entry lies under one that the step saw.
pub fn restore(store: &LocalStore, root: &Path, tree: &OutputTree) -> Result<(), OutputError> {
    for entry in &tree.entries {
        let target = root.join(&entry.path);
        let deleting = entry.kind == OutputKind::Deleted;
        if !parents_inside(root, &entry.path, !deleting)? {
            continue;
        }
        // An error (not found) means there is nothing to clear.
        if let Ok(meta) = std::fs::symlink_metadata(&target) {
            let keep = meta.is_dir() && entry.kind == OutputKind::Dir;
            if !keep {
                if meta.is_dir() {
                    std::fs::remove_dir_all(&target).map_err(io("remove", &target))?;
                } else {
                    std::fs::remove_file(&target).map_err(io("remove", &target))?;
                }
            }
        }
        if deleting {
            continue;
        }
        match &entry.kind {
            OutputKind::Deleted => {}
            OutputKind::Dir => {
                if !std::fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
                    std::fs::create_dir(&target).map_err(io("create", &target))?;
                }
            }
            OutputKind::Symlink { target: link } => {
                std::os::unix::fs::symlink(link, &target)
                    .map_err(io("create the link", &target))?;
            }
            OutputKind::File {
                digest, executable, ..
            } => {
                if !store.copy_blob_to(digest, &target, *executable)? {
                    return Err(OutputError::MissingBlob {
                        path: entry.path.clone(),
                        digest: digest.clone(),
                    });
                }
            }
        }
    }
    Ok(())
}
