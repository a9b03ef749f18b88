//! The disk-full state: set when a write fails for want of space or free space falls below
//! [`LOW_SPACE`], cleared when space returns; meanwhile no new job is leased. Also the writes of
//! the forge's state whose failure has no caller to go to.

use super::Forge;
use crate::error::{ForgeError, ForgeResult};
use jiff::Timestamp;
use lanes_store::Store;
use std::sync::PoisonError;

/// Below this much free space in the data directory the forge counts its disk as full: a
/// SQLite commit or a log append may need that much, and failing halfway helps nobody.
const LOW_SPACE: u64 = 1 << 20;

impl<S: Store + 'static> Forge<S> {
    /// Since when the data directory's disk is full, and what showed it; `None` while there is
    /// room. Meanwhile the forge takes no new leases.
    pub fn disk_full(&self) -> Option<(Timestamp, String)> {
        self.disk_full
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A write of the forge's state whose failure has no caller to go to (the operation it
    /// follows is done): counted, and logged with `what` was not written (a full disk is said
    /// once, by [`Forge::full_disk`]).
    pub(crate) fn unwritten<T>(&self, result: ForgeResult<T>, what: impl FnOnce() -> String) {
        if let Err(e) = result {
            self.metrics.store_write_failed();
            if !self.full_disk(&e) {
                tracing::warn!("failed to write {}: {e}", what());
            }
        }
    }

    /// Notes a failure: a full disk puts the forge in the disk-full state, said once at WARN.
    /// True when it was a full disk, which the caller then need not log again.
    pub(crate) fn full_disk(&self, e: &ForgeError) -> bool {
        if !e.is_disk_full() {
            return false;
        }
        self.set_disk_full(e.to_string());
        true
    }

    fn set_disk_full(&self, why: String) {
        let mut full = self
            .disk_full
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if full.is_none() {
            tracing::warn!(
                "the disk of the data directory {} is full ({why}): no new jobs start until \
                 space returns",
                self.config.data_dir.display()
            );
            *full = Some((Timestamp::now(), why));
        }
    }

    /// Looks at the data directory's free space: below [`LOW_SPACE`] the disk is full; above
    /// it a full disk is over.
    pub(super) fn check_space(&self) {
        let free = match rustix::fs::statvfs(&self.config.data_dir) {
            Ok(stat) => stat.f_bavail.saturating_mul(stat.f_frsize),
            Err(e) => {
                tracing::debug!("statvfs of the data directory failed: {e}");
                return;
            }
        };
        if free < LOW_SPACE {
            self.set_disk_full(format!("{free} bytes free"));
            return;
        }
        let mut full = self
            .disk_full
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((since, _)) = full.take() {
            tracing::info!(
                "the data directory has room again ({free} bytes free; full since {since}): \
                 jobs start again"
            );
        }
    }
}
