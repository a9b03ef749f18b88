//! The forge's speed targets that need no `lanes` process: leases through the real [`Forge`]
//! over a real SQLite database, and one run page through the real HTTP API.
//!
//! - **lease**: 10,000 queued jobs (500 runs of 20, created through the store, so
//!   `Forge::open` rebuilds the scheduler from them) and 100 agents of capacity 4 registered with
//!   `Forge::agent_online`. The workload is the lanes-core scheduler bench's: 30% of the jobs in
//!   one of 20 concurrency groups whose limits (1 to 4) come from the catalog at the runs' head in
//!   a real git repository, 20% asking for labels (`mac`, `linux`+`gpu`, `arm`), mixed
//!   priorities; agents 20% `mac`, 20% `linux`+`gpu`, 10% `arm`+`linux`, the rest `linux`.
//!   Agents take turns calling `forge.lease(agent, Duration::ZERO)`. Two loops, each on a fresh
//!   copy of the database:
//!   - *lease alone*: only the `lease` call is timed; every leased job is `started` at once and
//!     an agent at capacity first `finish`es (passed) its oldest job, untimed;
//!   - *cycle*: `lease` + `started` + `finish` of the same job, all timed, one job per agent at a
//!     time;
//!   - *fleet*: every agent its own tokio task, all at once, each looping `lease` + `started` +
//!     `finish`; a batch's rate is its leases over its wall time, and the forge's metrics say how
//!     many calls each write transaction carried.
//!
//!   Each loop runs `LANES_BENCH_BATCHES` (7) batches of `LANES_BENCH_BATCH` (300) leases; a
//!   batch's rate is its leases over the time they took; the table shows the median batch. The
//!   store opens with the default `StoreOptions` (`synchronous = FULL`, as `lanes serve`); the
//!   baselines, in the same run: the same loops with `synchronous = NORMAL`, and the same loops
//!   on the pure `lanes_core::schedule::Scheduler` with the same jobs and agents. Then the store
//!   calls that `lease`, `started` and `finish` make, each timed alone on the `FULL` database
//!   (`parts`), with their sums: where the time goes.
//! - **run page**: `GET /api/v1/repos/app/runs/{n}` for random `n` (`LANES_BENCH_SAMPLES`,
//!   1,000) on a database of `LANES_BENCH_RUNS` (10,000) runs of 20 passed jobs with 3 steps
//!   each, served by `api::router` with axum on 127.0.0.1:0 in this process (a multi-threaded
//!   tokio runtime), with the admin token, from a blocking HTTP/1.1 client over
//!   `std::net::TcpStream`: one keep-alive connection, then a new connection per request.
//!   Baseline: `Store::run` alone for the same numbers. The database is generated once under
//!   `target/bench-forge/` (runs through `Store::create_run`, then every job passed with its
//!   steps in bulk SQL, as the lanes-store bench does) and copied into a tempdir each bench run,
//!   so a fresh admin token can be made.
//!
//! Run: `cargo bench -p lanes-server --bench forge` (both), or with `-- lease` or `-- page`.
//! Results go to stdout as tables.

#![expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a bench binary reports on the terminal"
)]

mod common;

use common::{BenchResult, Conn, Rng, env_number, median_f64, ms, quantile};
use jiff::Timestamp;
use lanes_agent::FinishReport;
use lanes_core::job::{JobState, Priority};
use lanes_core::schedule::{self, AgentId, JobSpec, Scheduler};
use lanes_core::{LaneClass, Reason};
use lanes_server::{Forge, ForgeConfig, api};
use lanes_store::{
    CacheUse, Durability, JobFinish, JobUpdate, NewJob, NewRepo, NewRun, RunStatus, RunTrigger,
    SqliteStore, StepRecord, Store, StoreOptions,
};
use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const QUEUED: usize = 10_000;
const AGENTS: usize = 100;
const CAPACITY: u32 = 4;
const GROUPS: usize = 20;
const JOBS_PER_RUN: usize = 20;
const STEPS: usize = 3;

