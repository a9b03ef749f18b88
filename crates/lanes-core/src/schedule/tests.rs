use super::*;

const LEASE: u64 = 30_000;

fn spec(id: u64, lane: &str, priority: Priority) -> JobSpec {
    JobSpec {
        id: JobId(id),
        repo: "app".into(),
        run: 7,
        lane: lane.into(),
        priority,
        needs: Vec::new(),
        group: None,
        labels: BTreeSet::new(),
        retries: 2,
    }
}

fn in_group(mut s: JobSpec, group: &str) -> JobSpec {
    s.group = Some(group.into());
    s
}

fn with_labels(mut s: JobSpec, labels: &[&str]) -> JobSpec {
    s.labels = labels.iter().map(|l| (*l).to_owned()).collect();
    s
}

fn needing(mut s: JobSpec, needs: &[(u64, &str)]) -> JobSpec {
    s.needs = needs
        .iter()
        .map(|&(job, lane)| Need {
            job: JobId(job),
            lane: lane.into(),
            state: JobState::Queued,
        })
        .collect();
    s
}

fn agent(name: &str) -> AgentId {
    AgentId(name.into())
}

fn labels(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|l| (*l).to_owned()).collect()
}

/// A scheduler with one online agent `a` of capacity `capacity` and no labels.
fn sched(capacity: u32) -> Scheduler {
    let mut s = Scheduler::new(Config::default());
    s.agent_online(agent("a"), &labels(&[]), capacity);
    s
}

fn add(s: &mut Scheduler, spec: JobSpec) -> Vec<Transition> {
    s.add_job(spec).expect("valid job")
}

fn leased(s: &mut Scheduler, name: &str, now: u64) -> Option<JobId> {
    s.lease(&agent(name), now).map(|l| l.job)
}

fn kinds(ts: &[Transition]) -> Vec<(u64, JobState, Option<&'static str>)> {
    ts.iter()
        .map(|t| (t.job.0, t.to, t.reason.as_ref().map(JobReason::kind)))
        .collect()
}

#[test]
fn serves_manual_then_required_advisory_nightly_and_fifo_within_a_class() {
    let mut s = sched(10);
    add(&mut s, spec(1, "night", Priority::Nightly));
    add(&mut s, spec(2, "adv", Priority::Advisory));
    add(&mut s, spec(3, "req-a", Priority::Required));
    add(&mut s, spec(4, "rerun", Priority::Manual));
    add(&mut s, spec(5, "req-b", Priority::Required));
    let order: Vec<u64> = std::iter::from_fn(|| leased(&mut s, "a", 0))
        .map(|j| j.0)
        .collect();
    assert_eq!(order, [4, 3, 5, 2, 1]);
}

#[test]
fn a_lease_carries_a_fresh_token_and_an_expiry() {
    let mut s = sched(2);
    add(&mut s, spec(1, "x", Priority::Required));
    add(&mut s, spec(2, "y", Priority::Required));
    let first = s.lease(&agent("a"), 100).expect("a job");
    let second = s.lease(&agent("a"), 200).expect("a job");
    assert!(second.token > first.token);
    assert_eq!(first.expires_at, 100 + LEASE);
    assert_eq!(
        first.transition(),
        Transition {
            job: JobId(1),
            from: JobState::Queued,
            to: JobState::Leased,
            reason: None,
            token: Some(first.token),
            agent: Some(agent("a")),
            expires_at: Some(100 + LEASE),
        }
    );
    assert_eq!(s.state(JobId(1)), Some(JobState::Leased));
    assert_eq!(s.next_token(), Token(second.token.0 + 1));
}

