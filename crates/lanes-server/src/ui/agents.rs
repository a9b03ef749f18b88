//! The agents page (`/agents`): each agent with its labels, capacity, scopes, running jobs, last
//! heartbeat, state, and its cache: what its step cache holds (its host status) and how its
//! jobs used it lately.

use super::Ui;
use super::page::{Base, Rendered, UiResult, Viewer};
use super::view::{self, Link};
use crate::agents::agent_views;
use askama::Template;
use jiff::Timestamp;
use lanes_store::{CacheUse, JobRecord, Store};

/// How many of the newest ended jobs the cache column adds up: fewer than the cache page, as
/// this page updates live.
pub(crate) const JOBS: u32 = 500;

#[derive(Debug)]
pub(crate) struct ScopeRow {
    pub(crate) name: String,
    /// Its cache mounts, comma-separated, or empty.
    pub(crate) mounts: String,
    /// The jobs of the agent running a lane of this scope now.
    pub(crate) jobs: Vec<Link>,
}

#[derive(Debug)]
pub(crate) struct AgentRow {
    pub(crate) name: String,
    pub(crate) state: &'static str,
    pub(crate) labels: String,
    pub(crate) capacity: u32,
    pub(crate) running: Vec<Link>,
    pub(crate) heartbeat: String,
    /// The host as the agent reported it: platform and version, and how long ago.
    pub(crate) host: Option<String>,
    pub(crate) scopes: Vec<ScopeRow>,
    /// What its step cache holds (`None`: not reported).
    pub(crate) stored: Option<String>,
    /// Its jobs' hits and misses among the newest ended jobs.
    pub(crate) used: String,
}

#[derive(Template)]
#[template(path = "agents.html")]
pub(crate) struct AgentsLive {
    pub(crate) agents: Vec<AgentRow>,
    pub(crate) jobs: u32,
}

fn job_link(job: &JobRecord) -> Link {
    Link {
        href: view::job_href(job),
        text: format!("{} #{} {}", job.repo, job.run_number, job.lane),
    }
}

/// The page.
pub(crate) async fn render<S: Store + 'static>(ui: &Ui<S>, viewer: Viewer) -> UiResult<Rendered> {
    let now = Timestamp::now();
    let agents = agent_views(&ui.forge).await?;
    let tallies = ui.forge.store().step_tallies(JOBS).await?;
    let rows = agents
        .into_iter()
        .map(|agent| {
            let (mut hits, mut misses) = (0, 0);
            for t in tallies
                .iter()
                .filter(|t| t.agent.as_deref() == Some(agent.name.as_str()))
            {
                match t.cache {
                    CacheUse::Hit => hits += t.count,
                    CacheUse::Miss => misses += t.count,
                    CacheUse::Disabled => {}
                }
            }
            let (host, scopes, stored) = match &agent.host {
                None => (None, Vec::new(), None),
                Some((status, at)) => (
                    Some(format!(
                        "{}, lanes {}, reported {}",
                        status.platform,
                        status.version,
                        view::ago(*at, now)
                    )),
                    status
                        .scopes
                        .iter()
                        .map(|scope| ScopeRow {
                            name: scope.name.clone(),
                            mounts: scope.mounts.join(", "),
                            // Only jobs the forge has this agent holding: a stopped agent's
                            // last status does not keep a scope in use.
                            jobs: agent
                                .running
                                .iter()
                                .filter(|j| {
                                    u64::try_from(j.id.0).is_ok_and(|id| scope.jobs.contains(&id))
                                })
                                .map(job_link)
                                .collect(),
                        })
                        .collect(),
                    status.cache.map(|c| {
                        format!(
                            "{} in {} results and {} blobs",
                            lanes_cache::human_size(c.bytes),
                            c.actions,
                            c.blobs
                        )
                    }),
                ),
            };
            let heartbeat = match agent.last_heartbeat {
                Some(t) => view::ago(t, now),
                None if agent.is_local() => "in process".to_owned(),
                None => "never".to_owned(),
            };
            AgentRow {
                state: agent.state.as_str(),
                labels: agent.labels.join(", "),
                capacity: agent.capacity,
                running: agent.running.iter().map(job_link).collect(),
                heartbeat,
                host,
                scopes,
                stored,
                used: if hits + misses == 0 {
                    "no keyed steps lately".to_owned()
                } else {
                    format!("{hits} hits, {misses} misses")
                },
                name: agent.name,
            }
        })
        .collect();
    let mut base = Base::new(viewer, "agents", "/agents".to_owned());
    base.title = "Agents".to_owned();
    Ok(Rendered {
        base,
        live: AgentsLive {
            agents: rows,
            jobs: JOBS,
        }
        .render()?,
        extra: String::new(),
    })
}
