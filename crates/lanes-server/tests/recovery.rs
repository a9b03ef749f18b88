//! What `Forge::open` repairs after a crash, against a real git repository and a real SQLite
//! store: here, a run marked superseded whose jobs were never cancelled. The repair applies the
//! same superseding rule as a push (`lanes_core::schedule::on_superseded`): each case is run
//! with and without a crash and must end the same way.

use jiff::Timestamp;
use lanes_core::job::{JobReason, JobState};
use lanes_git::Repo;
use lanes_server::{ForgeConfig, Outcome, on_branch_head};
use lanes_store::{SqliteStore, Store};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

mod common;
use common::{Forge, TestResult};

/// Two lanes an agent runs (`lint`, `deploy`) and two no agent can (`lint-mac`, `deploy-mac`):
/// a started and a never-started job for each value of `cancel-superseded`.
const CATALOG: &str = r#"version = 1

[lane.lint]
class = "required"
step = [{ name = "lint", run = "true" }]

[lane.deploy]
class = "required"
cancel-superseded = false
step = [{ name = "deploy", run = "true" }]

[lane.lint-mac]
class = "required"
labels = ["mac"]
step = [{ name = "lint", run = "true" }]

[lane.deploy-mac]
class = "required"
labels = ["mac"]
cancel-superseded = false
step = [{ name = "deploy", run = "true" }]
"#;

fn config(f: &Forge) -> ForgeConfig {
    ForgeConfig {
        data_dir: f.dir.path().to_owned(),
        schedule: lanes_core::schedule::Config::default(),
        public_read: false,
        secrets: Default::default(),
    }
}

/// How the newer head's catalog reads when the forge supersedes.
#[derive(Clone, Copy, Debug)]
enum Newer {
    /// As `CATALOG`.
    Valid,
    /// It does not validate (an `error` run).
    Invalid,
    /// The repository cannot be read when the forge opens (only after a crash).
    Unreadable,
}

/// Run #1 at the first head with `lint` and `deploy` started by agent `a`, then a newer head
/// that supersedes it: through the forge (`crash` false), or marked by the trigger alone and
/// finished by `Forge::open` after a crash. Returns run #1's job states by lane.
async fn superseded(
    crash: bool,
    newer: Newer,
) -> Result<BTreeMap<String, JobState>, Box<dyn std::error::Error>> {
    let f = Forge::new(Timestamp::now()).await?;
    f.commit(&[("lanes.toml", CATALOG), ("src/a.rs", "1")])?;
    let forge = lanes_server::Forge::open(f.store.clone(), config(&f)).await?;
    assert_eq!(forge.poll_repo("app").await?, vec![1]);
    forge.agent_online("a", BTreeSet::new(), 2).await;
    for _ in 0..2 {
        let lease = forge
            .lease("a", Duration::from_secs(5))
            .await?
            .ok_or("a lease")?;
        forge.started(lease.job, lease.token).await?;
    }
    let catalog = match newer {
        Newer::Invalid => "version = 1\n[lane.lint]\nno-such-key = 1\n",
        Newer::Valid | Newer::Unreadable => CATALOG,
    };
    f.commit(&[("lanes.toml", catalog), ("src/a.rs", "2")])?;
    if crash {
        // The trigger marks run #1 superseded; the forge dies before it cancels anything.
        drop(forge);
        let git = Repo::discover(&f.work())?;
        let head = git.resolve("HEAD")?;
        let Outcome::Created(new) =
            on_branch_head(&f.store, &f.repo, &git, "main", &head, Timestamp::now()).await?
        else {
            return Err("a run for the second head".into());
        };
        assert_eq!(new.superseded, vec![1]);
        let hidden = f.dir.path().join("hidden");
        if matches!(newer, Newer::Unreadable) {
            std::fs::rename(f.work(), &hidden)?;
        }
        let reopened: Arc<lanes_server::Forge<SqliteStore>> =
            lanes_server::Forge::open(f.store.clone(), config(&f)).await?;
        drop(reopened);
        if matches!(newer, Newer::Unreadable) {
            std::fs::rename(&hidden, f.work())?;
        }
    } else {
        assert!(matches!(newer, Newer::Valid | Newer::Invalid));
        assert_eq!(forge.poll_repo("app").await?, vec![2]);
    }
    let old = f.store.run("app", 1).await?;
    assert_eq!(old.run.superseded_by, Some(2));
    for job in &old.jobs {
        if job.state == JobState::Cancelled {
            assert_eq!(job.reason, Some(JobReason::Superseded { by: 2 }), "{job:?}");
        }
    }
    Ok(old.jobs.iter().map(|j| (j.lane.clone(), j.state)).collect())
}

fn states(pairs: &[(&str, JobState)]) -> BTreeMap<String, JobState> {
    pairs.iter().map(|(l, s)| ((*l).to_owned(), *s)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn superseding_cancels_by_one_rule_with_and_without_a_crash() -> TestResult {
    // Never started: cancelled, whatever the lane says. Started: cancelled unless the lane sets
    // `cancel-superseded = false`.
    let expected = states(&[
        ("lint", JobState::Cancelled),
        ("deploy", JobState::Running),
        ("lint-mac", JobState::Cancelled),
        ("deploy-mac", JobState::Cancelled),
    ]);
    assert_eq!(
        superseded(false, Newer::Valid).await?,
        expected,
        "at the push"
    );
    assert_eq!(
        superseded(true, Newer::Valid).await?,
        expected,
        "after a crash"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_catalog_that_cannot_be_read_cancels_only_what_never_started() -> TestResult {
    // Nothing says whether a started job may be cancelled: it runs to the end.
    let expected = states(&[
        ("lint", JobState::Running),
        ("deploy", JobState::Running),
        ("lint-mac", JobState::Cancelled),
        ("deploy-mac", JobState::Cancelled),
    ]);
    assert_eq!(
        superseded(false, Newer::Invalid).await?,
        expected,
        "an invalid catalog at the push"
    );
    assert_eq!(
        superseded(true, Newer::Invalid).await?,
        expected,
        "an invalid catalog after a crash"
    );
    assert_eq!(
        superseded(true, Newer::Unreadable).await?,
        expected,
        "a repository that cannot be read after a crash"
    );
    Ok(())
}
