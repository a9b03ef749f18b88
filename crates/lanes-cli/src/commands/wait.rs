//! `lanes wait`: poll a branch until the forge has run the awaited head, then show its status.
//!
//! The one rule that matters: never report an older head's run. Until the forge's run is for the
//! awaited head, `lanes wait` keeps waiting ([`decide`]).

use crate::api::{self, BranchState, Run};
use crate::args::WaitArgs;
use crate::client::block_on;
use crate::commands::status::{render, short};
use crate::error::{CliError, exit};
use crate::forge::{Forge, Local};
use crate::printer::Printer;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;

/// The API has no branch event stream: poll.
const POLL: Duration = Duration::from_millis(500);
/// Look through the branch's older runs (for an awaited head the forge has moved past) this
/// often, in polls.
const HISTORY_EVERY: u32 = 10;
/// How long the forge may stay unreachable once the wait has started (a restart of `lanes
/// serve`) before `lanes wait` gives up.
const UNREACHABLE_GRACE: Duration = Duration::from_secs(60);

/// Where the awaited head's run is, from one branch status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// The forge's latest run is for another head, or there is no run yet.
    NotSeen,
    /// The awaited head's run is still going.
    Running,
    /// The awaited head's run is over.
    Finished,
}

/// What the wait waits for once the run is the awaited head's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Until {
    /// The run is over: its status is final and no job is open.
    Finished,
    /// Every required lane's newest job has ended: the branch's status is decided (`--required`).
    Required,
}

/// Whether the branch's latest run is the final word on `awaited` (the forge's own head when
/// `None`). A run for any other head, finished or not, is never an answer.
pub(crate) fn decide(awaited: Option<&str>, status: &BranchState, until: Until) -> Decision {
    let Some(run) = &status.run else {
        return Decision::NotSeen;
    };
    let target = awaited.or(status.head.as_deref()).unwrap_or(&run.head);
    if !run.head.eq_ignore_ascii_case(target) {
        return Decision::NotSeen;
    }
    let over = match until {
        Until::Finished => run.is_finished(),
        Until::Required => {
            run.is_finished()
                || run
                    .lanes()
                    .into_iter()
                    .filter_map(|lane| run.newest_job(lane))
                    .filter(|job| job.class == lanes_core::LaneClass::Required)
                    .all(|job| !job.is_open())
        }
    };
    if over {
        Decision::Finished
    } else {
        Decision::Running
    }
}

/// The newest push run of the awaited head in a newest-first run list: the forge may have moved
/// past it (a later push superseded it) before the wait saw it in the branch status. Nightly and
/// manual runs do not decide a branch's status, so they are not the answer either.
pub(crate) fn run_of_head<'r>(awaited: &str, runs: &'r [Run]) -> Option<&'r Run> {
    runs.iter().find(|r| {
        r.head.eq_ignore_ascii_case(awaited) && r.trigger == lanes_core::run::RunTrigger::Push
    })
}

pub(crate) fn run(dir: &Path, args: &WaitArgs, printer: &Printer) -> Result<u8, CliError> {
    let local = Local::discover(dir)?;
    let branch = match &args.branch {
        Some(branch) => branch.clone(),
        None => local.current_branch("wait")?,
    };
    let timeout = args
        .timeout
        .as_deref()
        .map(|text| {
            lanes_core::parse::parse_duration(text).ok_or_else(|| {
                CliError::usage(
                    format!("invalid duration `{text}`"),
                    "use a number and a unit: 90s, 30m, 1h30m".to_owned(),
                )
            })
        })
        .transpose()?;
    let awaited = match &args.head {
        Some(rev) => Some(resolve_head(&local, rev)?),
        None => local
            .branch_head(&branch)
            .map(|commit| commit.as_str().to_owned()),
    };
    block_on(async {
        let forge = Forge::connect(&args.forge, &local).await?;
        let deadline = timeout.map(|t| Instant::now() + t);
        let waiter = Waiter {
            forge: &forge,
            branch: &branch,
            awaited: awaited.as_deref(),
            until: if args.required {
                Until::Required
            } else {
                Until::Finished
            },
            printer,
            json: args.json,
        };
        waiter.wait(deadline, timeout).await
    })?
}

/// `--head REV`: resolved in the local repository; outside one, only a full commit id will do.
fn resolve_head(local: &Local, rev: &str) -> Result<String, CliError> {
    if let Some(repo) = local.repo() {
        return Ok(repo.resolve(rev)?.as_str().to_owned());
    }
    if rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(rev.to_ascii_lowercase());
    }
    Err(CliError::usage(
        format!("cannot resolve `{rev}` outside a git repository"),
        "pass the full 40-character commit id, or run lanes inside the repository".to_owned(),
    ))
}

