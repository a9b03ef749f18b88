//! What the API reads: repositories, refs, branches, run lists and run pages.

use crate::common::{Fixture, TestResult, job, lease, push, repo, t};
use lanes_core::explain::{MissKind, MissReason};
use lanes_core::job::{JobReason, JobState, Priority};
use lanes_core::select::Reason;
use lanes_store::{
    CacheUse, JobFinish, JobId, LatestStep, RunFilter, RunRecord, RunStatus, RunUpdate, StepRecord,
    StepTally, Store, StoreError,
};

#[tokio::test]
async fn repositories_and_refs_read_back() -> TestResult {
    let fx = Fixture::new()?;
    let store = fx.with_repo().await?;
    store.add_repo(&repo("lib"), t(5)).await?;
    let err = store.add_repo(&repo("app"), t(6)).await.expect_err("taken");
    assert!(matches!(err, StoreError::Duplicate(_)), "{err:?}");
    let names: Vec<String> = store
        .list_repos()
        .await?
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["app", "lib"]);
    let app = store.repo("app").await?;
    assert_eq!(app.path, repo("app").path);
    assert_eq!(app.remote_url, repo("app").remote_url);
    assert!(matches!(
        store.repo("nope").await,
        Err(StoreError::NotFound(_))
    ));

    assert!(
        store.record_ref("app", "main", "h1", t(10)).await?,
        "new branch"
    );
    assert!(
        !store.record_ref("app", "main", "h1", t(20)).await?,
        "seen before"
    );
    assert!(store.record_ref("app", "main", "h2", t(30)).await?, "moved");
    assert!(store.record_ref("app", "topic", "h9", t(40)).await?);
    let refs = store.refs("app").await?;
    let got: Vec<(&str, &str)> = refs
        .iter()
        .map(|r| (r.branch.as_str(), r.head.as_str()))
        .collect();
    assert_eq!(got, [("main", "h2"), ("topic", "h9")]);
    assert_eq!(refs[0].seen_at, t(30));
    assert!(store.refs("lib").await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn runs_list_newest_first_filtered_and_paged() -> TestResult {
    let fx = Fixture::new()?;
    let store = fx.with_repo().await?;
    store.add_repo(&repo("lib"), t(0)).await?;
    for i in 0..6 {
        let branch = if i % 2 == 0 { "main" } else { "topic" };
        store
            .create_run(&push(branch, &format!("h{i}"), vec![job("build", &[])]))
            .await?;
    }
    let mut lib = push("main", "x", vec![]);
    lib.repo = "lib".into();
    store.create_run(&lib).await?;
    // #2 (topic) passed, #5 (main) failed.
    let numbers =
        |runs: &[lanes_store::RunRecord]| runs.iter().map(|r| r.number).collect::<Vec<_>>();
    let all = store
        .list_runs(&RunFilter {
            repo: Some("app".into()),
            ..RunFilter::default()
        })
        .await?;
    assert_eq!(numbers(&all), [6, 5, 4, 3, 2, 1]);
    let id_of = |n: u64| {
        all.iter()
            .find(|r| r.number == n)
            .map(|r| r.id)
            .ok_or("no run")
    };
    store
        .update_run(
            id_of(2)?,
            &RunUpdate {
                status: Some(RunStatus::Passed),
                finished_at: Some(t(9_000)),
                ..RunUpdate::default()
            },
        )
        .await?;
    let superseded = store
        .update_run(
            id_of(5)?,
            &RunUpdate {
                status: Some(RunStatus::Cancelled),
                superseded_by: Some(6),
                ..RunUpdate::default()
            },
        )
        .await?;
    assert_eq!(
        (superseded.status, superseded.superseded_by),
        (RunStatus::Cancelled, Some(6))
    );

    let main = store
        .list_runs(&RunFilter {
            repo: Some("app".into()),
            branch: Some("main".into()),
            ..RunFilter::default()
        })
        .await?;
    assert_eq!(numbers(&main), [5, 3, 1]);
    let pending = store
        .list_runs(&RunFilter {
            repo: Some("app".into()),
            status: Some(RunStatus::Pending),
            ..RunFilter::default()
        })
        .await?;
    assert_eq!(numbers(&pending), [6, 4, 3, 1]);

    let page1 = store
        .list_runs(&RunFilter {
            repo: Some("app".into()),
            limit: 4,
            ..RunFilter::default()
        })
        .await?;
    let page2 = store
        .list_runs(&RunFilter {
            repo: Some("app".into()),
            limit: 4,
            before: page1.last().map(|r| r.id),
            ..RunFilter::default()
        })
        .await?;
    assert_eq!(
        (numbers(&page1), numbers(&page2)),
        (vec![6, 5, 4, 3], vec![2, 1])
    );
    let everything = store.list_runs(&RunFilter::default()).await?;
    assert_eq!(everything.len(), 7);
    assert_eq!(
        everything[0].repo, "lib",
        "across repositories, newest first"
    );

    let branches = store.branches("app").await?;
    let got: Vec<(&str, Option<u64>)> = branches
        .iter()
        .map(|b| (b.branch.as_str(), b.latest_run.as_ref().map(|r| r.number)))
        .collect();
    assert_eq!(got, [("main", Some(5)), ("topic", Some(6))]);
    store.record_ref("app", "fresh", "h7", t(1)).await?;
    let fresh = store.branches("app").await?;
    assert_eq!(fresh[0].branch, "fresh");
    assert_eq!(
        (fresh[0].head.as_deref(), &fresh[0].latest_run),
        (Some("h7"), &None)
    );
    Ok(())
}

#[tokio::test]
async fn a_reopened_run_is_not_finished() -> TestResult {
    let fx = Fixture::new()?;
    let store = fx.with_repo().await?;
    let run = store
        .create_run(&push("main", "h1", vec![job("build", &[])]))
        .await?
        .run;
    let finish = RunUpdate {
        status: Some(RunStatus::Passed),
        finished_at: Some(t(9_000)),
        ..RunUpdate::default()
    };
    assert_eq!(
        store.update_run(run.id, &finish).await?.finished_at,
        Some(t(9_000))
    );
    let reopened = store
        .update_run(
            run.id,
            &RunUpdate {
                status: Some(RunStatus::Pending),
                reopen: true,
                ..RunUpdate::default()
            },
        )
        .await?;
    assert_eq!(
        (reopened.status, reopened.finished_at),
        (RunStatus::Pending, None),
        "a reopened run is not finished"
    );
    Ok(())
}

#[tokio::test]
async fn a_run_reads_back_with_its_jobs_steps_needs_and_reasons() -> TestResult {
    let fx = Fixture::new()?;
    let store = fx.with_repo().await?;
    let mut docs = job("docs", &[]);
    docs.state = JobState::Skipped;
    docs.reason = None;
    docs.selection = vec![Reason::NoMatchingPath];
    let mut test = job("test", &["fmt"]);
    test.group = Some("mac".into());
    test.reason = Some(JobReason::WaitingForNeeds {
        lanes: vec!["fmt".into()],
    });
    let created = store
        .create_run(&push("main", "h1", vec![test, job("fmt", &[]), docs]))
        .await?;
    let (test_id, fmt_id) = (created.jobs[0].id, created.jobs[1].id);
    store.apply(&[lease(fmt_id, 1, 2_000, 9_000)]).await?;
    store.start_job(fmt_id, 1, t(2_100)).await?;
    let steps = vec![
        StepRecord {
            index: 0,
            name: "check".into(),
            status: JobState::Passed,
            cache: CacheUse::Hit,
            key: Some("ab".repeat(32)),
            duration_ms: Some(12),
            saved_ms: Some(4_000),
            exit_code: None,
            miss: None,
        },
        StepRecord {
            index: 1,
            name: "fmt".into(),
            status: JobState::Passed,
            cache: CacheUse::Disabled,
            key: None,
            duration_ms: Some(300),
            saved_ms: None,
            exit_code: Some(0),
            miss: None,
        },
        StepRecord {
            index: 2,
            name: "lint".into(),
            status: JobState::Failed,
            cache: CacheUse::Miss,
            key: Some("cd".repeat(32)),
            duration_ms: Some(900),
            saved_ms: None,
            exit_code: Some(1),
            miss: Some(MissReason {
                kind: MissKind::Inputs,
                detail: "input src/a.rs added".into(),
            }),
        },
    ];
    store.record_step(fmt_id, 1, &steps[0]).await?;
    store
        .finish_job(
            fmt_id,
            1,
            &JobFinish {
                state: JobState::Passed,
                reason: None,
                at: t(3_000),
                steps: steps.clone(),
                lock_wait_ms: None,
                materialize_ms: Some(40),
            },
        )
        .await?;

    let run = store.run("app", created.run.number).await?;
    // The start made the run running; the rest of it reads back as created.
    assert_eq!(
        run.run,
        RunRecord {
            status: RunStatus::Running,
            started_at: Some(t(2_100)),
            ..created.run.clone()
        }
    );
    assert_eq!(
        (run.run.head.as_str(), run.run.base.as_deref()),
        ("h1", Some("base0"))
    );
    let lanes: Vec<&str> = run.jobs.iter().map(|j| j.lane.as_str()).collect();
    assert_eq!(lanes, ["test", "fmt", "docs"]);
    let [test, fmt, docs] = &run.jobs[..] else {
        return Err("three jobs".into());
    };
    assert_eq!(
        test.needs,
        [fmt_id],
        "needs resolve to job ids, even a later job"
    );
    assert_eq!(test.group.as_deref(), Some("mac"));
    assert_eq!(
        test.reason,
        Some(JobReason::WaitingForNeeds {
            lanes: vec!["fmt".into()]
        })
    );
    assert_eq!(test.selection[0]["kind"], "path");
    assert_eq!((test.run_number, test.repo.as_str()), (1, "app"));
    assert_eq!(test.labels, ["linux"]);
    assert_eq!(test.queued_at, Some(t(1_000)));
    assert_eq!(fmt.steps, steps);
    assert_eq!(
        (fmt.state, fmt.started_at, fmt.finished_at),
        (JobState::Passed, Some(t(2_100)), Some(t(3_000)))
    );
    assert_eq!(fmt.timings.materialize_ms, Some(40));
    assert_eq!(
        (docs.state, docs.queued_at, docs.finished_at),
        (JobState::Skipped, None, Some(t(1_000)))
    );
    assert_eq!(docs.selection[0]["kind"], "no-matching-path");

    let open: Vec<JobId> = store.open_jobs().await?.iter().map(|j| j.id).collect();
    assert_eq!(open, [test_id]);
    // The steps of the jobs that ended (fmt with three steps; docs, skipped at creation, has
    // none), counted with their lane, agent, day and the newest one's miss detail; a limit
    // keeps the newest jobs.
    let mut tallies = store.step_tallies(10).await?;
    tallies.sort_by(|a, b| a.step.cmp(&b.step));
    let latest = LatestStep {
        job: fmt_id,
        repo: "app".into(),
        run_number: 1,
        miss_detail: None,
    };
    let tally =
        |step: &str, cache, passed, miss_kind, saved_ms, miss_detail: Option<&str>| StepTally {
            day: "1970-01-01".into(),
            agent: Some("a1".into()),
            lane: "fmt".into(),
            step: step.into(),
            cache,
            passed,
            miss_kind,
            count: 1,
            saved_ms,
            latest: LatestStep {
                miss_detail: miss_detail.map(str::to_owned),
                ..latest.clone()
            },
        };
    assert_eq!(
        tallies,
        [
            tally("check", CacheUse::Hit, true, None, 4_000, None),
            tally("fmt", CacheUse::Disabled, true, None, 0, None),
            tally(
                "lint",
                CacheUse::Miss,
                false,
                Some(MissKind::Inputs),
                0,
                Some("input src/a.rs added")
            ),
        ]
    );
    assert!(
        store.step_tallies(1).await?.is_empty(),
        "the newest ended job is docs, which has no steps"
    );
    assert!(matches!(
        store.run("app", 99).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.job(JobId(999)).await,
        Err(StoreError::NotFound(_))
    ));

    // A rerun: a new job in the same run pointing at the one it reruns, needing the newest fmt.
    let mut rerun = job("test", &["fmt"]);
    rerun.priority = Priority::Manual;
    rerun.rerun_of = Some(test_id);
    let added = store.add_jobs(run.run.id, &[rerun], t(5_000)).await?;
    assert_eq!(added.len(), 1);
    assert_eq!(
        (added[0].rerun_of, &added[0].needs),
        (Some(test_id), &vec![fmt_id])
    );
    assert!(added[0].id > test_id);
    assert_eq!(store.run("app", 1).await?.jobs.len(), 4);
    Ok(())
}

#[tokio::test]
async fn a_repository_s_default_branch_and_remote_can_change_and_nothing_else_does() -> TestResult {
    let fx = Fixture::new()?;
    let store = fx.with_repo().await?;
    let before = store.repo("app").await?;
    let after = store.update_repo("app", "trunk", None).await?;
    assert_eq!(after.default_branch, "trunk");
    assert_eq!(after.remote_url, None);
    assert_eq!(
        (after.id, &after.path, after.created_at),
        (before.id, &before.path, before.created_at)
    );
    assert_eq!(store.repo("app").await?, after, "stored");
    let err = store
        .update_repo("web", "main", None)
        .await
        .expect_err("no such repository");
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    Ok(())
}
