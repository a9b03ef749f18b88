//! lanes-store benchmarks: reading one run page from a large database, and the rate of leases.
//!
//! - **get run**: `Store::run(repo, N)` (the run, its 20 jobs and their 60 steps) on a database
//!   holding `LANES_BENCH_RUNS` runs (10,000) of 20 jobs and 3 steps each, for random `N`.
//!   Beside it, `Store::list_runs` of one branch (a page of 50). The database is generated once
//!   under `target/bench-store/` (runs created through the store, steps added in bulk SQL) and
//!   reused by later bench runs.
//! - **lease**: `LANES_BENCH_LEASES` (10,000) queued jobs, each moved queued → leased by its own
//!   `Store::apply` (one transaction, one commit), with `synchronous = FULL` (the default) and
//!   `NORMAL`, on a fresh database in `target/bench-store/`.
//!
//! Run: `cargo bench -p lanes-store --bench store`. `LANES_BENCH_SAMPLES` sets the number of
//! timed reads (1,000). Results go to stdout as a table (median, p99, mean).

#![expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a bench binary reports on the terminal"
)]

use jiff::Timestamp;
use lanes_core::job::{JobReason, JobState, Priority};
use lanes_core::{LaneClass, Reason};
use lanes_store::{
    Durability, JobUpdate, NewJob, NewRepo, NewRun, RunFilter, RunStatus, RunTrigger, SqliteStore,
    Store, StoreOptions,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const JOBS: usize = 20;
const STEPS: usize = 3;

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> BenchResult<()> {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs us without it: stay quick.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let runs = env_number("LANES_BENCH_RUNS").unwrap_or(10_000);
    let samples = env_number("LANES_BENCH_SAMPLES").unwrap_or(1_000);
    let leases = env_number("LANES_BENCH_LEASES").unwrap_or(10_000);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-store");
    std::fs::create_dir_all(&dir)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        println!("| measure | n | median | p99 | mean |");
        println!("|---|---:|---:|---:|---:|");
        reads(&dir, runs, samples).await?;
        for durability in [Durability::Full, Durability::Normal] {
            lease_rate(&dir, leases, durability).await?;
        }
        Ok(())
    })
}

/// Times `Store::run` and `Store::list_runs` on a database of `runs` runs.
async fn reads(dir: &Path, runs: usize, samples: usize) -> BenchResult<()> {
    let db = dir.join(format!("runs-{runs}.db"));
    if !db.exists() {
        let started = Instant::now();
        generate(&db, runs).await?;
        eprintln!("generated {} in {:.1?}", db.display(), started.elapsed());
    }
    let store = SqliteStore::open(&db).await?;
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % runs as u64 + 1
    };
    for _ in 0..50 {
        store.run("app", next()).await?;
    }
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let number = next();
        let started = Instant::now();
        let run = store.run("app", number).await?;
        times.push(started.elapsed());
        if run.jobs.len() != JOBS || run.jobs.iter().any(|j| j.steps.len() != STEPS) {
            return Err(format!("run #{number} has the wrong shape").into());
        }
    }
    report(
        &format!("get run (20 jobs, 60 steps) of {runs}"),
        &mut times,
    );

    let mut times = Vec::with_capacity(samples);
    let filter = RunFilter {
        repo: Some("app".into()),
        branch: Some("branch-3".into()),
        ..RunFilter::default()
    };
    for _ in 0..samples {
        let started = Instant::now();
        let page = store.list_runs(&filter).await?;
        times.push(started.elapsed());
        if page.len() != 50 {
            return Err(format!("a page of {} runs", page.len()).into());
        }
    }
    report(
        &format!("list runs of a branch (page of 50) of {runs}"),
        &mut times,
    );
    store.close().await?;
    Ok(())
}

