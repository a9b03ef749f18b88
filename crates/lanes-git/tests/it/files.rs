use std::collections::BTreeMap;

use lanes_core::fileset::{ContentId, FileEntry, mode};

use crate::fixture::{Fixture, Open, git_command, git_in};

fn blake3_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// `git ls-files -s` as path -> (mode, blob id).
fn git_index(fixture: &Fixture) -> BTreeMap<String, (u32, String)> {
    fixture
        .git(&["ls-files", "--stage"])
        .lines()
        .map(|line| {
            let (meta, path) = line.split_once('\t').expect("mode id stage<TAB>path");
            let mut meta = meta.split(' ');
            let mode = meta.next().expect("a mode");
            let id = meta.next().expect("an id");
            (
                path.to_owned(),
                (
                    u32::from_str_radix(mode, 8).expect("octal mode"),
                    id.to_owned(),
                ),
            )
        })
        .collect()
}

/// A committed tree with every kind of entry, names chosen so tree order and path order meet.
fn committed_fixture() -> Fixture {
    let fixture = Fixture::new();
    fixture.write("README.md", "# readme\n");
    fixture.write("a.b", "dot\n");
    fixture.write("a/c.txt", "in a directory\n");
    fixture.write("a-b", "dash\n");
    fixture.write("deep/er/still/file.rs", "fn main() {}\n");
    fixture.write("run.sh", "#!/bin/sh\n");
    fixture.chmod_x("run.sh");
    fixture.symlink("README.md", "link");
    fixture.git(&["add", "--all"]);
    fixture.git(&[
        "update-index",
        "--add",
        "--cacheinfo",
        "160000,1111111111111111111111111111111111111111,vendor/sub",
    ]);
    fixture.commit_index("everything");
    fixture
}

#[test]
fn files_at_matches_git_ls_tree() {
    let fixture = committed_fixture();
    let repo = fixture.repo();
    let head = repo.resolve("HEAD").expect("head");
    let files = repo.files_at(&head).expect("list files");

    let expected: Vec<FileEntry> = fixture
        .git(&["ls-tree", "-r", "HEAD"])
        .lines()
        .map(|line| {
            let (meta, path) = line.split_once('\t').expect("mode type id<TAB>path");
            let mut meta = meta.split(' ');
            let mode = u32::from_str_radix(meta.next().expect("a mode"), 8).expect("octal");
            let _kind = meta.next().expect("a type");
            FileEntry {
                path: path.to_owned(),
                mode,
                id: ContentId::GitBlob(meta.next().expect("an id").to_owned()),
            }
        })
        .collect();
    assert_eq!(files, expected);
    let modes: BTreeMap<&str, u32> = files.iter().map(|f| (f.path.as_str(), f.mode)).collect();
    assert_eq!(modes["run.sh"], mode::EXECUTABLE);
    assert_eq!(modes["link"], mode::SYMLINK);
    assert_eq!(modes["vendor/sub"], mode::GITLINK);
    assert_eq!(modes["README.md"], mode::FILE);
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    let mut sorted = paths.clone();
    sorted.sort_unstable();
    assert_eq!(paths, sorted, "sorted by path");
}

#[test]
fn read_file_at_reads_files_and_nothing_else() {
    let fixture = committed_fixture();
    let repo = fixture.repo();
    let head = repo.resolve("HEAD").expect("head");
    let read = |path: &str| repo.read_file_at(&head, path).expect("read");
    assert_eq!(
        read("deep/er/still/file.rs").as_deref(),
        Some(&b"fn main() {}\n"[..])
    );
    assert_eq!(
        read("link").as_deref(),
        Some(&b"README.md"[..]),
        "a symlink reads as its target"
    );
    assert_eq!(read("missing.txt"), None);
    assert_eq!(read("deep/er"), None, "a directory is not a file");
    assert_eq!(read("vendor/sub"), None, "a submodule is not a file");
    assert_eq!(read("README.md/x"), None);
}

