//! The web UI's render speed: the run page, the branch page, the overview, the cache page and the
//! agents page with `LANES_BENCH_RUNS` (10,000)
//! runs of 20 passed jobs with 3 steps each in the database, served by `api::router` (which
//! carries the UI) with axum on 127.0.0.1:0 in this process, with the admin token, over one
//! keep-alive connection, `LANES_BENCH_SAMPLES` (1,000) requests each for random run numbers and
//! branches. Baselines side by side: the JSON API's GET of the same run, of the same branch and
//! of the repository's branches, `Store::run` alone, and for the cache and agents pages
//! `Store::step_tallies(2000)` alone (what the cache page reads).
//!
//! The database is made as the `forge` bench's `page` mode makes its own (runs through
//! `Store::create_run`, then every job passed with its steps in bulk SQL), once, under
//! `target/bench-ui/`, and copied into a tempdir each run so a fresh admin token can be made.
//! The runs are spread over 10 branches, so a branch has 1,000 runs.
//!
//! Run: `cargo bench -p lanes-server --bench ui`. Results go to stdout as a table.

#![expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a bench binary reports on the terminal"
)]

mod common;

use common::{BenchResult, Conn, Rng, env_number, ms, quantile};
use jiff::Timestamp;
use lanes_core::schedule;
use lanes_server::{Forge, ForgeConfig, api};
use lanes_store::{SqliteStore, Store};
use std::path::Path;
use std::time::{Duration, Instant};

const JOBS_PER_RUN: usize = 20;
const STEPS: usize = 3;
const BRANCHES: usize = 10;

