//! The boundary a step runs behind (Linux): namespaces, a step identity, cgroups.
//!
//! Steps are untrusted code: whoever can push can run anything in one. Each step runs through
//! `lanes __sandbox`, which, before it runs the step:
//! - joins the step's cgroup ([`crate::cgroup`]) so limits hold and the whole tree can be killed;
//! - makes new mount, PID, IPC and UTS namespaces, and a network namespace with only its own
//!   loopback (up) when the step may not use the network; a user namespace too when not root;
//! - covers the repository, the cache directory, the forge's data directory and whatever else it
//!   is told to hide with empty read-only directories, puts the lane's slot and held cache mounts
//!   back (writable), and the exposed toolchain directories back read-only; `/tmp` and `/dev/shm`
//!   are the step's own;
//! - starts `lanes __sandbox --init` as PID 1 of the new PID namespace. That init mounts a `/proc`
//!   of the namespace (the step sees only its own processes), runs the step as the step identity
//!   when one is set (never as the forge's user), reaps orphans and exits with the step. When
//!   PID 1 exits, the kernel kills every process left in the namespace, `setsid` or not.
//!
//! The helper dies with the process that started it (`PR_SET_PDEATHSIG`), and the init with the
//! helper, so a SIGKILL of `lanes serve` or an agent ends every process of its steps.
//!
//! Namespace setup must happen in a single-threaded process, which is why lanes runs itself as
//! the helper rather than doing this in its own (multi-threaded) process.

use crate::cgroup::{Hierarchy, Limits};
use std::ffi::OsString;
use std::path::PathBuf;

/// The first argument that makes `lanes` act as the sandbox helper.
pub const ENTRY: &str = "__sandbox";

/// The exit code of the helper when it cannot set the sandbox up.
pub const SETUP_FAILED: i32 = 125;

/// A numeric user and group a step runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepUser {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

impl StepUser {
    /// `NAME`, `UID` or `UID:GID`; a name is looked up in `/etc/passwd`.
    pub fn parse(text: &str) -> Result<StepUser, String> {
        if let Some((uid, gid)) = text.split_once(':') {
            return match (uid.parse(), gid.parse()) {
                (Ok(uid), Ok(gid)) => Ok(StepUser { uid, gid }),
                _ => Err(format!("`{text}` is not UID:GID")),
            };
        }
        if let Ok(uid) = text.parse() {
            return Ok(StepUser { uid, gid: uid });
        }
        let passwd = std::fs::read_to_string("/etc/passwd")
            .map_err(|e| format!("cannot read /etc/passwd to find `{text}`: {e}"))?;
        passwd
            .lines()
            .find_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                (fields.len() > 3 && fields[0] == text).then(|| {
                    Some(StepUser {
                        uid: fields[2].parse().ok()?,
                        gid: fields[3].parse().ok()?,
                    })
                })?
            })
            .ok_or_else(|| format!("no user `{text}` in /etc/passwd"))
    }

    /// The identity steps of a forge or agent running as root get when none is configured:
    /// `lanes-step` when it exists, else `nobody`.
    pub fn default_for_root() -> StepUser {
        StepUser::parse("lanes-step")
            .or_else(|_| StepUser::parse("nobody"))
            .unwrap_or(StepUser {
                uid: 65534,
                gid: 65534,
            })
    }
}

/// The namespaces a sandbox makes besides the mount namespace, which it always makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parts {
    /// A PID namespace with lanes' init as PID 1, and its own `/proc`.
    pub pid: bool,
    /// A network namespace (loopback only) for steps with `network = false`.
    pub net: bool,
    /// IPC and UTS namespaces.
    pub ipc_uts: bool,
}

impl Parts {
    /// Every part on.
    pub const ALL: Parts = Parts {
        pid: true,
        net: true,
        ipc_uts: true,
    };
}

/// What steps may not see, and the program that hides it.
#[derive(Clone, Debug)]
pub struct Sandbox {
    /// The `lanes` binary, run as `lanes __sandbox`.
    pub helper: PathBuf,
    /// Directories covered by an empty read-only directory: the repository, its git
    /// directory, the lanes cache directory, the forge's data directory, the agent user's home;
    /// files (the forge's secret files) covered by a device no step may open.
    pub hide: Vec<PathBuf>,
    /// Directories under hidden ones that steps may read and run but not change (toolchains,
    /// such as a rustup install under the agent user's home).
    pub expose: Vec<PathBuf>,
    /// Who steps run as; `None` keeps the invoking user (`lanes run`).
    pub user: Option<StepUser>,
    /// The namespaces in use.
    pub parts: Parts,
    /// Where step cgroups go; `None` when this machine gives lanes none (no limits then).
    pub cgroups: Option<Hierarchy>,
    /// Limits for steps whose lane and step set none (the forge's per-repository defaults).
    pub limits: Limits,
}

