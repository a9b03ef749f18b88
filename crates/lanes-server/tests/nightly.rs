//! Nightly runs against a real git repository (made with the `git` CLI) and a real SQLite store
//! in temporary directories: a slot runs once, after downtime once for the latest slot, and a
//! second creation for a claimed slot creates nothing.

use jiff::Timestamp;
use lanes_core::job::{JobState, Priority};
use lanes_core::{Reason, Source};
use lanes_git::{CommitId, Repo};
use lanes_server::nightly::{
    DueLane, NightlyOutcome, NightlyTick, create_nightly_run, nightly_run,
};
use lanes_store::{RunDetail, RunFilter, RunTrigger, Store, StoreError};

mod common;
use common::{Forge, TestResult};

const CATALOG: &str = r#"version = 1

[lane.build]
step = [{ name = "build", run = "true" }]

[lane.docs]
class = "advisory"
step = [{ name = "docs", run = "true" }]

[lane.soak]
class = "nightly"
schedule = "0 3 * * *"
needs = ["build"]
concurrency = "big"
step = [{ name = "soak", run = "true" }]

[lane.release]
class = "manual"
step = [{ name = "release", run = "true" }]

[group.big]
limit = 1
"#;

/// A repository whose `main` holds `catalog`, and a store that knows it.
async fn forge(catalog: &str) -> Result<Forge, Box<dyn std::error::Error>> {
    let f = Forge::new(at("2026-01-01T00:00:00Z")?).await?;
    f.commit(&[("lanes.toml", catalog)])?;
    Ok(f)
}

impl Forge {
    fn git(&self) -> Result<Repo, Box<dyn std::error::Error>> {
        Ok(Repo::discover(&self.work())?)
    }

    fn head(&self) -> Result<CommitId, Box<dyn std::error::Error>> {
        Ok(self.git()?.resolve("refs/heads/main")?)
    }

    /// One look at the nightly lanes at `now`, every lane first seen at `first_seen`.
    async fn tick(
        &self,
        first_seen: &str,
        now: &str,
    ) -> Result<NightlyTick, Box<dyn std::error::Error>> {
        let first_seen = at(first_seen)?;
        let git = self.git()?;
        Ok(create_nightly_run(&self.store, &self.repo, &git, |_| first_seen, at(now)?).await?)
    }

    async fn runs(&self) -> Result<usize, Box<dyn std::error::Error>> {
        Ok(self.store.list_runs(&RunFilter::default()).await?.len())
    }
}

fn at(text: &str) -> Result<Timestamp, jiff::Error> {
    text.parse()
}

fn created(tick: NightlyTick) -> Result<RunDetail, Box<dyn std::error::Error>> {
    match tick.outcome {
        NightlyOutcome::Created(c) => Ok(c.run),
        other => Err(format!("expected a nightly run, got {other:?}").into()),
    }
}

fn nothing_due(tick: &NightlyTick) -> bool {
    matches!(tick.outcome, NightlyOutcome::NothingDue)
}

#[tokio::test]
async fn a_slot_before_the_forge_knew_the_lane_does_not_run_and_the_next_runs_once() -> TestResult {
    let f = forge(CATALOG).await?;
    let first_seen = "2026-05-01T10:00:00Z";

    // Set up at 10:00, after today's 03:00 slot: nothing runs, the timer is told when to look.
    let tick = f.tick(first_seen, first_seen).await?;
    assert!(nothing_due(&tick), "{tick:?}");
    assert_eq!(tick.next, Some(at("2026-05-02T03:00:00Z")?));
    assert_eq!(f.runs().await?, 0);

    // The next slot passes while the forge is up.
    let tick = f.tick(first_seen, "2026-05-02T03:00:05Z").await?;
    assert_eq!(tick.next, Some(at("2026-05-03T03:00:00Z")?));
    let groups = match &tick.outcome {
        NightlyOutcome::Created(c) => c.groups.clone(),
        other => return Err(format!("expected a nightly run, got {other:?}").into()),
    };
    assert_eq!(groups, [("big".to_owned(), 1)]);
    let run = created(tick)?;
    assert_eq!(run.run.trigger, RunTrigger::Nightly);
    assert_eq!(run.run.branch, "main");
    assert_eq!(run.run.head, f.head()?.as_str());
    let lanes: Vec<&str> = run.jobs.iter().map(|j| j.lane.as_str()).collect();
    assert_eq!(
        lanes,
        ["build", "soak"],
        "the due lane and its need, nothing else"
    );
    for job in &run.jobs {
        assert_eq!(
            (job.state, job.priority),
            (JobState::Queued, Priority::Nightly)
        );
    }
    let soak = &run.jobs[1];
    assert_eq!(
        soak.selection,
        serde_json::to_value([Reason::Scheduled {
            slot: "2026-05-02T03:00:00Z".into()
        }])?
    );
    assert_eq!(soak.needs, [run.jobs[0].id]);
    assert_eq!(
        f.store.last_nightly_slot("app", "soak").await?,
        Some(at("2026-05-02T03:00:00Z")?)
    );

    // The same `now` again, and later the same day: nothing more.
    for now in ["2026-05-02T03:00:05Z", "2026-05-02T23:00:00Z"] {
        let tick = f.tick(first_seen, now).await?;
        assert!(nothing_due(&tick), "{now}: {tick:?}");
    }
    assert_eq!(f.runs().await?, 1);
    Ok(())
}