fn main() -> BenchResult<()> {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs us without it: stay quick.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        return Ok(());
    }
    let only: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |name: &str| only.is_empty() || only.contains(&name);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if wants("lease") {
        let batches = env_number("LANES_BENCH_BATCHES").unwrap_or(7);
        let batch = env_number("LANES_BENCH_BATCH").unwrap_or(300);
        rt.block_on(leases(batches, batch))?;
    }
    if wants("page") {
        let runs = env_number("LANES_BENCH_RUNS").unwrap_or(10_000);
        let samples = env_number("LANES_BENCH_SAMPLES").unwrap_or(1_000);
        run_page(&rt, runs, samples)?;
    }
    Ok(())
}

// Leases.

/// What a job asks of the scheduler.
#[derive(Clone, Debug)]
struct Shape {
    priority: Priority,
    group: Option<String>,
    labels: Vec<String>,
}

/// The lanes-core bench's mix, from the same seed.
fn shapes(n: usize) -> Vec<Shape> {
    let mut rng = Rng(0x5eed_1a9e5);
    (0..n)
        .map(|_| {
            let priority = match rng.below(10) {
                0 => Priority::Manual,
                1..=5 => Priority::Required,
                6..=8 => Priority::Advisory,
                _ => Priority::Nightly,
            };
            let group = (rng.below(10) < 3).then(|| format!("group{}", rng.below(GROUPS as u64)));
            let labels: &[&str] = match rng.below(10) {
                0 => &["mac"],
                1 if rng.below(2) == 0 => &["gpu", "linux"],
                1 => &["arm"],
                _ => &[],
            };
            Shape {
                priority,
                group,
                labels: labels.iter().map(|l| (*l).to_owned()).collect(),
            }
        })
        .collect()
}

fn agent_name(i: usize) -> String {
    format!("agent{i:03}")
}

fn agent_labels(i: usize) -> BTreeSet<String> {
    let labels: &[&str] = match i % 10 {
        0 | 1 => &["mac"],
        2 | 3 => &["gpu", "linux"],
        4 => &["arm", "linux"],
        _ => &["linux"],
    };
    labels.iter().map(|l| (*l).to_owned()).collect()
}

fn group_limit(g: usize) -> u32 {
    1 + (g % 4) as u32
}

/// One loop's figures.
#[derive(Debug, Default)]
struct Loop {
    /// Leases per second of each batch.
    rates: Vec<f64>,
    /// Each timed call (a lease, or a whole cycle).
    times: Vec<Duration>,
    /// Lease calls that found nothing.
    misses: usize,
    /// Jobs still queued at the end.
    queued_after: usize,
}

impl Loop {
    fn rate(&mut self) -> f64 {
        median_f64(&mut self.rates)
    }
}

/// How many leases in `batch` calls found a job, and the sum of their times.
#[derive(Debug, Default)]
struct Batch {
    leased: usize,
    took: Duration,
}

impl Batch {
    fn rate(&self) -> f64 {
        self.leased as f64 / self.took.as_secs_f64().max(1e-9)
    }
}

