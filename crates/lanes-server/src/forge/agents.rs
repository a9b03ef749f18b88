//! Connected agents: an agent coming online (or changing its labels or capacity), going offline,
//! a remote agent calling in, quiet ones taken offline by the ticker; the scheduler's view of
//! them; each agent's newest host status. Registration and tokens live in the store and
//! `crate::agent_api`; the agents as the API and the UI show them, in `crate::agents`.

use super::{Forge, LOCAL_AGENT, Sched, millis};
use crate::error::ForgeError;
use jiff::Timestamp;
use lanes_agent::HostStatus;
use lanes_core::schedule::AgentId;
use lanes_store::Store;
use std::collections::{BTreeSet, HashMap};
use std::sync::PoisonError;

/// An agent the scheduler places jobs on.
#[derive(Clone, Debug)]
pub(super) struct AgentEntry {
    pub(super) labels: BTreeSet<String>,
    pub(super) capacity: u32,
    pub(super) online: bool,
    /// When it last called in (ms); the built-in agent never goes quiet.
    last_seen: u64,
}

/// A remote agent that has not called in for this long past its lease is offline: it gets no
/// leases and no longer counts as able to run a job's labels. (A lease call may wait 60 s.)
const AGENT_QUIET_MS: u64 = 60_000;

impl<S: Store + 'static> Forge<S> {
    /// An agent connects (or changes its labels or capacity).
    pub async fn agent_online(&self, name: &str, labels: BTreeSet<String>, capacity: u32) {
        let mut state = self.locked().await;
        state
            .sched
            .agent_online(AgentId(name.to_owned()), &labels, capacity);
        state.agents.insert(
            name.to_owned(),
            AgentEntry {
                labels,
                capacity,
                online: true,
                last_seen: millis(Timestamp::now()),
            },
        );
        let refreshed = self.refresh_reasons(&mut state).await;
        self.unwritten(refreshed, || {
            format!("the waiting reasons after agent {name} came online")
        });
        self.work.notify_waiters();
    }

    /// An agent disconnects: it gets no new leases; the ones it holds run out unless it comes
    /// back.
    pub async fn agent_offline(&self, name: &str) {
        let mut state = self.locked().await;
        state.sched.agent_offline(&AgentId(name.to_owned()));
        if let Some(agent) = state.agents.get_mut(name) {
            agent.online = false;
        }
        let refreshed = self.refresh_reasons(&mut state).await;
        self.unwritten(refreshed, || {
            format!("the waiting reasons after agent {name} went offline")
        });
    }

    /// A registered remote agent called in: online with its stored labels and capacity, unless
    /// it already is.
    pub async fn agent_connected(&self, agent: &lanes_store::AgentRecord) {
        let labels: BTreeSet<String> = agent.labels.iter().cloned().collect();
        let known = {
            let mut state = self.locked().await;
            match state.agents.get_mut(&agent.name) {
                Some(a) if a.online && a.labels == labels && a.capacity == agent.capacity => {
                    a.last_seen = millis(Timestamp::now());
                    true
                }
                _ => false,
            }
        };
        if !known {
            self.agent_online(&agent.name, labels, agent.capacity).await;
            let written = self
                .store
                .set_agent_state(&agent.name, lanes_store::AgentState::Online)
                .await;
            self.unwritten(written.map_err(ForgeError::from), || {
                format!("the state of agent {} (online)", agent.name)
            });
        }
    }

    /// Takes offline the remote agents that have not called in for [`AGENT_QUIET_MS`] past
    /// the lease, and records them lost.
    pub(super) async fn quiet_agents_offline(&self, state: &mut Sched, now: u64) {
        let quiet = self.config.schedule.lease + AGENT_QUIET_MS;
        let gone: Vec<String> = state
            .agents
            .iter()
            .filter(|(name, a)| {
                a.online && name.as_str() != LOCAL_AGENT && a.last_seen + quiet < now
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            tracing::warn!(
                "agent {name} has not called in for {} s: offline",
                quiet / 1000
            );
            state.sched.agent_offline(&AgentId(name.clone()));
            if let Some(agent) = state.agents.get_mut(&name) {
                agent.online = false;
            }
            let written = self
                .store
                .set_agent_state(&name, lanes_store::AgentState::Lost)
                .await;
            self.unwritten(written.map_err(ForgeError::from), || {
                format!("the state of agent {name} (lost)")
            });
        }
    }

    /// The agents the scheduler knows, with their labels, capacity and whether they are online.
    pub async fn agents(&self) -> Vec<(String, Vec<String>, u32, bool)> {
        let state = self.locked().await;
        state
            .agents
            .iter()
            .map(|(name, a)| {
                (
                    name.clone(),
                    a.labels.iter().cloned().collect(),
                    a.capacity,
                    a.online,
                )
            })
            .collect()
    }

    /// Keeps `status` as `agent`'s host status, received now.
    pub fn set_host_status(&self, agent: &str, status: HostStatus) {
        self.hosts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(agent.to_owned(), (status, Timestamp::now()));
    }

    /// Every agent's newest host status with when it came.
    pub fn host_statuses(&self) -> HashMap<String, (HostStatus, Timestamp)> {
        self.hosts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
