use lanes_git::GitError;

use crate::fixture::{Fixture, Open};

#[test]
fn resolve_branch_tag_sha_and_ancestry() {
    let fixture = Fixture::new();
    fixture.write("a.txt", "one");
    let first = fixture.commit("one");
    fixture.git(&["tag", "--annotate", "v1", "--message", "release one"]);
    fixture.git(&["branch", "feature"]);
    fixture.write("a.txt", "two");
    let second = fixture.commit("two");
    let repo = fixture.repo();

    let resolve = |rev: &str| repo.resolve(rev).expect("a known revision").to_string();
    assert_eq!(resolve("main"), second);
    assert_eq!(resolve("HEAD"), second);
    assert_eq!(resolve("feature"), first);
    assert_eq!(
        resolve("v1"),
        first,
        "annotated tags are peeled to their commit"
    );
    assert_eq!(resolve(&first), first);
    assert_eq!(resolve(&first[..10]), first);
    assert_eq!(resolve("HEAD~1"), first);
    assert_eq!(resolve("main^"), first);
}

#[test]
fn resolve_unknown_revision_is_an_error_naming_it() {
    let fixture = Fixture::new();
    fixture.write("a.txt", "one");
    fixture.commit("one");
    let err = fixture
        .repo()
        .resolve("nope")
        .expect_err("no such revision");
    assert!(
        matches!(&err, GitError::UnknownRevision { rev, .. } if rev == "nope"),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "unknown revision `nope`");
    assert!(
        err.help()
            .expect("help for unknown revisions")
            .contains("git fetch")
    );
}

#[test]
fn resolve_a_blob_is_not_a_commit() {
    let fixture = Fixture::new();
    fixture.write("a.txt", "one");
    fixture.commit("one");
    let err = fixture
        .repo()
        .resolve("HEAD:a.txt")
        .expect_err("a blob is no commit");
    assert!(
        matches!(&err, GitError::NotACommit { kind, .. } if kind == "blob"),
        "{err:?}"
    );
}

#[test]
fn merge_base_of_diverged_branches_is_the_fork_point() {
    let fixture = Fixture::new();
    fixture.write("a.txt", "1");
    fixture.commit("root");
    fixture.write("a.txt", "2");
    let fork = fixture.commit("fork point");
    fixture.git(&["switch", "--quiet", "--create", "feature"]);
    fixture.write("f.txt", "feature");
    fixture.commit("feature work");
    fixture.git(&["switch", "--quiet", "main"]);
    fixture.write("a.txt", "3");
    let main_tip = fixture.commit("main moves on");

    let repo = fixture.repo();
    let base = repo.resolve("main").expect("main");
    let head = repo.resolve("feature").expect("feature");
    let merge_base = repo.merge_base(&base, &head).expect("a merge-base");
    assert_eq!(merge_base.to_string(), fork);
    assert_ne!(merge_base.to_string(), main_tip);
    assert_eq!(
        merge_base.to_string(),
        fixture.git(&["merge-base", "main", "feature"])
    );
}

#[test]
fn merge_base_of_unrelated_histories_is_an_error() {
    let fixture = Fixture::new();
    fixture.write("a.txt", "1");
    fixture.commit("root");
    fixture.git(&["switch", "--quiet", "--orphan", "other"]);
    fixture.write("b.txt", "2");
    fixture.commit("other root");

    let repo = fixture.repo();
    let base = repo.resolve("main").expect("main");
    let head = repo.resolve("other").expect("other");
    let err = repo
        .merge_base(&base, &head)
        .expect_err("no common ancestor");
    assert!(matches!(err, GitError::NoMergeBase { .. }), "{err:?}");
    assert!(!repo.is_shallow());
}

