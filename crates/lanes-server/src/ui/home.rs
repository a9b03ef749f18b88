//! The overview (`/`): every repository with its branches' CI status, and the queue at a glance.

use super::Ui;
use super::branch::{head_run, status_of};
use super::page::{Base, Rendered, UiResult, Viewer};
use super::view;
use askama::Template;
use jiff::Timestamp;
use lanes_store::{RunStatus, RunTrigger, Store};

#[derive(Debug)]
pub(crate) struct BranchRow {
    pub(crate) name: String,
    pub(crate) href: String,
    pub(crate) status: &'static str,
    pub(crate) run: Option<RunCell>,
}

#[derive(Debug)]
pub(crate) struct RunCell {
    pub(crate) number: u64,
    /// The run's own status: it counts advisory lanes, which the branch's does not.
    pub(crate) status: &'static str,
    pub(crate) href: String,
    pub(crate) head: String,
    pub(crate) age: String,
    pub(crate) created: String,
}

#[derive(Debug)]
pub(crate) struct RepoRow {
    pub(crate) name: String,
    pub(crate) default_branch: String,
    pub(crate) branches: Vec<BranchRow>,
}

#[derive(Debug)]
pub(crate) struct Busy {
    pub(crate) name: String,
    pub(crate) holders: usize,
    pub(crate) limit: u32,
    pub(crate) waiters: usize,
}

#[derive(Template)]
#[template(path = "home.html")]
pub(crate) struct HomeLive {
    pub(crate) repos: Vec<RepoRow>,
    pub(crate) queued: u64,
    pub(crate) queued_by: Vec<(String, u64)>,
    pub(crate) running: u64,
    pub(crate) busy: Vec<Busy>,
    pub(crate) online: usize,
    pub(crate) agents: usize,
    /// While the data directory's disk is full: since when, and what showed it.
    pub(crate) disk_full: Option<(String, String)>,
}

/// The page.
pub(crate) async fn render<S: Store + 'static>(ui: &Ui<S>, viewer: Viewer) -> UiResult<Rendered> {
    let store = ui.forge.store();
    let now = Timestamp::now();
    let mut repos = Vec::new();
    let mut worst = "none";
    for repo in store.list_repos().await? {
        let mut branches = Vec::new();
        for summary in store.branches(&repo.name).await? {
            // The branch's newest run is usually its head's push run, and a finished run's
            // status says its branch's: then neither the run list nor the jobs are read.
            let newest = summary.latest_run.clone().filter(|r| {
                r.trigger == RunTrigger::Push && summary.head.as_deref().is_none_or(|h| h == r.head)
            });
            let (run, status) = match newest {
                Some(run) if finished_status(run.status).is_some() => {
                    let status = finished_status(run.status).unwrap_or("pending");
                    (Some(run), status)
                }
                _ => {
                    let head =
                        head_run(store, &repo.name, &summary.branch, summary.head.as_deref())
                            .await?;
                    let status = head.as_ref().map_or("pending", status_of);
                    (head.map(|d| d.run), status)
                }
            };
            worst = worse(worst, status);
            branches.push(BranchRow {
                href: view::branch_href(&repo.name, &summary.branch),
                name: summary.branch,
                status,
                run: run.map(|r| RunCell {
                    number: r.number,
                    status: r.status.as_str(),
                    href: view::run_href(&repo.name, r.number),
                    head: view::short(&r.head),
                    age: view::ago(r.created_at, now),
                    created: view::stamp(r.created_at),
                }),
            });
        }
        // The default branch first, then by name (the store's order).
        branches.sort_by_key(|b| b.name != repo.default_branch);
        repos.push(RepoRow {
            name: repo.name,
            default_branch: repo.default_branch,
            branches,
        });
    }
    let (queued_by, running) = ui.forge.queue_counts().await;
    let busy = ui
        .forge
        .groups()
        .await
        .into_iter()
        .filter(|g| !g.holders.is_empty() || !g.waiters.is_empty())
        .map(|g| Busy {
            holders: g.holders.len(),
            waiters: g.waiters.len(),
            limit: g.limit,
            name: g.name,
        })
        .collect();
    let agents = ui.forge.agents().await;
    let live = HomeLive {
        repos,
        queued: queued_by.values().sum(),
        queued_by: queued_by.into_iter().collect(),
        running,
        busy,
        online: agents.iter().filter(|a| a.3).count(),
        agents: agents.len(),
        disk_full: ui
            .forge
            .disk_full()
            .map(|(since, why)| (since.to_string(), why)),
    };
    let mut base = Base::new(viewer, "home", "/".to_owned());
    base.title = "Overview".to_owned();
    base.status = worst;
    Ok(Rendered {
        base,
        live: live.render()?,
        extra: String::new(),
    })
}

/// A branch's status from its head's run once that run has finished: the forge derives a
/// finished run's status by the branch rule (`status::run_status`), so `passed` is a green
/// branch, `failed` or `cancelled` a red one. `None` while it may still change.
fn finished_status(run: RunStatus) -> Option<&'static str> {
    match run {
        RunStatus::Passed => Some("passed"),
        RunStatus::Failed | RunStatus::Cancelled => Some("failed"),
        RunStatus::Error => Some("error"),
        RunStatus::Pending | RunStatus::Running => None,
    }
}

/// The status the overview's favicon shows: the worst of its branches'.
fn worse(a: &'static str, b: &'static str) -> &'static str {
    let rank = |s: &str| match s {
        "failed" | "error" => 4,
        "running" => 3,
        "pending" => 2,
        "passed" => 1,
        _ => 0,
    };
    if rank(b) > rank(a) { b } else { a }
}
