//! Why a step's key changed: the difference between two fingerprints, field by field, and for
//! the inputs, file by file.

use crate::fileset::{ContentId, FileEntry};
use crate::fingerprint::StepFingerprint;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One reason two fingerprints differ.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Difference {
    /// The key schema changed (a new lanes version).
    KeyVersion {
        /// Before.
        before: u32,
        /// Now.
        now: u32,
    },
    /// The lane or step was renamed (steps see their names as variables).
    Name {
        /// Before, as `lane/step`.
        before: String,
        /// Now.
        now: String,
    },
    /// An input file's content or mode changed.
    InputChanged {
        /// The file.
        path: String,
        /// Before: `blob 1a2b…`, `blake3 3c4d…`, with the mode when it changed.
        before: String,
        /// Now.
        now: String,
    },
    /// A file joined the lane's fileset.
    InputAdded {
        /// The file.
        path: String,
    },
    /// A file left the lane's fileset.
    InputRemoved {
        /// The file.
        path: String,
    },
    /// The inputs changed but the earlier file list is not available.
    InputsChanged {
        /// Digest before.
        before: String,
        /// Digest now.
        now: String,
    },
    /// The script changed.
    Command,
    /// The shell changed.
    Shell {
        /// Before.
        before: String,
        /// Now.
        now: String,
    },
    /// A declared variable was added, removed or changed.
    Env {
        /// The variable.
        name: String,
    },
    /// A passed-through variable was added, removed or has another value (values are not
    /// shown: they may be secrets).
    PassEnv {
        /// The variable.
        name: String,
    },
    /// A pin was added, removed or expects another value.
    Pin {
        /// The pin.
        name: String,
    },
    /// `network` changed.
    Network {
        /// Now.
        now: bool,
    },
    /// The cache-mount names changed.
    CacheMounts,
    /// The `outputs` patterns changed.
    Outputs,
    /// The step runs on another platform.
    Platform {
        /// Before.
        before: String,
        /// Now.
        now: String,
    },
    /// The previous step's key, or the outputs it left, changed, so this step starts from
    /// another directory state.
    PreviousStep,
}

/// What kind of reason made a step miss the cache: the categories the forge's cache page counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum MissKind {
    /// No run of the step is recorded in this cache (a new step, or a new host).
    New,
    /// Exactly this step passed before; its recorded result is gone (evicted or corrupt).
    Evicted,
    /// Exactly this step ran before and did not pass, so nothing was recorded.
    NotRecorded,
    /// Input files changed.
    Inputs,
    /// The script or its shell changed.
    Command,
    /// A declared or passed-through variable changed.
    Env,
    /// A pin changed.
    Pin,
    /// Another platform.
    Platform,
    /// Only the previous step's key changed.
    PreviousStep,
    /// The key schema changed (a new lanes version).
    LanesVersion,
    /// The lane or step was renamed.
    Renamed,
    /// `network`, cache mounts or `outputs` changed.
    Settings,
    /// A kind this lanes does not know (from a newer agent).
    #[serde(other)]
    Other,
}

impl MissKind {
    /// Every kind.
    pub const ALL: [MissKind; 13] = [
        MissKind::New,
        MissKind::Evicted,
        MissKind::NotRecorded,
        MissKind::Inputs,
        MissKind::Command,
        MissKind::Env,
        MissKind::Pin,
        MissKind::Platform,
        MissKind::PreviousStep,
        MissKind::LanesVersion,
        MissKind::Renamed,
        MissKind::Settings,
        MissKind::Other,
    ];

    /// The name used in JSON and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            MissKind::New => "new",
            MissKind::Evicted => "evicted",
            MissKind::NotRecorded => "not-recorded",
            MissKind::Inputs => "inputs",
            MissKind::Command => "command",
            MissKind::Env => "env",
            MissKind::Pin => "pin",
            MissKind::Platform => "platform",
            MissKind::PreviousStep => "previous-step",
            MissKind::LanesVersion => "lanes-version",
            MissKind::Renamed => "renamed",
            MissKind::Settings => "settings",
            MissKind::Other => "other",
        }
    }

    /// The kind called `name`; [`MissKind::Other`] for a name this lanes does not know (a
    /// newer agent's), so a report or a stored step never fails on it.
    pub fn parse(name: &str) -> MissKind {
        MissKind::ALL
            .into_iter()
            .find(|k| k.as_str() == name)
            .unwrap_or(MissKind::Other)
    }

    /// For people: `inputs changed`, `first run on this host`.
    pub fn label(self) -> &'static str {
        match self {
            MissKind::New => "first run in this cache",
            MissKind::Evicted => "result gone (evicted)",
            MissKind::NotRecorded => "last run did not pass",
            MissKind::Inputs => "inputs changed",
            MissKind::Command => "command changed",
            MissKind::Env => "environment changed",
            MissKind::Pin => "pin changed",
            MissKind::Platform => "platform changed",
            MissKind::PreviousStep => "previous step changed",
            MissKind::LanesVersion => "lanes version changed",
            MissKind::Renamed => "renamed",
            MissKind::Settings => "settings changed",
            MissKind::Other => "other reason",
        }
    }
}

