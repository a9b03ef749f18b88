//! The SQLite implementation of [`Store`]: the embedded default.
//!
//! One database file in WAL mode. Writes go through a single connection and each is one
//! `BEGIN IMMEDIATE` transaction, so writers never deadlock upgrading a read lock and a second
//! process waits (up to the busy timeout) instead of failing. Reads use a small pool of
//! read-only connections, each read one snapshot. Settings and their reasons: docs/store.md.

mod auth;
mod codec;
mod lease;
mod nightly;
mod open;
mod read;
mod write;

pub use open::{Durability, SCHEMA_VERSION, StoreOptions};

use crate::agent::{AgentRecord, AgentState, NewAgent};
use crate::job::{JobFinish, JobId, JobRecord, JobUpdate, JobWrite, NewJob};
use crate::repo::{BranchSummary, NewRepo, RefRecord, RepoRecord};
use crate::run::{NewRun, RunDetail, RunFilter, RunId, RunRecord, RunUpdate};
use crate::step::{StepRecord, StepTally};
use crate::store::{Store, StoreResult};
use crate::token::hash_token;
use jiff::Timestamp;
use read::JobsOf;
use sqlx::Sqlite;
use sqlx::sqlite::SqlitePool;
use std::path::Path;

/// The forge's state in one SQLite database file.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    writer: SqlitePool,
    readers: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating it if missing) the database at `path` with the default options, and
    /// applies the migrations it lacks. [`crate::StoreError::SchemaTooNew`] if a newer lanes
    /// wrote it; then nothing is changed.
    pub async fn open(path: &Path) -> StoreResult<SqliteStore> {
        SqliteStore::open_with(path, &StoreOptions::default()).await
    }

    /// [`SqliteStore::open`] with explicit options.
    pub async fn open_with(path: &Path, options: &StoreOptions) -> StoreResult<SqliteStore> {
        let (writer, readers) = open::open(path, options).await?;
        Ok(SqliteStore { writer, readers })
    }

    /// Folds the write-ahead log into the database file, then closes every connection, waiting
    /// for them to finish; afterwards the database file alone is a complete copy (a backup that
    /// copied only `lanes.db` once missed the last 460 jobs). The checkpoint's failure (a reader
    /// in another process keeping the log busy) is returned after closing: the log is as
    /// durable as the file, nothing is lost, and the next open folds it.
    pub async fn close(&self) -> StoreResult<()> {
        self.readers.close().await;
        let checkpoint = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.writer)
            .await;
        self.writer.close().await;
        checkpoint?;
        Ok(())
    }

    /// SQLite's own check of the database file: `ok`, or what is wrong.
    pub async fn integrity_check(&self) -> StoreResult<String> {
        let rows: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_all(&self.readers)
            .await?;
        Ok(rows.join("\n"))
    }

    async fn write(&self) -> StoreResult<sqlx::Transaction<'static, Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    async fn read(&self) -> StoreResult<sqlx::Transaction<'static, Sqlite>> {
        Ok(self.readers.begin().await?)
    }
}

