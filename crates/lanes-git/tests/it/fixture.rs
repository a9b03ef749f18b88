//! Real git repositories in temporary directories, made with the `git` command-line tool.

use std::path::Path;
use std::process::Command;

use lanes_git::Repo;
use tempfile::TempDir;

/// A temporary directory holding one or more repositories.
pub(crate) struct Fixture {
    dir: TempDir,
}

impl Fixture {
    /// An empty temporary directory.
    pub(crate) fn empty() -> Self {
        Fixture {
            dir: tempfile::tempdir().expect("create a temporary directory"),
        }
    }

    /// A fresh repository on branch `main`, with no commit.
    pub(crate) fn new() -> Self {
        Self::with_branch("main")
    }

    /// A fresh repository on branch `branch`, with no commit.
    pub(crate) fn with_branch(branch: &str) -> Self {
        let fixture = Self::empty();
        fixture.git(&["init", "--quiet", "--initial-branch", branch]);
        fixture
    }

    /// A clone of `origin` made with `git clone <args> file://<origin> .`; the `file://` URL
    /// makes `--depth` take effect.
    pub(crate) fn clone_of(origin: &Fixture, args: &[&str]) -> Self {
        let clone = Self::empty();
        let url = format!("file://{}", origin.path().display());
        let mut clone_args = vec!["clone", "--quiet"];
        clone_args.extend_from_slice(args);
        clone_args.extend_from_slice(&[&url, "."]);
        clone.git(&clone_args);
        clone
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Open the repository with lanes-git.
    pub(crate) fn repo(&self) -> Repo {
        Repo::discover(self.path()).expect("discover the fixture repository")
    }

    /// Run git in the repository and return its trimmed stdout; panic if it fails.
    pub(crate) fn git(&self, args: &[&str]) -> String {
        git_in(self.path(), args)
    }

    pub(crate) fn write(&self, rela_path: &str, contents: &str) {
        let path = self.path().join(rela_path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent directories");
        }
        std::fs::write(path, contents).expect("write a fixture file");
    }

    pub(crate) fn remove(&self, rela_path: &str) {
        std::fs::remove_file(self.path().join(rela_path)).expect("remove a fixture file");
    }

    pub(crate) fn chmod_x(&self, rela_path: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.path().join(rela_path);
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .expect("make a fixture file executable");
    }

    pub(crate) fn symlink(&self, target: &str, rela_path: &str) {
        std::os::unix::fs::symlink(target, self.path().join(rela_path))
            .expect("create a fixture symlink");
    }

    /// Stage everything and commit; return the new commit id.
    pub(crate) fn commit_all(&self, message: &str) -> String {
        self.git(&["add", "--all"]);
        self.commit_index(message)
    }

    /// Commit the index as it is (`add --all` would drop a gitlink with nothing on disk).
    pub(crate) fn commit_index(&self, message: &str) -> String {
        self.git(&["commit", "--quiet", "--allow-empty", "--message", message]);
        self.git(&["rev-parse", "HEAD"])
    }
}

/// Run git in `dir` and return its trimmed stdout; panic if it fails.
pub(crate) fn git_in(dir: &Path, args: &[&str]) -> String {
    let output = git_command(dir, args).output().expect("run git");
    assert!(
        output.status.success(),
        "git {args:?} failed in {}:\n{}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("git prints UTF-8 here")
        .trim_end()
        .to_owned()
}

/// A git command in `dir`, isolated from the user's and the system's configuration.
pub(crate) fn git_command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("git");
    command
        .args([
            "-c",
            "user.name=lanes",
            "-c",
            "user.email=lanes@example.invalid",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "tag.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "protocol.file.allow=always",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env_remove("GIT_OBJECT_DIRECTORY");
    command
}
