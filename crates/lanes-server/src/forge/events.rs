//! Live job events: what live views (log tails, status pages, the built-in agent's revocations)
//! hear of jobs, and subscribing to them. Sent after the change is durable; a send fails only
//! when nobody listens.

use super::Forge;
use lanes_store::{JobId, Store};
use tokio::sync::broadcast;

/// Something that happened to a job, for live views (log tails, status pages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobEvent {
    /// Its log grew to `len` acknowledged bytes.
    Log {
        /// The job.
        job: JobId,
        /// The acknowledged length.
        len: u64,
    },
    /// It changed state.
    State {
        /// The job.
        job: JobId,
    },
}

impl<S: Store + 'static> Forge<S> {
    /// Live job events.
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.events.subscribe()
    }
}
