//! Remote agents over the real HTTP agent endpoints: by hand, one request at a time, and as the
//! real agent (`lanes_agent::run_job`) behind an HTTP `Link` whose heartbeats the test can cut.

use lanes_agent::{
    AgentEnv, Assignment, FinishReport, HostStatus, JobEnd, Link, LinkError, Shutdown, StepRecord,
    Stop, run_job,
};
use lanes_testkit::{Forge, Response, http};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// A lane whose one step runs until `release` exists.
fn waiting_catalog(release: &std::path::Path) -> String {
    format!(
        "version = 1\n[lane.wait]\nclass = \"required\"\nstep = [{{ name = \"wait\", run = \
         \"echo waiting; until [ -e {r} ]; do sleep 0.05; done; echo released\" }}]\n",
        r = release.display()
    )
}

/// Registers a remote agent of capacity 1; returns its token.
fn register(forge: &Forge, name: &str) -> String {
    let r = forge.request(
        "POST",
        "/api/v1/agents",
        Some(&format!(r#"{{"name": "{name}", "capacity": 1}}"#)),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["token"].as_str().expect("a token").to_owned()
}

/// Leases a job as the agent of `token`, waiting for one; returns the assignment.
fn lease(forge: &Forge, token: &str) -> Value {
    forge.wait_for("a lease", || {
        let r = forge.request_as(
            "POST",
            "/api/v1/agent/lease?wait_ms=1000",
            None,
            Some(token),
        );
        (r.status == 200).then(|| r.json())
    })
}

fn job_and_token(lease: &Value) -> (u64, u64) {
    (
        lease["job"].as_u64().expect("job"),
        lease["token"].as_u64().expect("token"),
    )
}

/// The agent of `token` reports `job` started.
fn start(forge: &Forge, token: &str, job: u64, lease_token: u64) {
    let r = forge.request_as(
        "POST",
        &format!("/api/v1/agent/jobs/{job}/started"),
        Some(&format!(r#"{{"token": {lease_token}}}"#)),
        Some(token),
    );
    assert_eq!(r.status, 204, "{}", r.text());
}

#[test]
fn a_resend_of_different_bytes_at_an_acknowledged_offset_is_a_conflict() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let catalog = waiting_catalog(&scratch.path().join("never"));
    let forge = Forge::with_args(&catalog, &[], &["--no-local-agent"]);
    let agent = register(&forge, "remote");
    let (job, token) = job_and_token(&lease(&forge, &agent));
    start(&forge, &agent, job, token);
    let append = |offset: u64, bytes: &str| -> Response {
        forge.request_as(
            "POST",
            &format!("/api/v1/agent/jobs/{job}/log?token={token}&offset={offset}"),
            Some(bytes),
            Some(&agent),
        )
    };
    let acknowledged = |r: &Response| {
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["acknowledged"].as_u64().expect("a length")
    };

    assert_eq!(acknowledged(&append(0, "hello\n")), 6);
    assert_eq!(
        acknowledged(&append(0, "hello\n")),
        6,
        "the same bytes again: a resend, nothing written twice"
    );
    let changed = append(0, "HELLO\n");
    assert_eq!(changed.status, 409, "{}", changed.text());
    assert_eq!(changed.json()["error"]["code"], "conflict");
    assert_eq!(
        acknowledged(&append(3, "lo\nworld\n")),
        12,
        "a resend that overlaps the acknowledged bytes with the same ones appends the rest"
    );
    let overlapping = append(9, "LD\nmore\n");
    assert_eq!(overlapping.status, 409, "{}", overlapping.text());
    let log = forge.request("GET", &format!("/api/v1/jobs/{job}/log"), None);
    assert_eq!(log.text(), "hello\nworld\n");
}

#[test]
fn a_requeued_jobs_agent_lost_reason_stays_visible_until_it_is_leased_again() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let catalog = waiting_catalog(&scratch.path().join("never"));
    let forge = Forge::with_args(
        &catalog,
        &[],
        &["--no-local-agent", "--heartbeat", "1s", "--lease", "3s"],
    );
    let agent = register(&forge, "remote");
    let other = register(&forge, "other");
    let (job, token) = job_and_token(&lease(&forge, &agent));
    start(&forge, &agent, job, token);

    // The agent goes silent; a client polls the job as a dashboard would.
    let requeued = forge.wait_for("the lease to expire", || {
        let j = forge.get(&format!("/api/v1/jobs/{job}"));
        (j["status"] == "queued").then_some(j)
    });
    let lost = serde_json::json!({"kind": "agent-lost", "agent": "remote", "attempt": 1});
    assert_eq!(requeued["reason"], lost, "{requeued:#}");
    assert_eq!(requeued["attempts"], 1, "{requeued:#}");

    // Another agent comes online, which has the forge work out every queued job's reason again;
    // the job still says why it went back.
    let status = serde_json::to_string(&HostStatus::default()).expect("JSON");
    let r = forge.request_as("POST", "/api/v1/agent/status", Some(&status), Some(&other));
    assert_eq!(r.status, 204, "{}", r.text());
    for _ in 0..5 {
        let j = forge.get(&format!("/api/v1/jobs/{job}"));
        assert_eq!(j["status"], "queued", "{j:#}");
        assert_eq!(j["reason"], lost, "{j:#}");
        std::thread::sleep(Duration::from_millis(300));
    }

    let again = lease(&forge, &other);
    assert_eq!(again["job"], job);
    let leased = forge.get(&format!("/api/v1/jobs/{job}"));
    assert_eq!(leased["status"], "leased", "{leased:#}");
    assert_eq!(leased["reason"], Value::Null, "{leased:#}");
    assert_eq!(leased["attempts"], 1, "{leased:#}");
}

/// The real agent's side of the agent endpoints, over HTTP. Heartbeats can be refused as if the
/// forge were unreachable.
struct HttpLink {
    addr: String,
    token: String,
    /// How many heartbeats to come are refused (`u32::MAX`: all of them).
    refuse_heartbeats: AtomicU32,
    /// How many were refused.
    refused: AtomicU32,
    /// Created at the first heartbeat the forge takes after one was refused.
    after_outage: Option<PathBuf>,
}

impl HttpLink {
    fn new(forge: &Forge, token: &str) -> HttpLink {
        HttpLink {
            addr: forge.addr.clone(),
            token: token.to_owned(),
            refuse_heartbeats: AtomicU32::new(0),
            refused: AtomicU32::new(0),
            after_outage: None,
        }
    }

    async fn call(&self, method: &str, path: String, body: Vec<u8>) -> Result<Vec<u8>, LinkError> {
        let (addr, token, method) = (self.addr.clone(), self.token.clone(), method.to_owned());
        let answer =
            tokio::task::spawn_blocking(move || http(&addr, &method, &path, &body, Some(&token)))
                .await
                .map_err(|e| LinkError::Unavailable(e.to_string()))?
                .map_err(|e| LinkError::Unavailable(e.to_string()))?;
        match answer.status {
            200..=299 => Ok(answer.body),
            400 | 409 => Err(LinkError::Rejected(answer.text())),
            _ => Err(LinkError::Unavailable(answer.text())),
        }
    }

    async fn fenced(&self, job: u64, what: &str, body: Value) -> Result<(), LinkError> {
        let body = serde_json::to_vec(&body).expect("JSON");
        self.call("POST", format!("/api/v1/agent/jobs/{job}/{what}"), body)
            .await
            .map(drop)
    }
}

impl Link for HttpLink {
    async fn lease(&self, wait: Duration) -> Result<Option<Assignment>, LinkError> {
        let path = format!("/api/v1/agent/lease?wait_ms={}", wait.as_millis());
        let body = self.call("POST", path, Vec::new()).await?;
        if body.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| LinkError::Unavailable(format!("not an assignment: {e}")))
    }

    async fn started(&self, job: u64, token: u64) -> Result<(), LinkError> {
        self.fenced(job, "started", serde_json::json!({"token": token}))
            .await
    }

    async fn heartbeat(&self, job: u64, token: u64) -> Result<(), LinkError> {
        let refuse = self
            .refuse_heartbeats
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
                0 => None,
                u32::MAX => Some(u32::MAX),
                n => Some(n - 1),
            })
            .is_ok();
        if refuse {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(LinkError::Unavailable("connection refused".into()));
        }
        self.fenced(job, "heartbeat", serde_json::json!({"token": token}))
            .await?;
        if let Some(path) = &self.after_outage
            && self.refused.load(Ordering::SeqCst) > 0
        {
            std::fs::write(path, "").expect("write");
        }
        Ok(())
    }

    async fn append_log(
        &self,
        job: u64,
        token: u64,
        offset: u64,
        bytes: Vec<u8>,
    ) -> Result<u64, LinkError> {
        let path = format!("/api/v1/agent/jobs/{job}/log?token={token}&offset={offset}");
        let body = self.call("POST", path, bytes).await?;
        let answer: Value = serde_json::from_slice(&body)
            .map_err(|e| LinkError::Unavailable(format!("not JSON: {e}")))?;
        answer["acknowledged"]
            .as_u64()
            .ok_or_else(|| LinkError::Unavailable(format!("no length in {answer}")))
    }

    async fn secrets(
        &self,
        job: u64,
        token: u64,
        names: Vec<String>,
    ) -> Result<lanes_agent::link::Secrets, LinkError> {
        let body =
            serde_json::to_vec(&serde_json::json!({"token": token, "names": names})).expect("JSON");
        let body = self
            .call("POST", format!("/api/v1/agent/jobs/{job}/secrets"), body)
            .await?;
        let answer: Value = serde_json::from_slice(&body)
            .map_err(|e| LinkError::Unavailable(format!("not JSON: {e}")))?;
        let secrets = answer["secrets"]
            .as_object()
            .ok_or_else(|| LinkError::Unavailable(format!("no secrets in {answer}")))?;
        Ok(secrets
            .iter()
            .map(|(name, a)| {
                let answer = match (a["value"].as_str(), a["refused"].as_str()) {
                    (Some(v), _) => Ok(v.to_owned()),
                    (_, Some(why)) => Err(why.to_owned()),
                    _ => Err(format!("neither value nor refusal: {a}")),
                };
                (name.clone(), answer)
            })
            .collect())
    }

    async fn step(&self, job: u64, token: u64, step: StepRecord) -> Result<(), LinkError> {
        self.fenced(
            job,
            "steps",
            serde_json::json!({"token": token, "step": step}),
        )
        .await
    }

    async fn host_status(&self, status: HostStatus) -> Result<(), LinkError> {
        let body = serde_json::to_vec(&status).expect("JSON");
        self.call("POST", "/api/v1/agent/status".to_owned(), body)
            .await
            .map(drop)
    }

    async fn finish(&self, job: u64, token: u64, finish: FinishReport) -> Result<(), LinkError> {
        self.fenced(
            job,
            "finish",
            serde_json::json!({"token": token, "finish": finish}),
        )
        .await
    }
}