#[test]
fn agent_capacity_and_presence_bound_its_leases() {
    let mut s = sched(1);
    for id in 1..=3 {
        add(&mut s, spec(id, "x", Priority::Required));
    }
    assert_eq!(leased(&mut s, "a", 0), Some(JobId(1)));
    assert_eq!(leased(&mut s, "a", 0), None, "capacity 1");
    assert_eq!(leased(&mut s, "nobody", 0), None, "unknown agent");
    s.agent_online(agent("b"), &labels(&[]), 1);
    s.agent_offline(&agent("b"));
    assert_eq!(leased(&mut s, "b", 0), None, "offline agent");
    // An agent going offline keeps its lease: its heartbeats may come back.
    s.agent_offline(&agent("a"));
    let lease = s.lease_of(JobId(1)).expect("still held");
    assert_eq!(s.heartbeat(JobId(1), lease.token, 1_000), Ok(1_000 + LEASE));
    s.agent_online(agent("a"), &labels(&[]), 1);
    assert_eq!(leased(&mut s, "a", 0), None, "still at capacity");
}

#[test]
fn heartbeats_extend_the_lease_and_a_missed_one_requeues_with_agent_lost() {
    let mut s = sched(1);
    add(&mut s, spec(1, "x", Priority::Required));
    let lease = s.lease(&agent("a"), 0).expect("a job");
    assert_eq!(s.heartbeat(JobId(1), lease.token, 20_000), Ok(50_000));
    assert!(s.tick(49_999).is_empty(), "heartbeated until 50 s");
    assert_eq!(s.next_expiry(), Some(50_000));
    let ts = s.tick(50_000);
    assert_eq!(
        ts,
        [Transition {
            job: JobId(1),
            from: JobState::Leased,
            to: JobState::Queued,
            reason: Some(JobReason::AgentLost {
                agent: "a".into(),
                attempt: 1
            }),
            token: Some(lease.token),
            agent: None,
            expires_at: None,
        }]
    );
    assert_eq!(s.state(JobId(1)), Some(JobState::Queued));
    assert_eq!(s.next_expiry(), None);
    assert_eq!(
        leased(&mut s, "a", 50_000),
        Some(JobId(1)),
        "capacity freed"
    );
}

#[test]
fn stale_tokens_are_rejected_after_expiry_requeue_release_and_cancel() {
    let mut s = sched(1);
    add(&mut s, spec(1, "x", Priority::Required));
    let old = s.lease(&agent("a"), 0).expect("a job");
    // Expired, even before a tick requeued it.
    assert_eq!(
        s.heartbeat(JobId(1), old.token, LEASE),
        Err(Rejected::Expired {
            job: JobId(1),
            token: old.token,
            expired_at: LEASE
        })
    );
    s.tick(LEASE);
    assert_eq!(
        s.check(JobId(1), old.token, LEASE),
        Err(Rejected::NotHeld {
            job: JobId(1),
            state: JobState::Queued
        })
    );
    let new = s.lease(&agent("a"), LEASE).expect("leased again");
    assert_eq!(
        s.finished(JobId(1), old.token, JobState::Passed, LEASE + 1),
        Err(Rejected::StaleToken {
            job: JobId(1),
            token: old.token
        })
    );
    assert_eq!(
        s.started(JobId(1), new.token, LEASE + 1)
            .map(|t| t.is_some()),
        Ok(true)
    );
    assert_eq!(
        s.started(JobId(1), new.token, LEASE + 2),
        Ok(None),
        "idempotent"
    );
    // A user requeue makes the holder stale too.
    let requeued = s.requeue(JobId(1)).expect("held");
    assert_eq!(requeued.from, JobState::Running);
    assert_eq!(requeued.token, Some(new.token));
    assert!(s.check(JobId(1), new.token, LEASE + 3).is_err());
    let third = s.lease(&agent("a"), LEASE + 3).expect("leased again");
    let cancelled = s.cancel(&[JobId(1)], JobReason::CancelledByUser);
    assert_eq!(
        kinds(&cancelled),
        [(1, JobState::Cancelled, Some("cancelled-by-user"))]
    );
    assert_eq!(cancelled[0].token, Some(third.token));
    assert_eq!(
        s.heartbeat(JobId(1), third.token, LEASE + 4),
        Err(Rejected::UnknownJob { job: JobId(1) })
    );
    assert_eq!(s.counts(), (0, 0), "ended jobs are forgotten");
}

