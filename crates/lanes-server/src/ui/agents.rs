//! The agents page (`/agents`): each agent with its labels, capacity, running jobs, last
//! heartbeat, state, and how its jobs used the cache lately.

use super::Ui;
use super::cache::recent_jobs;
use super::page::{Base, Rendered, UiResult, Viewer};
use super::view::{self, Link};
use askama::Template;
use jiff::Timestamp;
use lanes_store::{AgentState, CacheUse, Store};

/// How many of the newest runs the cache column looks at: fewer than the cache page, as this
/// page updates live.
const RUNS: u32 = 30;

#[derive(Debug)]
pub(crate) struct AgentRow {
    pub(crate) name: String,
    pub(crate) state: &'static str,
    pub(crate) labels: String,
    pub(crate) capacity: u32,
    pub(crate) running: Vec<Link>,
    pub(crate) heartbeat: String,
    pub(crate) cache: String,
}

#[derive(Template)]
#[template(path = "agents.html")]
pub(crate) struct AgentsLive {
    pub(crate) agents: Vec<AgentRow>,
    pub(crate) runs: u32,
}

/// The page.
pub(crate) async fn render<S: Store + 'static>(ui: &Ui<S>, viewer: Viewer) -> UiResult<Rendered> {
    let now = Timestamp::now();
    let store = ui.forge.store();
    let open = store.open_jobs().await?;
    let stored = store.list_agents().await?;
    let connected = ui.forge.agents().await;
    let recent = recent_jobs(store, RUNS).await?;
    let mut agents = Vec::new();
    let mut names: Vec<String> = stored.iter().map(|a| a.name.clone()).collect();
    for (name, ..) in &connected {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names.sort();
    for name in names {
        let record = stored.iter().find(|a| a.name == name);
        let live = connected.iter().find(|(n, ..)| *n == name);
        // As the API says it: a registered agent that has not called in since the start is lost.
        let state = match (live, record) {
            (Some((.., true)), Some(r)) if r.state != AgentState::Online => r.state.as_str(),
            (Some((.., true)), _) => "online",
            (Some(_), _) => "lost",
            (None, Some(r)) if r.state == AgentState::Online => "lost",
            (None, Some(r)) => r.state.as_str(),
            (None, None) => "lost",
        };
        let (labels, capacity) = match (live, record) {
            (Some((_, labels, capacity, _)), _) => (labels.join(", "), *capacity),
            (None, Some(r)) => (r.labels.join(", "), r.capacity),
            (None, None) => (String::new(), 0),
        };
        let running = open
            .iter()
            .filter(|j| j.state.is_held() && j.agent.as_deref() == Some(name.as_str()))
            .map(|j| Link {
                href: view::job_href(j),
                text: format!("{} #{} {}", j.repo, j.run_number, j.lane),
            })
            .collect();
        let (mut hits, mut misses) = (0, 0);
        for (_, job) in recent
            .iter()
            .filter(|(_, j)| j.agent.as_deref() == Some(name.as_str()))
        {
            hits += job
                .steps
                .iter()
                .filter(|s| s.cache == CacheUse::Hit)
                .count();
            misses += job
                .steps
                .iter()
                .filter(|s| s.cache == CacheUse::Miss)
                .count();
        }
        agents.push(AgentRow {
            state,
            labels,
            capacity,
            running,
            heartbeat: record.and_then(|r| r.last_heartbeat).map_or_else(
                || {
                    if name == crate::LOCAL_AGENT {
                        "in process".to_owned()
                    } else {
                        "never".to_owned()
                    }
                },
                |t| view::ago(t, now),
            ),
            cache: if hits + misses == 0 {
                "—".to_owned()
            } else {
                format!("{hits} hits, {misses} misses")
            },
            name,
        });
    }
    let mut base = Base::new(viewer, "agents", "/agents".to_owned());
    base.title = "Agents".to_owned();
    Ok(Rendered {
        base,
        live: AgentsLive { agents, runs: RUNS }.render()?,
        extra: String::new(),
    })
}
