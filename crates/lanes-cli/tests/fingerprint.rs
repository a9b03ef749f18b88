//! `lanes fingerprint` against real repositories: keys follow content, nothing else.

mod common;

use common::{Repo, monorepo};
use serde_json::json;

fn keys(repo: &Repo, args: &[&str]) -> Vec<String> {
    let mut all = vec!["fingerprint"];
    all.extend_from_slice(args);
    all.push("--json");
    repo.lanes(&all).json()["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["key"].as_str().expect("key").to_owned())
        .collect()
}

#[test]
fn json_lists_each_step_with_its_key_and_fingerprint() {
    let repo = monorepo();
    let out = repo.lanes(&["fingerprint", "test", "--json"]).json();
    assert_eq!(out["lane"], json!("test"));
    let steps = out["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0]["name"], json!("build"));
    let key = steps[0]["key"].as_str().expect("key");
    assert_eq!(key.len(), 64);
    assert!(key.chars().all(|c| c.is_ascii_hexdigit()));
    let f = &steps[1]["fingerprint"];
    assert_eq!(f["version"], json!(lanes_core::KEY_VERSION));
    assert_eq!(f["command"], json!("cargo test"));
    assert_eq!(f["shell"], json!("bash -eo pipefail -c"));
    assert_eq!(f["previous"], steps[0]["key"], "steps chain");
    assert_eq!(f["network"], json!(false));

    let one = repo
        .lanes(&["fingerprint", "test", "--step", "test", "--json"])
        .json();
    assert_eq!(one["steps"].as_array().expect("steps").len(), 1);
    assert_eq!(one["steps"][0], steps[1]);
}

#[test]
fn keys_are_equal_for_two_clones_at_different_paths() {
    let origin = monorepo();
    let a = origin.clone_with(&[]);
    let b = origin.clone_with(&[]);
    assert_ne!(a.path, b.path);
    // Different mtimes too.
    std::thread::sleep(std::time::Duration::from_millis(20));
    b.write("crates/a/src/lib.rs", "pub fn a() {}\n");
    for lane in ["test", "docs", "fmt"] {
        assert_eq!(
            keys(&a, &[lane]),
            keys(&b, &[lane]),
            "{lane} in the working tree"
        );
        assert_eq!(
            keys(&a, &[lane, "--head", "HEAD"]),
            keys(&b, &[lane, "--head", "HEAD"])
        );
    }
    // A clean working tree keys the same as its commit: both use git blob ids.
    assert_eq!(keys(&a, &["test"]), keys(&a, &["test", "--head", "HEAD"]));
}

#[test]
fn an_input_change_changes_the_key_and_an_outside_change_does_not() {
    let repo = monorepo();
    let before = keys(&repo, &["test"]);
    repo.write("docs/index.md", "outside the test lane's inputs\n");
    assert_eq!(keys(&repo, &["test"]), before);
    repo.write("crates/b/src/lib.rs", "pub fn b() { /* inside */ }\n");
    let dirty = keys(&repo, &["test"]);
    assert_ne!(dirty[0], before[0]);
    assert_ne!(dirty[1], before[1]);
    // An untracked file inside the fileset is seen as well.
    repo.write("crates/c/src/lib.rs", "new\n");
    assert_ne!(keys(&repo, &["test"]), dirty);
    // Committing it changes how content is named, never what is keyed for the commit.
    let committed = repo.commit("commit everything");
    assert_eq!(
        keys(&repo, &["test", "--head", &committed]),
        keys(&repo, &["test", "--head", "HEAD"])
    );
}

#[test]
fn pass_env_values_and_catalog_edits_reach_the_key() {
    let repo = monorepo();
    repo.write(
        "lanes.toml",
        "version = 1\n[lane.l]\n[[lane.l.step]]\nname = \"s\"\nrun = \"make\"\npass-env = [\"TARGET_CPU\"]\n",
    );
    let unset = keys(&repo, &["l"]);
    let x86 = repo
        .lanes_env(
            &["fingerprint", "l", "--json"],
            &[("TARGET_CPU", "x86-64-v3")],
        )
        .json();
    assert_ne!(x86["steps"][0]["key"], json!(unset[0]));
    // Only a digest of the value is keyed and shown: pass-env values are often secrets.
    assert_eq!(
        x86["steps"][0]["fingerprint"]["pass_env"],
        json!({"TARGET_CPU": lanes_core::fingerprint::pass_env_digest("TARGET_CPU", "x86-64-v3")})
    );
    let text = repo.lanes_env(&["fingerprint", "l"], &[("TARGET_CPU", "x86-64-v3")]);
    assert!(
        text.stdout
            .contains("pass-env     TARGET_CPU (value digest "),
        "{}",
        text.stdout
    );
    assert!(!text.stdout.contains("x86-64-v3"), "{}", text.stdout);
}

#[test]
fn unknown_lane_and_step_are_usage_errors() {
    let repo = monorepo();
    let out = repo.lanes(&["fingerprint", "nope"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("no lane `nope`"), "{}", out.stderr);
    let out = repo.lanes(&["fingerprint", "test", "--step", "nope"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("lane `test` has no step `nope`"),
        "{}",
        out.stderr
    );
}
