//! `secrets = [...]` in `lanes run`: values from the environment, masked in every log, never in a
//! key or a report; a lane without its secret fails before anything runs.

mod common;

use common::Repo;

const SECRET: &str = "pa55-w0rd/with&chars";

const CATALOG: &str = r#"version = 1
[lane.deploy]
secrets = ["DEPLOY_TOKEN"]
[[lane.deploy.step]]
name = "show"
cache = false
run = '''
echo "plain $DEPLOY_TOKEN"
half=${#DEPLOY_TOKEN}; half=$((half / 2))
printf 'split %s' "${DEPLOY_TOKEN:0:$half}"; sleep 0.3; printf '%s\n' "${DEPLOY_TOKEN:$half}"
echo "b64 $(printf %s "$DEPLOY_TOKEN" | base64)"
echo "url $(python3 -c 'import os, urllib.parse; print(urllib.parse.quote(os.environ["DEPLOY_TOKEN"], safe=""))')"
'''
"#;

fn read_tree(dir: &std::path::Path, out: &mut Vec<(std::path::PathBuf, Vec<u8>)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            read_tree(&path, out);
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, bytes));
        }
    }
}

#[test]
fn a_secret_is_masked_in_the_log_in_every_form_and_stored_nowhere() {
    let repo = Repo::new();
    repo.write("lanes.toml", CATALOG);
    repo.commit("init");
    let cache = tempfile::tempdir().expect("tempdir");
    let cache_dir = cache.path().to_str().expect("utf-8");
    let run = repo.lanes_env(
        &["run", "--all", "-v"],
        &[("LANES_CACHE_DIR", cache_dir), ("DEPLOY_TOKEN", SECRET)],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut files = Vec::new();
    read_tree(cache.path(), &mut files);
    let log = files
        .iter()
        .find(|(p, _)| p.ends_with("show.log"))
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .expect("the step's log");
    for line in ["plain ***", "split ***", "b64 ***", "url ***"] {
        assert!(log.contains(line), "{line:?} not in\n{log}");
    }
    // Nowhere in the cache directory (logs, report, history, keys) nor in lanes' own output.
    let halves = [&SECRET[..SECRET.len() / 2], &SECRET[SECRET.len() / 2..]];
    for (path, bytes) in &files {
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !text.contains(SECRET),
            "{} holds the secret",
            path.display()
        );
        assert!(
            !(text.contains(halves[0]) && text.contains(halves[1])),
            "{} holds both halves",
            path.display()
        );
    }
    assert!(!run.stdout.contains(SECRET) && !run.stderr.contains(SECRET));
}

#[test]
fn a_lane_without_its_secret_fails_before_it_runs_and_says_why() {
    let repo = Repo::new();
    repo.write("lanes.toml", CATALOG);
    repo.commit("init");
    let cache = tempfile::tempdir().expect("tempdir");
    let cache_dir = cache.path().to_str().expect("utf-8");
    let report = cache.path().join("report.json");
    let run = repo.lanes_env(
        &["run", "--all", "--report", report.to_str().expect("utf-8")],
        &[("LANES_CACHE_DIR", cache_dir)],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    let step = &report["lanes"][0]["steps"][0];
    assert_eq!(step["status"], "failed", "{report:#}");
    let log = std::fs::read_to_string(step["log"].as_str().expect("log path")).expect("log");
    assert!(
        log.contains("the secret `DEPLOY_TOKEN` is not available")
            && log.contains("not set in the environment"),
        "{log}"
    );
}
