//! The branch page (`/{repo}/branches/{branch}`): the CI card of the run of the branch's head
//! and the branch's run history.

use super::Ui;
use super::page::{Base, Rendered, UiError, UiResult, Viewer};
use super::view::{self, LaneChip, Link};
use askama::Template;
use jiff::Timestamp;
use lanes_core::job::JobState;
use lanes_store::{RunDetail, RunFilter, RunId, RunRecord, RunTrigger, Store};

/// History rows per page.
const PAGE: u32 = 25;

/// History rows that show their lanes and reruns: each costs one more read of the store, and
/// the page must stay quick with a long history (BENCHMARKS.md).
const DETAILED: usize = 3;

/// The push run of the head the branch points at, else its newest push run (the API's rule
/// for a branch's status, docs/api.md), looked for in the branch's newest 50 runs.
pub(crate) async fn head_run<S: Store>(
    store: &S,
    repo: &str,
    branch: &str,
    head: Option<&str>,
) -> UiResult<Option<RunDetail>> {
    let runs = newest(store, repo, branch, None, 50).await?;
    head_run_in(store, repo, &runs, head).await
}

/// The branch's newest `limit` runs, older than run `before`.
async fn newest<S: Store>(
    store: &S,
    repo: &str,
    branch: &str,
    before: Option<RunId>,
    limit: u32,
) -> UiResult<Vec<RunRecord>> {
    Ok(store
        .list_runs(&RunFilter {
            repo: Some(repo.to_owned()),
            branch: Some(branch.to_owned()),
            before,
            limit,
            ..RunFilter::default()
        })
        .await?)
}

/// [`head_run`] among `runs`, the branch's newest.
async fn head_run_in<S: Store>(
    store: &S,
    repo: &str,
    runs: &[RunRecord],
    head: Option<&str>,
) -> UiResult<Option<RunDetail>> {
    let pushes: Vec<&RunRecord> = runs
        .iter()
        .filter(|r| r.trigger == RunTrigger::Push)
        .collect();
    let pick = pushes
        .iter()
        .find(|r| head.is_none_or(|h| h == r.head))
        .or(pushes.first());
    match pick {
        Some(run) => Ok(Some(store.run(repo, run.number).await?)),
        None => Ok(None),
    }
}

/// The branch's status from its head's run, as the API derives it.
pub(crate) fn status_of(detail: &RunDetail) -> &'static str {
    crate::branch_status_of(detail).as_str()
}

#[derive(Debug)]
pub(crate) struct Card {
    pub(crate) number: u64,
    pub(crate) href: String,
    pub(crate) status: &'static str,
    pub(crate) head: String,
    pub(crate) queued: String,
    pub(crate) ran: String,
    pub(crate) passed: usize,
    pub(crate) running: usize,
    pub(crate) failed: usize,
    pub(crate) waiting: usize,
    pub(crate) lanes: Vec<LaneChip>,
}

/// The CI card of a run.
pub(crate) fn card(detail: &RunDetail, status: &'static str, now: Timestamp) -> Card {
    let (queued, ran) = view::run_phases(&detail.run, now);
    let latest = view::latest_attempts(&detail.jobs);
    let count = |f: &dyn Fn(JobState) -> bool| latest.iter().filter(|j| f(j.state)).count();
    Card {
        number: detail.run.number,
        href: view::run_href(&detail.run.repo, detail.run.number),
        status,
        head: view::short(&detail.run.head),
        queued,
        ran,
        passed: count(&|s| s == JobState::Passed),
        running: count(&|s| s.is_held()),
        failed: count(&|s| {
            matches!(
                s,
                JobState::Failed
                    | JobState::TimedOut
                    | JobState::OomKilled
                    | JobState::Error
                    | JobState::Cancelled
            )
        }),
        waiting: count(&|s| s == JobState::Queued),
        lanes: view::lane_chips(&detail.jobs),
    }
}

#[derive(Debug)]
pub(crate) struct HistoryRow {
    pub(crate) number: u64,
    pub(crate) href: String,
    pub(crate) status: &'static str,
    pub(crate) trigger: &'static str,
    pub(crate) head: String,
    pub(crate) age: String,
    pub(crate) created: String,
    pub(crate) queued: String,
    pub(crate) ran: String,
    pub(crate) superseded_by: Option<Link>,
    /// Its lanes, for the newest rows.
    pub(crate) lanes: Vec<LaneChip>,
    /// "2 reruns: test, lint" — what was run again in it and why the run reopened.
    pub(crate) reruns: String,
}