#[test]
fn files_worktree_keeps_blob_ids_for_clean_files_and_hashes_the_rest() {
    let fixture = Fixture::new();
    fixture.write(".gitignore", "*.log\n");
    fixture.write("clean.txt", "clean\n");
    fixture.write("src/clean.rs", "fn clean() {}\n");
    fixture.write("modified.txt", "before\n");
    fixture.write("deleted.txt", "soon gone\n");
    fixture.write("chmod.sh", "#!/bin/sh\n");
    fixture.symlink("clean.txt", "link");
    fixture.commit("base");
    let index = git_index(&fixture);

    fixture.write("modified.txt", "after, and longer\n");
    fixture.remove("deleted.txt");
    fixture.chmod_x("chmod.sh");
    fixture.write("untracked/dir/new.txt", "new\n");
    fixture.symlink("../clean.txt", "untracked/link");
    fixture.write("debug.log", "ignored\n");

    let files = fixture.repo().files_worktree().expect("list the worktree");
    let blob = |path: &str| FileEntry {
        path: path.to_owned(),
        mode: index[path].0,
        id: ContentId::GitBlob(index[path].1.clone()),
    };
    let hashed = |path: &str, mode: u32, bytes: &[u8]| FileEntry {
        path: path.to_owned(),
        mode,
        id: ContentId::Blake3(blake3_hex(bytes)),
    };
    assert_eq!(
        files,
        [
            blob(".gitignore"),
            hashed("chmod.sh", mode::EXECUTABLE, b"#!/bin/sh\n"),
            blob("clean.txt"),
            blob("link"),
            hashed("modified.txt", mode::FILE, b"after, and longer\n"),
            blob("src/clean.rs"),
            hashed("untracked/dir/new.txt", mode::FILE, b"new\n"),
            hashed("untracked/link", mode::SYMLINK, b"../clean.txt"),
        ]
    );
    assert_eq!(index["link"].0, mode::SYMLINK);
}

#[test]
fn files_worktree_trusts_the_stat_cache_for_clean_files() {
    let fixture = Fixture::new();
    // Compare sizes and mtimes only, so the edit below can hide from git.
    fixture.git(&["config", "core.trustctime", "false"]);
    fixture.write("same-stat.txt", "original\n");
    let past = ["-d", "2020-01-01T00:00:00", "same-stat.txt"];
    let touch = |args: &[&str]| {
        let status = std::process::Command::new("touch")
            .args(args)
            .current_dir(&fixture.path)
            .status()
            .expect("run touch");
        assert!(status.success());
    };
    touch(&past);
    fixture.commit("base");
    let index = git_index(&fixture);

    // Same size, same mtime, different bytes: git's status calls it clean without reading it,
    // and so must we (reading every clean file is what the stat cache exists to avoid).
    fixture.write("same-stat.txt", "0riginal\n");
    touch(&past);
    assert_eq!(fixture.git(&["status", "--porcelain"]), "");

    let files = fixture.repo().files_worktree().expect("list the worktree");
    assert_eq!(
        files,
        [FileEntry {
            path: "same-stat.txt".to_owned(),
            mode: mode::FILE,
            id: ContentId::GitBlob(index["same-stat.txt"].1.clone()),
        }]
    );
}

#[test]
fn files_worktree_does_not_depend_on_location_or_mtime() {
    let origin = committed_fixture();
    let first = origin.clone_with(&[]);
    let second = origin.clone_with(&[]);
    for clone in [&first, &second] {
        clone.write("untracked.txt", "same untracked bytes\n");
    }
    // New mtimes everywhere in one clone: stat data no longer matches its index.
    let status = std::process::Command::new("sh")
        .args([
            "-c",
            "find . -path ./.git -prune -o -type f -exec touch -d '2030-01-01' {} +",
        ])
        .current_dir(&second.path)
        .status()
        .expect("run find");
    assert!(status.success());

    let first_files = first.repo().files_worktree().expect("first clone");
    let second_files = second.repo().files_worktree().expect("second clone");
    assert_eq!(first_files, second_files);
    assert!(
        first_files
            .iter()
            .filter(|f| f.path != "untracked.txt")
            .all(|f| matches!(f.id, ContentId::GitBlob(_))),
        "tracked, unmodified files keep their blob ids: {first_files:?}"
    );
    assert!(first_files.iter().any(|f| f.path == "untracked.txt"));
    assert!(
        first_files.contains(&FileEntry {
            path: "vendor/sub".to_owned(),
            mode: mode::GITLINK,
            id: ContentId::GitBlob("1111111111111111111111111111111111111111".to_owned()),
        }),
        "an uninitialized submodule is named by its recorded commit: {first_files:?}"
    );
}

