//! Property: step keys depend on content, never on where a checkout lives, when its files were
//! written, or which commit object holds the tree.

mod common;

use common::{Repo, git_in};
use lanes_core::fingerprint::{Host, lane_fingerprints};
use lanes_core::{Source, fileset};
use proptest::prelude::*;
use std::collections::BTreeMap;

const CATALOG: &str = "version = 1\n[lane.l]\ninputs = [\"src/\", \"*.toml\"]\n\
    [[lane.l.step]]\nname = \"a\"\nrun = \"make\"\n[[lane.l.step]]\nname = \"b\"\nrun = \"make test\"\n";

/// Keys of lane `l` in `repo`: in the working tree, and at `HEAD`.
fn keys(repo: &Repo) -> (Vec<String>, Vec<String>) {
    let git = lanes_git::Repo::discover(&repo.path).expect("repo");
    let mut none = |_: &str| Err("no pins".to_owned());
    let catalog = lanes_core::parse(&Source::new("lanes.toml", CATALOG), &mut none).expect("valid");
    let env = |_: &str| None;
    let host = Host {
        platform: "linux-x86_64",
        env: &env,
    };
    let keys_of = |files: Vec<lanes_core::FileEntry>| -> Vec<String> {
        let digest = &fileset::lane_digests(&catalog, &files)[0];
        lane_fingerprints(&catalog, &catalog.lanes[0], digest, host)
            .iter()
            .map(|f| f.key())
            .collect()
    };
    let head = git.resolve("HEAD").expect("HEAD");
    (
        keys_of(git.files_worktree().expect("worktree")),
        keys_of(git.files_at(&head).expect("tree")),
    )
}

fn file_path() -> impl Strategy<Value = String> {
    let dir = prop_oneof![Just("src"), Just("src/a"), Just("docs"), Just("")];
    let name = prop_oneof![Just("x.rs"), Just("y.toml"), Just("z.md"), Just("w")];
    (dir, name).prop_map(|(d, n)| {
        if d.is_empty() {
            n.to_owned()
        } else {
            format!("{d}/{n}")
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn keys_are_equal_for_two_clones_at_different_paths(
        files in prop::collection::btree_map(file_path(), "[a-z\n]{0,20}", 1..10),
        edit in prop::collection::btree_map(file_path(), "[a-z\n]{0,20}", 0..3),
    ) {
        let write_all = |repo: &Repo, files: &BTreeMap<String, String>| {
            for (path, contents) in files {
                repo.write(path, contents);
            }
        };
        // Two independent repositories with the same content, made at different times and
        // places, committed with different messages: only the trees are equal.
        let a = Repo::new();
        write_all(&a, &files);
        a.commit("first");
        let b = Repo::new();
        std::thread::sleep(std::time::Duration::from_millis(5));
        write_all(&b, &files);
        git_in(&b.path, &["add", "-A"]);
        git_in(&b.path, &["commit", "-q", "-m", "a different message"]);
        prop_assert_ne!(&a.path, &b.path);
        prop_assert_ne!(a.git(&["rev-parse", "HEAD"]), b.git(&["rev-parse", "HEAD"]));
        prop_assert_eq!(keys(&a), keys(&b));

        // The same uncommitted edits (modified and untracked files) in both: still equal.
        write_all(&a, &edit);
        write_all(&b, &edit);
        prop_assert_eq!(keys(&a), keys(&b));
    }
}
