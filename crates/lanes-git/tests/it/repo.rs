use lanes_git::{GitError, Repo};

use crate::fixture::{Fixture, Open};

#[test]
fn discover_outside_a_repository_is_not_a_repository() {
    let dir = Fixture::empty();
    let err = Repo::discover(&dir.path).expect_err("an empty directory is no repository");
    assert!(
        matches!(&err, GitError::NotARepository { path } if path == &dir.path),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "not a git repository: {} (or any parent directory)",
            dir.path.display()
        )
    );
}

#[test]
fn discover_walks_up_from_a_subdirectory() {
    let fixture = Fixture::new();
    fixture.write("deep/er/file.txt", "x");
    let repo = Repo::discover(&fixture.path.join("deep/er")).expect("discover from below");
    let workdir = repo.workdir().expect("a working tree");
    assert_eq!(
        workdir.canonicalize().expect("canonical workdir"),
        fixture.path.canonicalize().expect("canonical fixture")
    );
}

#[test]
fn bare_repository_has_no_workdir_and_refuses_worktree_queries() {
    let origin = Fixture::new();
    origin.write("a.txt", "a");
    let head = origin.commit("one");
    let bare = origin.clone_with(&["--bare"]);
    let repo = bare.repo();

    assert_eq!(repo.workdir(), None);
    let head = repo
        .resolve(&head)
        .expect("the commit is in the bare clone");
    assert!(matches!(
        repo.changed_paths_worktree(&head),
        Err(GitError::Bare { .. })
    ));
    let err = repo.files_worktree().expect_err("no working tree to list");
    assert!(matches!(err, GitError::Bare { .. }), "{err:?}");
    assert!(err.help().is_some());
}
