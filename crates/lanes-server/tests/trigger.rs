//! `on_branch_head` against real git repositories (made with the `git` CLI) and a real SQLite
//! store in temporary directories.

use jiff::Timestamp;
use lanes_core::job::{JobState, Priority};
use lanes_git::{CommitId, Repo};
use lanes_server::{Created, Outcome, on_branch_head};
use lanes_store::{RunStatus, Store};

mod common;
use common::{Forge, TestResult};
use lanes_testkit::git_in;

const CATALOG: &str = r#"version = 1

[lane.lint]
class = "required"
paths = ["src/**"]
step = [{ name = "lint", run = "true" }]

[lane.test]
class = "required"
paths = ["src/**"]
needs = ["lint"]
concurrency = "mac"
labels = ["linux"]
step = [{ name = "test", run = "true" }]

[lane.docs]
class = "advisory"
paths = ["docs/**"]
step = [{ name = "docs", run = "true" }]

[lane.soak]
class = "nightly"
schedule = "0 3 * * *"
step = [{ name = "soak", run = "true" }]

[lane.release]
class = "manual"
step = [{ name = "release", run = "true" }]

[group.mac]
limit = 1
"#;

impl Forge {
    async fn push(
        &self,
        branch: &str,
        head: &CommitId,
        ms: i64,
    ) -> Result<Outcome, Box<dyn std::error::Error>> {
        let git = Repo::discover(&self.work())?;
        Ok(on_branch_head(&self.store, &self.repo, &git, branch, head, t(ms)).await?)
    }
}

