//! `lanes doctor`: is this host able to run the catalog's lanes as they were meant to run?
//!
//! It holds each pin against the host the way `lanes run` and agents do, probes the step
//! sandbox, finds the cgroup hierarchies and the controllers limits need, and looks at the free
//! space where the cache lives. Each check says what it found and, when it fails, one line of
//! what to do. With `--ensure`, a pin that does not match runs its `ensure` command and is
//! checked again. It changes nothing else on the host (a cgroup it creates to see whether it
//! may is removed at once).

use crate::args::DoctorArgs;
use crate::cache_dir::cache_dir;
use crate::error::{CliError, exit};
use crate::printer::Printer;
use crate::workspace::Workspace;
use lanes_engine::host::{PinCheck, check_pin, run_ensure};
use lanes_exec::Sandbox;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Version of the `--json` document.
const DOCTOR_VERSION: u32 = 1;

/// Less free space than this (1 GiB, as the help says) in the cache directory's filesystem
/// fails the disk check: a few lane directories and their recorded outputs no longer fit.
const MIN_FREE_BYTES: u64 = 1 << 30;

/// The controllers step limits are made of (`memory`, `pids`, `cpus`).
const LIMIT_CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

#[derive(Debug, Serialize)]
struct Report {
    version: u32,
    ok: bool,
    pins: Vec<PinEntry>,
    sandbox: SandboxEntry,
    cgroups: CgroupsEntry,
    disk: DiskEntry,
}

#[derive(Debug, Serialize)]
struct PinEntry {
    name: String,
    command: String,
    expected: String,
    found: String,
    ok: bool,
    /// What `--ensure` did for this pin; absent when it was not asked or not needed.
    #[serde(skip_serializing_if = "Option::is_none")]
    ensure: Option<EnsureEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    help: Option<String>,
}

