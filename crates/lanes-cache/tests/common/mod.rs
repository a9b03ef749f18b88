//! Helpers shared by the integration tests: fingerprints, recorded actions, entry paths, mtimes.

#![allow(
    dead_code,
    reason = "each test binary uses its own subset of the helpers"
)]

use lanes_cache::RESULT_VERSION;
use lanes_cache::{ActionResult, LocalStore, OutputEntry, OutputKind, OutputTree, TREE_VERSION};
use lanes_core::{Digest, KEY_VERSION, StepFingerprint};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub(crate) fn fingerprint(command: &str) -> StepFingerprint {
    StepFingerprint {
        version: KEY_VERSION,
        lane: "test".into(),
        step: "build".into(),
        inputs: "0".repeat(64),
        shell: "bash -eo pipefail -c".into(),
        command: command.into(),
        env: BTreeMap::new(),
        pass_env: BTreeMap::new(),
        pins: BTreeMap::new(),
        network: false,
        cache_mounts: BTreeSet::new(),
        outputs: None,
        platform: "linux-x86_64".into(),
        previous: None,
        previous_outputs: None,
    }
}

/// An action recorded with a log, an output tree and output files, and every blob it refers to.
pub(crate) struct Recorded {
    pub(crate) result: ActionResult,
    pub(crate) blobs: Vec<Digest>,
}

/// Record a step running `command` that produced `files` (contents), with a log of its own.
pub(crate) fn record(store: &LocalStore, command: &str, files: &[&[u8]]) -> Recorded {
    record_with(store, fingerprint(command), files)
}

pub(crate) fn record_with(
    store: &LocalStore,
    fingerprint: StepFingerprint,
    files: &[&[u8]],
) -> Recorded {
    let mut blobs = Vec::new();
    let mut entries = Vec::new();
    for (i, bytes) in files.iter().enumerate() {
        let digest = store.put_blob(bytes).expect("put file");
        entries.push(OutputEntry {
            path: format!("out/{i}"),
            kind: OutputKind::File {
                digest: digest.clone(),
                size: bytes.len() as u64,
                executable: false,
            },
        });
        blobs.push(digest);
    }
    let tree = OutputTree {
        version: TREE_VERSION,
        entries,
    };
    let outputs = store
        .put_blob(&serde_json::to_vec(&tree).expect("tree"))
        .expect("put tree");
    let log = store
        .put_blob(format!("12:00:00 {}\n", fingerprint.command).as_bytes())
        .expect("put log");
    blobs.push(outputs.clone());
    blobs.push(log.clone());
    let result = ActionResult {
        version: RESULT_VERSION,
        key: fingerprint.key(),
        fingerprint,
        exit_code: 0,
        duration_ms: 1234,
        log,
        outputs,
        sandboxed: true,
    };
    store.put_action(&result).expect("put action");
    Recorded { result, blobs }
}

pub(crate) fn blob_file(store: &LocalStore, digest: &str) -> PathBuf {
    store.root().join("blobs").join(&digest[..2]).join(digest)
}

pub(crate) fn action_file(store: &LocalStore, key: &str) -> PathBuf {
    store.root().join("actions").join(&key[..2]).join(key)
}

impl Recorded {
    /// The action file and every blob file.
    pub(crate) fn files(&self, store: &LocalStore) -> Vec<PathBuf> {
        let mut files = vec![action_file(store, &self.result.key)];
        files.extend(self.blobs.iter().map(|d| blob_file(store, d)));
        files
    }

    /// Bytes on disk: the action and its blobs.
    pub(crate) fn bytes(&self, store: &LocalStore) -> u64 {
        self.files(store)
            .iter()
            .map(|f| std::fs::metadata(f).expect("stat").len())
            .sum()
    }

    /// Whether the action and all its blobs are on disk.
    pub(crate) fn present(&self, store: &LocalStore) -> bool {
        self.files(store).iter().all(|f| f.exists())
    }

    /// Whether neither the action nor any of its blobs is on disk.
    pub(crate) fn absent(&self, store: &LocalStore) -> bool {
        self.files(store).iter().all(|f| !f.exists())
    }

    /// Mark the action and its blobs as last used at `when`.
    pub(crate) fn set_used(&self, store: &LocalStore, when: SystemTime) {
        for file in self.files(store) {
            set_used(&file, when);
        }
    }
}

/// Set a file's mtime, which the store reads as its last use.
pub(crate) fn set_used(path: &Path, when: SystemTime) {
    std::fs::File::options()
        .append(true)
        .open(path)
        .expect("open")
        .set_modified(when)
        .expect("set mtime");
}

pub(crate) fn hours_ago(hours: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(hours * 3600)
}