/// A sandbox fitted to the host, and what it could not have.
#[derive(Debug)]
pub struct Fitted {
    /// The sandbox, with only the parts this host can make.
    pub sandbox: Sandbox,
    /// The namespaces turned off, each with what that costs.
    pub lost: Vec<String>,
    /// Why there are no cgroups (no limits, no `oom-killed`), when there are none.
    pub cgroups: Option<String>,
}

/// One step's place in the sandbox.
#[derive(Clone, Debug, Default)]
pub struct Confinement {
    /// Writable directories under hidden ones, owned by the step identity: the lane's slot.
    pub keep: Vec<PathBuf>,
    /// Writable directories under hidden ones whose top only is given to the step identity: the
    /// held cache mounts (their contents are the step identity's own from earlier steps).
    pub mounts: Vec<PathBuf>,
    /// The step's working directory.
    pub cwd: PathBuf,
    /// Whether the step may use the host's network.
    pub network: bool,
}

impl Sandbox {
    /// A sandbox with every part on, hiding `hide`; the caller adds what else it needs and then
    /// calls [`Sandbox::probe`].
    pub fn new(helper: PathBuf, hide: Vec<PathBuf>) -> Sandbox {
        Sandbox {
            helper,
            hide,
            expose: Vec::new(),
            user: None,
            parts: Parts::ALL,
            cgroups: None,
            limits: Limits::default(),
        }
    }

    /// The command line that runs `argv` as `confinement` says, joining `cgroup_procs`.
    pub fn wrap(
        &self,
        confinement: &Confinement,
        cgroup_procs: &[PathBuf],
        argv: Vec<String>,
    ) -> Vec<String> {
        let mut wrapped = vec![self.helper.display().to_string(), ENTRY.to_owned()];
        let mut add = |flag: &str, value: String| {
            wrapped.push(flag.to_owned());
            wrapped.push(value);
        };
        add("--parent", std::process::id().to_string());
        for dir in &self.hide {
            add("--hide", dir.display().to_string());
        }
        for dir in &self.expose {
            add("--expose", dir.display().to_string());
        }
        for dir in &confinement.keep {
            add("--keep", dir.display().to_string());
        }
        for dir in &confinement.mounts {
            add("--mount", dir.display().to_string());
        }
        for file in cgroup_procs {
            add("--cgroup", file.display().to_string());
        }
        if let Some(user) = self.user {
            add("--user", format!("{}:{}", user.uid, user.gid));
        }
        add("--cwd", confinement.cwd.display().to_string());
        if !self.parts.pid {
            wrapped.push("--no-pid".to_owned());
        }
        if !self.parts.ipc_uts {
            wrapped.push("--no-ipc-uts".to_owned());
        }
        if self.parts.net && !confinement.network {
            wrapped.push("--no-net".to_owned());
        }
        wrapped.push("--".to_owned());
        wrapped.extend(argv);
        wrapped
    }

    /// Check that this machine can make the sandbox, turning off the parts it cannot make.
    /// Returns what was turned off and what that costs, one line each (empty when all is on);
    /// an error when not even the mount namespace works.
    pub fn probe(&mut self) -> Result<Vec<String>, String> {
        let mut lost = Vec::new();
        if self.try_parts(self.parts).is_ok() {
            return Ok(lost);
        }
        let base = Parts {
            pid: false,
            net: false,
            ipc_uts: false,
        };
        self.try_parts(base)?;
        let mut parts = base;
        for (part, costs) in [
            (
                Parts { pid: true, ..base },
                "PID namespace: steps see the host's processes, and a process a step leaves \
                 behind outside its cgroup can outlive it",
            ),
            (
                Parts { net: true, ..base },
                "network namespace: `network = false` is not enforced, steps reach the network",
            ),
            (
                Parts {
                    ipc_uts: true,
                    ..base
                },
                "IPC and UTS namespaces: steps share the host's System V IPC and hostname",
            ),
        ] {
            match self.try_parts(part) {
                Ok(()) => {
                    parts.pid |= part.pid;
                    parts.net |= part.net;
                    parts.ipc_uts |= part.ipc_uts;
                }
                Err(why) => lost.push(format!("no {costs} ({why})")),
            }
        }
        self.parts = parts;
        Ok(lost)
    }