async fn leases(batches: usize, batch: usize) -> BenchResult<()> {
    let needed = batches * batch;
    if needed + (AGENTS * CAPACITY as usize) > QUEUED {
        return Err(format!(
            "{batches} batches of {batch} leases need more than the {QUEUED} jobs queued"
        )
        .into());
    }
    let tmp = tempfile::tempdir()?;
    let shapes = shapes(QUEUED);
    let started = Instant::now();
    let (git, head) = catalog_repo(tmp.path())?;
    let template = lease_template(tmp.path(), &git, &head, &shapes).await?;
    eprintln!(
        "generated {QUEUED} queued jobs in {} runs in {:.1?}",
        QUEUED / JOBS_PER_RUN,
        started.elapsed()
    );

    let mut rows = Vec::new();
    let mut fleets = Vec::new();
    for durability in [Durability::Full, Durability::Normal] {
        let forge = open_forge(&template, tmp.path(), durability, "alone").await?;
        let alone = forge_alone(&forge, batches, batch).await?;
        if durability == Durability::Full {
            parts(&forge).await?;
        }
        drop(forge);
        let forge = open_forge(&template, tmp.path(), durability, "cycle").await?;
        let cycle = forge_cycle(&forge, batches, batch).await?;
        drop(forge);
        let forge = open_forge(&template, tmp.path(), durability, "fleet").await?;
        let (fleet, mean_batch) = forge_fleet(&forge, batches, batch).await?;
        drop(forge);
        fleets.push((durability, fleet, mean_batch));
        rows.push((format!("forge, synchronous={durability:?}"), alone, cycle));
    }
    let (alone, cycle) = pure(&shapes, batches, batch);
    rows.push(("pure Scheduler (no database)".to_owned(), alone, cycle));

    println!();
    println!(
        "leases: {QUEUED} queued jobs at the start, {AGENTS} agents (capacity {CAPACITY}), \
         {GROUPS} groups (limits 1-4), labels on {}% of the jobs; {batches} batches of {batch} \
         leases per loop",
        shapes.iter().filter(|s| !s.labels.is_empty()).count() * 100 / QUEUED
    );
    println!("| loop | leases/s (median batch) | per call: median | p99 | misses | queued after |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut rates = Vec::new();
    for (name, mut alone, mut cycle) in rows {
        for (what, l) in [
            ("lease alone", &mut alone),
            ("lease + started + finish", &mut cycle),
        ] {
            let rate = l.rate();
            println!(
                "| {name}, {what} | {rate:.0} | {} | {} | {} | {} |",
                ms(quantile(&mut l.times, 0.5)),
                ms(quantile(&mut l.times, 0.99)),
                l.misses,
                l.queued_after
            );
        }
        rates.push((name, alone.rate(), cycle.rate()));
    }
    for (durability, mut fleet, mean_batch) in fleets {
        let rate = fleet.rate();
        println!(
            "| forge, synchronous={durability:?}, {AGENTS} agents at once, lease + started + \
             finish | {rate:.0} | {} | {} | {} | {} |",
            ms(quantile(&mut fleet.times, 0.5)),
            ms(quantile(&mut fleet.times, 0.99)),
            fleet.misses,
            fleet.queued_after
        );
        println!(
            "  ({durability:?}: {mean_batch:.1} agent calls written per transaction on average)"
        );
    }
    if let [
        (_, full_a, full_c),
        (_, normal_a, normal_c),
        (_, pure_a, pure_c),
    ] = rates[..]
    {
        println!(
            "ratios (leases/s): FULL / NORMAL {:.2}x alone, {:.2}x cycle; pure / FULL {:.0}x \
             alone, {:.0}x cycle",
            full_a / normal_a,
            full_c / normal_c,
            pure_a / full_a,
            pure_c / full_c
        );
    }
    Ok(())
}

/// A git repository whose catalog defines the 20 groups and their limits, as `Forge::open`
/// reads them at the head of every run with open jobs; returns it and its head.
fn catalog_repo(dir: &Path) -> BenchResult<(PathBuf, String)> {
    let repo = dir.join("app");
    std::fs::create_dir_all(&repo)?;
    let mut catalog = String::from("version = 1\n");
    for g in 0..GROUPS {
        catalog.push_str(&format!("\n[group.group{g}]\nlimit = {}\n", group_limit(g)));
    }
    for g in 0..GROUPS {
        catalog.push_str(&format!(
            "\n[lane.lane-{g:02}]\nclass = \"required\"\nconcurrency = \"group{g}\"\n\
             step = [{{ name = \"s\", run = \"true\" }}]\n"
        ));
    }
    std::fs::write(repo.join("lanes.toml"), catalog)?;
    git(&repo, &["init", "-q", "-b", "main"])?;
    git(&repo, &["add", "lanes.toml"])?;
    git(&repo, &["commit", "-q", "-m", "catalog"])?;
    let head = git(&repo, &["rev-parse", "HEAD"])?;
    Ok((repo, head))
}

fn git(dir: &Path, args: &[&str]) -> BenchResult<String> {
    let out = Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.invalid")
        .env("GIT_COMMITTER_NAME", "Bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.invalid")
        .args(["-c", "commit.gpgsign=false"])
        .args(args)
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The database every lease loop starts from: the repository and 500 runs of 20 queued jobs.
async fn lease_template(
    dir: &Path,
    git: &Path,
    head: &str,
    shapes: &[Shape],
) -> BenchResult<PathBuf> {
    let db = dir.join("template.db");
    let options = StoreOptions {
        durability: Durability::Normal,
        ..StoreOptions::default()
    };
    let store = SqliteStore::open_with(&db, &options).await?;
    store
        .add_repo(
            &NewRepo {
                name: "app".into(),
                path: git.to_owned(),
                remote_url: None,
                default_branch: "main".into(),
            },
            Timestamp::now(),
        )
        .await?;
    for (i, jobs) in shapes.chunks(JOBS_PER_RUN).enumerate() {
        let jobs = jobs
            .iter()
            .enumerate()
            .map(|(j, shape)| NewJob {
                lane: format!("lane-{j:02}"),
                class: match shape.priority {
                    Priority::Advisory => LaneClass::Advisory,
                    Priority::Nightly => LaneClass::Nightly,
                    Priority::Manual => LaneClass::Manual,
                    Priority::Required => LaneClass::Required,
                },
                priority: shape.priority,
                state: JobState::Queued,
                reason: None,
                selection: vec![Reason::Always],
                needs: Vec::new(),
                group: shape.group.clone(),
                labels: shape.labels.clone(),
                retries: 2,
                rerun_of: None,
            })
            .collect();
        store
            .create_run(&NewRun {
                repo: "app".into(),
                branch: format!("branch-{i}"),
                head: head.to_owned(),
                base: None,
                trigger: RunTrigger::Push,
                status: RunStatus::Pending,
                diagnostics: None,
                created_at: Timestamp::now(),
                jobs,
                nightly_slots: Vec::new(),
            })
            .await?;
    }
    // `close` folds the WAL into the file, which is all that is copied.
    store.close().await?;
    Ok(db)
}

/// A copy of `template` in a directory of its own, opened as `lanes serve` opens it (but with
/// `durability`), the forge over it, and the agents online.
async fn open_forge(
    template: &Path,
    dir: &Path,
    durability: Durability,
    name: &str,
) -> BenchResult<Arc<Forge<SqliteStore>>> {
    let data = dir.join(format!("{durability:?}-{name}").to_lowercase());
    std::fs::create_dir_all(&data)?;
    let db = data.join("lanes.db");
    std::fs::copy(template, &db)?;
    let store = SqliteStore::open_with(
        &db,
        &StoreOptions {
            durability,
            ..StoreOptions::default()
        },
    )
    .await?;
    let started = Instant::now();
    let forge = Forge::open(
        store,
        ForgeConfig {
            data_dir: data,
            schedule: schedule::Config::default(),
            public_read: false,
            secrets: Default::default(),
        },
    )
    .await?;
    if queued(&forge).await? != QUEUED {
        return Err(format!("the copy of the database does not hold {QUEUED} queued jobs").into());
    }
    for g in forge.groups().await {
        let n: usize = g.name.trim_start_matches("group").parse()?;
        if g.limit != group_limit(n) {
            return Err(format!("{} has limit {}, not from the catalog", g.name, g.limit).into());
        }
    }
    for i in 0..AGENTS {
        forge
            .agent_online(&agent_name(i), agent_labels(i), CAPACITY)
            .await;
    }
    eprintln!(
        "Forge::open and {AGENTS} agents online ({durability:?}, {name}): {:.1?}",
        started.elapsed()
    );
    Ok(forge)
}

fn passed() -> FinishReport {
    FinishReport {
        state: JobState::Passed,
        message: None,
        reason: None,
        steps: vec![StepRecord {
            index: 0,
            name: "s".into(),
            status: JobState::Passed,
            cache: CacheUse::Miss,
            key: Some(format!("{:064x}", 1)),
            duration_ms: Some(1),
            saved_ms: None,
            exit_code: Some(0),
            miss: None,
        }],
        lock_wait_ms: 0,
        materialize_ms: 0,
    }
}

async fn queued(forge: &Forge<SqliteStore>) -> BenchResult<usize> {
    Ok(forge
        .store()
        .open_jobs()
        .await?
        .iter()
        .filter(|j| j.state == JobState::Queued)
        .count())
}

/// Leases timed alone; started untimed; an agent at capacity finishes its oldest first.
async fn forge_alone(
    forge: &Forge<SqliteStore>,
    batches: usize,
    batch: usize,
) -> BenchResult<Loop> {
    let names: Vec<String> = (0..AGENTS).map(agent_name).collect();
    let mut held: Vec<VecDeque<(u64, u64)>> = vec![VecDeque::new(); AGENTS];
    let mut out = Loop::default();
    let mut i = 0;
    for _ in 0..batches {
        let mut b = Batch::default();
        while b.leased < batch {
            let a = i % AGENTS;
            i += 1;
            if held[a].len() >= CAPACITY as usize
                && let Some((job, token)) = held[a].pop_front()
            {
                forge.finish(job, token, passed()).await?;
            }
            let start = Instant::now();
            let lease = forge.lease(&names[a], Duration::ZERO).await?;
            let took = start.elapsed();
            match lease {
                Some(job) => {
                    b.leased += 1;
                    b.took += took;
                    out.times.push(took);
                    forge.started(job.job, job.token).await?;
                    held[a].push_back((job.job, job.token));
                }
                None => out.misses += 1,
            }
        }
        out.rates.push(b.rate());
    }
    out.queued_after = queued(forge).await?;
    Ok(out)
}

/// Lease, started and finish of one job, timed together.
async fn forge_cycle(
    forge: &Forge<SqliteStore>,
    batches: usize,
    batch: usize,
) -> BenchResult<Loop> {
    let names: Vec<String> = (0..AGENTS).map(agent_name).collect();
    let mut out = Loop::default();
    let mut i = 0;
    for _ in 0..batches {
        let mut b = Batch::default();
        while b.leased < batch {
            let a = i % AGENTS;
            i += 1;
            let start = Instant::now();
            let Some(job) = forge.lease(&names[a], Duration::ZERO).await? else {
                b.took += start.elapsed();
                out.misses += 1;
                continue;
            };
            forge.started(job.job, job.token).await?;
            forge.finish(job.job, job.token, passed()).await?;
            let took = start.elapsed();
            b.leased += 1;
            b.took += took;
            out.times.push(took);
        }
        out.rates.push(b.rate());
    }
    out.queued_after = queued(forge).await?;
    Ok(out)
}

/// Every agent its own task, all at once, each looping lease, started, finish (a cycle timed
/// as one), until a batch's leases are handed out; a batch's rate is its leases over its wall
/// time. Also returns how many agent calls each write transaction carried on average.
async fn forge_fleet(
    forge: &Arc<Forge<SqliteStore>>,
    batches: usize,
    batch: usize,
) -> BenchResult<(Loop, f64)> {
    let mut out = Loop::default();
    let (batches_before, calls_before) = forge.metrics().batches();
    for _ in 0..batches {
        let left = Arc::new(AtomicUsize::new(batch));
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for a in 0..AGENTS {
            let forge = Arc::clone(forge);
            let left = Arc::clone(&left);
            let name = agent_name(a);
            tasks.spawn(async move {
                let mut times = Vec::new();
                let mut misses = 0;
                while left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    let start = Instant::now();
                    let Some(job) = forge.lease(&name, Duration::ZERO).await? else {
                        // Give the claim back; another agent may have the labels for what is
                        // left, and this one waits a little before asking again.
                        left.fetch_add(1, Ordering::SeqCst);
                        misses += 1;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        continue;
                    };
                    forge.started(job.job, job.token).await?;
                    forge.finish(job.job, job.token, passed()).await?;
                    times.push(start.elapsed());
                }
                Ok::<_, lanes_server::ForgeError>((times, misses))
            });
        }
        while let Some(done) = tasks.join_next().await {
            let (times, misses) = done??;
            out.times.extend(times);
            out.misses += misses;
        }
        out.rates
            .push(batch as f64 / start.elapsed().as_secs_f64().max(1e-9));
    }
    let (batches_after, calls_after) = forge.metrics().batches();
    let mean = (calls_after - calls_before) as f64 / (batches_after - batches_before).max(1) as f64;
    out.queued_after = queued(forge).await?;
    Ok((out, mean))
}

/// The store calls of a lease, a start and a finish, each timed alone on the same database:
/// where the time of the forge's calls goes. Called one at a time, `Forge::lease` makes one
/// write (`apply`; the run's head and the repository's path are read once per run, then
/// remembered), `started` one (`start_job`, which also marks the run running) and `finish` one
/// (`finish_job`; the last open job of a run also reads the run to set its end status). Called
/// at once, many of them share one write (`Store::write_jobs`).
async fn parts(forge: &Forge<SqliteStore>) -> BenchResult<()> {
    let store = forge.store();
    let open = store.open_jobs().await?;
    let queued: Vec<_> = open
        .iter()
        .filter(|j| j.state == JobState::Queued)
        .take(500)
        .collect();
    let mut token = store.next_token().await?;
    let mut times: [Vec<Duration>; 6] = Default::default();
    let [apply, job, repo, run, start_job, finish_job] = &mut times;
    for j in &queued {
        let now = Timestamp::now();
        let update = JobUpdate {
            job: j.id,
            from: JobState::Queued,
            to: JobState::Leased,
            reason: None,
            token: Some(token),
            agent: Some("parts".into()),
            expires_at: Some(now + jiff::SignedDuration::from_secs(30)),
            at: now,
        };
        let start = Instant::now();
        store.apply(std::slice::from_ref(&update)).await?;
        apply.push(start.elapsed());
        let start = Instant::now();
        let record = store.job(j.id).await?;
        job.push(start.elapsed());
        let start = Instant::now();
        store.repo(&record.repo).await?;
        repo.push(start.elapsed());
        let start = Instant::now();
        store.run(&record.repo, record.run_number).await?;
        run.push(start.elapsed());
        let start = Instant::now();
        store.start_job(j.id, token, Timestamp::now()).await?;
        start_job.push(start.elapsed());
        let finish = JobFinish {
            state: JobState::Passed,
            reason: None,
            at: Timestamp::now(),
            steps: vec![StepRecord {
                index: 0,
                name: "s".into(),
                status: JobState::Passed,
                cache: CacheUse::Miss,
                key: Some(format!("{:064x}", 1)),
                duration_ms: Some(1),
                saved_ms: None,
                exit_code: Some(0),
                miss: None,
            }],
            lock_wait_ms: Some(0),
            materialize_ms: Some(0),
        };
        let start = Instant::now();
        store.finish_job(j.id, token, &finish).await?;
        finish_job.push(start.elapsed());
        token += 1;
    }
    let medians: Vec<f64> = times
        .iter_mut()
        .map(|t| quantile(t, 0.5).as_secs_f64() * 1000.0)
        .collect();
    println!();
    println!(
        "store calls, each timed alone on the synchronous=FULL database ({} samples)",
        queued.len()
    );
    println!("| store call | median | p99 |");
    println!("|---|---:|---:|");
    let names = [
        "Store::apply, one queued -> leased (one commit)",
        "Store::job",
        "Store::repo",
        "Store::run (20 jobs)",
        "Store::start_job (one commit)",
        "Store::finish_job, one step (one commit)",
    ];
    for (name, t) in names.iter().zip(times.iter_mut()) {
        println!(
            "| {name} | {} | {} |",
            ms(quantile(t, 0.5)),
            ms(quantile(t, 0.99))
        );
    }
    let [apply, job, repo, run, start_job, finish_job] = medians[..] else {
        return Ok(());
    };
    let commits = apply + start_job + finish_job;
    println!(
        "sums of medians: a lease {apply:.3} ms (one commit; {:.3} more for the first lease of a \
         run: Store::repo and Store::run); a cycle alone {commits:.3} ms (3 commits; the last \
         job of a run adds Store::run {run:.3}); Store::job {job:.3} is read only for a job \
         attempted before",
        repo + run,
    );
    Ok(())
}

/// The same loops on the scheduler alone, with the same jobs and agents.
fn pure(shapes: &[Shape], batches: usize, batch: usize) -> (Loop, Loop) {
    let fill = || {
        let mut sched = Scheduler::new(schedule::Config::default());
        for g in 0..GROUPS {
            sched.set_group_limit(&format!("group{g}"), group_limit(g));
        }
        for (i, shape) in shapes.iter().enumerate() {
            sched
                .add_job(JobSpec {
                    id: schedule::JobId(i as u64 + 1),
                    repo: "app".into(),
                    run: (i / JOBS_PER_RUN) as u64 + 1,
                    lane: format!("lane-{:02}", i % JOBS_PER_RUN),
                    priority: shape.priority,
                    needs: Vec::new(),
                    group: shape.group.clone(),
                    labels: shape.labels.iter().cloned().collect(),
                    retries: 2,
                })
                .expect("fresh ids, no needs");
        }
        let agents: Vec<AgentId> = (0..AGENTS).map(|i| AgentId(agent_name(i))).collect();
        for (i, agent) in agents.iter().enumerate() {
            sched.agent_online(agent.clone(), &agent_labels(i), CAPACITY);
        }
        (sched, agents)
    };
    let now = || u64::try_from(Timestamp::now().as_millisecond()).unwrap_or(0);

    let (mut sched, agents) = fill();
    let mut held: Vec<VecDeque<schedule::Lease>> = vec![VecDeque::new(); AGENTS];
    let mut alone = Loop::default();
    let mut i = 0;
    for _ in 0..batches {
        let mut b = Batch::default();
        while b.leased < batch {
            let a = i % AGENTS;
            i += 1;
            if held[a].len() >= CAPACITY as usize
                && let Some(old) = held[a].pop_front()
            {
                sched
                    .finished(old.job, old.token, JobState::Passed, now())
                    .expect("a live lease");
            }
            let start = Instant::now();
            let lease = sched.lease(&agents[a], now());
            let took = start.elapsed();
            match lease {
                Some(lease) => {
                    b.leased += 1;
                    b.took += took;
                    alone.times.push(took);
                    sched
                        .started(lease.job, lease.token, now())
                        .expect("a live lease");
                    held[a].push_back(lease);
                }
                None => alone.misses += 1,
            }
        }
        alone.rates.push(b.rate());
    }
    alone.queued_after = sched.counts().0;

    let (mut sched, agents) = fill();
    let mut cycle = Loop::default();
    let mut i = 0;
    for _ in 0..batches {
        let mut b = Batch::default();
        while b.leased < batch {
            let a = i % AGENTS;
            i += 1;
            let start = Instant::now();
            let Some(lease) = sched.lease(&agents[a], now()) else {
                b.took += start.elapsed();
                cycle.misses += 1;
                continue;
            };
            sched
                .started(lease.job, lease.token, now())
                .expect("a live lease");
            sched
                .finished(lease.job, lease.token, JobState::Passed, now())
                .expect("a live lease");
            let took = start.elapsed();
            b.leased += 1;
            b.took += took;
            cycle.times.push(took);
        }
        cycle.rates.push(b.rate());
    }
    cycle.queued_after = sched.counts().0;
    (alone, cycle)
}

// The run page.

fn run_page(rt: &tokio::runtime::Runtime, runs: usize, samples: usize) -> BenchResult<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-forge");
    std::fs::create_dir_all(&dir)?;
    let template = dir.join(format!("runs-{runs}.db"));
    if !template.exists() {
        let started = Instant::now();
        rt.block_on(common::runs::generate_runs(
            &template,
            runs,
            JOBS_PER_RUN,
            STEPS,
            10,
        ))?;
        eprintln!(
            "generated {} in {:.1?}",
            template.display(),
            started.elapsed()
        );
    }
    let tmp = tempfile::tempdir()?;
    let db = tmp.path().join("lanes.db");
    std::fs::copy(&template, &db)?;
    let (store, token, addr, public_addr) = rt.block_on(async {
        let store = SqliteStore::open(&db).await?;
        let token = store
            .ensure_admin_token(Timestamp::now())
            .await?
            .ok_or("the copied database already had an admin token")?;
        let addr = serve(&store, tmp.path(), false).await?;
        let public_addr = serve(&store, tmp.path(), true).await?;
        BenchResult::Ok((store, token, addr, public_addr))
    })?;

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let numbers: Vec<u64> = (0..samples + 50)
        .map(|_| rng.below(runs as u64) + 1)
        .collect();
    let (warm, numbers) = numbers.split_at(50);

    // The store alone, for the same numbers.
    let store_times = rt.block_on(async {
        for &n in warm {
            store.run("app", n).await?;
        }
        let mut times = Vec::with_capacity(numbers.len());
        for &n in numbers {
            let start = Instant::now();
            let run = store.run("app", n).await?;
            times.push(start.elapsed());
            check_shape(n, run.jobs.len(), run.jobs.iter().map(|j| j.steps.len()))?;
        }
        BenchResult::Ok(times)
    })?;

    let path = |n: u64| format!("/api/v1/repos/app/runs/{n}");
    let mut bytes = 0;
    let mut keep_alive = |addr: &str, token: Option<&str>| -> BenchResult<Vec<Duration>> {
        let mut conn = Conn::connect(addr)?;
        for &n in warm {
            conn.request("GET", &path(n), token, None)?;
        }
        let mut times = Vec::with_capacity(numbers.len());
        for &n in numbers {
            let start = Instant::now();
            let response = conn.request("GET", &path(n), token, None)?;
            times.push(start.elapsed());
            check_page(n, &response)?;
            bytes = response.body.len();
        }
        Ok(times)
    };
    let with_token = keep_alive(&addr, Some(&token))?;
    let public = keep_alive(&public_addr, None)?;
    let mut fresh = Vec::with_capacity(numbers.len());
    for &n in numbers {
        let start = Instant::now();
        let mut conn = Conn::connect(&addr)?;
        let response = conn.request("GET", &path(n), Some(&token), None)?;
        fresh.push(start.elapsed());
        check_page(n, &response)?;
    }

    println!();
    println!(
        "run page: one run of {JOBS_PER_RUN} jobs ({} steps, ~{} KB of JSON) out of {runs} runs, \
         {} requests, random run numbers",
        JOBS_PER_RUN * STEPS,
        bytes / 1000,
        numbers.len()
    );
    println!("| measurement | median | p99 | ratio to Store::run (median / p99) |");
    println!("|---|---:|---:|---:|");
    let base = (
        quantile(&mut store_times.clone(), 0.5),
        quantile(&mut store_times.clone(), 0.99),
    );
    for (name, mut times) in [
        (
            "GET with the admin token, one keep-alive connection",
            with_token,
        ),
        (
            "GET with the admin token, a new connection per request",
            fresh,
        ),
        (
            "GET without a token (`public_read`), one keep-alive connection",
            public,
        ),
        ("Store::run alone (baseline)", store_times),
    ] {
        let (p50, p99) = (quantile(&mut times, 0.5), quantile(&mut times, 0.99));
        println!(
            "| {name} | {} | {} | {:.2}x / {:.2}x |",
            ms(p50),
            ms(p99),
            p50.as_secs_f64() / base.0.as_secs_f64(),
            p99.as_secs_f64() / base.1.as_secs_f64()
        );
    }
    rt.block_on(store.close())?;
    Ok(())
}

