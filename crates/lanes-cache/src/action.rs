//! Action results: what a step produced, stored under its key.

use lanes_core::{Digest, StepFingerprint};
use serde::{Deserialize, Serialize};

/// Version of the stored action result format. Bump on any change, and keep reading the previous
/// version or treat it as a miss.
pub const RESULT_VERSION: u32 = 1;

/// The recorded outcome of a step that passed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionResult {
    /// [`RESULT_VERSION`] when it was written.
    pub version: u32,
    /// The step key this result is stored under.
    pub key: Digest,
    /// The full fingerprint, so a later miss can be explained as a difference.
    pub fingerprint: StepFingerprint,
    /// Exit code of the step (0: only passing steps are recorded).
    pub exit_code: i32,
    /// How long the step ran, in milliseconds: the time a hit saves.
    pub duration_ms: u64,
    /// Digest of the step's log blob.
    pub log: Digest,
    /// Digest of the blob that lists the step's outputs.
    pub outputs: Digest,
    /// Whether the step ran in the sandbox. A step without it can read files outside its inputs,
    /// which its key does not cover, so a sandboxed run never reuses such a result. Results
    /// written before this field existed read as unsandboxed.
    #[serde(default)]
    pub sandboxed: bool,
}

/// The answer to "is there a result for this key?".
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A verified result whose log and outputs blobs are all present.
    Hit(ActionResult),
    /// Nothing recorded.
    Miss,
    /// Something was recorded but could not be trusted; it has been removed. A miss, with why.
    Corrupt(String),
}
