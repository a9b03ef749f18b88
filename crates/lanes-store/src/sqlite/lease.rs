//! Scheduler transitions and the fenced writes of the agent holding a job.
//!
//! Every write here is conditional in its own `UPDATE … WHERE`: on the state the decision was
//! computed from, on the lease's fencing token, on the lease having expired. When the condition
//! fails, a follow-up read says why (the error), and the caller's transaction is rolled back.

use super::codec::{HELD, json, ms, opt_i64, to_i64};
use crate::error::StoreError;
use crate::job::{JobFinish, JobId, JobUpdate};
use crate::step::StepRecord;
use crate::store::StoreResult;
use jiff::Timestamp;
use lanes_core::job::{JobReason, JobState};
use sqlx::sqlite::SqliteConnection;
use sqlx::{QueryBuilder, Sqlite};

pub(crate) async fn apply(conn: &mut SqliteConnection, updates: &[JobUpdate]) -> StoreResult<()> {
    let tokens = Tokens::claim(conn, updates.iter()).await?;
    for update in updates {
        apply_one(conn, update).await?;
    }
    tokens.advance(conn).await
}

/// The fencing tokens of the new leases among some updates, checked against the database's
/// `next_token` with one read and moved past with one write, however many leases there are.
pub(crate) struct Tokens {
    highest: Option<i64>,
}

impl Tokens {
    /// Fails with [`StoreError::Conflict`] if a token was handed out before (below
    /// `next_token`) or appears twice.
    pub(crate) async fn claim(
        conn: &mut SqliteConnection,
        updates: impl Iterator<Item = &JobUpdate>,
    ) -> StoreResult<Tokens> {
        let mut leases = Vec::new();
        for u in updates.filter(|u| u.to == JobState::Leased && u.from != JobState::Leased) {
            if let Some(token) = u.token {
                leases.push((to_i64("fencing token", token)?, u.job));
            }
        }
        if leases.is_empty() {
            return Ok(Tokens { highest: None });
        }
        let next: i64 = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'next_token'")
            .fetch_one(&mut *conn)
            .await?;
        leases.sort_unstable();
        for pair in leases.windows(2) {
            if pair[0].0 == pair[1].0 {
                return Err(StoreError::Conflict(format!(
                    "fencing token {} is given to jobs {} and {} at once",
                    pair[0].0, pair[0].1, pair[1].1
                )));
            }
        }
        if let Some((token, job)) = leases.first()
            && *token < next
        {
            return Err(StoreError::Conflict(format!(
                "fencing token {token} for job {job} was handed out before (the next is {next})"
            )));
        }
        Ok(Tokens {
            highest: leases.last().map(|(token, _)| *token),
        })
    }

