//! A laptop and the forge's agents share one step cache: for the same commit on the same
//! machine, the agent's step keys are `lanes fingerprint --head`'s, so what `lanes run --head`
//! recorded is a hit for the agent.

mod common;

use common::{Repo, lanes_in};
use lanes_agent::{
    AgentEnv, Assignment, CacheUse, FinishReport, Link, LinkError, Shutdown, StepRecord, run_job,
};
use lanes_core::job::JobState;
use std::sync::Mutex;
use std::time::Duration;

/// A forge that accepts everything and keeps the step reports.
#[derive(Debug, Default)]
struct Accepting {
    steps: Mutex<Vec<StepRecord>>,
    finished: Mutex<Option<FinishReport>>,
}

impl Link for Accepting {
    async fn lease(&self, _wait: Duration) -> Result<Option<Assignment>, LinkError> {
        Ok(None)
    }

    async fn started(&self, _job: u64, _token: u64) -> Result<(), LinkError> {
        Ok(())
    }

    async fn heartbeat(&self, _job: u64, _token: u64) -> Result<(), LinkError> {
        Ok(())
    }

    async fn append_log(&self, _: u64, _: u64, at: u64, bytes: Vec<u8>) -> Result<u64, LinkError> {
        Ok(at + bytes.len() as u64)
    }

    async fn secrets(
        &self,
        _job: u64,
        _token: u64,
        names: Vec<String>,
    ) -> Result<lanes_agent::link::Secrets, LinkError> {
        Ok(names
            .into_iter()
            .map(|n| (n, Err("this test's forge holds no secrets".to_owned())))
            .collect())
    }

    async fn step(&self, _job: u64, _token: u64, step: StepRecord) -> Result<(), LinkError> {
        if step.status != JobState::Running {
            self.steps.lock().expect("steps").push(step);
        }
        Ok(())
    }

    async fn host_status(&self, _status: lanes_agent::HostStatus) -> Result<(), LinkError> {
        Ok(())
    }

    async fn finish(&self, _job: u64, _token: u64, finish: FinishReport) -> Result<(), LinkError> {
        *self.finished.lock().expect("finish") = Some(finish);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_keys_are_lanes_fingerprints_and_what_lanes_run_recorded_is_a_hit() {
    let repo = Repo::new();
    repo.write(
        "lanes.toml",
        r#"version = 1

[lane.build]
inputs = ["src/**"]
[[lane.build.step]]
name = "read"
run = "cat src/a.txt"
pass-env = ["PATH"]
[[lane.build.step]]
name = "write"
run = "mkdir -p out && cp src/a.txt out/copy.txt"
outputs = ["out/**"]
"#,
    )
    .write("src/a.txt", "alpha\n")
    .write("README.md", "not an input\n");
    let head = repo.commit("initial");
    let cache = tempfile::tempdir().expect("tempdir");
    let cache_dir = cache.path().to_str().expect("utf-8 path");

    let run = lanes_in(
        &repo.path,
        &["run", "build", "--head", &head, "--no-sandbox"],
        &[("LANES_CACHE_DIR", cache_dir)],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);

    // A step's key covers what the step before it left, which lanes fingerprint reads from the
    // cache: ask it once lanes run has recorded the steps.
    let fingerprint = lanes_in(
        &repo.path,
        &["fingerprint", "build", "--head", &head, "--json"],
        &[("LANES_CACHE_DIR", cache_dir)],
    )
    .json();
    let keys: Vec<String> = fingerprint["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["key"].as_str().expect("key").to_owned())
        .collect();
    assert_eq!(keys.len(), 2);

    let forge = Accepting::default();
    let env = AgentEnv::open(cache.path().to_owned(), None).expect("the cache opens");
    let assignment = Assignment {
        job: 1,
        token: 1,
        repo: "demo".into(),
        run: 1,
        lane: "build".into(),
        head: head.clone(),
        git_dir: repo.path.clone(),
        heartbeat_ms: 10_000,
        lease_ms: 30_000,
        log_offset: 0,
    };
    run_job(&forge, assignment, &env, &Shutdown::new()).await;

    let steps = forge.steps.lock().expect("steps").clone();
    let agent_keys: Vec<String> = steps
        .iter()
        .map(|s| s.key.clone().expect("a key"))
        .collect();
    assert_eq!(agent_keys, keys, "the agent's keys are lanes fingerprint's");
    for step in &steps {
        assert_eq!(step.cache, CacheUse::Hit, "{step:?}");
    }
    let finished = forge.finished.lock().expect("finish").clone();
    assert_eq!(finished.map(|f| f.state), Some(JobState::Passed));
}
