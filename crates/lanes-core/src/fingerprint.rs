//! Step fingerprints and keys: the content address of a step.
//!
//! A fingerprint lists everything that can change a step's result; the key is BLAKE3 over its
//! canonical encoding. Anything that reaches the step's process and is not in here is a false
//! cache hit waiting to happen, so docs/cache-key.md lists every field, and changing the fields
//! or their encoding means bumping [`KEY_VERSION`].

use crate::catalog::{Catalog, Lane};
use crate::fileset::Digest;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Version of the fingerprint schema and encoding. Bump on any change to either.
pub const KEY_VERSION: u32 = 3;

/// Everything that determines a step's result. Field order is the encoding order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepFingerprint {
    /// [`KEY_VERSION`] when the fingerprint was made.
    pub version: u32,
    /// The lane's name (steps see it as `LANES_LANE`).
    pub lane: String,
    /// The step's name (steps see it as `LANES_STEP`).
    pub step: String,
    /// Digest of the lane's input fileset (see [`crate::fileset::digest`]).
    pub inputs: Digest,
    /// The shell command line the script runs under.
    pub shell: String,
    /// The script.
    pub command: String,
    /// Declared environment variables.
    pub env: BTreeMap<String, String>,
    /// Passed-through variables and a digest of their values in the invoking environment
    /// (`None`: unset). Values are often secrets: only [`pass_env_digest`] of them is keyed and
    /// stored, never the value itself.
    pub pass_env: BTreeMap<String, Option<String>>,
    /// Pins the lane uses, with their expected (not observed) values.
    pub pins: BTreeMap<String, String>,
    /// Whether the step may reach the network.
    pub network: bool,
    /// Cache mounts the step can write to (their contents are not keyed, their names are).
    pub cache_mounts: BTreeSet<String>,
    /// The step's `outputs` patterns in order, or `None` for "every created or changed file".
    pub outputs: Option<Vec<String>>,
    /// Operating system and architecture, such as `linux-x86_64`.
    pub platform: String,
    /// The key of the previous step of the lane, as that step was keyed in the run.
    pub previous: Option<Digest>,
    /// The digest of the output tree the previous step left in the lane directory: the one
    /// recorded under its key when it hit, the one captured when it ran. Its key alone does not
    /// fix that state when it ran (a `cache = false` step may write something else each time).
    /// `None` for the first step, and in a fingerprint made before the previous step's outputs
    /// are known.
    pub previous_outputs: Option<Digest>,
}

impl StepFingerprint {
    /// The canonical encoding: compact JSON of the struct in field order, maps sorted by key.
    pub fn canonical(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a fingerprint of strings and maps always serializes")
    }

    /// The step's key: BLAKE3 of the canonical encoding, 64 hex characters.
    pub fn key(&self) -> Digest {
        blake3::hash(&self.canonical()).to_hex().to_string()
    }

    /// This step chained onto the step before it as that step went: its fingerprint (chained
    /// the same way) and the digest of the output tree it left, `None` while that is unknown.
    pub fn after(&self, previous: &StepFingerprint, outputs: Option<Digest>) -> StepFingerprint {
        StepFingerprint {
            previous: Some(previous.key()),
            previous_outputs: outputs,
            ..self.clone()
        }
    }
}

/// `fingerprints` (a lane's, in order, from [`lane_fingerprints`]) chained as a run would chain
/// them while each step hits: `recorded(key)` is the output tree recorded under a key, `None`
/// when nothing is. The steps after the first one without a record keep `previous_outputs`
/// unknown (`None`): what they start from is only known once that step has run.
pub fn chain_recorded(
    fingerprints: &[StepFingerprint],
    mut recorded: impl FnMut(&str) -> Option<Digest>,
) -> Vec<StepFingerprint> {
    let mut chained: Vec<StepFingerprint> = Vec::with_capacity(fingerprints.len());
    let mut known = true;
    for fingerprint in fingerprints {
        let next = match chained.last() {
            None => fingerprint.clone(),
            Some(previous) => {
                let outputs = if known {
                    recorded(&previous.key())
                } else {
                    None
                };
                known = outputs.is_some();
                fingerprint.after(previous, outputs)
            }
        };
        chained.push(next);
    }
    chained
}

/// What a fingerprint records of a passed-through variable's value: BLAKE3 of
/// `lanes-pass-env-v1 NUL name NUL value`, as hex. Equal values give equal keys; the value itself
/// never reaches the cache, a report or `lanes explain`.
pub fn pass_env_digest(name: &str, value: &str) -> Digest {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"lanes-pass-env-v1\0");
    hasher.update(name.as_bytes());
    hasher.update(b"\0");
    hasher.update(value.as_bytes());
    hasher.finalize().to_hex().to_string()
}