#[tokio::test]
async fn downtime_over_three_slots_creates_one_run_for_the_latest() -> TestResult {
    let f = forge(CATALOG).await?;
    let first_seen = "2026-05-01T00:00:00Z";
    created(f.tick(first_seen, "2026-05-01T03:00:00Z").await?)?;

    // Down from May 1st until May 4th at noon: the slots of May 2, 3 and 4 were missed.
    let run = created(f.tick(first_seen, "2026-05-04T12:00:00Z").await?)?;
    let soak = run
        .jobs
        .iter()
        .find(|j| j.lane == "soak")
        .ok_or("no soak job")?;
    assert_eq!(
        soak.selection,
        serde_json::to_value([Reason::Scheduled {
            slot: "2026-05-04T03:00:00Z".into()
        }])?
    );
    let tick = f.tick(first_seen, "2026-05-04T12:00:01Z").await?;
    assert!(nothing_due(&tick), "{tick:?}");
    assert_eq!(
        f.runs().await?,
        2,
        "one run for May 1st, one for the downtime"
    );
    assert_eq!(
        f.store.last_nightly_slot("app", "soak").await?,
        Some(at("2026-05-04T03:00:00Z")?)
    );
    Ok(())
}

#[tokio::test]
async fn creating_the_nightly_run_twice_for_the_same_slot_creates_one() -> TestResult {
    let f = forge(CATALOG).await?;
    let mut none = |path: &str| Err(format!("no file `{path}` in this test"));
    let catalog = lanes_core::parse(&Source::new("lanes.toml", CATALOG), &mut none)
        .map_err(|e| format!("{:?}", e.diagnostics))?;
    let due = [DueLane {
        lane: "soak".into(),
        slot: at("2026-05-02T03:00:00Z")?,
    }];
    let head = f.head()?;
    let now = at("2026-05-02T03:00:01Z")?;
    let run = nightly_run(&catalog, &f.repo, head.as_str(), &due, now).ok_or("nothing due")?;

    f.store.create_run(&run).await?;
    let err = f
        .store
        .create_run(&run)
        .await
        .expect_err("a claimed slot must not be claimed again");
    assert!(matches!(err, StoreError::Duplicate(_)), "{err:?}");
    assert_eq!(f.runs().await?, 1);

    // The forge sees the claim and creates nothing either.
    let tick = f
        .tick("2026-05-01T00:00:00Z", "2026-05-02T03:00:01Z")
        .await?;
    assert!(nothing_due(&tick), "{tick:?}");
    assert_eq!(f.runs().await?, 1);
    Ok(())
}

#[tokio::test]
async fn two_forges_looking_at_the_same_slot_at_once_create_one_run() -> TestResult {
    let f = forge(CATALOG).await?;
    let (a, b) = tokio::join!(
        f.tick("2026-05-01T00:00:00Z", "2026-05-02T03:00:01Z"),
        f.tick("2026-05-01T00:00:00Z", "2026-05-02T03:00:02Z"),
    );
    let outcomes = [a?.outcome, b?.outcome];
    let made = outcomes
        .iter()
        .filter(|o| matches!(o, NightlyOutcome::Created(_)))
        .count();
    assert_eq!(made, 1, "{outcomes:?}");
    assert!(
        outcomes.iter().all(|o| matches!(
            o,
            NightlyOutcome::Created(_)
                | NightlyOutcome::AlreadyClaimed
                | NightlyOutcome::NothingDue
        )),
        "{outcomes:?}"
    );
    assert_eq!(f.runs().await?, 1);
    Ok(())
}

#[tokio::test]
async fn a_default_head_whose_catalog_fails_creates_nothing() -> TestResult {
    let f = forge("version = 1\n[lane.soak]\nclass = \"nightly\"\n").await?;
    let tick = f
        .tick("2026-05-01T00:00:00Z", "2026-05-02T03:00:01Z")
        .await?;
    assert!(
        matches!(tick.outcome, NightlyOutcome::CatalogInvalid),
        "{tick:?}"
    );
    assert_eq!(tick.next, None);
    assert_eq!(f.runs().await?, 0);
    Ok(())
}
