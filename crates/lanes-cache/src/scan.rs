//! Listing what the store holds on disk, for garbage collection and statistics. Read-only except
//! for [`remove`]; what to remove is decided by the callers.

use crate::error::{CacheError, IoContext};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A regular file in one of the store's directories.
#[derive(Debug)]
pub(crate) struct StoredFile {
    /// The file name: a digest or a key in `blobs/` and `actions/`.
    pub(crate) name: String,
    pub(crate) path: PathBuf,
    pub(crate) size: u64,
    /// Last modification, which for blobs and actions is their last use.
    pub(crate) used: SystemTime,
}

/// The regular files directly in `dir`; none if it does not exist. A file that vanishes while
/// being listed is left out.
pub(crate) fn files_in(dir: &Path) -> Result<Vec<StoredFile>, CacheError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).at("list", dir),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.at("list", dir)?;
        let path = entry.path();
        let metadata = match entry.metadata() {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e).at("read the metadata of", &path),
        };
        if !metadata.is_file() {
            continue;
        }
        files.push(StoredFile {
            name: entry.file_name().to_string_lossy().into_owned(),
            used: metadata.modified().at("read the mtime of", &path)?,
            size: metadata.len(),
            path,
        });
    }
    Ok(files)
}

/// The regular files one level down in `dir`, which fans entries out by their first two hex
/// characters (`blobs/ab/ab12…`).
pub(crate) fn fanned_out(dir: &Path) -> Result<Vec<StoredFile>, CacheError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).at("list", dir),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.at("list", dir)?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            files.extend(files_in(&entry.path())?);
        }
    }
    Ok(files)
}

/// Remove a file; one that is already gone counts as removed.
pub(crate) fn remove(path: &Path) -> Result<(), CacheError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e).at("remove", path),
        _ => Ok(()),
    }
}
