//! The run page (`/{repo}/runs/{n}`): every lane of the run with its status, why it was selected
//! or skipped, its time split into queue wait, lock wait and run, its steps and their cache
//! results, for a waiting lane why it waits, and the actions a signed-in user may take.

use super::Ui;
use super::page::{Base, Rendered, UiResult, Viewer};
use super::view::{self, Link, Wait};
use askama::Template;
use jiff::Timestamp;
use lanes_core::job::JobState;
use lanes_store::{CacheUse, JobRecord, RunStatus, Store};

#[derive(Debug)]
pub(crate) struct StepRow {
    pub(crate) name: String,
    pub(crate) status: &'static str,
    pub(crate) cache: &'static str,
    pub(crate) duration: String,
    pub(crate) saved: String,
    pub(crate) exit_code: String,
    /// For a miss, why (`inputs changed: input src/a.rs: …`), when the agent said.
    pub(crate) miss: Option<String>,
}

/// The steps of a job as rows.
pub(crate) fn steps(job: &JobRecord) -> Vec<StepRow> {
    job.steps
        .iter()
        .map(|s| StepRow {
            name: s.name.clone(),
            status: s.status.as_str(),
            cache: s.cache.as_str(),
            duration: s.duration_ms.map(view::duration).unwrap_or_default(),
            saved: s.saved_ms.map(view::duration).unwrap_or_default(),
            exit_code: s.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            miss: s.miss.as_ref().map(|m| m.detail.clone()),
        })
        .collect()
}

#[derive(Debug)]
pub(crate) struct JobRow {
    pub(crate) id: i64,
    pub(crate) lane: String,
    pub(crate) href: String,
    pub(crate) class: &'static str,
    pub(crate) status: &'static str,
    pub(crate) group: String,
    pub(crate) labels: String,
    pub(crate) agent: String,
    pub(crate) attempts: String,
    /// "rerun of #12" with a link.
    pub(crate) rerun_of: Option<Link>,
    /// A newer attempt of the same lane replaced this one.
    pub(crate) replaced: bool,
    pub(crate) selection: Vec<String>,
    pub(crate) reason: String,
    pub(crate) wait: Option<Wait>,
    /// It was queued to run at some point: its timings mean something.
    pub(crate) timed: bool,
    pub(crate) queue_wait: String,
    pub(crate) lock_wait: String,
    pub(crate) materialize: String,
    pub(crate) run: String,
    pub(crate) cache: String,
    pub(crate) steps: Vec<StepRow>,
    pub(crate) can_cancel: bool,
    pub(crate) can_rerun: bool,
    pub(crate) can_requeue: bool,
}

fn ms(value: Option<u64>) -> String {
    value.map(view::duration).unwrap_or_else(|| "—".to_owned())
}

/// One lane's row.
pub(crate) fn job_row(job: &JobRecord, jobs: &[JobRecord], now: Timestamp) -> JobRow {
    let hits = job
        .steps
        .iter()
        .filter(|s| s.cache == CacheUse::Hit)
        .count();
    let misses = job
        .steps
        .iter()
        .filter(|s| s.cache == CacheUse::Miss)
        .count();
    let saved: u64 = job.steps.iter().filter_map(|s| s.saved_ms).sum();
    let cache = if job.steps.is_empty() {
        String::new()
    } else if saved > 0 {
        format!("{hits} hit, {misses} miss, saved {}", view::duration(saved))
    } else {
        format!("{hits} hit, {misses} miss")
    };
    // Queue wait: the stored one once leased, else how long it has been waiting.
    let queue_wait = match (job.timings.queue_wait_ms, job.state, job.queued_at) {
        (Some(ms), ..) => Some(ms),
        (None, JobState::Queued, Some(q)) => Some(view::between(q, now)),
        _ => None,
    };
    JobRow {
        id: job.id.0,
        lane: job.lane.clone(),
        href: view::job_href(job),
        class: job.class.as_str(),
        status: job.state.as_str(),
        group: job.group.clone().unwrap_or_default(),
        labels: job.labels.join(", "),
        agent: job.agent.clone().unwrap_or_default(),
        attempts: if job.attempts > 0 {
            format!("requeued {} of {} times", job.attempts, job.retries)
        } else {
            String::new()
        },
        rerun_of: job.rerun_of.map(|id| Link {
            href: jobs
                .iter()
                .find(|j| j.id == id)
                .map_or_else(|| format!("#job-{id}"), |j| format!("#job-{}", j.id)),
            text: format!("rerun of job {id}"),
        }),
        replaced: jobs.iter().any(|j| j.rerun_of == Some(job.id)),
        selection: view::selection_text(&job.selection),
        reason: match (&job.reason, job.state) {
            (Some(_), JobState::Queued) => String::new(),
            (Some(r), _) => view::reason_text(r),
            (None, _) => String::new(),
        },
        wait: view::wait(job, now),
        timed: !(job.state == JobState::Skipped && job.started_at.is_none()),
        queue_wait: ms(queue_wait),
        lock_wait: ms(job.timings.lock_wait_ms),
        materialize: ms(job.timings.materialize_ms),
        run: ms(view::job_run_ms(job, now)),
        cache,
        steps: steps(job),
        can_cancel: !job.state.is_terminal(),
        can_rerun: job.state.is_terminal(),
        can_requeue: job.state.is_held(),
    }
}