#[derive(Debug, Serialize)]
struct EnsureEntry {
    command: String,
    /// The command exited 0 (the pin may still not match: see the pin's `ok`).
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct SandboxEntry {
    ok: bool,
    parts: Vec<Part>,
    #[serde(skip_serializing_if = "Option::is_none")]
    help: Option<String>,
}

/// One mechanism of the sandbox.
#[derive(Debug, Serialize)]
struct Part {
    name: String,
    ok: bool,
    /// Why not, when it is not usable.
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

#[derive(Debug, Serialize)]
struct CgroupsEntry {
    ok: bool,
    /// `v2`, `v1`, `hybrid` (v1 controllers beside a cgroup2 mount) or `none`.
    version: &'static str,
    controllers: Vec<Controller>,
    #[serde(skip_serializing_if = "Option::is_none")]
    help: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Controller {
    name: String,
    /// The hierarchy it is bound to: `v1` or `v2`.
    hierarchy: &'static str,
    /// Where this process's cgroup for it is.
    path: PathBuf,
    /// This process may create a cgroup there.
    usable: bool,
}

#[derive(Debug, Serialize)]
struct DiskEntry {
    ok: bool,
    path: PathBuf,
    free_bytes: Option<u64>,
    total_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    help: Option<String>,
}

pub(crate) fn run(dir: &Path, args: &DoctorArgs, printer: &Printer) -> Result<u8, CliError> {
    let workspace = Workspace::open(dir, args.revision.head.as_deref())?;
    let catalog = workspace.catalog()?;
    let cache_root = cache_dir()?;

    let pins = catalog
        .pins
        .iter()
        .map(|(name, pin)| {
            // Never from this process's earlier answers: a doctor looks now.
            let check = check_pin(name, pin, false);
            let mut ensure = None;
            let check = match &pin.ensure {
                Some(command) if args.ensure && !check.ok => {
                    printer.err(&format!("ensuring pin {name}: running `{command}`\n"));
                    let ran = run_ensure(command);
                    ensure = Some(EnsureEntry {
                        command: command.clone(),
                        ok: ran.is_ok(),
                        error: ran.err(),
                    });
                    check_pin(name, pin, false)
                }
                _ => check,
            };
            pin_entry(check, pin.ensure.is_some(), args.ensure, ensure)
        })
        .collect();

    let report = {
        let sandbox = sandbox_entry(&workspace, &cache_root);
        let cgroups = cgroups_entry();
        let disk = disk_entry(&cache_root);
        let mut report = Report {
            version: DOCTOR_VERSION,
            ok: false,
            pins,
            sandbox,
            cgroups,
            disk,
        };
        report.ok = report.pins.iter().all(|p| p.ok)
            && report.sandbox.ok
            && report.cgroups.ok
            && report.disk.ok;
        report
    };
    if args.json {
        printer.json(&report)?;
    } else {
        printer.out(&text(&report))?;
    }
    Ok(if report.ok {
        exit::SUCCESS
    } else {
        exit::FAILED
    })
}

fn pin_entry(
    check: PinCheck,
    has_ensure: bool,
    ensured: bool,
    ensure: Option<EnsureEntry>,
) -> PinEntry {
    let help = (!check.ok).then(|| match (has_ensure, ensured) {
        (true, false) => format!(
            "run `lanes doctor --ensure` to run the pin's `ensure`, or install what prints `{}`",
            check.expected
        ),
        (true, true) => format!(
            "its `ensure` did not make `{}` print `{}`: install it by hand, or fix `ensure`",
            check.command, check.expected
        ),
        (false, _) => format!(
            "install what makes `{}` print `{}`, or change the pin's `expect` (lanes that use \
             it end `error` on this host until then)",
            check.command, check.expected
        ),
    });
    PinEntry {
        name: check.pin,
        command: check.command,
        expected: check.expected,
        found: check.found,
        ok: check.ok,
        ensure,
        help,
    }
}

/// The sandbox `lanes run` would use here, over this repository and cache directory.
fn sandbox_entry(workspace: &Workspace, cache_root: &Path) -> SandboxEntry {
    let probe = match std::env::current_exe() {
        Ok(helper) => {
            let mut hide = workspace.repo.dirs();
            hide.push(cache_root.to_owned());
            Sandbox::new(helper, hide).fit()
        }
        Err(e) => Err(format!("cannot find the lanes binary: {e}")),
    };
    let parts = sandbox_parts(probe);
    let ok = parts.iter().all(|p| p.ok);
    SandboxEntry {
        ok,
        parts,
        help: (!ok).then(|| {
            "steps would run unsandboxed and could read files outside their inputs: allow user \
             namespaces for this user (sysctl user.max_user_namespaces), or run as root"
                .to_owned()
        }),
    }
}

/// The sandbox's parts, from [`Sandbox::fit`]'s answer: each namespace and the cgroups, with
/// what a missing one costs. (Who steps run as is the forge's setting, not this host's.)
fn sandbox_parts(fitted: Result<lanes_exec::sandbox::Fitted, String>) -> Vec<Part> {
    let fitted = match fitted {
        Ok(fitted) => fitted,
        Err(why) => {
            return vec![Part {
                name: "mount-namespace".to_owned(),
                ok: false,
                detail: Some(why),
            }];
        }
    };
    let described = fitted.sandbox.describe();
    let named = [
        "mount-namespace",
        "pid-namespace",
        "network-namespace",
        "ipc-uts-namespaces",
        "cgroups",
    ];
    named
        .iter()
        .zip(described)
        .enumerate()
        .map(|(i, (name, (what, ok)))| {
            let detail = if ok {
                Some(what)
            } else if i == 4 {
                fitted.cgroups.clone()
            } else {
                let word = what.split(" namespace").next().unwrap_or(&what).to_owned();
                fitted.lost.iter().find(|l| l.contains(&word)).cloned()
            };
            Part {
                name: (*name).to_owned(),
                ok,
                detail,
            }
        })
        .collect()
}

fn cgroups_entry() -> CgroupsEntry {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let (version, mut controllers) = cgroups(&mountinfo, &own, &|dir| {
        std::fs::read_to_string(dir.join("cgroup.controllers")).ok()
    });
    for controller in &mut controllers {
        controller.usable = may_create_cgroup(&controller.path);
    }
    let missing: Vec<&str> = LIMIT_CONTROLLERS
        .into_iter()
        .filter(|name| !controllers.iter().any(|c| c.name == *name && c.usable))
        .collect();
    let ok = missing.is_empty();
    CgroupsEntry {
        ok,
        version,
        controllers,
        help: (!ok).then(|| {
            format!(
                "step limits need the {} controller{}: run as root, or have the cgroup \
                 hierarchy delegated to this user (systemd: Delegate=yes)",
                missing.join(", "),
                if missing.len() == 1 { "" } else { "s" }
            )
        }),
    }
}

/// The cgroup version and the controllers this process's cgroups offer, from
/// `/proc/self/mountinfo` and `/proc/self/cgroup`; `controllers_of` reads a v2 directory's
/// `cgroup.controllers`. Every controller comes out not `usable`: that takes a probe.
fn cgroups(
    mountinfo: &str,
    own: &str,
    controllers_of: &dyn Fn(&Path) -> Option<String>,
) -> (&'static str, Vec<Controller>) {
    // `hierarchy-id:controllers:path` per line; v2 is `0::path`.
    let own_path = |controller: Option<&str>| -> PathBuf {
        let path = own.lines().find_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_, names, path) = (fields.next()?, fields.next()?, fields.next()?);
            let hit = match controller {
                Some(c) => names.split(',').any(|n| n == c),
                None => names.is_empty(),
            };
            hit.then(|| path.trim_start_matches('/').to_owned())
        });
        PathBuf::from(path.unwrap_or_default())
    };
    let mut controllers = Vec::new();
    let mut v1 = false;
    let mut v2 = false;
    for line in mountinfo.lines() {
        let Some((mount, fs)) = line.split_once(" - ") else {
            continue;
        };
        let Some(point) = mount.split(' ').nth(4) else {
            continue;
        };
        let mut fs = fs.split(' ');
        let (kind, options) = (fs.next(), fs.nth(1).unwrap_or_default());
        match kind {
            Some("cgroup") => {
                for name in options.split(',').filter(|o| V1_CONTROLLERS.contains(o)) {
                    v1 = true;
                    controllers.push(Controller {
                        name: name.to_owned(),
                        hierarchy: "v1",
                        path: under(point, &own_path(Some(name))),
                        usable: false,
                    });
                }
            }
            Some("cgroup2") => {
                v2 = true;
                let dir = under(point, &own_path(None));
                let names = controllers_of(&dir).unwrap_or_default();
                for name in names.split_whitespace() {
                    controllers.push(Controller {
                        name: name.to_owned(),
                        hierarchy: "v2",
                        path: dir.clone(),
                        usable: false,
                    });
                }
            }
            _ => {}
        }
    }
    let version = match (v1, v2) {
        (true, true) => "hybrid",
        (true, false) => "v1",
        (false, true) => "v2",
        (false, false) => "none",
    };
    (version, controllers)
}

