//! What `Forge::open` repairs after a crash, against a real git repository and a real SQLite
//! store: here, a run marked superseded whose jobs were never cancelled.

use jiff::Timestamp;
use lanes_core::job::{JobReason, JobState};
use lanes_git::Repo;
use lanes_server::{ForgeConfig, Outcome, on_branch_head};
use lanes_store::Store;

mod common;
use common::{Forge, TestResult};

const CATALOG: &str = r#"version = 1

[lane.lint]
class = "required"
step = [{ name = "lint", run = "true" }]

[lane.deploy]
class = "required"
cancel-superseded = false
step = [{ name = "deploy", run = "true" }]
"#;

#[tokio::test]
async fn open_cancels_the_jobs_a_crash_left_open_in_a_superseded_run() -> TestResult {
    let f = Forge::new(Timestamp::now()).await?;
    let git = Repo::discover(&f.work())?;
    let first = f.commit(&[("lanes.toml", CATALOG), ("src/a.rs", "1")])?;
    let Outcome::Created(old) =
        on_branch_head(&f.store, &f.repo, &git, "main", &first, Timestamp::now()).await?
    else {
        return Err("a run for the first head".into());
    };
    let second = f.commit(&[("src/a.rs", "2")])?;
    // The trigger marks the old run superseded; the crash comes before the forge cancels the
    // jobs it returned.
    let Outcome::Created(new) =
        on_branch_head(&f.store, &f.repo, &git, "main", &second, Timestamp::now()).await?
    else {
        return Err("a run for the second head".into());
    };
    assert_eq!(new.superseded, vec![old.run.run.number]);
    let before = f.store.run("app", old.run.run.number).await?;
    assert!(before.jobs.iter().all(|j| j.state == JobState::Queued));

    let forge = lanes_server::Forge::open(
        f.store.clone(),
        ForgeConfig {
            data_dir: f.dir.path().to_owned(),
            schedule: lanes_core::schedule::Config::default(),
            public_read: false,
        },
    )
    .await?;
    let after = forge.store().run("app", old.run.run.number).await?;
    let state = |lane: &str| {
        after
            .jobs
            .iter()
            .find(|j| j.lane == lane)
            .map(|j| (j.state, j.reason.clone()))
    };
    assert_eq!(
        state("lint"),
        Some((
            JobState::Cancelled,
            Some(JobReason::Superseded {
                by: new.run.run.number
            })
        ))
    );
    let (deploy, _) = state("deploy").ok_or("a deploy job")?;
    assert_eq!(
        deploy,
        JobState::Queued,
        "a cancel-superseded = false lane is left to run"
    );
    // The new run is untouched.
    let newer = forge.store().run("app", new.run.run.number).await?;
    assert!(newer.jobs.iter().all(|j| j.state == JobState::Queued));
    Ok(())
}
