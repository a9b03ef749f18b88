use lanes_git::Repo;

use crate::fixture::{Fixture, Open};

const COMMIT_ID: &str = "1111111111111111111111111111111111111111";
const OTHER_COMMIT_ID: &str = "2222222222222222222222222222222222222222";

/// Record a submodule commit in the index without cloning anything.
fn set_gitlink(fixture: &Fixture, path: &str, commit: &str) {
    fixture.git(&[
        "update-index",
        "--add",
        "--cacheinfo",
        &format!("160000,{commit},{path}"),
    ]);
}

#[test]
fn changed_paths_lists_every_kind_of_change() {
    let fixture = Fixture::new();
    for file in [
        "keep.txt",
        "modify.txt",
        "delete.txt",
        "rename-src.txt",
        "script.sh",
    ] {
        fixture.write(file, &format!("{file}\n"));
    }
    fixture.write("become-link", "a file for now\n");
    fixture.write("dir/inner.txt", "a tree for now\n");
    fixture.write("untouched/deep.txt", "same\n");
    fixture.git(&["add", "--all"]);
    set_gitlink(&fixture, "sub", COMMIT_ID);
    let from = fixture.commit_index("before");

    fixture.write("modify.txt", "modified\n");
    fixture.remove("delete.txt");
    fixture.write("add.txt", "new\n");
    fixture.git(&["mv", "rename-src.txt", "rename-dst.txt"]);
    fixture.chmod_x("script.sh");
    fixture.remove("become-link");
    fixture.symlink("keep.txt", "become-link");
    std::fs::remove_dir_all(fixture.path.join("dir")).expect("remove dir");
    fixture.write("dir", "now a file\n");
    fixture.git(&["add", "--all"]);
    set_gitlink(&fixture, "sub", OTHER_COMMIT_ID);
    let to = fixture.commit_index("after");

    let repo = fixture.repo();
    let from = repo.resolve(&from).expect("from");
    let to = repo.resolve(&to).expect("to");
    let changed = repo.changed_paths(&from, &to).expect("a tree diff");
    assert_eq!(
        changed,
        [
            "add.txt",
            "become-link",
            "delete.txt",
            "dir",
            "dir/inner.txt",
            "modify.txt",
            "rename-dst.txt",
            "rename-src.txt",
            "script.sh",
            "sub",
        ]
    );
    // git agrees when asked the same question (no rename detection).
    let git_view = fixture.git(&[
        "diff",
        "--name-only",
        "--no-renames",
        &from.to_string(),
        &to.to_string(),
    ]);
    let mut git_view: Vec<&str> = git_view.lines().collect();
    git_view.sort_unstable();
    assert_eq!(changed, git_view);

    assert_eq!(
        repo.changed_paths(&to, &to).expect("same commit"),
        Vec::<String>::new()
    );
}

/// A repository with a base commit and a head commit, plus every kind of working-tree change.
fn worktree_fixture() -> (Fixture, String) {
    let fixture = Fixture::new();
    fixture.write(".gitignore", "*.log\nbuild/\n");
    for file in [
        "staged.txt",
        "unstaged.txt",
        "deleted.txt",
        "chmod.sh",
        "committed.txt",
        "reverted.txt",
        "clean.txt",
        "src/clean.rs",
    ] {
        fixture.write(file, &format!("{file}\n"));
    }
    let base = fixture.commit("base");
    fixture.write("committed.txt", "changed in a commit\n");
    fixture.write(
        "reverted.txt",
        "changed in a commit, reverted in the worktree\n",
    );
    fixture.commit("head");

    fixture.write("reverted.txt", "reverted.txt\n");
    fixture.write("staged.txt", "staged change\n");
    fixture.git(&["add", "staged.txt"]);
    fixture.write("unstaged.txt", "unstaged change\n");
    fixture.remove("deleted.txt");
    fixture.chmod_x("chmod.sh");
    fixture.write("newdir/b.txt", "untracked\n");
    fixture.write("newdir/nested/a.txt", "untracked, deeper\n");
    fixture.write("debug.log", "ignored by .gitignore\n");
    fixture.write("build/out.txt", "ignored directory\n");
    fixture.write("local-only.txt", "ignored by info/exclude\n");
    std::fs::write(fixture.path.join(".git/info/exclude"), "local-only.txt\n")
        .expect("write info/exclude");
    fixture.write("personal.tmp", "ignored by core.excludesFile\n");
    let excludes = fixture.path.join(".git/personal-excludes");
    std::fs::write(&excludes, "*.tmp\n").expect("write an excludes file");
    fixture.git(&[
        "config",
        "core.excludesFile",
        &excludes.display().to_string(),
    ]);
    (fixture, base)
}

#[test]
fn changed_paths_worktree_unions_commits_index_worktree_and_untracked_files() {
    let (fixture, base) = worktree_fixture();
    // Discovered from a subdirectory: the answer is still for the whole repository.
    let repo = Repo::discover(&fixture.path.join("src")).expect("discover");
    let base = repo.resolve(&base).expect("base");
    let changed = repo
        .changed_paths_worktree(&base)
        .expect("worktree changes");
    assert_eq!(
        changed,
        [
            "chmod.sh",
            "committed.txt",
            "deleted.txt",
            "newdir/b.txt",
            "newdir/nested/a.txt",
            // Changed by a commit and changed back in the working tree: listed by design.
            "reverted.txt",
            "staged.txt",
            "unstaged.txt",
        ]
    );
}

#[test]
fn changed_paths_worktree_of_a_clean_tree_at_head_is_empty() {
    let fixture = Fixture::new();
    fixture.write("a.txt", "a\n");
    let head = fixture.commit("one");
    let repo = fixture.repo();
    let head = repo.resolve(&head).expect("head");
    assert_eq!(
        repo.changed_paths_worktree(&head).expect("status"),
        Vec::<String>::new()
    );
}
