//! Which repository, branch and commit a forge command is about: its flags, the environment, and
//! the local git repository it runs in; and the reads every forge command shares.
//!
//! The choices themselves ([`choose_repo`]) are pure; the network and git are at the edges.

use crate::api::{self, BranchState, Run};
use crate::args::{ForgeArgs, JobTarget};
use crate::client::{Client, block_on};
use crate::error::{CliError, exit};
use crate::printer::Printer;
use lanes_git::{CommitId, GitError, Repo};
use serde_json::Value;
use std::path::Path;

/// The git repository the command was started in, if any.
#[derive(Debug)]
pub(crate) struct Local {
    repo: Option<Repo>,
}

impl Local {
    /// The repository containing `dir`; none outside a repository.
    pub(crate) fn discover(dir: &Path) -> Result<Local, CliError> {
        match Repo::discover(dir) {
            Ok(repo) => Ok(Local { repo: Some(repo) }),
            Err(GitError::NotARepository { .. }) => Ok(Local { repo: None }),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) fn repo(&self) -> Option<&Repo> {
        self.repo.as_ref()
    }

    /// The name the forge would give this repository: its top-level directory's name, without
    /// `.git` (the rule `lanes serve --repo PATH` names repositories by).
    pub(crate) fn name(&self) -> Option<String> {
        let repo = self.repo.as_ref()?;
        let top = repo.workdir().unwrap_or_else(|| repo.git_dir());
        repo_name(top)
    }

    /// The branch `HEAD` is on, or the error to show when a command needs one and none was
    /// named.
    pub(crate) fn current_branch(&self, command: &str) -> Result<String, CliError> {
        let Some(repo) = &self.repo else {
            return Err(CliError::usage(
                "name the branch: this is not inside a git repository",
                format!("for example `lanes {command} main`"),
            ));
        };
        repo.head_branch()?.ok_or_else(|| {
            CliError::usage(
                "name the branch: HEAD is detached",
                format!("for example `lanes {command} main`"),
            )
        })
    }

    /// The commit the local branch `branch` points at; `None` outside a repository or when it
    /// has no such branch.
    pub(crate) fn branch_head(&self, branch: &str) -> Option<CommitId> {
        let repo = self.repo.as_ref()?;
        let has_branch = repo
            .branches()
            .ok()?
            .into_iter()
            .find(|b| b.name == branch)?;
        Some(has_branch.head)
    }
}

/// A directory's name without `.git`; for a `.git` directory itself, its parent's name.
pub(crate) fn repo_name(dir: &Path) -> Option<String> {
    let mut name = dir.file_name()?.to_str()?;
    if name == ".git" {
        name = dir.parent()?.file_name()?.to_str()?;
    }
    let name = name.strip_suffix(".git").unwrap_or(name);
    (!name.is_empty()).then(|| name.to_owned())
}

/// The repository a command is about, when it was not named: the local repository's name if the
/// forge serves one by that name, else the forge's only repository.
pub(crate) fn choose_repo(local: Option<&str>, available: &[String]) -> Result<String, CliError> {
    if let Some(local) = local
        && available.iter().any(|name| name == local)
    {
        return Ok(local.to_owned());
    }
    match available {
        [] => Err(CliError::usage(
            "the forge serves no repository",
            "start it with `lanes serve --repo PATH`".to_owned(),
        )),
        [only] => Ok(only.clone()),
        many => {
            let here = match local {
                Some(local) => format!(", none of them `{local}`"),
                None => String::new(),
            };
            Err(CliError::usage(
                format!(
                    "which repository? the forge serves {}{here}: {}",
                    many.len(),
                    many.join(", ")
                ),
                "pass --repo NAME or set LANES_REPO".to_owned(),
            ))
        }
    }
}

/// A forge and the repository a command works on.
#[derive(Debug)]
pub(crate) struct Forge {
    pub(crate) client: Client,
    pub(crate) repo: String,
}

impl Forge {
    /// Connect (`--server`, `LANES_SERVER`, `LANES_TOKEN`) and pick the repository: `--repo`
    /// or `LANES_REPO`, else [`choose_repo`] over the forge's list.
    pub(crate) async fn connect(args: &ForgeArgs, local: &Local) -> Result<Forge, CliError> {
        let client = Client::from_env(args.server.as_deref())?;
        let given = args
            .repo
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty());
        let repo = match given {
            Some(name) => name.to_owned(),
            None => {
                let names = repositories(&client).await?;
                choose_repo(local.name().as_deref(), &names)?
            }
        };
        Ok(Forge { client, repo })
    }

    /// The branch's status: the document as the forge sent it, and read.
    pub(crate) async fn branch_status(
        &self,
        branch: &str,
    ) -> Result<(Value, BranchState), CliError> {
        let url = self.client.url(
            ["repos", self.repo.as_str(), "branches"]
                .into_iter()
                .chain(branch.split('/')),
        );
        let value = self.client.get_json(url).await?;
        let status = api::read(&self.client, "the branch status", &value)?;
        Ok((value, status))
    }

    /// Run `number` with its jobs.
    pub(crate) async fn run(&self, number: u64) -> Result<(Value, Run), CliError> {
        let number = number.to_string();
        let url = self
            .client
            .url(["repos", self.repo.as_str(), "runs", number.as_str()]);
        let value = self.client.get_json(url).await?;
        let run = api::read(&self.client, "the run", &value)?;
        Ok((value, run))
    }

