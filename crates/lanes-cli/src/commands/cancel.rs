//! `lanes cancel`: cancel a lane's job, or every open job of a run.

use crate::api::{self, Job, Run};
use crate::args::CancelArgs;
use crate::client::block_on;
use crate::commands::status::render_jobs;
use crate::error::{CliError, exit};
use crate::forge::{Forge, Local, lane_job, target_branch};
use crate::printer::Printer;
use std::path::Path;

pub(crate) fn run(dir: &Path, args: &CancelArgs, printer: &Printer) -> Result<u8, CliError> {
    let target = &args.target;
    let local = Local::discover(dir)?;
    let branch = target_branch(target, &local, "cancel")?;
    block_on(async {
        let forge = Forge::connect(&target.forge, &local).await?;
        let client = &forge.client;
        if let Some(lane) = &target.lane {
            let run = forge.chosen_run(branch.as_deref(), target.run).await?;
            let job = lane_job(&run, lane)?;
            let id = job.id.to_string();
            let value = client
                .post_json(client.url(["jobs", id.as_str(), "cancel"]))
                .await?;
            if target.json {
                printer.json(&value)?;
                return Ok(exit::SUCCESS);
            }
            let job: Job = api::read(client, "the cancelled job", &value)?;
            printer.out(&job_line(&forge.repo, run.number, &job))?;
            return Ok(exit::SUCCESS);
        }
        let number = match (target.run, &branch) {
            (Some(number), None) => number,
            _ => {
                forge
                    .chosen_run(branch.as_deref(), target.run)
                    .await?
                    .number
            }
        };
        let number_text = number.to_string();
        let value = client
            .post_json(client.url([
                "repos",
                forge.repo.as_str(),
                "runs",
                number_text.as_str(),
                "cancel",
            ]))
            .await?;
        if target.json {
            printer.json(&value)?;
            return Ok(exit::SUCCESS);
        }
        let run: Run = api::read(client, "the cancelled run", &value)?;
        let mut text = format!(
            "cancelled {} run #{} on {}: {}\n",
            forge.repo, run.number, run.branch, run.status
        );
        text.push_str(&render_jobs(&run));
        printer.out(&text)?;
        Ok(exit::SUCCESS)
    })?
}

/// The job after the cancel: cancelled, or still ending (an agent holding it stops it).
fn job_line(repo: &str, number: u64, job: &Job) -> String {
    if job.status == "cancelled" {
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
    use serde_json::json;

    #[test]
    fn a_cancelled_job_says_so_and_one_still_ending_says_what_it_is() {
        let job: Job =
            serde_json::from_value(json!({"id": 12, "lane": "build", "status": "cancelled"}))
                .expect("job parses");
        assert_eq!(
            job_line("app", 3, &job),
            "cancelled build in app run #3 (job 12)\n"
        );
        let job: Job =
            serde_json::from_value(json!({"id": 12, "lane": "build", "status": "running"}))
                .expect("job parses");
        assert_eq!(
            job_line("app", 3, &job),
            "asked to cancel build in app run #3 (job 12); it is running for now\n"
        );
    }
}
