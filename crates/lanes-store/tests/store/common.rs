//! Helpers: a store in a temporary directory, timestamps, runs and jobs to create.

use jiff::Timestamp;
use lanes_core::job::{JobReason, JobState, Priority};
use lanes_core::{LaneClass, Reason};
use lanes_store::{
    JobId, JobUpdate, NewJob, NewRepo, NewRun, RunDetail, RunStatus, RunTrigger, SqliteStore, Store,
};
use std::path::PathBuf;

pub(crate) type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A temporary data directory with a database file in it.
pub(crate) struct Fixture {
    pub(crate) dir: tempfile::TempDir,
}

impl Fixture {
    pub(crate) fn new() -> std::io::Result<Fixture> {
        Ok(Fixture {
            dir: tempfile::tempdir()?,
        })
    }

    pub(crate) fn db(&self) -> PathBuf {
        self.dir.path().join("lanes.db")
    }

    pub(crate) async fn open(&self) -> Result<SqliteStore, lanes_store::StoreError> {
        SqliteStore::open(&self.db()).await
    }

    /// Opens the store and adds repository `app` with default branch `main`.
    pub(crate) async fn with_repo(&self) -> Result<SqliteStore, lanes_store::StoreError> {
        let store = self.open().await?;
        store.add_repo(&repo("app"), t(0)).await?;
        Ok(store)
    }
}

/// Milliseconds since the epoch as a timestamp.
pub(crate) fn t(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

pub(crate) fn repo(name: &str) -> NewRepo {
    NewRepo {
        name: name.into(),
        path: PathBuf::from(format!("/srv/git/{name}.git")),
        remote_url: Some(format!("https://example.invalid/{name}.git")),
        default_branch: "main".into(),
    }
}

/// A queued required job for `lane` needing `needs`.
pub(crate) fn job(lane: &str, needs: &[&str]) -> NewJob {
    NewJob {
        lane: lane.into(),
        class: LaneClass::Required,
        priority: Priority::Required,
        state: JobState::Queued,
        reason: Some(JobReason::WaitingForCapacity),
        selection: vec![Reason::Path {
            path: format!("crates/{lane}/src/lib.rs"),
            pattern: "crates/**".into(),
        }],
        needs: needs.iter().map(|&n| n.to_owned()).collect(),
        group: None,
        labels: vec!["linux".into()],
        retries: 2,
        rerun_of: None,
    }
}

/// A push run of `app` on `branch` at `head` with `jobs`.
pub(crate) fn push(branch: &str, head: &str, jobs: Vec<NewJob>) -> NewRun {
    NewRun {
        repo: "app".into(),
        branch: branch.into(),
        head: head.into(),
        base: Some("base0".into()),
        trigger: RunTrigger::Push,
        status: RunStatus::Pending,
        diagnostics: None,
        created_at: t(1_000),
        jobs,
        nightly_slots: Vec::new(),
    }
}

/// Creates a push run with one queued job `build` and returns the run and the job's id.
pub(crate) async fn one_job(
    store: &SqliteStore,
) -> Result<(RunDetail, JobId), Box<dyn std::error::Error>> {
    let run = store
        .create_run(&push("main", "head1", vec![job("build", &[])]))
        .await?;
    let id = run.jobs.first().ok_or("no job created")?.id;
    Ok((run, id))
}

/// The update leasing `job` to agent `a1` with `token` until `expires`.
pub(crate) fn lease(job: JobId, token: u64, at: i64, expires: i64) -> JobUpdate {
    JobUpdate {
        job,
        from: JobState::Queued,
        to: JobState::Leased,
        reason: None,
        token: Some(token),
        agent: Some("a1".into()),
        expires_at: Some(t(expires)),
        at: t(at),
    }
}

/// The update moving `job` from `from` to `to` with `reason`.
pub(crate) fn moved(
    job: JobId,
    from: JobState,
    to: JobState,
    reason: Option<JobReason>,
    at: i64,
) -> JobUpdate {
    JobUpdate {
        job,
        from,
        to,
        reason,
        token: None,
        agent: None,
        expires_at: None,
        at: t(at),
    }
}
