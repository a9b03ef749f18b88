//! What this machine puts into a lane's step keys and its steps' environment.
//!
//! `lanes run`, `lanes fingerprint` and the forge's agents all take the host's part from here,
//! so a laptop and an agent on the same machine compute the same keys for the same commit and
//! share one step cache. The keys themselves are made by `lanes_core::fingerprint`; this module
//! only reads the platform and the invoking environment for it.

use lanes_core::fingerprint::{Host, lane_fingerprints};
use lanes_core::{Catalog, Digest, FileEntry, Lane, StepFingerprint, fileset};
use std::collections::BTreeMap;

/// `os-arch` of this machine, as it goes into keys.
pub fn platform() -> String {
    format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH)
}

/// The fingerprints of `lane`'s steps for the input digest `digest`, on this machine (its
/// platform, and the `pass-env` variables of this process's environment).
pub fn step_fingerprints(catalog: &Catalog, lane: &Lane, digest: &Digest) -> Vec<StepFingerprint> {
    let platform = platform();
    let env = |name: &str| std::env::var(name).ok();
    lane_fingerprints(
        catalog,
        lane,
        digest,
        Host {
            platform: &platform,
            env: &env,
        },
    )
}

/// A lane's keys, as `lanes run` computes them on this machine.
#[derive(Debug)]
pub struct LaneKeys<'f> {
    /// The lane's input files, sorted by path.
    pub inputs: Vec<&'f FileEntry>,
    /// Their digest.
    pub digest: Digest,
    /// Each step's fingerprint, in order.
    pub fingerprints: Vec<StepFingerprint>,
}

/// The keys of `lane` over `files` (every file of the commit or working tree, sorted by path).
pub fn lane_keys<'f>(catalog: &Catalog, lane: &Lane, files: &'f [FileEntry]) -> LaneKeys<'f> {
    let inputs = fileset::select(lane.inputs.as_deref(), files);
    let digest = fileset::digest(inputs.iter().copied());
    let fingerprints = step_fingerprints(catalog, lane, &digest);
    LaneKeys {
        inputs,
        digest,
        fingerprints,
    }
}

/// The environment every step starts from: `PATH` from this process, `LANG=C.UTF-8`,
/// `CI=true`, `LANES_COMMIT` and `LANES_RUN_ID`. Nothing else is inherited.
pub fn base_env(commit: &str, run_id: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert(
        "PATH".to_owned(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".to_owned()),
    );
    env.insert("LANG".to_owned(), "C.UTF-8".to_owned());
    env.insert("CI".to_owned(), "true".to_owned());
    env.insert("LANES_COMMIT".to_owned(), commit.to_owned());
    env.insert("LANES_RUN_ID".to_owned(), run_id.to_owned());
    env
}
