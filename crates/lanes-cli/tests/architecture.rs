//! The crate graph follows docs/architecture.md: `lanes-core` depends on no crate of ours,
//! adapters depend on core (and `lanes-exec` may use `lanes-cache`), the wire formats
//! (`lanes-api`) on core alone, nothing depends on the CLI; the test support (`lanes-testkit`)
//! on core at most, and every crate may use it, as a dev-dependency only.

use std::collections::BTreeMap;
use std::process::Command;

/// The test support crate: any crate of ours may use it, but only as a dev-dependency, so it
/// never reaches a shipped binary.
const TESTKIT: &str = "lanes-testkit";

/// Workspace crates each crate may depend on (normal, dev or build dependencies), besides
/// [`TESTKIT`] as a dev-dependency.
fn allowed(krate: &str) -> Option<&'static [&'static str]> {
    Some(match krate {
        "lanes-core" => &[],
        // What tests share; core's vocabulary at most, so every crate's tests may use it.
        TESTKIT => &["lanes-core"],
        // The wire formats: typed once, from core's vocabulary, for the server, agents and CLI.
        "lanes-api" | "lanes-git" | "lanes-cache" | "lanes-store" => &["lanes-core"],
        "lanes-exec" => &["lanes-core", "lanes-cache"],
        // What `lanes run` and the agents share.
        "lanes-engine" => &["lanes-core", "lanes-git", "lanes-exec", "lanes-cache"],
        "lanes-agent" => &[
            "lanes-core",
            "lanes-api",
            "lanes-engine",
            "lanes-git",
            "lanes-exec",
            "lanes-cache",
        ],
        "lanes-server" => &[
            "lanes-core",
            "lanes-api",
            "lanes-engine",
            "lanes-store",
            "lanes-git",
            "lanes-exec",
            "lanes-cache",
            "lanes-agent",
        ],
        "lanes-cli" => &[
            "lanes-core",
            "lanes-api",
            "lanes-engine",
            "lanes-git",
            "lanes-cache",
            "lanes-exec",
            "lanes-store",
            "lanes-server",
            "lanes-agent",
        ],
        _ => return None,
    })
}

#[test]
fn crate_dependencies_point_inward() {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let packages = metadata["packages"].as_array().expect("packages");
    let ours: Vec<&str> = packages
        .iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut not_dev = Vec::new();
    for package in packages {
        let name = package["name"].as_str().expect("name");
        for dep in package["dependencies"].as_array().expect("dependencies") {
            let kind = dep["kind"].as_str().unwrap_or("normal");
            let dep = dep["name"].as_str().expect("name");
            // The binary runs lanes through lanes-engine, not the agent; its tests drive a real
            // agent.
            let test_only = dep == TESTKIT || (name == "lanes-cli" && dep == "lanes-agent");
            if test_only {
                if kind != "dev" {
                    not_dev.push(format!("{name} -> {dep} ({kind})"));
                }
            } else if ours.contains(&dep) {
                edges.entry(name).or_default().push(dep);
            }
        }
    }
    assert!(
        not_dev.is_empty(),
        "{TESTKIT} (and lanes-agent, for lanes-cli) is a dev-dependency only: {not_dev:?}"
    );
    assert!(
        ours.contains(&"lanes-core") && ours.contains(&"lanes-cli") && ours.contains(&TESTKIT),
        "{ours:?}"
    );
    let mut forbidden = Vec::new();
    for krate in &ours {
        let Some(allowed) = allowed(krate) else {
            panic!("crate `{krate}` has no rule: add it to `allowed` and docs/architecture.md");
        };
        for dep in edges.get(krate).into_iter().flatten() {
            if !allowed.contains(dep) {
                forbidden.push(format!("{krate} -> {dep}"));
            }
        }
    }
    assert!(
        forbidden.is_empty(),
        "forbidden crate dependencies: {forbidden:?}"
    );
}