/// `point/own`, without a trailing `/` for the root cgroup.
fn under(point: &str, own: &Path) -> PathBuf {
    if own.as_os_str().is_empty() {
        PathBuf::from(point)
    } else {
        Path::new(point).join(own)
    }
}

/// Controller names of cgroup v1 (a v1 mount's options also hold `rw`, `name=systemd`...).
const V1_CONTROLLERS: [&str; 14] = [
    "blkio",
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "freezer",
    "hugetlb",
    "memory",
    "misc",
    "net_cls",
    "net_prio",
    "perf_event",
    "pids",
    "rdma",
];

/// Whether this process may make a cgroup under `dir`: it makes one and removes it.
fn may_create_cgroup(dir: &Path) -> bool {
    let probe = dir.join(format!("lanes-doctor-{}", std::process::id()));
    match std::fs::create_dir(&probe) {
        Ok(()) => {
            // An empty cgroup left behind holds nothing and limits nothing.
            let _ = std::fs::remove_dir(&probe);
            true
        }
        Err(_) => false,
    }
}

fn disk_entry(cache_root: &Path) -> DiskEntry {
    // The cache directory may not exist yet: its filesystem is that of its nearest ancestor.
    let existing = cache_root
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    match rustix::fs::statvfs(existing) {
        Ok(stat) => {
            let free = stat.f_bavail.saturating_mul(stat.f_frsize);
            let total = stat.f_blocks.saturating_mul(stat.f_frsize);
            let ok = free >= MIN_FREE_BYTES;
            DiskEntry {
                ok,
                path: cache_root.to_owned(),
                free_bytes: Some(free),
                total_bytes: Some(total),
                error: None,
                help: (!ok).then(|| {
                    "less than 1 GiB free: run `lanes cache gc --max-size SIZE`, or set \
                     LANES_CACHE_DIR to a larger disk"
                        .to_owned()
                }),
            }
        }
        Err(e) => DiskEntry {
            ok: false,
            path: cache_root.to_owned(),
            free_bytes: None,
            total_bytes: None,
            error: Some(format!("cannot read the filesystem's size: {e}")),
            help: Some("set LANES_CACHE_DIR to a directory lanes may write to".to_owned()),
        },
    }
}

fn gigabytes(bytes: u64) -> String {
    format!("{:.1} GB", bytes as f64 / 1e9)
}

fn mark(ok: bool) -> &'static str {
    if ok { "ok  " } else { "FAIL" }
}