fn main() -> BenchResult<()> {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs us without it: stay quick.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let runs = env_number("LANES_BENCH_RUNS").unwrap_or(10_000);
    let samples = env_number("LANES_BENCH_SAMPLES").unwrap_or(1_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-ui");
    std::fs::create_dir_all(&dir)?;
    let template = dir.join(format!("runs-{runs}.db"));
    if !template.exists() {
        let started = Instant::now();
        rt.block_on(common::runs::generate_runs(
            &template,
            runs,
            JOBS_PER_RUN,
            STEPS,
            BRANCHES,
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
    let (store, token, addr) = rt.block_on(async {
        let store = SqliteStore::open(&db).await?;
        let token = store
            .ensure_admin_token(Timestamp::now())
            .await?
            .ok_or("the copied database already had an admin token")?;
        // The agent the generated jobs ran on, so the agents page has its row to add up.
        let agent = lanes_store::NewAgent {
            name: "a1".into(),
            labels: vec!["linux".into()],
            capacity: 4,
        };
        let agent_token = lanes_store::token::generate_token()?;
        store
            .register_agent(&agent, &agent_token, Timestamp::now())
            .await?;
        let addr = serve(&store, tmp.path()).await?;
        BenchResult::Ok((store, token, addr))
    })?;

    let mut rng = Rng(0x5eed_0f0a_e5e5);
    let numbers: Vec<u64> = (0..samples + 50)
        .map(|_| rng.below(runs as u64) + 1)
        .collect();
    let (warm, numbers) = numbers.split_at(50);

    // What the cache page and the agents page read: the newest ended jobs with their steps.
    let ended_times = rt.block_on(async {
        let mut times = Vec::with_capacity(numbers.len());
        for i in 0..numbers.len() + warm.len() {
            let start = Instant::now();
            let tallies = store.step_tallies(2_000).await?;
            if i >= warm.len() {
                times.push(start.elapsed());
            }
            let steps: u64 = tallies.iter().map(|t| t.count).sum();
            assert_eq!(steps as usize, 2_000.min(runs * JOBS_PER_RUN) * STEPS);
        }
        BenchResult::Ok(times)
    })?;
    let store_times = rt.block_on(async {
        for &n in warm {
            store.run("app", n).await?;
        }
        let mut times = Vec::with_capacity(numbers.len());
        for &n in numbers {
            let start = Instant::now();
            store.run("app", n).await?;
            times.push(start.elapsed());
        }
        BenchResult::Ok(times)
    })?;

    let mut conn = Conn::connect(&addr)?;
    let mut time = |path: &dyn Fn(u64) -> String, expect: &dyn Fn(u64) -> String| {
        let mut bytes = 0;
        for &n in warm {
            conn.request("GET", &path(n), Some(&token), None)?;
        }
        let mut times = Vec::with_capacity(numbers.len());
        for &n in numbers {
            let start = Instant::now();
            let response = conn.request("GET", &path(n), Some(&token), None)?;
            times.push(start.elapsed());
            let body = String::from_utf8_lossy(&response.body);
            if response.status != 200 || !body.contains(&expect(n)) {
                return Err(format!("GET {}: {} {body:.400}", path(n), response.status).into());
            }
            bytes = response.body.len();
        }
        BenchResult::Ok((times, bytes))
    };
    let branch = |n: u64| format!("branch-{}", n % BRANCHES as u64);
    let ui_run = time(&|n| format!("/app/runs/{n}"), &|n| format!("Run #{n}"))?;
    let api_run = time(&|n| format!("/api/v1/repos/app/runs/{n}"), &|n| {
        format!("\"number\":{n}")
    })?;
    let ui_branch = time(&|n| format!("/app/branches/{}", branch(n)), &|n| {
        format!("<span class=\"mono\">{}</span>", branch(n))
    })?;
    let api_branch = time(
        &|n| format!("/api/v1/repos/app/branches/{}", branch(n)),
        &|n| format!("\"branch\":\"{}\"", branch(n)),
    )?;

    let ui_home = time(&|_| "/".to_owned(), &|_| "branch-9".to_owned())?;
    let ui_cache = time(&|_| "/cache".to_owned(), &|_| {
        "Steps that miss most".to_owned()
    })?;
    let ui_agents = time(&|_| "/agents".to_owned(), &|_| {
        "<th scope=\"row\">a1".to_owned()
    })?;
    let api_home = time(&|_| "/api/v1/repos/app/branches".to_owned(), &|_| {
        "branch-9".to_owned()
    })?;

    println!();
    println!(
        "UI pages with {runs} runs of {JOBS_PER_RUN} jobs ({} steps each run) in the database, \
         {} requests each, one keep-alive connection, the admin token",
        JOBS_PER_RUN * STEPS,
        numbers.len()
    );
    println!("| measurement | size | median | p99 | ratio to its JSON baseline (median / p99) |");
    println!("|---|---:|---:|---:|---:|");
    let row =
        |name: &str, (mut times, bytes): (Vec<Duration>, usize), base: Option<&[Duration]>| {
            let (p50, p99) = (quantile(&mut times, 0.5), quantile(&mut times, 0.99));
            let ratio = base.map_or_else(
                || "—".to_owned(),
                |b| {
                    let mut b = b.to_vec();
                    let (b50, b99) = (quantile(&mut b, 0.5), quantile(&mut b, 0.99));
                    format!(
                        "{:.2}x / {:.2}x",
                        p50.as_secs_f64() / b50.as_secs_f64(),
                        p99.as_secs_f64() / b99.as_secs_f64()
                    )
                },
            );
            println!(
                "| {name} | {} KB | {} | {} | {ratio} |",
                bytes / 1000,
                ms(p50),
                ms(p99)
            );
        };
    row("run page `/app/runs/{n}`", ui_run, Some(&api_run.0));
    row(
        "baseline: `GET /api/v1/repos/app/runs/{n}`",
        api_run.clone(),
        None,
    );
    row(
        "branch page `/app/branches/{b}` (1,000 runs on the branch)",
        ui_branch,
        Some(&api_branch.0),
    );
    row(
        "baseline: `GET /api/v1/repos/app/branches/{b}`",
        api_branch,
        None,
    );
    row("overview `/` (10 branches)", ui_home, Some(&api_home.0));
    row("baseline: `GET /api/v1/repos/app/branches`", api_home, None);
    row(
        "cache page `/cache` (the newest 2,000 ended jobs)",
        ui_cache,
        Some(&ended_times),
    );
    row(
        "agents page `/agents` (the newest 500 ended jobs)",
        ui_agents,
        Some(&ended_times),
    );
    row("`Store::run` alone", (store_times, 0), None);
    row(
        "baseline: `Store::step_tallies(2000)` alone",
        (ended_times, 0),
        None,
    );
    rt.block_on(store.close())?;
    Ok(())
}

/// Serves `api::router` (the API and the UI) over a forge on `store` on 127.0.0.1:0 in this
/// runtime; returns the address.
async fn serve(store: &SqliteStore, dir: &Path) -> BenchResult<String> {
    let forge = Forge::open(
        store.clone(),
        ForgeConfig {
            data_dir: dir.to_owned(),
            schedule: schedule::Config::default(),
            public_read: false,
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