/// What a fingerprint needs from the machine that runs the step.
#[derive(Clone, Copy)]
pub struct Host<'a> {
    /// `os-arch`, such as `linux-x86_64`.
    pub platform: &'a str,
    /// Reads a variable of the invoking environment (for `pass-env`).
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl std::fmt::Debug for Host<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("platform", &self.platform)
            .finish_non_exhaustive()
    }
}

/// The fingerprints of every step of `lane`, in order, each chained to the previous step's key.
pub fn lane_fingerprints(
    catalog: &Catalog,
    lane: &Lane,
    inputs: &Digest,
    host: Host<'_>,
) -> Vec<StepFingerprint> {
    let pins: BTreeMap<String, String> = lane
        .pins
        .iter()
        .filter_map(|name| {
            catalog
                .pins
                .get(name)
                .map(|pin| (name.clone(), pin.expect.clone()))
        })
        .collect();
    let cache_mounts: BTreeSet<String> = lane.cache_mounts.iter().cloned().collect();
    let mut previous: Option<Digest> = None;
    lane.steps
        .iter()
        .map(|step| {
            let fingerprint = StepFingerprint {
                version: KEY_VERSION,
                lane: lane.name.clone(),
                step: step.name.clone(),
                inputs: inputs.clone(),
                shell: step.shell().to_owned(),
                command: step.run.clone(),
                env: step.env.clone(),
                pass_env: step
                    .pass_env
                    .iter()
                    .map(|v| {
                        (
                            v.clone(),
                            (host.env)(v).map(|value| pass_env_digest(v, &value)),
                        )
                    })
                    .collect(),
                pins: pins.clone(),
                network: step.network,
                cache_mounts: cache_mounts.clone(),
                outputs: step
                    .outputs
                    .as_ref()
                    .map(|o| o.iter().map(|g| g.text.clone()).collect()),
                platform: host.platform.to_owned(),
                previous: previous.take(),
                // Known only once the previous step hit or ran: see `StepFingerprint::after`.
                previous_outputs: None,
            };
            previous = Some(fingerprint.key());
            fingerprint
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The canonical encoding is part of every key: it changes only with `KEY_VERSION`.
    #[test]
    fn the_canonical_encoding_is_stable() {
        let f = StepFingerprint {
            version: KEY_VERSION,
            lane: "test".into(),
            step: "build".into(),
            inputs: "ab".into(),
            shell: "bash -eo pipefail -c".into(),
            command: "cargo build".into(),
            env: BTreeMap::from([("Z".into(), "1".into()), ("A".into(), "2".into())]),
            pass_env: BTreeMap::from([("HOME_CACHE".into(), None)]),
            pins: BTreeMap::from([("rustc".into(), "1.95".into())]),
            network: false,
            cache_mounts: BTreeSet::from(["target".into()]),
            outputs: None,
            platform: "linux-x86_64".into(),
            previous: None,
            previous_outputs: None,
        };
        let expected = r#"{"version":3,"lane":"test","step":"build","inputs":"ab","shell":"bash -eo pipefail -c","command":"cargo build","env":{"A":"2","Z":"1"},"pass_env":{"HOME_CACHE":null},"pins":{"rustc":"1.95"},"network":false,"cache_mounts":["target"],"outputs":null,"platform":"linux-x86_64","previous":null,"previous_outputs":null}"#;
        assert_eq!(String::from_utf8(f.canonical()).expect("utf-8"), expected);
        assert_eq!(
            f.key(),
            blake3::hash(expected.as_bytes()).to_hex().to_string()
        );
    }

    #[test]
    fn recorded_outputs_chain_the_keys_until_a_step_has_no_record() {
        let step = |name: &str| StepFingerprint {
            version: KEY_VERSION,
            lane: "l".into(),
            step: name.into(),
            inputs: "ab".into(),
            shell: "bash".into(),
            command: name.into(),
            env: BTreeMap::new(),
            pass_env: BTreeMap::new(),
            pins: BTreeMap::new(),
            network: false,
            cache_mounts: BTreeSet::new(),
            outputs: None,
            platform: "linux-x86_64".into(),
            previous: None,
            previous_outputs: None,
        };
        let steps = [step("a"), step("b"), step("c")];
        let a = steps[0].key();
        // Only step a has a record.
        let chained = chain_recorded(&steps, |key| (key == a).then(|| "tree-a".to_owned()));
        assert_eq!(chained[0], steps[0]);
        assert_eq!(chained[1].previous.as_deref(), Some(a.as_str()));
        assert_eq!(chained[1].previous_outputs.as_deref(), Some("tree-a"));
        assert_eq!(chained[2].previous, Some(chained[1].key()));
        assert_eq!(chained[2].previous_outputs, None, "b's outputs are unknown");

        // Another tree left by a gives b another key.
        let other = chain_recorded(&steps, |key| (key == a).then(|| "tree-x".to_owned()));
        assert_ne!(other[1].key(), chained[1].key());
        assert_ne!(other[2].key(), chained[2].key());
    }
}