    fn try_parts(&self, parts: Parts) -> Result<(), String> {
        let probe = Sandbox {
            parts,
            ..self.clone()
        };
        let confinement = Confinement {
            cwd: "/".into(),
            ..Confinement::default()
        };
        let mut argv = probe.wrap(&confinement, &[], Vec::new());
        argv.insert(2, "--probe".to_owned());
        let output = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.helper.display()))?;
        if output.status.success() {
            Ok(())
        } else {
            let message = String::from_utf8_lossy(&output.stderr).trim().to_owned();
            Err(message
                .strip_prefix("lanes: ")
                .and_then(|m| m.strip_prefix("cannot set up the step sandbox: "))
                .unwrap_or(&message)
                .to_owned())
        }
    }

    /// Make this sandbox fit the host: probe the namespaces ([`Sandbox::probe`]), find the
    /// cgroups and remove what crashed lanes processes left in them.
    pub fn fit(mut self) -> Result<Fitted, String> {
        let lost = self.probe()?;
        let cgroups = match Hierarchy::detect() {
            Ok(hierarchy) => {
                hierarchy.sweep();
                self.cgroups = Some(hierarchy);
                None
            }
            Err(why) => Some(why),
        };
        Ok(Fitted {
            sandbox: self,
            lost,
            cgroups,
        })
    }

    /// One line per part, for `lanes doctor` and start-up messages.
    pub fn describe(&self) -> Vec<(String, bool)> {
        let user = match self.user {
            Some(u) => format!("steps run as uid {} gid {}", u.uid, u.gid),
            None => "steps run as the invoking user".to_owned(),
        };
        vec![
            (
                "mount namespace (repository, cache and data hidden)".to_owned(),
                true,
            ),
            (
                "PID namespace (own /proc, whole tree killed)".to_owned(),
                self.parts.pid,
            ),
            (
                "network namespace (loopback only for network = false)".to_owned(),
                self.parts.net,
            ),
            ("IPC and UTS namespaces".to_owned(), self.parts.ipc_uts),
            (
                match &self.cgroups {
                    Some(h) => format!("cgroups {} (limits, oom-killed, kill on end)", h.version()),
                    None => "cgroups (limits, oom-killed, kill on end)".to_owned(),
                },
                self.cgroups.is_some(),
            ),
            (user, self.user.is_some()),
        ]
    }
}

/// What the helper was asked to do.
#[derive(Debug, Default, PartialEq, Eq)]
struct Spec {
    init: bool,
    probe: bool,
    parent: Option<i32>,
    hide: Vec<PathBuf>,
    expose: Vec<PathBuf>,
    keep: Vec<PathBuf>,
    mounts: Vec<PathBuf>,
    cgroups: Vec<PathBuf>,
    user: Option<(u32, u32)>,
    cwd: PathBuf,
    no_pid: bool,
    no_net: bool,
    no_ipc_uts: bool,
    /// Without root: the invoking user's ids, which the step gets back in a nested user
    /// namespace (the helper and the init are root only inside the sandbox's own).
    back: Option<(u32, u32)>,
    /// Run as that nested step: map back to `back` and exec.
    drop: bool,
    argv: Vec<OsString>,
}

