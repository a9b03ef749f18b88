//! The lane catalog (`lanes.toml`) as a validated model.
//!
//! Only [`crate::parse()`] builds a [`Catalog`], and it only does so when the whole file is valid,
//! so every reference in here (a `needs` entry, a group, a pin) is known to resolve.

use crate::glob::Glob;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// The catalog versions this build understands.
pub const SUPPORTED_VERSIONS: &[u32] = &[1];

/// A parsed and validated catalog.
#[derive(Clone, Debug)]
pub struct Catalog {
    /// The `version` key.
    pub version: u32,
    /// Named path sets (`[paths]`), referenced from pattern lists as `@name`.
    pub sets: BTreeMap<String, Vec<Glob>>,
    /// Repository-relative path of the pins file when `pins = "file.toml"`.
    pub pins_file: Option<String>,
    /// Host assets by name.
    pub pins: BTreeMap<String, Pin>,
    /// Fleet-wide concurrency groups by name.
    pub groups: BTreeMap<String, Group>,
    /// Lanes in the order the catalog lists them.
    pub lanes: Vec<Lane>,
}

impl Catalog {
    /// The lane called `name`.
    pub fn lane(&self, name: &str) -> Option<&Lane> {
        self.lanes.iter().find(|l| l.name == name)
    }

    /// The repository-relative paths whose change selects every lane: the catalog itself and
    /// its pins file.
    pub fn own_paths<'a>(&'a self, catalog_path: &'a str) -> impl Iterator<Item = &'a str> {
        std::iter::once(catalog_path).chain(self.pins_file.as_deref())
    }
}

/// A host asset: a command whose output must equal `expect` on the host that runs the lane.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Pin {
    /// The command that prints the asset's version.
    pub command: String,
    /// The exact expected output (trimmed). A lane that uses the pin runs only on a host whose
    /// `command` prints exactly this, so it is also the host's value that step keys carry.
    pub expect: String,
    /// What makes a host match (installs the pinned runtime), run by `lanes doctor --ensure`
    /// for a pin that does not match. Never run by `lanes run` or an agent on their own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ensure: Option<String>,
    /// Variables of the invoking environment the command sees (as a step's `pass-env`): a
    /// rustup proxy needs `RUSTUP_HOME` to find the toolchain a step would find.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pass_env: Vec<String>,
}

/// A fleet-wide semaphore.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Group {
    /// How many jobs may hold the group at once.
    pub limit: u32,
}

/// How a lane's outcome counts and when it is selected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum LaneClass {
    /// Selected by a diff; its failure fails the run.
    Required,
    /// Selected by a diff; its failure is shown but does not fail the run.
    Advisory,
    /// Never selected by a diff; runs on its `schedule`.
    Nightly,
    /// Never selected by a diff; runs when asked for.
    Manual,
}

impl LaneClass {
    /// Every class, in the order docs list them.
    pub const ALL: [LaneClass; 4] = [
        LaneClass::Required,
        LaneClass::Advisory,
        LaneClass::Nightly,
        LaneClass::Manual,
    ];

    /// The name used in `lanes.toml` and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            LaneClass::Required => "required",
            LaneClass::Advisory => "advisory",
            LaneClass::Nightly => "nightly",
            LaneClass::Manual => "manual",
        }
    }
}

