//! `lanes status`: a branch's CI status on the forge, and the words every forge command uses for
//! a job's state (its reason, duration and cache use).

use crate::api::{BranchState, Job, Run};
use crate::args::StatusArgs;
use crate::client::block_on;
use crate::commands::select::describe;
use crate::error::{CliError, exit};
use crate::forge::{Forge, Local};
use crate::printer::Printer;
use lanes_api::Lenient;
use lanes_core::Reason;
use lanes_core::job::{JobReason, JobState};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::Path;

pub(crate) fn run(dir: &Path, args: &StatusArgs, printer: &Printer) -> Result<u8, CliError> {
    let local = Local::discover(dir)?;
    let branch = match &args.branch {
        Some(branch) => branch.clone(),
        None => local.current_branch("status")?,
    };
    let (value, status) = block_on(async {
        let forge = Forge::connect(&args.forge, &local).await?;
        forge.branch_status(&branch).await
    })??;
    if let Some(warning) = local_head_warning(&status, &local) {
        printer.err(&warning);
    }
    if args.json {
        printer.json(&value)?;
    } else {
        printer.out(&render(&status))?;
    }
    Ok(exit::SUCCESS)
}

/// A warning when the forge's head for the branch is not the local branch's: the local commits
/// are not pushed yet, or the forge has not read the push.
pub(crate) fn local_head_warning(status: &BranchState, local: &Local) -> Option<String> {
    let local_head = local.branch_head(&status.branch)?;
    let forge_head = status
        .head
        .as_deref()
        .or(status.run.as_ref().map(|r| r.head.as_str()))?;
    if forge_head.eq_ignore_ascii_case(local_head.as_str()) {
        return None;
    }
    Some(format!(
        "warning: the forge has {} at {}, the local branch is at {}\n  help: push the branch if \
         it is not pushed yet; `lanes wait` waits until the forge has run the local head\n",
        status.branch,
        short(forge_head),
        short(local_head.as_str())
    ))
}

/// The text of `lanes status`: a header line, one line per lane that was selected (its newest
/// job), the lanes selection skipped on one line, and an `error` run's diagnostics.
pub(crate) fn render(status: &BranchState) -> String {
    let mut text = String::new();
    let Some(run) = &status.run else {
        let head = match &status.head {
            Some(head) => format!("; head {}", short(head)),
            None => String::new(),
        };
        let _ = writeln!(
            text,
            "{} {}: {} (no run yet{head})",
            status.repo, status.branch, status.status
        );
        return text;
    };
    let mut about = format!("run #{} at {}", run.number, short(&run.head));
    if run.status.name() != status.status.name() {
        let _ = write!(about, ": {}", run.status);
    }
    if let Some(by) = run.superseded_by {
        let _ = write!(about, ", superseded by #{by}");
    }
    let _ = writeln!(
        text,
        "{} {}: {} ({about})",
        status.repo, status.branch, status.status
    );
    text.push_str(&render_jobs(run));
    text.push_str(&render_diagnostics(run));
    text
}

/// One line per lane, its newest job, then the lanes skipped by selection on one line.
pub(crate) fn render_jobs(run: &Run) -> String {
    let mut text = String::new();
    let newest: Vec<&Job> = run
        .lanes()
        .into_iter()
        .filter_map(|lane| run.newest_job(lane))
        .collect();
    let (unselected, shown): (Vec<&Job>, Vec<&Job>) =
        newest.into_iter().partition(|j| is_unselected(j));
    let lane_width = shown.iter().map(|j| j.lane.len()).max().unwrap_or(0);
    let class_width = shown
        .iter()
        .map(|j| j.class.name().len())
        .max()
        .unwrap_or(0);
    let status_width = shown
        .iter()
        .map(|j| j.status.name().len())
        .max()
        .unwrap_or(0);
    for job in &shown {
        let mut details: Vec<String> = Vec::new();
        if let Some(reason) = &job.reason {
            details.push(match reason {
                Lenient::Known(reason) => reason.to_string(),
                Lenient::Unknown(value) => job_reason(value),
            });
        }
        if let Some(cache) = cache_summary(job) {
            details.push(cache);
        }
        if let Some(of) = job.rerun_of {
            details.push(format!("rerun of job {of}"));
        }
        let line = format!(
            "  {:lane_width$}  {:class_width$}  {:status_width$}  {:>6}  {}",
            job.lane,
            job.class,
            job.status,
            duration(job),
            details.join("; ")
        );
        let _ = writeln!(text, "{}", line.trim_end());
    }
    if !unselected.is_empty() {
        let lanes: Vec<String> = unselected
            .iter()
            .map(|j| match j.selection.first() {
                Some(Lenient::Known(reason)) => format!("{} ({})", j.lane, describe(reason)),
                Some(Lenient::Unknown(value)) => {
                    format!("{} ({})", j.lane, selection_reason(value))
                }
                None => j.lane.clone(),
            })
            .collect();
        let _ = writeln!(
            text,
            "skipped {} lane{}: {}",
            unselected.len(),
            plural(unselected.len()),
            lanes.join(", ")
        );
    }
    if run.jobs().is_empty() && run.diagnostics.is_none() {
        text.push_str("  no lanes\n");
    }
    text
}

