//! Queries: rows to records. Every function takes a connection so a write transaction can read
//! back what it wrote, and a read transaction sees one snapshot.

use super::codec::{from_json, named, opt_ts, opt_u64, to_u32, to_u64, ts};
use crate::agent::{AgentRecord, AgentState};
use crate::error::StoreError;
use crate::job::{JobId, JobRecord, Timings};
use crate::repo::{BranchSummary, RefRecord, RepoId, RepoRecord};
use crate::run::{RunDetail, RunFilter, RunId, RunRecord, RunStatus, RunTrigger};
use crate::step::{CacheUse, LatestStep, StepRecord, StepTally};
use crate::store::StoreResult;
use lanes_core::LaneClass;
use lanes_core::explain::{MissKind, MissReason};
use lanes_core::job::{JobState, Priority};
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{QueryBuilder, Row, Sqlite};
use std::collections::HashMap;
use std::path::PathBuf;

const REPO_SELECT: &str =
    "SELECT id, name, path, remote_url, default_branch, created_at FROM repos";

const RUN_SELECT: &str = "SELECT ru.id, r.name AS repo, ru.number, ru.branch, ru.head, ru.base, \
     ru.triggered_by, ru.status, ru.diagnostics, ru.superseded_by, ru.created_at, ru.started_at, \
     ru.finished_at FROM runs ru JOIN repos r ON r.id = ru.repo_id";

const JOB_SELECT: &str = "SELECT j.id, j.run_id, r.name AS repo, ru.number AS run_number, \
     j.lane, j.class, j.priority, j.state, j.reason, j.selection, j.needs, j.concurrency_group, \
     j.labels, j.retries, j.attempts, j.agent, j.token, j.expires_at, j.rerun_of, j.queued_at, \
     j.leased_at, j.started_at, j.finished_at, j.queue_wait_ms, j.lock_wait_ms, \
     j.materialize_ms, j.log_len FROM jobs j JOIN runs ru ON ru.id = j.run_id \
     JOIN repos r ON r.id = ru.repo_id";

const STEP_SELECT: &str = "SELECT s.job_id, s.idx, s.name, s.status, s.cache, s.key, \
     s.duration_ms, s.saved_ms, s.exit_code, s.miss_kind, s.miss_detail FROM steps s \
     JOIN jobs j ON j.id = s.job_id";

const AGENT_SELECT: &str =
    "SELECT name, labels, capacity, state, last_heartbeat, created_at FROM agents";

/// Which jobs to load.
#[derive(Clone, Copy, Debug)]
pub(crate) enum JobsOf {
    /// One job.
    Job(JobId),
    /// Every job of a run.
    Run(RunId),
    /// The jobs of a run from this id on (the ones just added).
    RunFrom(RunId, JobId),
    /// Every queued, leased or running job.
    Open,
}

impl JobsOf {
    fn clause(self) -> &'static str {
        match self {
            JobsOf::Job(_) => "j.id = ?",
            JobsOf::Run(_) => "j.run_id = ?",
            JobsOf::RunFrom(..) => "j.run_id = ? AND j.id >= ?",
            // The same expression as the partial index `jobs_open`, so the index is used.
            JobsOf::Open => "j.state IN ('queued', 'leased', 'running')",
        }
    }

    fn bind<'q>(
        self,
        q: sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    ) -> sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
        match self {
            JobsOf::Job(job) => q.bind(job.0),
            JobsOf::Run(run) => q.bind(run.0),
            JobsOf::RunFrom(run, job) => q.bind(run.0).bind(job.0),
            JobsOf::Open => q,
        }
    }
}

pub(crate) async fn repo_id(conn: &mut SqliteConnection, name: &str) -> StoreResult<RepoId> {
    sqlx::query_scalar::<_, i64>("SELECT id FROM repos WHERE name = ?")
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?
        .map(RepoId)
        .ok_or_else(|| StoreError::NotFound(format!("repository `{name}`")))
}

pub(crate) async fn repo(conn: &mut SqliteConnection, name: &str) -> StoreResult<RepoRecord> {
    let row = sqlx::query(&format!("{REPO_SELECT} WHERE name = ?"))
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("repository `{name}`")))?;
    repo_from_row(&row)
}

