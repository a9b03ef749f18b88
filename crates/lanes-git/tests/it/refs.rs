use crate::fixture::{Fixture, Open};

#[test]
fn branches_list_every_local_branch_with_its_tip_and_see_later_pushes() {
    let origin = Fixture::with_branch("main");
    origin.write("a.txt", "a");
    let first = origin.commit("one");
    origin.git(&["branch", "feature/x"]);
    origin.write("a.txt", "b");
    let second = origin.commit("two");
    let bare = origin.clone_with(&["--bare"]);
    let repo = bare.repo();
    let listed: Vec<(String, String)> = repo
        .branches()
        .expect("branches")
        .into_iter()
        .map(|b| (b.name, b.head.as_str().to_owned()))
        .collect();
    assert_eq!(
        listed,
        [
            ("feature/x".to_owned(), first.clone()),
            ("main".to_owned(), second.clone())
        ]
    );
    assert_eq!(repo.head_branch().expect("HEAD"), Some("main".to_owned()));

    // A push after the repository was opened shows on the next call.
    origin.write("a.txt", "c");
    let third = origin.commit("three");
    origin.git(&[
        "push",
        "-q",
        bare.path.to_str().expect("utf-8"),
        "main",
        "main:topic",
    ]);
    let listed: Vec<(String, String)> = repo
        .branches()
        .expect("branches")
        .into_iter()
        .map(|b| (b.name, b.head.as_str().to_owned()))
        .collect();
    assert_eq!(
        listed,
        [
            ("feature/x".to_owned(), first),
            ("main".to_owned(), third.clone()),
            ("topic".to_owned(), third)
        ]
    );
}

#[test]
fn a_detached_head_has_no_branch() {
    let fixture = Fixture::with_branch("main");
    fixture.write("a.txt", "a");
    let head = fixture.commit("one");
    fixture.git(&["checkout", "-q", "--detach", &head]);
    assert_eq!(fixture.repo().head_branch().expect("HEAD"), None);
}

#[test]
fn the_default_branch_is_heads_or_main_or_master_when_head_names_a_branch_never_pushed() {
    // A bare repository whose HEAD names `master`, to which only `main` and `topic` are pushed.
    let bare = Fixture::empty();
    bare.git(&["init", "--quiet", "--bare", "--initial-branch", "master"]);
    assert_eq!(
        bare.repo().default_branch().expect("HEAD"),
        Some("master".to_owned()),
        "nothing pushed yet: HEAD's branch"
    );
    let work = Fixture::with_branch("main");
    work.write("a.txt", "a");
    work.commit("one");
    let url = bare.path.to_str().expect("utf-8");
    work.git(&["push", "-q", url, "main:topic"]);
    assert_eq!(
        bare.repo().default_branch().expect("HEAD"),
        Some("master".to_owned()),
        "neither main nor master exists: HEAD's branch still"
    );
    work.git(&["push", "-q", url, "main"]);
    assert_eq!(
        bare.repo().default_branch().expect("HEAD"),
        Some("main".to_owned())
    );
    // Once HEAD's own branch exists, it wins.
    work.git(&["push", "-q", url, "main:master"]);
    bare.git(&["symbolic-ref", "HEAD", "refs/heads/topic"]);
    assert_eq!(
        bare.repo().default_branch().expect("HEAD"),
        Some("topic".to_owned())
    );
}