/// Skipped by selection (no changed path matched, nightly, manual): not worth a line of its
/// own. A lane skipped because a need failed has a reason and keeps its line.
fn is_unselected(job: &Job) -> bool {
    job.status == JobState::Skipped && job.reason.is_none()
}

/// An `error` run's catalog problems, one per line with its location and help.
fn render_diagnostics(run: &Run) -> String {
    let mut text = String::new();
    let Some(diagnostics) = &run.diagnostics else {
        return text;
    };
    let list = &diagnostics.diagnostics;
    let _ = writeln!(
        text,
        "the catalog at {} has {} error{}:",
        short(&run.head),
        list.len(),
        plural(list.len())
    );
    for d in list {
        let mut place = d.file.clone();
        if let Some(line) = d.line {
            let _ = write!(place, ":{line}");
            if let Some(column) = d.column {
                let _ = write!(place, ":{column}");
            }
        }
        let _ = writeln!(text, "  {place}: {} [{}]", d.message, d.code);
        if let Some(help) = &d.help {
            let _ = writeln!(text, "    help: {help}");
        }
    }
    text
}

/// A job's reason in words (docs/api.md's `reason`, lanes-core's [`JobReason`]). A kind this
/// lanes does not know is shown as its name.
pub(crate) fn job_reason(reason: &Value) -> String {
    let Ok(known) = serde_json::from_value::<JobReason>(reason.clone()) else {
        return reason["kind"]
            .as_str()
            .map(|k| k.replace('-', " "))
            .unwrap_or_else(|| reason.to_string());
    };
    known.to_string()
}

/// A selection reason in the words `lanes select` uses. Takes `path` reasons with `pattern`
/// (what lanes-core writes) or `glob` (docs/api.md's example).
fn selection_reason(reason: &Value) -> String {
    let field = |name: &str| reason[name].as_str().unwrap_or_default().to_owned();
    let kind = reason["kind"].as_str().unwrap_or_default();
    let known = match kind {
        "path" | "path-matched" => Some(Reason::Path {
            path: field("path"),
            pattern: reason["pattern"]
                .as_str()
                .or(reason["glob"].as_str())
                .unwrap_or_default()
                .to_owned(),
        }),
        "catalog-changed" => Some(Reason::CatalogChanged {
            path: field("path"),
        }),
        "always" => Some(Reason::Always),
        "needed-by" => Some(Reason::NeededBy {
            lane: field("lane"),
        }),
        "forced" => Some(Reason::Forced),
        "no-matching-path" => Some(Reason::NoMatchingPath),
        "nightly" => Some(Reason::Nightly),
        "manual" => Some(Reason::Manual),
        "requested" => Some(Reason::Requested),
        "not-requested" => Some(Reason::NotRequested),
        "stopped-after-failure" => Some(Reason::StoppedAfterFailure {
            lane: field("lane"),
        }),
        "need-failed" => Some(Reason::NeedFailed {
            lane: field("lane"),
        }),
        "run-cancelled" => Some(Reason::RunCancelled),
        _ => None,
    };
    match known {
        Some(reason) => describe(&reason),
        None => kind.replace('-', " "),
    }
}

/// `2 run, 1 cached, saved 5.4s`, once some step ran or was restored.
fn cache_summary(job: &Job) -> Option<String> {
    if job.steps_run == 0 && job.steps_cached == 0 {
        return None;
    }
    let mut text = format!("{} run, {} cached", job.steps_run, job.steps_cached);
    if job.saved_ms > 0 {
        let _ = write!(text, ", saved {}", format_ms(job.saved_ms));
    }
    Some(text)
}

/// How long the job ran (so far); empty before it started.
fn duration(job: &Job) -> String {
    if job.duration_ms == 0 && job.started_at.is_none() {
        return String::new();
    }
    format_ms(job.duration_ms)
}

/// `0.4s`, `59.9s`, `12m05s`, `1h02m`.
pub(crate) fn format_ms(ms: u64) -> String {
    if ms < 60_000 {
        return format!("{:.1}s", ms as f64 / 1000.0);
    }
    let secs = ms / 1000;
    if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, secs % 3600 / 60)
    }
}

