//! The job log page (`/{repo}/runs/{n}/lanes/{lane}`): one attempt of a lane (the newest, or
//! `?job=`), its steps, and its log with colours, folding step sections and the first error of
//! a failed step. `assets/lanes.js` tails the log live from where the page ends.

use super::Ui;
use super::joblog::{self, Block};
use super::page::{Base, Rendered, UiError, UiResult, Viewer};
use super::run::{JobRow, job_row};
use super::view::{self, Link};
use askama::Template;
use jiff::Timestamp;
use lanes_store::{JobId, JobRecord, LogFile, Store};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// The most of a log the page shows; a longer log shows its end, and the raw log has it all.
pub(crate) const SHOWN: u64 = 2 << 20;

#[derive(Debug)]
pub(crate) struct Attempt {
    pub(crate) href: String,
    pub(crate) text: String,
    pub(crate) status: &'static str,
    pub(crate) current: bool,
}

#[derive(Template)]
#[template(path = "lane.html")]
pub(crate) struct LaneLive {
    pub(crate) repo: String,
    pub(crate) number: u64,
    pub(crate) branch: String,
    pub(crate) branch_href: String,
    pub(crate) run_href: String,
    pub(crate) job: JobRow,
    pub(crate) attempts: Vec<Attempt>,
    pub(crate) signed_in: bool,
    pub(crate) action_base: String,
}

#[derive(Template)]
#[template(path = "log.html")]
pub(crate) struct LogView {
    pub(crate) blocks: Vec<Block>,
    /// Bytes left out at the start of a long log.
    pub(crate) skipped: String,
    /// Where the live tail continues.
    pub(crate) offset: u64,
    pub(crate) lines: usize,
    pub(crate) stream: String,
    pub(crate) done: bool,
    pub(crate) raw_href: String,
    pub(crate) empty: bool,
    /// The failed steps' first error lines, to jump to.
    pub(crate) errors: Vec<Link>,
}

/// Which job of `lane` in the run: `job` if given (it must be of this lane), else the newest.
fn pick<'a>(jobs: &'a [JobRecord], lane: &str, job: Option<i64>) -> Option<&'a JobRecord> {
    let mut of_lane = jobs.iter().filter(|j| j.lane == lane);
    match job {
        Some(id) => of_lane.find(|j| j.id.0 == id),
        None => of_lane.max_by_key(|j| j.id),
    }
}

/// The job the page is about, with its run's jobs.
pub(crate) async fn find<S: Store>(
    store: &S,
    repo: &str,
    number: u64,
    lane: &str,
    job: Option<i64>,
) -> UiResult<(lanes_store::RunDetail, JobId)> {
    let detail = store.run(repo, number).await?;
    let id = pick(&detail.jobs, lane, job)
        .map(|j| j.id)
        .ok_or_else(|| match job {
            Some(id) => UiError::not_found(format!(
                "no job {id} of lane `{lane}` in run #{number} of {repo}"
            )),
            None => UiError::not_found(format!("no lane `{lane}` in run #{number} of {repo}")),
        })?;
    Ok((detail, id))
}

/// The live part of the page (the log is apart: live updates leave it to the tail).
pub(crate) async fn render_live<S: Store + 'static>(
    ui: &Ui<S>,
    viewer: Viewer,
    repo: &str,
    number: u64,
    lane: &str,
    job: Option<i64>,
) -> UiResult<(Rendered, JobRecord)> {
    let (detail, id) = find(ui.forge.store(), repo, number, lane, job).await?;
    let now = Timestamp::now();
    let record = detail
        .jobs
        .iter()
        .find(|j| j.id == id)
        .cloned()
        .ok_or_else(|| UiError::not_found("the job went away"))?;
    let attempts = detail
        .jobs
        .iter()
        .filter(|j| j.lane == lane)
        .map(|j| Attempt {
            href: view::job_href(j),
            text: format!("job {}", j.id),
            status: j.state.as_str(),
            current: j.id == id,
        })
        .collect();
    let href = view::lane_href(repo, number, lane);
    let live = LaneLive {
        repo: repo.to_owned(),
        number,
        branch: detail.run.branch.clone(),
        branch_href: view::branch_href(repo, &detail.run.branch),
        run_href: view::run_href(repo, number),
        job: job_row(&record, &detail.jobs, now),
        attempts,
        signed_in: viewer.signed_in,
        action_base: view::run_href(repo, number),
    };
    // The page is the lane's view, so it keeps its `?job=` for live updates too.
    let page = match job {
        Some(j) => format!("{href}?job={j}"),
        None => href,
    };
    let mut base = Base::new(viewer, "", page);
    base.title = format!(
        "{} · {lane} · #{number} {} · {repo}",
        record.state.as_str(),
        detail.run.branch
    );
    base.status = match record.state.as_str() {
        "queued" | "leased" => "pending",
        "timed-out" => "failed",
        other => other,
    };
    Ok((
        Rendered {
            base,
            live: live.render()?,
            extra: String::new(),
        },
        record,
    ))
}

