//! `lanes check` against real files.

mod common;

use common::{Repo, lanes_in, monorepo};
use serde_json::json;

/// A catalog with one error of most kinds (shared with lanes-core's diagnostics snapshot).
const BROKEN: &str = include_str!("../../lanes-core/testdata/broken.toml");

#[test]
fn a_valid_catalog_prints_ok_and_the_lane_count() {
    let repo = monorepo();
    let out = repo.lanes(&["check"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "ok: 3 lanes\n"));
    assert_eq!(
        repo.lanes(&["check", "--json"]).json(),
        json!({"ok": true, "lanes": 3, "diagnostics": []})
    );
}

#[test]
fn every_error_is_reported_at_once_with_location_snippet_and_help() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("broken.toml"), BROKEN).expect("write");
    let out = lanes_in(dir.path(), &["check", "--manifest", "broken.toml"], &[]);
    assert_eq!(out.code, 1, "a catalog that fails its check exits 1");
    assert!(out.stdout.is_empty());
    insta::assert_snapshot!(out.stderr);
}

#[test]
fn json_diagnostics_carry_file_line_column_message_and_help() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("lanes.toml"), BROKEN).expect("write");
    let out = lanes_in(
        dir.path(),
        &["check", "--manifest", "lanes.toml", "--json"],
        &[],
    );
    assert_eq!(out.code, 1);
    let value: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(value["ok"], json!(false));
    let diagnostics = value["diagnostics"].as_array().expect("array");
    assert_eq!(diagnostics.len(), 13, "{value:#}");
    assert_eq!(
        diagnostics[1],
        json!({"code": "catalog::class", "file": "lanes.toml", "line": 10, "column": 9,
               "message": "unknown lane class `requird`", "label": "unknown class",
               "help": "did you mean `required`?"})
    );
}

#[test]
fn a_missing_manifest_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = lanes_in(dir.path(), &["check", "--manifest", "nope.toml"], &[]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("failed to read nope.toml"),
        "{}",
        out.stderr
    );
}

#[test]
fn check_reads_the_working_tree_catalog_and_its_pins_file() {
    let repo = Repo::new();
    repo.write(
        "lanes.toml",
        "version = 1\npins = \"ci/pins.toml\"\n[lane.a]\npins = [\"rustc\"]\n\
         [[lane.a.step]]\nname = \"s\"\nrun = \"true\"\n",
    );
    let out = repo.lanes(&["check"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("cannot read pins file `ci/pins.toml`"),
        "{}",
        out.stderr
    );
    repo.write(
        "ci/pins.toml",
        "rustc = { command = \"rustc --version\", expect = \"rustc 1.95.0\" }\n",
    );
    assert_eq!(repo.lanes(&["check"]).code, 0);
}

#[test]
fn a_bad_flag_is_a_usage_error() {
    let repo = monorepo();
    let out = repo.lanes(&["check", "--no-such-flag"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("--no-such-flag"));
}

#[test]
fn the_projects_own_catalog_passes_check() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = lanes_in(&root, &["check", "--manifest", "lanes.toml"], &[]);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
}

/// lanes-testkit finds the binary beside the test binary, as it cannot read
/// `CARGO_BIN_EXE_lanes`; this is the path cargo gives the CLI's tests.
#[test]
fn the_testkit_runs_the_binary_cargo_built_for_these_tests() {
    assert_eq!(
        std::fs::canonicalize(lanes_testkit::lanes_bin()).expect("the testkit's lanes"),
        std::fs::canonicalize(env!("CARGO_BIN_EXE_lanes")).expect("cargo's lanes"),
    );
}