/// Serves `api::router` over a forge on `store` on 127.0.0.1:0 in this runtime; returns the
/// address.
async fn serve(store: &SqliteStore, dir: &Path, public_read: bool) -> BenchResult<String> {
    let forge = Forge::open(
        store.clone(),
        ForgeConfig {
            data_dir: dir.to_owned(),
            schedule: schedule::Config::default(),
            public_read,
            secrets: Default::default(),
        },
    )
    .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let app = api::router(forge);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("the server failed: {e}");
        }
    });
    Ok(addr)
}

fn check_shape(n: u64, jobs: usize, mut steps: impl Iterator<Item = usize>) -> BenchResult<()> {
    if jobs != JOBS_PER_RUN || steps.any(|s| s != STEPS) {
        return Err(format!("run #{n} has the wrong shape").into());
    }
    Ok(())
}

fn check_page(n: u64, response: &common::Response) -> BenchResult<()> {
    if response.status != 200 {
        return Err(format!(
            "GET run #{n}: {} {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        )
        .into());
    }
    let run = response.json()?;
    let jobs = run["jobs"].as_array().ok_or("no jobs in the run page")?;
    check_shape(
        n,
        jobs.len(),
        jobs.iter()
            .map(|j| j["steps"].as_array().map_or(0, Vec::len)),
    )
}
