//! Branch heads becoming runs: the repositories watched, a poll of a repository's refs (by the
//! ref watcher or a hook's notice, one at a time per repository), a new head turned into a run
//! by `crate::trigger`, the older runs it supersedes and their jobs cancelled, the new jobs
//! queued. Also the repair, when the forge opens, of a superseding a crash cut short.

use super::{Forge, Sched, core_id};
use crate::error::{ForgeError, ForgeResult};
use crate::trigger::{self, Outcome};
use jiff::Timestamp;
use lanes_core::job::JobReason;
use lanes_core::schedule::{self, Superseded, SupersedingCatalog, on_superseded};
use lanes_git::Repo;
use lanes_store::{JobRecord, RepoRecord, Store};
use std::sync::Arc;

impl<S: Store + 'static> Forge<S> {
    /// Only these repositories are read on a poll or a hook's notice.
    pub fn set_watched(&self, names: impl IntoIterator<Item = String>) {
        *self
            .watched
            .write()
            .expect("the watched set is never poisoned") = Some(names.into_iter().collect());
    }

    /// Reads `repo`'s branches from disk and creates a run for every head not seen before: the
    /// default branch first, so merge-bases are taken against its newest head. Returns the
    /// numbers of the runs created.
    pub async fn poll_repo(self: &Arc<Self>, repo: &str) -> ForgeResult<Vec<u64>> {
        // gix's repository handle is not `Sync`, so a future holding one across awaits is not
        // `Send`: the reading runs on a blocking thread with its own `block_on`.
        let this = Arc::clone(self);
        let repo = repo.to_owned();
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || handle.block_on(this.poll_repo_here(&repo)))
            .await
            .map_err(|e| ForgeError::Internal(format!("the ref reader panicked: {e}")))?
    }

    async fn poll_repo_here(&self, repo: &str) -> ForgeResult<Vec<u64>> {
        // Checked first, so a request for anything else leaves nothing behind.
        let record = self.store.repo(repo).await?;
        let watched = self
            .watched
            .read()
            .expect("the watched set is never poisoned")
            .as_ref()
            .is_none_or(|w| w.contains(repo));
        if !watched {
            return Err(ForgeError::NotFound(format!(
                "repository `{repo}` is not watched by this server"
            )));
        }
        let lock = {
            let mut polls = self.polls.lock().expect("the poll map is never poisoned");
            Arc::clone(polls.entry(repo.to_owned()).or_default())
        };
        let _serial = lock.lock().await;
        let git = open_repo(&record.path)?;
        let mut branches = git.branches()?;
        let record = self.find_default_branch(record, &git, &branches).await?;
        branches.sort_by_key(|b| b.name != record.default_branch);
        let mut created = Vec::new();
        let mut failed = None;
        for branch in branches {
            // One branch that cannot become a run (an orphan branch without a merge-base) must
            // not hold back the others.
            match self
                .on_head(&record, &git, &branch.name, &branch.head)
                .await
            {
                Ok(Some(number)) => created.push(number),
                Ok(None) => {}
                Err(e) => {
                    if !self.full_disk(&e) {
                        tracing::warn!("branch {} of {repo}: {e}", branch.name);
                    }
                    failed.get_or_insert(e);
                }
            }
        }
        match failed {
            Some(e) if created.is_empty() => Err(e),
            _ => Ok(created),
        }
    }

    /// The repository with a default branch that exists: when the one recorded has no commits
    /// (a bare repository whose `HEAD` names `master`, to which `main` was pushed), the one
    /// [`Repo::default_branch`] finds now is recorded instead, before any branch is diffed
    /// against a default that is not there.
    async fn find_default_branch(
        &self,
        record: RepoRecord,
        git: &Repo,
        branches: &[lanes_git::Branch],
    ) -> ForgeResult<RepoRecord> {
        if branches.is_empty() || branches.iter().any(|b| b.name == record.default_branch) {
            return Ok(record);
        }
        let Some(found) = git.default_branch()? else {
            return Ok(record);
        };
        if found == record.default_branch || !branches.iter().any(|b| b.name == found) {
            return Ok(record);
        }
        tracing::warn!(
            "repository {}: its default branch {} has no commits; using {found} (name the \
             default branch in the configuration file to choose another)",
            record.name,
            record.default_branch
        );
        Ok(self
            .store
            .update_repo(&record.name, &found, record.remote_url.as_deref())
            .await?)
    }

    /// One branch head: a run if it is new, the superseded runs' jobs cancelled, the new jobs
    /// queued.
    async fn on_head(
        &self,
        record: &RepoRecord,
        git: &Repo,
        branch: &str,
        head: &lanes_git::CommitId,
    ) -> ForgeResult<Option<u64>> {
        let outcome =
            match trigger::on_branch_head(&self.store, record, git, branch, head, Timestamp::now())
                .await
            {
                Ok(outcome) => outcome,
                Err(e) => {
                    // A store failure may come after the run was created (recording the ref,
                    // superseding): its queued jobs are in the database, so the next operation
                    // rebuilds the scheduler from it rather than leave them unscheduled. A git
                    // failure comes before anything is written.
                    if matches!(e, trigger::TriggerError::Store(_)) {
                        self.locked().await.dirty = true;
                    }
                    return Err(e.into());
                }
            };
        let (created, new) = match outcome {
            Outcome::AlreadySeen => return Ok(None),
            Outcome::Created(created) => (created, true),
            Outcome::Returned(created) => (created, false),
        };
        if new {
            self.metrics.run_created();
        }
        let number = created.run.run.number;
        let mut state = self.locked().await;
        for (group, limit) in &created.groups {
            state.limits.insert(group.clone(), *limit);
            state.sched.set_group_limit(group, *limit);
        }
        let cancel: Vec<schedule::JobId> =
            created.to_cancel.iter().map(|j| core_id(j.id)).collect();
        if !cancel.is_empty() {
            let transitions = state
                .sched
                .cancel(&cancel, JobReason::Superseded { by: number });
            self.persist(&mut state, transitions).await?;
        }
        if new {
            self.queue_jobs(&mut state, &created.run, &created.run.jobs)
                .await?;
        }
        for old in &created.superseded {
            let refreshed = self.refresh_run(&record.name, *old).await;
            self.unwritten(refreshed, || {
                format!("the status of run #{old} of {}, superseded", record.name)
            });
        }
        drop(state);
        Ok(new.then_some(number))
    }

    /// Cancels the open jobs of superseded runs that a crash left between the run being marked
    /// superseded and its jobs cancelled, by the rule a push applies
    /// ([`lanes_core::schedule::on_superseded`]). Runs before the built-in agent's jobs are
    /// requeued, so the rule sees them as they were when the forge stopped.
    pub(super) async fn finish_superseding(&self, state: &mut Sched) -> ForgeResult<()> {
        for run in self.unfinished_runs().await? {
            let Some(by) = run.superseded_by else {
                continue;
            };
            let detail = self.store.run(&run.repo, run.number).await?;
            let open: Vec<&JobRecord> = detail
                .jobs
                .iter()
                .filter(|j| !j.state.is_terminal())
                .collect();
            if open.is_empty() {
                continue;
            }
            let read = match (
                self.store.repo(&run.repo).await,
                self.store.run(&run.repo, by).await,
            ) {
                (Ok(record), Ok(newer)) => {
                    trigger::catalog_at(&record, &newer.run.head).map_err(|e| e.to_string())
                }
                (Err(e), _) | (_, Err(e)) => Err(e.to_string()),
            };
            let newer = match &read {
                Ok(Some(catalog)) => SupersedingCatalog::Read(catalog),
                Ok(None) => SupersedingCatalog::Unknown,
                Err(e) => {
                    tracing::warn!(
                        "the catalog of run #{by} of {} cannot be read ({e}): the started jobs \
                         of run #{} it superseded are left to run",
                        run.repo,
                        run.number
                    );
                    SupersedingCatalog::Unknown
                }
            };
            let cancel: Vec<schedule::JobId> = open
                .iter()
                .filter(|j| on_superseded(trigger::open_job(j), newer) == Superseded::Cancel)
                .map(|j| core_id(j.id))
                .collect();
            if cancel.is_empty() {
                continue;
            }
            tracing::warn!(
                "run #{} of {} was superseded by #{by} but {} of its jobs were still open: \
                     cancelled",
                run.number,
                run.repo,
                cancel.len()
            );
            let transitions = state.sched.cancel(&cancel, JobReason::Superseded { by });
            self.persist(state, transitions).await?;
        }
        Ok(())
    }
}

/// The repository at `path`. gix reports any failure to open its files as "not a git
/// repository", out of file descriptors included: such a failure is checked by reading the
/// directory, and said as what it is.
pub(crate) fn open_repo(path: &std::path::Path) -> ForgeResult<Repo> {
    match Repo::discover(path) {
        Ok(repo) => Ok(repo),
        Err(e @ lanes_git::GitError::NotARepository { .. }) => match std::fs::read_dir(path) {
            Err(source) => Err(ForgeError::Io {
                action: "open the repository",
                path: path.to_owned(),
                source,
            }),
            Ok(_) => Err(e.into()),
        },
        Err(e) => Err(e.into()),
    }
}
