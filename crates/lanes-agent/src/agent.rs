//! The agent loop: `capacity` workers, each leasing a job (a long poll), running it and leasing
//! the next, until shutdown; beside them, the host status reporter ([`crate::status`]).
//!
//! On [`Shutdown`] the workers stop leasing and their running jobs are stopped without being
//! reported: the forge requeues them when their leases expire, so no work is lost, and
//! [`run_agent`] returns only once the jobs' processes have ended.

use crate::job::{AgentEnv, JobEnd, run_job};
use crate::link::Link;
use crate::report::Backoff;
use crate::status::report_status;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long one lease call waits for a job by default.
pub const DEFAULT_LEASE_WAIT: Duration = Duration::from_secs(30);

/// A signal that stops an agent: raised once, seen by every clone.
#[derive(Clone, Debug)]
pub struct Shutdown(Arc<watch::Sender<bool>>);

impl Default for Shutdown {
    fn default() -> Shutdown {
        Shutdown(Arc::new(watch::Sender::new(false)))
    }
}

impl Shutdown {
    /// A signal not raised yet.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Raise it.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }

    /// Whether it was raised.
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits until it is raised.
    pub async fn triggered(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`, so this only returns once the flag is up.
        let _ = rx.wait_for(|up| *up).await;
    }
}

/// How an agent runs.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// What jobs run with.
    pub env: AgentEnv,
    /// How many jobs run at once.
    pub capacity: usize,
    /// How long one lease call waits for a job.
    pub lease_wait: Duration,
}

/// Lease and run jobs through `link` with `config.capacity` workers until `shutdown`; returns
/// once every worker stopped and its job's processes ended.
pub async fn run_agent<L: Link>(link: Arc<L>, config: AgentConfig, shutdown: Shutdown) {
    let config = Arc::new(config);
    let status = {
        let (link, config, shutdown) = (Arc::clone(&link), Arc::clone(&config), shutdown.clone());
        tokio::spawn(async move {
            let env = &config.env;
            report_status(
                &*link,
                &env.cache_root,
                &env.store,
                &env.activity,
                shutdown.triggered(),
            )
            .await;
        })
    };
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..config.capacity.max(1) {
        let (link, config, shutdown) = (Arc::clone(&link), Arc::clone(&config), shutdown.clone());
        workers.spawn(async move { work(&*link, &config, &shutdown, worker).await });
    }
    while let Some(ended) = workers.join_next().await {
        if let Err(e) = ended {
            tracing::error!(error = %e, "an agent worker failed");
        }
    }
    status.abort();
}

/// One worker: lease, run, repeat.
async fn work<L: Link>(link: &L, config: &AgentConfig, shutdown: &Shutdown, worker: usize) {
    let mut backoff = Backoff::new();
    while !shutdown.is_triggered() {
        // Dropping a lease call on shutdown may drop a job the forge just handed out; its
        // lease expires and the forge requeues it.
        let leased = tokio::select! {
            leased = link.lease(config.lease_wait) => leased,
            () = shutdown.triggered() => return,
        };
        match leased {
            Ok(Some(assignment)) => {
                backoff = Backoff::new();
                let (job, lane) = (assignment.job, assignment.lane.clone());
                tracing::info!(worker, job, lane, "running a job");
                match run_job(link, assignment, &config.env, shutdown).await {
                    JobEnd::Finished(report) => {
                        tracing::info!(worker, job, state = report.state.as_str(), "job ended");
                    }
                    JobEnd::Stopped(why) => {
                        tracing::warn!(worker, job, reason = ?why, "job stopped unreported");
                    }
                }
            }
            Ok(None) => backoff = Backoff::new(),
            Err(e) => {
                let wait = backoff.next_wait();
                tracing::warn!(worker, error = %e, ?wait, "leasing failed; trying again");
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = shutdown.triggered() => return,
                }
            }
        }
    }
}
