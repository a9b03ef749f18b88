//! The nightly timer's side: for each watched repository, the nightly run that is due created
//! (`crate::nightly` computes the slots and builds the run) and its jobs queued.

use super::{Forge, open_repo};
use crate::error::{ForgeError, ForgeResult};
use crate::nightly::{self, NightlyOutcome};
use jiff::Timestamp;
use lanes_store::{RunDetail, Store};
use std::sync::Arc;

impl<S: Store + 'static> Forge<S> {
    /// Creates the nightly runs that are due in the `watched` repositories (one per repository,
    /// with every nightly lane whose cron slot passed) and queues their jobs. Returns when the next slot of
    /// any repository comes.
    pub async fn nightly_tick(self: &Arc<Self>, watched: &[String]) -> Option<Timestamp> {
        let mut next: Option<Timestamp> = None;
        for name in watched {
            let repo = match self.store.repo(name).await {
                Ok(repo) => repo,
                Err(e) => {
                    tracing::warn!("nightly runs of {name}: {e}");
                    continue;
                }
            };
            let this = Arc::clone(self);
            let handle = tokio::runtime::Handle::current();
            let name = repo.name.clone();
            // gix's handle is not `Sync`: the git part runs on a blocking thread.
            let ticked = tokio::task::spawn_blocking(move || {
                handle.block_on(async {
                    let git = open_repo(&repo.path)?;
                    // A slot from before the forge knew the repository is not run.
                    let first_seen = repo.created_at;
                    let tick = nightly::create_nightly_run(
                        &this.store,
                        &repo,
                        &git,
                        |_| first_seen,
                        Timestamp::now(),
                    )
                    .await?;
                    if let NightlyOutcome::Created(created) = &tick.outcome {
                        this.start_run(&created.run, &created.groups).await?;
                    }
                    Ok::<_, ForgeError>(tick.next)
                })
            })
            .await;
            match ticked {
                Ok(Ok(Some(at))) => next = Some(next.map_or(at, |n| n.min(at))),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => tracing::warn!("nightly runs of {name}: {e}"),
                Err(e) => tracing::warn!("nightly runs of {name}: the task failed: {e}"),
            }
        }
        next
    }

    /// Queues a run created outside a push (a nightly run).
    async fn start_run(&self, run: &RunDetail, groups: &[(String, u32)]) -> ForgeResult<()> {
        self.metrics.run_created();
        let mut state = self.locked().await;
        for (group, limit) in groups {
            state.limits.insert(group.clone(), *limit);
            state.sched.set_group_limit(group, *limit);
        }
        self.queue_jobs(&mut state, run, &run.jobs).await
    }
}
