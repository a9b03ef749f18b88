//! History: the latest fingerprint and outcome of each lane's steps, so `lanes explain` and every
//! miss can say what changed since. One file per step, `ROOT/v1/history/<BLAKE3 of "lane\0step">`
//! for `lanes run` (the working tree's history) and `<BLAKE3 of "repo\0lane\0step">` for a forge
//! agent's jobs of repository `repo` (so two repositories with a lane and step of the same name do
//! not compare with each other's runs), replaced atomically on each record. Garbage collection never removes history, nor the input file lists
//! it refers to.

use crate::error::{CacheError, IoContext};
use crate::store::LocalStore;
use lanes_core::{Digest, StepFingerprint};
use serde::{Deserialize, Serialize};
use std::io::ErrorKind;
use std::path::PathBuf;

/// The last recorded run of one step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The lane's name.
    pub lane: String,
    /// The step's name.
    pub step: String,
    /// The forge repository whose job ran it; `None` for `lanes run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// The step's key.
    pub key: Digest,
    /// The full fingerprint, to compare with the next one.
    pub fingerprint: StepFingerprint,
    /// How it ended: `passed`, `failed`, `timed-out`, `cancelled` or `cached`.
    pub status: String,
    /// When it was recorded, in milliseconds since the Unix epoch.
    pub recorded_at_ms: u64,
}

impl LocalStore {
    /// Record `entry` as the latest run of its lane and step, replacing the previous one.
    pub fn record_history(&self, entry: &HistoryEntry) -> Result<(), CacheError> {
        let json = serde_json::to_vec(entry).expect("a history entry always serializes");
        let path = self.history_path(entry.repo.as_deref(), &entry.lane, &entry.step);
        self.write_atomically_at(&path, &json)
    }

    /// The latest recorded run of `step` in `lane` (of the forge repository `repo`, or of
    /// `lanes run` for `None`); `None` if there is none or it does not parse.
    pub fn latest(
        &self,
        repo: Option<&str>,
        lane: &str,
        step: &str,
    ) -> Result<Option<HistoryEntry>, CacheError> {
        let path = self.history_path(repo, lane, step);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).at("read", &path),
        };
        Ok(serde_json::from_slice::<HistoryEntry>(&bytes)
            .ok()
            .filter(|entry| {
                entry.repo.as_deref() == repo && entry.lane == lane && entry.step == step
            }))
    }

    /// The input file lists every history entry refers to (garbage collection keeps them, so
    /// `lanes explain` can name changed files even after the results are gone).
    pub(crate) fn history_inputs(&self) -> Result<Vec<Digest>, CacheError> {
        let dir = self.root().join("history");
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).at("read", &dir),
        };
        let mut inputs = Vec::new();
        for entry in entries {
            let path = entry.at("read", &dir)?.path();
            if let Some(entry) = std::fs::read(&path)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<HistoryEntry>(&bytes).ok())
            {
                inputs.push(entry.fingerprint.inputs);
            }
        }
        Ok(inputs)
    }

    fn history_path(&self, repo: Option<&str>, lane: &str, step: &str) -> PathBuf {
        let mut hasher = blake3::Hasher::new();
        // Names hold no NUL, so "repo\0lane\0step" never equals a "lane\0step".
        if let Some(repo) = repo {
            hasher.update(repo.as_bytes());
            hasher.update(b"\0");
        }
        hasher.update(lane.as_bytes());
        hasher.update(b"\0");
        hasher.update(step.as_bytes());
        self.root()
            .join("history")
            .join(hasher.finalize().to_hex().as_str())
    }
}
