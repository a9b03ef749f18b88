//! Writes of repositories, refs and runs (with their jobs). Each function runs inside the
//! caller's `BEGIN IMMEDIATE` transaction.

use super::codec::{duplicate, json, ms, to_i64};
use super::read;
use crate::error::StoreError;
use crate::job::{JobId, NewJob};
use crate::repo::{NewRepo, RepoRecord};
use crate::run::{NewRun, RunDetail, RunId, RunRecord, RunTrigger, RunUpdate};
use crate::store::StoreResult;
use jiff::Timestamp;
use lanes_core::job::JobState;
use sqlx::sqlite::SqliteConnection;
use std::collections::HashMap;

pub(crate) async fn add_repo(
    conn: &mut SqliteConnection,
    repo: &NewRepo,
    now: Timestamp,
) -> StoreResult<RepoRecord> {
    let path = repo.path.to_str().ok_or_else(|| {
        StoreError::Invalid(format!(
            "repository path {} is not UTF-8",
            repo.path.display()
        ))
    })?;
    sqlx::query(
        "INSERT INTO repos (name, path, remote_url, default_branch, created_at) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&repo.name)
    .bind(path)
    .bind(&repo.remote_url)
    .bind(&repo.default_branch)
    .bind(ms(now))
    .execute(&mut *conn)
    .await
    .map_err(duplicate(|| format!("repository `{}`", repo.name)))?;
    read::repo(conn, &repo.name).await
}

pub(crate) async fn update_repo(
    conn: &mut SqliteConnection,
    name: &str,
    default_branch: &str,
    remote_url: Option<&str>,
) -> StoreResult<RepoRecord> {
    let changed = sqlx::query("UPDATE repos SET default_branch = ?, remote_url = ? WHERE name = ?")
        .bind(default_branch)
        .bind(remote_url)
        .bind(name)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if changed == 0 {
        return Err(StoreError::NotFound(format!("repository `{name}`")));
    }
    read::repo(conn, name).await
}

pub(crate) async fn record_ref(
    conn: &mut SqliteConnection,
    repo: &str,
    branch: &str,
    head: &str,
    now: Timestamp,
) -> StoreResult<bool> {
    let id = read::repo_id(conn, repo).await?;
    let changed = sqlx::query(
        "INSERT INTO refs (repo_id, branch, head, seen_at) VALUES (?, ?, ?, ?) \
         ON CONFLICT (repo_id, branch) DO UPDATE SET head = excluded.head, \
         seen_at = excluded.seen_at WHERE refs.head <> excluded.head",
    )
    .bind(id.0)
    .bind(branch)
    .bind(head)
    .bind(ms(now))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(changed > 0)
}

pub(crate) async fn create_run(
    conn: &mut SqliteConnection,
    run: &NewRun,
) -> StoreResult<RunDetail> {
    let repo = read::repo_id(conn, &run.repo).await?;
    let what = || {
        format!(
            "a push run of {} for {} at {}",
            run.repo, run.branch, run.head
        )
    };
    if run.trigger == RunTrigger::Push {
        // The unique index `runs_push_once` is the real guard; this only avoids burning a number.
        let existing: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM runs WHERE repo_id = ? AND branch = ? AND head = ? \
             AND triggered_by = 'push'",
        )
        .bind(repo.0)
        .bind(&run.branch)
        .bind(&run.head)
        .fetch_optional(&mut *conn)
        .await?;
        if existing.is_some() {
            return Err(StoreError::Duplicate(what()));
        }
    }
    let number: i64 = sqlx::query_scalar(
        "UPDATE repos SET next_run = next_run + 1 WHERE id = ? RETURNING next_run - 1",
    )
    .bind(repo.0)
    .fetch_one(&mut *conn)
    .await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO runs (repo_id, number, branch, head, base, triggered_by, status, \
         diagnostics, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(repo.0)
    .bind(number)
    .bind(&run.branch)
    .bind(&run.head)
    .bind(&run.base)
    .bind(run.trigger.as_str())
    .bind(run.status.as_str())
    .bind(&run.diagnostics)
    .bind(ms(run.created_at))
    .fetch_one(&mut *conn)
    .await
    .map_err(duplicate(what))?;
    let run_id = RunId(id);
    for slot in &run.nightly_slots {
        sqlx::query("INSERT INTO nightly_slots (repo_id, lane, slot, run_id) VALUES (?, ?, ?, ?)")
            .bind(repo.0)
            .bind(&slot.lane)
            .bind(ms(slot.slot))
            .bind(run_id.0)
            .execute(&mut *conn)
            .await
            .map_err(duplicate(|| {
                format!(
                    "nightly slot {} of {} at {}",
                    slot.lane, run.repo, slot.slot
                )
            }))?;
    }
    insert_jobs(conn, run_id, &run.jobs, run.created_at).await?;
    read::run_detail_by_id(conn, run_id).await
}

/// Inserts jobs into a run, resolving `needs` by lane name: the batch first, then the newest job
/// of that lane already in the run. Returns the first new id.
pub(crate) async fn insert_jobs(
    conn: &mut SqliteConnection,
    run: RunId,
    jobs: &[NewJob],
    now: Timestamp,
) -> StoreResult<Option<JobId>> {
    let mut lanes: HashMap<String, i64> = HashMap::new();
    if jobs.iter().any(|j| !j.needs.is_empty()) {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT lane, max(id) FROM jobs WHERE run_id = ? GROUP BY lane")
                .bind(run.0)
                .fetch_all(&mut *conn)
                .await?;
        lanes.extend(rows);
    }
    let mut ids = Vec::with_capacity(jobs.len());
    for job in jobs {
        if job.state.is_held() {
            return Err(StoreError::Invalid(format!(
                "job `{}` cannot be created {}: only queued or terminal",
                job.lane, job.state
            )));
        }
        let queued = job.state == JobState::Queued;
        let reason = job.reason.as_ref().map(|r| json("reason", r)).transpose()?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO jobs (run_id, lane, class, priority, state, reason, selection, \
             concurrency_group, labels, retries, rerun_of, queued_at, finished_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(run.0)
        .bind(&job.lane)
        .bind(job.class.as_str())
        .bind(job.priority.as_str())
        .bind(job.state.as_str())
        .bind(reason)
        .bind(json("selection reasons", &job.selection)?)
        .bind(&job.group)
        .bind(json("labels", &job.labels)?)
        .bind(i64::from(job.retries))
        .bind(job.rerun_of.map(|j| j.0))
        .bind(queued.then_some(ms(now)))
        .bind((!queued).then_some(ms(now)))
        .fetch_one(&mut *conn)
        .await?;
        lanes.insert(job.lane.clone(), id);
        ids.push(id);
    }
    for (job, id) in jobs.iter().zip(&ids) {
        if job.needs.is_empty() {
            continue;
        }
        let needs = job
            .needs
            .iter()
            .map(|need| {
                lanes.get(need).copied().ok_or_else(|| {
                    StoreError::Invalid(format!(
                        "job `{}` needs `{need}`, which is not in run {run}",
                        job.lane
                    ))
                })
            })
            .collect::<StoreResult<Vec<i64>>>()?;
        sqlx::query("UPDATE jobs SET needs = ? WHERE id = ?")
            .bind(json("needs", &needs)?)
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(ids.first().copied().map(JobId))
}

pub(crate) async fn update_run(
    conn: &mut SqliteConnection,
    run: RunId,
    update: &RunUpdate,
) -> StoreResult<RunRecord> {
    let superseded_by = update
        .superseded_by
        .map(|n| to_i64("run number", n))
        .transpose()?;
    let changed = sqlx::query(
        "UPDATE runs SET status = coalesce(?, status), started_at = coalesce(?, started_at), \
         finished_at = CASE WHEN ? THEN NULL ELSE coalesce(?, finished_at) END, \
         superseded_by = coalesce(?, superseded_by), \
         diagnostics = coalesce(?, diagnostics) WHERE id = ?",
    )
    .bind(update.status.map(|s| s.as_str()))
    .bind(update.started_at.map(ms))
    .bind(update.reopen)
    .bind(update.finished_at.map(ms))
    .bind(superseded_by)
    .bind(&update.diagnostics)
    .bind(run.0)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if changed == 0 {
        return Err(StoreError::NotFound(format!("run {run}")));
    }
    read::run_by_id(conn, run).await
}
