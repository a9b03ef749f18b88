//! `lanes select` against real repositories.

mod common;

use common::{Repo, changed, monorepo, selected};
use serde_json::json;

#[test]
fn diverged_branches_diff_against_the_merge_base_not_the_base_tip() {
    let repo = monorepo();
    let fork = repo.git(&["rev-parse", "HEAD"]);
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write("crates/a/src/lib.rs", "pub fn a() { /* changed */ }\n");
    let head = repo.commit("feature work");
    repo.git(&["checkout", "-q", "main"]);
    repo.write("docs/index.md", "# docs moved on\n");
    let main_tip = repo.commit("main moves on");

    let out = repo
        .lanes(&["select", "--base", "main", "--head", "feature", "--json"])
        .json();
    assert_eq!(out["base"], json!(main_tip));
    assert_eq!(out["merge_base"], json!(fork));
    assert_eq!(out["head"], json!(head));
    assert_eq!(
        changed(&out),
        ["crates/a/src/lib.rs"],
        "main's docs change is not the feature's"
    );
    assert_eq!(selected(&out), ["test", "fmt"]);
    let test = &out["lanes"][0];
    assert_eq!(
        test,
        &json!({"name": "test", "class": "required", "selected": true, "reasons": [
            {"kind": "path", "path": "crates/a/src/lib.rs", "pattern": "crates/**"}]})
    );
    assert_eq!(
        out["lanes"][1]["reasons"],
        json!([{"kind": "no-matching-path"}])
    );
    assert_eq!(out["lanes"][2]["reasons"], json!([{"kind": "always"}]));
}

#[test]
fn a_rename_lists_both_sides_and_selects_both_lanes() {
    let repo = monorepo();
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.git(&["mv", "crates/b/src/lib.rs", "docs/b.rs"]);
    repo.commit("move");
    let out = repo
        .lanes(&["select", "--base", "main", "--head", "HEAD", "--json"])
        .json();
    assert_eq!(changed(&out), ["crates/b/src/lib.rs", "docs/b.rs"]);
    assert_eq!(selected(&out), ["test", "docs", "fmt"]);
}

#[test]
fn a_deletion_selects_the_lane_that_owned_the_file() {
    let repo = monorepo();
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.remove("docs/index.md");
    repo.commit("delete docs");
    let out = repo
        .lanes(&["select", "--base", "main", "--head", "feature", "--json"])
        .json();
    assert_eq!(changed(&out), ["docs/index.md"]);
    assert_eq!(selected(&out), ["docs", "fmt"]);
}

#[test]
fn a_catalog_change_selects_every_lane() {
    let repo = monorepo();
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write("lanes.toml", &format!("{}\n# a comment\n", common::CATALOG));
    repo.commit("touch the catalog");
    let out = repo
        .lanes(&["select", "--base", "main", "--head", "feature", "--json"])
        .json();
    assert_eq!(selected(&out), ["test", "docs", "fmt"]);
    for lane in out["lanes"].as_array().expect("lanes") {
        assert_eq!(
            lane["reasons"][0],
            json!({"kind": "catalog-changed", "path": "lanes.toml"})
        );
    }
}

#[test]
fn working_tree_mode_sees_staged_unstaged_and_untracked_files_but_not_ignored_ones() {
    let repo = monorepo();
    repo.write(".gitignore", "target/\n");
    repo.commit("ignore target");
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write("crates/a/src/new.rs", "// untracked\n");
    repo.write("target/debug/out.rs", "// ignored\n");
    repo.write("docs/index.md", "# unstaged edit\n");
    repo.write("Cargo.toml", "[workspace] # staged\n");
    repo.git(&["add", "Cargo.toml"]);
    let out = repo.lanes(&["select", "--base", "main", "--json"]).json();
    assert_eq!(out["head"], json!(null));
    assert_eq!(
        changed(&out),
        ["Cargo.toml", "crates/a/src/new.rs", "docs/index.md"]
    );
    assert_eq!(selected(&out), ["test", "docs", "fmt"]);
}

#[test]
fn working_tree_mode_reads_the_catalog_from_the_working_tree() {
    let repo = monorepo();
    repo.write(
        "lanes.toml",
        &common::CATALOG.replace("[\"docs/\"]", "[\"README.md\"]"),
    );
    let out = repo.lanes(&["select", "--base", "main", "--json"]).json();
    // The uncommitted catalog changed, so everything is selected, by the catalog-changed reason.
    assert_eq!(
        out["lanes"][1]["reasons"][0],
        json!({"kind": "catalog-changed", "path": "lanes.toml"})
    );
}

