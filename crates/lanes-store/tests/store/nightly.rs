//! `last_nightly_slot`: the newest claimed cron slot of a (repository, lane).

use crate::common::{Fixture, TestResult, job, push, repo, t};
use lanes_store::{NewRun, NightlySlot, RunTrigger, Store, StoreError};

const DAY: i64 = 86_400_000;

/// A nightly run of `repo` claiming one slot per `(lane, slot)`.
fn nightly(repo: &str, slots: &[(&str, i64)]) -> NewRun {
    let jobs = slots.iter().map(|(lane, _)| job(lane, &[])).collect();
    let mut run = push("main", "h1", jobs);
    run.repo = repo.into();
    run.trigger = RunTrigger::Nightly;
    run.nightly_slots = slots
        .iter()
        .map(|(lane, slot)| NightlySlot {
            lane: (*lane).into(),
            slot: t(*slot),
        })
        .collect();
    run
}

#[tokio::test]
async fn the_newest_claimed_slot_of_a_lane_is_its_latest_by_time() -> TestResult {
    let fx = Fixture::new()?;
    let store = fx.with_repo().await?;
    assert_eq!(store.last_nightly_slot("app", "bench").await?, None);

    store
        .create_run(&nightly("app", &[("bench", DAY), ("soak", 2 * DAY)]))
        .await?;
    assert_eq!(store.last_nightly_slot("app", "bench").await?, Some(t(DAY)));
    assert_eq!(
        store.last_nightly_slot("app", "soak").await?,
        Some(t(2 * DAY))
    );

    // Claimed later but for an older slot: the newest slot still wins, not the newest claim.
    store
        .create_run(&nightly("app", &[("bench", 3 * DAY)]))
        .await?;
    store
        .create_run(&nightly("app", &[("bench", 2 * DAY)]))
        .await?;
    assert_eq!(
        store.last_nightly_slot("app", "bench").await?,
        Some(t(3 * DAY))
    );
    assert_eq!(store.last_nightly_slot("app", "other").await?, None);
    Ok(())
}

#[tokio::test]
async fn slots_are_per_repository_and_survive_a_restart() -> TestResult {
    let fx = Fixture::new()?;
    let store = fx.with_repo().await?;
    store.add_repo(&repo("lib"), t(0)).await?;
    store.create_run(&nightly("app", &[("bench", DAY)])).await?;
    assert_eq!(store.last_nightly_slot("lib", "bench").await?, None);

    // A refused claim (the slot was taken) records nothing.
    let err = store
        .create_run(&nightly("lib", &[("bench", 5 * DAY), ("bench", 5 * DAY)]))
        .await
        .expect_err("the same slot twice in one run is a duplicate claim");
    assert!(matches!(err, StoreError::Duplicate(_)), "{err:?}");
    assert_eq!(store.last_nightly_slot("lib", "bench").await?, None);
    store.close().await?;

    let store = fx.open().await?;
    assert_eq!(store.last_nightly_slot("app", "bench").await?, Some(t(DAY)));
    Ok(())
}

#[tokio::test]
async fn an_unknown_repository_is_not_found() -> TestResult {
    let fx = Fixture::new()?;
    let store = fx.with_repo().await?;
    let err = store
        .last_nightly_slot("nope", "bench")
        .await
        .expect_err("no such repository");
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    Ok(())
}