    /// The run a command acts on: `--run N`, else the branch's latest run.
    pub(crate) async fn chosen_run(
        &self,
        branch: Option<&str>,
        number: Option<u64>,
    ) -> Result<Run, CliError> {
        if let Some(number) = number {
            let (_, run) = self.run(number).await?;
            if let Some(branch) = branch
                && run.branch != branch
                && !run.branch.is_empty()
            {
                return Err(CliError::usage(
                    format!(
                        "run #{number} of {} is on branch {}, not {branch}",
                        self.repo, run.branch
                    ),
                    format!("leave out --run, or name its branch: {}", run.branch),
                ));
            }
            return Ok(run);
        }
        let branch = branch.expect("callers pass a branch when no run number is given");
        let (_, status) = self.branch_status(branch).await?;
        status.run.ok_or_else(|| {
            CliError::usage(
                format!("{} {branch} has no run yet", self.repo),
                "push a commit to it; `lanes status` shows what the forge has seen".to_owned(),
            )
        })
    }
}

/// The branch `lanes rerun` and `lanes cancel` work on: `BRANCH`, else none with `--run N` (a
/// run number names a run of the repository), else the current branch.
pub(crate) fn target_branch(
    target: &JobTarget,
    local: &Local,
    command: &str,
) -> Result<Option<String>, CliError> {
    match (&target.branch, target.run) {
        (Some(branch), _) => Ok(Some(branch.clone())),
        (None, Some(_)) => Ok(None),
        (None, None) => local.current_branch(command).map(Some),
    }
}

/// What `lanes rerun` or `lanes cancel` asked the forge to do, and its answer.
pub(crate) enum Acted {
    /// `--lane`: the lane's newest job in `run` (as it was before the request).
    Job {
        run: Run,
        job: api::Job,
        value: Value,
    },
    /// The whole run `number`.
    Run { number: u64, value: Value },
}

/// `lanes rerun` and `lanes cancel`: pick the target ([`target_branch`], `--lane`, `--run`),
/// post `jobs/ID/{job_action}` for a lane's newest job or `repos/R/runs/N/{run_action}` for a
/// run, and print the forge's answer with `--json`, else the text `describe` makes of it.
pub(crate) fn act_on_target(
    dir: &Path,
    target: &JobTarget,
    command: &str,
    (job_action, run_action): (&str, &str),
    printer: &Printer,
    describe: impl FnOnce(&Forge, Acted) -> Result<String, CliError>,
) -> Result<u8, CliError> {
    let local = Local::discover(dir)?;
    let branch = target_branch(target, &local, command)?;
    block_on(async {
        let forge = Forge::connect(&target.forge, &local).await?;
        let client = &forge.client;
        let acted = if let Some(lane) = &target.lane {
            let run = forge.chosen_run(branch.as_deref(), target.run).await?;
            let job = lane_job(&run, lane)?.clone();
            let id = job.id.to_string();
            let value = client
                .post_json(client.url(["jobs", id.as_str(), job_action]))
                .await?;
            Acted::Job { run, job, value }
        } else {
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
                    run_action,
                ]))
                .await?;
            Acted::Run { number, value }
        };
        if target.json {
            let (Acted::Job { value, .. } | Acted::Run { value, .. }) = &acted;
            printer.json(value)?;
            return Ok(exit::SUCCESS);
        }
        printer.out(&describe(&forge, acted)?)?;
        Ok(exit::SUCCESS)
    })?
}

/// The names of the forge's repositories.
pub(crate) async fn repositories(client: &Client) -> Result<Vec<String>, CliError> {
    let value = client.get_json(client.url(["repos"])).await?;
    let repos: Vec<api::Repo> = api::read(client, "the repository list", &value)?;
    Ok(repos.into_iter().map(|r| r.name).collect())
}

/// The newest job of `lane` in `run`, or an error naming the lanes it has.
pub(crate) fn lane_job<'r>(run: &'r Run, lane: &str) -> Result<&'r api::Job, CliError> {
    run.newest_job(lane).ok_or_else(|| {
        let lanes = run.lanes();
        CliError::usage(
            format!("run #{} has no lane `{lane}`", run.number),
            if lanes.is_empty() {
                "it has no jobs".to_owned()
            } else {
                format!("lanes: {}", lanes.join(", "))
            },
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_local_repository_wins_when_the_forge_serves_it() {
        let available = names(&["app", "web"]);
        assert_eq!(choose_repo(Some("web"), &available).expect("chosen"), "web");
    }

    #[test]
    fn the_only_repository_is_chosen_whatever_the_local_one_is() {
        let available = names(&["app"]);
        assert_eq!(
            choose_repo(Some("other"), &available).expect("chosen"),
            "app"
        );
        assert_eq!(choose_repo(None, &available).expect("chosen"), "app");
    }

    #[test]
    fn several_repositories_and_no_match_is_an_error_listing_them() {
        let error = choose_repo(Some("other"), &names(&["app", "web"])).expect_err("ambiguous");
        assert_eq!(
            error.to_string(),
            "which repository? the forge serves 2, none of them `other`: app, web"
        );
        assert_eq!(
            error.help().as_deref(),
            Some("pass --repo NAME or set LANES_REPO")
        );
        let error = choose_repo(None, &names(&["app", "web"])).expect_err("ambiguous");
        assert_eq!(
            error.to_string(),
            "which repository? the forge serves 2: app, web"
        );
    }

    #[test]
    fn a_forge_without_repositories_says_how_to_serve_one() {
        let error = choose_repo(Some("app"), &[]).expect_err("nothing served");
        assert_eq!(error.to_string(), "the forge serves no repository");
    }

    #[test]
    fn repositories_are_named_after_their_directory_without_dot_git() {
        assert_eq!(repo_name(Path::new("/srv/app.git")).as_deref(), Some("app"));
        assert_eq!(repo_name(Path::new("/home/me/app")).as_deref(), Some("app"));
        assert_eq!(
            repo_name(Path::new("/home/me/app/.git")).as_deref(),
            Some("app")
        );
        assert_eq!(repo_name(Path::new("/")), None);
    }
}