pub(crate) async fn list_repos(conn: &mut SqliteConnection) -> StoreResult<Vec<RepoRecord>> {
    let rows = sqlx::query(&format!("{REPO_SELECT} ORDER BY name"))
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(repo_from_row).collect()
}

fn repo_from_row(row: &SqliteRow) -> StoreResult<RepoRecord> {
    Ok(RepoRecord {
        id: RepoId(row.try_get("id")?),
        name: row.try_get("name")?,
        path: PathBuf::from(row.try_get::<String, _>("path")?),
        remote_url: row.try_get("remote_url")?,
        default_branch: row.try_get("default_branch")?,
        created_at: ts("repos.created_at", row.try_get("created_at")?)?,
    })
}

pub(crate) async fn refs(conn: &mut SqliteConnection, repo: &str) -> StoreResult<Vec<RefRecord>> {
    let id = repo_id(conn, repo).await?;
    let rows =
        sqlx::query("SELECT branch, head, seen_at FROM refs WHERE repo_id = ? ORDER BY branch")
            .bind(id.0)
            .fetch_all(&mut *conn)
            .await?;
    rows.iter()
        .map(|row| {
            Ok(RefRecord {
                branch: row.try_get("branch")?,
                head: row.try_get("head")?,
                seen_at: ts("refs.seen_at", row.try_get("seen_at")?)?,
            })
        })
        .collect()
}

pub(crate) async fn branches(
    conn: &mut SqliteConnection,
    repo: &str,
) -> StoreResult<Vec<BranchSummary>> {
    let id = repo_id(conn, repo).await?;
    let rows = sqlx::query(
        "WITH b (branch) AS (SELECT branch FROM refs WHERE repo_id = ?1 \
             UNION SELECT branch FROM runs WHERE repo_id = ?1) \
         SELECT b.branch, f.head, \
             (SELECT max(id) FROM runs WHERE repo_id = ?1 AND branch = b.branch) AS latest \
         FROM b LEFT JOIN refs f ON f.repo_id = ?1 AND f.branch = b.branch ORDER BY b.branch",
    )
    .bind(id.0)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let latest: Option<i64> = row.try_get("latest")?;
        let latest_run = match latest {
            Some(run) => Some(run_by_id(conn, RunId(run)).await?),
            None => None,
        };
        out.push(BranchSummary {
            branch: row.try_get("branch")?,
            head: row.try_get("head")?,
            latest_run,
        });
    }
    Ok(out)
}

pub(crate) async fn run_by_id(conn: &mut SqliteConnection, run: RunId) -> StoreResult<RunRecord> {
    let row = sqlx::query(&format!("{RUN_SELECT} WHERE ru.id = ?"))
        .bind(run.0)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("run {run}")))?;
    run_from_row(&row)
}

pub(crate) async fn run_detail(
    conn: &mut SqliteConnection,
    repo: &str,
    number: u64,
) -> StoreResult<RunDetail> {
    let row = sqlx::query(&format!("{RUN_SELECT} WHERE r.name = ? AND ru.number = ?"))
        .bind(repo)
        .bind(i64::try_from(number).unwrap_or(i64::MAX))
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("run {repo} #{number}")))?;
    let run = run_from_row(&row)?;
    let jobs = jobs(conn, JobsOf::Run(run.id)).await?;
    Ok(RunDetail { run, jobs })
}

pub(crate) async fn run_detail_by_id(
    conn: &mut SqliteConnection,
    run: RunId,
) -> StoreResult<RunDetail> {
    let run = run_by_id(conn, run).await?;
    let jobs = jobs(conn, JobsOf::Run(run.id)).await?;
    Ok(RunDetail { run, jobs })
}