#[test]
fn a_job_that_went_back_keeps_why_until_it_is_leased_again() {
    let mut s = sched(1);
    add(&mut s, spec(1, "x", Priority::Required));
    add(&mut s, spec(2, "y", Priority::Required));
    s.update_reasons();
    assert_eq!(leased(&mut s, "a", 0), Some(JobId(1)));
    let lost = s.tick(LEASE);
    assert_eq!(kinds(&lost), [(1, JobState::Queued, Some("agent-lost"))]);
    assert!(
        s.update_reasons().is_empty(),
        "agent-lost is not replaced by why it waits now"
    );
    assert_eq!(s.attempts(JobId(1)), Some(1));
    // Leased again: the lease clears it. A user's requeue is kept the same way.
    assert_eq!(leased(&mut s, "a", LEASE), Some(JobId(1)));
    let requeued = s.requeue(JobId(1)).expect("held");
    assert_eq!(requeued.reason, Some(JobReason::Requeued));
    s.agent_offline(&agent("a"));
    assert_eq!(
        kinds(&s.update_reasons()),
        [(2, JobState::Queued, Some("waiting-for-agent"))],
        "only the job that did not go back says why it waits now"
    );
}

#[test]
fn restarts_after_a_crash_use_the_retries_and_a_clean_stop_does_not() {
    let mut s = sched(1);
    add(&mut s, spec(1, "x", Priority::Required));
    for _ in 0..5 {
        assert_eq!(leased(&mut s, "a", 0), Some(JobId(1)));
        let back = s.hand_back(JobId(1)).expect("held");
        assert_eq!(back.reason, Some(JobReason::HandedBack));
        assert_eq!(s.attempts(JobId(1)), Some(0), "a clean stop is no attempt");
    }
    assert_eq!(s.held_by(&agent("a")), []);
    let mut ends = Vec::new();
    for _ in 0..3 {
        assert_eq!(leased(&mut s, "a", 0), Some(JobId(1)));
        assert_eq!(s.held_by(&agent("a")), [JobId(1)]);
        ends.extend(
            s.restarted(JobId(1))
                .into_iter()
                .map(|t| (t.from, t.to, t.reason)),
        );
    }
    let restarted = |attempt| {
        (
            JobState::Leased,
            JobState::Queued,
            Some(JobReason::ForgeRestarted { attempt }),
        )
    };
    assert_eq!(
        ends,
        [
            restarted(1),
            restarted(2),
            restarted(3),
            (
                JobState::Queued,
                JobState::Error,
                Some(JobReason::RetriesExhausted { retries: 2 })
            ),
        ]
    );
    assert_eq!(s.state(JobId(1)), None);
    assert!(
        s.restarted(JobId(1)).is_empty(),
        "an ended job is left alone"
    );
}

#[test]
fn lost_agents_requeue_at_most_retries_times_then_error() {
    let mut s = sched(1);
    add(&mut s, spec(1, "x", Priority::Required));
    let mut now = 0;
    let mut reasons = Vec::new();
    for _ in 0..3 {
        assert_eq!(leased(&mut s, "a", now), Some(JobId(1)));
        now += LEASE;
        reasons.extend(s.tick(now).into_iter().map(|t| (t.to, t.reason)));
    }
    assert_eq!(
        reasons,
        [
            (
                JobState::Queued,
                Some(JobReason::AgentLost {
                    agent: "a".into(),
                    attempt: 1
                })
            ),
            (
                JobState::Queued,
                Some(JobReason::AgentLost {
                    agent: "a".into(),
                    attempt: 2
                })
            ),
            (
                JobState::Error,
                Some(JobReason::RetriesExhausted { retries: 2 })
            ),
        ]
    );
    assert_eq!(s.state(JobId(1)), None);
}

#[test]
fn a_user_requeue_counts_as_an_attempt() {
    let mut s = sched(1);
    let mut one_retry = spec(1, "x", Priority::Required);
    one_retry.retries = 1;
    add(&mut s, one_retry);
    leased(&mut s, "a", 0);
    assert!(s.requeue(JobId(1)).is_some());
    assert!(s.requeue(JobId(1)).is_none(), "queued already");
    leased(&mut s, "a", 0);
    assert_eq!(
        kinds(&s.tick(LEASE)),
        [(1, JobState::Error, Some("retries-exhausted"))]
    );
}

