//! Garbage collection: keep the store within an age and a size, least recently used out first.
//!
//! An entry's mtime is its last use (lookups and repeated writes touch it). Collection holds the
//! gc lock exclusively, so no lookup or write is in flight while it runs, and it never removes
//! an entry used since the oldest live run started: that run may still need it. Action results
//! are what gets evicted; a blob stays exactly as long as a remaining action refers to it (its
//! log, its output tree, the files in that tree, its input listing) or a live run may use it.
//! History (`history/`) and run statistics (`events.jsonl`) are never collected.

use crate::action::{ActionResult, RESULT_VERSION};
use crate::error::{CacheError, IoContext};
use crate::lease::read_start;
use crate::scan::{StoredFile, fanned_out, files_in, remove};
use crate::store::LocalStore;
use crate::tree::OutputTree;
use lanes_core::Digest;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::TryLockError;
use std::io::ErrorKind;
use std::time::{Duration, SystemTime};

/// Temporary files older than this belong to writers that died.
const TMP_MAX_AGE: Duration = Duration::from_secs(60 * 60);

/// A new file's mtime comes from the kernel's coarse clock, which can lag the clock a run's start
/// was read from, and the start is stored in whole milliseconds: entries used this long before a
/// live run started are protected too.
const CLOCK_SLACK: Duration = Duration::from_secs(1);

/// What a collection keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcPolicy {
    /// Evict least recently used actions until actions and the blobs they keep take at most this
    /// many bytes.
    pub max_size: Option<u64>,
    /// Evict actions not used for longer than this.
    pub max_age: Option<Duration>,
    /// The time ages are measured from.
    pub now: SystemTime,
}

/// What a collection did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    /// Action results removed: evicted, or unreadable.
    pub actions_removed: u64,
    /// Blobs removed because no remaining action refers to them.
    pub blobs_removed: u64,
    /// Bytes of the actions, blobs and abandoned temporary files removed.
    pub bytes_freed: u64,
    /// Action results left.
    pub actions_kept: u64,
    /// Blobs left.
    pub blobs_kept: u64,
    /// Bytes of the actions and blobs left.
    pub bytes_kept: u64,
    /// Actions and blobs kept only because a live run may use them (used since it started).
    pub protected: u64,
    /// Runs registered and alive.
    pub live_runs: u64,
}

/// A readable action result and the blobs it keeps.
struct Action {
    file: StoredFile,
    refs: Vec<Digest>,
    kept: bool,
}

/// A blob and how many remaining actions refer to it.
struct Blob {
    file: StoredFile,
    refs: u32,
}

impl LocalStore {
    /// Collect garbage under `policy`, waiting for lookups and writes in flight to finish and
    /// holding new ones off until done.
    pub fn gc(&self, policy: GcPolicy) -> Result<GcReport, CacheError> {
        let (lock, lock_path) = self.open_gc_lock()?;
        lock.lock().at("lock", &lock_path)?;
        let mut report = GcReport::default();

        let starts = self.live_runs()?;
        report.live_runs = starts.len() as u64;
        let cutoff = starts
            .into_iter()
            .map(|start| start.checked_sub(CLOCK_SLACK).unwrap_or(start))
            .fold(policy.now, SystemTime::min);
        let protected = |file: &StoredFile| file.used >= cutoff;

        for file in files_in(&self.root().join("tmp"))? {
            if age(policy.now, file.used) > TMP_MAX_AGE {
                remove(&file.path)?;
                report.bytes_freed += file.size;
            }
        }

        let mut blobs: HashMap<String, Blob> = fanned_out(&self.root().join("blobs"))?
            .into_iter()
            .map(|file| (file.name.clone(), Blob { file, refs: 0 }))
            .collect();
        let mut actions = Vec::new();
        for file in fanned_out(&self.root().join("actions"))? {
            let text = match std::fs::read(&file.path) {
                Ok(text) => text,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e).at("read", &file.path),
            };
            match references(&file.name, &text, &blobs) {
                Some(refs) => actions.push(Action {
                    file,
                    refs,
                    kept: true,
                }),
                None => {
                    remove(&file.path)?;
                    report.actions_removed += 1;
                    report.bytes_freed += file.size;
                }
            }
        }
        for digest in actions.iter().flat_map(|a| &a.refs) {
            if let Some(blob) = blobs.get_mut(digest) {
                blob.refs += 1;
            }
        }
        // The file lists history refers to stay: they are what `lanes explain` compares with.
        for digest in self.history_inputs()? {
            if let Some(blob) = blobs.get_mut(&digest) {
                blob.refs += 1;
            }
        }

