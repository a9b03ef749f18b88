//! Turning a new branch head into a run: the catalog at that commit, the base, the changed paths,
//! the selection, one job per lane, and the older runs it supersedes.
//!
//! The run is created before the ref is recorded, so a crash in between loses nothing: the next
//! poll sees the head as new again and the store's unique (repository, branch, head) index turns
//! the second attempt into [`Outcome::AlreadySeen`].

use jiff::Timestamp;
use lanes_api::forge::{RunDiagnostic, RunDiagnostics};
use lanes_core::job::{JobState, Priority};
use lanes_core::schedule::{OpenJob, Superseded, SupersedingCatalog, on_superseded};
use lanes_core::{Catalog, LaneClass, Trigger};
use lanes_git::{CommitId, GitError, Repo};
use lanes_store::{
    JobRecord, NewJob, NewRun, RepoRecord, RunDetail, RunFilter, RunStatus, RunTrigger, RunUpdate,
    Store, StoreError,
};

/// Where the catalog lives, relative to the repository root.
pub use lanes_engine::catalog::CATALOG_PATH;
use lanes_engine::catalog::LoadError;

/// How many times a job is requeued after lost agents before it ends `error`.
pub const DEFAULT_RETRIES: u32 = 2;

/// What [`on_branch_head`] did.
#[derive(Debug)]
pub enum Outcome {
    /// The head was seen on this branch before: nothing was created.
    AlreadySeen,
    /// A run was created.
    Created(Created),
    /// The branch went back to a head it had before (A, then B, then A again): no run is
    /// created (one run per branch and head), the head's earlier run is the branch's again, and
    /// the runs of the heads in between are superseded by it. `run` is that earlier run.
    Returned(Created),
}

/// A run created for a new head (or the earlier run of a head the branch returned to), and the
/// work the server must cancel because of it.
#[derive(Debug)]
pub struct Created {
    /// The new run with its jobs (an `error` run has none).
    pub run: RunDetail,
    /// The numbers of the older runs on the branch it superseded.
    pub superseded: Vec<u64>,
    /// Their open jobs for the scheduler to cancel with reason `superseded`, by the one rule
    /// ([`on_superseded`]): every job that never started, and every started one unless its lane
    /// sets `cancel-superseded = false` in the catalog at the new head or that catalog does not
    /// validate (those run to the end).
    pub to_cancel: Vec<JobRecord>,
    /// The concurrency groups of the catalog at the new head, with their limits.
    pub groups: Vec<(String, u32)>,
}

