//! `lanes hook install` and `lanes hook notify`: the installed hook, run by a real `git push`,
//! calls a loopback stand-in for the forge; and a notification that cannot be delivered never
//! fails.

#[path = "common/mod.rs"]
mod common;
mod stand_in;

use common::git_in;
use serde_json::json;
use stand_in::{Reply, StandIn, closed_port_url, lanes};
use std::path::Path;

fn bare_repo(parent: &Path, name: &str) -> std::path::PathBuf {
    let path = parent.join(name);
    git_in(parent, &["init", "-q", "--bare", name]);
    path
}

fn hook_of(git_dir: &Path) -> std::path::PathBuf {
    git_dir.join("hooks").join("post-receive")
}

#[test]
fn the_installed_hook_tells_the_forge_about_a_push() {
    let forge = StandIn::start(|_, _| Reply {
        status: 202,
        ..Reply::json(&json!({"created": [4]}))
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let bare = bare_repo(dir.path(), "app.git");
    let bare_arg = bare.to_str().expect("utf-8 path");
    let run = lanes(
        dir.path(),
        &[
            "hook", "install", "--repo", bare_arg, "--server", &forge.url,
        ],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let hook = hook_of(&bare);
    assert_eq!(
        run.stdout,
        format!(
            "installed {}: each push tells the forge at {} to read the refs of app\n",
            hook.display(),
            forge.url
        )
    );
    let script = std::fs::read_to_string(&hook).expect("hook written");
    assert!(
        script.contains(&format!(
            "'{}' hook notify --server '{}' --repo 'app'",
            env!("CARGO_BIN_EXE_lanes"),
            forge.url
        )),
        "{script}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&hook).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
    }

    // A real push runs it.
    let work = dir.path().join("work");
    std::fs::create_dir(&work).expect("mkdir");
    git_in(&work, &["init", "-q"]);
    std::fs::write(work.join("README.md"), "# app\n").expect("write");
    git_in(&work, &["add", "-A"]);
    git_in(&work, &["commit", "-q", "-m", "first"]);
    let push = common::git_command(&work)
        .args(["push", bare_arg, "main"])
        .output()
        .expect("git push runs");
    let stderr = String::from_utf8_lossy(&push.stderr);
    assert!(push.status.success(), "{stderr}");
    assert!(
        stderr.contains("lanes: the forge created run #4 of app"),
        "{stderr}"
    );
    let requests = forge.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].target, "/api/v1/repos/app/refs-changed");
    assert_eq!(
        requests[0].header("authorization"),
        None,
        "the hook is anonymous"
    );
}

#[test]
fn a_non_bare_repository_gets_the_hook_in_its_git_directory_named_after_its_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path().join("web");
    std::fs::create_dir(&repo).expect("mkdir");
    git_in(&repo, &["init", "-q"]);
    let run = lanes(
        dir.path(),
        &[
            "hook",
            "install",
            "--repo",
            "web",
            "--server",
            "http://forge.internal:9000",
        ],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let script = std::fs::read_to_string(hook_of(&repo.join(".git"))).expect("hook written");
    assert!(
        script.contains("--server 'http://forge.internal:9000' --repo 'web'"),
        "{script}"
    );

    let run = lanes(
        dir.path(),
        &["hook", "install", "--repo", "web", "--name", "frontend"],
        &[("LANES_SERVER", "http://10.0.0.5:8080")],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.starts_with("updated "), "{}", run.stdout);
    let script = std::fs::read_to_string(hook_of(&repo.join(".git"))).expect("hook written");
    assert!(
        script.contains("--server 'http://10.0.0.5:8080' --repo 'frontend'"),
        "{script}"
    );
}

#[test]
fn a_hook_lanes_did_not_write_is_only_replaced_with_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bare = bare_repo(dir.path(), "app.git");
    let hook = hook_of(&bare);
    std::fs::write(&hook, "#!/bin/sh\necho mine\n").expect("write");
    let bare_arg = bare.to_str().expect("utf-8 path");

    let run = lanes(dir.path(), &["hook", "install", "--repo", bare_arg], &[]);
    assert_eq!(run.code, 2);
    assert!(run.stdout.is_empty());
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "error: {} already exists and lanes did not write it",
            hook.display()
        )
    );
    assert!(
        lines[1].starts_with("  help: pass --force to replace it, or add this line to it: "),
        "{}",
        run.stderr
    );
    assert_eq!(
        std::fs::read_to_string(&hook).expect("read"),
        "#!/bin/sh\necho mine\n"
    );

    let run = lanes(
        dir.path(),
        &["hook", "install", "--repo", bare_arg, "--force"],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.starts_with("replaced "), "{}", run.stdout);
    let script = std::fs::read_to_string(&hook).expect("read");
    assert!(
        script.contains("hook notify --server 'http://127.0.0.1:8080' --repo 'app'"),
        "{script}"
    );
}

#[test]
fn install_refuses_a_directory_inside_a_repository_and_a_missing_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path().join("web");
    std::fs::create_dir_all(repo.join("src")).expect("mkdir");
    git_in(&repo, &["init", "-q"]);
    let run = lanes(dir.path(), &["hook", "install", "--repo", "web/src"], &[]);
    assert_eq!(run.code, 2);
    let top = std::fs::canonicalize(&repo).expect("canonical");
    assert_eq!(
        run.stderr,
        format!(
            "error: {}/src is inside the repository at {}, not a repository itself\n  help: pass the repository's own directory: --repo {}\n",
            top.display(),
            top.display(),
            top.display()
        )
    );
    assert!(!hook_of(&repo.join(".git")).exists());

    let run = lanes(dir.path(), &["hook", "install", "--repo", "nope"], &[]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.starts_with(&format!(
            "error: cannot use {}/nope as a repository: ",
            dir.path().display()
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn install_refuses_an_https_forge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bare = bare_repo(dir.path(), "app.git");
    let run = lanes(
        dir.path(),
        &[
            "hook",
            "install",
            "--repo",
            bare.to_str().expect("utf-8 path"),
            "--server",
            "https://ci.example.com",
        ],
        &[],
    );
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.starts_with(
            "error: cannot reach `https://ci.example.com`: https is not supported yet\n"
        ),
        "{}",
        run.stderr
    );
    assert!(!hook_of(&bare).exists());
}

#[test]
fn notify_warns_and_exits_0_when_nothing_listens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = closed_port_url();
    let run = lanes(
        dir.path(),
        &["hook", "notify", "--server", &url, "--repo", "app"],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.is_empty());
    assert!(
        run.stderr.starts_with(&format!(
            "warning: lanes could not tell the forge about this push: cannot reach the forge at {url}: "
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("the forge reads the refs at its next poll anyway"),
        "{}",
        run.stderr
    );
}

#[test]
fn notify_warns_and_exits_0_when_the_forge_refuses() {
    let forge = StandIn::start(|_, _| Reply::error(404, "not-found", "no repository `nope`"));
    let dir = tempfile::tempdir().expect("tempdir");
    let run = lanes(
        dir.path(),
        &["hook", "notify", "--server", &forge.url, "--repo", "nope"],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.starts_with(
            "warning: lanes could not tell the forge about this push: no repository `nope`\n"
        ),
        "{}",
        run.stderr
    );
    let run = lanes(
        dir.path(),
        &["hook", "notify", "--server", "https://x", "--repo", "nope"],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.starts_with("warning: "), "{}", run.stderr);
}
