//! A git repository in a temporary directory, and the steps tests build history with.

use crate::binary::{Run, lanes_in};
use crate::git::git_in;
use std::path::PathBuf;

/// A git repository (or, from [`Repo::empty`], a directory that is none yet) in a temporary
/// directory of its own, removed when dropped.
#[derive(Debug)]
pub struct Repo {
    _dir: tempfile::TempDir,
    /// The working tree (a bare repository's directory, when a test made it bare).
    pub path: PathBuf,
}

impl Repo {
    /// A fresh repository on branch `main`, with no commit.
    pub fn new() -> Repo {
        Repo::with_branch("main")
    }

    /// A fresh repository on branch `branch`, with no commit.
    pub fn with_branch(branch: &str) -> Repo {
        let repo = Repo::empty();
        repo.git(&["init", "-q", "--initial-branch", branch]);
        repo
    }

    /// An empty directory, for a test that makes the repository itself (`init --bare`) or needs
    /// a directory that is not one.
    pub fn empty() -> Repo {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("repo");
        std::fs::create_dir(&path).expect("mkdir");
        Repo { _dir: dir, path }
    }

    /// A clone of `self` (a full clone unless `args` say otherwise), in its own temp dir; the
    /// `file://` URL makes `--depth` take effect.
    pub fn clone_with(&self, args: &[&str]) -> Repo {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("clone");
        let url = format!("file://{}", self.path.display());
        let mut all = vec!["clone", "-q"];
        all.extend_from_slice(args);
        all.push(&url);
        all.push(path.to_str().expect("utf-8 path"));
        git_in(dir.path(), &all);
        Repo { _dir: dir, path }
    }

    /// `git ARGS` in the repository; its trimmed standard output. Panics when git fails.
    pub fn git(&self, args: &[&str]) -> String {
        git_in(&self.path, args)
    }

    /// Writes `path` (relative, parents made) with `contents`.
    pub fn write(&self, path: &str, contents: &str) -> &Self {
        let full = self.path.join(path);
        std::fs::create_dir_all(full.parent().expect("has parent")).expect("mkdir");
        std::fs::write(full, contents).expect("write");
        self
    }

    pub fn remove(&self, path: &str) -> &Self {
        std::fs::remove_file(self.path.join(path)).expect("remove");
        self
    }

    pub fn chmod_x(&self, path: &str) -> &Self {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(self.path.join(path), std::fs::Permissions::from_mode(0o755))
            .expect("chmod +x");
        self
    }

    /// A symbolic link at `path` to `target`.
    pub fn symlink(&self, target: &str, path: &str) -> &Self {
        std::os::unix::fs::symlink(target, self.path.join(path)).expect("symlink");
        self
    }

    /// Stages everything and commits (an empty commit too); returns the commit id.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.commit_index(message)
    }

    /// Commits the index as it is (`add -A` would drop a gitlink with nothing on disk); returns
    /// the commit id.
    pub fn commit_index(&self, message: &str) -> String {
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// `lanes ARGS` in the repository (see [`lanes_in`]).
    pub fn lanes(&self, args: &[&str]) -> Run {
        lanes_in(&self.path, args, &[])
    }

    /// `lanes ARGS` in the repository with `env` besides the test's own.
    pub fn lanes_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        lanes_in(&self.path, args, env)
    }
}

impl Default for Repo {
    fn default() -> Repo {
        Repo::new()
    }
}