/// Creating a run failed.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    /// Reading the repository failed (a missing default branch, no merge-base, a shallow clone).
    #[error("failed to read the repository: {0}")]
    Git(#[from] GitError),
    /// The store failed.
    #[error("failed to write the forge state: {0}")]
    Store(#[from] StoreError),
}

/// Handles `branch` of `repo` pointing at `head`: creates its run unless the head was seen
/// before on that branch, and supersedes the branch's older push runs.
///
/// The base is the merge-base with the default branch's head; for a push to the default branch
/// it is the previous default head the store recorded. The very first head of the default branch
/// has no base and selects every required and advisory lane (reason `forced`).
pub async fn on_branch_head(
    store: &impl Store,
    repo: &RepoRecord,
    git: &Repo,
    branch: &str,
    head: &CommitId,
    now: Timestamp,
) -> Result<Outcome, TriggerError> {
    let previous = store
        .refs(&repo.name)
        .await?
        .into_iter()
        .find(|r| r.branch == branch)
        .map(|r| r.head);
    if previous.as_deref() == Some(head.as_str()) {
        return Ok(Outcome::AlreadySeen);
    }
    let base = if branch == repo.default_branch {
        match &previous {
            Some(prev) => Some(git.resolve(prev)?),
            None => None,
        }
    } else {
        let default_head = git.resolve(&format!("refs/heads/{}", repo.default_branch))?;
        Some(git.merge_base(&default_head, head)?)
    };

    let mut groups = Vec::new();
    let read = read_catalog(git, head)?;
    let (status, diagnostics, jobs) = match &read {
        Ok(catalog) => {
            groups = group_limits(catalog);
            let changed = match &base {
                Some(base) => Some(git.changed_paths(base, head)?),
                None => None,
            };
            let trigger = match &changed {
                Some(paths) => Trigger::Changed {
                    paths,
                    catalog_path: CATALOG_PATH,
                },
                None => Trigger::All,
            };
            let selection = lanes_core::select(catalog, trigger);
            (RunStatus::Pending, None, jobs_for(catalog, &selection))
        }
        Err(diagnostics) => (RunStatus::Error, Some(diagnostics.clone()), Vec::new()),
    };
    let newer = match &read {
        Ok(catalog) => SupersedingCatalog::Read(catalog),
        Err(_) => SupersedingCatalog::Unknown,
    };

    let new_run = NewRun {
        repo: repo.name.clone(),
        branch: branch.to_owned(),
        head: head.as_str().to_owned(),
        base: base.map(|b| b.as_str().to_owned()),
        trigger: RunTrigger::Push,
        status,
        diagnostics,
        created_at: now,
        jobs,
        nightly_slots: Vec::new(),
    };
    let run = match store.create_run(&new_run).await {
        Ok(run) => run,
        Err(StoreError::Duplicate(_)) => {
            store
                .record_ref(&repo.name, branch, head.as_str(), now)
                .await?;
            let Some(earlier) = push_run_of(store, &repo.name, branch, head.as_str()).await? else {
                return Ok(Outcome::AlreadySeen);
            };
            let (superseded, open) = supersede(store, &earlier).await?;
            if superseded.is_empty() {
                return Ok(Outcome::AlreadySeen);
            }
            let to_cancel = to_cancel(open, newer);
            return Ok(Outcome::Returned(Created {
                run: earlier,
                superseded,
                to_cancel,
                groups,
            }));
        }
        Err(e) => return Err(e.into()),
    };
    store
        .record_ref(&repo.name, branch, head.as_str(), now)
        .await?;
    let (superseded, open) = supersede(store, &run).await?;
    let to_cancel = to_cancel(open, newer);
    Ok(Outcome::Created(Created {
        run,
        superseded,
        to_cancel,
        groups,
    }))
}

pub(crate) fn group_limits(catalog: &Catalog) -> Vec<(String, u32)> {
    catalog
        .groups
        .iter()
        .map(|(name, group)| (name.clone(), group.limit))
        .collect()
}

/// The concurrency groups of the catalog at `head` of `repo`, with their limits (none when the
/// catalog does not validate there).
pub fn group_limits_at(repo: &RepoRecord, head: &str) -> Result<Vec<(String, u32)>, GitError> {
    let git = Repo::discover(&repo.path)?;
    let head = git.resolve(head)?;
    Ok(match read_catalog(&git, &head)? {
        Ok(catalog) => group_limits(&catalog),
        Err(_) => Vec::new(),
    })
}

/// The catalog at `head` of `repo`; `Ok(None)` when it does not validate there.
pub fn catalog_at(repo: &RepoRecord, head: &str) -> Result<Option<Catalog>, GitError> {
    let git = Repo::discover(&repo.path)?;
    let head = git.resolve(head)?;
    Ok(read_catalog(&git, &head)?.ok())
}

/// What the superseding rule ([`on_superseded`]) sees of a stored job.
pub(crate) fn open_job(job: &JobRecord) -> OpenJob<'_> {
    OpenJob {
        lane: &job.lane,
        state: job.state,
        // Held before: counted as an attempt, or it wrote to its log (a clean stop hands a job
        // back without counting an attempt, but its log stays).
        ran_before: job.attempts > 0 || job.log_len > 0,
    }
}

/// The open jobs of superseded runs that the rule cancels, given the newer head's catalog.
pub(crate) fn to_cancel(open: Vec<JobRecord>, newer: SupersedingCatalog<'_>) -> Vec<JobRecord> {
    open.into_iter()
        .filter(|j| on_superseded(open_job(j), newer) == Superseded::Cancel)
        .collect()
}

/// The catalog at `head`, or the diagnostics JSON to store when it does not validate.
pub(crate) fn read_catalog(
    git: &Repo,
    head: &CommitId,
) -> Result<Result<Catalog, String>, GitError> {
    let diagnostic = |code: &str, message: String, help: Option<String>| RunDiagnostic {
        code: code.to_owned(),
        file: CATALOG_PATH.into(),
        line: None,
        column: None,
        message,
        help,
    };
    Ok(
        match lanes_engine::catalog::load(lanes_engine::catalog::From::Commit(git, head)) {
            Ok(catalog) => Ok(catalog),
            Err(LoadError::Git(e)) => return Err(e),
            Err(LoadError::Missing { .. }) => Err(diagnostics_json(vec![diagnostic(
                "catalog::missing",
                format!("no {CATALOG_PATH} at commit {head}"),
                Some("add a catalog at the repository root; see docs/manifest.md".into()),
            )])),
            Err(LoadError::Invalid(e)) => Err(diagnostics_json(
                e.diagnostics
                    .into_iter()
                    .map(|d| RunDiagnostic {
                        code: d.code.to_owned(),
                        file: d.file,
                        line: Some(d.line),
                        column: Some(d.column),
                        message: d.message,
                        help: d.help,
                    })
                    .collect(),
            )),
            Err(other) => Err(diagnostics_json(vec![diagnostic(
                "catalog::unreadable",
                other.to_string(),
                None,
            )])),
        },
    )
}

