//! The built-in agent's link to the forge: the same [`Link`] interface a remote agent uses over
//! HTTP, answered by direct calls into the [`Forge`] in this process.

use crate::forge::{Forge, JobEvent};
use lanes_agent::{Assignment, FinishReport, HostStatus, Link, LinkError, StepRecord};
use lanes_store::Store;
use std::sync::Arc;
use std::time::Duration;

/// An agent called `name` talking to `forge` in-process.
#[derive(Debug)]
pub struct LocalLink<S> {
    forge: Arc<Forge<S>>,
    name: String,
}

impl<S> LocalLink<S> {
    /// The link of the agent `name`.
    pub fn new(forge: Arc<Forge<S>>, name: impl Into<String>) -> LocalLink<S> {
        LocalLink {
            forge,
            name: name.into(),
        }
    }
}

impl<S: Store + 'static> Link for LocalLink<S> {
    async fn lease(&self, wait: Duration) -> Result<Option<Assignment>, LinkError> {
        Ok(self.forge.lease(&self.name, wait).await?)
    }

    async fn started(&self, job: u64, token: u64) -> Result<(), LinkError> {
        Ok(self.forge.started(job, token).await?)
    }

    async fn heartbeat(&self, job: u64, token: u64) -> Result<(), LinkError> {
        Ok(self.forge.heartbeat(job, token).await?)
    }

    async fn append_log(
        &self,
        job: u64,
        token: u64,
        offset: u64,
        bytes: Vec<u8>,
    ) -> Result<u64, LinkError> {
        Ok(self.forge.append_log(job, token, offset, bytes).await?)
    }

    async fn secrets(
        &self,
        job: u64,
        token: u64,
        names: Vec<String>,
    ) -> Result<lanes_agent::link::Secrets, LinkError> {
        Ok(self.forge.secrets(job, token, &names).await?)
    }

    async fn step(&self, job: u64, token: u64, step: StepRecord) -> Result<(), LinkError> {
        Ok(self.forge.step(job, token, step).await?)
    }

    async fn revoked(&self, job: u64, token: u64) {
        let mut events = self.forge.subscribe();
        loop {
            if !self.forge.holds(job, token).await {
                return;
            }
            // Only this job's state changes (or missed events) are worth a look at the lease.
            loop {
                match events.recv().await {
                    Ok(JobEvent::State { job: changed }) if changed.0 as u64 == job => break,
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        std::future::pending::<()>().await;
                    }
                }
            }
        }
    }

    async fn host_status(&self, status: HostStatus) -> Result<(), LinkError> {
        self.forge.set_host_status(&self.name, status);
        Ok(())
    }

    async fn finish(&self, job: u64, token: u64, finish: FinishReport) -> Result<(), LinkError> {
        Ok(self.forge.finish(job, token, finish).await?)
    }
}
