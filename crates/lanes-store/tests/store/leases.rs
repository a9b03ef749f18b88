//! Scheduler transitions (compare-and-set) and fenced agent writes.

use crate::common::{Fixture, TestResult, job, lease, moved, one_job, push, t};
use lanes_core::job::{JobReason, JobState};
use lanes_store::{
    CacheUse, JobFinish, JobUpdate, JobWrite, RunStatus, StepRecord, Store, StoreError,
};

fn step(index: u32, status: JobState) -> StepRecord {
    StepRecord {
        index,
        name: format!("step{index}"),
        status,
        cache: CacheUse::Miss,
        key: Some(format!("{index:064x}")),
        duration_ms: Some(1_500),
        saved_ms: None,
        exit_code: Some(0),
        miss: None,
    }
}

#[tokio::test]
async fn a_batch_with_one_stale_from_writes_nothing() -> TestResult {
    let fx = Fixture::new()?;
    let store = fx.with_repo().await?;
    let run = store
        .create_run(&push("main", "h1", vec![job("a", &[]), job("b", &[])]))
        .await?;
    let (a, b) = (run.jobs[0].id, run.jobs[1].id);

    let err = store
        .apply(&[
            lease(a, 1, 2_000, 32_000),
            // `b` is queued, not leased: computed from a state that is gone.
            moved(b, JobState::Leased, JobState::Running, None, 2_000),
        ])
        .await
        .expect_err("stale from");
    assert!(
        matches!(err, StoreError::StateConflict { job, expected: JobState::Leased, found: JobState::Queued } if job == b),
        "{err:?}"
    );
    let a_now = store.job(a).await?;
    assert_eq!(
        a_now.state,
        JobState::Queued,
        "the first update was rolled back"
    );
    assert_eq!(a_now.token, None);
    assert_eq!(store.next_token().await?, 1, "no token was consumed");

    store
        .apply(&[lease(a, 1, 2_000, 32_000), lease(b, 2, 2_000, 32_000)])
        .await?;
    let a_now = store.job(a).await?;
    assert_eq!(
        (a_now.state, a_now.token, a_now.agent.as_deref()),
        (JobState::Leased, Some(1), Some("a1"))
    );
    assert_eq!(a_now.expires_at, Some(t(32_000)));
    assert_eq!(
        a_now.timings.queue_wait_ms,
        Some(1_000),
        "queued at 1,000, leased at 2,000"
    );
    assert_eq!(store.next_token().await?, 3);

    // A racing writer that read `a` as queued cannot overwrite the lease.
    let err = store
        .apply(&[lease(a, 3, 2_100, 32_000)])
        .await
        .expect_err("lost race");
    assert!(matches!(err, StoreError::StateConflict { .. }), "{err:?}");
    assert_eq!(store.job(a).await?.token, Some(1));
    Ok(())
}

