//! `lanes hook install` and `lanes hook notify`: the installed hook, run by a real `git push`,
//! tells a real forge (started with `--poll-interval 1h`, so only the hook can make it read the
//! refs) about the push; a notification the forge refuses, or that nothing receives, never fails.
//! Installing needs no forge at all. `cli.rs` has the hook's run turning green and a push with
//! the forge down.

use lanes_testkit::Forge;
use lanes_testkit::{Run, git_in, lanes_in};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

const CATALOG: &str = r#"version = 1
[lane.test]
class = "required"
step = [{ name = "test", run = "echo tested" }]
"#;

/// A forge that reads the refs only when told to (or at start).
fn forge() -> Forge {
    let forge = Forge::with_args(CATALOG, &[], &["--poll-interval", "1h"]);
    let head = forge.git(&["rev-parse", "HEAD"]);
    forge.wait_done("main", &head);
    forge
}

/// A loopback address nothing listens on (bound, then released).
fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    drop(listener);
    format!("http://{addr}")
}

fn bare_repo(parent: &Path, name: &str) -> PathBuf {
    git_in(parent, &["init", "-q", "--bare", name]);
    parent.join(name)
}

/// A repository with a working tree, `parent/name`.
fn work_repo(parent: &Path, name: &str) -> PathBuf {
    let repo = parent.join(name);
    std::fs::create_dir(&repo).expect("mkdir");
    git_in(&repo, &["init", "-q"]);
    repo
}

fn hook_of(git_dir: &Path) -> PathBuf {
    git_dir.join("hooks").join("post-receive")
}

/// `lanes hook install` succeeded, its output starts with `said`, and the hook it wrote at `hook`
/// contains `text`.
fn assert_installed(run: &Run, said: &str, hook: &Path, text: &str) {
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.starts_with(said), "{}", run.stdout);
    let script = std::fs::read_to_string(hook).expect("hook written");
    assert!(script.contains(text), "{script}");
}

/// What the hook printed, without the `remote: ` git puts before each line.
fn hook_lines(pushed: &str) -> Vec<&str> {
    pushed
        .lines()
        .map(|l| l.strip_prefix("remote: ").unwrap_or(l).trim_end())
        .collect()
}