pub(crate) fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reason(value: Value) -> String {
        job_reason(&value)
    }

    #[test]
    fn waiting_reasons_say_what_the_job_waits_for() {
        assert_eq!(
            reason(json!({"kind": "blocked-by-group", "group": "mac",
                          "holders": [{"repo": "app", "run": 12, "lane": "ios-compile"}]})),
            "blocked by group mac, held by app #12 ios-compile"
        );
        assert_eq!(
            reason(
                json!({"kind": "blocked-by-group", "group": "mac", "holders": [
                {"repo": "app", "run": 12, "lane": "ios"}, {"repo": "web", "run": 3, "lane": "e2e"}]})
            ),
            "blocked by group mac, held by app #12 ios, web #3 e2e"
        );
        assert_eq!(
            reason(json!({"kind": "waiting-for-agent", "labels": ["macos"]})),
            "waiting for an agent with labels [macos]"
        );
        assert_eq!(
            reason(json!({"kind": "waiting-for-agent", "labels": ["linux", "gpu"]})),
            "waiting for an agent with labels [linux, gpu]"
        );
        assert_eq!(
            reason(json!({"kind": "waiting-for-capacity"})),
            "waiting for capacity"
        );
        assert_eq!(
            reason(json!({"kind": "waiting-for-needs", "lanes": ["fmt"]})),
            "waiting for fmt"
        );
        assert_eq!(
            reason(json!({"kind": "waiting-for-needs", "lanes": ["fmt", "build"]})),
            "waiting for fmt, build"
        );
    }

    #[test]
    fn requeue_and_ending_reasons_say_what_happened() {
        assert_eq!(
            reason(json!({"kind": "agent-lost", "agent": "mac-1", "attempt": 1})),
            "agent lost (attempt 1)"
        );
        assert_eq!(reason(json!({"kind": "requeued"})), "requeued by a user");
        assert_eq!(
            reason(json!({"kind": "retries-exhausted", "retries": 2})),
            "agent lost again after 2 retries"
        );
        assert_eq!(
            reason(json!({"kind": "need-failed", "lane": "build"})),
            "needs build, which did not pass"
        );
        assert_eq!(
            reason(json!({"kind": "superseded", "by": 5})),
            "superseded by #5"
        );
        assert_eq!(
            reason(json!({"kind": "cancelled-by-user"})),
            "cancelled by a user"
        );
        assert_eq!(
            reason(json!({"kind": "run-aborted", "message": "the catalog failed"})),
            "run aborted: the catalog failed"
        );
        assert_eq!(
            reason(
                json!({"kind": "pin-mismatch", "pin": "tool", "expected": "tool 1.0",
                "found": "tool 2.0"})
            ),
            "pin tool does not match its agent: expected tool 1.0, found tool 2.0"
        );
    }

    #[test]
    fn a_reason_kind_from_a_newer_forge_is_shown_by_name() {
        assert_eq!(
            reason(json!({"kind": "waiting-for-the-moon", "phase": "full"})),
            "waiting for the moon"
        );
    }

    #[test]
    fn selection_reasons_use_the_words_of_lanes_select() {
        assert_eq!(
            selection_reason(&json!({"kind": "no-matching-path"})),
            "no matching path"
        );
        assert_eq!(selection_reason(&json!({"kind": "nightly"})), "nightly");
        assert_eq!(
            selection_reason(&json!({"kind": "path", "path": "src/lib.rs", "pattern": "src/**"})),
            "src/lib.rs matched src/**"
        );
        assert_eq!(
            selection_reason(
                &json!({"kind": "path-matched", "path": "src/lib.rs", "glob": "src/**"})
            ),
            "src/lib.rs matched src/**"
        );
    }

    #[test]
    fn durations_stay_short() {
        assert_eq!(format_ms(0), "0.0s");
        assert_eq!(format_ms(5400), "5.4s");
        assert_eq!(format_ms(59_949), "59.9s");
        assert_eq!(format_ms(725_000), "12m05s");
        assert_eq!(format_ms(3_725_000), "1h02m");
    }

    fn fixture(name: &str) -> BranchState {
        let text = match name {
            "failed" => include_str!("fixtures/status_failed.json"),
            "error" => include_str!("fixtures/status_error.json"),
            "no-run" => include_str!("fixtures/status_no_run.json"),
            _ => unreachable!("no fixture {name}"),
        };
        serde_json::from_str(text).expect("fixture parses")
    }

    #[test]
    fn a_branch_status_shows_each_lane_then_the_skipped_ones() {
        insta::assert_snapshot!(render(&fixture("failed")));
    }

    #[test]
    fn an_error_run_shows_its_diagnostics() {
        insta::assert_snapshot!(render(&fixture("error")));
    }

    #[test]
    fn a_branch_without_a_run_says_so() {
        assert_eq!(
            render(&fixture("no-run")),
            "app feature: pending (no run yet; head 9f8e7d6c5b4a)\n"
        );
    }
}