#[test]
fn a_group_limit_holds_and_waiting_jobs_name_the_holders() {
    let mut s = sched(10);
    s.set_group_limit("mac", 2);
    add(&mut s, in_group(spec(1, "ios", Priority::Required), "mac"));
    add(
        &mut s,
        in_group(spec(2, "macos", Priority::Required), "mac"),
    );
    add(&mut s, in_group(spec(3, "watch", Priority::Manual), "mac"));
    add(&mut s, spec(4, "linux", Priority::Nightly));
    assert_eq!(leased(&mut s, "a", 0), Some(JobId(3)));
    assert_eq!(leased(&mut s, "a", 0), Some(JobId(1)));
    assert_eq!(
        leased(&mut s, "a", 0),
        Some(JobId(4)),
        "2 is blocked, 4 is not"
    );
    assert_eq!(leased(&mut s, "a", 0), None);
    assert_eq!(
        s.reason(JobId(2)),
        Some(JobReason::BlockedByGroup {
            group: "mac".into(),
            holders: vec![
                Holder {
                    repo: "app".into(),
                    run: 7,
                    lane: "ios".into()
                },
                Holder {
                    repo: "app".into(),
                    run: 7,
                    lane: "watch".into()
                },
            ],
        })
    );
    let token = s.lease_of(JobId(1)).expect("held").token;
    s.finished(JobId(1), token, JobState::Passed, 1)
        .expect("fresh");
    assert_eq!(leased(&mut s, "a", 1), Some(JobId(2)));
}

#[test]
fn a_group_without_a_limit_runs_one_at_a_time_and_limit_zero_pauses_it() {
    let mut s = sched(10);
    add(&mut s, in_group(spec(1, "a", Priority::Required), "g"));
    add(&mut s, in_group(spec(2, "b", Priority::Required), "g"));
    add(&mut s, in_group(spec(3, "c", Priority::Required), "paused"));
    s.set_group_limit("paused", 0);
    assert_eq!(leased(&mut s, "a", 0), Some(JobId(1)));
    assert_eq!(leased(&mut s, "a", 0), None);
    assert_eq!(
        s.reason(JobId(3)),
        Some(JobReason::BlockedByGroup {
            group: "paused".into(),
            holders: vec![]
        })
    );
}

#[test]
fn an_agent_must_have_every_label_of_the_job() {
    let mut s = Scheduler::new(Config::default());
    s.agent_online(agent("linux"), &labels(&["linux"]), 5);
    add(
        &mut s,
        with_labels(spec(1, "ios", Priority::Manual), &["mac", "arm"]),
    );
    add(
        &mut s,
        with_labels(spec(2, "test", Priority::Required), &["linux"]),
    );
    assert_eq!(
        s.reason(JobId(1)),
        Some(JobReason::WaitingForAgent {
            labels: vec!["arm".into(), "mac".into()]
        })
    );
    assert_eq!(
        leased(&mut s, "linux", 0),
        Some(JobId(2)),
        "1 is first but needs a mac"
    );
    s.agent_online(agent("intel"), &labels(&["mac"]), 1);
    assert_eq!(leased(&mut s, "intel", 0), None);
    assert!(matches!(
        s.reason(JobId(1)),
        Some(JobReason::WaitingForAgent { .. })
    ));
    s.agent_online(agent("m1"), &labels(&["arm", "mac", "fast"]), 0);
    assert_eq!(
        s.reason(JobId(1)),
        Some(JobReason::WaitingForCapacity),
        "a connected agent has the labels but no room"
    );
    s.agent_online(agent("m1"), &labels(&["arm", "mac", "fast"]), 1);
    assert_eq!(leased(&mut s, "m1", 0), Some(JobId(1)));
}

