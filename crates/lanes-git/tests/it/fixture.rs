//! Real git repositories in temporary directories, made with the `git` command-line tool
//! (lanes-testkit's), and opened with lanes-git.

pub(crate) use lanes_testkit::{Repo as Fixture, git_command, git_in};

/// Opens a fixture repository with lanes-git.
pub(crate) trait Open {
    fn repo(&self) -> lanes_git::Repo;
}

impl Open for Fixture {
    fn repo(&self) -> lanes_git::Repo {
        lanes_git::Repo::discover(&self.path).expect("discover the fixture repository")
    }
}
