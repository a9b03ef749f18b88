//! The database the page benches read: `runs` passed runs over `branches` branches, each with
//! `jobs_per_run` jobs of `steps` steps (the lanes-store bench's recipe), generated once.

use super::BenchResult;
use jiff::Timestamp;
use lanes_core::job::{JobReason, JobState, Priority};
use lanes_core::{LaneClass, Reason};
use lanes_store::{
    Durability, NewJob, NewRepo, NewRun, RunStatus, RunTrigger, SqliteStore, Store, StoreOptions,
};
use std::path::{Path, PathBuf};

/// Writes the runs through the store, then passes every job with its steps in bulk SQL, into
/// `db` (through a partial file renamed at the end, so an interrupted run leaves nothing).
pub(crate) async fn generate_runs(
    db: &Path,
    runs: usize,
    jobs_per_run: usize,
    steps: usize,
    branches: usize,
) -> BenchResult<()> {
    let partial = db.with_extension("partial");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", partial.display()));
    }
    let options = StoreOptions {
        durability: Durability::Normal,
        ..StoreOptions::default()
    };
    let store = SqliteStore::open_with(&partial, &options).await?;
    store
        .add_repo(
            &NewRepo {
                name: "app".into(),
                path: PathBuf::from("/srv/git/app.git"),
                remote_url: None,
                default_branch: "main".into(),
            },
            Timestamp::now(),
        )
        .await?;
    for i in 0..runs {
        let jobs = (0..jobs_per_run)
            .map(|j| NewJob {
                lane: format!("lane-{j:02}"),
                class: LaneClass::Required,
                priority: Priority::Required,
                state: JobState::Queued,
                reason: Some(JobReason::WaitingForCapacity),
                selection: vec![Reason::Path {
                    path: format!("crates/c{j}/src/lib.rs"),
                    pattern: "crates/**".into(),
                }],
                needs: if j == 0 {
                    Vec::new()
                } else {
                    vec![format!("lane-{:02}", j - 1)]
                },
                group: None,
                labels: vec!["linux".into()],
                retries: 2,
                rerun_of: None,
            })
            .collect();
        store
            .create_run(&NewRun {
                repo: "app".into(),
                branch: format!("branch-{}", i % branches),
                head: format!("{i:040x}"),
                base: Some(format!("{:040x}", i + 1_000_000)),
                trigger: RunTrigger::Push,
                status: RunStatus::Pending,
                diagnostics: None,
                created_at: Timestamp::now(),
                jobs,
                nightly_slots: Vec::new(),
            })
            .await?;
    }
    store.close().await?;
    // Finish every job with its steps in bulk: the store's API would take a lease and a finish
    // (two commits) per job.
    let mut conn = sqlx::ConnectOptions::connect(
        &sqlx::sqlite::SqliteConnectOptions::new().filename(&partial),
    )
    .await?;
    sqlx::query(
        "WITH RECURSIVE idx (i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM idx WHERE i < ?) \
         INSERT INTO steps (job_id, idx, name, status, cache, key, duration_ms, saved_ms, \
         exit_code) SELECT j.id, idx.i, 'step-' || idx.i, 'passed', \
         CASE WHEN j.id % 2 = 0 THEN 'hit' ELSE 'miss' END, printf('%064x', j.id * 8 + idx.i), \
         1200, NULL, 0 FROM jobs j CROSS JOIN idx",
    )
    .bind(steps as i64 - 1)
    .execute(&mut conn)
    .await?;
    sqlx::query(
        "UPDATE jobs SET state = 'passed', reason = NULL, agent = 'a1', token = id, \
         leased_at = queued_at, started_at = queued_at, finished_at = queued_at + 60000, \
         queue_wait_ms = 0, log_len = 4096",
    )
    .execute(&mut conn)
    .await?;
    sqlx::query(
        "UPDATE runs SET status = 'passed', started_at = created_at, \
         finished_at = created_at + 60000",
    )
    .execute(&mut conn)
    .await?;
    sqlx::Connection::close(conn).await?;
    std::fs::rename(&partial, db)?;
    Ok(())
}