fn parse(args: &[OsString]) -> Result<Spec, String> {
    let mut spec = Spec::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .map(PathBuf::from)
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.to_str() {
            Some("--init") => spec.init = true,
            Some("--probe") => spec.probe = true,
            Some("--no-pid") => spec.no_pid = true,
            Some("--no-net") => spec.no_net = true,
            Some("--no-ipc-uts") => spec.no_ipc_uts = true,
            Some("--drop") => spec.drop = true,
            Some("--back") => {
                let v = value("--back")?;
                let ids = v
                    .to_str()
                    .and_then(|s| s.split_once(':'))
                    .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)))
                    .ok_or("--back needs UID:GID")?;
                spec.back = Some(ids);
            }
            Some("--parent") => {
                let v = value("--parent")?;
                spec.parent = Some(
                    v.to_str()
                        .and_then(|s| s.parse().ok())
                        .ok_or("--parent needs a process id")?,
                );
            }
            Some("--hide") => spec.hide.push(value("--hide")?),
            Some("--expose") => spec.expose.push(value("--expose")?),
            Some("--keep") => spec.keep.push(value("--keep")?),
            Some("--mount") => spec.mounts.push(value("--mount")?),
            Some("--cgroup") => spec.cgroups.push(value("--cgroup")?),
            Some("--user") => {
                let v = value("--user")?;
                let user = v
                    .to_str()
                    .and_then(|s| s.split_once(':'))
                    .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)))
                    .ok_or("--user needs UID:GID")?;
                spec.user = Some(user);
            }
            Some("--cwd") => spec.cwd = value("--cwd")?,
            Some("--") => {
                spec.argv = args.cloned().collect();
                break;
            }
            _ => return Err(format!("unexpected argument {}", arg.to_string_lossy())),
        }
    }
    if spec.argv.is_empty() && !spec.probe {
        return Err("no program to run".to_owned());
    }
    if spec.cwd.as_os_str().is_empty() {
        return Err("--cwd is missing".to_owned());
    }
    Ok(spec)
}

/// Directories every step gets empty and writable, its own: nothing a step leaves there reaches
/// another step, and nothing another process keeps there is visible.
const PRIVATE: [&str; 2] = ["/tmp", "/dev/shm"];

impl Sandbox {
    /// Why the step user could not walk down to `dir` (where lane slots and cache mounts live),
    /// if it could not: the first directory on the way that no cover replaces and that the user
    /// may not search. Below a cover (a hidden directory, `/tmp`), the way down is made by lanes
    /// and open to all. `None` also when steps keep the invoking user.
    pub fn unreachable(&self, dir: &std::path::Path) -> Option<String> {
        use std::os::unix::fs::MetadataExt;
        let user = self.user?;
        let dir = std::path::absolute(dir).ok()?;
        let mut covered: Vec<PathBuf> = covers(&self.hide);
        covered.extend(PRIVATE.iter().map(PathBuf::from));
        let mut way: Vec<&std::path::Path> = dir.ancestors().collect();
        way.reverse();
        for step in way {
            let real = step.canonicalize().unwrap_or_else(|_| step.to_owned());
            if covered.iter().any(|c| real.starts_with(c)) {
                return None;
            }
            let Ok(meta) = std::fs::metadata(&real) else {
                return None;
            };
            let mode = meta.mode();
            let searchable = mode & 0o001 != 0
                || (meta.uid() == user.uid && mode & 0o100 != 0)
                || (meta.gid() == user.gid && mode & 0o010 != 0);
            if !searchable {
                return Some(format!(
                    "{} (mode {:o}, owner {}:{}) does not let the step user {}:{} through",
                    real.display(),
                    mode & 0o7777,
                    meta.uid(),
                    meta.gid(),
                    user.uid,
                    user.gid
                ));
            }
        }
        None
    }
}

/// The hidden directories that need their own cover: existing, not `/`, not inside another
/// one (already covered). Canonical, so a symlinked path cannot dodge the cover.
fn covers(hide: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = hide
        .iter()
        .filter_map(|d| d.canonicalize().ok())
        .filter(|d| d.parent().is_some())
        .collect();
    dirs.sort();
    dirs.dedup();
    let mut covers: Vec<PathBuf> = Vec::new();
    for dir in dirs {
        if !covers.iter().any(|c| dir.starts_with(c)) {
            covers.push(dir);
        }
    }
    covers
}

/// Run as the sandbox helper with the arguments after [`ENTRY`]. Returns the exit code: the
/// step's (128 + signal when a signal ended it), or [`SETUP_FAILED`].
pub fn enter(args: &[OsString]) -> i32 {
    let spec = match parse(args) {
        Ok(spec) => spec,
        Err(e) => {
            eprintln_failure(&format!("lanes {ENTRY}: {e}"));
            return 2;
        }
    };
    let result = if spec.drop {
        linux::drop_back(&spec)
    } else if spec.init {
        linux::init(&spec)
    } else {
        linux::helper(&spec)
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln_failure(&format!("lanes: cannot set up the step sandbox: {e}"));
            SETUP_FAILED
        }
    }
}

/// Whether lanes runs as root (and so can give steps another identity).
pub fn is_root() -> bool {
    rustix::process::getuid().is_root()
}

