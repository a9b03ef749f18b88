//! What the pages have in common: how durations, ages, commits and links are written, and what
//! a job's reason means to an operator. Pure: every function takes `now` when it needs the time.

use jiff::Timestamp;
use lanes_core::job::{JobReason, JobState};
use lanes_store::{JobId, JobRecord, RunRecord};
use serde_json::Value;

/// A link: where and what it says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Link {
    pub(crate) href: String,
    pub(crate) text: String,
}

/// The first 10 hex digits of a commit: enough to tell commits apart on a page.
pub(crate) fn short(sha: &str) -> String {
    sha.get(..10).unwrap_or(sha).to_owned()
}

/// A duration as people read it: `850 ms`, `4.2 s`, `4m 12s`, `1h 3m`.
pub(crate) fn duration(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m {}s", ms / 60_000, (ms / 1000) % 60),
        _ => format!("{}h {}m", ms / 3_600_000, (ms / 60_000) % 60),
    }
}

/// A short duration for compact places: `45s`, `2m`, `3h`, `4d`.
pub(crate) fn compact(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// Milliseconds from `a` to `b`, 0 when `b` is earlier.
pub(crate) fn between(a: Timestamp, b: Timestamp) -> u64 {
    u64::try_from(b.as_millisecond() - a.as_millisecond()).unwrap_or(0)
}

/// How long ago `t` was: `just now`, `2m ago`.
pub(crate) fn ago(t: Timestamp, now: Timestamp) -> String {
    let ms = between(t, now);
    if ms < 5_000 {
        "just now".to_owned()
    } else {
        format!("{} ago", compact(ms))
    }
}

/// A timestamp for a `title` or `<time datetime>`: RFC 3339, seconds.
pub(crate) fn stamp(t: Timestamp) -> String {
    t.round(jiff::Unit::Second)
        .unwrap_or(t)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Percent-encodes `text` for a URL path, keeping `/` (branch names nest like paths).
pub(crate) fn encode_path(text: &str) -> String {
    encode(text, true)
}

/// Percent-encodes `text` for one path segment or a query value.
pub(crate) fn encode_component(text: &str) -> String {
    encode(text, false)
}

fn encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        let plain = byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && byte == b'/');
        if plain {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The page of a branch.
pub(crate) fn branch_href(repo: &str, branch: &str) -> String {
    format!(
        "/{}/branches/{}",
        encode_component(repo),
        encode_path(branch)
    )
}

/// The page of a run.
pub(crate) fn run_href(repo: &str, number: u64) -> String {
    format!("/{}/runs/{number}", encode_component(repo))
}

/// The log page of a lane of a run.
pub(crate) fn lane_href(repo: &str, number: u64, lane: &str) -> String {
    format!(
        "{}/lanes/{}",
        run_href(repo, number),
        encode_component(lane)
    )
}

/// The log page of one attempt (job) of a lane.
pub(crate) fn job_href(job: &JobRecord) -> String {
    attempt_href(&job.repo, job.run_number, &job.lane, job.id)
}

/// The log page of attempt (job) `job` of `lane` in run `number` of `repo`.
pub(crate) fn attempt_href(repo: &str, number: u64, lane: &str, job: JobId) -> String {
    format!("{}?job={job}", lane_href(repo, number, lane))
}

/// How long a run waited before its first job started, and how long it has run: the two
/// halves of "queued 2m · ran 4m".
pub(crate) fn run_phases(run: &RunRecord, now: Timestamp) -> (String, String) {
    match run.started_at {
        Some(start) => (
            compact(between(run.created_at, start)),
            compact(between(start, run.finished_at.unwrap_or(now))),
        ),
        None if run.status.is_terminal() => (
            compact(between(
                run.created_at,
                run.finished_at.unwrap_or(run.created_at),
            )),
            "—".to_owned(),
        ),
        None => (compact(between(run.created_at, now)), "—".to_owned()),
    }
}

/// From started to finished (or now), as the API's `duration_ms`.
pub(crate) fn job_run_ms(job: &JobRecord, now: Timestamp) -> Option<u64> {
    job.started_at
        .map(|start| between(start, job.finished_at.unwrap_or(now)))
}

/// What a job's reason means, in lanes-core's one wording.
pub(crate) fn reason_text(reason: &JobReason) -> String {
    reason.to_string()
}

/// Why a queued job waits, what holds it, and what an operator could do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Wait {
    pub(crate) message: String,
    /// The message up to the holders, which the page shows as links instead.
    pub(crate) lead: String,
    /// The jobs holding the group it waits for, linked to their runs.
    pub(crate) holders: Vec<Link>,
    pub(crate) advice: Option<String>,
}

/// A queued job that has waited this long gets the advice to look at the agents.
const LONG_WAIT_MS: u64 = 15 * 60_000;

/// The waiting reason of a queued job with an operator's hint; `None` for a job not queued.
pub(crate) fn wait(job: &JobRecord, now: Timestamp) -> Option<Wait> {
    if job.state != JobState::Queued {
        return None;
    }
    let waited = job.queued_at.map_or(0, |q| between(q, now));
    let long = waited >= LONG_WAIT_MS;
    let mut lead = String::new();
    let (message, holders, advice) = match &job.reason {
        Some(JobReason::BlockedByGroup { group, holders }) => (
            {
                lead = format!("blocked by group {group}, held by");
                format!(
                    "blocked by group {group}, held by {}",
                    if holders.is_empty() {
                        "no job it knows of".to_owned()
                    } else {
                        holders
                            .iter()
                            .map(|h| format!("run #{} lane {}", h.run, h.lane))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                )
            },
            holders
                .iter()
                .map(|h| Link {
                    href: lane_href(&h.repo, h.run, &h.lane),
                    text: format!("run #{} lane {}", h.run, h.lane),
                })
                .collect(),
            long.then(|| {
                format!(
                    "queued for {}: the holder may be stuck, see /groups",
                    compact(waited)
                )
            }),
        ),
        Some(JobReason::WaitingForAgent { labels }) => (
            format!("no online agent has labels [{}]", labels.join(", ")),
            Vec::new(),
            Some("start or register an agent with these labels (see /agents)".to_owned()),
        ),
        Some(reason) => (
            reason_text(reason),
            Vec::new(),
            long.then(|| format!("queued for {}: check agents", compact(waited))),
        ),
        None => (
            "queued".to_owned(),
            Vec::new(),
            long.then(|| format!("queued for {}: check agents", compact(waited))),
        ),
    };
    Some(Wait {
        message,
        lead,
        holders,
        advice,
    })
}

/// Why selection picked or skipped a lane, one sentence per stored reason, in lanes-core's one
/// wording; a kind this lanes does not know is shown by its name.
pub(crate) fn selection_text(selection: &Value) -> Vec<String> {
    let Some(reasons) = selection.as_array() else {
        return Vec::new();
    };
    reasons
        .iter()
        .map(
            |r| match <lanes_core::Reason as serde::Deserialize>::deserialize(r) {
                Ok(reason) if reason.skips() => format!("skipped: {reason}"),
                Ok(reason) => reason.to_string(),
                Err(_) => r["kind"].as_str().unwrap_or("?").replace('-', " "),
            },
        )
        .collect()
}

/// The newest attempt of each lane (a rerun replaces the job it reruns), in lane order of
/// first appearance.
pub(crate) fn latest_attempts(jobs: &[JobRecord]) -> Vec<&JobRecord> {
    let mut out: Vec<&JobRecord> = Vec::new();
    for job in jobs {
        match out.iter_mut().find(|j| j.lane == job.lane) {
            Some(slot) if job.id > slot.id => *slot = job,
            Some(_) => {}
            None => out.push(job),
        }
    }
    out
}

/// A lane's chip: its newest attempt's state, linked to its log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LaneChip {
    pub(crate) lane: String,
    pub(crate) status: &'static str,
    pub(crate) href: String,
    /// How many attempts before this one (reruns and requeues after lost agents).
    pub(crate) reruns: usize,
}

/// The chips of a run's lanes.
pub(crate) fn lane_chips(jobs: &[JobRecord]) -> Vec<LaneChip> {
    latest_attempts(jobs)
        .into_iter()
        .map(|j| LaneChip {
            lane: j.lane.clone(),
            status: j.state.as_str(),
            href: lane_href(&j.repo, j.run_number, &j.lane),
            reruns: jobs.iter().filter(|o| o.lane == j.lane).count() - 1,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lanes_core::job::Holder;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(4_200), "4.2 s");
        assert_eq!(duration(252_000), "4m 12s");
        assert_eq!(duration(3_780_000), "1h 3m");
        assert_eq!(compact(125_000), "2m");
    }

    #[test]
    fn paths_keep_slashes_and_encode_the_rest() {
        assert_eq!(encode_path("feature/a b#c"), "feature/a%20b%23c");
        assert_eq!(encode_component("a/b"), "a%2Fb");
        assert_eq!(branch_href("app", "x/<y>"), "/app/branches/x/%3Cy%3E");
    }

    #[test]
    fn a_group_wait_names_the_holders_and_links_them() {
        let now = Timestamp::from_second(10_000).expect("a time");
        let job = JobRecord {
            id: lanes_store::JobId(5),
            run: lanes_store::RunId(1),
            repo: "app".into(),
            run_number: 13,
            lane: "ios-test".into(),
            class: lanes_core::LaneClass::Required,
            priority: lanes_core::job::Priority::Required,
            state: JobState::Queued,
            reason: Some(JobReason::BlockedByGroup {
                group: "mac".into(),
                holders: vec![Holder {
                    repo: "app".into(),
                    run: 12,
                    lane: "ios-compile".into(),
                }],
            }),
            selection: Value::Null,
            needs: Vec::new(),
            group: Some("mac".into()),
            labels: Vec::new(),
            retries: 2,
            attempts: 0,
            agent: None,
            token: None,
            expires_at: None,
            rerun_of: None,
            queued_at: Some(Timestamp::from_second(10_000 - 16 * 60).expect("a time")),
            leased_at: None,
            started_at: None,
            finished_at: None,
            timings: lanes_store::Timings::default(),
            log_len: 0,
            steps: Vec::new(),
        };
        let w = wait(&job, now).expect("a queued job waits");
        assert_eq!(
            w.message,
            "blocked by group mac, held by run #12 lane ios-compile"
        );
        assert_eq!(w.holders[0].href, "/app/runs/12/lanes/ios-compile");
        assert!(w.advice.is_some_and(|a| a.contains("queued for 16m")));
        let mut agentless = job.clone();
        agentless.reason = Some(JobReason::WaitingForAgent {
            labels: vec!["macos".into()],
        });
        assert_eq!(
            wait(&agentless, now).expect("waits").message,
            "no online agent has labels [macos]"
        );
        let mut other = job;
        other.reason = Some(JobReason::WaitingForCapacity);
        assert_eq!(
            wait(&other, now).expect("waits").advice.as_deref(),
            Some("queued for 16m: check agents")
        );
    }
}
