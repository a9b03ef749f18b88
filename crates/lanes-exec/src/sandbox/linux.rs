//! The Linux sandbox helper and the PID 1 it starts. See the parent module for what they do.

use super::{ENTRY, PRIVATE, Spec, covers};
use rustix::fs::CWD;
use rustix::mount::{
    MountFlags, MountPropagationFlags, MoveMountFlags, OpenTreeFlags, mount, mount_change,
    mount_remount, move_mount, open_tree,
};
use rustix::process::Signal;
use rustix::thread::UnshareFlags;
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};

/// The helper: joins the cgroup, makes the namespaces and mounts, then runs the init (or, without
/// a PID namespace, becomes the step).
pub(super) fn helper(spec: &Spec) -> Result<i32, String> {
    die_with_parent(spec.parent)?;
    let pid = rustix::process::getpid().as_raw_nonzero().to_string();
    for procs in &spec.cgroups {
        std::fs::write(procs, &pid)
            .map_err(|e| format!("joining the step's cgroup {}: {e}", procs.display()))?;
    }
    let root = rustix::process::getuid().is_root();
    if spec.user.is_some() && !root {
        return Err("a step user needs lanes to run as root".to_owned());
    }
    if let (Some((uid, gid)), true) = (spec.user, root) {
        give(&spec.keep, &spec.mounts, uid, gid)?;
    }

    let mut back = None;
    let mut flags = UnshareFlags::NEWNS;
    if !spec.no_pid {
        flags |= UnshareFlags::NEWPID;
    }
    if !spec.no_ipc_uts {
        flags |= UnshareFlags::NEWIPC | UnshareFlags::NEWUTS;
    }
    if spec.no_net {
        flags |= UnshareFlags::NEWNET;
    }
    if root {
        unshare(flags).map_err(|e| format!("unshare({}): {e}", names(flags)))?;
    } else {
        // Without root, a user namespace grants the right to mount. The helper and the init are
        // root in it (so the init keeps the right to mount `/proc` across its exec); the step
        // gets the invoking user back in a nested user namespace, where it holds no capability
        // over these mounts.
        let uid = rustix::process::getuid().as_raw();
        let gid = rustix::process::getgid().as_raw();
        unshare(flags | UnshareFlags::NEWUSER)
            .map_err(|e| format!("unshare({}): {e}", names(flags | UnshareFlags::NEWUSER)))?;
        map_ids(0, uid, 0, gid)?;
        back = Some((uid, gid));
    }
    if spec.no_net {
        loopback_up().map_err(|e| format!("bringing the loopback interface up: {e}"))?;
    }
    if !spec.no_ipc_uts {
        rustix::system::sethostname(b"lanes").map_err(|e| format!("sethostname: {e}"))?;
    }
    mounts(spec)?;

    if spec.no_pid {
        if spec.probe {
            return Ok(0);
        }
        // No init: the helper becomes the step, keeping the pid the executor watches.
        let mut command = step_command(spec, back);
        let e = command.exec();
        return Err(format!(
            "cannot run {}: {e}",
            spec.argv[0].to_string_lossy()
        ));
    }
    // SIGTERM and SIGINT reach the whole process group; the helper outlives them so the step
    // gets its grace period, and dies only by SIGKILL (which takes its init, and so every
    // process of the step, with it).
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        signal_hook::flag::register(signal, flag).map_err(|e| format!("signal handler: {e}"))?;
    }
    let mut init = std::process::Command::new("/proc/self/exe");
    init.arg(ENTRY).arg("--init");
    if spec.probe {
        init.arg("--probe");
    }
    if let Some((uid, gid)) = spec.user {
        init.arg("--user").arg(format!("{uid}:{gid}"));
    }
    if let Some((uid, gid)) = back {
        init.arg("--back").arg(format!("{uid}:{gid}"));
    }
    init.arg("--cwd").arg(&spec.cwd).arg("--").args(&spec.argv);
    let mut child = init
        .spawn()
        .map_err(|e| format!("cannot start the sandbox's init: {e}"))?;
    let status = child
        .wait()
        .map_err(|e| format!("waiting for the sandbox's init: {e}"))?;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// PID 1 of the step's PID namespace: mounts its `/proc`, runs the step, reaps orphans, and exits
