//! `lanes rerun`: a new job for a lane of a run, or for every job of the run that did not pass.

use crate::api::{self, Job, Jobs};
use crate::args::RerunArgs;
use crate::error::CliError;
use crate::forge::{Acted, act_on_target};
use crate::printer::Printer;
use std::fmt::Write as _;
use std::path::Path;

pub(crate) fn run(dir: &Path, args: &RerunArgs, printer: &Printer) -> Result<u8, CliError> {
    let actions = ("rerun", "rerun-failed");
    act_on_target(
        dir,
        &args.target,
        "rerun",
        actions,
        printer,
        |forge, acted| {
            let client = &forge.client;
            match acted {
                Acted::Job { run, job, value } => {
                    let new: Job = api::read(client, "the new job", &value)?;
                    Ok(format!(
                        "queued {} again in {} run #{}: job {} (rerun of job {})\n",
                        job.lane, forge.repo, run.number, new.id, job.id
                    ))
                }
                Acted::Run { number, value } => {
                    let queued: Jobs = api::read(client, "the rerun jobs", &value)?;
                    Ok(render(&forge.repo, number, &queued.jobs))
                }
            }
        },
    )
}

/// What `rerun-failed` queued, one line per new job.
fn render(repo: &str, number: u64, jobs: &[Job]) -> String {
    if jobs.is_empty() {
        return format!(
            "nothing to rerun in {repo} run #{number}: no job's latest attempt failed\n"
        );
    }
    let mut text = format!(
        "queued {} job{} again in {repo} run #{number}:\n",
        jobs.len(),
        if jobs.len() == 1 { "" } else { "s" }
    );
    let width = jobs.iter().map(|j| j.lane.len()).max().unwrap_or(0);
    for job in jobs {
        let of = match job.rerun_of {
            Some(of) => format!(" (rerun of job {of})"),
            None => String::new(),
        };
        let _ = writeln!(text, "  {:width$}  job {}{of}", job.lane, job.id);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::docs::job_doc;
    use serde_json::json;

    #[test]
    fn the_queued_reruns_are_listed_by_lane() {
        let jobs: Vec<Job> = serde_json::from_value(json!([
            job_doc(json!({"id": 31, "lane": "build", "status": "queued", "rerun_of": 12})),
            job_doc(json!({"id": 32, "lane": "e2e", "status": "queued", "rerun_of": 15})),
        ]))
        .expect("jobs parse");
        assert_eq!(
            render("app", 3, &jobs),
            "queued 2 jobs again in app run #3:\n  build  job 31 (rerun of job 12)\n  e2e    job 32 (rerun of job 15)\n"
        );
        assert_eq!(
            render("app", 3, &[]),
            "nothing to rerun in app run #3: no job's latest attempt failed\n"
        );
    }
}