fn t(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn created(outcome: Outcome) -> Result<Created, Box<dyn std::error::Error>> {
    match outcome {
        Outcome::Created(c) => Ok(c),
        Outcome::AlreadySeen => Err("expected a new run, got AlreadySeen".into()),
        Outcome::Returned(_) => Err("expected a new run, got Returned".into()),
    }
}

fn state_of(c: &Created, lane: &str) -> Option<JobState> {
    c.run.jobs.iter().find(|j| j.lane == lane).map(|j| j.state)
}

#[tokio::test]
async fn a_feature_branch_selects_by_its_diff_against_the_merge_base_and_records_skips()
-> TestResult {
    let f = Forge::new(t(0)).await?;
    let root = f.commit(&[
        ("lanes.toml", CATALOG),
        ("src/a.rs", "1"),
        ("docs/a.md", "1"),
    ])?;
    created(f.push("main", &root, 1).await?)?;
    git_in(&f.work(), &["checkout", "--quiet", "-b", "feature"]);
    let head = f.commit(&[("docs/a.md", "2")])?;
    // main moves on after the branch point: its change must not count for the feature branch.
    git_in(&f.work(), &["checkout", "--quiet", "main"]);
    f.commit(&[("src/a.rs", "2")])?;

    let c = created(f.push("feature", &head, 2).await?)?;
    assert_eq!(c.run.run.base.as_deref(), Some(root.as_str()));
    assert_eq!(state_of(&c, "docs"), Some(JobState::Queued));
    assert_eq!(state_of(&c, "lint"), Some(JobState::Skipped));
    assert_eq!(state_of(&c, "test"), Some(JobState::Skipped));
    assert_eq!(state_of(&c, "soak"), Some(JobState::Skipped));
    let lint = c
        .run
        .jobs
        .iter()
        .find(|j| j.lane == "lint")
        .ok_or("no lint job")?;
    assert_eq!(
        lint.selection,
        serde_json::json!([{"kind": "no-matching-path"}])
    );
    let soak = c
        .run
        .jobs
        .iter()
        .find(|j| j.lane == "soak")
        .ok_or("no soak job")?;
    assert_eq!(soak.selection, serde_json::json!([{"kind": "nightly"}]));
    let release = c
        .run
        .jobs
        .iter()
        .find(|j| j.lane == "release")
        .ok_or("no release job")?;
    assert_eq!(release.state, JobState::Skipped);
    assert_eq!(release.selection, serde_json::json!([{"kind": "manual"}]));
    let docs = c
        .run
        .jobs
        .iter()
        .find(|j| j.lane == "docs")
        .ok_or("no docs job")?;
    assert_eq!(docs.priority, Priority::Advisory);
    assert_eq!(docs.retries, 2);
    Ok(())
}

#[tokio::test]
async fn the_same_head_twice_creates_one_run() -> TestResult {
    let f = Forge::new(t(0)).await?;
    let head = f.commit(&[("lanes.toml", CATALOG), ("src/a.rs", "1")])?;
    created(f.push("main", &head, 1).await?)?;
    assert!(matches!(
        f.push("main", &head, 2).await?,
        Outcome::AlreadySeen
    ));
    let runs = f
        .store
        .list_runs(&lanes_store::RunFilter::default())
        .await?;
    assert_eq!(runs.len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_push_to_main_diffs_against_the_previous_main_head() -> TestResult {
    let f = Forge::new(t(0)).await?;
    let first = f.commit(&[("lanes.toml", CATALOG), ("src/a.rs", "1")])?;
    let c1 = created(f.push("main", &first, 1).await?)?;
    assert_eq!(c1.run.run.diagnostics, None);
    // The very first head has no base: every required and advisory lane is forced.
    assert_eq!(c1.run.run.base, None);
    let lint = c1
        .run
        .jobs
        .iter()
        .find(|j| j.lane == "lint")
        .ok_or("no lint job")?;
    assert_eq!(lint.selection[0], serde_json::json!({"kind": "forced"}));
    assert_eq!(state_of(&c1, "docs"), Some(JobState::Queued));

    let second = f.commit(&[("src/a.rs", "2")])?;
    let c2 = created(f.push("main", &second, 2).await?)?;
    assert_eq!(c2.run.run.base.as_deref(), Some(first.as_str()));
    assert_eq!(state_of(&c2, "lint"), Some(JobState::Queued));
    assert_eq!(state_of(&c2, "test"), Some(JobState::Queued));
    assert_eq!(state_of(&c2, "docs"), Some(JobState::Skipped));
    let test = c2
        .run
        .jobs
        .iter()
        .find(|j| j.lane == "test")
        .ok_or("no test job")?;
    assert_eq!(test.priority, Priority::Required);
    assert_eq!(test.group.as_deref(), Some("mac"));
    assert_eq!(test.labels, vec!["linux".to_owned()]);
    let lint_id = c2
        .run
        .jobs
        .iter()
        .find(|j| j.lane == "lint")
        .ok_or("no lint")?
        .id;
    assert_eq!(test.needs, vec![lint_id]);
    Ok(())
}

#[tokio::test]
async fn a_broken_catalog_gives_an_error_run_with_diagnostics_and_no_jobs() -> TestResult {
    let f = Forge::new(t(0)).await?;
    let head = f.commit(&[("lanes.toml", "version = 1\n[lane.x]\nclas = \"required\"\n")])?;
    let c = created(f.push("main", &head, 1).await?)?;
    assert_eq!(c.run.run.status, RunStatus::Error);
    assert!(c.run.jobs.is_empty());
    let stored = f.store.run("app", c.run.run.number).await?;
    let text = stored.run.diagnostics.ok_or("no diagnostics stored")?;
    let doc: serde_json::Value = serde_json::from_str(&text)?;
    assert_eq!(doc["version"], 1);
    let first = &doc["diagnostics"][0];
    assert!(first["line"].as_u64().is_some_and(|l| l >= 2), "{doc}");
    assert!(
        first["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{doc}"
    );
    Ok(())
}

#[tokio::test]
async fn a_new_head_supersedes_the_older_run_and_returns_its_open_jobs() -> TestResult {
    let f = Forge::new(t(0)).await?;
    let first = f.commit(&[("lanes.toml", CATALOG), ("src/a.rs", "1")])?;
    let c1 = created(f.push("main", &first, 1).await?)?;
    let open: Vec<_> = c1
        .run
        .jobs
        .iter()
        .filter(|j| j.state == JobState::Queued)
        .map(|j| j.id)
        .collect();
    assert!(!open.is_empty());
    let second = f.commit(&[("src/a.rs", "2")])?;
    let c2 = created(f.push("main", &second, 2).await?)?;
    assert_eq!(c2.superseded, vec![c1.run.run.number]);
    let mut cancel: Vec<_> = c2.to_cancel.iter().map(|j| j.id).collect();
    cancel.sort();
    assert_eq!(cancel, open);
    let old = f.store.run("app", c1.run.run.number).await?;
    assert_eq!(old.run.superseded_by, Some(c2.run.run.number));
    // A run on another branch is left alone.
    git_in(&f.work(), &["checkout", "--quiet", "-b", "other"]);
    let other = f.commit(&[("src/b.rs", "1")])?;
    let c3 = created(f.push("other", &other, 3).await?)?;
    assert!(c3.superseded.is_empty() && c3.to_cancel.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_branch_back_at_an_earlier_head_supersedes_the_runs_in_between_and_creates_none()
-> TestResult {
    let f = Forge::new(t(0)).await?;
    let a = f.commit(&[("lanes.toml", CATALOG), ("src/a.rs", "1")])?;
    let run_a = created(f.push("main", &a, 1).await?)?.run.run.number;
    let b = f.commit(&[("src/a.rs", "2")])?;
    let c_b = created(f.push("main", &b, 2).await?)?;
    let open_b: Vec<_> = c_b
        .run
        .jobs
        .iter()
        .filter(|j| !j.state.is_terminal())
        .map(|j| j.id)
        .collect();
    assert!(!open_b.is_empty());

    // The branch is reset to `a`: `a`'s run is the branch's again, `b`'s is superseded by it.
    let Outcome::Returned(back) = f.push("main", &a, 3).await? else {
        return Err("expected Returned".into());
    };
    assert_eq!(back.run.run.number, run_a);
    assert_eq!(back.superseded, vec![c_b.run.run.number]);
    let mut cancel: Vec<_> = back.to_cancel.iter().map(|j| j.id).collect();
    cancel.sort();
    assert_eq!(cancel, open_b);
    let old_b = f.store.run("app", c_b.run.run.number).await?;
    assert_eq!(old_b.run.superseded_by, Some(run_a));
    let runs = f
        .store
        .list_runs(&lanes_store::RunFilter::default())
        .await?;
    assert_eq!(runs.len(), 2, "no run was created for a head seen before");

    // Seen again right away: nothing more to do.
    assert!(matches!(f.push("main", &a, 4).await?, Outcome::AlreadySeen));
    Ok(())
}

#[tokio::test]
async fn run_numbers_go_one_two_three_per_repository() -> TestResult {
    let f = Forge::new(t(0)).await?;
    let mut numbers = Vec::new();
    for i in 0..3 {
        let head = f.commit(&[("lanes.toml", CATALOG), ("src/a.rs", &i.to_string())])?;
        numbers.push(
            created(f.push("main", &head, i64::from(i)).await?)?
                .run
                .run
                .number,
        );
    }
    assert_eq!(numbers, vec![1, 2, 3]);
    Ok(())
}

#[tokio::test]
async fn the_pins_file_is_read_at_the_commit_not_the_working_tree() -> TestResult {
    let f = Forge::new(t(0)).await?;
    let catalog = format!(
        "pins = \"ci/pins.toml\"\n{}",
        CATALOG.replacen("version = 1\n", "", 1)
    );
    let catalog = format!("version = 1\n{catalog}");
    let good = "rustc = { command = \"rustc --version\", expect = \"1\" }\n";
    let head = f.commit(&[("lanes.toml", &catalog), ("ci/pins.toml", "not = [toml")])?;
    // A valid pins file in the working tree only must not rescue the broken one at the commit.
    std::fs::write(f.work().join("ci/pins.toml"), good)?;
    let broken = created(f.push("main", &head, 1).await?)?;
    assert_eq!(broken.run.run.status, RunStatus::Error);
    let text = broken.run.run.diagnostics.ok_or("no diagnostics")?;
    assert!(text.contains("ci/pins.toml"), "{text}");

    let fixed = f.commit(&[("ci/pins.toml", good)])?;
    let ok = created(f.push("main", &fixed, 2).await?)?;
    assert_eq!(
        ok.run.run.status,
        RunStatus::Pending,
        "{:?}",
        ok.run.run.diagnostics
    );
    // The pins file changed, which selects every required and advisory lane.
    assert_eq!(state_of(&ok, "lint"), Some(JobState::Queued));
    assert_eq!(state_of(&ok, "docs"), Some(JobState::Queued));
    Ok(())
}