/// Leases a job through `link` and runs it with the real agent; returns the assignment and how
/// the job ended.
fn run_remote(link: &HttpLink) -> (Assignment, JobEnd) {
    let cache = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let mut env = AgentEnv::open(cache.path().to_owned(), None).expect("the cache opens");
        env.grace = Duration::from_secs(1);
        let assignment = loop {
            if let Ok(Some(assignment)) = link.lease(Duration::from_secs(1)).await {
                break assignment;
            }
        };
        let end = run_job(link, assignment.clone(), &env, &Shutdown::new()).await;
        (assignment, end)
    })
}

#[test]
fn an_agent_keeps_its_job_through_an_outage_longer_than_three_heartbeats_within_a_60s_lease() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let release = scratch.path().join("release");
    let forge = Forge::with_args(
        &waiting_catalog(&release),
        &[],
        &["--no-local-agent", "--heartbeat", "1s", "--lease", "60s"],
    );
    let token = register(&forge, "remote");
    let mut link = HttpLink::new(&forge, &token);
    // Six refused heartbeats span the retries' backoff (0.1 + 0.2 + 0.4 + 0.8 + 1.6 s and
    // more): well past three heartbeats of 1 s, well within the lease. The step ends only
    // once the forge took a heartbeat after the outage.
    link.refuse_heartbeats = AtomicU32::new(6);
    link.after_outage = Some(release);
    let (assignment, end) = run_remote(&link);

    assert_eq!(assignment.lease_ms, 60_000);
    assert_eq!(assignment.heartbeat_ms, 1_000);
    assert_eq!(link.refused.load(Ordering::SeqCst), 6);
    let JobEnd::Finished(finish) = end else {
        panic!("the agent gave the job up: {end:?}\n{}", forge.server_log());
    };
    assert_eq!(finish.state, lanes_core::job::JobState::Passed);
    let job = forge.get(&format!("/api/v1/jobs/{}", assignment.job));
    assert_eq!(job["status"], "passed", "{job:#}");
    assert_eq!(job["attempts"], 0, "{job:#}");
}

#[test]
fn an_agent_gives_its_job_up_when_a_6s_lease_with_2s_heartbeats_runs_out() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let forge = Forge::with_args(
        &waiting_catalog(&scratch.path().join("never")),
        &[],
        &["--no-local-agent", "--heartbeat", "2s", "--lease", "6s"],
    );
    let token = register(&forge, "remote");
    let link = HttpLink::new(&forge, &token);
    link.refuse_heartbeats.store(u32::MAX, Ordering::SeqCst);
    let (assignment, end) = run_remote(&link);

    assert_eq!(assignment.lease_ms, 6_000);
    assert_eq!(assignment.heartbeat_ms, 2_000);
    assert!(
        matches!(&end, JobEnd::Stopped(Stop::LeaseLost(why)) if why.contains("connection refused")),
        "{end:?}"
    );
    // The forge comes to the same conclusion from its side.
    let requeued = forge.wait_for("the lease to expire", || {
        let j = forge.get(&format!("/api/v1/jobs/{}", assignment.job));
        (j["status"] == "queued").then_some(j)
    });
    assert_eq!(requeued["reason"]["kind"], "agent-lost", "{requeued:#}");
    assert_eq!(requeued["attempts"], 1, "{requeued:#}");
}
