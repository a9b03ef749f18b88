//! The agents as the API's `GET /api/v1/agents` and the web UI's agents page show them: the
//! registered ones (the store) merged with the connected ones (the forge's scheduler), each
//! with its running jobs and its newest host status.

use crate::error::ForgeResult;
use crate::forge::{Forge, LOCAL_AGENT};
use jiff::Timestamp;
use lanes_agent::HostStatus;
use lanes_store::{AgentState, JobRecord, Store};

/// One agent.
#[derive(Clone, Debug)]
pub struct AgentView {
    /// Its name.
    pub name: String,
    /// Its labels.
    pub labels: Vec<String>,
    /// How many jobs it runs at once.
    pub capacity: u32,
    /// Online, draining, paused or lost.
    pub state: AgentState,
    /// When it last reported about a job (`None` for the built-in agent, which reports in
    /// process, and for an agent that never did).
    pub last_heartbeat: Option<Timestamp>,
    /// The jobs it holds (leased or running), in id order.
    pub running: Vec<JobRecord>,
    /// Its newest host status and when it came (`None` until it reports one after a start).
    pub host: Option<(HostStatus, Timestamp)>,
}

impl AgentView {
    /// Whether this is the server's built-in agent.
    pub fn is_local(&self) -> bool {
        self.name == LOCAL_AGENT
    }
}

/// Every agent, by name.
pub async fn agent_views<S: Store + 'static>(forge: &Forge<S>) -> ForgeResult<Vec<AgentView>> {
    let open = forge.store().open_jobs().await?;
    let stored = forge.store().list_agents().await?;
    let connected = forge.agents().await;
    let mut hosts = forge.host_statuses();
    let mut names: Vec<&str> = stored.iter().map(|a| a.name.as_str()).collect();
    for (name, ..) in &connected {
        if !names.contains(&name.as_str()) {
            names.push(name);
        }
    }
    names.sort_unstable();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let record = stored.iter().find(|a| a.name == name);
        let live = connected.iter().find(|(n, ..)| n == name);
        // A registered agent that has not called in since the start is lost; one the store
        // holds draining or paused stays so while connected.
        let state = match (live, record) {
            (Some((.., true)), Some(r)) if r.state != AgentState::Online => r.state,
            (Some((.., true)), _) => AgentState::Online,
            (Some(_), _) => AgentState::Lost,
            (None, Some(r)) if r.state == AgentState::Online => AgentState::Lost,
            (None, Some(r)) => r.state,
            (None, None) => AgentState::Lost,
        };
        let (labels, capacity) = match (live, record) {
            (Some((_, labels, capacity, _)), _) => (labels.clone(), *capacity),
            (None, Some(r)) => (r.labels.clone(), r.capacity),
            (None, None) => (Vec::new(), 0),
        };
        out.push(AgentView {
            name: name.to_owned(),
            labels,
            capacity,
            state,
            last_heartbeat: record.and_then(|r| r.last_heartbeat),
            running: open
                .iter()
                .filter(|j| j.state.is_held() && j.agent.as_deref() == Some(name))
                .cloned()
                .collect(),
            host: hosts.remove(name),
        });
    }
    Ok(out)
}
