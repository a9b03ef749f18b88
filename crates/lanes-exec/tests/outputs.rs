//! Capturing what a step changed and restoring it: restoring onto the starting state gives
//! exactly the state the step left.

use lanes_cache::{LocalStore, OutputKind};
use lanes_exec::outputs::{Snapshot, capture, load_tree, restore};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Every entry under `root`: path -> description (kind, mode bits that matter, content).
fn state(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let entry = entry.expect("entry");
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .expect("under root")
                .to_str()
                .expect("utf-8")
                .to_owned();
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            let desc = if meta.file_type().is_symlink() {
                format!(
                    "link {}",
                    std::fs::read_link(&path).expect("link").display()
                )
            } else if meta.is_dir() {
                stack.push(path.clone());
                "dir".to_owned()
            } else {
                format!(
                    "file x={} {:?}",
                    meta.permissions().mode() & 0o111 != 0,
                    std::fs::read(&path).expect("read")
                )
            };
            out.insert(rel, desc);
        }
    }
    out
}

fn write(root: &Path, path: &str, text: &str) {
    let full = root.join(path);
    std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
    std::fs::write(full, text).expect("write");
}

/// The starting state both directories share.
fn start(root: &Path) {
    write(root, "keep.txt", "unchanged\n");
    write(root, "edit.txt", "before\n");
    write(root, "gone.txt", "to be deleted\n");
    write(root, "old/a.txt", "a\n");
    write(root, "old/deep/b.txt", "b\n");
    write(root, "becomes-dir", "a file now\n");
    write(root, "script.sh", "echo hi\n");
}

/// What the "step" does.
fn step(root: &Path) {
    write(root, "edit.txt", "after\n");
    std::fs::remove_file(root.join("gone.txt")).expect("rm");
    std::fs::remove_dir_all(root.join("old")).expect("rm -r");
    std::fs::remove_file(root.join("becomes-dir")).expect("rm");
    write(root, "becomes-dir/inside.txt", "inside\n");
    write(root, "new/nested/c.txt", "c\n");
    std::fs::create_dir_all(root.join("empty-dir")).expect("mkdir");
    std::os::unix::fs::symlink("new/nested/c.txt", root.join("link")).expect("symlink");
    std::fs::set_permissions(
        root.join("script.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
}

#[test]
fn restoring_the_captured_changes_reproduces_the_step_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(&dir.path().join("cache")).expect("store");
    let ran = dir.path().join("ran");
    let replayed = dir.path().join("replayed");
    for root in [&ran, &replayed] {
        std::fs::create_dir_all(root).expect("mkdir");
        start(root);
    }
    let before = Snapshot::take(&ran, &[]).expect("before");
    step(&ran);
    let after = Snapshot::take(&ran, &[]).expect("after");
    let (digest, tree) = capture(&store, &ran, &before, &after, None).expect("capture");
    assert!(
        !tree.entries.iter().any(|e| e.path == "keep.txt"),
        "unchanged files are not outputs"
    );
    assert!(
        tree.entries
            .iter()
            .any(|e| e.path == "old" && e.kind == OutputKind::Deleted)
            && !tree.entries.iter().any(|e| e.path.starts_with("old/")),
        "a deleted directory is one entry: {tree:?}"
    );
    let loaded = load_tree(&store, &digest).expect("load").expect("present");
    assert_eq!(loaded, tree);
    restore(&store, &replayed, &loaded).expect("restore");
    assert_eq!(state(&replayed), state(&ran));
}

#[test]
fn a_filter_records_only_the_declared_outputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(&dir.path().join("cache")).expect("store");
    let root = dir.path().join("lane");
    std::fs::create_dir_all(&root).expect("mkdir");
    let before = Snapshot::take(&root, &[]).expect("before");
    write(&root, "dist/app.js", "js\n");
    write(&root, "scratch/tmp.o", "junk\n");
    let after = Snapshot::take(&root, &[]).expect("after");
    let only_dist = |p: &str| p.starts_with("dist/");
    let (_, tree) = capture(&store, &root, &before, &after, Some(&only_dist)).expect("capture");
    let paths: Vec<&str> = tree.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["dist/app.js"]);
}

#[test]
fn a_corrupt_output_blob_fails_the_restore_and_is_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(&dir.path().join("cache")).expect("store");
    let root = dir.path().join("lane");
    std::fs::create_dir_all(&root).expect("mkdir");
    let before = Snapshot::take(&root, &[]).expect("before");
    write(&root, "out.bin", "payload\n");
    let after = Snapshot::take(&root, &[]).expect("after");
    let (_, tree) = capture(&store, &root, &before, &after, None).expect("capture");
    let OutputKind::File { digest, .. } = &tree.entries[0].kind else {
        panic!("a file: {tree:?}");
    };
    let blob = store.root().join("blobs").join(&digest[..2]).join(digest);
    std::fs::write(&blob, "tampered\n").expect("tamper");
    let target = dir.path().join("restore");
    std::fs::create_dir_all(&target).expect("mkdir");
    let error = restore(&store, &target, &tree).expect_err("a corrupt blob is not restored");
    assert!(error.to_string().contains("missing or corrupt"), "{error}");
    assert!(
        !target.join("out.bin").exists(),
        "no half-restored file is left"
    );
    assert!(!blob.exists(), "the corrupt blob is removed");
}

#[test]
fn skipped_top_level_names_are_not_listed() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "target/debug/big", "x");
    write(dir.path(), "src/lib.rs", "y");
    let snapshot = Snapshot::take(dir.path(), &["target".to_owned()]).expect("snapshot");
    assert_eq!(snapshot.len(), 2, "src and src/lib.rs only");
}

#[test]
fn a_tree_path_that_leaves_the_directory_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(&dir.path().join("cache")).expect("store");
    let root = dir.path().join("lane");
    std::fs::create_dir_all(&root).expect("mkdir");
    write(dir.path(), "victim.txt", "outside\n");
    for path in ["../victim.txt", "a/../../victim.txt", "/victim.txt", "a//b"] {
        let tree = lanes_cache::OutputTree {
            version: lanes_cache::TREE_VERSION,
            entries: vec![lanes_cache::OutputEntry {
                path: path.to_owned(),
                kind: OutputKind::Deleted,
            }],
        };
        let error = restore(&store, &root, &tree).expect_err("refused");
        assert!(
            error.to_string().contains("not a plain relative path"),
            "{error}"
        );
    }
    assert!(dir.path().join("victim.txt").exists());
}
