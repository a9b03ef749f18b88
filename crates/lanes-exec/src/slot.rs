//! Where a lane runs under the lanes cache directory: its slot (`work/<lane>/<n>/`) and its
//! cache mounts (`mounts/<scope or _default>/`), the same for `lanes run` and the forge's agents
//! so that a laptop and an agent on one machine share them.
//!
//! A slot is the same path run after run (tools that remember absolute paths, such as cargo,
//! keep their incremental state); a concurrent run of the same lane takes the next free one.
//! This module only picks and locks directories; what goes into them is [`crate::lane`]'s job.

use std::fs::File;
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
}
