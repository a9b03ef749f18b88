//! The filesystem sandbox a step runs in (Linux).
//!
//! A lane directory holds exactly the lane's fileset, so relative paths cannot reach other files.
//! The sandbox closes the absolute-path door: each step runs in its own mount namespace where
//! the repository and the lanes cache directory are covered by an empty read-only directory,
//! except the lane's own slot (its `src/`, `home/`, `tmp/`) and the cache mounts it holds, which
//! are mounted back at their usual paths. Everything else (the toolchains under `/usr`, `$HOME`,
//! `/opt`) stays as it is, so steps need no list of what to expose.
//!
//! It guards against steps that read undeclared files by accident, which would make a cache
//! hit lie; it is not a security boundary against a hostile step running as root.
//!
//! Setting up a namespace must happen in a single-threaded process, so `lanes` runs itself as
//! `lanes __sandbox --hide DIR... --keep DIR... --cwd DIR -- PROGRAM ARGS...`: [`enter`] makes
//! the namespace (a user namespace too when not root), mounts, changes directory and `exec`s
//! the step's program, which keeps the process id and the process group the executor watches.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The first argument that makes `lanes` act as the sandbox helper.
pub const ENTRY: &str = "__sandbox";

/// The exit code of the helper when it cannot set the sandbox up.
pub const SETUP_FAILED: i32 = 125;

/// What steps may not see, and the program that hides it.
#[derive(Clone, Debug)]
pub struct Sandbox {
    /// The `lanes` binary, run as `lanes __sandbox`.
    pub helper: PathBuf,
    /// Directories covered by an empty read-only directory: the repository, its git
    /// directory, the lanes cache directory.
    pub hide: Vec<PathBuf>,
}

impl Sandbox {
    /// The command line that runs `argv` in `cwd` inside the sandbox, with `keep` (directories
    /// under a hidden one) visible again.
    pub fn wrap(&self, keep: &[PathBuf], cwd: &Path, argv: Vec<String>) -> Vec<String> {
        let mut wrapped = vec![self.helper.display().to_string(), ENTRY.to_owned()];
        for dir in &self.hide {
            wrapped.extend(["--hide".to_owned(), dir.display().to_string()]);
        }
        for dir in keep {
            wrapped.extend(["--keep".to_owned(), dir.display().to_string()]);
        }
        wrapped.extend(["--cwd".to_owned(), cwd.display().to_string()]);
        wrapped.push("--".to_owned());
        wrapped.extend(argv);
        wrapped
    }

    /// Check once that the sandbox can be set up on this machine (namespaces allowed, the
    /// directories exist); the error says why not.
    pub fn probe(&self) -> Result<(), String> {
        let mut argv = self.wrap(&[], Path::new("/"), Vec::new());
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
                .unwrap_or(&message)
                .to_owned())
        }
    }
}

/// What the helper was asked to do.
#[derive(Debug, Default, PartialEq, Eq)]
struct Spec {
    hide: Vec<PathBuf>,
    keep: Vec<PathBuf>,
    cwd: PathBuf,
    probe: bool,
    argv: Vec<OsString>,
}

