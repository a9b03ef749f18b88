//! Agents: processes that lease jobs and run them. Their tokens are stored hashed.

use jiff::Timestamp;

pub use lanes_core::run::AgentState;

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