fn text(report: &Report) -> String {
    let mut out = String::new();
    let help = |out: &mut String, help: &Option<String>| {
        if let Some(help) = help {
            let _ = writeln!(out, "        help: {help}");
        }
    };
    let _ = writeln!(out, "pins");
    if report.pins.is_empty() {
        let _ = writeln!(out, "  ok    the catalog has no pins");
    }
    for pin in &report.pins {
        if let Some(ensure) = &pin.ensure {
            let _ = writeln!(
                out,
                "  {}  {}: ran `{}`{}",
                mark(ensure.ok),
                pin.name,
                ensure.command,
                ensure
                    .error
                    .as_ref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            );
        }
        if pin.ok {
            let _ = writeln!(out, "  ok    {}: `{}`", pin.name, pin.found);
        } else {
            let _ = writeln!(
                out,
                "  FAIL  {}: expected `{}`, found `{}` (from `{}`)",
                pin.name, pin.expected, pin.found, pin.command
            );
        }
        help(&mut out, &pin.help);
    }
    let _ = writeln!(out, "sandbox");
    for part in &report.sandbox.parts {
        let _ = writeln!(
            out,
            "  {}  {}{}",
            mark(part.ok),
            part.name,
            part.detail
                .as_ref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        );
    }
    help(&mut out, &report.sandbox.help);
    let _ = writeln!(out, "cgroups ({})", report.cgroups.version);
    for name in LIMIT_CONTROLLERS {
        let found: Vec<&Controller> = report
            .cgroups
            .controllers
            .iter()
            .filter(|c| c.name == name)
            .collect();
        let usable = found.iter().find(|c| c.usable);
        match (usable, found.first()) {
            (Some(c), _) => {
                let _ = writeln!(
                    out,
                    "  ok    {name} ({} at {})",
                    c.hierarchy,
                    c.path.display()
                );
            }
            (None, Some(c)) => {
                let _ = writeln!(
                    out,
                    "  FAIL  {name}: cannot create a cgroup in {}",
                    c.path.display()
                );
            }
            (None, None) => {
                let _ = writeln!(out, "  FAIL  {name}: no hierarchy has it");
            }
        }
    }
    help(&mut out, &report.cgroups.help);
    let _ = writeln!(out, "disk");
    let disk = &report.disk;
    match (disk.free_bytes, disk.total_bytes, &disk.error) {
        (Some(free), Some(total), _) => {
            let _ = writeln!(
                out,
                "  {}  {}: {} free of {}",
                mark(disk.ok),
                disk.path.display(),
                gigabytes(free),
                gigabytes(total)
            );
        }
        (_, _, error) => {
            let _ = writeln!(
                out,
                "  FAIL  {}: {}",
                disk.path.display(),
                error.as_deref().unwrap_or("unknown")
            );
        }
    }
    help(&mut out, &disk.help);
    let failures = report.pins.iter().filter(|p| !p.ok).count()
        + usize::from(!report.sandbox.ok)
        + usize::from(!report.cgroups.ok)
        + usize::from(!report.disk.ok);
    if failures == 0 {
        let _ = writeln!(out, "this host can run the catalog's lanes");
    } else {
        let _ = writeln!(
            out,
            "{failures} check{} failed",
            if failures == 1 { "" } else { "s" }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine's hybrid layout: every controller on v1, a cgroup2 with none beside them.
    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn a_hybrid_host_has_its_controllers_on_v1_at_this_process_s_cgroups() {
        let own = "4:memory:/user.slice\n3:pids:/\n2:cpu:/\n1:name=systemd:/\n0::/\n";
        let (version, controllers) = cgroups(HYBRID, own, &|_| Some(String::new()));
        assert_eq!(version, "hybrid");
        let names: Vec<(&str, &str, PathBuf)> = controllers
            .iter()
            .map(|c| (c.name.as_str(), c.hierarchy, c.path.clone()))
            .collect();
        assert_eq!(
            names,
            [
                ("cpu", "v1", PathBuf::from("/sys/fs/cgroup/cpu")),
                (
                    "memory",
                    "v1",
                    PathBuf::from("/sys/fs/cgroup/memory/user.slice")
                ),
                ("pids", "v1", PathBuf::from("/sys/fs/cgroup/pids")),
            ]
        );
    }

    #[test]
    fn a_v2_host_offers_the_controllers_of_its_own_cgroup() {
        let mountinfo = "30 23 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let (version, controllers) = cgroups(mountinfo, "0::/user.slice/app\n", &|dir| {
            (dir == Path::new("/sys/fs/cgroup/user.slice/app"))
                .then(|| "cpu memory pids\n".to_owned())
        });
        assert_eq!(version, "v2");
        let names: Vec<&str> = controllers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["cpu", "memory", "pids"]);
        assert!(controllers.iter().all(|c| c.hierarchy == "v2"));
    }

    #[test]
    fn no_cgroup_mount_is_none() {
        let (version, controllers) = cgroups("1 0 8:1 / / rw - ext4 /dev/sda1 rw\n", "", &|_| None);
        assert_eq!(version, "none");
        assert!(controllers.is_empty());
    }
}