/// Writes `runs` runs of `JOBS` passed jobs with `STEPS` steps each.
async fn generate(db: &Path, runs: usize) -> BenchResult<()> {
    let partial = db.with_extension("partial");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", partial.display()));
    }
    let options = StoreOptions {
        durability: Durability::Normal,
        ..StoreOptions::default()
    };
    let store = SqliteStore::open_with(&partial, &options).await?;
    store.add_repo(&repo(), now()).await?;
    for i in 0..runs {
        store.create_run(&run(i)).await?;
    }
    store.close().await?;
    // Finish every job with its steps in bulk: the store's API would take one lease per job.
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
    .bind(STEPS as i64 - 1)
    .execute(&mut conn)
    .await?;
    sqlx::query(
        "UPDATE jobs SET state = 'passed', agent = 'a1', token = id, leased_at = queued_at, \
         started_at = queued_at, finished_at = queued_at + 60000, queue_wait_ms = 0, \
         log_len = 4096",
    )
    .execute(&mut conn)
    .await?;
    sqlx::query("UPDATE runs SET status = 'passed'")
        .execute(&mut conn)
        .await?;
    sqlx::Connection::close(conn).await?;
    std::fs::rename(&partial, db)?;
    Ok(())
}

/// Times `LANES_BENCH_LEASES` queued → leased transitions, one transaction each.
async fn lease_rate(dir: &Path, leases: usize, durability: Durability) -> BenchResult<()> {
    let db: PathBuf = dir.join(format!("leases-{durability:?}.db").to_lowercase());
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let options = StoreOptions {
        durability,
        ..StoreOptions::default()
    };
    let store = SqliteStore::open_with(&db, &options).await?;
    store.add_repo(&repo(), now()).await?;
    let mut ids = Vec::with_capacity(leases);
    for i in 0..leases.div_ceil(JOBS) {
        let created = store.create_run(&run(i)).await?;
        ids.extend(created.jobs.iter().map(|j| j.id));
    }
    ids.truncate(leases);
    let mut token = store.next_token().await?;
    let mut times = Vec::with_capacity(ids.len());
    let all = Instant::now();
    for &job in &ids {
        let update = JobUpdate {
            job,
            from: JobState::Queued,
            to: JobState::Leased,
            reason: None,
            token: Some(token),
            agent: Some("a1".into()),
            expires_at: Some(now() + jiff::SignedDuration::from_secs(30)),
            at: now(),
        };
        let started = Instant::now();
        store.apply(std::slice::from_ref(&update)).await?;
        times.push(started.elapsed());
        token += 1;
    }
    let total = all.elapsed();
    let name = format!(
        "lease, 1 per transaction, synchronous={durability:?} ({:.0}/s)",
        ids.len() as f64 / total.as_secs_f64()
    );
    report(&name, &mut times);
    if store
        .open_jobs()
        .await?
        .iter()
        .any(|j| j.state != JobState::Leased)
    {
        return Err("a job was not leased".into());
    }
    store.close().await?;
    Ok(())
}

fn repo() -> NewRepo {
    NewRepo {
        name: "app".into(),
        path: PathBuf::from("/srv/git/app.git"),
        remote_url: None,
        default_branch: "main".into(),
    }
}

/// Run `i`: a push on one of 10 branches with `JOBS` jobs, each needing the previous one.
fn run(i: usize) -> NewRun {
    let jobs = (0..JOBS)
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
    NewRun {
        repo: "app".into(),
        branch: format!("branch-{}", i % 10),
        head: format!("{i:040x}"),
        base: Some(format!("{:040x}", i + 1_000_000)),
        trigger: RunTrigger::Push,
        status: RunStatus::Pending,
        diagnostics: None,
        created_at: now(),
        jobs,
        nightly_slots: Vec::new(),
    }
}

fn now() -> Timestamp {
    Timestamp::now()
}

fn report(name: &str, times: &mut [Duration]) {
    times.sort();
    let n = times.len();
    if n == 0 {
        return;
    }
    let median = times[n / 2];
    let p99 = times[(n * 99 / 100).min(n - 1)];
    let mean = times.iter().sum::<Duration>() / n as u32;
    println!(
        "| {name} | {n} | {} | {} | {} |",
        ms(median),
        ms(p99),
        ms(mean)
    );
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn env_number(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}