#[tokio::test]
async fn a_lease_needs_a_fresh_token_and_its_fields() -> TestResult {
    let fx = Fixture::new()?;
    let store = fx.with_repo().await?;
    let (_, id) = one_job(&store).await?;
    let mut no_agent = lease(id, 1, 2_000, 3_000);
    no_agent.agent = None;
    let err = store.apply(&[no_agent]).await.expect_err("no agent");
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");

    store.apply(&[lease(id, 7, 2_000, 3_000)]).await?;
    store
        .apply(&[moved(
            id,
            JobState::Leased,
            JobState::Queued,
            Some(JobReason::Requeued),
            2_500,
        )])
        .await?;
    let err = store
        .apply(&[lease(id, 7, 2_600, 3_000)])
        .await
        .expect_err("reused token");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn tokens_stay_monotonic_across_reopen() -> TestResult {
    let fx = Fixture::new()?;
    let store = fx.with_repo().await?;
    let (_, id) = one_job(&store).await?;
    store.apply(&[lease(id, 5, 2_000, 3_000)]).await?;
    // No close: the process dies with the store open.
    drop(store);

    let store = fx.open().await?;
    assert_eq!(store.next_token().await?, 6);
    let open = store.open_jobs().await?;
    assert_eq!(open.len(), 1);
    assert_eq!((open[0].state, open[0].token), (JobState::Leased, Some(5)));
    store
        .apply(&[moved(
            id,
            JobState::Leased,
            JobState::Queued,
            Some(JobReason::Requeued),
            4_000,
        )])
        .await?;
    let err = store
        .apply(&[lease(id, 4, 4_100, 9_000)])
        .await
        .expect_err("a token below next_token was handed out before");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    store.apply(&[lease(id, 6, 4_100, 9_000)]).await?;
    assert_eq!(store.next_token().await?, 7);
    Ok(())
}

#[tokio::test]
async fn writes_with_a_stale_token_are_rejected_and_change_nothing() -> TestResult {
    let fx = Fixture::new()?;
    let store = fx.with_repo().await?;
    let (_, id) = one_job(&store).await?;
    store.apply(&[lease(id, 1, 2_000, 30_000)]).await?;
    store.start_job(id, 1, t(2_100)).await?;
    // The agent is declared lost; the job is requeued and leased again with token 2.
    let mut lost = moved(
        id,
        JobState::Running,
        JobState::Queued,
        Some(JobReason::AgentLost {
            agent: "a1".into(),
            attempt: 1,
        }),
        40_000,
    );
    lost.token = Some(1);
    store.apply(&[lost]).await?;
    store.apply(&[lease(id, 2, 41_000, 70_000)]).await?;

    let stale = |e: StoreError| matches!(e, StoreError::StaleToken { token: 1, .. });
    let before = store.job(id).await?;
    assert!(stale(
        store
            .heartbeat(id, 1, t(99_000))
            .await
            .expect_err("heartbeat")
    ));
    assert!(stale(
        store.start_job(id, 1, t(41_500)).await.expect_err("start")
    ));
    assert!(stale(
        store
            .record_step(id, 1, &step(0, JobState::Passed))
            .await
            .expect_err("step")
    ));
    assert!(stale(store.ack_log(id, 1, 0, 10).await.expect_err("log")));
    let finish = JobFinish {
        state: JobState::Passed,
        reason: None,
        at: t(42_000),
        steps: vec![step(0, JobState::Passed)],
        lock_wait_ms: Some(5),
        materialize_ms: Some(7),
    };
    assert!(stale(
        store.finish_job(id, 1, &finish).await.expect_err("finish")
    ));
    assert_eq!(store.job(id).await?, before, "nothing was written");
    assert_eq!(before.attempts, 1);

    // The current holder's writes go through.
    store.heartbeat(id, 2, t(90_000)).await?;
    store.heartbeat(id, 2, t(80_000)).await?;
    assert_eq!(
        store.job(id).await?.expires_at,
        Some(t(90_000)),
        "never shortened"
    );
    store.start_job(id, 2, t(41_500)).await?;
    store.ack_log(id, 2, 0, 10).await?;
    store.finish_job(id, 2, &finish).await?;
    let done = store.job(id).await?;
    assert_eq!(done.state, JobState::Passed);
    assert_eq!(done.expires_at, None);
    assert_eq!(done.steps, finish.steps);
    assert_eq!(
        (done.timings.lock_wait_ms, done.timings.materialize_ms),
        (Some(5), Some(7))
    );
    assert_eq!(done.log_len, 10);
    // Finished: even the last holder's token is stale now.
    assert!(matches!(
        store.heartbeat(id, 2, t(95_000)).await,
        Err(StoreError::StaleToken { token: 2, .. })
    ));
    assert!(matches!(
        store.heartbeat(lanes_store::JobId(999), 2, t(95_000)).await,
        Err(StoreError::NotFound(_))
    ));
    Ok(())
}

#[tokio::test]
async fn a_lost_agent_requeue_loses_to_a_heartbeat_that_landed_first() -> TestResult {
    let fx = Fixture::new()?;
    let store = fx.with_repo().await?;
    let (_, id) = one_job(&store).await?;
    store.apply(&[lease(id, 1, 2_000, 10_000)]).await?;
    // The scheduler saw the lease expire at 10,000 and decides at 11,000; meanwhile the agent's
    // heartbeat extended it to 40,000.
    store.heartbeat(id, 1, t(40_000)).await?;
    let requeue = |at: i64| JobUpdate {
        token: Some(1),
        ..moved(
            id,
            JobState::Leased,
            JobState::Queued,
            Some(JobReason::AgentLost {
                agent: "a1".into(),
                attempt: 1,
            }),
            at,
        )
    };
    let err = store
        .apply(&[requeue(11_000)])
        .await
        .expect_err("the lease was extended");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.job(id).await?.state, JobState::Leased);

    store.apply(&[requeue(40_000)]).await?;
    let job = store.job(id).await?;
    assert_eq!(
        (job.state, job.attempts, job.token),
        (JobState::Queued, 1, None)
    );
    assert_eq!(
        job.reason,
        Some(JobReason::AgentLost {
            agent: "a1".into(),
            attempt: 1
        })
    );
    assert_eq!(job.queued_at, Some(t(40_000)));
    Ok(())
}

