//! Materializing filesets: the lane directory holds exactly the keyed content.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use lanes_core::fileset::mode;
use lanes_git::GitError;

use crate::fixture::{Fixture, Open, git_in};

/// Every entry under `root`: path -> (kind and mode, content or link target).
fn tree(root: &Path) -> BTreeMap<String, (String, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (String, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let rel = path
                .strip_prefix(root)
                .expect("below root")
                .to_string_lossy()
                .into_owned();
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).expect("readlink");
                out.insert(
                    rel,
                    ("link".into(), target.to_string_lossy().as_bytes().to_vec()),
                );
            } else if meta.is_dir() {
                if std::fs::read_dir(&path).expect("read_dir").next().is_none() {
                    out.insert(rel.clone(), ("empty dir".into(), Vec::new()));
                }
                walk(root, &path, out);
            } else {
                let exec = meta.permissions().mode() & 0o111 != 0;
                let kind = if exec { "exec" } else { "file" };
                out.insert(rel, (kind.into(), std::fs::read(&path).expect("read")));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn sample() -> Fixture {
    let f = Fixture::new();
    f.write("src/lib.rs", "pub fn a() {}\n");
    f.write("src/deep/er/mod.rs", "// deep\n");
    f.write("bin/run.sh", "#!/bin/sh\necho run\n");
    f.chmod_x("bin/run.sh");
    f.write("docs/index.md", "# docs\n");
    f.symlink("../src/lib.rs", "docs/lib-link.rs");
    f.write("empty.txt", "");
    f.commit("initial");
    f
}

#[test]
fn a_commit_materializes_exactly_like_git_archive() {
    let f = sample();
    let repo = f.repo();
    let head = repo.resolve("HEAD").expect("HEAD");
    let files = repo.files_at(&head).expect("files");
    let out = tempfile::tempdir().expect("tempdir");
    let dest = out.path().join("lane");
    let done = repo.materialize(&files, &dest).expect("materialize");
    assert_eq!(done.files, files.len());

    let reference = out.path().join("archive");
    std::fs::create_dir(&reference).expect("mkdir");
    let archive = out.path().join("head.tar");
    git_in(
        &f.path,
        &["archive", "-o", archive.to_str().expect("utf-8"), "HEAD"],
    );
    let status = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&reference)
        .status()
        .expect("tar");
    assert!(status.success());
    assert_eq!(tree(&dest), tree(&reference));
    assert_eq!(tree(&dest)["bin/run.sh"].0, "exec");
    assert_eq!(
        tree(&dest)["docs/lib-link.rs"],
        ("link".into(), b"../src/lib.rs".to_vec())
    );
}

#[test]
fn only_the_given_files_are_written() {
    let f = sample();
    let repo = f.repo();
    let head = repo.resolve("HEAD").expect("HEAD");
    let files = repo.files_at(&head).expect("files");
    let src: Vec<_> = files
        .iter()
        .filter(|f| f.path.starts_with("src/"))
        .collect();
    let out = tempfile::tempdir().expect("tempdir");
    repo.materialize(src.iter().copied(), out.path())
        .expect("materialize");
    let names: Vec<String> = tree(out.path()).into_keys().collect();
    assert_eq!(names, ["src/deep/er/mod.rs", "src/lib.rs"]);
}

#[test]
fn the_working_tree_materializes_modified_and_untracked_files() {
    let f = sample();
    f.write("src/lib.rs", "pub fn a() { /* edited */ }\n");
    f.write("src/new.rs", "// untracked\n");
    f.remove("docs/index.md");
    let repo = f.repo();
    let files = repo.files_worktree().expect("files");
    let out = tempfile::tempdir().expect("tempdir");
    repo.materialize(&files, out.path()).expect("materialize");
    let got = tree(out.path());
    assert_eq!(got["src/lib.rs"].1, b"pub fn a() { /* edited */ }\n");
    assert_eq!(got["src/new.rs"].1, b"// untracked\n");
    assert!(!got.contains_key("docs/index.md"));
    // Everything else equals the working tree, byte for byte and mode for mode.
    let mut expected = tree(&f.path);
    expected.retain(|path, _| !path.starts_with(".git"));
    assert_eq!(got, expected);
}

#[test]
fn a_file_that_changes_after_it_was_keyed_is_an_error() {
    let f = sample();
    f.write("src/lib.rs", "pub fn a() { /* edited */ }\n");
    let repo = f.repo();
    let files = repo.files_worktree().expect("files");
    f.write(
        "src/lib.rs",
        "pub fn a() { /* edited again, after keying */ }\n",
    );
    let out = tempfile::tempdir().expect("tempdir");
    match repo.materialize(&files, out.path()) {
        Err(GitError::ChangedWhileReading { path }) => assert_eq!(path, "src/lib.rs"),
        other => panic!("expected ChangedWhileReading, got {other:?}"),
    }
}

#[test]
fn clean_files_come_from_the_object_database_not_the_disk() {
    let f = sample();
    let repo = f.repo();
    let files = repo.files_worktree().expect("files");
    let lib = files
        .iter()
        .find(|e| e.path == "src/lib.rs")
        .expect("lib.rs");
    assert_eq!(lib.mode, mode::FILE);
    // Change the bytes on disk after keying: the committed content is what was keyed, and what
    // the lane gets.
    f.write("src/lib.rs", "not what was keyed\n");
    let out = tempfile::tempdir().expect("tempdir");
    repo.materialize([lib], out.path()).expect("materialize");
    assert_eq!(
        std::fs::read(out.path().join("src/lib.rs")).expect("read"),
        b"pub fn a() {}\n"
    );
}