#[test]
fn a_job_waits_for_its_needs_to_pass() {
    let mut s = sched(10);
    add(&mut s, spec(1, "fmt", Priority::Required));
    add(&mut s, spec(2, "lint", Priority::Required));
    add(
        &mut s,
        needing(
            spec(3, "test", Priority::Manual),
            &[(1, "fmt"), (2, "lint")],
        ),
    );
    assert_eq!(
        s.reason(JobId(3)),
        Some(JobReason::WaitingForNeeds {
            lanes: vec!["fmt".into(), "lint".into()]
        })
    );
    let fmt = s.lease(&agent("a"), 0).expect("fmt");
    assert_eq!(fmt.job, JobId(1), "3 comes first but waits");
    let passed = s
        .finished(JobId(1), fmt.token, JobState::Passed, 1)
        .expect("fresh");
    assert_eq!(kinds(&passed), [(1, JobState::Passed, None)]);
    assert_eq!(
        s.reason(JobId(3)),
        Some(JobReason::WaitingForNeeds {
            lanes: vec!["lint".into()]
        })
    );
    let lint = s.lease(&agent("a"), 1).expect("lint");
    s.finished(JobId(2), lint.token, JobState::Passed, 2)
        .expect("fresh");
    assert_eq!(leased(&mut s, "a", 2), Some(JobId(3)));
}

#[test]
fn a_need_that_does_not_pass_skips_its_dependents_transitively() {
    let mut s = sched(10);
    // 1 <- 2 <- 3, 1 <- 4, and 5 independent.
    add(&mut s, spec(1, "build", Priority::Required));
    add(
        &mut s,
        needing(spec(2, "test", Priority::Required), &[(1, "build")]),
    );
    add(
        &mut s,
        needing(spec(3, "deploy", Priority::Required), &[(2, "test")]),
    );
    add(
        &mut s,
        needing(spec(4, "docs", Priority::Required), &[(1, "build")]),
    );
    add(&mut s, spec(5, "fmt", Priority::Required));
    let build = s.lease(&agent("a"), 0).expect("build");
    let ts = s
        .finished(JobId(1), build.token, JobState::TimedOut, 1)
        .expect("fresh");
    assert_eq!(
        kinds(&ts),
        [
            (1, JobState::TimedOut, None),
            (2, JobState::Skipped, Some("need-failed")),
            (4, JobState::Skipped, Some("need-failed")),
            (3, JobState::Skipped, Some("need-failed")),
        ]
    );
    assert_eq!(
        ts[3].reason,
        Some(JobReason::NeedFailed {
            lane: "test".into()
        })
    );
    assert_eq!(ts[3].from, JobState::Queued);
    assert_eq!(s.counts(), (1, 0));
    assert_eq!(leased(&mut s, "a", 1), Some(JobId(5)));
}

#[test]
fn cancelling_skips_dependents_unless_they_are_cancelled_too() {
    let mut s = sched(10);
    add(&mut s, spec(1, "build", Priority::Required));
    add(
        &mut s,
        needing(spec(2, "test", Priority::Required), &[(1, "build")]),
    );
    add(
        &mut s,
        needing(spec(3, "e2e", Priority::Required), &[(1, "build")]),
    );
    let build = s.lease(&agent("a"), 0).expect("build");
    let ts = s.cancel(
        &[JobId(1), JobId(3), JobId(99)],
        JobReason::Superseded { by: 8 },
    );
    assert_eq!(
        kinds(&ts),
        [
            (1, JobState::Cancelled, Some("superseded")),
            (3, JobState::Cancelled, Some("superseded")),
            (2, JobState::Skipped, Some("need-failed")),
        ]
    );
    assert_eq!(ts[0].from, JobState::Leased);
    assert_eq!(ts[0].token, Some(build.token));
    assert!(s.cancel(&[JobId(1)], JobReason::CancelledByUser).is_empty());
    assert_eq!(leased(&mut s, "a", 0), None);
}

#[test]
fn a_job_whose_ended_need_did_not_pass_is_skipped_when_added() {
    let mut s = sched(10);
    let mut rerun = spec(9, "test", Priority::Manual);
    rerun.needs = vec![
        Need {
            job: JobId(1),
            lane: "fmt".into(),
            state: JobState::Passed,
        },
        Need {
            job: JobId(2),
            lane: "build".into(),
            state: JobState::Failed,
        },
    ];
    let ts = add(&mut s, rerun.clone());
    assert_eq!(kinds(&ts), [(9, JobState::Skipped, Some("need-failed"))]);
    assert_eq!(
        ts[0].reason,
        Some(JobReason::NeedFailed {
            lane: "build".into()
        })
    );
    rerun.id = JobId(10);
    rerun.needs.pop();
    assert!(add(&mut s, rerun).is_empty(), "its ended need passed");
    assert_eq!(leased(&mut s, "a", 0), Some(JobId(10)));
}

