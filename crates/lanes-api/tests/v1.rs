//! Every v1 document, as the forge sent it when v1 was typed (`tests/fixtures/v1/`), reads with
//! today's types, knows every value in it, and writes back unchanged: a newer lanes still reads
//! what an older forge or agent sends, and the typed server sends what the untyped one did.

use lanes_api::agent::{
    Assignment, Fenced, FinishBody, HostStatus, LogAck, Registered, Registration, SecretsAnswer,
    SecretsRequest, StepBody,
};
use lanes_api::events::{LogChunk, LogEnd};
use lanes_api::forge::{
    Agent, BranchState, BranchSummary, Error, Group, Health, Job, Jobs, RefsChanged, Repo, Run,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::path::PathBuf;

fn fixture(name: &str) -> Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/v1/{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Reads fixture `name` as `T`; `round_trip`: writing it back gives the same document.
fn reads<T: DeserializeOwned + Serialize>(name: &str, round_trip: bool) -> T {
    let value = fixture(name);
    let typed: T = serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let written = serde_json::to_value(&typed).expect("writes");
    if round_trip {
        assert_eq!(written, value, "{name} writes back unchanged");
    }
    typed
}

#[test]
fn the_forge_objects_of_v1_read_and_write_back_unchanged() {
    reads::<Vec<Repo>>("repos", true);
    reads::<Vec<BranchSummary>>("branches", true);
    reads::<BranchState>("branch", true);
    let error_run: BranchState = reads("branch-error", true);
    let diagnostics = error_run
        .run
        .and_then(|r| r.diagnostics)
        .expect("diagnostics");
    assert_eq!(diagnostics.version, 1);
    assert_eq!(diagnostics.diagnostics[1].code, "catalog::unknown-key");
    reads::<Vec<Run>>("runs", true);
    for name in ["run", "run-with-rerun", "run2"] {
        let run: Run = reads(name, true);
        assert!(!run.jobs().is_empty(), "{name} has its jobs");
        for job in run.jobs() {
            assert!(
                job.status.known().is_some() && job.class.known().is_some(),
                "{name}: {job:?}"
            );
            assert!(
                job.selection.iter().all(|r| r.known().is_some()),
                "{name}: {job:?}"
            );
            assert!(
                job.reason.as_ref().is_none_or(|r| r.known().is_some()),
                "{name}: {job:?}"
            );
        }
    }
    reads::<Job>("job", true);
    reads::<Jobs>("rerun-failed", true);
    reads::<Vec<Group>>("groups", true);
    let agents: Vec<Agent> = reads("agents", true);
    assert!(agents.iter().all(|a| a.state.known().is_some()));
    reads::<Health>("health", true);
    reads::<RefsChanged>("refs-changed", true);
    reads::<Error>("error", true);
}

#[test]
fn the_agent_protocol_of_v1_reads() {
    reads::<Registration>("registration", true);
    reads::<Registered>("registered", true);
    let assignment: Assignment = reads("assignment", true);
    assert_eq!(assignment.lease(), std::time::Duration::from_secs(30));
    reads::<Fenced>("fenced", true);
    reads::<StepBody>("step-body", true);
    // An agent that sends no `miss` for a step (an older one) is read as having none.
    let finish: FinishBody = reads("finish-body", false);
    assert_eq!(finish.finish.steps[0].miss, None);
    reads::<HostStatus>("host-status", true);
    reads::<SecretsRequest>("secrets-request", true);
    reads::<SecretsAnswer>("secrets", true);
    reads::<LogAck>("log-ack", true);
    reads::<LogChunk>("log-chunk", true);
    reads::<LogEnd>("log-end", true);
}

#[test]
fn a_request_with_a_field_the_forge_does_not_know_is_refused() {
    let body = serde_json::json!({"token": 4, "extra": 1});
    assert!(serde_json::from_value::<Fenced>(body).is_err());
}

#[test]
fn a_step_status_or_cache_use_from_a_newer_forge_keeps_the_job_readable() {
    let mut job = fixture("job");
    job["steps"] = serde_json::json!([
        {"index": 0, "name": "build", "status": "paused", "cache": "remote-hit", "key": null,
         "duration_ms": null, "saved_ms": null, "exit_code": null, "miss": null}
    ]);
    let read: Job = serde_json::from_value(job).expect("reads");
    assert_eq!(read.steps[0].known(), None);
    assert_eq!(read.steps.len(), 1);
}

#[test]
fn a_group_waiter_says_when_it_was_queued_even_when_that_is_unknown() {
    let waiter = lanes_api::forge::GroupWaiter {
        job: 3,
        repo: "app".into(),
        run: 2,
        lane: "ios".into(),
        queued_at: None,
    };
    assert_eq!(
        serde_json::to_value(&waiter).ok(),
        Some(
            serde_json::json!({"job": 3, "repo": "app", "run": 2, "lane": "ios", "queued_at": null})
        )
    );
}