impl Difference {
    /// The kind of reason this difference is.
    pub fn kind(&self) -> MissKind {
        match self {
            Difference::KeyVersion { .. } => MissKind::LanesVersion,
            Difference::Name { .. } => MissKind::Renamed,
            Difference::InputChanged { .. }
            | Difference::InputAdded { .. }
            | Difference::InputRemoved { .. }
            | Difference::InputsChanged { .. } => MissKind::Inputs,
            Difference::Command | Difference::Shell { .. } => MissKind::Command,
            Difference::Env { .. } | Difference::PassEnv { .. } => MissKind::Env,
            Difference::Pin { .. } => MissKind::Pin,
            Difference::Network { .. } | Difference::CacheMounts | Difference::Outputs => {
                MissKind::Settings
            }
            Difference::Platform { .. } => MissKind::Platform,
            Difference::PreviousStep => MissKind::PreviousStep,
        }
    }
}

/// Why a step missed the cache, in brief: its kind and one line for people. Every miss of
/// `lanes run` and of the forge's agents carries one; the forge stores it with the step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct MissReason {
    /// The kind (of the first difference, in fingerprint field order).
    pub kind: MissKind,
    /// One line: the first difference and how many more (`input src/a.rs: blob 1a2b… -> blob
    /// 3c4d… (and 2 more changes)`), or what the kind means.
    #[cfg_attr(feature = "schema", schemars(length(max = crate::limits::MAX_MESSAGE)))]
    pub detail: String,
}

impl MissReason {
    /// The reason `differences` (non-empty) give.
    pub fn from_differences(differences: &[Difference]) -> Option<MissReason> {
        let first = differences.first()?;
        let detail = match differences.len() - 1 {
            0 => first.to_string(),
            1 => format!("{first} (and 1 more change)"),
            n => format!("{first} (and {n} more changes)"),
        };
        Some(MissReason {
            kind: first.kind(),
            detail,
        })
    }
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::KeyVersion { before, now } => write!(f, "key version {before} -> {now}"),
            Difference::Name { before, now } => write!(f, "renamed {before} -> {now}"),
            Difference::InputChanged { path, before, now } => {
                write!(f, "input {path}: {before} -> {now}")
            }
            Difference::InputAdded { path } => write!(f, "input {path} added"),
            Difference::InputRemoved { path } => write!(f, "input {path} removed"),
            Difference::InputsChanged { before, now } => write!(
                f,
                "inputs changed (fileset {} -> {}; the earlier file list is not in the cache)",
                short(before),
                short(now)
            ),
            Difference::Command => f.write_str("command changed"),
            Difference::Shell { before, now } => write!(f, "shell changed: {before} -> {now}"),
            Difference::Env { name } => write!(f, "env {name} changed"),
            Difference::PassEnv { name } => write!(f, "pass-env {name} changed"),
            Difference::Pin { name } => write!(f, "pin {name} changed"),
            Difference::Network { now } => {
                write!(f, "network turned {}", if *now { "on" } else { "off" })
            }
            Difference::CacheMounts => f.write_str("cache mounts changed"),
            Difference::Outputs => f.write_str("outputs patterns changed"),
            Difference::Platform { before, now } => write!(f, "platform {before} -> {now}"),
            Difference::PreviousStep => f.write_str("previous step's key changed"),
        }
    }
}

fn short(hex: &str) -> String {
    format!("{}…", &hex[..hex.len().min(8)])
}

fn content(entry: &FileEntry, with_mode: bool) -> String {
    let id = match &entry.id {
        ContentId::GitBlob(hex) => format!("blob {}", short(hex)),
        ContentId::Blake3(hex) => format!("blake3 {}", short(hex)),
    };
    if with_mode {
        format!("{id} ({:o})", entry.mode)
    } else {
        id
    }
}

/// Every difference between the fingerprint `before` and `now`, in fingerprint field order.
/// `before_files` and `now_files` are the two input filesets when known (sorted by path).
pub fn differences(
    before: &StepFingerprint,
    now: &StepFingerprint,
    before_files: Option<&[FileEntry]>,
    now_files: Option<&[FileEntry]>,
) -> Vec<Difference> {
    let mut out = Vec::new();
    if before.version != now.version {
        out.push(Difference::KeyVersion {
            before: before.version,
            now: now.version,
        });
    }
    if (&before.lane, &before.step) != (&now.lane, &now.step) {
        out.push(Difference::Name {
            before: format!("{}/{}", before.lane, before.step),
            now: format!("{}/{}", now.lane, now.step),
        });
    }
    if before.inputs != now.inputs {
        match (before_files, now_files) {
            (Some(old), Some(new)) => out.extend(file_differences(old, new)),
            _ => out.push(Difference::InputsChanged {
                before: before.inputs.clone(),
                now: now.inputs.clone(),
            }),
        }
    }
    if before.shell != now.shell {
        out.push(Difference::Shell {
            before: before.shell.clone(),
            now: now.shell.clone(),
        });
    }
    if before.command != now.command {
        out.push(Difference::Command);
    }
    for name in changed_keys(&before.env, &now.env) {
        out.push(Difference::Env { name });
    }
    for name in changed_keys(&before.pass_env, &now.pass_env) {
        out.push(Difference::PassEnv { name });
    }
    for name in changed_keys(&before.pins, &now.pins) {
        out.push(Difference::Pin { name });
    }
    if before.network != now.network {
        out.push(Difference::Network { now: now.network });
    }
    if before.cache_mounts != now.cache_mounts {
        out.push(Difference::CacheMounts);
    }
    if before.outputs != now.outputs {
        out.push(Difference::Outputs);
    }
    if before.platform != now.platform {
        out.push(Difference::Platform {
            before: before.platform.clone(),
            now: now.platform.clone(),
        });
    }
    if before.previous != now.previous || before.previous_outputs != now.previous_outputs {
        out.push(Difference::PreviousStep);
    }
    out
}