#[tokio::test]
async fn a_scheduler_update_with_a_stale_token_is_rejected() -> TestResult {
    let fx = Fixture::new()?;
    let store = fx.with_repo().await?;
    let (_, id) = one_job(&store).await?;
    store.apply(&[lease(id, 3, 2_000, 10_000)]).await?;
    let cancel = JobUpdate {
        token: Some(2),
        ..moved(
            id,
            JobState::Leased,
            JobState::Cancelled,
            Some(JobReason::CancelledByUser),
            3_000,
        )
    };
    let err = store
        .apply(std::slice::from_ref(&cancel))
        .await
        .expect_err("stale token");
    assert!(
        matches!(err, StoreError::StaleToken { token: 2, .. }),
        "{err:?}"
    );
    store
        .apply(&[JobUpdate {
            token: Some(3),
            ..cancel
        }])
        .await?;
    let job = store.job(id).await?;
    assert_eq!(
        (job.state, job.finished_at),
        (JobState::Cancelled, Some(t(3_000)))
    );
    assert!(store.open_jobs().await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_scheduler_transition_persists_as_an_update() -> TestResult {
    use lanes_core::schedule::{AgentId, Token, Transition};
    let fx = Fixture::new()?;
    let store = fx.with_repo().await?;
    let (_, id) = one_job(&store).await?;
    let decision = Transition {
        job: lanes_core::schedule::JobId(u64::try_from(id.0)?),
        from: JobState::Queued,
        to: JobState::Leased,
        reason: None,
        token: Some(Token(4)),
        agent: Some(AgentId("a1".into())),
        expires_at: Some(32_000),
    };
    let update = JobUpdate::from_transition(&decision, t(2_000))?;
    assert_eq!(update, lease(id, 4, 2_000, 32_000));
    store.apply(&[update]).await?;
    let job = store.job(id).await?;
    assert_eq!(
        (job.state, job.token, job.expires_at),
        (JobState::Leased, Some(4), Some(t(32_000)))
    );

    let too_far = Transition {
        expires_at: Some(u64::MAX),
        ..decision
    };
    let err = JobUpdate::from_transition(&too_far, t(2_000)).expect_err("out of range");
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn write_jobs_commits_leases_starts_heartbeats_and_finishes_together_or_not_at_all()
-> TestResult {
    let fx = Fixture::new()?;
    let store = fx.with_repo().await?;
    let run = store
        .create_run(&push(
            "main",
            "h1",
            vec![job("a", &[]), job("b", &[]), job("c", &[])],
        ))
        .await?;
    let (a, b, c) = (run.jobs[0].id, run.jobs[1].id, run.jobs[2].id);
    store.apply(&[lease(a, 1, 1_000, 31_000)]).await?;

    let finish = JobFinish {
        state: JobState::Passed,
        reason: None,
        at: t(5_000),
        steps: vec![step(0, JobState::Passed)],
        lock_wait_ms: Some(3),
        materialize_ms: Some(4),
    };
    store
        .write_jobs(&[
            JobWrite::Start {
                job: a,
                token: 1,
                at: t(2_000),
                mark_run: true,
            },
            JobWrite::Heartbeat {
                job: a,
                token: 1,
                expires_at: t(40_000),
            },
            JobWrite::Apply(lease(b, 2, 3_000, 33_000)),
            JobWrite::Finish {
                job: a,
                token: 1,
                finish,
            },
        ])
        .await?;
    let a_now = store.job(a).await?;
    assert_eq!(a_now.state, JobState::Passed);
    assert_eq!(a_now.started_at, Some(t(2_000)));
    assert_eq!(a_now.finished_at, Some(t(5_000)));
    assert_eq!(a_now.steps.len(), 1);
    let b_now = store.job(b).await?;
    assert_eq!((b_now.state, b_now.token), (JobState::Leased, Some(2)));
    assert_eq!(store.next_token().await?, 3);

    // The second write presents a token `b` does not hold: the lease of `c` before it is not
    // written either.
    let err = store
        .write_jobs(&[
            JobWrite::Apply(lease(c, 3, 6_000, 36_000)),
            JobWrite::Start {
                job: b,
                token: 99,
                at: t(6_000),
                mark_run: true,
            },
        ])
        .await
        .expect_err("a stale token");
    assert!(
        matches!(err, StoreError::StaleToken { job, token: 99 } if job == b),
        "{err:?}"
    );
    let c_now = store.job(c).await?;
    assert_eq!((c_now.state, c_now.token), (JobState::Queued, None));
    assert_eq!(store.job(b).await?.state, JobState::Leased);
    assert_eq!(store.next_token().await?, 3, "no token was consumed");
    store.write_jobs(&[]).await?;

    // One token for two leases of the same batch, or a token handed out before: nothing.
    let d = store
        .add_jobs(run.run.id, &[job("d", &[])], t(7_000))
        .await?[0]
        .id;
    for writes in [
        vec![
            JobWrite::Apply(lease(c, 3, 7_000, 37_000)),
            JobWrite::Apply(lease(d, 3, 7_000, 37_000)),
        ],
        vec![
            JobWrite::Apply(lease(c, 4, 7_000, 37_000)),
            JobWrite::Apply(lease(d, 2, 7_000, 37_000)),
        ],
    ] {
        let err = store.write_jobs(&writes).await.expect_err("a token reused");
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        assert_eq!(store.job(c).await?.state, JobState::Queued);
        assert_eq!(store.next_token().await?, 3);
    }
    store
        .write_jobs(&[
            JobWrite::Apply(lease(d, 5, 7_000, 37_000)),
            JobWrite::Apply(lease(c, 3, 7_000, 37_000)),
        ])
        .await?;
    assert_eq!(
        store.next_token().await?,
        6,
        "past the highest token of the batch"
    );
    Ok(())
}

#[tokio::test]
async fn a_start_makes_a_pending_run_running_once() -> TestResult {
    let fx = Fixture::new()?;
    let store = fx.with_repo().await?;
    let run = store
        .create_run(&push("main", "h1", vec![job("a", &[]), job("b", &[])]))
        .await?;
    let (a, b) = (run.jobs[0].id, run.jobs[1].id);
    assert_eq!(run.run.status, RunStatus::Pending);
    store
        .apply(&[lease(a, 1, 1_000, 31_000), lease(b, 2, 1_000, 31_000)])
        .await?;
    let leased = store.run("app", run.run.number).await?.run;
    assert_eq!(
        (leased.status, leased.started_at),
        (RunStatus::Pending, None),
        "a lease alone does not start the run"
    );
    store.start_job(a, 1, t(2_000)).await?;
    let started = store.run("app", run.run.number).await?.run;
    assert_eq!(
        (started.status, started.started_at),
        (RunStatus::Running, Some(t(2_000)))
    );
    store.start_job(b, 2, t(3_000)).await?;
    let again = store.run("app", run.run.number).await?.run;
    assert_eq!(
        again.started_at,
        Some(t(2_000)),
        "the run started with its first job"
    );
    Ok(())
}
