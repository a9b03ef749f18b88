//! Output trees: what a step created, changed or deleted in its lane directory.
//!
//! An action result names its outputs by the digest of an [`OutputTree`] blob (JSON). The tree
//! lists paths relative to the lane directory; file contents are blobs of their own, so restoring
//! a tree is exact and two steps that produce the same file store it once.

use lanes_core::Digest;
use serde::{Deserialize, Serialize};

/// Version of the output tree format. Bump on any change. 2: a deleted directory whose path
/// `outputs` does not select lists the selected deletions under it (trees of version 1 left them
/// out, and a restore brought the files back). 3: restores never follow a symlink out of the lane
/// directory; trees recorded by code that did are not trusted.
pub const TREE_VERSION: u32 = 3;

/// The changes one step made to its lane directory, sorted by path.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputTree {
    /// [`TREE_VERSION`] when it was written.
    pub version: u32,
    /// Entries in path order; a directory comes before the entries inside it.
    pub entries: Vec<OutputEntry>,
}

/// One created, changed or deleted path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputEntry {
    /// Path relative to the lane directory, `/`-separated.
    pub path: String,
    /// What is at the path after the step.
    #[serde(flatten)]
    pub kind: OutputKind,
}

/// What is at an output path after the step ran.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum OutputKind {
    /// A regular file whose bytes are the blob `digest`.
    File {
        /// BLAKE3 of the content: the blob holding it.
        digest: Digest,
        /// Length in bytes.
        size: u64,
        /// Whether any execute bit is set.
        executable: bool,
    },
    /// A symbolic link.
    Symlink {
        /// Where it points, as written.
        target: String,
    },
    /// A directory (created by the step; its content is listed separately).
    Dir,
    /// The step removed what was here.
    Deleted,
}

impl OutputTree {
    /// The blobs this tree refers to.
    pub fn blobs(&self) -> impl Iterator<Item = &Digest> {
        self.entries.iter().filter_map(|e| match &e.kind {
            OutputKind::File { digest, .. } => Some(digest),
            _ => None,
        })
    }

    /// Total bytes of the files in the tree.
    pub fn bytes(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| match e.kind {
                OutputKind::File { size, .. } => size,
                _ => 0,
            })
            .sum()
    }
}