fn changed_keys<V: PartialEq>(a: &BTreeMap<String, V>, b: &BTreeMap<String, V>) -> Vec<String> {
    let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    names
        .into_iter()
        .filter(|n| a.get(*n) != b.get(*n))
        .cloned()
        .collect()
}

fn file_differences(old: &[FileEntry], new: &[FileEntry]) -> Vec<Difference> {
    let old: BTreeMap<&str, &FileEntry> = old.iter().map(|f| (f.path.as_str(), f)).collect();
    let new: BTreeMap<&str, &FileEntry> = new.iter().map(|f| (f.path.as_str(), f)).collect();
    let paths: BTreeSet<&str> = old.keys().chain(new.keys()).copied().collect();
    paths
        .into_iter()
        .filter_map(|path| match (old.get(path), new.get(path)) {
            (Some(a), Some(b)) if a != b => {
                let with_mode = a.mode != b.mode;
                Some(Difference::InputChanged {
                    path: path.to_owned(),
                    before: content(a, with_mode),
                    now: content(b, with_mode),
                })
            }
            (None, Some(_)) => Some(Difference::InputAdded {
                path: path.to_owned(),
            }),
            (Some(_), None) => Some(Difference::InputRemoved {
                path: path.to_owned(),
            }),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fileset::mode;

    fn fingerprint() -> StepFingerprint {
        StepFingerprint {
            version: 1,
            lane: "test".into(),
            step: "build".into(),
            inputs: "a".repeat(64),
            shell: "bash -eo pipefail -c".into(),
            command: "make".into(),
            env: BTreeMap::from([("RUSTFLAGS".into(), "-D warnings".into())]),
            pass_env: BTreeMap::from([("TOKEN".into(), Some("s3cret".into()))]),
            pins: BTreeMap::new(),
            network: false,
            cache_mounts: BTreeSet::new(),
            outputs: None,
            platform: "linux-x86_64".into(),
            previous: None,
            previous_outputs: None,
        }
    }

    fn file(path: &str, blob: &str) -> FileEntry {
        FileEntry {
            path: path.into(),
            mode: mode::FILE,
            id: ContentId::GitBlob(blob.repeat(40)),
        }
    }

    #[test]
    fn a_miss_kind_this_lanes_does_not_know_reads_as_other() {
        assert_eq!(MissKind::parse("inputs"), MissKind::Inputs);
        assert_eq!(MissKind::parse("from-the-future"), MissKind::Other);
        let reason: MissReason =
            serde_json::from_str(r#"{"kind": "from-the-future", "detail": "x"}"#).expect("parses");
        assert_eq!(reason.kind, MissKind::Other);
        for kind in MissKind::ALL {
            assert_eq!(MissKind::parse(kind.as_str()), kind);
        }
    }

    #[test]
    fn equal_fingerprints_have_no_difference() {
        assert!(differences(&fingerprint(), &fingerprint(), None, None).is_empty());
    }

    #[test]
    fn files_are_named_and_secrets_are_not_shown() {
        let before = fingerprint();
        let mut now = fingerprint();
        now.inputs = "b".repeat(64);
        now.env.insert("RUSTFLAGS".into(), String::new());
        now.pass_env.insert("TOKEN".into(), Some("other".into()));
        now.previous = Some("c".repeat(64));
        let old = [file("a.rs", "1"), file("b.rs", "2")];
        let new = [file("a.rs", "3"), file("c.rs", "4")];
        let text: Vec<String> = differences(&before, &now, Some(&old), Some(&new))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            text,
            [
                "input a.rs: blob 11111111… -> blob 33333333…",
                "input b.rs removed",
                "input c.rs added",
                "env RUSTFLAGS changed",
                "pass-env TOKEN changed",
                "previous step's key changed",
            ]
        );
        assert!(!text.concat().contains("s3cret"));
    }

    #[test]
    fn without_the_old_file_list_the_digests_are_named() {
        let before = fingerprint();
        let mut now = fingerprint();
        now.inputs = "b".repeat(64);
        now.command = "make all".into();
        assert_eq!(
            differences(&before, &now, None, Some(&[])),
            [
                Difference::InputsChanged {
                    before: "a".repeat(64),
                    now: "b".repeat(64)
                },
                Difference::Command
            ]
        );
    }
}
