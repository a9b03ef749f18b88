//! `lanes cancel`: cancel a lane's job, or every open job of a run.

use crate::api::{self, Job, Run};
use crate::args::CancelArgs;
use crate::commands::status::render_jobs;
use crate::error::CliError;
use crate::forge::{Acted, act_on_target};
use crate::printer::Printer;
use std::path::Path;

pub(crate) fn run(dir: &Path, args: &CancelArgs, printer: &Printer) -> Result<u8, CliError> {
    let actions = ("cancel", "cancel");
    act_on_target(
        dir,
        &args.target,
        "cancel",
        actions,
        printer,
        |forge, acted| {
            let client = &forge.client;
            match acted {
                Acted::Job { run, value, .. } => {
                    let job: Job = api::read(client, "the cancelled job", &value)?;
                    Ok(job_line(&forge.repo, run.number, &job))
                }
                Acted::Run { value, .. } => {
                    let run: Run = api::read(client, "the cancelled run", &value)?;
                    let mut text = format!(
                        "cancelled {} run #{} on {}: {}\n",
                        forge.repo, run.number, run.branch, run.status
                    );
                    text.push_str(&render_jobs(&run));
                    Ok(text)
                }
            }
        },
    )
}

/// The job after the cancel: cancelled, or still ending (an agent holding it stops it).
fn job_line(repo: &str, number: u64, job: &Job) -> String {
    if job.status == lanes_core::job::JobState::Cancelled {
        format!(
            "cancelled {} in {repo} run #{number} (job {})\n",
            job.lane, job.id
        )
    } else {
        format!(
            "asked to cancel {} in {repo} run #{number} (job {}); it is {} for now\n",
            job.lane, job.id, job.status
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::docs::job_doc;
    use serde_json::json;

    #[test]
    fn a_cancelled_job_says_so_and_one_still_ending_says_what_it_is() {
        let job: Job = serde_json::from_value(job_doc(
            json!({"id": 12, "lane": "build", "status": "cancelled"}),
        ))
        .expect("job parses");
        assert_eq!(
            job_line("app", 3, &job),
            "cancelled build in app run #3 (job 12)\n"
        );
        let job: Job = serde_json::from_value(job_doc(
            json!({"id": 12, "lane": "build", "status": "running"}),
        ))
        .expect("job parses");
        assert_eq!(
            job_line("app", 3, &job),
            "asked to cancel build in app run #3 (job 12); it is running for now\n"
        );
    }
}
