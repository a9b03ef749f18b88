//! Live runs and the gc lock: what garbage collection must not pull out from under a run.
//!
//! A run registers itself as `ROOT/v1/runs/<run id>` and holds an exclusive lock on that file
//! until it ends; a file nobody holds locked belongs to a run that died. While a run looks up and
//! restores an entry, or writes blobs and records an action, it holds a [`UseGuard`]: a shared
//! lock on `ROOT/v1/gc.lock`, which garbage collection takes exclusively. This module only takes
//! and releases locks; deciding what a live run protects is [`crate::gc`]'s job.

use crate::error::{CacheError, IoContext};
use crate::store::LocalStore;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest run id accepted, well below any filesystem's name limit.
const MAX_RUN_ID: usize = 128;

/// A run that is under way, registered in the store. Dropping it ends the registration.
#[derive(Debug)]
#[must_use = "the run is registered only while this is held"]
pub struct RunRegistration {
    /// Holds the exclusive lock that tells garbage collection the run is alive.
    file: File,
    path: PathBuf,
    run_id: String,
    started_at: SystemTime,
}

impl RunRegistration {
    /// The id the run registered under.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// When the run registered: entries used since then are kept by garbage collection.
    pub fn started_at(&self) -> SystemTime {
        self.started_at
    }
}

impl Drop for RunRegistration {
    fn drop(&mut self) {
        // Removed while still locked, so garbage collection never finds it unlocked and takes the
        // run for one that died. If removal fails, the next collection removes the stale file.
        let _ = std::fs::remove_file(&self.path);
        // Closing the file below releases the lock anyway.
        let _ = self.file.unlock();
    }
}

/// A shared hold on the store that garbage collection waits for. Hold it across a lookup and
/// the restore of what it found, or across writing blobs and recording the action that names
/// them. Dropping it releases the hold.
#[derive(Debug)]
#[must_use = "the store is guarded only while this is held"]
pub struct UseGuard {
    /// Closing the file releases the shared lock.
    _file: File,
}

impl LocalStore {
    /// Register a run as live until the returned registration is dropped. `run_id` must be 1 to
    /// 128 ASCII letters, digits and `-`, and not registered already.
    pub fn register_run(&self, run_id: &str) -> Result<RunRegistration, CacheError> {
        check_run_id(run_id)?;
        let runs = self.root().join("runs");
        std::fs::create_dir_all(&runs).at("create", &runs)?;
        let tmp = self.root().join("tmp");
        let mut temp =
            tempfile::NamedTempFile::new_in(&tmp).at("create a temporary file in", &tmp)?;
        // Locked before it gets its name, so garbage collection never sees it unlocked.
        temp.as_file().lock().at("lock", temp.path())?;
        let started_at = SystemTime::now();
        writeln!(temp.as_file_mut(), "{}", unix_ms(started_at)).at("write", temp.path())?;
        let path = runs.join(run_id);
        // A rename keeps the inode, and with it the lock.
        let file = temp
            .persist_noclobber(&path)
            .map_err(|e| e.error)
            .at("register the run as", &path)?;
        Ok(RunRegistration {
            file,
            path,
            run_id: run_id.to_owned(),
            started_at,
        })
    }

    /// Hold the store against garbage collection, waiting for one in progress to finish.
    pub fn guard(&self) -> Result<UseGuard, CacheError> {
        let (file, path) = self.open_gc_lock()?;
        file.lock_shared().at("lock", &path)?;
        Ok(UseGuard { _file: file })
    }

    /// The gc lock file, created if needed, unlocked.
    pub(crate) fn open_gc_lock(&self) -> Result<(File, PathBuf), CacheError> {
        let path = self.root().join("gc.lock");
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .at("open", &path)?;
        Ok((file, path))
    }
}

/// When a run started, read from its registration `file` (at `path`), which the live run holds
/// locked. `None` when the file does not say.
pub(crate) fn read_start(file: &File, path: &Path) -> Result<Option<SystemTime>, CacheError> {
    let mut text = String::new();
    match (&*file).read_to_string(&mut text) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => return Ok(None),
        Err(e) => return Err(e).at("read", path),
    }
    Ok(text
        .trim()
        .parse::<u64>()
        .ok()
        .map(|ms| UNIX_EPOCH + Duration::from_millis(ms)))
}

/// Milliseconds since the Unix epoch (0 for times before it).
pub(crate) fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn check_run_id(run_id: &str) -> Result<(), CacheError> {
    let valid = !run_id.is_empty()
        && run_id.len() <= MAX_RUN_ID
        && run_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(CacheError::InvalidRunId(run_id.to_owned()))
    }
}