#[derive(Template)]
#[template(path = "branch.html")]
pub(crate) struct BranchLive {
    pub(crate) repo: String,
    pub(crate) branch: String,
    pub(crate) head: String,
    pub(crate) card: Option<Card>,
    pub(crate) history: Vec<HistoryRow>,
    pub(crate) older: Option<String>,
    pub(crate) newer: Option<String>,
}

/// The page.
pub(crate) async fn render<S: Store + 'static>(
    ui: &Ui<S>,
    viewer: Viewer,
    repo: &str,
    branch: &str,
    before: Option<u64>,
) -> UiResult<Rendered> {
    let store = ui.forge.store();
    store.repo(repo).await?;
    // The head the watcher saw last, from the refs alone: `Store::branches` would find the
    // newest run of every branch, which costs more than the rest of the page.
    let head_sha = store
        .refs(repo)
        .await?
        .into_iter()
        .find(|r| r.branch == branch)
        .map(|r| r.head);
    let now = Timestamp::now();
    // One read serves the first page of the history and, nearly always, the CI card: the
    // head's run is the newest unless the branch went back to an older head.
    let recent = newest(store, repo, branch, None, PAGE + 1).await?;
    if head_sha.is_none() && recent.is_empty() {
        return Err(UiError::not_found(format!(
            "no branch `{branch}` in repository {repo}"
        )));
    }
    let seen = recent
        .iter()
        .any(|r| r.trigger == RunTrigger::Push && head_sha.as_deref().is_none_or(|h| h == r.head));
    let head = if seen {
        head_run_in(store, repo, &recent, head_sha.as_deref()).await?
    } else {
        head_run(store, repo, branch, head_sha.as_deref()).await?
    };
    let status = head.as_ref().map_or("pending", status_of);
    let runs = match before {
        Some(n) => {
            let id = store.run(repo, n).await?.run.id;
            newest(store, repo, branch, Some(id), PAGE + 1).await?
        }
        None => recent,
    };
    let more = runs.len() > PAGE as usize;
    let mut history = Vec::new();
    for (i, run) in runs.iter().take(PAGE as usize).enumerate() {
        let detail = if i < DETAILED && before.is_none() {
            match &head {
                Some(h) if h.run.id == run.id => Some(h.clone()),
                _ => Some(store.run(repo, run.number).await?),
            }
        } else {
            None
        };
        history.push(row(run, detail.as_ref(), now));
    }
    let older = more
        .then(|| runs.get(PAGE as usize - 1))
        .flatten()
        .map(|r| format!("{}?before={}", view::branch_href(repo, branch), r.number));
    let newer = before.map(|_| view::branch_href(repo, branch));
    let live = BranchLive {
        repo: repo.to_owned(),
        branch: branch.to_owned(),
        head: head_sha.as_deref().map(view::short).unwrap_or_default(),
        card: head.as_ref().map(|d| card(d, status, now)),
        history,
        older,
        newer,
    };
    let mut page = view::branch_href(repo, branch);
    if let Some(b) = before {
        page.push_str(&format!("?before={b}"));
    }
    let mut base = Base::new(viewer, "", page);
    base.title = format!("{status} · {branch} · {repo}");
    base.status = status;
    Ok(Rendered {
        base,
        live: live.render()?,
        extra: String::new(),
    })
}

fn row(run: &RunRecord, detail: Option<&RunDetail>, now: Timestamp) -> HistoryRow {
    let (queued, ran) = view::run_phases(run, now);
    let (lanes, reruns) = match detail {
        Some(d) => {
            let rerun: Vec<&str> = d
                .jobs
                .iter()
                .filter(|j| j.rerun_of.is_some())
                .map(|j| j.lane.as_str())
                .collect();
            let reruns = match rerun.len() {
                0 => String::new(),
                1 => format!("1 rerun: {}", rerun[0]),
                n => format!("{n} reruns: {}", rerun.join(", ")),
            };
            (view::lane_chips(&d.jobs), reruns)
        }
        None => (Vec::new(), String::new()),
    };
    HistoryRow {
        number: run.number,
        href: view::run_href(&run.repo, run.number),
        status: run.status.as_str(),
        trigger: run.trigger.as_str(),
        head: view::short(&run.head),
        age: view::ago(run.created_at, now),
        created: view::stamp(run.created_at),
        queued,
        ran,
        superseded_by: run.superseded_by.map(|n| Link {
            href: view::run_href(&run.repo, n),
            text: format!("#{n}"),
        }),
        lanes,
        reruns,
    }
}