/// with the step, which kills whatever else is left in the namespace.
pub(super) fn init(spec: &Spec) -> Result<i32, String> {
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
        .map_err(|e| format!("PR_SET_PDEATHSIG: {e}"))?;
    mount(
        "proc",
        "/proc",
        "proc",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        c"",
    )
    .map_err(|e| format!("mounting /proc: {e}"))?;
    if spec.probe {
        return Ok(0);
    }
    let child = step_command(spec, spec.back)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", spec.argv[0].to_string_lossy()))?;
    let step = child.id();
    // The step's status is read here, not through `child`, since this loop reaps every child.
    drop(child);
    loop {
        match rustix::process::wait(rustix::process::WaitOptions::empty()) {
            Ok(Some((pid, status))) if pid.as_raw_nonzero().get() as u32 == step => {
                return Ok(status
                    .exit_status()
                    .or_else(|| status.terminating_signal().map(|s| 128 + s))
                    .unwrap_or(1));
            }
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(format!("waiting for the step: {e}")),
        }
    }
}

/// The step itself: its program, directory and identity, with no way to gain privileges
/// (set-user-id programs run with the step's own rights). With `back`, through `--drop`, which
/// gives the step the invoking user's ids in a nested user namespace first.
fn step_command(spec: &Spec, back: Option<(u32, u32)>) -> std::process::Command {
    // prctl(PR_SET_NO_NEW_PRIVS) only fails on kernels older than 3.5, where nothing else of
    // the sandbox (user namespaces, cgroup v2) works either.
    let _ = rustix::thread::set_no_new_privs(true);
    if let Some((uid, gid)) = back {
        let mut command = std::process::Command::new("/proc/self/exe");
        command
            .arg(ENTRY)
            .arg("--drop")
            .arg("--back")
            .arg(format!("{uid}:{gid}"))
            .arg("--cwd")
            .arg(&spec.cwd)
            .arg("--")
            .args(&spec.argv);
        return command;
    }
    let mut command = std::process::Command::new(&spec.argv[0]);
    command.args(&spec.argv[1..]).current_dir(&spec.cwd);
    if let Some((uid, gid)) = spec.user {
        // As root, std also drops every supplementary group.
        command.uid(uid).gid(gid);
    }
    command
}

/// The step without root: back to the invoking user's ids in a nested user namespace, then
/// the step's program (its exec as a non-zero uid leaves it no capability).
pub(super) fn drop_back(spec: &Spec) -> Result<i32, String> {
    let (uid, gid) = spec.back.ok_or("--drop needs --back")?;
    unshare(UnshareFlags::NEWUSER).map_err(|e| format!("unshare(CLONE_NEWUSER): {e}"))?;
    map_ids(uid, 0, gid, 0)?;
    let spec = Spec {
        back: None,
        ..Spec {
            cwd: spec.cwd.clone(),
            argv: spec.argv.clone(),
            ..Spec::default()
        }
    };
    let e = step_command(&spec, None).exec();
    Err(format!(
        "cannot run {}: {e}",
        spec.argv[0].to_string_lossy()
    ))
}

/// Map `inside_uid` to `outside_uid` (and the gids) in the user namespace just made.
fn map_ids(
    inside_uid: u32,
    outside_uid: u32,
    inside_gid: u32,
    outside_gid: u32,
) -> Result<(), String> {
    let write = |file: &str, text: String| {
        std::fs::write(format!("/proc/self/{file}"), text)
            .map_err(|e| format!("writing /proc/self/{file}: {e}"))
    };
    write("setgroups", "deny".to_owned())?;
    write("uid_map", format!("{inside_uid} {outside_uid} 1"))?;
    write("gid_map", format!("{inside_gid} {outside_gid} 1"))
}

/// Die with the process that started the helper, and stop if it is already gone.
fn die_with_parent(parent: Option<i32>) -> Result<(), String> {
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
        .map_err(|e| format!("PR_SET_PDEATHSIG: {e}"))?;
    if let Some(parent) = parent
        && rustix::process::getppid().map(|p| p.as_raw_nonzero().get()) != Some(parent)
    {
        return Err("the process that started the step is gone".to_owned());
    }
    Ok(())
}

