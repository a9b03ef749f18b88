//! Creating runs: numbers per repository, one run per pushed head, nightly slots.

use crate::common::{Fixture, TestResult, job, push, repo, t};
use lanes_store::{NightlySlot, RunFilter, RunStatus, RunTrigger, SqliteStore, Store, StoreError};
use std::collections::BTreeSet;

#[tokio::test]
async fn run_numbers_count_1_2_3_per_repository() -> TestResult {
    let fx = Fixture::new()?;
    let store = fx.with_repo().await?;
    store.add_repo(&repo("lib"), t(0)).await?;
    let mut numbers = Vec::new();
    for (i, name) in ["app", "lib", "app", "app", "lib"].iter().enumerate() {
        let mut run = push("main", &format!("h{i}"), vec![job("build", &[])]);
        run.repo = (*name).into();
        let created = store.create_run(&run).await?;
        numbers.push((created.run.repo, created.run.number));
    }
    let want = [("app", 1), ("lib", 1), ("app", 2), ("app", 3), ("lib", 2)];
    let got: Vec<(&str, u64)> = numbers.iter().map(|(r, n)| (r.as_str(), *n)).collect();
    assert_eq!(got, want);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_numbers_stay_unique_under_concurrent_creators() -> TestResult {
    let fx = Fixture::new()?;
    // Two stores on one file: two writers, as two server processes would be.
    let a = fx.with_repo().await?;
    let b = fx.open().await?;
    let mut tasks = Vec::new();
    for i in 0..24 {
        let store: SqliteStore = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let mut run = push("main", &format!("head{i}"), vec![job("build", &[])]);
            run.trigger = RunTrigger::Manual;
            store.create_run(&run).await.map(|r| r.run.number)
        }));
    }
    let mut numbers = BTreeSet::new();
    for task in tasks {
        assert!(
            numbers.insert(task.await??),
            "a number was handed out twice"
        );
    }
    assert_eq!(numbers, (1..=24).collect::<BTreeSet<u64>>());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_pushed_head_creates_one_run_even_when_watchers_race() -> TestResult {
    let fx = Fixture::new()?;
    let a = fx.with_repo().await?;
    let b = fx.open().await?;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            store
                .create_run(&push("main", "same", vec![job("build", &[])]))
                .await
        }));
    }
    let (mut created, mut duplicates) = (0, 0);
    for task in tasks {
        match task.await? {
            Ok(_) => created += 1,
            Err(StoreError::Duplicate(_)) => duplicates += 1,
            Err(e) => return Err(e.into()),
        }
    }
    assert_eq!((created, duplicates), (1, 7));
    let runs = a.list_runs(&RunFilter::default()).await?;
    assert_eq!(runs.len(), 1);

    // The same head on another branch, or asked for by hand, is a new run.
    a.create_run(&push("topic", "same", vec![])).await?;
    let mut manual = push("main", "same", vec![]);
    manual.trigger = RunTrigger::Manual;
    let manual = a.create_run(&manual).await?;
    assert_eq!(manual.run.number, 3, "the refused pushes burned no number");
    Ok(())
}

#[tokio::test]
async fn a_nightly_slot_runs_once() -> TestResult {
    let fx = Fixture::new()?;
    let store = fx.with_repo().await?;
    let nightly = |slot: i64| {
        let mut run = push("main", "h1", vec![job("bench", &[])]);
        run.trigger = RunTrigger::Nightly;
        run.nightly_slots = vec![NightlySlot {
            lane: "bench".into(),
            slot: t(slot),
        }];
        run
    };
    store.create_run(&nightly(86_400_000)).await?;
    store.close().await?;

    let store = fx.open().await?;
    let err = store
        .create_run(&nightly(86_400_000))
        .await
        .expect_err("a claimed slot must not run again, even after a restart");
    assert!(matches!(err, StoreError::Duplicate(_)), "{err:?}");
    assert_eq!(store.list_runs(&RunFilter::default()).await?.len(), 1);

    let next = store.create_run(&nightly(2 * 86_400_000)).await?;
    assert_eq!(next.run.number, 2);
    assert_eq!(next.run.trigger, RunTrigger::Nightly);
    Ok(())
}

#[tokio::test]
async fn a_run_whose_catalog_failed_is_stored_with_its_diagnostics() -> TestResult {
    let fx = Fixture::new()?;
    let store = fx.with_repo().await?;
    let mut run = push("main", "bad", vec![]);
    run.status = RunStatus::Error;
    run.diagnostics = Some("lanes.toml:3:1: unknown key `lanez`".into());
    let created = store.create_run(&run).await?;
    let read = store.run("app", created.run.number).await?;
    assert_eq!(read.run.status, RunStatus::Error);
    assert_eq!(read.run.diagnostics, run.diagnostics);
    assert!(read.jobs.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_job_needing_an_unknown_lane_creates_nothing() -> TestResult {
    let fx = Fixture::new()?;
    let store = fx.with_repo().await?;
    let err = store
        .create_run(&push("main", "h1", vec![job("test", &["fmt"])]))
        .await
        .expect_err("unknown need");
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert!(store.list_runs(&RunFilter::default()).await?.is_empty());
    assert!(store.open_jobs().await?.is_empty());
    Ok(())
}