#[derive(Debug)]
pub(crate) struct Diagnostic {
    pub(crate) place: String,
    pub(crate) message: String,
    pub(crate) help: String,
}

#[derive(Template)]
#[template(path = "run.html")]
pub(crate) struct RunLive {
    pub(crate) repo: String,
    pub(crate) number: u64,
    pub(crate) branch: String,
    pub(crate) branch_href: String,
    pub(crate) status: &'static str,
    pub(crate) trigger: &'static str,
    pub(crate) head: String,
    pub(crate) base: String,
    pub(crate) created: String,
    pub(crate) age: String,
    pub(crate) queued: String,
    pub(crate) ran: String,
    pub(crate) superseded_by: Option<Link>,
    pub(crate) diagnostics: Vec<Diagnostic>,
    pub(crate) raw_diagnostics: String,
    pub(crate) jobs: Vec<JobRow>,
    /// Lanes selection skipped: a compact table, apart from the lanes that ran or wait.
    pub(crate) skipped: Vec<JobRow>,
    pub(crate) signed_in: bool,
    pub(crate) can_cancel: bool,
    pub(crate) can_rerun_failed: bool,
    pub(crate) notice: String,
    pub(crate) action_base: String,
}

/// What an action's redirect says on the page; a fixed set, so a link cannot put words there.
pub(crate) fn notice(code: &str) -> &'static str {
    match code {
        "cancel-run" => "The run's open jobs were cancelled.",
        "rerun-failed" => "The failed lanes were queued again.",
        "cancel" => "The job was cancelled.",
        "rerun" => "The lane was queued again as a new job.",
        "requeue" => "The job went back to the queue.",
        _ => "",
    }
}

/// The page.
pub(crate) async fn render<S: Store + 'static>(
    ui: &Ui<S>,
    viewer: Viewer,
    repo: &str,
    number: u64,
    did: Option<&str>,
) -> UiResult<Rendered> {
    let detail = ui.forge.store().run(repo, number).await?;
    let now = Timestamp::now();
    let run = &detail.run;
    let (queued, ran) = view::run_phases(run, now);
    let (diagnostics, raw_diagnostics) = diagnostics(run.diagnostics.as_deref());
    // A lane skipped by selection carries no reason of the scheduler's (one skipped because a
    // need failed does, and stays with the lanes that matter).
    let (skipped, jobs): (Vec<JobRow>, Vec<JobRow>) = detail
        .jobs
        .iter()
        .map(|j| job_row(j, &detail.jobs, now))
        .partition(|row| row.status == "skipped" && row.reason.is_empty());
    let failed = view::latest_attempts(&detail.jobs).iter().any(|j| {
        matches!(
            j.state,
            JobState::Failed
                | JobState::TimedOut
                | JobState::OomKilled
                | JobState::Cancelled
                | JobState::Error
        ) || (j.state == JobState::Skipped
            && matches!(
                j.reason,
                Some(lanes_core::job::JobReason::NeedFailed { .. })
            ))
    });
    let live = RunLive {
        repo: repo.to_owned(),
        number,
        branch: run.branch.clone(),
        branch_href: view::branch_href(repo, &run.branch),
        status: run.status.as_str(),
        trigger: run.trigger.as_str(),
        head: run.head.clone(),
        base: run.base.as_deref().map(view::short).unwrap_or_default(),
        created: view::stamp(run.created_at),
        age: view::ago(run.created_at, now),
        queued,
        ran,
        superseded_by: run.superseded_by.map(|n| Link {
            href: view::run_href(repo, n),
            text: format!("#{n}"),
        }),
        diagnostics,
        raw_diagnostics,
        jobs,
        skipped,
        signed_in: viewer.signed_in,
        can_cancel: detail.jobs.iter().any(|j| !j.state.is_terminal()),
        can_rerun_failed: failed && run.status != RunStatus::Error,
        notice: did.map(notice).unwrap_or_default().to_owned(),
        action_base: view::run_href(repo, number),
    };
    let page = view::run_href(repo, number);
    let mut base = Base::new(viewer, "", page);
    base.title = format!(
        "{} · #{number} {} · {repo}",
        run.status.as_str(),
        run.branch
    );
    base.status = run.status.as_str();
    Ok(Rendered {
        base,
        live: live.render()?,
        extra: String::new(),
    })
}

/// The catalog's diagnostics of an `error` run, as rows; text that is not the JSON document is
/// shown as it is.
fn diagnostics(raw: Option<&str>) -> (Vec<Diagnostic>, String) {
    let Some(raw) = raw else {
        return (Vec::new(), String::new());
    };
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(raw) else {
        return (Vec::new(), raw.to_owned());
    };
    let rows = doc["diagnostics"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|d| Diagnostic {
                    place: format!(
                        "{}:{}:{}",
                        d["file"].as_str().unwrap_or("lanes.toml"),
                        d["line"].as_u64().unwrap_or(0),
                        d["column"].as_u64().unwrap_or(0)
                    ),
                    message: d["message"].as_str().unwrap_or("").to_owned(),
                    help: d["help"].as_str().unwrap_or("").to_owned(),
                })
                .collect()
        })
        .unwrap_or_default();
    (rows, String::new())
}
