//! The catalog and repository the CLI's tests share, and their reading of `lanes select`;
//! repositories, the binary and directories come from lanes-testkit.

#![allow(
    dead_code,
    unused_imports,
    reason = "each test binary uses a different part of this module"
)]

pub(crate) use lanes_testkit::{Repo, Run, git_command, git_in, lanes_in, outside_tmp};

/// A catalog with a lane per area of a small monorepo.
pub(crate) const CATALOG: &str = r#"version = 1

[paths]
rust = ["crates/**", "Cargo.toml"]

[lane.test]
paths = ["@rust", "!crates/**/README.md"]
inputs = ["@rust"]
[[lane.test.step]]
name = "build"
run = "cargo build"
[[lane.test.step]]
name = "test"
run = "cargo test"

[lane.docs]
class = "advisory"
paths = ["docs/"]
inputs = ["docs/"]
[[lane.docs.step]]
name = "build"
run = "mdbook build"

[lane.fmt]
[[lane.fmt.step]]
name = "fmt"
run = "cargo fmt --check"
"#;

/// A repository with `CATALOG` and a few files committed on `main`.
pub(crate) fn monorepo() -> Repo {
    let repo = Repo::new();
    repo.write("lanes.toml", CATALOG)
        .write("Cargo.toml", "[workspace]\n")
        .write("crates/a/src/lib.rs", "pub fn a() {}\n")
        .write("crates/a/README.md", "# a\n")
        .write("crates/b/src/lib.rs", "pub fn b() {}\n")
        .write("docs/index.md", "# docs\n")
        .write("README.md", "# repo\n");
    repo.commit("initial");
    repo
}

/// Names of the selected lanes in `lanes select --json` output.
pub(crate) fn selected(json: &serde_json::Value) -> Vec<String> {
    json["lanes"]
        .as_array()
        .expect("lanes array")
        .iter()
        .filter(|l| l["selected"] == true)
        .map(|l| l["name"].as_str().expect("name").to_owned())
        .collect()
}

pub(crate) fn changed(json: &serde_json::Value) -> Vec<String> {
    json["changed"]
        .as_array()
        .expect("changed array")
        .iter()
        .map(|p| p.as_str().expect("string").to_owned())
        .collect()
}