impl Store for SqliteStore {
    async fn add_repo(&self, repo: &NewRepo, now: Timestamp) -> StoreResult<RepoRecord> {
        let mut tx = self.write().await?;
        let out = write::add_repo(&mut tx, repo, now).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn update_repo(
        &self,
        name: &str,
        default_branch: &str,
        remote_url: Option<&str>,
    ) -> StoreResult<RepoRecord> {
        let mut tx = self.write().await?;
        let out = write::update_repo(&mut tx, name, default_branch, remote_url).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn repo(&self, name: &str) -> StoreResult<RepoRecord> {
        let mut conn = self.readers.acquire().await?;
        read::repo(&mut conn, name).await
    }

    async fn list_repos(&self) -> StoreResult<Vec<RepoRecord>> {
        let mut conn = self.readers.acquire().await?;
        read::list_repos(&mut conn).await
    }

    async fn record_ref(
        &self,
        repo: &str,
        branch: &str,
        head: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let mut tx = self.write().await?;
        let out = write::record_ref(&mut tx, repo, branch, head, now).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn refs(&self, repo: &str) -> StoreResult<Vec<RefRecord>> {
        let mut tx = self.read().await?;
        let out = read::refs(&mut tx, repo).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn branches(&self, repo: &str) -> StoreResult<Vec<BranchSummary>> {
        let mut tx = self.read().await?;
        let out = read::branches(&mut tx, repo).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn create_run(&self, run: &NewRun) -> StoreResult<RunDetail> {
        let mut tx = self.write().await?;
        let out = write::create_run(&mut tx, run).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn add_jobs(
        &self,
        run: RunId,
        jobs: &[NewJob],
        now: Timestamp,
    ) -> StoreResult<Vec<JobRecord>> {
        let mut tx = self.write().await?;
        // Checked here so an unknown run is NotFound, not a foreign-key failure.
        read::run_by_id(&mut tx, run).await?;
        let out = match write::insert_jobs(&mut tx, run, jobs, now).await? {
            Some(first) => read::jobs(&mut tx, JobsOf::RunFrom(run, first)).await?,
            None => Vec::new(),
        };
        tx.commit().await?;
        Ok(out)
    }

    async fn update_run(&self, run: RunId, update: &RunUpdate) -> StoreResult<RunRecord> {
        let mut tx = self.write().await?;
        let out = write::update_run(&mut tx, run, update).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn list_runs(&self, filter: &RunFilter) -> StoreResult<Vec<RunRecord>> {
        let mut conn = self.readers.acquire().await?;
        read::list_runs(&mut conn, filter).await
    }

    async fn run(&self, repo: &str, number: u64) -> StoreResult<RunDetail> {
        let mut tx = self.read().await?;
        let out = read::run_detail(&mut tx, repo, number).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn job(&self, job: JobId) -> StoreResult<JobRecord> {
        let mut tx = self.read().await?;
        let out = read::job(&mut tx, job).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn open_jobs(&self) -> StoreResult<Vec<JobRecord>> {
        let mut tx = self.read().await?;
        let out = read::jobs(&mut tx, JobsOf::Open).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn step_tallies(&self, jobs: u32) -> StoreResult<Vec<StepTally>> {
        let mut conn = self.readers.acquire().await?;
        read::step_tallies(&mut conn, jobs).await
    }

    async fn next_token(&self) -> StoreResult<u64> {
        let mut conn = self.readers.acquire().await?;
        read::next_token(&mut conn).await
    }

    async fn apply(&self, updates: &[JobUpdate]) -> StoreResult<()> {
        let mut tx = self.write().await?;
        lease::apply(&mut tx, updates).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn write_jobs(&self, writes: &[JobWrite]) -> StoreResult<()> {
        if writes.is_empty() {
            return Ok(());
        }
        let mut tx = self.write().await?;
        // Every new lease's token checked with one read, and `next_token` moved with one write.
        let updates = writes.iter().filter_map(|w| match w {
            JobWrite::Apply(update) => Some(update),
            _ => None,
        });
        let tokens = lease::Tokens::claim(&mut tx, updates).await?;
        for write in writes {
            match write {
                JobWrite::Apply(update) => lease::apply_one(&mut tx, update).await?,
                JobWrite::Heartbeat {
                    job,
                    token,
                    expires_at,
                } => lease::heartbeat(&mut tx, *job, *token, *expires_at).await?,
                JobWrite::Start {
                    job,
                    token,
                    at,
                    mark_run,
                } => lease::start_job(&mut tx, *job, *token, *at, *mark_run).await?,
                JobWrite::Finish { job, token, finish } => {
                    lease::finish_job(&mut tx, *job, *token, finish).await?;
                }
            }
        }
        tokens.advance(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn heartbeat(&self, job: JobId, token: u64, expires_at: Timestamp) -> StoreResult<()> {
        let mut tx = self.write().await?;
        lease::heartbeat(&mut tx, job, token, expires_at).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn start_job(&self, job: JobId, token: u64, at: Timestamp) -> StoreResult<()> {
        let mut tx = self.write().await?;
        lease::start_job(&mut tx, job, token, at, true).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn record_step(&self, job: JobId, token: u64, step: &StepRecord) -> StoreResult<()> {
        let mut tx = self.write().await?;
        lease::record_step(&mut tx, job, token, step).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn finish_job(&self, job: JobId, token: u64, finish: &JobFinish) -> StoreResult<()> {
        let mut tx = self.write().await?;
        lease::finish_job(&mut tx, job, token, finish).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn ack_log(&self, job: JobId, token: u64, from: u64, to: u64) -> StoreResult<()> {
        let mut tx = self.write().await?;
        lease::ack_log(&mut tx, job, token, from, to).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn log_len(&self, job: JobId) -> StoreResult<u64> {
        let mut conn = self.readers.acquire().await?;
        read::log_len(&mut conn, job).await
    }

    async fn register_agent(
        &self,
        agent: &NewAgent,
        token: &str,
        now: Timestamp,
    ) -> StoreResult<AgentRecord> {
        let mut tx = self.write().await?;
        let out = auth::register_agent(&mut tx, agent, token, now).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn verify_agent_token(&self, token: &str) -> StoreResult<Option<AgentRecord>> {
        let mut conn = self.readers.acquire().await?;
        read::agent_by_hash(&mut conn, &hash_token(token)).await
    }

    async fn agent_heartbeat(&self, name: &str, now: Timestamp) -> StoreResult<()> {
        let mut tx = self.write().await?;
        auth::agent_heartbeat(&mut tx, name, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_agent_state(&self, name: &str, state: AgentState) -> StoreResult<()> {
        let mut tx = self.write().await?;
        auth::set_agent_state(&mut tx, name, state).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_agents(&self) -> StoreResult<Vec<AgentRecord>> {
        let mut conn = self.readers.acquire().await?;
        read::list_agents(&mut conn).await
    }

    async fn ensure_admin_token(&self, now: Timestamp) -> StoreResult<Option<String>> {
        let mut tx = self.write().await?;
        let out = auth::ensure_admin_token(&mut tx, now).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn verify_admin_token(&self, token: &str) -> StoreResult<bool> {
        let mut conn = self.readers.acquire().await?;
        auth::verify_admin_token(&mut conn, token).await
    }

    async fn last_nightly_slot(&self, repo: &str, lane: &str) -> StoreResult<Option<Timestamp>> {
        let mut tx = self.read().await?;
        let out = nightly::last_nightly_slot(&mut tx, repo, lane).await?;
        tx.commit().await?;
        Ok(out)
    }
}
