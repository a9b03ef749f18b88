//! Resource limits and whole-tree kills for one step, through cgroups (Linux).
//!
//! Each step that runs in the sandbox gets its own cgroup, named `<lanes pid>-<n>` under a
//! `lanes` directory beside the cgroup lanes itself runs in. The sandbox helper joins it before it
//! makes any namespace, so every process the step starts is in it, `setsid` or not. When the step
//! ends, everything still in the cgroup is killed and the cgroup removed; an out-of-memory kill is
//! read from the memory controller's counter.
//!
//! Both layouts are handled, detected at run time: the unified v2 hierarchy (`memory.max`,
//! `pids.max`, `cpu.max`, `memory.events`) and v1 or hybrid, where each controller has its own
//! hierarchy (`memory.limit_in_bytes`, `pids.max`, `cpu.cfs_quota_us`, `memory.oom_control`).
//! This module must not decide limits; it applies the ones it is given.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use lanes_core::catalog::Limits;

/// Where cgroups live on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hierarchy {
    /// The unified hierarchy: one directory per cgroup with every controller.
    V2 {
        /// The parent of step cgroups (`<mount>/<own path>/../lanes`).
        parent: PathBuf,
    },
    /// One hierarchy per controller (v1, or the hybrid layout with v2 mounted beside it).
    V1 {
        /// The parents of step cgroups in the memory, pids and cpu hierarchies.
        memory: PathBuf,
        /// As `memory`, for pids.
        pids: PathBuf,
        /// As `memory`, for cpu.
        cpu: PathBuf,
    },
}

const ROOT: &str = "/sys/fs/cgroup";

impl Hierarchy {
    /// The cgroup layout of this machine and where lanes may make step cgroups, or why not.
    pub fn detect() -> Result<Hierarchy, String> {
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
        let root = Path::new(ROOT);
        let hierarchy = if root.join("cgroup.controllers").exists() {
            let path = own_path(&own, "").ok_or("no unified entry in /proc/self/cgroup")?;
            let controllers = std::fs::read_to_string(root.join("cgroup.controllers"))
                .map_err(|e| format!("cannot read {ROOT}/cgroup.controllers: {e}"))?;
            for wanted in ["memory", "pids", "cpu"] {
                if !controllers.split_whitespace().any(|c| c == wanted) {
                    return Err(format!("cgroup v2 without the {wanted} controller"));
                }
            }
            // A v2 cgroup that holds processes cannot hand controllers to children, so step
            // cgroups go beside lanes' own cgroup rather than under it.
            let own_dir = root.join(path.trim_start_matches('/'));
            let parent = own_dir.parent().unwrap_or(root).join("lanes");
            Hierarchy::V2 { parent }
        } else {
            let under = |controller: &str| -> Result<PathBuf, String> {
                let mount = root.join(controller);
                if !mount.join("cgroup.procs").exists() {
                    return Err(format!(
                        "no cgroup v1 {controller} hierarchy at {}",
                        mount.display()
                    ));
                }
                let path = own_path(&own, controller)
                    .ok_or_else(|| format!("no {controller} entry in /proc/self/cgroup"))?;
                Ok(mount.join(path.trim_start_matches('/')).join("lanes"))
            };
            Hierarchy::V1 {
                memory: under("memory")?,
                pids: under("pids")?,
                cpu: under("cpu")?,
            }
        };
        // Writable? Making a cgroup under each parent is the test that counts.
        for dir in hierarchy.parents() {
            let probe = dir.join(format!("probe-{}", std::process::id()));
            std::fs::create_dir_all(&probe)
                .map_err(|e| format!("cannot create {}: {e}", probe.display()))?;
            // An empty probe group left behind holds nothing and limits nothing.
            let _ = std::fs::remove_dir(&probe);
        }
        if let Hierarchy::V2 { parent } = &hierarchy {
            enable_controllers(parent)?;
        }
        Ok(hierarchy)
    }

    /// `v2` or `v1`, for messages.
    pub fn version(&self) -> &'static str {
        match self {
            Hierarchy::V2 { .. } => "v2",
            Hierarchy::V1 { .. } => "v1",
        }
    }

    fn parents(&self) -> Vec<&Path> {
        match self {
            Hierarchy::V2 { parent } => vec![parent],
            Hierarchy::V1 { memory, pids, cpu } => vec![memory, pids, cpu],
        }
    }

    /// Kill and remove the step cgroups that lanes processes which no longer run left behind
    /// (a crash, a SIGKILL). Returns how many were removed.
    pub fn sweep(&self) -> usize {
        let mut removed = 0;
        for parent in self.parents() {
            let Ok(entries) = std::fs::read_dir(parent) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(owner) = name.to_str().and_then(|n| n.split('-').next()) else {
                    continue;
                };
                let Ok(owner) = owner.parse::<u32>() else {
                    continue;
                };
                if Path::new("/proc").join(owner.to_string()).exists() {
                    continue;
                }
                let dir = entry.path();
                kill_all_in(&dir);
                remove_tree(&dir);
                if !dir.exists() {
                    removed += 1;
                }
            }
        }
        removed
    }
}

/// The path of lanes' own cgroup in `controller`'s hierarchy (`""` for the unified one).
fn own_path<'a>(proc_self_cgroup: &'a str, controller: &str) -> Option<&'a str> {
    proc_self_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = if controller.is_empty() {
            controllers.is_empty()
        } else {
            controllers.split(',').any(|c| c == controller)
        };
        matches.then_some(path)
    })
}