/// Give the step identity its directories: everything under a kept directory (lanes wrote
/// them as its own user), the top of each cache mount.
fn give(keep: &[PathBuf], mounts: &[PathBuf], uid: u32, gid: u32) -> Result<(), String> {
    for dir in keep {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        crate::slot::give(dir, uid, gid)
            .map_err(|e| format!("giving {} to the step user: {e}", dir.display()))?;
    }
    for dir in mounts {
        std::os::unix::fs::lchown(dir, Some(uid), Some(gid))
            .map_err(|e| format!("giving {} to the step user: {e}", dir.display()))?;
    }
    Ok(())
}

/// Hide, keep, expose and make private, in the new mount namespace.
fn mounts(spec: &Spec) -> Result<(), String> {
    let covers: Vec<PathBuf> = covers(&spec.hide)
        .into_iter()
        .filter(|c| !PRIVATE.iter().any(|p| c.starts_with(p)))
        .collect();
    let private: Vec<&Path> = PRIVATE
        .iter()
        .map(Path::new)
        .filter(|p| p.is_dir())
        .collect();
    let covered = |path: &Path| {
        covers.iter().any(|c| path.starts_with(c)) || private.iter().any(|p| path.starts_with(p))
    };
    // What stays visible: writable (slot, mounts), then read-only (exposed toolchains).
    let mut visible: Vec<(PathBuf, bool)> = Vec::new();
    let mut links = Vec::new();
    let wanted = spec
        .keep
        .iter()
        .chain(&spec.mounts)
        .map(|d| (d, false))
        .chain(spec.expose.iter().map(|d| (d, true)));
    for (dir, read_only) in wanted {
        let Ok((real, chain)) = resolve(dir) else {
            // An exposed directory this host does not have is no error; a kept one is.
            if read_only {
                continue;
            }
            return Err(format!("{} does not exist", dir.display()));
        };
        links.extend(chain.into_iter().filter(|(link, _)| covered(link)));
        if covered(&real) {
            visible.push((real, read_only));
        }
    }

    // Nothing done below may reach the host's mount table.
    mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .map_err(|e| format!("making mounts private: {e}"))?;
    // Detached copies of what stays visible, taken before the covers go on.
    let mut trees: Vec<(&Path, bool, OwnedFd)> = Vec::new();
    for (dir, read_only) in &visible {
        let tree = open_tree(
            CWD,
            dir,
            OpenTreeFlags::OPEN_TREE_CLONE
                | OpenTreeFlags::OPEN_TREE_CLOEXEC
                | OpenTreeFlags::AT_RECURSIVE,
        )
        .map_err(|e| format!("open_tree {}: {e}", dir.display()))?;
        trees.push((dir, *read_only, tree));
    }
    let cover_flags = MountFlags::NOSUID | MountFlags::NODEV;
    for dir in &private {
        mount("lanes-private", *dir, "tmpfs", cover_flags, c"mode=1777")
            .map_err(|e| format!("mounting a private {}: {e}", dir.display()))?;
    }
    // A hidden file (one holding a secret) is covered by a device no one may open.
    let (covers, files): (Vec<PathBuf>, Vec<PathBuf>) =
        covers.into_iter().partition(|c| c.is_dir());
    for file in &files {
        mount("/dev/null", file, "", MountFlags::BIND, c"")
            .map_err(|e| format!("covering {}: {e}", file.display()))?;
        let flags = MountFlags::BIND
            | MountFlags::RDONLY
            | MountFlags::NOSUID
            | MountFlags::NODEV
            | MountFlags::NOEXEC;
        mount_remount(file, flags, c"")
            .map_err(|e| format!("making the cover of {} unopenable: {e}", file.display()))?;
    }
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
    for (dir, read_only, tree) in trees {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        move_mount(
            &tree,
            c"",
            CWD,
            dir,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .map_err(|e| format!("mounting {} back: {e}", dir.display()))?;
        if read_only {
            // A remount must keep the flags the kernel locked on the original mount.
            let kept = rustix::fs::statvfs(dir)
                .map(|s| s.f_flag)
                .map_err(|e| format!("statvfs {}: {e}", dir.display()))?;
            let mut flags = MountFlags::BIND | MountFlags::RDONLY;
            for (vfs, mnt) in [
                (rustix::fs::StatVfsMountFlags::NOSUID, MountFlags::NOSUID),
                (rustix::fs::StatVfsMountFlags::NODEV, MountFlags::NODEV),
                (rustix::fs::StatVfsMountFlags::NOEXEC, MountFlags::NOEXEC),
            ] {
                if kept.contains(vfs) {
                    flags |= mnt;
                }
            }
            mount_remount(dir, flags, c"")
                .map_err(|e| format!("making {} read-only: {e}", dir.display()))?;
        }
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
    Ok(())
}

/// The real directory `path` names, and the symlinks followed to get there (each with its
/// target as written), so the path can be made to work again under a cover.
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

/// Bring `lo` up in the new network namespace: one `RTM_NEWLINK` request over rtnetlink, and its
/// acknowledgement. `lo` is interface 1 in every network namespace.
fn loopback_up() -> std::io::Result<()> {
    use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType};
    const RTM_NEWLINK: u16 = 16;
    const NLM_F_REQUEST: u16 = 1;
    const NLM_F_ACK: u16 = 4;
    const NLMSG_ERROR: u16 = 2;
    const IFF_UP: u32 = 1;
    let socket = rustix::net::socket(AddressFamily::NETLINK, SocketType::RAW, None)?;
    let mut message = Vec::with_capacity(32);
    message.extend_from_slice(&32u32.to_ne_bytes()); // nlmsg_len
    message.extend_from_slice(&RTM_NEWLINK.to_ne_bytes()); // nlmsg_type
    message.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes()); // nlmsg_flags
    message.extend_from_slice(&1u32.to_ne_bytes()); // nlmsg_seq
    message.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid
    message.extend_from_slice(&[0, 0]); // ifi_family (AF_UNSPEC), padding
    message.extend_from_slice(&0u16.to_ne_bytes()); // ifi_type
    message.extend_from_slice(&1i32.to_ne_bytes()); // ifi_index
    message.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_flags
    message.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_change
    rustix::net::send(&socket, &message, SendFlags::empty())?;
    let mut buffer = [0u8; 256];
    let (length, _) = rustix::net::recv(&socket, &mut buffer[..], RecvFlags::empty())?;
    let reply = &buffer[..length.min(buffer.len())];
    // nlmsghdr (16 bytes), then for NLMSG_ERROR the error code (0 is the acknowledgement).
    let kind = reply.get(4..6).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let code = reply
        .get(16..20)
        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    match (kind, code) {
        (Some(NLMSG_ERROR), Some(0)) => Ok(()),
        (Some(NLMSG_ERROR), Some(code)) => Err(std::io::Error::from_raw_os_error(-code)),
        _ => Err(std::io::Error::other("unexpected rtnetlink reply")),
    }
}

/// `CLONE_NEWUSER | CLONE_NEWNS`, as the kernel's documentation names them.
fn names(flags: UnshareFlags) -> String {
    [
        (UnshareFlags::NEWUSER, "CLONE_NEWUSER"),
        (UnshareFlags::NEWNS, "CLONE_NEWNS"),
        (UnshareFlags::NEWPID, "CLONE_NEWPID"),
        (UnshareFlags::NEWNET, "CLONE_NEWNET"),
        (UnshareFlags::NEWIPC, "CLONE_NEWIPC"),
        (UnshareFlags::NEWUTS, "CLONE_NEWUTS"),
    ]
    .iter()
    .filter(|(flag, _)| flags.contains(*flag))
    .map(|(_, name)| *name)
    .collect::<Vec<_>>()
    .join(" | ")
}

/// `unshare(2)` without `CLONE_FILES`, the only flag that makes rustix call it unsafe.
#[expect(
    deprecated,
    reason = "rustix deprecated the safe unshare because of CLONE_FILES; this helper never \
              passes it and runs single-threaded"
)]
fn unshare(flags: UnshareFlags) -> rustix::io::Result<()> {
    debug_assert!(!flags.contains(UnshareFlags::FILES));
    rustix::thread::unshare(flags)
}