#[test]
fn the_catalog_is_read_at_the_head_commit() {
    let repo = monorepo();
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write(
        "lanes.toml",
        "version = 1\n[lane.only]\n[[lane.only.step]]\nname = \"s\"\nrun = \"true\"\n",
    );
    repo.commit("a different catalog");
    repo.git(&["checkout", "-q", "main"]);
    let out = repo
        .lanes(&["select", "--base", "main", "--head", "feature", "--json"])
        .json();
    let names: Vec<&str> = out["lanes"]
        .as_array()
        .expect("lanes")
        .iter()
        .map(|l| l["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["only"]);
}

#[test]
fn a_catalog_error_at_the_head_commit_is_a_catalog_error_even_if_the_working_tree_is_fine() {
    let repo = monorepo();
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write(
        "lanes.toml",
        &common::CATALOG.replace("class = \"advisory\"", "class = \"advisry\""),
    );
    repo.commit("break the catalog");
    repo.git(&["checkout", "-q", "main"]);
    let out = repo.lanes(&["select", "--base", "main", "--head", "feature"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("unknown lane class `advisry`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("did you mean `advisory`?"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("lanes.toml:17:9"), "{}", out.stderr);
    // The working tree (main) is fine.
    assert_eq!(repo.lanes(&["select", "--base", "main", "--json"]).code, 0);
}

#[test]
fn a_shallow_clone_without_the_merge_base_is_a_clear_error() {
    let origin = monorepo();
    for i in 0..3 {
        origin.write("docs/index.md", &format!("main {i}\n"));
        origin.commit("main history");
    }
    origin.git(&["checkout", "-q", "-b", "feature", "HEAD~3"]);
    for i in 0..3 {
        origin.write("crates/a/src/lib.rs", &format!("// feature {i}\n"));
        origin.commit("feature history");
    }
    let clone = origin.clone_with(&["--depth", "1", "--no-single-branch"]);
    let out = clone.lanes(&[
        "select",
        "--base",
        "origin/main",
        "--head",
        "origin/feature",
    ]);
    // The environment's exit code: the clone lacks history, the revisions are fine.
    assert_eq!(out.code, 4, "{out:?}");
    assert!(out.stderr.contains("shallow"), "{}", out.stderr);
    assert!(
        out.stderr.contains("git fetch --unshallow"),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout.is_empty(),
        "nothing is selected silently: {}",
        out.stdout
    );
}

#[test]
fn an_unknown_revision_is_a_usage_error() {
    let repo = monorepo();
    let out = repo.lanes(&["select", "--base", "no-such-branch"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("no-such-branch"), "{}", out.stderr);
    let out = repo.lanes(&["select", "--base", "main", "--head", "deadbeef"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("deadbeef"), "{}", out.stderr);
}

#[test]
fn not_a_repository_and_a_missing_catalog_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = common::lanes_in(dir.path(), &["select"], &[]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("not a git repository"),
        "{}",
        out.stderr
    );

    let repo = Repo::new();
    repo.write("a.txt", "a\n");
    repo.commit("no catalog");
    let out = repo.lanes(&["select", "--base", "main"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("no lanes.toml in the working tree"),
        "{}",
        out.stderr
    );
    let out = repo.lanes(&["select", "--base", "main", "--head", "main"]);
    assert!(
        out.stderr.contains("no lanes.toml at commit"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_base_defaults_to_the_remotes_default_branch_then_main() {
    let origin = monorepo();
    origin.git(&["branch", "-m", "main", "trunk"]);
    origin.write("docs/index.md", "trunk moved\n");
    let trunk = origin.commit("trunk");
    let clone = origin.clone_with(&[]);
    clone.git(&["checkout", "-q", "-b", "feature"]);
    let out = clone.lanes(&["select", "--json"]).json();
    assert_eq!(out["base"], json!(trunk), "origin/HEAD points at trunk");

    let local = monorepo();
    let main = local.git(&["rev-parse", "main"]);
    local.git(&["checkout", "-q", "-b", "feature"]);
    local.write("docs/index.md", "feature\n");
    local.commit("feature");
    assert_eq!(
        local.lanes(&["select", "--json"]).json()["base"],
        json!(main)
    );
}

#[test]
fn lanes_base_overrides_the_default_and_the_flag_overrides_lanes_base() {
    let repo = monorepo();
    let first = repo.git(&["rev-parse", "HEAD"]);
    repo.git(&["checkout", "-q", "-b", "release"]);
    repo.write("docs/index.md", "release\n");
    let release = repo.commit("release");
    repo.git(&["checkout", "-q", "-b", "feature"]);
    let out = repo
        .lanes_env(&["select", "--json"], &[("LANES_BASE", "release")])
        .json();
    assert_eq!(out["base"], json!(release));
    assert!(changed(&out).is_empty());
    let out = repo
        .lanes_env(
            &["select", "--base", "main", "--json"],
            &[("LANES_BASE", "release")],
        )
        .json();
    assert_eq!(out["base"], json!(first));
    assert_eq!(changed(&out), ["docs/index.md"]);
}

#[test]
fn all_forces_every_required_and_advisory_lane() {
    let repo = monorepo();
    let out = repo
        .lanes(&["select", "--base", "main", "--all", "--json"])
        .json();
    for lane in out["lanes"].as_array().expect("lanes") {
        assert_eq!(lane["reasons"], json!([{"kind": "forced"}]), "{lane}");
    }
}

#[test]
fn human_output_lists_selected_lanes_with_their_first_reason_and_counts_skipped_ones() {
    let repo = monorepo();
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write("crates/a/src/lib.rs", "changed\n")
        .write("crates/b/src/lib.rs", "changed\n");
    repo.commit("two crates");
    let out = repo.lanes(&["select", "--base", "main", "--head", "feature"]);
    assert_eq!(out.code, 0);
    let body: Vec<&str> = out.stdout.lines().skip(1).collect();
    assert_eq!(
        body,
        [
            "selected 2 of 3 lanes",
            "  test  required  crates/a/src/lib.rs matched crates/** (+1 more)",
            "  fmt   required  runs on every change",
            "skipped 1 lane (no matching path: 1)",
        ]
    );
}