        // Bytes that stay if nothing more is evicted.
        let mut total: u64 = actions.iter().map(|a| a.file.size).sum::<u64>()
            + blobs
                .values()
                .filter(|b| b.refs > 0 || protected(&b.file))
                .map(|b| b.file.size)
                .sum::<u64>();
        let mut saved = vec![false; actions.len()];
        if let Some(max_age) = policy.max_age {
            for (i, action) in actions.iter_mut().enumerate() {
                if age(policy.now, action.file.used) > max_age {
                    if protected(&action.file) {
                        saved[i] = true;
                    } else {
                        total -= evict(action, &mut blobs, cutoff);
                    }
                }
            }
        }
        if let Some(max_size) = policy.max_size {
            let mut order: Vec<usize> = (0..actions.len()).filter(|&i| actions[i].kept).collect();
            order.sort_by_key(|&i| actions[i].file.used);
            for i in order {
                if total <= max_size {
                    break;
                }
                if protected(&actions[i].file) {
                    saved[i] = true;
                } else {
                    total -= evict(&mut actions[i], &mut blobs, cutoff);
                }
            }
        }
        report.protected += saved.iter().filter(|&&s| s).count() as u64;

        // Actions go before the blobs they name, so an interrupted collection leaves no action
        // pointing at a missing blob.
        for action in &actions {
            if action.kept {
                report.actions_kept += 1;
                report.bytes_kept += action.file.size;
            } else {
                remove(&action.file.path)?;
                report.actions_removed += 1;
                report.bytes_freed += action.file.size;
            }
        }
        for blob in blobs.values() {
            if blob.refs > 0 || protected(&blob.file) {
                if blob.refs == 0 {
                    report.protected += 1;
                }
                report.blobs_kept += 1;
                report.bytes_kept += blob.file.size;
            } else {
                remove(&blob.file.path)?;
                report.blobs_removed += 1;
                report.bytes_freed += blob.file.size;
            }
        }
        Ok(report)
    }

    /// When each live run started; registrations whose run died are removed.
    fn live_runs(&self) -> Result<Vec<SystemTime>, CacheError> {
        let mut starts = Vec::new();
        for run in files_in(&self.root().join("runs"))? {
            let file = match std::fs::File::open(&run.path) {
                Ok(file) => file,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e).at("open", &run.path),
            };
            match file.try_lock() {
                Ok(()) => remove(&run.path)?,
                // A start it does not say protects everything rather than nothing.
                Err(TryLockError::WouldBlock) => {
                    starts.push(read_start(&file, &run.path)?.unwrap_or(SystemTime::UNIX_EPOCH));
                }
                Err(TryLockError::Error(e)) => return Err(e).at("lock", &run.path),
            }
        }
        Ok(starts)
    }
}

/// The blobs the action result `text`, stored under `key`, keeps; `None` when it cannot be used:
/// it does not verify as `get_action` would, or its log or output tree is missing or corrupt.
fn references(key: &str, text: &[u8], blobs: &HashMap<String, Blob>) -> Option<Vec<Digest>> {
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let split = body.iter().rposition(|&b| b == b'\n')?;
    let (json, checksum) = (&body[..split], &body[split + 1..]);
    if blake3::hash(json).to_hex().as_bytes() != checksum {
        return None;
    }
    let result: ActionResult = serde_json::from_slice(json).ok()?;
    if result.version != RESULT_VERSION || result.key != key || result.fingerprint.key() != key {
        return None;
    }
    blobs.get(&result.log)?;
    let tree_bytes = std::fs::read(&blobs.get(&result.outputs)?.file.path).ok()?;
    if blake3::hash(&tree_bytes).to_hex().as_str() != result.outputs {
        return None;
    }
    let tree: OutputTree = serde_json::from_slice(&tree_bytes).ok()?;
    let mut refs: Vec<Digest> = tree.blobs().cloned().collect();
    refs.push(result.log);
    refs.push(result.outputs);
    // The input listing is stored only by some runs; when it is, it goes with the action.
    if blobs.contains_key(&result.fingerprint.inputs) {
        refs.push(result.fingerprint.inputs);
    }
    refs.sort_unstable();
    refs.dedup();
    Some(refs)
}

/// Mark `action` evicted. Returns the bytes that go with it: its own, and those of the blobs only
/// it kept that no live run may use (used before `cutoff`).
fn evict(action: &mut Action, blobs: &mut HashMap<String, Blob>, cutoff: SystemTime) -> u64 {
    action.kept = false;
    let mut freed = action.file.size;
    for digest in &action.refs {
        if let Some(blob) = blobs.get_mut(digest) {
            blob.refs -= 1;
            if blob.refs == 0 && blob.file.used < cutoff {
                freed += blob.file.size;
            }
        }
    }
    freed
}

/// How long before `now` something was used; zero if after.
fn age(now: SystemTime, used: SystemTime) -> Duration {
    now.duration_since(used).unwrap_or_default()
}