#[test]
fn files_worktree_names_a_submodule_by_its_checked_out_commit() {
    let library = Fixture::new();
    library.write("lib.txt", "v1\n");
    let recorded = library.commit("v1");
    let fixture = Fixture::new();
    fixture.write("a.txt", "a\n");
    let url = format!("file://{}", library.path.display());
    fixture.git(&["submodule", "add", "--quiet", &url, "vendor/lib"]);
    fixture.commit("add the submodule");

    let gitlink = |files: &[FileEntry]| {
        files
            .iter()
            .find(|f| f.path == "vendor/lib")
            .cloned()
            .expect("the submodule is listed")
    };
    let files = fixture.repo().files_worktree().expect("list the worktree");
    assert_eq!(
        gitlink(&files),
        FileEntry {
            path: "vendor/lib".to_owned(),
            mode: mode::GITLINK,
            id: ContentId::GitBlob(recorded),
        }
    );
    assert!(
        !files.iter().any(|f| f.path.starts_with("vendor/lib/")),
        "a submodule's own files are not part of the superproject's fileset"
    );

    // A new commit checked out in the submodule, not yet recorded in the superproject.
    let submodule = fixture.path.join("vendor/lib");
    std::fs::write(submodule.join("lib.txt"), "v2\n").expect("edit the submodule");
    git_in(
        &submodule,
        &["commit", "--quiet", "--all", "--message", "v2"],
    );
    let checked_out = git_in(&submodule, &["rev-parse", "HEAD"]);
    let files = fixture.repo().files_worktree().expect("list the worktree");
    assert_eq!(gitlink(&files).id, ContentId::GitBlob(checked_out));
}

#[test]
fn files_worktree_reads_unmerged_and_skip_worktree_files_from_disk() {
    let fixture = Fixture::new();
    fixture.write("conflict.txt", "base\n");
    fixture.write("hidden.txt", "committed\n");
    fixture.write("sparse/away.txt", "not checked out\n");
    fixture.commit("base");
    fixture.git(&["switch", "--quiet", "--create", "other"]);
    fixture.write("conflict.txt", "theirs\n");
    fixture.commit("theirs");
    fixture.git(&["switch", "--quiet", "main"]);
    fixture.write("conflict.txt", "ours\n");
    fixture.commit("ours");
    let merge = git_command(&fixture.path)
        .args(["merge", "--quiet", "other"])
        .output()
        .expect("run git merge");
    assert!(!merge.status.success(), "the merge conflicts");
    // Local edits git is told to ignore, and a file removed as a sparse checkout would.
    fixture.git(&[
        "update-index",
        "--skip-worktree",
        "hidden.txt",
        "sparse/away.txt",
    ]);
    fixture.write("hidden.txt", "edited locally\n");
    fixture.remove("sparse/away.txt");

    let files = fixture.repo().files_worktree().expect("list the worktree");
    let on_disk = |path: &str| {
        let bytes = std::fs::read(fixture.path.join(path)).expect("read a fixture file");
        FileEntry {
            path: path.to_owned(),
            mode: mode::FILE,
            id: ContentId::Blake3(blake3_hex(&bytes)),
        }
    };
    assert_eq!(files, [on_disk("conflict.txt"), on_disk("hidden.txt")]);
}