    /// Records that every claimed token is handed out.
    pub(crate) async fn advance(self, conn: &mut SqliteConnection) -> StoreResult<()> {
        if let Some(token) = self.highest {
            sqlx::query("UPDATE meta SET value = ? + 1 WHERE key = 'next_token'")
                .bind(token)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}

/// One update; a new lease's token must have been claimed ([`Tokens::claim`]).
pub(crate) async fn apply_one(conn: &mut SqliteConnection, u: &JobUpdate) -> StoreResult<()> {
    let at = ms(u.at);
    let new_lease = u.to == JobState::Leased && u.from != JobState::Leased;
    // A held job's token (other than a new lease's) must be the current one.
    let check_token = if u.from.is_held() && !new_lease {
        u.token
    } else {
        None
    };
    // Taking a job away from a lost agent must not beat a heartbeat that landed meanwhile.
    let lost = u.from.is_held()
        && !u.to.is_held()
        && matches!(
            u.reason,
            Some(JobReason::AgentLost { .. } | JobReason::RetriesExhausted { .. })
        );
    let reason = u.reason.as_ref().map(|r| json("reason", r)).transpose()?;

    let mut q = QueryBuilder::<Sqlite>::new("UPDATE jobs SET state = ");
    q.push_bind(u.to.as_str());
    q.push(", reason = ").push_bind(reason);
    if new_lease {
        if u.from != JobState::Queued {
            return Err(invalid(u));
        }
        let (Some(token), Some(agent), Some(expires_at)) = (u.token, &u.agent, u.expires_at) else {
            return Err(StoreError::Invalid(format!(
                "leasing job {} needs a token, an agent and an expiry",
                u.job
            )));
        };
        // Checked against `next_token` by the caller ([`Tokens::claim`]).
        let token = to_i64("fencing token", token)?;
        q.push(", agent = ").push_bind(agent.as_str());
        q.push(", token = ").push_bind(token);
        q.push(", expires_at = ").push_bind(ms(expires_at));
        q.push(", leased_at = ").push_bind(at);
        q.push(", started_at = NULL, queue_wait_ms = max(0, ")
            .push_bind(at)
            .push(" - queued_at)");
    } else if u.from == u.to {
        if let Some(expires_at) = u.expires_at.filter(|_| u.from.is_held()) {
            q.push(", expires_at = max(coalesce(expires_at, 0), ")
                .push_bind(ms(expires_at))
                .push(")");
        }
    } else {
        match u.to {
            JobState::Running => {
                if u.from != JobState::Leased {
                    return Err(invalid(u));
                }
                q.push(", started_at = ").push_bind(at);
            }
            JobState::Queued => {
                q.push(", queued_at = ").push_bind(at);
                q.push(
                    ", agent = NULL, token = NULL, expires_at = NULL, leased_at = NULL, \
                     started_at = NULL",
                );
                // A job handed back at a clean stop did nothing wrong: no attempt is used.
                if u.from.is_held() && u.reason != Some(JobReason::HandedBack) {
                    q.push(", attempts = attempts + 1");
                }
            }
            JobState::Leased => return Err(invalid(u)),
            _ => {
                if u.from.is_terminal() {
                    return Err(invalid(u));
                }
                q.push(", expires_at = NULL, finished_at = ").push_bind(at);
            }
        }
    }
    q.push(" WHERE id = ").push_bind(u.job.0);
    q.push(" AND state = ").push_bind(u.from.as_str());
    let presented = check_token
        .map(|t| to_i64("fencing token", t))
        .transpose()?;
    if let Some(token) = presented {
        q.push(" AND token = ").push_bind(token);
    }
    if lost {
        q.push(" AND expires_at <= ").push_bind(at);
    }
    let changed = q.build().execute(&mut *conn).await?.rows_affected();
    if changed == 0 {
        return Err(why_not_applied(conn, u, check_token, lost).await);
    }
    Ok(())
}

fn invalid(u: &JobUpdate) -> StoreError {
    StoreError::Invalid(format!(
        "job {} cannot move from {} to {}",
        u.job, u.from, u.to
    ))
}

/// A job's state, token and expiry.
type LeaseRow = (String, Option<i64>, Option<i64>);

async fn why_not_applied(
    conn: &mut SqliteConnection,
    u: &JobUpdate,
    check_token: Option<u64>,
    lost: bool,
) -> StoreError {
    let row: Result<Option<LeaseRow>, _> =
        sqlx::query_as("SELECT state, token, expires_at FROM jobs WHERE id = ?")
            .bind(u.job.0)
            .fetch_optional(&mut *conn)
            .await;
    let (state, token, expires_at) = match row {
        Err(e) => return StoreError::Database(e),
        Ok(None) => return StoreError::NotFound(format!("job {}", u.job)),
        Ok(Some(row)) => row,
    };
    let found = JobState::parse(&state);
    if found != Some(u.from) {
        return match found {
            Some(found) => StoreError::StateConflict {
                job: u.job,
                expected: u.from,
                found,
            },
            None => super::codec::corrupt("jobs.state", format!("unknown name `{state}`")),
        };
    }
    if let Some(presented) = check_token
        && token.and_then(|t| u64::try_from(t).ok()) != Some(presented)
    {
        return StoreError::StaleToken {
            job: u.job,
            token: presented,
        };
    }
    if lost {
        return StoreError::Conflict(format!(
            "the lease of job {} has not expired (it expires at {}); a heartbeat arrived",
            u.job,
            expires_at
                .and_then(|e| Timestamp::from_millisecond(e).ok())
                .map_or_else(|| "never".to_owned(), |t| t.to_string())
        ));
    }
    StoreError::Conflict(format!("job {} changed while updating it", u.job))
}

/// Explains why a fenced write changed nothing: the job is missing, or the token is stale.
async fn fenced_failure(conn: &mut SqliteConnection, job: JobId, token: u64) -> StoreError {
    let exists: Result<Option<i64>, _> = sqlx::query_scalar("SELECT id FROM jobs WHERE id = ?")
        .bind(job.0)
        .fetch_optional(&mut *conn)
        .await;
    match exists {
        Err(e) => StoreError::Database(e),
        Ok(None) => StoreError::NotFound(format!("job {job}")),
        Ok(Some(_)) => StoreError::StaleToken { job, token },
    }
}

/// Fails with [`StoreError::StaleToken`] unless `token` holds `job` now.
async fn check_held(conn: &mut SqliteConnection, job: JobId, token: u64) -> StoreResult<()> {
    let held: Option<i64> = sqlx::query_scalar(&format!(
        "SELECT id FROM jobs WHERE id = ? AND token = ? AND state IN {HELD}"
    ))
    .bind(job.0)
    .bind(to_i64("fencing token", token)?)
    .fetch_optional(&mut *conn)
    .await?;
    match held {
        Some(_) => Ok(()),
        None => Err(fenced_failure(conn, job, token).await),
    }
}

pub(crate) async fn heartbeat(
    conn: &mut SqliteConnection,
    job: JobId,
    token: u64,
    expires_at: Timestamp,
) -> StoreResult<()> {
    let set = "expires_at = max(coalesce(expires_at, 0), ?)";
    fenced_update(conn, job, token, set, ms(expires_at)).await
}

pub(crate) async fn start_job(
    conn: &mut SqliteConnection,
    job: JobId,
    token: u64,
    at: Timestamp,
    mark_run: bool,
) -> StoreResult<()> {
    let set = "state = 'running', started_at = coalesce(started_at, ?)";
    fenced_update(conn, job, token, set, ms(at)).await?;
    if !mark_run {
        return Ok(());
    }
    // A run with a job running is running: no read of its jobs needed to say so.
    sqlx::query(
        "UPDATE runs SET status = 'running', started_at = coalesce(started_at, ?) \
         WHERE id = (SELECT run_id FROM jobs WHERE id = ?) AND status = 'pending'",
    )
    .bind(ms(at))
    .bind(job.0)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// `UPDATE jobs SET {set}` only while the job is held under `token`; `value` fills the one `?`
/// in `set`.
async fn fenced_update(
    conn: &mut SqliteConnection,
    job: JobId,
    token: u64,
    set: &str,
    value: i64,
) -> StoreResult<()> {
    let changed = sqlx::query(&format!(
        "UPDATE jobs SET {set} WHERE id = ? AND token = ? AND state IN {HELD}"
    ))
    .bind(value)
    .bind(job.0)
    .bind(to_i64("fencing token", token)?)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if changed == 0 {
        return Err(fenced_failure(conn, job, token).await);
    }
    Ok(())
}

pub(crate) async fn record_step(
    conn: &mut SqliteConnection,
    job: JobId,
    token: u64,
    step: &StepRecord,
) -> StoreResult<()> {
    check_held(conn, job, token).await?;
    upsert_step(conn, job, step).await
}

pub(crate) async fn finish_job(
    conn: &mut SqliteConnection,
    job: JobId,
    token: u64,
    finish: &JobFinish,
) -> StoreResult<()> {
    if !finish.state.is_terminal() {
        return Err(StoreError::Invalid(format!(
            "job {job} cannot finish as {}: not a terminal state",
            finish.state
        )));
    }
    let reason = finish
        .reason
        .as_ref()
        .map(|r| json("reason", r))
        .transpose()?;
    let changed = sqlx::query(&format!(
        "UPDATE jobs SET state = ?, reason = ?, finished_at = ?, expires_at = NULL, \
         started_at = coalesce(started_at, ?), lock_wait_ms = coalesce(?, lock_wait_ms), \
         materialize_ms = coalesce(?, materialize_ms) \
         WHERE id = ? AND token = ? AND state IN {HELD}"
    ))
    .bind(finish.state.as_str())
    .bind(reason)
    .bind(ms(finish.at))
    .bind(ms(finish.at))
    .bind(opt_i64("lock wait", finish.lock_wait_ms)?)
    .bind(opt_i64("materialize time", finish.materialize_ms)?)
    .bind(job.0)
    .bind(to_i64("fencing token", token)?)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if changed == 0 {
        return Err(fenced_failure(conn, job, token).await);
    }
    for step in &finish.steps {
        upsert_step(conn, job, step).await?;
    }
    Ok(())
}

async fn upsert_step(
    conn: &mut SqliteConnection,
    job: JobId,
    step: &StepRecord,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT OR REPLACE INTO steps (job_id, idx, name, status, cache, key, duration_ms, \
         saved_ms, exit_code, miss_kind, miss_detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(job.0)
    .bind(i64::from(step.index))
    .bind(&step.name)
    .bind(step.status.as_str())
    .bind(step.cache.as_str())
    .bind(&step.key)
    .bind(opt_i64("step duration", step.duration_ms)?)
    .bind(opt_i64("saved time", step.saved_ms)?)
    .bind(step.exit_code.map(i64::from))
    .bind(step.miss.as_ref().map(|m| m.kind.as_str()))
    .bind(step.miss.as_ref().map(|m| m.detail.as_str()))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(crate) async fn ack_log(
    conn: &mut SqliteConnection,
    job: JobId,
    token: u64,
    from: u64,
    to: u64,
) -> StoreResult<()> {
    if to < from {
        return Err(StoreError::Invalid(format!(
            "the log of job {job} cannot shrink from {from} to {to} bytes"
        )));
    }
    check_held(conn, job, token).await?;
    let changed = sqlx::query("UPDATE jobs SET log_len = ? WHERE id = ? AND log_len = ?")
        .bind(to_i64("log length", to)?)
        .bind(job.0)
        .bind(to_i64("log length", from)?)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if changed == 0 {
        let now = super::read::log_len(conn, job).await?;
        return Err(StoreError::Conflict(format!(
            "the log of job {job} is acknowledged at {now} bytes, not {from}"
        )));
    }
    Ok(())
}