#[test]
fn inconsistent_jobs_are_refused_without_a_trace() {
    let mut s = sched(10);
    add(&mut s, spec(1, "x", Priority::Required));
    assert_eq!(
        s.add_job(spec(1, "x", Priority::Required)),
        Err(InvalidJob::Duplicate { job: JobId(1) })
    );
    assert_eq!(
        s.add_job(needing(spec(2, "y", Priority::Required), &[(5, "gone")])),
        Err(InvalidJob::UnknownNeed {
            job: JobId(2),
            need: JobId(5),
            state: JobState::Queued
        })
    );
    assert_eq!(s.state(JobId(2)), None);
    assert_eq!(s.counts(), (1, 0));
}

#[test]
fn finishing_takes_outcomes_only() {
    let mut s = sched(1);
    add(&mut s, spec(1, "x", Priority::Required));
    let lease = s.lease(&agent("a"), 0).expect("x");
    for state in [
        JobState::Queued,
        JobState::Running,
        JobState::Skipped,
        JobState::Cancelled,
    ] {
        assert_eq!(
            s.finished(JobId(1), lease.token, state, 1),
            Err(Rejected::NotAnOutcome { state })
        );
    }
    assert!(
        s.finished(JobId(1), lease.token, JobState::Error, 1)
            .is_ok()
    );
}

#[test]
fn update_reasons_reports_only_what_changed() {
    let mut s = Scheduler::new(Config::default());
    add(&mut s, spec(1, "a", Priority::Required));
    add(
        &mut s,
        needing(spec(2, "b", Priority::Required), &[(1, "a")]),
    );
    assert_eq!(
        kinds(&s.update_reasons()),
        [
            (1, JobState::Queued, Some("waiting-for-agent")),
            (2, JobState::Queued, Some("waiting-for-needs")),
        ]
    );
    assert!(s.update_reasons().is_empty());
    s.agent_online(agent("a"), &labels(&[]), 0);
    let ts = s.update_reasons();
    assert_eq!(
        kinds(&ts),
        [(1, JobState::Queued, Some("waiting-for-capacity"))]
    );
    assert_eq!(ts[0].from, JobState::Queued);
    assert_eq!(s.reason(JobId(1)), Some(JobReason::WaitingForCapacity));
}

#[test]
fn restore_keeps_leases_and_groups_and_tokens_only_grow() {
    let mut s = sched(4);
    s.set_group_limit("mac", 1);
    add(&mut s, in_group(spec(1, "ios", Priority::Required), "mac"));
    add(
        &mut s,
        in_group(spec(2, "macos", Priority::Required), "mac"),
    );
    add(
        &mut s,
        needing(spec(3, "ship", Priority::Required), &[(1, "ios")]),
    );
    let lease = s.lease(&agent("a"), 0).expect("ios");
    // The database's view of the open jobs, read back after a restart 40 s later.
    let restored = vec![
        RestoredJob {
            spec: needing(spec(3, "ship", Priority::Required), &[(1, "ios")]),
            state: JobState::Queued,
            attempts: 0,
            reason: None,
            lease: None,
        },
        RestoredJob {
            spec: in_group(spec(1, "ios", Priority::Required), "mac"),
            state: JobState::Running,
            attempts: 1,
            reason: None,
            lease: Some(lease.clone()),
        },
        RestoredJob {
            spec: in_group(spec(2, "macos", Priority::Required), "mac"),
            state: JobState::Queued,
            attempts: 0,
            reason: None,
            lease: None,
        },
    ];
    let now = 40_000;
    let (mut s, ts) =
        Scheduler::restore(Config::default(), restored, Token(1), now).expect("consistent");
    assert_eq!(
        ts,
        [Transition {
            job: JobId(1),
            from: JobState::Running,
            to: JobState::Running,
            reason: None,
            token: Some(lease.token),
            agent: None,
            expires_at: Some(now + LEASE),
        }],
        "the downtime does not expire the lease"
    );
    assert!(s.next_token() > lease.token, "tokens never go back");
    s.set_group_limit("mac", 1);
    s.agent_online(agent("a"), &labels(&[]), 4);
    assert_eq!(
        leased(&mut s, "a", now),
        None,
        "2 blocked by 1, 3 waits for 1"
    );
    assert!(matches!(
        s.reason(JobId(2)),
        Some(JobReason::BlockedByGroup { .. })
    ));
    assert!(s.check(JobId(1), lease.token, now + 1).is_ok());
    let ts = s
        .finished(JobId(1), lease.token, JobState::Passed, now + 1)
        .expect("the restored lease is live");
    assert_eq!(kinds(&ts), [(1, JobState::Passed, None)]);
    assert_eq!(leased(&mut s, "a", now + 1), Some(JobId(2)));
    assert_eq!(leased(&mut s, "a", now + 1), Some(JobId(3)));
}