fn enable_controllers(parent: &Path) -> Result<(), String> {
    // The parent's parent must delegate them first; at the root it always can.
    for dir in [parent.parent(), Some(parent)].into_iter().flatten() {
        let control = dir.join("cgroup.subtree_control");
        let current = std::fs::read_to_string(&control).unwrap_or_default();
        for controller in ["memory", "pids", "cpu"] {
            if !current.split_whitespace().any(|c| c == controller) {
                std::fs::write(&control, format!("+{controller}")).map_err(|e| {
                    format!("cannot enable {controller} in {}: {e}", control.display())
                })?;
            }
        }
    }
    Ok(())
}

/// One step's cgroup (one directory per hierarchy). Dropping it kills what is left and removes it.
#[derive(Debug)]
pub struct StepGroup {
    version: &'static str,
    /// Directories, memory first.
    dirs: Vec<PathBuf>,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

impl StepGroup {
    /// Make a fresh cgroup for one step with `limits` applied.
    pub fn create(hierarchy: &Hierarchy, limits: &Limits) -> std::io::Result<StepGroup> {
        let name = format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let group = StepGroup {
            version: hierarchy.version(),
            dirs: hierarchy.parents().iter().map(|p| p.join(&name)).collect(),
        };
        for dir in &group.dirs {
            match std::fs::create_dir(dir) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
                _ => {}
            }
        }
        let write = |dir: &PathBuf, file: &str, value: String| {
            std::fs::write(dir.join(file), &value).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("writing {value} to {}: {e}", dir.join(file).display()),
                )
            })
        };
        match hierarchy {
            Hierarchy::V2 { .. } => {
                let dir = &group.dirs[0];
                if let Some(bytes) = limits.memory {
                    write(dir, "memory.max", bytes.to_string())?;
                    // No swap: a step over its limit is killed rather than slowed to a crawl.
                    // Absent without swap accounting, where there is no swap to limit.
                    let _ = write(dir, "memory.swap.max", "0".to_owned());
                }
                if let Some(pids) = limits.pids {
                    write(dir, "pids.max", pids.to_string())?;
                }
                if let Some(cpus) = limits.cpus {
                    write(dir, "cpu.max", format!("{} {PERIOD_US}", quota_us(cpus)))?;
                }
            }
            Hierarchy::V1 { .. } => {
                let (memory, pids, cpu) = (&group.dirs[0], &group.dirs[1], &group.dirs[2]);
                if let Some(bytes) = limits.memory {
                    write(memory, "memory.limit_in_bytes", bytes.to_string())?;
                    // Absent without swap accounting; the limit above still holds.
                    let _ = write(memory, "memory.memsw.limit_in_bytes", bytes.to_string());
                }
                if let Some(n) = limits.pids {
                    write(pids, "pids.max", n.to_string())?;
                }
                if let Some(cpus) = limits.cpus {
                    write(cpu, "cpu.cfs_period_us", PERIOD_US.to_string())?;
                    write(cpu, "cpu.cfs_quota_us", quota_us(cpus).to_string())?;
                }
            }
        }
        Ok(group)
    }

    /// The `cgroup.procs` files the sandbox helper writes its own pid into.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Whether the kernel killed a process of the step for being over the memory limit.
    pub fn oom_killed(&self) -> bool {
        let file = match self.version {
            "v2" => "memory.events",
            _ => "memory.oom_control",
        };
        std::fs::read_to_string(self.dirs[0].join(file))
            .ok()
            .and_then(|text| {
                text.lines().find_map(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|n| n.trim().parse::<u64>().ok())
                })
            })
            .is_some_and(|n| n > 0)
    }

    /// SIGKILL every process still in the cgroup, until none is left (or a few seconds pass).
    pub fn kill_all(&self) {
        for dir in &self.dirs {
            kill_all_in(dir);
        }
    }
}

impl Drop for StepGroup {
    fn drop(&mut self) {
        self.kill_all();
        for dir in &self.dirs {
            remove_tree(dir);
        }
    }
}

/// Remove a cgroup and the ones a step made under it (a `lanes` run inside a step makes its own),
/// deepest first; a cgroup directory holds only control files, which go with it.
fn remove_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                kill_all_in(&entry.path());
                remove_tree(&entry.path());
            }
        }
    }
    // A group that still has a process cannot go; the sweep of leftovers tries it again.
    let _ = std::fs::remove_dir(dir);
}

const PERIOD_US: u64 = 100_000;

fn quota_us(cpus: f64) -> u64 {
    // The kernel refuses quotas under 1 ms.
    ((cpus * PERIOD_US as f64) as u64).max(1_000)
}

fn kill_all_in(dir: &Path) {
    // v2 kills the whole subtree in one write where the kernel has it (5.14+); without it, the
    // loop below kills each process.
    let _ = std::fs::write(dir.join("cgroup.kill"), "1");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids: Vec<i32> = std::fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        if pids.is_empty() || Instant::now() >= deadline {
            return;
        }
        for pid in pids {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                // A process that already exited cannot be killed; the loop reads the group again.
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_paths_come_from_the_controller_named() {
        let text = "9:name=systemd:/\n8:pids:/p\n4:memory:/a/b\n1:cpu,cpuacct:/c\n0::/u\n";
        assert_eq!(own_path(text, "memory"), Some("/a/b"));
        assert_eq!(own_path(text, "cpu"), Some("/c"));
        assert_eq!(own_path(text, "pids"), Some("/p"));
        assert_eq!(own_path(text, ""), Some("/u"));
        assert_eq!(own_path(text, "blkio"), None);
    }

    #[test]
    fn a_quota_is_a_share_of_the_period() {
        assert_eq!(quota_us(2.0), 200_000);
        assert_eq!(quota_us(0.5), 50_000);
        assert_eq!(quota_us(0.0), 1_000);
    }
}