impl std::fmt::Display for LaneClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A named unit of CI work.
#[derive(Clone, Debug)]
pub struct Lane {
    /// The key in `[lane.NAME]`.
    pub name: String,
    /// A human title; defaults to the name.
    pub title: Option<String>,
    /// Required unless the catalog says otherwise.
    pub class: LaneClass,
    /// Trigger patterns with `@sets` expanded; `None` means the lane has no path trigger.
    pub paths: Option<Vec<Glob>>,
    /// The fileset the lane sees, `@sets` expanded; `None` means every file.
    pub inputs: Option<Vec<Glob>>,
    /// Lanes that must pass first.
    pub needs: Vec<String>,
    /// Concurrency group name.
    pub concurrency: Option<String>,
    /// Per-host execution scope.
    pub scope: Option<String>,
    /// Labels an agent must all have.
    pub labels: Vec<String>,
    /// Whole-lane time limit.
    pub timeout: Option<Duration>,
    /// Cron expression (nightly lanes only).
    pub schedule: Option<String>,
    /// Whether a newer head on the same branch cancels this lane's *running* job of the older
    /// run (`cancel-superseded`, default true). Its queued jobs are cancelled either way. A
    /// scheduling setting: it reaches no step key.
    pub cancel_superseded: bool,
    /// Names of the pins the lane's steps depend on.
    pub pins: Vec<String>,
    /// Persistent, unkeyed directories shared between runs of this lane's scope.
    pub cache_mounts: Vec<String>,
    /// Names of the secrets its steps get as environment variables (values from the forge's
    /// configuration, or `lanes run`'s environment). Never keyed, masked in logs.
    pub secrets: Vec<String>,
    /// Resource limits for each of its steps (a step's own limits take precedence). Not keyed:
    /// a limit changes whether a step can pass, never what a passing step produced.
    pub limits: Limits,
    /// Steps in order.
    pub steps: Vec<Step>,
}

/// The shell a step runs under when it names none: `RUN` is passed as the last argument.
pub const DEFAULT_SHELL: &str = "bash -eo pipefail -c";

/// One command of a lane; the unit of caching.
#[derive(Clone, Debug)]
pub struct Step {
    /// Unique within its lane.
    pub name: String,
    /// The script.
    pub run: String,
    /// The interpreter command line; `run` is appended as its last argument.
    pub shell: Option<String>,
    /// Declared environment variables.
    pub env: BTreeMap<String, String>,
    /// Variables whose values are taken from the invoking environment.
    pub pass_env: Vec<String>,
    /// Step time limit.
    pub timeout: Option<Duration>,
    /// Whether a result may be reused (default true).
    pub cache: bool,
    /// Whether the step may reach the network (default false).
    pub network: bool,
    /// Which created or changed files are recorded; `None` means all of them.
    pub outputs: Option<Vec<Glob>>,
    /// Resource limits; what is unset here comes from the lane, then the forge's defaults.
    pub limits: Limits,
}

/// Resource limits of a step (`limits = { memory = "4G", pids = 4096, cpus = 2 }`), enforced
/// with cgroups. `None` leaves a resource to the next level (lane, forge default, unlimited).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Limits {
    /// Bytes of memory (page cache and tmpfs pages count).
    pub memory: Option<u64>,
    /// Processes and threads at once.
    pub pids: Option<u64>,
    /// CPUs' worth of time (1.5 = one and a half cores).
    pub cpus: Option<f64>,
}

impl Limits {
    /// These limits, with what they leave unset taken from `fallback`.
    pub fn or(self, fallback: Limits) -> Limits {
        Limits {
            memory: self.memory.or(fallback.memory),
            pids: self.pids.or(fallback.pids),
            cpus: self.cpus.or(fallback.cpus),
        }
    }

    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.memory.is_some() || self.pids.is_some() || self.cpus.is_some()
    }
}

/// Whether `name` can name an environment variable in the catalog (`env`, `pass-env`,
/// `secrets`): letters, digits and `_`, not starting with a digit.
pub fn is_env_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A memory size: bytes, or a whole number with `K`, `M`, `G` or `T` (powers of 1024, an
/// optional `i`/`B` after the unit: `512M`, `4GiB`).
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, ""),
    };
    let n: u64 = digits.parse().ok()?;
    let unit = unit.strip_suffix('B').unwrap_or(unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let shift = match unit {
        "" => 0,
        "K" | "k" => 10,
        "M" | "m" => 20,
        "G" | "g" => 30,
        "T" | "t" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

impl Step {
    /// The shell command line this step runs under.
    pub fn shell(&self) -> &str {
        self.shell.as_deref().unwrap_or(DEFAULT_SHELL)
    }
}