#[test]
fn the_installed_hook_has_the_forge_create_the_run_before_the_push_returns() {
    let forge = forge();
    let origin = forge.origin.to_str().expect("utf-8 path");
    let server = format!("http://{}", forge.addr);
    // No token anywhere: the hook's endpoint is open.
    let run = lanes_in(
        forge.root.path(),
        &["hook", "install", "--repo", origin, "--server", &server],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let hook = hook_of(&forge.origin);
    assert_eq!(
        run.stdout,
        format!(
            "installed {}: each push tells the forge at {server} to read the refs of origin\n",
            std::fs::canonicalize(&forge.origin)
                .expect("canonical")
                .join("hooks")
                .join("post-receive")
                .display(),
        )
    );
    let script = std::fs::read_to_string(&hook).expect("hook written");
    assert!(
        // The hook names the binary as the running lanes finds itself: links resolved (CI
        // reaches the target directory through a link).
        script.contains(&format!(
            "'{}' hook notify --server '{server}' --repo 'origin'",
            std::fs::canonicalize(env!("CARGO_BIN_EXE_lanes"))
                .expect("the lanes binary")
                .display(),
        )),
        "{script}"
    );
    assert!(
        !script.contains(&forge.token) && !script.contains("LANES_TOKEN"),
        "the hook carries no token: {script}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&hook).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
    }

    // A real push runs it; the forge, which would not poll for an hour, has the run when the
    // push returns.
    forge.git(&["checkout", "-q", "-b", "feature"]);
    forge.write("src/a.txt", "a\n");
    let head = forge.commit("through the hook");
    assert!(forge.seen_branch("feature").is_none());
    let pushed = forge.git_push("feature");
    assert!(
        hook_lines(&pushed).contains(&"lanes: the forge created run #2 of origin"),
        "{pushed}"
    );
    let status = forge
        .seen_branch("feature")
        .unwrap_or_else(|| panic!("the forge has the branch once the push returns: {pushed}"));
    assert_eq!(status["run"]["number"], 2, "{status:#}");
    assert_eq!(status["run"]["head"], head.as_str(), "{status:#}");
    let status = forge.wait_done("feature", &head);
    assert_eq!(
        status["run"]["number"], 2,
        "one run for one push: {status:#}"
    );
}

#[test]
fn a_non_bare_repository_gets_the_hook_in_its_git_directory_named_after_its_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = work_repo(dir.path(), "web");
    let run = lanes_in(
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
    let hook = hook_of(&repo.join(".git"));
    let text = "--server 'http://forge.internal:9000' --repo 'web'";
    assert_installed(&run, "installed ", &hook, text);

    let run = lanes_in(
        dir.path(),
        &["hook", "install", "--repo", "web", "--name", "frontend"],
        &[("LANES_SERVER", "http://10.0.0.5:8080")],
    );
    let text = "--server 'http://10.0.0.5:8080' --repo 'frontend'";
    assert_installed(&run, "updated ", &hook, text);
}

#[test]
fn a_hook_lanes_did_not_write_is_only_replaced_with_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bare = bare_repo(dir.path(), "app.git");
    let hook = hook_of(&bare);
    std::fs::write(&hook, "#!/bin/sh\necho mine\n").expect("write");
    let bare_arg = bare.to_str().expect("utf-8 path");

    let run = lanes_in(dir.path(), &["hook", "install", "--repo", bare_arg], &[]);
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

    let run = lanes_in(
        dir.path(),
        &["hook", "install", "--repo", bare_arg, "--force"],
        &[],
    );
    let text = "hook notify --server 'http://127.0.0.1:8080' --repo 'app'";
    assert_installed(&run, "replaced ", &hook, text);
}

#[test]
fn install_refuses_a_directory_inside_a_repository_and_a_missing_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = work_repo(dir.path(), "web");
    std::fs::create_dir(repo.join("src")).expect("mkdir");
    let run = lanes_in(dir.path(), &["hook", "install", "--repo", "web/src"], &[]);
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

    let run = lanes_in(dir.path(), &["hook", "install", "--repo", "nope"], &[]);
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
    let run = lanes_in(
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
    let run = lanes_in(
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
    let forge = forge();
    let server = format!("http://{}", forge.addr);
    let run = lanes_in(
        forge.root.path(),
        &["hook", "notify", "--server", &server, "--repo", "nope"],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    let refused = |line: &str| {
        line.starts_with("warning: lanes could not tell the forge about this push: ")
            && line.ends_with("repository `nope` not found")
    };
    assert!(
        run.stderr.lines().next().is_some_and(refused),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("the forge reads the refs at its next poll anyway"),
        "{}",
        run.stderr
    );
    // What the warning reports: the forge's refusal, not a broken connection.
    let answer = forge.request_as("POST", "/api/v1/repos/nope/refs-changed", None, None);
    assert_eq!(answer.status, 404, "{}", answer.text());

    // A hook installed under a name the forge does not serve never fails the push (`git_push`
    // asserts it succeeded), and the forge reads nothing.
    let origin = forge.origin.to_str().expect("utf-8 path");
    let install = lanes_in(
        forge.root.path(),
        &[
            "hook", "install", "--repo", origin, "--server", &server, "--name", "nope",
        ],
        &[],
    );
    assert_eq!(install.code, 0, "{}", install.stderr);
    forge.git(&["checkout", "-q", "-b", "feature"]);
    forge.commit("the forge is not told");
    let pushed = forge.git_push("feature");
    assert!(hook_lines(&pushed).into_iter().any(refused), "{pushed}");
    assert!(forge.seen_branch("feature").is_none());

    let run = lanes_in(
        forge.root.path(),
        &["hook", "notify", "--server", "https://x", "--repo", "nope"],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.starts_with("warning: "), "{}", run.stderr);
}