pub(crate) async fn list_runs(
    conn: &mut SqliteConnection,
    filter: &RunFilter,
) -> StoreResult<Vec<RunRecord>> {
    let mut q = QueryBuilder::<Sqlite>::new(RUN_SELECT);
    q.push(" WHERE 1 = 1");
    if let Some(repo) = &filter.repo {
        q.push(" AND r.name = ").push_bind(repo.as_str());
    }
    if let Some(branch) = &filter.branch {
        q.push(" AND ru.branch = ").push_bind(branch.as_str());
    }
    if let Some(status) = filter.status {
        q.push(" AND ru.status = ").push_bind(status.as_str());
    }
    if let Some(before) = filter.before {
        q.push(" AND ru.id < ").push_bind(before.0);
    }
    q.push(" ORDER BY ru.id DESC LIMIT ")
        .push_bind(i64::from(filter.limit));
    let rows = q.build().fetch_all(&mut *conn).await?;
    rows.iter().map(run_from_row).collect()
}

fn run_from_row(row: &SqliteRow) -> StoreResult<RunRecord> {
    Ok(RunRecord {
        id: RunId(row.try_get("id")?),
        repo: row.try_get("repo")?,
        number: to_u64("runs.number", row.try_get("number")?)?,
        branch: row.try_get("branch")?,
        head: row.try_get("head")?,
        base: row.try_get("base")?,
        trigger: named(
            "runs.triggered_by",
            row.try_get("triggered_by")?,
            RunTrigger::parse,
        )?,
        status: named("runs.status", row.try_get("status")?, RunStatus::parse)?,
        diagnostics: row.try_get("diagnostics")?,
        superseded_by: opt_u64("runs.superseded_by", row.try_get("superseded_by")?)?,
        created_at: ts("runs.created_at", row.try_get("created_at")?)?,
        started_at: opt_ts("runs.started_at", row.try_get("started_at")?)?,
        finished_at: opt_ts("runs.finished_at", row.try_get("finished_at")?)?,
    })
}

/// Loads jobs with their steps, in id order.
pub(crate) async fn jobs(conn: &mut SqliteConnection, of: JobsOf) -> StoreResult<Vec<JobRecord>> {
    let sql = format!("{JOB_SELECT} WHERE {} ORDER BY j.id", of.clause());
    let rows = of.bind(sqlx::query(&sql)).fetch_all(&mut *conn).await?;
    let mut jobs = rows
        .iter()
        .map(job_from_row)
        .collect::<StoreResult<Vec<_>>>()?;
    if jobs.is_empty() {
        return Ok(jobs);
    }
    let index: HashMap<JobId, usize> = jobs.iter().enumerate().map(|(i, j)| (j.id, i)).collect();
    let sql = format!(
        "{STEP_SELECT} WHERE {} ORDER BY s.job_id, s.idx",
        of.clause()
    );
    let rows = of.bind(sqlx::query(&sql)).fetch_all(&mut *conn).await?;
    for row in &rows {
        let job = JobId(row.try_get("job_id")?);
        if let Some(&i) = index.get(&job) {
            jobs[i].steps.push(step_from_row(row)?);
        }
    }
    Ok(jobs)
}