struct Waiter<'a> {
    forge: &'a Forge,
    branch: &'a str,
    awaited: Option<&'a str>,
    until: Until,
    printer: &'a Printer,
    json: bool,
}

impl Waiter<'_> {
    async fn wait(
        &self,
        deadline: Option<Instant>,
        timeout: Option<Duration>,
    ) -> Result<u8, CliError> {
        let mut last: Option<(Value, BranchState)> = None;
        let mut noted_unseen = false;
        let mut noted_unreachable = false;
        let mut unreachable_since: Option<Instant> = None;
        let mut checked_repo = false;
        let mut progress = String::new();
        let mut polls: u32 = 0;
        loop {
            match self.forge.branch_status(self.branch).await {
                Ok((value, status)) => {
                    unreachable_since = None;
                    match decide(self.awaited, &status, self.until) {
                        Decision::Finished => return self.finish(&value, &status),
                        Decision::Running => {
                            if let Some(run) = &status.run {
                                let line = progress_line(run);
                                if line != progress {
                                    self.printer.err(&line);
                                    progress = line;
                                }
                            }
                        }
                        Decision::NotSeen => {
                            if let Some(awaited) = self.awaited
                                && polls.is_multiple_of(HISTORY_EVERY)
                                && let Some(code) = self.older_run(awaited, &value, &status).await?
                            {
                                return Ok(code);
                            }
                            if !noted_unseen {
                                self.note_unseen(&status);
                                noted_unseen = true;
                            }
                        }
                    }
                    last = Some((value, status));
                }
                // A branch the forge has not read yet is a 404; so is a repository it does not
                // serve, which would make the wait endless.
                Err(e) if e.api_code() == Some("not-found") && self.awaited.is_some() => {
                    if !checked_repo {
                        let names = crate::forge::repositories(&self.forge.client).await?;
                        if !names.contains(&self.forge.repo) {
                            return Err(e);
                        }
                        checked_repo = true;
                    }
                    if !noted_unseen {
                        self.printer.err(&format!(
                            "the forge has not seen {} yet\n",
                            self.awaited.map(short).unwrap_or_default()
                        ));
                        noted_unseen = true;
                    }
                }
                // Unreachable, or the forge answered that it cannot now (`503 busy` at its
                // limits, `503 unavailable`): worth asking again for a while.
                Err(e)
                    if polls > 0
                        && matches!(
                            e,
                            CliError::Unreachable { .. }
                                | CliError::Forge {
                                    class: lanes_core::ErrorClass::Environment,
                                    ..
                                }
                        ) =>
                {
                    let since = *unreachable_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > UNREACHABLE_GRACE {
                        return Err(e);
                    }
                    if !noted_unreachable {
                        self.printer
                            .err(&format!("warning: {e}; trying again for a minute\n"));
                        noted_unreachable = true;
                    }
                }
                Err(e) => return Err(e),
            }
            polls = polls.saturating_add(1);
            let now = Instant::now();
            if let Some(deadline) = deadline {
                if now >= deadline {
                    return self.timed_out(last.as_ref(), timeout.unwrap_or_default());
                }
                tokio::time::sleep(POLL.min(deadline - now)).await;
            } else {
                tokio::time::sleep(POLL).await;
            }
        }
    }

    fn note_unseen(&self, status: &BranchState) {
        let Some(awaited) = self.awaited else {
            return;
        };
        let now = match &status.run {
            Some(run) => format!(
                " (its latest run, #{}, is for {})",
                run.number,
                short(&run.head)
            ),
            None => String::new(),
        };
        self.printer.err(&format!(
            "the forge has not seen {} yet{now}\n",
            short(awaited)
        ));
    }

    /// The awaited head's run when the forge has already moved past it: the answer if it is over.
    async fn older_run(
        &self,
        awaited: &str,
        branch_value: &Value,
        status: &BranchState,
    ) -> Result<Option<u8>, CliError> {
        let client = &self.forge.client;
        let mut url = client.url(["repos", self.forge.repo.as_str(), "runs"]);
        url.query_pairs_mut()
            .append_pair("branch", self.branch)
            .append_pair("limit", "50");
        let list = client.get_json(url).await?;
        let runs: Vec<Run> = api::read(client, "the run list", &list)?;
        let Some(listed) = run_of_head(awaited, &runs) else {
            return Ok(None);
        };
        if status
            .run
            .as_ref()
            .is_some_and(|r| r.number == listed.number)
        {
            return Ok(None);
        }
        let (run_value, run) = self.forge.run(listed.number).await?;
        let listed_status = BranchState {
            run: Some(run.clone()),
            ..status.clone()
        };
        if decide(Some(awaited), &listed_status, self.until) != Decision::Finished {
            return Ok(None);
        }
        if let Some(latest) = &status.run {
            self.printer.err(&format!(
                "the forge has moved on to {} (run #{}); run #{} is the one for {}\n",
                short(&latest.head),
                latest.number,
                run.number,
                short(awaited)
            ));
        }
        let mut value = branch_value.clone();
        value["status"] = Value::String(run.status.name());
        value["run"] = run_value;
        let older = BranchState {
            // The run's own status word (`cancelled` has no branch status of its own).
            status: serde_json::from_value(Value::String(run.status.name())).unwrap_or(
                lanes_api::Lenient::Unknown(Value::String(run.status.name())),
            ),
            run: Some(run),
            ..status.clone()
        };
        self.finish(&value, &older).map(Some)
    }

    /// Print the final status; 0 if it passed.
    fn finish(&self, value: &Value, status: &BranchState) -> Result<u8, CliError> {
        self.show(value, status)?;
        Ok(if status.status == lanes_core::run::BranchStatus::Passed {
            exit::SUCCESS
        } else {
            exit::FAILED
        })
    }

    fn timed_out(
        &self,
        last: Option<&(Value, BranchState)>,
        timeout: Duration,
    ) -> Result<u8, CliError> {
        let waited = crate::commands::status::format_ms(
            u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        );
        let what = match (last, self.awaited) {
            (Some((_, status)), awaited)
                if decide(awaited, status, self.until) == Decision::Running =>
            {
                let number = status.run.as_ref().map(|r| r.number).unwrap_or_default();
                format!("run #{number} is still going")
            }
            (_, Some(awaited)) => format!("the forge has not run {} yet", short(awaited)),
            (_, None) => "the forge has no run for the branch yet".to_owned(),
        };
        self.printer
            .err(&format!("timed out after {waited}: {what}\n"));
        if let Some((value, status)) = last {
            self.show(value, status)?;
        }
        Ok(exit::TIMED_OUT)
    }

    fn show(&self, value: &Value, status: &BranchState) -> Result<(), CliError> {
        if self.json {
            self.printer.json(value)?;
        } else {
            self.printer.out(&render(status))?;
        }
        Ok(())
    }
}

