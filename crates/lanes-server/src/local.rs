//! The built-in agent's link to the forge: the same [`Link`] interface a remote agent uses over
//! HTTP, answered by direct calls into the [`Forge`] in this process.

use crate::forge::Forge;
use lanes_agent::{Assignment, FinishReport, Link, LinkError, StepReport};
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

    async fn step(&self, job: u64, token: u64, step: StepReport) -> Result<(), LinkError> {
        Ok(self.forge.step(job, token, step).await?)
    }

    async fn finish(&self, job: u64, token: u64, finish: FinishReport) -> Result<(), LinkError> {
        Ok(self.forge.finish(job, token, finish).await?)
    }
}