#[test]
fn merge_base_beyond_a_shallow_clone_says_how_to_deepen() {
    let origin = Fixture::new();
    for n in 0..3 {
        origin.write("a.txt", &n.to_string());
        origin.commit("history");
    }
    let fork = origin.git(&["rev-parse", "HEAD"]);
    origin.git(&["switch", "--quiet", "--create", "feature"]);
    for n in 0..3 {
        origin.write("f.txt", &n.to_string());
        origin.commit("feature work");
    }
    origin.git(&["switch", "--quiet", "main"]);
    for n in 3..6 {
        origin.write("a.txt", &n.to_string());
        origin.commit("main moves on");
    }

    let clone = origin.clone_with(&["--depth", "1", "--no-single-branch"]);
    let repo = clone.repo();
    assert!(repo.is_shallow());
    let base = repo.resolve("origin/main").expect("origin/main");
    let head = repo.resolve("origin/feature").expect("origin/feature");
    let err = repo
        .merge_base(&base, &head)
        .expect_err("the fork point was not fetched");
    assert!(
        matches!(&err, GitError::ShallowClone { base: b, head: h } if *b == base && *h == head),
        "{err:?}"
    );
    assert!(err.to_string().contains("shallow clone"), "{err}");
    let help = err.help().expect("help for shallow clones");
    assert!(help.contains("git fetch --unshallow"), "{help}");
    assert!(help.contains("fetch-depth: 0"), "{help}");

    // Following the advice fixes it.
    clone.git(&["fetch", "--quiet", "--unshallow"]);
    let repo = clone.repo();
    assert!(!repo.is_shallow());
    let merge_base = repo.merge_base(&base, &head).expect("full history");
    assert_eq!(merge_base.to_string(), fork);
}

#[test]
fn default_base_prefers_the_remote_default_branch_over_main() {
    let origin = Fixture::with_branch("trunk");
    origin.write("a.txt", "1");
    origin.commit("root");
    let clone = origin.clone_with(&[]);
    clone.git(&["branch", "main"]);
    assert_eq!(
        clone.git(&["symbolic-ref", "refs/remotes/origin/HEAD"]),
        "refs/remotes/origin/trunk"
    );
    assert_eq!(
        clone.repo().default_base().expect("a default base"),
        "origin/trunk"
    );
}

#[test]
fn default_base_considers_remotes_other_than_origin() {
    let upstream = Fixture::with_branch("trunk");
    upstream.write("a.txt", "1");
    upstream.commit("root");
    let clone = upstream.clone_with(&["--origin", "upstream"]);
    clone.git(&["branch", "main"]);
    assert_eq!(
        clone.repo().default_base().expect("a default base"),
        "upstream/trunk"
    );
}

#[test]
fn default_base_is_main_without_a_remote_default() {
    let fixture = Fixture::new();
    fixture.write("a.txt", "1");
    fixture.commit("root");
    fixture.git(&["branch", "master"]);
    fixture.git(&["switch", "--quiet", "--create", "work"]);
    assert_eq!(
        fixture.repo().default_base().expect("a default base"),
        "main"
    );
}

#[test]
fn default_base_is_master_without_main() {
    let fixture = Fixture::with_branch("master");
    fixture.write("a.txt", "1");
    fixture.commit("root");
    fixture.git(&["switch", "--quiet", "--create", "work"]);
    assert_eq!(
        fixture.repo().default_base().expect("a default base"),
        "master"
    );
}

#[test]
fn default_base_falls_back_to_a_remote_tracking_main() {
    let origin = Fixture::new();
    origin.write("a.txt", "1");
    origin.commit("root");
    let clone = origin.clone_with(&[]);
    // Like a CI checkout: a detached head, no local branch, no `origin/HEAD`.
    clone.git(&["switch", "--quiet", "--detach"]);
    clone.git(&["branch", "--delete", "main"]);
    clone.git(&["remote", "set-head", "origin", "--delete"]);
    assert_eq!(
        clone.repo().default_base().expect("a default base"),
        "origin/main"
    );
}

#[test]
fn default_base_none_found_says_how_to_choose_one() {
    let fixture = Fixture::with_branch("trunk");
    fixture.write("a.txt", "1");
    fixture.commit("root");
    let err = fixture
        .repo()
        .default_base()
        .expect_err("no conventional branch");
    assert!(matches!(err, GitError::NoDefaultBase), "{err:?}");
    let help = err.help().expect("help for a missing base");
    assert!(
        help.contains("--base") && help.contains("LANES_BASE"),
        "{help}"
    );
}