#[test]
fn restore_skips_jobs_whose_ended_need_failed_and_refuses_bad_rows() {
    let mut queued = spec(2, "test", Priority::Required);
    queued.needs = vec![Need {
        job: JobId(1),
        lane: "build".into(),
        state: JobState::Cancelled,
    }];
    let row = |spec, state, lease| RestoredJob {
        spec,
        state,
        attempts: 0,
        reason: None,
        lease,
    };
    let (s, ts) = Scheduler::restore(
        Config::default(),
        vec![row(queued, JobState::Queued, None)],
        Token(5),
        0,
    )
    .expect("consistent");
    assert_eq!(kinds(&ts), [(2, JobState::Skipped, Some("need-failed"))]);
    assert_eq!(s.counts(), (0, 0));
    assert_eq!(s.next_token(), Token(5));
    let bad = [
        (
            row(spec(1, "x", Priority::Required), JobState::Passed, None),
            InvalidJob::NotOpen {
                job: JobId(1),
                state: JobState::Passed,
            },
        ),
        (
            row(spec(1, "x", Priority::Required), JobState::Leased, None),
            InvalidJob::MissingLease {
                job: JobId(1),
                state: JobState::Leased,
            },
        ),
    ];
    for (row, error) in bad {
        assert_eq!(
            Scheduler::restore(Config::default(), vec![row], Token(1), 0).map(|_| ()),
            Err(error)
        );
    }
}

#[test]
fn counts_open_jobs_per_run_until_they_end_and_through_requeues() {
    let mut s = sched(10);
    add(&mut s, spec(1, "build", Priority::Required));
    add(
        &mut s,
        needing(spec(2, "test", Priority::Required), &[(1, "build")]),
    );
    let mut other = spec(3, "build", Priority::Required);
    other.run = 8;
    add(&mut s, other);
    assert_eq!(s.open_in_run("app", 7), 2);
    assert_eq!(s.open_in_run("app", 8), 1);
    assert_eq!(s.open_in_run("web", 7), 0);

    let lease = s.lease(&agent("a"), 0).expect("job 1 is ready");
    assert_eq!(lease.job, JobId(1));
    let holder = s.holder(JobId(1)).expect("job 1 is open");
    assert_eq!(
        (holder.repo.as_str(), holder.run, holder.lane.as_str()),
        ("app", 7, "build")
    );
    s.requeue(JobId(1)).expect("job 1 is held");
    assert_eq!(s.attempts(JobId(1)), Some(1));
    assert_eq!(s.open_in_run("app", 7), 2, "a requeue keeps the job open");

    let lease = s.lease(&agent("a"), 0).expect("job 1 again");
    s.started(lease.job, lease.token, 0).expect("held");
    // Job 1 failing skips job 2 (need-failed): both end, and the run has none open.
    s.finished(lease.job, lease.token, JobState::Failed, 1)
        .expect("held");
    assert_eq!(s.open_in_run("app", 7), 0);
    assert_eq!(s.holder(JobId(2)), None);
    assert_eq!(s.open_in_run("app", 8), 1);
}