/// The helper has no printer: its stderr is the step's log.
fn eprintln_failure(message: &str) {
    use std::io::Write;
    // With the log gone there is nowhere left to say it; the exit code still does.
    let _ = writeln!(std::io::stderr(), "{message}");
}

#[cfg(target_os = "linux")]
#[path = "sandbox/linux.rs"]
mod linux;

#[cfg(not(target_os = "linux"))]
mod linux {
    use super::Spec;

    pub(super) fn helper(_spec: &Spec) -> Result<i32, String> {
        Err("the step sandbox needs Linux namespaces (see docs/security.md for macOS)".to_owned())
    }

    pub(super) fn drop_back(_spec: &Spec) -> Result<i32, String> {
        Err("the step sandbox needs Linux namespaces".to_owned())
    }

    pub(super) fn init(_spec: &Spec) -> Result<i32, String> {
        Err("the step sandbox needs Linux namespaces".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox() -> Sandbox {
        Sandbox {
            user: Some(StepUser { uid: 7, gid: 8 }),
            expose: vec!["/root/.rustup".into()],
            ..Sandbox::new("/bin/lanes".into(), vec!["/repo".into(), "/cache".into()])
        }
    }

    #[test]
    fn wrap_and_parse_agree() {
        let confinement = Confinement {
            keep: vec!["/cache/work/a/0".into()],
            mounts: vec!["/cache/mounts/_default/target".into()],
            cwd: "/cache/work/a/0/src".into(),
            network: false,
        };
        let argv = sandbox().wrap(
            &confinement,
            &["/sys/fs/cgroup/memory/lanes/1-0/cgroup.procs".into()],
            vec!["bash".into(), "-c".into(), "echo --hide".into()],
        );
        assert_eq!(argv[..2], ["/bin/lanes", ENTRY]);
        let args: Vec<OsString> = argv[2..].iter().map(OsString::from).collect();
        assert_eq!(
            parse(&args),
            Ok(Spec {
                parent: Some(std::process::id() as i32),
                hide: vec!["/repo".into(), "/cache".into()],
                expose: vec!["/root/.rustup".into()],
                keep: vec!["/cache/work/a/0".into()],
                mounts: vec!["/cache/mounts/_default/target".into()],
                cgroups: vec!["/sys/fs/cgroup/memory/lanes/1-0/cgroup.procs".into()],
                user: Some((7, 8)),
                cwd: "/cache/work/a/0/src".into(),
                no_net: true,
                argv: ["bash", "-c", "echo --hide"].map(OsString::from).to_vec(),
                ..Spec::default()
            })
        );
    }

    #[test]
    fn a_step_with_the_network_keeps_the_host_network() {
        let confinement = Confinement {
            cwd: "/".into(),
            network: true,
            ..Confinement::default()
        };
        let argv = sandbox().wrap(&confinement, &[], vec!["true".into()]);
        assert!(!argv.contains(&"--no-net".to_owned()));
    }

    #[test]
    fn parse_refuses_what_it_does_not_know() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(parse(&args(&["--cwd", "/", "--"])).is_err());
        assert!(parse(&args(&["--bogus", "--cwd", "/", "--", "true"])).is_err());
        assert!(parse(&args(&["--hide"])).is_err());
        assert!(parse(&args(&["--", "true"])).is_err());
        assert!(parse(&args(&["--user", "7", "--cwd", "/", "--", "true"])).is_err());
    }

    #[test]
    fn step_users_are_numbers_or_names() {
        assert_eq!(StepUser::parse("7:8"), Ok(StepUser { uid: 7, gid: 8 }));
        assert_eq!(StepUser::parse("7"), Ok(StepUser { uid: 7, gid: 7 }));
        assert_eq!(StepUser::parse("root"), Ok(StepUser { uid: 0, gid: 0 }));
        assert!(StepUser::parse("no-such-user-here").is_err());
        assert!(StepUser::parse("7:x").is_err());
    }

    #[test]
    fn covers_skip_root_missing_and_nested_directories() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let outer = dir.path().canonicalize()?;
        let inner = outer.join("inner");
        std::fs::create_dir(&inner)?;
        let got = covers(&[
            inner.clone(),
            "/".into(),
            outer.join("missing"),
            outer.clone(),
            inner,
        ]);
        assert_eq!(got, vec![outer]);
        Ok(())
    }
}