/// The steps of the newest `jobs` jobs that ended, counted. The bound walks the primary key
/// backwards (nearly every old job has ended); the steps come by their key's `job_id` prefix.
/// The bare columns (`miss_detail`, the run) are the newest step's: SQLite takes them from the
/// row `max()` picks. The runs of those newest steps are read after, in one query.
pub(crate) async fn step_tallies(
    conn: &mut SqliteConnection,
    jobs: u32,
) -> StoreResult<Vec<StepTally>> {
    let rows = sqlx::query(
        "SELECT j.finished_at / 86400000 AS day, j.agent, j.lane, s.name, s.cache, \
         s.status = 'passed' AS passed, s.miss_kind, count(*) AS n, \
         coalesce(sum(s.saved_ms), 0) AS saved, max(s.job_id) AS latest, s.miss_detail, \
         j.run_id FROM jobs j JOIN steps s ON s.job_id = j.id \
         WHERE j.id >= (SELECT min(id) FROM (SELECT id FROM jobs WHERE finished_at IS NOT NULL \
         ORDER BY id DESC LIMIT ?)) AND j.finished_at IS NOT NULL \
         GROUP BY 1, 2, 3, 4, 5, 6, 7",
    )
    .bind(i64::from(jobs))
    .fetch_all(&mut *conn)
    .await?;
    let mut run_ids: Vec<i64> = Vec::new();
    for row in &rows {
        run_ids.push(row.try_get("run_id")?);
    }
    run_ids.sort_unstable();
    run_ids.dedup();
    let mut runs: HashMap<i64, (String, u64)> = HashMap::with_capacity(run_ids.len());
    if !run_ids.is_empty() {
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT ru.id, ru.number, r.name FROM runs ru JOIN repos r ON r.id = ru.repo_id \
             WHERE ru.id IN (",
        );
        let mut ids = q.separated(", ");
        for id in &run_ids {
            ids.push_bind(*id);
        }
        q.push(")");
        for row in q.build().fetch_all(&mut *conn).await? {
            let number = to_u64("runs.number", row.try_get("number")?)?;
            runs.insert(row.try_get("id")?, (row.try_get("name")?, number));
        }
    }
    rows.iter()
        .map(|row| {
            let kind: Option<String> = row.try_get("miss_kind")?;
            let day: Option<i64> = row.try_get("day")?;
            let run_id: i64 = row.try_get("run_id")?;
            let (repo, run_number) = runs
                .get(&run_id)
                .cloned()
                .ok_or_else(|| StoreError::NotFound(format!("run {run_id}")))?;
            Ok(StepTally {
                day: day
                    .and_then(|d| jiff::Timestamp::from_second(d.saturating_mul(86_400)).ok())
                    .map(|t| t.strftime("%Y-%m-%d").to_string())
                    .unwrap_or_default(),
                agent: row.try_get("agent")?,
                lane: row.try_get("lane")?,
                step: row.try_get("name")?,
                cache: named("steps.cache", row.try_get("cache")?, CacheUse::parse)?,
                passed: row.try_get("passed")?,
                miss_kind: kind.as_deref().map(MissKind::parse),
                count: to_u64("count", row.try_get("n")?)?,
                saved_ms: to_u64("saved", row.try_get("saved")?)?,
                latest: LatestStep {
                    job: JobId(row.try_get("latest")?),
                    repo,
                    run_number,
                    miss_detail: row.try_get("miss_detail")?,
                },
            })
        })
        .collect()
}

pub(crate) async fn job(conn: &mut SqliteConnection, id: JobId) -> StoreResult<JobRecord> {
    jobs(conn, JobsOf::Job(id))
        .await?
        .pop()
        .ok_or_else(|| StoreError::NotFound(format!("job {id}")))
}

fn job_from_row(row: &SqliteRow) -> StoreResult<JobRecord> {
    let reason: Option<String> = row.try_get("reason")?;
    let selection: String = row.try_get("selection")?;
    let needs: String = row.try_get("needs")?;
    let labels: String = row.try_get("labels")?;
    Ok(JobRecord {
        id: JobId(row.try_get("id")?),
        run: RunId(row.try_get("run_id")?),
        repo: row.try_get("repo")?,
        run_number: to_u64("runs.number", row.try_get("run_number")?)?,
        lane: row.try_get("lane")?,
        class: named("jobs.class", row.try_get("class")?, |s| {
            LaneClass::ALL.into_iter().find(|c| c.as_str() == s)
        })?,
        priority: named("jobs.priority", row.try_get("priority")?, Priority::parse)?,
        state: named("jobs.state", row.try_get("state")?, JobState::parse)?,
        reason: reason.map(|r| from_json("jobs.reason", &r)).transpose()?,
        selection: from_json("jobs.selection", &selection)?,
        needs: from_json::<Vec<i64>>("jobs.needs", &needs)?
            .into_iter()
            .map(JobId)
            .collect(),
        group: row.try_get("concurrency_group")?,
        labels: from_json("jobs.labels", &labels)?,
        retries: to_u32("jobs.retries", row.try_get("retries")?)?,
        attempts: to_u32("jobs.attempts", row.try_get("attempts")?)?,
        agent: row.try_get("agent")?,
        token: opt_u64("jobs.token", row.try_get("token")?)?,
        expires_at: opt_ts("jobs.expires_at", row.try_get("expires_at")?)?,
        rerun_of: row.try_get::<Option<i64>, _>("rerun_of")?.map(JobId),
        queued_at: opt_ts("jobs.queued_at", row.try_get("queued_at")?)?,
        leased_at: opt_ts("jobs.leased_at", row.try_get("leased_at")?)?,
        started_at: opt_ts("jobs.started_at", row.try_get("started_at")?)?,
        finished_at: opt_ts("jobs.finished_at", row.try_get("finished_at")?)?,
        timings: Timings {
            queue_wait_ms: opt_u64("jobs.queue_wait_ms", row.try_get("queue_wait_ms")?)?,
            lock_wait_ms: opt_u64("jobs.lock_wait_ms", row.try_get("lock_wait_ms")?)?,
            materialize_ms: opt_u64("jobs.materialize_ms", row.try_get("materialize_ms")?)?,
        },
        log_len: to_u64("jobs.log_len", row.try_get("log_len")?)?,
        steps: Vec::new(),
    })
}