/// `waiting for run #3 at 1a2b3c4d5e6f: 2 of 5 jobs finished, 1 running`, over each lane's newest
/// job.
fn progress_line(run: &Run) -> String {
    let newest: Vec<&api::Job> = run
        .lanes()
        .into_iter()
        .filter_map(|lane| run.newest_job(lane))
        .collect();
    let finished = newest.iter().filter(|j| !j.is_open()).count();
    let running = newest
        .iter()
        .filter(|j| j.status.known().is_some_and(|s| s.is_held()))
        .count();
    format!(
        "waiting for run #{} at {}: {finished} of {} jobs finished, {running} running\n",
        run.number,
        short(&run.head),
        newest.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::api::docs::run_doc;
    use lanes_core::job::JobState;

    const OLD: &str = "1111111111111111111111111111111111111111";
    const NEW: &str = "2222222222222222222222222222222222222222";

    fn status(head: Option<&str>, run: Option<(&str, &str, &[&str])>) -> BranchState {
        let run = run.map(|(run_head, run_status, jobs)| {
            let jobs: Vec<Value> = jobs
                .iter()
                .enumerate()
                .map(|(i, s)| json!({"id": i, "lane": format!("l{i}"), "status": s}))
                .collect();
            run_doc(json!({"number": 1, "head": run_head, "status": run_status, "jobs": jobs}))
        });
        serde_json::from_value(json!({
            "repo": "app", "branch": "main", "head": head, "status": "running", "run": run
        }))
        .expect("status parses")
    }

    #[test]
    fn an_older_heads_finished_run_is_never_the_answer() {
        let s = status(Some(OLD), Some((OLD, "passed", &["passed"])));
        assert_eq!(decide(Some(NEW), &s, Until::Finished), Decision::NotSeen);
        // The forge has read the new head but not made its run yet: the old run is still latest.
        let s = status(Some(NEW), Some((OLD, "passed", &["passed"])));
        assert_eq!(decide(Some(NEW), &s, Until::Finished), Decision::NotSeen);
        assert_eq!(decide(None, &s, Until::Finished), Decision::NotSeen);
    }

    #[test]
    fn no_run_yet_is_not_seen() {
        assert_eq!(
            decide(Some(NEW), &status(None, None), Until::Finished),
            Decision::NotSeen
        );
        assert_eq!(
            decide(None, &status(Some(NEW), None), Until::Finished),
            Decision::NotSeen
        );
    }

    #[test]
    fn the_awaited_heads_run_is_final_once_its_status_and_every_job_are() {
        let s = status(Some(NEW), Some((NEW, "running", &["passed", "running"])));
        assert_eq!(decide(Some(NEW), &s, Until::Finished), Decision::Running);
        let s = status(Some(NEW), Some((NEW, "failed", &["failed", "skipped"])));
        assert_eq!(decide(Some(NEW), &s, Until::Finished), Decision::Finished);
        // Without an awaited head, the forge's own head is awaited.
        assert_eq!(decide(None, &s, Until::Finished), Decision::Finished);
        // Commit ids compare whatever their case.
        assert_eq!(
            decide(Some(&NEW.to_ascii_uppercase()), &s, Until::Finished),
            Decision::Finished
        );
    }

    #[test]
    fn a_finished_run_with_a_rerun_still_queued_is_not_final() {
        let s = status(Some(NEW), Some((NEW, "failed", &["failed", "queued"])));
        assert_eq!(decide(Some(NEW), &s, Until::Finished), Decision::Running);
        // All jobs over, but the forge has not closed the run yet.
        let s = status(Some(NEW), Some((NEW, "running", &["passed"])));
        assert_eq!(decide(Some(NEW), &s, Until::Finished), Decision::Running);
    }

    #[test]
    fn with_required_the_wait_ends_once_every_required_lanes_newest_job_has() {
        let s: BranchState = serde_json::from_value(json!({
            "repo": "app", "branch": "main", "head": NEW, "status": "passed",
            "run": run_doc(json!({"number": 1, "head": NEW, "status": "running", "jobs": [
                {"id": 1, "lane": "test", "class": "required", "status": "failed"},
                {"id": 2, "lane": "sign", "class": "advisory", "status": "queued"},
                {"id": 3, "lane": "test", "class": "required", "status": "passed", "rerun_of": 1},
            ]}))
        }))
        .expect("status parses");
        assert_eq!(decide(Some(NEW), &s, Until::Finished), Decision::Running);
        assert_eq!(decide(Some(NEW), &s, Until::Required), Decision::Finished);
        // An older head's run is no answer either way.
        assert_eq!(decide(Some(OLD), &s, Until::Required), Decision::NotSeen);
        let mut rerun = s.clone();
        if let Some(run) = rerun.run.as_mut() {
            run.jobs.get_or_insert_default()[2].status = JobState::Queued.into();
        }
        assert_eq!(
            decide(Some(NEW), &rerun, Until::Required),
            Decision::Running
        );
    }

    #[test]
    fn the_newest_push_run_of_the_awaited_head_is_found_in_the_history() {
        let runs: Vec<Run> = serde_json::from_value(json!([
            run_doc(json!({"number": 6, "head": OLD, "status": "passed", "trigger": "manual"})),
            run_doc(json!({"number": 5, "head": NEW, "status": "running", "trigger": "push"})),
            run_doc(json!({"number": 4, "head": OLD, "status": "cancelled", "trigger": "push"})),
            run_doc(json!({"number": 2, "head": OLD, "status": "passed", "trigger": "push"})),
        ]))
        .expect("runs parse");
        assert_eq!(run_of_head(OLD, &runs).map(|r| r.number), Some(4));
        assert_eq!(run_of_head("3333", &runs).map(|r| r.number), None);
    }

    #[test]
    fn progress_counts_each_lanes_newest_job() {
        let run: Run = serde_json::from_value(run_doc(json!({
            "number": 3, "head": NEW, "status": "running", "jobs": [
                {"id": 1, "lane": "a", "status": "failed"},
                {"id": 2, "lane": "b", "status": "running"},
                {"id": 3, "lane": "c", "status": "queued"},
                {"id": 4, "lane": "a", "status": "leased", "rerun_of": 1},
            ]
        })))
        .expect("run parses");
        assert_eq!(
            progress_line(&run),
            "waiting for run #3 at 222222222222: 0 of 3 jobs finished, 2 running\n"
        );
    }
}