/// The diagnostics JSON stored on a run whose catalog failed (the API sends it as it is).
fn diagnostics_json(diagnostics: Vec<RunDiagnostic>) -> String {
    let doc = RunDiagnostics {
        version: RunDiagnostics::VERSION,
        diagnostics,
    };
    serde_json::to_string(&doc).unwrap_or_else(|e| format!("diagnostics not serializable: {e}"))
}

/// One job per lane: selected lanes queued, the others skipped with their selection reasons.
fn jobs_for(catalog: &Catalog, selection: &lanes_core::Selection) -> Vec<NewJob> {
    catalog
        .lanes
        .iter()
        .zip(&selection.lanes)
        .map(|(lane, chosen)| NewJob {
            lane: lane.name.clone(),
            class: lane.class,
            priority: priority(lane.class),
            state: if chosen.selected {
                JobState::Queued
            } else {
                JobState::Skipped
            },
            reason: None,
            selection: chosen.reasons.clone(),
            needs: lane.needs.clone(),
            group: lane.concurrency.clone(),
            labels: lane.labels.clone(),
            retries: DEFAULT_RETRIES,
            rerun_of: None,
        })
        .collect()
}

fn priority(class: LaneClass) -> Priority {
    match class {
        LaneClass::Required => Priority::Required,
        LaneClass::Advisory => Priority::Advisory,
        LaneClass::Nightly => Priority::Nightly,
        LaneClass::Manual => Priority::Manual,
    }
}

/// The push run of `head` on `branch`, newest first.
async fn push_run_of(
    store: &impl Store,
    repo: &str,
    branch: &str,
    head: &str,
) -> Result<Option<RunDetail>, StoreError> {
    let mut before = None;
    loop {
        let filter = RunFilter {
            repo: Some(repo.to_owned()),
            branch: Some(branch.to_owned()),
            before,
            limit: 100,
            ..RunFilter::default()
        };
        let page = store.list_runs(&filter).await?;
        if let Some(run) = page
            .iter()
            .find(|r| r.head == head && r.trigger == RunTrigger::Push)
        {
            return Ok(Some(store.run(repo, run.number).await?));
        }
        if page.len() < 100 {
            return Ok(None);
        }
        before = page.last().map(|r| r.id);
    }
}

/// Marks the branch's other unfinished push runs (older ones, and for a head the branch
/// returned to, the newer ones of the heads in between) as superseded by `run` and returns their
/// numbers and open jobs.
async fn supersede(
    store: &impl Store,
    run: &RunDetail,
) -> Result<(Vec<u64>, Vec<JobRecord>), StoreError> {
    let mut numbers = Vec::new();
    let mut open = Vec::new();
    for status in [RunStatus::Pending, RunStatus::Running] {
        let mut before = None;
        loop {
            let filter = RunFilter {
                repo: Some(run.run.repo.clone()),
                branch: Some(run.run.branch.clone()),
                status: Some(status),
                before,
                limit: 100,
            };
            let page = store.list_runs(&filter).await?;
            for old in &page {
                let older = old.id < run.run.id;
                // An older run superseded before stays so; a newer one, superseded or not, is
                // the branch's past now that it points at `run`'s head again.
                if old.id == run.run.id
                    || old.trigger != RunTrigger::Push
                    || (older && old.superseded_by.is_some())
                {
                    continue;
                }
                let detail = store.run(&old.repo, old.number).await?;
                open.extend(detail.jobs.into_iter().filter(|j| !j.state.is_terminal()));
                store
                    .update_run(
                        old.id,
                        &RunUpdate {
                            superseded_by: Some(run.run.number),
                            ..RunUpdate::default()
                        },
                    )
                    .await?;
                numbers.push(old.number);
            }
            if page.len() < 100 {
                break;
            }
            before = page.last().map(|r| r.id);
        }
    }
    numbers.sort_unstable();
    Ok((numbers, open))
}
