//! Agents: processes that lease jobs and run them. Their tokens are stored hashed.

use jiff::Timestamp;

/// What the forge does with an agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AgentState {
    /// Heartbeating and leasing.
    Online,
    /// Finishing what it holds, leasing nothing new.
    Draining,
    /// Paused by an admin: leases nothing.
    Paused,
    /// Stopped heartbeating.
    Lost,
}

impl AgentState {
    /// Every state.
    pub const ALL: [AgentState; 4] = [
        AgentState::Online,
        AgentState::Draining,
        AgentState::Paused,
        AgentState::Lost,
    ];

    /// The name used in the database and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Online => "online",
            AgentState::Draining => "draining",
            AgentState::Paused => "paused",
            AgentState::Lost => "lost",
        }
    }

    /// The state called `name`.
    pub fn parse(name: &str) -> Option<AgentState> {
        AgentState::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// An agent to register.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAgent {
    /// Unique name.
    pub name: String,
    /// Its labels (`linux`, `mac`).
    pub labels: Vec<String>,
    /// How many jobs it runs at once.
    pub capacity: u32,
}

/// A stored agent (never its token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentRecord {
    /// Unique name.
    pub name: String,
    /// Its labels.
    pub labels: Vec<String>,
    /// How many jobs it runs at once.
    pub capacity: u32,
    /// What the forge does with it.
    pub state: AgentState,
    /// Its last heartbeat.
    pub last_heartbeat: Option<Timestamp>,
    /// When it was registered.
    pub created_at: Timestamp,
}