fn step_from_row(row: &SqliteRow) -> StoreResult<StepRecord> {
    Ok(StepRecord {
        index: to_u32("steps.idx", row.try_get("idx")?)?,
        name: row.try_get("name")?,
        status: named("steps.status", row.try_get("status")?, JobState::parse)?,
        cache: named("steps.cache", row.try_get("cache")?, CacheUse::parse)?,
        key: row.try_get("key")?,
        duration_ms: opt_u64("steps.duration_ms", row.try_get("duration_ms")?)?,
        saved_ms: opt_u64("steps.saved_ms", row.try_get("saved_ms")?)?,
        exit_code: row
            .try_get::<Option<i64>, _>("exit_code")?
            .map(|c| i32::try_from(c).map_err(|_| super::codec::corrupt("steps.exit_code", c)))
            .transpose()?,
        miss: match (
            row.try_get::<Option<String>, _>("miss_kind")?,
            row.try_get::<Option<String>, _>("miss_detail")?,
        ) {
            (Some(kind), detail) => Some(MissReason {
                kind: MissKind::parse(&kind),
                detail: detail.unwrap_or_default(),
            }),
            (None, _) => None,
        },
    })
}

pub(crate) async fn log_len(conn: &mut SqliteConnection, job: JobId) -> StoreResult<u64> {
    let len: i64 = sqlx::query_scalar("SELECT log_len FROM jobs WHERE id = ?")
        .bind(job.0)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("job {job}")))?;
    to_u64("jobs.log_len", len)
}

pub(crate) async fn next_token(conn: &mut SqliteConnection) -> StoreResult<u64> {
    let next: i64 = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'next_token'")
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| super::codec::corrupt("meta.next_token", "missing"))?;
    to_u64("meta.next_token", next)
}

pub(crate) async fn agent_by_hash(
    conn: &mut SqliteConnection,
    hash: &[u8],
) -> StoreResult<Option<AgentRecord>> {
    let row = sqlx::query(&format!("{AGENT_SELECT} WHERE token_hash = ?"))
        .bind(hash)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(agent_from_row).transpose()
}

pub(crate) async fn agent(conn: &mut SqliteConnection, name: &str) -> StoreResult<AgentRecord> {
    let row = sqlx::query(&format!("{AGENT_SELECT} WHERE name = ?"))
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("agent `{name}`")))?;
    agent_from_row(&row)
}

pub(crate) async fn list_agents(conn: &mut SqliteConnection) -> StoreResult<Vec<AgentRecord>> {
    let rows = sqlx::query(&format!("{AGENT_SELECT} ORDER BY name"))
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(agent_from_row).collect()
}

fn agent_from_row(row: &SqliteRow) -> StoreResult<AgentRecord> {
    let labels: String = row.try_get("labels")?;
    Ok(AgentRecord {
        name: row.try_get("name")?,
        labels: from_json("agents.labels", &labels)?,
        capacity: to_u32("agents.capacity", row.try_get("capacity")?)?,
        state: named("agents.state", row.try_get("state")?, AgentState::parse)?,
        last_heartbeat: opt_ts("agents.last_heartbeat", row.try_get("last_heartbeat")?)?,
        created_at: ts("agents.created_at", row.try_get("created_at")?)?,
    })
}