/// The whole page.
pub(crate) async fn render<S: Store + 'static>(
    ui: &Ui<S>,
    viewer: Viewer,
    repo: &str,
    number: u64,
    lane: &str,
    job: Option<i64>,
) -> UiResult<Rendered> {
    let (mut rendered, record) = render_live(ui, viewer, repo, number, lane, job).await?;
    let data_dir = ui.forge.config().data_dir.clone();
    let (id, len) = (record.id, record.log_len);
    let (start, bytes) = tokio::task::spawn_blocking(move || tail(&data_dir, id, len))
        .await
        .map_err(|e| UiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| {
            UiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                format!("failed to read the log of job {id}: {e}"),
            )
        })?;
    let done = record.state.is_terminal();
    // A live log shows whole lines; the tail goes on from the end of the last one.
    let whole = if done {
        bytes.len()
    } else {
        joblog::whole_lines(&bytes)
    };
    let text = String::from_utf8_lossy(&bytes[..whole]);
    let blocks = joblog::blocks(&text);
    let lines = blocks.iter().map(|b| b.lines.len()).sum();
    let href = view::lane_href(repo, number, lane);
    let errors: Vec<Link> = blocks
        .iter()
        .filter_map(|b| {
            b.first_error.map(|n| Link {
                href: format!("#L{n}"),
                text: format!("first error in {}", b.title),
            })
        })
        .collect();
    let log = LogView {
        empty: blocks.is_empty(),
        blocks,
        skipped: if start > 0 {
            format!(
                "The first {} of this log are left out.",
                lanes_cache::human_size(start)
            )
        } else {
            String::new()
        },
        offset: start + whole as u64,
        lines,
        stream: format!("/api/v1/jobs/{id}/log/stream"),
        done,
        raw_href: format!("{href}/raw?job={id}"),
        errors,
    };
    rendered.extra = log.render()?;
    Ok(rendered)
}

/// The last [`SHOWN`] acknowledged bytes of a job's log, from a line start: where they start,
/// and the bytes. Only reads: the append path alone may truncate an unacknowledged tail.
pub(crate) fn tail(data_dir: &Path, job: JobId, len: u64) -> std::io::Result<(u64, Vec<u8>)> {
    if len == 0 {
        return Ok((0, Vec::new()));
    }
    let mut file = match std::fs::File::open(LogFile::path(data_dir, job)) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, Vec::new())),
        Err(e) => return Err(e),
    };
    let start = len.saturating_sub(SHOWN);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.take(len - start).read_to_end(&mut bytes)?;
    if start > 0 {
        // Begin at the first whole line.
        let cut = bytes.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
        bytes.drain(..cut);
        return Ok((start + cut as u64, bytes));
    }
    Ok((0, bytes))
}

/// Every acknowledged byte of a job's log, for the raw view.
pub(crate) fn read_all(data_dir: &Path, job: JobId, len: u64) -> std::io::Result<Vec<u8>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    let file = std::fs::File::open(LogFile::path(data_dir, job))?;
    let mut bytes = Vec::new();
    file.take(len).read_to_end(&mut bytes)?;
    Ok(bytes)
}