fn parse(args: &[OsString]) -> Result<Spec, String> {
    let mut spec = Spec::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .map(PathBuf::from)
                .ok_or_else(|| format!("{name} needs a directory"))
        };
        match arg.to_str() {
            Some("--hide") => spec.hide.push(value("--hide")?),
            Some("--keep") => spec.keep.push(value("--keep")?),
            Some("--cwd") => spec.cwd = value("--cwd")?,
            Some("--probe") => spec.probe = true,
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

/// Run as the sandbox helper with the arguments after [`ENTRY`]: set the sandbox up and
/// `exec` the program. Returns only when that failed, with the exit code to use.
pub fn enter(args: &[OsString]) -> i32 {
    let spec = match parse(args) {
        Ok(spec) => spec,
        Err(e) => {
            eprintln_failure(&format!("lanes {ENTRY}: {e}"));
            return 2;
        }
    };
    if let Err(e) = setup(&spec) {
        eprintln_failure(&format!("lanes: cannot set up the step sandbox: {e}"));
        return SETUP_FAILED;
    }
    if spec.probe {
        return 0;
    }
    use std::os::unix::process::CommandExt;
    let e = std::process::Command::new(&spec.argv[0])
        .args(&spec.argv[1..])
        .exec();
    eprintln_failure(&format!(
        "lanes: cannot run {}: {e}",
        spec.argv[0].to_string_lossy()
    ));
    127
}

/// The helper has no printer: its stderr is the step's log.
fn eprintln_failure(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{message}");
}

#[cfg(target_os = "linux")]
fn setup(spec: &Spec) -> Result<(), String> {
    use rustix::fs::CWD;
    use rustix::mount::{
        MountFlags, MountPropagationFlags, MoveMountFlags, OpenTreeFlags, mount, mount_change,
        mount_remount, move_mount, open_tree,
    };
    use rustix::thread::UnshareFlags;

    let covers = covers(&spec.hide);
    let covered = |path: &Path| covers.iter().any(|c| path.starts_with(c));
    let mut keep = Vec::new();
    let mut links = Vec::new();
    for dir in &spec.keep {
        let (dir, chain) = resolve(dir)?;
        links.extend(chain.into_iter().filter(|(link, _)| covered(link)));
        if covered(&dir) {
            keep.push(dir);
        }
    }

    let uid = rustix::process::getuid();
    let gid = rustix::process::getgid();
    if uid.is_root() {
        unshare(UnshareFlags::NEWNS).map_err(|e| format!("unshare(CLONE_NEWNS): {e}"))?;
    } else {
        // Without root, a user namespace grants the right to mount in the new mount
        // namespace; the step keeps its own uid and gid inside it.
        unshare(UnshareFlags::NEWUSER | UnshareFlags::NEWNS)
            .map_err(|e| format!("unshare(CLONE_NEWUSER | CLONE_NEWNS): {e}"))?;
        let write = |file: &str, text: String| {
            std::fs::write(format!("/proc/self/{file}"), text)
                .map_err(|e| format!("writing /proc/self/{file}: {e}"))
        };
        write("setgroups", "deny".to_owned())?;
        write("uid_map", format!("{0} {0} 1", uid.as_raw()))?;
        write("gid_map", format!("{0} {0} 1", gid.as_raw()))?;
    }
    // Nothing done below may reach the host's mount table.
    mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .map_err(|e| format!("making mounts private: {e}"))?;

    // Detached copies of what stays visible, taken before the covers go on.
    let mut kept = Vec::new();
    for dir in &keep {
        let tree = open_tree(
            CWD,
            dir,
            OpenTreeFlags::OPEN_TREE_CLONE
                | OpenTreeFlags::OPEN_TREE_CLOEXEC
                | OpenTreeFlags::AT_RECURSIVE,
        )
        .map_err(|e| format!("open_tree {}: {e}", dir.display()))?;
        kept.push((dir, tree));
    }
    let cover_flags = MountFlags::NOSUID | MountFlags::NODEV;
    for dir in &covers {
        mount(
            "lanes-sandbox",
            dir,
            "tmpfs",
            cover_flags,
            c"mode=0755,size=64k",
        )
        .map_err(|e| format!("covering {}: {e}", dir.display()))?;
    }
    for (dir, tree) in kept {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        move_mount(
            &tree,
            c"",
            CWD,
            dir,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .map_err(|e| format!("mounting {} back: {e}", dir.display()))?;
    }
    // A kept path reached through symlinks under a cover (a cache mount linked to a target
    // directory elsewhere) needs those links again.
    for (link, target) in links {
        if link.symlink_metadata().is_ok() {
            continue;
        }
        if let Some(parent) = link.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::os::unix::fs::symlink(&target, &link)
            .map_err(|e| format!("linking {} back: {e}", link.display()))?;
    }
    for dir in &covers {
        mount_remount(dir, cover_flags | MountFlags::RDONLY, c"")
            .map_err(|e| format!("making the cover of {} read-only: {e}", dir.display()))?;
    }
    // The old working directory is the uncovered one: leave it.
    rustix::process::chdir(&spec.cwd).map_err(|e| format!("{}: {e}", spec.cwd.display()))?;
    Ok(())
}

/// The real directory `path` names, and the symlinks followed to get there (each with its
/// target as written), so the path can be made to work again under a cover.
#[cfg(target_os = "linux")]
fn resolve(path: &Path) -> Result<(PathBuf, Vec<(PathBuf, PathBuf)>), String> {
    let fail = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut chain = Vec::new();
    let mut current = std::path::absolute(path).map_err(fail)?;
    // As many hops as the kernel follows before ELOOP.
    for _ in 0..40 {
        let (Some(parent), Some(name)) = (current.parent(), current.file_name()) else {
            break;
        };
        let parent = parent.canonicalize().map_err(fail)?;
        let here = parent.join(name);
        match std::fs::read_link(&here) {
            Ok(target) => {
                current = parent.join(&target);
                chain.push((here, target));
            }
            Err(_) => break,
        }
    }
    Ok((current.canonicalize().map_err(fail)?, chain))
}

/// `unshare(2)` without `CLONE_FILES`, the only flag that makes rustix call it unsafe.
#[cfg(target_os = "linux")]
#[expect(
    deprecated,
    reason = "rustix deprecated the safe unshare because of CLONE_FILES; this helper never \
              passes it and runs single-threaded before exec"
)]
fn unshare(flags: rustix::thread::UnshareFlags) -> rustix::io::Result<()> {
    debug_assert!(!flags.contains(rustix::thread::UnshareFlags::FILES));
    rustix::thread::unshare(flags)
}

#[cfg(not(target_os = "linux"))]
fn setup(_spec: &Spec) -> Result<(), String> {
    Err("the step sandbox needs Linux mount namespaces".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_and_parse_agree() {
        let sandbox = Sandbox {
            helper: "/bin/lanes".into(),
            hide: vec!["/repo".into(), "/cache".into()],
        };
        let argv = sandbox.wrap(
            &["/cache/work/a/0".into()],
            Path::new("/cache/work/a/0/src"),
            vec!["bash".into(), "-c".into(), "echo --hide".into()],
        );
        assert_eq!(argv[..2], ["/bin/lanes", ENTRY]);
        let args: Vec<OsString> = argv[2..].iter().map(OsString::from).collect();
        assert_eq!(
            parse(&args),
            Ok(Spec {
                hide: vec!["/repo".into(), "/cache".into()],
                keep: vec!["/cache/work/a/0".into()],
                cwd: "/cache/work/a/0/src".into(),
                probe: false,
                argv: ["bash", "-c", "echo --hide"].map(OsString::from).to_vec(),
            })
        );
    }

    #[test]
    fn parse_refuses_what_it_does_not_know() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(parse(&args(&["--cwd", "/", "--"])).is_err());
        assert!(parse(&args(&["--bogus", "--cwd", "/", "--", "true"])).is_err());
        assert!(parse(&args(&["--hide"])).is_err());
        assert!(parse(&args(&["--", "true"])).is_err());
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
